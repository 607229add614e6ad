/* Unit tests for `ink-coordinator workload put|rm|ls` (coordinator/
 * cli_workload.c) on a real SQLite file. The fixture keeps its own store
 * handle open the whole time, standing in for the running daemon, while
 * every command opens another one, as the CLI process does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include <cmocka.h>
#include <jansson.h>

#include "coordinator.h"
#include "cli_fixture.h"
#include "enrol.h"
#include "pki.h"
#include "testlib.h"
#include "util.h"

typedef cli_fixture fixture;
#define setup cli_fixture_setup
#define teardown cli_fixture_teardown
/* Runs the command with ARGS..., keeping its output in f->out, f->err. */
#define RUN(f, ...) cli_fixture_run(f, ink_cmd_workload, (const char *[]){__VA_ARGS__, NULL})

static void register_node(fixture *f, const char *id, const char *instance)
{
    Ink__V1__Capacity cap = INK__V1__CAPACITY__INIT;
    cap.cpus = 2;
    cap.memory_bytes = 4ULL << 30;
    Ink__V1__RegisterRequest r = INK__V1__REGISTER_REQUEST__INIT;
    r.node_id = (char *)id;
    r.hostname = "host";
    r.agent_endpoint = "127.0.0.1:7442";
    r.capacity = &cap;
    r.instance_id = (char *)instance;
    ink_err err = {0};
    assert_int_equal(ink_store_register_node(f->store, &r, 1000, &err), 0);
}

/* The node's desired set as the daemon would stream it: one snapshot. */
static Ink__V1__WatchEvent *snapshot(fixture *f, const char *node, ink_watch_batch *b)
{
    ink_err err = {0};
    assert_int_equal(ink_store_watch_events(f->store, node, 0, true, 100, b, &err), 0);
    assert_int_equal(b->n, 1);
    return b->events[0];
}

static void test_put_creates_generation_1(void **state)
{
    fixture *f = *state;
    register_node(f, "n1", "i1");
    assert_int_equal(
        RUN(f, "put", "n1", "web-1", "--image", "registry.local/web:1", "--port", "8080",
            "--publish=30080", "--env", "MODE=prod", "--env", "EMPTY=", "--secret-env",
            "TOKEN=s3cr3t-value", "--memory", "256M", "--cpu", "0.5", "--pids", "100", "--app",
            "web", "--project", "demo", "--min-replicas", "0", "--idle-timeout", "5m", "--egress",
            "default", "--egress-allow", "10.0.0.0/8", "--egress-allow", "API.example.com",
            "--egress-allow", "198.51.100.7:8000-8099", "--", "/bin/server", "--listen", ":8080"),
        0);
    assert_string_equal(f->out, "workload web-1 on n1: generation 1, revision 1\n");
    assert_string_equal(f->err, "");

    ink_watch_batch b;
    Ink__V1__WatchEvent *ev = snapshot(f, "n1", &b);
    assert_int_equal(ev->revision, 1);
    assert_int_equal(ev->n_assignments, 1);
    const Ink__V1__Assignment *a = ev->assignments[0];
    assert_string_equal(a->workload_id, "web-1");
    assert_int_equal(a->generation, 1);
    assert_string_equal(a->image, "registry.local/web:1");
    assert_string_equal(a->app, "web");
    assert_string_equal(a->project, "demo");
    assert_int_equal(a->port, 8080);
    assert_int_equal(a->published_port, 30080);
    assert_int_equal(a->n_env, 2);
    assert_string_equal(a->env[0]->name, "MODE");
    assert_string_equal(a->env[0]->value, "prod");
    assert_string_equal(a->env[1]->name, "EMPTY");
    assert_string_equal(a->env[1]->value, "");
    assert_int_equal(a->n_secret_env, 1);
    assert_string_equal(a->secret_env[0]->name, "TOKEN");
    assert_string_equal(a->secret_env[0]->value, "s3cr3t-value");
    assert_non_null(a->resources);
    assert_int_equal(a->resources->memory_bytes, 256ULL << 20);
    assert_int_equal(a->resources->cpu_millis, 500);
    assert_int_equal(a->resources->pids, 100);
    assert_int_equal(a->min_replicas, 0);
    assert_int_equal(a->idle_timeout_s, 300);
    assert_string_equal(a->egress, "default");
    assert_int_equal(a->n_egress_allow, 3);
    assert_string_equal(a->egress_allow[1], "api.example.com"); /* canonical */
    assert_string_equal(a->egress_allow[2], "198.51.100.7:8000-8099");
    assert_int_equal(a->n_command, 3);
    assert_string_equal(a->command[0], "/bin/server");
    assert_string_equal(a->command[2], ":8080");
    assert_int_equal(a->n_args, 0);
    ink_store_free_events(&b);
}

