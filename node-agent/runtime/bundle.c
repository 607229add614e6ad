#include "bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgroup.h"
#include "util.h"

/* jansson's own scope cleanup (json_auto_t) */
#define cleanup_json __attribute__((cleanup(json_decrefp)))

static void extend(json_t *dst, json_t *src)
{
    json_array_extend(dst, src);
    json_decref(src);
}

/* ------------------------------------------------------------------ user */

static bool parse_id(const char *s, uint32_t *out)
{
    if (!*s)
        return false;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > UINT32_MAX - 1)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* Looks an entry up in a passwd- or group-style file, by name (field 0)
 * or, when key is NULL, by the numeric id in *id (field 2). Fills the id,
 * and for passwd the primary group. 1 when absent. */
static int lookup_file(const char *rootfs, const char *file, const char *key, uint32_t *id,
                       uint32_t *gid, ink_err *err)
{
    cleanup_free char *path = ink_xasprintf("%s/%s", rootfs, file);
    cleanup_free char *text = NULL;
    /* The image is untrusted: its /etc/passwd may be a symlink aimed at a
     * host file or device. Walk the path without following any symlink
     * (one in the image makes the file absent), and read only a regular
     * file. */
    cleanup_close int fd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ink_err_set(err, errno, "open %s", rootfs);
    cleanup_free char *rel = ink_xstrdup(file);
    char *psave = NULL;
    for (char *part = strtok_r(rel, "/", &psave); part; part = strtok_r(NULL, "/", &psave)) {
        bool last = !psave || !*psave;
        int next =
            openat(fd, part,
                   (last ? O_RDONLY | O_NONBLOCK : O_PATH | O_DIRECTORY) | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
                return 1;
            return ink_err_set(err, errno, "open %s", path);
        }
        close(fd);
        fd = next;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return ink_err_set(err, 0, "%s in the image is not a regular file", file);
    if (ink_read_fd(fd, path, 4 << 20, &text, NULL, err) < 0)
        return -1;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *fields[4] = {0};
        char *p = line;
        for (int i = 0; i < 4 && p; i++) {
            fields[i] = p;
            p = strchr(p, ':');
            if (p)
                *p++ = '\0';
        }
        uint32_t fid, fgid;
        if (!fields[2] || !parse_id(fields[2], &fid))
            continue;
        if (key ? strcmp(fields[0], key) != 0 : fid != *id)
            continue;
        *id = fid;
        if (gid && fields[3] && parse_id(fields[3], &fgid))
            *gid = fgid;
        return 0;
    }
    return 1;
}

int ink_bundle_resolve_user(const char *rootfs, const char *user, uint32_t *uid, uint32_t *gid,
                            ink_err *err)
{
    *uid = 0;
    *gid = 0;
    if (!user || !*user)
        return 0;
    cleanup_free char *copy = ink_xstrdup(user);
    char *group = strchr(copy, ':');
    if (group)
        *group++ = '\0';
    if (parse_id(copy, uid)) {
        /* A numeric user need not exist in the image; its primary group
         * comes from passwd when it does. */
        if (lookup_file(rootfs, "etc/passwd", NULL, uid, gid, err) < 0)
            return -1;
    } else {
        int rc = lookup_file(rootfs, "etc/passwd", copy, uid, gid, err);
        if (rc < 0)
            return -1;
        if (rc > 0)
            return ink_err_set(err, 0, "image user '%s' is not in the image's /etc/passwd", copy);
    }
    if (group && *group) {
        if (!parse_id(group, gid)) {
            int rc = lookup_file(rootfs, "etc/group", group, gid, NULL, err);
            if (rc < 0)
                return -1;
            if (rc > 0)
                return ink_err_set(err, 0, "image group '%s' is not in the image's /etc/group",
                                   group);
        }
    }
    return 0;
}

/* --------------------------------------------------------------- process */

static json_t *string_array(char *const *items, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(items[i]));
    return a;
}

