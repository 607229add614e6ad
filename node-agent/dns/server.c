/* The ink-dns helper's event loop: one thread, one epoll set, every piece
 * of state in fixed arrays (queries waiting for upstream, client TCP
 * connections), so what a workload can make the helper hold is bounded by
 * constants (dns_internal.h), not by what it sends.
 *
 *   UDP query  -> asker (source address, and the veth it came in on)
 *              -> rate limit -> parse -> decide -> answer | forward
 *   TCP client -> the same, one query at a time per connection
 *   forward    -> a fresh socket per query (a random source port next to
 *                 the random id: an off-path attacker must guess both),
 *                 the next upstream on timeout or error, SERVFAIL at the
 *                 deadline; a truncated answer for a TCP client is asked
 *                 again over TCP
 *   control    -> CONFIG (upstreams), TABLE (names); LOG and ACK back
 *
 * Everything runs after confinement (confine.c): only the system calls
 * used here are allowed. */
#include "dns_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

enum { EV_UDP = 1, EV_TCP_LISTEN, EV_CTL, EV_CONN, EV_UPSTREAM };

/* epoll data: what (kind), which slot (idx) and the slot's generation, so
 * an event read in the same batch as the slot was reused is recognised as
 * stale. */
#define EV(kind, gen, idx) (((uint64_t)(kind) << 48) | ((uint64_t)(gen) << 16) | (uint16_t)(idx))
#define EV_KIND(u) ((int)((u) >> 48))
#define EV_GEN(u) ((uint32_t)((u) >> 16))
#define EV_IDX(u) ((size_t)(uint16_t)(u))

/* Unknown sources get REFUSED, but no faster than this: the helper must
 * not become a reflector for whatever can reach the gateway address. */
#define UNKNOWN_QPS 50
#define UNKNOWN_BURST 100
#define PACKETS_PER_WAKEUP 64
#define UPSTREAM_TCP_TIMEOUT_MS 3000

typedef struct bucket {
    double tokens;
    int64_t last_ms;
} bucket;

/* Per asker, parallel to the table's askers (carried over when a new
 * table comes). */
typedef struct asker_state {
    bucket rate;
    uint16_t pending; /* its queries waiting for upstream */
    uint8_t tcp;      /* its client connections */
} asker_state;

typedef struct conn {
    int fd; /* -1: free */
    uint32_t gen;
    uint32_t addr; /* the asker, host order */
    uint8_t in[2 + INK_DNS_QUERY_MAX];
    size_t inlen;
    uint8_t *out; /* length-prefixed response being written */
    size_t outlen, outoff;
    int upstream; /* the pending slot of its query, -1: none (read nothing meanwhile) */
    int64_t idle_deadline;
} conn;

typedef enum { UP_UDP, UP_TCP_CONNECT, UP_TCP_WRITE, UP_TCP_READ } up_phase;

typedef struct pending {
    bool used;
    uint32_t gen; /* bumped on release */
    bool tcp_client;
    size_t conn; /* tcp_client: the connection and its generation */
    uint32_t conn_gen;
    struct sockaddr_in client; /* UDP client */
    uint32_t asker;            /* host order */
    ink_dns_query q;
    size_t limit; /* largest response the client takes */
    uint16_t id;  /* ours, upstream */
    int fd;       /* upstream socket, -1: none */
    up_phase phase;
    size_t up; /* upstream in use */
    unsigned tries;
    int64_t try_deadline, deadline;
    /* Over TCP: the query, then the response, length-prefixed; and the
     * truncated UDP answer to fall back on. */
    uint8_t *buf;
    size_t buflen, bufoff, bufcap;
    uint8_t *fallback;
    size_t fallbacklen;
} pending;

typedef struct srv {
    int udp_fd, tcp_fd, ctl_fd, ep;
    ink_dns_config_msg cfg;
    ink_dns_table table;
    asker_state *state; /* [table.naskers] */
    bucket unknown;
    pending q[INK_DNS_MAX_PENDING];
    size_t npending, ntcp_up;
    conn c[INK_DNS_MAX_TCP];
    size_t nconns;
    size_t next_up;
    uint32_t rotate;
    /* Control input: a frame at a time. */
    uint8_t *ctl;
    size_t ctllen, ctlcap;
    bool ctl_closed;
    /* Random ids, drawn in batches. */
    uint8_t rnd[256];
    size_t rndoff;
    /* Log rate limit: a burst, then one a second; what was dropped is
     * counted and said. */
    bucket logs;
    unsigned logs_dropped;
    uint8_t scratch[2 + INK_DNS_TCP_MAX];
} srv;

/* ------------------------------------------------------------ helpers */

