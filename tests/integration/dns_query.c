/* A small DNS client, fuzzer and fake upstream for dns_test.sh (written for
 * the test, independent of the resolver's own encoder):
 *
 *   dns_query q [--tcp] SERVER[:PORT] NAME [TYPE]
 *       one query; prints "rcode=NOERROR aa=1 tc=0 an=2" and a line per
 *       A record ("A 10.0.0.2"); exit 3 when nothing answered in 5 s
 *   dns_query fuzz SERVER[:PORT] COUNT SEED
 *       COUNT malformed messages over UDP (random bytes, truncated and
 *       bit-flipped queries, compression loops, huge counts) and a few
 *       over TCP; waits for nothing
 *   dns_query serve ADDR:PORT ANSWER_IP
 *       a fake upstream on UDP and TCP: A -> ANSWER_IP (TTL 60), other
 *       types -> no records; "big.example." -> TC over UDP, 100 records
 *       over TCP; "slow.example." -> never answers. Prints one line per
 *       query: "udp|tcp NAME TYPE edns=SIZE|none rd=0|1" */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static unsigned get16(const uint8_t *p)
{
    return (unsigned)(p[0] << 8 | p[1]);
}

static int parse_addr(const char *s, uint16_t def_port, struct sockaddr_in *sa)
{
    char host[64];
    snprintf(host, sizeof host, "%s", s);
    char *colon = strchr(host, ':');
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(colon ? (uint16_t)atoi(colon + 1) : def_port);
    if (colon)
        *colon = '\0';
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static unsigned type_num(const char *t)
{
    static const struct {
        const char *name;
        unsigned num;
    } types[] = {{"A", 1},    {"NS", 2},    {"SOA", 6},    {"PTR", 12},
                 {"TXT", 16}, {"AAAA", 28}, {"AXFR", 252}, {"ANY", 255}};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (strcasecmp(t, types[i].name) == 0)
            return types[i].num;
    return (unsigned)atoi(t);
}

/* name "a.b." or "a.b" in wire form; returns its length. */
static size_t encode_name(const char *name, uint8_t *out)
{
    size_t o = 0;
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        out[o++] = (uint8_t)len;
        memcpy(out + o, p, len);
        o += len;
        p += len;
        if (*p == '.')
            p++;
    }
    out[o++] = 0;
    return o;
}

static size_t build_query(uint16_t id, const char *name, unsigned type, bool edns, uint8_t *out)
{
    memset(out, 0, 12);
    put16(out, id);
    put16(out + 2, 0x0100); /* RD */
    put16(out + 4, 1);
    size_t o = 12 + encode_name(name, out + 12);
    put16(out + o, type);
    put16(out + o + 2, 1);
    o += 4;
    if (edns) {
        put16(out + 10, 1);
        out[o] = 0;
        put16(out + o + 1, 41);
        put16(out + o + 3, 1232);
        memset(out + o + 5, 0, 6);
        o += 11;
    }
    return o;
}

/* Skips a (possibly compressed) name; 0 when malformed. */
static size_t skip_name(const uint8_t *p, size_t n, size_t off)
{
    while (off < n) {
        if ((p[off] & 0xc0) == 0xc0)
            return off + 2 <= n ? off + 2 : 0;
        if (p[off] == 0)
            return off + 1;
        off += 1 + p[off];
    }
    return 0;
}

static const char *rcode_name(unsigned r)
{
    static const char *names[] = {"NOERROR",  "FORMERR", "SERVFAIL",
                                  "NXDOMAIN", "NOTIMP",  "REFUSED"};
    return r < 6 ? names[r] : "OTHER";
}

static int print_response(const uint8_t *p, size_t n, uint16_t id)
{
    if (n < 12 || get16(p) != id) {
        printf("bad-response len=%zu\n", n);
        return 1;
    }
    unsigned flags = get16(p + 2), qd = get16(p + 4), an = get16(p + 6);
    printf("rcode=%s aa=%u tc=%u an=%u\n", rcode_name(flags & 15), (flags >> 10) & 1,
           (flags >> 9) & 1, an);
    size_t off = 12;
    for (unsigned i = 0; i < qd; i++) {
        off = skip_name(p, n, off);
        if (!off || off + 4 > n)
            return 1;
        off += 4;
    }
    for (unsigned i = 0; i < an; i++) {
        off = skip_name(p, n, off);
        if (!off || off + 10 > n)
            return 1;
        unsigned type = get16(p + off), rdlen = get16(p + off + 8);
        uint32_t ttl = (uint32_t)get16(p + off + 4) << 16 | get16(p + off + 6);
        off += 10;
        if (off + rdlen > n)
            return 1;
        if (type == 1 && rdlen == 4) {
            char a[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, p + off, a, sizeof a);
            printf("A %s ttl=%u\n", a, ttl);
        }
        off += rdlen;
    }
    return 0;
}

