/* Unit tests for the app layer (coordinator/apps.c) and its controller
 * (coordinator/controller.c) on a real SQLite store in a scratch directory.
 * Nodes are registered and report workload status through the store, as
 * agents would; the controller runs one pass at a time with a chosen
 * clock. The controller ends create/update operations only once the app's
 * URL answers HTTP, so tests that expect success run a tiny HTTP responder
 * on 127.0.0.1 at the app's published port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "apps.h"
#include "apps_internal.h"
#include "controller.h"
#include "egress.h"
#include "store.h"
#include "testlib.h"
#include "util.h"

static const ink_caller CALLER = {.key_id = "k1", .project = "demo", .role = INK_ROLE_DEPLOYER};
static const ink_controller_opts OPTS = {
    .node_timeout_ms = 20000,
    .node_lost_ms = 60000,
    .place_grace_ms = 15000,
    .probe_timeout_ms = 500,
};

#define RUNNING INK__V1__WORKLOAD_STATUS__STATE__RUNNING
#define FAILED INK__V1__WORKLOAD_STATUS__STATE__FAILED
#define PULLING INK__V1__WORKLOAD_STATUS__STATE__PULLING
#define STARTING INK__V1__WORKLOAD_STATUS__STATE__STARTING
#define SLEEPING INK__V1__WORKLOAD_STATUS__STATE__SLEEPING
#define WAKING INK__V1__WORKLOAD_STATUS__STATE__WAKING

/* ------------------------------------------------------------ HTTP responder */

/* Answers every connection with "HTTP/1.0 200 OK" and closes it. */
typedef struct responder {
    int fd;
    pthread_t thread;
    atomic_int stop;
    bool running;
} responder;

