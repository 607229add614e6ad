/* Unit tests for node-agent/image/unpack.c: confined layer extraction.
 *
 * Layers are built here with libarchive's writer. Hostile layers must fail
 * with an error naming the entry and leave the directories next to the
 * destination ("sentinel", empty; "victim", holding one file) untouched.
 * Extraction needs root (chroot, chown); the tests fail without it. It runs
 * in the ink-unpack helper of this build (INK_TEST_UNPACK_HELPER). */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "image.h"
#include "testlib.h"
#include "unpack_internal.h"
#include "util.h"

#define MT_TAR "application/vnd.oci.image.layer.v1.tar"
#define MT_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define MT_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define MT_DOCKER "application/vnd.docker.image.rootfs.diff.tar.gzip"

/* ------------------------------------------------------------ fixture */

typedef struct {
    char dir[128];
    char dest[192];     /* dir/root: where layers go */
    char sentinel[192]; /* dir/sentinel: must stay empty */
    char victim[192];   /* dir/victim: holds "keep", must keep it */
    int nlayers;
    int nimages;
} fixture;

static int setup(void **state)
{
    fixture *f = ink_xcalloc(1, sizeof *f);
    if (test_mkdtemp(f->dir, sizeof f->dir, "unpack") < 0)
        return -1;
    snprintf(f->dest, sizeof f->dest, "%s/root", f->dir);
    snprintf(f->sentinel, sizeof f->sentinel, "%s/sentinel", f->dir);
    snprintf(f->victim, sizeof f->victim, "%s/victim", f->dir);
    if (mkdir(f->dest, 0755) < 0 || mkdir(f->sentinel, 0755) < 0 || mkdir(f->victim, 0755) < 0)
        return -1;
    char keep[256];
    snprintf(keep, sizeof keep, "%s/keep", f->victim);
    ink_err err = {0};
    if (ink_write_file_atomic(keep, "keep\n", 5, 0644, &err) < 0)
        return -1;
    *state = f;
    return 0;
}

/* Extraction needs root (chroot, chown): without it the test fails and
 * says why. (Valgrind 3.19 does not know seccomp(2), so this test has no
 * valgrind variant; the sanitizer build covers it.) */
static void need_root(void)
{
    if (geteuid() != 0)
        fail_msg("test_unpack needs root: extraction chroots and chowns");
}

/* ------------------------------------------------------- building layers */

typedef struct tent {
    const char *name;
    char type;       /* f file, d dir, l symlink, h hard link, c char dev, b block dev, p fifo */
    const char *arg; /* file content or link target */
    unsigned mode;   /* permission bits; 0 picks 0644 / 0755 */
    int uid, gid;
} tent;

static void write_layer(const char *path, const char *filter, const tent *ents, size_t n)
{
    struct archive *a = archive_write_new();
    assert_non_null(a);
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    if (strcmp(filter, "gzip") == 0)
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    else if (strcmp(filter, "zstd") == 0)
        assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        const tent *t = &ents[i];
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, t->name);
        archive_entry_set_uid(e, t->uid);
        archive_entry_set_gid(e, t->gid);
        archive_entry_set_mtime(e, 1700000000, 0);
        size_t size = 0;
        switch (t->type) {
        case 'f':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, t->mode ? t->mode : 0644);
            size = strlen(t->arg ? t->arg : "");
            break;
        case 'd':
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, t->mode ? t->mode : 0755);
            break;
        case 'l':
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_perm(e, 0777);
            archive_entry_set_symlink(e, t->arg);
            break;
        case 'h':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_perm(e, 0644);
            archive_entry_set_hardlink(e, t->arg);
            break;
        case 'c':
        case 'b':
            archive_entry_set_filetype(e, t->type == 'c' ? AE_IFCHR : AE_IFBLK);
            archive_entry_set_perm(e, 0666);
            archive_entry_set_rdev(e, makedev(1, 3));
            break;
        case 'p':
            archive_entry_set_filetype(e, AE_IFIFO);
            archive_entry_set_perm(e, 0644);
            break;
        default:
            fail_msg("bad type %c", t->type);
        }
        archive_entry_set_size(e, (la_int64_t)size);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        if (size)
            assert_int_equal(archive_write_data(a, t->arg, size), (la_ssize_t)size);
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* A gzip layer holding one regular file of the given size; fill writes
 * its data. */
static void write_one_file_layer(const char *path, const char *name, int64_t size,
                                 void (*fill)(struct archive *a, struct archive_entry *e,
                                              int64_t size))
{
    struct archive *a = archive_write_new();
    assert_non_null(a);
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)size);
    fill(a, e, size);
    archive_entry_free(e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

static void fill_zeros(struct archive *a, struct archive_entry *e, int64_t size)
{
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    static const char zeros[64 * 1024];
    for (int64_t done = 0; done < size; done += (int64_t)sizeof zeros) {
        size_t n = size - done < (int64_t)sizeof zeros ? (size_t)(size - done) : sizeof zeros;
        assert_int_equal(archive_write_data(a, zeros, n), (la_ssize_t)n);
    }
}

/* 4 bytes of data, the rest a hole. */
static void fill_sparse(struct archive *a, struct archive_entry *e, int64_t size)
{
    (void)size;
    archive_entry_sparse_add_entry(e, 0, 4);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, "data", 4), 4);
}

/* A gzip layer holding one file of size zero bytes: it compresses about
 * a thousandfold. */
static void write_zeros_layer(const char *path, const char *name, size_t size)
{
    write_one_file_layer(path, name, (int64_t)size, fill_zeros);
}

/* A layer holding one sparse file of the given size with 4 bytes of data:
 * a few hundred bytes of layer. */
static void write_sparse_layer(const char *path, const char *name, int64_t size)
{
    write_one_file_layer(path, name, size, fill_sparse);
}

/* Writes the entries as the fixture's next gzip layer and unpacks it. */
static int unpack(fixture *f, const tent *ents, size_t n, ink_err *err)
{
    char path[256];
    snprintf(path, sizeof path, "%s/layer%d.tar.gz", f->dir, f->nlayers++);
    write_layer(path, "gzip", ents, n);
    return ink_layer_unpack(path, MT_GZIP, f->dest, err);
}

