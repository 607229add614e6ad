#include "scheduler.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* Nodes are kept sorted by id: index order is id order, so "smallest id
 * wins a tie" is "first index wins", and ids are found by binary search. */
typedef struct node {
    uint64_t cpu_used; /* millis; 64 bits: ink_sched_add may over-commit */
    uint64_t mem_used;
    uint64_t mem_alloc;
    uint32_t cpu_alloc;
    bool ready;
    char *id;
} node;

/* Where one app's replicas are: one entry per node holding any. Apps have
 * a handful of replicas, so a short array beats anything per node. */
typedef struct app_node {
    uint32_t node;
    uint32_t count;
} app_node;

typedef struct app {
    char *key; /* NULL: empty slot */
    uint64_t hash;
    app_node *on;
    uint32_t n_on, cap_on;
} app;

struct ink_sched {
    node *nodes;
    size_t n;
    /* Scratch for one placement, all zero between calls: the app's replica
     * count per node and the avoid marks, set from the (short) app list and
     * avoid list before the scan and cleared after it, so the scan over
     * every node reads arrays instead of looking anything up. */
    uint32_t *spread;
    uint8_t *avoided;
    /* Apps by key: open addressing, linear probing, power-of-two size, at
     * most half full. Apps are never removed, so there are no tombstones. */
    app *apps;
    size_t apps_cap, apps_len;
};

#define APPS_INITIAL_CAP 64

/* --------------------------------------------------------------- nodes */

static int cmp_node_id(const void *a, const void *b)
{
    return strcmp(((const node *)a)->id, ((const node *)b)->id);
}

/* Index of the node with this id, or -1. */
static ptrdiff_t node_index(const ink_sched *s, const char *id)
{
    if (!id)
        return -1;
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(id, s->nodes[mid].id);
        if (c == 0)
            return (ptrdiff_t)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t free_of(uint64_t alloc, uint64_t used)
{
    return used < alloc ? alloc - used : 0;
}

/* used + req <= alloc, without overflowing. */
static bool fits_in(uint64_t alloc, uint64_t used, uint64_t req)
{
    return req <= alloc && used <= alloc - req;
}

static bool fits(const node *nd, uint32_t cpu, uint64_t mem)
{
    return fits_in(nd->cpu_alloc, nd->cpu_used, cpu) && fits_in(nd->mem_alloc, nd->mem_used, mem);
}

/* Utilisation after placing, max of the two fractions. Only called when
 * the replica fits, so alloc == 0 implies used + req == 0: an unused
 * dimension counts as empty. IEEE division is correctly rounded, so equal
 * fractions give equal doubles and ties fall through to the id. */
static double score_after(const node *nd, uint32_t cpu, uint64_t mem)
{
    double c = nd->cpu_alloc ? (double)(nd->cpu_used + cpu) / (double)nd->cpu_alloc : 0.0;
    double m = nd->mem_alloc ? (double)(nd->mem_used + mem) / (double)nd->mem_alloc : 0.0;
    return c > m ? c : m;
}

/* ---------------------------------------------------------------- apps */

/* FNV-1a, then a 64-bit finaliser so that the low bits the table indexes
 * by depend on every byte. App keys are names the coordinator has already
 * validated and their number is bounded by its store, so a keyed hash
 * against chosen collisions would buy little: the worst case is a slower
 * lookup, never a different placement. */
static uint64_t hash_key(const char *key)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* The slot holding key, or the empty slot where it would go. */
static app *app_slot(app *apps, size_t cap, const char *key, uint64_t hash)
{
    size_t mask = cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        app *a = &apps[i];
        if (!a->key || (a->hash == hash && strcmp(a->key, key) == 0))
            return a;
    }
}

static app *app_find(const ink_sched *s, const char *key, uint64_t hash)
{
    app *a = app_slot(s->apps, s->apps_cap, key, hash);
    return a->key ? a : NULL;
}

