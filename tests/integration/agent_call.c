/* Calls a node's AgentService the way the coordinator does, for the
 * integration tests and the bench:
 *
 *   agent_call TARGET TLS_DIR logs ID [TAIL [SINCE_MS [FOLLOW_SECONDS]]]
 *   agent_call TARGET TLS_DIR exec ID TIMEOUT_S STDIN -- CMD [ARGS...]
 *   agent_call TARGET TLS_DIR metrics [ID]
 *   agent_call TARGET TLS_DIR history ID
 *
 * TLS_DIR holds ca.crt and the coordinator's ink-coordinator.{crt,key}
 * ("-" for plaintext); AGENT_NAME is the node id its certificate names. logs prints "<unix_ms>
 * <o|e|s> <line>"; exec prints the command's stdout and stderr on its own and exits with its exit
 * code (124 on timeout); metrics prints "ID key=value ..." per workload; history prints the
 * workload's samples (GetMetrics with history), "<unix_ms> key=value ..." each, oldest first.
 * gRPC errors print "error: CODE: message" and exit 100. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ink/v1/ink.pb-c.h"
#include "pki.h"
#include "rpc/rpc.h"
#include "util.h"

static int rpc_failed(const ink_rpc_status *st)
{
    fprintf(stderr, "error: %s: %s\n", ink_rpc_code_name(st->code), st->message);
    return 100;
}

static int do_logs(ink_rpc_client *c, int argc, char **argv)
{
    Ink__V1__GetLogsRequest req = INK__V1__GET_LOGS_REQUEST__INIT;
    req.workload_id = argv[0];
    req.tail = argc > 1 ? (uint32_t)atoi(argv[1]) : 0;
    req.since_unix_ms = argc > 2 ? atoll(argv[2]) : 0;
    int follow_s = argc > 3 ? atoi(argv[3]) : 0;
    req.follow = follow_s > 0;
    ink_rpc_status st = {0};
    ink_rpc_stream *s = ink_rpc_stream_open(c, "/ink.v1.AgentService/GetLogs", &req.base,
                                            &ink__v1__log_entry__descriptor,
                                            follow_s ? follow_s * 1000 : 10000, &st);
    if (!s)
        return rpc_failed(&st);
    ProtobufCMessage *m;
    int rc;
    while ((rc = ink_rpc_stream_next(s, &m, &st)) == 1) {
        Ink__V1__LogEntry *e = (Ink__V1__LogEntry *)m;
        char tag = e->stream == INK__V1__LOG_ENTRY__STREAM__STDOUT   ? 'o'
                   : e->stream == INK__V1__LOG_ENTRY__STREAM__STDERR ? 'e'
                                                                     : 's';
        printf("%lld %c %.*s\n", (long long)e->unix_ms, tag, (int)e->line.len,
               (const char *)e->line.data);
        fflush(stdout);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    ink_rpc_stream_free(s);
    /* A follow ends at its deadline: that is the expected end. */
    if (rc < 0 && !(follow_s && st.code == GRPC_STATUS_DEADLINE_EXCEEDED))
        return rpc_failed(&st);
    return 0;
}

static int do_exec(ink_rpc_client *c, int argc, char **argv)
{
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: exec ID TIMEOUT_S STDIN -- CMD...\n");
        return 2;
    }
    Ink__V1__ExecRequest req = INK__V1__EXEC_REQUEST__INIT;
    req.workload_id = argv[0];
    req.timeout_s = (uint32_t)atoi(argv[1]);
    req.stdin = (ProtobufCBinaryData){strlen(argv[2]), (uint8_t *)argv[2]};
    req.command = argv + 4;
    req.n_command = (size_t)(argc - 4);
    ProtobufCMessage *resp;
    ink_rpc_status st = {0};
    if (ink_rpc_unary(c, "/ink.v1.AgentService/Exec", &req.base,
                      &ink__v1__exec_response__descriptor, &resp, 700000, &st) < 0)
        return rpc_failed(&st);
    Ink__V1__ExecResponse *r = (Ink__V1__ExecResponse *)resp;
    if (r->stdout.len)
        fwrite(r->stdout.data, 1, r->stdout.len, stdout);
    if (r->stderr.len)
        fwrite(r->stderr.data, 1, r->stderr.len, stderr);
    int code = r->timed_out ? 124 : r->exit_code;
    protobuf_c_message_free_unpacked(resp, NULL);
    return code;
}

