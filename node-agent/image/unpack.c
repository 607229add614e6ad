/* Confined unpacking of OCI image layers: the part that runs in the
 * ink-unpack helper (unpack_helper.c). unpack_spawn.c is the agent's side.
 *
 * A layer is hostile input. The agent opens the layer blob and the
 * destination directory and starts the helper with fork+exec, handing it
 * the descriptors; a plain fork of the many-threaded agent could leave the
 * child with malloc, stdio or logger locks that some other thread held.
 * The helper prepares its libarchive reader and writer, confines itself
 * (ink_unpack_confine: chroot into the destination, capabilities cut down
 * to CAP_CHOWN, CAP_FOWNER and CAP_DAC_OVERRIDE, no_new_privs, a seccomp
 * allowlist) and only then starts to decode the stream. Every entry passes
 * the checks here before libarchive's own ARCHIVE_EXTRACT_SECURE_* checks
 * see it; OCI whiteouts are applied here with descriptor-relative calls
 * that never follow a symlink. Regular-file bytes and entries count
 * against the image's limits before anything is written. The helper sends
 * a report (the first error, what it used) over a pipe and exits; the
 * agent names the layer. */
#include "unpack_internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <iconv.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wchar.h>

#include "helper.h"
#include "util.h"

typedef enum { COMP_NONE, COMP_GZIP, COMP_ZSTD } layer_compression;

static const struct {
    const char *media_type;
    layer_compression comp;
} layer_media_types[] = {
    {"application/vnd.oci.image.layer.v1.tar", COMP_NONE},
    {"application/vnd.oci.image.layer.v1.tar+gzip", COMP_GZIP},
    {"application/vnd.oci.image.layer.v1.tar+zstd", COMP_ZSTD},
    {"application/vnd.docker.image.rootfs.diff.tar.gzip", COMP_GZIP},
};

static int media_type_compression(const char *media_type, layer_compression *comp)
{
    for (size_t i = 0; media_type && i < INK_ARRAY_LEN(layer_media_types); i++) {
        if (strcmp(media_type, layer_media_types[i].media_type) == 0) {
            *comp = layer_media_types[i].comp;
            return 0;
        }
    }
    return -1;
}

bool ink_unpack_media_type_known(const char *media_type)
{
    layer_compression comp;
    return media_type_compression(media_type, &comp) == 0;
}

#define WH_PREFIX ".wh."
#define WH_META_PREFIX ".wh..wh."
#define WH_OPAQUE ".wh..wh..opq"

/* Entry names in error messages: printable and at most this long. */
#define SHOWN_MAX 160

/* libarchive's options for the writer. No lookup functions are installed,
 * so the numeric uid and gid of each entry are used as they are. Extended
 * attributes, ACLs and file flags are not restored (setting most of them
 * would need capabilities the child does not have). */
#define EXTRACT_FLAGS                                                                              \
    (ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |                         \
     ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |                           \
     ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS)

/* ------------------------------------------------------------ path checks */

