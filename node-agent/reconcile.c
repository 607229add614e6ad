/* One workload's reconcile loop.
 *
 * A pass (converge) compares the wanted spec with what exists and does the
 * next step:
 *
 *   prepare     image pulled (or loaded by digest), root filesystem
 *               unpacked, namespace and veth, config.json      PULLING
 *   start       runsc run with the log FIFOs as stdio          STARTING
 *   ready       the app's port accepts connections             RUNNING
 *   exit        exit status (runsc wait) and OOM (cgroup),
 *               restart after a backoff                        STARTING / CRASH_LOOP
 *   remove      listener, sandbox, cgroup, network, files      STOPPED
 *
 * Between passes the thread sleeps in poll() on the log FIFOs (it is also
 * the log pump), the runsc wait pipe and an eventfd, so an exit or a new
 * spec is acted on at once and the app never blocks on a full pipe. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backoff.h"
#include "bundle.h"
#include "cgroup.h"
#include "dns.h"
#include "log.h"
#include "util.h"
#include "supervisor_internal.h"

/* How often a started sandbox's port is tried until it answers: each try
 * is one connect() on a veth, and the app's first answer waits on it. */
#define READY_POLL_MS 25
#define PREPARE_BACKOFF_MIN_MS 1000
#define PREPARE_BACKOFF_MAX_MS 300000

/* What the loop keeps on disk (workloads/<id>/state.json). */
typedef struct persisted {
    uint64_t prepared_generation; /* config.json is for this generation */
    char image_digest[INK_DIGEST_MAX];
    uint64_t sandbox_generation; /* the sandbox runsc has was started for it */
    uint32_t published_port;     /* chosen by the agent when the spec has none */
    ink_restart restart;
    /* Scaled to zero in the stopped tier: no sandbox, and none is started
     * until a request comes (a frozen one is thawed by the next agent). */
    bool stopped_asleep;
    ink_workload_usage usage; /* mirrored in w->usage for metrics */
} persisted;

/* Scale to zero (supervisor.h): awake, paused by the cgroup freezer, or
 * without a sandbox. */
typedef enum { SLEEP_NONE, SLEEP_FROZEN, SLEEP_STOPPED } sleep_tier;

/* With min_replicas 0 and no idle_timeout_s in the spec. */
#define DEFAULT_IDLE_TIMEOUT_S 300
/* What a sleeping workload's status says, per tier. */
#define ASLEEP_PAUSED "idle: paused, wakes on the next request"
#define ASLEEP_STOPPED "idle: stopped, starts on the next request"
/* Port polls while a woken sandbox boots: the held request waits on it. */
#define WAKE_POLL_MS 3
#define FREEZE_TIMEOUT_MS 2000

typedef struct loop {
    ink_workload *w;
    ink_supervisor *s;
    Ink__V1__Assignment *want; /* owned */
    bool remove;
    persisted p;
    ink_log_sink *logs;
    ink_runsc_waiter waiter;
    bool exited; /* the waiter saw the sandbox end */
    int exit_status;
    bool sandbox_up; /* started or adopted, not yet seen ending */
    ink_workload_net net;
    bool net_ready;
    bool published;
    bool ready;     /* the app's port answered */
    bool net_fresh; /* prepare just set the network up: start needs not */
    bool fw_ready;  /* the firewall has the workload's egress rules */
    /* The sandbox's cgroup has the app's CPU limit (not the boot quota of
     * config.json); false after each start, and for an adopted sandbox. */
    bool cpu_settled;
    int64_t started_mono_ms; /* last start by this loop; 0 = adopted */
    ink_backoff prepare_backoff;
    int64_t next_attempt_ms; /* after a failed step; 0 = now */
    int64_t drain_until_ms;  /* removal: when connections in flight stop being waited for */
    char *bundle_dir, *state_path, *log_dir, *cgroup;
    /* Scale to zero. */
    sleep_tier sleep;
    int64_t asleep_ms;       /* ink_mono_ms() it went to sleep */
    int64_t active_ms;       /* last activity seen: traffic, a connection, a start */
    uint64_t seen_packets;   /* without eBPF: rx+tx packets at the last look */
    int64_t waking_since_ms; /* a wake of the stopped tier in progress (its request) */
    int64_t wake_fail_until; /* after a failed wake, requests are refused at once until */
    char wake_error[400];    /* ... with this reason */
} loop;

Ink__V1__Assignment *ink_assignment_dup(const Ink__V1__Assignment *a)
{
    size_t n = protobuf_c_message_get_packed_size(&a->base);
    uint8_t *buf = ink_xmalloc(n ? n : 1);
    protobuf_c_message_pack(&a->base, buf);
    Ink__V1__Assignment *copy = ink__v1__assignment__unpack(NULL, n, buf);
    free(buf);
    if (!copy)
        abort();
    return copy;
}

ink_workload *ink_workload_new(ink_supervisor *s, const char *id)
{
    ink_workload *w = ink_xcalloc(1, sizeof *w);
    w->sup = s;
    snprintf(w->id, sizeof w->id, "%s", id);
    w->dir = ink_xasprintf("%s/%s", s->workloads_dir, id);
    w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->wake_fd < 0)
        abort();
    w->status.state = INK__V1__WORKLOAD_STATUS__STATE__PENDING;
    w->status.since_ms = ink_now_ms();
    return w;
}

void ink_workload_wake(ink_workload *w)
{
    uint64_t one = 1;
    ssize_t r = write(w->wake_fd, &one, sizeof one);
    (void)r;
}

void ink_workload_free(ink_workload *w)
{
    if (!w)
        return;
    if (w->next_want)
        ink__v1__assignment__free_unpacked(w->next_want, NULL);
    close(w->wake_fd);
    free(w->dir);
    free(w);
}

/* ------------------------------------------------------------ status */

static void set_status(loop *l, Ink__V1__WorkloadStatus__State state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_status(loop *l, Ink__V1__WorkloadStatus__State state, const char *fmt, ...)
{
    char reason[512] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, sizeof reason, fmt, ap);
        va_end(ap);
    }
    ink_supervisor *s = l->s;
    pthread_mutex_lock(&s->mu);
    ink_workload_status *st = &l->w->status;
    bool changed = st->state != state || strcmp(st->reason, reason) != 0 ||
                   st->restarts != l->p.restart.restarts ||
                   (l->want && st->generation != l->want->generation) ||
                   st->running != l->sandbox_up || st->published_port != l->p.published_port;
    if (st->state != state)
        st->since_ms = ink_now_ms();
    st->state = state;
    snprintf(st->reason, sizeof st->reason, "%s", reason);
    if (l->want)
        st->generation = l->want->generation;
    st->restarts = l->p.restart.restarts;
    st->running = l->sandbox_up;
    st->published_port = l->published ? l->p.published_port : 0;
    snprintf(st->image_digest, sizeof st->image_digest, "%s", l->p.image_digest);
    snprintf(st->address, sizeof st->address, "%s", l->net_ready ? l->net.addr_str : "");
    snprintf(st->host_ifname, sizeof st->host_ifname, "%s", l->net_ready ? l->net.host_ifname : "");
    if (changed)
        pthread_cond_broadcast(&s->cond); /* ink_supervisor_lookup waits for a wake */
    pthread_mutex_unlock(&s->mu);
    if (changed && s->cfg.on_change)
        s->cfg.on_change(s->cfg.arg);
}

