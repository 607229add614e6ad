/* The node resolver, the agent's half: binds <gateway>:53 (UDP and TCP),
 * starts the ink-dns helper with those sockets, and keeps it fed with the
 * upstream resolvers and the name table, from a thread of its own:
 *
 *   start  sockets (once; kept across helper restarts, so queries wait in
 *          the socket buffer while a helper restarts), socketpair, spawn,
 *          READY (the helper confined itself), CONFIG
 *   loop   table rebuilt when workloads change (ink_dns_changed) and every
 *          refresh_ms; sent only when it differs from the last one;
 *          resolv.conf watched for changes when it names the upstreams
 *   ends   a helper that exits, is killed (SIGSYS: its seccomp filter) or
 *          sends a malformed frame is reaped and started again with
 *          backoff (1 s doubling to 1 min), its last words logged
 *
 * What the helper sends is checked like anything from a less trusted
 * process: frame sizes are capped, log text is made printable. */
#include "dns.h"
#include "dns_internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backoff.h"
#include "helper.h"
#include "log.h"
#include "util.h"

#ifndef INK_DNS_HELPER_PATH
#error "INK_DNS_HELPER_PATH (the installed ink-dns) must be defined by the build"
#endif

#define DEFAULT_USER "ink-dns"
#define FALLBACK_USER "nobody"
#define READY_TIMEOUT_MS 5000
#define SEND_TIMEOUT_MS 2000
#define STOP_GRACE_MS 1000
#define RESTART_MIN_MS 1000
#define RESTART_MAX_MS 60000
/* A helper that served this long before it ended starts over from the
 * shortest restart delay. */
#define STABLE_MS 60000

/* Transfers a descriptor out of a cleanup_close variable. */
#define STEAL_FD(fd)                                                                               \
    ({                                                                                             \
        int _fd = (fd);                                                                            \
        (fd) = -1;                                                                                 \
        _fd;                                                                                       \
    })

struct ink_dns {
    /* Fixed after start. */
    char *workload_cidr, *upstream, *resolv_conf, *helper, *root_dir;
    uint16_t port;
    int64_t refresh_ms;
    ink_dns_collect_fn collect;
    void *arg;
    struct in_addr gateway, net;
    uint8_t prefix;
    uid_t uid;
    gid_t gid;
    char user_desc[96];

    pthread_t thread;
    int wake_fd; /* eventfd: changed, sync or stop */

    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stopping, dirty;
    pid_t pid;           /* the helper, 0: none */
    uint64_t sync_req;   /* ink_dns_sync calls */
    uint64_t synced_req; /* the last of them a table applied by the helper covers */

    /* The thread's own. */
    int udp_fd, tcp_fd, ctl_fd;
    ink_dns_config_msg cmsg;
    struct timespec resolv_mtime;
    bool have_resolv_mtime, resolv_read;
    uint8_t *last_table; /* last table sent (serial included) */
    size_t last_len;
    uint32_t serial;
    bool last_acked;
    uint64_t sent_req; /* sync_req when the last table was built */
    uint8_t in[INK_DNS_CTL_HEADER + INK_DNS_CTL_HELPER_MAX];
    size_t inlen;
    ink_backoff backoff;
    int64_t next_start_ms, started_ms, next_refresh_ms;
    unsigned failures;
};

/* ------------------------------------------------------------ config */

int ink_dns_gateway(const char *cidr, struct in_addr *gw, ink_err *err)
{
    char host[INET_ADDRSTRLEN];
    const char *slash = cidr ? strchr(cidr, '/') : NULL;
    if (!slash || slash == cidr || (size_t)(slash - cidr) >= sizeof host)
        return ink_err_set(err, EINVAL, "workload range \"%s\": want a.b.c.d/prefix",
                           cidr ? cidr : "");
    memcpy(host, cidr, (size_t)(slash - cidr));
    host[slash - cidr] = '\0';
    char *end;
    errno = 0;
    long p = strtol(slash + 1, &end, 10);
    struct in_addr a;
    if (errno || *end || p < 8 || p > 30 || inet_pton(AF_INET, host, &a) != 1)
        return ink_err_set(err, EINVAL, "workload range \"%s\": want a.b.c.d/8..30", cidr);
    uint32_t mask = ~0u << (32 - p);
    uint32_t n = ntohl(a.s_addr);
    if (n & ~mask)
        return ink_err_set(err, EINVAL, "workload range \"%s\": host bits are set", cidr);
    gw->s_addr = htonl(n + 1); /* as IPAM: the first host address */
    return 0;
}

