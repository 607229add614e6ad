#include "audit.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "coordinator.h"
#include "db.h"
#include "util.h"

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

static int sha256(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, a, alen) &&
             (blen == 0 || EVP_DigestUpdate(ctx, b, blen)) && EVP_DigestFinal_ex(ctx, out, &len) &&
             len == 32;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* --------------------------------------------------------------- redaction */

/* The same keyed fingerprint the apps layer shows for a secret
 * (ink_store_fingerprint), so an audit entry can be matched against
 * get_app_details; the log is in the database file, where a plain hash
 * would let a weak secret be guessed. */
static json_t *fingerprint(ink_store *s, const json_t *v)
{
    char hex[17];
    if (json_is_string(v)) {
        ink_store_fingerprint(s, json_string_value(v), json_string_length(v), hex);
    } else {
        char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (!text)
            return json_pack("{s:s}", "fingerprint", "unavailable");
        ink_store_fingerprint(s, text, strlen(text), hex);
        free(text);
    }
    /* "unavailable" when the MAC failed: the call is audited regardless. */
    return json_pack("{s:s}", "fingerprint", hex);
}

static bool is_secret_key(const char *key, const char *const *secret_keys)
{
    for (const char *const *k = secret_keys; *k; k++) {
        if (strcmp(key, *k) == 0)
            return true;
    }
    return false;
}

static json_t *redact_secret(ink_store *s, const json_t *v)
{
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m) json_object_set_new(o, k, fingerprint(s, m));
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) json_array_append_new(a, fingerprint(s, m));
        return a;
    }
    return fingerprint(s, v);
}

/* Builds the copy member by member, never through json_deep_copy() of a
 * secret, so no secret value is ever referenced from the result. */
static json_t *redact(ink_store *s, const json_t *v, const char *const *secret_keys)
{
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m)
        {
            json_object_set_new(o, k,
                                is_secret_key(k, secret_keys) ? redact_secret(s, m)
                                                              : redact(s, m, secret_keys));
        }
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) json_array_append_new(a, redact(s, m, secret_keys));
        return a;
    }
    return json_deep_copy(v);
}

json_t *ink_audit_redact(ink_store *s, const json_t *args, const char *const *secret_keys)
{
    static const char *const defaults[] = {"secret_env", NULL};
    if (!args)
        return json_object();
    return redact(s, args, secret_keys ? secret_keys : defaults);
}

/* ------------------------------------------------------------------ chain */

/* The canonical text the hash covers: every stored field but the hashes,
 * sorted keys, no whitespace. Verification rebuilds it from the columns,
 * so the arguments column is itself stored in this canonical form. */