static void apps_grow(ink_sched *s)
{
    size_t cap = s->apps_cap * 2;
    app *apps = ink_xcalloc(cap, sizeof *apps);
    for (size_t i = 0; i < s->apps_cap; i++) {
        if (s->apps[i].key)
            *app_slot(apps, cap, s->apps[i].key, s->apps[i].hash) = s->apps[i];
    }
    free(s->apps);
    s->apps = apps;
    s->apps_cap = cap;
}

static app *app_get(ink_sched *s, const char *key, uint64_t hash)
{
    app *a = app_slot(s->apps, s->apps_cap, key, hash);
    if (a->key)
        return a;
    if (2 * (s->apps_len + 1) > s->apps_cap) {
        apps_grow(s);
        a = app_slot(s->apps, s->apps_cap, key, hash);
    }
    *a = (app){.key = ink_xstrdup(key), .hash = hash};
    s->apps_len++;
    return a;
}

static void app_count_on(app *a, uint32_t node_idx)
{
    for (uint32_t i = 0; i < a->n_on; i++) {
        if (a->on[i].node == node_idx) {
            if (a->on[i].count < UINT32_MAX)
                a->on[i].count++;
            return;
        }
    }
    if (a->n_on == a->cap_on) {
        a->cap_on = a->cap_on ? 2 * a->cap_on : 2;
        app_node *on = realloc(a->on, a->cap_on * sizeof *on);
        if (!on)
            abort(); /* as ink_xmalloc: nothing sensible to do without memory */
        a->on = on;
    }
    a->on[a->n_on++] = (app_node){.node = node_idx, .count = 1};
}

static void record(ink_sched *s, size_t idx, const char *app_key, uint64_t hash, uint32_t cpu,
                   uint64_t mem)
{
    node *nd = &s->nodes[idx];
    nd->cpu_used = sat_add(nd->cpu_used, cpu);
    nd->mem_used = sat_add(nd->mem_used, mem);
    app_count_on(app_get(s, app_key, hash), (uint32_t)idx);
}

/* ----------------------------------------------------------- lifecycle */

ink_sched *ink_sched_new(const ink_sched_node *nodes, size_t n)
{
    if (n && !nodes)
        return NULL;
    /* Node indexes are stored in 32 bits in the per-app lists. */
    if (n > UINT32_MAX)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!nodes[i].id)
            return NULL;
    }
    ink_sched *s = ink_xcalloc(1, sizeof *s);
    s->n = n;
    s->nodes = ink_xcalloc(n ? n : 1, sizeof *s->nodes);
    for (size_t i = 0; i < n; i++) {
        s->nodes[i] = (node){.id = ink_xstrdup(nodes[i].id),
                             .ready = nodes[i].ready,
                             .cpu_alloc = nodes[i].cpu_millis,
                             .mem_alloc = nodes[i].memory_bytes};
    }
    qsort(s->nodes, n, sizeof *s->nodes, cmp_node_id);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(s->nodes[i - 1].id, s->nodes[i].id) == 0) {
            ink_sched_free(s);
            return NULL;
        }
    }
    s->spread = ink_xcalloc(n ? n : 1, sizeof *s->spread);
    s->avoided = ink_xcalloc(n ? n : 1, sizeof *s->avoided);
    s->apps_cap = APPS_INITIAL_CAP;
    s->apps = ink_xcalloc(s->apps_cap, sizeof *s->apps);
    return s;
}

void ink_sched_free(ink_sched *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->nodes[i].id);
    for (size_t i = 0; s->apps && i < s->apps_cap; i++) {
        free(s->apps[i].key);
        free(s->apps[i].on);
    }
    free(s->nodes);
    free(s->spread);
    free(s->avoided);
    free(s->apps);
    free(s);
}

int ink_sched_add(ink_sched *s, const char *node_id, const char *app_key, uint32_t cpu_millis,
                  uint64_t memory_bytes)
{
    ptrdiff_t idx = node_index(s, node_id);
    if (idx < 0 || !app_key)
        return -1;
    record(s, (size_t)idx, app_key, hash_key(app_key), cpu_millis, memory_bytes);
    return 0;
}

/* ------------------------------------------------------------ messages */

