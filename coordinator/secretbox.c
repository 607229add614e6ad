#include "secretbox.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define NONCE_LEN 12
#define TAG_LEN 16
#define PREFIX_LEN (sizeof INK_SECRETBOX_PREFIX - 1)

/* Binds every sealed value to this format: a value cannot be replayed as
 * some other kind of ciphertext made with the same key later. */
static const unsigned char aad[] = "ink secret v1";
#define AAD_LEN (sizeof aad - 1)

/* The subkeys are HMAC(key, label): a PRF output each, unrelated to one
 * another and to the AES key, so a MAC made for one use never equals one
 * made for another, and none says anything about the key. */
static const char fingerprint_label[] = "ink fingerprint v1";
static const char mac_label[] = "ink mac v1";

struct ink_secretbox {
    uint8_t key[INK_SECRETBOX_KEY_LEN];
    uint8_t fingerprint_key[32];
    uint8_t mac_key[32];
};

/* ---------------------------------------------------------------- key file */

/* 0 and the key, 1 when path does not exist, -1. Refuses rather than
 * repairs: a key file with the wrong size or mode is a mistake or someone
 * else's file, and "fixing" it would lose the key to every stored secret. */
static int load_key(const char *path, uint8_t key[INK_SECRETBOX_KEY_LEN], ink_err *err)
{
    /* O_NONBLOCK: a FIFO planted under the name must not hang the open;
     * it has no effect on the regular file we expect. */
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        return ink_err_set(err, errno, "open secret key file %s", path);
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        return ink_err_set(err, errno, "stat secret key file %s", path);
    if (!S_ISREG(st.st_mode))
        return ink_err_set(err, 0, "secret key file %s is not a regular file: refusing to use it",
                           path);
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        return ink_err_set(err, 0,
                           "secret key file %s has mode %04o, open to group or others: refusing "
                           "to use it (chmod 600 %s)",
                           path, (unsigned)(st.st_mode & 07777), path);
    if (st.st_size != INK_SECRETBOX_KEY_LEN)
        return ink_err_set(err, 0,
                           "secret key file %s is %lld bytes, a key is exactly %d: refusing to use "
                           "it (wrong file, or damaged)",
                           path, (long long)st.st_size, INK_SECRETBOX_KEY_LEN);
    size_t got = 0;
    while (got < INK_SECRETBOX_KEY_LEN) {
        ssize_t r = read(fd, key + got, INK_SECRETBOX_KEY_LEN - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return ink_err_set(err, errno, "read secret key file %s", path);
        if (r == 0)
            return ink_err_set(err, 0, "secret key file %s: shorter than %d bytes", path,
                               INK_SECRETBOX_KEY_LEN);
        got += (size_t)r;
    }
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int sync_dir_of(const char *path, ink_err *err)
{
    cleanup_free char *copy = ink_xstrdup(path);
    const char *dir = dirname(copy);
    cleanup_close int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0)
        return ink_err_set(err, errno, "sync directory %s", dir);
    return 0;
}

/* Puts a new random key at path unless a key file appears there first;
 * either way the caller then loads whatever path holds. The key is written
 * and synced under a temporary name and linked into place: link() fails
 * when the name exists, so of two creators exactly one wins, and the name
 * never shows a partly written file, which O_EXCL on the final name would
 * (the loser could read it empty, and a crash could leave it so). */
static int create_key(const char *path, ink_err *err)
{
    uint8_t key[INK_SECRETBOX_KEY_LEN];
    char tag[17];
    if (ink_random_bytes(key, sizeof key, err) < 0 || ink_random_hex(tag, 8, err) < 0)
        return ink_err_wrap(err, "create secret key file %s", path);
    cleanup_free char *tmp = ink_xasprintf("%s.%s.tmp", path, tag);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        OPENSSL_cleanse(key, sizeof key);
        return ink_err_set(err, errno, "create secret key file %s", tmp);
    }
    int rc = write_all(fd, key, sizeof key) < 0 || fsync(fd) < 0 ? -1 : 0;
    int e = errno;
    OPENSSL_cleanse(key, sizeof key);
    if (close(fd) < 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc < 0) {
        unlink(tmp);
        return ink_err_set(err, e, "write secret key file %s", tmp);
    }
    rc = link(tmp, path);
    e = errno;
    unlink(tmp);
    if (rc < 0 && e != EEXIST)
        return ink_err_set(err, e, "create secret key file %s", path);
    /* The key must be durable before anything sealed with it is: a
     * database that outlives its key after a crash has lost its secrets. */
    return sync_dir_of(path, err);
}

static int hmac_sha256(const uint8_t key[32], const void *data, size_t len, uint8_t out[32])
{
    unsigned int olen = 0;
    /* HMAC() takes no NULL data even for len 0. */
    if (!HMAC(EVP_sha256(), key, 32, data ? data : (const void *)"", len, out, &olen) || olen != 32)
        return -1;
    return 0;
}

static int derive(const uint8_t key[INK_SECRETBOX_KEY_LEN], const char *label, uint8_t out[32])
{
    return hmac_sha256(key, label, strlen(label), out);
}

int ink_secretbox_open(const char *key_path, ink_secretbox **out, ink_err *err)
{
    ink_secretbox *b = ink_xcalloc(1, sizeof *b);
    int rc;
    if (!key_path) {
        rc = ink_random_bytes(b->key, sizeof b->key, err);
    } else {
        rc = load_key(key_path, b->key, err);
        if (rc == 1) {
            rc = create_key(key_path, err);
            if (rc == 0)
                rc = load_key(key_path, b->key, err);
            /* Removed again at once, or a dangling symlink (link() found
             * the name taken, open() finds nothing behind it). */
            if (rc == 1)
                rc = ink_err_set(err, ENOENT, "secret key file %s", key_path);
        }
    }
    if (rc == 0 && (derive(b->key, fingerprint_label, b->fingerprint_key) < 0 ||
                    derive(b->key, mac_label, b->mac_key) < 0))
        rc = ink_err_set(err, 0, "secret key: HMAC-SHA256 failed");
    if (rc < 0) {
        ink_secretbox_free(b);
        return -1;
    }
    *out = b;
    return 0;
}

