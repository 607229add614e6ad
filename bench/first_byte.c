/* bench/first_byte: times "commands that wake an app, then an HTTP request
 * to it" with CLOCK_MONOTONIC, for bench/sleep_tiers.sh.
 *
 *   first_byte [--netns PATH] [--early] [--hold MS] [--timeout MS]
 *              HOST:PORT|- [CMD [ARG...] [';' CMD [ARG...]]...]
 *
 * t0 is taken just before the first command. The commands run one after
 * the other (stdout goes to stderr; one that fails ends the run), then the
 * client connects to HOST:PORT (a refused connection is tried again every
 * millisecond until the timeout), sends "GET / HTTP/1.0" and waits for the
 * first byte of the answer. With --early the SYN leaves first (to an app
 * still asleep; the request follows as soon as the handshake completes),
 * the commands run --hold MS later, and t0 is the connect; the connection
 * is not tried again (SYN retransmits are the kernel's: see retrans).
 * The socket is made in the network namespace PATH (the commands run in
 * ours). HOST:PORT "-" only times the commands.
 *
 * A command whose first word is "@netstack=KEEP" runs the rest in a
 * private mount namespace with a tmpfs over /proc/sys/net and every other
 * network-namespace mount but KEEP detached: what ink-agent does before
 * it execs runsc --network=sandbox (node-agent/runtime/runsc.c). A command
 * "@write=FILE VALUE" writes VALUE to FILE in this process (a cgroup
 * freezer, as an agent would thaw it). The timeout (default 10 s) covers
 * the commands too: one still running then is killed and the run fails.
 *
 * Prints one line, times in ms since t0 (cmdN: that command's duration):
 *   cmd1=D ... cmds=T connect=C first_byte=F status=S attempts=N retrans=R
 * connect and first_byte are -1 when the timeout passed first.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CMDS 16
#define NETSTACK "@netstack="
#define WRITE "@write="

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double ms_since(int64_t t0, int64_t t)
{
    return (double)(t - t0) / 1e6;
}

static void usage(void)
{
    fprintf(stderr, "usage: first_byte [--netns PATH] [--early] [--hold MS] [--timeout MS] "
                    "HOST:PORT|- [CMD [ARG...] [';' CMD [ARG...]]...]\n");
    exit(2);
}

static void die(const char *what)
{
    fprintf(stderr, "first_byte: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ------------------------------------------------------------ commands */

/* In the child, before exec: detaches every nsfs mount but keep (the
 * copies in this new mount namespace would pin other namespaces). */
static void detach_other_netns(const char *keep)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return;
    char line[4096], points[64][512];
    int n = 0;
    while (n < 64 && fgets(line, sizeof line, f)) {
        /* "id parent maj:min root mount-point opts [optional...] - fstype ..." */
        char point[512], *sep = strstr(line, " - ");
        if (!sep || strncmp(sep + 3, "nsfs ", 5) != 0 ||
            sscanf(line, "%*s %*s %*s %*s %511s", point) != 1)
            continue;
        if (strcmp(point, keep) != 0)
            snprintf(points[n++], sizeof points[0], "%s", point);
    }
    fclose(f);
    for (int i = 0; i < n; i++)
        umount2(points[i], MNT_DETACH);
}

