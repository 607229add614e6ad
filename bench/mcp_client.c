/* A small MCP Streamable HTTP client for the benches: see mcp_client.h. */
#include "mcp_client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mcp.h"
#include "util.h"

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    mcp_client *cl = arg;
    size_t k = size * n;
    if (cl->len + k + 1 > cl->cap) {
        cl->cap = (cl->len + k + 1) * 2;
        cl->body = ink_xrealloc(cl->body, cl->cap);
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
    mcp_client *cl = arg;
    header_value(p, size * n, "Mcp-Session-Id", cl->sid, sizeof cl->sid);
    header_value(p, size * n, "Content-Type", cl->ctype, sizeof cl->ctype);
    return size * n;
}

static void set_headers(mcp_client *cl, const char *protocol)
{
    curl_slist_free_all(cl->hdrs);
    char *auth = ink_xasprintf("Authorization: Bearer %s", cl->key);
    struct curl_slist *l = curl_slist_append(NULL, auth);
    free(auth);
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

static void client_init(mcp_client *cl)
{
    cl->c = curl_easy_init();
    if (!cl->c) {
        fprintf(stderr, "%s: curl_easy_init failed\n", cl->name);
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

_Noreturn void mcp_client_die(const mcp_client *cl, const char *why)
{
    fprintf(stderr,
            "%s: %s\n  request:  POST %s (Mcp-Session-Id: %s)\n    %s\n"
            "  response: HTTP %ld, Content-Type: %s\n    %s\n",
            cl->name, why, cl->url, *cl->sid ? cl->sid : "none",
            cl->last_req ? cl->last_req : "(none)", cl->last_status,
            *cl->ctype ? cl->ctype : "none", cl->len ? cl->body : "(empty body)");
    exit(1);
}

/* Formats the next request into cl->req. */
__attribute__((format(printf, 2, 3))) static const char *format_req(mcp_client *cl, const char *fmt,
                                                                    ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cl->req, cl->req_cap, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    if ((size_t)n >= cl->req_cap) {
        cl->req_cap = (size_t)n + 1;
        cl->req = ink_xrealloc(cl->req, cl->req_cap);
        va_start(ap, fmt);
        vsnprintf(cl->req, cl->req_cap, fmt, ap);
        va_end(ap);
    }
    return cl->req;
}

json_t *mcp_client_post(mcp_client *cl, const char *body, long want_id)
{
    cl->len = 0;
    cl->ctype[0] = '\0';
    cl->last_req = body;
    cl->last_status = 0;
    curl_easy_setopt(cl->c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(cl->c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    CURLcode rc = curl_easy_perform(cl->c);
    curl_easy_getinfo(cl->c, CURLINFO_RESPONSE_CODE, &cl->last_status);
    if (rc != CURLE_OK)
        mcp_client_die(cl, curl_easy_strerror(rc));
    if (want_id < 0) {
        if (cl->last_status != 202)
            mcp_client_die(cl, "notification not accepted (want 202)");
        return NULL;
    }
    if (cl->last_status != 200)
        mcp_client_die(cl, "HTTP status is not 200");
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
        mcp_client_die(cl, "unexpected Content-Type");
    }
    if (!found)
        mcp_client_die(cl, "no JSON-RPC response with the request's id");
    if (!json_is_object(json_object_get(found, "result")))
        mcp_client_die(cl, "the response is not a result");
    return found;
}

void mcp_client_open(mcp_client *cl)
{
    client_init(cl);
    const char *body =
        format_req(cl,
                   "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"initialize\",\"params\":{"
                   "\"protocolVersion\":\"%s\",\"capabilities\":{},"
                   "\"clientInfo\":{\"name\":\"%s\",\"version\":\"1\"}}}",
                   cl->next_id + 1, INK_MCP_LATEST_VERSION, cl->name);
    json_t *r = mcp_client_post(cl, body, ++cl->next_id);
    if (!*cl->sid)
        mcp_client_die(cl, "initialize answered without Mcp-Session-Id");
    const char *v =
        json_string_value(json_object_get(json_object_get(r, "result"), "protocolVersion"));
    char protocol[32];
    snprintf(protocol, sizeof protocol, "%s", v ? v : INK_MCP_LATEST_VERSION);
    json_decref(r);
    set_headers(cl, protocol);
    mcp_client_post(cl, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", -1);
}

void mcp_client_close(mcp_client *cl)
{
    cl->len = 0;
    curl_easy_setopt(cl->c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(cl->c, CURLOPT_CUSTOMREQUEST, "DELETE");
    long status = 0;
    if (curl_easy_perform(cl->c) == CURLE_OK)
        curl_easy_getinfo(cl->c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 204)
        fprintf(stderr, "%s: DELETE session: HTTP %ld\n", cl->name, status);
    curl_easy_cleanup(cl->c);
    curl_slist_free_all(cl->hdrs);
    free(cl->body);
    free(cl->req);
    cl->c = NULL;
    cl->hdrs = NULL;
    cl->body = cl->req = NULL;
    cl->last_req = NULL;
    cl->len = cl->cap = cl->req_cap = 0;
}

void mcp_client_ping(mcp_client *cl)
{
    const char *body =
        format_req(cl, "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"ping\"}", cl->next_id + 1);
    json_decref(mcp_client_post(cl, body, ++cl->next_id));
}

json_t *mcp_client_call_tool(mcp_client *cl, const char *tool, const char *args_json)
{
    const char *body = format_req(cl,
                                  "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"tools/call\","
                                  "\"params\":{\"name\":\"%s\",\"arguments\":%s}}",
                                  cl->next_id + 1, tool, args_json);
    json_t *r = mcp_client_post(cl, body, ++cl->next_id);
    json_t *res = json_incref(json_object_get(r, "result"));
    json_decref(r);
    return res;
}
