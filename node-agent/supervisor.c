/* The set of workload loops: started and retired as the desired set
 * changes, asked for status, metrics and log followers; and a janitor that
 * joins finished loops and collects images no workload uses. */
#include "supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "log.h"
#include "util.h"
#include "supervisor_internal.h"

#define JANITOR_TICK_MS 1000
#define GC_INTERVAL_MS (10 * 60 * 1000)
/* An image no workload uses stays this long: redeploying or scaling back up
 * soon after a removal should not pull again. */
#define IMAGE_KEEP_MS (60 * 60 * 1000)
#define FOLLOW_MAX_PENDING 512

static ink_workload *find_live(ink_supervisor *s, const char *id)
{
    for (ink_workload *w = s->list; w; w = w->next) {
        if (!w->done && strcmp(w->id, id) == 0)
            return w;
    }
    return NULL;
}

/* Called with s->mu held. */
static ink_workload *add_workload(ink_supervisor *s, const char *id)
{
    ink_workload *w = ink_workload_new(s, id);
    w->next = s->list;
    s->list = w;
    pthread_create(&w->thread, NULL, ink_workload_main, w);
    return w;
}

void ink_supervisor_update(ink_supervisor *s, Ink__V1__Assignment *const *want, size_t n)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < n; i++) {
        ink_workload *w = find_live(s, want[i]->workload_id);
        if (!w)
            w = add_workload(s, want[i]->workload_id);
        if (w->next_want)
            ink__v1__assignment__free_unpacked(w->next_want, NULL);
        w->next_want = ink_assignment_dup(want[i]);
        w->remove = false;
        ink_workload_wake(w);
    }
    for (ink_workload *w = s->list; w; w = w->next) {
        bool wanted = false;
        for (size_t i = 0; i < n && !wanted; i++)
            wanted = strcmp(want[i]->workload_id, w->id) == 0;
        if (!wanted && !w->remove && !w->done) {
            w->remove = true;
            if (w->next_want) {
                ink__v1__assignment__free_unpacked(w->next_want, NULL);
                w->next_want = NULL;
            }
            ink_workload_wake(w);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

/* The forwarder's on_accept: every accepted connection, so only a flag
 * and an eventfd write when the workload sleeps. */
static void on_accept(const char *key, void *arg)
{
    ink_supervisor_wake_request(arg, key);
}

/* Called with s->mu held: the first request for a sleeping workload asks
 * its loop for a wake; later ones wait on the same wake. */
static void ask_wake(ink_workload *w)
{
    if (w->asleep && !w->wake_asked_ms) {
        w->wake_asked_ms = ink_mono_ms();
        ink_workload_wake(w);
    }
}

void ink_supervisor_wake_request(ink_supervisor *s, const char *id)
{
    pthread_mutex_lock(&s->mu);
    ink_workload *w = find_live(s, id);
    if (w)
        ask_wake(w);
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------ orphans */

static bool in_list(char **ids, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ids[i], id) == 0)
            return true;
    }
    return false;
}

static void add_string(char ***ids, size_t *n, const char *id)
{
    if (in_list(*ids, *n, id))
        return;
    *ids = realloc(*ids, (*n + 1) * sizeof **ids);
    if (!*ids)
        abort();
    (*ids)[(*n)++] = ink_xstrdup(id);
}

static void add_id(char ***ids, size_t *n, const char *id)
{
    if (ink_valid_name(id))
        add_string(ids, n, id);
}

static bool dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return true;
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(d)))
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

/* Everything of a workload found on the node: its directory, its sandbox,
 * its address. What is not wanted gets a loop that removes it. */
static void adopt_orphans(ink_supervisor *s)
{
    char **ids = NULL;
    size_t n = 0;
    DIR *d = opendir(s->workloads_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                add_id(&ids, &n, e->d_name);
        closedir(d);
    }
    ink_err err = {0};
    char **sandboxes = NULL;
    size_t nsandboxes = 0;
    /* An empty runsc root has no sandboxes: no need to ask runsc. */
    if (!dir_is_empty(s->cfg.runsc_root) &&
        ink_runsc_list(&s->runsc, &sandboxes, &nsandboxes, &err) < 0)
        LOG_WARN("listing sandboxes failed", "error", err.msg);
    for (size_t i = 0; i < nsandboxes; i++) {
        add_id(&ids, &n, sandboxes[i]);
        free(sandboxes[i]);
    }
    free(sandboxes);
    ink_ipam_entry *addrs = NULL;
    size_t naddrs = 0;
    if (ink_ipam_list(ink_net_ipam(s->net), &addrs, &naddrs, &err) < 0)
        LOG_WARN("listing workload addresses failed", "error", err.msg);
    for (size_t i = 0; i < naddrs; i++)
        add_id(&ids, &n, addrs[i].workload_id);
    free(addrs);

    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < n; i++) {
        if (!find_live(s, ids[i])) {
            LOG_INFO("removing workload no longer wanted", "workload", ids[i]);
            ink_workload *w = add_workload(s, ids[i]);
            w->remove = true;
            ink_workload_wake(w);
        }
        free(ids[i]);
    }
    pthread_mutex_unlock(&s->mu);
    free(ids);
}

