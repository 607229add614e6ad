/* Apps: what MCP clients deploy. An app (project, name) is a spec (image,
 * port, env, sealed secret env, CPU, memory, replica counts) with a
 * generation that grows on every change that needs new sandboxes, and a
 * published port of its own. Its replicas are workloads (assignments) on
 * nodes: each replica belongs to one generation of the app, so an update
 * adds new replicas next to the old ones and the controller (controller.c)
 * removes an old replica only once its successor serves (blue-green per
 * replica slot).
 *
 * Every request that changes an app writes the app, its operation and the
 * audit-relevant outcome in one transaction: a coordinator killed at any
 * point either did all of it or none. Operations are durable; with an
 * idempotency key the same request returns the same operation.
 *
 * The functions below return JSON views written for MCP clients (the tools
 * in tools.c return them as structuredContent), and errors whose message an
 * AI agent can act on ("no app named 'web' in project 'demo'"). */
#ifndef INK_APPS_H
#define INK_APPS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keys.h"
#include "store.h"

/* App names are ink_valid_name()s of at most this many characters, so that
 * "<name>-<8 hex>" workload ids stay valid names. */
#define INK_APP_NAME_MAX 40
#define INK_APP_MAX_ENV 128
#define INK_APP_MAX_REPLICAS 20
#define INK_APP_DEFAULT_CPU_MILLIS 250
#define INK_APP_DEFAULT_MEMORY_MB 256
/* Scale to zero: a replica of an app with min_replicas 0 that has had no
 * request and no traffic for idle_timeout_s sleeps, and wakes on the next
 * request. */
#define INK_APP_DEFAULT_IDLE_TIMEOUT_S 300
#define INK_APP_MIN_IDLE_TIMEOUT_S 10
#define INK_APP_MAX_IDLE_TIMEOUT_S 86400

/* Who asks: an API key's id, project and role (or "cli" for operator
 * commands, with the project given on the command line). */
typedef struct ink_caller {
    char key_id[INK_KEYID_LEN + 4];
    char project[64];
    ink_key_role role;
} ink_caller;

/* Errors: -1 and err->msg for the client. err->errnum is INK_APPS_EINVAL
 * (bad request), INK_APPS_ENOTFOUND, INK_APPS_ECONFLICT (exists, key reused
 * with other arguments) or 0 (internal: database, I/O). */
enum { INK_APPS_EINVAL = -2, INK_APPS_ENOTFOUND = -3, INK_APPS_ECONFLICT = -4 };

/* ---------------------------------------------------------------- requests
 *
 * args are the tools' validated arguments (see the schemas in tools.c):
 *   create_app {name, image, port, env?, secret_env?, cpu?, memory_mb?,
 *               replicas?, min_replicas?, idle_timeout_s?, egress?,
 *               egress_allow?, project?, idempotency_key?}
 *   update_app {name, image?, port?, env?, secret_env?, cpu?, memory_mb?,
 *               replicas?, min_replicas?, idle_timeout_s?, egress?,
 *               egress_allow?, idempotency_key?}
 * cpu is in cores (0.25 = a quarter of a CPU). who->project is the app's
 * project; tools.c checks an explicit "project" argument against it.
 * egress is a policy name (common/egress.h; default "default"),
 * egress_allow its TARGET[:PORTS] entries, kept in canonical form:
 * required with "allowlist", refused with "default" and "deny-all" (which
 * ignore them), accepted with other (site-installed) policies. An update
 * to "default" or "deny-all" without egress_allow drops the entries. A
 * change of either is a new generation, rolled out like an image change.
 * idle_timeout_s (INK_APP_MIN_IDLE_TIMEOUT_S..INK_APP_MAX_IDLE_TIMEOUT_S)
 * matters with min_replicas 0: an app created with min_replicas 0, or
 * updated to it, without one gets INK_APP_DEFAULT_IDLE_TIMEOUT_S. A change
 * of either is a new generation too (assignments carry both).
 *
 * Each returns 0 and *op, an operation view (below), for a new operation,
 * 1 and *op for an existing one (idempotent retry: same key and arguments;
 * create_app without a key for an app that exists with the same spec; an
 * update that changes nothing returns the app's last operation), or -1. */
int ink_apps_create(ink_store *s, const ink_caller *who, const json_t *args, int64_t now_ms,
                    json_t **op, ink_err *err);
int ink_apps_update(ink_store *s, const ink_caller *who, const json_t *args, int64_t now_ms,
                    json_t **op, ink_err *err);
/* Marks the app deleted; the controller removes its replicas and finishes
 * the operation. Deleting an app that is being deleted returns its
 * operation (1). */
int ink_apps_delete(ink_store *s, const ink_caller *who, const char *name, int64_t now_ms,
                    json_t **op, ink_err *err);
/* Replaces every replica with a fresh one (same spec, next generation),
 * one slot at a time, each new replica serving before the old one stops. */
int ink_apps_restart(ink_store *s, const ink_caller *who, const char *name, int64_t now_ms,
                     json_t **op, ink_err *err);