static bool in_range(const ink_dns *d, struct in_addr a)
{
    uint32_t mask = ~0u << (32 - d->prefix);
    return (ntohl(a.s_addr) & mask) == (ntohl(d->net.s_addr) & mask);
}

/* One upstream, "a.b.c.d[:port]", "[v6][:port]" or a bare IPv6 address.
 * Only addresses: the resolver cannot resolve its own upstream. */
static int parse_upstream(const ink_dns *d, const char *s, ink_dns_upstream *u, ink_err *err)
{
    char host[INET6_ADDRSTRLEN + 1];
    long port = 53;
    const char *portstr = NULL;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || (close[1] && close[1] != ':'))
            return ink_err_set(err, 0, "upstream \"%s\": want [IPv6]:port", s);
        hl = (size_t)(close - s - 1);
        if (hl >= sizeof host)
            return ink_err_set(err, 0, "upstream \"%s\": address too long", s);
        memcpy(host, s + 1, hl);
        portstr = close[1] ? close + 2 : NULL;
    } else if (strchr(s, ':') && strchr(s, ':') != strrchr(s, ':')) {
        hl = strlen(s); /* bare IPv6 */
        if (hl >= sizeof host)
            return ink_err_set(err, 0, "upstream \"%s\": address too long", s);
        memcpy(host, s, hl);
    } else {
        const char *colon = strchr(s, ':');
        hl = colon ? (size_t)(colon - s) : strlen(s);
        if (hl >= sizeof host)
            return ink_err_set(err, 0, "upstream \"%s\": address too long", s);
        memcpy(host, s, hl);
        portstr = colon ? colon + 1 : NULL;
    }
    host[hl] = '\0';
    if (portstr) {
        char *end;
        errno = 0;
        port = strtol(portstr, &end, 10);
        if (errno || !*portstr || *end || port < 1 || port > 65535)
            return ink_err_set(err, 0, "upstream \"%s\": bad port", s);
    }
    memset(u, 0, sizeof *u);
    struct sockaddr_in *sin = (struct sockaddr_in *)&u->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&u->addr;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        u->addrlen = sizeof *sin;
        /* The resolver itself (a loop), or a workload (which could then
         * answer for every other workload's names). */
        if (in_range(d, sin->sin_addr))
            return ink_err_set(err, 0, "upstream \"%s\" is in the workload range", s);
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        u->addrlen = sizeof *sin6;
    } else {
        return ink_err_set(err, 0, "upstream \"%s\": not an IP address", s);
    }
    return 0;
}

static int parse_upstream_list(const ink_dns *d, const char *list, ink_dns_config_msg *c,
                               ink_err *err)
{
    c->nup = 0;
    cleanup_free char *copy = ink_xstrdup(list);
    char *save = NULL;
    for (char *t = strtok_r(copy, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
        if (c->nup == INK_DNS_MAX_UPSTREAMS)
            return ink_err_set(err, 0, "dns_upstream: at most %d resolvers", INK_DNS_MAX_UPSTREAMS);
        if (parse_upstream(d, t, &c->up[c->nup], err) < 0)
            return ink_err_wrap(err, "dns_upstream");
        c->nup++;
    }
    if (c->nup == 0)
        return ink_err_set(err, 0, "dns_upstream \"%s\": no resolver", list);
    return 0;
}

/* The nameserver lines of resolv.conf. Addresses the resolver cannot use
 * (link-local IPv6 with a zone, the workload range) are skipped: a file
 * written for the node must not stop the node's workloads resolving. */
static void read_resolv_conf(ink_dns *d, ink_dns_config_msg *c)
{
    c->nup = 0;
    cleanup_free char *text = NULL;
    ink_err err = {0};
    if (ink_read_file(d->resolv_conf, 1 << 20, &text, NULL, &err) < 0) {
        LOG_WARN("workload DNS: no upstream resolvers: names outside .internal will fail", "error",
                 err.msg);
        return;
    }
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *sv = NULL;
        char *key = strtok_r(line, " \t\r", &sv);
        char *val = key ? strtok_r(NULL, " \t\r", &sv) : NULL;
        if (!key || !val || strcmp(key, "nameserver") != 0)
            continue;
        if (c->nup == INK_DNS_MAX_UPSTREAMS)
            break;
        ink_err e = {0};
        if (strchr(val, '%') || parse_upstream(d, val, &c->up[c->nup], &e) < 0) {
            LOG_WARN("workload DNS: nameserver skipped", "file", d->resolv_conf, "nameserver", val,
                     "error", e.msg[0] ? e.msg : "has a zone index");
            continue;
        }
        c->nup++;
    }
    if (c->nup == 0)
        LOG_WARN("workload DNS: no usable nameserver: names outside .internal will fail", "file",
                 d->resolv_conf);
}