/* A line in the workload's own log, for `ink logs` readers. */
static void syslog_line(loop *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void syslog_line(loop *l, const char *fmt, ...)
{
    if (!l->logs)
        return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    ink_err err = {0};
    if (ink_log_sink_system(l->logs, text, &err) < 0)
        LOG_WARN("writing workload log failed", "workload", l->w->id, "error", err.msg);
}

/* ------------------------------------------------------------ persisted */

static void load_persisted(loop *l)
{
    cleanup_free char *text = NULL;
    ink_err err = {0};
    if (ink_read_file(l->state_path, 1 << 20, &text, NULL, &err) < 0) {
        if (err.errnum != ENOENT)
            LOG_WARN("workload state unreadable; starting afresh", "workload", l->w->id, "error",
                     err.msg);
        return;
    }
    json_t *j = json_loads(text, 0, NULL);
    if (!json_is_object(j)) {
        LOG_WARN("workload state unreadable; starting afresh", "workload", l->w->id);
        json_decref(j);
        return;
    }
    persisted *p = &l->p;
    p->prepared_generation =
        (uint64_t)json_integer_value(json_object_get(j, "prepared_generation"));
    p->sandbox_generation = (uint64_t)json_integer_value(json_object_get(j, "sandbox_generation"));
    p->published_port = (uint32_t)json_integer_value(json_object_get(j, "published_port"));
    const char *d = json_string_value(json_object_get(j, "image_digest"));
    snprintf(p->image_digest, sizeof p->image_digest, "%s", d ? d : "");
    json_t *r = json_object_get(j, "restart");
    p->restart.restarts = (uint32_t)json_integer_value(json_object_get(r, "restarts"));
    p->restart.recent = (uint32_t)json_integer_value(json_object_get(r, "recent"));
    p->restart.started_ms = json_integer_value(json_object_get(r, "started_ms"));
    p->restart.next_start_ms = json_integer_value(json_object_get(r, "next_start_ms"));
    p->restart.crash_loop = json_is_true(json_object_get(r, "crash_loop"));
    const char *reason = json_string_value(json_object_get(r, "reason"));
    snprintf(p->restart.reason, sizeof p->restart.reason, "%s", reason ? reason : "");
    p->stopped_asleep = json_is_true(json_object_get(j, "stopped_asleep"));
    json_t *u = json_object_get(j, "usage");
    p->usage.cpu_ns = (uint64_t)json_integer_value(json_object_get(u, "cpu_ns"));
    p->usage.traffic.rx_bytes = (uint64_t)json_integer_value(json_object_get(u, "rx_bytes"));
    p->usage.traffic.tx_bytes = (uint64_t)json_integer_value(json_object_get(u, "tx_bytes"));
    p->usage.traffic.rx_packets = (uint64_t)json_integer_value(json_object_get(u, "rx_packets"));
    p->usage.traffic.tx_packets = (uint64_t)json_integer_value(json_object_get(u, "tx_packets"));
    p->usage.sleeps = (uint64_t)json_integer_value(json_object_get(u, "sleeps"));
    p->usage.wakes = (uint64_t)json_integer_value(json_object_get(u, "wakes"));
    p->usage.last_wake_ms = (uint32_t)json_integer_value(json_object_get(u, "last_wake_ms"));
    json_decref(j);
    pthread_mutex_lock(&l->s->mu);
    l->w->usage = p->usage;
    pthread_mutex_unlock(&l->s->mu);
}

static void save_persisted(loop *l)
{
    const persisted *p = &l->p;
    json_t *j = json_pack(
        "{s:I, s:s, s:I, s:i, s:{s:i, s:i, s:I, s:I, s:b, s:s}}", "prepared_generation",
        (json_int_t)p->prepared_generation, "image_digest", p->image_digest, "sandbox_generation",
        (json_int_t)p->sandbox_generation, "published_port", (int)p->published_port, "restart",
        "restarts", (int)p->restart.restarts, "recent", (int)p->restart.recent, "started_ms",
        (json_int_t)p->restart.started_ms, "next_start_ms", (json_int_t)p->restart.next_start_ms,
        "crash_loop", p->restart.crash_loop, "reason", p->restart.reason);
    json_object_set_new(j, "stopped_asleep", json_boolean(p->stopped_asleep));
    json_object_set_new(j, "usage",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "cpu_ns",
                                  (json_int_t)p->usage.cpu_ns, "rx_bytes",
                                  (json_int_t)p->usage.traffic.rx_bytes, "tx_bytes",
                                  (json_int_t)p->usage.traffic.tx_bytes, "rx_packets",
                                  (json_int_t)p->usage.traffic.rx_packets, "tx_packets",
                                  (json_int_t)p->usage.traffic.tx_packets, "sleeps",
                                  (json_int_t)p->usage.sleeps, "wakes", (json_int_t)p->usage.wakes,
                                  "last_wake_ms", (json_int_t)p->usage.last_wake_ms));
    pthread_mutex_lock(&l->s->mu);
    l->w->usage = p->usage;
    pthread_mutex_unlock(&l->s->mu);
    cleanup_free char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    ink_err err = {0};
    if (!text || ink_write_file_atomic(l->state_path, text, strlen(text), 0600, &err) < 0)
        LOG_ERROR("saving workload state failed", "workload", l->w->id, "error", err.msg);
}

/* ------------------------------------------------------------ logs */

static void on_log_line(const ink_log_line *line, void *arg)
{
    loop *l = arg;
    ink_followers_publish(l->s, l->w->id, line);
}

static int open_logs(loop *l, ink_err *err)
{
    if (l->logs)
        return 0;
    ink_log_limits lim = {.max_file_bytes = l->s->cfg.log_max_bytes, .keep = l->s->cfg.log_keep};
    if (ink_log_sink_open(l->log_dir, &lim, &l->logs, err) < 0)
        return -1;
    ink_log_sink_set_listener(l->logs, on_log_line, l);
    return 0;
}

static void pump_logs(loop *l)
{
    if (!l->logs)
        return;
    ink_err err = {0};
    if (ink_log_sink_pump(l->logs, &err) < 0)
        LOG_WARN("capturing workload output failed", "workload", l->w->id, "error", err.msg);
}

static void attach_traffic(loop *l);

/* ------------------------------------------------------------ prepare */

static void preparing(ink_supervisor *s, int delta)
{
    pthread_mutex_lock(&s->mu);
    s->preparing += delta;
    pthread_mutex_unlock(&s->mu);
}

/* The image's root filesystem, unpacked once per image and shared
 * read-only by every workload that runs it: rootfs/<manifest hex>. */
static int ensure_rootfs(loop *l, const ink_image *img, char **out, ink_err *err)
{
    ink_supervisor *s = l->s;
    const char *hex = strchr(img->manifest_digest, ':');
    hex = hex ? hex + 1 : img->manifest_digest;
    cleanup_free char *path = ink_xasprintf("%s/%s", s->rootfs_dir, hex);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        *out = INK_STEAL(path);
        return 0;
    }
    if (ink_mkdir_p(s->rootfs_dir, 0711, err) < 0)
        return -1;
    char rnd[17];
    if (ink_random_hex(rnd, 8, err) < 0)
        return -1;
    cleanup_free char *tmp = ink_xasprintf("%s/.tmp-%s-%s", s->rootfs_dir, hex, rnd);
    if (mkdir(tmp, 0755) < 0)
        return ink_err_set(err, errno, "mkdir %s", tmp);
    int64_t t0 = ink_mono_ms();
    if (ink_image_unpack(s->images, img, tmp, err) < 0) {
        ink_rmtree(tmp);
        return -1;
    }
    /* Another workload may have unpacked the same image meanwhile: keep
     * the first. */
    if (rename(tmp, path) < 0) {
        int e = errno;
        ink_rmtree(tmp);
        if (e != EEXIST && e != ENOTEMPTY)
            return ink_err_set(err, e, "rename %s", tmp);
    }
    LOG_INFO("image unpacked", "workload", l->w->id, "image", img->manifest_digest, "ms",
             LOG_INT(ink_mono_ms() - t0));
    *out = INK_STEAL(path);
    return 0;
}

