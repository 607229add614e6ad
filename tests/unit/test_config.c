/* Unit tests for common/config.c and ink_load_config (common/daemon.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "config.h"
#include "daemon.h"
#include "testlib.h"
#include "util.h"

/* One field of each option type. */
typedef struct {
    char *name;
    int64_t max_items;
    bool enabled;
    int64_t timeout_ms;
    uint64_t limit;
} test_cfg;

static const ink_opt opts[] = {
    {"name", INK_OPT_STRING, offsetof(test_cfg, name), "default-name", "a name", 0, 0},
    {"max_items", INK_OPT_INT, offsetof(test_cfg, max_items), "10", "how many items", 1, 100},
    {"enabled", INK_OPT_BOOL, offsetof(test_cfg, enabled), "true", "on or off", 0, 0},
    {"timeout", INK_OPT_DURATION, offsetof(test_cfg, timeout_ms), "5s", "a duration", 0, 0},
    {"limit", INK_OPT_SIZE, offsetof(test_cfg, limit), "1M", "a size", 0, 0},
    {0},
};

/* The same fields without defaults: "" for strings, 0 / false otherwise. */
static const ink_opt opts_nodef[] = {
    {"name", INK_OPT_STRING, offsetof(test_cfg, name), NULL, "a name", 0, 0},
    {"max_items", INK_OPT_INT, offsetof(test_cfg, max_items), NULL, "items", 0, 0},
    {"enabled", INK_OPT_BOOL, offsetof(test_cfg, enabled), NULL, "on or off", 0, 0},
    {"timeout", INK_OPT_DURATION, offsetof(test_cfg, timeout_ms), NULL, "a duration", 0, 0},
    {"limit", INK_OPT_SIZE, offsetof(test_cfg, limit), NULL, "a size", 0, 0},
    {0},
};

typedef struct {
    char dir[128];
    char path[256]; /* <dir>/test.conf */
    test_cfg cfg;
} fixture;

