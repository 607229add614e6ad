/* Unit tests for common/pki.c: CA creation, issuing, inspection, verify. */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pki.h"
#include "util.h"

/* ---- helpers ---- */

static inline void t_x509_freep(X509 **p)
{
    X509_free(*p);
}
static inline void t_pkey_freep(EVP_PKEY **p)
{
    EVP_PKEY_free(*p);
}
static inline void t_gens_freep(GENERAL_NAMES **p)
{
    GENERAL_NAMES_free(*p);
}
static inline void t_ext_freep(X509_EXTENSION **p)
{
    X509_EXTENSION_free(*p);
}
static inline void t_ossl_freep(unsigned char **p)
{
    OPENSSL_free(*p);
}
#define cleanup_x509 __attribute__((cleanup(t_x509_freep)))
#define cleanup_pkey __attribute__((cleanup(t_pkey_freep)))
#define cleanup_gens __attribute__((cleanup(t_gens_freep)))
#define cleanup_ext __attribute__((cleanup(t_ext_freep)))
#define cleanup_ossl __attribute__((cleanup(t_ossl_freep)))

typedef struct {
    char dir[64];
} fixture;

static int setup(void **state)
{
    fixture *f = ink_xcalloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ink-test-pki-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (type == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    int rc = nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

/* dir/rel; the caller frees. */
static char *path_in(const fixture *f, const char *rel)
{
    return ink_xasprintf("%s/%s", f->dir, rel);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static unsigned file_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static X509 *read_cert(const char *path)
{
    cleanup_fclose FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    cleanup_fclose FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    EVP_PKEY *k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    assert_non_null(k);
    return k;
}

#define assert_msg_contains(err, needle)                                                           \
    do {                                                                                           \
        if (!strstr((err).msg, (needle)))                                                          \
            fail_msg("error \"%s\" does not contain \"%s\"", (err).msg, (needle));                 \
    } while (0)

static void init_ca(const fixture *f, const char *rel)
{
    cleanup_free char *dir = path_in(f, rel);
    ink_err err = {0};
    if (ink_pki_init_ca(dir, 365, &err) < 0)
        fail_msg("init CA: %s", err.msg);
}

static void issue(const fixture *f, const char *ca_rel, const char *name, const char *role,
                  const char *const *sans, size_t nsans, const char *out_rel)
{
    cleanup_free char *ca = path_in(f, ca_rel);
    cleanup_free char *out = path_in(f, out_rel);
    ink_err err = {0};
    if (ink_pki_issue(ca, name, role, sans, nsans, 30, out, &err) < 0)
        fail_msg("issue %s: %s", name, err.msg);
}

static void assert_verifies(const fixture *f, const char *ca_rel, const char *crt_rel,
                            const char *key_rel)
{
    cleanup_free char *ca = path_in(f, ca_rel);
    cleanup_free char *crt = path_in(f, crt_rel);
    cleanup_free char *key = key_rel ? path_in(f, key_rel) : NULL;
    ink_err err = {0};
    if (ink_pki_verify(ca, crt, key, &err) < 0)
        fail_msg("verify %s: %s", crt_rel, err.msg);
}

/* Runs ink_pki_verify, which must fail; returns the error. */
static ink_err verify_fails(const fixture *f, const char *ca_rel, const char *crt_rel,
                            const char *key_rel)
{
    cleanup_free char *ca = path_in(f, ca_rel);
    cleanup_free char *crt = path_in(f, crt_rel);
    cleanup_free char *key = key_rel ? path_in(f, key_rel) : NULL;
    ink_err err = {0};
    assert_int_equal(ink_pki_verify(ca, crt, key, &err), -1);
    assert_true(err.msg[0] != '\0');
    return err;
}

static ink_cert_info info_of(const fixture *f, const char *rel)
{
    cleanup_free char *p = path_in(f, rel);
    ink_cert_info info;
    ink_err err = {0};
    if (ink_pki_cert_info_file(p, &info, &err) < 0)
        fail_msg("cert info %s: %s", rel, err.msg);
    return info;
}

static void assert_file_starts_with(const char *path, const char *prefix)
{
    cleanup_free char *buf = NULL;
    ink_err err = {0};
    assert_int_equal(ink_read_file(path, 1 << 16, &buf, NULL, &err), 0);
    assert_memory_equal(buf, prefix, strlen(prefix));
}

/* ---- tests ---- */

static void test_init_issue_verify(void **state)
{
    fixture *f = *state;
    init_ca(f, "pki/ca");

    cleanup_free char *ca_dir = path_in(f, "pki/ca");
    cleanup_free char *ca_crt = path_in(f, "pki/ca/ca.crt");
    cleanup_free char *ca_key = path_in(f, "pki/ca/ca.key");
    assert_int_equal(file_mode(ca_dir) & 077, 0);
    assert_int_equal(file_mode(ca_key), 0600);
    assert_int_equal(file_mode(ca_crt), 0644);
    assert_file_starts_with(ca_key, "-----BEGIN PRIVATE KEY-----\n");
    assert_file_starts_with(ca_crt, "-----BEGIN CERTIFICATE-----\n");

    time_t now = time(NULL);
    ink_cert_info ca = info_of(f, "pki/ca/ca.crt");
    assert_string_equal(ca.cn, "Ink cluster CA");
    assert_string_equal(ca.ou, "ca");
    assert_true(ca.is_ca);
    assert_true(ca.not_before <= now - 290 && ca.not_before >= now - 320);
    assert_true(ca.not_after >= now + 365 * 86400 - 10 && ca.not_after <= now + 365 * 86400 + 10);

    const char *sans[] = {"10.0.0.5"};
    issue(f, "pki/ca", "node1", INK_ROLE_NODE, sans, 1, "pki/certs");
    issue(f, "pki/ca", INK_COORDINATOR_NAME, INK_ROLE_COORDINATOR, NULL, 0, "pki/certs");

    cleanup_free char *out_dir = path_in(f, "pki/certs");
    cleanup_free char *node_key = path_in(f, "pki/certs/node1.key");
    cleanup_free char *node_crt = path_in(f, "pki/certs/node1.crt");
    cleanup_free char *coord_key = path_in(f, "pki/certs/ink-coordinator.key");
    assert_int_equal(file_mode(out_dir) & 077, 0);
    assert_int_equal(file_mode(node_key), 0600);
    assert_int_equal(file_mode(coord_key), 0600);
    assert_int_equal(file_mode(node_crt), 0644);
    assert_file_starts_with(node_key, "-----BEGIN PRIVATE KEY-----\n");

    assert_verifies(f, "pki/ca/ca.crt", "pki/certs/node1.crt", "pki/certs/node1.key");
    assert_verifies(f, "pki/ca/ca.crt", "pki/certs/ink-coordinator.crt",
                    "pki/certs/ink-coordinator.key");
    assert_verifies(f, "pki/ca/ca.crt", "pki/certs/node1.crt", NULL);

    ink_cert_info node = info_of(f, "pki/certs/node1.crt");
    assert_string_equal(node.cn, "node1");
    assert_string_equal(node.ou, "node");
    assert_false(node.is_ca);
    assert_true(node.not_before <= now - 290 && node.not_before >= now - 320);
    assert_true(node.not_after >= now + 30 * 86400 - 10 && node.not_after <= now + 30 * 86400 + 10);
    assert_int_equal(strlen(node.sha256), 64);
    assert_string_not_equal(node.sha256, ca.sha256);

    ink_cert_info coord = info_of(f, "pki/certs/ink-coordinator.crt");
    assert_string_equal(coord.cn, "ink-coordinator");
    assert_string_equal(coord.ou, "coordinator");
    assert_false(coord.is_ca);

    /* The fingerprint is SHA-256 over the DER encoding. */
    cleanup_x509 X509 *x = read_cert(node_crt);
    cleanup_ossl unsigned char *der = NULL;
    int derlen = i2d_X509(x, &der);
    assert_true(derlen > 0);
    unsigned char md[32];
    assert_int_equal(EVP_Digest(der, (size_t)derlen, md, NULL, EVP_sha256(), NULL), 1);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    assert_string_equal(node.sha256, hex);

    /* The same answer from memory; and the issuer/key facts. */
    cleanup_free char *pem = NULL;
    size_t len = 0;
    ink_err err = {0};
    assert_int_equal(ink_read_file(node_crt, 1 << 16, &pem, &len, &err), 0);
    ink_cert_info mem;
    assert_int_equal(ink_pki_cert_info_pem(pem, len, &mem, &err), 0);
    assert_memory_equal(&mem, &node, sizeof mem);

    cleanup_x509 X509 *cax = read_cert(ca_crt);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(cax)), 0);
    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    EVP_PKEY *pub = X509_get0_pubkey(x);
    assert_non_null(pub);
    assert_true(EVP_PKEY_is_a(pub, "EC"));
    char group[32];
    assert_int_equal(EVP_PKEY_get_group_name(pub, group, sizeof group, NULL), 1);
    assert_string_equal(group, "prime256v1");
    assert_false(X509_get_extension_flags(x) & EXFLAG_CRITICAL); /* no unknown critical ext */
    assert_non_null(X509_get0_authority_key_id(x));
    assert_non_null(X509_get0_subject_key_id(x));
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x), X509_get0_subject_key_id(cax)), 0);
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);
    assert_int_equal(X509_get_pathlen(cax), 0);
}

