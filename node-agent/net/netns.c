/* Named network namespaces: a namespace is kept alive by bind-mounting its
 * nsfs file on dir/<name>, as `ip netns add` does under /run/netns. Work
 * inside a namespace happens on a short-lived thread that entered it, so no
 * thread of the agent ever changes namespace for good. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "net.h"
#include "util.h"

typedef struct thread_call {
    int nsfd; /* enter this namespace; -1: a new one */
    ink_netns_fn fn;
    void *arg;
    int rc;
    ink_err err;
} thread_call;

static void *thread_main(void *p)
{
    thread_call *c = p;
    int r = c->nsfd >= 0 ? setns(c->nsfd, CLONE_NEWNET) : unshare(CLONE_NEWNET);
    if (r < 0)
        c->rc = ink_err_set(&c->err, errno,
                            c->nsfd >= 0 ? "entering the network namespace"
                                         : "creating a network namespace");
    else
        c->rc = c->fn(c->arg, &c->err);
    return NULL;
}

static int run_thread(thread_call *c, ink_err *err)
{
    pthread_t t;
    int e = pthread_create(&t, NULL, thread_main, c);
    if (e)
        return ink_err_set(err, e, "starting a network namespace thread");
    pthread_join(t, NULL);
    if (c->rc < 0 && err)
        *err = c->err;
    return c->rc < 0 ? -1 : c->rc;
}

int ink_netns_run(const char *path, ink_netns_fn fn, void *arg, ink_err *err)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ink_err_set(err, errno, "open network namespace %s", path);
    thread_call c = {.nsfd = fd, .fn = fn, .arg = arg};
    if (run_thread(&c, err) < 0)
        return ink_err_wrap(err, "in network namespace %s", path);
    return c.rc;
}

int ink_netns_mounted(const char *path, ink_err *err)
{
    struct statfs sfs;
    if (statfs(path, &sfs) < 0) {
        if (errno == ENOENT)
            return 0;
        return ink_err_set(err, errno, "statfs %s", path);
    }
    if (sfs.f_type != NSFS_MAGIC)
        return 0; /* the bare file: not mounted (or a crash before the mount) */
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ink_err_set(err, errno, "open %s", path);
    int type = ioctl(fd, NS_GET_NSTYPE);
    if (type < 0)
        return ink_err_set(err, errno, "namespace type of %s", path);
    if (type != CLONE_NEWNET)
        return ink_err_set(err, EEXIST, "%s is a namespace, but not a network namespace", path);
    return 1;
}

/* Mounts under dir propagate to the other mount namespaces that share it
 * (iproute2 does the same with /run/netns): dir becomes a mount point of
 * its own, marked shared. */
static int prepare_dir(const char *dir, ink_err *err)
{
    if (ink_mkdir_p(dir, 0755, err) < 0)
        return -1;
    if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) == 0)
        return 0;
    if (errno != EINVAL) /* EINVAL: not a mount point yet */
        return ink_err_set(err, errno, "making %s a shared mount", dir);
    if (mount(dir, dir, "none", MS_BIND | MS_REC, NULL) < 0)
        return ink_err_set(err, errno, "bind-mounting %s on itself", dir);
    if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) < 0)
        return ink_err_set(err, errno, "making %s a shared mount", dir);
    return 0;
}

/* Runs on a thread that has just unshared a new network namespace. */
static int mount_new_ns(void *arg, ink_err *err)
{
    const char *path = arg;
    if (mount("/proc/thread-self/ns/net", path, "none", MS_BIND, NULL) < 0)
        return ink_err_set(err, errno, "bind-mounting the new network namespace on %s", path);
    return 0;
}

static char *ns_path(const char *dir, const char *name, ink_err *err)
{
    if (!ink_net_valid_workload_id(name)) {
        ink_err_set(err, EINVAL, "invalid network namespace name \"%.64s\"", name ? name : "");
        return NULL;
    }
    return ink_xasprintf("%s/%s", dir, name);
}

int ink_netns_create(const char *dir, const char *name, char **path, ink_err *err)
{
    cleanup_free char *p = ns_path(dir, name, err);
    if (!p)
        return -1;
    int m = ink_netns_mounted(p, err);
    if (m < 0)
        return -1;
    if (m == 0) {
        if (prepare_dir(dir, err) < 0)
            return ink_err_wrap(err, "network namespace directory");
        /* The file may exist already: left by a crash before the mount. */
        int fd = open(p, O_RDONLY | O_CREAT | O_CLOEXEC, 0444);
        if (fd < 0)
            return ink_err_set(err, errno, "create %s", p);
        close(fd);
        thread_call c = {.nsfd = -1, .fn = mount_new_ns, .arg = p};
        if (run_thread(&c, err) < 0) {
            unlink(p);
            return -1;
        }
    }
    if (path)
        *path = INK_STEAL(p);
    return 0;
}

int ink_netns_delete(const char *dir, const char *name, ink_err *err)
{
    cleanup_free char *p = ns_path(dir, name, err);
    if (!p)
        return -1;
    /* More than one mount can be stacked there (two `ip netns add`-style
     * creations racing); take them all off. */
    for (int i = 0; i < 64; i++) {
        if (umount2(p, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
            continue;
        if (errno == EINVAL || errno == ENOENT)
            break;
        return ink_err_set(err, errno, "unmount %s", p);
    }
    if (unlink(p) < 0 && errno != ENOENT)
        return ink_err_set(err, errno, "remove %s", p);
    return 0;
}
