/* Unit tests for the MCP tools (coordinator/tools.c): a real store in a
 * scratch directory, API keys made with ink_keys_create, and sessions of
 * the tools' MCP server driven message by message, each session
 * authenticated as one key's caller, as the transports do. The controller
 * never runs here unless a test runs a pass itself, so deployments stay
 * "deploying" and the waits end at deploy_wait.
 *
 * Results are validated against their output schemas by the MCP core (a
 * mismatch turns into a tool error), so asserting !isError on a result
 * also checks its shape. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <sqlite3.h>

#include "apps.h"
#include "audit.h"
#include "controller.h"
#include "coordinator.h"
#include "keys.h"
#include "log.h"
#include "mcp.h"
#include "rpc/rpc.h"
#include "testlib.h"
#include "tools.h"
#include "util.h"

#define WAIT_MS 20000
#define MAX_KEEP 512
#define SECRET "s3cr3t-Value-9f8e7d"
#define SECRET2 "another-s3cret-1234"

/* ------------------------------------------------------------- fixture */

typedef struct fx {
    char dir[128];
    char db[192];
    ink_coordinator_config cfg;
    ink_store *store;
    ink_tools *tools;
    ink_mcp_session *ses;

    char deployer_key[INK_KEY_LEN + 1], reader_key[INK_KEY_LEN + 1], other_key[INK_KEY_LEN + 1];
    const ink_caller *deployer, *reader, *other;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    char **lines;
    size_t nlines, cap, taken;

    int next_id;
    json_t *notes;          /* notifications seen while waiting for responses */
    const char *last_line;  /* the raw response line of the last call */
    json_t *keep[MAX_KEEP]; /* freed at teardown */
    size_t nkeep;
} fx;

static json_t *keep(fx *f, json_t *j)
{
    assert_non_null(j);
    assert_true(f->nkeep < MAX_KEEP);
    f->keep[f->nkeep++] = j;
    return j;
}

static void emit(void *arg, const char *line)
{
    fx *f = arg;
    pthread_mutex_lock(&f->mu);
    if (f->nlines == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 32;
        f->lines = realloc(f->lines, f->cap * sizeof *f->lines);
        if (!f->lines)
            abort();
    }
    f->lines[f->nlines++] = ink_xstrdup(line);
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* The next line the session emitted (tool calls answer from worker
 * threads), or NULL after timeout_ms. */
static const char *next_line(fx *f, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&f->mu);
    while (f->taken == f->nlines) {
        if (pthread_cond_timedwait(&f->cv, &f->mu, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&f->mu);
            return NULL;
        }
    }
    const char *line = f->lines[f->taken++];
    pthread_mutex_unlock(&f->mu);
    return line;
}

