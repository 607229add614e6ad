/* ink-unpack: extracts one OCI layer for ink-agent (unpack_spawn.c starts
 * it). It is a program of its own so that extraction starts in a fresh
 * process image: the agent's other threads may hold locks (malloc, stdio,
 * the logger) at the moment it forks, and only an exec gets rid of them.
 * The descriptors arrive already open, by number (see ink_unpack_job);
 * the helper opens nothing outside the destination itself. It confines
 * itself (ink_unpack_confine), extracts, writes one ink_unpack_report to
 * the report descriptor and exits: 0 when the layer is in place, 1 when it
 * failed, 2 when it could not even report. It never returns through exit()
 * handlers: under the seccomp filter they could make a forbidden call
 * (LeakSanitizer, for one, starts a tracer thread). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "unpack_internal.h"

static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* A descriptor number we were given, open and of the expected type. */
static int parse_fd(const char *name, const char *s, mode_t type, int *out, ink_err *err)
{
    uint64_t v;
    if (parse_u64(s, &v) < 0 || v < 3 || v > INT32_MAX)
        return ink_err_set(err, 0, "%s: bad descriptor \"%s\"", name, s ? s : "");
    struct stat st;
    if (fstat((int)v, &st) < 0)
        return ink_err_set(err, errno, "%s %d", name, (int)v);
    if ((st.st_mode & S_IFMT) != type)
        return ink_err_set(err, 0, "%s %d: wrong file type", name, (int)v);
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, ink_unpack_job *job, ink_err *err)
{
    *job = (ink_unpack_job){.layer_fd = -1, .dest_fd = -1, .report_fd = -1};
    uint64_t parent = 0;
    unsigned seen = 0;
    for (int i = 1; i < argc; i += 2) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return ink_err_set(err, 0, "%s: missing value", k);
        int rc = 0;
        unsigned bit;
        if (strcmp(k, "--layer-fd") == 0) {
            bit = 1u << 0;
            rc = parse_fd(k, v, S_IFREG, &job->layer_fd, err);
        } else if (strcmp(k, "--dest-fd") == 0) {
            bit = 1u << 1;
            rc = parse_fd(k, v, S_IFDIR, &job->dest_fd, err);
        } else if (strcmp(k, "--report-fd") == 0) {
            bit = 1u << 2;
            rc = parse_fd(k, v, S_IFIFO, &job->report_fd, err);
        } else if (strcmp(k, "--media-type") == 0) {
            bit = 1u << 3;
            job->media_type = v;
        } else if (strcmp(k, "--parent") == 0) {
            bit = 1u << 4;
            if (parse_u64(v, &parent) < 0 || parent < 1 || parent > INT32_MAX)
                rc = ink_err_set(err, 0, "%s: bad pid \"%s\"", k, v);
        } else if (strcmp(k, "--max-bytes") == 0) {
            bit = 1u << 5;
            rc = parse_u64(v, &job->max_bytes);
        } else if (strcmp(k, "--bytes-before") == 0) {
            bit = 1u << 6;
            rc = parse_u64(v, &job->bytes_before);
        } else if (strcmp(k, "--max-entries") == 0) {
            bit = 1u << 7;
            rc = parse_u64(v, &job->max_entries);
        } else if (strcmp(k, "--entries-before") == 0) {
            bit = 1u << 8;
            rc = parse_u64(v, &job->entries_before);
        } else {
            return ink_err_set(err, 0, "unknown option %s", k);
        }
        if (rc < 0)
            return err->msg[0] ? -1 : ink_err_set(err, 0, "%s: bad number \"%s\"", k, v);
        seen |= bit;
    }
    if (seen != (1u << 9) - 1)
        return ink_err_set(err, 0, "missing options (given: 0x%x)", seen);
    job->parent = (pid_t)parent;
    return 0;
}

/* The report descriptor from argv, before (or without) a full parse: an
 * argument error is still reported to the agent when it can be. */
static int find_report_fd(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        uint64_t v;
        struct stat st;
        if (strcmp(argv[i], "--report-fd") == 0 && parse_u64(argv[i + 1], &v) == 0 && v >= 3 &&
            v <= INT32_MAX && fstat((int)v, &st) == 0 && S_ISFIFO(st.st_mode))
            return (int)v;
    }
    return -1;
}

static _Noreturn void report(int fd, int failed, const ink_err *err, uint64_t bytes,
                             uint64_t entries)
{
    ink_unpack_report rep = {
        .magic = INK_UNPACK_REPORT_MAGIC,
        .failed = failed,
        .errnum = failed ? err->errnum : 0,
        .bytes = bytes,
        .entries = entries,
    };
    if (failed)
        snprintf(rep.msg, sizeof rep.msg, "%s", err->msg);
    if (fd < 0 || write(fd, &rep, sizeof rep) != (ssize_t)sizeof rep)
        _exit(2);
    _exit(failed ? 1 : 0);
}

int main(int argc, char **argv)
{
    ink_err err = {0};
    ink_unpack_job job;
    if (parse_args(argc, argv, &job, &err) < 0) {
        /* Only ink-agent runs this; a person who does gets the reason. */
        fprintf(stderr, "%s: %s\n", INK_UNPACK_HELPER_NAME, err.msg);
        fflush(stderr);
        report(find_report_fd(argc, argv), 1, &err, 0, 0);
    }
    uint64_t bytes = 0, entries = 0;
    int rc = ink_unpack_run(&job, &bytes, &entries, &err);
    report(job.report_fd, rc < 0, &err, bytes, entries);
}
