/* tc (clsact) programs on each workload's host-side veth: count what the
 * workload sends (ingress here) and receives (egress here), and when it
 * last did, into the per-CPU hash map `ink_traffic` (bpf/traffic.h).
 *
 * They never change traffic: every path returns TC_ACT_UNSPEC, which in
 * direct-action mode means "no verdict, go on with the next filter" (none:
 * the packet passes). Not TC_ACT_OK: that is a verdict too; it ends the
 * filter chain, so a filter after Ink's (a later drop or rate limit)
 * would never see the packet, and at ingress it also sets skb->tc_index.
 *
 * They only count for interfaces that have an entry, which the agent
 * creates when it attaches and deletes when it detaches: a program
 * attached anywhere else (by hand, or left over) cannot add entries, so
 * the map holds exactly the workloads the agent knows of.
 *
 * Per-CPU rather than atomic adds on one shared value: a workload's
 * traffic is handled on several CPUs at once (its own sends on the
 * sending CPU, what it receives wherever the node's softirq runs), and
 * shared counters would bounce one cache line between them on every
 * packet, rx and tx alike since they sit in the same 48 bytes. Each CPU
 * writing its own copy costs no atomic and no sharing; tc programs run
 * with bottom halves disabled, so nothing else on the same CPU updates the
 * same copy in between. The price, 48 bytes per possible CPU per workload,
 * is paid only for entries that exist (no preallocation), and readers
 * (every few seconds) sum the copies. */
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>

#include "traffic.h"

/* linux/pkt_cls.h: macros are not in BTF, so not in vmlinux.h. */
#define TC_ACT_UNSPEC (-1)

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, INK_TRAFFIC_MAX_ENTRIES);
    __type(key, __u32);
    __type(value, struct ink_traffic_value);
} ink_traffic SEC(".maps");

static __always_inline void count(const struct __sk_buff *skb, bool workload_tx)
{
    __u32 ifindex = skb->ifindex;
    struct ink_traffic_value *v = bpf_map_lookup_elem(&ink_traffic, &ifindex);
    if (!v)
        return; /* not a workload the agent attached: nothing to create */
    __u64 now = bpf_ktime_get_ns();
    if (workload_tx) {
        v->tx_bytes += skb->len;
        v->tx_packets++;
        v->last_tx_ns = now;
    } else {
        v->rx_bytes += skb->len;
        v->rx_packets++;
        v->last_rx_ns = now;
    }
}

/* Arriving on the host side: sent by the workload. At tc ingress cls_bpf
 * pushes the MAC header back for the program, so skb->len is the whole
 * frame, as at egress. */
SEC("tc")
int ink_tc_ingress(struct __sk_buff *skb)
{
    count(skb, true);
    return TC_ACT_UNSPEC;
}

/* Leaving the host side: to be received by the workload. */
SEC("tc")
int ink_tc_egress(struct __sk_buff *skb)
{
    count(skb, false);
    return TC_ACT_UNSPEC;
}
