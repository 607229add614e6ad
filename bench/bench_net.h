/* Helpers for the benches that push TCP through network namespaces they
 * make for themselves (traffic_bench, egress_bench):
 * figures as "median (min-max)", thread CPU time, the load average, moving
 * the process into network and mount namespaces of its own, and a bulk
 * TCP sender and sink. */
#ifndef INK_BENCH_NET_H
#define INK_BENCH_NET_H

#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* ------------------------------------------------------------- figures */

#define BN_SAMPLES_MAX 256

typedef struct bn_samples {
    double v[BN_SAMPLES_MAX];
    size_t n;
} bn_samples;

typedef struct bn_summary {
    double med, lo, hi;
} bn_summary;

void bn_add(bn_samples *s, double x);
bn_summary bn_summarize(const bn_samples *s);
double bn_median(const bn_samples *s);
/* "median (min-max)" with dec decimals, into buf. */
const char *bn_fmt(const bn_samples *s, int dec, char *buf, size_t len);
#define BN_FMT(s, dec) bn_fmt((s), (dec), (char[64]){0}, 64)

/* CPU time of the calling thread, user and system, ns. The kernel's side
 * of what it sends (veth, softirq on the sending CPU, tc programs) is
 * counted there too, unless the kernel defers it to ksoftirqd. */
int64_t bn_thread_cpu_ns(void);
/* "0.42 0.38 1.98", or "?" */
void bn_load_average(char *out, size_t len);
const char *bn_verdict(int met); /* "met" or "MISSED" */

/* ------------------------------------------------------------- isolation */

/* Moves the (still single-threaded) process into a network and a mount
 * namespace of its own (private propagation) and mounts a tmpfs on
 * scratch there. Everything made in them afterwards (namespaces, veths,
 * qdiscs, BPF programs on them, mounts) goes with the process however it
 * ends, so a bench never leaves anything in the host's namespaces. */
int bn_isolate(const char *scratch, const char *tag, ink_err *err);
/* SIGINT, SIGTERM, SIGHUP: a note on stderr and _exit (nothing to undo
 * by hand, see bn_isolate). SIGPIPE ignored. */
void bn_exit_on_signals(void);

/* ------------------------------------------------------------- TCP */

/* The receiver: a thread in the network namespace at ns_path (NULL: the
 * caller's) listening on addr, on CPU cpu (-1: wherever the scheduler
 * puts it). Each connection is read to EOF; the byte count goes back as
 * the acknowledgement. Pinning sender and receiver to CPUs of their own
 * keeps runs alike: on a small machine, whether the scheduler happens to
 * put both on one CPU changes the throughput by half. */
typedef struct bn_sink {
    const char *ns_path;
    struct sockaddr_in addr;
    int cpu;
    int lfd;
    pthread_t thread;
    sem_t ready;
    int rc;
    ink_err err;
    pthread_mutex_t mu;
    double cpu_ms;       /* the thread's CPU time reading the last connection */
    struct in_addr peer; /* that connection's source address (a masquerade check) */
} bn_sink;

int bn_sink_start(bn_sink *s, const char *ns_path, const struct sockaddr_in *addr, int cpu,
                  ink_err *err);
void bn_sink_stop(bn_sink *s);
double bn_sink_cpu_ms(bn_sink *s);
struct in_addr bn_sink_peer(bn_sink *s);

/* Connects fd to dst within ms: 0, or -1 with errno (ETIMEDOUT when no
 * answer came in time, as when a firewall drops the SYN). */
int bn_dial(int fd, const struct sockaddr_in *dst, int ms);

/* One bulk run in the calling thread's namespace: writes to dst for secs,
 * then EOF; done when the sink acknowledges every byte. Pins the calling
 * thread to j->cpu. */
typedef struct bn_send {
    struct sockaddr_in dst;
    double secs;
    int cpu; /* the sending thread's CPU; -1: any */
    uint64_t sent;
    double mbps;            /* 10^6 bytes/s, until the acknowledgement */
    double cpu_ms;          /* the sending thread's */
    uint64_t retrans_bytes; /* payload the sender's TCP sent again (TCP_INFO) */
} bn_send;

int bn_send_bulk(bn_send *j, ink_err *err);
/* The same from a new thread that entered the network namespace at
 * ns_path ("/proc/self/ns/net": the process's own). */
int bn_send_bulk_in(const char *ns_path, bn_send *j, ink_err *err);

#endif
