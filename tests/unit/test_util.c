/* Unit tests for common/err.c, common/util.c, common/backoff.c and common/log.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backoff.h"
#include "err.h"
#include "log.h"
#include "testlib.h"
#include "util.h"

/* ---- fixture: a scratch directory per test ---- */

typedef test_scratch fixture;

static void write_raw(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* ---- err.c ---- */

static void test_err_set_plain(void **state)
{
    (void)state;
    ink_err err = {0};
    assert_int_equal(ink_err_set(&err, 0, "bad thing %d", 42), -1);
    assert_string_equal(err.msg, "bad thing 42");
    assert_int_equal(err.errnum, 0);
    /* A NULL err is allowed and still reports failure. */
    assert_int_equal(ink_err_set(NULL, EIO, "ignored"), -1);
    assert_int_equal(ink_err_wrap(NULL, "ignored"), -1);
}

static void test_err_set_errno(void **state)
{
    (void)state;
    ink_err err = {0};
    assert_int_equal(ink_err_set(&err, ENOENT, "open %s", "/x"), -1);
    char want[256];
    snprintf(want, sizeof want, "open /x: %s", strerror(ENOENT));
    assert_string_equal(err.msg, want);
    assert_int_equal(err.errnum, ENOENT);

    ink_err_clear(&err);
    assert_int_equal(err.errnum, 0);
    assert_string_equal(err.msg, "");
}

static void test_err_set_long_message(void **state)
{
    (void)state;
    struct {
        ink_err err;
        char guard[64];
    } s;
    memset(&s, 0, sizeof s);
    memset(s.guard, 0x5a, sizeof s.guard);
    char big[2 * INK_ERR_MSG_MAX];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(ink_err_set(&s.err, EACCES, "%s", big), -1);
    assert_int_equal(strlen(s.err.msg), INK_ERR_MSG_MAX - 1);
    assert_int_equal(s.err.errnum, EACCES);
    for (size_t i = 0; i < sizeof s.guard; i++)
        assert_int_equal((unsigned char)s.guard[i], 0x5a);
}

static void test_err_wrap(void **state)
{
    (void)state;
    ink_err err = {0};
    ink_err_set(&err, ENOENT, "open %s", "a.conf");
    assert_int_equal(ink_err_wrap(&err, "loading %s", "config"), -1);
    char want[256];
    snprintf(want, sizeof want, "loading config: open a.conf: %s", strerror(ENOENT));
    assert_string_equal(err.msg, want);
    /* The root cause's errno survives wrapping. */
    assert_int_equal(err.errnum, ENOENT);
    ink_err_wrap(&err, "starting");
    assert_true(strncmp(err.msg, "starting: loading config: open a.conf: ", 39) == 0);
}

static void test_err_wrap_long_chain(void **state)
{
    (void)state;
    struct {
        ink_err err;
        char guard[64];
    } s;
    memset(&s, 0, sizeof s);
    memset(s.guard, 0x5a, sizeof s.guard);
    ink_err_set(&s.err, EIO, "root cause");
    char prefix[100];
    size_t total = strlen(s.err.msg);
    for (int i = 0; i < 20; i++) {
        snprintf(prefix, sizeof prefix, "context %02d %s", i,
                 "................................................................");
        assert_int_equal(ink_err_wrap(&s.err, "%s", prefix), -1);
        total += strlen(prefix) + 2;
        size_t len = strlen(s.err.msg);
        assert_true(len <= INK_ERR_MSG_MAX - 1);
        /* The outermost context is kept; the tail is what gets cut. */
        assert_true(strncmp(s.err.msg, prefix, strlen(prefix)) == 0);
        assert_int_equal(s.err.msg[strlen(prefix)], ':');
    }
    assert_true(total > INK_ERR_MSG_MAX);
    assert_int_equal(strlen(s.err.msg), INK_ERR_MSG_MAX - 1);
    assert_int_equal(s.err.errnum, EIO);
    for (size_t i = 0; i < sizeof s.guard; i++)
        assert_int_equal((unsigned char)s.guard[i], 0x5a);

    /* A prefix longer than the whole buffer is cut too. */
    char huge[3 * INK_ERR_MSG_MAX];
    memset(huge, 'p', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    ink_err_wrap(&s.err, "%s", huge);
    assert_int_equal(strlen(s.err.msg), INK_ERR_MSG_MAX - 1);
    assert_int_equal(s.err.msg[0], 'p');
    assert_int_equal(s.err.msg[INK_ERR_MSG_MAX - 2], 'p');
    for (size_t i = 0; i < sizeof s.guard; i++)
        assert_int_equal((unsigned char)s.guard[i], 0x5a);
}

/* ---- util.c: files ---- */

static void test_read_file(void **state)
{
    fixture *f = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/data", f->dir);

    /* Small file. */
    write_raw(path, "hello\n", 6);
    ink_err err = {0};
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(ink_read_file(path, 1 << 20, &buf, &len, &err), 0);
    assert_int_equal(len, 6);
    assert_string_equal(buf, "hello\n");
    free(buf);

    /* Empty file: an empty, NUL-terminated buffer. */
    write_raw(path, "", 0);
    buf = NULL;
    assert_int_equal(ink_read_file(path, 1 << 20, &buf, &len, &err), 0);
    assert_int_equal(len, 0);
    assert_non_null(buf);
    assert_string_equal(buf, "");
    free(buf);

    /* Larger than the first buffer, several growth steps; len may be NULL. */
    size_t big = 100000;
    char *data = ink_xmalloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)('a' + i % 26);
    write_raw(path, data, big);
    buf = NULL;
    assert_int_equal(ink_read_file(path, 1 << 20, &buf, &len, &err), 0);
    assert_int_equal(len, big);
    assert_memory_equal(buf, data, big);
    assert_int_equal(buf[big], '\0');
    free(buf);
    buf = NULL;
    assert_int_equal(ink_read_file(path, 1 << 20, &buf, NULL, &err), 0);
    free(buf);
    free(data);
}

static void test_read_file_enoent(void **state)
{
    fixture *f = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/missing", f->dir);
    ink_err err = {0};
    char *buf = NULL;
    assert_int_equal(ink_read_file(path, 1024, &buf, NULL, &err), -1);
    assert_int_equal(err.errnum, ENOENT);
    assert_null(buf);
    assert_non_null(strstr(err.msg, path));
}

static void test_read_file_too_big(void **state)
{
    fixture *f = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/big", f->dir);
    size_t size = 20000;
    char *data = ink_xcalloc(1, size);
    memset(data, 'z', size);
    write_raw(path, data, size);

    ink_err err = {0};
    char *buf = NULL;
    assert_int_equal(ink_read_file(path, 10000, &buf, NULL, &err), -1);
    assert_int_equal(err.errnum, EFBIG);
    assert_null(buf);

    /* max below the initial 4 KiB buffer must be honoured too. */
    ink_err_clear(&err);
    write_raw(path, data, 200);
    assert_int_equal(ink_read_file(path, 100, &buf, NULL, &err), -1);
    assert_int_equal(err.errnum, EFBIG);
    free(buf);
    free(data);
}

static void test_read_file_exactly_max(void **state)
{
    fixture *f = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/exact", f->dir);
    /* "at most max bytes": a file of exactly max bytes fits. */
    size_t sizes[] = {100, 4096, 8192};
    for (size_t k = 0; k < INK_ARRAY_LEN(sizes); k++) {
        char *data = ink_xmalloc(sizes[k]);
        memset(data, 'e', sizes[k]);
        write_raw(path, data, sizes[k]);
        ink_err err = {0};
        char *buf = NULL;
        size_t len = 0;
        int rc = ink_read_file(path, sizes[k], &buf, &len, &err);
        if (rc != 0)
            print_error("ink_read_file(%zu-byte file, max=%zu): %s\n", sizes[k], sizes[k], err.msg);
        assert_int_equal(rc, 0);
        assert_int_equal(len, sizes[k]);
        free(buf);
        free(data);
    }
}

static bool dir_has_entry_prefix(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
            found = true;
    }
    closedir(d);
    return found;
}

