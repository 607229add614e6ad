/* Internals of unpack.c, exposed for the unit tests. */
#ifndef INK_UNPACK_INTERNAL_H
#define INK_UNPACK_INTERNAL_H

#include <stddef.h>

#include "err.h"

/* Deepest path (in components) a layer may create or a whiteout may walk. */
#define INK_UNPACK_MAX_DEPTH 256

/* Normalises a path from a layer: drops "." and empty components and a
 * trailing '/'. Refuses absolute paths, ".." components, names of PATH_MAX
 * bytes or more and paths deeper than INK_UNPACK_MAX_DEPTH. out (at least
 * PATH_MAX bytes) gets "" for the root itself. */
int ink_unpack_clean_path(const char *name, char *out, size_t outlen, ink_err *err);

/* Confines the calling process the way the extraction child is confined:
 * chroot into the directory open at root_fd (and chdir "/"), close every
 * descriptor but 0, 1, 2 and keep_fds, make the process non-dumpable, keep
 * only CAP_CHOWN, CAP_FOWNER and CAP_DAC_OVERRIDE (effective and
 * permitted; inheritable, ambient and the rest of the bounding set
 * cleared), set no_new_privs and load the seccomp allowlist (anything else
 * kills the process with SIGSYS). Irreversible: call it only in a child.
 * root_fd is closed unless it is in keep_fds. */
int ink_unpack_confine(int root_fd, const int *keep_fds, size_t nkeep, ink_err *err);

#endif
