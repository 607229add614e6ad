/* AgentService: what the coordinator calls on this node. Only the
 * coordinator's certificate may call it; another node's certificate is
 * refused, so one compromised node cannot read or exec into another's
 * workloads. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "ink_version.h"
#include "logs.h"
#include "pki.h"
#include "util.h"

static bool caller_is_coordinator(ink_rpc_call *call)
{
    if (!ink_rpc_call_authenticated(call))
        return true; /* plaintext: --insecure-dev */
    if (strcmp(ink_rpc_call_peer_role(call), INK_ROLE_COORDINATOR) == 0 &&
        strcmp(ink_rpc_call_peer_name(call), INK_COORDINATOR_NAME) == 0)
        return true;
    ink_rpc_finish(call, GRPC_STATUS_PERMISSION_DENIED,
                   "only the coordinator may call AgentService (caller: '%s', role '%s')",
                   ink_rpc_call_peer_name(call), ink_rpc_call_peer_role(call));
    return false;
}

static void handle_ping(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    ink_agent *a = ctx;
    const Ink__V1__PingRequest *req = (const Ink__V1__PingRequest *)msg;
    if (!caller_is_coordinator(call))
        return;
    Ink__V1__PingResponse resp = INK__V1__PING_RESPONSE__INIT;
    resp.payload = req->payload;
    resp.node_id = a->node_id;
    resp.agent_version = INK_VERSION;
    resp.unix_ms = ink_now_ms();
    pthread_mutex_lock(&a->mu);
    resp.applied_revision = a->desired.revision;
    pthread_mutex_unlock(&a->mu);
    ink_rpc_reply(call, &resp.base);
}

#define LOG_TAIL_DEFAULT 100
#define LOG_TAIL_MAX 10000
#define EXEC_TIMEOUT_DEFAULT_S 30
#define EXEC_TIMEOUT_MAX_S 600
#define EXEC_OUTPUT_MAX (1 << 20)
#define EXEC_MAX_RUNNING 16

/* The workload's log directory when it exists on this node; otherwise the
 * call is answered NOT_FOUND (or FAILED_PRECONDITION when it must run). */
static char *workload_or_fail(ink_agent *a, ink_rpc_call *call, const char *id, bool need_running)
{
    char *dir = NULL;
    bool running = false;
    if (ink_supervisor_lookup(a->sup, id, &dir, &running) < 0) {
        ink_rpc_finish(call, GRPC_STATUS_NOT_FOUND, "no workload '%s' on node '%s'", id,
                       a->node_id);
        return NULL;
    }
    /* One that scaled to zero is woken by the exec (exec_thread). */
    if (need_running && !running && !ink_supervisor_asleep(a->sup, id)) {
        free(dir);
        ink_rpc_finish(call, GRPC_STATUS_FAILED_PRECONDITION,
                       "workload '%s' on node '%s' is not running", id, a->node_id);
        return NULL;
    }
    return dir;
}

static void handle_get_metrics(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    ink_agent *a = ctx;
    const Ink__V1__GetMetricsRequest *req = (const Ink__V1__GetMetricsRequest *)msg;
    if (!caller_is_coordinator(call))
        return;
    Ink__V1__WorkloadMetrics **wm = NULL;
    size_t n = 0;
    if (ink_supervisor_metrics(a->sup, *req->workload_id ? req->workload_id : NULL, &wm, &n) < 0) {
        ink_rpc_finish(call, GRPC_STATUS_NOT_FOUND, "no workload '%s' on node '%s'",
                       req->workload_id, a->node_id);
        return;
    }
    if (req->history)
        ink_agent_metrics_attach_history(a, wm, n);
    Ink__V1__NodeUsage usage;
    ink_node_usage_collect(&usage, a->cfg->state_dir);
    usage.workloads = (uint32_t)n;
    Ink__V1__GetMetricsResponse resp = INK__V1__GET_METRICS_RESPONSE__INIT;
    resp.unix_ms = ink_now_ms();
    resp.node = &usage;
    resp.workloads = wm;
    resp.n_workloads = n;
    ink_rpc_reply(call, &resp.base);
    if (req->history)
        ink_agent_metrics_detach_history(wm, n);
    for (size_t i = 0; i < n; i++)
        free(wm[i]);
    free(wm);
}

static void send_line(const ink_log_line *line, void *arg)
{
    Ink__V1__LogEntry e = INK__V1__LOG_ENTRY__INIT;
    e.unix_ms = line->unix_ms;
    e.stream = line->stream == 'o'   ? INK__V1__LOG_ENTRY__STREAM__STDOUT
               : line->stream == 'e' ? INK__V1__LOG_ENTRY__STREAM__STDERR
                                     : INK__V1__LOG_ENTRY__STREAM__SYSTEM;
    e.line = (ProtobufCBinaryData){line->len, (uint8_t *)line->text};
    ink_rpc_send(arg, &e.base);
}

typedef struct {
    const char *dir;
    const Ink__V1__GetLogsRequest *req;
    ink_rpc_call *call;
    ink_err err;
    int rc;
} history;

static void send_history(void *arg)
{
    history *h = arg;
    size_t tail = h->req->tail ? h->req->tail : LOG_TAIL_DEFAULT;
    if (tail > LOG_TAIL_MAX)
        tail = LOG_TAIL_MAX;
    h->rc = ink_log_read(h->dir, tail, h->req->since_unix_ms, send_line, h->call, &h->err);
}