static void test_put_without_limits_and_args(void **state)
{
    fixture *f = *state;
    register_node(f, "n1", "i1");
    /* --args: what follows -- replaces the image's cmd, not its
     * entrypoint. Without limits there is no Resources message at all. */
    assert_int_equal(RUN(f, "put", "n1", "job", "--image", "busybox", "--args", "--", "-c", "1"),
                     0);
    ink_watch_batch b;
    const Ink__V1__Assignment *a = snapshot(f, "n1", &b)->assignments[0];
    assert_int_equal(a->n_command, 0);
    assert_int_equal(a->n_args, 2);
    assert_string_equal(a->args[0], "-c");
    assert_null(a->resources);
    /* Without --min-replicas it never scales to zero. */
    assert_int_equal(a->min_replicas, 1);
    ink_store_free_events(&b);
}

static void test_cpu_forms(void **state)
{
    fixture *f = *state;
    register_node(f, "n1", "i1");
    const char *forms[] = {"250", "250m", "2.0", "1.25", "0.01"};
    const uint32_t millis[] = {250, 250, 2000, 1250, 10};
    for (size_t i = 0; i < INK_ARRAY_LEN(forms); i++) {
        assert_int_equal(RUN(f, "put", "n1", "w", "--image", "img", "--cpu", forms[i]), 0);
        ink_watch_batch b;
        const Ink__V1__Assignment *a = snapshot(f, "n1", &b)->assignments[0];
        assert_int_equal(a->resources->cpu_millis, millis[i]);
        ink_store_free_events(&b);
    }
}

static void test_put_identical_is_idempotent(void **state)
{
    fixture *f = *state;
    register_node(f, "n1", "i1");
    assert_int_equal(RUN(f, "put", "n1", "web-1", "--image", "img:1", "--env", "A=1"), 0);
    assert_int_equal(RUN(f, "put", "n1", "web-1", "--image", "img:1", "--env", "A=1"), 0);
    assert_string_equal(f->out, "workload web-1 on n1: unchanged (generation 1, revision 1)\n");
    assert_int_equal(ink_store_revision(f->store), 1);
    /* The agent gets nothing new either. */
    ink_watch_batch b;
    ink_err err = {0};
    assert_int_equal(ink_store_watch_events(f->store, "n1", 1, false, 100, &b, &err), 0);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.head, 1);
    ink_store_free_events(&b);
}

static void test_put_changed_bumps_generation(void **state)
{
    fixture *f = *state;
    register_node(f, "n1", "i1");
    register_node(f, "n2", "i2");
    assert_int_equal(RUN(f, "put", "n1", "web-1", "--image", "img:1"), 0);
    assert_int_equal(RUN(f, "put", "n2", "web-1", "--image", "img:1"), 0); /* other node */
    assert_string_equal(f->out, "workload web-1 on n2: generation 1, revision 2\n");
    assert_int_equal(RUN(f, "put", "n1", "web-1", "--image", "img:2"), 0);
    assert_string_equal(f->out, "workload web-1 on n1: generation 2, revision 3\n");
    /* Back to the first spec is a change too. */
    assert_int_equal(RUN(f, "put", "n1", "web-1", "--image", "img:1"), 0);
    assert_string_equal(f->out, "workload web-1 on n1: generation 3, revision 4\n");

    ink_watch_batch b;
    ink_err err = {0};
    assert_int_equal(ink_store_watch_events(f->store, "n1", 1, false, 100, &b, &err), 0);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.events[0]->kind, INK__V1__WATCH_EVENT__KIND__UPSERT);
    assert_int_equal(b.events[0]->revision, 3);
    assert_int_equal(b.events[0]->assignments[0]->generation, 2);
    assert_string_equal(b.events[0]->assignments[0]->image, "img:2");
    assert_int_equal(b.events[1]->assignments[0]->generation, 3);
    ink_store_free_events(&b);
}

static void test_rm(void **state)
{
    fixture *f = *state;
    register_node(f, "n1", "i1");
    assert_int_equal(RUN(f, "put", "n1", "web-1", "--image", "img:1"), 0);
    assert_int_equal(RUN(f, "rm", "n1", "web-1"), 0);
    assert_string_equal(f->out, "workload web-1 on n1: removed, revision 2\n");
    ink_watch_batch b;
    ink_err err = {0};
    assert_int_equal(ink_store_watch_events(f->store, "n1", 1, false, 100, &b, &err), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.events[0]->kind, INK__V1__WATCH_EVENT__KIND__DELETE);
    assert_string_equal(b.events[0]->workload_id, "web-1");
    ink_store_free_events(&b);
    assert_int_equal(RUN(f, "ls", "--json"), 0);
    assert_string_equal(f->out, "[]\n");
    /* A new put after rm starts over at generation 1. */
    assert_int_equal(RUN(f, "put", "n1", "web-1", "--image", "img:1"), 0);
    assert_string_equal(f->out, "workload web-1 on n1: generation 1, revision 3\n");
}

