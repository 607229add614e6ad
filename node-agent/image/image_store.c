/* The content-addressed image cache:
 *
 *   <root>/blobs/sha256/<hex>   verified blobs, shared by every image
 *   <root>/refs/<escaped ref>   "sha256:<hex>\n", what a tag last resolved to
 *   <root>/tmp/                 downloads in progress
 *
 * A blob enters blobs/ only through ink_blob_writer_commit(), which checks
 * its size and sha256 first, so a file in blobs/ is always the content its
 * name says. Paths are only ever built from digests that passed
 * ink_digest_valid(). */
#include "registry_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "image.h"
#include "log.h"
#include "util.h"

#define TMP_STALE_SECONDS 3600 /* downloads older than this are leftovers */

struct ink_image_store {
    char *root;
    char *blobs; /* <root>/blobs/sha256 */
    char *refs;
    char *tmp;
};

struct ink_blob_writer {
    ink_image_store *s;
    char digest[INK_DIGEST_MAX];
    char *tmp_path;
    int fd;
    EVP_MD_CTX *md;
    uint64_t expect; /* UINT64_MAX: unknown */
    uint64_t max;
    uint64_t written;
};

static void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}
#define cleanup_dir __attribute__((cleanup(closedirp)))

/* ------------------------------------------------------------------ digests */

bool ink_digest_valid(const char *d)
{
    if (!d || strncmp(d, "sha256:", 7) != 0)
        return false;
    const char *h = d + 7;
    for (int i = 0; i < 64; i++) {
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return false;
    }
    return h[64] == '\0';
}

static void hex_digest(const unsigned char *md, char out[INK_DIGEST_MAX])
{
    static const char hexd[] = "0123456789abcdef";
    memcpy(out, "sha256:", 7);
    for (int i = 0; i < 32; i++) {
        out[7 + 2 * i] = hexd[md[i] >> 4];
        out[8 + 2 * i] = hexd[md[i] & 15];
    }
    out[71] = '\0';
}

void ink_sha256_digest(const void *data, size_t len, char out[INK_DIGEST_MAX])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        abort(); /* only fails when OpenSSL cannot allocate */
    hex_digest(md, out);
}

/* -------------------------------------------------------------- open/close */

static bool valid_hex_name(const char *name)
{
    char d[INK_DIGEST_MAX];
    if (strlen(name) != 64)
        return false;
    snprintf(d, sizeof d, "sha256:%s", name);
    return ink_digest_valid(d);
}

/* Removes entries of tmp/ older than TMP_STALE_SECONDS (all when
 * max_age is 0); returns the bytes freed. */
static int64_t clean_tmp(ink_image_store *s, time_t max_age)
{
    cleanup_dir DIR *d = opendir(s->tmp);
    if (!d)
        return 0;
    int64_t freed = 0;
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            S_ISDIR(st.st_mode))
            continue;
        if (max_age && now - st.st_mtime < max_age)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            freed += st.st_size;
    }
    return freed;
}

int ink_image_store_open(const char *root, ink_image_store **out, ink_err *err)
{
    if (!root || root[0] != '/')
        return ink_err_set(err, 0, "image store root '%s' is not an absolute path",
                           root ? root : "");
    ink_image_store *s = ink_xcalloc(1, sizeof *s);
    s->root = ink_xstrdup(root);
    size_t n = strlen(s->root);
    while (n > 1 && s->root[n - 1] == '/')
        s->root[--n] = '\0';
    s->blobs = ink_xasprintf("%s/blobs/sha256", s->root);
    s->refs = ink_xasprintf("%s/refs", s->root);
    s->tmp = ink_xasprintf("%s/tmp", s->root);
    const char *dirs[] = {s->root, s->blobs, s->refs, s->tmp};
    for (size_t i = 0; i < INK_ARRAY_LEN(dirs); i++) {
        if (ink_mkdir_p(dirs[i], 0700, err) < 0) {
            ink_err_wrap(err, "opening image store %s", root);
            ink_image_store_close(s);
            return -1;
        }
    }
    clean_tmp(s, TMP_STALE_SECONDS);
    *out = s;
    return 0;
}

void ink_image_store_close(ink_image_store *s)
{
    if (!s)
        return;
    free(s->root);
    free(s->blobs);
    free(s->refs);
    free(s->tmp);
    free(s);
}

const char *ink_image_store_root(const ink_image_store *s)
{
    return s->root;
}

char *ink_image_blob_path(const ink_image_store *s, const char *digest)
{
    if (!ink_digest_valid(digest))
        return NULL;
    return ink_xasprintf("%s/%s", s->blobs, digest + 7);
}