static void *responder_main(void *arg)
{
    responder *r = arg;
    while (!atomic_load(&r->stop)) {
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        if (poll(&p, 1, 50) != 1)
            continue;
        int c = accept4(r->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        /* Reads the request to its blank line first: closing with unread
         * data would reset the connection before the client reads. */
        char buf[2048];
        size_t got = 0;
        while (got < sizeof buf - 1) {
            struct pollfd q = {.fd = c, .events = POLLIN};
            if (poll(&q, 1, 2000) != 1)
                break;
            ssize_t n = recv(c, buf + got, sizeof buf - 1 - got, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = '\0';
            if (strstr(buf, "\r\n\r\n"))
                break;
        }
        static const char resp[] = "HTTP/1.0 200 OK\r\n\r\nok";
        (void)!send(c, resp, sizeof resp - 1, MSG_NOSIGNAL);
        shutdown(c, SHUT_WR);
        close(c);
    }
    return NULL;
}

static int listen_on(uint32_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 16) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ------------------------------------------------------------------ fixture */

typedef struct {
    char dir[128];
    char db[192];
    ink_store *s;
    responder http;
} fixture;

static int setup(void **state)
{
    fixture *f = ink_xcalloc(1, sizeof *f);
    if (test_mkdtemp(f->dir, sizeof f->dir, "apps") < 0)
        return -1;
    snprintf(f->db, sizeof f->db, "%s/ink.db", f->dir);
    ink_err err = {0};
    if (ink_store_open(f->db, &f->s, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    f->http.fd = -1;
    *state = f;
    return 0;
}

static void responder_stop(fixture *f)
{
    if (!f->http.running)
        return;
    atomic_store(&f->http.stop, 1);
    pthread_join(f->http.thread, NULL);
    close(f->http.fd);
    f->http.fd = -1;
    f->http.running = false;
}

static int teardown(void **state)
{
    fixture *f = *state;
    responder_stop(f);
    ink_store_close(f->s);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

/* The published port the app was given, read from the database. */
static uint32_t app_port(fixture *f, const char *name)
{
    sqlite3 *db = ink_store_lock(f->s);
    sqlite3_stmt *st = NULL;
    uint32_t port = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT published_port FROM apps WHERE project = 'demo' AND name = ?"
                           " AND deleted_ms = 0",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            port = (uint32_t)sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    ink_store_unlock(f->s);
    return port;
}

/* Serves HTTP at the app's published port; returns the port. Call before
 * the app's first pass. Should another process hold that port, the
 * responder takes a free one and the app's row is moved to it (before any
 * replica carries the port), so that tests running side by side (plain and
 * valgrind variants) do not depend on each other. */
static uint32_t responder_start(fixture *f, const char *app)
{
    assert_false(f->http.running);
    uint32_t port = app_port(f, app);
    assert_true(port >= INK_APP_PORT_MIN && port <= INK_APP_PORT_MAX);
    int fd = listen_on(port);
    if (fd < 0) {
        fd = listen_on(0);
        assert_true(fd >= 0);
        struct sockaddr_in a;
        socklen_t len = sizeof a;
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        port = ntohs(a.sin_port);
        sqlite3 *db = ink_store_lock(f->s);
        char sql[200];
        snprintf(sql, sizeof sql,
                 "UPDATE apps SET published_port = %u WHERE project = 'demo' AND name = '%s'"
                 " AND deleted_ms = 0",
                 port, app);
        int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        ink_store_unlock(f->s);
        assert_int_equal(rc, SQLITE_OK);
    }
    f->http.fd = fd;
    atomic_store(&f->http.stop, 0);
    assert_int_equal(pthread_create(&f->http.thread, NULL, responder_main, &f->http), 0);
    f->http.running = true;
    return port;
}

/* ------------------------------------------------------------------ helpers */

static void add_node(fixture *f, const char *id, const char *instance, int64_t now_ms)
{
    Ink__V1__Capacity cap = INK__V1__CAPACITY__INIT;
    cap.cpus = 4;
    cap.memory_bytes = 8ULL << 30;
    Ink__V1__RegisterRequest r = INK__V1__REGISTER_REQUEST__INIT;
    r.node_id = (char *)id;
    r.hostname = (char *)id;
    r.agent_endpoint = "127.0.0.1:1";
    r.capacity = &cap;
    r.instance_id = (char *)instance;
    r.public_address = "127.0.0.1";
    ink_err err = {0};
    assert_int_equal(ink_store_register_node(f->s, &r, now_ms, &err), 0);
}

typedef struct status {
    const char *id;
    int state;
    const char *reason;
} status;

/* The node's whole report: the workloads listed, nothing else. */
static void report(fixture *f, const char *node, const char *instance, int64_t now_ms,
                   const status *st, size_t n)
{
    Ink__V1__WorkloadStatus ws[8];
    Ink__V1__WorkloadStatus *ptrs[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        ink__v1__workload_status__init(&ws[i]);
        ws[i].workload_id = (char *)st[i].id;
        ws[i].generation = 1;
        ws[i].state = st[i].state;
        ws[i].reason = (char *)(st[i].reason ? st[i].reason : "");
        ws[i].image_digest = st[i].state == RUNNING ? "sha256:0123abcd" : "";
        ws[i].since_unix_ms = now_ms;
        ptrs[i] = &ws[i];
    }
    Ink__V1__ReportStatusRequest r = INK__V1__REPORT_STATUS_REQUEST__INIT;
    r.node_id = (char *)node;
    r.instance_id = (char *)instance;
    r.workloads = ptrs;
    r.n_workloads = n;
    ink_err err = {0};
    assert_int_equal(ink_store_report_status(f->s, &r, now_ms, &err), 0);
}

static int pass(fixture *f, int64_t now_ms)
{
    int rc = ink_controller_pass(f->s, &OPTS, now_ms);
    assert_true(rc >= 0);
    return rc;
}

static const char *js(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

static json_t *get_op(fixture *f, const char *id)
{
    json_t *op = NULL;
    ink_err err = {0};
    assert_int_equal(ink_apps_get_operation(f->s, "demo", id, &op, &err), 0);
    return op;
}

static void assert_op_status(fixture *f, const char *id, const char *want)
{
    json_t *op = get_op(f, id);
    if (strcmp(js(op, "status"), want) != 0)
        fprintf(stderr, "operation %s: status %s (%s), want %s\n", id, js(op, "status"),
                js(op, "message"), want);
    assert_string_equal(js(op, "status"), want);
    json_decref(op);
}

static json_t *get_app(fixture *f, const char *name)
{
    json_t *app = NULL;
    ink_err err = {0};
    int rc = ink_apps_get(f->s, "demo", name, &app, &err);
    if (rc != 0)
        fprintf(stderr, "get %s: %s\n", name, err.msg);
    assert_int_equal(rc, 0);
    return app;
}

static json_t *list_apps(fixture *f)
{
    json_t *list = NULL;
    ink_err err = {0};
    assert_int_equal(ink_apps_list(f->s, "demo", NULL, 0, &list, &err), 0);
    return list;
}

/* Creates the app; returns rc and copies the operation id into opid. */
static int create(fixture *f, json_t *args, int64_t now_ms, char opid[40], ink_err *err)
{
    json_t *op = NULL;
    int rc = ink_apps_create(f->s, &CALLER, args, now_ms, &op, err);
    json_decref(args);
    if (rc >= 0) {
        assert_non_null(op);
        if (opid)
            snprintf(opid, 40, "%s", js(op, "operation_id"));
    } else {
        assert_null(op);
    }
    json_decref(op);
    return rc;
}

static int update(fixture *f, json_t *args, int64_t now_ms, char opid[40], ink_err *err)
{
    json_t *op = NULL;
    int rc = ink_apps_update(f->s, &CALLER, args, now_ms, &op, err);
    json_decref(args);
    if (rc >= 0) {
        assert_non_null(op);
        if (opid)
            snprintf(opid, 40, "%s", js(op, "operation_id"));
    }
    json_decref(op);
    return rc;
}

static json_t *web_args(const char *image)
{
    return json_pack("{s:s, s:s, s:i, s:{s:s}}", "name", "web", "image", image, "port", 8080, "env",
                     "MODE", "prod");
}

/* Assignments on node (every node's when NULL). */
static size_t workloads(fixture *f, const char *node, ink_workload_row **rows)
{
    ink_workload_row *r = NULL;
    size_t n = 0;
    ink_err err = {0};
    assert_int_equal(ink_store_list_workloads(f->s, node, &r, &n, &err), 0);
    if (rows) {
        *rows = r;
    } else {
        ink_store_free_workloads(r, n);
    }
    return n;
}

/* The single assignment's workload id (asserts there is exactly one). */
static void only_workload(fixture *f, const char *node, char id[64])
{
    ink_workload_row *rows;
    size_t n = workloads(f, node, &rows);
    assert_int_equal(n, 1);
    snprintf(id, 64, "%s", rows[0].spec->workload_id);
    ink_store_free_workloads(rows, n);
}

static bool has_workload(fixture *f, const char *id)
{
    ink_workload_row *rows;
    size_t n = workloads(f, NULL, &rows);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found |= strcmp(rows[i].spec->workload_id, id) == 0;
    ink_store_free_workloads(rows, n);
    return found;
}

/* Case-1 setup: "web" created on node-a, serving, its operation
 * succeeded. Returns the published port; id is its replica. */
static uint32_t running_web(fixture *f, char id[64])
{
    int64_t now = ink_now_ms();
    add_node(f, "node-a", "ia", now);
    ink_err err = {0};
    char opid[40];
    assert_int_equal(create(f, web_args("reg/x:1"), now, opid, &err), 0);
    uint32_t port = responder_start(f, "web");
    assert_true(pass(f, now) > 0);
    only_workload(f, "node-a", id);
    report(f, "node-a", "ia", ink_now_ms(), &(status){id, RUNNING, NULL}, 1);
    pass(f, ink_now_ms());
    assert_op_status(f, opid, "succeeded");
    return port;
}

/* ------------------------------------------------------------------ 1. create */

static void test_create_places_and_serves(void **state)
{
    fixture *f = *state;
    int64_t now = ink_now_ms();
    add_node(f, "node-a", "ia", now);
    ink_err err = {0};
    json_t *op = NULL;
    json_t *args = web_args("reg/x:1");
    assert_int_equal(ink_apps_create(f->s, &CALLER, args, now, &op, &err), 0);
    json_decref(args);
    assert_string_equal(js(op, "status"), "running");
    assert_string_equal(js(op, "kind"), "create_app");
    assert_string_equal(js(op, "app"), "web");
    assert_string_equal(js(op, "project"), "demo");
    assert_true(json_is_null(json_object_get(op, "url")));
    char opid[40];
    snprintf(opid, sizeof opid, "%s", js(op, "operation_id"));
    assert_true(strncmp(opid, "op-", 3) == 0);
    json_decref(op);
    /* The first app of a fresh store gets the first published port. */
    assert_int_equal(app_port(f, "web"), INK_APP_PORT_MIN);
    uint32_t port = responder_start(f, "web");

    /* One replica, assigned to the node with everything the agent needs. */
    assert_true(pass(f, now) > 0);
    ink_workload_row *rows;
    size_t n = workloads(f, NULL, &rows);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].node_id, "node-a");
    Ink__V1__Assignment *a = rows[0].spec;
    assert_true(strncmp(a->workload_id, "web-", 4) == 0);
    assert_string_equal(a->app, "web");
    assert_string_equal(a->project, "demo");
    assert_string_equal(a->image, "reg/x:1");
    assert_int_equal(a->port, 8080);
    assert_int_equal(a->published_port, port);
    assert_non_null(a->resources);
    assert_int_equal(a->resources->cpu_millis, INK_APP_DEFAULT_CPU_MILLIS);
    assert_int_equal(a->resources->memory_bytes, (uint64_t)INK_APP_DEFAULT_MEMORY_MB << 20);
    assert_int_equal(a->n_env, 1);
    assert_string_equal(a->env[0]->name, "MODE");
    assert_string_equal(a->env[0]->value, "prod");
    assert_int_equal(a->n_secret_env, 0);
    char id[64];
    snprintf(id, sizeof id, "%s", a->workload_id);
    ink_store_free_workloads(rows, n);
    /* Nothing reported yet: still running, and a second pass places
     * nothing more. */
    assert_op_status(f, opid, "running");
    pass(f, now + 1);
    assert_int_equal(workloads(f, NULL, NULL), 1);
    assert_op_status(f, opid, "running");

    /* The agent reports it running: the URL answers, the operation ends. */
    report(f, "node-a", "ia", ink_now_ms(), &(status){id, RUNNING, NULL}, 1);
    assert_true(pass(f, ink_now_ms()) > 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", port);
    op = get_op(f, opid);
    assert_string_equal(js(op, "status"), "succeeded");
    assert_string_equal(js(op, "url"), url);
    assert_int_equal(json_integer_value(json_object_get(op, "progress")), 100);
    json_decref(op);

    json_t *app = get_app(f, "web");
    assert_string_equal(js(app, "status"), "running");
    assert_string_equal(js(app, "url"), url);
    assert_string_equal(js(app, "image"), "reg/x:1");
    assert_string_equal(js(app, "image_digest"), "sha256:0123abcd");
    assert_string_equal(js(app, "operation_id"), opid);
    assert_int_equal(json_integer_value(json_object_get(app, "generation")), 1);
    assert_int_equal(json_integer_value(json_object_get(app, "ready_replicas")), 1);
    assert_string_equal(js(json_object_get(app, "env"), "MODE"), "prod");
    json_t *reps = json_object_get(app, "replica_status");
    assert_int_equal(json_array_size(reps), 1);
    json_t *r0 = json_array_get(reps, 0);
    assert_string_equal(js(r0, "id"), id);
    assert_string_equal(js(r0, "node"), "node-a");
    assert_string_equal(js(r0, "state"), "running");
    assert_string_equal(js(r0, "image_digest"), "sha256:0123abcd");
    assert_string_equal(js(r0, "url"), url);
    json_decref(app);

    json_t *list = list_apps(f);
    json_t *apps = json_object_get(list, "apps");
    assert_int_equal(json_array_size(apps), 1);
    assert_string_equal(js(json_array_get(apps, 0), "app"), "web");
    assert_string_equal(js(json_array_get(apps, 0), "status"), "running");
    assert_string_equal(js(json_array_get(apps, 0), "url"), url);
    assert_true(json_is_null(json_object_get(list, "next_cursor")));
    json_decref(list);
}

/* ------------------------------------------------------------- 2. idempotency */

static void test_idempotency(void **state)
{
    fixture *f = *state;
    int64_t now = ink_now_ms();
    ink_err err = {0};
    char op1[40], op2[40];
    json_t *args = web_args("reg/x:1");
    json_object_set_new(args, "idempotency_key", json_string("k"));
    assert_int_equal(create(f, json_deep_copy(args), now, op1, &err), 0);
    /* The same request again: the same operation. */
    assert_int_equal(create(f, json_deep_copy(args), now + 5, op2, &err), 1);
    assert_string_equal(op1, op2);
    /* The same key for another request: a conflict naming the operation. */
    json_object_set_new(args, "image", json_string("reg/x:2"));
    err = (ink_err){0};
    assert_int_equal(create(f, args, now, NULL, &err), -1);
    assert_int_equal(err.errnum, INK_APPS_ECONFLICT);
    assert_non_null(strstr(err.msg, op1));

    /* No key, identical arguments: a retry of the create. */
    err = (ink_err){0};
    assert_int_equal(create(f, web_args("reg/x:1"), now, op2, &err), 1);
    assert_string_equal(op1, op2);
    /* No key, other arguments: the name is taken. */
    err = (ink_err){0};
    assert_int_equal(create(f, web_args("reg/x:2"), now, NULL, &err), -1);
    assert_int_equal(err.errnum, INK_APPS_ECONFLICT);
    assert_non_null(strstr(err.msg, "already exists"));

    /* Still one app, unchanged. */
    json_t *list = list_apps(f);
    assert_int_equal(json_array_size(json_object_get(list, "apps")), 1);
    json_decref(list);
    json_t *app = get_app(f, "web");
    assert_string_equal(js(app, "image"), "reg/x:1");
    json_decref(app);
}

/* ----------------------------------------------------------- 3. invalid input */

static void test_invalid_input(void **state)
{
    fixture *f = *state;
    int64_t now = ink_now_ms();
    json_t *bad[] = {
        json_pack("{s:s, s:s, s:i}", "name", "Web!", "image", "reg/x:1", "port", 8080),
        json_pack("{s:s, s:s, s:i}", "name", "web", "image", "reg/x:1", "port", 0),
        json_pack("{s:s, s:s, s:i, s:i}", "name", "web", "image", "reg/x:1", "port", 8080,
                  "memory_mb", 1),
        json_pack("{s:s, s:s, s:i, s:{s:s}}", "name", "web", "image", "reg/x:1", "port", 8080,
                  "env", "1X", "a"),
        json_pack("{s:s, s:s, s:i, s:{s:i}}", "name", "web", "image", "reg/x:1", "port", 8080,
                  "env", "A", 1),
        json_pack("{s:s, s:s, s:i, s:{s:s}, s:{s:s}}", "name", "web", "image", "reg/x:1", "port",
                  8080, "env", "TOKEN", "a", "secret_env", "TOKEN", "b"),
        json_pack("{s:s, s:i}", "name", "web", "port", 8080),
        json_pack("{s:s, s:s, s:i}", "name", "web", "image", "reg/x 1", "port", 8080),
        json_pack("{s:s, s:s, s:i, s:i, s:i}", "name", "web", "image", "reg/x:1", "port", 8080,
                  "replicas", 1, "min_replicas", 2),
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(bad); i++) {
        ink_err err = {0};
        int rc = create(f, bad[i], now, NULL, &err);
        if (rc != -1 || err.errnum != INK_APPS_EINVAL)
            fprintf(stderr, "case %zu: rc %d errnum %d: %s\n", i, rc, err.errnum, err.msg);
        assert_int_equal(rc, -1);
        assert_int_equal(err.errnum, INK_APPS_EINVAL);
        assert_true(err.msg[0] != '\0');
    }
    json_t *list = list_apps(f);
    assert_int_equal(json_array_size(json_object_get(list, "apps")), 0);
    json_decref(list);
    /* Nothing reached the database either. */
    sqlite3 *db = ink_store_lock(f->s);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT (SELECT COUNT(*) FROM apps) +"
                                        " (SELECT COUNT(*) FROM operations)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t rows = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    ink_store_unlock(f->s);
    assert_int_equal(rows, 0);
}

/* ---------------------------------------------------------- 4. rolling update */

static void test_rolling_update(void **state)
{
    fixture *f = *state;
    char old[64];
    running_web(f, old);
    ink_err err = {0};
    char opid[40];
    json_t *op = NULL;
    json_t *args = json_pack("{s:s, s:s}", "name", "web", "image", "reg/x:2");
    assert_int_equal(ink_apps_update(f->s, &CALLER, args, ink_now_ms(), &op, &err), 0);
    json_decref(args);
    assert_string_equal(js(op, "kind"), "update_app");
    assert_string_equal(js(op, "status"), "running");
    snprintf(opid, sizeof opid, "%s", js(op, "operation_id"));
    json_decref(op);
    json_t *app = get_app(f, "web");
    assert_int_equal(json_integer_value(json_object_get(app, "generation")), 2);
    assert_string_equal(js(app, "status"), "deploying");
    json_decref(app);

    /* The new replica starts beside the old one. */
    assert_true(pass(f, ink_now_ms()) > 0);
    ink_workload_row *rows;
    size_t n = workloads(f, "node-a", &rows);
    assert_int_equal(n, 2);
    char new[64] = "";
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].spec->workload_id, old) == 0) {
            assert_string_equal(rows[i].spec->image, "reg/x:1");
        } else {
            snprintf(new, sizeof new, "%s", rows[i].spec->workload_id);
            assert_string_equal(rows[i].spec->image, "reg/x:2");
        }
    }
    ink_store_free_workloads(rows, n);
    assert_true(new[0] != '\0');

    /* Where to reach them: the current generation first. */
    ink_replica_ref *refs = NULL;
    size_t nrefs = 0;
    assert_int_equal(ink_apps_replicas(f->s, "demo", "web", &refs, &nrefs, &err), 0);
    assert_int_equal(nrefs, 2);
    assert_string_equal(refs[0].workload_id, new);
    assert_true(refs[0].current);
    assert_int_equal(refs[0].generation, 2);
    assert_string_equal(refs[0].agent_endpoint, "127.0.0.1:1");
    assert_string_equal(refs[1].workload_id, old);
    assert_false(refs[1].current);
    assert_string_equal(refs[1].state, "running");
    free(refs);

    /* Not serving yet: the old one stays. */
    pass(f, ink_now_ms());
    assert_int_equal(workloads(f, NULL, NULL), 2);
    report(f, "node-a", "ia", ink_now_ms(),
           (status[]){{old, RUNNING, NULL}, {new, PULLING, "pulling reg/x:2"}}, 2);
    pass(f, ink_now_ms());
    assert_int_equal(workloads(f, NULL, NULL), 2);
    assert_true(has_workload(f, old));
    assert_op_status(f, opid, "running");

    /* The new one serves: the old one goes, the update ends. */
    report(f, "node-a", "ia", ink_now_ms(), (status[]){{old, RUNNING, NULL}, {new, RUNNING, NULL}},
           2);
    assert_true(pass(f, ink_now_ms()) > 0);
    char only[64];
    only_workload(f, NULL, only);
    assert_string_equal(only, new);
    assert_op_status(f, opid, "succeeded");
    app = get_app(f, "web");
    assert_string_equal(js(app, "status"), "running");
    assert_string_equal(js(app, "image"), "reg/x:2");
    json_t *reps = json_object_get(app, "replica_status");
    assert_int_equal(json_array_size(reps), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(reps, 0), "generation")), 2);
    json_decref(app);
}