#define UNPACK_OK(f, ents)                                                                         \
    do {                                                                                           \
        ink_err err_ = {0};                                                                        \
        if (unpack(f, ents, INK_ARRAY_LEN(ents), &err_) < 0)                                       \
            fail_msg("unpack: %s", err_.msg);                                                      \
    } while (0)

static bool dir_empty(const char *path)
{
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *de;
    bool empty = true;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            empty = false;
    closedir(d);
    return empty;
}

static void assert_surroundings_intact(fixture *f)
{
    assert_true(dir_empty(f->sentinel));
    char keep[256], evil[256];
    snprintf(keep, sizeof keep, "%s/keep", f->victim);
    assert_int_equal(access(keep, F_OK), 0);
    snprintf(evil, sizeof evil, "%s/evil", f->dir);
    assert_int_equal(access(evil, F_OK), -1);
}

/* The layer must fail with an error that contains each of the needles. */
static void expect_refused(fixture *f, const tent *ents, size_t n, const char *needle1,
                           const char *needle2)
{
    ink_err err = {0};
    int rc = unpack(f, ents, n, &err);
    if (rc == 0)
        fail_msg("hostile layer (entry %s) unpacked without error", ents[n - 1].name);
    print_message("    refused: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "layer "));
    if (needle1 && !strstr(err.msg, needle1))
        fail_msg("\"%s\" not in: %s", needle1, err.msg);
    if (needle2 && !strstr(err.msg, needle2))
        fail_msg("\"%s\" not in: %s", needle2, err.msg);
    assert_surroundings_intact(f);
}

#define EXPECT_REFUSED(f, ents, n1, n2) expect_refused(f, ents, INK_ARRAY_LEN(ents), n1, n2)

static char *at(fixture *f, const char *rel)
{
    static char buf[4][512];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", f->dest, rel);
    return b;
}

static void assert_content(fixture *f, const char *rel, const char *want)
{
    char *got = NULL;
    ink_err err = {0};
    if (ink_read_file(at(f, rel), 1 << 20, &got, NULL, &err) < 0)
        fail_msg("%s", err.msg);
    assert_string_equal(got, want);
    free(got);
}

static struct stat lstat_of(fixture *f, const char *rel)
{
    struct stat st;
    if (lstat(at(f, rel), &st) < 0)
        fail_msg("lstat %s: %s", rel, strerror(errno));
    return st;
}

static bool exists(fixture *f, const char *rel)
{
    struct stat st;
    return lstat(at(f, rel), &st) == 0;
}

/* ------------------------------------------------------------ path rules */

static void test_clean_path(void **state)
{
    (void)state;
    char out[PATH_MAX];
    ink_err err = {0};
    struct {
        const char *in, *out;
    } ok[] = {
        {"a", "a"}, {"./a/b", "a/b"},   {"a//b/", "a/b"},       {"./", ""},
        {".", ""},  {"a/./b/.", "a/b"}, {"..a/b..", "..a/b.."},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(ok); i++) {
        if (ink_unpack_clean_path(ok[i].in, out, sizeof out, &err) < 0)
            fail_msg("%s: %s", ok[i].in, err.msg);
        assert_string_equal(out, ok[i].out);
    }
    const char *bad[] = {"..", "../a", "a/..", "a/../b", "/a", "//a", "./../a"};
    for (size_t i = 0; i < INK_ARRAY_LEN(bad); i++)
        if (ink_unpack_clean_path(bad[i], out, sizeof out, &err) == 0)
            fail_msg("%s accepted", bad[i]);
    char deep[INK_UNPACK_MAX_DEPTH * 2 + 8] = "";
    for (int i = 0; i <= INK_UNPACK_MAX_DEPTH; i++)
        strcat(deep, "a/");
    assert_int_equal(ink_unpack_clean_path(deep, out, sizeof out, &err), -1);
    char *longname = ink_xcalloc(1, PATH_MAX + 2);
    memset(longname, 'x', PATH_MAX);
    assert_int_equal(ink_unpack_clean_path(longname, out, sizeof out, &err), -1);
    free(longname);
}

/* ---------------------------------------------------------- normal layers */

static void test_regular_layer(void **state)
{
    fixture *f = *state;
    need_root();
    const tent l[] = {
        {"./", 'd', NULL, 0755, 0, 0},
        {"./etc/", 'd', NULL, 0755, 0, 0},
        {"./etc/hostname", 'f', "ink\n", 0644, 0, 0},
        {"home/user/", 'd', NULL, 0750, 1000, 1000},
        {"home/user/notes.txt", 'f', "mine\n", 0600, 1000, 1001},
        {"usr/bin/su", 'f', "#!suid\n", 04755, 0, 0},
        {"usr/bin/wall", 'f', "#!sgid\n", 02755, 0, 5},
        {"srv/shared/", 'd', NULL, 02775, 0, 0},
        {"tmp/", 'd', NULL, 01777, 0, 0},
        {"usr/bin/sh", 'l', "/bin/busybox", 0, 1002, 1002},
        {"usr/bin/up", 'l', "../../etc/hostname", 0, 0, 0},
        {"etc/hostname.link", 'h', "etc/hostname", 0, 0, 0},
        {"caf\xc3\xa9/\xe2\x98\x83.txt", 'f', "snow\n", 0644, 0, 0},
        {"deep/a/b/c/d/e/f", 'f', "deep\n", 0644, 0, 0},
    };
    UNPACK_OK(f, l);

    assert_content(f, "etc/hostname", "ink\n");
    assert_content(f, "home/user/notes.txt", "mine\n");
    assert_content(f, "caf\xc3\xa9/\xe2\x98\x83.txt", "snow\n");
    assert_content(f, "deep/a/b/c/d/e/f", "deep\n");

    struct stat st = lstat_of(f, "home/user/notes.txt");
    assert_int_equal(st.st_uid, 1000);
    assert_int_equal(st.st_gid, 1001);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_mtime, 1700000000);
    st = lstat_of(f, "home/user");
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_uid, 1000);
    assert_int_equal(st.st_mode & 07777, 0750);
    assert_int_equal(st.st_mtime, 1700000000);

    /* setuid and setgid are stripped; sticky stays on directories. */
    assert_int_equal(lstat_of(f, "usr/bin/su").st_mode & 07777, 0755);
    assert_int_equal(lstat_of(f, "usr/bin/wall").st_mode & 07777, 0755);
    assert_int_equal(lstat_of(f, "usr/bin/wall").st_gid, 5);
    assert_int_equal(lstat_of(f, "srv/shared").st_mode & 07777, 0775);
    assert_int_equal(lstat_of(f, "tmp").st_mode & 07777, 01777);

    char target[256];
    st = lstat_of(f, "usr/bin/sh");
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(st.st_uid, 1002);
    ssize_t n = readlink(at(f, "usr/bin/sh"), target, sizeof target - 1);
    assert_true(n > 0);
    target[n] = '\0';
    assert_string_equal(target, "/bin/busybox");
    n = readlink(at(f, "usr/bin/up"), target, sizeof target - 1);
    assert_true(n > 0);
    target[n] = '\0';
    assert_string_equal(target, "../../etc/hostname");

    struct stat a = lstat_of(f, "etc/hostname"), b = lstat_of(f, "etc/hostname.link");
    assert_int_equal(a.st_ino, b.st_ino);
    assert_int_equal(a.st_nlink, 2);
}

