#include "logs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define DEFAULT_MAX_FILE (10ULL << 20)
#define DEFAULT_KEEP 3
#define PIPE_BYTES (1 << 20)

typedef struct stream_buf {
    int fd;        /* read end (O_RDONLY|O_NONBLOCK), -1 if closed */
    char tag;      /* 'o' or 'e' */
    char *pending; /* partial line */
    size_t npending;
} stream_buf;

struct ink_log_sink {
    char *dir;
    char *fifo[2];
    char *current;
    int log_fd;
    uint64_t size;
    ink_log_limits limits;
    stream_buf streams[2];
    void (*listener)(const ink_log_line *line, void *arg);
    void *listener_arg;
};

static int open_log(ink_log_sink *s, ink_err *err)
{
    s->log_fd = open(s->current, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (s->log_fd < 0)
        return ink_err_set(err, errno, "open %s", s->current);
    struct stat st;
    s->size = fstat(s->log_fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    return 0;
}

static int make_fifo(const char *path, ink_err *err)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (S_ISFIFO(st.st_mode))
            return 0; /* re-adopted after an agent restart */
        return ink_err_set(err, EEXIST, "%s exists and is not a FIFO", path);
    }
    if (mkfifo(path, 0600) < 0)
        return ink_err_set(err, errno, "mkfifo %s", path);
    return 0;
}

int ink_log_sink_open(const char *dir, const ink_log_limits *limits, ink_log_sink **out,
                      ink_err *err)
{
    if (ink_mkdir_p(dir, 0700, err) < 0)
        return -1;
    ink_log_sink *s = ink_xcalloc(1, sizeof *s);
    s->dir = ink_xstrdup(dir);
    s->fifo[0] = ink_xasprintf("%s/stdout.fifo", dir);
    s->fifo[1] = ink_xasprintf("%s/stderr.fifo", dir);
    s->current = ink_xasprintf("%s/current.log", dir);
    s->log_fd = -1;
    s->limits.max_file_bytes =
        limits && limits->max_file_bytes ? limits->max_file_bytes : DEFAULT_MAX_FILE;
    s->limits.keep = limits && limits->keep > 0 ? limits->keep : DEFAULT_KEEP;
    const char tags[2] = {'o', 'e'};
    for (int i = 0; i < 2; i++) {
        s->streams[i].fd = -1;
        s->streams[i].tag = tags[i];
        s->streams[i].pending = ink_xmalloc(INK_LOG_LINE_MAX);
    }
    for (int i = 0; i < 2; i++) {
        if (make_fifo(s->fifo[i], err) < 0)
            goto fail;
        /* Non-blocking, and read-write: opening never waits for a writer,
         * and the FIFO never reports hang-up (poll would wake at once,
         * forever) between a sandbox's exit and the next start. */
        s->streams[i].fd = open(s->fifo[i], O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (s->streams[i].fd < 0) {
            ink_err_set(err, errno, "open %s", s->fifo[i]);
            goto fail;
        }
        fcntl(s->streams[i].fd, F_SETPIPE_SZ, PIPE_BYTES);
    }
    if (open_log(s, err) < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    ink_log_sink_close(s);
    return -1;
}

void ink_log_sink_close(ink_log_sink *s)
{
    if (!s)
        return;
    for (int i = 0; i < 2; i++) {
        if (s->streams[i].fd >= 0)
            close(s->streams[i].fd);
        free(s->streams[i].pending);
        free(s->fifo[i]);
    }
    if (s->log_fd >= 0)
        close(s->log_fd);
    free(s->current);
    free(s->dir);
    free(s);
}

int ink_log_sink_workload_fds(ink_log_sink *s, int *stdout_fd, int *stderr_fd, ink_err *err)
{
    *stdout_fd = open(s->fifo[0], O_RDWR | O_CLOEXEC);
    if (*stdout_fd < 0)
        return ink_err_set(err, errno, "open %s", s->fifo[0]);
    *stderr_fd = open(s->fifo[1], O_RDWR | O_CLOEXEC);
    if (*stderr_fd < 0) {
        int e = errno;
        close(*stdout_fd);
        return ink_err_set(err, e, "open %s", s->fifo[1]);
    }
    return 0;
}

void ink_log_sink_read_fds(const ink_log_sink *s, int fds[2])
{
    fds[0] = s->streams[0].fd;
    fds[1] = s->streams[1].fd;
}

/* current.log -> .1 -> .2 ...; the oldest beyond `keep` is dropped. */
static int rotate(ink_log_sink *s, ink_err *err)
{
    close(s->log_fd);
    s->log_fd = -1;
    for (int i = s->limits.keep; i >= 1; i--) {
        cleanup_free char *from =
            i == 1 ? ink_xstrdup(s->current) : ink_xasprintf("%s.%d", s->current, i - 1);
        cleanup_free char *to = ink_xasprintf("%s.%d", s->current, i);
        if (rename(from, to) < 0 && errno != ENOENT)
            return ink_err_set(err, errno, "rotate %s", from);
    }
    return open_log(s, err);
}

static int write_line(ink_log_sink *s, char tag, const char *text, size_t len, ink_err *err)
{
    char head[40];
    int64_t now = ink_now_ms();
    int hl = snprintf(head, sizeof head, "%lld %c ", (long long)now, tag);
    size_t total = (size_t)hl + len + 1;
    if (s->size > 0 && s->size + total > s->limits.max_file_bytes && rotate(s, err) < 0)
        return -1;
    char *line = ink_xmalloc(total);
    memcpy(line, head, (size_t)hl);
    memcpy(line + hl, text, len);
    line[total - 1] = '\n';
    ssize_t w = write(s->log_fd, line, total);
    free(line);
    if (w != (ssize_t)total)
        return ink_err_set(err, w < 0 ? errno : EIO, "write %s", s->current);
    s->size += total;
    if (s->listener)
        s->listener(&(ink_log_line){.unix_ms = now, .stream = tag, .text = text, .len = len},
                    s->listener_arg);
    return 0;
}

void ink_log_sink_set_listener(ink_log_sink *s, void (*fn)(const ink_log_line *line, void *arg),
                               void *arg)
{
    s->listener = fn;
    s->listener_arg = arg;
}

int ink_log_sink_system(ink_log_sink *s, const char *text, ink_err *err)
{
    return write_line(s, 's', text, strlen(text), err);
}

static int feed(ink_log_sink *s, stream_buf *b, const char *data, size_t n, ink_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n' || b->npending == INK_LOG_LINE_MAX) {
            if (write_line(s, b->tag, b->pending, b->npending, err) < 0)
                return -1;
            b->npending = 0;
            if (data[i] == '\n')
                continue;
        }
        b->pending[b->npending++] = data[i];
    }
    return 0;
}

