/* The published-port forwarder (see forward.h).
 *
 * Locking: one mutex guards all state. The loop thread holds it while it
 * handles a batch of events and lets go only inside epoll_wait and around
 * the accept callback. Other threads change mappings under it directly
 * (listeners are bound in the caller, so bind errors come back at once) but
 * never move data: every splice, and with it any SIGPIPE, stays on the loop
 * thread, which runs with all signals blocked.
 *
 * Lifetime: epoll events carry pointers, and a batch can hold events for a
 * connection that something earlier in the batch, or another thread while
 * the lock was released, has closed. Closing therefore marks the object
 * dead and parks it on a graveyard list; the loop frees the graveyard after
 * the batch, when no pending event can point into it any more.
 *
 * Interest follows the pipes: a socket is watched for reading only while
 * its direction's pipe has room, and for writing only while the opposite
 * pipe holds bytes it could not take. A socket wanting nothing is taken out
 * of the epoll set, since EPOLLHUP cannot be masked and would otherwise
 * report a half-closed socket forever.
 *
 * Ownership: a group owns the listening socket, a mapping (one per key, a
 * member of exactly one group) owns the connections given to it, so its
 * counters, unpublish and re-targeting concern only those. Held
 * connections belong to the group in spirit: they sit with the member they
 * were held for and move (conn_move) when another member takes them. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "forward.h"
#include "log.h"
#include "util.h"

#define EVENTS_PER_WAIT 64
#define ACCEPTS_PER_EVENT 64
/* Splice rounds per direction before other connections get a turn. */
#define PUMP_ROUNDS 8
/* After an accept error such as EMFILE, the listener rests this long: a
 * level-triggered listener with a pending connection would otherwise spin. */
#define ACCEPT_BACKOFF_MS 100
#define SPLICE_FLAGS (SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
/* Empty pipes kept for reuse. */
#define PIPE_POOL 64

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

typedef enum { OBJ_WAKE = 1, OBJ_LISTENER, OBJ_CLIENT, OBJ_TARGET } obj_kind;

/* A descriptor in the epoll set; epoll events point here. */
typedef struct sock {
    obj_kind kind;
    int fd;          /* -1: none */
    uint32_t events; /* current interest; registered iff != 0 */
} sock;

/* One direction: source socket -> pipe -> sink socket. */
typedef struct flow {
    int pipe[2];    /* [0] read end, [1] write end */
    size_t cap;     /* pipe capacity in bytes */
    size_t pending; /* bytes in the pipe */
    bool eof;       /* the source reached end of stream */
    bool full;      /* don't read the source until the sink has drained some */
    bool shut;      /* the sink's write side is shut down: this direction is done */
} flow;

typedef enum { CONN_HELD, CONN_CONNECTING, CONN_OPEN } conn_state;

typedef struct mapping mapping;
typedef struct group group;

typedef struct conn {
    sock client, target;
    flow up;   /* client -> target */
    flow down; /* target -> client */
    conn_state state;
    int64_t deadline;           /* ink_mono_ms(): end of the hold, or of the connect */
    mapping *m;                 /* the member it was given to: its target, its counters */
    struct conn *prev, *next;   /* m->conns; next also links the graveyard */
    struct conn *tprev, *tnext; /* f->timed: held or connecting */
    bool timed, dead;
} conn;

/* One listening socket and the mappings (members) that share it. */
struct group {
    sock listener; /* fd -1 only after a failed move left it without one */
    char host[INET_ADDRSTRLEN];
    struct in_addr addr;
    uint16_t asked_port, port; /* as published (0: private to one key), and as bound */
    int64_t accept_retry;      /* ink_mono_ms() to watch the listener again; 0: not resting */
    mapping *members;          /* in joining order, linked by gnext */
    unsigned nmembers;
    mapping *rr; /* the member the last connection went to */
    bool dead;
    group *next; /* f->groups, or the graveyard */
};

struct mapping {
    char key[INK_FORWARD_KEY_MAX + 1];
    group *g;
    mapping *gnext;
    struct sockaddr_in target;
    bool paused, ready, dead;
    int64_t hold_ms;
    conn *conns;
    ink_forward_stats st;
    mapping *next; /* f->maps, or the graveyard */
};

typedef struct pooled_pipe {
    int fd[2];
    size_t cap;
} pooled_pipe;

struct ink_forwarder {
    pthread_mutex_t mu;
    pthread_t thread;
    int epfd;
    sock wake; /* eventfd: stop, a new deadline, or a graveyard to empty */
    bool stopping;
    ink_forward_accept_fn on_accept;
    void *arg;
    mapping *maps;
    group *groups;
    conn *timed;
    int64_t next_deadline; /* earliest timer (INT64_MAX: none); may be early, never late */
    conn *dead_conns;
    mapping *dead_maps;
    group *dead_groups;
    /* Keys of the connections one listener event accepted, for on_accept
     * (loop thread only). */
    char accepted[ACCEPTS_PER_EVENT][INK_FORWARD_KEY_MAX + 1];
    pooled_pipe pipes[PIPE_POOL];
    int npipes;
};

