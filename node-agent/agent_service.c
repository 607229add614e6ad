/* AgentService: what the coordinator calls on this node. Only the
 * coordinator's certificate may call it; another node's certificate is
 * refused, so one compromised node cannot read or exec into another's
 * workloads. */
#include <string.h>

#include "agent.h"
#include "ink_version.h"
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

/* Workload-scoped calls need the workload to exist on this node and be
 * running; with no runtime yet, a known workload is never running. */
static bool workload_running(ink_agent *a, ink_rpc_call *call, const char *workload_id)
{
    pthread_mutex_lock(&a->mu);
    bool known = ink_desired_find(&a->desired, workload_id) != NULL;
    pthread_mutex_unlock(&a->mu);
    if (!known)
        ink_rpc_finish(call, GRPC_STATUS_NOT_FOUND, "no workload '%s' on node '%s'", workload_id,
                       a->node_id);
    else
        ink_rpc_finish(call, GRPC_STATUS_FAILED_PRECONDITION,
                       "workload '%s' on node '%s' is not running (pending)", workload_id,
                       a->node_id);
    return false;
}

static void handle_get_metrics(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    ink_agent *a = ctx;
    const Ink__V1__GetMetricsRequest *req = (const Ink__V1__GetMetricsRequest *)msg;
    if (!caller_is_coordinator(call))
        return;
    if (*req->workload_id && !workload_running(a, call, req->workload_id))
        return;
    Ink__V1__NodeUsage usage;
    ink_node_usage_collect(&usage, a->cfg->state_dir);
    pthread_mutex_lock(&a->mu);
    usage.workloads = (uint32_t)a->desired.n;
    pthread_mutex_unlock(&a->mu);
    Ink__V1__GetMetricsResponse resp = INK__V1__GET_METRICS_RESPONSE__INIT;
    resp.unix_ms = ink_now_ms();
    resp.node = &usage;
    ink_rpc_reply(call, &resp.base);
}

static void handle_get_logs(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    const Ink__V1__GetLogsRequest *req = (const Ink__V1__GetLogsRequest *)msg;
    if (caller_is_coordinator(call))
        workload_running(ctx, call, req->workload_id);
}

static void handle_exec(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    const Ink__V1__ExecRequest *req = (const Ink__V1__ExecRequest *)msg;
    if (!caller_is_coordinator(call))
        return;
    if (req->n_command == 0) {
        ink_rpc_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "command is empty");
        return;
    }
    workload_running(ctx, call, req->workload_id);
}

const ink_rpc_method ink_agent_service_methods[] = {
    {"/ink.v1.AgentService/Ping", &ink__v1__ping_request__descriptor, false, handle_ping},
    {"/ink.v1.AgentService/GetLogs", &ink__v1__get_logs_request__descriptor, true, handle_get_logs},
    {"/ink.v1.AgentService/Exec", &ink__v1__exec_request__descriptor, false, handle_exec},
    {"/ink.v1.AgentService/GetMetrics", &ink__v1__get_metrics_request__descriptor, false,
     handle_get_metrics},
};
const size_t ink_agent_service_nmethods = INK_ARRAY_LEN(ink_agent_service_methods);
