/* Unit tests for coordinator/store.c on a real SQLite file. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "testlib.h"
#include "util.h"

typedef struct {
    char dir[128];
    char db[192];
    ink_store *s;
} fixture;

static int setup(void **state)
{
    fixture *f = ink_xcalloc(1, sizeof *f);
    if (test_mkdtemp(f->dir, sizeof f->dir, "store") < 0)
        return -1;
    snprintf(f->db, sizeof f->db, "%s/ink.db", f->dir);
    ink_err err = {0};
    if (ink_store_open(f->db, &f->s, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ink_store_close(f->s);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

static void register_node(ink_store *s, const char *id, const char *instance)
{
    Ink__V1__Capacity cap = INK__V1__CAPACITY__INIT;
    cap.cpus = 4;
    cap.memory_bytes = 8ULL << 30;
    Ink__V1__RegisterRequest r = INK__V1__REGISTER_REQUEST__INIT;
    char *addrs[] = {"10.0.0.1", "fd00::1"};
    r.node_id = (char *)id;
    r.hostname = "host";
    r.addresses = addrs;
    r.n_addresses = 2;
    r.agent_endpoint = "10.0.0.1:7442";
    r.capacity = &cap;
    r.instance_id = (char *)instance;
    ink_err err = {0};
    assert_int_equal(ink_store_register_node(s, &r, 1000, &err), 0);
}

static int64_t put(ink_store *s, const char *node, const char *wid, uint64_t gen)
{
    Ink__V1__Assignment a = INK__V1__ASSIGNMENT__INIT;
    a.workload_id = (char *)wid;
    a.app = "app";
    a.image = "registry.local/app:1";
    a.generation = gen;
    ink_err err = {0};
    int64_t rev = ink_store_put_assignment(s, node, &a, &err);
    assert_true(rev > 0);
    return rev;
}

static void test_open_migrates_and_keeps_id(void **state)
{
    fixture *f = *state;
    assert_int_equal(ink_store_schema_version(f->s), 5);
    char id[64];
    snprintf(id, sizeof id, "%s", ink_store_coordinator_id(f->s));
    assert_int_equal(strlen(id), 32);
    ink_store_close(f->s);
    ink_err err = {0};
    assert_int_equal(ink_store_open(f->db, &f->s, &err), 0);
    assert_string_equal(ink_store_coordinator_id(f->s), id);
}

static void test_refuses_newer_schema(void **state)
{
    fixture *f = *state;
    ink_store_close(f->s);
    f->s = NULL;
    /* Pretend a newer coordinator migrated this file. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ink_err err = {0};
    assert_int_equal(ink_store_open(f->db, &f->s, &err), -1);
    assert_non_null(strstr(err.msg, "newer"));
    f->s = NULL;
    assert_int_equal(ink_store_open(f->db, &f->s, &err), -1);
}

static void test_nodes(void **state)
{
    fixture *f = *state;
    register_node(f->s, "b-node", "i1");
    register_node(f->s, "a-node", "i2");
    register_node(f->s, "a-node", "i3"); /* re-registration */
    ink_node_row *rows;
    size_t n;
    ink_err err = {0};
    assert_int_equal(ink_store_list_nodes(f->s, &rows, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].id, "a-node");
    assert_int_equal(rows[0].registrations, 2);
    assert_string_equal(rows[0].instance_id, "i3");
    assert_string_equal(rows[0].addresses, "10.0.0.1,fd00::1");
    assert_int_equal(rows[0].cpus, 4);
    assert_string_equal(rows[1].id, "b-node");
    free(rows);
    ink_node_row row;
    assert_int_equal(ink_store_get_node(f->s, "nope", &row, &err), 1);
}

