/* The MCP tools. See tools.h for the threads; in short:
 *
 *   transport thread  dispatch(): queue the call, return
 *   worker (N)        who may call it (role, project), the app layer or the
 *                     node's AgentService, the answer; a deployment hands
 *                     its call on to
 *   ticker (1)        every 100 ms, and at once when the controller wrote
 *                     something (ink_tools_poke): each deployment's operation (progress
 *                     notifications, the answer once it ends or the wait
 *                     runs out), and cancels the agent calls of MCP calls
 *                     that were cancelled.
 *
 * Every call that may change something (the tools without readOnlyHint) is
 * audited exactly once, refused ones too: when refused, when its request
 * failed, or as soon as its request was accepted (a deployment's outcome
 * comes later and belongs to the operation, not to the call). Arguments go
 * through ink_audit_redact() and error messages through scrub_secrets(),
 * so secret_env values reach neither the audit log nor a result. */
#include "tools.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "audit.h"
#include "egress.h"
#include "ink/v1/ink.pb-c.h"
#include "ink_version.h"
#include "keys.h"
#include "log.h"
#include "rpc/rpc.h"
#include "util.h"

#define QUEUE_MAX 256
#define TICK_MS 100
#define LIST_PAGE 50
#define LOG_TAIL_DEFAULT 100
#define LOG_LINE_MAX 4096          /* bytes of one log line kept */
#define LOG_BYTES_MAX (512 * 1024) /* log text in one result */
#define SUMMARY_MAX (64 * 1024)    /* text summaries of logs and exec output */
#define EXEC_TIMEOUT_DEFAULT_S 30
#define AGENT_MAX_MESSAGE (16u << 20) /* exec output is up to 1 MiB per stream */
#define AGENT_TIMEOUT_MS 15000        /* logs, metrics; exec: its timeout plus this */

/* ================================================================ tables */

typedef struct job job;

typedef struct tool_def {
    const char *name, *title, *description;
    /* JSON with ` for ", so that schemas read as JSON in C strings;
     * descriptions therefore never hold a backtick or a double quote. */
    const char *input, *output;
    bool read_only, destructive, idempotent;
    void (*run)(job *j);
} tool_def;

typedef struct binding {
    ink_tools *t;
    const tool_def *def;
} binding;

typedef struct agent_client {
    char node[64];
    char endpoint[256];
    ink_rpc_client *client;
} agent_client;

/* An agent call in flight, which the ticker cancels when its MCP call is
 * cancelled or the server stops. */
typedef struct rpc_watch {
    ink_rpc_stream *stream;
    ink_mcp_call *call;
    bool cancelled;
    struct rpc_watch *next;
} rpc_watch;

enum op_kind { K_CREATE, K_UPDATE, K_DELETE, K_RESTART };

struct job {
    ink_tools *t;
    const tool_def *def;
    ink_mcp_call *call;
    const json_t *args; /* valid until the call is completed */
    const ink_caller *who;
    int64_t started_ms; /* wall clock, for the audit entry */
    bool audited;
    job *next;

    /* deployments waiting on the ticker */
    enum op_kind kind;
    char *op_id;
    int64_t wait_started_mono, deadline_mono;
    double last_progress;
    char *last_message;
    bool progressed;
};

struct ink_tools {
    ink_tools_ctx ctx;
    char *recheck_key;
    int64_t deploy_wait_ms;
    ink_mcp_server *srv;
    binding *bindings;
    size_t nbindings;

    pthread_mutex_t mu; /* everything below up to the threads */
    pthread_cond_t work, tick;
    job *qhead, *qtail;
    size_t qlen;
    job *waits_in; /* deployments handed to the ticker */
    rpc_watch *watches;
    bool stopping, ticker_exit;
    bool poked; /* ink_tools_poke since the ticker last looked */
    pthread_t *workers;
    int nworkers;
    pthread_t ticker;
    bool ticker_started;

    pthread_mutex_t callers_mu;
    ink_caller **callers; /* one per key id, never freed before the tools */
    size_t ncallers;

    pthread_mutex_t clients_mu;
    agent_client *clients;
    size_t nclients;
};

/* ============================================================ JSON helpers */

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static const char *jstr_or(const json_t *o, const char *key, const char *def)
{
    const char *s = jstr(o, key);
    return s ? s : def;
}

static json_t *jnullable(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* Bytes from a workload (log lines, exec output) as a JSON string: NUL
 * bytes become invalid UTF-8 on purpose, which ink_json_text() turns into
 * U+FFFD like every other byte that is not text. */
static char *bytes_cstr(const uint8_t *data, size_t len)
{
    char *s = ink_xmalloc(len + 1);
    for (size_t i = 0; i < len; i++)
        s[i] = data[i] ? (char)data[i] : (char)0xff;
    s[len] = '\0';
    return s;
}

static json_t *bytes_json(const uint8_t *data, size_t len)
{
    cleanup_free char *s = bytes_cstr(data, len);
    return ink_json_text(s);
}

static char *schema_text(const char *s)
{
    char *out = ink_xstrdup(s);
    for (char *p = out; *p; p++)
        if (*p == '`')
            *p = '"';
    return out;
}

/* A string member that says something: not missing, not "". */
static const char *jtext(const json_t *o, const char *key)
{
    const char *s = jstr(o, key);
    return s && *s ? s : NULL;
}

/* A text summary built with fprintf; closed by summary_end(). */
typedef struct summary {
    FILE *f;
    char *buf;
    size_t len;
} summary;

static void summary_begin(summary *s)
{
    s->buf = NULL;
    s->len = 0;
    s->f = open_memstream(&s->buf, &s->len);
    if (!s->f)
        abort();
}

static char *summary_end(summary *s)
{
    fclose(s->f);
    s->f = NULL;
    return s->buf;
}

static void human_bytes(double b, char *out, size_t outlen)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;
    while (b >= 1024 && u + 1 < INK_ARRAY_LEN(units)) {
        b /= 1024;
        u++;
    }
    snprintf(out, outlen, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

/* ============================================================== secrets */

/* Replaces every occurrence of a secret_env value of the arguments in msg
 * (an error message may quote what it refuses). Values shorter than 4
 * bytes are left alone: they would blank out ordinary words, and a secret
 * that short is no secret anyway. */
static char *scrub_secrets(char *msg, const json_t *args)
{
    json_t *secrets = json_object_get(args, "secret_env");
    const char *name;
    json_t *v;
    json_object_foreach(secrets, name, v)
    {
        const char *val = json_string_value(v);
        size_t vlen = val ? strlen(val) : 0;
        if (vlen < 4)
            continue;
        char *hit;
        while ((hit = strstr(msg, val)) != NULL) {
            char *next =
                ink_xasprintf("%.*s[secret %s]%s", (int)(hit - msg), msg, name, hit + vlen);
            free(msg);
            msg = next;
        }
    }
    return msg;
}

/* Whether a result about to go out holds a secret_env value of the
 * arguments: the app layer's views must only carry fingerprints, and this
 * makes sure a bug there cannot leak one. */
static bool holds_secret(const json_t *structured, const char *text, const json_t *args)
{
    json_t *secrets = json_object_get(args, "secret_env");
    if (!json_object_size(secrets))
        return false;
    cleanup_free char *dump = structured ? json_dumps(structured, JSON_COMPACT) : NULL;
    const char *name;
    json_t *v;
    json_object_foreach(secrets, name, v)
    {
        const char *val = json_string_value(v);
        if (!val || strlen(val) < 4)
            continue;
        /* The dump escapes what JSON must escape; secrets with such bytes
         * are also looked for in their escaped form. */
        json_t *js = json_string(val);
        cleanup_free char *esc = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
        json_decref(js);
        if (esc && strlen(esc) >= 2)
            esc[strlen(esc) - 1] = '\0';
        if ((text && strstr(text, val)) || (dump && strstr(dump, val)) ||
            (dump && esc && strstr(dump, esc + 1)))
            return true;
    }
    return false;
}

/* ============================================================ completion */

static void job_free(job *j)
{
    free(j->op_id);
    free(j->last_message);
    free(j);
}

static void audit_append(ink_tools *t, const tool_def *def, const ink_caller *who,
                         const json_t *args, int64_t time_ms, const char *result)
{
    json_t *redacted = ink_audit_redact(t->ctx.store, args, NULL);
    ink_audit_entry e = {
        .time_ms = time_ms,
        .key_id = who ? who->key_id : "unknown",
        .project = who ? who->project : NULL,
        .tool = def->name,
        .arguments = redacted,
        .result = result,
    };
    ink_err err = {0};
    if (ink_audit_append(t->ctx.store, &e, &err) < 0)
        LOG_ERROR("mcp: cannot write the audit log", "tool", def->name, "key_id", e.key_id, "error",
                  err.msg);
    json_decref(redacted);
}

static void job_audit(job *j, const char *result)
{
    if (j->def->read_only || j->audited)
        return;
    j->audited = true;
    audit_append(j->t, j->def, j->who, j->args, j->started_ms, result);
}

/* ink_mcp_tool.on_invalid, on the transport thread: a mutating call whose
 * arguments the schema refused never reaches a worker, and is audited
 * here, so that probing with malformed calls leaves a trace too. */
static void audit_invalid(ink_mcp_call *call, const json_t *args, const char *message, void *ctx)
{
    binding *b = ctx;
    if (b->def->read_only)
        return;
    char *msg = scrub_secrets(ink_xstrdup(message), args);
    cleanup_free char *result = ink_xasprintf("refused: invalid arguments: %.400s", msg);
    free(msg);
    audit_append(b->t, b->def, ink_mcp_call_auth(call), args, ink_now_ms(), result);
}

/* The call ends without its side effects mattering any more: cancelled by
 * the client (nothing is sent) or never started. Not audited: nothing was
 * done. */
static void job_drop(job *j, const char *why)
{
    ink_mcp_call_error(j->call, "%s", why);
    job_free(j);
}

static void job_fail(job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void job_fail(job *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        abort();
    va_end(ap);
    msg = scrub_secrets(msg, j->args);
    cleanup_free char *result = ink_xasprintf("error: %.400s", msg);
    job_audit(j, result);
    ink_mcp_call_error(j->call, "%s", msg);
    free(msg);
    job_free(j);
}

/* structured is stolen. */
static void job_ok(job *j, json_t *structured, const char *text)
{
    if (holds_secret(structured, text, j->args)) {
        LOG_ERROR("mcp: a tool result held a secret value; withheld", "tool", j->def->name);
        json_decref(structured);
        job_fail(j,
                 "internal error: the result of %s was withheld because it contained a "
                 "secret value; the request itself was processed, see get_app_details",
                 j->def->name);
        return;
    }
    job_audit(j, "ok");
    ink_mcp_call_result(j->call, structured, text);
    job_free(j);
}

/* Errors of the app layer carry messages written for the client; internal
 * ones (database, I/O) are logged and said to be ours. */
static void job_fail_apps(job *j, const ink_err *err)
{
    if (err->errnum == INK_APPS_EINVAL || err->errnum == INK_APPS_ENOTFOUND ||
        err->errnum == INK_APPS_ECONFLICT) {
        job_fail(j, "%s", err->msg);
        return;
    }
    LOG_ERROR("mcp tool failed", "tool", j->def->name, "error", err->msg);
    job_fail(j,
             "internal error in ink-coordinator: %s (retry in a moment; tell the operator if it "
             "persists)",
             err->msg);
}

static void kick(ink_tools *t)
{
    if (t->ctx.kick)
        t->ctx.kick(t->ctx.kick_arg);
}

static bool stopping(ink_tools *t)
{
    pthread_mutex_lock(&t->mu);
    bool s = t->stopping;
    pthread_mutex_unlock(&t->mu);
    return s;
}

/* ========================================================== agent calls */

static ink_rpc_client *client_for(ink_tools *t, const ink_replica_ref *r, ink_err *err)
{
    if (!r->agent_endpoint[0]) {
        ink_err_set(err, 0, "node '%s' has no agent endpoint registered", r->node_id);
        return NULL;
    }
    const ink_coordinator_config *cfg = t->ctx.cfg;
    ink_rpc_client *c = NULL;
    pthread_mutex_lock(&t->clients_mu);
    for (size_t i = 0; i < t->nclients && !c; i++)
        if (strcmp(t->clients[i].node, r->node_id) == 0 &&
            strcmp(t->clients[i].endpoint, r->agent_endpoint) == 0)
            c = t->clients[i].client;
    if (!c) {
        /* The agent checks that the caller is the coordinator by its
         * certificate, and we check that the agent is the node by its
         * name: a node cannot answer for another. */
        ink_tls_files tls = {cfg->tls_ca, cfg->tls_cert, cfg->tls_key};
        ink_rpc_client_opts o = {
            .target = r->agent_endpoint,
            .tls = cfg->insecure_dev ? NULL : &tls,
            .server_name = r->node_id,
            .max_message_bytes = AGENT_MAX_MESSAGE,
        };
        c = ink_rpc_client_new(&o, err);
        if (c) {
            agent_client *nc = realloc(t->clients, (t->nclients + 1) * sizeof *nc);
            if (!nc)
                abort();
            t->clients = nc;
            agent_client *a = &t->clients[t->nclients++];
            snprintf(a->node, sizeof a->node, "%s", r->node_id);
            snprintf(a->endpoint, sizeof a->endpoint, "%s", r->agent_endpoint);
            a->client = c;
        } else {
            ink_err_wrap(err, "cannot call node '%s'", r->node_id);
        }
    }
    pthread_mutex_unlock(&t->clients_mu);
    return c;
}

/* One AgentService call, as a stream even for unary methods (on the wire a
 * unary call is a stream of one message): a stream can be cancelled from
 * the ticker, so a cancelled MCP call or a stopping server does not wait
 * for the call's deadline. */
typedef struct agent_call {
    job *j;
    const ink_replica_ref *r;
    rpc_watch w;
    int64_t timeout_ms;
    ink_rpc_status st;
} agent_call;

static void watch_add(ink_tools *t, rpc_watch *w)
{
    pthread_mutex_lock(&t->mu);
    w->next = t->watches;
    t->watches = w;
    if (t->stopping || ink_mcp_call_cancelled(w->call)) {
        w->cancelled = true;
        ink_rpc_stream_cancel(w->stream);
    }
    pthread_mutex_unlock(&t->mu);
}

static void watch_remove(ink_tools *t, rpc_watch *w)
{
    pthread_mutex_lock(&t->mu);
    for (rpc_watch **p = &t->watches; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

/* 0, or -1 with *errmsg (malloc'ed) saying why. */
static int agent_open(agent_call *ac, job *j, const ink_replica_ref *r, const char *method,
                      const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_type,
                      int64_t timeout_ms, char **errmsg)
{
    memset(ac, 0, sizeof *ac);
    ac->j = j;
    ac->r = r;
    ac->timeout_ms = timeout_ms;
    ink_err err = {0};
    ink_rpc_client *c = client_for(j->t, r, &err);
    if (!c) {
        *errmsg = ink_xstrdup(err.msg);
        return -1;
    }
    char path[96];
    snprintf(path, sizeof path, "/ink.v1.AgentService/%s", method);
    ac->w.stream = ink_rpc_stream_open(c, path, req, resp_type, timeout_ms, &ac->st);
    if (!ac->w.stream) {
        *errmsg = ink_xasprintf("cannot call node '%s': %s", r->node_id, ac->st.message);
        return -1;
    }
    ac->w.call = j->call;
    watch_add(j->t, &ac->w);
    return 0;
}

static void agent_close(agent_call *ac)
{
    if (!ac->w.stream)
        return;
    watch_remove(ac->j->t, &ac->w);
    ink_rpc_stream_free(ac->w.stream);
    ac->w.stream = NULL;
}

/* What went wrong with a call to r's node, for the model to act on. */
static char *agent_error(const agent_call *ac)
{
    const ink_replica_ref *r = ac->r;
    const ink_rpc_status *st = &ac->st;
    switch (st->code) {
    case GRPC_STATUS_UNAVAILABLE:
        return ink_xasprintf("node %s is unreachable: %s", r->node_id, st->message);
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return ink_xasprintf("node %s did not answer within %lld s", r->node_id,
                             (long long)(ac->timeout_ms / 1000));
    case GRPC_STATUS_CANCELLED:
        return ink_xstrdup("cancelled");
    case GRPC_STATUS_NOT_FOUND:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return ink_xasprintf("replica %s: %s", r->workload_id, st->message);
    default:
        return ink_xasprintf("node %s failed the call (%s): %s", r->node_id,
                             ink_rpc_code_name(st->code), st->message);
    }
}

/* A unary call through agent_open: 0 and *resp, or -1 and *errmsg. */
static int agent_unary(job *j, const ink_replica_ref *r, const char *method,
                       const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_type,
                       int64_t timeout_ms, ProtobufCMessage **resp, grpc_status_code *code,
                       char **errmsg)
{
    *resp = NULL;
    *code = GRPC_STATUS_UNKNOWN;
    agent_call ac;
    if (agent_open(&ac, j, r, method, req, resp_type, timeout_ms, errmsg) < 0)
        return -1;
    ProtobufCMessage *m = NULL;
    int rc = ink_rpc_stream_next(ac.w.stream, &m, &ac.st);
    if (rc == 1) {
        /* The status that follows the message. */
        ProtobufCMessage *extra = NULL;
        if (ink_rpc_stream_next(ac.w.stream, &extra, &ac.st) == 1)
            protobuf_c_message_free_unpacked(extra, NULL);
        *resp = m;
        *code = GRPC_STATUS_OK;
        agent_close(&ac);
        return 0;
    }
    if (rc == 0) {
        ac.st.code = GRPC_STATUS_INTERNAL;
        snprintf(ac.st.message, sizeof ac.st.message, "the agent sent no answer");
    }
    *code = ac.st.code;
    *errmsg = agent_error(&ac);
    agent_close(&ac);
    return -1;
}

/* Ends a job whose agent call was cut short by cancellation or shutdown:
 * true when it did. */
static bool job_interrupted(job *j)
{
    if (ink_mcp_call_cancelled(j->call)) {
        job_drop(j, "cancelled");
        return true;
    }
    if (stopping(j->t)) {
        job_fail(j, "ink-coordinator is shutting down: call %s again in a moment", j->def->name);
        return true;
    }
    return false;
}

static json_t *replica_error(const ink_replica_ref *r, const char *msg)
{
    return json_pack("{s:s, s:s, s:o}", "replica", r->workload_id, "node", r->node_id, "error",
                     ink_json_text(msg));
}

/* ================================================================ times */

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    /* Howard Hinnant's algorithm: days since 1970-01-01, proleptic
     * Gregorian, without the time zone games of mktime(). */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)**p))
            return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    *out = v;
    return 0;
}

/* RFC 3339: 2026-01-02T15:04:05[.123456789](Z|+01:00). */
static int parse_rfc3339(const char *s, int64_t *ms)
{
    const char *p = s;
    int y, mo, d, h, mi, sec, frac_ms = 0;
    if (digits(&p, 4, &y) < 0 || *p++ != '-' || digits(&p, 2, &mo) < 0 || *p++ != '-' ||
        digits(&p, 2, &d) < 0 || (*p != 'T' && *p != 't' && *p != ' '))
        return -1;
    p++;
    if (digits(&p, 2, &h) < 0 || *p++ != ':' || digits(&p, 2, &mi) < 0 || *p++ != ':' ||
        digits(&p, 2, &sec) < 0)
        return -1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        for (int i = 0; isdigit((unsigned char)*p); i++, p++)
            if (i < 3)
                frac_ms += (*p - '0') * (i == 0 ? 100 : i == 1 ? 10 : 1);
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) < 0 || *p++ != ':' || digits(&p, 2, &om) < 0 || oh > 23 || om > 59)
            return -1;
        offset_min = sign * (oh * 60 + om);
    } else {
        return -1;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    int64_t days = days_from_civil(y, mo, d);
    *ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - (int64_t)offset_min * 60) * 1000 + frac_ms;
    return 0;
}

