/* Cluster PKI: one CA per Ink installation, an ECDSA P-256 key and an X.509
 * certificate per component. The certificate's subject says who the holder
 * is: CN = name (node id, or "ink-coordinator"), OU = role ("node" or
 * "coordinator"). The same name is a DNS subjectAltName, so TLS hostname
 * verification with a fixed target name binds a connection to one holder.
 * Leaf certificates carry both serverAuth and clientAuth: agents and the
 * coordinator each serve and call. */
#ifndef INK_PKI_H
#define INK_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "err.h"

#define INK_ROLE_COORDINATOR "coordinator"
#define INK_ROLE_NODE "node"
#define INK_COORDINATOR_NAME "ink-coordinator"

typedef struct ink_cert_info {
    char cn[128]; /* subject commonName */
    char ou[64];  /* subject organizationalUnitName (the role) */
    time_t not_before;
    time_t not_after;
    bool is_ca;
    char sha256[65]; /* hex SHA-256 of the DER certificate */
} ink_cert_info;

/* Creates dir/ca.crt and dir/ca.key (mode 0600). Refuses to overwrite an
 * existing CA. */
int ink_pki_init_ca(const char *dir, int days, ink_err *err);

/* Issues a leaf certificate signed by dir/ca.{crt,key}: writes
 * out_dir/<name>.crt and out_dir/<name>.key (0600). sans are extra
 * subjectAltNames, each an IP address or a DNS name; the name itself is
 * always a DNS SAN. Refuses to overwrite existing files. */
int ink_pki_issue(const char *ca_dir, const char *name, const char *role, const char *const *sans,
                  size_t nsans, int days, const char *out_dir, ink_err *err);

/* Parses one PEM certificate from memory. */
int ink_pki_cert_info_pem(const char *pem, size_t len, ink_cert_info *info, ink_err *err);
int ink_pki_cert_info_file(const char *path, ink_cert_info *info, ink_err *err);

/* Verifies cert_path against the CA in ca_path (signature, validity period,
 * key usage for TLS) and that key_path holds the certificate's private key. */
int ink_pki_verify(const char *ca_path, const char *cert_path, const char *key_path, ink_err *err);

#endif