/* ------------------------------------------------------------------- views
 *
 * Times are RFC 3339 UTC strings ("2026-11-23T10:00:00.123Z").
 *
 * operation: {operation_id, kind ("create_app", "update_app", "delete_app",
 *   "restart_app"), app, project, status ("running", "succeeded", "failed"),
 *   message (what happens now, or why it failed), progress (0..100), url
 *   (string, only once it answered; else null), created_at, updated_at}
 *
 * app (get_app_details): {app, project, status, status_reason, url (null
 *   until a replica serves), image, image_digest (null until pulled), port,
 *   env {NAME: value}, secret_env [{name, fingerprint}], cpu, memory_mb,
 *   replicas, min_replicas, idle_timeout_s (ink_app_idle_timeout_s; null
 *   for none: min_replicas > 0 and none set), ready_replicas, egress,
 *   egress_allow [entry],
 *   generation, created_at, updated_at, operation_id (latest; null when
 *   none), replica_status [{id, node, generation, state, reason, restarts,
 *     image_digest, url, since, egress_blocked {category: packets}}],
 *   events [{time, message}] (newest last, at most 20)}
 * status: "deploying" (an operation runs), "running" (every replica of the
 *   current generation serves), "sleeping" (they all serve by sleeping:
 *   scaled to zero, the URL's next request wakes them), "waking" (none
 *   awake yet, one waking), "degraded" (some serve), "failed" (the latest
 *   operation failed and nothing of the current generation serves),
 *   "crash-loop", "stopped" (replicas 0), "deleting".
 * replica state: "pending", "pulling", "starting", "running", "crash-loop",
 *   "failed", "stopped", "sleeping", "waking", "unreachable" (its node is
 *   silent), "scheduling" (not placed yet: no node fits; reason says why).
 *   A sleeping or waking replica serves (a request wakes it): it counts as
 *   ready and has a url.
 *
 * list_apps item: {app, project, status, url, image, replicas,
 *   ready_replicas, egress, egress_allow, updated_at}; the list: {apps: [...], next_cursor
 *   (string or null)}, ordered by name. */
int ink_apps_get(ink_store *s, const char *project, const char *name, json_t **app, ink_err *err);
int ink_apps_list(ink_store *s, const char *project, const char *cursor, size_t limit,
                  json_t **list, ink_err *err);
int ink_apps_get_operation(ink_store *s, const char *project, const char *operation_id, json_t **op,
                           ink_err *err);

/* Where to reach an app's replicas (logs, exec, metrics): current
 * generation first, then older ones still running. */
typedef struct ink_replica_ref {
    char workload_id[64];
    char node_id[64];
    char agent_endpoint[256];
    char state[16]; /* as in replica_status */
    uint64_t generation;
    bool current; /* of the app's current generation */
} ink_replica_ref;
int ink_apps_replicas(ink_store *s, const char *project, const char *name, ink_replica_ref **refs,
                      size_t *n, ink_err *err);

/* ------------------------------------------------------ egress counters
 *
 * What a node's egress policy dropped, from its status report
 * (WorkloadStatus.egress_blocked: packets per category since the
 * workload's network was set up on the node; a category the report leaves
 * out counts 0). Keeps per replica the total of every increase (a count
 * lower than the last one means the counter restarted: all of it is new)
 * and tells the app in its events, "replica web-1a2b3c4d on node n1:
 * egress blocked 3 packets (metadata)", at most once a minute per replica
 * and category: increases in between are added up into the next event,
 * so a workload hammering a blocked address cannot flood the event list.
 * A workload the report no longer lists is forgotten, with a last event
 * for what was not told yet. Call it for reports the store accepted
 * (ink_store_report_status returned 0). 0 or -1; on -1 nothing changed,
 * and the next report carries the same increases again. */
int ink_apps_note_egress(ink_store *s, const Ink__V1__ReportStatusRequest *report, int64_t now_ms,
                         ink_err *err);
/* The shortest time between two events about one replica and category. */
#define INK_EGRESS_EVENT_INTERVAL_MS (60 * 1000)

/* --------------------------------------------------------------- resources
 *
 * create_resource {type, name, size_mb?, project?}; types: "volume" (a
 * node-local volume, size_mb 1..1048576, default 1024). Other types
 * ("postgres", ...) are refused naming the supported ones.
 * resource view: {resource, project, type, size_mb, status, created_at}. */
int ink_resources_create(ink_store *s, const ink_caller *who, const json_t *args, int64_t now_ms,
                         json_t **resource, ink_err *err);
int ink_resources_list(ink_store *s, const char *project, json_t **list, ink_err *err);
int ink_resources_delete(ink_store *s, const ink_caller *who, const char *name, int64_t now_ms,
                         json_t **resource, ink_err *err);

/* --------------------------------------------------------------- nodes view
 *
 * list_nodes: {nodes: [{node, status ("ready", "unreachable"), address,
 *   cpus, memory_mb, cpu_allocated (cores), memory_allocated_mb,
 *   replicas, runsc_version, agent_version, last_seen}]} */
int ink_apps_list_nodes(ink_store *s, int64_t now_ms, int64_t node_timeout_ms, json_t **list,
                        ink_err *err);

#endif
