#include "controller.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "apps_internal.h"
#include "coordinator.h"
#include "db.h"
#include "log.h"
#include "scheduler.h"
#include "util.h"

/* ------------------------------------------------------------- snapshot */

typedef struct replica {
    char id[64], app_id[32], node[64], last_state[16], state[16];
    char reason[400], digest[160];
    int64_t slot, generation;
    uint32_t cpu_millis;
    uint64_t memory_bytes;
    bool node_ready;
    int64_t node_silent_ms;
    bool removed; /* by this pass */
} replica;

typedef struct operation {
    char id[40], app_id[32], kind[16], message[512];
    int64_t generation, progress, created_ms, deadline_ms;
} operation;

typedef struct node_info {
    char id[64], host[256];
    bool ready;
    int64_t silent_ms;
} node_info;

typedef struct snapshot {
    ink_app_row *apps;
    size_t napps;
    replica *reps;
    size_t nreps;
    operation *ops;
    size_t nops;
    node_info *nodes;
    size_t nnodes;
} snapshot;

static void snapshot_free(snapshot *sn)
{
    for (size_t i = 0; i < sn->napps; i++)
        ink_app_row_clear(&sn->apps[i]);
    free(sn->apps);
    free(sn->reps);
    free(sn->ops);
    free(sn->nodes);
}

static void copy_text(char *out, size_t outlen, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, outlen, "%s", t ? (const char *)t : "");
}

static const node_info *find_node(const snapshot *sn, const char *id)
{
    for (size_t i = 0; i < sn->nnodes; i++) {
        if (strcmp(sn->nodes[i].id, id) == 0)
            return &sn->nodes[i];
    }
    return NULL;
}

static int load_snapshot(ink_store *s, const ink_controller_opts *o, int64_t now_ms, snapshot *sn,
                         ink_err *err)
{
    memset(sn, 0, sizeof *sn);
    ink_node_row *nodes;
    size_t nn;
    if (ink_store_list_nodes(s, &nodes, &nn, err) < 0)
        return -1;
    sn->nodes = ink_xcalloc(nn ? nn : 1, sizeof *sn->nodes);
    sn->nnodes = nn;
    for (size_t i = 0; i < nn; i++) {
        node_info *ni = &sn->nodes[i];
        snprintf(ni->id, sizeof ni->id, "%s", nodes[i].id);
        ink_apps_node_host(nodes[i].public_address, nodes[i].addresses, nodes[i].agent_endpoint,
                           ni->host, sizeof ni->host);
        ni->ready = ink_node_is_ready(&nodes[i], now_ms, o->node_timeout_ms);
        ni->silent_ms = now_ms - nodes[i].last_seen_ms;
    }
    free(nodes);

    sqlite3 *db = ink_store_lock(s);
    int rc = ink_apps_load_all(db, &sn->apps, &sn->napps, err);
    if (rc == 0) {
        cleanup_stmt sqlite3_stmt *st = NULL;
        rc = ink_db_prepare(db,
                            "SELECT r.workload_id, r.app_id, r.node_id, r.last_state, r.slot,"
                            " r.generation, r.cpu_millis, r.memory_bytes, ws.state,"
                            " COALESCE(ws.reason, ''), COALESCE(ws.image_digest, '')"
                            " FROM replicas r LEFT JOIN workload_status ws"
                            " ON ws.node_id = r.node_id AND ws.workload_id = r.workload_id"
                            " ORDER BY r.app_id, r.slot, r.generation",
                            &st, err);
        int step = SQLITE_DONE;
        size_t cap = 0;
        while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
            if (sn->nreps == cap) {
                cap = cap ? cap * 2 : 64;
                sn->reps = ink_xrealloc(sn->reps, cap * sizeof *sn->reps);
            }
            replica *r = &sn->reps[sn->nreps++];
            memset(r, 0, sizeof *r);
            copy_text(r->id, sizeof r->id, st, 0);
            copy_text(r->app_id, sizeof r->app_id, st, 1);
            copy_text(r->node, sizeof r->node, st, 2);
            copy_text(r->last_state, sizeof r->last_state, st, 3);
            r->slot = sqlite3_column_int64(st, 4);
            r->generation = sqlite3_column_int64(st, 5);
            r->cpu_millis = (uint32_t)sqlite3_column_int64(st, 6);
            r->memory_bytes = (uint64_t)sqlite3_column_int64(st, 7);
            copy_text(r->reason, sizeof r->reason, st, 9);
            copy_text(r->digest, sizeof r->digest, st, 10);
            const node_info *ni = find_node(sn, r->node);
            r->node_ready = ni && ni->ready;
            r->node_silent_ms = ni ? ni->silent_ms : INT64_MAX / 2;
            if (!r->node_ready)
                snprintf(r->state, sizeof r->state, "unreachable");
            else if (sqlite3_column_type(st, 8) == SQLITE_NULL)
                snprintf(r->state, sizeof r->state, "pending");
            else
                snprintf(r->state, sizeof r->state, "%s",
                         ink_replica_state_name(sqlite3_column_int(st, 8)));
        }
        if (rc == 0 && step != SQLITE_DONE)
            rc = ink_db_err(db, err, "read replicas");
    }
    if (rc == 0) {
        cleanup_stmt sqlite3_stmt *st = NULL;
        rc = ink_db_prepare(db,
                            "SELECT id, app_id, kind, message, generation, progress, created_ms,"
                            " deadline_ms FROM operations WHERE status = 'running'"
                            " ORDER BY created_ms",
                            &st, err);
        int step = SQLITE_DONE;
        while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
            sn->ops = ink_xrealloc(sn->ops, (sn->nops + 1) * sizeof *sn->ops);
            operation *op = &sn->ops[sn->nops++];
            memset(op, 0, sizeof *op);
            copy_text(op->id, sizeof op->id, st, 0);
            copy_text(op->app_id, sizeof op->app_id, st, 1);
            copy_text(op->kind, sizeof op->kind, st, 2);
            copy_text(op->message, sizeof op->message, st, 3);
            op->generation = sqlite3_column_int64(st, 4);
            op->progress = sqlite3_column_int64(st, 5);
            op->created_ms = sqlite3_column_int64(st, 6);
            op->deadline_ms = sqlite3_column_int64(st, 7);
        }
        if (rc == 0 && step != SQLITE_DONE)
            rc = ink_db_err(db, err, "read operations");
    }
    ink_store_unlock(s);
    return rc;
}

