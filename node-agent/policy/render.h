/* nftables text for Ink's table, rendered from the policies, the node's
 * facts and its workloads. Pure (no kernel): net/firewall.c applies the
 * text through libnftables, `ink-agent policy check` prints it, the unit
 * tests compare it.
 *
 * The whole table replaces itself in one transaction:
 *
 *   add table inet ink        (so that the delete never fails)
 *   delete table inet ink
 *   table inet ink { ... }
 *
 * and a workload that comes or goes is one batch of element inserts or
 * deletes (with its project's chain and set when it is the project's
 * first or last workload on the node). A project's chain and set go with
 * its last workload, in the same batch, rather than stay: the table then
 * always holds exactly what its workloads need, so the incremental path
 * and a full render (start, drift repair, reload) make the same table,
 * and nothing of a project lingers on a node it left. Every set gets all its elements in
 * one statement: nft parses one long statement far faster than many
 * short ones, which is what makes 1,000 workloads one quick batch.
 *
 * Layout (names are part of the interface: `policy show`, the docs and
 * the tests read them):
 *
 *   set workload_ifs     every workload's host interface
 *   set workload_addrs   every workload address
 *   set workload_src     ifname . address: the only source a workload may use
 *   map egress_policy    ifname -> jump pol_<policy>
 *   map project_of       ifname -> jump prj_<project>
 *   set allow4           ifname . address range . port range: allowlists
 *   set blk_<category>   per-workload drop counters (dynamic, counter)
 *   set prj_<p>_addrs + chain prj_<p>    one per project on the node
 *   chain pol_<name>     one per policy
 *   chains antispoof, egress, from_workload and the base chains forward,
 *   input, postrouting. */
#ifndef INK_RENDER_H
#define INK_RENDER_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>

#include "policy.h"

#define INK_FW_TABLE "ink"
#define INK_FW_FAMILY "inet"

/* What the node is: its workload range and the gateway address every
 * workload's veth carries (where the node's resolver answers). */
typedef struct ink_fw_node {
    struct in_addr net; /* workload range */
    int prefix;
    struct in_addr gateway;
} ink_fw_node;

/* Parses "10.213.0.0/20" into node->net/prefix. */
int ink_fw_node_parse_cidr(const char *cidr, ink_fw_node *node, ink_err *err);

/* One allowlist element: an address range and a port range, both
 * inclusive, in host byte order. */
typedef struct ink_fw_allow {
    uint32_t lo, hi;
    uint16_t pmin, pmax;
} ink_fw_allow;

/* Turns a list of allowed (address range x port range) boxes into an
 * equivalent list of disjoint ones, sorted: nft refuses overlapping
 * elements in an interval set, and allowlists overlap easily (a CIDR and
 * a host inside it; two names with one address). *out is allocated. */
size_t ink_fw_allow_normalize(const ink_fw_allow *in, size_t n, ink_fw_allow **out);

typedef struct ink_fw_counter {
    char category[INK_POLICY_CATEGORY_MAX + 1];
    uint64_t packets, bytes;
} ink_fw_counter;

typedef struct ink_fw_workload {
    const char *id;
    char ifname[IFNAMSIZ];
    struct in_addr addr;
    const char *project; /* "" or invalid: no project peers */
    /* The policy whose chain the workload jumps to; NULL: none (every
     * packet dropped as "unassigned": fail closed). */
    const char *policy;
    const ink_fw_allow *allow; /* disjoint (ink_fw_allow_normalize) */
    size_t nallow;
    /* Drop counters carried over into a re-rendered table. */
    const ink_fw_counter *counters;
    size_t ncounters;
} ink_fw_workload;

/* The policy's chain "chain pol_<name> { ... }" (comments say which line
 * each rule comes from). */
void ink_fw_render_policy_chain(FILE *f, const ink_policy *pol);

/* The whole table, as one replacing transaction (above). */
void ink_fw_render_table(FILE *f, const ink_policy_set *pols, const ink_fw_node *node,
                         const ink_fw_workload *w, size_t n);

/* Adding a workload: its elements; project_new: also its project's set
 * and chain (it is the project's first workload on the node). */
void ink_fw_render_add(FILE *f, const ink_fw_workload *w, bool project_new);

/* Removing a workload: its elements; project_gone: also its project's
 * chain and set (it was the last); reset_counters: its drop counters
 * too (categories: every blk_ set of the table). */
void ink_fw_render_remove(FILE *f, const ink_fw_workload *w, bool project_gone,
                          const char *const *categories, size_t ncategories, bool reset_counters);

/* Only the workload's allowlist elements ("add" or "delete"): a host
 * name that resolves to other addresses. */
void ink_fw_render_allow(FILE *f, const char *verb, const ink_fw_workload *w);

/* Whether a project gets a chain of its own: its name is a valid Ink
 * name (the chain and set names are built from it). */
bool ink_fw_project_ok(const char *project);

#endif