static void test_failed_update_keeps_old(void **state)
{
    fixture *f = *state;
    char old[64];
    running_web(f, old);
    ink_err err = {0};
    char opid[40];
    assert_int_equal(update(f, json_pack("{s:s, s:s}", "name", "web", "image", "reg/x:nope"),
                            ink_now_ms(), opid, &err),
                     0);
    assert_true(pass(f, ink_now_ms()) > 0);
    ink_workload_row *rows;
    size_t n = workloads(f, NULL, &rows);
    assert_int_equal(n, 2);
    char new[64] = "";
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].spec->workload_id, old) != 0)
            snprintf(new, sizeof new, "%s", rows[i].spec->workload_id);
    }
    ink_store_free_workloads(rows, n);
    assert_true(new[0] != '\0');

    report(f, "node-a", "ia", ink_now_ms(),
           (status[]){{old, RUNNING, NULL}, {new, FAILED, "pulling image: manifest unknown"}}, 2);
    assert_true(pass(f, ink_now_ms()) > 0);
    json_t *op = get_op(f, opid);
    assert_string_equal(js(op, "status"), "failed");
    assert_non_null(strstr(js(op, "message"), "pulling image: manifest unknown"));
    assert_non_null(strstr(js(op, "message"), "previous version keeps serving"));
    assert_true(json_is_null(json_object_get(op, "url")));
    json_decref(op);

    json_t *app = get_app(f, "web");
    assert_string_equal(js(app, "status"), "degraded");
    assert_non_null(strstr(js(app, "status_reason"), "manifest unknown"));
    /* the operation's message, said once */
    const char *keeps = strstr(js(app, "status_reason"), "previous version keeps serving");
    assert_non_null(keeps);
    assert_null(strstr(keeps + 1, "previous version keeps serving"));
    /* The old replica still serves the URL. */
    assert_true(json_is_string(json_object_get(app, "url")));
    json_decref(app);
    assert_true(has_workload(f, old));
    /* Later passes keep it too. */
    pass(f, ink_now_ms());
    assert_true(has_workload(f, old));
}

/* ------------------------------------------------------------------ 5. delete */

static void test_delete(void **state)
{
    fixture *f = *state;
    char id[64];
    running_web(f, id);
    ink_err err = {0};
    json_t *op = NULL;
    assert_int_equal(ink_apps_delete(f->s, &CALLER, "web", ink_now_ms(), &op, &err), 0);
    assert_string_equal(js(op, "kind"), "delete_app");
    assert_string_equal(js(op, "status"), "running");
    char opid[40];
    snprintf(opid, sizeof opid, "%s", js(op, "operation_id"));
    json_decref(op);
    /* Deleting it again while that runs: the same operation. */
    assert_int_equal(ink_apps_delete(f->s, &CALLER, "web", ink_now_ms(), &op, &err), 1);
    assert_string_equal(js(op, "operation_id"), opid);
    json_decref(op);

    assert_true(pass(f, ink_now_ms()) > 0);
    assert_int_equal(workloads(f, NULL, NULL), 0);
    assert_op_status(f, opid, "succeeded");
    json_t *app = NULL;
    err = (ink_err){0};
    assert_int_equal(ink_apps_get(f->s, "demo", "web", &app, &err), -1);
    assert_int_equal(err.errnum, INK_APPS_ENOTFOUND);
    assert_null(app);
    json_t *list = list_apps(f);
    assert_int_equal(json_array_size(json_object_get(list, "apps")), 0);
    json_decref(list);
    err = (ink_err){0};
    assert_int_equal(ink_apps_delete(f->s, &CALLER, "web", ink_now_ms(), &op, &err), -1);
    assert_int_equal(err.errnum, INK_APPS_ENOTFOUND);

    /* The name (and the port) can be used again. */
    char op2[40];
    assert_int_equal(create(f, web_args("reg/x:3"), ink_now_ms(), op2, &err), 0);
    assert_string_not_equal(op2, opid);
    assert_int_equal(app_port(f, "web"), INK_APP_PORT_MIN); /* free again */
    app = get_app(f, "web");
    assert_string_equal(js(app, "image"), "reg/x:3");
    assert_int_equal(json_integer_value(json_object_get(app, "generation")), 1);
    json_decref(app);
    pass(f, ink_now_ms());
    assert_int_equal(workloads(f, NULL, NULL), 1);
}

/* ------------------------------------------------------- 6. restart durability */

static void test_restart_durability(void **state)
{
    fixture *f = *state;
    int64_t now = ink_now_ms();
    add_node(f, "node-a", "ia", now);
    ink_err err = {0};
    json_t *args = web_args("reg/x:1");
    json_object_set_new(args, "idempotency_key", json_string("deploy-1"));
    char opid[40];
    assert_int_equal(create(f, json_deep_copy(args), now, opid, &err), 0);
    assert_true(pass(f, now) > 0);
    char id[64];
    only_workload(f, NULL, id);

    /* The coordinator dies and comes back on the same file. */
    ink_store_close(f->s);
    f->s = NULL;
    assert_int_equal(ink_store_open(f->db, &f->s, &err), 0);
    pass(f, now + 1000);
    pass(f, now + 2000);
    char again[64];
    only_workload(f, NULL, again);
    assert_string_equal(again, id);
    assert_op_status(f, opid, "running");

    /* The client retries its create: the same operation. */
    char op2[40];
    assert_int_equal(create(f, args, now + 3000, op2, &err), 1);
    assert_string_equal(op2, opid);
    pass(f, now + 3000);
    assert_int_equal(workloads(f, NULL, NULL), 1);
}

/* ---------------------------------------------------------------- 7. node lost */

static void test_node_lost(void **state)
{
    fixture *f = *state;
    int64_t t0 = ink_now_ms();
    add_node(f, "node-a", "ia", t0);
    add_node(f, "node-b", "ib", t0);
    ink_err err = {0};
    assert_int_equal(create(f, web_args("reg/x:1"), t0, NULL, &err), 0);
    assert_true(pass(f, t0) > 0);
    char id[64];
    only_workload(f, "node-a", id);
    assert_int_equal(workloads(f, "node-b", NULL), 0);
    report(f, "node-a", "ia", t0, &(status){id, RUNNING, NULL}, 1);

    /* Silent past node_timeout but not node_lost: unreachable, kept. */
    int64_t t1 = t0 + 30000;
    report(f, "node-b", "ib", t1, NULL, 0);
    pass(f, t1);
    assert_int_equal(workloads(f, "node-a", NULL), 1);
    assert_int_equal(workloads(f, "node-b", NULL), 0);

    /* Silent past node_lost: replaced on node-b, removed from node-a. */
    int64_t t2 = t0 + OPTS.node_lost_ms + 10000;
    report(f, "node-b", "ib", t2, NULL, 0);
    assert_true(pass(f, t2) > 0);
    assert_int_equal(workloads(f, "node-a", NULL), 0);
    char moved[64];
    only_workload(f, "node-b", moved);
    assert_string_not_equal(moved, id);
    /* Stable afterwards. */
    report(f, "node-b", "ib", t2 + 1000, &(status){moved, RUNNING, NULL}, 1);
    pass(f, t2 + 1000);
    assert_int_equal(workloads(f, NULL, NULL), 1);
}

/* --------------------------------------------------------------------- 8. scale */

