/* bench/egress: the egress firewall (node-agent/net/firewall.c) against the
 * real kernel, in namespaces this process makes for itself:
 *
 *   1. apply time: ink_firewall_sync of 1,000 and 10,000 synthetic
 *      workloads (one project per 10; default, deny-all and allowlist with
 *      two entries, in turn) in a fresh network namespace, each one batch:
 *      into an empty namespace (create) and over the table (replace), with
 *      what listing the table back costs (the next drift check does that,
 *      to verify what was applied); then adding and removing one
 *      workload of each policy (one batch each), an idle drift check and
 *      the first check after a change. Target: 1,000 in < 100 ms.
 *   2. throughput: TCP bulk from a workload namespace through the node
 *      namespace (the routed veth pair node-agent/net makes for the agent)
 *      and an uplink veth to a sink on 203.0.113.10, without table inet
 *      ink and with it (the workload under the default policy among 1,000
 *      others, masqueraded), in alternating runs. Target:
 *      filtered/unfiltered >= 0.95.
 *
 *   egress_bench [--reps N] [--sizes 1000,10000] [--pairs N] [--secs S]
 *                [--baseline none|nat] [--only apply|throughput] [--policies DIR]
 *
 * --baseline nat compares the filtered runs with conntrack and masquerade
 * alone instead of no table: what Ink's rules cost beyond any NAT.
 *
 * Needs root. Safety: the first thing it does is move into a network
 * namespace and a mount namespace of its own (bench_net.h: bn_isolate;
 * private propagation, with a
 * tmpfs on /tmp for the policy copy, the IPAM file and the namespace
 * mounts). Every namespace, veth, nftables table and mount it makes hangs
 * off those, so the kernel frees all of it when the process ends, however
 * it ends (an error, SIGINT, SIGKILL): nothing is ever created in the
 * host's network namespace, ruleset or /tmp. The normal path still tears
 * down what it built, in order, as the agent would. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_net.h"
#include "firewall.h"
#include "log.h"
#include "net.h"
#include "render.h"
#include "util.h"
#include "veth.h"

#ifndef INK_SOURCE_POLICY_DIR
#define INK_SOURCE_POLICY_DIR "policies"
#endif

/* Everything below lives in the bench's own tmpfs on /tmp. */
#define SCRATCH "/tmp"
#define POLICY_DIR SCRATCH "/policies"
#define NETNS_DIR SCRATCH "/netns"
#define STATE_DIR SCRATCH "/state"

#define NET_ADDR "10.250.0.0" /* the workload range, a /16 */
#define CIDR NET_ADDR "/16"
#define UPLINK_ADDR "203.0.113.1" /* the node's uplink: what masquerade makes */
#define SINK_ADDR "203.0.113.10"  /* public-looking: the default policy allows it */
#define SINK_PORT 5001
#define SMTP_PORT 25 /* the default policy drops it (smtp) */
#define WL_ID "egress-bench"
#define OTHERS 1000 /* workloads around the measured one in part 2 */

#define EXTRA 6       /* workloads added and removed one by one per repetition: 2 per policy */
#define IDLE_CHECKS 5 /* idle drift checks per repetition */
#define SETTLE_MS 300
#define SIZES_MAX 4
#define TARGET_APPLY_MS 100.0
#define TARGET_RATIO 0.95

/* ------------------------------------------------------------- figures */

static double max2(double a, double b)
{
    return a > b ? a : b;
}

static double ms_since(int64_t t0)
{
    return (double)(ink_mono_ns() - t0) / 1e6;
}

/* ------------------------------------------------------------- isolation */

static void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

/* The shipped policies, copied where strict_files accepts them: owned by
 * root, directory 0755, files 0644 (as policies/README.md says to install
 * them). srcfd was opened before the tmpfs went on /tmp, which would hide
 * a source under it. */
static int copy_policies(int srcfd, const char *src, const char *dst, ink_err *err)
{
    if (mkdir(dst, 0755) < 0 || chmod(dst, 0755) < 0)
        return ink_err_set(err, errno, "mkdir %s", dst);
    int dfd = dup(srcfd);
    __attribute__((cleanup(closedirp))) DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return ink_err_set(err, errno, "policies: open %s", src);
    }
    size_t copied = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name), slen = strlen(INK_POLICY_SUFFIX);
        if (len <= slen || strcmp(de->d_name + len - slen, INK_POLICY_SUFFIX) != 0)
            continue;
        cleanup_free char *from = ink_xasprintf("%s/%s", src, de->d_name);
        cleanup_free char *to = ink_xasprintf("%s/%s", dst, de->d_name);
        cleanup_free char *data = NULL;
        size_t dlen = 0;
        cleanup_close int in = openat(srcfd, de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (in < 0)
            return ink_err_set(err, errno, "open %s", from);
        if (ink_read_fd(in, from, 1 << 20, &data, &dlen, err) < 0)
            return -1;
        cleanup_close int fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        errno = 0;
        if (fd < 0 || fchmod(fd, 0644) < 0 || write(fd, data, dlen) != (ssize_t)dlen)
            return ink_err_set(err, errno ? errno : EIO, "writing %s", to);
        copied++;
    }
    if (copied == 0)
        return ink_err_set(err, 0, "no *%s files in %s", INK_POLICY_SUFFIX, src);
    return 0;
}

/* ------------------------------------------------------------- workloads */

