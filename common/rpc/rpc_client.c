#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "rpc.h"
#include "util.h"

struct ink_rpc_client {
    grpc_channel *channel;
    char *target;
};

ink_rpc_client *ink_rpc_client_new(const ink_rpc_client_opts *o, ink_err *err)
{
    grpc_channel_credentials *creds = ink_rpc_channel_creds(o->tls, err);
    if (!creds)
        return NULL;
    grpc_arg args[8];
    size_t n = 0;
    args[n++] =
        (grpc_arg){.type = GRPC_ARG_INTEGER,
                   .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                   .value.integer = (int)(o->max_message_bytes ? o->max_message_bytes : 4u << 20)};
    /* Notice a dead peer within ~30 s even on an idle watch stream. */
    args[n++] = (grpc_arg){
        .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIME_MS, .value.integer = 20000};
    args[n++] = (grpc_arg){
        .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS, .value.integer = 10000};
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                           .value.integer = 1};
    /* The callers run their own backoff with jitter between attempts; keep
     * the channel's own reconnect schedule short so it never hides a
     * coordinator that is back. */
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                           .value.integer = 500};
    args[n++] = (grpc_arg){
        .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, .value.integer = 5000};
    if (o->server_name && *o->server_name) {
        args[n++] = (grpc_arg){.type = GRPC_ARG_STRING,
                               .key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
                               .value.string = (char *)o->server_name};
    }
    grpc_channel_args cargs = {.num_args = n, .args = args};
    ink_rpc_client *c = ink_xcalloc(1, sizeof *c);
    c->channel = grpc_channel_create(o->target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    c->target = ink_xstrdup(o->target);
    return c;
}

void ink_rpc_client_free(ink_rpc_client *c)
{
    if (!c)
        return;
    grpc_channel_destroy(c->channel);
    free(c->target);
    free(c);
}

const char *ink_rpc_client_target(const ink_rpc_client *c)
{
    return c->target;
}

static void set_status(ink_rpc_status *st, grpc_status_code code, const char *msg)
{
    if (!st)
        return;
    st->code = code;
    snprintf(st->message, sizeof st->message, "%s", msg ? msg : "");
}

static void set_status_slice(ink_rpc_status *st, grpc_status_code code, grpc_slice details)
{
    char *msg = grpc_slice_to_c_string(details);
    set_status(st, code, msg);
    gpr_free(msg);
}

static void drain_and_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}

static grpc_call *new_call(ink_rpc_client *c, grpc_completion_queue *cq, const char *path,
                           int64_t timeout_ms)
{
    grpc_slice method = grpc_slice_from_static_string(path);
    gpr_timespec deadline = ink_rpc_deadline(timeout_ms);
    return grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                    deadline, NULL);
}

int ink_rpc_unary(ink_rpc_client *c, const char *path, const ProtobufCMessage *request,
                  const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **response,
                  int64_t timeout_ms, ink_rpc_status *st)
{
    *response = NULL;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_call *call = new_call(c, cq, path, timeout_ms);
    grpc_byte_buffer *req_bb = ink_rpc_pack(request);
    grpc_byte_buffer *resp_bb = NULL;
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = req_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &resp_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.status = &code;
    ops[5].data.recv_status_on_client.status_details = &details;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;

    int rc = -1;
    grpc_call_error e = grpc_call_start_batch(call, ops, 6, (void *)1, NULL);
    if (e != GRPC_CALL_OK) {
        set_status(st, GRPC_STATUS_INTERNAL, "cannot start call");
    } else {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
            set_status(st, GRPC_STATUS_INTERNAL, "call failed in transport");
        } else if (code != GRPC_STATUS_OK) {
            set_status_slice(st, code, details);
        } else if (!resp_bb) {
            set_status(st, GRPC_STATUS_INTERNAL, "server sent no response message");
        } else if (!(*response = ink_rpc_unpack(response_type, resp_bb))) {
            set_status(st, GRPC_STATUS_INTERNAL, "malformed response from server");
        } else {
            set_status(st, GRPC_STATUS_OK, "");
            rc = 0;
        }
    }
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    grpc_byte_buffer_destroy(req_bb);
    if (resp_bb)
        grpc_byte_buffer_destroy(resp_bb);
    grpc_call_unref(call);
    drain_and_destroy(cq);
    return rc;
}

/* ----------------------------------------------------------------- streams */

enum { TAG_SEND = 1, TAG_STATUS = 2, TAG_RECV = 3 };

