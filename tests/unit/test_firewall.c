/* The firewall (node-agent/net/firewall.c) against the kernel's nftables,
 * in a network namespace of the test's own: unshare(CLONE_NEWNET) as root,
 * or with a user namespace otherwise. When neither is possible every test
 * is skipped: it never runs against the host's ruleset. No packets here
 * (tests/integration/firewall_test.sh sends real ones): what the table
 * holds after sync, add, remove, drift and reload. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <nftables/libnftables.h>
#include <sched.h>
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

#include "firewall.h"
#include "log.h"
#include "net.h"
#include "testlib.h"
#include "util.h"

#ifndef INK_TEST_POLICY_DIR
#error "INK_TEST_POLICY_DIR: the source tree's policies/"
#endif

static bool private_netns;

static bool write_str(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = write(fd, s, strlen(s)) == (ssize_t)strlen(s);
    close(fd);
    return ok;
}

static bool enter_private_netns(void)
{
    if (unshare(CLONE_NEWNET) == 0)
        return true;
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0)
        return false;
    char map[64];
    snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
    if (!write_str("/proc/self/uid_map", map))
        return false;
    write_str("/proc/self/setgroups", "deny");
    snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
    return write_str("/proc/self/gid_map", map);
}

#define NEED_NETNS()                                                                               \
    do {                                                                                           \
        if (!private_netns)                                                                        \
            skip();                                                                                \
    } while (0)

/* The test's own nft commands (the "someone else" of drift). */
static void nft(const char *cmd)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    int rc = nft_run_cmd_from_buffer(ctx, cmd);
    if (rc != 0)
        fail_msg("nft %s: %s", cmd, nft_ctx_get_error_buffer(ctx));
    nft_ctx_free(ctx);
}

static char *table_text(void)
{
    char *text = NULL;
    bool absent = false;
    ink_err err = {0};
    if (ink_fw_list_table(false, false, &text, &absent, &err) < 0)
        fail_msg("list: %s", err.msg);
    return absent ? NULL : text;
}

static ink_fw_spec spec(const char *id, const char *addr, const char *project, const char *policy)
{
    ink_fw_spec s = {.workload_id = id, .project = project, .app = "app", .policy = policy};
    s.addr.s_addr = inet_addr(addr);
    return s;
}

static ink_firewall *open_fw(const char *dir)
{
    ink_firewall_config cfg = {.policy_dir = dir, .workload_cidr = "10.77.0.0/24"};
    ink_firewall *fw = NULL;
    ink_err err = {0};
    if (ink_firewall_open(&cfg, &fw, &err) < 0)
        fail_msg("open: %s", err.msg);
    return fw;
}

static void ifname_of(const char *id, char out[IFNAMSIZ + 2])
{
    char ifn[IFNAMSIZ];
    ink_net_host_ifname(id, ifn);
    snprintf(out, IFNAMSIZ + 2, "\"%s\"", ifn);
}

