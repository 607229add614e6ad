/* Drives node-agent/metrics/traffic.c from tests/integration/traffic_test.sh,
 * one command per process, so every call also opens the pinned map again
 * as a restarted agent does:
 *
 *   traffic_driver --pin-dir DIR open|list
 *   traffic_driver --pin-dir DIR attach IFNAME
 *   traffic_driver --pin-dir DIR detach IFNAME|- [IFINDEX]
 *   traffic_driver --pin-dir DIR read IFINDEX
 *   traffic_driver now
 *   traffic_driver udp SEND_NETNS RECV_NETNS ADDR PORT COUNT SIZE
 *   traffic_driver tcp SEND_NETNS RECV_NETNS ADDR PORT BYTES
 *
 * Prints key=value lines. `read` of an ifindex without an entry prints
 * "ifindex=N none" and exits 3; an open that fails prints the agent's
 * message for it and exits 1. There is no default pin directory: a test
 * must never touch /sys/fs/bpf/ink of a real installation.
 *
 * udp/tcp move traffic between two network namespaces (files such as
 * /run/netns/NAME): a receiver thread in RECV_NETNS bound to ADDR:PORT, a
 * sender thread in SEND_NETNS. udp sends COUNT datagrams of SIZE bytes of
 * payload; tcp sends BYTES on one connection, then waits until the
 * receiver has read them all and closed, so the connection is over (FIN
 * both ways, ACKed) when it prints "sent=N retrans_bytes=R received=M"
 * (R: payload the sender's TCP sent again, from TCP_INFO; 0 for udp). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_retrans */
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "traffic.h"
#include "util.h"

static int usage(void)
{
    fprintf(stderr, "usage: traffic_driver --pin-dir DIR open|list|attach IF|detach IF|- [INDEX]|"
                    "read INDEX\n"
                    "       traffic_driver now\n"
                    "       traffic_driver udp SEND_NETNS RECV_NETNS ADDR PORT COUNT SIZE\n"
                    "       traffic_driver tcp SEND_NETNS RECV_NETNS ADDR PORT BYTES\n");
    return 2;
}

static void print_counters(unsigned ifindex, const ink_traffic_counters *c)
{
    printf("ifindex=%u tx_bytes=%llu tx_packets=%llu rx_bytes=%llu rx_packets=%llu "
           "last_tx_ns=%llu last_rx_ns=%llu now_ns=%lld\n",
           ifindex, (unsigned long long)c->tx_bytes, (unsigned long long)c->tx_packets,
           (unsigned long long)c->rx_bytes, (unsigned long long)c->rx_packets,
           (unsigned long long)c->last_tx_ns, (unsigned long long)c->last_rx_ns,
           (long long)ink_mono_ns());
}

static int counters_cmd(const char *pin_dir, int argc, char **argv)
{
    const char *cmd = argv[0];
    ink_err err = {0};
    ink_traffic *t = NULL;
    if (ink_traffic_open(pin_dir, &t, &err) < 0) {
        /* What the agent will log before going on without them. */
        fprintf(stderr,
                "traffic_driver: eBPF traffic counters unavailable: %s; metrics are "
                "cgroup-only\n",
                err.msg);
        return 1;
    }
    int rc = 0;
    if (strcmp(cmd, "open") == 0 && argc == 1) {
        printf("pin=%s reused=%d\n", ink_traffic_pin_path(t), ink_traffic_reused(t));
    } else if (strcmp(cmd, "attach") == 0 && argc == 2) {
        unsigned idx = 0;
        if (ink_traffic_attach(t, argv[1], &idx, &err) < 0)
            rc = 1;
        else
            printf("ifname=%s ifindex=%u reused=%d\n", argv[1], idx, ink_traffic_reused(t));
    } else if (strcmp(cmd, "detach") == 0 && (argc == 2 || argc == 3)) {
        const char *ifname = strcmp(argv[1], "-") == 0 ? NULL : argv[1];
        unsigned idx = argc == 3 ? (unsigned)strtoul(argv[2], NULL, 10) : 0;
        if (ink_traffic_detach(t, ifname, idx, &err) < 0)
            rc = 1;
        else
            printf("detached=%s ifindex=%u\n", argv[1], idx);
    } else if (strcmp(cmd, "read") == 0 && argc == 2) {
        unsigned idx = (unsigned)strtoul(argv[1], NULL, 10);
        ink_traffic_counters c;
        int r = ink_traffic_read(t, idx, &c, &err);
        if (r < 0)
            rc = 1;
        else if (r == 0)
            printf("ifindex=%u none\n", idx), rc = 3;
        else
            print_counters(idx, &c);
    } else if (strcmp(cmd, "list") == 0 && argc == 1) {
        ink_traffic_entry *list = NULL;
        size_t n = 0;
        if (ink_traffic_list(t, &list, &n, &err) < 0)
            rc = 1;
        for (size_t i = 0; i < n; i++)
            print_counters(list[i].ifindex, &list[i].c);
        free(list);
    } else {
        rc = usage();
    }
    if (rc == 1)
        fprintf(stderr, "traffic_driver: %s\n", err.msg);
    ink_traffic_close(t);
    return rc;
}

/* ------------------------------------------------------------- traffic */

typedef struct flow {
    bool tcp;
    const char *send_ns, *recv_ns;
    struct sockaddr_in addr;
    unsigned long count; /* datagrams, or bytes (tcp) */
    size_t size;         /* datagram payload */
    sem_t ready;
    int recv_rc;
    char recv_err[256];
    unsigned long received; /* datagrams, or bytes */
} flow;

static int enter_netns(const char *path)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 || setns(fd, CLONE_NEWNET) < 0 ? -1 : 0;
}

/* Waits up to ms for fd to be readable: 1, 0 on timeout. */
static int wait_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    return r > 0;
}