static const char *const ALLOW[] = {"198.51.100.0/24:443", "192.0.2.7:5432"};
/* The policies workloads get, in turn (the first with ALLOW). */
static const char *const KINDS[3] = {"allowlist", "deny-all", "default"};

/* n synthetic workloads: ids PREFIX00000..., one project per 10, policies
 * allowlist (with ALLOW), deny-all and default in turn, addresses from
 * first (host byte order) up. */
typedef struct fleet {
    size_t n;
    ink_fw_spec *spec;
    char (*id)[24];
    char (*project)[24];
} fleet;

static void fleet_make(fleet *f, size_t n, const char *prefix, uint32_t first)
{
    f->n = n;
    f->spec = ink_xcalloc(n + 1, sizeof *f->spec); /* + 1: room for one more */
    f->id = ink_xcalloc(n, sizeof *f->id);
    f->project = ink_xcalloc(n, sizeof *f->project);
    for (size_t i = 0; i < n; i++) {
        snprintf(f->id[i], sizeof f->id[i], "%s%05zu", prefix, i);
        snprintf(f->project[i], sizeof f->project[i], "p%zu", i / 10);
        bool allowlist = i % 3 == 0;
        f->spec[i] = (ink_fw_spec){
            .workload_id = f->id[i],
            .project = f->project[i],
            .app = "app",
            .policy = KINDS[i % 3],
            .allow = allowlist ? ALLOW : NULL,
            .nallow = allowlist ? INK_ARRAY_LEN(ALLOW) : 0,
        };
        f->spec[i].addr.s_addr = htonl(first + (uint32_t)i);
    }
}

static void fleet_free(fleet *f)
{
    free(f->spec);
    free(f->id);
    free(f->project);
    memset(f, 0, sizeof *f);
}

static uint32_t cidr_first_host(void)
{
    struct in_addr net;
    inet_pton(AF_INET, NET_ADDR, &net);
    return ntohl(net.s_addr) + 2; /* .1 is the gateway */
}

/* ------------------------------------------------------------- nftables */

static void fw_closep(ink_firewall **fw)
{
    ink_firewall_close(*fw);
}
#define cleanup_fw __attribute__((cleanup(fw_closep)))

/* nft commands in the calling thread's namespace, through a libnftables
 * context of the bench's own (the firewall's is not to be shared).
 * missing_ok: an object that does not exist is fine. */
static int nft_cmd(const char *cmd, bool missing_ok, ink_err *err)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx)
        return ink_err_set(err, 0, "libnftables: cannot create a context");
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    int rc = nft_run_cmd_from_buffer(ctx, cmd);
    const char *e = nft_ctx_get_error_buffer(ctx);
    if (rc != 0 && !(missing_ok && e && strstr(e, "No such file or directory")))
        rc = ink_err_set(err, 0, "nft %.60s: %.200s", cmd, e && *e ? e : "refused");
    else
        rc = 0;
    nft_ctx_free(ctx);
    return rc;
}

/* Deletes table inet ink behind the firewall's back (the unfiltered
 * runs; the end of a repetition). */
static int delete_table(ink_err *err)
{
    return nft_cmd("delete table " INK_FW_FAMILY " " INK_FW_TABLE, true, err);
}

/* --baseline nat: what any NAT gateway pays (conntrack, one forward rule,
 * masquerade), to tell that apart from what Ink's rules add. */
#define NAT_TABLE "egress_bench_nat"
static const char NAT_RULES[] = "add table inet " NAT_TABLE "\n"
                                "delete table inet " NAT_TABLE "\n"
                                "table inet " NAT_TABLE " {\n"
                                "\tchain forward {\n"
                                "\t\ttype filter hook forward priority filter; policy accept;\n"
                                "\t\tct state established,related accept\n"
                                "\t}\n"
                                "\tchain postrouting {\n"
                                "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
                                "\t\tip saddr " CIDR " oifname \"upl\" masquerade\n"
                                "\t}\n"
                                "}\n";

/* 1 when table inet ink exists in the calling thread's namespace. */
static int table_present(ink_err *err)
{
    cleanup_free char *text = NULL;
    bool absent = false;
    if (ink_fw_list_table(false, true, &text, &absent, err) < 0)
        return -1;
    return absent ? 0 : 1;
}

/* ------------------------------------------------------------- 1. apply */

typedef struct rep_result {
    double create_sync, create_commit, replace_sync, replace_commit, create_cpu, replace_cpu;
    double list, parse; /* what taking the reference costs, measured alone */
    size_t table_bytes;
    double add[EXTRA], add_commit[EXTRA], remove[EXTRA], remove_commit[EXTRA];
    double idle[IDLE_CHECKS], verify;
} rep_result;

typedef struct rep_job {
    const fleet *f, *extra;
    rep_result r;
    int rc;
    ink_err err;
} rep_job;

static int commit_ms(ink_firewall *fw, size_t want, double *out, ink_err *err)
{
    int64_t us;
    size_t n;
    ink_firewall_last_apply(fw, &us, &n);
    if (n != want)
        return ink_err_set(err, 0, "the last apply covered %zu workloads, not %zu", n, want);
    *out = (double)us / 1000.0;
    return 0;
}

/* One repetition, on a thread that has just made a network namespace of
 * its own: an empty one, as for an agent's first start. */