static int setup(void **state)
{
    fixture *f = ink_xcalloc(1, sizeof *f);
    if (test_mkdtemp(f->dir, sizeof f->dir, "config") < 0) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/test.conf", f->dir);
    ink_err err = {0};
    if (ink_config_defaults(opts, &f->cfg, &err) < 0) {
        test_rmtree(f->dir);
        free(f);
        return -1;
    }
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

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static void expect_contains(const char *msg, const char *needle)
{
    if (!strstr(msg, needle))
        fail_msg("error '%s' lacks '%s'", msg, needle);
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    fixture *f = *state;
    assert_string_equal(f->cfg.name, "default-name");
    /* A heap copy owned by the config, not the table's literal. */
    assert_ptr_not_equal(f->cfg.name, opts[0].def);
    assert_int_equal(f->cfg.max_items, 10);
    assert_true(f->cfg.enabled);
    assert_int_equal(f->cfg.timeout_ms, 5000);
    assert_int_equal(f->cfg.limit, 1 << 20);

    /* Applying defaults again replaces (and frees) the old string. */
    ink_err err = {0};
    f->cfg.max_items = 77;
    assert_int_equal(ink_config_defaults(opts, &f->cfg, &err), 0);
    assert_int_equal(f->cfg.max_items, 10);
    assert_string_equal(f->cfg.name, "default-name");

    ink_config_free(opts, &f->cfg);
    assert_null(f->cfg.name);
    ink_config_free(opts, &f->cfg); /* idempotent */
}

static void test_defaults_null(void **state)
{
    (void)state;
    test_cfg cfg = {.max_items = 5, .enabled = true, .timeout_ms = 9, .limit = 9};
    ink_err err = {0};
    int rc = ink_config_defaults(opts_nodef, &cfg, &err);
    if (rc != 0) {
        print_error("NULL defaults: %s\n", err.msg);
        ink_config_free(opts_nodef, &cfg);
    }
    assert_int_equal(rc, 0);
    assert_non_null(cfg.name);
    assert_string_equal(cfg.name, "");
    assert_int_equal(cfg.max_items, 0);
    assert_false(cfg.enabled);
    assert_int_equal(cfg.timeout_ms, 0);
    assert_int_equal(cfg.limit, 0);
    ink_config_free(opts_nodef, &cfg);
    assert_null(cfg.name);
}

static void test_defaults_invalid(void **state)
{
    (void)state;
    /* A bad built-in default is reported, not silently used. */
    static const ink_opt bad[] = {
        {"max_items", INK_OPT_INT, offsetof(test_cfg, max_items), "500", "items", 1, 100},
        {0},
    };
    test_cfg cfg = {0};
    ink_err err = {0};
    assert_int_equal(ink_config_defaults(bad, &cfg, &err), -1);
    expect_contains(err.msg, "default");
    expect_contains(err.msg, "max_items");
}

/* ---- value parsers ---- */

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t ms;
    } ok[] = {
        {"250ms", 250},  {"5s", 5000},     {"2m", 120000},
        {"1h", 3600000}, {"1d", 86400000}, {"0s", 0},
        {"0ms", 0},      {"90s", 90000},   {"106751991167d", 106751991167LL * 86400000LL},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(ok); i++) {
        int64_t ms = -1;
        if (ink_parse_duration_ms(ok[i].s, &ms) != 0)
            fail_msg("duration '%s' rejected", ok[i].s);
        assert_int_equal(ms, ok[i].ms);
    }
    const char *bad[] = {"",
                         "5",
                         "s",
                         "-1s",
                         "5x",
                         "5 s",
                         " 5s",
                         "5S",
                         "1.5s",
                         "5sec",
                         "ms",
                         "99999999999999999999s", /* strtoull overflow */
                         "1000000000000000000d",  /* multiplication overflow */
                         "9300000000000000s",     /* fits uint64, not int64 */
                         "106751991168d"};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad); i++) {
        int64_t ms = 12345;
        if (ink_parse_duration_ms(bad[i], &ms) != -1)
            fail_msg("duration '%s' accepted", bad[i]);
        assert_int_equal(ms, 12345);
    }
}

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t v;
    } ok[] = {
        {"4096", 4096},
        {"0", 0},
        {"64K", 64ULL << 10},
        {"16M", 16ULL << 20},
        {"2G", 2ULL << 30},
        {"1T", 1ULL << 40},
        {"1Gi", 1ULL << 30},
        {"3Ki", 3ULL << 10},
        {"5Mi", 5ULL << 20},
        {"18446744073709551615", UINT64_MAX},
        {"17179869183G", 17179869183ULL << 30},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(ok); i++) {
        uint64_t v = 1;
        if (ink_parse_size(ok[i].s, &v) != 0)
            fail_msg("size '%s' rejected", ok[i].s);
        assert_true(v == ok[i].v);
    }
    const char *bad[] = {"",
                         "K",
                         "-1",
                         "1k",
                         "1.5G",
                         "1 K",
                         " 1",
                         "16E",
                         "1Q",
                         "1KB",
                         "0x10",
                         "17179869184G", /* 2^64: overflow */
                         "99999999999999999999",
                         "1Ti"};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad); i++) {
        uint64_t v = 12345;
        if (ink_parse_size(bad[i], &v) != -1)
            fail_msg("size '%s' accepted", bad[i]);
        assert_true(v == 12345);
    }
}

