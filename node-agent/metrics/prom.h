/* The node's Prometheus endpoint: its text (prom.c, a pure function of
 * the workloads' metrics, so that tests can check every byte) and the
 * small HTTP/1.1 server that answers GET /metrics with it (prom_http.c).
 *
 * Families (HELP and TYPE once each, then one series per workload with
 * labels app, project and replica = the workload id):
 *
 *   ink_workload_cpu_seconds_total                 counter
 *   ink_workload_memory_bytes                      gauge (working set)
 *   ink_workload_pids                              gauge
 *   ink_workload_network_receive_bytes_total       counter
 *   ink_workload_network_transmit_bytes_total      counter
 *   ink_workload_network_receive_packets_total     counter
 *   ink_workload_network_transmit_packets_total    counter
 *   ink_workload_last_activity_timestamp_seconds   gauge (absent: none yet)
 *   ink_workload_state{state="running"|...}        gauge, 1 for the current
 *                                                  state, 0 for the others
 *   ink_workload_sleeps_total                      counter
 *   ink_workload_wakes_total                       counter
 *   ink_workload_last_wake_seconds                 gauge (absent: no wake yet)
 *   ink_workload_connections_active                gauge
 *   ink_agent_workloads                            gauge
 *   ink_agent_traffic_ebpf                         gauge: 1 when a workload's
 *                                                  traffic comes from the eBPF
 *                                                  counters, 0 when none does
 *                                                  (no workload, or counted
 *                                                  from the veths' statistics)
 *   ink_agent_info{node, version}                  gauge, always 1
 *
 * Counters are totals since the workload was placed on the node: they go
 * on counting while it sleeps. */
#ifndef INK_METRICS_PROM_H
#define INK_METRICS_PROM_H

#include <stddef.h>

#include "err.h"
#include "ink/v1/ink.pb-c.h"

/* What the node says about itself. */
typedef struct ink_prom_node {
    const char *node_id;
    const char *version;
} ink_prom_node;

/* The exposition text (format 0.0.4) for wm[0..n); *len its length.
 * Caller frees. */
char *ink_prom_render(Ink__V1__WorkloadMetrics *const *wm, size_t n, const ink_prom_node *node,
                      size_t *len);

/* ------------------------------------------------------------------ HTTP
 *
 * One thread serving at most INK_PROM_MAX_CONNECTIONS connections at once
 * from one poll loop: each gets INK_PROM_TIMEOUT_MS to send its request
 * (at most INK_PROM_REQUEST_MAX bytes of request line and headers) and
 * again to take the answer, then is closed; a slow or silent client holds
 * only its own slot. GET (and HEAD) /metrics gets 200 with the text of
 * source(); other paths 404, other methods 405, a request too large 431,
 * anything not HTTP/1.x 400. Every answer closes its connection. */
#define INK_PROM_MAX_CONNECTIONS 16
#define INK_PROM_REQUEST_MAX 8192
#define INK_PROM_TIMEOUT_MS 2000
#define INK_PROM_CONTENT_TYPE "text/plain; version=0.0.4"

/* Called from the server's thread for each GET /metrics: the body
 * (malloc'd; the server frees it) and its length. */
typedef char *(*ink_prom_source)(void *arg, size_t *len);

typedef struct ink_prom_server ink_prom_server;

/* Listens on listen, an IPv4 "host:port" (port 0: any free one), and
 * starts the thread. */
int ink_prom_server_start(const char *listen, ink_prom_source source, void *arg,
                          ink_prom_server **out, ink_err *err);
/* The port it listens on (the chosen one for port 0). */
int ink_prom_server_port(const ink_prom_server *srv);
/* Stops the thread and closes every connection. NULL is fine. */
void ink_prom_server_stop(ink_prom_server *srv);

#endif