/* Counters of interfaces that went away while no agent ran (a workload
 * removed, a namespace deleted by hand): their entries would otherwise
 * stay in the pinned map, and a new interface may get the same index. */
static void drop_stale_counters(ink_supervisor *s)
{
    if (!s->traffic)
        return;
    ink_traffic_entry *entries = NULL;
    size_t n = 0;
    ink_err err = {0};
    if (ink_traffic_list(s->traffic, &entries, &n, &err) < 0) {
        LOG_WARN("listing eBPF traffic counters failed", "error", err.msg);
        return;
    }
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
        char name[IF_NAMESIZE];
        if (if_indextoname(entries[i].ifindex, name) && strncmp(name, "ink", 3) == 0)
            continue;
        if (ink_traffic_detach(s->traffic, NULL, entries[i].ifindex, &err) == 0)
            dropped++;
    }
    free(entries);
    if (dropped)
        LOG_INFO("eBPF counters of vanished interfaces dropped", "entries", LOG_INT(dropped));
}

/* ------------------------------------------------------------ janitor */

static void collect_garbage(ink_supervisor *s)
{
    /* Images and root filesystems in use: the prepared image of every
     * loop's workload, as recorded in its state. */
    char **keep = NULL;
    size_t nkeep = 0;
    int64_t now = ink_mono_ms();
    pthread_mutex_lock(&s->mu);
    for (ink_workload *w = s->list; w; w = w->next) {
        if (w->status.image_digest[0])
            add_string(&keep, &nkeep, w->status.image_digest);
    }
    size_t kept_recent = 0;
    for (size_t i = 0; i < s->nrecent; i++) {
        if (now - s->recent[i].ms < IMAGE_KEEP_MS) {
            add_string(&keep, &nkeep, s->recent[i].digest);
            s->recent[kept_recent++] = s->recent[i];
        }
    }
    s->nrecent = kept_recent;
    pthread_mutex_unlock(&s->mu);
    /* Workloads between restarts still have their digest on disk. */
    DIR *d = opendir(s->workloads_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            cleanup_free char *path =
                ink_xasprintf("%s/%s/state.json", s->workloads_dir, e->d_name);
            /* The same file reconcile.c writes: read it as JSON, not by
             * its formatting. */
            json_t *j = json_load_file(path, 0, NULL);
            const char *digest = json_string_value(json_object_get(j, "image_digest"));
            if (digest && *digest)
                add_string(&keep, &nkeep, digest);
            json_decref(j);
        }
        closedir(d);
    }
    ink_err err = {0};
    int64_t freed = ink_image_gc(s->images, (const char *const *)keep, nkeep, &err);
    if (freed < 0)
        LOG_WARN("image garbage collection failed", "error", err.msg);
    int64_t rootfs_removed = 0;
    d = opendir(s->rootfs_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            bool used = false;
            for (size_t i = 0; i < nkeep && !used; i++) {
                const char *hex = strchr(keep[i], ':');
                used = hex && strcmp(hex + 1, e->d_name) == 0;
            }
            /* .tmp-* belong to unpacks in progress or to a crashed agent;
             * none runs now (preparing == 0). */
            if (!used) {
                cleanup_free char *path = ink_xasprintf("%s/%s", s->rootfs_dir, e->d_name);
                if (ink_rmtree(path) == 0)
                    rootfs_removed++;
            }
        }
        closedir(d);
    }
    if (freed > 0 || rootfs_removed > 0)
        LOG_INFO("unused images removed", "bytes", LOG_INT(freed > 0 ? freed : 0), "rootfs",
                 LOG_INT(rootfs_removed));
    for (size_t i = 0; i < nkeep; i++)
        free(keep[i]);
    free(keep);
}

