/* Egress policy files (node-agent/policy): the parser and linter (what
 * parses into what, FILE:LINE errors, warnings), the renderer (golden nft
 * text for a policy chain, the table and the incremental batches), the
 * allowlist normalization, directory loading, and a fuzz run: no input
 * crashes the parser. */
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
#include <unistd.h>

#include <cmocka.h>

#include "policy.h"
#include "render.h"
#include "testlib.h"
#include "util.h"

#ifndef INK_TEST_POLICY_DIR
#error "INK_TEST_POLICY_DIR: the source tree's policies/"
#endif

static ink_policy *parse_ok(const char *text)
{
    ink_policy *p = NULL;
    ink_err err = {0};
    if (ink_policy_parse("t/test.policy", "test", text, strlen(text), &p, NULL, &err) < 0)
        fail_msg("refused: %s\n---\n%s", err.msg, text);
    return p;
}

/* The first error of text, which must be refused. */
static void refused(const char *text, const char *want)
{
    ink_policy *p = NULL;
    ink_err err = {0};
    ink_pol_diags d = {0};
    if (ink_policy_parse("t/test.policy", "test", text, strlen(text), &p, &d, &err) == 0)
        fail_msg("accepted:\n%s", text);
    if (!strstr(err.msg, want))
        fail_msg("error '%s' does not say '%s'", err.msg, want);
    assert_true(d.nerrors >= 1);
    assert_null(p);
}

static bool has_warning(const char *text, const char *want)
{
    ink_policy *p = NULL;
    ink_err err = {0};
    ink_pol_diags d = {0};
    if (ink_policy_parse("t/test.policy", "test", text, strlen(text), &p, &d, &err) < 0)
        fail_msg("refused: %s", err.msg);
    ink_policy_free(p);
    for (size_t i = 0; i < d.n; i++)
        if (!d.items[i].error && strstr(d.items[i].msg, want))
            return true;
    return false;
}

static char *render_chain(const ink_policy *p)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    ink_fw_render_policy_chain(f, p);
    fclose(f);
    return buf;
}

/* ------------------------------------------------------------ parsing */

static void test_parse_rules(void **state)
{
    (void)state;
    ink_policy *p = parse_ok("# comment\n"
                             "\n"
                             "define meta = 169.254.0.0/16, fd00:ec2::254   # trailing comment\n"
                             "define more = $meta,192.0.2.1\r\n"
                             "allow project\n"
                             "deny tenants as tenant\n"
                             "deny $more as metadata\n"
                             "deny any tcp port 465, 25,587 as smtp\n"
                             "allow allowlist\n"
                             "allow 198.51.100.0/24 udp port 8000-8099,53\n"
                             "deny any port 1-1024\n"
                             "\tallow   any\n");
    assert_string_equal(p->name, "test");
    assert_string_equal(p->file, "test.policy");
    assert_int_equal(p->nrules, 8);
    const ink_pol_rule *r = p->rules;
    assert_int_equal(r[0].target, INK_POL_PROJECT);
    assert_int_equal(r[0].verdict, INK_POL_ALLOW);
    assert_int_equal(r[0].line, 5);
    assert_int_equal(r[1].target, INK_POL_TENANTS);
    assert_string_equal(r[1].category, "tenant");
    /* $more expands $meta: three addresses, IPv4 first. */
    assert_int_equal(r[2].target, INK_POL_ADDRS);
    assert_int_equal(r[2].naddrs, 3);
    assert_int_equal(r[2].addrs[0].family, AF_INET);
    assert_int_equal(r[2].addrs[2].family, AF_INET6);
    assert_int_equal(r[2].addrs[2].prefix, 128);
    /* Ports sorted. */
    assert_int_equal(r[3].proto, IPPROTO_TCP);
    assert_int_equal(r[3].nports, 3);
    assert_int_equal(r[3].ports[0].min, 25);
    assert_int_equal(r[3].ports[2].min, 587);
    assert_int_equal(r[4].target, INK_POL_ALLOWLIST);
    assert_int_equal(r[5].proto, IPPROTO_UDP);
    assert_int_equal(r[5].nports, 2);
    assert_int_equal(r[5].ports[0].min, 53);
    assert_int_equal(r[5].ports[1].max, 8099);
    /* Ports without a protocol: tcp and udp; default category. */
    assert_true(r[6].tcp_udp);
    assert_string_equal(r[6].category, "policy");
    assert_int_equal(r[7].target, INK_POL_ANY);
    assert_int_equal(r[7].line, 12);

    cleanup_free char *text = ink_policy_format_rule(&r[3]);
    assert_string_equal(text, "deny any tcp port 25, 465, 587 as smtp");
    cleanup_free char *text2 = ink_policy_format_rule(&r[2]);
    assert_string_equal(text2, "deny 169.254.0.0/16, 192.0.2.1, fd00:ec2::254 as metadata");
    ink_policy_free(p);

    /* Merged port ranges; nested CIDRs dropped (with a warning). */
    p = parse_ok("allow any port 80, 81, 79-80, 1000-2000, 1500\n"
                 "deny 10.0.0.0/8, 10.1.0.0/16, 10.0.0.0/8, 192.168.1.1\n");
    assert_int_equal(p->rules[0].nports, 2);
    assert_int_equal(p->rules[0].ports[0].min, 79);
    assert_int_equal(p->rules[0].ports[0].max, 81);
    assert_int_equal(p->rules[0].ports[1].min, 1000);
    assert_int_equal(p->rules[0].ports[1].max, 2000);
    assert_int_equal(p->rules[1].naddrs, 2);
    ink_policy_free(p);

    /* An empty policy denies everything (and says so). */
    p = parse_ok("# nothing\n\n");
    assert_int_equal(p->nrules, 0);
    ink_policy_free(p);
    assert_true(has_warning("", "no rules: every packet is denied"));
}

