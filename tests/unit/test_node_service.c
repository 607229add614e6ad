/* NodeService end to end in one process: a real coordinator (store, gRPC
 * server with mutual TLS, background loop) called by raw clients holding
 * node certificates, and by a real ink-agent core (register, watch,
 * heartbeat, persisted desired state, re-registration after a coordinator
 * restart). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.h"
#include "apps.h"
#include "coordinator.h"
#include "testlib.h"
#include "util.h"

typedef struct fixture {
    test_pki pki;
    char db[192];
    char listen[64];
    ink_coordinator_config cfg;
    ink_coordinator coord;
    bool running;
} fixture;

static void start_coordinator(fixture *f)
{
    ink_err err = {0};
    f->cfg.listen = ink_xstrdup(f->listen);
    if (ink_coordinator_start(&f->coord, &f->cfg, &err) < 0)
        fail_msg("coordinator: %s", err.msg);
    free(f->cfg.listen);
    f->cfg.listen = NULL;
    snprintf(f->listen, sizeof f->listen, "127.0.0.1:%d", ink_rpc_server_port(f->coord.rpc));
    f->running = true;
}

static void stop_coordinator(fixture *f)
{
    if (f->running)
        ink_coordinator_stop(&f->coord);
    f->running = false;
}

static int setup(void **state)
{
    fixture *f = ink_xcalloc(1, sizeof *f);
    test_pki_create(&f->pki, "nodesvc");
    snprintf(f->db, sizeof f->db, "%s/ink.db", f->pki.dir);
    snprintf(f->listen, sizeof f->listen, "127.0.0.1:0");
    ink_err err = {0};
    if (ink_config_defaults(ink_coordinator_options, &f->cfg, &err) < 0)
        return -1;
    free(f->cfg.listen);
    f->cfg.listen = NULL;
    ink_config_set(ink_coordinator_options, &f->cfg, "database", f->db, &err);
    ink_config_set(ink_coordinator_options, &f->cfg, "tls_ca", f->pki.ca, &err);
    ink_config_set(ink_coordinator_options, &f->cfg, "tls_cert", f->pki.coord_crt, &err);
    ink_config_set(ink_coordinator_options, &f->cfg, "tls_key", f->pki.coord_key, &err);
    ink_config_set(ink_coordinator_options, &f->cfg, "heartbeat_interval", "200ms", &err);
    ink_config_set(ink_coordinator_options, &f->cfg, "watch_progress", "200ms", &err);
    start_coordinator(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    stop_coordinator(f);
    ink_config_free(ink_coordinator_options, &f->cfg);
    test_pki_destroy(&f->pki);
    free(f);
    return 0;
}

static ink_rpc_client *client_as(fixture *f, const char *crt, const char *key)
{
    ink_tls_files tls = {f->pki.ca, crt, key};
    ink_rpc_client_opts co = {.target = f->listen, .tls = &tls, .server_name = "ink-coordinator"};
    ink_err err = {0};
    ink_rpc_client *c = ink_rpc_client_new(&co, &err);
    assert_non_null(c);
    return c;
}

static int do_register(ink_rpc_client *c, const char *node_id, bool with_capacity,
                       ink_rpc_status *st)
{
    Ink__V1__Capacity cap = INK__V1__CAPACITY__INIT;
    cap.cpus = 2;
    cap.memory_bytes = 1 << 30;
    Ink__V1__RegisterRequest r = INK__V1__REGISTER_REQUEST__INIT;
    r.node_id = (char *)node_id;
    r.hostname = "h";
    r.agent_endpoint = "127.0.0.1:7442";
    r.capacity = with_capacity ? &cap : NULL;
    r.instance_id = "i1";
    ProtobufCMessage *resp = NULL;
    /* The first call of a client does the TLS handshake: valgrind on a
     * loaded machine can take more than 5 s for it. */
    int rc = ink_rpc_unary(c, "/ink.v1.NodeService/Register", &r.base,
                           &ink__v1__register_response__descriptor, &resp, 20000, st);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}