static bool take_token(bucket *b, int64_t now, double rate, double burst)
{
    if (b->last_ms == 0) {
        b->tokens = burst;
    } else if (now > b->last_ms) {
        b->tokens += (double)(now - b->last_ms) * rate / 1000.0;
        if (b->tokens > burst)
            b->tokens = burst;
    }
    b->last_ms = now;
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

/* Frames to the agent never block the loop: the socket is non-blocking
 * and a frame that does not fit whole is dropped. */
static void ctl_send(srv *s, uint16_t type, const void *payload, size_t len)
{
    if (s->ctl_closed)
        return;
    uint8_t frame[INK_DNS_CTL_HEADER + INK_DNS_CTL_HELPER_MAX];
    if (len > INK_DNS_CTL_HELPER_MAX)
        len = INK_DNS_CTL_HELPER_MAX;
    ink_dns_ctl_header(frame, type, (uint32_t)len);
    if (len)
        memcpy(frame + INK_DNS_CTL_HEADER, payload, len);
    ssize_t w = send(s->ctl_fd, frame, INK_DNS_CTL_HEADER + len, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)w;
}

static void slog(srv *s, ink_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void slog(srv *s, ink_log_level level, const char *fmt, ...)
{
    if (!take_token(&s->logs, ink_mono_ms(), 1.0, 20.0)) {
        s->logs_dropped++;
        return;
    }
    uint8_t msg[INK_DNS_CTL_HELPER_MAX];
    msg[0] = (uint8_t)level;
    size_t off = 1;
    if (s->logs_dropped) {
        int k = snprintf((char *)msg + off, sizeof msg - off, "(%u messages dropped) ",
                         s->logs_dropped);
        off += k > 0 ? (size_t)k : 0;
        s->logs_dropped = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf((char *)msg + off, sizeof msg - off, fmt, ap);
    va_end(ap);
    if (k > 0)
        off += (size_t)k < sizeof msg - off ? (size_t)k : sizeof msg - off - 1;
    ctl_send(s, INK_DNS_MSG_LOG, msg, off);
}

static uint16_t random_id(srv *s)
{
    if (s->rndoff + 2 > sizeof s->rnd) {
        size_t got = 0;
        while (got < sizeof s->rnd) {
            ssize_t r = getrandom(s->rnd + got, sizeof s->rnd - got, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                abort(); /* getrandom on Linux >= 3.17 does not fail once seeded */
            got += (size_t)r;
        }
        s->rndoff = 0;
    }
    uint16_t v = (uint16_t)((s->rnd[s->rndoff] << 8) | s->rnd[s->rndoff + 1]);
    s->rndoff += 2;
    return v;
}

static asker_state *state_of(srv *s, uint32_t addr)
{
    const ink_dns_asker *a = ink_dns_table_asker(&s->table, (struct in_addr){htonl(addr)});
    return a ? &s->state[a - s->table.askers] : NULL;
}

static void epoll_set(srv *s, int fd, uint32_t events, uint64_t data, int op)
{
    struct epoll_event ev = {.events = events, .data.u64 = data};
    if (epoll_ctl(s->ep, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL)
        slog(s, INK_LOG_WARN, "epoll_ctl: %s", strerror(errno));
}

/* ------------------------------------------------------------ TCP clients */

static void conn_close(srv *s, size_t i)
{
    conn *c = &s->c[i];
    if (c->fd < 0)
        return;
    close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->gen++;
    free(c->out);
    c->out = NULL;
    c->outlen = c->outoff = c->inlen = 0;
    c->upstream = -1;
    asker_state *st = state_of(s, c->addr);
    if (st && st->tcp > 0)
        st->tcp--;
    s->nconns--;
}

/* What the connection waits for: the response to go out, else the next
 * query, unless one is upstream. */
static void conn_events(srv *s, size_t i)
{
    conn *c = &s->c[i];
    uint32_t ev = c->outlen ? EPOLLOUT : c->upstream >= 0 ? 0 : EPOLLIN;
    epoll_set(s, c->fd, ev, EV(EV_CONN, c->gen, i), EPOLL_CTL_MOD);
}

static void conn_flush(srv *s, size_t i)
{
    conn *c = &s->c[i];
    while (c->outoff < c->outlen) {
        ssize_t w =
            send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w <= 0) {
            conn_close(s, i);
            return;
        }
        c->outoff += (size_t)w;
        c->idle_deadline = ink_mono_ms() + INK_DNS_TCP_IDLE_MS;
    }
    if (c->outoff == c->outlen) {
        free(c->out);
        c->out = NULL;
        c->outlen = c->outoff = 0;
    }
    conn_events(s, i);
}

static void conn_reply(srv *s, size_t i, const uint8_t *msg, size_t len)
{
    conn *c = &s->c[i];
    if (len == 0 || len > INK_DNS_TCP_MAX) {
        conn_events(s, i);
        return;
    }
    c->out = ink_xmalloc(len + 2);
    c->out[0] = (uint8_t)(len >> 8);
    c->out[1] = (uint8_t)len;
    memcpy(c->out + 2, msg, len);
    c->outlen = len + 2;
    c->outoff = 0;
    conn_flush(s, i);
}

/* ------------------------------------------------------------ answers */

typedef struct client {
    bool tcp;
    size_t conn;             /* tcp */
    struct sockaddr_in addr; /* udp */
} client;

static void reply(srv *s, const client *cl, const uint8_t *msg, size_t len)
{
    if (cl->tcp) {
        conn_reply(s, cl->conn, msg, len);
        return;
    }
    if (len == 0)
        return;
    ssize_t w = sendto(s->udp_fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL,
                       (const struct sockaddr *)&cl->addr, sizeof cl->addr);
    (void)w; /* a full socket buffer loses the answer; the client asks again */
}

static size_t client_limit(const client *cl, const ink_dns_query *q)
{
    return cl->tcp ? INK_DNS_TCP_MAX : ink_dns_udp_limit(q);
}

static void answer_rcode(srv *s, const client *cl, const ink_dns_query *q, int rcode, bool aa)
{
    ink_dns_answer a = {.rcode = rcode, .aa = aa};
    size_t n = ink_dns_build_answer(q, &a, s->scratch, client_limit(cl, q));
    reply(s, cl, s->scratch, n);
}

/* ------------------------------------------------------------ upstream */

static void pending_release(srv *s, size_t i)
{
    pending *p = &s->q[i];
    if (p->fd >= 0)
        close(p->fd);
    if (p->phase != UP_UDP && s->ntcp_up > 0)
        s->ntcp_up--;
    free(p->buf);
    free(p->fallback);
    asker_state *st = state_of(s, p->asker);
    if (st && st->pending > 0)
        st->pending--;
    if (p->tcp_client) {
        conn *c = &s->c[p->conn];
        if (c->fd >= 0 && c->gen == p->conn_gen && c->upstream == (int)i) {
            c->upstream = -1;
            conn_events(s, p->conn); /* reading again, once the answer is out */
        }
    }
    uint32_t gen = p->gen + 1;
    memset(p, 0, sizeof *p);
    p->fd = -1;
    p->gen = gen;
    s->npending--;
}

/* The client of p, if it is still there. */
static bool pending_client(srv *s, const pending *p, client *cl)
{
    *cl = (client){.tcp = p->tcp_client, .conn = p->conn, .addr = p->client};
    if (!p->tcp_client)
        return true;
    const conn *c = &s->c[p->conn];
    return c->fd >= 0 && c->gen == p->conn_gen;
}

static void pending_fail(srv *s, size_t i, int rcode)
{
    pending *p = &s->q[i];
    client cl;
    if (pending_client(s, p, &cl)) {
        if (p->fallback && rcode == INK_DNS_SERVFAIL) {
            reply(s, &cl, p->fallback, p->fallbacklen);
        } else {
            answer_rcode(s, &cl, &p->q, rcode, false);
        }
    }
    pending_release(s, i);
}

/* Relays an upstream response to the client, under its id; one larger
 * than the client takes becomes a truncated answer (it asks again over
 * TCP). */
static void pending_done(srv *s, size_t i, uint8_t *resp, size_t len)
{
    pending *p = &s->q[i];
    client cl;
    if (pending_client(s, p, &cl)) {
        resp[0] = (uint8_t)(p->q.id >> 8);
        resp[1] = (uint8_t)p->q.id;
        if (len <= p->limit) {
            reply(s, &cl, resp, len);
        } else {
            ink_dns_answer a = {.rcode = resp[3] & INK_DNS_F_RCODE, .tc = true};
            size_t n = ink_dns_build_answer(&p->q, &a, s->scratch, p->limit);
            reply(s, &cl, s->scratch, n);
        }
    }
    pending_release(s, i);
}

static int upstream_socket(srv *s, size_t i, int type)
{
    pending *p = &s->q[i];
    /* The configuration may have lost its upstreams meanwhile (and a
     * socket of another family would be a seccomp violation). */
    if (p->up >= s->cfg.nup)
        return -1;
    const ink_dns_upstream *u = &s->cfg.up[p->up];
    int fd = socket(u->addr.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        slog(s, INK_LOG_WARN, "upstream socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)&u->addr, u->addrlen) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    p->fd = fd;
    return 0;
}

/* Sends p to its current upstream over UDP. -1: that upstream cannot be
 * reached at all (try the next). */
static int send_udp(srv *s, size_t i)
{
    pending *p = &s->q[i];
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
    if (upstream_socket(s, i, SOCK_DGRAM) < 0)
        return -1;
    p->id = random_id(s);
    /* A TCP client can take a full EDNS answer; a UDP client gets what it
     * asked for, so the upstream's own TC bit reaches it unchanged. */
    uint16_t size = p->tcp_client ? INK_DNS_UDP_MAX
                    : p->q.edns   ? (uint16_t)ink_dns_udp_limit(&p->q)
                                  : 0;
    uint8_t buf[INK_DNS_QUERY_MAX];
    size_t n = ink_dns_build_forward(&p->q, p->id, size, buf, sizeof buf);
    if (n == 0 || send(p->fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)n)
        return -1;
    epoll_set(s, p->fd, EPOLLIN, EV(EV_UPSTREAM, p->gen, i), EPOLL_CTL_ADD);
    p->phase = UP_UDP;
    p->try_deadline = ink_mono_ms() + INK_DNS_UPSTREAM_TIMEOUT_MS;
    return 0;
}

/* The next try: the next upstream, until each had two or the deadline
 * passed; then SERVFAIL. */
static void next_try(srv *s, size_t i)
{
    pending *p = &s->q[i];
    int64_t now = ink_mono_ms();
    while (p->tries < 2 * s->cfg.nup && now < p->deadline) {
        p->tries++;
        p->up = (p->up + 1) % s->cfg.nup;
        if (send_udp(s, i) == 0)
            return;
    }
    pending_fail(s, i, INK_DNS_SERVFAIL);
}

static void start_forward(srv *s, const client *cl, uint32_t asker, const ink_dns_query *q)
{
    asker_state *st = state_of(s, asker);
    if (s->cfg.nup == 0 || !st || st->pending >= INK_DNS_MAX_PENDING_ASKER ||
        s->npending >= INK_DNS_MAX_PENDING) {
        answer_rcode(s, cl, q, INK_DNS_SERVFAIL, false);
        return;
    }
    size_t i = 0;
    for (; i < INK_DNS_MAX_PENDING; i++) {
        pending *o = &s->q[i];
        /* A UDP client asking again (its own timeout) while the first
         * try is still out: one upstream query is enough. */
        if (o->used && !cl->tcp && !o->tcp_client && o->q.id == q->id &&
            o->client.sin_addr.s_addr == cl->addr.sin_addr.s_addr &&
            o->client.sin_port == cl->addr.sin_port)
            return;
    }
    for (i = 0; i < INK_DNS_MAX_PENDING && s->q[i].used; i++)
        ;
    pending *p = &s->q[i];
    uint32_t gen = p->gen;
    memset(p, 0, sizeof *p);
    p->gen = gen;
    p->used = true;
    p->fd = -1;
    p->tcp_client = cl->tcp;
    p->conn = cl->conn;
    p->conn_gen = cl->tcp ? s->c[cl->conn].gen : 0;
    p->client = cl->addr;
    p->asker = asker;
    p->q = *q;
    p->limit = client_limit(cl, q);
    p->up = s->next_up++ % s->cfg.nup;
    p->tries = 1;
    p->deadline = ink_mono_ms() + INK_DNS_QUERY_DEADLINE_MS;
    st->pending++;
    s->npending++;
    if (cl->tcp)
        s->c[cl->conn].upstream = (int)i;
    if (send_udp(s, i) < 0)
        next_try(s, i);
}

/* A truncated answer for a TCP client: the same upstream again, over
 * TCP. The truncated answer is kept to fall back on. */
static void retry_tcp(srv *s, size_t i, const uint8_t *resp, size_t len)
{
    pending *p = &s->q[i];
    p->fallback = ink_xmalloc(len);
    memcpy(p->fallback, resp, len);
    p->fallbacklen = len;
    p->fallback[0] = (uint8_t)(p->q.id >> 8);
    p->fallback[1] = (uint8_t)p->q.id;
    close(p->fd);
    p->fd = -1;
    if (s->ntcp_up >= INK_DNS_MAX_TCP_UPSTREAM || upstream_socket(s, i, SOCK_STREAM) < 0) {
        pending_fail(s, i, INK_DNS_SERVFAIL);
        return;
    }
    s->ntcp_up++;
    p->phase = UP_TCP_CONNECT;
    p->id = random_id(s);
    p->bufcap = 2 + INK_DNS_QUERY_MAX;
    p->buf = ink_xmalloc(p->bufcap);
    size_t n = ink_dns_build_forward(&p->q, p->id, 0, p->buf + 2, INK_DNS_QUERY_MAX);
    p->buf[0] = (uint8_t)(n >> 8);
    p->buf[1] = (uint8_t)n;
    p->buflen = n + 2;
    p->bufoff = 0;
    int64_t now = ink_mono_ms();
    p->try_deadline = p->deadline = now + UPSTREAM_TCP_TIMEOUT_MS;
    epoll_set(s, p->fd, EPOLLOUT, EV(EV_UPSTREAM, p->gen, i), EPOLL_CTL_ADD);
}

static void on_upstream_udp(srv *s, size_t i)
{
    pending *p = &s->q[i];
    uint8_t buf[INK_DNS_UDP_MAX * 2];
    for (int k = 0; k < 8; k++) {
        ssize_t n = recv(p->fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            next_try(s, i); /* ECONNREFUSED: nothing listens there */
            return;
        }
        if ((size_t)n > sizeof buf)
            continue; /* larger than we asked for: not an answer to us */
        if (!ink_dns_response_matches(buf, (size_t)n, p->id, &p->q))
            continue; /* stray or spoofed: keep waiting for the real one */
        if ((buf[2] << 8 | buf[3]) & INK_DNS_F_TC && p->tcp_client) {
            retry_tcp(s, i, buf, (size_t)n);
            return;
        }
        pending_done(s, i, buf, (size_t)n);
        return;
    }
}

static void on_upstream_tcp(srv *s, size_t i, uint32_t events)
{
    pending *p = &s->q[i];
    if (p->phase == UP_TCP_CONNECT) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
            pending_fail(s, i, INK_DNS_SERVFAIL);
            return;
        }
        p->phase = UP_TCP_WRITE;
    }
    if (p->phase == UP_TCP_WRITE) {
        while (p->bufoff < p->buflen) {
            ssize_t w =
                send(p->fd, p->buf + p->bufoff, p->buflen - p->bufoff, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            if (w <= 0) {
                pending_fail(s, i, INK_DNS_SERVFAIL);
                return;
            }
            p->bufoff += (size_t)w;
        }
        p->phase = UP_TCP_READ;
        p->buflen = 2; /* the length prefix first */
        p->bufoff = 0;
        epoll_set(s, p->fd, EPOLLIN, EV(EV_UPSTREAM, p->gen, i), EPOLL_CTL_MOD);
        return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    for (;;) {
        ssize_t r = recv(p->fd, p->buf + p->bufoff, p->buflen - p->bufoff, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (r <= 0) {
            pending_fail(s, i, INK_DNS_SERVFAIL);
            return;
        }
        p->bufoff += (size_t)r;
        if (p->bufoff < p->buflen)
            continue;
        if (p->buflen == 2) {
            size_t len = (size_t)(p->buf[0] << 8 | p->buf[1]);
            if (len < INK_DNS_HEADER_LEN) {
                pending_fail(s, i, INK_DNS_SERVFAIL);
                return;
            }
            if (len + 2 > p->bufcap) {
                p->buf = ink_xrealloc(p->buf, len + 2);
                p->bufcap = len + 2;
            }
            p->buflen = len + 2;
            continue;
        }
        uint8_t *resp = p->buf + 2;
        size_t len = p->buflen - 2;
        if (!ink_dns_response_matches(resp, len, p->id, &p->q)) {
            pending_fail(s, i, INK_DNS_SERVFAIL);
            return;
        }
        pending_done(s, i, resp, len);
        return;
    }
}

/* ------------------------------------------------------------ queries */

static void handle_query(srv *s, const client *cl, struct in_addr src, unsigned ifindex,
                         const uint8_t *msg, size_t len)
{
    int64_t now = ink_mono_ms();
    const ink_dns_asker *asker = ink_dns_table_asker(&s->table, src);
    /* Over UDP the veth it came in on must be the asker's own: a workload
     * spoofing another's address gets nothing of that one's project, nor
     * uses up its rate. */
    if (asker && asker->ifindex && !cl->tcp && ifindex != asker->ifindex)
        asker = NULL;
    if (asker) {
        if (!take_token(&s->state[asker - s->table.askers].rate, now, INK_DNS_RATE_QPS,
                        INK_DNS_RATE_BURST))
            return;
    } else if (!take_token(&s->unknown, now, UNKNOWN_QPS, UNKNOWN_BURST)) {
        return;
    }
    ink_dns_query q;
    int rcode;
    ink_dns_parse_result r = ink_dns_parse_query(msg, len, &q, &rcode);
    if (r == INK_DNS_PARSE_DROP)
        return;
    if (r == INK_DNS_PARSE_ANSWER) {
        answer_rcode(s, cl, &q, rcode, false);
        return;
    }
    ink_dns_decision d = ink_dns_decide(&s->table, asker, &s->cfg, &q);
    if (d.action == INK_DNS_DO_FORWARD) {
        start_forward(s, cl, asker->addr, &q);
        return;
    }
    ink_dns_answer a = {.rcode = d.rcode, .aa = d.rcode != INK_DNS_REFUSED, .ttl = INK_DNS_TTL};
    if (d.app) {
        a.addrs = s->table.addrs + d.app->first;
        a.naddrs = d.app->n;
        a.first = s->rotate++; /* spread clients over the replicas */
    }
    size_t n = ink_dns_build_answer(&q, &a, s->scratch, client_limit(cl, &q));
    reply(s, cl, s->scratch, n);
}

static void on_udp(srv *s)
{
    for (int k = 0; k < PACKETS_PER_WAKEUP; k++) {
        uint8_t buf[INK_DNS_QUERY_MAX + 1];
        struct sockaddr_in from;
        union {
            struct cmsghdr align;
            uint8_t b[CMSG_SPACE(sizeof(struct in_pktinfo))];
        } cbuf;
        struct iovec iov = {buf, sizeof buf};
        struct msghdr mh = {.msg_name = &from,
                            .msg_namelen = sizeof from,
                            .msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = cbuf.b,
                            .msg_controllen = sizeof cbuf.b};
        ssize_t n = recvmsg(s->udp_fd, &mh, MSG_DONTWAIT);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                slog(s, INK_LOG_WARN, "receiving a query: %s", strerror(errno));
            return;
        }
        if (mh.msg_namelen < sizeof from || from.sin_family != AF_INET)
            continue;
        unsigned ifindex = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                struct in_pktinfo pi;
                memcpy(&pi, CMSG_DATA(c), sizeof pi);
                ifindex = (unsigned)pi.ipi_ifindex;
            }
        }
        client cl = {.addr = from};
        /* A datagram longer than any query (MSG_TRUNC in msg_flags, or
         * filling the buffer) is answered FORMERR by the parser. */
        handle_query(s, &cl, from.sin_addr, ifindex, buf, (size_t)n);
    }
}

static void on_accept(srv *s)
{
    for (int k = 0; k < 16; k++) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        int fd = accept4(s->tcp_fd, (struct sockaddr *)&from, &fl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                slog(s, INK_LOG_WARN, "accepting a connection: %s", strerror(errno));
            if (errno == ECONNABORTED || errno == EINTR)
                continue;
            return;
        }
        /* Only workloads of the table, and a few connections each: a TCP
         * connection costs a buffer. */
        asker_state *st =
            from.sin_family == AF_INET ? state_of(s, ntohl(from.sin_addr.s_addr)) : NULL;
        if (!st || st->tcp >= INK_DNS_MAX_TCP_ASKER || s->nconns >= INK_DNS_MAX_TCP) {
            close(fd);
            continue;
        }
        size_t i = 0;
        while (s->c[i].fd >= 0)
            i++;
        conn *c = &s->c[i];
        c->fd = fd;
        c->addr = ntohl(from.sin_addr.s_addr);
        c->inlen = 0;
        c->upstream = -1;
        c->idle_deadline = ink_mono_ms() + INK_DNS_TCP_IDLE_MS;
        st->tcp++;
        s->nconns++;
        epoll_set(s, fd, EPOLLIN, EV(EV_CONN, c->gen, i), EPOLL_CTL_ADD);
    }
}

static void on_conn(srv *s, size_t i, uint32_t events)
{
    conn *c = &s->c[i];
    if (c->fd < 0)
        return;
    if (c->outlen) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            conn_flush(s, i);
        return;
    }
    if (c->upstream >= 0)
        return;
    size_t want = c->inlen < 2 ? 2 : 2 + (size_t)(c->in[0] << 8 | c->in[1]);
    ssize_t r = recv(c->fd, c->in + c->inlen, want - c->inlen, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (r <= 0) {
        conn_close(s, i);
        return;
    }
    c->inlen += (size_t)r;
    c->idle_deadline = ink_mono_ms() + INK_DNS_TCP_IDLE_MS;
    if (c->inlen == 2) {
        size_t len = (size_t)(c->in[0] << 8 | c->in[1]);
        if (len < INK_DNS_HEADER_LEN || len > INK_DNS_QUERY_MAX) {
            conn_close(s, i); /* no query is that long: not a resolver client */
            return;
        }
    }
    want = c->inlen < 2 ? 2 : 2 + (size_t)(c->in[0] << 8 | c->in[1]);
    if (c->inlen < want)
        return;
    client cl = {.tcp = true, .conn = i};
    c->inlen = 0;
    handle_query(s, &cl, (struct in_addr){htonl(c->addr)}, 0, c->in + 2, want - 2);
    /* Answered (the answer may still be going out), upstream (wait for
     * it) or dropped (read the next one). */
    if (c->fd >= 0)
        conn_events(s, i);
}

/* ------------------------------------------------------------ control */

static void load_table(srv *s, const uint8_t *p, size_t n)
{
    ink_dns_table t;
    ink_err err = {0};
    if (ink_dns_table_decode(p, n, &t, &err) < 0) {
        slog(s, INK_LOG_ERROR, "%s: keeping the previous table", err.msg);
        return;
    }
    /* Carry each asker's rate, pending and connection counts over. */
    asker_state *st = ink_xcalloc(t.naskers ? t.naskers : 1, sizeof *st);
    for (size_t i = 0, j = 0; i < t.naskers && j < s->table.naskers;) {
        if (t.askers[i].addr == s->table.askers[j].addr)
            st[i++] = s->state[j++];
        else if (t.askers[i].addr < s->table.askers[j].addr)
            i++;
        else
            j++;
    }
    ink_dns_table_free(&s->table);
    free(s->state);
    s->table = t;
    s->state = st;
    /* Connections of workloads that left are closed: they are not askers
     * any more. */
    for (size_t i = 0; i < INK_DNS_MAX_TCP; i++)
        if (s->c[i].fd >= 0 && !state_of(s, s->c[i].addr))
            conn_close(s, i);
    uint8_t ack[4] = {(uint8_t)(t.serial >> 24), (uint8_t)(t.serial >> 16),
                      (uint8_t)(t.serial >> 8), (uint8_t)t.serial};
    ctl_send(s, INK_DNS_MSG_ACK, ack, sizeof ack);
}

static void load_config(srv *s, const uint8_t *p, size_t n)
{
    ink_dns_config_msg c;
    ink_err err = {0};
    if (ink_dns_config_decode(p, n, &c, &err) < 0) {
        slog(s, INK_LOG_ERROR, "%s: keeping the previous configuration", err.msg);
        return;
    }
    s->cfg = c;
    /* Queries in flight keep their upstream index only if it still
     * exists. */
    for (size_t i = 0; i < INK_DNS_MAX_PENDING; i++)
        if (s->q[i].used && s->q[i].up >= c.nup)
            s->q[i].up = 0;
}

/* Reads what the agent sent; -1 when the stream cannot be trusted any
 * more (its framing is broken). */
static int on_ctl(srv *s, ink_err *err)
{
    for (;;) {
        if (s->ctllen == s->ctlcap) {
            size_t cap = s->ctlcap ? s->ctlcap * 2 : 64 * 1024;
            if (cap > INK_DNS_CTL_HEADER + INK_DNS_CTL_MAX)
                cap = INK_DNS_CTL_HEADER + INK_DNS_CTL_MAX;
            if (cap == s->ctlcap)
                return ink_err_set(err, 0, "control buffer full");
            s->ctl = ink_xrealloc(s->ctl, cap);
            s->ctlcap = cap;
        }
        ssize_t r = recv(s->ctl_fd, s->ctl + s->ctllen, s->ctlcap - s->ctllen, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            s->ctl_closed = true;
            return 0;
        }
        s->ctllen += (size_t)r;
        /* Whole frames out of the buffer. */
        size_t off = 0;
        while (s->ctllen - off >= INK_DNS_CTL_HEADER) {
            uint16_t type;
            uint32_t len;
            if (ink_dns_ctl_parse_header(s->ctl + off, INK_DNS_CTL_MAX, &type, &len, err) < 0)
                return -1;
            if (s->ctllen - off - INK_DNS_CTL_HEADER < len)
                break;
            const uint8_t *payload = s->ctl + off + INK_DNS_CTL_HEADER;
            if (type == INK_DNS_MSG_TABLE)
                load_table(s, payload, len);
            else if (type == INK_DNS_MSG_CONFIG)
                load_config(s, payload, len);
            else
                slog(s, INK_LOG_WARN, "control frame of unknown type %u ignored", type);
            off += INK_DNS_CTL_HEADER + len;
        }
        memmove(s->ctl, s->ctl + off, s->ctllen - off);
        s->ctllen -= off;
    }
    return 0;
}

/* ------------------------------------------------------------ timers */

static int64_t expire(srv *s)
{
    int64_t now = ink_mono_ms(), next = now + 1000;
    for (size_t i = 0; i < INK_DNS_MAX_PENDING; i++) {
        pending *p = &s->q[i];
        if (!p->used)
            continue;
        if (now >= p->deadline) {
            pending_fail(s, i, INK_DNS_SERVFAIL);
            continue;
        }
        if (now >= p->try_deadline) {
            if (p->phase == UP_UDP)
                next_try(s, i);
            else
                pending_fail(s, i, INK_DNS_SERVFAIL);
            if (!p->used)
                continue;
        }
        if (p->try_deadline < next)
            next = p->try_deadline;
    }
    for (size_t i = 0; i < INK_DNS_MAX_TCP; i++) {
        conn *c = &s->c[i];
        if (c->fd < 0 || c->upstream >= 0)
            continue;
        if (now >= c->idle_deadline)
            conn_close(s, i);
        else if (c->idle_deadline < next)
            next = c->idle_deadline;
    }
    return next;
}

/* ------------------------------------------------------------ loop */

int ink_dns_server_run(const ink_dns_server_opts *o, ink_err *err)
{
    srv *s = ink_xcalloc(1, sizeof *s);
    s->udp_fd = o->udp_fd;
    s->tcp_fd = o->tcp_fd;
    s->ctl_fd = o->ctl_fd;
    s->ep = o->epoll_fd >= 0 ? o->epoll_fd : epoll_create1(EPOLL_CLOEXEC);
    s->rndoff = sizeof s->rnd;
    s->state = ink_xcalloc(1, sizeof *s->state);
    for (size_t i = 0; i < INK_DNS_MAX_PENDING; i++)
        s->q[i].fd = -1;
    for (size_t i = 0; i < INK_DNS_MAX_TCP; i++) {
        s->c[i].fd = -1;
        s->c[i].upstream = -1;
    }
    int rc = 0;
    if (s->ep < 0) {
        rc = ink_err_set(err, errno, "epoll_create1");
        goto out;
    }
    epoll_set(s, s->udp_fd, EPOLLIN, EV(EV_UDP, 0, 0), EPOLL_CTL_ADD);
    epoll_set(s, s->tcp_fd, EPOLLIN, EV(EV_TCP_LISTEN, 0, 0), EPOLL_CTL_ADD);
    epoll_set(s, s->ctl_fd, EPOLLIN, EV(EV_CTL, 0, 0), EPOLL_CTL_ADD);
    int64_t next = ink_mono_ms() + 1000;
    while (!s->ctl_closed) {
        int64_t wait = next - ink_mono_ms();
        struct epoll_event evs[64];
        int n = epoll_wait(s->ep, evs, 64, wait < 0 ? 0 : wait > 1000 ? 1000 : (int)wait);
        if (n < 0 && errno != EINTR) {
            rc = ink_err_set(err, errno, "epoll_wait");
            break;
        }
        for (int k = 0; k < n; k++) {
            uint64_t u = evs[k].data.u64;
            switch (EV_KIND(u)) {
            case EV_UDP:
                on_udp(s);
                break;
            case EV_TCP_LISTEN:
                on_accept(s);
                break;
            case EV_CTL:
                if (on_ctl(s, err) < 0)
                    rc = -1;
                break;
            case EV_CONN:
                if (EV_IDX(u) < INK_DNS_MAX_TCP && s->c[EV_IDX(u)].gen == EV_GEN(u))
                    on_conn(s, EV_IDX(u), evs[k].events);
                break;
            case EV_UPSTREAM: {
                size_t i = EV_IDX(u);
                /* The slot may have been released by an earlier event of
                 * this batch (and its fd closed). */
                if (i >= INK_DNS_MAX_PENDING || !s->q[i].used || s->q[i].fd < 0 ||
                    s->q[i].gen != EV_GEN(u))
                    break;
                if (s->q[i].phase == UP_UDP)
                    on_upstream_udp(s, i);
                else
                    on_upstream_tcp(s, i, evs[k].events);
                break;
            }
            }
            if (rc < 0)
                break;
        }
        if (rc < 0)
            break;
        next = expire(s);
    }
out:
    for (size_t i = 0; i < INK_DNS_MAX_PENDING; i++)
        if (s->q[i].used)
            pending_release(s, i);
    for (size_t i = 0; i < INK_DNS_MAX_TCP; i++)
        conn_close(s, i);
    if (s->ep >= 0 && s->ep != o->epoll_fd)
        close(s->ep);
    ink_dns_table_free(&s->table);
    free(s->state);
    free(s->ctl);
    free(s);
    return rc;
}