static void test_report_status(void **state)
{
    fixture *f = *state;
    register_node(f->s, "n1", "inst");
    Ink__V1__NodeUsage u = INK__V1__NODE_USAGE__INIT;
    u.load1 = 0.5;
    u.memory_available_bytes = 123;
    Ink__V1__WorkloadStatus w = INK__V1__WORKLOAD_STATUS__INIT;
    Ink__V1__WorkloadStatus *ws[] = {&w};
    w.workload_id = "w1";
    w.state = INK__V1__WORKLOAD_STATUS__STATE__RUNNING;
    Ink__V1__ReportStatusRequest r = INK__V1__REPORT_STATUS_REQUEST__INIT;
    r.node_id = "n1";
    r.instance_id = "inst";
    r.applied_revision = 7;
    r.usage = &u;
    r.workloads = ws;
    r.n_workloads = 1;
    ink_err err = {0};
    assert_int_equal(ink_store_report_status(f->s, &r, 5000, &err), 0);
    ink_node_row row;
    assert_int_equal(ink_store_get_node(f->s, "n1", &row, &err), 0);
    assert_int_equal(row.last_seen_ms, 5000);
    assert_int_equal(row.applied_revision, 7);
    assert_int_equal(row.memory_available_bytes, 123);
    /* Another instance of the agent (stale) or an unknown node: register. */
    r.instance_id = "old";
    assert_int_equal(ink_store_report_status(f->s, &r, 6000, &err), 1);
    r.node_id = "ghost";
    assert_int_equal(ink_store_report_status(f->s, &r, 6000, &err), 1);
    assert_int_equal(ink_store_get_node(f->s, "n1", &row, &err), 0);
    assert_int_equal(row.last_seen_ms, 5000);
}

static void test_revisions_and_snapshot(void **state)
{
    fixture *f = *state;
    assert_int_equal(ink_store_revision(f->s), 0);
    assert_int_equal(put(f->s, "n1", "w1", 1), 1);
    assert_int_equal(put(f->s, "n2", "x1", 1), 2);
    assert_int_equal(put(f->s, "n1", "w2", 1), 3);
    assert_int_equal(put(f->s, "n1", "w1", 2), 4); /* update */
    ink_err err = {0};
    ink_watch_batch b;
    assert_int_equal(ink_store_watch_events(f->s, "n1", 0, true, 100, &b, &err), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.events[0]->kind, INK__V1__WATCH_EVENT__KIND__SNAPSHOT);
    assert_int_equal(b.events[0]->revision, 4);
    assert_int_equal(b.head, 4);
    assert_int_equal(b.events[0]->n_assignments, 2); /* n1's only */
    assert_string_equal(b.events[0]->assignments[0]->workload_id, "w1");
    assert_int_equal(b.events[0]->assignments[0]->generation, 2);
    assert_string_equal(b.events[0]->assignments[1]->workload_id, "w2");
    ink_store_free_events(&b);
    /* Survives a restart. */
    ink_store_close(f->s);
    assert_int_equal(ink_store_open(f->db, &f->s, &err), 0);
    assert_int_equal(ink_store_revision(f->s), 4);
}

static void test_resume_sends_exactly_the_changes(void **state)
{
    fixture *f = *state;
    put(f->s, "n1", "w1", 1); /* 1 */
    put(f->s, "n2", "x1", 1); /* 2 */
    put(f->s, "n1", "w2", 1); /* 3 */
    ink_err err = {0};
    assert_true(ink_store_delete_assignment(f->s, "n1", "w1", &err) == 4);
    put(f->s, "n2", "x2", 1); /* 5 */
    ink_watch_batch b;
    assert_int_equal(ink_store_watch_events(f->s, "n1", 1, false, 100, &b, &err), 0);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.events[0]->kind, INK__V1__WATCH_EVENT__KIND__UPSERT);
    assert_int_equal(b.events[0]->revision, 3);
    assert_string_equal(b.events[0]->assignments[0]->workload_id, "w2");
    assert_int_equal(b.events[1]->kind, INK__V1__WATCH_EVENT__KIND__DELETE);
    assert_int_equal(b.events[1]->revision, 4);
    assert_string_equal(b.events[1]->workload_id, "w1");
    assert_int_equal(b.head, 5); /* current through the newest revision */
    ink_store_free_events(&b);
    /* Nothing new: no events, head stays. */
    assert_int_equal(ink_store_watch_events(f->s, "n1", 5, false, 100, &b, &err), 0);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.head, 5);
    ink_store_free_events(&b);
    /* A limit splits the changes; head is the last one sent. */
    assert_int_equal(ink_store_watch_events(f->s, "n1", 1, false, 1, &b, &err), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.head, 3);
    ink_store_free_events(&b);
}