/* ------------------------------------------------------------- writes */

static void free_assignment(Ink__V1__Assignment *a)
{
    for (size_t i = 0; i < a->n_env; i++)
        free(a->env[i]);
    free(a->env);
    for (size_t i = 0; i < a->n_secret_env; i++) {
        if (a->secret_env[i]->value)
            explicit_bzero(a->secret_env[i]->value, strlen(a->secret_env[i]->value));
        free(a->secret_env[i]);
    }
    free(a->secret_env);
    free(a->egress_allow); /* the strings belong to the app's spec */
}

static Ink__V1__EnvVar *env_var(const char *name, const char *value)
{
    Ink__V1__EnvVar *e = ink_xmalloc(sizeof *e);
    ink__v1__env_var__init(e);
    e->name = (char *)name;
    e->value = (char *)value;
    return e;
}

/* Writes a new replica of app in slot on node, with its assignment, in
 * the caller's transaction. */
static int add_replica(ink_store *s, sqlite3 *db, const ink_app_row *app, int64_t slot,
                       const char *node, int64_t now_ms, char *id_out, size_t idlen, ink_err *err)
{
    char hex[9];
    if (ink_random_hex(hex, 4, err) < 0)
        return -1;
    snprintf(id_out, idlen, "%s-%s", app->name, hex);
    const json_t *spec = app->spec;
    uint32_t cpu = (uint32_t)json_integer_value(json_object_get(spec, "cpu_millis"));
    uint64_t mem = (uint64_t)json_integer_value(json_object_get(spec, "memory_mb")) << 20;

    Ink__V1__Assignment a;
    ink__v1__assignment__init(&a);
    Ink__V1__Resources res;
    ink__v1__resources__init(&res);
    res.cpu_millis = cpu;
    res.memory_bytes = mem;
    a.workload_id = id_out;
    a.app = (char *)app->name;
    a.project = (char *)app->project;
    a.image = (char *)json_string_value(json_object_get(spec, "image"));
    a.port = (uint32_t)json_integer_value(json_object_get(spec, "port"));
    a.resources = &res;
    a.generation = 1;
    a.min_replicas = (uint32_t)json_integer_value(json_object_get(spec, "min_replicas"));
    a.idle_timeout_s = (uint32_t)ink_app_idle_timeout_s(spec);
    a.published_port = app->published_port;
    /* Named even when it is the default, so that what a node enforces is
     * spelled out in every assignment. */
    a.egress = (char *)ink_app_egress(spec);
    const json_t *allow = json_object_get(spec, "egress_allow");
    a.egress_allow = ink_xcalloc(json_array_size(allow) + 1, sizeof *a.egress_allow);
    for (size_t i = 0; i < json_array_size(allow); i++)
        a.egress_allow[a.n_egress_allow++] = (char *)json_string_value(json_array_get(allow, i));
    const json_t *env = json_object_get(spec, "env");
    a.env = ink_xcalloc(json_object_size(env) + 1, sizeof *a.env);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)env, k, v) a.env[a.n_env++] = env_var(k, json_string_value(v));

    json_t *secrets = NULL;
    int rc = 0;
    if (app->secret_sealed) {
        cleanup_free char *plain = NULL;
        rc = ink_store_unseal(s, app->secret_sealed, &plain, err);
        if (rc == 0) {
            secrets = json_loads(plain, 0, NULL);
            explicit_bzero(plain, strlen(plain));
            if (!json_is_object(secrets))
                rc = ink_err_set(err, 0, "stored secret_env of %s is not an object", app->name);
        }
    }
    if (rc == 0 && secrets) {
        a.secret_env = ink_xcalloc(json_object_size(secrets) + 1, sizeof *a.secret_env);
        json_object_foreach(secrets, k, v) a.secret_env[a.n_secret_env++] =
            env_var(k, json_string_value(v));
    }
    if (rc == 0) {
        cleanup_stmt sqlite3_stmt *st = NULL;
        rc =
            ink_db_prepare(db,
                           "INSERT INTO replicas (workload_id, app_id, slot, generation, node_id,"
                           " cpu_millis, memory_bytes, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           &st, err);
        if (rc == 0) {
            sqlite3_bind_text(st, 1, id_out, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, app->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, slot);
            sqlite3_bind_int64(st, 4, app->generation);
            sqlite3_bind_text(st, 5, node, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 6, cpu);
            sqlite3_bind_int64(st, 7, (int64_t)mem);
            sqlite3_bind_int64(st, 8, now_ms);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = ink_db_err(db, err, "add replica");
        }
    }
    if (rc == 0 && ink_store_put_assignment_locked(s, node, &a, err) < 0)
        rc = -1;
    free_assignment(&a);
    json_decref(secrets);
    return rc;
}