static void test_scale(void **state)
{
    fixture *f = *state;
    int64_t now = ink_now_ms();
    add_node(f, "node-a", "ia", now);
    add_node(f, "node-b", "ib", now);
    ink_err err = {0};
    char opid[40];
    assert_int_equal(create(f,
                            json_pack("{s:s, s:s, s:i, s:i}", "name", "web", "image", "reg/x:1",
                                      "port", 8080, "replicas", 3),
                            now, opid, &err),
                     0);
    responder_start(f, "web");
    assert_true(pass(f, now) > 0);
    size_t na = workloads(f, "node-a", NULL), nb = workloads(f, "node-b", NULL);
    assert_int_equal(na + nb, 3);
    assert_true(na >= 1 && nb >= 1);

    /* Every replica serves. */
    const char *nodes[] = {"node-a", "node-b"}, *inst[] = {"ia", "ib"};
    char first[64] = "";
    for (size_t k = 0; k < 2; k++) {
        ink_workload_row *rows;
        size_t n = workloads(f, nodes[k], &rows);
        status st[4];
        for (size_t i = 0; i < n; i++)
            st[i] = (status){rows[i].spec->workload_id, RUNNING, NULL};
        report(f, nodes[k], inst[k], ink_now_ms(), st, n);
        ink_store_free_workloads(rows, n);
    }
    pass(f, ink_now_ms());
    assert_op_status(f, opid, "succeeded");
    /* The nodes view counts them. */
    json_t *nl = NULL;
    assert_int_equal(ink_apps_list_nodes(f->s, ink_now_ms(), OPTS.node_timeout_ms, &nl, &err), 0);
    json_t *ns = json_object_get(nl, "nodes");
    assert_int_equal(json_array_size(ns), 2);
    json_int_t total = 0;
    double cpu = 0;
    for (size_t i = 0; i < 2; i++) {
        json_t *nd = json_array_get(ns, i);
        assert_string_equal(js(nd, "node"), nodes[i]);
        assert_string_equal(js(nd, "status"), "ready");
        assert_string_equal(js(nd, "address"), "127.0.0.1");
        total += json_integer_value(json_object_get(nd, "replicas"));
        cpu += json_real_value(json_object_get(nd, "cpu_allocated"));
    }
    assert_int_equal(total, 3);
    assert_true(cpu > 0.74 && cpu < 0.76);
    json_decref(nl);
    json_t *app = get_app(f, "web");
    assert_int_equal(json_integer_value(json_object_get(app, "ready_replicas")), 3);
    assert_string_equal(js(app, "status"), "running");
    /* The slot-0 replica is listed first. */
    snprintf(first, sizeof first, "%s",
             js(json_array_get(json_object_get(app, "replica_status"), 0), "id"));
    json_decref(app);

    /* Down to one: the others go, no new generation, no new replica. */
    char op2[40];
    assert_int_equal(
        update(f, json_pack("{s:s, s:i}", "name", "web", "replicas", 1), ink_now_ms(), op2, &err),
        0);
    assert_string_not_equal(op2, opid);
    app = get_app(f, "web");
    assert_int_equal(json_integer_value(json_object_get(app, "generation")), 1);
    assert_int_equal(json_integer_value(json_object_get(app, "replicas")), 1);
    json_decref(app);
    assert_true(pass(f, ink_now_ms()) > 0);
    char left[64];
    only_workload(f, NULL, left);
    assert_string_equal(left, first);
    assert_op_status(f, op2, "succeeded");
    app = get_app(f, "web");
    assert_int_equal(json_integer_value(json_object_get(app, "generation")), 1);
    assert_int_equal(json_array_size(json_object_get(app, "replica_status")), 1);
    json_decref(app);
}

/* ------------------------------------------------------------------- 9. secrets */

#define SECRET "hunter2-SECRET"

static bool dumps_contains(const json_t *v, const char *needle)
{
    char *text = json_dumps(v, JSON_COMPACT);
    assert_non_null(text);
    bool found = strstr(text, needle) != NULL;
    free(text);
    return found;
}

static bool file_contains(const char *path, const char *needle)
{
    char *data = NULL;
    size_t len = 0;
    ink_err err = {0};
    if (ink_read_file(path, 256u << 20, &data, &len, &err) < 0)
        return false; /* e.g. no -wal file */
    bool found = memmem(data, len, needle, strlen(needle)) != NULL;
    free(data);
    return found;
}

/* The secret in any database file of the scratch directory (*.db, *-wal,
 * *-journal). Returns how many such files were read into *files. */
static bool db_files_contain(fixture *f, const char *needle, int *files)
{
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    bool found = false;
    *files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        bool dbfile = (l > 3 && strcmp(e->d_name + l - 3, ".db") == 0) ||
                      (l > 4 && strcmp(e->d_name + l - 4, "-wal") == 0) ||
                      (l > 8 && strcmp(e->d_name + l - 8, "-journal") == 0);
        if (!dbfile)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", f->dir, e->d_name);
        (*files)++;
        found |= file_contains(path, needle);
    }
    closedir(d);
    return found;
}

/* The first digits hex digits of plain SHA-256 of text. */
static void plain_sha256(const char *text, size_t digits, char *out)
{
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)text, strlen(text), md);
    ink_hex(md, digits / 2, out);
}

/* The text a request hash covers (apps.c canonical_request): the
 * arguments without idempotency_key, with _kind and _name. */
static char *canonical_request(const json_t *args, const char *kind, const char *name)
{
    json_t *copy = json_deep_copy(args);
    json_object_del(copy, "idempotency_key");
    json_object_set_new(copy, "_kind", json_string(kind));
    json_object_set_new(copy, "_name", json_string(name));
    char *text = json_dumps(copy, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(copy);
    assert_non_null(text);
    return text;
}

/* The first column of the first row of sql, on the store's connection. */
static void sql_text(fixture *f, const char *sql, char *out, size_t outlen)
{
    sqlite3 *db = ink_store_lock(f->s);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    ink_store_unlock(f->s);
    if (rc != SQLITE_ROW)
        fail_msg("%s: no row", sql);
}

static void sql_exec(fixture *f, const char *sql)
{
    sqlite3 *db = ink_store_lock(f->s);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    ink_store_unlock(f->s);
    assert_int_equal(rc, SQLITE_OK);
}

static void test_secrets(void **state)
{
    fixture *f = *state;
    int64_t now = ink_now_ms();
    add_node(f, "node-a", "ia", now);
    ink_err err = {0};
    json_t *op = NULL;
    json_t *args = json_pack("{s:s, s:s, s:i, s:{s:s}, s:{s:s, s:s}}", "name", "web", "image",
                             "reg/x:1", "port", 8080, "env", "MODE", "prod", "secret_env", "ZZ_KEY",
                             "other-value", "API_TOKEN", SECRET);
    assert_int_equal(ink_apps_create(f->s, &CALLER, args, now, &op, &err), 0);
    json_decref(args);
    assert_false(dumps_contains(op, SECRET));
    char opid[40];
    snprintf(opid, sizeof opid, "%s", js(op, "operation_id"));
    json_decref(op);
    assert_true(pass(f, now) > 0);

    /* Views show the name and a fingerprint only. */
    json_t *app = get_app(f, "web");
    assert_false(dumps_contains(app, SECRET));
    /* [{name, fingerprint}] sorted by name. */
    json_t *se = json_object_get(app, "secret_env");
    assert_int_equal(json_array_size(se), 2);
    assert_string_equal(js(json_array_get(se, 0), "name"), "API_TOKEN");
    assert_string_equal(js(json_array_get(se, 1), "name"), "ZZ_KEY");
    const char *fp = js(json_array_get(se, 0), "fingerprint");
    assert_true(strlen(fp) >= 8);
    assert_string_not_equal(fp, js(json_array_get(se, 1), "fingerprint"));
    /* The store's keyed fingerprint: the view reaches reader keys, and a
     * plain hash would let them test guesses of the secret. */
    char keyed[17], plain[65];
    assert_int_equal(ink_store_fingerprint(f->s, SECRET, strlen(SECRET), keyed), 0);
    assert_string_equal(fp, keyed);
    plain_sha256(SECRET, 16, plain);
    assert_false(dumps_contains(app, plain));
    assert_null(json_object_get(json_object_get(app, "env"), "API_TOKEN"));
    json_decref(app);
    json_t *list = list_apps(f);
    assert_false(dumps_contains(list, SECRET));
    json_decref(list);
    op = get_op(f, opid);
    assert_false(dumps_contains(op, SECRET));
    json_decref(op);

    /* The operation's request hash is the keyed MAC of the request, which
     * holds the secrets, not its plain SHA-256. */
    json_t *sent = json_pack("{s:s, s:s, s:i, s:{s:s}, s:{s:s, s:s}}", "name", "web", "image",
                             "reg/x:1", "port", 8080, "env", "MODE", "prod", "secret_env", "ZZ_KEY",
                             "other-value", "API_TOKEN", SECRET);
    char *text = canonical_request(sent, "create_app", "web");
    char stored[128], sql[128], mac[65];
    snprintf(sql, sizeof sql, "SELECT request_hash FROM operations WHERE id = '%s'", opid);
    sql_text(f, sql, stored, sizeof stored);
    plain_sha256(text, 64, plain);
    assert_string_not_equal(stored, plain);
    assert_int_equal(ink_store_mac_hex(f->s, text, strlen(text), mac), 0);
    assert_string_equal(stored, mac);
    free(text);
    json_decref(sent);

    /* The same secrets in another order are the same request. */
    char op2[40];
    assert_int_equal(create(f,
                            json_pack("{s:s, s:s, s:i, s:{s:s}, s:{s:s, s:s}}", "name", "web",
                                      "image", "reg/x:1", "port", 8080, "env", "MODE", "prod",
                                      "secret_env", "API_TOKEN", SECRET, "ZZ_KEY", "other-value"),
                            now, op2, &err),
                     1);
    assert_string_equal(op2, opid);
    assert_int_equal(update(f,
                            json_pack("{s:s, s:{s:s, s:s}}", "name", "web", "secret_env",
                                      "API_TOKEN", SECRET, "ZZ_KEY", "other-value"),
                            now, op2, &err),
                     1);
    assert_string_equal(op2, opid);

    /* Listings of assignments keep the value sealed. */
    ink_workload_row *rows;
    size_t n = workloads(f, "node-a", &rows);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].spec->n_secret_env, 2);
    for (size_t i = 0; i < 2; i++)
        assert_null(strstr(rows[0].spec->secret_env[i]->value, SECRET));
    ink_store_free_workloads(rows, n);

    /* The agent gets the value. */
    ink_watch_batch b;
    assert_int_equal(ink_store_watch_events(f->s, "node-a", 0, true, 100, &b, &err), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.events[0]->kind, INK__V1__WATCH_EVENT__KIND__SNAPSHOT);
    assert_int_equal(b.events[0]->n_assignments, 1);
    Ink__V1__Assignment *a = b.events[0]->assignments[0];
    assert_int_equal(a->n_secret_env, 2);
    bool delivered = false;
    for (size_t i = 0; i < a->n_secret_env; i++) {
        if (strcmp(a->secret_env[i]->name, "API_TOKEN") == 0) {
            assert_string_equal(a->secret_env[i]->value, SECRET);
            delivered = true;
        } else {
            assert_string_equal(a->secret_env[i]->name, "ZZ_KEY");
            assert_string_equal(a->secret_env[i]->value, "other-value");
        }
    }
    assert_true(delivered);
    assert_int_equal(a->n_env, 1);
    ink_store_free_events(&b);

    /* Not in the database files, before or after a checkpoint. */
    int files = 0;
    assert_false(db_files_contain(f, SECRET, &files));
    assert_true(files >= 1);
    ink_store_close(f->s);
    f->s = NULL;
    assert_false(db_files_contain(f, SECRET, &files));
    assert_true(files >= 1);
    plain_sha256(SECRET, 16, plain);
    assert_false(db_files_contain(f, plain, &files));
    assert_int_equal(ink_store_open(f->db, &f->s, &err), 0);
}

