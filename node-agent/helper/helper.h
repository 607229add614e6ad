/* Helper processes: the small programs the agent runs to parse what it
 * must not trust (ink-unpack for image layers, ink-dns for workloads'
 * queries). Two halves:
 *
 *   - the agent's side (spawn.c): find the helper's executable, start it
 *     with posix_spawn with only the descriptors it is given, a clean
 *     environment and default signal state, and describe how it ended;
 *   - the helper's side (confine.c): the building blocks every helper
 *     uses to confine itself before it reads its first byte of input
 *     (close every other descriptor, a seccomp allowlist that also keeps
 *     executable memory out of reach).
 *
 * The agent is many-threaded, so helpers start with posix_spawn
 * (clone+exec: no agent code runs in the child) rather than fork. */
#ifndef INK_HELPER_H
#define INK_HELPER_H
#include <stddef.h>
#include <sys/types.h>

#include "err.h"

/* The helper to run: the first executable of: next to the running
 * program (the build tree), <its dir>/../libexec/ink (an installed tree
 * moved as a whole), install_path. what names the helper in the error
 * ("unpack helper"), which lists every place tried. */
int ink_helper_find(const char *what, const char *name, const char *install_path, char *out,
                    size_t outlen, ink_err *err);

/* Starts path with argv. The descriptors in keep stay open across the
 * exec (they are O_CLOEXEC in the agent, so that nothing else it starts
 * inherits them); stdin is /dev/null. The environment holds only the
 * sanitizers' options (the agent's may hold proxy settings or
 * credentials); no signal is blocked or ignored. what names the helper in
 * errors. */
int ink_helper_spawn(const char *what, const char *path, char *const argv[], const int *keep,
                     size_t nkeep, pid_t *pid, ink_err *err);

/* "exited with status N", "killed by its seccomp filter (SIGSYS) ...",
 * "killed by signal N (SIGX)": a wait status for a log line or an error. */
void ink_helper_exit_text(int status, char *out, size_t outlen);

/* The helper's side. Closes every descriptor but 0, 1, 2 and keep (at most
 * 16): an inherited descriptor could be a way out of a chroot or into the
 * agent. */
int ink_helper_close_fds(const int *keep, size_t nkeep, ink_err *err);

/* Loads a seccomp filter that kills the process (SIGSYS) on any call but
 * allowed (names unknown to this libseccomp are skipped), mmap and
 * mprotect without PROT_EXEC (nothing new can ever run), and what
 * add_rules (may be NULL) adds; add_rules returns a libseccomp result and
 * sets *what to the call it was adding. Foreign architectures are killed
 * too. Needs no_new_privs or CAP_SYS_ADMIN. ctx is libseccomp's
 * scmp_filter_ctx (kept out of this header: the agent's side does not
 * link libseccomp). */
typedef int (*ink_seccomp_rules_fn)(void *ctx, const char **what);
int ink_helper_seccomp(const char *const *allowed, size_t nallowed, ink_seccomp_rules_fn add_rules,
                       ink_err *err);

#endif
