/* The HTTP side of the Prometheus endpoint (prom.h): one thread, one poll
 * loop over the listening socket, a wake-up eventfd and at most
 * INK_PROM_MAX_CONNECTIONS connections, each non-blocking with a deadline
 * of its own. A scraper is a trusted, well-behaved client, but the port
 * is reachable by anything on the node: nothing a client does (send
 * nothing, send slowly, send a lot, never read the answer) can hold more
 * than its own slot for INK_PROM_TIMEOUT_MS, or make the agent allocate
 * more than INK_PROM_REQUEST_MAX per connection. */
#include "prom.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

typedef struct conn {
    int fd;
    int64_t deadline_ms; /* monotonic: reading the request, then writing */
    size_t got;
    char req[INK_PROM_REQUEST_MAX];
    char *resp; /* non-NULL: writing it */
    size_t resp_len, sent;
} conn;

struct ink_prom_server {
    int listen_fd, wake_fd, port;
    ink_prom_source source;
    void *arg;
    pthread_t thread;
    conn *conns[INK_PROM_MAX_CONNECTIONS];
};

/* ------------------------------------------------------------- answers */

static char *answer(int code, const char *reason, const char *type, const char *extra,
                    const char *body, size_t body_len, bool head, size_t *len)
{
    char *hdr = ink_xasprintf("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                              "%sConnection: close\r\n\r\n",
                              code, reason, type, body_len, extra ? extra : "");
    size_t hlen = strlen(hdr);
    size_t blen = head ? 0 : body_len;
    char *out = ink_xrealloc(hdr, hlen + blen + 1);
    if (blen)
        memcpy(out + hlen, body, blen);
    out[hlen + blen] = '\0';
    *len = hlen + blen;
    return out;
}

static char *error_answer(int code, const char *reason, const char *extra, bool head, size_t *len)
{
    char body[128];
    int n = snprintf(body, sizeof body, "%d %s\n", code, reason);
    return answer(code, reason, "text/plain; charset=utf-8", extra, body, (size_t)n, head, len);
}

/* The answer to a complete request (its request line first). */
static char *respond(ink_prom_server *srv, const char *req, size_t *len)
{
    char method[16], target[1024], version[16];
    size_t line = strcspn(req, "\r\n");
    char first[1100];
    if (line >= sizeof first)
        return error_answer(414, "URI Too Long", NULL, false, len);
    memcpy(first, req, line);
    first[line] = '\0';
    char extra;
    if (sscanf(first, "%15s %1023s %15s %c", method, target, version, &extra) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0)
        return error_answer(400, "Bad Request", NULL, false, len);
    bool head = strcmp(method, "HEAD") == 0;
    if (strcmp(method, "GET") != 0 && !head)
        return error_answer(405, "Method Not Allowed", "Allow: GET, HEAD\r\n", false, len);
    /* A scraper may add a query string (?name[]=...): the whole text is
     * the answer anyway. */
    target[strcspn(target, "?")] = '\0';
    if (strcmp(target, "/metrics") != 0)
        return error_answer(404, "Not Found", NULL, head, len);
    size_t blen = 0;
    cleanup_free char *body = srv->source(srv->arg, &blen);
    if (!body)
        return error_answer(503, "Service Unavailable", NULL, head, len);
    return answer(200, "OK", INK_PROM_CONTENT_TYPE, NULL, body, blen, head, len);
}

/* ---------------------------------------------------------- connections */

