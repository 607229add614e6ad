/* The MCP (Model Context Protocol) server core, independent of the
 * transport: JSON-RPC 2.0 framing, the session lifecycle (initialize,
 * notifications/initialized, ping), tools (tools/list with pagination,
 * tools/call with input and output schemas), logging/setLevel, progress
 * notifications and cancellation. Protocol revision 2025-11-25; clients
 * asking for 2025-06-18 or 2025-03-26 get that revision.
 *
 * A transport (stdio or Streamable HTTP, below) owns the bytes: it feeds
 * each incoming JSON-RPC message to ink_mcp_session_handle*() and writes
 * what the session emits. Tools run through handlers that may answer at
 * once or later from any thread.
 *
 * Threads: an ink_mcp_server is set up on one thread (new, add_tool, the
 * setters) and is read-only afterwards, shared by any number of sessions.
 * A session may be fed from several threads at once; its state, its table
 * of calls in flight and every emit are serialised by one mutex. Emit and
 * done callbacks run with that mutex held: they must not call back into
 * the session and should not block for long. */
#ifndef INK_MCP_H
#define INK_MCP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define INK_MCP_LATEST_VERSION "2025-11-25"
#define INK_MCP_DEFAULT_MAX_MESSAGE ((size_t)4 << 20)
#define INK_MCP_DEFAULT_PAGE_SIZE 50
/* Tool names, as the 2025-11-25 revision asks: 1..128 of [A-Za-z0-9_.-]. */
#define INK_MCP_TOOL_NAME_MAX 128

/* ------------------------------------------------------------ JSON-RPC */

enum {
    INK_JSONRPC_PARSE_ERROR = -32700,
    INK_JSONRPC_INVALID_REQUEST = -32600,
    INK_JSONRPC_METHOD_NOT_FOUND = -32601,
    INK_JSONRPC_INVALID_PARAMS = -32602,
    INK_JSONRPC_INTERNAL_ERROR = -32603,
};

typedef enum {
    INK_JSONRPC_REQUEST,      /* method + id */
    INK_JSONRPC_NOTIFICATION, /* method, no id */
    INK_JSONRPC_RESPONSE,     /* result or error + id (the server sends no requests: ignored) */
    INK_JSONRPC_INVALID,      /* anything else: answered with -32600 */
} ink_jsonrpc_kind;

/* One message taken apart. Pointers borrow from the message. */
typedef struct ink_jsonrpc_msg {
    ink_jsonrpc_kind kind;
    const char *method; /* requests and notifications */
    json_t *id;         /* requests and responses; INVALID: the id when usable, else NULL */
    json_t *params;     /* object or array; NULL when absent */
    const char *why;    /* INVALID: what is wrong, for the error message */
} ink_jsonrpc_msg;

/* Request ids are strings or integers (MCP forbids null; JSON-RPC
 * discourages fractions). */
bool ink_jsonrpc_valid_id(const json_t *id);
void ink_jsonrpc_classify(json_t *msg, ink_jsonrpc_msg *out);

/* Builders; id NULL stands for JSON null. result and params are stolen. */
json_t *ink_jsonrpc_result(const json_t *id, json_t *result);
json_t *ink_jsonrpc_error(const json_t *id, int code, const char *message);
json_t *ink_jsonrpc_notification(const char *method, json_t *params);
/* Compact, one line (strings escape every control character, so no
 * newline can appear), malloc'd. */
char *ink_jsonrpc_dump(const json_t *msg);
/* A JSON string from C text that may hold invalid UTF-8 (cut error
 * messages, handler output): bad bytes become U+FFFD. Never NULL. */
json_t *ink_json_text(const char *s);

/* ------------------------------------------------------- JSON Schema */

