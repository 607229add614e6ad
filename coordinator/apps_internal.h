/* What apps.c shares with the controller (controller.c): app rows as
 * stored, events, and how URLs are made. Not for other modules: they use
 * the views of apps.h. */
#ifndef INK_APPS_INTERNAL_H
#define INK_APPS_INTERNAL_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>

#include "apps.h"

/* Published ports of apps, one per app, the same on every node. */
#define INK_APP_PORT_MIN 20000
#define INK_APP_PORT_MAX 29999
/* An operation not done by then has failed ("timed out"). */
#define INK_APP_OPERATION_DEADLINE_MS (10 * 60 * 1000)

/* spec: {image, port, env {}, cpu_millis, memory_mb, replicas,
 * min_replicas, idle_timeout_s?, egress?, egress_allow? [canonical entries,
 * sorted]} (the egress keys only when not the defaults: ink_app_egress;
 * idle_timeout_s: ink_app_idle_timeout_s); secret_sealed: the secret env as a
 * sealed JSON object (ink_store_seal), NULL when there is none; secret_names: [{name,
 * fingerprint}]. */
typedef struct ink_app_row {
    char id[32], project[64], name[64];
    json_t *spec;
    char *secret_sealed;
    json_t *secret_names;
    int64_t generation;
    uint32_t published_port;
    int64_t created_ms, updated_ms, deleted_ms;
    char last_operation[40];
} ink_app_row;

void ink_app_row_clear(ink_app_row *a);
/* The spec's egress policy name ("default" when the spec has none). */
const char *ink_app_egress(const json_t *spec);
/* The spec's idle timeout in seconds: its idle_timeout_s, else the default
 * when it may scale to zero (min_replicas 0: specs from before the field),
 * else 0 (it never sleeps). */
int64_t ink_app_idle_timeout_s(const json_t *spec);
/* Live apps, and deleted ones whose replicas or operation remain, by id.
 * Called with the store locked. */
int ink_apps_load_all(sqlite3 *db, ink_app_row **rows, size_t *n, ink_err *err);
/* Appends to the app's event list (get_app_details shows the last 20). */
int ink_apps_event(sqlite3 *db, const char *app_id, int64_t now_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* For the store's first open after digests of secrets became keyed
 * (store.c, migration 4), inside its write transaction: every app's
 * secret_names get keyed fingerprints (from its unsealed secret_env), and
 * every operation's plain request_hash is replaced by "pre-hmac:" and the
 * keyed MAC of it, which an idempotent retry still matches. *n_apps and
 * *n_ops count the rows rewritten. 0 or -1. */
int ink_apps_upgrade_digests(ink_store *s, sqlite3 *db, size_t *n_apps, size_t *n_ops,
                             ink_err *err);

/* WorkloadStatus.State as the views name it. */
const char *ink_replica_state_name(int state);
/* The host clients reach a node's published ports at: its public address,
 * else its first address, else its agent endpoint's host. */
void ink_apps_node_host(const char *public_address, const char *addresses,
                        const char *agent_endpoint, char *out, size_t outlen);
void ink_apps_url(const char *host, uint32_t port, char *out, size_t outlen);
/* Silence after which views call a replica's node unreachable (the
 * coordinator's node_timeout). */
void ink_apps_set_node_timeout(int64_t ms);

#endif
