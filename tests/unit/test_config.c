/* Unit tests for common/config.c and ink_load_config (common/daemon.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "daemon.h"
#include "testlib.h"
#include "util.h"

typedef struct {
    char *name;
    int64_t max_items;
    bool enabled;
    int64_t timeout_ms;
    uint64_t limit;
} test_cfg;

static const ink_opt opts[] = {
    {"name", INK_OPT_STRING, offsetof(test_cfg, name), "default-name", "a name", 0, 0},
    {"max_items", INK_OPT_INT, offsetof(test_cfg, max_items), "10", "items", 1, 100},
    {"enabled", INK_OPT_BOOL, offsetof(test_cfg, enabled), "true", "on or off", 0, 0},
    {"timeout", INK_OPT_DURATION, offsetof(test_cfg, timeout_ms), "5s", "a duration", 0, 0},
    {"limit", INK_OPT_SIZE, offsetof(test_cfg, limit), "1M", "a size", 0, 0},
    {0},
};

typedef struct {
    char dir[128];
    test_cfg cfg;
} fixture;

static int setup(void **state)
{
    fixture *f = ink_xcalloc(1, sizeof *f);
    if (test_mkdtemp(f->dir, sizeof f->dir, "config") < 0)
        return -1;
    ink_err err = {0};
    if (ink_config_defaults(opts, &f->cfg, &err) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ink_config_free(opts, &f->cfg);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

static char *write_conf(fixture *f, const char *text)
{
    char *path = ink_xasprintf("%s/test.conf", f->dir);
    ink_err err = {0};
    assert_int_equal(ink_write_file_atomic(path, text, strlen(text), 0600, &err), 0);
    return path;
}

static void test_defaults(void **state)
{
    fixture *f = *state;
    assert_string_equal(f->cfg.name, "default-name");
    assert_int_equal(f->cfg.max_items, 10);
    assert_true(f->cfg.enabled);
    assert_int_equal(f->cfg.timeout_ms, 5000);
    assert_int_equal(f->cfg.limit, 1 << 20);
}

static void test_value_parsers(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(ink_parse_duration_ms("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(ink_parse_duration_ms("2m", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(ink_parse_duration_ms("1d", &ms), 0);
    assert_int_equal(ms, 86400000);
    const char *bad_d[] = {"", "5", "s", "-1s", "5x", "99999999999999999999s"};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad_d); i++)
        assert_int_equal(ink_parse_duration_ms(bad_d[i], &ms), -1);
    uint64_t sz;
    assert_int_equal(ink_parse_size("4096", &sz), 0);
    assert_int_equal(sz, 4096);
    assert_int_equal(ink_parse_size("16M", &sz), 0);
    assert_int_equal(sz, 16 << 20);
    assert_int_equal(ink_parse_size("1Gi", &sz), 0);
    assert_int_equal(sz, 1ULL << 30);
    assert_int_equal(ink_parse_size("1Q", &sz), -1);
    assert_int_equal(ink_parse_size("99999999999T", &sz), -1);
    bool b;
    assert_int_equal(ink_parse_bool("YES", &b), 0);
    assert_true(b);
    assert_int_equal(ink_parse_bool("off", &b), 0);
    assert_false(b);
    assert_int_equal(ink_parse_bool("maybe", &b), -1);
}

static void test_file(void **state)
{
    fixture *f = *state;
    char *path = write_conf(f, "# comment\n"
                               "; also a comment\n"
                               "\n"
                               "  name   =   \"  keep # this \\\"quoted\\\"\"  # trailing\n"
                               "max_items = 42 # inline comment\n"
                               "enabled=no\n"
                               "timeout = 250ms\n"
                               "limit = 2G\n");
    ink_err err = {0};
    assert_int_equal(ink_config_load_file(opts, &f->cfg, path, false, &err), 0);
    assert_string_equal(f->cfg.name, "  keep # this \"quoted\"");
    assert_int_equal(f->cfg.max_items, 42);
    assert_false(f->cfg.enabled);
    assert_int_equal(f->cfg.timeout_ms, 250);
    assert_int_equal(f->cfg.limit, 2ULL << 30);
    free(path);
}

static void expect_file_error(fixture *f, const char *text, const char *needle)
{
    char *path = write_conf(f, text);
    ink_err err = {0};
    assert_int_equal(ink_config_load_file(opts, &f->cfg, path, false, &err), -1);
    if (!strstr(err.msg, needle))
        fail_msg("error '%s' lacks '%s'", err.msg, needle);
    free(path);
}

static void test_file_errors(void **state)
{
    fixture *f = *state;
    expect_file_error(f, "name = a\nbogus = 1\n", "test.conf:2: unknown option 'bogus'");
    expect_file_error(f, "\n\njust words\n", "test.conf:3: expected 'key = value'");
    expect_file_error(f, "name = a\nname = b\n", "test.conf:2: 'name' already set on line 1");
    expect_file_error(f, "max_items = lots\n", "test.conf:1: max_items: 'lots' is not an integer");
    expect_file_error(f, "max_items = 1000\n", "out of range [1, 100]");
    expect_file_error(f, "name = \"open\n", "test.conf:1: unterminated quoted value");
    expect_file_error(f, "name = \"a\" b\n", "text after quoted value");
    expect_file_error(f, "timeout = 5\n", "not a duration");
    expect_file_error(f, " = 5\n", "missing key");
    char *missing = ink_xasprintf("%s/none.conf", f->dir);
    ink_err err = {0};
    assert_int_equal(ink_config_load_file(opts, &f->cfg, missing, false, &err), -1);
    assert_int_equal(err.errnum, ENOENT);
    assert_int_equal(ink_config_load_file(opts, &f->cfg, missing, true, &err), 0);
    free(missing);
}

static void test_flags(void **state)
{
    fixture *f = *state;
    char *argv[] = {"prog",         "--name=x",     "--max-items", "7",
                    "--no-enabled", "--timeout=1m", "cmd",         "--limit=5"};
    int idx = 1;
    ink_err err = {0};
    assert_int_equal(ink_config_parse_args(opts, &f->cfg, 8, argv, &idx, &err), 0);
    assert_int_equal(idx, 6); /* stopped at the command */
    assert_string_equal(f->cfg.name, "x");
    assert_int_equal(f->cfg.max_items, 7);
    assert_false(f->cfg.enabled);
    assert_int_equal(f->cfg.timeout_ms, 60000);
    assert_int_equal(f->cfg.limit, 1 << 20);

    char *argv2[] = {"prog", "--enabled", "--", "--name=y"};
    idx = 1;
    assert_int_equal(ink_config_parse_args(opts, &f->cfg, 4, argv2, &idx, &err), 0);
    assert_true(f->cfg.enabled);
    assert_int_equal(idx, 3);
    assert_string_equal(f->cfg.name, "x");

    char *unknown[] = {"prog", "--nope=1"};
    idx = 1;
    assert_int_equal(ink_config_parse_args(opts, &f->cfg, 2, unknown, &idx, &err), -1);
    assert_non_null(strstr(err.msg, "unknown flag '--nope=1'"));
    char *novalue[] = {"prog", "--name"};
    idx = 1;
    assert_int_equal(ink_config_parse_args(opts, &f->cfg, 2, novalue, &idx, &err), -1);
    assert_non_null(strstr(err.msg, "needs a value"));
    char *badval[] = {"prog", "--max-items=0"};
    idx = 1;
    assert_int_equal(ink_config_parse_args(opts, &f->cfg, 2, badval, &idx, &err), -1);
    assert_non_null(strstr(err.msg, "--max-items"));
}