struct ink_rpc_stream {
    pthread_mutex_t mu;
    grpc_completion_queue *cq;
    grpc_call *call;
    const ProtobufCMessageDescriptor *response_type;
    grpc_byte_buffer *req_bb;
    grpc_byte_buffer *recv_bb;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code code;
    grpc_slice details;
    int outstanding; /* batches started and not yet completed */
    bool initial_md_asked;
    bool status_done;
    bool ended;
};

/* Consumes completions until the one tagged `tag` (0: until none is
 * outstanding); the others only update bookkeeping, their data lands in the
 * struct. */
static void stream_wait(ink_rpc_stream *s, int tag)
{
    while (s->outstanding > 0) {
        grpc_event ev =
            grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        s->outstanding--;
        intptr_t t = (intptr_t)ev.tag;
        if (t == TAG_STATUS)
            s->status_done = true;
        if (t == tag)
            return;
    }
}

ink_rpc_stream *ink_rpc_stream_open(ink_rpc_client *c, const char *path,
                                    const ProtobufCMessage *request,
                                    const ProtobufCMessageDescriptor *response_type,
                                    int64_t timeout_ms, ink_rpc_status *st)
{
    ink_rpc_stream *s = ink_xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    s->call = new_call(c, s->cq, path, timeout_ms);
    s->response_type = response_type;
    s->req_bb = ink_rpc_pack(request);
    s->details = grpc_empty_slice();
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);

    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->req_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    if (grpc_call_start_batch(s->call, ops, 3, (void *)TAG_SEND, NULL) != GRPC_CALL_OK) {
        set_status(st, GRPC_STATUS_INTERNAL, "cannot start stream");
        ink_rpc_stream_free(s);
        return NULL;
    }
    s->outstanding++;
    grpc_op status_op = {0};
    status_op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    status_op.data.recv_status_on_client.status = &s->code;
    status_op.data.recv_status_on_client.status_details = &s->details;
    status_op.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    if (grpc_call_start_batch(s->call, &status_op, 1, (void *)TAG_STATUS, NULL) != GRPC_CALL_OK) {
        set_status(st, GRPC_STATUS_INTERNAL, "cannot start stream");
        ink_rpc_stream_free(s);
        return NULL;
    }
    s->outstanding++;
    set_status(st, GRPC_STATUS_OK, "");
    return s;
}

static int stream_end(ink_rpc_stream *s, ink_rpc_status *st)
{
    if (!s->status_done)
        stream_wait(s, TAG_STATUS);
    s->ended = true;
    set_status_slice(st, s->code, s->details);
    return s->code == GRPC_STATUS_OK ? 0 : -1;
}

int ink_rpc_stream_next(ink_rpc_stream *s, ProtobufCMessage **message, ink_rpc_status *st)
{
    *message = NULL;
    if (s->ended) {
        set_status_slice(st, s->code, s->details);
        return s->code == GRPC_STATUS_OK ? 0 : -1;
    }
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!s->initial_md_asked) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
        s->initial_md_asked = true;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &s->recv_bb;
    if (grpc_call_start_batch(s->call, ops, n, (void *)TAG_RECV, NULL) != GRPC_CALL_OK)
        return stream_end(s, st);
    s->outstanding++;
    stream_wait(s, TAG_RECV);
    if (!s->recv_bb)
        return stream_end(s, st);
    *message = ink_rpc_unpack(s->response_type, s->recv_bb);
    grpc_byte_buffer_destroy(s->recv_bb);
    s->recv_bb = NULL;
    if (!*message) {
        ink_rpc_stream_cancel(s);
        stream_end(s, st);
        set_status(st, GRPC_STATUS_INTERNAL, "malformed message from server");
        return -1;
    }
    return 1;
}

void ink_rpc_stream_cancel(ink_rpc_stream *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->call)
        grpc_call_cancel(s->call, NULL);
    pthread_mutex_unlock(&s->mu);
}

void ink_rpc_stream_free(ink_rpc_stream *s)
{
    if (!s)
        return;
    if (s->call && s->outstanding > 0) {
        grpc_call_cancel(s->call, NULL);
        stream_wait(s, 0);
    }
    pthread_mutex_lock(&s->mu);
    if (s->call)
        grpc_call_unref(s->call);
    s->call = NULL;
    pthread_mutex_unlock(&s->mu);
    if (s->recv_bb)
        grpc_byte_buffer_destroy(s->recv_bb);
    grpc_byte_buffer_destroy(s->req_bb);
    grpc_slice_unref(s->details);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    drain_and_destroy(s->cq);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
