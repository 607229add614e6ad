#include "coordinator.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controller.h"
#include "log.h"
#include "util.h"

/* OPT(field, ...) names the option after its field; OPTN gives another
 * name (durations are named without their _ms unit: "5s" reads better). */
#define OPTN(name, field, type, def, help, ...)                                                    \
    {                                                                                              \
        name, type, offsetof(ink_coordinator_config, field), def, help, __VA_ARGS__                \
    }
#define OPT(field, ...) OPTN(#field, field, __VA_ARGS__)

const ink_opt ink_coordinator_options[] = {
    OPT(listen, INK_OPT_STRING, "127.0.0.1:7440",
        "address of NodeService (agents connect here); 0.0.0.0:7440 for remote nodes", 0, 0),
    OPT(database, INK_OPT_STRING, "/var/lib/ink/coordinator/ink.db", "SQLite state file", 0, 0),
    OPT(pki_dir, INK_OPT_STRING, "/etc/ink/pki", "cluster CA (ca.crt, ca.key) for `pki` commands",
        0, 0),
    OPT(tls_ca, INK_OPT_STRING, "/etc/ink/pki/ca.crt", "CA that signs every node certificate", 0,
        0),
    OPT(tls_cert, INK_OPT_STRING, "/etc/ink/pki/ink-coordinator.crt",
        "the coordinator's certificate", 0, 0),
    OPT(tls_key, INK_OPT_STRING, "/etc/ink/pki/ink-coordinator.key", "its private key", 0, 0),
    OPT(insecure_dev, INK_OPT_BOOL, "false",
        "plaintext gRPC without client certificates: development only", 0, 0),
    OPTN("heartbeat_interval", heartbeat_interval_ms, INK_OPT_DURATION, "5s",
         "how often agents report status", 100, 600000),
    OPTN("node_timeout", node_timeout_ms, INK_OPT_DURATION, "20s",
         "silence after which a node is marked unreachable", 500, 86400000),
    OPTN("node_lost_timeout", node_lost_timeout_ms, INK_OPT_DURATION, "2m",
         "silence after which a node's replicas are placed on other nodes", 1000, 604800000),
    OPTN("watch_progress", watch_progress_ms, INK_OPT_DURATION, "10s",
         "keepalive event on quiet assignment streams", 100, 3600000),
    OPTN("watch_stream_timeout", watch_stream_timeout_ms, INK_OPT_DURATION, "10m",
         "assignment streams end after this and agents resume them", 1000, 86400000),
    OPT(rpc_threads, INK_OPT_INT, "1", "gRPC completion-queue threads", 1, 64),
    OPT(log_level, INK_OPT_STRING, "info", "debug, info, warn or error", 0, 0),
    OPT(log_format, INK_OPT_STRING, "auto", "auto (journal when under systemd), logfmt, journal", 0,
        0),
    OPT(mcp_listen, INK_OPT_STRING, "127.0.0.1:7441",
        "address of the MCP Streamable HTTP endpoint (/mcp); empty disables it", 0, 0),
    OPT(mcp_allowed_origins, INK_OPT_STRING, "",
        "comma-separated Origin values allowed on MCP requests (none: no browser pages)", 0, 0),
    OPT(mcp_max_body, INK_OPT_SIZE, "4M", "largest MCP request body", 65536, 268435456),
    OPTN("deploy_wait", deploy_wait_ms, INK_OPT_DURATION, "45s",
         "how long create_app and update_app wait for the app to serve", 1000, 600000),
    {0},
};

bool ink_node_is_ready(const ink_node_row *n, int64_t now_ms, int64_t timeout_ms)
{
    return now_ms - n->last_seen_ms <= timeout_ms;
}

void ink_coordinator_kick(ink_coordinator *c)
{
    pthread_mutex_lock(&c->mu);
    c->kicked = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

void ink_coordinator_on_progress(ink_coordinator *c, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&c->mu);
    c->on_progress = fn;
    c->on_progress_arg = arg;
    pthread_mutex_unlock(&c->mu);
}

static struct node_state *known_node(ink_coordinator *c, const char *id)
{
    for (size_t i = 0; i < c->nknown; i++) {
        if (strcmp(c->known[i].id, id) == 0)
            return &c->known[i];
    }
    struct node_state *nk = realloc(c->known, (c->nknown + 1) * sizeof *nk);
    if (!nk)
        abort();
    c->known = nk;
    struct node_state *k = &c->known[c->nknown++];
    snprintf(k->id, sizeof k->id, "%s", id);
    k->ready = false;
    return k;
}

