/* node-agent/metrics/traffic.c: adding up per-CPU values, refusing pin
 * directories that are not on a BPF file system, and the whole cycle
 * against the kernel (root only) on the loopback interface of a network
 * namespace of the test's own, with the map pinned on a BPF file system
 * mounted in a mount namespace of its own: nothing outside the test
 * process sees any of it, and the kernel removes all of it when the
 * process ends. Real veths and traffic between namespaces:
 * tests/integration/traffic_test.sh. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "bpf/traffic.h"
#include "log.h"
#include "testlib.h"
#include "traffic.h"
#include "util.h"

/* Set up in main(): a private network and mount namespace with a bpffs on
 * bpffs_dir, or a reason why not (every kernel test is then skipped). */
static char scratch[128], bpffs_dir[192];
static const char *no_kernel;

static void test_sum(void **state)
{
    (void)state;
    struct ink_traffic_value v[3] = {
        {.tx_bytes = 100, .tx_packets = 1, .rx_bytes = 7, .rx_packets = 2, .last_tx_ns = 50},
        {0},
        {.tx_bytes = 1ULL << 40,
         .tx_packets = 9,
         .rx_bytes = 3,
         .rx_packets = 1,
         .last_tx_ns = 40,
         .last_rx_ns = 60},
    };
    ink_traffic_counters c;
    memset(&c, 0xff, sizeof c);
    ink_traffic_sum(v, 3, &c);
    assert_int_equal(c.tx_bytes, (1ULL << 40) + 100);
    assert_int_equal(c.tx_packets, 10);
    assert_int_equal(c.rx_bytes, 10);
    assert_int_equal(c.rx_packets, 3);
    assert_int_equal(c.last_tx_ns, 50); /* the latest, not a sum */
    assert_int_equal(c.last_rx_ns, 60);
    assert_int_equal(ink_traffic_last_activity(&c), 60);

    ink_traffic_sum(v, 0, &c);
    assert_int_equal(c.tx_bytes + c.tx_packets + c.rx_bytes + c.rx_packets, 0);
    assert_int_equal(ink_traffic_last_activity(&c), 0);
}

/* The layout the BPF programs write: six __u64, no padding. */
static void test_value_layout(void **state)
{
    (void)state;
    assert_int_equal(sizeof(struct ink_traffic_value), 48);
    assert_int_equal(offsetof(struct ink_traffic_value, last_rx_ns), 40);
}

static void expect_open_error(const char *pin_dir, const char *want)
{
    ink_traffic *t = (ink_traffic *)1;
    ink_err err = {0};
    assert_int_equal(ink_traffic_open(pin_dir, &t, &err), -1);
    assert_null(t);
    if (!strstr(err.msg, want))
        fail_msg("open %s: '%s' lacks '%s'", pin_dir, err.msg, want);
}

/* Needs no privileges: these are refused before anything is loaded. */
static void test_open_refuses_pin_dirs(void **state)
{
    test_scratch *s = *state;
    expect_open_error("relative/ink", "not an absolute path");

    /* A directory of an ordinary file system, new or existing: refused,
     * and nothing is made there. */
    char dir[256];
    snprintf(dir, sizeof dir, "%s/pins", s->dir);
    expect_open_error(dir, "is not on a BPF file system");
    struct stat st;
    assert_int_equal(stat(dir, &st), -1);
    assert_int_equal(mkdir(dir, 0700), 0);
    expect_open_error(dir, "is not on a BPF file system");

    snprintf(dir, sizeof dir, "%s/missing/pins", s->dir);
    expect_open_error(dir, "No such file or directory");
    assert_int_equal(stat(dir, &st), -1);
}

#define NEED_KERNEL()                                                                              \
    do {                                                                                           \
        if (no_kernel)                                                                             \
            skip();                                                                                \
    } while (0)

