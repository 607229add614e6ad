/* The audit trail: every mutating call, appended to a hash-chained log in
 * the store. Row seq (1, 2, ...) stores
 *
 *   hash = SHA-256(prev_hash || canonical entry)
 *
 * where prev_hash is the 32 bytes of row seq-1's hash (zeros for seq 1) and
 * the canonical entry is the JSON object {arguments, key_id, project,
 * result, seq, time_ms, tool} serialized by jansson with sorted keys and no
 * whitespace. The last seq and hash are also kept in a meta row written in
 * the same transaction, so verification finds edited rows (hash mismatch),
 * deleted rows (a gap in seq) and a deleted tail (the head points past the
 * last row).
 *
 * What the chain cannot catch is someone who rewrites the whole file,
 * chain and head included: `audit verify` prints the head hash so that it
 * can be recorded elsewhere and compared later. */
#ifndef INK_AUDIT_H
#define INK_AUDIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "store.h"

#define INK_AUDIT_HASH_HEX 64

typedef struct ink_audit_entry {
    int64_t time_ms;
    const char *key_id;      /* the API key's id, or "cli" for operator commands */
    const char *project;     /* NULL or "" when none */
    const char *tool;        /* e.g. "create_app", "keys.create" */
    const json_t *arguments; /* already redacted (ink_audit_redact); NULL is {} */
    const char *result;      /* "ok" or "error: ..." */
} ink_audit_entry;

/* Appends e atomically (BEGIN IMMEDIATE: concurrent appenders, threads or
 * processes, each get their own seq). *seq, when not NULL, gets the row's
 * seq. 0 or -1. */
int ink_audit_append_seq(ink_store *s, const ink_audit_entry *e, int64_t *seq, ink_err *err);
int ink_audit_append(ink_store *s, const ink_audit_entry *e, ink_err *err);

/* A deep copy of args in which the value under every member named in
 * secret_keys (NULL-terminated; NULL means {"secret_env", NULL}), at any
 * depth, is replaced by fingerprints: an object keeps its member names
 * (variable names are not secret) with each value replaced by
 * {"fingerprint": "<16 hex digits>"}, s's keyed fingerprint of the value
 * (ink_store_fingerprint, the one get_app_details shows); an array has
 * each element replaced so; anything else is replaced as a whole. String
 * values are fingerprinted as their bytes, others as their compact JSON.
 * The secret itself is never copied. NULL args gives {}.
 *
 * Entries written before fingerprints were keyed hold {"sha256": ...},
 * the first 16 hex digits of plain SHA-256 of the value; they stay as
 * they are, since the chain covers them. */
json_t *ink_audit_redact(ink_store *s, const json_t *args, const char *const *secret_keys);

typedef struct ink_audit_verify_result {
    int64_t rows;          /* rows read */
    int64_t head_seq;      /* what meta says the last seq is */
    int64_t first_bad_seq; /* 0 when intact */
    char reason[160];      /* why first_bad_seq is bad */
    char head_hash[INK_AUDIT_HASH_HEX + 1];
} ink_audit_verify_result;

/* Walks the chain in one read transaction. 0 intact, 1 broken (see r),
 * -1 error. */
int ink_audit_verify(ink_store *s, ink_audit_verify_result *r, ink_err *err);

typedef struct ink_audit_row {
    int64_t seq;
    int64_t time_ms;
    char *key_id, *project, *tool, *arguments, *result;
    char hash[INK_AUDIT_HASH_HEX + 1];
} ink_audit_row;

/* The last `tail` rows (every row when tail <= 0), oldest first, in a
 * malloc'ed array freed with ink_audit_free_rows(). 0 or -1. */
int ink_audit_list(ink_store *s, int64_t tail, ink_audit_row **rows, size_t *n, ink_err *err);
void ink_audit_free_rows(ink_audit_row *rows, size_t n);

/* `ink-coordinator audit verify|list`. 0 done (verify: chain intact),
 * 1 failed (verify: chain broken), 2 usage error. */
struct ink_coordinator_config;
int ink_cmd_audit(const struct ink_coordinator_config *cfg, int argc, char **argv, FILE *out,
                  FILE *errf);

#endif
