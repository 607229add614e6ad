/* Unit tests for coordinator/mcp: a session driven message by message with
 * a capturing emit function and three test tools (echo answers at once,
 * slow answers from its own thread with progress and log notifications,
 * waiter runs until cancelled), asserting on the exact JSON emitted; the
 * schema validator on its own; and the stdio transport over pipes. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "mcp.h"
#include "testlib.h"
#include "util.h"

/* Generous: the valgrind variant runs everything many times slower. */
#define WAIT_MS 15000
#define MAX_THREADS 256
#define MAX_KEEP 1024

/* ------------------------------------------------------------- capture */

/* Lines a session emitted, in order; the test takes them one by one. */
typedef struct capture {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char **lines;
    size_t n, cap, taken;
    atomic_int done_calls; /* sink done callbacks seen */
} capture;

static void cap_init(capture *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
}

static void cap_destroy(capture *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->lines[i]);
    free(c->lines);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

static void cap_emit(void *arg, const char *line)
{
    capture *c = arg;
    pthread_mutex_lock(&c->mu);
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->lines = realloc(c->lines, c->cap * sizeof *c->lines);
    }
    c->lines[c->n++] = ink_xstrdup(line);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void cap_done(void *arg)
{
    capture *c = arg;
    atomic_fetch_add(&c->done_calls, 1);
}

static size_t cap_pending(capture *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->n - c->taken;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ------------------------------------------------------------- fixture */

typedef struct fx {
    ink_mcp_server *srv;
    ink_mcp_session *ses;
    capture cap;
    const char *auth;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool gate_open; /* slow waits for it before answering */
    pthread_t threads[MAX_THREADS];
    int nthreads;

    atomic_int echo_calls, waiter_started, waiter_saw_cancel;
    atomic_int invalid_calls; /* on_invalid hook */
    char last_invalid[256];   /* its last message */
    json_t *keep[MAX_KEEP];   /* everything parsed, freed at teardown */
    size_t nkeep;
} fx;

static json_t *keep(fx *f, json_t *j)
{
    assert_non_null(j);
    assert_true(f->nkeep < MAX_KEEP);
    f->keep[f->nkeep++] = j;
    return j;
}

static json_t *J(fx *f, const char *text)
{
    cleanup_free char *t = test_requote(text);
    json_error_t jerr;
    json_t *j = json_loads(t, JSON_DECODE_ANY, &jerr);
    if (!j)
        fail_msg("bad test JSON %s: %s", t, jerr.text);
    return keep(f, j);
}

/* Next emitted message, waiting for it (calls answer from other threads). */
static json_t *next_msg(fx *f)
{
    capture *c = &f->cap;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&c->mu);
    while (c->taken == c->n) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&c->mu);
            fail_msg("timed out waiting for a message");
        }
    }
    const char *line = c->lines[c->taken++];
    pthread_mutex_unlock(&c->mu);
    /* One message per line: nothing may break it. */
    assert_null(strchr(line, '\n'));
    json_error_t jerr;
    json_t *j = json_loads(line, 0, &jerr);
    if (!j)
        fail_msg("emitted line is not JSON: %s (%s)", line, jerr.text);
    assert_string_equal(json_string_value(json_object_get(j, "jsonrpc")), "2.0");
    return keep(f, j);
}

static void expect_none(fx *f)
{
    size_t n = cap_pending(&f->cap);
    if (n)
        fail_msg("%zu unexpected message(s), first: %s", n, f->cap.lines[f->cap.taken]);
}

static void assert_json_eq(const json_t *got, const json_t *want)
{
    if (!json_equal(got, want)) {
        cleanup_free char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
        cleanup_free char *w = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
        fail_msg("JSON differs:\n got  %s\n want %s", g ? g : "(null)", w ? w : "(null)");
    }
}