static int remove_replica(ink_store *s, sqlite3 *db, const replica *r, ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db, "DELETE FROM replicas WHERE workload_id = ?", &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return ink_db_err(db, err, "remove replica");
    return ink_store_delete_assignment_locked(s, r->node, r->id, err) < 0 ? -1 : 0;
}

static int end_operation(sqlite3 *db, const operation *op, const char *status, const char *url,
                         const char *message, int64_t now_ms, ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db,
                       "UPDATE operations SET status = ?, url = ?, message = ?, progress = ?,"
                       " updated_ms = ? WHERE id = ? AND status = 'running'",
                       &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
    if (url)
        sqlite3_bind_text(st, 2, url, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 2);
    sqlite3_bind_text(st, 3, message, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, strcmp(status, "succeeded") == 0 ? 100 : op->progress);
    sqlite3_bind_int64(st, 5, now_ms);
    sqlite3_bind_text(st, 6, op->id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return ink_db_err(db, err, "end operation");
    return 0;
}

static int advance_operation(sqlite3 *db, const operation *op, int64_t progress,
                             const char *message, int64_t now_ms, ink_err *err)
{
    if (progress == op->progress && strcmp(message, op->message) == 0)
        return 0;
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db,
                       "UPDATE operations SET progress = ?, message = ?, updated_ms = ?"
                       " WHERE id = ? AND status = 'running'",
                       &st, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, progress);
    sqlite3_bind_text(st, 2, message, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now_ms);
    sqlite3_bind_text(st, 4, op->id, -1, SQLITE_STATIC);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : ink_db_err(db, err, "advance operation");
}

