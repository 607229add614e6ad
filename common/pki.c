/* Cluster PKI on OpenSSL 3.0 (non-deprecated API only): a self-signed CA and
 * ECDSA P-256 leaf certificates for nodes and the coordinator.
 *
 * Files are created next to their final name as a 0600 temp file, filled,
 * fsync'ed, then hard-linked into place: link(2) fails with EEXIST if the
 * target exists, so nothing is ever overwritten, a reader never sees a
 * half-written file, and a key is never readable by others, not even
 * briefly. */
#include "pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "util.h"

#define PKI_MAX_FILE (64 * 1024)
#define PKI_MAX_DAYS 36500 /* 100 years; keeps notAfter far from time_t/ASN.1 limits */
#define PKI_BACKDATE_SECS (5 * 60)
#define PKI_MAX_SAN_LEN 253
#define CA_CN "Ink cluster CA"
#define CA_OU "ca"

/* ---- scope-bound cleanup for OpenSSL types ---- */

static inline void pki_x509_freep(X509 **p)
{
    X509_free(*p);
}
static inline void pki_pkey_freep(EVP_PKEY **p)
{
    EVP_PKEY_free(*p);
}
static inline void pki_bio_freep(BIO **p)
{
    BIO_free(*p);
}
static inline void pki_bn_freep(BIGNUM **p)
{
    BN_free(*p);
}
static inline void pki_ext_freep(X509_EXTENSION **p)
{
    X509_EXTENSION_free(*p);
}
static inline void pki_store_freep(X509_STORE **p)
{
    X509_STORE_free(*p);
}
static inline void pki_store_ctx_freep(X509_STORE_CTX **p)
{
    X509_STORE_CTX_free(*p);
}
static inline void pki_ossl_freep(unsigned char **p)
{
    OPENSSL_free(*p);
}

#define cleanup_x509 __attribute__((cleanup(pki_x509_freep)))
#define cleanup_pkey __attribute__((cleanup(pki_pkey_freep)))
#define cleanup_bio __attribute__((cleanup(pki_bio_freep)))
#define cleanup_bn __attribute__((cleanup(pki_bn_freep)))
#define cleanup_ext __attribute__((cleanup(pki_ext_freep)))
#define cleanup_store __attribute__((cleanup(pki_store_freep)))
#define cleanup_store_ctx __attribute__((cleanup(pki_store_ctx_freep)))
#define cleanup_ossl __attribute__((cleanup(pki_ossl_freep)))

/* A file's contents that may hold key material: wiped before it is freed. */
typedef struct {
    char *buf;
    size_t len;
} secret_buf;

static inline void secret_buf_freep(secret_buf *s)
{
    if (s->buf) {
        OPENSSL_cleanse(s->buf, s->len);
        free(s->buf);
    }
}
#define cleanup_secret __attribute__((cleanup(secret_buf_freep)))

/* ---- errors ---- */

/* Sets err to "<fmt...>: <OpenSSL error>" and empties this thread's OpenSSL
 * error queue (so a stale error never shows up in a later message). */
static int __attribute__((format(printf, 2, 3))) ossl_fail(ink_err *err, const char *fmt, ...)
{
    char what[INK_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);

    char ebuf[256];
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, ebuf, sizeof ebuf);
    else
        snprintf(ebuf, sizeof ebuf, "unknown OpenSSL error");
    ERR_clear_error();
    return ink_err_set(err, 0, "%s: %s", what, ebuf);
}

/* ---- files ---- */

/* Fails with EEXIST if path exists (even as a dangling symlink). */
static int check_absent(const char *path, ink_err *err)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        return ink_err_set(err, EEXIST, "refusing to overwrite %s", path);
    if (errno != ENOENT)
        return ink_err_set(err, errno, "stat %s", path);
    return 0;
}

static void fsync_parent(const char *path)
{
    cleanup_free char *copy = ink_xstrdup(path);
    cleanup_close int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0)
        fsync(dfd);
}

/* Creates path with exactly `mode` and the given contents; never replaces an
 * existing file (EEXIST). */
