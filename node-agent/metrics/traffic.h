/* Per-workload traffic counters from eBPF: the tc programs of
 * bpf/traffic.bpf.c on each workload's host-side veth count the bytes and
 * packets it sends and receives, and when it last did, into one map.
 *
 *   ink_traffic_open    load the programs (a libbpf skeleton) with the map
 *                       pinned at PIN_DIR/traffic_v1, reusing a pinned one
 *   ink_traffic_attach  a workload's veth: its map entry (kept if there),
 *                       a clsact qdisc and Ink's ingress and egress filters
 *   ink_traffic_read    its counters; ink_traffic_list: every entry
 *   ink_traffic_detach  the filters, the qdisc and the map entry
 *
 * Counts outlive the agent: the map is pinned and the filters stay on the
 * interfaces, still counting while no agent runs. A restarted agent opens
 * the pinned map again and attaches each workload it adopts, which
 * replaces the old programs with its own and keeps the counts. Nothing is
 * reset except by detach (the workload is removed).
 *
 * A node where this cannot work (no BPF for tc, no bpffs, a pinned map of
 * another layout) gets an error from ink_traffic_open that says why; the
 * agent then runs with cgroup metrics only. All calls act in the calling
 * thread's network namespace (the agent's, where the host-side veths are)
 * and may be made from several threads at once. */
#ifndef INK_METRICS_TRAFFIC_H
#define INK_METRICS_TRAFFIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Where systemd and iproute2 expect the BPF file system, and Ink's
 * directory on it (mode 0700: only root reads the counters). */
#define INK_TRAFFIC_BPFFS "/sys/fs/bpf"
#define INK_TRAFFIC_DEFAULT_PIN_DIR INK_TRAFFIC_BPFFS "/ink"

/* Ink's tc filters, by handle and priority, on both hooks: "tc filter
 * show dev IF ingress" lists "pref 1 bpf ... handle 0x494e4b
 * ink_tc_ingress:[ID] direct-action". Priority 1 runs them before any
 * other filter, so they count what a later one may drop; they pass every
 * packet on to the next filter untouched (TC_ACT_UNSPEC). */
#define INK_TRAFFIC_TC_HANDLE 0x494e4b /* "INK" */
#define INK_TRAFFIC_TC_PRIORITY 1

typedef struct ink_traffic ink_traffic;

/* Directions are the workload's. Bytes are whole frames (Ethernet header
 * included) and packets are skbs, as in the interface's own statistics;
 * a GSO/GRO super-packet counts as one. */
typedef struct ink_traffic_counters {
    uint64_t tx_bytes, tx_packets; /* sent by the workload */
    uint64_t rx_bytes, rx_packets; /* received by it */
    uint64_t last_tx_ns;           /* CLOCK_MONOTONIC (ink_mono_ns); 0: never */
    uint64_t last_rx_ns;
} ink_traffic_counters;

typedef struct ink_traffic_entry {
    unsigned ifindex;
    ink_traffic_counters c;
} ink_traffic_entry;

/* pin_dir: NULL for INK_TRAFFIC_DEFAULT_PIN_DIR; an absolute path on a
 * BPF file system, or a new directory directly inside one. When the
 * parent is INK_TRAFFIC_BPFFS and nothing is mounted there, a bpffs is
 * mounted there (as systemd would have). Errors say what failed, with
 * libbpf's first warning when there is one. */
int ink_traffic_open(const char *pin_dir, ink_traffic **out, ink_err *err);
void ink_traffic_close(ink_traffic *t); /* NULL is fine; leaves filters and pins */

/* The map was found pinned (an agent before this one counted). */
bool ink_traffic_reused(const ink_traffic *t);
const char *ink_traffic_pin_path(const ink_traffic *t);

/* Counts ifname's traffic from now on: creates its map entry unless it
 * has one (which keeps counting), the clsact qdisc unless there is one,
 * and Ink's two filters, replacing Ink's filters already there (attaching
 * again is how a restarted agent takes over). *ifindex (optional) gets
 * the interface's index, the key of its counters. On an error part of it
 * may be in place: attach again, or detach. */
int ink_traffic_attach(ink_traffic *t, const char *ifname, unsigned *ifindex, ink_err *err);

/* Removes Ink's filters and the clsact qdisc from ifname (NULL, or an
 * interface that is already gone: skipped) and the map entries of ifindex
 * (0: none given) and of the interface ifname names now. Anything already
 * gone is not an error, so it can be repeated. */
int ink_traffic_detach(ink_traffic *t, const char *ifname, unsigned ifindex, ink_err *err);

/* 1 and *out when ifindex has an entry, 0 when not, -1 on error. */
int ink_traffic_read(ink_traffic *t, unsigned ifindex, ink_traffic_counters *out, ink_err *err);

/* Every entry (caller frees *out), e.g. to find entries of interfaces that
 * went away while no agent ran. */
int ink_traffic_list(ink_traffic *t, ink_traffic_entry **out, size_t *n, ink_err *err);

/* The kernel's run-time statistics of this instance's two programs:
 * nanoseconds spent in them and the packets they ran for, since it loaded
 * them. They only grow while somebody has BPF statistics on (the
 * kernel.bpf_stats_enabled sysctl, or bpf_enable_stats() as
 * bench/traffic_bench does): what the counters cost, measured. */
int ink_traffic_prog_stats(ink_traffic *t, uint64_t *run_ns, uint64_t *runs, ink_err *err);

/* The later of the last sent and last received packet; 0: none yet. */
uint64_t ink_traffic_last_activity(const ink_traffic_counters *c);

/* Adds up a per-CPU value as the map returns it (ncpus struct
 * ink_traffic_value of bpf/traffic.h): sums of the counters, the latest of
 * the times. */
struct ink_traffic_value;
void ink_traffic_sum(const struct ink_traffic_value *percpu, size_t ncpus,
                     ink_traffic_counters *out);

#endif
