/* The agent's link to the coordinator, in two threads.
 *
 * The session thread registers, then holds a WatchAssignments stream open
 * and applies what arrives to the desired state on disk. When the stream
 * breaks (coordinator restart, network), it registers again after an
 * exponential backoff with jitter and resumes the watch from the revision it
 * has, so nothing is lost or applied twice.
 *
 * The heartbeat thread reports status every interval the coordinator asks
 * for, and soon after any workload changes state. Neither thread touches running workloads: a
 * coordinator outage changes nothing on the node. */
#include <string.h>
#include <time.h>

#include "agent.h"
#include "backoff.h"
#include "ink_version.h"
#include "log.h"
#include "util.h"

#define REGISTER_PATH "/ink.v1.NodeService/Register"
#define WATCH_PATH "/ink.v1.NodeService/WatchAssignments"
#define REPORT_PATH "/ink.v1.NodeService/ReportStatus"
#define REPORT_GATHER_MS 20

/* Sleeps up to ms unless the agent is stopping or woken; returns false when
 * stopping. Called with a->mu held. */
static bool wait_locked(ink_agent *a, int64_t ms)
{
    if (a->stopping)
        return false;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&a->cond, &a->mu, &ts);
    return !a->stopping;
}

static bool sleep_unless_stopping(ink_agent *a, int64_t ms)
{
    pthread_mutex_lock(&a->mu);
    bool go_on = wait_locked(a, ms);
    pthread_mutex_unlock(&a->mu);
    return go_on;
}

static void note_coordinator(ink_agent *a, bool up, const ink_rpc_status *st)
{
    pthread_mutex_lock(&a->mu);
    bool was = a->coordinator_up;
    a->coordinator_up = up;
    pthread_mutex_unlock(&a->mu);
    if (was && !up)
        LOG_WARN("coordinator unreachable; workloads keep running", "coordinator",
                 a->cfg->coordinator, "code", ink_rpc_code_name(st->code), "error", st->message);
    else if (!was && up)
        LOG_INFO("coordinator reachable", "coordinator", a->cfg->coordinator);
}

/* Where clients reach this node's published ports: publish_address, or
 * when that is the wildcard the node's first IPv4 address (published ports
 * listen on IPv4 only); "" when there is none. */
static const char *public_address(const ink_agent *a, const ink_node_info *info)
{
    const char *pa = a->cfg->publish_address;
    if (pa && *pa && strcmp(pa, "0.0.0.0") != 0)
        return pa;
    for (size_t i = 0; i < info->naddresses; i++)
        if (!strchr(info->addresses[i], ':'))
            return info->addresses[i];
    return "";
}

static int do_register(ink_agent *a, ink_rpc_status *st)
{
    ink_node_info info;
    ink_node_info_collect(&info, a->cfg->state_dir, NULL);
    Ink__V1__Capacity cap = INK__V1__CAPACITY__INIT;
    cap.cpus = info.cpus;
    cap.memory_bytes = info.memory_bytes;
    cap.disk_bytes = info.disk_bytes;
    Ink__V1__KernelFeatures feat = INK__V1__KERNEL_FEATURES__INIT;
    feat.kernel_release = info.kernel_release;
    feat.cgroup_v2 = info.cgroup_v2;
    feat.btf = info.btf;
    feat.nftables = info.nftables;
    feat.netns = info.netns;
    feat.seccomp = info.seccomp;
    Ink__V1__RegisterRequest req = INK__V1__REGISTER_REQUEST__INIT;
    req.node_id = a->node_id;
    req.hostname = info.hostname;
    req.addresses = info.addresses;
    req.n_addresses = info.naddresses;
    req.agent_endpoint = a->advertise;
    req.capacity = &cap;
    req.runsc_version = a->runsc_version;
    req.features = &feat;
    req.agent_version = INK_VERSION;
    req.instance_id = a->instance_id;
    req.public_address = (char *)public_address(a, &info);

    ProtobufCMessage *resp = NULL;
    int rc =
        ink_rpc_unary(a->coordinator, REGISTER_PATH, &req.base,
                      &ink__v1__register_response__descriptor, &resp, a->cfg->rpc_timeout_ms, st);
    ink_node_info_free(&info);
    if (rc < 0)
        return -1;
    Ink__V1__RegisterResponse *r = (Ink__V1__RegisterResponse *)resp;
    pthread_mutex_lock(&a->mu);
    a->heartbeat_ms = r->heartbeat_interval_ms ? r->heartbeat_interval_ms : 5000;
    a->need_register = false;
    a->registrations++;
    bool new_coordinator =
        a->desired.coordinator_id[0] && strcmp(a->desired.coordinator_id, r->coordinator_id) != 0;
    snprintf(a->desired.coordinator_id, sizeof a->desired.coordinator_id, "%s", r->coordinator_id);
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->mu);
    if (new_coordinator)
        LOG_WARN("coordinator identity changed (new or restored database): taking its snapshot",
                 "coordinator_id", r->coordinator_id);
    LOG_INFO("registered", "node", a->node_id, "coordinator", a->cfg->coordinator, "coordinator_id",
             r->coordinator_id, "heartbeat_ms", LOG_INT(r->heartbeat_interval_ms), "revision",
             LOG_U64(r->revision));
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

