/* Unit tests for the placement scheduler (coordinator/scheduler.c): spread,
 * bin-packing, readiness, avoid lists, the error messages, recorded
 * replicas, determinism, and a randomized check of the whole policy
 * against a brute-force model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler.h"
#include "util.h"

#define MIB (1024ULL * 1024)
#define GIB (1024ULL * MIB)

/* Places one replica and returns the node it went to (aborts the test when
 * placement fails). */
static const char *place(ink_sched *s, const char *app, uint32_t cpu, uint64_t mem)
{
    ink_err err = {0};
    const char *id = NULL;
    if (ink_sched_place(s, app, cpu, mem, NULL, 0, &id, &err) != 0)
        fail_msg("placing %s: %s", app, err.msg);
    assert_non_null(id);
    return id;
}

/* Expects placement to fail and returns the message in err. */
static void place_fails(ink_sched *s, const char *app, uint32_t cpu, uint64_t mem,
                        const char *const *avoid, size_t navoid, ink_err *err)
{
    const char *id = NULL;
    assert_int_equal(ink_sched_place(s, app, cpu, mem, avoid, navoid, &id, err), -1);
    assert_null(id);
}

static ink_sched *three_nodes(void)
{
    const ink_sched_node nodes[] = {
        {"node-c", true, 4000, 8 * GIB},
        {"node-a", true, 4000, 8 * GIB},
        {"node-b", true, 4000, 8 * GIB},
    };
    ink_sched *s = ink_sched_new(nodes, INK_ARRAY_LEN(nodes));
    assert_non_null(s);
    return s;
}

static void test_spread_across_nodes(void **state)
{
    (void)state;
    ink_sched *s = three_nodes();
    /* Every node is equal: replicas go to distinct nodes, in id order. */
    assert_string_equal(place(s, "web", 500, GIB), "node-a");
    assert_string_equal(place(s, "web", 500, GIB), "node-b");
    assert_string_equal(place(s, "web", 500, GIB), "node-c");
    /* A fourth has to share: every node holds one, all equally used. */
    assert_string_equal(place(s, "web", 500, GIB), "node-a");
    assert_string_equal(place(s, "web", 500, GIB), "node-b");

    /* Spread wins over bin-packing: node-a is fuller for "api" after its
     * first replica, but the second still goes elsewhere. */
    assert_string_equal(place(s, "api", 1000, GIB), "node-a");
    assert_string_equal(place(s, "api", 1000, GIB), "node-b");
    ink_sched_free(s);
}

static void test_binpack_when_apps_differ(void **state)
{
    (void)state;
    ink_sched *s = three_nodes();
    /* Distinct apps pile onto the fullest node until it is full... */
    for (int i = 0; i < 4; i++) {
        char app[16];
        snprintf(app, sizeof app, "app-%d", i);
        assert_string_equal(place(s, app, 1000, GIB), "node-a");
    }
    /* ...then the next one starts filling. */
    assert_string_equal(place(s, "app-4", 1000, GIB), "node-b");
    /* A small one still fits on node-a by memory only if it asks for no
     * CPU: node-a has 0 CPU and 4 GiB free. */
    assert_string_equal(place(s, "app-5", 0, GIB), "node-a");
    ink_sched_free(s);

    /* The score is utilisation after placing, relative to each node: a
     * replica that fills a small node beats one that barely dents a big
     * one, and memory counts as much as CPU. */
    const ink_sched_node nodes[] = {
        {"big", true, 16000, 64 * GIB},
        {"small", true, 1000, 4 * GIB},
        {"memory", true, 16000, 64 * GIB},
    };
    s = ink_sched_new(nodes, 3);
    assert_non_null(s);
    assert_string_equal(place(s, "a", 1000, GIB), "small"); /* 1.0 vs 1/16 */
    assert_int_equal(ink_sched_add(s, "memory", "hog", 1000, 48 * GIB), 0);
    assert_int_equal(ink_sched_add(s, "big", "cruncher", 8000, 0), 0);
    /* memory: max(2/16, 49/64) = 0.77 beats big: max(9/16, 1/64) = 0.56. */
    assert_string_equal(place(s, "b", 1000, GIB), "memory");
    ink_sched_free(s);
}