static void test_compressions(void **state)
{
    fixture *f = *state;
    need_root();
    const tent l[] = {{"plain", 'f', "tar\n", 0, 0, 0}};
    struct {
        const char *filter, *media_type, *file;
    } kinds[] = {
        {"none", MT_TAR, "plain"},
        {"gzip", MT_GZIP, "gz"},
        {"gzip", MT_DOCKER, "docker"},
        {"zstd", MT_ZSTD, "zst"},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(kinds); i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s.layer", f->dir, kinds[i].file);
        write_layer(path, kinds[i].filter, l, 1);
        ink_err err = {0};
        if (ink_layer_unpack(path, kinds[i].media_type, f->dest, &err) < 0)
            fail_msg("%s: %s", kinds[i].media_type, err.msg);
        assert_content(f, "plain", "tar\n");
        unlink(at(f, "plain"));
    }
    /* An empty layer is fine too. */
    char path[256];
    snprintf(path, sizeof path, "%s/empty.tar.gz", f->dir);
    write_layer(path, "gzip", NULL, 0);
    ink_err err = {0};
    if (ink_layer_unpack(path, MT_GZIP, f->dest, &err) < 0)
        fail_msg("%s", err.msg);
    assert_true(dir_empty(f->dest));
}

/* -------------------------------------------------- layers and whiteouts */

static void test_whiteouts(void **state)
{
    fixture *f = *state;
    need_root();
    const tent l1[] = {
        {"a/", 'd', NULL, 0, 0, 0},
        {"a/x", 'f', "x\n", 0, 0, 0},
        {"a/y", 'f', "y\n", 0, 0, 0},
        {"b/", 'd', NULL, 0, 0, 0},
        {"b/old", 'f', "old\n", 0, 0, 0},
        {"b/keepdir/", 'd', NULL, 0700, 7, 7},
        {"b/keepdir/old2", 'f', "old2\n", 0, 0, 0},
        {"b/gone/deeper/file", 'f', "g\n", 0, 0, 0},
        {"c", 'f', "c\n", 0, 0, 0},
        {"d/deep/er/file", 'f', "d\n", 0, 0, 0},
        {"e", 'f', "e1\n", 0, 0, 0},
        {"link", 'l', "a", 0, 0, 0},
        {"shared", 'f', "shared\n", 0, 0, 0},
    };
    UNPACK_OK(f, l1);
    const tent l2[] = {
        {"a/.wh.x", 'f', "", 0, 0, 0},          /* deletes a/x */
        {".wh.c", 'f', "", 0, 0, 0},            /* deletes c */
        {"d/.wh.deep", 'f', "", 0, 0, 0},       /* deletes a tree */
        {".wh.nothing-here", 'f', "", 0, 0, 0}, /* no-op */
        {"nodir/.wh.x", 'f', "", 0, 0, 0},      /* no-op */
        {"b/new", 'f', "new\n", 0, 0, 0},       /* before the opaque marker */
        {"b/keepdir/new2", 'f', "new2\n", 0, 0, 0},
        {"b/.wh..wh..opq", 'f', "", 0, 0, 0},       /* empties b of lower entries */
        {"b/later", 'f', "later\n", 0, 0, 0},       /* after the marker */
        {"e", 'f', "e2\n", 0, 0, 0},                /* replaced, then ... */
        {".wh.e", 'f', "", 0, 0, 0},                /* ... not hidden: same layer */
        {"link", 'f', "now a file\n", 0, 0, 0},     /* symlink replaced by a file */
        {"hl", 'h', "shared", 0, 0, 0},             /* hard link to a lower file */
        {".wh..wh.plnk/123", 'f', "aufs", 0, 0, 0}, /* AUFS metadata: skipped */
    };
    UNPACK_OK(f, l2);

    assert_false(exists(f, "a/x"));
    assert_content(f, "a/y", "y\n");
    assert_false(exists(f, "c"));
    assert_true(exists(f, "d"));
    assert_false(exists(f, "d/deep"));
    assert_false(exists(f, "a/.wh.x"));
    assert_false(exists(f, ".wh.c"));
    assert_false(exists(f, "b/.wh..wh..opq"));
    assert_false(exists(f, ".wh..wh.plnk"));
    assert_content(f, "b/new", "new\n");
    assert_content(f, "b/later", "later\n");
    assert_content(f, "b/keepdir/new2", "new2\n");
    assert_false(exists(f, "b/old"));
    assert_false(exists(f, "b/keepdir/old2"));
    assert_false(exists(f, "b/gone"));
    /* keepdir came from the lower layer and stays, with its metadata. */
    assert_int_equal(lstat_of(f, "b/keepdir").st_uid, 7);
    assert_content(f, "e", "e2\n");
    assert_content(f, "link", "now a file\n");
    assert_content(f, "a/y", "y\n"); /* not written through the old link */
    assert_int_equal(lstat_of(f, "hl").st_ino, lstat_of(f, "shared").st_ino);

    const tent l3[] = {
        {".wh.b", 'f', "", 0, 0, 0},
        {"fresh/.wh..wh..opq", 'f', "", 0, 0, 0}, /* opaque, nothing below */
        {"fresh/one", 'f', "1\n", 0, 0, 0},
    };
    UNPACK_OK(f, l3);
    assert_false(exists(f, "b"));
    assert_content(f, "fresh/one", "1\n");
}