static void upstream_text(const ink_dns_config_msg *c, char *out, size_t outlen)
{
    out[0] = '\0';
    size_t o = 0;
    for (size_t i = 0; i < c->nup && o + 1 < outlen; i++) {
        char host[INET6_ADDRSTRLEN] = "?";
        unsigned port = 0;
        const struct sockaddr_storage *ss = &c->up[i].addr;
        if (ss->ss_family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
            inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
            port = ntohs(sin->sin_port);
        } else {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
            inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
            port = ntohs(sin6->sin6_port);
        }
        int k = snprintf(out + o, outlen - o, ss->ss_family == AF_INET6 ? "%s[%s]:%u" : "%s%s:%u",
                         i ? "," : "", host, port);
        if (k < 0)
            break;
        o += (size_t)k;
    }
}

/* The helper's user: never root. */
static int resolve_user(ink_dns *d, const char *spec, ink_err *err)
{
    bool fallback = !spec || !*spec || strcmp(spec, DEFAULT_USER) == 0;
    const char *name = fallback ? DEFAULT_USER : spec;
    char *end;
    errno = 0;
    unsigned long uid = strtoul(name, &end, 10);
    if (!errno && end != name && (*end == '\0' || *end == ':')) {
        unsigned long gid = uid;
        if (*end == ':') {
            const char *g = end + 1;
            errno = 0;
            gid = strtoul(g, &end, 10);
            if (errno || end == g || *end)
                return ink_err_set(err, 0, "dns_user \"%s\": want a name or uid[:gid]", spec);
        }
        if (uid == 0 || gid == 0 || uid >= UINT32_MAX || gid >= UINT32_MAX)
            return ink_err_set(err, 0, "dns_user \"%s\": not an unprivileged uid/gid", spec);
        d->uid = (uid_t)uid;
        d->gid = (gid_t)gid;
        snprintf(d->user_desc, sizeof d->user_desc, "%lu:%lu", uid, gid);
        return 0;
    }
    struct passwd pw, *res = NULL;
    char buf[4096];
    int rc = getpwnam_r(name, &pw, buf, sizeof buf, &res);
    if (!res && fallback) {
        rc = getpwnam_r(FALLBACK_USER, &pw, buf, sizeof buf, &res);
        name = FALLBACK_USER;
    }
    if (!res)
        return ink_err_set(err, rc, "dns_user \"%s\": no such user", name);
    if (pw.pw_uid == 0 || pw.pw_gid == 0)
        return ink_err_set(err, 0, "dns_user \"%s\" is root or in group 0", name);
    d->uid = pw.pw_uid;
    d->gid = pw.pw_gid;
    snprintf(d->user_desc, sizeof d->user_desc, "%s (%u:%u)", name, (unsigned)d->uid,
             (unsigned)d->gid);
    return 0;
}

/* ------------------------------------------------------------ sandbox files */

int ink_dns_write_sandbox_files(const char *dir, const char *gateway, const char *hostname,
                                const char *addr, char **resolv, char **hosts, ink_err *err)
{
    cleanup_free char *r = ink_xasprintf("%s/resolv.conf", dir);
    cleanup_free char *h = ink_xasprintf("%s/hosts", dir);
    /* No search list: "<app>.internal" is asked as written, and a bare
     * name never wanders through suffixes to the upstream resolvers. */
    cleanup_free char *rtext = ink_xasprintf("# ink-agent: the node resolves <app>.internal "
                                             "(apps of this project) and forwards other names\n"
                                             "nameserver %s\n"
                                             "options ndots:1 timeout:2 attempts:2\n",
                                             gateway);
    cleanup_free char *htext = ink_xasprintf("127.0.0.1\tlocalhost\n"
                                             "::1\tlocalhost ip6-localhost ip6-loopback\n"
                                             "%s\t%s\n",
                                             addr, hostname);
    if (ink_mkdir_p(dir, 0700, err) < 0 ||
        ink_write_file_atomic(r, rtext, strlen(rtext), 0644, err) < 0 ||
        ink_write_file_atomic(h, htext, strlen(htext), 0644, err) < 0)
        return -1;
    *resolv = INK_STEAL(r);
    *hosts = INK_STEAL(h);
    return 0;
}

/* ------------------------------------------------------------ helper process */