static void test_not_ready_skipped(void **state)
{
    (void)state;
    const ink_sched_node nodes[] = {
        {"node-a", false, 64000, 256 * GIB},
        {"node-b", true, 1000, GIB},
        {"node-c", false, 64000, 256 * GIB},
    };
    ink_sched *s = ink_sched_new(nodes, 3);
    assert_non_null(s);
    assert_string_equal(place(s, "web", 500, 256 * MIB), "node-b");
    /* Sharing node-b beats the empty, not ready nodes. */
    assert_string_equal(place(s, "web", 500, 256 * MIB), "node-b");
    ink_err err = {0};
    place_fails(s, "web", 500, 256 * MIB, NULL, 0, &err);
    assert_non_null(strstr(err.msg, "3 nodes, 2 not ready"));
    ink_sched_free(s);

    const ink_sched_node down[] = {
        {"node-a", false, 64000, 256 * GIB},
        {"node-b", false, 64000, 256 * GIB},
    };
    s = ink_sched_new(down, 2);
    assert_non_null(s);
    place_fails(s, "web", 0, 0, NULL, 0, &err);
    assert_string_equal(err.msg, "no ready nodes (2 nodes, none ready)");
    ink_sched_free(s);

    s = ink_sched_new(NULL, 0);
    assert_non_null(s);
    place_fails(s, "web", 0, 0, NULL, 0, &err);
    assert_string_equal(err.msg, "no ready nodes (the scheduler knows no nodes)");
    assert_int_equal(ink_sched_add(s, "node-a", "web", 1, 1), -1);
    ink_sched_free(s);
}

static void test_avoid_honoured(void **state)
{
    (void)state;
    ink_sched *s = three_nodes();
    ink_err err = {0};
    const char *id = NULL;
    const char *avoid_a[] = {"node-a"};
    assert_int_equal(ink_sched_place(s, "web", 100, MIB, avoid_a, 1, &id, &err), 0);
    assert_string_equal(id, "node-b");
    /* Unknown ids are ignored; the marks do not outlive the call. */
    const char *avoid_bz[] = {"no-such-node", "node-b"};
    assert_int_equal(ink_sched_place(s, "api", 100, MIB, avoid_bz, 2, &id, &err), 0);
    assert_string_equal(id, "node-a");
    assert_int_equal(ink_sched_place(s, "api", 100, MIB, NULL, 0, &id, &err), 0);
    assert_string_equal(id, "node-b"); /* spread: node-a has one already */

    const char *avoid_all[] = {"node-c", "node-b", "node-a"};
    place_fails(s, "web", 100, MIB, avoid_all, 3, &err);
    assert_string_equal(err.msg, "every ready node is in the avoid list (3 nodes: 3 ready and "
                                 "avoided, 0 not ready)");
    /* Avoiding wins over spread: the only other node already has one. */
    const char *avoid_ac[] = {"node-a", "node-c"};
    assert_int_equal(ink_sched_place(s, "web", 100, MIB, avoid_ac, 2, &id, &err), 0);
    assert_string_equal(id, "node-b");
    ink_sched_free(s);
}

static void test_does_not_fit_message(void **state)
{
    (void)state;
    const ink_sched_node nodes[] = {
        {"node-a", true, 4000, GIB},
        {"node-b", true, 2000, 512 * MIB},
        {"node-c", false, 8000, 8 * GIB},
    };
    ink_sched *s = ink_sched_new(nodes, 3);
    assert_non_null(s);
    assert_int_equal(ink_sched_add(s, "node-a", "other", 2500, 724 * MIB), 0);
    assert_int_equal(ink_sched_add(s, "node-b", "other", 1500, 412 * MIB), 0);

    ink_err err = {0};
    place_fails(s, "web", 2000, 512 * MIB, NULL, 0, &err);
    assert_string_equal(err.msg, "no ready node has 2 CPU and 512 MiB free (most free: node-a "
                                 "with 1.5 CPU and 300 MiB; 3 nodes, 1 not ready)");
    const char *avoid[] = {"node-a"};
    place_fails(s, "web", 2000, 512 * MIB, avoid, 1, &err);
    assert_string_equal(err.msg, "no ready node has 2 CPU and 512 MiB free (most free: node-b "
                                 "with 0.5 CPU and 100 MiB; 3 nodes, 1 not ready, 1 avoided)");
    /* Requests round up and free room rounds down, so the one never reads
     * as fitting in the other. */
    place_fails(s, "web", 1501, 300 * MIB + 1, NULL, 0, &err);
    assert_string_equal(err.msg, "no ready node has 1.501 CPU and 300.01 MiB free (most free: "
                                 "node-a with 1.5 CPU and 300 MiB; 3 nodes, 1 not ready)");
    assert_int_equal(ink_sched_add(s, "node-a", "other", 0, 1), 0);
    place_fails(s, "web", 1500, 300 * MIB, NULL, 0, &err);
    assert_string_equal(err.msg, "no ready node has 1.5 CPU and 300 MiB free (most free: node-a "
                                 "with 1.5 CPU and 299.99 MiB; 3 nodes, 1 not ready)");

    /* Larger than any ready node even when empty: say so, and how large
     * the largest is, so that the request gets smaller instead of waiting
     * for room that will never come. */
    place_fails(s, "web", 16000, GIB, NULL, 0, &err);
    assert_string_equal(err.msg, "no ready node is large enough for 16 CPU and 1 GiB (largest: "
                                 "node-a with 4 CPU and 1 GiB allocatable; 3 nodes, 1 not ready)");

    /* Failures record nothing: exactly what is left still fits. */
    assert_string_equal(place(s, "web", 1500, 300 * MIB - 1), "node-a");
    assert_string_equal(place(s, "web", 500, 100 * MIB), "node-b");
    place_fails(s, "web", 0, 1, NULL, 0, &err);
    assert_string_equal(err.msg, "no ready node has 0 CPU and 1 B free (most free: node-a with 0 "
                                 "CPU and 0 B; 3 nodes, 1 not ready)");
    ink_sched_free(s);
}