/* A database written before digests of secrets were keyed: schema 3,
 * plain SHA-256 fingerprints in apps.secret_names and plain request
 * hashes in operations. Its first open rewrites both; a retry of an
 * operation made before still finds it. */
static void test_upgrade_keys_old_digests(void **state)
{
    fixture *f = *state;
    int64_t now = ink_now_ms();
    add_node(f, "node-a", "ia", now);
    ink_err err = {0};
    json_t *args =
        json_pack("{s:s, s:s, s:i, s:{s:s}, s:s}", "name", "web", "image", "reg/x:1", "port", 8080,
                  "secret_env", "API_TOKEN", SECRET, "idempotency_key", "deploy-1");
    char opid[40], op2[40];
    assert_int_equal(create(f, json_deep_copy(args), now, opid, &err), 0);

    /* Make it what the earlier coordinator wrote. */
    char plain_fp[17], plain_req[65], sql[512];
    plain_sha256(SECRET, 16, plain_fp);
    char *text = canonical_request(args, "create_app", "web");
    plain_sha256(text, 64, plain_req);
    free(text);
    snprintf(sql, sizeof sql,
             "UPDATE apps SET secret_names = '[{\"fingerprint\":\"%s\",\"name\":\"API_TOKEN\"}]';"
             "UPDATE operations SET request_hash = '%s';"
             "DELETE FROM meta WHERE key = 'secret_digests';"
             "PRAGMA user_version = 3;",
             plain_fp, plain_req);
    sql_exec(f, sql);
    json_t *app = get_app(f, "web");
    assert_string_equal(js(json_array_get(json_object_get(app, "secret_env"), 0), "fingerprint"),
                        plain_fp);
    json_decref(app);
    sql_exec(f, "DROP TABLE egress_blocked"); /* version 3 had none */

    ink_store_close(f->s);
    f->s = NULL;
    assert_int_equal(ink_store_open(f->db, &f->s, &err), 0);
    assert_int_equal(ink_store_schema_version(f->s), 5);

    /* The view shows the keyed fingerprint; neither plain digest is left
     * in the database files. */
    char keyed[17];
    assert_int_equal(ink_store_fingerprint(f->s, SECRET, strlen(SECRET), keyed), 0);
    app = get_app(f, "web");
    assert_string_equal(js(json_array_get(json_object_get(app, "secret_env"), 0), "fingerprint"),
                        keyed);
    json_decref(app);
    char stored[128];
    snprintf(sql, sizeof sql, "SELECT request_hash FROM operations WHERE id = '%s'", opid);
    sql_text(f, sql, stored, sizeof stored);
    assert_true(strncmp(stored, "pre-hmac:", 9) == 0);
    assert_null(strstr(stored, plain_req));
    int files = 0;
    assert_false(db_files_contain(f, plain_fp, &files));
    assert_false(db_files_contain(f, plain_req, &files));
    assert_true(files >= 1);

    /* The client retries its create from before the upgrade: the same
     * operation, not a conflict. */
    assert_int_equal(create(f, json_deep_copy(args), now + 1000, op2, &err), 1);
    assert_string_equal(op2, opid);
    /* The old hash still tells another request apart. */
    json_t *other = json_deep_copy(args);
    json_object_set_new(json_object_get(other, "secret_env"), "API_TOKEN",
                        json_string("another-value"));
    err = (ink_err){0};
    assert_int_equal(create(f, other, now + 1000, NULL, &err), -1);
    assert_int_equal(err.errnum, INK_APPS_ECONFLICT);
    assert_non_null(strstr(err.msg, opid));
    /* The same secret again is no change: the rewritten fingerprint
     * compares with a new one. */
    assert_int_equal(
        update(f, json_pack("{s:s, s:{s:s}}", "name", "web", "secret_env", "API_TOKEN", SECRET),
               now + 2000, op2, &err),
        1);
    assert_string_equal(op2, opid);

    /* Done once: opening again leaves the digests as they are. */
    ink_store_close(f->s);
    f->s = NULL;
    assert_int_equal(ink_store_open(f->db, &f->s, &err), 0);
    char again[128];
    sql_text(f, sql, again, sizeof again);
    assert_string_equal(again, stored);
    assert_int_equal(create(f, args, now + 3000, op2, &err), 1);
    assert_string_equal(op2, opid);
}

/* ----------------------------------------------------------------- 10. resources */

static void test_resources(void **state)
{
    fixture *f = *state;
    int64_t now = ink_now_ms();
    ink_err err = {0};
    json_t *res = NULL;
    json_t *args = json_pack("{s:s, s:s, s:i}", "type", "volume", "name", "data", "size_mb", 10);
    assert_int_equal(ink_resources_create(f->s, &CALLER, args, now, &res, &err), 0);
    assert_string_equal(js(res, "resource"), "data");
    assert_string_equal(js(res, "project"), "demo");
    assert_string_equal(js(res, "type"), "volume");
    assert_int_equal(json_integer_value(json_object_get(res, "size_mb")), 10);
    assert_string_equal(js(res, "status"), "available");
    json_decref(res);
    /* The same again is a no-op; another size conflicts. */
    assert_int_equal(ink_resources_create(f->s, &CALLER, args, now, &res, &err), 1);
    json_decref(res);
    json_decref(args);
    args = json_pack("{s:s, s:s, s:i}", "type", "volume", "name", "data", "size_mb", 20);
    err = (ink_err){0};
    assert_int_equal(ink_resources_create(f->s, &CALLER, args, now, &res, &err), -1);
    assert_int_equal(err.errnum, INK_APPS_ECONFLICT);
    json_decref(args);

    args = json_pack("{s:s, s:s}", "type", "postgres", "name", "db");
    err = (ink_err){0};
    assert_int_equal(ink_resources_create(f->s, &CALLER, args, now, &res, &err), -1);
    assert_int_equal(err.errnum, INK_APPS_EINVAL);
    assert_non_null(strstr(err.msg, "volume"));
    assert_null(res);
    json_decref(args);

    json_t *list = NULL;
    assert_int_equal(ink_resources_list(f->s, "demo", &list, &err), 0);
    json_t *items = json_object_get(list, "resources");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(js(json_array_get(items, 0), "resource"), "data");
    json_decref(list);
    assert_int_equal(ink_resources_list(f->s, "other", &list, &err), 0);
    assert_int_equal(json_array_size(json_object_get(list, "resources")), 0);
    json_decref(list);

    assert_int_equal(ink_resources_delete(f->s, &CALLER, "data", now + 1, &res, &err), 0);
    assert_string_equal(js(res, "status"), "deleted");
    json_decref(res);
    assert_int_equal(ink_resources_list(f->s, "demo", &list, &err), 0);
    assert_int_equal(json_array_size(json_object_get(list, "resources")), 0);
    json_decref(list);
    err = (ink_err){0};
    assert_int_equal(ink_resources_delete(f->s, &CALLER, "data", now + 2, &res, &err), -1);
    assert_int_equal(err.errnum, INK_APPS_ENOTFOUND);
}

/* ------------------------------------------------------------------- extras */

/* Nothing fits: the operation waits place_grace_ms, then fails saying why. */
static void test_no_node_fits(void **state)
{
    fixture *f = *state;
    int64_t now = ink_now_ms();
    add_node(f, "node-a", "ia", now);
    ink_err err = {0};
    char opid[40];
    assert_int_equal(create(f,
                            json_pack("{s:s, s:s, s:i, s:f}", "name", "big", "image", "reg/x:1",
                                      "port", 8080, "cpu", 32.0),
                            now, opid, &err),
                     0);
    pass(f, now);
    assert_int_equal(workloads(f, NULL, NULL), 0);
    json_t *op = get_op(f, opid);
    assert_string_equal(js(op, "status"), "running");
    assert_non_null(strstr(js(op, "message"), "waiting for a node"));
    json_decref(op);
    json_t *app = get_app(f, "big");
    assert_string_equal(js(app, "status"), "deploying");
    json_decref(app);
    assert_true(pass(f, now + OPTS.place_grace_ms + 1000) > 0);
    op = get_op(f, opid);
    assert_string_equal(js(op, "status"), "failed");
    assert_non_null(strstr(js(op, "message"), "cannot place a replica"));
    json_decref(op);
    assert_int_equal(workloads(f, NULL, NULL), 0);
}

/* An update that changes nothing returns the latest operation; restart
 * replaces the replica with a new generation; an unknown app is named. */
static void test_update_noop_and_restart(void **state)
{
    fixture *f = *state;
    char old[64];
    running_web(f, old);
    json_t *app = get_app(f, "web");
    char last[40];
    snprintf(last, sizeof last, "%s", js(app, "operation_id"));
    json_decref(app);
    ink_err err = {0};
    char opid[40];
    assert_int_equal(update(f, json_pack("{s:s, s:s}", "name", "web", "image", "reg/x:1"),
                            ink_now_ms(), opid, &err),
                     1);
    assert_string_equal(opid, last);
    err = (ink_err){0};
    assert_int_equal(update(f, json_pack("{s:s, s:s}", "name", "nope", "image", "reg/x:1"),
                            ink_now_ms(), NULL, &err),
                     -1);
    assert_int_equal(err.errnum, INK_APPS_ENOTFOUND);
    assert_non_null(strstr(err.msg, "nope"));
    err = (ink_err){0};
    assert_int_equal(
        update(f, json_pack("{s:s, s:i}", "name", "web", "port", 70000), ink_now_ms(), NULL, &err),
        -1);
    assert_int_equal(err.errnum, INK_APPS_EINVAL);

    json_t *op = NULL;
    assert_int_equal(ink_apps_restart(f->s, &CALLER, "web", ink_now_ms(), &op, &err), 0);
    assert_string_equal(js(op, "kind"), "restart_app");
    snprintf(opid, sizeof opid, "%s", js(op, "operation_id"));
    json_decref(op);
    app = get_app(f, "web");
    assert_int_equal(json_integer_value(json_object_get(app, "generation")), 2);
    json_decref(app);
    pass(f, ink_now_ms());
    assert_int_equal(workloads(f, NULL, NULL), 2);
    ink_workload_row *rows;
    size_t n = workloads(f, NULL, &rows);
    char new[64] = "";
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].spec->workload_id, old) != 0)
            snprintf(new, sizeof new, "%s", rows[i].spec->workload_id);
    }
    ink_store_free_workloads(rows, n);
    report(f, "node-a", "ia", ink_now_ms(), (status[]){{old, RUNNING, NULL}, {new, RUNNING, NULL}},
           2);
    pass(f, ink_now_ms());
    char only[64];
    only_workload(f, NULL, only);
    assert_string_equal(only, new);
    assert_op_status(f, opid, "succeeded");
}