static void test_init_twice_refuses(void **state)
{
    fixture *f = *state;
    init_ca(f, "ca");
    ink_cert_info before = info_of(f, "ca/ca.crt");

    cleanup_free char *dir = path_in(f, "ca");
    ink_err err = {0};
    assert_int_equal(ink_pki_init_ca(dir, 365, &err), -1);
    assert_int_equal(err.errnum, EEXIST);
    assert_msg_contains(err, "ca.crt");
    assert_string_equal(info_of(f, "ca/ca.crt").sha256, before.sha256);

    /* A lone key is protected too. */
    cleanup_free char *crt = path_in(f, "ca/ca.crt");
    assert_int_equal(unlink(crt), 0);
    assert_int_equal(ink_pki_init_ca(dir, 365, &err), -1);
    assert_int_equal(err.errnum, EEXIST);
    assert_msg_contains(err, "ca.key");
    assert_false(exists(crt));

    /* Bad validity. */
    cleanup_free char *dir2 = path_in(f, "ca2");
    assert_int_equal(ink_pki_init_ca(dir2, 0, &err), -1);
    assert_int_equal(err.errnum, EINVAL);
    assert_int_equal(ink_pki_init_ca(dir2, -5, &err), -1);
    assert_false(exists(dir2));
}

static void test_issue_twice_refuses(void **state)
{
    fixture *f = *state;
    init_ca(f, "ca");
    issue(f, "ca", "node1", INK_ROLE_NODE, NULL, 0, "out");
    ink_cert_info first = info_of(f, "out/node1.crt");

    cleanup_free char *ca = path_in(f, "ca");
    cleanup_free char *out = path_in(f, "out");
    cleanup_free char *key = path_in(f, "out/node1.key");
    ink_err err = {0};
    assert_int_equal(ink_pki_issue(ca, "node1", INK_ROLE_NODE, NULL, 0, 30, out, &err), -1);
    assert_int_equal(err.errnum, EEXIST);
    ink_cert_info again = info_of(f, "out/node1.crt");
    assert_string_equal(first.sha256, again.sha256);

    /* With only the certificate left, the key is not recreated either. */
    assert_int_equal(unlink(key), 0);
    assert_int_equal(ink_pki_issue(ca, "node1", INK_ROLE_NODE, NULL, 0, 30, out, &err), -1);
    assert_int_equal(err.errnum, EEXIST);
    assert_false(exists(key));
}