static int write_new_file(const char *path, const void *data, size_t len, mode_t mode, ink_err *err)
{
    cleanup_free char *tmp = ink_xasprintf("%s.tmp.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC); /* created 0600 */
    if (fd < 0)
        return ink_err_set(err, errno, "create temp file for %s", path);

    const char *p = data;
    size_t left = len;
    int e = 0;
    const char *what = NULL;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            e = errno;
            what = "write";
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (!what && fchmod(fd, mode) < 0) {
        e = errno;
        what = "chmod";
    }
    if (!what && fsync(fd) < 0) {
        e = errno;
        what = "fsync";
    }
    if (close(fd) < 0 && !what) {
        e = errno;
        what = "close";
    }
    if (!what && link(tmp, path) < 0) {
        e = errno;
        what = e == EEXIST ? "refusing to overwrite" : "link";
    }
    unlink(tmp);
    if (what)
        return ink_err_set(err, e, "%s %s", what, path);
    fsync_parent(path);
    return 0;
}

static int read_secret_file(const char *path, secret_buf *out, ink_err *err)
{
    return ink_read_file(path, PKI_MAX_FILE, &out->buf, &out->len, err);
}

/* ---- PEM in and out ---- */

/* Never prompt on a terminal for an encrypted key: fail instead. */
static int no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static X509 *parse_cert_pem(const char *pem, size_t len, const char *what, ink_err *err)
{
    if (len > INT_MAX) {
        ink_err_set(err, EFBIG, "parse %s: too large", what);
        return NULL;
    }
    cleanup_bio BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) {
        ossl_fail(err, "parse %s", what);
        return NULL;
    }
    X509 *x = PEM_read_bio_X509(bio, NULL, no_passphrase_cb, NULL);
    if (!x) {
        ossl_fail(err, "parse %s", what);
        return NULL;
    }
    return x;
}

/* what: "CA certificate", "certificate", ... for the messages. */
static X509 *load_cert_file(const char *path, const char *what, ink_err *err)
{
    cleanup_free char *pem = NULL;
    size_t len = 0;
    if (ink_read_file(path, PKI_MAX_FILE, &pem, &len, err) < 0) {
        ink_err_wrap(err, "read %s", what);
        return NULL;
    }
    cleanup_free char *label = ink_xasprintf("%s %s", what, path);
    return parse_cert_pem(pem, len, label, err);
}

static EVP_PKEY *load_key_file(const char *path, const char *what, ink_err *err)
{
    cleanup_secret secret_buf pem = {0};
    if (read_secret_file(path, &pem, err) < 0) {
        ink_err_wrap(err, "read %s", what);
        return NULL;
    }
    if (pem.len > INT_MAX) {
        ink_err_set(err, EFBIG, "read %s %s: too large", what, path);
        return NULL;
    }
    cleanup_bio BIO *bio = BIO_new_mem_buf(pem.buf, (int)pem.len);
    if (!bio) {
        ossl_fail(err, "read %s %s", what, path);
        return NULL;
    }
    EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase_cb, NULL);
    if (!k)
        ossl_fail(err, "parse %s %s (an unencrypted PEM private key is expected)", what, path);
    return k;
}

/* Writes the key as unencrypted PKCS#8 PEM, mode 0600. The PEM text lives in
 * secure-heap memory that is wiped when freed. */
static int write_key_file(const char *path, EVP_PKEY *key, ink_err *err)
{
    cleanup_bio BIO *bio = BIO_new(BIO_s_secmem());
    if (!bio)
        return ossl_fail(err, "write key %s", path);
    if (!PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL))
        return ossl_fail(err, "encode key %s", path);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n <= 0 || !data)
        return ossl_fail(err, "encode key %s", path);
    return write_new_file(path, data, (size_t)n, 0600, err);
}

static int write_cert_file(const char *path, X509 *x, ink_err *err)
{
    cleanup_bio BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        return ossl_fail(err, "write certificate %s", path);
    if (!PEM_write_bio_X509(bio, x))
        return ossl_fail(err, "encode certificate %s", path);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n <= 0 || !data)
        return ossl_fail(err, "encode certificate %s", path);
    return write_new_file(path, data, (size_t)n, 0644, err);
}

/* Writes key then certificate; if the certificate cannot be written the key
 * just created is removed again, so a failure leaves nothing behind. */
static int write_pair(const char *crt_path, X509 *x, const char *key_path, EVP_PKEY *key,
                      ink_err *err)
{
    if (write_key_file(key_path, key, err) < 0)
        return -1;
    if (write_cert_file(crt_path, x, err) < 0) {
        unlink(key_path);
        return -1;
    }
    return 0;
}

/* ---- certificate building ---- */