/* A small validator for tool input and output schemas (JSON Schema
 * 2020-12 subset): type (one name or an array of them), properties,
 * required, additionalProperties (boolean or schema), enum, const,
 * minimum, maximum, exclusiveMinimum, exclusiveMaximum, minLength,
 * maxLength (in code points), items, minItems, maxItems, boolean schemas.
 * Annotations ($schema, $id, $comment, title, description, default,
 * examples, format, deprecated, readOnly, writeOnly) are accepted and not
 * enforced. Any other keyword (pattern, $ref, oneOf, ...) is refused when
 * the schema is parsed, so a tool never believes a constraint is enforced
 * when it is not.
 *
 * "integer" means a JSON integer literal: 3.0 is refused, so handlers can
 * read every such value with json_integer_value(). */
typedef struct ink_mcp_schema ink_mcp_schema;

ink_mcp_schema *ink_mcp_schema_parse(const char *json_text, ink_err *err);
/* Validates value; on failure err names the JSON path from root, e.g.
 * "arguments.env.PORT: expected string, got integer". */
int ink_mcp_schema_validate(const ink_mcp_schema *s, const json_t *value, const char *root,
                            ink_err *err);
const json_t *ink_mcp_schema_json(const ink_mcp_schema *s);
/* The root schema's "type" when it is a single name, else NULL. */
const char *ink_mcp_schema_root_type(const ink_mcp_schema *s);
void ink_mcp_schema_free(ink_mcp_schema *s);

/* ------------------------------------------------------------- server */

typedef struct ink_mcp_server ink_mcp_server;
typedef struct ink_mcp_session ink_mcp_session;
typedef struct ink_mcp_call ink_mcp_call;

/* Where a session writes a JSON-RPC message: one line, without the
 * newline. Called with the session mutex held (see the top). */
typedef void (*ink_mcp_emit_fn)(void *arg, const char *json_line);

typedef struct ink_mcp_tool {
    const char *name;        /* 1..128 of [A-Za-z0-9_.-], unique */
    const char *title;       /* optional: display name */
    const char *description; /* optional, but the model reads it: say what the tool does */
    /* JSON Schema text. Input: required, root "type": "object". Output:
     * optional; when given, root "type": "object" and every successful
     * result must carry structured content that matches it. */
    const char *input_schema_json, *output_schema_json;
    bool read_only, destructive, idempotent; /* readOnlyHint, destructiveHint, idempotentHint */
    /* Runs one call. arguments (an object, validated against the input
     * schema) stays valid until the call is completed. The handler must
     * complete the call exactly once with ink_mcp_call_result() or
     * ink_mcp_call_error(), before returning or later from any thread;
     * the call must not be touched afterwards. Handlers run on the thread
     * that fed the message, so long work belongs on another thread. */
    void (*handler)(ink_mcp_call *call, const json_t *arguments, void *ctx);
    /* Optional: told of a call whose arguments the input schema refused
     * (the server answers it with the message as a tool error right after;
     * the call must not be completed here). For an audit trail that also
     * records calls refused before their handler ran. */
    void (*on_invalid)(ink_mcp_call *call, const json_t *arguments, const char *message, void *ctx);
    void *ctx;
} ink_mcp_tool;

/* instructions may be NULL. Aborts only when out of memory. */
ink_mcp_server *ink_mcp_server_new(const char *name, const char *version, const char *instructions);
/* Copies the tool (strings too). Fails on a bad or duplicate name, a
 * missing handler, or a schema that does not parse or is not an object
 * schema. tools/list lists tools in the order they were added. */
int ink_mcp_server_add_tool(ink_mcp_server *s, const ink_mcp_tool *t, ink_err *err);
void ink_mcp_server_set_page_size(ink_mcp_server *s, size_t n); /* tools/list page; >= 1 */
/* Largest message ink_mcp_session_handle*() accepts, in bytes (default
 * INK_MCP_DEFAULT_MAX_MESSAGE). Transports read at most this much plus one
 * byte per message. */
void ink_mcp_server_set_max_message(ink_mcp_server *s, size_t bytes);
size_t ink_mcp_server_max_message(const ink_mcp_server *s);
/* After every session has been freed and every call completed. */
void ink_mcp_server_free(ink_mcp_server *s);