/* The helper to run: the configured path, else the first executable of:
 * next to the running program (the build tree), <its dir>/../libexec/ink
 * (an installed tree moved as a whole), the compile-time install path. */
static int find_helper(const ink_dns *d, char *out, size_t outlen, ink_err *err)
{
    if (d->helper) {
        snprintf(out, outlen, "%s", d->helper);
        return 0;
    }
    return ink_helper_find("resolver helper", INK_DNS_HELPER_NAME, INK_DNS_HELPER_PATH, out, outlen,
                           err);
}

/* Its root: an empty directory, root's, closed to others. Made again when
 * it is anything else. */
static bool dir_is_empty(const char *path)
{
    DIR *dir = opendir(path);
    if (!dir)
        return false;
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(dir)))
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(dir);
    return empty;
}

static int ensure_root_dir(const ink_dns *d, ink_err *err)
{
    struct stat st;
    if (lstat(d->root_dir, &st) == 0) {
        if (S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_mode & 07777) == 0555 &&
            dir_is_empty(d->root_dir))
            return 0;
        if (S_ISDIR(st.st_mode))
            chmod(d->root_dir, 0700); /* rmtree must be able to empty it */
        ink_rmtree(d->root_dir);
    }
    cleanup_free char *parent = ink_xstrdup(d->root_dir);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (ink_mkdir_p(parent, 0700, err) < 0)
            return -1;
    }
    if (mkdir(d->root_dir, 0555) < 0 && errno != EEXIST)
        return ink_err_set(err, errno, "mkdir %s", d->root_dir);
    if (chmod(d->root_dir, 0555) < 0)
        return ink_err_set(err, errno, "chmod %s", d->root_dir);
    return 0;
}

static int open_sockets(ink_dns *d, ink_err *err)
{
    if (d->udp_fd >= 0)
        return 0;
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(d->port), .sin_addr = d->gateway};
    char where[INET_ADDRSTRLEN + 8];
    char gw[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &d->gateway, gw, sizeof gw);
    snprintf(where, sizeof where, "%s:%u", gw, d->port);
    int one = 1;
    cleanup_close int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u < 0)
        return ink_err_set(err, errno, "UDP socket");
    /* FREEBIND: the gateway address exists only while some workload's
     * veth does; PKTINFO: the helper checks the veth a query came in on. */
    if (setsockopt(u, IPPROTO_IP, IP_FREEBIND, &one, sizeof one) < 0 ||
        setsockopt(u, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) < 0)
        return ink_err_set(err, errno, "UDP socket options");
    int rcvbuf = 1 << 20; /* bursts of queries while a helper restarts */
    if (setsockopt(u, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
        setsockopt(u, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (bind(u, (struct sockaddr *)&sa, sizeof sa) < 0)
        return ink_err_set(err, errno, "binding %s (UDP)", where);
    cleanup_close int t = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (t < 0)
        return ink_err_set(err, errno, "TCP socket");
    if (setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(t, IPPROTO_IP, IP_FREEBIND, &one, sizeof one) < 0)
        return ink_err_set(err, errno, "TCP socket options");
    if (bind(t, (struct sockaddr *)&sa, sizeof sa) < 0)
        return ink_err_set(err, errno, "binding %s (TCP)", where);
    if (listen(t, 128) < 0)
        return ink_err_set(err, errno, "listen %s", where);
    d->udp_fd = STEAL_FD(u);
    d->tcp_fd = STEAL_FD(t);
    return 0;
}

static void set_pid(ink_dns *d, pid_t pid)
{
    pthread_mutex_lock(&d->mu);
    d->pid = pid;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);
}

/* Ends the helper: EOF on its control socket is its cue; SIGKILL after
 * grace_ms. Returns its wait status. */
static int reap(ink_dns *d, int64_t grace_ms)
{
    pid_t pid = d->pid;
    if (d->ctl_fd >= 0) {
        close(d->ctl_fd);
        d->ctl_fd = -1;
    }
    d->inlen = 0;
    int status = 0;
    int64_t end = ink_mono_ms() + grace_ms;
    for (;;) {
        pid_t w = waitpid(pid, &status, grace_ms > 0 ? WNOHANG : 0);
        if (w == pid || (w < 0 && errno != EINTR))
            break;
        if (w == 0 && ink_mono_ms() >= end) {
            kill(pid, SIGKILL);
            grace_ms = 0; /* wait, blocking */
            continue;
        }
        if (w == 0)
            usleep(10000);
    }
    set_pid(d, 0);
    free(d->last_table);
    d->last_table = NULL;
    d->last_len = 0;
    return status;
}

/* The helper is gone or misbehaves: reap it, say why, start another
 * later. */
static void helper_failed(ink_dns *d, const char *why)
{
    pid_t pid = d->pid;
    int64_t ran = ink_mono_ms() - d->started_ms;
    kill(pid, SIGKILL);
    int status = reap(d, 0);
    char how[160];
    ink_helper_exit_text(status, how, sizeof how);
    if (ran >= STABLE_MS)
        ink_backoff_reset(&d->backoff);
    int64_t delay = ink_backoff_next(&d->backoff);
    d->next_start_ms = ink_mono_ms() + delay;
    LOG_ERROR("workload DNS resolver ended; restarting", "pid", LOG_INT(pid), "why", why, "status",
              how, "ran_ms", LOG_INT(ran), "restart_in_ms", LOG_INT(delay));
}

static int send_all(int fd, const uint8_t *p, size_t n, ink_err *err)
{
    int64_t end = ink_mono_ms() + SEND_TIMEOUT_MS;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return ink_err_set(err, errno, "writing to the resolver helper");
        int64_t left = end - ink_mono_ms();
        if (left <= 0)
            return ink_err_set(err, ETIMEDOUT, "the resolver helper does not read its input");
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        poll(&pfd, 1, (int)left);
    }
    return 0;
}