static int get_image(loop *l, ink_image *img, ink_err *err)
{
    ink_supervisor *s = l->s;
    /* The generation this agent already prepared keeps its image: a
     * restarted agent must not depend on the registry (nor see a moved
     * tag) to go on running what it ran. */
    if (l->p.prepared_generation == l->want->generation && l->p.image_digest[0]) {
        ink_err lerr = {0};
        if (ink_image_load(s->images, l->p.image_digest, img, &lerr) == 0)
            return 0;
        LOG_WARN("cached image unusable: pulling again", "workload", l->w->id, "image",
                 l->p.image_digest, "error", lerr.msg);
    }
    set_status(l, INK__V1__WORKLOAD_STATUS__STATE__PULLING, "pulling %s", l->want->image);
    int64_t t0 = ink_mono_ms();
    ink_registry_opts opts = ink_supervisor_registry_for(s, l->want->image);
    if (ink_image_pull(s->images, l->want->image, &opts, img, err) < 0)
        return ink_err_wrap(err, "pulling %s", l->want->image);
    LOG_INFO("image pulled", "workload", l->w->id, "image", l->want->image, "digest",
             img->manifest_digest, "bytes", LOG_U64(img->total_bytes), "ms",
             LOG_INT(ink_mono_ms() - t0));
    return 0;
}

static int prepare(loop *l, ink_err *err)
{
    ink_supervisor *s = l->s;
    const Ink__V1__Assignment *a = l->want;
    if (!ink_valid_name(a->workload_id))
        return ink_err_set(err, 0, "invalid workload id '%s'", a->workload_id);
    ink_image img = {0};
    preparing(s, +1);
    int rc = get_image(l, &img, err);
    cleanup_free char *rootfs = NULL;
    if (rc == 0)
        rc = ensure_rootfs(l, &img, &rootfs, err);
    preparing(s, -1);
    if (rc < 0) {
        ink_image_free(&img);
        return -1;
    }
    if (!l->net_ready) {
        if (ink_workload_net_setup(s->net, l->w->id, &l->net, err) < 0) {
            ink_image_free(&img);
            return ink_err_wrap(err, "network");
        }
        l->net_ready = true;
        l->net_fresh = true;
    }
    attach_traffic(l);
    /* The node resolver, and the app's own name for its address, in files
     * the sandbox mounts read-only. */
    cleanup_free char *resolv = NULL, *hosts = NULL;
    if (s->cfg.dns && ink_dns_write_sandbox_files(l->bundle_dir, l->net.gateway_str,
                                                  *a->app ? a->app : a->workload_id,
                                                  l->net.addr_str, &resolv, &hosts, err) < 0) {
        ink_image_free(&img);
        return ink_err_wrap(err, "resolver files");
    }
    ink_bundle_spec spec = {
        .assignment = a,
        .image = &img.config,
        .rootfs = rootfs,
        .netns_path = l->net.netns_path,
        .cgroup = l->cgroup,
        .boot_cpu_millis = s->cfg.boot_cpu_millis,
        .resolv_conf = resolv,
        .hosts = hosts,
    };
    cleanup_free char *config = NULL;
    rc = ink_bundle_config(&spec, &config, err);
    if (rc == 0 && ink_mkdir_p(l->bundle_dir, 0700, err) < 0)
        rc = -1;
    if (rc == 0) {
        cleanup_free char *path = ink_xasprintf("%s/config.json", l->bundle_dir);
        rc = ink_write_file_atomic(path, config, strlen(config), 0600, err);
    }
    if (rc == 0) {
        snprintf(l->p.image_digest, sizeof l->p.image_digest, "%s", img.manifest_digest);
        l->p.prepared_generation = a->generation;
        save_persisted(l);
    }
    ink_image_free(&img);
    return rc;
}

/* ------------------------------------------------------------ usage */

/* The sandbox is about to go (runsc delete takes its cgroup): the CPU
 * time it used joins the totals, and metrics stop adding the cgroup's, in
 * one step so that no sample counts it twice or not at all. Once per
 * sandbox. */
static void fold_cgroup(loop *l)
{
    ink_supervisor *s = l->s;
    pthread_mutex_lock(&s->mu);
    bool folded = l->w->cgroup_folded;
    pthread_mutex_unlock(&s->mu);
    if (folded)
        return;
    ink_cgroup_stats cs;
    ink_cgroup_read_stats(l->cgroup, &cs);
    pthread_mutex_lock(&s->mu);
    l->p.usage.cpu_ns += cs.cpu_ns;
    l->w->usage = l->p.usage;
    l->w->cgroup_folded = true;
    pthread_mutex_unlock(&s->mu);
    save_persisted(l);
}

static void set_traffic_ifindex(loop *l, unsigned ifindex)
{
    pthread_mutex_lock(&l->s->mu);
    l->w->traffic_ifindex = ifindex;
    pthread_mutex_unlock(&l->s->mu);
}

/* Ink's tc counters on the workload's veth (metrics/traffic.h), once per
 * interface (its index is the counters' key; the kernel does not hand an
 * index out again soon). A veth made again has a new index: the old
 * entry's counts join the totals. */
static void attach_traffic(loop *l)
{
    ink_supervisor *s = l->s;
    if (!s->traffic || !l->net_ready ||
        (l->w->traffic_ifindex && (int)l->w->traffic_ifindex == l->net.host_ifindex))
        return;
    unsigned old = l->w->traffic_ifindex, idx = 0;
    ink_err err = {0};
    if (ink_traffic_attach(s->traffic, l->net.host_ifname, &idx, &err) < 0) {
        LOG_WARN("cannot count the workload's traffic with eBPF", "workload", l->w->id, "error",
                 err.msg);
        return;
    }
    if (old && old != idx) {
        ink_traffic_counters c;
        if (ink_traffic_read(s->traffic, old, &c, &err) == 1) {
            l->p.usage.traffic.rx_bytes += c.rx_bytes;
            l->p.usage.traffic.tx_bytes += c.tx_bytes;
            l->p.usage.traffic.rx_packets += c.rx_packets;
            l->p.usage.traffic.tx_packets += c.tx_packets;
            save_persisted(l);
        }
        ink_traffic_detach(s->traffic, NULL, old, &err);
    }
    set_traffic_ifindex(l, idx);
}

static void detach_traffic(loop *l)
{
    ink_supervisor *s = l->s;
    if (!s->traffic)
        return;
    char ifname[IFNAMSIZ];
    ink_net_host_ifname(l->w->id, ifname);
    ink_err err = {0};
    if (ink_traffic_detach(s->traffic, ifname, l->w->traffic_ifindex, &err) < 0)
        LOG_WARN("removing the workload's eBPF counters failed", "workload", l->w->id, "error",
                 err.msg);
    set_traffic_ifindex(l, 0);
}

/* ------------------------------------------------------------ sandbox */

/* l->ready, and the forwarder told: a published port that other workloads
 * share sends connections only to members that are ready. */
static void set_ready(loop *l, bool ready)
{
    l->ready = ready;
    if (l->published && l->s->forwarder)
        ink_forwarder_set_ready(l->s->forwarder, l->w->id, ready);
}

/* Ends the startup CPU boost: once the app answers, once the boost window
 * passed, and at once for a sandbox this loop did not start (adopted after
 * an agent restart: whatever its cgroup says, the app's limit is what
 * holds). A failed write is tried again on the next pass. */