static int note_state(sqlite3 *db, const replica *r, int64_t now_ms)
{
    if (strcmp(r->state, r->last_state) == 0)
        return 0;
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db, "UPDATE replicas SET last_state = ? WHERE workload_id = ?", &st, NULL) <
        0)
        return -1;
    sqlite3_bind_text(st, 1, r->state, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return -1;
    if (r->reason[0] && strcmp(r->state, "running") != 0)
        return ink_apps_event(db, r->app_id, now_ms, "replica %s on %s: %s (%s)", r->id, r->node,
                              r->state, r->reason);
    return ink_apps_event(db, r->app_id, now_ms, "replica %s on %s: %s", r->id, r->node, r->state);
}

/* The app still is what the snapshot saw (another process may have
 * changed it since): its plan is valid. */
static bool app_unchanged(sqlite3 *db, const ink_app_row *a)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db, "SELECT generation, deleted_ms, spec FROM apps WHERE id = ?", &st,
                       NULL) < 0)
        return false;
    sqlite3_bind_text(st, 1, a->id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW)
        return false;
    json_t *spec = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
    bool same = sqlite3_column_int64(st, 0) == a->generation &&
                sqlite3_column_int64(st, 1) == a->deleted_ms && json_equal(spec, a->spec);
    json_decref(spec);
    return same;
}

/* ------------------------------------------------------------- HTTP probe */

int ink_http_answers(const char *host, uint32_t port, int64_t timeout_ms)
{
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, service, &hints, &ai) != 0)
        return 0;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int ok = 0;
    int64_t deadline = ink_mono_ms() + timeout_ms;
    if (fd >= 0 && (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS)) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (poll(&p, 1, (int)timeout_ms) == 1 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0) {
            char req[300];
            int n = snprintf(req, sizeof req,
                             "GET / HTTP/1.0\r\nHost: %s:%u\r\nUser-Agent: ink-coordinator\r\n\r\n",
                             host, port);
            char buf[5];
            size_t got = 0;
            if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
                while (got < sizeof buf) {
                    int64_t left = deadline - ink_mono_ms();
                    p.events = POLLIN;
                    if (left <= 0 || poll(&p, 1, (int)left) != 1)
                        break;
                    ssize_t r = recv(fd, buf + got, sizeof buf - got, 0);
                    if (r <= 0)
                        break;
                    got += (size_t)r;
                }
            }
            ok = got == sizeof buf && memcmp(buf, "HTTP/", 5) == 0;
        }
    }
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return ok;
}

/* ------------------------------------------------------------- per app */

typedef struct app_plan {
    int writes;
    bool probe;          /* the operation may succeed once the URL answers */
    char probe_node[64]; /* where the first serving replica runs */
    const operation *op; /* the app's running operation, or NULL */
} app_plan;

/* Running, or scaled to zero (sleeping, or waking for a request): a
 * healthy, placed replica that answers its app's URL, never replaced or
 * waited for because it sleeps. */
static bool serves(const replica *r)
{
    return !r->removed && (strcmp(r->state, "running") == 0 || strcmp(r->state, "sleeping") == 0 ||
                           strcmp(r->state, "waking") == 0);
}

static bool failing(const replica *r)
{
    return strcmp(r->state, "failed") == 0 || strcmp(r->state, "crash-loop") == 0;
}

static int stage_progress(const char *state)
{
    if (strcmp(state, "pending") == 0)
        return 15;
    if (strcmp(state, "pulling") == 0)
        return 30;
    if (strcmp(state, "starting") == 0)
        return 60;
    if (strcmp(state, "running") == 0 || strcmp(state, "sleeping") == 0 ||
        strcmp(state, "waking") == 0)
        return 85;
    return 10;
}

/* Does the next steps for one app, in the caller's transaction. reps are
 * the app's replicas (ordered by slot, generation). */
