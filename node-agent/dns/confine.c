/* Confinement of the ink-dns helper, done once, before the first packet is
 * read. The helper parses what any workload sends; should that parsing
 * ever go wrong, what the process can do afterwards is this:
 *
 *   - it sees an empty, root-owned directory as its root (chroot);
 *   - it holds no descriptors but its sockets, the agent's control socket
 *     and an epoll set;
 *   - it runs as an unprivileged uid/gid with no supplementary groups,
 *     with no capability in any set (the bounding set emptied, so not even
 *     an exec of a setuid binary could give one back; no_new_privs too);
 *   - it cannot be ptraced by its user's other processes, dumps no core,
 *     cannot fork (RLIMIT_NPROC 0) and has a bounded heap (RLIMIT_DATA);
 *   - its system calls are an allowlist: sockets of AF_INET/AF_INET6 only
 *     (to reach the upstream resolvers), send/receive, epoll, memory
 *     without PROT_EXEC, the clock, getrandom, exit. No open, no exec, no
 *     bind, no setsockopt, no ptrace, no kill. Anything else kills it
 *     (SIGSYS), and the agent says so in its log. */
#include "dns_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/securebits.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helper.h"
#include "util.h"

/* Descriptors: the listening sockets, control, epoll, a socket per query
 * waiting upstream, a connection per TCP client, and some slack. */
#define HELPER_NOFILE (INK_DNS_MAX_PENDING + INK_DNS_MAX_TCP + 32)
/* The heap the helper may have: its fixed arrays, a table of the largest
 * size decoded next to the one in use, TCP buffers. */
#define HELPER_DATA_BYTES (256ULL << 20)

static int set_limit(int res, rlim_t v, const char *name, ink_err *err)
{
    struct rlimit rl = {v, v};
    if (setrlimit(res, &rl) < 0)
        return ink_err_set(err, errno, "%s", name);
    return 0;
}

static int drop_privileges(const ink_dns_confine_opts *o, ink_err *err)
{
    if (o->uid == 0 || o->gid == 0)
        return ink_err_set(err, 0, "refusing to run as uid %u gid %u: want an unprivileged user",
                           (unsigned)o->uid, (unsigned)o->gid);
    /* The bounding set first (needs CAP_SETPCAP, still held), and
     * ambient capabilities, so nothing can ever come back. */
    cap_value_t max = cap_max_bits();
    for (cap_value_t c = 0; c < max; c++)
        if (cap_drop_bound(c) < 0)
            return ink_err_set(err, errno, "dropping capability %d from the bounding set", c);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return ink_err_set(err, errno, "clearing ambient capabilities");
    /* No root privileges through uid 0 semantics either, ever. */
    if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                                     SECBIT_NO_SETUID_FIXUP_LOCKED) < 0)
        return ink_err_set(err, errno, "securebits");
    if (setgroups(0, NULL) < 0)
        return ink_err_set(err, errno, "setgroups");
    if (setresgid(o->gid, o->gid, o->gid) < 0)
        return ink_err_set(err, errno, "setresgid %u", (unsigned)o->gid);
    if (setresuid(o->uid, o->uid, o->uid) < 0)
        return ink_err_set(err, errno, "setresuid %u", (unsigned)o->uid);
    /* Leaving uid 0 cleared the permitted and effective sets (keep-caps
     * is off); clear all three explicitly and read back. */
    cap_t none = cap_init();
    if (!none)
        return ink_err_set(err, errno, "cap_init");
    int rc = 0;
    if (cap_set_proc(none) < 0) {
        rc = ink_err_set(err, errno, "clearing capabilities");
    } else {
        cap_t now = cap_get_proc();
        if (!now || cap_compare(now, none) != 0)
            rc = ink_err_set(err, 0, "capabilities still held after dropping them");
        cap_free(now);
    }
    cap_free(none);
    if (rc < 0)
        return -1;
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 || ru != o->uid ||
        eu != o->uid || su != o->uid || rg != o->gid || eg != o->gid || sg != o->gid)
        return ink_err_set(err, 0, "uid/gid not as set");
    for (cap_value_t c = 0; c < max; c++)
        if (cap_get_bound(c) != 0)
            return ink_err_set(err, 0, "bounding set still holds capability %d", c);
    return 0;
}

