#include "restart.h"

#include <stdio.h>

void ink_restart_started(ink_restart *r, int64_t now_ms)
{
    r->started_ms = now_ms;
    r->next_start_ms = 0;
}

int64_t ink_restart_exited(ink_restart *r, int exit_code, bool oom, int64_t now_ms)
{
    if (r->started_ms && now_ms - r->started_ms >= INK_RESTART_STABLE_MS) {
        /* It ran long enough: this exit starts a fresh history. */
        r->recent = 0;
        r->crash_loop = false;
    }
    r->recent++;
    r->restarts++;
    if (oom)
        snprintf(r->reason, sizeof r->reason, "killed: out of memory (limit reached)");
    else if (exit_code < 0)
        snprintf(r->reason, sizeof r->reason, "ended (exit status unknown)");
    else if (exit_code > 128)
        snprintf(r->reason, sizeof r->reason, "killed by signal %d", exit_code - 128);
    else
        snprintf(r->reason, sizeof r->reason, "exited with code %d", exit_code);
    int64_t delay = INK_RESTART_INITIAL_MS;
    for (uint32_t i = 1; i < r->recent && delay < INK_RESTART_MAX_MS; i++)
        delay *= 2;
    if (delay > INK_RESTART_MAX_MS)
        delay = INK_RESTART_MAX_MS;
    r->crash_loop = r->recent >= INK_RESTART_CRASH_LOOP_AFTER;
    r->next_start_ms = now_ms + delay;
    return delay;
}

bool ink_restart_due(const ink_restart *r, int64_t now_ms)
{
    return r->next_start_ms && now_ms >= r->next_start_ms;
}
