#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const ink_opt *find_opt(const ink_opt *opts, const char *name, size_t len)
{
    for (const ink_opt *o = opts; o->name; o++) {
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    }
    return NULL;
}

int ink_parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < INK_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* A number followed by a unit suffix from the table; a bare number takes
 * the unit of the entry whose suffix is "". */
typedef struct {
    const char *suffix;
    uint64_t mult;
} unit;

static int parse_with_units(const char *s, const unit *units, size_t nunits, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    for (size_t i = 0; i < nunits; i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            if (units[i].mult && v > UINT64_MAX / units[i].mult)
                return -1;
            *out = v * units[i].mult;
            return 0;
        }
    }
    return -1;
}

int ink_parse_duration_ms(const char *s, int64_t *out)
{
    static const unit units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    uint64_t v;
    if (parse_with_units(s, units, INK_ARRAY_LEN(units), &v) < 0 || v > INT64_MAX)
        return -1;
    *out = (int64_t)v;
    return 0;
}

int ink_parse_size(const char *s, uint64_t *out)
{
    static const unit units[] = {
        {"", 1},           {"K", 1ULL << 10},  {"M", 1ULL << 20},  {"G", 1ULL << 30},
        {"T", 1ULL << 40}, {"Ki", 1ULL << 10}, {"Mi", 1ULL << 20}, {"Gi", 1ULL << 30}};
    return parse_with_units(s, units, INK_ARRAY_LEN(units), out);
}

static int check_bounds(const ink_opt *o, int64_t v, const char *value, ink_err *err)
{
    if (o->max > o->min && (v < o->min || v > o->max))
        return ink_err_set(err, 0, "%s: %s out of range [%" PRId64 ", %" PRId64 "]", o->name, value,
                           o->min, o->max);
    return 0;
}

static int set_opt(const ink_opt *o, void *cfg, const char *value, ink_err *err)
{
    char *field = (char *)cfg + o->offset;
    switch (o->type) {
    case INK_OPT_STRING: {
        char **sp = (char **)field;
        free(*sp);
        *sp = ink_xstrdup(value);
        return 0;
    }
    case INK_OPT_BOOL:
        if (ink_parse_bool(value, (bool *)field) < 0)
            return ink_err_set(err, 0, "%s: '%s' is not a boolean (true/false)", o->name, value);
        return 0;
    case INK_OPT_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end)
            return ink_err_set(err, 0, "%s: '%s' is not an integer", o->name, value);
        if (check_bounds(o, v, value, err) < 0)
            return -1;
        *(int64_t *)field = v;
        return 0;
    }
    case INK_OPT_DURATION: {
        int64_t v;
        if (ink_parse_duration_ms(value, &v) < 0)
            return ink_err_set(err, 0, "%s: '%s' is not a duration (e.g. 500ms, 5s, 2m, 1h)",
                               o->name, value);
        if (check_bounds(o, v, value, err) < 0)
            return -1;
        *(int64_t *)field = v;
        return 0;
    }
    case INK_OPT_SIZE: {
        uint64_t v;
        if (ink_parse_size(value, &v) < 0)
            return ink_err_set(err, 0, "%s: '%s' is not a size (e.g. 4096, 64K, 16M, 2G)", o->name,
                               value);
        if (v > INT64_MAX || check_bounds(o, (int64_t)v, value, err) < 0)
            return ink_err_set(err, 0, "%s: '%s' out of range", o->name, value);
        *(uint64_t *)field = v;
        return 0;
    }
    }
    return ink_err_set(err, 0, "%s: unknown option type", o->name);
}

int ink_config_defaults(const ink_opt *opts, void *cfg, ink_err *err)
{
    for (const ink_opt *o = opts; o->name; o++) {
        const char *zero = o->type == INK_OPT_STRING     ? ""
                           : o->type == INK_OPT_DURATION ? "0ms"
                           : o->type == INK_OPT_BOOL     ? "false"
                                                         : "0";
        if (set_opt(o, cfg, o->def ? o->def : zero, err) < 0)
            return ink_err_wrap(err, "built-in default");
    }
    return 0;
}

