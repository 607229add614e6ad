/* MCP sessions: lifecycle, tools/list, tools/call, logging/setLevel,
 * progress and cancellation, over whatever transport feeds them.
 *
 * Lifetimes. A session is referenced by its owner and by every tool call
 * whose handler has not completed yet, so a handler finishing on another
 * thread after ink_mcp_session_free() still finds valid memory (and emits
 * nothing). A call is owned by its handler until completed; the session's
 * in-flight list only indexes the calls whose response is still owed, and
 * a call leaves it when answered, cancelled or when the session ends.
 *
 * Routes. Every incoming message gets a route: where its responses and the
 * notifications of its calls go, and how many of its requests are still
 * owed (plus one while the message is being dispatched). A batch collects
 * its responses there and is emitted as one array when the last is in. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mcp.h"
#include "util.h"

/* Newest first: an unknown revision is answered with the first. */
static const char *const versions[] = {"2025-11-25", "2025-06-18", "2025-03-26"};

/* logging/setLevel levels, in order of severity (RFC 5424). */
static const char *const log_levels[] = {"debug", "info",     "notice", "warning",
                                         "error", "critical", "alert",  "emergency"};
#define DEFAULT_LOG_LEVEL 1 /* info */

typedef struct tool_entry {
    char *name, *title, *description;
    ink_mcp_schema *input, *output;
    bool read_only, destructive, idempotent;
    void (*handler)(ink_mcp_call *call, const json_t *arguments, void *ctx);
    void (*on_invalid)(ink_mcp_call *call, const json_t *arguments, const char *message, void *ctx);
    void *ctx;
} tool_entry;

struct ink_mcp_server {
    char *name, *version, *instructions;
    tool_entry *tools;
    size_t ntools, cap;
    size_t page_size, max_message;
};

typedef struct route {
    ink_mcp_sink sink;
    int pending;   /* requests owed + 1 while dispatching */
    json_t *batch; /* responses of a batch, emitted together; NULL otherwise */
} route;

typedef enum { SES_NEW, SES_INITIALIZED, SES_READY } ses_state;

struct ink_mcp_session {
    ink_mcp_server *srv;
    ink_mcp_emit_fn emit;
    void *emit_arg;
    void *auth;

    pthread_mutex_t mu;
    pthread_cond_t idle; /* signalled when the in-flight list empties */
    int refs;            /* owner + calls not completed by their handlers */
    bool closed;
    ses_state state;
    const char *version; /* one of versions[], once initialized */
    int log_level;       /* index into log_levels */
    char client[96];     /* clientInfo name/version, for our logs */
    ink_mcp_call *inflight;
    size_t ninflight;
};

struct ink_mcp_call {
    ink_mcp_session *ses;
    const tool_entry *tool;
    json_t *id, *args, *progress_token;
    route *route;
    atomic_bool cancelled;
    bool answered; /* out of the in-flight list: no response or notification any more */
    bool has_progress;
    double last_progress;
    int64_t started_ms;
    ink_mcp_call *next;
};

/* ================================================================ server */

ink_mcp_server *ink_mcp_server_new(const char *name, const char *version, const char *instructions)
{
    ink_mcp_server *s = ink_xcalloc(1, sizeof *s);
    s->name = ink_xstrdup(name);
    s->version = ink_xstrdup(version);
    s->instructions = instructions ? ink_xstrdup(instructions) : NULL;
    s->page_size = INK_MCP_DEFAULT_PAGE_SIZE;
    s->max_message = INK_MCP_DEFAULT_MAX_MESSAGE;
    return s;
}

void ink_mcp_server_set_page_size(ink_mcp_server *s, size_t n)
{
    s->page_size = n ? n : 1;
}

void ink_mcp_server_set_max_message(ink_mcp_server *s, size_t bytes)
{
    s->max_message = bytes;
}

size_t ink_mcp_server_max_message(const ink_mcp_server *s)
{
    return s->max_message;
}

static bool valid_tool_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > INK_MCP_TOOL_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