static void test_list_pages(void **state)
{
    fixture *f = *state;
    int64_t now = ink_now_ms();
    const char *names[] = {"c-app", "a-app", "b-app"};
    for (size_t i = 0; i < INK_ARRAY_LEN(names); i++) {
        ink_err err = {0};
        assert_int_equal(
            create(f,
                   json_pack("{s:s, s:s, s:i}", "name", names[i], "image", "reg/x:1", "port", 8080),
                   now, NULL, &err),
            0);
    }
    /* Each app has its own published port. */
    assert_int_equal(app_port(f, "c-app"), INK_APP_PORT_MIN);
    assert_int_equal(app_port(f, "a-app"), INK_APP_PORT_MIN + 1);
    assert_int_equal(app_port(f, "b-app"), INK_APP_PORT_MIN + 2);
    json_t *list = NULL;
    ink_err err = {0};
    assert_int_equal(ink_apps_list(f->s, "demo", NULL, 2, &list, &err), 0);
    json_t *apps = json_object_get(list, "apps");
    assert_int_equal(json_array_size(apps), 2);
    assert_string_equal(js(json_array_get(apps, 0), "app"), "a-app");
    assert_string_equal(js(json_array_get(apps, 1), "app"), "b-app");
    assert_string_equal(js(list, "next_cursor"), "b-app");
    json_decref(list);
    assert_int_equal(ink_apps_list(f->s, "demo", "b-app", 2, &list, &err), 0);
    apps = json_object_get(list, "apps");
    assert_int_equal(json_array_size(apps), 1);
    assert_string_equal(js(json_array_get(apps, 0), "app"), "c-app");
    assert_true(json_is_null(json_object_get(list, "next_cursor")));
    json_decref(list);
    /* Another project sees none of them. */
    assert_int_equal(ink_apps_list(f->s, "other", NULL, 0, &list, &err), 0);
    assert_int_equal(json_array_size(json_object_get(list, "apps")), 0);
    json_decref(list);
}

/* ------------------------------------------------------------------ 11. egress */

/* The assignment of workload id, from the store (freed by the caller with
 * ink_store_free_workloads(*rows, *n)). */
static const Ink__V1__Assignment *assignment_of(fixture *f, const char *id, ink_workload_row **rows,
                                                size_t *n)
{
    *n = workloads(f, NULL, rows);
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*rows)[i].spec->workload_id, id) == 0)
            return (*rows)[i].spec;
    }
    fail_msg("no assignment %s", id);
    return NULL;
}

/* The one workload of the app's current generation on node-a, i.e. the one
 * that is not old. */
static void new_workload(fixture *f, const char *old, char id[64])
{
    ink_workload_row *rows;
    size_t n = workloads(f, NULL, &rows);
    id[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].spec->workload_id, old) != 0)
            snprintf(id, 64, "%s", rows[i].spec->workload_id);
    }
    ink_store_free_workloads(rows, n);
    assert_true(id[0] != '\0');
}

static void expect_invalid(fixture *f, bool creating, json_t *args, const char *want)
{
    ink_err err = {0};
    int rc = creating ? create(f, args, ink_now_ms(), NULL, &err)
                      : update(f, args, ink_now_ms(), NULL, &err);
    if (rc != -1 || err.errnum != INK_APPS_EINVAL || !strstr(err.msg, want))
        fail_msg("want an error with '%s': rc %d errnum %d: %s", want, rc, err.errnum, err.msg);
}

static json_t *web_egress(const char *policy, json_t *allow)
{
    json_t *args = web_args("reg/x:1");
    if (policy)
        json_object_set_new(args, "egress", json_string(policy));
    if (allow)
        json_object_set_new(args, "egress_allow", allow);
    return args;
}

/* egress and egress_allow are checked with the agent's own parser, kept in
 * canonical form, shown, and carried by every assignment. */
static void test_egress_settings(void **state)
{
    fixture *f = *state;
    int64_t now = ink_now_ms();
    add_node(f, "node-a", "ia", now);

    expect_invalid(f, true, web_egress("Bad_Name", NULL), "egress 'Bad_Name' is not a policy name");
    expect_invalid(f, true, web_egress("-x", NULL), "not a policy name");
    expect_invalid(f, true, web_egress("allowlist", NULL), "egress 'allowlist' needs egress_allow");
    expect_invalid(f, true, web_egress("allowlist", json_array()), "needs egress_allow");
    expect_invalid(f, true, web_egress(NULL, json_pack("[s]", "api.example.com:443")),
                   "egress_allow only applies with egress 'allowlist'");
    expect_invalid(f, true, web_egress("deny-all", json_pack("[s]", "api.example.com:443")),
                   "this app's egress is 'deny-all'");
    /* The parser's own message, naming the entry. */
    expect_invalid(f, true,
                   web_egress("allowlist", json_pack("[s, s]", "ok.example.com", "10.0.0.1/8")),
                   "egress_allow entry '10.0.0.1/8': host bits are set; did you mean 10.0.0.0/8?");
    expect_invalid(f, true, web_egress("allowlist", json_pack("[s]", "2001:db8::1")), "IPv6");
    expect_invalid(f, true, web_egress("allowlist", json_pack("[s]", "api.example.com:0")),
                   "is not a port");
    expect_invalid(f, true, web_egress("allowlist", json_pack("[i]", 443)),
                   "egress_allow[0] must be a string");
    expect_invalid(f, true, web_egress("allowlist", json_string("api.example.com")),
                   "egress_allow must be an array");
    json_t *many = json_array();
    for (int i = 0; i <= INK_EGRESS_ALLOW_MAX; i++)
        json_array_append_new(many, json_sprintf("10.0.%d.0/24", i));
    expect_invalid(f, true, web_egress("allowlist", many), "at most 64");
    json_t *list = list_apps(f);
    assert_int_equal(json_array_size(json_object_get(list, "apps")), 0);
    json_decref(list);

    /* Canonical, sorted, without duplicates. */
    ink_err err = {0};
    char opid[40];
    assert_int_equal(
        create(f,
               web_egress("allowlist", json_pack("[s, s, s]", "API.Example.com:443",
                                                 "198.51.100.0/24", "api.example.com:443")),
               now, opid, &err),
        0);
    json_t *app = get_app(f, "web");
    assert_string_equal(js(app, "egress"), "allowlist");
    json_t *allow = json_object_get(app, "egress_allow");
    assert_int_equal(json_array_size(allow), 2);
    assert_string_equal(json_string_value(json_array_get(allow, 0)), "198.51.100.0/24");
    assert_string_equal(json_string_value(json_array_get(allow, 1)), "api.example.com:443");
    json_t *events = json_object_get(app, "events");
    assert_non_null(strstr(js(json_array_get(events, 0), "message"),
                           "egress allowlist [198.51.100.0/24 api.example.com:443]"));
    json_decref(app);
    list = list_apps(f);
    json_t *item = json_array_get(json_object_get(list, "apps"), 0);
    assert_string_equal(js(item, "egress"), "allowlist");
    assert_int_equal(json_array_size(json_object_get(item, "egress_allow")), 2);
    json_decref(list);
    /* The same destinations written otherwise: the same app. */
    char again[40];
    assert_int_equal(create(f,
                            web_egress("allowlist", json_pack("[s, s]", "api.example.com:443",
                                                              "198.51.100.0/24")),
                            now, again, &err),
                     1);
    assert_string_equal(again, opid);

    assert_true(pass(f, now) > 0);
    ink_workload_row *rows;
    size_t n = workloads(f, NULL, &rows);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].spec->egress, "allowlist");
    assert_int_equal(rows[0].spec->n_egress_allow, 2);
    assert_string_equal(rows[0].spec->egress_allow[0], "198.51.100.0/24");
    assert_string_equal(rows[0].spec->egress_allow[1], "api.example.com:443");
    ink_store_free_workloads(rows, n);

    /* Without egress settings: the default policy, spelled out. */
    assert_int_equal(
        create(f, json_pack("{s:s, s:s, s:i}", "name", "plain", "image", "reg/x:1", "port", 8080),
               now, opid, &err),
        0);
    app = get_app(f, "plain");
    assert_string_equal(js(app, "egress"), "default");
    assert_int_equal(json_array_size(json_object_get(app, "egress_allow")), 0);
    json_decref(app);
    /* Naming the defaults is the same spec: a retry, not a conflict. */
    assert_int_equal(create(f,
                            json_pack("{s:s, s:s, s:i, s:s, s:[]}", "name", "plain", "image",
                                      "reg/x:1", "port", 8080, "egress", "default", "egress_allow"),
                            now, again, &err),
                     1);
    assert_string_equal(again, opid);
    /* A policy of the site's own may use entries. */
    assert_int_equal(
        create(f,
               json_pack("{s:s, s:s, s:i, s:s, s:[s]}", "name", "corp", "image", "reg/x:1", "port",
                         8080, "egress", "corp-strict", "egress_allow", "10.20.0.0/16:5432"),
               now, NULL, &err),
        0);
    pass(f, now);
    n = workloads(f, NULL, &rows);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        const Ink__V1__Assignment *a = rows[i].spec;
        if (strcmp(a->app, "plain") == 0) {
            assert_string_equal(a->egress, "default");
            assert_int_equal(a->n_egress_allow, 0);
        } else if (strcmp(a->app, "corp") == 0) {
            assert_string_equal(a->egress, "corp-strict");
            assert_int_equal(a->n_egress_allow, 1);
            assert_string_equal(a->egress_allow[0], "10.20.0.0/16:5432");
        }
    }
    ink_store_free_workloads(rows, n);
}

/* A change of egress settings alone is a new generation, rolled out like
 * any other; entries follow the policy. */