static void test_register_identity(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = client_as(f, f->pki.node_crt, f->pki.node_key);
    ink_rpc_status st;
    assert_int_equal(do_register(c, "n1", true, &st), 0);
    /* n1's certificate cannot speak for n2. */
    assert_int_equal(do_register(c, "n2", true, &st), -1);
    assert_int_equal(st.code, GRPC_STATUS_PERMISSION_DENIED);
    assert_non_null(strstr(st.message, "not for node 'n2'"));
    /* Nor can the coordinator's own certificate register as a node. */
    ink_rpc_client *cc = client_as(f, f->pki.coord_crt, f->pki.coord_key);
    assert_int_equal(do_register(cc, "n1", true, &st), -1);
    assert_int_equal(st.code, GRPC_STATUS_PERMISSION_DENIED);
    ink_rpc_client_free(cc);
    /* Bad input is refused and nothing is stored. */
    assert_int_equal(do_register(c, "Bad_Name", true, &st), -1);
    assert_int_equal(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(do_register(c, "n1", false, &st), -1);
    assert_int_equal(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    ink_node_row *rows;
    size_t n;
    ink_err err = {0};
    assert_int_equal(ink_store_list_nodes(f->coord.store, &rows, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].id, "n1");
    assert_int_equal(rows[0].registrations, 1);
    free(rows);
    ink_rpc_client_free(c);
}

static ink_rpc_stream *watch(ink_rpc_client *c, const char *node, uint64_t since)
{
    Ink__V1__WatchAssignmentsRequest r = INK__V1__WATCH_ASSIGNMENTS_REQUEST__INIT;
    r.node_id = (char *)node;
    r.since_revision = since;
    ink_rpc_status st;
    ink_rpc_stream *s = ink_rpc_stream_open(c, "/ink.v1.NodeService/WatchAssignments", &r.base,
                                            &ink__v1__watch_event__descriptor, 10000, &st);
    assert_non_null(s);
    return s;
}

static Ink__V1__WatchEvent *next_event(ink_rpc_stream *s)
{
    ProtobufCMessage *m = NULL;
    ink_rpc_status st;
    int rc = ink_rpc_stream_next(s, &m, &st);
    if (rc != 1)
        fail_msg("stream ended: %s %s", ink_rpc_code_name(st.code), st.message);
    return (Ink__V1__WatchEvent *)m;
}

/* Skips keepalives; returns the next change. */
static Ink__V1__WatchEvent *next_change(ink_rpc_stream *s)
{
    for (;;) {
        Ink__V1__WatchEvent *ev = next_event(s);
        if (ev->kind != INK__V1__WATCH_EVENT__KIND__PROGRESS)
            return ev;
        protobuf_c_message_free_unpacked(&ev->base, NULL);
    }
}

static void put(fixture *f, const char *node, const char *wid)
{
    Ink__V1__Assignment a = INK__V1__ASSIGNMENT__INIT;
    a.workload_id = (char *)wid;
    /* A registry nobody listens on: the agent's loops fail their pulls
     * locally and never reach a sandbox (or another machine). */
    a.image = "127.0.0.1:9/img:1";
    ink_err err = {0};
    assert_true(ink_store_put_assignment(f->coord.store, node, &a, &err) > 0);
    ink_coordinator_kick(&f->coord);
}

static void test_watch_before_register(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = client_as(f, f->pki.node_crt, f->pki.node_key);
    ink_rpc_stream *s = watch(c, "n1", 0);
    ProtobufCMessage *m;
    ink_rpc_status st;
    assert_int_equal(ink_rpc_stream_next(s, &m, &st), -1);
    assert_int_equal(st.code, GRPC_STATUS_FAILED_PRECONDITION);
    ink_rpc_stream_free(s);
    ink_rpc_client_free(c);
}

static void test_watch_snapshot_changes_resume(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = client_as(f, f->pki.node_crt, f->pki.node_key);
    ink_rpc_status st;
    assert_int_equal(do_register(c, "n1", true, &st), 0);
    put(f, "n1", "w1"); /* revision 1 */

    ink_rpc_stream *s = watch(c, "n1", 0);
    Ink__V1__WatchEvent *ev = next_event(s);
    assert_int_equal(ev->kind, INK__V1__WATCH_EVENT__KIND__SNAPSHOT);
    assert_int_equal(ev->revision, 1);
    assert_int_equal(ev->n_assignments, 1);
    protobuf_c_message_free_unpacked(&ev->base, NULL);

    put(f, "n2", "other"); /* 2: not for n1 */
    put(f, "n1", "w2");    /* 3 */
    ev = next_change(s);
    assert_int_equal(ev->kind, INK__V1__WATCH_EVENT__KIND__UPSERT);
    assert_int_equal(ev->revision, 3);
    assert_string_equal(ev->assignments[0]->workload_id, "w2");
    protobuf_c_message_free_unpacked(&ev->base, NULL);
    ink_rpc_stream_cancel(s);
    ink_rpc_stream_free(s);

    /* Changes while disconnected arrive on resume, once, and only them. */
    ink_err err = {0};
    assert_int_equal(ink_store_delete_assignment(f->coord.store, "n1", "w1", &err), 4);
    s = watch(c, "n1", 3);
    ev = next_change(s);
    assert_int_equal(ev->kind, INK__V1__WATCH_EVENT__KIND__DELETE);
    assert_int_equal(ev->revision, 4);
    assert_string_equal(ev->workload_id, "w1");
    protobuf_c_message_free_unpacked(&ev->base, NULL);
    /* Then only keepalives: nothing is repeated. */
    ev = next_event(s);
    assert_int_equal(ev->kind, INK__V1__WATCH_EVENT__KIND__PROGRESS);
    assert_int_equal(ev->revision, 4);
    protobuf_c_message_free_unpacked(&ev->base, NULL);
    ink_rpc_stream_cancel(s);
    ink_rpc_stream_free(s);

    /* Another node's certificate cannot watch n1. */
    ink_rpc_client *c2 = client_as(f, f->pki.node2_crt, f->pki.node2_key);
    s = watch(c2, "n1", 0);
    ProtobufCMessage *m;
    assert_int_equal(ink_rpc_stream_next(s, &m, &st), -1);
    assert_int_equal(st.code, GRPC_STATUS_PERMISSION_DENIED);
    ink_rpc_stream_free(s);
    ink_rpc_client_free(c2);
    ink_rpc_client_free(c);
}

/* ------------------------------------------------------------ agent core */

typedef struct agent_fixture {
    ink_agent_config cfg;
    ink_agent agent;
    char state_dir[192];
} agent_fixture;

static void agent_start(fixture *f, agent_fixture *af)
{
    ink_err err = {0};
    memset(&af->cfg, 0, sizeof af->cfg);
    assert_int_equal(ink_config_defaults(ink_agent_options, &af->cfg, &err), 0);
    snprintf(af->state_dir, sizeof af->state_dir, "%s/agent", f->pki.dir);
    char runsc_root[256], netns_dir[256];
    snprintf(runsc_root, sizeof runsc_root, "%s/runsc", af->state_dir);
    snprintf(netns_dir, sizeof netns_dir, "%s/netns", af->state_dir);
    const char *set[][2] = {
        {"coordinator", f->listen},
        {"node_id", "n1"},
        {"listen", "127.0.0.1:0"},
        {"state_dir", af->state_dir},
        {"tls_ca", f->pki.ca},
        {"tls_cert", f->pki.node_crt},
        {"tls_key", f->pki.node_key},
        {"reconnect_initial", "50ms"},
        {"reconnect_max", "300ms"},
        {"runsc", "/nonexistent/runsc"},
        {"runsc_root", runsc_root},
        {"netns_dir", netns_dir},
        /* Any free port: the default may be taken by a running Ink or by
         * this test's other variant. No eBPF map pinned on the host's BPF
         * file system either. */
        {"metrics_listen", "127.0.0.1:0"},
        {"bpf_pin_dir", "off"},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(set); i++)
        assert_int_equal(ink_config_set(ink_agent_options, &af->cfg, set[i][0], set[i][1], &err),
                         0);
    if (ink_agent_start(&af->agent, &af->cfg, &err) < 0)
        fail_msg("agent: %s", err.msg);
}

static void agent_stop(agent_fixture *af)
{
    ink_agent_stop(&af->agent);
    ink_config_free(ink_agent_options, &af->cfg);
}

static bool wait_for(bool (*cond)(void *), void *arg, int64_t ms)
{
    int64_t end = ink_mono_ms() + ms;
    while (ink_mono_ms() < end) {
        if (cond(arg))
            return true;
        usleep(20 * 1000);
    }
    return cond(arg);
}

typedef struct {
    agent_fixture *af;
    uint64_t registrations;
    uint64_t revision;
    size_t n;
} agent_expect;

static bool agent_reached(void *arg)
{
    agent_expect *e = arg;
    ink_agent *a = &e->af->agent;
    pthread_mutex_lock(&a->mu);
    bool ok = a->registrations >= e->registrations && a->desired.revision >= e->revision &&
              a->desired.n == e->n;
    pthread_mutex_unlock(&a->mu);
    return ok;
}

static bool node_reported(void *arg)
{
    fixture *f = arg;
    ink_node_row row;
    ink_err err = {0};
    return ink_store_get_node(f->coord.store, "n1", &row, &err) == 0 && row.applied_revision >= 2 &&
           row.workloads == 2;
}

/* GET path from 127.0.0.1:port; the whole answer (caller frees). */
static char *http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[128];
    int len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: node\r\n\r\n", path);
    assert_int_equal(send(fd, req, (size_t)len, MSG_NOSIGNAL), len);
    size_t cap = 1 << 16, got = 0;
    char *buf = ink_xmalloc(cap);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, 10000), 1);
        if (got + 1 == cap)
            buf = ink_xrealloc(buf, cap *= 2);
        ssize_t r = recv(fd, buf + got, cap - 1 - got, 0);
        assert_true(r >= 0);
        if (r == 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    close(fd);
    return buf;
}

