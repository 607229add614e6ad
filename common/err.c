#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ink_err_set(ink_err *err, int errnum, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (errnum && n >= 0 && (size_t)n < sizeof err->msg)
        snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", strerror(errnum));
    err->errnum = errnum;
    return -1;
}

int ink_err_wrap(ink_err *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char prefix[INK_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[INK_ERR_MSG_MAX];
    memcpy(old, err->msg, sizeof old);
    /* Long chains are cut at the end: the outermost context matters most. */
    size_t n = 0;
    const char *parts[] = {prefix, ": ", old};
    for (size_t i = 0; i < 3; i++) {
        size_t len = strlen(parts[i]);
        if (len > sizeof err->msg - 1 - n)
            len = sizeof err->msg - 1 - n;
        memcpy(err->msg + n, parts[i], len);
        n += len;
    }
    err->msg[n] = '\0';
    return -1;
}
