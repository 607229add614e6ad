/* The node resolver for workloads.
 *
 * Every sandbox's /etc/resolv.conf names the node's gateway address (the
 * host end of each workload's veth). A helper process, ink-dns, answers
 * there on port 53, UDP and TCP:
 *
 *   <app>.internal.   A: the serving replicas of that app in the asking
 *                     workload's project (TTL 5 s); AAAA and other types:
 *                     no records; an app the project does not have: NXDOMAIN
 *   other *.internal. and reverse names of the workload range: NXDOMAIN
 *   anything else     forwarded to the node's upstream resolvers, the
 *                     answer relayed (a truncated one retried over TCP for
 *                     clients that asked over TCP), if the workload's
 *                     egress policy lets it resolve that name (every name,
 *                     none, or the host names of its allowlist: policy.h,
 *                     resolve); else REFUSED
 *
 * The asker is the source address of the query, which must be a workload
 * of this node (and, over UDP, arrive on that workload's own veth);
 * anything else is REFUSED. Names therefore never cross projects.
 *
 * Privilege separation: the agent (root) binds the sockets to
 * <gateway>:53 (IP_FREEBIND: the address exists only while some workload
 * veth does) and starts the helper with them; the helper chroots into an
 * empty directory, drops every capability, runs as an unprivileged user
 * with no_new_privs and a seccomp allowlist, and only then reads a packet.
 * The agent sends it the name table whenever workloads change; the helper
 * checks the table as it checks packets. A helper that dies is started
 * again with backoff; the sockets stay bound meanwhile, so queries wait in
 * the socket buffer rather than being refused. */
#ifndef INK_DNS_H
#define INK_DNS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* One workload as the resolver sees it. */
typedef struct ink_dns_workload {
    struct in_addr addr;
    char project[64]; /* "" : none (it resolves no .internal name, nor is found) */
    char app[64];     /* "" : none (it can ask but is not found) */
    unsigned ifindex; /* its veth's host end, where its queries arrive; 0: not checked */
    bool serving;     /* ready (RUNNING): <app>.internal includes its address */
    bool forward;     /* every name outside .internal is resolved upstream for it */
    /* forward false: only these names are ("api.example.com\nexample.org",
     * exact, case-insensitive; at most INK_DNS_MAX_ASKER_NAMES); malloc'd,
     * the resolver frees it with the array. NULL: none. */
    char *forward_names;
} ink_dns_workload;

/* Fills *out (malloc'd, the resolver frees it) with the node's workloads
 * and returns how many. Called from the resolver's own thread. */
typedef size_t (*ink_dns_collect_fn)(void *arg, ink_dns_workload **out);

typedef struct ink_dns_config {
    const char *workload_cidr; /* the node's range: its first host address is the gateway */
    /* "host[:port],..." (IPv4, or IPv6 as [addr]:port); "" or NULL: the
     * nameserver lines of resolv_conf, read again when that file changes. */
    const char *upstream;
    const char *resolv_conf; /* NULL: /etc/resolv.conf */
    /* The helper's user: a name or uid[:gid], never root. NULL or
     * "ink-dns": that user when it exists, else nobody. */
    const char *user;
    const char *helper;  /* the ink-dns binary; NULL: found next to the agent, then installed */
    const char *run_dir; /* the helper's empty root is made here (root-owned, 0555) */
    uint16_t port;       /* 0: 53 */
    int64_t refresh_ms;  /* the table is rebuilt at least this often; 0: 5 s */
    ink_dns_collect_fn collect;
    void *arg;
} ink_dns_config;

typedef struct ink_dns ink_dns;

/* Checks the configuration (range, upstream list, user) and starts the
 * resolver's thread, which opens the sockets and starts the helper. Only
 * a bad configuration is an error here: a helper that cannot start (the
 * port taken, the binary missing) is logged and tried again with backoff,
 * while workloads run on without name resolution. */
int ink_dns_start(const ink_dns_config *cfg, ink_dns **out, ink_err *err);
/* The workloads changed: the table is rebuilt and sent soon. Cheap and
 * non-blocking: callable from any thread, with any lock held. */
void ink_dns_changed(ink_dns *d);
/* Stops the helper and the thread; the sockets are closed. */
void ink_dns_stop(ink_dns *d);

/* For tests: the helper's pid (0 when none runs), and waiting until the
 * helper has applied a table built after this call (0), or timeout (-1). */
pid_t ink_dns_helper_pid(ink_dns *d);
int ink_dns_sync(ink_dns *d, int64_t timeout_ms);

/* The gateway of a workload range "a.b.c.d/p": its first host address. */
int ink_dns_gateway(const char *cidr, struct in_addr *gw, ink_err *err);

/* The files a sandbox gets, in dir: resolv.conf ("nameserver <gateway>",
 * options ndots:1 timeout:2 attempts:2, no search list) and hosts
 * (localhost, and hostname at addr). Written atomically, 0644; *resolv and
 * *hosts (caller frees) get their paths. */
int ink_dns_write_sandbox_files(const char *dir, const char *gateway, const char *hostname,
                                const char *addr, char **resolv, char **hosts, ink_err *err);

#endif