/* "since" of get_app_logs: an RFC 3339 time, or a duration back from now
 * ("10m", "2h", "1d"). */
static int parse_since(const char *s, int64_t now_ms, int64_t *out)
{
    int64_t d;
    if (ink_parse_duration_ms(s, &d) == 0) {
        *out = d < now_ms ? now_ms - d : 0;
        return 0;
    }
    return parse_rfc3339(s, out);
}

static void fmt_time(int64_t ms, char out[32])
{
    ink_format_utc(ms, true, out, 32);
}

/* ============================================================ deployments */

static const char *outcome(enum op_kind kind, const char *op_status)
{
    if (op_status && strcmp(op_status, "succeeded") == 0)
        return kind == K_DELETE ? "deleted" : "running";
    if (op_status && strcmp(op_status, "failed") == 0)
        return "failed";
    return kind == K_DELETE ? "deleting" : kind == K_RESTART ? "restarting" : "deploying";
}

/* Answers a deployment from its operation (the last one read). */
static void finish_op(job *j, const json_t *op)
{
    const char *app = jstr_or(op, "app", jstr_or(j->args, "name", "?"));
    const char *op_id = jstr_or(op, "operation_id", j->op_id);
    const char *message = jstr_or(op, "message", "");
    const char *url = jstr(op, "url");
    const char *status = outcome(j->kind, jstr(op, "status"));
    json_t *out = json_pack("{s:s, s:s, s:s, s:o}", "app", app, "status", status, "operation_id",
                            op_id, "message", ink_json_text(message));
    if (j->kind == K_CREATE || j->kind == K_UPDATE)
        json_object_set_new(out, "url", jnullable(url));

    summary s;
    summary_begin(&s);
    long long waited = (long long)((ink_mono_ms() - j->wait_started_mono) / 1000);
    if (strcmp(status, "failed") == 0) {
        fprintf(s.f, "%s app '%s' failed: %s\n",
                j->kind == K_CREATE   ? "Deploying"
                : j->kind == K_UPDATE ? "Updating"
                : j->kind == K_DELETE ? "Deleting"
                                      : "Restarting",
                app, message);
        if (j->kind != K_DELETE)
            fprintf(s.f, "Look at get_app_logs and get_app_details for the cause, then fix it with "
                         "update_app.\n");
    } else if (strcmp(status, "deleted") == 0) {
        fprintf(s.f, "App '%s' was deleted. %s\n", app, message);
    } else if (strcmp(status, "running") == 0) {
        if (j->kind == K_RESTART)
            fprintf(s.f, "App '%s' was restarted: every replica was replaced. %s\n", app, message);
        else if (url)
            fprintf(s.f, "App '%s' is running at %s\n%s\n", app, url, message);
        else
            fprintf(s.f, "App '%s' is running (it has no URL). %s\n", app, message);
    } else {
        fprintf(s.f,
                "App '%s' is still %s after %lld s: %s\n"
                "This continues in the background. Call get_operation with operation_id '%s' "
                "(every 10 seconds or so) until its status is 'succeeded' or 'failed'.\n",
                app, status, waited, message, op_id);
    }
    fprintf(s.f, "(operation %s)", op_id);
    cleanup_free char *text = summary_end(&s);
    job_ok(j, out, text);
}

/* Progress notifications, when the client asked for them: the operation's
 * progress, nudged up when only its message changed (the core drops a
 * notification whose progress does not grow, as the spec says it must). */
static void wait_progress(job *j, const json_t *op)
{
    json_t *pv = json_object_get(op, "progress");
    double p = json_is_number(pv) ? json_number_value(pv) : 0;
    if (!isfinite(p) || p < 0)
        p = 0;
    if (p > 100)
        p = 100;
    const char *msg = jstr(op, "message");
    bool new_msg = msg && (!j->last_message || strcmp(msg, j->last_message) != 0);
    if (j->progressed && p <= j->last_progress) {
        if (!new_msg || j->last_progress + 0.5 >= 100)
            return;
        p = j->last_progress + 0.5;
    }
    ink_mcp_call_progress(j->call, p, 100, msg);
    j->progressed = true;
    j->last_progress = p;
    if (new_msg) {
        free(j->last_message);
        j->last_message = ink_xstrdup(msg);
    }
}

/* One look at a deployment: true when it was answered. */
static bool wait_poll(job *j, bool stop)
{
    if (ink_mcp_call_cancelled(j->call)) {
        job_drop(j, "cancelled");
        return true;
    }
    json_t *op = NULL;
    ink_err err = {0};
    if (ink_apps_get_operation(j->t->ctx.store, j->who->project, j->op_id, &op, &err) < 0) {
        /* Already audited as accepted: the failure is only in reading its
         * state back. */
        LOG_ERROR("mcp: cannot read an operation", "operation_id", j->op_id, "error", err.msg);
        ink_mcp_call_error(j->call,
                           "the request was accepted (operation %s) but its state cannot be read: "
                           "%s. Call get_operation with this operation_id later.",
                           j->op_id, err.msg);
        job_free(j);
        return true;
    }
    const char *status = jstr(op, "status");
    bool done = !status || strcmp(status, "running") != 0;
    if (done || stop || ink_mono_ms() >= j->deadline_mono) {
        finish_op(j, op);
        json_decref(op);
        return true;
    }
    wait_progress(j, op);
    json_decref(op);
    return false;
}

/* Hands an accepted request's operation (stolen) to the ticker, or
 * answers at once when it has already ended (an idempotent retry). */
static void wait_start(job *j, json_t *op, enum op_kind kind)
{
    j->kind = kind;
    j->wait_started_mono = ink_mono_ms();
    j->op_id = ink_xstrdup(jstr_or(op, "operation_id", ""));
    const char *status = jstr(op, "status");
    if (!status || strcmp(status, "running") != 0 || !j->op_id[0]) {
        finish_op(j, op);
        json_decref(op);
        return;
    }
    wait_progress(j, op);
    json_decref(op);
    j->deadline_mono = j->wait_started_mono + j->t->deploy_wait_ms;
    ink_tools *t = j->t;
    pthread_mutex_lock(&t->mu);
    j->next = t->waits_in;
    t->waits_in = j;
    pthread_cond_signal(&t->tick);
    pthread_mutex_unlock(&t->mu);
}