/* n datagrams of size bytes to ourselves over lo. */
static void udp_over_lo(int n, size_t size)
{
    int rfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int sfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(rfd >= 0 && sfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(rfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(rfd, (struct sockaddr *)&a, &alen), 0);
    char buf[2048] = {0};
    assert_true(size <= sizeof buf);
    for (int i = 0; i < n; i++) {
        assert_int_equal(sendto(sfd, buf, size, 0, (struct sockaddr *)&a, sizeof a), size);
        assert_int_equal(recv(rfd, buf, sizeof buf, 0), size);
    }
    close(rfd);
    close(sfd);
}

static ink_traffic *open_ok(const char *pin_dir)
{
    ink_traffic *t = NULL;
    ink_err err = {0};
    if (ink_traffic_open(pin_dir, &t, &err) < 0)
        fail_msg("open %s: %s", pin_dir, err.msg);
    return t;
}

static ink_traffic_counters read_ok(ink_traffic *t, unsigned ifindex)
{
    ink_traffic_counters c = {0};
    ink_err err = {0};
    int r = ink_traffic_read(t, ifindex, &c, &err);
    if (r != 1)
        fail_msg("read ifindex %u: %d %s", ifindex, r, err.msg);
    return c;
}

/* On lo every packet leaves (egress: counted as received by the
 * "workload") and comes back in (ingress: as sent), whole frames with a
 * 14-byte Ethernet header: 14 + 20 (IPv4) + 8 (UDP) + payload. */
static void test_lifecycle_on_lo(void **state)
{
    (void)state;
    NEED_KERNEL();
    char pin_dir[256];
    snprintf(pin_dir, sizeof pin_dir, "%s/ink", bpffs_dir);
    ink_err err = {0};
    ink_traffic *t = open_ok(pin_dir);
    assert_false(ink_traffic_reused(t));
    unsigned lo = 0;
    if (ink_traffic_attach(t, "lo", &lo, &err) < 0)
        fail_msg("attach lo: %s", err.msg);
    assert_int_equal(lo, if_nametoindex("lo"));
    ink_traffic_counters c = read_ok(t, lo);
    assert_int_equal(c.tx_packets + c.rx_packets, 0);
    assert_int_equal(ink_traffic_last_activity(&c), 0);

    uint64_t t0 = (uint64_t)ink_mono_ns();
    udp_over_lo(10, 100);
    uint64_t t1 = (uint64_t)ink_mono_ns();
    c = read_ok(t, lo);
    assert_int_equal(c.tx_packets, 10);
    assert_int_equal(c.rx_packets, 10);
    assert_int_equal(c.tx_bytes, 10 * 142);
    assert_int_equal(c.rx_bytes, 10 * 142);
    /* bpf_ktime_get_ns() is CLOCK_MONOTONIC, as ink_mono_ns(). */
    assert_true(c.last_tx_ns >= t0 && c.last_tx_ns <= t1);
    assert_true(c.last_rx_ns >= t0 && c.last_rx_ns <= t1);

    /* Attaching again (as a restarted agent does) keeps the counts. */
    assert_int_equal(ink_traffic_attach(t, "lo", NULL, &err), 0);
    assert_int_equal(read_ok(t, lo).tx_packets, 10);
    ink_traffic_close(t);

    /* A new instance (an agent restart) finds the map pinned: the counts
     * go on, including what the old programs counted meanwhile. */
    udp_over_lo(5, 100);
    t = open_ok(pin_dir);
    assert_true(ink_traffic_reused(t));
    assert_int_equal(read_ok(t, lo).tx_packets, 15);
    assert_int_equal(ink_traffic_attach(t, "lo", NULL, &err), 0);
    udp_over_lo(5, 100);
    c = read_ok(t, lo);
    assert_int_equal(c.tx_packets, 20);
    assert_int_equal(c.rx_bytes, 20 * 142);

    ink_traffic_entry *list = NULL;
    size_t n = 0;
    assert_int_equal(ink_traffic_list(t, &list, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].ifindex, lo);
    assert_int_equal(list[0].c.tx_packets, 20);
    free(list);

    /* Detach removes the entry; the programs are gone, and traffic
     * creates no entry again. Detaching twice, or an interface that does
     * not exist, is fine. */
    assert_int_equal(ink_traffic_detach(t, "lo", lo, &err), 0);
    assert_int_equal(ink_traffic_read(t, lo, &c, &err), 0);
    udp_over_lo(3, 100);
    assert_int_equal(ink_traffic_list(t, &list, &n, &err), 0);
    assert_int_equal(n, 0);
    free(list);
    assert_int_equal(ink_traffic_detach(t, "lo", lo, &err), 0);
    assert_int_equal(ink_traffic_detach(t, "nosuchif0", 12345, &err), 0);
    assert_int_equal(ink_traffic_detach(t, NULL, 0, &err), 0);

    /* Attaching to an interface that does not exist says so. */
    assert_int_equal(ink_traffic_attach(t, "nosuchif0", NULL, &err), -1);
    assert_non_null(strstr(err.msg, "nosuchif0"));
    ink_traffic_close(t);
    char pin[320];
    snprintf(pin, sizeof pin, "%s/%s", pin_dir, INK_TRAFFIC_PIN_NAME);
    assert_int_equal(unlink(pin), 0);
    assert_int_equal(rmdir(pin_dir), 0);
}

/* A pinned map of another layout (an older or newer agent's) is not
 * reused: open fails and says why. */
static void test_pinned_map_mismatch(void **state)
{
    (void)state;
    NEED_KERNEL();
    char pin_dir[256], pin[320];
    snprintf(pin_dir, sizeof pin_dir, "%s/other", bpffs_dir);
    snprintf(pin, sizeof pin, "%s/%s", pin_dir, INK_TRAFFIC_PIN_NAME);
    assert_int_equal(mkdir(pin_dir, 0700), 0);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "bpftool map create %s type hash key 4 value 8 entries 4 name other 2>&1", pin);
    /* bpftool comes with scripts/install-deps: its absence is a failure. */
    assert_int_equal(system(cmd), 0);
    expect_open_error(pin_dir, "parameter mismatch");
    assert_int_equal(unlink(pin), 0);
    assert_int_equal(rmdir(pin_dir), 0);
}

