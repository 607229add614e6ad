/* Drives node-agent/net from tests/integration/net_test.sh, one command per
 * process (so every call also exercises re-adoption from disk and kernel):
 *
 *   net_driver --state DIR --netns-dir DIR --cidr CIDR [--mtu N] setup|teardown|show ID
 *
 * Prints one line of key=value pairs; `show` of an unknown workload prints
 * "workload=ID none" and exits 3. There is no default namespace directory:
 * a test must never touch /run/ink of a real installation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "net.h"

static int usage(void)
{
    fprintf(stderr, "usage: net_driver --state DIR --netns-dir DIR --cidr CIDR [--mtu N] "
                    "setup|teardown|show WORKLOAD\n");
    return 2;
}

static void print(const ink_workload_net *w)
{
    printf("workload=%s ip=%s gateway=%s ifname=%s ifindex=%d netns=%s adopted=%d mounted=%d\n",
           w->workload_id, w->addr_str, w->gateway_str, w->host_ifname, w->host_ifindex,
           w->netns_path ? w->netns_path : "-", w->adopted, w->netns_exists);
}

int main(int argc, char **argv)
{
    ink_net_config cfg = {0};
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--state") == 0)
            cfg.state_dir = argv[i + 1];
        else if (strcmp(argv[i], "--netns-dir") == 0)
            cfg.netns_dir = argv[i + 1];
        else if (strcmp(argv[i], "--cidr") == 0)
            cfg.cidr = argv[i + 1];
        else if (strcmp(argv[i], "--mtu") == 0)
            cfg.mtu = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else
            return usage();
    }
    if (argc - i != 2 || !cfg.state_dir || !cfg.netns_dir || !cfg.cidr)
        return usage();
    const char *cmd = argv[i], *id = argv[i + 1];
    ink_log_init("net_driver", INK_LOG_INFO, INK_LOG_LOGFMT);

    ink_err err = {0};
    ink_net *net = NULL;
    if (ink_net_open(&cfg, &net, &err) < 0) {
        fprintf(stderr, "net_driver: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    ink_workload_net w = {0};
    if (strcmp(cmd, "setup") == 0) {
        if (ink_workload_net_setup(net, id, &w, &err) < 0)
            rc = 1;
        else
            print(&w);
    } else if (strcmp(cmd, "teardown") == 0) {
        if (ink_workload_net_teardown(net, id, &err) < 0)
            rc = 1;
        else
            printf("workload=%s removed\n", id);
    } else if (strcmp(cmd, "show") == 0) {
        int r = ink_workload_net_lookup(net, id, &w, &err);
        if (r < 0)
            rc = 1;
        else if (r == 0)
            printf("workload=%s none\n", id), rc = 3;
        else
            print(&w);
    } else {
        rc = usage();
    }
    if (rc == 1)
        fprintf(stderr, "net_driver: %s\n", err.msg);
    ink_workload_net_free(&w);
    ink_net_close(net);
    return rc;
}