/* The calls server.c makes (glibc 2.36, x86-64: strace of the tests),
 * with the legacy forms of the same operations so other libc versions
 * resolve to the same set. Names unknown to this libseccomp are
 * skipped. */
/* clang-format off */
static const char *const allowed_syscalls[] = {
    "read", "write", "close",                        /* control, stderr, sockets */
    "recvfrom", "recvmsg", "sendto", "sendmsg",      /* queries and answers */
    "connect", "accept4", "shutdown",                /* upstream, TCP clients */
    "epoll_wait", "epoll_pwait", "epoll_ctl",
    "clock_gettime", "gettimeofday", "getrandom",
    "brk", "munmap", "mremap", "madvise",            /* memory */
    "exit_group", "exit", "rt_sigreturn", "restart_syscall",
#ifdef __SANITIZE_ADDRESS__
    "sigaltstack",                                   /* ASan on every noreturn call */
#endif
};
/* clang-format on */

/* Sockets to the upstream resolvers only, and the result of a TCP
 * connect. */
static int add_socket_rules(void *ctx, const char **what)
{
    int rc = 0;
    /* IPv4/IPv6, UDP or TCP, exactly as server.c asks for them. */
    static const int families[] = {AF_INET, AF_INET6};
    static const int types[] = {SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                                SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC};
    for (size_t f = 0; rc == 0 && f < INK_ARRAY_LEN(families); f++) {
        for (size_t t = 0; rc == 0 && t < INK_ARRAY_LEN(types); t++) {
            *what = "socket";
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 3,
                                  SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[f]),
                                  SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)types[t]),
                                  SCMP_A2(SCMP_CMP_EQ, 0));
        }
    }
    /* The result of a TCP connect, nothing else. */
    if (rc == 0) {
        *what = "getsockopt";
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(getsockopt), 2,
                              SCMP_A1(SCMP_CMP_EQ, SOL_SOCKET), SCMP_A2(SCMP_CMP_EQ, SO_ERROR));
    }
    return rc;
}

int ink_dns_confine(const ink_dns_confine_opts *o, ink_err *err)
{
    /* The root must be root's and not writable by anyone else: the helper
     * could otherwise be handed files after the fact. */
    struct stat st;
    if (stat(o->root, &st) < 0)
        return ink_err_set(err, errno, "root %s", o->root);
    if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022))
        return ink_err_set(err, 0, "root %s: not a root-owned directory closed to others", o->root);
    if (chroot(o->root) < 0)
        return ink_err_set(err, errno, "chroot %s", o->root);
    if (chdir("/") < 0)
        return ink_err_set(err, errno, "chdir /");
    if (ink_helper_close_fds(o->keep, o->nkeep, err) < 0)
        return -1;
    if (set_limit(RLIMIT_CORE, 0, "RLIMIT_CORE", err) < 0 ||
        set_limit(RLIMIT_NOFILE, HELPER_NOFILE, "RLIMIT_NOFILE", err) < 0)
        return -1;
#ifndef __SANITIZE_ADDRESS__
    /* ASan reserves terabytes of shadow memory up front. */
    if (set_limit(RLIMIT_DATA, HELPER_DATA_BYTES, "RLIMIT_DATA", err) < 0)
        return -1;
#endif
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return ink_err_set(err, errno, "PR_SET_DUMPABLE");
    if (drop_privileges(o, err) < 0)
        return -1;
    /* No new process, should the filter below ever let a clone through:
     * with a limit of 0 every fork fails, however many processes the user
     * has. (Set as the new user: lowering a limit needs no privilege.) */
    if (set_limit(RLIMIT_NPROC, 0, "RLIMIT_NPROC", err) < 0)
        return -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return ink_err_set(err, errno, "PR_SET_NO_NEW_PRIVS");
    return ink_helper_seccomp(allowed_syscalls, INK_ARRAY_LEN(allowed_syscalls), add_socket_rules,
                              err);
}