static void test_invalid_names_roles(void **state)
{
    fixture *f = *state;
    init_ca(f, "ca");
    cleanup_free char *ca = path_in(f, "ca");
    cleanup_free char *out = path_in(f, "out");
    ink_err err;

    struct {
        const char *name, *role, *san;
        int days;
        const char *needle;
    } cases[] = {
        {"Bad_Name", INK_ROLE_NODE, NULL, 30, "Bad_Name"},
        {"", INK_ROLE_NODE, NULL, 30, "name"},
        {"-node", INK_ROLE_NODE, NULL, 30, "-node"},
        {"../node", INK_ROLE_NODE, NULL, 30, "../node"},
        {INK_COORDINATOR_NAME, INK_ROLE_NODE, NULL, 30, "reserved"},
        {"node1", INK_ROLE_COORDINATOR, NULL, 30, "ink-coordinator"},
        {"node1", "admin", NULL, 30, "role"},
        {"node1", NULL, NULL, 30, "role"},
        {NULL, INK_ROLE_NODE, NULL, 30, "name"},
        {"node1", INK_ROLE_NODE, "a.example,IP:1.2.3.4", 30, "subjectAltName"},
        {"node1", INK_ROLE_NODE, "a example", 30, "subjectAltName"},
        {"node1", INK_ROLE_NODE, "a\texample", 30, "subjectAltName"},
        {"node1", INK_ROLE_NODE, "", 30, "subjectAltName"},
        {"node1", INK_ROLE_NODE, "fe80::1%eth0", 30, "subjectAltName"},
        {"node1", INK_ROLE_NODE, "email:x@y", 30, "subjectAltName"},
        {"node1", INK_ROLE_NODE, NULL, 0, "days"},
        {"node1", INK_ROLE_NODE, NULL, -1, "days"},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(cases); i++) {
        const char *sans[] = {cases[i].san};
        err = (ink_err){0};
        int rc = ink_pki_issue(ca, cases[i].name, cases[i].role, cases[i].san ? sans : NULL,
                               cases[i].san ? 1 : 0, cases[i].days, out, &err);
        if (rc != -1)
            fail_msg("case %zu (%s/%s) was accepted", i, cases[i].name, cases[i].role);
        assert_int_equal(err.errnum, EINVAL);
        assert_msg_contains(err, cases[i].needle);
    }
    /* Nothing was created for any of them. */
    assert_false(exists(out));

    /* A missing CA is reported with its path. */
    cleanup_free char *noca = path_in(f, "no-such-ca");
    assert_int_equal(ink_pki_issue(noca, "node1", INK_ROLE_NODE, NULL, 0, 30, out, &err), -1);
    assert_int_equal(err.errnum, ENOENT);
    assert_msg_contains(err, "no-such-ca/ca.crt");
    assert_false(exists(out));
}

