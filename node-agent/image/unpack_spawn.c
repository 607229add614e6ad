/* Layer unpacking, the agent's side: finds the ink-unpack helper, starts it
 * for each layer with the layer, the destination and a report pipe as
 * inherited descriptors, and turns its report or its death into an error
 * naming the layer. The agent is many-threaded, so the helper is started
 * with posix_spawn (clone+exec, nothing else runs in the child between the
 * two) rather than a fork that would go on running agent code; everything
 * that decodes the layer runs after the exec (unpack.c). The image's
 * limits are carried from layer to layer here. */
#include "image.h"
#include "unpack_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helper.h"
#include "log.h"
#include "util.h"

#ifndef INK_UNPACK_HELPER_PATH
#error "INK_UNPACK_HELPER_PATH (the installed ink-unpack) must be defined by the build"
#endif

/* ------------------------------------------------------------ the helper */

static pthread_mutex_t helper_lock = PTHREAD_MUTEX_INITIALIZER;
static char *helper_override; /* NULL: search (find_helper) */

void ink_image_set_unpack_helper(const char *path)
{
    char *copy = path && path[0] ? ink_xstrdup(path) : NULL;
    pthread_mutex_lock(&helper_lock);
    char *old = helper_override;
    helper_override = copy;
    pthread_mutex_unlock(&helper_lock);
    free(old);
}

/* The helper to run: the one set with ink_image_set_unpack_helper (its
 * absence shows when it is started), else the first executable of: next
 * to the running program (the build tree), <its dir>/../libexec/ink (an
 * installed tree moved as a whole), the compile-time install path. */
static int find_helper(char *out, size_t outlen, ink_err *err)
{
    pthread_mutex_lock(&helper_lock);
    bool set = helper_override != NULL;
    if (set)
        snprintf(out, outlen, "%s", helper_override);
    pthread_mutex_unlock(&helper_lock);
    if (set)
        return 0;

    return ink_helper_find("unpack helper", INK_UNPACK_HELPER_NAME, INK_UNPACK_HELPER_PATH, out,
                           outlen, err);
}

/* ------------------------------------------------------------- one layer */

/* Budget: the image's limits and what its earlier layers used; unpack_layer
 * adds what this layer used. */
typedef struct unpack_budget {
    uint64_t max_bytes, bytes;
    uint64_t max_entries, entries;
} unpack_budget;

