/* Workload networking on a node: one network namespace per workload, joined
 * to the node by a routed point-to-point veth pair.
 *
 *   node netns                          workload netns (/run/ink/netns/<id>)
 *   ink<hash>  gateway/32  <── veth ──>  eth0  ip/32, default via gateway onlink
 *   route ip/32 dev ink<hash>            lo up
 *
 * Every workload's host-side interface carries the same gateway address (the
 * first host address of the node range, never handed out); the node routes
 * each workload address to its interface and forwards between them. The
 * host interface name is a stable function of the workload id, so egress
 * policy can key nftables rules on it ("iifname ink…").
 *
 * Addresses come from a per-node range (IPAM) persisted in
 * state_dir/ipam.json. Nothing lives only in memory: setup adopts whatever a
 * previous agent left (namespace mount, veth, addresses, routes) and repairs
 * what is missing, so an agent restart never disturbs running workloads.
 * Setup and teardown are idempotent and safe after a partial failure. */
#ifndef INK_NET_H
#define INK_NET_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define INK_NET_DEFAULT_NETNS_DIR "/run/ink/netns"
#define INK_NET_WORKLOAD_IFNAME "eth0"
#define INK_NET_WORKLOAD_ID_MAX 128

/* Workload ids name files (the namespace mount) and JSON keys:
 * [A-Za-z0-9][A-Za-z0-9._-]{0,127}. */
bool ink_net_valid_workload_id(const char *id);

/* "ink" + 12 hex digits of a hash of the workload id (15 characters, within
 * IFNAMSIZ). Stable across agent versions: nftables rules and re-adoption
 * depend on it. */
void ink_net_host_ifname(const char *workload_id, char out[IFNAMSIZ]);

/* ---- IPAM: addresses from the node's range, persisted ------------------ */

typedef struct ink_ipam ink_ipam;

/* Opens (creating state_dir if needed) the allocation table of the range
 * `cidr` ("10.88.0.0/24"; prefix 8..30, host bits zero). The table is
 * state_dir/ipam.json; a file that cannot be parsed, or holds allocations
 * from a different range, is an error and is never overwritten. Every
 * operation re-reads and rewrites the file under an exclusive lock
 * (state_dir/ipam.lock), so handles in several threads or processes agree. */
int ink_ipam_open(const char *state_dir, const char *cidr, ink_ipam **out, ink_err *err);
void ink_ipam_close(ink_ipam *ipam);

/* The address of workload_id: the one it already has, or the next free one
 * (network, gateway and broadcast addresses are never handed out; released
 * addresses are reused only after the rest of the range). Persisted before
 * it returns. A full range is an error with errnum ENOSPC. */
int ink_ipam_allocate(ink_ipam *ipam, const char *workload_id, struct in_addr *out, ink_err *err);

/* 1 and *out when workload_id has an address, 0 when not, -1 on error. */
int ink_ipam_lookup(ink_ipam *ipam, const char *workload_id, struct in_addr *out, ink_err *err);

/* Frees the workload's address; releasing one that has none is not an error. */
int ink_ipam_release(ink_ipam *ipam, const char *workload_id, ink_err *err);

typedef struct ink_ipam_entry {
    char workload_id[INK_NET_WORKLOAD_ID_MAX + 1];
    struct in_addr addr;
} ink_ipam_entry;

/* Every allocation, by address (caller frees *out), e.g. to tear down
 * workloads that are no longer wanted after a restart. */
int ink_ipam_list(ink_ipam *ipam, ink_ipam_entry **out, size_t *n, ink_err *err);

struct in_addr ink_ipam_gateway(const ink_ipam *ipam);
int ink_ipam_prefix_len(const ink_ipam *ipam);

/* ---- network namespaces mounted at dir/<name> ------------------------- */

/* Creates a network namespace and bind-mounts it at dir/name (dir is made a
 * shared mount point, as iproute2 does with /run/netns). An existing mount
 * there is kept (idempotent). *path (optional, caller frees) gets dir/name. */
int ink_netns_create(const char *dir, const char *name, char **path, ink_err *err);

/* Unmounts and removes dir/name; a missing one is not an error. The
 * namespace itself ends when no process uses it any more. */
int ink_netns_delete(const char *dir, const char *name, ink_err *err);

/* 1 when path is a mounted network namespace, 0 when not, -1 on error. */
int ink_netns_mounted(const char *path, ink_err *err);

/* Runs fn in a fresh thread that has entered the namespace at path, and
 * returns its result; the calling thread's namespace never changes. fn
 * opens its own netlink sockets (they bind to the namespace they are
 * created in). */
typedef int (*ink_netns_fn)(void *arg, ink_err *err);
int ink_netns_run(const char *path, ink_netns_fn fn, void *arg, ink_err *err);

/* ---- workload networking ---------------------------------------------- */

typedef struct ink_net_config {
    const char *state_dir; /* ipam.json lives here */
    const char *netns_dir; /* NULL: INK_NET_DEFAULT_NETNS_DIR */
    const char *cidr;      /* the node's workload range, e.g. "10.88.0.0/24" */
    unsigned mtu;          /* of new veth pairs; 0: kernel default */
} ink_net_config;

typedef struct ink_net ink_net;

int ink_net_open(const ink_net_config *cfg, ink_net **out, ink_err *err);
void ink_net_close(ink_net *net);
ink_ipam *ink_net_ipam(ink_net *net);

typedef struct ink_workload_net {
    char workload_id[INK_NET_WORKLOAD_ID_MAX + 1];
    struct in_addr addr;    /* the workload's address (eth0, /32) */
    struct in_addr gateway; /* its default gateway (host side of the veth) */
    char addr_str[INET_ADDRSTRLEN], gateway_str[INET_ADDRSTRLEN];
    char host_ifname[IFNAMSIZ];
    int host_ifindex;  /* in the agent's namespace; 0 when absent */
    char *netns_path;  /* dir/<workload id>, owned: ink_workload_net_free */
    bool netns_exists; /* the namespace is mounted */
    bool adopted;      /* (setup) the veth pair already existed and was kept */
} ink_workload_net;

void ink_workload_net_free(ink_workload_net *w);

/* Gives the workload its address, namespace and veth pair, with addresses
 * and routes on both sides, and turns on IPv4 forwarding in the agent's
 * namespace. Whatever already exists as it should is kept: calling it again
 * (after an agent restart, or a failure half-way) leaves a working
 * workload alone and repairs a broken one. IPv6 is turned off on both ends
 * of the pair (the range is IPv4; no unfiltered link-local path). */
int ink_workload_net_setup(ink_net *net, const char *workload_id, ink_workload_net *out,
                           ink_err *err);

/* Removes the veth pair (with its addresses and routes), the namespace
 * mount and the address allocation, in that order; anything already gone
 * is skipped, so it can be repeated. */
int ink_workload_net_teardown(ink_net *net, const char *workload_id, ink_err *err);

/* What exists for the workload, without changing anything: 1 when it has
 * an address (out filled), 0 when not. */
int ink_workload_net_lookup(ink_net *net, const char *workload_id, ink_workload_net *out,
                            ink_err *err);

#endif