static void test_add_counts(void **state)
{
    (void)state;
    ink_sched *s = three_nodes();
    /* Replicas already running count for spread... */
    assert_int_equal(ink_sched_add(s, "node-a", "web", 100, MIB), 0);
    assert_int_equal(ink_sched_add(s, "node-b", "web", 100, MIB), 0);
    assert_string_equal(place(s, "web", 100, MIB), "node-c");
    /* ...and for usage: node-b is the fullest for another app. */
    assert_int_equal(ink_sched_add(s, "node-b", "db", 2000, 2 * GIB), 0);
    assert_string_equal(place(s, "cache", 100, MIB), "node-b");
    /* Until it is full: an add may over-commit a node (that is what runs),
     * which then takes nothing more. */
    assert_int_equal(ink_sched_add(s, "node-b", "db", 4000, 0), 0);
    assert_string_equal(place(s, "cache2", 0, 0), "node-a");
    ink_err err = {0};
    const char *avoid[] = {"node-a", "node-c"};
    place_fails(s, "x", 0, 0, avoid, 2, &err);
    assert_non_null(strstr(err.msg, "most free: node-b with 0 CPU and "));

    assert_int_equal(ink_sched_add(s, "node-z", "web", 100, MIB), -1);
    assert_int_equal(ink_sched_add(s, NULL, "web", 100, MIB), -1);
    assert_int_equal(ink_sched_add(s, "node-a", NULL, 100, MIB), -1);
    /* Saturates instead of wrapping around to a small usage. */
    assert_int_equal(ink_sched_add(s, "node-c", "huge", UINT32_MAX, UINT64_MAX), 0);
    assert_int_equal(ink_sched_add(s, "node-c", "huge", UINT32_MAX, UINT64_MAX), 0);
    const char *avoid_ab[] = {"node-a", "node-b"};
    place_fails(s, "x", 0, 1, avoid_ab, 2, &err);
    ink_sched_free(s);
}

static void test_new_rejects_bad_nodes(void **state)
{
    (void)state;
    const ink_sched_node dup[] = {{"a", true, 1, 1}, {"b", true, 1, 1}, {"a", false, 2, 2}};
    assert_null(ink_sched_new(dup, 3));
    const ink_sched_node null_id[] = {{"a", true, 1, 1}, {NULL, true, 1, 1}};
    assert_null(ink_sched_new(null_id, 2));
    assert_null(ink_sched_new(NULL, 1));
    ink_sched_free(NULL);

    /* Everything is copied: the caller's strings may go away. */
    char id[] = "node-x";
    ink_sched_node one = {id, true, 1000, GIB};
    ink_sched *s = ink_sched_new(&one, 1);
    assert_non_null(s);
    memset(id, 0, sizeof id);
    one.cpu_millis = 0;
    assert_string_equal(place(s, "web", 1000, GIB), "node-x");
    ink_err err = {0};
    assert_int_equal(ink_sched_place(s, NULL, 0, 0, NULL, 0, &(const char *){NULL}, &err), -1);
    ink_sched_free(s);
}

