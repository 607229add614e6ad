/* The Streamable HTTP transport (MCP 2025-11-25) over libmicrohttpd.
 *
 * Threads. MHD runs a thread per connection, so a POST whose tool call is
 * still running simply blocks its own connection thread in the SSE reader
 * until the session emits something for it: no suspend/resume, and no
 * busy polling (a reader returning 0 would be called again at once).
 * ink_mcp_http_stop() wakes every such reader before MHD joins the threads.
 *
 * Locks, always taken in this order: the session table (h->mu), a
 * session's own mutex (inside the core), the streams (h->smu). Emit and
 * done callbacks run under the session mutex and take only h->smu; the
 * table lock is never taken under either, so sessions are freed outside
 * it.
 *
 * Lifetimes. A table entry is referenced by the table and by every request
 * thread using its session, so DELETE or expiry never frees a session a
 * thread is still inside of (the core forbids that). A POST's stream is
 * referenced by the core's sink until its done runs and by the HTTP
 * response until MHD frees it; both always happen exactly once. */
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "log.h"
#include "mcp.h"
#include "util.h"

#define DEFAULT_LISTEN "127.0.0.1:7441"
#define DEFAULT_IDLE_MS ((int64_t)30 * 60 * 1000)
#define ENDPOINT "/mcp"
#define SESSION_HEADER "Mcp-Session-Id"
#define VERSION_HEADER "MCP-Protocol-Version"
#define SESSION_ID_BYTES 32 /* 256 bits, as 64 hex digits: visible ASCII */
/* An SSE stream with nothing to say sends a comment this often, so proxies
 * keep it open and a vanished client is noticed by the failing write. */
#define KEEPALIVE_MS 15000
/* Each connection is a thread: bound them. */
#define MAX_CONNECTIONS 256
#define CONNECTION_TIMEOUT_S 120

typedef struct entry {
    char id[2 * SESSION_ID_BYTES + 1];
    ink_mcp_session *ses;
    void *auth;
    int refs; /* the table + request threads using ses */
    bool linked;
    int64_t last_used_ms;
    struct entry *next;
} entry;

struct ink_mcp_http {
    ink_mcp_server *srv;
    struct MHD_Daemon *d;
    int port;
    char **origins;
    size_t norigins;
    size_t max_body;
    void *(*authenticate)(void *arg, const char *authorization);
    void *auth_arg;
    int64_t idle_ms;

    pthread_mutex_t mu; /* the session table */
    entry *sessions;

    pthread_mutex_t smu; /* every stream's state */
    pthread_cond_t scv;  /* something was emitted, a stream is done, or stopping */
    bool stopping;
};

/* What one POST gets back from the session. */
typedef struct stream {
    ink_mcp_http *h;
    int refs;
    bool done;   /* the sink's done ran: nothing more will come */
    size_t nmsg; /* messages emitted */
    char *first; /* the first of them, for a plain JSON answer */
    char *buf;   /* SSE bytes not sent yet, from off */
    size_t off, len, cap;
} stream;

/* Per request, from the headers to the end of the body. */
typedef struct req {
    void *auth;
    char *body;
    size_t len, cap;
    bool too_big;
} req;

/* ================================================================ replies */

static enum MHD_Result reply_raw(struct MHD_Connection *c, unsigned status, const char *ctype,
                                 const char *body, const char *hname, const char *hval)
{
    size_t len = body ? strlen(body) : 0;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    if (ctype)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (hname)
        MHD_add_response_header(r, hname, hval);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* HTTP-level refusals carry a JSON-RPC error too, so a client that only
 * reads bodies still learns why. */
static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, int code,
                                   const char *message, const char *hname, const char *hval)
{
    json_t *e = ink_jsonrpc_error(NULL, code, message);
    cleanup_free char *body = ink_jsonrpc_dump(e);
    json_decref(e);
    LOG_DEBUG("mcp http: refused", "status", LOG_INT(status), "why", message);
    return reply_raw(c, status, "application/json", body, hname, hval);
}