static void *janitor_main(void *arg)
{
    ink_supervisor *s = arg;
    int64_t next_gc = ink_mono_ms() + 60000;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += JANITOR_TICK_MS / 1000;
        pthread_cond_timedwait(&s->cond, &s->mu, &ts);
        /* Join loops that finished removing their workload. */
        for (ink_workload **pw = &s->list; *pw;) {
            ink_workload *w = *pw;
            if (w->done && !s->stopping) {
                *pw = w->next;
                if (w->status.image_digest[0]) {
                    s->recent = realloc(s->recent, (s->nrecent + 1) * sizeof *s->recent);
                    if (!s->recent)
                        abort();
                    s->recent[s->nrecent] = (struct ink_recent_image){.ms = ink_mono_ms()};
                    snprintf(s->recent[s->nrecent].digest, INK_DIGEST_MAX, "%s",
                             w->status.image_digest);
                    s->nrecent++;
                }
                pthread_mutex_unlock(&s->mu);
                pthread_join(w->thread, NULL);
                ink_workload_free(w);
                pthread_mutex_lock(&s->mu);
                s->gc_wanted = true;
                pw = &s->list; /* the list may have changed meanwhile */
                continue;
            }
            pw = &w->next;
        }
        int64_t now = ink_mono_ms();
        if ((s->gc_wanted || now >= next_gc) && s->preparing == 0 && !s->stopping) {
            s->gc_wanted = false;
            next_gc = now + GC_INTERVAL_MS;
            pthread_mutex_unlock(&s->mu);
            collect_garbage(s);
            pthread_mutex_lock(&s->mu);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ------------------------------------------------------------ registry logins */

static void free_logins(ink_supervisor *s)
{
    for (size_t i = 0; i < s->nlogins; i++) {
        free(s->logins[i].registry);
        free(s->logins[i].username);
        /* The password leaves no copy behind in freed memory. */
        explicit_bzero(s->logins[i].password, strlen(s->logins[i].password));
        free(s->logins[i].password);
    }
    free(s->logins);
    s->logins = NULL;
    s->nlogins = 0;
}

static int load_logins(ink_supervisor *s, const char *path, ink_err *err)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return ink_err_set(err, errno, "registry_credentials %s", path);
    if (st.st_mode & 077)
        return ink_err_set(err, 0,
                           "registry_credentials %s is readable by others (mode %o): chmod 600",
                           path, (unsigned)(st.st_mode & 0777));
    cleanup_free char *text = NULL;
    size_t len = 0;
    if (ink_read_file(path, 1 << 20, &text, &len, err) < 0)
        return -1;
    int lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        /* host, user, then the rest of the line: passwords may hold
         * spaces. */
        char *f[3] = {0};
        char *p = line;
        int nf = 0;
        for (; nf < 3; nf++) {
            p += strspn(p, " \t");
            if (!*p)
                break;
            f[nf] = p;
            if (nf == 2) {
                nf = 3;
                break;
            }
            p += strcspn(p, " \t");
            if (*p)
                *p++ = '\0';
        }
        if (nf == 0 || f[0][0] == '#')
            continue;
        if (nf != 3) {
            explicit_bzero(text, len);
            free_logins(s);
            return ink_err_set(err, 0, "%s:%d: want \"host[:port] username password\"", path,
                               lineno);
        }
        size_t plen = strlen(f[2]);
        while (plen > 0 &&
               (f[2][plen - 1] == ' ' || f[2][plen - 1] == '\t' || f[2][plen - 1] == '\r'))
            f[2][--plen] = '\0';
        s->logins = realloc(s->logins, (s->nlogins + 1) * sizeof *s->logins);
        if (!s->logins)
            abort();
        s->logins[s->nlogins++] =
            (ink_registry_login){ink_xstrdup(f[0]), ink_xstrdup(f[1]), ink_xstrdup(f[2])};
    }
    explicit_bzero(text, len);
    return 0;
}

ink_registry_opts ink_supervisor_registry_for(const ink_supervisor *s, const char *ref)
{
    ink_registry_opts o = s->registry;
    ink_image_ref r;
    ink_err err = {0};
    if (s->nlogins == 0 || ink_image_ref_parse(ref, &r, &err) < 0)
        return o;
    for (size_t i = 0; i < s->nlogins; i++) {
        if (strcmp(s->logins[i].registry, r.registry) == 0) {
            o.username = s->logins[i].username;
            o.password = s->logins[i].password;
        }
    }
    return o;
}

