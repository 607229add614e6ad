/* The app controller: a level-triggered loop that makes replicas match
 * apps. Each pass reads every app, replica, reported status and running
 * operation, and for each app does the next steps:
 *
 *   - a replica slot without a replica of the app's generation gets one,
 *     placed by the scheduler; its assignment is written in the same
 *     transaction as its replicas row, so a crash never leaves one without
 *     the other, and a restart never places it twice;
 *   - an older replica of a slot is removed once the slot's new replica
 *     runs (or at once when the old one does not serve anyway), and only
 *     one slot at a time is in such a transition (a rolling update with a
 *     surge of one);
 *   - slots past the replica count, and every replica of a deleted app,
 *     are removed;
 *   - a replica whose node has been silent past node_lost_ms is replaced
 *     on another node;
 *   - the running operation advances (progress, message) and ends:
 *     succeeded once every slot serves the current generation and the
 *     app's URL answers an HTTP request, failed when a new replica fails
 *     or crash-loops, nothing fits for place_grace_ms, or its deadline
 *     passes.
 *
 * Only the coordinator daemon runs it; other processes (the operator CLI,
 * mcp-stdio) only write apps and read views. */
#ifndef INK_CONTROLLER_H
#define INK_CONTROLLER_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

typedef struct ink_controller_opts {
    int64_t node_timeout_ms;  /* silence after which a node is not ready */
    int64_t node_lost_ms;     /* silence after which its replicas are re-placed */
    int64_t place_grace_ms;   /* how long an operation waits for a node that fits */
    int64_t probe_timeout_ms; /* HTTP check of a new URL */
} ink_controller_opts;

/* One pass. Returns how many changes it wrote (replicas placed or removed,
 * operations ended), or -1 after logging a database error. */
int ink_controller_pass(ink_store *s, const ink_controller_opts *o, int64_t now_ms);

/* 1 when http://host:port/ answers an HTTP request within timeout_ms
 * (any status counts: the app serves), else 0. */
int ink_http_answers(const char *host, uint32_t port, int64_t timeout_ms);

#endif