static int sendf(fx *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Formats a message (single quotes for double), hands it to the session. */
static int sendf(fx *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *raw = NULL;
    assert_true(vasprintf(&raw, fmt, ap) >= 0);
    va_end(ap);
    cleanup_free char *text = test_requote(raw);
    free(raw);
    return ink_mcp_session_handle(f->ses, text, strlen(text));
}

/* The next message must be the response to id_json; returns its result. */
static json_t *expect_result(fx *f, const char *id_json)
{
    json_t *m = next_msg(f);
    assert_json_eq(json_object_get(m, "id"), J(f, id_json));
    if (json_object_get(m, "error"))
        fail_msg("expected a result, got %s", json_dumps(m, JSON_COMPACT));
    json_t *r = json_object_get(m, "result");
    assert_non_null(r);
    return r;
}

/* The next message must be an error response; returns its message. */
static const char *expect_error(fx *f, const char *id_json, int code)
{
    json_t *m = next_msg(f);
    assert_json_eq(json_object_get(m, "id"), J(f, id_json));
    assert_null(json_object_get(m, "result"));
    json_t *e = json_object_get(m, "error");
    assert_non_null(e);
    assert_int_equal(json_integer_value(json_object_get(e, "code")), code);
    const char *msg = json_string_value(json_object_get(e, "message"));
    assert_non_null(msg);
    return msg;
}

/* The next message must be a notification; returns its params. */
static json_t *expect_notification(fx *f, const char *method)
{
    json_t *m = next_msg(f);
    assert_null(json_object_get(m, "id"));
    assert_string_equal(json_string_value(json_object_get(m, "method")), method);
    return json_object_get(m, "params");
}

static void wait_flag(atomic_int *flag)
{
    int64_t end = ink_mono_ms() + WAIT_MS;
    while (!atomic_load(flag)) {
        if (ink_mono_ms() > end)
            fail_msg("timed out waiting for a tool thread");
        usleep(1000);
    }
}

/* ----------------------------------------------------------------- tools */

#define ECHO_INPUT                                                                                 \
    "{'type':'object','properties':{"                                                              \
    "'name':{'type':'string','minLength':1,'maxLength':10},"                                       \
    "'count':{'type':'integer','minimum':1,'maximum':5},"                                          \
    "'env':{'type':'object','additionalProperties':{'type':'string'}},"                            \
    "'tags':{'type':'array','items':{'type':'string'},'maxItems':3},"                              \
    "'mode':{'enum':['fast','safe']}},"                                                            \
    "'required':['name'],'additionalProperties':false}"
#define ECHO_OUTPUT                                                                                \
    "{'type':'object','properties':{'greeting':{'type':'string'}},'required':['greeting'],"        \
    "'additionalProperties':false}"
#define SLOW_OUTPUT "{'type':'object','properties':{'done':{'type':'boolean'}},'required':['done']}"

static void echo_handler(ink_mcp_call *c, const json_t *args, void *ctx)
{
    fx *f = ctx;
    atomic_fetch_add(&f->echo_calls, 1);
    const char *name = json_string_value(json_object_get(args, "name"));
    if (strcmp(name, "fail") == 0) {
        ink_mcp_call_error(c, "cannot greet %s: no such person", name);
    } else if (strcmp(name, "utf8") == 0) {
        ink_mcp_call_error(c, "bad \xff byte");
    } else if (strcmp(name, "broken") == 0) {
        ink_mcp_call_result(c, json_pack("{s:i}", "greeting", 42), "broken");
    } else {
        char text[64];
        snprintf(text, sizeof text, "greeting %s", name);
        ink_mcp_call_log(c, "info", text);
        char greeting[128];
        snprintf(greeting, sizeof greeting, "hello %s from %s", name,
                 (const char *)ink_mcp_call_auth(c));
        snprintf(text, sizeof text, "greeted %s", name);
        ink_mcp_call_result(c, json_pack("{s:s}", "greeting", greeting), text);
    }
}

typedef struct job {
    fx *f;
    ink_mcp_call *call;
} job;

static void spawn(fx *f, ink_mcp_call *c, void *(*fn)(void *))
{
    job *j = ink_xcalloc(1, sizeof *j);
    j->f = f;
    j->call = c;
    pthread_mutex_lock(&f->mu);
    if (f->nthreads >= MAX_THREADS || pthread_create(&f->threads[f->nthreads], NULL, fn, j) != 0)
        abort();
    f->nthreads++;
    pthread_mutex_unlock(&f->mu);
}

/* No cmocka assertions on these threads: they cannot unwind a test. */
static void *slow_thread(void *arg)
{
    job *j = arg;
    fx *f = j->f;
    ink_mcp_call *c = j->call;
    free(j);
    pthread_mutex_lock(&f->mu);
    while (!f->gate_open)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    ink_mcp_call_progress(c, 1, 3, "pulling");
    ink_mcp_call_progress(c, 2, 3, "starting");
    ink_mcp_call_progress(c, 2, 3, "not growing: dropped");
    ink_mcp_call_log(c, "debug", "debug detail");
    ink_mcp_call_log(c, "info", "app ready");
    ink_mcp_call_progress(c, 3, 3, NULL);
    ink_mcp_call_result(c, json_pack("{s:b}", "done", 1), "slow done");
    return NULL;
}

static void slow_handler(ink_mcp_call *c, const json_t *args, void *ctx)
{
    spawn(ctx, c, slow_thread);
}

static void *waiter_thread(void *arg)
{
    job *j = arg;
    fx *f = j->f;
    ink_mcp_call *c = j->call;
    free(j);
    atomic_store(&f->waiter_started, 1);
    int64_t end = ink_mono_ms() + WAIT_MS;
    while (!ink_mcp_call_cancelled(c) && ink_mono_ms() < end)
        usleep(1000);
    atomic_store(&f->waiter_saw_cancel, ink_mcp_call_cancelled(c));
    /* All of this must vanish: the call was cancelled. */
    ink_mcp_call_progress(c, 1, 0, "after cancel");
    ink_mcp_call_log(c, "emergency", "after cancel");
    ink_mcp_call_result(c, NULL, "finished anyway");
    return NULL;
}

static void waiter_handler(ink_mcp_call *c, const json_t *args, void *ctx)
{
    spawn(ctx, c, waiter_thread);
}

static void note_invalid(ink_mcp_call *c, const json_t *args, const char *message, void *ctx)
{
    (void)c;
    (void)args;
    fx *f = ctx;
    atomic_fetch_add(&f->invalid_calls, 1);
    snprintf(f->last_invalid, sizeof f->last_invalid, "%s", message);
}

static void add_tool(fx *f, const char *name, const char *title, const char *in, const char *out,
                     void (*handler)(ink_mcp_call *, const json_t *, void *), bool ro)
{
    cleanup_free char *in_j = test_requote(in);
    cleanup_free char *out_j = out ? test_requote(out) : NULL;
    ink_mcp_tool t = {
        .name = name,
        .title = title,
        .description = "a test tool",
        .input_schema_json = in_j,
        .output_schema_json = out_j,
        .read_only = ro,
        .destructive = !ro,
        .idempotent = ro,
        .handler = handler,
        .on_invalid = note_invalid,
        .ctx = f,
    };
    ink_err err = {0};
    if (ink_mcp_server_add_tool(f->srv, &t, &err) < 0)
        fail_msg("add_tool %s: %s", name, err.msg);
}

/* A fresh session; initialized with the given revision unless NULL. */
static void new_session(fx *f, const char *version)
{
    ink_mcp_session_free(f->ses);
    f->ses = ink_mcp_session_new(f->srv, cap_emit, &f->cap, (void *)f->auth);
    if (!version)
        return;
    assert_int_equal(sendf(f,
                           "{'jsonrpc':'2.0','id':0,'method':'initialize','params':{"
                           "'protocolVersion':'%s','capabilities':{},"
                           "'clientInfo':{'name':'test','version':'1'}}}",
                           version),
                     0);
    json_t *r = expect_result(f, "0");
    assert_string_equal(json_string_value(json_object_get(r, "protocolVersion")), version);
    assert_int_equal(sendf(f, "{'jsonrpc':'2.0','method':'notifications/initialized'}"), 0);
    expect_none(f);
}

static void open_gate(fx *f, bool open)
{
    pthread_mutex_lock(&f->mu);
    f->gate_open = open;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void join_threads(fx *f)
{
    for (;;) {
        pthread_mutex_lock(&f->mu);
        if (f->nthreads == 0) {
            pthread_mutex_unlock(&f->mu);
            return;
        }
        pthread_t t = f->threads[--f->nthreads];
        pthread_mutex_unlock(&f->mu);
        pthread_join(t, NULL);
    }
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    cap_init(&f->cap);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->gate_open = true;
    f->auth = "key-1";
    f->srv = ink_mcp_server_new("ink-test", "0.1", "Use the tools.");
    *state = f;
    add_tool(f, "echo", "Echo", ECHO_INPUT, ECHO_OUTPUT, echo_handler, true);
    add_tool(f, "slow", NULL, "{'type':'object'}", SLOW_OUTPUT, slow_handler, false);
    add_tool(f, "waiter", "Waiter", "{'type':'object','additionalProperties':false}", NULL,
             waiter_handler, false);
    new_session(f, INK_MCP_LATEST_VERSION);
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    open_gate(f, true);
    /* Freeing the session first cancels waiters, so every thread ends. */
    ink_mcp_session_free(f->ses);
    join_threads(f);
    ink_mcp_server_free(f->srv);
    for (size_t i = 0; i < f->nkeep; i++)
        json_decref(f->keep[i]);
    cap_destroy(&f->cap);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

/* ------------------------------------------------------------- lifecycle */

static void test_initialize_versions(void **state)
{
    fx *f = *state;
    static const struct {
        const char *asked, *got;
    } cases[] = {
        {"2025-11-25", "2025-11-25"}, {"2025-06-18", "2025-06-18"},
        {"2025-03-26", "2025-03-26"}, {"2024-11-05", "2025-11-25"}, /* not supported: our latest */
        {"someday", "2025-11-25"},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(cases); i++) {
        new_session(f, NULL);
        assert_null(ink_mcp_session_protocol_version(f->ses));
        assert_int_equal(sendf(f,
                               "{'jsonrpc':'2.0','id':'init-%zu','method':'initialize','params':{"
                               "'protocolVersion':'%s','capabilities':{'roots':{}},"
                               "'clientInfo':{'name':'c','version':'9'}}}",
                               i, cases[i].asked),
                         0);
        char id[32];
        snprintf(id, sizeof id, "'init-%zu'", i);
        json_t *r = expect_result(f, id);
        char want[512];
        snprintf(want, sizeof want,
                 "{'protocolVersion':'%s','capabilities':{'tools':{'listChanged':false},"
                 "'logging':{}},'serverInfo':{'name':'ink-test','version':'0.1'},"
                 "'instructions':'Use the tools.'}",
                 cases[i].got);
        assert_json_eq(r, J(f, want));
        assert_string_equal(ink_mcp_session_protocol_version(f->ses), cases[i].got);
    }
    expect_none(f);
}

static void test_initialize_errors(void **state)
{
    fx *f = *state;
    new_session(f, NULL);
    sendf(f, "{'jsonrpc':'2.0','id':1,'method':'initialize','params':{'capabilities':{}}}");
    assert_string_equal(expect_error(f, "1", INK_JSONRPC_INVALID_PARAMS),
                        "initialize: params.protocolVersion must be a string");
    sendf(f, "{'jsonrpc':'2.0','id':2,'method':'initialize','params':['2025-11-25']}");
    assert_string_equal(expect_error(f, "2", INK_JSONRPC_INVALID_PARAMS),
                        "initialize: params must be an object");
    assert_null(ink_mcp_session_protocol_version(f->ses));

    sendf(f, "{'jsonrpc':'2.0','id':3,'method':'initialize','params':{'protocolVersion':'2025-"
             "06-18','capabilities':{},'clientInfo':{'name':'c','version':'1'}}}");
    expect_result(f, "3");
    /* Served before notifications/initialized: the client has what it
     * needs once initialize is answered. */
    sendf(f, "{'jsonrpc':'2.0','id':'early','method':'tools/list'}");
    assert_int_equal(json_array_size(json_object_get(expect_result(f, "'early'"), "tools")), 3);
    sendf(f, "{'jsonrpc':'2.0','id':4,'method':'initialize','params':{'protocolVersion':'2025-"
             "11-25','capabilities':{},'clientInfo':{'name':'c','version':'1'}}}");
    assert_string_equal(expect_error(f, "4", INK_JSONRPC_INVALID_REQUEST),
                        "session already initialized");
    /* The first negotiation stands. */
    assert_string_equal(ink_mcp_session_protocol_version(f->ses), "2025-06-18");
    expect_none(f);
}

static void test_before_initialize(void **state)
{
    fx *f = *state;
    new_session(f, NULL);
    static const char *const methods[] = {"tools/list", "tools/call", "logging/setLevel",
                                          "resources/list"};
    for (size_t i = 0; i < INK_ARRAY_LEN(methods); i++) {
        assert_int_equal(
            sendf(f, "{'jsonrpc':'2.0','id':%zu,'method':'%s','params':{}}", i, methods[i]), 0);
        char id[8];
        snprintf(id, sizeof id, "%zu", i);
        assert_string_equal(expect_error(f, id, INK_JSONRPC_INVALID_REQUEST),
                            "session not initialized: send initialize first");
    }
    /* ping is the one request allowed before initialize. */
    sendf(f, "{'jsonrpc':'2.0','id':'p','method':'ping'}");
    assert_json_eq(expect_result(f, "'p'"), J(f, "{}"));
    /* Notifications never get an answer, not even an error. */
    sendf(f, "{'jsonrpc':'2.0','method':'notifications/initialized'}");
    sendf(f, "{'jsonrpc':'2.0','method':'tools/list'}");
    expect_none(f);
    assert_int_equal(atomic_load(&f->echo_calls), 0);
}

static void test_ping(void **state)
{
    fx *f = *state;
    sendf(f, "{'jsonrpc':'2.0','id':1,'method':'ping'}");
    assert_json_eq(next_msg(f), J(f, "{'jsonrpc':'2.0','id':1,'result':{}}"));
    sendf(f, "{'jsonrpc':'2.0','id':'abc','method':'ping','params':{}}");
    assert_json_eq(next_msg(f), J(f, "{'jsonrpc':'2.0','id':'abc','result':{}}"));
    sendf(f, "{'jsonrpc':'2.0','id':-7,'method':'ping','params':{'_meta':{}}}");
    assert_json_eq(next_msg(f), J(f, "{'jsonrpc':'2.0','id':-7,'result':{}}"));
    expect_none(f);
}

/* ---------------------------------------------------------------- tools/list */

static void test_tools_list_pages(void **state)
{
    fx *f = *state;
    ink_mcp_server_set_page_size(f->srv, 2);
    sendf(f, "{'jsonrpc':'2.0','id':1,'method':'tools/list'}");
    json_t *r = expect_result(f, "1");
    json_t *tools = json_object_get(r, "tools");
    assert_int_equal(json_array_size(tools), 2);
    json_t *echo = json_array_get(tools, 0);
    json_t *want = J(f, "{'name':'echo','title':'Echo','description':'a test tool',"
                        "'inputSchema':" ECHO_INPUT ",'outputSchema':" ECHO_OUTPUT ","
                        "'annotations':{'title':'Echo','readOnlyHint':true,"
                        "'destructiveHint':false,'idempotentHint':true}}");
    assert_json_eq(echo, want);
    json_t *slow = json_array_get(tools, 1);
    assert_json_eq(slow, J(f, "{'name':'slow','description':'a test tool',"
                              "'inputSchema':{'type':'object'},'outputSchema':" SLOW_OUTPUT ","
                              "'annotations':{'readOnlyHint':false,'destructiveHint':true,"
                              "'idempotentHint':false}}"));
    const char *cursor = json_string_value(json_object_get(r, "nextCursor"));
    assert_non_null(cursor);

    sendf(f, "{'jsonrpc':'2.0','id':2,'method':'tools/list','params':{'cursor':'%s'}}", cursor);
    r = expect_result(f, "2");
    tools = json_object_get(r, "tools");
    assert_int_equal(json_array_size(tools), 1);
    /* No output schema: no outputSchema. */
    assert_json_eq(json_array_get(tools, 0),
                   J(f, "{'name':'waiter','title':'Waiter','description':'a test tool',"
                        "'inputSchema':{'type':'object','additionalProperties':false},"
                        "'annotations':{'title':'Waiter','readOnlyHint':false,"
                        "'destructiveHint':true,'idempotentHint':false}}"));
    assert_null(json_object_get(r, "nextCursor"));

    /* A null cursor is the first page. */
    sendf(f, "{'jsonrpc':'2.0','id':3,'method':'tools/list','params':{'cursor':null}}");
    assert_int_equal(json_array_size(json_object_get(expect_result(f, "3"), "tools")), 2);

    static const char *const bad[] = {"'bogus'", "''", "'t0'", "'t3'", "'t99999999999999999999'",
                                      "'t1x'",   "7",  "{}"};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad); i++) {
        sendf(f, "{'jsonrpc':'2.0','id':%zu,'method':'tools/list','params':{'cursor':%s}}", 10 + i,
              bad[i]);
        char id[8];
        snprintf(id, sizeof id, "%zu", 10 + i);
        assert_string_equal(expect_error(f, id, INK_JSONRPC_INVALID_PARAMS),
                            "tools/list: invalid cursor");
    }

    /* One page holds everything by default. */
    ink_mcp_server_set_page_size(f->srv, INK_MCP_DEFAULT_PAGE_SIZE);
    sendf(f, "{'jsonrpc':'2.0','id':4,'method':'tools/list','params':{}}");
    r = expect_result(f, "4");
    assert_int_equal(json_array_size(json_object_get(r, "tools")), 3);
    assert_null(json_object_get(r, "nextCursor"));
    expect_none(f);
}

static void test_tools_list_2025_03_26(void **state)
{
    fx *f = *state;
    new_session(f, "2025-03-26");
    sendf(f, "{'jsonrpc':'2.0','id':1,'method':'tools/list'}");
    json_t *echo = json_array_get(json_object_get(expect_result(f, "1"), "tools"), 0);
    /* That revision has neither title nor outputSchema on tools; the
     * title lives in the annotations. */
    assert_json_eq(echo, J(f, "{'name':'echo','description':'a test tool',"
                              "'inputSchema':" ECHO_INPUT ","
                              "'annotations':{'title':'Echo','readOnlyHint':true,"
                              "'destructiveHint':false,'idempotentHint':true}}"));
}

/* ---------------------------------------------------------------- tools/call */

static void test_call_sync(void **state)
{
    fx *f = *state;
    sendf(f, "{'jsonrpc':'2.0','id':1,'method':'tools/call','params':{'name':'echo',"
             "'arguments':{'name':'ada','count':2,'env':{'PORT':'80'},'tags':['x'],"
             "'mode':'safe'}}}");
    /* Logged at info, the default level: it goes out before the answer. */
    assert_json_eq(expect_notification(f, "notifications/message"),
                   J(f, "{'level':'info','logger':'echo','data':'greeting ada'}"));
    assert_json_eq(expect_result(f, "1"),
                   J(f, "{'content':[{'type':'text','text':'greeted ada'}],"
                        "'structuredContent':{'greeting':'hello ada from key-1'}}"));
    assert_int_equal(atomic_load(&f->echo_calls), 1);
    assert_true(ink_mcp_session_wait_idle(f->ses, 0));
    expect_none(f);
}

static void test_call_protocol_errors(void **state)
{
    fx *f = *state;
    /* Unknown tools are protocol errors (-32602), as the spec shows. */
    sendf(f, "{'jsonrpc':'2.0','id':1,'method':'tools/call','params':{'name':'nope',"
             "'arguments':{}}}");
    assert_string_equal(expect_error(f, "1", INK_JSONRPC_INVALID_PARAMS), "Unknown tool: nope");
    sendf(f, "{'jsonrpc':'2.0','id':2,'method':'tools/call','params':{'arguments':{}}}");
    assert_string_equal(expect_error(f, "2", INK_JSONRPC_INVALID_PARAMS),
                        "tools/call: params.name must be a string");
    sendf(f, "{'jsonrpc':'2.0','id':3,'method':'tools/call'}");
    assert_string_equal(expect_error(f, "3", INK_JSONRPC_INVALID_PARAMS),
                        "tools/call: params.name must be a string");
    sendf(f, "{'jsonrpc':'2.0','id':4,'method':'tools/call','params':{'name':'echo',"
             "'arguments':['ada']}}");
    assert_string_equal(expect_error(f, "4", INK_JSONRPC_INVALID_PARAMS),
                        "tools/call: params.arguments must be an object");
    sendf(f, "{'jsonrpc':'2.0','id':5,'method':'tools/call','params':{'name':'echo',"
             "'arguments':{'name':'ada'},'_meta':{'progressToken':1.5}}}");
    assert_string_equal(expect_error(f, "5", INK_JSONRPC_INVALID_PARAMS),
                        "tools/call: params._meta.progressToken must be a string or an integer");
    assert_int_equal(atomic_load(&f->echo_calls), 0);
    expect_none(f);
}

static void test_call_invalid_arguments(void **state)
{
    fx *f = *state;
    static const struct {
        const char *args, *msg;
    } cases[] = {
        {"{}", "arguments.name: required property missing"},
        {NULL, "arguments.name: required property missing"},
        {"{'name':'ada','env':{'HOME':'/','PORT':8080}}",
         "arguments.env.PORT: expected string, got integer"},
        {"{'nmae':'ada'}",
         "arguments.nmae: unknown property (expected one of: name, count, env, tags, mode)"},
        {"{'name':'ada','count':9}", "arguments.count: must be <= 5, is 9"},
        {"{'name':'ada','count':0}", "arguments.count: must be >= 1, is 0"},
        {"{'name':'ada','count':2.0}", "arguments.count: expected integer, got number"},
        {"{'name':''}", "arguments.name: must be at least 1 character(s) long, is 0"},
        {"{'name':'abcdefghijk'}", "arguments.name: must be at most 10 character(s) long, is 11"},
        {"{'name':'ada','tags':['a',3]}", "arguments.tags[1]: expected string, got integer"},
        {"{'name':'ada','tags':['a','b','c','d']}",
         "arguments.tags: must have at most 3 item(s), has 4"},
        {"{'name':'ada','mode':'turbo'}", "arguments.mode: must be one of \"fast\", \"safe\""},
        {"{'name':null}", "arguments.name: expected string, got null"},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(cases); i++) {
        if (cases[i].args)
            sendf(f,
                  "{'jsonrpc':'2.0','id':%zu,'method':'tools/call','params':{'name':'echo',"
                  "'arguments':%s}}",
                  i, cases[i].args);
        else
            sendf(f, "{'jsonrpc':'2.0','id':%zu,'method':'tools/call','params':{'name':'echo'}}",
                  i);
        char id[8];
        snprintf(id, sizeof id, "%zu", i);
        json_t *want = keep(f, json_pack("{s:[{s:s,s:s}],s:b}", "content", "type", "text", "text",
                                         cases[i].msg, "isError", 1));
        assert_json_eq(expect_result(f, id), want);
    }
    /* Input errors are tool errors (the model can fix its call), and the
     * handler never saw them; the on_invalid hook (an audit trail) saw each. */
    assert_int_equal(atomic_load(&f->echo_calls), 0);
    assert_int_equal(atomic_load(&f->invalid_calls), (int)INK_ARRAY_LEN(cases));
    assert_string_equal(f->last_invalid, cases[INK_ARRAY_LEN(cases) - 1].msg);
    expect_none(f);
}

static void test_call_tool_error(void **state)
{
    fx *f = *state;
    sendf(f, "{'jsonrpc':'2.0','id':1,'method':'tools/call','params':{'name':'echo',"
             "'arguments':{'name':'fail'}}}");
    assert_json_eq(expect_result(f, "1"),
                   J(f, "{'content':[{'type':'text','text':'cannot greet fail: no such person'}],"
                        "'isError':true}"));
    /* Bytes that are not UTF-8 cannot break the JSON. */
    sendf(f, "{'jsonrpc':'2.0','id':2,'method':'tools/call','params':{'name':'echo',"
             "'arguments':{'name':'utf8'}}}");
    json_t *r = expect_result(f, "2");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(r, "content"), 0), "text")),
                        "bad \xef\xbf\xbd byte");
    expect_none(f);
}