void ink_secretbox_free(ink_secretbox *b)
{
    if (!b)
        return;
    OPENSSL_cleanse(b, sizeof *b);
    free(b);
}

/* ------------------------------------------------------------ seal, unseal */

char *ink_secretbox_seal(const ink_secretbox *b, const void *plain, size_t len)
{
    /* EVP counts in int; secrets are environment values, far smaller. */
    if (len > (size_t)INT_MAX / 2)
        return NULL;
    size_t raw_len = NONCE_LEN + len + TAG_LEN;
    cleanup_free uint8_t *raw = ink_xmalloc(raw_len);
    if (ink_random_bytes(raw, NONCE_LEN, NULL) < 0)
        return NULL;
    uint8_t *ct = raw + NONCE_LEN, *tag = ct + len;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0;
    bool ok = ctx && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
              EVP_EncryptInit_ex(ctx, NULL, NULL, b->key, raw) == 1 &&
              EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int)AAD_LEN) == 1 &&
              (len == 0 ||
               (EVP_EncryptUpdate(ctx, ct, &outl, plain, (int)len) == 1 && outl == (int)len)) &&
              EVP_EncryptFinal_ex(ctx, tag, &outl) == 1 && outl == 0 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok)
        return NULL;
    size_t enc_len = 4 * ((raw_len + 2) / 3);
    char *out = ink_xmalloc(PREFIX_LEN + enc_len + 1);
    memcpy(out, INK_SECRETBOX_PREFIX, PREFIX_LEN);
    EVP_EncodeBlock((unsigned char *)out + PREFIX_LEN, raw, (int)raw_len);
    return out;
}

static int damaged(ink_err *err)
{
    return ink_err_set(err, 0, "cannot decrypt secret: wrong key file or damaged data");
}

static bool b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* Strict base64 (what EVP_EncodeBlock writes: no whitespace, padded) into
 * a malloc'ed buffer; -1 when text is not that. EVP_DecodeBlock alone
 * skips whitespace and counts padding as zero bytes. */
static int b64_decode(const char *text, uint8_t **out, size_t *out_len)
{
    size_t n = strlen(text), pad = 0;
    if (n == 0 || n % 4 != 0 || n > INT_MAX)
        return -1;
    while (pad < 2 && text[n - 1 - pad] == '=')
        pad++;
    for (size_t i = 0; i < n - pad; i++) {
        if (!b64_char(text[i]))
            return -1;
    }
    uint8_t *buf = ink_xmalloc(n / 4 * 3);
    int got = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)n);
    if (got < 0 || (size_t)got != n / 4 * 3) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = (size_t)got - pad;
    return 0;
}

int ink_secretbox_unseal(const ink_secretbox *b, const char *sealed, char **plain, size_t *len,
                         ink_err *err)
{
    *plain = NULL;
    if (!sealed || strncmp(sealed, INK_SECRETBOX_PREFIX, PREFIX_LEN) != 0)
        return ink_err_set(err, 0, "cannot decrypt secret: not a sealed value");
    cleanup_free uint8_t *raw = NULL;
    size_t raw_len;
    if (b64_decode(sealed + PREFIX_LEN, &raw, &raw_len) < 0 || raw_len < NONCE_LEN + TAG_LEN)
        return damaged(err);
    size_t clen = raw_len - NONCE_LEN - TAG_LEN;
    uint8_t *ct = raw + NONCE_LEN, *tag = ct + clen;
    char *out = ink_xmalloc(clen + 1);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0;
    /* The tag is checked by DecryptFinal: until it passes, what the
     * updates produced is unauthenticated and gets wiped. */
    bool ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
              EVP_DecryptInit_ex(ctx, NULL, NULL, b->key, raw) == 1 &&
              EVP_DecryptUpdate(ctx, NULL, &outl, aad, (int)AAD_LEN) == 1 &&
              (clen == 0 || (EVP_DecryptUpdate(ctx, (uint8_t *)out, &outl, ct, (int)clen) == 1 &&
                             outl == (int)clen)) &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1 &&
              EVP_DecryptFinal_ex(ctx, (uint8_t *)out + clen, &outl) == 1 && outl == 0;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        OPENSSL_cleanse(out, clen);
        free(out);
        return damaged(err);
    }
    out[clen] = '\0';
    *plain = out;
    if (len)
        *len = clen;
    return 0;
}

/* ------------------------------------------------------------- fingerprint */

int ink_secretbox_fingerprint(const ink_secretbox *b, const void *value, size_t len, char out[17])
{
    uint8_t d[32];
    if (hmac_sha256(b->fingerprint_key, value, len, d) < 0) {
        snprintf(out, 17, "unavailable");
        return -1;
    }
    ink_hex(d, 8, out); /* 16 hex digits: enough to tell values apart */
    return 0;
}

int ink_secretbox_mac_hex(const ink_secretbox *b, const void *data, size_t len, char out[65])
{
    uint8_t d[32];
    if (hmac_sha256(b->mac_key, data, len, d) < 0) {
        out[0] = '\0';
        return -1;
    }
    ink_hex(d, sizeof d, out);
    return 0;
}