static void test_parse_errors(void **state)
{
    (void)state;
    refused("allow any\nfrobnicate 1.2.3.4\n", "t/test.policy:2: unknown keyword 'frobnicate'");
    refused("accept any\n", ":1: 'accept' is not a verdict here: use allow or deny");
    refused("deny 10.0.0.1/8\n", ":1: '10.0.0.1/8' has host bits set: did you mean 10.0.0.0/8?");
    refused("deny fd00::1/8\n", "has host bits set: did you mean fd00::/8?");
    refused("deny 10.0.0.0/33\n", "the prefix length must be 0-32");
    refused("deny fd00::/129\n", "the prefix length must be 0-128");
    refused("deny 10.0.0.0/\n", "the prefix length must be 0-32");
    refused("deny 300.1.1.1\n", "'300.1.1.1' is not an IPv4 or IPv6 address or CIDR");
    refused("deny example.com\n", "is not an IPv4 or IPv6 address or CIDR");
    refused("deny $nope\n", ":1: '$nope' is not defined");
    refused("deny $x\ndefine x = 1.2.3.4\n", ":1: '$x' is not defined");
    refused("define x = 1.2.3.4\ndefine x = 1.2.3.5\n", ":2: 'x' is already defined (line 1)");
    refused("define x 1.2.3.4\n", "expected '=' after 'define x'");
    refused("define = 1.2.3.4\n", "define needs a name");
    refused("define 9x = 1.2.3.4\n", "'9x' is not a name for a define");
    refused("define x =\n", "expected an address, a CIDR or $NAME");
    refused("define x = 1.2.3.4,\n", "expected an address, a CIDR or $NAME");
    refused("allow any tcp port 0\n", "'0' is not a port (1-65535)");
    refused("allow any tcp port 65536\n", "'65536' is not a port (1-65535)");
    refused("allow any tcp port 90-80\n", "the port range '90-80' is backwards");
    refused("allow any tcp port\n", "expected a port");
    refused("allow any port 80 tcp\n", "'tcp' is out of place");
    refused("allow any as x\n", "'as' names the counter of a deny rule");
    refused("deny any as\n", "'as' needs a category name");
    refused("deny any as Bad_Name\n", "'as' needs a category name");
    refused("deny any as -x\n", "'as' needs a category name");
    refused("deny project\n", "'project' can only be allowed");
    refused("allow\n", "allow what?");
    refused("deny any icmp\n", "unexpected 'icmp'");
    refused("allow any any\n", "unexpected 'any'");
    refused("allow 1.2.3.4 5.6.7.8\n", "unexpected '5.6.7.8'");
    ink_policy *p = NULL;
    ink_err err = {0};
    ink_pol_diags d = {0};
    assert_int_equal(ink_policy_parse("n.policy", "n", "allow any\0\n", 11, &p, NULL, &err), -1);
    assert_string_equal(err.msg, "n.policy:1: the line holds a NUL byte: not a text file?");
    /* Every error is reported, the first in err. */
    const char *text = "allow any\nfoo\ndeny 1.2.3.4/8\nbar\n";
    assert_int_equal(ink_policy_parse("x.policy", "x", text, strlen(text), &p, &d, &err), -1);
    assert_int_equal(d.nerrors, 3);
    assert_string_equal(d.items[0].msg, "x.policy:2: unknown keyword 'foo': lines start with "
                                        "define, resolve, allow or deny");
    assert_string_equal(err.msg, d.items[0].msg);
    /* Terminal escapes in a file never reach a message. */
    refused("\x1b[31mevil\n", "unknown keyword '?[31mevil'");
    /* Policy names come from file names. */
    assert_int_equal(ink_policy_parse("Bad.policy", "Bad", "", 0, &p, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "'Bad' is not a policy name"));
    /* Lines and files too long for a policy. */
    char *longline = ink_xmalloc(INK_POLICY_LINE_MAX + 100);
    memset(longline, 'a', INK_POLICY_LINE_MAX + 10);
    longline[INK_POLICY_LINE_MAX + 10] = '\0';
    refused(longline, "line longer than");
    free(longline);
}