static void *receiver(void *arg)
{
    flow *f = arg;
    int one = 1, big = 8 << 20;
    cleanup_close int fd = -1;
    if (enter_netns(f->recv_ns) < 0 ||
        (fd = socket(AF_INET, (f->tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&f->addr, sizeof f->addr) < 0 ||
        (f->tcp && listen(fd, 1) < 0)) {
        snprintf(f->recv_err, sizeof f->recv_err, "receiver in %s: %s", f->recv_ns,
                 strerror(errno));
        f->recv_rc = -1;
        sem_post(&f->ready);
        return NULL;
    }
    /* Room for the whole burst: what the socket would drop is counted on
     * the veth anyway, but the receive count should match too. */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    sem_post(&f->ready);
    char *buf = ink_xmalloc(1 << 16);
    if (!f->tcp) {
        while (f->received < f->count && wait_readable(fd, 2000))
            if (recv(fd, buf, 1 << 16, 0) >= 0)
                f->received++;
    } else if (wait_readable(fd, 5000)) {
        cleanup_close int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        ssize_t r;
        while (c >= 0 && wait_readable(c, 5000) && (r = read(c, buf, 1 << 16)) > 0)
            f->received += (unsigned long)r;
    }
    free(buf);
    return NULL;
}

static int sender(flow *f)
{
    if (enter_netns(f->send_ns) < 0)
        return fprintf(stderr, "traffic_driver: entering %s: %s\n", f->send_ns, strerror(errno)),
               -1;
    cleanup_close int fd = socket(AF_INET, (f->tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 10};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        connect(fd, (struct sockaddr *)&f->addr, sizeof f->addr) < 0)
        return fprintf(stderr, "traffic_driver: connecting: %s\n", strerror(errno)), -1;
    unsigned long sent = 0;
    if (!f->tcp) {
        cleanup_free char *buf = ink_xcalloc(1, f->size);
        for (; sent < f->count; sent++)
            if (send(fd, buf, f->size, 0) != (ssize_t)f->size)
                return fprintf(stderr, "traffic_driver: send: %s\n", strerror(errno)), -1;
    } else {
        cleanup_free char *buf = ink_xcalloc(1, 1 << 16);
        while (sent < f->count) {
            size_t n = f->count - sent < (1 << 16) ? f->count - sent : (1 << 16);
            ssize_t w = write(fd, buf, n);
            if (w <= 0)
                return fprintf(stderr, "traffic_driver: write: %s\n", strerror(errno)), -1;
            sent += (unsigned long)w;
        }
        /* Our FIN, then theirs: read returns 0 once the receiver closed. */
        char c;
        if (shutdown(fd, SHUT_WR) < 0 || read(fd, &c, 1) != 0)
            return fprintf(stderr, "traffic_driver: closing: %s\n", strerror(errno)), -1;
    }
    /* Payload TCP sent again is on the wire (and counted) twice. */
    struct tcp_info ti = {0};
    socklen_t tlen = sizeof ti;
    if (f->tcp && getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tlen) < 0)
        return fprintf(stderr, "traffic_driver: TCP_INFO: %s\n", strerror(errno)), -1;
    printf("sent=%lu retrans_bytes=%llu ", sent, (unsigned long long)ti.tcpi_bytes_retrans);
    return 0;
}

static void *sender_main(void *arg)
{
    return (void *)(intptr_t)sender(arg);
}

static int flow_cmd(bool tcp, int argc, char **argv)
{
    if (argc != (tcp ? 6 : 7))
        return usage();
    flow f = {.tcp = tcp, .send_ns = argv[1], .recv_ns = argv[2]};
    f.addr.sin_family = AF_INET;
    f.addr.sin_port = htons((uint16_t)atoi(argv[4]));
    f.count = strtoul(argv[5], NULL, 10);
    f.size = tcp ? 0 : strtoul(argv[6], NULL, 10);
    if (inet_pton(AF_INET, argv[3], &f.addr.sin_addr) != 1 || f.count == 0 ||
        (!tcp && (f.size == 0 || f.size > 65000)))
        return usage();
    sem_init(&f.ready, 0, 0);
    pthread_t rt;
    if (pthread_create(&rt, NULL, receiver, &f) != 0)
        return 1;
    sem_wait(&f.ready);
    int rc = 0;
    /* The sender's namespace is entered by a thread of its own, too: the
     * main thread stays where it was. */
    if (f.recv_rc == 0) {
        pthread_t st;
        if (pthread_create(&st, NULL, sender_main, &f) != 0)
            rc = -1;
        else {
            void *ret = NULL;
            pthread_join(st, &ret);
            rc = (int)(intptr_t)ret;
        }
    }
    pthread_join(rt, NULL);
    sem_destroy(&f.ready);
    if (f.recv_rc < 0) {
        fprintf(stderr, "traffic_driver: %s\n", f.recv_err);
        return 1;
    }
    printf("received=%lu\n", f.received);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *pin_dir = NULL;
    int i = 1;
    if (argc > 2 && strcmp(argv[1], "--pin-dir") == 0) {
        pin_dir = argv[2];
        i = 3;
    }
    if (i >= argc)
        return usage();
    ink_log_init("traffic_driver", INK_LOG_INFO, INK_LOG_LOGFMT);
    const char *cmd = argv[i];
    if (strcmp(cmd, "now") == 0) {
        printf("now_ns=%lld\n", (long long)ink_mono_ns());
        return 0;
    }
    if (strcmp(cmd, "udp") == 0 || strcmp(cmd, "tcp") == 0)
        return flow_cmd(strcmp(cmd, "tcp") == 0, argc - i, argv + i);
    if (!pin_dir)
        return usage();
    return counters_cmd(pin_dir, argc - i, argv + i);
}
