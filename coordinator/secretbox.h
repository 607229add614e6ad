/* Secrets at rest: AES-256-GCM under one 32-byte key kept in a key file
 * beside the database, so that the database file alone (a copy, a backup
 * sent somewhere, a stray `sqlite3 .dump`) does not reveal app secrets.
 * Someone who can read both files can read the secrets; the key file is
 * what a backup that must not carry secrets leaves out.
 *
 * A sealed value is text, "v1:" base64(nonce || ciphertext || tag), with a
 * random 12-byte nonce per value (random nonces under one key are safe far
 * beyond the number of secrets a coordinator will ever seal) and the text
 * "ink secret v1" as associated data. The version prefix leaves room for
 * another format or key later.
 *
 * The same key also keys every digest of a secret that is stored or shown
 * (fingerprints, request hashes): a plain hash of a weak secret would let
 * anyone who sees it, a reader API key or the database file, test guesses
 * offline at hash speed. */
#ifndef INK_SECRETBOX_H
#define INK_SECRETBOX_H

#include <stddef.h>

#include "err.h"

#define INK_SECRETBOX_KEY_LEN 32
#define INK_SECRETBOX_PREFIX "v1:"

typedef struct ink_secretbox ink_secretbox;

/* Loads the key from key_path: a regular file (symlinks to one are
 * followed) of exactly 32 bytes that neither group nor others may access;
 * anything else is refused, never repaired. When key_path does not exist a
 * new random key is written there (mode 0600, synced with its directory).
 * Two processes creating it at once end up with the same key. key_path
 * NULL gives a random key that is never written anywhere, for in-memory
 * databases. */
int ink_secretbox_open(const char *key_path, ink_secretbox **out, ink_err *err);
void ink_secretbox_free(ink_secretbox *b); /* wipes the key */

/* The sealed text of len bytes at plain, malloc'ed; NULL only when the
 * random number generator or the cipher fails. */
char *ink_secretbox_seal(const ink_secretbox *b, const void *plain, size_t len);
/* *plain (malloc'ed, NUL-terminated after *len bytes; len may be NULL) or
 * -1: "cannot decrypt secret: ..." for anything that is not a value sealed
 * with this key, altered or not. */
int ink_secretbox_unseal(const ink_secretbox *b, const char *sealed, char **plain, size_t *len,
                         ink_err *err);

/* Fingerprints, for display and audit records: the first 16 hex digits of
 * HMAC-SHA256 of the value under a subkey derived from this box's key
 * (HMAC(key, "ink fingerprint v1"), so they never touch the key the
 * cipher uses). Equal values give equal fingerprints within one
 * coordinator (one key file), which is what they are for: telling whether
 * a secret changed, or matching an audit entry against an app. Only the
 * holder of the key file can test a guess against one; a reader key or
 * the database file alone cannot, however weak the secret. Fingerprints
 * made under another key do not compare. value NULL is "". 0, or -1 with
 * out "unavailable" when the MAC fails. */
int ink_secretbox_fingerprint(const ink_secretbox *b, const void *value, size_t len, char out[17]);

/* out = the 64 hex digits of HMAC-SHA256 of len bytes at data under
 * another subkey (HMAC(key, "ink mac v1")): a digest of data that holds
 * secrets (a request with its secret_env) that can be stored where the
 * secrets themselves may not, since testing a guess needs the key. 0, or
 * -1 when the MAC fails (out is then ""). */
int ink_secretbox_mac_hex(const ink_secretbox *b, const void *data, size_t len, char out[65]);

#endif
