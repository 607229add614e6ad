#include "runsc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define DEFAULT_TIMEOUT_MS 30000
#define CAPTURE_MAX (256 * 1024)

const char *ink_sandbox_status_name(ink_sandbox_status s)
{
    static const char *names[] = {"unknown", "created", "running", "paused", "stopped"};
    return (size_t)s < INK_ARRAY_LEN(names) ? names[s] : "unknown";
}

/* One runsc invocation. The workload's stdio (for run) or capture pipes. */
typedef struct cmd {
    const ink_runsc *r;
    const char *args[24]; /* after the global flags */
    size_t nargs;
    char *const *extra;       /* exec: the command inside the sandbox */
    int stdout_fd, stderr_fd; /* -1: capture */
    const char *input;        /* exec: written to the command's stdin */
    size_t input_len;
    bool netns_trick;       /* run: private mount ns with tmpfs on /proc/sys/net */
    const char *sandbox_id; /* run: its own namespace mount stays visible */
    char runsc_id[96];      /* the id as runsc knows it (runsc_id()) */
    /* Built before fork (prepare_exec): the child only makes system calls. */
    const char *argv[64];
    char root_flag[4096], network_flag[32], log_flag[4096], debug_log_flag[4096];
    char keep_netns[4096];
    const char *log_path;  /* --log */
    const char *debug_log; /* run: --debug-log (a directory, per process) */
    int64_t timeout_ms;
    size_t max_output;
    /* results */
    int status;
    bool timed_out, truncated;
    char *out, *errout;
    size_t out_len, err_len;
} cmd;

/* In the sandbox's private mount namespace, detaches the namespace mounts
 * of every other workload under netns_dir: the copies would otherwise pin
 * those namespaces for as long as this sandbox lives, long after their own
 * workloads are gone. Runs between fork and exec, so it only uses read(),
 * umount2() and stack buffers. */
static void detach_other_netns(const char *netns_dir, const char *keep_path)
{
    size_t dlen = strlen(netns_dir);
    int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    /* Collect first, unmount after: unmounting changes mountinfo. */
    static char buf[256 << 10];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = '\0';
    for (char *line = buf; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        /* "id parent major:minor root mount-point ..." */
        char *field = line;
        for (int i = 0; i < 4 && field; i++) {
            field = strchr(field, ' ');
            if (field)
                field++;
        }
        if (field) {
            char *end = strchr(field, ' ');
            if (end)
                *end = '\0';
            if (strncmp(field, netns_dir, dlen) == 0 && field[dlen] == '/' &&
                strcmp(field, keep_path) != 0)
                umount2(field, MNT_DETACH);
        }
        line = next;
    }
}

/* The command line, in the parent: formatting is not safe between fork
 * and exec in a multi-threaded process. */
static void prepare_exec(cmd *c)
{
    size_t n = 0;
    c->argv[n++] = c->r->binary;
    snprintf(c->root_flag, sizeof c->root_flag, "--root=%s", c->r->root);
    c->argv[n++] = c->root_flag;
    static const char *nets[] = {"none", "sandbox", "host"};
    snprintf(c->network_flag, sizeof c->network_flag, "--network=%s", nets[c->r->network]);
    c->argv[n++] = c->network_flag;
    if (c->log_path) {
        snprintf(c->log_flag, sizeof c->log_flag, "--log=%s", c->log_path);
        c->argv[n++] = c->log_flag;
        c->argv[n++] = "--log-format=json";
    }
    if (c->debug_log) {
        snprintf(c->debug_log_flag, sizeof c->debug_log_flag, "--debug-log=%s/", c->debug_log);
        c->argv[n++] = c->debug_log_flag;
    }
    for (size_t i = 0; i < c->nargs; i++)
        c->argv[n++] = c->args[i];
    for (size_t i = 0; c->extra && c->extra[i] && n < INK_ARRAY_LEN(c->argv) - 1; i++)
        c->argv[n++] = c->extra[i];
    c->argv[n] = NULL;
    if (c->r->netns_dir && c->sandbox_id)
        snprintf(c->keep_netns, sizeof c->keep_netns, "%s/%s", c->r->netns_dir, c->sandbox_id);
}

