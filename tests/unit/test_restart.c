/* Unit tests for node-agent/runtime/restart.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "restart.h"

static void test_backoff_and_crash_loop(void **state)
{
    (void)state;
    ink_restart r = {0};
    int64_t now = 1000000;
    int64_t expect[] = {1000,  2000,   4000,   8000,   16000, 32000,
                        64000, 128000, 256000, 300000, 300000};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        ink_restart_started(&r, now);
        now += 500; /* dies quickly */
        assert_int_equal(ink_restart_exited(&r, 1, false, now), expect[i]);
        assert_false(ink_restart_due(&r, now + expect[i] - 1));
        assert_true(ink_restart_due(&r, now + expect[i]));
        assert_int_equal(r.crash_loop, i + 1 >= INK_RESTART_CRASH_LOOP_AFTER);
        now += expect[i];
    }
    assert_int_equal(r.restarts, 11);
    assert_string_equal(r.reason, "exited with code 1");
}

static void test_stable_run_resets(void **state)
{
    (void)state;
    ink_restart r = {0};
    int64_t now = 0;
    for (int i = 0; i < 6; i++) {
        ink_restart_started(&r, now);
        now += 100;
        now += ink_restart_exited(&r, 2, false, now);
    }
    assert_true(r.crash_loop);
    ink_restart_started(&r, now);
    now += INK_RESTART_STABLE_MS;
    assert_int_equal(ink_restart_exited(&r, 0, false, now), INK_RESTART_INITIAL_MS);
    assert_false(r.crash_loop);
    assert_int_equal(r.restarts, 7);
}

static void test_reasons(void **state)
{
    ink_restart unknown = {0};
    ink_restart_started(&unknown, 1000);
    ink_restart_exited(&unknown, -1, false, 2000);
    assert_string_equal(unknown.reason, "ended (exit status unknown)");
    (void)state;
    ink_restart r = {0};
    ink_restart_started(&r, 0);
    ink_restart_exited(&r, 137, true, 10);
    assert_non_null(strstr(r.reason, "out of memory"));
    ink_restart_started(&r, 20);
    ink_restart_exited(&r, 143, false, 30);
    assert_string_equal(r.reason, "killed by signal 15");
    ink_restart_started(&r, 40);
    assert_false(ink_restart_due(&r, 1000000)); /* running: nothing scheduled */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_and_crash_loop),
        cmocka_unit_test(test_stable_run_resets),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