static int rep_run(rep_job *job, ink_err *err)
{
    const fleet *f = job->f, *x = job->extra;
    rep_result *r = &job->r;
    ink_firewall_config cfg = {
        .policy_dir = POLICY_DIR, .workload_cidr = CIDR, .strict_files = true};
    cleanup_fw ink_firewall *fw = NULL;
    if (ink_firewall_open(&cfg, &fw, err) < 0)
        return ink_err_wrap(err, "opening the firewall");

    int64_t c0 = bn_thread_cpu_ns(), t0 = ink_mono_ns();
    if (ink_firewall_sync(fw, f->spec, f->n, true, err) < 0)
        return ink_err_wrap(err, "sync of %zu workloads (create)", f->n);
    r->create_sync = ms_since(t0);
    r->create_cpu = (double)(bn_thread_cpu_ns() - c0) / 1e6;
    if (commit_ms(fw, f->n, &r->create_commit, err) < 0)
        return -1;
    /* The same again over the table: an agent restarting, a reload, a
     * drift repair ("add table; delete table; table {...}" in one). */
    c0 = bn_thread_cpu_ns();
    t0 = ink_mono_ns();
    if (ink_firewall_sync(fw, f->spec, f->n, true, err) < 0)
        return ink_err_wrap(err, "sync of %zu workloads (replace)", f->n);
    r->replace_sync = ms_since(t0);
    r->replace_cpu = (double)(bn_thread_cpu_ns() - c0) / 1e6;
    if (commit_ms(fw, f->n, &r->replace_commit, err) < 0)
        return -1;

    /* What the agent does every firewall_resync when nobody touched
     * nftables: read the generation, then the drop counters. */
    for (int k = 0; k < IDLE_CHECKS; k++) {
        char what[256];
        t0 = ink_mono_ns();
        int d = ink_firewall_check_drift(fw, what, sizeof what, err);
        r->idle[k] = ms_since(t0);
        if (d < 0)
            return ink_err_wrap(err, "idle drift check");
        if (d > 0)
            return ink_err_set(err, 0, "an idle drift check repaired the table: %s", what);
    }

    /* The listing a full apply takes as its reference, alone: nft's JSON
     * of the whole table, then jansson parsing it (the digest follows). */
    cleanup_free char *text = NULL;
    bool absent = false;
    t0 = ink_mono_ns();
    if (ink_fw_list_table(true, false, &text, &absent, err) < 0)
        return -1;
    r->list = ms_since(t0);
    if (absent)
        return ink_err_set(err, 0, "table inet ink is missing after the sync");
    r->table_bytes = strlen(text);
    t0 = ink_mono_ns();
    json_t *j = json_loads(text, 0, NULL);
    r->parse = ms_since(t0);
    if (!j)
        return ink_err_set(err, 0, "nft's JSON listing does not parse");
    json_decref(j);

    for (int k = 0; k < EXTRA; k++) {
        t0 = ink_mono_ns();
        if (ink_firewall_add(fw, &x->spec[k], err) < 0)
            return ink_err_wrap(err, "adding workload %s", x->spec[k].workload_id);
        r->add[k] = ms_since(t0);
        if (commit_ms(fw, 1, &r->add_commit[k], err) < 0)
            return ink_err_wrap(err, "adding %s was not one batch", x->spec[k].workload_id);
    }
    /* The first check after Ink's own batches lists the table again. */
    char what[256];
    t0 = ink_mono_ns();
    int d = ink_firewall_check_drift(fw, what, sizeof what, err);
    r->verify = ms_since(t0);
    if (d != 0)
        return d < 0 ? ink_err_wrap(err, "drift check after adds")
                     : ink_err_set(err, 0, "the drift check after adds repaired: %s", what);
    for (int k = 0; k < EXTRA; k++) {
        t0 = ink_mono_ns();
        if (ink_firewall_remove(fw, x->spec[k].workload_id, err) < 0)
            return ink_err_wrap(err, "removing workload %s", x->spec[k].workload_id);
        r->remove[k] = ms_since(t0);
        if (commit_ms(fw, 1, &r->remove_commit[k], err) < 0)
            return ink_err_wrap(err, "removing %s was not one batch", x->spec[k].workload_id);
    }
    /* Not timed: the namespace then goes away without a big table for
     * the kernel to tear down in the background of the next repetition. */
    return delete_table(err);
}

static void *rep_main(void *arg)
{
    rep_job *job = arg;
    if (unshare(CLONE_NEWNET) < 0)
        job->rc = ink_err_set(&job->err, errno, "creating a network namespace");
    else
        job->rc = rep_run(job, &job->err);
    return NULL;
}

typedef struct apply_figures {
    bn_samples create_sync, create_commit, create_cpu, replace_sync, replace_commit, replace_cpu,
        list, parse, rest_create, rest_replace, idle, verify;
    bn_samples add, add_commit, remove, remove_commit; /* every policy */
    bn_samples add_by[3], remove_by[3];                /* by policy (KINDS) */
    size_t table_bytes;
} apply_figures;

