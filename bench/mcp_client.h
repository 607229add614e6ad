/* A small MCP client over Streamable HTTP for the benches (mcp_bench,
 * mcp_deploy): one libcurl handle (one kept-alive connection), one session.
 * Every request carries Authorization: Bearer KEY, and once the session is
 * open its Mcp-Session-Id and the negotiated MCP-Protocol-Version.
 * Responses come as application/json or as an SSE stream (text/event-stream,
 * the messages on its data: lines); the client picks the JSON-RPC response
 * with the request's id.
 *
 * Errors are not returned: anything unexpected (transport error, HTTP
 * status, no response with the id, a JSON-RPC error) prints the request and
 * the response on stderr and exits 1. Not thread-safe: one client per
 * thread. curl_global_init is the caller's. */
#ifndef INK_BENCH_MCP_CLIENT_H
#define INK_BENCH_MCP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>
#include <jansson.h>

typedef struct mcp_client {
    /* set by the caller before mcp_client_open */
    const char *url;  /* the MCP endpoint, http://HOST:PORT/mcp */
    const char *key;  /* the API key */
    const char *name; /* clientInfo.name, and the prefix of error messages */
    /* the client's */
    CURL *c;
    struct curl_slist *hdrs;
    char sid[160];   /* Mcp-Session-Id */
    char ctype[128]; /* Content-Type of the last response */
    char *body;      /* body of the last response */
    size_t len, cap;
    char *req; /* the tools/call helper's request buffer */
    size_t req_cap;
    const char *last_req; /* body of the last POST (the caller's buffer or req) */
    long last_status;     /* its HTTP status */
    long next_id;
    bool last_sse; /* the last response was text/event-stream */
} mcp_client;

/* Opens a session: initialize, then notifications/initialized. */
void mcp_client_open(mcp_client *cl);
/* Ends the session (DELETE; a status other than 204 is only reported) and
 * frees the client's resources. */
void mcp_client_close(mcp_client *cl);

/* POSTs one JSON-RPC message. want_id >= 0: returns the response with that
 * id (a result; the caller's reference); want_id < 0: a notification, 202
 * expected, returns NULL. */
json_t *mcp_client_post(mcp_client *cl, const char *body, long want_id);
/* An MCP ping round trip. */
void mcp_client_ping(mcp_client *cl);
/* tools/call TOOL with ARGS_JSON (an object as JSON text); returns the
 * call's result object (the caller's reference), tool errors (isError)
 * included: checking them is the caller's. */
json_t *mcp_client_call_tool(mcp_client *cl, const char *tool, const char *args_json);

/* Prints why, the last request and its response on stderr; exits 1. */
_Noreturn void mcp_client_die(const mcp_client *cl, const char *why);

#endif