static const tool_entry *find_tool(const ink_mcp_server *s, const char *name)
{
    for (size_t i = 0; i < s->ntools; i++)
        if (strcmp(s->tools[i].name, name) == 0)
            return &s->tools[i];
    return NULL;
}

/* Tool arguments and structured content are JSON objects in MCP, so both
 * schemas must describe one. */
static ink_mcp_schema *parse_object_schema(const char *tool, const char *which, const char *text,
                                           ink_err *err)
{
    ink_mcp_schema *sc = ink_mcp_schema_parse(text, err);
    if (!sc) {
        ink_err_wrap(err, "tool %s: %s schema", tool, which);
        return NULL;
    }
    const char *type = ink_mcp_schema_root_type(sc);
    if (!type || strcmp(type, "object") != 0) {
        ink_mcp_schema_free(sc);
        ink_err_set(err, 0, "tool %s: %s schema must have \"type\": \"object\" at its root", tool,
                    which);
        return NULL;
    }
    return sc;
}

int ink_mcp_server_add_tool(ink_mcp_server *s, const ink_mcp_tool *t, ink_err *err)
{
    if (!valid_tool_name(t->name))
        return ink_err_set(err, 0, "tool name '%s': expected 1 to %d of A-Z a-z 0-9 _ - .",
                           t->name ? t->name : "", INK_MCP_TOOL_NAME_MAX);
    if (find_tool(s, t->name))
        return ink_err_set(err, 0, "tool %s: added twice", t->name);
    if (!t->handler)
        return ink_err_set(err, 0, "tool %s: no handler", t->name);
    ink_mcp_schema *in = parse_object_schema(t->name, "input", t->input_schema_json, err);
    if (!in)
        return -1;
    ink_mcp_schema *out = NULL;
    if (t->output_schema_json) {
        out = parse_object_schema(t->name, "output", t->output_schema_json, err);
        if (!out) {
            ink_mcp_schema_free(in);
            return -1;
        }
    }
    if (s->ntools == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 8;
        s->tools = realloc(s->tools, s->cap * sizeof *s->tools);
        if (!s->tools)
            abort();
    }
    s->tools[s->ntools++] = (tool_entry){
        .name = ink_xstrdup(t->name),
        .title = t->title ? ink_xstrdup(t->title) : NULL,
        .description = t->description ? ink_xstrdup(t->description) : NULL,
        .input = in,
        .output = out,
        .read_only = t->read_only,
        .destructive = t->destructive,
        .idempotent = t->idempotent,
        .handler = t->handler,
        .on_invalid = t->on_invalid,
        .ctx = t->ctx,
    };
    return 0;
}

void ink_mcp_server_free(ink_mcp_server *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ntools; i++) {
        tool_entry *t = &s->tools[i];
        free(t->name);
        free(t->title);
        free(t->description);
        ink_mcp_schema_free(t->input);
        ink_mcp_schema_free(t->output);
    }
    free(s->tools);
    free(s->name);
    free(s->version);
    free(s->instructions);
    free(s);
}

/* =============================================================== session */

ink_mcp_session *ink_mcp_session_new(ink_mcp_server *s, ink_mcp_emit_fn emit, void *arg, void *auth)
{
    ink_mcp_session *ses = ink_xcalloc(1, sizeof *ses);
    ses->srv = s;
    ses->emit = emit;
    ses->emit_arg = arg;
    ses->auth = auth;
    pthread_mutex_init(&ses->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ses->idle, &ca);
    pthread_condattr_destroy(&ca);
    ses->refs = 1;
    ses->state = SES_NEW;
    ses->log_level = DEFAULT_LOG_LEVEL;
    return ses;
}

static void session_destroy(ink_mcp_session *ses)
{
    pthread_cond_destroy(&ses->idle);
    pthread_mutex_destroy(&ses->mu);
    free(ses);
}

/* Drops one reference; the last one frees the session. */
static void session_unref(ink_mcp_session *ses)
{
    pthread_mutex_lock(&ses->mu);
    bool last = --ses->refs == 0;
    pthread_mutex_unlock(&ses->mu);
    if (last)
        session_destroy(ses);
}

