/* Apps: requests that change desired state (create, update, delete,
 * restart), the views MCP tools return, and volumes. The controller
 * (controller.c) turns the desired state into replicas on nodes. */
#include "apps.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps_internal.h"
#include "coordinator.h"
#include "db.h"
#include "egress.h"
#include "log.h"
#include "util.h"

static int64_t node_timeout_ms = 20000;

void ink_apps_set_node_timeout(int64_t ms)
{
    node_timeout_ms = ms;
}

static int fail(ink_err *err, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ink_err *err, int kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->errnum = kind;
    return -1;
}

void ink_app_row_clear(ink_app_row *a)
{
    json_decref(a->spec);
    json_decref(a->secret_names);
    free(a->secret_sealed);
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------- validation */

static bool env_name_ok(const char *n)
{
    if (!*n || strlen(n) > 128 || (*n >= '0' && *n <= '9'))
        return false;
    for (const char *c = n; *c; c++) {
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
              *c == '_'))
            return false;
    }
    return true;
}

static int check_env(const json_t *env, const char *what, ink_err *err)
{
    if (!json_is_object(env))
        return fail(err, INK_APPS_EINVAL, "%s must be an object of NAME: \"value\"", what);
    if (json_object_size(env) > INK_APP_MAX_ENV)
        return fail(err, INK_APPS_EINVAL, "%s has %zu variables; at most %d are allowed", what,
                    json_object_size(env), INK_APP_MAX_ENV);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)env, k, v)
    {
        if (!env_name_ok(k))
            return fail(err, INK_APPS_EINVAL,
                        "%s: '%s' is not a valid variable name (letters, digits and _, not "
                        "starting with a digit)",
                        what, k);
        if (!json_is_string(v))
            return fail(err, INK_APPS_EINVAL, "%s.%s must be a string", what, k);
        if (strlen(json_string_value(v)) != json_string_length(v))
            return fail(err, INK_APPS_EINVAL, "%s.%s contains a NUL character", what, k);
    }
    return 0;
}

static bool image_ok(const char *s)
{
    if (!*s || strlen(s) > 512)
        return false;
    for (const char *c = s; *c; c++) {
        if (*c <= ' ' || *c == 0x7f)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------- egress
 *
 * A spec holds "egress" and "egress_allow" only when they differ from the
 * defaults (policy "default", no entries): specs written before apps had
 * egress settings then equal the same spec with the defaults spelled out,
 * so neither an idempotent create nor an update that names the default
 * makes a new generation of such an app. */

const char *ink_app_egress(const json_t *spec)
{
    const char *e = json_string_value(json_object_get(spec, "egress"));
    return e ? e : INK_EGRESS_DEFAULT;
}

int64_t ink_app_idle_timeout_s(const json_t *spec)
{
    const json_t *v = json_object_get(spec, "idle_timeout_s");
    if (json_is_integer(v))
        return json_integer_value(v);
    return json_integer_value(json_object_get(spec, "min_replicas")) == 0
               ? INK_APP_DEFAULT_IDLE_TIMEOUT_S
               : 0;
}

/* The shipped policies that have no "allow allowlist" rule. Entries with
 * them would be silently ignored while the client believes they do
 * something, so they are refused. Other names may be a security team's
 * own policy, which may use the entries: those are accepted. */
static bool policy_ignores_allowlist(const char *policy)
{
    return strcmp(policy, "default") == 0 || strcmp(policy, "deny-all") == 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* egress_allow as the spec keeps it: each entry in its canonical form
 * (common/egress.h), sorted, without duplicates, so that the same
 * destinations written differently or in another order are no change. */
static int canonical_allow(const json_t *v, json_t **out, ink_err *err)
{
    *out = NULL;
    if (!json_is_array(v))
        return fail(err, INK_APPS_EINVAL,
                    "egress_allow must be an array of strings such as \"api.example.com:443\"");
    size_t n = json_array_size(v);
    if (n > INK_EGRESS_ALLOW_MAX)
        return fail(err, INK_APPS_EINVAL, "egress_allow has %zu entries; at most %d are allowed", n,
                    INK_EGRESS_ALLOW_MAX);
    char(*texts)[INK_EGRESS_ALLOW_TEXT_MAX] = ink_xcalloc(n ? n : 1, sizeof *texts);
    const char **sorted = ink_xcalloc(n ? n : 1, sizeof *sorted);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e)) {
            rc = fail(err, INK_APPS_EINVAL,
                      "egress_allow[%zu] must be a string TARGET[:PORTS], e.g. "
                      "\"api.example.com:443\"",
                      i);
            break;
        }
        ink_egress_allow a;
        ink_err perr = {0};
        if (ink_egress_allow_parse(json_string_value(e), &a, &perr) < 0) {
            rc = fail(err, INK_APPS_EINVAL, "%s", perr.msg);
            break;
        }
        ink_egress_allow_format(&a, texts[i], sizeof texts[i]);
        sorted[i] = texts[i];
    }
    if (rc == 0) {
        qsort(sorted, n, sizeof *sorted, cmp_names);
        *out = json_array();
        for (size_t i = 0; i < n; i++) {
            if (i == 0 || strcmp(sorted[i], sorted[i - 1]) != 0)
                json_array_append_new(*out, json_string(sorted[i]));
        }
    }
    free(sorted);
    free(texts);
    return rc;
}

/* Entries for events: "[198.51.100.0/24 api.example.com:443]", or "" for
 * none; cut short when they do not fit. */
static void allow_text(const json_t *allow, char *out, size_t outlen)
{
    out[0] = '\0';
    size_t used = 0, i;
    const json_t *e;
    json_array_foreach(allow, i, e)
    {
        used += (size_t)snprintf(out + used, used < outlen ? outlen - used : 0, "%s%s",
                                 i ? " " : "[", json_string_value(e));
    }
    if (used)
        snprintf(out + used, used < outlen ? outlen - used : 0, "]");
}

/* Applies the request's egress and egress_allow over spec. */
static int merge_egress(json_t *spec, const json_t *args, ink_err *err)
{
    const json_t *v;
    if ((v = json_object_get(args, "egress"))) {
        const char *name = json_string_value(v);
        if (!name || !ink_egress_valid_policy_name(name))
            return fail(err, INK_APPS_EINVAL,
                        "egress '%s' is not a policy name: 1-%d of a-z, 0-9 and '-', not "
                        "starting with '-' (Ink ships 'default', 'deny-all' and 'allowlist')",
                        name ? name : "", INK_EGRESS_POLICY_NAME_MAX);
        if (strcmp(name, INK_EGRESS_DEFAULT) == 0)
            json_object_del(spec, "egress");
        else
            json_object_set_new(spec, "egress", json_string(name));
        /* Moving to a policy that ignores entries drops the old ones, as
         * the client cannot mean to keep what would be refused. */
        if (!json_object_get(args, "egress_allow") && policy_ignores_allowlist(name))
            json_object_del(spec, "egress_allow");
    }
    if ((v = json_object_get(args, "egress_allow"))) {
        json_t *entries;
        if (canonical_allow(v, &entries, err) < 0)
            return -1;
        if (json_array_size(entries))
            json_object_set_new(spec, "egress_allow", entries);
        else {
            json_decref(entries);
            json_object_del(spec, "egress_allow");
        }
    }
    const char *policy = ink_app_egress(spec);
    size_t n = json_array_size(json_object_get(spec, "egress_allow"));
    if (strcmp(policy, "allowlist") == 0 && n == 0)
        return fail(err, INK_APPS_EINVAL,
                    "egress 'allowlist' needs egress_allow: the destinations the app may reach, "
                    "as TARGET[:PORTS] (e.g. [\"api.example.com:443\", \"198.51.100.0/24\"])");
    if (n && policy_ignores_allowlist(policy))
        return fail(err, INK_APPS_EINVAL,
                    "egress_allow only applies with egress 'allowlist' (or a policy of your "
                    "security team's that uses it), and this app's egress is '%s', which ignores "
                    "it: pass egress 'allowlist' as well, or leave egress_allow out",
                    policy);
    return 0;
}

/* Applies the request's fields over spec (a complete spec, or {} for a
 * new app), checking each. */
