/* Runs the node resolver (node-agent/dns, the agent's own code: sockets,
 * the ink-dns helper, the control protocol) for a table read from a file,
 * for tests/integration/dns_test.sh:
 *
 *   dns_driver --cidr CIDR --state DIR --table FILE [--upstream LIST]
 *              [--resolv-conf FILE] [--port N] [--user U] [--helper PATH]
 *
 * Table lines: ADDRESS PROJECT APP IFNAME SERVING FORWARD [NAMES], with "-"
 * for an empty project, app or ifname (not checked), 0/1 flags, and NAMES
 * the comma-separated names a workload that may not forward may still
 * have resolved (forward_names). Prints
 * "ready pid=N" once the helper has applied the table, "reloaded pid=N"
 * after each SIGHUP (the file read again), "pid=N" after SIGUSR1 (the
 * helper's pid now, e.g. after it was killed and restarted); stops on
 * SIGTERM or SIGINT. */
#include <arpa/inet.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dns.h"
#include "log.h"
#include "util.h"

static const char *table_path;

static size_t collect(void *arg, ink_dns_workload **out)
{
    (void)arg;
    size_t n = 0, cap = 16;
    ink_dns_workload *w = ink_xcalloc(cap, sizeof *w);
    FILE *f = fopen(table_path, "re");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char addr[64], project[64], app[64], ifname[64], names[256] = "";
        int serving, forward;
        if (line[0] == '#' || sscanf(line, "%63s %63s %63s %63s %d %d %255s", addr, project, app,
                                     ifname, &serving, &forward, names) < 6)
            continue;
        if (n == cap) {
            cap *= 2;
            w = ink_xrealloc(w, cap * sizeof *w);
        }
        ink_dns_workload *x = &w[n];
        memset(x, 0, sizeof *x);
        if (inet_pton(AF_INET, addr, &x->addr) != 1)
            continue;
        snprintf(x->project, sizeof x->project, "%s", strcmp(project, "-") ? project : "");
        snprintf(x->app, sizeof x->app, "%s", strcmp(app, "-") ? app : "");
        x->ifindex = strcmp(ifname, "-") ? if_nametoindex(ifname) : 0;
        x->serving = serving != 0;
        x->forward = forward != 0;
        if (names[0]) {
            x->forward_names = ink_xstrdup(names);
            for (char *c = x->forward_names; *c; c++)
                if (*c == ',')
                    *c = '\n';
        }
        n++;
    }
    if (f)
        fclose(f);
    *out = w;
    return n;
}

int main(int argc, char **argv)
{
    ink_log_init("dns_driver", INK_LOG_DEBUG, INK_LOG_LOGFMT);
    ink_dns_config cfg = {.collect = collect, .refresh_ms = 60000};
    const char *state = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--cidr") == 0)
            cfg.workload_cidr = v;
        else if (strcmp(k, "--state") == 0)
            state = v;
        else if (strcmp(k, "--table") == 0)
            table_path = v;
        else if (strcmp(k, "--upstream") == 0)
            cfg.upstream = v;
        else if (strcmp(k, "--resolv-conf") == 0)
            cfg.resolv_conf = v;
        else if (strcmp(k, "--port") == 0)
            cfg.port = (uint16_t)atoi(v);
        else if (strcmp(k, "--user") == 0)
            cfg.user = v;
        else if (strcmp(k, "--helper") == 0)
            cfg.helper = v;
        else {
            fprintf(stderr, "dns_driver: unknown option %s\n", k);
            return 2;
        }
    }
    if (!cfg.workload_cidr || !state || !table_path) {
        fprintf(stderr, "usage: dns_driver --cidr CIDR --state DIR --table FILE [--upstream LIST] "
                        "[--resolv-conf FILE] [--port N] [--user U] [--helper PATH]\n");
        return 2;
    }
    cfg.run_dir = state;
    /* Signals are taken with sigwait, in this thread only. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    ink_err err = {0};
    ink_dns *d;
    if (ink_dns_start(&cfg, &d, &err) < 0) {
        fprintf(stderr, "dns_driver: %s\n", err.msg);
        return 1;
    }
    if (ink_dns_sync(d, 15000) < 0) {
        fprintf(stderr, "dns_driver: the resolver did not apply the table\n");
        ink_dns_stop(d);
        return 1;
    }
    printf("ready pid=%d\n", (int)ink_dns_helper_pid(d));
    fflush(stdout);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            int rc = ink_dns_sync(d, 15000);
            printf("%s pid=%d\n", rc == 0 ? "reloaded" : "reload-failed",
                   (int)ink_dns_helper_pid(d));
        } else if (sig == SIGUSR1) {
            printf("pid=%d\n", (int)ink_dns_helper_pid(d));
        } else {
            break;
        }
        fflush(stdout);
    }
    ink_dns_stop(d);
    printf("stopped\n");
    return 0;
}