static void mutate(job *j, enum op_kind kind)
{
    ink_tools *t = j->t;
    const char *name = jstr(j->args, "name");
    json_t *op = NULL;
    ink_err err = {0};
    int64_t now = ink_now_ms();
    int rc;
    switch (kind) {
    case K_CREATE:
        rc = ink_apps_create(t->ctx.store, j->who, j->args, now, &op, &err);
        break;
    case K_UPDATE:
        rc = ink_apps_update(t->ctx.store, j->who, j->args, now, &op, &err);
        break;
    case K_DELETE:
        rc = ink_apps_delete(t->ctx.store, j->who, name, now, &op, &err);
        break;
    default:
        rc = ink_apps_restart(t->ctx.store, j->who, name, now, &op, &err);
        break;
    }
    if (rc < 0) {
        json_decref(op);
        job_fail_apps(j, &err);
        return;
    }
    if (!op) {
        job_fail(j, "internal error: the request was accepted but returned no operation");
        return;
    }
    /* The call did what it asked for: the deployment's outcome belongs to
     * the operation (get_operation), and this record must exist even if the
     * client goes away while we wait. */
    job_audit(j, "ok");
    if (rc == 0)
        kick(t);
    wait_start(j, op, kind);
}

static void tool_create_app(job *j)
{
    mutate(j, K_CREATE);
}

static void tool_update_app(job *j)
{
    mutate(j, K_UPDATE);
}

static void tool_delete_app(job *j)
{
    mutate(j, K_DELETE);
}

static void tool_restart_app(job *j)
{
    mutate(j, K_RESTART);
}

/* ================================================================ reads */

static void tool_list_apps(job *j)
{
    json_t *list = NULL;
    ink_err err = {0};
    if (ink_apps_list(j->t->ctx.store, j->who->project, jstr(j->args, "cursor"), LIST_PAGE, &list,
                      &err) < 0) {
        job_fail_apps(j, &err);
        return;
    }
    json_t *apps = json_object_get(list, "apps");
    summary s;
    summary_begin(&s);
    if (!json_array_size(apps)) {
        fprintf(s.f, "No apps in project '%s'%s.", j->who->project,
                jstr(j->args, "cursor") ? " on this page" : " yet: deploy one with create_app");
    } else {
        fprintf(s.f, "%zu app%s in project '%s':\n", json_array_size(apps),
                json_array_size(apps) == 1 ? "" : "s", j->who->project);
        size_t i;
        json_t *a;
        json_array_foreach(apps, i, a)
        {
            fprintf(s.f, "- %s: %s, %lld/%lld ready, %s, image %s\n", jstr_or(a, "app", "?"),
                    jstr_or(a, "status", "?"),
                    (long long)json_integer_value(json_object_get(a, "ready_replicas")),
                    (long long)json_integer_value(json_object_get(a, "replicas")),
                    jstr_or(a, "url", "no URL"), jstr_or(a, "image", "?"));
        }
    }
    const char *next = jstr(list, "next_cursor");
    if (next)
        fprintf(s.f, "More apps: call list_apps with cursor '%s'.", next);
    cleanup_free char *text = summary_end(&s);
    job_ok(j, list, text);
}

static void tool_get_app_details(job *j)
{
    json_t *app = NULL;
    ink_err err = {0};
    if (ink_apps_get(j->t->ctx.store, j->who->project, jstr(j->args, "name"), &app, &err) < 0) {
        job_fail_apps(j, &err);
        return;
    }
    summary s;
    summary_begin(&s);
    fprintf(s.f, "App '%s' (project %s): %s", jstr_or(app, "app", "?"),
            jstr_or(app, "project", "?"), jstr_or(app, "status", "?"));
    if (jtext(app, "status_reason"))
        fprintf(s.f, ": %s", jtext(app, "status_reason"));
    fprintf(s.f, "\nURL: %s\nImage: %s", jstr_or(app, "url", "none (no replica serves yet)"),
            jstr_or(app, "image", "?"));
    if (jtext(app, "image_digest"))
        fprintf(s.f, " (%s)", jstr(app, "image_digest"));
    fprintf(s.f,
            "\nReplicas: %lld of %lld ready (min %lld), %g CPU and %lld MiB each, port %lld, "
            "generation %lld\n",
            (long long)json_integer_value(json_object_get(app, "ready_replicas")),
            (long long)json_integer_value(json_object_get(app, "replicas")),
            (long long)json_integer_value(json_object_get(app, "min_replicas")),
            json_number_value(json_object_get(app, "cpu")),
            (long long)json_integer_value(json_object_get(app, "memory_mb")),
            (long long)json_integer_value(json_object_get(app, "port")),
            (long long)json_integer_value(json_object_get(app, "generation")));
    if (json_integer_value(json_object_get(app, "min_replicas")) == 0 &&
        json_is_integer(json_object_get(app, "idle_timeout_s")))
        fprintf(s.f,
                "Scale to zero: a replica idle for %lld s sleeps; a request to the URL wakes it\n",
                (long long)json_integer_value(json_object_get(app, "idle_timeout_s")));
    fprintf(s.f, "Egress: %s", jstr_or(app, "egress", "default"));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(app, "egress_allow"), i, v)
        fprintf(s.f, "%s%s", i ? ", " : " to ", json_string_value(v));
    fprintf(s.f, "\n");
    if (jstr(app, "operation_id"))
        fprintf(s.f, "Latest operation: %s\n", jstr(app, "operation_id"));
    json_array_foreach(json_object_get(app, "replica_status"), i, v)
    {
        fprintf(s.f, "- replica %s on %s: %s", jstr_or(v, "id", "?"),
                jtext(v, "node") ? jtext(v, "node") : "no node yet", jstr_or(v, "state", "?"));
        if (jtext(v, "reason"))
            fprintf(s.f, " (%s)", jtext(v, "reason"));
        fprintf(s.f, ", generation %lld, %lld restarts",
                (long long)json_integer_value(json_object_get(v, "generation")),
                (long long)json_integer_value(json_object_get(v, "restarts")));
        const char *category;
        json_t *packets;
        bool first = true;
        json_object_foreach(json_object_get(v, "egress_blocked"), category, packets)
        {
            fprintf(s.f, "%s%lld %s", first ? ", egress blocked: " : ", ",
                    (long long)json_integer_value(packets), category);
            first = false;
        }
        fprintf(s.f, "\n");
    }
    json_t *events = json_object_get(app, "events");
    size_t nev = json_array_size(events);
    if (nev)
        fprintf(s.f, "Recent events:\n");
    for (i = nev > 5 ? nev - 5 : 0; i < nev; i++) {
        json_t *e = json_array_get(events, i);
        fprintf(s.f, "  %s %s\n", jstr_or(e, "time", ""), jstr_or(e, "message", ""));
    }
    cleanup_free char *text = summary_end(&s);
    job_ok(j, app, text);
}

static void tool_get_operation(job *j)
{
    json_t *op = NULL;
    ink_err err = {0};
    if (ink_apps_get_operation(j->t->ctx.store, j->who->project, jstr(j->args, "operation_id"), &op,
                               &err) < 0) {
        job_fail_apps(j, &err);
        return;
    }
    const char *status = jstr_or(op, "status", "?");
    summary s;
    summary_begin(&s);
    fprintf(s.f, "Operation %s (%s of app '%s'): %s, %g%%: %s", jstr_or(op, "operation_id", "?"),
            jstr_or(op, "kind", "?"), jstr_or(op, "app", "?"), status,
            json_number_value(json_object_get(op, "progress")), jstr_or(op, "message", ""));
    if (jstr(op, "url"))
        fprintf(s.f, "\nURL: %s", jstr(op, "url"));
    if (strcmp(status, "running") == 0)
        fprintf(s.f, "\nStill in progress: call get_operation again in a few seconds.");
    cleanup_free char *text = summary_end(&s);
    job_ok(j, op, text);
}

static void tool_list_nodes(job *j)
{
    json_t *list = NULL;
    ink_err err = {0};
    if (ink_apps_list_nodes(j->t->ctx.store, ink_now_ms(), j->t->ctx.cfg->node_timeout_ms, &list,
                            &err) < 0) {
        job_fail_apps(j, &err);
        return;
    }
    json_t *nodes = json_object_get(list, "nodes");
    summary s;
    summary_begin(&s);
    fprintf(s.f, "%zu node%s", json_array_size(nodes), json_array_size(nodes) == 1 ? "" : "s");
    if (!json_array_size(nodes))
        fprintf(s.f, ": no node has registered, so nothing can be deployed yet (an operator must "
                     "start ink-agent on a machine)");
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        fprintf(s.f,
                "\n- %s: %s, %lld CPUs (%g allocated), %lld MiB memory (%lld allocated), %lld "
                "replicas, last seen %s",
                jstr_or(n, "node", "?"), jstr_or(n, "status", "?"),
                (long long)json_integer_value(json_object_get(n, "cpus")),
                json_number_value(json_object_get(n, "cpu_allocated")),
                (long long)json_integer_value(json_object_get(n, "memory_mb")),
                (long long)json_integer_value(json_object_get(n, "memory_allocated_mb")),
                (long long)json_integer_value(json_object_get(n, "replicas")),
                jstr_or(n, "last_seen", "never"));
    }
    cleanup_free char *text = summary_end(&s);
    job_ok(j, list, text);
}

/* ============================================================ resources */

static void resource_summary(FILE *f, const json_t *r)
{
    fprintf(f, "%s '%s' (%lld MiB): %s", jstr_or(r, "type", "?"), jstr_or(r, "resource", "?"),
            (long long)json_integer_value(json_object_get(r, "size_mb")),
            jstr_or(r, "status", "?"));
}

static void tool_create_resource(job *j)
{
    json_t *res = NULL;
    ink_err err = {0};
    int rc = ink_resources_create(j->t->ctx.store, j->who, j->args, ink_now_ms(), &res, &err);
    if (rc < 0) {
        job_fail_apps(j, &err);
        return;
    }
    if (rc == 0)
        kick(j->t);
    summary s;
    summary_begin(&s);
    fputs(rc == 0 ? "Created " : "Already exists: ", s.f);
    resource_summary(s.f, res);
    fprintf(s.f, " in project %s.", j->who->project);
    cleanup_free char *text = summary_end(&s);
    job_ok(j, res, text);
}

static void tool_list_resources(job *j)
{
    json_t *list = NULL;
    ink_err err = {0};
    if (ink_resources_list(j->t->ctx.store, j->who->project, &list, &err) < 0) {
        job_fail_apps(j, &err);
        return;
    }
    if (json_is_array(list)) /* the tool's shape either way */
        list = json_pack("{s:o}", "resources", list);
    json_t *items = json_object_get(list, "resources");
    summary s;
    summary_begin(&s);
    fprintf(s.f, "%zu resource%s in project %s", json_array_size(items),
            json_array_size(items) == 1 ? "" : "s", j->who->project);
    size_t i;
    json_t *r;
    json_array_foreach(items, i, r)
    {
        fprintf(s.f, "\n- ");
        resource_summary(s.f, r);
    }
    cleanup_free char *text = summary_end(&s);
    job_ok(j, list, text);
}

static void tool_delete_resource(job *j)
{
    json_t *res = NULL;
    ink_err err = {0};
    int rc = ink_resources_delete(j->t->ctx.store, j->who, jstr(j->args, "name"), ink_now_ms(),
                                  &res, &err);
    if (rc < 0) {
        job_fail_apps(j, &err);
        return;
    }
    if (rc == 0)
        kick(j->t);
    summary s;
    summary_begin(&s);
    fputs("Deleted ", s.f);
    resource_summary(s.f, res);
    cleanup_free char *text = summary_end(&s);
    job_ok(j, res, text);
}

/* ===================================================== replicas on nodes */

static int replicas(job *j, ink_replica_ref **refs, size_t *n)
{
    ink_err err = {0};
    if (ink_apps_replicas(j->t->ctx.store, j->who->project, jstr(j->args, "name"), refs, n, &err) <
        0) {
        job_fail_apps(j, &err);
        return -1;
    }
    return 0;
}

typedef struct log_line {
    int64_t ms;
    size_t seq; /* arrival order: keeps a replica's lines in order on equal times */
    const char *replica;
    int stream;
    char *text; /* made valid text later; may hold 0xff for NUL */
} log_line;