static void test_rm_unknown_is_ok(void **state)
{
    fixture *f = *state;
    assert_int_equal(RUN(f, "rm", "n1", "nothing-here"), 0);
    assert_string_equal(f->out, "workload nothing-here on n1: not assigned, nothing to remove\n");
    /* No revision, no log entry for any agent. */
    assert_int_equal(ink_store_revision(f->store), 0);
}

static void test_unknown_node_warns(void **state)
{
    fixture *f = *state;
    assert_int_equal(RUN(f, "put", "ghost", "w", "--image", "img"), 0);
    assert_non_null(strstr(f->err, "warning: node 'ghost' has never registered"));
    assert_string_equal(f->out, "workload w on ghost: generation 1, revision 1\n");
}

static void test_validation_errors(void **state)
{
    fixture *f = *state;
    char long_id[130];
    memset(long_id, 'a', 129);
    long_id[129] = '\0';
    struct {
        const char *args[12];
        const char *msg;
    } cases[] = {
        {{"put", "n1", "bad id", "--image", "x"}, "is not a workload id"},
        {{"put", "n1", ".hidden", "--image", "x"}, "is not a workload id"},
        {{"put", "n1", long_id, "--image", "x"}, "is not a workload id"},
        {{"put", "Node1", "w", "--image", "x"}, "is not a node name"},
        {{"put", "n1", "w"}, "--image is required"},
        {{"put", "n1", "--image", "x"}, "NODE and ID are required"},
        {{"put", "n1", "w", "--image", ""}, "--image must be a non-empty"},
        {{"put", "n1", "w", "--image", "x", "--image", "y"}, "--image given twice"},
        {{"put", "n1", "w", "--image"}, "--image needs a value"},
        {{"put", "n1", "w", "--image", "x", "--port", "0"}, "not a port"},
        {{"put", "n1", "w", "--image", "x", "--port", "65536"}, "not a port"},
        {{"put", "n1", "w", "--image", "x", "--publish", "8o"}, "not a port"},
        {{"put", "n1", "w", "--image", "x", "--memory", "12X"}, "--memory '12X' is not a size"},
        {{"put", "n1", "w", "--image", "x", "--memory", "512"}, "at least 1M"},
        {{"put", "n1", "w", "--image", "x", "--cpu", "2"}, "--cpu '2' is not a CPU amount"},
        {{"put", "n1", "w", "--image", "x", "--cpu", "1.2345"}, "not a CPU amount"},
        {{"put", "n1", "w", "--image", "x", "--cpu", "-1"}, "not a CPU amount"},
        {{"put", "n1", "w", "--image", "x", "--pids", "0"}, "--pids '0' is not a number"},
        {{"put", "n1", "w", "--image", "x", "--idle-timeout", "5x"}, "not a duration"},
        {{"put", "n1", "w", "--image", "x", "--idle-timeout", "1500ms"}, "whole seconds"},
        {{"put", "n1", "w", "--image", "x", "--env", "1A=b"}, "'1A' is not a variable name"},
        {{"put", "n1", "w", "--image", "x", "--env", "A-B=c"}, "not a variable name"},
        {{"put", "n1", "w", "--image", "x", "--env", "NOVALUE"}, "--env expects KEY=VALUE"},
        {{"put", "n1", "w", "--image", "x", "--env", "A=1", "--env", "A=2"}, "A given twice"},
        {{"put", "n1", "w", "--image", "x", "--app", "Web"}, "--app 'Web' is not a valid name"},
        {{"put", "n1", "w", "--image", "x", "--egress-allow", "10.0.0.0/33"}, "--egress-allow"},
        {{"put", "n1", "w", "--image", "x", "--egress-allow", "300.1.1.1"}, "--egress-allow"},
        {{"put", "n1", "w", "--image", "x", "--egress-allow", "bad_host"}, "--egress-allow"},
        {{"put", "n1", "w", "--image", "x", "--egress-allow", "-a.com"}, "--egress-allow"},
        {{"put", "n1", "w", "--image", "x", "--egress-allow", "2001:db8::/32"}, "IPv6"},
        {{"put", "n1", "w", "--image", "x", "--egress-allow", "a.com:0"}, "is not a port"},
        {{"put", "n1", "w", "--image", "x", "--egress", "a-very-long-policy-name-of-35-chars"},
         "--egress 'a-very-long-policy-name-of-35-chars' is not a policy name"},
        {{"put", "n1", "w", "--image", "x", "--bogus", "1"}, "unknown flag '--bogus'"},
        {{"put", "n1", "w", "--image", "x", "-e", "A=1"}, "unknown flag '-e'"},
        {{"put", "n1", "w", "extra", "--image", "x"}, "unexpected argument 'extra'"},
        {{"put", "n1", "w", "--image", "x", "--args"}, "--args needs the arguments after --"},
        {{"put", "n1", "w", "--image", "x", "--args=1", "--", "a"}, "--args takes no value"},
        {{"put", "n1", "w", "--image", "x", "--"}, "nothing after --"},
        {{"rm", "n1"}, "usage: ink-coordinator workload rm"},
        {{"rm", "n1", "w", "x"}, "usage: ink-coordinator workload rm"},
        {{"rm", "n1", "bad/id"}, "'bad/id' is not a workload id"},
        {{"rm", "N1", "w"}, "'N1' is not a node name"},
        {{"ls", "--bogus"}, "usage: ink-coordinator workload ls"},
        {{"ls", "n1", "n2"}, "usage: ink-coordinator workload ls"},
        {{"frob"}, "usage: ink-coordinator workload put"},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(cases); i++) {
        int rc = cli_fixture_run(f, ink_cmd_workload, cases[i].args);
        if (rc != 2 || !strstr(f->err, cases[i].msg))
            fail_msg("case %zu (%s %s %s ...): rc %d, stderr: %s", i, cases[i].args[0],
                     cases[i].args[1], cases[i].args[2] ? cases[i].args[2] : "", rc, f->err);
        assert_string_equal(f->out, "");
    }
    /* No subcommand at all. */
    const char *none[] = {NULL};
    assert_int_equal(cli_fixture_run(f, ink_cmd_workload, none), 2);
    /* Usage errors never write. */
    assert_int_equal(ink_store_revision(f->store), 0);
}

