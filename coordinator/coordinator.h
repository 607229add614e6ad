/* ink-coordinator: the central, thin part. This header ties its pieces
 * together: configuration, the state store, NodeService (agents register,
 * watch their assignments and report status) and the background loop that
 * feeds watch streams and tracks node liveness. */
#ifndef INK_COORDINATOR_H
#define INK_COORDINATOR_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "rpc/rpc.h"
#include "store.h"

typedef struct ink_coordinator_config {
    char *listen;
    char *database;
    char *pki_dir;
    char *tls_ca;
    char *tls_cert;
    char *tls_key;
    bool insecure_dev;
    int64_t heartbeat_interval_ms;
    int64_t node_timeout_ms;
    int64_t node_lost_timeout_ms;
    int64_t watch_progress_ms;
    int64_t watch_stream_timeout_ms;
    int64_t rpc_threads;
    char *log_level;
    char *log_format;
    /* MCP (tools.c) */
    char *mcp_listen;          /* "" disables the HTTP transport */
    char *mcp_allowed_origins; /* comma-separated exact Origin values */
    uint64_t mcp_max_body;
    int64_t deploy_wait_ms;
} ink_coordinator_config;

extern const ink_opt ink_coordinator_options[];

#define INK_COORDINATOR_DEFAULT_CONFIG "/etc/ink/coordinator.conf"

typedef struct ink_watcher ink_watcher;

typedef struct ink_coordinator {
    const ink_coordinator_config *cfg;
    ink_store *store;
    ink_rpc_server *rpc;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stopping;
    bool kicked;
    ink_watcher *watchers;
    pthread_t loop_thread;
    bool loop_running;
    /* Called after a controller pass that wrote something (an operation
     * may have ended): deploy waits look at once instead of at their next
     * tick. Set with ink_coordinator_on_progress. */
    void (*on_progress)(void *arg);
    void *on_progress_arg;

    /* liveness: last state logged per node, to log transitions once */
    struct node_state {
        char id[64];
        bool ready;
    } * known;
    size_t nknown;
} ink_coordinator;

/* Opens the store and starts NodeService and the background loop. */
int ink_coordinator_start(ink_coordinator *c, const ink_coordinator_config *cfg, ink_err *err);
void ink_coordinator_stop(ink_coordinator *c);
/* Wakes the watch pump after a change to the desired state. */
void ink_coordinator_kick(ink_coordinator *c);

void ink_coordinator_on_progress(ink_coordinator *c, void (*fn)(void *arg), void *arg);

/* Node liveness, derived from the last heartbeat. */
bool ink_node_is_ready(const ink_node_row *n, int64_t now_ms, int64_t timeout_ms);

/* NodeService method table, for the RPC server. */
extern const ink_rpc_method ink_node_service_methods[];
extern const size_t ink_node_service_nmethods;

/* Watch streams, fed by the background loop. */
void ink_watchers_pump(ink_coordinator *c);
void ink_watchers_release_all(ink_coordinator *c);

/* Subcommands. */
int ink_cmd_nodes(const ink_coordinator_config *cfg, int argc, char **argv);
int ink_cmd_pki(const ink_coordinator_config *cfg, int argc, char **argv);
/* workload put|rm|ls (argv[0] is the subcommand), writing its results to
 * out and its messages to errf. 0 done, 1 failed, 2 usage error. */
int ink_cmd_workload(const ink_coordinator_config *cfg, int argc, char **argv, FILE *out,
                     FILE *errf);

#endif