static char *canonical(int64_t seq, int64_t time_ms, const char *key_id, const char *project,
                       const char *tool, json_t *args, const char *result)
{
    json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:s, s:O, s:s}", "seq", (json_int_t)seq, "time_ms",
                          (json_int_t)time_ms, "key_id", key_id, "project", project, "tool", tool,
                          "arguments", args, "result", result);
    if (!o)
        return NULL;
    char *text = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(o);
    return text;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int from_hex32(const char *in, uint8_t out[32])
{
    if (!in || strlen(in) != 64)
        return -1;
    for (size_t i = 0; i < 32; i++) {
        int hi = hex_val(in[2 * i]), lo = hex_val(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* hash of one entry after prev_hex; -1 when prev_hex is not a hash. */
static int chain_hash(const char *prev_hex, const char *text, char out[65])
{
    uint8_t prev[32], d[32];
    if (from_hex32(prev_hex, prev) < 0 || sha256(prev, sizeof prev, text, strlen(text), d) < 0)
        return -1;
    ink_hex(d, sizeof d, out);
    return 0;
}

static int meta_read(sqlite3 *db, const char *key, char *out, size_t outlen, ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db, "SELECT value FROM meta WHERE key = ?", &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
        return 0;
    }
    if (step == SQLITE_DONE)
        return ink_err_set(err, 0, "database: meta row %s missing", key);
    return ink_db_err(db, err, "read meta");
}

static int meta_write(sqlite3 *db, const char *key, const char *value, ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db, "UPDATE meta SET value = ? WHERE key = ?", &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, value, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return ink_db_err(db, err, "write meta");
    if (sqlite3_changes(db) != 1)
        return ink_err_set(err, 0, "database: meta row %s missing", key);
    return 0;
}

/* Reads the head: last seq and hash. */
static int read_head(sqlite3 *db, int64_t *seq, char hash[65], ink_err *err)
{
    char buf[32];
    if (meta_read(db, "audit_head_seq", buf, sizeof buf, err) < 0 ||
        meta_read(db, "audit_head_hash", hash, 65, err) < 0)
        return -1;
    *seq = strtoll(buf, NULL, 10);
    return 0;
}

static int append_locked(sqlite3 *db, const ink_audit_entry *e, int64_t *seq_out, ink_err *err)
{
    int64_t head;
    char prev[65], hash[65];
    if (read_head(db, &head, prev, err) < 0)
        return -1;
    int64_t seq = head + 1;
    const char *key_id = e->key_id ? e->key_id : "";
    const char *project = e->project ? e->project : "";
    const char *tool = e->tool ? e->tool : "";
    const char *result = e->result ? e->result : "";
    json_t *empty = e->arguments ? NULL : json_object();
    json_t *use = e->arguments ? (json_t *)e->arguments : empty;
    cleanup_free char *args_text = json_dumps(use, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
    cleanup_free char *text = canonical(seq, e->time_ms, key_id, project, tool, use, result);
    json_decref(empty);
    if (!args_text || !text)
        return ink_err_set(err, 0, "audit entry: cannot serialize (invalid UTF-8?)");
    if (chain_hash(prev, text, hash) < 0)
        return ink_err_set(err, 0, "audit head hash '%s' is corrupt", prev);
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db, "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", &st, err) <
        0)
        return -1;
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_int64(st, 2, e->time_ms);
    sqlite3_bind_text(st, 3, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, project, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, tool, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, args_text, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, result, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, prev, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, hash, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return ink_db_err(db, err, "append audit entry");
    char seqbuf[24];
    snprintf(seqbuf, sizeof seqbuf, "%" PRId64, seq);
    if (meta_write(db, "audit_head_seq", seqbuf, err) < 0 ||
        meta_write(db, "audit_head_hash", hash, err) < 0)
        return -1;
    if (seq_out)
        *seq_out = seq;
    return 0;
}

int ink_audit_append_seq(ink_store *s, const ink_audit_entry *e, int64_t *seq, ink_err *err)
{
    sqlite3 *db = ink_store_lock(s);
    /* IMMEDIATE: the write lock before the head is read, so two appenders
     * (this process or another) never chain onto the same head. */
    int rc = ink_db_exec(db, "BEGIN IMMEDIATE", err);
    if (rc == 0)
        rc = ink_db_end_txn(db, append_locked(db, e, seq, err), err);
    ink_store_unlock(s);
    return rc;
}

int ink_audit_append(ink_store *s, const ink_audit_entry *e, ink_err *err)
{
    return ink_audit_append_seq(s, e, NULL, err);
}

static void broken(ink_audit_verify_result *r, int64_t seq, const char *reason)
{
    r->first_bad_seq = seq;
    snprintf(r->reason, sizeof r->reason, "%s", reason);
}

static const char *col(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

static int verify_locked(sqlite3 *db, ink_audit_verify_result *r, ink_err *err)
{
    char prev[65] = ZERO_HASH;
    if (read_head(db, &r->head_seq, r->head_hash, err) < 0)
        return -1;
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(
            db,
            "SELECT seq, time_ms, key_id, project, tool, arguments, result, prev_hash, hash"
            " FROM audit_log ORDER BY seq",
            &st, err) < 0)
        return -1;
    int64_t expect = 1;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        r->rows++;
        int64_t seq = sqlite3_column_int64(st, 0);
        if (seq != expect) {
            /* A gap: expect was deleted (or seq rewritten). */
            broken(r, expect, seq > expect ? "row missing" : "seq out of order");
            return 1;
        }
        if (strcmp(col(st, 7), prev) != 0) {
            broken(r, seq, "prev_hash does not match the previous row's hash");
            return 1;
        }
        json_error_t jerr;
        json_t *args = json_loads(col(st, 5), JSON_DECODE_ANY, &jerr);
        if (!args) {
            broken(r, seq, "arguments are not JSON");
            return 1;
        }
        cleanup_free char *text = canonical(seq, sqlite3_column_int64(st, 1), col(st, 2),
                                            col(st, 3), col(st, 4), args, col(st, 6));
        json_decref(args);
        char hash[65];
        if (!text || chain_hash(prev, text, hash) < 0 || strcmp(hash, col(st, 8)) != 0) {
            broken(r, seq, "hash mismatch: the row was modified");
            return 1;
        }
        memcpy(prev, hash, sizeof prev);
        expect++;
    }
    if (step != SQLITE_DONE)
        return ink_db_err(db, err, "read audit log");
    int64_t last = expect - 1;
    /* The head is written with each row: rows behind it were removed,
     * rows past it were added without it. */
    if (r->head_seq > last) {
        broken(r, last + 1, "row missing: the log ends before its recorded head");
        return 1;
    }
    if (r->head_seq < last) {
        broken(r, r->head_seq + 1, "row past the recorded head");
        return 1;
    }
    if (strcmp(r->head_hash, prev) != 0) {
        broken(r, last, "recorded head hash does not match the last row");
        return 1;
    }
    return 0;
}

int ink_audit_verify(ink_store *s, ink_audit_verify_result *r, ink_err *err)
{
    *r = (ink_audit_verify_result){0};
    sqlite3 *db = ink_store_lock(s);
    /* One read transaction: the head and the rows from the same state. */
    int rc = ink_db_exec(db, "BEGIN", err);
    if (rc == 0) {
        rc = verify_locked(db, r, err);
        ink_db_exec(db, rc < 0 ? "ROLLBACK" : "COMMIT", NULL);
    }
    ink_store_unlock(s);
    return rc;
}

static void read_row(sqlite3_stmt *st, void *p)
{
    ink_audit_row *row = p;
    row->seq = sqlite3_column_int64(st, 0);
    row->time_ms = sqlite3_column_int64(st, 1);
    row->key_id = ink_xstrdup(col(st, 2));
    row->project = ink_xstrdup(col(st, 3));
    row->tool = ink_xstrdup(col(st, 4));
    row->arguments = ink_xstrdup(col(st, 5));
    row->result = ink_xstrdup(col(st, 6));
    snprintf(row->hash, sizeof row->hash, "%s", col(st, 7));
}

int ink_audit_list(ink_store *s, int64_t tail, ink_audit_row **rows, size_t *n, ink_err *err)
{
    *rows = NULL;
    *n = 0;
    sqlite3 *db = ink_store_lock(s);
    cleanup_stmt sqlite3_stmt *st = NULL;
    int rc = ink_db_prepare(
        db,
        "SELECT * FROM (SELECT seq, time_ms, key_id, project, tool, arguments, result,"
        " hash FROM audit_log ORDER BY seq DESC LIMIT ?) ORDER BY seq",
        &st, err);
    if (rc == 0)
        sqlite3_bind_int64(st, 1, tail > 0 ? tail : -1);
    if (rc == 0)
        rc = ink_db_collect(db, st, "list audit log", sizeof **rows, (void **)rows, n, read_row,
                            err);
    ink_store_unlock(s);
    if (rc < 0) {
        ink_audit_free_rows(*rows, *n);
        *rows = NULL;
        *n = 0;
    }
    return rc;
}

void ink_audit_free_rows(ink_audit_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rows[i].key_id);
        free(rows[i].project);
        free(rows[i].tool);
        free(rows[i].arguments);
        free(rows[i].result);
    }
    free(rows);
}