/* ------------------------------------------------------------ session */

/* emit (may be NULL: such messages are dropped) receives what is not tied
 * to a message passed with a sink of its own. auth is opaque to the core:
 * the caller's identity, handed to handlers by ink_mcp_call_auth(). */
ink_mcp_session *ink_mcp_session_new(ink_mcp_server *s, ink_mcp_emit_fn emit, void *arg,
                                     void *auth);

/* Handles one incoming JSON-RPC message (a single object or, for a
 * 2025-03-26 session, a batch array) and emits the responses through the
 * session's emit. Returns -1 when the message was refused as a whole (more
 * than the maximum size, not JSON, not a JSON-RPC message, a batch the
 * session does not take); the client still gets the JSON-RPC error
 * (-32700, -32600), with id null unless the message had a usable one.
 * Returns 0 otherwise, even when the request failed (unknown method, bad
 * params, tool errors). */
int ink_mcp_session_handle(ink_mcp_session *ses, const char *text, size_t len);

/* For transports that answer each message on its own channel (Streamable
 * HTTP: the POST's response or SSE stream). Everything caused by this
 * message goes to sink->emit: responses, and the progress and log
 * notifications of its tool calls. Once every request in it has been
 * answered (or cancelled, or the session freed), sink->done runs exactly
 * once, possibly before this returns (always, when the message held no
 * requests), and sink->arg is not used again. */
typedef struct ink_mcp_sink {
    ink_mcp_emit_fn emit;
    void (*done)(void *arg); /* may be NULL */
    void *arg;
} ink_mcp_sink;
int ink_mcp_session_handle_routed(ink_mcp_session *ses, const char *text, size_t len,
                                  const ink_mcp_sink *sink);

/* The negotiated revision, or NULL before initialize. */
const char *ink_mcp_session_protocol_version(ink_mcp_session *ses);
/* Waits until no tool call is in flight; false when timeout_ms passed
 * first (timeout_ms < 0: no limit). */
bool ink_mcp_session_wait_idle(ink_mcp_session *ses, int timeout_ms);
/* Marks every call in flight cancelled and emits nothing more (their
 * sinks' done still runs). Calls keep their memory until their handlers
 * complete them, so handlers on other threads stay safe. No thread may be
 * inside ink_mcp_session_handle*() for this session any more. */
void ink_mcp_session_free(ink_mcp_session *ses);

/* --------------------------------------------------------- for handlers */

void *ink_mcp_call_auth(ink_mcp_call *c);
const char *ink_mcp_call_tool(ink_mcp_call *c);
/* The client sent notifications/cancelled for this call, or the session
 * ended: stop work and complete the call; its response is not sent. */
bool ink_mcp_call_cancelled(ink_mcp_call *c);
/* notifications/progress, only when the client sent _meta.progressToken.
 * progress must grow from one notification to the next (others are
 * dropped, as the spec requires it to increase); total <= 0 means
 * unknown; message may be NULL. */
void ink_mcp_call_progress(ink_mcp_call *c, double progress, double total, const char *message);
/* notifications/message with logger = the tool's name, when level
 * (debug, info, notice, warning, error, critical, alert, emergency) is at
 * least the session's level (logging/setLevel; "info" until the client
 * sets one). */
void ink_mcp_call_log(ink_mcp_call *c, const char *level, const char *text);
/* Completes the call with structured content (stolen; an object, or NULL
 * for a tool without an output schema) and a text summary for the model:
 * content [{type: text, text: summary}] plus structuredContent. A
 * 2025-03-26 client predates structuredContent and gets it as a second
 * text block holding the JSON instead. structured is always validated
 * against the tool's output schema (the spec makes conformance a MUST, and
 * a check costs little next to the work a tool does): a mismatch is logged
 * and the client gets a tool error saying so instead of a result that
 * breaks its contract. */
void ink_mcp_call_result(ink_mcp_call *c, json_t *structured, const char *text_summary);
/* Completes the call with a tool execution error (isError: true), the
 * message written for the model to act on. */