static void test_parse_bool(void **state)
{
    (void)state;
    const char *yes[] = {"true", "yes", "on", "1", "TRUE", "Yes", "oN"};
    const char *no[] = {"false", "no", "off", "0", "FALSE", "No", "OFF"};
    for (size_t i = 0; i < INK_ARRAY_LEN(yes); i++) {
        bool b = false;
        assert_int_equal(ink_parse_bool(yes[i], &b), 0);
        assert_true(b);
    }
    for (size_t i = 0; i < INK_ARRAY_LEN(no); i++) {
        bool b = true;
        assert_int_equal(ink_parse_bool(no[i], &b), 0);
        assert_false(b);
    }
    const char *bad[] = {"maybe", "", "2", "y", "n", "truee", " true"};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad); i++) {
        bool b = true;
        if (ink_parse_bool(bad[i], &b) != -1)
            fail_msg("bool '%s' accepted", bad[i]);
        assert_true(b);
    }
}

/* ---- ink_config_set ---- */

static void test_config_set(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    assert_int_equal(ink_config_set(opts, &f->cfg, "name", "n1", &err), 0);
    assert_string_equal(f->cfg.name, "n1");
    assert_int_equal(ink_config_set(opts, &f->cfg, "max_items", "100", &err), 0);
    assert_int_equal(f->cfg.max_items, 100);
    assert_int_equal(ink_config_set(opts, &f->cfg, "max_items", "1", &err), 0);
    assert_int_equal(f->cfg.max_items, 1);
    assert_int_equal(ink_config_set(opts, &f->cfg, "enabled", "off", &err), 0);
    assert_false(f->cfg.enabled);
    assert_int_equal(ink_config_set(opts, &f->cfg, "timeout", "2m", &err), 0);
    assert_int_equal(f->cfg.timeout_ms, 120000);
    assert_int_equal(ink_config_set(opts, &f->cfg, "limit", "64K", &err), 0);
    assert_int_equal(f->cfg.limit, 65536);

    assert_int_equal(ink_config_set(opts, &f->cfg, "nope", "1", &err), -1);
    expect_contains(err.msg, "nope");
    /* Bad values leave the field alone. */
    assert_int_equal(ink_config_set(opts, &f->cfg, "max_items", "0", &err), -1);
    expect_contains(err.msg, "[1, 100]");
    assert_int_equal(ink_config_set(opts, &f->cfg, "max_items", "101", &err), -1);
    assert_int_equal(ink_config_set(opts, &f->cfg, "max_items", "", &err), -1);
    assert_int_equal(ink_config_set(opts, &f->cfg, "max_items", "5x", &err), -1);
    assert_int_equal(f->cfg.max_items, 1);
    assert_int_equal(ink_config_set(opts, &f->cfg, "enabled", "maybe", &err), -1);
    assert_false(f->cfg.enabled);
    assert_int_equal(ink_config_set(opts, &f->cfg, "timeout", "5", &err), -1);
    assert_int_equal(f->cfg.timeout_ms, 120000);
    assert_int_equal(ink_config_set(opts, &f->cfg, "limit", "lots", &err), -1);
    assert_int_equal(f->cfg.limit, 65536);
}

/* ---- config files ---- */

static void test_file_values(void **state)
{
    fixture *f = *state;
    write_text(f->path, "# a comment\n"
                        "; another comment\n"
                        "\n"
                        "   \t \n"
                        "  # indented comment\n"
                        "  name   =   \"  keep # this \\\"quoted\\\" \\\\ \"  # trailing\n"
                        "max_items = 42 # inline comment\n"
                        "enabled=no\n"
                        "\ttimeout\t=\t250ms   \n"
                        "limit = 2G");
    ink_err err = {0};
    assert_int_equal(ink_config_load_file(opts, &f->cfg, f->path, false, &err), 0);
    assert_string_equal(f->cfg.name, "  keep # this \"quoted\" \\ ");
    assert_int_equal(f->cfg.max_items, 42);
    assert_false(f->cfg.enabled);
    assert_int_equal(f->cfg.timeout_ms, 250);
    assert_int_equal(f->cfg.limit, 2ULL << 30);
}