static int merge_spec(json_t *spec, const json_t *args, bool creating, ink_err *err)
{
    json_t *v;
    if ((v = json_object_get(args, "image"))) {
        if (!json_is_string(v) || !image_ok(json_string_value(v)))
            return fail(err, INK_APPS_EINVAL,
                        "image must be a registry reference such as "
                        "registry.example.com/team/app:1.2 (no spaces, at most 512 characters)");
        json_object_set(spec, "image", v);
    }
    if ((v = json_object_get(args, "port"))) {
        json_int_t p = json_integer_value(v);
        if (!json_is_integer(v) || p < 1 || p > 65535)
            return fail(err, INK_APPS_EINVAL,
                        "port must be the TCP port the app listens on, 1-65535");
        json_object_set_new(spec, "port", json_integer(p));
    }
    if ((v = json_object_get(args, "env"))) {
        if (check_env(v, "env", err) < 0)
            return -1;
        json_object_set_new(spec, "env", json_deep_copy(v));
    }
    if ((v = json_object_get(args, "cpu"))) {
        double c = json_number_value(v);
        if (!json_is_number(v) || c < 0.01 || c > 64)
            return fail(err, INK_APPS_EINVAL, "cpu is in cores: 0.01 to 64 (0.25 = a quarter CPU)");
        json_object_set_new(spec, "cpu_millis", json_integer((json_int_t)(c * 1000 + 0.5)));
    }
    if ((v = json_object_get(args, "memory_mb"))) {
        json_int_t m = json_integer_value(v);
        if (!json_is_integer(v) || m < 16 || m > 262144)
            return fail(err, INK_APPS_EINVAL, "memory_mb must be 16 to 262144");
        json_object_set_new(spec, "memory_mb", json_integer(m));
    }
    if ((v = json_object_get(args, "replicas"))) {
        json_int_t r = json_integer_value(v);
        if (!json_is_integer(v) || r < 0 || r > INK_APP_MAX_REPLICAS)
            return fail(err, INK_APPS_EINVAL, "replicas must be 0 to %d", INK_APP_MAX_REPLICAS);
        json_object_set_new(spec, "replicas", json_integer(r));
    }
    if ((v = json_object_get(args, "min_replicas"))) {
        json_int_t r = json_integer_value(v);
        if (!json_is_integer(v) || r < 0 || r > INK_APP_MAX_REPLICAS)
            return fail(err, INK_APPS_EINVAL, "min_replicas must be 0 to %d", INK_APP_MAX_REPLICAS);
        json_object_set_new(spec, "min_replicas", json_integer(r));
    }
    if ((v = json_object_get(args, "idle_timeout_s"))) {
        json_int_t t = json_integer_value(v);
        if (!json_is_integer(v) || t < INK_APP_MIN_IDLE_TIMEOUT_S || t > INK_APP_MAX_IDLE_TIMEOUT_S)
            return fail(err, INK_APPS_EINVAL,
                        "idle_timeout_s must be %d to %d seconds (how long a replica of an app "
                        "with min_replicas 0 may be idle before it sleeps)",
                        INK_APP_MIN_IDLE_TIMEOUT_S, INK_APP_MAX_IDLE_TIMEOUT_S);
        json_object_set_new(spec, "idle_timeout_s", json_integer(t));
    }
    if (merge_egress(spec, args, err) < 0)
        return -1;
    if (creating) {
        if (!json_object_get(spec, "image") || !json_object_get(spec, "port"))
            return fail(err, INK_APPS_EINVAL, "image and port are required");
        if (!json_object_get(spec, "env"))
            json_object_set_new(spec, "env", json_object());
        if (!json_object_get(spec, "cpu_millis"))
            json_object_set_new(spec, "cpu_millis", json_integer(INK_APP_DEFAULT_CPU_MILLIS));
        if (!json_object_get(spec, "memory_mb"))
            json_object_set_new(spec, "memory_mb", json_integer(INK_APP_DEFAULT_MEMORY_MB));
        if (!json_object_get(spec, "replicas"))
            json_object_set_new(spec, "replicas", json_integer(1));
        if (!json_object_get(spec, "min_replicas"))
            json_object_set_new(
                spec, "min_replicas",
                json_integer(json_integer_value(json_object_get(spec, "replicas")) > 0 ? 1 : 0));
    }
    /* Fewer replicas than the old floor, without a new floor: the floor
     * follows (replicas 0 stops the app). */
    if (!creating && json_object_get(args, "replicas") && !json_object_get(args, "min_replicas") &&
        json_integer_value(json_object_get(spec, "min_replicas")) >
            json_integer_value(json_object_get(spec, "replicas")))
        json_object_set(spec, "min_replicas", json_object_get(spec, "replicas"));
    /* A request that makes the floor 0 without an idle timeout gets the
     * default, written down: what the replicas do is then in the spec.
     * Other requests leave an older spec without one as it is (its
     * replicas already sleep after the default). */
    bool floor_given =
        creating || json_object_get(args, "min_replicas") || json_object_get(args, "replicas");
    if (floor_given && json_integer_value(json_object_get(spec, "min_replicas")) == 0 &&
        !json_object_get(spec, "idle_timeout_s"))
        json_object_set_new(spec, "idle_timeout_s", json_integer(INK_APP_DEFAULT_IDLE_TIMEOUT_S));
    if (json_integer_value(json_object_get(spec, "min_replicas")) >
        json_integer_value(json_object_get(spec, "replicas")))
        return fail(err, INK_APPS_EINVAL,
                    "min_replicas (%" JSON_INTEGER_FORMAT
                    ") cannot exceed replicas (%" JSON_INTEGER_FORMAT ")",
                    json_integer_value(json_object_get(spec, "min_replicas")),
                    json_integer_value(json_object_get(spec, "replicas")));
    return 0;
}

/* The secret names with fingerprints, sorted by name: what views show (and
 * what tells a changed secret_env from the same one in another order).
 * The fingerprints are the store's keyed ones: views reach reader keys,
 * and the column reaches whoever holds the database file. NULL when the
 * MAC fails. */
static json_t *secret_names_of(ink_store *s, const json_t *secret_env, ink_err *err)
{
    size_t n = json_object_size(secret_env), i = 0;
    const char **names = ink_xcalloc(n ? n : 1, sizeof *names);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)secret_env, k, v) names[i++] = k;
    qsort(names, n, sizeof *names, cmp_names);
    json_t *out = json_array();
    for (i = 0; i < n; i++) {
        char fp[17];
        v = json_object_get(secret_env, names[i]);
        if (ink_store_fingerprint(s, json_string_value(v), json_string_length(v), fp) < 0) {
            ink_err_set(err, 0, "secret_env.%s: cannot compute its fingerprint", names[i]);
            json_decref(out);
            out = NULL;
            break;
        }
        json_array_append_new(out, json_pack("{s:s, s:s}", "name", names[i], "fingerprint", fp));
    }
    free(names);
    return out;
}

static int check_secrets(const json_t *secret_env, const json_t *env, ink_err *err)
{
    if (check_env(secret_env, "secret_env", err) < 0)
        return -1;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)secret_env, k, v)
    {
        if (json_object_get(env, k))
            return fail(err, INK_APPS_EINVAL, "'%s' is in both env and secret_env; use one", k);
    }
    return 0;
}

/* operations.request_hash of a row made before request hashes were keyed:
 * this prefix, then the keyed MAC of the plain SHA-256 (hex) the row held
 * (ink_apps_upgrade_digests), so a retry of it is still recognised while
 * the plain hash itself is no longer stored. */
#define PRE_KEYED_PREFIX "pre-hmac:"
#define REQUEST_HASH_MAX (sizeof PRE_KEYED_PREFIX + 64)

/* The request as its hash covers it: the arguments without the
 * idempotency key, with kind and name, sorted keys, no whitespace.
 * Malloc'ed; it holds the secret values, so free it with free_wiped(). */
static char *canonical_request(const char *kind, const char *name, const json_t *args)
{
    json_t *copy = args ? json_deep_copy(args) : json_object();
    json_object_del(copy, "idempotency_key");
    json_object_set_new(copy, "_kind", json_string(kind));
    json_object_set_new(copy, "_name", json_string(name));
    char *text = json_dumps(copy, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(copy);
    if (!text)
        abort(); /* jansson fails only when out of memory */
    return text;
}

static void free_wiped(char *text)
{
    if (text)
        OPENSSL_cleanse(text, strlen(text));
    free(text);
}

/* The store's keyed MAC of the canonical request: a retry with the same
 * idempotency key must carry the same request. Keyed, since the request
 * holds secret values and the hash is stored in operations: a plain hash
 * would let whoever has the database file test guesses of a weak secret. */
static int request_hash(ink_store *s, const char *kind, const char *name, const json_t *args,
                        char out[65], ink_err *err)
{
    char *text = canonical_request(kind, name, args);
    int rc = ink_store_mac_hex(s, text, strlen(text), out);
    free_wiped(text);
    return rc < 0 ? ink_err_set(err, 0, "%s: cannot hash the request", kind) : 0;
}

/* Whether stored (a PRE_KEYED_PREFIX value) is this request's. The plain
 * hash exists only here, for the comparison, and is never kept. */
static bool pre_keyed_match(ink_store *s, const char *stored, const char *kind, const char *name,
                            const json_t *args)
{
    if (strncmp(stored, PRE_KEYED_PREFIX, strlen(PRE_KEYED_PREFIX)) != 0)
        return false;
    char *text = canonical_request(kind, name, args);
    uint8_t md[SHA256_DIGEST_LENGTH];
    char plain[65], mac[65];
    SHA256((const uint8_t *)text, strlen(text), md);
    free_wiped(text);
    ink_hex(md, sizeof md, plain);
    bool same = ink_store_mac_hex(s, plain, strlen(plain), mac) == 0 &&
                strcmp(stored + strlen(PRE_KEYED_PREFIX), mac) == 0;
    OPENSSL_cleanse(plain, sizeof plain);
    return same;
}

/* ------------------------------------------------------------- rows */

#define APP_COLUMNS                                                                                \
    "id, project, name, spec, secret_env, secret_names, generation, published_port, created_ms,"   \
    " updated_ms, deleted_ms, COALESCE(last_operation, '')"

static void copy_text(char *out, size_t outlen, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, outlen, "%s", t ? (const char *)t : "");
}