static void sendf(fx *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sendf(fx *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *raw = NULL;
    assert_true(vasprintf(&raw, fmt, ap) >= 0);
    va_end(ap);
    cleanup_free char *text = test_requote(raw);
    free(raw);
    assert_int_equal(ink_mcp_session_handle(f->ses, text, strlen(text)), 0);
}

/* The response to request id; notifications before it go to f->notes. */
static json_t *response(fx *f, int id)
{
    for (;;) {
        const char *line = next_line(f, WAIT_MS);
        if (!line)
            fail_msg("timed out waiting for the response to request %d", id);
        json_error_t jerr;
        json_t *m = json_loads(line, 0, &jerr);
        if (!m)
            fail_msg("emitted line is not JSON: %s (%s)", line, jerr.text);
        keep(f, m);
        json_t *mid = json_object_get(m, "id");
        if (!mid) {
            json_array_append(f->notes, m);
            continue;
        }
        assert_int_equal(json_integer_value(mid), id);
        f->last_line = line;
        return m;
    }
}

static void new_session(fx *f, const ink_caller *who)
{
    ink_mcp_session_free(f->ses);
    f->ses = ink_mcp_session_new(ink_tools_server(f->tools), emit, f, (void *)who);
    int id = ++f->next_id;
    sendf(f,
          "{'jsonrpc':'2.0','id':%d,'method':'initialize','params':{'protocolVersion':'%s',"
          "'capabilities':{},'clientInfo':{'name':'test','version':'1'}}}",
          id, INK_MCP_LATEST_VERSION);
    assert_non_null(json_object_get(response(f, id), "result"));
    sendf(f, "{'jsonrpc':'2.0','method':'notifications/initialized'}");
}

/* tools/call name with arguments (single-quoted JSON); returns the
 * CallToolResult. meta: extra params member text, e.g.
 * ",'_meta':{'progressToken':'p'}", or "". */
static json_t *call_meta(fx *f, const char *name, const char *args, const char *meta)
{
    int id = ++f->next_id;
    sendf(f,
          "{'jsonrpc':'2.0','id':%d,'method':'tools/call','params':{'name':'%s','arguments':%s%s}}",
          id, name, args, meta);
    json_t *m = response(f, id);
    json_t *r = json_object_get(m, "result");
    if (!r)
        fail_msg("tools/call %s: no result: %s", name, f->last_line);
    return r;
}

static json_t *call(fx *f, const char *name, const char *args)
{
    return call_meta(f, name, args, "");
}

static bool is_error(const json_t *r)
{
    return json_is_true(json_object_get(r, "isError"));
}

static const char *text_of(const json_t *r)
{
    const char *t = json_string_value(
        json_object_get(json_array_get(json_object_get(r, "content"), 0), "text"));
    assert_non_null(t);
    return t;
}

/* A result that must have succeeded; returns its structuredContent. */
static json_t *ok(fx *f, const json_t *r)
{
    if (is_error(r))
        fail_msg("tool error: %s", text_of(r));
    json_t *sc = json_object_get(r, "structuredContent");
    assert_non_null(sc);
    return sc;
}

/* A result that must be a tool error holding want; returns its text. */
static const char *err_with(const json_t *r, const char *want)
{
    if (!is_error(r))
        fail_msg("expected a tool error with '%s', got %s", want, json_dumps(r, JSON_COMPACT));
    const char *t = text_of(r);
    if (!strstr(t, want))
        fail_msg("tool error '%s' does not say '%s'", t, want);
    return t;
}

static void make_key(fx *f, const char *project, ink_key_role role, char *key)
{
    ink_err err = {0};
    if (ink_keys_create(f->store, project, role, "test", ink_now_ms(), key, NULL, &err) < 0)
        fail_msg("%s", err.msg);
}

static const ink_caller *caller_of(fx *f, const char *key)
{
    const ink_caller *who = NULL;
    ink_err err = {0};
    assert_int_equal(ink_tools_verify_key(f->tools, key, &who, &err), 1);
    assert_non_null(who);
    return who;
}

/* (Re)starts the tools; recheck_key as in ink_tools_ctx. Sessions end. */
static void start_tools(fx *f, int64_t deploy_wait_ms, const char *recheck_key)
{
    ink_mcp_session_free(f->ses);
    f->ses = NULL;
    ink_tools_free(f->tools);
    f->cfg.deploy_wait_ms = deploy_wait_ms;
    ink_tools_ctx ctx = {
        .store = f->store, .cfg = &f->cfg, .threads = 3, .recheck_key = recheck_key};
    ink_err err = {0};
    f->tools = ink_tools_new(&ctx, &err);
    if (!f->tools)
        fail_msg("ink_tools_new: %s", err.msg);
    f->deployer = caller_of(f, f->deployer_key);
    f->reader = caller_of(f, f->reader_key);
    f->other = caller_of(f, f->other_key);
}

static int setup(void **state)
{
    fx *f = ink_xcalloc(1, sizeof *f);
    if (test_mkdtemp(f->dir, sizeof f->dir, "tools") < 0)
        return -1;
    snprintf(f->db, sizeof f->db, "%s/ink.db", f->dir);
    ink_err err = {0};
    if (ink_config_defaults(ink_coordinator_options, &f->cfg, &err) < 0 ||
        ink_config_set(ink_coordinator_options, &f->cfg, "database", f->db, &err) < 0 ||
        ink_config_set(ink_coordinator_options, &f->cfg, "insecure_dev", "true", &err) < 0 ||
        ink_store_open(f->db, &f->store, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->notes = json_array();
    *state = f;
    make_key(f, "demo", INK_ROLE_DEPLOYER, f->deployer_key);
    make_key(f, "demo", INK_ROLE_READER, f->reader_key);
    make_key(f, "other", INK_ROLE_DEPLOYER, f->other_key);
    start_tools(f, 1000, NULL);
    new_session(f, f->deployer);
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    ink_mcp_session_free(f->ses);
    ink_tools_free(f->tools);
    ink_store_close(f->store);
    ink_config_free(ink_coordinator_options, &f->cfg);
    for (size_t i = 0; i < f->nkeep; i++)
        json_decref(f->keep[i]);
    json_decref(f->notes);
    for (size_t i = 0; i < f->nlines; i++)
        free(f->lines[i]);
    free(f->lines);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

/* The audit log, oldest first. */
typedef struct audit_rows {
    ink_audit_row *rows;
    size_t n;
} audit_rows;

static audit_rows audit(fx *f)
{
    audit_rows a = {0};
    ink_err err = {0};
    assert_int_equal(ink_audit_list(f->store, 0, &a.rows, &a.n, &err), 0);
    return a;
}

/* Rows written by tools (keys.create rows come from the fixture). */
static size_t tool_rows(const audit_rows *a)
{
    size_t n = 0;
    for (size_t i = 0; i < a->n; i++)
        n += strcmp(a->rows[i].tool, "keys.create") != 0;
    return n;
}

static const ink_audit_row *last_row(const audit_rows *a)
{
    assert_true(a->n > 0);
    return &a->rows[a->n - 1];
}

#define WEB_ARGS                                                                                   \
    "{'name':'web','image':'nginx:1.27','port':80,'env':{'MODE':'prod'},"                          \
    "'secret_env':{'DB_PASSWORD':'" SECRET "'}}"

/* ------------------------------------------------------------- tools/list */

static const struct {
    const char *name;
    bool ro, destructive, idempotent;
} expected_tools[] = {
    {"create_app", false, false, true},     {"list_apps", true, false, true},
    {"get_app_details", true, false, true}, {"update_app", false, true, true},
    {"delete_app", false, true, true},      {"restart_app", false, true, false},
    {"get_app_logs", true, false, true},    {"get_app_metrics", true, false, true},
    {"exec_command", false, true, false},   {"create_resource", false, false, false},
    {"list_resources", true, false, true},  {"delete_resource", false, true, true},
    {"list_nodes", true, false, true},      {"get_operation", true, false, true},
};

static void check_tools_list(fx *f)
{
    int id = ++f->next_id;
    sendf(f, "{'jsonrpc':'2.0','id':%d,'method':'tools/list'}", id);
    json_t *r = json_object_get(response(f, id), "result");
    json_t *tools = json_object_get(r, "tools");
    assert_null(json_object_get(r, "nextCursor"));
    assert_int_equal(json_array_size(tools), INK_ARRAY_LEN(expected_tools));
    size_t i;
    json_t *t;
    bool seen[INK_ARRAY_LEN(expected_tools)] = {0};
    json_array_foreach(tools, i, t)
    {
        const char *name = json_string_value(json_object_get(t, "name"));
        assert_non_null(name);
        const char *desc = json_string_value(json_object_get(t, "description"));
        assert_non_null(desc);
        assert_true(strlen(desc) > 40);
        assert_null(strstr(desc, "{wait}"));
        assert_non_null(json_string_value(json_object_get(t, "title")));
        json_t *in = json_object_get(t, "inputSchema"), *out = json_object_get(t, "outputSchema");
        assert_string_equal(json_string_value(json_object_get(in, "type")), "object");
        assert_true(json_is_false(json_object_get(in, "additionalProperties")));
        assert_string_equal(json_string_value(json_object_get(out, "type")), "object");
        assert_non_null(json_object_get(out, "required"));
        json_t *ann = json_object_get(t, "annotations");
        bool found = false;
        for (size_t k = 0; k < INK_ARRAY_LEN(expected_tools); k++) {
            if (strcmp(expected_tools[k].name, name) != 0)
                continue;
            found = true;
            seen[k] = true;
            assert_true(json_is_boolean(json_object_get(ann, "readOnlyHint")));
            assert_int_equal(json_is_true(json_object_get(ann, "readOnlyHint")),
                             expected_tools[k].ro);
            assert_int_equal(json_is_true(json_object_get(ann, "destructiveHint")),
                             expected_tools[k].destructive);
            assert_int_equal(json_is_true(json_object_get(ann, "idempotentHint")),
                             expected_tools[k].idempotent);
        }
        if (!found)
            fail_msg("unexpected tool %s", name);
    }
    for (size_t k = 0; k < INK_ARRAY_LEN(expected_tools); k++)
        if (!seen[k])
            fail_msg("tool %s missing", expected_tools[k].name);
}

static void test_tools_list(void **state)
{
    fx *f = *state;
    check_tools_list(f);
    /* A reader sees every tool too, annotated: the refusal is per call. */
    new_session(f, f->reader);
    check_tools_list(f);
}

/* ------------------------------------------------------------- who may call */

static void test_reader_refused(void **state)
{
    fx *f = *state;
    new_session(f, f->reader);
    const char *t = err_with(call(f, "create_app", WEB_ARGS), "'reader' role");
    assert_non_null(strstr(t, "create_app needs a key with the 'deployer' role"));
    assert_non_null(strstr(t, "list_apps"));
    err_with(call(f, "exec_command", "{'name':'web','command':['ls']}"), "'reader' role");
    err_with(call(f, "delete_resource", "{'name':'data'}"), "'reader' role");

    /* Refusals are audited, with the key and redacted arguments. */
    audit_rows a = audit(f);
    assert_int_equal(tool_rows(&a), 3);
    const ink_audit_row *first = &a.rows[a.n - 3];
    assert_string_equal(first->tool, "create_app");
    assert_string_equal(first->key_id, f->reader->key_id);
    assert_string_equal(first->project, "demo");
    assert_true(strncmp(first->result, "error: this API key has the 'reader' role", 41) == 0);
    assert_non_null(strstr(first->arguments, "DB_PASSWORD"));
    assert_null(strstr(first->arguments, SECRET));
    ink_audit_free_rows(a.rows, a.n);

    /* Nothing was created. */
    json_t *app = NULL;
    ink_err err = {0};
    assert_int_equal(ink_apps_get(f->store, "demo", "web", &app, &err), -1);
    assert_int_equal(err.errnum, INK_APPS_ENOTFOUND);

    /* Read-only tools work, and are not audited. */
    json_t *list = ok(f, call(f, "list_apps", "{}"));
    assert_int_equal(json_array_size(json_object_get(list, "apps")), 0);
    ok(f, call(f, "list_nodes", "{}"));
    a = audit(f);
    assert_int_equal(tool_rows(&a), 3);
    ink_audit_free_rows(a.rows, a.n);
}

static void test_project_mismatch(void **state)
{
    fx *f = *state;
    const char *want = "this key belongs to project 'demo'";
    err_with(call(f, "create_app", "{'name':'web','image':'nginx','port':80,'project':'other'}"),
             want);
    err_with(call(f, "list_apps", "{'project':'other'}"), want);
    err_with(call(f, "create_resource", "{'type':'volume','name':'v','project':'other'}"), want);
    /* The key's own project may be named. */
    ok(f, call(f, "list_apps", "{'project':'demo'}"));

    audit_rows a = audit(f);
    assert_int_equal(tool_rows(&a), 2); /* the two mutating calls */
    assert_string_equal(last_row(&a)->tool, "create_resource");
    assert_non_null(strstr(a.rows[a.n - 2].result, want));
    ink_audit_free_rows(a.rows, a.n);

    /* And a key of another project sees none of demo's apps. */
    ok(f, call(f, "create_app", "{'name':'web','image':'nginx','port':80}"));
    new_session(f, f->other);
    json_t *list = ok(f, call(f, "list_apps", "{}"));
    assert_int_equal(json_array_size(json_object_get(list, "apps")), 0);
    err_with(call(f, "get_app_details", "{'name':'web'}"), "no app named 'web'");
    err_with(call(f, "delete_app", "{'name':'web'}"), "no app named 'web'");
}

/* ------------------------------------------------------------- arguments */

static void test_create_bad_args(void **state)
{
    fx *f = *state;
    /* Refused by the input schema: never reach the tool. */
    err_with(call(f, "create_app", "{'name':'web','port':80}"), "image");
    err_with(call(f, "create_app", "{'name':'web','image':'nginx','port':70000}"), "port");
    err_with(call(f, "create_app", "{'name':'web','image':'nginx','port':80,'cpu':0}"), "cpu");
    err_with(call(f, "create_app", "{'name':'web','image':'nginx','port':80,'colour':'red'}"),
             "colour");
    err_with(call(f, "create_app", "{'name':'web','image':'nginx','port':80,'env':{'A':1}}"),
             "env");
    err_with(call(f, "create_app",
                  "{'name':'web','image':'nginx','port':80,'min_replicas':0,'idle_timeout_s':5}"),
             "idle_timeout_s");
    /* Refused by the app layer. */
    assert_true(is_error(call(f, "create_app", "{'name':'Bad_Name','image':'nginx','port':80}")));
    err_with(call(f, "create_app",
                  "{'name':'web','image':'nginx','port':80,'env':{'K':'a'},'secret_env':{'K':'"
                  "b-long-secret'}}"),
             "'K'");
    assert_null(strstr(f->last_line, "b-long-secret"));

    json_t *list = ok(f, call(f, "list_apps", "{}"));
    assert_int_equal(json_array_size(json_object_get(list, "apps")), 0);
    audit_rows a = audit(f);
    /* Every mutating call is audited: the six the schema refused (before
     * any tool code ran) and the app layer's two refusals. */
    assert_int_equal(tool_rows(&a), 8);
    assert_string_equal(a.rows[a.n - 8].result,
                        "refused: invalid arguments: arguments.image: required property missing");
    assert_string_equal(a.rows[a.n - 8].tool, "create_app");
    assert_non_null(a.rows[a.n - 8].key_id);
    assert_non_null(strstr(a.rows[a.n - 4].result, "refused: invalid arguments: arguments.env"));
    assert_non_null(
        strstr(a.rows[a.n - 3].result, "refused: invalid arguments: arguments.idle_timeout_s"));
    assert_true(strncmp(last_row(&a)->result, "error: ", 7) == 0);
    assert_null(strstr(last_row(&a)->arguments, "b-long-secret"));
    ink_audit_free_rows(a.rows, a.n);

    err_with(call(f, "get_app_logs", "{'name':'web','since':'yesterday'}"), "RFC 3339");
    err_with(call(f, "get_app_logs", "{'name':'web','tail':5000}"), "tail");
    err_with(call(f, "exec_command", "{'name':'web','command':[]}"), "command");
    err_with(call(f, "exec_command", "{'name':'web','command':['ls'],'timeout_s':301}"),
             "timeout_s");
    /* Read-only tools' refusals are not audited; exec_command's are. */
    a = audit(f);
    assert_int_equal(tool_rows(&a), 10);
    assert_string_equal(last_row(&a)->tool, "exec_command");
    ink_audit_free_rows(a.rows, a.n);
}

/* ------------------------------------------------------------- deployments */

static void test_create_deploying(void **state)
{
    fx *f = *state;
    int64_t t0 = ink_mono_ms();
    json_t *r = call_meta(f, "create_app", WEB_ARGS, ",'_meta':{'progressToken':'tok'}");
    json_t *sc = ok(f, r);
    /* No controller runs: the wait (1 s here) ends first. */
    assert_true(ink_mono_ms() - t0 >= 900);
    assert_string_equal(json_string_value(json_object_get(sc, "app")), "web");
    assert_string_equal(json_string_value(json_object_get(sc, "status")), "deploying");
    assert_true(json_is_null(json_object_get(sc, "url")));
    const char *op = json_string_value(json_object_get(sc, "operation_id"));
    assert_non_null(op);
    assert_non_null(strstr(text_of(r), "get_operation"));
    assert_null(strstr(f->last_line, SECRET));
    /* At least the first progress notification, with our token. */
    assert_true(json_array_size(f->notes) >= 1);
    json_t *p = json_object_get(json_array_get(f->notes, 0), "params");
    assert_string_equal(json_string_value(json_object_get(p, "progressToken")), "tok");
    assert_int_equal(json_integer_value(json_object_get(p, "total")), 100);

    /* The operation, the list and the details validate against their
     * output schemas. */
    char args[256];
    snprintf(args, sizeof args, "{'operation_id':'%s'}", op);
    json_t *o = ok(f, call(f, "get_operation", args));
    assert_string_equal(json_string_value(json_object_get(o, "status")), "running");
    assert_string_equal(json_string_value(json_object_get(o, "kind")), "create_app");
    json_t *list = ok(f, call(f, "list_apps", "{}"));
    assert_int_equal(json_array_size(json_object_get(list, "apps")), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(list, "apps"), 0), "app")),
        "web");
    json_t *d = ok(f, call(f, "get_app_details", "{'name':'web'}"));
    assert_null(strstr(f->last_line, SECRET));
    json_t *sec = json_object_get(d, "secret_env");
    assert_int_equal(json_array_size(sec), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(sec, 0), "name")),
                        "DB_PASSWORD");
    assert_string_equal(json_string_value(json_object_get(json_object_get(d, "env"), "MODE")),
                        "prod");

    /* The same request again is the same operation (idempotent). */
    sc = ok(f, call(f, "create_app", WEB_ARGS));
    assert_string_equal(json_string_value(json_object_get(sc, "operation_id")), op);

    /* Update with a new secret: neither value anywhere. */
    ok(f, call(f, "update_app", "{'name':'web','secret_env':{'DB_PASSWORD':'" SECRET2 "'}}"));
    assert_null(strstr(f->last_line, SECRET2));
    ok(f, call(f, "get_app_details", "{'name':'web'}"));
    assert_null(strstr(f->last_line, SECRET2));
    assert_null(strstr(f->last_line, SECRET));

    audit_rows a = audit(f);
    assert_int_equal(tool_rows(&a), 3);
    for (size_t i = 0; i < a.n; i++) {
        assert_null(strstr(a.rows[i].arguments, SECRET));
        assert_null(strstr(a.rows[i].arguments, SECRET2));
        assert_null(strstr(a.rows[i].result, SECRET));
    }
    assert_string_equal(last_row(&a)->tool, "update_app");
    assert_string_equal(last_row(&a)->result, "ok");
    assert_string_equal(last_row(&a)->key_id, f->deployer->key_id);
    /* The audit entry and what a reader sees carry the same keyed
     * fingerprint of the secret, and neither its plain SHA-256. */
    char keyed[17], plain[17];
    assert_int_equal(ink_store_fingerprint(f->store, SECRET2, strlen(SECRET2), keyed), 0);
    cleanup_free char *want = ink_xasprintf("{\"DB_PASSWORD\":{\"fingerprint\":\"%s\"}}", keyed);
    assert_non_null(strstr(last_row(&a)->arguments, want));
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)SECRET2, strlen(SECRET2), md);
    ink_hex(md, 8, plain);
    assert_null(strstr(last_row(&a)->arguments, plain));
    ink_audit_free_rows(a.rows, a.n);
    new_session(f, f->reader);
    d = ok(f, call(f, "get_app_details", "{'name':'web'}"));
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(d, "secret_env"), 0), "fingerprint")),
                        keyed);
    assert_null(strstr(f->last_line, plain));
    assert_null(strstr(f->last_line, SECRET2));
    new_session(f, f->deployer);

    /* restart and delete answer with their own statuses. */
    sc = ok(f, call(f, "restart_app", "{'name':'web'}"));
    assert_string_equal(json_string_value(json_object_get(sc, "status")), "restarting");
    sc = ok(f, call(f, "delete_app", "{'name':'web'}"));
    assert_string_equal(json_string_value(json_object_get(sc, "status")), "deleting");
    err_with(call(f, "restart_app", "{'name':'nope'}"), "no app named 'nope'");
}

