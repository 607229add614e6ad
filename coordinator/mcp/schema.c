/* A small JSON Schema validator for tool inputs and outputs (the subset
 * mcp.h lists). Schemas are checked once when parsed, so validation can
 * trust their shape; errors name the JSON path of the first offending
 * value, because the model reads them and has to find what to fix. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp.h"
#include "util.h"

struct ink_mcp_schema {
    json_t *root;
};

static const char *const type_names[] = {"object", "array",   "string", "integer",
                                         "number", "boolean", "null"};

/* Keywords with no effect on validation. */
static const char *const annotation_keywords[] = {
    "$schema",  "$id",        "$comment", "title",     "description", "default",
    "examples", "deprecated", "readOnly", "writeOnly", "format"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* ---- a growing path: "#/properties/env" while parsing, "arguments.env"
 * while validating ---- */

typedef struct {
    char *buf;
    size_t len, cap;
} path_buf;

static void path_init(path_buf *p, const char *root)
{
    p->cap = 128;
    p->len = 0;
    p->buf = ink_xmalloc(p->cap);
    p->buf[0] = '\0';
    size_t n = strlen(root);
    if (n + 1 > p->cap) {
        p->cap = n + 1;
        p->buf = realloc(p->buf, p->cap);
        if (!p->buf)
            abort();
    }
    memcpy(p->buf, root, n + 1);
    p->len = n;
}

static size_t path_push(path_buf *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends to the path; returns the old length for path_pop. */
static size_t path_push(path_buf *p, const char *fmt, ...)
{
    size_t old = p->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    if (p->len + (size_t)n + 1 > p->cap) {
        while (p->len + (size_t)n + 1 > p->cap)
            p->cap *= 2;
        p->buf = realloc(p->buf, p->cap);
        if (!p->buf)
            abort();
    }
    va_start(ap, fmt);
    vsnprintf(p->buf + p->len, p->cap - p->len, fmt, ap);
    va_end(ap);
    p->len += (size_t)n;
    return old;
}

static void path_pop(path_buf *p, size_t old)
{
    p->len = old;
    p->buf[old] = '\0';
}

/* ---- parsing: the schema's own shape ---- */

static int check_schema(const json_t *s, path_buf *path, ink_err *err);

static bool is_type_name(const json_t *v)
{
    return json_is_string(v) &&
           in_list(json_string_value(v), type_names, INK_ARRAY_LEN(type_names));
}

static int check_count(const json_t *v, const char *kw, path_buf *path, ink_err *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return ink_err_set(err, 0, "%s: \"%s\" must be a non-negative integer", path->buf, kw);
    return 0;
}

static int check_keyword(const char *kw, const json_t *v, path_buf *path, ink_err *err)
{
    if (strcmp(kw, "type") == 0) {
        if (is_type_name(v))
            return 0;
        if (json_is_array(v) && json_array_size(v) > 0) {
            size_t i;
            json_t *t;
            json_array_foreach(v, i, t)
            {
                if (!is_type_name(t))
                    break;
                for (size_t j = 0; j < i; j++)
                    if (json_equal(t, json_array_get(v, j)))
                        return ink_err_set(err, 0, "%s: \"type\" lists \"%s\" twice", path->buf,
                                           json_string_value(t));
            }
            if (i == json_array_size(v))
                return 0;
        }
        return ink_err_set(err, 0,
                           "%s: \"type\" must be one of object, array, string, integer, number, "
                           "boolean, null, or a non-empty array of them",
                           path->buf);
    }
    if (strcmp(kw, "properties") == 0) {
        if (!json_is_object(v))
            return ink_err_set(err, 0, "%s: \"properties\" must be an object", path->buf);
        const char *name;
        json_t *sub;
        json_object_foreach((json_t *)v, name, sub)
        {
            size_t old = path_push(path, "/properties/%s", name);
            if (check_schema(sub, path, err) < 0)
                return -1;
            path_pop(path, old);
        }
        return 0;
    }
    if (strcmp(kw, "required") == 0) {
        size_t i;
        json_t *name;
        if (!json_is_array(v))
            return ink_err_set(err, 0, "%s: \"required\" must be an array of strings", path->buf);
        json_array_foreach(v, i, name)
        {
            if (!json_is_string(name))
                return ink_err_set(err, 0, "%s: \"required\" must be an array of strings",
                                   path->buf);
        }
        return 0;
    }
    if (strcmp(kw, "additionalProperties") == 0 || strcmp(kw, "items") == 0) {
        size_t old = path_push(path, "/%s", kw);
        if (check_schema(v, path, err) < 0)
            return -1;
        path_pop(path, old);
        return 0;
    }
    if (strcmp(kw, "enum") == 0) {
        if (!json_is_array(v) || json_array_size(v) == 0)
            return ink_err_set(err, 0, "%s: \"enum\" must be a non-empty array", path->buf);
        return 0;
    }
    if (strcmp(kw, "const") == 0)
        return 0;
    if (strcmp(kw, "minimum") == 0 || strcmp(kw, "maximum") == 0 ||
        strcmp(kw, "exclusiveMinimum") == 0 || strcmp(kw, "exclusiveMaximum") == 0) {
        if (!json_is_number(v))
            return ink_err_set(err, 0, "%s: \"%s\" must be a number", path->buf, kw);
        return 0;
    }
    if (strcmp(kw, "minLength") == 0 || strcmp(kw, "maxLength") == 0 ||
        strcmp(kw, "minItems") == 0 || strcmp(kw, "maxItems") == 0)
        return check_count(v, kw, path, err);
    if (in_list(kw, annotation_keywords, INK_ARRAY_LEN(annotation_keywords)))
        return 0;
    return ink_err_set(err, 0, "%s: unsupported keyword \"%s\"", path->buf, kw);
}

static int check_schema(const json_t *s, path_buf *path, ink_err *err)
{
    if (json_is_boolean(s))
        return 0;
    if (!json_is_object(s))
        return ink_err_set(err, 0, "%s: a schema must be an object or a boolean", path->buf);
    const char *kw;
    json_t *v;
    json_object_foreach((json_t *)s, kw, v)
    {
        if (check_keyword(kw, v, path, err) < 0)
            return -1;
    }
    return 0;
}

ink_mcp_schema *ink_mcp_schema_parse(const char *json_text, ink_err *err)
{
    if (!json_text) {
        ink_err_set(err, 0, "schema missing");
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        ink_err_set(err, 0, "schema is not JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                    jerr.column);
        return NULL;
    }
    path_buf path;
    path_init(&path, "#");
    int rc = check_schema(root, &path, err);
    free(path.buf);
    if (rc < 0) {
        json_decref(root);
        return NULL;
    }
    ink_mcp_schema *s = ink_xcalloc(1, sizeof *s);
    s->root = root;
    return s;
}

const json_t *ink_mcp_schema_json(const ink_mcp_schema *s)
{
    return s->root;
}

const char *ink_mcp_schema_root_type(const ink_mcp_schema *s)
{
    return json_string_value(json_object_get(s->root, "type"));
}

void ink_mcp_schema_free(ink_mcp_schema *s)
{
    if (!s)
        return;
    json_decref(s->root);
    free(s);
}

/* ---- validation ---- */

static const char *value_type(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

static bool type_matches(const char *want, const json_t *v)
{
    if (strcmp(want, "number") == 0)
        return json_is_number(v);
    return strcmp(want, value_type(v)) == 0;
}

/* "string", "string or null", "string, integer or null" */
static void describe_types(const json_t *type, char *out, size_t outlen)
{
    if (json_is_string(type)) {
        snprintf(out, outlen, "%s", json_string_value(type));
        return;
    }
    size_t n = json_array_size(type), o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && o < outlen; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        int w =
            snprintf(out + o, outlen - o, "%s%s", sep, json_string_value(json_array_get(type, i)));
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

/* Numbers as a reader expects them: integers without a fraction. */
static void fmt_number(const json_t *v, char *out, size_t outlen)
{
    if (json_is_integer(v))
        snprintf(out, outlen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        snprintf(out, outlen, "%.17g", json_real_value(v));
}

/* Compares two JSON numbers: <0, 0, >0. Two integers compare exactly; a
 * mix goes through double, which is exact for every limit a schema sets in
 * practice. */
static int num_cmp(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return (x > y) - (x < y);
    }
    double x = json_number_value(a), y = json_number_value(b);
    return (x > y) - (x < y);
}

/* Length in code points: the strings jansson hands out are valid UTF-8, so
 * counting the bytes that do not continue a sequence is enough. */
static size_t utf8_length(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            count++;
    return count;
}

/* Lists values ("a", "b", 3) for an enum error, cut when it gets long. */
static void describe_values(const json_t *values, char *out, size_t outlen)
{
    size_t o = 0, i;
    json_t *v;
    out[0] = '\0';
    json_array_foreach(values, i, v)
    {
        cleanup_free char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        int w = snprintf(out + o, outlen - o, "%s%s", i ? ", " : "", s ? s : "?");
        if (w < 0 || (size_t)w >= outlen - o) {
            /* Leave room to say the list goes on. */
            if (outlen > 5)
                memcpy(out + outlen - 5, " ...", 5);
            return;
        }
        o += (size_t)w;
    }
}

static int validate(const json_t *schema, const json_t *v, path_buf *path, ink_err *err);

static int validate_object(const json_t *schema, const json_t *v, path_buf *path, ink_err *err)
{
    json_t *props = json_object_get(schema, "properties");
    json_t *additional = json_object_get(schema, "additionalProperties");
    const char *key;
    json_t *member;
    /* Unknown properties first: a misspelt name shows up here, which
     * explains the "required property missing" that would follow. */
    json_object_foreach((json_t *)v, key, member)
    {
        json_t *sub = json_object_get(props, key);
        if (!sub && !additional)
            continue;
        size_t old = path_push(path, ".%s", key);
        if (!sub && json_is_false(additional)) {
            char allowed[256] = "";
            size_t o = 0;
            const char *name;
            json_t *ignored;
            json_object_foreach(props, name, ignored)
            {
                int w = snprintf(allowed + o, sizeof allowed - o, "%s%s", o ? ", " : "", name);
                if (w < 0 || (size_t)w >= sizeof allowed - o)
                    break;
                o += (size_t)w;
            }
            if (o)
                return ink_err_set(err, 0, "%s: unknown property (expected one of: %s)", path->buf,
                                   allowed);
            return ink_err_set(err, 0, "%s: unknown property (none are accepted)", path->buf);
        }
        if (validate(sub ? sub : additional, member, path, err) < 0)
            return -1;
        path_pop(path, old);
    }
    size_t i;
    json_t *name;
    json_array_foreach(json_object_get(schema, "required"), i, name)
    {
        if (!json_object_get(v, json_string_value(name))) {
            path_push(path, ".%s", json_string_value(name));
            return ink_err_set(err, 0, "%s: required property missing", path->buf);
        }
    }
    return 0;
}

static int validate_array(const json_t *schema, const json_t *v, path_buf *path, ink_err *err)
{
    size_t n = json_array_size(v);
    json_t *lim = json_object_get(schema, "minItems");
    if (lim && n < (size_t)json_integer_value(lim))
        return ink_err_set(err, 0,
                           "%s: must have at least %" JSON_INTEGER_FORMAT " item(s), has %zu",
                           path->buf, json_integer_value(lim), n);
    lim = json_object_get(schema, "maxItems");
    if (lim && n > (size_t)json_integer_value(lim))
        return ink_err_set(err, 0,
                           "%s: must have at most %" JSON_INTEGER_FORMAT " item(s), has %zu",
                           path->buf, json_integer_value(lim), n);
    json_t *items = json_object_get(schema, "items");
    if (!items)
        return 0;
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        size_t old = path_push(path, "[%zu]", i);
        if (validate(items, item, path, err) < 0)
            return -1;
        path_pop(path, old);
    }
    return 0;
}

static int validate_string(const json_t *schema, const json_t *v, path_buf *path, ink_err *err)
{
    size_t len = utf8_length(json_string_value(v), json_string_length(v));
    json_t *lim = json_object_get(schema, "minLength");
    if (lim && len < (size_t)json_integer_value(lim))
        return ink_err_set(
            err, 0, "%s: must be at least %" JSON_INTEGER_FORMAT " character(s) long, is %zu",
            path->buf, json_integer_value(lim), len);
    lim = json_object_get(schema, "maxLength");
    if (lim && len > (size_t)json_integer_value(lim))
        return ink_err_set(err, 0,
                           "%s: must be at most %" JSON_INTEGER_FORMAT " character(s) long, is %zu",
                           path->buf, json_integer_value(lim), len);
    return 0;
}

static int validate_number(const json_t *schema, const json_t *v, path_buf *path, ink_err *err)
{
    static const struct {
        const char *kw, *op;
        int fail_if; /* the comparison result (value vs limit) that fails */
        bool or_equal;
    } limits[] = {
        {"minimum", ">=", -1, false},
        {"maximum", "<=", 1, false},
        {"exclusiveMinimum", ">", -1, true},
        {"exclusiveMaximum", "<", 1, true},
    };
    for (size_t i = 0; i < INK_ARRAY_LEN(limits); i++) {
        json_t *lim = json_object_get(schema, limits[i].kw);
        if (!lim)
            continue;
        int c = num_cmp(v, lim);
        if (c == limits[i].fail_if || (limits[i].or_equal && c == 0)) {
            char want[64], got[64];
            fmt_number(lim, want, sizeof want);
            fmt_number(v, got, sizeof got);
            return ink_err_set(err, 0, "%s: must be %s %s, is %s", path->buf, limits[i].op, want,
                               got);
        }
    }
    return 0;
}

static int validate(const json_t *schema, const json_t *v, path_buf *path, ink_err *err)
{
    if (json_is_true(schema))
        return 0;
    if (json_is_false(schema))
        return ink_err_set(err, 0, "%s: not allowed here", path->buf);

    json_t *type = json_object_get(schema, "type");
    if (type) {
        bool ok = false;
        if (json_is_string(type)) {
            ok = type_matches(json_string_value(type), v);
        } else {
            size_t i;
            json_t *t;
            json_array_foreach(type, i, t)
            {
                if (type_matches(json_string_value(t), v)) {
                    ok = true;
                    break;
                }
            }
        }
        if (!ok) {
            char want[128];
            describe_types(type, want, sizeof want);
            return ink_err_set(err, 0, "%s: expected %s, got %s", path->buf, want, value_type(v));
        }
    }

    json_t *en = json_object_get(schema, "enum");
    if (en) {
        size_t i;
        json_t *option;
        bool found = false;
        json_array_foreach(en, i, option)
        {
            if (json_equal(option, v)) {
                found = true;
                break;
            }
        }
        if (!found) {
            char opts[256];
            describe_values(en, opts, sizeof opts);
            return ink_err_set(err, 0, "%s: must be one of %s", path->buf, opts);
        }
    }
    json_t *c = json_object_get(schema, "const");
    if (c && !json_equal(c, v)) {
        cleanup_free char *want = json_dumps(c, JSON_COMPACT | JSON_ENCODE_ANY);
        return ink_err_set(err, 0, "%s: must be %s", path->buf, want ? want : "?");
    }

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return validate_object(schema, v, path, err);
    case JSON_ARRAY:
        return validate_array(schema, v, path, err);
    case JSON_STRING:
        return validate_string(schema, v, path, err);
    case JSON_INTEGER:
    case JSON_REAL:
        return validate_number(schema, v, path, err);
    default:
        return 0;
    }
}

int ink_mcp_schema_validate(const ink_mcp_schema *s, const json_t *value, const char *root,
                            ink_err *err)
{
    path_buf path;
    path_init(&path, root ? root : "");
    int rc = validate(s->root, value, &path, err);
    free(path.buf);
    return rc;
}
