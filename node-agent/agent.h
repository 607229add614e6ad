/* ink-agent: the privileged daemon on every runtime node. This header ties
 * its pieces together: configuration, the link to the coordinator
 * (register, heartbeat, watch), the desired state persisted on disk and
 * AgentService. */
#ifndef INK_AGENT_H
#define INK_AGENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "ink/v1/ink.pb-c.h"
#include "rpc/rpc.h"
#include "supervisor.h"

typedef struct ink_agent_config {
    char *coordinator;
    char *coordinator_name;
    char *node_id;
    char *listen;
    char *advertise;
    char *state_dir;
    char *tls_ca;
    char *tls_cert;
    char *tls_key;
    bool insecure_dev;
    int64_t rpc_timeout_ms;
    int64_t reconnect_initial_ms;
    int64_t reconnect_max_ms;
    int64_t watch_timeout_ms;
    char *runsc;
    char *runsc_root;
    char *runsc_network;
    char *netns_dir;
    char *workload_cidr;
    char *publish_address;
    char *insecure_registries;
    char *registry_ca;
    char *registry_credentials;
    int64_t stop_grace_ms;
    int64_t startup_cpu; /* millicores, 0 = off */
    int64_t startup_cpu_window_ms;
    int64_t resync_ms;
    char *policy_dir;           /* egress policies, *.policy */
    int64_t firewall_resync_ms; /* Ink's nftables table checked this often */
    bool dns;                   /* the node resolver for workloads (agent_dns.c) */
    char *dns_upstream;         /* "" = the nameservers of /etc/resolv.conf */
    char *dns_user;
    int64_t sleep_stop_after_ms; /* paused this long: stopped */
    int64_t wake_timeout_ms;     /* a held request waits this long for a wake */
    char *bpf_pin_dir;           /* "off": no eBPF counters */
    char *metrics_listen;        /* Prometheus endpoint; "off": none */
    uint64_t log_max_size;
    int64_t log_keep;
    char *log_level;
    char *log_format;
} ink_agent_config;

extern const ink_opt ink_agent_options[];

#define INK_AGENT_DEFAULT_CONFIG "/etc/ink/agent.conf"

/* The desired set of workloads for this node, as last received from the
 * coordinator, and the revision it reflects. Persisted on every change. */
typedef struct ink_desired {
    uint64_t revision;
    char coordinator_id[64];
    Ink__V1__Assignment **items; /* each owned (unpacked copy) */
    size_t n;
} ink_desired;

typedef struct ink_agent {
    const ink_agent_config *cfg;
    char node_id[64];
    char instance_id[33];
    char advertise[256];
    /* Asked once at start, before any workload thread: registering again
     * then starts no process from a busy multi-threaded agent. */
    char runsc_version[128];

    ink_rpc_client *coordinator;
    ink_rpc_server *rpc;

    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stopping;
    bool need_register;  /* session must (re-)register before watching */
    bool coordinator_up; /* last call reached it; for transition logs */
    int64_t heartbeat_ms;
    uint64_t registrations; /* successful registrations by this process */
    ink_rpc_stream *watch;  /* open watch stream, to cancel on shutdown */
    ink_desired desired;
    ink_supervisor *sup; /* runs the desired workloads */
    struct ink_dns *dns; /* the node resolver, NULL when off */
    /* Metrics history, its sampler and the Prometheus endpoint
     * (agent_metrics.c); NULL before the start and after the stop. */
    struct ink_agent_metrics *metrics;
    bool report_now;   /* a workload changed state: heartbeat early */
    char **plain_http; /* insecure_registries, split */
    size_t nplain_http;

    pthread_t session_thread, heartbeat_thread;
    bool threads_running;
} ink_agent;

int ink_agent_start(ink_agent *a, const ink_agent_config *cfg, ink_err *err);
/* SIGHUP: reads the egress policies again; a bad file changes nothing and
 * is logged with FILE:LINE. */
void ink_agent_reload(ink_agent *a);
void ink_agent_stop(ink_agent *a);

/* desired.c */
int ink_desired_load(ink_desired *d, const char *state_dir, ink_err *err);
int ink_desired_save(const ink_desired *d, const char *state_dir, ink_err *err);
/* Applies one watch event; returns 1 if the desired set or revision
 * changed, 0 if the event was already applied (duplicate), -1 on error. */
int ink_desired_apply(ink_desired *d, const Ink__V1__WatchEvent *ev, ink_err *err);
const Ink__V1__Assignment *ink_desired_find(const ink_desired *d, const char *workload_id);
void ink_desired_free(ink_desired *d);

/* node_info.c */
typedef struct ink_node_info {
    char hostname[256];
    char *addresses[16];
    size_t naddresses;
    uint32_t cpus;
    uint64_t memory_bytes;
    uint64_t disk_bytes;
    char runsc_version[128];
    char kernel_release[128];
    bool cgroup_v2, btf, nftables, netns, seccomp;
} ink_node_info;

/* Runs `runsc --version` (5 s at most) and keeps its first line without
 * the "runsc version " prefix; -1 with err when it cannot run, fails or
 * does not answer (node_info.c). */
int ink_runsc_version(const char *runsc, char *out, size_t outlen, ink_err *err);

/* runsc NULL: no runsc_version (it runs a process). */
void ink_node_info_collect(ink_node_info *info, const char *state_dir, const char *runsc);
void ink_node_info_free(ink_node_info *info);
void ink_node_usage_collect(Ink__V1__NodeUsage *u, const char *state_dir);
/* The default node id: the host name, lowercased, anything else than
 * [a-z0-9-] turned into '-'. */
void ink_default_node_id(char *out, size_t outlen);

/* policy_cli.c: `ink-agent policy check FILE...` and `policy show`;
 * argv[0] is the subcommand. Returns the exit status. */
int ink_policy_cli(const ink_agent_config *cfg, int argc, char **argv);

/* session.c */
void *ink_session_thread(void *arg);
void *ink_heartbeat_thread(void *arg);

/* agent_dns.c: the node resolver for workloads, fed from the desired set
 * and the supervisor's status. Start after the supervisor, stop before it.
 * Only a bad dns_* option is an error: a resolver that cannot run is
 * retried in the background. */
int ink_agent_dns_start(ink_agent *a, ink_err *err);
void ink_agent_dns_stop(ink_agent *a);

/* agent_metrics.c: every INK_METRICS_SAMPLE_MS a sample of each
 * workload's metrics goes into its history (the last 15 minutes, for
 * GetMetrics with history), and metrics_listen serves GET /metrics in the
 * Prometheus text format (node-agent/metrics/prom.h). Start after the
 * supervisor, stop before it. A metrics_listen that is not an IPv4
 * host:port, or that cannot be bound, fails the start. */
int ink_agent_metrics_start(ink_agent *a, ink_err *err);
void ink_agent_metrics_stop(ink_agent *a);
/* The port the Prometheus endpoint listens on; 0 when off. */
int ink_agent_metrics_port(const ink_agent *a);
/* Sets each wm[i]->history to the workload's samples, oldest first;
 * ink_agent_metrics_detach_history frees them (before the messages). */
void ink_agent_metrics_attach_history(ink_agent *a, Ink__V1__WorkloadMetrics **wm, size_t n);
void ink_agent_metrics_detach_history(Ink__V1__WorkloadMetrics **wm, size_t n);

/* agent_service.c */
extern const ink_rpc_method ink_agent_service_methods[];
extern const size_t ink_agent_service_nmethods;

#endif