static void test_lifecycle(void **state)
{
    (void)state;
    NEED_NETNS();
    ink_firewall *fw = open_fw(INK_TEST_POLICY_DIR);
    ink_err err = {0};
    /* No workloads, no table: the ruleset is left alone. */
    assert_int_equal(ink_firewall_sync(fw, NULL, 0, false, &err), 0);
    assert_null(table_text());
    assert_false(ink_firewall_active(fw));
    assert_int_equal(ink_firewall_check_drift(fw, NULL, 0, &err), 0);

    const char *allow[] = {"203.0.113.0/24:443", "203.0.113.7", "198.51.100.9:8000-8099"};
    ink_fw_spec a = spec("wl-a", "10.77.0.2", "alpha", "");
    a.allow = allow;
    a.nallow = 3;
    assert_int_equal(ink_firewall_add(fw, &a, &err), 0);
    assert_true(ink_firewall_active(fw));
    ink_fw_spec b = spec("wl-b", "10.77.0.3", "alpha", "allowlist");
    assert_int_equal(ink_firewall_add(fw, &b, &err), 0);
    ink_fw_spec c = spec("wl-c", "10.77.0.4", "beta", "deny-all");
    assert_int_equal(ink_firewall_add(fw, &c, &err), 0);

    char ifa[IFNAMSIZ + 2], ifc[IFNAMSIZ + 2];
    ifname_of("wl-a", ifa);
    ifname_of("wl-c", ifc);
    char *t = table_text();
    assert_non_null(t);
    char want[128];
    snprintf(want, sizeof want, "%s : jump pol_default", ifa);
    assert_non_null(strstr(t, want));
    snprintf(want, sizeof want, "%s : jump pol_deny-all", ifc);
    assert_non_null(strstr(t, want));
    /* The host inside the /24 and the /24 became disjoint elements. */
    snprintf(want, sizeof want, "%s . 203.0.113.7 . 0-65535", ifa);
    assert_non_null(strstr(t, want));
    assert_non_null(strstr(t, "chain prj_alpha"));
    assert_non_null(strstr(t, "chain prj_beta"));
    free(t);
    assert_int_equal(ink_firewall_check_drift(fw, NULL, 0, &err), 0);

    /* Unknown policy, bad project, bad entry: refused, nothing changes. */
    ink_fw_spec x = spec("wl-x", "10.77.0.9", "alpha", "nope");
    assert_int_equal(ink_firewall_add(fw, &x, &err), -1);
    char msg[256];
    snprintf(msg, sizeof msg, "egress policy 'nope' is not installed on this node (%s/nope.policy)",
             INK_TEST_POLICY_DIR);
    assert_string_equal(err.msg, msg);
    x = spec("wl-x", "10.77.0.9", "Bad Project", "");
    assert_int_equal(ink_firewall_add(fw, &x, &err), -1);
    const char *bad[] = {"[::1]:80"};
    x = spec("wl-x", "10.77.0.9", "alpha", "");
    x.allow = bad;
    x.nallow = 1;
    assert_int_equal(ink_firewall_add(fw, &x, &err), -1);
    assert_non_null(strstr(err.msg, "IPv6 destinations are not supported"));
    x = spec("wl-x", "10.77.0.2", "alpha", ""); /* wl-a's address */
    assert_int_equal(ink_firewall_add(fw, &x, &err), -1);
    assert_int_equal(ink_firewall_check_drift(fw, NULL, 0, &err), 0);

    /* Replacing a workload's spec; re-adding it unchanged is free. */
    c.policy = "default";
    assert_int_equal(ink_firewall_add(fw, &c, &err), 0);
    assert_int_equal(ink_firewall_add(fw, &c, &err), 0);
    t = table_text();
    snprintf(want, sizeof want, "%s : jump pol_default", ifc);
    assert_non_null(strstr(t, want));
    free(t);

    /* Removing the last of beta takes its chain; removing twice is fine. */
    assert_int_equal(ink_firewall_remove(fw, "wl-c", &err), 0);
    assert_int_equal(ink_firewall_remove(fw, "wl-c", &err), 0);
    t = table_text();
    assert_null(strstr(t, ifc));
    assert_null(strstr(t, "prj_beta"));
    assert_non_null(strstr(t, "prj_alpha"));
    free(t);
    assert_int_equal(ink_firewall_check_drift(fw, NULL, 0, &err), 0);

    /* A new firewall (an agent restart) syncs to exactly its list. */
    ink_firewall_close(fw);
    fw = open_fw(INK_TEST_POLICY_DIR);
    ink_fw_spec list[] = {a, c};
    assert_int_equal(ink_firewall_sync(fw, list, 2, false, &err), 0);
    t = table_text();
    assert_non_null(strstr(t, ifc));
    char ifb[IFNAMSIZ + 2];
    ifname_of("wl-b", ifb);
    assert_null(strstr(t, ifb));
    free(t);
    /* Two workloads on one address: the first keeps it, the other is left
     * out (it would share, and lose, the first one's elements). */
    ink_fw_spec dup[] = {a, c, spec("wl-dup", "10.77.0.2", "alpha", "")};
    assert_int_equal(ink_firewall_sync(fw, dup, 3, false, &err), 0);
    t = table_text();
    char ifd[IFNAMSIZ + 2];
    ifname_of("wl-dup", ifd);
    assert_null(strstr(t, ifd));
    assert_non_null(strstr(t, ifa));
    free(t);
    /* Host names are not resolved by a sync: noted, not waited for. */
    const char *host[] = {"api.example.invalid:443"};
    list[0].allow = host;
    list[0].nallow = 1;
    assert_int_equal(ink_firewall_sync(fw, list, 2, false, &err), 0);
    ink_firewall_note(fw, "wl-a", msg, sizeof msg);
    assert_non_null(strstr(msg, "api.example.invalid: not resolved yet"));
    ink_firewall_close(fw);
    nft("delete table inet ink");
}

