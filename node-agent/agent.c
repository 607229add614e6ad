#include "agent.h"

#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "dns.h"
#include "log.h"
#include "pki.h"
#include "util.h"

/* OPT(field, ...) names the option after its field; OPTN gives another
 * name (durations are named without their _ms unit: "5s" reads better). */
#define OPTN(name, field, type, def, help, ...)                                                    \
    {                                                                                              \
        name, type, offsetof(ink_agent_config, field), def, help, __VA_ARGS__                      \
    }
#define OPT(field, ...) OPTN(#field, field, __VA_ARGS__)

const ink_opt ink_agent_options[] = {
    OPT(coordinator, INK_OPT_STRING, "127.0.0.1:7440", "NodeService address of the coordinator", 0,
        0),
    OPT(coordinator_name, INK_OPT_STRING, INK_COORDINATOR_NAME,
        "name the coordinator's certificate must carry", 0, 0),
    OPT(node_id, INK_OPT_STRING, "",
        "this node's name, as in its certificate (default: the host name)", 0, 0),
    OPT(listen, INK_OPT_STRING, "127.0.0.1:7442",
        "AgentService address; 0.0.0.0:7442 when the coordinator is remote", 0, 0),
    OPT(advertise, INK_OPT_STRING, "",
        "host:port the coordinator dials for AgentService (default: derived from listen)", 0, 0),
    OPT(state_dir, INK_OPT_STRING, "/var/lib/ink/agent", "agent state (desired set, IPAM, images)",
        0, 0),
    OPT(tls_ca, INK_OPT_STRING, "/etc/ink/pki/ca.crt", "cluster CA", 0, 0),
    OPT(tls_cert, INK_OPT_STRING, "/etc/ink/pki/node.crt", "this node's certificate", 0, 0),
    OPT(tls_key, INK_OPT_STRING, "/etc/ink/pki/node.key", "its private key", 0, 0),
    OPT(insecure_dev, INK_OPT_BOOL, "false",
        "plaintext gRPC without certificates: development only", 0, 0),
    OPTN("rpc_timeout", rpc_timeout_ms, INK_OPT_DURATION, "5s",
         "deadline of unary calls to the coordinator", 100, 600000),
    OPTN("reconnect_initial", reconnect_initial_ms, INK_OPT_DURATION, "500ms",
         "first reconnect delay", 10, 600000),
    OPTN("reconnect_max", reconnect_max_ms, INK_OPT_DURATION, "30s", "longest reconnect delay", 10,
         3600000),
    OPTN("watch_timeout", watch_timeout_ms, INK_OPT_DURATION, "15m",
         "deadline of one assignment stream (it is resumed after)", 1000, 86400000),
    OPT(runsc, INK_OPT_STRING, "runsc", "gVisor runtime binary", 0, 0),
    OPT(runsc_root, INK_OPT_STRING, "/run/ink/runsc", "runsc state of Ink's sandboxes (--root)", 0,
        0),
    OPT(runsc_network, INK_OPT_STRING, "sandbox",
        "workload network stack: sandbox (gVisor netstack) or host (hostinet, in the workload's "
        "own namespace)",
        0, 0),
    OPT(netns_dir, INK_OPT_STRING, "/run/ink/netns",
        "where workload network namespaces are mounted", 0, 0),
    OPT(workload_cidr, INK_OPT_STRING, "10.213.0.0/20",
        "addresses of this node's workloads (must not overlap any other network)", 0, 0),
    OPT(publish_address, INK_OPT_STRING, "0.0.0.0", "address published ports listen on", 0, 0),
    OPT(insecure_registries, INK_OPT_STRING, "",
        "registries (host:port, comma-separated) pulled from over plain HTTP", 0, 0),
    OPT(registry_ca, INK_OPT_STRING, "", "extra CA bundle for HTTPS registries", 0, 0),
    OPT(registry_credentials, INK_OPT_STRING, "",
        "file of \"host[:port] username password\" lines for private registries (mode 0600)", 0, 0),
    OPTN("stop_grace", stop_grace_ms, INK_OPT_DURATION, "10s",
         "time a workload gets between SIGTERM and SIGKILL", 0, 600000),
    OPT(startup_cpu, INK_OPT_INT, "1000",
        "startup CPU boost: millicores a sandbox may use while it boots, when its app asks for "
        "less (gVisor boots three times slower at 0.25 CPU); the app's own limit applies once its "
        "port answers. 0 = off",
        0, 64000),
    OPTN("startup_cpu_window", startup_cpu_window_ms, INK_OPT_DURATION, "30s",
         "longest startup CPU boost (an app that never opens its port gets its own limit after it)",
         0, 600000),
    OPTN("resync", resync_ms, INK_OPT_DURATION, "10s",
         "a workload's state is checked at least this often", 100, 600000),
    OPT(policy_dir, INK_OPT_STRING, "/etc/ink/policies",
        "egress policies, one NAME.policy file each (an app's egress names one; SIGHUP reloads "
        "them; `ink-agent policy check FILE` lints one)",
        0, 0),
    OPTN("firewall_resync", firewall_resync_ms, INK_OPT_DURATION, "2s",
         "Ink's nftables table is compared with what the agent applied this often, and restored "
         "when someone changed it",
         100, 600000),
    OPT(dns, INK_OPT_BOOL, "true",
        "the node resolver for workloads, on the gateway address port 53: <app>.internal names "
        "the ready replicas of that app in the asking workload's project; other names are "
        "forwarded to dns_upstream",
        0, 0),
    OPT(dns_upstream, INK_OPT_STRING, "",
        "resolvers the node resolver forwards to (IP[:port], [IPv6]:port, comma-separated; "
        "default: the nameserver lines of /etc/resolv.conf)",
        0, 0),
    OPT(dns_user, INK_OPT_STRING, "ink-dns",
        "unprivileged user the resolver's helper runs as (name or uid[:gid]; ink-dns falls back "
        "to nobody when there is no such user)",
        0, 0),
    OPTN("sleep_stop_after", sleep_stop_after_ms, INK_OPT_DURATION, "15m",
         "scale to zero: an app idle for its idle timeout is paused (memory kept, no CPU, woken "
         "in milliseconds); after this long paused its sandbox is stopped (memory freed, woken in "
         "about 0.3 s). 0s = stop at once",
         0, 604800000),
    OPTN("wake_timeout", wake_timeout_ms, INK_OPT_DURATION, "30s",
         "how long a request to a sleeping app is held while it wakes before it is answered "
         "with an error",
         100, 600000),
    OPT(bpf_pin_dir, INK_OPT_STRING, "/sys/fs/bpf/ink",
        "where the eBPF traffic counters' map is pinned (on a BPF file system); \"off\" = "
        "count traffic from the veths' own statistics",
        0, 0),
    OPT(metrics_listen, INK_OPT_STRING, "127.0.0.1:7443",
        "address of the Prometheus endpoint (GET /metrics); \"off\" = none", 0, 0),
    OPT(log_max_size, INK_OPT_SIZE, "10M", "size of a workload log file before it rotates", 4096,
        1ULL << 40),
    OPT(log_keep, INK_OPT_INT, "3", "rotated log files kept per workload", 1, 100),
    OPT(log_level, INK_OPT_STRING, "info", "debug, info, warn or error", 0, 0),
    OPT(log_format, INK_OPT_STRING, "auto", "auto (journal when under systemd), logfmt, journal", 0,
        0),
    {0},
};