static int check_days(int days, ink_err *err)
{
    if (days < 1 || days > PKI_MAX_DAYS)
        return ink_err_set(err, EINVAL, "validity of %d days: must be between 1 and %d", days,
                           PKI_MAX_DAYS);
    return 0;
}

static EVP_PKEY *gen_p256(ink_err *err)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (!k)
        ossl_fail(err, "generate P-256 key");
    return k;
}

static int set_subject(X509 *x, const char *cn, const char *ou, ink_err *err)
{
    X509_NAME *n = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_NID(n, NID_organizationalUnitName, MBSTRING_UTF8,
                                    (const unsigned char *)ou, -1, -1, 0) ||
        !X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                    -1, 0))
        return ossl_fail(err, "set subject CN=%s, OU=%s", cn, ou);
    return 0;
}

/* A new v3 certificate with a random 128-bit serial, the subject, the
 * public key and a validity from 5 minutes ago (clock skew between hosts)
 * to `days` from now. */
static X509 *new_cert(EVP_PKEY *pub, const char *cn, const char *ou, int days, ink_err *err)
{
    cleanup_x509 X509 *x = X509_new();
    if (!x || !X509_set_version(x, X509_VERSION_3)) {
        ossl_fail(err, "create certificate");
        return NULL;
    }
    cleanup_bn BIGNUM *serial = BN_new();
    /* Top bit set: always exactly 128 bits, so positive and never zero. */
    if (!serial || !BN_rand(serial, 128, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x))) {
        ossl_fail(err, "generate serial number");
        return NULL;
    }
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -PKI_BACKDATE_SECS) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL)) {
        ossl_fail(err, "set validity");
        return NULL;
    }
    if (set_subject(x, cn, ou, err) < 0)
        return NULL;
    if (!X509_set_pubkey(x, pub)) {
        ossl_fail(err, "set public key");
        return NULL;
    }
    return INK_STEAL(x);
}

static int add_ext(X509 *issuer, X509 *subject, int nid, const char *value, ink_err *err)
{
    X509V3_CTX ctx = {0};
    X509V3_set_ctx(&ctx, issuer, subject, NULL, NULL, 0);
    X509V3_set_ctx_nodb(&ctx);
    cleanup_ext X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext || !X509_add_ext(subject, ext, -1))
        return ossl_fail(err, "add extension %s = %s", OBJ_nid2sn(nid), value);
    return 0;
}

static int sign_cert(X509 *x, EVP_PKEY *key, ink_err *err)
{
    if (X509_sign(x, key, EVP_sha256()) <= 0)
        return ossl_fail(err, "sign certificate");
    return 0;
}

/* ---- CA ---- */

int ink_pki_init_ca(const char *dir, int days, ink_err *err)
{
    ERR_clear_error();
    if (!dir || !*dir)
        return ink_err_set(err, EINVAL, "init CA: no directory given");
    if (check_days(days, err) < 0)
        return ink_err_wrap(err, "init CA in %s", dir);

    cleanup_free char *crt_path = ink_xasprintf("%s/ca.crt", dir);
    cleanup_free char *key_path = ink_xasprintf("%s/ca.key", dir);
    if (ink_mkdir_p(dir, 0700, err) < 0)
        return ink_err_wrap(err, "init CA");
    /* Checked before generating anything so an existing CA is never touched;
     * write_new_file() refuses too if one appears meanwhile. */
    if (check_absent(crt_path, err) < 0 || check_absent(key_path, err) < 0)
        return ink_err_wrap(err, "init CA (a CA already exists in %s)", dir);

    cleanup_pkey EVP_PKEY *key = gen_p256(err);
    if (!key)
        return ink_err_wrap(err, "init CA");
    cleanup_x509 X509 *x = new_cert(key, CA_CN, CA_OU, days, err);
    if (!x)
        return ink_err_wrap(err, "init CA");
    if (!X509_set_issuer_name(x, X509_get_subject_name(x)))
        return ossl_fail(err, "init CA: set issuer");
    if (add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", err) < 0 ||
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign", err) < 0 ||
        add_ext(x, x, NID_subject_key_identifier, "hash", err) < 0 || sign_cert(x, key, err) < 0)
        return ink_err_wrap(err, "init CA");

    if (write_pair(crt_path, x, key_path, key, err) < 0)
        return ink_err_wrap(err, "init CA");
    return 0;
}