static void test_call_bad_output(void **state)
{
    fx *f = *state;
    sendf(f, "{'jsonrpc':'2.0','id':1,'method':'tools/call','params':{'name':'echo',"
             "'arguments':{'name':'broken'}}}");
    assert_json_eq(expect_result(f, "1"),
                   J(f, "{'content':[{'type':'text','text':'internal error: the result of echo "
                        "does not match its output schema (structuredContent.greeting: "
                        "expected string, got integer)'}],'isError':true}"));
    expect_none(f);
}

static void test_call_async_progress(void **state)
{
    fx *f = *state;
    sendf(f, "{'jsonrpc':'2.0','id':'lvl','method':'logging/setLevel','params':{'level':'debug'}}");
    assert_json_eq(expect_result(f, "'lvl'"), J(f, "{}"));
    assert_int_equal(sendf(f, "{'jsonrpc':'2.0','id':5,'method':'tools/call','params':{"
                              "'name':'slow','arguments':{},'_meta':{'progressToken':'tok-1'}}}"),
                     0);
    assert_json_eq(expect_notification(f, "notifications/progress"),
                   J(f, "{'progressToken':'tok-1','progress':1,'total':3,'message':'pulling'}"));
    assert_json_eq(expect_notification(f, "notifications/progress"),
                   J(f, "{'progressToken':'tok-1','progress':2,'total':3,'message':'starting'}"));
    /* The repeated 2 was dropped: progress must grow. */
    assert_json_eq(expect_notification(f, "notifications/message"),
                   J(f, "{'level':'debug','logger':'slow','data':'debug detail'}"));
    assert_json_eq(expect_notification(f, "notifications/message"),
                   J(f, "{'level':'info','logger':'slow','data':'app ready'}"));
    assert_json_eq(expect_notification(f, "notifications/progress"),
                   J(f, "{'progressToken':'tok-1','progress':3,'total':3}"));
    assert_json_eq(expect_result(f, "5"), J(f, "{'content':[{'type':'text','text':'slow done'}],"
                                               "'structuredContent':{'done':true}}"));
    join_threads(f);
    assert_true(ink_mcp_session_wait_idle(f->ses, WAIT_MS));
    expect_none(f);

    /* An integer token comes back as an integer. */
    sendf(f, "{'jsonrpc':'2.0','id':6,'method':'tools/call','params':{'name':'slow',"
             "'_meta':{'progressToken':42}}}");
    assert_json_eq(expect_notification(f, "notifications/progress"),
                   J(f, "{'progressToken':42,'progress':1,'total':3,'message':'pulling'}"));
    join_threads(f);
    assert_int_equal(cap_pending(&f->cap), 5);
}

