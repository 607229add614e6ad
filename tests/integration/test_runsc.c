/* runtime/runsc.c against the real runsc (gVisor), as root: run, state,
 * stats, exec (output, exit codes, timeout), kill, delete, errors, and the
 * netstack start-up path. A cmocka program run by CTest (label
 * integration); it fails with the reason when not root or runsc is absent. */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bundle.h"
#include "runsc.h"
#include "testlib.h"
#include "util.h"

typedef struct {
    char dir[128];
    char bundle[192];
    char root[192];
    char id[64];
    ink_runsc r;
    int log_fd;
} fixture;

static void write_bundle(fixture *f, const char *script)
{
    char *cmd[] = {"/bin/busybox", "sh", "-c", (char *)script};
    ink_image_config img = {0};
    img.cmd = cmd;
    img.ncmd = 4;
    Ink__V1__Assignment a = INK__V1__ASSIGNMENT__INIT;
    a.workload_id = f->id;
    a.app = "runsc-test";
    char *rootfs = ink_xasprintf("%s/rootfs", f->bundle);
    ink_bundle_spec spec = {.assignment = &a, .image = &img, .rootfs = rootfs};
    char *json = NULL;
    ink_err err = {0};
    if (ink_bundle_config(&spec, &json, &err) < 0)
        fail_msg("%s", err.msg);
    char *path = ink_xasprintf("%s/config.json", f->bundle);
    assert_int_equal(ink_write_file_atomic(path, json, strlen(json), 0600, &err), 0);
    free(path);
    free(json);
    free(rootfs);
}