/* ---- leaf certificates ---- */

static int check_identity(const char *name, const char *role, ink_err *err)
{
    if (!role || (strcmp(role, INK_ROLE_NODE) != 0 && strcmp(role, INK_ROLE_COORDINATOR) != 0))
        return ink_err_set(err, EINVAL, "bad role '%s': must be '%s' or '%s'",
                           role ? role : "(null)", INK_ROLE_NODE, INK_ROLE_COORDINATOR);
    if (!name)
        return ink_err_set(err, EINVAL, "no name given");
    if (strcmp(role, INK_ROLE_COORDINATOR) == 0) {
        if (strcmp(name, INK_COORDINATOR_NAME) != 0)
            return ink_err_set(err, EINVAL, "bad name '%s': the coordinator's name must be '%s'",
                               name, INK_COORDINATOR_NAME);
        return 0;
    }
    if (!ink_valid_name(name))
        return ink_err_set(err, EINVAL, "bad node name '%s': must match [a-z0-9][a-z0-9-]{0,62}",
                           name);
    if (strcmp(name, INK_COORDINATOR_NAME) == 0)
        return ink_err_set(err, EINVAL, "bad node name '%s': reserved for the coordinator", name);
    return 0;
}

static bool is_ip(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* DNS SANs: letters, digits, '-', '.', '_'. This rules out ',' and
 * whitespace (which would split or corrupt the extension value) as well as
 * anything else that cannot be a host name. */
static bool valid_dns_san(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PKI_MAX_SAN_LEN)
        return false;
    for (const char *c = s; *c; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_';
        if (!ok)
            return false;
    }
    return true;
}

/* "DNS:name,IP:1.2.3.4,DNS:other" */
static char *build_san_value(const char *name, const char *const *sans, size_t nsans, ink_err *err)
{
    cleanup_free char *val = ink_xasprintf("DNS:%s", name);
    for (size_t i = 0; i < nsans; i++) {
        const char *s = sans[i];
        if (!s || !*s) {
            ink_err_set(err, EINVAL, "empty subjectAltName");
            return NULL;
        }
        bool ip = is_ip(s);
        if (!ip && !valid_dns_san(s)) {
            ink_err_set(err, EINVAL,
                        "bad subjectAltName '%s': not an IP address or a DNS name "
                        "(letters, digits, '-', '.', '_'; no ',' or whitespace)",
                        s);
            return NULL;
        }
        if (!ip && strcasecmp(s, name) == 0)
            continue; /* the name is always there already */
        char *next = ink_xasprintf("%s,%s:%s", val, ip ? "IP" : "DNS", s);
        free(val);
        val = next;
    }
    return INK_STEAL(val);
}