/* ------------------------------------------------------------ firewall */

ink_fw_spec ink_supervisor_fw_spec(const Ink__V1__Assignment *a, struct in_addr addr)
{
    return (ink_fw_spec){
        .workload_id = a->workload_id,
        .addr = addr,
        .project = a->project,
        .app = a->app,
        .policy = a->egress,
        .allow = (const char *const *)a->egress_allow,
        .nallow = a->n_egress_allow,
    };
}

/* Ink's table before any loop starts: every wanted workload that has an
 * address gets its rules, so that a sandbox the previous agent left
 * running is filtered before it is adopted (and one no longer wanted is
 * not: its traffic is dropped as unassigned until it is removed). Host
 * names come in when each loop adds its workload: a start never waits on
 * DNS. */
static int start_firewall(ink_supervisor *s, Ink__V1__Assignment *const *want, size_t n,
                          ink_err *err)
{
    ink_ipam *ipam = ink_net_ipam(s->net);
    ink_firewall_config fc = {
        .policy_dir = s->cfg.policy_dir,
        .workload_cidr = s->cfg.workload_cidr,
        .gateway = ink_ipam_gateway(ipam),
        .strict_files = true,
    };
    if (ink_firewall_open(&fc, &s->fw, err) < 0)
        return ink_err_wrap(err, "egress firewall");
    ink_fw_spec *specs = ink_xcalloc(n ? n : 1, sizeof *specs);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct in_addr addr;
        ink_err lerr = {0};
        if (ink_ipam_lookup(ipam, want[i]->workload_id, &addr, &lerr) == 1)
            specs[k++] = ink_supervisor_fw_spec(want[i], addr);
    }
    ink_ipam_entry *addrs = NULL;
    size_t naddrs = 0;
    ink_err lerr = {0};
    if (ink_ipam_list(ipam, &addrs, &naddrs, &lerr) < 0)
        naddrs = 1; /* cannot tell: make sure the table is there */
    free(addrs);
    /* A node that never ran a workload keeps its ruleset as it is. */
    int rc = ink_firewall_sync(s->fw, specs, k, k > 0 || naddrs > 0, err);
    free(specs);
    return rc < 0 ? ink_err_wrap(err, "egress firewall") : 0;
}