static void test_secret_values_never_printed(void **state)
{
    fixture *f = *state;
    /* A secret passed without '=' may be the secret itself. */
    assert_int_equal(RUN(f, "put", "n1", "w", "--image", "x", "--secret-env", "hunter2hunter2"), 2);
    assert_null(strstr(f->err, "hunter2"));
    assert_int_equal(RUN(f, "put", "n1", "w", "--image", "x", "--secret-env=1BAD=hunter2"), 2);
    assert_null(strstr(f->err, "hunter2"));
    assert_int_equal(RUN(f, "put", "n1", "w", "--image", "x", "--secret=hunter2"), 2);
    assert_null(strstr(f->err, "hunter2"));
    assert_int_equal(RUN(f, "put", "n1", "w", "--image", "x", "--secret-env", "K=hunter2"), 0);
    assert_null(strstr(f->out, "hunter2"));
    assert_int_equal(RUN(f, "ls"), 0);
    assert_null(strstr(f->out, "hunter2"));
    assert_int_equal(RUN(f, "ls", "--json"), 0);
    assert_null(strstr(f->out, "hunter2"));
}

static void report(fixture *f, const char *node, const char *instance, Ink__V1__WorkloadStatus **ws,
                   size_t n)
{
    Ink__V1__ReportStatusRequest r = INK__V1__REPORT_STATUS_REQUEST__INIT;
    r.node_id = (char *)node;
    r.instance_id = (char *)instance;
    r.applied_revision = 2;
    r.workloads = ws;
    r.n_workloads = n;
    ink_err err = {0};
    assert_int_equal(ink_store_report_status(f->store, &r, ink_now_ms(), &err), 0);
}

static json_t *ls_json(fixture *f, const char *node)
{
    if (node)
        assert_int_equal(RUN(f, "ls", node, "--json"), 0);
    else
        assert_int_equal(RUN(f, "ls", "--json"), 0);
    json_error_t jerr;
    json_t *arr = json_loads(f->out, 0, &jerr);
    if (!arr)
        fail_msg("ls --json printed no JSON (%s): %s", jerr.text, f->out);
    assert_true(json_is_array(arr));
    return arr;
}