/* resolve: which names the node resolver forwards for the workload. */
static void test_parse_resolve(void **state)
{
    (void)state;
    ink_policy *p = parse_ok("allow any\n");
    assert_int_equal(p->resolve, INK_POL_RESOLVE_ANY);
    assert_int_equal(p->resolve_line, 0);
    ink_policy_free(p);
    p = parse_ok("allow project\nresolve internal\n");
    assert_int_equal(p->resolve, INK_POL_RESOLVE_INTERNAL);
    assert_int_equal(p->resolve_line, 2);
    ink_policy_free(p);
    p = parse_ok("resolve allowlist # only the allowlist's names\nallow allowlist\n");
    assert_int_equal(p->resolve, INK_POL_RESOLVE_ALLOWLIST);
    ink_policy_free(p);
    p = parse_ok("resolve any\nallow any\n");
    assert_int_equal(p->resolve, INK_POL_RESOLVE_ANY);
    assert_int_equal(p->resolve_line, 1);
    ink_policy_free(p);
    assert_string_equal(ink_pol_resolve_name(INK_POL_RESOLVE_INTERNAL), "internal");
    refused("resolve internal\nresolve any\n", ":2: resolve is already set on line 1");
    refused("resolve\n", ":1: resolve takes one word");
    refused("resolve any internal\n", "resolve takes one word");
    refused("resolve everything\n", ":1: 'everything' is not a resolve mode: any, internal or "
                                    "allowlist");
    assert_true(has_warning("resolve allowlist\nallow any\n",
                            ":1: warning: resolve allowlist, but no rule allows the allowlist"));
    assert_false(has_warning("resolve allowlist\nallow allowlist\n", "resolve"));
}

static void test_lint_warnings(void **state)
{
    (void)state;
    assert_true(
        has_warning("allow any\ndeny 10.0.0.0/8\n",
                    ":2: warning: never matches: line 1 allows every packet it would deny"));
    assert_true(has_warning("deny tenants\nallow project\n", ":2: warning: never matches: line 1"));
    assert_true(has_warning("deny 10.0.0.0/8\ndeny 10.1.0.0/16 tcp port 80\n",
                            "never decides anything: line 1 denies the same packets first"));
    assert_true(has_warning("allow any tcp\nallow any tcp port 443\n", "never decides anything"));
    assert_true(has_warning("deny any port 25\ndeny any tcp port 25\n", "never decides anything"));
    assert_false(has_warning("deny any tcp port 25\ndeny any port 25\n", "never"));
    assert_false(has_warning("deny any tcp\ndeny any\n", "never"));
    assert_false(has_warning("allow project\ndeny tenants\n", "never"));
    assert_false(has_warning("deny 10.1.0.0/16\ndeny 10.0.0.0/8\n", "never"));
    assert_true(
        has_warning("define x = 1.2.3.4\nallow any\n", ":1: warning: x is defined but never used"));
    assert_true(has_warning("deny 10.0.0.0/8, 10.2.0.0/16\n", "10.2.0.0/16 is inside 10.0.0.0/8"));
    assert_true(has_warning("deny 1.2.3.4, 1.2.3.4\n", "1.2.3.4 is listed twice"));
    assert_true(has_warning("allow tenants\n", "reach other projects' workloads"));
}