/* An image in a fresh store under the fixture's directory: the layer
 * files (moved into the store) get the digests sha256:0...01, 0...02 and so
 * on, the manifest sha256:0...09. */
typedef struct test_image {
    ink_image_store *store;
    char digests[4][INK_DIGEST_MAX];
    char *layers[4];
    char *types[4];
    ink_image img;
} test_image;

static void make_image(fixture *f, test_image *ti, const char *const *files,
                       const char *const *types, size_t n)
{
    assert_true(n <= INK_ARRAY_LEN(ti->layers));
    *ti = (test_image){0};
    char root[256];
    snprintf(root, sizeof root, "%s/store%d", f->dir, f->nimages++);
    ink_err err = {0};
    if (ink_image_store_open(root, &ti->store, &err) < 0)
        fail_msg("%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        snprintf(ti->digests[i], sizeof ti->digests[i], "sha256:%064zu", i + 1);
        ti->layers[i] = ti->digests[i];
        ti->types[i] = (char *)types[i];
        char *blob = ink_image_blob_path(ti->store, ti->layers[i]);
        assert_non_null(blob);
        char *dir = ink_xstrdup(blob);
        *strrchr(dir, '/') = '\0';
        assert_int_equal(ink_mkdir_p(dir, 0755, &err), 0);
        assert_int_equal(rename(files[i], blob), 0);
        free(dir);
        free(blob);
    }
    snprintf(ti->img.manifest_digest, sizeof ti->img.manifest_digest, "sha256:%064d", 9);
    ti->img.layers = ti->layers;
    ti->img.layer_media_types = ti->types;
    ti->img.nlayers = n;
}

/* The same, through ink_image_unpack and the image store. */
static void test_image_unpack(void **state)
{
    fixture *f = *state;
    need_root();
    char l1[256], l2[256];
    snprintf(l1, sizeof l1, "%s/l1.tar.gz", f->dir);
    snprintf(l2, sizeof l2, "%s/l2.tar", f->dir);
    const tent e1[] = {{"etc/os-release", 'f', "ink\n", 0, 0, 0}, {"gone", 'f', "x", 0, 0, 0}};
    const tent e2[] = {{".wh.gone", 'f', "", 0, 0, 0}, {"app/run", 'f', "run\n", 0755, 0, 0}};
    write_layer(l1, "gzip", e1, 2);
    write_layer(l2, "none", e2, 2);
    test_image ti;
    make_image(f, &ti, (const char *[]){l1, l2}, (const char *[]){MT_DOCKER, MT_TAR}, 2);

    ink_err err = {0};
    char dest[256];
    snprintf(dest, sizeof dest, "%s/rootfs", f->dir);
    if (ink_image_unpack(ti.store, &ti.img, dest, &err) < 0)
        fail_msg("%s", err.msg);
    char path[300];
    snprintf(path, sizeof path, "%s/app/run", dest);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);
    snprintf(path, sizeof path, "%s/gone", dest);
    assert_int_equal(access(path, F_OK), -1);

    /* Not into a directory that already holds something. */
    assert_int_equal(ink_image_unpack(ti.store, &ti.img, dest, &err), -1);
    assert_non_null(strstr(err.msg, "not empty"));

    /* A bad layer is named with the image. */
    ti.types[1] = "application/x-nonsense";
    snprintf(dest, sizeof dest, "%s/rootfs2", f->dir);
    assert_int_equal(ink_image_unpack(ti.store, &ti.img, dest, &err), -1);
    print_message("    %s\n", err.msg);
    assert_non_null(strstr(err.msg, "layer 2 of 2"));
    assert_non_null(strstr(err.msg, "unsupported media type"));
    ink_image_store_close(ti.store);
}

/* ------------------------------------------------------------------ limits */

/* "layer I+1 of N (<digest>)", as errors name a layer of ti. */
static const char *layer_named(const test_image *ti, size_t i)
{
    static char buf[128];
    snprintf(buf, sizeof buf, "layer %zu of %zu (%s)", i + 1, ti->img.nlayers, ti->digests[i]);
    return buf;
}

/* Unpacks ti into the fixture's next directory "<dir>/limitsN" with the
 * given limits; returns that directory in dest. */
static int unpack_limited(fixture *f, test_image *ti, uint64_t max_bytes, uint64_t max_entries,
                          char *dest, size_t destlen, ink_err *err)
{
    static int n;
    snprintf(dest, destlen, "%s/limits%d", f->dir, n++);
    const ink_unpack_limits lim = {.max_bytes = max_bytes, .max_entries = max_entries};
    return ink_image_unpack_opts(ti->store, &ti->img, dest, &lim, err);
}

static bool exists_in(const char *dir, const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    struct stat st;
    return lstat(path, &st) == 0;
}

static void assert_has(const char *msg, const char *needle)
{
    if (!strstr(msg, needle))
        fail_msg("\"%s\" not in: %s", needle, msg);
}

/* Regular-file bytes add up over the layers; the file that would cross the
 * limit is refused before it is created, and the error names the layer. */
static void test_byte_limit(void **state)
{
    fixture *f = *state;
    need_root();
    char a[601], b[601];
    memset(a, 'a', 600);
    memset(b, 'b', 600);
    a[600] = b[600] = '\0';
    char l1[256], l2[256];
    snprintf(l1, sizeof l1, "%s/l1.tar.gz", f->dir);
    snprintf(l2, sizeof l2, "%s/l2.tar.gz", f->dir);
    const tent e1[] = {{"d/", 'd', NULL, 0, 0, 0}, {"d/a", 'f', a, 0, 0, 0}};
    const tent e2[] = {
        {"c", 'f', "0123456789", 0, 0, 0}, {"b", 'f', b, 0, 0, 0}, {"link", 'l', "d/a", 0, 0, 0}};
    write_layer(l1, "gzip", e1, 2);
    write_layer(l2, "gzip", e2, 3);
    test_image ti;
    make_image(f, &ti, (const char *[]){l1, l2}, (const char *[]){MT_GZIP, MT_GZIP}, 2);

    ink_err err = {0};
    char dest[256];
    assert_int_equal(unpack_limited(f, &ti, 1000, 0, dest, sizeof dest, &err), -1);
    print_message("    refused: %s\n", err.msg);
    assert_has(err.msg, layer_named(&ti, 1));
    assert_has(err.msg, "entry b: file of 600 bytes exceeds the unpack limit of 1000 bytes");
    assert_has(err.msg, "(610 bytes written before it)");
    assert_true(exists_in(dest, "d/a"));
    assert_true(exists_in(dest, "c"));
    assert_false(exists_in(dest, "b"));
    assert_false(exists_in(dest, "link"));

    /* Exactly the limit is fine; 0 is the default. */
    if (unpack_limited(f, &ti, 1210, 0, dest, sizeof dest, &err) < 0)
        fail_msg("at the limit: %s", err.msg);
    assert_true(exists_in(dest, "link"));
    if (unpack_limited(f, &ti, 0, 0, dest, sizeof dest, &err) < 0)
        fail_msg("default limits: %s", err.msg);
    assert_true(exists_in(dest, "b"));
    ink_image_store_close(ti.store);
}

