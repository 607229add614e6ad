/* NodeService: what agents call. Every call is bound to the caller's
 * certificate: a node may only register, watch and report as itself. */
#include <stdio.h>
#include <string.h>

#include "apps.h"
#include "coordinator.h"
#include "log.h"
#include "pki.h"
#include "util.h"

/* A node may act only for the node id in its certificate. Without TLS
 * (--insecure-dev) there is no identity to check. */
static bool check_identity(ink_rpc_call *call, const char *node_id)
{
    if (!ink_valid_name(node_id) || strcmp(node_id, INK_COORDINATOR_NAME) == 0) {
        ink_rpc_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "node_id '%s' is not a valid name ([a-z0-9-], at most 63 characters)",
                       node_id);
        return false;
    }
    if (!ink_rpc_call_authenticated(call))
        return true;
    if (strcmp(ink_rpc_call_peer_role(call), INK_ROLE_NODE) != 0 ||
        strcmp(ink_rpc_call_peer_name(call), node_id) != 0) {
        LOG_WARN("node call refused: identity mismatch", "node", node_id, "cert_name",
                 ink_rpc_call_peer_name(call), "cert_role", ink_rpc_call_peer_role(call), "peer",
                 ink_rpc_call_peer_address(call));
        ink_rpc_finish(call, GRPC_STATUS_PERMISSION_DENIED,
                       "certificate is for '%s' (role '%s'), not for node '%s'",
                       ink_rpc_call_peer_name(call), ink_rpc_call_peer_role(call), node_id);
        return false;
    }
    return true;
}

static void handle_register(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    ink_coordinator *c = ctx;
    const Ink__V1__RegisterRequest *req = (const Ink__V1__RegisterRequest *)msg;
    if (!check_identity(call, req->node_id))
        return;
    char host[256];
    int port;
    ink_err err = {0};
    if (ink_split_hostport(req->agent_endpoint, host, sizeof host, &port, &err) < 0 || port == 0) {
        ink_rpc_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "agent_endpoint: %s",
                       err.msg[0] ? err.msg : "port 0 is not reachable");
        return;
    }
    if (!req->capacity || req->capacity->cpus == 0 || req->capacity->memory_bytes == 0) {
        ink_rpc_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
                       "capacity must report at least one CPU and some memory");
        return;
    }
    if (!*req->instance_id) {
        ink_rpc_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "instance_id is required");
        return;
    }
    if (ink_store_register_node(c->store, req, ink_now_ms(), &err) < 0) {
        LOG_ERROR("register failed", "node", req->node_id, "error", err.msg);
        ink_rpc_finish(call, GRPC_STATUS_INTERNAL, "cannot record registration: %s", err.msg);
        return;
    }
    LOG_INFO("node registered", "node", req->node_id, "hostname", req->hostname, "endpoint",
             req->agent_endpoint, "cpus", LOG_INT(req->capacity->cpus), "memory_bytes",
             LOG_U64(req->capacity->memory_bytes), "runsc", req->runsc_version, "instance",
             req->instance_id, "agent_version", req->agent_version);
    ink_coordinator_kick(c);

    Ink__V1__RegisterResponse resp = INK__V1__REGISTER_RESPONSE__INIT;
    resp.coordinator_id = (char *)ink_store_coordinator_id(c->store);
    resp.heartbeat_interval_ms = (uint32_t)c->cfg->heartbeat_interval_ms;
    resp.node_timeout_ms = (uint32_t)c->cfg->node_timeout_ms;
    resp.revision = ink_store_revision(c->store);
    ink_rpc_reply(call, &resp.base);
}

static void handle_report_status(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    ink_coordinator *c = ctx;
    const Ink__V1__ReportStatusRequest *req = (const Ink__V1__ReportStatusRequest *)msg;
    if (!check_identity(call, req->node_id))
        return;
    ink_err err = {0};
    int rc = ink_store_report_status(c->store, req, ink_now_ms(), &err);
    if (rc < 0) {
        LOG_ERROR("status report failed", "node", req->node_id, "error", err.msg);
        ink_rpc_finish(call, GRPC_STATUS_INTERNAL, "cannot record status: %s", err.msg);
        return;
    }
    if (rc == 1) {
        ink_rpc_finish(call, GRPC_STATUS_NOT_FOUND,
                       "node '%s' instance '%s' is not registered: register again", req->node_id,
                       req->instance_id);
        return;
    }
    /* The status is recorded either way: counters that could not be
     * written are not lost, as the next report carries them again. */
    if (ink_apps_note_egress(c->store, req, ink_now_ms(), &err) < 0)
        LOG_ERROR("recording egress counters failed", "node", req->node_id, "error", err.msg);
    Ink__V1__ReportStatusResponse resp = INK__V1__REPORT_STATUS_RESPONSE__INIT;
    resp.heartbeat_interval_ms = (uint32_t)c->cfg->heartbeat_interval_ms;
    ink_rpc_reply(call, &resp.base);
    /* A replica that changed state may end an operation a client waits on. */
    ink_coordinator_kick(c);
}

/* ------------------------------------------------------------ watch streams
 *
 * A watcher is one open WatchAssignments stream. The background loop
 * (ink_watchers_pump) sends each watcher what changed after the revision it
 * has seen, a bounded number of events at a time so a slow agent only slows
 * itself, and a PROGRESS event when the stream has been quiet. */

