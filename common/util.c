#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdarg.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void ink_freep(void *p)
{
    free(*(void **)p);
}

void ink_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

void ink_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t ink_now_ms(void)
{
    return clock_ns(CLOCK_REALTIME) / 1000000;
}

void ink_realtime_after(int64_t ms, struct timespec *ts)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

int64_t ink_mono_ms(void)
{
    return clock_ns(CLOCK_MONOTONIC) / 1000000;
}

int64_t ink_mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

void *ink_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

void *ink_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p)
        abort();
    return p;
}

void *ink_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        abort();
    return q;
}

char *ink_xstrdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        abort();
    return p;
}

char *ink_xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *out = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    return out;
}

int ink_read_file(const char *path, size_t max, char **out, size_t *len, ink_err *err)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ink_err_set(err, errno, "open %s", path);
    return ink_read_fd(fd, path, max, out, len, err);
}

int ink_read_fd(int fd, const char *path, size_t max, char **out, size_t *len, ink_err *err)
{
    size_t cap = max < 4096 ? max : 4096, n = 0;
    cleanup_free char *buf = ink_xmalloc(cap + 1);
    for (;;) {
        if (n == cap) {
            if (cap >= max) {
                /* Full: fine only if the file ends exactly here. */
                char extra;
                ssize_t r = read(fd, &extra, 1);
                if (r < 0 && errno == EINTR)
                    continue;
                if (r != 0)
                    return ink_err_set(err, r < 0 ? errno : EFBIG, "read %s: larger than %zu bytes",
                                       path, max);
                break;
            }
            cap = cap * 2 > max ? max : cap * 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb)
                abort();
            buf = nb;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return ink_err_set(err, errno, "read %s", path);
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    *out = buf;
    buf = NULL;
    return 0;
}

int ink_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                          ink_err *err)
{
    /* Unique per thread too: threads of one process may write the same
     * file at once (the last rename wins, neither fails). */
    cleanup_free char *tmp = ink_xasprintf("%s.tmp.%d.%d", path, (int)getpid(), (int)gettid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return ink_err_set(err, errno, "create %s", tmp);
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return ink_err_set(err, e, "write %s", tmp);
        }
        p += w;
        left -= (size_t)w;
    }
    if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return ink_err_set(err, e, "sync %s", tmp);
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return ink_err_set(err, e, "rename %s", path);
    }
    /* Make the rename itself durable. */
    cleanup_free char *dircopy = ink_xstrdup(path);
    cleanup_close int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0)
        fsync(dfd);
    return 0;
}

int ink_mkdir_p(const char *path, unsigned mode, ink_err *err)
{
    cleanup_free char *p = ink_xstrdup(path);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, mode) < 0) {
                struct stat st;
                if (errno != EEXIST)
                    return ink_err_set(err, errno, "mkdir %s", p);
                if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
                    return ink_err_set(err, ENOTDIR, "mkdir %s", p);
            }
            *s = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

int ink_random_bytes(void *buf, size_t len, ink_err *err)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t r = getrandom(p, len, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return ink_err_set(err, errno, "getrandom");
        }
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

int ink_random_hex(char *out, size_t nbytes, ink_err *err)
{
    unsigned char raw[64];
    if (nbytes > sizeof raw)
        return ink_err_set(err, EINVAL, "random id too long");
    if (ink_random_bytes(raw, nbytes, err) < 0)
        return -1;
    ink_hex(raw, nbytes, out);
    return 0;
}

void ink_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void ink_format_utc(int64_t ms, bool millis, char *out, size_t outlen)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    if (millis)
        snprintf(out, outlen, "%s.%03dZ", base, (int)(ms % 1000));
    else
        snprintf(out, outlen, "%sZ", base);
}

bool ink_valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 63)
        return false;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
        return false;
    for (const char *c = s; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
            return false;
    }
    return s[strlen(s) - 1] != '-';
}

int ink_split_hostport(const char *addr, char *host, size_t hostlen, int *port, ink_err *err)
{
    const char *colon;
    const char *hstart = addr;
    size_t hlen;
    if (addr[0] == '[') {
        const char *close_br = strchr(addr, ']');
        if (!close_br || close_br[1] != ':')
            return ink_err_set(err, 0, "bad address '%s': expected [v6]:port", addr);
        hstart = addr + 1;
        hlen = (size_t)(close_br - hstart);
        colon = close_br + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return ink_err_set(err, 0, "bad address '%s': expected host:port", addr);
        hlen = (size_t)(colon - addr);
    }
    if (hlen == 0 || hlen >= hostlen)
        return ink_err_set(err, 0, "bad address '%s': bad host", addr);
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || p < 0 || p > 65535)
        return ink_err_set(err, 0, "bad address '%s': bad port", addr);
    memcpy(host, hstart, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int rc = type == FTW_DP ? rmdir(path) : unlink(path);
    return rc < 0 && errno != ENOENT ? -1 : 0;
}

int ink_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    /* Never follows symlinks nor crosses into another mount. */
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}
