/* Unit tests for the hash-chained audit log (coordinator/audit.c): append,
 * verify against edits, deletions and a cut tail (made with raw SQL, as
 * someone holding the file would), redaction, concurrent appenders and the
 * `audit` CLI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <sqlite3.h>

#include "audit.h"
#include "coordinator.h"
#include "cli_fixture.h"
#include "testlib.h"
#include "util.h"

typedef cli_fixture fixture;
#define setup cli_fixture_setup
#define teardown cli_fixture_teardown
/* Runs the command with ARGS..., keeping its output in f->out, f->err. */
#define RUN(f, ...) cli_fixture_run(f, ink_cmd_audit, (const char *[]){__VA_ARGS__, NULL})

static void append_n(ink_store *s, int n, const char *tool)
{
    for (int i = 0; i < n; i++) {
        json_t *args = json_pack("{s:s, s:i, s:[s,s], s:f}", "app", "web", "i", i, "list", "a", "b",
                                 "ratio", 0.1 * i);
        ink_audit_entry e = {.time_ms = 1000 + i,
                             .key_id = "0123456789ab",
                             .project = "demo",
                             .tool = tool,
                             .arguments = args,
                             .result = i % 3 ? "ok" : "error: quota exceeded"};
        ink_err err = {0};
        int64_t seq = 0;
        assert_int_equal(ink_audit_append_seq(s, &e, &seq, &err), 0);
        assert_true(seq > 0);
        json_decref(args);
    }
}

/* Raw SQL on the file, as someone with access to it; the append-only
 * triggers are dropped first, as such a person would. */
static void tamper(fixture *f, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db,
                          "DROP TRIGGER IF EXISTS audit_log_no_update;"
                          "DROP TRIGGER IF EXISTS audit_log_no_delete;",
                          NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "%s: %s\n", sql, msg);
    sqlite3_free(msg);
    sqlite3_close(db);
    assert_int_equal(rc, SQLITE_OK);
}

static int64_t verify(fixture *f, ink_audit_verify_result *r)
{
    ink_err err = {0};
    int rc = ink_audit_verify(f->store, r, &err);
    assert_true(rc == 0 || rc == 1);
    return rc == 0 ? 0 : r->first_bad_seq;
}

static void test_empty_and_append(void **state)
{
    fixture *f = *state;
    ink_audit_verify_result r;
    assert_int_equal(verify(f, &r), 0);
    assert_int_equal(r.rows, 0);
    append_n(f->store, 10, "create_app");
    assert_int_equal(verify(f, &r), 0);
    assert_int_equal(r.rows, 10);
    assert_int_equal(r.head_seq, 10);
    assert_int_equal(strlen(r.head_hash), 64);

    /* NULL arguments and project are stored as {} and "". */
    ink_audit_entry e = {.time_ms = 5, .key_id = "cli", .tool = "keys.revoke", .result = "ok"};
    ink_err err = {0};
    int64_t seq;
    assert_int_equal(ink_audit_append_seq(f->store, &e, &seq, &err), 0);
    assert_int_equal(seq, 11);
    ink_audit_row *rows;
    size_t n;
    assert_int_equal(ink_audit_list(f->store, 2, &rows, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].seq, 10);
    assert_int_equal(rows[1].seq, 11);
    assert_string_equal(rows[1].arguments, "{}");
    assert_string_equal(rows[1].project, "");
    assert_int_equal(strlen(rows[1].hash), 64);
    ink_audit_free_rows(rows, n);
    assert_int_equal(verify(f, &r), 0);

    /* Another handle on the file continues the same chain. */
    ink_store *other;
    assert_int_equal(ink_store_open(f->db, &other, &err), 0);
    append_n(other, 2, "delete_app");
    ink_store_close(other);
    assert_int_equal(verify(f, &r), 0);
    assert_int_equal(r.rows, 13);
}