/* Liveness is derived from the last heartbeat whenever it is read; this only
 * logs each transition once, as an operator would want to see it. */
static void check_liveness(ink_coordinator *c)
{
    ink_node_row *rows;
    size_t n;
    ink_err err = {0};
    if (ink_store_list_nodes(c->store, &rows, &n, &err) < 0) {
        LOG_ERROR("liveness: cannot list nodes", "error", err.msg);
        return;
    }
    int64_t now = ink_now_ms();
    for (size_t i = 0; i < n; i++) {
        bool ready = ink_node_is_ready(&rows[i], now, c->cfg->node_timeout_ms);
        struct node_state *k = known_node(c, rows[i].id);
        if (ready != k->ready) {
            if (ready)
                LOG_INFO("node ready", "node", rows[i].id);
            else
                LOG_WARN("node unreachable", "node", rows[i].id, "silent_ms",
                         LOG_INT(now - rows[i].last_seen_ms));
            k->ready = ready;
        }
    }
    free(rows);
}

static void *background_loop(void *arg)
{
    ink_coordinator *c = arg;
    int64_t next_liveness = 0, next_compact = ink_mono_ms() + 60000;
    pthread_mutex_lock(&c->mu);
    while (!c->stopping) {
        if (!c->kicked) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 250 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&c->cond, &c->mu, &ts);
        }
        if (c->stopping)
            break;
        c->kicked = false;
        pthread_mutex_unlock(&c->mu);

        ink_controller_opts co = {
            .node_timeout_ms = c->cfg->node_timeout_ms,
            .node_lost_ms = c->cfg->node_lost_timeout_ms,
            .place_grace_ms = 15000,
            .probe_timeout_ms = 1000,
        };
        /* Before the pump: replicas placed now reach their agents at once. */
        int writes = ink_controller_pass(c->store, &co, ink_now_ms());
        ink_watchers_pump(c);
        if (writes > 0) {
            pthread_mutex_lock(&c->mu);
            void (*progress)(void *) = c->on_progress;
            void *progress_arg = c->on_progress_arg;
            pthread_mutex_unlock(&c->mu);
            if (progress)
                progress(progress_arg);
        }
        int64_t now = ink_mono_ms();
        if (now >= next_liveness) {
            check_liveness(c);
            next_liveness = now + 1000;
        }
        if (now >= next_compact) {
            ink_err err = {0};
            if (ink_store_compact_log(c->store, 100000, &err) < 0)
                LOG_WARN("compacting assignment log failed", "error", err.msg);
            next_compact = now + 600000;
        }
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int ink_coordinator_start(ink_coordinator *c, const ink_coordinator_config *cfg, ink_err *err)
{
    memset(c, 0, sizeof *c);
    c->cfg = cfg;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    cleanup_free char *dbdir = ink_xstrdup(cfg->database);
    char *slash = strrchr(dbdir, '/');
    if (slash && slash != dbdir) {
        *slash = '\0';
        if (ink_mkdir_p(dbdir, 0700, err) < 0)
            return -1;
    }
    if (ink_store_open(cfg->database, &c->store, err) < 0)
        return -1;
    ink_tls_files tls = {cfg->tls_ca, cfg->tls_cert, cfg->tls_key};
    ink_rpc_server_opts so = {
        .listen = cfg->listen,
        .tls = cfg->insecure_dev ? NULL : &tls,
        .methods = ink_node_service_methods,
        .nmethods = ink_node_service_nmethods,
        .ctx = c,
        .threads = (int)cfg->rpc_threads,
    };
    c->rpc = ink_rpc_server_start(&so, err);
    if (!c->rpc) {
        ink_store_close(c->store);
        c->store = NULL;
        return ink_err_wrap(err, "NodeService");
    }
    pthread_create(&c->loop_thread, NULL, background_loop, c);
    c->loop_running = true;
    return 0;
}

void ink_coordinator_stop(ink_coordinator *c)
{
    if (c->loop_running) {
        pthread_mutex_lock(&c->mu);
        c->stopping = true;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->loop_thread, NULL);
        c->loop_running = false;
    }
    ink_watchers_release_all(c);
    ink_rpc_server_stop(c->rpc, 2000);
    c->rpc = NULL;
    ink_store_close(c->store);
    c->store = NULL;
    free(c->known);
    c->known = NULL;
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
}
