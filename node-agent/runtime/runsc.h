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
    int64_t timeout_ms;    /* per command; 0 = 30 s */
    const char *netns_dir; /* workload namespace mounts (named by sandbox id), or NULL */
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
/* The same with input (input_len bytes) on the command's stdin. */
int ink_runsc_exec_input(const ink_runsc *r, const char *id, char *const argv[], const void *input,
                         size_t input_len, int64_t timeout_ms, size_t max_output,
                         ink_exec_result *res, ink_err *err);
void ink_exec_result_free(ink_exec_result *res);

/* `runsc wait` in a child process: the one way to learn a sandbox's exit
 * status (once it has stopped, runsc no longer knows it). fd becomes
 * readable when the sandbox has ended. */
typedef struct ink_runsc_waiter {
    int pid; /* -1 when none */
    int fd;
    char out[512];
    size_t len;
} ink_runsc_waiter;

int ink_runsc_wait_start(const ink_runsc *r, const char *id, ink_runsc_waiter *w, ink_err *err);
/* 0 while the sandbox runs; 1 when it ended, with *exit_status (the app's
 * exit code, 128+signal when killed, -1 when runsc could not tell). */
int ink_runsc_wait_collect(ink_runsc_waiter *w, int *exit_status);
/* Stops waiting (the sandbox is not affected). */
void ink_runsc_wait_cancel(ink_runsc_waiter *w);

/* Whether runsc may know the sandbox: its state or log files are in the
 * root. False means there is certainly nothing to stop or delete (and no
 * need to run runsc to find out). */
bool ink_runsc_known(const ink_runsc *r, const char *id);

/* The app's exit status as the ended sandbox recorded it (exit code, or
 * 128+signal), or -1 when it did not. Read it before delete. */
int ink_runsc_exit_status(const ink_runsc *r, const char *id);

/* The ids of every Ink sandbox under the root (caller frees each and the
 * array). Sandboxes are named "<id>.ink" in runsc (see runsc.c). */
int ink_runsc_list(const ink_runsc *r, char ***ids, size_t *n, ink_err *err);

const char *ink_sandbox_status_name(ink_sandbox_status s);

#endif
