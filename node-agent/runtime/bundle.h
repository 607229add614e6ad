/* OCI runtime bundles: the config.json runsc runs, made from the image
 * config merged with the assignment, hardened by default.
 *
 * What every workload gets unless the assignment says otherwise:
 *   - process: the app's command (assignment command/args over the image's
 *     Entrypoint/Cmd, Docker's rules), env = image env < app env < secret
 *     env, PORT set to the app port, cwd and user from the image;
 *   - capabilities: only CAP_NET_BIND_SERVICE (an app may listen on :80),
 *     in the bounding, effective and permitted sets; nothing inheritable or
 *     ambient; noNewPrivileges;
 *   - a read-only root filesystem with tmpfs on /tmp, /run and /var/tmp;
 *   - /etc/resolv.conf and /etc/hosts from the agent, read-only, when the
 *     spec names them (the node resolver; see node-agent/dns/dns.h);
 *   - masked and read-only /proc and /sys paths, no host devices;
 *   - limits: memory, CPU quota (and shares), processes. The CPU quota in
 *     config.json may be a boot quota above the app's own (a startup CPU
 *     boost: gVisor's boot is CPU-bound, and a 0.25-CPU quota makes it
 *     three times slower); the agent lowers it to the app's limit once the
 *     app answers (ink_cgroup_set_cpu_limit).
 * gVisor adds its own kernel in between; these are the second wall.
 *
 * The process limit is the sandbox's pids cgroup, on the host. It counts
 * the sandbox's own threads too (Sentry, gofer, systrap stubs: an idle
 * busybox sandbox does not start below ~40), so it is set above the app's
 * limit (ink_bundle_host_pids). A fork bomb that reaches it kills its own
 * sandbox, never the host; the restart policy takes over from there.
 * RLIMIT_NPROC is not used: this runsc applies it to the Sentry process on
 * the host, where it counts every process of the user and can keep the
 * sandbox from starting at all. */
#ifndef INK_BUNDLE_H
#define INK_BUNDLE_H

#include <stdint.h>

#include "err.h"
#include "image.h"
#include "ink/v1/ink.pb-c.h"

/* Defaults when an assignment leaves a limit at 0. */
#define INK_DEFAULT_MEMORY_BYTES (256ULL << 20)
#define INK_DEFAULT_CPU_MILLIS 1000
#define INK_DEFAULT_PIDS 512

typedef struct ink_bundle_spec {
    const Ink__V1__Assignment *assignment;
    const ink_image_config *image;
    const char *rootfs;       /* absolute path of the unpacked image */
    const char *netns_path;   /* network namespace to join, or NULL for a new one */
    const char *cgroup;       /* host cgroup (cgroupsPath), or NULL for runsc's default */
    uint32_t boot_cpu_millis; /* CPU quota while booting, when above the app's; 0 = none */
    /* Host files bind-mounted read-only at /etc/resolv.conf and /etc/hosts
     * (the node resolver's address, localhost and the app's own name), or
     * NULL to leave the image's own. */
    const char *resolv_conf;
    const char *hosts;
} ink_bundle_spec;

/* The app's CPU limit in millicores (the default when it sets none). */
uint32_t ink_bundle_cpu_millis(const Ink__V1__Assignment *a);

/* The host pids cgroup limit for a sandbox whose app may run app_pids
 * processes: 12 host tasks per app process (8 to 10 measured under the
 * ptrace platform) plus 256 for the sandbox itself. */
uint64_t ink_bundle_host_pids(uint32_t app_pids);

/* Renders config.json. The caller frees *out. */
int ink_bundle_config(const ink_bundle_spec *spec, char **out, ink_err *err);

/* Resolves an image "User" (name, uid, name:group, uid:gid) against the
 * rootfs's /etc/passwd and /etc/group. An empty user is root. */
int ink_bundle_resolve_user(const char *rootfs, const char *user, uint32_t *uid, uint32_t *gid,
                            ink_err *err);

#endif
