/* Admin commands that run beside (or without) the daemon: they read the
 * same config file and work on the database or the PKI directly. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "coordinator.h"
#include "enrol.h"
#include "pki.h"
#include "util.h"

static void human_bytes(uint64_t b, char *out, size_t outlen)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    size_t u = 0;
    while (v >= 1024 && u + 1 < INK_ARRAY_LEN(units)) {
        v /= 1024;
        u++;
    }
    snprintf(out, outlen, "%.1f%s", v, units[u]);
}

static void human_age(int64_t ms, char *out, size_t outlen)
{
    if (ms < 0)
        ms = 0;
    if (ms < 120000)
        snprintf(out, outlen, "%llds ago", (long long)(ms / 1000));
    else if (ms < 7200000)
        snprintf(out, outlen, "%lldm ago", (long long)(ms / 60000));
    else
        snprintf(out, outlen, "%lldh ago", (long long)(ms / 3600000));
}

int ink_cmd_nodes(const ink_coordinator_config *cfg, int argc, char **argv)
{
    bool json = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") != 0) {
            fprintf(stderr, "usage: ink-coordinator nodes [--json]\n");
            return 2;
        }
        json = true;
    }
    ink_store *store;
    ink_err err = {0};
    if (ink_store_open(cfg->database, &store, &err) < 0) {
        fprintf(stderr, "ink-coordinator nodes: %s\n", err.msg);
        return 1;
    }
    ink_node_row *rows;
    size_t n;
    int rc = ink_store_list_nodes(store, &rows, &n, &err);
    ink_store_close(store);
    if (rc < 0) {
        fprintf(stderr, "ink-coordinator nodes: %s\n", err.msg);
        return 1;
    }
    int64_t now = ink_now_ms();
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            const ink_node_row *r = &rows[i];
            json_array_append_new(
                arr,
                json_pack(
                    "{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:I,"
                    " s:I, s:I, s:f, s:I, s:I}",
                    "id", r->id, "state",
                    ink_node_is_ready(r, now, cfg->node_timeout_ms) ? "ready" : "unreachable",
                    "hostname", r->hostname, "addresses", r->addresses, "agent_endpoint",
                    r->agent_endpoint, "cpus", (json_int_t)r->cpus, "memory_bytes",
                    (json_int_t)r->memory_bytes, "disk_bytes", (json_int_t)r->disk_bytes,
                    "runsc_version", r->runsc_version, "kernel", r->kernel, "features", r->features,
                    "agent_version", r->agent_version, "registered_at_ms",
                    (json_int_t)r->registered_at_ms, "last_seen_ms", (json_int_t)r->last_seen_ms,
                    "registrations", (json_int_t)r->registrations, "applied_revision",
                    (json_int_t)r->applied_revision, "load1", r->load1, "memory_available_bytes",
                    (json_int_t)r->memory_available_bytes, "workloads", (json_int_t)r->workloads));
        }
        char *s = json_dumps(arr, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(arr);
    } else {
        printf("%-20s %-12s %-22s %5s %10s %-10s %6s %-12s %s\n", "NODE", "STATE", "ENDPOINT",
               "CPUS", "MEMORY", "WORKLOADS", "REGS", "LAST SEEN", "RUNSC");
        for (size_t i = 0; i < n; i++) {
            const ink_node_row *r = &rows[i];
            char mem[32], age[32];
            human_bytes(r->memory_bytes, mem, sizeof mem);
            human_age(now - r->last_seen_ms, age, sizeof age);
            printf("%-20s %-12s %-22s %5u %10s %-10u %6lld %-12s %s\n", r->id,
                   ink_node_is_ready(r, now, cfg->node_timeout_ms) ? "ready" : "unreachable",
                   r->agent_endpoint, r->cpus, mem, r->workloads, (long long)r->registrations, age,
                   r->runsc_version[0] ? r->runsc_version : "(missing)");
        }
    }
    free(rows);
    return 0;
}

/* Collects --san, --days and --out flags after the positional arguments,
 * and --coordinator where coordinator is not NULL (pki enrol). */
typedef struct {
    const char *sans[32];
    size_t nsans;
    int days;
    const char *out;
    const char **coordinator;
} pki_flags;

static int parse_pki_flags(int argc, char **argv, int start, pki_flags *f, FILE *errf)
{
    for (int i = start; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--san") == 0 && v && f->nsans < INK_ARRAY_LEN(f->sans)) {
            f->sans[f->nsans++] = v;
            i++;
        } else if (strcmp(a, "--days") == 0 && v) {
            f->days = atoi(v);
            i++;
        } else if (strcmp(a, "--out") == 0 && v) {
            f->out = v;
            i++;
        } else if (strcmp(a, "--coordinator") == 0 && v && f->coordinator) {
            *f->coordinator = v;
            i++;
        } else {
            fprintf(errf, "ink-coordinator pki: unexpected argument '%s'\n", a);
            return -1;
        }
    }
    if (f->days <= 0 || f->days > 36500) {
        fprintf(errf, "ink-coordinator pki: --days must be between 1 and 36500\n");
        return -1;
    }
    return 0;
}