static void test_file_values_misc(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    /* CRLF line endings, an empty quoted string, an unquoted value with inner
     * spaces; options not in the file keep their defaults. */
    write_text(f->path, "name = \"\"\r\nmax_items=7\r\n");
    assert_int_equal(ink_config_load_file(opts, &f->cfg, f->path, false, &err), 0);
    assert_string_equal(f->cfg.name, "");
    assert_int_equal(f->cfg.max_items, 7);
    assert_int_equal(f->cfg.timeout_ms, 5000);

    write_text(f->path, "name = two words   \n");
    assert_int_equal(ink_config_load_file(opts, &f->cfg, f->path, false, &err), 0);
    assert_string_equal(f->cfg.name, "two words");

    write_text(f->path, "name = \"a=b\"\n");
    assert_int_equal(ink_config_load_file(opts, &f->cfg, f->path, false, &err), 0);
    assert_string_equal(f->cfg.name, "a=b");

    /* An empty file changes nothing. */
    write_text(f->path, "");
    assert_int_equal(ink_config_load_file(opts, &f->cfg, f->path, false, &err), 0);
    assert_string_equal(f->cfg.name, "a=b");
}

static void expect_file_error(fixture *f, const char *text, const char *where, const char *needle)
{
    write_text(f->path, text);
    ink_err err = {0};
    assert_int_equal(ink_config_load_file(opts, &f->cfg, f->path, false, &err), -1);
    char loc[300];
    snprintf(loc, sizeof loc, "%s:%s", f->path, where);
    expect_contains(err.msg, loc);
    expect_contains(err.msg, needle);
}

static void test_file_errors(void **state)
{
    fixture *f = *state;
    expect_file_error(f, "name = a\nbogus = 1\n", "2:", "'bogus'");
    expect_file_error(f, "# c\n\njust words\n", "3:", "expected 'key = value'");
    expect_file_error(f, "#\nname = a\nmax_items = 3\nname = b\n", "4:", "line 2");
    expect_file_error(f, "max_items = lots\n", "1:", "not an integer");
    expect_file_error(f, "max_items = 12abc\n", "1:", "not an integer");
    expect_file_error(f, "\nmax_items = 1000\n", "2:", "[1, 100]");
    expect_file_error(f, "max_items = 0\n", "1:", "out of range");
    expect_file_error(f, "name = \"open\n", "1:", "unterminated");
    expect_file_error(f, "name = \"open\\\"\n", "1:", "unterminated");
    expect_file_error(f, "\n\n\nname = \"a\" b\n", "4:", "text after quoted value");
    expect_file_error(f, "enabled = maybe\n", "1:", "enabled");
    expect_file_error(f, "timeout = 5\n", "1:", "timeout");
    expect_file_error(f, "limit = 5Q\n", "1:", "limit");
    expect_file_error(f, " = 5\n", "1:", "key");
}

static void test_file_missing(void **state)
{
    fixture *f = *state;
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none.conf", f->dir);
    ink_err err = {0};
    assert_int_equal(ink_config_load_file(opts, &f->cfg, missing, false, &err), -1);
    assert_int_equal(err.errnum, ENOENT);
    expect_contains(err.msg, missing);

    ink_err_set(&err, 0, "stale");
    assert_int_equal(ink_config_load_file(opts, &f->cfg, missing, true, &err), 0);
    assert_string_equal(f->cfg.name, "default-name");

    /* missing_ok forgives only absence: a directory is still an error. */
    ink_err_clear(&err);
    assert_int_equal(ink_config_load_file(opts, &f->cfg, f->dir, true, &err), -1);
    assert_int_not_equal(err.errnum, ENOENT);
}

/* ---- flags ---- */

static int parse(fixture *f, int argc, char **argv, int *idx, ink_err *err)
{
    *idx = 1;
    ink_err_clear(err);
    return ink_config_parse_args(opts, &f->cfg, argc, argv, idx, err);
}

#define ARGC(a) ((int)INK_ARRAY_LEN(a))