static int bench_apply(size_t n, int reps, apply_figures *af, ink_err *err)
{
    memset(af, 0, sizeof *af);
    fleet f, x;
    uint32_t first = cidr_first_host();
    fleet_make(&f, n, "w", first);
    fleet_make(&x, EXTRA, "x", first + (uint32_t)n);
    int rc = 0;
    for (int i = 0; i < reps && rc == 0; i++) {
        rep_job job = {.f = &f, .extra = &x};
        pthread_t t;
        int e = pthread_create(&t, NULL, rep_main, &job);
        if (e) {
            rc = ink_err_set(err, e, "starting a repetition thread");
            break;
        }
        pthread_join(t, NULL);
        if (job.rc < 0) {
            *err = job.err;
            rc = ink_err_wrap(err, "%zu workloads, repetition %d", n, i + 1);
            break;
        }
        rep_result *r = &job.r;
        bn_add(&af->create_sync, r->create_sync);
        bn_add(&af->create_commit, r->create_commit);
        bn_add(&af->create_cpu, r->create_cpu);
        bn_add(&af->replace_cpu, r->replace_cpu);
        bn_add(&af->replace_sync, r->replace_sync);
        bn_add(&af->replace_commit, r->replace_commit);
        bn_add(&af->list, r->list);
        bn_add(&af->parse, r->parse);
        bn_add(&af->rest_create, r->create_sync - r->create_commit);
        bn_add(&af->rest_replace, r->replace_sync - r->replace_commit);
        af->table_bytes = r->table_bytes;
        for (int k = 0; k < EXTRA; k++) {
            bn_add(&af->add, r->add[k]);
            bn_add(&af->add_commit, r->add_commit[k]);
            bn_add(&af->remove, r->remove[k]);
            bn_add(&af->remove_commit, r->remove_commit[k]);
            bn_add(&af->add_by[k % 3], r->add[k]);
            bn_add(&af->remove_by[k % 3], r->remove[k]);
        }
        for (int k = 0; k < IDLE_CHECKS; k++)
            bn_add(&af->idle, r->idle[k]);
        bn_add(&af->verify, r->verify);
    }
    fleet_free(&f);
    fleet_free(&x);
    return rc;
}

static void print_apply(size_t n, int reps, const apply_figures *af)
{
    printf("  %zu workloads (%zu projects; the table lists back as %.1f MB of JSON), %d reps:\n", n,
           (n + 9) / 10, (double)af->table_bytes / 1e6, reps);
    printf("    create   sync %s (CPU %s)   commit %s\n", BN_FMT(&af->create_sync, 1),
           BN_FMT(&af->create_cpu, 1), BN_FMT(&af->create_commit, 1));
    printf("    replace  sync %s (CPU %s)   commit %s\n", BN_FMT(&af->replace_sync, 1),
           BN_FMT(&af->replace_cpu, 1), BN_FMT(&af->replace_commit, 1));
    printf("    sync = commit + the rest (model, render, counters) %.1f / %.1f (create / replace); "
           "listing the table back %s + parsing that %s is left to the next drift check\n",
           bn_median(&af->rest_create), bn_median(&af->rest_replace), BN_FMT(&af->list, 1),
           BN_FMT(&af->parse, 1));
    if (n == 1000) {
        double commit = max2(bn_median(&af->create_commit), bn_median(&af->replace_commit));
        double sync = max2(bn_median(&af->create_sync), bn_median(&af->replace_sync));
        printf(
            "    vs the %.0f ms target, the slower of create and replace: commit %.2f of it (%s), "
            "the whole sync %.2f (%s)\n",
            TARGET_APPLY_MS, commit / TARGET_APPLY_MS, bn_verdict(commit < TARGET_APPLY_MS),
            sync / TARGET_APPLY_MS, bn_verdict(sync < TARGET_APPLY_MS));
    }
    printf("    add one workload (one batch; %d per rep): %s, commit %s\n", EXTRA,
           BN_FMT(&af->add, 2), BN_FMT(&af->add_commit, 2));
    printf("       by policy: %s %s, %s %s, %s %s\n", KINDS[0], BN_FMT(&af->add_by[0], 2), KINDS[1],
           BN_FMT(&af->add_by[1], 2), KINDS[2], BN_FMT(&af->add_by[2], 2));
    printf("    remove one: %s, commit %s\n", BN_FMT(&af->remove, 2),
           BN_FMT(&af->remove_commit, 2));
    printf("       by policy: %s %s, %s %s, %s %s\n", KINDS[0], BN_FMT(&af->remove_by[0], 2),
           KINDS[1], BN_FMT(&af->remove_by[1], 2), KINDS[2], BN_FMT(&af->remove_by[2], 2));
    printf("    drift check: idle %s; the first after the adds (lists the table) %s\n",
           BN_FMT(&af->idle, 2), BN_FMT(&af->verify, 1));
}

/* ------------------------------------------------------------- 2. topology */

/*   workload ns  eth0 10.250.0.2/32 ── ink<hash> 10.250.0.1/32 ┐ node ns
 *   (node-agent/net, as the agent sets it up)                 │ (this process's,
 *   sink ns      eth0 203.0.113.10/24 ── upl 203.0.113.1/24 ──┘ forwarding)
 *
 * The sink routes the workload range back through the node, so that the
 * unfiltered runs get answers without masquerade; the filtered ones are
 * masqueraded and the sink sees 203.0.113.1 (checked every run). */
typedef struct topo {
    ink_net *net;
    ink_workload_net w;
    bool have_w;
    char *sink_path;
    bool have_upl;
} topo;

