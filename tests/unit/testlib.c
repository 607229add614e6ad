#include "testlib.h"

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pki.h"
#include "util.h"

int test_mkdtemp(char *out, size_t outlen, const char *tag)
{
    snprintf(out, outlen, "/tmp/ink-test-%s-XXXXXX", tag);
    return mkdtemp(out) ? 0 : -1;
}

int test_rmtree(const char *path)
{
    return ink_rmtree(path);
}

int test_scratch_setup(void **state)
{
    test_scratch *f = calloc(1, sizeof *f);
    if (!f || test_mkdtemp(f->dir, sizeof f->dir, "scratch") < 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

int test_scratch_teardown(void **state)
{
    test_scratch *f = *state;
    test_rmtree(f->dir);
    free(f);
    return 0;
}

static void must(int rc, const ink_err *err)
{
    if (rc < 0) {
        fprintf(stderr, "test PKI: %s\n", err->msg);
        abort();
    }
}

void test_pki_create(test_pki *p, const char *tag)
{
    ink_err err = {0};
    if (test_mkdtemp(p->dir, sizeof p->dir, tag) < 0)
        abort();
    char pki[160], foreign[160];
    snprintf(pki, sizeof pki, "%s/pki", p->dir);
    snprintf(foreign, sizeof foreign, "%s/foreign", p->dir);
    const char *sans[] = {"localhost", "127.0.0.1"};
    must(ink_pki_init_ca(pki, 30, &err), &err);
    must(ink_pki_issue(pki, INK_COORDINATOR_NAME, INK_ROLE_COORDINATOR, sans, 2, 30, pki, &err),
         &err);
    must(ink_pki_issue(pki, "n1", INK_ROLE_NODE, sans, 2, 30, pki, &err), &err);
    must(ink_pki_issue(pki, "n2", INK_ROLE_NODE, sans, 2, 30, pki, &err), &err);
    must(ink_pki_init_ca(foreign, 30, &err), &err);
    must(ink_pki_issue(foreign, "n1", INK_ROLE_NODE, sans, 2, 30, foreign, &err), &err);
    snprintf(p->ca, sizeof p->ca, "%s/ca.crt", pki);
    snprintf(p->coord_crt, sizeof p->coord_crt, "%s/ink-coordinator.crt", pki);
    snprintf(p->coord_key, sizeof p->coord_key, "%s/ink-coordinator.key", pki);
    snprintf(p->node_crt, sizeof p->node_crt, "%s/n1.crt", pki);
    snprintf(p->node_key, sizeof p->node_key, "%s/n1.key", pki);
    snprintf(p->node2_crt, sizeof p->node2_crt, "%s/n2.crt", pki);
    snprintf(p->node2_key, sizeof p->node2_key, "%s/n2.key", pki);
    snprintf(p->foreign_ca, sizeof p->foreign_ca, "%s/ca.crt", foreign);
    snprintf(p->foreign_crt, sizeof p->foreign_crt, "%s/n1.crt", foreign);
    snprintf(p->foreign_key, sizeof p->foreign_key, "%s/n1.key", foreign);
}

void test_pki_destroy(test_pki *p)
{
    test_rmtree(p->dir);
}

void test_block_sigpipe(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

char *test_requote(const char *s)
{
    char *out = ink_xstrdup(s);
    for (char *p = out; *p; p++)
        if (*p == '\'')
            *p = '"';
    return out;
}

int test_lo_up(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    int rc = fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0 ? -1 : 0;
    ifr.ifr_flags |= IFF_UP;
    if (rc == 0)
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    if (fd >= 0)
        close(fd);
    return rc;
}