static void exec_child(char **argv)
{
    if (strncmp(argv[0], NETSTACK, strlen(NETSTACK)) == 0) {
        const char *keep = argv[0] + strlen(NETSTACK);
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", "/proc/sys/net", "tmpfs", MS_NOSUID | MS_NODEV, NULL) < 0)
            die("preparing the mount namespace for runsc");
        detach_other_netns(keep);
        argv++;
    }
    if (!argv[0])
        _exit(127);
    dup2(STDERR_FILENO, STDOUT_FILENO);
    execvp(argv[0], argv);
    fprintf(stderr, "first_byte: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static void on_alarm(int sig)
{
    (void)sig; /* only interrupts waitpid */
}

/* "@write=PATH VALUE": written here, as an agent would (no process). */
static void write_file(char **argv)
{
    const char *path = argv[0] + strlen(WRITE);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || !argv[1] || write(fd, argv[1], strlen(argv[1])) != (ssize_t)strlen(argv[1]))
        die(path);
    close(fd);
}

/* Runs one command to its end; past the deadline it is killed and the
 * run fails. */
static void run_cmd(char **argv, int64_t deadline)
{
    if (strncmp(argv[0], WRITE, strlen(WRITE)) == 0) {
        write_file(argv);
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0)
        exec_child(argv);
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    int64_t left = deadline - now_ns();
    struct itimerval it = {.it_value = {.tv_sec = left > 0 ? left / 1000000000 : 0,
                                        .tv_usec = left > 0 ? left % 1000000000 / 1000 + 1 : 1}};
    setitimer(ITIMER_REAL, &it, NULL);
    int status;
    bool killed = false;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            die("waitpid");
        if (!killed && now_ns() >= deadline) {
            kill(pid, SIGKILL);
            killed = true;
        }
    }
    setitimer(ITIMER_REAL, &(struct itimerval){0}, NULL);
    const char *name = argv[0];
    if (strncmp(name, NETSTACK, strlen(NETSTACK)) == 0 && argv[1])
        name = argv[1];
    if (killed) {
        fprintf(stderr, "first_byte: %s killed at the timeout\n", name);
        exit(1);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "first_byte: %s %s %d\n", name, WIFEXITED(status) ? "exited" : "killed by",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        exit(1);
    }
}

/* -------------------------------------------------------------- client */

typedef struct client {
    struct sockaddr_in addr;
    int netns;  /* -1: ours */
    int own_ns; /* our namespace, to come back to */
    int fd;
    int attempts;
    int64_t connected, first_byte;
    int status;
    unsigned retrans;
} client;