static void test_cancel_wait(void **state)
{
    fx *f = *state;
    start_tools(f, 60000, NULL);
    new_session(f, f->deployer);
    int id = ++f->next_id;
    sendf(f,
          "{'jsonrpc':'2.0','id':%d,'method':'tools/call','params':{'name':'create_app',"
          "'arguments':{'name':'slow','image':'nginx','port':80}}}",
          id);
    /* Let a worker take it and hand it to the ticker. */
    int64_t end = ink_mono_ms() + WAIT_MS;
    json_t *app = NULL;
    ink_err err = {0};
    while (ink_apps_get(f->store, "demo", "slow", &app, &err) < 0) {
        assert_true(ink_mono_ms() < end);
        usleep(10000);
    }
    json_decref(app);
    assert_false(ink_mcp_session_wait_idle(f->ses, 200));
    sendf(f, "{'jsonrpc':'2.0','method':'notifications/cancelled','params':{'requestId':%d}}", id);
    assert_true(ink_mcp_session_wait_idle(f->ses, 5000));
    /* The ticker drops the call within a tick or two, without a word. */
    usleep(300000);
    assert_null(next_line(f, 0));
    /* The app was created (and audited) all the same. */
    audit_rows a = audit(f);
    assert_string_equal(last_row(&a)->tool, "create_app");
    assert_string_equal(last_row(&a)->result, "ok");
    ink_audit_free_rows(a.rows, a.n);
}