static bool has_dns(GENERAL_NAMES *gens, const char *name, int *count)
{
    *count = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS)
            continue;
        const ASN1_IA5STRING *s = g->d.dNSName;
        if ((size_t)ASN1_STRING_length(s) == strlen(name) &&
            memcmp(ASN1_STRING_get0_data(s), name, strlen(name)) == 0)
            (*count)++;
    }
    return *count > 0;
}

static bool has_ip(GENERAL_NAMES *gens, const unsigned char *addr, int len)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_IPADD && ASN1_STRING_length(g->d.iPAddress) == len &&
            memcmp(ASN1_STRING_get0_data(g->d.iPAddress), addr, (size_t)len) == 0)
            return true;
    }
    return false;
}

static void test_sans(void **state)
{
    fixture *f = *state;
    init_ca(f, "ca");
    const char *sans[] = {"127.0.0.1", "::1", "node1.example.com", "node1", "Node-1_x.local"};
    issue(f, "ca", "node1", INK_ROLE_NODE, sans, INK_ARRAY_LEN(sans), "out");

    cleanup_free char *crt = path_in(f, "out/node1.crt");
    cleanup_x509 X509 *x = read_cert(crt);
    cleanup_gens GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_non_null(gens);
    int n;
    assert_true(has_dns(gens, "node1", &n));
    assert_int_equal(n, 1); /* not repeated though it was also passed as a SAN */
    assert_true(has_dns(gens, "node1.example.com", &n));
    assert_true(has_dns(gens, "Node-1_x.local", &n));
    assert_false(has_dns(gens, "127.0.0.1", &n));
    const unsigned char v4[4] = {127, 0, 0, 1};
    const unsigned char v6[16] = {[15] = 1};
    assert_true(has_ip(gens, v4, 4));
    assert_true(has_ip(gens, v6, 16));
    assert_int_equal(sk_GENERAL_NAME_num(gens), 5);

    /* Hostname and IP checks as a TLS client would do them. */
    assert_int_equal(X509_check_host(x, "node1", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(x, "node2", 0, 0, NULL), 0);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);

    /* A coordinator with no extra SANs still carries its name. */
    issue(f, "ca", INK_COORDINATOR_NAME, INK_ROLE_COORDINATOR, NULL, 0, "out");
    cleanup_free char *ccrt = path_in(f, "out/ink-coordinator.crt");
    cleanup_x509 X509 *cx = read_cert(ccrt);
    cleanup_gens GENERAL_NAMES *cgens = X509_get_ext_d2i(cx, NID_subject_alt_name, NULL, NULL);
    assert_non_null(cgens);
    assert_int_equal(sk_GENERAL_NAME_num(cgens), 1);
    assert_true(has_dns(cgens, "ink-coordinator", &n));
}

