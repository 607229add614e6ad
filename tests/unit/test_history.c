/* Unit tests for the metrics history (node-agent/metrics/history.c):
 * rings fill and wrap around keeping the newest samples oldest first,
 * many ids stay apart, ids not kept are forgotten, and records and reads
 * from several threads at once never show a torn or out-of-order
 * sample. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>

#include "history.h"
#include "util.h"

#define N INK_METRICS_HISTORY_SAMPLES

/* A sample whose every field follows from seq, so that a reader can tell
 * a torn or misplaced one. */
static Ink__V1__WorkloadMetrics metrics_of(uint64_t seq)
{
    Ink__V1__WorkloadMetrics m = INK__V1__WORKLOAD_METRICS__INIT;
    m.cpu_ns = seq * 1000;
    m.memory_bytes = seq * 2;
    m.pids = (uint32_t)(seq % 1000);
    m.rx_bytes = seq * 3;
    m.tx_bytes = seq * 4;
    m.rx_packets = 99; /* not kept */
    m.state = seq % 2 ? INK__V1__WORKLOAD_STATUS__STATE__SLEEPING
                      : INK__V1__WORKLOAD_STATUS__STATE__RUNNING;
    return m;
}

static void record(ink_metrics_history *h, const char *id, uint64_t seq)
{
    Ink__V1__WorkloadMetrics m = metrics_of(seq);
    ink_metrics_history_record(h, id, &m, (int64_t)(1795000000000 + seq * INK_METRICS_SAMPLE_MS));
}

static void assert_sample(const Ink__V1__MetricsSample *s, uint64_t seq)
{
    assert_int_equal(s->unix_ms, 1795000000000 + seq * INK_METRICS_SAMPLE_MS);
    assert_int_equal(s->cpu_ns, seq * 1000);
    assert_int_equal(s->memory_bytes, seq * 2);
    assert_int_equal(s->pids, seq % 1000);
    assert_int_equal(s->rx_bytes, seq * 3);
    assert_int_equal(s->tx_bytes, seq * 4);
    assert_int_equal(s->state, seq % 2 ? INK__V1__WORKLOAD_STATUS__STATE__SLEEPING
                                       : INK__V1__WORKLOAD_STATUS__STATE__RUNNING);
    /* A message of its own, ready to pack. */
    assert_ptr_equal(s->base.descriptor, &ink__v1__metrics_sample__descriptor);
}

static void test_fill_and_wrap(void **state)
{
    /* 15 minutes at 10 s. */
    assert_int_equal(N * INK_METRICS_SAMPLE_MS, 15 * 60 * 1000);
    ink_metrics_history *h = ink_metrics_history_new();
    Ink__V1__MetricsSample out[N + 5];
    assert_int_equal(ink_metrics_history_get(h, "web-1", out, N), 0);

    for (uint64_t i = 0; i < 5; i++)
        record(h, "web-1", i);
    assert_int_equal(ink_metrics_history_get(h, "web-1", out, N + 5), 5);
    for (size_t i = 0; i < 5; i++)
        assert_sample(&out[i], i);

    /* Exactly full, then once around and a bit: the newest N stay,
     * oldest first, whatever the ring's start. */
    for (uint64_t i = 5; i < N; i++)
        record(h, "web-1", i);
    assert_int_equal(ink_metrics_history_get(h, "web-1", out, N + 5), N);
    for (size_t i = 0; i < N; i++)
        assert_sample(&out[i], i);
    for (uint64_t i = N; i < 2 * N + 7; i++)
        record(h, "web-1", i);
    assert_int_equal(ink_metrics_history_get(h, "web-1", out, N + 5), N);
    for (size_t i = 0; i < N; i++)
        assert_sample(&out[i], N + 7 + i);

    /* Less room than samples: the newest that fit. */
    assert_int_equal(ink_metrics_history_get(h, "web-1", out, 3), 3);
    for (size_t i = 0; i < 3; i++)
        assert_sample(&out[i], 2 * N + 4 + i);
    assert_int_equal(ink_metrics_history_get(h, "web-1", out, 0), 0);
    assert_int_equal(ink_metrics_history_size(h), 1);
    ink_metrics_history_free(h);
}

static void test_many_ids(void **state)
{
    ink_metrics_history *h = ink_metrics_history_new();
    /* Inserted out of order, prefixes of each other included, each with
     * samples of its own. */
    enum { IDS = 200 };
    char ids[IDS][32];
    for (int i = 0; i < IDS; i++)
        snprintf(ids[i], sizeof ids[i], "app-%d", (i * 7919) % IDS);
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < IDS; i++)
            record(h, ids[i], (uint64_t)(atoi(ids[i] + 4) * 10 + round));
    assert_int_equal(ink_metrics_history_size(h), IDS);
    Ink__V1__MetricsSample out[N];
    for (int i = 0; i < IDS; i++) {
        char id[32];
        snprintf(id, sizeof id, "app-%d", i);
        assert_int_equal(ink_metrics_history_get(h, id, out, N), 3);
        for (int k = 0; k < 3; k++)
            assert_sample(&out[k], (uint64_t)(i * 10 + k));
    }
    assert_int_equal(ink_metrics_history_get(h, "app-", out, N), 0);
    assert_int_equal(ink_metrics_history_get(h, "app-2000", out, N), 0);
    ink_metrics_history_free(h);
}