/* Entries of every kind count, whiteouts too. */
static void test_entry_limit(void **state)
{
    fixture *f = *state;
    need_root();
    char l1[256], l2[256];
    snprintf(l1, sizeof l1, "%s/l1.tar", f->dir);
    snprintf(l2, sizeof l2, "%s/l2.tar.zst", f->dir);
    const tent e1[] = {
        {"d/", 'd', NULL, 0, 0, 0}, {"d/x", 'f', "x", 0, 0, 0}, {"y", 'l', "d/x", 0, 0, 0}};
    const tent e2[] = {
        {".wh.y", 'f', "", 0, 0, 0}, {"z", 'f', "z", 0, 0, 0}, {"w/", 'd', NULL, 0, 0, 0}};
    write_layer(l1, "none", e1, 3);
    write_layer(l2, "zstd", e2, 3);
    test_image ti;
    make_image(f, &ti, (const char *[]){l1, l2}, (const char *[]){MT_TAR, MT_ZSTD}, 2);

    ink_err err = {0};
    char dest[256];
    assert_int_equal(unpack_limited(f, &ti, 0, 5, dest, sizeof dest, &err), -1);
    print_message("    refused: %s\n", err.msg);
    assert_has(err.msg, layer_named(&ti, 1));
    assert_has(err.msg, "entry w/: more entries than the unpack limit of 5 for the image");
    assert_true(exists_in(dest, "z"));
    assert_false(exists_in(dest, "y"));
    assert_false(exists_in(dest, "w"));

    if (unpack_limited(f, &ti, 0, 6, dest, sizeof dest, &err) < 0)
        fail_msg("at the limit: %s", err.msg);
    assert_true(exists_in(dest, "w"));
    /* One layer alone over the limit: refused at its first entry too much. */
    assert_int_equal(unpack_limited(f, &ti, 0, 2, dest, sizeof dest, &err), -1);
    assert_has(err.msg, "layer 1 of 2");
    assert_has(err.msg, "entry y: more entries than the unpack limit of 2");
    ink_image_store_close(ti.store);
}

/* A small layer that expands a thousandfold, and a sparse file that claims
 * more than the default limit: both refused before anything is written. */
static void test_gzip_bomb(void **state)
{
    fixture *f = *state;
    need_root();
    char bomb[256];
    snprintf(bomb, sizeof bomb, "%s/bomb.tar.gz", f->dir);
    write_zeros_layer(bomb, "zeros", 64 << 20);
    struct stat st;
    assert_int_equal(stat(bomb, &st), 0);
    assert_true(st.st_size < (1 << 20));
    test_image ti;
    make_image(f, &ti, (const char *[]){bomb}, (const char *[]){MT_GZIP}, 1);
    ink_err err = {0};
    char dest[256];
    assert_int_equal(unpack_limited(f, &ti, 1 << 20, 0, dest, sizeof dest, &err), -1);
    print_message("    refused: %s\n", err.msg);
    assert_has(err.msg, "layer 1 of 1 (sha256:");
    assert_has(err.msg, "entry zeros: file of 67108864 bytes exceeds the unpack limit of 1048576");
    assert_false(exists_in(dest, "zeros"));
    ink_image_store_close(ti.store);

    /* ink_layer_unpack and ink_image_unpack have the default limits. */
    char sparse[256];
    snprintf(sparse, sizeof sparse, "%s/sparse.tar.gz", f->dir);
    write_sparse_layer(sparse, "huge", INK_UNPACK_DEFAULT_MAX_BYTES + 1);
    assert_int_equal(ink_layer_unpack(sparse, MT_GZIP, f->dest, &err), -1);
    print_message("    refused: %s\n", err.msg);
    assert_has(err.msg, sparse);
    assert_has(err.msg, "entry huge: file of 10737418241 bytes exceeds the unpack limit of "
                        "10737418240 bytes");
    assert_false(exists(f, "huge"));
    write_sparse_layer(sparse, "huge", INK_UNPACK_DEFAULT_MAX_BYTES);
    if (ink_layer_unpack(sparse, MT_GZIP, f->dest, &err) < 0)
        fail_msg("sparse file at the limit: %s", err.msg);
    assert_int_equal(lstat_of(f, "huge").st_size, (off_t)INK_UNPACK_DEFAULT_MAX_BYTES);
    assert_true(lstat_of(f, "huge").st_blocks < 1024);
    assert_surroundings_intact(f);
}

/* ------------------------------------------------------------- the helper */

