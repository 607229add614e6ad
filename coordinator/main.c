/* ink-coordinator: MCP and NodeService front, state and placement.
 *
 *   ink-coordinator [--config FILE] [--option=value ...] [serve]
 *   ink-coordinator nodes [--json]
 *   ink-coordinator pki init [--san NAME|IP ...]
 *   ink-coordinator pki issue NODE [--san NAME|IP ...] [--days N] [--out DIR]
 *   ink-coordinator pki enrol NODE --coordinator HOST:PORT [--san ...] [--days N] [--out FILE]
 *   ink-coordinator workload put NODE ID --image REF [...] [-- COMMAND ...]
 *   ink-coordinator workload rm NODE ID
 *   ink-coordinator workload ls [NODE] [--json]
 *   ink-coordinator keys create --project P --role deployer|reader [--name LABEL]
 *   ink-coordinator keys list [--json] | keys revoke KEYID
 *   ink-coordinator audit verify | audit list [--tail N] [--json]
 *   ink-coordinator mcp-stdio       (MCP over stdin/stdout, key in INK_API_KEY)
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "audit.h"
#include "coordinator.h"
#include "daemon.h"
#include "ink_version.h"
#include "keys.h"
#include "log.h"
#include "tools.h"
#include "util.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ink-coordinator [--config FILE] [--OPTION=VALUE ...] [COMMAND]\n"
            "\n"
            "commands:\n"
            "  serve                      run the coordinator (default)\n"
            "  nodes [--json]             list nodes and their liveness\n"
            "  pki init [--san S ...]     create the cluster CA and the coordinator certificate\n"
            "  pki issue NODE [--san S ...] [--days N] [--out DIR]\n"
            "                             issue a node certificate signed by the CA\n"
            "  pki enrol NODE --coordinator HOST:PORT [--san S ...] [--days N] [--out FILE]\n"
            "                             the same, as a script that enrols the node (run it\n"
            "                             there as root: ssh root@NODE sh -s < enrol-NODE.sh)\n"
            "  workload put NODE ID --image REF [--port N] [--publish N] [--env K=V]...\n"
            "      [--secret-env K=V]... [--memory SIZE] [--cpu MILLICORES|0.5] [--pids N]\n"
            "      [--app NAME] [--project NAME] [--min-replicas N] [--idle-timeout DURATION]\n"
            "      [--egress POLICY] [--egress-allow TARGET[:PORTS]]... [--args]\n"
            "      [-- COMMAND ...]\n"
            "                             assign a workload to a node (writes the database;\n"
            "                             a running coordinator sends it to the agent);\n"
            "                             after --: the command, or its args with --args\n"
            "  workload rm NODE ID        remove an assignment (no-op when absent)\n"
            "  workload ls [NODE] [--json]\n"
            "                             assignments and the status their nodes report\n"
            "  keys create --project P --role deployer|reader [--name LABEL]\n"
            "                             make an MCP API key (printed once, stored hashed)\n"
            "  keys list [--json]         keys and whether they are revoked (no secrets)\n"
            "  keys revoke KEYID          revoke a key (no-op when already revoked)\n"
            "  audit verify               check the audit log's hash chain; exit 1 if broken\n"
            "  audit list [--tail N] [--json]\n"
            "                             audit log entries, oldest first\n"
            "  mcp-stdio                  serve MCP on stdin/stdout to one client (an AI agent\n"
            "                             that starts this command); API key in INK_API_KEY,\n"
            "                             logs on stderr. Runs beside the daemon, which deploys\n"
            "  version                    print the version\n"
            "\n"
            "options (config file %s, or flags):\n",
            INK_COORDINATOR_DEFAULT_CONFIG);
    ink_config_print_reference(ink_coordinator_options, out);
}

static void kick_coordinator(void *arg)
{
    ink_coordinator_kick(arg);
}

static void poke_tools(void *arg)
{
    ink_tools_poke(arg);
}

static int serve(ink_coordinator_config *cfg)
{
    ink_err err = {0};
    if (cfg->insecure_dev)
        LOG_WARN("--insecure-dev: NodeService runs WITHOUT TLS and trusts any caller");
    ink_block_signals();
    ink_rpc_init();
    ink_coordinator c;
    if (ink_coordinator_start(&c, cfg, &err) < 0) {
        LOG_ERROR("cannot start", "error", err.msg);
        ink_rpc_shutdown();
        return 1;
    }
    /* MCP after NodeService: a tool call may need the agents. */
    ink_tools_ctx tc = {.store = c.store, .cfg = cfg, .kick = kick_coordinator, .kick_arg = &c};
    ink_tools *tools = ink_tools_new(&tc, &err);
    ink_mcp_http *mcp = NULL;
    if (tools)
        ink_coordinator_on_progress(&c, poke_tools, tools);
    if (tools && *cfg->mcp_listen)
        mcp = ink_tools_http_start(tools, &err);
    if (!tools || (*cfg->mcp_listen && !mcp)) {
        LOG_ERROR("cannot start MCP", "listen", cfg->mcp_listen, "error", err.msg);
        ink_tools_free(tools);
        ink_coordinator_stop(&c);
        ink_rpc_shutdown();
        return 1;
    }
    char port[16], mcp_port[16] = "off";
    snprintf(port, sizeof port, "%d", ink_rpc_server_port(c.rpc));
    if (mcp)
        snprintf(mcp_port, sizeof mcp_port, "%d", ink_mcp_http_port(mcp));
    LOG_INFO("coordinator started", "version", INK_VERSION, "listen", cfg->listen, "port", port,
             "mcp_listen", cfg->mcp_listen, "mcp_port", mcp_port, "database", cfg->database,
             "coordinator_id", ink_store_coordinator_id(c.store), "tls",
             cfg->insecure_dev ? "off" : "mutual");
    int sig = ink_wait_for_shutdown();
    LOG_INFO("shutting down", "signal", strsignal(sig));
    /* MCP first: no new tool call may start while the rest goes away. */
    ink_mcp_http_stop(mcp);
    ink_coordinator_on_progress(&c, NULL, NULL);
    ink_tools_free(tools);
    ink_coordinator_stop(&c);
    ink_rpc_shutdown();
    LOG_INFO("stopped");
    return 0;
}

