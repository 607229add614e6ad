#include "keys.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "coordinator.h"
#include "db.h"
#include "util.h"

#define SALT_LEN 16
#define SECRET_LEN 32
#define HASH_LEN 32

const char *ink_key_role_name(ink_key_role role)
{
    return role == INK_ROLE_DEPLOYER ? "deployer" : role == INK_ROLE_READER ? "reader" : "?";
}

ink_key_role ink_key_role_parse(const char *s)
{
    if (s && strcmp(s, "reader") == 0)
        return INK_ROLE_READER;
    if (s && strcmp(s, "deployer") == 0)
        return INK_ROLE_DEPLOYER;
    return 0;
}

static bool valid_label(const char *s)
{
    if (strlen(s) > INK_KEY_NAME_MAX)
        return false;
    /* Printed in tables and terminals: no control characters. */
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c < 0x20 || *c == 0x7f)
            return false;
    }
    return true;
}

static int key_hash(const uint8_t *salt, const uint8_t *secret, uint8_t out[HASH_LEN], ink_err *err)
{
    unsigned int len = HASH_LEN;
    if (!HMAC(EVP_sha256(), salt, SALT_LEN, secret, SECRET_LEN, out, &len) || len != HASH_LEN)
        return ink_err_set(err, 0, "HMAC-SHA256 failed");
    return 0;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* uppercase too: the key is printed lowercase, one spelling only */
}