static void test_flags_forms(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    int idx;

    char *a1[] = {"prog",         "--name=x",     "--max_items", "7",
                  "--no-enabled", "--timeout=1m", "--limit",     "64K"};
    assert_int_equal(parse(f, ARGC(a1), a1, &idx, &err), 0);
    assert_int_equal(idx, ARGC(a1));
    assert_string_equal(f->cfg.name, "x");
    assert_int_equal(f->cfg.max_items, 7);
    assert_false(f->cfg.enabled);
    assert_int_equal(f->cfg.timeout_ms, 60000);
    assert_int_equal(f->cfg.limit, 65536);

    /* --flag sets a boolean; --flag=false clears it; --no_flag too. */
    char *a2[] = {"prog", "--enabled"};
    assert_int_equal(parse(f, ARGC(a2), a2, &idx, &err), 0);
    assert_true(f->cfg.enabled);
    char *a3[] = {"prog", "--enabled=false"};
    assert_int_equal(parse(f, ARGC(a3), a3, &idx, &err), 0);
    assert_false(f->cfg.enabled);
    char *a4[] = {"prog", "--enabled=yes", "--no_enabled"};
    assert_int_equal(parse(f, ARGC(a4), a4, &idx, &err), 0);
    assert_false(f->cfg.enabled);

    /* Dashes and underscores are interchangeable; the last one wins. */
    char *a5[] = {"prog", "--max-items=3"};
    assert_int_equal(parse(f, ARGC(a5), a5, &idx, &err), 0);
    assert_int_equal(f->cfg.max_items, 3);
    char *a6[] = {"prog", "--max-items", "4", "--max_items=5"};
    assert_int_equal(parse(f, ARGC(a6), a6, &idx, &err), 0);
    assert_int_equal(f->cfg.max_items, 5);

    /* A value may be empty, contain '=', or start with '-'. */
    char *a7[] = {"prog", "--name=a=b"};
    assert_int_equal(parse(f, ARGC(a7), a7, &idx, &err), 0);
    assert_string_equal(f->cfg.name, "a=b");
    char *a8[] = {"prog", "--name="};
    assert_int_equal(parse(f, ARGC(a8), a8, &idx, &err), 0);
    assert_string_equal(f->cfg.name, "");
    char *a9[] = {"prog", "--name", "-x"};
    assert_int_equal(parse(f, ARGC(a9), a9, &idx, &err), 0);
    assert_string_equal(f->cfg.name, "-x");
    assert_int_equal(idx, 3);
}

static void test_flags_errors(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    int idx;

    char *a1[] = {"prog", "--nope=1"};
    assert_int_equal(parse(f, ARGC(a1), a1, &idx, &err), -1);
    expect_contains(err.msg, "unknown flag '--nope=1'");
    char *a2[] = {"prog", "--nope"};
    assert_int_equal(parse(f, ARGC(a2), a2, &idx, &err), -1);
    expect_contains(err.msg, "--nope");
    /* --no- only negates booleans. */
    char *a3[] = {"prog", "--no-name"};
    assert_int_equal(parse(f, ARGC(a3), a3, &idx, &err), -1);
    expect_contains(err.msg, "--no-name");
    char *a4[] = {"prog", "--no-enabled=true"};
    assert_int_equal(parse(f, ARGC(a4), a4, &idx, &err), -1);

    char *a5[] = {"prog", "--name"};
    assert_int_equal(parse(f, ARGC(a5), a5, &idx, &err), -1);
    expect_contains(err.msg, "needs a value");
    char *a6[] = {"prog", "--enabled", "--max-items"};
    assert_int_equal(parse(f, ARGC(a6), a6, &idx, &err), -1);
    expect_contains(err.msg, "--max-items");
    expect_contains(err.msg, "needs a value");

    char *a7[] = {"prog", "--max-items=0"};
    assert_int_equal(parse(f, ARGC(a7), a7, &idx, &err), -1);
    expect_contains(err.msg, "--max-items");
    expect_contains(err.msg, "[1, 100]");
    char *a8[] = {"prog", "--timeout", "soon"};
    assert_int_equal(parse(f, ARGC(a8), a8, &idx, &err), -1);
    expect_contains(err.msg, "timeout");
    char *a9[] = {"prog", "--enabled=maybe"};
    assert_int_equal(parse(f, ARGC(a9), a9, &idx, &err), -1);
    expect_contains(err.msg, "enabled");

    char longflag[300];
    memset(longflag, 'x', sizeof longflag - 1);
    longflag[0] = longflag[1] = '-';
    longflag[sizeof longflag - 1] = '\0';
    char *a10[] = {"prog", longflag};
    assert_int_equal(parse(f, ARGC(a10), a10, &idx, &err), -1);
}