#define WATCH_BATCH 256
#define WATCH_MAX_PENDING 4

struct ink_watcher {
    ink_rpc_call *call;
    char node_id[64];
    uint64_t since; /* newest revision this stream has covered */
    bool started;   /* first events sent */
    int64_t last_send_ms;
    int64_t expires_ms; /* end the stream then; the agent reopens it */
    ink_watcher *next;
};

static void handle_watch(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    ink_coordinator *c = ctx;
    const Ink__V1__WatchAssignmentsRequest *req = (const Ink__V1__WatchAssignmentsRequest *)msg;
    if (!check_identity(call, req->node_id))
        return;
    ink_node_row row;
    ink_err err = {0};
    int rc = ink_store_get_node(c->store, req->node_id, &row, &err);
    if (rc != 0) {
        ink_rpc_finish(call, rc < 0 ? GRPC_STATUS_INTERNAL : GRPC_STATUS_FAILED_PRECONDITION,
                       "node '%s' is not registered: call Register first", req->node_id);
        return;
    }
    ink_watcher *w = ink_xcalloc(1, sizeof *w);
    ink_rpc_call_ref(call);
    w->call = call;
    snprintf(w->node_id, sizeof w->node_id, "%s", req->node_id);
    w->since = req->since_revision;
    w->expires_ms = ink_mono_ms() + c->cfg->watch_stream_timeout_ms;
    pthread_mutex_lock(&c->mu);
    w->next = c->watchers;
    c->watchers = w;
    c->kicked = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mu);
    LOG_INFO("watch opened", "node", req->node_id, "since", LOG_U64(req->since_revision));
}

/* Feeds one watcher; returns true when it has more to send right away. */
static bool pump_one(ink_coordinator *c, ink_watcher *w, int64_t now)
{
    if (ink_rpc_pending(w->call) >= WATCH_MAX_PENDING)
        return false;
    if (now >= w->expires_ms) {
        /* Long-lived streams end cleanly now and then; the agent resumes from
         * its revision, which bounds how stale a half-dead connection gets. */
        ink_rpc_finish(w->call, GRPC_STATUS_OK, "stream period over: resume");
        return false;
    }
    ink_watch_batch b;
    ink_err err = {0};
    /* An agent that has nothing starts from a snapshot; one that has a
     * revision resumes from it (the store falls back to a snapshot when the
     * log no longer reaches back that far). */
    bool snapshot = !w->started && w->since == 0;
    if (ink_store_watch_events(c->store, w->node_id, w->since, snapshot, WATCH_BATCH, &b, &err) <
        0) {
        LOG_ERROR("watch: reading changes failed", "node", w->node_id, "error", err.msg);
        ink_rpc_finish(w->call, GRPC_STATUS_INTERNAL, "reading assignments: %s", err.msg);
        return false;
    }
    for (size_t i = 0; i < b.n; i++)
        ink_rpc_send(w->call, &b.events[i]->base);
    bool quiet = b.n == 0 && (!w->started || now - w->last_send_ms >= c->cfg->watch_progress_ms);
    if (quiet) {
        Ink__V1__WatchEvent ev = INK__V1__WATCH_EVENT__INIT;
        ev.kind = INK__V1__WATCH_EVENT__KIND__PROGRESS;
        ev.revision = b.head;
        ink_rpc_send(w->call, &ev.base);
    }
    if (b.n > 0 || quiet)
        w->last_send_ms = now;
    bool more = b.n >= WATCH_BATCH;
    if (b.head > w->since)
        w->since = b.head;
    w->started = true;
    ink_store_free_events(&b);
    return more;
}

void ink_watchers_pump(ink_coordinator *c)
{
    int64_t now = ink_mono_ms();
    bool more = false;
    pthread_mutex_lock(&c->mu);
    for (ink_watcher **pw = &c->watchers; *pw;) {
        ink_watcher *w = *pw;
        /* The watcher's reference keeps the call readable after it ended. */
        if (ink_rpc_call_is_over(w->call)) {
            *pw = w->next;
            LOG_INFO("watch closed", "node", w->node_id, "revision", LOG_U64(w->since));
            ink_rpc_call_unref(w->call);
            free(w);
            continue;
        }
        more |= pump_one(c, w, now);
        pw = &w->next;
    }
    if (more)
        c->kicked = true;
    pthread_mutex_unlock(&c->mu);
}

void ink_watchers_release_all(ink_coordinator *c)
{
    pthread_mutex_lock(&c->mu);
    while (c->watchers) {
        ink_watcher *w = c->watchers;
        c->watchers = w->next;
        ink_rpc_finish(w->call, GRPC_STATUS_UNAVAILABLE, "coordinator shutting down");
        ink_rpc_call_unref(w->call);
        free(w);
    }
    pthread_mutex_unlock(&c->mu);
}

const ink_rpc_method ink_node_service_methods[] = {
    {"/ink.v1.NodeService/Register", &ink__v1__register_request__descriptor, false,
     handle_register},
    {"/ink.v1.NodeService/WatchAssignments", &ink__v1__watch_assignments_request__descriptor, true,
     handle_watch},
    {"/ink.v1.NodeService/ReportStatus", &ink__v1__report_status_request__descriptor, false,
     handle_report_status},
};
const size_t ink_node_service_nmethods = INK_ARRAY_LEN(ink_node_service_methods);