/* ------------------------------------------------------------- agents */

static void add_node(fx *f, const char *id, const char *endpoint)
{
    Ink__V1__Capacity cap = INK__V1__CAPACITY__INIT;
    cap.cpus = 4;
    cap.memory_bytes = 8ULL << 30;
    Ink__V1__RegisterRequest r = INK__V1__REGISTER_REQUEST__INIT;
    r.node_id = (char *)id;
    r.hostname = (char *)id;
    r.agent_endpoint = (char *)endpoint;
    r.capacity = &cap;
    r.instance_id = "i1";
    r.public_address = "127.0.0.1";
    ink_err err = {0};
    assert_int_equal(ink_store_register_node(f->store, &r, ink_now_ms(), &err), 0);
}

static void report_state(fx *f, const char *node, const char **workloads, size_t n,
                         Ink__V1__WorkloadStatus__State state)
{
    Ink__V1__WorkloadStatus ws[4];
    Ink__V1__WorkloadStatus *ptrs[4];
    assert_true(n <= 4);
    for (size_t i = 0; i < n; i++) {
        ink__v1__workload_status__init(&ws[i]);
        ws[i].workload_id = (char *)workloads[i];
        ws[i].generation = 1;
        ws[i].state = state;
        ws[i].since_unix_ms = ink_now_ms();
        ptrs[i] = &ws[i];
    }
    Ink__V1__ReportStatusRequest r = INK__V1__REPORT_STATUS_REQUEST__INIT;
    r.node_id = (char *)node;
    r.instance_id = "i1";
    r.workloads = ptrs;
    r.n_workloads = n;
    ink_err err = {0};
    assert_int_equal(ink_store_report_status(f->store, &r, ink_now_ms(), &err), 0);
}

static void report_running(fx *f, const char *node, const char **workloads, size_t n)
{
    report_state(f, node, workloads, n, INK__V1__WORKLOAD_STATUS__STATE__RUNNING);
}

static void test_node_unreachable(void **state)
{
    fx *f = *state;
    json_t *nodes = ok(f, call(f, "list_nodes", "{}"));
    assert_int_equal(json_array_size(json_object_get(nodes, "nodes")), 0);
    add_node(f, "n1", "127.0.0.1:1"); /* nobody listens there */
    nodes = ok(f, call(f, "list_nodes", "{}"));
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(nodes, "nodes"), 0), "status")),
                        "ready");

    ok(f, call(f, "create_app", "{'name':'web','image':'nginx','port':80}"));
    /* Not placed yet: no replica to run in, and no logs or metrics. */
    err_with(call(f, "exec_command", "{'name':'web','command':['ls']}"), "no running replica");
    json_t *logs = ok(f, call(f, "get_app_logs", "{'name':'web'}"));
    assert_int_equal(json_array_size(json_object_get(logs, "lines")), 0);
    ok(f, call(f, "get_app_metrics", "{'name':'web'}"));

    ink_controller_opts co = {.node_timeout_ms = 20000,
                              .node_lost_ms = 60000,
                              .place_grace_ms = 15000,
                              .probe_timeout_ms = 200};
    assert_true(ink_controller_pass(f->store, &co, ink_now_ms()) >= 0);
    json_t *d = ok(f, call(f, "get_app_details", "{'name':'web'}"));
    json_t *reps = json_object_get(d, "replica_status");
    assert_int_equal(json_array_size(reps), 1);
    const char *rid = json_string_value(json_object_get(json_array_get(reps, 0), "id"));
    assert_non_null(rid);
    assert_string_equal(json_string_value(json_object_get(json_array_get(reps, 0), "node")), "n1");
    report_running(f, "n1", &rid, 1);

    /* Every agent call goes to 127.0.0.1:1: refused at once. */
    err_with(call(f, "get_app_logs", "{'name':'web','since':'10m'}"), "node n1 is unreachable");
    err_with(call(f, "get_app_metrics", "{'name':'web'}"), "node n1 is unreachable");
    err_with(call(f, "exec_command", "{'name':'web','command':['ls'],'timeout_s':1}"),
             "node n1 is unreachable");
    audit_rows a = audit(f);
    assert_string_equal(last_row(&a)->tool, "exec_command");
    assert_true(strncmp(last_row(&a)->result, "error: node n1 is unreachable", 29) == 0);
    ink_audit_free_rows(a.rows, a.n);
}

