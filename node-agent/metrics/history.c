/* Metrics history (history.h): rings of samples, one per workload id, in
 * an array sorted by id so that a node with a thousand workloads finds one
 * by binary search, under one mutex (a record or a copy is a few hundred
 * bytes moved; nothing blocks while it is held). */
#include "history.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* What a sample keeps: the fields of MetricsSample, without the protobuf
 * header each message carries. */
typedef struct sample {
    int64_t unix_ms;
    uint64_t cpu_ns, memory_bytes, rx_bytes, tx_bytes;
    uint32_t pids;
    int state; /* Ink__V1__WorkloadStatus__State */
} sample;

typedef struct ring {
    char *id;
    size_t start, count; /* oldest at ring[start] */
    sample samples[INK_METRICS_HISTORY_SAMPLES];
} ring;

struct ink_metrics_history {
    pthread_mutex_t mu;
    ring **rings; /* sorted by id */
    size_t n, cap;
};

ink_metrics_history *ink_metrics_history_new(void)
{
    ink_metrics_history *h = ink_xcalloc(1, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    return h;
}

void ink_metrics_history_free(ink_metrics_history *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++) {
        free(h->rings[i]->id);
        free(h->rings[i]);
    }
    free(h->rings);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

/* The index of id's ring, or where it would go (*found false). */
static size_t find(const ink_metrics_history *h, const char *id, bool *found)
{
    size_t lo = 0, hi = h->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(h->rings[mid]->id, id);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

void ink_metrics_history_record(ink_metrics_history *h, const char *id,
                                const Ink__V1__WorkloadMetrics *m, int64_t unix_ms)
{
    sample s = {
        .unix_ms = unix_ms,
        .cpu_ns = m->cpu_ns,
        .memory_bytes = m->memory_bytes,
        .rx_bytes = m->rx_bytes,
        .tx_bytes = m->tx_bytes,
        .pids = m->pids,
        .state = (int)m->state,
    };
    pthread_mutex_lock(&h->mu);
    bool found;
    size_t i = find(h, id, &found);
    if (!found) {
        if (h->n == h->cap) {
            h->cap = h->cap ? 2 * h->cap : 16;
            h->rings = ink_xrealloc(h->rings, h->cap * sizeof *h->rings);
        }
        memmove(h->rings + i + 1, h->rings + i, (h->n - i) * sizeof *h->rings);
        ring *r = ink_xmalloc(sizeof *r);
        r->id = ink_xstrdup(id);
        r->start = r->count = 0;
        h->rings[i] = r;
        h->n++;
    }
    ring *r = h->rings[i];
    if (r->count < INK_METRICS_HISTORY_SAMPLES) {
        r->samples[(r->start + r->count) % INK_METRICS_HISTORY_SAMPLES] = s;
        r->count++;
    } else {
        /* Full: the newest takes the oldest's place. */
        r->samples[r->start] = s;
        r->start = (r->start + 1) % INK_METRICS_HISTORY_SAMPLES;
    }
    pthread_mutex_unlock(&h->mu);
}

size_t ink_metrics_history_get(ink_metrics_history *h, const char *id, Ink__V1__MetricsSample *out,
                               size_t max)
{
    pthread_mutex_lock(&h->mu);
    bool found;
    size_t i = find(h, id, &found);
    size_t n = 0;
    if (found) {
        const ring *r = h->rings[i];
        /* The newest max when there is less room than samples. */
        size_t skip = r->count > max ? r->count - max : 0;
        for (size_t k = skip; k < r->count; k++) {
            const sample *s = &r->samples[(r->start + k) % INK_METRICS_HISTORY_SAMPLES];
            Ink__V1__MetricsSample *o = &out[n++];
            ink__v1__metrics_sample__init(o);
            o->unix_ms = s->unix_ms;
            o->cpu_ns = s->cpu_ns;
            o->memory_bytes = s->memory_bytes;
            o->pids = s->pids;
            o->rx_bytes = s->rx_bytes;
            o->tx_bytes = s->tx_bytes;
            o->state = (Ink__V1__WorkloadStatus__State)s->state;
        }
    }
    pthread_mutex_unlock(&h->mu);
    return n;
}

static int cmp_ids(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void ink_metrics_history_retain(ink_metrics_history *h, const char *const *keep, size_t n)
{
    const char **sorted = ink_xcalloc(n ? n : 1, sizeof *sorted);
    if (n)
        memcpy(sorted, keep, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_ids);
    pthread_mutex_lock(&h->mu);
    size_t out = 0;
    for (size_t i = 0; i < h->n; i++) {
        ring *r = h->rings[i];
        const char *key = r->id;
        if (n && bsearch(&key, sorted, n, sizeof *sorted, cmp_ids)) {
            h->rings[out++] = r; /* order kept: still sorted */
        } else {
            free(r->id);
            free(r);
        }
    }
    h->n = out;
    pthread_mutex_unlock(&h->mu);
    free(sorted);
}

size_t ink_metrics_history_size(ink_metrics_history *h)
{
    pthread_mutex_lock(&h->mu);
    size_t n = h->n;
    pthread_mutex_unlock(&h->mu);
    return n;
}