static void read_app(sqlite3_stmt *st, ink_app_row *a)
{
    memset(a, 0, sizeof *a);
    copy_text(a->id, sizeof a->id, st, 0);
    copy_text(a->project, sizeof a->project, st, 1);
    copy_text(a->name, sizeof a->name, st, 2);
    a->spec = json_loads((const char *)sqlite3_column_text(st, 3), 0, NULL);
    if (!a->spec)
        a->spec = json_object();
    const unsigned char *sealed = sqlite3_column_text(st, 4);
    a->secret_sealed = sealed ? ink_xstrdup((const char *)sealed) : NULL;
    a->secret_names = json_loads((const char *)sqlite3_column_text(st, 5), 0, NULL);
    if (!a->secret_names)
        a->secret_names = json_array();
    a->generation = sqlite3_column_int64(st, 6);
    a->published_port = (uint32_t)sqlite3_column_int64(st, 7);
    a->created_ms = sqlite3_column_int64(st, 8);
    a->updated_ms = sqlite3_column_int64(st, 9);
    a->deleted_ms = sqlite3_column_int64(st, 10);
    copy_text(a->last_operation, sizeof a->last_operation, st, 11);
}

/* 0 found, 1 none, -1. live: only an app that is not deleted. */
static int find_app(sqlite3 *db, const char *project, const char *name, bool live, ink_app_row *a,
                    ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db,
                       live ? "SELECT " APP_COLUMNS
                              " FROM apps WHERE project = ? AND name = ? AND deleted_ms = 0"
                            : "SELECT " APP_COLUMNS " FROM apps WHERE project = ? AND name = ?"
                              " ORDER BY deleted_ms = 0 DESC, created_ms DESC LIMIT 1",
                       &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    int found = ink_db_step_row(db, st, "read app", err);
    if (found != 0)
        return found;
    read_app(st, a);
    return 0;
}

int ink_apps_load_all(sqlite3 *db, ink_app_row **rows, size_t *n, ink_err *err)
{
    *rows = NULL;
    *n = 0;
    cleanup_stmt sqlite3_stmt *st = NULL;
    /* Deleted apps stay while replicas or a running operation remain. */
    if (ink_db_prepare(db,
                       "SELECT " APP_COLUMNS " FROM apps WHERE deleted_ms = 0"
                       " OR id IN (SELECT app_id FROM replicas)"
                       " OR id IN (SELECT app_id FROM operations WHERE status = 'running')"
                       " ORDER BY id",
                       &st, err) < 0)
        return -1;
    int step;
    size_t cap = 0;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *rows = ink_xrealloc(*rows, cap * sizeof **rows);
        }
        read_app(st, &(*rows)[(*n)++]);
    }
    if (step != SQLITE_DONE)
        return ink_db_err(db, err, "list apps");
    return 0;
}

int ink_apps_event(sqlite3 *db, const char *app_id, int64_t now_ms, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db, "INSERT INTO app_events (app_id, time_ms, message) VALUES (?, ?, ?)",
                       &st, NULL) < 0)
        return -1;
    sqlite3_bind_text(st, 1, app_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    sqlite3_bind_text(st, 3, msg, -1, SQLITE_TRANSIENT);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
}

/* ------------------------------------------------------------- operations */

static const char *const OP_COLUMNS = "id, kind, app_name, project, status, message, progress,"
                                      " url, created_ms, updated_ms";

static json_t *op_view(sqlite3_stmt *st)
{
    char created[32], updated[32];
    ink_format_utc(sqlite3_column_int64(st, 8), true, created, sizeof created);
    ink_format_utc(sqlite3_column_int64(st, 9), true, updated, sizeof updated);
    const unsigned char *url = sqlite3_column_text(st, 7);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:o, s:s, s:s}", "operation_id",
                     (const char *)sqlite3_column_text(st, 0), "kind",
                     (const char *)sqlite3_column_text(st, 1), "app",
                     (const char *)sqlite3_column_text(st, 2), "project",
                     (const char *)sqlite3_column_text(st, 3), "status",
                     (const char *)sqlite3_column_text(st, 4), "message",
                     (const char *)sqlite3_column_text(st, 5), "progress",
                     (json_int_t)sqlite3_column_int64(st, 6), "url",
                     url ? json_string((const char *)url) : json_null(), "created_at", created,
                     "updated_at", updated);
}

/* 0 and *op, 1 none, -1. where: "id = ?1 AND project = ?2" or
 * "project = ?2 AND idempotency_key = ?1". */
static int load_op(sqlite3 *db, const char *where, const char *a1, const char *project, json_t **op,
                   char *hash_out, ink_err *err)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT %s, request_hash FROM operations WHERE %s", OP_COLUMNS,
             where);
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db, sql, &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, a1, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, project, -1, SQLITE_STATIC);
    int found = ink_db_step_row(db, st, "read operation", err);
    if (found != 0)
        return found;
    *op = op_view(st);
    if (hash_out)
        copy_text(hash_out, REQUEST_HASH_MAX, st, 10);
    return 0;
}

int ink_apps_get_operation(ink_store *s, const char *project, const char *operation_id, json_t **op,
                           ink_err *err)
{
    sqlite3 *db = ink_store_lock(s);
    int rc = load_op(db, "id = ?1 AND project = ?2", operation_id, project, op, NULL, err);
    ink_store_unlock(s);
    if (rc == 1)
        return fail(err, INK_APPS_ENOTFOUND, "no operation '%s' in project '%s'", operation_id,
                    project);
    return rc;
}

/* An idempotent retry: 1 and *op when key names an operation made by the
 * same request (kind, name, args; hash is its request_hash()), 0 when the
 * key is new (or absent), -1 when it was used for another request. An
 * operation made before request hashes were keyed is matched by its old
 * hash (pre_keyed_match), so a client retrying across the upgrade gets
 * its operation rather than a conflict. */
static int check_idempotency(ink_store *s, sqlite3 *db, const char *project, const char *key,
                             const char *kind, const char *name, const json_t *args,
                             const char *hash, json_t **op, ink_err *err)
{
    if (!key || !*key)
        return 0;
    char stored[REQUEST_HASH_MAX] = "";
    int rc = load_op(db, "project = ?2 AND idempotency_key = ?1", key, project, op, stored, err);
    if (rc == 1)
        return 0;
    if (rc < 0)
        return -1;
    if (strcmp(stored, hash) != 0 && !pre_keyed_match(s, stored, kind, name, args)) {
        char id[64];
        snprintf(id, sizeof id, "%s", json_string_value(json_object_get(*op, "operation_id")));
        json_decref(*op);
        *op = NULL;
        return fail(err, INK_APPS_ECONFLICT,
                    "idempotency_key '%s' was already used for a different request (operation "
                    "%s); use a new key for a new request",
                    key, id);
    }
    return 1;
}

static int new_operation(sqlite3 *db, const ink_caller *who, const ink_app_row *app,
                         const char *kind, const char *idem_key, const char *hash,
                         const char *message, int64_t now_ms, char id_out[40], ink_err *err)
{
    char hex[17];
    if (ink_random_hex(hex, 8, err) < 0)
        return -1;
    snprintf(id_out, 40, "op-%s", hex);
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db,
                       "INSERT INTO operations (id, project, app_id, app_name, kind, key_id,"
                       " idempotency_key, request_hash, generation, status, message, progress,"
                       " created_ms, updated_ms, deadline_ms)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'running', ?10, 0, ?11, ?11,"
                       " ?12)",
                       &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, id_out, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, app->project, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, app->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, app->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, who->key_id, -1, SQLITE_STATIC);
    if (idem_key && *idem_key)
        sqlite3_bind_text(st, 7, idem_key, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 7);
    sqlite3_bind_text(st, 8, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, app->generation);
    sqlite3_bind_text(st, 10, message, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 11, now_ms);
    sqlite3_bind_int64(st, 12, now_ms + INK_APP_OPERATION_DEADLINE_MS);
    if (sqlite3_step(st) != SQLITE_DONE)
        return ink_db_err(db, err, "record operation");
    cleanup_stmt sqlite3_stmt *up = NULL;
    if (ink_db_prepare(db, "UPDATE apps SET last_operation = ? WHERE id = ?", &up, err) < 0)
        return -1;
    sqlite3_bind_text(up, 1, id_out, -1, SQLITE_STATIC);
    sqlite3_bind_text(up, 2, app->id, -1, SQLITE_STATIC);
    if (sqlite3_step(up) != SQLITE_DONE)
        return ink_db_err(db, err, "record operation");
    return 0;
}

/* Ends a superseded operation: an update replaces what a running one was
 * doing. */
static int supersede_running(sqlite3 *db, const char *app_id, const char *by, int64_t now_ms,
                             ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db,
                       "UPDATE operations SET status = 'failed', message = 'superseded by ' || ?,"
                       " updated_ms = ? WHERE app_id = ? AND status = 'running' AND id != ?",
                       &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, by, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    sqlite3_bind_text(st, 3, app_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, by, -1, SQLITE_STATIC);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : ink_db_err(db, err, "supersede operation");
}

static int op_by_id(sqlite3 *db, const char *project, const char *id, json_t **op, ink_err *err)
{
    int rc = load_op(db, "id = ?1 AND project = ?2", id, project, op, NULL, err);
    if (rc == 1)
        return ink_err_set(err, 0, "operation %s vanished", id);
    return rc;
}

/* ------------------------------------------------------------- requests */

static int begin(sqlite3 *db, ink_err *err)
{
    return ink_db_exec(db, "BEGIN IMMEDIATE", err);
}

/* Ends a request's transaction (commit when rc >= 0) and the store lock;
 * a request that failed hands back no view. Returns rc, or -1 when the
 * commit failed. */
static int end_request(ink_store *s, sqlite3 *db, int rc, json_t **view, ink_err *err)
{
    rc = ink_db_end_txn(db, rc, err);
    ink_store_unlock(s);
    if (rc < 0) {
        json_decref(*view);
        *view = NULL;
    }
    return rc;
}

/* The lowest port of the range no live app and no app with replicas left
 * uses (a deleted app's replicas may still listen on it). */
