/* `ink-agent doctor`: see doctor.h. Each check is a small function that
 * fills one ink_doc_result; ink_doctor_checks lists them in order. */
#include "doctor.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <linux/magic.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/timex.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "firewall.h"
#include "pki.h"
#include "policy.h"
#include "traffic.h"
#include "util.h"
#include "veth.h"

extern char **environ;

/* The runsc release Ink is tested with (Debian's 0.0~20221219). */
#define TESTED_RUNSC_DATE 20221219L
#define TESTED_RUNSC_NAME "release-20221219"
#define CG_ROOT "/sys/fs/cgroup"
#define CERT_WARN_DAYS 30
#define MIN_FREE_BYTES (1ULL << 30)
#define DOCTOR_FIX_CONF "/etc/ink/agent.conf"

/* ------------------------------------------------------------ results */

const char *ink_doc_status_name(ink_doc_status s)
{
    switch (s) {
    case INK_DOC_PASS:
        return "PASS";
    case INK_DOC_WARN:
        return "WARN";
    default:
        return "FAIL";
    }
}

static void append(char *buf, size_t size, const char *text)
{
    size_t len = strlen(buf);
    if (len + 1 >= size)
        return;
    snprintf(buf + len, size - len, "%s%s", len ? "; " : "", text);
}

void ink_doc_note(ink_doc_result *r, ink_doc_status s, const char *fix, const char *fmt, ...)
{
    char text[INK_DOC_DETAIL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    append(r->detail, sizeof r->detail, text);
    if (fix && *fix && !strstr(r->fix, fix))
        append(r->fix, sizeof r->fix, fix);
    if (s > r->status)
        r->status = s;
}

bool ink_doctor_ok(const ink_doc_result *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (r[i].status == INK_DOC_FAIL)
            return false;
    return true;
}

void ink_doctor_print_text(FILE *out, const ink_doc_result *r, size_t n)
{
    size_t counts[3] = {0};
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "%s  %-12s  %s\n", ink_doc_status_name(r[i].status), r[i].name,
                r[i].detail[0] ? r[i].detail : "-");
        if (r[i].status != INK_DOC_PASS && r[i].fix[0])
            fprintf(out, "  fix: %s\n", r[i].fix);
        counts[r[i].status]++;
    }
    fprintf(out, "%zu passed, %zu warning%s, %zu failed\n", counts[INK_DOC_PASS],
            counts[INK_DOC_WARN], counts[INK_DOC_WARN] == 1 ? "" : "s", counts[INK_DOC_FAIL]);
}

char *ink_doctor_json(const ink_doc_result *r, size_t n)
{
    static const char *const status[] = {"pass", "warn", "fail"};
    json_t *checks = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(checks, json_pack("{s:s, s:s, s:s, s:s}", "name", r[i].name, "status",
                                                status[r[i].status], "detail", r[i].detail, "fix",
                                                r[i].fix));
    json_t *root = json_pack("{s:b, s:o}", "ok", ink_doctor_ok(r, n), "checks", checks);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text)
        abort();
    return text;
}

/* ------------------------------------------------------------ helpers */

static int write_value(const char *path, const char *value, ink_err *err)
{
    cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return ink_err_set(err, errno, "open %s", path);
    size_t len = strlen(value);
    ssize_t w = write(fd, value, len);
    if (w < 0 || (size_t)w != len)
        return ink_err_set(err, w < 0 ? errno : EIO, "write %s to %s", value, path);
    return 0;
}

static bool fs_is(const char *path, long magic)
{
    struct statfs sf;
    return statfs(path, &sf) == 0 && (long)sf.f_type == magic;
}

/* The nearest existing ancestor of path (path itself when it exists). */
static char *existing_ancestor(const char *path)
{
    char *p = ink_xstrdup(path);
    struct stat st;
    while (stat(p, &st) < 0) {
        char *slash = strrchr(p, '/');
        if (!slash || slash == p) {
            free(p);
            return ink_xstrdup("/");
        }
        *slash = '\0';
    }
    return p;
}

/* ------------------------------------------------------------ 1 root */

static void check_root(const ink_agent_config *cfg, ink_doc_result *r)
{
    (void)cfg;
    uid_t uid = geteuid();
    if (uid == 0)
        ink_doc_note(r, INK_DOC_PASS, NULL, "running as root");
    else
        ink_doc_note(r, INK_DOC_FAIL,
                     "run the doctor (and the agent: its systemd unit does) as root: sudo "
                     "ink-agent doctor",
                     "running as uid %u: the agent needs root (cgroups, namespaces, nftables, "
                     "eBPF), most checks below fail without it",
                     (unsigned)uid);
}

/* ------------------------------------------------------------ 2 runsc */

/* The release date in a runsc version ("0.0~20221219.0",
 * "release-20221219.0"): YYYYMMDD, or 0 when there is none. */
static long runsc_release_date(const char *v)
{
    for (const char *p = v; *p; p++) {
        if (p[0] == '2' && p[1] == '0' && strspn(p, "0123456789") == 8 &&
            (p == v || (p[-1] < '0' || p[-1] > '9')))
            return strtol(p, NULL, 10);
    }
    return 0;
}

