#include "store.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps_internal.h"
#include "db.h"
#include "log.h"
#include "secretbox.h"
#include "util.h"

/* Nothing about assignments is cached here: the operator CLI writes the
 * same file from another process, so the revision and the log are read
 * from the database, inside the transaction that uses them. */
struct ink_store {
    sqlite3 *db;
    pthread_mutex_t mu; /* one connection, many RPC threads */
    char coordinator_id[33];
    ink_secretbox *box; /* seals secret_env values; immutable, used without mu */
};

static int open_secrets(ink_store *s, ink_err *err);

/* Schema migrations, applied in order; PRAGMA user_version records how many
 * ran. Never edit a shipped step: append a new one. */
static const char *migrations[] = {
    /* 1: nodes and desired assignments */
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE nodes ("
    "  id TEXT PRIMARY KEY, hostname TEXT NOT NULL, addresses TEXT NOT NULL,"
    "  agent_endpoint TEXT NOT NULL, cpus INTEGER NOT NULL, memory_bytes INTEGER NOT NULL,"
    "  disk_bytes INTEGER NOT NULL, runsc_version TEXT NOT NULL, kernel TEXT NOT NULL,"
    "  features TEXT NOT NULL, agent_version TEXT NOT NULL, instance_id TEXT NOT NULL,"
    "  registered_at INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
    "  registrations INTEGER NOT NULL DEFAULT 1, applied_revision INTEGER NOT NULL DEFAULT 0,"
    "  load1 REAL NOT NULL DEFAULT 0, memory_used INTEGER NOT NULL DEFAULT 0,"
    "  memory_available INTEGER NOT NULL DEFAULT 0, disk_free INTEGER NOT NULL DEFAULT 0,"
    "  workloads INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE assignments ("
    "  node_id TEXT NOT NULL, workload_id TEXT NOT NULL, revision INTEGER NOT NULL,"
    "  spec BLOB NOT NULL, PRIMARY KEY (node_id, workload_id));"
    "CREATE TABLE assignment_log ("
    "  revision INTEGER PRIMARY KEY, node_id TEXT NOT NULL, workload_id TEXT NOT NULL,"
    "  op INTEGER NOT NULL, spec BLOB);"
    "CREATE INDEX assignment_log_node ON assignment_log (node_id, revision);"
    "CREATE TABLE workload_status ("
    "  node_id TEXT NOT NULL, workload_id TEXT NOT NULL, generation INTEGER NOT NULL,"
    "  state INTEGER NOT NULL, reason TEXT NOT NULL, restarts INTEGER NOT NULL,"
    "  address TEXT NOT NULL, published_port INTEGER NOT NULL, since_ms INTEGER NOT NULL,"
    "  image_digest TEXT NOT NULL, PRIMARY KEY (node_id, workload_id));"
    "INSERT INTO meta VALUES ('revision', '0'), ('compacted_revision', '0');",
    /* 2: API keys (keys.c) and the hash-chained audit log (audit.c). The
     * audit head (last seq and hash) lives in meta, written in the same
     * transaction as each row, so a deleted tail shows up as a head that
     * points past the last row. The triggers stop accidental edits through
     * SQL; anyone holding the file can drop them, which is what the chain
     * is for. */
    "CREATE TABLE api_keys ("
    "  keyid TEXT PRIMARY KEY, project TEXT NOT NULL,"
    "  role TEXT NOT NULL CHECK (role IN ('reader', 'deployer')), name TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL, revoked_ms INTEGER NOT NULL DEFAULT 0,"
    "  salt BLOB NOT NULL, hash BLOB NOT NULL);"
    "CREATE TABLE audit_log ("
    "  seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, key_id TEXT NOT NULL,"
    "  project TEXT NOT NULL, tool TEXT NOT NULL, arguments TEXT NOT NULL,"
    "  result TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);"
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log"
    "  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
    "  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"
    "INSERT INTO meta VALUES ('audit_head_seq', '0'),"
    "  ('audit_head_hash', '0000000000000000000000000000000000000000000000000000000000000000');",
    /* 3: apps (apps.c, controller.c). An app's replicas are assignments
     * written in the same transaction as their replicas rows. Deleted apps
     * keep their row (deleted_ms) until their replicas are gone, so names
     * and published ports are unique among live apps only. Operations are
     * durable; (project, idempotency_key) finds a retried request. */
    "ALTER TABLE nodes ADD COLUMN public_address TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE apps ("
    "  id TEXT PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL,"
    "  secret_env TEXT, secret_names TEXT NOT NULL DEFAULT '[]', generation INTEGER NOT NULL,"
    "  published_port INTEGER NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
    "  deleted_ms INTEGER NOT NULL DEFAULT 0, last_operation TEXT);"
    "CREATE UNIQUE INDEX apps_live_name ON apps (project, name) WHERE deleted_ms = 0;"
    "CREATE UNIQUE INDEX apps_live_port ON apps (published_port) WHERE deleted_ms = 0;"
    "CREATE TABLE replicas ("
    "  workload_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, slot INTEGER NOT NULL,"
    "  generation INTEGER NOT NULL, node_id TEXT NOT NULL, cpu_millis INTEGER NOT NULL,"
    "  memory_bytes INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
    "  last_state TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX replicas_app ON replicas (app_id, slot);"
    "CREATE INDEX replicas_node ON replicas (node_id);"
    "CREATE TABLE operations ("
    "  id TEXT PRIMARY KEY, project TEXT NOT NULL, app_id TEXT NOT NULL, app_name TEXT NOT NULL,"
    "  kind TEXT NOT NULL, key_id TEXT NOT NULL, idempotency_key TEXT,"
    "  request_hash TEXT NOT NULL, generation INTEGER NOT NULL, status TEXT NOT NULL,"
    "  message TEXT NOT NULL, progress INTEGER NOT NULL DEFAULT 0, url TEXT,"
    "  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, deadline_ms INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX operations_idempotency ON operations (project, idempotency_key)"
    "  WHERE idempotency_key IS NOT NULL;"
    "CREATE INDEX operations_app ON operations (app_id, created_ms);"
    "CREATE TABLE app_events ("
    "  seq INTEGER PRIMARY KEY, app_id TEXT NOT NULL, time_ms INTEGER NOT NULL,"
    "  message TEXT NOT NULL);"
    "CREATE INDEX app_events_app ON app_events (app_id, seq);"
    "CREATE TABLE resources ("
    "  id TEXT PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,"
    "  size_mb INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
    "  deleted_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX resources_live ON resources (project, name) WHERE deleted_ms = 0;",
    /* 4: digests of secrets (apps' secret_names fingerprints, operations'
     * request_hash) become keyed. SQL cannot compute them: this step only
     * marks the file as holding unkeyed ones, and upgrade_digests() redoes
     * them under the key, which the store opens after migrating. The step
     * is there so that an older coordinator refuses the file instead of
     * adding plain hashes of secrets to it again. REPLACE: whatever a
     * version 3 file says, the digests in it are plain. */
    "INSERT OR REPLACE INTO meta (key, value) VALUES ('secret_digests', 'unkeyed');",
    /* 5: packets the nodes' egress policies dropped, per workload and
     * category (egress_report.c, ink_apps_note_egress). reported is the
     * node's own counter in its last report, which restarts with the
     * workload's network; total adds up what every report added, across
     * restarts. untold is the part of total no app event has mentioned
     * yet and told_ms when the last event was written: events about one
     * replica and category are at least a minute apart. app_id is kept
     * from when the row was made, since the replica row goes before the
     * node stops reporting the workload. */
    "CREATE TABLE egress_blocked ("
    "  node_id TEXT NOT NULL, workload_id TEXT NOT NULL, category TEXT NOT NULL,"
    "  app_id TEXT, reported INTEGER NOT NULL, total INTEGER NOT NULL,"
    "  untold INTEGER NOT NULL, told_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (node_id, workload_id, category));",
};

enum { LOG_UPSERT = 1, LOG_DELETE = 2 };

static int meta_get(ink_store *s, const char *key, char *out, size_t outlen, ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(s->db, "SELECT value FROM meta WHERE key = ?", &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        out[0] = '\0';
        return 1;
    }
    snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
    return 0;
}

static int meta_set(ink_store *s, const char *key, const char *value, ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(s->db,
                       "INSERT INTO meta (key, value) VALUES (?, ?) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                       &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return ink_db_err(s->db, err, "write meta");
    return 0;
}

static int meta_u64(ink_store *s, const char *key, uint64_t *out, ink_err *err)
{
    char buf[32];
    int rc = meta_get(s, key, buf, sizeof buf, err);
    if (rc < 0)
        return -1;
    *out = rc == 0 ? strtoull(buf, NULL, 10) : 0;
    return 0;
}

static int newer_schema(int version, int target, ink_err *err)
{
    return ink_err_set(err, 0,
                       "database schema version %d is newer than this coordinator (%d): "
                       "refusing to touch it",
                       version, target);
}

static int migrate(ink_store *s, ink_err *err)
{
    int target = (int)INK_ARRAY_LEN(migrations);
    int version = ink_store_schema_version(s);
    if (version > target)
        return newer_schema(version, target, err);
    while (version < target) {
        if (ink_db_exec(s->db, "BEGIN IMMEDIATE", err) < 0)
            return -1;
        /* Read again under the write lock: the daemon and a CLI command
         * opening a new file together would otherwise both run step 1. */
        version = ink_store_schema_version(s);
        if (version < 0 || version >= target) {
            ink_db_exec(s->db, "ROLLBACK", NULL);
            if (version > target)
                return newer_schema(version, target, err);
            if (version < 0)
                return ink_db_err(s->db, err, "read schema version");
            break;
        }
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", version + 1);
        if (ink_db_exec(s->db, migrations[version], err) < 0 ||
            ink_db_exec(s->db, pragma, err) < 0) {
            ink_db_exec(s->db, "ROLLBACK", NULL);
            return ink_err_wrap(err, "migration %d", version + 1);
        }
        if (ink_db_exec(s->db, "COMMIT", err) < 0)
            return -1;
        version++;
    }
    return 0;
}

int ink_store_schema_version(ink_store *s)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        return -1;
    return sqlite3_column_int(st, 0);
}

int ink_store_open(const char *path, ink_store **out, ink_err *err)
{
    ink_store *s = ink_xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        ink_err_set(err, 0, "open database %s: %s", path,
                    s->db ? sqlite3_errmsg(s->db) : "out of memory");
        ink_store_close(s);
        return -1;
    }
    sqlite3_busy_timeout(s->db, 5000);
    /* WAL: readers (the `nodes` CLI) never block the daemon; synchronous
     * NORMAL is crash-safe in WAL mode (a power cut may lose the last
     * transactions, never corrupt the file). */
    if (ink_db_exec(s->db,
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                    "PRAGMA foreign_keys = ON;",
                    err) < 0 ||
        migrate(s, err) < 0) {
        ink_err_wrap(err, "%s", path);
        ink_store_close(s);
        return -1;
    }
    if (meta_get(s, "coordinator_id", s->coordinator_id, sizeof s->coordinator_id, err) != 0) {
        /* Insert-if-absent and read back: of two processes creating the
         * file together, the first id written is the one both keep. */
        char id[33];
        cleanup_stmt sqlite3_stmt *st = NULL;
        int rc = ink_random_hex(id, 16, err);
        if (rc == 0)
            rc = ink_db_prepare(s->db,
                                "INSERT INTO meta (key, value) VALUES ('coordinator_id', ?) "
                                "ON CONFLICT (key) DO NOTHING",
                                &st, err);
        if (rc == 0) {
            sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = ink_db_err(s->db, err, "write coordinator id");
        }
        if (rc == 0 &&
            meta_get(s, "coordinator_id", s->coordinator_id, sizeof s->coordinator_id, err) != 0)
            rc = ink_err_set(err, 0, "database: coordinator id missing after writing it");
        if (rc < 0) {
            ink_err_wrap(err, "%s", path);
            ink_store_close(s);
            return -1;
        }
    }
    if (open_secrets(s, err) < 0) {
        ink_err_wrap(err, "%s", path);
        ink_store_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

void ink_store_close(ink_store *s)
{
    if (!s)
        return;
    if (s->db)
        sqlite3_close(s->db);
    ink_secretbox_free(s->box);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

struct sqlite3 *ink_store_lock(ink_store *s)
{
    pthread_mutex_lock(&s->mu);
    return s->db;
}

void ink_store_unlock(ink_store *s)
{
    pthread_mutex_unlock(&s->mu);
}

const char *ink_store_coordinator_id(const ink_store *s)
{
    return s->coordinator_id;
}

/* ------------------------------------------------------------------ nodes */

static void join_strings(char *out, size_t outlen, char **items, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && used < outlen; i++) {
        int w = snprintf(out + used, outlen - used, "%s%s", i ? "," : "", items[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

static void feature_list(const Ink__V1__KernelFeatures *f, char *out, size_t outlen)
{
    char *names[6];
    size_t n = 0;
    if (f) {
        if (f->cgroup_v2)
            names[n++] = "cgroup2";
        if (f->btf)
            names[n++] = "btf";
        if (f->nftables)
            names[n++] = "nftables";
        if (f->netns)
            names[n++] = "netns";
        if (f->seccomp)
            names[n++] = "seccomp";
    }
    join_strings(out, outlen, names, n);
}

int ink_store_register_node(ink_store *s, const Ink__V1__RegisterRequest *r, int64_t now_ms,
                            ink_err *err)
{
    char addresses[512], features[256];
    join_strings(addresses, sizeof addresses, r->addresses, r->n_addresses);
    feature_list(r->features, features, sizeof features);
    pthread_mutex_lock(&s->mu);
    cleanup_stmt sqlite3_stmt *st = NULL;
    int rc = ink_db_prepare(
        s->db,
        "INSERT INTO nodes (id, hostname, addresses, agent_endpoint, cpus, memory_bytes,"
        " disk_bytes, runsc_version, kernel, features, agent_version, instance_id,"
        " registered_at, last_seen, public_address)"
        " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?13,?14) "
        "ON CONFLICT (id) DO UPDATE SET hostname = ?2, addresses = ?3, agent_endpoint = ?4,"
        " cpus = ?5, memory_bytes = ?6, disk_bytes = ?7, runsc_version = ?8, kernel = ?9,"
        " features = ?10, agent_version = ?11, instance_id = ?12, registered_at = ?13,"
        " last_seen = ?13, registrations = registrations + 1, public_address = ?14",
        &st, err);
    if (rc == 0) {
        const Ink__V1__Capacity *cap = r->capacity;
        sqlite3_bind_text(st, 1, r->node_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, r->hostname, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, addresses, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, r->agent_endpoint, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, cap ? cap->cpus : 0);
        sqlite3_bind_int64(st, 6, cap ? (int64_t)cap->memory_bytes : 0);
        sqlite3_bind_int64(st, 7, cap ? (int64_t)cap->disk_bytes : 0);
        sqlite3_bind_text(st, 8, r->runsc_version, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 9, r->features ? r->features->kernel_release : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 10, features, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 11, r->agent_version, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 12, r->instance_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 13, now_ms);
        sqlite3_bind_text(st, 14, r->public_address, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = ink_db_err(s->db, err, "register node");
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int ink_store_report_status(ink_store *s, const Ink__V1__ReportStatusRequest *r, int64_t now_ms,
                            ink_err *err)
{
    pthread_mutex_lock(&s->mu);
    int rc = ink_db_exec(s->db, "BEGIN IMMEDIATE", err);
    if (rc < 0) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    {
        cleanup_stmt sqlite3_stmt *st = NULL;
        rc = ink_db_prepare(
            s->db,
            "UPDATE nodes SET last_seen = ?3, applied_revision = ?4, load1 = ?5,"
            " memory_used = ?6, memory_available = ?7, disk_free = ?8, workloads = ?9"
            " WHERE id = ?1 AND instance_id = ?2",
            &st, err);
        if (rc == 0) {
            const Ink__V1__NodeUsage *u = r->usage;
            sqlite3_bind_text(st, 1, r->node_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, r->instance_id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, now_ms);
            sqlite3_bind_int64(st, 4, (int64_t)r->applied_revision);
            sqlite3_bind_double(st, 5, u ? u->load1 : 0);
            sqlite3_bind_int64(st, 6, u ? (int64_t)u->memory_used_bytes : 0);
            sqlite3_bind_int64(st, 7, u ? (int64_t)u->memory_available_bytes : 0);
            sqlite3_bind_int64(st, 8, u ? (int64_t)u->disk_free_bytes : 0);
            sqlite3_bind_int64(st, 9, u ? u->workloads : 0);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = ink_db_err(s->db, err, "update node");
            else if (sqlite3_changes(s->db) == 0)
                rc = 1; /* unknown node or an older instance: register again */
        }
    }
    if (rc == 0) {
        /* The report is the node's whole truth: replace what we had. */
        cleanup_stmt sqlite3_stmt *del = NULL, *ins = NULL;
        rc = ink_db_prepare(s->db, "DELETE FROM workload_status WHERE node_id = ?", &del, err);
        if (rc == 0) {
            sqlite3_bind_text(del, 1, r->node_id, -1, SQLITE_STATIC);
            if (sqlite3_step(del) != SQLITE_DONE)
                rc = ink_db_err(s->db, err, "clear status");
        }
        if (rc == 0)
            rc = ink_db_prepare(s->db,
                                "INSERT OR REPLACE INTO workload_status VALUES"
                                " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                                &ins, err);
        for (size_t i = 0; rc == 0 && i < r->n_workloads; i++) {
            const Ink__V1__WorkloadStatus *w = r->workloads[i];
            sqlite3_reset(ins);
            sqlite3_bind_text(ins, 1, r->node_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 2, w->workload_id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(ins, 3, (int64_t)w->generation);
            sqlite3_bind_int(ins, 4, w->state);
            sqlite3_bind_text(ins, 5, w->reason, -1, SQLITE_STATIC);
            sqlite3_bind_int64(ins, 6, w->restarts);
            sqlite3_bind_text(ins, 7, w->address, -1, SQLITE_STATIC);
            sqlite3_bind_int64(ins, 8, w->published_port);
            sqlite3_bind_int64(ins, 9, w->since_unix_ms);
            sqlite3_bind_text(ins, 10, w->image_digest, -1, SQLITE_STATIC);
            if (sqlite3_step(ins) != SQLITE_DONE)
                rc = ink_db_err(s->db, err, "write status");
        }
    }
    if (rc == 0 || rc == 1) {
        if (ink_db_exec(s->db, "COMMIT", err) < 0)
            rc = -1;
    }
    if (rc < 0)
        ink_db_exec(s->db, "ROLLBACK", NULL);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void copy_col(char *out, size_t outlen, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, outlen, "%s", t ? (const char *)t : "");
}

#define NODE_COLUMNS                                                                               \
    "id, hostname, addresses, agent_endpoint, cpus, memory_bytes, disk_bytes, runsc_version,"      \
    " kernel, features, agent_version, instance_id, registered_at, last_seen, registrations,"      \
    " applied_revision, load1, memory_used, memory_available, disk_free, workloads,"               \
    " public_address"

static void read_node(sqlite3_stmt *st, ink_node_row *n)
{
    memset(n, 0, sizeof *n);
    copy_col(n->id, sizeof n->id, st, 0);
    copy_col(n->hostname, sizeof n->hostname, st, 1);
    copy_col(n->addresses, sizeof n->addresses, st, 2);
    copy_col(n->agent_endpoint, sizeof n->agent_endpoint, st, 3);
    n->cpus = (uint32_t)sqlite3_column_int64(st, 4);
    n->memory_bytes = (uint64_t)sqlite3_column_int64(st, 5);
    n->disk_bytes = (uint64_t)sqlite3_column_int64(st, 6);
    copy_col(n->runsc_version, sizeof n->runsc_version, st, 7);
    copy_col(n->kernel, sizeof n->kernel, st, 8);
    copy_col(n->features, sizeof n->features, st, 9);
    copy_col(n->agent_version, sizeof n->agent_version, st, 10);
    copy_col(n->instance_id, sizeof n->instance_id, st, 11);
    n->registered_at_ms = sqlite3_column_int64(st, 12);
    n->last_seen_ms = sqlite3_column_int64(st, 13);
    n->registrations = sqlite3_column_int64(st, 14);
    n->applied_revision = (uint64_t)sqlite3_column_int64(st, 15);
    n->load1 = sqlite3_column_double(st, 16);
    n->memory_used_bytes = (uint64_t)sqlite3_column_int64(st, 17);
    n->memory_available_bytes = (uint64_t)sqlite3_column_int64(st, 18);
    n->disk_free_bytes = (uint64_t)sqlite3_column_int64(st, 19);
    n->workloads = (uint32_t)sqlite3_column_int64(st, 20);
    copy_col(n->public_address, sizeof n->public_address, st, 21);
}

static void read_node_row(sqlite3_stmt *st, void *row)
{
    read_node(st, row);
}

int ink_store_get_node(ink_store *s, const char *id, ink_node_row *row, ink_err *err)
{
    pthread_mutex_lock(&s->mu);
    cleanup_stmt sqlite3_stmt *st = NULL;
    int rc = ink_db_prepare(s->db, "SELECT " NODE_COLUMNS " FROM nodes WHERE id = ?", &st, err);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            read_node(st, row);
        else
            rc = 1;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int ink_store_list_nodes(ink_store *s, ink_node_row **rows, size_t *n, ink_err *err)
{
    *rows = NULL;
    *n = 0;
    pthread_mutex_lock(&s->mu);
    cleanup_stmt sqlite3_stmt *st = NULL;
    int rc = ink_db_prepare(s->db, "SELECT " NODE_COLUMNS " FROM nodes ORDER BY id", &st, err);
    if (rc == 0)
        rc = ink_db_collect(s->db, st, "list nodes", sizeof **rows, (void **)rows, n, read_node_row,
                            err);
    pthread_mutex_unlock(&s->mu);
    if (rc < 0) {
        free(*rows);
        *rows = NULL;
        *n = 0;
    }
    return rc;
}

/* ------------------------------------------------------------ assignments */

static Ink__V1__Assignment *unpack_spec(sqlite3_stmt *st, int col)
{
    const void *blob = sqlite3_column_blob(st, col);
    int len = sqlite3_column_bytes(st, col);
    return ink__v1__assignment__unpack(NULL, (size_t)len, blob);
}

/* Opens a write transaction. BEGIN IMMEDIATE takes the database's write
 * lock at once (waiting up to the busy timeout for another process), so
 * what is read inside it stays true until COMMIT. */
static int begin_write(ink_store *s, ink_err *err)
{
    return ink_db_exec(s->db, "BEGIN IMMEDIATE", err);
}

/* Commits when rc >= 0, rolls back otherwise; returns rc, or -1 when the
 * commit fails. */
static int end_txn(ink_store *s, int rc, ink_err *err)
{
    if (rc >= 0 && ink_db_exec(s->db, "COMMIT", err) < 0)
        rc = -1;
    if (rc < 0)
        ink_db_exec(s->db, "ROLLBACK", NULL);
    return rc;
}

/* The newest revision, from the database: another process may have
 * written since this one last looked. */
static int read_revision(ink_store *s, uint64_t *rev, ink_err *err)
{
    return meta_u64(s, "revision", rev, err);
}

/* ---------------------------------------------------------------- secrets */

/* secret_env values reach the database only sealed (secretbox.h): every
 * spec blob is written by write_change(), which packs through
 * pack_sealed(). Names stay plain (lists show them). The watch stream to
 * agents, and the "same spec?" check of set_assignment, unseal. */

#define SECRET_KEY_FILE "secret.key"
/* meta.secret_check holds this text sealed with the database's key. */
#define SECRET_CHECK_TEXT "ink secret key check"

static uint8_t *pack_assignment(const Ink__V1__Assignment *a, size_t *len);

/* a packed with each secret_env value sealed; a itself is not touched.
 * NULL when sealing fails. */
static uint8_t *pack_sealed(ink_store *s, const Ink__V1__Assignment *a, size_t *len, ink_err *err)
{
    size_t n = a->n_secret_env, i;
    Ink__V1__EnvVar *vars = ink_xcalloc(n ? n : 1, sizeof *vars);
    Ink__V1__EnvVar **ptrs = ink_xcalloc(n ? n : 1, sizeof *ptrs);
    uint8_t *buf = NULL;
    for (i = 0; i < n; i++) {
        const char *plain = a->secret_env[i]->value ? a->secret_env[i]->value : "";
        vars[i] = *a->secret_env[i];
        vars[i].value = ink_secretbox_seal(s->box, plain, strlen(plain));
        if (!vars[i].value)
            break;
        ptrs[i] = &vars[i];
    }
    if (i == n) {
        Ink__V1__Assignment copy = *a;
        copy.secret_env = ptrs;
        buf = pack_assignment(&copy, len);
    } else {
        ink_err_set(err, 0, "workload %s: cannot encrypt secret %s", a->workload_id,
                    a->secret_env[i]->name);
    }
    for (size_t j = 0; j < i; j++)
        free(vars[j].value);
    free(vars);
    free(ptrs);
    return buf;
}

/* Replaces each sealed secret_env value of a (as unpacked from the
 * database) with its plaintext; -1 names the first that does not open,
 * leaving a for free_spec(). */
static int unseal_spec(ink_store *s, Ink__V1__Assignment *a, ink_err *err)
{
    for (size_t i = 0; i < a->n_secret_env; i++) {
        Ink__V1__EnvVar *v = a->secret_env[i];
        char *plain;
        if (ink_secretbox_unseal(s->box, v->value, &plain, NULL, err) < 0)
            return ink_err_wrap(err, "workload %s: secret %s", a->workload_id, v->name);
        /* protobuf-c allocates each string with malloc and frees it with
         * free, the default stays shared. */
        if (v->value != protobuf_c_empty_string)
            free(v->value);
        v->value = plain;
    }
    return 0;
}

/* Frees an unpacked spec that may hold unsealed secrets, wiping them. */
static void free_spec(Ink__V1__Assignment *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_secret_env; i++) {
        char *v = a->secret_env[i]->value;
        if (v && *v)
            OPENSSL_cleanse(v, strlen(v));
    }
    ink__v1__assignment__free_unpacked(a, NULL);
}

static void free_packed(uint8_t *buf, size_t len)
{
    if (buf)
        OPENSSL_cleanse(buf, len);
    free(buf);
}

/* secret.key in the database's directory (SQLite's full name of the file,
 * so relative paths and URIs resolve as SQLite resolved them); NULL for an
 * in-memory or temporary database, whose secrets never outlive the
 * process, so neither need the key. */
static char *key_path_for(ink_store *s)
{
    const char *file = sqlite3_db_filename(s->db, "main");
    if (!file || !*file)
        return NULL;
    const char *slash = strrchr(file, '/');
    if (!slash)
        return ink_xstrdup(SECRET_KEY_FILE);
    if (slash == file)
        return ink_xstrdup("/" SECRET_KEY_FILE);
    return ink_xasprintf("%.*s/%s", (int)(slash - file), file, SECRET_KEY_FILE);
}

static int check_key(ink_store *s, const char *check, const char *key_path, ink_err *err)
{
    cleanup_free char *plain = NULL;
    if (ink_secretbox_unseal(s->box, check, &plain, NULL, NULL) < 0 ||
        strcmp(plain, SECRET_CHECK_TEXT) != 0)
        return ink_err_set(err, 0,
                           "secret key file %s is not the key this database's secrets are "
                           "sealed with (database copied or restored without its key file?): "
                           "refusing to use it",
                           key_path ? key_path : "(in memory)");
    return 0;
}

typedef struct resealed {
    int64_t rowid;
    uint8_t *spec;
    size_t len;
} resealed;

/* Seals the plaintext secret values of every spec in table (assignments
 * or assignment_log). *n counts the rows rewritten. */
static int seal_table(ink_store *s, const char *table, size_t *n, ink_err *err)
{
    resealed *rows = NULL;
    size_t cap = 0;
    *n = 0;
    int rc = 0;
    {
        /* Collected first, written after: a row updated while the SELECT
         * walks the table may be visited again, and sealed twice. */
        cleanup_free char *sql =
            ink_xasprintf("SELECT rowid, spec FROM %s WHERE spec IS NOT NULL", table);
        cleanup_stmt sqlite3_stmt *st = NULL;
        rc = ink_db_prepare(s->db, sql, &st, err);
        int step = SQLITE_DONE;
        while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
            Ink__V1__Assignment *a = unpack_spec(st, 1);
            if (!a) {
                rc = ink_err_set(err, 0, "database: corrupt spec in %s row %lld", table,
                                 (long long)sqlite3_column_int64(st, 0));
                break;
            }
            if (a->n_secret_env > 0) {
                if (*n == cap) {
                    cap = cap ? cap * 2 : 16;
                    resealed *nr = realloc(rows, cap * sizeof *rows);
                    if (!nr)
                        abort();
                    rows = nr;
                }
                resealed *r = &rows[*n];
                r->rowid = sqlite3_column_int64(st, 0);
                r->spec = pack_sealed(s, a, &r->len, err);
                if (!r->spec)
                    rc = -1;
                else
                    (*n)++;
            }
            free_spec(a);
        }
        if (rc == 0 && step != SQLITE_DONE)
            rc = ink_db_err(s->db, err, "read specs");
    }
    if (rc == 0 && *n > 0) {
        cleanup_free char *sql = ink_xasprintf("UPDATE %s SET spec = ? WHERE rowid = ?", table);
        cleanup_stmt sqlite3_stmt *st = NULL;
        rc = ink_db_prepare(s->db, sql, &st, err);
        for (size_t i = 0; rc == 0 && i < *n; i++) {
            sqlite3_reset(st);
            sqlite3_bind_blob(st, 1, rows[i].spec, (int)rows[i].len, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, rows[i].rowid);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = ink_db_err(s->db, err, "seal secrets");
        }
    }
    for (size_t i = 0; i < *n; i++)
        free(rows[i].spec);
    free(rows);
    return rc;
}

/* The first open by a coordinator that seals: seal the secrets that
 * earlier versions stored as plaintext and record which key seals this
 * database, in one transaction, so that no file holds a mix. Another
 * process may be doing the same: the check is read again under the write
 * lock, and the loser only verifies. */
static int seal_first(ink_store *s, const char *key_path, ink_err *err)
{
    /* So the plaintext the rewritten rows held is overwritten, not left in
     * free space (Debian's SQLite has this on by default; others not). */
    if (ink_db_exec(s->db, "PRAGMA secure_delete = ON", err) < 0 || begin_write(s, err) < 0)
        return -1;
    char check[128];
    size_t n_assign = 0, n_log = 0;
    int rc = meta_get(s, "secret_check", check, sizeof check, err);
    if (rc == 0) {
        rc = check_key(s, check, key_path, err);
    } else if (rc == 1) {
        rc = seal_table(s, "assignments", &n_assign, err);
        if (rc == 0)
            rc = seal_table(s, "assignment_log", &n_log, err);
        if (rc == 0) {
            cleanup_free char *sealed =
                ink_secretbox_seal(s->box, SECRET_CHECK_TEXT, strlen(SECRET_CHECK_TEXT));
            rc = sealed ? meta_set(s, "secret_check", sealed, err)
                        : ink_err_set(err, 0, "cannot encrypt: the cipher failed");
        }
    }
    if (end_txn(s, rc, err) < 0)
        return -1;
    if (n_assign + n_log > 0) {
        /* Move the rewritten pages into the main file and empty the WAL,
         * which may still hold the old ones. Best effort: a reader may
         * hold it; the next checkpoints get there. */
        ink_db_exec(s->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL);
        LOG_INFO("sealed the secret values stored in plaintext by an earlier version",
                 "assignments", LOG_U64(n_assign), "log_entries", LOG_U64(n_log));
    }
    return 0;
}

/* The first open by a coordinator whose digests of secrets are keyed
 * (migration 4): apps.c redoes the unkeyed ones in one transaction, so no
 * file holds a mix. Like seal_first(), the marker is read again under the
 * write lock and the loser of a race finds the work done. Entries of the
 * audit log made before keep their plain fingerprints: each one's hash
 * chains every later entry, so rewriting them would break `audit verify`;
 * they are marked apart by their member name ("sha256", audit.h). */
static int upgrade_digests(ink_store *s, ink_err *err)
{
    /* Only "unkeyed" (set by migration 4) is redone: a digest that is
     * already keyed would be taken for a plain one. */
    char state[16];
    int rc = meta_get(s, "secret_digests", state, sizeof state, err);
    if (rc < 0)
        return -1;
    if (rc == 1 || strcmp(state, "unkeyed") != 0)
        return 0;
    /* The plain digests rewritten are overwritten, not left in free pages
     * (see seal_first()). */
    if (ink_db_exec(s->db, "PRAGMA secure_delete = ON", err) < 0 || begin_write(s, err) < 0)
        return -1;
    size_t n_apps = 0, n_ops = 0;
    rc = meta_get(s, "secret_digests", state, sizeof state, err);
    if (rc == 0 && strcmp(state, "unkeyed") == 0) {
        rc = ink_apps_upgrade_digests(s, s->db, &n_apps, &n_ops, err);
        if (rc == 0)
            rc = meta_set(s, "secret_digests", "keyed", err);
    }
    if (end_txn(s, rc < 0 ? -1 : 0, err) < 0)
        return ink_err_wrap(err, "key the digests of secrets");
    if (n_apps + n_ops > 0) {
        ink_db_exec(s->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL); /* as in seal_first() */
        LOG_INFO("replaced the plain digests of secrets left by an earlier version with keyed "
                 "ones",
                 "apps", LOG_U64(n_apps), "operations", LOG_U64(n_ops));
    }
    return 0;
}

static int open_secrets(ink_store *s, ink_err *err)
{
    cleanup_free char *key_path = key_path_for(s);
    char check[128];
    int sealed_before = meta_get(s, "secret_check", check, sizeof check, err);
    if (sealed_before < 0)
        return -1;
    /* A new key for a database whose secrets are sealed with another would
     * only hide the loss of the old key until an agent needs a secret. */
    struct stat st;
    if (sealed_before == 0 && key_path && stat(key_path, &st) < 0 && errno == ENOENT)
        return ink_err_set(err, 0,
                           "secret key file %s is missing and this database holds secrets "
                           "sealed with it: restore the key file that belongs to it",
                           key_path);
    if (ink_secretbox_open(key_path, &s->box, err) < 0)
        return -1;
    int rc = sealed_before == 0 ? check_key(s, check, key_path, err) : seal_first(s, key_path, err);
    if (rc < 0)
        return -1;
    return upgrade_digests(s, err);
}

char *ink_store_seal(ink_store *s, const char *plain)
{
    return ink_secretbox_seal(s->box, plain, strlen(plain));
}

int ink_store_unseal(ink_store *s, const char *sealed, char **plain, ink_err *err)
{
    return ink_secretbox_unseal(s->box, sealed, plain, NULL, err);
}

int ink_store_fingerprint(ink_store *s, const void *value, size_t len, char out[17])
{
    return ink_secretbox_fingerprint(s->box, value, len, out);
}

int ink_store_mac_hex(ink_store *s, const void *data, size_t len, char out[65])
{
    return ink_secretbox_mac_hex(s->box, data, len, out);
}

/* Writes one change under the next revision and appends it to the log:
 * a (NULL for a delete) with its secrets sealed. Called with s->mu held,
 * inside begin_write(). Returns the revision. */
static int64_t write_change(ink_store *s, const char *node_id, const char *workload_id, int op,
                            const Ink__V1__Assignment *a, ink_err *err)
{
    size_t spec_len = 0;
    cleanup_free uint8_t *spec = NULL;
    if (a && !(spec = pack_sealed(s, a, &spec_len, err)))
        return -1;
    uint64_t rev;
    if (read_revision(s, &rev, err) < 0)
        return -1;
    rev++;
    char revbuf[24];
    snprintf(revbuf, sizeof revbuf, "%llu", (unsigned long long)rev);
    int rc = 0;
    {
        cleanup_stmt sqlite3_stmt *st = NULL;
        if (op == LOG_UPSERT)
            rc = ink_db_prepare(s->db, "INSERT OR REPLACE INTO assignments VALUES (?1, ?2, ?3, ?4)",
                                &st, err);
        else
            rc = ink_db_prepare(
                s->db, "DELETE FROM assignments WHERE node_id = ?1 AND workload_id = ?2", &st, err);
        if (rc == 0) {
            sqlite3_bind_text(st, 1, node_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, workload_id, -1, SQLITE_STATIC);
            if (op == LOG_UPSERT) {
                sqlite3_bind_int64(st, 3, (int64_t)rev);
                sqlite3_bind_blob(st, 4, spec, (int)spec_len, SQLITE_STATIC);
            }
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = ink_db_err(s->db, err, "write assignment");
        }
    }
    if (rc == 0) {
        cleanup_stmt sqlite3_stmt *st = NULL;
        rc = ink_db_prepare(s->db, "INSERT INTO assignment_log VALUES (?1, ?2, ?3, ?4, ?5)", &st,
                            err);
        if (rc == 0) {
            sqlite3_bind_int64(st, 1, (int64_t)rev);
            sqlite3_bind_text(st, 2, node_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, workload_id, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 4, op);
            if (spec)
                sqlite3_bind_blob(st, 5, spec, (int)spec_len, SQLITE_STATIC);
            else
                sqlite3_bind_null(st, 5);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = ink_db_err(s->db, err, "append log");
        }
    }
    if (rc == 0)
        rc = meta_set(s, "revision", revbuf, err);
    return rc < 0 ? -1 : (int64_t)rev;
}

static uint8_t *pack_assignment(const Ink__V1__Assignment *a, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(&a->base);
    uint8_t *buf = ink_xmalloc(*len ? *len : 1);
    protobuf_c_message_pack(&a->base, buf);
    return buf;
}

int64_t ink_store_put_assignment(ink_store *s, const char *node_id, const Ink__V1__Assignment *a,
                                 ink_err *err)
{
    pthread_mutex_lock(&s->mu);
    int64_t rev = -1;
    if (begin_write(s, err) == 0) {
        rev = write_change(s, node_id, a->workload_id, LOG_UPSERT, a, err);
        if (end_txn(s, rev < 0 ? -1 : 0, err) < 0)
            rev = -1;
    }
    pthread_mutex_unlock(&s->mu);
    return rev;
}

/* Reads the stored spec of one assignment, secrets sealed: 0 and *out
 * (free with free_spec), 1 when there is none, -1. */
static int get_spec(ink_store *s, const char *node_id, const char *workload_id,
                    Ink__V1__Assignment **out, ink_err *err)
{
    *out = NULL;
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(s->db, "SELECT spec FROM assignments WHERE node_id = ? AND workload_id = ?",
                       &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, node_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, workload_id, -1, SQLITE_STATIC);
    int found = ink_db_step_row(s->db, st, "read assignment", err);
    if (found != 0)
        return found;
    *out = unpack_spec(st, 0);
    if (!*out)
        return ink_err_set(err, 0, "database: corrupt assignment spec for %s on node %s",
                           workload_id, node_id);
    return 0;
}

int ink_store_set_assignment(ink_store *s, const char *node_id, Ink__V1__Assignment *a,
                             uint64_t *revision, ink_err *err)
{
    pthread_mutex_lock(&s->mu);
    if (begin_write(s, err) < 0) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    Ink__V1__Assignment *old = NULL;
    int rc = get_spec(s, node_id, a->workload_id, &old, err);
    if (rc >= 0) {
        bool exists = rc == 0;
        rc = 0;
        /* Same spec = same bytes once the generations agree: both are
         * packed here, by the same code, so field order and defaults
         * match. Secrets are compared unsealed (sealing is randomized);
         * a stored secret that no longer opens counts as a change, so
         * putting the workload again repairs it. */
        bool same = false;
        ink_err uerr = {0};
        if (exists && unseal_spec(s, old, &uerr) < 0) {
            LOG_WARN("stored spec has a secret that cannot be decrypted: replacing it", "node",
                     node_id, "error", uerr.msg);
        } else if (exists) {
            a->generation = old->generation;
            size_t la, lo;
            uint8_t *pa = pack_assignment(a, &la), *po = pack_assignment(old, &lo);
            same = la == lo && memcmp(pa, po, la) == 0;
            free_packed(pa, la);
            free_packed(po, lo);
        }
        if (same) {
            rc = read_revision(s, revision, err);
        } else {
            a->generation = exists ? old->generation + 1 : 1;
            int64_t rev = write_change(s, node_id, a->workload_id, LOG_UPSERT, a, err);
            if (rev < 0)
                rc = -1;
            else {
                *revision = (uint64_t)rev;
                rc = 1;
            }
        }
    }
    free_spec(old);
    rc = end_txn(s, rc, err);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int64_t ink_store_put_assignment_locked(ink_store *s, const char *node_id,
                                        const Ink__V1__Assignment *a, ink_err *err)
{
    return write_change(s, node_id, a->workload_id, LOG_UPSERT, a, err);
}

int64_t ink_store_delete_assignment_locked(ink_store *s, const char *node_id,
                                           const char *workload_id, ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(s->db, "SELECT 1 FROM assignments WHERE node_id = ? AND workload_id = ?",
                       &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, node_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, workload_id, -1, SQLITE_STATIC);
    int found = ink_db_step_row(s->db, st, "read assignment", err);
    if (found != 0)
        return found < 0 ? -1 : 0; /* absent: nothing to delete, no revision */
    sqlite3_reset(st);
    return write_change(s, node_id, workload_id, LOG_DELETE, NULL, err);
}

int64_t ink_store_delete_assignment(ink_store *s, const char *node_id, const char *workload_id,
                                    ink_err *err)
{
    pthread_mutex_lock(&s->mu);
    if (begin_write(s, err) < 0) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    int64_t rev = ink_store_delete_assignment_locked(s, node_id, workload_id, err);
    if (end_txn(s, rev < 0 ? -1 : 0, err) < 0)
        rev = -1;
    pthread_mutex_unlock(&s->mu);
    return rev;
}

uint64_t ink_store_revision(ink_store *s)
{
    uint64_t r = 0;
    pthread_mutex_lock(&s->mu);
    if (read_revision(s, &r, NULL) < 0)
        r = 0;
    pthread_mutex_unlock(&s->mu);
    return r;
}

int ink_store_compact_log(ink_store *s, uint64_t keep, ink_err *err)
{
    pthread_mutex_lock(&s->mu);
    if (begin_write(s, err) < 0) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    uint64_t revision;
    int rc = read_revision(s, &revision, err);
    if (rc == 0 && revision > keep) {
        uint64_t horizon = revision - keep;
        char buf[24];
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)horizon);
        cleanup_stmt sqlite3_stmt *st = NULL;
        rc = ink_db_prepare(s->db, "DELETE FROM assignment_log WHERE revision <= ?", &st, err);
        if (rc == 0) {
            sqlite3_bind_int64(st, 1, (int64_t)horizon);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = ink_db_err(s->db, err, "compact log");
        }
        if (rc == 0)
            rc = meta_set(s, "compacted_revision", buf, err);
    }
    rc = end_txn(s, rc, err);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static Ink__V1__WatchEvent *new_event(Ink__V1__WatchEvent__Kind kind, uint64_t rev)
{
    Ink__V1__WatchEvent *ev = ink_xmalloc(sizeof *ev);
    ink__v1__watch_event__init(ev);
    ev->kind = kind;
    ev->revision = rev;
    return ev;
}

static void add_assignment(Ink__V1__WatchEvent *ev, Ink__V1__Assignment *a)
{
    Ink__V1__Assignment **na = realloc(ev->assignments, (ev->n_assignments + 1) * sizeof *na);
    if (!na)
        abort();
    ev->assignments = na;
    ev->assignments[ev->n_assignments++] = a;
}

static void push_event(ink_watch_batch *b, Ink__V1__WatchEvent *ev)
{
    Ink__V1__WatchEvent **ne = realloc(b->events, (b->n + 1) * sizeof *ne);
    if (!ne)
        abort();
    b->events = ne;
    b->events[b->n++] = ev;
}

static int snapshot_locked(ink_store *s, const char *node_id, uint64_t revision,
                           ink_watch_batch *out, ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(s->db, "SELECT spec FROM assignments WHERE node_id = ? ORDER BY workload_id",
                       &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, node_id, -1, SQLITE_STATIC);
    Ink__V1__WatchEvent *ev = new_event(INK__V1__WATCH_EVENT__KIND__SNAPSHOT, revision);
    push_event(out, ev);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        Ink__V1__Assignment *a = unpack_spec(st, 0);
        if (!a)
            return ink_err_set(err, 0, "database: corrupt assignment spec for node %s", node_id);
        /* No snapshot without every secret: leaving the workload out would
         * make the agent stop it, sending it without the value would start
         * it without its secret. The watch fails (and is retried) instead,
         * and the node keeps what it runs until this is repaired. */
        if (unseal_spec(s, a, err) < 0) {
            free_spec(a);
            return -1;
        }
        add_assignment(ev, a);
    }
    if (step != SQLITE_DONE)
        return ink_db_err(s->db, err, "read assignments");
    out->head = revision;
    return 0;
}

int ink_store_watch_events(ink_store *s, const char *node_id, uint64_t since, bool force_snapshot,
                           size_t limit, ink_watch_batch *out, ink_err *err)
{
    *out = (ink_watch_batch){0};
    pthread_mutex_lock(&s->mu);
    /* One read transaction: the revision, the log and the snapshot are
     * from the same state of the file, whichever process wrote it last. */
    if (ink_db_exec(s->db, "BEGIN", err) < 0) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    uint64_t compacted = 0, revision = 0;
    ink_err uerr = {0};
    int rc = meta_u64(s, "compacted_revision", &compacted, err);
    if (rc == 0)
        rc = read_revision(s, &revision, err);
    /* Resume only when every change after `since` is still in the log and
     * `since` is not from some other (or a reset) database. Revision 0 is
     * a fresh agent: the caller asks for a snapshot. */
    if (rc == 0 && (force_snapshot || since < compacted || since > revision)) {
        rc = snapshot_locked(s, node_id, revision, out, err);
    } else if (rc == 0) {
        cleanup_stmt sqlite3_stmt *st = NULL;
        rc = ink_db_prepare(s->db,
                            "SELECT revision, workload_id, op, spec FROM assignment_log"
                            " WHERE node_id = ? AND revision > ? ORDER BY revision LIMIT ?",
                            &st, err);
        if (rc == 0) {
            sqlite3_bind_text(st, 1, node_id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, (int64_t)since);
            sqlite3_bind_int64(st, 3, (int64_t)limit);
            int step;
            while ((step = sqlite3_step(st)) == SQLITE_ROW) {
                uint64_t rev = (uint64_t)sqlite3_column_int64(st, 0);
                if (sqlite3_column_int(st, 2) == LOG_UPSERT) {
                    Ink__V1__Assignment *a = unpack_spec(st, 3);
                    if (!a) {
                        rc = ink_err_set(err, 0, "database: corrupt log entry %llu",
                                         (unsigned long long)rev);
                        break;
                    }
                    if (unseal_spec(s, a, &uerr) < 0) {
                        free_spec(a);
                        rc = 2;
                        break;
                    }
                    Ink__V1__WatchEvent *ev = new_event(INK__V1__WATCH_EVENT__KIND__UPSERT, rev);
                    add_assignment(ev, a);
                    push_event(out, ev);
                } else {
                    Ink__V1__WatchEvent *ev = new_event(INK__V1__WATCH_EVENT__KIND__DELETE, rev);
                    ev->workload_id = ink_xstrdup((const char *)sqlite3_column_text(st, 1));
                    push_event(out, ev);
                }
                out->head = rev;
            }
            if (rc == 0 && step != SQLITE_DONE)
                rc = ink_db_err(s->db, err, "read log");
            /* Fewer than `limit` rows: nothing else for this node up to now. */
            if (rc == 0 && out->n < limit)
                out->head = revision;
        }
    }
    if (rc == 2) {
        /* A logged change whose secret does not open may since have been
         * replaced (putting the workload again is the repair): the
         * snapshot of what is current is as good an answer, and fails
         * loudly in turn if the current spec is the broken one. */
        LOG_ERROR("watch: a logged change has a secret that cannot be decrypted: sending a "
                  "snapshot instead",
                  "node", node_id, "error", uerr.msg);
        ink_store_free_events(out);
        rc = snapshot_locked(s, node_id, revision, out, err);
    }
    rc = end_txn(s, rc, err);
    pthread_mutex_unlock(&s->mu);
    if (rc < 0)
        ink_store_free_events(out);
    return rc;
}

void ink_store_free_events(ink_watch_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        Ink__V1__WatchEvent *ev = b->events[i];
        for (size_t j = 0; j < ev->n_assignments; j++)
            free_spec(ev->assignments[j]);
        free(ev->assignments);
        if (ev->workload_id != protobuf_c_empty_string)
            free(ev->workload_id);
        free(ev);
    }
    free(b->events);
    *b = (ink_watch_batch){0};
}

/* ---------------------------------------------------------- workload list */

static char *dup_col(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return ink_xstrdup(t ? (const char *)t : "");
}

static void free_status(Ink__V1__WorkloadStatus *w)
{
    if (!w)
        return;
    free(w->workload_id);
    free(w->reason);
    free(w->address);
    free(w->image_digest);
    free(w);
}

int ink_store_list_workloads(ink_store *s, const char *node_id, ink_workload_row **rows, size_t *n,
                             ink_err *err)
{
    *rows = NULL;
    *n = 0;
    pthread_mutex_lock(&s->mu);
    cleanup_stmt sqlite3_stmt *st = NULL;
    int rc =
        ink_db_prepare(s->db,
                       "SELECT a.node_id, a.workload_id, a.revision, a.spec, w.generation, w.state,"
                       " w.reason, w.restarts, w.address, w.published_port, w.since_ms,"
                       " w.image_digest FROM assignments a LEFT JOIN workload_status w"
                       " ON w.node_id = a.node_id AND w.workload_id = a.workload_id"
                       " WHERE ?1 IS NULL OR a.node_id = ?1 ORDER BY a.node_id, a.workload_id",
                       &st, err);
    if (rc == 0) {
        if (node_id)
            sqlite3_bind_text(st, 1, node_id, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 1);
    }
    size_t cap = 0;
    while (rc == 0) {
        int step = sqlite3_step(st);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = ink_db_err(s->db, err, "list workloads");
            break;
        }
        Ink__V1__Assignment *spec = unpack_spec(st, 3);
        if (!spec) {
            rc = ink_err_set(err, 0, "database: corrupt assignment spec for %s on node %s",
                             (const char *)sqlite3_column_text(st, 1),
                             (const char *)sqlite3_column_text(st, 0));
            break;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            ink_workload_row *nr = realloc(*rows, cap * sizeof **rows);
            if (!nr)
                abort();
            *rows = nr;
        }
        ink_workload_row *r = &(*rows)[(*n)++];
        memset(r, 0, sizeof *r);
        copy_col(r->node_id, sizeof r->node_id, st, 0);
        r->revision = (uint64_t)sqlite3_column_int64(st, 2);
        r->spec = spec;
        /* No status row: the node has not reported this workload yet. */
        if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
            Ink__V1__WorkloadStatus *w = ink_xmalloc(sizeof *w);
            ink__v1__workload_status__init(w);
            w->workload_id = dup_col(st, 1);
            w->generation = (uint64_t)sqlite3_column_int64(st, 4);
            w->state = (Ink__V1__WorkloadStatus__State)sqlite3_column_int(st, 5);
            w->reason = dup_col(st, 6);
            w->restarts = (uint32_t)sqlite3_column_int64(st, 7);
            w->address = dup_col(st, 8);
            w->published_port = (uint32_t)sqlite3_column_int64(st, 9);
            w->since_unix_ms = sqlite3_column_int64(st, 10);
            w->image_digest = dup_col(st, 11);
            r->status = w;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (rc < 0) {
        ink_store_free_workloads(*rows, *n);
        *rows = NULL;
        *n = 0;
    }
    return rc;
}

void ink_store_free_workloads(ink_workload_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ink__v1__assignment__free_unpacked(rows[i].spec, NULL);
        free_status(rows[i].status);
    }
    free(rows);
}

const char *ink_workload_state_name(int state)
{
    switch (state) {
    case INK__V1__WORKLOAD_STATUS__STATE__PENDING:
        return "pending";
    case INK__V1__WORKLOAD_STATUS__STATE__PULLING:
        return "pulling";
    case INK__V1__WORKLOAD_STATUS__STATE__STARTING:
        return "starting";
    case INK__V1__WORKLOAD_STATUS__STATE__RUNNING:
        return "running";
    case INK__V1__WORKLOAD_STATUS__STATE__CRASH_LOOP:
        return "crash-loop";
    case INK__V1__WORKLOAD_STATUS__STATE__FAILED:
        return "failed";
    case INK__V1__WORKLOAD_STATUS__STATE__STOPPED:
        return "stopped";
    case INK__V1__WORKLOAD_STATUS__STATE__SLEEPING:
        return "sleeping";
    case INK__V1__WORKLOAD_STATUS__STATE__WAKING:
        return "waking";
    default:
        return NULL;
    }
}