static int reconcile_app(ink_store *s, sqlite3 *db, ink_sched *sched, const ink_controller_opts *o,
                         const ink_app_row *app, replica *reps, size_t n, app_plan *plan,
                         int64_t now_ms, ink_err *err)
{
    int64_t want = app->deleted_ms ? 0 : json_integer_value(json_object_get(app->spec, "replicas"));
    uint32_t cpu = (uint32_t)json_integer_value(json_object_get(app->spec, "cpu_millis"));
    uint64_t mem = (uint64_t)json_integer_value(json_object_get(app->spec, "memory_mb")) << 20;
    const operation *op = plan->op;

    for (size_t i = 0; i < n; i++) {
        if (note_state(db, &reps[i], now_ms) < 0)
            return ink_db_err(db, err, "replica state");
    }
    /* Past the count, or of a deleted app. */
    for (size_t i = 0; i < n; i++) {
        if (reps[i].slot >= want) {
            if (remove_replica(s, db, &reps[i], err) < 0)
                return -1;
            reps[i].removed = true;
            plan->writes++;
            ink_apps_event(db, app->id, now_ms, "replica %s on %s removed (%s)", reps[i].id,
                           reps[i].node, app->deleted_ms ? "app deleted" : "scaled down");
        }
    }
    /* Replicas on nodes silent too long are replaced elsewhere. */
    for (size_t i = 0; i < n; i++) {
        if (!reps[i].removed && !reps[i].node_ready && reps[i].node_silent_ms > o->node_lost_ms) {
            if (remove_replica(s, db, &reps[i], err) < 0)
                return -1;
            reps[i].removed = true;
            plan->writes++;
            ink_apps_event(db, app->id, now_ms,
                           "replica %s: node %s silent for %llds, placing a replacement",
                           reps[i].id, reps[i].node, (long long)(reps[i].node_silent_ms / 1000));
        }
    }

    /* Slots moving from an old generation to the current one: at most one
     * at a time, so that the rest keep serving. */
    int64_t transitions = 0;
    for (int64_t slot = 0; slot < want; slot++) {
        bool cur = false, old = false;
        for (size_t i = 0; i < n; i++) {
            if (reps[i].removed || reps[i].slot != slot)
                continue;
            if (reps[i].generation == app->generation)
                cur = true;
            else if (serves(&reps[i]))
                old = true;
        }
        transitions += cur && old;
    }

    bool all_serve = true, placed_all = true;
    int min_progress = 100;
    char status_msg[512] = "";
    char fail_msg[600] = "";
    char place_err[INK_ERR_MSG_MAX] = "";
    for (int64_t slot = 0; slot < want; slot++) {
        replica *cur = NULL;
        bool old_serves = false;
        for (size_t i = 0; i < n; i++) {
            replica *r = &reps[i];
            if (r->removed || r->slot != slot)
                continue;
            if (r->generation == app->generation && !cur)
                cur = r;
            else if (r->generation == app->generation) {
                /* A second replica of the same generation in one slot:
                 * keep one. */
                if (remove_replica(s, db, r, err) < 0)
                    return -1;
                r->removed = true;
                plan->writes++;
            } else if (serves(r)) {
                old_serves = true;
            }
        }
        if (!cur) {
            all_serve = false;
            if (old_serves && transitions > 0) {
                min_progress = min_progress > 10 ? 10 : min_progress;
                continue; /* waits for the slot in transition */
            }
            const char *node;
            ink_err perr = {0};
            if (ink_sched_place(sched, app->id, cpu, mem, NULL, 0, &node, &perr) < 0) {
                placed_all = false;
                snprintf(place_err, sizeof place_err, "%s", perr.msg);
                min_progress = 0;
                continue;
            }
            char id[64];
            if (add_replica(s, db, app, slot, node, now_ms, id, sizeof id, err) < 0)
                return -1;
            plan->writes++;
            transitions += old_serves;
            ink_apps_event(db, app->id, now_ms, "replica %s (generation %lld) placed on %s", id,
                           (long long)app->generation, node);
            snprintf(status_msg, sizeof status_msg, "replica %s placed on %s", id, node);
            min_progress = min_progress > 10 ? 10 : min_progress;
            continue;
        }
        /* The slot's current replica exists: older ones go once it
         * serves, or at once when they do not serve anyway. */
        bool cur_serves = serves(cur);
        for (size_t i = 0; i < n; i++) {
            replica *r = &reps[i];
            if (r->removed || r->slot != slot || r == cur || r->generation == app->generation)
                continue;
            if (cur_serves || !serves(r)) {
                if (remove_replica(s, db, r, err) < 0)
                    return -1;
                r->removed = true;
                plan->writes++;
                ink_apps_event(db, app->id, now_ms, "replica %s on %s removed (replaced by %s)",
                               r->id, r->node, cur->id);
            } else {
                all_serve = false; /* an old one still runs beside the new */
            }
        }
        if (!cur_serves) {
            all_serve = false;
            int p = stage_progress(cur->state);
            if (p < min_progress)
                min_progress = p;
            snprintf(status_msg, sizeof status_msg, "replica %s on %s: %s%s%s", cur->id, cur->node,
                     cur->state, cur->reason[0] ? ": " : "", cur->reason);
            if (failing(cur) && !fail_msg[0])
                snprintf(fail_msg, sizeof fail_msg, "replica %s on %s %s: %s", cur->id, cur->node,
                         cur->state, cur->reason[0] ? cur->reason : "no reason reported");
        } else if (!plan->probe_node[0]) {
            snprintf(plan->probe_node, sizeof plan->probe_node, "%s", cur->node);
        }
    }

    if (!op)
        return 0;
    if (strcmp(op->kind, "delete_app") == 0) {
        bool left = false;
        for (size_t i = 0; i < n; i++)
            left |= !reps[i].removed;
        if (!left) {
            plan->writes++;
            ink_apps_event(db, app->id, now_ms, "%s succeeded: every replica removed", op->id);
            return end_operation(db, op, "succeeded", NULL, "deleted: every replica removed",
                                 now_ms, err);
        }
        return advance_operation(db, op, 50, "removing replicas", now_ms, err);
    }
    if (all_serve && placed_all) {
        if (want == 0) {
            plan->writes++;
            return end_operation(db, op, "succeeded", NULL, "stopped: no replicas wanted", now_ms,
                                 err);
        }
        plan->probe = true; /* the caller checks the URL, outside the lock */
        return advance_operation(db, op, 90, "replicas serve; checking the URL answers", now_ms,
                                 err);
    }
    char msg[700];
    if (fail_msg[0]) {
        bool keeps = false;
        for (size_t i = 0; i < n; i++)
            keeps |= !reps[i].removed && reps[i].generation != app->generation && serves(&reps[i]);
        snprintf(msg, sizeof msg, "%s%s", fail_msg,
                 keeps ? "; the previous version keeps serving" : "");
        plan->writes++;
        ink_apps_event(db, app->id, now_ms, "%s failed: %s", op->id, msg);
        return end_operation(db, op, "failed", NULL, msg, now_ms, err);
    }
    if (!placed_all && now_ms - op->created_ms > o->place_grace_ms) {
        snprintf(msg, sizeof msg, "cannot place a replica: %s", place_err);
        plan->writes++;
        ink_apps_event(db, app->id, now_ms, "%s failed: %s", op->id, msg);
        return end_operation(db, op, "failed", NULL, msg, now_ms, err);
    }
    if (now_ms > op->deadline_ms) {
        snprintf(msg, sizeof msg, "timed out after %llds: %s",
                 (long long)((op->deadline_ms - op->created_ms) / 1000), op->message);
        plan->writes++;
        ink_apps_event(db, app->id, now_ms, "%s failed: %s", op->id, msg);
        return end_operation(db, op, "failed", NULL, msg, now_ms, err);
    }
    if (!placed_all)
        snprintf(status_msg, sizeof status_msg, "waiting for a node: %s", place_err);
    else if (!status_msg[0])
        snprintf(status_msg, sizeof status_msg, "replacing replicas one at a time");
    return advance_operation(db, op, min_progress < 5 ? 5 : min_progress, status_msg, now_ms, err);
}