static int sink_configure(void *arg, ink_err *err)
{
    cleanup_nl struct nl_sock *sk = NULL;
    ink_link_info eth0;
    struct in_addr sink, uplink, net;
    inet_pton(AF_INET, SINK_ADDR, &sink);
    inet_pton(AF_INET, UPLINK_ADDR, &uplink);
    inet_pton(AF_INET, NET_ADDR, &net);
    if (ink_nl_open(&sk, err) < 0 || ink_nl_link_up(sk, "lo", err) < 0)
        return -1;
    int r = ink_nl_link_get(sk, "eth0", &eth0, err);
    if (r <= 0)
        return r < 0 ? -1 : ink_err_set(err, ENODEV, "the sink's eth0 is missing");
    ink_nl_route back = {
        .dst = net, .dst_len = 16, .ifindex = eth0.ifindex, .gateway = uplink, .onlink = true};
    if (ink_nl_addr_add(sk, eth0.ifindex, sink, 24, err) < 0 ||
        ink_nl_link_up(sk, "eth0", err) < 0 || ink_nl_route_replace(sk, &back, err) < 0)
        return -1;
    return 0;
}

static int topo_up(topo *t, ink_err *err)
{
    memset(t, 0, sizeof *t);
    ink_net_config nc = {.state_dir = STATE_DIR, .netns_dir = NETNS_DIR, .cidr = CIDR};
    if (ink_net_open(&nc, &t->net, err) < 0)
        return -1;
    if (ink_workload_net_setup(t->net, WL_ID, &t->w, err) < 0)
        return -1;
    t->have_w = true;
    if (ink_netns_create(NETNS_DIR, "sink", &t->sink_path, err) < 0)
        return ink_err_wrap(err, "the sink's namespace");

    cleanup_nl struct nl_sock *sk = NULL;
    if (ink_nl_open(&sk, err) < 0)
        return -1;
    cleanup_close int nsfd = open(t->sink_path, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0)
        return ink_err_set(err, errno, "open %s", t->sink_path);
    if (ink_nl_veth_create(sk, "upl", "eth0", nsfd, 0, err) < 0)
        return ink_err_wrap(err, "the uplink veth");
    t->have_upl = true;
    ink_link_info upl;
    struct in_addr uplink;
    inet_pton(AF_INET, UPLINK_ADDR, &uplink);
    int r = ink_nl_link_get(sk, "upl", &upl, err);
    if (r <= 0)
        return r < 0 ? -1 : ink_err_set(err, ENODEV, "the uplink vanished");
    if (ink_nl_addr_add(sk, upl.ifindex, uplink, 24, err) < 0 || ink_nl_link_up(sk, "upl", err) < 0)
        return ink_err_wrap(err, "the uplink");
    return ink_netns_run(t->sink_path, sink_configure, NULL, err);
}