/* Docker's rules: an app command replaces the entrypoint and drops the
 * image cmd; app args replace the cmd. */
static json_t *process_args(const Ink__V1__Assignment *a, const ink_image_config *img, ink_err *err)
{
    json_t *args = json_array();
    if (a->n_command > 0) {
        extend(args, string_array(a->command, a->n_command));
        extend(args, string_array(a->args, a->n_args));
    } else {
        extend(args, string_array(img->entrypoint, img->nentrypoint));
        if (a->n_args > 0)
            extend(args, string_array(a->args, a->n_args));
        else
            extend(args, string_array(img->cmd, img->ncmd));
    }
    if (json_array_size(args) == 0) {
        json_decref(args);
        ink_err_set(err, 0,
                    "nothing to run: the image has no Entrypoint or Cmd and the app sets no "
                    "command");
        return NULL;
    }
    return args;
}

static bool valid_env_name(const char *n)
{
    if (!*n)
        return false;
    for (const char *c = n; *c; c++) {
        if (*c == '=' || *c == '\0')
            return false;
    }
    return true;
}

/* Later sources override earlier ones by name; order of first appearance
 * is kept so the result is stable. */
static void env_set(json_t *obj, json_t *order, const char *name, const char *value)
{
    if (!json_object_get(obj, name))
        json_array_append_new(order, json_string(name));
    json_object_set_new(obj, name, json_string(value));
}

static json_t *process_env(const Ink__V1__Assignment *a, const ink_image_config *img, ink_err *err)
{
    cleanup_json json_t *vals = json_object();
    cleanup_json json_t *order = json_array();
    env_set(vals, order, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for (size_t i = 0; i < img->nenv; i++) {
        const char *eq = strchr(img->env[i], '=');
        if (!eq || eq == img->env[i])
            continue; /* malformed image env entries are ignored, as Docker does */
        cleanup_free char *name = strndup(img->env[i], (size_t)(eq - img->env[i]));
        env_set(vals, order, name, eq + 1);
    }
    char port[16];
    snprintf(port, sizeof port, "%u", a->port);
    if (a->port)
        env_set(vals, order, "PORT", port);
    const struct {
        Ink__V1__EnvVar **vars;
        size_t n;
        const char *what;
    } sources[] = {{a->env, a->n_env, "env"}, {a->secret_env, a->n_secret_env, "secret_env"}};
    for (size_t s = 0; s < INK_ARRAY_LEN(sources); s++) {
        for (size_t i = 0; i < sources[s].n; i++) {
            const Ink__V1__EnvVar *v = sources[s].vars[i];
            if (!valid_env_name(v->name)) {
                ink_err_set(err, 0, "%s: invalid variable name '%s'", sources[s].what, v->name);
                return NULL;
            }
            env_set(vals, order, v->name, v->value);
        }
    }
    json_t *env = json_array();
    size_t i;
    json_t *name;
    json_array_foreach(order, i, name)
    {
        const char *n = json_string_value(name);
        char *kv = ink_xasprintf("%s=%s", n, json_string_value(json_object_get(vals, n)));
        json_array_append_new(env, json_string(kv));
        free(kv);
    }
    return env;
}

/* ------------------------------------------------------------------ linux */

static json_t *mount(const char *dest, const char *type, const char *source, const char *opts)
{
    json_t *options = json_array();
    cleanup_free char *copy = ink_xstrdup(opts);
    char *save = NULL;
    for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save))
        json_array_append_new(options, json_string(o));
    return json_pack("{s:s, s:s, s:s, s:o}", "destination", dest, "type", type, "source", source,
                     "options", options);
}

