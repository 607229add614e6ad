/* The workload supervisor: one reconcile loop per workload, converging what
 * runs on the node (runsc sandboxes, network namespaces, published ports,
 * log capture) to the desired set the coordinator assigned.
 *
 * Each loop is level-triggered: on every pass it looks at what exists
 * (the sandbox's state in runsc, the image and root filesystem on disk, the
 * namespace and veth, the listener) and does the next step towards the
 * assignment, so a pass can be repeated, interrupted or run by a freshly
 * restarted agent without harm. Nothing about a workload lives only in
 * memory: state_dir/workloads/<id>/state.json records what generation is
 * prepared and running and the restart history, which is how an agent that
 * was killed adopts its sandboxes instead of restarting them.
 *
 * Stopping the supervisor (agent shutdown) leaves every sandbox running;
 * only a workload leaving the desired set stops it. */
#ifndef INK_SUPERVISOR_H
#define INK_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "policy.h"
#include "ink/v1/ink.pb-c.h"
#include "rpc/rpc.h"
#include "runsc.h"

typedef struct ink_supervisor_config {
    const char *state_dir;  /* workloads/, rootfs/, images/, ipam.json */
    const char *runsc;      /* binary */
    const char *runsc_root; /* runsc --root */
    ink_runsc_network network;
    const char *netns_dir;         /* workload namespace mounts */
    const char *workload_cidr;     /* addresses of workloads on this node */
    const char *publish_address;   /* where published ports listen */
    const char *const *plain_http; /* registries reached over plain HTTP */
    size_t nplain_http;
    const char *registry_ca; /* extra CA bundle, or NULL */
    /* "host[:port] username password" per line, or NULL; owner-only. */
    const char *registry_credentials;
    int64_t stop_grace_ms; /* SIGTERM to SIGKILL */
    /* Startup CPU boost: a sandbox boots with this CPU quota (millicores)
     * when the app's is lower, until its port answers or boot_cpu_window_ms
     * passed; 0 = boot within the app's limit. */
    uint32_t boot_cpu_millis;
    int64_t boot_cpu_window_ms;
    int64_t resync_ms;      /* a loop looks again at least this often */
    uint64_t log_max_bytes; /* per log file before rotation */
    int log_keep;           /* rotated files kept */
    /* Sandboxes get /etc/resolv.conf naming the node resolver (the
     * gateway) and an /etc/hosts (node-agent/dns/dns.h). */
    bool dns;
    /* Egress policies (*.policy) and how often Ink's nftables table is
     * compared with what was applied (net/firewall.h). */
    const char *policy_dir;
    int64_t firewall_resync_ms;
    /* Scale to zero (apps with min_replicas 0): idle for the app's
     * idle_timeout_s, a workload is paused (its cgroup frozen); paused for
     * sleep_stop_after_ms, its sandbox is stopped. A connection to its
     * published port wakes it and waits up to wake_timeout_ms. */
    int64_t sleep_stop_after_ms;
    int64_t wake_timeout_ms;
    /* eBPF traffic counters pinned here (metrics/traffic.h); NULL: the
     * veths' own statistics, and idle time from the published port only. */
    const char *bpf_pin_dir;
    /* Called (from a workload thread) whenever a workload's reported state
     * changes, so the status can reach the coordinator early. */
    void (*on_change)(void *arg);
    void *arg;
} ink_supervisor_config;

typedef struct ink_supervisor ink_supervisor;

/* Starts a loop for each assignment, and one that removes what is on the
 * node but no longer wanted (sandboxes, namespaces, addresses and
 * directories left from workloads deleted while the agent was away). */
int ink_supervisor_start(const ink_supervisor_config *cfg, Ink__V1__Assignment *const *want,
                         size_t n, ink_supervisor **out, ink_err *err);
/* The new desired set (copied). */
void ink_supervisor_update(ink_supervisor *s, Ink__V1__Assignment *const *want, size_t n);
/* Ends the loops; sandboxes keep running. */
void ink_supervisor_stop(ink_supervisor *s);

/* Every workload's status; free with ink_supervisor_status_free. */
size_t ink_supervisor_status(ink_supervisor *s, Ink__V1__WorkloadStatus ***out);
void ink_supervisor_status_free(Ink__V1__WorkloadStatus **st, size_t n);

const ink_runsc *ink_supervisor_runsc(const ink_supervisor *s);

/* Reads the egress policies again (SIGHUP). A file with errors changes
 * nothing (err: FILE:LINE: ...); else the table is re-rendered in one
 * batch. */
int ink_supervisor_reload_policies(ink_supervisor *s, ink_err *err);
/* Which names a workload under that egress policy ("" = default) may have
 * resolved (policy.h, resolve); a policy that is not loaded: internal
 * names only (the workload cannot start anyway). */
ink_pol_resolve ink_supervisor_resolve_mode(ink_supervisor *s, const char *policy);

/* For AgentService: 0 and the workload's log directory (caller frees) and
 * whether its sandbox is running (not asleep); -1 when there is no such
 * workload. */
int ink_supervisor_lookup(ink_supervisor *s, const char *id, char **log_dir, bool *running);

/* Wakes the workload if it sleeps (scale to zero) and waits, up to the
 * wake timeout, until it runs: for exec, which runsc cannot do into a
 * frozen or absent sandbox. true when its sandbox is up. */
bool ink_supervisor_wake(ink_supervisor *s, const char *id);
/* Scaled to zero (paused or stopped) right now. */
bool ink_supervisor_asleep(ink_supervisor *s, const char *id);

/* Metrics of one workload (id) or all (NULL). Caller frees each with
 * free() (they hold no pointers but workload_id, allocated with them). */
int ink_supervisor_metrics(ink_supervisor *s, const char *id, Ink__V1__WorkloadMetrics ***out,
                           size_t *n);

/* Streams every new log line of the workload to call (a GetLogs follow
 * stream) until the call ends. history (may be NULL) runs first, while new
 * lines wait, so that what it sends comes before them. */
void ink_supervisor_follow(ink_supervisor *s, const char *id, ink_rpc_call *call,
                           void (*history)(void *arg), void *arg);

#endif