static void check_runsc(const ink_agent_config *cfg, ink_doc_result *r)
{
    static const char install_fix[] =
        "install gVisor (Debian/Ubuntu: apt-get install runsc; else "
        "https://gvisor.dev/docs/user_guide/install/), or set runsc=/path/to/runsc "
        "in " DOCTOR_FIX_CONF;
    char version[256];
    ink_err err = {0};
    if (ink_runsc_version(cfg->runsc, version, sizeof version, &err) < 0) {
        ink_doc_note(r, INK_DOC_FAIL, install_fix, "runsc=%s: %s", cfg->runsc, err.msg);
        return;
    }
    long date = runsc_release_date(version);
    if (date == 0)
        ink_doc_note(r, INK_DOC_WARN, "use the tested gVisor " TESTED_RUNSC_NAME " or newer",
                     "%s: version %s has no release date; Ink is tested with %s", cfg->runsc,
                     version, TESTED_RUNSC_NAME);
    else if (date < TESTED_RUNSC_DATE)
        ink_doc_note(r, INK_DOC_WARN,
                     "upgrade gVisor to " TESTED_RUNSC_NAME
                     " or newer (apt-get install runsc, or https://gvisor.dev)",
                     "%s: version %s is older than the tested %s", cfg->runsc, version,
                     TESTED_RUNSC_NAME);
    else
        ink_doc_note(r, INK_DOC_PASS, NULL, "%s: version %s (tested: %s)", cfg->runsc, version,
                     TESTED_RUNSC_NAME);
}

/* ------------------------------------------------------------ 3 cgroups */

/* The cgroup /ink/doctor-<pid> in one hierarchy (dir: the hierarchy's
 * root): made, written through write, removed; the parent /ink is removed
 * again when this made it. */
typedef int (*cg_write_fn)(const char *hier, const char *path, ink_err *err);

static int cg_try(const char *hier, const char *path, cg_write_fn write_fn, ink_err *err)
{
    cleanup_free char *parent = ink_xasprintf("%s" INK_CGROUP_PARENT, hier);
    cleanup_free char *dir = ink_xasprintf("%s%s", hier, path);
    bool made_parent = mkdir(parent, 0755) == 0;
    if (!made_parent && errno != EEXIST)
        return ink_err_set(err, errno, "mkdir %s", parent);
    int rc = 0;
    if (mkdir(dir, 0755) < 0)
        rc = ink_err_set(err, errno, "mkdir %s", dir);
    else {
        rc = write_fn(hier, path, err);
        if (rmdir(dir) < 0 && rc == 0)
            rc = ink_err_set(err, errno, "rmdir %s", dir);
    }
    if (made_parent)
        rmdir(parent); /* fails harmlessly when the agent made a cgroup meanwhile */
    return rc;
}

static int cg_write_cpu(const char *hier, const char *path, ink_err *err)
{
    (void)hier;
    return ink_cgroup_set_cpu_limit(path, 500, err);
}

static int cg_write_memory(const char *hier, const char *path, ink_err *err)
{
    cleanup_free char *v1 = ink_xasprintf("%s%s/memory.limit_in_bytes", hier, path);
    cleanup_free char *v2 = ink_xasprintf("%s%s/memory.max", hier, path);
    return write_value(access(v1, F_OK) == 0 ? v1 : v2, "67108864", err);
}

static int cg_write_pids(const char *hier, const char *path, ink_err *err)
{
    cleanup_free char *f = ink_xasprintf("%s%s/pids.max", hier, path);
    return write_value(f, "64", err);
}

static int cg_write_freezer(const char *hier, const char *path, ink_err *err)
{
    (void)hier;
    if (ink_cgroup_freeze(path, true, 2000, err) < 0)
        return -1;
    if (ink_cgroup_frozen(path) != 1)
        return ink_err_set(err, 0, "cgroup %s did not report frozen", path);
    return ink_cgroup_freeze(path, false, 2000, err);
}

static int cg_write_all_v2(const char *hier, const char *path, ink_err *err)
{
    if (cg_write_cpu(hier, path, err) < 0 || cg_write_memory(hier, path, err) < 0 ||
        cg_write_pids(hier, path, err) < 0 || cg_write_freezer(hier, path, err) < 0)
        return -1;
    return 0;
}

static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' ' || p[n] == '\n'))
            return true;
    return false;
}

static void cgroups_v1(const char *path, ink_doc_result *r)
{
    static const struct {
        const char *name;
        cg_write_fn fn;
        const char *use;
    } ctl[] = {
        {"cpu", cg_write_cpu, "CPU limits"},
        {"memory", cg_write_memory, "memory limits and OOM counts"},
        {"pids", cg_write_pids, "process limits"},
        {"freezer", cg_write_freezer, "scale to zero (pause)"},
    };
    char ok[128] = "";
    for (size_t i = 0; i < INK_ARRAY_LEN(ctl); i++) {
        cleanup_free char *hier = ink_xasprintf(CG_ROOT "/%s", ctl[i].name);
        if (!fs_is(hier, CGROUP_SUPER_MAGIC)) {
            char fix[256];
            snprintf(fix, sizeof fix,
                     "mount the %s controller: mkdir -p %s && mount -t cgroup -o %s cgroup %s",
                     ctl[i].name, hier, ctl[i].name, hier);
            ink_doc_note(r, INK_DOC_FAIL, fix, "no %s controller at %s (%s)", ctl[i].name, hier,
                         ctl[i].use);
            continue;
        }
        ink_err err = {0};
        if (cg_try(hier, path, ctl[i].fn, &err) < 0) {
            ink_doc_note(r, INK_DOC_FAIL,
                         "run as root on a host whose cgroup file system is writable (not in a "
                         "container with a read-only /sys/fs/cgroup)",
                         "%s: %s", ctl[i].name, err.msg);
            continue;
        }
        size_t l = strlen(ok);
        snprintf(ok + l, sizeof ok - l, "%s%s", l ? ", " : "", ctl[i].name);
    }
    if (ok[0])
        ink_doc_note(r, INK_DOC_PASS, NULL, "created, wrote and removed %s in: %s", path, ok);
}