static void test_ls_shows_reported_status(void **state)
{
    fixture *f = *state;
    register_node(f, "n1", "i1");
    register_node(f, "n2", "i2");
    assert_int_equal(RUN(f, "put", "n1", "web-1", "--image", "img:1"), 0);
    assert_int_equal(RUN(f, "put", "n1", "web-2", "--image", "img:2"), 0);
    assert_int_equal(RUN(f, "put", "n2", "db", "--image", "pg:16"), 0);
    int64_t since = ink_now_ms() - 5 * 60000;
    Ink__V1__WorkloadStatus w = INK__V1__WORKLOAD_STATUS__INIT;
    w.workload_id = "web-1";
    w.generation = 1;
    w.state = INK__V1__WORKLOAD_STATUS__STATE__CRASH_LOOP;
    w.reason = "exit status 3\nsee logs";
    w.restarts = 4;
    w.address = "10.88.0.2";
    w.published_port = 30001;
    w.since_unix_ms = since;
    w.image_digest = "sha256:abc";
    /* Something the node runs that is no longer assigned: not listed. */
    Ink__V1__WorkloadStatus old = INK__V1__WORKLOAD_STATUS__INIT;
    old.workload_id = "gone";
    old.state = INK__V1__WORKLOAD_STATUS__STATE__STOPPED;
    Ink__V1__WorkloadStatus *ws[] = {&w, &old};
    report(f, "n1", "i1", ws, 2);

    json_t *arr = ls_json(f, NULL);
    assert_int_equal(json_array_size(arr), 3);
    const char *fields[] = {
        "node",         "workload_id",  "generation", "image",          "state",
        "reason",       "restarts",     "address",    "published_port", "reported_generation",
        "image_digest", "since_unix_ms"};
    json_t *o = json_array_get(arr, 0);
    assert_int_equal(json_object_size(o), INK_ARRAY_LEN(fields));
    for (size_t i = 0; i < INK_ARRAY_LEN(fields); i++)
        assert_non_null(json_object_get(o, fields[i]));
    assert_string_equal(json_string_value(json_object_get(o, "node")), "n1");
    assert_string_equal(json_string_value(json_object_get(o, "workload_id")), "web-1");
    assert_int_equal(json_integer_value(json_object_get(o, "generation")), 1);
    assert_string_equal(json_string_value(json_object_get(o, "image")), "img:1");
    assert_string_equal(json_string_value(json_object_get(o, "state")), "crash-loop");
    assert_string_equal(json_string_value(json_object_get(o, "reason")), "exit status 3\nsee logs");
    assert_int_equal(json_integer_value(json_object_get(o, "restarts")), 4);
    assert_string_equal(json_string_value(json_object_get(o, "address")), "10.88.0.2");
    assert_int_equal(json_integer_value(json_object_get(o, "published_port")), 30001);
    assert_int_equal(json_integer_value(json_object_get(o, "reported_generation")), 1);
    assert_string_equal(json_string_value(json_object_get(o, "image_digest")), "sha256:abc");
    assert_int_equal(json_integer_value(json_object_get(o, "since_unix_ms")), since);
    /* Not reported yet: same fields, zero values. */
    o = json_array_get(arr, 1);
    assert_string_equal(json_string_value(json_object_get(o, "workload_id")), "web-2");
    assert_string_equal(json_string_value(json_object_get(o, "state")), "unreported");
    assert_int_equal(json_integer_value(json_object_get(o, "reported_generation")), 0);
    assert_int_equal(json_object_size(o), INK_ARRAY_LEN(fields));
    o = json_array_get(arr, 2);
    assert_string_equal(json_string_value(json_object_get(o, "node")), "n2");
    json_decref(arr);

    /* A node filter. */
    arr = ls_json(f, "n2");
    assert_int_equal(json_array_size(arr), 1);
    json_decref(arr);
    arr = ls_json(f, "n3");
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);

    /* The table: a header, one line per assignment, the reason on its line. */
    assert_int_equal(RUN(f, "ls", "n1"), 0);
    assert_true(strncmp(f->out, "NODE ", 5) == 0);
    char *line2 = strchr(f->out, '\n') + 1;
    char *line3 = strchr(line2, '\n') + 1;
    assert_non_null(strstr(line2, "web-1"));
    assert_non_null(strstr(line2, "crash-loop"));
    assert_non_null(strstr(line2, "30001"));
    assert_non_null(strstr(line2, " 5m "));
    assert_non_null(strstr(line2, "exit status 3 see logs\n"));
    assert_non_null(strstr(line3, "unreported"));
    assert_string_equal(strchr(line3, '\n'), "\n"); /* and nothing after it */
}

/* The daemon holds its handle open across another process's writes: it
 * must see them (revision, log, snapshot), and its own writes must follow
 * them instead of reusing their revision numbers. */