static void fsync_dir(const char *path)
{
    cleanup_close int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0)
        fsync(fd);
}

/* -------------------------------------------------------------------- blobs */

int ink_store_has_blob(ink_image_store *s, const char *digest, uint64_t size, ink_err *err)
{
    cleanup_free char *path = ink_image_blob_path(s, digest);
    if (!path)
        return ink_err_set(err, 0, "invalid digest '%.80s'", digest);
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        return ink_err_set(err, errno, "stat cached blob %s", digest);
    }
    if (!S_ISREG(st.st_mode))
        return ink_err_set(err, 0, "cached blob %s is not a regular file", digest);
    if (size != UINT64_MAX && (uint64_t)st.st_size != size)
        return ink_err_set(
            err, 0, "blob %s: descriptor says %" PRIu64 " bytes, the verified blob has %" PRIu64,
            digest, size, (uint64_t)st.st_size);
    return 1;
}

int ink_blob_writer_open(ink_image_store *s, const char *digest, uint64_t expect_size, uint64_t max,
                         ink_blob_writer **out, ink_err *err)
{
    if (!ink_digest_valid(digest))
        return ink_err_set(err, 0, "invalid digest '%.80s'", digest);
    if (expect_size != UINT64_MAX && expect_size > max)
        return ink_err_set(err, 0,
                           "blob %s: size %" PRIu64 " exceeds the limit of %" PRIu64 " bytes",
                           digest, expect_size, max);
    ink_blob_writer *w = ink_xcalloc(1, sizeof *w);
    w->s = s;
    snprintf(w->digest, sizeof w->digest, "%s", digest);
    w->expect = expect_size;
    w->max = max;
    w->tmp_path = ink_xasprintf("%s/%s.XXXXXX", s->tmp, digest + 7);
    w->fd = mkostemp(w->tmp_path, O_CLOEXEC);
    if (w->fd < 0) {
        ink_err_set(err, errno, "blob %s: create %s", digest, w->tmp_path);
        free(w->tmp_path);
        free(w);
        return -1;
    }
    w->md = EVP_MD_CTX_new();
    if (!w->md || !EVP_DigestInit_ex(w->md, EVP_sha256(), NULL))
        abort();
    *out = w;
    return 0;
}

uint64_t ink_blob_writer_written(const ink_blob_writer *w)
{
    return w->written;
}

int ink_blob_writer_write(ink_blob_writer *w, const void *data, size_t len, ink_err *err)
{
    if (w->expect != UINT64_MAX && len > w->expect - w->written)
        return ink_err_set(err, 0, "blob %s: more data than the descriptor's %" PRIu64 " bytes",
                           w->digest, w->expect);
    if (len > w->max - w->written)
        return ink_err_set(err, 0, "blob %s: larger than the limit of %" PRIu64 " bytes", w->digest,
                           w->max);
    if (!EVP_DigestUpdate(w->md, data, len))
        abort();
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t r = write(w->fd, p, left);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return ink_err_set(err, errno, "blob %s: write %s", w->digest, w->tmp_path);
        }
        p += r;
        left -= (size_t)r;
    }
    w->written += len;
    return 0;
}

void ink_blob_writer_abort(ink_blob_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    unlink(w->tmp_path);
    EVP_MD_CTX_free(w->md);
    free(w->tmp_path);
    free(w);
}

int ink_blob_writer_commit(ink_blob_writer *w, ink_err *err)
{
    if (w->expect != UINT64_MAX && w->written != w->expect) {
        ink_err_set(err, 0, "blob %s is truncated: got %" PRIu64 " of %" PRIu64 " bytes", w->digest,
                    w->written, w->expect);
        ink_blob_writer_abort(w);
        return -1;
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_DigestFinal_ex(w->md, md, &mdlen) || mdlen != 32)
        abort();
    char got[INK_DIGEST_MAX];
    hex_digest(md, got);
    if (strcmp(got, w->digest) != 0) {
        ink_err_set(err, 0, "blob %s failed verification: its content hashes to %s", w->digest,
                    got);
        ink_blob_writer_abort(w);
        return -1;
    }
    if (fchmod(w->fd, 0644) < 0 || fsync(w->fd) < 0) {
        ink_err_set(err, errno, "blob %s: sync %s", w->digest, w->tmp_path);
        ink_blob_writer_abort(w);
        return -1;
    }
    close(w->fd);
    w->fd = -1;
    cleanup_free char *dest = ink_image_blob_path(w->s, w->digest);
    if (rename(w->tmp_path, dest) < 0) {
        ink_err_set(err, errno, "blob %s: rename into %s", w->digest, dest);
        ink_blob_writer_abort(w);
        return -1;
    }
    fsync_dir(w->s->blobs);
    EVP_MD_CTX_free(w->md);
    free(w->tmp_path);
    free(w);
    return 0;
}

