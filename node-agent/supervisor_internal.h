/* Internals shared by supervisor.c (the set of workloads) and reconcile.c
 * (one workload's reconcile loop). */
#ifndef INK_SUPERVISOR_INTERNAL_H
#define INK_SUPERVISOR_INTERNAL_H

#include <pthread.h>

#include "firewall.h"
#include "forward.h"
#include "image.h"
#include "logs.h"
#include "net.h"
#include "restart.h"
#include "traffic.h"
#include "supervisor.h"

typedef struct ink_workload ink_workload;

typedef struct ink_registry_login {
    char *registry, *username, *password;
} ink_registry_login;

/* The registry options for pulling ref: the node's, with the login for
 * the ref's registry when the credentials file has one. */
ink_registry_opts ink_supervisor_registry_for(const ink_supervisor *s, const char *ref);

typedef struct ink_follower {
    struct ink_follower *next;
    char workload_id[INK_NET_WORKLOAD_ID_MAX + 1];
    ink_rpc_call *call;
    uint64_t dropped; /* lines skipped while the client lagged */
    ink_supervisor *sup;
} ink_follower;

struct ink_supervisor {
    ink_supervisor_config cfg;
    ink_runsc runsc;
    ink_image_store *images;
    ink_net *net;
    ink_forwarder *forwarder;
    ink_traffic *traffic; /* eBPF counters; NULL: veth statistics */
    ink_firewall *fw;     /* Ink's nftables table */
    pthread_t fw_thread;  /* drift checks, host names */
    bool fw_thread_running;
    ink_registry_opts registry;
    struct ink_registry_login *logins; /* registry_credentials */
    size_t nlogins;
    char *workloads_dir; /* state_dir/workloads */
    char *rootfs_dir;    /* state_dir/rootfs: unpacked images, shared read-only */

    pthread_mutex_t mu; /* the list, each workload's wanted spec and status */
    pthread_cond_t cond;
    ink_workload *list;
    bool stopping;
    int preparing; /* loops pulling or unpacking: image GC waits for 0 */
    bool gc_wanted;
    /* Images of removed workloads, kept a while for a quick redeploy. */
    struct ink_recent_image {
        char digest[INK_DIGEST_MAX];
        int64_t ms;
    } * recent;
    size_t nrecent;
    pthread_t janitor;

    pthread_mutex_t follow_mu;
    ink_follower *followers;
};

/* What a workload reports, under sup->mu. */
typedef struct ink_workload_status {
    Ink__V1__WorkloadStatus__State state;
    char reason[512];
    uint64_t generation;
    uint32_t restarts;
    char address[INET_ADDRSTRLEN];
    uint32_t published_port;
    int64_t since_ms;
    char image_digest[INK_DIGEST_MAX];
    bool running; /* its sandbox is up (exec and metrics make sense) */
    char host_ifname[IFNAMSIZ];
} ink_workload_status;

/* What a workload used before its current sandbox and interface: folded
 * in when a sandbox's cgroup or a veth's counters go away, so that totals
 * go on counting across sleeps and restarts (persisted with the loop's
 * state). */
typedef struct ink_workload_usage {
    uint64_t cpu_ns;
    ink_traffic_counters traffic;
    uint64_t sleeps, wakes;
    uint32_t last_wake_ms;
} ink_workload_usage;

struct ink_workload {
    ink_workload *next;
    ink_supervisor *sup;
    char id[INK_NET_WORKLOAD_ID_MAX + 1];
    char *dir; /* workloads/<id> */
    pthread_t thread;
    int wake_fd; /* eventfd: the wanted spec changed, or stopping */

    /* Under sup->mu. */
    Ink__V1__Assignment *next_want; /* newer spec for the loop to take */
    bool remove;                    /* no longer wanted: tear down */
    bool done;                      /* the loop has ended; join and free */
    ink_workload_status status;
    char app[64], project[64];
    unsigned traffic_ifindex; /* key of its eBPF counters; 0: none */
    /* The sandbox's CPU time is in usage already (it is being removed):
     * metrics add its cgroup's no more. */
    bool cgroup_folded;
    ink_workload_usage usage; /* totals before the current sandbox and veth */
    /* Scale to zero: asleep (frozen or stopped), and a connection to its
     * port asked for a wake at wake_asked_ms (ink_mono_ms; 0: none). */
    bool asleep;
    int64_t wake_asked_ms;
};

/* A workload's traffic counters now: eBPF (*ebpf) when it has an entry,
 * else its veth's statistics; false when there are neither. */
bool ink_supervisor_read_traffic(ink_supervisor *s, unsigned ifindex, const char *ifname,
                                 ink_traffic_counters *c, bool *ebpf);

/* A connection came for a sleeping workload (forwarder thread). */
void ink_supervisor_wake_request(ink_supervisor *s, const char *id);

ink_workload *ink_workload_new(ink_supervisor *s, const char *id);
void ink_workload_wake(ink_workload *w);
void *ink_workload_main(void *arg);
void ink_workload_free(ink_workload *w);

Ink__V1__Assignment *ink_assignment_dup(const Ink__V1__Assignment *a);

/* The firewall's view of an assignment with its address (supervisor.c;
 * points into a). */
ink_fw_spec ink_supervisor_fw_spec(const Ink__V1__Assignment *a, struct in_addr addr);

/* Sends a log line to the workload's followers (supervisor.c). */
void ink_followers_publish(ink_supervisor *s, const char *id, const ink_log_line *line);
/* Ends every follower of the workload (it is being removed). */
void ink_followers_end(ink_supervisor *s, const char *id);

#endif
