/* Unit tests for the Prometheus endpoint (node-agent/metrics/prom.c and
 * prom_http.c): the text, byte for byte where it matters (label escaping,
 * HELP and TYPE once per family, series grouped under their family), and
 * the HTTP server over real sockets on 127.0.0.1 with a port of its own:
 * answers and their codes, and clients that send nothing, too much, or
 * hold every slot, which must not keep others waiting past the
 * per-connection timeout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "prom.h"
#include "testlib.h"
#include "util.h"

/* ------------------------------------------------------------- the text */

typedef Ink__V1__WorkloadMetrics metrics;

static metrics web(void)
{
    metrics m = INK__V1__WORKLOAD_METRICS__INIT;
    m.workload_id = "web-1a2b3c4d";
    m.app = "web";
    m.project = "demo";
    m.cpu_ns = 2500000001ULL;
    m.memory_bytes = 10 << 20;
    m.pids = 7;
    m.rx_bytes = 1000;
    m.tx_bytes = 2000;
    m.rx_packets = 10;
    m.tx_packets = 20;
    m.last_activity_unix_ms = 1795000000250;
    m.state = INK__V1__WORKLOAD_STATUS__STATE__SLEEPING;
    m.traffic_ebpf = true;
    m.sleeps = 3;
    m.wakes = 2;
    m.last_wake_ms = 412;
    m.connections_active = 1;
    return m;
}

static bool has_line(const char *text, const char *line)
{
    size_t len = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++) {
        if ((p == text || p[-1] == '\n') && p[len] == '\n')
            return true;
    }
    return false;
}

static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* The format's grammar, as far as these families use it: comments are
 * "# HELP name text" then "# TYPE name type", each family once, and
 * every sample line belongs to the family typed last. */
static void assert_well_formed(const char *text)
{
    char family[128] = "";
    char seen[64][128];
    size_t nseen = 0;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl); /* every line ends with a newline */
        char line[1024];
        size_t len = (size_t)(nl - p);
        assert_true(len < sizeof line);
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl + 1;
        char name[128], type[32];
        if (strncmp(line, "# HELP ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%127s", name), 1);
            for (size_t i = 0; i < nseen; i++)
                assert_string_not_equal(seen[i], name);
            assert_true(nseen < 64);
            snprintf(seen[nseen++], sizeof seen[0], "%s", name);
            snprintf(family, sizeof family, "%s", name);
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%127s %31s", name, type), 2);
            assert_string_equal(name, family);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0);
            if (strcmp(type, "counter") == 0)
                assert_non_null(strstr(name, "_total"));
            continue;
        }
        assert_true(line[0] != '#');
        size_t nlen = strcspn(line, "{ ");
        assert_int_equal(nlen, strlen(family));
        assert_memory_equal(line, family, nlen);
        /* The value: after the last space, a number. */
        const char *v = strrchr(line, ' ');
        assert_non_null(v);
        char *end;
        strtod(v + 1, &end);
        assert_true(*end == '\0' && end > v + 1);
    }
}