int ink_cmd_pki_enrol(const ink_coordinator_config *cfg, int argc, char **argv, FILE *out,
                      FILE *errf)
{
    if (argc < 1 || argv[0][0] == '-') {
        fprintf(errf, "usage: ink-coordinator pki enrol NODE --coordinator HOST:PORT [--san S ...] "
                      "[--days N] [--out FILE]\n");
        return 2;
    }
    const char *coordinator = NULL;
    pki_flags f = {.days = 365, .coordinator = &coordinator};
    if (parse_pki_flags(argc, argv, 1, &f, errf) < 0)
        return 2;
    if (!coordinator) {
        fprintf(errf, "ink-coordinator pki enrol: --coordinator HOST:PORT is required (where "
                      "the node reaches this coordinator's NodeService)\n");
        return 2;
    }
    ink_enrol_opts o = {.pki_dir = cfg->pki_dir,
                        .node = argv[0],
                        .coordinator = coordinator,
                        .sans = f.sans,
                        .nsans = f.nsans,
                        .days = f.days,
                        .out = f.out};
    char path[4096];
    ink_err err = {0};
    if (ink_enrol_write(&o, path, sizeof path, &err) < 0) {
        fprintf(errf, "ink-coordinator pki enrol: %s\n", err.msg);
        return 1;
    }
    fprintf(errf,
            "ink-coordinator pki enrol: %s holds node %s's private key (mode 0600): copy it "
            "to the node only over a secure channel and delete it once used\n",
            path, argv[0]);
    fprintf(out, "node %s: %s; run it as root on the node: ssh root@%s sh -s < %s\n", argv[0], path,
            argv[0], path);
    return 0;
}

int ink_cmd_pki(const ink_coordinator_config *cfg, int argc, char **argv)
{
    ink_err err = {0};
    const char *sub = argc > 0 ? argv[0] : "";
    if (strcmp(sub, "init") == 0) {
        pki_flags f = {.days = 825, .out = cfg->pki_dir};
        if (parse_pki_flags(argc, argv, 1, &f, stderr) < 0)
            return 2;
        /* The coordinator's own certificate always names localhost too, so
         * a single-node installation works without flags. */
        const char *sans[34] = {"localhost", "127.0.0.1"};
        size_t n = 2;
        for (size_t i = 0; i < f.nsans; i++)
            sans[n++] = f.sans[i];
        if (ink_pki_init_ca(cfg->pki_dir, 3650, &err) < 0 ||
            ink_pki_issue(cfg->pki_dir, INK_COORDINATOR_NAME, INK_ROLE_COORDINATOR, sans, n, f.days,
                          f.out, &err) < 0) {
            fprintf(stderr, "ink-coordinator pki init: %s\n", err.msg);
            return 1;
        }
        printf("CA:          %s/ca.crt (key %s/ca.key, keep it offline if you can)\n", cfg->pki_dir,
               cfg->pki_dir);
        printf("coordinator: %s/%s.crt\n", f.out, INK_COORDINATOR_NAME);
        return 0;
    }
    if (strcmp(sub, "issue") == 0) {
        if (argc < 2 || argv[1][0] == '-') {
            fprintf(stderr, "usage: ink-coordinator pki issue NODE [--san S ...] [--days N] "
                            "[--out DIR]\n");
            return 2;
        }
        pki_flags f = {.days = 365, .out = cfg->pki_dir};
        if (parse_pki_flags(argc, argv, 2, &f, stderr) < 0)
            return 2;
        if (ink_pki_issue(cfg->pki_dir, argv[1], INK_ROLE_NODE, f.sans, f.nsans, f.days, f.out,
                          &err) < 0) {
            fprintf(stderr, "ink-coordinator pki issue: %s\n", err.msg);
            return 1;
        }
        printf("node %s: %s/%s.crt and %s/%s.key (copy both and ca.crt to the node)\n", argv[1],
               f.out, argv[1], f.out, argv[1]);
        return 0;
    }
    if (strcmp(sub, "enrol") == 0)
        return ink_cmd_pki_enrol(cfg, argc - 1, argv + 1, stdout, stderr);
    fprintf(stderr, "usage: ink-coordinator pki init|issue|enrol ...\n");
    return 2;
}