/* ================================================================ streams */

static stream *stream_new(ink_mcp_http *h)
{
    stream *st = ink_xcalloc(1, sizeof *st);
    st->h = h;
    st->refs = 2; /* the sink and the HTTP side */
    return st;
}

static void stream_unref_locked(stream *st, bool *freed)
{
    *freed = --st->refs == 0;
}

static void stream_free(stream *st)
{
    free(st->first);
    free(st->buf);
    free(st);
}

static void stream_unref(stream *st)
{
    ink_mcp_http *h = st->h;
    bool freed;
    pthread_mutex_lock(&h->smu);
    stream_unref_locked(st, &freed);
    pthread_mutex_unlock(&h->smu);
    if (freed)
        stream_free(st);
}

static void stream_append(stream *st, const char *a, size_t alen)
{
    if (st->off > 0 && st->off == st->len)
        st->off = st->len = 0;
    if (st->len + alen > st->cap) {
        size_t cap = st->cap ? st->cap : 1024;
        while (cap < st->len + alen)
            cap *= 2;
        char *nb = realloc(st->buf, cap);
        if (!nb)
            abort();
        st->buf = nb;
        st->cap = cap;
    }
    memcpy(st->buf + st->len, a, alen);
    st->len += alen;
}

/* Emitted lines are single-line JSON (ink_jsonrpc_dump escapes every
 * control character), so one data: field holds a whole message. */
static void stream_emit(void *arg, const char *line)
{
    stream *st = arg;
    ink_mcp_http *h = st->h;
    pthread_mutex_lock(&h->smu);
    if (!st->first)
        st->first = ink_xstrdup(line);
    st->nmsg++;
    static const char pre[] = "event: message\ndata: ";
    stream_append(st, pre, sizeof pre - 1);
    stream_append(st, line, strlen(line));
    stream_append(st, "\n\n", 2);
    pthread_cond_broadcast(&h->scv);
    pthread_mutex_unlock(&h->smu);
}

static void stream_done(void *arg)
{
    stream *st = arg;
    ink_mcp_http *h = st->h;
    bool freed;
    pthread_mutex_lock(&h->smu);
    st->done = true;
    pthread_cond_broadcast(&h->scv);
    stream_unref_locked(st, &freed);
    pthread_mutex_unlock(&h->smu);
    if (freed)
        stream_free(st);
}

static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* MHD's content reader, on the connection's own thread: blocks until there
 * is something to send. */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    stream *st = cls;
    ink_mcp_http *h = st->h;
    ssize_t ret;
    pthread_mutex_lock(&h->smu);
    struct timespec deadline;
    deadline_in(&deadline, KEEPALIVE_MS);
    while (st->off == st->len && !st->done && !h->stopping) {
        if (pthread_cond_timedwait(&h->scv, &h->smu, &deadline) != 0 && st->off == st->len &&
            !st->done && !h->stopping) {
            static const char ka[] = ": keepalive\n\n";
            stream_append(st, ka, sizeof ka - 1);
        }
    }
    if (st->off < st->len) {
        size_t n = st->len - st->off < max ? st->len - st->off : max;
        memcpy(out, st->buf + st->off, n);
        st->off += n;
        ret = (ssize_t)n;
    } else if (st->done) {
        ret = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        ret = MHD_CONTENT_READER_END_WITH_ERROR; /* stopping */
    }
    pthread_mutex_unlock(&h->smu);
    return ret;
}

static void stream_read_free(void *cls)
{
    stream_unref(cls);
}

/* ================================================================ sessions */