static void test_render(void **state)
{
    metrics a = web(), b = INK__V1__WORKLOAD_METRICS__INIT;
    b.workload_id = "x-1";
    b.app = "we\"ird\\app\nname";
    b.project = ""; /* not filled by the node yet */
    b.state = INK__V1__WORKLOAD_STATUS__STATE__RUNNING;
    metrics *wm[] = {&a, &b};
    ink_prom_node node = {.node_id = "n1", .version = "1.2.3"};
    size_t len = 0;
    cleanup_free char *t = ink_prom_render(wm, 2, &node, &len);
    assert_int_equal(len, strlen(t));
    assert_well_formed(t);

    assert_true(has_line(t, "# HELP ink_workload_cpu_seconds_total CPU time the workload's "
                            "sandbox used since it was placed on the node, seconds."));
    assert_true(has_line(t, "# TYPE ink_workload_cpu_seconds_total counter"));
    assert_int_equal(count(t, "# TYPE ink_workload_cpu_seconds_total "), 1);
    assert_int_equal(count(t, "# TYPE ink_workload_state "), 1);
    assert_true(has_line(
        t, "ink_workload_cpu_seconds_total{app=\"web\",project=\"demo\",replica=\"web-1a2b3c4d\"} "
           "2.500000001"));
    const char *L = "{app=\"web\",project=\"demo\",replica=\"web-1a2b3c4d\"}";
    char want[256];
    static const struct {
        const char *name, *value;
    } values[] = {
        {"ink_workload_memory_bytes", "10485760"},
        {"ink_workload_pids", "7"},
        {"ink_workload_network_receive_bytes_total", "1000"},
        {"ink_workload_network_transmit_bytes_total", "2000"},
        {"ink_workload_network_receive_packets_total", "10"},
        {"ink_workload_network_transmit_packets_total", "20"},
        {"ink_workload_last_activity_timestamp_seconds", "1795000000.250"},
        {"ink_workload_sleeps_total", "3"},
        {"ink_workload_wakes_total", "2"},
        {"ink_workload_last_wake_seconds", "0.412"},
        {"ink_workload_connections_active", "1"},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(values); i++) {
        snprintf(want, sizeof want, "%s%s %s", values[i].name, L, values[i].value);
        if (!has_line(t, want))
            fail_msg("no line '%s' in:\n%s", want, t);
    }
    /* One series per state, 1 for the current one. */
    static const char *const names[] = {"pending", "pulling", "starting", "running", "crash-loop",
                                        "failed",  "stopped", "sleeping", "waking"};
    for (size_t i = 0; i < INK_ARRAY_LEN(names); i++) {
        snprintf(want, sizeof want,
                 "ink_workload_state{app=\"web\",project=\"demo\",replica=\"web-1a2b3c4d\","
                 "state=\"%s\"} %d",
                 names[i], strcmp(names[i], "sleeping") == 0);
        assert_true(has_line(t, want));
    }
    assert_int_equal(count(t, "ink_workload_state{"), 2 * INK_ARRAY_LEN(names));

    /* Label values escaped: \" \\ \n, and an empty project is "". */
    const char *B = "{app=\"we\\\"ird\\\\app\\nname\",project=\"\",replica=\"x-1\"}";
    snprintf(want, sizeof want, "ink_workload_cpu_seconds_total%s 0.000000000", B);
    assert_true(has_line(t, want));
    snprintf(want, sizeof want, "ink_workload_state%s", B);
    want[strlen(want) - 1] = '\0'; /* before the state label */
    assert_int_equal(count(t, want), INK_ARRAY_LEN(names));
    /* Never active, never woken: no sample rather than a zero time. */
    snprintf(want, sizeof want, "ink_workload_last_activity_timestamp_seconds%s", B);
    assert_null(strstr(t, want));
    snprintf(want, sizeof want, "ink_workload_last_wake_seconds%s", B);
    assert_null(strstr(t, want));

    assert_true(has_line(t, "# TYPE ink_agent_workloads gauge"));
    assert_true(has_line(t, "ink_agent_workloads 2"));
    assert_true(has_line(t, "ink_agent_traffic_ebpf 1"));
    assert_true(has_line(t, "ink_agent_info{node=\"n1\",version=\"1.2.3\"} 1"));
}

static void test_render_empty(void **state)
{
    size_t len = 0;
    cleanup_free char *t = ink_prom_render(NULL, 0, NULL, &len);
    assert_well_formed(t);
    assert_true(has_line(t, "ink_agent_workloads 0"));
    assert_true(has_line(t, "ink_agent_traffic_ebpf 0"));
    assert_true(has_line(t, "ink_agent_info{node=\"\",version=\"\"} 1"));
    assert_null(strstr(t, "{app="));
    /* Families are described even with no series, for discovery. */
    assert_true(has_line(t, "# TYPE ink_workload_cpu_seconds_total counter"));

    /* A workload counted from its veth: no eBPF. */
    metrics m = web();
    m.traffic_ebpf = false;
    metrics *wm[] = {&m};
    cleanup_free char *t2 = ink_prom_render(wm, 1, NULL, &len);
    assert_true(has_line(t2, "ink_agent_traffic_ebpf 0"));
    assert_true(has_line(t2, "ink_agent_workloads 1"));
}

/* ------------------------------------------------------------- the server */

static atomic_int scrapes;