static json_t *mounts(const ink_bundle_spec *spec)
{
    json_t *m = json_array();
    json_array_append_new(m, mount("/proc", "proc", "proc", "nosuid,noexec,nodev"));
    json_array_append_new(
        m, mount("/dev", "tmpfs", "tmpfs", "nosuid,strictatime,mode=755,size=65536k"));
    json_array_append_new(m, mount("/dev/pts", "devpts", "devpts",
                                   "nosuid,noexec,newinstance,ptmxmode=0666,mode=0620"));
    json_array_append_new(
        m, mount("/dev/shm", "tmpfs", "shm", "nosuid,noexec,nodev,mode=1777,size=65536k"));
    json_array_append_new(m, mount("/sys", "sysfs", "sysfs", "nosuid,noexec,nodev,ro"));
    /* The writable places an app normally needs, in memory and counted
     * against its memory limit. */
    json_array_append_new(m, mount("/tmp", "tmpfs", "tmpfs", "nosuid,nodev,mode=1777"));
    json_array_append_new(m, mount("/var/tmp", "tmpfs", "tmpfs", "nosuid,nodev,mode=1777"));
    json_array_append_new(m, mount("/run", "tmpfs", "tmpfs", "nosuid,nodev,mode=755"));
    /* Files from the agent, read-only: the app cannot change where it
     * resolves names. */
    const char *binds[][2] = {{"/etc/resolv.conf", spec->resolv_conf}, {"/etc/hosts", spec->hosts}};
    for (size_t i = 0; i < INK_ARRAY_LEN(binds); i++)
        if (binds[i][1])
            json_array_append_new(
                m, mount(binds[i][0], "bind", binds[i][1], "bind,ro,nosuid,nodev,noexec"));
    return m;
}

static uint32_t app_pids(const Ink__V1__Assignment *a)
{
    return a->resources && a->resources->pids ? a->resources->pids : INK_DEFAULT_PIDS;
}

uint64_t ink_bundle_host_pids(uint32_t app_limit)
{
    /* Measured with busybox under runsc's ptrace platform: 31 host tasks
     * idle, 379 to 457 with 41 app processes (the Go runtime adds threads
     * as the machine gets busier), so 8 to 10 host tasks per app process.
     * 4 per process left an app with 40 of its 64 failing under load. */
    return 12ULL * app_limit + 256;
}

uint32_t ink_bundle_cpu_millis(const Ink__V1__Assignment *a)
{
    return a->resources && a->resources->cpu_millis ? a->resources->cpu_millis
                                                    : INK_DEFAULT_CPU_MILLIS;
}

static json_t *resources(const Ink__V1__Assignment *a, uint32_t boot_cpu)
{
    const Ink__V1__Resources *r = a->resources;
    uint64_t mem = r && r->memory_bytes ? r->memory_bytes : INK_DEFAULT_MEMORY_BYTES;
    uint32_t cpu = ink_bundle_cpu_millis(a);
    /* The boot quota only raises the ceiling; shares (the weight under
     * contention) stay the app's. */
    uint32_t quota_cpu = boot_cpu > cpu ? boot_cpu : cpu;
    uint32_t pids = app_pids(a);
    const int64_t period = INK_CPU_PERIOD_US;
    return json_pack("{s:{s:I, s:I}, s:{s:I, s:I, s:I}, s:{s:I}, s:[{s:b, s:s}]}", "memory",
                     "limit", (json_int_t)mem, "swap", (json_int_t)mem, "cpu", "quota",
                     (json_int_t)(period * quota_cpu / 1000), "period", (json_int_t)period,
                     "shares", (json_int_t)(1024 * cpu / 1000), "pids", "limit",
                     (json_int_t)ink_bundle_host_pids(pids), "devices", "allow", 0, "access",
                     "rwm");
}

static json_t *namespaces(const char *netns_path)
{
    json_t *ns = json_array();
    const char *types[] = {"pid", "ipc", "uts", "mount"};
    for (size_t i = 0; i < INK_ARRAY_LEN(types); i++)
        json_array_append_new(ns, json_pack("{s:s}", "type", types[i]));
    if (netns_path)
        json_array_append_new(ns, json_pack("{s:s, s:s}", "type", "network", "path", netns_path));
    else
        json_array_append_new(ns, json_pack("{s:s}", "type", "network"));
    return ns;
}