static void test_other_ca_fails(void **state)
{
    fixture *f = *state;
    init_ca(f, "ca1");
    init_ca(f, "ca2");
    issue(f, "ca2", "node1", INK_ROLE_NODE, NULL, 0, "out");
    assert_verifies(f, "ca2/ca.crt", "out/node1.crt", "out/node1.key");

    ink_err err = verify_fails(f, "ca1/ca.crt", "out/node1.crt", "out/node1.key");
    assert_msg_contains(err, "issuer");
    assert_msg_contains(err, "out/node1.crt");

    /* A bundle holding both CAs accepts it (CA rollover). */
    cleanup_free char *c1 = NULL, *c2 = NULL;
    cleanup_free char *p1 = path_in(f, "ca1/ca.crt");
    cleanup_free char *p2 = path_in(f, "ca2/ca.crt");
    cleanup_free char *pb = path_in(f, "bundle.crt");
    size_t l1, l2;
    assert_int_equal(ink_read_file(p1, 1 << 16, &c1, &l1, &err), 0);
    assert_int_equal(ink_read_file(p2, 1 << 16, &c2, &l2, &err), 0);
    cleanup_fclose FILE *fp = fopen(pb, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(c1, 1, l1, fp), l1);
    assert_int_equal(fwrite(c2, 1, l2, fp), l2);
    assert_int_equal(fclose(INK_STEAL(fp)), 0);
    assert_verifies(f, "bundle.crt", "out/node1.crt", "out/node1.key");

    /* A CA directory whose key belongs to another CA cannot issue. */
    cleanup_free char *k1 = path_in(f, "ca1/ca.key");
    cleanup_free char *k2 = path_in(f, "ca2/ca.key");
    assert_int_equal(unlink(k1), 0);
    assert_int_equal(link(k2, k1), 0);
    cleanup_free char *ca1 = path_in(f, "ca1");
    cleanup_free char *out2 = path_in(f, "out2");
    assert_int_equal(ink_pki_issue(ca1, "node2", INK_ROLE_NODE, NULL, 0, 30, out2, &err), -1);
    assert_msg_contains(err, "does not match");
    assert_false(exists(out2));
}

