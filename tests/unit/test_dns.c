/* Unit tests for node-agent/dns: query parsing (and a fuzz of it), names
 * with compression, answers and forwarded queries, upstream responses,
 * the control protocol (table and configuration, with hostile input), the
 * resolver's policy, the helper's event loop in-process over loopback
 * (answers, forwarding, TCP, malformed input, table reloads), and the
 * agent-side configuration checks. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "dns.h"
#include "dns_internal.h"
#include "testlib.h"
#include "util.h"

/* ------------------------------------------------------------ helpers */

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static unsigned get16(const uint8_t *p)
{
    return (unsigned)(p[0] << 8 | p[1]);
}

/* A query built by hand (not by the code under test). */
static size_t query(uint8_t *out, uint16_t id, const char *name, unsigned type, int edns_size,
                    bool dnssec_ok)
{
    memset(out, 0, 12);
    put16(out, id);
    put16(out + 2, 0x0100);
    put16(out + 4, 1);
    size_t o = 12;
    for (const char *p = name; *p;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        out[o++] = (uint8_t)len;
        memcpy(out + o, p, len);
        o += len;
        p += len + (dot ? 1 : 0);
    }
    out[o++] = 0;
    put16(out + o, type);
    put16(out + o + 2, 1);
    o += 4;
    if (edns_size > 0) {
        put16(out + 10, 1);
        out[o] = 0;
        put16(out + o + 1, 41);
        put16(out + o + 3, (unsigned)edns_size);
        out[o + 5] = 0;
        out[o + 6] = 0;
        put16(out + o + 7, dnssec_ok ? 0x8000 : 0);
        put16(out + o + 9, 0);
        o += 11;
    }
    return o;
}

static ink_dns_parse_result parse(const uint8_t *p, size_t n, ink_dns_query *q, int *rcode)
{
    return ink_dns_parse_query(p, n, q, rcode);
}

/* ------------------------------------------------------------ parsing */

static void test_parse_valid(void **state)
{
    (void)state;
    uint8_t m[512];
    ink_dns_query q;
    int rc;
    size_t n = query(m, 0x1234, "Api.Internal", 1, 0, false);
    assert_int_equal(parse(m, n, &q, &rc), INK_DNS_PARSE_OK);
    assert_int_equal(q.id, 0x1234);
    assert_int_equal(q.qtype, 1);
    assert_int_equal(q.qclass, 1);
    assert_int_equal(q.nlabels, 2);
    assert_false(q.edns);
    assert_int_equal(ink_dns_udp_limit(&q), 512);
    assert_true(ink_dns_label_eq(&q, 0, "api"));
    assert_true(ink_dns_label_eq(&q, 1, "internal"));
    assert_false(ink_dns_label_eq(&q, 2, "internal"));
    /* The client's case is kept for the answer. */
    assert_memory_equal(q.qname, "\003Api\010Internal\000", 14);

    n = query(m, 7, "example.com", 28, 4096, true);
    assert_int_equal(parse(m, n, &q, &rc), INK_DNS_PARSE_OK);
    assert_true(q.edns);
    assert_true(q.edns_do);
    assert_int_equal(q.edns_size, 4096);
    assert_int_equal(ink_dns_udp_limit(&q), INK_DNS_UDP_MAX);
    n = query(m, 7, "example.com", 28, 100, false); /* below 512 counts as 512 */
    assert_int_equal(parse(m, n, &q, &rc), INK_DNS_PARSE_OK);
    assert_int_equal(ink_dns_udp_limit(&q), 512);

    n = query(m, 7, "", 2, 0, false); /* the root */
    assert_int_equal(parse(m, n, &q, &rc), INK_DNS_PARSE_OK);
    assert_int_equal(q.nlabels, 0);
}

static void expect_answer(const uint8_t *m, size_t n, int want)
{
    ink_dns_query q;
    int rc;
    assert_int_equal(parse(m, n, &q, &rc), INK_DNS_PARSE_ANSWER);
    assert_int_equal(rc, want);
}

static void test_parse_malformed(void **state)
{
    (void)state;
    uint8_t m[2048];
    ink_dns_query q;
    int rc;
    size_t n = query(m, 1, "a.internal", 1, 0, false);
    /* Too short for a header: no answer at all. */
    assert_int_equal(parse(m, 11, &q, &rc), INK_DNS_PARSE_DROP);
    assert_int_equal(parse(m, 0, &q, &rc), INK_DNS_PARSE_DROP);
    /* A response: never answered. */
    m[2] |= 0x80;
    assert_int_equal(parse(m, n, &q, &rc), INK_DNS_PARSE_DROP);
    m[2] &= 0x7f;
    /* Opcodes other than QUERY. */
    m[2] |= 0x10; /* opcode 2 (STATUS) */
    expect_answer(m, n, INK_DNS_NOTIMP);
    m[2] &= ~0x78;
    /* Every truncation of a valid query. */
    for (size_t k = 12; k < n; k++)
        expect_answer(m, k, INK_DNS_FORMERR);
    /* Counts. */
    put16(m + 4, 0);
    expect_answer(m, n, INK_DNS_FORMERR);
    put16(m + 4, 2);
    expect_answer(m, n, INK_DNS_FORMERR);
    put16(m + 4, 1);
    put16(m + 6, 1);
    expect_answer(m, n, INK_DNS_FORMERR);
    put16(m + 6, 0);
    put16(m + 10, 0xffff); /* additional records that are not there */
    expect_answer(m, n, INK_DNS_FORMERR);
    put16(m + 10, 0);
    /* Trailing bytes. */
    m[n] = 0;
    expect_answer(m, n + 1, INK_DNS_FORMERR);
    /* Compression in the question. */
    n = query(m, 1, "a.internal", 1, 0, false);
    m[12] = 0xc0;
    m[13] = 0x0c;
    expect_answer(m, n, INK_DNS_FORMERR);
    /* Extended label types. */
    n = query(m, 1, "a.internal", 1, 0, false);
    m[12] = 0x41;
    expect_answer(m, n, INK_DNS_FORMERR);
    /* A name longer than 255 bytes. */
    memset(m, 0, 12);
    put16(m + 4, 1);
    size_t o = 12;
    for (int k = 0; k < 5; k++) {
        m[o++] = 63;
        memset(m + o, 'x', 63);
        o += 63;
    }
    m[o++] = 0;
    put16(m + o, 1);
    put16(m + o + 2, 1);
    expect_answer(m, o + 4, INK_DNS_FORMERR);
    /* Two OPT records; an OPT not owned by the root. */
    n = query(m, 1, "a.internal", 1, 1232, false);
    memcpy(m + n, m + n - 11, 11);
    put16(m + 10, 2);
    expect_answer(m, n + 11, INK_DNS_FORMERR);
    n = query(m, 1, "a.internal", 1, 1232, false);
    m[n - 11] = 1; /* a label of length 1 ... */
    expect_answer(m, n, INK_DNS_FORMERR);
    /* EDNS version 1. */
    n = query(m, 1, "a.internal", 1, 1232, false);
    m[n - 5] = 1;
    expect_answer(m, n, INK_DNS_BADVERS);
    /* Larger than any query. */
    n = query(m, 1, "a.internal", 1, 0, false);
    memset(m + n, 0, sizeof m - n);
    expect_answer(m, INK_DNS_QUERY_MAX + 1, INK_DNS_FORMERR);
}

