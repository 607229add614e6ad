/* Unit tests for node-agent/runtime/bundle.c: config.json from an image
 * config and an assignment. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bundle.h"
#include "cgroup.h"
#include "testlib.h"
#include "util.h"

typedef struct {
    char dir[128];
    char rootfs[192];
} fixture;

static int setup(void **state)
{
    fixture *f = ink_xcalloc(1, sizeof *f);
    if (test_mkdtemp(f->dir, sizeof f->dir, "bundle") < 0)
        return -1;
    snprintf(f->rootfs, sizeof f->rootfs, "%s/rootfs", f->dir);
    char *etc = ink_xasprintf("%s/etc", f->rootfs);
    ink_err err = {0};
    ink_mkdir_p(etc, 0755, &err);
    const char *passwd = "root:x:0:0:root:/root:/bin/sh\n"
                         "www:x:33:34:www:/var/www:/bin/false\n"
                         "broken-line\n";
    const char *group = "root:x:0:\nweb:x:34:\nextra:x:500:\n";
    char *p = ink_xasprintf("%s/passwd", etc), *g = ink_xasprintf("%s/group", etc);
    ink_write_file_atomic(p, passwd, strlen(passwd), 0644, &err);
    ink_write_file_atomic(g, group, strlen(group), 0644, &err);
    free(p);
    free(g);
    free(etc);
    *state = f;
    return 0;
}

static char *entry[] = {"/bin/busybox"};
static char *cmd[] = {"httpd", "-f", "-p", "8080"};
static char *img_env[] = {"PATH=/custom/bin", "FOO=image", "BAD", "=nameless"};

static ink_image_config image(void)
{
    ink_image_config c = {0};
    c.entrypoint = entry;
    c.nentrypoint = 1;
    c.cmd = cmd;
    c.ncmd = 4;
    c.env = img_env;
    c.nenv = 4;
    c.working_dir = "/srv";
    c.user = "www";
    return c;
}

static json_t *render(fixture *f, const Ink__V1__Assignment *a, const ink_image_config *img,
                      const char *netns)
{
    ink_bundle_spec spec = {
        .assignment = a, .image = img, .rootfs = f->rootfs, .netns_path = netns};
    char *text = NULL;
    ink_err err = {0};
    if (ink_bundle_config(&spec, &text, &err) < 0)
        fail_msg("%s", err.msg);
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    free(text);
    assert_non_null(j);
    return j;
}

static const char *str_at(json_t *arr, size_t i)
{
    return json_string_value(json_array_get(arr, i));
}

static bool env_has(json_t *cfg, const char *kv)
{
    json_t *env = json_object_get(json_object_get(cfg, "process"), "env");
    size_t i;
    json_t *v;
    json_array_foreach(env, i, v)
    {
        if (strcmp(json_string_value(v), kv) == 0)
            return true;
    }
    return false;
}

static void test_image_defaults(void **state)
{
    fixture *f = *state;
    Ink__V1__Assignment a = INK__V1__ASSIGNMENT__INIT;
    a.workload_id = "web-0";
    a.app = "web";
    a.port = 8080;
    ink_image_config img = image();
    json_t *cfg = render(f, &a, &img, "/run/netns/ink-web-0");
    json_t *proc = json_object_get(cfg, "process");
    json_t *args = json_object_get(proc, "args");
    assert_int_equal(json_array_size(args), 5);
    assert_string_equal(str_at(args, 0), "/bin/busybox");
    assert_string_equal(str_at(args, 1), "httpd");
    assert_string_equal(json_string_value(json_object_get(proc, "cwd")), "/srv");
    /* "www" from the image's passwd, primary group 34. */
    assert_int_equal(json_integer_value(json_object_get(json_object_get(proc, "user"), "uid")), 33);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(proc, "user"), "gid")), 34);
    assert_true(env_has(cfg, "PATH=/custom/bin"));
    assert_true(env_has(cfg, "FOO=image"));
    assert_true(env_has(cfg, "PORT=8080"));
    assert_false(env_has(cfg, "BAD"));
    /* Hardened defaults. */
    assert_true(json_is_true(json_object_get(proc, "noNewPrivileges")));
    json_t *caps = json_object_get(proc, "capabilities");
    assert_int_equal(json_array_size(json_object_get(caps, "bounding")), 1);
    assert_string_equal(str_at(json_object_get(caps, "bounding"), 0), "CAP_NET_BIND_SERVICE");
    assert_int_equal(json_array_size(json_object_get(caps, "ambient")), 0);
    json_t *root = json_object_get(cfg, "root");
    assert_true(json_is_true(json_object_get(root, "readonly")));
    assert_string_equal(json_string_value(json_object_get(root, "path")), f->rootfs);
    json_t *linux_ = json_object_get(cfg, "linux");
    json_t *res = json_object_get(linux_, "resources");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "memory"), "limit")),
                     INK_DEFAULT_MEMORY_BYTES);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "pids"), "limit")),
                     ink_bundle_host_pids(INK_DEFAULT_PIDS));
    /* RLIMIT_NPROC would reach the host Sentry process: never set. */
    assert_int_equal(json_array_size(json_object_get(proc, "rlimits")), 1);
    assert_true(json_array_size(json_object_get(linux_, "maskedPaths")) > 5);
    assert_int_equal(json_array_size(json_object_get(linux_, "devices")), 0);
    json_t *ns = json_object_get(linux_, "namespaces");
    json_t *net = json_array_get(ns, json_array_size(ns) - 1);
    assert_string_equal(json_string_value(json_object_get(net, "type")), "network");
    assert_string_equal(json_string_value(json_object_get(net, "path")), "/run/netns/ink-web-0");
    /* /tmp is writable memory, the root is not. */
    bool tmp = false;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(cfg, "mounts"), i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "destination")), "/tmp") == 0)
            tmp = strcmp(json_string_value(json_object_get(m, "type")), "tmpfs") == 0;
    }
    assert_true(tmp);
    assert_string_equal(json_string_value(json_object_get(cfg, "hostname")), "web");
    json_decref(cfg);
}