static void test_egress_update_rolls(void **state)
{
    fixture *f = *state;
    char old[64];
    running_web(f, old);
    ink_err err = {0};
    char opid[40];
    assert_int_equal(update(f, json_pack("{s:s, s:s}", "name", "web", "egress", "deny-all"),
                            ink_now_ms(), opid, &err),
                     0);
    json_t *op = get_op(f, opid);
    assert_string_equal(js(op, "message"), "starting new replicas");
    json_decref(op);
    json_t *app = get_app(f, "web");
    assert_int_equal(json_integer_value(json_object_get(app, "generation")), 2);
    assert_string_equal(js(app, "egress"), "deny-all");
    json_t *events = json_object_get(app, "events");
    assert_non_null(strstr(js(json_array_get(events, json_array_size(events) - 1), "message"),
                           "egress default -> deny-all"));
    json_decref(app);
    /* The new replica carries the new policy; the old one keeps its own
     * until the new one serves. */
    assert_true(pass(f, ink_now_ms()) > 0);
    char new[64];
    new_workload(f, old, new);
    ink_workload_row *rows;
    size_t n;
    assert_string_equal(assignment_of(f, new, &rows, &n)->egress, "deny-all");
    ink_store_free_workloads(rows, n);
    assert_string_equal(assignment_of(f, old, &rows, &n)->egress, "default");
    ink_store_free_workloads(rows, n);
    report(f, "node-a", "ia", ink_now_ms(), (status[]){{old, RUNNING, NULL}, {new, RUNNING, NULL}},
           2);
    pass(f, ink_now_ms());
    assert_op_status(f, opid, "succeeded");
    assert_false(has_workload(f, old));

    /* Entries alone do not turn a policy that ignores them into one that
     * uses them. */
    expect_invalid(f, false, json_pack("{s:s, s:[s]}", "name", "web", "egress_allow", "1.2.3.4"),
                   "pass egress 'allowlist' as well");
    assert_int_equal(update(f,
                            json_pack("{s:s, s:s, s:[s, s]}", "name", "web", "egress", "allowlist",
                                      "egress_allow", "1.2.3.4:443", "api.example.com"),
                            ink_now_ms(), opid, &err),
                     0);
    app = get_app(f, "web");
    assert_int_equal(json_integer_value(json_object_get(app, "generation")), 3);
    events = json_object_get(app, "events");
    assert_non_null(strstr(js(json_array_get(events, json_array_size(events) - 1), "message"),
                           "egress deny-all -> allowlist, egress_allow now [1.2.3.4:443 "
                           "api.example.com]"));
    json_decref(app);
    /* The same entries in another order: nothing to do. */
    char same[40];
    assert_int_equal(update(f,
                            json_pack("{s:s, s:[s, s]}", "name", "web", "egress_allow",
                                      "api.example.com", "1.2.3.4:443"),
                            ink_now_ms(), same, &err),
                     1);
    assert_string_equal(same, opid);
    /* Emptying the list of an allowlist app is refused... */
    expect_invalid(f, false, json_pack("{s:s, s:[]}", "name", "web", "egress_allow"),
                   "needs egress_allow");
    /* ...while going back to the default drops the entries. */
    assert_int_equal(update(f, json_pack("{s:s, s:s}", "name", "web", "egress", "default"),
                            ink_now_ms(), opid, &err),
                     0);
    app = get_app(f, "web");
    assert_int_equal(json_integer_value(json_object_get(app, "generation")), 4);
    assert_string_equal(js(app, "egress"), "default");
    assert_int_equal(json_array_size(json_object_get(app, "egress_allow")), 0);
    json_decref(app);
}

/* What a report says was blocked, for one workload. */
typedef struct blocked {
    const char *category;
    uint64_t packets;
} blocked;

/* node-a's report: the workload running with these counts (none: n 0),
 * or no workload at all (id NULL), then the egress counters noted as the
 * NodeService does. */
static void report_blocked(fixture *f, int64_t now_ms, const char *id, const blocked *b, size_t n)
{
    Ink__V1__WorkloadStatus ws = INK__V1__WORKLOAD_STATUS__INIT;
    Ink__V1__WorkloadStatus *wp = &ws;
    Ink__V1__EgressBlocked eb[4], *ebp[4];
    assert_true(n <= 4);
    ws.workload_id = (char *)id;
    ws.generation = 1;
    ws.state = RUNNING;
    ws.since_unix_ms = now_ms;
    for (size_t i = 0; i < n; i++) {
        ink__v1__egress_blocked__init(&eb[i]);
        eb[i].category = (char *)b[i].category;
        eb[i].packets = b[i].packets;
        ebp[i] = &eb[i];
    }
    ws.egress_blocked = ebp;
    ws.n_egress_blocked = n;
    Ink__V1__ReportStatusRequest r = INK__V1__REPORT_STATUS_REQUEST__INIT;
    r.node_id = "node-a";
    r.instance_id = "ia";
    r.workloads = id ? &wp : NULL;
    r.n_workloads = id ? 1 : 0;
    ink_err err = {0};
    assert_int_equal(ink_store_report_status(f->s, &r, now_ms, &err), 0);
    if (ink_apps_note_egress(f->s, &r, now_ms, &err) < 0)
        fail_msg("note egress: %s", err.msg);
}

/* The app's events that mention blocked egress, newest last. */
static size_t blocked_events(fixture *f, const char **msgs, size_t max, json_t **app)
{
    *app = get_app(f, "web");
    size_t i, n = 0;
    json_t *e;
    json_array_foreach(json_object_get(*app, "events"), i, e)
    {
        if (strstr(js(e, "message"), "egress blocked") && n < max)
            msgs[n++] = js(e, "message");
    }
    return n;
}

static int64_t blocked_count(json_t *app, const char *category)
{
    json_t *r0 = json_array_get(json_object_get(app, "replica_status"), 0);
    return json_integer_value(json_object_get(json_object_get(r0, "egress_blocked"), category));
}

/* Blocked packets become per replica totals and app events, at most one a
 * minute per replica and category; a counter that went down restarted. */
static void test_egress_blocked_events(void **state)
{
    fixture *f = *state;
    char id[64];
    running_web(f, id);
    int64_t t0 = ink_now_ms();
    const char *msgs[16];
    json_t *app;
    char want[160];

    report_blocked(f, t0, id, (blocked[]){{"metadata", 3}}, 1);
    assert_int_equal(blocked_events(f, msgs, 16, &app), 1);
    snprintf(want, sizeof want, "replica %s on node node-a: egress blocked 3 packets (metadata)",
             id);
    assert_string_equal(msgs[0], want);
    assert_int_equal(blocked_count(app, "metadata"), 3);
    json_decref(app);

    /* More within the minute: counted, told later. */
    report_blocked(f, t0 + 10000, id, (blocked[]){{"metadata", 10}}, 1);
    report_blocked(f, t0 + 20000, id, (blocked[]){{"metadata", 10}, {"smtp", 1}}, 2);
    assert_int_equal(blocked_events(f, msgs, 16, &app), 2);
    snprintf(want, sizeof want, "replica %s on node node-a: egress blocked 1 packet (smtp)", id);
    assert_string_equal(msgs[1], want); /* another category has its own minute */
    assert_int_equal(blocked_count(app, "metadata"), 10);
    assert_int_equal(blocked_count(app, "smtp"), 1);
    json_decref(app);
    report_blocked(f, t0 + 61000, id, (blocked[]){{"metadata", 12}, {"smtp", 1}}, 2);
    assert_int_equal(blocked_events(f, msgs, 16, &app), 3);
    snprintf(want, sizeof want, "replica %s on node node-a: egress blocked 9 packets (metadata)",
             id);
    assert_string_equal(msgs[2], want);
    json_decref(app);

    /* The workload restarted: its counter starts again from 0. */
    report_blocked(f, t0 + 70000, id, (blocked[]){{"metadata", 2}, {"smtp", 1}}, 2);
    assert_int_equal(blocked_events(f, msgs, 16, &app), 3);
    assert_int_equal(blocked_count(app, "metadata"), 14);
    json_decref(app);
    /* Told once the minute is over, without a new increase. */
    report_blocked(f, t0 + 125000, id, (blocked[]){{"metadata", 2}, {"smtp", 1}}, 2);
    assert_int_equal(blocked_events(f, msgs, 16, &app), 4);
    snprintf(want, sizeof want, "replica %s on node node-a: egress blocked 2 packets (metadata)",
             id);
    assert_string_equal(msgs[3], want);
    json_decref(app);
    /* A report that no longer lists a category: that counter is 0 now. */
    report_blocked(f, t0 + 130000, id, NULL, 0);
    report_blocked(f, t0 + 140000, id, (blocked[]){{"metadata", 1}}, 1);
    assert_int_equal(blocked_events(f, msgs, 16, &app), 4);
    assert_int_equal(blocked_count(app, "metadata"), 15);
    assert_int_equal(blocked_count(app, "smtp"), 1);
    json_decref(app);
    /* Names that are no policy category are ignored. */
    report_blocked(f, t0 + 145000, id, (blocked[]){{"metadata", 1}, {"Bad Name\n", 9}}, 2);
    /* The workload is gone from the node: what was not told yet is told,
     * and its counters are forgotten. */
    report_blocked(f, t0 + 150000, NULL, NULL, 0);
    assert_int_equal(blocked_events(f, msgs, 16, &app), 5);
    snprintf(want, sizeof want, "replica %s on node node-a: egress blocked 1 packet (metadata)",
             id);
    assert_string_equal(msgs[4], want);
    json_decref(app);
    char count[16];
    sql_text(f, "SELECT COUNT(*) FROM egress_blocked", count, sizeof count);
    assert_string_equal(count, "0");

    /* Hammering a blocked address for ten minutes: ten events, not one a
     * report. */
    int64_t t1 = t0 + 200000;
    for (int i = 0; i < 120; i++)
        report_blocked(f, t1 + i * 5000, id, (blocked[]){{"metadata", (uint64_t)(i + 1) * 1000}},
                       1);
    assert_int_equal(blocked_events(f, msgs, 16, &app), 15);
    json_decref(app);
    /* A workload that is no replica (put by the operator CLI) is counted
     * without events. */
    report_blocked(f, t1 + 700000, "cli-put", (blocked[]){{"metadata", 5}}, 1);
    sql_text(f, "SELECT total FROM egress_blocked WHERE workload_id = 'cli-put'", count,
             sizeof count);
    assert_string_equal(count, "5");
}

/* ------------------------------------------------------ scale to zero */