/* ------------------------------------------------------------ rendering */

static void test_render_chain(void **state)
{
    (void)state;
    ink_policy *p = parse_ok("define meta = 169.254.0.0/16, fd00:ec2::254\n"
                             "allow project tcp port 80\n"
                             "deny tenants as tenant\n"
                             "deny $meta as metadata\n"
                             "deny any tcp port 25, 465 as smtp\n"
                             "allow allowlist\n"
                             "deny any udp as no-udp\n"
                             "allow 198.51.100.0/24 port 53\n"
                             "allow any\n");
    cleanup_free char *text = render_chain(p);
    assert_string_equal(
        text, "\tchain pol_test {\n"
              "\t\ttcp dport 80 iifname vmap @project_of comment \"test.policy:2\"\n"
              "\t\tip daddr @workload_addrs add @blk_tenant { iifname } drop comment "
              "\"test.policy:3\"\n"
              "\t\tip daddr 169.254.0.0/16 add @blk_metadata { iifname } drop comment "
              "\"test.policy:4\"\n"
              "\t\tip6 daddr fd00:ec2::254 add @blk_metadata { iifname } drop comment "
              "\"test.policy:4\"\n"
              "\t\ttcp dport { 25, 465 } add @blk_smtp { iifname } drop comment \"test.policy:5\"\n"
              "\t\tmeta l4proto { tcp, udp } iifname . ip daddr . th dport @allow4 accept comment "
              "\"test.policy:6\"\n"
              "\t\tmeta l4proto udp add @blk_no-udp { iifname } drop comment \"test.policy:7\"\n"
              "\t\tmeta l4proto { tcp, udp } th dport 53 ip daddr 198.51.100.0/24 accept comment "
              "\"test.policy:8\"\n"
              "\t\taccept comment \"test.policy:9\"\n"
              "\t\tadd @blk_unmatched { iifname } drop comment \"test.policy: nothing matched\"\n"
              "\t}\n");
    ink_policy_free(p);
}

static char *render_table(const ink_policy_set *set, const ink_fw_workload *w, size_t n)
{
    ink_fw_node node = {0};
    ink_err err = {0};
    assert_int_equal(ink_fw_node_parse_cidr("10.213.0.0/20", &node, &err), 0);
    node.gateway.s_addr = inet_addr("10.213.0.1");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ink_fw_render_table(f, set, &node, w, n);
    fclose(f);
    return buf;
}

static ink_fw_workload wl(const char *id, const char *ifname, const char *addr, const char *project,
                          const char *policy)
{
    ink_fw_workload w = {.id = id, .project = project, .policy = policy};
    snprintf(w.ifname, sizeof w.ifname, "%s", ifname);
    w.addr.s_addr = inet_addr(addr);
    return w;
}