/* An additional record whose owner name is compressed. */
static void test_parse_additional(void **state)
{
    (void)state;
    uint8_t m[512];
    ink_dns_query q;
    int rc;
    size_t n = query(m, 1, "a.internal", 1, 0, false);
    /* A record owned by a pointer to the question name: skipped. */
    put16(m + 10, 1);
    m[n] = 0xc0;
    m[n + 1] = 12;
    put16(m + n + 2, 16);
    put16(m + n + 4, 1);
    memset(m + n + 6, 0, 4);
    put16(m + n + 10, 2);
    m[n + 12] = 1;
    m[n + 13] = 'x';
    assert_int_equal(parse(m, n + 14, &q, &rc), INK_DNS_PARSE_OK);
    /* A pointer to itself there: malformed, not a loop. */
    m[n + 1] = (uint8_t)n;
    expect_answer(m, n + 14, INK_DNS_FORMERR);
}

static void test_read_name(void **state)
{
    (void)state;
    uint8_t out[INK_DNS_NAME_MAX];
    size_t len, off;
    /* 0: "\1a\0", 3: "\1b" + ptr(0), 7: ptr(3) */
    uint8_t m[64] = {1, 'a', 0, 1, 'b', 0xc0, 0, 0xc0, 3};
    off = 7;
    assert_int_equal(ink_dns_read_name(m, 9, &off, true, out, &len), 0);
    assert_int_equal(off, 9);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "\001b\001a\000", 5);
    off = 7;
    assert_int_equal(ink_dns_read_name(m, 9, &off, false, out, &len), -1);
    /* Forward pointer. */
    uint8_t fwd[] = {0xc0, 2, 0};
    off = 0;
    assert_int_equal(ink_dns_read_name(fwd, 3, &off, true, out, &len), -1);
    /* Pointer to itself. */
    uint8_t self[] = {0, 0, 0xc0, 2};
    off = 2;
    assert_int_equal(ink_dns_read_name(self, 4, &off, true, out, &len), -1);
    /* Two pointers to each other. */
    uint8_t pair[] = {0xc0, 2, 0xc0, 0};
    off = 2;
    assert_int_equal(ink_dns_read_name(pair, 4, &off, true, out, &len), -1);
    /* A pointer back to labels that lead to the same pointer again: each
     * pointer goes backwards, yet it would loop. */
    uint8_t loop[] = {1, 'x', 0xc0, 0};
    off = 2;
    assert_int_equal(ink_dns_read_name(loop, 4, &off, true, out, &len), -1);
    /* Pointers expanding past 255 bytes. */
    uint8_t big[600];
    size_t o = 0;
    for (int k = 0; k < 4; k++) {
        big[o++] = 63;
        memset(big + o, 'y', 63);
        o += 63;
    }
    big[o++] = 0;
    size_t second = o;
    big[o++] = 10;
    memset(big + o, 'z', 10);
    o += 10;
    big[o++] = 0xc0;
    big[o++] = 0;
    off = second;
    assert_int_equal(ink_dns_read_name(big, o, &off, true, out, &len), -1);
    /* Truncated: a label running past the end, a half pointer. */
    uint8_t trunc[] = {5, 'a', 'b'};
    off = 0;
    assert_int_equal(ink_dns_read_name(trunc, 3, &off, true, out, &len), -1);
    uint8_t half[] = {0, 0xc0};
    off = 1;
    assert_int_equal(ink_dns_read_name(half, 2, &off, true, out, &len), -1);
}

/* ------------------------------------------------------------ building */

static void test_build_answer(void **state)
{
    (void)state;
    uint8_t m[512], out[2048];
    ink_dns_query q;
    int rc;
    size_t n = query(m, 0xbeef, "Web.Internal", 1, 0, false);
    assert_int_equal(parse(m, n, &q, &rc), INK_DNS_PARSE_OK);
    struct in_addr addrs[3];
    for (int i = 0; i < 3; i++)
        addrs[i].s_addr = htonl(0x0a000001 + (uint32_t)i);
    ink_dns_answer a = {.rcode = 0, .aa = true, .addrs = addrs, .naddrs = 3, .first = 4, .ttl = 5};
    size_t len = ink_dns_build_answer(&q, &a, out, 512);
    assert_int_equal(len, n + 3 * 16);
    assert_int_equal(get16(out), 0xbeef);
    unsigned flags = get16(out + 2);
    assert_true(flags & INK_DNS_F_QR);
    assert_true(flags & INK_DNS_F_AA);
    assert_true(flags & INK_DNS_F_RD);
    assert_false(flags & INK_DNS_F_TC);
    assert_int_equal(flags & 15, 0);
    assert_int_equal(get16(out + 4), 1);
    assert_int_equal(get16(out + 6), 3);
    /* The question as asked, then records pointing at it. */
    assert_memory_equal(out + 12, m + 12, n - 12);
    size_t o = n;
    assert_int_equal(get16(out + o), 0xc00c);
    assert_int_equal(get16(out + o + 2), 1);
    assert_int_equal(get16(out + o + 8), 5); /* TTL low half */
    /* Rotation: the first record is addrs[4 % 3]. */
    assert_memory_equal(out + o + 12, &addrs[1].s_addr, 4);
    /* An upstream-style check of our own answer. */
    assert_true(ink_dns_response_matches(out, len, 0xbeef, &q));

    /* What does not fit is left out, with TC. */
    len = ink_dns_build_answer(&q, &a, out, n + 20);
    assert_int_equal(len, n + 16);
    assert_true(get16(out + 2) & INK_DNS_F_TC);
    assert_int_equal(get16(out + 6), 1);
    /* Not even the header. */
    assert_int_equal(ink_dns_build_answer(&q, &a, out, 11), 0);

    /* EDNS: an OPT record in the answer, DO echoed; BADVERS goes into it. */
    n = query(m, 9, "x.internal", 1, 1232, true);
    assert_int_equal(parse(m, n, &q, &rc), INK_DNS_PARSE_OK);
    ink_dns_answer b = {.rcode = INK_DNS_BADVERS};
    len = ink_dns_build_answer(&q, &b, out, 512);
    assert_int_equal(len, n);
    assert_int_equal(get16(out + 10), 1);
    assert_int_equal(get16(out + 2) & 15, 0);
    assert_int_equal(out[len - 11 + 5], 1); /* extended rcode: 16 >> 4 */
    assert_int_equal(get16(out + len - 11 + 7), 0x8000);
    /* A query whose question was not read: the header alone. */
    ink_dns_query none = {.id = 3};
    ink_dns_answer f = {.rcode = INK_DNS_FORMERR};
    assert_int_equal(ink_dns_build_answer(&none, &f, out, 512), 12);
    assert_int_equal(get16(out + 4), 0);
    assert_int_equal(get16(out + 2) & 15, INK_DNS_FORMERR);
}