/* ---- emitting (all with ses->mu held) ---- */

static void emit_locked(ink_mcp_session *ses, const ink_mcp_sink *sink, json_t *msg)
{
    if (!ses->closed && sink->emit) {
        cleanup_free char *line = ink_jsonrpc_dump(msg);
        sink->emit(sink->arg, line);
    }
    json_decref(msg);
}

static route *route_new(ink_mcp_session *ses, const ink_mcp_sink *sink)
{
    route *r = ink_xcalloc(1, sizeof *r);
    if (sink)
        r->sink = *sink;
    else
        r->sink = (ink_mcp_sink){.emit = ses->emit, .arg = ses->emit_arg};
    r->pending = 1;
    return r;
}

/* One owed response (or the dispatch itself) is settled; the last one
 * flushes a batch and tells the transport. */
static void route_release_locked(ink_mcp_session *ses, route *r)
{
    if (--r->pending > 0)
        return;
    if (r->batch) {
        if (json_array_size(r->batch) > 0)
            emit_locked(ses, &r->sink, r->batch);
        else
            json_decref(r->batch);
    }
    if (r->sink.done)
        r->sink.done(r->sink.arg);
    free(r);
}

/* A response to a request of route r: alone on a line, or into the batch. */
static void respond_locked(ink_mcp_session *ses, route *r, json_t *msg)
{
    if (r->batch)
        json_array_append_new(r->batch, msg);
    else
        emit_locked(ses, &r->sink, msg);
}