static void test_triggers_refuse_edits(void **state)
{
    fixture *f = *state;
    append_n(f->store, 2, "create_app");
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_not_equal(
        sqlite3_exec(db, "UPDATE audit_log SET result = 'ok' WHERE seq = 1", NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(db, "DELETE FROM audit_log", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ink_audit_verify_result r;
    assert_int_equal(verify(f, &r), 0);
}

static void test_edited_arguments(void **state)
{
    fixture *f = *state;
    append_n(f->store, 8, "create_app");
    tamper(f, "UPDATE audit_log SET arguments = '{\"app\":\"other\"}' WHERE seq = 5");
    ink_audit_verify_result r;
    assert_int_equal(verify(f, &r), 5);
    assert_non_null(strstr(r.reason, "hash"));
}

static void test_edited_fields(void **state)
{
    fixture *f = *state;
    ink_audit_verify_result r;
    /* Each column the hash covers, and the chain links themselves. */
    const char *edits[] = {
        "UPDATE audit_log SET result = 'tampered' WHERE seq = 3",
        "UPDATE audit_log SET time_ms = time_ms + 1 WHERE seq = 3",
        "UPDATE audit_log SET key_id = 'cli' WHERE seq = 3",
        "UPDATE audit_log SET project = 'other' WHERE seq = 3",
        "UPDATE audit_log SET tool = 'get_app' WHERE seq = 3",
        "UPDATE audit_log SET hash = (SELECT hash FROM audit_log WHERE seq = 2) WHERE seq = 3",
        "UPDATE audit_log SET prev_hash = hash WHERE seq = 3",
        "UPDATE audit_log SET arguments = 'not json' WHERE seq = 3",
    };
    append_n(f->store, 6, "create_app");
    for (size_t i = 0; i < INK_ARRAY_LEN(edits); i++) {
        /* Edit a copy of the file's rows and restore them after. */
        tamper(f, "CREATE TABLE IF NOT EXISTS backup AS SELECT * FROM audit_log");
        tamper(f, edits[i]);
        assert_int_equal(verify(f, &r), 3);
        tamper(f, "DELETE FROM audit_log; INSERT INTO audit_log SELECT * FROM backup;"
                  "DROP TABLE backup");
        assert_int_equal(verify(f, &r), 0);
    }
}

static void test_deleted_middle_row(void **state)
{
    fixture *f = *state;
    append_n(f->store, 8, "create_app");
    tamper(f, "DELETE FROM audit_log WHERE seq = 4");
    ink_audit_verify_result r;
    assert_int_equal(verify(f, &r), 4);
    assert_non_null(strstr(r.reason, "missing"));
}

static void test_deleted_first_row(void **state)
{
    fixture *f = *state;
    append_n(f->store, 3, "create_app");
    tamper(f, "DELETE FROM audit_log WHERE seq = 1");
    ink_audit_verify_result r;
    assert_int_equal(verify(f, &r), 1);
}

static void test_deleted_tail(void **state)
{
    fixture *f = *state;
    append_n(f->store, 8, "create_app");
    tamper(f, "DELETE FROM audit_log WHERE seq = 8");
    ink_audit_verify_result r;
    assert_int_equal(verify(f, &r), 8);
    assert_non_null(strstr(r.reason, "head"));
    /* The last two, and everything. */
    tamper(f, "DELETE FROM audit_log WHERE seq = 7");
    assert_int_equal(verify(f, &r), 7);
    tamper(f, "DELETE FROM audit_log");
    assert_int_equal(verify(f, &r), 1);
}

static void test_renumbered_rows(void **state)
{
    fixture *f = *state;
    append_n(f->store, 5, "create_app");
    /* Delete row 3 and shift the rest down to hide the gap. */
    tamper(f, "DELETE FROM audit_log WHERE seq = 3;"
              "UPDATE audit_log SET seq = -seq WHERE seq > 3;"
              "UPDATE audit_log SET seq = -seq - 1 WHERE seq < 0");
    ink_audit_verify_result r;
    assert_int_equal(verify(f, &r), 3);
}

/* The first 16 hex digits of plain SHA-256 of text: what fingerprints
 * were before they were keyed. */
static void plain_prefix(const char *text, char out[17])
{
    uint8_t d[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)text, strlen(text), d);
    ink_hex(d, 8, out);
}

static void test_redaction(void **state)
{
    fixture *f = *state;
    const char *secret = "hunter2-very-secret";
    json_t *args =
        json_pack("{s:s, s:{s:s, s:s}, s:{s:s}, s:[{s:{s:s}}], s:[s], s:i}", "app", "web",
                  "secret_env", "TOKEN", secret, "PASSWORD", "p4ss", "env", "MODE", "prod",
                  "replicas", "secret_env", "DB_PASS", secret, "tags", "x", "port", 8080);
    json_t *red = ink_audit_redact(f->store, args, NULL);
    char *text = json_dumps(red, JSON_COMPACT | JSON_SORT_KEYS);
    assert_null(strstr(text, secret));
    assert_null(strstr(text, "p4ss"));
    /* Names and everything else kept. */
    assert_non_null(strstr(text, "\"TOKEN\""));
    assert_non_null(strstr(text, "\"MODE\":\"prod\""));
    assert_non_null(strstr(text, "\"DB_PASS\""));
    assert_non_null(strstr(text, "\"port\":8080"));
    const char *fp = json_string_value(json_object_get(
        json_object_get(json_object_get(red, "secret_env"), "TOKEN"), "fingerprint"));
    assert_non_null(fp);
    assert_int_equal(strlen(fp), 16);
    assert_int_equal(strspn(fp, "0123456789abcdef"), 16);
    /* The store's keyed fingerprint (the one app views show), not the
     * plain SHA-256 of the value, which would let a weak secret be
     * guessed from the log. */
    char keyed[17], plain[17];
    assert_int_equal(ink_store_fingerprint(f->store, secret, strlen(secret), keyed), 0);
    assert_string_equal(fp, keyed);
    plain_prefix(secret, plain);
    assert_null(strstr(text, plain));
    plain_prefix("p4ss", plain);
    assert_null(strstr(text, plain));
    assert_null(strstr(text, "sha256"));
    /* Same value, same fingerprint, wherever it appears. */
    const char *fp2 = json_string_value(json_object_get(
        json_object_get(
            json_object_get(json_array_get(json_object_get(red, "replicas"), 0), "secret_env"),
            "DB_PASS"),
        "fingerprint"));
    assert_non_null(fp2);
    assert_string_equal(fp, fp2);
    /* The input is untouched. */
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(args, "secret_env"), "TOKEN")), secret);

    /* Stored, the log has no trace of it either. */
    ink_audit_entry e = {.time_ms = 1,
                         .key_id = "0123456789ab",
                         .project = "demo",
                         .tool = "create_app",
                         .arguments = red,
                         .result = "ok"};
    ink_err err = {0};
    assert_int_equal(ink_audit_append(f->store, &e, &err), 0);
    assert_int_equal(RUN(f, "list", "--json"), 0);
    assert_null(strstr(f->out, secret));
    assert_non_null(strstr(f->out, fp));
    plain_prefix(secret, plain);
    assert_null(strstr(f->out, plain));
    free(text);
    json_decref(red);

    /* Other shapes: an array of K=V, a scalar, custom key names. */
    const char *keys[] = {"password", "secret_env", NULL};
    json_t *a2 = json_pack("{s:[s,s], s:s, s:i}", "secret_env", "A=hunter2-very-secret", "B=x",
                           "password", secret, "n", 1);
    json_t *r2 = ink_audit_redact(f->store, a2, keys);
    text = json_dumps(r2, JSON_COMPACT);
    assert_null(strstr(text, secret));
    assert_non_null(strstr(text, "\"n\":1"));
    assert_int_equal(json_array_size(json_object_get(r2, "secret_env")), 2);
    free(text);
    json_decref(r2);
    json_decref(a2);
    json_decref(args);

    json_t *none = ink_audit_redact(f->store, NULL, NULL);
    assert_true(json_is_object(none));
    json_decref(none);
}