static void settle_cpu(loop *l)
{
    if (l->cpu_settled)
        return;
    int64_t booted_ms = l->started_mono_ms ? ink_mono_ms() - l->started_mono_ms : 0;
    if (l->started_mono_ms && !l->ready && booted_ms < l->s->cfg.boot_cpu_window_ms)
        return;
    uint32_t cpu = ink_bundle_cpu_millis(l->want);
    ink_err err = {0};
    if (ink_cgroup_set_cpu_limit(l->cgroup, cpu, &err) < 0) {
        LOG_WARN("cannot set the app's CPU limit on its sandbox; trying again", "workload",
                 l->w->id, "error", err.msg);
        return;
    }
    l->cpu_settled = true;
    if (l->started_mono_ms && l->s->cfg.boot_cpu_millis > cpu)
        LOG_DEBUG("startup CPU boost ended", "workload", l->w->id, "after_ms", LOG_INT(booted_ms),
                  "ready", l->ready ? "true" : "false", "cpu_millis", LOG_INT(cpu));
}

static void stop_waiter(loop *l)
{
    ink_runsc_wait_cancel(&l->waiter);
}

/* Removes the sandbox (any state) and its cgroup. */
static int remove_sandbox(loop *l, ink_err *err)
{
    /* No new connections while it stops (they go to other members of the
     * port's group, if it has any). */
    set_ready(l, false);
    stop_waiter(l);
    ink_supervisor *s = l->s;
    if (ink_runsc_stop(&s->runsc, l->w->id, s->cfg.stop_grace_ms, err) < 0)
        LOG_WARN("stopping sandbox failed; forcing", "workload", l->w->id, "error", err->msg);
    ink_err_clear(err);
    fold_cgroup(l);
    if (ink_runsc_delete(&s->runsc, l->w->id, true, err) < 0)
        return -1;
    ink_cgroup_remove(l->cgroup);
    l->sandbox_up = false;
    l->exited = false;
    return 0;
}

/* The workload's egress rules (net/firewall.h), in place before anything
 * of it runs: a failure (its policy is not installed, nftables refused)
 * fails the start, so nothing ever runs unfiltered. Adding what is
 * already there costs nothing. */
static int program_firewall(loop *l, ink_err *err)
{
    ink_fw_spec spec = ink_supervisor_fw_spec(l->want, l->net.addr);
    if (ink_firewall_add(l->s->fw, &spec, err) < 0)
        return -1;
    char note[512];
    ink_firewall_note(l->s->fw, l->w->id, note, sizeof note);
    if (note[0])
        syslog_line(l, "%s", note);
    l->fw_ready = true;
    return 0;
}

static int start_sandbox(loop *l, ink_err *err)
{
    ink_supervisor *s = l->s;
    if (open_logs(l, err) < 0)
        return -1;
    /* A stopped sandbox of the same id may still be registered. */
    fold_cgroup(l); /* a sandbox that ended while no agent ran */
    if (ink_runsc_known(&s->runsc, l->w->id) &&
        ink_runsc_delete(&s->runsc, l->w->id, true, err) < 0)
        return -1;
    ink_cgroup_remove(l->cgroup);
    /* Every start sets the namespace up again: gVisor's netstack moved
     * eth0's address and routes into the sandbox that ended, and the next
     * one must find them on eth0 to take them over. */
    if (!l->net_fresh) {
        ink_workload_net_free(&l->net);
        l->net_ready = false;
        if (ink_workload_net_setup(s->net, l->w->id, &l->net, err) < 0)
            return ink_err_wrap(err, "network");
        l->net_ready = true;
        attach_traffic(l);
    }
    l->net_fresh = false;
    if (program_firewall(l, err) < 0)
        return -1;
    int out_fd, err_fd;
    if (ink_log_sink_workload_fds(l->logs, &out_fd, &err_fd, err) < 0)
        return -1;
    set_status(l, INK__V1__WORKLOAD_STATUS__STATE__STARTING, NULL);
    int64_t t0 = ink_mono_ms();
    int rc = ink_runsc_run(&s->runsc, l->w->id, l->bundle_dir, out_fd, err_fd, err);
    close(out_fd);
    close(err_fd);
    if (rc < 0)
        return -1;
    pthread_mutex_lock(&s->mu);
    l->w->cgroup_folded = false; /* a new cgroup: metrics add it again */
    pthread_mutex_unlock(&s->mu);
    ink_restart_started(&l->p.restart, ink_now_ms());
    l->p.sandbox_generation = l->want->generation;
    save_persisted(l);
    l->sandbox_up = true;
    set_ready(l, false);
    l->exited = false;
    l->cpu_settled = false;
    l->started_mono_ms = t0;
    l->active_ms = ink_mono_ms();
    syslog_line(l, "started generation %llu (%s)", (unsigned long long)l->want->generation,
                l->p.image_digest);
    LOG_INFO("workload started", "workload", l->w->id, "generation", LOG_U64(l->want->generation),
             "address", l->net.addr_str, "ms", LOG_INT(ink_mono_ms() - t0));
    if (ink_runsc_wait_start(&s->runsc, l->w->id, &l->waiter, err) < 0)
        LOG_WARN("cannot watch the sandbox for its exit", "workload", l->w->id, "error", err->msg);
    return 0;
}

/* The sandbox has ended (seen by the waiter or in runsc state): record
 * why, remove it, schedule the restart. */
static void handle_exit(loop *l)
{
    int code = l->exited ? l->exit_status : -1;
    if (code < 0)
        code = ink_runsc_exit_status(&l->s->runsc, l->w->id);
    bool oom = ink_cgroup_oom_kills(l->cgroup) > 0;
    int64_t delay = ink_restart_exited(&l->p.restart, code, oom, ink_now_ms());
    ink_err err = {0};
    set_ready(l, false);
    stop_waiter(l);
    fold_cgroup(l);
    if (ink_runsc_delete(&l->s->runsc, l->w->id, true, &err) < 0)
        LOG_WARN("removing ended sandbox failed", "workload", l->w->id, "error", err.msg);
    ink_cgroup_remove(l->cgroup);
    l->sandbox_up = false;
    l->exited = false;
    save_persisted(l);
    syslog_line(l, "%s; restart %u in %llds", l->p.restart.reason, l->p.restart.restarts,
                (long long)(delay / 1000));
    LOG_WARN("workload ended", "workload", l->w->id, "reason", l->p.restart.reason, "restarts",
             LOG_INT(l->p.restart.restarts), "restart_in_ms", LOG_INT(delay), "crash_loop",
             l->p.restart.crash_loop ? "true" : "false");
}

/* The app's port accepts a TCP connection from the node. */
static bool port_answers(const loop *l)
{
    if (!l->want->port)
        return true;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)l->want->port), .sin_addr = l->net.addr};
    bool ok = false;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        ok = true;
    } else if (errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int soerr = 0;
        socklen_t len = sizeof soerr;
        ok = poll(&p, 1, 150) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 &&
             soerr == 0;
    }
    close(fd);
    return ok;
}

static int publish(loop *l, ink_err *err)
{
    if (!l->want->port)
        return 0;
    struct sockaddr_in target = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)l->want->port), .sin_addr = l->net.addr};
    uint16_t want_port =
        (uint16_t)(l->want->published_port ? l->want->published_port : l->p.published_port);
    uint16_t bound = 0;
    if (ink_forwarder_publish(l->s->forwarder, l->w->id, l->s->cfg.publish_address, want_port,
                              &target, &bound, err) < 0)
        return ink_err_wrap(err, "publishing port %u", want_port);
    if (!l->published || bound != l->p.published_port) {
        LOG_INFO("port published", "workload", l->w->id, "listen", l->s->cfg.publish_address,
                 "port", LOG_INT(bound), "target", l->net.addr_str, "target_port",
                 LOG_INT(l->want->port));
    }
    if (!l->published) {
        /* A new mapping starts not ready. */
        l->published = true;
        set_ready(l, l->ready);
    }
    if (bound != l->p.published_port) {
        l->p.published_port = bound;
        save_persisted(l);
    }
    return 0;
}