/* ------------------------------------------------------------- egress */

static void test_egress(void **state)
{
    fx *f = *state;
    /* Refused by the input schema. */
    err_with(call(f, "create_app", "{'name':'web','image':'nginx','port':80,'egress':''}"),
             "egress");
    err_with(
        call(f, "create_app", "{'name':'web','image':'nginx','port':80,'egress_allow':'a.com'}"),
        "egress_allow");
    /* Refused by the app layer, saying what to fix. */
    err_with(call(f, "create_app",
                  "{'name':'web','image':'nginx','port':80,'egress':'allowlist',"
                  "'egress_allow':['10.0.0.1/8']}"),
             "egress_allow entry '10.0.0.1/8': host bits are set; did you mean 10.0.0.0/8?");
    err_with(call(f, "create_app", "{'name':'web','image':'nginx','port':80,'egress':'allowlist'}"),
             "egress 'allowlist' needs egress_allow");
    err_with(call(f, "create_app",
                  "{'name':'web','image':'nginx','port':80,'egress_allow':['api.example.com']}"),
             "egress_allow only applies with egress 'allowlist'");
    err_with(call(f, "create_app", "{'name':'web','image':'nginx','port':80,'egress':'No_Such'}"),
             "egress 'No_Such' is not a policy name");
    json_t *list = ok(f, call(f, "list_apps", "{}"));
    assert_int_equal(json_array_size(json_object_get(list, "apps")), 0);

    /* Accepted and shown in canonical form. */
    ok(f, call(f, "create_app",
               "{'name':'web','image':'nginx','port':80,'egress':'allowlist',"
               "'egress_allow':['API.example.com:443','203.0.113.7']}"));
    json_t *r = call(f, "get_app_details", "{'name':'web'}");
    json_t *d = ok(f, r);
    assert_string_equal(json_string_value(json_object_get(d, "egress")), "allowlist");
    json_t *allow = json_object_get(d, "egress_allow");
    assert_int_equal(json_array_size(allow), 2);
    assert_string_equal(json_string_value(json_array_get(allow, 0)), "203.0.113.7");
    assert_string_equal(json_string_value(json_array_get(allow, 1)), "api.example.com:443");
    assert_non_null(strstr(text_of(r), "Egress: allowlist to 203.0.113.7, api.example.com:443"));
    list = ok(f, call(f, "list_apps", "{}"));
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(list, "apps"), 0), "egress")),
                        "allowlist");

    /* Blocked packets per replica, in the view (checked against the output
     * schema) and its text. */
    add_node(f, "n1", "127.0.0.1:1");
    ink_controller_opts co = {.node_timeout_ms = 20000,
                              .node_lost_ms = 60000,
                              .place_grace_ms = 15000,
                              .probe_timeout_ms = 200};
    assert_true(ink_controller_pass(f->store, &co, ink_now_ms()) >= 0);
    d = ok(f, call(f, "get_app_details", "{'name':'web'}"));
    char rid[64];
    snprintf(rid, sizeof rid, "%s",
             json_string_value(
                 json_object_get(json_array_get(json_object_get(d, "replica_status"), 0), "id")));
    Ink__V1__EgressBlocked eb = INK__V1__EGRESS_BLOCKED__INIT, *ebp = &eb;
    eb.category = "metadata";
    eb.packets = 3;
    Ink__V1__WorkloadStatus ws = INK__V1__WORKLOAD_STATUS__INIT, *wsp = &ws;
    ws.workload_id = rid;
    ws.generation = 1;
    ws.state = INK__V1__WORKLOAD_STATUS__STATE__RUNNING;
    ws.egress_blocked = &ebp;
    ws.n_egress_blocked = 1;
    Ink__V1__ReportStatusRequest rep = INK__V1__REPORT_STATUS_REQUEST__INIT;
    rep.node_id = "n1";
    rep.instance_id = "i1";
    rep.workloads = &wsp;
    rep.n_workloads = 1;
    ink_err err = {0};
    assert_int_equal(ink_store_report_status(f->store, &rep, ink_now_ms(), &err), 0);
    assert_int_equal(ink_apps_note_egress(f->store, &rep, ink_now_ms(), &err), 0);
    r = call(f, "get_app_details", "{'name':'web'}");
    d = ok(f, r);
    json_t *r0 = json_array_get(json_object_get(d, "replica_status"), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(r0, "egress_blocked"), "metadata")), 3);
    assert_non_null(strstr(text_of(r), "egress blocked: 3 metadata"));
    char want[128];
    snprintf(want, sizeof want, "replica %s on node n1: egress blocked 3 packets (metadata)", rid);
    assert_non_null(strstr(text_of(r), want));

    /* Back to the default: the entries go with the policy. */
    ok(f, call(f, "update_app", "{'name':'web','egress':'default'}"));
    d = ok(f, call(f, "get_app_details", "{'name':'web'}"));
    assert_string_equal(json_string_value(json_object_get(d, "egress")), "default");
    assert_int_equal(json_array_size(json_object_get(d, "egress_allow")), 0);
    assert_int_equal(json_integer_value(json_object_get(d, "generation")), 2);
}

/* ------------------------------------------------------------- a fake agent */

/* AgentService as a node serves it, over mutual TLS with the test PKI:
 * logs, exec and metrics answered from fixed data; an exec of "hang" is
 * never answered, until the client cancels it. */
static struct fake_agent {
    pthread_mutex_t mu;
    int64_t t0;
    char caller[64];    /* CN of the last caller */
    char exec_cmd[256]; /* argv joined with spaces */
    uint32_t exec_timeout_s, tail;
    int hangs_over;    /* hung execs whose client went away */
    int history_asked; /* GetMetrics calls with history */
    char sleepy[64];   /* this replica is asleep, with a history */
} agent;

static void fake_logs(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    const Ink__V1__GetLogsRequest *req = (const Ink__V1__GetLogsRequest *)msg;
    pthread_mutex_lock(&agent.mu);
    snprintf(agent.caller, sizeof agent.caller, "%s", ink_rpc_call_peer_name(call));
    agent.tail = req->tail;
    int64_t t0 = agent.t0;
    pthread_mutex_unlock(&agent.mu);
    /* Replica ids end in hex: odd and even ones get interleaved times. */
    int odd = req->workload_id[strlen(req->workload_id) - 1] % 2;
    static const struct {
        int64_t dt;
        int stream;
        const char *line;
        size_t len;
    } lines[] = {
        {10, INK__V1__LOG_ENTRY__STREAM__STDOUT, "listening on :80\n", 17},
        {30, INK__V1__LOG_ENTRY__STREAM__STDERR, "bad byte \xff and a NUL \0 here", 27},
        {50, INK__V1__LOG_ENTRY__STREAM__SYSTEM, "replica restarted", 17},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(lines); i++) {
        Ink__V1__LogEntry e = INK__V1__LOG_ENTRY__INIT;
        e.unix_ms = t0 + lines[i].dt + (odd ? 5 : 0);
        e.stream = lines[i].stream;
        e.line = (ProtobufCBinaryData){lines[i].len, (uint8_t *)lines[i].line};
        ink_rpc_send(call, &e.base);
    }
    ink_rpc_finish(call, GRPC_STATUS_OK, "%s", "");
}

static void hang_over(ink_rpc_call *call, void *arg)
{
    pthread_mutex_lock(&agent.mu);
    agent.hangs_over++;
    pthread_mutex_unlock(&agent.mu);
    ink_rpc_call_unref(call);
}

