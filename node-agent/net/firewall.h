/* Egress enforcement: Ink's nftables table (`inet ink`, laid out in
 * policy/render.h), programmed through libnftables only (no nft
 * processes), from the policy files, the node's facts and its workloads.
 *
 * - The whole table is replaced in one transaction (sync, drift repair,
 *   policy reload); a workload that comes or goes is one batch of element
 *   inserts or deletes, whatever the number of workloads.
 * - After every apply the table is listed and a digest of the listing kept
 *   (without what the kernel changes by itself: drop counters and the
 *   counter elements packets create). check_drift() lists again and, if
 *   anything else differs (someone ran `nft flush ruleset`, edited a
 *   chain), re-applies the whole table in one batch and says what it found.
 *   The drop counters survive a repair when the table still exists (they
 *   are read from the damaged table and rendered into the new one).
 * - A workload's policy must be loaded: otherwise add() fails (the caller
 *   fails the start: fail closed) and a full render leaves the workload
 *   without a policy, which drops everything it sends as "unassigned".
 * - Host names in allowlists are resolved here (IPv4, getaddrinfo) and
 *   again by refresh_hosts(); a name that does not resolve allows nothing
 *   and is reported in the workload's note, it never fails anything.
 *
 * All calls are thread-safe (one mutex; the libnftables context is not).
 * An agent that never had a workload leaves the host's ruleset alone: the
 * table is created by the first sync that has workloads (or finds the
 * table already there) or by the first add(). */
#ifndef INK_FIREWALL_H
#define INK_FIREWALL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "policy.h"

#define INK_POLICY_DIR_DEFAULT "/etc/ink/policies"
/* How often allowlist host names are resolved again. */
#define INK_FW_RESOLVE_INTERVAL_MS (5 * 60 * 1000)
/* ... and a name that did not resolve, sooner. */
#define INK_FW_RESOLVE_RETRY_MS (30 * 1000)

typedef struct ink_firewall ink_firewall;

typedef struct ink_firewall_config {
    const char *policy_dir;    /* NULL: INK_POLICY_DIR_DEFAULT */
    const char *workload_cidr; /* the node's workload range */
    struct in_addr gateway;    /* 0: the range's first host address */
    /* Refuse policy files (and the directory) writable by others than
     * their owner, or owned by others than root or this user. */
    bool strict_files;
} ink_firewall_config;

/* Opens a libnftables context and loads the policies; the kernel is not
 * touched. A policy file with errors is left out (the message is logged,
 * and workloads that name it fail with it); a missing directory means no
 * policies. */
int ink_firewall_open(const ink_firewall_config *cfg, ink_firewall **out, ink_err *err);
void ink_firewall_close(ink_firewall *fw);

/* A workload as the firewall needs it. */
typedef struct ink_fw_spec {
    const char *workload_id;
    struct in_addr addr;
    const char *project;
    const char *app;
    const char *policy;       /* "" or NULL: "default" */
    const char *const *allow; /* egress_allow entries (common/egress.h) */
    size_t nallow;
} ink_fw_spec;

/* Replaces the table with one for exactly these workloads (one batch).
 * Host names are taken from what was resolved before (none at start:
 * refresh_hosts() or the workload's own add() fills them in), so a sync
 * never waits on DNS. create=false: when Ink's table does not exist and
 * there are no workloads, nothing is created. */
int ink_firewall_sync(ink_firewall *fw, const ink_fw_spec *w, size_t n, bool create, ink_err *err);

/* Adds or replaces one workload (one batch); resolves its host names
 * first (outside the lock). Fails when its policy is not installed or has
 * errors, its project name or an allowlist entry is invalid. */
int ink_firewall_add(ink_firewall *fw, const ink_fw_spec *w, ink_err *err);

/* Removes a workload's elements and drop counters (one batch); an unknown
 * id is not an error. */
int ink_firewall_remove(ink_firewall *fw, const char *workload_id, ink_err *err);

/* Compares the table with what was applied; repairs it in one batch when
 * it differs. 1: repaired, 0: as applied (or nothing applied yet), -1:
 * error. Refreshes the drop counters either way. what (may be NULL, len
 * bytes) says what differed. */
int ink_firewall_check_drift(ink_firewall *fw, char *what, size_t len, ink_err *err);

/* Resolves every allowlist host name again and updates the elements that
 * changed (one batch). force=false: only when a name is due (every
 * INK_FW_RESOLVE_INTERVAL_MS, sooner for one that failed). */
int ink_firewall_refresh_hosts(ink_firewall *fw, bool force, ink_err *err);

/* Reads the policy directory again. Any file with errors: nothing
 * changes (the running table stays as it was) and err says FILE:LINE.
 * Else the table is re-rendered with the new policies in one batch. */
int ink_firewall_reload_policies(ink_firewall *fw, ink_err *err);

/* The resolve mode of a loaded policy ("" or NULL: default); internal
 * when it is not loaded. */
ink_pol_resolve ink_firewall_resolve_mode(ink_firewall *fw, const char *policy);

typedef struct ink_fw_blocked {
    char category[INK_POLICY_CATEGORY_MAX + 1];
    uint64_t packets;
} ink_fw_blocked;

/* The workload's drop counters as of the last listing (apply or drift
 * check), categories with packets only. Returns how many (at most max). */
size_t ink_firewall_blocked(ink_firewall *fw, const char *workload_id, ink_fw_blocked *out,
                            size_t max);

/* What the workload should be told about its egress (host names that do
 * not resolve, a policy that went away); "" when nothing. */
void ink_firewall_note(ink_firewall *fw, const char *workload_id, char *out, size_t len);

/* Whether Ink's table exists as far as this firewall knows (it applied
 * it and nothing since says otherwise). */
bool ink_firewall_active(ink_firewall *fw);

/* Duration of the last apply, in microseconds, and how many workloads it
 * covered (for logs and benchmarks). */
void ink_firewall_last_apply(ink_firewall *fw, int64_t *us, size_t *workloads);

/* Lists `table inet ink` of the current network namespace through
 * libnftables (for `ink-agent policy show`): json or text; terse leaves
 * set elements out. *out is allocated; *absent when there is no table. */
int ink_fw_list_table(bool json, bool terse, char **out, bool *absent, ink_err *err);

/* Checks the text in a libnftables dry run (nothing is applied; needs the
 * privileges of listing the ruleset). */
int ink_fw_dry_run(const char *text, ink_err *err);

#endif