/* Drift checks every firewall_resync, allowlist host names when due. */
static void *firewall_main(void *arg)
{
    ink_supervisor *s = arg;
    char last_error[INK_ERR_MSG_MAX] = "";
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        int64_t due = ink_mono_ms() + s->cfg.firewall_resync_ms;
        while (!s->stopping && ink_mono_ms() < due) {
            struct timespec ts;
            ink_realtime_after(due - ink_mono_ms(), &ts);
            pthread_cond_timedwait(&s->cond, &s->mu, &ts);
        }
        if (s->stopping)
            break;
        pthread_mutex_unlock(&s->mu);
        ink_err err = {0};
        char what[512];
        /* check_drift logs what it found and repaired; a failing check is
         * logged once per distinct error, not every interval. */
        if (ink_firewall_check_drift(s->fw, what, sizeof what, &err) < 0 ||
            ink_firewall_refresh_hosts(s->fw, false, &err) < 0) {
            if (strcmp(err.msg, last_error) != 0)
                LOG_ERROR("egress firewall check failed", "error", err.msg);
            snprintf(last_error, sizeof last_error, "%s", err.msg);
        } else {
            last_error[0] = '\0';
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

ink_pol_resolve ink_supervisor_resolve_mode(ink_supervisor *s, const char *policy)
{
    return ink_firewall_resolve_mode(s->fw, policy);
}

int ink_supervisor_reload_policies(ink_supervisor *s, ink_err *err)
{
    return ink_firewall_reload_policies(s->fw, err);
}

/* ------------------------------------------------------------ lifecycle */

int ink_supervisor_start(const ink_supervisor_config *cfg, Ink__V1__Assignment *const *want,
                         size_t n, ink_supervisor **out, ink_err *err)
{
    ink_supervisor *s = ink_xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_mutex_init(&s->follow_mu, NULL);
    s->runsc = (ink_runsc){.binary = cfg->runsc,
                           .root = cfg->runsc_root,
                           .network = cfg->network,
                           .netns_dir = cfg->netns_dir};
    s->registry = (ink_registry_opts){.plain_http = cfg->plain_http,
                                      .nplain_http = cfg->nplain_http,
                                      .ca_file = cfg->registry_ca};
    s->workloads_dir = ink_xasprintf("%s/workloads", cfg->state_dir);
    s->rootfs_dir = ink_xasprintf("%s/rootfs", cfg->state_dir);
    cleanup_free char *images = ink_xasprintf("%s/images", cfg->state_dir);
    if (ink_mkdir_p(s->workloads_dir, 0700, err) < 0 || ink_mkdir_p(s->rootfs_dir, 0711, err) < 0 ||
        ink_mkdir_p(cfg->runsc_root, 0700, err) < 0)
        goto fail;
    if (cfg->registry_credentials && load_logins(s, cfg->registry_credentials, err) < 0)
        goto fail;
    if (ink_image_store_open(images, &s->images, err) < 0)
        goto fail;
    ink_net_config nc = {
        .state_dir = cfg->state_dir, .netns_dir = cfg->netns_dir, .cidr = cfg->workload_cidr};
    if (ink_net_open(&nc, &s->net, err) < 0) {
        ink_err_wrap(err, "workload network");
        goto fail;
    }
    if (ink_forwarder_start(on_accept, s, &s->forwarder, err) < 0)
        goto fail;
    if (cfg->bpf_pin_dir) {
        ink_err terr = {0};
        if (ink_traffic_open(cfg->bpf_pin_dir, &s->traffic, &terr) < 0)
            LOG_WARN("eBPF traffic counters unavailable; traffic is counted from the veths' "
                     "statistics and idle time from the published ports only",
                     "error", terr.msg);
        else
            LOG_INFO("eBPF traffic counters loaded", "map", ink_traffic_pin_path(s->traffic),
                     "reused", ink_traffic_reused(s->traffic) ? "true" : "false");
    }
    /* runsc hangs on a frozen sandbox: whatever a previous agent left
     * paused wakes up before anything asks runsc about it. */
    ink_cgroup_thaw_all();
    if (start_firewall(s, want, n, err) < 0)
        goto fail;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < n; i++) {
        ink_workload *w = add_workload(s, want[i]->workload_id);
        w->next_want = ink_assignment_dup(want[i]);
        ink_workload_wake(w);
    }
    pthread_mutex_unlock(&s->mu);
    adopt_orphans(s);
    drop_stale_counters(s);
    pthread_create(&s->janitor, NULL, janitor_main, s);
    pthread_create(&s->fw_thread, NULL, firewall_main, s);
    s->fw_thread_running = true;
    *out = s;
    return 0;
fail:
    ink_traffic_close(s->traffic);
    ink_firewall_close(s->fw);
    free_logins(s);
    ink_forwarder_stop(s->forwarder);
    ink_net_close(s->net);
    ink_image_store_close(s->images);
    free(s->workloads_dir);
    free(s->rootfs_dir);
    free(s);
    return -1;
}

void ink_supervisor_stop(ink_supervisor *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    for (ink_workload *w = s->list; w; w = w->next)
        ink_workload_wake(w);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->janitor, NULL);
    for (ink_workload *w = s->list, *next; w; w = next) {
        next = w->next;
        pthread_join(w->thread, NULL);
        ink_workload_free(w);
    }
    if (s->fw_thread_running)
        pthread_join(s->fw_thread, NULL);
    /* The table stays: the sandboxes run on, filtered, and the next agent
     * takes it over. */
    ink_firewall_close(s->fw);
    ink_forwarder_stop(s->forwarder);
    ink_traffic_close(s->traffic); /* the filters count on without an agent */
    ink_net_close(s->net);
    ink_image_store_close(s->images);
    free_logins(s);
    for (ink_follower *f = s->followers, *next; f; f = next) {
        next = f->next;
        ink_rpc_call_unref(f->call);
        free(f);
    }
    pthread_mutex_destroy(&s->follow_mu);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
    free(s->recent);
    free(s->workloads_dir);
    free(s->rootfs_dir);
    free(s);
}

const ink_runsc *ink_supervisor_runsc(const ink_supervisor *s)
{
    return &s->runsc;
}

/* ------------------------------------------------------------ status */