/* Extraction runs in the program set with ink_image_set_unpack_helper. */
static void test_helper_path(void **state)
{
    fixture *f = *state;
    need_root();
    const tent one[] = {{"x", 'f', "x", 0, 0, 0}};
    char path[256];
    snprintf(path, sizeof path, "%s/one.tar", f->dir);
    write_layer(path, "none", one, 1);
    ink_err err = {0};

    char missing[256];
    snprintf(missing, sizeof missing, "%s/no-such-dir/ink-unpack", f->dir);
    ink_image_set_unpack_helper(missing);
    assert_int_equal(ink_layer_unpack(path, MT_TAR, f->dest, &err), -1);
    print_message("    %s\n", err.msg);
    assert_has(err.msg, path);
    assert_has(err.msg, "starting the unpack helper");
    assert_has(err.msg, missing);
    assert_has(err.msg, "No such file or directory");
    assert_int_equal(err.errnum, ENOENT);

    /* Some other program: it does not answer as the helper would. */
    ink_image_set_unpack_helper("/bin/true");
    assert_int_equal(ink_layer_unpack(path, MT_TAR, f->dest, &err), -1);
    print_message("    %s\n", err.msg);
    assert_has(err.msg, "unpack helper /bin/true exited with status 0 and no report");

    /* The default search, from this test's directory: not found there,
     * unless an installed helper exists. */
    ink_image_set_unpack_helper(NULL);
    if (ink_layer_unpack(path, MT_TAR, f->dest, &err) < 0) {
        print_message("    %s\n", err.msg);
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        assert_true(n > 0);
        self[n] = '\0';
        *strrchr(self, '/') = '\0';
        char want[PATH_MAX + 64];
        snprintf(want, sizeof want,
                 "unpack helper ink-unpack not found (tried %s/ink-unpack, "
                 "%s/../libexec/ink/ink-unpack, /",
                 self, self);
        assert_has(err.msg, want);
        assert_false(exists(f, "x"));
    }

    ink_image_set_unpack_helper(INK_TEST_UNPACK_HELPER);
    if (ink_layer_unpack(path, MT_TAR, f->dest, &err) < 0)
        fail_msg("%s", err.msg);
    assert_content(f, "x", "x");
}

/* ---------------------------------------------------------- hostile layers */

static void test_dotdot_and_absolute(void **state)
{
    fixture *f = *state;
    need_root();
    const tent up[] = {{"ok", 'f', "ok", 0, 0, 0}, {"../evil", 'f', "pwned", 0, 0, 0}};
    EXPECT_REFUSED(f, up, "entry ../evil", "\"..\"");
    const tent up2[] = {{"a/../../evil", 'f', "pwned", 0, 0, 0}};
    EXPECT_REFUSED(f, up2, "entry a/../../evil", "\"..\"");
    const tent up3[] = {{"../sentinel/evil", 'd', NULL, 0, 0, 0}};
    EXPECT_REFUSED(f, up3, "entry ../sentinel/evil", NULL);

    char abs[128];
    snprintf(abs, sizeof abs, "/tmp/ink-unpack-abs-%d/evil", (int)getpid());
    const tent ab[] = {{abs, 'f', "pwned", 0, 0, 0}};
    EXPECT_REFUSED(f, ab, "absolute path", abs);
    *strrchr(abs, '/') = '\0';
    assert_int_equal(access(abs, F_OK), -1);
}

static void test_symlink_escape(void **state)
{
    fixture *f = *state;
    need_root();
    /* Through a symlink in the same layer, relative and absolute. */
    const tent rel[] = {{"esc", 'l', "../sentinel", 0, 0, 0}, {"esc/pwned", 'f', "pwned", 0, 0, 0}};
    EXPECT_REFUSED(f, rel, "entry esc/pwned", "symlink");
    const tent abs[] = {{"esc2", 'l', f->sentinel, 0, 0, 0}, {"esc2/pwned", 'f', "pwned", 0, 0, 0}};
    EXPECT_REFUSED(f, abs, "entry esc2/pwned", "symlink");
    const tent up[] = {{"esc3", 'l', "../..", 0, 0, 0},
                       {"esc3/sentinel/pwned", 'd', NULL, 0, 0, 0}};
    EXPECT_REFUSED(f, up, "entry esc3/sentinel/pwned", "symlink");

    /* A symlink from a lower layer, used as a directory by an upper one. */
    const tent l1[] = {{"lower", 'l', f->sentinel, 0, 0, 0}};
    UNPACK_OK(f, l1);
    const tent l2[] = {{"lower/pwned", 'f', "pwned", 0, 0, 0}};
    EXPECT_REFUSED(f, l2, "entry lower/pwned", "symlink");
    /* A hard link whose target goes through it. */
    const tent l3[] = {{"hl", 'h', "lower/keep", 0, 0, 0}};
    EXPECT_REFUSED(f, l3, "entry hl", "symlink");

    /* The links themselves are fine as text, and replacing one by a file
     * writes the file, not through the link. */
    assert_true(S_ISLNK(lstat_of(f, "lower").st_mode));
    const tent l4[] = {{"lower", 'f', "file now", 0, 0, 0}};
    UNPACK_OK(f, l4);
    assert_content(f, "lower", "file now");
    assert_surroundings_intact(f);
}

static void test_hardlink_escape(void **state)
{
    fixture *f = *state;
    need_root();
    const tent up[] = {{"passwd", 'h', "../../etc/passwd", 0, 0, 0}};
    EXPECT_REFUSED(f, up, "entry passwd", "hard link target");
    const tent abs[] = {{"passwd", 'h', "/etc/passwd", 0, 0, 0}};
    EXPECT_REFUSED(f, abs, "entry passwd", "absolute");
    char keep[256];
    snprintf(keep, sizeof keep, "%s/keep", f->victim);
    struct stat st;
    assert_int_equal(stat(keep, &st), 0);
    assert_int_equal(st.st_nlink, 1);
    /* A link to something that is not there (outside the chroot it would
     * be): libarchive's own error, still naming the entry. */
    const tent missing[] = {{"k", 'h', "victim/keep", 0, 0, 0}};
    EXPECT_REFUSED(f, missing, "entry k", NULL);
    assert_int_equal(stat(keep, &st), 0);
    assert_int_equal(st.st_nlink, 1);
}

static void test_special_files(void **state)
{
    fixture *f = *state;
    need_root();
    const tent chr[] = {{"dev/", 'd', NULL, 0, 0, 0}, {"dev/mem", 'c', NULL, 0, 0, 0}};
    EXPECT_REFUSED(f, chr, "entry dev/mem", "device node");
    assert_false(exists(f, "dev/mem"));
    const tent blk[] = {{"dev/sda", 'b', NULL, 0, 0, 0}};
    EXPECT_REFUSED(f, blk, "entry dev/sda", "device node");
    const tent fifo[] = {{"run/fifo", 'p', NULL, 0, 0, 0}};
    EXPECT_REFUSED(f, fifo, "entry run/fifo", "FIFO");
    /* Control characters in names are not passed on to logs. */
    const tent ctl[] = {{"dev/\x1b[2Jtty", 'c', NULL, 0, 0, 0}};
    EXPECT_REFUSED(f, ctl, "entry dev/?[2Jtty", NULL);
}