static void test_forward_and_match(void **state)
{
    (void)state;
    uint8_t m[512], fw[512], resp[512];
    ink_dns_query q, fq;
    int rc;
    size_t n = query(m, 0x1111, "WWW.Example.COM", 28, 4096, true);
    assert_int_equal(parse(m, n, &q, &rc), INK_DNS_PARSE_OK);
    size_t fn = ink_dns_build_forward(&q, 0x2222, 1232, fw, sizeof fw);
    assert_true(fn > 0);
    /* It is a query we would accept ourselves, for the same question. */
    assert_int_equal(parse(fw, fn, &fq, &rc), INK_DNS_PARSE_OK);
    assert_int_equal(fq.id, 0x2222);
    assert_int_equal(fq.qtype, 28);
    assert_true(fq.edns);
    assert_true(fq.edns_do);
    assert_int_equal(fq.edns_size, 1232);
    assert_int_equal(fq.qname_len, q.qname_len);
    assert_memory_equal(fq.qname, q.qname, q.qname_len);
    assert_true(get16(fw + 2) & INK_DNS_F_RD);
    /* Without EDNS. */
    fn = ink_dns_build_forward(&q, 0x2222, 0, fw, sizeof fw);
    assert_int_equal(parse(fw, fn, &fq, &rc), INK_DNS_PARSE_OK);
    assert_false(fq.edns);
    assert_int_equal(ink_dns_build_forward(&q, 1, 0, fw, 10), 0);

    /* Responses: the upstream echoes the question (in another case). */
    size_t rn = query(resp, 0x2222, "www.example.com", 28, 0, false);
    resp[2] |= 0x80;
    assert_true(ink_dns_response_matches(resp, rn, 0x2222, &q));
    assert_false(ink_dns_response_matches(resp, rn, 0x2223, &q)); /* id */
    resp[2] &= 0x7f;
    assert_false(ink_dns_response_matches(resp, rn, 0x2222, &q)); /* not a response */
    resp[2] |= 0x80;
    rn = query(resp, 0x2222, "www.example.org", 28, 0, false);
    resp[2] |= 0x80;
    assert_false(ink_dns_response_matches(resp, rn, 0x2222, &q)); /* name */
    rn = query(resp, 0x2222, "www.example.com", 1, 0, false);
    resp[2] |= 0x80;
    assert_false(ink_dns_response_matches(resp, rn, 0x2222, &q)); /* type */
    put16(resp + 4, 0);
    assert_false(ink_dns_response_matches(resp, rn, 0x2222, &q)); /* no question */
    assert_false(ink_dns_response_matches(resp, 11, 0x2222, &q));
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint32_t RND(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return (uint32_t)rnd_state;
}

/* Random and mutated input: never a crash, never a read past the end (the
 * buffers are exact-size copies, so valgrind and ASan see any overread);
 * whatever parses can be answered and forwarded, and what is forwarded
 * parses again as the same question. */
static void test_fuzz_parser(void **state)
{
    (void)state;
    const char *names[] = {"api.internal", "a.b.c.example.com", "", "x", "4.3.2.1.in-addr.arpa"};
    size_t ok = 0;
    for (int iter = 0; iter < 40000; iter++) {
        uint8_t base[INK_DNS_QUERY_MAX + 64];
        size_t n;
        if (iter % 4 == 0) {
            n = RND() % 600;
            for (size_t i = 0; i < n; i++)
                base[i] = (uint8_t)RND();
            if (n > 3 && RND() % 2)
                base[2] &= 0x07; /* a query, opcode 0: get past the header */
            if (n > 5 && RND() % 2) {
                base[4] = 0;
                base[5] = 1;
            }
        } else {
            n = query(base, (uint16_t)RND(), names[RND() % 5], RND() % 300,
                      RND() % 2 ? (int)(RND() % 5000) : 0, RND() & 1);
            int flips = 1 + (int)(RND() % 6);
            for (int k = 0; k < flips; k++)
                base[RND() % n] ^= (uint8_t)(1u << (RND() % 8));
            if (RND() % 4 == 0)
                n = RND() % (n + 1);
        }
        uint8_t *m = ink_xmalloc(n ? n : 1);
        memcpy(m, base, n);
        ink_dns_query q;
        int rc;
        ink_dns_parse_result r = ink_dns_parse_query(m, n, &q, &rc);
        uint8_t out[INK_DNS_TCP_MAX];
        if (r == INK_DNS_PARSE_ANSWER) {
            ink_dns_answer a = {.rcode = rc};
            assert_true(ink_dns_build_answer(&q, &a, out, 512) >= 12);
        } else if (r == INK_DNS_PARSE_OK) {
            ok++;
            assert_true(q.qname_len >= 1 && q.qname_len <= INK_DNS_NAME_MAX);
            struct in_addr addr = {htonl(0x0a000002)};
            ink_dns_answer a = {.addrs = &addr, .naddrs = 1, .ttl = 5};
            size_t an = ink_dns_build_answer(&q, &a, out, ink_dns_udp_limit(&q));
            assert_true(an >= 12 && an <= ink_dns_udp_limit(&q));
            size_t fn = ink_dns_build_forward(&q, 77, 1232, out, sizeof out);
            ink_dns_query fq;
            int frc;
            assert_int_equal(ink_dns_parse_query(out, fn, &fq, &frc), INK_DNS_PARSE_OK);
            assert_int_equal(fq.qname_len, q.qname_len);
            assert_memory_equal(fq.qname, q.qname, q.qname_len);
        }
        free(m);
    }
    assert_true(ok > 1000); /* the mutations did not only make garbage */
}

/* ------------------------------------------------------------ table */

static ink_dns_workload wl(const char *addr, const char *project, const char *app, unsigned ifindex,
                           bool serving, bool forward)
{
    ink_dns_workload w = {.ifindex = ifindex, .serving = serving, .forward = forward};
    inet_pton(AF_INET, addr, &w.addr);
    snprintf(w.project, sizeof w.project, "%s", project);
    snprintf(w.app, sizeof w.app, "%s", app);
    return w;
}

static struct in_addr ip(const char *s)
{
    struct in_addr a;
    inet_pton(AF_INET, s, &a);
    return a;
}

static void sample_table(ink_dns_table *t, uint8_t **bytes, size_t *len)
{
    ink_dns_workload w[] = {
        wl("10.0.0.5", "p1", "web", 5, true, true),
        wl("10.0.0.3", "p1", "web", 3, true, true),
        wl("10.0.0.4", "p1", "api", 4, false, true), /* starting: asks, not found */
        wl("10.0.0.6", "p2", "web", 6, true, false), /* another project's web */
        wl("10.0.0.7", "", "", 7, true, true),       /* no project */
        wl("10.0.0.8", "p1", "Bad_Name", 8, true, true),
        wl("10.0.0.3", "p9", "dup", 9, true, true),     /* an address twice: ignored */
        wl("0.0.0.0", "p1", "noaddr", 0, true, true),   /* no address yet */
        wl("10.0.0.10", "p1", "pay", 10, true, false),  /* resolve allowlist */
        wl("10.0.0.11", "p1", "pay2", 11, true, false), /* resolve allowlist, no host */
    };
    /* Names as an allowlist gives them; what is no host name is left out. */
    char names[] = "API.Stripe.com.\nbad name!\n\nexample.org\n" /* trailing newline */;
    char no_host[] = "..\nbad name!";
    w[8].forward_names = names;
    w[9].forward_names = no_host;
    ink_err err = {0};
    assert_int_equal(ink_dns_table_encode(w, INK_ARRAY_LEN(w), 42, bytes, len, &err), 0);
    assert_int_equal(ink_dns_table_decode(*bytes, *len, t, &err), 0);
}

static void test_table_roundtrip(void **state)
{
    (void)state;
    ink_dns_table t;
    uint8_t *bytes;
    size_t len;
    sample_table(&t, &bytes, &len);
    assert_int_equal(t.serial, 42);
    assert_int_equal(t.naskers, 8);
    const ink_dns_asker *a = ink_dns_table_asker(&t, ip("10.0.0.3"));
    assert_non_null(a);
    assert_int_equal(a->ifindex, 3);
    assert_true(a->flags & INK_DNS_ASKER_FORWARD);
    uint16_t p1 = a->project;
    a = ink_dns_table_asker(&t, ip("10.0.0.6"));
    assert_non_null(a);
    assert_false(a->flags & INK_DNS_ASKER_FORWARD);
    assert_int_not_equal(a->project, p1);
    a = ink_dns_table_asker(&t, ip("10.0.0.7"));
    assert_non_null(a);
    assert_int_equal(a->project, INK_DNS_NO_PROJECT);
    assert_null(ink_dns_table_asker(&t, ip("10.0.0.9")));
    assert_null(ink_dns_table_asker(&t, ip("0.0.0.0")));
    /* Listed names: the two host names, lowercase wire form. */
    a = ink_dns_table_asker(&t, ip("10.0.0.10"));
    assert_non_null(a);
    assert_int_equal(a->flags, INK_DNS_ASKER_NAMES);
    assert_int_equal(a->nnames, 2);
    const ink_dns_fname *f = &t.fnames[a->names_first];
    assert_int_equal(f->len, 16);
    assert_memory_equal(t.fname_bytes + f->off, "\3api\6stripe\3com", 16);
    assert_memory_equal(t.fname_bytes + f[1].off, "\7example\3org", 13);
    /* No usable name at all: no names flag, nothing forwarded. */
    a = ink_dns_table_asker(&t, ip("10.0.0.11"));
    assert_non_null(a);
    assert_int_equal(a->flags, 0);

    const ink_dns_app *web = ink_dns_table_app(&t, p1, (const uint8_t *)"WEB", 3);
    assert_non_null(web);
    assert_int_equal(web->n, 2);
    assert_int_equal(t.addrs[web->first].s_addr, ip("10.0.0.3").s_addr);
    assert_int_equal(t.addrs[web->first + 1].s_addr, ip("10.0.0.5").s_addr);
    assert_null(ink_dns_table_app(&t, p1, (const uint8_t *)"api", 3)); /* not serving */
    assert_null(ink_dns_table_app(&t, p1, (const uint8_t *)"bad_name", 8));
    assert_null(ink_dns_table_app(&t, p1, (const uint8_t *)"we", 2));
    ink_dns_table_free(&t);
    free(bytes);

    /* Empty. */
    ink_err err = {0};
    assert_int_equal(ink_dns_table_encode(NULL, 0, 1, &bytes, &len, &err), 0);
    assert_int_equal(ink_dns_table_decode(bytes, len, &t, &err), 0);
    assert_int_equal(t.naskers, 0);
    assert_null(ink_dns_table_asker(&t, ip("10.0.0.1")));
    assert_null(ink_dns_table_app(&t, 0, (const uint8_t *)"web", 3));
    ink_dns_table_free(&t);
    free(bytes);
}

static void test_table_hostile(void **state)
{
    (void)state;
    ink_dns_table t;
    uint8_t *bytes;
    size_t len;
    sample_table(&t, &bytes, &len);
    ink_dns_table_free(&t);
    ink_err err = {0};
    /* Every truncation fails cleanly (exact-size copies: overreads show). */
    for (size_t k = 0; k < len; k++) {
        uint8_t *cut = ink_xmalloc(k ? k : 1);
        memcpy(cut, bytes, k);
        assert_int_equal(ink_dns_table_decode(cut, k, &t, &err), -1);
        free(cut);
    }
    /* Trailing bytes. */
    uint8_t *more = ink_xmalloc(len + 1);
    memcpy(more, bytes, len);
    more[len] = 0;
    assert_int_equal(ink_dns_table_decode(more, len + 1, &t, &err), -1);
    free(more);
    /* Huge counts: refused before anything is allocated. */
    uint8_t huge[] = {0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(ink_dns_table_decode(huge, sizeof huge, &t, &err), -1);
    uint8_t huge_apps[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff};
    assert_int_equal(ink_dns_table_decode(huge_apps, sizeof huge_apps, &t, &err), -1);
    /* Duplicate askers; an asker of a project that is not there; an app
     * of an unknown project; an app with no replica; a bad name. */
    uint8_t dup[] = {0, 0, 0, 1,  0, 0, 0, 0,    0,    2, 10, 0, 0, 1, 0xff, 0xff, 0, 0,
                     0, 0, 0, 10, 0, 0, 1, 0xff, 0xff, 0, 0,  0, 0, 0, 0,    0,    0, 0};
    assert_int_equal(ink_dns_table_decode(dup, sizeof dup, &t, &err), -1);
    assert_non_null(strstr(err.msg, "twice"));
    uint8_t badproj[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 10, 0, 0,
                         1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  0};
    assert_int_equal(ink_dns_table_decode(badproj, sizeof badproj, &t, &err), -1);
    uint8_t app_noproj[] = {0, 0, 0, 1, 0, 1, 1,   'p', 0, 0,  0, 0, 0,
                            0, 0, 1, 0, 1, 1, 'a', 0,   1, 10, 0, 0, 1};
    assert_int_equal(ink_dns_table_decode(app_noproj, sizeof app_noproj, &t, &err), -1);
    uint8_t app_empty[] = {0, 0, 0, 1, 0, 1, 1, 'p', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 'a', 0, 0};
    assert_int_equal(ink_dns_table_decode(app_empty, sizeof app_empty, &t, &err), -1);
    uint8_t app_ok[] = {0, 0, 0, 1, 0, 1, 1,   'p', 0, 0,  0, 0, 0,
                        0, 0, 1, 0, 0, 1, 'a', 0,   1, 10, 0, 0, 1};
    assert_int_equal(ink_dns_table_decode(app_ok, sizeof app_ok, &t, &err), 0);
    ink_dns_table_free(&t);
    app_ok[19] = 'A'; /* names are lowercase */
    assert_int_equal(ink_dns_table_decode(app_ok, sizeof app_ok, &t, &err), -1);
    /* Bit flips: decoded or refused, never a crash; what decodes is
     * consistent. */
    uint64_t x = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t *m = ink_xmalloc(len);
        memcpy(m, bytes, len);
        for (int k = 0; k < 3; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            m[x % len] ^= (uint8_t)(1u << ((x >> 20) % 8));
        }
        if (ink_dns_table_decode(m, len, &t, &err) == 0) {
            for (size_t i = 0; i < t.napps; i++) {
                assert_true(t.apps[i].first + t.apps[i].n <= t.naddrs);
                assert_true(t.apps[i].project < t.nprojects);
            }
            for (size_t i = 0; i < t.naskers; i++)
                if (t.askers[i].flags & INK_DNS_ASKER_NAMES)
                    assert_true(t.askers[i].names_first + t.askers[i].nnames <= t.nfnames);
            ink_dns_table_free(&t);
        }
        free(m);
    }
    free(bytes);
}

static void test_config_codec(void **state)
{
    (void)state;
    ink_dns_config_msg c = {0}, d;
    struct sockaddr_in *a = (struct sockaddr_in *)&c.up[0].addr;
    a->sin_family = AF_INET;
    a->sin_port = htons(5353);
    a->sin_addr = ip("127.0.0.53");
    struct sockaddr_in6 *b = (struct sockaddr_in6 *)&c.up[1].addr;
    b->sin6_family = AF_INET6;
    b->sin6_port = htons(53);
    inet_pton(AF_INET6, "2001:db8::1", &b->sin6_addr);
    c.nup = 2;
    c.net = ip("10.213.0.0");
    c.prefix = 20;
    uint8_t *p;
    size_t n;
    ink_err err = {0};
    assert_int_equal(ink_dns_config_encode(&c, &p, &n, &err), 0);
    assert_int_equal(ink_dns_config_decode(p, n, &d, &err), 0);
    assert_int_equal(d.nup, 2);
    assert_int_equal(d.prefix, 20);
    assert_int_equal(d.net.s_addr, c.net.s_addr);
    const struct sockaddr_in *da = (const struct sockaddr_in *)&d.up[0].addr;
    assert_int_equal(da->sin_family, AF_INET);
    assert_int_equal(ntohs(da->sin_port), 5353);
    assert_int_equal(da->sin_addr.s_addr, a->sin_addr.s_addr);
    assert_int_equal(d.up[1].addr.ss_family, AF_INET6);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(ink_dns_config_decode(p, k, &d, &err), -1);
    p[1] = 5; /* family */
    assert_int_equal(ink_dns_config_decode(p, n, &d, &err), -1);
    p[1] = 4;
    p[6] = p[7] = 0; /* port 0 */
    assert_int_equal(ink_dns_config_decode(p, n, &d, &err), -1);
    free(p);
    uint8_t many[] = {9};
    assert_int_equal(ink_dns_config_decode(many, 1, &d, &err), -1);
    uint8_t prefix[] = {0, 10, 0, 0, 0, 33};
    assert_int_equal(ink_dns_config_decode(prefix, sizeof prefix, &d, &err), -1);

    /* Frame headers. */
    uint8_t h[INK_DNS_CTL_HEADER];
    uint16_t type;
    uint32_t len;
    ink_dns_ctl_header(h, INK_DNS_MSG_TABLE, 100);
    assert_int_equal(ink_dns_ctl_parse_header(h, 1000, &type, &len, &err), 0);
    assert_int_equal(type, INK_DNS_MSG_TABLE);
    assert_int_equal(len, 100);
    assert_int_equal(ink_dns_ctl_parse_header(h, 99, &type, &len, &err), -1);
    h[0] ^= 1;
    assert_int_equal(ink_dns_ctl_parse_header(h, 1000, &type, &len, &err), -1);
    h[0] ^= 1;
    h[5] = 9; /* version */
    assert_int_equal(ink_dns_ctl_parse_header(h, 1000, &type, &len, &err), -1);
}

/* ------------------------------------------------------------ policy */

static ink_dns_decision decide(const ink_dns_table *t, const char *asker, const char *name,
                               unsigned type, unsigned cls)
{
    uint8_t m[512];
    size_t n = query(m, 1, name, type, 0, false);
    put16(m + n - 2, cls);
    ink_dns_query q;
    int rc;
    assert_int_equal(ink_dns_parse_query(m, n, &q, &rc), INK_DNS_PARSE_OK);
    ink_dns_config_msg cfg = {.nup = 1, .net = ip("10.0.0.0"), .prefix = 24};
    return ink_dns_decide(t, asker ? ink_dns_table_asker(t, ip(asker)) : NULL, &cfg, &q);
}

static void expect_rcode(ink_dns_decision d, int rcode)
{
    assert_int_equal(d.action, INK_DNS_DO_ANSWER);
    assert_int_equal(d.rcode, rcode);
}

static void test_policy(void **state)
{
    (void)state;
    ink_dns_table t;
    uint8_t *bytes;
    size_t len;
    sample_table(&t, &bytes, &len);
    /* Unknown source. */
    expect_rcode(decide(&t, NULL, "web.internal", 1, 1), INK_DNS_REFUSED);
    expect_rcode(decide(&t, "10.0.0.9", "web.internal", 1, 1), INK_DNS_REFUSED);
    /* Same project: the replicas, case-insensitively. */
    ink_dns_decision d = decide(&t, "10.0.0.4", "Web.INTERNAL", 1, 1);
    expect_rcode(d, INK_DNS_NOERROR);
    assert_non_null(d.app);
    assert_int_equal(d.app->n, 2);
    d = decide(&t, "10.0.0.4", "web.internal", 255, 1); /* ANY */
    assert_non_null(d.app);
    /* AAAA and others: the name exists, no records. */
    d = decide(&t, "10.0.0.4", "web.internal", 28, 1);
    expect_rcode(d, INK_DNS_NOERROR);
    assert_null(d.app);
    /* Project p2 has its own web: p1's is not it, and p2 cannot see p1's. */
    d = decide(&t, "10.0.0.6", "web.internal", 1, 1);
    expect_rcode(d, INK_DNS_NOERROR);
    assert_int_equal(d.app->n, 1);
    assert_int_equal(t.addrs[d.app->first].s_addr, ip("10.0.0.6").s_addr);
    expect_rcode(decide(&t, "10.0.0.6", "api.internal", 1, 1), INK_DNS_NXDOMAIN);
    /* Not serving, unknown, deeper names, no project. */
    expect_rcode(decide(&t, "10.0.0.3", "api.internal", 1, 1), INK_DNS_NXDOMAIN);
    expect_rcode(decide(&t, "10.0.0.3", "nope.internal", 1, 1), INK_DNS_NXDOMAIN);
    expect_rcode(decide(&t, "10.0.0.3", "a.web.internal", 1, 1), INK_DNS_NXDOMAIN);
    expect_rcode(decide(&t, "10.0.0.7", "web.internal", 1, 1), INK_DNS_NXDOMAIN);
    expect_rcode(decide(&t, "10.0.0.3", "internal", 1, 1), INK_DNS_NOERROR);
    /* Reverse names of the workload range stay here; others go out. */
    expect_rcode(decide(&t, "10.0.0.3", "5.0.0.10.in-addr.arpa", 12, 1), INK_DNS_NXDOMAIN);
    expect_rcode(decide(&t, "10.0.0.3", "0.0.10.in-addr.arpa", 12, 1), INK_DNS_NXDOMAIN);
    assert_int_equal(decide(&t, "10.0.0.3", "0.10.in-addr.arpa", 12, 1).action,
                     INK_DNS_DO_FORWARD); /* wider than the range */
    assert_int_equal(decide(&t, "10.0.0.3", "5.0.1.10.in-addr.arpa", 12, 1).action,
                     INK_DNS_DO_FORWARD);
    assert_int_equal(decide(&t, "10.0.0.3", "05.0.0.10.in-addr.arpa", 12, 1).action,
                     INK_DNS_DO_FORWARD); /* not an octet */
    /* Everything else upstream, for those who may. */
    assert_int_equal(decide(&t, "10.0.0.3", "example.com", 1, 1).action, INK_DNS_DO_FORWARD);
    assert_int_equal(decide(&t, "10.0.0.7", "example.com", 1, 1).action, INK_DNS_DO_FORWARD);
    expect_rcode(decide(&t, "10.0.0.6", "example.com", 1, 1), INK_DNS_REFUSED);
    /* Only its names for an asker that has a list: exact, any case. */
    assert_int_equal(decide(&t, "10.0.0.10", "api.stripe.com", 1, 1).action, INK_DNS_DO_FORWARD);
    assert_int_equal(decide(&t, "10.0.0.10", "Api.STRIPE.com", 28, 1).action, INK_DNS_DO_FORWARD);
    assert_int_equal(decide(&t, "10.0.0.10", "example.org", 16, 1).action, INK_DNS_DO_FORWARD);
    expect_rcode(decide(&t, "10.0.0.10", "stripe.com", 1, 1), INK_DNS_REFUSED);
    expect_rcode(decide(&t, "10.0.0.10", "x.api.stripe.com", 1, 1), INK_DNS_REFUSED);
    expect_rcode(decide(&t, "10.0.0.10", "api.stripe.co", 1, 1), INK_DNS_REFUSED);
    expect_rcode(decide(&t, "10.0.0.10", "exfil-6c6f6e67.attacker.example", 1, 1), INK_DNS_REFUSED);
    expect_rcode(decide(&t, "10.0.0.11", "example.org", 1, 1), INK_DNS_REFUSED);
    /* Its project's names still answer. */
    expect_rcode(decide(&t, "10.0.0.10", "web.internal", 1, 1), INK_DNS_NOERROR);
    /* Chaos class, zone transfers. */
    expect_rcode(decide(&t, "10.0.0.3", "version.bind", 16, 3), INK_DNS_REFUSED);
    expect_rcode(decide(&t, "10.0.0.3", "example.com", 252, 1), INK_DNS_REFUSED);
    ink_dns_table_free(&t);
    free(bytes);
}

/* ------------------------------------------------------------ the loop */

typedef struct srv_fixture {
    int udp, tcp, ctl[2], up, up_closed;
    uint16_t port, up_port, closed_port;
    pthread_t thread;
    int rc;
    ink_err err;
    uint8_t in[64 * 1024];
    size_t inlen;
    char last_log[1024];
} srv_fixture;

static void *serve_thread(void *arg)
{
    srv_fixture *f = arg;
    ink_dns_server_opts o = {
        .udp_fd = f->udp, .tcp_fd = f->tcp, .ctl_fd = f->ctl[1], .epoll_fd = -1};
    f->rc = ink_dns_server_run(&o, &f->err);
    return NULL;
}

static int bound_udp(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = ip("127.0.0.1")};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *port = ntohs(sa.sin_port);
    return fd;
}