static void child_fail(int fd, const char *what)
{
    static const char prefix[] = "ink: ";
    ssize_t r = write(fd, prefix, sizeof prefix - 1);
    r = write(fd, what, strlen(what));
    r = write(fd, " failed\n", 8);
    (void)r;
    _exit(127);
}

/* Between fork and exec: system calls only. */
static void child_exec(cmd *c, int out_fd, int err_fd, int in_fd)
{
    if (c->netns_trick) {
        /* This runsc refuses to start netstack when /proc/sys/net/core
         * exists in the namespace it sees (see shared notes): hide it in a
         * private mount namespace that only this runsc and its sandbox use. */
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", "/proc/sys/net", "tmpfs", MS_NOSUID | MS_NODEV, NULL) < 0)
            child_fail(err_fd, "preparing the mount namespace for runsc");
        if (c->keep_netns[0])
            detach_other_netns(c->r->netns_dir, c->keep_netns);
    }
    int in = in_fd >= 0 ? in_fd : open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in >= 0)
        dup2(in, STDIN_FILENO);
    if (dup2(out_fd, STDOUT_FILENO) < 0 || dup2(err_fd, STDERR_FILENO) < 0)
        _exit(127);
    /* Nothing of the agent's leaks into the sandbox. */
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    execvp(c->r->binary, (char *const *)c->argv);
    child_fail(STDERR_FILENO, "exec runsc");
}

static void append(char **buf, size_t *len, const char *data, size_t n, size_t max, bool *cut)
{
    if (*len + n > max) {
        n = *len < max ? max - *len : 0;
        *cut = true;
    }
    char *nb = realloc(*buf, *len + n + 1);
    if (!nb)
        abort();
    memcpy(nb + *len, data, n);
    *len += n;
    nb[*len] = '\0';
    *buf = nb;
}

static int run_cmd(cmd *c, ink_err *err)
{
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, inp[2] = {-1, -1};
    if ((c->stdout_fd < 0 && pipe2(outp, O_CLOEXEC) < 0) ||
        (c->stderr_fd < 0 && pipe2(errp, O_CLOEXEC) < 0) || (c->input && pipe2(inp, O_CLOEXEC) < 0))
        return ink_err_set(err, errno, "pipe");
    c->out = ink_xstrdup("");
    c->errout = ink_xstrdup("");
    prepare_exec(c);
    pid_t pid = fork();
    if (pid < 0)
        return ink_err_set(err, errno, "fork");
    if (pid == 0)
        child_exec(c, c->stdout_fd >= 0 ? c->stdout_fd : outp[1],
                   c->stderr_fd >= 0 ? c->stderr_fd : errp[1], inp[0]);
    if (outp[1] >= 0)
        close(outp[1]);
    if (errp[1] >= 0)
        close(errp[1]);
    if (inp[0] >= 0) {
        close(inp[0]);
        fcntl(inp[1], F_SETFL, O_NONBLOCK);
    }
    size_t input_off = 0;
    int64_t deadline = ink_mono_ms() + (c->timeout_ms > 0 ? c->timeout_ms : DEFAULT_TIMEOUT_MS);
    size_t max = c->max_output ? c->max_output : CAPTURE_MAX;
    struct pollfd pfd[3] = {{.fd = outp[0], .events = POLLIN},
                            {.fd = errp[0], .events = POLLIN},
                            {.fd = inp[1], .events = POLLOUT}};
    if (pfd[2].fd >= 0 && c->input_len == 0) {
        close(pfd[2].fd);
        pfd[2].fd = -1;
    }
    while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
        int64_t left = deadline - ink_mono_ms();
        if (left <= 0) {
            c->timed_out = true;
            kill(pid, SIGKILL);
            break;
        }
        int pr = poll(pfd, 3, (int)left);
        if (pr < 0 && errno != EINTR)
            break;
        if (pfd[2].fd >= 0 && pfd[2].revents) {
            /* The command's stdin: written as it reads, closed at the end
             * (or when it stops reading). */
            ssize_t w = pfd[2].revents & POLLOUT
                            ? write(pfd[2].fd, c->input + input_off, c->input_len - input_off)
                            : -1;
            if (w > 0)
                input_off += (size_t)w;
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || input_off == c->input_len) {
                close(pfd[2].fd);
                pfd[2].fd = -1;
            }
        }
        for (int i = 0; i < 2; i++) {
            if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[8192];
            ssize_t got = read(pfd[i].fd, buf, sizeof buf);
            if (got <= 0) {
                close(pfd[i].fd);
                pfd[i].fd = -1;
                continue;
            }
            if (i == 0)
                append(&c->out, &c->out_len, buf, (size_t)got, max, &c->truncated);
            else
                append(&c->errout, &c->err_len, buf, (size_t)got, max, &c->truncated);
        }
    }
    for (int i = 0; i < 3; i++) {
        if (pfd[i].fd >= 0)
            close(pfd[i].fd);
    }
    /* With stdio handed to the workload there is nothing to read: wait for
     * runsc itself, within the same deadline. */
    for (;;) {
        pid_t w = waitpid(pid, &c->status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            return ink_err_set(err, errno, "waitpid runsc");
        if (ink_mono_ms() >= deadline && !c->timed_out) {
            c->timed_out = true;
            kill(pid, SIGKILL);
        }
        usleep(2000);
    }
    return 0;
}

