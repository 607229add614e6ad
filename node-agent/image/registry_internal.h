/* Internals shared by registry.c (references, HTTP, manifest parsing, pull)
 * and image_store.c (the content-addressed cache), exposed for the unit
 * tests. Nothing here is part of the image interface (image.h). */
#ifndef INK_REGISTRY_INTERNAL_H
#define INK_REGISTRY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "image.h"

#define INK_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define INK_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define INK_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define INK_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define INK_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define INK_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

#define INK_MANIFEST_MAX (4u << 20) /* manifests and indexes */
#define INK_CONFIG_MAX (16u << 20)  /* image config blobs */
#define INK_LAYERS_MAX 1024         /* layers in one manifest */
#define INK_INDEX_ENTRIES_MAX 4096  /* manifests in one index */
#define INK_BLOB_DEFAULT_MAX (8ull << 30)

/* ----------------------------------------------------------------- digests */

/* "sha256:" followed by exactly 64 lowercase hex digits, nothing else. Only
 * digests that pass this check are ever used in a path or a URL. */
bool ink_digest_valid(const char *d);

/* The "sha256:<hex>" digest of a buffer. */
void ink_sha256_digest(const void *data, size_t len, char out[INK_DIGEST_MAX]);

/* ------------------------------------------------------------ JSON parsing */

typedef struct ink_descriptor {
    char media_type[128];
    char digest[INK_DIGEST_MAX];
    uint64_t size;
} ink_descriptor;

typedef struct ink_manifest {
    ink_descriptor config;
    ink_descriptor *layers;
    size_t nlayers;
} ink_manifest;

typedef enum { INK_DOC_MANIFEST = 1, INK_DOC_INDEX } ink_doc_kind;

/* What a manifest document is: from its own "mediaType", else from the
 * response's Content-Type (may be NULL), else from its shape ("manifests"
 * -> index, "config" -> manifest). Docker schema 1 and unknown types are
 * errors. */
int ink_manifest_kind(const char *body, size_t len, const char *content_type, ink_doc_kind *kind,
                      ink_err *err);

/* An image manifest (OCI or Docker schema 2): config and layer descriptors,
 * every digest validated, every size at most max_blob. */
int ink_manifest_parse(const char *body, size_t len, uint64_t max_blob, ink_manifest *out,
                       ink_err *err);
void ink_manifest_free(ink_manifest *m);

/* Picks the os/arch manifest from an OCI index or Docker manifest list. When
 * there is none the error lists the platforms the index has. */
int ink_index_select(const char *body, size_t len, const char *os, const char *arch,
                     ink_descriptor *out, ink_err *err);

/* Every manifest descriptor of an index (for gc). Caller frees *out. */
int ink_index_entries(const char *body, size_t len, ink_descriptor **out, size_t *n, ink_err *err);

/* The runtime-relevant part of an image config blob. */
int ink_image_config_parse(const char *body, size_t len, ink_image_config *out, ink_err *err);
void ink_image_config_free(ink_image_config *c);

/* Fills *out from a parsed manifest and its config blob. */
int ink_image_fill(const char *manifest_digest, const ink_manifest *m, const char *config_body,
                   size_t config_len, ink_image *out, ink_err *err);

/* ------------------------------------------------------------------- HTTP */

typedef struct ink_auth_challenge {
    enum { INK_AUTH_NONE = 0, INK_AUTH_BASIC, INK_AUTH_BEARER } scheme;
    char realm[1024];
    char service[256];
    char scope[512];
} ink_auth_challenge;

/* Parses one WWW-Authenticate header value ("Bearer realm=\"...\",
 * service=\"...\",scope=\"...\"" or "Basic realm=..."). */
int ink_www_authenticate_parse(const char *value, ink_auth_challenge *out, ink_err *err);

/* True when both absolute URLs have the same scheme, host and port: only
 * then may credentials for the first be sent to the second. */
bool ink_url_same_origin(const char *a, const char *b);

/* ------------------------------------------------------------------ store */

/* 1 when the blob is cached (and its size is `size`, unless size is
 * UINT64_MAX), 0 when it is not, -1 when it is cached with another size. */
int ink_store_has_blob(ink_image_store *s, const char *digest, uint64_t size, ink_err *err);

/* A blob being downloaded: a file in tmp/, hashed as it is written. */
typedef struct ink_blob_writer ink_blob_writer;

/* expect_size is the descriptor's size, or UINT64_MAX when unknown; max
 * bounds the bytes accepted either way. */
int ink_blob_writer_open(ink_image_store *s, const char *digest, uint64_t expect_size, uint64_t max,
                         ink_blob_writer **out, ink_err *err);
int ink_blob_writer_write(ink_blob_writer *w, const void *data, size_t len, ink_err *err);
uint64_t ink_blob_writer_written(const ink_blob_writer *w);
/* Checks size and sha256, fsyncs and renames into blobs/; frees w. On any
 * failure the partial file is removed. */
int ink_blob_writer_commit(ink_blob_writer *w, ink_err *err);
/* Removes the partial file and frees w. NULL is fine. */
void ink_blob_writer_abort(ink_blob_writer *w);

/* Verifies an in-memory blob against digest and commits it. */
int ink_store_put_blob(ink_image_store *s, const char *digest, const void *data, size_t len,
                       ink_err *err);

/* Reads a cached blob of at most max bytes and checks its sha256. */
int ink_store_read_blob(ink_image_store *s, const char *digest, size_t max, char **out, size_t *len,
                        ink_err *err);

/* Records refs/<escaped ref> -> digest. */
int ink_store_set_ref(ink_image_store *s, const char *ref, const char *digest, ink_err *err);
/* Reads the digest a ref points to; 0 and "" when there is none. */
int ink_store_get_ref(ink_image_store *s, const char *ref, char out[INK_DIGEST_MAX], ink_err *err);

#endif