static void cgroups_v2(const char *path, ink_doc_result *r)
{
    static const char ctl_fix[] = "enable the controllers: echo '+cpu +memory +pids' > " CG_ROOT
                                  "/cgroup.subtree_control (or boot with "
                                  "systemd.unified_cgroup_hierarchy=1 and a current systemd)";
    cleanup_free char *ctls = NULL;
    size_t len = 0;
    ink_err err = {0};
    if (ink_read_file(CG_ROOT "/cgroup.controllers", 4096, &ctls, &len, &err) < 0) {
        ink_doc_note(r, INK_DOC_FAIL, ctl_fix, "%s", err.msg);
        return;
    }
    static const char *const need[] = {"cpu", "memory", "pids"};
    bool missing = false;
    for (size_t i = 0; i < INK_ARRAY_LEN(need); i++) {
        if (!has_word(ctls, need[i])) {
            ink_doc_note(r, INK_DOC_FAIL, ctl_fix, "controller %s not available", need[i]);
            missing = true;
        }
    }
    if (missing)
        return;
    /* Children of /ink get the controllers when /ink hands them down (as
     * runsc asks for them): enabling them there changes no workload. */
    cleanup_free char *parent = ink_xasprintf(CG_ROOT INK_CGROUP_PARENT);
    bool made_parent = mkdir(parent, 0755) == 0;
    cleanup_free char *sub = ink_xasprintf("%s/cgroup.subtree_control", parent);
    cleanup_free char *have = NULL;
    if (ink_read_file(sub, 4096, &have, &len, &err) == 0 &&
        !(has_word(have, "cpu") && has_word(have, "memory") && has_word(have, "pids")) &&
        write_value(sub, "+cpu +memory +pids", &err) < 0) {
        ink_doc_note(r, INK_DOC_FAIL, ctl_fix, "%s", err.msg);
        if (made_parent)
            rmdir(parent);
        return;
    }
    if (cg_try(CG_ROOT, path, cg_write_all_v2, &err) < 0)
        ink_doc_note(r, INK_DOC_FAIL,
                     "run as root on a host whose cgroup file system is writable (a kernel >= "
                     "5.2 for cgroup.freeze)",
                     "%s", err.msg);
    else
        ink_doc_note(r, INK_DOC_PASS, NULL,
                     "created, wrote (cpu.max, memory.max, pids.max, cgroup.freeze) and removed "
                     "%s",
                     path);
    if (made_parent)
        rmdir(parent);
}

static void check_cgroups(const ink_agent_config *cfg, ink_doc_result *r)
{
    (void)cfg;
    struct statfs sf;
    if (statfs(CG_ROOT, &sf) < 0) {
        ink_doc_note(r, INK_DOC_FAIL, "mount the cgroup file systems (systemd does at boot)",
                     "%s: %s", CG_ROOT, strerror(errno));
        return;
    }
    char path[64];
    snprintf(path, sizeof path, INK_CGROUP_PARENT "/doctor-%d", (int)getpid());
    if ((long)sf.f_type == CGROUP2_SUPER_MAGIC) {
        ink_doc_note(r, INK_DOC_PASS, NULL, "cgroup v2 (unified)");
        cgroups_v2(path, r);
    } else {
        ink_doc_note(r, INK_DOC_PASS, NULL, "cgroup v1%s",
                     fs_is(CG_ROOT "/unified", CGROUP2_SUPER_MAGIC)
                         ? " (hybrid: cgroup2 at " CG_ROOT "/unified)"
                         : "");
        cgroups_v1(path, r);
    }
    ink_cgroup_remove(path); /* whatever an error left behind */
}

/* ------------------------------------------------------------ 4 nftables */

static void check_nftables(const ink_agent_config *cfg, ink_doc_result *r)
{
    (void)cfg;
    ink_err err = {0};
    if (ink_fw_dry_run("add table inet ink_doctor\n", &err) < 0) {
        ink_doc_note(r, INK_DOC_FAIL,
                     strstr(err.msg, "not permitted")
                         ? "run as root (the agent needs CAP_NET_ADMIN)"
                         : "load nf_tables (modprobe nf_tables; a kernel with "
                           "CONFIG_NF_TABLES_INET) and install libnftables (apt-get install "
                           "libnftables1 nftables)",
                     "libnftables dry run of 'add table inet ink_doctor' failed: %s", err.msg);
        return;
    }
    ink_doc_note(r, INK_DOC_PASS, NULL, "libnftables dry run of 'add table inet ink_doctor' ok");
    cleanup_free char *text = NULL;
    bool absent = false;
    err = (ink_err){0};
    if (ink_fw_list_table(false, true, &text, &absent, &err) < 0)
        ink_doc_note(r, INK_DOC_WARN, "see nft list ruleset", "listing table inet ink: %s",
                     err.msg);
    else if (absent)
        ink_doc_note(r, INK_DOC_PASS, NULL,
                     "no table inet ink yet (the agent creates it with the first workload)");
    else
        ink_doc_note(r, INK_DOC_PASS, NULL, "Ink's table inet ink exists");
}

