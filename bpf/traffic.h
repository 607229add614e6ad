/* The per-workload traffic counters, as the tc programs (traffic.bpf.c)
 * store them and ink-agent (node-agent/metrics/traffic.c) reads them: one
 * entry per host-side veth, keyed by its ifindex (__u32) in the agent's
 * network namespace.
 *
 * The map is per-CPU: every CPU has its own copy of the value and only ever
 * touches that one, so the programs add without atomics; readers sum the
 * copies (the last-activity times: the latest). Directions are the
 * workload's: its tx is what arrives on the host side (tc ingress), its rx
 * what leaves the host side towards it (tc egress). Bytes are skb->len,
 * the Ethernet header included, as in the interface's own counters;
 * packets are skbs (a GSO/GRO super-packet counts once, as there too).
 *
 * Shared by BPF and user space: only fixed-size kernel types, and a layout
 * that is the same on both sides (six naturally aligned __u64). Changing
 * it changes INK_TRAFFIC_PIN_NAME, so a new agent never reuses a pinned
 * map of the old layout. */
#ifndef INK_BPF_TRAFFIC_H
#define INK_BPF_TRAFFIC_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Upper bound of workloads on one node. The map is not preallocated
 * (BPF_F_NO_PREALLOC): memory follows the entries that exist. */
#define INK_TRAFFIC_MAX_ENTRIES 16384

/* File name of the pinned map in the agent's pin directory; the suffix is
 * the version of struct ink_traffic_value. */
#define INK_TRAFFIC_PIN_NAME "traffic_v1"

struct ink_traffic_value {
    __u64 tx_bytes; /* workload -> node (host-side ingress) */
    __u64 tx_packets;
    __u64 rx_bytes; /* node -> workload (host-side egress) */
    __u64 rx_packets;
    __u64 last_tx_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC; 0 = never */
    __u64 last_rx_ns;
};

#endif
