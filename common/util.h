/* Small helpers shared by both daemons: scope-bound cleanup, time, files. */
#ifndef INK_UTIL_H
#define INK_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "err.h"

/* Free on every path out of a scope, as crun does. */
#define cleanup_free __attribute__((cleanup(ink_freep)))
#define cleanup_close __attribute__((cleanup(ink_closep)))
#define cleanup_fclose __attribute__((cleanup(ink_fclosep)))

void ink_freep(void *p);
void ink_closep(int *fd);
void ink_fclosep(FILE **f);

#define INK_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Transfers ownership out of a cleanup variable. */
#define INK_STEAL(p)                                                                               \
    ({                                                                                             \
        __typeof__(p) _tmp = (p);                                                                  \
        (p) = NULL;                                                                                \
        _tmp;                                                                                      \
    })

int64_t ink_now_ms(void);  /* CLOCK_REALTIME, milliseconds since the epoch */
int64_t ink_mono_ms(void); /* CLOCK_MONOTONIC, milliseconds */
struct timespec;
/* CLOCK_REALTIME ms from now: the deadline pthread_cond_timedwait takes
 * for a condition variable with the default clock. */
void ink_realtime_after(int64_t ms, struct timespec *ts);
int64_t ink_mono_ns(void); /* CLOCK_MONOTONIC, nanoseconds */

void *ink_xmalloc(size_t n); /* aborts on OOM: callers cannot recover from it */
void *ink_xcalloc(size_t n, size_t sz);
void *ink_xrealloc(void *p, size_t n);
char *ink_xstrdup(const char *s);
char *ink_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads a whole file (at most max bytes) into a NUL-terminated buffer. */
int ink_read_file(const char *path, size_t max, char **out, size_t *len, ink_err *err);
/* The same from an open descriptor; path only names it in errors. */
int ink_read_fd(int fd, const char *path, size_t max, char **out, size_t *len, ink_err *err);
/* Removes a directory tree (no symlinks followed, no other mounts
 * entered); a missing path is not an error. */
int ink_rmtree(const char *path);

/* Writes data to path atomically (temp file, fsync, rename, fsync dir). */
int ink_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                          ink_err *err);

/* mkdir -p with the given mode for the directories it creates. */
int ink_mkdir_p(const char *path, unsigned mode, ink_err *err);

/* Fills buf with random bytes from getrandom(2). */
int ink_random_bytes(void *buf, size_t len, ink_err *err);

/* Lowercase hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void ink_hex(const uint8_t *in, size_t n, char *out);
/* A random id as lowercase hex of nbytes random bytes (out >= 2*nbytes+1). */
int ink_random_hex(char *out, size_t nbytes, ink_err *err);

/* ms since the epoch as RFC 3339 UTC: "2026-11-23T10:00:00Z", or with
 * millis "2026-11-23T10:00:00.123Z". out needs 32 bytes. */
void ink_format_utc(int64_t ms, bool millis, char *out, size_t outlen);

/* Names of nodes, apps and projects: [a-z0-9][a-z0-9-]{0,62}. */
bool ink_valid_name(const char *s);

/* Splits "host:port" ("[v6]:port" too). host gets at most hostlen-1 bytes. */
int ink_split_hostport(const char *addr, char *host, size_t hostlen, int *port, ink_err *err);

#endif