static void test_drift(void **state)
{
    (void)state;
    NEED_NETNS();
    ink_firewall *fw = open_fw(INK_TEST_POLICY_DIR);
    ink_err err = {0};
    ink_fw_spec list[] = {spec("wl-a", "10.77.0.2", "alpha", ""),
                          spec("wl-b", "10.77.0.3", "beta", "deny-all")};
    assert_int_equal(ink_firewall_sync(fw, list, 2, true, &err), 0);
    char what[512];
    assert_int_equal(ink_firewall_check_drift(fw, what, sizeof what, &err), 0);
    char *before = table_text();

    /* Counters as packets would leave them: read, reported, kept. */
    char ifa[IFNAMSIZ + 2], cmd[256];
    ifname_of("wl-a", ifa);
    snprintf(cmd, sizeof cmd,
             "add element inet ink blk_metadata { %s counter packets 5 bytes 300 }", ifa);
    nft(cmd);
    assert_int_equal(ink_firewall_check_drift(fw, what, sizeof what, &err), 0);
    ink_fw_blocked b[8];
    size_t n = ink_firewall_blocked(fw, "wl-a", b, 8);
    assert_int_equal(n, 1);
    assert_string_equal(b[0].category, "metadata");
    assert_int_equal(b[0].packets, 5);
    assert_int_equal(ink_firewall_blocked(fw, "wl-b", b, 8), 0);
    assert_int_equal(ink_firewall_blocked(fw, "nobody", b, 8), 0);

    /* Another table is not ours to care about. */
    nft("add table inet other");
    assert_int_equal(ink_firewall_check_drift(fw, what, sizeof what, &err), 0);
    nft("delete table inet other");

    nft("flush ruleset");
    assert_int_equal(ink_firewall_check_drift(fw, what, sizeof what, &err), 1);
    assert_string_equal(what, "table inet ink is gone (ruleset flushed?)");
    char *after = table_text();
    assert_non_null(after);
    assert_non_null(strstr(after, "counter packets 5 bytes 300"));
    free(after);
    assert_int_equal(ink_firewall_check_drift(fw, what, sizeof what, &err), 0);

    nft("insert rule inet ink egress accept");
    nft("add chain inet ink intruder");
    assert_int_equal(ink_firewall_check_drift(fw, what, sizeof what, &err), 1);
    assert_non_null(strstr(what, "chain egress changed"));
    assert_non_null(strstr(what, "chain intruder unexpected"));
    after = table_text();
    assert_null(strstr(after, "intruder"));
    free(after);
    assert_int_equal(ink_firewall_check_drift(fw, what, sizeof what, &err), 0);

    /* Incremental changes are verified lazily, once. */
    ink_fw_spec c = spec("wl-c", "10.77.0.4", "alpha", "");
    assert_int_equal(ink_firewall_add(fw, &c, &err), 0);
    assert_int_equal(ink_firewall_remove(fw, "wl-c", &err), 0);
    assert_int_equal(ink_firewall_check_drift(fw, what, sizeof what, &err), 0);
    assert_int_equal(ink_firewall_check_drift(fw, what, sizeof what, &err), 0);
    /* ...and a change right after one is still found. */
    assert_int_equal(ink_firewall_add(fw, &c, &err), 0);
    nft("flush chain inet ink forward");
    assert_int_equal(ink_firewall_check_drift(fw, what, sizeof what, &err), 1);
    after = table_text();
    assert_non_null(strstr(after, "iifname @workload_ifs jump egress"));
    free(after);
    free(before);
    ink_firewall_close(fw);
    nft("delete table inet ink");
}

static void write_policy(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.policy", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, 0644);
}