static void cmd_free(cmd *c)
{
    free(c->out);
    free(c->errout);
}

/* The last warning or error line ("W..." / "E..." in Go's text format)
 * of the newest file in runsc's --debug-log directory: where the sandbox's
 * own processes (boot, gofer) say why they ended. */
static void debug_log_error(const char *dir, char *out, size_t outlen)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    int64_t newest = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        cleanup_free char *path = ink_xasprintf("%s/%s", dir, e->d_name);
        struct stat st;
        cleanup_free char *text = NULL;
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
            (int64_t)st.st_mtime * 1000000000 + st.st_mtim.tv_nsec <= newest ||
            ink_read_file(path, 4 << 20, &text, NULL, NULL) < 0)
            continue;
        const char *last = NULL;
        for (char *line = text; line && *line;) {
            char *next = strchr(line, '\n');
            if (next)
                *next++ = '\0';
            if ((line[0] == 'W' || line[0] == 'E' || line[0] == 'F') && strchr(line, ']'))
                last = line;
            line = next;
        }
        if (last) {
            newest = (int64_t)st.st_mtime * 1000000000 + st.st_mtim.tv_nsec;
            const char *msg = strchr(last, ']') + 1;
            snprintf(out, outlen, "%s", msg + strspn(msg, " "));
        }
    }
    closedir(d);
}

/* Why runsc failed: the last error it logged (JSON lines in --log), else
 * its last warning there, else its stderr, else the last warning of the
 * sandbox's own logs. */
static void runsc_error(cmd *c, char *out, size_t outlen)
{
    out[0] = '\0';
    char warning[400] = "";
    const char *text = c->errout;
    cleanup_free char *log = NULL;
    if (c->log_path && ink_read_file(c->log_path, 4 << 20, &log, NULL, NULL) == 0) {
        char *save = NULL;
        for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            json_t *j = json_loads(line, JSON_ALLOW_NUL, NULL);
            const char *lvl = json_string_value(json_object_get(j, "level"));
            const char *msg = json_string_value(json_object_get(j, "msg"));
            if (lvl && msg && (strcmp(lvl, "error") == 0 || strcmp(lvl, "fatal") == 0))
                snprintf(out, outlen, "%s", msg);
            else if (lvl && msg && strncmp(lvl, "warn", 4) == 0)
                snprintf(warning, sizeof warning, "%s", msg);
            json_decref(j);
        }
    }
    if (!out[0] && warning[0])
        snprintf(out, outlen, "%s", warning);
    if (!out[0] && text) {
        snprintf(out, outlen, "%s", text);
        size_t n = strlen(out);
        while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
            out[--n] = '\0';
    }
    if (!out[0] && c->debug_log)
        debug_log_error(c->debug_log, out, outlen);
}