static void fake_exec(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    const Ink__V1__ExecRequest *req = (const Ink__V1__ExecRequest *)msg;
    pthread_mutex_lock(&agent.mu);
    agent.exec_cmd[0] = '\0';
    for (size_t i = 0; i < req->n_command; i++) {
        size_t len = strlen(agent.exec_cmd);
        snprintf(agent.exec_cmd + len, sizeof agent.exec_cmd - len, "%s%s", i ? " " : "",
                 req->command[i]);
    }
    agent.exec_timeout_s = req->timeout_s;
    pthread_mutex_unlock(&agent.mu);
    if (req->n_command && strcmp(req->command[0], "hang") == 0) {
        ink_rpc_call_ref(call);
        ink_rpc_call_on_done(call, hang_over, NULL);
        return;
    }
    Ink__V1__ExecResponse resp = INK__V1__EXEC_RESPONSE__INIT;
    resp.stdout = (ProtobufCBinaryData){9, (uint8_t *)"out\0put\xfe\n"};
    resp.stderr = (ProtobufCBinaryData){5, (uint8_t *)"oops\n"};
    resp.exit_code = 3;
    ink_rpc_reply(call, &resp.base);
}

/* agent.sleepy is asleep, has been woken and has a history of three
 * samples; any other replica is on a node that says nothing of sleep
 * (state unset, no samples). */
static void fake_metrics(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    const Ink__V1__GetMetricsRequest *req = (const Ink__V1__GetMetricsRequest *)msg;
    Ink__V1__WorkloadMetrics m = INK__V1__WORKLOAD_METRICS__INIT, other = m;
    m.workload_id = req->workload_id;
    m.cpu_ns = 2500000000ULL;
    m.memory_bytes = 10 << 20;
    m.pids = 4;
    m.rx_bytes = 100;
    m.tx_bytes = 200;
    m.last_activity_unix_ms = agent.t0;
    Ink__V1__MetricsSample h[3];
    Ink__V1__MetricsSample *hp[3];
    pthread_mutex_lock(&agent.mu);
    agent.history_asked += req->history;
    bool sleepy = strcmp(req->workload_id, agent.sleepy) == 0;
    pthread_mutex_unlock(&agent.mu);
    if (sleepy) {
        m.state = INK__V1__WORKLOAD_STATUS__STATE__SLEEPING;
        m.sleeps = 3;
        m.wakes = 2;
        m.last_wake_ms = 412;
        m.connections_active = 1;
        static const struct {
            uint64_t cpu_ns, memory_mb, rx, tx;
            int state;
        } v[3] = {
            {1000000000, 10, 0, 0, INK__V1__WORKLOAD_STATUS__STATE__RUNNING},
            {1500000000, 12, 1000, 500, INK__V1__WORKLOAD_STATUS__STATE__RUNNING},
            {3500000000, 11, 3000, 500, INK__V1__WORKLOAD_STATUS__STATE__SLEEPING},
        };
        for (size_t i = 0; i < 3 && req->history; i++) {
            ink__v1__metrics_sample__init(&h[i]);
            h[i].unix_ms = agent.t0 + (int64_t)i * 10000;
            h[i].cpu_ns = v[i].cpu_ns;
            h[i].memory_bytes = v[i].memory_mb << 20;
            h[i].rx_bytes = v[i].rx;
            h[i].tx_bytes = v[i].tx;
            h[i].state = v[i].state;
            hp[i] = &h[i];
        }
        m.history = hp;
        m.n_history = req->history ? 3 : 0;
    }
    other.workload_id = "someone-else";
    other.cpu_ns = 1;
    Ink__V1__WorkloadMetrics *ws[] = {&other, &m};
    Ink__V1__GetMetricsResponse resp = INK__V1__GET_METRICS_RESPONSE__INIT;
    resp.workloads = ws;
    resp.n_workloads = 2;
    ink_rpc_reply(call, &resp.base);
}

static const ink_rpc_method fake_methods[] = {
    {"/ink.v1.AgentService/GetLogs", &ink__v1__get_logs_request__descriptor, true, fake_logs},
    {"/ink.v1.AgentService/Exec", &ink__v1__exec_request__descriptor, false, fake_exec},
    {"/ink.v1.AgentService/GetMetrics", &ink__v1__get_metrics_request__descriptor, false,
     fake_metrics},
};