static int pick_port(sqlite3 *db, uint32_t *port, ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db,
                       "SELECT DISTINCT published_port FROM apps WHERE deleted_ms = 0"
                       " OR id IN (SELECT app_id FROM replicas) ORDER BY published_port",
                       &st, err) < 0)
        return -1;
    uint32_t want = INK_APP_PORT_MIN;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        uint32_t used = (uint32_t)sqlite3_column_int64(st, 0);
        if (used == want)
            want++;
        else if (used > want)
            break;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return ink_db_err(db, err, "published ports");
    if (want > INK_APP_PORT_MAX)
        return fail(err, INK_APPS_ECONFLICT, "every published port (%d-%d) is taken: delete an app",
                    INK_APP_PORT_MIN, INK_APP_PORT_MAX);
    *port = want;
    return 0;
}

static int write_app(sqlite3 *db, const ink_app_row *a, bool insert, ink_err *err)
{
    cleanup_free char *spec = json_dumps(a->spec, JSON_SORT_KEYS | JSON_COMPACT);
    cleanup_free char *names = json_dumps(a->secret_names, JSON_SORT_KEYS | JSON_COMPACT);
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db,
                       insert
                           ? "INSERT INTO apps (id, project, name, spec, secret_env, secret_names,"
                             " generation, published_port, created_ms, updated_ms, deleted_ms)"
                             " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                           : "UPDATE apps SET spec = ?4, secret_env = ?5, secret_names = ?6,"
                             " generation = ?7, updated_ms = ?10, deleted_ms = ?11 WHERE id = ?1",
                       &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, a->id, -1, SQLITE_STATIC);
    if (insert) {
        sqlite3_bind_text(st, 2, a->project, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, a->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 8, a->published_port);
        sqlite3_bind_int64(st, 9, a->created_ms);
    }
    sqlite3_bind_text(st, 4, spec, -1, SQLITE_STATIC);
    if (a->secret_sealed)
        sqlite3_bind_text(st, 5, a->secret_sealed, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 5);
    sqlite3_bind_text(st, 6, names, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, a->generation);
    sqlite3_bind_int64(st, 10, a->updated_ms);
    sqlite3_bind_int64(st, 11, a->deleted_ms);
    if (sqlite3_step(st) != SQLITE_DONE)
        return ink_db_err(db, err, "write app");
    return 0;
}

static int check_name(const char *name, ink_err *err)
{
    if (!name || !ink_valid_name(name) || strlen(name) > INK_APP_NAME_MAX)
        return fail(err, INK_APPS_EINVAL,
                    "app name '%s' is not valid: use 1-%d of a-z, 0-9 and '-', starting with a "
                    "letter or digit and not ending with '-'",
                    name ? name : "", INK_APP_NAME_MAX);
    return 0;
}

static const char *str_arg(const json_t *args, const char *key)
{
    return json_string_value(json_object_get(args, key));
}

/* Seals secret_env (an object) into a->secret_sealed and fills
 * a->secret_names. */
static int seal_secrets(ink_store *s, ink_app_row *a, const json_t *secret_env, ink_err *err)
{
    free(a->secret_sealed);
    a->secret_sealed = NULL;
    json_decref(a->secret_names);
    a->secret_names = secret_names_of(s, secret_env, err);
    if (!a->secret_names) {
        a->secret_names = json_array();
        return -1;
    }
    if (json_object_size(secret_env) == 0)
        return 0;
    cleanup_free char *plain = json_dumps(secret_env, JSON_SORT_KEYS | JSON_COMPACT);
    a->secret_sealed = ink_store_seal(s, plain);
    if (!a->secret_sealed)
        return ink_err_set(err, 0, "cannot encrypt secret_env");
    return 0;
}

int ink_apps_create(ink_store *s, const ink_caller *who, const json_t *args, int64_t now_ms,
                    json_t **op, ink_err *err)
{
    *op = NULL;
    const char *name = str_arg(args, "name");
    if (check_name(name, err) < 0)
        return -1;
    json_t *spec = json_object();
    ink_app_row a = {.spec = spec};
    int rc = merge_spec(spec, args, true, err);
    const json_t *secret_env = json_object_get(args, "secret_env");
    if (rc == 0 && secret_env)
        rc = check_secrets(secret_env, json_object_get(spec, "env"), err);
    if (rc < 0) {
        ink_app_row_clear(&a);
        return -1;
    }
    json_t *no_secrets = json_object();
    a.secret_names = secret_names_of(s, secret_env ? secret_env : no_secrets, err);
    json_decref(no_secrets);
    char hash[65];
    if (!a.secret_names || request_hash(s, "create_app", name, args, hash, err) < 0) {
        ink_app_row_clear(&a);
        return -1;
    }
    const char *idem = str_arg(args, "idempotency_key");

    sqlite3 *db = ink_store_lock(s);
    rc = begin(db, err);
    if (rc == 0)
        rc = check_idempotency(s, db, who->project, idem, "create_app", name, args, hash, op, err);
    if (rc == 0) {
        ink_app_row old = {0};
        int found = find_app(db, who->project, name, true, &old, err);
        if (found < 0) {
            rc = -1;
        } else if (found == 0) {
            /* The same create again (a retry without a key): nothing new. */
            bool same = json_equal(old.spec, spec) && json_equal(old.secret_names, a.secret_names);
            if (same && *old.last_operation)
                rc = op_by_id(db, who->project, old.last_operation, op, err) < 0 ? -1 : 1;
            else
                rc = fail(err, INK_APPS_ECONFLICT,
                          "an app named '%s' already exists in project '%s' with a different "
                          "spec; change it with update_app or delete it first",
                          name, who->project);
            ink_app_row_clear(&old);
        } else {
            char hex[13];
            rc = ink_random_hex(hex, 6, err);
            if (rc == 0) {
                snprintf(a.id, sizeof a.id, "app-%s", hex);
                snprintf(a.project, sizeof a.project, "%s", who->project);
                snprintf(a.name, sizeof a.name, "%s", name);
                a.generation = 1;
                a.created_ms = a.updated_ms = now_ms;
                rc = pick_port(db, &a.published_port, err);
            }
            if (rc == 0 && secret_env)
                rc = seal_secrets(s, &a, secret_env, err);
            if (rc == 0)
                rc = write_app(db, &a, true, err);
            char opid[40];
            json_int_t replicas = json_integer_value(json_object_get(spec, "replicas"));
            char allow_list[300];
            allow_text(json_object_get(spec, "egress_allow"), allow_list, sizeof allow_list);
            if (rc == 0)
                rc = new_operation(db, who, &a, "create_app", idem, hash, "placing replicas",
                                   now_ms, opid, err);
            if (rc == 0)
                rc = ink_apps_event(db, a.id, now_ms,
                                    "created: image %s, port %" JSON_INTEGER_FORMAT
                                    ", %" JSON_INTEGER_FORMAT
                                    " replica%s, published port %u, egress %s%s%s",
                                    json_string_value(json_object_get(spec, "image")),
                                    json_integer_value(json_object_get(spec, "port")), replicas,
                                    replicas == 1 ? "" : "s", a.published_port,
                                    ink_app_egress(spec), *allow_list ? " " : "", allow_list) < 0
                         ? ink_db_err(db, err, "app event")
                         : 0;
            if (rc == 0)
                rc = op_by_id(db, who->project, opid, op, err);
        }
    }
    ink_app_row_clear(&a);
    return end_request(s, db, rc, op, err);
}

/* Two spec values are the same, absent ones too (json_equal says two
 * NULLs differ, and the egress keys are absent for the defaults). */
static bool same_value(const json_t *a, const json_t *b)
{
    return a == b || json_equal((json_t *)a, (json_t *)b);
}

/* What differs between two specs, for the event log ("image a -> b"). */
static void describe_change(const json_t *old, const json_t *new, bool secrets_changed, char *out,
                            size_t outlen)
{
    static const char *const fields[] = {"image",    "port",         "cpu_millis",    "memory_mb",
                                         "replicas", "min_replicas", "idle_timeout_s"};
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < INK_ARRAY_LEN(fields); i++) {
        json_t *a = json_object_get(old, fields[i]), *b = json_object_get(new, fields[i]);
        if (json_equal(a, b))
            continue;
        cleanup_free char *sa = json_dumps(a, JSON_ENCODE_ANY);
        cleanup_free char *sb = json_dumps(b, JSON_ENCODE_ANY);
        used += (size_t)snprintf(out + used, used < outlen ? outlen - used : 0, "%s%s %s -> %s",
                                 used ? ", " : "", fields[i], sa, sb);
    }
    if (!json_equal(json_object_get(old, "env"), json_object_get(new, "env")))
        used += (size_t)snprintf(out + used, used < outlen ? outlen - used : 0, "%senv changed",
                                 used ? ", " : "");
    if (secrets_changed)
        used += (size_t)snprintf(out + used, used < outlen ? outlen - used : 0,
                                 "%ssecret_env changed", used ? ", " : "");
    if (strcmp(ink_app_egress(old), ink_app_egress(new)) != 0)
        used += (size_t)snprintf(out + used, used < outlen ? outlen - used : 0, "%segress %s -> %s",
                                 used ? ", " : "", ink_app_egress(old), ink_app_egress(new));
    /* The entries themselves: what an app may reach is what a security
     * review of its events wants to see. */
    const json_t *allow = json_object_get(new, "egress_allow");
    if (!same_value(json_object_get(old, "egress_allow"), allow)) {
        char list[300];
        allow_text(allow, list, sizeof list);
        snprintf(out + used, used < outlen ? outlen - used : 0, "%segress_allow %s%s",
                 used ? ", " : "", json_array_size(allow) ? "now " : "removed", list);
    }
}

