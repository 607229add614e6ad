/* What the agent tells the coordinator about its node: identity,
 * addresses, capacity, runsc and the kernel features Ink relies on. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "util.h"

extern char **environ;

void ink_default_node_id(char *out, size_t outlen)
{
    char host[256] = "node";
    gethostname(host, sizeof host - 1);
    char *dot = strchr(host, '.');
    if (dot)
        *dot = '\0';
    size_t n = 0;
    for (const char *c = host; *c && n + 1 < outlen && n < 63; c++)
        out[n++] = isalnum((unsigned char)*c) ? (char)tolower((unsigned char)*c) : '-';
    while (n > 0 && out[n - 1] == '-')
        n--;
    out[n] = '\0';
    if (n == 0)
        snprintf(out, outlen, "node");
}

static bool path_exists(const char *p)
{
    return access(p, F_OK) == 0;
}

int ink_runsc_version(const char *runsc, char *out, size_t outlen, ink_err *err)
{
    out[0] = '\0';
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return ink_err_set(err, errno, "pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    char *argv[] = {(char *)runsc, "--version", NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, runsc, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    if (rc != 0) {
        close(pipefd[0]);
        return ink_err_set(err, rc, "cannot run %s", runsc);
    }
    char buf[512];
    size_t len = 0;
    bool timed_out = false;
    int64_t deadline = ink_mono_ms() + 5000;
    for (;;) {
        int64_t left = deadline - ink_mono_ms();
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
            kill(pid, SIGKILL);
            timed_out = true;
            break;
        }
        ssize_t n = read(pipefd[0], buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof buf - 1)
            break;
    }
    close(pipefd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    buf[len] = '\0';
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    if (timed_out)
        return ink_err_set(err, 0, "%s --version did not answer within 5 s", runsc);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return ink_err_set(err, 0, "%s --version failed (status %d)", runsc,
                           WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    const char *v = buf;
    if (strncmp(v, "runsc version ", 14) == 0)
        v += 14;
    snprintf(out, outlen, "%s", v);
    return 0;
}

/* The host ends of workload veths (ink_net_host_ifname: "ink" and 12 hex
 * digits) carry the node's side of each workload link, not addresses that
 * clients or the coordinator can reach the node at. */
static bool is_workload_link(const char *ifname)
{
    if (strncmp(ifname, "ink", 3) != 0 || strlen(ifname) != 15)
        return false;
    return strspn(ifname + 3, "0123456789abcdef") == 12;
}

static void collect_addresses(ink_node_info *info)
{
    struct ifaddrs *ifa_list;
    if (getifaddrs(&ifa_list) < 0)
        return;
    for (struct ifaddrs *ifa = ifa_list; ifa && info->naddresses < INK_ARRAY_LEN(info->addresses);
         ifa = ifa->ifa_next) {
        if (!ifa->ifa_addr || (ifa->ifa_flags & IFF_LOOPBACK) || !(ifa->ifa_flags & IFF_UP) ||
            is_workload_link(ifa->ifa_name))
            continue;
        char buf[INET6_ADDRSTRLEN];
        if (ifa->ifa_addr->sa_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)ifa->ifa_addr)->sin_addr, buf, sizeof buf);
        } else if (ifa->ifa_addr->sa_family == AF_INET6) {
            struct in6_addr *a6 = &((struct sockaddr_in6 *)ifa->ifa_addr)->sin6_addr;
            if (IN6_IS_ADDR_LINKLOCAL(a6))
                continue;
            inet_ntop(AF_INET6, a6, buf, sizeof buf);
        } else {
            continue;
        }
        info->addresses[info->naddresses++] = ink_xstrdup(buf);
    }
    freeifaddrs(ifa_list);
}

void ink_node_info_collect(ink_node_info *info, const char *state_dir, const char *runsc)
{
    memset(info, 0, sizeof *info);
    gethostname(info->hostname, sizeof info->hostname - 1);
    collect_addresses(info);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    info->cpus = cpus > 0 ? (uint32_t)cpus : 1;
    struct sysinfo si;
    if (sysinfo(&si) == 0)
        info->memory_bytes = (uint64_t)si.totalram * si.mem_unit;
    struct statvfs vfs;
    if (statvfs(state_dir, &vfs) == 0)
        info->disk_bytes = (uint64_t)vfs.f_blocks * vfs.f_frsize;
    if (runsc)
        ink_runsc_version(runsc, info->runsc_version, sizeof info->runsc_version, &(ink_err){0});
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(info->kernel_release, sizeof info->kernel_release, "%s", u.release);
    info->cgroup_v2 = path_exists("/sys/fs/cgroup/cgroup.controllers") ||
                      path_exists("/sys/fs/cgroup/unified/cgroup.controllers");
    info->btf = path_exists("/sys/kernel/btf/vmlinux");
    info->nftables = path_exists("/sys/module/nf_tables") || path_exists("/proc/net/nf_tables");
    info->netns = path_exists("/proc/self/ns/net");
    info->seccomp = path_exists("/proc/sys/kernel/seccomp/actions_avail");
}

void ink_node_info_free(ink_node_info *info)
{
    for (size_t i = 0; i < info->naddresses; i++)
        free(info->addresses[i]);
    info->naddresses = 0;
}

static uint64_t meminfo_field(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    if (!p)
        return 0;
    return strtoull(p + strlen(key), NULL, 10) * 1024;
}

void ink_node_usage_collect(Ink__V1__NodeUsage *u, const char *state_dir)
{
    ink__v1__node_usage__init(u);
    char *text = NULL;
    if (ink_read_file("/proc/loadavg", 4096, &text, NULL, NULL) == 0) {
        u->load1 = strtod(text, NULL);
        free(text);
    }
    if (ink_read_file("/proc/meminfo", 65536, &text, NULL, NULL) == 0) {
        uint64_t total = meminfo_field(text, "MemTotal:");
        u->memory_available_bytes = meminfo_field(text, "MemAvailable:");
        u->memory_used_bytes =
            total > u->memory_available_bytes ? total - u->memory_available_bytes : 0;
        free(text);
    }
    struct statvfs vfs;
    if (statvfs(state_dir, &vfs) == 0)
        u->disk_free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
}
