/* Unit tests for common/rpc: a real gRPC server and client in one process,
 * over loopback with mutual TLS. Test methods reuse the Ink messages:
 * PingRequest/PingResponse for unary calls, GetLogsRequest -> LogEntry for
 * server streaming. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ink/v1/ink.pb-c.h"
#include "rpc/rpc.h"
#include "testlib.h"
#include "util.h"

/* ------------------------------------------------------------ test service */

typedef struct service_state {
    pthread_mutex_t mu;
    int done_calls;      /* on_done callbacks seen */
    ink_rpc_call *held;  /* a follow stream kept open */
    ink_rpc_call *async; /* a unary call answered later */
} service_state;

static service_state svc;

static void on_done(ink_rpc_call *call, void *arg)
{
    (void)call;
    (void)arg;
    pthread_mutex_lock(&svc.mu);
    svc.done_calls++;
    pthread_mutex_unlock(&svc.mu);
}

/* Echo: replies with the payload and the caller's certificate name. A few
 * payloads select other behaviour. */
static void handle_echo(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    const Ink__V1__PingRequest *req = (const Ink__V1__PingRequest *)msg;
    char payload[64] = "";
    snprintf(payload, sizeof payload, "%.*s", (int)req->payload.len,
             (const char *)req->payload.data);
    if (strcmp(payload, "fail") == 0) {
        ink_rpc_finish(call, GRPC_STATUS_NOT_FOUND, "no such thing: %s", "widget");
        return;
    }
    if (strcmp(payload, "slow") == 0)
        usleep(1500 * 1000);
    if (strcmp(payload, "forget") == 0)
        return; /* no answer and no reference: the layer must answer */
    if (strcmp(payload, "async") == 0) {
        ink_rpc_call_ref(call);
        pthread_mutex_lock(&svc.mu);
        svc.async = call;
        pthread_mutex_unlock(&svc.mu);
        return;
    }
    char name[300];
    snprintf(name, sizeof name, "%s/%s", ink_rpc_call_peer_name(call),
             ink_rpc_call_peer_role(call));
    Ink__V1__PingResponse resp = INK__V1__PING_RESPONSE__INIT;
    resp.payload = req->payload;
    resp.node_id = name;
    ink_rpc_reply(call, &resp.base);
}

/* Streams `tail` entries; with follow it keeps the stream open. */
static void handle_stream(ink_rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
    const Ink__V1__GetLogsRequest *req = (const Ink__V1__GetLogsRequest *)msg;
    for (uint32_t i = 0; i < req->tail; i++) {
        char line[32];
        snprintf(line, sizeof line, "line %u", i);
        Ink__V1__LogEntry e = INK__V1__LOG_ENTRY__INIT;
        e.unix_ms = i;
        e.line.data = (uint8_t *)line;
        e.line.len = strlen(line);
        assert_true(ink_rpc_send(call, &e.base) >= 0);
    }
    if (req->follow) {
        ink_rpc_call_ref(call);
        ink_rpc_call_on_done(call, on_done, NULL);
        pthread_mutex_lock(&svc.mu);
        svc.held = call;
        pthread_mutex_unlock(&svc.mu);
        return;
    }
    ink_rpc_finish(call, GRPC_STATUS_OK, "%s", "");
}

static const ink_rpc_method methods[] = {
    {"/test.Svc/Echo", &ink__v1__ping_request__descriptor, false, handle_echo},
    {"/test.Svc/Stream", &ink__v1__get_logs_request__descriptor, true, handle_stream},
};

/* ---------------------------------------------------------------- fixture */

typedef struct fixture {
    test_pki pki;
    ink_rpc_server *server;
    char target[64];
} fixture;

