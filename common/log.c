#include "log.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

static const char *log_component = "ink";
static ink_log_level log_min = INK_LOG_INFO;
static bool log_to_journal;

static const char *level_names[] = {"debug", "info", "warn", "error"};
static const int level_priority[] = {7, 6, 4, 3}; /* syslog priorities */

/* journald sets JOURNAL_STREAM=dev:ino for the stream it connected to
 * stderr; only then is it right to talk to the journal directly. */
static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void ink_log_init(const char *component, ink_log_level min_level, ink_log_format format)
{
    log_component = component;
    log_min = min_level;
    log_to_journal = format == INK_LOG_JOURNAL || (format == INK_LOG_AUTO && stderr_is_journal());
}

int ink_log_parse_level(const char *s, ink_log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (ink_log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *ink_fmt_i64(char buf[24], int64_t v)
{
    snprintf(buf, 24, "%" PRId64, v);
    return buf;
}

const char *ink_fmt_u64(char buf[24], uint64_t v)
{
    snprintf(buf, 24, "%" PRIu64, v);
    return buf;
}

typedef struct {
    char data[8192];
    size_t len;
} line_buf;

static void put(line_buf *b, const char *s, size_t n)
{
    if (b->len + n >= sizeof b->data - 2)
        n = sizeof b->data - 2 - b->len;
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void put_str(line_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_value(line_buf *b, const char *v)
{
    bool quote = *v == '\0';
    for (const char *c = v; *c && !quote; c++)
        quote = *c == ' ' || *c == '=' || *c == '"' || !isprint((unsigned char)*c);
    if (!quote) {
        put_str(b, v);
        return;
    }
    put(b, "\"", 1);
    for (const char *c = v; *c; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') {
            esc[0] = '\\';
            esc[1] = *c;
            put(b, esc, 2);
        } else if (*c == '\n') {
            put(b, "\\n", 2);
        } else if (!isprint((unsigned char)*c)) {
            snprintf(esc, sizeof esc, "\\x%02x", (unsigned char)*c);
            put_str(b, esc);
        } else {
            put(b, c, 1);
        }
    }
    put(b, "\"", 1);
}

static void log_logfmt(ink_log_level level, const char *msg, va_list ap)
{
    line_buf b = {.len = 0};
    struct timespec ts;
    struct tm tm;
    char tbuf[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(tbuf, sizeof tbuf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(tbuf + n, sizeof tbuf - n, ".%03ldZ", ts.tv_nsec / 1000000);
    put_str(&b, "ts=");
    put_str(&b, tbuf);
    put_str(&b, " level=");
    put_str(&b, level_names[level]);
    put_str(&b, " comp=");
    put_str(&b, log_component);
    put_str(&b, " msg=");
    put_value(&b, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        const char *v = va_arg(ap, const char *);
        put(&b, " ", 1);
        put_str(&b, k);
        put(&b, "=", 1);
        put_value(&b, v ? v : "");
    }
    b.data[b.len++] = '\n';
    /* One write per event, so lines from different threads never interleave. */
    ssize_t w = write(STDERR_FILENO, b.data, b.len);
    (void)w;
}

static void log_journal(ink_log_level level, const char *msg, va_list ap)
{
    struct iovec iov[40];
    char fields[40][512];
    int n = 0;
    snprintf(fields[n], sizeof fields[n], "MESSAGE=%s", msg);
    snprintf(fields[n + 1], sizeof fields[n + 1], "PRIORITY=%d", level_priority[level]);
    snprintf(fields[n + 2], sizeof fields[n + 2], "SYSLOG_IDENTIFIER=ink-%s", log_component);
    n += 3;
    for (; n < 40;) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        const char *v = va_arg(ap, const char *);
        char key[64];
        size_t i = 0;
        for (; k[i] && i < sizeof key - 1; i++)
            key[i] = isalnum((unsigned char)k[i]) ? (char)toupper((unsigned char)k[i]) : '_';
        key[i] = '\0';
        snprintf(fields[n], sizeof fields[n], "INK_%s=%s", key, v ? v : "");
        n++;
    }
    for (int i = 0; i < n; i++) {
        iov[i].iov_base = fields[i];
        iov[i].iov_len = strlen(fields[i]);
    }
    sd_journal_sendv(iov, n);
}

void ink_log_kv(ink_log_level level, const char *msg, ...)
{
    if (level < log_min)
        return;
    va_list ap;
    va_start(ap, msg);
    if (log_to_journal)
        log_journal(level, msg, ap);
    else
        log_logfmt(level, msg, ap);
    va_end(ap);
}