int ink_store_put_blob(ink_image_store *s, const char *digest, const void *data, size_t len,
                       ink_err *err)
{
    ink_blob_writer *w;
    if (ink_blob_writer_open(s, digest, len, len, &w, err) < 0)
        return -1;
    if (ink_blob_writer_write(w, data, len, err) < 0) {
        ink_blob_writer_abort(w);
        return -1;
    }
    return ink_blob_writer_commit(w, err);
}

int ink_store_read_blob(ink_image_store *s, const char *digest, size_t max, char **out, size_t *len,
                        ink_err *err)
{
    cleanup_free char *path = ink_image_blob_path(s, digest);
    if (!path)
        return ink_err_set(err, 0, "invalid digest '%.80s'", digest);
    cleanup_free char *buf = NULL;
    size_t n = 0;
    if (ink_read_file(path, max, &buf, &n, err) < 0)
        return ink_err_wrap(err, "reading cached blob %s", digest);
    char got[INK_DIGEST_MAX];
    ink_sha256_digest(buf, n, got);
    if (strcmp(got, digest) != 0) {
        /* Damaged on disk: drop it so that the next pull fetches it again. */
        unlink(path);
        return ink_err_set(err, 0, "cached blob %s is corrupt (hashes to %s); removed it", digest,
                           got);
    }
    *out = INK_STEAL(buf);
    if (len)
        *len = n;
    return 0;
}

/* --------------------------------------------------------------------- refs */

/* A file name for a reference: [A-Za-z0-9._-] kept, everything else %XX;
 * references too long for a file name are named by their sha256. */
static char *ref_path(ink_image_store *s, const char *ref)
{
    size_t n = strlen(ref);
    char *name = ink_xmalloc(3 * n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)ref[i];
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '_' || c == '-' || (c == '.' && i > 0);
        if (plain) {
            name[o++] = (char)c;
        } else {
            sprintf(name + o, "%%%02X", c);
            o += 3;
        }
    }
    name[o] = '\0';
    char *path;
    if (o == 0 || o > 200) {
        char d[INK_DIGEST_MAX];
        ink_sha256_digest(ref, n, d);
        path = ink_xasprintf("%s/sha256-%s", s->refs, d + 7);
    } else {
        path = ink_xasprintf("%s/%s", s->refs, name);
    }
    free(name);
    return path;
}

int ink_store_set_ref(ink_image_store *s, const char *ref, const char *digest, ink_err *err)
{
    if (!ink_digest_valid(digest))
        return ink_err_set(err, 0, "invalid digest '%.80s'", digest);
    cleanup_free char *path = ref_path(s, ref);
    char line[INK_DIGEST_MAX + 1];
    int n = snprintf(line, sizeof line, "%s\n", digest);
    if (ink_write_file_atomic(path, line, (size_t)n, 0600, err) < 0)
        return ink_err_wrap(err, "recording %s -> %s", ref, digest);
    return 0;
}

static int read_ref_file(int dfd, const char *name, char out[INK_DIGEST_MAX])
{
    out[0] = '\0';
    cleanup_close int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    char buf[INK_DIGEST_MAX + 2];
    ssize_t r = read(fd, buf, sizeof buf - 1);
    if (r < 0)
        return -1;
    buf[r] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    if (!ink_digest_valid(buf))
        return -1;
    memcpy(out, buf, 72);
    return 0;
}

int ink_store_get_ref(ink_image_store *s, const char *ref, char out[INK_DIGEST_MAX], ink_err *err)
{
    cleanup_free char *path = ref_path(s, ref);
    out[0] = '\0';
    if (access(path, F_OK) < 0) {
        if (errno == ENOENT)
            return 0;
        return ink_err_set(err, errno, "reading ref %s", ref);
    }
    if (read_ref_file(AT_FDCWD, path, out) < 0)
        return ink_err_set(err, 0, "ref %s: %s holds no valid digest", ref, path);
    return 0;
}

/* ---------------------------------------------------------------- load/free */

void ink_image_free(ink_image *img)
{
    if (!img)
        return;
    for (size_t i = 0; i < img->nlayers; i++) {
        free(img->layers[i]);
        if (img->layer_media_types)
            free(img->layer_media_types[i]);
    }
    free(img->layers);
    free(img->layer_media_types);
    ink_image_config_free(&img->config);
    memset(img, 0, sizeof *img);
}