static void unpublish(loop *l)
{
    if (l->s->forwarder)
        ink_forwarder_unpublish(l->s->forwarder, l->w->id);
    l->published = false;
}

/* ------------------------------------------------------------ converge */

/* runsc state, retried briefly: a concurrent runsc exec rewrites the
 * sandbox's state file and a reader can find it missing for a moment. */
static int sandbox_state(loop *l, ink_sandbox_state *st, ink_err *err)
{
    /* Nothing in runsc's root for this id: no need to run runsc (~35 ms
     * of a fresh deploy, twice, with the delete before a start). */
    if (!ink_runsc_known(&l->s->runsc, l->w->id)) {
        *st = (ink_sandbox_state){0};
        return 0;
    }
    for (int attempt = 0;; attempt++) {
        if (ink_runsc_state(&l->s->runsc, l->w->id, st, err) == 0)
            return 0;
        if (attempt == 4)
            return -1;
        ink_err_clear(err);
        usleep(50000 << attempt);
    }
}

static void retry_later(loop *l, Ink__V1__WorkloadStatus__State state, const char *what,
                        const ink_err *err)
{
    int64_t delay = ink_backoff_next(&l->prepare_backoff);
    l->next_attempt_ms = ink_mono_ms() + delay;
    set_status(l, state, "%s: %s (retry in %llds)", what, err->msg, (long long)(delay / 1000));
    syslog_line(l, "%s: %s", what, err->msg);
    LOG_WARN("workload step failed", "workload", l->w->id, "step", what, "error", err->msg,
             "retry_ms", LOG_INT(delay));
}

static void leave_sleep(loop *l);

/* Tears everything down; 0 when nothing of the workload is left. */
/* How long a removed workload's connections in flight may take. */
#define REMOVE_DRAIN_MS 5000

static int converge_removed(loop *l)
{
    ink_supervisor *s = l->s;
    ink_err err = {0};
    set_status(l, INK__V1__WORKLOAD_STATUS__STATE__STOPPED, "removing");
    /* Drain first: once not ready, the port's other members (the replica
     * that replaces this one) take every new connection, and the ones in
     * flight here get a few seconds to finish before unpublish resets
     * them. */
    if (l->published && s->forwarder) {
        if (!l->drain_until_ms) {
            set_ready(l, false);
            l->drain_until_ms = ink_mono_ms() + REMOVE_DRAIN_MS;
        }
        ink_forward_stats fs;
        if (ink_mono_ms() < l->drain_until_ms &&
            ink_forwarder_stats(s->forwarder, l->w->id, &fs) == 0 && fs.connections_active > 0) {
            l->next_attempt_ms = ink_mono_ms() + 100;
            return -1;
        }
    }
    unpublish(l);
    if (l->sleep == SLEEP_FROZEN)
        leave_sleep(l);
    if (ink_runsc_known(&s->runsc, l->w->id) && remove_sandbox(l, &err) < 0) {
        retry_later(l, INK__V1__WORKLOAD_STATUS__STATE__STOPPED, "removing sandbox", &err);
        return -1;
    }
    /* Its elements and drop counters go with its network: the interface
     * name and address may soon belong to someone else. */
    if (ink_firewall_remove(s->fw, l->w->id, &err) < 0) {
        retry_later(l, INK__V1__WORKLOAD_STATUS__STATE__STOPPED, "removing egress rules", &err);
        return -1;
    }
    l->fw_ready = false;
    detach_traffic(l);
    if (ink_workload_net_teardown(s->net, l->w->id, &err) < 0) {
        retry_later(l, INK__V1__WORKLOAD_STATUS__STATE__STOPPED, "removing network", &err);
        return -1;
    }
    ink_workload_net_free(&l->net);
    l->net_ready = false;
    ink_followers_end(s, l->w->id);
    if (l->logs) {
        pump_logs(l);
        ink_log_sink_close(l->logs);
        l->logs = NULL;
    }
    ink_rmtree(l->w->dir);
    LOG_INFO("workload removed", "workload", l->w->id);
    return 0;
}

/* A sandbox left running by the previous agent keeps its network exactly
 * as it is: gVisor's netstack took the address off eth0 when it started,
 * and "repairing" it would give the namespace's own kernel the address
 * too, which then answers the app's connections with resets. Returns -1
 * when the loop should try again later. */
static int adopt_network(loop *l)
{
    ink_sandbox_state st;
    ink_err err = {0};
    if (ink_runsc_state(&l->s->runsc, l->w->id, &st, &err) < 0 || st.status != INK_SANDBOX_RUNNING)
        return 0; /* nothing to adopt: prepare as usual */
    int found = ink_workload_net_lookup(l->s->net, l->w->id, &l->net, &err);
    if (found < 0) {
        retry_later(l, INK__V1__WORKLOAD_STATUS__STATE__FAILED, "network lookup", &err);
        return -1;
    }
    if (found == 1 && l->net.netns_exists && l->net.host_ifindex > 0) {
        l->net_ready = true;
        attach_traffic(l);
        return 0;
    }
    ink_workload_net_free(&l->net);
    memset(&l->net, 0, sizeof l->net);
    return 0; /* incomplete: let setup repair it */
}

/* ------------------------------------------------------------ scale to zero */

static bool scales_to_zero(const loop *l)
{
    return l->want && l->want->min_replicas == 0 && l->want->port && l->s->forwarder;
}

static int64_t idle_timeout_ms(const loop *l)
{
    uint32_t s = l->want->idle_timeout_s ? l->want->idle_timeout_s : DEFAULT_IDLE_TIMEOUT_S;
    return (int64_t)s * 1000;
}

static void set_asleep(loop *l, bool asleep)
{
    pthread_mutex_lock(&l->s->mu);
    l->w->asleep = asleep;
    l->w->wake_asked_ms = 0;
    pthread_mutex_unlock(&l->s->mu);
}

/* When a request asked for a wake (ink_mono_ms), 0: none. */
static int64_t wake_asked(loop *l)
{
    pthread_mutex_lock(&l->s->mu);
    int64_t t = l->w->wake_asked_ms;
    pthread_mutex_unlock(&l->s->mu);
    return t;
}

/* How long nothing has moved: no packet through its veth (eBPF, or the
 * veth's statistics looked at on each pass), no connection through its
 * published port, no start. */
static int64_t idle_for_ms(loop *l)
{
    int64_t now = ink_mono_ms();
    if (l->active_ms == 0)
        l->active_ms = now;
    ink_traffic_counters c;
    bool ebpf = false;
    if (ink_supervisor_read_traffic(l->s, l->w->traffic_ifindex, l->net.host_ifname, &c, &ebpf)) {
        uint64_t last_ns = ink_traffic_last_activity(&c);
        if (ebpf && last_ns && (int64_t)(last_ns / 1000000) > l->active_ms)
            l->active_ms = (int64_t)(last_ns / 1000000);
        uint64_t packets = c.rx_packets + c.tx_packets;
        if (!ebpf && packets != l->seen_packets) {
            l->seen_packets = packets;
            l->active_ms = now;
        }
    }
    ink_forward_stats fs;
    if (ink_forwarder_stats(l->s->forwarder, l->w->id, &fs) == 0) {
        if (fs.connections_active > 0)
            l->active_ms = now;
        int64_t last = fs.last_activity_ms ? now - (ink_now_ms() - fs.last_activity_ms) : 0;
        if (last > l->active_ms)
            l->active_ms = last;
    }
    return now - l->active_ms;
}

