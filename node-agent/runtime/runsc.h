/* Driving runsc (gVisor) as a subprocess: run, state, kill, delete, stats
 * and exec, each with a dedicated --root so Ink's sandboxes never mix with
 * anyone else's. Every call has a timeout; runsc's own error output comes
 * back in the error message. */
#ifndef INK_RUNSC_H
#define INK_RUNSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum {
    INK_RUNSC_NET_NONE,    /* loopback only */
    INK_RUNSC_NET_SANDBOX, /* gVisor netstack in the spec's network namespace */
    INK_RUNSC_NET_HOST,    /* hostinet: the spec's namespace, host kernel stack */
} ink_runsc_network;

typedef struct ink_runsc {
    const char *binary; /* "runsc" or a path */
    const char *root;   /* state directory of Ink's sandboxes */
    ink_runsc_network network;
    int64_t timeout_ms; /* per command; 0 = 30 s */
} ink_runsc;

typedef enum {
    INK_SANDBOX_UNKNOWN = 0, /* runsc has no such sandbox */
    INK_SANDBOX_CREATED,
    INK_SANDBOX_RUNNING,
    INK_SANDBOX_PAUSED,
    INK_SANDBOX_STOPPED,
} ink_sandbox_status;

typedef struct ink_sandbox_state {
    ink_sandbox_status status;
    int pid; /* sandbox process on the host, 0 when not running */
} ink_sandbox_state;

typedef struct ink_sandbox_stats {
    uint64_t cpu_ns;
    uint64_t memory_bytes;
    uint32_t pids;
} ink_sandbox_stats;

/* Creates and starts sandbox `id` from `bundle` (config.json + rootfs); the
 * workload's stdout and stderr are the given descriptors. */
int ink_runsc_run(const ink_runsc *r, const char *id, const char *bundle, int stdout_fd,
                  int stderr_fd, ink_err *err);
int ink_runsc_state(const ink_runsc *r, const char *id, ink_sandbox_state *st, ink_err *err);
/* Signals the workload's processes (all of them with all=true). */
int ink_runsc_kill(const ink_runsc *r, const char *id, int signo, bool all, ink_err *err);
/* Graceful stop: SIGTERM to every process, up to grace_ms for them to end,
 * then SIGKILL. A sandbox that is not running is already stopped. */
int ink_runsc_stop(const ink_runsc *r, const char *id, int64_t grace_ms, ink_err *err);
/* Removes a stopped sandbox; with force, a running one too. A sandbox that
 * does not exist is not an error (delete is idempotent). */
int ink_runsc_delete(const ink_runsc *r, const char *id, bool force, ink_err *err);
int ink_runsc_stats(const ink_runsc *r, const char *id, ink_sandbox_stats *st, ink_err *err);

typedef struct ink_exec_result {
    int exit_code; /* -1 when killed by the timeout */
    bool timed_out;
    bool truncated;     /* output cut at max_output */
    char *out, *errout; /* NUL-terminated, owned */
    size_t out_len, err_len;
} ink_exec_result;

/* Runs argv inside the sandbox, capturing at most max_output bytes of each
 * stream, killing it after timeout_ms. */
int ink_runsc_exec(const ink_runsc *r, const char *id, char *const argv[], int64_t timeout_ms,
                   size_t max_output, ink_exec_result *res, ink_err *err);
void ink_exec_result_free(ink_exec_result *res);

const char *ink_sandbox_status_name(ink_sandbox_status s);

#endif