static int setup(void **state)
{
    fixture *f = ink_xcalloc(1, sizeof *f);
    test_pki_create(&f->pki, "rpc");
    memset(&svc, 0, sizeof svc);
    pthread_mutex_init(&svc.mu, NULL);
    ink_tls_files tls = {f->pki.ca, f->pki.coord_crt, f->pki.coord_key};
    ink_rpc_server_opts so = {.listen = "127.0.0.1:0",
                              .tls = &tls,
                              .methods = methods,
                              .nmethods = INK_ARRAY_LEN(methods)};
    ink_err err = {0};
    f->server = ink_rpc_server_start(&so, &err);
    if (!f->server) {
        fprintf(stderr, "server: %s\n", err.msg);
        return -1;
    }
    snprintf(f->target, sizeof f->target, "127.0.0.1:%d", ink_rpc_server_port(f->server));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    pthread_mutex_lock(&svc.mu);
    ink_rpc_call *held = svc.held, *async = svc.async;
    svc.held = svc.async = NULL;
    pthread_mutex_unlock(&svc.mu);
    if (held) {
        ink_rpc_finish(held, GRPC_STATUS_CANCELLED, "test over");
        ink_rpc_call_unref(held);
    }
    if (async)
        ink_rpc_call_unref(async);
    ink_rpc_server_stop(f->server, 1000);
    test_pki_destroy(&f->pki);
    pthread_mutex_destroy(&svc.mu);
    free(f);
    return 0;
}

static ink_rpc_client *node_client(fixture *f, const char *crt, const char *key, const char *ca)
{
    ink_tls_files tls = {ca, crt, key};
    ink_rpc_client_opts co = {.target = f->target, .tls = &tls, .server_name = "ink-coordinator"};
    ink_err err = {0};
    ink_rpc_client *c = ink_rpc_client_new(&co, &err);
    if (!c)
        fprintf(stderr, "client: %s\n", err.msg);
    assert_non_null(c);
    return c;
}

static ink_rpc_client *n1_client(fixture *f)
{
    return node_client(f, f->pki.node_crt, f->pki.node_key, f->pki.ca);
}

static int echo(ink_rpc_client *c, const char *payload, int64_t timeout_ms, ink_rpc_status *st,
                Ink__V1__PingResponse **out)
{
    Ink__V1__PingRequest req = INK__V1__PING_REQUEST__INIT;
    req.payload.data = (uint8_t *)payload;
    req.payload.len = strlen(payload);
    ProtobufCMessage *resp = NULL;
    int rc = ink_rpc_unary(c, "/test.Svc/Echo", &req.base, &ink__v1__ping_response__descriptor,
                           &resp, timeout_ms, st);
    if (out)
        *out = (Ink__V1__PingResponse *)resp;
    else if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return rc;
}

/* ------------------------------------------------------------------ tests */

static void test_unary_mtls_identity(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = n1_client(f);
    ink_rpc_status st;
    Ink__V1__PingResponse *resp = NULL;
    assert_int_equal(echo(c, "hello", 5000, &st, &resp), 0);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    assert_int_equal(resp->payload.len, 5);
    assert_memory_equal(resp->payload.data, "hello", 5);
    /* The server saw who we are, from the verified certificate. */
    assert_string_equal(resp->node_id, "n1/node");
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    ink_rpc_client_free(c);
}

static void test_status_propagated(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = n1_client(f);
    ink_rpc_status st;
    assert_int_equal(echo(c, "fail", 5000, &st, NULL), -1);
    assert_int_equal(st.code, GRPC_STATUS_NOT_FOUND);
    assert_string_equal(st.message, "no such thing: widget");
    ink_rpc_client_free(c);
}

static void test_deadline(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = n1_client(f);
    ink_rpc_status st;
    /* Warm the connection so the deadline measures the handler only. */
    assert_int_equal(echo(c, "warm", 5000, &st, NULL), 0);
    int64_t t0 = ink_mono_ms();
    assert_int_equal(echo(c, "slow", 50, &st, NULL), -1);
    int64_t took = ink_mono_ms() - t0;
    assert_int_equal(st.code, GRPC_STATUS_DEADLINE_EXCEEDED);
    assert_true(took < 1000); /* well before the handler's 1.5 s, even under valgrind */
    ink_rpc_client_free(c);
}

static void test_unknown_method(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = n1_client(f);
    Ink__V1__PingRequest req = INK__V1__PING_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    ink_rpc_status st;
    assert_int_equal(ink_rpc_unary(c, "/test.Svc/Nope", &req.base,
                                   &ink__v1__ping_response__descriptor, &resp, 5000, &st),
                     -1);
    assert_int_equal(st.code, GRPC_STATUS_UNIMPLEMENTED);
    assert_non_null(strstr(st.message, "/test.Svc/Nope"));
    ink_rpc_client_free(c);
}

