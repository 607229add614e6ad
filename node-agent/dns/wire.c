/* DNS messages (RFC 1035, EDNS RFC 6891) as far as the node resolver needs
 * them: queries from workloads are parsed completely before anything is
 * decided; answers and forwarded queries are built from what was parsed,
 * never copied from the client's bytes; upstream responses are checked
 * (id, question) and otherwise relayed as they are. Every read is bounds
 * checked against the message length, every count against the bytes that
 * could hold it, and compressed names can only point backwards, so no
 * input loops or reads past its end. */
#include "dns_internal.h"

#include <string.h>

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void wr32(uint8_t *p, uint32_t v)
{
    wr16(p, (uint16_t)(v >> 16));
    wr16(p + 2, (uint16_t)v);
}

static uint8_t lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c + ('a' - 'A')) : c;
}

int ink_dns_read_name(const uint8_t *p, size_t n, size_t *off, bool allow_compression,
                      uint8_t out[INK_DNS_NAME_MAX], size_t *outlen)
{
    size_t pos = *off, o = 0, after = 0;
    /* Where the labels being read started: a pointer must go before it.
     * Each jump lowers it, so a chain of pointers ends within n jumps (a
     * pointer merely before itself could point at labels leading back to
     * it). */
    size_t seg_start = pos;
    bool jumped = false;
    for (;;) {
        if (pos >= n)
            return -1;
        uint8_t len = p[pos];
        if ((len & 0xc0) == 0xc0) {
            if (!allow_compression || pos + 1 >= n)
                return -1;
            size_t target = ((size_t)(len & 0x3f) << 8) | p[pos + 1];
            if (target >= seg_start)
                return -1;
            if (!jumped)
                after = pos + 2;
            jumped = true;
            pos = seg_start = target;
            continue;
        }
        if (len & 0xc0) /* 0x40, 0x80: extended label types (obsolete) */
            return -1;
        if (o + 1 + len > INK_DNS_NAME_MAX || pos + 1 + len > n)
            return -1;
        out[o++] = len;
        memcpy(out + o, p + pos + 1, len);
        o += len;
        pos += 1 + (size_t)len;
        if (len == 0)
            break;
    }
    *outlen = o;
    *off = jumped ? after : pos;
    return 0;
}

static void index_labels(ink_dns_query *q)
{
    q->nlabels = 0;
    for (size_t i = 0; i < q->qname_len && q->qname[i] != 0; i += 1 + (size_t)q->qname[i]) {
        /* 255 bytes hold at most 127 labels of one byte. */
        if (q->nlabels < sizeof q->label_off)
            q->label_off[q->nlabels++] = (uint8_t)i;
    }
}

ink_dns_parse_result ink_dns_parse_query(const uint8_t *p, size_t n, ink_dns_query *q, int *rcode)
{
    memset(q, 0, sizeof *q);
    *rcode = INK_DNS_NOERROR;
    if (n < INK_DNS_HEADER_LEN)
        return INK_DNS_PARSE_DROP;
    q->id = rd16(p);
    q->flags = rd16(p + 2);
    /* Never answer a response: two resolvers would bounce it forever. */
    if (q->flags & INK_DNS_F_QR)
        return INK_DNS_PARSE_DROP;
    uint16_t qd = rd16(p + 4), an = rd16(p + 6), ns = rd16(p + 8), ar = rd16(p + 10);
    if ((q->flags & INK_DNS_F_OPCODE) != 0) {
        *rcode = INK_DNS_NOTIMP;
        return INK_DNS_PARSE_ANSWER;
    }
    *rcode = INK_DNS_FORMERR;
    if (n > INK_DNS_QUERY_MAX || qd != 1 || an != 0 || ns != 0)
        return INK_DNS_PARSE_ANSWER;
    size_t off = INK_DNS_HEADER_LEN;
    /* The question comes right after the header: nothing before it is a
     * name a pointer could sensibly refer to. */
    if (ink_dns_read_name(p, n, &off, false, q->qname, &q->qname_len) < 0 || off + 4 > n) {
        q->qname_len = 0;
        return INK_DNS_PARSE_ANSWER;
    }
    index_labels(q);
    q->qtype = rd16(p + off);
    q->qclass = rd16(p + off + 2);
    off += 4;
    /* ar is at most 65535, but each record needs 11 bytes: the loop ends
     * with the message. */
    for (unsigned i = 0; i < ar; i++) {
        uint8_t name[INK_DNS_NAME_MAX];
        size_t namelen;
        if (ink_dns_read_name(p, n, &off, true, name, &namelen) < 0 || off + 10 > n)
            return INK_DNS_PARSE_ANSWER;
        uint16_t type = rd16(p + off), cls = rd16(p + off + 2), rdlen = rd16(p + off + 8);
        uint32_t ttl = rd32(p + off + 4);
        if (off + 10 + (size_t)rdlen > n)
            return INK_DNS_PARSE_ANSWER;
        if (type == INK_DNS_TYPE_OPT) {
            /* One OPT, owned by the root (RFC 6891 6.1.1). Its options
             * (cookies, padding, ...) are not forwarded, so not read. */
            if (q->edns || namelen != 1)
                return INK_DNS_PARSE_ANSWER;
            q->edns = true;
            q->edns_size = cls < INK_DNS_UDP_PLAIN ? INK_DNS_UDP_PLAIN : cls;
            q->edns_version = (uint8_t)(ttl >> 16);
            q->edns_do = (ttl & 0x8000) != 0;
        }
        off += 10 + (size_t)rdlen;
    }
    if (off != n)
        return INK_DNS_PARSE_ANSWER; /* trailing bytes: not a message we understand */
    if (q->edns && q->edns_version != 0) {
        *rcode = INK_DNS_BADVERS;
        return INK_DNS_PARSE_ANSWER;
    }
    *rcode = INK_DNS_NOERROR;
    return INK_DNS_PARSE_OK;
}

