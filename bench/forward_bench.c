/* bench/forward: the published-port forwarder (node-agent/net/forward.c)
 * against direct loopback TCP, in one process: bulk throughput (client ->
 * sink, acknowledged at EOF) over 1 and 8 parallel connections, and
 * connection setup latency (connect + a 1-byte round trip).
 *
 *   forward_bench [MiB per run] [runs]     (defaults 2048 and 5)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "forward.h"
#include "util.h"

#define CHUNK (256 * 1024)
#define SETUPS 1000

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ------------------------------------------------------------- servers */

typedef struct server {
    int lfd;
    uint16_t port;
    int pong; /* 1: answer one byte and close; 0: sink, acknowledge EOF */
    pthread_t thread;
} server;

static void *sink_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = ink_xmalloc(CHUNK);
    while (read(fd, buf, CHUNK) > 0)
        ;
    if (write(fd, "k", 1) != 1)
        perror("sink ack");
    close(fd);
    free(buf);
    return NULL;
}

static void *server_main(void *arg)
{
    server *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL; /* the listener was shut down */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (s->pong) {
            char c;
            if (read(fd, &c, 1) == 1 && write(fd, &c, 1) != 1)
                perror("pong");
            close(fd);
            continue;
        }
        pthread_t t;
        if (pthread_create(&t, NULL, sink_conn, (void *)(intptr_t)fd) != 0)
            die("pthread_create");
        pthread_detach(t);
    }
}

static void server_start(server *s, int pong)
{
    s->pong = pong;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(s->lfd, 512) < 0 || getsockname(s->lfd, (struct sockaddr *)&sa, &len) < 0)
        die("server");
    s->port = ntohs(sa.sin_port);
    if (pthread_create(&s->thread, NULL, server_main, s) != 0)
        die("pthread_create");
}

static void server_stop(server *s)
{
    shutdown(s->lfd, SHUT_RDWR); /* wakes accept() */
    pthread_join(s->thread, NULL);
    close(s->lfd);
}

static int dial(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* ---------------------------------------------------------- throughput */

typedef struct job {
    uint16_t port;
    uint64_t bytes;
    const char *buf;
} job;

static void *send_job(void *arg)
{
    job *j = arg;
    int fd = dial(j->port);
    for (uint64_t left = j->bytes; left;) {
        ssize_t w = write(fd, j->buf, left < CHUNK ? (size_t)left : CHUNK);
        if (w <= 0)
            die("write");
        left -= (uint64_t)w;
    }
    shutdown(fd, SHUT_WR);
    char c;
    if (read(fd, &c, 1) != 1) /* the sink has read everything */
        die("ack");
    close(fd);
    return NULL;
}

/* MB/s (10^6 bytes per second) for total bytes over conns connections. */
static double throughput(uint16_t port, int conns, uint64_t total, const char *buf)
{
    pthread_t t[8];
    job j = {port, total / (uint64_t)conns, buf};
    int64_t start = ink_mono_ns();
    for (int i = 0; i < conns; i++)
        if (pthread_create(&t[i], NULL, send_job, &j) != 0)
            die("pthread_create");
    for (int i = 0; i < conns; i++)
        pthread_join(t[i], NULL);
    double secs = (double)(ink_mono_ns() - start) / 1e9;
    return (double)(j.bytes * (uint64_t)conns) / secs / 1e6;
}

/* -------------------------------------------------------------- setup */

static double setup_us(uint16_t port)
{
    int64_t t0 = ink_mono_ns();
    int fd = dial(port);
    char c = 'p';
    if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1)
        die("ping");
    double us = (double)(ink_mono_ns() - t0) / 1000.0;
    close(fd);
    return us;
}

static double median_setup_us(uint16_t port)
{
    double *v = ink_xcalloc(SETUPS, sizeof *v);
    for (int i = 0; i < 50; i++) /* warm up */
        setup_us(port);
    for (int i = 0; i < SETUPS; i++)
        v[i] = setup_us(port);
    double m = median(v, SETUPS);
    free(v);
    return m;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    long mib = argc > 1 ? atol(argv[1]) : 2048;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    if (mib < 8)
        mib = 8;
    if (runs < 1 || runs > 50)
        runs = 5;
    uint64_t total = (uint64_t)mib << 20;
    signal(SIGPIPE, SIG_IGN);

    server sink, pong;
    server_start(&sink, 0);
    server_start(&pong, 1);
    ink_forwarder *f = NULL;
    ink_err err = {0};
    struct sockaddr_in t = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    uint16_t fsink = 0, fpong = 0;
    if (ink_forwarder_start(NULL, NULL, &f, &err) < 0)
        goto fail;
    t.sin_port = htons(sink.port);
    if (ink_forwarder_publish(f, "sink", "127.0.0.1", 0, &t, &fsink, &err) < 0)
        goto fail;
    t.sin_port = htons(pong.port);
    if (ink_forwarder_publish(f, "pong", "127.0.0.1", 0, &t, &fpong, &err) < 0)
        goto fail;

    /* Setup latency first: after the bulk runs the forwarder thread may be
     * left on another CPU than the clients, and on a small VM each
     * cross-CPU wakeup then shows (2 vCPUs: ~100 us became 250-300 us,
     * not so when pinned to one CPU). */
    double setup_direct = median_setup_us(pong.port);
    double setup_fwd = median_setup_us(fpong);

    char *buf = ink_xmalloc(CHUNK);
    memset(buf, 'x', CHUNK);
    double direct[2], forwarded[2];
    const int conns[2] = {1, 8};
    double *d = ink_xcalloc((size_t)runs, sizeof *d), *fw = ink_xcalloc((size_t)runs, sizeof *fw);
    for (int c = 0; c < 2; c++) {
        /* Alternate, so drift (frequency, other load) hits both alike. */
        for (int r = 0; r < runs; r++) {
            d[r] = throughput(sink.port, conns[c], total, buf);
            fw[r] = throughput(fsink, conns[c], total, buf);
        }
        direct[c] = median(d, runs);
        forwarded[c] = median(fw, runs);
    }

    ink_forward_stats st;
    ink_forwarder_stats(f, "sink", &st);
    ink_forwarder_stop(f);
    server_stop(&sink);
    server_stop(&pong);

    printf("bench/forward: loopback TCP, direct vs through the splice forwarder (pipes of %d KiB "
           "asked for), one process\n",
           INK_FORWARD_PIPE_SIZE / 1024);
    printf("  throughput: %ld MiB per run, client -> sink, acknowledged at EOF; median of %d "
           "runs; MB/s = 10^6 B/s\n",
           mib, runs);
    for (int c = 0; c < 2; c++)
        printf("  %d connection%s   direct %8.0f MB/s   forwarded %8.0f MB/s   "
               "forwarded/direct %.2f\n",
               conns[c], conns[c] > 1 ? "s" : " ", direct[c], forwarded[c],
               forwarded[c] / direct[c]);
    printf("  connection setup (connect + 1-byte round trip), median of %d:\n", SETUPS);
    printf("                 direct %8.1f us     forwarded %8.1f us     forwarded/direct %.2f\n",
           setup_direct, setup_fwd, setup_fwd / setup_direct);
    printf("  forwarder counted %.2f GiB in over %llu connections, %llu connect failures\n",
           (double)st.bytes_in / (1 << 30), (unsigned long long)st.connections_total,
           (unsigned long long)st.connect_failures);
    free(buf);
    free(d);
    free(fw);
    return 0;
fail:
    fprintf(stderr, "forwarder: %s\n", err.msg);
    return 1;
}