/* The stopped tier: no sandbox (memory freed); its network, rules and
 * held port stay. */
static int stop_asleep(loop *l, ink_err *err)
{
    if (remove_sandbox(l, err) < 0)
        return -1;
    l->sleep = SLEEP_STOPPED;
    l->p.stopped_asleep = true;
    l->p.restart.next_start_ms = 0;
    save_persisted(l);
    syslog_line(l, "asleep: sandbox stopped (memory freed); the next request starts it");
    LOG_INFO("workload asleep: stopped", "workload", l->w->id);
    return 0;
}

/* Going to sleep did not happen: the port serves again and the idle time
 * starts over. */
static void stay_awake(loop *l)
{
    set_asleep(l, false);
    ink_forwarder_resume(l->s->forwarder, l->w->id);
    l->active_ms = ink_mono_ms();
}

/* Idle long enough: new connections are held from now on, then the
 * sandbox is frozen (or stopped, with sleep_stop_after 0). A connection
 * that slipped through before the hold keeps it awake. */
static void fall_asleep(loop *l, int64_t idle_ms)
{
    ink_supervisor *s = l->s;
    ink_err err = {0};
    ink_forwarder_pause(s->forwarder, l->w->id, s->cfg.wake_timeout_ms);
    ink_forward_stats fs;
    if (ink_forwarder_stats(s->forwarder, l->w->id, &fs) == 0 && fs.connections_active > 0) {
        stay_awake(l);
        return;
    }
    set_asleep(l, true);
    if (s->cfg.sleep_stop_after_ms == 0) {
        if (stop_asleep(l, &err) < 0) {
            LOG_WARN("cannot stop the idle workload; it stays up", "workload", l->w->id, "error",
                     err.msg);
            stay_awake(l);
            return;
        }
    } else {
        if (ink_cgroup_freeze(l->cgroup, true, FREEZE_TIMEOUT_MS, &err) < 0) {
            LOG_WARN("cannot pause the idle workload; it stays up", "workload", l->w->id, "error",
                     err.msg);
            ink_cgroup_freeze(l->cgroup, false, FREEZE_TIMEOUT_MS, &err);
            stay_awake(l);
            return;
        }
        l->sleep = SLEEP_FROZEN;
        syslog_line(l, "asleep after %llds idle: paused (memory kept); the next request wakes it",
                    (long long)(idle_ms / 1000));
        LOG_INFO("workload asleep: paused", "workload", l->w->id, "idle_ms", LOG_INT(idle_ms));
    }
    l->asleep_ms = ink_mono_ms();
    l->p.usage.sleeps++;
    save_persisted(l);
    set_status(l, INK__V1__WORKLOAD_STATUS__STATE__SLEEPING,
               l->sleep == SLEEP_FROZEN ? ASLEEP_PAUSED : ASLEEP_STOPPED);
}

static void woke(loop *l, sleep_tier from, int64_t asked_ms)
{
    int64_t took = asked_ms ? ink_mono_ms() - asked_ms : 0;
    l->p.usage.wakes++;
    l->p.usage.last_wake_ms = (uint32_t)took;
    save_persisted(l);
    l->active_ms = ink_mono_ms();
    syslog_line(l, "woken by a request in %lld ms", (long long)took);
    LOG_INFO("workload woken", "workload", l->w->id, "tier",
             from == SLEEP_FROZEN ? "paused" : "stopped", "ms", LOG_INT(took));
}

/* Awake again, for whatever reason (a request, a new spec, removal):
 * thawed if frozen; the forwarder's held connections go once the port
 * answers (converge resumes it). */
static void leave_sleep(loop *l)
{
    ink_err err = {0};
    if (l->sleep == SLEEP_FROZEN &&
        ink_cgroup_freeze(l->cgroup, false, FREEZE_TIMEOUT_MS, &err) < 0)
        LOG_WARN("thawing the workload failed", "workload", l->w->id, "error", err.msg);
    if (l->p.stopped_asleep) {
        l->p.stopped_asleep = false;
        save_persisted(l);
    }
    l->sleep = SLEEP_NONE;
    set_asleep(l, false);
}

/* A wake that cannot succeed (start failed, the app ended or did not
 * answer in time): the held requests get the reason, the workload goes
 * back to the stopped tier, and requests for the next few seconds are
 * refused at once instead of each paying for another failed start. */
static void wake_failed(loop *l, const char *why)
{
    ink_supervisor *s = l->s;
    snprintf(l->wake_error, sizeof l->wake_error, "%s could not be woken: %s",
             *l->want->app ? l->want->app : l->w->id, why);
    unsigned n = ink_forwarder_fail_held(s->forwarder, l->w->id, l->wake_error);
    syslog_line(l, "wake failed: %s", why);
    LOG_WARN("wake failed", "workload", l->w->id, "error", why, "requests_refused", LOG_INT(n));
    ink_err err = {0};
    if (ink_runsc_known(&s->runsc, l->w->id) && remove_sandbox(l, &err) < 0)
        LOG_WARN("removing the failed sandbox failed", "workload", l->w->id, "error", err.msg);
    l->waking_since_ms = 0;
    l->sleep = SLEEP_STOPPED;
    l->p.stopped_asleep = true;
    l->p.restart.next_start_ms = 0;
    save_persisted(l);
    set_asleep(l, true);
    ink_forwarder_pause(s->forwarder, l->w->id, s->cfg.wake_timeout_ms);
    l->wake_fail_until = ink_mono_ms() + ink_backoff_next(&l->prepare_backoff);
    set_status(l, INK__V1__WORKLOAD_STATUS__STATE__FAILED, "%s", l->wake_error);
}

/* A pass while asleep. Returns true when the pass is done (still asleep),
 * false when converge goes on (woken, or the sandbox is to be started). */
static bool sleep_pass(loop *l)
{
    ink_supervisor *s = l->s;
    ink_err err = {0};
    int64_t asked = wake_asked(l);
    if (asked) {
        if (l->sleep == SLEEP_STOPPED && ink_mono_ms() < l->wake_fail_until) {
            ink_forwarder_fail_held(s->forwarder, l->w->id, l->wake_error);
            set_asleep(l, true); /* the next request asks again */
            return true;
        }
        if (l->sleep == SLEEP_FROZEN) {
            if (ink_cgroup_freeze(l->cgroup, false, FREEZE_TIMEOUT_MS, &err) < 0) {
                LOG_WARN("thawing the workload failed; starting it again", "workload", l->w->id,
                         "error", err.msg);
                l->sleep = SLEEP_STOPPED;
            } else {
                ink_forwarder_resume(s->forwarder, l->w->id);
                woke(l, SLEEP_FROZEN, asked);
                leave_sleep(l);
                return false;
            }
        }
        /* Stopped: converge starts the sandbox; the port's answer ends
         * the wake (converge, alive branch). */
        set_status(l, INK__V1__WORKLOAD_STATUS__STATE__WAKING, "woken by a request");
        l->waking_since_ms = asked;
        leave_sleep(l);
        return false;
    }
    if (l->sleep == SLEEP_FROZEN && ink_mono_ms() - l->asleep_ms >= s->cfg.sleep_stop_after_ms) {
        /* runsc cannot stop a frozen sandbox: thawed for its SIGTERM. */
        if (ink_cgroup_freeze(l->cgroup, false, FREEZE_TIMEOUT_MS, &err) < 0 ||
            stop_asleep(l, &err) < 0)
            LOG_WARN("stopping the sleeping workload failed", "workload", l->w->id, "error",
                     err.msg);
        else
            set_status(l, INK__V1__WORKLOAD_STATUS__STATE__SLEEPING, ASLEEP_STOPPED);
    }
    if (l->sleep == SLEEP_STOPPED && !l->published) {
        /* A restarted agent: the port is held again. */
        if (publish(l, &err) < 0)
            LOG_WARN("publishing the sleeping workload's port failed", "workload", l->w->id,
                     "error", err.msg);
        ink_forwarder_pause(s->forwarder, l->w->id, s->cfg.wake_timeout_ms);
        set_asleep(l, true);
        set_status(l, INK__V1__WORKLOAD_STATUS__STATE__SLEEPING, ASLEEP_STOPPED);
    }
    return true;
}

