/* Metrics history: the recent samples of every workload on the node, kept
 * in memory so that GetMetrics can answer "how did it behave over the last
 * minutes" without a time-series database.
 *
 * Each workload id has a ring of INK_METRICS_HISTORY_SAMPLES samples; the
 * agent's sampler (agent_metrics.c) records one every INK_METRICS_SAMPLE_MS,
 * so a ring spans the last 15 minutes. Samples are taken from
 * Ink__V1__WorkloadMetrics and given back as Ink__V1__MetricsSample values,
 * oldest first. Counters in them are the workload's running totals: rates
 * are for the reader to compute between consecutive samples.
 *
 * Nothing is persisted: a restarted agent starts with empty rings. Every
 * call may be made from any thread. */
#ifndef INK_METRICS_HISTORY_H
#define INK_METRICS_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "ink/v1/ink.pb-c.h"

#define INK_METRICS_SAMPLE_MS 10000    /* the sampler's period */
#define INK_METRICS_HISTORY_SAMPLES 90 /* per workload: 15 min at 10 s */

typedef struct ink_metrics_history ink_metrics_history;

ink_metrics_history *ink_metrics_history_new(void);
void ink_metrics_history_free(ink_metrics_history *h);

/* Appends a sample of m (its counters and gauges, and state) taken at
 * unix_ms to id's ring, dropping the oldest when it is full. */
void ink_metrics_history_record(ink_metrics_history *h, const char *id,
                                const Ink__V1__WorkloadMetrics *m, int64_t unix_ms);

/* Copies id's samples, oldest first, into out (room for max); returns how
 * many were copied (0 for an id with no samples). Each is initialised as a
 * message of its own (ink__v1__metrics_sample__init). */
size_t ink_metrics_history_get(ink_metrics_history *h, const char *id, Ink__V1__MetricsSample *out,
                               size_t max);

/* Drops the rings of every id not among keep[0..n): workloads that left
 * the node. */
void ink_metrics_history_retain(ink_metrics_history *h, const char *const *keep, size_t n);

/* How many workload ids have a ring. */
size_t ink_metrics_history_size(ink_metrics_history *h);

#endif
