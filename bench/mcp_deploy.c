/* bench/mcp_deploy: an AI agent's deploy as the agent sees it, for
 * bench/agent_bench.sh (section 6): MCP tools/call create_app over
 * Streamable HTTP, then GETs of the URL it returns until HTTP 200. The
 * client is bench/mcp_client.c (libcurl, one session on one kept-alive
 * connection), so the figures measure Ink, not the client.
 *
 *   INK_API_KEY=KEY mcp_deploy MCP_URL NAME IMAGE PORT [CPU]
 *       Opens a session (untimed), sends create_app {name, image, port[,
 *       cpu]} (t0), checks the answer (t1): isError not true,
 *       structuredContent.status "running" and a non-empty
 *       structuredContent.url; then GETs that URL every 5 ms, each on a new
 *       connection with a 1 s timeout, until HTTP 200 (t2; at most 30 s).
 *       Closes the session and prints "t0 t1 t2 URL", the times in ms since
 *       the epoch (CLOCK_REALTIME, as the daemons' log timestamps).
 *   INK_API_KEY=KEY mcp_deploy --ping MCP_URL
 *       The median round trip of 20 MCP pings in one session, ms.
 *   mcp_deploy --poll URL
 *       The median of 20 GETs of a serving URL, made as the deploy's poll
 *       makes them, ms; each must answer 200.
 *
 * Anything unexpected prints what was sent and what came back on stderr
 * and exits 1; usage errors exit 2. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "mcp_client.h"
#include "util.h"

#define POLL_EVERY_NS 5000000LL /* 5 ms */
#define POLL_TIMEOUT_MS 1000L   /* per GET */
#define POLL_GIVE_UP_MS 30000   /* the whole poll */
#define BASELINE_N 20           /* round trips of --ping and --poll */

static const char *const PROG = "mcp_deploy";

_Noreturn static void usage(void)
{
    fprintf(stderr,
            "usage: INK_API_KEY=KEY %s MCP_URL NAME IMAGE PORT [CPU]\n"
            "       INK_API_KEY=KEY %s --ping MCP_URL\n"
            "       %s --poll URL\n",
            PROG, PROG, PROG);
    exit(2);
}

static const char *api_key(void)
{
    const char *key = getenv("INK_API_KEY");
    if (!key || !*key) {
        fprintf(stderr, "%s: INK_API_KEY is not set\n", PROG);
        exit(2);
    }
    return key;
}

/* ------------------------------------------------------------------ GETs */

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    return size * n;
}

