/* bench/rpc: unary round-trip latency and calls/s over one mutual-TLS gRPC
 * connection on loopback, through common/rpc, against two baselines run in
 * the same process: the same calls over plaintext gRPC, and a bare TCP
 * ping-pong of the same payload (the floor any RPC stack sits on).
 *
 *   rpc_bench [calls]        (default 20000)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ink/v1/ink.pb-c.h"
#include "pki.h"
#include "rpc/rpc.h"
#include "util.h"

#define PAYLOAD 64

static void handle_ping(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    const Ink__V1__PingRequest *req = (const Ink__V1__PingRequest *)msg;
    Ink__V1__PingResponse resp = INK__V1__PING_RESPONSE__INIT;
    resp.payload = req->payload;
    ink_rpc_reply(call, &resp.base);
}

static const ink_rpc_method methods[] = {
    {"/ink.v1.AgentService/Ping", &ink__v1__ping_request__descriptor, false, handle_ping},
};

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double median_us, p99_us, calls_per_s;
} result;

static result summarize(int64_t *ns, int n, int64_t total_ns)
{
    qsort(ns, (size_t)n, sizeof *ns, cmp_i64);
    result r;
    r.median_us = (double)ns[n / 2] / 1000.0;
    r.p99_us = (double)ns[(int)((double)n * 0.99)] / 1000.0;
    r.calls_per_s = (double)n / ((double)total_ns / 1e9);
    return r;
}

static int ping(ink_rpc_client *c)
{
    uint8_t buf[PAYLOAD];
    memset(buf, 'x', sizeof buf);
    Ink__V1__PingRequest req = INK__V1__PING_REQUEST__INIT;
    req.payload.data = buf;
    req.payload.len = sizeof buf;
    ProtobufCMessage *resp = NULL;
    ink_rpc_status st;
    int rc = ink_rpc_unary(c, "/ink.v1.AgentService/Ping", &req.base,
                           &ink__v1__ping_response__descriptor, &resp, 5000, &st);
    if (rc < 0) {
        fprintf(stderr, "ping failed: %s %s\n", ink_rpc_code_name(st.code), st.message);
        exit(1);
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

static result run_grpc(ink_rpc_client *c, int calls)
{
    for (int i = 0; i < 500; i++) /* warm up: connection, TLS session */
        ping(c);
    int64_t *ns = ink_xcalloc((size_t)calls, sizeof *ns);
    int64_t start = ink_mono_ns();
    for (int i = 0; i < calls; i++) {
        int64_t t0 = ink_mono_ns();
        ping(c);
        ns[i] = ink_mono_ns() - t0;
    }
    result r = summarize(ns, calls, ink_mono_ns() - start);
    free(ns);
    return r;
}

typedef struct {
    ink_rpc_client *c;
    int calls;
} par_arg;

static void *par_worker(void *arg)
{
    par_arg *p = arg;
    for (int i = 0; i < p->calls; i++)
        ping(p->c);
    return NULL;
}

static double run_parallel(ink_rpc_client *c, int threads, int calls)
{
    pthread_t t[16];
    par_arg a = {c, calls / threads};
    int64_t start = ink_mono_ns();
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, par_worker, &a);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    return (double)(a.calls * threads) / ((double)(ink_mono_ns() - start) / 1e9);
}

/* ------------------------------------------------------- TCP baseline */

static int read_full(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void *tcp_echo_server(void *arg)
{
    int lfd = *(int *)arg;
    int fd = accept(lfd, NULL, NULL);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[PAYLOAD];
    while (read_full(fd, buf, sizeof buf) == 0) {
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
            break;
    }
    close(fd);
    return NULL;
}

static result run_tcp(int calls)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) {
        perror("tcp baseline");
        exit(1);
    }
    pthread_t t;
    pthread_create(&t, NULL, tcp_echo_server, &lfd);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[PAYLOAD];
    memset(buf, 'x', sizeof buf);
    int64_t *ns = ink_xcalloc((size_t)calls, sizeof *ns);
    int64_t start = ink_mono_ns();
    for (int i = 0; i < calls; i++) {
        int64_t t0 = ink_mono_ns();
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf ||
            read_full(fd, buf, sizeof buf) < 0) {
            perror("tcp ping");
            exit(1);
        }
        ns[i] = ink_mono_ns() - t0;
    }
    result r = summarize(ns, calls, ink_mono_ns() - start);
    free(ns);
    close(fd);
    pthread_join(t, NULL);
    close(lfd);
    return r;
}