static int resolve_advertise(ink_agent *a, int port, ink_err *err)
{
    if (*a->cfg->advertise) {
        snprintf(a->advertise, sizeof a->advertise, "%s", a->cfg->advertise);
        return 0;
    }
    char host[256];
    int lport;
    if (ink_split_hostport(a->cfg->listen, host, sizeof host, &lport, err) < 0)
        return ink_err_wrap(err, "listen");
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) {
        ink_node_info info;
        ink_node_info_collect(&info, a->cfg->state_dir, "true");
        if (info.naddresses == 0) {
            ink_node_info_free(&info);
            return ink_err_set(err, 0, "listen is %s and no address found: set advertise", host);
        }
        snprintf(host, sizeof host, "%s", info.addresses[0]);
        ink_node_info_free(&info);
    }
    bool v6 = strchr(host, ':') != NULL;
    snprintf(a->advertise, sizeof a->advertise, v6 ? "[%s]:%d" : "%s:%d", host, port);
    return 0;
}

static void workload_changed(void *arg)
{
    ink_agent *a = arg;
    pthread_mutex_lock(&a->mu);
    ink_dns_changed(a->dns); /* names follow readiness */
    a->report_now = true;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->mu);
}

static void split_registries(ink_agent *a)
{
    cleanup_free char *list = ink_xstrdup(a->cfg->insecure_registries);
    char *save = NULL;
    for (char *t = strtok_r(list, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        a->plain_http = realloc(a->plain_http, (a->nplain_http + 1) * sizeof *a->plain_http);
        if (!a->plain_http)
            abort();
        a->plain_http[a->nplain_http++] = ink_xstrdup(t);
    }
}

static int start_supervisor(ink_agent *a, ink_err *err)
{
    const ink_agent_config *cfg = a->cfg;
    ink_runsc_network net;
    if (strcmp(cfg->runsc_network, "sandbox") == 0)
        net = INK_RUNSC_NET_SANDBOX;
    else if (strcmp(cfg->runsc_network, "host") == 0)
        net = INK_RUNSC_NET_HOST;
    else
        return ink_err_set(err, 0, "runsc_network '%s': use sandbox or host", cfg->runsc_network);
    split_registries(a);
    ink_supervisor_config sc = {
        .state_dir = cfg->state_dir,
        .runsc = cfg->runsc,
        .runsc_root = cfg->runsc_root,
        .network = net,
        .netns_dir = cfg->netns_dir,
        .workload_cidr = cfg->workload_cidr,
        .publish_address = cfg->publish_address,
        .plain_http = (const char *const *)a->plain_http,
        .nplain_http = a->nplain_http,
        .registry_ca = *cfg->registry_ca ? cfg->registry_ca : NULL,
        .registry_credentials = *cfg->registry_credentials ? cfg->registry_credentials : NULL,
        .stop_grace_ms = cfg->stop_grace_ms,
        .boot_cpu_millis = (uint32_t)cfg->startup_cpu,
        .boot_cpu_window_ms = cfg->startup_cpu_window_ms,
        .resync_ms = cfg->resync_ms,
        .policy_dir = cfg->policy_dir,
        .firewall_resync_ms = cfg->firewall_resync_ms,
        .log_max_bytes = cfg->log_max_size,
        .log_keep = (int)cfg->log_keep,
        .dns = cfg->dns,
        .sleep_stop_after_ms = cfg->sleep_stop_after_ms,
        .wake_timeout_ms = cfg->wake_timeout_ms,
        .bpf_pin_dir = strcmp(cfg->bpf_pin_dir, "off") == 0 ? NULL : cfg->bpf_pin_dir,
        .on_change = workload_changed,
        .arg = a,
    };
    pthread_mutex_lock(&a->mu);
    int rc = ink_supervisor_start(&sc, a->desired.items, a->desired.n, &a->sup, err);
    pthread_mutex_unlock(&a->mu);
    return rc < 0 ? ink_err_wrap(err, "workloads") : 0;
}

int ink_agent_start(ink_agent *a, const ink_agent_config *cfg, ink_err *err)
{
    memset(a, 0, sizeof *a);
    a->cfg = cfg;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cond, NULL);
    a->need_register = true;
    a->heartbeat_ms = 5000;
    if (*cfg->node_id)
        snprintf(a->node_id, sizeof a->node_id, "%s", cfg->node_id);
    else
        ink_default_node_id(a->node_id, sizeof a->node_id);
    if (!ink_valid_name(a->node_id) || strcmp(a->node_id, INK_COORDINATOR_NAME) == 0)
        return ink_err_set(err, 0, "node_id '%s' is not a valid name ([a-z0-9-], 1-63)",
                           a->node_id);
    if (ink_random_hex(a->instance_id, 16, err) < 0)
        return -1;
    if (ink_mkdir_p(cfg->state_dir, 0700, err) < 0)
        return -1;
    if (ink_desired_load(&a->desired, cfg->state_dir, err) < 0)
        return -1;

    ink_tls_files tls = {cfg->tls_ca, cfg->tls_cert, cfg->tls_key};
    const ink_tls_files *tlsp = cfg->insecure_dev ? NULL : &tls;
    if (tlsp) {
        /* The certificate must name this node, or the coordinator will
         * refuse every call: say so now, not on each retry. */
        ink_cert_info ci;
        if (ink_pki_cert_info_file(cfg->tls_cert, &ci, err) < 0)
            goto fail;
        if (strcmp(ci.cn, a->node_id) != 0 || strcmp(ci.ou, INK_ROLE_NODE) != 0) {
            ink_err_set(err, 0, "tls_cert %s is for '%s' (role '%s'), not node '%s'", cfg->tls_cert,
                        ci.cn, ci.ou, a->node_id);
            goto fail;
        }
    }
    ink_node_info probe;
    ink_node_info_collect(&probe, cfg->state_dir, cfg->runsc);
    snprintf(a->runsc_version, sizeof a->runsc_version, "%s", probe.runsc_version);
    ink_node_info_free(&probe);
    if (start_supervisor(a, err) < 0)
        goto fail;
    /* After the supervisor: the workload network is open, and the
     * resolver's table comes from the supervisor's status. */
    if (ink_agent_dns_start(a, err) < 0)
        goto fail;
    /* Before AgentService: GetMetrics reads the history. */
    if (ink_agent_metrics_start(a, err) < 0)
        goto fail;
    ink_rpc_server_opts so = {
        .listen = cfg->listen,
        .tls = tlsp,
        .methods = ink_agent_service_methods,
        .nmethods = ink_agent_service_nmethods,
        .ctx = a,
    };
    a->rpc = ink_rpc_server_start(&so, err);
    if (!a->rpc) {
        ink_err_wrap(err, "AgentService");
        goto fail;
    }
    if (resolve_advertise(a, ink_rpc_server_port(a->rpc), err) < 0)
        goto fail;
    ink_rpc_client_opts co = {
        .target = cfg->coordinator,
        .tls = tlsp,
        .server_name = cfg->coordinator_name,
    };
    a->coordinator = ink_rpc_client_new(&co, err);
    if (!a->coordinator) {
        ink_err_wrap(err, "coordinator client");
        goto fail;
    }
    pthread_create(&a->session_thread, NULL, ink_session_thread, a);
    pthread_create(&a->heartbeat_thread, NULL, ink_heartbeat_thread, a);
    a->threads_running = true;
    LOG_INFO("agent started", "node", a->node_id, "instance", a->instance_id, "listen", cfg->listen,
             "advertise", a->advertise, "coordinator", cfg->coordinator, "revision",
             LOG_U64(a->desired.revision), "desired_workloads", LOG_INT(a->desired.n), "tls",
             tlsp ? "mutual" : "off");
    return 0;
fail:
    ink_agent_stop(a);
    return -1;
}

