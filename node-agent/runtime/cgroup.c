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