static void conn_close(ink_prom_server *srv, size_t slot)
{
    conn *c = srv->conns[slot];
    /* Whatever the client sent past its headers is read first: closing
     * with unread data would reset the connection, and the client might
     * lose the answer. */
    char sink[512];
    while (recv(c->fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
        ;
    close(c->fd);
    free(c->resp);
    free(c);
    srv->conns[slot] = NULL;
}

static bool request_complete(const conn *c)
{
    return memmem(c->req, c->got, "\r\n\r\n", 4) || memmem(c->req, c->got, "\n\n", 2);
}

/* Reads what is there; false when the connection is done with. */
static bool conn_read(ink_prom_server *srv, conn *c)
{
    for (;;) {
        if (c->got == sizeof c->req - 1) {
            c->resp =
                error_answer(431, "Request Header Fields Too Large", NULL, false, &c->resp_len);
            break;
        }
        ssize_t r = recv(c->fd, c->req + c->got, sizeof c->req - 1 - c->got, 0);
        if (r == 0)
            return false; /* gone before a whole request */
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        c->got += (size_t)r;
        c->req[c->got] = '\0';
        if (request_complete(c)) {
            c->resp = respond(srv, c->req, &c->resp_len);
            break;
        }
    }
    /* The answer gets a deadline of its own. */
    c->deadline_ms = ink_mono_ms() + INK_PROM_TIMEOUT_MS;
    return true;
}

/* Writes what the socket takes; false when done (all sent, or failed). */
static bool conn_write(conn *c)
{
    while (c->sent < c->resp_len) {
        ssize_t w = send(c->fd, c->resp + c->sent, c->resp_len - c->sent, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        c->sent += (size_t)w;
    }
    shutdown(c->fd, SHUT_WR);
    return false;
}

static void accept_one(ink_prom_server *srv)
{
    int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return; /* EAGAIN, or the client already went */
    for (size_t i = 0; i < INK_PROM_MAX_CONNECTIONS; i++) {
        if (!srv->conns[i]) {
            conn *c = ink_xmalloc(sizeof *c);
            c->fd = fd;
            c->deadline_ms = ink_mono_ms() + INK_PROM_TIMEOUT_MS;
            c->got = 0;
            c->req[0] = '\0';
            c->resp = NULL;
            c->resp_len = c->sent = 0;
            srv->conns[i] = c;
            return;
        }
    }
    close(fd); /* not reached: the listener is polled only with a free slot */
}

static void *serve(void *arg)
{
    ink_prom_server *srv = arg;
    struct pollfd p[2 + INK_PROM_MAX_CONNECTIONS];
    size_t slot_of[2 + INK_PROM_MAX_CONNECTIONS];
    for (;;) {
        int64_t now = ink_mono_ms();
        int64_t next = -1;
        nfds_t n = 0;
        p[n++] = (struct pollfd){.fd = srv->wake_fd, .events = POLLIN};
        size_t used = 0;
        for (size_t i = 0; i < INK_PROM_MAX_CONNECTIONS; i++) {
            conn *c = srv->conns[i];
            if (!c)
                continue;
            if (c->deadline_ms <= now) {
                conn_close(srv, i); /* too slow: its slot goes to others */
                continue;
            }
            used++;
            if (next < 0 || c->deadline_ms < next)
                next = c->deadline_ms;
            slot_of[n] = i;
            p[n++] = (struct pollfd){.fd = c->fd, .events = c->resp ? POLLOUT : POLLIN};
        }
        /* A full house leaves new clients in the backlog until a slot
         * frees, at the latest when a deadline passes. */
        nfds_t listen_at = n;
        if (used < INK_PROM_MAX_CONNECTIONS)
            p[n++] = (struct pollfd){.fd = srv->listen_fd, .events = POLLIN};
        int timeout = next < 0 ? -1 : (int)(next - now);
        int r = poll(p, n, timeout);
        if (r < 0 && errno != EINTR) {
            LOG_ERROR("metrics endpoint: poll failed", "error", strerror(errno));
            return NULL;
        }
        if (r <= 0)
            continue;
        if (p[0].revents)
            return NULL; /* stopping */
        for (nfds_t k = 1; k < listen_at; k++) {
            if (!p[k].revents)
                continue;
            size_t slot = slot_of[k];
            conn *c = srv->conns[slot];
            bool keep = true;
            if (!c->resp)
                keep = conn_read(srv, c);
            /* Written at once: the answer usually fits the socket buffer. */
            if (keep && c->resp)
                keep = conn_write(c);
            if (!keep)
                conn_close(srv, slot);
        }
        if (listen_at < n && p[listen_at].revents)
            accept_one(srv);
    }
}

/* ---------------------------------------------------------------- public */

int ink_prom_server_start(const char *listen_addr, ink_prom_source source, void *arg,
                          ink_prom_server **out, ink_err *err)
{
    *out = NULL;
    char host[64];
    int port;
    if (ink_split_hostport(listen_addr, host, sizeof host, &port, err) < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (port < 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return ink_err_set(err, 0, "'%s' is not an IPv4 address and port (e.g. 127.0.0.1:7443)",
                           listen_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ink_err_set(err, errno, "socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        return ink_err_set(err, e, "bind %s", listen_addr);
    }
    if (listen(fd, 64) < 0) {
        int e = errno;
        close(fd);
        return ink_err_set(err, e, "listen %s", listen_addr);
    }
    socklen_t salen = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &salen);
    int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake < 0) {
        int e = errno;
        close(fd);
        return ink_err_set(err, e, "eventfd");
    }
    ink_prom_server *srv = ink_xcalloc(1, sizeof *srv);
    srv->listen_fd = fd;
    srv->wake_fd = wake;
    srv->port = ntohs(sa.sin_port);
    srv->source = source;
    srv->arg = arg;
    int rc = pthread_create(&srv->thread, NULL, serve, srv);
    if (rc != 0) {
        close(fd);
        close(wake);
        free(srv);
        return ink_err_set(err, rc, "metrics endpoint thread");
    }
    *out = srv;
    return 0;
}

int ink_prom_server_port(const ink_prom_server *srv)
{
    return srv->port;
}

void ink_prom_server_stop(ink_prom_server *srv)
{
    if (!srv)
        return;
    uint64_t one = 1;
    (void)!write(srv->wake_fd, &one, sizeof one);
    pthread_join(srv->thread, NULL);
    for (size_t i = 0; i < INK_PROM_MAX_CONNECTIONS; i++) {
        if (srv->conns[i])
            conn_close(srv, i);
    }
    close(srv->listen_fd);
    close(srv->wake_fd);
    free(srv);
}