static void test_snapshot_when_resume_impossible(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 10; i++)
        put(f->s, "n1", i % 2 ? "w1" : "w2", (uint64_t)i);
    ink_err err = {0};
    ink_watch_batch b;
    /* A revision from the future (another database): snapshot. */
    assert_int_equal(ink_store_watch_events(f->s, "n1", 99, false, 100, &b, &err), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.events[0]->kind, INK__V1__WATCH_EVENT__KIND__SNAPSHOT);
    assert_int_equal(b.events[0]->revision, 10);
    ink_store_free_events(&b);
    /* Compacted past the agent's revision: snapshot. */
    assert_int_equal(ink_store_compact_log(f->s, 3, &err), 0);
    assert_int_equal(ink_store_watch_events(f->s, "n1", 2, false, 100, &b, &err), 0);
    assert_int_equal(b.events[0]->kind, INK__V1__WATCH_EVENT__KIND__SNAPSHOT);
    assert_int_equal(b.events[0]->n_assignments, 2);
    ink_store_free_events(&b);
    /* Still inside the retained log: changes only. */
    assert_int_equal(ink_store_watch_events(f->s, "n1", 8, false, 100, &b, &err), 0);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.events[0]->kind, INK__V1__WATCH_EVENT__KIND__UPSERT);
    ink_store_free_events(&b);
}

/* ---------------------------------------------------------------- secrets */

#define SECRET "hunter2-SECRET"

/* A spec with one plain and one secret variable. */
typedef struct secret_spec {
    Ink__V1__Assignment a;
    Ink__V1__EnvVar env, secret;
    Ink__V1__EnvVar *envs[1], *secrets[1];
} secret_spec;

static void secret_spec_init(secret_spec *sp, const char *wid, const char *value)
{
    ink__v1__assignment__init(&sp->a);
    ink__v1__env_var__init(&sp->env);
    ink__v1__env_var__init(&sp->secret);
    sp->a.workload_id = (char *)wid;
    sp->a.app = "app";
    sp->a.image = "registry.local/app:1";
    sp->env.name = "MODE";
    sp->env.value = "plain-visible-value";
    sp->secret.name = "TOKEN";
    sp->secret.value = (char *)value;
    sp->envs[0] = &sp->env;
    sp->secrets[0] = &sp->secret;
    sp->a.env = sp->envs;
    sp->a.n_env = 1;
    sp->a.secret_env = sp->secrets;
    sp->a.n_secret_env = 1;
}

/* Whether needle occurs in the database file or its WAL, byte for byte. */
static bool on_disk(const fixture *f, const char *needle)
{
    char wal[256];
    snprintf(wal, sizeof wal, "%s-wal", f->db);
    const char *files[] = {f->db, wal};
    bool found = false;
    for (size_t i = 0; i < 2; i++) {
        char *buf = NULL;
        size_t len = 0;
        ink_err err = {0};
        if (ink_read_file(files[i], 1 << 26, &buf, &len, &err) < 0) {
            assert_int_equal(err.errnum, ENOENT); /* no WAL right now */
            continue;
        }
        if (memmem(buf, len, needle, strlen(needle)))
            found = true;
        free(buf);
    }
    return found;
}

static const Ink__V1__Assignment *only_assignment(const ink_watch_batch *b)
{
    assert_int_equal(b->n, 1);
    assert_int_equal(b->events[0]->n_assignments, 1);
    return b->events[0]->assignments[0];
}