static int check_exit(cmd *c, const char *what, const char *id, ink_err *err)
{
    if (c->timed_out)
        return ink_err_set(err, ETIMEDOUT, "runsc %s %s: timed out", what, id);
    if (WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0)
        return 0;
    char msg[400];
    runsc_error(c, msg, sizeof msg);
    return ink_err_set(err, 0, "runsc %s %s failed (%s %d): %s", what, id,
                       WIFEXITED(c->status) ? "exit" : "signal",
                       WIFEXITED(c->status) ? WEXITSTATUS(c->status) : WTERMSIG(c->status),
                       msg[0] ? msg : "no message");
}

/* runsc (this version) resolves an id by prefix before looking for an
 * exact match: with "web" and "web2" both there, "web" is ambiguous. The
 * sandbox of workload <id> is "<id>.ink" — ids never hold a '.', so no
 * such name is a prefix of another. */
#define RUNSC_ID_SUFFIX ".ink"

static const char *runsc_id(cmd *c, const char *id)
{
    snprintf(c->runsc_id, sizeof c->runsc_id, "%s%s", id, RUNSC_ID_SUFFIX);
    return c->runsc_id;
}

static cmd new_cmd(const ink_runsc *r)
{
    cmd c = {.r = r, .stdout_fd = -1, .stderr_fd = -1, .timeout_ms = r->timeout_ms};
    return c;
}

/* The sandbox's own logs (runsc boot, gofer): where the app's exit status
 * is recorded. Info level only: no spec, no environment. */
static char *sandbox_log_dir(const ink_runsc *r, const char *id)
{
    return ink_xasprintf("%s/%s.logs", r->root, id);
}

int ink_runsc_run(const ink_runsc *r, const char *id, const char *bundle, int stdout_fd,
                  int stderr_fd, ink_err *err)
{
    if (!ink_valid_name(id))
        return ink_err_set(err, 0, "invalid sandbox id '%s'", id);
    cleanup_free char *log = ink_xasprintf("%s/%s.runsc.log", r->root, id);
    cleanup_free char *logs = sandbox_log_dir(r, id);
    if (ink_mkdir_p(r->root, 0700, err) < 0)
        return -1;
    unlink(log);
    ink_rmtree(logs);
    if (ink_mkdir_p(logs, 0700, err) < 0)
        return -1;
    cmd c = new_cmd(r);
    c.args[c.nargs++] = "run";
    c.args[c.nargs++] = "--detach";
    c.args[c.nargs++] = "--bundle";
    c.args[c.nargs++] = bundle;
    c.args[c.nargs++] = runsc_id(&c, id);
    c.stdout_fd = stdout_fd;
    c.stderr_fd = stderr_fd;
    c.netns_trick = r->network == INK_RUNSC_NET_SANDBOX;
    c.sandbox_id = id;
    c.log_path = log;
    c.debug_log = logs;
    int rc = run_cmd(&c, err);
    if (rc == 0)
        rc = check_exit(&c, "run", id, err);
    cmd_free(&c);
    return rc;
}

/* runsc's own answer for an unknown id (exit 128). A workload's output
 * could contain the same words, so both the status and runsc's phrasing
 * must match. */
static bool no_such_sandbox(const cmd *c)
{
    return WIFEXITED(c->status) && WEXITSTATUS(c->status) == 128 &&
           (strncmp(c->errout, "loading container", 17) == 0 ||
            strncmp(c->errout, "loading sandbox", 15) == 0) &&
           strstr(c->errout, "does not exist");
}