/* ------------------------------------------------------------ 5 bpf */

static void check_bpf(const ink_agent_config *cfg, ink_doc_result *r)
{
    static const char fallback[] = "the agent counts traffic from the veths' statistics instead";
    if (access("/sys/kernel/btf/vmlinux", R_OK) == 0)
        ink_doc_note(r, INK_DOC_PASS, NULL, "BTF at /sys/kernel/btf/vmlinux");
    else
        ink_doc_note(r, INK_DOC_WARN,
                     "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (every current "
                     "distribution kernel)",
                     "no /sys/kernel/btf/vmlinux (%s)", strerror(errno));
    if (strcmp(cfg->bpf_pin_dir, "off") == 0) {
        ink_doc_note(r, INK_DOC_WARN,
                     "set bpf_pin_dir=" INK_TRAFFIC_DEFAULT_PIN_DIR
                     " for exact per-workload counters",
                     "bpf_pin_dir=off: %s", fallback);
        return;
    }
    if (cfg->bpf_pin_dir[0] != '/') {
        ink_doc_note(r, INK_DOC_WARN, "set bpf_pin_dir to an absolute path on a BPF file system",
                     "bpf_pin_dir=%s is not an absolute path: %s", cfg->bpf_pin_dir, fallback);
        return;
    }
    cleanup_free char *copy = ink_xstrdup(cfg->bpf_pin_dir);
    const char *parent = dirname(copy);
    if (fs_is(parent, BPF_FS_MAGIC))
        ink_doc_note(r, INK_DOC_PASS, NULL, "BPF file system at %s", parent);
    else if (strcmp(parent, INK_TRAFFIC_BPFFS) == 0)
        ink_doc_note(r, INK_DOC_PASS, NULL, "no BPF file system at %s yet (mounted when loading)",
                     parent);
    else if (!fs_is(cfg->bpf_pin_dir, BPF_FS_MAGIC)) {
        ink_doc_note(r, INK_DOC_WARN, "mount -t bpf bpf " INK_TRAFFIC_BPFFS,
                     "bpf_pin_dir %s is not on a BPF file system: %s", cfg->bpf_pin_dir, fallback);
        return;
    }
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/ink-doctor-%d", parent, (int)getpid());
    ink_traffic *t = NULL;
    ink_err err = {0};
    if (ink_traffic_open(tmp, &t, &err) < 0) {
        ink_doc_note(r, INK_DOC_WARN,
                     "needs root, a kernel with BPF for tc (CONFIG_NET_CLS_BPF, "
                     "CONFIG_NET_SCH_INGRESS) and BTF; or set bpf_pin_dir=off",
                     "loading the tc traffic counters failed: %s; %s", err.msg, fallback);
    } else {
        ink_doc_note(r, INK_DOC_PASS, NULL,
                     "the tc traffic counters load (map pinned in %s, then removed)", tmp);
        ink_traffic_close(t);
    }
    ink_rmtree(tmp);
}

/* ------------------------------------------------------------ 6 netns */

typedef struct ns_probe {
    int rc;
    ink_err err;
} ns_probe;

/* In a thread of its own, which leaves the namespace it makes when it
 * ends (with the veth pair inside it): the agent's namespace never
 * changes. */
static void *netns_probe(void *arg)
{
    ns_probe *p = arg;
    p->rc = -1;
    if (unshare(CLONE_NEWNET) < 0) {
        ink_err_set(&p->err, errno, "unshare(CLONE_NEWNET)");
        return NULL;
    }
    cleanup_nl struct nl_sock *sk = NULL;
    if (ink_nl_open(&sk, &p->err) < 0 || ink_nl_link_up(sk, "lo", &p->err) < 0)
        return NULL;
    cleanup_close int nsfd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
        ink_err_set(&p->err, errno, "open /proc/thread-self/ns/net");
        return NULL;
    }
    ink_link_info info;
    if (ink_nl_veth_create(sk, "inkdoc0", "inkdoc1", nsfd, 0, &p->err) < 0 ||
        ink_nl_link_up(sk, "inkdoc0", &p->err) < 0 || ink_nl_link_up(sk, "inkdoc1", &p->err) < 0)
        return NULL;
    int found = ink_nl_link_get(sk, "inkdoc1", &info, &p->err);
    if (found < 0)
        return NULL;
    if (found == 0 || !info.is_veth) {
        ink_err_set(&p->err, 0, "the veth pair is not there after creating it");
        return NULL;
    }
    p->rc = 0;
    return NULL;
}