static void converge(loop *l)
{
    ink_supervisor *s = l->s;
    const Ink__V1__Assignment *a = l->want;
    ink_err err = {0};
    if (l->next_attempt_ms && ink_mono_ms() < l->next_attempt_ms)
        return;
    l->next_attempt_ms = 0;
    if (open_logs(l, &err) < 0) {
        retry_later(l, INK__V1__WORKLOAD_STATUS__STATE__FAILED, "opening logs", &err);
        return;
    }

    if (!l->net_ready && l->p.prepared_generation == a->generation &&
        l->p.sandbox_generation == a->generation && adopt_network(l) < 0)
        return;
    if (l->p.prepared_generation != a->generation || !l->net_ready) {
        bool fresh = l->p.prepared_generation != a->generation;
        if (fresh && !l->sandbox_up)
            set_status(l, INK__V1__WORKLOAD_STATUS__STATE__PENDING, NULL);
        if (prepare(l, &err) < 0) {
            retry_later(l, INK__V1__WORKLOAD_STATUS__STATE__FAILED, "preparing", &err);
            return;
        }
        ink_backoff_reset(&l->prepare_backoff);
        if (fresh && l->p.sandbox_generation != a->generation) {
            /* A new spec starts from a clean restart history. */
            l->p.restart = (ink_restart){0};
            save_persisted(l);
        }
    }

    if (l->p.stopped_asleep && l->sleep == SLEEP_NONE && !l->waking_since_ms)
        l->sleep = SLEEP_STOPPED; /* as the previous agent left it */
    if (l->sleep != SLEEP_NONE) {
        /* A new spec, or no more scale to zero: up again at once. */
        if (l->p.sandbox_generation != a->generation || !scales_to_zero(l)) {
            if (l->sleep == SLEEP_FROZEN)
                ink_forwarder_resume(s->forwarder, l->w->id);
            leave_sleep(l);
        } else if (sleep_pass(l)) {
            return;
        }
    }

    ink_sandbox_state st;
    if (sandbox_state(l, &st, &err) < 0) {
        retry_later(l, INK__V1__WORKLOAD_STATUS__STATE__FAILED, "runsc state", &err);
        return;
    }
    bool alive = st.status == INK_SANDBOX_RUNNING || st.status == INK_SANDBOX_PAUSED;
    if (alive && l->exited) {
        if (l->exit_status >= 0) {
            alive = false; /* it ended; runsc state has not caught up */
        } else {
            /* runsc wait gave up without an exit status (it can trip over
             * the state file while an exec rewrites it): the sandbox is
             * still there, so watch it again. */
            l->exited = false;
        }
    }

    if (alive && l->p.sandbox_generation != a->generation) {
        syslog_line(l, "replacing generation %llu with %llu",
                    (unsigned long long)l->p.sandbox_generation, (unsigned long long)a->generation);
        LOG_INFO("replacing workload", "workload", l->w->id, "from",
                 LOG_U64(l->p.sandbox_generation), "to", LOG_U64(a->generation));
        if (remove_sandbox(l, &err) < 0) {
            retry_later(l, INK__V1__WORKLOAD_STATUS__STATE__FAILED, "stopping old generation",
                        &err);
            return;
        }
        l->p.restart = (ink_restart){0};
        alive = false;
    }

    if (alive) {
        if (!l->sandbox_up) {
            /* Left running by a previous agent: adopt it, do not restart. */
            l->sandbox_up = true;
            syslog_line(l, "agent restarted: adopted the running sandbox");
            LOG_INFO("workload adopted", "workload", l->w->id, "generation", LOG_U64(a->generation),
                     "pid", LOG_INT(st.pid));
        }
        /* An adopted sandbox got its rules from the agent's first sync;
         * this also resolves its allowlist's host names. Without its
         * rules it sends nothing (unassigned): say why. */
        if (!l->fw_ready && program_firewall(l, &err) < 0) {
            set_status(l, INK__V1__WORKLOAD_STATUS__STATE__FAILED, "%s", err.msg);
            l->next_attempt_ms = ink_mono_ms() + 5000;
            return;
        }
        if (l->waiter.pid <= 0 && ink_runsc_wait_start(&s->runsc, l->w->id, &l->waiter, &err) < 0)
            LOG_WARN("cannot watch the sandbox for its exit", "workload", l->w->id, "error",
                     err.msg);
        if (publish(l, &err) < 0) {
            set_status(l, INK__V1__WORKLOAD_STATUS__STATE__FAILED, "%s", err.msg);
            l->next_attempt_ms = ink_mono_ms() + 5000;
            return;
        }
        if (!l->ready && port_answers(l)) {
            set_ready(l, true); /* before RUNNING is reported */
            syslog_line(l, "ready: port %u answers", a->port);
        }
        settle_cpu(l);
        if (l->waking_since_ms) {
            if (l->ready) {
                ink_forwarder_resume(s->forwarder, l->w->id);
                woke(l, SLEEP_STOPPED, l->waking_since_ms);
                l->waking_since_ms = 0;
            } else if (ink_mono_ms() - l->waking_since_ms > s->cfg.wake_timeout_ms) {
                char why[128];
                snprintf(why, sizeof why, "port %u did not answer within %llds", a->port,
                         (long long)(s->cfg.wake_timeout_ms / 1000));
                wake_failed(l, why);
                return;
            } else {
                set_status(l, INK__V1__WORKLOAD_STATUS__STATE__WAKING, "woken by a request");
                return;
            }
        }
        if (l->ready)
            set_status(l, INK__V1__WORKLOAD_STATUS__STATE__RUNNING, NULL);
        else
            set_status(l, INK__V1__WORKLOAD_STATUS__STATE__STARTING, "waiting for port %u",
                       a->port);
        if (l->ready && scales_to_zero(l) && l->published) {
            int64_t idle = idle_for_ms(l);
            if (idle >= idle_timeout_ms(l))
                fall_asleep(l, idle);
        }
        return;
    }

    /* Not running. */
    if (st.status == INK_SANDBOX_STOPPED && !l->sandbox_up &&
        l->p.sandbox_generation != a->generation) {
        /* An old generation that ended while the agent was away. */
        if (remove_sandbox(l, &err) < 0) {
            retry_later(l, INK__V1__WORKLOAD_STATUS__STATE__FAILED, "removing old sandbox", &err);
            return;
        }
    } else if (l->sandbox_up || st.status == INK_SANDBOX_STOPPED) {
        LOG_DEBUG("sandbox ended", "workload", l->w->id, "runsc_state",
                  ink_sandbox_status_name(st.status), "waiter_saw_exit", l->exited ? "yes" : "no",
                  "exit_status", LOG_INT(l->exit_status));
        /* It ended. Unseen by this agent (it died while no agent ran), its
         * exit status is lost; the cgroup still tells an OOM kill. */
        if (l->p.restart.started_ms == 0)
            l->p.restart.started_ms = ink_now_ms();
        int code = l->exited ? l->exit_status : -1;
        handle_exit(l);
        if (l->waking_since_ms) {
            char why[128];
            snprintf(why, sizeof why, "it exited while starting (status %d)", code);
            wake_failed(l, why);
            return;
        }
    }
    if (st.status == INK_SANDBOX_CREATED && remove_sandbox(l, &err) < 0) {
        retry_later(l, INK__V1__WORKLOAD_STATUS__STATE__FAILED, "removing half-made sandbox", &err);
        return;
    }
    if (l->p.restart.next_start_ms && !ink_restart_due(&l->p.restart, ink_now_ms())) {
        int64_t left = l->p.restart.next_start_ms - ink_now_ms();
        set_status(l,
                   l->p.restart.crash_loop ? INK__V1__WORKLOAD_STATUS__STATE__CRASH_LOOP
                                           : INK__V1__WORKLOAD_STATUS__STATE__STARTING,
                   "%s; restarting in %llds", l->p.restart.reason, (long long)(left / 1000 + 1));
        return;
    }
    int started = start_sandbox(l, &err);
    if (started < 0 && l->waking_since_ms) {
        wake_failed(l, err.msg);
        return;
    }
    if (started < 0) {
        /* A start that fails counts as an exit: same backoff, same
         * crash-loop detection. */
        ink_restart_started(&l->p.restart, ink_now_ms());
        ink_restart_exited(&l->p.restart, -1, false, ink_now_ms());
        snprintf(l->p.restart.reason, sizeof l->p.restart.reason, "start failed: %s", err.msg);
        save_persisted(l);
        syslog_line(l, "start failed: %s", err.msg);
        LOG_WARN("workload start failed", "workload", l->w->id, "error", err.msg);
        set_status(l,
                   l->p.restart.crash_loop ? INK__V1__WORKLOAD_STATUS__STATE__CRASH_LOOP
                                           : INK__V1__WORKLOAD_STATUS__STATE__FAILED,
                   "start failed: %s", err.msg);
        return;
    }
    if (publish(l, &err) < 0)
        set_status(l, INK__V1__WORKLOAD_STATUS__STATE__FAILED, "%s", err.msg);
}