typedef struct {
    const char *db;
    int n;
} appender;

static void *append_thread(void *arg)
{
    appender *a = arg;
    ink_store *s;
    ink_err err = {0};
    if (ink_store_open(a->db, &s, &err) < 0)
        return (void *)1;
    intptr_t failed = 0;
    for (int i = 0; i < a->n && !failed; i++) {
        json_t *args = json_pack("{s:i}", "i", i);
        ink_audit_entry e = {
            .time_ms = i, .key_id = "cli", .tool = "t", .arguments = args, .result = "ok"};
        failed = ink_audit_append(s, &e, &err) < 0;
        json_decref(args);
    }
    ink_store_close(s);
    return (void *)failed;
}

/* Appenders with their own connections (as separate processes) and one
 * sharing the fixture's: every row lands with its own seq, and the chain
 * holds. */
static void test_concurrent_appenders(void **state)
{
    fixture *f = *state;
    enum { THREADS = 3, EACH = 20 };
    pthread_t t[THREADS];
    appender a = {.db = f->db, .n = EACH};
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, append_thread, &a), 0);
    append_n(f->store, EACH, "mine");
    for (int i = 0; i < THREADS; i++) {
        void *res;
        pthread_join(t[i], &res);
        assert_null(res);
    }
    ink_audit_verify_result r;
    assert_int_equal(verify(f, &r), 0);
    assert_int_equal(r.rows, (THREADS + 1) * EACH);
}

static void test_cli(void **state)
{
    fixture *f = *state;
    append_n(f->store, 5, "create_app");
    assert_int_equal(RUN(f, "verify"), 0);
    assert_non_null(strstr(f->out, "intact: 5 entries"));
    assert_int_equal(RUN(f, "list"), 0);
    assert_non_null(strstr(f->out, "create_app"));
    assert_non_null(strstr(f->out, "error: quota exceeded"));
    assert_int_equal(RUN(f, "list", "--tail", "2", "--json"), 0);
    json_t *arr = json_loads(f->out, 0, NULL);
    assert_non_null(arr);
    assert_int_equal(json_array_size(arr), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "seq")), 4);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(arr, 1), "arguments"), "app")),
                        "web");
    json_decref(arr);
    assert_int_equal(RUN(f, "list", "--tail=0"), 2);
    assert_int_equal(RUN(f, "list", "--tail", "x"), 2);
    assert_int_equal(RUN(f, "verify", "extra"), 2);
    assert_int_equal(RUN(f, "nope"), 2);

    tamper(f, "UPDATE audit_log SET result = 'tampered' WHERE seq = 3");
    assert_int_equal(RUN(f, "verify"), 1);
    assert_non_null(strstr(f->out, "seq 3"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_and_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_triggers_refuse_edits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edited_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_middle_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_first_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renumbered_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_appenders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