/* One MCP client on stdin/stdout, beside the daemon: this process only
 * answers tool calls on the shared database, the daemon's controller does
 * the work. stdout carries MCP only; logs go to stderr. */
static int mcp_stdio(const ink_coordinator_config *cfg)
{
    const char *key = getenv("INK_API_KEY");
    if (!key || !*key) {
        fprintf(stderr, "ink-coordinator mcp-stdio: INK_API_KEY is not set: give it an API key "
                        "made with `ink-coordinator keys create`\n");
        return 1;
    }
    ink_block_signals();
    /* SIGTERM/SIGINT (blocked above) end the session through this fd. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    ink_store *store = NULL;
    ink_err err = {0};
    if (sfd < 0 || ink_store_open(cfg->database, &store, &err) < 0) {
        fprintf(stderr, "ink-coordinator mcp-stdio: %s\n", sfd < 0 ? "signalfd failed" : err.msg);
        if (sfd >= 0)
            close(sfd);
        return 1;
    }
    ink_rpc_init();
    ink_tools_ctx tc = {.store = store, .cfg = cfg, .recheck_key = key};
    ink_tools *tools = ink_tools_new(&tc, &err);
    const ink_caller *who = NULL;
    int rc = tools ? ink_tools_verify_key(tools, key, &who, &err) : -1;
    if (rc != 1) {
        fprintf(stderr, "ink-coordinator mcp-stdio: %s\n",
                rc == 0 ? "INK_API_KEY is not a valid API key (unknown, revoked or mistyped)"
                        : err.msg);
        ink_tools_free(tools);
        ink_rpc_shutdown();
        ink_store_close(store);
        close(sfd);
        return 1;
    }
    LOG_INFO("mcp-stdio started", "version", INK_VERSION, "key_id", who->key_id, "project",
             who->project, "role", ink_key_role_name(who->role), "database", cfg->database);
    ink_mcp_stdio_opts so = {
        .in_fd = 0, .out_fd = 1, .stop_fd = sfd, .auth = (void *)who, .drain_ms = 2000};
    rc = ink_mcp_stdio_run(ink_tools_server(tools), &so, &err);
    if (rc < 0)
        LOG_ERROR("mcp-stdio failed", "error", err.msg);
    ink_tools_free(tools);
    ink_rpc_shutdown();
    ink_store_close(store);
    close(sfd);
    LOG_INFO("mcp-stdio stopped");
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    /* Before the config is read, so both work with a broken config file.
     * Only up to "--" (what follows is a workload's command line) and
     * `version` only as the command: `workload rm n1 version` removes a
     * workload named "version". */
    bool command_seen = false;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--version") == 0 ||
            (!command_seen && strcmp(argv[i], "version") == 0)) {
            printf("ink-coordinator %s\n", INK_VERSION);
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--config") == 0)
            i++;
        else if (argv[i][0] != '-')
            command_seen = true;
    }
    ink_coordinator_config cfg = {0};
    ink_err err = {0};
    int idx = 1;
    if (ink_load_config(ink_coordinator_options, &cfg, INK_COORDINATOR_DEFAULT_CONFIG, argc, argv,
                        &idx, &err) < 0) {
        fprintf(stderr, "ink-coordinator: %s\n", err.msg);
        ink_config_free(ink_coordinator_options, &cfg);
        return 2;
    }
    if (ink_setup_logging("coordinator", cfg.log_level, cfg.log_format, &err) < 0) {
        fprintf(stderr, "ink-coordinator: %s\n", err.msg);
        ink_config_free(ink_coordinator_options, &cfg);
        return 2;
    }
    const char *cmd = idx < argc ? argv[idx] : "serve";
    int rc;
    if (strcmp(cmd, "serve") == 0) {
        /* Flags may follow the command too: `serve --listen=...`. */
        int rest = idx + 1;
        if (idx < argc &&
            (ink_config_parse_args(ink_coordinator_options, &cfg, argc, argv, &rest, &err) < 0 ||
             rest < argc)) {
            fprintf(stderr, "ink-coordinator serve: %s\n",
                    err.msg[0] ? err.msg : "unexpected argument");
            ink_config_free(ink_coordinator_options, &cfg);
            return 2;
        }
        rc = serve(&cfg);
    } else if (strcmp(cmd, "nodes") == 0) {
        rc = ink_cmd_nodes(&cfg, argc - idx - 1, argv + idx + 1);
    } else if (strcmp(cmd, "pki") == 0) {
        rc = ink_cmd_pki(&cfg, argc - idx - 1, argv + idx + 1);
    } else if (strcmp(cmd, "workload") == 0) {
        rc = ink_cmd_workload(&cfg, argc - idx - 1, argv + idx + 1, stdout, stderr);
    } else if (strcmp(cmd, "keys") == 0) {
        rc = ink_cmd_keys(&cfg, argc - idx - 1, argv + idx + 1, stdout, stderr);
    } else if (strcmp(cmd, "audit") == 0) {
        rc = ink_cmd_audit(&cfg, argc - idx - 1, argv + idx + 1, stdout, stderr);
    } else if (strcmp(cmd, "mcp-stdio") == 0) {
        int rest = idx + 1;
        if (ink_config_parse_args(ink_coordinator_options, &cfg, argc, argv, &rest, &err) < 0 ||
            rest < argc) {
            fprintf(stderr, "ink-coordinator mcp-stdio: %s\n",
                    err.msg[0] ? err.msg : "unexpected argument");
            rc = 2;
        } else {
            rc = mcp_stdio(&cfg);
        }
    } else if (strcmp(cmd, "version") == 0) {
        printf("ink-coordinator %s\n", INK_VERSION);
        rc = 0;
    } else {
        fprintf(stderr, "ink-coordinator: unknown command '%s'\n\n", cmd);
        usage(stderr);
        rc = 2;
    }
    ink_config_free(ink_coordinator_options, &cfg);
    return rc;
}
