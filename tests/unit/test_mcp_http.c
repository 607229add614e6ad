/* Unit tests for the Streamable HTTP transport (coordinator/mcp/http.c):
 * a real server on 127.0.0.1 with a kernel-chosen port, driven by libcurl.
 * Two test tools: "echo" answers at once (plain JSON response), "slow"
 * answers from a thread of its own after a progress notification (an SSE
 * response). The authenticator knows two bearer tokens, so sessions can be
 * checked to stay with the identity that made them. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "log.h"
#include "mcp.h"
#include "testlib.h"
#include "util.h"

#define MAX_BODY 4096
#define MAX_THREADS 16
#define ALLOWED_ORIGIN "http://localhost:6274"

static int identity_alice, identity_bob;

typedef struct fixture {
    ink_mcp_server *srv;
    ink_mcp_http *http;
    char base[64];
    pthread_mutex_t mu;
    pthread_t threads[MAX_THREADS];
    size_t nthreads;
} fixture;

/* ----------------------------------------------------------------- tools */

static void echo_handler(ink_mcp_call *call, const json_t *args, void *ctx)
{
    (void)ctx;
    const char *text = json_string_value(json_object_get(args, "text"));
    ink_mcp_call_result(call, json_pack("{s:s}", "text", text), text);
}

static void *slow_main(void *arg)
{
    ink_mcp_call *call = arg;
    usleep(50 * 1000);
    ink_mcp_call_progress(call, 1, 2, "halfway");
    usleep(50 * 1000);
    ink_mcp_call_result(call, NULL, "slow done");
    return NULL;
}

static void slow_handler(ink_mcp_call *call, const json_t *args, void *ctx)
{
    (void)args;
    fixture *f = ctx;
    pthread_mutex_lock(&f->mu);
    assert_true(f->nthreads < MAX_THREADS);
    assert_int_equal(pthread_create(&f->threads[f->nthreads++], NULL, slow_main, call), 0);
    pthread_mutex_unlock(&f->mu);
}

static void *authenticate(void *arg, const char *authorization)
{
    (void)arg;
    if (!authorization)
        return NULL;
    if (strcmp(authorization, "Bearer alice") == 0)
        return &identity_alice;
    if (strcmp(authorization, "Bearer bob") == 0)
        return &identity_bob;
    return NULL;
}