static void test_render_table(void **state)
{
    (void)state;
    ink_policy_set set = {0};
    ink_policy *p = parse_ok("allow project\ndeny any as nope\n");
    set.items = &p;
    set.n = 1;
    ink_fw_allow allow[] = {{0xcb007100, 0xcb0071ff, 443, 443}, {0xc6336407, 0xc6336407, 0, 65535}};
    ink_fw_counter counters[] = {{"nope", 7, 420}};
    ink_fw_workload w[3] = {
        wl("a", "ink000000000001", "10.213.0.2", "alpha", "test"),
        wl("b", "ink000000000002", "10.213.0.3", "alpha", NULL),
        wl("c", "ink000000000003", "10.213.0.4", "", "test"),
    };
    w[0].allow = allow;
    w[0].nallow = 2;
    w[0].counters = counters;
    w[0].ncounters = 1;
    cleanup_free char *t = render_table(&set, w, 3);
    const char *want[] = {
        "add table inet ink\ndelete table inet ink\ntable inet ink {\n",
        "\tset workload_ifs {\n\t\ttype ifname\n\t\telements = {\n\t\t\t\"ink000000000001\",\n"
        "\t\t\t\"ink000000000002\",\n\t\t\t\"ink000000000003\"\n\t\t}\n\t}\n",
        "\t\t\t\"ink000000000003\" . 10.213.0.4\n",
        /* b has no policy (fail closed): no egress_policy element. */
        "\tmap egress_policy {\n\t\ttype ifname : verdict\n\t\telements = {\n"
        "\t\t\t\"ink000000000001\" : jump pol_test,\n\t\t\t\"ink000000000003\" : jump "
        "pol_test\n\t\t}\n\t}\n",
        /* c has no project: no project_of element. */
        "\tmap project_of {\n\t\ttype ifname : verdict\n\t\telements = {\n"
        "\t\t\t\"ink000000000001\" : jump prj_alpha,\n\t\t\t\"ink000000000002\" : jump "
        "prj_alpha\n\t\t}\n\t}\n",
        "\t\t\t\"ink000000000001\" . 203.0.113.0/24 . 443,\n"
        "\t\t\t\"ink000000000001\" . 198.51.100.7 . 0-65535\n",
        "\tset blk_nope {\n\t\ttype ifname\n\t\tsize 65536\n\t\tflags dynamic\n\t\tcounter\n"
        "\t\telements = {\n\t\t\t\"ink000000000001\" counter packets 7 bytes 420\n\t\t}\n\t}\n",
        "\tset blk_unassigned {\n",
        "\tset blk_node {\n",
        "\tset blk_spoofed {\n",
        "\tset blk_unmatched {\n",
        "\tset prj_alpha_addrs {\n\t\ttype ipv4_addr\n\t\telements = {\n\t\t\t10.213.0.2,\n"
        "\t\t\t10.213.0.3\n\t\t}\n\t}\n\tchain prj_alpha {\n\t\tip daddr @prj_alpha_addrs "
        "accept\n\t}\n",
        "\tchain pol_test {\n",
        "\t\tip daddr 10.213.0.1 meta l4proto { tcp, udp } th dport 53 accept",
        "\t\ttype filter hook forward priority filter; policy accept;\n"
        "\t\tiifname @workload_ifs jump egress\n"
        "\t\tip saddr 10.213.0.0/20 add @blk_unassigned { iifname } drop\n",
        "\t\tiifname vmap @egress_policy\n\t\tadd @blk_unassigned { iifname } drop",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        "\t\tip saddr 10.213.0.0/20 oifname != @workload_ifs masquerade\n",
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(want); i++)
        if (!strstr(t, want[i]))
            fail_msg("table lacks:\n%s\n--- table:\n%s", want[i], t);
    assert_null(strstr(t, "prj_ {")); /* c's empty project */
    ink_policy_free(p);

    /* No workloads, no policies: still a whole, valid-looking table. */
    ink_policy_set none = {0};
    cleanup_free char *t2 = render_table(&none, NULL, 0);
    assert_non_null(strstr(t2, "\tset workload_ifs {\n\t\ttype ifname\n\t}\n"));
    assert_null(strstr(t2, "elements"));
    assert_non_null(strstr(t2, "chain forward"));
}

static void test_render_increments(void **state)
{
    (void)state;
    ink_fw_allow allow[] = {{0x0a000001, 0x0a000005, 1000, 2000}};
    ink_fw_workload w = wl("a", "ink000000000001", "10.213.0.2", "alpha", "default");
    w.allow = allow;
    w.nallow = 1;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ink_fw_render_add(f, &w, true);
    fclose(f);
    assert_string_equal(buf,
                        "add set inet ink prj_alpha_addrs { type ipv4_addr; }\n"
                        "add chain inet ink prj_alpha\n"
                        "add rule inet ink prj_alpha ip daddr @prj_alpha_addrs accept\n"
                        "add element inet ink workload_ifs { \"ink000000000001\" }\n"
                        "add element inet ink workload_addrs { 10.213.0.2 }\n"
                        "add element inet ink workload_src { \"ink000000000001\" . 10.213.0.2 }\n"
                        "add element inet ink prj_alpha_addrs { 10.213.0.2 }\n"
                        "add element inet ink project_of { \"ink000000000001\" : jump prj_alpha }\n"
                        "add element inet ink allow4 {\n"
                        "\t\"ink000000000001\" . 10.0.0.1-10.0.0.5 . 1000-2000\n}\n"
                        "add element inet ink egress_policy { \"ink000000000001\" : jump "
                        "pol_default }\n");
    free(buf);
    const char *cats[] = {"metadata", "unmatched"};
    f = open_memstream(&buf, &len);
    ink_fw_render_remove(f, &w, true, cats, 2, true);
    fclose(f);
    assert_string_equal(buf, "delete element inet ink egress_policy { \"ink000000000001\" }\n"
                             "delete element inet ink project_of { \"ink000000000001\" }\n"
                             "delete chain inet ink prj_alpha\n"
                             "delete set inet ink prj_alpha_addrs\n"
                             "delete element inet ink allow4 {\n"
                             "\t\"ink000000000001\" . 10.0.0.1-10.0.0.5 . 1000-2000\n}\n"
                             "delete element inet ink workload_src { \"ink000000000001\" . "
                             "10.213.0.2 }\n"
                             "delete element inet ink workload_addrs { 10.213.0.2 }\n"
                             "delete element inet ink workload_ifs { \"ink000000000001\" }\n"
                             "add element inet ink blk_metadata { \"ink000000000001\" }\n"
                             "delete element inet ink blk_metadata { \"ink000000000001\" }\n"
                             "add element inet ink blk_unmatched { \"ink000000000001\" }\n"
                             "delete element inet ink blk_unmatched { \"ink000000000001\" }\n");
    free(buf);
    /* Not the project's last: only its address leaves the project set. */
    w.policy = NULL;
    w.nallow = 0;
    f = open_memstream(&buf, &len);
    ink_fw_render_remove(f, &w, false, NULL, 0, false);
    fclose(f);
    assert_string_equal(buf, "delete element inet ink project_of { \"ink000000000001\" }\n"
                             "delete element inet ink prj_alpha_addrs { 10.213.0.2 }\n"
                             "delete element inet ink workload_src { \"ink000000000001\" . "
                             "10.213.0.2 }\n"
                             "delete element inet ink workload_addrs { 10.213.0.2 }\n"
                             "delete element inet ink workload_ifs { \"ink000000000001\" }\n");
    free(buf);
}

