/* bench/traffic: what the eBPF traffic counters (bpf/traffic.bpf.c through
 * node-agent/metrics/traffic.c) cost a workload's TCP throughput.
 *
 * A workload namespace joined to the node by the routed veth pair
 * node-agent/net makes for the agent; TCP bulk between the workload and a
 * socket on the node's gateway address, in both directions ("up": the
 * workload sends, its data through the ingress program and the node's
 * ACKs through the egress one; "down": the other way round), with the
 * counters attached (clsact qdisc, Ink's two filters, the map entry) and
 * detached (no qdisc at all), in alternating runs, the order flipped every
 * pair. Every attached run also checks the counters against what was
 * sent. Target: attached/detached >= 0.98. CPU time per GB of sender and
 * receiver threads is a second view (on a loaded machine the wall clock
 * also counts waiting for a CPU), as in egress_bench.
 *
 *   traffic_bench [--pairs N] [--secs S] [--dir up|down|both] [--cpus S,R|none]
 *
 * --cpus: the sender's and the receiver's CPU (default 0,1 with two CPUs
 * or more; "none" leaves them to the scheduler). The kernel's side of the
 * veth (both tc programs included) runs on the sender's CPU.
 *
 * Needs root. Safety: it moves into network and mount namespaces of its
 * own first (bench_net.h: bn_isolate), with a tmpfs on /tmp holding the
 * namespace mounts, the IPAM file and a BPF file system for the pinned
 * map, so every namespace, veth, qdisc, program and pin goes with the
 * process, however it ends. The normal path detaches and tears down as the
 * agent would. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "bench_net.h"
#include "log.h"
#include "net.h"
#include "traffic.h"
#include "util.h"

#define SCRATCH "/tmp"
#define NETNS_DIR SCRATCH "/netns"
#define STATE_DIR SCRATCH "/state"
#define BPFFS_DIR SCRATCH "/bpf"
#define PIN_DIR BPFFS_DIR "/ink"
#define CIDR "10.250.0.0/24"
#define WL_ID "traffic-bench"
#define UP_PORT 5001
#define DOWN_PORT 5002
#define SETTLE_MS 300
#define TARGET_RATIO 0.98

typedef struct bench {
    ink_net *net;
    ink_workload_net w;
    ink_traffic *t;
    unsigned ifindex;
    bool attached;
    bn_samples attach_ms, detach_ms;
    int stats_fd; /* BPF run-time statistics on while open (the first run); -1: off */
    int cpus[2];  /* of the sender and the receiver; -1: not pinned */
} bench;

/* ------------------------------------------------------------- setup */

static int setup(bench *b, double *open_ms, ink_err *err)
{
    if (mkdir(BPFFS_DIR, 0700) < 0 || mount("bpf", BPFFS_DIR, "bpf", 0, "mode=0700") < 0)
        return ink_err_set(err, errno, "a BPF file system on %s", BPFFS_DIR);
    int64_t t0 = ink_mono_ns();
    if (ink_traffic_open(PIN_DIR, &b->t, err) < 0)
        return ink_err_wrap(err, "eBPF traffic counters unavailable");
    *open_ms = (double)(ink_mono_ns() - t0) / 1e6;
    ink_net_config nc = {.state_dir = STATE_DIR, .netns_dir = NETNS_DIR, .cidr = CIDR};
    if (ink_net_open(&nc, &b->net, err) < 0 ||
        ink_workload_net_setup(b->net, WL_ID, &b->w, err) < 0)
        return ink_err_wrap(err, "the workload's network");
    b->ifindex = (unsigned)b->w.host_ifindex;
    return 0;
}

static void teardown(bench *b)
{
    ink_err err = {0};
    if (b->t && ink_traffic_detach(b->t, b->w.host_ifname, b->ifindex, &err) < 0)
        fprintf(stderr, "traffic_bench: teardown: %s\n", err.msg);
    if (b->net && b->w.netns_path && ink_workload_net_teardown(b->net, WL_ID, &err) < 0)
        fprintf(stderr, "traffic_bench: teardown: %s\n", err.msg);
    ink_workload_net_free(&b->w);
    ink_net_close(b->net);
    ink_traffic_close(b->t);
    umount2(BPFFS_DIR, MNT_DETACH);
}

