#include <grpc/byte_buffer_reader.h>
#include <grpc/support/time.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"
#include "util.h"

void ink_rpc_init(void)
{
    grpc_init();
}

void ink_rpc_shutdown(void)
{
    /* Blocking, so that gRPC's threads and memory are gone when main()
     * returns (valgrind checks the daemons' unit tests). */
    grpc_shutdown_blocking();
}

const char *ink_rpc_code_name(grpc_status_code code)
{
    static const char *names[] = {"OK",
                                  "CANCELLED",
                                  "UNKNOWN",
                                  "INVALID_ARGUMENT",
                                  "DEADLINE_EXCEEDED",
                                  "NOT_FOUND",
                                  "ALREADY_EXISTS",
                                  "PERMISSION_DENIED",
                                  "RESOURCE_EXHAUSTED",
                                  "FAILED_PRECONDITION",
                                  "ABORTED",
                                  "OUT_OF_RANGE",
                                  "UNIMPLEMENTED",
                                  "INTERNAL",
                                  "UNAVAILABLE",
                                  "DATA_LOSS",
                                  "UNAUTHENTICATED"};
    if ((int)code >= 0 && (size_t)code < INK_ARRAY_LEN(names))
        return names[code];
    return "UNKNOWN_CODE";
}

gpr_timespec ink_rpc_deadline(int64_t timeout_ms)
{
    if (timeout_ms <= 0)
        timeout_ms = 1;
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

grpc_byte_buffer *ink_rpc_pack(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    grpc_slice slice = grpc_slice_malloc(len);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

ProtobufCMessage *ink_rpc_unpack(const ProtobufCMessageDescriptor *type, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    grpc_slice slice = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    ProtobufCMessage *m = protobuf_c_message_unpack(type, NULL, GRPC_SLICE_LENGTH(slice),
                                                    GRPC_SLICE_START_PTR(slice));
    grpc_slice_unref(slice);
    return m;
}