static int setup(void **state)
{
    if (geteuid() != 0) {
        fprintf(stderr, "test_runsc needs root: runsc creates sandboxes and cgroups\n");
        return -1;
    }
    if (access("/bin/busybox", X_OK) != 0) {
        fprintf(stderr, "test_runsc needs /bin/busybox (busybox-static)\n");
        return -1;
    }
    fixture *f = ink_xcalloc(1, sizeof *f);
    if (test_mkdtemp(f->dir, sizeof f->dir, "runsc") < 0)
        return -1;
    snprintf(f->bundle, sizeof f->bundle, "%s/bundle", f->dir);
    snprintf(f->root, sizeof f->root, "%s/state", f->dir);
    snprintf(f->id, sizeof f->id, "ink-rt-%d", (int)getpid());
    ink_err err = {0};
    char *bin = ink_xasprintf("%s/rootfs/bin", f->bundle);
    ink_mkdir_p(bin, 0755, &err);
    char *cmd = ink_xasprintf("cp /bin/busybox %s/busybox", bin);
    int rc = system(cmd);
    free(cmd);
    free(bin);
    if (rc != 0)
        return -1;
    f->r = (ink_runsc){.binary = "runsc", .root = f->root, .network = INK_RUNSC_NET_NONE};
    char *log = ink_xasprintf("%s/workload.log", f->dir);
    f->log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    free(log);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    ink_runsc_delete(&f->r, f->id, true, &err);
    close(f->log_fd);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

static ink_sandbox_status status_of(fixture *f)
{
    ink_sandbox_state st;
    ink_err err = {0};
    if (ink_runsc_state(&f->r, f->id, &st, &err) < 0)
        fail_msg("%s", err.msg);
    return st.status;
}

static void test_lifecycle(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    assert_int_equal(status_of(f), INK_SANDBOX_UNKNOWN);
    write_bundle(f, "echo started; while true; do sleep 1; done");
    if (ink_runsc_run(&f->r, f->id, f->bundle, f->log_fd, f->log_fd, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(status_of(f), INK_SANDBOX_RUNNING);

    ink_sandbox_stats stats;
    assert_int_equal(ink_runsc_stats(&f->r, f->id, &stats, &err), 0);
    assert_true(stats.cpu_ns > 0);
    assert_true(stats.memory_bytes > 0);
    assert_true(stats.pids >= 1);

    char *echo[] = {"/bin/busybox", "sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    ink_exec_result res;
    assert_int_equal(ink_runsc_exec(&f->r, f->id, echo, 10000, 0, &res, &err), 0);
    assert_int_equal(res.exit_code, 3);
    assert_string_equal(res.out, "out\n");
    assert_string_equal(res.errout, "err\n");
    ink_exec_result_free(&res);

    /* A command printing runsc-like words is still the command's output. */
    char *nf[] = {"/bin/busybox", "sh", "-c", "nosuchcmd", NULL};
    assert_int_equal(ink_runsc_exec(&f->r, f->id, nf, 10000, 0, &res, &err), 0);
    assert_int_equal(res.exit_code, 127);
    assert_non_null(strstr(res.errout, "not found"));
    ink_exec_result_free(&res);

    char *big[] = {"/bin/busybox", "sh", "-c", "yes | head -c 100000", NULL};
    assert_int_equal(ink_runsc_exec(&f->r, f->id, big, 10000, 1000, &res, &err), 0);
    assert_true(res.truncated);
    assert_int_equal(res.out_len, 1000);
    ink_exec_result_free(&res);

    char *slow[] = {"/bin/busybox", "sleep", "10", NULL};
    int64_t t0 = ink_mono_ms();
    assert_int_equal(ink_runsc_exec(&f->r, f->id, slow, 300, 0, &res, &err), 0);
    assert_true(res.timed_out);
    assert_int_equal(res.exit_code, -1);
    assert_true(ink_mono_ms() - t0 < 5000);
    ink_exec_result_free(&res);

    /* Graceful stop: this workload ends on SIGTERM, well inside the grace. */
    t0 = ink_mono_ms();
    assert_int_equal(ink_runsc_stop(&f->r, f->id, 5000, &err), 0);
    assert_true(ink_mono_ms() - t0 < 4000);
    assert_int_equal(status_of(f), INK_SANDBOX_STOPPED);
    assert_int_equal(ink_runsc_stop(&f->r, f->id, 5000, &err), 0); /* already stopped */
    assert_int_equal(ink_runsc_delete(&f->r, f->id, false, &err), 0);
    assert_int_equal(status_of(f), INK_SANDBOX_UNKNOWN);
    /* Idempotent. */
    assert_int_equal(ink_runsc_delete(&f->r, f->id, false, &err), 0);

    char *log = ink_xasprintf("%s/workload.log", f->dir);
    char *text = NULL;
    assert_int_equal(ink_read_file(log, 65536, &text, NULL, &err), 0);
    assert_non_null(strstr(text, "started"));
    free(text);
    free(log);
}

static void test_stop_escalates(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    /* Ignores SIGTERM: the grace period passes, then SIGKILL. */
    write_bundle(f, "trap '' TERM; while true; do sleep 1; done");
    if (ink_runsc_run(&f->r, f->id, f->bundle, f->log_fd, f->log_fd, &err) < 0)
        fail_msg("%s", err.msg);
    usleep(300 * 1000);
    int64_t t0 = ink_mono_ms();
    assert_int_equal(ink_runsc_stop(&f->r, f->id, 700, &err), 0);
    int64_t took = ink_mono_ms() - t0;
    assert_true(took >= 700 && took < 8000);
    assert_int_equal(status_of(f), INK_SANDBOX_STOPPED);
}

static void test_errors(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    char *missing = ink_xasprintf("%s/none", f->dir);
    assert_int_equal(ink_runsc_run(&f->r, f->id, missing, f->log_fd, f->log_fd, &err), -1);
    assert_non_null(strstr(err.msg, "config.json"));
    free(missing);
    char *echo[] = {"/bin/busybox", "true", NULL};
    ink_exec_result res;
    assert_int_equal(ink_runsc_exec(&f->r, "no-such-sandbox", echo, 5000, 0, &res, &err), -1);
    assert_non_null(strstr(err.msg, "no sandbox"));
    assert_int_equal(ink_runsc_kill(&f->r, "no-such-sandbox", SIGTERM, false, &err), -1);
    assert_int_equal(ink_runsc_run(&f->r, "Bad Id", f->bundle, f->log_fd, f->log_fd, &err), -1);
}

/* How the agent learns why a sandbox ended: the waiter wakes up, and the
 * sandbox's own log holds the exit status even when runsc wait lost it
 * (an app that exits at once), or the signal that killed it. */
static void test_exit_status(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    const char *apps[] = {"echo bye; exit 3", "sleep 1; exit 4", "sleep 1; kill -9 $$"};
    const int want[] = {3, 4, 128 + 9};
    for (size_t i = 0; i < 3; i++) {
        write_bundle(f, apps[i]);
        if (ink_runsc_run(&f->r, f->id, f->bundle, f->log_fd, f->log_fd, &err) < 0)
            fail_msg("%s", err.msg);
        ink_runsc_waiter w;
        assert_int_equal(ink_runsc_wait_start(&f->r, f->id, &w, &err), 0);
        struct pollfd p = {.fd = w.fd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, 30000), 1);
        int code = -2;
        while (ink_runsc_wait_collect(&w, &code) == 0)
            usleep(10000);
        assert_true(code == want[i] || code == -1); /* runsc wait may lose it */
        assert_int_equal(ink_runsc_exit_status(&f->r, f->id), want[i]);
        assert_int_equal(ink_runsc_delete(&f->r, f->id, true, &err), 0);
        assert_int_equal(ink_runsc_exit_status(&f->r, f->id), -1);
    }
    /* A waiter can be cancelled without touching the sandbox. */
    write_bundle(f, "sleep 30");
    assert_int_equal(ink_runsc_run(&f->r, f->id, f->bundle, f->log_fd, f->log_fd, &err), 0);
    ink_runsc_waiter w;
    assert_int_equal(ink_runsc_wait_start(&f->r, f->id, &w, &err), 0);
    ink_runsc_wait_cancel(&w);
    assert_int_equal(w.pid, -1);
    assert_int_equal(status_of(f), INK_SANDBOX_RUNNING);
    char **ids;
    size_t n;
    assert_int_equal(ink_runsc_list(&f->r, &ids, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], f->id);
    free(ids[0]);
    free(ids);
}

static void test_netstack_starts(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    /* gVisor's own network stack: runsc refuses to start it unless the
     * agent hides /proc/sys/net (private mount namespace + tmpfs). */
    f->r.network = INK_RUNSC_NET_SANDBOX;
    write_bundle(f, "sleep 30");
    if (ink_runsc_run(&f->r, f->id, f->bundle, f->log_fd, f->log_fd, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(status_of(f), INK_SANDBOX_RUNNING);
    char *cmd[] = {"/bin/busybox", "echo", "netstack-up", NULL};
    ink_exec_result res;
    assert_int_equal(ink_runsc_exec(&f->r, f->id, cmd, 10000, 0, &res, &err), 0);
    assert_string_equal(res.out, "netstack-up\n");
    ink_exec_result_free(&res);
    assert_int_equal(ink_runsc_delete(&f->r, f->id, true, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_escalates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_netstack_starts, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
