/* Unit tests for coordinator/store.c on a real SQLite file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

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
    assert_int_equal(ink_store_schema_version(f->s), 2);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