int ink_config_set(const ink_opt *opts, void *cfg, const char *name, const char *value,
                   ink_err *err)
{
    const ink_opt *o = find_opt(opts, name, strlen(name));
    if (!o)
        return ink_err_set(err, 0, "unknown option '%s'", name);
    return set_opt(o, cfg, value, err);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* One "key = value" line. Values may be double-quoted to keep '#' or
 * surrounding blanks; \" and \\ are the only escapes. Returns 0 for blank and
 * comment lines with *key = NULL. */
static int parse_line(char *line, char **key, char **value, ink_err *err)
{
    *key = NULL;
    char *s = trim(line);
    if (*s == '\0' || *s == '#' || *s == ';')
        return 0;
    char *eq = strchr(s, '=');
    if (!eq)
        return ink_err_set(err, 0, "expected 'key = value'");
    *eq = '\0';
    *key = trim(s);
    if (**key == '\0')
        return ink_err_set(err, 0, "missing key before '='");
    char *v = trim(eq + 1);
    if (*v == '"') {
        char *out = v, *in = v + 1;
        for (; *in && *in != '"'; in++) {
            if (*in == '\\' && (in[1] == '"' || in[1] == '\\'))
                in++;
            *out++ = *in;
        }
        if (*in != '"')
            return ink_err_set(err, 0, "unterminated quoted value");
        char *rest = trim(in + 1);
        if (*rest && *rest != '#')
            return ink_err_set(err, 0, "text after quoted value");
        *out = '\0';
    } else {
        char *hash = strchr(v, '#');
        if (hash) {
            *hash = '\0';
            v = trim(v);
        }
    }
    *value = v;
    return 0;
}

int ink_config_load_file(const ink_opt *opts, void *cfg, const char *path, bool missing_ok,
                         ink_err *err)
{
    cleanup_free char *text = NULL;
    if (ink_read_file(path, 1 << 20, &text, NULL, err) < 0) {
        if (missing_ok && err->errnum == ENOENT) {
            ink_err_clear(err);
            return 0;
        }
        return -1;
    }
    size_t nopts = 0;
    for (const ink_opt *o = opts; o->name; o++)
        nopts++;
    cleanup_free int *seen_line = ink_xcalloc(nopts, sizeof(int));
    int lineno = 0;
    char *save;
    /* strtok_r would skip empty lines and break line numbers: split by hand. */
    for (char *line = text; line; line = save) {
        lineno++;
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        char *key = NULL, *value = NULL;
        if (parse_line(line, &key, &value, err) < 0)
            return ink_err_wrap(err, "%s:%d", path, lineno);
        if (!key)
            continue;
        const ink_opt *o = find_opt(opts, key, strlen(key));
        if (!o)
            return ink_err_set(err, 0, "%s:%d: unknown option '%s'", path, lineno, key);
        size_t idx = (size_t)(o - opts);
        if (seen_line[idx])
            return ink_err_set(err, 0, "%s:%d: '%s' already set on line %d", path, lineno, key,
                               seen_line[idx]);
        seen_line[idx] = lineno;
        if (set_opt(o, cfg, value, err) < 0)
            return ink_err_wrap(err, "%s:%d", path, lineno);
    }
    return 0;
}

int ink_config_parse_args(const ink_opt *opts, void *cfg, int argc, char **argv, int *index,
                          ink_err *err)
{
    int i = *index;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strncmp(a, "--", 2) != 0)
            break;
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        /* Flags spell options with '-' or '_' interchangeably. */
        char key[128];
        if (nlen >= sizeof key)
            return ink_err_set(err, 0, "unknown flag '%s'", a);
        for (size_t k = 0; k < nlen; k++)
            key[k] = name[k] == '-' ? '_' : name[k];
        key[nlen] = '\0';
        /* --config is read before the other flags (ink_load_config). */
        if (strcmp(key, "config") == 0) {
            if (!eq)
                i++;
            continue;
        }
        const ink_opt *o = find_opt(opts, key, nlen);
        if (!o && !eq && strncmp(key, "no_", 3) == 0) {
            const ink_opt *neg = find_opt(opts, key + 3, nlen - 3);
            if (neg && neg->type == INK_OPT_BOOL) {
                *(bool *)((char *)cfg + neg->offset) = false;
                continue;
            }
        }
        if (!o)
            return ink_err_set(err, 0, "unknown flag '%s' (see --help)", a);
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (o->type == INK_OPT_BOOL) {
            value = "true";
        } else {
            if (i + 1 >= argc)
                return ink_err_set(err, 0, "flag '%s' needs a value", a);
            value = argv[++i];
        }
        if (set_opt(o, cfg, value, err) < 0)
            return ink_err_wrap(err, "flag --%.*s", (int)nlen, name);
    }
    *index = i;
    return 0;
}

void ink_config_free(const ink_opt *opts, void *cfg)
{
    for (const ink_opt *o = opts; o->name; o++) {
        if (o->type == INK_OPT_STRING) {
            char **sp = (char **)((char *)cfg + o->offset);
            free(*sp);
            *sp = NULL;
        }
    }
}

void ink_config_print_reference(const ink_opt *opts, FILE *out)
{
    static const char *type_names[] = {"string", "integer", "boolean", "duration", "size"};
    for (const ink_opt *o = opts; o->name; o++) {
        fprintf(out, "  %-24s %-9s default: %s\n", o->name, type_names[o->type],
                o->def && *o->def ? o->def : "(empty)");
        fprintf(out, "  %-24s %s\n", "", o->help);
    }
}