/* The agent's metrics: its Prometheus endpoint lists its workloads, and
 * GetMetrics with history answers (the samples themselves come every 10 s:
 * test_history and agent_e2e check them). */
static void check_agent_metrics(fixture *f, agent_fixture *af)
{
    int port = ink_agent_metrics_port(&af->agent);
    assert_true(port > 0);
    cleanup_free char *page = http_get(port, "/metrics");
    assert_true(strncmp(page, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(page, "\r\nContent-Type: text/plain; version=0.0.4\r\n"));
    assert_non_null(strstr(page, "\nink_agent_info{node=\"n1\",version=\""));
    assert_non_null(strstr(page, "\n# TYPE ink_workload_cpu_seconds_total counter\n"));
    assert_non_null(strstr(page, "replica=\"w1\"} "));
    cleanup_free char *nf = http_get(port, "/");
    assert_true(strncmp(nf, "HTTP/1.1 404 ", 13) == 0);

    ink_tls_files tls = {f->pki.ca, f->pki.coord_crt, f->pki.coord_key};
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", ink_rpc_server_port(af->agent.rpc));
    ink_rpc_client_opts co = {.target = target, .tls = &tls, .server_name = "n1"};
    ink_err err = {0};
    ink_rpc_client *c = ink_rpc_client_new(&co, &err);
    assert_non_null(c);
    Ink__V1__GetMetricsRequest req = INK__V1__GET_METRICS_REQUEST__INIT;
    req.history = true;
    ProtobufCMessage *resp = NULL;
    ink_rpc_status st = {0};
    if (ink_rpc_unary(c, "/ink.v1.AgentService/GetMetrics", &req.base,
                      &ink__v1__get_metrics_response__descriptor, &resp, 20000, &st) < 0)
        fail_msg("GetMetrics: %s", st.message);
    Ink__V1__GetMetricsResponse *m = (Ink__V1__GetMetricsResponse *)resp;
    assert_true(m->n_workloads >= 1);
    for (size_t i = 0; i < m->n_workloads; i++)
        assert_true(m->workloads[i]->n_history <= 90);
    protobuf_c_message_free_unpacked(resp, NULL);
    ink_rpc_client_free(c);
}

static bool agent_lists_w1(void *arg)
{
    agent_fixture *af = arg;
    cleanup_free char *page = http_get(ink_agent_metrics_port(&af->agent), "/metrics");
    return strstr(page, "replica=\"w1\"} ") != NULL;
}

static void test_agent_session(void **state)
{
    fixture *f = *state;
    put(f, "n1", "w1");
    agent_fixture af;
    agent_start(f, &af);
    agent_expect e = {&af, 1, 1, 1};
    assert_true(wait_for(agent_reached, &e, 5000));
    put(f, "n1", "w2");
    e = (agent_expect){&af, 1, 2, 2};
    assert_true(wait_for(agent_reached, &e, 5000));
    /* Heartbeats carry the applied revision and the workload count. */
    assert_true(wait_for(node_reported, f, 5000));
    assert_true(wait_for(agent_lists_w1, &af, 5000));
    check_agent_metrics(f, &af);

    /* The desired state is on disk, as the agent would reload it. */
    ink_desired d;
    ink_err err = {0};
    assert_int_equal(ink_desired_load(&d, af.state_dir, &err), 0);
    assert_int_equal(d.revision, 2);
    assert_int_equal(d.n, 2);
    assert_non_null(ink_desired_find(&d, "w2"));
    ink_desired_free(&d);

    /* Coordinator restart: the agent keeps its state, registers again and
     * resumes its watch, then sees a change made while it was away. */
    char port[64];
    snprintf(port, sizeof port, "%s", f->listen);
    stop_coordinator(f);
    usleep(300 * 1000);
    pthread_mutex_lock(&af.agent.mu);
    assert_int_equal(af.agent.desired.n, 2);
    pthread_mutex_unlock(&af.agent.mu);
    snprintf(f->listen, sizeof f->listen, "%s", port);
    start_coordinator(f);
    assert_int_equal(ink_store_delete_assignment(f->coord.store, "n1", "w1", &err), 3);
    ink_coordinator_kick(&f->coord);
    e = (agent_expect){&af, 2, 3, 1};
    assert_true(wait_for(agent_reached, &e, 10000));
    ink_node_row row;
    assert_int_equal(ink_store_get_node(f->coord.store, "n1", &row, &err), 0);
    assert_int_equal(row.registrations, 2);
    agent_stop(&af);
}

/* ------------------------------------------------------------ egress counters */

static int do_report(ink_rpc_client *c, const char *instance, const char *wid, uint64_t packets,
                     ink_rpc_status *st)
{
    Ink__V1__EgressBlocked eb = INK__V1__EGRESS_BLOCKED__INIT, *ebp = &eb;
    eb.category = "metadata";
    eb.packets = packets;
    Ink__V1__WorkloadStatus ws = INK__V1__WORKLOAD_STATUS__INIT, *wsp = &ws;
    ws.workload_id = (char *)wid;
    ws.generation = 1;
    ws.state = INK__V1__WORKLOAD_STATUS__STATE__PULLING; /* no URL probe */
    ws.egress_blocked = &ebp;
    ws.n_egress_blocked = 1;
    Ink__V1__ReportStatusRequest r = INK__V1__REPORT_STATUS_REQUEST__INIT;
    r.node_id = "n1";
    r.instance_id = (char *)instance;
    r.workloads = &wsp;
    r.n_workloads = 1;
    ProtobufCMessage *resp = NULL;
    int rc = ink_rpc_unary(c, "/ink.v1.NodeService/ReportStatus", &r.base,
                           &ink__v1__report_status_response__descriptor, &resp, 20000, st);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}

static bool has_assignment(void *arg)
{
    fixture *f = arg;
    ink_workload_row *rows = NULL;
    size_t n = 0;
    ink_err err = {0};
    if (ink_store_list_workloads(f->coord.store, "n1", &rows, &n, &err) < 0)
        return false;
    ink_store_free_workloads(rows, n);
    return n == 1;
}

/* The replica's blocked packets, and the events that mention them. */
static int64_t app_blocked(fixture *f, size_t *events, char *last, size_t lastlen)
{
    json_t *app = NULL;
    ink_err err = {0};
    assert_int_equal(ink_apps_get(f->coord.store, "demo", "web", &app, &err), 0);
    *events = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(app, "events"), i, e)
    {
        const char *m = json_string_value(json_object_get(e, "message"));
        if (m && strstr(m, "egress blocked")) {
            (*events)++;
            snprintf(last, lastlen, "%s", m);
        }
    }
    json_t *r0 = json_array_get(json_object_get(app, "replica_status"), 0);
    int64_t n =
        json_integer_value(json_object_get(json_object_get(r0, "egress_blocked"), "metadata"));
    json_decref(app);
    return n;
}