static void log_event(const Ink__V1__WatchEvent *ev)
{
    switch (ev->kind) {
    case INK__V1__WATCH_EVENT__KIND__SNAPSHOT:
        LOG_INFO("desired state snapshot", "revision", LOG_U64(ev->revision), "workloads",
                 LOG_INT(ev->n_assignments));
        break;
    case INK__V1__WATCH_EVENT__KIND__UPSERT:
        LOG_INFO("workload wanted", "revision", LOG_U64(ev->revision), "workload",
                 ev->assignments[0]->workload_id, "image", ev->assignments[0]->image, "generation",
                 LOG_U64(ev->assignments[0]->generation));
        break;
    case INK__V1__WATCH_EVENT__KIND__DELETE:
        LOG_INFO("workload no longer wanted", "revision", LOG_U64(ev->revision), "workload",
                 ev->workload_id);
        break;
    default:
        break;
    }
}

/* Reads the watch stream until it ends. Returns the final status code. */
static grpc_status_code run_watch(ink_agent *a)
{
    pthread_mutex_lock(&a->mu);
    Ink__V1__WatchAssignmentsRequest req = INK__V1__WATCH_ASSIGNMENTS_REQUEST__INIT;
    req.node_id = a->node_id;
    req.since_revision = a->desired.revision;
    pthread_mutex_unlock(&a->mu);

    ink_rpc_status st = {0};
    ink_rpc_stream *s =
        ink_rpc_stream_open(a->coordinator, WATCH_PATH, &req.base,
                            &ink__v1__watch_event__descriptor, a->cfg->watch_timeout_ms, &st);
    if (!s)
        return st.code;
    pthread_mutex_lock(&a->mu);
    a->watch = s;
    bool stopping = a->stopping;
    pthread_mutex_unlock(&a->mu);
    if (stopping)
        ink_rpc_stream_cancel(s);

    int rc;
    ProtobufCMessage *m;
    while ((rc = ink_rpc_stream_next(s, &m, &st)) == 1) {
        note_coordinator(a, true, &st);
        Ink__V1__WatchEvent *ev = (Ink__V1__WatchEvent *)m;
        ink_err err = {0};
        pthread_mutex_lock(&a->mu);
        int changed = ink_desired_apply(&a->desired, ev, &err);
        if (changed > 0 && ink_desired_save(&a->desired, a->cfg->state_dir, &err) < 0)
            changed = -1;
        if (changed > 0)
            ink_supervisor_update(a->sup, a->desired.items, a->desired.n);
        pthread_mutex_unlock(&a->mu);
        if (changed < 0)
            LOG_ERROR("applying desired state failed", "revision", LOG_U64(ev->revision), "error",
                      err.msg);
        else if (changed > 0)
            log_event(ev);
        protobuf_c_message_free_unpacked(m, NULL);
        if (changed < 0) {
            /* Start over from a snapshot rather than run on a state we
             * could not record. */
            pthread_mutex_lock(&a->mu);
            a->desired.revision = 0;
            pthread_mutex_unlock(&a->mu);
            ink_rpc_stream_cancel(s);
        }
    }
    pthread_mutex_lock(&a->mu);
    a->watch = NULL;
    pthread_mutex_unlock(&a->mu);
    ink_rpc_stream_free(s);
    if (rc < 0 && st.code != GRPC_STATUS_CANCELLED)
        LOG_DEBUG("watch ended", "code", ink_rpc_code_name(st.code), "error", st.message);
    pthread_mutex_lock(&a->mu);
    stopping = a->stopping;
    pthread_mutex_unlock(&a->mu);
    if (rc < 0 && !stopping)
        note_coordinator(a, false, &st);
    return rc == 0 ? GRPC_STATUS_OK : st.code;
}