static void check_netns(const ink_agent_config *cfg, ink_doc_result *r)
{
    (void)cfg;
    ns_probe p = {0};
    pthread_t th;
    int e = pthread_create(&th, NULL, netns_probe, &p);
    if (e != 0) {
        ink_doc_note(r, INK_DOC_FAIL, NULL, "pthread_create: %s", strerror(e));
        return;
    }
    pthread_join(th, NULL);
    if (p.rc < 0)
        ink_doc_note(r, INK_DOC_FAIL,
                     "run as root with CAP_SYS_ADMIN and CAP_NET_ADMIN, on a kernel with "
                     "CONFIG_NET_NS and CONFIG_VETH (modprobe veth)",
                     "a private network namespace with lo and a veth pair: %s", p.err.msg);
    else
        ink_doc_note(r, INK_DOC_PASS, NULL,
                     "made a private network namespace, brought lo and a veth pair up, removed it");

    static const char fwd[] = "/proc/sys/net/ipv4/ip_forward";
    cleanup_free char *v = NULL;
    size_t len = 0;
    ink_err err = {0};
    if (ink_read_file(fwd, 64, &v, &len, &err) < 0) {
        ink_doc_note(r, INK_DOC_FAIL, "a kernel with IPv4 networking", "%s", err.msg);
        return;
    }
    cleanup_close int fd = open(fwd, O_WRONLY | O_CLOEXEC); /* may it be set? nothing written */
    if (fd < 0)
        ink_doc_note(r, INK_DOC_FAIL,
                     "run as root where /proc/sys is writable; or set net.ipv4.ip_forward=1 in "
                     "/etc/sysctl.d/ink.conf (sysctl -w net.ipv4.ip_forward=1)",
                     "net.ipv4.ip_forward=%c and cannot be set (%s): workloads need forwarding",
                     v[0], strerror(errno));
    else if (v[0] == '1')
        ink_doc_note(r, INK_DOC_PASS, NULL, "net.ipv4.ip_forward=1");
    else
        ink_doc_note(r, INK_DOC_PASS, NULL,
                     "net.ipv4.ip_forward=0 now; the agent sets it to 1 with its first workload "
                     "(writable)");
}

/* ------------------------------------------------------------ 7 policies */

void ink_doctor_check_policies(const ink_agent_config *cfg, ink_doc_result *r)
{
    const char *dir = cfg->policy_dir;
    ink_policy_set set = {0};
    bool missing = false;
    ink_pol_diags *d = ink_xcalloc(1, sizeof *d);
    ink_err err = {0};
    int rc = ink_policy_load_dir(dir, true, &set, &missing, d, &err);
    char install[256];
    snprintf(install, sizeof install,
             "install the shipped policies (default.policy, deny-all.policy, allowlist.policy "
             "from the package or the source tree's policies/) into %s",
             dir);
    if (missing) {
        ink_doc_note(r, INK_DOC_FAIL, install, "policy_dir %s does not exist", dir);
        goto out;
    }
    char check_fix[256];
    snprintf(check_fix, sizeof check_fix,
             "correct the file at FILE:LINE (ink-agent policy check FILE shows every message)");
    size_t shown = 0;
    for (size_t i = 0; i < d->n && shown < 5; i++) {
        if (!d->items[i].error)
            continue;
        ink_doc_note(r, INK_DOC_FAIL, check_fix, "%s", d->items[i].msg);
        shown++;
    }
    if (rc < 0 && shown == 0)
        ink_doc_note(r, INK_DOC_FAIL, check_fix, "%s", err.msg);
    for (size_t i = 0; i < d->n && shown < 8; i++) {
        if (d->items[i].error)
            continue;
        ink_doc_note(r, INK_DOC_WARN,
                     "review the warning (ink-agent policy check FILE explains the rules)", "%s",
                     d->items[i].msg);
        shown++;
    }
    size_t more = d->nerrors + d->nwarnings - shown;
    if (more)
        ink_doc_note(r, r->status, NULL, "(%zu more messages)", more);
    if (set.n == 0 && rc == 0) {
        ink_doc_note(r, INK_DOC_FAIL, install, "no *.policy files in %s", dir);
        goto out;
    }
    if (set.n == 0)
        goto out;
    char names[512] = "";
    for (size_t i = 0; i < set.n; i++) {
        size_t l = strlen(names);
        snprintf(names + l, sizeof names - l, "%s%s", l ? ", " : "", set.items[i]->name);
    }
    ink_doc_note(r, INK_DOC_PASS, NULL, "%zu polic%s in %s: %s", set.n, set.n == 1 ? "y" : "ies",
                 dir, names);
    if (!ink_policy_set_find(&set, "default"))
        ink_doc_note(r, INK_DOC_FAIL, install,
                     "no usable default.policy: every app that names no egress policy fails to "
                     "start");
out:
    ink_policy_set_free(&set);
    free(d);
}

/* ------------------------------------------------------------ 8 certificates */

/* The file exists and this user can read it. */
static bool readable(ink_doc_result *r, const char *opt, const char *path, const char *fix)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ink_doc_note(r, INK_DOC_FAIL, fix, "%s %s: %s", opt, path, strerror(errno));
        return false;
    }
    return true;
}