static void respond_error_locked(ink_mcp_session *ses, route *r, const json_t *id, int code,
                                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void respond_error_locked(ink_mcp_session *ses, route *r, const json_t *id, int code,
                                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        abort();
    va_end(ap);
    respond_locked(ses, r, ink_jsonrpc_error(id, code, msg));
    free(msg);
}

/* ---- the in-flight list (ses->mu held) ---- */

static ink_mcp_call *inflight_find(ink_mcp_session *ses, const json_t *id)
{
    for (ink_mcp_call *c = ses->inflight; c; c = c->next)
        if (json_equal(c->id, id))
            return c;
    return NULL;
}

/* Takes c out of the list: from now on nothing is emitted for it. */
static void inflight_remove(ink_mcp_session *ses, ink_mcp_call *c)
{
    for (ink_mcp_call **p = &ses->inflight; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    c->next = NULL;
    c->answered = true;
    if (--ses->ninflight == 0)
        pthread_cond_broadcast(&ses->idle);
    route_release_locked(ses, c->route);
    c->route = NULL;
}

/* ============================================================== methods */

static const char *negotiate(const char *asked)
{
    for (size_t i = 0; i < INK_ARRAY_LEN(versions); i++)
        if (strcmp(asked, versions[i]) == 0)
            return versions[i];
    return versions[0];
}

/* structuredContent, titles and output schemas arrived with 2025-06-18. */
static bool has_structured(const char *version)
{
    return strcmp(version, "2025-03-26") != 0;
}

static void m_initialize(ink_mcp_session *ses, route *r, const json_t *id, const json_t *params)
{
    if (ses->state != SES_NEW) {
        respond_error_locked(ses, r, id, INK_JSONRPC_INVALID_REQUEST,
                             "session already initialized");
        return;
    }
    const char *asked = json_string_value(json_object_get(params, "protocolVersion"));
    if (!asked) {
        respond_error_locked(ses, r, id, INK_JSONRPC_INVALID_PARAMS,
                             "initialize: params.protocolVersion must be a string");
        return;
    }
    ses->version = negotiate(asked);
    ses->state = SES_INITIALIZED;
    json_t *ci = json_object_get(params, "clientInfo");
    snprintf(ses->client, sizeof ses->client, "%s/%s",
             json_string_value(json_object_get(ci, "name")) ?: "?",
             json_string_value(json_object_get(ci, "version")) ?: "?");
    LOG_INFO("mcp session initialized", "client", ses->client, "asked", asked, "version",
             ses->version);

    ink_mcp_server *s = ses->srv;
    json_t *res =
        json_pack("{s:s, s:{s:{s:b}, s:{}}, s:{s:o, s:o}}", "protocolVersion", ses->version,
                  "capabilities", "tools", "listChanged", 0, "logging", "serverInfo", "name",
                  ink_json_text(s->name), "version", ink_json_text(s->version));
    if (!res)
        abort();
    if (s->instructions)
        json_object_set_new(res, "instructions", ink_json_text(s->instructions));
    respond_locked(ses, r, ink_jsonrpc_result(id, res));
}

/* Cursors are opaque to clients; ours is the index of the next tool,
 * checked strictly so that a forged one is -32602, not a wrong page. */
static bool parse_cursor(const char *cursor, size_t ntools, size_t *out)
{
    if (cursor[0] != 't' || cursor[1] < '1' || cursor[1] > '9')
        return false;
    size_t v = 0;
    for (const char *p = cursor + 1; *p; p++) {
        if (*p < '0' || *p > '9' || v > ntools)
            return false;
        v = v * 10 + (size_t)(*p - '0');
    }
    if (v >= ntools)
        return false;
    *out = v;
    return true;
}

static json_t *tool_json(const tool_entry *t, const char *version)
{
    bool modern = has_structured(version);
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(t->name));
    if (t->title && modern)
        json_object_set_new(o, "title", ink_json_text(t->title));
    if (t->description)
        json_object_set_new(o, "description", ink_json_text(t->description));
    /* Copies: the server's schemas are shared by every session's thread. */
    json_object_set_new(o, "inputSchema", json_deep_copy(ink_mcp_schema_json(t->input)));
    if (t->output && modern)
        json_object_set_new(o, "outputSchema", json_deep_copy(ink_mcp_schema_json(t->output)));
    json_t *ann = json_object();
    /* 2025-03-26 has the display title only here; later revisions read it
     * here too when the top-level one is missing. */
    if (t->title)
        json_object_set_new(ann, "title", ink_json_text(t->title));
    json_object_set_new(ann, "readOnlyHint", json_boolean(t->read_only));
    json_object_set_new(ann, "destructiveHint", json_boolean(t->destructive));
    json_object_set_new(ann, "idempotentHint", json_boolean(t->idempotent));
    json_object_set_new(o, "annotations", ann);
    return o;
}

static void m_tools_list(ink_mcp_session *ses, route *r, const json_t *id, const json_t *params)
{
    const ink_mcp_server *s = ses->srv;
    size_t start = 0;
    json_t *cursor = json_object_get(params, "cursor");
    if (cursor && !json_is_null(cursor)) {
        if (!json_is_string(cursor) ||
            !parse_cursor(json_string_value(cursor), s->ntools, &start)) {
            respond_error_locked(ses, r, id, INK_JSONRPC_INVALID_PARAMS,
                                 "tools/list: invalid cursor");
            return;
        }
    }
    size_t end = start + s->page_size < s->ntools ? start + s->page_size : s->ntools;
    json_t *tools = json_array();
    for (size_t i = start; i < end; i++)
        json_array_append_new(tools, tool_json(&s->tools[i], ses->version));
    json_t *res = json_object();
    json_object_set_new(res, "tools", tools);
    if (end < s->ntools) {
        char next[32];
        snprintf(next, sizeof next, "t%zu", end);
        json_object_set_new(res, "nextCursor", json_string(next));
    }
    respond_locked(ses, r, ink_jsonrpc_result(id, res));
}

static int level_index(const char *level)
{
    for (size_t i = 0; level && i < INK_ARRAY_LEN(log_levels); i++)
        if (strcmp(level, log_levels[i]) == 0)
            return (int)i;
    return -1;
}

static void m_set_level(ink_mcp_session *ses, route *r, const json_t *id, const json_t *params)
{
    int lvl = level_index(json_string_value(json_object_get(params, "level")));
    if (lvl < 0) {
        respond_error_locked(ses, r, id, INK_JSONRPC_INVALID_PARAMS,
                             "logging/setLevel: params.level must be one of debug, info, notice, "
                             "warning, error, critical, alert, emergency");
        return;
    }
    ses->log_level = lvl;
    respond_locked(ses, r, ink_jsonrpc_result(id, NULL));
}

/* ---- tools/call ---- */

static json_t *text_content(const char *text)
{
    json_t *c = json_object();
    json_object_set_new(c, "type", json_string("text"));
    json_object_set_new(c, "text", ink_json_text(text));
    return c;
}

static json_t *tool_error_result(const char *message)
{
    json_t *res = json_object();
    json_t *content = json_array();
    json_array_append_new(content, text_content(message));
    json_object_set_new(res, "content", content);
    json_object_set_new(res, "isError", json_true());
    return res;
}

/* Completes c with a CallToolResult (stolen): answers it unless it was
 * cancelled or its session ended, frees it, and drops its session
 * reference. */
static void call_finish(ink_mcp_call *c, json_t *result, bool is_error)
{
    ink_mcp_session *ses = c->ses;
    int64_t ms = ink_mono_ms() - c->started_ms;
    pthread_mutex_lock(&ses->mu);
    bool sent = !c->answered;
    if (sent) {
        respond_locked(ses, c->route, ink_jsonrpc_result(c->id, INK_STEAL(result)));
        inflight_remove(ses, c);
    }
    bool last = --ses->refs == 0;
    pthread_mutex_unlock(&ses->mu);
    json_decref(result);
    LOG_DEBUG("mcp tool call done", "tool", c->tool->name, "ms", LOG_INT(ms), "error",
              is_error ? "true" : "false", "answered", sent ? "true" : "false");
    json_decref(c->id);
    json_decref(c->args);
    json_decref(c->progress_token);
    free(c);
    if (last)
        session_destroy(ses);
}

static void m_tools_call(ink_mcp_session *ses, route *r, const json_t *id, const json_t *params)
{
    const char *name = json_string_value(json_object_get(params, "name"));
    if (!name) {
        respond_error_locked(ses, r, id, INK_JSONRPC_INVALID_PARAMS,
                             "tools/call: params.name must be a string");
        return;
    }
    const tool_entry *t = find_tool(ses->srv, name);
    if (!t) {
        respond_error_locked(ses, r, id, INK_JSONRPC_INVALID_PARAMS, "Unknown tool: %s", name);
        return;
    }
    json_t *args = json_object_get(params, "arguments");
    if (args && !json_is_object(args)) {
        respond_error_locked(ses, r, id, INK_JSONRPC_INVALID_PARAMS,
                             "tools/call: params.arguments must be an object");
        return;
    }
    json_t *token = json_object_get(json_object_get(params, "_meta"), "progressToken");
    if (token && !ink_jsonrpc_valid_id(token)) {
        respond_error_locked(ses, r, id, INK_JSONRPC_INVALID_PARAMS,
                             "tools/call: params._meta.progressToken must be a string or an "
                             "integer");
        return;
    }

    ink_mcp_call *c = ink_xcalloc(1, sizeof *c);
    c->ses = ses;
    c->tool = t;
    c->id = json_deep_copy(id);
    /* A copy the handler may keep until it completes, whatever happens to
     * the message it came in. */
    c->args = args ? json_deep_copy(args) : json_object();
    c->progress_token = token ? json_deep_copy(token) : NULL;
    c->route = r;
    c->started_ms = ink_mono_ms();
    atomic_init(&c->cancelled, false);
    r->pending++;
    c->next = ses->inflight;
    ses->inflight = c;
    ses->ninflight++;
    ses->refs++;

    /* Handlers run (and may complete at once, taking the mutex) without
     * the session mutex held. */
    pthread_mutex_unlock(&ses->mu);
    ink_err err = {0};
    LOG_DEBUG("mcp tool call", "tool", t->name, "client", ses->client);
    /* Input validation failures are tool execution errors (2025-11-25,
     * SEP-1303): the model sees the message and can correct its call. */
    if (ink_mcp_schema_validate(t->input, c->args, "arguments", &err) < 0) {
        if (t->on_invalid)
            t->on_invalid(c, c->args, err.msg, t->ctx);
        call_finish(c, tool_error_result(err.msg), true);
    } else
        t->handler(c, c->args, t->ctx);
    pthread_mutex_lock(&ses->mu);
}

/* ---- notifications ---- */

static void n_cancelled(ink_mcp_session *ses, const json_t *params)
{
    json_t *rid = json_object_get(params, "requestId");
    if (!ink_jsonrpc_valid_id(rid))
        return;
    /* Unknown or already answered ids are ignored, as the spec allows:
     * the notification may cross the response on the wire. */
    ink_mcp_call *c = inflight_find(ses, rid);
    if (!c)
        return;
    const char *reason = json_string_value(json_object_get(params, "reason"));
    LOG_DEBUG("mcp tool call cancelled", "tool", c->tool->name, "reason", reason ? reason : "");
    atomic_store(&c->cancelled, true);
    inflight_remove(ses, c);
}

/* ============================================================= dispatch */

/* One request or notification, with ses->mu held. */
static void dispatch(ink_mcp_session *ses, route *r, const ink_jsonrpc_msg *m, bool in_batch)
{
    if (m->kind == INK_JSONRPC_NOTIFICATION) {
        if (strcmp(m->method, "notifications/initialized") == 0) {
            if (ses->state == SES_INITIALIZED)
                ses->state = SES_READY;
        } else if (strcmp(m->method, "notifications/cancelled") == 0) {
            n_cancelled(ses, m->params);
        }
        /* Anything else (roots/list_changed, progress, unknown ones) needs
         * nothing from this server, and notifications get no answer. */
        return;
    }

    const json_t *id = m->id;
    if (inflight_find(ses, id)) {
        /* The id would make two responses indistinguishable. */
        cleanup_free char *shown = ink_jsonrpc_dump(id);
        respond_error_locked(ses, r, id, INK_JSONRPC_INVALID_REQUEST,
                             "request id %s is already in use by a request in progress", shown);
        return;
    }
    if (m->params && !json_is_object(m->params)) {
        respond_error_locked(ses, r, id, INK_JSONRPC_INVALID_PARAMS, "%s: params must be an object",
                             m->method);
        return;
    }
    const char *method = m->method;
    if (strcmp(method, "ping") == 0) {
        respond_locked(ses, r, ink_jsonrpc_result(id, NULL));
        return;
    }
    if (strcmp(method, "initialize") == 0) {
        if (in_batch)
            respond_error_locked(ses, r, id, INK_JSONRPC_INVALID_REQUEST,
                                 "initialize must not be part of a batch");
        else
            m_initialize(ses, r, id, m->params);
        return;
    }
    /* Only ping may precede initialize. Requests between the initialize
     * response and notifications/initialized are served: the client has
     * what it needs by then, and some send both back to back. */
    if (ses->state == SES_NEW) {
        respond_error_locked(ses, r, id, INK_JSONRPC_INVALID_REQUEST,
                             "session not initialized: send initialize first");
        return;
    }
    if (strcmp(method, "tools/list") == 0)
        m_tools_list(ses, r, id, m->params);
    else if (strcmp(method, "tools/call") == 0)
        m_tools_call(ses, r, id, m->params);
    else if (strcmp(method, "logging/setLevel") == 0)
        m_set_level(ses, r, id, m->params);
    else
        respond_error_locked(ses, r, id, INK_JSONRPC_METHOD_NOT_FOUND, "Method not found: %s",
                             method);
}

/* Returns -1 when msg is not a JSON-RPC message at all. */
static int dispatch_one(ink_mcp_session *ses, route *r, json_t *msg, bool in_batch)
{
    ink_jsonrpc_msg m;
    ink_jsonrpc_classify(msg, &m);
    switch (m.kind) {
    case INK_JSONRPC_INVALID:
        respond_error_locked(ses, r, m.id, INK_JSONRPC_INVALID_REQUEST, "Invalid Request: %s",
                             m.why);
        return -1;
    case INK_JSONRPC_RESPONSE:
        /* This server sends no requests, so no response is expected. */
        LOG_DEBUG("mcp: ignoring an unexpected JSON-RPC response", "client", ses->client);
        return 0;
    default:
        dispatch(ses, r, &m, in_batch);
        return 0;
    }
}

int ink_mcp_session_handle_routed(ink_mcp_session *ses, const char *text, size_t len,
                                  const ink_mcp_sink *sink)
{
    size_t max = ses->srv->max_message;
    int rc = 0;
    json_t *msg = NULL;
    json_error_t jerr;
    pthread_mutex_lock(&ses->mu);
    route *r = route_new(ses, sink);
    if (len > max) {
        respond_error_locked(ses, r, NULL, INK_JSONRPC_INVALID_REQUEST,
                             "Invalid Request: message larger than %zu bytes", max);
        rc = -1;
        goto out;
    }
    /* Duplicate keys are refused: two readers could disagree on which
     * value counts (the audit trail and the tool, say). */
    msg = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!msg) {
        respond_error_locked(ses, r, NULL, INK_JSONRPC_PARSE_ERROR, "Parse error: %s (column %d)",
                             jerr.text, jerr.column);
        rc = -1;
        goto out;
    }
    if (json_is_array(msg)) {
        /* Batches exist in 2025-03-26 only (removed in 2025-06-18), and
         * initialize may never be batched, so no batch before it. */
        if (!ses->version || has_structured(ses->version) || json_array_size(msg) == 0) {
            respond_error_locked(ses, r, NULL, INK_JSONRPC_INVALID_REQUEST, "Invalid Request: %s",
                                 !ses->version || has_structured(ses->version)
                                     ? "JSON-RPC batches are not supported in this protocol version"
                                     : "empty batch");
            rc = -1;
            goto out;
        }
        r->batch = json_array();
        size_t i;
        json_t *el;
        /* Bad elements get their own errors; the batch as such is fine. */
        json_array_foreach(msg, i, el)
        {
            dispatch_one(ses, r, el, true);
        }
    } else if (json_is_object(msg)) {
        rc = dispatch_one(ses, r, msg, false);
    } else {
        respond_error_locked(ses, r, NULL, INK_JSONRPC_INVALID_REQUEST,
                             "Invalid Request: a JSON-RPC message must be an object");
        rc = -1;
    }
out:
    route_release_locked(ses, r);
    pthread_mutex_unlock(&ses->mu);
    json_decref(msg);
    return rc;
}