static void test_flags_stop(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    int idx;

    /* Stops at the first non-flag argument; later flags are not parsed. */
    char *a1[] = {"prog", "--name=x", "run", "--name=y", "arg"};
    assert_int_equal(parse(f, ARGC(a1), a1, &idx, &err), 0);
    assert_int_equal(idx, 2);
    assert_string_equal(a1[idx], "run");
    assert_string_equal(f->cfg.name, "x");

    /* A boolean flag does not swallow the next argument. */
    char *a2[] = {"prog", "--enabled", "run"};
    assert_int_equal(parse(f, ARGC(a2), a2, &idx, &err), 0);
    assert_int_equal(idx, 2);

    /* "--" ends the flags: *index is the argument after it. */
    char *a3[] = {"prog", "--max-items=9", "--", "--name=z", "x"};
    assert_int_equal(parse(f, ARGC(a3), a3, &idx, &err), 0);
    assert_int_equal(idx, 3);
    assert_string_equal(a3[idx], "--name=z");
    assert_int_equal(f->cfg.max_items, 9);
    assert_string_equal(f->cfg.name, "x");
    char *a4[] = {"prog", "--"};
    assert_int_equal(parse(f, ARGC(a4), a4, &idx, &err), 0);
    assert_int_equal(idx, 2);

    /* No flags at all; a single dash is not a flag. */
    char *a5[] = {"prog", "run"};
    assert_int_equal(parse(f, ARGC(a5), a5, &idx, &err), 0);
    assert_int_equal(idx, 1);
    char *a6[] = {"prog", "-", "x"};
    assert_int_equal(parse(f, ARGC(a6), a6, &idx, &err), 0);
    assert_int_equal(idx, 1);
    char *a7[] = {"prog"};
    assert_int_equal(parse(f, ARGC(a7), a7, &idx, &err), 0);
    assert_int_equal(idx, 1);

    /* Starting further in: e.g. the flags after a command. */
    char *a8[] = {"prog", "run", "--max-items", "11", "target"};
    idx = 2;
    assert_int_equal(ink_config_parse_args(opts, &f->cfg, ARGC(a8), a8, &idx, &err), 0);
    assert_int_equal(idx, 4);
    assert_int_equal(f->cfg.max_items, 11);

    /* --config is skipped here (ink_load_config reads it), value and all. */
    char *a9[] = {"prog", "--config", "/x.conf", "--config=/y.conf", "--name=c", "cmd"};
    assert_int_equal(parse(f, ARGC(a9), a9, &idx, &err), 0);
    assert_int_equal(idx, 5);
    assert_string_equal(f->cfg.name, "c");
}

/* ---- ink_load_config ---- */