int ink_unpack_clean_path(const char *name, char *out, size_t outlen, ink_err *err)
{
    size_t n = strlen(name);
    if (n >= PATH_MAX || n >= outlen)
        return ink_err_set(err, ENAMETOOLONG, "name of %zu bytes", n);
    if (name[0] == '/')
        return ink_err_set(err, 0, "absolute path refused");
    size_t o = 0;
    int depth = 0;
    for (const char *p = name; *p;) {
        const char *end = strchrnul(p, '/');
        size_t len = (size_t)(end - p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return ink_err_set(err, 0, "\"..\" component refused");
        if (len > 0 && !(len == 1 && p[0] == '.')) {
            if (++depth > INK_UNPACK_MAX_DEPTH)
                return ink_err_set(err, 0, "deeper than %d components", INK_UNPACK_MAX_DEPTH);
            if (o > 0)
                out[o++] = '/';
            memcpy(out + o, p, len);
            o += len;
        }
        p = *end ? end + 1 : end;
    }
    out[o] = '\0';
    return 0;
}

/* A name as it may appear in an error message: control bytes and quotes
 * replaced, long names cut. */
static void shown_name(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *in && o + 4 < outlen; in++) {
        unsigned char c = (unsigned char)*in;
        out[o++] = (c < 0x20 || c == 0x7f || c == '"') ? '?' : (char)c;
    }
    if (*in) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* ----------------------------------------------- paths this layer provided */

/* A set of clean paths, open addressing. The extraction child records in it
 * every path the current layer wrote and every directory above one, so
 * whiteouts and opaque markers remove only what lower layers left. */
typedef struct path_set {
    char **slots;
    size_t cap; /* 0 or a power of two */
    size_t len;
} path_set;

static uint64_t path_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static size_t set_slot(char *const *slots, size_t cap, const char *key)
{
    size_t i = (size_t)path_hash(key) & (cap - 1);
    while (slots[i] && strcmp(slots[i], key) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

static bool set_has(const path_set *s, const char *key)
{
    return s->cap > 0 && s->slots[set_slot(s->slots, s->cap, key)] != NULL;
}

static void set_put(path_set *s, const char *key)
{
    if ((s->len + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 256;
        char **nslots = ink_xcalloc(ncap, sizeof *nslots);
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i])
                nslots[set_slot(nslots, ncap, s->slots[i])] = s->slots[i];
        free(s->slots);
        s->slots = nslots;
        s->cap = ncap;
    }
    size_t i = set_slot(s->slots, s->cap, key);
    if (!s->slots[i]) {
        s->slots[i] = ink_xstrdup(key);
        s->len++;
    }
}

/* Adds path and the directories above it ("a/b/c": "a/b/c", "a/b", "a"). */
static void set_put_with_parents(path_set *s, const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    while (buf[0] && !set_has(s, buf)) { /* a present path has its parents */
        set_put(s, buf);
        char *slash = strrchr(buf, '/');
        if (!slash)
            break;
        *slash = '\0';
    }
}

static void set_free(path_set *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->slots[i]);
    free(s->slots);
    *s = (path_set){0};
}

/* ------------------------------------------ walking without following links */

typedef enum { WALK_FOUND, WALK_MISSING, WALK_NOT_DIR } walk_result;

/* Opens the directory at the clean relative path dir ("" is the root),
 * one component at a time, never following a symlink: a component that is
 * a symlink is an error. *fd is set only for WALK_FOUND. */
static int walk_dir(const char *dir, int *fd, walk_result *res, ink_err *err)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", dir);
    int cur = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cur < 0)
        return ink_err_set(err, errno, "open /");
    for (char *p = buf; *p;) {
        char *end = strchrnul(p, '/');
        bool last = *end == '\0';
        *end = '\0';
        struct stat st;
        if (fstatat(cur, p, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            int e = errno;
            close(cur);
            if (e == ENOENT) {
                *res = WALK_MISSING;
                return 0;
            }
            return ink_err_set(err, e, "%s", buf);
        }
        if (S_ISLNK(st.st_mode)) {
            close(cur);
            return ink_err_set(err, 0, "\"%s\" is a symlink: refusing to go through it", buf);
        }
        if (!S_ISDIR(st.st_mode)) {
            close(cur);
            *res = WALK_NOT_DIR;
            return 0;
        }
        int next = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        close(cur);
        if (next < 0)
            return ink_err_set(err, e, "%s", buf);
        cur = next;
        if (!last)
            *end = '/';
        p = last ? end : end + 1;
    }
    *fd = cur;
    *res = WALK_FOUND;
    return 0;
}

/* Fails when a directory above path exists as a symlink. */
static int check_parents(const char *path, ink_err *err)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return 0;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = -1;
    walk_result res;
    if (walk_dir(dir, &fd, &res, err) < 0)
        return -1;
    if (res == WALK_FOUND)
        close(fd);
    return 0;
}

/* Names in the directory open at dfd, without "." and "..". */
static int list_dir(int dfd, char ***names, size_t *count, ink_err *err)
{
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ink_err_set(err, errno, "open directory");
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return ink_err_set(err, e, "open directory");
    }
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(v, cap * sizeof *v);
            if (!nv)
                abort();
            v = nv;
        }
        v[n++] = ink_xstrdup(de->d_name);
    }
    int e = errno;
    closedir(d);
    if (e) {
        for (size_t i = 0; i < n; i++)
            free(v[i]);
        free(v);
        return ink_err_set(err, e, "read directory");
    }
    *names = v;
    *count = n;
    return 0;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* rm -rf of name in the directory open at dfd; never follows a symlink.
 * A missing name is fine. */
