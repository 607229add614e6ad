/* Restart policy for a workload's sandbox, as a pure state machine so it
 * can be tested without sandboxes and persisted as plain numbers.
 *
 * After an exit the workload is started again after a delay that doubles
 * from 1 s up to 5 min. When it keeps dying (5 exits, each within 10 min of
 * the start before it) it is in crash-loop: still retried, at the long
 * delay, and reported as CRASH_LOOP with the last reason, as Kubernetes'
 * CrashLoopBackOff does. A run that lasts 10 min clears the history. */
#ifndef INK_RESTART_H
#define INK_RESTART_H

#include <stdbool.h>
#include <stdint.h>

#define INK_RESTART_INITIAL_MS 1000
#define INK_RESTART_MAX_MS 300000
#define INK_RESTART_STABLE_MS 600000
#define INK_RESTART_CRASH_LOOP_AFTER 5

typedef struct ink_restart {
    uint32_t restarts;     /* total, for status */
    uint32_t recent;       /* exits in a row without a stable run */
    int64_t started_ms;    /* last start */
    int64_t next_start_ms; /* when to start again; 0 = not waiting */
    bool crash_loop;
    char reason[160]; /* why it last ended */
} ink_restart;

void ink_restart_started(ink_restart *r, int64_t now_ms);
/* The sandbox ended: exit_code, or killed by OOM. Schedules the next start
 * and returns its delay. */
int64_t ink_restart_exited(ink_restart *r, int exit_code, bool oom, int64_t now_ms);
/* True when a scheduled restart is due. */
bool ink_restart_due(const ink_restart *r, int64_t now_ms);

#endif