static void test_load_precedence(void **state)
{
    fixture *f = *state;
    write_text(f->path, "name = from-file\nmax_items = 20\ntimeout = 9s\n");
    ink_err err = {0};
    char *argv[] = {"prog", "--max-items=30", "--config", f->path, "run", "--timeout=1s"};
    int idx = 1;
    assert_int_equal(
        ink_load_config(opts, &f->cfg, "/nonexistent/default.conf", ARGC(argv), argv, &idx, &err),
        0);
    assert_int_equal(idx, 4);
    assert_string_equal(argv[idx], "run");
    assert_string_equal(f->cfg.name, "from-file"); /* file over default */
    assert_int_equal(f->cfg.max_items, 30);        /* flag over file, flag before --config */
    assert_int_equal(f->cfg.timeout_ms, 9000); /* file; the flag after the command is not ours */
    assert_int_equal(f->cfg.limit, 1 << 20);   /* default */
    assert_true(f->cfg.enabled);               /* default */
    ink_config_free(opts, &f->cfg);

    /* The default path is used when it exists and nothing else is named. */
    char *argv2[] = {"prog", "--enabled=false"};
    idx = 1;
    assert_int_equal(ink_load_config(opts, &f->cfg, f->path, ARGC(argv2), argv2, &idx, &err), 0);
    assert_int_equal(idx, 2);
    assert_string_equal(f->cfg.name, "from-file");
    assert_int_equal(f->cfg.max_items, 20);
    assert_false(f->cfg.enabled);
    ink_config_free(opts, &f->cfg);

    /* A missing default path is fine: defaults plus flags. */
    char *argv3[] = {"prog", "--name", "flag"};
    idx = 1;
    assert_int_equal(
        ink_load_config(opts, &f->cfg, "/nonexistent/default.conf", ARGC(argv3), argv3, &idx, &err),
        0);
    assert_string_equal(f->cfg.name, "flag");
    assert_int_equal(f->cfg.max_items, 10);
    ink_config_free(opts, &f->cfg);
}

static void test_load_config_flag_forms(void **state)
{
    fixture *f = *state;
    write_text(f->path, "name = from-file\nmax_items = 20\n");
    char other[300];
    snprintf(other, sizeof other, "%s/default.conf", f->dir);
    write_text(other, "name = from-default\nmax_items = 50\n");
    char *cfgeq = ink_xasprintf("--config=%s", f->path);
    ink_err err = {0};
    int idx;

    /* --config=FILE, after another flag; the named file replaces the default. */
    char *a1[] = {"prog", "--enabled", cfgeq};
    idx = 1;
    assert_int_equal(ink_load_config(opts, &f->cfg, other, ARGC(a1), a1, &idx, &err), 0);
    assert_int_equal(idx, 3);
    assert_string_equal(f->cfg.name, "from-file");
    assert_int_equal(f->cfg.max_items, 20);
    ink_config_free(opts, &f->cfg);

    /* --config FILE after a "--name=value" flag. */
    char *a2[] = {"prog", "--max-items=3", "--config", f->path};
    idx = 1;
    assert_int_equal(ink_load_config(opts, &f->cfg, other, ARGC(a2), a2, &idx, &err), 0);
    assert_int_equal(idx, 4);
    assert_string_equal(f->cfg.name, "from-file");
    assert_int_equal(f->cfg.max_items, 3);
    ink_config_free(opts, &f->cfg);

    free(cfgeq);
}

static void test_load_config_after_spaced_flag(void **state)
{
    fixture *f = *state;
    write_text(f->path, "name = from-file\nmax_items = 20\n");
    ink_err err = {0};
    /* --config after a flag whose value is a separate argument ("--name value"). */
    char *a[] = {"prog", "--max-items", "3", "--config", f->path, "run"};
    int idx = 1;
    int rc = ink_load_config(opts, &f->cfg, "/nonexistent/default.conf", ARGC(a), a, &idx, &err);
    if (rc == 0 && f->cfg.name && strcmp(f->cfg.name, "from-file") != 0)
        print_error("'--max-items 3 --config FILE': file ignored (name='%s')\n", f->cfg.name);
    assert_int_equal(rc, 0);
    assert_int_equal(idx, 5);
    assert_int_equal(f->cfg.max_items, 3);
    assert_string_equal(f->cfg.name, "from-file");
    ink_config_free(opts, &f->cfg);
}