static void ctl_write(srv_fixture *f, uint16_t type, const uint8_t *p, size_t n)
{
    uint8_t h[INK_DNS_CTL_HEADER];
    ink_dns_ctl_header(h, type, (uint32_t)n);
    assert_int_equal(write(f->ctl[0], h, sizeof h), (ssize_t)sizeof h);
    if (n)
        assert_int_equal(write(f->ctl[0], p, n), (ssize_t)n);
}

/* Reads frames from the loop until one of type want arrives (its payload
 * into out); LOG frames are kept in last_log. */
static int ctl_wait(srv_fixture *f, uint16_t want, uint8_t *out, size_t outlen)
{
    for (int rounds = 0; rounds < 100; rounds++) {
        while (f->inlen >= INK_DNS_CTL_HEADER) {
            uint16_t type;
            uint32_t len;
            ink_err err = {0};
            assert_int_equal(
                ink_dns_ctl_parse_header(f->in, INK_DNS_CTL_HELPER_MAX, &type, &len, &err), 0);
            if (f->inlen < INK_DNS_CTL_HEADER + len)
                break;
            const uint8_t *p = f->in + INK_DNS_CTL_HEADER;
            if (type == INK_DNS_MSG_LOG && len > 1)
                snprintf(f->last_log, sizeof f->last_log, "%.*s", (int)len - 1,
                         (const char *)p + 1);
            bool hit = type == want;
            if (hit && out)
                memcpy(out, p, len < outlen ? len : outlen);
            memmove(f->in, f->in + INK_DNS_CTL_HEADER + len, f->inlen - INK_DNS_CTL_HEADER - len);
            f->inlen -= INK_DNS_CTL_HEADER + len;
            if (hit)
                return 0;
        }
        struct pollfd p = {.fd = f->ctl[0], .events = POLLIN};
        if (poll(&p, 1, 100) == 1) {
            ssize_t r = read(f->ctl[0], f->in + f->inlen, sizeof f->in - f->inlen);
            if (r <= 0)
                return -1;
            f->inlen += (size_t)r;
        }
    }
    return -1;
}