static void test_reload(void **state)
{
    NEED_NETNS();
    test_scratch *s = *state;
    chmod(s->dir, 0755);
    write_policy(s->dir, "default", "allow project\ndeny any as nope\n");
    write_policy(s->dir, "extra", "allow any\n");
    write_policy(s->dir, "broken", "allow any\nfoo\n");
    ink_firewall *fw = open_fw(s->dir);
    ink_err err = {0};
    /* The broken file did not load: naming it says why. */
    ink_fw_spec x = spec("wl-x", "10.77.0.9", "alpha", "broken");
    assert_int_equal(ink_firewall_add(fw, &x, &err), -1);
    assert_non_null(strstr(err.msg, "egress policy 'broken' has errors:"));
    assert_non_null(strstr(err.msg, "broken.policy:2: unknown keyword 'foo'"));
    char path[512];
    snprintf(path, sizeof path, "%s/broken.policy", s->dir);
    unlink(path);

    ink_fw_spec list[] = {spec("wl-a", "10.77.0.2", "alpha", ""),
                          spec("wl-b", "10.77.0.3", "alpha", "extra")};
    assert_int_equal(ink_firewall_sync(fw, list, 2, true, &err), 0);
    char *before = table_text();

    write_policy(s->dir, "default", "allow project\ndeny 10.0.0.1/8\n");
    assert_int_equal(ink_firewall_reload_policies(fw, &err), -1);
    char want[600];
    snprintf(want, sizeof want, "%s/default.policy:2: '10.0.0.1/8' has host bits set", s->dir);
    assert_non_null(strstr(err.msg, want));
    char *same = table_text();
    assert_string_equal(before, same);
    free(same);

    /* A good change; a policy in use that disappears leaves its workload
     * without one (everything dropped), and says so. */
    write_policy(s->dir, "default", "allow project\ndeny any tcp port 25 as smtp\nallow any\n");
    snprintf(path, sizeof path, "%s/extra.policy", s->dir);
    unlink(path);
    assert_int_equal(ink_firewall_reload_policies(fw, &err), 0);
    char *after = table_text();
    assert_non_null(strstr(after, "set blk_smtp"));
    assert_null(strstr(after, "pol_extra"));
    char ifb[IFNAMSIZ];
    ink_net_host_ifname("wl-b", ifb);
    char elem[64];
    snprintf(elem, sizeof elem, "\"%s\" : jump pol_", ifb);
    assert_null(strstr(after, elem));
    free(after);
    char note[512];
    ink_firewall_note(fw, "wl-b", note, sizeof note);
    assert_non_null(strstr(note, "egress policy 'extra' is not installed on this node"));
    assert_int_equal(ink_firewall_check_drift(fw, NULL, 0, &err), 0);
    free(before);
    ink_firewall_close(fw);
    nft("delete table inet ink");
}

static void test_many(void **state)
{
    (void)state;
    NEED_NETNS();
    ink_firewall *fw = open_fw(INK_TEST_POLICY_DIR);
    enum { N = 300 };
    ink_fw_spec *list = ink_xcalloc(N, sizeof *list);
    char(*ids)[16] = ink_xcalloc(N, 16);
    char(*projects)[16] = ink_xcalloc(N, 16);
    const char *allow[] = {"198.51.100.0/24:443"};
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], 16, "w%d", i);
        snprintf(projects[i], 16, "p%d", i / 7);
        list[i] = (ink_fw_spec){.workload_id = ids[i],
                                .project = projects[i],
                                .allow = allow,
                                .nallow = 1,
                                .policy = i % 2 ? "allowlist" : ""};
        list[i].addr.s_addr = htonl(0x0a4d0000 + 2 + (uint32_t)i);
    }
    ink_firewall_config cfg = {.policy_dir = INK_TEST_POLICY_DIR, .workload_cidr = "10.77.0.0/16"};
    ink_firewall_close(fw);
    ink_err err = {0};
    assert_int_equal(ink_firewall_open(&cfg, &fw, &err), 0);
    assert_int_equal(ink_firewall_sync(fw, list, N, true, &err), 0);
    int64_t us;
    size_t n;
    ink_firewall_last_apply(fw, &us, &n);
    assert_int_equal(n, N);
    for (int i = 0; i < N; i += 3)
        assert_int_equal(ink_firewall_remove(fw, ids[i], &err), 0);
    for (int i = 0; i < N; i += 3)
        assert_int_equal(ink_firewall_add(fw, &list[i], &err), 0);
    assert_int_equal(ink_firewall_check_drift(fw, NULL, 0, &err), 0);
    assert_int_equal(ink_firewall_refresh_hosts(fw, true, &err), 0);
    ink_firewall_close(fw);
    nft("delete table inet ink");
    free(list);
    free(ids);
    free(projects);
}

int main(void)
{
    private_netns = enter_private_netns();
    /* As root (CI) the facility must be there: a missing one fails with
     * the reason instead of passing as skipped. */
    if (!private_netns && geteuid() == 0) {
        fprintf(stderr, "test_firewall: running as root but no private network namespace "
                        "could be made: nothing here can be tested\n");
        return 1;
    }
    if (!private_netns)
        fprintf(stderr, "test_firewall: no private network namespace (not root): every test "
                        "skipped\n");
    ink_log_init("test_firewall", INK_LOG_ERROR, INK_LOG_LOGFMT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_drift),
        cmocka_unit_test_setup_teardown(test_reload, test_scratch_setup, test_scratch_teardown),
        cmocka_unit_test(test_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
