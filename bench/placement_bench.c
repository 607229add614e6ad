/* bench/placement: the scheduler (coordinator/scheduler.c) placing 100,000
 * apps of 1-3 replicas on 1,000 nodes, against a naive first-fit loop over
 * a plain node array (no spread, no app bookkeeping) measured in the same
 * process on the same workload. Prints placements/s for both, their ratio,
 * and what each leaves behind: utilisation, empty nodes, and how often
 * replicas of one app share a node.
 *
 *   placement_bench [runs]     (default 3; figures are medians)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"
#include "util.h"

#define NODES 1000
#define APPS 100000
#define NODE_CPU 64000 /* millis */
#define MIB (1024ULL * 1024)
#define GIB (1024 * MIB)
#define NODE_MEM (256 * GIB)

/* Replica shapes, weights summing to 100: mostly small services, a few
 * big ones. Sized so that the cluster ends up mostly full on CPU. */
static const struct shape {
    uint32_t cpu;
    uint64_t mem;
    int weight;
} shapes[] = {
    {100, 256 * MIB, 40}, {250, 512 * MIB, 30}, {250, GIB, 10},     {500, GIB, 10},
    {500, 2 * GIB, 6},    {1000, 2 * GIB, 3},   {2000, 4 * GIB, 1},
};

typedef struct workload {
    char (*keys)[16];
    uint8_t *replicas;
    uint32_t *cpu;
    uint64_t *mem;
    size_t total; /* replicas over every app */
} workload;

static uint64_t rng_state = 42;

