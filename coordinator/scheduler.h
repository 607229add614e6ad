/* Placement of app replicas on nodes: a pure, in-memory model of the
 * cluster's allocatable capacity and of where each app's replicas run. The
 * coordinator loads it from the store (ink_sched_add for every replica
 * already placed) and asks it where the next replica goes; nothing here
 * touches the store, the clock or the network.
 *
 * Policy, among ready nodes not in the avoid list where the replica fits
 * (used + request <= allocatable, CPU and memory both):
 *   1. spread: the fewest replicas of the same app, so that losing one node
 *      takes down as few of an app's replicas as possible;
 *   2. bin-pack: the most utilised node after placement, scored as
 *      max(CPU fraction, memory fraction), so that whole nodes stay free
 *      for large replicas and for draining;
 *   3. the smallest node id (strcmp), so that the same inputs always give
 *      the same answer.
 *
 * Not thread-safe: the caller serialises every call on one ink_sched. */
#ifndef INK_SCHEDULER_H
#define INK_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct ink_sched_node {
    const char *id;        /* copied */
    bool ready;            /* not ready: never chosen */
    uint32_t cpu_millis;   /* allocatable: 1000 = one CPU */
    uint64_t memory_bytes; /* allocatable */
} ink_sched_node;

typedef struct ink_sched ink_sched;

/* A scheduler over nodes[0..n), with nothing placed yet. Copies everything.
 * NULL when an id is NULL or appears twice (n == 0 is allowed: every
 * placement then fails with "no ready nodes"). */
ink_sched *ink_sched_new(const ink_sched_node *nodes, size_t n);
void ink_sched_free(ink_sched *s);

/* Records a replica already placed (so its usage and its app's spread
 * count), whether or not it fits: this is what runs, not a request. 0, or
 * -1 when node_id is unknown or app_key is NULL (nothing recorded). */
int ink_sched_add(ink_sched *s, const char *node_id, const char *app_key, uint32_t cpu_millis,
                  uint64_t memory_bytes);

/* Picks a node for one more replica of app_key and records it. avoid: node
 * ids not to use (may be NULL when navoid is 0; unknown ids are ignored).
 * 0 and *node_id (points into s, valid until ink_sched_free), or -1 with
 * err saying why, e.g. "no ready node has 2 CPU and 512 MiB free (most
 * free: node-a with 1.5 CPU and 300 MiB; 3 nodes, 1 not ready)"; nothing
 * is recorded then. */
int ink_sched_place(ink_sched *s, const char *app_key, uint32_t cpu_millis, uint64_t memory_bytes,
                    const char *const *avoid, size_t navoid, const char **node_id, ink_err *err);

#endif