static int64_t ji(const json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

/* idle_timeout_s: checked, defaulted for min_replicas 0, shown, carried by
 * the assignment, and a change of it rolls like any spec change. */
static void test_idle_timeout(void **state)
{
    fixture *f = *state;
    int64_t now = ink_now_ms();
    add_node(f, "node-a", "ia", now);
    json_t *args = web_args("reg/x:1");
    json_object_set_new(args, "idle_timeout_s", json_integer(9));
    expect_invalid(f, true, args, "idle_timeout_s must be 10 to 86400 seconds");
    args = web_args("reg/x:1");
    json_object_set_new(args, "idle_timeout_s", json_integer(86401));
    expect_invalid(f, true, args, "idle_timeout_s must be 10 to 86400");
    args = web_args("reg/x:1");
    json_object_set_new(args, "idle_timeout_s", json_string("300"));
    expect_invalid(f, true, args, "idle_timeout_s must be");

    /* min_replicas 0 without one: the default, written in the spec. */
    ink_err err = {0};
    args = web_args("reg/x:1");
    json_object_set_new(args, "min_replicas", json_integer(0));
    assert_int_equal(create(f, args, now, NULL, &err), 0);
    json_t *app = get_app(f, "web");
    assert_int_equal(ji(app, "min_replicas"), 0);
    assert_int_equal(ji(app, "idle_timeout_s"), INK_APP_DEFAULT_IDLE_TIMEOUT_S);
    json_decref(app);
    assert_true(pass(f, now) > 0);
    char id[64];
    only_workload(f, "node-a", id);
    ink_workload_row *rows;
    size_t n;
    const Ink__V1__Assignment *a = assignment_of(f, id, &rows, &n);
    assert_int_equal(a->min_replicas, 0);
    assert_int_equal(a->idle_timeout_s, INK_APP_DEFAULT_IDLE_TIMEOUT_S);
    ink_store_free_workloads(rows, n);
    /* The same create again is the same app (the default is no change). */
    args = web_args("reg/x:1");
    json_object_set_new(args, "min_replicas", json_integer(0));
    assert_int_equal(create(f, args, now, NULL, &err), 1);

    /* A new idle timeout is a new generation, rolled out; the new
     * replica's assignment carries it. */
    char opid[40];
    assert_int_equal(update(f, json_pack("{s:s, s:i}", "name", "web", "idle_timeout_s", 60),
                            now + 1, opid, &err),
                     0);
    app = get_app(f, "web");
    assert_int_equal(ji(app, "generation"), 2);
    assert_int_equal(ji(app, "idle_timeout_s"), 60);
    json_t *events = json_object_get(app, "events");
    assert_non_null(strstr(js(json_array_get(events, json_array_size(events) - 1), "message"),
                           "idle_timeout_s 300 -> 60"));
    json_decref(app);
    assert_true(pass(f, now + 2) > 0);
    char next[64];
    new_workload(f, id, next);
    a = assignment_of(f, next, &rows, &n);
    assert_int_equal(a->idle_timeout_s, 60);
    assert_int_equal(a->generation, 1); /* the workload's own, not the app's */
    ink_store_free_workloads(rows, n);
    /* The same value again changes nothing. */
    assert_int_equal(update(f, json_pack("{s:s, s:i}", "name", "web", "idle_timeout_s", 60),
                            now + 3, NULL, &err),
                     1);

    /* An app that never sleeps has none, and its assignments carry 0. */
    args = web_args("reg/x:1");
    json_object_set_new(args, "name", json_string("api"));
    assert_int_equal(create(f, args, now, NULL, &err), 0);
    app = get_app(f, "api");
    assert_int_equal(ji(app, "min_replicas"), 1);
    assert_true(json_is_null(json_object_get(app, "idle_timeout_s")));
    json_decref(app);
    /* Made to scale to zero later: the default comes with it. */
    assert_int_equal(
        update(f, json_pack("{s:s, s:i}", "name", "api", "min_replicas", 0), now + 4, NULL, &err),
        0);
    app = get_app(f, "api");
    assert_int_equal(ji(app, "idle_timeout_s"), INK_APP_DEFAULT_IDLE_TIMEOUT_S);
    json_decref(app);
    /* Back to always on: a given timeout stays in the spec, for later. */
    args = json_pack("{s:s, s:i, s:i}", "name", "api", "min_replicas", 1, "idle_timeout_s", 900);
    assert_int_equal(update(f, args, now + 5, NULL, &err), 0);
    app = get_app(f, "api");
    assert_int_equal(ji(app, "min_replicas"), 1);
    assert_int_equal(ji(app, "idle_timeout_s"), 900);
    json_decref(app);
}

/* web with min_replicas 0, serving on node-a; returns its replica. */
static void sleepy_web(fixture *f, char id[64])
{
    int64_t now = ink_now_ms();
    add_node(f, "node-a", "ia", now);
    ink_err err = {0};
    char opid[40];
    json_t *args = web_args("reg/x:1");
    json_object_set_new(args, "min_replicas", json_integer(0));
    json_object_set_new(args, "idle_timeout_s", json_integer(30));
    assert_int_equal(create(f, args, now, opid, &err), 0);
    responder_start(f, "web");
    assert_true(pass(f, now) > 0);
    only_workload(f, "node-a", id);
    /* Asleep before the operation even looked: it serves all the same
     * (its URL's first request wakes it), so the deployment ends. */
    report(f, "node-a", "ia", ink_now_ms(), &(status){id, SLEEPING, NULL}, 1);
    pass(f, ink_now_ms());
    assert_op_status(f, opid, "succeeded");
}

static void assert_app(fixture *f, const char *want, int64_t ready, bool url)
{
    json_t *app = get_app(f, "web");
    if (strcmp(js(app, "status"), want) != 0)
        fail_msg("app status %s (%s), want %s", js(app, "status"), js(app, "status_reason"), want);
    assert_int_equal(ji(app, "ready_replicas"), ready);
    assert_int_equal(json_is_string(json_object_get(app, "url")), url);
    json_decref(app);
    json_t *list = list_apps(f);
    assert_string_equal(js(json_array_get(json_object_get(list, "apps"), 0), "status"), want);
    json_decref(list);
}

/* A sleeping or waking replica is a healthy, placed one: the app shows
 * sleeping/waking with its URL, and the controller neither replaces the
 * replica nor waits for it. */
static void test_sleeping_replicas(void **state)
{
    fixture *f = *state;
    char id[64];
    sleepy_web(f, id);
    assert_app(f, "sleeping", 1, true);
    json_t *app = get_app(f, "web");
    assert_non_null(strstr(js(app, "status_reason"), "idle for 30s"));
    assert_non_null(strstr(js(app, "status_reason"), "wakes it"));
    json_t *r0 = json_array_get(json_object_get(app, "replica_status"), 0);
    assert_string_equal(js(r0, "state"), "sleeping");
    assert_true(json_is_string(json_object_get(r0, "url")));
    json_decref(app);
    /* Pass after pass: the same replica, nothing placed or removed. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(pass(f, ink_now_ms()), 0);
    char still[64];
    only_workload(f, "node-a", still);
    assert_string_equal(still, id);

    report(f, "node-a", "ia", ink_now_ms(), &(status){id, WAKING, NULL}, 1);
    pass(f, ink_now_ms());
    assert_app(f, "waking", 1, true);
    only_workload(f, "node-a", still);
    assert_string_equal(still, id);
    report(f, "node-a", "ia", ink_now_ms(), &(status){id, RUNNING, NULL}, 1);
    pass(f, ink_now_ms());
    assert_app(f, "running", 1, true);
    report(f, "node-a", "ia", ink_now_ms(), &(status){id, SLEEPING, NULL}, 1);
    pass(f, ink_now_ms());
    assert_app(f, "sleeping", 1, true);

    /* Two replicas, one awake: running. */
    ink_err err = {0};
    assert_int_equal(
        update(f, json_pack("{s:s, s:i}", "name", "web", "replicas", 2), ink_now_ms(), NULL, &err),
        0);
    assert_true(pass(f, ink_now_ms()) > 0);
    char second[64];
    new_workload(f, id, second);
    report(f, "node-a", "ia", ink_now_ms(),
           (status[]){{id, SLEEPING, NULL}, {second, RUNNING, NULL}}, 2);
    pass(f, ink_now_ms());
    assert_app(f, "running", 2, true);
    report(f, "node-a", "ia", ink_now_ms(),
           (status[]){{id, SLEEPING, NULL}, {second, WAKING, NULL}}, 2);
    pass(f, ink_now_ms());
    assert_app(f, "waking", 2, true);
    report(f, "node-a", "ia", ink_now_ms(),
           (status[]){{id, SLEEPING, NULL}, {second, SLEEPING, NULL}}, 2);
    pass(f, ink_now_ms());
    assert_app(f, "sleeping", 2, true);
    assert_int_equal(workloads(f, NULL, NULL), 2);
}

/* Rolling updates treat a sleeping or waking replica as serving: an old
 * one that wakes is not dropped before its successor serves, and a new
 * one that is asleep already ends the update. */
static void test_rolling_update_sleeping(void **state)
{
    fixture *f = *state;
    char old[64];
    sleepy_web(f, old);
    ink_err err = {0};
    char opid[40];
    assert_int_equal(update(f, json_pack("{s:s, s:s}", "name", "web", "image", "reg/x:2"),
                            ink_now_ms(), opid, &err),
                     0);
    assert_true(pass(f, ink_now_ms()) > 0);
    char new[64];
    new_workload(f, old, new);
    /* The old one wakes for a request while the new one starts: both stay. */
    report(f, "node-a", "ia", ink_now_ms(), (status[]){{old, WAKING, NULL}, {new, STARTING, NULL}},
           2);
    pass(f, ink_now_ms());
    assert_true(has_workload(f, old));
    assert_true(has_workload(f, new));
    assert_op_status(f, opid, "running");
    json_t *app = get_app(f, "web");
    assert_string_equal(js(app, "status"), "deploying");
    assert_true(json_is_string(json_object_get(app, "url"))); /* the old one's */
    json_decref(app);
    /* The new one serves by sleeping: the old one goes, the update ends. */
    report(f, "node-a", "ia", ink_now_ms(), (status[]){{old, RUNNING, NULL}, {new, SLEEPING, NULL}},
           2);
    assert_true(pass(f, ink_now_ms()) > 0);
    char only[64];
    only_workload(f, NULL, only);
    assert_string_equal(only, new);
    assert_op_status(f, opid, "succeeded");
    assert_app(f, "sleeping", 1, true);
}

int main(void)
{
    test_block_sigpipe();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_places_and_serves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rolling_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_update_keeps_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_durability, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_keys_old_digests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_node_fits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_noop_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_egress_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_egress_update_rolls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_egress_blocked_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sleeping_replicas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rolling_update_sleeping, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