static void test_retain(void **state)
{
    ink_metrics_history *h = ink_metrics_history_new();
    const char *all[] = {"a", "b", "c", "d"};
    for (size_t i = 0; i < INK_ARRAY_LEN(all); i++)
        record(h, all[i], i);
    /* Unsorted, with an id that has no ring. */
    const char *keep[] = {"d", "zz", "b"};
    ink_metrics_history_retain(h, keep, INK_ARRAY_LEN(keep));
    assert_int_equal(ink_metrics_history_size(h), 2);
    Ink__V1__MetricsSample out[N];
    assert_int_equal(ink_metrics_history_get(h, "a", out, N), 0);
    assert_int_equal(ink_metrics_history_get(h, "c", out, N), 0);
    assert_int_equal(ink_metrics_history_get(h, "b", out, N), 1);
    assert_sample(&out[0], 1);
    assert_int_equal(ink_metrics_history_get(h, "d", out, N), 1);
    assert_sample(&out[0], 3);
    /* A forgotten id starts again from nothing. */
    record(h, "a", 42);
    assert_int_equal(ink_metrics_history_get(h, "a", out, N), 1);
    assert_sample(&out[0], 42);
    /* Nothing kept: nothing left. */
    ink_metrics_history_retain(h, NULL, 0);
    assert_int_equal(ink_metrics_history_size(h), 0);
    assert_int_equal(ink_metrics_history_get(h, "b", out, N), 0);
    ink_metrics_history_free(h);
}

/* ------------------------------------------------------------ threads */

#define WRITERS 4
#define RECORDS 2000

typedef struct shared {
    ink_metrics_history *h;
    atomic_int writers_done;
    atomic_int bad;
} shared;

typedef struct writer {
    shared *sh;
    char id[16];
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    for (uint64_t i = 0; i < RECORDS; i++)
        record(w->sh->h, w->id, i);
    atomic_fetch_add(&w->sh->writers_done, 1);
    return NULL;
}

/* Reads every writer's ring over and over: each copy must be whole
 * samples, strictly in order, never more than a ring holds. */
static void *reader_main(void *arg)
{
    shared *sh = arg;
    Ink__V1__MetricsSample out[N];
    do {
        for (int w = 0; w < WRITERS; w++) {
            char id[16];
            snprintf(id, sizeof id, "w%d", w);
            size_t n = ink_metrics_history_get(sh->h, id, out, N);
            if (n > N)
                atomic_fetch_add(&sh->bad, 1);
            for (size_t i = 0; i < n; i++) {
                uint64_t seq = out[i].cpu_ns / 1000;
                bool whole =
                    out[i].memory_bytes == seq * 2 && out[i].tx_bytes == seq * 4 &&
                    out[i].unix_ms == (int64_t)(1795000000000 + seq * INK_METRICS_SAMPLE_MS);
                bool ordered = i == 0 || out[i].cpu_ns == out[i - 1].cpu_ns + 1000;
                if (!whole || !ordered)
                    atomic_fetch_add(&sh->bad, 1);
            }
        }
    } while (atomic_load(&sh->writers_done) < WRITERS);
    return NULL;
}

/* Forgets the ids of no writer (there are none) while they record. */
static void *retainer_main(void *arg)
{
    shared *sh = arg;
    const char *keep[WRITERS] = {"w0", "w1", "w2", "w3"};
    do
        ink_metrics_history_retain(sh->h, keep, WRITERS);
    while (atomic_load(&sh->writers_done) < WRITERS);
    return NULL;
}

static void test_concurrent(void **state)
{
    shared sh = {.h = ink_metrics_history_new()};
    writer ws[WRITERS];
    pthread_t wt[WRITERS], rt[2], kt;
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&rt[i], NULL, reader_main, &sh), 0);
    assert_int_equal(pthread_create(&kt, NULL, retainer_main, &sh), 0);
    for (int i = 0; i < WRITERS; i++) {
        ws[i].sh = &sh;
        snprintf(ws[i].id, sizeof ws[i].id, "w%d", i);
        assert_int_equal(pthread_create(&wt[i], NULL, writer_main, &ws[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(wt[i], NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(rt[i], NULL);
    pthread_join(kt, NULL);
    assert_int_equal(atomic_load(&sh.bad), 0);
    /* Every writer's newest N, in order. */
    Ink__V1__MetricsSample out[N];
    for (int w = 0; w < WRITERS; w++) {
        assert_int_equal(ink_metrics_history_get(sh.h, ws[w].id, out, N), N);
        for (size_t i = 0; i < N; i++)
            assert_sample(&out[i], RECORDS - N + i);
    }
    ink_metrics_history_free(sh.h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fill_and_wrap),
        cmocka_unit_test(test_many_ids),
        cmocka_unit_test(test_retain),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