static int set_attached(bench *b, bool on, ink_err *err)
{
    if (b->attached == on)
        return 0;
    int64_t t0 = ink_mono_ns();
    int rc = on ? ink_traffic_attach(b->t, b->w.host_ifname, NULL, err)
                : ink_traffic_detach(b->t, b->w.host_ifname, b->ifindex, err);
    if (rc < 0)
        return -1;
    bn_add(on ? &b->attach_ms : &b->detach_ms, (double)(ink_mono_ns() - t0) / 1e6);
    b->attached = on;
    /* Let deferred work of the change (the old programs and qdisc freed
     * after an RCU grace period) pass before the run, not during it. */
    usleep(SETTLE_MS * 1000);
    return 0;
}

/* ------------------------------------------------------------- runs */

typedef struct direction {
    const char *name, *what;
    bool up;                                      /* the workload sends */
    bn_samples det, att, ratio, cpu_det, cpu_att; /* MB/s; CPU ms per GB */
    int checked;                                  /* attached runs whose counts matched */
    uint64_t sent, retrans;                       /* over all runs */
    bn_samples prog_ns, prog_ms_gb; /* attached runs: in the programs, per skb and per GB */
} direction;

/* What went over the wire in the data direction against the counters:
 * every skb is payload plus 54..94 bytes of Ethernet, IPv4 and TCP
 * headers (see tests/integration/traffic_test.sh), whatever GSO made of
 * it, and the payload is what the application sent plus what TCP sent
 * again. */
static int check_counts(const direction *d, const ink_traffic_counters *c0,
                        const ink_traffic_counters *c1, const bn_send *j, ink_err *err)
{
    uint64_t bytes = d->up ? c1->tx_bytes - c0->tx_bytes : c1->rx_bytes - c0->rx_bytes;
    uint64_t pkts = d->up ? c1->tx_packets - c0->tx_packets : c1->rx_packets - c0->rx_packets;
    uint64_t payload = j->sent + j->retrans_bytes;
    if (bytes > payload + 94 * pkts || bytes < payload + 54 * pkts)
        return ink_err_set(err, 0,
                           "%s: %llu bytes sent (%llu of them again), the counters saw %llu bytes "
                           "in %llu packets",
                           d->name, (unsigned long long)payload,
                           (unsigned long long)j->retrans_bytes, (unsigned long long)bytes,
                           (unsigned long long)pkts);
    return 0;
}

/* One timed run in the current state: mb[0] MB/s, mb[1] CPU ms per GB. */
static int run_once(bench *b, direction *d, bn_sink *sink, double secs, double mb[2], ink_err *err)
{
    bn_send j = {.dst = sink->addr, .secs = secs, .cpu = b->cpus[0]};
    ink_traffic_counters c0 = {0}, c1 = {0};
    uint64_t ns0 = 0, runs0 = 0, ns1 = 0, runs1 = 0;
    if (b->attached && (ink_traffic_read(b->t, b->ifindex, &c0, err) != 1 ||
                        ink_traffic_prog_stats(b->t, &ns0, &runs0, err) < 0))
        return ink_err_set(err, 0, "no counters while attached");
    int rc = bn_send_bulk_in(d->up ? b->w.netns_path : "/proc/self/ns/net", &j, err);
    if (rc < 0)
        return ink_err_wrap(err, "%s run", d->name);
    if (b->attached) {
        if (ink_traffic_read(b->t, b->ifindex, &c1, err) != 1 ||
            check_counts(d, &c0, &c1, &j, err) < 0 ||
            ink_traffic_prog_stats(b->t, &ns1, &runs1, err) < 0)
            return -1;
        d->checked++;
        if (b->stats_fd >= 0 && runs1 > runs0) {
            bn_add(&d->prog_ns, (double)(ns1 - ns0) / (double)(runs1 - runs0));
            bn_add(&d->prog_ms_gb, (double)(ns1 - ns0) / 1e6 / ((double)j.sent / 1e9));
        }
    }
    d->sent += j.sent;
    d->retrans += j.retrans_bytes;
    mb[0] = j.mbps;
    mb[1] = (j.cpu_ms + bn_sink_cpu_ms(sink)) / ((double)j.sent / 1e9);
    return 0;
}