static int log_cmp(const void *a, const void *b)
{
    const log_line *x = a, *y = b;
    if (x->ms != y->ms)
        return x->ms < y->ms ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Keeps the newest `keep` lines, sorted by time. */
static void log_prune(log_line *lines, size_t *n, size_t keep)
{
    if (*n == 0)
        return;
    qsort(lines, *n, sizeof *lines, log_cmp);
    if (*n <= keep)
        return;
    size_t drop = *n - keep;
    for (size_t i = 0; i < drop; i++)
        free(lines[i].text);
    memmove(lines, lines + drop, keep * sizeof *lines);
    *n = keep;
}

static const char *stream_name(int s)
{
    return s == INK__V1__LOG_ENTRY__STREAM__STDOUT   ? "stdout"
           : s == INK__V1__LOG_ENTRY__STREAM__STDERR ? "stderr"
                                                     : "system";
}

static void tool_get_app_logs(job *j)
{
    const char *app = jstr(j->args, "name");
    json_t *tv = json_object_get(j->args, "tail");
    size_t tail = tv ? (size_t)json_integer_value(tv) : LOG_TAIL_DEFAULT;
    const char *since = jstr(j->args, "since");
    int64_t since_ms = 0;
    if (since && parse_since(since, ink_now_ms(), &since_ms) < 0) {
        job_fail(j,
                 "since: '%s' is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a duration "
                 "back from now (30s, 10m, 2h, 1d)",
                 since);
        return;
    }
    ink_replica_ref *refs = NULL;
    size_t nrefs = 0;
    if (replicas(j, &refs, &nrefs) < 0)
        return;

    log_line *lines = NULL;
    size_t n = 0, cap = 0, seq = 0, answered = 0;
    bool truncated = false;
    json_t *errors = json_array();
    cleanup_free char *first_error = NULL;
    for (size_t r = 0; r < nrefs && !ink_mcp_call_cancelled(j->call); r++) {
        const ink_replica_ref *ref = &refs[r];
        if (!ref->node_id[0])
            continue; /* not placed: no logs anywhere */
        Ink__V1__GetLogsRequest req = INK__V1__GET_LOGS_REQUEST__INIT;
        req.workload_id = (char *)ref->workload_id;
        req.tail = (uint32_t)tail;
        req.since_unix_ms = since_ms;
        agent_call ac;
        char *msg = NULL;
        if (agent_open(&ac, j, ref, "GetLogs", &req.base, &ink__v1__log_entry__descriptor,
                       AGENT_TIMEOUT_MS, &msg) == 0) {
            ProtobufCMessage *m;
            int rc;
            size_t got = 0;
            while ((rc = ink_rpc_stream_next(ac.w.stream, &m, &ac.st)) == 1) {
                Ink__V1__LogEntry *e = (Ink__V1__LogEntry *)m;
                got++;
                size_t len = e->line.len;
                while (len && (e->line.data[len - 1] == '\n' || e->line.data[len - 1] == '\r'))
                    len--;
                if (len > LOG_LINE_MAX) {
                    len = LOG_LINE_MAX;
                    truncated = true;
                }
                if (n == cap) {
                    cap = cap ? 2 * cap : 256;
                    lines = realloc(lines, cap * sizeof *lines);
                    if (!lines)
                        abort();
                }
                lines[n++] = (log_line){.ms = e->unix_ms,
                                        .seq = seq++,
                                        .replica = ref->workload_id,
                                        .stream = e->stream,
                                        .text = bytes_cstr(e->line.data, len)};
                protobuf_c_message_free_unpacked(m, NULL);
            }
            /* As many as asked for: older ones may exist. */
            if (got >= tail)
                truncated = true;
            /* A replica not (yet) on its node has no logs: not an error. */
            if (rc == 0 || ac.st.code == GRPC_STATUS_NOT_FOUND)
                answered++;
            else
                msg = agent_error(&ac);
            agent_close(&ac);
        }
        if (msg) {
            json_array_append_new(errors, replica_error(ref, msg));
            if (!first_error)
                first_error = INK_STEAL(msg);
            free(msg);
        }
        if (n > tail) {
            log_prune(lines, &n, tail);
            truncated = true;
        }
    }
    log_prune(lines, &n, tail);

    size_t first = n, bytes = 0;
    while (first > 0 && bytes + strlen(lines[first - 1].text) <= LOG_BYTES_MAX)
        bytes += strlen(lines[--first].text);
    if (first > 0)
        truncated = true;

    json_t *jl = json_array();
    summary s;
    summary_begin(&s);
    size_t shown_from = n, text_bytes = 0;
    while (shown_from > first &&
           text_bytes + strlen(lines[shown_from - 1].text) + 64 <= SUMMARY_MAX)
        text_bytes += strlen(lines[--shown_from].text) + 64;
    if (shown_from > first)
        fprintf(s.f, "[%zu older lines are only in structuredContent]\n", shown_from - first);
    for (size_t i = first; i < n; i++) {
        char when[32];
        fmt_time(lines[i].ms, when);
        json_t *text = ink_json_text(lines[i].text);
        json_array_append_new(jl, json_pack("{s:s, s:s, s:s, s:O}", "time", when, "replica",
                                            lines[i].replica, "stream",
                                            stream_name(lines[i].stream), "line", text));
        if (i >= shown_from) {
            const char *tag = lines[i].stream == INK__V1__LOG_ENTRY__STREAM__STDOUT   ? ""
                              : lines[i].stream == INK__V1__LOG_ENTRY__STREAM__STDERR ? " [stderr]"
                                                                                      : " [ink]";
            fprintf(s.f, "%s %s%s %s\n", when, lines[i].replica, tag, json_string_value(text));
        }
        json_decref(text);
    }
    for (size_t i = 0; i < n; i++)
        free(lines[i].text);
    free(lines);
    free(refs); /* after the lines: they point at its replica ids */

    if (ink_mcp_call_cancelled(j->call) || (answered == 0 && stopping(j->t))) {
        summary_end(&s);
        free(s.buf);
        json_decref(jl);
        json_decref(errors);
        if (!job_interrupted(j))
            job_drop(j, "cancelled");
        return;
    }
    if (answered == 0 && first_error) {
        summary_end(&s);
        free(s.buf);
        json_decref(jl);
        json_decref(errors);
        job_fail(j, "%s", first_error);
        return;
    }
    if (json_array_size(jl) == 0)
        fprintf(s.f, "No log lines from app '%s'%s%s.", app, since ? " since " : "",
                since ? since : "");
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        fprintf(s.f, "\n(no logs from replica %s: %s)", jstr(e, "replica"), jstr(e, "error"));
    }
    cleanup_free char *text = summary_end(&s);
    json_t *out = json_pack("{s:s, s:o, s:b, s:o}", "app", app, "lines", jl, "truncated", truncated,
                            "errors", errors);
    job_ok(j, out, text);
}

/* The first running replica, current generation first (the order of
 * ink_apps_replicas). */
static const ink_replica_ref *running_replica(const ink_replica_ref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(refs[i].state, "running") == 0 && refs[i].node_id[0])
            return &refs[i];
    return NULL;
}

static void tool_exec_command(job *j)
{
    const char *app = jstr(j->args, "name");
    json_t *cmd = json_object_get(j->args, "command");
    json_t *tv = json_object_get(j->args, "timeout_s");
    uint32_t timeout_s = tv ? (uint32_t)json_integer_value(tv) : EXEC_TIMEOUT_DEFAULT_S;
    ink_replica_ref *refs = NULL;
    size_t nrefs = 0;
    if (replicas(j, &refs, &nrefs) < 0)
        return;
    const ink_replica_ref *r = running_replica(refs, nrefs);
    if (!r) {
        summary s;
        summary_begin(&s);
        for (size_t i = 0; i < nrefs; i++)
            fprintf(s.f, "%s%s %s", i ? ", " : "", refs[i].workload_id, refs[i].state);
        cleanup_free char *states = summary_end(&s);
        free(refs);
        job_fail(j,
                 "app '%s' has no running replica to run the command in (%s); check "
                 "get_app_details, and deploy or restart the app first",
                 app, nrefs ? states : "it has no replicas");
        return;
    }
    size_t argc = json_array_size(cmd);
    char **argv = ink_xcalloc(argc + 1, sizeof *argv);
    for (size_t i = 0; i < argc; i++)
        argv[i] = (char *)json_string_value(json_array_get(cmd, i));
    Ink__V1__ExecRequest req = INK__V1__EXEC_REQUEST__INIT;
    req.workload_id = (char *)r->workload_id;
    req.command = argv;
    req.n_command = argc;
    req.timeout_s = timeout_s;
    ProtobufCMessage *m = NULL;
    grpc_status_code code;
    char *msg = NULL;
    int rc = agent_unary(j, r, "Exec", &req.base, &ink__v1__exec_response__descriptor,
                         (int64_t)timeout_s * 1000 + AGENT_TIMEOUT_MS, &m, &code, &msg);
    free(argv);
    char replica[64];
    snprintf(replica, sizeof replica, "%s", r->workload_id);
    free(refs);
    if (rc < 0) {
        if (code == GRPC_STATUS_CANCELLED && job_interrupted(j)) {
            free(msg);
            return;
        }
        job_fail(j, "%s", msg);
        free(msg);
        return;
    }
    Ink__V1__ExecResponse *resp = (Ink__V1__ExecResponse *)m;
    json_t *out = json_pack("{s:s, s:o, s:o, s:i, s:b, s:b}", "replica", replica, "stdout",
                            bytes_json(resp->stdout.data, resp->stdout.len), "stderr",
                            bytes_json(resp->stderr.data, resp->stderr.len), "exit_code",
                            (int)resp->exit_code, "timed_out", (int)resp->timed_out, "truncated",
                            (int)resp->truncated);
    summary s;
    summary_begin(&s);
    if (resp->timed_out)
        fprintf(s.f, "Timed out after %u s in replica %s (killed)", timeout_s, replica);
    else
        fprintf(s.f, "Exit code %d in replica %s", resp->exit_code, replica);
    if (resp->truncated)
        fprintf(s.f, " (output truncated at the node's limit)");
    const char *o = jstr(out, "stdout"), *e = jstr(out, "stderr");
    size_t olen = strlen(o), elen = strlen(e);
    if (olen)
        fprintf(s.f, "\n--- stdout ---\n%.*s%s", (int)(olen > SUMMARY_MAX ? SUMMARY_MAX : olen), o,
                olen > SUMMARY_MAX ? "\n[cut here: the rest is in structuredContent]" : "");
    if (elen)
        fprintf(s.f, "\n--- stderr ---\n%.*s%s", (int)(elen > SUMMARY_MAX ? SUMMARY_MAX : elen), e,
                elen > SUMMARY_MAX ? "\n[cut here: the rest is in structuredContent]" : "");
    if (!olen && !elen)
        fprintf(s.f, "\n(no output)");
    protobuf_c_message_free_unpacked(m, NULL);
    cleanup_free char *text = summary_end(&s);
    job_ok(j, out, text);
}

/* A value rounded to a fixed number of decimals, so that a history of
 * rates reads as figures and not as float noise. */
static json_t *jround(double v, double scale)
{
    return json_real(round(v * scale) / scale);
}

/* What a replica's history says over its window, for the text summary. */
typedef struct window {
    size_t samples;
    int64_t span_ms;               /* first sample to last */
    double cpu_ns, cpu_s, cpu_max; /* CPU used over the intervals with a rate */
    double rx, tx, net_s;          /* bytes over the intervals with a rate */
    double mem_max;                /* MiB */
} window;

/* A replica's samples (oldest first) as get_app_metrics shows them: CPU
 * and network as rates from the sample before (null for the first, and
 * where a counter went back: it restarted), memory and state as they
 * were. */
static json_t *history_json(const Ink__V1__WorkloadMetrics *w, window *win)
{
    memset(win, 0, sizeof *win);
    json_t *out = json_array();
    for (size_t k = 0; k < w->n_history; k++) {
        const Ink__V1__MetricsSample *s = w->history[k];
        const Ink__V1__MetricsSample *prev = k ? w->history[k - 1] : NULL;
        char when[32];
        fmt_time(s->unix_ms, when);
        double mb = (double)s->memory_bytes / 1048576.0;
        double dt = prev ? (double)(s->unix_ms - prev->unix_ms) / 1000.0 : 0;
        json_t *cpu = json_null(), *rx = json_null(), *tx = json_null();
        if (dt > 0 && s->cpu_ns >= prev->cpu_ns) {
            double used = (double)(s->cpu_ns - prev->cpu_ns);
            double cores = used / 1e9 / dt;
            cpu = jround(cores, 1e4);
            win->cpu_ns += used;
            win->cpu_s += dt;
            if (cores > win->cpu_max)
                win->cpu_max = cores;
        }
        if (dt > 0 && s->rx_bytes >= prev->rx_bytes && s->tx_bytes >= prev->tx_bytes) {
            rx = jround((double)(s->rx_bytes - prev->rx_bytes) / dt, 10);
            tx = jround((double)(s->tx_bytes - prev->tx_bytes) / dt, 10);
            win->rx += (double)(s->rx_bytes - prev->rx_bytes);
            win->tx += (double)(s->tx_bytes - prev->tx_bytes);
            win->net_s += dt;
        }
        if (mb > win->mem_max)
            win->mem_max = mb;
        json_array_append_new(out, json_pack("{s:s, s:o, s:o, s:o, s:o, s:o}", "time", when,
                                             "cpu_cores", cpu, "memory_mb", jround(mb, 100),
                                             "rx_bytes_per_s", rx, "tx_bytes_per_s", tx, "state",
                                             jnullable(ink_workload_state_name(s->state))));
    }
    win->samples = w->n_history;
    if (w->n_history > 1)
        win->span_ms = w->history[w->n_history - 1]->unix_ms - w->history[0]->unix_ms;
    return out;
}

/* "over the last 14 min (85 samples): CPU avg 0.012 cores, max 0.250; memory max 12.5 MiB;
 * network in 1.2 KiB/s, out 3.4 KiB/s on average" */
