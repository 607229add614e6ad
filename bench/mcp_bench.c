/* bench/mcp: latency of the MCP tool get_app_details (tools/call) over the
 * Streamable HTTP transport at 1 and 32 concurrent clients, against the MCP
 * ping request as the baseline: same transport, same sessions, same
 * process, the two interleaved in blocks so both see the same load.
 *
 * Everything runs in this process: a store in a temp dir, an API key
 * (project "bench", deployer), one pending app "web" (no nodes), the
 * coordinator's tools (coordinator/tools.c, default worker threads) on
 * 127.0.0.1:0. Each client is a thread with its own MCP client
 * (bench/mcp_client.c: one libcurl handle, one kept-alive connection) and
 * its own MCP session: initialize, notifications/initialized, then its
 * calls. Every response is checked (a result; for the tool isError not
 * true and structuredContent.app "web"): anything else aborts the bench
 * with the request and the response.
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

#include <curl/curl.h>
#include <jansson.h>

#include "apps.h"
#include "coordinator.h"
#include "keys.h"
#include "log.h"
#include "mcp_client.h"
#include "store.h"
#include "tools.h"
#include "util.h"

#define BLOCK 25 /* calls of one kind before switching to the other */
#define WARMUP 20
#define MAX_CLIENTS 32

static const char *const TOOL_ARGS = "{\"name\":\"web\"}"; /* of get_app_details */

/* ---------------------------------------------------------------- client */

typedef struct client {
    mcp_client mc;
    int calls; /* timed calls of each kind */
    bool ping_first;
    int64_t *tool_ns, *ping_ns;
    int64_t tool_busy, ping_busy;
    long tool_sse, ping_sse; /* timed calls answered as text/event-stream */
    pthread_barrier_t *ready, *go;
} client;

static void tool_call(client *cl)
{
    json_t *res = mcp_client_call_tool(&cl->mc, "get_app_details", TOOL_ARGS);
    json_t *sc = json_object_get(res, "structuredContent");
    const char *app = json_string_value(json_object_get(sc, "app"));
    if (json_is_true(json_object_get(res, "isError")) || !app || strcmp(app, "web") != 0)
        mcp_client_die(&cl->mc, "get_app_details did not succeed");
    json_decref(res);
}

static void timed_block(client *cl, bool tool, int from, int n)
{
    int64_t *ns = tool ? cl->tool_ns : cl->ping_ns;
    for (int i = from; i < from + n; i++) {
        int64_t t0 = ink_mono_ns();
        if (tool)
            tool_call(cl);
        else
            mcp_client_ping(&cl->mc);
        ns[i] = ink_mono_ns() - t0;
        *(tool ? &cl->tool_busy : &cl->ping_busy) += ns[i];
        *(tool ? &cl->tool_sse : &cl->ping_sse) += cl->mc.last_sse;
    }
}

static void *client_main(void *arg)
{
    client *cl = arg;
    mcp_client_open(&cl->mc);
    for (int i = 0; i < WARMUP; i++) {
        tool_call(cl);
        mcp_client_ping(&cl->mc);
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
        cl[i] = (client){.mc = {.url = url, .key = key, .name = "mcp_bench"},
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
        mcp_client_close(&cl[i].mc);
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