static int setup(void **state)
{
    fixture *f = ink_xcalloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->srv = ink_mcp_server_new("ink-test", "0.1", NULL);
    ink_err err = {0};
    ink_mcp_tool echo = {
        .name = "echo",
        .description = "Echoes its text.",
        .input_schema_json = "{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"}},"
                             "\"required\":[\"text\"]}",
        .output_schema_json =
            "{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"}}}",
        .read_only = true,
        .handler = echo_handler,
    };
    ink_mcp_tool slow = {
        .name = "slow",
        .description = "Answers later, with progress.",
        .input_schema_json = "{\"type\":\"object\"}",
        .handler = slow_handler,
        .ctx = f,
    };
    assert_int_equal(ink_mcp_server_add_tool(f->srv, &echo, &err), 0);
    assert_int_equal(ink_mcp_server_add_tool(f->srv, &slow, &err), 0);
    const char *origins[] = {ALLOWED_ORIGIN};
    ink_mcp_http_opts o = {
        .listen = "127.0.0.1:0",
        .allowed_origins = origins,
        .nallowed_origins = 1,
        .max_body = MAX_BODY,
        .authenticate = authenticate,
    };
    f->http = ink_mcp_http_start(f->srv, &o, &err);
    if (!f->http)
        fail_msg("ink_mcp_http_start: %s", err.msg);
    assert_true(ink_mcp_http_port(f->http) > 0);
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%d", ink_mcp_http_port(f->http));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ink_mcp_http_stop(f->http);
    for (size_t i = 0; i < f->nthreads; i++)
        pthread_join(f->threads[i], NULL);
    ink_mcp_server_free(f->srv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

/* ----------------------------------------------------------------- HTTP */

typedef struct resp {
    long status;
    char *headers, *body;
    size_t hlen, blen;
} resp;

static void resp_free(resp *r)
{
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static size_t append(char **buf, size_t *len, const char *p, size_t n)
{
    char *nb = realloc(*buf, *len + n + 1);
    assert_non_null(nb);
    memcpy(nb + *len, p, n);
    *len += n;
    nb[*len] = '\0';
    *buf = nb;
    return n;
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    resp *r = arg;
    return append(&r->body, &r->blen, p, sz * n);
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    resp *r = arg;
    return append(&r->headers, &r->hlen, p, sz * n);
}

/* The value of a response header (last one wins), or NULL. */
static char *resp_header(const resp *r, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    char *found = NULL;
    for (const char *line = r->headers; line && *line;) {
        const char *eol = strstr(line, "\r\n");
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = len - (size_t)(v - line);
            if (vl >= outlen)
                vl = outlen - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            found = out;
        }
        line = eol ? eol + 2 : line + len;
    }
    return found;
}

static bool has_header_named(const char *const *hdrs, const char *dflt)
{
    size_t n = strcspn(dflt, ":");
    for (size_t i = 0; hdrs && hdrs[i]; i++)
        if (strncasecmp(hdrs[i], dflt, n) == 0 && hdrs[i][n] == ':')
            return true;
    return false;
}

/* One request. The usual MCP client headers are sent unless hdrs names
 * them (an empty value, "Accept:", removes one). */
static void http_ex(fixture *f, const char *method, const char *path, const char *body, size_t blen,
                    const char *const *hdrs, resp *out)
{
    memset(out, 0, sizeof *out);
    static const char *const defaults[] = {
        "Content-Type: application/json",
        "Accept: application/json, text/event-stream",
        "Authorization: Bearer alice",
    };
    struct curl_slist *list = NULL;
    for (size_t i = 0; i < INK_ARRAY_LEN(defaults); i++)
        if (!has_header_named(hdrs, defaults[i]))
            list = curl_slist_append(list, defaults[i]);
    for (size_t i = 0; hdrs && hdrs[i]; i++)
        list = curl_slist_append(list, hdrs[i]);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[128];
    snprintf(url, sizeof url, "%s%s", f->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)blen);
    }
    if (strcmp(method, "POST") != 0 || !body)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(list);
}

static void http(fixture *f, const char *method, const char *body, const char *const *hdrs,
                 resp *out)
{
    http_ex(f, method, "/mcp", body, body ? strlen(body) : 0, hdrs, out);
}

static void assert_content_type(const resp *r, const char *want)
{
    char v[128];
    assert_non_null(resp_header(r, "Content-Type", v, sizeof v));
    assert_string_equal(v, want);
}

/* The JSON-RPC error code in a JSON body. */
static int error_code(const resp *r)
{
    json_t *j = json_loads(r->body ? r->body : "", 0, NULL);
    assert_non_null(j);
    int code = (int)json_integer_value(json_object_get(json_object_get(j, "error"), "code"));
    json_decref(j);
    return code;
}

#define INIT_BODY                                                                                  \
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"     \
    "\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}"

/* initialize, then notifications/initialized; the session id into sid. */
static void open_session(fixture *f, const char *auth_header, char sid[128])
{
    const char *hdrs[] = {auth_header, NULL};
    resp r;
    http(f, "POST", INIT_BODY, auth_header ? hdrs : NULL, &r);
    assert_int_equal(r.status, 200);
    assert_content_type(&r, "application/json");
    assert_non_null(resp_header(&r, "Mcp-Session-Id", sid, 128));
    assert_int_equal(strlen(sid), 64);
    for (const char *p = sid; *p; p++)
        assert_true(*p > 0x20 && *p < 0x7f);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "result"), "protocolVersion")),
        "2025-11-25");
    json_decref(j);
    resp_free(&r);

    char h_sid[160];
    snprintf(h_sid, sizeof h_sid, "Mcp-Session-Id: %s", sid);
    const char *h2[] = {h_sid, "MCP-Protocol-Version: 2025-11-25", auth_header, NULL};
    http(f, "POST", "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", h2, &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(r.blen, 0);
    resp_free(&r);
}