static void send_table(srv_fixture *f, const ink_dns_workload *w, size_t n, uint32_t serial)
{
    uint8_t *p;
    size_t len;
    ink_err err = {0};
    assert_int_equal(ink_dns_table_encode(w, n, serial, &p, &len, &err), 0);
    ctl_write(f, INK_DNS_MSG_TABLE, p, len);
    free(p);
    uint8_t ack[4];
    assert_int_equal(ctl_wait(f, INK_DNS_MSG_ACK, ack, sizeof ack), 0);
    assert_int_equal((uint32_t)ack[0] << 24 | ack[1] << 16 | ack[2] << 8 | ack[3], serial);
}

static void send_config(srv_fixture *f, uint16_t upstream_port)
{
    ink_dns_config_msg c = {.nup = 1, .net = ip("10.0.0.0"), .prefix = 24};
    struct sockaddr_in *a = (struct sockaddr_in *)&c.up[0].addr;
    a->sin_family = AF_INET;
    a->sin_addr = ip("127.0.0.1");
    a->sin_port = htons(upstream_port);
    uint8_t *p;
    size_t n;
    ink_err err = {0};
    assert_int_equal(ink_dns_config_encode(&c, &p, &n, &err), 0);
    ctl_write(f, INK_DNS_MSG_CONFIG, p, n);
    free(p);
}

