/* `ink-coordinator pki enrol NODE --coordinator HOST:PORT`: issues a node
 * certificate as `pki issue` does and writes a self-contained POSIX sh
 * script that, run as root on the new node, installs the CA, the
 * certificate and its key in /etc/ink/pki, points /etc/ink/agent.conf at
 * the coordinator, runs `ink-agent doctor` and starts ink-agent.service.
 *
 * The script carries the node's private key: it is created with mode 0600
 * and never overwrites an existing file. Everything that reaches it from the
 * command line is validated here (the node name by ink_pki_issue, the
 * coordinator address by ink_enrol_check_coordinator), and the embedded PEM
 * texts are checked to be printable ASCII without the here-document
 * terminator, so nothing can be injected into the shell. */
#ifndef INK_ENROL_H
#define INK_ENROL_H

#include <stddef.h>
#include <stdio.h>

#include "coordinator.h"
#include "err.h"

/* The line that ends each embedded PEM here-document. */
#define INK_ENROL_HEREDOC_END "INK_ENROL_PEM_EOF"

typedef struct ink_enrol_opts {
    const char *pki_dir;     /* the CA: pki_dir/ca.crt and ca.key */
    const char *node;        /* the node's name (its certificate's CN, node_id) */
    const char *coordinator; /* HOST:PORT of the coordinator's NodeService */
    const char *const *sans; /* extra subjectAltNames of the node certificate */
    size_t nsans;
    int days;        /* validity of the node certificate */
    const char *out; /* the script; NULL: ./enrol-NODE.sh */
} ink_enrol_opts;

/* Accepts HOST:PORT where HOST is a name or IPv4 address of [A-Za-z0-9.-]
 * (at most 253 characters, not starting with '-' or '.') or a bracketed
 * IPv6 address, and PORT is 1..65535 in decimal. */
int ink_enrol_check_coordinator(const char *hostport, ink_err *err);

/* The script's text for node, coordinator and the PEM texts; NULL with err
 * set when one of them is not safe to embed (the node name and address are
 * checked again here). script_name is the script's file name, quoted in
 * its help (enrol-NODE.sh when it is not a plain file name). The caller
 * frees it, after wiping it: it holds key_pem. */
char *ink_enrol_script(const char *node, const char *coordinator, const char *script_name,
                       const char *ca_pem, const char *crt_pem, const char *key_pem, ink_err *err);

/* Validates, issues the certificate (in a private temporary directory next
 * to the script, removed afterwards) and writes the script, mode 0600.
 * path receives the script's path. Nothing is left behind on failure. */
int ink_enrol_write(const ink_enrol_opts *o, char *path, size_t pathlen, ink_err *err);

/* `ink-coordinator pki enrol NODE --coordinator HOST:PORT [--san S ...]
 * [--days N] [--out FILE]` (argv[0] is NODE). In coordinator/cli.c. */
int ink_cmd_pki_enrol(const ink_coordinator_config *cfg, int argc, char **argv, FILE *out,
                      FILE *errf);

#endif