static size_t dir_count(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

static void test_write_file_atomic(void **state)
{
    fixture *f = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/out.txt", f->dir);
    ink_err err = {0};

    assert_int_equal(ink_write_file_atomic(path, "first\n", 6, 0600, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, 6);

    /* Replace with other content and a mode the umask would normally strip. */
    mode_t old = umask(077);
    int rc = ink_write_file_atomic(path, "second line\n", 12, 0644, &err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(ink_read_file(path, 1024, &buf, &len, &err), 0);
    assert_int_equal(len, 12);
    assert_string_equal(buf, "second line\n");
    free(buf);

    /* Binary data with NULs, and an empty file. */
    const unsigned char bin[] = {0, 1, 2, 0, 255};
    assert_int_equal(ink_write_file_atomic(path, bin, sizeof bin, 0640, &err), 0);
    buf = NULL;
    assert_int_equal(ink_read_file(path, 1024, &buf, &len, &err), 0);
    assert_int_equal(len, sizeof bin);
    assert_memory_equal(buf, bin, sizeof bin);
    free(buf);
    assert_int_equal(ink_write_file_atomic(path, "", 0, 0640, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);

    /* No temp file left behind. */
    assert_false(dir_has_entry_prefix(f->dir, "out.txt."));
    assert_int_equal(dir_count(f->dir), 1);
}

static void test_write_file_atomic_fails(void **state)
{
    fixture *f = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/nodir/out.txt", f->dir);
    ink_err err = {0};
    assert_int_equal(ink_write_file_atomic(path, "x", 1, 0600, &err), -1);
    assert_int_equal(err.errnum, ENOENT);

    /* rename onto a directory fails; the temp file is cleaned up. */
    snprintf(path, sizeof path, "%s/adir", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    char inner[300];
    snprintf(inner, sizeof inner, "%s/keep", path);
    write_raw(inner, "k", 1);
    ink_err_clear(&err);
    assert_int_equal(ink_write_file_atomic(path, "x", 1, 0600, &err), -1);
    assert_int_not_equal(err.errnum, 0);
    assert_false(dir_has_entry_prefix(f->dir, "adir."));
}

static void test_mkdir_p(void **state)
{
    fixture *f = *state;
    char path[256];
    ink_err err = {0};
    snprintf(path, sizeof path, "%s/a/b/c", f->dir);
    assert_int_equal(ink_mkdir_p(path, 0750, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    char mid[256];
    snprintf(mid, sizeof mid, "%s/a/b", f->dir);
    assert_int_equal(stat(mid, &st), 0);
    assert_true(S_ISDIR(st.st_mode));

    /* Existing: no error, twice over, and with a trailing slash. */
    assert_int_equal(ink_mkdir_p(path, 0750, &err), 0);
    assert_int_equal(ink_mkdir_p(f->dir, 0750, &err), 0);
    snprintf(path, sizeof path, "%s/a/b/c/", f->dir);
    assert_int_equal(ink_mkdir_p(path, 0750, &err), 0);

    /* Partially existing. */
    snprintf(path, sizeof path, "%s/a/x/y", f->dir);
    assert_int_equal(ink_mkdir_p(path, 0700, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));

    /* A regular file in the way of a parent is an error. */
    char file[256];
    snprintf(file, sizeof file, "%s/file", f->dir);
    write_raw(file, "x", 1);
    snprintf(path, sizeof path, "%s/file/sub", f->dir);
    assert_int_equal(ink_mkdir_p(path, 0700, &err), -1);
    assert_int_equal(err.errnum, ENOTDIR);
}

static void test_mkdir_p_file_in_the_way(void **state)
{
    fixture *f = *state;
    char file[256];
    snprintf(file, sizeof file, "%s/file", f->dir);
    write_raw(file, "x", 1);
    /* The path itself exists but is not a directory: mkdir -p fails here. */
    ink_err err = {0};
    assert_int_equal(ink_mkdir_p(file, 0700, &err), -1);
}

/* ---- util.c: random, names, addresses ---- */

static void test_random_hex(void **state)
{
    (void)state;
    ink_err err = {0};
    char a[2 * 32 + 1], b[2 * 32 + 1];
    memset(a, 'Z', sizeof a);
    assert_int_equal(ink_random_hex(a, 16, &err), 0);
    assert_int_equal(strlen(a), 32);
    for (size_t i = 0; i < 32; i++)
        assert_non_null(strchr("0123456789abcdef", a[i]));
    assert_int_equal(ink_random_hex(b, 16, &err), 0);
    assert_string_not_equal(a, b);

    assert_int_equal(ink_random_hex(a, 32, &err), 0);
    assert_int_equal(strlen(a), 64);
    assert_int_equal(ink_random_hex(a, 0, &err), 0);
    assert_string_equal(a, "");

    char big[2 * 65 + 1];
    assert_int_equal(ink_random_hex(big, 65, &err), -1);
    assert_int_equal(err.errnum, EINVAL);
}

static void test_valid_name(void **state)
{
    (void)state;
    char n63[64], n64[65];
    memset(n63, 'a', 63);
    n63[63] = '\0';
    memset(n64, 'a', 64);
    n64[64] = '\0';

    const char *ok[] = {"a", "node-1", "0abc", "a-b-c", "9", "n1", n63};
    for (size_t i = 0; i < INK_ARRAY_LEN(ok); i++) {
        if (!ink_valid_name(ok[i]))
            print_error("expected valid: '%s'\n", ok[i]);
        assert_true(ink_valid_name(ok[i]));
    }
    const char *bad[] = {"", "-a", "a-", "A", "a_b", "a.b", "a b", "aB", "a/b", "é", n64};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad); i++) {
        if (ink_valid_name(bad[i]))
            print_error("expected invalid: '%s'\n", bad[i]);
        assert_false(ink_valid_name(bad[i]));
    }
    assert_false(ink_valid_name(NULL));
}

static void test_split_hostport_ok(void **state)
{
    (void)state;
    ink_err err = {0};
    char host[64];
    int port = -1;
    assert_int_equal(ink_split_hostport("127.0.0.1:80", host, sizeof host, &port, &err), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 80);

    assert_int_equal(ink_split_hostport("[::1]:7440", host, sizeof host, &port, &err), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 7440);

    assert_int_equal(ink_split_hostport("host:0", host, sizeof host, &port, &err), 0);
    assert_string_equal(host, "host");
    assert_int_equal(port, 0);

    assert_int_equal(ink_split_hostport("example.com:65535", host, sizeof host, &port, &err), 0);
    assert_string_equal(host, "example.com");
    assert_int_equal(port, 65535);

    /* A host of exactly hostlen-1 bytes fits. */
    char small[5];
    assert_int_equal(ink_split_hostport("abcd:1", small, sizeof small, &port, &err), 0);
    assert_string_equal(small, "abcd");
}

static void test_split_hostport_errors(void **state)
{
    (void)state;
    const char *bad[] = {"nohost", ":80",   "h:99999", "h:x",   "[::1]80", "h:",
                         "h:-1",   "[::1]", "[::1:80", "[]:80", "h:80x"};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad); i++) {
        ink_err err = {0};
        char host[64];
        strcpy(host, "untouched");
        int port = -7;
        int rc = ink_split_hostport(bad[i], host, sizeof host, &port, &err);
        if (rc != -1)
            print_error("expected an error for '%s'\n", bad[i]);
        assert_int_equal(rc, -1);
        assert_true(err.msg[0] != '\0');
        assert_int_equal(port, -7);
    }

    /* Host buffer too small: an error, never a truncated host. */
    ink_err err = {0};
    char small[4];
    memset(small, 'Q', sizeof small);
    int port = -7;
    assert_int_equal(ink_split_hostport("abcd:1", small, sizeof small, &port, &err), -1);
    assert_int_equal(port, -7);
    for (size_t i = 0; i < sizeof small; i++)
        assert_int_equal(small[i], 'Q');
    assert_int_equal(ink_split_hostport("[fe80::1]:1", small, sizeof small, &port, &err), -1);
}

/* ---- backoff.c ---- */

static void test_backoff_growth_exact(void **state)
{
    (void)state;
    ink_backoff b;
    ink_backoff_init(&b, 100, 1000, 2.0, 0.0);
    const int64_t want[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (size_t i = 0; i < INK_ARRAY_LEN(want); i++)
        assert_int_equal(ink_backoff_next(&b), want[i]);

    ink_backoff_reset(&b);
    assert_int_equal(ink_backoff_next(&b), 100);
    assert_int_equal(ink_backoff_next(&b), 200);

    ink_backoff_init(&b, 10, 100, 3.0, 0.0);
    const int64_t want3[] = {10, 30, 90, 100, 100};
    for (size_t i = 0; i < INK_ARRAY_LEN(want3); i++)
        assert_int_equal(ink_backoff_next(&b), want3[i]);
}

static void test_backoff_jitter_bounds(void **state)
{
    (void)state;
    ink_backoff b;
    const double jitter = 0.2;
    ink_backoff_init(&b, 100, 10000, 2.0, jitter);
    double nominal = 100;
    int64_t lo_seen = INT64_MAX, hi_seen = 0;
    for (int i = 0; i < 1000; i++) {
        if (i % 10 == 0) {
            ink_backoff_reset(&b);
            nominal = 100;
        }
        int64_t d = ink_backoff_next(&b);
        double lo = floor(nominal * (1 - jitter));
        double hi = ceil(nominal * (1 + jitter));
        if ((double)d < lo || (double)d > hi)
            print_error("draw %d: %" PRId64 " outside [%g, %g]\n", i, d, lo, hi);
        assert_true((double)d >= lo && (double)d <= hi);
        if (nominal == 100) {
            lo_seen = d < lo_seen ? d : lo_seen;
            hi_seen = d > hi_seen ? d : hi_seen;
        }
        nominal = nominal * 2 > 10000 ? 10000 : nominal * 2;
    }
    /* The jitter actually spreads the values. */
    assert_true(lo_seen < 95);
    assert_true(hi_seen > 105);

    /* At the cap, 1000 draws stay within ±jitter of max. */
    ink_backoff_init(&b, 5000, 5000, 2.0, 0.5);
    for (int i = 0; i < 1000; i++) {
        int64_t d = ink_backoff_next(&b);
        assert_true(d >= 2500 && d <= 7500);
    }
}

static void test_backoff_seeds_differ(void **state)
{
    (void)state;
    ink_backoff a, b;
    ink_backoff_init(&a, 1000, 1000, 1.0, 0.5);
    ink_backoff_init(&b, 1000, 1000, 1.0, 0.5);
    assert_true(a.rng != b.rng);
    int same = 0;
    for (int i = 0; i < 32; i++) {
        if (ink_backoff_next(&a) == ink_backoff_next(&b))
            same++;
    }
    assert_true(same < 32);
    assert_true(same < 8);
}

static void test_backoff_clamps(void **state)
{
    (void)state;
    ink_backoff b;
    /* multiplier < 1 → 1: no shrinking. */
    ink_backoff_init(&b, 100, 1000, 0.5, 0.0);
    assert_true(b.multiplier == 1.0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ink_backoff_next(&b), 100);

    /* jitter > 1 → 1, jitter < 0 → 0. */
    ink_backoff_init(&b, 100, 1000, 1.0, 5.0);
    assert_true(b.jitter == 1.0);
    for (int i = 0; i < 1000; i++) {
        int64_t d = ink_backoff_next(&b);
        assert_true(d >= 1 && d <= 200);
    }
    ink_backoff_init(&b, 100, 1000, 1.0, -1.0);
    assert_true(b.jitter == 0.0);
    assert_int_equal(ink_backoff_next(&b), 100);

    /* initial 0 → 1; max below initial → initial. */
    ink_backoff_init(&b, 0, 100, 2.0, 0.0);
    assert_int_equal(b.initial_ms, 1);
    assert_int_equal(ink_backoff_next(&b), 1);
    assert_int_equal(ink_backoff_next(&b), 2);
    assert_int_equal(ink_backoff_next(&b), 4);
    ink_backoff_init(&b, 500, 10, 2.0, 0.0);
    assert_int_equal(ink_backoff_next(&b), 500);
    assert_int_equal(ink_backoff_next(&b), 500);
}

static void test_backoff_small_fractional_growth(void **state)
{
    (void)state;
    /* A multiplier of 1.5 from 1 ms must still grow towards the max rather
     * than being truncated back to the same integer every step. */
    ink_backoff b;
    ink_backoff_init(&b, 1, 1000, 1.5, 0.0);
    int64_t d = 0;
    for (int i = 0; i < 100; i++)
        d = ink_backoff_next(&b);
    if (d != 1000)
        print_error("backoff(1, 1000, x1.5) after 100 steps: %" PRId64 " ms, want 1000\n", d);
    assert_int_equal(d, 1000);
}

/* ---- log.c ---- */

static void test_fmt_numbers(void **state)
{
    (void)state;
    char buf[24];
    assert_string_equal(ink_fmt_i64(buf, 0), "0");
    assert_string_equal(ink_fmt_i64(buf, -5), "-5");
    assert_string_equal(ink_fmt_i64(buf, INT64_MAX), "9223372036854775807");
    assert_string_equal(ink_fmt_i64(buf, INT64_MIN), "-9223372036854775808");
    assert_string_equal(ink_fmt_u64(buf, 0), "0");
    assert_string_equal(ink_fmt_u64(buf, UINT64_MAX), "18446744073709551615");
    assert_ptr_equal(ink_fmt_u64(buf, 7), buf);
    assert_string_equal(LOG_INT(-12), "-12");
    assert_string_equal(LOG_U64(12), "12");
}

static void test_log_parse_level(void **state)
{
    (void)state;
    ink_log_level l = INK_LOG_ERROR;
    assert_int_equal(ink_log_parse_level("debug", &l), 0);
    assert_int_equal(l, INK_LOG_DEBUG);
    assert_int_equal(ink_log_parse_level("info", &l), 0);
    assert_int_equal(l, INK_LOG_INFO);
    assert_int_equal(ink_log_parse_level("warn", &l), 0);
    assert_int_equal(l, INK_LOG_WARN);
    assert_int_equal(ink_log_parse_level("error", &l), 0);
    assert_int_equal(l, INK_LOG_ERROR);
    l = INK_LOG_WARN;
    assert_int_equal(ink_log_parse_level("verbose", &l), -1);
    assert_int_equal(ink_log_parse_level("", &l), -1);
    assert_int_equal(ink_log_parse_level("info ", &l), -1);
    assert_int_equal(l, INK_LOG_WARN);
}

/* Captures what is written to fd 2 between capture_start and capture_end. */
typedef struct {
    char path[256];
    int saved;
} capture;

static void capture_start(capture *c, const char *dir)
{
    snprintf(c->path, sizeof c->path, "%s/stderr.log", dir);
    int fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
}

/* Returns the captured text (caller frees). */
static char *capture_end(capture *c)
{
    fflush(stderr);
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    /* Static: GCC 12 at -O3 takes the address passed below for one that
     * dangles once inlined (-Wdangling-pointer, a false positive). */
    static char *text;
    text = NULL;
    ink_err err = {0};
    assert_int_equal(ink_read_file(c->path, 1 << 20, &text, NULL, &err), 0);
    unlink(c->path);
    return text;
}

static void test_log_logfmt(void **state)
{
    fixture *f = *state;
    capture c;
    ink_log_init("test", INK_LOG_DEBUG, INK_LOG_LOGFMT);
    capture_start(&c, f->dir);
    LOG_INFO("hello world", "k", "v", "q", "has space", "e", "", "n", LOG_INT(-5));
    char *out = capture_end(&c);

    assert_true(strncmp(out, "ts=", 3) == 0);
    assert_non_null(
        strstr(out, " level=info comp=test msg=\"hello world\" k=v q=\"has space\" e=\"\" n=-5"));
    size_t len = strlen(out);
    assert_true(len > 0);
    assert_int_equal(out[len - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + len - 1); /* exactly one line */
    /* ts=YYYY-MM-DDTHH:MM:SS.mmmZ */
    assert_int_equal(strlen("ts=2024-01-01T00:00:00.000Z"), (size_t)(strchr(out, ' ') - out));
    assert_int_equal(out[3 + 23], 'Z');
    free(out);
}

static void test_log_escaping(void **state)
{
    fixture *f = *state;
    capture c;
    ink_log_init("test", INK_LOG_DEBUG, INK_LOG_LOGFMT);
    capture_start(&c, f->dir);
    LOG_WARN("msg", "quote", "say \"hi\"", "bs", "a\\b c", "nl", "line1\nline2", "eq", "a=b", "tab",
             "a\tb", "nullv", NULL);
    char *out = capture_end(&c);
    assert_non_null(strstr(out, " level=warn comp=test msg=msg "));
    assert_non_null(strstr(out, " quote=\"say \\\"hi\\\"\""));
    assert_non_null(strstr(out, " bs=\"a\\\\b c\""));
    assert_non_null(strstr(out, " nl=\"line1\\nline2\""));
    assert_non_null(strstr(out, " eq=\"a=b\""));
    assert_non_null(strstr(out, " tab=\"a\\x09b\""));
    assert_non_null(strstr(out, " nullv=\"\""));
    size_t len = strlen(out);
    /* The embedded newline is escaped: still a single line. */
    assert_ptr_equal(strchr(out, '\n'), out + len - 1);
    free(out);
}

static void test_log_level_filter(void **state)
{
    fixture *f = *state;
    capture c;
    ink_log_init("test", INK_LOG_INFO, INK_LOG_LOGFMT);
    capture_start(&c, f->dir);
    LOG_DEBUG("dropped", "k", "v");
    LOG_INFO("kept");
    LOG_ERROR("bad", "err", "boom");
    char *out = capture_end(&c);
    assert_null(strstr(out, "dropped"));
    assert_null(strstr(out, "level=debug"));
    assert_non_null(strstr(out, "level=info comp=test msg=kept\n"));
    assert_non_null(strstr(out, "level=error comp=test msg=bad err=boom\n"));
    free(out);

    ink_log_init("other", INK_LOG_ERROR, INK_LOG_LOGFMT);
    capture_start(&c, f->dir);
    LOG_WARN("dropped too");
    char *out2 = capture_end(&c);
    assert_string_equal(out2, "");
    free(out2);
    ink_log_init("test", INK_LOG_INFO, INK_LOG_LOGFMT);
}

static void test_log_long_line(void **state)
{
    fixture *f = *state;
    size_t n = 20000;
    char *big = ink_xmalloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    capture c;
    ink_log_init("test", INK_LOG_DEBUG, INK_LOG_LOGFMT);
    capture_start(&c, f->dir);
    LOG_INFO("long", "v", big, "after", "y");
    char *out = capture_end(&c);
    size_t len = strlen(out);
    /* Cut to the line buffer, still one newline-terminated line. */
    assert_true(len <= 8192);
    assert_int_equal(out[len - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + len - 1);
    free(out);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_set_plain),
        cmocka_unit_test(test_err_set_errno),
        cmocka_unit_test(test_err_set_long_message),
        cmocka_unit_test(test_err_wrap),
        cmocka_unit_test(test_err_wrap_long_chain),
        cmocka_unit_test_setup_teardown(test_read_file, test_scratch_setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_read_file_enoent, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_read_file_too_big, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_read_file_exactly_max, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_write_file_atomic, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_write_file_atomic_fails, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_mkdir_p, test_scratch_setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_mkdir_p_file_in_the_way, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test(test_random_hex),
        cmocka_unit_test(test_valid_name),
        cmocka_unit_test(test_split_hostport_ok),
        cmocka_unit_test(test_split_hostport_errors),
        cmocka_unit_test(test_backoff_growth_exact),
        cmocka_unit_test(test_backoff_jitter_bounds),
        cmocka_unit_test(test_backoff_seeds_differ),
        cmocka_unit_test(test_backoff_clamps),
        cmocka_unit_test(test_backoff_small_fractional_growth),
        cmocka_unit_test(test_fmt_numbers),
        cmocka_unit_test(test_log_parse_level),
        cmocka_unit_test_setup_teardown(test_log_logfmt, test_scratch_setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_log_escaping, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_log_level_filter, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_log_long_line, test_scratch_setup,
                                        test_scratch_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