static int srv_setup(void **state)
{
    srv_fixture *f = ink_xcalloc(1, sizeof *f);
    int one = 1;
    /* As the agent hands them over: non-blocking, PKTINFO on the UDP one,
     * both on the same port. */
    f->udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(f->udp, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = ip("127.0.0.1")};
    socklen_t sl = sizeof sa;
    if (bind(f->udp, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(f->udp, (struct sockaddr *)&sa, &sl) < 0)
        return -1;
    f->port = ntohs(sa.sin_port);
    f->tcp = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(f->tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(f->tcp, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(f->tcp, 16) < 0)
        return -1;
    f->up = bound_udp(&f->up_port);
    /* A port nobody listens on: the kernel answers ECONNREFUSED. */
    f->up_closed = bound_udp(&f->closed_port);
    close(f->up_closed);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->ctl) < 0)
        return -1;
    pthread_create(&f->thread, NULL, serve_thread, f);
    send_config(f, f->up_port);
    ink_dns_workload w[] = {
        wl("127.0.0.1", "p1", "web", 0, true, true),
        wl("10.0.0.5", "p1", "web", 5, true, true),
        wl("10.0.0.6", "p2", "db", 6, true, true),
    };
    send_table(f, w, INK_ARRAY_LEN(w), 1);
    *state = f;
    return 0;
}