/* Millis as CPUs: 2000 -> "2", 1500 -> "1.5", 250 -> "0.25". Exact. */
static const char *fmt_cpu(char buf[32], uint64_t millis)
{
    uint64_t whole = millis / 1000, frac = millis % 1000;
    if (!frac) {
        snprintf(buf, 32, "%llu", (unsigned long long)whole);
        return buf;
    }
    int digits = 3;
    while (frac % 10 == 0) {
        frac /= 10;
        digits--;
    }
    snprintf(buf, 32, "%llu.%0*llu", (unsigned long long)whole, digits, (unsigned long long)frac);
    return buf;
}

/* Bytes in the largest binary unit they fill, to two decimals at most:
 * 314572800 -> "300 MiB", 1610612736 -> "1.5 GiB". Requests round up and
 * free room rounds down, so that a request that did not fit never reads as
 * smaller than the room it did not fit in. */
static const char *fmt_bytes(char buf[32], uint64_t bytes, bool round_up)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;
    while (u + 1 < INK_ARRAY_LEN(units) && bytes >> (10 * (u + 1)))
        u++;
    uint64_t unit = 1ULL << (10 * u);
    uint64_t whole = bytes / unit, rem = bytes % unit;
    /* rem < 2^40, so rem * 100 cannot overflow. */
    uint64_t hundredths = rem * 100 / unit;
    if (round_up && rem * 100 % unit) {
        if (++hundredths == 100) {
            whole++;
            hundredths = 0;
        }
    }
    if (!hundredths)
        snprintf(buf, 32, "%llu %s", (unsigned long long)whole, units[u]);
    else if (hundredths % 10 == 0)
        snprintf(buf, 32, "%llu.%llu %s", (unsigned long long)whole,
                 (unsigned long long)(hundredths / 10), units[u]);
    else
        snprintf(buf, 32, "%llu.%02llu %s", (unsigned long long)whole,
                 (unsigned long long)hundredths, units[u]);
    return buf;
}

/* How close a node comes to holding the request: the smaller of free/req
 * over the dimensions asked for (>= 1 would fit). A dimension asked for 0
 * only matters when it is over-committed. */
static double closeness(uint64_t alloc_cpu, uint64_t used_cpu, uint32_t cpu, uint64_t alloc_mem,
                        uint64_t used_mem, uint64_t mem)
{
    double c =
        cpu ? (double)free_of(alloc_cpu, used_cpu) / cpu : (used_cpu <= alloc_cpu ? INFINITY : 0.0);
    double m = mem ? (double)free_of(alloc_mem, used_mem) / (double)mem
                   : (used_mem <= alloc_mem ? INFINITY : 0.0);
    return c < m ? c : m;
}

/* Why no node was chosen, with the figures an agent needs to decide what
 * to do: wait for nodes, stop avoiding some, ask for less, or free room.
 * Reads the avoid marks, so runs before they are cleared. */
