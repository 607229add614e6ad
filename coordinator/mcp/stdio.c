/* The stdio transport: one JSON-RPC message per line in, one per line out.
 * The spec forbids anything but MCP messages on the output, so nothing
 * else is ever written there (our logs go to stderr). */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "mcp.h"
#include "util.h"

#define READ_CHUNK ((size_t)64 * 1024)

typedef struct {
    int fd;
    atomic_int error; /* errno of the first failed write; later output is dropped */
} out_sink;

/* Runs with the session mutex held, which keeps lines whole and in order
 * whichever thread emits them. */
static void stdio_emit(void *arg, const char *line)
{
    out_sink *o = arg;
    if (atomic_load(&o->error))
        return;
    struct iovec iov[2] = {{(void *)line, strlen(line)}, {(void *)"\n", 1}};
    struct iovec *v = iov;
    int cnt = 2;
    while (cnt > 0) {
        ssize_t w = writev(o->fd, v, cnt);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            atomic_store(&o->error, errno);
            return;
        }
        size_t done = (size_t)w;
        while (cnt > 0 && done >= v->iov_len) {
            done -= v->iov_len;
            v++;
            cnt--;
        }
        if (cnt > 0) {
            v->iov_base = (char *)v->iov_base + done;
            v->iov_len -= done;
        }
    }
}

static void handle_line(ink_mcp_session *ses, const char *p, size_t n)
{
    /* Tolerate CRLF and blank lines: neither is a message. */
    while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    if (i == n)
        return;
    ink_mcp_session_handle(ses, p + i, n - i);
}

int ink_mcp_stdio_run(ink_mcp_server *s, const ink_mcp_stdio_opts *o, ink_err *err)
{
    out_sink out = {.fd = o->out_fd};
    atomic_init(&out.error, 0);
    ink_mcp_session *ses = ink_mcp_session_new(s, stdio_emit, &out, o->auth);
    size_t max = ink_mcp_server_max_message(s);
    /* A line may hold max bytes; one more proves it is too long. */
    size_t limit = max + 1;
    size_t cap = READ_CHUNK < limit ? READ_CHUNK : limit;
    cleanup_free char *buf = ink_xmalloc(cap);
    size_t len = 0;          /* bytes in buf: the start of a line not complete yet */
    bool discarding = false; /* inside a line already refused as too long */
    int rc = 0;
    const char *why = "end of input";

    for (;;) {
        int werr = atomic_load(&out.error);
        if (werr) {
            rc = ink_err_set(err, werr, "mcp stdio: writing to the output");
            why = "output failed";
            break;
        }
        struct pollfd pfd[2] = {{.fd = o->in_fd, .events = POLLIN},
                                {.fd = o->stop_fd, .events = POLLIN}};
        int np = poll(pfd, o->stop_fd >= 0 ? 2 : 1, -1);
        if (np < 0) {
            if (errno == EINTR)
                continue;
            rc = ink_err_set(err, errno, "mcp stdio: poll");
            why = "poll failed";
            break;
        }
        if (o->stop_fd >= 0 && pfd[1].revents) {
            why = "stopped";
            break;
        }
        if (!pfd[0].revents)
            continue;
        if (len == cap) {
            cap = cap * 2 < limit ? cap * 2 : limit;
            char *nb = realloc(buf, cap);
            if (!nb)
                abort();
            buf = nb;
        }
        ssize_t n = read(o->in_fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            rc = ink_err_set(err, errno, "mcp stdio: reading the input");
            why = "input failed";
            break;
        }
        if (n == 0) {
            /* A last message without its newline still counts. */
            if (len > 0 && !discarding)
                handle_line(ses, buf, len);
            break;
        }
        size_t scan = len, start = 0;
        len += (size_t)n;
        char *nl;
        while ((nl = memchr(buf + scan, '\n', len - scan))) {
            size_t end = (size_t)(nl - buf);
            if (discarding)
                discarding = false;
            else
                handle_line(ses, buf + start, end - start);
            start = scan = end + 1;
        }
        if (discarding) {
            len = 0;
            continue;
        }
        memmove(buf, buf + start, len - start);
        len -= start;
        if (len > max) {
            /* The session answers a message over the limit with an error
             * without reading it; the rest of the line is skipped. */
            ink_mcp_session_handle(ses, buf, len);
            discarding = true;
            len = 0;
        }
    }

    if (rc == 0 && strcmp(why, "end of input") == 0 && o->drain_ms != 0 &&
        !ink_mcp_session_wait_idle(ses, o->drain_ms))
        LOG_WARN("mcp stdio: calls still running at end of input are cancelled");
    ink_mcp_session_free(ses);
    LOG_INFO("mcp stdio session ended", "reason", why);
    return rc;
}