static void test_load_precedence(void **state)
{
    fixture *f = *state;
    char *path = write_conf(f, "name = from-file\nmax_items = 20\n");
    test_cfg cfg = {0};
    ink_err err = {0};
    /* Flags win over the file wherever --config stands. */
    char *argv[] = {"prog", "--max-items=30", "--config", path, "run"};
    int idx = 1;
    assert_int_equal(ink_load_config(opts, &cfg, "/nonexistent/default.conf", 5, argv, &idx, &err),
                     0);
    assert_int_equal(idx, 4);
    assert_string_equal(cfg.name, "from-file");
    assert_int_equal(cfg.max_items, 30);
    assert_int_equal(cfg.timeout_ms, 5000); /* default */
    ink_config_free(opts, &cfg);

    char *cfgflag = ink_xasprintf("--config=%s", path);
    char *argv2[] = {"prog", cfgflag};
    idx = 1;
    assert_int_equal(ink_load_config(opts, &cfg, NULL, 2, argv2, &idx, &err), 0);
    assert_int_equal(cfg.max_items, 20);
    ink_config_free(opts, &cfg);
    free(cfgflag);

    /* A missing default file is fine; a missing named one is not. */
    char *argv3[] = {"prog", "--config", "/nonexistent/named.conf"};
    idx = 1;
    assert_int_equal(ink_load_config(opts, &cfg, "/nonexistent/default.conf", 3, argv3, &idx, &err),
                     -1);
    assert_non_null(strstr(err.msg, "/nonexistent/named.conf"));
    ink_config_free(opts, &cfg);
    free(path);
}

static void test_reference(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ink_config_print_reference(opts, out);
    fclose(out);
    for (const ink_opt *o = opts; o->name; o++)
        assert_non_null(strstr(buf, o->name));
    assert_non_null(strstr(buf, "duration"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test(test_value_parsers),
        cmocka_unit_test_setup_teardown(test_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_precedence, setup, teardown),
        cmocka_unit_test(test_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