static bool same_id(const char *a, const char *b)
{
    /* Constant time over our ids' length: the id is the session's secret. */
    size_t n = strlen(b);
    if (n != 2 * SESSION_ID_BYTES)
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

static void entry_destroy(entry *e)
{
    ink_mcp_session_free(e->ses);
    free(e);
}

/* Unlinks sessions idle for too long into *dead (h->mu held). A session
 * with a request in progress or a call in flight is not idle. */
static void sweep_locked(ink_mcp_http *h, int64_t now, entry **dead)
{
    for (entry **p = &h->sessions; *p;) {
        entry *e = *p;
        if (e->refs == 1 && now - e->last_used_ms > h->idle_ms &&
            ink_mcp_session_wait_idle(e->ses, 0)) {
            *p = e->next;
            e->linked = false;
            e->refs--;
            e->next = *dead;
            *dead = e;
            LOG_INFO("mcp http: session expired", "idle_ms", LOG_INT(now - e->last_used_ms));
        } else {
            p = &e->next;
        }
    }
}

static void destroy_list(entry *dead)
{
    while (dead) {
        entry *next = dead->next;
        entry_destroy(dead);
        dead = next;
    }
}

/* The session named id for this caller, referenced; NULL when there is
 * none (or it belongs to someone else). */
static entry *session_get(ink_mcp_http *h, const char *id, void *auth)
{
    entry *dead = NULL, *found = NULL;
    int64_t now = ink_mono_ms();
    pthread_mutex_lock(&h->mu);
    sweep_locked(h, now, &dead);
    for (entry *e = h->sessions; e; e = e->next) {
        if (same_id(e->id, id) && e->auth == auth) {
            found = e;
            e->refs++;
            e->last_used_ms = now;
            break;
        }
    }
    pthread_mutex_unlock(&h->mu);
    destroy_list(dead);
    return found;
}

static void session_put(ink_mcp_http *h, entry *e)
{
    pthread_mutex_lock(&h->mu);
    e->last_used_ms = ink_mono_ms();
    bool last = --e->refs == 0;
    pthread_mutex_unlock(&h->mu);
    if (last)
        entry_destroy(e);
}

/* Takes e out of the table (DELETE); freed once no request uses it. */
static void session_remove(ink_mcp_http *h, entry *e)
{
    pthread_mutex_lock(&h->mu);
    if (e->linked) {
        for (entry **p = &h->sessions; *p; p = &(*p)->next) {
            if (*p == e) {
                *p = e->next;
                break;
            }
        }
        e->linked = false;
        e->refs--;
    }
    pthread_mutex_unlock(&h->mu);
}

/* ================================================================ headers */

static const char *header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* Whether a media type list (Accept) admits type/sub; parameters (q=...)
 * are ignored, since clients list what they take. */
static bool accepts(const char *list, const char *type, const char *sub)
{
    size_t tl = strlen(type), sl = strlen(sub);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = p + strcspn(p, ",;");
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *q = end;
        while (q > p && (q[-1] == ' ' || q[-1] == '\t'))
            q--;
        if (slash) {
            size_t a = (size_t)(slash - p), b = (size_t)(q - slash - 1);
            bool tok = (a == 1 && p[0] == '*') || (a == tl && strncasecmp(p, type, tl) == 0);
            bool sok =
                (b == 1 && slash[1] == '*') || (b == sl && strncasecmp(slash + 1, sub, sl) == 0);
            if (tok && sok)
                return true;
        }
        p = end + strcspn(end, ",");
    }
    return false;
}