static void test_key_mismatch(void **state)
{
    fixture *f = *state;
    init_ca(f, "ca");
    issue(f, "ca", "node-a", INK_ROLE_NODE, NULL, 0, "out");
    issue(f, "ca", "node-b", INK_ROLE_NODE, NULL, 0, "out");
    assert_verifies(f, "ca/ca.crt", "out/node-a.crt", "out/node-a.key");
    assert_verifies(f, "ca/ca.crt", "out/node-b.crt", "out/node-b.key");

    ink_err err = verify_fails(f, "ca/ca.crt", "out/node-a.crt", "out/node-b.key");
    assert_msg_contains(err, "key does not match certificate");

    /* A missing or garbage key is an error too. */
    err = verify_fails(f, "ca/ca.crt", "out/node-a.crt", "out/nope.key");
    assert_int_equal(err.errnum, ENOENT);
    assert_msg_contains(err, "nope.key");
    err = verify_fails(f, "ca/ca.crt", "out/node-a.crt", "out/node-a.crt");
    assert_msg_contains(err, "node-a.crt");

    /* The CA certificate itself is not a TLS leaf. */
    err = verify_fails(f, "ca/ca.crt", "ca/ca.crt", "ca/ca.key");
    assert_msg_contains(err, "ca.crt");
}

static void test_garbage(void **state)
{
    fixture *f = *state;
    ink_cert_info info;
    ink_err err;

    static const char garbage[] = "this is not a certificate\n";
    err = (ink_err){0};
    assert_int_equal(ink_pki_cert_info_pem(garbage, sizeof garbage - 1, &info, &err), -1);
    assert_true(err.msg[0] != '\0');

    err = (ink_err){0};
    assert_int_equal(ink_pki_cert_info_pem("", 0, &info, &err), -1);
    assert_true(err.msg[0] != '\0');

    static const char bad_b64[] = "-----BEGIN CERTIFICATE-----\n"
                                  "!!!!not base64 at all!!!!\n"
                                  "-----END CERTIFICATE-----\n";
    err = (ink_err){0};
    assert_int_equal(ink_pki_cert_info_pem(bad_b64, sizeof bad_b64 - 1, &info, &err), -1);
    assert_true(err.msg[0] != '\0');

    static const char bad_der[] = "-----BEGIN CERTIFICATE-----\n"
                                  "aGVsbG8gd29ybGQgdGhpcyBpcyBub3QgREVS\n"
                                  "-----END CERTIFICATE-----\n";
    err = (ink_err){0};
    assert_int_equal(ink_pki_cert_info_pem(bad_der, sizeof bad_der - 1, &info, &err), -1);
    assert_true(err.msg[0] != '\0');

    /* A real certificate cut in half. */
    init_ca(f, "ca");
    cleanup_free char *crt = path_in(f, "ca/ca.crt");
    cleanup_free char *pem = NULL;
    size_t len = 0;
    assert_int_equal(ink_read_file(crt, 1 << 16, &pem, &len, &err), 0);
    err = (ink_err){0};
    assert_int_equal(ink_pki_cert_info_pem(pem, len / 2, &info, &err), -1);
    assert_true(err.msg[0] != '\0');
    assert_int_equal(ink_pki_cert_info_pem(pem, len, &info, &err), 0);

    /* Files: missing, not a certificate. */
    cleanup_free char *missing = path_in(f, "missing.crt");
    err = (ink_err){0};
    assert_int_equal(ink_pki_cert_info_file(missing, &info, &err), -1);
    assert_int_equal(err.errnum, ENOENT);
    assert_msg_contains(err, "missing.crt");

    cleanup_free char *junk = path_in(f, "junk.crt");
    ink_err werr = {0};
    assert_int_equal(ink_write_file_atomic(junk, garbage, sizeof garbage - 1, 0644, &werr), 0);
    err = (ink_err){0};
    assert_int_equal(ink_pki_cert_info_file(junk, &info, &err), -1);
    assert_msg_contains(err, "junk.crt");

    cleanup_free char *key = path_in(f, "ca/ca.key");
    err = (ink_err){0};
    assert_int_equal(ink_pki_cert_info_file(key, &info, &err), -1);

    /* Verify with a garbage CA or certificate. */
    issue(f, "ca", "node1", INK_ROLE_NODE, NULL, 0, "out");
    err = verify_fails(f, "junk.crt", "out/node1.crt", "out/node1.key");
    assert_msg_contains(err, "junk.crt");
    err = verify_fails(f, "ca/ca.crt", "junk.crt", NULL);
    assert_msg_contains(err, "junk.crt");
    err = verify_fails(f, "missing.crt", "out/node1.crt", NULL);
    assert_int_equal(err.errnum, ENOENT);
}