int ink_bundle_config(const ink_bundle_spec *spec, char **out, ink_err *err)
{
    const Ink__V1__Assignment *a = spec->assignment;
    const ink_image_config *img = spec->image;
    if (!spec->rootfs || spec->rootfs[0] != '/')
        return ink_err_set(err, 0, "rootfs must be an absolute path");
    if ((spec->resolv_conf && spec->resolv_conf[0] != '/') ||
        (spec->hosts && spec->hosts[0] != '/'))
        return ink_err_set(err, 0, "resolv.conf and hosts must be absolute paths");
    cleanup_json json_t *args = process_args(a, img, err);
    if (!args)
        return -1;
    cleanup_json json_t *env = process_env(a, img, err);
    if (!env)
        return -1;
    uint32_t uid, gid;
    if (ink_bundle_resolve_user(spec->rootfs, img->user, &uid, &gid, err) < 0)
        return -1;
    json_t *caps = json_pack("[s]", "CAP_NET_BIND_SERVICE");
    json_t *capabilities = json_pack("{s:O, s:O, s:O, s:[], s:[]}", "bounding", caps, "effective",
                                     caps, "permitted", caps, "inheritable", "ambient");
    json_decref(caps);
    const char *masked[] = {"/proc/acpi",
                            "/proc/asound",
                            "/proc/kcore",
                            "/proc/keys",
                            "/proc/latency_stats",
                            "/proc/timer_list",
                            "/proc/timer_stats",
                            "/proc/sched_debug",
                            "/proc/scsi",
                            "/sys/firmware",
                            "/sys/devices/virtual/powercap"};
    const char *readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"};
    json_t *masked_paths = json_array(), *readonly_paths = json_array();
    for (size_t i = 0; i < INK_ARRAY_LEN(masked); i++)
        json_array_append_new(masked_paths, json_string(masked[i]));
    for (size_t i = 0; i < INK_ARRAY_LEN(readonly); i++)
        json_array_append_new(readonly_paths, json_string(readonly[i]));
    char generation[24];
    snprintf(generation, sizeof generation, "%llu", (unsigned long long)a->generation);
    json_t *rlimits =
        json_pack("[{s:s, s:i, s:i}]", "type", "RLIMIT_NOFILE", "hard", 65536, "soft", 65536);
    json_t *process =
        json_pack("{s:b, s:{s:i, s:i}, s:O, s:O, s:s, s:o, s:b, s:o}", "terminal", 0, "user", "uid",
                  (int)uid, "gid", (int)gid, "args", args, "env", env, "cwd",
                  img->working_dir && *img->working_dir ? img->working_dir : "/", "capabilities",
                  capabilities, "noNewPrivileges", 1, "rlimits", rlimits);
    json_t *linux_ =
        json_pack("{s:o, s:o, s:o, s:o, s:[]}", "resources", resources(a, spec->boot_cpu_millis),
                  "namespaces", namespaces(spec->netns_path), "maskedPaths", masked_paths,
                  "readonlyPaths", readonly_paths, "devices");
    if (spec->cgroup)
        json_object_set_new(linux_, "cgroupsPath", json_string(spec->cgroup));
    json_t *annotations =
        json_pack("{s:s, s:s, s:s, s:s}", "ink.workload_id", a->workload_id, "ink.app", a->app,
                  "ink.project", a->project, "ink.generation", generation);
    cleanup_json json_t *cfg = json_pack(
        "{s:s, s:o, s:{s:s, s:b}, s:s, s:o, s:o, s:o}", "ociVersion", "1.0.2", "process", process,
        "root", "path", spec->rootfs, "readonly", 1, "hostname", *a->app ? a->app : a->workload_id,
        "mounts", mounts(spec), "linux", linux_, "annotations", annotations);
    if (!cfg)
        return ink_err_set(err, 0, "building config.json failed (invalid UTF-8 in the spec?)");
    *out = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    return *out ? 0 : ink_err_set(err, 0, "serialising config.json failed");
}