/* What an agent reports its egress policy blocked reaches the app: a
 * count per replica and an event, coalesced within the minute. */
static void test_report_egress_blocked(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = client_as(f, f->pki.node_crt, f->pki.node_key);
    ink_rpc_status st;
    assert_int_equal(do_register(c, "n1", true, &st), 0);
    static const ink_caller who = {.key_id = "k1", .project = "demo", .role = INK_ROLE_DEPLOYER};
    json_t *args = json_pack("{s:s, s:s, s:i, s:s}", "name", "web", "image", "127.0.0.1:9/img:1",
                             "port", 8080, "egress", "deny-all");
    json_t *op = NULL;
    ink_err err = {0};
    assert_int_equal(ink_apps_create(f->coord.store, &who, args, ink_now_ms(), &op, &err), 0);
    json_decref(args);
    json_decref(op);
    ink_coordinator_kick(&f->coord);
    /* The coordinator's controller places the replica on n1. */
    assert_true(wait_for(has_assignment, f, 30000));
    ink_workload_row *rows = NULL;
    size_t n = 0;
    assert_int_equal(ink_store_list_workloads(f->coord.store, "n1", &rows, &n, &err), 0);
    char wid[64];
    snprintf(wid, sizeof wid, "%s", rows[0].spec->workload_id);
    assert_string_equal(rows[0].spec->egress, "deny-all");
    ink_store_free_workloads(rows, n);

    char last[256] = "", want[256];
    size_t events;
    assert_int_equal(do_report(c, "i1", wid, 3, &st), 0);
    assert_int_equal(app_blocked(f, &events, last, sizeof last), 3);
    assert_int_equal(events, 1);
    snprintf(want, sizeof want, "replica %s on node n1: egress blocked 3 packets (metadata)", wid);
    assert_string_equal(last, want);
    /* More within the minute: counted, no new event yet. */
    assert_int_equal(do_report(c, "i1", wid, 5, &st), 0);
    assert_int_equal(app_blocked(f, &events, last, sizeof last), 5);
    assert_int_equal(events, 1);
    /* A report the coordinator refuses counts nothing. */
    assert_int_equal(do_report(c, "i2", wid, 50, &st), -1);
    assert_int_equal(st.code, GRPC_STATUS_NOT_FOUND);
    assert_int_equal(app_blocked(f, &events, last, sizeof last), 5);
    ink_rpc_client_free(c);
}

int main(void)
{
    /* The agent core below runs its egress firewall, which replaces a
     * `table inet ink` it finds: in the host's namespace that could be
     * another Ink's (a quick start on the same machine). As root, the whole
     * test gets a network namespace of its own, made before gRPC starts any
     * thread (a namespace is per thread; later threads inherit it). */
    if (geteuid() == 0 && (unshare(CLONE_NEWNET) < 0 || test_lo_up() < 0)) {
        fprintf(stderr,
                "test_node_service: running as root but no private network namespace "
                "with lo up: %s\n",
                strerror(errno));
        return 1;
    }
    ink_rpc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_register_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_before_register, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_snapshot_changes_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_egress_blocked, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    ink_rpc_shutdown();
    return failed;
}