static char *source(void *arg, size_t *len)
{
    atomic_fetch_add(&scrapes, 1);
    metrics m = web();
    metrics *wm[] = {&m};
    ink_prom_node node = {.node_id = arg, .version = "test"};
    return ink_prom_render(wm, 1, &node, len);
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Reads until the server closes (or timeout_ms): the whole answer, NULL
 * if the server did not close in time. */
static char *read_all(int fd, int timeout_ms)
{
    size_t cap = 4096, got = 0;
    char *buf = ink_xmalloc(cap);
    int64_t end = ink_mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = end - ink_mono_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) != 1) {
            free(buf);
            return NULL;
        }
        if (got + 1024 > cap)
            buf = ink_xrealloc(buf, cap *= 2);
        ssize_t r = recv(fd, buf + got, cap - got - 1, 0);
        if (r < 0 && errno == ECONNRESET)
            break;
        assert_true(r >= 0);
        if (r == 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    return buf;
}

/* One request (sent whole) and the answer. */
static char *exchange(int port, const char *request)
{
    int fd = dial(port);
    assert_int_equal(send(fd, request, strlen(request), MSG_NOSIGNAL), (ssize_t)strlen(request));
    char *resp = read_all(fd, 5000);
    close(fd);
    assert_non_null(resp);
    return resp;
}

static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    assert_non_null(b);
    return b + 4;
}

static void assert_status(const char *resp, int code)
{
    char want[32];
    snprintf(want, sizeof want, "HTTP/1.1 %d ", code);
    if (strncmp(resp, want, strlen(want)) != 0)
        fail_msg("want %d, got: %.200s", code, resp);
    assert_non_null(strstr(resp, "\r\nConnection: close\r\n"));
}

