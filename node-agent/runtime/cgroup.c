#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define CGROUP_ROOT "/sys/fs/cgroup"

char *ink_cgroup_path(const char *workload_id)
{
    return ink_xasprintf("%s/%s", INK_CGROUP_PARENT, workload_id);
}

static uint64_t read_key(const char *file, const char *key)
{
    cleanup_fclose FILE *f = fopen(file, "re");
    if (!f)
        return 0;
    char line[256];
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
            return strtoull(line + klen + 1, NULL, 10);
    }
    return 0;
}

uint64_t ink_cgroup_oom_kills(const char *path)
{
    cleanup_free char *v1 = ink_xasprintf("%s/memory%s/memory.oom_control", CGROUP_ROOT, path);
    if (access(v1, R_OK) == 0)
        return read_key(v1, "oom_kill");
    cleanup_free char *v2 = ink_xasprintf("%s%s/memory.events", CGROUP_ROOT, path);
    return read_key(v2, "oom_kill");
}

static uint64_t read_number(const char *file)
{
    cleanup_fclose FILE *f = fopen(file, "re");
    unsigned long long v = 0;
    if (!f || fscanf(f, "%llu", &v) != 1)
        return 0;
    return v;
}

void ink_cgroup_read_stats(const char *path, ink_cgroup_stats *st)
{
    *st = (ink_cgroup_stats){0};
    cleanup_free char *v1_cpu = ink_xasprintf("%s/cpuacct%s/cpuacct.usage", CGROUP_ROOT, path);
    if (access(v1_cpu, R_OK) == 0) {
        st->cpu_ns = read_number(v1_cpu);
        cleanup_free char *mem =
            ink_xasprintf("%s/memory%s/memory.usage_in_bytes", CGROUP_ROOT, path);
        cleanup_free char *stat = ink_xasprintf("%s/memory%s/memory.stat", CGROUP_ROOT, path);
        uint64_t usage = read_number(mem), inactive = read_key(stat, "total_inactive_file");
        st->memory_bytes = usage > inactive ? usage - inactive : usage;
        cleanup_free char *pids = ink_xasprintf("%s/pids%s/pids.current", CGROUP_ROOT, path);
        st->pids = (uint32_t)read_number(pids);
        return;
    }
    cleanup_free char *cpu = ink_xasprintf("%s%s/cpu.stat", CGROUP_ROOT, path);
    st->cpu_ns = read_key(cpu, "usage_usec") * 1000;
    cleanup_free char *mem = ink_xasprintf("%s%s/memory.current", CGROUP_ROOT, path);
    cleanup_free char *stat = ink_xasprintf("%s%s/memory.stat", CGROUP_ROOT, path);
    uint64_t usage = read_number(mem), inactive = read_key(stat, "inactive_file");
    st->memory_bytes = usage > inactive ? usage - inactive : usage;
    cleanup_free char *pids = ink_xasprintf("%s%s/pids.current", CGROUP_ROOT, path);
    st->pids = (uint32_t)read_number(pids);
}

static int write_value(const char *file, const char *value, ink_err *err)
{
    int fd = open(file, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return ink_err_set(err, errno, "opening %s", file);
    size_t len = strlen(value);
    ssize_t w = write(fd, value, len);
    int saved = errno;
    close(fd);
    if (w != (ssize_t)len)
        return ink_err_set(err, w < 0 ? saved : 0, "writing '%s' to %s", value, file);
    return 0;
}

int ink_cgroup_set_cpu_limit(const char *path, uint32_t millis, ink_err *err)
{
    long long quota = (long long)INK_CPU_PERIOD_US * millis / 1000;
    char value[64];
    cleanup_free char *v1 = ink_xasprintf("%s/cpu%s/cpu.cfs_quota_us", CGROUP_ROOT, path);
    if (access(v1, W_OK) == 0) {
        snprintf(value, sizeof value, "%lld", quota);
        return write_value(v1, value, err);
    }
    cleanup_free char *v2 = ink_xasprintf("%s%s/cpu.max", CGROUP_ROOT, path);
    snprintf(value, sizeof value, "%lld %d", quota, INK_CPU_PERIOD_US);
    return write_value(v2, value, err);
}

void ink_cgroup_remove(const char *path)
{
    cleanup_free char *v2 = ink_xasprintf("%s%s", CGROUP_ROOT, path);
    rmdir(v2);
    DIR *d = opendir(CGROUP_ROOT);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        cleanup_free char *p = ink_xasprintf("%s/%s%s", CGROUP_ROOT, e->d_name, path);
        rmdir(p);
    }
    closedir(d);
}

