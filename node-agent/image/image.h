/* Image supply for ink-agent: pulling OCI images from a distribution
 * registry into a content-addressed cache, and unpacking their layers into
 * a root filesystem in a confined child process.
 *
 * Cache layout under the store root (state_dir/images):
 *   blobs/sha256/<hex>        verified blobs (manifests, configs, layers)
 *   refs/<escaped ref>        the manifest digest a reference last resolved to
 *   tmp/                      partial downloads (removed on failure)
 * Every blob is checked against its sha256 digest before it enters blobs/;
 * a blob that does not match is an error naming the digest and leaves
 * nothing behind. */
#ifndef INK_IMAGE_H
#define INK_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define INK_DIGEST_MAX 80 /* "sha256:" + 64 hex + NUL, with room */

/* "registry.example:5000/team/app:1.2", "127.0.0.1:5000/busybox@sha256:...",
 * "busybox" (Docker Hub: registry-1.docker.io/library/busybox:latest). */
typedef struct ink_image_ref {
    char registry[256];          /* host[:port] */
    char repository[256];        /* "team/app", "library/busybox" */
    char tag[128];               /* "latest" when neither tag nor digest is given */
    char digest[INK_DIGEST_MAX]; /* "sha256:<hex>" when pinned, else "" */
} ink_image_ref;

int ink_image_ref_parse(const char *ref, ink_image_ref *out, ink_err *err);

typedef struct ink_registry_opts {
    /* Registries reached over plain HTTP (host[:port] list); everything
     * else is HTTPS. Loopback registries are not plain by default. */
    const char *const *plain_http;
    size_t nplain_http;
    const char *ca_file;  /* extra CA bundle for HTTPS registries, or NULL */
    const char *username; /* basic auth, and for the bearer token exchange */
    const char *password;
    int64_t timeout_ms;      /* per request; 0 = 60 s */
    uint64_t max_blob_bytes; /* 0 = 8 GiB */
} ink_registry_opts;

/* The parts of an image config (the OCI "config" object) that a runtime
 * bundle needs. Strings are owned (malloc). */
typedef struct ink_image_config {
    char **entrypoint;
    size_t nentrypoint;
    char **cmd;
    size_t ncmd;
    char **env; /* "NAME=value" */
    size_t nenv;
    char *working_dir;       /* may be NULL */
    char *user;              /* may be NULL */
    uint16_t *exposed_ports; /* tcp ports only */
    size_t nexposed_ports;
} ink_image_config;

typedef struct ink_image {
    char manifest_digest[INK_DIGEST_MAX]; /* the image's identity */
    char config_digest[INK_DIGEST_MAX];
    char **layers; /* layer blob digests, bottom first */
    size_t nlayers;
    char **layer_media_types; /* per layer: tar, tar+gzip, tar+zstd ... */
    uint64_t total_bytes;     /* sum of layer sizes */
    ink_image_config config;
} ink_image;

typedef struct ink_image_store ink_image_store;

int ink_image_store_open(const char *root, ink_image_store **out, ink_err *err);
void ink_image_store_close(ink_image_store *s);
const char *ink_image_store_root(const ink_image_store *s);

/* Resolves the reference (tag -> digest; image index or manifest list ->
 * the linux/amd64 manifest), fetches every missing blob, verifies each
 * digest and size, and fills *out. Blobs already cached are not fetched
 * again. Idempotent. */
int ink_image_pull(ink_image_store *s, const char *ref, const ink_registry_opts *opts,
                   ink_image *out, ink_err *err);
/* Loads an already pulled image by manifest digest, without network. */
int ink_image_load(ink_image_store *s, const char *manifest_digest, ink_image *out, ink_err *err);
void ink_image_free(ink_image *img);

/* Deletes cached blobs not reachable from the given manifest digests (and
 * refs that point to none of them). Returns the number of bytes freed. */
int64_t ink_image_gc(ink_image_store *s, const char *const *keep, size_t nkeep, ink_err *err);

/* Path of a cached blob ("<root>/blobs/sha256/<hex>"); caller frees. */
char *ink_image_blob_path(const ink_image_store *s, const char *digest);

/* ------------------------------------------------------------------ unpack */

/* Limits on what unpacking one image may write, summed over its layers.
 * A layer is compressed, so its blob size says little: a small gzip layer
 * can expand to fill the disk. 0 in a field means the default. */
typedef struct ink_unpack_limits {
    uint64_t max_bytes;   /* declared sizes of regular files (hard links included) */
    uint64_t max_entries; /* tar entries of every kind, whiteouts included */
} ink_unpack_limits;

#define INK_UNPACK_DEFAULT_MAX_BYTES (10ULL << 30) /* 10 GiB */
#define INK_UNPACK_DEFAULT_MAX_ENTRIES 1000000ULL

/* Extracts the image's layers in order into an empty directory `dest`,
 * honouring OCI whiteouts (".wh.<name>" deletes, ".wh..wh..opq" empties a
 * directory). Refuses, with an error naming the layer and entry: paths
 * with ".." or absolute paths, links or entries that would resolve outside
 * dest (symlink escapes), device nodes and FIFOs, setuid/setgid bits
 * (stripped, not refused), hard links to outside the tree, and a layer
 * that takes the image past its limits (the error names the limit; the
 * file that would cross it is not created). Each layer is extracted by
 * the ink-unpack helper (see ink_image_set_unpack_helper), a separate
 * program that holds no capabilities but what it needs to set file
 * ownership (CAP_CHOWN, CAP_FOWNER, CAP_DAC_OVERRIDE), with a seccomp
 * filter that allows only file-system syscalls, chrooted into dest; a
 * hostile layer cannot touch anything outside it. On failure dest is left
 * for the caller to remove. limits may be NULL (the defaults). */
int ink_image_unpack_opts(ink_image_store *s, const ink_image *img, const char *dest,
                          const ink_unpack_limits *limits, ink_err *err);
/* The same with the default limits. */
int ink_image_unpack(ink_image_store *s, const ink_image *img, const char *dest, ink_err *err);

/* One layer, for tests and for the above, with the default limits.
 * media_type decides compression. */
int ink_layer_unpack(const char *layer_path, const char *media_type, const char *dest,
                     ink_err *err);

/* Sets, for the whole process, the path of the ink-unpack helper that
 * extracts layers; NULL or "" restores the default search: next to the
 * running executable, then <its directory>/../libexec/ink/, then the
 * install path compiled in (CMAKE_INSTALL_FULL_LIBEXECDIR/ink). A missing
 * helper fails the unpack with an error naming the paths tried. Safe to
 * call from any thread. */
void ink_image_set_unpack_helper(const char *path);

#endif
