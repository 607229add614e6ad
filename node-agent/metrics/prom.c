/* The Prometheus text exposition format, version 0.0.4 (prom.h): family by
 * family, HELP and TYPE first, then a series per workload. */
#include "prom.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

typedef Ink__V1__WorkloadMetrics metrics;

/* The states a workload can be in, named as the coordinator's views name
 * them (get_app_details), so that a dashboard and an AI agent read the
 * same words. */
static const struct {
    Ink__V1__WorkloadStatus__State state;
    const char *name;
} states[] = {
    {INK__V1__WORKLOAD_STATUS__STATE__PENDING, "pending"},
    {INK__V1__WORKLOAD_STATUS__STATE__PULLING, "pulling"},
    {INK__V1__WORKLOAD_STATUS__STATE__STARTING, "starting"},
    {INK__V1__WORKLOAD_STATUS__STATE__RUNNING, "running"},
    {INK__V1__WORKLOAD_STATUS__STATE__CRASH_LOOP, "crash-loop"},
    {INK__V1__WORKLOAD_STATUS__STATE__FAILED, "failed"},
    {INK__V1__WORKLOAD_STATUS__STATE__STOPPED, "stopped"},
    {INK__V1__WORKLOAD_STATUS__STATE__SLEEPING, "sleeping"},
    {INK__V1__WORKLOAD_STATUS__STATE__WAKING, "waking"},
};

/* Counters and gauges that are one unsigned field each. */
enum field {
    F_MEMORY,
    F_PIDS,
    F_RX_BYTES,
    F_TX_BYTES,
    F_RX_PACKETS,
    F_TX_PACKETS,
    F_SLEEPS,
    F_WAKES,
    F_CONNECTIONS,
};

static const struct {
    enum field field;
    const char *name, *type, *help;
} plain[] = {
    {F_MEMORY, "ink_workload_memory_bytes", "gauge",
     "Memory the workload's sandbox uses now (working set), bytes."},
    {F_PIDS, "ink_workload_pids", "gauge", "Processes and threads in the workload's sandbox."},
    {F_RX_BYTES, "ink_workload_network_receive_bytes_total", "counter",
     "Bytes the workload received since it was placed on the node."},
    {F_TX_BYTES, "ink_workload_network_transmit_bytes_total", "counter",
     "Bytes the workload sent since it was placed on the node."},
    {F_RX_PACKETS, "ink_workload_network_receive_packets_total", "counter",
     "Packets the workload received since it was placed on the node."},
    {F_TX_PACKETS, "ink_workload_network_transmit_packets_total", "counter",
     "Packets the workload sent since it was placed on the node."},
};

static const struct {
    enum field field;
    const char *name, *type, *help;
} sleep_plain[] = {
    {F_SLEEPS, "ink_workload_sleeps_total", "counter",
     "Times the workload was scaled to zero after its idle timeout."},
    {F_WAKES, "ink_workload_wakes_total", "counter", "Times a request woke the workload."},
};