int64_t ink_log_sink_pump(ink_log_sink *s, ink_err *err)
{
    int64_t total = 0;
    char buf[65536];
    for (int i = 0; i < 2; i++) {
        stream_buf *b = &s->streams[i];
        for (;;) {
            ssize_t r = read(b->fd, buf, sizeof buf);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break; /* EAGAIN: drained; 0: no writer right now */
            if (feed(s, b, buf, (size_t)r, err) < 0)
                return -1;
            total += r;
        }
    }
    return total;
}

/* ------------------------------------------------------------------ read */

typedef struct {
    char *text; /* whole file contents */
    size_t len;
} file_text;

static bool parse_line(char *line, ink_log_line *out)
{
    char *end;
    long long ms = strtoll(line, &end, 10);
    if (end == line || end[0] != ' ' || !end[1] || end[2] != ' ')
        return false;
    out->unix_ms = ms;
    out->stream = end[1];
    out->text = end + 3;
    out->len = strlen(end + 3);
    return true;
}

int ink_log_read(const char *dir, size_t tail, int64_t since_ms,
                 void (*fn)(const ink_log_line *line, void *arg), void *arg, ink_err *err)
{
    /* Oldest file first: current.log.N ... current.log.1, current.log. */
    file_text files[64] = {0};
    int nfiles = 0;
    for (int i = 63; i >= 0; i--) {
        cleanup_free char *path = i == 0 ? ink_xasprintf("%s/current.log", dir)
                                         : ink_xasprintf("%s/current.log.%d", dir, i);
        char *text = NULL;
        size_t len = 0;
        if (ink_read_file(path, 1ULL << 30, &text, &len, err) < 0) {
            if (err->errnum == ENOENT) {
                ink_err_clear(err);
                continue;
            }
            for (int k = 0; k < nfiles; k++)
                free(files[k].text);
            return -1;
        }
        files[nfiles++] = (file_text){text, len};
    }
    /* Count the matching lines, then skip all but the last `tail`. */
    size_t matching = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t seen = 0;
        for (int f = 0; f < nfiles; f++) {
            char *p = files[f].text;
            while (p && *p) {
                char *nl = strchr(p, '\n');
                if (!nl)
                    break; /* a line still being written */
                ink_log_line l;
                char saved = *nl;
                *nl = '\0';
                if (parse_line(p, &l) && l.unix_ms >= since_ms) {
                    if (pass == 1 && (tail == 0 || seen + tail >= matching))
                        fn(&l, arg);
                    seen++;
                }
                *nl = saved;
                p = nl + 1;
            }
        }
        matching = seen;
    }
    for (int k = 0; k < nfiles; k++)
        free(files[k].text);
    return 0;
}