static int srv_teardown(void **state)
{
    srv_fixture *f = *state;
    close(f->ctl[0]); /* the loop ends on EOF */
    pthread_join(f->thread, NULL);
    close(f->ctl[1]);
    close(f->udp);
    close(f->tcp);
    close(f->up);
    free(f);
    return 0;
}

/* A UDP query from a fresh socket on 127.0.0.1; the response in r. */
static ssize_t ask_udp(srv_fixture *f, const uint8_t *q, size_t n, uint8_t *r, size_t rcap,
                       int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(f->port), .sin_addr = ip("127.0.0.1")};
    connect(fd, (struct sockaddr *)&sa, sizeof sa);
    assert_int_equal(send(fd, q, n, 0), (ssize_t)n);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t got = -1;
    if (poll(&p, 1, timeout_ms) == 1)
        got = recv(fd, r, rcap, 0);
    close(fd);
    return got;
}

static void test_server_local(void **state)
{
    srv_fixture *f = *state;
    uint8_t q[512], r[4096];
    size_t n = query(q, 0x4242, "WEB.internal", 1, 0, false);
    ssize_t got = ask_udp(f, q, n, r, sizeof r, 2000);
    assert_true(got > 12);
    assert_int_equal(get16(r), 0x4242);
    assert_int_equal(get16(r + 2) & 15, INK_DNS_NOERROR);
    assert_true(get16(r + 2) & INK_DNS_F_AA);
    assert_int_equal(get16(r + 6), 2); /* 127.0.0.1 and 10.0.0.5 */
    assert_memory_equal(r + 12, q + 12, n - 12);
    /* Another project's app. */
    n = query(q, 2, "db.internal", 1, 0, false);
    got = ask_udp(f, q, n, r, sizeof r, 2000);
    assert_int_equal(get16(r + 2) & 15, INK_DNS_NXDOMAIN);
    /* Malformed: FORMERR; a response: silence. */
    n = query(q, 3, "web.internal", 1, 0, false);
    got = ask_udp(f, q, n - 1, r, sizeof r, 2000);
    assert_int_equal(got, 12);
    assert_int_equal(get16(r + 2) & 15, INK_DNS_FORMERR);
    q[2] |= 0x80;
    assert_int_equal(ask_udp(f, q, n, r, sizeof r, 300), -1);
    /* Garbage of every size, then still serving. */
    for (size_t k = 0; k < 200; k++) {
        uint8_t g[300];
        for (size_t i = 0; i < sizeof g; i++)
            g[i] = (uint8_t)(i * 31 + k * 7);
        ask_udp(f, g, k % sizeof g, r, sizeof r, 0);
    }
    n = query(q, 4, "web.internal", 28, 1232, false);
    got = ask_udp(f, q, n, r, sizeof r, 2000);
    assert_true(got > 12);
    assert_int_equal(get16(r + 2) & 15, INK_DNS_NOERROR);
    assert_int_equal(get16(r + 6), 0);
}

static void test_server_forward(void **state)
{
    srv_fixture *f = *state;
    uint8_t q[512], r[4096], up[4096];
    size_t n = query(q, 0x5151, "Www.Example.com", 1, 0, false);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(f->port), .sin_addr = ip("127.0.0.1")};
    connect(fd, (struct sockaddr *)&sa, sizeof sa);
    assert_int_equal(send(fd, q, n, 0), (ssize_t)n);
    /* The upstream gets our question under another id, case kept. */
    struct pollfd p = {.fd = f->up, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t un = recvfrom(f->up, up, sizeof up, 0, (struct sockaddr *)&from, &fl);
    assert_int_equal(un, (ssize_t)n);
    assert_memory_equal(up + 12, q + 12, n - 12);
    assert_true(get16(up + 2) & INK_DNS_F_RD);
    uint16_t id = (uint16_t)get16(up);
    /* A spoofed answer with the wrong id is ignored ... */
    up[2] |= 0x80;
    put16(up, id ^ 1);
    sendto(f->up, up, (size_t)un, 0, (struct sockaddr *)&from, fl);
    /* ... the real one relayed under the client's id. */
    put16(up, id);
    put16(up + 6, 1);
    uint8_t rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7};
    memcpy(up + un, rr, sizeof rr);
    sendto(f->up, up, (size_t)un + sizeof rr, 0, (struct sockaddr *)&from, fl);
    struct pollfd c = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&c, 1, 2000), 1);
    ssize_t got = recv(fd, r, sizeof r, 0);
    assert_int_equal(got, un + (ssize_t)sizeof rr);
    assert_int_equal(get16(r), 0x5151);
    assert_memory_equal(r + got - 4, "\xc0\x00\x02\x07", 4);
    /* One answer only: nothing more arrives. */
    assert_int_equal(poll(&c, 1, 200), 0);
    close(fd);

    /* An upstream that refuses the connection: SERVFAIL at once. */
    send_config(f, f->closed_port);
    n = query(q, 0x6161, "example.org", 1, 0, false);
    got = ask_udp(f, q, n, r, sizeof r, 2000);
    assert_true(got >= 12);
    assert_int_equal(get16(r), 0x6161);
    assert_int_equal(get16(r + 2) & 15, INK_DNS_SERVFAIL);
    send_config(f, f->up_port);
}

static void test_server_tcp(void **state)
{
    srv_fixture *f = *state;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(f->port), .sin_addr = ip("127.0.0.1")};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    uint8_t q[514], r[4096];
    /* Two queries on one connection, the second sent in pieces. */
    for (int k = 0; k < 2; k++) {
        size_t n = query(q + 2, (uint16_t)(0x7000 + k), "web.internal", 1, 0, false);
        put16(q, (unsigned)n);
        if (k == 0) {
            assert_int_equal(write(fd, q, n + 2), (ssize_t)n + 2);
        } else {
            assert_int_equal(write(fd, q, 1), 1);
            usleep(50000);
            assert_int_equal(write(fd, q + 1, n + 1), (ssize_t)n + 1);
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, 2000), 1);
        assert_int_equal(recv(fd, r, 2, MSG_WAITALL), 2);
        ssize_t got = recv(fd, r + 2, get16(r), MSG_WAITALL) + 2;
        assert_true(got > 14);
        assert_int_equal(get16(r + 2), 0x7000 + k);
        assert_int_equal(get16(r + 8), 2);
    }
    /* A length no query has: the connection is closed. */
    put16(q, 0xffff);
    assert_int_equal(write(fd, q, 2), 2);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    assert_int_equal(recv(fd, r, sizeof r, 0), 0);
    close(fd);
}

