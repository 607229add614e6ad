/* ink-dns: the node resolver's unprivileged half (service.c starts it).
 * It is a program of its own, as ink-unpack is: it starts from a fresh
 * process image (nothing of the many-threaded agent, no locks held by
 * other threads) and maps only what it needs (libc, libseccomp, libcap;
 * no gRPC, TLS or JSON next to hostile packets).
 *
 * It gets its sockets already bound, by number, confines itself
 * (confine.c), says READY on the control socket and serves (server.c)
 * until the agent closes that socket or dies (PR_SET_PDEATHSIG). Errors
 * before it serves go to the agent as a LOG frame and to stderr; the exit
 * status is 0 after a clean end, 1 on an error. It never returns through
 * exit() handlers: under the seccomp filter they could make a forbidden
 * call. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dns_internal.h"
#include "log.h"

typedef struct args {
    int ctl_fd, udp_fd, tcp_fd;
    pid_t parent;
    uid_t uid;
    gid_t gid;
    const char *root;
} args;

static int parse_num(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

/* A descriptor we were given: open, and a socket of the expected type. */
static int parse_sock(const char *name, const char *s, int type, int *out, ink_err *err)
{
    uint64_t v;
    if (parse_num(s, INT32_MAX, &v) < 0 || v < 3)
        return ink_err_set(err, 0, "%s: bad descriptor \"%s\"", name, s ? s : "");
    struct stat st;
    if (fstat((int)v, &st) < 0)
        return ink_err_set(err, errno, "%s %d", name, (int)v);
    int t = 0;
    socklen_t tl = sizeof t;
    if (!S_ISSOCK(st.st_mode) || getsockopt((int)v, SOL_SOCKET, SO_TYPE, &t, &tl) < 0 || t != type)
        return ink_err_set(err, 0, "%s %d: not the expected socket", name, (int)v);
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, args *a, ink_err *err)
{
    *a = (args){.ctl_fd = -1, .udp_fd = -1, .tcp_fd = -1};
    unsigned seen = 0;
    for (int i = 1; i < argc; i += 2) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return ink_err_set(err, 0, "%s: missing value", k);
        uint64_t n = 0;
        int rc = 0;
        unsigned bit;
        if (strcmp(k, "--control-fd") == 0) {
            bit = 1u << 0;
            rc = parse_sock(k, v, SOCK_STREAM, &a->ctl_fd, err);
        } else if (strcmp(k, "--udp-fd") == 0) {
            bit = 1u << 1;
            rc = parse_sock(k, v, SOCK_DGRAM, &a->udp_fd, err);
        } else if (strcmp(k, "--tcp-fd") == 0) {
            bit = 1u << 2;
            rc = parse_sock(k, v, SOCK_STREAM, &a->tcp_fd, err);
        } else if (strcmp(k, "--parent") == 0) {
            bit = 1u << 3;
            if (parse_num(v, INT32_MAX, &n) < 0 || n < 1)
                rc = ink_err_set(err, 0, "%s: bad pid \"%s\"", k, v);
            a->parent = (pid_t)n;
        } else if (strcmp(k, "--uid") == 0) {
            bit = 1u << 4;
            if (parse_num(v, UINT32_MAX - 1, &n) < 0)
                rc = ink_err_set(err, 0, "%s: bad uid \"%s\"", k, v);
            a->uid = (uid_t)n;
        } else if (strcmp(k, "--gid") == 0) {
            bit = 1u << 5;
            if (parse_num(v, UINT32_MAX - 1, &n) < 0)
                rc = ink_err_set(err, 0, "%s: bad gid \"%s\"", k, v);
            a->gid = (gid_t)n;
        } else if (strcmp(k, "--root") == 0) {
            bit = 1u << 6;
            a->root = v;
        } else {
            return ink_err_set(err, 0, "unknown option %s", k);
        }
        if (rc < 0)
            return -1;
        seen |= bit;
    }
    if (seen != (1u << 7) - 1)
        return ink_err_set(err, 0, "missing options (given: 0x%x)", seen);
    return 0;
}

/* The control descriptor from argv, before (or without) a full parse. */
static int find_ctl_fd(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        uint64_t v;
        struct stat st;
        if (strcmp(argv[i], "--control-fd") == 0 && parse_num(argv[i + 1], INT32_MAX, &v) == 0 &&
            v >= 3 && fstat((int)v, &st) == 0 && S_ISSOCK(st.st_mode))
            return (int)v;
    }
    return -1;
}

static void send_frame(int fd, uint16_t type, const void *payload, size_t len)
{
    uint8_t frame[INK_DNS_CTL_HEADER + INK_DNS_CTL_HELPER_MAX];
    if (fd < 0)
        return;
    if (len > INK_DNS_CTL_HELPER_MAX)
        len = INK_DNS_CTL_HELPER_MAX;
    ink_dns_ctl_header(frame, type, (uint32_t)len);
    if (len)
        memcpy(frame + INK_DNS_CTL_HEADER, payload, len);
    ssize_t w = send(fd, frame, INK_DNS_CTL_HEADER + len, MSG_NOSIGNAL);
    (void)w;
}

static _Noreturn void fail(int ctl_fd, const char *what, const ink_err *err)
{
    uint8_t msg[INK_DNS_CTL_HELPER_MAX];
    msg[0] = INK_LOG_ERROR;
    int n = snprintf((char *)msg + 1, sizeof msg - 1, "%s: %s", what, err->msg);
    size_t len = 1 + (n < 0 ? 0 : (size_t)n < sizeof msg - 1 ? (size_t)n : sizeof msg - 2);
    send_frame(ctl_fd, INK_DNS_MSG_LOG, msg, len);
    /* Only ink-agent runs this; a person who does gets the reason. */
    dprintf(2, "%s: %s: %s\n", INK_DNS_HELPER_NAME, what, err->msg);
    _exit(1);
}

int main(int argc, char **argv)
{
    ink_err err = {0};
    args a;
    if (parse_args(argc, argv, &a, &err) < 0)
        fail(find_ctl_fd(argc, argv), "arguments", &err);
    /* Die with the agent; and it may already be gone. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
        ink_err_set(&err, errno, "PR_SET_PDEATHSIG");
        fail(a.ctl_fd, "starting", &err);
    }
    if (getppid() != a.parent) {
        ink_err_set(&err, 0, "the agent (pid %d) is gone", (int)a.parent);
        fail(a.ctl_fd, "starting", &err);
    }
    /* Created before confinement: the filter has no epoll_create. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        ink_err_set(&err, errno, "epoll_create1");
        fail(a.ctl_fd, "starting", &err);
    }
    const int keep[] = {a.ctl_fd, a.udp_fd, a.tcp_fd, ep};
    ink_dns_confine_opts co = {
        .root = a.root, .uid = a.uid, .gid = a.gid, .keep = keep, .nkeep = 4};
    if (ink_dns_confine(&co, &err) < 0)
        fail(a.ctl_fd, "confining the resolver", &err);
    send_frame(a.ctl_fd, INK_DNS_MSG_READY, NULL, 0);
    ink_dns_server_opts so = {
        .udp_fd = a.udp_fd, .tcp_fd = a.tcp_fd, .ctl_fd = a.ctl_fd, .epoll_fd = ep};
    if (ink_dns_server_run(&so, &err) < 0)
        fail(a.ctl_fd, "serving", &err);
    _exit(0);
}