/* Reads a cached manifest; an index is resolved to its linux/amd64 entry
 * (one level). *digest_out is the image manifest's digest. */
static int load_manifest(ink_image_store *s, const char *digest, ink_manifest *m,
                         char digest_out[INK_DIGEST_MAX], ink_err *err)
{
    cleanup_free char *body = NULL;
    size_t len = 0;
    ink_doc_kind kind;
    if (ink_store_read_blob(s, digest, INK_MANIFEST_MAX, &body, &len, err) < 0)
        return -1;
    if (ink_manifest_kind(body, len, NULL, &kind, err) < 0)
        return ink_err_wrap(err, "manifest %s", digest);
    snprintf(digest_out, INK_DIGEST_MAX, "%s", digest);
    if (kind == INK_DOC_INDEX) {
        ink_descriptor d;
        if (ink_index_select(body, len, "linux", "amd64", &d, err) < 0)
            return ink_err_wrap(err, "index %s", digest);
        free(body);
        body = NULL;
        if (ink_store_read_blob(s, d.digest, INK_MANIFEST_MAX, &body, &len, err) < 0)
            return -1;
        if (ink_manifest_kind(body, len, NULL, &kind, err) < 0)
            return ink_err_wrap(err, "manifest %s", d.digest);
        if (kind != INK_DOC_MANIFEST)
            return ink_err_set(err, 0, "index %s: entry %s is not an image manifest", digest,
                               d.digest);
        snprintf(digest_out, INK_DIGEST_MAX, "%s", d.digest);
    }
    if (ink_manifest_parse(body, len, UINT64_MAX, m, err) < 0)
        return ink_err_wrap(err, "manifest %s", digest_out);
    return 0;
}

int ink_image_load(ink_image_store *s, const char *manifest_digest, ink_image *out, ink_err *err)
{
    memset(out, 0, sizeof *out);
    if (!ink_digest_valid(manifest_digest))
        return ink_err_set(err, 0, "invalid manifest digest '%.80s'", manifest_digest);
    int r = ink_store_has_blob(s, manifest_digest, UINT64_MAX, err);
    if (r < 0)
        return -1;
    if (r == 0) {
        ink_err_set(err, 0, "image %s is not in the cache (pull it first)", manifest_digest);
        if (err)
            err->errnum = ENOENT;
        return -1;
    }
    ink_manifest m = {0};
    char mdigest[INK_DIGEST_MAX];
    if (load_manifest(s, manifest_digest, &m, mdigest, err) < 0)
        return ink_err_wrap(err, "loading image %s", manifest_digest);
    for (size_t i = 0; i <= m.nlayers; i++) {
        const ink_descriptor *d = i == m.nlayers ? &m.config : &m.layers[i];
        r = ink_store_has_blob(s, d->digest, d->size, err);
        if (r <= 0) {
            if (r == 0)
                ink_err_set(err, 0, "blob %s is missing from the cache", d->digest);
            ink_manifest_free(&m);
            return ink_err_wrap(err, "loading image %s", manifest_digest);
        }
    }
    cleanup_free char *config = NULL;
    size_t clen = 0;
    if (ink_store_read_blob(s, m.config.digest, INK_CONFIG_MAX, &config, &clen, err) < 0 ||
        ink_image_fill(mdigest, &m, config, clen, out, err) < 0) {
        ink_manifest_free(&m);
        return ink_err_wrap(err, "loading image %s", manifest_digest);
    }
    ink_manifest_free(&m);
    return 0;
}

/* ----------------------------------------------------------------------- gc */

typedef struct digest_set {
    char (*d)[INK_DIGEST_MAX];
    size_t n, cap;
} digest_set;

static void set_add(digest_set *set, const char *digest)
{
    for (size_t i = 0; i < set->n; i++) {
        if (strcmp(set->d[i], digest) == 0)
            return;
    }
    if (set->n == set->cap) {
        set->cap = set->cap ? set->cap * 2 : 64;
        set->d = realloc(set->d, set->cap * sizeof *set->d);
        if (!set->d)
            abort();
    }
    snprintf(set->d[set->n++], INK_DIGEST_MAX, "%s", digest);
}

static int cmp_digest(const void *a, const void *b)
{
    return strcmp(a, b);
}

static bool set_has(const digest_set *set, const char *digest)
{
    return set->n && bsearch(digest, set->d, set->n, sizeof *set->d, cmp_digest);
}