static void test_http(void **state)
{
    ink_prom_server *srv = NULL;
    ink_err err = {0};
    atomic_store(&scrapes, 0);
    assert_int_equal(ink_prom_server_start("127.0.0.1:0", source, "n1", &srv, &err), 0);
    int port = ink_prom_server_port(srv);
    assert_true(port > 0);

    cleanup_free char *r = exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                                          "Accept: text/plain\r\n\r\n");
    assert_status(r, 200);
    assert_non_null(strstr(r, "\r\nContent-Type: text/plain; version=0.0.4\r\n"));
    const char *body = body_of(r);
    char cl[64];
    snprintf(cl, sizeof cl, "\r\nContent-Length: %zu\r\n", strlen(body));
    assert_non_null(strstr(r, cl));
    assert_non_null(strstr(body, "ink_workload_cpu_seconds_total{app=\"web\",project=\"demo\","
                                 "replica=\"web-1a2b3c4d\"} 2.500000001\n"));
    assert_non_null(strstr(body, "ink_agent_info{node=\"n1\",version=\"test\"} 1\n"));
    assert_int_equal(atomic_load(&scrapes), 1);

    /* A query string, bare LF line ends, HTTP/1.0: still the text. */
    cleanup_free char *q = exchange(port, "GET /metrics?x=1 HTTP/1.0\n\n");
    assert_status(q, 200);
    /* HEAD: the headers only. */
    cleanup_free char *h = exchange(port, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_status(h, 200);
    assert_string_equal(body_of(h), "");
    assert_null(strstr(h, "Content-Length: 0\r\n"));

    cleanup_free char *nf = exchange(port, "GET / HTTP/1.1\r\n\r\n");
    assert_status(nf, 404);
    cleanup_free char *nf2 = exchange(port, "GET /metricsx HTTP/1.1\r\n\r\n");
    assert_status(nf2, 404);
    cleanup_free char *na = exchange(port, "POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
    assert_status(na, 405);
    assert_non_null(strstr(na, "\r\nAllow: GET, HEAD\r\n"));
    cleanup_free char *na2 = exchange(port, "DELETE /metrics HTTP/1.1\r\n\r\n");
    assert_status(na2, 405);
    cleanup_free char *bad = exchange(port, "hello\r\n\r\n");
    assert_status(bad, 400);
    cleanup_free char *bad2 = exchange(port, "GET /metrics SPDY/3\r\n\r\n");
    assert_status(bad2, 400);
    /* Only the GETs of /metrics rendered anything. */
    assert_int_equal(atomic_load(&scrapes), 3);

    /* Headers without end, past the limit: 431, and nothing more read. */
    int fd = dial(port);
    char big[INK_PROM_REQUEST_MAX + 512];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    (void)!send(fd, big, sizeof big, MSG_NOSIGNAL);
    cleanup_free char *large = read_all(fd, 5000);
    close(fd);
    assert_non_null(large);
    assert_status(large, 431);

    ink_prom_server_stop(srv);
}

/* A client that connects and sends nothing holds only its own slot, and
 * only for the timeout. */
static void test_slow_clients(void **state)
{
    ink_prom_server *srv = NULL;
    ink_err err = {0};
    assert_int_equal(ink_prom_server_start("127.0.0.1:0", source, "n1", &srv, &err), 0);
    int port = ink_prom_server_port(srv);

    int silent = dial(port);
    /* Half a request: it still waits for the rest. */
    int half = dial(port);
    assert_int_equal(send(half, "GET /metr", 9, MSG_NOSIGNAL), 9);
    usleep(100 * 1000);
    int64_t t0 = ink_mono_ms();
    cleanup_free char *r = exchange(port, "GET /metrics HTTP/1.1\r\n\r\n");
    assert_status(r, 200);
    assert_true(ink_mono_ms() - t0 < INK_PROM_TIMEOUT_MS / 2);

    /* The silent ones are closed once their time is up, answered with
     * nothing. */
    cleanup_free char *s1 = read_all(silent, INK_PROM_TIMEOUT_MS + 3000);
    assert_non_null(s1);
    assert_string_equal(s1, "");
    cleanup_free char *s2 = read_all(half, 3000);
    assert_non_null(s2);
    assert_string_equal(s2, "");
    assert_true(ink_mono_ms() - t0 >= INK_PROM_TIMEOUT_MS - 200);
    close(silent);
    close(half);

    /* Every slot held by a silent client: the next one is answered once
     * the first of them times out, not later. */
    int held[INK_PROM_MAX_CONNECTIONS];
    for (int i = 0; i < INK_PROM_MAX_CONNECTIONS; i++)
        held[i] = dial(port);
    usleep(100 * 1000);
    t0 = ink_mono_ms();
    cleanup_free char *late = exchange(port, "GET /metrics HTTP/1.1\r\n\r\n");
    assert_status(late, 200);
    assert_true(ink_mono_ms() - t0 < INK_PROM_TIMEOUT_MS + 1500);
    for (int i = 0; i < INK_PROM_MAX_CONNECTIONS; i++)
        close(held[i]);

    /* Stopping with a connection open does not wait for it. */
    int open_fd = dial(port);
    usleep(50 * 1000);
    t0 = ink_mono_ms();
    ink_prom_server_stop(srv);
    assert_true(ink_mono_ms() - t0 < 1000);
    close(open_fd);
}

static void test_listen_errors(void **state)
{
    ink_prom_server *srv = NULL, *other = NULL;
    ink_err err = {0};
    assert_int_equal(ink_prom_server_start("127.0.0.1:0", source, "n1", &srv, &err), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ink_prom_server_port(srv));
    /* The port is taken: a clear error, nothing started. */
    assert_int_equal(ink_prom_server_start(addr, source, "n1", &other, &err), -1);
    assert_null(other);
    assert_non_null(strstr(err.msg, "bind"));
    assert_non_null(strstr(err.msg, addr));
    assert_int_equal(err.errnum, EADDRINUSE);
    ink_prom_server_stop(srv);

    static const char *const bad[] = {"localhost:7443", "[::1]:7443", "127.0.0.1", "1.2.3:80",
                                      "127.0.0.1:99999"};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad); i++) {
        ink_err_clear(&err);
        assert_int_equal(ink_prom_server_start(bad[i], source, "n1", &other, &err), -1);
        assert_null(other);
        assert_true(err.msg[0]);
    }
    ink_prom_server_stop(NULL);
}

int main(void)
{
    test_block_sigpipe();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),        cmocka_unit_test(test_render_empty),
        cmocka_unit_test(test_http),          cmocka_unit_test(test_slow_clients),
        cmocka_unit_test(test_listen_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