static void handle_get_logs(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    ink_agent *a = ctx;
    const Ink__V1__GetLogsRequest *req = (const Ink__V1__GetLogsRequest *)msg;
    if (!caller_is_coordinator(call))
        return;
    cleanup_free char *dir = workload_or_fail(a, call, req->workload_id, false);
    if (!dir)
        return;
    history h = {.dir = dir, .req = req, .call = call};
    if (req->follow) {
        /* The history is sent while new lines wait, so they follow it in
         * order. */
        ink_supervisor_follow(a->sup, req->workload_id, call, send_history, &h);
    } else {
        send_history(&h);
    }
    if (h.rc < 0)
        ink_rpc_finish(call, GRPC_STATUS_INTERNAL, "reading logs: %s", h.err.msg);
    else if (!req->follow)
        ink_rpc_finish(call, GRPC_STATUS_OK, "%s", "");
}

typedef struct exec_job {
    ink_agent *a;
    ink_rpc_call *call;
    char *id;
    char **argv;
    uint8_t *input;
    size_t input_len;
    int64_t timeout_ms;
} exec_job;

static pthread_mutex_t exec_mu = PTHREAD_MUTEX_INITIALIZER;
static int exec_running;

/* runsc exec blocks for as long as the command runs: it gets a thread of
 * its own, never an RPC poller. */
static void *exec_thread(void *arg)
{
    exec_job *j = arg;
    ink_exec_result res;
    ink_err err = {0};
    if (!ink_supervisor_wake(j->a->sup, j->id)) {
        ink_rpc_finish(j->call, GRPC_STATUS_FAILED_PRECONDITION,
                       "workload '%s' was asleep and did not wake up", j->id);
    } else if (ink_runsc_exec_input(ink_supervisor_runsc(j->a->sup), j->id, j->argv, j->input,
                                    j->input_len, j->timeout_ms, EXEC_OUTPUT_MAX, &res, &err) < 0) {
        ink_rpc_finish(
            j->call, err.errnum == ENOENT ? GRPC_STATUS_FAILED_PRECONDITION : GRPC_STATUS_INTERNAL,
            "exec in '%s': %s", j->id, err.msg);
    } else {
        Ink__V1__ExecResponse resp = INK__V1__EXEC_RESPONSE__INIT;
        resp.stdout = (ProtobufCBinaryData){res.out_len, (uint8_t *)res.out};
        resp.stderr = (ProtobufCBinaryData){res.err_len, (uint8_t *)res.errout};
        resp.exit_code = res.exit_code;
        resp.timed_out = res.timed_out;
        resp.truncated = res.truncated;
        ink_rpc_reply(j->call, &resp.base);
        ink_exec_result_free(&res);
    }
    ink_rpc_call_unref(j->call);
    for (char **p = j->argv; *p; p++)
        free(*p);
    free(j->argv);
    free(j->input);
    free(j->id);
    free(j);
    pthread_mutex_lock(&exec_mu);
    exec_running--;
    pthread_mutex_unlock(&exec_mu);
    return NULL;
}

static void handle_exec(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    ink_agent *a = ctx;
    const Ink__V1__ExecRequest *req = (const Ink__V1__ExecRequest *)msg;
    if (!caller_is_coordinator(call))
        return;
    if (req->n_command == 0) {
        ink_rpc_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "command is empty");
        return;
    }
    if (req->timeout_s > EXEC_TIMEOUT_MAX_S) {
        ink_rpc_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "timeout_s is at most %d",
                       EXEC_TIMEOUT_MAX_S);
        return;
    }
    cleanup_free char *dir = workload_or_fail(a, call, req->workload_id, true);
    if (!dir)
        return;
    pthread_mutex_lock(&exec_mu);
    bool full = exec_running >= EXEC_MAX_RUNNING;
    if (!full)
        exec_running++;
    pthread_mutex_unlock(&exec_mu);
    if (full) {
        ink_rpc_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "%d commands already running on this node: try again", EXEC_MAX_RUNNING);
        return;
    }
    exec_job *j = ink_xcalloc(1, sizeof *j);
    j->a = a;
    j->call = call;
    j->id = ink_xstrdup(req->workload_id);
    j->argv = ink_xcalloc(req->n_command + 1, sizeof *j->argv);
    for (size_t i = 0; i < req->n_command; i++)
        j->argv[i] = ink_xstrdup(req->command[i]);
    if (req->stdin.len) {
        j->input = ink_xmalloc(req->stdin.len);
        memcpy(j->input, req->stdin.data, req->stdin.len);
        j->input_len = req->stdin.len;
    }
    j->timeout_ms = (int64_t)(req->timeout_s ? req->timeout_s : EXEC_TIMEOUT_DEFAULT_S) * 1000;
    ink_rpc_call_ref(call);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_create(&t, &attr, exec_thread, j);
    pthread_attr_destroy(&attr);
}

const ink_rpc_method ink_agent_service_methods[] = {
    {"/ink.v1.AgentService/Ping", &ink__v1__ping_request__descriptor, false, handle_ping},
    {"/ink.v1.AgentService/GetLogs", &ink__v1__get_logs_request__descriptor, true, handle_get_logs},
    {"/ink.v1.AgentService/Exec", &ink__v1__exec_request__descriptor, false, handle_exec},
    {"/ink.v1.AgentService/GetMetrics", &ink__v1__get_metrics_request__descriptor, false,
     handle_get_metrics},
};
const size_t ink_agent_service_nmethods = INK_ARRAY_LEN(ink_agent_service_methods);