int ink_pki_issue(const char *ca_dir, const char *name, const char *role, const char *const *sans,
                  size_t nsans, int days, const char *out_dir, ink_err *err)
{
    ERR_clear_error();
    if (check_identity(name, role, err) < 0 || check_days(days, err) < 0)
        return ink_err_wrap(err, "issue certificate");
    if (!ca_dir || !*ca_dir || !out_dir || !*out_dir)
        return ink_err_set(err, EINVAL, "issue certificate for %s: no CA or output directory",
                           name);
    if (nsans > 0 && !sans)
        return ink_err_set(err, EINVAL, "issue certificate for %s: no SAN list", name);
    cleanup_free char *san = build_san_value(name, sans, nsans, err);
    if (!san)
        return ink_err_wrap(err, "issue certificate for %s", name);

    cleanup_free char *ca_crt_path = ink_xasprintf("%s/ca.crt", ca_dir);
    cleanup_free char *ca_key_path = ink_xasprintf("%s/ca.key", ca_dir);
    cleanup_free char *crt_path = ink_xasprintf("%s/%s.crt", out_dir, name);
    cleanup_free char *key_path = ink_xasprintf("%s/%s.key", out_dir, name);

    cleanup_x509 X509 *ca = load_cert_file(ca_crt_path, "CA certificate", err);
    if (!ca)
        return ink_err_wrap(err, "issue certificate for %s", name);
    cleanup_pkey EVP_PKEY *ca_key = load_key_file(ca_key_path, "CA key", err);
    if (!ca_key)
        return ink_err_wrap(err, "issue certificate for %s", name);
    if (X509_check_ca(ca) <= 0)
        return ink_err_set(err, 0, "issue certificate for %s: %s is not a CA certificate", name,
                           ca_crt_path);
    if (X509_check_private_key(ca, ca_key) != 1)
        return ossl_fail(err, "issue certificate for %s: CA key %s does not match %s", name,
                         ca_key_path, ca_crt_path);

    if (ink_mkdir_p(out_dir, 0700, err) < 0)
        return ink_err_wrap(err, "issue certificate for %s", name);
    if (check_absent(crt_path, err) < 0 || check_absent(key_path, err) < 0)
        return ink_err_wrap(err, "issue certificate for %s", name);

    cleanup_pkey EVP_PKEY *key = gen_p256(err);
    if (!key)
        return ink_err_wrap(err, "issue certificate for %s", name);
    cleanup_x509 X509 *x = new_cert(key, name, role, days, err);
    if (!x)
        return ink_err_wrap(err, "issue certificate for %s", name);
    if (!X509_set_issuer_name(x, X509_get_subject_name(ca)))
        return ossl_fail(err, "issue certificate for %s: set issuer", name);
    if (add_ext(ca, x, NID_basic_constraints, "critical,CA:FALSE", err) < 0 ||
        add_ext(ca, x, NID_key_usage, "critical,digitalSignature,keyEncipherment", err) < 0 ||
        add_ext(ca, x, NID_ext_key_usage, "serverAuth,clientAuth", err) < 0 ||
        add_ext(ca, x, NID_subject_alt_name, san, err) < 0 ||
        add_ext(ca, x, NID_authority_key_identifier, "keyid", err) < 0 ||
        add_ext(ca, x, NID_subject_key_identifier, "hash", err) < 0 ||
        sign_cert(x, ca_key, err) < 0)
        return ink_err_wrap(err, "issue certificate for %s", name);

    if (write_pair(crt_path, x, key_path, key, err) < 0)
        return ink_err_wrap(err, "issue certificate for %s", name);
    return 0;
}

/* ---- inspection ---- */

/* Copies the single entry `nid` of the subject into out ("" if absent). */
static int name_entry(X509_NAME *n, int nid, const char *label, char *out, size_t outlen,
                      ink_err *err)
{
    out[0] = '\0';
    int idx = X509_NAME_get_index_by_NID(n, nid, -1);
    if (idx < 0)
        return 0;
    if (X509_NAME_get_index_by_NID(n, nid, idx) >= 0)
        return ink_err_set(err, EINVAL, "subject has more than one %s", label);
    ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, idx));
    cleanup_ossl unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, data);
    if (len < 0)
        return ossl_fail(err, "decode subject %s", label);
    if (memchr(utf8, '\0', (size_t)len))
        return ink_err_set(err, EINVAL, "subject %s contains a NUL byte", label);
    if ((size_t)len >= outlen)
        return ink_err_set(err, EINVAL, "subject %s is longer than %zu bytes", label, outlen - 1);
    memcpy(out, utf8, (size_t)len);
    out[len] = '\0';
    return 0;
}

static int asn1_time_to_time_t(const ASN1_TIME *t, const char *label, time_t *out, ink_err *err)
{
    struct tm tm = {0};
    if (!t || !ASN1_TIME_to_tm(t, &tm))
        return ossl_fail(err, "decode %s", label);
    time_t v = timegm(&tm);
    if (v == (time_t)-1 && !(tm.tm_year == 69 && tm.tm_yday == 364))
        return ink_err_set(err, EOVERFLOW, "decode %s: out of range", label);
    *out = v;
    return 0;
}

static int cert_info(X509 *x, ink_cert_info *info, ink_err *err)
{
    ink_cert_info ci = {0};
    X509_NAME *subj = X509_get_subject_name(x);
    if (name_entry(subj, NID_commonName, "commonName", ci.cn, sizeof ci.cn, err) < 0 ||
        name_entry(subj, NID_organizationalUnitName, "organizationalUnitName", ci.ou, sizeof ci.ou,
                   err) < 0)
        return -1;
    if (asn1_time_to_time_t(X509_get0_notBefore(x), "notBefore", &ci.not_before, err) < 0 ||
        asn1_time_to_time_t(X509_get0_notAfter(x), "notAfter", &ci.not_after, err) < 0)
        return -1;
    ci.is_ca = X509_check_ca(x) > 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!X509_digest(x, EVP_sha256(), md, &mdlen) || mdlen != 32)
        return ossl_fail(err, "SHA-256 fingerprint");
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(ci.sha256 + 2 * i, 3, "%02x", md[i]);
    *info = ci;
    return 0;
}