/* Everything but the replica counts: a change to these needs new
 * sandboxes, a change of replicas only adds or removes some. */
static bool needs_rollout(const json_t *old, const json_t *new)
{
    static const char *const fields[] = {"image",     "port",   "env",          "cpu_millis",
                                         "memory_mb", "egress", "egress_allow", "min_replicas"};
    for (size_t i = 0; i < INK_ARRAY_LEN(fields); i++) {
        if (!same_value(json_object_get(old, fields[i]), json_object_get(new, fields[i])))
            return true;
    }
    /* Assignments carry it; an older spec without it has the default. */
    return ink_app_idle_timeout_s(old) != ink_app_idle_timeout_s(new);
}

/* update_app and restart_app: restart forces a new generation. */
static int change_app(ink_store *s, const ink_caller *who, const char *kind, const json_t *args,
                      bool restart, int64_t now_ms, json_t **op, ink_err *err)
{
    *op = NULL;
    const char *name = str_arg(args, "name");
    if (check_name(name, err) < 0)
        return -1;
    char hash[65];
    if (request_hash(s, kind, name, args, hash, err) < 0)
        return -1;
    const char *idem = str_arg(args, "idempotency_key");
    sqlite3 *db = ink_store_lock(s);
    int rc = begin(db, err);
    if (rc == 0)
        rc = check_idempotency(s, db, who->project, idem, kind, name, args, hash, op, err);
    ink_app_row a = {0};
    if (rc == 0) {
        int found = find_app(db, who->project, name, true, &a, err);
        if (found == 1)
            rc = fail(err, INK_APPS_ENOTFOUND, "no app named '%s' in project '%s'", name,
                      who->project);
        else if (found < 0)
            rc = -1;
    }
    if (rc == 0) {
        json_t *spec = json_deep_copy(a.spec);
        rc = merge_spec(spec, args, false, err);
        const json_t *secret_env = json_object_get(args, "secret_env");
        bool secrets_changed = false;
        if (rc == 0 && secret_env) {
            rc = check_secrets(secret_env, json_object_get(spec, "env"), err);
            json_t *names = rc == 0 ? secret_names_of(s, secret_env, err) : NULL;
            if (rc == 0 && !names)
                rc = -1;
            secrets_changed = names && !json_equal(names, a.secret_names);
            json_decref(names);
            if (rc == 0 && secrets_changed)
                rc = seal_secrets(s, &a, secret_env, err);
        } else if (rc == 0) {
            /* env given without secret_env: a name now in both is refused */
            const char *k;
            json_t *v;
            json_t *env = json_object_get(spec, "env");
            size_t i;
            json_array_foreach(a.secret_names, i, v)
            {
                k = json_string_value(json_object_get(v, "name"));
                if (k && json_object_get(env, k)) {
                    rc = fail(err, INK_APPS_EINVAL,
                              "'%s' is already a secret_env variable of '%s'; use one", k, name);
                    break;
                }
            }
        }
        bool rollout = restart || secrets_changed || needs_rollout(a.spec, spec);
        bool changed = rollout || !json_equal(a.spec, spec);
        if (rc == 0 && !changed) {
            /* Nothing to do: the app's latest operation says where it is. */
            rc = *a.last_operation
                     ? (op_by_id(db, who->project, a.last_operation, op, err) < 0 ? -1 : 1)
                     : fail(err, INK_APPS_EINVAL, "nothing to change");
        } else if (rc == 0) {
            char what[400];
            describe_change(a.spec, spec, secrets_changed, what, sizeof what);
            json_decref(a.spec);
            a.spec = json_incref(spec);
            if (rollout)
                a.generation++;
            a.updated_ms = now_ms;
            char opid[40];
            rc = write_app(db, &a, false, err);
            if (rc == 0)
                rc =
                    new_operation(db, who, &a, kind, idem, hash,
                                  rollout ? "starting new replicas" : "scaling", now_ms, opid, err);
            if (rc == 0)
                rc = supersede_running(db, a.id, opid, now_ms, err);
            if (rc == 0)
                ink_apps_event(db, a.id, now_ms, "%s (%s): %s", kind, opid,
                               restart ? "replacing every replica" : what);
            if (rc == 0)
                rc = op_by_id(db, who->project, opid, op, err);
        }
        json_decref(spec);
    }
    ink_app_row_clear(&a);
    return end_request(s, db, rc, op, err);
}

int ink_apps_update(ink_store *s, const ink_caller *who, const json_t *args, int64_t now_ms,
                    json_t **op, ink_err *err)
{
    return change_app(s, who, "update_app", args, false, now_ms, op, err);
}

int ink_apps_restart(ink_store *s, const ink_caller *who, const char *name, int64_t now_ms,
                     json_t **op, ink_err *err)
{
    json_t *args = json_pack("{s:s}", "name", name ? name : "");
    /* Every restart is new: the same arguments must not look like a retry. */
    char nonce[17];
    int rc = ink_random_hex(nonce, 8, err);
    if (rc == 0) {
        json_object_set_new(args, "_restart", json_string(nonce));
        rc = change_app(s, who, "restart_app", args, true, now_ms, op, err);
    }
    json_decref(args);
    return rc;
}

int ink_apps_delete(ink_store *s, const ink_caller *who, const char *name, int64_t now_ms,
                    json_t **op, ink_err *err)
{
    *op = NULL;
    if (check_name(name, err) < 0)
        return -1;
    sqlite3 *db = ink_store_lock(s);
    int rc = begin(db, err);
    ink_app_row a = {0};
    if (rc == 0) {
        int found = find_app(db, who->project, name, false, &a, err);
        if (found < 0)
            rc = -1;
        else if (found == 1)
            rc = fail(err, INK_APPS_ENOTFOUND, "no app named '%s' in project '%s'", name,
                      who->project);
        else if (a.deleted_ms) {
            /* Deleted before: the same request again sees the same
             * operation while it runs; after that the app is gone. */
            json_t *last = NULL;
            if (*a.last_operation &&
                op_by_id(db, who->project, a.last_operation, &last, err) == 0 &&
                strcmp(json_string_value(json_object_get(last, "status")), "running") == 0) {
                *op = last;
                rc = 1;
            } else {
                json_decref(last);
                rc = fail(err, INK_APPS_ENOTFOUND, "no app named '%s' in project '%s'", name,
                          who->project);
            }
        }
    }
    if (rc == 0) {
        a.deleted_ms = now_ms;
        a.updated_ms = now_ms;
        char hash[65], opid[40];
        rc = request_hash(s, "delete_app", name, NULL, hash, err);
        if (rc == 0)
            rc = write_app(db, &a, false, err);
        if (rc == 0)
            rc = new_operation(db, who, &a, "delete_app", NULL, hash, "removing replicas", now_ms,
                               opid, err);
        if (rc == 0)
            rc = supersede_running(db, a.id, opid, now_ms, err);
        if (rc == 0)
            ink_apps_event(db, a.id, now_ms, "deleted (%s)", opid);
        if (rc == 0)
            rc = op_by_id(db, who->project, opid, op, err);
    }
    ink_app_row_clear(&a);
    return end_request(s, db, rc, op, err);
}

/* ------------------------------------------------------------- views */

const char *ink_replica_state_name(int state)
{
    /* An unknown state is a newer agent's: treat it as not serving yet. */
    const char *name = ink_workload_state_name(state);
    return name ? name : "pending";
}

void ink_apps_node_host(const char *public_address, const char *addresses,
                        const char *agent_endpoint, char *out, size_t outlen)
{
    if (public_address && *public_address) {
        snprintf(out, outlen, "%s", public_address);
        return;
    }
    if (addresses && *addresses) {
        snprintf(out, outlen, "%.*s", (int)strcspn(addresses, ","), addresses);
        return;
    }
    char host[256];
    int port;
    ink_err err = {0};
    if (ink_split_hostport(agent_endpoint, host, sizeof host, &port, &err) == 0)
        snprintf(out, outlen, "%s", host);
    else
        snprintf(out, outlen, "127.0.0.1");
}

void ink_apps_url(const char *host, uint32_t port, char *out, size_t outlen)
{
    snprintf(out, outlen, strchr(host, ':') ? "http://[%s]:%u/" : "http://%s:%u/", host, port);
}

/* Replicas of one app with their reported status and node, current
 * generation first by slot. */
#define REPLICA_QUERY                                                                              \
    "SELECT r.workload_id, r.node_id, r.generation, r.slot, ws.state, COALESCE(ws.reason, ''),"    \
    " COALESCE(ws.restarts, 0), COALESCE(ws.image_digest, ''), COALESCE(ws.since_ms, 0),"          \
    " COALESCE(n.public_address, ''), COALESCE(n.addresses, ''),"                                  \
    " COALESCE(n.agent_endpoint, ''), COALESCE(n.last_seen, 0), n.id IS NOT NULL"                  \
    " FROM replicas r"                                                                             \
    " LEFT JOIN workload_status ws ON ws.node_id = r.node_id AND ws.workload_id = r.workload_id"   \
    " LEFT JOIN nodes n ON n.id = r.node_id WHERE r.app_id = ?1"                                   \
    " ORDER BY r.generation = ?2 DESC, r.slot, r.generation DESC"

typedef struct replica_view {
    char id[64], node[64], state[16], host[256], endpoint[256], digest[160];
    char reason[512];
    int64_t generation, slot, restarts, since_ms;
    bool current;
} replica_view;