static CURL *getter_new(const char *url)
{
    CURL *c = curl_easy_init();
    if (!c) {
        fprintf(stderr, "%s: curl_easy_init failed\n", PROG);
        exit(1);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, POLL_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    return c;
}

/* One GET on a new connection: the HTTP status, 0 when there was none
 * (*rc says why). */
static long get_once(CURL *c, CURLcode *rc)
{
    long status = 0;
    *rc = curl_easy_perform(c);
    if (*rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static void sleep_until_ns(int64_t mono_ns)
{
    struct timespec ts = {.tv_sec = mono_ns / 1000000000LL, .tv_nsec = mono_ns % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* ------------------------------------------------------------- baselines */

static int cmp_ns(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void print_median_ms(int64_t ns[BASELINE_N])
{
    qsort(ns, BASELINE_N, sizeof *ns, cmp_ns);
    double med = (double)(ns[BASELINE_N / 2 - 1] + ns[BASELINE_N / 2]) / 2e6;
    printf("%.1f\n", med);
}

static int ping_baseline(const char *mcp_url)
{
    mcp_client cl = {.url = mcp_url, .key = api_key(), .name = PROG};
    mcp_client_open(&cl);
    int64_t ns[BASELINE_N];
    for (int i = 0; i < BASELINE_N; i++) {
        int64_t t = ink_mono_ns();
        mcp_client_ping(&cl);
        ns[i] = ink_mono_ns() - t;
    }
    mcp_client_close(&cl);
    print_median_ms(ns);
    return 0;
}

static int poll_baseline(const char *url)
{
    CURL *c = getter_new(url);
    int64_t ns[BASELINE_N];
    for (int i = 0; i < BASELINE_N; i++) {
        CURLcode rc;
        int64_t t = ink_mono_ns();
        long status = get_once(c, &rc);
        ns[i] = ink_mono_ns() - t;
        if (status != 200) {
            fprintf(stderr, "%s: GET %s (try %d of %d): HTTP %ld (%s)\n", PROG, url, i + 1,
                    BASELINE_N, status, curl_easy_strerror(rc));
            exit(1);
        }
    }
    curl_easy_cleanup(c);
    print_median_ms(ns);
    return 0;
}

/* ---------------------------------------------------------------- deploy */

static void number_arg(const char *s, const char *what, double *out)
{
    char *end = NULL;
    errno = 0;
    *out = strtod(s, &end);
    if (errno || end == s || *end) {
        fprintf(stderr, "%s: %s '%s' is not a number\n", PROG, what, s);
        exit(2);
    }
}

static int deploy(char **argv, int argc)
{
    const char *mcp_url = argv[1], *name = argv[2], *image = argv[3];
    double port, cpu = 0;
    number_arg(argv[4], "PORT", &port);
    if (port != (double)(int)port || port < 1 || port > 65535) {
        fprintf(stderr, "%s: PORT '%s' is not a port\n", PROG, argv[4]);
        exit(2);
    }
    json_t *args = json_pack("{s:s, s:s, s:i}", "name", name, "image", image, "port", (int)port);
    if (argc > 5) {
        number_arg(argv[5], "CPU", &cpu);
        json_object_set_new(args, "cpu", json_real(cpu));
    }
    char *args_json = json_dumps(args, JSON_COMPACT);
    json_decref(args);

    mcp_client cl = {.url = mcp_url, .key = api_key(), .name = PROG};
    mcp_client_open(&cl);

    int64_t t0 = ink_now_ms();
    json_t *res = mcp_client_call_tool(&cl, "create_app", args_json);
    int64_t t1 = ink_now_ms();
    json_t *sc = json_object_get(res, "structuredContent");
    const char *status = json_string_value(json_object_get(sc, "status"));
    const char *url = json_string_value(json_object_get(sc, "url"));
    if (json_is_true(json_object_get(res, "isError")) || !status ||
        strcmp(status, "running") != 0 || !url || !*url) {
        char why[160];
        snprintf(why, sizeof why,
                 "create_app did not answer status \"running\" with a URL (answered after %" PRId64
                 " ms)",
                 t1 - t0);
        mcp_client_die(&cl, why);
    }
    char *app_url = ink_xstrdup(url);
    json_decref(res);

    CURL *c = getter_new(app_url);
    int64_t give_up = ink_mono_ms() + POLL_GIVE_UP_MS;
    long code;
    CURLcode rc;
    int tries = 0;
    for (;;) {
        int64_t t = ink_mono_ns();
        tries++;
        if ((code = get_once(c, &rc)) == 200)
            break;
        if (ink_mono_ms() >= give_up) {
            fprintf(stderr,
                    "%s: create_app %s answered %s after %" PRId64
                    " ms, which gave no HTTP 200 within %d s (%d GETs); the last: HTTP %ld (%s)\n",
                    PROG, args_json, app_url, t1 - t0, POLL_GIVE_UP_MS / 1000, tries, code,
                    curl_easy_strerror(rc));
            mcp_client_close(&cl);
            exit(1);
        }
        sleep_until_ns(t + POLL_EVERY_NS);
    }
    int64_t t2 = ink_now_ms();
    curl_easy_cleanup(c);
    mcp_client_close(&cl);
    printf("%" PRId64 " %" PRId64 " %" PRId64 " %s\n", t0, t1, t2, app_url);
    free(app_url);
    free(args_json);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    if (strcmp(argv[1], "--ping") == 0 && argc == 3)
        rc = ping_baseline(argv[2]);
    else if (strcmp(argv[1], "--poll") == 0 && argc == 3)
        rc = poll_baseline(argv[2]);
    else if (argv[1][0] != '-' && (argc == 5 || argc == 6))
        rc = deploy(argv, argc);
    else
        usage();
    curl_global_cleanup();
    return rc;
}
