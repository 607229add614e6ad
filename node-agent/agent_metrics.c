/* The agent's metrics over time and for Prometheus: a sampler thread that
 * records every workload's metrics into the history rings
 * (metrics/history.h) every INK_METRICS_SAMPLE_MS, which GetMetrics
 * attaches on request, and the /metrics endpoint on metrics_listen
 * (metrics/prom.h), rendered from the supervisor's current metrics on
 * each scrape.
 *
 * Three ways to the same numbers, for three readers: an AI agent asks the
 * MCP tool get_app_metrics (current values and the last 15 minutes,
 * through GetMetrics), an operator's Prometheus scrapes the node, and a
 * script calls GetMetrics itself. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "history.h"
#include "ink_version.h"
#include "log.h"
#include "prom.h"
#include "util.h"

struct ink_agent_metrics {
    ink_metrics_history *history;
    ink_prom_server *prom; /* NULL: metrics_listen off */

    pthread_mutex_t mu;
    pthread_cond_t cond; /* CLOCK_MONOTONIC: stop wakes the sampler */
    bool stopping;
    pthread_t sampler;
    bool sampler_running;
};

static void free_metrics(Ink__V1__WorkloadMetrics **wm, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(wm[i]);
    free(wm);
}

/* One sample of every workload; workloads no longer on the node lose
 * their history. */
static void sample(ink_agent *a)
{
    Ink__V1__WorkloadMetrics **wm = NULL;
    size_t n = 0;
    if (ink_supervisor_metrics(a->sup, NULL, &wm, &n) < 0)
        return;
    int64_t now = ink_now_ms();
    const char **ids = ink_xcalloc(n ? n : 1, sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        ink_metrics_history_record(a->metrics->history, wm[i]->workload_id, wm[i], now);
        ids[i] = wm[i]->workload_id;
    }
    ink_metrics_history_retain(a->metrics->history, ids, n);
    free(ids);
    free_metrics(wm, n);
}

static void *sampler_main(void *arg)
{
    ink_agent *a = arg;
    struct ink_agent_metrics *m = a->metrics;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&m->mu);
    while (!m->stopping) {
        pthread_mutex_unlock(&m->mu);
        sample(a);
        pthread_mutex_lock(&m->mu);
        /* On a fixed beat (a slow sample does not push the next ones
         * later), but never twice in a row after a stall. */
        next.tv_sec += INK_METRICS_SAMPLE_MS / 1000;
        next.tv_nsec += (INK_METRICS_SAMPLE_MS % 1000) * 1000000L;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_sec++;
            next.tv_nsec -= 1000000000L;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec > next.tv_nsec))
            next = now;
        while (!m->stopping && pthread_cond_timedwait(&m->cond, &m->mu, &next) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* A scrape: the text of every workload's current metrics. */
static char *render(void *arg, size_t *len)
{
    ink_agent *a = arg;
    Ink__V1__WorkloadMetrics **wm = NULL;
    size_t n = 0;
    if (ink_supervisor_metrics(a->sup, NULL, &wm, &n) < 0)
        return NULL;
    ink_prom_node node = {.node_id = a->node_id, .version = INK_VERSION};
    char *text = ink_prom_render(wm, n, &node, len);
    free_metrics(wm, n);
    return text;
}

int ink_agent_metrics_start(ink_agent *a, ink_err *err)
{
    struct ink_agent_metrics *m = ink_xcalloc(1, sizeof *m);
    m->history = ink_metrics_history_new();
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cond, &ca);
    pthread_condattr_destroy(&ca);
    a->metrics = m;

    const char *listen = a->cfg->metrics_listen;
    if (strcmp(listen, "off") != 0) {
        if (ink_prom_server_start(listen, render, a, &m->prom, err) < 0)
            return ink_err_wrap(err, "metrics_listen (the Prometheus endpoint; \"off\" for none)");
        LOG_INFO("metrics endpoint serving", "listen", listen, "port",
                 LOG_INT(ink_prom_server_port(m->prom)), "path", "/metrics");
    }
    if (pthread_create(&m->sampler, NULL, sampler_main, a) != 0)
        return ink_err_set(err, errno, "metrics sampler thread");
    m->sampler_running = true;
    return 0;
}

void ink_agent_metrics_stop(ink_agent *a)
{
    struct ink_agent_metrics *m = a->metrics;
    if (!m)
        return;
    if (m->sampler_running) {
        pthread_mutex_lock(&m->mu);
        m->stopping = true;
        pthread_cond_broadcast(&m->cond);
        pthread_mutex_unlock(&m->mu);
        pthread_join(m->sampler, NULL);
    }
    ink_prom_server_stop(m->prom);
    ink_metrics_history_free(m->history);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->mu);
    free(m);
    a->metrics = NULL;
}

int ink_agent_metrics_port(const ink_agent *a)
{
    return a->metrics && a->metrics->prom ? ink_prom_server_port(a->metrics->prom) : 0;
}

void ink_agent_metrics_attach_history(ink_agent *a, Ink__V1__WorkloadMetrics **wm, size_t n)
{
    if (!a->metrics)
        return;
    for (size_t i = 0; i < n; i++) {
        /* One block: the pointers, then the samples they point at. */
        size_t max = INK_METRICS_HISTORY_SAMPLES;
        Ink__V1__MetricsSample **ptrs =
            ink_xmalloc(max * (sizeof *ptrs + sizeof(Ink__V1__MetricsSample)));
        Ink__V1__MetricsSample *samples = (Ink__V1__MetricsSample *)(ptrs + max);
        size_t got = ink_metrics_history_get(a->metrics->history, wm[i]->workload_id, samples, max);
        for (size_t k = 0; k < got; k++)
            ptrs[k] = &samples[k];
        wm[i]->history = ptrs;
        wm[i]->n_history = got;
    }
}

void ink_agent_metrics_detach_history(Ink__V1__WorkloadMetrics **wm, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(wm[i]->history);
        wm[i]->history = NULL;
        wm[i]->n_history = 0;
    }
}
