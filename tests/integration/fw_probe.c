/* Real connection attempts for tests/integration/firewall_test.sh:
 *
 *   fw_probe tcp ADDR PORT [TIMEOUT_MS]    prints connected | refused | timeout
 *   fw_probe udp ADDR PORT [TIMEOUT_MS]    sends "ping", prints answered | timeout
 *   fw_probe serve PORT LOGFILE            TCP and UDP on PORT (all addresses):
 *                                          answers "pong", logs "tcp|udp PEER" lines
 *
 * Exit status 0 whatever the outcome (the script compares the word), 2 on
 * usage or setup errors. A firewall that drops shows as "timeout", one
 * that lets the packet through to a closed port as "refused". */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int usage(void)
{
    fprintf(stderr, "usage: fw_probe tcp|udp ADDR PORT [TIMEOUT_MS] | serve PORT LOGFILE\n");
    return 2;
}

static int probe_tcp(const struct sockaddr_in *sa, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 2;
    const char *word = "timeout";
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0) {
        word = "connected";
    } else if (errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, timeout_ms) == 1) {
            int soerr = 0;
            socklen_t len = sizeof soerr;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
            word = soerr == 0              ? "connected"
                   : soerr == ECONNREFUSED ? "refused"
                   : soerr == ETIMEDOUT    ? "timeout"
                                           : "unreachable";
        }
    } else {
        word = errno == ECONNREFUSED ? "refused" : errno == EPERM ? "timeout" : "unreachable";
    }
    close(fd);
    printf("%s\n", word);
    return 0;
}

static int probe_udp(const struct sockaddr_in *sa, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 2;
    const char *word = "timeout";
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0 && send(fd, "ping", 4, 0) == 4) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char buf[16];
        if (poll(&p, 1, timeout_ms) == 1 && recv(fd, buf, sizeof buf, 0) > 0)
            word = "answered";
    }
    close(fd);
    printf("%s\n", word);
    return 0;
}

static void log_peer(const char *path, const char *proto, const struct sockaddr_in *peer)
{
    FILE *f = fopen(path, "a");
    if (!f)
        return;
    char a[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &peer->sin_addr, a, sizeof a);
    fprintf(f, "%s %s\n", proto, a);
    fclose(f);
}

static int serve(int port, const char *logfile)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1;
    int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (t < 0 || u < 0)
        return 2;
    setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(u, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
    if (bind(t, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(t, 64) < 0 ||
        bind(u, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("fw_probe serve");
        return 2;
    }
    for (;;) {
        struct pollfd p[2] = {{.fd = t, .events = POLLIN}, {.fd = u, .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            return 2;
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        if (p[0].revents) {
            int c = accept4(t, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
            if (c >= 0) {
                log_peer(logfile, "tcp", &peer);
                ssize_t w = write(c, "pong\n", 5);
                (void)w;
                close(c);
            }
        }
        if (p[1].revents) {
            /* Answer from the address that was asked (the host has
             * several): else the reply's source differs and conntrack on
             * the way back does not know it. */
            char buf[64];
            char cbuf[CMSG_SPACE(sizeof(struct in_pktinfo))];
            struct iovec iov = {buf, sizeof buf};
            struct msghdr mh = {.msg_name = &peer,
                                .msg_namelen = sizeof peer,
                                .msg_iov = &iov,
                                .msg_iovlen = 1,
                                .msg_control = cbuf,
                                .msg_controllen = sizeof cbuf};
            ssize_t n = recvmsg(u, &mh, 0);
            if (n > 0) {
                log_peer(logfile, "udp", &peer);
                iov = (struct iovec){"pong", 4};
                mh.msg_iov = &iov;
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                if (c && c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                    struct in_pktinfo *pi = (struct in_pktinfo *)CMSG_DATA(c);
                    pi->ipi_spec_dst = pi->ipi_addr;
                    pi->ipi_ifindex = 0;
                } else {
                    mh.msg_control = NULL;
                    mh.msg_controllen = 0;
                }
                sendmsg(u, &mh, 0);
            }
        }
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "serve") == 0)
        return serve(atoi(argv[2]), argv[3]);
    if (argc < 4 || argc > 5)
        return usage();
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1)
        return usage();
    int timeout = argc == 5 ? atoi(argv[4]) : 1000;
    if (strcmp(argv[1], "tcp") == 0)
        return probe_tcp(&sa, timeout);
    if (strcmp(argv[1], "udp") == 0)
        return probe_udp(&sa, timeout);
    return usage();
}