static void test_malformed_request(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = n1_client(f);
    /* A WatchEvent's field 1 is a varint; PingRequest's field 1 is bytes:
     * the server cannot decode it as a PingRequest. */
    Ink__V1__WatchEvent bogus = INK__V1__WATCH_EVENT__INIT;
    bogus.kind = INK__V1__WATCH_EVENT__KIND__SNAPSHOT;
    ProtobufCMessage *resp = NULL;
    ink_rpc_status st;
    assert_int_equal(ink_rpc_unary(c, "/test.Svc/Echo", &bogus.base,
                                   &ink__v1__ping_response__descriptor, &resp, 5000, &st),
                     -1);
    assert_int_equal(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "malformed"));
    /* ... and the server is fine afterwards. */
    assert_int_equal(echo(c, "still here", 5000, &st, NULL), 0);
    ink_rpc_client_free(c);
}

static void test_handler_without_answer(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = n1_client(f);
    ink_rpc_status st;
    assert_int_equal(echo(c, "forget", 5000, &st, NULL), -1);
    assert_int_equal(st.code, GRPC_STATUS_INTERNAL);
    ink_rpc_client_free(c);
}

static void *answer_later(void *arg)
{
    (void)arg;
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&svc.mu);
        ink_rpc_call *call = svc.async;
        svc.async = NULL;
        pthread_mutex_unlock(&svc.mu);
        if (call) {
            usleep(20 * 1000);
            Ink__V1__PingResponse resp = INK__V1__PING_RESPONSE__INIT;
            resp.node_id = "later";
            ink_rpc_reply(call, &resp.base);
            ink_rpc_call_unref(call);
            return NULL;
        }
        usleep(10 * 1000);
    }
    return NULL;
}

static void test_async_answer(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = n1_client(f);
    pthread_t t;
    pthread_create(&t, NULL, answer_later, NULL);
    ink_rpc_status st;
    Ink__V1__PingResponse *resp = NULL;
    assert_int_equal(echo(c, "async", 5000, &st, &resp), 0);
    assert_string_equal(resp->node_id, "later");
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    pthread_join(t, NULL);
    ink_rpc_client_free(c);
}

static ink_rpc_stream *open_stream(ink_rpc_client *c, uint32_t n, bool follow, int64_t timeout,
                                   ink_rpc_status *st)
{
    Ink__V1__GetLogsRequest req = INK__V1__GET_LOGS_REQUEST__INIT;
    req.tail = n;
    req.follow = follow;
    return ink_rpc_stream_open(c, "/test.Svc/Stream", &req.base, &ink__v1__log_entry__descriptor,
                               timeout, st);
}