static void test_secrets_sealed_at_rest(void **state)
{
    fixture *f = *state;
    secret_spec sp;
    secret_spec_init(&sp, "w1", SECRET);
    ink_err err = {0};
    uint64_t rev = 0;
    assert_int_equal(ink_store_set_assignment(f->s, "n1", &sp.a, &rev, &err), 1);
    assert_int_equal(rev, 1);
    /* The files hold the spec (the control) but not the secret. */
    assert_true(on_disk(f, "plain-visible-value"));
    assert_true(on_disk(f, "TOKEN"));
    assert_false(on_disk(f, SECRET));

    /* The key file was made beside the database, owner-only. */
    char key[256];
    snprintf(key, sizeof key, "%s/secret.key", f->dir);
    struct stat st;
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, 32);

    /* Agents get the value, from a snapshot and from the log. */
    ink_watch_batch b;
    assert_int_equal(ink_store_watch_events(f->s, "n1", 0, true, 100, &b, &err), 0);
    const Ink__V1__Assignment *a = only_assignment(&b);
    assert_string_equal(a->secret_env[0]->name, "TOKEN");
    assert_string_equal(a->secret_env[0]->value, SECRET);
    assert_string_equal(a->env[0]->value, "plain-visible-value");
    ink_store_free_events(&b);
    assert_int_equal(ink_store_put_assignment(f->s, "n2", &sp.a, &err), 2);
    assert_int_equal(ink_store_watch_events(f->s, "n2", 1, false, 100, &b, &err), 0);
    assert_int_equal(b.events[0]->kind, INK__V1__WATCH_EVENT__KIND__UPSERT);
    assert_string_equal(only_assignment(&b)->secret_env[0]->value, SECRET);
    ink_store_free_events(&b);

    /* Lists keep it sealed; ink_store_unseal opens it. */
    ink_workload_row *rows;
    size_t n;
    assert_int_equal(ink_store_list_workloads(f->s, "n1", &rows, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].spec->secret_env[0]->name, "TOKEN");
    const char *sealed = rows[0].spec->secret_env[0]->value;
    assert_memory_equal(sealed, "v1:", 3);
    char *plain = NULL;
    assert_int_equal(ink_store_unseal(f->s, sealed, &plain, &err), 0);
    assert_string_equal(plain, SECRET);
    free(plain);
    ink_store_free_workloads(rows, n);

    /* The same spec again is no change, although sealing it again would
     * give other bytes. */
    secret_spec same;
    secret_spec_init(&same, "w1", SECRET);
    assert_int_equal(ink_store_set_assignment(f->s, "n1", &same.a, &rev, &err), 0);
    assert_int_equal(rev, 2);
    assert_int_equal(same.a.generation, 1);
    /* Another value is a change, sealed too. */
    secret_spec changed;
    secret_spec_init(&changed, "w1", "rotated-" SECRET);
    assert_int_equal(ink_store_set_assignment(f->s, "n1", &changed.a, &rev, &err), 1);
    assert_int_equal(rev, 3);
    assert_int_equal(changed.a.generation, 2);
    assert_false(on_disk(f, "rotated-" SECRET));
    assert_int_equal(ink_store_watch_events(f->s, "n1", 2, false, 100, &b, &err), 0);
    assert_string_equal(only_assignment(&b)->secret_env[0]->value, "rotated-" SECRET);
    ink_store_free_events(&b);

    /* Still after a checkpoint has moved everything into the main file. */
    ink_store_close(f->s);
    assert_int_equal(ink_store_open(f->db, &f->s, &err), 0);
    assert_false(on_disk(f, SECRET));
    assert_true(on_disk(f, "plain-visible-value"));
}

static void test_store_seal_round_trip(void **state)
{
    fixture *f = *state;
    cleanup_free char *sealed = ink_store_seal(f->s, "{\"DB_PASS\":\"p4ss\"}");
    assert_non_null(sealed);
    assert_null(strstr(sealed, "p4ss"));
    char *plain = NULL;
    ink_err err = {0};
    assert_int_equal(ink_store_unseal(f->s, sealed, &plain, &err), 0);
    assert_string_equal(plain, "{\"DB_PASS\":\"p4ss\"}");
    free(plain);
    assert_int_equal(ink_store_unseal(f->s, "p4ss", &plain, &err), -1);
    assert_null(plain);
    assert_non_null(strstr(err.msg, "cannot decrypt secret"));
}