static int run_direction(bench *b, direction *d, int pairs, double secs, ink_err *err)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr = d->up ? b->w.gateway : b->w.addr;
    addr.sin_port = htons(d->up ? UP_PORT : DOWN_PORT);
    bn_sink sink;
    if (bn_sink_start(&sink, d->up ? NULL : b->w.netns_path, &addr, b->cpus[1], err) < 0)
        return ink_err_wrap(err, "%s: the sink", d->name);
    printf("  %s (%s):\n", d->name, d->what);
    fflush(stdout);
    /* The first run, attached and untimed, warms up and measures the
     * programs with the kernel's BPF run-time statistics; those are off
     * again for the timed runs (they add two clock reads per packet). */
    double warm[2];
    b->stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
    int rc = set_attached(b, true, err);
    if (rc == 0)
        rc = run_once(b, d, &sink, secs, warm, err);
    if (b->stats_fd >= 0)
        close(b->stats_fd);
    b->stats_fd = -1;
    for (int i = 0; i < pairs && rc == 0; i++) {
        bool order[2] = {i % 2 == 1, i % 2 == 0}; /* true: attached */
        double mb[2][2] = {{0, 0}, {0, 0}};       /* [detached, attached][MB/s, CPU ms/GB] */
        for (int k = 0; k < 2 && rc == 0; k++) {
            rc = set_attached(b, order[k], err);
            if (rc == 0)
                rc = run_once(b, d, &sink, secs, mb[order[k]], err);
        }
        if (rc < 0)
            break;
        bn_add(&d->det, mb[0][0]);
        bn_add(&d->att, mb[1][0]);
        bn_add(&d->ratio, mb[1][0] / mb[0][0]);
        bn_add(&d->cpu_det, mb[0][1]);
        bn_add(&d->cpu_att, mb[1][1]);
        printf("    pair %d: detached %6.0f MB/s   attached %6.0f MB/s   ratio %.3f   CPU ms/GB "
               "%.0f / %.0f%s\n",
               i + 1, mb[0][0], mb[1][0], mb[1][0] / mb[0][0], mb[0][1], mb[1][1],
               order[0] ? "   (attached first)" : "");
        fflush(stdout);
    }
    bn_sink_stop(&sink);
    if (rc < 0)
        return -1;
    double u = bn_median(&d->det), a = bn_median(&d->att);
    printf("    medians: detached %s MB/s, attached %s MB/s\n", BN_FMT(&d->det, 0),
           BN_FMT(&d->att, 0));
    printf("    attached/detached: of the medians %.3f (target >= %.2f: %s); per pair %s\n", a / u,
           TARGET_RATIO, bn_verdict(a / u >= TARGET_RATIO), BN_FMT(&d->ratio, 3));
    printf("    CPU per GB, sender + receiver threads: detached %s ms, attached %s ms; "
           "detached/attached %.3f\n",
           BN_FMT(&d->cpu_det, 0), BN_FMT(&d->cpu_att, 0),
           bn_median(&d->cpu_det) / bn_median(&d->cpu_att));
    if (d->prog_ns.n)
        printf("    in the two programs (first run, kernel BPF statistics, their own clock reads "
               "included): %.0f ns per packet, %.2f ms per GB: %.2f %% of the attached runs' CPU "
               "per GB\n",
               bn_median(&d->prog_ns), bn_median(&d->prog_ms_gb),
               100 * bn_median(&d->prog_ms_gb) / bn_median(&d->cpu_att));
    printf("    counters matched the bytes on the wire in all %d attached runs; TCP sent %.4f %% "
           "of the bytes again\n",
           d->checked, 100.0 * (double)d->retrans / (double)(d->sent ? d->sent : 1));
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------- main */