static void window_text(FILE *f, const window *w)
{
    if (w->samples < 2) {
        fprintf(f, "  history: %s\n",
                w->samples ? "one sample so far (one every 10 s)"
                           : "no samples yet (one every 10 s)");
        return;
    }
    fprintf(f, "  history over the last %lld min (%zu samples):", (long long)(w->span_ms / 60000),
            w->samples);
    if (w->cpu_s > 0)
        fprintf(f, " CPU avg %.3f cores, max %.3f;", w->cpu_ns / 1e9 / w->cpu_s, w->cpu_max);
    fprintf(f, " memory max %.1f MiB", w->mem_max);
    if (w->net_s > 0) {
        char in[32], out[32];
        human_bytes(w->rx / w->net_s, in, sizeof in);
        human_bytes(w->tx / w->net_s, out, sizeof out);
        fprintf(f, "; network in %s/s, out %s/s on average", in, out);
    }
    fprintf(f, "\n");
}

static void tool_get_app_metrics(job *j)
{
    const char *app = jstr(j->args, "name");
    ink_replica_ref *refs = NULL;
    size_t nrefs = 0;
    if (replicas(j, &refs, &nrefs) < 0)
        return;
    json_t *reps = json_array(), *errors = json_array();
    double cpu = 0, mem = 0;
    uint64_t pids = 0, rx = 0, tx = 0;
    size_t answered = 0;
    cleanup_free char *first_error = NULL;
    bool interrupted = false;
    summary s;
    summary_begin(&s);
    for (size_t i = 0; i < nrefs && !interrupted; i++) {
        const ink_replica_ref *r = &refs[i];
        if (!r->node_id[0])
            continue;
        Ink__V1__GetMetricsRequest req = INK__V1__GET_METRICS_REQUEST__INIT;
        req.workload_id = (char *)r->workload_id;
        req.history = true;
        ProtobufCMessage *m = NULL;
        grpc_status_code code;
        char *msg = NULL;
        if (agent_unary(j, r, "GetMetrics", &req.base, &ink__v1__get_metrics_response__descriptor,
                        AGENT_TIMEOUT_MS, &m, &code, &msg) < 0) {
            if (code == GRPC_STATUS_CANCELLED) {
                interrupted = true;
            } else if (code == GRPC_STATUS_NOT_FOUND) {
                answered++; /* not started on its node yet: no metrics */
            } else {
                json_array_append_new(errors, replica_error(r, msg));
                if (!first_error)
                    first_error = INK_STEAL(msg);
            }
            free(msg);
            continue;
        }
        answered++;
        Ink__V1__GetMetricsResponse *resp = (Ink__V1__GetMetricsResponse *)m;
        Ink__V1__WorkloadMetrics *w = NULL;
        for (size_t k = 0; k < resp->n_workloads && !w; k++)
            if (strcmp(resp->workloads[k]->workload_id, r->workload_id) == 0)
                w = resp->workloads[k];
        if (w) {
            double c = (double)w->cpu_ns / 1e9, mb = (double)w->memory_bytes / 1048576.0;
            char last[32] = "";
            if (w->last_activity_unix_ms > 0)
                fmt_time(w->last_activity_unix_ms, last);
            /* The node's own word on the state is the freshest; the
             * coordinator's (the same names) when it has none. */
            const char *state = ink_workload_state_name(w->state);
            if (!state)
                state = r->state;
            window win;
            json_t *history = history_json(w, &win);
            json_t *rep = json_pack("{s:s, s:s, s:f, s:f, s:I, s:I, s:I, s:o}", "id",
                                    r->workload_id, "node", r->node_id, "cpu_seconds", c,
                                    "memory_mb", mb, "pids", (json_int_t)w->pids, "rx_bytes",
                                    (json_int_t)w->rx_bytes, "tx_bytes", (json_int_t)w->tx_bytes,
                                    "last_activity", jnullable(last[0] ? last : NULL));
            json_object_update_new(
                rep, json_pack("{s:s, s:I, s:I, s:o, s:I, s:o}", "state", state, "sleeps",
                               (json_int_t)w->sleeps, "wakes", (json_int_t)w->wakes, "last_wake_ms",
                               w->wakes ? json_integer(w->last_wake_ms) : json_null(),
                               "connections_active", (json_int_t)w->connections_active, "history",
                               history));
            json_array_append_new(reps, rep);
            cpu += c;
            mem += mb;
            pids += w->pids;
            rx += w->rx_bytes;
            tx += w->tx_bytes;
            char rxs[32], txs[32];
            human_bytes((double)w->rx_bytes, rxs, sizeof rxs);
            human_bytes((double)w->tx_bytes, txs, sizeof txs);
            fprintf(s.f,
                    "- %s on %s, %s: CPU %.2f s used, memory %.1f MiB, %u processes, received "
                    "%s, sent %s, %u open connections, last activity %s",
                    r->workload_id, r->node_id, state, c, mb, w->pids, rxs, txs,
                    w->connections_active, last[0] ? last : "none");
            if (w->sleeps || w->wakes)
                fprintf(s.f, "; slept %llu times, woken %llu times", (unsigned long long)w->sleeps,
                        (unsigned long long)w->wakes);
            if (w->wakes)
                fprintf(s.f, " (last wake took %u ms)", w->last_wake_ms);
            fprintf(s.f, "\n");
            window_text(s.f, &win);
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    free(refs);
    if (interrupted || ink_mcp_call_cancelled(j->call)) {
        summary_end(&s);
        free(s.buf);
        json_decref(reps);
        json_decref(errors);
        if (!job_interrupted(j))
            job_fail(j, "a call to a node was cancelled before it answered: try again");
        return;
    }
    if (answered == 0 && first_error) {
        summary_end(&s);
        free(s.buf);
        json_decref(reps);
        json_decref(errors);
        job_fail(j, "%s", first_error);
        return;
    }
    char rxs[32], txs[32];
    human_bytes((double)rx, rxs, sizeof rxs);
    human_bytes((double)tx, txs, sizeof txs);
    if (json_array_size(reps) == 0)
        fprintf(s.f, "App '%s' has no replica running on a node, so there are no metrics.\n", app);
    else
        fprintf(s.f,
                "Total over %zu replica%s: CPU %.2f s, memory %.1f MiB, %llu processes, received "
                "%s, sent %s (CPU time and bytes are counted since each replica was placed, "
                "sleeps included)",
                json_array_size(reps), json_array_size(reps) == 1 ? "" : "s", cpu, mem,
                (unsigned long long)pids, rxs, txs);
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        fprintf(s.f, "\n(no metrics from replica %s: %s)", jstr(e, "replica"), jstr(e, "error"));
    }
    cleanup_free char *text = summary_end(&s);
    json_t *out =
        json_pack("{s:s, s:o, s:{s:f, s:f, s:I, s:I, s:I}, s:o}", "app", app, "replicas", reps,
                  "totals", "cpu_seconds", cpu, "memory_mb", mem, "pids", (json_int_t)pids,
                  "rx_bytes", (json_int_t)rx, "tx_bytes", (json_int_t)tx, "errors", errors);
    job_ok(j, out, text);
}

/* =============================================================== schemas */

#define APP_NAME_RULES                                                                             \
    "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 40 "   \
    "characters"
#define P_NAME_NEW                                                                                 \
    "`name`:{`type`:`string`,`minLength`:1,`maxLength`:40,`description`:`The app's name, unique "  \
    "in the project: " APP_NAME_RULES ". It names the app in every other tool and in its URL.`}"
#define P_NAME                                                                                     \
    "`name`:{`type`:`string`,`minLength`:1,`maxLength`:40,`description`:`The app's name, as "      \
    "given to create_app (see list_apps).`}"
#define S_IMAGE "`type`:`string`,`minLength`:1,`maxLength`:512"
#define D_IMAGE                                                                                    \
    "OCI image reference, e.g. 'nginx:1.27', 'ghcr.io/org/app:v2' or "                             \
    "'registry.example.com/app@sha256:...'. The node pulls it from its registry."
#define S_PORT "`type`:`integer`,`minimum`:1,`maximum`:65535"
#define D_PORT                                                                                     \
    "TCP port the app listens on inside its sandbox. The app counts as ready once this port "      \
    "answers, and its URL forwards to it."
#define S_ENV "`type`:`object`,`additionalProperties`:{`type`:`string`}"
#define D_ENV                                                                                      \
    "Environment variables, NAME: value (at most 128). Shown in get_app_details: put passwords "   \
    "and tokens in secret_env instead."
#define D_SECRET_ENV                                                                               \
    "Secret environment variables, NAME: value: encrypted at rest and never shown again; tools "   \
    "report only each name and a keyed fingerprint of its value."
#define S_CPU "`type`:`number`,`minimum`:0.01,`maximum`:64"
#define D_CPU "CPU per replica in cores: 0.25 is a quarter of one core, 2 is two cores."
#define S_MEMORY "`type`:`integer`,`minimum`:16,`maximum`:262144"
#define D_MEMORY                                                                                   \
    "Memory limit per replica in MiB; a replica that goes over it is killed and restarted."
#define S_REPLICAS "`type`:`integer`,`minimum`:0,`maximum`:20"
#define D_REPLICAS                                                                                 \
    "How many copies of the app run, spread over nodes; 0 stops the app but keeps it."
#define D_MIN_REPLICAS                                                                             \
    "Replicas kept running while the app gets no traffic; 0 lets an idle app sleep and wake on "   \
    "its next request (scale to zero). At most replicas."
_Static_assert(INK_APP_MIN_IDLE_TIMEOUT_S == 10 && INK_APP_MAX_IDLE_TIMEOUT_S == 86400 &&
                   INK_APP_DEFAULT_IDLE_TIMEOUT_S == 300,
               "the idle_timeout_s schema below spells out these limits");
#define S_IDLE_TIMEOUT "`type`:`integer`,`minimum`:10,`maximum`:86400"
#define D_IDLE_TIMEOUT                                                                             \
    "Seconds: with min_replicas 0, a replica idle this long (no requests, no network traffic) "    \
    "sleeps and wakes on the next request, which waits while it wakes (milliseconds when it "      \
    "slept briefly, about half a second after a long sleep). 10 to 86400."
#define S_EGRESS "`type`:`string`,`minLength`:1,`maxLength`:32"
#define D_EGRESS                                                                                   \
    "The egress policy: what the app's replicas may connect to. 'default': the public internet, "  \
    "DNS and the project's own apps, but not cloud metadata (169.254.169.254), SMTP (25, 465, "    \
    "587), private and CGNAT ranges, the nodes themselves or other projects' apps. 'deny-all': "   \
    "only the project's own apps and DNS. 'allowlist': like deny-all plus the destinations in "    \
    "egress_allow. Any other name is a policy your security team installed on the nodes "          \
    "(/etc/ink/policies/NAME.policy; 1-32 of a-z, 0-9, '-'). Blocked connection attempts show "    \
    "as events and per-replica counts in get_app_details."
_Static_assert(INK_EGRESS_ALLOW_MAX == 64 && INK_EGRESS_ALLOW_TEXT_MAX == 269,
               "the egress_allow schema below spells out these limits");
#define S_EGRESS_ALLOW                                                                             \
    "`type`:`array`,`maxItems`:64,`items`:{`type`:`string`,`minLength`:1,`maxLength`:269}"
#define D_EGRESS_ALLOW                                                                             \
    "What an app with egress 'allowlist' may reach (required there, refused with 'default' and "   \
    "'deny-all'): entries TARGET[:PORTS], TARGET an IPv4 address, an IPv4 CIDR or a host name, "   \
    "PORTS a port or a range; no ports means every port, TCP and UDP alike. E.g. "                 \
    "['api.stripe.com:443', '203.0.113.7', '198.51.100.0/24:5432-5433']. At most 64. Host "        \
    "names are resolved on the nodes, again every few minutes; IPv6 is not supported."
#define P_PROJECT                                                                                  \
    "`project`:{`type`:`string`,`minLength`:1,`maxLength`:63,`description`:`Optional: the "        \
    "project, which must be the API key's own (a key works only in its project). Usually "         \
    "omitted.`}"
#define P_IDEMPOTENCY                                                                              \
    "`idempotency_key`:{`type`:`string`,`minLength`:1,`maxLength`:128,`description`:`Optional: "   \
    "any unique string for this request. Retrying with the same key and arguments (e.g. after a "  \
    "timeout) returns the original operation instead of doing it twice; the same key with "        \
    "other arguments is an error.`}"

#define IN_CREATE_APP                                                                              \
    "{`type`:`object`,`properties`:{" P_NAME_NEW ","                                               \
    "`image`:{" S_IMAGE ",`description`:`The " D_IMAGE "`},"                                       \
    "`port`:{" S_PORT ",`description`:`The " D_PORT "`},"                                          \
    "`env`:{" S_ENV ",`description`:`Optional. " D_ENV "`},"                                       \
    "`secret_env`:{" S_ENV ",`description`:`Optional. " D_SECRET_ENV "`},"                         \
    "`cpu`:{" S_CPU ",`description`:`" D_CPU " Default 0.25.`},"                                   \
    "`memory_mb`:{" S_MEMORY ",`description`:`" D_MEMORY " Default 256.`},"                        \
    "`replicas`:{" S_REPLICAS ",`description`:`" D_REPLICAS " Default 1.`},"                       \
    "`min_replicas`:{" S_REPLICAS ",`description`:`" D_MIN_REPLICAS " Default 1.`},"               \
    "`idle_timeout_s`:{" S_IDLE_TIMEOUT ",`description`:`" D_IDLE_TIMEOUT " Default 300 when "     \
    "min_replicas is 0.`},"                                                                        \
    "`egress`:{" S_EGRESS ",`description`:`" D_EGRESS " Default 'default'.`},"                     \
    "`egress_allow`:{" S_EGRESS_ALLOW ",`description`:`" D_EGRESS_ALLOW "`}," P_PROJECT            \
    "," P_IDEMPOTENCY "},"                                                                         \
    "`required`:[`name`,`image`,`port`],`additionalProperties`:false}"

#define IN_UPDATE_APP                                                                              \
    "{`type`:`object`,`properties`:{" P_NAME ","                                                   \
    "`image`:{" S_IMAGE ",`description`:`New " D_IMAGE "`},"                                       \
    "`port`:{" S_PORT ",`description`:`New " D_PORT "`},"                                          \
    "`env`:{" S_ENV ",`description`:`" D_ENV " Replaces the whole plain environment.`},"           \
    "`secret_env`:{" S_ENV ",`description`:`" D_SECRET_ENV " Replaces all of them.`},"             \
    "`cpu`:{" S_CPU ",`description`:`" D_CPU "`},"                                                 \
    "`memory_mb`:{" S_MEMORY ",`description`:`" D_MEMORY "`},"                                     \
    "`replicas`:{" S_REPLICAS ",`description`:`" D_REPLICAS "`},"                                  \
    "`min_replicas`:{" S_REPLICAS ",`description`:`" D_MIN_REPLICAS "`},"                          \
    "`idle_timeout_s`:{" S_IDLE_TIMEOUT ",`description`:`" D_IDLE_TIMEOUT " Setting min_replicas " \
    "to 0 without it gives 300.`},"                                                                \
    "`egress`:{" S_EGRESS ",`description`:`" D_EGRESS " Changing it to 'default' or 'deny-all' "   \
    "drops the app's egress_allow entries.`},"                                                     \
    "`egress_allow`:{" S_EGRESS_ALLOW ",`description`:`" D_EGRESS_ALLOW " Replaces all of "        \
    "them; [] removes them.`}," P_IDEMPOTENCY                                                      \
    "},`required`:[`name`],`additionalProperties`:false}"

#define IN_NAME_ONLY                                                                               \
    "{`type`:`object`,`properties`:{" P_NAME "},`required`:[`name`],`additionalProperties`:false}"
#define IN_NONE "{`type`:`object`,`properties`:{},`additionalProperties`:false}"

#define NULLABLE_STRING "{`type`:[`string`,`null`]}"

#define OUT_DEPLOY(statuses, status_doc)                                                           \
    "{`type`:`object`,`properties`:{"                                                              \
    "`app`:{`type`:`string`},"                                                                     \
    "`status`:{`enum`:[" statuses "],`description`:`" status_doc "`},"                             \
    "`url`:{`type`:[`string`,`null`],`description`:`Where the app answers (HTTP); null until a "   \
    "replica serves.`},"                                                                           \
    "`operation_id`:{`type`:`string`,`description`:`For get_operation.`},"                         \
    "`message`:{`type`:`string`}},"                                                                \
    "`required`:[`app`,`status`,`url`,`operation_id`,`message`]}"
#define OUT_OP_RESULT(statuses, status_doc)                                                        \
    "{`type`:`object`,`properties`:{"                                                              \
    "`app`:{`type`:`string`},"                                                                     \
    "`status`:{`enum`:[" statuses "],`description`:`" status_doc "`},"                             \
    "`operation_id`:{`type`:`string`,`description`:`For get_operation.`},"                         \
    "`message`:{`type`:`string`}},"                                                                \
    "`required`:[`app`,`status`,`operation_id`,`message`]}"

#define OUT_OPERATION                                                                              \
    "{`type`:`object`,`properties`:{"                                                              \
    "`operation_id`:{`type`:`string`},"                                                            \
    "`kind`:{`type`:`string`,`description`:`create_app, update_app, delete_app or restart_app`},"  \
    "`app`:{`type`:`string`},`project`:{`type`:`string`},"                                         \
    "`status`:{`enum`:[`running`,`succeeded`,`failed`]},"                                          \
    "`message`:{`type`:[`string`,`null`],`description`:`What happens now, or why it failed.`},"    \
    "`progress`:{`type`:`number`,`minimum`:0,`maximum`:100,`description`:`Percent done.`},"        \
    "`url`:" NULLABLE_STRING ","                                                                   \
    "`created_at`:{`type`:`string`},`updated_at`:{`type`:`string`}},"                              \
    "`required`:[`operation_id`,`kind`,`app`,`status`,`message`,`progress`,`url`]}"

#define OUT_REPLICA_STATUS                                                                         \
    "{`type`:`object`,`properties`:{"                                                              \
    "`id`:{`type`:`string`},`node`:" NULLABLE_STRING ",`generation`:{`type`:`integer`},"           \
    "`state`:{`type`:`string`,`description`:`pending, pulling, starting, running, crash-loop, "    \
    "failed, stopped, sleeping, waking, unreachable or scheduling`},"                              \
    "`reason`:" NULLABLE_STRING ",`restarts`:{`type`:`integer`},"                                  \
    "`image_digest`:" NULLABLE_STRING ",`url`:" NULLABLE_STRING ",`since`:" NULLABLE_STRING ","    \
    "`egress_blocked`:{`type`:`object`,`additionalProperties`:{`type`:`integer`},"                 \
    "`description`:`Packets the egress policy dropped, per category (metadata, smtp, private, "    \
    "tenant, unmatched, ...), since the replica was placed on its node.`}},"                       \
    "`required`:[`id`,`state`]}"

#define OUT_EGRESS                                                                                 \
    "`egress`:{`type`:`string`,`description`:`The egress policy.`},"                               \
    "`egress_allow`:{`type`:`array`,`items`:{`type`:`string`},`description`:`Its allowlist "       \
    "entries, in canonical form.`}"

#define APP_STATUSES                                                                               \
    "`deploying`,`running`,`sleeping`,`waking`,`degraded`,`failed`,`crash-loop`,`stopped`,"        \
    "`deleting`"

#define OUT_APP                                                                                    \
    "{`type`:`object`,`properties`:{"                                                              \
    "`app`:{`type`:`string`},`project`:{`type`:`string`},"                                         \
    "`status`:{`enum`:[" APP_STATUSES "],`description`:`sleeping: every replica sleeps after its " \
    "idle timeout and the URL's next request wakes it; waking: one is waking for a request.`},"    \
    "`status_reason`:" NULLABLE_STRING ","                                                         \
    "`url`:" NULLABLE_STRING ",`image`:{`type`:`string`},`image_digest`:" NULLABLE_STRING ","      \
    "`port`:{`type`:`integer`},"                                                                   \
    "`env`:{`type`:`object`,`additionalProperties`:{`type`:`string`}},"                            \
    "`secret_env`:{`type`:`array`,`items`:{`type`:`object`,`properties`:{"                         \
    "`name`:{`type`:`string`},`fingerprint`:{`type`:`string`}},"                                   \
    "`required`:[`name`,`fingerprint`],`additionalProperties`:false}},"                            \
    "`cpu`:{`type`:`number`},`memory_mb`:{`type`:`integer`},`replicas`:{`type`:`integer`},"        \
    "`min_replicas`:{`type`:`integer`},`idle_timeout_s`:{`type`:[`integer`,`null`],"               \
    "`description`:`With min_replicas 0: seconds idle before a replica sleeps (scale to zero). "   \
    "null: the app never sleeps.`},"                                                               \
    "`ready_replicas`:{`type`:`integer`,`description`:`Replicas that serve: running, or "          \
    "sleeping or waking (a request wakes them).`}," OUT_EGRESS ","                                 \
    "`generation`:{`type`:`integer`},`created_at`:{`type`:`string`},"                              \
    "`updated_at`:{`type`:`string`},`operation_id`:" NULLABLE_STRING ","                           \
    "`replica_status`:{`type`:`array`,`items`:" OUT_REPLICA_STATUS "},"                            \
    "`events`:{`type`:`array`,`items`:{`type`:`object`,`properties`:{"                             \
    "`time`:{`type`:`string`},`message`:{`type`:`string`}},`required`:[`time`,`message`]}}},"      \
    "`required`:[`app`,`project`,`status`,`url`,`image`,`port`,`env`,`secret_env`,`cpu`,"          \
    "`memory_mb`,`replicas`,`min_replicas`,`ready_replicas`,`egress`,`egress_allow`,"              \
    "`generation`,`operation_id`,`replica_status`,`events`]}"

#define OUT_LIST_APPS                                                                              \
    "{`type`:`object`,`properties`:{"                                                              \
    "`apps`:{`type`:`array`,`items`:{`type`:`object`,`properties`:{"                               \
    "`app`:{`type`:`string`},`project`:{`type`:`string`},`status`:{`enum`:[" APP_STATUSES "]},"    \
    "`url`:" NULLABLE_STRING ",`image`:{`type`:`string`},`replicas`:{`type`:`integer`},"           \
    "`ready_replicas`:{`type`:`integer`}," OUT_EGRESS ",`updated_at`:{`type`:`string`}},"          \
    "`required`:[`app`,`status`,`url`,`egress`]}},"                                                \
    "`next_cursor`:{`type`:[`string`,`null`],`description`:`Pass to list_apps for the next "       \
    "page; null on the last page.`}},"                                                             \
    "`required`:[`apps`,`next_cursor`]}"

#define OUT_NODES                                                                                  \
    "{`type`:`object`,`properties`:{`nodes`:{`type`:`array`,`items`:{`type`:`object`,"             \
    "`properties`:{`node`:{`type`:`string`},`status`:{`enum`:[`ready`,`unreachable`]},"            \
    "`address`:" NULLABLE_STRING ",`cpus`:{`type`:`integer`},`memory_mb`:{`type`:`integer`},"      \
    "`cpu_allocated`:{`type`:`number`,`description`:`cores reserved by replicas`},"                \
    "`memory_allocated_mb`:{`type`:`integer`},`replicas`:{`type`:`integer`},"                      \
    "`runsc_version`:" NULLABLE_STRING ",`agent_version`:" NULLABLE_STRING ","                     \
    "`last_seen`:" NULLABLE_STRING "},`required`:[`node`,`status`]}}},`required`:[`nodes`]}"

#define RESOURCE_ITEM                                                                              \
    "{`type`:`object`,`properties`:{`resource`:{`type`:`string`},`project`:{`type`:`string`},"     \
    "`type`:{`type`:`string`},`size_mb`:{`type`:`integer`},`status`:{`type`:`string`},"            \
    "`created_at`:{`type`:`string`}},`required`:[`resource`,`type`,`status`]}"
#define OUT_RESOURCES                                                                              \
    "{`type`:`object`,`properties`:{`resources`:{`type`:`array`,`items`:" RESOURCE_ITEM "}},"      \
    "`required`:[`resources`]}"

#define REPLICA_ERRORS                                                                             \
    "`errors`:{`type`:`array`,`description`:`Replicas whose node could not be asked.`,"            \
    "`items`:{`type`:`object`,`properties`:{`replica`:{`type`:`string`},`node`:{`type`:`string`}," \
    "`error`:{`type`:`string`}},`required`:[`replica`,`error`]}}"

#define OUT_LOGS                                                                                   \
    "{`type`:`object`,`properties`:{`app`:{`type`:`string`},"                                      \
    "`lines`:{`type`:`array`,`description`:`Oldest first.`,`items`:{`type`:`object`,"              \
    "`properties`:{`time`:{`type`:`string`},`replica`:{`type`:`string`},"                          \
    "`stream`:{`enum`:[`stdout`,`stderr`,`system`],`description`:`system: written by ink about "   \
    "the replica (starts, exits, restarts).`},`line`:{`type`:`string`}},"                          \
    "`required`:[`time`,`replica`,`stream`,`line`]}},"                                             \
    "`truncated`:{`type`:`boolean`,`description`:`Older lines may exist (ask with a larger tail "  \
    "or a since), or a line was cut.`}," REPLICA_ERRORS                                            \
    "},`required`:[`app`,`lines`,`truncated`]}"

#define METRIC_PROPS                                                                               \
    "`cpu_seconds`:{`type`:`number`,`description`:`CPU time used since the replica was placed "    \
    "(sleeps included).`},"                                                                        \
    "`memory_mb`:{`type`:`number`,`description`:`Memory in use now, MiB.`},"                       \
    "`pids`:{`type`:`integer`,`description`:`Processes now.`},"                                    \
    "`rx_bytes`:{`type`:`integer`,`description`:`Network bytes received since placed.`},"          \
    "`tx_bytes`:{`type`:`integer`,`description`:`Network bytes sent since placed.`}"
#define RATE "`type`:[`number`,`null`]"
#define METRICS_SAMPLE                                                                             \
    "{`type`:`object`,`properties`:{`time`:{`type`:`string`},"                                     \
    "`cpu_cores`:{" RATE ",`description`:`CPU in cores since the sample before (null for the "     \
    "first).`},"                                                                                   \
    "`memory_mb`:{`type`:`number`},"                                                               \
    "`rx_bytes_per_s`:{" RATE "},`tx_bytes_per_s`:{" RATE "},"                                     \
    "`state`:{`type`:[`string`,`null`],`description`:`running, sleeping, waking, ...`}},"          \
    "`required`:[`time`,`cpu_cores`,`memory_mb`,`rx_bytes_per_s`,`tx_bytes_per_s`,`state`]}"
#define OUT_METRICS                                                                                \
    "{`type`:`object`,`properties`:{`app`:{`type`:`string`},"                                      \
    "`replicas`:{`type`:`array`,`items`:{`type`:`object`,`properties`:{`id`:{`type`:`string`},"    \
    "`node`:{`type`:`string`}," METRIC_PROPS ",`last_activity`:{`type`:[`string`,`null`],"         \
    "`description`:`Last network activity.`},"                                                     \
    "`state`:{`type`:`string`,`description`:`As in get_app_details: running, sleeping (scaled "    \
    "to zero), waking, starting, ...`},"                                                           \
    "`sleeps`:{`type`:`integer`,`description`:`Times it went to sleep when idle.`},"               \
    "`wakes`:{`type`:`integer`,`description`:`Times a request woke it.`},"                         \
    "`last_wake_ms`:{`type`:[`integer`,`null`],`description`:`How long its last wake took, from "  \
    "the request held to the app answering; null: never woken.`},"                                 \
    "`connections_active`:{`type`:`integer`,`description`:`Connections open through the app's "    \
    "URL now.`},"                                                                                  \
    "`history`:{`type`:`array`,`items`:" METRICS_SAMPLE ",`description`:`A sample every 10 s "     \
    "over the last 15 minutes, oldest first.`}},"                                                  \
    "`required`:[`id`,`node`,`cpu_seconds`,`memory_mb`,`pids`,`rx_bytes`,`tx_bytes`,"              \
    "`last_activity`,`state`,`sleeps`,`wakes`,`last_wake_ms`,`connections_active`,`history`]}},"   \
    "`totals`:{`type`:`object`,`properties`:{" METRIC_PROPS "},`required`:[`cpu_seconds`,"         \
    "`memory_mb`,`pids`,`rx_bytes`,`tx_bytes`]}," REPLICA_ERRORS "},"                              \
    "`required`:[`app`,`replicas`,`totals`]}"

#define OUT_EXEC                                                                                   \
    "{`type`:`object`,`properties`:{`replica`:{`type`:`string`},`stdout`:{`type`:`string`},"       \
    "`stderr`:{`type`:`string`},`exit_code`:{`type`:`integer`},`timed_out`:{`type`:`boolean`},"    \
    "`truncated`:{`type`:`boolean`,`description`:`Output was cut at the node's 1 MiB limit.`}},"   \
    "`required`:[`replica`,`stdout`,`stderr`,`exit_code`,`timed_out`,`truncated`]}"

static const tool_def tool_defs[] = {
    {
        .name = "create_app",
        .title = "Deploy an app",
        .description =
            "Deploys a container image as a new app in your project and waits until it serves: "
            "the answer has the app's URL once a replica answers on its port (never a URL that "
            "does not answer yet). If that takes longer than {wait} seconds the answer says "
            "status 'deploying' with an operation_id: the deployment goes on, follow it with "
            "get_operation. Sends progress notifications when the request has a progressToken. "
            "Calling it again with the same arguments is safe (an identical app returns its "
            "operation); to change an existing app use update_app. Defaults: 1 replica, 0.25 "
            "CPU, 256 MiB.",
        .input = IN_CREATE_APP,
        .output = OUT_DEPLOY("`running`,`failed`,`deploying`",
                             "running: serves at url; failed: see message; deploying: still "
                             "going, poll get_operation"),
        .read_only = false,
        .destructive = false,
        .idempotent = true,
        .run = tool_create_app,
    },
    {
        .name = "list_apps",
        .title = "List apps",
        .description = "Lists the apps of your project, ordered by name, with their status, URL "
                       "and how many replicas are ready. 50 per page: when next_cursor is not "
                       "null, call again with it for the next page.",
        .input = "{`type`:`object`,`properties`:{" P_PROJECT ",`cursor`:{`type`:`string`,"
                 "`description`:`next_cursor of the previous page; omit for the first page.`}},"
                 "`additionalProperties`:false}",
        .output = OUT_LIST_APPS,
        .read_only = true,
        .idempotent = true,
        .run = tool_list_apps,
    },
    {
        .name = "get_app_details",
        .title = "App details",
        .description =
            "Everything about one app: status and why (sleeping: scaled to zero, its URL's next "
            "request wakes it), URL, image (and the digest that runs), "
            "port, env, secret names with fingerprints (never values), CPU and memory, scale to "
            "zero (min_replicas, idle_timeout_s), egress "
            "policy, each replica's node, state, restarts and connection attempts its egress "
            "policy blocked, and recent events. Start here when an app does not behave; then "
            "get_app_logs.",
        .input = IN_NAME_ONLY,
        .output = OUT_APP,
        .read_only = true,
        .idempotent = true,
        .run = tool_get_app_details,
    },
    {
        .name = "update_app",
        .title = "Update an app",
        .description =
            "Changes an app (image, port, env, secrets, CPU, memory, replica counts, idle "
            "timeout, egress policy): only the arguments given change. Rolling: each new replica "
            "must serve before "
            "an old one "
            "stops, so the app stays up, and a new version that never serves leaves the old "
            "one running and the update 'failed'. Waits like create_app (up to {wait} seconds, "
            "then status 'deploying': follow it with get_operation). An update that changes "
            "nothing returns the app's last operation.",
        .input = IN_UPDATE_APP,
        .output = OUT_DEPLOY("`running`,`failed`,`deploying`",
                             "running: the new version serves at url; failed: see message (the "
                             "old version keeps running); deploying: still going, poll "
                             "get_operation"),
        .read_only = false,
        .destructive = true,
        .idempotent = true,
        .run = tool_update_app,
    },
    {
        .name = "delete_app",
        .title = "Delete an app",
        .description = "Deletes an app: stops and removes every replica and frees its URL. Its "
                       "logs and data inside the sandboxes are lost. Waits until the replicas "
                       "are gone (up to {wait} seconds, then status 'deleting': follow it with "
                       "get_operation). Deleting an app that is being deleted returns the same "
                       "operation.",
        .input = IN_NAME_ONLY,
        .output = OUT_OP_RESULT("`deleted`,`failed`,`deleting`",
                                "deleted: gone; deleting: still going, poll get_operation"),
        .read_only = false,
        .destructive = true,
        .idempotent = true,
        .run = tool_delete_app,
    },
    {
        .name = "restart_app",
        .title = "Restart an app",
        .description =
            "Replaces every replica of an app with a fresh one (same spec), one at a time, "
            "each "
            "new one serving before the old one stops. Anything the app kept inside its "
            "sandbox "
            "is lost. Waits like create_app (up to {wait} seconds, then status 'restarting').",
        .input = IN_NAME_ONLY,
        .output = OUT_OP_RESULT("`running`,`failed`,`restarting`",
                                "running: every replica was replaced; restarting: still going, "
                                "poll get_operation"),
        .read_only = false,
        .destructive = true,
        .idempotent = false,
        .run = tool_restart_app,
    },
    {
        .name = "get_app_logs",
        .title = "App logs",
        .description =
            "The app's recent output (stdout, stderr, and ink's own notes about starts, exits "
            "and restarts), from all its replicas merged by time, oldest first. Use it when a "
            "deployment failed or the app misbehaves.",
        .input = "{`type`:`object`,`properties`:{" P_NAME
                 ",`tail`:{`type`:`integer`,`minimum`:1,`maximum`:1000,`description`:`How many "
                 "of the newest lines to return. Default 100.`},`since`:{`type`:`string`,"
                 "`minLength`:1,`maxLength`:64,`description`:`Only lines from this time on: an "
                 "RFC 3339 time (2026-01-02T15:04:05Z) or a duration back from now (30s, 10m, 2h, "
                 "1d).`}},`required`:[`name`],`additionalProperties`:false}",
        .output = OUT_LOGS,
        .read_only = true,
        .idempotent = true,
        .run = tool_get_app_logs,
    },
    {
        .name = "get_app_metrics",
        .title = "App metrics",
        .description =
            "Resource use of each replica of an app, now and over the last 15 minutes. Now: CPU "
            "seconds used, memory in MiB, processes, network bytes received and sent, last "
            "network activity, state (running, sleeping, ...), how often it slept and was woken "
            "and how long its last wake took, open connections; and the totals. History: a "
            "sample every 10 s over the last 15 minutes with CPU in cores, memory, network bytes "
            "per second and state. CPU time and bytes count from when the replica was placed and "
            "keep counting while the app sleeps (scaled to zero).",
        .input = IN_NAME_ONLY,
        .output = OUT_METRICS,
        .read_only = true,
        .idempotent = true,
        .run = tool_get_app_metrics,
    },
    {
        .name = "exec_command",
        .title = "Run a command in an app",
        .description =
            "Runs a command inside a running replica of an app (the first one of its current "
            "version), like docker exec, and returns its stdout, stderr and exit code. No "
            "shell "
            "unless you ask for one: ['sh', '-c', 'ls -l /data | head']. Output is cut at 1 "
            "MiB "
            "per stream. The command can change the app's files and processes.",
        .input = "{`type`:`object`,`properties`:{" P_NAME
                 ",`command`:{`type`:`array`,`minItems`:1,`maxItems`:256,`items`:{`type`:"
                 "`string`},`description`:`The program and its arguments, e.g. ['ls', '-l', "
                 "'/app'].`},`timeout_s`:{`type`:`integer`,`minimum`:1,`maximum`:300,"
                 "`description`:`Seconds before the command is killed. Default 30.`}},"
                 "`required`:[`name`,`command`],`additionalProperties`:false}",
        .output = OUT_EXEC,
        .read_only = false,
        .destructive = true,
        .idempotent = false,
        .run = tool_exec_command,
    },
    {
        .name = "create_resource",
        .title = "Create a resource",
        .description =
            "Creates a resource for the apps of your project. Supported type: 'volume' (a "
            "node-local disk volume of size_mb MiB, default 1024). Other types (databases, "
            "caches) are not supported yet.",
        .input = "{`type`:`object`,`properties`:{`type`:{`type`:`string`,`minLength`:1,"
                 "`maxLength`:32,`description`:`The kind of resource: 'volume'.`},`name`:{`type`:"
                 "`string`,`minLength`:1,`maxLength`:63,`description`:`The resource's name, "
                 "unique in the project: lowercase letters, digits and '-'.`},`size_mb`:{`type`:"
                 "`integer`,`minimum`:1,`maximum`:1048576,`description`:`Size in MiB (volume). "
                 "Default 1024.`}," P_PROJECT
                 "},`required`:[`type`,`name`],`additionalProperties`:false}",
        .output = RESOURCE_ITEM,
        .read_only = false,
        .destructive = false,
        .idempotent = false,
        .run = tool_create_resource,
    },
    {
        .name = "list_resources",
        .title = "List resources",
        .description = "Lists the resources (volumes) of your project with their type, size and "
                       "status.",
        .input = "{`type`:`object`,`properties`:{" P_PROJECT "},`additionalProperties`:false}",
        .output = OUT_RESOURCES,
        .read_only = true,
        .idempotent = true,
        .run = tool_list_resources,
    },
    {
        .name = "delete_resource",
        .title = "Delete a resource",
        .description = "Deletes a resource of your project. A volume's data is lost for good.",
        .input = "{`type`:`object`,`properties`:{`name`:{`type`:`string`,`minLength`:1,"
                 "`maxLength`:63,`description`:`The resource's name (see list_resources).`}},"
                 "`required`:[`name`],`additionalProperties`:false}",
        .output = RESOURCE_ITEM,
        .read_only = false,
        .destructive = true,
        .idempotent = true,
        .run = tool_delete_resource,
    },
    {
        .name = "list_nodes",
        .title = "List nodes",
        .description = "The machines apps run on: whether each is ready or unreachable, its "
                       "CPUs and memory, how much of them replicas have reserved, and how many "
                       "replicas it runs. Useful when a deployment cannot be placed.",
        .input = IN_NONE,
        .output = OUT_NODES,
        .read_only = true,
        .idempotent = true,
        .run = tool_list_nodes,
    },
    {
        .name = "get_operation",
        .title = "Operation status",
        .description =
            "The state of an operation started by create_app, update_app, delete_app or "
            "restart_app: status running, succeeded or failed, progress in percent, what it is "
            "doing now or why it failed, and the app's URL once it serves. Poll it (every 10 "
            "seconds or so) after one of those tools answered 'deploying'.",
        .input = "{`type`:`object`,`properties`:{`operation_id`:{`type`:`string`,`minLength`:1,"
                 "`maxLength`:128,`description`:`operation_id from the tool that started it.`}},"
                 "`required`:[`operation_id`],`additionalProperties`:false}",
        .output = OUT_OPERATION,
        .read_only = true,
        .idempotent = true,
        .run = tool_get_operation,
    },
};

#define INSTRUCTIONS                                                                               \
    "Ink runs container images as apps on a cluster of machines and gives each app a URL. "        \
    "Deploy with create_app (it waits until the app answers and returns its URL), inspect with "   \
    "get_app_details, get_app_logs, get_app_metrics and exec_command, change with update_app "     \
    "(rolling, no downtime), remove with delete_app. When a tool answers 'deploying', the work "   \
    "goes on: poll get_operation with its operation_id. Your API key belongs to one project and "  \
    "sees only that project's apps; a 'reader' key may only call the read-only tools."

/* ============================================================== the pool */

static void *worker_main(void *arg);
static void *ticker_main(void *arg);

static void read_only_names(FILE *f)
{
    bool first = true;
    for (size_t i = 0; i < INK_ARRAY_LEN(tool_defs); i++) {
        if (tool_defs[i].read_only) {
            fprintf(f, "%s%s", first ? "" : ", ", tool_defs[i].name);
            first = false;
        }
    }
}

/* Who may call what, then the tool. */
static void run_job(job *j)
{
    ink_tools *t = j->t;
    if (ink_mcp_call_cancelled(j->call)) {
        job_drop(j, "cancelled");
        return;
    }
    j->who = ink_mcp_call_auth(j->call);
    if (!j->who) {
        job_fail(j, "no API key: this server needs one");
        return;
    }
    if (t->recheck_key) {
        ink_key_info info;
        ink_err err = {0};
        int rc = ink_keys_verify(t->ctx.store, t->recheck_key, &info, &err);
        if (rc < 0) {
            job_fail(j, "internal error in ink-coordinator: cannot check the API key: %s", err.msg);
            return;
        }
        if (rc == 0 || strcmp(info.keyid, j->who->key_id) != 0) {
            job_fail(j,
                     "the API key %s is no longer valid (revoked): ask the operator for a new "
                     "key",
                     j->who->key_id);
            return;
        }
    }
    if (!j->def->read_only && j->who->role != INK_ROLE_DEPLOYER) {
        summary s;
        summary_begin(&s);
        read_only_names(s.f);
        cleanup_free char *ro = summary_end(&s);
        job_fail(j,
                 "this API key has the '%s' role, which may only call the read-only tools (%s); "
                 "%s needs a key with the 'deployer' role",
                 ink_key_role_name(j->who->role), ro, j->def->name);
        return;
    }
    const char *project = jstr(j->args, "project");
    if (project && strcmp(project, j->who->project) != 0) {
        job_fail(j,
                 "this key belongs to project '%s', not '%s': omit project, or use a key of "
                 "project '%s'",
                 j->who->project, project, project);
        return;
    }
    j->def->run(j);
}

static void *worker_main(void *arg)
{
    ink_tools *t = arg;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->qhead && !t->stopping)
            pthread_cond_wait(&t->work, &t->mu);
        job *j = t->qhead;
        if (!j)
            break;
        t->qhead = j->next;
        if (!t->qhead)
            t->qtail = NULL;
        t->qlen--;
        bool stop = t->stopping;
        pthread_mutex_unlock(&t->mu);
        if (stop)
            job_drop(j, "ink-coordinator is shutting down: call the tool again in a moment");
        else
            run_job(j);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void *ticker_main(void *arg)
{
    ink_tools *t = arg;
    job *waits = NULL;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (t->waits_in) {
            job *j = t->waits_in;
            t->waits_in = j->next;
            j->next = waits;
            waits = j;
        }
        for (rpc_watch *w = t->watches; w; w = w->next) {
            if (!w->cancelled && (t->stopping || ink_mcp_call_cancelled(w->call))) {
                w->cancelled = true;
                ink_rpc_stream_cancel(w->stream);
            }
        }
        bool stop = t->stopping, quit = t->ticker_exit;
        t->poked = false;
        pthread_mutex_unlock(&t->mu);

        for (job **p = &waits; *p;) {
            job *j = *p;
            job *next = j->next;
            if (wait_poll(j, stop))
                *p = next;
            else
                p = &j->next;
        }

        pthread_mutex_lock(&t->mu);
        if (quit && !waits && !t->waits_in)
            break;
        if (!t->waits_in && !t->poked) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += TICK_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&t->tick, &t->mu, &ts);
        }
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* The MCP handler, on a transport thread: queue and return. */
static void dispatch(ink_mcp_call *call, const json_t *args, void *ctx)
{
    binding *b = ctx;
    ink_tools *t = b->t;
    job *j = ink_xcalloc(1, sizeof *j);
    j->t = t;
    j->def = b->def;
    j->call = call;
    j->args = args;
    j->started_ms = ink_now_ms();
    pthread_mutex_lock(&t->mu);
    const char *refuse = t->stopping            ? "ink-coordinator is shutting down: call the tool "
                                                  "again in a moment"
                         : t->qlen >= QUEUE_MAX ? "ink-coordinator is busy: call the tool again in "
                                                  "a few seconds"
                                                : NULL;
    if (!refuse) {
        if (t->qtail)
            t->qtail->next = j;
        else
            t->qhead = j;
        t->qtail = j;
        t->qlen++;
        pthread_cond_signal(&t->work);
    }
    pthread_mutex_unlock(&t->mu);
    if (refuse)
        job_drop(j, refuse);
}