static void test_call_async_levels(void **state)
{
    fx *f = *state;
    /* No token: no progress. Default level info: the debug line stays out. */
    sendf(f, "{'jsonrpc':'2.0','id':1,'method':'tools/call','params':{'name':'slow'}}");
    assert_json_eq(expect_notification(f, "notifications/message"),
                   J(f, "{'level':'info','logger':'slow','data':'app ready'}"));
    expect_result(f, "1");
    join_threads(f);
    expect_none(f);

    sendf(f, "{'jsonrpc':'2.0','id':2,'method':'logging/setLevel','params':{'level':'warning'}}");
    expect_result(f, "2");
    sendf(f, "{'jsonrpc':'2.0','id':3,'method':'tools/call','params':{'name':'slow'}}");
    assert_json_eq(expect_result(f, "3"), J(f, "{'content':[{'type':'text','text':'slow done'}],"
                                               "'structuredContent':{'done':true}}"));
    join_threads(f);
    expect_none(f);
}

static void test_set_level_errors(void **state)
{
    fx *f = *state;
    static const char *const bad[] = {"{'level':'verbose'}", "{'level':3}", "{}", "{'level':null}"};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad); i++) {
        sendf(f, "{'jsonrpc':'2.0','id':%zu,'method':'logging/setLevel','params':%s}", i, bad[i]);
        char id[8];
        snprintf(id, sizeof id, "%zu", i);
        assert_string_equal(expect_error(f, id, INK_JSONRPC_INVALID_PARAMS),
                            "logging/setLevel: params.level must be one of debug, info, notice, "
                            "warning, error, critical, alert, emergency");
    }
    static const char *const good[] = {"debug", "info",     "notice", "warning",
                                       "error", "critical", "alert",  "emergency"};
    for (size_t i = 0; i < INK_ARRAY_LEN(good); i++) {
        sendf(f, "{'jsonrpc':'2.0','id':'%s','method':'logging/setLevel','params':{'level':'%s'}}",
              good[i], good[i]);
        char id[32];
        snprintf(id, sizeof id, "'%s'", good[i]);
        assert_json_eq(expect_result(f, id), J(f, "{}"));
    }
    expect_none(f);
}