static void topo_down(topo *t)
{
    ink_err err = {0};
    if (t->have_upl) {
        cleanup_nl struct nl_sock *sk = NULL;
        if (ink_nl_open(&sk, &err) < 0 || ink_nl_link_delete(sk, "upl", &err) < 0)
            fprintf(stderr, "egress_bench: teardown: %s\n", err.msg);
    }
    if (t->sink_path && ink_netns_delete(NETNS_DIR, "sink", &err) < 0)
        fprintf(stderr, "egress_bench: teardown: %s\n", err.msg);
    if (t->have_w && ink_workload_net_teardown(t->net, WL_ID, &err) < 0)
        fprintf(stderr, "egress_bench: teardown: %s\n", err.msg);
    ink_workload_net_free(&t->w);
    ink_net_close(t->net);
    free(t->sink_path);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------- 2. traffic */

typedef struct probe {
    struct sockaddr_in dst;
    const char *result; /* connected | refused | timeout | an error */
} probe;

/* In the workload's namespace (ink_netns_run): one TCP connection
 * attempt, 400 ms. */
static int probe_fn(void *arg, ink_err *err)
{
    probe *p = arg;
    cleanup_close int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ink_err_set(err, errno, "socket");
    if (bn_dial(fd, &p->dst, 400) == 0)
        p->result = "connected";
    else
        p->result = errno == ETIMEDOUT      ? "timeout"
                    : errno == ECONNREFUSED ? "refused"
                                            : strerror(errno);
    return 0;
}

/* What the packets go through in a run. */
typedef enum path { PATH_NONE, PATH_NAT, PATH_INK } path;
static const char *const PATH_NAMES[] = {"unfiltered", "nat-only", "filtered"};

typedef struct tput_ctx {
    topo *t;
    bn_sink *sink;
    ink_firewall *fw;
    const ink_fw_spec *spec;
    size_t nspec;
    path base; /* what the filtered runs are compared with: NONE or NAT */
    path now;
    bn_samples sync, commit; /* the re-applies between runs */
} tput_ctx;

static int set_path(tput_ctx *c, path p, ink_err *err)
{
    if (p != PATH_NAT && nft_cmd("delete table inet " NAT_TABLE, true, err) < 0)
        return -1;
    if (p == PATH_INK) {
        int64_t t0 = ink_mono_ns();
        if (ink_firewall_sync(c->fw, c->spec, c->nspec, true, err) < 0)
            return ink_err_wrap(err, "applying the table");
        bn_add(&c->sync, ms_since(t0));
        double commit = 0;
        if (commit_ms(c->fw, c->nspec, &commit, err) < 0)
            return -1;
        bn_add(&c->commit, commit);
    } else if (delete_table(err) < 0 || (p == PATH_NAT && nft_cmd(NAT_RULES, false, err) < 0)) {
        return -1;
    }
    int present = table_present(err);
    if (present < 0)
        return -1;
    if (present != (p == PATH_INK))
        return ink_err_set(err, 0, "table inet ink is %s for a %s run",
                           present ? "there" : "missing", PATH_NAMES[p]);
    c->now = p;
    return 0;
}

/* One timed run in the current state; checks what the sink saw.
 * mbps[0]: MB/s; mbps[1]: CPU ms per GB of the sender's and the
 * receiver's threads. The sender's counts the forwarding and filtering
 * too: the kernel does them in softirq on the sending CPU (this kernel
 * has no IRQ time accounting, so that time is the thread's), unless it
 * defers them to ksoftirqd. */
static int run_once(tput_ctx *c, double secs, double mbps[2], ink_err *err)
{
    bn_send j = {.dst = c->sink->addr, .secs = secs, .cpu = -1}; /* not pinned */
    if (bn_send_bulk_in(c->t->w.netns_path, &j, err) < 0)
        return ink_err_wrap(err, "%s run", PATH_NAMES[c->now]);
    struct in_addr peer = bn_sink_peer(c->sink);
    double sink_cpu = bn_sink_cpu_ms(c->sink);
    struct in_addr want = c->t->w.addr;
    if (c->now != PATH_NONE) /* masqueraded */
        inet_pton(AF_INET, UPLINK_ADDR, &want);
    if (peer.s_addr != want.s_addr) {
        char got[INET_ADDRSTRLEN], exp[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &peer, got, sizeof got);
        inet_ntop(AF_INET, &want, exp, sizeof exp);
        return ink_err_set(err, 0, "%s run: the sink saw %s, not %s", PATH_NAMES[c->now], got, exp);
    }
    mbps[0] = j.mbps;
    mbps[1] = (j.cpu_ms + sink_cpu) / ((double)j.sent / 1e9);
    return 0;
}

static int smtp_probe(tput_ctx *c, const char **result, ink_err *err)
{
    probe p = {.dst = {.sin_family = AF_INET, .sin_port = htons(SMTP_PORT)}};
    inet_pton(AF_INET, SINK_ADDR, &p.dst.sin_addr);
    if (ink_netns_run(c->t->w.netns_path, probe_fn, &p, err) < 0)
        return -1;
    *result = p.result;
    return 0;
}

typedef struct tput_figures {
    bn_samples unf, fil, ratio, sync, commit;
    bn_samples cpu_unf, cpu_fil; /* ms per GB */
    char check[256];
} tput_figures;

static int tput_runs(tput_ctx *c, int pairs, double secs, tput_figures *tf, ink_err *err)
{
    /* The filter is in force for this workload: SMTP to the sink is
     * refused without the table (nothing listens) and dropped, and
     * counted, with it. */
    const char *before, *after;
    if (set_path(c, c->base, err) < 0 || smtp_probe(c, &before, err) < 0 ||
        set_path(c, PATH_INK, err) < 0 || smtp_probe(c, &after, err) < 0)
        return -1;
    if (strcmp(before, "refused") != 0 || strcmp(after, "timeout") != 0)
        return ink_err_set(err, 0,
                           "tcp %s:%d from the workload: %s %s, %s with table inet ink "
                           "(want refused, then timeout)",
                           SINK_ADDR, SMTP_PORT, before, PATH_NAMES[c->base], after);
    if (ink_firewall_check_drift(c->fw, NULL, 0, err) < 0)
        return ink_err_wrap(err, "reading the drop counters");
    ink_fw_blocked b[16];
    size_t nb = ink_firewall_blocked(c->fw, WL_ID, b, INK_ARRAY_LEN(b));
    uint64_t smtp = 0;
    for (size_t i = 0; i < nb; i++)
        if (strcmp(b[i].category, "smtp") == 0)
            smtp = b[i].packets;
    if (smtp == 0)
        return ink_err_set(err, 0, "the dropped SMTP attempt was not counted as smtp");
    snprintf(tf->check, sizeof tf->check,
             "tcp %s:%d from the workload: %s %s, %s with table inet ink (counted smtp=%llu)",
             SINK_ADDR, SMTP_PORT, before, PATH_NAMES[c->base], after, (unsigned long long)smtp);

    double warm[2];
    int rc = run_once(c, secs < 1 ? secs : 1, warm, err); /* filtered, untimed */
    for (int i = 0; i < pairs && rc == 0; i++) {
        /* Alternate which goes first, so that drift (frequency, other
         * load) hits both alike. */
        bool order[2] = {i % 2 == 1, i % 2 == 0}; /* false: the baseline */
        double mb[2][2] = {{0, 0}, {0, 0}};       /* [baseline, filtered][MB/s, CPU ms/GB] */
        for (int k = 0; k < 2 && rc == 0; k++) {
            path p = order[k] ? PATH_INK : c->base;
            if (c->now != p) {
                rc = set_path(c, p, err);
                /* Let the kernel's deferred work for the change (the old
                 * table freed after an RCU grace period, in a worker) pass
                 * before the run rather than into it. */
                usleep(SETTLE_MS * 1000);
            }
            if (rc == 0)
                rc = run_once(c, secs, mb[order[k]], err);
        }
        if (rc < 0)
            break;
        bn_add(&tf->unf, mb[0][0]);
        bn_add(&tf->fil, mb[1][0]);
        bn_add(&tf->ratio, mb[1][0] / mb[0][0]);
        bn_add(&tf->cpu_unf, mb[0][1]);
        bn_add(&tf->cpu_fil, mb[1][1]);
        printf("    pair %d: %s %6.0f MB/s   filtered %6.0f MB/s   ratio %.3f   CPU ms/GB %.0f / "
               "%.0f%s\n",
               i + 1, PATH_NAMES[c->base], mb[0][0], mb[1][0], mb[1][0] / mb[0][0], mb[0][1],
               mb[1][1], order[0] ? "   (filtered first)" : "");
        fflush(stdout);
    }
    tf->sync = c->sync;
    tf->commit = c->commit;
    return rc;
}

static int bench_throughput(path base, int pairs, double secs, tput_figures *tf, ink_err *err)
{
    memset(tf, 0, sizeof *tf);
    topo t;
    bn_sink sink;
    bool sink_up = false;
    struct sockaddr_in sink_addr = {.sin_family = AF_INET, .sin_port = htons(SINK_PORT)};
    inet_pton(AF_INET, SINK_ADDR, &sink_addr.sin_addr);
    int rc = topo_up(&t, err);
    if (rc == 0)
        rc = bn_sink_start(&sink, t.sink_path, &sink_addr, -1, err);
    sink_up = rc == 0;
    ink_firewall_config cfg = {
        .policy_dir = POLICY_DIR, .workload_cidr = CIDR, .strict_files = true};
    ink_firewall *fw = NULL;
    if (rc == 0)
        rc = ink_firewall_open(&cfg, &fw, err);
    fleet f = {0};
    if (rc == 0) {
        /* The measured workload, with OTHERS around it in the sets. */
        fleet_make(&f, OTHERS, "w", ntohl(t.w.addr.s_addr) + 1);
        f.spec[OTHERS] = (ink_fw_spec){.workload_id = WL_ID,
                                       .addr = t.w.addr,
                                       .project = "bench",
                                       .app = "bench",
                                       .policy = "default"};
        tput_ctx c = {.t = &t,
                      .sink = &sink,
                      .fw = fw,
                      .spec = f.spec,
                      .nspec = OTHERS + 1,
                      .base = base,
                      .now = PATH_NONE};
        printf("  workload %s (%s, default policy) among %d others; sink %s:%d; %d pairs of %g s"
               " runs, MB/s = 10^6 B/s\n",
               WL_ID, t.w.addr_str, OTHERS, SINK_ADDR, SINK_PORT, pairs, secs);
        fflush(stdout);
        rc = tput_runs(&c, pairs, secs, tf, err);
    }
    ink_firewall_close(fw);
    ink_err derr = {0};
    if (delete_table(&derr) < 0 || nft_cmd("delete table inet " NAT_TABLE, true, &derr) < 0)
        fprintf(stderr, "egress_bench: teardown: %s\n", derr.msg);
    if (sink_up)
        bn_sink_stop(&sink);
    topo_down(&t);
    fleet_free(&f);
    return rc;
}

/* ------------------------------------------------------------- main */

/* "1000,10000": workload counts for part 1. */
static int parse_sizes(const char *v, size_t *out, size_t *n)
{
    *n = 0;
    for (const char *p = v; *p;) {
        char *end;
        unsigned long x = strtoul(p, &end, 10);
        if (end == p || x < 1 || x > 60000 || *n == SIZES_MAX || (*end && *end != ','))
            return -1;
        out[(*n)++] = x;
        p = *end ? end + 1 : end;
    }
    return *n ? 0 : -1;
}

static int usage(void)
{
    fprintf(stderr, "usage: egress_bench [--reps N] [--sizes N,N...] [--pairs N] [--secs S] "
                    "[--baseline none|nat] [--only apply|throughput] [--policies DIR]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int reps = 5, pairs = 5;
    size_t sizes[SIZES_MAX] = {1000, 10000}, nsizes = 2;
    double secs = 3;
    const char *only = NULL, *policies = INK_SOURCE_POLICY_DIR;
    path base = PATH_NONE;
    /* Every option takes a value. */
    for (int i = 1; i < argc; i += 2) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        if (strcmp(o, "--reps") == 0)
            reps = atoi(v);
        else if (strcmp(o, "--pairs") == 0)
            pairs = atoi(v);
        else if (strcmp(o, "--secs") == 0)
            secs = atof(v);
        else if (strcmp(o, "--baseline") == 0 && strcmp(v, "none") == 0)
            base = PATH_NONE;
        else if (strcmp(o, "--baseline") == 0 && strcmp(v, "nat") == 0)
            base = PATH_NAT;
        else if (strcmp(o, "--only") == 0)
            only = v;
        else if (strcmp(o, "--policies") == 0)
            policies = v;
        else if (strcmp(o, "--sizes") != 0 || parse_sizes(v, sizes, &nsizes) < 0)
            return usage();
    }
    if (reps < 1 || reps > 20 || pairs < 1 || pairs > 20 || !(secs >= 0.2 && secs <= 60) ||
        (only && strcmp(only, "apply") != 0 && strcmp(only, "throughput") != 0))
        return usage();
    if (geteuid() != 0) {
        fprintf(stderr, "egress_bench: needs root (network and mount namespaces, nftables)\n");
        return 1;
    }
    /* The firewall's per-apply info lines would drown the figures. */
    ink_log_init("egress_bench", INK_LOG_WARN, INK_LOG_LOGFMT);
    ink_err err = {0};
    cleanup_free char *src = realpath(policies, NULL);
    cleanup_close int srcfd = src ? open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (srcfd < 0) {
        fprintf(stderr, "egress_bench: policies %s: %s\n", policies, strerror(errno));
        return 1;
    }
    if (bn_isolate(SCRATCH, "egress-bench", &err) < 0 ||
        copy_policies(srcfd, src, POLICY_DIR, &err) < 0) {
        fprintf(stderr, "egress_bench: %s\n", err.msg);
        return 1;
    }
    bn_exit_on_signals();

    char load0[64], load1[64];
    bn_load_average(load0, sizeof load0);
    printf("bench/egress: table inet ink through libnftables (node-agent/net/firewall.c), in "
           "namespaces of its own; %ld CPUs, load average %s\n",
           sysconf(_SC_NPROCESSORS_ONLN), load0);
    printf("  policies: the shipped ones (%s), strict_files; workload range %s; ms unless said, "
           "median (min-max)\n",
           src, CIDR);
    fflush(stdout);

    apply_figures af[SIZES_MAX];
    tput_figures tf;
    bool do_apply = !only || strcmp(only, "apply") == 0;
    bool do_tput = !only || strcmp(only, "throughput") == 0;
    if (do_apply) {
        printf("1. apply: ink_firewall_sync in a fresh network namespace, one batch (create: no "
               "table yet; replace: over it); commit = ink_firewall_last_apply\n");
        fflush(stdout);
        for (size_t s = 0; s < nsizes; s++) {
            if (bench_apply(sizes[s], reps, &af[s], &err) < 0) {
                fprintf(stderr, "egress_bench: apply: %s\n", err.msg);
                return 1;
            }
            print_apply(sizes[s], reps, &af[s]);
            fflush(stdout);
        }
    }
    if (do_tput) {
        const char *bn = PATH_NAMES[base];
        printf("2. throughput: TCP bulk, workload ns -> node ns (routed veth, forwarding) -> sink "
               "ns; filtered = table inet ink (masquerade included), %s = %s\n",
               bn,
               base == PATH_NAT ? "conntrack, one forward rule and masquerade only"
                                : "no nftables table at all");
        fflush(stdout);
        if (bench_throughput(base, pairs, secs, &tf, &err) < 0) {
            fprintf(stderr, "egress_bench: throughput: %s\n", err.msg);
            return 1;
        }
        double u = bn_median(&tf.unf), f = bn_median(&tf.fil);
        printf("    filter check: %s\n", tf.check);
        printf("    medians: %s %s MB/s, filtered %s MB/s\n", bn, BN_FMT(&tf.unf, 0),
               BN_FMT(&tf.fil, 0));
        printf("    filtered/%s: of the medians %.3f (target >= %.2f: %s); per pair %s\n", bn,
               f / u, TARGET_RATIO, bn_verdict(f / u >= TARGET_RATIO), BN_FMT(&tf.ratio, 3));
        double cu = bn_median(&tf.cpu_unf), cf = bn_median(&tf.cpu_fil);
        printf("    CPU per GB, sender + receiver threads (forwarding and filtering included, see "
               "run_once): %s %s ms, filtered %s ms;\n"
               "       %s/filtered %.3f: the throughput ratio on CPUs of its own\n",
               bn, BN_FMT(&tf.cpu_unf, 0), BN_FMT(&tf.cpu_fil, 0), bn, cu / cf);
        printf("    re-applying the table before each filtered run (%d workloads, veths and "
               "conntrack live): sync %s, commit %s\n",
               OTHERS + 1, BN_FMT(&tf.sync, 1), BN_FMT(&tf.commit, 1));
    }

    bn_load_average(load1, sizeof load1);
    printf("summary:");
    for (size_t i = 0; do_apply && i < nsizes; i++) {
        const apply_figures *x = &af[i];
        double cc = bn_median(&x->create_commit), cs = bn_median(&x->create_sync);
        double rc = bn_median(&x->replace_commit), rs = bn_median(&x->replace_sync);
        printf(" apply %zu: create commit %.1f ms, sync %.1f ms; replace commit %.1f ms, sync %.1f "
               "ms",
               sizes[i], cc, cs, rc, rs);
        if (sizes[i] == 1000)
            printf(" (target < %.0f ms: commit %s, sync %s)", TARGET_APPLY_MS,
                   bn_verdict(max2(cc, rc) < TARGET_APPLY_MS),
                   bn_verdict(max2(cs, rs) < TARGET_APPLY_MS));
        printf(";");
    }
    if (do_apply)
        printf(
            " at %zu: add %.2f ms, remove %.2f ms (allowlist %.2f ms), idle drift check %.2f ms;",
            sizes[0], bn_median(&af[0].add), bn_median(&af[0].remove),
            bn_median(&af[0].remove_by[0]), bn_median(&af[0].idle));
    if (do_tput) {
        double u = bn_median(&tf.unf), f = bn_median(&tf.fil);
        printf(" throughput %s %.0f MB/s, filtered %.0f MB/s, ratio %.3f, per pair %.3f "
               "(target >= %.2f: %s), by CPU per GB %.3f;",
               PATH_NAMES[base], u, f, f / u, bn_median(&tf.ratio), TARGET_RATIO,
               bn_verdict(f / u >= TARGET_RATIO), bn_median(&tf.cpu_unf) / bn_median(&tf.cpu_fil));
    }
    printf(" load average %s -> %s\n", load0, load1);
    return 0;
}
