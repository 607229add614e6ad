/* ink-agent: the privileged daemon on every runtime node.
 *
 *   ink-agent [--config FILE] [--option=value ...] [run]
 *   ink-agent [--config FILE] policy check FILE... | policy show
 *   ink-agent [--config FILE] doctor [--json] [--check=NAME,...] [--option=value ...]
 */
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "daemon.h"
#include "doctor.h"
#include "ink_version.h"
#include "log.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ink-agent [--config FILE] [--OPTION=VALUE ...] [COMMAND]\n"
            "\n"
            "commands:\n"
            "  run        run the agent (default; SIGHUP reloads the egress policies)\n"
            "  version    print the version\n"
            "  policy check FILE...\n"
            "             lint egress policy files; print the chains they render to and a\n"
            "             sample table (exit 1 and FILE:LINE: message on errors)\n"
            "  policy show\n"
            "             what this node enforces now: Ink's nftables table, and per\n"
            "             workload its policy, project, allowlist and drop counters\n"
            "  doctor [--json] [--check=NAME,...] [--OPTION=VALUE ...]\n"
            "             preflight of this node with the configuration run would use:\n"
            "             PASS/WARN/FAIL per check with a fix (exit 1 on any FAIL)\n"
            "\n"
            "options (config file %s, or flags):\n",
            INK_AGENT_DEFAULT_CONFIG);
    ink_config_print_reference(ink_agent_options, out);
}

static void reload(void *arg)
{
    ink_agent_reload(arg);
}

static int run(const ink_agent_config *cfg)
{
    ink_err err = {0};
    if (cfg->insecure_dev)
        LOG_WARN("--insecure-dev: gRPC runs WITHOUT TLS; anyone on the network can call this "
                 "agent");
    ink_block_signals();
    ink_rpc_init();
    ink_agent a;
    if (ink_agent_start(&a, cfg, &err) < 0) {
        LOG_ERROR("cannot start", "error", err.msg);
        ink_rpc_shutdown();
        return 1;
    }
    int sig = ink_wait_for_signals(reload, &a);
    LOG_INFO("shutting down; workloads keep running", "signal", strsignal(sig));
    ink_agent_stop(&a);
    ink_rpc_shutdown();
    LOG_INFO("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "version") == 0) {
            printf("ink-agent %s\n", INK_VERSION);
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    }
    ink_agent_config cfg = {0};
    ink_err err = {0};
    int idx = 1;
    if (ink_load_config(ink_agent_options, &cfg, INK_AGENT_DEFAULT_CONFIG, argc, argv, &idx, &err) <
            0 ||
        ink_setup_logging("agent", cfg.log_level, cfg.log_format, &err) < 0) {
        fprintf(stderr, "ink-agent: %s\n", err.msg);
        ink_config_free(ink_agent_options, &cfg);
        return 2;
    }
    const char *cmd = idx < argc ? argv[idx] : "run";
    int rc;
    if (strcmp(cmd, "run") == 0) {
        /* Flags may follow the command too: `run --node-id=...`. */
        int rest = idx + 1;
        if (idx < argc &&
            (ink_config_parse_args(ink_agent_options, &cfg, argc, argv, &rest, &err) < 0 ||
             rest < argc)) {
            fprintf(stderr, "ink-agent run: %s\n", err.msg[0] ? err.msg : "unexpected argument");
            ink_config_free(ink_agent_options, &cfg);
            return 2;
        }
        rc = run(&cfg);
    } else if (strcmp(cmd, "policy") == 0) {
        rc = ink_policy_cli(&cfg, argc - idx - 1, argv + idx + 1);
    } else if (strcmp(cmd, "doctor") == 0) {
        rc = ink_doctor_cli(&cfg, argc - idx, argv + idx);
    } else {
        fprintf(stderr, "ink-agent: unknown command '%s'\n\n", cmd);
        usage(stderr);
        rc = 2;
    }
    ink_config_free(ink_agent_options, &cfg);
    return rc;
}