/* ------------------------------------------------------------ plumbing */

static void wake(ink_forwarder *f)
{
    uint64_t one = 1;
    ssize_t r = write(f->wake.fd, &one, sizeof one);
    (void)r; /* EAGAIN: the counter is already non-zero, the loop will wake */
}

static int sock_want(ink_forwarder *f, sock *s, uint32_t want)
{
    if (want == s->events)
        return 0;
    struct epoll_event ev = {.events = want, .data.ptr = s};
    int op = !s->events ? EPOLL_CTL_ADD : !want ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(f->epfd, op, s->fd, &ev) < 0)
        return -1;
    s->events = want;
    return 0;
}

/* reset: abortive close (RST), so the peer sees an error rather than a
 * clean end of stream it could take for a complete reply. */
static void sock_close(ink_forwarder *f, sock *s, bool reset)
{
    if (s->fd < 0)
        return;
    /* Deregister explicitly: a child forked elsewhere in the agent may hold
     * a copy of the descriptor until it execs, and epoll forgets a
     * descriptor only when its last copy is closed. */
    if (s->events)
        epoll_ctl(f->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    if (reset) {
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(s->fd);
    s->fd = -1;
    s->events = 0;
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int flow_open(ink_forwarder *f, flow *fl)
{
    if (f->npipes) {
        pooled_pipe *p = &f->pipes[--f->npipes];
        fl->pipe[0] = p->fd[0];
        fl->pipe[1] = p->fd[1];
        fl->cap = p->cap;
        return 0;
    }
    if (pipe2(fl->pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    int sz = fcntl(fl->pipe[1], F_SETPIPE_SZ, INK_FORWARD_PIPE_SIZE);
    if (sz < 0)
        sz = fcntl(fl->pipe[1], F_GETPIPE_SZ);
    fl->cap = sz > 0 ? (size_t)sz : 65536;
    return 0;
}

static void flow_close(ink_forwarder *f, flow *fl)
{
    /* An empty pipe is as good as new: keep a few for the next
     * connections, which saves four system calls each. */
    if (fl->pipe[0] >= 0 && !fl->pending && f->npipes < PIPE_POOL) {
        f->pipes[f->npipes++] = (pooled_pipe){{fl->pipe[0], fl->pipe[1]}, fl->cap};
        fl->pipe[0] = fl->pipe[1] = -1;
        return;
    }
    for (int i = 0; i < 2; i++) {
        if (fl->pipe[i] >= 0)
            close(fl->pipe[i]);
        fl->pipe[i] = -1;
    }
}

static mapping *find_mapping(ink_forwarder *f, const char *key)
{
    for (mapping *m = f->maps; m; m = m->next)
        if (strcmp(m->key, key) == 0)
            return m;
    return NULL;
}

/* -------------------------------------------------------------- timers */

static void timer_set(ink_forwarder *f, conn *c, int64_t deadline)
{
    c->deadline = deadline;
    if (!c->timed) {
        c->tprev = NULL;
        c->tnext = f->timed;
        if (f->timed)
            f->timed->tprev = c;
        f->timed = c;
        c->timed = true;
    }
    if (deadline < f->next_deadline)
        f->next_deadline = deadline;
}

static void timer_clear(ink_forwarder *f, conn *c)
{
    if (!c->timed)
        return;
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        f->timed = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    c->timed = false;
}

/* --------------------------------------------------------- connections */

static void conn_link(mapping *m, conn *c)
{
    c->m = m;
    c->prev = NULL;
    c->next = m->conns;
    if (m->conns)
        m->conns->prev = c;
    m->conns = c;
    m->st.connections_active++;
}

static void conn_unlink(conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->m->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->m->st.connections_active--;
}

/* Hands a held connection, with its counts, to another member. */
static void conn_move(conn *c, mapping *to)
{
    if (c->m == to)
        return;
    conn_unlink(c);
    c->m->st.connections_total--;
    conn_link(to, c);
    to->st.connections_total++;
    to->st.last_activity_ms = ink_now_ms();
}

static void conn_close(ink_forwarder *f, conn *c, bool reset)
{
    if (c->dead)
        return;
    sock_close(f, &c->client, reset);
    sock_close(f, &c->target, reset);
    flow_close(f, &c->up);
    flow_close(f, &c->down);
    timer_clear(f, c);
    conn_unlink(c);
    c->dead = true;
    c->next = f->dead_conns;
    f->dead_conns = c;
}

static void conn_fail(ink_forwarder *f, conn *c, int e)
{
    char addr[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &c->m->target.sin_addr, addr, sizeof addr);
    LOG_DEBUG("forward: connecting to the target failed", "key", c->m->key, "target", addr, "port",
              LOG_INT(ntohs(c->m->target.sin_port)), "error", strerror(e));
    c->m->st.connect_failures++;
    conn_close(f, c, true);
}

static int conn_update(ink_forwarder *f, conn *c)
{
    bool open = c->state == CONN_OPEN;
    uint32_t cw =
        (!c->up.eof && !c->up.full ? EPOLLIN : 0) | (open && c->down.pending ? EPOLLOUT : 0);
    uint32_t tw = 0;
    if (c->state == CONN_CONNECTING)
        tw = EPOLLOUT;
    else if (open)
        tw = (!c->down.eof && !c->down.full ? EPOLLIN : 0) | (c->up.pending ? EPOLLOUT : 0);
    if (sock_want(f, &c->client, cw) < 0)
        return -1;
    if (c->target.fd >= 0 && sock_want(f, &c->target, tw) < 0)
        return -1;
    return 0;
}

/* Starts the connection to the mapping's current target. Also called from
 * other threads (resume): even a connect that completes at once is left
 * for the loop thread to finish, because only it moves data. */
static void conn_connect(ink_forwarder *f, conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conn_fail(f, c, errno);
        return;
    }
    c->target = (sock){.kind = OBJ_TARGET, .fd = fd};
    c->state = CONN_CONNECTING;
    set_nodelay(fd);
    const struct sockaddr_in *t = &c->m->target;
    if (connect(fd, (const struct sockaddr *)t, sizeof *t) < 0 && errno != EINPROGRESS) {
        conn_fail(f, c, errno);
        return;
    }
    timer_set(f, c, ink_mono_ms() + INK_FORWARD_CONNECT_TIMEOUT_MS);
    if (conn_update(f, c) < 0)
        conn_fail(f, c, errno);
}

/* Moves what it can from src through the pipe into dst (dst -1: not
 * connected yet, only fill the pipe). -1 on a socket error.
 *
 * A short splice means the socket had no more (reading) or no more room
 * (writing) just then; it is not tried again until epoll says so, which
 * saves an EAGAIN round per event on small messages. */
static int flow_pump(flow *fl, int src, int dst, uint64_t *delivered, int64_t *activity)
{
    bool src_dry = false, dst_full = dst < 0, src_again = false;
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        bool moved = false;
        if (!fl->eof && !src_dry && fl->pending < fl->cap) {
            size_t want = fl->cap - fl->pending;
            ssize_t n = splice(src, NULL, fl->pipe[1], NULL, want, SPLICE_FLAGS);
            src_again = n < 0 && errno == EAGAIN;
            if (n > 0) {
                fl->pending += (size_t)n;
                src_dry = (size_t)n < want;
                moved = true;
            } else if (n == 0) {
                fl->eof = true;
                moved = true;
            } else if (src_again) {
                src_dry = true;
            } else if (errno != EINTR) {
                return -1;
            }
        }
        if (!dst_full && fl->pending) {
            ssize_t n = splice(fl->pipe[0], NULL, dst, NULL, fl->pending, SPLICE_FLAGS);
            if (n > 0) {
                fl->pending -= (size_t)n;
                *delivered += (uint64_t)n;
                *activity = ink_now_ms();
                dst_full = fl->pending > 0;
                moved = true;
            } else if (n < 0 && errno == EAGAIN) {
                dst_full = true;
            } else if (n < 0 && errno != EINTR) {
                return -1;
            }
        }
        if (dst >= 0 && fl->eof && !fl->pending && !fl->shut) {
            /* Half-close: the peer learns the source is done, and the
             * other direction carries on until it is done too. */
            if (shutdown(dst, SHUT_WR) < 0)
                return -1;
            fl->shut = true;
        }
        if (!moved)
            break;
    }
    /* EAGAIN from the source with bytes in the pipe is ambiguous: the
     * socket is empty, or the pipe is out of slots (a slot may hold less
     * than a page, so a pipe can fill before cap bytes). Assume full, so a
     * readable source cannot keep waking the loop; the sink draining some
     * clears it. */
    fl->full = !fl->eof && fl->pending > 0 && (fl->pending >= fl->cap || src_again);
    return 0;
}

static void conn_service(ink_forwarder *f, conn *c)
{
    ink_forward_stats *st = &c->m->st;
    int target = c->state == CONN_OPEN ? c->target.fd : -1;
    if (flow_pump(&c->up, c->client.fd, target, &st->bytes_in, &st->last_activity_ms) < 0 ||
        (target >= 0 &&
         flow_pump(&c->down, target, c->client.fd, &st->bytes_out, &st->last_activity_ms) < 0)) {
        conn_close(f, c, true); /* a reset or a broken pipe: pass it on as a reset */
        return;
    }
    if (c->up.shut && c->down.shut) {
        conn_close(f, c, false);
        return;
    }
    if (conn_update(f, c) < 0)
        conn_close(f, c, true);
}

static void on_conn_event(ink_forwarder *f, conn *c, bool is_target, uint32_t events)
{
    if (is_target && c->state == CONN_CONNECTING) {
        int e = 0;
        socklen_t len = sizeof e;
        if (getsockopt(c->target.fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
            e = errno;
        if (!e && (events & EPOLLERR))
            e = EIO;
        if (e) {
            conn_fail(f, c, e);
            return;
        }
        c->state = CONN_OPEN;
        timer_clear(f, c);
    } else if (events & EPOLLERR) {
        conn_close(f, c, true);
        return;
    }
    conn_service(f, c);
}

/* Takes an accepted socket. -1 (errno set) when it had to be dropped for
 * want of descriptors or memory. */
static int conn_new(ink_forwarder *f, mapping *m, int fd)
{
    conn *c = ink_xcalloc(1, sizeof *c);
    c->client = (sock){.kind = OBJ_CLIENT, .fd = fd};
    c->target = (sock){.kind = OBJ_TARGET, .fd = -1};
    c->up.pipe[0] = c->up.pipe[1] = c->down.pipe[0] = c->down.pipe[1] = -1;
    conn_link(m, c);
    m->st.connections_total++;
    m->st.last_activity_ms = ink_now_ms();
    set_nodelay(fd);
    if (flow_open(f, &c->up) < 0 || flow_open(f, &c->down) < 0) {
        int e = errno;
        conn_close(f, c, true);
        errno = e;
        return -1;
    }
    if (m->paused) {
        c->state = CONN_HELD;
        timer_set(f, c, ink_mono_ms() + m->hold_ms);
        if (conn_update(f, c) < 0)
            conn_close(f, c, true);
    } else {
        conn_connect(f, c);
    }
    return 0;
}

/* ------------------------------------------------------------- members */

/* The member the next connection accepted on g goes to: round-robin,
 * starting after the last one chosen, among the unpaused ready members;
 * failing those among the unpaused ones; and when every member is paused
 * (the connection will be held) a ready one before the others. NULL only
 * for a group without members, which is never listened on. */
static mapping *pick(group *g)
{
    mapping *start = g->rr && g->rr->gnext ? g->rr->gnext : g->members;
    if (!start)
        return NULL;
    mapping *best[4] = {NULL};
    mapping *m = start;
    do {
        int tier = (m->paused ? 2 : 0) + (m->ready ? 0 : 1);
        if (!best[tier])
            best[tier] = m;
        m = m->gnext ? m->gnext : g->members;
    } while (m != start);
    for (int i = 0; i < 4; i++)
        if (best[i])
            return g->rr = best[i];
    return NULL;
}

/* Gives m every held connection of its group and connects them to m's
 * target. Returns how many there were. */
static unsigned take_held(ink_forwarder *f, mapping *m)
{
    unsigned n = 0;
    for (mapping *y = m->g->members; y; y = y->gnext)
        for (conn *c = y->conns, *next; c; c = next) {
            next = c->next;
            if (c->state != CONN_HELD)
                continue;
            conn_move(c, m);
            conn_connect(f, c);
            n++;
        }
    return n;
}

static void group_join(group *g, mapping *m)
{
    mapping **pp = &g->members;
    while (*pp)
        pp = &(*pp)->gnext;
    *pp = m;
    m->gnext = NULL;
    m->g = g;
    g->nmembers++;
}

/* Takes m out of its group. Held connections of m go to the member pick()
 * chooses (connected at once unless it is paused too); the last member
 * leaving closes the listener and parks the group. */
static void group_leave(ink_forwarder *f, mapping *m)
{
    group *g = m->g;
    mapping **pp = &g->members, *prev = NULL;
    while (*pp != m) {
        prev = *pp;
        pp = &(*pp)->gnext;
    }
    *pp = m->gnext;
    m->gnext = NULL;
    m->g = NULL;
    g->nmembers--;
    if (g->rr == m)
        g->rr = prev; /* the rotation goes on with the member that followed m */
    if (g->members) {
        for (conn *c = m->conns, *next; c; c = next) {
            next = c->next;
            if (c->state != CONN_HELD)
                continue;
            mapping *to = pick(g);
            conn_move(c, to);
            if (!to->paused)
                conn_connect(f, c);
        }
        return;
    }
    sock_close(f, &g->listener, false);
    for (group **gp = &f->groups; *gp; gp = &(*gp)->next)
        if (*gp == g) {
            *gp = g->next;
            break;
        }
    g->dead = true;
    g->next = f->dead_groups;
    f->dead_groups = g;
}

static mapping *mapping_new(ink_forwarder *f, const char *key)
{
    mapping *m = ink_xcalloc(1, sizeof *m);
    snprintf(m->key, sizeof m->key, "%s", key);
    m->next = f->maps;
    f->maps = m;
    return m;
}

/* Resets every connection of m and parks it; m is out of f->maps and of
 * its group already. */
static void mapping_close(ink_forwarder *f, mapping *m)
{
    while (m->conns)
        conn_close(f, m->conns, true);
    m->dead = true;
    m->next = f->dead_maps;
    f->dead_maps = m;
}

/* ----------------------------------------------------------- listeners */

static void accept_rest(ink_forwarder *f, group *g, int e)
{
    LOG_WARN("forward: accepting a connection failed, pausing the listener", "key",
             g->members ? g->members->key : "", "listen", g->host, "port", LOG_INT(g->port),
             "error", strerror(e), "ms", LOG_INT(ACCEPT_BACKOFF_MS));
    if (sock_want(f, &g->listener, 0) < 0)
        return;
    g->accept_retry = ink_mono_ms() + ACCEPT_BACKOFF_MS;
    if (g->accept_retry < f->next_deadline)
        f->next_deadline = g->accept_retry;
}

static void on_listener(ink_forwarder *f, group *g)
{
    unsigned accepted = 0;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        int fd = accept4(g->listener.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN)
                break;
            /* Errors of that one connection (accept(2) lists the network
             * errors Linux passes through); the next may be fine. */
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO || errno == ENETDOWN ||
                errno == ENOPROTOOPT || errno == EHOSTDOWN || errno == ENONET ||
                errno == EHOSTUNREACH || errno == EOPNOTSUPP || errno == ENETUNREACH)
                continue;
            accept_rest(f, g, errno);
            break;
        }
        mapping *m = pick(g);
        if (!m || m->st.connections_active >= INK_FORWARD_MAX_CONNS) {
            sock s = {.kind = OBJ_CLIENT, .fd = fd};
            sock_close(f, &s, true);
            if (m)
                m->st.rejected++;
            continue;
        }
        if (conn_new(f, m, fd) < 0) {
            accept_rest(f, g, errno);
            break;
        }
        memcpy(f->accepted[accepted++], m->key, sizeof m->key);
    }
    if (accepted && f->on_accept) {
        /* f->accepted belongs to this thread: it stays put while the lock
         * is let go, whatever happens to the members meanwhile. */
        pthread_mutex_unlock(&f->mu);
        for (unsigned i = 0; i < accepted; i++)
            f->on_accept(f->accepted[i], f->arg);
        pthread_mutex_lock(&f->mu);
    }
}

/* 0, or an errno value with *what naming the step that failed. */
static int open_listener(struct in_addr addr, uint16_t port, int *fd_out, uint16_t *bound,
                         const char **what)
{
    *what = "creating a socket for";
    cleanup_close int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    /* SO_REUSEADDR lets a restarted agent bind while old connections linger
     * in TIME_WAIT. Never SO_REUSEPORT: a second listener would silently
     * share the port (keys that share a port share one listener instead). */
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        return errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = addr, .sin_port = htons(port)};
    socklen_t len = sizeof sa;
    *what = "binding";
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return errno;
    *what = "listening on";
    if (listen(fd, SOMAXCONN) < 0 || getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        return errno;
    *bound = ntohs(sa.sin_port);
    *fd_out = fd;
    fd = -1;
    return 0;
}

static int install_listener(ink_forwarder *f, group *g, int fd)
{
    sock_close(f, &g->listener, false);
    g->listener.fd = fd;
    g->accept_retry = 0;
    return sock_want(f, &g->listener, EPOLLIN);
}

/* ---------------------------------------------------------------- loop */

static void run_timers(ink_forwarder *f)
{
    int64_t now = ink_mono_ms();
    if (now < f->next_deadline)
        return;
    int64_t next = INT64_MAX;
    for (conn *c = f->timed, *n; c; c = n) {
        n = c->tnext;
        if (c->deadline > now) {
            next = c->deadline < next ? c->deadline : next;
        } else if (c->state == CONN_HELD) {
            c->m->st.hold_expired++;
            conn_close(f, c, true);
        } else {
            conn_fail(f, c, ETIMEDOUT);
        }
    }
    for (group *g = f->groups; g; g = g->next) {
        if (g->accept_retry && g->accept_retry <= now) {
            g->accept_retry = 0;
            if (g->listener.fd >= 0 && sock_want(f, &g->listener, EPOLLIN) < 0)
                g->accept_retry = now + ACCEPT_BACKOFF_MS;
        }
        if (g->accept_retry && g->accept_retry < next)
            next = g->accept_retry;
    }
    f->next_deadline = next;
}

static void empty_graveyard(ink_forwarder *f)
{
    while (f->dead_conns) {
        conn *c = f->dead_conns;
        f->dead_conns = c->next;
        free(c);
    }
    while (f->dead_maps) {
        mapping *m = f->dead_maps;
        f->dead_maps = m->next;
        free(m);
    }
    while (f->dead_groups) {
        group *g = f->dead_groups;
        f->dead_groups = g->next;
        free(g);
    }
}

static void dispatch(ink_forwarder *f, sock *s, uint32_t events)
{
    switch (s->kind) {
    case OBJ_WAKE: {
        uint64_t v;
        ssize_t r = read(s->fd, &v, sizeof v);
        (void)r;
        break;
    }
    case OBJ_LISTENER: {
        group *g = container_of(s, group, listener);
        if (!g->dead && s->fd >= 0 && s->events)
            on_listener(f, g);
        break;
    }
    case OBJ_CLIENT:
    case OBJ_TARGET: {
        bool is_target = s->kind == OBJ_TARGET;
        conn *c = is_target ? container_of(s, conn, target) : container_of(s, conn, client);
        if (!c->dead)
            on_conn_event(f, c, is_target, events);
        break;
    }
    }
}

static void *loop_main(void *arg)
{
    ink_forwarder *f = arg;
    struct epoll_event evs[EVENTS_PER_WAIT];
    pthread_mutex_lock(&f->mu);
    while (!f->stopping) {
        int timeout = -1;
        if (f->next_deadline != INT64_MAX) {
            int64_t d = f->next_deadline - ink_mono_ms();
            timeout = d < 0 ? 0 : d > INT_MAX ? INT_MAX : (int)d;
        }
        pthread_mutex_unlock(&f->mu);
        int n = epoll_wait(f->epfd, evs, EVENTS_PER_WAIT, timeout);
        int e = errno;
        pthread_mutex_lock(&f->mu);
        if (n < 0 && e != EINTR) {
            LOG_ERROR("forward: epoll_wait failed, forwarding stops", "error", strerror(e));
            break;
        }
        for (int i = 0; i < n; i++)
            dispatch(f, evs[i].data.ptr, evs[i].events);
        run_timers(f);
        empty_graveyard(f);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* ----------------------------------------------------------------- API */

int ink_forwarder_start(ink_forward_accept_fn on_accept, void *arg, ink_forwarder **out,
                        ink_err *err)
{
    ink_forwarder *f = ink_xcalloc(1, sizeof *f);
    f->on_accept = on_accept;
    f->arg = arg;
    f->next_deadline = INT64_MAX;
    f->wake = (sock){.kind = OBJ_WAKE, .fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
    f->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (f->wake.fd < 0 || f->epfd < 0 || sock_want(f, &f->wake, EPOLLIN) < 0) {
        ink_err_set(err, errno, "forwarder: creating the event loop");
        goto fail;
    }
    pthread_mutex_init(&f->mu, NULL);
    /* The loop thread inherits a full signal mask: splice into a socket the
     * peer closed raises SIGPIPE (there is no MSG_NOSIGNAL for splice), and
     * blocked it stays harmless whatever the process does with SIGPIPE. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&f->thread, NULL, loop_main, f);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        ink_err_set(err, e, "forwarder: starting its thread");
        pthread_mutex_destroy(&f->mu);
        goto fail;
    }
    *out = f;
    return 0;
fail:
    if (f->wake.fd >= 0)
        close(f->wake.fd);
    if (f->epfd >= 0)
        close(f->epfd);
    free(f);
    return -1;
}

void ink_forwarder_stop(ink_forwarder *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->stopping = true;
    wake(f);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    while (f->maps) {
        mapping *m = f->maps;
        f->maps = m->next;
        mapping_close(f, m);
    }
    while (f->groups) {
        group *g = f->groups;
        f->groups = g->next;
        sock_close(f, &g->listener, false);
        g->next = f->dead_groups;
        f->dead_groups = g;
    }
    empty_graveyard(f);
    for (int i = 0; i < f->npipes; i++) {
        close(f->pipes[i].fd[0]);
        close(f->pipes[i].fd[1]);
    }
    close(f->wake.fd);
    close(f->epfd);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* The group that asked for addr:port (port != 0), if any. */
static group *find_group(ink_forwarder *f, struct in_addr addr, uint16_t port)
{
    for (group *g = f->groups; g; g = g->next)
        if (g->asked_port == port && g->addr.s_addr == addr.s_addr)
            return g;
    return NULL;
}

static void log_published(const mapping *m, bool joined)
{
    char taddr[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &m->target.sin_addr, taddr, sizeof taddr);
    LOG_INFO(joined ? "forward: port shared" : "forward: port published", "key", m->key, "listen",
             m->g->host, "port", LOG_INT(m->g->port), "members", LOG_INT(m->g->nmembers), "target",
             taddr, "target_port", LOG_INT(ntohs(m->target.sin_port)));
}

static int publish_locked(ink_forwarder *f, const char *key, const char *host, struct in_addr addr,
                          uint16_t port, const struct sockaddr_in *target, uint16_t *bound_port,
                          ink_err *err)
{
    mapping *m = find_mapping(f, key);
    group *old = m ? m->g : NULL, *g = NULL;
    if (old && old->addr.s_addr == addr.s_addr && (port == old->asked_port || port == old->port))
        g = old; /* where it is already */
    else if (port)
        g = find_group(f, addr, port); /* other keys listen there: join them */
    int fd = -1, e;
    uint16_t bound = 0;
    const char *what = "";
    if (g && g->listener.fd < 0) {
        /* A failed move left it without its listener: listen again. */
        e = open_listener(g->addr, g->port, &fd, &bound, &what);
        if (e)
            return ink_err_set(err, e, "publishing %s: %s %s:%u", key, what, host, g->port);
        if (install_listener(f, g, fd) < 0) {
            e = errno;
            sock_close(f, &g->listener, false);
            return ink_err_set(err, e, "publishing %s: watching the listener", key);
        }
    }
    if (g) {
        bool joined = g != old;
        if (!m)
            m = mapping_new(f, key);
        else if (joined)
            group_leave(f, m);
        if (joined)
            group_join(g, m);
        m->target = *target; /* connections made keep theirs; held ones take this */
        *bound_port = g->port;
        if (joined)
            log_published(m, g->nmembers > 1);
        return 0;
    }

    e = open_listener(addr, port, &fd, &bound, &what);
    if (e == EADDRINUSE && old && old->nmembers == 1 && old->listener.fd >= 0 && port &&
        port == old->port) {
        /* Same port, another address: our own listener is in the way (a
         * wildcard and a specific address conflict on one port). Let go of
         * it and try again; take the old address back if that fails. */
        sock_close(f, &old->listener, false);
        e = open_listener(addr, port, &fd, &bound, &what);
        int old_fd = -1;
        uint16_t old_port;
        const char *ignored;
        if (e && (open_listener(old->addr, old->port, &old_fd, &old_port, &ignored) != 0 ||
                  install_listener(f, old, old_fd) < 0))
            LOG_WARN("forward: could not listen on the old address again", "key", key, "listen",
                     old->host, "port", LOG_INT(old->port));
    }
    if (e)
        return ink_err_set(err, e, "publishing %s: %s %s:%u", key, what, host, port);

    g = ink_xcalloc(1, sizeof *g);
    g->listener = (sock){.kind = OBJ_LISTENER, .fd = -1};
    if (install_listener(f, g, fd) < 0) {
        e = errno;
        sock_close(f, &g->listener, false);
        free(g);
        return ink_err_set(err, e, "publishing %s: watching the listener", key);
    }
    snprintf(g->host, sizeof g->host, "%s", host);
    g->addr = addr;
    g->asked_port = port;
    g->port = bound;
    g->next = f->groups;
    f->groups = g;
    if (!m)
        m = mapping_new(f, key);
    else
        group_leave(f, m);
    group_join(g, m);
    m->target = *target;
    *bound_port = bound;
    log_published(m, false);
    return 0;
}

int ink_forwarder_publish(ink_forwarder *f, const char *key, const char *listen_host,
                          uint16_t listen_port, const struct sockaddr_in *target,
                          uint16_t *bound_port, ink_err *err)
{
    if (!key || !*key || strlen(key) > INK_FORWARD_KEY_MAX)
        return ink_err_set(err, EINVAL, "publishing a port: the key must have 1 to %d characters",
                           INK_FORWARD_KEY_MAX);
    if (!target || target->sin_family != AF_INET || !target->sin_port)
        return ink_err_set(err, EINVAL,
                           "publishing %s: the target must be an IPv4 address and port", key);
    const char *host = listen_host && *listen_host ? listen_host : "0.0.0.0";
    struct in_addr addr;
    if (inet_pton(AF_INET, host, &addr) != 1)
        return ink_err_set(err, EINVAL, "publishing %s: listen address \"%s\" is not IPv4", key,
                           host);
    uint16_t bound = 0;
    pthread_mutex_lock(&f->mu);
    int rc = publish_locked(f, key, host, addr, listen_port, target, &bound, err);
    if (rc == 0)
        wake(f); /* a member left: maybe connects to time, maybe a group to free */
    pthread_mutex_unlock(&f->mu);
    if (rc == 0 && bound_port)
        *bound_port = bound;
    return rc;
}

void ink_forwarder_unpublish(ink_forwarder *f, const char *key)
{
    if (!key)
        return;
    pthread_mutex_lock(&f->mu);
    for (mapping **pp = &f->maps; *pp; pp = &(*pp)->next) {
        mapping *m = *pp;
        if (strcmp(m->key, key) != 0)
            continue;
        *pp = m->next;
        group *g = m->g;
        LOG_INFO("forward: port unpublished", "key", key, "port", LOG_INT(g->port), "connections",
                 LOG_U64(m->st.connections_active), "members_left", LOG_INT(g->nmembers - 1));
        group_leave(f, m);
        mapping_close(f, m);
        wake(f); /* so the loop frees it soon */
        break;
    }
    pthread_mutex_unlock(&f->mu);
}

int ink_forwarder_set_ready(ink_forwarder *f, const char *key, bool ready)
{
    if (!key)
        return -1;
    pthread_mutex_lock(&f->mu);
    mapping *m = find_mapping(f, key);
    if (m) {
        m->ready = ready;
        if (ready && !m->paused && take_held(f, m))
            wake(f); /* new connect deadlines, maybe a graveyard */
    }
    pthread_mutex_unlock(&f->mu);
    return m ? 0 : -1;
}

int ink_forwarder_pause(ink_forwarder *f, const char *key, int64_t hold_ms)
{
    if (!key || hold_ms <= 0)
        return -1;
    pthread_mutex_lock(&f->mu);
    mapping *m = find_mapping(f, key);
    if (m) {
        m->paused = true;
        m->hold_ms = hold_ms < INT32_MAX ? hold_ms : INT32_MAX; /* no overflow when added */
    }
    pthread_mutex_unlock(&f->mu);
    return m ? 0 : -1;
}

int ink_forwarder_resume(ink_forwarder *f, const char *key)
{
    if (!key)
        return -1;
    pthread_mutex_lock(&f->mu);
    mapping *m = find_mapping(f, key);
    if (m) {
        m->paused = false;
        if (take_held(f, m))
            wake(f); /* new connect deadlines, maybe a graveyard */
    }
    pthread_mutex_unlock(&f->mu);
    return m ? 0 : -1;
}

int ink_forwarder_stats(ink_forwarder *f, const char *key, ink_forward_stats *out)
{
    if (!key)
        return -1;
    pthread_mutex_lock(&f->mu);
    mapping *m = find_mapping(f, key);
    if (m)
        *out = m->st;
    pthread_mutex_unlock(&f->mu);
    return m ? 0 : -1;
}

/* The first bytes the held client sent, without taking them: tee(2) copies
 * the start of the pipe they were spliced into (or, not read yet, a peek
 * at the socket). */
static size_t held_peek(const conn *c, char *buf, size_t len)
{
    if (c->up.pending == 0 || c->up.pipe[0] < 0) {
        ssize_t got = c->client.fd >= 0 ? recv(c->client.fd, buf, len, MSG_PEEK | MSG_DONTWAIT) : 0;
        return got > 0 ? (size_t)got : 0;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return 0;
    ssize_t n = tee(c->up.pipe[0], p[1], len, SPLICE_F_NONBLOCK);
    ssize_t got = n > 0 ? read(p[0], buf, (size_t)n < len ? (size_t)n : len) : 0;
    close(p[0]);
    close(p[1]);
    return got > 0 ? (size_t)got : 0;
}

/* "GET / HTTP/1.1", "POST /x HTTP/1.0", ...: a method token, a space. */
static bool looks_like_http(const char *b, size_t n)
{
    size_t i = 0;
    while (i < n && i < 16 && b[i] >= 'A' && b[i] <= 'Z')
        i++;
    return i >= 3 && i < n && b[i] == ' ';
}

unsigned ink_forwarder_fail_held(ink_forwarder *f, const char *key, const char *reason)
{
    if (!key)
        return 0;
    char body[768];
    int blen = snprintf(body, sizeof body, "%s\n", reason ? reason : "the app could not start");
    if (blen < 0 || (size_t)blen >= sizeof body)
        blen = (int)sizeof body - 1;
    char resp[1024];
    int rlen = snprintf(resp, sizeof resp,
                        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; "
                        "charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n"
                        "Retry-After: 5\r\n\r\n%.*s",
                        blen, blen, body);
    unsigned n = 0;
    pthread_mutex_lock(&f->mu);
    mapping *m = find_mapping(f, key);
    for (mapping *y = m ? m->g->members : NULL; y; y = y->gnext) {
        for (conn *c = y->conns, *next; c; c = next) {
            next = c->next;
            if (c->state != CONN_HELD)
                continue;
            char head[32];
            size_t hl = held_peek(c, head, sizeof head);
            bool http = looks_like_http(head, hl);
            if (http && c->client.fd >= 0) {
                /* The response fits any socket buffer; the client's
                 * unread bytes are drained first, or close() would send
                 * a reset that can overtake the response. */
                ssize_t w = send(c->client.fd, resp, (size_t)rlen, MSG_NOSIGNAL | MSG_DONTWAIT);
                (void)w;
                shutdown(c->client.fd, SHUT_WR);
                char sink[4096];
                while (recv(c->client.fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
                    ;
            }
            conn_close(f, c, !http);
            n++;
        }
    }
    if (n)
        wake(f);
    pthread_mutex_unlock(&f->mu);
    return n;
}
