/* The egress allowlist entry syntax (common/egress.c): what parses, into
 * what, and the message for what does not. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "egress.h"

static void roundtrip(const char *entry, const char *canonical)
{
    ink_egress_allow a;
    ink_err err = {0};
    if (ink_egress_allow_parse(entry, &a, &err) < 0)
        fail_msg("'%s' refused: %s", entry, err.msg);
    char text[INK_EGRESS_ALLOW_TEXT_MAX];
    ink_egress_allow_format(&a, text, sizeof text);
    if (strcmp(text, canonical) != 0)
        fail_msg("'%s' formats as '%s', want '%s'", entry, text, canonical);
}

static void refused(const char *entry, const char *why)
{
    ink_egress_allow a;
    ink_err err = {0};
    if (ink_egress_allow_parse(entry, &a, &err) == 0)
        fail_msg("'%s' was accepted", entry);
    if (!strstr(err.msg, why))
        fail_msg("'%s': message '%s' does not say '%s'", entry, err.msg, why);
}

static void test_accepted(void **state)
{
    (void)state;
    roundtrip("203.0.113.7", "203.0.113.7");
    roundtrip("203.0.113.7:443", "203.0.113.7:443");
    roundtrip("198.51.100.0/24:5432", "198.51.100.0/24:5432");
    roundtrip("10.1.0.0/16:8000-8099", "10.1.0.0/16:8000-8099");
    roundtrip("0.0.0.0/0", "0.0.0.0/0");
    roundtrip("API.Stripe.com:443", "api.stripe.com:443");
    roundtrip("a-b.example.org", "a-b.example.org");
    roundtrip("203.0.113.7/32:1-65535", "203.0.113.7:1-65535");

    ink_egress_allow a;
    ink_err err = {0};
    assert_int_equal(ink_egress_allow_parse("198.51.100.0/24:80-81", &a, &err), 0);
    assert_false(a.is_host);
    assert_int_equal(a.prefix, 24);
    assert_int_equal(a.port_min, 80);
    assert_int_equal(a.port_max, 81);
    assert_int_equal(a.addr.s_addr, inet_addr("198.51.100.0"));
    assert_int_equal(ink_egress_allow_parse("db.example.com", &a, &err), 0);
    assert_true(a.is_host);
    assert_int_equal(a.port_min, 0);
    assert_int_equal(a.port_max, 65535);
}

static void test_refused(void **state)
{
    (void)state;
    refused("", "empty");
    refused("2001:db8::1", "IPv6");
    refused("[2001:db8::1]:443", "IPv6");
    refused("10.1.0.1/16", "did you mean 10.1.0.0/16?");
    refused("10.1.0.0/33", "prefix length");
    refused("10.1.0.0/", "prefix length");
    refused("10.1.0.0/x", "prefix length");
    refused("10.1.0.300", "neither an IPv4 address");
    refused("localhost", "host name with a dot");
    refused("-bad.example.com", "neither");
    refused("bad-.example.com", "neither");
    refused("a..example.com", "neither");
    refused("under_score.example.com", "neither");
    refused("example.com.", "neither");
    refused("api.example.com:0", "not a port");
    refused("api.example.com:65536", "not a port");
    refused("api.example.com:", "not a port");
    refused("api.example.com:http", "not a port");
    refused("api.example.com:90-80", "backwards");
    refused("web.internal:80", ".internal names");
    refused("host/24", "not an IPv4 address");
    char label[80];
    memset(label, 'a', 64);
    strcpy(label + 64, ".example.com");
    refused(label, "neither");
}

static void test_policy_names(void **state)
{
    (void)state;
    assert_true(ink_egress_valid_policy_name("default"));
    assert_true(ink_egress_valid_policy_name("deny-all"));
    assert_true(ink_egress_valid_policy_name("pci-zone2"));
    assert_false(ink_egress_valid_policy_name(""));
    assert_false(ink_egress_valid_policy_name(NULL));
    assert_false(ink_egress_valid_policy_name("-x"));
    assert_false(ink_egress_valid_policy_name("Default"));
    assert_false(ink_egress_valid_policy_name("../etc"));
    assert_false(ink_egress_valid_policy_name("a_b"));
    assert_false(ink_egress_valid_policy_name("abcdefghijklmnopqrstuvwxyz0123456"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_policy_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