static void test_cancel(void **state)
{
    fx *f = *state;
    sendf(f, "{'jsonrpc':'2.0','id':7,'method':'tools/call','params':{'name':'waiter',"
             "'_meta':{'progressToken':99}}}");
    wait_flag(&f->waiter_started);
    assert_false(ink_mcp_session_wait_idle(f->ses, 10));
    /* Unknown ids and malformed notifications are ignored. */
    sendf(f, "{'jsonrpc':'2.0','method':'notifications/cancelled','params':{'requestId':12345}}");
    sendf(f, "{'jsonrpc':'2.0','method':'notifications/cancelled','params':{'requestId':'7'}}");
    sendf(f, "{'jsonrpc':'2.0','method':'notifications/cancelled'}");
    assert_false(ink_mcp_session_wait_idle(f->ses, 10));
    sendf(f, "{'jsonrpc':'2.0','method':'notifications/cancelled','params':{'requestId':7,"
             "'reason':'user pressed stop'}}");
    /* The call is no longer owed: the session is idle at once. */
    assert_true(ink_mcp_session_wait_idle(f->ses, WAIT_MS));
    join_threads(f);
    assert_true(atomic_load(&f->waiter_saw_cancel));
    /* Neither the progress, the log line nor the response went out. */
    expect_none(f);
    /* The id is free again. */
    sendf(f, "{'jsonrpc':'2.0','id':7,'method':'ping'}");
    expect_result(f, "7");
    expect_none(f);
}

static void test_duplicate_id(void **state)
{
    fx *f = *state;
    open_gate(f, false);
    sendf(f, "{'jsonrpc':'2.0','id':9,'method':'tools/call','params':{'name':'slow'}}");
    sendf(f, "{'jsonrpc':'2.0','id':9,'method':'ping'}");
    assert_string_equal(expect_error(f, "9", INK_JSONRPC_INVALID_REQUEST),
                        "request id 9 is already in use by a request in progress");
    sendf(f, "{'jsonrpc':'2.0','id':9,'method':'tools/call','params':{'name':'echo',"
             "'arguments':{'name':'x'}}}");
    expect_error(f, "9", INK_JSONRPC_INVALID_REQUEST);
    /* A string id "9" is another id. */
    sendf(f, "{'jsonrpc':'2.0','id':'9','method':'ping'}");
    expect_result(f, "'9'");
    expect_none(f);
    assert_int_equal(atomic_load(&f->echo_calls), 0);

    open_gate(f, true);
    join_threads(f);
    assert_json_eq(expect_notification(f, "notifications/message"),
                   J(f, "{'level':'info','logger':'slow','data':'app ready'}"));
    expect_result(f, "9");
    /* Exactly one response for the call. */
    expect_none(f);
}

/* ------------------------------------------------------------- JSON-RPC */

static void test_unknown_method(void **state)
{
    fx *f = *state;
    sendf(f, "{'jsonrpc':'2.0','id':3,'method':'resources/list'}");
    assert_string_equal(expect_error(f, "3", INK_JSONRPC_METHOD_NOT_FOUND),
                        "Method not found: resources/list");
    sendf(f, "{'jsonrpc':'2.0','method':'notifications/whatever','params':{}}");
    sendf(f, "{'jsonrpc':'2.0','method':'ping'}");
    expect_none(f);
}

static void test_parse_errors(void **state)
{
    fx *f = *state;
    static const char *const bad_json[] = {"{not json", "", "{'jsonrpc':'2.0',}",
                                           "{'jsonrpc':'2.0','id':1,'id':2,'method':'ping'}"};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad_json); i++) {
        assert_int_equal(sendf(f, "%s", bad_json[i]), -1);
        const char *msg = expect_error(f, "null", INK_JSONRPC_PARSE_ERROR);
        assert_true(strncmp(msg, "Parse error: ", 13) == 0);
    }
    /* Valid JSON, but not a message. */
    static const char *const not_msg[] = {"3", "'ping'", "null", "true"};
    for (size_t i = 0; i < INK_ARRAY_LEN(not_msg); i++) {
        assert_int_equal(sendf(f, "%s", not_msg[i]), -1);
        assert_string_equal(expect_error(f, "null", INK_JSONRPC_INVALID_REQUEST),
                            "Invalid Request: a JSON-RPC message must be an object");
    }
    /* Bytes after the message are not a second one. */
    assert_int_equal(sendf(f, "{'jsonrpc':'2.0','id':1,'method':'ping'} x"), -1);
    expect_error(f, "null", INK_JSONRPC_PARSE_ERROR);
    expect_none(f);
}

static void test_invalid_requests(void **state)
{
    fx *f = *state;
    static const struct {
        const char *msg, *id, *why;
    } cases[] = {
        {"{'id':1,'method':'ping'}", "1", "\"jsonrpc\" must be \"2.0\""},
        {"{'jsonrpc':'1.0','id':2,'method':'ping'}", "2", "\"jsonrpc\" must be \"2.0\""},
        {"{'jsonrpc':2.0,'id':3,'method':'ping'}", "3", "\"jsonrpc\" must be \"2.0\""},
        {"{'jsonrpc':'2.0','id':null,'method':'ping'}", "null",
         "\"id\" must be a string or an integer"},
        {"{'jsonrpc':'2.0','id':1.5,'method':'ping'}", "null",
         "\"id\" must be a string or an integer"},
        {"{'jsonrpc':'2.0','id':true,'method':'ping'}", "null",
         "\"id\" must be a string or an integer"},
        {"{'jsonrpc':'2.0','id':{'a':1},'method':'ping'}", "null",
         "\"id\" must be a string or an integer"},
        {"{'jsonrpc':'2.0','id':4,'method':5}", "4", "\"method\" must be a string"},
        {"{'jsonrpc':'2.0','id':5,'method':'ping','params':'x'}", "5",
         "\"params\" must be an object"},
        {"{'jsonrpc':'2.0'}", "null",
         "a JSON-RPC message needs \"method\", or \"result\" or \"error\" with \"id\""},
        {"{'jsonrpc':'2.0','id':6}", "6",
         "a JSON-RPC message needs \"method\", or \"result\" or \"error\" with \"id\""},
        {"{'jsonrpc':'2.0','id':7,'result':{},'error':{}}", "7",
         "a JSON-RPC message needs \"method\", or \"result\" or \"error\" with \"id\""},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(cases); i++) {
        assert_int_equal(sendf(f, "%s", cases[i].msg), -1);
        const char *msg = expect_error(f, cases[i].id, INK_JSONRPC_INVALID_REQUEST);
        char want[256];
        snprintf(want, sizeof want, "Invalid Request: %s", cases[i].why);
        assert_string_equal(msg, want);
    }
    /* Params as an array is JSON-RPC, but no MCP method takes one. */
    assert_int_equal(sendf(f, "{'jsonrpc':'2.0','id':8,'method':'ping','params':[1]}"), 0);
    assert_string_equal(expect_error(f, "8", INK_JSONRPC_INVALID_PARAMS),
                        "ping: params must be an object");

    /* Batches are gone since 2025-06-18. */
    assert_int_equal(sendf(f, "[{'jsonrpc':'2.0','id':9,'method':'ping'}]"), -1);
    assert_string_equal(expect_error(f, "null", INK_JSONRPC_INVALID_REQUEST),
                        "Invalid Request: JSON-RPC batches are not supported in this protocol "
                        "version");
    new_session(f, "2025-06-18");
    assert_int_equal(sendf(f, "[{'jsonrpc':'2.0','id':9,'method':'ping'}]"), -1);
    expect_error(f, "null", INK_JSONRPC_INVALID_REQUEST);
    /* And never before initialize (initialize itself must not be batched). */
    new_session(f, NULL);
    assert_int_equal(sendf(f, "[{'jsonrpc':'2.0','id':9,'method':'ping'}]"), -1);
    expect_error(f, "null", INK_JSONRPC_INVALID_REQUEST);

    /* Responses from the client are not answered: this server asks nothing. */
    assert_int_equal(sendf(f, "{'jsonrpc':'2.0','id':1,'result':{}}"), 0);
    assert_int_equal(sendf(f, "{'jsonrpc':'2.0','id':null,'error':{'code':-32600,'message':'x'}}"),
                     0);
    expect_none(f);
}

/* next_msg() expects an object; batches come as arrays. */
static json_t *next_batch(fx *f)
{
    capture *c = &f->cap;
    int64_t end = ink_mono_ms() + WAIT_MS;
    while (cap_pending(c) == 0) {
        if (ink_mono_ms() > end)
            fail_msg("timed out waiting for a batch");
        usleep(1000);
    }
    pthread_mutex_lock(&c->mu);
    const char *line = c->lines[c->taken++];
    pthread_mutex_unlock(&c->mu);
    assert_null(strchr(line, '\n'));
    json_t *j = json_loads(line, 0, NULL);
    assert_true(json_is_array(j));
    return keep(f, j);
}