static int remove_at(int dfd, const char *name, int depth, ink_err *err)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : ink_err_set(err, errno, "%s", name);
    if (S_ISDIR(st.st_mode)) {
        if (depth > INK_UNPACK_MAX_DEPTH)
            return ink_err_set(err, 0, "%s: nested more than %d deep", name, depth);
        cleanup_close int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return ink_err_set(err, errno, "%s", name);
        char **names = NULL;
        size_t n = 0;
        if (list_dir(fd, &names, &n, err) < 0)
            return ink_err_wrap(err, "%s", name);
        int rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++)
            if (remove_at(fd, names[i], depth + 1, err) < 0)
                rc = ink_err_wrap(err, "%s", name);
        free_names(names, n);
        if (rc < 0)
            return -1;
        if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
            return ink_err_set(err, errno, "remove %s", name);
        return 0;
    }
    if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
        return ink_err_set(err, errno, "remove %s", name);
    return 0;
}

/* Removes from the directory open at dfd (clean path rel) everything the
 * current layer did not provide, descending into what it did. */
static int prune_lower(int dfd, const char *rel, const path_set *mine, int depth, ink_err *err)
{
    char **names = NULL;
    size_t n = 0;
    if (list_dir(dfd, &names, &n, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        cleanup_free char *child =
            rel[0] ? ink_xasprintf("%s/%s", rel, names[i]) : ink_xstrdup(names[i]);
        if (!set_has(mine, child)) {
            rc = remove_at(dfd, names[i], depth + 1, err);
            continue;
        }
        struct stat st;
        if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = ink_err_set(err, errno, "%s", child);
            continue;
        }
        if (!S_ISDIR(st.st_mode))
            continue;
        if (depth + 1 > INK_UNPACK_MAX_DEPTH) {
            rc = ink_err_set(err, 0, "%s: nested more than %d deep", child, depth + 1);
            continue;
        }
        cleanup_close int fd =
            openat(dfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            rc = ink_err_set(err, errno, "%s", child);
        else
            rc = prune_lower(fd, child, mine, depth + 1, err);
    }
    free_names(names, n);
    return rc;
}

/* ------------------------------------------------------ the extraction child */

typedef struct unpacker {
    const ink_unpack_job *job; /* the limits */
    struct archive *in;
    struct archive *out;
    path_set mine;            /* paths this layer wrote, and their parents */
    char shown[SHOWN_MAX];    /* the current entry's name, for errors */
    unsigned long long count; /* entries seen */
    uint64_t bytes;           /* regular-file bytes written */
} unpacker;

/* libarchive's error as ours. Reading errors drop libarchive's stand-in
 * errno values for "bad format" and "misuse", which would only add noise. */
static int archive_fail(struct archive *a, bool reading, const char *what, ink_err *err)
{
    int e = archive_errno(a);
    if (e < 0 || (reading && (e == EILSEQ || e == EINVAL)))
        e = 0;
    const char *s = archive_error_string(a);
    if (!s)
        s = "libarchive gave no reason";
    size_t n = strlen(s);
    if (n > 0 && s[n - 1] == '.') /* some of its messages end in a full stop */
        n--;
    return ink_err_set(err, e, "%s: %.*s", what, (int)n, s);
}

typedef enum { ENTRY_PLAIN, ENTRY_WHITEOUT, ENTRY_SKIP } entry_kind;

/* Whiteout rules: ".wh." is a whiteout only as the last component. Under an
 * AUFS metadata directory (".wh..wh.*", e.g. ".wh..wh.plnk") nothing is
 * created; any other ".wh." directory is abuse. */
static int classify(const char *path, entry_kind *kind, ink_err *err)
{
    *kind = ENTRY_PLAIN;
    for (const char *p = path; *p;) {
        const char *end = strchrnul(p, '/');
        size_t len = (size_t)(end - p);
        bool last = *end == '\0';
        if (strncmp(p, WH_PREFIX, strlen(WH_PREFIX)) == 0) {
            bool opaque = last && strcmp(p, WH_OPAQUE) == 0;
            if (!opaque && len >= strlen(WH_META_PREFIX) &&
                strncmp(p, WH_META_PREFIX, strlen(WH_META_PREFIX)) == 0) {
                *kind = ENTRY_SKIP;
                return 0;
            }
            if (!last)
                return ink_err_set(err, 0, "whiteout abuse: \"%.*s\" used as a directory", (int)len,
                                   p);
            *kind = ENTRY_WHITEOUT;
            return 0;
        }
        p = last ? end : end + 1;
    }
    return 0;
}

static int apply_whiteout(unpacker *u, const char *path, ink_err *err)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 0, path);
    bool opaque = strcmp(base, WH_OPAQUE) == 0;
    const char *target = base + strlen(WH_PREFIX);
    char tpath[PATH_MAX];
    if (!opaque) {
        if (!target[0] || strcmp(target, ".") == 0 || strcmp(target, "..") == 0)
            return ink_err_set(err, 0, "whiteout abuse: target \"%s\"", target);
        snprintf(tpath, sizeof tpath, "%s%s%s", dir, dir[0] ? "/" : "", target);
        /* Whiteouts hide lower layers only: what this layer wrote stays. */
        if (set_has(&u->mine, tpath))
            return 0;
    }
    int dfd = -1;
    walk_result res;
    if (walk_dir(dir, &dfd, &res, err) < 0)
        return ink_err_wrap(err, "whiteout");
    if (res != WALK_FOUND)
        return 0; /* nothing there to hide */
    int depth = 0;
    for (const char *p = dir; *p; p++)
        depth += *p == '/';
    depth += dir[0] != '\0';
    int rc = opaque ? prune_lower(dfd, dir, &u->mine, depth, err)
                    : remove_at(dfd, target, depth + 1, err);
    close(dfd);
    if (rc < 0)
        return ink_err_wrap(err, opaque ? "opaque directory" : "whiteout");
    return 0;
}