static int read_full(int fd, uint8_t *p, size_t n, int timeout_ms)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) <= 0)
            return -1;
        ssize_t r = read(fd, p + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int cmd_query(int argc, char **argv)
{
    bool tcp = false;
    int i = 0;
    if (i < argc && strcmp(argv[i], "--tcp") == 0) {
        tcp = true;
        i++;
    }
    if (argc - i < 2)
        return 2;
    struct sockaddr_in sa;
    if (parse_addr(argv[i], 53, &sa) < 0)
        return 2;
    const char *name = argv[i + 1];
    unsigned type = argc - i > 2 ? type_num(argv[i + 2]) : 1;
    uint16_t id = (uint16_t)(getpid() * 7919);
    uint8_t q[600], r[65536];
    size_t qn = build_query(id, name, type, !tcp, q);
    int fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        printf("noreply connect: %s\n", strerror(errno));
        return 3;
    }
    if (tcp) {
        uint8_t len[2];
        put16(len, (unsigned)qn);
        if (write(fd, len, 2) != 2 || write(fd, q, qn) != (ssize_t)qn ||
            read_full(fd, len, 2, 5000) < 0 || read_full(fd, r, get16(len), 5000) < 0) {
            printf("noreply\n");
            return 3;
        }
        return print_response(r, get16(len), id);
    }
    if (send(fd, q, qn, 0) != (ssize_t)qn)
        return 3;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 5000) <= 0) {
        printf("noreply\n");
        return 3;
    }
    ssize_t n = recv(fd, r, sizeof r, 0);
    if (n < 0) {
        printf("noreply %s\n", strerror(errno));
        return 3;
    }
    return print_response(r, (size_t)n, id);
}

/* ------------------------------------------------------------ fuzz */

static uint64_t rng;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static size_t malformed(uint8_t *p, size_t cap)
{
    size_t n;
    switch (rnd() % 8) {
    case 0: /* random bytes */
        n = rnd() % cap;
        for (size_t i = 0; i < n; i++)
            p[i] = (uint8_t)rnd();
        return n;
    case 1: /* a valid query, truncated */
        n = build_query((uint16_t)rnd(), "api.internal", 1, rnd() & 1, p);
        return rnd() % n;
    case 2: /* bit flips */
        n = build_query((uint16_t)rnd(), "www.example.com", 1, rnd() & 1, p);
        for (int k = 0; k < 4; k++)
            p[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8));
        return n;
    case 3: /* compression loop in the question */
        n = build_query((uint16_t)rnd(), "a.internal", 1, false, p);
        p[12] = 0xc0;
        p[13] = 12;
        return n;
    case 4: /* loop in an additional record: pointer to itself */
        n = build_query((uint16_t)rnd(), "a.internal", 1, false, p);
        put16(p + 10, 1);
        p[n] = 0xc0;
        p[n + 1] = (uint8_t)n;
        memset(p + n + 2, 0, 10);
        return n + 12;
    case 5: /* huge counts */
        n = build_query((uint16_t)rnd(), "b.internal", 1, false, p);
        put16(p + 4, 0xffff);
        put16(p + 6, 0xffff);
        put16(p + 8, 0xffff);
        put16(p + 10, 0xffff);
        return n;
    case 6: { /* a name of 300 bytes (labels of 63) */
        memset(p, 0, 12);
        put16(p + 4, 1);
        size_t o = 12;
        for (int k = 0; k < 5 && o + 64 < cap; k++) {
            p[o++] = 63;
            memset(p + o, 'x', 63);
            o += 63;
        }
        p[o++] = 0;
        return o;
    }
    default: /* a response (QR set): must be ignored */
        n = build_query((uint16_t)rnd(), "api.internal", 1, false, p);
        p[2] |= 0x80;
        return n;
    }
}

static int cmd_fuzz(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    struct sockaddr_in sa;
    if (parse_addr(argv[0], 53, &sa) < 0)
        return 2;
    long count = atol(argv[1]);
    rng = (uint64_t)atoll(argv[2]) * 2654435761u + 1;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    uint8_t p[1600];
    for (long i = 0; i < count; i++) {
        size_t n = malformed(p, 1500);
        sendto(fd, p, n, 0, (struct sockaddr *)&sa, sizeof sa);
        usleep(2000); /* about the per-workload rate limit: most of them get parsed */
    }
    /* TCP: bad lengths, half a message, garbage. */
    for (int k = 0; k < 10; k++) {
        int t = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(t, (struct sockaddr *)&sa, sizeof sa) == 0) {
            size_t n = malformed(p + 2, 1400);
            put16(p, k % 3 == 0 ? 0xffff : k % 3 == 1 ? (unsigned)n + 100 : (unsigned)n);
            ssize_t w = write(t, p, n + 2);
            (void)w;
        }
        close(t);
    }
    close(fd);
    printf("sent %ld\n", count);
    return 0;
}