void ink_doctor_check_certs(const ink_agent_config *cfg, ink_doc_result *r)
{
    if (cfg->insecure_dev) {
        ink_doc_note(r, INK_DOC_WARN,
                     "issue certificates (ink-coordinator pki issue NODE) and drop insecure_dev",
                     "insecure_dev: gRPC without TLS, certificates not checked");
        return;
    }
    char issue_fix[256];
    snprintf(issue_fix, sizeof issue_fix,
             "on the coordinator: ink-coordinator pki issue NODE --out DIR, then copy ca.crt, "
             "NODE.crt and NODE.key to %s, %s and %s",
             cfg->tls_ca, cfg->tls_cert, cfg->tls_key);
    bool ok = readable(r, "tls_ca", cfg->tls_ca, issue_fix);
    ok = readable(r, "tls_cert", cfg->tls_cert, issue_fix) && ok;
    ok = readable(r, "tls_key", cfg->tls_key, issue_fix) && ok;
    if (!ok)
        return;

    struct stat st;
    if (stat(cfg->tls_key, &st) == 0 && (st.st_mode & 077)) {
        char fix[INK_DOC_FIX_MAX];
        snprintf(fix, sizeof fix, "chmod 600 %s && chown root:root %s", cfg->tls_key, cfg->tls_key);
        ink_doc_note(r, (st.st_mode & 007) ? INK_DOC_FAIL : INK_DOC_WARN, fix,
                     "tls_key %s is readable by %s (mode %03o)", cfg->tls_key,
                     (st.st_mode & 007) ? "everyone" : "its group", (unsigned)(st.st_mode & 0777));
    }

    ink_cert_info info;
    ink_err err = {0};
    if (ink_pki_cert_info_file(cfg->tls_cert, &info, &err) < 0) {
        ink_doc_note(r, INK_DOC_FAIL, issue_fix, "%s", err.msg);
        return;
    }
    time_t now = time(NULL);
    char until[64];
    ink_format_utc((int64_t)info.not_after * 1000, false, until, sizeof until);
    char renew[INK_DOC_FIX_MAX];
    snprintf(renew, sizeof renew,
             "issue a new certificate: ink-coordinator pki issue %s --out DIR, copy it to %s "
             "and %s, restart the agent",
             info.cn[0] ? info.cn : "NODE", cfg->tls_cert, cfg->tls_key);
    if (info.not_after <= now) {
        ink_doc_note(r, INK_DOC_FAIL, renew, "tls_cert %s (CN %s) expired on %s", cfg->tls_cert,
                     info.cn, until);
        return;
    }
    if (info.not_before > now) {
        ink_doc_note(r, INK_DOC_FAIL, "check the clock (see the clock check) or reissue",
                     "tls_cert %s is not valid yet", cfg->tls_cert);
        return;
    }
    err = (ink_err){0};
    if (ink_pki_verify(cfg->tls_ca, cfg->tls_cert, cfg->tls_key, &err) < 0) {
        ink_doc_note(r, INK_DOC_FAIL,
                     strstr(err.msg, "key does not match")
                         ? "install the key that belongs to the certificate (the NODE.key "
                           "written with it by ink-coordinator pki issue)"
                         : "install the cluster's ca.crt as tls_ca and a certificate issued by "
                           "it (ink-coordinator pki issue NODE on the coordinator)",
                     "%s", err.msg);
        return;
    }
    long days = (long)((info.not_after - now + 43200) / 86400); /* rounded */
    if (days < CERT_WARN_DAYS)
        ink_doc_note(r, INK_DOC_WARN, renew,
                     "tls_cert %s (CN %s) expires in %ld day%s (%s): renew it soon", cfg->tls_cert,
                     info.cn, days, days == 1 ? "" : "s", until);
    else
        ink_doc_note(r, INK_DOC_PASS, NULL,
                     "tls_cert %s (CN %s, %s) is signed by tls_ca, matches tls_key, valid until %s",
                     cfg->tls_cert, info.cn, info.ou, until);
}

/* ------------------------------------------------------------ 9 clock */

/* __DATE__ ("Mmm dd yyyy") as a time. */
static time_t build_time(void)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    const char *d = __DATE__;
    char mon[4] = {d[0], d[1], d[2], 0};
    const char *m = strstr(months, mon);
    struct tm tm = {0};
    tm.tm_mon = m ? (int)(m - months) / 3 : 0;
    tm.tm_mday = atoi(d + 4);
    tm.tm_year = atoi(d + 7) - 1900;
    return timegm(&tm);
}

static void check_clock(const ink_agent_config *cfg, ink_doc_result *r)
{
    (void)cfg;
    time_t now = time(NULL);
    time_t built = build_time();
    char nows[64], builts[64];
    ink_format_utc((int64_t)now * 1000, false, nows, sizeof nows);
    ink_format_utc((int64_t)built * 1000, false, builts, sizeof builts);
    if (now < built - 86400)
        ink_doc_note(r, INK_DOC_FAIL,
                     "set the clock (timedatectl set-time, or chronyc makestep) and enable NTP "
                     "(timedatectl set-ntp true)",
                     "the clock says %s, before this agent was built (%s): certificates will not "
                     "verify",
                     nows, builts);
    struct timex tx = {0};
    int state = adjtimex(&tx);
    if (state < 0)
        ink_doc_note(r, INK_DOC_WARN, "enable systemd-timesyncd or chrony", "adjtimex: %s",
                     strerror(errno));
    else if (tx.status & STA_UNSYNC)
        ink_doc_note(r, INK_DOC_WARN,
                     "enable systemd-timesyncd or chrony (timedatectl set-ntp true; apt-get "
                     "install chrony)",
                     "the system clock (%s) is not synchronised (STA_UNSYNC): certificate "
                     "validity and logs depend on it",
                     nows);
    else
        ink_doc_note(r, INK_DOC_PASS, NULL, "synchronised (%s, estimated error %ld us)", nows,
                     (long)tx.esterror);
}

/* ------------------------------------------------------------ 10 directories */