static int copy_data(unpacker *u, ink_err *err)
{
    for (;;) {
        const void *buf;
        size_t size;
        la_int64_t off;
        int rc = archive_read_data_block(u->in, &buf, &size, &off);
        if (rc == ARCHIVE_EOF)
            return 0;
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
            return archive_fail(u->in, true, "reading data", err);
        la_ssize_t w = archive_write_data_block(u->out, buf, size, off);
        if (w < ARCHIVE_WARN)
            return archive_fail(u->out, false, "writing data", err);
    }
}

/* Regular-file data counts against the image's byte limit before any of it
 * is written, at the size the header declares (libarchive writes no more
 * than that): a gzip bomb stops at the first file that would cross the
 * limit, and that file is not created. Sparse files count at their full
 * size. */
static int charge_bytes(unpacker *u, struct archive_entry *e, ink_err *err)
{
    la_int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
    if (size <= 0)
        return 0;
    const ink_unpack_job *job = u->job;
    uint64_t used = job->bytes_before + u->bytes; /* never above max_bytes */
    if ((uint64_t)size > job->max_bytes - used)
        return ink_err_set(err, 0,
                           "file of %lld bytes exceeds the unpack limit of %llu bytes for the "
                           "image (%llu bytes written before it)",
                           (long long)size, (unsigned long long)job->max_bytes,
                           (unsigned long long)used);
    u->bytes += (uint64_t)size;
    return 0;
}

static int extract_entry(unpacker *u, struct archive_entry *e, ink_err *err)
{
    char path[PATH_MAX];
    if (ink_unpack_clean_path(archive_entry_pathname(e), path, sizeof path, err) < 0)
        return -1;
    entry_kind kind;
    if (classify(path, &kind, err) < 0)
        return -1;
    if (kind == ENTRY_SKIP)
        return 0;
    if (kind == ENTRY_WHITEOUT)
        return apply_whiteout(u, path, err);

    const char *link = archive_entry_hardlink(e);
    mode_t type = archive_entry_filetype(e);
    char target[PATH_MAX];
    if (link) {
        if (ink_unpack_clean_path(link, target, sizeof target, err) < 0)
            return ink_err_wrap(err, "hard link target");
        if (!target[0])
            return ink_err_set(err, 0, "hard link to the root directory");
        if (check_parents(target, err) < 0)
            return ink_err_wrap(err, "hard link target");
        archive_entry_copy_hardlink(e, target);
    } else {
        switch (type) {
        case AE_IFREG:
        case AE_IFDIR:
        case AE_IFLNK:
            break;
        case AE_IFCHR:
        case AE_IFBLK:
            return ink_err_set(err, 0, "device node refused");
        case AE_IFIFO:
            return ink_err_set(err, 0, "FIFO refused");
        case AE_IFSOCK:
            return ink_err_set(err, 0, "socket refused");
        default:
            return ink_err_set(err, 0, "unknown entry type 0%o refused", (unsigned)type);
        }
    }
    if (!path[0]) {
        /* "./": the root itself, which is the caller's directory. */
        if (type == AE_IFDIR && !link)
            return 0;
        return ink_err_set(err, 0, "non-directory entry for the root");
    }
    if (check_parents(path, err) < 0)
        return -1;
    /* No setuid, setgid (nor sticky on anything but directories). */
    mode_t perm = archive_entry_perm(e);
    archive_entry_set_perm(e, type == AE_IFDIR && !link ? perm & 01777 : perm & 0777);
    archive_entry_copy_pathname(e, path);
    if ((link || type == AE_IFREG) && charge_bytes(u, e, err) < 0)
        return -1;

    if (archive_write_header(u->out, e) != ARCHIVE_OK)
        return archive_fail(u->out, false, "extracting", err);
    if ((link || type == AE_IFREG) && copy_data(u, err) < 0)
        return -1;
    if (archive_write_finish_entry(u->out) != ARCHIVE_OK)
        return archive_fail(u->out, false, "finishing", err);
    set_put_with_parents(&u->mine, path);
    return 0;
}