static int send_frame(ink_dns *d, uint16_t type, const uint8_t *payload, size_t len, ink_err *err)
{
    uint8_t hdr[INK_DNS_CTL_HEADER];
    ink_dns_ctl_header(hdr, type, (uint32_t)len);
    if (send_all(d->ctl_fd, hdr, sizeof hdr, err) < 0)
        return -1;
    return len ? send_all(d->ctl_fd, payload, len, err) : 0;
}

/* A log line from the helper, as printable text. */
static void helper_log(ink_dns *d, const uint8_t *p, size_t n)
{
    if (n < 1)
        return;
    char text[INK_DNS_CTL_HELPER_MAX];
    size_t o = 0;
    for (size_t i = 1; i < n && o + 1 < sizeof text; i++)
        text[o++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    text[o] = '\0';
    switch (p[0]) {
    case INK_LOG_ERROR:
        LOG_ERROR("workload DNS resolver", "pid", LOG_INT(d->pid), "message", text);
        break;
    case INK_LOG_WARN:
        LOG_WARN("workload DNS resolver", "pid", LOG_INT(d->pid), "message", text);
        break;
    case INK_LOG_INFO:
        LOG_INFO("workload DNS resolver", "pid", LOG_INT(d->pid), "message", text);
        break;
    default:
        LOG_DEBUG("workload DNS resolver", "pid", LOG_INT(d->pid), "message", text);
        break;
    }
}

/* Reads and handles what the helper sent. *ready is set on READY; the
 * last error it logged goes to last_error. -1: EOF or a malformed frame
 * (why says which). */
static int read_helper(ink_dns *d, bool *ready, char *last_error, size_t lelen, const char **why)
{
    for (;;) {
        ssize_t r = recv(d->ctl_fd, d->in + d->inlen, sizeof d->in - d->inlen, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            *why = "its control socket closed";
            return -1;
        }
        d->inlen += (size_t)r;
        size_t off = 0;
        while (d->inlen - off >= INK_DNS_CTL_HEADER) {
            uint16_t type;
            uint32_t len;
            ink_err err = {0};
            if (ink_dns_ctl_parse_header(d->in + off, INK_DNS_CTL_HELPER_MAX, &type, &len, &err) <
                0) {
                *why = "it sent a malformed frame";
                return -1;
            }
            if (d->inlen - off - INK_DNS_CTL_HEADER < len)
                break;
            const uint8_t *p = d->in + off + INK_DNS_CTL_HEADER;
            if (type == INK_DNS_MSG_READY) {
                *ready = true;
            } else if (type == INK_DNS_MSG_LOG) {
                helper_log(d, p, len);
                if (len > 1 && p[0] == INK_LOG_ERROR && last_error)
                    snprintf(last_error, lelen, "%.*s", (int)(len - 1), (const char *)p + 1);
            } else if (type == INK_DNS_MSG_ACK && len == 4) {
                uint32_t serial =
                    ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
                LOG_DEBUG("workload DNS table applied by the helper", "serial", LOG_U64(serial),
                          "latest", LOG_U64(d->serial));
                if (serial == d->serial && d->last_table) {
                    d->last_acked = true;
                    pthread_mutex_lock(&d->mu);
                    if (d->sent_req > d->synced_req)
                        d->synced_req = d->sent_req;
                    pthread_cond_broadcast(&d->cond);
                    pthread_mutex_unlock(&d->mu);
                }
            }
            off += INK_DNS_CTL_HEADER + len;
        }
        memmove(d->in, d->in + off, d->inlen - off);
        d->inlen -= off;
    }
}

static int send_config(ink_dns *d, ink_err *err)
{
    cleanup_free uint8_t *p = NULL;
    size_t n;
    if (ink_dns_config_encode(&d->cmsg, &p, &n, err) < 0)
        return -1;
    return send_frame(d, INK_DNS_MSG_CONFIG, p, n, err);
}

static int start_helper(ink_dns *d, ink_err *err)
{
    if (open_sockets(d, err) < 0 || ensure_root_dir(d, err) < 0)
        return -1;
    char helper[PATH_MAX];
    if (find_helper(d, helper, sizeof helper, err) < 0)
        return -1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return ink_err_set(err, errno, "socketpair");
    cleanup_close int mine = sv[0];
    cleanup_close int theirs = sv[1];
    char nums[6][24];
    snprintf(nums[0], sizeof nums[0], "%d", theirs);
    snprintf(nums[1], sizeof nums[1], "%d", d->udp_fd);
    snprintf(nums[2], sizeof nums[2], "%d", d->tcp_fd);
    snprintf(nums[3], sizeof nums[3], "%d", (int)getpid());
    snprintf(nums[4], sizeof nums[4], "%u", (unsigned)d->uid);
    snprintf(nums[5], sizeof nums[5], "%u", (unsigned)d->gid);
    /* clang-format off */
    char *const argv[] = {
        helper,
        "--control-fd", nums[0],
        "--udp-fd", nums[1],
        "--tcp-fd", nums[2],
        "--parent", nums[3],
        "--uid", nums[4],
        "--gid", nums[5],
        "--root", d->root_dir,
        NULL,
    };
    /* clang-format on */
    const int keep[] = {theirs, d->udp_fd, d->tcp_fd};
    pid_t pid;
    if (ink_helper_spawn("resolver helper", helper, argv, keep, INK_ARRAY_LEN(keep), &pid, err) < 0)
        return -1;
    close(theirs);
    theirs = -1;
    d->ctl_fd = STEAL_FD(mine);
    d->started_ms = ink_mono_ms();
    set_pid(d, pid);

    /* READY means the helper confined itself; anything else before it
     * is the reason it did not. */
    bool ready = false;
    char last_error[INK_DNS_CTL_HELPER_MAX] = "";
    const char *why = "it did not say it was ready in time";
    int64_t end = ink_mono_ms() + READY_TIMEOUT_MS;
    while (!ready) {
        int64_t left = end - ink_mono_ms();
        struct pollfd pfd = {.fd = d->ctl_fd, .events = POLLIN};
        if (left <= 0 || (poll(&pfd, 1, (int)left) < 0 && errno != EINTR))
            break;
        if (read_helper(d, &ready, last_error, sizeof last_error, &why) < 0)
            break;
    }
    if (!ready) {
        kill(pid, SIGKILL);
        int status = reap(d, 0);
        char how[160];
        ink_helper_exit_text(status, how, sizeof how);
        return ink_err_set(err, 0, "%s %s: %s%s%s", helper, how, why, last_error[0] ? ": " : "",
                           last_error);
    }
    if (send_config(d, err) < 0) {
        kill(pid, SIGKILL);
        reap(d, 0);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ table */

static int push_table(ink_dns *d, ink_err *err)
{
    pthread_mutex_lock(&d->mu);
    uint64_t req = d->sync_req;
    d->dirty = false;
    pthread_mutex_unlock(&d->mu);
    ink_dns_workload *w = NULL;
    size_t n = d->collect ? d->collect(d->arg, &w) : 0;
    uint8_t *p = NULL;
    size_t len = 0;
    int rc = ink_dns_table_encode(w, n, d->serial + 1, &p, &len, err);
    for (size_t i = 0; i < n; i++)
        free(w[i].forward_names);
    free(w);
    if (rc < 0)
        return -1;
    /* The same names as last time (the serial aside): nothing to send. */
    if (d->last_table && d->last_len == len && memcmp(d->last_table + 4, p + 4, len - 4) == 0) {
        free(p);
        pthread_mutex_lock(&d->mu);
        if (d->last_acked && req > d->synced_req)
            d->synced_req = req;
        else
            d->sent_req = req;
        pthread_cond_broadcast(&d->cond);
        pthread_mutex_unlock(&d->mu);
        return 0;
    }
    d->serial++;
    rc = send_frame(d, INK_DNS_MSG_TABLE, p, len, err);
    free(d->last_table);
    d->last_table = p;
    d->last_len = len;
    d->last_acked = false;
    pthread_mutex_lock(&d->mu);
    d->sent_req = req;
    pthread_mutex_unlock(&d->mu);
    LOG_DEBUG("workload DNS table sent", "serial", LOG_U64(d->serial), "workloads", LOG_U64(n),
              "bytes", LOG_U64(len));
    return rc;
}

/* When resolv.conf names the upstreams: read again when it changed. 1:
 * the configuration changed. */
static int refresh_upstreams(ink_dns *d)
{
    if (d->upstream)
        return 0;
    struct stat st;
    bool have = stat(d->resolv_conf, &st) == 0;
    bool same = have ? st.st_mtim.tv_sec == d->resolv_mtime.tv_sec &&
                           st.st_mtim.tv_nsec == d->resolv_mtime.tv_nsec
                     : true;
    if (d->resolv_read && have == d->have_resolv_mtime && same)
        return 0;
    d->resolv_read = true;
    d->have_resolv_mtime = have;
    if (have)
        d->resolv_mtime = st.st_mtim;
    ink_dns_config_msg c = d->cmsg;
    read_resolv_conf(d, &c);
    if (c.nup == d->cmsg.nup && memcmp(c.up, d->cmsg.up, sizeof c.up) == 0)
        return 0;
    d->cmsg = c;
    char ups[512];
    upstream_text(&c, ups, sizeof ups);
    LOG_INFO("workload DNS upstreams", "from", d->resolv_conf, "upstream", ups);
    return 1;
}

/* ------------------------------------------------------------ thread */

static void *dns_main(void *arg)
{
    ink_dns *d = arg;
    d->next_start_ms = ink_mono_ms();
    for (;;) {
        pthread_mutex_lock(&d->mu);
        bool stopping = d->stopping, dirty = d->dirty;
        pthread_mutex_unlock(&d->mu);
        if (stopping)
            break;
        int64_t now = ink_mono_ms();
        ink_err err = {0};
        if (!d->pid && now >= d->next_start_ms) {
            refresh_upstreams(d);
            if (start_helper(d, &err) < 0) {
                int64_t delay = ink_backoff_next(&d->backoff);
                d->next_start_ms = now + delay;
                d->failures++;
                LOG_ERROR("workload DNS resolver not running: workloads cannot resolve names; "
                          "retrying",
                          "error", err.msg, "attempt", LOG_INT(d->failures), "retry_in_ms",
                          LOG_INT(delay));
            } else {
                char gw[INET_ADDRSTRLEN], ups[512];
                inet_ntop(AF_INET, &d->gateway, gw, sizeof gw);
                upstream_text(&d->cmsg, ups, sizeof ups);
                LOG_INFO("workload DNS resolver serving", "address", gw, "port", LOG_INT(d->port),
                         "pid", LOG_INT(d->pid), "user", d->user_desc, "upstream",
                         ups[0] ? ups : "(none)");
                d->failures = 0;
                dirty = true;
            }
        }
        if (d->pid && (dirty || now >= d->next_refresh_ms)) {
            d->next_refresh_ms = ink_mono_ms() + d->refresh_ms;
            /* One stat of resolv.conf: its nameservers are the upstreams
             * unless dns_upstream names them. */
            if (refresh_upstreams(d) > 0 && send_config(d, &err) < 0) {
                helper_failed(d, err.msg);
                continue;
            }
            if (push_table(d, &err) < 0) {
                if (err.errnum == 0) {
                    /* Could not be encoded: nothing the helper did. */
                    LOG_ERROR("workload DNS table not built", "error", err.msg);
                } else {
                    helper_failed(d, err.msg);
                    continue;
                }
            }
        }
        int64_t wake = d->pid ? d->next_refresh_ms : d->next_start_ms;
        int64_t wait = wake - ink_mono_ms();
        struct pollfd p[2] = {{.fd = d->wake_fd, .events = POLLIN},
                              {.fd = d->pid ? d->ctl_fd : -1, .events = POLLIN}};
        int r = poll(p, 2, wait < 0 ? 0 : wait > 60000 ? 60000 : (int)wait);
        if (r < 0)
            continue;
        if (p[0].revents) {
            uint64_t v;
            ssize_t rd = read(d->wake_fd, &v, sizeof v);
            (void)rd;
        }
        if (d->pid && p[1].revents) {
            bool ready = false;
            const char *why = NULL;
            if (read_helper(d, &ready, NULL, 0, &why) < 0)
                helper_failed(d, why);
        }
    }
    if (d->pid) {
        pid_t pid = d->pid;
        int status = reap(d, STOP_GRACE_MS);
        char how[160];
        ink_helper_exit_text(status, how, sizeof how);
        LOG_INFO("workload DNS resolver stopped", "pid", LOG_INT(pid), "status", how);
    }
    return NULL;
}

/* ------------------------------------------------------------ API */

static void wake(ink_dns *d)
{
    uint64_t one = 1;
    ssize_t w = write(d->wake_fd, &one, sizeof one);
    (void)w;
}

void ink_dns_changed(ink_dns *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    d->dirty = true;
    pthread_mutex_unlock(&d->mu);
    wake(d);
}

pid_t ink_dns_helper_pid(ink_dns *d)
{
    pthread_mutex_lock(&d->mu);
    pid_t pid = d->pid;
    pthread_mutex_unlock(&d->mu);
    return pid;
}

int ink_dns_sync(ink_dns *d, int64_t timeout_ms)
{
    struct timespec ts;
    ink_realtime_after(timeout_ms, &ts);
    pthread_mutex_lock(&d->mu);
    uint64_t req = ++d->sync_req;
    d->dirty = true;
    wake(d);
    int rc = 0;
    while (d->synced_req < req && rc == 0)
        rc = pthread_cond_timedwait(&d->cond, &d->mu, &ts);
    bool ok = d->synced_req >= req;
    pthread_mutex_unlock(&d->mu);
    return ok ? 0 : -1;
}

/* Frees what ink_dns_start made (the thread is not running). */
static void dns_free(ink_dns *d)
{
    if (d->udp_fd >= 0)
        close(d->udp_fd);
    if (d->tcp_fd >= 0)
        close(d->tcp_fd);
    if (d->wake_fd >= 0)
        close(d->wake_fd);
    free(d->last_table);
    free(d->workload_cidr);
    free(d->upstream);
    free(d->resolv_conf);
    free(d->helper);
    free(d->root_dir);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cond);
    free(d);
}

void ink_dns_stop(ink_dns *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    d->stopping = true;
    pthread_mutex_unlock(&d->mu);
    wake(d);
    pthread_join(d->thread, NULL);
    dns_free(d);
}

int ink_dns_start(const ink_dns_config *cfg, ink_dns **out, ink_err *err)
{
    ink_dns *d = ink_xcalloc(1, sizeof *d);
    d->udp_fd = d->tcp_fd = d->ctl_fd = -1;
    d->wake_fd = -1;
    d->port = cfg->port ? cfg->port : 53;
    d->refresh_ms = cfg->refresh_ms > 0 ? cfg->refresh_ms : 5000;
    d->collect = cfg->collect;
    d->arg = cfg->arg;
    d->workload_cidr = ink_xstrdup(cfg->workload_cidr ? cfg->workload_cidr : "");
    d->upstream = cfg->upstream && *cfg->upstream ? ink_xstrdup(cfg->upstream) : NULL;
    d->resolv_conf = ink_xstrdup(cfg->resolv_conf ? cfg->resolv_conf : "/etc/resolv.conf");
    d->helper = cfg->helper && *cfg->helper ? ink_xstrdup(cfg->helper) : NULL;
    d->root_dir = ink_xasprintf("%s/root", cfg->run_dir ? cfg->run_dir : "/run/ink/dns");
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cond, NULL);
    ink_backoff_init(&d->backoff, RESTART_MIN_MS, RESTART_MAX_MS, 2.0, 0.2);
    if (ink_dns_gateway(d->workload_cidr, &d->gateway, err) < 0)
        goto fail;
    d->net.s_addr = htonl(ntohl(d->gateway.s_addr) - 1);
    d->prefix = (uint8_t)atoi(strchr(d->workload_cidr, '/') + 1);
    d->cmsg.net = d->net;
    d->cmsg.prefix = d->prefix;
    if (d->upstream && parse_upstream_list(d, d->upstream, &d->cmsg, err) < 0)
        goto fail;
    if (resolve_user(d, cfg->user, err) < 0)
        goto fail;
    d->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (d->wake_fd < 0) {
        ink_err_set(err, errno, "eventfd");
        goto fail;
    }
    int rc = pthread_create(&d->thread, NULL, dns_main, d);
    if (rc != 0) {
        ink_err_set(err, rc, "starting the resolver thread");
        goto fail;
    }
    *out = d;
    return 0;
fail:
    dns_free(d);
    return ink_err_wrap(err, "workload DNS");
}