/* ------------------------------------------------------------ allowlists */

static bool in_boxes(const ink_fw_allow *b, size_t n, uint32_t a, uint16_t p)
{
    for (size_t i = 0; i < n; i++)
        if (a >= b[i].lo && a <= b[i].hi && p >= b[i].pmin && p <= b[i].pmax)
            return true;
    return false;
}

static void test_allow_normalize(void **state)
{
    (void)state;
    /* A CIDR and a host inside it, the same host twice, adjacent ranges. */
    ink_fw_allow in[] = {
        {0x0a000000, 0x0a0000ff, 443, 443}, /* 10.0.0.0/24:443 */
        {0x0a000005, 0x0a000005, 0, 65535}, /* 10.0.0.5 */
        {0x0a000005, 0x0a000005, 0, 65535},
        {0x0a000100, 0x0a0001ff, 443, 443}, /* 10.0.1.0/24:443: merges with the first */
        {0xffffffff, 0xffffffff, 1, 1},     /* the top of the range */
    };
    ink_fw_allow *out = NULL;
    size_t n = ink_fw_allow_normalize(in, INK_ARRAY_LEN(in), &out);
    /* 10.0.0.0-10.0.0.4:443, 10.0.0.5:all, 10.0.0.6-10.0.1.255:443, 255.255.255.255:1 */
    assert_int_equal(n, 4);
    assert_int_equal(out[0].lo, 0x0a000000);
    assert_int_equal(out[0].hi, 0x0a000004);
    assert_int_equal(out[1].pmin, 0);
    assert_int_equal(out[1].pmax, 65535);
    assert_int_equal(out[2].lo, 0x0a000006);
    assert_int_equal(out[2].hi, 0x0a0001ff);
    assert_int_equal(out[3].lo, 0xffffffff);
    free(out);

    /* Random boxes: the same points inside, and no two outputs overlap. */
    srand(7);
    for (int round = 0; round < 200; round++) {
        ink_fw_allow r[12];
        size_t nr = 1 + (size_t)(rand() % 12);
        for (size_t i = 0; i < nr; i++) {
            uint32_t lo = (uint32_t)(rand() % 64), len = (uint32_t)(rand() % 16);
            uint16_t pl = (uint16_t)(rand() % 20), pw = (uint16_t)(rand() % 8);
            r[i] = (ink_fw_allow){lo, lo + len, pl, (uint16_t)(pl + pw)};
        }
        n = ink_fw_allow_normalize(r, nr, &out);
        for (uint32_t a = 0; a < 90; a++)
            for (uint16_t p = 0; p < 30; p++)
                if (in_boxes(r, nr, a, p) != in_boxes(out, n, a, p))
                    fail_msg("round %d: %u:%u differs", round, a, p);
        for (size_t i = 0; i < n; i++)
            for (size_t k = i + 1; k < n; k++)
                if (out[i].lo <= out[k].hi && out[k].lo <= out[i].hi &&
                    out[i].pmin <= out[k].pmax && out[k].pmin <= out[i].pmax)
                    fail_msg("round %d: outputs %zu and %zu overlap", round, i, k);
        free(out);
    }
    assert_int_equal(ink_fw_allow_normalize(NULL, 0, &out), 0);
    assert_null(out);
}