static int extract_all(unpacker *u, ink_err *err)
{
    for (;;) {
        struct archive_entry *e;
        int rc = archive_read_next_header(u->in, &e);
        if (rc == ARCHIVE_EOF)
            break;
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
            archive_fail(u->in, true, "reading archive", err);
            return u->count ? ink_err_wrap(err, "after entry %s", u->shown) : -1;
        }
        const char *name = archive_entry_pathname(e);
        if (!name)
            return ink_err_set(err, 0, "entry %llu has no name", u->count + 1);
        shown_name(name, u->shown, sizeof u->shown);
        u->count++;
        /* Every entry counts, whiteouts too: each costs time and memory
         * (u->mine, libarchive's deferred directory fixups) if not disk. */
        if (u->count > u->job->max_entries - u->job->entries_before) {
            ink_err_set(err, 0, "more entries than the unpack limit of %llu for the image",
                        (unsigned long long)u->job->max_entries);
            return ink_err_wrap(err, "entry %s", u->shown);
        }
        if (extract_entry(u, e, err) < 0)
            return ink_err_wrap(err, "entry %s", u->shown);
    }
    if (archive_write_close(u->out) != ARCHIVE_OK)
        return archive_fail(u->out, false, "finishing directories", err);
    return 0;
}

static int new_reader(layer_compression comp, struct archive **out, ink_err *err)
{
    struct archive *a = archive_read_new();
    if (!a)
        return ink_err_set(err, ENOMEM, "archive_read_new");
    /* Exactly the one filter the media type names. ARCHIVE_WARN would mean
     * an external program, which the confined child cannot run. */
    int rc = ARCHIVE_OK;
    const char *name = "tar";
    switch (comp) {
    case COMP_NONE:
        rc = archive_read_support_filter_none(a);
        break;
    case COMP_GZIP:
        rc = archive_read_support_filter_gzip(a);
        name = "gzip";
        break;
    case COMP_ZSTD:
        rc = archive_read_support_filter_zstd(a);
        name = "zstd";
        break;
    }
    if (rc != ARCHIVE_OK) {
        archive_read_free(a);
        return ink_err_set(err, 0, "this libarchive cannot decompress %s in-process", name);
    }
    if (archive_read_support_format_tar(a) != ARCHIVE_OK) {
        archive_fail(a, false, "tar support", err);
        archive_read_free(a);
        return -1;
    }
    *out = a;
    return 0;
}

static int new_writer(struct archive **out, ink_err *err)
{
    struct archive *a = archive_write_disk_new();
    if (!a)
        return ink_err_set(err, ENOMEM, "archive_write_disk_new");
    if (archive_write_disk_set_options(a, EXTRACT_FLAGS) != ARCHIVE_OK) {
        archive_fail(a, false, "extraction options", err);
        archive_write_free(a);
        return -1;
    }
    *out = a;
    return 0;
}