static void read_replica(sqlite3_stmt *st, int64_t generation, int64_t now_ms, replica_view *r)
{
    memset(r, 0, sizeof *r);
    copy_text(r->id, sizeof r->id, st, 0);
    copy_text(r->node, sizeof r->node, st, 1);
    r->generation = sqlite3_column_int64(st, 2);
    r->slot = sqlite3_column_int64(st, 3);
    r->current = r->generation == generation;
    copy_text(r->reason, sizeof r->reason, st, 5);
    r->restarts = sqlite3_column_int64(st, 6);
    copy_text(r->digest, sizeof r->digest, st, 7);
    r->since_ms = sqlite3_column_int64(st, 8);
    copy_text(r->endpoint, sizeof r->endpoint, st, 11);
    ink_apps_node_host((const char *)sqlite3_column_text(st, 9),
                       (const char *)sqlite3_column_text(st, 10), r->endpoint, r->host,
                       sizeof r->host);
    bool node_known = sqlite3_column_int(st, 13);
    int64_t last_seen = sqlite3_column_int64(st, 12);
    if (!node_known || now_ms - last_seen > node_timeout_ms) {
        snprintf(r->state, sizeof r->state, "unreachable");
        if (!r->reason[0])
            snprintf(r->reason, sizeof r->reason, "node %s has not reported for %llds", r->node,
                     (long long)((now_ms - last_seen) / 1000));
    } else if (sqlite3_column_type(st, 4) == SQLITE_NULL) {
        snprintf(r->state, sizeof r->state, "pending");
    } else {
        snprintf(r->state, sizeof r->state, "%s",
                 ink_replica_state_name(sqlite3_column_int(st, 4)));
    }
}

static int load_replicas(sqlite3 *db, const ink_app_row *a, int64_t now_ms, replica_view **rows,
                         size_t *n, ink_err *err)
{
    *rows = NULL;
    *n = 0;
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db, REPLICA_QUERY, &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, a->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, a->generation);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        *rows = ink_xrealloc(*rows, (*n + 1) * sizeof **rows);
        read_replica(st, a->generation, now_ms, &(*rows)[(*n)++]);
    }
    if (step != SQLITE_DONE)
        return ink_db_err(db, err, "read replicas");
    return 0;
}

/* A replica in this state serves its app's URL: running, or asleep
 * (scaled to zero) or waking, when the URL's next request wakes it or is
 * held until it is awake. */
static bool state_serves(const char *state)
{
    return strcmp(state, "running") == 0 || strcmp(state, "sleeping") == 0 ||
           strcmp(state, "waking") == 0;
}

/* The status an app shows, from its replicas and latest operation. */
static void app_status(const ink_app_row *a, const replica_view *r, size_t n, const char *op_status,
                       const char *op_message, int64_t *ready, const char **status, char *reason,
                       size_t reasonlen)
{
    int64_t want = json_integer_value(json_object_get(a->spec, "replicas"));
    int64_t cur_running = 0, running = 0, cur_awake = 0, cur_waking = 0;
    const replica_view *bad = NULL;
    for (size_t i = 0; i < n; i++) {
        bool up = state_serves(r[i].state);
        running += up;
        cur_running += up && r[i].current;
        cur_awake += r[i].current && strcmp(r[i].state, "running") == 0;
        cur_waking += r[i].current && strcmp(r[i].state, "waking") == 0;
        if (r[i].current && !bad &&
            (strcmp(r[i].state, "failed") == 0 || strcmp(r[i].state, "crash-loop") == 0 ||
             strcmp(r[i].state, "unreachable") == 0))
            bad = &r[i];
    }
    *ready = running < want ? running : want;
    reason[0] = '\0';
    if (a->deleted_ms) {
        *status = "deleting";
    } else if (op_status && strcmp(op_status, "running") == 0) {
        *status = "deploying";
        snprintf(reason, reasonlen, "%s", op_message);
    } else if (want == 0) {
        *status = "stopped";
    } else if (cur_running >= want && cur_awake == 0 && cur_waking > 0) {
        *status = "waking";
        snprintf(reason, reasonlen, "a request woke it: its replicas are starting again");
    } else if (cur_running >= want && cur_awake == 0) {
        *status = "sleeping";
        snprintf(reason, reasonlen,
                 "idle for %llds: scaled to zero; the next request to its URL wakes it",
                 (long long)ink_app_idle_timeout_s(a->spec));
    } else if (cur_running >= want) {
        *status = "running";
    } else if (op_status && strcmp(op_status, "failed") == 0 && running == 0) {
        *status = "failed";
        snprintf(reason, reasonlen, "%s", op_message);
    } else if (bad && strcmp(bad->state, "crash-loop") == 0 && running == 0) {
        *status = "crash-loop";
        snprintf(reason, reasonlen, "replica %s: %s", bad->id, bad->reason);
    } else if (running == 0) {
        *status = bad ? "failed" : "deploying";
        if (bad)
            snprintf(reason, reasonlen, "replica %s on %s: %s", bad->id, bad->node, bad->reason);
    } else {
        *status = "degraded";
        /* The controller's message already says whether the previous
         * version keeps serving (controller.c): some replicas serving
         * does not mean they are of the previous version. */
        if (op_status && strcmp(op_status, "failed") == 0)
            snprintf(reason, reasonlen, "%s", op_message);
        else if (bad)
            snprintf(reason, reasonlen, "replica %s on %s: %s", bad->id, bad->node, bad->reason);
        else
            snprintf(reason, reasonlen, "%lld of %lld replicas serve", (long long)running,
                     (long long)want);
    }
}

/* The URL of the first serving replica (the app's published port on its
 * node), or "" when none serves. A sleeping one's URL answers too: the
 * request wakes it. */
static void app_url(const ink_app_row *a, const replica_view *r, size_t n, char *out, size_t outlen)
{
    out[0] = '\0';
    for (int pass = 0; pass < 2 && !out[0]; pass++) {
        for (size_t i = 0; i < n; i++) {
            if ((pass == 0 && !r[i].current) || !state_serves(r[i].state))
                continue;
            ink_apps_url(r[i].host, a->published_port, out, outlen);
            return;
        }
    }
}

static int latest_op(sqlite3 *db, const ink_app_row *a, char *status, char *message, size_t msglen)
{
    status[0] = message[0] = '\0';
    if (!*a->last_operation)
        return 0;
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db, "SELECT status, message FROM operations WHERE id = ?", &st, NULL) < 0)
        return -1;
    sqlite3_bind_text(st, 1, a->last_operation, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        copy_text(status, 16, st, 0);
        copy_text(message, msglen, st, 1);
    }
    return 0;
}

static json_t *app_view(sqlite3 *db, const ink_app_row *a, bool details, int64_t now_ms,
                        ink_err *err)
{
    replica_view *r = NULL;
    size_t n = 0;
    if (load_replicas(db, a, now_ms, &r, &n, err) < 0) {
        free(r);
        return NULL;
    }
    char op_status[16], op_message[512], reason[600], url[300], updated[32];
    latest_op(db, a, op_status, op_message, sizeof op_message);
    int64_t ready;
    const char *status;
    app_status(a, r, n, op_status, op_message, &ready, &status, reason, sizeof reason);
    app_url(a, r, n, url, sizeof url);
    ink_format_utc(a->updated_ms, true, updated, sizeof updated);
    json_t *v = json_pack(
        "{s:s, s:s, s:s, s:o, s:O, s:O, s:I, s:s}", "app", a->name, "project", a->project, "status",
        status, "url", *url ? json_string(url) : json_null(), "image",
        json_object_get(a->spec, "image"), "replicas", json_object_get(a->spec, "replicas"),
        "ready_replicas", (json_int_t)ready, "updated_at", updated);
    json_t *allow = json_object_get(a->spec, "egress_allow");
    json_object_set_new(v, "egress", json_string(ink_app_egress(a->spec)));
    json_object_set_new(v, "egress_allow", allow ? json_deep_copy(allow) : json_array());
    if (details) {
        char created[32];
        ink_format_utc(a->created_ms, true, created, sizeof created);
        const char *digest = NULL;
        json_t *reps = json_array();
        cleanup_stmt sqlite3_stmt *blocked = NULL;
        if (ink_db_prepare(db,
                           "SELECT category, total FROM egress_blocked WHERE node_id = ? AND"
                           " workload_id = ? AND total > 0 ORDER BY category",
                           &blocked, err) < 0) {
            free(r);
            json_decref(reps);
            json_decref(v);
            return NULL;
        }
        for (size_t i = 0; i < n; i++) {
            char since[32], rurl[300];
            ink_format_utc(r[i].since_ms, true, since, sizeof since);
            bool serving = state_serves(r[i].state);
            if (serving)
                ink_apps_url(r[i].host, a->published_port, rurl, sizeof rurl);
            if (r[i].current && r[i].digest[0] && !digest)
                digest = r[i].digest;
            json_array_append_new(
                reps,
                json_pack("{s:s, s:s, s:I, s:s, s:s, s:I, s:o, s:o, s:o}", "id", r[i].id, "node",
                          r[i].node, "generation", (json_int_t)r[i].generation, "state", r[i].state,
                          "reason", r[i].reason, "restarts", (json_int_t)r[i].restarts,
                          "image_digest", r[i].digest[0] ? json_string(r[i].digest) : json_null(),
                          "url", serving ? json_string(rurl) : json_null(), "since",
                          r[i].since_ms ? json_string(since) : json_null()));
            json_t *counts = json_object();
            sqlite3_reset(blocked);
            sqlite3_bind_text(blocked, 1, r[i].node, -1, SQLITE_STATIC);
            sqlite3_bind_text(blocked, 2, r[i].id, -1, SQLITE_STATIC);
            while (sqlite3_step(blocked) == SQLITE_ROW)
                json_object_set_new(counts, (const char *)sqlite3_column_text(blocked, 0),
                                    json_integer(sqlite3_column_int64(blocked, 1)));
            json_object_set_new(json_array_get(reps, json_array_size(reps) - 1), "egress_blocked",
                                counts);
        }
        json_t *events = json_array();
        cleanup_stmt sqlite3_stmt *st = NULL;
        if (ink_db_prepare(db,
                           "SELECT time_ms, message FROM (SELECT seq, time_ms, message FROM"
                           " app_events WHERE app_id = ? ORDER BY seq DESC LIMIT 20) ORDER BY seq",
                           &st, err) == 0) {
            sqlite3_bind_text(st, 1, a->id, -1, SQLITE_STATIC);
            while (sqlite3_step(st) == SQLITE_ROW) {
                char when[32];
                ink_format_utc(sqlite3_column_int64(st, 0), true, when, sizeof when);
                json_array_append_new(events, json_pack("{s:s, s:s}", "time", when, "message",
                                                        (const char *)sqlite3_column_text(st, 1)));
            }
        }
        double cpu = (double)json_integer_value(json_object_get(a->spec, "cpu_millis")) / 1000.0;
        json_object_update_new(
            v, json_pack("{s:s, s:o, s:O, s:O, s:O, s:f, s:O, s:O, s:I, s:s, s:o, s:o, s:o}",
                         "status_reason", reason, "image_digest",
                         digest ? json_string(digest) : json_null(), "port",
                         json_object_get(a->spec, "port"), "env", json_object_get(a->spec, "env"),
                         "secret_env", a->secret_names, "cpu", cpu, "memory_mb",
                         json_object_get(a->spec, "memory_mb"), "min_replicas",
                         json_object_get(a->spec, "min_replicas"), "generation",
                         (json_int_t)a->generation, "created_at", created, "operation_id",
                         *a->last_operation ? json_string(a->last_operation) : json_null(),
                         "replica_status", reps, "events", events));
        int64_t idle = ink_app_idle_timeout_s(a->spec);
        json_object_set_new(v, "idle_timeout_s", idle ? json_integer(idle) : json_null());
    }
    free(r);
    return v;
}