static void test_app_overrides(void **state)
{
    fixture *f = *state;
    char *command[] = {"/bin/sh", "-c"};
    char *args[] = {"exec httpd -f"};
    Ink__V1__EnvVar e1 = INK__V1__ENV_VAR__INIT, e2 = INK__V1__ENV_VAR__INIT,
                    s1 = INK__V1__ENV_VAR__INIT;
    e1.name = "FOO";
    e1.value = "app";
    e2.name = "PORT";
    e2.value = "9999";
    s1.name = "FOO";
    s1.value = "secret";
    Ink__V1__EnvVar *env[] = {&e1, &e2}, *secret[] = {&s1};
    Ink__V1__Resources r = INK__V1__RESOURCES__INIT;
    r.cpu_millis = 500;
    r.memory_bytes = 64 << 20;
    r.pids = 32;
    Ink__V1__Assignment a = INK__V1__ASSIGNMENT__INIT;
    a.workload_id = "web-1";
    a.port = 80;
    a.command = command;
    a.n_command = 2;
    a.args = args;
    a.n_args = 1;
    a.env = env;
    a.n_env = 2;
    a.secret_env = secret;
    a.n_secret_env = 1;
    a.resources = &r;
    ink_image_config img = image();
    img.user = "1234:extra";
    json_t *cfg = render(f, &a, &img, NULL);
    json_t *proc = json_object_get(cfg, "process");
    json_t *argv = json_object_get(proc, "args");
    /* command replaces the entrypoint and drops the image cmd */
    assert_int_equal(json_array_size(argv), 3);
    assert_string_equal(str_at(argv, 0), "/bin/sh");
    assert_string_equal(str_at(argv, 2), "exec httpd -f");
    /* secret env wins over app env, which wins over the image */
    assert_true(env_has(cfg, "FOO=secret"));
    assert_false(env_has(cfg, "FOO=app"));
    assert_true(env_has(cfg, "PORT=9999"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(proc, "user"), "uid")),
                     1234);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(proc, "user"), "gid")),
                     500);
    json_t *res = json_object_get(json_object_get(cfg, "linux"), "resources");
    json_t *cpu = json_object_get(res, "cpu");
    assert_int_equal(json_integer_value(json_object_get(cpu, "quota")), 50000);
    assert_int_equal(json_integer_value(json_object_get(cpu, "period")), 100000);
    assert_int_equal(json_integer_value(json_object_get(cpu, "shares")), 512);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "memory"), "limit")),
                     64 << 20);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(res, "pids"), "limit")),
                     12 * 32 + 256);
    json_t *ns = json_object_get(json_object_get(cfg, "linux"), "namespaces");
    assert_null(json_object_get(json_array_get(ns, json_array_size(ns) - 1), "path"));
    /* args alone replace only the image cmd */
    a.n_command = 0;
    json_decref(cfg);
    cfg = render(f, &a, &img, NULL);
    argv = json_object_get(json_object_get(cfg, "process"), "args");
    assert_int_equal(json_array_size(argv), 2);
    assert_string_equal(str_at(argv, 0), "/bin/busybox");
    assert_string_equal(str_at(argv, 1), "exec httpd -f");
    json_decref(cfg);
}

static void test_errors(void **state)
{
    fixture *f = *state;
    Ink__V1__Assignment a = INK__V1__ASSIGNMENT__INIT;
    a.workload_id = "w";
    ink_image_config empty = {0};
    ink_bundle_spec spec = {.assignment = &a, .image = &empty, .rootfs = f->rootfs};
    char *text = NULL;
    ink_err err = {0};
    assert_int_equal(ink_bundle_config(&spec, &text, &err), -1);
    assert_non_null(strstr(err.msg, "nothing to run"));

    ink_image_config img = image();
    img.user = "nobody-here";
    spec.image = &img;
    assert_int_equal(ink_bundle_config(&spec, &text, &err), -1);
    assert_non_null(strstr(err.msg, "'nobody-here' is not in the image's /etc/passwd"));

    img.user = "www:nogroup";
    assert_int_equal(ink_bundle_config(&spec, &text, &err), -1);
    assert_non_null(strstr(err.msg, "group 'nogroup'"));

    img.user = NULL;
    Ink__V1__EnvVar bad = INK__V1__ENV_VAR__INIT;
    bad.name = "A=B";
    bad.value = "x";
    Ink__V1__EnvVar *env[] = {&bad};
    a.env = env;
    a.n_env = 1;
    assert_int_equal(ink_bundle_config(&spec, &text, &err), -1);
    assert_non_null(strstr(err.msg, "invalid variable name 'A=B'"));

    a.n_env = 0;
    spec.rootfs = "relative/rootfs";
    assert_int_equal(ink_bundle_config(&spec, &text, &err), -1);
}