static int do_metrics(ink_rpc_client *c, int argc, char **argv, bool history)
{
    Ink__V1__GetMetricsRequest req = INK__V1__GET_METRICS_REQUEST__INIT;
    req.workload_id = argc > 0 ? argv[0] : "";
    req.history = history;
    ProtobufCMessage *resp;
    ink_rpc_status st = {0};
    if (ink_rpc_unary(c, "/ink.v1.AgentService/GetMetrics", &req.base,
                      &ink__v1__get_metrics_response__descriptor, &resp, 10000, &st) < 0)
        return rpc_failed(&st);
    Ink__V1__GetMetricsResponse *r = (Ink__V1__GetMetricsResponse *)resp;
    for (size_t i = 0; i < r->n_workloads; i++) {
        Ink__V1__WorkloadMetrics *m = r->workloads[i];
        if (history) {
            for (size_t k = 0; k < m->n_history; k++) {
                const Ink__V1__MetricsSample *h = m->history[k];
                printf("%lld cpu_ns=%llu memory_bytes=%llu pids=%u rx_bytes=%llu tx_bytes=%llu "
                       "state=%d\n",
                       (long long)h->unix_ms, (unsigned long long)h->cpu_ns,
                       (unsigned long long)h->memory_bytes, h->pids,
                       (unsigned long long)h->rx_bytes, (unsigned long long)h->tx_bytes,
                       (int)h->state);
            }
            continue;
        }
        printf("%s cpu_ns=%llu memory_bytes=%llu pids=%u rx_bytes=%llu tx_bytes=%llu "
               "last_activity_ms=%lld rx_packets=%llu tx_packets=%llu state=%d sleeps=%llu "
               "wakes=%llu last_wake_ms=%u connections_active=%u traffic_ebpf=%d app=%s "
               "project=%s\n",
               m->workload_id, (unsigned long long)m->cpu_ns, (unsigned long long)m->memory_bytes,
               m->pids, (unsigned long long)m->rx_bytes, (unsigned long long)m->tx_bytes,
               (long long)m->last_activity_unix_ms, (unsigned long long)m->rx_packets,
               (unsigned long long)m->tx_packets, (int)m->state, (unsigned long long)m->sleeps,
               (unsigned long long)m->wakes, m->last_wake_ms, m->connections_active,
               (int)m->traffic_ebpf, m->app, m->project);
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: agent_call TARGET TLS_DIR logs|exec|metrics|history ...\n");
        return 2;
    }
    ink_rpc_init();
    cleanup_free char *ca = ink_xasprintf("%s/ca.crt", argv[2]);
    cleanup_free char *cert = ink_xasprintf("%s/%s.crt", argv[2], INK_COORDINATOR_NAME);
    cleanup_free char *key = ink_xasprintf("%s/%s.key", argv[2], INK_COORDINATOR_NAME);
    ink_tls_files tls = {ca, cert, key};
    ink_rpc_client_opts o = {.target = argv[1],
                             .tls = strcmp(argv[2], "-") == 0 ? NULL : &tls,
                             .server_name = getenv("AGENT_NAME"), /* the node id */
                             .max_message_bytes = 64 << 20};
    ink_err err = {0};
    ink_rpc_client *c = ink_rpc_client_new(&o, &err);
    if (!c) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 100;
    }
    int rc;
    if (strcmp(argv[3], "logs") == 0 && argc >= 5)
        rc = do_logs(c, argc - 4, argv + 4);
    else if (strcmp(argv[3], "exec") == 0)
        rc = do_exec(c, argc - 4, argv + 4);
    else if (strcmp(argv[3], "metrics") == 0)
        rc = do_metrics(c, argc - 4, argv + 4, false);
    else if (strcmp(argv[3], "history") == 0 && argc == 5)
        rc = do_metrics(c, argc - 4, argv + 4, true);
    else {
        fprintf(stderr, "unknown command %s\n", argv[3]);
        rc = 2;
    }
    ink_rpc_client_free(c);
    ink_rpc_shutdown();
    return rc;
}
