/* Unit tests for node-agent/net/ipam.c (no privileges needed): allocation,
 * idempotence, persistence, release and reuse, exhaustion, bad ranges and
 * corrupt state; and the stable host interface names. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "net.h"
#include "testlib.h"
#include "util.h"

typedef struct {
    char dir[128];
    char state[192];
    char file[224];
} fixture;

static int setup(void **state)
{
    fixture *f = ink_xcalloc(1, sizeof *f);
    if (test_mkdtemp(f->dir, sizeof f->dir, "ipam") < 0)
        return -1;
    /* A directory ink_ipam_open has to create. */
    snprintf(f->state, sizeof f->state, "%s/agent/state", f->dir);
    snprintf(f->file, sizeof f->file, "%s/ipam.json", f->state);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    test_rmtree(f->dir);
    free(f);
    return 0;
}

static ink_ipam *open_ok(fixture *f, const char *cidr)
{
    ink_ipam *ipam = NULL;
    ink_err err = {0};
    if (ink_ipam_open(f->state, cidr, &ipam, &err) < 0)
        fail_msg("ink_ipam_open(%s): %s", cidr, err.msg);
    return ipam;
}

static const char *alloc_ok(ink_ipam *ipam, const char *id, char buf[INET_ADDRSTRLEN])
{
    struct in_addr a;
    ink_err err = {0};
    if (ink_ipam_allocate(ipam, id, &a, &err) < 0)
        fail_msg("allocate %s: %s", id, err.msg);
    return inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

static void write_state(fixture *f, const char *text)
{
    ink_err err = {0};
    assert_int_equal(ink_mkdir_p(f->state, 0700, &err), 0);
    assert_int_equal(ink_write_file_atomic(f->file, text, strlen(text), 0600, &err), 0);
}

/* Opening must fail, with a message naming the file and containing want. */
static void open_fails(fixture *f, const char *cidr, const char *want)
{
    ink_ipam *ipam = NULL;
    ink_err err = {0};
    assert_int_equal(ink_ipam_open(f->state, cidr, &ipam, &err), -1);
    assert_null(ipam);
    if (!strstr(err.msg, want))
        fail_msg("error \"%s\" lacks \"%s\"", err.msg, want);
}

static void test_allocate_in_order(void **state)
{
    fixture *f = *state;
    ink_ipam *ipam = open_ok(f, "10.88.0.0/24");
    char b[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN];
    struct in_addr gw = ink_ipam_gateway(ipam);
    assert_string_equal(inet_ntop(AF_INET, &gw, g, sizeof g), "10.88.0.1");
    assert_int_equal(ink_ipam_prefix_len(ipam), 24);
    /* The gateway (.1) and the network address are never handed out. */
    assert_string_equal(alloc_ok(ipam, "w-a", b), "10.88.0.2");
    assert_string_equal(alloc_ok(ipam, "w-b", b), "10.88.0.3");
    assert_string_equal(alloc_ok(ipam, "w.c_3", b), "10.88.0.4");
    struct stat st;
    assert_int_equal(stat(f->file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    ink_ipam_close(ipam);
}

static void test_idempotent(void **state)
{
    fixture *f = *state;
    ink_ipam *ipam = open_ok(f, "10.88.0.0/24");
    char b[INET_ADDRSTRLEN];
    assert_string_equal(alloc_ok(ipam, "w-a", b), "10.88.0.2");
    assert_string_equal(alloc_ok(ipam, "w-b", b), "10.88.0.3");
    assert_string_equal(alloc_ok(ipam, "w-a", b), "10.88.0.2");
    assert_string_equal(alloc_ok(ipam, "w-b", b), "10.88.0.3");
    struct in_addr a;
    ink_err err = {0};
    assert_int_equal(ink_ipam_lookup(ipam, "w-a", &a, &err), 1);
    assert_string_equal(inet_ntop(AF_INET, &a, b, sizeof b), "10.88.0.2");
    assert_int_equal(ink_ipam_lookup(ipam, "nobody", &a, &err), 0);
    ink_ipam_close(ipam);
}

static void test_persisted_across_reopen(void **state)
{
    fixture *f = *state;
    char b[INET_ADDRSTRLEN];
    ink_ipam *ipam = open_ok(f, "10.88.0.0/24");
    alloc_ok(ipam, "w-a", b);
    alloc_ok(ipam, "w-b", b);
    ink_ipam_close(ipam);

    ipam = open_ok(f, "10.88.0.0/24");
    assert_string_equal(alloc_ok(ipam, "w-b", b), "10.88.0.3");
    assert_string_equal(alloc_ok(ipam, "w-a", b), "10.88.0.2");
    assert_string_equal(alloc_ok(ipam, "w-c", b), "10.88.0.4");
    ink_ipam_entry *list = NULL;
    size_t n = 0;
    ink_err err = {0};
    assert_int_equal(ink_ipam_list(ipam, &list, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].workload_id, "w-a");
    assert_string_equal(list[2].workload_id, "w-c");
    assert_string_equal(inet_ntop(AF_INET, &list[2].addr, b, sizeof b), "10.88.0.4");
    free(list);
    ink_ipam_close(ipam);
}

/* Two handles (two threads' or processes' views) never hand out one
 * address twice: every operation reads the file under the lock. */
static void test_two_handles_agree(void **state)
{
    fixture *f = *state;
    char b[INET_ADDRSTRLEN];
    ink_ipam *one = open_ok(f, "10.88.0.0/24");
    ink_ipam *two = open_ok(f, "10.88.0.0/24");
    assert_string_equal(alloc_ok(one, "w-a", b), "10.88.0.2");
    assert_string_equal(alloc_ok(two, "w-b", b), "10.88.0.3");
    assert_string_equal(alloc_ok(two, "w-a", b), "10.88.0.2");
    ink_err err = {0};
    assert_int_equal(ink_ipam_release(one, "w-b", &err), 0);
    struct in_addr a;
    assert_int_equal(ink_ipam_lookup(two, "w-b", &a, &err), 0);
    ink_ipam_close(one);
    ink_ipam_close(two);
}

/* A /29 has 5 addresses for workloads: .2 to .6. */
static void test_exhaustion_release_reuse(void **state)
{
    fixture *f = *state;
    char b[INET_ADDRSTRLEN], id[16];
    ink_ipam *ipam = open_ok(f, "10.250.0.8/29");
    for (int i = 0; i < 5; i++) {
        char want[INET_ADDRSTRLEN];
        snprintf(id, sizeof id, "w%d", i);
        snprintf(want, sizeof want, "10.250.0.%d", 10 + i);
        assert_string_equal(alloc_ok(ipam, id, b), want);
    }
    struct in_addr a;
    ink_err err = {0};
    assert_int_equal(ink_ipam_allocate(ipam, "w5", &a, &err), -1);
    assert_int_equal(err.errnum, ENOSPC);
    assert_non_null(strstr(err.msg, "10.250.0.8/29 is exhausted"));
    assert_non_null(strstr(err.msg, "w5"));
    /* Existing workloads still get theirs. */
    assert_string_equal(alloc_ok(ipam, "w4", b), "10.250.0.14");

    ink_err_clear(&err);
    assert_int_equal(ink_ipam_release(ipam, "w2", &err), 0);
    assert_int_equal(ink_ipam_release(ipam, "w2", &err), 0);        /* twice */
    assert_int_equal(ink_ipam_release(ipam, "never-was", &err), 0); /* unknown */
    assert_string_equal(alloc_ok(ipam, "w5", b), "10.250.0.12");
    assert_int_equal(ink_ipam_allocate(ipam, "w6", &a, &err), -1);
    ink_ipam_close(ipam);

    /* After a reopen the same holds. */
    ipam = open_ok(f, "10.250.0.8/29");
    assert_string_equal(alloc_ok(ipam, "w5", b), "10.250.0.12");
    assert_int_equal(ink_ipam_allocate(ipam, "w6", &a, &err), -1);
    ink_ipam_close(ipam);
}

/* A released address comes back only after the rest of the range. */
static void test_released_address_rests(void **state)
{
    fixture *f = *state;
    char b[INET_ADDRSTRLEN];
    ink_ipam *ipam = open_ok(f, "10.250.0.0/24");
    assert_string_equal(alloc_ok(ipam, "a", b), "10.250.0.2");
    ink_err err = {0};
    assert_int_equal(ink_ipam_release(ipam, "a", &err), 0);
    assert_string_equal(alloc_ok(ipam, "b", b), "10.250.0.3");
    assert_string_equal(alloc_ok(ipam, "a", b), "10.250.0.4");
    ink_ipam_close(ipam);
}

static void test_smallest_range(void **state)
{
    fixture *f = *state;
    char b[INET_ADDRSTRLEN];
    ink_ipam *ipam = open_ok(f, "192.168.7.4/30");
    assert_string_equal(alloc_ok(ipam, "only", b), "192.168.7.6");
    struct in_addr a;
    ink_err err = {0};
    assert_int_equal(ink_ipam_allocate(ipam, "second", &a, &err), -1);
    assert_int_equal(err.errnum, ENOSPC);
    ink_ipam_close(ipam);
}

static void test_bad_ranges(void **state)
{
    fixture *f = *state;
    open_fails(f, "10.88.0.1/24", "host bits");
    open_fails(f, "10.88.0.0/31", "prefix must be 8..30");
    open_fails(f, "10.0.0.0/7", "prefix must be 8..30");
    open_fails(f, "10.88.0.0", "a.b.c.d/prefix");
    open_fails(f, "10.88.0.0/", "a.b.c.d/prefix");
    open_fails(f, "10.88.0.0/24x", "a.b.c.d/prefix");
    open_fails(f, "banana/24", "a.b.c.d/prefix");
    open_fails(f, "", "a.b.c.d/prefix");
}

static void test_bad_workload_ids(void **state)
{
    fixture *f = *state;
    ink_ipam *ipam = open_ok(f, "10.88.0.0/24");
    struct in_addr a;
    const char *bad[] = {"", "../etc", "a/b", ".hidden", "-x", "sp ace", NULL};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad); i++) {
        ink_err err = {0};
        assert_int_equal(ink_ipam_allocate(ipam, bad[i], &a, &err), -1);
        assert_non_null(strstr(err.msg, "invalid workload id"));
    }
    char longid[INK_NET_WORKLOAD_ID_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    ink_err err = {0};
    assert_int_equal(ink_ipam_allocate(ipam, longid, &a, &err), -1);
    longid[INK_NET_WORKLOAD_ID_MAX] = '\0';
    assert_int_equal(ink_ipam_allocate(ipam, longid, &a, &err), 0);
    ink_ipam_close(ipam);
}

static void test_corrupt_state(void **state)
{
    fixture *f = *state;
    write_state(f, "{\"version\": 1, \"cidr\": \"10.88.0.0/24\", \"allocations\": [");
    open_fails(f, "10.88.0.0/24", "is corrupt: not JSON");
    open_fails(f, "10.88.0.0/24", f->file);

    write_state(f, "[]");
    open_fails(f, "10.88.0.0/24", "want an object");
    write_state(f, "{\"version\": 7, \"cidr\": \"10.88.0.0/24\", \"allocations\": []}");
    open_fails(f, "10.88.0.0/24", "version 7");
    write_state(f, "{\"version\": 1, \"cidr\": \"10.88.0.0/24\", \"allocations\": "
                   "[{\"workload\": \"a\", \"ip\": \"10.88.0.1\"}]}");
    open_fails(f, "10.88.0.0/24", "10.88.0.1 is not a host address");
    write_state(f, "{\"version\": 1, \"cidr\": \"10.88.0.0/24\", \"allocations\": "
                   "[{\"workload\": \"a\", \"ip\": \"10.88.0.5\"},"
                   " {\"workload\": \"b\", \"ip\": \"10.88.0.5\"}]}");
    open_fails(f, "10.88.0.0/24", "10.88.0.5 is allocated to both a and b");
    write_state(f, "{\"version\": 1, \"cidr\": \"10.88.0.0/24\", \"allocations\": "
                   "[{\"workload\": \"a\", \"ip\": \"10.88.0.5\"},"
                   " {\"workload\": \"a\", \"ip\": \"10.88.0.6\"}]}");
    open_fails(f, "10.88.0.0/24", "workload a has two addresses");
    write_state(f, "{\"version\": 1, \"cidr\": \"10.88.0.0/24\", \"allocations\": "
                   "[{\"workload\": \"../x\", \"ip\": \"10.88.0.5\"}]}");
    open_fails(f, "10.88.0.0/24", "invalid workload id");
    write_state(f, "{\"version\": 1, \"cidr\": \"10.88.0.0/24\", \"allocations\": [{}]}");
    open_fails(f, "10.88.0.0/24", "want workload and ip");

    /* The corrupt file is left as it was. */
    char *text = NULL;
    size_t len;
    ink_err err = {0};
    assert_int_equal(ink_read_file(f->file, 4096, &text, &len, &err), 0);
    assert_non_null(strstr(text, "[{}]"));
    free(text);
}

/* Allocations pin the range; an empty table follows a new one. */
static void test_range_change(void **state)
{
    fixture *f = *state;
    char b[INET_ADDRSTRLEN];
    ink_ipam *ipam = open_ok(f, "10.88.0.0/24");
    alloc_ok(ipam, "w-a", b);
    ink_ipam_close(ipam);
    open_fails(f, "10.89.0.0/24", "holds 1 allocations from 10.88.0.0/24");

    ipam = open_ok(f, "10.88.0.0/24");
    ink_err err = {0};
    assert_int_equal(ink_ipam_release(ipam, "w-a", &err), 0);
    ink_ipam_close(ipam);
    ipam = open_ok(f, "10.89.0.0/24");
    assert_string_equal(alloc_ok(ipam, "w-a", b), "10.89.0.2");
    ink_ipam_close(ipam);
}

static void test_host_ifname(void **state)
{
    (void)state;
    char a[IFNAMSIZ], a2[IFNAMSIZ], b[IFNAMSIZ];
    ink_net_host_ifname("app-1", a);
    ink_net_host_ifname("app-1", a2);
    ink_net_host_ifname("app-2", b);
    assert_string_equal(a, a2);
    assert_string_not_equal(a, b);
    assert_int_equal(strlen(a), 15);
    assert_memory_equal(a, "ink", 3);
    /* Pinned: nftables rules and re-adoption by a newer agent rely on it. */
    ink_net_host_ifname("w1", a);
    assert_string_equal(a, "ink1b151a24ecfa");
    ink_net_host_ifname("app-1", a);
    assert_string_equal(a, "ink2ee37f9dbe1f");
    for (const char *c = a + 3; *c; c++)
        assert_true((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_allocate_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persisted_across_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_handles_agree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exhaustion_release_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_released_address_rests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smallest_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_workload_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_change, setup, teardown),
        cmocka_unit_test(test_host_ifname),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