int ink_runsc_state(const ink_runsc *r, const char *id, ink_sandbox_state *st, ink_err *err)
{
    *st = (ink_sandbox_state){0};
    cmd c = new_cmd(r);
    c.args[c.nargs++] = "state";
    c.args[c.nargs++] = runsc_id(&c, id);
    int rc = run_cmd(&c, err);
    if (rc == 0 && !c.timed_out && WIFEXITED(c.status) && WEXITSTATUS(c.status) != 0 &&
        no_such_sandbox(&c)) {
        cmd_free(&c);
        return 0; /* INK_SANDBOX_UNKNOWN */
    }
    if (rc == 0)
        rc = check_exit(&c, "state", id, err);
    if (rc == 0) {
        json_error_t jerr;
        json_t *j = json_loads(c.out, 0, &jerr);
        const char *s = json_string_value(json_object_get(j, "status"));
        if (!s) {
            rc = ink_err_set(err, 0, "runsc state %s: unreadable output", id);
        } else {
            static const char *names[] = {"created", "running", "paused", "stopped"};
            for (size_t i = 0; i < INK_ARRAY_LEN(names); i++) {
                if (strcmp(s, names[i]) == 0)
                    st->status = (ink_sandbox_status)(i + 1);
            }
            st->pid = (int)json_integer_value(json_object_get(j, "pid"));
        }
        json_decref(j);
    }
    cmd_free(&c);
    return rc;
}

int ink_runsc_kill(const ink_runsc *r, const char *id, int signo, bool all, ink_err *err)
{
    char sig[16];
    snprintf(sig, sizeof sig, "%d", signo);
    cmd c = new_cmd(r);
    c.args[c.nargs++] = "kill";
    if (all)
        c.args[c.nargs++] = "--all";
    c.args[c.nargs++] = runsc_id(&c, id);
    c.args[c.nargs++] = sig;
    int rc = run_cmd(&c, err);
    if (rc == 0)
        rc = check_exit(&c, "kill", id, err);
    cmd_free(&c);
    return rc;
}

static int wait_not_running(const ink_runsc *r, const char *id, int64_t ms, bool *stopped,
                            ink_err *err)
{
    int64_t end = ink_mono_ms() + ms;
    for (;;) {
        ink_sandbox_state st;
        if (ink_runsc_state(r, id, &st, err) < 0)
            return -1;
        *stopped = st.status != INK_SANDBOX_RUNNING && st.status != INK_SANDBOX_PAUSED;
        if (*stopped || ink_mono_ms() >= end)
            return 0;
        usleep(50 * 1000);
    }
}

int ink_runsc_stop(const ink_runsc *r, const char *id, int64_t grace_ms, ink_err *err)
{
    bool stopped;
    if (wait_not_running(r, id, 0, &stopped, err) < 0)
        return -1;
    if (stopped)
        return 0;
    if (ink_runsc_kill(r, id, SIGTERM, true, err) < 0 ||
        wait_not_running(r, id, grace_ms, &stopped, err) < 0)
        return -1;
    if (stopped)
        return 0;
    if (ink_runsc_kill(r, id, SIGKILL, true, err) < 0 ||
        wait_not_running(r, id, 10000, &stopped, err) < 0)
        return -1;
    return stopped ? 0 : ink_err_set(err, ETIMEDOUT, "sandbox %s survived SIGKILL", id);
}

int ink_runsc_delete(const ink_runsc *r, const char *id, bool force, ink_err *err)
{
    cmd c = new_cmd(r);
    c.args[c.nargs++] = "delete";
    if (force)
        c.args[c.nargs++] = "--force";
    c.args[c.nargs++] = runsc_id(&c, id);
    int rc = run_cmd(&c, err);
    if (rc == 0 && !(WIFEXITED(c.status) && WEXITSTATUS(c.status) != 0 && no_such_sandbox(&c)))
        rc = check_exit(&c, "delete", id, err);
    cmd_free(&c);
    if (rc == 0) {
        cleanup_free char *log = ink_xasprintf("%s/%s.runsc.log", r->root, id);
        cleanup_free char *logs = sandbox_log_dir(r, id);
        unlink(log);
        ink_rmtree(logs);
    }
    return rc;
}