static void test_agent_calls(void **state)
{
    fx *f = *state;
    test_pki pki;
    test_pki_create(&pki, "tools");
    memset(&agent, 0, sizeof agent);
    pthread_mutex_init(&agent.mu, NULL);
    agent.t0 = 1795000000000;
    ink_tls_files tls = {pki.ca, pki.node_crt, pki.node_key};
    ink_rpc_server_opts so = {.listen = "127.0.0.1:0",
                              .tls = &tls,
                              .methods = fake_methods,
                              .nmethods = INK_ARRAY_LEN(fake_methods)};
    ink_err err = {0};
    ink_rpc_server *srv = ink_rpc_server_start(&so, &err);
    if (!srv)
        fail_msg("fake agent: %s", err.msg);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "127.0.0.1:%d", ink_rpc_server_port(srv));

    /* The coordinator's side of mutual TLS; the agent is node n1. */
    ink_config_set(ink_coordinator_options, &f->cfg, "insecure_dev", "false", &err);
    ink_config_set(ink_coordinator_options, &f->cfg, "tls_ca", pki.ca, &err);
    ink_config_set(ink_coordinator_options, &f->cfg, "tls_cert", pki.coord_crt, &err);
    ink_config_set(ink_coordinator_options, &f->cfg, "tls_key", pki.coord_key, &err);
    start_tools(f, 1000, NULL);
    new_session(f, f->deployer);
    add_node(f, "n1", endpoint);
    ok(f, call(f, "create_app", "{'name':'web','image':'nginx','port':80,'replicas':2}"));
    ink_controller_opts co = {.node_timeout_ms = 20000,
                              .node_lost_ms = 60000,
                              .place_grace_ms = 15000,
                              .probe_timeout_ms = 200};
    assert_true(ink_controller_pass(f->store, &co, ink_now_ms()) >= 0);
    json_t *reps =
        json_object_get(ok(f, call(f, "get_app_details", "{'name':'web'}")), "replica_status");
    assert_int_equal(json_array_size(reps), 2);
    const char *ids[2];
    for (size_t i = 0; i < 2; i++)
        ids[i] = json_string_value(json_object_get(json_array_get(reps, i), "id"));
    report_running(f, "n1", ids, 2);
    snprintf(agent.sleepy, sizeof agent.sleepy, "%s", ids[0]);

    /* Logs: both replicas, merged by time, made text; tail is the newest. */
    json_t *r = call(f, "get_app_logs", "{'name':'web','tail':4}");
    json_t *logs = ok(f, r);
    assert_string_equal(agent.caller, "ink-coordinator");
    assert_int_equal(agent.tail, 4);
    json_t *lines = json_object_get(logs, "lines");
    assert_int_equal(json_array_size(lines), 4);
    assert_true(json_is_true(json_object_get(logs, "truncated")));
    int64_t prev = 0;
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        int64_t ms = 0;
        const char *t = json_string_value(json_object_get(l, "time"));
        assert_non_null(t);
        /* ...30.xxxZ: the seconds and millis grow */
        ms = atoll(strrchr(t, '.') + 1) + 1000 * atoll(strrchr(t, ':') + 1);
        assert_true(ms >= prev);
        prev = ms;
    }
    const json_t *first = json_array_get(lines, 0);
    assert_string_equal(json_string_value(json_object_get(first, "stream")), "stderr");
    assert_string_equal(json_string_value(json_object_get(first, "line")),
                        "bad byte \xef\xbf\xbd and a NUL \xef\xbf\xbd here");
    const json_t *last = json_array_get(lines, 3);
    assert_string_equal(json_string_value(json_object_get(last, "stream")), "system");
    assert_string_equal(json_string_value(json_object_get(last, "line")), "replica restarted");
    assert_non_null(strstr(text_of(r), "[ink] replica restarted"));
    ok(f, call(f, "get_app_logs", "{'name':'web','since':'2026-01-02T15:04:05.5+01:00'}"));

    /* Exec: in the first running replica, output made text. */
    r = call(f, "exec_command", "{'name':'web','command':['sh','-c','echo hi'],'timeout_s':7}");
    json_t *x = ok(f, r);
    assert_string_equal(agent.exec_cmd, "sh -c echo hi");
    assert_int_equal(agent.exec_timeout_s, 7);
    assert_int_equal(json_integer_value(json_object_get(x, "exit_code")), 3);
    assert_string_equal(json_string_value(json_object_get(x, "stdout")),
                        "out\xef\xbf\xbdput\xef\xbf\xbd\n");
    assert_string_equal(json_string_value(json_object_get(x, "stderr")), "oops\n");
    assert_true(json_is_false(json_object_get(x, "timed_out")));
    assert_non_null(strstr(text_of(r), "Exit code 3"));
    audit_rows a = audit(f);
    assert_string_equal(last_row(&a)->tool, "exec_command");
    assert_string_equal(last_row(&a)->result, "ok");
    ink_audit_free_rows(a.rows, a.n);

    /* Metrics: the replica's own entry, per replica and in total. */
    r = call(f, "get_app_metrics", "{'name':'web'}");
    json_t *mt = ok(f, r);
    json_t *mr = json_object_get(mt, "replicas");
    assert_int_equal(json_array_size(mr), 2);
    assert_true(json_real_value(json_object_get(json_array_get(mr, 0), "cpu_seconds")) == 2.5);
    json_t *tot = json_object_get(mt, "totals");
    assert_true(json_real_value(json_object_get(tot, "cpu_seconds")) == 5.0);
    assert_true(json_real_value(json_object_get(tot, "memory_mb")) == 20.0);
    assert_int_equal(json_integer_value(json_object_get(tot, "tx_bytes")), 400);
    /* Asked with history; each replica's sleep figures and samples, rates
     * between samples. */
    assert_int_equal(agent.history_asked, 2);
    json_t *sleepy = NULL, *plain = NULL;
    json_array_foreach(mr, i, l)
    {
        if (strcmp(json_string_value(json_object_get(l, "id")), agent.sleepy) == 0)
            sleepy = l;
        else
            plain = l;
    }
    assert_non_null(sleepy);
    assert_non_null(plain);
    {
        assert_string_equal(json_string_value(json_object_get(sleepy, "state")), "sleeping");
        assert_int_equal(json_integer_value(json_object_get(sleepy, "sleeps")), 3);
        assert_int_equal(json_integer_value(json_object_get(sleepy, "wakes")), 2);
        assert_int_equal(json_integer_value(json_object_get(sleepy, "last_wake_ms")), 412);
        assert_int_equal(json_integer_value(json_object_get(sleepy, "connections_active")), 1);
        json_t *h = json_object_get(sleepy, "history");
        assert_int_equal(json_array_size(h), 3);
        json_t *h0 = json_array_get(h, 0), *h1 = json_array_get(h, 1), *h2 = json_array_get(h, 2);
        assert_string_equal(json_string_value(json_object_get(h0, "time")),
                            "2026-11-18T11:06:40.000Z");
        assert_string_equal(json_string_value(json_object_get(h2, "time")),
                            "2026-11-18T11:07:00.000Z");
        assert_true(json_is_null(json_object_get(h0, "cpu_cores")));
        assert_true(json_is_null(json_object_get(h0, "rx_bytes_per_s")));
        assert_true(json_is_null(json_object_get(h0, "tx_bytes_per_s")));
        assert_true(json_real_value(json_object_get(h0, "memory_mb")) == 10.0);
        assert_true(json_real_value(json_object_get(h1, "cpu_cores")) == 0.05);
        assert_true(json_real_value(json_object_get(h1, "rx_bytes_per_s")) == 100.0);
        assert_true(json_real_value(json_object_get(h1, "tx_bytes_per_s")) == 50.0);
        assert_true(json_real_value(json_object_get(h2, "cpu_cores")) == 0.2);
        assert_true(json_real_value(json_object_get(h2, "tx_bytes_per_s")) == 0.0);
        assert_true(json_real_value(json_object_get(h2, "memory_mb")) == 11.0);
        assert_string_equal(json_string_value(json_object_get(h1, "state")), "running");
        assert_string_equal(json_string_value(json_object_get(h2, "state")), "sleeping");
    }
    {
        /* The node said no state: the coordinator's. No wake, no samples. */
        assert_string_equal(json_string_value(json_object_get(plain, "state")), "running");
        assert_true(json_is_null(json_object_get(plain, "last_wake_ms")));
        assert_int_equal(json_array_size(json_object_get(plain, "history")), 0);
    }
    const char *t = text_of(r);
    if (!strstr(t, "history over the last 0 min (3 samples): CPU avg 0.125 cores, max 0.200; "
                   "memory max 12.0 MiB; network in 150 B/s, out 25 B/s on average\n") ||
        !strstr(t, ", sleeping: CPU 2.50 s used") ||
        !strstr(t, "slept 3 times, woken 2 times (last wake took 412 ms)") ||
        !strstr(t, "history: no samples yet"))
        fail_msg("get_app_metrics text: %s", t);

    /* A cancelled exec cancels the call to the node at once. */
    int id = ++f->next_id;
    sendf(f,
          "{'jsonrpc':'2.0','id':%d,'method':'tools/call','params':{'name':'exec_command',"
          "'arguments':{'name':'web','command':['hang'],'timeout_s':300}}}",
          id);
    int64_t end = ink_mono_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&agent.mu);
        bool started = strcmp(agent.exec_cmd, "hang") == 0;
        pthread_mutex_unlock(&agent.mu);
        if (started)
            break;
        assert_true(ink_mono_ms() < end);
        usleep(10000);
    }
    sendf(f, "{'jsonrpc':'2.0','method':'notifications/cancelled','params':{'requestId':%d}}", id);
    assert_true(ink_mcp_session_wait_idle(f->ses, 5000));
    for (;;) {
        pthread_mutex_lock(&agent.mu);
        int over = agent.hangs_over;
        pthread_mutex_unlock(&agent.mu);
        if (over)
            break;
        assert_true(ink_mono_ms() < end);
        usleep(10000);
    }
    /* The tools' threads are idle again: a call goes through. */
    ok(f, call(f, "get_app_metrics", "{'name':'web'}"));

    ink_mcp_session_free(f->ses);
    f->ses = NULL;
    ink_tools_free(f->tools);
    f->tools = NULL;
    ink_rpc_server_stop(srv, 1000);
    pthread_mutex_destroy(&agent.mu);
    test_pki_destroy(&pki);
}

/* ------------------------------------------------------------- scale to zero */

/* Ends the app's running operation as the controller would once its URL
 * answered (nothing answers HTTP here). */
static void finish_operations(fx *f)
{
    sqlite3 *db = ink_store_lock(f->store);
    int rc = sqlite3_exec(db, "UPDATE operations SET status = 'succeeded' WHERE status = 'running'",
                          NULL, NULL, NULL);
    ink_store_unlock(f->store);
    assert_int_equal(rc, SQLITE_OK);
}

