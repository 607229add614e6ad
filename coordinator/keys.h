/* API keys for MCP clients: `ink_<keyid>_<secret>`, where keyid is 12 hex
 * characters (public: it names the key in lists, revocations and the audit
 * log) and secret is 32 random bytes as 64 hex characters, shown once at
 * creation and never stored.
 *
 * The store keeps HMAC-SHA256(key = 16-byte per-key salt, data = the 32
 * secret bytes), not a slow password hash (PBKDF2, scrypt): slow hashing
 * buys time against guessing low-entropy passwords from a stolen database,
 * and a 256-bit random secret cannot be guessed at any speed. A slow hash
 * would only make every authenticated request cost tens of milliseconds of
 * CPU, an easy way to exhaust the coordinator with bogus bearer tokens. */
#ifndef INK_KEYS_H
#define INK_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "store.h"

#define INK_KEYID_LEN 12
/* "ink_" keyid "_" secret, without the NUL */
#define INK_KEY_LEN (4 + INK_KEYID_LEN + 1 + 64)
#define INK_KEY_NAME_MAX 100

typedef enum ink_key_role {
    INK_ROLE_READER = 1,   /* read-only tools */
    INK_ROLE_DEPLOYER = 2, /* every tool of its project */
} ink_key_role;

typedef struct ink_key_info {
    char keyid[INK_KEYID_LEN + 1];
    char project[64];
    ink_key_role role;
    char name[INK_KEY_NAME_MAX + 1];
    int64_t created_ms;
    int64_t revoked_ms; /* 0 while valid */
} ink_key_info;

/* "reader"/"deployer" and back; parse returns 0 for anything else. */
const char *ink_key_role_name(ink_key_role role);
ink_key_role ink_key_role_parse(const char *s);

/* Makes a key for project (an ink_valid_name) with the given role and
 * label (may be NULL or ""; printable, at most INK_KEY_NAME_MAX bytes).
 * key gets the only copy of the full key (INK_KEY_LEN + 1 bytes); info,
 * when not NULL, what was stored. 0 or -1. */
int ink_keys_create(ink_store *s, const char *project, ink_key_role role, const char *name,
                    int64_t now_ms, char key[INK_KEY_LEN + 1], ink_key_info *info, ink_err *err);

/* 1: presented is a valid, unrevoked key (out, when not NULL, says whose);
 * 0: it is not (malformed, unknown, wrong secret or revoked; the secret is
 * compared in constant time); -1: database error. */
int ink_keys_verify(ink_store *s, const char *presented, ink_key_info *out, ink_err *err);

/* Every key, revoked ones too, ordered by project then creation, in a
 * malloc'ed array. 0 or -1. */
int ink_keys_list(ink_store *s, ink_key_info **rows, size_t *n, ink_err *err);

/* 0 revoked now, 1 was already revoked (nothing changed), 2 no such key,
 * -1 error. */
int ink_keys_revoke(ink_store *s, const char *keyid, int64_t now_ms, ink_err *err);

/* `ink-coordinator keys create|list|revoke` (argv[0] is the subcommand),
 * results to out, messages to errf. 0 done, 1 failed, 2 usage error. */
struct ink_coordinator_config;
int ink_cmd_keys(const struct ink_coordinator_config *cfg, int argc, char **argv, FILE *out,
                 FILE *errf);

#endif
