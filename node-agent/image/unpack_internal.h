/* Internals of layer unpacking, shared by the agent side (unpack_spawn.c),
 * the ink-unpack helper (unpack_helper.c, unpack.c) and the unit tests. */
#ifndef INK_UNPACK_INTERNAL_H
#define INK_UNPACK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* Deepest path (in components) a layer may create or a whiteout may walk. */
#define INK_UNPACK_MAX_DEPTH 256

/* The helper's file name, installed in libexec/ink and built next to
 * ink-agent. */
#define INK_UNPACK_HELPER_NAME "ink-unpack"

/* Normalises a path from a layer: drops "." and empty components and a
 * trailing '/'. Refuses absolute paths, ".." components, names of PATH_MAX
 * bytes or more and paths deeper than INK_UNPACK_MAX_DEPTH. out (at least
 * PATH_MAX bytes) gets "" for the root itself. */
int ink_unpack_clean_path(const char *name, char *out, size_t outlen, ink_err *err);

/* Confines the calling process the way the extraction helper is confined:
 * chroot into the directory open at root_fd (and chdir "/"), close every
 * descriptor but 0, 1, 2 and keep_fds, make the process non-dumpable, keep
 * only CAP_CHOWN, CAP_FOWNER and CAP_DAC_OVERRIDE (effective and
 * permitted; inheritable, ambient and the rest of the bounding set
 * cleared), set no_new_privs and load the seccomp allowlist (anything else
 * kills the process with SIGSYS). Irreversible: call it only in a child.
 * root_fd is closed unless it is in keep_fds. */
int ink_unpack_confine(int root_fd, const int *keep_fds, size_t nkeep, ink_err *err);

/* Whether the layer media type is one the helper can decode. */
bool ink_unpack_media_type_known(const char *media_type);

/* One layer for the helper to extract. The agent passes it on the helper's
 * command line:
 *   ink-unpack --layer-fd N --dest-fd N --report-fd N --media-type T
 *              --parent PID --max-bytes N --bytes-before N
 *              --max-entries N --entries-before N
 * The descriptors are inherited; the limits are the image's, the "before"
 * counts what earlier layers of the same image used. */
typedef struct ink_unpack_job {
    int layer_fd;  /* the layer blob, read from its start */
    int dest_fd;   /* the destination directory, the future chroot */
    int report_fd; /* the write end of the report pipe */
    const char *media_type;
    pid_t parent; /* the agent: the helper dies with it */
    uint64_t max_bytes, bytes_before;
    uint64_t max_entries, entries_before;
} ink_unpack_job;

/* Runs in the helper: confines the process to job->dest_fd and extracts
 * the layer. *bytes and *entries get what this layer used (regular-file
 * bytes, tar entries), also on failure. */
int ink_unpack_run(const ink_unpack_job *job, uint64_t *bytes, uint64_t *entries, ink_err *err);

#define INK_UNPACK_REPORT_MAGIC 0x494e4b55u /* "INKU": same build on both ends */

/* What the helper sends back before it exits: one write, well under
 * PIPE_BUF. errnum and msg are set when it failed. */
typedef struct ink_unpack_report {
    uint32_t magic;
    int32_t failed;
    int32_t errnum;
    uint64_t bytes;   /* regular-file bytes this layer wrote */
    uint64_t entries; /* entries this layer held */
    char msg[INK_ERR_MSG_MAX];
} ink_unpack_report;

#endif