static void test_second_handle_sees_cli_writes(void **state)
{
    fixture *f = *state;
    register_node(f, "n1", "i1");
    ink_err err = {0};
    ink_watch_batch b;
    assert_int_equal(ink_store_watch_events(f->store, "n1", 0, true, 100, &b, &err), 0);
    assert_int_equal(b.head, 0);
    ink_store_free_events(&b);

    assert_int_equal(RUN(f, "put", "n1", "web-1", "--image", "img:1"), 0);
    assert_int_equal(ink_store_revision(f->store), 1);
    assert_int_equal(ink_store_watch_events(f->store, "n1", 0, false, 100, &b, &err), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.events[0]->kind, INK__V1__WATCH_EVENT__KIND__UPSERT);
    assert_int_equal(b.events[0]->revision, 1);
    assert_string_equal(b.events[0]->assignments[0]->workload_id, "web-1");
    assert_int_equal(b.head, 1);
    ink_store_free_events(&b);

    /* The daemon writes next: revision 2, not a second revision 1. */
    Ink__V1__Assignment a = INK__V1__ASSIGNMENT__INIT;
    a.workload_id = "other";
    a.image = "img";
    a.generation = 1;
    assert_int_equal(ink_store_put_assignment(f->store, "n1", &a, &err), 2);

    /* And the CLI after it again. */
    assert_int_equal(RUN(f, "put", "n1", "web-1", "--image", "img:2"), 0);
    assert_string_equal(f->out, "workload web-1 on n1: generation 2, revision 3\n");
    assert_int_equal(ink_store_watch_events(f->store, "n1", 2, false, 100, &b, &err), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.events[0]->revision, 3);
    assert_int_equal(b.events[0]->assignments[0]->generation, 2);
    assert_int_equal(b.head, 3);
    ink_store_free_events(&b);

    /* A fresh agent's snapshot holds both and the newest revision. */
    Ink__V1__WatchEvent *ev = snapshot(f, "n1", &b);
    assert_int_equal(ev->revision, 3);
    assert_int_equal(ev->n_assignments, 2);
    ink_store_free_events(&b);

    /* Compaction counts from the database's revision too. */
    assert_int_equal(ink_store_compact_log(f->store, 1, &err), 0);
    assert_int_equal(ink_store_watch_events(f->store, "n1", 1, false, 100, &b, &err), 0);
    assert_int_equal(b.events[0]->kind, INK__V1__WATCH_EVENT__KIND__SNAPSHOT);
    ink_store_free_events(&b);
}

/* ---------------------------------------------------------- pki enrol */

#define ENROL(f, ...) cli_fixture_run(f, ink_cmd_pki_enrol, (const char *[]){__VA_ARGS__, NULL})

/* A CA in the fixture's directory, named by the configuration as pki_dir;
 * path receives it. */
static void enrol_ca(fixture *f, char *path, size_t len)
{
    snprintf(path, len, "%s/pki", f->dir);
    ink_err err = {0};
    assert_int_equal(ink_config_set(ink_coordinator_options, &f->cfg, "pki_dir", path, &err), 0);
    assert_int_equal(ink_pki_init_ca(path, 30, &err), 0);
}

static char *slurp(const char *path)
{
    char *text = NULL;
    ink_err err = {0};
    if (ink_read_file(path, 1 << 20, &text, NULL, &err) < 0)
        fail_msg("%s", err.msg);
    return text;
}

/* The here-document of the script's function fn, written to path. */
static void extract_pem(const char *script, const char *fn, const char *path)
{
    char *open = ink_xasprintf("\n%s() {\n\tcat <<'" INK_ENROL_HEREDOC_END "'\n", fn);
    const char *start = strstr(script, open);
    assert_non_null(start);
    start += strlen(open);
    const char *end = strstr(start, "\n" INK_ENROL_HEREDOC_END "\n}\n");
    assert_non_null(end);
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    assert_int_equal(fwrite(start, 1, (size_t)(end - start) + 1, out), (size_t)(end - start) + 1);
    assert_int_equal(fclose(out), 0);
    free(open);
}

/* The names in dir, sorted, space-separated. */
static char *dir_names(const char *dir)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    assert_true(n >= 0);
    char *names = ink_xstrdup("");
    for (int i = 0; i < n; i++) {
        if (strcmp(list[i]->d_name, ".") != 0 && strcmp(list[i]->d_name, "..") != 0) {
            char *next = ink_xasprintf("%s%s%s", names, *names ? " " : "", list[i]->d_name);
            free(names);
            names = next;
        }
        free(list[i]);
    }
    free(list);
    return names;
}

/* A CA in the fixture, an empty output directory, and the script's path
 * in it. */
static void enrol_setup(fixture *f, char pki[256], char out[256], char path[320])
{
    enrol_ca(f, pki, 256);
    snprintf(out, 256, "%s/out", f->dir);
    assert_int_equal(mkdir(out, 0755), 0);
    snprintf(path, 320, "%s/enrol.sh", out);
}