void ink_mcp_call_error(ink_mcp_call *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------- stdio */

/* The stdio transport: newline-delimited JSON-RPC messages read from in_fd,
 * everything the session emits written to out_fd, one message per line. */
typedef struct ink_mcp_stdio_opts {
    int in_fd, out_fd;
    int stop_fd; /* -1, or a descriptor that becomes readable to stop (eventfd, pipe) */
    void *auth;  /* handed to the session */
    /* At end of input: how long calls in flight may take to finish (their
     * responses are still written) before they are cancelled. */
    int drain_ms;
} ink_mcp_stdio_opts;

/* Runs one session until end of input, a stop request or an I/O error
 * (-1). A line longer than the server's maximum message is answered with
 * an error and skipped. The process must ignore SIGPIPE (daemons do: see
 * ink_block_signals) so a vanished reader is an EPIPE error. */
int ink_mcp_stdio_run(ink_mcp_server *s, const ink_mcp_stdio_opts *o, ink_err *err);

/* -------------------------------------------------------- Streamable HTTP */

/* The Streamable HTTP transport (2025-11-25) on one endpoint, /mcp, served
 * by libmicrohttpd with a thread per connection.
 *
 *   POST   one JSON-RPC message (or a 2025-03-26 batch). An initialize
 *          without Mcp-Session-Id creates a session and answers with its id
 *          in Mcp-Session-Id; every later request must carry it (missing:
 *          400, unknown or expired: 404). MCP-Protocol-Version, when sent,
 *          must equal the negotiated revision (else 400); when absent the
 *          negotiated one is used, which the spec allows as "another way to
 *          identify the version". Only notifications or responses: 202 and
 *          no body. A request answered while the POST is being handled:
 *          application/json; one that is still running (or that emitted
 *          progress or log notifications): text/event-stream carrying its
 *          notifications and then its response. A message refused as a
 *          whole (not JSON, not JSON-RPC): 400 with the JSON-RPC error.
 *          Content-Type must be application/json (415); an Accept header
 *          that admits neither application/json nor text/event-stream gets
 *          406 (no Accept header at all means "anything", per HTTP). A body
 *          over max_body: 413, without reading it when Content-Length says
 *          so.
 *   GET    405: this server never speaks first (no server-to-client
 *          requests, no list changes), which the spec lets it say so.
 *   DELETE ends the session: 204.
 *
 * Every request: an Origin header outside allowed_origins gets 403 (DNS
 * rebinding); authenticate (when set) returning NULL gets 401 with
 * WWW-Authenticate: Bearer. A session is bound to the identity that
 * created it: another identity gets 404 for it, as if it did not exist. */
typedef struct ink_mcp_http ink_mcp_http;
typedef struct ink_mcp_http_opts {
    const char *listen; /* "host:port"; NULL: "127.0.0.1:7441"; port 0: the kernel picks */
    const char *const *allowed_origins; /* exact Origin values let through */
    size_t nallowed_origins;
    size_t max_body; /* 0: ink_mcp_server_max_message() */
    /* Returns the caller's identity (a stable pointer: it becomes the
     * session's auth and is compared with it on every request), or NULL to
     * refuse. authorization is the header's value, NULL when absent. NULL
     * function: no authentication. Runs on connection threads. */
    void *(*authenticate)(void *arg, const char *authorization);
    void *auth_arg;
    int64_t session_idle_ms; /* 0: 30 minutes */
} ink_mcp_http_opts;

/* Listens and serves on threads of its own until ink_mcp_http_stop(). */
ink_mcp_http *ink_mcp_http_start(ink_mcp_server *s, const ink_mcp_http_opts *o, ink_err *err);
int ink_mcp_http_port(const ink_mcp_http *h);
/* Closes every connection and frees every session (their calls in flight
 * are cancelled, as by ink_mcp_session_free). */
void ink_mcp_http_stop(ink_mcp_http *h);

#endif
