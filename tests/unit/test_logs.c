/* Unit tests for node-agent/runtime/logs.c: FIFO capture, timestamps,
 * rotation, tail/since reads, and logs surviving an agent restart. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "logs.h"
#include "testlib.h"
#include "util.h"

typedef test_scratch fixture;

typedef struct {
    char lines[64][128];
    char streams[64];
    int64_t ms[64];
    int n;
} collected;

static void collect(const ink_log_line *l, void *arg)
{
    collected *c = arg;
    if (c->n < 64) {
        snprintf(c->lines[c->n], sizeof c->lines[c->n], "%.*s", (int)l->len, l->text);
        c->streams[c->n] = l->stream;
        c->ms[c->n] = l->unix_ms;
        c->n++;
    }
}

/* A sink with the workload's write ends, as the agent hands them to runsc. */
typedef struct {
    ink_log_sink *sink;
    int out, err;
} opened_sink;

static opened_sink open_sink(const char *dir, const ink_log_limits *limits)
{
    opened_sink o;
    ink_err err = {0};
    if (ink_log_sink_open(dir, limits, &o.sink, &err) < 0 ||
        ink_log_sink_workload_fds(o.sink, &o.out, &o.err, &err) < 0)
        fail_msg("%s", err.msg);
    return o;
}

static void close_sink(opened_sink *o)
{
    close(o->out);
    close(o->err);
    ink_log_sink_close(o->sink);
}

static void put(int fd, const char *s)
{
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static void test_capture(void **state)
{
    fixture *f = *state;
    opened_sink o = open_sink(f->dir, NULL);
    ink_log_sink *s = o.sink;
    int out = o.out, errfd = o.err;
    ink_err err = {0};
    int64_t before = ink_now_ms();
    put(out, "hello\nwor");
    put(errfd, "oops\n");
    assert_true(ink_log_sink_pump(s, &err) > 0);
    put(out, "ld\n");
    ink_log_sink_pump(s, &err);
    assert_int_equal(ink_log_sink_system(s, "restarted (exit 1)", &err), 0);
    collected c = {0};
    assert_int_equal(ink_log_read(f->dir, 0, 0, collect, &c, &err), 0);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.lines[0], "hello");
    assert_int_equal(c.streams[0], 'o');
    assert_string_equal(c.lines[1], "oops");
    assert_int_equal(c.streams[1], 'e');
    assert_string_equal(c.lines[2], "world"); /* partial line joined */
    assert_int_equal(c.streams[3], 's');
    assert_true(c.ms[0] >= before && c.ms[0] <= ink_now_ms());
    /* since: nothing from the future */
    collected none = {0};
    assert_int_equal(ink_log_read(f->dir, 0, ink_now_ms() + 10000, collect, &none, &err), 0);
    assert_int_equal(none.n, 0);
    close_sink(&o);
}

static void test_rotation_and_tail(void **state)
{
    fixture *f = *state;
    ink_log_limits lim = {.max_file_bytes = 300, .keep = 2};
    opened_sink o = open_sink(f->dir, &lim);
    ink_log_sink *s = o.sink;
    int out = o.out;
    ink_err err = {0};
    for (int i = 0; i < 60; i++) {
        char line[32];
        snprintf(line, sizeof line, "line %02d\n", i);
        put(out, line);
        ink_log_sink_pump(s, &err);
    }
    struct stat st;
    char *p0 = ink_xasprintf("%s/current.log", f->dir),
         *p2 = ink_xasprintf("%s/current.log.2", f->dir),
         *p3 = ink_xasprintf("%s/current.log.3", f->dir);
    assert_int_equal(stat(p0, &st), 0);
    assert_true((uint64_t)st.st_size <= lim.max_file_bytes);
    assert_int_equal(stat(p2, &st), 0);
    assert_int_equal(stat(p3, &st), -1); /* only `keep` rotated files */
    free(p0);
    free(p2);
    free(p3);
    collected c = {0};
    assert_int_equal(ink_log_read(f->dir, 5, 0, collect, &c, &err), 0);
    assert_int_equal(c.n, 5);
    assert_string_equal(c.lines[0], "line 55");
    assert_string_equal(c.lines[4], "line 59");
    close_sink(&o);
}

static void test_long_line_split(void **state)
{
    fixture *f = *state;
    opened_sink o = open_sink(f->dir, NULL);
    ink_log_sink *s = o.sink;
    int out = o.out;
    ink_err err = {0};
    size_t n = INK_LOG_LINE_MAX + 10;
    char *big = ink_xmalloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\n';
    assert_int_equal(write(out, big, n + 1), (ssize_t)(n + 1));
    free(big);
    ink_log_sink_pump(s, &err);
    collected c = {0};
    assert_int_equal(ink_log_read(f->dir, 0, 0, collect, &c, &err), 0);
    assert_int_equal(c.n, 2);
    close_sink(&o);
}

static void test_survives_agent_restart(void **state)
{
    fixture *f = *state;
    opened_sink o = open_sink(f->dir, NULL);
    ink_log_sink *s = o.sink;
    int out = o.out;
    ink_err err = {0};
    /* The agent goes away; the app keeps writing without EPIPE/SIGPIPE. */
    ink_log_sink_close(s);
    signal(SIGPIPE, SIG_DFL);
    put(out, "while the agent was down\n");
    /* A new agent re-adopts the FIFOs and drains them. */
    assert_int_equal(ink_log_sink_open(f->dir, NULL, &s, &err), 0);
    o.sink = s;
    ink_log_sink_pump(s, &err);
    collected c = {0};
    assert_int_equal(ink_log_read(f->dir, 0, 0, collect, &c, &err), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.lines[0], "while the agent was down");
    close_sink(&o);
}

/* Followers see each line as it is written; and once the sandbox has
 * closed its ends, the read ends do not report hang-up (a poll loop on
 * them would spin). */
static void test_listener_and_no_hangup(void **state)
{
    fixture *f = *state;
    opened_sink o = open_sink(f->dir, NULL);
    collected live = {0};
    ink_log_sink_set_listener(o.sink, collect, &live);
    put(o.out, "one\n");
    put(o.err, "two\n");
    ink_err err = {0};
    ink_log_sink_pump(o.sink, &err);
    assert_int_equal(ink_log_sink_system(o.sink, "three", &err), 0);
    assert_int_equal(live.n, 3);
    assert_string_equal(live.lines[0], "one");
    assert_int_equal(live.streams[1], 'e');
    assert_int_equal(live.streams[2], 's');
    close(o.out);
    close(o.err);
    o.out = o.err = -1;
    int fds[2];
    ink_log_sink_read_fds(o.sink, fds);
    struct pollfd p[2] = {{.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};
    assert_int_equal(poll(p, 2, 50), 0);
    ink_log_sink_set_listener(o.sink, NULL, NULL);
    ink_log_sink_close(o.sink);
}

static void test_not_a_fifo(void **state)
{
    fixture *f = *state;
    char *p = ink_xasprintf("%s/stdout.fifo", f->dir);
    ink_err err = {0};
    assert_int_equal(ink_write_file_atomic(p, "x", 1, 0600, &err), 0);
    free(p);
    ink_log_sink *s;
    assert_int_equal(ink_log_sink_open(f->dir, NULL, &s, &err), -1);
    assert_non_null(strstr(err.msg, "not a FIFO"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_capture, test_scratch_setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_rotation_and_tail, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_long_line_split, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_survives_agent_restart, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_listener_and_no_hangup, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_not_a_fifo, test_scratch_setup, test_scratch_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
