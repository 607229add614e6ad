/* bench/mcp: latency of the MCP tool get_app_details (tools/call) over the
 * Streamable HTTP transport at 1 and 32 concurrent clients, against the MCP
 * ping request as the baseline: same transport, same sessions, same
 * process, the two interleaved in blocks so both see the same load.
 *
 * Everything runs in this process: a store in a temp dir, an API key
 * (project "bench", deployer), one pending app "web" (no nodes), the
 * coordinator's tools (coordinator/tools.c, default worker threads) on
 * 127.0.0.1:0. Each client is a thread with its own libcurl handle (one
 * kept-alive connection) and its own MCP session: initialize,
 * notifications/initialized, then its calls. Every response is checked (a
 * result; for the tool isError not true and structuredContent.app "web"):
 * anything else aborts the bench with the request and the response.
 *
 * calls/s per kind: the sum over clients of that client's calls divided by
 * the time it spent in them, i.e. the rate the clients reach with this kind
 * of call under the mixed load; "both kinds" is all calls over wall time.
 *
 *   mcp_bench [calls of each kind with 1 client] [calls of each kind per
 *             client with 32 clients]          (defaults 5000 and 400)
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "apps.h"
#include "coordinator.h"
#include "keys.h"
#include "log.h"
#include "mcp.h"
#include "store.h"
#include "tools.h"
#include "util.h"

#define BLOCK 25 /* calls of one kind before switching to the other */
#define WARMUP 20
#define MAX_CLIENTS 32

static const char *const TOOL_ARGS =
    "{\"name\":\"get_app_details\",\"arguments\":{\"name\":\"web\"}}";

/* ---------------------------------------------------------------- client */

typedef struct client {
    const char *url;
    const char *key;
    CURL *c;
    struct curl_slist *hdrs;
    char sid[160];
    char ctype[128];
    char *body;
    size_t len, cap;
    long next_id;
    int calls; /* timed calls of each kind */
    bool ping_first;
    int64_t *tool_ns, *ping_ns;
    int64_t tool_busy, ping_busy;
    bool last_sse;           /* the last response was text/event-stream */
    long tool_sse, ping_sse; /* timed calls answered so */
    pthread_barrier_t *ready, *go;
} client;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    client *cl = arg;
    size_t k = size * n;
    if (cl->len + k + 1 > cl->cap) {
        cl->cap = (cl->len + k + 1) * 2;
        cl->body = realloc(cl->body, cl->cap);
        if (!cl->body)
            abort();
    }
    memcpy(cl->body + cl->len, p, k);
    cl->len += k;
    cl->body[cl->len] = '\0';
    return k;
}

/* Header value of name in line ("Name: value\r\n") into out, else no-op. */
static void header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (n <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return;
    const char *v = line + nl + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t len = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    memcpy(out, v, len);
    out[len] = '\0';
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    client *cl = arg;
    header_value(p, size * n, "Mcp-Session-Id", cl->sid, sizeof cl->sid);
    header_value(p, size * n, "Content-Type", cl->ctype, sizeof cl->ctype);
    return size * n;
}

static void set_headers(client *cl, const char *protocol)
{
    curl_slist_free_all(cl->hdrs);
    char auth[INK_KEY_LEN + 32];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", cl->key);
    struct curl_slist *l = curl_slist_append(NULL, auth);
    l = curl_slist_append(l, "Accept: application/json, text/event-stream");
    l = curl_slist_append(l, "Content-Type: application/json");
    l = curl_slist_append(l, "Expect:");
    if (*cl->sid) {
        char h[200];
        snprintf(h, sizeof h, "Mcp-Session-Id: %s", cl->sid);
        l = curl_slist_append(l, h);
    }
    if (protocol) {
        char h[80];
        snprintf(h, sizeof h, "MCP-Protocol-Version: %s", protocol);
        l = curl_slist_append(l, h);
    }
    cl->hdrs = l;
    curl_easy_setopt(cl->c, CURLOPT_HTTPHEADER, l);
}