bool ink_runsc_known(const ink_runsc *r, const char *id)
{
    DIR *d = opendir(r->root);
    if (!d)
        return errno != ENOENT; /* unreadable: assume it may */
    char prefix[96];
    int plen = snprintf(prefix, sizeof prefix, "%s%s", id, RUNSC_ID_SUFFIX);
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        /* "<id>.ink_sandbox:<id>.ink.state", "<id>.ink.runsc.log", ... */
        found = strncmp(e->d_name, prefix, (size_t)plen) == 0 &&
                (e->d_name[plen] == '_' || e->d_name[plen] == '.');
        /* the log files are named by the workload id alone */
        found = found || (strncmp(e->d_name, id, strlen(id)) == 0 &&
                          (strcmp(e->d_name + strlen(id), ".runsc.log") == 0 ||
                           strcmp(e->d_name + strlen(id), ".logs") == 0));
    }
    closedir(d);
    return found;
}

int ink_runsc_exit_status(const ink_runsc *r, const char *id)
{
    cleanup_free char *dir = sandbox_log_dir(r, id);
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int status = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 9 || strcmp(e->d_name + len - 9, ".boot.txt") != 0)
            continue;
        cleanup_free char *path = ink_xasprintf("%s/%s", dir, e->d_name);
        cleanup_free char *text = NULL;
        if (ink_read_file(path, 16 << 20, &text, NULL, NULL) < 0)
            continue;
        static const char exited[] = "application exiting with exit status ";
        static const char killed[] = "application exiting with killed by signal ";
        const char *p;
        if ((p = strstr(text, exited)))
            status = atoi(p + sizeof exited - 1);
        else if ((p = strstr(text, killed)))
            status = 128 + atoi(p + sizeof killed - 1);
    }
    closedir(d);
    return status;
}

int ink_runsc_stats(const ink_runsc *r, const char *id, ink_sandbox_stats *st, ink_err *err)
{
    *st = (ink_sandbox_stats){0};
    cmd c = new_cmd(r);
    c.args[c.nargs++] = "events";
    c.args[c.nargs++] = "--stats";
    c.args[c.nargs++] = runsc_id(&c, id);
    int rc = run_cmd(&c, err);
    if (rc == 0)
        rc = check_exit(&c, "events --stats", id, err);
    if (rc == 0) {
        json_t *j = json_loads(c.out, JSON_DISABLE_EOF_CHECK, NULL);
        json_t *data = json_object_get(j, "data");
        if (!data) {
            rc = ink_err_set(err, 0, "runsc events --stats %s: unreadable output", id);
        } else {
            st->cpu_ns = (uint64_t)json_integer_value(
                json_object_get(json_object_get(json_object_get(data, "cpu"), "usage"), "total"));
            st->memory_bytes = (uint64_t)json_integer_value(json_object_get(
                json_object_get(json_object_get(data, "memory"), "usage"), "usage"));
            st->pids = (uint32_t)json_integer_value(
                json_object_get(json_object_get(data, "pids"), "current"));
        }
        json_decref(j);
    }
    cmd_free(&c);
    return rc;
}

int ink_runsc_exec(const ink_runsc *r, const char *id, char *const argv[], int64_t timeout_ms,
                   size_t max_output, ink_exec_result *res, ink_err *err)
{
    return ink_runsc_exec_input(r, id, argv, NULL, 0, timeout_ms, max_output, res, err);
}

int ink_runsc_exec_input(const ink_runsc *r, const char *id, char *const argv[], const void *input,
                         size_t input_len, int64_t timeout_ms, size_t max_output,
                         ink_exec_result *res, ink_err *err)
{
    *res = (ink_exec_result){0};
    if (!argv || !argv[0])
        return ink_err_set(err, 0, "exec: empty command");
    cmd c = new_cmd(r);
    c.args[c.nargs++] = "exec";
    c.args[c.nargs++] = runsc_id(&c, id);
    c.extra = argv;
    c.input = input;
    c.input_len = input ? input_len : 0;
    c.timeout_ms = timeout_ms;
    c.max_output = max_output;
    int rc = run_cmd(&c, err);
    if (rc == 0 && !c.timed_out && no_such_sandbox(&c))
        rc = ink_err_set(err, ENOENT, "exec: no sandbox '%s'", id);
    if (rc == 0) {
        res->timed_out = c.timed_out;
        res->truncated = c.truncated;
        res->exit_code = c.timed_out           ? -1
                         : WIFEXITED(c.status) ? WEXITSTATUS(c.status)
                                               : 128 + WTERMSIG(c.status);
        res->out = INK_STEAL(c.out);
        res->out_len = c.out_len;
        res->errout = INK_STEAL(c.errout);
        res->err_len = c.err_len;
    }
    cmd_free(&c);
    return rc;
}