int ink_apps_get(ink_store *s, const char *project, const char *name, json_t **app, ink_err *err)
{
    *app = NULL;
    sqlite3 *db = ink_store_lock(s);
    ink_app_row a = {0};
    int rc = find_app(db, project, name, true, &a, err);
    if (rc == 1)
        rc = fail(err, INK_APPS_ENOTFOUND, "no app named '%s' in project '%s'", name, project);
    if (rc == 0) {
        *app = app_view(db, &a, true, ink_now_ms(), err);
        if (!*app)
            rc = -1;
    }
    ink_store_unlock(s);
    ink_app_row_clear(&a);
    return rc;
}

int ink_apps_list(ink_store *s, const char *project, const char *cursor, size_t limit,
                  json_t **list, ink_err *err)
{
    *list = NULL;
    if (limit == 0 || limit > 200)
        limit = 50;
    sqlite3 *db = ink_store_lock(s);
    cleanup_stmt sqlite3_stmt *st = NULL;
    int rc = ink_db_prepare(db,
                            "SELECT " APP_COLUMNS " FROM apps WHERE project = ? AND deleted_ms = 0"
                            " AND name > ? ORDER BY name LIMIT ?",
                            &st, err);
    json_t *apps = json_array();
    char last[64] = "";
    size_t count = 0;
    bool more = false;
    if (rc == 0) {
        sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, cursor ? cursor : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (int64_t)limit + 1);
        int step;
        int64_t now = ink_now_ms();
        while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
            if (count == limit) {
                more = true;
                break;
            }
            ink_app_row a;
            read_app(st, &a);
            json_t *v = app_view(db, &a, false, now, err);
            snprintf(last, sizeof last, "%s", a.name);
            ink_app_row_clear(&a);
            if (!v)
                rc = -1;
            else
                json_array_append_new(apps, v);
            count++;
        }
        if (rc == 0 && !more && step != SQLITE_DONE)
            rc = ink_db_err(db, err, "list apps");
    }
    ink_store_unlock(s);
    if (rc < 0) {
        json_decref(apps);
        return -1;
    }
    *list = json_pack("{s:o, s:o}", "apps", apps, "next_cursor",
                      more ? json_string(last) : json_null());
    return 0;
}

int ink_apps_replicas(ink_store *s, const char *project, const char *name, ink_replica_ref **refs,
                      size_t *n, ink_err *err)
{
    *refs = NULL;
    *n = 0;
    sqlite3 *db = ink_store_lock(s);
    ink_app_row a = {0};
    int rc = find_app(db, project, name, true, &a, err);
    if (rc == 1)
        rc = fail(err, INK_APPS_ENOTFOUND, "no app named '%s' in project '%s'", name, project);
    replica_view *r = NULL;
    size_t nr = 0;
    if (rc == 0)
        rc = load_replicas(db, &a, ink_now_ms(), &r, &nr, err);
    ink_store_unlock(s);
    if (rc == 0 && nr) {
        *refs = ink_xcalloc(nr, sizeof **refs);
        for (size_t i = 0; i < nr; i++) {
            ink_replica_ref *f = &(*refs)[i];
            snprintf(f->workload_id, sizeof f->workload_id, "%s", r[i].id);
            snprintf(f->node_id, sizeof f->node_id, "%s", r[i].node);
            snprintf(f->agent_endpoint, sizeof f->agent_endpoint, "%s", r[i].endpoint);
            snprintf(f->state, sizeof f->state, "%s", r[i].state);
            f->generation = (uint64_t)r[i].generation;
            f->current = r[i].current;
        }
        *n = nr;
    }
    free(r);
    ink_app_row_clear(&a);
    return rc;
}

/* ------------------------------------------------------------- resources */

static json_t *resource_view(sqlite3_stmt *st)
{
    char created[32];
    ink_format_utc(sqlite3_column_int64(st, 4), true, created, sizeof created);
    return json_pack("{s:s, s:s, s:s, s:I, s:s, s:s}", "resource",
                     (const char *)sqlite3_column_text(st, 0), "project",
                     (const char *)sqlite3_column_text(st, 1), "type",
                     (const char *)sqlite3_column_text(st, 2), "size_mb",
                     (json_int_t)sqlite3_column_int64(st, 3), "status",
                     sqlite3_column_int64(st, 5) ? "deleted" : "available", "created_at", created);
}

#define RESOURCE_COLUMNS "name, project, type, size_mb, created_ms, deleted_ms"

static int find_resource(sqlite3 *db, const char *project, const char *name, json_t **out,
                         char id[40], ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db,
                       "SELECT " RESOURCE_COLUMNS ", id FROM resources WHERE project = ? AND"
                       " name = ? AND deleted_ms = 0",
                       &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    int found = ink_db_step_row(db, st, "read resource", err);
    if (found != 0)
        return found;
    *out = resource_view(st);
    copy_text(id, 40, st, 6);
    return 0;
}

int ink_resources_create(ink_store *s, const ink_caller *who, const json_t *args, int64_t now_ms,
                         json_t **resource, ink_err *err)
{
    *resource = NULL;
    const char *type = str_arg(args, "type"), *name = str_arg(args, "name");
    if (!type || strcmp(type, "volume") != 0)
        return fail(err, INK_APPS_EINVAL,
                    "resource type '%s' is not yet supported; supported types: volume",
                    type ? type : "");
    if (!name || !ink_valid_name(name) || strlen(name) > INK_APP_NAME_MAX)
        return fail(err, INK_APPS_EINVAL,
                    "resource name '%s' is not valid: use 1-%d of a-z, 0-9 and '-'",
                    name ? name : "", INK_APP_NAME_MAX);
    json_t *size = json_object_get(args, "size_mb");
    json_int_t mb = size ? json_integer_value(size) : 1024;
    if (size && (!json_is_integer(size) || mb < 1 || mb > 1048576))
        return fail(err, INK_APPS_EINVAL, "size_mb must be 1 to 1048576");
    sqlite3 *db = ink_store_lock(s);
    int rc = begin(db, err);
    char id[40];
    if (rc == 0) {
        json_t *existing = NULL;
        int found = find_resource(db, who->project, name, &existing, id, err);
        if (found == 0) {
            /* The same request again is a no-op; another size is a conflict. */
            if (json_integer_value(json_object_get(existing, "size_mb")) == mb) {
                *resource = existing;
                rc = 1;
            } else {
                json_decref(existing);
                rc = fail(err, INK_APPS_ECONFLICT,
                          "a volume named '%s' already exists in project '%s' with another size",
                          name, who->project);
            }
        } else if (found < 0) {
            rc = -1;
        }
    }
    if (rc == 0) {
        char hex[13];
        rc = ink_random_hex(hex, 6, err);
        snprintf(id, sizeof id, "res-%s", hex);
        cleanup_stmt sqlite3_stmt *st = NULL;
        if (rc == 0)
            rc = ink_db_prepare(db, "INSERT INTO resources VALUES (?, ?, ?, 'volume', ?, ?, 0)",
                                &st, err);
        if (rc == 0) {
            sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, who->project, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, mb);
            sqlite3_bind_int64(st, 5, now_ms);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = ink_db_err(db, err, "create resource");
        }
        if (rc == 0 && find_resource(db, who->project, name, resource, id, err) != 0)
            rc = -1;
    }
    return end_request(s, db, rc, resource, err);
}