static uint64_t rng(void)
{
    /* splitmix64: the same workload on every run and every machine. */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static bool node_ready(size_t i)
{
    return i % 100 != 37; /* 10 of 1,000 not ready */
}

static void make_workload(workload *w)
{
    w->keys = ink_xcalloc(APPS, sizeof *w->keys);
    w->replicas = ink_xcalloc(APPS, sizeof *w->replicas);
    w->cpu = ink_xcalloc(APPS, sizeof *w->cpu);
    w->mem = ink_xcalloc(APPS, sizeof *w->mem);
    w->total = 0;
    for (size_t a = 0; a < APPS; a++) {
        snprintf(w->keys[a], sizeof w->keys[a], "app-%06zu", a);
        w->replicas[a] = (uint8_t)(1 + rng() % 3);
        int r = (int)(rng() % 100);
        size_t k = 0;
        while (r >= shapes[k].weight) {
            r -= shapes[k].weight;
            k++;
        }
        w->cpu[a] = shapes[k].cpu;
        w->mem[a] = shapes[k].mem;
        w->total += w->replicas[a];
    }
}

/* Where each replica went (node index, -1 when refused), in placement
 * order, and how long placing them all took. */
typedef struct result {
    int32_t *where;
    double seconds;
    size_t refused;
} result;

static void run_sched(const workload *w, result *r)
{
    ink_sched_node nodes[NODES];
    char ids[NODES][16];
    for (size_t i = 0; i < NODES; i++) {
        snprintf(ids[i], sizeof ids[i], "node-%04zu", i);
        nodes[i] = (ink_sched_node){ids[i], node_ready(i), NODE_CPU, NODE_MEM};
    }
    ink_sched *s = ink_sched_new(nodes, NODES);
    if (!s) {
        fprintf(stderr, "ink_sched_new failed\n");
        exit(1);
    }
    const char **got = ink_xcalloc(w->total, sizeof *got);
    ink_err err = {0};
    size_t n = 0;
    int64_t t0 = ink_mono_ns();
    for (size_t a = 0; a < APPS; a++) {
        for (int k = 0; k < w->replicas[a]; k++, n++) {
            if (ink_sched_place(s, w->keys[a], w->cpu[a], w->mem[a], NULL, 0, &got[n], &err) < 0)
                got[n] = NULL;
        }
    }
    r->seconds = (double)(ink_mono_ns() - t0) / 1e9;
    /* Node ids back to indexes outside the timed loop. */
    r->refused = 0;
    for (size_t i = 0; i < n; i++) {
        r->where[i] = got[i] ? (int32_t)atoi(got[i] + 5) : -1;
        r->refused += !got[i];
    }
    free(got);
    ink_sched_free(s);
}

static void run_first_fit(const workload *w, result *r)
{
    struct {
        bool ready;
        uint32_t cpu_alloc, cpu_used;
        uint64_t mem_alloc, mem_used;
    } nodes[NODES];
    for (size_t i = 0; i < NODES; i++) {
        nodes[i].ready = node_ready(i);
        nodes[i].cpu_alloc = NODE_CPU;
        nodes[i].mem_alloc = NODE_MEM;
        nodes[i].cpu_used = 0;
        nodes[i].mem_used = 0;
    }
    size_t n = 0;
    r->refused = 0;
    int64_t t0 = ink_mono_ns();
    for (size_t a = 0; a < APPS; a++) {
        for (int k = 0; k < w->replicas[a]; k++, n++) {
            int32_t at = -1;
            for (size_t i = 0; i < NODES; i++) {
                if (nodes[i].ready && nodes[i].cpu_used + w->cpu[a] <= nodes[i].cpu_alloc &&
                    nodes[i].mem_used + w->mem[a] <= nodes[i].mem_alloc) {
                    nodes[i].cpu_used += w->cpu[a];
                    nodes[i].mem_used += w->mem[a];
                    at = (int32_t)i;
                    break;
                }
            }
            r->where[n] = at;
            r->refused += at < 0;
        }
    }
    r->seconds = (double)(ink_mono_ns() - t0) / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* What a placement left behind, recomputed from where every replica went. */
static void report_outcome(const char *name, const workload *w, const result *r)
{
    static uint64_t cpu[NODES], mem[NODES];
    static uint32_t seen[NODES]; /* replicas of the current app, per node */
    memset(cpu, 0, sizeof cpu);
    memset(mem, 0, sizeof mem);
    memset(seen, 0, sizeof seen);
    size_t n = 0, multi = 0, shared = 0;
    uint32_t max_per_node = 0;
    for (size_t a = 0; a < APPS; a++) {
        uint32_t app_max = 0;
        for (int k = 0; k < w->replicas[a]; k++) {
            int32_t at = r->where[n + (size_t)k];
            if (at < 0)
                continue;
            cpu[at] += w->cpu[a];
            mem[at] += w->mem[a];
            if (++seen[at] > app_max)
                app_max = seen[at];
        }
        for (int k = 0; k < w->replicas[a]; k++) {
            int32_t at = r->where[n + (size_t)k];
            if (at >= 0)
                seen[at] = 0;
        }
        n += w->replicas[a];
        if (w->replicas[a] > 1) {
            multi++;
            shared += app_max > 1;
        }
        if (app_max > max_per_node)
            max_per_node = app_max;
    }
    uint64_t cpu_sum = 0, mem_sum = 0, cpu_alloc = 0, mem_alloc = 0;
    size_t empty = 0, over = 0;
    for (size_t i = 0; i < NODES; i++) {
        if (!node_ready(i)) {
            if (cpu[i] || mem[i])
                over++; /* placed on a node that is not ready: a bug */
            continue;
        }
        cpu_sum += cpu[i];
        mem_sum += mem[i];
        cpu_alloc += NODE_CPU;
        mem_alloc += NODE_MEM;
        empty += !cpu[i] && !mem[i];
        over += cpu[i] > NODE_CPU || mem[i] > NODE_MEM;
    }
    printf("  %-11s utilisation cpu %5.1f%%  memory %5.1f%%   empty nodes %4zu   refused %zu"
           "   nodes over capacity or not ready %zu\n",
           name, 100.0 * (double)cpu_sum / (double)cpu_alloc,
           100.0 * (double)mem_sum / (double)mem_alloc, empty, r->refused, over);
    printf("  %-11s apps with 2+ replicas on one node: %zu of %zu multi-replica apps;"
           " most replicas of one app on one node: %u\n",
           name, shared, multi, max_per_node);
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 3;
    if (runs < 1 || runs > 100) {
        fprintf(stderr, "usage: placement_bench [runs 1-100]\n");
        return 2;
    }
    workload w;
    make_workload(&w);
    result sched = {.where = ink_xcalloc(w.total, sizeof(int32_t))};
    result ff = {.where = ink_xcalloc(w.total, sizeof(int32_t))};
    double *sched_rate = ink_xcalloc((size_t)runs, sizeof(double));
    double *ff_rate = ink_xcalloc((size_t)runs, sizeof(double));
    /* Alternated, so that a noisy neighbour on a shared machine hurts both. */
    for (int i = 0; i < runs; i++) {
        run_sched(&w, &sched);
        sched_rate[i] = (double)w.total / sched.seconds;
        run_first_fit(&w, &ff);
        ff_rate[i] = (double)w.total / ff.seconds;
    }
    double sr = median(sched_rate, runs), fr = median(ff_rate, runs);

    printf("bench/placement: %d nodes (%d CPU, %llu GiB each, %d not ready), %d apps, %zu "
           "replicas (1-3 per app, %zu shapes); median of %d run%s\n",
           NODES, NODE_CPU / 1000, (unsigned long long)(NODE_MEM / GIB), NODES / 100, APPS, w.total,
           INK_ARRAY_LEN(shapes), runs, runs == 1 ? "" : "s");
    printf("  ink_sched_place  %10.0f placements/s  (%6.2f us each)\n", sr, 1e6 / sr);
    printf("  first-fit loop   %10.0f placements/s  (%6.2f us each; no spread, no bookkeeping)\n",
           fr, 1e6 / fr);
    printf("  ratio scheduler/first-fit %.2f   target > 20000 placements/s: %s\n", sr / fr,
           sr > 20000 ? "met" : "MISSED");
    report_outcome("scheduler", &w, &sched);
    report_outcome("first-fit", &w, &ff);

    free(sched_rate);
    free(ff_rate);
    free(sched.where);
    free(ff.where);
    free(w.keys);
    free(w.replicas);
    free(w.cpu);
    free(w.mem);
    return sr > 20000 ? 0 : 1;
}
