/* See bench_net.h. */
#include "bench_net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_retrans */
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net.h"
#include "util.h"

#define CHUNK (256 * 1024)

/* ------------------------------------------------------------- figures */

void bn_add(bn_samples *s, double x)
{
    if (s->n < BN_SAMPLES_MAX)
        s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

bn_summary bn_summarize(const bn_samples *s)
{
    if (s->n == 0)
        return (bn_summary){0, 0, 0};
    double v[BN_SAMPLES_MAX];
    memcpy(v, s->v, s->n * sizeof *v);
    qsort(v, s->n, sizeof *v, cmp_double);
    size_t n = s->n;
    double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    return (bn_summary){med, v[0], v[n - 1]};
}

double bn_median(const bn_samples *s)
{
    return bn_summarize(s).med;
}

const char *bn_fmt(const bn_samples *s, int dec, char *buf, size_t len)
{
    bn_summary m = bn_summarize(s);
    snprintf(buf, len, "%.*f (%.*f-%.*f)", dec, m.med, dec, m.lo, dec, m.hi);
    return buf;
}

int64_t bn_thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bn_load_average(char *out, size_t len)
{
    snprintf(out, len, "?");
    cleanup_fclose FILE *f = fopen("/proc/loadavg", "r");
    double a, b, c;
    if (f && fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(out, len, "%.2f %.2f %.2f", a, b, c);
}

const char *bn_verdict(int met)
{
    return met ? "met" : "MISSED";
}

/* ------------------------------------------------------------- isolation */

int bn_isolate(const char *scratch, const char *tag, ink_err *err)
{
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) < 0)
        return ink_err_set(err, errno, "unshare(CLONE_NEWNS | CLONE_NEWNET)");
    /* Private first: nothing mounted below may propagate to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return ink_err_set(err, errno, "making / private in the bench's mount namespace");
    if (mount(tag, scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64m") < 0)
        return ink_err_set(err, errno, "tmpfs on %s in the bench's mount namespace", scratch);
    return 0;
}

static void on_signal(int sig)
{
    static const char msg[] = "\ninterrupted; everything the bench made goes with it\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(128 + sig);
}

void bn_exit_on_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ------------------------------------------------------------- sink */

static int pin_thread(int cpu)
{
    if (cpu < 0)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *sink_main(void *arg)
{
    bn_sink *s = arg;
    int one = 1;
    int nsfd = s->ns_path ? open(s->ns_path, O_RDONLY | O_CLOEXEC) : -1;
    int e = pin_thread(s->cpu);
    if (e)
        s->rc = ink_err_set(&s->err, e, "sink: pinning to CPU %d", s->cpu);
    else if (s->ns_path && (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0))
        s->rc = ink_err_set(&s->err, errno, "entering %s", s->ns_path);
    else if ((s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
             setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
             bind(s->lfd, (struct sockaddr *)&s->addr, sizeof s->addr) < 0 ||
             listen(s->lfd, 16) < 0)
        s->rc = ink_err_set(&s->err, errno, "sink: listening");
    if (nsfd >= 0)
        close(nsfd);
    sem_post(&s->ready);
    if (s->rc < 0)
        return NULL;
    char *buf = ink_xmalloc(CHUNK);
    for (;;) {
        struct sockaddr_in peer = {0};
        socklen_t plen = sizeof peer;
        int fd = accept4(s->lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break; /* shut down */
        }
        uint64_t got = 0;
        ssize_t r;
        int64_t c0 = bn_thread_cpu_ns();
        while ((r = read(fd, buf, CHUNK)) > 0)
            got += (uint64_t)r;
        pthread_mutex_lock(&s->mu);
        s->cpu_ms = (double)(bn_thread_cpu_ns() - c0) / 1e6;
        s->peer = peer.sin_addr;
        pthread_mutex_unlock(&s->mu);
        if (write(fd, &got, sizeof got) != (ssize_t)sizeof got)
            perror("bench sink: acknowledgement");
        close(fd);
    }
    free(buf);
    return NULL;
}

int bn_sink_start(bn_sink *s, const char *ns_path, const struct sockaddr_in *addr, int cpu,
                  ink_err *err)
{
    memset(s, 0, sizeof *s);
    s->ns_path = ns_path;
    s->addr = *addr;
    s->cpu = cpu;
    s->lfd = -1;
    sem_init(&s->ready, 0, 0);
    pthread_mutex_init(&s->mu, NULL);
    int e = pthread_create(&s->thread, NULL, sink_main, s);
    if (e)
        return ink_err_set(err, e, "starting the sink thread");
    sem_wait(&s->ready);
    if (s->rc < 0) {
        pthread_join(s->thread, NULL);
        *err = s->err;
        return -1;
    }
    return 0;
}

void bn_sink_stop(bn_sink *s)
{
    shutdown(s->lfd, SHUT_RDWR); /* wakes accept() */
    pthread_join(s->thread, NULL);
    close(s->lfd);
    sem_destroy(&s->ready);
    pthread_mutex_destroy(&s->mu);
}

double bn_sink_cpu_ms(bn_sink *s)
{
    pthread_mutex_lock(&s->mu);
    double v = s->cpu_ms;
    pthread_mutex_unlock(&s->mu);
    return v;
}

struct in_addr bn_sink_peer(bn_sink *s)
{
    pthread_mutex_lock(&s->mu);
    struct in_addr v = s->peer;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* ------------------------------------------------------------- sender */

int bn_dial(int fd, const struct sockaddr_in *dst, int ms)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int rc = connect(fd, (const struct sockaddr *)dst, sizeof *dst);
    if (rc < 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, ms) <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        int soerr = 0;
        socklen_t len = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        errno = soerr;
        rc = soerr ? -1 : 0;
    }
    fcntl(fd, F_SETFL, fl);
    return rc;
}

int bn_send_bulk(bn_send *j, ink_err *err)
{
    int e = pin_thread(j->cpu);
    if (e)
        return ink_err_set(err, e, "pinning the sender to CPU %d", j->cpu);
    cleanup_close int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ink_err_set(err, errno, "socket");
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    cleanup_free char *buf = ink_xmalloc(CHUNK);
    memset(buf, 'x', CHUNK);
    int64_t t0 = ink_mono_ns();
    if (bn_dial(fd, &j->dst, 2000) < 0)
        return ink_err_set(err, errno, "connecting to the sink");
    int64_t end = t0 + (int64_t)(j->secs * 1e9), c0 = bn_thread_cpu_ns();
    j->sent = 0;
    while (ink_mono_ns() < end) {
        ssize_t w = write(fd, buf, CHUNK);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return ink_err_set(err, errno, "sending to the sink");
        j->sent += (uint64_t)w;
    }
    shutdown(fd, SHUT_WR);
    uint64_t acked = 0;
    if (recv(fd, &acked, sizeof acked, MSG_WAITALL) != (ssize_t)sizeof acked)
        return ink_err_set(err, errno, "no acknowledgement from the sink");
    double secs = (double)(ink_mono_ns() - t0) / 1e9;
    j->cpu_ms = (double)(bn_thread_cpu_ns() - c0) / 1e6;
    struct tcp_info ti = {0};
    socklen_t tlen = sizeof ti;
    j->retrans_bytes =
        getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tlen) == 0 ? ti.tcpi_bytes_retrans : 0;
    if (acked != j->sent)
        return ink_err_set(err, 0, "the sink counted %llu bytes of %llu", (unsigned long long)acked,
                           (unsigned long long)j->sent);
    j->mbps = (double)acked / secs / 1e6;
    return 0;
}

static int send_fn(void *arg, ink_err *err)
{
    return bn_send_bulk(arg, err);
}

int bn_send_bulk_in(const char *ns_path, bn_send *j, ink_err *err)
{
    return ink_netns_run(ns_path, send_fn, j, err);
}