static bool is_json_type(const char *ct)
{
    if (!ct)
        return false;
    size_t n = strcspn(ct, "; \t");
    return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

static bool origin_ok(const ink_mcp_http *h, const char *origin)
{
    if (!origin)
        return true; /* not a browser: DNS rebinding needs one */
    for (size_t i = 0; i < h->norigins; i++)
        if (strcmp(h->origins[i], origin) == 0)
            return true;
    return false;
}

/* ================================================================ POST */

/* Feeds the body to the session with a sink of its own and answers with
 * what came out: 400 (refused), 202 (nothing to answer), JSON (one message
 * ready) or SSE (more, or not yet). */
static enum MHD_Result answer_routed(ink_mcp_http *h, struct MHD_Connection *c,
                                     ink_mcp_session *ses, const req *rq, const char *new_id,
                                     bool *initialized)
{
    stream *st = stream_new(h);
    ink_mcp_sink sink = {.emit = stream_emit, .done = stream_done, .arg = st};
    int rc = ink_mcp_session_handle_routed(ses, rq->body, rq->len, &sink);
    if (initialized)
        *initialized = ink_mcp_session_protocol_version(ses) != NULL;
    const char *hname = new_id && initialized && *initialized ? SESSION_HEADER : NULL;

    pthread_mutex_lock(&h->smu);
    bool done = st->done;
    size_t nmsg = st->nmsg;
    pthread_mutex_unlock(&h->smu);

    enum MHD_Result ret;
    if (done && (rc < 0 || nmsg == 1)) {
        /* Once done, the stream is ours alone: no lock needed. */
        ret = reply_raw(c, rc < 0 ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_OK, "application/json",
                        st->first, hname, new_id);
        stream_unref(st);
        return ret;
    }
    if (done && nmsg == 0 && rc == 0) {
        /* Notifications and responses only. */
        ret = reply_raw(c, MHD_HTTP_ACCEPTED, NULL, NULL, hname, new_id);
        stream_unref(st);
        return ret;
    }
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
                                                               stream_read, st, stream_read_free);
    if (!r) {
        stream_unref(st);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    if (hname)
        MHD_add_response_header(r, hname, new_id);
    ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* A POST without a session id: only initialize may come so. */
static enum MHD_Result post_initialize(ink_mcp_http *h, struct MHD_Connection *c, const req *rq)
{
    json_error_t jerr;
    json_t *msg = json_loadb(rq->body, rq->len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!msg) {
        cleanup_free char *why =
            ink_xasprintf("Parse error: %s (column %d)", jerr.text, jerr.column);
        return reply_error(c, MHD_HTTP_BAD_REQUEST, INK_JSONRPC_PARSE_ERROR, why, NULL, NULL);
    }
    const char *method = json_string_value(json_object_get(msg, "method"));
    bool init = json_is_object(msg) && method && strcmp(method, "initialize") == 0;
    json_decref(msg);
    if (!init)
        return reply_error(c, MHD_HTTP_BAD_REQUEST, INK_JSONRPC_INVALID_REQUEST,
                           "Bad Request: " SESSION_HEADER " header required", NULL, NULL);

    ink_err err = {0};
    entry *e = ink_xcalloc(1, sizeof *e);
    if (ink_random_hex(e->id, SESSION_ID_BYTES, &err) < 0) {
        free(e);
        LOG_ERROR("mcp http: session id", "error", err.msg);
        return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, INK_JSONRPC_INTERNAL_ERROR,
                           "internal error", NULL, NULL);
    }
    e->auth = rq->auth;
    e->ses = ink_mcp_session_new(h->srv, NULL, NULL, rq->auth);
    bool initialized = false;
    enum MHD_Result ret = answer_routed(h, c, e->ses, rq, e->id, &initialized);
    if (!initialized) {
        /* A failed initialize leaves no session behind. */
        entry_destroy(e);
        return ret;
    }
    e->refs = 1;
    e->linked = true;
    e->last_used_ms = ink_mono_ms();
    pthread_mutex_lock(&h->mu);
    e->next = h->sessions;
    h->sessions = e;
    pthread_mutex_unlock(&h->mu);
    return ret;
}

static enum MHD_Result post_message(ink_mcp_http *h, struct MHD_Connection *c, const req *rq)
{
    if (rq->too_big)
        return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, INK_JSONRPC_INVALID_REQUEST,
                           "Request body too large", NULL, NULL);
    const char *id = header(c, SESSION_HEADER);
    if (!id)
        return post_initialize(h, c, rq);
    entry *e = session_get(h, id, rq->auth);
    if (!e)
        return reply_error(c, MHD_HTTP_NOT_FOUND, INK_JSONRPC_INVALID_REQUEST, "Session not found",
                           NULL, NULL);
    enum MHD_Result ret;
    const char *want = ink_mcp_session_protocol_version(e->ses);
    const char *got = header(c, VERSION_HEADER);
    if (got && (!want || strcmp(got, want) != 0)) {
        cleanup_free char *why =
            ink_xasprintf("Bad Request: " VERSION_HEADER " %s does not match the session's %s", got,
                          want ? want : "(none)");
        ret = reply_error(c, MHD_HTTP_BAD_REQUEST, INK_JSONRPC_INVALID_REQUEST, why, NULL, NULL);
    } else {
        ret = answer_routed(h, c, e->ses, rq, NULL, NULL);
    }
    session_put(h, e);
    return ret;
}