/* Adds an image manifest and the blobs it references. */
static int mark_manifest(ink_image_store *s, const char *digest, const char *body, size_t len,
                         digest_set *live, ink_err *err)
{
    ink_manifest m = {0};
    if (ink_manifest_parse(body, len, UINT64_MAX, &m, err) < 0)
        return ink_err_wrap(err, "manifest %s", digest);
    set_add(live, digest);
    set_add(live, m.config.digest);
    for (size_t i = 0; i < m.nlayers; i++)
        set_add(live, m.layers[i].digest);
    ink_manifest_free(&m);
    return 0;
}

static int mark(ink_image_store *s, const char *digest, digest_set *live, ink_err *err)
{
    int r = ink_store_has_blob(s, digest, UINT64_MAX, err);
    if (r <= 0)
        return r; /* not cached: nothing to keep */
    cleanup_free char *body = NULL;
    size_t len = 0;
    ink_doc_kind kind;
    if (ink_store_read_blob(s, digest, INK_MANIFEST_MAX, &body, &len, err) < 0 ||
        ink_manifest_kind(body, len, NULL, &kind, err) < 0)
        return -1;
    if (kind == INK_DOC_MANIFEST)
        return mark_manifest(s, digest, body, len, live, err);
    cleanup_free ink_descriptor *entries = NULL;
    size_t n = 0;
    if (ink_index_entries(body, len, &entries, &n, err) < 0)
        return ink_err_wrap(err, "index %s", digest);
    set_add(live, digest);
    for (size_t i = 0; i < n; i++) {
        cleanup_free char *child = NULL;
        size_t clen = 0;
        r = ink_store_has_blob(s, entries[i].digest, UINT64_MAX, err);
        if (r < 0)
            return -1;
        if (r == 0)
            continue;
        if (ink_store_read_blob(s, entries[i].digest, INK_MANIFEST_MAX, &child, &clen, err) < 0 ||
            ink_manifest_kind(child, clen, NULL, &kind, err) < 0)
            return -1;
        if (kind == INK_DOC_MANIFEST &&
            mark_manifest(s, entries[i].digest, child, clen, live, err) < 0)
            return -1;
    }
    return 0;
}

/* Mark (from the kept manifests) and sweep (blobs/, refs/, stale tmp/).
 * The caller keeps pulls of this store from running at the same time: a
 * blob committed by a pull whose manifest is not yet in `keep` would go. */
/* Unlinks a non-directory entry of dirfd; adds its size to *freed.
 * Returns 1 when removed. */
static int remove_file_entry(int dfd, const char *name, int64_t *freed)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode))
        return 0;
    if (unlinkat(dfd, name, 0) < 0)
        return 0;
    *freed += st.st_size;
    return 1;
}

int64_t ink_image_gc(ink_image_store *s, const char *const *keep, size_t nkeep, ink_err *err)
{
    digest_set live = {0};
    for (size_t i = 0; i < nkeep; i++) {
        if (!ink_digest_valid(keep[i])) {
            free(live.d);
            return ink_err_set(err, 0, "gc: invalid digest '%.80s' in the keep list",
                               keep[i] ? keep[i] : "(null)");
        }
        /* Anything unreadable stops gc before it deletes a thing. */
        if (mark(s, keep[i], &live, err) < 0) {
            free(live.d);
            return ink_err_wrap(err, "gc: cannot tell what %s references", keep[i]);
        }
    }
    if (live.n)
        qsort(live.d, live.n, sizeof *live.d, cmp_digest);

    int64_t freed = 0;
    size_t nblobs = 0, nrefs = 0;
    DIR *d = opendir(s->blobs);
    if (!d) {
        free(live.d);
        return ink_err_set(err, errno, "gc: open %s", s->blobs);
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char digest[INK_DIGEST_MAX + 64];
        snprintf(digest, sizeof digest, "sha256:%s", e->d_name);
        if (valid_hex_name(e->d_name) && set_has(&live, digest))
            continue;
        nblobs += remove_file_entry(dirfd(d), e->d_name, &freed);
    }
    closedir(d);

    d = opendir(s->refs);
    if (d) {
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char target[INK_DIGEST_MAX];
            if (read_ref_file(dirfd(d), e->d_name, target) == 0 && set_has(&live, target))
                continue;
            nrefs += remove_file_entry(dirfd(d), e->d_name, &freed);
        }
        closedir(d);
    }
    freed += clean_tmp(s, TMP_STALE_SECONDS);
    free(live.d);
    LOG_INFO("image gc", "kept", LOG_U64(nkeep), "blobs_removed", LOG_U64(nblobs), "refs_removed",
             LOG_U64(nrefs), "bytes_freed", LOG_INT(freed));
    return freed;
}