/* Locale state the child needs, loaded while the host's files are still
 * visible (after the chroot the image's would be found instead). Names in
 * pax headers are UTF-8: under a UTF-8 LC_CTYPE libarchive keeps them as
 * they are, while in the C locale every non-ASCII byte would become '?'.
 * iconv's module configuration is read now for the same reason; the
 * seccomp filter refuses executable mappings, so no module from the image
 * could ever be loaded anyway. */
static void child_locale(void)
{
    if (!setlocale(LC_CTYPE, "C.UTF-8"))
        setlocale(LC_CTYPE, "C.utf8");
    iconv_t cd = iconv_open("UTF-8", nl_langinfo(CODESET));
    if (cd != (iconv_t)-1)
        iconv_close(cd);
    mbstate_t st = {0};
    wchar_t wc;
    mbrtowc(&wc, "a", 1, &st);
}

static int expected_filter(layer_compression comp)
{
    switch (comp) {
    case COMP_GZIP:
        return ARCHIVE_FILTER_GZIP;
    case COMP_ZSTD:
        return ARCHIVE_FILTER_ZSTD;
    case COMP_NONE:
        break;
    }
    return ARCHIVE_FILTER_NONE;
}

int ink_unpack_run(const ink_unpack_job *job, uint64_t *bytes, uint64_t *entries, ink_err *err)
{
    *bytes = 0;
    *entries = 0;
    layer_compression comp;
    if (media_type_compression(job->media_type, &comp) < 0)
        return ink_err_set(err, 0, "unsupported media type \"%s\"", job->media_type);
    if (job->bytes_before > job->max_bytes || job->entries_before > job->max_entries)
        return ink_err_set(err, 0, "the image's unpack limits are used up already");
    /* Die with the parent; and the parent may already be gone. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        return ink_err_set(err, errno, "PR_SET_PDEATHSIG");
    if (getppid() != job->parent)
        return ink_err_set(err, 0, "parent exited");
    /* A second bound on the byte limit, kept by the kernel: no file can
     * grow past what is left even if the counting below were bypassed
     * (the seccomp filter has no setrlimit to lift it). */
    rlim_t left = job->max_bytes - job->bytes_before;
    if (setrlimit(RLIMIT_FSIZE, &(struct rlimit){left, left}) < 0)
        return ink_err_set(err, errno, "RLIMIT_FSIZE");
    child_locale();
    umask(022);

    unpacker u = {.job = job};
    int rc = -1;
    if (new_reader(comp, &u.in, err) < 0 || new_writer(&u.out, err) < 0)
        goto out;
    const int keep[] = {job->layer_fd, job->report_fd};
    if (ink_unpack_confine(job->dest_fd, keep, INK_ARRAY_LEN(keep), err) < 0) {
        ink_err_wrap(err, "confining the extraction");
        goto out;
    }
    /* From here on the layer's bytes are decoded. */
    if (archive_read_open_fd(u.in, job->layer_fd, 64 * 1024) != ARCHIVE_OK) {
        archive_fail(u.in, true, "reading archive", err);
        goto out;
    }
    if (archive_filter_code(u.in, 0) != expected_filter(comp)) {
        ink_err_set(err, 0, "layer data is not %s as its media type says (found %s)",
                    comp == COMP_NONE   ? "an uncompressed tar"
                    : comp == COMP_GZIP ? "gzip-compressed"
                                        : "zstd-compressed",
                    archive_filter_name(u.in, 0));
        goto out;
    }
    rc = extract_all(&u, err);
out:
    *bytes = u.bytes;
    *entries = u.count;
    if (u.out)
        archive_write_free(u.out);
    if (u.in)
        archive_read_free(u.in);
    set_free(&u.mine);
    return rc;
}

/* ------------------------------------------------------------ confinement */

static const cap_value_t kept_caps[] = {CAP_CHOWN, CAP_FOWNER, CAP_DAC_OVERRIDE};

static bool cap_is_kept(cap_value_t c)
{
    for (size_t i = 0; i < INK_ARRAY_LEN(kept_caps); i++)
        if (kept_caps[i] == c)
            return true;
    return false;
}