/* ------------------------------------------------------------- the pass */

static ink_sched *build_scheduler(const snapshot *sn, ink_store *s)
{
    ink_node_row *rows;
    size_t n;
    ink_err err = {0};
    if (ink_store_list_nodes(s, &rows, &n, &err) < 0)
        n = 0, rows = NULL;
    ink_sched_node *nodes = ink_xcalloc(n ? n : 1, sizeof *nodes);
    for (size_t i = 0; i < n; i++) {
        const node_info *ni = find_node(sn, rows[i].id);
        nodes[i].id = rows[i].id;
        nodes[i].ready = ni && ni->ready;
        nodes[i].cpu_millis = rows[i].cpus * 1000;
        /* A tenth of memory (at most 2 GiB) stays for the node itself. */
        uint64_t reserve = rows[i].memory_bytes / 10;
        if (reserve > (2ULL << 30))
            reserve = 2ULL << 30;
        nodes[i].memory_bytes = rows[i].memory_bytes - reserve;
    }
    ink_sched *sched = ink_sched_new(nodes, n);
    free(nodes);
    free(rows);
    for (size_t i = 0; sched && i < sn->nreps; i++)
        ink_sched_add(sched, sn->reps[i].node, sn->reps[i].app_id, sn->reps[i].cpu_millis,
                      sn->reps[i].memory_bytes);
    return sched;
}