/* -------------------------------------------------------------------- CLI */

#define VERIFY_USAGE "usage: ink-coordinator audit verify\n"
#define LIST_USAGE "usage: ink-coordinator audit list [--tail N] [--json]\n"

static int open_store(const ink_coordinator_config *cfg, const char *sub, ink_store **s, FILE *errf)
{
    ink_err err = {0};
    if (ink_store_open(cfg->database, s, &err) < 0) {
        fprintf(errf, "ink-coordinator audit %s: %s\n", sub, err.msg);
        return -1;
    }
    return 0;
}

static int cmd_verify(const ink_coordinator_config *cfg, int argc, FILE *out, FILE *errf)
{
    if (argc != 1) {
        fprintf(errf, VERIFY_USAGE);
        return 2;
    }
    ink_store *s;
    if (open_store(cfg, "verify", &s, errf) < 0)
        return 1;
    ink_err err = {0};
    ink_audit_verify_result r;
    int rc = ink_audit_verify(s, &r, &err);
    ink_store_close(s);
    if (rc < 0) {
        fprintf(errf, "ink-coordinator audit verify: %s\n", err.msg);
        return 1;
    }
    if (rc == 1) {
        fprintf(out, "audit log BROKEN at seq %" PRId64 ": %s\n", r.first_bad_seq, r.reason);
        return 1;
    }
    fprintf(out, "audit log intact: %" PRId64 " entries, head %s\n", r.rows, r.head_hash);
    return 0;
}