static void test_whiteout_abuse(void **state)
{
    fixture *f = *state;
    need_root();
    const tent w1[] = {{".wh.../victim", 'f', "", 0, 0, 0}};
    EXPECT_REFUSED(f, w1, "whiteout abuse", NULL);
    const tent w2[] = {{"a/.wh..", 'f', "", 0, 0, 0}};
    EXPECT_REFUSED(f, w2, "whiteout abuse", NULL);
    const tent w3[] = {{".wh.", 'f', "", 0, 0, 0}};
    EXPECT_REFUSED(f, w3, "whiteout abuse", NULL);
    const tent w4[] = {{"../.wh.victim", 'f', "", 0, 0, 0}};
    EXPECT_REFUSED(f, w4, "entry ../.wh.victim", "\"..\"");
    const tent w5[] = {{"x/../../victim/.wh.keep", 'f', "", 0, 0, 0}};
    EXPECT_REFUSED(f, w5, "\"..\"", NULL);
    const tent w6[] = {{".wh.x/inside", 'f', "", 0, 0, 0}};
    EXPECT_REFUSED(f, w6, "whiteout abuse", NULL);

    /* Whiteouts and opaque markers do not go through symlinks. */
    const tent l1[] = {{"lnk", 'l', "../victim", 0, 0, 0}, {"abs", 'l', f->victim, 0, 0, 0}};
    UNPACK_OK(f, l1);
    const tent w7[] = {{"lnk/.wh.keep", 'f', "", 0, 0, 0}};
    EXPECT_REFUSED(f, w7, "entry lnk/.wh.keep", "symlink");
    const tent w8[] = {{"abs/.wh..wh..opq", 'f', "", 0, 0, 0}};
    EXPECT_REFUSED(f, w8, "entry abs/.wh..wh..opq", "symlink");
    /* Whiting out the link itself removes the link only. */
    const tent w9[] = {{".wh.abs", 'f', "", 0, 0, 0}, {".wh.lnk", 'f', "", 0, 0, 0}};
    UNPACK_OK(f, w9);
    assert_false(exists(f, "abs"));
    assert_surroundings_intact(f);
}

/* ------------------------------------------------------ broken layer files */

static void expect_file_refused(fixture *f, const char *path, const char *media_type,
                                const char *needle)
{
    ink_err err = {0};
    assert_int_equal(ink_layer_unpack(path, media_type, f->dest, &err), -1);
    print_message("    refused: %s\n", err.msg);
    assert_non_null(strstr(err.msg, path));
    if (needle && !strstr(err.msg, needle))
        fail_msg("\"%s\" not in: %s", needle, err.msg);
    assert_surroundings_intact(f);
}

static void test_broken_files(void **state)
{
    fixture *f = *state;
    need_root();
    /* Truncated gzip: half of a layer with incompressible content. */
    char *big = ink_xmalloc(200001);
    uint32_t x = 12345;
    for (size_t i = 0; i < 200000; i++) {
        x = x * 1103515245u + 12345u;
        big[i] = (char)('!' + (x >> 16) % 90);
    }
    big[200000] = '\0';
    const tent l[] = {{"big", 'f', big, 0, 0, 0}, {"after", 'f', "after", 0, 0, 0}};
    char path[256];
    snprintf(path, sizeof path, "%s/trunc.tar.gz", f->dir);
    write_layer(path, "gzip", l, 2);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    expect_file_refused(f, path, MT_GZIP, "entry big");
    free(big);

    snprintf(path, sizeof path, "%s/garbage", f->dir);
    char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 7 + 3);
    ink_err err = {0};
    assert_int_equal(ink_write_file_atomic(path, junk, sizeof junk, 0644, &err), 0);
    expect_file_refused(f, path, MT_GZIP, "reading archive");
    expect_file_refused(f, path, MT_TAR, "reading archive");
    expect_file_refused(f, path, MT_ZSTD, "reading archive");

    /* Declared gzip, but a plain tar. */
    const tent one[] = {{"x", 'f', "x", 0, 0, 0}};
    snprintf(path, sizeof path, "%s/plain.tar", f->dir);
    write_layer(path, "none", one, 1);
    expect_file_refused(f, path, MT_GZIP, "not gzip-compressed");
    assert_false(exists(f, "x"));
}

/* Refused before any child is started: these run under valgrind too. */
static void test_refused_early(void **state)
{
    fixture *f = *state;
    const tent one[] = {{"x", 'f', "x", 0, 0, 0}};
    char path[256];
    snprintf(path, sizeof path, "%s/plain.tar", f->dir);
    write_layer(path, "none", one, 1);
    expect_file_refused(f, path, "application/vnd.oci.image.layer.v1.tar+bzip2",
                        "unsupported media type");
    expect_file_refused(f, path, "", "unsupported media type");
    ink_err err = {0};
    assert_int_equal(ink_layer_unpack(path, NULL, f->dest, &err), -1);
    assert_non_null(strstr(err.msg, "unsupported media type"));
    expect_file_refused(f, f->sentinel, MT_TAR, "not a regular file");
    assert_int_equal(ink_layer_unpack(path, MT_TAR, path, &err), -1);
    assert_non_null(strstr(err.msg, "open destination"));
    snprintf(path, sizeof path, "%s/does-not-exist", f->dir);
    expect_file_refused(f, path, MT_TAR, "No such file");
    assert_true(dir_empty(f->dest));
}

/* ------------------------------------------------------------ confinement */

typedef int (*probe_fn)(const fixture *f);

/* Runs probe in a child confined to dest (the inherited descriptor
 * outside_fd is not kept). Returns the wait status. */
