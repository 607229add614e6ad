/* Driver for image_pull_test.sh: the image library (node-agent/image) as a
 * small command line tool.
 *
 *   image_pull [options] STORE pull REF
 *   image_pull [options] STORE load DIGEST
 *   image_pull [options] STORE gc [KEEP_DIGEST...]
 *   image_pull [options] STORE unpack DIGEST DEST
 *
 * options: --plain HOST[:PORT] (repeatable), --user U, --password P,
 *          --ca FILE, --timeout-ms N, --max-blob N,
 *          --max-unpack-bytes N, --max-unpack-entries N
 *
 * pull and load print the image as "key value" lines; gc prints
 * "freed N"; unpack extracts a pulled image into DEST (needs root) with
 * this build's ink-unpack helper. Errors go to stderr as "error: ..." with
 * exit status 1. The library's logs (the "image pulled" line counts
 * fetched blobs) go to stderr too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "log.h"

static void usage(void)
{
    fprintf(stderr, "usage: image_pull [--plain HOST] [--user U --password P] [--ca FILE] "
                    "[--timeout-ms N] [--max-blob N] [--max-unpack-bytes N] "
                    "[--max-unpack-entries N] STORE pull REF | load DIGEST | gc [DIGEST...] | "
                    "unpack DIGEST DEST\n");
    exit(2);
}

static void print_list(const char *key, char **v, size_t n)
{
    printf("%s", key);
    for (size_t i = 0; i < n; i++)
        printf(" %s", v[i]);
    printf("\n");
}

static void print_image(const ink_image *img)
{
    printf("manifest %s\n", img->manifest_digest);
    printf("config %s\n", img->config_digest);
    printf("layers %zu\n", img->nlayers);
    for (size_t i = 0; i < img->nlayers; i++)
        printf("layer %s %s\n", img->layers[i], img->layer_media_types[i]);
    printf("total_bytes %llu\n", (unsigned long long)img->total_bytes);
    print_list("entrypoint", img->config.entrypoint, img->config.nentrypoint);
    print_list("cmd", img->config.cmd, img->config.ncmd);
    for (size_t i = 0; i < img->config.nenv; i++)
        printf("env %s\n", img->config.env[i]);
    printf("workdir %s\n", img->config.working_dir ? img->config.working_dir : "");
    printf("user %s\n", img->config.user ? img->config.user : "");
    printf("ports");
    for (size_t i = 0; i < img->config.nexposed_ports; i++)
        printf(" %u", img->config.exposed_ports[i]);
    printf("\n");
}

int main(int argc, char **argv)
{
    const char *plain[16];
    ink_registry_opts opts = {.plain_http = plain};
    ink_unpack_limits limits = {0};
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (i + 1 >= argc)
            usage();
        const char *v = argv[i + 1];
        if (strcmp(argv[i], "--plain") == 0 && opts.nplain_http < 16)
            plain[opts.nplain_http++] = v;
        else if (strcmp(argv[i], "--user") == 0)
            opts.username = v;
        else if (strcmp(argv[i], "--password") == 0)
            opts.password = v;
        else if (strcmp(argv[i], "--ca") == 0)
            opts.ca_file = v;
        else if (strcmp(argv[i], "--timeout-ms") == 0)
            opts.timeout_ms = strtoll(v, NULL, 10);
        else if (strcmp(argv[i], "--max-blob") == 0)
            opts.max_blob_bytes = strtoull(v, NULL, 10);
        else if (strcmp(argv[i], "--max-unpack-bytes") == 0)
            limits.max_bytes = strtoull(v, NULL, 10);
        else if (strcmp(argv[i], "--max-unpack-entries") == 0)
            limits.max_entries = strtoull(v, NULL, 10);
        else
            usage();
    }
    if (argc - i < 2)
        usage();
    const char *root = argv[i], *cmd = argv[i + 1];
    ink_log_init("image_pull", INK_LOG_INFO, INK_LOG_LOGFMT);
    /* This build's helper, not one installed on the host. */
    ink_image_set_unpack_helper(INK_TEST_UNPACK_HELPER);

    ink_err err = {0};
    ink_image_store *s;
    if (ink_image_store_open(root, &s, &err) < 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    ink_image img;
    if (strcmp(cmd, "pull") == 0 && argc - i == 3) {
        rc = ink_image_pull(s, argv[i + 2], &opts, &img, &err);
        if (rc == 0) {
            print_image(&img);
            ink_image_free(&img);
        }
    } else if (strcmp(cmd, "load") == 0 && argc - i == 3) {
        rc = ink_image_load(s, argv[i + 2], &img, &err);
        if (rc == 0) {
            print_image(&img);
            ink_image_free(&img);
        }
    } else if (strcmp(cmd, "gc") == 0) {
        int64_t freed =
            ink_image_gc(s, (const char *const *)argv + i + 2, (size_t)(argc - i - 2), &err);
        rc = freed < 0 ? -1 : 0;
        if (rc == 0)
            printf("freed %lld\n", (long long)freed);
    } else if (strcmp(cmd, "unpack") == 0 && argc - i == 4) {
        rc = ink_image_load(s, argv[i + 2], &img, &err);
        if (rc == 0) {
            rc = ink_image_unpack_opts(s, &img, argv[i + 3], &limits, &err);
            ink_image_free(&img);
        }
        if (rc == 0)
            printf("unpacked %s\n", argv[i + 3]);
    } else {
        ink_image_store_close(s);
        usage();
    }
    ink_image_store_close(s);
    if (rc < 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    return 0;
}