static void test_load_config_missing(void **state)
{
    fixture *f = *state;
    char missing[300];
    snprintf(missing, sizeof missing, "%s/named.conf", f->dir);
    char *eq = ink_xasprintf("--config=%s", missing);
    ink_err err = {0};
    int idx;

    /* A missing file named explicitly is an error, in either form. */
    char *a1[] = {"prog", "--config", missing};
    idx = 1;
    assert_int_equal(
        ink_load_config(opts, &f->cfg, "/nonexistent/default.conf", ARGC(a1), a1, &idx, &err), -1);
    assert_int_equal(err.errnum, ENOENT);
    expect_contains(err.msg, missing);
    ink_config_free(opts, &f->cfg);

    char *a2[] = {"prog", eq};
    idx = 1;
    ink_err_clear(&err);
    assert_int_equal(
        ink_load_config(opts, &f->cfg, "/nonexistent/default.conf", ARGC(a2), a2, &idx, &err), -1);
    assert_int_equal(err.errnum, ENOENT);
    ink_config_free(opts, &f->cfg);

    /* Errors inside the file and in the flags come through. */
    write_text(f->path, "max_items = 500\n");
    char *a3[] = {"prog", "--config", f->path};
    idx = 1;
    ink_err_clear(&err);
    assert_int_equal(ink_load_config(opts, &f->cfg, NULL, ARGC(a3), a3, &idx, &err), -1);
    expect_contains(err.msg, ":1:");
    ink_config_free(opts, &f->cfg);

    char *a4[] = {"prog", "--bogus"};
    idx = 1;
    ink_err_clear(&err);
    assert_int_equal(
        ink_load_config(opts, &f->cfg, "/nonexistent/default.conf", ARGC(a4), a4, &idx, &err), -1);
    expect_contains(err.msg, "--bogus");
    ink_config_free(opts, &f->cfg);
    free(eq);
}

static void test_load_config_without_value(void **state)
{
    fixture *f = *state;
    /* "--config" with nothing after it is a missing value, not a silent fallback to the
     * default path. */
    char def[300];
    snprintf(def, sizeof def, "%s/default.conf", f->dir);
    write_text(def, "name = from-default\n");
    ink_err err = {0};
    char *a[] = {"prog", "--config"};
    int idx = 1;
    int rc = ink_load_config(opts, &f->cfg, def, ARGC(a), a, &idx, &err);
    if (rc == 0)
        print_error("'--config' without a value accepted (name='%s')\n", f->cfg.name);
    ink_config_free(opts, &f->cfg);
    assert_int_equal(rc, -1);
    expect_contains(err.msg, "--config");
}

/* ---- reference ---- */

static void test_reference(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    ink_config_print_reference(opts, out);
    assert_int_equal(fclose(out), 0);
    assert_true(len > 0);
    for (const ink_opt *o = opts; o->name; o++) {
        if (!strstr(buf, o->name))
            fail_msg("reference lacks '%s'", o->name);
        assert_non_null(strstr(buf, o->help));
    }
    assert_non_null(strstr(buf, "default-name"));
    assert_non_null(strstr(buf, "duration"));
    assert_non_null(strstr(buf, "boolean"));
    free(buf);

    /* Empty defaults read "(empty)". */
    buf = NULL;
    out = open_memstream(&buf, &len);
    assert_non_null(out);
    ink_config_print_reference(opts_nodef, out);
    assert_int_equal(fclose(out), 0);
    assert_non_null(strstr(buf, "(empty)"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test(test_defaults_null),
        cmocka_unit_test(test_defaults_invalid),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_bool),
        cmocka_unit_test_setup_teardown(test_config_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_values_misc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flags_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flags_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flags_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_config_flag_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_config_after_spaced_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_config_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_config_without_value, setup, teardown),
        cmocka_unit_test(test_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