static const operation *op_of(const snapshot *sn, const ink_app_row *a)
{
    for (size_t i = 0; i < sn->nops; i++) {
        if (strcmp(sn->ops[i].app_id, a->id) == 0)
            return &sn->ops[i];
    }
    return NULL;
}

/* The URL answered (or not) after the pass: ends the operation. */
static int finish_probe(ink_store *s, const ink_controller_opts *o, const snapshot *sn,
                        const ink_app_row *app, const app_plan *plan, int64_t now_ms)
{
    const node_info *ni = find_node(sn, plan->probe_node);
    if (!ni)
        return 0;
    char url[300];
    ink_apps_url(ni->host, app->published_port, url, sizeof url);
    if (!ink_http_answers(ni->host, app->published_port, o->probe_timeout_ms)) {
        LOG_DEBUG("app URL does not answer yet", "app", app->name, "url", url);
        return 0;
    }
    ink_err err = {0};
    sqlite3 *db = ink_store_lock(s);
    int rc = ink_db_exec(db, "BEGIN IMMEDIATE", &err);
    if (rc == 0 && !app_unchanged(db, app))
        rc = 1;
    char msg[400];
    snprintf(msg, sizeof msg, "serving at %s", url);
    if (rc == 0)
        rc = end_operation(db, plan->op, "succeeded", url, msg, now_ms, &err);
    if (rc == 0)
        ink_apps_event(db, app->id, now_ms, "%s succeeded: %s", plan->op->id, msg);
    rc = ink_db_end_txn(db, rc, &err);
    ink_store_unlock(s);
    if (rc < 0)
        LOG_ERROR("controller: ending operation failed", "operation", plan->op->id, "error",
                  err.msg);
    else if (rc == 0)
        LOG_INFO("operation succeeded", "operation", plan->op->id, "app", app->name, "url", url);
    return rc < 0 ? -1 : 1;
}

int ink_controller_pass(ink_store *s, const ink_controller_opts *o, int64_t now_ms)
{
    snapshot sn;
    ink_err err = {0};
    if (load_snapshot(s, o, now_ms, &sn, &err) < 0) {
        LOG_ERROR("controller: reading state failed", "error", err.msg);
        snapshot_free(&sn);
        return -1;
    }
    ink_apps_set_node_timeout(o->node_timeout_ms);
    ink_sched *sched = build_scheduler(&sn, s);
    if (!sched) {
        LOG_ERROR("controller: cannot build the scheduler (duplicate node ids?)");
        snapshot_free(&sn);
        return -1;
    }
    int writes = 0, failed = 0;
    app_plan *plans = ink_xcalloc(sn.napps ? sn.napps : 1, sizeof *plans);
    size_t r0 = 0;
    for (size_t i = 0; i < sn.napps; i++) {
        const ink_app_row *app = &sn.apps[i];
        /* replicas are ordered by app id, as the apps are */
        while (r0 < sn.nreps && strcmp(sn.reps[r0].app_id, app->id) < 0)
            r0++;
        size_t r1 = r0;
        while (r1 < sn.nreps && strcmp(sn.reps[r1].app_id, app->id) == 0)
            r1++;
        app_plan *plan = &plans[i];
        plan->op = op_of(&sn, app);
        sqlite3 *db = ink_store_lock(s);
        int rc = ink_db_exec(db, "BEGIN IMMEDIATE", &err);
        if (rc == 0 && !app_unchanged(db, app))
            rc = 1; /* changed since the snapshot: the next pass sees it */
        if (rc == 0)
            rc = reconcile_app(s, db, sched, o, app, sn.reps + r0, r1 - r0, plan, now_ms, &err);
        rc = ink_db_end_txn(db, rc, &err);
        ink_store_unlock(s);
        if (rc < 0) {
            LOG_ERROR("controller: reconciling app failed", "app", app->name, "project",
                      app->project, "error", err.msg);
            ink_err_clear(&err);
            failed++;
            plan->probe = false;
        } else if (rc == 1) {
            plan->probe = false;
        }
        writes += plan->writes;
        r0 = r1;
    }
    ink_sched_free(sched);
    for (size_t i = 0; i < sn.napps; i++) {
        if (plans[i].probe && plans[i].op &&
            finish_probe(s, o, &sn, &sn.apps[i], &plans[i], now_ms) > 0)
            writes++;
    }
    free(plans);
    snapshot_free(&sn);
    return failed ? -1 : writes;
}