void *ink_session_thread(void *arg)
{
    ink_agent *a = arg;
    ink_backoff bo;
    ink_backoff_init(&bo, a->cfg->reconnect_initial_ms, a->cfg->reconnect_max_ms, 2.0, 0.2);
    for (;;) {
        pthread_mutex_lock(&a->mu);
        bool stopping = a->stopping, need_register = a->need_register;
        pthread_mutex_unlock(&a->mu);
        if (stopping)
            break;
        if (need_register) {
            ink_rpc_status st = {0};
            if (do_register(a, &st) < 0) {
                note_coordinator(a, false, &st);
                int64_t delay = ink_backoff_next(&bo);
                LOG_DEBUG("register failed", "code", ink_rpc_code_name(st.code), "error",
                          st.message, "retry_ms", LOG_INT(delay));
                if (st.code == GRPC_STATUS_PERMISSION_DENIED ||
                    st.code == GRPC_STATUS_INVALID_ARGUMENT)
                    LOG_ERROR("coordinator refused registration", "code",
                              ink_rpc_code_name(st.code), "error", st.message);
                if (!sleep_unless_stopping(a, delay))
                    break;
                continue;
            }
            note_coordinator(a, true, &(ink_rpc_status){0});
            ink_backoff_reset(&bo);
        }
        grpc_status_code code = run_watch(a);
        if (code == GRPC_STATUS_OK)
            continue; /* stream period over: resume without registering */
        pthread_mutex_lock(&a->mu);
        /* Whatever broke the stream, register again before the next watch:
         * it is idempotent, and it is how a restarted coordinator learns
         * about this node. */
        a->need_register = true;
        pthread_mutex_unlock(&a->mu);
        if (!sleep_unless_stopping(a, ink_backoff_next(&bo)))
            break;
    }
    return NULL;
}

static void report_status(ink_agent *a)
{
    Ink__V1__NodeUsage usage;
    ink_node_usage_collect(&usage, a->cfg->state_dir);
    Ink__V1__ReportStatusRequest req = INK__V1__REPORT_STATUS_REQUEST__INIT;
    req.node_id = a->node_id;
    req.instance_id = a->instance_id;
    req.usage = &usage;

    pthread_mutex_lock(&a->mu);
    req.applied_revision = a->desired.revision;
    a->report_now = false;
    pthread_mutex_unlock(&a->mu);
    Ink__V1__WorkloadStatus **ws = NULL;
    size_t n = ink_supervisor_status(a->sup, &ws);
    usage.workloads = (uint32_t)n;
    req.workloads = ws;
    req.n_workloads = n;

    ProtobufCMessage *resp = NULL;
    ink_rpc_status st = {0};
    int rc = ink_rpc_unary(a->coordinator, REPORT_PATH, &req.base,
                           &ink__v1__report_status_response__descriptor, &resp,
                           a->cfg->rpc_timeout_ms, &st);
    ink_supervisor_status_free(ws, n);
    if (rc == 0) {
        Ink__V1__ReportStatusResponse *r = (Ink__V1__ReportStatusResponse *)resp;
        pthread_mutex_lock(&a->mu);
        if (r->heartbeat_interval_ms)
            a->heartbeat_ms = r->heartbeat_interval_ms;
        pthread_mutex_unlock(&a->mu);
        protobuf_c_message_free_unpacked(resp, NULL);
        note_coordinator(a, true, &st);
        return;
    }
    if (st.code == GRPC_STATUS_NOT_FOUND) {
        /* The coordinator does not know this instance (database restored,
         * or it saw a newer registration): register again. */
        LOG_WARN("coordinator does not know this node: registering again", "error", st.message);
        pthread_mutex_lock(&a->mu);
        a->need_register = true;
        if (a->watch)
            ink_rpc_stream_cancel(a->watch);
        pthread_mutex_unlock(&a->mu);
        return;
    }
    note_coordinator(a, false, &st);
}

void *ink_heartbeat_thread(void *arg)
{
    ink_agent *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        /* Heartbeats start once registered. */
        while (!a->stopping && a->registrations == 0)
            wait_locked(a, 1000);
        if (a->stopping)
            break;
        bool registered = !a->need_register;
        int64_t interval = a->heartbeat_ms;
        pthread_mutex_unlock(&a->mu);
        if (registered)
            report_status(a);
        pthread_mutex_lock(&a->mu);
        /* Until the interval is over, or a workload changed state (then a
         * short pause gathers changes made together, such as many
         * workloads starting at once; short, because a deploy waits for
         * the report that says its replica runs). */
        int64_t end = ink_mono_ms() + interval;
        while (!a->stopping && !a->report_now && ink_mono_ms() < end)
            wait_locked(a, end - ink_mono_ms());
        if (a->report_now && !a->stopping)
            wait_locked(a, REPORT_GATHER_MS);
        if (a->stopping)
            break;
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}
