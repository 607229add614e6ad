/* Errors as values: a function that can fail takes an `ink_err *`, fills it
 * with what went wrong (and the errno when there is one) and returns -1.
 * Callers add context on the way up with ink_err_wrap(). */
#ifndef INK_ERR_H
#define INK_ERR_H

#include <stddef.h>

#define INK_ERR_MSG_MAX 512

typedef struct ink_err {
    int errnum;                /* errno of the root cause, 0 if none */
    char msg[INK_ERR_MSG_MAX]; /* human-readable, with context */
} ink_err;

/* Sets the error and returns -1. When errnum != 0, ": strerror(errnum)" is
 * appended. */
int ink_err_set(ink_err *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with context ("loading x: <old>"), returns -1. */
int ink_err_wrap(ink_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline void ink_err_clear(ink_err *err)
{
    if (err) {
        err->errnum = 0;
        err->msg[0] = '\0';
    }
}

#endif