static void test_in_memory_store_seals_without_key_file(void **state)
{
    (void)state;
    ink_store *s;
    ink_err err = {0};
    assert_int_equal(ink_store_open(":memory:", &s, &err), 0);
    secret_spec sp;
    secret_spec_init(&sp, "w1", SECRET);
    assert_int_equal(ink_store_put_assignment(s, "n1", &sp.a, &err), 1);
    ink_watch_batch b;
    assert_int_equal(ink_store_watch_events(s, "n1", 0, true, 100, &b, &err), 0);
    assert_string_equal(only_assignment(&b)->secret_env[0]->value, SECRET);
    ink_store_free_events(&b);
    ink_store_close(s);
    assert_int_equal(access("secret.key", F_OK), -1); /* none made in the cwd */
}

static void write_key(const char *path, uint8_t fill)
{
    uint8_t k[32];
    memset(k, fill, sizeof k);
    unlink(path);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(k, 1, sizeof k, fp), sizeof k);
    fclose(fp);
    assert_int_equal(chmod(path, 0600), 0);
}

static void test_database_keeps_its_key(void **state)
{
    fixture *f = *state;
    secret_spec sp;
    secret_spec_init(&sp, "w1", SECRET);
    ink_err err = {0};
    assert_true(ink_store_put_assignment(f->s, "n1", &sp.a, &err) > 0);
    ink_store_close(f->s);
    f->s = NULL;
    char key[256], saved[256];
    snprintf(key, sizeof key, "%s/secret.key", f->dir);
    snprintf(saved, sizeof saved, "%s/saved.key", f->dir);
    assert_int_equal(rename(key, saved), 0);
    /* Without its key file: refused, and no new key made. */
    assert_int_equal(ink_store_open(f->db, &f->s, &err), -1);
    assert_non_null(strstr(err.msg, "is missing"));
    assert_int_equal(access(key, F_OK), -1);
    /* Another key: refused. */
    write_key(key, 0x42);
    assert_int_equal(ink_store_open(f->db, &f->s, &err), -1);
    assert_non_null(strstr(err.msg, "is not the key this database's secrets are sealed with"));
    /* Its own again: fine, and the secret opens. */
    assert_int_equal(rename(saved, key), 0);
    assert_int_equal(ink_store_open(f->db, &f->s, &err), 0);
    ink_watch_batch b;
    assert_int_equal(ink_store_watch_events(f->s, "n1", 0, true, 100, &b, &err), 0);
    assert_string_equal(only_assignment(&b)->secret_env[0]->value, SECRET);
    ink_store_free_events(&b);
}

static void exec_raw(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
}

/* Writes spec a for (node, wid) straight into both tables, as given. */
static void put_raw(sqlite3 *db, int64_t rev, const char *node, const Ink__V1__Assignment *a)
{
    size_t len = protobuf_c_message_get_packed_size(&a->base);
    cleanup_free uint8_t *buf = ink_xmalloc(len);
    protobuf_c_message_pack(&a->base, buf);
    const char *sql[] = {"INSERT OR REPLACE INTO assignments VALUES (?3, ?4, ?1, ?2)",
                         "INSERT INTO assignment_log VALUES (?1, ?3, ?4, 1, ?2)",
                         "UPDATE meta SET value = ?1 WHERE key = 'revision'"};
    for (size_t i = 0; i < INK_ARRAY_LEN(sql); i++) {
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(db, sql[i], -1, &st, NULL), SQLITE_OK);
        sqlite3_bind_int64(st, 1, rev);
        if (i < 2) {
            sqlite3_bind_blob(st, 2, buf, (int)len, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, node, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 4, a->workload_id, -1, SQLITE_STATIC);
        }
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
    }
}