/* ------------------------------------------------------------ files */

static void write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_shipped_policies(void **state)
{
    (void)state;
    ink_policy_set set;
    ink_pol_diags d = {0};
    ink_err err = {0};
    bool missing = true;
    assert_int_equal(ink_policy_load_dir(INK_TEST_POLICY_DIR, false, &set, &missing, &d, &err), 0);
    assert_false(missing);
    /* No warnings either: the shipped files are the examples people copy. */
    for (size_t i = 0; i < d.n; i++)
        fail_msg("shipped policy: %s", d.items[i].msg);
    const ink_policy *def = ink_policy_set_find(&set, "default");
    assert_non_null(def);
    const ink_policy *deny_all = ink_policy_set_find(&set, "deny-all");
    const ink_policy *allowlist = ink_policy_set_find(&set, "allowlist");
    assert_non_null(deny_all);
    assert_non_null(allowlist);
    /* What a workload may resolve follows what it may reach: nothing
     * forwarded for deny-all (no tunnel through the resolver), only its
     * allowlist's names for allowlist. */
    assert_int_equal(def->resolve, INK_POL_RESOLVE_ANY);
    assert_int_equal(deny_all->resolve, INK_POL_RESOLVE_INTERNAL);
    assert_int_equal(allowlist->resolve, INK_POL_RESOLVE_ALLOWLIST);
    /* The default's contract: metadata, smtp, private ranges and tenants
     * denied, the project and the internet allowed. */
    const char *cats[] = {"tenant", "metadata", "smtp", "private"};
    for (size_t c = 0; c < INK_ARRAY_LEN(cats); c++) {
        bool found = false;
        for (size_t i = 0; i < def->nrules; i++)
            found = found || (def->rules[i].verdict == INK_POL_DENY &&
                              strcmp(def->rules[i].category, cats[c]) == 0);
        if (!found)
            fail_msg("default.policy has no deny ... as %s", cats[c]);
    }
    assert_int_equal(def->rules[0].target, INK_POL_PROJECT);
    assert_int_equal(def->rules[def->nrules - 1].target, INK_POL_ANY);
    assert_int_equal(def->rules[def->nrules - 1].verdict, INK_POL_ALLOW);
    const char **all = NULL;
    size_t n = ink_policy_categories(&set, &all);
    assert_true(n >= 8);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(all[i - 1], all[i]) < 0);
    free(all);
    ink_policy_set_free(&set);
}