static int new_socket(client *c)
{
    if (c->netns >= 0 && setns(c->netns, CLONE_NEWNET) < 0)
        die("setns to the client's namespace");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int e = errno;
    if (c->netns >= 0 && setns(c->own_ns, CLONE_NEWNET) < 0)
        die("setns back");
    errno = e;
    if (fd < 0)
        die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Starts a connection attempt: 0 when it completed or is under way. */
static int start_connect(client *c)
{
    c->fd = new_socket(c);
    c->attempts++;
    if (connect(c->fd, (struct sockaddr *)&c->addr, sizeof c->addr) == 0 || errno == EINPROGRESS)
        return 0;
    return -1;
}

/* Waits for fd to be ready for events until deadline: 1 ready, 0 timeout. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ns();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)((left + 999999) / 1000000));
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            die("poll");
    }
}

/* The connection being set up is complete: 1 connected, 0 refused or
 * unreachable (try again), -1 timeout. */
static int finish_connect(client *c, int64_t deadline)
{
    if (!wait_fd(c->fd, POLLOUT, deadline))
        return -1;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (soerr == 0)
        return 1;
    if (soerr != ECONNREFUSED && soerr != EHOSTUNREACH && soerr != ENETUNREACH &&
        soerr != ECONNRESET) {
        errno = soerr;
        die("connect");
    }
    return 0;
}

static void send_request(client *c, const char *host)
{
    char req[256];
    int n = snprintf(req, sizeof req, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", host);
    if (send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        die("send");
}

/* Reads the answer's first byte (timestamped) and its status line. */
static void read_answer(client *c, int64_t deadline)
{
    char buf[64];
    size_t have = 0;
    while (have < 12) {
        if (!wait_fd(c->fd, POLLIN, deadline))
            return;
        ssize_t r = recv(c->fd, buf + have, sizeof buf - 1 - have, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r <= 0)
            break;
        if (have == 0)
            c->first_byte = now_ns();
        have += (size_t)r;
    }
    buf[have] = '\0';
    if (have >= 12 && strncmp(buf, "HTTP/1.", 7) == 0)
        c->status = atoi(buf + 9);
}

static void tcp_retrans(client *c)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0)
        c->retrans = ti.tcpi_total_retrans;
}

int main(int argc, char **argv)
{
    const char *netns = NULL;
    bool early = false;
    long hold_ms = 0, timeout_ms = 10000;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--early") == 0)
            early = true;
        else if (strcmp(argv[i], "--netns") == 0 && i + 1 < argc)
            netns = argv[++i];
        else if (strcmp(argv[i], "--hold") == 0 && i + 1 < argc)
            hold_ms = atol(argv[++i]);
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout_ms = atol(argv[++i]);
        else
            usage();
    }
    if (i >= argc)
        usage();
    const char *target = argv[i++];
    bool request = strcmp(target, "-") != 0;
    char host[64] = "";
    client c = {.netns = -1, .own_ns = -1, .fd = -1, .status = 0};
    if (request) {
        const char *colon = strrchr(target, ':');
        if (!colon || colon - target >= (long)sizeof host)
            usage();
        memcpy(host, target, (size_t)(colon - target));
        host[colon - target] = '\0';
        c.addr.sin_family = AF_INET;
        c.addr.sin_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET, host, &c.addr.sin_addr) != 1)
            usage();
    }
    if (netns) {
        c.netns = open(netns, O_RDONLY | O_CLOEXEC);
        c.own_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (c.netns < 0 || c.own_ns < 0)
            die(netns);
    }
    /* The commands: argv[i..] split at lone ";" arguments, in place. */
    char **cmds[MAX_CMDS];
    int ncmds = 0;
    for (int start = i; start < argc;) {
        int end = start;
        while (end < argc && strcmp(argv[end], ";") != 0)
            end++;
        if (end > start) {
            if (ncmds == MAX_CMDS)
                usage();
            cmds[ncmds++] = &argv[start];
        }
        if (end < argc)
            argv[end] = NULL;
        start = end + 1;
    }

    int64_t t0 = now_ns(), deadline = t0 + (int64_t)timeout_ms * 1000000;
    bool up = false, refused = false;
    if (request && early) {
        /* The SYN leaves now; the request follows once the handshake is
         * done, which may be only after the commands. */
        if (start_connect(&c) < 0)
            die("connect");
        int64_t hold_end = t0 + (int64_t)hold_ms * 1000000;
        if (wait_fd(c.fd, POLLOUT, hold_end)) {
            if (finish_connect(&c, hold_end) > 0) {
                c.connected = now_ns();
                up = true;
                send_request(&c, host);
            } else {
                /* Refused: the commands still run (the app must not stay
                 * asleep), the answer is status=0. */
                fprintf(stderr, "first_byte: the early connection was refused\n");
                close(c.fd);
                c.fd = -1;
                refused = true;
            }
        }
        int64_t left = hold_end - now_ns();
        if (left > 0) {
            struct timespec ts = {.tv_sec = left / 1000000000, .tv_nsec = left % 1000000000};
            nanosleep(&ts, NULL);
        }
    }
    double durations[MAX_CMDS];
    int64_t cmds_end = now_ns();
    for (int k = 0; k < ncmds; k++) {
        int64_t s = now_ns();
        run_cmd(cmds[k], deadline);
        cmds_end = now_ns();
        durations[k] = ms_since(s, cmds_end);
    }
    if (request && !up && !refused) {
        for (;;) {
            if (c.fd < 0 && start_connect(&c) < 0) {
                if (errno != ECONNREFUSED && errno != EHOSTUNREACH && errno != ENETUNREACH)
                    die("connect");
            } else {
                int r = finish_connect(&c, deadline);
                if (r < 0)
                    break;
                if (r > 0) {
                    c.connected = now_ns();
                    up = true;
                    send_request(&c, host);
                    break;
                }
                if (early)
                    break; /* the one early attempt was refused */
            }
            close(c.fd);
            c.fd = -1;
            if (now_ns() >= deadline)
                break;
            usleep(1000);
        }
    }
    if (up) {
        read_answer(&c, deadline);
        tcp_retrans(&c);
    }
    for (int k = 0; k < ncmds; k++)
        printf("cmd%d=%.3f ", k + 1, durations[k]);
    printf("cmds=%.3f", ms_since(t0, cmds_end));
    if (request)
        printf(" connect=%.3f first_byte=%.3f status=%d attempts=%d retrans=%u",
               c.connected ? ms_since(t0, c.connected) : -1.0,
               c.first_byte ? ms_since(t0, c.first_byte) : -1.0, c.status, c.attempts, c.retrans);
    printf("\n");
    if (c.fd >= 0)
        close(c.fd);
    return request && c.status == 0 ? 3 : 0;
}
