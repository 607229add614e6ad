/* Drives node-agent/net/firewall.c from tests/integration/firewall_test.sh.
 * Run it inside the test's node namespace (nsenter --net): every table it
 * programs is that namespace's.
 *
 *   firewall_driver --policy-dir DIR --cidr CIDR [--gateway IP] serve
 *       commands on stdin, one answer line each on stdout ("ok ..." or
 *       "error ..."), so that one firewall (its model, its reference
 *       digest) lives across the test's steps:
 *         add ID ADDR PROJECT POLICY [ALLOW...]     ("-" POLICY: default)
 *         remove ID
 *         drift                  -> ok repaired=0|1 what=...
 *         blocked ID             -> ok [CATEGORY=PACKETS ...]
 *         note ID                -> ok NOTE
 *         reload                 -> ok | error FILE:LINE: ...
 *         refresh
 *         quit
 *   firewall_driver --policy-dir DIR --cidr CIDR bench N
 *       one sync of N synthetic workloads (10 per project, every third
 *       with an allowlist), twice (create, then replace), and prints
 *       "bench workloads=N create_ms=... replace_ms=...".
 *
 * There is no default for anything that could reach a real node's
 * configuration. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "firewall.h"
#include "log.h"
#include "render.h"
#include "util.h"

static int usage(void)
{
    fprintf(stderr, "usage: firewall_driver --policy-dir DIR --cidr CIDR [--gateway IP] "
                    "serve|bench N\n");
    return 2;
}

static void answer_err(const ink_err *err)
{
    printf("error %s\n", err->msg);
}

static void serve(ink_firewall *fw)
{
    char line[8192];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        char *argv[80];
        int argc = 0;
        char *save = NULL;
        for (char *t = strtok_r(line, " ", &save); t && argc < 80; t = strtok_r(NULL, " ", &save))
            argv[argc++] = t;
        if (argc == 0)
            continue;
        ink_err err = {0};
        const char *cmd = argv[0];
        if (strcmp(cmd, "quit") == 0) {
            printf("ok\n");
            fflush(stdout);
            return;
        } else if (strcmp(cmd, "add") == 0 && argc >= 5) {
            ink_fw_spec s = {
                .workload_id = argv[1],
                .project = argv[3],
                .app = "app",
                .policy = strcmp(argv[4], "-") == 0 ? "" : argv[4],
                .allow = (const char *const *)argv + 5,
                .nallow = (size_t)(argc - 5),
            };
            if (inet_pton(AF_INET, argv[2], &s.addr) != 1)
                printf("error bad address\n");
            else if (ink_firewall_add(fw, &s, &err) < 0)
                answer_err(&err);
            else {
                int64_t us;
                size_t n;
                ink_firewall_last_apply(fw, &us, &n);
                printf("ok us=%lld\n", (long long)us);
            }
        } else if (strcmp(cmd, "remove") == 0 && argc == 2) {
            if (ink_firewall_remove(fw, argv[1], &err) < 0)
                answer_err(&err);
            else
                printf("ok\n");
        } else if (strcmp(cmd, "drift") == 0) {
            char what[512];
            int r = ink_firewall_check_drift(fw, what, sizeof what, &err);
            if (r < 0)
                answer_err(&err);
            else
                printf("ok repaired=%d what=%s\n", r, what);
        } else if (strcmp(cmd, "blocked") == 0 && argc == 2) {
            ink_fw_blocked b[32];
            size_t n = ink_firewall_blocked(fw, argv[1], b, 32);
            printf("ok");
            for (size_t i = 0; i < n; i++)
                printf(" %s=%llu", b[i].category, (unsigned long long)b[i].packets);
            printf("\n");
        } else if (strcmp(cmd, "note") == 0 && argc == 2) {
            char note[512];
            ink_firewall_note(fw, argv[1], note, sizeof note);
            printf("ok %s\n", note);
        } else if (strcmp(cmd, "reload") == 0) {
            if (ink_firewall_reload_policies(fw, &err) < 0)
                answer_err(&err);
            else
                printf("ok\n");
        } else if (strcmp(cmd, "refresh") == 0) {
            if (ink_firewall_refresh_hosts(fw, true, &err) < 0)
                answer_err(&err);
            else
                printf("ok\n");
        } else {
            printf("error unknown command %s\n", cmd);
        }
        fflush(stdout);
    }
}

static int bench(ink_firewall *fw, const ink_fw_node *node, size_t n)
{
    ink_fw_spec *s = ink_xcalloc(n, sizeof *s);
    char(*ids)[32] = ink_xcalloc(n, 32);
    char(*projects)[32] = ink_xcalloc(n, 32);
    static const char *const allow[] = {"203.0.113.0/24:443", "198.51.100.7", "192.0.2.0/28:53"};
    uint32_t base = ntohl(node->net.s_addr) + 2;
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], 32, "bench-%zu", i);
        snprintf(projects[i], 32, "p%zu", i / 10);
        s[i] = (ink_fw_spec){
            .workload_id = ids[i],
            .project = projects[i],
            .app = "app",
            .policy = i % 3 == 0 ? "allowlist" : "",
            .allow = i % 3 == 0 ? allow : NULL,
            .nallow = i % 3 == 0 ? INK_ARRAY_LEN(allow) : 0,
        };
        s[i].addr.s_addr = htonl(base + (uint32_t)i);
    }
    ink_err err = {0};
    int64_t t0 = ink_mono_ns();
    int rc = ink_firewall_sync(fw, s, n, true, &err);
    int64_t create_us = (ink_mono_ns() - t0) / 1000, create_apply_us;
    size_t cnt;
    ink_firewall_last_apply(fw, &create_apply_us, &cnt);
    int64_t replace_us = 0, replace_apply_us = 0;
    if (rc == 0) {
        t0 = ink_mono_ns();
        rc = ink_firewall_sync(fw, s, n, true, &err);
        replace_us = (ink_mono_ns() - t0) / 1000;
        ink_firewall_last_apply(fw, &replace_apply_us, &cnt);
    }
    /* The steady state: a drift check that finds nothing, one workload
     * added and removed (each one batch), then the check that verifies
     * them. */
    int64_t drift_us = 0, add_us = 0, remove_us = 0, verify_us = 0;
    if (rc == 0) {
        ink_firewall_check_drift(fw, NULL, 0, &err); /* takes the lazy reference */
        t0 = ink_mono_ns();
        for (int i = 0; i < 10 && rc == 0; i++)
            rc = ink_firewall_check_drift(fw, NULL, 0, &err) < 0 ? -1 : 0;
        drift_us = (ink_mono_ns() - t0) / 10000;
        ink_fw_spec extra = s[0];
        extra.workload_id = "bench-extra";
        extra.addr.s_addr = htonl(base + (uint32_t)n);
        t0 = ink_mono_ns();
        if (rc == 0)
            rc = ink_firewall_add(fw, &extra, &err);
        add_us = (ink_mono_ns() - t0) / 1000;
        t0 = ink_mono_ns();
        if (rc == 0)
            rc = ink_firewall_remove(fw, "bench-extra", &err);
        remove_us = (ink_mono_ns() - t0) / 1000;
        t0 = ink_mono_ns();
        if (rc == 0 && ink_firewall_check_drift(fw, NULL, 0, &err) != 0)
            rc = -1;
        verify_us = (ink_mono_ns() - t0) / 1000;
    }
    if (rc < 0)
        fprintf(stderr, "firewall_driver: %s\n", err.msg);
    else
        printf("bench workloads=%zu create_apply_ms=%.1f replace_apply_ms=%.1f "
               "create_total_ms=%.1f replace_total_ms=%.1f idle_check_ms=%.2f add_ms=%.2f "
               "remove_ms=%.2f verify_ms=%.1f\n",
               n, create_apply_us / 1000.0, replace_apply_us / 1000.0, create_us / 1000.0,
               replace_us / 1000.0, drift_us / 1000.0, add_us / 1000.0, remove_us / 1000.0,
               verify_us / 1000.0);
    free(s);
    free(ids);
    free(projects);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    ink_firewall_config cfg = {0};
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--policy-dir") == 0)
            cfg.policy_dir = argv[i + 1];
        else if (strcmp(argv[i], "--cidr") == 0)
            cfg.workload_cidr = argv[i + 1];
        else if (strcmp(argv[i], "--gateway") == 0 &&
                 inet_pton(AF_INET, argv[i + 1], &cfg.gateway) != 1)
            return usage();
        else if (strcmp(argv[i], "--gateway") != 0)
            return usage();
    }
    if (i >= argc || !cfg.policy_dir || !cfg.workload_cidr)
        return usage();
    ink_log_init("firewall_driver", INK_LOG_INFO, INK_LOG_LOGFMT);
    ink_err err = {0};
    ink_firewall *fw = NULL;
    if (ink_firewall_open(&cfg, &fw, &err) < 0) {
        fprintf(stderr, "firewall_driver: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (strcmp(argv[i], "serve") == 0 && i + 1 == argc) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        serve(fw);
    } else if (strcmp(argv[i], "bench") == 0 && i + 2 == argc) {
        ink_fw_node node;
        if (ink_fw_node_parse_cidr(cfg.workload_cidr, &node, &err) < 0) {
            fprintf(stderr, "firewall_driver: %s\n", err.msg);
            rc = 1;
        } else {
            rc = bench(fw, &node, (size_t)strtoul(argv[i + 1], NULL, 10));
        }
    } else {
        rc = usage();
    }
    ink_firewall_close(fw);
    return rc;
}