static uint64_t value(const metrics *m, enum field f)
{
    switch (f) {
    case F_MEMORY:
        return m->memory_bytes;
    case F_PIDS:
        return m->pids;
    case F_RX_BYTES:
        return m->rx_bytes;
    case F_TX_BYTES:
        return m->tx_bytes;
    case F_RX_PACKETS:
        return m->rx_packets;
    case F_TX_PACKETS:
        return m->tx_packets;
    case F_SLEEPS:
        return m->sleeps;
    case F_WAKES:
        return m->wakes;
    case F_CONNECTIONS:
        return m->connections_active;
    }
    return 0;
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, double quote and newline escaped, as the
 * format requires; anything else as it is (UTF-8 passes through). */
static void label_value(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '\\':
            fputs("\\\\", f);
            break;
        case '"':
            fputs("\\\"", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/* name{app="...",project="...",replica="..." -- the caller closes the
 * braces, after labels of its own. */
static void series(FILE *f, const char *name, const metrics *m)
{
    fprintf(f, "%s{app=\"", name);
    label_value(f, m->app);
    fputs("\",project=\"", f);
    label_value(f, m->project);
    fputs("\",replica=\"", f);
    label_value(f, m->workload_id);
    fputc('"', f);
}

/* Milliseconds as seconds, exactly: "1795000000.250". */
static void millis(FILE *f, int64_t ms)
{
    fprintf(f, "%" PRId64 ".%03" PRId64, ms / 1000, ms % 1000);
}

char *ink_prom_render(Ink__V1__WorkloadMetrics *const *wm, size_t n, const ink_prom_node *node,
                      size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        abort();

    family(f, "ink_workload_cpu_seconds_total", "counter",
           "CPU time the workload's sandbox used since it was placed on the node, seconds.");
    for (size_t i = 0; i < n; i++) {
        series(f, "ink_workload_cpu_seconds_total", wm[i]);
        fprintf(f, "} %" PRIu64 ".%09" PRIu64 "\n", wm[i]->cpu_ns / 1000000000u,
                wm[i]->cpu_ns % 1000000000u);
    }
    for (size_t k = 0; k < INK_ARRAY_LEN(plain); k++) {
        family(f, plain[k].name, plain[k].type, plain[k].help);
        for (size_t i = 0; i < n; i++) {
            series(f, plain[k].name, wm[i]);
            fprintf(f, "} %" PRIu64 "\n", value(wm[i], plain[k].field));
        }
    }
    family(f, "ink_workload_last_activity_timestamp_seconds", "gauge",
           "When the workload last sent or received traffic, seconds since the epoch.");
    for (size_t i = 0; i < n; i++) {
        if (wm[i]->last_activity_unix_ms <= 0)
            continue; /* none yet: no sample rather than 1970 */
        series(f, "ink_workload_last_activity_timestamp_seconds", wm[i]);
        fputs("} ", f);
        millis(f, wm[i]->last_activity_unix_ms);
        fputc('\n', f);
    }
    family(f, "ink_workload_state", "gauge",
           "The workload's state: 1 for the state it is in, 0 for the others.");
    for (size_t i = 0; i < n; i++) {
        for (size_t s = 0; s < INK_ARRAY_LEN(states); s++) {
            series(f, "ink_workload_state", wm[i]);
            fprintf(f, ",state=\"%s\"} %d\n", states[s].name, wm[i]->state == states[s].state);
        }
    }
    for (size_t k = 0; k < INK_ARRAY_LEN(sleep_plain); k++) {
        family(f, sleep_plain[k].name, sleep_plain[k].type, sleep_plain[k].help);
        for (size_t i = 0; i < n; i++) {
            series(f, sleep_plain[k].name, wm[i]);
            fprintf(f, "} %" PRIu64 "\n", value(wm[i], sleep_plain[k].field));
        }
    }
    family(f, "ink_workload_last_wake_seconds", "gauge",
           "How long the workload's last wake took, from the request held to its port "
           "answering, seconds.");
    for (size_t i = 0; i < n; i++) {
        if (wm[i]->wakes == 0 && wm[i]->last_wake_ms == 0)
            continue; /* never woken */
        series(f, "ink_workload_last_wake_seconds", wm[i]);
        fputs("} ", f);
        millis(f, wm[i]->last_wake_ms);
        fputc('\n', f);
    }
    family(f, "ink_workload_connections_active", "gauge",
           "Connections open through the workload's published port.");
    for (size_t i = 0; i < n; i++) {
        series(f, "ink_workload_connections_active", wm[i]);
        fprintf(f, "} %" PRIu64 "\n", value(wm[i], F_CONNECTIONS));
    }

    bool ebpf = false;
    for (size_t i = 0; i < n; i++)
        ebpf |= wm[i]->traffic_ebpf;
    family(f, "ink_agent_workloads", "gauge", "Workloads on this node.");
    fprintf(f, "ink_agent_workloads %zu\n", n);
    family(f, "ink_agent_traffic_ebpf", "gauge",
           "1 when workload traffic is counted by Ink's eBPF programs, 0 when no workload's is "
           "(none placed, or counted from the veths' statistics).");
    fprintf(f, "ink_agent_traffic_ebpf %d\n", ebpf);
    family(f, "ink_agent_info", "gauge", "The node's id and the agent's version; always 1.");
    fputs("ink_agent_info{node=\"", f);
    label_value(f, node ? node->node_id : NULL);
    fputs("\",version=\"", f);
    label_value(f, node ? node->version : NULL);
    fputs("\"} 1\n", f);

    if (fclose(f) != 0)
        abort();
    *len = size;
    return buf;
}