/* Startup CPU boost: the boot quota only raises the ceiling; shares stay
 * the app's, and an app asking for more than the boot quota keeps its own. */
static json_t *cpu_of(fixture *f, uint32_t app_millis, uint32_t boot_millis)
{
    Ink__V1__Assignment a = INK__V1__ASSIGNMENT__INIT;
    Ink__V1__Resources r = INK__V1__RESOURCES__INIT;
    a.workload_id = "w";
    r.cpu_millis = app_millis;
    a.resources = &r;
    ink_image_config img = image();
    ink_bundle_spec spec = {
        .assignment = &a, .image = &img, .rootfs = f->rootfs, .boot_cpu_millis = boot_millis};
    char *text = NULL;
    ink_err err = {0};
    if (ink_bundle_config(&spec, &text, &err) < 0)
        fail_msg("%s", err.msg);
    json_t *cfg = json_loads(text, 0, NULL);
    free(text);
    json_t *cpu = json_deep_copy(
        json_object_get(json_object_get(json_object_get(cfg, "linux"), "resources"), "cpu"));
    json_decref(cfg);
    return cpu;
}

static void test_boot_cpu(void **state)
{
    fixture *f = *state;
    struct {
        uint32_t app, boot;
        json_int_t quota, shares;
    } cases[] = {
        {250, 1000, 100000, 256},   /* boosted to 1 CPU, weight of 0.25 */
        {250, 0, 25000, 256},       /* boost off */
        {2000, 1000, 200000, 2048}, /* asks for more than the boost */
        {1000, 1000, 100000, 1024},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *cpu = cpu_of(f, cases[i].app, cases[i].boot);
        assert_int_equal(json_integer_value(json_object_get(cpu, "quota")), cases[i].quota);
        assert_int_equal(json_integer_value(json_object_get(cpu, "shares")), cases[i].shares);
        assert_int_equal(json_integer_value(json_object_get(cpu, "period")), INK_CPU_PERIOD_US);
        json_decref(cpu);
    }
}

/* The mount at dest in config.json, or NULL. */
static json_t *mount_at(json_t *cfg, const char *dest)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(cfg, "mounts"), i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "destination")), dest) == 0)
            return m;
    }
    return NULL;
}

static bool has_option(json_t *mount, const char *opt)
{
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(mount, "options"), i, o)
    {
        if (strcmp(json_string_value(o), opt) == 0)
            return true;
    }
    return false;
}

/* The node resolver's files: bind-mounted read-only when given, the
 * image's own otherwise. */
static void test_resolver_files(void **state)
{
    fixture *f = *state;
    Ink__V1__Assignment a = INK__V1__ASSIGNMENT__INIT;
    a.workload_id = "web-0";
    a.app = "web";
    ink_image_config img = image();
    json_t *cfg = render(f, &a, &img, NULL);
    assert_null(mount_at(cfg, "/etc/resolv.conf"));
    assert_null(mount_at(cfg, "/etc/hosts"));
    json_decref(cfg);

    ink_bundle_spec spec = {.assignment = &a,
                            .image = &img,
                            .rootfs = f->rootfs,
                            .resolv_conf = "/var/lib/ink/agent/workloads/web-0/bundle/resolv.conf",
                            .hosts = "/var/lib/ink/agent/workloads/web-0/bundle/hosts"};
    char *text = NULL;
    ink_err err = {0};
    assert_int_equal(ink_bundle_config(&spec, &text, &err), 0);
    cfg = json_loads(text, 0, NULL);
    free(text);
    const char *dests[] = {"/etc/resolv.conf", "/etc/hosts"};
    const char *srcs[] = {spec.resolv_conf, spec.hosts};
    for (size_t i = 0; i < 2; i++) {
        json_t *m = mount_at(cfg, dests[i]);
        assert_non_null(m);
        assert_string_equal(json_string_value(json_object_get(m, "type")), "bind");
        assert_string_equal(json_string_value(json_object_get(m, "source")), srcs[i]);
        assert_true(has_option(m, "bind"));
        assert_true(has_option(m, "ro"));
        assert_true(has_option(m, "nosuid"));
        assert_true(has_option(m, "noexec"));
    }
    json_decref(cfg);

    spec.hosts = "relative/hosts";
    assert_int_equal(ink_bundle_config(&spec, &text, &err), -1);
    assert_non_null(strstr(err.msg, "absolute"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_image_defaults, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_app_overrides, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_boot_cpu, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_resolver_files, setup, test_scratch_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