/* Reads one message that must be there, and drops it. */
static void read_one(ink_rpc_stream *s)
{
    ProtobufCMessage *m;
    ink_rpc_status st;
    assert_int_equal(ink_rpc_stream_next(s, &m, &st), 1);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void test_server_streaming(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = n1_client(f);
    ink_rpc_status st;
    ink_rpc_stream *s = open_stream(c, 100, false, 5000, &st);
    assert_non_null(s);
    ProtobufCMessage *m;
    int count = 0, rc;
    while ((rc = ink_rpc_stream_next(s, &m, &st)) == 1) {
        Ink__V1__LogEntry *e = (Ink__V1__LogEntry *)m;
        assert_int_equal(e->unix_ms, count); /* in order, none lost */
        count++;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(st.code, GRPC_STATUS_OK);
    assert_int_equal(count, 100);
    /* Reading past the end keeps answering "ended". */
    assert_int_equal(ink_rpc_stream_next(s, &m, &st), 0);
    ink_rpc_stream_free(s);
    ink_rpc_client_free(c);
}

static void *cancel_after(void *arg)
{
    usleep(100 * 1000);
    ink_rpc_stream_cancel(arg);
    return NULL;
}

static int done_calls(void)
{
    pthread_mutex_lock(&svc.mu);
    int n = svc.done_calls;
    pthread_mutex_unlock(&svc.mu);
    return n;
}

static void test_stream_cancel(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = n1_client(f);
    ink_rpc_status st;
    ink_rpc_stream *s = open_stream(c, 2, true, 10000, &st);
    assert_non_null(s);
    read_one(s);
    read_one(s);
    ProtobufCMessage *m;
    /* Blocked waiting for a third message that never comes; another thread
     * cancels. */
    pthread_t t;
    pthread_create(&t, NULL, cancel_after, s);
    int64_t t0 = ink_mono_ms();
    assert_int_equal(ink_rpc_stream_next(s, &m, &st), -1);
    assert_int_equal(st.code, GRPC_STATUS_CANCELLED);
    assert_true(ink_mono_ms() - t0 < 5000);
    pthread_join(t, NULL);
    ink_rpc_stream_free(s);
    /* The server learns the call is over. */
    for (int i = 0; i < 200 && done_calls() == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(done_calls(), 1);
    ink_rpc_client_free(c);
}

static void test_stream_deadline(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = n1_client(f);
    ink_rpc_status st;
    /* Long enough for a TLS handshake under valgrind on a loaded CI machine
     * to finish before the first message; the follow stream then idles
     * until the deadline ends it. */
    ink_rpc_stream *s = open_stream(c, 1, true, 3000, &st);
    assert_non_null(s);
    read_one(s);
    ProtobufCMessage *m;
    assert_int_equal(ink_rpc_stream_next(s, &m, &st), -1);
    assert_int_equal(st.code, GRPC_STATUS_DEADLINE_EXCEEDED);
    ink_rpc_stream_free(s);
    ink_rpc_client_free(c);
}

static void test_foreign_ca_client_rejected(void **state)
{
    fixture *f = *state;
    /* Same name "n1", but signed by another CA: the server refuses the
     * handshake. (The client trusts both CAs, so that its own start-up
     * check of the certificate passes and the server is what says no.) */
    char both[256];
    snprintf(both, sizeof both, "%s/both-cas.crt", f->pki.dir);
    char *a = NULL, *b = NULL;
    ink_err err = {0};
    assert_int_equal(ink_read_file(f->pki.ca, 65536, &a, NULL, &err), 0);
    assert_int_equal(ink_read_file(f->pki.foreign_ca, 65536, &b, NULL, &err), 0);
    char *joined = ink_xasprintf("%s%s", a, b);
    assert_int_equal(ink_write_file_atomic(both, joined, strlen(joined), 0644, &err), 0);
    free(a);
    free(b);
    free(joined);
    ink_rpc_client *c = node_client(f, f->pki.foreign_crt, f->pki.foreign_key, both);
    ink_rpc_status st;
    assert_int_equal(echo(c, "hello", 3000, &st, NULL), -1);
    assert_int_equal(st.code, GRPC_STATUS_UNAVAILABLE);
    ink_rpc_client_free(c);
}

static void test_client_rejects_foreign_server(void **state)
{
    fixture *f = *state;
    /* A client trusting only the foreign CA must not talk to our server. */
    ink_rpc_client *c = node_client(f, f->pki.foreign_crt, f->pki.foreign_key, f->pki.foreign_ca);
    ink_rpc_status st;
    assert_int_equal(echo(c, "hello", 3000, &st, NULL), -1);
    assert_int_equal(st.code, GRPC_STATUS_UNAVAILABLE);
    ink_rpc_client_free(c);
}

static void test_plaintext_client_rejected(void **state)
{
    fixture *f = *state;
    ink_rpc_client_opts co = {.target = f->target};
    ink_err err = {0};
    ink_rpc_client *c = ink_rpc_client_new(&co, &err);
    ink_rpc_status st;
    assert_int_equal(echo(c, "hello", 3000, &st, NULL), -1);
    assert_int_equal(st.code, GRPC_STATUS_UNAVAILABLE);
    ink_rpc_client_free(c);
}

static void test_wrong_server_name(void **state)
{
    fixture *f = *state;
    /* The server's certificate names ink-coordinator, not n2. */
    ink_tls_files tls = {f->pki.ca, f->pki.node_crt, f->pki.node_key};
    ink_rpc_client_opts co = {.target = f->target, .tls = &tls, .server_name = "n2"};
    ink_err err = {0};
    ink_rpc_client *c = ink_rpc_client_new(&co, &err);
    ink_rpc_status st;
    assert_int_equal(echo(c, "hello", 3000, &st, NULL), -1);
    assert_int_equal(st.code, GRPC_STATUS_UNAVAILABLE);
    ink_rpc_client_free(c);
}

static void test_bad_tls_files(void **state)
{
    fixture *f = *state;
    ink_err err = {0};
    /* Certificate and key that do not belong together. */
    ink_tls_files tls = {f->pki.ca, f->pki.node_crt, f->pki.node2_key};
    ink_rpc_server_opts so = {.listen = "127.0.0.1:0",
                              .tls = &tls,
                              .methods = methods,
                              .nmethods = INK_ARRAY_LEN(methods)};
    assert_null(ink_rpc_server_start(&so, &err));
    assert_non_null(strstr(err.msg, "does not match"));
    ink_tls_files missing = {f->pki.ca, "/nonexistent.crt", f->pki.node_key};
    ink_rpc_client_opts co = {.target = f->target, .tls = &missing};
    assert_null(ink_rpc_client_new(&co, &err));
    assert_non_null(strstr(err.msg, "/nonexistent.crt"));
}

static void test_listen_in_use(void **state)
{
    fixture *f = *state;
    ink_rpc_server_opts so = {
        .listen = f->target, .methods = methods, .nmethods = INK_ARRAY_LEN(methods)};
    ink_err err = {0};
    assert_null(ink_rpc_server_start(&so, &err));
    assert_non_null(strstr(err.msg, "cannot listen"));
}

typedef struct {
    fixture *f;
    ink_rpc_client *c;
    int ok;
} worker_arg;

static void *worker(void *arg)
{
    worker_arg *w = arg;
    for (int i = 0; i < 200; i++) {
        char payload[32];
        snprintf(payload, sizeof payload, "w%d", i);
        ink_rpc_status st;
        Ink__V1__PingResponse *resp = NULL;
        if (echo(w->c, payload, 5000, &st, &resp) == 0 && resp->payload.len == strlen(payload) &&
            memcmp(resp->payload.data, payload, resp->payload.len) == 0)
            w->ok++;
        if (resp)
            protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    return NULL;
}

static void test_concurrent_calls(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = n1_client(f);
    pthread_t t[4];
    worker_arg w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_arg){f, c, 0};
        pthread_create(&t[i], NULL, worker, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].ok, 200);
    }
    ink_rpc_client_free(c);
}

static void test_server_stop_ends_streams(void **state)
{
    fixture *f = *state;
    ink_rpc_client *c = n1_client(f);
    ink_rpc_status st;
    ink_rpc_stream *s = open_stream(c, 1, true, 10000, &st);
    read_one(s);
    ProtobufCMessage *m;
    /* Stop the server with a stream held open by its handler: after the
     * grace period the stream is cancelled and the client hears it. */
    /* The handler stores the call after sending the first message: wait
     * for it rather than race it. */
    ink_rpc_call *held = NULL;
    for (int i = 0; i < 500 && !held; i++) {
        pthread_mutex_lock(&svc.mu);
        held = svc.held;
        svc.held = NULL;
        pthread_mutex_unlock(&svc.mu);
        if (!held)
            usleep(10 * 1000);
    }
    assert_non_null(held);
    ink_rpc_server_stop(f->server, 100);
    f->server = NULL;
    assert_int_equal(ink_rpc_stream_next(s, &m, &st), -1);
    assert_true(st.code == GRPC_STATUS_UNAVAILABLE || st.code == GRPC_STATUS_CANCELLED);
    assert_int_equal(done_calls(), 1);
    ink_rpc_call_unref(held);
    ink_rpc_stream_free(s);
    ink_rpc_client_free(c);
}

static void test_code_names(void **state)
{
    (void)state;
    assert_string_equal(ink_rpc_code_name(GRPC_STATUS_OK), "OK");
    assert_string_equal(ink_rpc_code_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(ink_rpc_code_name((grpc_status_code)99), "UNKNOWN_CODE");
}

int main(void)
{
    ink_rpc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unary_mtls_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_propagated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handler_without_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_ca_client_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_rejects_foreign_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plaintext_client_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_server_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_tls_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_stop_ends_streams, setup, teardown),
        cmocka_unit_test(test_code_names),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    ink_rpc_shutdown();
    return failed;
}