/* An app that scales to zero: idle_timeout_s through the tools, and the
 * sleeping and waking statuses in views that validate against the output
 * schemas. */
static void test_sleeping_app(void **state)
{
    fx *f = *state;
    add_node(f, "n1", "127.0.0.1:1");
    ok(f, call(f, "create_app",
               "{'name':'web','image':'nginx','port':80,'min_replicas':0,'idle_timeout_s':60}"));
    ink_controller_opts co = {.node_timeout_ms = 20000,
                              .node_lost_ms = 60000,
                              .place_grace_ms = 15000,
                              .probe_timeout_ms = 200};
    assert_true(ink_controller_pass(f->store, &co, ink_now_ms()) >= 0);
    json_t *d = ok(f, call(f, "get_app_details", "{'name':'web'}"));
    const char *rid = json_string_value(
        json_object_get(json_array_get(json_object_get(d, "replica_status"), 0), "id"));
    assert_non_null(rid);
    char id[64];
    snprintf(id, sizeof id, "%s", rid);
    const char *ids[] = {id};
    report_state(f, "n1", ids, 1, INK__V1__WORKLOAD_STATUS__STATE__SLEEPING);
    finish_operations(f);

    json_t *r = call(f, "get_app_details", "{'name':'web'}");
    d = ok(f, r);
    assert_string_equal(json_string_value(json_object_get(d, "status")), "sleeping");
    assert_int_equal(json_integer_value(json_object_get(d, "idle_timeout_s")), 60);
    assert_int_equal(json_integer_value(json_object_get(d, "ready_replicas")), 1);
    assert_true(json_is_string(json_object_get(d, "url")));
    assert_non_null(strstr(text_of(r), "Scale to zero: a replica idle for 60 s sleeps"));
    assert_non_null(strstr(text_of(r), ": sleeping: idle for 60s"));
    json_t *list = ok(f, call(f, "list_apps", "{}"));
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(list, "apps"), 0), "status")),
                        "sleeping");

    report_state(f, "n1", ids, 1, INK__V1__WORKLOAD_STATUS__STATE__WAKING);
    d = ok(f, call(f, "get_app_details", "{'name':'web'}"));
    assert_string_equal(json_string_value(json_object_get(d, "status")), "waking");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(d, "replica_status"), 0), "state")),
                        "waking");

    /* An update of the timeout alone is accepted and rolls. */
    ok(f, call(f, "update_app", "{'name':'web','idle_timeout_s':3600}"));
    d = ok(f, call(f, "get_app_details", "{'name':'web'}"));
    assert_int_equal(json_integer_value(json_object_get(d, "idle_timeout_s")), 3600);
    assert_int_equal(json_integer_value(json_object_get(d, "generation")), 2);
    err_with(call(f, "update_app", "{'name':'web','idle_timeout_s':90000}"), "idle_timeout_s");
    /* An app that never sleeps shows none. */
    ok(f, call(f, "create_app", "{'name':'api','image':'nginx','port':80}"));
    d = ok(f, call(f, "get_app_details", "{'name':'api'}"));
    assert_true(json_is_null(json_object_get(d, "idle_timeout_s")));
}

/* ------------------------------------------------------------- resources */

static void test_resources(void **state)
{
    fx *f = *state;
    const char *t = err_with(call(f, "create_resource", "{'type':'postgres','name':'db'}"), "not");
    assert_non_null(strstr(t, "volume"));
    json_t *r = ok(f, call(f, "create_resource", "{'type':'volume','name':'data','size_mb':64}"));
    assert_string_equal(json_string_value(json_object_get(r, "resource")), "data");
    json_t *l = ok(f, call(f, "list_resources", "{}"));
    assert_int_equal(json_array_size(json_object_get(l, "resources")), 1);
    ok(f, call(f, "delete_resource", "{'name':'data'}"));
    l = ok(f, call(f, "list_resources", "{}"));
    assert_int_equal(json_array_size(json_object_get(l, "resources")), 0);
    audit_rows a = audit(f);
    assert_int_equal(tool_rows(&a), 3);
    assert_string_equal(last_row(&a)->tool, "delete_resource");
    assert_string_equal(last_row(&a)->result, "ok");
    ink_audit_free_rows(a.rows, a.n);
}

/* ------------------------------------------------------------- keys */

static void test_authenticate(void **state)
{
    fx *f = *state;
    char h[256];
    snprintf(h, sizeof h, "Bearer %s", f->deployer_key);
    assert_ptr_equal(ink_tools_authenticate(f->tools, h), f->deployer);
    snprintf(h, sizeof h, "bearer   %s  ", f->deployer_key);
    assert_ptr_equal(ink_tools_authenticate(f->tools, h), f->deployer);
    snprintf(h, sizeof h, "Bearer %s", f->reader_key);
    assert_ptr_equal(ink_tools_authenticate(f->tools, h), f->reader);
    assert_ptr_not_equal(f->reader, f->deployer);
    assert_string_equal(f->reader->project, "demo");
    assert_int_equal(f->reader->role, INK_ROLE_READER);

    assert_null(ink_tools_authenticate(f->tools, NULL));
    assert_null(ink_tools_authenticate(f->tools, ""));
    assert_null(ink_tools_authenticate(f->tools, f->deployer_key)); /* no scheme */
    snprintf(h, sizeof h, "Basic %s", f->deployer_key);
    assert_null(ink_tools_authenticate(f->tools, h));
    snprintf(h, sizeof h, "Bearer %s", f->deployer_key);
    h[strlen(h) - 1] = h[strlen(h) - 1] == '0' ? '1' : '0'; /* wrong secret */
    assert_null(ink_tools_authenticate(f->tools, h));
    assert_null(ink_tools_authenticate(f->tools, "Bearer ink_0123"));

    /* Revocation takes effect on the next request. */
    ink_err err = {0};
    assert_int_equal(ink_keys_revoke(f->store, f->deployer->key_id, ink_now_ms(), &err), 0);
    snprintf(h, sizeof h, "Bearer %s", f->deployer_key);
    assert_null(ink_tools_authenticate(f->tools, h));
}

/* stdio verifies its one key before every call. */
static void test_recheck_key(void **state)
{
    fx *f = *state;
    start_tools(f, 1000, f->deployer_key);
    new_session(f, f->deployer);
    ok(f, call(f, "list_apps", "{}"));
    ink_err err = {0};
    assert_int_equal(ink_keys_revoke(f->store, f->deployer->key_id, ink_now_ms(), &err), 0);
    err_with(call(f, "list_apps", "{}"), "no longer valid");
    err_with(call(f, "create_app", "{'name':'web','image':'nginx','port':80}"), "no longer valid");
    audit_rows a = audit(f);
    assert_string_equal(last_row(&a)->tool, "create_app");
    assert_non_null(strstr(last_row(&a)->result, "no longer valid"));
    ink_audit_free_rows(a.rows, a.n);
}

int main(void)
{
    test_block_sigpipe();
    ink_log_init("test", INK_LOG_ERROR, INK_LOG_LOGFMT);
    ink_rpc_init();
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_tools_list),       T(test_reader_refused),   T(test_project_mismatch),
        T(test_create_bad_args),  T(test_create_deploying), T(test_cancel_wait),
        T(test_node_unreachable), T(test_agent_calls),      T(test_resources),
        T(test_authenticate),     T(test_recheck_key),      T(test_egress),
        T(test_sleeping_app),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    ink_rpc_shutdown();
    return rc;
}