size_t ink_dns_udp_limit(const ink_dns_query *q)
{
    if (!q->edns)
        return INK_DNS_UDP_PLAIN;
    return q->edns_size > INK_DNS_UDP_MAX ? INK_DNS_UDP_MAX : q->edns_size;
}

#define OPT_LEN 11 /* root name, type, class, ttl, rdlen 0 */

static void write_opt(uint8_t *p, uint16_t udp_size, uint8_t ext_rcode, bool dnssec_ok)
{
    p[0] = 0;
    wr16(p + 1, INK_DNS_TYPE_OPT);
    wr16(p + 3, udp_size);
    wr32(p + 5, ((uint32_t)ext_rcode << 24) | (dnssec_ok ? 0x8000u : 0));
    wr16(p + 9, 0);
}

size_t ink_dns_build_answer(const ink_dns_query *q, const ink_dns_answer *a, uint8_t *out,
                            size_t limit)
{
    size_t opt = q->edns ? OPT_LEN : 0;
    if (limit < INK_DNS_HEADER_LEN + opt)
        return 0;
    bool tc = a->tc;
    size_t off = INK_DNS_HEADER_LEN;
    uint16_t qd = 0, an = 0;
    if (q->qname_len > 0) {
        if (off + q->qname_len + 4 + opt <= limit) {
            memcpy(out + off, q->qname, q->qname_len);
            off += q->qname_len;
            wr16(out + off, q->qtype);
            wr16(out + off + 2, q->qclass);
            off += 4;
            qd = 1;
        } else {
            tc = true;
        }
    }
    for (size_t i = 0; qd && i < a->naddrs; i++) {
        /* A record: pointer to the question name, type, class, TTL, 4
         * bytes of address. */
        if (off + 16 + opt > limit) {
            tc = true;
            break;
        }
        const struct in_addr *addr = &a->addrs[(a->first + i) % a->naddrs];
        wr16(out + off, 0xc000 | INK_DNS_HEADER_LEN);
        wr16(out + off + 2, INK_DNS_TYPE_A);
        wr16(out + off + 4, INK_DNS_CLASS_IN);
        wr32(out + off + 6, a->ttl);
        wr16(out + off + 10, 4);
        memcpy(out + off + 12, &addr->s_addr, 4);
        off += 16;
        an++;
    }
    if (opt) {
        write_opt(out + off, INK_DNS_UDP_MAX, (uint8_t)(a->rcode >> 4), q->edns_do);
        off += opt;
    }
    uint16_t flags = INK_DNS_F_QR | (q->flags & (INK_DNS_F_OPCODE | INK_DNS_F_RD | INK_DNS_F_CD)) |
                     INK_DNS_F_RA | (a->aa ? INK_DNS_F_AA : 0) | (tc ? INK_DNS_F_TC : 0) |
                     (uint16_t)(a->rcode & INK_DNS_F_RCODE);
    wr16(out, q->id);
    wr16(out + 2, flags);
    wr16(out + 4, qd);
    wr16(out + 6, an);
    wr16(out + 8, 0);
    wr16(out + 10, opt ? 1 : 0);
    return off;
}

size_t ink_dns_build_forward(const ink_dns_query *q, uint16_t id, uint16_t udp_size, uint8_t *out,
                             size_t cap)
{
    size_t need = INK_DNS_HEADER_LEN + q->qname_len + 4 + (udp_size ? OPT_LEN : 0);
    if (q->qname_len == 0 || need > cap)
        return 0;
    wr16(out, id);
    wr16(out + 2, q->flags & (INK_DNS_F_RD | INK_DNS_F_CD | INK_DNS_F_AD));
    wr16(out + 4, 1);
    wr16(out + 6, 0);
    wr16(out + 8, 0);
    wr16(out + 10, udp_size ? 1 : 0);
    size_t off = INK_DNS_HEADER_LEN;
    memcpy(out + off, q->qname, q->qname_len);
    off += q->qname_len;
    wr16(out + off, q->qtype);
    wr16(out + off + 2, q->qclass);
    off += 4;
    if (udp_size) {
        write_opt(out + off, udp_size, 0, q->edns_do);
        off += OPT_LEN;
    }
    return off;
}

static bool names_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    /* Length bytes are below 64 and unchanged by lower(). */
    for (size_t i = 0; i < n; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

bool ink_dns_response_matches(const uint8_t *p, size_t n, uint16_t id, const ink_dns_query *q)
{
    if (n < INK_DNS_HEADER_LEN || rd16(p) != id)
        return false;
    uint16_t flags = rd16(p + 2);
    if (!(flags & INK_DNS_F_QR) || (flags & INK_DNS_F_OPCODE) || rd16(p + 4) != 1)
        return false;
    size_t off = INK_DNS_HEADER_LEN;
    uint8_t name[INK_DNS_NAME_MAX];
    size_t namelen;
    if (ink_dns_read_name(p, n, &off, false, name, &namelen) < 0 || off + 4 > n)
        return false;
    return namelen == q->qname_len && names_equal(name, q->qname, namelen) &&
           rd16(p + off) == q->qtype && rd16(p + off + 2) == q->qclass;
}

bool ink_dns_label_eq(const ink_dns_query *q, size_t i, const char *s)
{
    if (i >= q->nlabels)
        return false;
    const uint8_t *l = q->qname + q->label_off[i];
    size_t len = strlen(s);
    return l[0] == len && names_equal(l + 1, (const uint8_t *)s, len);
}