static void test_enrol_writes_script(void **state)
{
    fixture *f = *state;
    char pki[256], out[256], path[320];
    enrol_setup(f, pki, out, path);
    assert_int_equal(ENROL(f, "n1", "--coordinator", "10.0.0.1:7440", "--san", "10.0.0.21",
                           "--days", "90", "--out", path),
                     0);
    assert_non_null(strstr(f->out, "ssh root@n1 sh -s <"));
    assert_non_null(strstr(f->err, "private key (mode 0600)"));

    /* Only the script is left, 0600, nothing of the key beside it. */
    char *names = dir_names(out);
    assert_string_equal(names, "enrol.sh");
    free(names);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    char *script = slurp(path);
    assert_true(strncmp(script, "#!/bin/sh\n", 10) == 0);
    assert_non_null(strstr(script, "\nINK_NODE='n1'\n"));
    assert_non_null(strstr(script, "\nINK_COORDINATOR='10.0.0.1:7440'\n"));
    assert_non_null(strstr(script, "print \"coordinator = \" coord"));
    assert_non_null(strstr(script, "print \"node_id = \" node"));
    assert_non_null(strstr(script, "apt-get install ./ink-agent_$INK_VERSION-1_$arch.deb"));
    assert_non_null(strstr(script, "\nmain \"$@\"\n"));

    /* The CA's certificate verbatim, never its key. */
    char ca_crt[320], ca_key[320];
    snprintf(ca_crt, sizeof ca_crt, "%s/ca.crt", pki);
    snprintf(ca_key, sizeof ca_key, "%s/ca.key", pki);
    char *ca = slurp(ca_crt), *cakey = slurp(ca_key);
    assert_non_null(strstr(script, ca));
    assert_null(strstr(script, cakey));
    free(ca);
    free(cakey);

    /* The three here-documents: the CA, and a certificate for n1 it signed
     * with the key beside it. */
    char crt[320], key[320], ca2[320];
    snprintf(ca2, sizeof ca2, "%s/ca-from-script.crt", f->dir);
    snprintf(crt, sizeof crt, "%s/node.crt", f->dir);
    snprintf(key, sizeof key, "%s/node.key", f->dir);
    extract_pem(script, "ink_ca_crt", ca2);
    extract_pem(script, "ink_node_crt", crt);
    extract_pem(script, "ink_node_key", key);
    ink_err err = {0};
    assert_int_equal(ink_pki_verify(ca2, crt, key, &err), 0);
    ink_cert_info info;
    assert_int_equal(ink_pki_cert_info_file(crt, &info, &err), 0);
    assert_string_equal(info.cn, "n1");
    assert_string_equal(info.ou, INK_ROLE_NODE);
    assert_false(info.is_ca);
    long days = (long)((info.not_after - info.not_before) / 86400);
    assert_true(days >= 89 && days <= 90);
    char *k = slurp(key);
    assert_non_null(strstr(k, "-----BEGIN PRIVATE KEY-----\n"));
    free(k);
    free(script);

    /* It is valid sh. */
    char *cmd = ink_xasprintf("sh -n '%s'", path);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

static void test_enrol_default_out_never_overwrites(void **state)
{
    fixture *f = *state;
    char pki[256], cwd[4096], path[320];
    enrol_ca(f, pki, sizeof pki);
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(f->dir), 0);
    int rc = ENROL(f, "node-2", "--coordinator", "[2001:db8::1]:7440");
    char *first = ink_xstrdup(f->out);
    int again = rc == 0 ? ENROL(f, "node-2", "--coordinator", "coord.example.org:7440") : -1;
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(first, "node node-2: enrol-node-2.sh;"));
    free(first);
    snprintf(path, sizeof path, "%s/enrol-node-2.sh", f->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    /* The second run leaves the first script alone. */
    assert_int_equal(again, 1);
    assert_non_null(strstr(f->err, "not overwriting it"));
    char *script = slurp(path);
    assert_non_null(strstr(script, "\nINK_COORDINATOR='[2001:db8::1]:7440'\n"));
    assert_non_null(strstr(script, "\nINK_SCRIPT='enrol-node-2.sh'\n"));
    free(script);
    char *names = dir_names(f->dir);
    assert_null(strstr(names, ".ink-enrol")); /* no temporary directory left */
    free(names);
}