static void test_determinism(void **state)
{
    (void)state;
    /* The same nodes in two orders, the same calls: the same answers. */
    enum { N = 12 };
    ink_sched_node fwd[N], rev[N];
    char ids[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "n-%02d", (i * 7) % N);
        fwd[i] = (ink_sched_node){ids[i], i % 5 != 4, 4000, 16 * GIB};
    }
    for (int i = 0; i < N; i++)
        rev[i] = fwd[N - 1 - i];
    ink_sched *a = ink_sched_new(fwd, N), *b = ink_sched_new(rev, N);
    assert_non_null(a);
    assert_non_null(b);
    for (int i = 0; i < 400; i++) {
        char app[16];
        snprintf(app, sizeof app, "app-%d", i % 37);
        uint32_t cpu = (uint32_t)(100 * (1 + i % 5));
        uint64_t mem = (uint64_t)(1 + i % 3) * 256 * MIB;
        const char *ia = NULL, *ib = NULL;
        ink_err ea = {0}, eb = {0};
        int ra = ink_sched_place(a, app, cpu, mem, NULL, 0, &ia, &ea);
        int rb = ink_sched_place(b, app, cpu, mem, NULL, 0, &ib, &eb);
        assert_int_equal(ra, rb);
        if (ra == 0)
            assert_string_equal(ia, ib);
        else
            assert_string_equal(ea.msg, eb.msg);
    }
    ink_sched_free(a);
    ink_sched_free(b);
}

/* Many apps: the app table grows many times and still finds every app. */
static void test_many_apps(void **state)
{
    (void)state;
    const ink_sched_node nodes[] = {
        {"n1", true, 1000000, 1024 * GIB},
        {"n2", true, 1000000, 1024 * GIB},
    };
    ink_sched *s = ink_sched_new(nodes, 2);
    assert_non_null(s);
    enum { APPS = 5000 };
    char first[APPS];
    for (int i = 0; i < APPS; i++) {
        char app[24];
        snprintf(app, sizeof app, "app-%d", i);
        first[i] = place(s, app, 1, 1)[1];
    }
    for (int i = 0; i < APPS; i++) {
        char app[24];
        snprintf(app, sizeof app, "app-%d", i);
        assert_int_not_equal(place(s, app, 1, 1)[1], first[i]);
    }
    ink_sched_free(s);
}

/* ---- randomized: the whole policy against a brute-force model ---- */

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* splitmix64: deterministic, so a failure reproduces. */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t pick(const uint64_t *v, size_t n)
{
    return v[rng() % n];
}

/* Many short runs: the cluster fills up within a few hundred placements,
 * after which almost everything is refused. */
enum { RN = 40, RAPPS = 300, RUNS = 40, ROUNDS = 400 };

typedef struct model {
    char id[16];
    bool ready;
    uint64_t cpu_alloc, mem_alloc, cpu_used, mem_used;
    uint32_t count[RAPPS];
} model;

static bool model_fits(const model *m, uint64_t cpu, uint64_t mem)
{
    return m->cpu_used + cpu <= m->cpu_alloc && m->mem_used + mem <= m->mem_alloc;
}

static double model_score(const model *m, uint64_t cpu, uint64_t mem)
{
    double c = m->cpu_alloc ? (double)(m->cpu_used + cpu) / (double)m->cpu_alloc : 0.0;
    double g = m->mem_alloc ? (double)(m->mem_used + mem) / (double)m->mem_alloc : 0.0;
    return c > g ? c : g;
}