/* ================================================================ public */

ink_mcp_server *ink_tools_server(ink_tools *t)
{
    return t->srv;
}

static char *description_text(const char *d, int64_t wait_ms)
{
    const char *hit = strstr(d, "{wait}");
    if (!hit)
        return ink_xstrdup(d);
    return ink_xasprintf("%.*s%lld%s", (int)(hit - d), d, (long long)(wait_ms / 1000), hit + 6);
}

ink_tools *ink_tools_new(const ink_tools_ctx *ctx, ink_err *err)
{
    ink_tools *t = ink_xcalloc(1, sizeof *t);
    t->ctx = *ctx;
    t->ctx.recheck_key = NULL;
    t->recheck_key = ctx->recheck_key ? ink_xstrdup(ctx->recheck_key) : NULL;
    t->deploy_wait_ms = ctx->cfg->deploy_wait_ms > 0 ? ctx->cfg->deploy_wait_ms : 45000;
    pthread_mutex_init(&t->mu, NULL);
    pthread_mutex_init(&t->callers_mu, NULL);
    pthread_mutex_init(&t->clients_mu, NULL);
    pthread_cond_init(&t->work, NULL);
    pthread_cond_init(&t->tick, NULL);

    t->srv = ink_mcp_server_new("ink", INK_VERSION, INSTRUCTIONS);
    if (ctx->cfg->mcp_max_body)
        ink_mcp_server_set_max_message(t->srv, (size_t)ctx->cfg->mcp_max_body);
    t->nbindings = INK_ARRAY_LEN(tool_defs);
    t->bindings = ink_xcalloc(t->nbindings, sizeof *t->bindings);
    for (size_t i = 0; i < t->nbindings; i++) {
        const tool_def *d = &tool_defs[i];
        t->bindings[i] = (binding){t, d};
        cleanup_free char *in = schema_text(d->input);
        cleanup_free char *out = schema_text(d->output);
        cleanup_free char *desc = description_text(d->description, t->deploy_wait_ms);
        ink_mcp_tool mt = {
            .name = d->name,
            .title = d->title,
            .description = desc,
            .input_schema_json = in,
            .output_schema_json = out,
            .read_only = d->read_only,
            .destructive = d->destructive,
            .idempotent = d->idempotent,
            .handler = dispatch,
            .on_invalid = audit_invalid,
            .ctx = &t->bindings[i],
        };
        if (ink_mcp_server_add_tool(t->srv, &mt, err) < 0) {
            ink_err_wrap(err, "tool %s", d->name);
            ink_tools_free(t);
            return NULL;
        }
    }

    int n = ctx->threads > 0 ? ctx->threads : INK_TOOLS_DEFAULT_THREADS;
    t->workers = ink_xcalloc((size_t)n, sizeof *t->workers);
    for (; t->nworkers < n; t->nworkers++) {
        int rc = pthread_create(&t->workers[t->nworkers], NULL, worker_main, t);
        if (rc != 0) {
            ink_err_set(err, rc, "starting MCP tool workers");
            ink_tools_free(t);
            return NULL;
        }
    }
    int rc = pthread_create(&t->ticker, NULL, ticker_main, t);
    if (rc != 0) {
        ink_err_set(err, rc, "starting the MCP tool ticker");
        ink_tools_free(t);
        return NULL;
    }
    t->ticker_started = true;
    return t;
}