static void test_plaintext_from_before_is_sealed(void **state)
{
    fixture *f = *state;
    ink_store_close(f->s);
    f->s = NULL;
    /* What an earlier coordinator left: plaintext values, no key check. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    exec_raw(db, "DELETE FROM meta WHERE key = 'secret_check'");
    secret_spec sp;
    secret_spec_init(&sp, "w1", SECRET);
    put_raw(db, 1, "n1", &sp.a);
    sqlite3_close(db);
    assert_true(on_disk(f, SECRET));

    ink_err err = {0};
    assert_int_equal(ink_store_open(f->db, &f->s, &err), 0);
    assert_false(on_disk(f, SECRET));
    ink_watch_batch b;
    assert_int_equal(ink_store_watch_events(f->s, "n1", 0, true, 100, &b, &err), 0);
    assert_string_equal(only_assignment(&b)->secret_env[0]->value, SECRET);
    ink_store_free_events(&b);
    assert_int_equal(ink_store_watch_events(f->s, "n1", 0, false, 100, &b, &err), 0);
    assert_int_equal(b.events[0]->kind, INK__V1__WATCH_EVENT__KIND__UPSERT);
    assert_string_equal(only_assignment(&b)->secret_env[0]->value, SECRET);
    ink_store_free_events(&b);
    /* Sealed once: opening again changes nothing. */
    ink_store_close(f->s);
    assert_int_equal(ink_store_open(f->db, &f->s, &err), 0);
    assert_int_equal(ink_store_watch_events(f->s, "n1", 0, true, 100, &b, &err), 0);
    assert_string_equal(only_assignment(&b)->secret_env[0]->value, SECRET);
    ink_store_free_events(&b);
}

static void test_undecryptable_secret_is_refused(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    put(f->s, "n1", "other", 1); /* revision 1 */
    /* A spec whose stored secret does not open (damaged, or sealed with
     * some other key), written behind the store's back at revision 2. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    secret_spec bad;
    secret_spec_init(&bad, "w1", "v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    put_raw(db, 2, "n1", &bad.a);
    sqlite3_close(db);

    /* Not sent without the secret, nor left out of the snapshot: the
     * watch fails, naming what is wrong. */
    ink_watch_batch b;
    assert_int_equal(ink_store_watch_events(f->s, "n1", 0, true, 100, &b, &err), -1);
    assert_non_null(strstr(err.msg, "workload w1: secret TOKEN: cannot decrypt secret"));
    assert_int_equal(b.n, 0);
    /* Resuming across it falls back to a snapshot, which fails as well. */
    assert_int_equal(ink_store_watch_events(f->s, "n1", 1, false, 100, &b, &err), -1);

    /* Putting the workload again repairs it, even with the same value. */
    secret_spec good;
    secret_spec_init(&good, "w1", SECRET);
    uint64_t rev = 0;
    assert_int_equal(ink_store_set_assignment(f->s, "n1", &good.a, &rev, &err), 1);
    assert_int_equal(rev, 3);
    assert_int_equal(ink_store_watch_events(f->s, "n1", 0, true, 100, &b, &err), 0);
    assert_int_equal(b.events[0]->n_assignments, 2);
    ink_store_free_events(&b);
    /* The broken entry is still in the log: a watcher from before it gets
     * the (now good) snapshot instead of an error. */
    assert_int_equal(ink_store_watch_events(f->s, "n1", 1, false, 100, &b, &err), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.events[0]->kind, INK__V1__WATCH_EVENT__KIND__SNAPSHOT);
    assert_int_equal(b.head, 3);
    ink_store_free_events(&b);
    /* Past it, the log as usual. */
    assert_int_equal(ink_store_watch_events(f->s, "n1", 2, false, 100, &b, &err), 0);
    assert_int_equal(b.events[0]->kind, INK__V1__WATCH_EVENT__KIND__UPSERT);
    assert_string_equal(only_assignment(&b)->secret_env[0]->value, SECRET);
    ink_store_free_events(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_migrates_and_keeps_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_newer_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revisions_and_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_sends_exactly_the_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_when_resume_impossible, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets_sealed_at_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_seal_round_trip, setup, teardown),
        cmocka_unit_test(test_in_memory_store_seals_without_key_file),
        cmocka_unit_test_setup_teardown(test_database_keeps_its_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plaintext_from_before_is_sealed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undecryptable_secret_is_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