/* ------------------------------------------------------------------ main */

static ink_rpc_server *server(const ink_tls_files *tls, char *target, size_t tlen)
{
    ink_rpc_server_opts so = {
        .listen = "127.0.0.1:0", .tls = tls, .methods = methods, .nmethods = 1};
    ink_err err = {0};
    ink_rpc_server *s = ink_rpc_server_start(&so, &err);
    if (!s) {
        fprintf(stderr, "server: %s\n", err.msg);
        exit(1);
    }
    snprintf(target, tlen, "127.0.0.1:%d", ink_rpc_server_port(s));
    return s;
}

static ink_rpc_client *client(const char *target, const ink_tls_files *tls)
{
    ink_rpc_client_opts co = {.target = target, .tls = tls, .server_name = "ink-coordinator"};
    ink_err err = {0};
    ink_rpc_client *c = ink_rpc_client_new(&co, &err);
    if (!c) {
        fprintf(stderr, "client: %s\n", err.msg);
        exit(1);
    }
    return c;
}

static void print_row(const char *name, result r)
{
    printf("  %-28s median %7.1f us   p99 %7.1f us   %8.0f calls/s\n", name, r.median_us, r.p99_us,
           r.calls_per_s);
}

int main(int argc, char **argv)
{
    int calls = argc > 1 ? atoi(argv[1]) : 20000;
    if (calls < 100)
        calls = 100;
    char dir[] = "/tmp/ink-bench-rpc-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    ink_err err = {0};
    const char *sans[] = {"localhost", "127.0.0.1"};
    if (ink_pki_init_ca(dir, 2, &err) < 0 ||
        ink_pki_issue(dir, INK_COORDINATOR_NAME, INK_ROLE_COORDINATOR, sans, 2, 2, dir, &err) < 0 ||
        ink_pki_issue(dir, "bench-node", INK_ROLE_NODE, sans, 2, 2, dir, &err) < 0) {
        fprintf(stderr, "pki: %s\n", err.msg);
        return 1;
    }
    char ca[128], scrt[128], skey[128], ccrt[128], ckey[128];
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    snprintf(scrt, sizeof scrt, "%s/ink-coordinator.crt", dir);
    snprintf(skey, sizeof skey, "%s/ink-coordinator.key", dir);
    snprintf(ccrt, sizeof ccrt, "%s/bench-node.crt", dir);
    snprintf(ckey, sizeof ckey, "%s/bench-node.key", dir);
    ink_tls_files stls = {ca, scrt, skey}, ctls = {ca, ccrt, ckey};

    ink_rpc_init();
    char target[64];
    ink_rpc_server *s = server(&stls, target, sizeof target);
    ink_rpc_client *c = client(target, &ctls);
    result tls = run_grpc(c, calls);
    double par = run_parallel(c, 4, calls);
    ink_rpc_client_free(c);
    ink_rpc_server_stop(s, 1000);

    s = server(NULL, target, sizeof target);
    c = client(target, NULL);
    result plain = run_grpc(c, calls);
    ink_rpc_client_free(c);
    ink_rpc_server_stop(s, 1000);
    ink_rpc_shutdown();

    result tcp = run_tcp(calls);

    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);

    printf("bench/rpc: unary call, %d-byte payload, %d sequential calls, loopback, one "
           "connection\n",
           PAYLOAD, calls);
    print_row("gRPC + mutual TLS", tls);
    print_row("gRPC plaintext (baseline)", plain);
    print_row("bare TCP ping-pong (floor)", tcp);
    printf("  %-28s %8.0f calls/s\n", "gRPC + mTLS, 4 callers", par);
    printf("  ratio mTLS/plaintext median: %.2f   mTLS/TCP median: %.2f\n",
           tls.median_us / plain.median_us, tls.median_us / tcp.median_us);
    printf("  target median < 100 us over mTLS: %s (%.1f us)\n",
           tls.median_us < 100.0 ? "met" : "MISSED", tls.median_us);
    return 0;
}