static void test_server_reload(void **state)
{
    srv_fixture *f = *state;
    uint8_t q[512], r[4096];
    /* A table that does not decode: the previous one stays, and the loop
     * says why. */
    uint8_t bad[] = {0, 0, 0, 9, 0, 0, 0xff, 0xff, 0xff, 0xff};
    ctl_write(f, INK_DNS_MSG_TABLE, bad, sizeof bad);
    size_t n = query(q, 1, "web.internal", 1, 0, false);
    ssize_t got = ask_udp(f, q, n, r, sizeof r, 2000);
    assert_true(got > 12);
    assert_int_equal(get16(r + 2) & 15, INK_DNS_NOERROR);
    assert_int_equal(ctl_wait(f, INK_DNS_MSG_LOG, NULL, 0), 0);
    assert_non_null(strstr(f->last_log, "keeping the previous table"));
    /* 127.0.0.1 leaves the table: REFUSED. */
    ink_dns_workload w[] = {wl("10.0.0.5", "p1", "web", 5, true, true)};
    send_table(f, w, 1, 2);
    got = ask_udp(f, q, n, r, sizeof r, 2000);
    assert_int_equal(got, (ssize_t)n);
    assert_int_equal(get16(r + 2) & 15, INK_DNS_REFUSED);
    assert_false(get16(r + 2) & INK_DNS_F_AA);
    /* Back, with the veth check on: 127.0.0.1 arrives on lo (ifindex 1),
     * a table that says otherwise makes it a stranger. */
    ink_dns_workload w2[] = {wl("127.0.0.1", "p1", "web", 999, true, true)};
    send_table(f, w2, 1, 3);
    got = ask_udp(f, q, n, r, sizeof r, 2000);
    assert_int_equal(get16(r + 2) & 15, INK_DNS_REFUSED);
    ink_dns_workload w3[] = {wl("127.0.0.1", "p1", "web", 1, true, true)};
    send_table(f, w3, 1, 4);
    got = ask_udp(f, q, n, r, sizeof r, 2000);
    assert_int_equal(get16(r + 2) & 15, INK_DNS_NOERROR);
    /* A broken frame header: the loop gives up on the stream. */
    uint8_t junk[INK_DNS_CTL_HEADER] = {1, 2, 3};
    assert_int_equal(write(f->ctl[0], junk, sizeof junk), (ssize_t)sizeof junk);
    pthread_join(f->thread, NULL);
    assert_int_equal(f->rc, -1);
    assert_non_null(strstr(f->err.msg, "magic"));
    /* Teardown joins again: start a loop that ends at once. */
    close(f->ctl[0]);
    close(f->ctl[1]);
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->ctl);
    pthread_create(&f->thread, NULL, serve_thread, f);
}

/* ------------------------------------------------------------ agent side */

static void test_service_config(void **state)
{
    (void)state;
    struct in_addr gw;
    ink_err err = {0};
    assert_int_equal(ink_dns_gateway("10.213.0.0/20", &gw, &err), 0);
    assert_int_equal(gw.s_addr, ip("10.213.0.1").s_addr);
    assert_int_equal(ink_dns_gateway("10.213.0.1/20", &gw, &err), -1);
    assert_int_equal(ink_dns_gateway("10.213.0.0", &gw, &err), -1);
    assert_int_equal(ink_dns_gateway("10.213.0.0/31", &gw, &err), -1);

    const char *bad_upstreams[] = {"resolver.example",
                                   "1.2.3.4:0",
                                   "1.2.3.4:x",
                                   "10.213.0.1",
                                   "[::1",
                                   ",",
                                   "1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5,1.1.1.6,1.1.1.7,"
                                   "1.1.1.8,1.1.1.9"};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad_upstreams); i++) {
        ink_dns_config c = {.workload_cidr = "10.213.0.0/20", .upstream = bad_upstreams[i]};
        ink_dns *d = NULL;
        ink_err_clear(&err);
        assert_int_equal(ink_dns_start(&c, &d, &err), -1);
        assert_null(d);
        assert_non_null(strstr(err.msg, "upstream"));
    }
    const char *bad_users[] = {"root", "0", "0:0", "1000:0", "no-such-user-here", "12x"};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad_users); i++) {
        ink_dns_config c = {
            .workload_cidr = "10.213.0.0/20", .upstream = "127.0.0.1", .user = bad_users[i]};
        ink_dns *d = NULL;
        assert_int_equal(ink_dns_start(&c, &d, &err), -1);
        assert_non_null(strstr(err.msg, "dns_user"));
    }
    ink_dns_config c = {.workload_cidr = "10.213.0.0/33"};
    ink_dns *d = NULL;
    assert_int_equal(ink_dns_start(&c, &d, &err), -1);
}

static void test_sandbox_files(void **state)
{
    test_scratch *s = *state;
    char *resolv = NULL, *hosts = NULL;
    ink_err err = {0};
    cleanup_free char *dir = ink_xasprintf("%s/bundle", s->dir);
    assert_int_equal(
        ink_dns_write_sandbox_files(dir, "10.213.0.1", "web", "10.213.0.7", &resolv, &hosts, &err),
        0);
    char *text = NULL;
    assert_int_equal(ink_read_file(resolv, 4096, &text, NULL, &err), 0);
    assert_non_null(strstr(text, "\nnameserver 10.213.0.1\n"));
    assert_non_null(strstr(text, "options ndots:1 timeout:2 attempts:2\n"));
    assert_null(strstr(text, "search"));
    free(text);
    assert_int_equal(ink_read_file(hosts, 4096, &text, NULL, &err), 0);
    assert_non_null(strstr(text, "127.0.0.1\tlocalhost\n"));
    assert_non_null(strstr(text, "10.213.0.7\tweb\n"));
    free(text);
    free(resolv);
    free(hosts);
}

int main(void)
{
    test_block_sigpipe();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_additional),
        cmocka_unit_test(test_read_name),
        cmocka_unit_test(test_build_answer),
        cmocka_unit_test(test_forward_and_match),
        cmocka_unit_test(test_fuzz_parser),
        cmocka_unit_test(test_table_roundtrip),
        cmocka_unit_test(test_table_hostile),
        cmocka_unit_test(test_config_codec),
        cmocka_unit_test(test_policy),
        cmocka_unit_test_setup_teardown(test_server_local, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_server_forward, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_server_tcp, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_server_reload, srv_setup, srv_teardown),
        cmocka_unit_test(test_service_config),
        cmocka_unit_test_setup_teardown(test_sandbox_files, test_scratch_setup,
                                        test_scratch_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