void ink_tools_poke(ink_tools *t)
{
    pthread_mutex_lock(&t->mu);
    t->poked = true;
    pthread_cond_signal(&t->tick);
    pthread_mutex_unlock(&t->mu);
}

void ink_tools_free(ink_tools *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->stopping = true;
    pthread_cond_broadcast(&t->work);
    pthread_cond_signal(&t->tick);
    pthread_mutex_unlock(&t->mu);
    for (int i = 0; i < t->nworkers; i++)
        pthread_join(t->workers[i], NULL);
    /* Only now: the workers may still hand deployments to the ticker, and
     * their agent calls need it to be cancelled. */
    pthread_mutex_lock(&t->mu);
    t->ticker_exit = true;
    pthread_cond_signal(&t->tick);
    pthread_mutex_unlock(&t->mu);
    if (t->ticker_started)
        pthread_join(t->ticker, NULL);

    ink_mcp_server_free(t->srv);
    free(t->bindings);
    free(t->workers);
    for (size_t i = 0; i < t->ncallers; i++)
        free(t->callers[i]);
    free(t->callers);
    for (size_t i = 0; i < t->nclients; i++)
        ink_rpc_client_free(t->clients[i].client);
    free(t->clients);
    if (t->recheck_key) {
        explicit_bzero(t->recheck_key, strlen(t->recheck_key));
        free(t->recheck_key);
    }
    pthread_cond_destroy(&t->work);
    pthread_cond_destroy(&t->tick);
    pthread_mutex_destroy(&t->clients_mu);
    pthread_mutex_destroy(&t->callers_mu);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* One ink_caller per key id for the life of the tools: sessions compare
 * the pointer on every request, and a key's project and role never change
 * (revocation is checked on every request, not here). */
static const ink_caller *intern_caller(ink_tools *t, const ink_key_info *k)
{
    pthread_mutex_lock(&t->callers_mu);
    ink_caller *c = NULL;
    for (size_t i = 0; i < t->ncallers && !c; i++)
        if (strcmp(t->callers[i]->key_id, k->keyid) == 0)
            c = t->callers[i];
    if (!c) {
        ink_caller **nc = realloc(t->callers, (t->ncallers + 1) * sizeof *nc);
        if (!nc)
            abort();
        t->callers = nc;
        c = ink_xcalloc(1, sizeof *c);
        snprintf(c->key_id, sizeof c->key_id, "%s", k->keyid);
        snprintf(c->project, sizeof c->project, "%s", k->project);
        c->role = k->role;
        t->callers[t->ncallers++] = c;
    }
    pthread_mutex_unlock(&t->callers_mu);
    return c;
}

int ink_tools_verify_key(ink_tools *t, const char *key, const ink_caller **who, ink_err *err)
{
    ink_key_info info;
    int rc = ink_keys_verify(t->ctx.store, key, &info, err);
    if (rc == 1)
        *who = intern_caller(t, &info);
    return rc;
}

void *ink_tools_authenticate(void *arg, const char *authorization)
{
    ink_tools *t = arg;
    if (!authorization)
        return NULL;
    const char *p = authorization;
    while (*p == ' ' || *p == '\t')
        p++;
    /* The scheme is case-insensitive (RFC 9110). */
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return NULL;
    p += 6;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t len = strlen(p);
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    if (len != INK_KEY_LEN)
        return NULL;
    char key[INK_KEY_LEN + 1];
    memcpy(key, p, len);
    key[len] = '\0';
    const ink_caller *who = NULL;
    ink_err err = {0};
    int rc = ink_tools_verify_key(t, key, &who, &err);
    explicit_bzero(key, sizeof key);
    if (rc < 0)
        LOG_ERROR("mcp: cannot verify an API key", "error", err.msg);
    return rc == 1 ? (void *)who : NULL;
}

ink_mcp_http *ink_tools_http_start(ink_tools *t, ink_err *err)
{
    const ink_coordinator_config *cfg = t->ctx.cfg;
    if (!cfg->mcp_listen || !*cfg->mcp_listen) {
        ink_err_set(err, 0, "mcp_listen is empty");
        return NULL;
    }
    /* "a, b,c" -> {"a", "b", "c"}; empty items are skipped. */
    cleanup_free char *list = ink_xstrdup(cfg->mcp_allowed_origins ? cfg->mcp_allowed_origins : "");
    size_t n = 0;
    for (const char *c = list; *c; c++)
        n += *c == ',';
    const char **origins = ink_xcalloc(n + 1, sizeof *origins);
    n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t len = strlen(tok);
        while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
            tok[--len] = '\0';
        if (len)
            origins[n++] = tok;
    }
    ink_mcp_http_opts o = {
        .listen = cfg->mcp_listen,
        .allowed_origins = origins,
        .nallowed_origins = n,
        .max_body = (size_t)cfg->mcp_max_body,
        .authenticate = ink_tools_authenticate,
        .auth_arg = t,
    };
    ink_mcp_http *h = ink_mcp_http_start(t->srv, &o, err);
    free(origins);
    return h;
}