static void test_load_dir(void **state)
{
    test_scratch *s = *state;
    write_file(s->dir, "good.policy", "allow any\n", 0644);
    write_file(s->dir, "bad.policy", "allow any\ndeny 1.2.3.4/8\n", 0644);
    write_file(s->dir, "README.md", "not a policy\n", 0644);
    write_file(s->dir, ".hidden.policy", "frobnicate\n", 0644);
    write_file(s->dir, "Upper.policy", "allow any\n", 0644);
    ink_policy_set set;
    ink_pol_diags d = {0};
    ink_err err = {0};
    assert_int_equal(ink_policy_load_dir(s->dir, true, &set, NULL, &d, &err), -1);
    /* In name order: Upper.policy sorts before bad.policy. */
    assert_non_null(strstr(err.msg, "Upper.policy: 'Upper' is not a policy name"));
    assert_int_equal(d.nerrors, 2);
    assert_non_null(strstr(d.items[1].msg, "bad.policy:2: '1.2.3.4/8' has host bits set"));
    assert_int_equal(set.n, 1);
    assert_string_equal(set.items[0]->name, "good");
    ink_policy_set_free(&set);

    /* Writable by others: refused in strict mode only. */
    char path[512];
    snprintf(path, sizeof path, "%s/Upper.policy", s->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/bad.policy", s->dir);
    unlink(path);
    write_file(s->dir, "open.policy", "allow any\n", 0666);
    memset(&d, 0, sizeof d);
    assert_int_equal(ink_policy_load_dir(s->dir, true, &set, NULL, &d, &err), -1);
    assert_non_null(strstr(err.msg, "open.policy is writable by group or others (mode 666)"));
    assert_int_equal(set.n, 1);
    ink_policy_set_free(&set);
    assert_int_equal(ink_policy_load_dir(s->dir, false, &set, NULL, NULL, &err), 0);
    assert_int_equal(set.n, 2);
    assert_string_equal(set.items[0]->name, "good");
    assert_string_equal(set.items[1]->name, "open");
    ink_policy_set_free(&set);

    /* A missing directory is no policies, not an error. */
    char gone[256];
    snprintf(gone, sizeof gone, "%s/none", s->dir);
    bool missing = false;
    assert_int_equal(ink_policy_load_dir(gone, true, &set, &missing, NULL, &err), 0);
    assert_true(missing);
    assert_int_equal(set.n, 0);
    assert_int_equal(ink_policy_load_dir(gone, true, &set, NULL, NULL, &err), -1);
    assert_int_equal(ink_policy_load_file(gone, &(ink_policy *){NULL}, NULL, &err), -1);
}

/* ------------------------------------------------------------ fuzz */

static const char *const words[] = {
    "allow",
    "deny",
    "define",
    "any",
    "project",
    "tenants",
    "allowlist",
    "tcp",
    "udp",
    "port",
    "as",
    "$m",
    "$x",
    "m",
    "=",
    ",",
    ",,",
    "10.0.0.0/8",
    "1.2.3.4",
    "fd00::/8",
    "::",
    "0",
    "65535",
    "80-90",
    "90-80",
    "x",
    "-",
    "#",
    "\t",
    "\r",
    "\xff\xfe",
    "1.2.3.4/",
    "/32",
    "169.254.169.254/32",
    "as-is",
    "deny-all",
    "99999999999999999999",
    "0.0.0.0/0",
    "::/0",
};

/* Random lines from the grammar's words, random bytes, and every prefix
 * of the shipped default policy: never a crash, and a parse either fails
 * with a FILE:LINE message or yields rules that render. */
static void test_fuzz(void **state)
{
    (void)state;
    const char *env = getenv("INK_FUZZ_ROUNDS");
    int rounds = env ? atoi(env) : 3000;
    srand(12345);
    char *text = ink_xmalloc(8192);
    for (int round = 0; round < rounds; round++) {
        size_t len = 0;
        int lines = 1 + rand() % 8;
        for (int l = 0; l < lines && len < 7000; l++) {
            int mode = rand() % 10;
            if (mode == 0) {
                int n = rand() % 80;
                for (int i = 0; i < n; i++)
                    text[len++] = (char)(rand() % 256);
            } else {
                int n = rand() % 10;
                for (int i = 0; i < n; i++) {
                    const char *w = words[rand() % INK_ARRAY_LEN(words)];
                    size_t wl = strlen(w);
                    memcpy(text + len, w, wl);
                    len += wl;
                    if (rand() % 4)
                        text[len++] = ' ';
                }
            }
            text[len++] = '\n';
        }
        ink_policy *p = NULL;
        ink_err err = {0};
        ink_pol_diags d = {0};
        int rc = ink_policy_parse("fuzz.policy", "fuzz", text, len, &p, &d, &err);
        if (rc < 0) {
            assert_null(p);
            assert_int_equal(strncmp(err.msg, "fuzz.policy:", 12), 0);
        } else {
            cleanup_free char *chain = render_chain(p);
            assert_non_null(strstr(chain, "chain pol_fuzz {"));
            ink_policy_free(p);
        }
    }
    free(text);

    cleanup_free char *def = NULL;
    size_t dlen = 0;
    ink_err err = {0};
    assert_int_equal(
        ink_read_file(INK_TEST_POLICY_DIR "/default.policy", 1 << 20, &def, &dlen, &err), 0);
    for (size_t cut = 0; cut <= dlen; cut++) {
        ink_policy *p = NULL;
        if (ink_policy_parse("cut.policy", "cut", def, cut, &p, NULL, &err) == 0)
            ink_policy_free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_rules),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_lint_warnings),
        cmocka_unit_test(test_render_chain),
        cmocka_unit_test(test_render_table),
        cmocka_unit_test(test_render_increments),
        cmocka_unit_test(test_allow_normalize),
        cmocka_unit_test(test_parse_resolve),
        cmocka_unit_test(test_shipped_policies),
        cmocka_unit_test_setup_teardown(test_load_dir, test_scratch_setup, test_scratch_teardown),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