void ink_agent_reload(ink_agent *a)
{
    ink_err err = {0};
    LOG_INFO("SIGHUP: reloading egress policies");
    /* The firewall logs each refused file (FILE:LINE), and what it
     * applied or why it kept the running table. */
    if (a->sup)
        (void)ink_supervisor_reload_policies(a->sup, &err);
    /* A policy's resolve mode may have changed: the names table too. */
    pthread_mutex_lock(&a->mu);
    if (a->dns)
        ink_dns_changed(a->dns);
    pthread_mutex_unlock(&a->mu);
}

void ink_agent_stop(ink_agent *a)
{
    if (a->threads_running) {
        pthread_mutex_lock(&a->mu);
        a->stopping = true;
        if (a->watch)
            ink_rpc_stream_cancel(a->watch);
        pthread_cond_broadcast(&a->cond);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->session_thread, NULL);
        pthread_join(a->heartbeat_thread, NULL);
        a->threads_running = false;
    }
    ink_rpc_server_stop(a->rpc, 2000);
    a->rpc = NULL;
    /* Before the supervisor: its table is read from it. */
    ink_agent_dns_stop(a);
    /* After the RPC server (GetMetrics reads the history), before the
     * supervisor (the sampler and scrapes ask it). */
    ink_agent_metrics_stop(a);
    /* After the RPC server: its calls may still look workloads up. */
    ink_supervisor_stop(a->sup);
    a->sup = NULL;
    for (size_t i = 0; i < a->nplain_http; i++)
        free(a->plain_http[i]);
    free(a->plain_http);
    a->plain_http = NULL;
    a->nplain_http = 0;
    ink_rpc_client_free(a->coordinator);
    a->coordinator = NULL;
    ink_desired_free(&a->desired);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cond);
}