/* A network namespace with lo up and a bpffs of the test's own. */
static const char *enter_private_namespaces(void)
{
    if (geteuid() != 0)
        return "not root";
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) < 0)
        return "cannot create network and mount namespaces";
    if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0) /* valgrind wants a type */
        return "cannot make the mount namespace private";
    if (test_lo_up() < 0)
        return "cannot bring lo up";
    if (test_mkdtemp(scratch, sizeof scratch, "traffic") < 0)
        return "no scratch directory";
    snprintf(bpffs_dir, sizeof bpffs_dir, "%s/bpffs", scratch);
    if (mkdir(bpffs_dir, 0700) < 0 || mount("bpf", bpffs_dir, "bpf", 0, "mode=0700") < 0)
        return "cannot mount a BPF file system";
    return NULL;
}

int main(void)
{
    test_block_sigpipe();
    ink_log_init("test_traffic", INK_LOG_ERROR, INK_LOG_LOGFMT);
    no_kernel = enter_private_namespaces();
    /* As root (CI) the kernel part must run: a missing facility fails with
     * the reason instead of passing as skipped. */
    if (no_kernel && geteuid() == 0) {
        fprintf(stderr, "test_traffic: running as root but %s: the kernel tests cannot run\n",
                no_kernel);
        return 1;
    }
    if (no_kernel)
        fprintf(stderr, "test_traffic: %s: the kernel tests are skipped\n", no_kernel);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sum),
        cmocka_unit_test(test_value_layout),
        cmocka_unit_test_setup_teardown(test_open_refuses_pin_dirs, test_scratch_setup,
                                        test_scratch_teardown),
        cmocka_unit_test(test_lifecycle_on_lo),
        cmocka_unit_test(test_pinned_map_mismatch),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (bpffs_dir[0])
        umount2(bpffs_dir, MNT_DETACH);
    if (scratch[0])
        test_rmtree(scratch);
    return rc;
}