static int run_confined(fixture *f, probe_fn probe)
{
    int outside = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(outside >= 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int root = open(f->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ink_err err = {0};
        if (root < 0 || ink_unpack_confine(root, NULL, 0, &err) < 0)
            _exit(100);
        /* The descriptor for the real "/" is gone. */
        if (fcntl(outside, F_GETFD) != -1 || errno != EBADF)
            _exit(101);
        _exit(probe(f));
    }
    close(outside);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

/* A forbidden call: EPERM (exit 0) or death by SIGSYS are both refusals. */
static void assert_refused(fixture *f, probe_fn probe, const char *what)
{
    int status = run_confined(f, probe);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
        return;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return;
    fail_msg("%s not refused: status 0x%x", what, (unsigned)status);
}

#define EPERM_EXIT(call) ((call) == -1 && errno == EPERM ? 0 : 1)

static int probe_mknod(const fixture *f)
{
    return EPERM_EXIT(mknod("/null", S_IFCHR | 0666, makedev(1, 3)));
}

static int probe_mkfifo(const fixture *f)
{
    return EPERM_EXIT(mkfifo("/fifo", 0644));
}

static int probe_mount(const fixture *f)
{
    return EPERM_EXIT(mount("none", "/", "tmpfs", 0, NULL));
}

static int probe_socket(const fixture *f)
{
    return EPERM_EXIT(socket(AF_UNIX, SOCK_STREAM, 0));
}

static int probe_chroot(const fixture *f)
{
    return EPERM_EXIT(chroot("/"));
}

static int probe_exec(const fixture *f)
{
    char *argv[] = {"/bin/true", NULL};
    return EPERM_EXIT(execve("/bin/true", argv, argv + 1));
}

static int probe_fork(const fixture *f)
{
    pid_t p = fork();
    if (p == 0)
        _exit(0);
    return p == -1 && errno == EPERM ? 0 : 1;
}

static int probe_exec_mapping(const fixture *f)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED && errno == EPERM ? 0 : 1;
}

static int probe_setuid(const fixture *f)
{
    return EPERM_EXIT(setuid(1000));
}

static int probe_kill(const fixture *f)
{
    return EPERM_EXIT(kill(1, 0));
}

/* What extraction needs still works, inside the chroot only. */
static int probe_allowed(const fixture *f)
{
    if (open("/etc/passwd", O_RDONLY | O_CLOEXEC) >= 0 || errno != ENOENT) /* not the host's */
        return 10;
    int fd = open("/made-inside", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return 11;
    if (write(fd, "in\n", 3) != 3 || fchown(fd, 1000, 1000) < 0 || fchmod(fd, 0640) < 0)
        return 12;
    close(fd);
    if (mkdir("/d", 0700) < 0 || symlink("/made-inside", "/d/l") < 0 ||
        link("/made-inside", "/d/h") < 0 || lchown("/d/l", 5, 5) < 0)
        return 13;
    if (unlink("/d/h") < 0)
        return 14;
    return 0;
}

static void test_confinement(void **state)
{
    fixture *f = *state;
    need_root();
    assert_refused(f, probe_mknod, "mknod");
    assert_refused(f, probe_mkfifo, "mkfifo");
    assert_refused(f, probe_mount, "mount");
    assert_refused(f, probe_socket, "socket");
    assert_refused(f, probe_chroot, "chroot");
    assert_refused(f, probe_exec, "execve");
    assert_refused(f, probe_fork, "fork");
    assert_refused(f, probe_exec_mapping, "PROT_EXEC mapping");
    assert_refused(f, probe_setuid, "setuid");
    assert_refused(f, probe_kill, "kill");
    assert_true(dir_empty(f->dest));

    int status = run_confined(f, probe_allowed);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("allowed operations failed: status 0x%x", (unsigned)status);
    struct stat st = lstat_of(f, "made-inside");
    assert_int_equal(st.st_uid, 1000);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(lstat_of(f, "d/l").st_uid, 5);
}

static unsigned long long status_hex(const char *status, const char *key)
{
    const char *p = strstr(status, key);
    if (!p)
        fail_msg("%s missing from /proc/PID/status", key);
    return strtoull(p + strlen(key), NULL, 16);
}

/* The kernel's view of a confined child, read from /proc while it waits. */
static void test_confinement_state(void **state)
{
    fixture *f = *state;
    need_root();
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        int root = open(f->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int keep[] = {ready[1], go[0]};
        ink_err err = {0};
        if (root < 0 || ink_unpack_confine(root, keep, 2, &err) < 0)
            _exit(100);
        char c = 'r';
        if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(102);
        _exit(0);
    }
    close(ready[1]);
    close(go[0]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);

    char path[64], *status = NULL;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    ink_err err = {0};
    if (ink_read_file(path, 1 << 16, &status, NULL, &err) < 0)
        fail_msg("%s", err.msg);
    const unsigned long long kept =
        (1ULL << 0) | (1ULL << 1) | (1ULL << 3); /* CHOWN, DAC, FOWNER */
    assert_int_equal(status_hex(status, "CapEff:"), kept);
    assert_int_equal(status_hex(status, "CapPrm:"), kept);
    assert_int_equal(status_hex(status, "CapBnd:"), kept);
    assert_int_equal(status_hex(status, "CapInh:"), 0);
    assert_int_equal(status_hex(status, "CapAmb:"), 0);
    assert_int_equal(status_hex(status, "NoNewPrivs:"), 1);
    assert_int_equal(status_hex(status, "Seccomp:"), 2); /* filter mode */
    free(status);

    char link[PATH_MAX], want[PATH_MAX];
    snprintf(path, sizeof path, "/proc/%d/root", (int)pid);
    ssize_t n = readlink(path, link, sizeof link - 1);
    assert_true(n > 0);
    link[n] = '\0';
    assert_non_null(realpath(f->dest, want));
    assert_string_equal(link, want);

    /* Descriptors: 0-2 and the two kept pipe ends only. */
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *de;
    int nfds = 0;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && atoi(de->d_name) > 2)
            nfds++;
    closedir(d);
    assert_int_equal(nfds, 2);

    assert_int_equal(write(go[1], "g", 1), 1);
    int wst;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFEXITED(wst));
    assert_int_equal(WEXITSTATUS(wst), 0);
    close(ready[0]);
    close(go[1]);
}

int main(void)
{
    /* The test's own layers carry UTF-8 names. */
    setlocale(LC_CTYPE, "C.UTF-8");
    /* This build's helper, not one installed on the host. */
    ink_image_set_unpack_helper(INK_TEST_UNPACK_HELPER);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_path),
        cmocka_unit_test_setup_teardown(test_regular_layer, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_compressions, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_whiteouts, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_image_unpack, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_byte_limit, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_entry_limit, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_gzip_bomb, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_helper_path, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_dotdot_and_absolute, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_symlink_escape, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_hardlink_escape, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_special_files, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_whiteout_abuse, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_broken_files, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_refused_early, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_confinement, setup, test_scratch_teardown),
        cmocka_unit_test_setup_teardown(test_confinement_state, setup, test_scratch_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