int ink_resources_list(ink_store *s, const char *project, json_t **list, ink_err *err)
{
    sqlite3 *db = ink_store_lock(s);
    cleanup_stmt sqlite3_stmt *st = NULL;
    int rc = ink_db_prepare(db,
                            "SELECT " RESOURCE_COLUMNS " FROM resources WHERE project = ? AND"
                            " deleted_ms = 0 ORDER BY name",
                            &st, err);
    json_t *items = json_array();
    if (rc == 0) {
        sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW)
            json_array_append_new(items, resource_view(st));
        if (step != SQLITE_DONE)
            rc = ink_db_err(db, err, "list resources");
    }
    ink_store_unlock(s);
    if (rc < 0) {
        json_decref(items);
        return -1;
    }
    *list = json_pack("{s:o}", "resources", items);
    return 0;
}

int ink_resources_delete(ink_store *s, const ink_caller *who, const char *name, int64_t now_ms,
                         json_t **resource, ink_err *err)
{
    *resource = NULL;
    sqlite3 *db = ink_store_lock(s);
    int rc = begin(db, err);
    char id[40];
    if (rc == 0) {
        int found = find_resource(db, who->project, name ? name : "", resource, id, err);
        if (found == 1)
            rc = fail(err, INK_APPS_ENOTFOUND, "no resource named '%s' in project '%s'",
                      name ? name : "", who->project);
        else if (found < 0)
            rc = -1;
    }
    if (rc == 0) {
        cleanup_stmt sqlite3_stmt *st = NULL;
        rc = ink_db_prepare(db, "UPDATE resources SET deleted_ms = ? WHERE id = ?", &st, err);
        if (rc == 0) {
            sqlite3_bind_int64(st, 1, now_ms);
            sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = ink_db_err(db, err, "delete resource");
        }
        if (rc == 0)
            json_object_set_new(*resource, "status", json_string("deleted"));
    }
    return end_request(s, db, rc, resource, err);
}

/* ------------------------------------------------------------- nodes */

int ink_apps_list_nodes(ink_store *s, int64_t now_ms, int64_t timeout_ms, json_t **list,
                        ink_err *err)
{
    ink_node_row *nodes = NULL;
    size_t n = 0;
    if (ink_store_list_nodes(s, &nodes, &n, err) < 0)
        return -1;
    json_t *items = json_array();
    sqlite3 *db = ink_store_lock(s);
    cleanup_stmt sqlite3_stmt *st = NULL;
    int rc = ink_db_prepare(db,
                            "SELECT COALESCE(SUM(cpu_millis), 0), COALESCE(SUM(memory_bytes), 0),"
                            " COUNT(*) FROM replicas WHERE node_id = ?",
                            &st, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, nodes[i].id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_ROW) {
            rc = ink_db_err(db, err, "node usage");
            break;
        }
        char host[256], seen[32];
        ink_apps_node_host(nodes[i].public_address, nodes[i].addresses, nodes[i].agent_endpoint,
                           host, sizeof host);
        ink_format_utc(nodes[i].last_seen_ms, true, seen, sizeof seen);
        bool ready = ink_node_is_ready(&nodes[i], now_ms, timeout_ms);
        json_array_append_new(
            items, json_pack("{s:s, s:s, s:s, s:I, s:I, s:f, s:I, s:I, s:s, s:s, s:s}", "node",
                             nodes[i].id, "status", ready ? "ready" : "unreachable", "address",
                             host, "cpus", (json_int_t)nodes[i].cpus, "memory_mb",
                             (json_int_t)(nodes[i].memory_bytes >> 20), "cpu_allocated",
                             (double)sqlite3_column_int64(st, 0) / 1000.0, "memory_allocated_mb",
                             (json_int_t)(sqlite3_column_int64(st, 1) >> 20), "replicas",
                             (json_int_t)sqlite3_column_int64(st, 2), "runsc_version",
                             nodes[i].runsc_version, "agent_version", nodes[i].agent_version,
                             "last_seen", seen));
    }
    ink_store_unlock(s);
    free(nodes);
    if (rc < 0) {
        json_decref(items);
        return -1;
    }
    *list = json_pack("{s:o}", "nodes", items);
    return 0;
}

/* ------------------------------------------------------------- upgrade */

typedef struct redone {
    int64_t rowid;
    char *text;
} redone;

static void redone_push(redone **rows, size_t *n, size_t *cap, int64_t rowid, char *text)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *rows = ink_xrealloc(*rows, *cap * sizeof **rows);
    }
    (*rows)[(*n)++] = (redone){rowid, text};
}

/* The keyed secret_names of the app row at st (rowid, id, secret_env,
 * secret_names). A secret_env that does not open keeps its names with
 * the fingerprint "unavailable" rather than fail the open of the whole
 * database: the plain fingerprints must go either way, and the next
 * update_app with secret_env repairs the row. NULL when the MAC fails. */
static json_t *rekeyed_names(ink_store *s, sqlite3_stmt *st, ink_err *err)
{
    const char *id = (const char *)sqlite3_column_text(st, 1);
    const char *sealed = (const char *)sqlite3_column_text(st, 2);
    char *plain = NULL;
    json_t *secrets = NULL;
    ink_err why = {0};
    if (!sealed)
        ink_err_set(&why, 0, "no sealed secret_env");
    else if (ink_store_unseal(s, sealed, &plain, &why) == 0)
        secrets = json_loads(plain, 0, NULL);
    free_wiped(plain);
    if (json_is_object(secrets)) {
        json_t *names = secret_names_of(s, secrets, err);
        json_decref(secrets);
        return names;
    }
    json_decref(secrets);
    LOG_WARN("app secret_env does not open: its fingerprints become unavailable", "app", id,
             "error", why.msg[0] ? why.msg : "not a JSON object");
    json_t *old = json_loads((const char *)sqlite3_column_text(st, 3), 0, NULL);
    json_t *names = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(old, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        if (name)
            json_array_append_new(
                names, json_pack("{s:s, s:s}", "name", name, "fingerprint", "unavailable"));
    }
    json_decref(old);
    return names;
}

int ink_apps_upgrade_digests(ink_store *s, sqlite3 *db, size_t *n_apps, size_t *n_ops, ink_err *err)
{
    redone *apps = NULL, *ops = NULL;
    size_t cap_apps = 0, cap_ops = 0;
    *n_apps = *n_ops = 0;
    int rc = 0, step = SQLITE_DONE;
    /* Read first, written after: rows updated while a SELECT walks their
     * table may be visited again. */
    {
        cleanup_stmt sqlite3_stmt *st = NULL;
        rc = ink_db_prepare(db,
                            "SELECT rowid, id, secret_env, secret_names FROM apps"
                            " WHERE secret_env IS NOT NULL OR secret_names != '[]'",
                            &st, err);
        while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
            json_t *names = rekeyed_names(s, st, err);
            if (!names) {
                rc = -1;
                break;
            }
            char *text = json_dumps(names, JSON_SORT_KEYS | JSON_COMPACT);
            json_decref(names);
            redone_push(&apps, n_apps, &cap_apps, sqlite3_column_int64(st, 0), text);
        }
        if (rc == 0 && step != SQLITE_DONE)
            rc = ink_db_err(db, err, "read apps");
    }
    if (rc == 0) {
        cleanup_stmt sqlite3_stmt *st = NULL;
        rc = ink_db_prepare(db,
                            "SELECT rowid, request_hash FROM operations"
                            " WHERE substr(request_hash, 1, length(?1)) != ?1",
                            &st, err);
        if (rc == 0)
            sqlite3_bind_text(st, 1, PRE_KEYED_PREFIX, -1, SQLITE_STATIC);
        while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
            const char *plain = (const char *)sqlite3_column_text(st, 1);
            char mac[65];
            if (ink_store_mac_hex(s, plain ? plain : "", plain ? strlen(plain) : 0, mac) < 0) {
                rc = ink_err_set(err, 0, "cannot hash a request hash");
                break;
            }
            redone_push(&ops, n_ops, &cap_ops, sqlite3_column_int64(st, 0),
                        ink_xasprintf("%s%s", PRE_KEYED_PREFIX, mac));
        }
        if (rc == 0 && step != SQLITE_DONE)
            rc = ink_db_err(db, err, "read operations");
    }
    static const char *const updates[] = {"UPDATE apps SET secret_names = ? WHERE rowid = ?",
                                          "UPDATE operations SET request_hash = ? WHERE rowid = ?"};
    const redone *lists[] = {apps, ops};
    const size_t counts[] = {*n_apps, *n_ops};
    for (size_t t = 0; rc == 0 && t < 2; t++) {
        if (counts[t] == 0)
            continue;
        cleanup_stmt sqlite3_stmt *st = NULL;
        rc = ink_db_prepare(db, updates[t], &st, err);
        for (size_t i = 0; rc == 0 && i < counts[t]; i++) {
            sqlite3_reset(st);
            sqlite3_bind_text(st, 1, lists[t][i].text, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, lists[t][i].rowid);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = ink_db_err(db, err, "rewrite digests");
        }
    }
    for (size_t i = 0; i < *n_apps; i++)
        free(apps[i].text);
    for (size_t i = 0; i < *n_ops; i++)
        free(ops[i].text);
    free(apps);
    free(ops);
    return rc;
}
