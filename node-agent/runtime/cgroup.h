/* The host cgroups runsc makes for a sandbox (config.json cgroupsPath,
 * "/ink/<workload id>"): read for OOM kills and usage, removed when runsc
 * leaves them behind. Works on cgroup v1 (one hierarchy per controller
 * under /sys/fs/cgroup) and v2 (the unified hierarchy). */
#ifndef INK_CGROUP_H
#define INK_CGROUP_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define INK_CGROUP_PARENT "/ink"
#define INK_CPU_PERIOD_US 100000 /* CFS period of every sandbox: 100 ms, the kernel default */

/* "/ink/<id>"; caller frees. */
char *ink_cgroup_path(const char *workload_id);

/* Times the kernel's OOM killer has killed a process in the cgroup
 * (memory.oom_control "oom_kill" on v1, memory.events on v2); 0 when the
 * cgroup does not exist. */
uint64_t ink_cgroup_oom_kills(const char *path);

typedef struct ink_cgroup_stats {
    uint64_t cpu_ns;
    uint64_t memory_bytes; /* working set: usage less inactive file cache */
    uint32_t pids;
} ink_cgroup_stats;

/* Zeroes what cannot be read. */
void ink_cgroup_read_stats(const char *path, ink_cgroup_stats *st);

/* Sets the CFS quota of the cgroup to millis/1000 CPUs per
 * INK_CPU_PERIOD_US (cpu.cfs_quota_us on v1, cpu.max on v2). */
int ink_cgroup_set_cpu_limit(const char *path, uint32_t millis, ink_err *err);

/* Whether the cgroup's tasks are frozen: 1 frozen, 0 thawed, 2 on the way
 * (freezing or thawing), -1 no freezer (no such cgroup). */
int ink_cgroup_frozen(const char *path);

/* Freezes (or thaws) every task of the cgroup and waits up to timeout_ms
 * until the kernel says it is done: a frozen sandbox uses no CPU and
 * keeps its memory, and its sockets keep queueing what arrives. */
int ink_cgroup_freeze(const char *path, bool freeze, int64_t timeout_ms, ink_err *err);

/* Thaws every frozen sandbox cgroup of Ink's: runsc hangs on a frozen
 * sandbox (state, list, exec all wait for it), so an agent that starts
 * wakes them all before it asks runsc anything. */
void ink_cgroup_thaw_all(void);

/* Removes the (empty) cgroup from every hierarchy; missing is fine. */
void ink_cgroup_remove(const char *path);

#endif