int ink_mcp_session_handle(ink_mcp_session *ses, const char *text, size_t len)
{
    return ink_mcp_session_handle_routed(ses, text, len, NULL);
}

const char *ink_mcp_session_protocol_version(ink_mcp_session *ses)
{
    pthread_mutex_lock(&ses->mu);
    const char *v = ses->version;
    pthread_mutex_unlock(&ses->mu);
    return v;
}

bool ink_mcp_session_wait_idle(ink_mcp_session *ses, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (timeout_ms > 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&ses->mu);
    while (ses->ninflight > 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&ses->idle, &ses->mu);
        } else if (pthread_cond_timedwait(&ses->idle, &ses->mu, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    bool idle = ses->ninflight == 0;
    pthread_mutex_unlock(&ses->mu);
    return idle;
}

void ink_mcp_session_free(ink_mcp_session *ses)
{
    if (!ses)
        return;
    pthread_mutex_lock(&ses->mu);
    /* Closed first: the done callbacks below run, but nothing is emitted. */
    ses->closed = true;
    while (ses->inflight) {
        ink_mcp_call *c = ses->inflight;
        atomic_store(&c->cancelled, true);
        inflight_remove(ses, c);
    }
    pthread_mutex_unlock(&ses->mu);
    session_unref(ses);
}

/* ============================================================ handlers */

void *ink_mcp_call_auth(ink_mcp_call *c)
{
    return c->ses->auth;
}

const char *ink_mcp_call_tool(ink_mcp_call *c)
{
    return c->tool->name;
}

bool ink_mcp_call_cancelled(ink_mcp_call *c)
{
    return atomic_load(&c->cancelled);
}

/* Integral values print as integers (progress 3, not 3.0). */
static json_t *json_num(double v)
{
    if (fabs(v) < 9007199254740992.0 && v == (double)(json_int_t)v)
        return json_integer((json_int_t)v);
    return json_real(v);
}

void ink_mcp_call_progress(ink_mcp_call *c, double progress, double total, const char *message)
{
    if (!c->progress_token || !isfinite(progress))
        return;
    ink_mcp_session *ses = c->ses;
    pthread_mutex_lock(&ses->mu);
    if (!c->answered && (!c->has_progress || progress > c->last_progress)) {
        c->has_progress = true;
        c->last_progress = progress;
        json_t *p = json_object();
        json_object_set_new(p, "progressToken", json_deep_copy(c->progress_token));
        json_object_set_new(p, "progress", json_num(progress));
        if (isfinite(total) && total > 0)
            json_object_set_new(p, "total", json_num(total));
        if (message)
            json_object_set_new(p, "message", ink_json_text(message));
        emit_locked(ses, &c->route->sink, ink_jsonrpc_notification("notifications/progress", p));
    }
    pthread_mutex_unlock(&ses->mu);
}

void ink_mcp_call_log(ink_mcp_call *c, const char *level, const char *text)
{
    int lvl = level_index(level);
    if (lvl < 0) {
        LOG_WARN("mcp: tool logged with an unknown level", "tool", c->tool->name, "level",
                 level ? level : "(null)");
        return;
    }
    ink_mcp_session *ses = c->ses;
    pthread_mutex_lock(&ses->mu);
    if (!c->answered && lvl >= ses->log_level) {
        json_t *p = json_object();
        json_object_set_new(p, "level", json_string(log_levels[lvl]));
        json_object_set_new(p, "logger", json_string(c->tool->name));
        json_object_set_new(p, "data", ink_json_text(text));
        emit_locked(ses, &c->route->sink, ink_jsonrpc_notification("notifications/message", p));
    }
    pthread_mutex_unlock(&ses->mu);
}

void ink_mcp_call_result(ink_mcp_call *c, json_t *structured, const char *text_summary)
{
    const tool_entry *t = c->tool;
    ink_err err = {0};
    const char *bad = NULL;
    if (structured && !json_is_object(structured))
        bad = "structured content is not an object";
    else if (t->output && !structured)
        bad = "structured content missing";
    else if (t->output &&
             ink_mcp_schema_validate(t->output, structured, "structuredContent", &err) < 0)
        bad = err.msg;
    if (bad) {
        LOG_ERROR("mcp tool result does not match its output schema", "tool", t->name, "error",
                  bad);
        json_decref(structured);
        cleanup_free char *msg = ink_xasprintf(
            "internal error: the result of %s does not match its output schema (%s)", t->name, bad);
        call_finish(c, tool_error_result(msg), true);
        return;
    }

    /* The revision is fixed once initialize is answered, which precedes
     * every call. */
    const char *version = c->ses->version;
    json_t *res = json_object();
    json_t *content = json_array();
    json_array_append_new(content, text_content(text_summary));
    if (structured && has_structured(version)) {
        json_object_set_new(res, "structuredContent", structured);
    } else if (structured) {
        /* A 2025-03-26 client cannot see structuredContent: the data goes
         * into a second text block as JSON so the model still gets it. */
        cleanup_free char *dump = ink_jsonrpc_dump(structured);
        json_array_append_new(content, text_content(dump));
        json_decref(structured);
    }
    json_object_set_new(res, "content", content);
    call_finish(c, res, false);
}

void ink_mcp_call_error(ink_mcp_call *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        abort();
    va_end(ap);
    call_finish(c, tool_error_result(msg), true);
    free(msg);
}