/* v1: freezer.state ("THAWED", "FREEZING", "FROZEN"); v2: cgroup.freeze
 * to ask, the "frozen" key of cgroup.events to see it done. */
int ink_cgroup_frozen(const char *path)
{
    cleanup_free char *v1 = ink_xasprintf("%s/freezer%s/freezer.state", CGROUP_ROOT, path);
    cleanup_fclose FILE *f = fopen(v1, "re");
    if (f) {
        char state[32] = "";
        if (!fgets(state, sizeof state, f))
            return -1;
        if (strncmp(state, "FROZEN", 6) == 0)
            return 1;
        return strncmp(state, "THAWED", 6) == 0 ? 0 : 2;
    }
    cleanup_free char *v2 = ink_xasprintf("%s%s/cgroup.events", CGROUP_ROOT, path);
    if (access(v2, R_OK) < 0)
        return -1;
    cleanup_free char *want = ink_xasprintf("%s%s/cgroup.freeze", CGROUP_ROOT, path);
    uint64_t asked = read_number(want), done = read_key(v2, "frozen");
    return asked == done ? (int)done : 2;
}

int ink_cgroup_freeze(const char *path, bool freeze, int64_t timeout_ms, ink_err *err)
{
    cleanup_free char *v1 = ink_xasprintf("%s/freezer%s/freezer.state", CGROUP_ROOT, path);
    cleanup_free char *v2 = ink_xasprintf("%s%s/cgroup.freeze", CGROUP_ROOT, path);
    bool is_v1 = access(v1, W_OK) == 0;
    if (!is_v1 && access(v2, W_OK) < 0)
        return ink_err_set(err, ENOENT, "no freezer for cgroup %s", path);
    int rc = is_v1 ? write_value(v1, freeze ? "FROZEN" : "THAWED", err)
                   : write_value(v2, freeze ? "1" : "0", err);
    if (rc < 0)
        return -1;
    /* Freezing waits for every task to stop (v1 says FREEZING until then;
     * writing FROZEN again retries the tasks that were busy). */
    int64_t deadline = ink_mono_ms() + timeout_ms;
    for (unsigned i = 0;; i++) {
        int st = ink_cgroup_frozen(path);
        if (st == (freeze ? 1 : 0))
            return 0;
        if (st < 0)
            return ink_err_set(err, ENOENT, "cgroup %s went away", path);
        if (ink_mono_ms() >= deadline)
            return ink_err_set(err, ETIMEDOUT, "cgroup %s did not %s within %lld ms", path,
                               freeze ? "freeze" : "thaw", (long long)timeout_ms);
        if (is_v1 && freeze && i % 8 == 7 && write_value(v1, "FROZEN", err) < 0)
            return -1;
        usleep(i < 20 ? 250 : 2000);
    }
}

void ink_cgroup_thaw_all(void)
{
    static const char *const parents[] = {CGROUP_ROOT "/freezer" INK_CGROUP_PARENT,
                                          CGROUP_ROOT INK_CGROUP_PARENT};
    for (size_t i = 0; i < INK_ARRAY_LEN(parents); i++) {
        DIR *d = opendir(parents[i]);
        if (!d)
            continue;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || e->d_type != DT_DIR)
                continue;
            cleanup_free char *path = ink_xasprintf("%s/%s", INK_CGROUP_PARENT, e->d_name);
            if (ink_cgroup_frozen(path) != 0) {
                ink_err err = {0};
                ink_cgroup_freeze(path, false, 1000, &err);
            }
        }
        closedir(d);
    }
}
