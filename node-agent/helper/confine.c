/* Helper processes, the helper's side: see helper.h. */
#include "helper.h"

#include <errno.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "util.h"

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int ink_helper_close_fds(const int *keep, size_t nkeep, ink_err *err)
{
    int sorted[16];
    if (nkeep > INK_ARRAY_LEN(sorted))
        return ink_err_set(err, EINVAL, "too many descriptors to keep");
    if (nkeep > 0)
        memcpy(sorted, keep, nkeep * sizeof *keep);
    qsort(sorted, nkeep, sizeof *sorted, cmp_int);
    unsigned lo = 3;
    for (size_t i = 0; i <= nkeep; i++) {
        if (i < nkeep && (sorted[i] < 3 || (unsigned)sorted[i] < lo))
            continue;
        unsigned hi = i < nkeep ? (unsigned)sorted[i] : ~0U;
        if (hi > lo && close_range(lo, hi - 1, 0) < 0) {
            if (errno != ENOSYS)
                return ink_err_set(err, errno, "close_range");
            /* Kernels before 5.9. */
            struct rlimit rl;
            unsigned top = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (1U << 20)
                               ? (unsigned)rl.rlim_cur
                               : (1U << 20);
            for (unsigned fd = lo; fd < hi && fd < top; fd++)
                close((int)fd);
        }
        if (i < nkeep)
            lo = (unsigned)sorted[i] + 1;
    }
    return 0;
}

int ink_helper_seccomp(const char *const *allowed, size_t nallowed, ink_seccomp_rules_fn add_rules,
                       ink_err *err)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!ctx)
        return ink_err_set(err, 0, "seccomp_init failed");
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    const char *what = "bad-arch action";
    for (size_t i = 0; rc == 0 && i < nallowed; i++) {
        int nr = seccomp_syscall_resolve_name(allowed[i]);
        what = allowed[i];
        if (nr != __NR_SCMP_ERROR)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    }
    if (rc == 0) {
        what = "mmap";
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    }
    if (rc == 0) {
        what = "mprotect";
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    }
    if (rc == 0 && add_rules)
        rc = add_rules(ctx, &what);
    if (rc == 0) {
        what = "loading the filter";
        rc = seccomp_load(ctx);
    }
    seccomp_release(ctx);
    if (rc < 0)
        return ink_err_set(err, -rc, "seccomp: %s", what);
    return 0;
}