/* A POST in session sid with the negotiated version header. */
static void post_in(fixture *f, const char *sid, const char *body, resp *r)
{
    char h_sid[160];
    snprintf(h_sid, sizeof h_sid, "Mcp-Session-Id: %s", sid);
    const char *hdrs[] = {h_sid, "MCP-Protocol-Version: 2025-11-25", NULL};
    http(f, "POST", body, hdrs, r);
}

#define TOOLS_LIST "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}"

/* ----------------------------------------------------------------- tests */

static void test_initialize_and_list(void **state)
{
    fixture *f = *state;
    char sid[128];
    open_session(f, NULL, sid);

    resp r;
    post_in(f, sid, TOOLS_LIST, &r);
    assert_int_equal(r.status, 200);
    assert_content_type(&r, "application/json");
    json_t *j = json_loads(r.body, 0, NULL);
    json_t *tools = json_object_get(json_object_get(j, "result"), "tools");
    assert_int_equal(json_array_size(tools), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(tools, 0), "name")),
                        "echo");
    json_decref(j);
    resp_free(&r);

    /* A synchronous tool call: a plain JSON answer. */
    post_in(f, sid,
            "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":"
            "\"echo\",\"arguments\":{\"text\":\"hi\"}}}",
            &r);
    assert_int_equal(r.status, 200);
    assert_content_type(&r, "application/json");
    assert_non_null(strstr(r.body, "\"structuredContent\":{\"text\":\"hi\"}"));
    resp_free(&r);

    /* Without MCP-Protocol-Version the negotiated revision applies. */
    char h_sid[160];
    snprintf(h_sid, sizeof h_sid, "Mcp-Session-Id: %s", sid);
    const char *hdrs[] = {h_sid, NULL};
    http(f, "POST", TOOLS_LIST, hdrs, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

static void test_session_errors(void **state)
{
    fixture *f = *state;
    char sid[128];
    open_session(f, NULL, sid);
    resp r;

    /* No session id on a request other than initialize. */
    http(f, "POST", TOOLS_LIST, NULL, &r);
    assert_int_equal(r.status, 400);
    assert_int_equal(error_code(&r), INK_JSONRPC_INVALID_REQUEST);
    resp_free(&r);

    post_in(f, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", TOOLS_LIST, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    post_in(f, "short", TOOLS_LIST, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);

    char h_sid[160];
    snprintf(h_sid, sizeof h_sid, "Mcp-Session-Id: %s", sid);
    const char *bad_version[] = {h_sid, "MCP-Protocol-Version: 2025-06-18", NULL};
    http(f, "POST", TOOLS_LIST, bad_version, &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);

    /* Another identity does not see alice's session. */
    const char *as_bob[] = {h_sid, "Authorization: Bearer bob", NULL};
    http(f, "POST", TOOLS_LIST, as_bob, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http(f, "DELETE", NULL, as_bob, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);

    const char *only_sid[] = {h_sid, NULL};
    http(f, "DELETE", NULL, only_sid, &r);
    assert_int_equal(r.status, 204);
    resp_free(&r);
    post_in(f, sid, TOOLS_LIST, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http(f, "DELETE", NULL, only_sid, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    http(f, "DELETE", NULL, NULL, &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);
}

static void test_origin_and_auth(void **state)
{
    fixture *f = *state;
    resp r;
    const char *evil[] = {"Origin: http://evil.example", NULL};
    http(f, "POST", INIT_BODY, evil, &r);
    assert_int_equal(r.status, 403);
    resp_free(&r);

    const char *good[] = {"Origin: " ALLOWED_ORIGIN, NULL};
    http(f, "POST", INIT_BODY, good, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);

    char v[64];
    const char *noauth[] = {"Authorization:", NULL};
    http(f, "POST", INIT_BODY, noauth, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(resp_header(&r, "WWW-Authenticate", v, sizeof v));
    assert_string_equal(v, "Bearer");
    resp_free(&r);

    const char *badauth[] = {"Authorization: Bearer mallory", NULL};
    http(f, "POST", INIT_BODY, badauth, &r);
    assert_int_equal(r.status, 401);
    resp_free(&r);

    /* bob gets a session of his own. */
    char sid[128];
    open_session(f, "Authorization: Bearer bob", sid);
}

static void test_async_sse(void **state)
{
    fixture *f = *state;
    char sid[128];
    open_session(f, NULL, sid);
    resp r;
    post_in(f, sid,
            "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":"
            "\"slow\",\"arguments\":{},\"_meta\":{\"progressToken\":\"p1\"}}}",
            &r);
    assert_int_equal(r.status, 200);
    assert_content_type(&r, "text/event-stream");
    const char *progress = strstr(r.body, "event: message\ndata: {\"jsonrpc\":\"2.0\","
                                          "\"method\":\"notifications/progress\"");
    assert_non_null(progress);
    assert_non_null(strstr(progress, "\"progressToken\":\"p1\""));
    assert_non_null(strstr(progress, "\"message\":\"halfway\""));
    const char *result = strstr(r.body, "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":");
    assert_non_null(result);
    assert_true(result > progress);
    assert_non_null(strstr(result, "slow done"));
    /* The stream ends with the response. */
    assert_string_equal(r.body + r.blen - 3, "}\n\n");
    resp_free(&r);
}

static void test_body_errors(void **state)
{
    fixture *f = *state;
    char sid[128];
    open_session(f, NULL, sid);
    resp r;

    /* Refused from Content-Length alone: curl waits for 100 Continue and
     * never sends the body. */
    size_t big = 64 * 1024;
    char *body = ink_xmalloc(big);
    memset(body, ' ', big);
    body[0] = '{';
    body[big - 1] = '}';
    char h_sid[160];
    snprintf(h_sid, sizeof h_sid, "Mcp-Session-Id: %s", sid);
    const char *expect[] = {h_sid, "Expect: 100-continue", NULL};
    http_ex(f, "POST", "/mcp", body, big, expect, &r);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    /* Chunked, without a Content-Length: refused once the body passes the
     * limit. */
    const char *chunked[] = {h_sid, "Transfer-Encoding: chunked", NULL};
    http_ex(f, "POST", "/mcp", body, big, chunked, &r);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    free(body);

    post_in(f, sid, "{\"jsonrpc\":", &r);
    assert_int_equal(r.status, 400);
    assert_content_type(&r, "application/json");
    assert_int_equal(error_code(&r), INK_JSONRPC_PARSE_ERROR);
    resp_free(&r);
    /* Before any session too. */
    http(f, "POST", "not json", NULL, &r);
    assert_int_equal(r.status, 400);
    assert_int_equal(error_code(&r), INK_JSONRPC_PARSE_ERROR);
    resp_free(&r);
    /* JSON, but not JSON-RPC. */
    post_in(f, sid, "[1]", &r);
    assert_int_equal(r.status, 400);
    assert_int_equal(error_code(&r), INK_JSONRPC_INVALID_REQUEST);
    resp_free(&r);
}

static void test_http_errors(void **state)
{
    fixture *f = *state;
    char sid[128];
    open_session(f, NULL, sid);
    char h_sid[160];
    snprintf(h_sid, sizeof h_sid, "Mcp-Session-Id: %s", sid);
    resp r;
    char v[64];

    /* No server-initiated stream: GET is 405, as the spec allows. */
    const char *get[] = {h_sid, "Accept: text/event-stream", NULL};
    http(f, "GET", NULL, get, &r);
    assert_int_equal(r.status, 405);
    assert_non_null(resp_header(&r, "Allow", v, sizeof v));
    assert_string_equal(v, "POST, DELETE");
    resp_free(&r);
    http(f, "PUT", TOOLS_LIST, NULL, &r);
    assert_int_equal(r.status, 405);
    resp_free(&r);
    http_ex(f, "POST", "/other", TOOLS_LIST, strlen(TOOLS_LIST), NULL, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);

    const char *text[] = {h_sid, "Content-Type: text/plain", NULL};
    http(f, "POST", TOOLS_LIST, text, &r);
    assert_int_equal(r.status, 415);
    resp_free(&r);
    const char *html[] = {h_sid, "Accept: text/html", NULL};
    http(f, "POST", TOOLS_LIST, html, &r);
    assert_int_equal(r.status, 406);
    resp_free(&r);
    const char *json_only[] = {h_sid, "Accept: application/json", NULL};
    http(f, "POST", TOOLS_LIST, json_only, &r);
    assert_int_equal(r.status, 406);
    resp_free(&r);
    /* Wildcards admit both; no Accept at all means anything. */
    const char *any[] = {h_sid, "Accept: */*;q=0.8", NULL};
    http(f, "POST", TOOLS_LIST, any, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    const char *none[] = {h_sid, "Accept:", NULL};
    http(f, "POST", TOOLS_LIST, none, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

/* Stopping with a call in flight ends its stream and cancels it. The POST
 * runs on a thread of its own and fails when the server goes: no cmocka
 * asserts there. */
typedef struct slow_post {
    fixture *f;
    char sid[128];
} slow_post;

static void *post_slow(void *arg)
{
    slow_post *sp = arg;
    char url[128], h_sid[160];
    snprintf(url, sizeof url, "%s/mcp", sp->f->base);
    snprintf(h_sid, sizeof h_sid, "Mcp-Session-Id: %s", sp->sid);
    struct curl_slist *list = curl_slist_append(NULL, "Content-Type: application/json");
    list = curl_slist_append(list, "Accept: application/json, text/event-stream");
    list = curl_slist_append(list, "Authorization: Bearer alice");
    list = curl_slist_append(list, h_sid);
    resp r = {0};
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS,
                     "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{"
                     "\"name\":\"slow\",\"arguments\":{}}}");
    curl_easy_perform(c);
    curl_easy_cleanup(c);
    curl_slist_free_all(list);
    resp_free(&r);
    return NULL;
}

static void test_idle_expiry(void **state)
{
    fixture *f = *state;
    ink_mcp_http_stop(f->http);
    const char *origins[] = {ALLOWED_ORIGIN};
    ink_mcp_http_opts o = {
        .listen = "127.0.0.1:0",
        .allowed_origins = origins,
        .nallowed_origins = 1,
        .session_idle_ms = 100,
    };
    ink_err err = {0};
    f->http = ink_mcp_http_start(f->srv, &o, &err);
    assert_non_null(f->http);
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%d", ink_mcp_http_port(f->http));
    char sid[128];
    open_session(f, NULL, sid);
    resp r;
    post_in(f, sid, TOOLS_LIST, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    usleep(300 * 1000);
    post_in(f, sid, TOOLS_LIST, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
}

static void test_stop_with_call_in_flight(void **state)
{
    fixture *f = *state;
    slow_post sp = {.f = f};
    open_session(f, NULL, sp.sid);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, post_slow, &sp), 0);
    /* Until the tool has started. */
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&f->mu);
        size_t n = f->nthreads;
        pthread_mutex_unlock(&f->mu);
        if (n > 0)
            break;
        usleep(5 * 1000);
    }
    ink_mcp_http_stop(f->http);
    f->http = NULL;
    pthread_join(t, NULL);
}

int main(void)
{
    test_block_sigpipe();
    ink_log_init("test", INK_LOG_WARN, INK_LOG_LOGFMT);
    curl_global_init(CURL_GLOBAL_DEFAULT);

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_initialize_and_list), T(test_session_errors),
        T(test_origin_and_auth),     T(test_async_sse),
        T(test_body_errors),         T(test_http_errors),
        T(test_idle_expiry),         T(test_stop_with_call_in_flight),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
