/* The coordinator's MCP tools: what AI agents call to deploy and run apps
 * (create_app, update_app, get_app_logs, exec_command, ...), on top of the
 * app layer (apps.h) and the nodes' AgentService.
 *
 * The MCP core hands every tools/call to a handler on the thread that fed
 * the message (a transport thread): the handlers here only queue the call
 * for a small pool of worker threads. Deployments then wait for their
 * operation on one ticker thread, which polls every wait together, so a
 * few slow deployments cannot starve the workers of reads.
 *
 * Who calls is the session's auth pointer: an ink_caller owned by the
 * ink_tools, one per API key id, so the pointer stays valid and comparable
 * for as long as the tools live. */
#ifndef INK_TOOLS_H
#define INK_TOOLS_H

#include <stdbool.h>
#include <stdint.h>

#include "apps.h"
#include "coordinator.h"
#include "err.h"
#include "mcp.h"
#include "store.h"

#define INK_TOOLS_DEFAULT_THREADS 8

typedef struct ink_tools_ctx {
    ink_store *store;
    /* tls_ca/tls_cert/tls_key and insecure_dev (calls to agents),
     * node_timeout_ms (list_nodes), deploy_wait_ms, mcp_max_body. */
    const ink_coordinator_config *cfg;
    /* Called after a request changed the desired state, so that whoever
     * applies it does not wait for its next poll; NULL: nobody to wake. */
    void (*kick)(void *arg);
    void *kick_arg;
    /* The stdio transport verifies its key once at start; with the key
     * here it is verified again before every call, so that a revocation
     * takes effect at once there too. NULL over HTTP, which verifies every
     * request. Copied. */
    const char *recheck_key;
    int threads; /* workers; 0: INK_TOOLS_DEFAULT_THREADS */
} ink_tools_ctx;

typedef struct ink_tools ink_tools;

/* Registers every tool on a new MCP server and starts the threads. */
ink_tools *ink_tools_new(const ink_tools_ctx *ctx, ink_err *err);
ink_mcp_server *ink_tools_server(ink_tools *t);
/* Something may have changed for the deployments waiting (an operation
 * ended): they look now rather than at their next tick. Any thread. */
void ink_tools_poke(ink_tools *t);

/* 1: key is a valid API key and *who its caller (stable, owned by t);
 * 0: it is not (malformed, unknown, revoked); -1: database error. */
int ink_tools_verify_key(ink_tools *t, const char *key, const ink_caller **who, ink_err *err);
/* For ink_mcp_http_opts.authenticate (arg: the ink_tools): the caller for
 * "Authorization: Bearer <key>", verified on every request, or NULL. */
void *ink_tools_authenticate(void *arg, const char *authorization);

/* The Streamable HTTP transport on cfg->mcp_listen with the origins of
 * cfg->mcp_allowed_origins, cfg->mcp_max_body and Bearer authentication.
 * Stop it (ink_mcp_http_stop) before ink_tools_free(). */
ink_mcp_http *ink_tools_http_start(ink_tools *t, ink_err *err);

/* Calls waiting in the queue fail ("shutting down"), calls to agents are
 * cancelled, deployments still waiting answer with their current state;
 * then the threads are joined and the server freed. Every session must be
 * gone already (HTTP stopped, stdio returned). */
void ink_tools_free(ink_tools *t);

#endif