static void test_randomized_policy(void **state)
{
    (void)state;
    static const uint64_t cpus[] = {0, 1000, 2000, 4000, 8000, 8000, 16000};
    static const uint64_t mems[] = {0, GIB, 4 * GIB, 8 * GIB, 16 * GIB, 32 * GIB};
    /* Odd sizes too, so that nodes get filled to the last unit. */
    static const uint64_t req_cpus[] = {0, 1, 50, 100, 250, 333, 500, 1000, 2000, 3000};
    static const uint64_t req_mems[] = {0,         1,         64 * MIB, 100 * MIB + 1,
                                        256 * MIB, 512 * MIB, GIB,      3 * GIB};
    int placed = 0, refused = 0;
    for (uint64_t seed = 1; seed <= RUNS; seed++) {
        rng_state = seed;
        static model m[RN];
        memset(m, 0, sizeof m);
        ink_sched_node nodes[RN];
        for (int i = 0; i < RN; i++) {
            snprintf(m[i].id, sizeof m[i].id, "n%02d", i);
            m[i].ready = rng() % 8 != 0;
            m[i].cpu_alloc = pick(cpus, INK_ARRAY_LEN(cpus));
            m[i].mem_alloc = pick(mems, INK_ARRAY_LEN(mems));
        }
        /* Handed over shuffled: ties must still go to the smallest id. */
        int order[RN];
        for (int i = 0; i < RN; i++)
            order[i] = i;
        for (int i = RN - 1; i > 0; i--) {
            int j = (int)(rng() % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (int i = 0; i < RN; i++) {
            const model *x = &m[order[i]];
            nodes[i] = (ink_sched_node){x->id, x->ready, (uint32_t)x->cpu_alloc, x->mem_alloc};
        }
        ink_sched *s = ink_sched_new(nodes, RN);
        assert_non_null(s);

        for (int round = 0; round < ROUNDS; round++) {
            /* Few apps early, so replicas pile up and spread matters. */
            int ai = (int)(rng() % (uint64_t)(round < ROUNDS / 2 ? 10 : RAPPS));
            char app[16];
            snprintf(app, sizeof app, "app-%d", ai);
            uint64_t cpu = pick(req_cpus, INK_ARRAY_LEN(req_cpus));
            uint64_t mem = pick(req_mems, INK_ARRAY_LEN(req_mems));

            if (rng() % 10 == 0) {
                /* A replica recorded as already running (kept within
                 * capacity, so that "never over capacity" stays checkable). */
                int ni = (int)(rng() % RN);
                if (model_fits(&m[ni], cpu, mem)) {
                    assert_int_equal(ink_sched_add(s, m[ni].id, app, (uint32_t)cpu, mem), 0);
                    m[ni].cpu_used += cpu;
                    m[ni].mem_used += mem;
                    m[ni].count[ai]++;
                }
                continue;
            }

            bool avoided[RN] = {false};
            const char *avoid[4];
            size_t navoid = (size_t)(rng() % 4);
            for (size_t k = 0; k < navoid; k++) {
                uint64_t r = rng() % (RN + 2);
                if (r >= RN) {
                    avoid[k] = "unknown-node";
                } else {
                    avoid[k] = m[r].id;
                    avoided[r] = true;
                }
            }

            const char *got = NULL;
            ink_err err = {0};
            int rc = ink_sched_place(s, app, (uint32_t)cpu, mem, navoid ? avoid : NULL, navoid,
                                     &got, &err);

            int fewest = -1; /* the fewest replicas of app on any candidate */
            for (int i = 0; i < RN; i++) {
                if (m[i].ready && !avoided[i] && model_fits(&m[i], cpu, mem) &&
                    (fewest < 0 || (int)m[i].count[ai] < fewest))
                    fewest = (int)m[i].count[ai];
            }
            if (rc != 0) {
                assert_int_equal(rc, -1);
                assert_int_equal(fewest, -1); /* refused only when nothing fits */
                assert_true(strlen(err.msg) > 0);
                refused++;
                continue;
            }
            placed++;
            int c = (int)(strtol(got + 1, NULL, 10));
            assert_string_equal(got, m[c].id);
            assert_true(m[c].ready);
            assert_false(avoided[c]);
            assert_true(model_fits(&m[c], cpu, mem));
            /* Spread never worse than necessary. */
            assert_int_equal(m[c].count[ai], fewest);
            /* Among the least spread, the fullest after placing, then the
             * smallest id. */
            double sc = model_score(&m[c], cpu, mem);
            for (int i = 0; i < RN; i++) {
                if (i == c || !m[i].ready || avoided[i] || !model_fits(&m[i], cpu, mem) ||
                    (int)m[i].count[ai] != fewest)
                    continue;
                double si = model_score(&m[i], cpu, mem);
                assert_true(si < sc || (si == sc && i > c));
            }
            m[c].cpu_used += cpu;
            m[c].mem_used += mem;
            m[c].count[ai]++;
            /* No node over capacity, ever. */
            for (int i = 0; i < RN; i++) {
                assert_true(m[i].cpu_used <= m[i].cpu_alloc);
                assert_true(m[i].mem_used <= m[i].mem_alloc);
            }
        }
        ink_sched_free(s);
    }
    /* Both outcomes were exercised, or the test proves little. */
    print_message("%d placed, %d refused\n", placed, refused);
    assert_true(placed > RUNS * ROUNDS / 4);
    assert_true(refused > RUNS * ROUNDS / 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spread_across_nodes),
        cmocka_unit_test(test_binpack_when_apps_differ),
        cmocka_unit_test(test_not_ready_skipped),
        cmocka_unit_test(test_avoid_honoured),
        cmocka_unit_test(test_does_not_fit_message),
        cmocka_unit_test(test_add_counts),
        cmocka_unit_test(test_new_rejects_bad_nodes),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_many_apps),
        cmocka_unit_test(test_randomized_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
