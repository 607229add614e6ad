/* Egress settings of an app, shared by the coordinator (which checks them
 * when an app is created or updated, so that a bad value is refused at the
 * MCP call) and the agent (which enforces them with nftables).
 *
 * An app names an egress policy: a file /etc/ink/policies/<name>.policy on
 * every node ("default", "deny-all", "allowlist" ship with Ink; security
 * teams may add their own). An "allowlist" app also lists what it may
 * reach, one entry per destination:
 *
 *     TARGET[:PORTS]
 *     TARGET  an IPv4 address, an IPv4 CIDR (10.1.0.0/16) or a host name
 *             (api.example.com; resolved by the agent on the node, again
 *             every few minutes)
 *     PORTS   a port (443) or a range (8000-8099); none = every port
 *
 * e.g. "api.stripe.com:443", "203.0.113.7", "198.51.100.0/24:5432".
 * Entries allow TCP and UDP alike. Workloads have no IPv6, so IPv6 targets
 * are refused (with a message that says so) rather than silently ignored. */
#ifndef INK_EGRESS_H
#define INK_EGRESS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define INK_EGRESS_DEFAULT "default"
#define INK_EGRESS_POLICY_NAME_MAX 32
#define INK_EGRESS_HOST_MAX 253
#define INK_EGRESS_ALLOW_MAX 64 /* entries per app */

/* A policy name: [a-z0-9][a-z0-9-]{0,31}, so it is a file name and an
 * nftables chain name at once. */
bool ink_egress_valid_policy_name(const char *name);

typedef struct ink_egress_allow {
    bool is_host;                       /* host names are resolved later */
    char host[INK_EGRESS_HOST_MAX + 1]; /* when is_host */
    struct in_addr addr;                /* network address, host bits zero */
    int prefix;                         /* 0..32 (32 for one address) */
    uint16_t port_min, port_max;        /* 0-65535 when no port was given */
} ink_egress_allow;

/* Parses one entry. Errors say what is wrong with the entry, quoting it. */
int ink_egress_allow_parse(const char *entry, ink_egress_allow *out, ink_err *err);

/* The canonical text of an entry ("10.1.0.0/16:443", "api.example.com",
 * "203.0.113.7:8000-8099"); out holds at least INK_EGRESS_ALLOW_TEXT_MAX. */
#define INK_EGRESS_ALLOW_TEXT_MAX (INK_EGRESS_HOST_MAX + 16)
void ink_egress_allow_format(const ink_egress_allow *a, char *out, size_t outlen);

#endif
