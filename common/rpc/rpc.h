/* A small RPC layer over the gRPC core C API and protobuf-c.
 *
 * gRPC ships no C service generator, so methods are registered by path
 * ("/ink.v1.NodeService/Register") with the protobuf-c descriptor of their
 * request. The server runs a few threads polling one completion queue;
 * handlers run on those threads and answer with ink_rpc_reply() (unary),
 * or ink_rpc_send() ... ink_rpc_finish() (server streaming), either before
 * returning or later from any thread after taking a reference.
 *
 * The client side is blocking: a unary call or a stream read waits on a
 * completion queue private to the call. Every call has a deadline. A stream
 * read can be interrupted from another thread with ink_rpc_stream_cancel().
 *
 * Transport security is mutual TLS with the cluster CA (common/pki.h);
 * passing no TLS files selects plaintext, which the daemons only allow
 * behind --insecure-dev. */
#ifndef INK_RPC_H
#define INK_RPC_H

#include <grpc/grpc.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct ink_rpc_status {
    grpc_status_code code;
    char message[256];
} ink_rpc_status;

typedef struct ink_tls_files {
    const char *ca;   /* PEM of the cluster CA */
    const char *cert; /* our certificate */
    const char *key;  /* its private key */
} ink_tls_files;

/* Process-wide gRPC setup and teardown; call once each from main(). */
void ink_rpc_init(void);
void ink_rpc_shutdown(void);

const char *ink_rpc_code_name(grpc_status_code code);

/* ------------------------------------------------------------------ server */

typedef struct ink_rpc_server ink_rpc_server;
typedef struct ink_rpc_call ink_rpc_call;

/* The request is only valid during the handler; copy what you keep. */
typedef void (*ink_rpc_handler)(ink_rpc_call *call, const ProtobufCMessage *request, void *ctx);

typedef struct ink_rpc_method {
    const char *path;
    const ProtobufCMessageDescriptor *request_type;
    bool server_streaming;
    ink_rpc_handler handler;
} ink_rpc_method;

typedef struct ink_rpc_server_opts {
    const char *listen;       /* "host:port"; port 0 picks a free port */
    const ink_tls_files *tls; /* NULL = plaintext */
    const ink_rpc_method *methods;
    size_t nmethods;
    void *ctx;                /* passed to every handler */
    int threads;              /* completion-queue pollers; 0 = 1 */
    size_t max_message_bytes; /* 0 = 4 MiB */
} ink_rpc_server_opts;

ink_rpc_server *ink_rpc_server_start(const ink_rpc_server_opts *opts, ink_err *err);
int ink_rpc_server_port(const ink_rpc_server *s);
/* Stops accepting calls, lets running calls finish for grace_ms, cancels the
 * rest, joins the pollers and frees everything. */
void ink_rpc_server_stop(ink_rpc_server *s, int64_t grace_ms);

/* Unary answer: message then status OK. */
int ink_rpc_reply(ink_rpc_call *call, const ProtobufCMessage *response);
/* Streaming: queue one message. Returns the number of messages queued and
 * not yet written (for flow control), or -1 when the call is already over. */
int ink_rpc_send(ink_rpc_call *call, const ProtobufCMessage *message);
/* Messages queued or being written, not yet handed to the transport. */
size_t ink_rpc_pending(ink_rpc_call *call);
/* Ends the call with a status, after every queued message is written. Used
 * for errors on unary calls too. */
int ink_rpc_finish(ink_rpc_call *call, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A handler that answers after returning must hold a reference. */
void ink_rpc_call_ref(ink_rpc_call *call);
void ink_rpc_call_unref(ink_rpc_call *call);
/* fn runs once, when the call is over (finished, cancelled by the client,
 * deadline passed or server stopping); if it is already over, right away. */
void ink_rpc_call_on_done(ink_rpc_call *call, void (*fn)(ink_rpc_call *, void *), void *arg);
bool ink_rpc_call_is_over(ink_rpc_call *call);

/* The authenticated peer: CN and OU of the client certificate, or empty
 * strings on a plaintext server. */
bool ink_rpc_call_authenticated(const ink_rpc_call *call);
const char *ink_rpc_call_peer_name(const ink_rpc_call *call);
const char *ink_rpc_call_peer_role(const ink_rpc_call *call);
const char *ink_rpc_call_peer_address(const ink_rpc_call *call);

/* ------------------------------------------------------------------ client */

typedef struct ink_rpc_client ink_rpc_client;
typedef struct ink_rpc_stream ink_rpc_stream;

typedef struct ink_rpc_client_opts {
    const char *target;       /* "host:port" */
    const ink_tls_files *tls; /* NULL = plaintext */
    const char *server_name;  /* name the server certificate must carry */
    size_t max_message_bytes; /* 0 = 4 MiB */
} ink_rpc_client_opts;

ink_rpc_client *ink_rpc_client_new(const ink_rpc_client_opts *opts, ink_err *err);
void ink_rpc_client_free(ink_rpc_client *c);
const char *ink_rpc_client_target(const ink_rpc_client *c);

/* Returns 0 and a response to free with protobuf_c_message_free_unpacked(),
 * or -1 with the status filled in. */
int ink_rpc_unary(ink_rpc_client *c, const char *path, const ProtobufCMessage *request,
                  const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **response,
                  int64_t timeout_ms, ink_rpc_status *status);

ink_rpc_stream *ink_rpc_stream_open(ink_rpc_client *c, const char *path,
                                    const ProtobufCMessage *request,
                                    const ProtobufCMessageDescriptor *response_type,
                                    int64_t timeout_ms, ink_rpc_status *status);
/* 1: a message in *message; 0: the stream ended with status OK; -1: it ended
 * with an error status (cancelled, deadline, server error, ...). */
int ink_rpc_stream_next(ink_rpc_stream *s, ProtobufCMessage **message, ink_rpc_status *status);
/* Safe from any thread while another one is blocked in ink_rpc_stream_next. */
void ink_rpc_stream_cancel(ink_rpc_stream *s);
void ink_rpc_stream_free(ink_rpc_stream *s);

/* ----------------------------------------------------------------- internal */

grpc_byte_buffer *ink_rpc_pack(const ProtobufCMessage *m);
ProtobufCMessage *ink_rpc_unpack(const ProtobufCMessageDescriptor *type, grpc_byte_buffer *bb);
grpc_channel_credentials *ink_rpc_channel_creds(const ink_tls_files *tls, ink_err *err);
grpc_server_credentials *ink_rpc_server_creds(const ink_tls_files *tls, ink_err *err);
gpr_timespec ink_rpc_deadline(int64_t timeout_ms);

#endif