/* Lowercase hex of exactly 2*n digits into n bytes; -1 when not. */
static int from_hex(const char *in, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_val(in[2 * i]), lo = hi < 0 ? -1 : hex_val(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static bool valid_keyid(const char *s)
{
    if (!s || strlen(s) != INK_KEYID_LEN)
        return false;
    for (size_t i = 0; i < INK_KEYID_LEN; i++) {
        if (hex_val(s[i]) < 0)
            return false;
    }
    return true;
}

int ink_keys_create(ink_store *s, const char *project, ink_key_role role, const char *name,
                    int64_t now_ms, char key[INK_KEY_LEN + 1], ink_key_info *info, ink_err *err)
{
    if (!name)
        name = "";
    if (!ink_valid_name(project))
        return ink_err_set(err, 0, "'%s' is not a project name", project ? project : "");
    if (role != INK_ROLE_READER && role != INK_ROLE_DEPLOYER)
        return ink_err_set(err, 0, "unknown role");
    if (!valid_label(name))
        return ink_err_set(err, 0, "key name: at most %d printable characters", INK_KEY_NAME_MAX);
    uint8_t salt[SALT_LEN], secret[SECRET_LEN], hash[HASH_LEN];
    char keyid[INK_KEYID_LEN + 1], secret_hex[2 * SECRET_LEN + 1];
    if (ink_random_bytes(salt, sizeof salt, err) < 0 ||
        ink_random_bytes(secret, sizeof secret, err) < 0 || key_hash(salt, secret, hash, err) < 0)
        return -1;
    ink_hex(secret, sizeof secret, secret_hex);
    OPENSSL_cleanse(secret, sizeof secret);

    sqlite3 *db = ink_store_lock(s);
    int rc = -1;
    /* 48-bit ids: a collision is unlikely but not impossible, and the
     * primary key turns it into a constraint error: draw another. */
    for (int attempt = 0; attempt < 5; attempt++) {
        if (ink_random_hex(keyid, INK_KEYID_LEN / 2, err) < 0)
            break;
        cleanup_stmt sqlite3_stmt *st = NULL;
        if (ink_db_prepare(
                db,
                "INSERT INTO api_keys (keyid, project, role, name, created_ms, salt, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                &st, err) < 0)
            break;
        sqlite3_bind_text(st, 1, keyid, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, project, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, ink_key_role_name(role), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, now_ms);
        sqlite3_bind_blob(st, 6, salt, SALT_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(st, 7, hash, HASH_LEN, SQLITE_STATIC);
        int step = sqlite3_step(st);
        if (step == SQLITE_DONE) {
            rc = 0;
            break;
        }
        if (sqlite3_extended_errcode(db) != SQLITE_CONSTRAINT_PRIMARYKEY) {
            ink_db_err(db, err, "store key");
            break;
        }
        ink_err_set(err, 0, "could not draw an unused key id");
    }
    ink_store_unlock(s);
    if (rc == 0) {
        snprintf(key, INK_KEY_LEN + 1, "ink_%s_%s", keyid, secret_hex);
        if (info) {
            *info = (ink_key_info){.role = role, .created_ms = now_ms};
            snprintf(info->keyid, sizeof info->keyid, "%s", keyid);
            snprintf(info->project, sizeof info->project, "%s", project);
            snprintf(info->name, sizeof info->name, "%s", name);
        }
    }
    OPENSSL_cleanse(secret_hex, sizeof secret_hex);
    return rc;
}

static void copy_col(char *out, size_t outlen, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, outlen, "%s", t ? (const char *)t : "");
}

#define KEY_COLUMNS "keyid, project, role, name, created_ms, revoked_ms"

static void read_info(sqlite3_stmt *st, ink_key_info *k)
{
    memset(k, 0, sizeof *k);
    copy_col(k->keyid, sizeof k->keyid, st, 0);
    copy_col(k->project, sizeof k->project, st, 1);
    k->role = ink_key_role_parse((const char *)sqlite3_column_text(st, 2));
    copy_col(k->name, sizeof k->name, st, 3);
    k->created_ms = sqlite3_column_int64(st, 4);
    k->revoked_ms = sqlite3_column_int64(st, 5);
}

int ink_keys_verify(ink_store *s, const char *presented, ink_key_info *out, ink_err *err)
{
    /* Shape first, without the database: whatever a client sends as a
     * bearer token lands here. */
    if (!presented || strlen(presented) != INK_KEY_LEN || strncmp(presented, "ink_", 4) != 0 ||
        presented[4 + INK_KEYID_LEN] != '_')
        return 0;
    char keyid[INK_KEYID_LEN + 1];
    memcpy(keyid, presented + 4, INK_KEYID_LEN);
    keyid[INK_KEYID_LEN] = '\0';
    uint8_t secret[SECRET_LEN];
    if (!valid_keyid(keyid) || from_hex(presented + 4 + INK_KEYID_LEN + 1, secret, SECRET_LEN) < 0)
        return 0;

    ink_key_info info = {0};
    uint8_t salt[SALT_LEN] = {0}, stored[HASH_LEN] = {0}, computed[HASH_LEN];
    int found = 0;
    sqlite3 *db = ink_store_lock(s);
    {
        cleanup_stmt sqlite3_stmt *st = NULL;
        found = ink_db_prepare(
            db, "SELECT " KEY_COLUMNS ", salt, hash FROM api_keys WHERE keyid = ?", &st, err);
        if (found == 0) {
            sqlite3_bind_text(st, 1, keyid, -1, SQLITE_STATIC);
            int step = sqlite3_step(st);
            if (step == SQLITE_ROW) {
                read_info(st, &info);
                if (sqlite3_column_bytes(st, 6) == SALT_LEN &&
                    sqlite3_column_bytes(st, 7) == HASH_LEN) {
                    memcpy(salt, sqlite3_column_blob(st, 6), SALT_LEN);
                    memcpy(stored, sqlite3_column_blob(st, 7), HASH_LEN);
                    found = 1;
                }
            } else if (step != SQLITE_DONE) {
                found = ink_db_err(db, err, "read key");
            }
        }
    }
    ink_store_unlock(s);
    if (found < 0) {
        OPENSSL_cleanse(secret, sizeof secret);
        return -1;
    }
    /* Hash and compare even for an unknown id (against zeros), so that the
     * answer takes the same time either way. */
    int rc = key_hash(salt, secret, computed, err);
    OPENSSL_cleanse(secret, sizeof secret);
    if (rc < 0)
        return -1;
    bool match = CRYPTO_memcmp(computed, stored, HASH_LEN) == 0;
    if (!found || !match || info.revoked_ms != 0 || info.role == 0)
        return 0;
    if (out)
        *out = info;
    return 1;
}

static void read_info_row(sqlite3_stmt *st, void *row)
{
    read_info(st, row);
}

int ink_keys_list(ink_store *s, ink_key_info **rows, size_t *n, ink_err *err)
{
    *rows = NULL;
    *n = 0;
    sqlite3 *db = ink_store_lock(s);
    cleanup_stmt sqlite3_stmt *st = NULL;
    int rc = ink_db_prepare(
        db, "SELECT " KEY_COLUMNS " FROM api_keys ORDER BY project, created_ms, keyid", &st, err);
    if (rc == 0)
        rc = ink_db_collect(db, st, "list keys", sizeof **rows, (void **)rows, n, read_info_row,
                            err);
    ink_store_unlock(s);
    if (rc < 0) {
        free(*rows);
        *rows = NULL;
        *n = 0;
    }
    return rc;
}

int ink_keys_revoke(ink_store *s, const char *keyid, int64_t now_ms, ink_err *err)
{
    if (!valid_keyid(keyid))
        return 2;
    sqlite3 *db = ink_store_lock(s);
    int rc;
    {
        cleanup_stmt sqlite3_stmt *st = NULL;
        /* One statement: of two concurrent revocations one changes the row
         * and the other finds it revoked, and the first time is kept. */
        rc = ink_db_prepare(
            db, "UPDATE api_keys SET revoked_ms = ?2 WHERE keyid = ?1 AND revoked_ms = 0", &st,
            err);
        if (rc == 0) {
            sqlite3_bind_text(st, 1, keyid, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, now_ms > 0 ? now_ms : 1);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = ink_db_err(db, err, "revoke key");
            else if (sqlite3_changes(db) == 0)
                rc = 1;
        }
    }
    if (rc == 1) {
        cleanup_stmt sqlite3_stmt *st = NULL;
        rc = ink_db_prepare(db, "SELECT 1 FROM api_keys WHERE keyid = ?", &st, err);
        if (rc == 0) {
            sqlite3_bind_text(st, 1, keyid, -1, SQLITE_STATIC);
            int step = sqlite3_step(st);
            rc = step == SQLITE_ROW ? 1 : step == SQLITE_DONE ? 2 : ink_db_err(db, err, "read key");
        }
    }
    ink_store_unlock(s);
    return rc;
}

/* -------------------------------------------------------------------- CLI */

#define CREATE_USAGE                                                                               \
    "usage: ink-coordinator keys create --project P --role deployer|reader [--name LABEL]\n"
#define LIST_USAGE "usage: ink-coordinator keys list [--json]\n"
#define REVOKE_USAGE "usage: ink-coordinator keys revoke KEYID\n"

static int open_store(const ink_coordinator_config *cfg, const char *sub, ink_store **s, FILE *errf)
{
    ink_err err = {0};
    if (ink_store_open(cfg->database, s, &err) < 0) {
        fprintf(errf, "ink-coordinator keys %s: %s\n", sub, err.msg);
        return -1;
    }
    return 0;
}

/* Operator actions on keys go to the audit log like any other change. A
 * failure there is reported, not undone: the key change has happened. */
static int audit_cli(ink_store *s, const char *tool, const char *project, json_t *args,
                     const char *sub, FILE *errf)
{
    ink_err err = {0};
    ink_audit_entry e = {.time_ms = ink_now_ms(),
                         .key_id = "cli",
                         .project = project,
                         .tool = tool,
                         .arguments = args,
                         .result = "ok"};
    int rc = ink_audit_append(s, &e, &err);
    json_decref(args);
    if (rc < 0)
        fprintf(errf, "ink-coordinator keys %s: writing the audit log: %s\n", sub, err.msg);
    return rc;
}

static int flag_value(int argc, char **argv, int *i, const char *flag, const char **out)
{
    size_t len = strlen(flag);
    if (strncmp(argv[*i], flag, len) != 0)
        return 0;
    if (argv[*i][len] == '=') {
        *out = argv[*i] + len + 1;
        return 1;
    }
    if (argv[*i][len] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *out = argv[++*i];
    return 1;
}

static int cmd_create(const ink_coordinator_config *cfg, int argc, char **argv, FILE *out,
                      FILE *errf)
{
    const char *project = NULL, *role_s = NULL, *name = "";
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = flag_value(argc, argv, &i, "--project", &project)) ||
            (r = flag_value(argc, argv, &i, "--role", &role_s)) ||
            (r = flag_value(argc, argv, &i, "--name", &name))) {
            if (r < 0) {
                fprintf(errf, CREATE_USAGE);
                return 2;
            }
            continue;
        }
        fprintf(errf, CREATE_USAGE);
        return 2;
    }
    if (!project || !role_s) {
        fprintf(errf, CREATE_USAGE);
        return 2;
    }
    if (!ink_valid_name(project)) {
        fprintf(errf,
                "ink-coordinator keys create: --project '%s' is not a valid name ([a-z0-9-], at "
                "most 63 characters, not starting with '-')\n",
                project);
        return 2;
    }
    ink_key_role role = ink_key_role_parse(role_s);
    if (!role) {
        fprintf(errf, "ink-coordinator keys create: --role must be deployer or reader\n");
        return 2;
    }
    if (!valid_label(name)) {
        fprintf(errf, "ink-coordinator keys create: --name: at most %d printable characters\n",
                INK_KEY_NAME_MAX);
        return 2;
    }
    ink_store *s;
    if (open_store(cfg, "create", &s, errf) < 0)
        return 1;
    ink_err err = {0};
    char key[INK_KEY_LEN + 1];
    ink_key_info info;
    if (ink_keys_create(s, project, role, name, ink_now_ms(), key, &info, &err) < 0) {
        ink_store_close(s);
        fprintf(errf, "ink-coordinator keys create: %s\n", err.msg);
        return 1;
    }
    /* The key alone on stdout, so that `key=$(ink-coordinator keys create
     * ...)` works; the rest on errf. */
    fprintf(out, "%s\n", key);
    OPENSSL_cleanse(key, sizeof key);
    fprintf(errf,
            "created %s key %s for project %s: this is the only time it is shown, store it "
            "now\n",
            ink_key_role_name(role), info.keyid, project);
    int rc = audit_cli(s, "keys.create", project,
                       json_pack("{s:s, s:s, s:s, s:s}", "keyid", info.keyid, "project", project,
                                 "role", ink_key_role_name(role), "name", name),
                       "create", errf);
    ink_store_close(s);
    return rc < 0 ? 1 : 0;
}

static void fmt_time(int64_t ms, char *out, size_t outlen)
{
    if (ms <= 0) {
        snprintf(out, outlen, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int cmd_list(const ink_coordinator_config *cfg, int argc, char **argv, FILE *out, FILE *errf)
{
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") != 0) {
            fprintf(errf, LIST_USAGE);
            return 2;
        }
        json = true;
    }
    ink_store *s;
    if (open_store(cfg, "list", &s, errf) < 0)
        return 1;
    ink_err err = {0};
    ink_key_info *rows;
    size_t n;
    int rc = ink_keys_list(s, &rows, &n, &err);
    ink_store_close(s);
    if (rc < 0) {
        fprintf(errf, "ink-coordinator keys list: %s\n", err.msg);
        return 1;
    }
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            const ink_key_info *k = &rows[i];
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "keyid",
                                                 k->keyid, "project", k->project, "role",
                                                 ink_key_role_name(k->role), "name", k->name,
                                                 "created_ms", (json_int_t)k->created_ms,
                                                 "revoked_ms", (json_int_t)k->revoked_ms));
        }
        char *text = json_dumps(arr, JSON_INDENT(2));
        fprintf(out, "%s\n", text);
        free(text);
        json_decref(arr);
    } else {
        fprintf(out, "%-12s %-20s %-8s %-20s %-20s %s\n", "KEYID", "PROJECT", "ROLE", "CREATED",
                "REVOKED", "NAME");
        for (size_t i = 0; i < n; i++) {
            const ink_key_info *k = &rows[i];
            char created[32], revoked[32];
            fmt_time(k->created_ms, created, sizeof created);
            fmt_time(k->revoked_ms, revoked, sizeof revoked);
            fprintf(out, "%-12s %-20s %-8s %-20s %-20s %s\n", k->keyid, k->project,
                    ink_key_role_name(k->role), created, revoked, k->name);
        }
    }
    free(rows);
    return 0;
}