static int drop_capabilities(ink_err *err)
{
    cap_value_t max = cap_max_bits();
    for (cap_value_t c = 0; c < max; c++)
        if (!cap_is_kept(c) && cap_drop_bound(c) < 0)
            return ink_err_set(err, errno, "dropping capability %d from the bounding set", c);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return ink_err_set(err, errno, "clearing ambient capabilities");

    cap_t want = cap_init(); /* everything clear, inheritable included */
    if (!want)
        return ink_err_set(err, errno, "cap_init");
    int rc = 0;
    if (cap_set_flag(want, CAP_EFFECTIVE, INK_ARRAY_LEN(kept_caps), kept_caps, CAP_SET) < 0 ||
        cap_set_flag(want, CAP_PERMITTED, INK_ARRAY_LEN(kept_caps), kept_caps, CAP_SET) < 0)
        rc = ink_err_set(err, errno, "cap_set_flag");
    else if (cap_set_proc(want) < 0)
        rc = ink_err_set(err, errno, "setting capabilities");
    if (rc == 0) {
        /* Read back what the kernel holds now. */
        cap_t now = cap_get_proc();
        if (!now || cap_compare(now, want) != 0)
            rc = ink_err_set(err, 0, "capabilities not as set after cap_set_proc");
        cap_free(now);
    }
    cap_free(want);
    if (rc < 0)
        return -1;
    for (cap_value_t c = 0; c < max; c++)
        if (cap_get_bound(c) != (cap_is_kept(c) ? 1 : 0))
            return ink_err_set(err, 0, "bounding set still holds capability %d", c);
    return 0;
}

/* What extraction needs: the calls strace shows the child making for the
 * tests' layers (glibc 2.36, libarchive 3.6, x86-64), plus the *at and
 * legacy forms of the same operations so other architectures and libc
 * versions resolve to the same set. Names unknown here are skipped. mmap
 * and mprotect are allowed only without PROT_EXEC (nothing new can ever
 * run), fcntl only for descriptor and status flags. */
/* clang-format off */
static const char *const allowed_syscalls[] = {
    "read", "lseek", "write", "close",   /* the layer (lseek: skipping data), the report */
    "openat", "newfstatat", "getdents64", /* the tree inside the chroot */
    "mkdir", "mkdirat", "unlink", "unlinkat", "rmdir",
    "symlink", "symlinkat", "link", "linkat",
    "ftruncate",                          /* a sparse file that ends in a hole */
    "fchown", "lchown", "chown", "fchownat", /* ownership, modes and times from the tar */
    "fchmod", "chmod", "fchmodat", "utimensat",
    "umask",                              /* libarchive reads it for every entry */
    "brk", "munmap", "mremap", "madvise",  /* memory */
    "exit_group", "exit", "rt_sigreturn",
#ifdef __SANITIZE_ADDRESS__
    "sigaltstack",                        /* ASan looks at it on every noreturn call */
#endif
};
/* clang-format on */

/* fcntl only for descriptor and status flags. */
static int add_fcntl_rules(void *ctx, const char **what)
{
    static const int fcntl_ops[] = {F_GETFD, F_SETFD, F_GETFL, F_SETFL};
    int rc = 0;
    *what = "fcntl";
    for (size_t i = 0; rc == 0 && i < INK_ARRAY_LEN(fcntl_ops); i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 1,
                              SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)fcntl_ops[i]));
    return rc;
}

int ink_unpack_confine(int root_fd, const int *keep_fds, size_t nkeep, ink_err *err)
{
    if (fchdir(root_fd) < 0)
        return ink_err_set(err, errno, "fchdir to the destination");
    if (chroot(".") < 0)
        return ink_err_set(err, errno, "chroot");
    if (chdir("/") < 0)
        return ink_err_set(err, errno, "chdir /");
    bool keep_root = false;
    for (size_t i = 0; i < nkeep; i++)
        keep_root |= keep_fds[i] == root_fd;
    if (!keep_root)
        close(root_fd);
    if (ink_helper_close_fds(keep_fds, nkeep, err) < 0)
        return -1;
    /* No core file (it would land in the chroot) and no ptrace from peers. */
    struct rlimit no_core = {0, 0};
    if (setrlimit(RLIMIT_CORE, &no_core) < 0)
        return ink_err_set(err, errno, "RLIMIT_CORE");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return ink_err_set(err, errno, "PR_SET_DUMPABLE");
    if (drop_capabilities(err) < 0)
        return -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return ink_err_set(err, errno, "PR_SET_NO_NEW_PRIVS");
    return ink_helper_seccomp(allowed_syscalls, INK_ARRAY_LEN(allowed_syscalls), add_fcntl_rules,
                              err);
}