static void test_batch(void **state)
{
    fx *f = *state;
    new_session(f, "2025-03-26");
    assert_int_equal(sendf(f, "["
                              "{'jsonrpc':'2.0','id':1,'method':'ping'},"
                              "{'jsonrpc':'2.0','method':'notifications/initialized'},"
                              "{'jsonrpc':'2.0','id':2,'method':'tools/call','params':{"
                              "'name':'echo','arguments':{'name':'bob'}}},"
                              "{'jsonrpc':'2.0','id':3,'method':'bogus/method'},"
                              "{'foo':1},"
                              "{'jsonrpc':'2.0','id':4,'method':'initialize','params':{}}"
                              "]"),
                     0);
    /* Notifications go out as they happen; the responses wait for the
     * last one and leave together, in the order they were answered. */
    expect_notification(f, "notifications/message");
    json_t *b = next_batch(f);
    /* 2025-03-26 has no structuredContent: the data comes as JSON text. */
    assert_json_eq(
        b, J(f, "[{'jsonrpc':'2.0','id':1,'result':{}},"
                "{'jsonrpc':'2.0','id':2,'result':{'content':[{'type':'text','text':'greeted bob'},"
                "{'type':'text','text':'{\\'greeting\\':\\'hello bob from key-1\\'}'}]}},"
                "{'jsonrpc':'2.0','id':3,'error':{'code':-32601,"
                "'message':'Method not found: bogus/method'}},"
                "{'jsonrpc':'2.0','id':null,'error':{'code':-32600,'message':'Invalid Request: "
                "\\'jsonrpc\\' must be \\'2.0\\''}},"
                "{'jsonrpc':'2.0','id':4,'error':{'code':-32600,"
                "'message':'initialize must not be part of a batch'}}]"));
    expect_none(f);

    /* A call answering later holds the batch back until it is in. */
    open_gate(f, false);
    sendf(f, "[{'jsonrpc':'2.0','id':5,'method':'tools/call','params':{'name':'slow'}},"
             "{'jsonrpc':'2.0','id':6,'method':'ping'}]");
    expect_none(f);
    open_gate(f, true);
    join_threads(f);
    expect_notification(f, "notifications/message");
    b = next_batch(f);
    assert_json_eq(b, J(f, "[{'jsonrpc':'2.0','id':6,'result':{}},"
                           "{'jsonrpc':'2.0','id':5,'result':{'content':["
                           "{'type':'text','text':'slow done'},"
                           "{'type':'text','text':'{\\'done\\':true}'}]}}]"));

    /* Only notifications: nothing to answer. */
    sendf(f, "[{'jsonrpc':'2.0','method':'notifications/initialized'}]");
    expect_none(f);
    /* An empty batch is an invalid request. */
    assert_int_equal(sendf(f, "[]"), -1);
    assert_string_equal(expect_error(f, "null", INK_JSONRPC_INVALID_REQUEST),
                        "Invalid Request: empty batch");
    expect_none(f);
}

static void test_oversize(void **state)
{
    fx *f = *state;
    ink_mcp_server_set_max_message(f->srv, 64);
    char msg[128];
    int n = snprintf(msg, sizeof msg,
                     "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{}}");
    char pad[80];
    memset(pad, ' ', sizeof pad);
    /* Exactly 64 bytes passes, 65 does not. */
    cleanup_free char *at = ink_xasprintf("%s%.*s", msg, 64 - n, pad);
    assert_int_equal(strlen(at), 64);
    assert_int_equal(ink_mcp_session_handle(f->ses, at, strlen(at)), 0);
    expect_result(f, "1");
    cleanup_free char *over = ink_xasprintf("%s%.*s", msg, 65 - n, pad);
    assert_int_equal(ink_mcp_session_handle(f->ses, over, strlen(over)), -1);
    assert_string_equal(expect_error(f, "null", INK_JSONRPC_INVALID_REQUEST),
                        "Invalid Request: message larger than 64 bytes");
    expect_none(f);
}

/* ------------------------------------------------------------- lifetimes */

static void test_free_with_call_in_flight(void **state)
{
    fx *f = *state;
    sendf(f, "{'jsonrpc':'2.0','id':8,'method':'tools/call','params':{'name':'waiter'}}");
    wait_flag(&f->waiter_started);
    /* The handler thread still holds its call: the session memory lives
     * until it completes, and nothing more is emitted. */
    ink_mcp_session_free(f->ses);
    f->ses = NULL;
    join_threads(f);
    assert_true(atomic_load(&f->waiter_saw_cancel));
    expect_none(f);
}