static int cmd_revoke(const ink_coordinator_config *cfg, int argc, char **argv, FILE *out,
                      FILE *errf)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(errf, REVOKE_USAGE);
        return 2;
    }
    const char *keyid = argv[1];
    if (!valid_keyid(keyid)) {
        fprintf(errf, "ink-coordinator keys revoke: '%s' is not a key id (%d hex digits)\n", keyid,
                INK_KEYID_LEN);
        return 2;
    }
    ink_store *s;
    if (open_store(cfg, "revoke", &s, errf) < 0)
        return 1;
    ink_err err = {0};
    int rc = ink_keys_revoke(s, keyid, ink_now_ms(), &err);
    if (rc < 0 || rc == 2) {
        ink_store_close(s);
        fprintf(errf, "ink-coordinator keys revoke: %s\n", rc < 0 ? err.msg : "no such key");
        return 1;
    }
    /* Revoking a revoked key is done already: scripts can retry. */
    if (rc == 1) {
        ink_store_close(s);
        fprintf(out, "key %s: already revoked\n", keyid);
        return 0;
    }
    fprintf(out, "key %s: revoked\n", keyid);
    rc = audit_cli(s, "keys.revoke", NULL, json_pack("{s:s}", "keyid", keyid), "revoke", errf);
    ink_store_close(s);
    return rc < 0 ? 1 : 0;
}

int ink_cmd_keys(const ink_coordinator_config *cfg, int argc, char **argv, FILE *out, FILE *errf)
{
    const char *sub = argc > 0 ? argv[0] : "";
    if (strcmp(sub, "create") == 0)
        return cmd_create(cfg, argc, argv, out, errf);
    if (strcmp(sub, "list") == 0)
        return cmd_list(cfg, argc, argv, out, errf);
    if (strcmp(sub, "revoke") == 0)
        return cmd_revoke(cfg, argc, argv, out, errf);
    fprintf(errf, CREATE_USAGE LIST_USAGE REVOKE_USAGE);
    return 2;
}