int ink_pki_cert_info_pem(const char *pem, size_t len, ink_cert_info *info, ink_err *err)
{
    ERR_clear_error();
    if (!pem)
        return ink_err_set(err, EINVAL, "parse certificate: no data");
    cleanup_x509 X509 *x = parse_cert_pem(pem, len, "certificate", err);
    if (!x)
        return -1;
    if (cert_info(x, info, err) < 0)
        return ink_err_wrap(err, "certificate");
    return 0;
}

int ink_pki_cert_info_file(const char *path, ink_cert_info *info, ink_err *err)
{
    ERR_clear_error();
    cleanup_x509 X509 *x = load_cert_file(path, "certificate", err);
    if (!x)
        return -1;
    if (cert_info(x, info, err) < 0)
        return ink_err_wrap(err, "certificate %s", path);
    return 0;
}

/* ---- verification ---- */

/* Adds every certificate in ca_path to the store (a bundle of old and new CA
 * works during a CA rollover); at least one is required. */
static int load_ca_store(const char *ca_path, X509_STORE *store, ink_err *err)
{
    cleanup_free char *pem = NULL;
    size_t len = 0;
    if (ink_read_file(ca_path, PKI_MAX_FILE, &pem, &len, err) < 0)
        return ink_err_wrap(err, "read CA certificate");
    if (len > INT_MAX)
        return ink_err_set(err, EFBIG, "CA certificate %s: too large", ca_path);
    cleanup_bio BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return ossl_fail(err, "CA certificate %s", ca_path);
    int n = 0;
    for (;;) {
        cleanup_x509 X509 *x = PEM_read_bio_X509(bio, NULL, no_passphrase_cb, NULL);
        if (!x)
            break;
        if (!X509_STORE_add_cert(store, x))
            return ossl_fail(err, "CA certificate %s: add to store", ca_path);
        n++;
    }
    if (n == 0)
        return ossl_fail(err, "parse CA certificate %s", ca_path);
    ERR_clear_error(); /* the "no start line" that ended the loop */
    return 0;
}

int ink_pki_verify(const char *ca_path, const char *cert_path, const char *key_path, ink_err *err)
{
    ERR_clear_error();
    if (!ca_path || !cert_path)
        return ink_err_set(err, EINVAL, "verify certificate: no CA or certificate path");

    cleanup_store X509_STORE *store = X509_STORE_new();
    if (!store)
        return ossl_fail(err, "verify %s: create store", cert_path);
    if (load_ca_store(ca_path, store, err) < 0)
        return -1;
    cleanup_x509 X509 *x = load_cert_file(cert_path, "certificate", err);
    if (!x)
        return -1;

    cleanup_store_ctx X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!ctx || !X509_STORE_CTX_init(ctx, store, x, NULL))
        return ossl_fail(err, "verify %s: create context", cert_path);
    /* Chain purpose check as a TLS server (both ends serve); the client side
     * is checked on the leaf below. */
    if (!X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER))
        return ossl_fail(err, "verify %s: set purpose", cert_path);
    int rc = X509_verify_cert(ctx);
    if (rc != 1) {
        int verr = X509_STORE_CTX_get_error(ctx);
        ERR_clear_error();
        if (rc < 0 || verr == X509_V_OK)
            return ossl_fail(err, "verify %s against CA %s", cert_path, ca_path);
        return ink_err_set(err, 0, "verify %s against CA %s: %s", cert_path, ca_path,
                           X509_verify_cert_error_string(verr));
    }
    if (X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0) != 1)
        return ink_err_set(err, 0, "verify %s: not usable as a TLS server certificate", cert_path);
    if (X509_check_purpose(x, X509_PURPOSE_SSL_CLIENT, 0) != 1)
        return ink_err_set(err, 0, "verify %s: not usable as a TLS client certificate", cert_path);

    if (key_path) {
        cleanup_pkey EVP_PKEY *key = load_key_file(key_path, "key", err);
        if (!key)
            return -1;
        if (X509_check_private_key(x, key) != 1) {
            ERR_clear_error();
            return ink_err_set(err, 0, "verify %s with key %s: key does not match certificate",
                               cert_path, key_path);
        }
    }
    ERR_clear_error();
    return 0;
}