/* How long the loop may sleep before the next pass. */
static int64_t next_pass_ms(const loop *l)
{
    int64_t now = ink_mono_ms(), wait = l->s->cfg.resync_ms;
    if (l->next_attempt_ms)
        wait = l->next_attempt_ms - now;
    else if (l->sandbox_up && !l->ready)
        wait = l->waking_since_ms ? WAKE_POLL_MS : READY_POLL_MS;
    else if (l->sleep == SLEEP_FROZEN)
        wait = l->asleep_ms + l->s->cfg.sleep_stop_after_ms - now;
    else if (l->sleep == SLEEP_NONE && l->ready && scales_to_zero(l))
        wait = l->active_ms + idle_timeout_ms(l) - now;
    else if (!l->sandbox_up && l->p.restart.next_start_ms)
        wait = l->p.restart.next_start_ms - ink_now_ms();
    if (wait > l->s->cfg.resync_ms)
        wait = l->s->cfg.resync_ms;
    int64_t floor = l->waking_since_ms ? 1 : 10;
    return wait < floor ? floor : wait;
}

/* Takes a newer spec or the removal order. Returns false when the loop
 * is to end (agent stopping, or removal done). */
static bool take_orders(loop *l, bool removal_done)
{
    ink_supervisor *s = l->s;
    pthread_mutex_lock(&s->mu);
    if (l->w->next_want) {
        if (l->want)
            ink__v1__assignment__free_unpacked(l->want, NULL);
        l->want = l->w->next_want;
        l->w->next_want = NULL;
        snprintf(l->w->app, sizeof l->w->app, "%s", l->want->app);
        snprintf(l->w->project, sizeof l->w->project, "%s", l->want->project);
        l->next_attempt_ms = 0;
        ink_backoff_reset(&l->prepare_backoff);
    }
    l->remove = l->w->remove;
    bool go_on = !s->stopping;
    if (l->remove && removal_done) {
        l->w->done = true;
        go_on = false;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->mu);
    return go_on;
}

static void wait_events(loop *l, int64_t ms)
{
    struct pollfd p[4];
    int n = 0;
    p[n++] = (struct pollfd){.fd = l->w->wake_fd, .events = POLLIN};
    int fds[2] = {-1, -1};
    if (l->logs) {
        ink_log_sink_read_fds(l->logs, fds);
        for (int i = 0; i < 2; i++)
            p[n++] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    }
    int waiter_idx = -1;
    if (l->waiter.pid > 0) {
        waiter_idx = n;
        p[n++] = (struct pollfd){.fd = l->waiter.fd, .events = POLLIN};
    }
    int64_t end = ink_mono_ms() + ms;
    for (;;) {
        int64_t left = end - ink_mono_ms();
        if (left < 0)
            left = 0;
        int r = poll(p, (nfds_t)n, (int)left);
        if (r < 0 && errno != EINTR)
            return;
        bool act = false;
        if (p[0].revents) {
            uint64_t v;
            ssize_t rd = read(l->w->wake_fd, &v, sizeof v);
            (void)rd;
            act = true;
        }
        if (l->logs && (p[1].revents || p[2].revents))
            pump_logs(l);
        if (waiter_idx >= 0 && p[waiter_idx].revents) {
            int code;
            if (ink_runsc_wait_collect(&l->waiter, &code) == 1) {
                pump_logs(l); /* the app's last words before the exit line */
                l->exited = true;
                l->exit_status = code;
                act = true;
            }
        }
        if (act || left == 0)
            return;
    }
}

void *ink_workload_main(void *arg)
{
    ink_workload *w = arg;
    ink_supervisor *s = w->sup;
    loop l = {.w = w, .s = s, .waiter = {.pid = -1, .fd = -1}};
    l.bundle_dir = ink_xasprintf("%s/bundle", w->dir);
    l.state_path = ink_xasprintf("%s/state.json", w->dir);
    l.log_dir = ink_xasprintf("%s/logs", w->dir);
    l.cgroup = ink_cgroup_path(w->id);
    ink_backoff_init(&l.prepare_backoff, PREPARE_BACKOFF_MIN_MS, PREPARE_BACKOFF_MAX_MS, 2.0, 0.2);
    load_persisted(&l);

    bool removal_done = false;
    while (take_orders(&l, removal_done)) {
        if (l.remove) {
            if (l.next_attempt_ms && ink_mono_ms() < l.next_attempt_ms) {
                wait_events(&l, l.next_attempt_ms - ink_mono_ms());
                continue;
            }
            l.next_attempt_ms = 0;
            removal_done = converge_removed(&l) == 0;
            if (removal_done)
                continue;
        } else if (l.want) {
            removal_done = false;
            l.drain_until_ms = 0;
            converge(&l);
        }
        wait_events(&l, next_pass_ms(&l));
    }
    /* Agent stopping (or workload removed): the sandbox, if any, runs on;
     * its output waits in the FIFOs for the next agent. */
    stop_waiter(&l);
    if (l.logs) {
        pump_logs(&l);
        ink_log_sink_close(l.logs);
    }
    if (l.want)
        ink__v1__assignment__free_unpacked(l.want, NULL);
    ink_workload_net_free(&l.net);
    free(l.bundle_dir);
    free(l.state_path);
    free(l.log_dir);
    free(l.cgroup);
    pthread_mutex_lock(&s->mu);
    w->done = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}
