/* Egress policy files: the language security teams write, parsed and
 * linted. One file per policy, /etc/ink/policies/<name>.policy; an app
 * names its policy (Assignment.egress, "" = "default").
 *
 *     # comments, blank lines
 *     define NAME = ELEM[, ELEM...]     ELEM: IPv4/IPv6 address or CIDR, or $OTHER
 *     resolve any | internal | allowlist  (at most once; none: any)
 *     VERDICT TARGET [PROTO] [port PORTS] [as CATEGORY]
 *
 *     VERDICT   allow | deny
 *     TARGET    any | project | tenants | allowlist | ELEM[, ELEM...]
 *     PROTO     tcp | udp              (none: every protocol; with port: tcp and udp)
 *     PORTS     N | N-M, comma-separated
 *     CATEGORY  [a-z0-9-]{1,32}        (deny only; default "policy")
 *
 * resolve says which names the node resolver looks up upstream for the
 * workload: every name, none (only <app>.internal), or only the host
 * names of its egress_allow entries. A resolver that forwards any name is
 * a way out for a workload that may connect nowhere (data encoded in the
 * names it asks for reaches whoever serves that domain).
 *
 * Rules are tried in order and the first that matches decides; what no
 * rule matches is denied and counted as "unmatched". The file is only ever
 * turned into nftables text by render.c from the parsed values (addresses
 * re-formatted, numbers printed), so nothing a file holds reaches nft
 * verbatim.
 *
 * Nothing here touches the kernel: `ink-agent policy check` and the unit
 * tests use it as is. */
#ifndef INK_POLICY_H
#define INK_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "egress.h"
#include "err.h"

#define INK_POLICY_SUFFIX ".policy"
#define INK_POLICY_CATEGORY_MAX 32
#define INK_POLICY_DEFAULT_CATEGORY "policy"
#define INK_POLICY_DEFINE_MAX 32
/* Bounds on what one file may ask for: a policy is read by people, and the
 * rendered table must stay small enough to apply in one quick batch. */
#define INK_POLICY_FILE_MAX (256 * 1024)
#define INK_POLICY_LINE_MAX 4096
#define INK_POLICY_RULES_MAX 256
#define INK_POLICY_ELEMS_MAX 1024 /* addresses in one define or rule */
#define INK_POLICY_DIAGS_MAX 50   /* messages kept per load */

/* Categories the fixed chains count into (render.c); a policy may name
 * them too. */
#define INK_CATEGORY_UNMATCHED "unmatched"   /* no rule of the policy matched */
#define INK_CATEGORY_UNASSIGNED "unassigned" /* the workload has no usable policy */
#define INK_CATEGORY_NODE "node"             /* to the node's own addresses */
#define INK_CATEGORY_SPOOFED "spoofed"       /* source is not the workload's address */

typedef enum { INK_POL_ALLOW, INK_POL_DENY } ink_pol_verdict;

typedef enum {
    INK_POL_ANY,       /* every destination */
    INK_POL_PROJECT,   /* workloads of the same project on this node */
    INK_POL_TENANTS,   /* every workload address on this node */
    INK_POL_ALLOWLIST, /* the app's egress_allow entries (tcp and udp) */
    INK_POL_ADDRS,     /* the listed addresses */
} ink_pol_target;

typedef struct ink_pol_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int prefix;
} ink_pol_cidr;

typedef struct ink_pol_ports {
    uint16_t min, max;
} ink_pol_ports;

typedef struct ink_pol_rule {
    int line;
    ink_pol_verdict verdict;
    ink_pol_target target;
    ink_pol_cidr *addrs; /* INK_POL_ADDRS: sorted, none inside another */
    size_t naddrs;
    int proto;            /* 0 (any), IPPROTO_TCP or IPPROTO_UDP */
    bool tcp_udp;         /* ports without a protocol: tcp and udp */
    ink_pol_ports *ports; /* sorted, merged; none = every port */
    size_t nports;
    char category[INK_POLICY_CATEGORY_MAX + 1]; /* deny only */
} ink_pol_rule;

typedef enum {
    INK_POL_RESOLVE_ANY,       /* every name is forwarded upstream */
    INK_POL_RESOLVE_INTERNAL,  /* <app>.internal only; other names REFUSED */
    INK_POL_RESOLVE_ALLOWLIST, /* and the host names of the app's egress_allow */
} ink_pol_resolve;

const char *ink_pol_resolve_name(ink_pol_resolve r);

typedef struct ink_policy {
    char name[INK_EGRESS_POLICY_NAME_MAX + 1];
    char file[INK_EGRESS_POLICY_NAME_MAX + sizeof INK_POLICY_SUFFIX]; /* "default.policy" */
    char *path;                                                       /* as it was read */
    ink_pol_rule *rules;
    size_t nrules;
    ink_pol_resolve resolve;
    int resolve_line; /* 0: the file does not say (any) */
} ink_policy;

/* What a load found wrong ("FILE:LINE: message"), errors and warnings. */
typedef struct ink_pol_diag {
    bool error;
    char msg[INK_ERR_MSG_MAX];
} ink_pol_diag;

typedef struct ink_pol_diags {
    ink_pol_diag items[INK_POLICY_DIAGS_MAX];
    size_t n;
    size_t nerrors, nwarnings; /* also those not kept */
} ink_pol_diags;

/* Parses a policy's text. path names the file in messages (its base name
 * does), name is the policy's name. Returns -1 when there is any error:
 * err gets the first one, diags (may be NULL) every message. Never crashes
 * on any input: a config file security teams edit by hand. */
int ink_policy_parse(const char *path, const char *name, const char *text, size_t len,
                     ink_policy **out, ink_pol_diags *diags, ink_err *err);

/* Reads and parses one file; the policy is named after the file
 * (default.policy -> "default"). */
int ink_policy_load_file(const char *path, ink_policy **out, ink_pol_diags *diags, ink_err *err);

void ink_policy_free(ink_policy *p);

/* Every policy of a node, sorted by name. */
typedef struct ink_policy_set {
    ink_policy **items;
    size_t n;
} ink_policy_set;

/* Loads every *.policy in dir. strict: files and the directory must not be
 * writable by anyone but their owner, and be owned by root or this user
 * (a policy loosened by someone else would be enforced as root's). A file
 * with errors is left out of *out and reported (diags, and err for the
 * first); the return is -1 when any file had errors. A missing directory
 * is not an error: *out is empty and *missing is set. */
int ink_policy_load_dir(const char *dir, bool strict, ink_policy_set *out, bool *missing,
                        ink_pol_diags *diags, ink_err *err);

const ink_policy *ink_policy_set_find(const ink_policy_set *set, const char *name);
void ink_policy_set_free(ink_policy_set *set);

/* Every category the policies count into, with the fixed ones, sorted and
 * unique (caller frees the array, not the strings: they point into the
 * policies or are constants). */
size_t ink_policy_categories(const ink_policy_set *set, const char ***out);

/* The policy's rules as text again, one canonical line each (for
 * `policy check`). Caller frees. */
char *ink_policy_format_rule(const ink_pol_rule *r);

#endif