static int usage(void)
{
    fprintf(stderr, "usage: traffic_bench [--pairs N] [--secs S] [--dir up|down|both] "
                    "[--cpus S,R|none]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int pairs = 5;
    double secs = 3;
    const char *dir = "both", *cpus = sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? "0,1" : "none";
    for (int i = 1; i < argc; i += 2) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        if (strcmp(o, "--pairs") == 0)
            pairs = atoi(v);
        else if (strcmp(o, "--secs") == 0)
            secs = atof(v);
        else if (strcmp(o, "--dir") == 0)
            dir = v;
        else if (strcmp(o, "--cpus") == 0)
            cpus = v;
        else
            return usage();
    }
    bool up = strcmp(dir, "up") == 0 || strcmp(dir, "both") == 0;
    bool down = strcmp(dir, "down") == 0 || strcmp(dir, "both") == 0;
    if (pairs < 1 || pairs > 50 || !(secs >= 0.2 && secs <= 60) || !(up || down))
        return usage();
    if (geteuid() != 0) {
        fprintf(stderr, "traffic_bench: needs root (network and mount namespaces, BPF)\n");
        return 1;
    }
    ink_log_init("traffic_bench", INK_LOG_WARN, INK_LOG_LOGFMT);
    ink_err err = {0};
    if (bn_isolate(SCRATCH, "traffic-bench", &err) < 0) {
        fprintf(stderr, "traffic_bench: %s\n", err.msg);
        return 1;
    }
    bn_exit_on_signals();

    char load0[64], load1[64];
    bn_load_average(load0, sizeof load0);
    printf("bench/traffic: the eBPF tc traffic counters on a workload veth (node-agent/metrics), "
           "in namespaces of its own; %ld CPUs, load average %s\n",
           sysconf(_SC_NPROCESSORS_ONLN), load0);
    bench b = {.stats_fd = -1, .cpus = {-1, -1}};
    if (strcmp(cpus, "none") != 0 && sscanf(cpus, "%d,%d", &b.cpus[0], &b.cpus[1]) != 2)
        return usage();
    double open_ms = 0;
    if (setup(&b, &open_ms, &err) < 0) {
        fprintf(stderr, "traffic_bench: %s\n", err.msg);
        teardown(&b);
        return 1;
    }
    printf("  workload %s %s, host side %s, node %s; TCP bulk, one connection, %d pairs of %g s "
           "runs, MB/s = 10^6 B/s; sender on CPU %d, receiver on CPU %d (-1: any); "
           "ink_traffic_open %.1f ms\n",
           WL_ID, b.w.addr_str, b.w.host_ifname, b.w.gateway_str, pairs, secs, b.cpus[0], b.cpus[1],
           open_ms);
    fflush(stdout);

    direction dirs[2] = {
        {.name = "up",
         .what = "workload -> node: data through ingress, ACKs through egress",
         .up = true},
        {.name = "down", .what = "node -> workload: data through egress, ACKs through ingress"},
    };
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++)
        if (i == 0 ? up : down)
            rc = run_direction(&b, &dirs[i], pairs, secs, &err);
    if (rc == 0)
        printf("  attach (entry, qdisc, 2 filters) %s ms, detach %s ms\n", BN_FMT(&b.attach_ms, 2),
               BN_FMT(&b.detach_ms, 2));
    teardown(&b);
    if (rc < 0) {
        fprintf(stderr, "traffic_bench: %s\n", err.msg);
        return 1;
    }

    bn_load_average(load1, sizeof load1);
    printf("summary:");
    for (int i = 0; i < 2; i++) {
        direction *d = &dirs[i];
        if (d->det.n == 0)
            continue;
        double u = bn_median(&d->det), a = bn_median(&d->att);
        printf(" %s: detached %.0f MB/s, attached %.0f MB/s, ratio %.3f, per pair %.3f (target >= "
               "%.2f: %s), by CPU per GB %.3f;",
               d->name, u, a, a / u, bn_median(&d->ratio), TARGET_RATIO,
               bn_verdict(a / u >= TARGET_RATIO), bn_median(&d->cpu_det) / bn_median(&d->cpu_att));
    }
    printf(" attach %.2f ms, detach %.2f ms; load average %s -> %s\n", bn_median(&b.attach_ms),
           bn_median(&b.detach_ms), load0, load1);
    return 0;
}