size_t ink_supervisor_status(ink_supervisor *s, Ink__V1__WorkloadStatus ***out)
{
    pthread_mutex_lock(&s->mu);
    size_t n = 0;
    for (ink_workload *w = s->list; w; w = w->next)
        n += !w->done;
    Ink__V1__WorkloadStatus **v = ink_xcalloc(n ? n : 1, sizeof *v);
    size_t i = 0;
    for (ink_workload *w = s->list; w && i < n; w = w->next) {
        if (w->done)
            continue;
        const ink_workload_status *st = &w->status;
        Ink__V1__WorkloadStatus *ws = ink_xcalloc(1, sizeof *ws);
        ink__v1__workload_status__init(ws);
        ws->workload_id = ink_xstrdup(w->id);
        ws->generation = st->generation;
        ws->state = st->state;
        ws->reason = ink_xstrdup(st->reason);
        ws->restarts = st->restarts;
        ws->address = ink_xstrdup(st->address);
        ws->published_port = st->published_port;
        ws->since_unix_ms = st->since_ms;
        ws->image_digest = ink_xstrdup(st->image_digest);
        ink_fw_blocked blocked[32];
        size_t nb = ink_firewall_blocked(s->fw, w->id, blocked, INK_ARRAY_LEN(blocked));
        if (nb) {
            ws->egress_blocked = ink_xcalloc(nb, sizeof *ws->egress_blocked);
            for (size_t b = 0; b < nb; b++) {
                Ink__V1__EgressBlocked *e = ink_xcalloc(1, sizeof *e);
                ink__v1__egress_blocked__init(e);
                e->category = ink_xstrdup(blocked[b].category);
                e->packets = blocked[b].packets;
                ws->egress_blocked[b] = e;
            }
            ws->n_egress_blocked = nb;
        }
        /* What the firewall has to say (a host name that does not
         * resolve, a policy that went away) when the loop has nothing. */
        if (!st->reason[0]) {
            char note[512];
            ink_firewall_note(s->fw, w->id, note, sizeof note);
            if (note[0]) {
                free(ws->reason);
                ws->reason = ink_xstrdup(note);
            }
        }
        v[i++] = ws;
    }
    pthread_mutex_unlock(&s->mu);
    *out = v;
    return i;
}

void ink_supervisor_status_free(Ink__V1__WorkloadStatus **st, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(st[i]->workload_id);
        free(st[i]->reason);
        free(st[i]->address);
        free(st[i]->image_digest);
        for (size_t b = 0; b < st[i]->n_egress_blocked; b++) {
            free(st[i]->egress_blocked[b]->category);
            free(st[i]->egress_blocked[b]);
        }
        free(st[i]->egress_blocked);
        free(st[i]);
    }
    free(st);
}

bool ink_supervisor_wake(ink_supervisor *s, const char *id)
{
    pthread_mutex_lock(&s->mu);
    ink_workload *w = find_live(s, id);
    if (w && !w->remove && w->asleep) {
        ask_wake(w);
        int64_t deadline = ink_mono_ms() + s->cfg.wake_timeout_ms;
        while (!s->stopping && !w->done && ink_mono_ms() < deadline &&
               (w->asleep || w->status.state != INK__V1__WORKLOAD_STATUS__STATE__RUNNING)) {
            struct timespec ts;
            ink_realtime_after(20, &ts);
            pthread_cond_timedwait(&s->cond, &s->mu, &ts);
        }
        w = find_live(s, id);
    }
    bool up = w && !w->remove && !w->asleep && w->status.running;
    pthread_mutex_unlock(&s->mu);
    return up;
}

bool ink_supervisor_asleep(ink_supervisor *s, const char *id)
{
    pthread_mutex_lock(&s->mu);
    ink_workload *w = find_live(s, id);
    bool asleep = w && w->asleep;
    pthread_mutex_unlock(&s->mu);
    return asleep;
}

int ink_supervisor_lookup(ink_supervisor *s, const char *id, char **log_dir, bool *running)
{
    pthread_mutex_lock(&s->mu);
    ink_workload *w = find_live(s, id);
    if (w && !w->remove) {
        *running = w->status.running && !w->asleep;
        *log_dir = ink_xasprintf("%s/logs", w->dir);
    }
    pthread_mutex_unlock(&s->mu);
    return w && !w->remove ? 0 : -1;
}

/* ------------------------------------------------------------ metrics */

/* Traffic of the host end of a workload's veth, from /proc/self/net/dev
 * (the agent's own namespace, whatever /sys shows): what that end
 * receives, the workload sent. */