/* Untrusted text (tool names, results) goes to a terminal: no escapes.
 * Padded with spaces to width, then one space. */
static void put_clean(const char *s, int width, FILE *out)
{
    int n = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++, n++)
        fputc(*c < 0x20 || *c == 0x7f ? '?' : *c, out);
    fprintf(out, "%*s ", width > n ? width - n : 0, "");
}

static int cmd_list(const ink_coordinator_config *cfg, int argc, char **argv, FILE *out, FILE *errf)
{
    bool json = false;
    int64_t tail = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
            continue;
        }
        if (strcmp(argv[i], "--tail") == 0 && i + 1 < argc)
            v = argv[++i];
        else if (strncmp(argv[i], "--tail=", 7) == 0)
            v = argv[i] + 7;
        char *end;
        if (!v || !*v || (tail = strtoll(v, &end, 10), *end) || tail <= 0) {
            fprintf(errf, LIST_USAGE);
            return 2;
        }
    }
    ink_store *s;
    if (open_store(cfg, "list", &s, errf) < 0)
        return 1;
    ink_err err = {0};
    ink_audit_row *rows;
    size_t n;
    int rc = ink_audit_list(s, tail, &rows, &n, &err);
    ink_store_close(s);
    if (rc < 0) {
        fprintf(errf, "ink-coordinator audit list: %s\n", err.msg);
        return 1;
    }
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            const ink_audit_row *r = &rows[i];
            json_t *args = json_loads(r->arguments, JSON_DECODE_ANY, NULL);
            json_array_append_new(
                arr, json_pack("{s:I, s:I, s:s, s:s, s:s, s:o, s:s, s:s}", "seq",
                               (json_int_t)r->seq, "time_ms", (json_int_t)r->time_ms, "key_id",
                               r->key_id, "project", r->project, "tool", r->tool, "arguments",
                               args ? args : json_string(r->arguments), "result", r->result, "hash",
                               r->hash));
        }
        char *text = json_dumps(arr, JSON_INDENT(2));
        fprintf(out, "%s\n", text);
        free(text);
        json_decref(arr);
    } else {
        fprintf(out, "%6s %-20s %-12s %-16s %-16s %-20s %s\n", "SEQ", "TIME", "KEY", "PROJECT",
                "TOOL", "RESULT", "ARGUMENTS");
        for (size_t i = 0; i < n; i++) {
            const ink_audit_row *r = &rows[i];
            char when[32];
            time_t t = (time_t)(r->time_ms / 1000);
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
            fprintf(out, "%6" PRId64 " %-20s ", r->seq, when);
            put_clean(r->key_id, 12, out);
            put_clean(*r->project ? r->project : "-", 16, out);
            put_clean(r->tool, 16, out);
            put_clean(r->result, 20, out);
            put_clean(r->arguments, 0, out);
            fputc('\n', out);
        }
    }
    ink_audit_free_rows(rows, n);
    return 0;
}

int ink_cmd_audit(const ink_coordinator_config *cfg, int argc, char **argv, FILE *out, FILE *errf)
{
    const char *sub = argc > 0 ? argv[0] : "";
    if (strcmp(sub, "verify") == 0)
        return cmd_verify(cfg, argc, out, errf);
    if (strcmp(sub, "list") == 0)
        return cmd_list(cfg, argc, argv, out, errf);
    fprintf(errf, VERIFY_USAGE LIST_USAGE);
    return 2;
}