/* Signs a node certificate with the CA in ca_rel, valid from nb_days to
 * na_days relative to now, and writes out/<name>.{crt,key}. */
static void craft_cert(const fixture *f, const char *ca_rel, const char *name, long nb_days,
                       long na_days)
{
    cleanup_free char *ca_crt = ink_xasprintf("%s/%s/ca.crt", f->dir, ca_rel);
    cleanup_free char *ca_key = ink_xasprintf("%s/%s/ca.key", f->dir, ca_rel);
    cleanup_x509 X509 *ca = read_cert(ca_crt);
    cleanup_pkey EVP_PKEY *cakey = read_key(ca_key);
    cleanup_pkey EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);

    cleanup_x509 X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 4242), 1);
    assert_non_null(X509_time_adj_ex(X509_getm_notBefore(x), (int)nb_days, 0, NULL));
    assert_non_null(X509_time_adj_ex(X509_getm_notAfter(x), (int)na_days, 0, NULL));
    X509_NAME *subj = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_add_entry_by_NID(subj, NID_organizationalUnitName, MBSTRING_UTF8,
                                                (const unsigned char *)"node", -1, -1, 0),
                     1);
    assert_int_equal(X509_NAME_add_entry_by_NID(subj, NID_commonName, MBSTRING_UTF8,
                                                (const unsigned char *)name, -1, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(ca)), 1);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    static const struct {
        int nid;
        const char *value;
    } exts[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
        {NID_ext_key_usage, "serverAuth,clientAuth"},
        {NID_authority_key_identifier, "keyid"},
        {NID_subject_key_identifier, "hash"},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(exts); i++) {
        X509V3_CTX ctx = {0};
        X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
        cleanup_ext X509_EXTENSION *ext =
            X509V3_EXT_conf_nid(NULL, &ctx, exts[i].nid, exts[i].value);
        assert_non_null(ext);
        assert_int_equal(X509_add_ext(x, ext, -1), 1);
    }
    assert_true(X509_sign(x, cakey, EVP_sha256()) > 0);

    cleanup_free char *crt_path = ink_xasprintf("%s/out/%s.crt", f->dir, name);
    cleanup_free char *key_path = ink_xasprintf("%s/out/%s.key", f->dir, name);
    cleanup_free char *out = path_in(f, "out");
    ink_err err = {0};
    assert_int_equal(ink_mkdir_p(out, 0700, &err), 0);
    cleanup_fclose FILE *cf = fopen(crt_path, "w");
    assert_non_null(cf);
    assert_int_equal(PEM_write_X509(cf, x), 1);
    cleanup_fclose FILE *kf = fopen(key_path, "w");
    assert_non_null(kf);
    assert_int_equal(PEM_write_PrivateKey(kf, key, NULL, NULL, 0, NULL, NULL), 1);
}

static void test_expired_and_not_yet_valid(void **state)
{
    fixture *f = *state;
    init_ca(f, "ca");

    /* The crafting itself is sound: a current certificate verifies. */
    craft_cert(f, "ca", "current", -1, 1);
    assert_verifies(f, "ca/ca.crt", "out/current.crt", "out/current.key");

    craft_cert(f, "ca", "old", -10, -1);
    ink_err err = verify_fails(f, "ca/ca.crt", "out/old.crt", "out/old.key");
    assert_msg_contains(err, "expired");
    assert_msg_contains(err, "old.crt");
    ink_cert_info info = info_of(f, "out/old.crt");
    assert_string_equal(info.cn, "old");
    assert_true(info.not_after < time(NULL));
    assert_true(info.not_before < info.not_after);

    craft_cert(f, "ca", "future", 1, 10);
    err = verify_fails(f, "ca/ca.crt", "out/future.crt", "out/future.key");
    assert_msg_contains(err, "not yet valid");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_issue_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_twice_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issue_twice_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_names_roles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_ca_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_and_not_yet_valid, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