static void read_veth_counters(const char *ifname, ink_traffic_counters *c)
{
    cleanup_fclose FILE *f = fopen("/proc/self/net/dev", "re");
    if (!f)
        return;
    char line[512];
    size_t len = strlen(ifname);
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ')
            p++;
        if (strncmp(p, ifname, len) != 0 || p[len] != ':')
            continue;
        /* rx: bytes packets errs drop fifo frame compressed multicast,
         * then tx: bytes packets ... */
        unsigned long long v[10];
        if (sscanf(p + len + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) == 10) {
            c->tx_bytes = v[0];
            c->tx_packets = v[1];
            c->rx_bytes = v[8];
            c->rx_packets = v[9];
        }
        return;
    }
}

/* The workload's traffic now: its eBPF counters, or its veth's
 * statistics. false when there is neither. */
bool ink_supervisor_read_traffic(ink_supervisor *s, unsigned ifindex, const char *ifname,
                                 ink_traffic_counters *c, bool *ebpf)
{
    *c = (ink_traffic_counters){0};
    *ebpf = false;
    if (s->traffic && ifindex) {
        ink_err err = {0};
        if (ink_traffic_read(s->traffic, ifindex, c, &err) == 1) {
            *ebpf = true;
            return true;
        }
    }
    if (!ifname || !ifname[0])
        return false;
    read_veth_counters(ifname, c);
    return true;
}

int ink_supervisor_metrics(ink_supervisor *s, const char *id, Ink__V1__WorkloadMetrics ***out,
                           size_t *n)
{
    typedef struct {
        char id[INK_NET_WORKLOAD_ID_MAX + 1];
        char app[64], project[64];
        char ifname[IFNAMSIZ];
        unsigned ifindex;
        bool running;
        Ink__V1__WorkloadStatus__State state;
        ink_workload_usage base;
    } item;
    pthread_mutex_lock(&s->mu);
    size_t cap = 0;
    for (ink_workload *w = s->list; w; w = w->next)
        cap++;
    item *items = ink_xcalloc(cap ? cap : 1, sizeof *items);
    size_t count = 0;
    for (ink_workload *w = s->list; w; w = w->next) {
        if (w->done || w->remove || (id && strcmp(id, w->id) != 0))
            continue;
        item *it = &items[count++];
        snprintf(it->id, sizeof it->id, "%s", w->id);
        snprintf(it->app, sizeof it->app, "%s", w->app);
        snprintf(it->project, sizeof it->project, "%s", w->project);
        snprintf(it->ifname, sizeof it->ifname, "%s", w->status.host_ifname);
        it->ifindex = w->traffic_ifindex;
        it->running = w->status.running && !w->cgroup_folded;
        it->state = w->status.state;
        it->base = w->usage;
    }
    pthread_mutex_unlock(&s->mu);
    if (id && count == 0) {
        free(items);
        return -1;
    }
    Ink__V1__WorkloadMetrics **v = ink_xcalloc(count ? count : 1, sizeof *v);
    for (size_t i = 0; i < count; i++) {
        const item *it = &items[i];
        /* One allocation for the message and its strings. */
        size_t lid = strlen(it->id) + 1, lapp = strlen(it->app) + 1;
        Ink__V1__WorkloadMetrics *m =
            ink_xcalloc(1, sizeof *m + lid + lapp + strlen(it->project) + 1);
        ink__v1__workload_metrics__init(m);
        m->workload_id = (char *)(m + 1);
        memcpy(m->workload_id, it->id, lid);
        m->app = m->workload_id + lid;
        memcpy(m->app, it->app, lapp);
        m->project = m->app + lapp;
        strcpy(m->project, it->project);
        m->state = it->state;
        m->cpu_ns = it->base.cpu_ns;
        if (it->running) {
            ink_cgroup_stats cs;
            cleanup_free char *cg = ink_cgroup_path(it->id);
            ink_cgroup_read_stats(cg, &cs);
            m->cpu_ns += cs.cpu_ns;
            m->memory_bytes = cs.memory_bytes;
            m->pids = cs.pids;
        }
        ink_traffic_counters c;
        bool ebpf = false;
        ink_supervisor_read_traffic(s, it->ifindex, it->ifname, &c, &ebpf);
        m->traffic_ebpf = ebpf;
        m->rx_bytes = it->base.traffic.rx_bytes + c.rx_bytes;
        m->tx_bytes = it->base.traffic.tx_bytes + c.tx_bytes;
        m->rx_packets = it->base.traffic.rx_packets + c.rx_packets;
        m->tx_packets = it->base.traffic.tx_packets + c.tx_packets;
        int64_t last_ms = 0;
        uint64_t last_ns = ink_traffic_last_activity(&c);
        if (last_ns) /* monotonic: to wall-clock time */
            last_ms = ink_now_ms() - (ink_mono_ms() - (int64_t)(last_ns / 1000000));
        ink_forward_stats fs;
        if (s->forwarder && ink_forwarder_stats(s->forwarder, it->id, &fs) == 0) {
            if (fs.last_activity_ms > last_ms)
                last_ms = fs.last_activity_ms;
            m->connections_active = (uint32_t)fs.connections_active;
        }
        m->last_activity_unix_ms = last_ms;
        m->sleeps = it->base.sleeps;
        m->wakes = it->base.wakes;
        m->last_wake_ms = it->base.last_wake_ms;
        v[i] = m;
    }
    free(items);
    *out = v;
    *n = count;
    return 0;
}

