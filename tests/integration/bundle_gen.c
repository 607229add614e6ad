/* Test driver: writes the config.json ink-agent would generate for an image
 * whose Cmd is `sh -c SCRIPT`, with the given pids limit and env, so the
 * test can run it under the real runsc.
 *
 *   bundle_gen ROOTFS PIDS SCRIPT [NAME=VALUE ...] > config.json
 *
 * INK_BUNDLE_RESOLV_CONF and INK_BUNDLE_HOSTS (host paths) are mounted at
 * /etc/resolv.conf and /etc/hosts when set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "util.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bundle_gen ROOTFS PIDS SCRIPT [NAME=VALUE ...]\n");
        return 2;
    }
    char *cmd[] = {"/bin/busybox", "sh", "-c", argv[3]};
    ink_image_config img = {0};
    img.cmd = cmd;
    img.ncmd = INK_ARRAY_LEN(cmd);
    Ink__V1__Resources res = INK__V1__RESOURCES__INIT;
    res.pids = (uint32_t)atoi(argv[2]);
    Ink__V1__Assignment a = INK__V1__ASSIGNMENT__INIT;
    a.workload_id = "bundle-test";
    a.app = "bundle-test";
    a.port = 8080;
    a.resources = &res;
    int nenv = argc - 4;
    Ink__V1__EnvVar *vars = ink_xcalloc((size_t)nenv + 1, sizeof *vars);
    Ink__V1__EnvVar **ptrs = ink_xcalloc((size_t)nenv + 1, sizeof *ptrs);
    for (int i = 0; i < nenv; i++) {
        ink__v1__env_var__init(&vars[i]);
        char *eq = strchr(argv[4 + i], '=');
        if (!eq)
            return 2;
        *eq = '\0';
        vars[i].name = argv[4 + i];
        vars[i].value = eq + 1;
        ptrs[i] = &vars[i];
    }
    a.secret_env = ptrs;
    a.n_secret_env = (size_t)nenv;
    /* The agent's resolv.conf and hosts, when the test gives them. */
    ink_bundle_spec spec = {.assignment = &a,
                            .image = &img,
                            .rootfs = argv[1],
                            .resolv_conf = getenv("INK_BUNDLE_RESOLV_CONF"),
                            .hosts = getenv("INK_BUNDLE_HOSTS")};
    char *out = NULL;
    ink_err err = {0};
    int rc = ink_bundle_config(&spec, &out, &err);
    if (rc == 0)
        puts(out);
    else
        fprintf(stderr, "bundle_gen: %s\n", err.msg);
    free(out);
    free(vars);
    free(ptrs);
    return rc == 0 ? 0 : 1;
}