/* ------------------------------------------------------------ fake upstream */

/* The question of a query: name (dotted, lowercase as sent), type; its end. */
static size_t question(const uint8_t *p, size_t n, char *name, size_t namelen, unsigned *type)
{
    size_t off = 12, o = 0;
    while (off < n && p[off] != 0 && (p[off] & 0xc0) == 0) {
        size_t l = p[off];
        if (off + 1 + l > n || o + l + 2 > namelen)
            return 0;
        memcpy(name + o, p + off + 1, l);
        o += l;
        name[o++] = '.';
        off += 1 + l;
    }
    if (off + 5 > n || p[off] != 0)
        return 0;
    name[o] = '\0';
    *type = get16(p + off + 1);
    return off + 5;
}

static size_t answer(const uint8_t *q, size_t qn, bool tcp, struct in_addr ip, uint8_t *out,
                     bool *silent)
{
    char name[300];
    unsigned type;
    size_t qend = question(q, qn, name, sizeof name, &type);
    *silent = false;
    if (qend == 0)
        return 0;
    bool edns = get16(q + 10) > 0;
    printf("%s %s %u edns=%s rd=%u\n", tcp ? "tcp" : "udp", name, type, edns ? "yes" : "none",
           (get16(q + 2) >> 8) & 1);
    fflush(stdout);
    if (strcasecmp(name, "slow.example.") == 0) {
        *silent = true;
        return 0;
    }
    memcpy(out, q, qend);
    put16(out + 2, 0x8180 | (get16(q + 2) & 0x0100));
    put16(out + 6, 0);
    put16(out + 8, 0);
    put16(out + 10, 0);
    size_t o = qend;
    unsigned n = type == 1 ? 1 : 0;
    if (strcasecmp(name, "big.example.") == 0 && type == 1) {
        if (!tcp) {
            put16(out + 2, 0x8380); /* TC */
            return o;
        }
        n = 100;
    }
    for (unsigned i = 0; i < n; i++) {
        put16(out + o, 0xc00c);
        put16(out + o + 2, 1);
        put16(out + o + 4, 1);
        put16(out + o + 6, 0);
        put16(out + o + 8, 60);
        put16(out + o + 10, 4);
        uint32_t a = ntohl(ip.s_addr) + i;
        a = htonl(a);
        memcpy(out + o + 12, &a, 4);
        o += 16;
    }
    put16(out + 6, n);
    return o;
}

static int cmd_serve(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    struct sockaddr_in sa;
    struct in_addr ip;
    if (parse_addr(argv[0], 53, &sa) < 0 || inet_pton(AF_INET, argv[1], &ip) != 1)
        return 2;
    int one = 1;
    int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(u, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        bind(t, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(t, 16) < 0) {
        fprintf(stderr, "serve: %s\n", strerror(errno));
        return 1;
    }
    printf("serving\n");
    fflush(stdout);
    uint8_t q[4096], r[65536];
    for (;;) {
        struct pollfd p[2] = {{.fd = u, .events = POLLIN}, {.fd = t, .events = POLLIN}};
        if (poll(p, 2, -1) < 0)
            continue;
        bool silent;
        if (p[0].revents) {
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t n = recvfrom(u, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
            if (n > 12) {
                size_t rn = answer(q, (size_t)n, false, ip, r, &silent);
                if (rn)
                    sendto(u, r, rn, 0, (struct sockaddr *)&from, fl);
            }
        }
        if (p[1].revents) {
            int c = accept(t, NULL, NULL);
            uint8_t len[2];
            if (c >= 0 && read_full(c, len, 2, 2000) == 0 &&
                read_full(c, q, get16(len), 2000) == 0) {
                size_t rn = answer(q, get16(len), true, ip, r + 2, &silent);
                put16(r, (unsigned)rn);
                if (rn) {
                    ssize_t w = write(c, r, rn + 2);
                    (void)w;
                }
            }
            if (c >= 0)
                close(c);
        }
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "q") == 0)
        return cmd_query(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "fuzz") == 0)
        return cmd_fuzz(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    fprintf(stderr, "usage: dns_query q [--tcp] SERVER NAME [TYPE] | fuzz SERVER COUNT SEED | "
                    "serve ADDR:PORT IP\n");
    return 2;
}
