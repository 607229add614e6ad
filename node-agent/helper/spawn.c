/* Helper processes, the agent's side: see helper.h. */
#include "helper.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

int ink_helper_find(const char *what, const char *name, const char *install_path, char *out,
                    size_t outlen, ink_err *err)
{
    char tried[3][PATH_MAX];
    size_t ntried = 0;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(tried[ntried++], PATH_MAX, "%s/%s", self, name);
            snprintf(tried[ntried++], PATH_MAX, "%s/../libexec/ink/%s", self, name);
        }
    }
    snprintf(tried[ntried++], PATH_MAX, "%s", install_path);
    for (size_t i = 0; i < ntried; i++) {
        struct stat st;
        if (stat(tried[i], &st) == 0 && S_ISREG(st.st_mode) && access(tried[i], X_OK) == 0) {
            snprintf(out, outlen, "%s", tried[i]);
            return 0;
        }
    }
    char list[3 * PATH_MAX + 8] = "";
    for (size_t i = 0; i < ntried; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", tried[i]);
    return ink_err_set(err, ENOENT, "%s %s not found (tried %s)", what, name, list);
}

/* Only the sanitizers' options pass on, so a sanitizer build behaves the
 * same in the helper. */
static size_t helper_env(char **env, size_t max)
{
    static const char *const passed[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS"};
    size_t n = 0;
    for (size_t i = 0; i < INK_ARRAY_LEN(passed) && n + 1 < max; i++) {
        const char *v = getenv(passed[i]);
        if (v)
            env[n++] = ink_xasprintf("%s=%s", passed[i], v);
    }
    env[n] = NULL;
    return n;
}

int ink_helper_spawn(const char *what, const char *path, char *const argv[], const int *keep,
                     size_t nkeep, pid_t *pid, ink_err *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0)
        return ink_err_set(err, rc, "posix_spawn_file_actions_init");
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return ink_err_set(err, rc, "posix_spawnattr_init");
    }
    /* dup2 onto the same number clears FD_CLOEXEC in the child only
     * (glibc 2.29 and later, POSIX.1-2024). */
    for (size_t i = 0; rc == 0 && i < nkeep; i++)
        rc = posix_spawn_file_actions_adddup2(&fa, keep[i], keep[i]);
    if (rc == 0)
        rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    /* Signal state as a fresh process has it: the agent blocks signals in
     * its threads and ignores SIGPIPE. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (rc == 0)
        rc = posix_spawnattr_setsigmask(&attr, &none);
    if (rc == 0)
        rc = posix_spawnattr_setsigdefault(&attr, &all);
    if (rc == 0)
        rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *env[4];
    size_t nenv = helper_env(env, INK_ARRAY_LEN(env));
    if (rc == 0) {
        rc = posix_spawn(pid, path, &fa, &attr, argv, env);
        if (rc != 0)
            ink_err_set(err, rc, "starting the %s %s", what, path);
    } else {
        ink_err_set(err, rc, "preparing to start the %s", what);
    }
    for (size_t i = 0; i < nenv; i++)
        free(env[i]);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? 0 : -1;
}

void ink_helper_exit_text(int status, char *out, size_t outlen)
{
    if (WIFEXITED(status)) {
        snprintf(out, outlen, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) {
        snprintf(out, outlen,
                 "killed by its seccomp filter (SIGSYS): it made a system call "
                 "outside its allowlist");
    } else if (WIFSIGNALED(status)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(status));
        snprintf(out, outlen, "killed by signal %d (SIG%s)", WTERMSIG(status),
                 abbrev ? abbrev : "?");
    } else {
        snprintf(out, outlen, "ended (status 0x%x)", (unsigned)status);
    }
}