static void check_dir(ink_doc_result *r, const char *opt, const char *path)
{
    char fix[256];
    snprintf(fix, sizeof fix, "set %s to a directory on a writable local file system in %s", opt,
             DOCTOR_FIX_CONF);
    if (path[0] != '/') {
        ink_doc_note(r, INK_DOC_FAIL, fix, "%s %s is not an absolute path", opt, path);
        return;
    }
    cleanup_free char *anc = existing_ancestor(path);
    struct stat st;
    if (stat(anc, &st) < 0 || !S_ISDIR(st.st_mode)) {
        ink_doc_note(r, INK_DOC_FAIL, fix, "%s %s: %s is not a directory", opt, path, anc);
        return;
    }
    struct statvfs vf;
    if (statvfs(anc, &vf) == 0 && (vf.f_flag & ST_RDONLY)) {
        ink_doc_note(r, INK_DOC_FAIL, fix, "%s %s: %s is on a read-only file system", opt, path,
                     anc);
        return;
    }
    /* Can something be made there? A private directory, removed at once. */
    cleanup_free char *probe =
        ink_xasprintf("%s%s.ink-doctor-XXXXXX", anc, anc[strlen(anc) - 1] == '/' ? "" : "/");
    if (!mkdtemp(probe)) {
        ink_doc_note(r, INK_DOC_FAIL,
                     errno == EACCES || errno == EPERM ? "run as root (the agent does)" : fix,
                     "%s %s: cannot create in %s: %s", opt, path, anc, strerror(errno));
        return;
    }
    rmdir(probe);
    if (strcmp(anc, path) == 0)
        ink_doc_note(r, INK_DOC_PASS, NULL, "%s %s exists, writable", opt, path);
    else
        ink_doc_note(r, INK_DOC_PASS, NULL, "%s %s can be created (in %s)", opt, path, anc);
}

static void check_dirs(const ink_agent_config *cfg, ink_doc_result *r)
{
    check_dir(r, "state_dir", cfg->state_dir);
    check_dir(r, "runsc_root", cfg->runsc_root);
    check_dir(r, "netns_dir", cfg->netns_dir);
    cleanup_free char *anc = existing_ancestor(cfg->state_dir);
    struct statvfs vf;
    if (statvfs(anc, &vf) < 0)
        return;
    unsigned long long avail = (unsigned long long)vf.f_bavail * vf.f_frsize;
    if (avail < MIN_FREE_BYTES)
        ink_doc_note(r, INK_DOC_WARN,
                     "free space where state_dir is (images and workload logs live there), or "
                     "move state_dir to a larger file system",
                     "only %llu MiB free under %s", avail >> 20, cfg->state_dir);
    else
        ink_doc_note(r, INK_DOC_PASS, NULL, "%llu GiB free under %s", avail >> 30, cfg->state_dir);
}

/* ------------------------------------------------------------ 11 listen */

static void check_bind(ink_doc_result *r, const char *opt, const char *addr)
{
    if (!addr || !*addr || strcmp(addr, "off") == 0) {
        ink_doc_note(r, INK_DOC_PASS, NULL, "%s off", opt);
        return;
    }
    char host[256], fix[256];
    int port;
    ink_err err = {0};
    snprintf(fix, sizeof fix, "set %s to host:port of an address of this node in %s", opt,
             DOCTOR_FIX_CONF);
    if (ink_split_hostport(addr, host, sizeof host, &port, &err) < 0) {
        ink_doc_note(r, INK_DOC_FAIL, fix, "%s %s: %s", opt, addr, err.msg);
        return;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    int g = getaddrinfo(host[0] ? host : NULL, ports, &hints, &ai);
    if (g != 0) {
        ink_doc_note(r, INK_DOC_FAIL, fix, "%s %s: %s", opt, addr, gai_strerror(g));
        return;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1, e = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        e = errno;
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    if (e == EADDRINUSE) {
        char busy[256];
        snprintf(busy, sizeof busy,
                 "if the agent runs (systemctl status ink-agent) this is expected; else see who "
                 "holds it (ss -ltnp 'sport = :%d') or change %s",
                 port, opt);
        ink_doc_note(r, INK_DOC_WARN, busy,
                     "%s %s is in use: the agent may already be running, or another program "
                     "holds the port",
                     opt, addr);
    } else if (e)
        ink_doc_note(r, INK_DOC_FAIL, fix, "%s %s cannot be bound: %s", opt, addr, strerror(e));
    else
        ink_doc_note(r, INK_DOC_PASS, NULL, "%s %s can be bound", opt, addr);
}

static void check_listen(const ink_agent_config *cfg, ink_doc_result *r)
{
    check_bind(r, "listen", cfg->listen);
    check_bind(r, "metrics_listen", cfg->metrics_listen);
}

/* ------------------------------------------------------------ 12 dns user */

static void check_dns_user(const ink_agent_config *cfg, ink_doc_result *r)
{
    static const char add_fix[] =
        "useradd --system --no-create-home --shell /usr/sbin/nologin ink-dns";
    if (!cfg->dns) {
        ink_doc_note(r, INK_DOC_PASS, NULL, "dns off: no resolver helper");
        return;
    }
    const char *spec = cfg->dns_user;
    bool fallback = !spec || !*spec || strcmp(spec, "ink-dns") == 0;
    const char *name = fallback ? "ink-dns" : spec;
    char *end;
    errno = 0;
    unsigned long uid = strtoul(name, &end, 10);
    if (!errno && end != name && (*end == '\0' || *end == ':')) {
        unsigned long gid = *end == ':' ? strtoul(end + 1, NULL, 10) : uid;
        if (uid == 0 || gid == 0)
            ink_doc_note(r, INK_DOC_FAIL, add_fix, "dns_user %s is root: the agent refuses it",
                         name);
        else
            ink_doc_note(r, INK_DOC_PASS, NULL, "dns_user %s (numeric)", name);
        return;
    }
    struct passwd pw, *res = NULL;
    char buf[4096];
    getpwnam_r(name, &pw, buf, sizeof buf, &res);
    if (!res && fallback) {
        getpwnam_r("nobody", &pw, buf, sizeof buf, &res);
        if (res && pw.pw_uid != 0 && pw.pw_gid != 0) {
            ink_doc_note(r, INK_DOC_WARN, add_fix,
                         "no user ink-dns: the resolver's helper runs as nobody (%u:%u), a user "
                         "other services share",
                         (unsigned)pw.pw_uid, (unsigned)pw.pw_gid);
            return;
        }
        ink_doc_note(r, INK_DOC_FAIL, add_fix,
                     "no user ink-dns and no usable nobody: the resolver cannot start");
        return;
    }
    if (!res) {
        ink_doc_note(r, INK_DOC_FAIL, add_fix, "dns_user %s: no such user (the agent refuses it)",
                     name);
        return;
    }
    if (pw.pw_uid == 0 || pw.pw_gid == 0)
        ink_doc_note(r, INK_DOC_FAIL, add_fix,
                     "dns_user %s is root or in group 0: the agent refuses it", name);
    else
        ink_doc_note(r, INK_DOC_PASS, NULL, "dns_user %s (%u:%u)", name, (unsigned)pw.pw_uid,
                     (unsigned)pw.pw_gid);
}

/* ------------------------------------------------------------ table, cli */

const ink_doc_check ink_doctor_checks[] = {
    {"root", check_root},
    {"runsc", check_runsc},
    {"cgroups", check_cgroups},
    {"nftables", check_nftables},
    {"bpf", check_bpf},
    {"netns", check_netns},
    {"policies", ink_doctor_check_policies},
    {"certificates", ink_doctor_check_certs},
    {"clock", check_clock},
    {"directories", check_dirs},
    {"listen", check_listen},
    {"dns-user", check_dns_user},
};
const size_t ink_doctor_nchecks = INK_ARRAY_LEN(ink_doctor_checks);

static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, ",");
        if (l == n && strncmp(p, name, n) == 0)
            return true;
        p += l;
        if (*p == ',')
            p++;
    }
    return false;
}