/* ================================================================ dispatch */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    ink_mcp_http *h = cls;
    req *rq = *con_cls;

    if (rq) {
        /* The body, chunk by chunk; a zero-sized call marks its end. */
        if (*upload_size > 0) {
            if (!rq->too_big && rq->len + *upload_size > h->max_body)
                rq->too_big = true; /* chunked, no Content-Length: drain and refuse */
            if (!rq->too_big) {
                if (rq->len + *upload_size + 1 > rq->cap) {
                    size_t cap = rq->cap ? rq->cap : 4096;
                    while (cap < rq->len + *upload_size + 1)
                        cap *= 2;
                    char *nb = realloc(rq->body, cap);
                    if (!nb)
                        abort();
                    rq->body = nb;
                    rq->cap = cap;
                }
                memcpy(rq->body + rq->len, upload_data, *upload_size);
                rq->len += *upload_size;
            }
            *upload_size = 0;
            return MHD_YES;
        }
        return post_message(h, c, rq);
    }

    /* First call: headers only. Everything that can be refused is refused
     * here, before a byte of the body is read. */
    if (strcmp(url, ENDPOINT) != 0)
        return reply_error(c, MHD_HTTP_NOT_FOUND, INK_JSONRPC_INVALID_REQUEST, "Not Found", NULL,
                           NULL);
    if (!origin_ok(h, header(c, MHD_HTTP_HEADER_ORIGIN)))
        return reply_error(c, MHD_HTTP_FORBIDDEN, INK_JSONRPC_INVALID_REQUEST,
                           "Forbidden: Origin not allowed", NULL, NULL);
    bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    bool del = strcmp(method, MHD_HTTP_METHOD_DELETE) == 0;
    if (!post && !del)
        return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, INK_JSONRPC_INVALID_REQUEST,
                           "Method Not Allowed", MHD_HTTP_HEADER_ALLOW, "POST, DELETE");
    void *auth = NULL;
    if (h->authenticate) {
        auth = h->authenticate(h->auth_arg, header(c, MHD_HTTP_HEADER_AUTHORIZATION));
        if (!auth)
            return reply_error(c, MHD_HTTP_UNAUTHORIZED, INK_JSONRPC_INVALID_REQUEST,
                               "Unauthorized", MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    }

    if (del) {
        const char *id = header(c, SESSION_HEADER);
        if (!id)
            return reply_error(c, MHD_HTTP_BAD_REQUEST, INK_JSONRPC_INVALID_REQUEST,
                               "Bad Request: " SESSION_HEADER " header required", NULL, NULL);
        entry *e = session_get(h, id, auth);
        if (!e)
            return reply_error(c, MHD_HTTP_NOT_FOUND, INK_JSONRPC_INVALID_REQUEST,
                               "Session not found", NULL, NULL);
        session_remove(h, e);
        session_put(h, e);
        LOG_INFO("mcp http: session ended by the client");
        return reply_raw(c, MHD_HTTP_NO_CONTENT, NULL, NULL, NULL, NULL);
    }

    if (!is_json_type(header(c, MHD_HTTP_HEADER_CONTENT_TYPE)))
        return reply_error(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, INK_JSONRPC_INVALID_REQUEST,
                           "Unsupported Media Type: expected application/json", NULL, NULL);
    const char *accept = header(c, MHD_HTTP_HEADER_ACCEPT);
    if (accept &&
        !(accepts(accept, "application", "json") && accepts(accept, "text", "event-stream")))
        return reply_error(c, MHD_HTTP_NOT_ACCEPTABLE, INK_JSONRPC_INVALID_REQUEST,
                           "Not Acceptable: Accept must admit application/json and "
                           "text/event-stream",
                           NULL, NULL);
    const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > h->max_body)
        return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, INK_JSONRPC_INVALID_REQUEST,
                           "Request body too large", NULL, NULL);

    rq = ink_xcalloc(1, sizeof *rq);
    rq->auth = auth;
    *con_cls = rq;
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    req *rq = *con_cls;
    if (rq) {
        free(rq->body);
        free(rq);
        *con_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    LOG_WARN("mcp http: libmicrohttpd", "error", msg);
}