void ink_exec_result_free(ink_exec_result *res)
{
    free(res->out);
    free(res->errout);
    *res = (ink_exec_result){0};
}

int ink_runsc_wait_start(const ink_runsc *r, const char *id, ink_runsc_waiter *w, ink_err *err)
{
    *w = (ink_runsc_waiter){.pid = -1, .fd = -1};
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return ink_err_set(err, errno, "pipe");
    cmd c = new_cmd(r);
    c.args[c.nargs++] = "wait";
    c.args[c.nargs++] = runsc_id(&c, id);
    prepare_exec(&c);
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        if (devnull >= 0)
            close(devnull);
        return ink_err_set(err, e, "fork");
    }
    if (pid == 0)
        child_exec(&c, p[1], devnull >= 0 ? devnull : p[1], -1);
    if (devnull >= 0)
        close(devnull);
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    w->pid = pid;
    w->fd = p[0];
    return 0;
}

int ink_runsc_wait_collect(ink_runsc_waiter *w, int *exit_status)
{
    if (w->pid <= 0)
        return -1;
    for (;;) {
        ssize_t n = read(w->fd, w->out + w->len, sizeof w->out - 1 - w->len);
        if (n > 0) {
            w->len += (size_t)n;
            if (w->len < sizeof w->out - 1)
                continue;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return 0; /* still waiting */
        }
        break;
    }
    /* EOF (or a full buffer): runsc wait is done. */
    int status;
    while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR)
        ;
    close(w->fd);
    w->out[w->len] = '\0';
    json_t *j = json_loads(w->out, JSON_DISABLE_EOF_CHECK, NULL);
    json_t *es = json_object_get(j, "exitStatus");
    *exit_status =
        es && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? (int)json_integer_value(es) : -1;
    json_decref(j);
    *w = (ink_runsc_waiter){.pid = -1, .fd = -1};
    return 1;
}

void ink_runsc_wait_cancel(ink_runsc_waiter *w)
{
    if (w->pid <= 0)
        return;
    kill(w->pid, SIGKILL);
    while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    close(w->fd);
    *w = (ink_runsc_waiter){.pid = -1, .fd = -1};
}

int ink_runsc_list(const ink_runsc *r, char ***ids, size_t *n, ink_err *err)
{
    *ids = NULL;
    *n = 0;
    cmd c = new_cmd(r);
    c.args[c.nargs++] = "list";
    c.args[c.nargs++] = "--format=json";
    int rc = run_cmd(&c, err);
    if (rc == 0)
        rc = check_exit(&c, "list", "", err);
    if (rc == 0) {
        json_t *j = json_loads(c.out, JSON_DISABLE_EOF_CHECK, NULL);
        if (!json_is_array(j) && !json_is_null(j) && strcmp(c.out, "null\n") != 0) {
            rc = ink_err_set(err, 0, "runsc list: unreadable output");
        } else {
            size_t i;
            json_t *v;
            *ids = ink_xcalloc(json_array_size(j) + 1, sizeof **ids);
            json_array_foreach(j, i, v)
            {
                const char *id = json_string_value(json_object_get(v, "id"));
                size_t len = id ? strlen(id) : 0, slen = strlen(RUNSC_ID_SUFFIX);
                if (len > slen && strcmp(id + len - slen, RUNSC_ID_SUFFIX) == 0)
                    (*ids)[(*n)++] = ink_xasprintf("%.*s", (int)(len - slen), id);
            }
        }
        json_decref(j);
    }
    cmd_free(&c);
    return rc;
}
