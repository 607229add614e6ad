/* Workload logs: what an app writes to stdout and stderr, captured into
 * size-bounded, rotated files with a timestamp per line.
 *
 * Each workload's log directory holds two FIFOs (stdout.fifo, stderr.fifo)
 * and the log files (current.log, current.log.1 ... .N). The sandbox gets
 * the FIFOs opened read-write as its stdout and stderr: since the writer
 * itself also holds a read end, the app never gets EPIPE, even while the
 * agent is down (writes block once the pipe buffer is full, and resume when
 * the restarted agent reopens the FIFOs and drains them). Nothing between
 * the app and its logs dies with the agent, and no shim process is needed.
 *
 * File format, one line per entry: "<unix_ms> <o|e|s> <text>\n" (o stdout,
 * e stderr, s lines the agent writes about the workload). Lines longer than
 * INK_LOG_LINE_MAX are split. */
#ifndef INK_LOGS_H
#define INK_LOGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define INK_LOG_LINE_MAX 16384

typedef struct ink_log_sink ink_log_sink;

typedef struct ink_log_line {
    int64_t unix_ms;
    char stream; /* 'o', 'e' or 's' */
    const char *text;
    size_t len;
} ink_log_line;

typedef struct ink_log_limits {
    uint64_t max_file_bytes; /* rotate when current.log would pass this; 0 = 10 MiB */
    int keep;                /* rotated files kept; 0 = 3 */
} ink_log_limits;

/* Opens (creating if needed) the FIFOs and the current log in dir. */
int ink_log_sink_open(const char *dir, const ink_log_limits *limits, ink_log_sink **out,
                      ink_err *err);
void ink_log_sink_close(ink_log_sink *s);
/* Descriptors to give the sandbox as stdout and stderr (FIFOs opened
 * read-write); the caller closes them once the sandbox has them. */
int ink_log_sink_workload_fds(ink_log_sink *s, int *stdout_fd, int *stderr_fd, ink_err *err);
/* The read ends, for poll/epoll. */
void ink_log_sink_read_fds(const ink_log_sink *s, int fds[2]);
/* Reads what is available without blocking, writes complete lines;
 * returns bytes consumed or -1. */
int64_t ink_log_sink_pump(ink_log_sink *s, ink_err *err);
/* fn sees every line as it is written (for followers of a live log); it
 * runs in the thread that pumps or writes. NULL removes it. */
void ink_log_sink_set_listener(ink_log_sink *s, void (*fn)(const ink_log_line *line, void *arg),
                               void *arg);
/* Appends a line from the agent itself (stream 's'). */
int ink_log_sink_system(ink_log_sink *s, const char *text, ink_err *err);

/* Calls fn for the last `tail` lines (0 = all) at or after since_ms, oldest
 * first, across rotated files. */
int ink_log_read(const char *dir, size_t tail, int64_t since_ms,
                 void (*fn)(const ink_log_line *line, void *arg), void *arg, ink_err *err);

#endif