/* ------------------------------------------------------------ followers */

static void follower_done(ink_rpc_call *call, void *arg)
{
    ink_follower *f = arg;
    ink_supervisor *s = f->sup;
    pthread_mutex_lock(&s->follow_mu);
    for (ink_follower **pf = &s->followers; *pf; pf = &(*pf)->next) {
        if (*pf == f) {
            *pf = f->next;
            ink_rpc_call_unref(call);
            free(f);
            break;
        }
    }
    pthread_mutex_unlock(&s->follow_mu);
}

void ink_supervisor_follow(ink_supervisor *s, const char *id, ink_rpc_call *call,
                           void (*history)(void *arg), void *arg)
{
    ink_follower *f = ink_xcalloc(1, sizeof *f);
    snprintf(f->workload_id, sizeof f->workload_id, "%s", id);
    f->call = call;
    f->sup = s;
    ink_rpc_call_ref(call);
    pthread_mutex_lock(&s->follow_mu);
    if (history)
        history(arg);
    f->next = s->followers;
    s->followers = f;
    pthread_mutex_unlock(&s->follow_mu);
    /* If the call is already over this runs now and removes it again. */
    ink_rpc_call_on_done(call, follower_done, f);
}

void ink_followers_publish(ink_supervisor *s, const char *id, const ink_log_line *line)
{
    pthread_mutex_lock(&s->follow_mu);
    for (ink_follower *f = s->followers; f; f = f->next) {
        if (strcmp(f->workload_id, id) != 0)
            continue;
        /* A reader that does not keep up loses lines rather than making
         * the agent buffer without bound. */
        if (ink_rpc_pending(f->call) >= FOLLOW_MAX_PENDING) {
            f->dropped++;
            continue;
        }
        Ink__V1__LogEntry e = INK__V1__LOG_ENTRY__INIT;
        char note[96];
        if (f->dropped) {
            snprintf(note, sizeof note, "%llu lines dropped: the reader was too slow",
                     (unsigned long long)f->dropped);
            e.unix_ms = line->unix_ms;
            e.stream = INK__V1__LOG_ENTRY__STREAM__SYSTEM;
            e.line = (ProtobufCBinaryData){strlen(note), (uint8_t *)note};
            ink_rpc_send(f->call, &e.base);
            f->dropped = 0;
        }
        e.unix_ms = line->unix_ms;
        e.stream = line->stream == 'o'   ? INK__V1__LOG_ENTRY__STREAM__STDOUT
                   : line->stream == 'e' ? INK__V1__LOG_ENTRY__STREAM__STDERR
                                         : INK__V1__LOG_ENTRY__STREAM__SYSTEM;
        e.line = (ProtobufCBinaryData){line->len, (uint8_t *)line->text};
        ink_rpc_send(f->call, &e.base);
    }
    pthread_mutex_unlock(&s->follow_mu);
}

void ink_followers_end(ink_supervisor *s, const char *id)
{
    /* Finish outside the lock: a call's on_done takes it too. */
    ink_rpc_call *calls[64];
    size_t n = 0;
    pthread_mutex_lock(&s->follow_mu);
    for (ink_follower *f = s->followers; f && n < INK_ARRAY_LEN(calls); f = f->next) {
        if (strcmp(f->workload_id, id) == 0) {
            ink_rpc_call_ref(f->call);
            calls[n++] = f->call;
        }
    }
    pthread_mutex_unlock(&s->follow_mu);
    for (size_t i = 0; i < n; i++) {
        ink_rpc_finish(calls[i], GRPC_STATUS_OK, "workload removed");
        ink_rpc_call_unref(calls[i]);
    }
}