static int explain_no_fit(const ink_sched *s, uint32_t cpu, uint64_t mem, ink_err *err)
{
    size_t not_ready = 0, avoided = 0;
    ptrdiff_t most_free = -1, largest = -1;
    double most_free_c = -1, largest_c = -1;
    for (size_t i = 0; i < s->n; i++) {
        const node *nd = &s->nodes[i];
        if (!nd->ready) {
            not_ready++;
            continue;
        }
        if (s->avoided[i]) {
            avoided++;
            continue;
        }
        double f = closeness(nd->cpu_alloc, nd->cpu_used, cpu, nd->mem_alloc, nd->mem_used, mem);
        if (f > most_free_c) {
            most_free = (ptrdiff_t)i;
            most_free_c = f;
        }
        double l = closeness(nd->cpu_alloc, 0, cpu, nd->mem_alloc, 0, mem);
        if (l > largest_c) {
            largest = (ptrdiff_t)i;
            largest_c = l;
        }
    }
    if (s->n == 0)
        return ink_err_set(err, 0, "no ready nodes (the scheduler knows no nodes)");
    if (not_ready == s->n)
        return ink_err_set(err, 0, "no ready nodes (%zu node%s, none ready)", s->n,
                           s->n == 1 ? "" : "s");
    if (most_free < 0)
        return ink_err_set(err, 0,
                           "every ready node is in the avoid list (%zu node%s: %zu ready and "
                           "avoided, %zu not ready)",
                           s->n, s->n == 1 ? "" : "s", avoided, not_ready);

    char want_cpu[32], want_mem[32], has_cpu[32], has_mem[32], others[96];
    size_t len = (size_t)snprintf(others, sizeof others, "%zu node%s, %zu not ready", s->n,
                                  s->n == 1 ? "" : "s", not_ready);
    if (avoided)
        snprintf(others + len, sizeof others - len, ", %zu avoided", avoided);
    fmt_cpu(want_cpu, cpu);
    fmt_bytes(want_mem, mem, true);
    if (largest_c < 1.0) {
        /* Even empty, no candidate could hold it: waiting will not help. */
        const node *nd = &s->nodes[largest];
        return ink_err_set(err, 0,
                           "no ready node is large enough for %s CPU and %s (largest: %s with %s "
                           "CPU and %s allocatable; %s)",
                           want_cpu, want_mem, nd->id, fmt_cpu(has_cpu, nd->cpu_alloc),
                           fmt_bytes(has_mem, nd->mem_alloc, false), others);
    }
    const node *nd = &s->nodes[most_free];
    return ink_err_set(err, 0,
                       "no ready node has %s CPU and %s free (most free: %s with %s CPU and "
                       "%s; %s)",
                       want_cpu, want_mem, nd->id,
                       fmt_cpu(has_cpu, free_of(nd->cpu_alloc, nd->cpu_used)),
                       fmt_bytes(has_mem, free_of(nd->mem_alloc, nd->mem_used), false), others);
}

/* ----------------------------------------------------------- placement */

int ink_sched_place(ink_sched *s, const char *app_key, uint32_t cpu_millis, uint64_t memory_bytes,
                    const char *const *avoid, size_t navoid, const char **node_id, ink_err *err)
{
    if (!app_key)
        return ink_err_set(err, 0, "no app key given");
    if (navoid && !avoid)
        return ink_err_set(err, 0, "avoid list missing (%zu ids announced)", navoid);

    uint64_t hash = hash_key(app_key);
    const app *a = app_find(s, app_key, hash);
    for (uint32_t i = 0; a && i < a->n_on; i++)
        s->spread[a->on[i].node] = a->on[i].count;
    for (size_t i = 0; i < navoid; i++) {
        ptrdiff_t idx = node_index(s, avoid[i]);
        if (idx >= 0)
            s->avoided[idx] = 1;
    }

    ptrdiff_t best = -1;
    uint32_t best_count = UINT32_MAX;
    double best_score = 0;
    for (size_t i = 0; i < s->n; i++) {
        const node *nd = &s->nodes[i];
        if (!nd->ready || s->avoided[i] || !fits(nd, cpu_millis, memory_bytes))
            continue;
        uint32_t count = s->spread[i];
        if (count > best_count)
            continue;
        double score = score_after(nd, cpu_millis, memory_bytes);
        /* Strictly better only: on a tie the earlier, smaller id stays. */
        if (count < best_count || score > best_score) {
            best = (ptrdiff_t)i;
            best_count = count;
            best_score = score;
        }
    }

    int rc = 0;
    if (best < 0)
        rc = explain_no_fit(s, cpu_millis, memory_bytes, err);
    for (uint32_t i = 0; a && i < a->n_on; i++)
        s->spread[a->on[i].node] = 0;
    for (size_t i = 0; i < navoid; i++) {
        ptrdiff_t idx = node_index(s, avoid[i]);
        if (idx >= 0)
            s->avoided[idx] = 0;
    }
    if (rc < 0)
        return rc;
    /* a may move when the table grows: record() looks the app up again. */
    record(s, (size_t)best, app_key, hash, cpu_millis, memory_bytes);
    *node_id = s->nodes[best].id;
    return 0;
}