static int unpack_layer(const char *layer_path, const char *media_type, const char *dest,
                        unpack_budget *b, ink_err *err)
{
    if (!ink_unpack_media_type_known(media_type))
        return ink_err_set(err, 0, "layer %s: unsupported media type \"%s\"", layer_path,
                           media_type ? media_type : "");
    cleanup_close int layer_fd = open(layer_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (layer_fd < 0)
        return ink_err_set(err, errno, "layer %s: open", layer_path);
    struct stat st;
    if (fstat(layer_fd, &st) < 0)
        return ink_err_set(err, errno, "layer %s: stat", layer_path);
    if (!S_ISREG(st.st_mode))
        return ink_err_set(err, 0, "layer %s: not a regular file", layer_path);
    cleanup_close int dest_fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dest_fd < 0)
        return ink_err_set(err, errno, "layer %s: open destination %s", layer_path, dest);
    char helper[PATH_MAX];
    if (find_helper(helper, sizeof helper, err) < 0)
        return ink_err_wrap(err, "layer %s", layer_path);
    /* Non-blocking: the report is read after the helper is gone, and a
     * concurrent fork elsewhere in the process may hold a copy of the write
     * end. */
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return ink_err_set(err, errno, "layer %s: pipe", layer_path);
    cleanup_close int report_rd = p[0];
    cleanup_close int report_wr = p[1];

    char nums[8][24];
    snprintf(nums[0], sizeof nums[0], "%d", layer_fd);
    snprintf(nums[1], sizeof nums[1], "%d", dest_fd);
    snprintf(nums[2], sizeof nums[2], "%d", report_wr);
    snprintf(nums[3], sizeof nums[3], "%d", (int)getpid());
    snprintf(nums[4], sizeof nums[4], "%" PRIu64, b->max_bytes);
    snprintf(nums[5], sizeof nums[5], "%" PRIu64, b->bytes);
    snprintf(nums[6], sizeof nums[6], "%" PRIu64, b->max_entries);
    snprintf(nums[7], sizeof nums[7], "%" PRIu64, b->entries);
    /* clang-format off */
    char *const argv[] = {
        helper,
        "--layer-fd", nums[0],
        "--dest-fd", nums[1],
        "--report-fd", nums[2],
        "--media-type", (char *)media_type,
        "--parent", nums[3],
        "--max-bytes", nums[4],
        "--bytes-before", nums[5],
        "--max-entries", nums[6],
        "--entries-before", nums[7],
        NULL,
    };
    /* clang-format on */
    const int keep[] = {layer_fd, dest_fd, report_wr};

    int64_t started = ink_mono_ms();
    pid_t pid;
    if (ink_helper_spawn("unpack helper", helper, argv, keep, INK_ARRAY_LEN(keep), &pid, err) < 0)
        return ink_err_wrap(err, "layer %s", layer_path);
    close(report_wr);
    report_wr = -1;

    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return ink_err_set(err, errno, "layer %s: waiting for the unpack helper", layer_path);
    ink_unpack_report rep;
    ssize_t n = read(report_rd, &rep, sizeof rep);
    bool have_report = n == (ssize_t)sizeof rep && rep.magic == INK_UNPACK_REPORT_MAGIC;
    if (have_report)
        rep.msg[sizeof rep.msg - 1] = '\0';

    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && have_report && !rep.failed) {
        /* The helper checked the limits; these are for the next layer. */
        b->bytes += rep.bytes;
        b->entries += rep.entries;
        if (b->bytes > b->max_bytes || b->entries > b->max_entries)
            return ink_err_set(err, 0, "layer %s: unpack helper reported more than the limits",
                               layer_path);
        LOG_DEBUG("layer unpacked", "layer", layer_path, "dest", dest, "bytes", LOG_U64(rep.bytes),
                  "entries", LOG_U64(rep.entries), "ms", LOG_INT(ink_mono_ms() - started));
        return 0;
    }
    if (have_report && rep.failed) {
        ink_err_set(err, 0, "layer %s: %s", layer_path, rep.msg);
        err->errnum = rep.errnum;
        return -1;
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        if (sig == SIGSYS)
            return ink_err_set(err, 0,
                               "layer %s: extraction killed by seccomp (SIGSYS): it made a "
                               "system call outside its allowlist",
                               layer_path);
        if (sig == SIGXFSZ)
            return ink_err_set(err, 0,
                               "layer %s: extraction killed by SIGXFSZ: a file grew past the "
                               "unpack limit of %" PRIu64 " bytes for the image",
                               layer_path, b->max_bytes);
        const char *abbrev = sigabbrev_np(sig);
        return ink_err_set(err, 0, "layer %s: unpack helper %s killed by signal %d (SIG%s)",
                           layer_path, helper, sig, abbrev ? abbrev : "?");
    }
    return ink_err_set(err, 0, "layer %s: unpack helper %s exited with status %d and no report",
                       layer_path, helper, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

int ink_layer_unpack(const char *layer_path, const char *media_type, const char *dest, ink_err *err)
{
    unpack_budget b = {.max_bytes = INK_UNPACK_DEFAULT_MAX_BYTES,
                       .max_entries = INK_UNPACK_DEFAULT_MAX_ENTRIES};
    return unpack_layer(layer_path, media_type, dest, &b, err);
}

/* ----------------------------------------------------------------- image */

int ink_image_unpack_opts(ink_image_store *s, const ink_image *img, const char *dest,
                          const ink_unpack_limits *limits, ink_err *err)
{
    unpack_budget b = {.max_bytes = INK_UNPACK_DEFAULT_MAX_BYTES,
                       .max_entries = INK_UNPACK_DEFAULT_MAX_ENTRIES};
    if (limits && limits->max_bytes)
        b.max_bytes = limits->max_bytes;
    if (limits && limits->max_entries)
        b.max_entries = limits->max_entries;

    if (mkdir(dest, 0755) < 0 && errno != EEXIST)
        return ink_err_set(err, errno, "unpack into %s", dest);
    DIR *d = opendir(dest);
    if (!d)
        return ink_err_set(err, errno, "unpack into %s", dest);
    struct dirent *de;
    bool empty = true;
    while (empty && (de = readdir(d)))
        empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
    closedir(d);
    if (!empty)
        return ink_err_set(err, 0, "unpack into %s: directory is not empty", dest);

    for (size_t i = 0; i < img->nlayers; i++) {
        cleanup_free char *blob = ink_image_blob_path(s, img->layers[i]);
        if (!blob)
            return ink_err_set(err, 0, "image %s: layer %s: no blob path", img->manifest_digest,
                               img->layers[i]);
        const char *mt = img->layer_media_types ? img->layer_media_types[i] : NULL;
        if (unpack_layer(blob, mt, dest, &b, err) < 0)
            return ink_err_wrap(err, "image %s: layer %zu of %zu (%s)", img->manifest_digest, i + 1,
                                img->nlayers, img->layers[i]);
    }
    LOG_INFO("image unpacked", "image", img->manifest_digest, "layers", LOG_U64(img->nlayers),
             "dest", dest, "bytes", LOG_U64(b.bytes), "entries", LOG_U64(b.entries));
    return 0;
}

int ink_image_unpack(ink_image_store *s, const ink_image *img, const char *dest, ink_err *err)
{
    return ink_image_unpack_opts(s, img, dest, NULL, err);
}