static void test_routed(void **state)
{
    fx *f = *state;
    capture other;
    cap_init(&other);
    ink_mcp_sink sink = {.emit = cap_emit, .done = cap_done, .arg = &other};

    /* No request in the message: done before handle returns. */
    const char *note = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";
    assert_int_equal(ink_mcp_session_handle_routed(f->ses, note, strlen(note), &sink), 0);
    assert_int_equal(atomic_load(&other.done_calls), 1);
    assert_int_equal(other.n, 0);

    /* A call's notifications and response follow the message's sink. */
    open_gate(f, false);
    const char *call = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{"
                       "\"name\":\"slow\",\"_meta\":{\"progressToken\":\"t\"}}}";
    assert_int_equal(ink_mcp_session_handle_routed(f->ses, call, strlen(call), &sink), 0);
    assert_int_equal(atomic_load(&other.done_calls), 1);
    open_gate(f, true);
    join_threads(f);
    assert_int_equal(atomic_load(&other.done_calls), 2);
    assert_int_equal(other.n, 5); /* 3 progress, 1 log, 1 response */
    json_t *last = keep(f, json_loads(other.lines[4], 0, NULL));
    assert_json_eq(json_object_get(last, "id"), J(f, "1"));
    expect_none(f); /* the session's own emit saw none of it */

    /* A session freed with a routed call in flight still ends the route. */
    const char *wait = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{"
                       "\"name\":\"waiter\"}}";
    assert_int_equal(ink_mcp_session_handle_routed(f->ses, wait, strlen(wait), &sink), 0);
    wait_flag(&f->waiter_started);
    assert_int_equal(atomic_load(&other.done_calls), 2);
    ink_mcp_session_free(f->ses);
    f->ses = NULL;
    assert_int_equal(atomic_load(&other.done_calls), 3);
    join_threads(f);
    assert_int_equal(other.n, 5);
    cap_destroy(&other);
}

typedef struct feeder {
    fx *f;
    int base;
} feeder;

static void *feeder_main(void *arg)
{
    feeder *fd = arg;
    for (int i = 0; i < 25; i++) {
        char msg[160];
        int n = snprintf(msg, sizeof msg,
                         "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\","
                         "\"params\":{\"name\":\"%s\",\"arguments\":{\"name\":\"n%d\"}}}",
                         fd->base + i, i % 2 ? "slow" : "echo", i);
        ink_mcp_session_handle(fd->f->ses, msg, (size_t)n);
    }
    return NULL;
}

static void test_concurrent_calls(void **state)
{
    fx *f = *state;
    /* slow takes no arguments: its schema allows any, so the same text serves. */
    sendf(f, "{'jsonrpc':'2.0','id':0,'method':'logging/setLevel','params':{'level':'error'}}");
    expect_result(f, "0");
    pthread_t t[4];
    feeder fd[4];
    for (int i = 0; i < 4; i++) {
        fd[i] = (feeder){f, 1000 * (i + 1)};
        assert_int_equal(pthread_create(&t[i], NULL, feeder_main, &fd[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_true(ink_mcp_session_wait_idle(f->ses, WAIT_MS));
    join_threads(f);
    bool seen[4][25] = {{false}};
    for (int k = 0; k < 100; k++) {
        json_t *m = next_msg(f);
        json_int_t id = json_integer_value(json_object_get(m, "id"));
        assert_non_null(json_object_get(m, "result"));
        assert_null(json_object_get(json_object_get(m, "result"), "isError"));
        int i = (int)(id / 1000) - 1, j = (int)(id % 1000);
        assert_true(i >= 0 && i < 4 && j >= 0 && j < 25);
        assert_false(seen[i][j]);
        seen[i][j] = true;
    }
    expect_none(f);
}

/* ---------------------------------------------------------------- schema */

static void test_schema_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *schema, *msg;
    } cases[] = {
        {"{'type':'object','properties':{'x':{'type':'string','pattern':'^a'}}}",
         "#/properties/x: unsupported keyword \"pattern\""},
        {"{'$ref':'#/$defs/a'}", "#: unsupported keyword \"$ref\""},
        {"{'type':'float'}", "#: \"type\" must be one of object, array, string, integer, number, "
                             "boolean, null, or a non-empty array of them"},
        {"{'type':[]}", "#: \"type\" must be one of object, array, string, integer, number, "
                        "boolean, null, or a non-empty array of them"},
        {"{'type':['string','string']}", "#: \"type\" lists \"string\" twice"},
        {"{'required':'x'}", "#: \"required\" must be an array of strings"},
        {"{'required':[1]}", "#: \"required\" must be an array of strings"},
        {"{'properties':[]}", "#: \"properties\" must be an object"},
        {"{'items':5}", "#/items: a schema must be an object or a boolean"},
        {"{'additionalProperties':{'minLength':-1}}",
         "#/additionalProperties: \"minLength\" must be a non-negative integer"},
        {"{'maxItems':1.5}", "#: \"maxItems\" must be a non-negative integer"},
        {"{'minimum':'1'}", "#: \"minimum\" must be a number"},
        {"{'enum':[]}", "#: \"enum\" must be a non-empty array"},
        {"[]", "#: a schema must be an object or a boolean"},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(cases); i++) {
        cleanup_free char *text = test_requote(cases[i].schema);
        ink_err err = {0};
        assert_null(ink_mcp_schema_parse(text, &err));
        assert_string_equal(err.msg, cases[i].msg);
    }
    ink_err err = {0};
    assert_null(ink_mcp_schema_parse("{\"type\":", &err));
    assert_true(strncmp(err.msg, "schema is not JSON: ", 20) == 0);
    /* Annotations are accepted (and not enforced). */
    cleanup_free char *ok =
        test_requote("{'$schema':'https://json-schema.org/draft/2020-12/schema',"
                     "'title':'t','description':'d','type':'string',"
                     "'format':'uri','default':'x','examples':['y']}");
    ink_mcp_schema *s = ink_mcp_schema_parse(ok, &err);
    assert_non_null(s);
    assert_string_equal(ink_mcp_schema_root_type(s), "string");
    ink_mcp_schema_free(s);
}

/* Validates value_text against schema_text; NULL msg means it must pass. */
static void check(const char *schema_text, const char *value_text, const char *msg)
{
    cleanup_free char *st = test_requote(schema_text);
    cleanup_free char *vt = test_requote(value_text);
    ink_err err = {0};
    ink_mcp_schema *s = ink_mcp_schema_parse(st, &err);
    if (!s)
        fail_msg("schema %s: %s", st, err.msg);
    json_t *v = json_loads(vt, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    int rc = ink_mcp_schema_validate(s, v, "v", &err);
    json_decref(v);
    ink_mcp_schema_free(s);
    if (!msg && rc < 0)
        fail_msg("%s against %s: unexpected error %s", vt, st, err.msg);
    if (msg) {
        if (rc == 0)
            fail_msg("%s against %s: passed, expected %s", vt, st, msg);
        assert_string_equal(err.msg, msg);
    }
}

static void test_schema_validate(void **state)
{
    (void)state;
    /* Types, one or several. */
    check("{'type':['string','null']}", "null", NULL);
    check("{'type':['string','null']}", "'x'", NULL);
    check("{'type':['string','null']}", "3", "v: expected string or null, got integer");
    check("{'type':['string','integer','null']}", "true",
          "v: expected string, integer or null, got boolean");
    check("{'type':'number'}", "3", NULL);
    check("{'type':'number'}", "3.5", NULL);
    check("{'type':'integer'}", "3.5", "v: expected integer, got number");
    check("{'type':'boolean'}", "false", NULL);
    check("{'type':'null'}", "{}", "v: expected null, got object");
    check("{'type':'array'}", "{}", "v: expected array, got object");
    check("{}", "[1,{'a':null}]", NULL);
    check("true", "1", NULL);
    check("false", "1", "v: not allowed here");

    /* Numbers. */
    check("{'minimum':0.5}", "0.25", "v: must be >= 0.5, is 0.25");
    check("{'minimum':0.5}", "0.5", NULL);
    check("{'maximum':10}", "10.5", "v: must be <= 10, is 10.5");
    check("{'exclusiveMinimum':0}", "0", "v: must be > 0, is 0");
    check("{'exclusiveMinimum':0}", "1", NULL);
    check("{'exclusiveMaximum':5}", "5", "v: must be < 5, is 5");
    check("{'maximum':9007199254740993}", "9007199254740993", NULL);
    check("{'maximum':9007199254740992}", "9007199254740993",
          "v: must be <= 9007199254740992, is 9007199254740993");

    /* Strings count code points, not bytes. */
    check("{'maxLength':5}", "'h\xc3\xa9llo'", NULL);
    check("{'maxLength':5}", "'h\xc3\xa9llo!'", "v: must be at most 5 character(s) long, is 6");
    check("{'minLength':2}", "'\xf0\x9f\x98\x80'", "v: must be at least 2 character(s) long, is 1");
    check("{'minLength':2}", "7", NULL); /* only strings have a length */

    /* enum and const compare whole values. */
    check("{'enum':['a',1,null,{'k':[1]}]}", "{'k':[1]}", NULL);
    check("{'enum':['a',1,null]}", "'b'", "v: must be one of \"a\", 1, null");
    check("{'const':'x'}", "'y'", "v: must be \"x\"");
    check("{'const':{'a':1}}", "{'a':1}", NULL);

    /* Arrays. */
    check("{'minItems':1}", "[]", "v: must have at least 1 item(s), has 0");
    check("{'items':{'type':'object','required':['id']}}", "[{'id':1},{}]",
          "v[1].id: required property missing");
    check("{'items':{'items':{'type':'integer'}}}", "[[1],[2,'x']]",
          "v[1][1]: expected integer, got string");

    /* Objects. */
    check("{'properties':{'a':{'type':'string'}}}", "{'a':'x','b':1}", NULL);
    check("{'properties':{'a':{}},'additionalProperties':false}", "{'b':1}",
          "v.b: unknown property (expected one of: a)");
    check("{'additionalProperties':false}", "{'b':1}", "v.b: unknown property (none are accepted)");
    check("{'additionalProperties':{'type':'integer'}}", "{'a':1,'b':'2'}",
          "v.b: expected integer, got string");
    check("{'properties':{'x':false}}", "{'x':1}", "v.x: not allowed here");
    check("{'properties':{'env':{'type':'object','properties':{'PORT':{'type':'string'}}}}}",
          "{'env':{'PORT':8080}}", "v.env.PORT: expected string, got integer");
    check("{'required':['a','b']}", "{'a':1}", "v.b: required property missing");
    /* required only applies to objects. */
    check("{'required':['a']}", "'str'", NULL);
}

static void test_add_tool_errors(void **state)
{
    fx *f = *state;
    char long_name[INK_MCP_TOOL_NAME_MAX + 2];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    static const char *const bad_names[] = {"", "has space", "slash/name", "caf\xc3\xa9"};
    for (size_t i = 0; i <= INK_ARRAY_LEN(bad_names); i++) {
        const char *name = i < INK_ARRAY_LEN(bad_names) ? bad_names[i] : long_name;
        ink_mcp_tool t = {.name = name, .input_schema_json = "{}", .handler = echo_handler};
        ink_err err = {0};
        assert_int_equal(ink_mcp_server_add_tool(f->srv, &t, &err), -1);
        assert_non_null(strstr(err.msg, "expected 1 to 128 of A-Z a-z 0-9 _ - ."));
    }
    long_name[INK_MCP_TOOL_NAME_MAX] = '\0';
    static const struct {
        const char *name, *in, *out, *msg;
        bool no_handler;
    } cases[] = {
        {"echo", "{\"type\":\"object\"}", NULL, "tool echo: added twice", false},
        {"t1", "{\"type\":\"object\"}", NULL, "tool t1: no handler", true},
        {"t2", NULL, NULL, "tool t2: input schema: schema missing", false},
        {"t3", "{\"type\":\"array\"}", NULL,
         "tool t3: input schema must have \"type\": \"object\" at its root", false},
        {"t4", "{}", NULL, "tool t4: input schema must have \"type\": \"object\" at its root",
         false},
        {"t5", "{\"type\":\"object\"}", "{\"type\":\"object\",\"oneOf\":[]}",
         "tool t5: output schema: #: unsupported keyword \"oneOf\"", false},
        {"t6", "{\"type\":\"object\"}", "{\"type\":[\"object\",\"null\"]}",
         "tool t6: output schema must have \"type\": \"object\" at its root", false},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(cases); i++) {
        ink_mcp_tool t = {.name = cases[i].name,
                          .input_schema_json = cases[i].in,
                          .output_schema_json = cases[i].out,
                          .handler = cases[i].no_handler ? NULL : echo_handler};
        ink_err err = {0};
        assert_int_equal(ink_mcp_server_add_tool(f->srv, &t, &err), -1);
        assert_string_equal(err.msg, cases[i].msg);
    }
    /* 128 characters of the allowed set, dots and dashes included, pass. */
    long_name[0] = '.';
    long_name[1] = '-';
    long_name[2] = '_';
    long_name[3] = 'Z';
    ink_mcp_tool t = {
        .name = long_name, .input_schema_json = "{\"type\":\"object\"}", .handler = echo_handler};
    ink_err err = {0};
    assert_int_equal(ink_mcp_server_add_tool(f->srv, &t, &err), 0);
}

static void test_json_text(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"caf\xc3\xa9", "caf\xc3\xa9"},
        {"ok\xff", "ok\xef\xbf\xbd"},
        {"cut \xe2\x82", "cut \xef\xbf\xbd\xef\xbf\xbd"},         /* a sequence cut short */
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(cases); i++) {
        json_t *j = ink_json_text(cases[i].in);
        assert_string_equal(json_string_value(j), cases[i].out);
        json_decref(j);
    }
}

/* ----------------------------------------------------------------- stdio */

typedef struct stdio_run {
    ink_mcp_server *srv;
    ink_mcp_stdio_opts opts;
    int rc;
    ink_err err;
    pthread_t thread;
} stdio_run;

static void *stdio_main(void *arg)
{
    stdio_run *r = arg;
    r->rc = ink_mcp_stdio_run(r->srv, &r->opts, &r->err);
    return NULL;
}

static void write_all(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

/* Reads fd to EOF; returns the lines (each must end with a newline). */
static size_t read_lines(int fd, char ***out)
{
    size_t cap = 4096, len = 0;
    char *buf = ink_xmalloc(cap);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len);
        assert_true(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    assert_true(len > 0 && buf[len - 1] == '\n');
    size_t count = 0;
    char **lines = NULL;
    for (char *p = buf; p < buf + len;) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        lines = realloc(lines, (count + 1) * sizeof *lines);
        lines[count++] = strndup(p, (size_t)(nl - p));
        p = nl + 1;
    }
    free(buf);
    *out = lines;
    return count;
}

static void free_lines(char **lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

static void stdio_start(stdio_run *r, ink_mcp_server *srv, int in_fd, int out_fd, int stop_fd)
{
    memset(r, 0, sizeof *r);
    r->srv = srv;
    r->opts = (ink_mcp_stdio_opts){.in_fd = in_fd,
                                   .out_fd = out_fd,
                                   .stop_fd = stop_fd,
                                   .auth = (void *)"stdio-key",
                                   .drain_ms = WAIT_MS};
    assert_int_equal(pthread_create(&r->thread, NULL, stdio_main, r), 0);
}

static void test_stdio(void **state)
{
    fx *f = *state;
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    stdio_run r;
    stdio_start(&r, f->srv, in[0], out[1], -1);
    /* Three requests in one write; the last answers from another thread,
     * after the input has ended: its response must still come. */
    write_all(in[1], "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
                     "\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},"
                     "\"clientInfo\":{\"name\":\"c\",\"version\":\"1\"}}}\n"
                     "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n"
                     "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}\n"
                     "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{"
                     "\"name\":\"slow\"}}\n");
    close(in[1]);
    pthread_join(r.thread, NULL);
    assert_int_equal(r.rc, 0);
    close(in[0]);
    close(out[1]);
    join_threads(f);
    char **lines;
    size_t n = read_lines(out[0], &lines);
    close(out[0]);
    json_int_t ids[3];
    size_t nresp = 0, nnote = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_loads(lines[i], 0, NULL);
        assert_non_null(m);
        if (json_object_get(m, "id")) {
            assert_true(nresp < 3);
            assert_non_null(json_object_get(m, "result"));
            ids[nresp++] = json_integer_value(json_object_get(m, "id"));
        } else {
            nnote++; /* slow's info log line */
        }
        json_decref(m);
    }
    free_lines(lines, n);
    assert_int_equal(nresp, 3);
    assert_int_equal(nnote, 1);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    assert_int_equal(ids[2], 3);
}

static void test_stdio_framing(void **state)
{
    fx *f = *state;
    ink_mcp_server_set_max_message(f->srv, 64);
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    stdio_run r;
    stdio_start(&r, f->srv, in[0], out[1], -1);
    /* A message split over two writes. */
    write_all(in[1], "{\"jsonrpc\":\"2.0\",\"id\":1,");
    usleep(20000);
    write_all(in[1], "\"method\":\"ping\"}\n");
    /* A line over the limit (in several writes), then the next message. */
    char big[300];
    memset(big, ' ', sizeof big);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    big[sizeof big - 1] = '\0';
    write_all(in[1], big);
    write_all(in[1], big);
    write_all(in[1], "\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n");
    /* Blank lines are skipped; CRLF is tolerated; the last line needs no
     * newline. */
    write_all(in[1], "\n  \r\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}\r\n"
                     "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}");
    close(in[1]);
    pthread_join(r.thread, NULL);
    assert_int_equal(r.rc, 0);
    close(in[0]);
    close(out[1]);
    char **lines;
    size_t n = read_lines(out[0], &lines);
    close(out[0]);
    assert_int_equal(n, 5);
    static const char *const want[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
        "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,\"message\":\"Invalid "
        "Request: message larger than 64 bytes\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}",
        "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}",
        "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{}}",
    };
    for (size_t i = 0; i < n; i++) {
        json_t *got = json_loads(lines[i], 0, NULL);
        json_t *exp = json_loads(want[i], 0, NULL);
        bool eq = json_equal(got, exp);
        json_decref(got);
        json_decref(exp);
        if (!eq)
            fail_msg("line %zu: %s", i, lines[i]);
    }
    free_lines(lines, n);
}

static void test_stdio_stop_and_errors(void **state)
{
    fx *f = *state;
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    int stop = eventfd(0, EFD_CLOEXEC);
    assert_true(stop >= 0);
    stdio_run r;
    stdio_start(&r, f->srv, in[0], out[1], stop);
    write_all(in[1], "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
    char buf[128];
    ssize_t n = read(out[0], buf, sizeof buf);
    assert_true(n > 0);
    /* Input still open: only the stop descriptor ends the run. */
    uint64_t one = 1;
    assert_int_equal(write(stop, &one, sizeof one), (ssize_t)sizeof one);
    pthread_join(r.thread, NULL);
    assert_int_equal(r.rc, 0);

    /* The reader of the output vanished: the run fails with EPIPE. */
    close(out[0]);
    uint64_t v;
    assert_int_equal(read(stop, &v, sizeof v), (ssize_t)sizeof v);
    stdio_start(&r, f->srv, in[0], out[1], stop);
    write_all(in[1], "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n");
    pthread_join(r.thread, NULL);
    assert_int_equal(r.rc, -1);
    assert_int_equal(r.err.errnum, EPIPE);
    assert_non_null(strstr(r.err.msg, "writing to the output"));
    close(in[0]);
    close(in[1]);
    close(out[1]);
    close(stop);
}

int main(void)
{
    test_block_sigpipe();
    ink_log_init("test", INK_LOG_WARN, INK_LOG_LOGFMT);

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_initialize_versions),
        T(test_initialize_errors),
        T(test_before_initialize),
        T(test_ping),
        T(test_tools_list_pages),
        T(test_tools_list_2025_03_26),
        T(test_call_sync),
        T(test_call_protocol_errors),
        T(test_call_invalid_arguments),
        T(test_call_tool_error),
        T(test_call_bad_output),
        T(test_call_async_progress),
        T(test_call_async_levels),
        T(test_set_level_errors),
        T(test_cancel),
        T(test_duplicate_id),
        T(test_unknown_method),
        T(test_parse_errors),
        T(test_invalid_requests),
        T(test_batch),
        T(test_oversize),
        T(test_free_with_call_in_flight),
        T(test_routed),
        T(test_concurrent_calls),
        cmocka_unit_test(test_schema_parse_errors),
        cmocka_unit_test(test_schema_validate),
        T(test_add_tool_errors),
        cmocka_unit_test(test_json_text),
        T(test_stdio),
        T(test_stdio_framing),
        T(test_stdio_stop_and_errors),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