/* ================================================================ life */

ink_mcp_http *ink_mcp_http_start(ink_mcp_server *s, const ink_mcp_http_opts *o, ink_err *err)
{
    const char *listen = o->listen ? o->listen : DEFAULT_LISTEN;
    char host[256];
    int port;
    if (ink_split_hostport(listen, host, sizeof host, &port, err) < 0) {
        ink_err_wrap(err, "mcp http");
        return NULL;
    }
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    int gai = getaddrinfo(host, portstr, &hints, &ai);
    if (gai != 0) {
        ink_err_set(err, 0, "mcp http: resolving %s: %s", host, gai_strerror(gai));
        return NULL;
    }

    ink_mcp_http *h = ink_xcalloc(1, sizeof *h);
    h->srv = s;
    h->max_body = o->max_body ? o->max_body : ink_mcp_server_max_message(s);
    h->idle_ms = o->session_idle_ms > 0 ? o->session_idle_ms : DEFAULT_IDLE_MS;
    h->authenticate = o->authenticate;
    h->auth_arg = o->auth_arg;
    h->norigins = o->nallowed_origins;
    h->origins = ink_xcalloc(h->norigins ? h->norigins : 1, sizeof *h->origins);
    for (size_t i = 0; i < h->norigins; i++)
        h->origins[i] = ink_xstrdup(o->allowed_origins[i]);
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->smu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->scv, &ca);
    pthread_condattr_destroy(&ca);

    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    /* The logger first: MHD reports on the options that follow through it. */
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d) {
        ink_err_set(err, 0, "mcp http: cannot listen on %s", listen);
        ink_mcp_http_stop(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : port;
    char pb[24];
    LOG_INFO("mcp http listening", "addr", host, "port", ink_fmt_i64(pb, h->port));
    return h;
}

int ink_mcp_http_port(const ink_mcp_http *h)
{
    return h->port;
}

void ink_mcp_http_stop(ink_mcp_http *h)
{
    if (!h)
        return;
    /* Readers blocked for a call's next message would keep MHD from
     * joining their threads. */
    pthread_mutex_lock(&h->smu);
    h->stopping = true;
    pthread_cond_broadcast(&h->scv);
    pthread_mutex_unlock(&h->smu);
    if (h->d)
        MHD_stop_daemon(h->d);
    /* No request thread is left: every session has only the table's
     * reference. */
    entry *e = h->sessions;
    h->sessions = NULL;
    while (e) {
        entry *next = e->next;
        entry_destroy(e);
        e = next;
    }
    for (size_t i = 0; i < h->norigins; i++)
        free(h->origins[i]);
    free(h->origins);
    pthread_cond_destroy(&h->scv);
    pthread_mutex_destroy(&h->smu);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