static void test_enrol_refuses_bad_input(void **state)
{
    fixture *f = *state;
    char pki[256], out[256], path[320];
    enrol_setup(f, pki, out, path);

    static const char *const bad_nodes[] = {
        "a;rm -rf /", "Node1", "ink-coordinator", "n1'", "n1 x", "a/../b", "-n1", ""};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad_nodes); i++) {
        int rc = ENROL(f, bad_nodes[i], "--coordinator", "10.0.0.1:7440", "--out", path);
        if (rc == 0)
            fail_msg("node '%s' accepted", bad_nodes[i]);
        assert_true(strlen(f->err) > 0);
    }
    static const char *const bad_coords[] = {"a;rm -rf /", "host:0",    "host:70000", "host:123456",
                                             "host",       "host:",     ":7440",      "host:+1",
                                             "host: 1",    "host:1 ",   "h$(id):1",   "h`id`:1",
                                             "h'x:1",      "::1:7440",  "[::1]",      "[::1]7440",
                                             "[nope]:1",   "[]:1",      "-host:1",    ".host:1",
                                             "h_x:1",      "host:1\nx", "10.0.0.1:-1"};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad_coords); i++) {
        int rc = ENROL(f, "n1", "--coordinator", bad_coords[i], "--out", path);
        if (rc != 1)
            fail_msg("--coordinator '%s': exit %d", bad_coords[i], rc);
        assert_non_null(strstr(f->err, "coordinator"));
    }
    assert_int_equal(ENROL(f, "n1", "--out", path), 2);
    assert_non_null(strstr(f->err, "--coordinator HOST:PORT is required"));
    assert_int_equal(ENROL(f, "n1", "--coordinator"), 2);
    assert_int_equal(ENROL(f, "n1", "--coordinator", "h:1", "--days", "0", "--out", path), 2);
    assert_int_equal(ENROL(f, "n1", "--coordinator", "h:1", "--bogus", "--out", path), 2);
    assert_int_equal(ENROL(f, "n1", "--coordinator", "h:1", "--san", "bad san!", "--out", path), 1);
    assert_int_equal(cli_fixture_run(f, ink_cmd_pki_enrol, (const char *[]){NULL}), 2);
    assert_non_null(strstr(f->err, "usage: ink-coordinator pki enrol NODE"));

    /* Nothing written, no key or temporary directory left behind. */
    char *names = dir_names(out);
    assert_string_equal(names, "");
    free(names);
}

static void test_enrol_coordinator_forms(void **state)
{
    static const char *const good[] = {
        "coordinator.example.org:7440", "10.0.0.1:1", "[::1]:65535",
        "[2001:db8::7]:7440",           "A-1.b:443",  "localhost:7440"};
    for (size_t i = 0; i < INK_ARRAY_LEN(good); i++) {
        ink_err err = {0};
        if (ink_enrol_check_coordinator(good[i], &err) < 0)
            fail_msg("%s: %s", good[i], err.msg);
    }
    ink_err err = {0};
    assert_int_equal(ink_enrol_check_coordinator(NULL, &err), -1);
    char *long_host = ink_xasprintf("%0254d:1", 0);
    assert_int_equal(ink_enrol_check_coordinator(long_host, &err), -1);
    free(long_host);
}

static void test_enrol_script_checks_what_it_embeds(void **state)
{
    static const char pem[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    ink_err err = {0};
    char *s = ink_enrol_script("n1", "h:1", "weird name;.sh", pem, pem, pem, &err);
    assert_non_null(s);
    assert_non_null(strstr(s, "\nINK_SCRIPT='enrol-n1.sh'\n"));
    free(s);

    /* A PEM text that would end its here-document early, or carry more
     * than printable ASCII lines, is refused. */
    static const char *const bad[] = {
        "-----BEGIN CERTIFICATE-----\n" INK_ENROL_HEREDOC_END "\nrm -rf /\n",
        "-----BEGIN CERTIFICATE-----\nAA\x01\n",
        "-----BEGIN CERTIFICATE-----\nAA\xc3\xa9\n",
        "-----BEGIN CERTIFICATE-----\nno newline at the end",
        "not PEM\n",
        "",
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(bad); i++) {
        assert_null(ink_enrol_script("n1", "h:1", NULL, pem, pem, bad[i], &err));
        assert_null(ink_enrol_script("n1", "h:1", NULL, bad[i], pem, pem, &err));
    }
    assert_null(ink_enrol_script("n1", "h:1", NULL,
                                 "-----BEGIN X-----\n" INK_ENROL_HEREDOC_END "\n", pem, pem, &err));
    assert_non_null(strstr(err.msg, INK_ENROL_HEREDOC_END));
    /* The node and address are checked here too. */
    assert_null(ink_enrol_script("n1'", "h:1", NULL, pem, pem, pem, &err));
    assert_null(ink_enrol_script("n1", "h:1'", NULL, pem, pem, pem, &err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_creates_generation_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_without_limits_and_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cpu_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_identical_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_changed_bumps_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rm_unknown_is_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_node_warns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_values_never_printed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ls_shows_reported_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_handle_sees_cli_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enrol_writes_script, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enrol_default_out_never_overwrites, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enrol_refuses_bad_input, setup, teardown),
        cmocka_unit_test(test_enrol_coordinator_forms),
        cmocka_unit_test(test_enrol_script_checks_what_it_embeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