static void client_init(client *cl)
{
    cl->c = curl_easy_init();
    if (!cl->c) {
        fprintf(stderr, "curl_easy_init failed\n");
        exit(1);
    }
    curl_easy_setopt(cl->c, CURLOPT_URL, cl->url);
    curl_easy_setopt(cl->c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(cl->c, CURLOPT_WRITEDATA, cl);
    curl_easy_setopt(cl->c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(cl->c, CURLOPT_HEADERDATA, cl);
    curl_easy_setopt(cl->c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(cl->c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(cl->c, CURLOPT_TCP_NODELAY, 1L);
    set_headers(cl, NULL);
}

static void die_exchange(client *cl, const char *req, long status, const char *why)
{
    fprintf(stderr,
            "mcp_bench: %s\n  request:  POST %s (Mcp-Session-Id: %s)\n    %s\n"
            "  response: HTTP %ld, Content-Type: %s\n    %s\n",
            why, cl->url, *cl->sid ? cl->sid : "none", req, status, *cl->ctype ? cl->ctype : "none",
            cl->len ? cl->body : "(empty body)");
    exit(1);
}

/* POSTs body; returns the JSON-RPC response whose id is want_id (read from
 * an application/json body or from the data: lines of an SSE stream), or
 * NULL when want_id < 0 (a notification: 202 expected). */
static json_t *post(client *cl, const char *body, long want_id)
{
    cl->len = 0;
    cl->ctype[0] = '\0';
    curl_easy_setopt(cl->c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(cl->c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    CURLcode rc = curl_easy_perform(cl->c);
    long status = 0;
    curl_easy_getinfo(cl->c, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK)
        die_exchange(cl, body, status, curl_easy_strerror(rc));
    if (want_id < 0) {
        if (status != 202)
            die_exchange(cl, body, status, "notification not accepted (want 202)");
        return NULL;
    }
    if (status != 200)
        die_exchange(cl, body, status, "HTTP status is not 200");
    json_t *found = NULL;
    cl->last_sse = false;
    if (strncasecmp(cl->ctype, "application/json", 16) == 0) {
        found = json_loadb(cl->body, cl->len, 0, NULL);
        if (found && json_integer_value(json_object_get(found, "id")) != want_id) {
            json_decref(found);
            found = NULL;
        }
    } else if (strncasecmp(cl->ctype, "text/event-stream", 17) == 0) {
        cl->last_sse = true;
        char *save = NULL;
        char *copy = ink_xstrdup(cl->body);
        for (char *line = strtok_r(copy, "\r\n", &save); line && !found;
             line = strtok_r(NULL, "\r\n", &save)) {
            if (strncmp(line, "data:", 5) != 0)
                continue;
            json_t *m = json_loads(line + 5 + (line[5] == ' '), 0, NULL);
            if (m && json_is_integer(json_object_get(m, "id")) &&
                json_integer_value(json_object_get(m, "id")) == want_id)
                found = m;
            else
                json_decref(m);
        }
        free(copy);
    } else {
        die_exchange(cl, body, status, "unexpected Content-Type");
    }
    if (!found)
        die_exchange(cl, body, status, "no JSON-RPC response with the request's id");
    if (!json_is_object(json_object_get(found, "result")))
        die_exchange(cl, body, status, "the response is not a result");
    return found;
}

static void session_open(client *cl)
{
    client_init(cl);
    char body[512];
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"initialize\",\"params\":{"
             "\"protocolVersion\":\"%s\",\"capabilities\":{},"
             "\"clientInfo\":{\"name\":\"mcp_bench\",\"version\":\"1\"}}}",
             ++cl->next_id, INK_MCP_LATEST_VERSION);
    json_t *r = post(cl, body, cl->next_id);
    if (!*cl->sid)
        die_exchange(cl, body, 200, "initialize answered without Mcp-Session-Id");
    const char *v =
        json_string_value(json_object_get(json_object_get(r, "result"), "protocolVersion"));
    char protocol[32];
    snprintf(protocol, sizeof protocol, "%s", v ? v : INK_MCP_LATEST_VERSION);
    json_decref(r);
    set_headers(cl, protocol);
    post(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", -1);
}

static void session_close(client *cl)
{
    cl->len = 0;
    curl_easy_setopt(cl->c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(cl->c, CURLOPT_CUSTOMREQUEST, "DELETE");
    long status = 0;
    if (curl_easy_perform(cl->c) == CURLE_OK)
        curl_easy_getinfo(cl->c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 204)
        fprintf(stderr, "mcp_bench: DELETE session: HTTP %ld\n", status);
    curl_easy_cleanup(cl->c);
    curl_slist_free_all(cl->hdrs);
    free(cl->body);
}

static void tool_call(client *cl)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"tools/call\",\"params\":%s}",
             ++cl->next_id, TOOL_ARGS);
    json_t *r = post(cl, body, cl->next_id);
    json_t *res = json_object_get(r, "result");
    json_t *sc = json_object_get(res, "structuredContent");
    const char *app = json_string_value(json_object_get(sc, "app"));
    if (json_is_true(json_object_get(res, "isError")) || !app || strcmp(app, "web") != 0)
        die_exchange(cl, body, 200, "get_app_details did not succeed");
    json_decref(r);
}

static void ping(client *cl)
{
    char body[96];
    snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"ping\"}",
             ++cl->next_id);
    json_decref(post(cl, body, cl->next_id));
}

static void timed_block(client *cl, bool tool, int from, int n)
{
    int64_t *ns = tool ? cl->tool_ns : cl->ping_ns;
    for (int i = from; i < from + n; i++) {
        int64_t t0 = ink_mono_ns();
        if (tool)
            tool_call(cl);
        else
            ping(cl);
        ns[i] = ink_mono_ns() - t0;
        *(tool ? &cl->tool_busy : &cl->ping_busy) += ns[i];
        *(tool ? &cl->tool_sse : &cl->ping_sse) += cl->last_sse;
    }
}

static void *client_main(void *arg)
{
    client *cl = arg;
    session_open(cl);
    for (int i = 0; i < WARMUP; i++) {
        tool_call(cl);
        ping(cl);
    }
    pthread_barrier_wait(cl->ready);
    pthread_barrier_wait(cl->go);
    /* Blocks of BLOCK calls, alternating kinds; half the clients start
     * with pings so that at any moment both kinds are in flight. */
    bool tool = !cl->ping_first;
    int done_tool = 0, done_ping = 0;
    while (done_tool < cl->calls || done_ping < cl->calls) {
        int *done = tool ? &done_tool : &done_ping;
        int n = cl->calls - *done < BLOCK ? cl->calls - *done : BLOCK;
        timed_block(cl, tool, *done, n);
        *done += n;
        tool = !tool;
    }
    return NULL;
}

/* ------------------------------------------------------------- figures */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double median_us, p99_us, calls_per_s;
} result;

static result summarize(int64_t *ns, int n, double calls_per_s)
{
    qsort(ns, (size_t)n, sizeof *ns, cmp_i64);
    result r;
    r.median_us = n % 2 ? (double)ns[n / 2] / 1000.0 : (double)(ns[n / 2 - 1] + ns[n / 2]) / 2000.0;
    r.p99_us = (double)ns[(int)((double)n * 0.99)] / 1000.0;
    r.calls_per_s = calls_per_s;
    return r;
}

typedef struct {
    result tool, ping;
    double tool_sse_pct, ping_sse_pct; /* answered as text/event-stream */
    double wall_calls_per_s;
    double wall_s;
} level;

static level run_level(const char *url, const char *key, int nclients, int calls)
{
    client cl[MAX_CLIENTS];
    pthread_t th[MAX_CLIENTS];
    pthread_barrier_t ready, go;
    pthread_barrier_init(&ready, NULL, (unsigned)nclients + 1);
    pthread_barrier_init(&go, NULL, (unsigned)nclients + 1);
    memset(cl, 0, sizeof cl);
    for (int i = 0; i < nclients; i++) {
        cl[i] = (client){.url = url,
                         .key = key,
                         .calls = calls,
                         .ping_first = i % 2 == 1,
                         .tool_ns = ink_xcalloc((size_t)calls, sizeof(int64_t)),
                         .ping_ns = ink_xcalloc((size_t)calls, sizeof(int64_t)),
                         .ready = &ready,
                         .go = &go};
        if (pthread_create(&th[i], NULL, client_main, &cl[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            exit(1);
        }
    }
    pthread_barrier_wait(&ready); /* sessions open, warmed up */
    int64_t start = ink_mono_ns();
    pthread_barrier_wait(&go);
    for (int i = 0; i < nclients; i++)
        pthread_join(th[i], NULL);
    int64_t wall = ink_mono_ns() - start;

    size_t total = (size_t)nclients * (size_t)calls;
    int64_t *tool = ink_xcalloc(total, sizeof *tool), *pg = ink_xcalloc(total, sizeof *pg);
    double tool_rate = 0, ping_rate = 0;
    long tool_sse = 0, ping_sse = 0;
    for (int i = 0; i < nclients; i++) {
        memcpy(tool + (size_t)i * (size_t)calls, cl[i].tool_ns, (size_t)calls * sizeof *tool);
        memcpy(pg + (size_t)i * (size_t)calls, cl[i].ping_ns, (size_t)calls * sizeof *pg);
        tool_rate += (double)calls / ((double)cl[i].tool_busy / 1e9);
        ping_rate += (double)calls / ((double)cl[i].ping_busy / 1e9);
        tool_sse += cl[i].tool_sse;
        ping_sse += cl[i].ping_sse;
        session_close(&cl[i]);
        free(cl[i].tool_ns);
        free(cl[i].ping_ns);
    }
    level lv;
    lv.tool = summarize(tool, (int)total, tool_rate);
    lv.ping = summarize(pg, (int)total, ping_rate);
    lv.tool_sse_pct = 100.0 * (double)tool_sse / (double)total;
    lv.ping_sse_pct = 100.0 * (double)ping_sse / (double)total;
    lv.wall_s = (double)wall / 1e9;
    lv.wall_calls_per_s = (double)(2 * total) / lv.wall_s;
    free(tool);
    free(pg);
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&go);
    return lv;
}

static void print_row(const char *name, result r)
{
    printf("    %-30s median %7.1f us   p99 %7.1f us   %7.0f calls/s\n", name, r.median_us,
           r.p99_us, r.calls_per_s);
}

static void print_level(int nclients, int calls, level lv)
{
    printf("  %d client%s, %d calls of each kind%s (%.1f s):\n", nclients, nclients == 1 ? "" : "s",
           calls, nclients == 1 ? "" : " per client", lv.wall_s);
    print_row("tools/call get_app_details", lv.tool);
    print_row("ping (baseline)", lv.ping);
    printf("    %-30s %7.0f calls/s\n", "both kinds, wall clock", lv.wall_calls_per_s);
    printf("    ratio get_app_details/ping: median %.2f   p99 %.2f   calls/s %.2f\n",
           lv.tool.median_us / lv.ping.median_us, lv.tool.p99_us / lv.ping.p99_us,
           lv.tool.calls_per_s / lv.ping.calls_per_s);
    printf("    answered as text/event-stream (else application/json): get_app_details %.0f%%, "
           "ping %.0f%%\n",
           lv.tool_sse_pct, lv.ping_sse_pct);
}

/* ------------------------------------------------------------------ main */

static void check(int rc, const ink_err *err, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "mcp_bench: %s: %s\n", what, err->msg);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    int calls1 = argc > 1 ? atoi(argv[1]) : 5000;
    int calls32 = argc > 2 ? atoi(argv[2]) : 400;
    if (calls1 < 100)
        calls1 = 100;
    if (calls32 < 10)
        calls32 = 10;
    ink_log_init("mcp_bench", INK_LOG_WARN, INK_LOG_LOGFMT);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    char dir[] = "/tmp/ink-bench-mcp-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char db[64];
    snprintf(db, sizeof db, "%s/ink.db", dir);
    ink_err err = {0};
    ink_coordinator_config cfg;
    memset(&cfg, 0, sizeof cfg);
    check(ink_config_defaults(ink_coordinator_options, &cfg, &err), &err, "config");
    check(ink_config_set(ink_coordinator_options, &cfg, "database", db, &err), &err, "config");
    check(ink_config_set(ink_coordinator_options, &cfg, "insecure_dev", "true", &err), &err,
          "config");
    check(ink_config_set(ink_coordinator_options, &cfg, "mcp_listen", "127.0.0.1:0", &err), &err,
          "config");
    ink_store *store = NULL;
    check(ink_store_open(db, &store, &err), &err, "ink_store_open");
    char key[INK_KEY_LEN + 1];
    check(
        ink_keys_create(store, "bench", INK_ROLE_DEPLOYER, "bench", ink_now_ms(), key, NULL, &err),
        &err, "ink_keys_create");

    ink_tools_ctx ctx = {.store = store, .cfg = &cfg};
    ink_tools *tools = ink_tools_new(&ctx, &err);
    check(tools ? 0 : -1, &err, "ink_tools_new");
    const ink_caller *who = NULL;
    if (ink_tools_verify_key(tools, key, &who, &err) != 1) {
        fprintf(stderr, "mcp_bench: the new key does not verify: %s\n", err.msg);
        return 1;
    }
    json_t *args =
        json_pack("{s:s, s:s, s:i}", "name", "web", "image", "registry.local/web:1", "port", 8080);
    json_t *op = NULL;
    check(ink_apps_create(store, who, args, ink_now_ms(), &op, &err), &err, "ink_apps_create");
    json_decref(op);
    json_decref(args);
    ink_mcp_http *http = ink_tools_http_start(tools, &err);
    check(http ? 0 : -1, &err, "ink_tools_http_start");
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/mcp", ink_mcp_http_port(http));

    level one = run_level(url, key, 1, calls1);
    level many = run_level(url, key, MAX_CLIENTS, calls32);

    ink_mcp_http_stop(http);
    ink_tools_free(tools);
    ink_store_close(store);
    ink_config_free(ink_coordinator_options, &cfg);
    curl_global_cleanup();
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);

    printf("bench/mcp: MCP Streamable HTTP on loopback, libcurl, one session and connection per "
           "client;\n  get_app_details of a pending app against ping, interleaved in blocks of "
           "%d\n",
           BLOCK);
    print_level(1, calls1, one);
    print_level(MAX_CLIENTS, calls32, many);
    return 0;
}