int ink_doctor_run(const ink_agent_config *cfg, const char *only, ink_doc_result *out, ink_err *err)
{
    if (only) {
        for (const char *p = only; *p;) {
            size_t l = strcspn(p, ",");
            bool known = false;
            for (size_t i = 0; i < ink_doctor_nchecks; i++)
                known = known || (strlen(ink_doctor_checks[i].name) == l &&
                                  strncmp(ink_doctor_checks[i].name, p, l) == 0);
            if (!known)
                return ink_err_set(err, 0, "unknown check '%.*s'", (int)l, p);
            p += l;
            if (*p == ',')
                p++;
        }
    }
    int n = 0;
    for (size_t i = 0; i < ink_doctor_nchecks; i++) {
        if (only && !in_list(only, ink_doctor_checks[i].name))
            continue;
        ink_doc_result *r = &out[n++];
        memset(r, 0, sizeof *r);
        r->name = ink_doctor_checks[i].name;
        ink_doctor_checks[i].fn(cfg, r);
    }
    return n;
}

static void doctor_usage(FILE *out)
{
    fprintf(out, "usage: ink-agent doctor [--json] [--check=NAME,...] [--OPTION=VALUE ...]\n"
                 "checks:");
    for (size_t i = 0; i < ink_doctor_nchecks; i++)
        fprintf(out, " %s", ink_doctor_checks[i].name);
    fprintf(out, "\n");
}

int ink_doctor_cli(ink_agent_config *cfg, int argc, char **argv)
{
    bool json = false;
    const char *only = NULL;
    cleanup_free char **rest = ink_xcalloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strncmp(argv[i], "--check=", 8) == 0)
            only = argv[i] + 8;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            doctor_usage(stdout);
            return 0;
        } else
            rest[nrest++] = argv[i];
    }
    ink_err err = {0};
    int idx = 0;
    if (ink_config_parse_args(ink_agent_options, cfg, nrest, rest, &idx, &err) < 0 || idx < nrest) {
        fprintf(stderr, "ink-agent doctor: %s\n",
                err.msg[0] ? err.msg : "unexpected argument (options are --NAME=VALUE)");
        doctor_usage(stderr);
        return 2;
    }
    ink_doc_result *res = ink_xcalloc(ink_doctor_nchecks, sizeof *res);
    int n = ink_doctor_run(cfg, only, res, &err);
    if (n < 0) {
        fprintf(stderr, "ink-agent doctor: %s\n", err.msg);
        doctor_usage(stderr);
        free(res);
        return 2;
    }
    if (json) {
        char *text = ink_doctor_json(res, (size_t)n);
        printf("%s\n", text);
        free(text);
    } else {
        ink_doctor_print_text(stdout, res, (size_t)n);
    }
    int rc = ink_doctor_ok(res, (size_t)n) ? 0 : 1;
    free(res);
    return rc;
}
