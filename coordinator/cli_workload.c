/* `ink-coordinator workload put|rm|ls`: how operators and the end-to-end
 * tests put workloads on nodes until the MCP front lands. It writes the
 * desired state straight into the database file, beside a running daemon
 * (SQLite WAL): the daemon's watch pump reads the file every 250 ms, so the
 * node's agent gets the change without any call to the daemon.
 *
 * Parsing and validation come first and never touch the database, so a
 * usage error (exit 2) leaves no trace; database failures exit 1. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator.h"
#include "egress.h"
#include "util.h"

#define PUT_USAGE                                                                                  \
    "usage: ink-coordinator workload put NODE ID --image REF [--port N] [--publish N]\n"           \
    "         [--env K=V]... [--secret-env K=V]... [--memory SIZE] [--cpu CPUS]\n"                 \
    "         [--pids N] [--app NAME] [--project NAME] [--min-replicas N]\n"                       \
    "         [--idle-timeout DURATION] [--egress POLICY] [--egress-allow TARGET[:PORTS]]...\n"    \
    "         [--args] [-- COMMAND [ARGS...]]\n"
#define RM_USAGE "usage: ink-coordinator workload rm NODE ID\n"
#define LS_USAGE "usage: ink-coordinator workload ls [NODE] [--json]\n"

/* Appends to a malloc'ed array of pointers. */
#define PUSH(arr, n, item)                                                                         \
    do {                                                                                           \
        __typeof__(arr) na_ = realloc((arr), ((n) + 1) * sizeof *na_);                             \
        if (!na_)                                                                                  \
            abort();                                                                               \
        na_[(n)++] = (item);                                                                       \
        (arr) = na_;                                                                               \
    } while (0)

/* ------------------------------------------------------------- validation */

/* Workload ids name the sandbox (runsc), its cgroup, namespace mount and
 * directories on the node: the same rule as node names. */
static bool valid_workload_id(const char *s)
{
    return ink_valid_name(s);
}

/* POSIX shell variable names, the ones every image's tooling expects. */
static bool valid_env_key(const char *s, size_t len)
{
    if (len == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < len; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_')
            return false;
    }
    return true;
}

/* Decimal digits only (no sign, no spaces) within [min, max]. */
static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!isdigit((unsigned char)s[0]))
        return -1;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return -1;
    }
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* "250" or "250m" are millicores, "0.5" or "2.0" are CPUs (at most three
 * decimals: a millicore is the unit). Exact arithmetic, no floats. */
static int parse_cpu(const char *s, uint64_t *millis)
{
    size_t len = strlen(s);
    const char *dot = strchr(s, '.');
    if (!dot) {
        char digits[24];
        if (len == 0 || len >= sizeof digits)
            return -1;
        snprintf(digits, sizeof digits, "%s", s);
        if (digits[len - 1] == 'm')
            digits[len - 1] = '\0';
        return parse_uint(digits, 0, UINT32_MAX, millis);
    }
    char whole[16];
    size_t wlen = (size_t)(dot - s), flen = strlen(dot + 1);
    if (wlen == 0 || wlen >= sizeof whole || flen == 0 || flen > 3)
        return -1;
    memcpy(whole, s, wlen);
    whole[wlen] = '\0';
    uint64_t w, f;
    if (parse_uint(whole, 0, UINT32_MAX / 1000, &w) < 0 || parse_uint(dot + 1, 0, 999, &f) < 0)
        return -1;
    for (size_t i = flen; i < 3; i++)
        f *= 10;
    *millis = w * 1000 + f;
    return 0;
}

/* --------------------------------------------------------------------- put */

typedef struct put_request {
    const char *node;
    Ink__V1__Assignment a;
    Ink__V1__Resources res; /* a.resources points here when a limit is given */
    bool to_args;           /* --args: what follows -- is args, not command */
} put_request;

static void put_request_free(put_request *p)
{
    Ink__V1__EnvVar **lists[] = {p->a.env, p->a.secret_env};
    size_t counts[] = {p->a.n_env, p->a.n_secret_env};
    for (size_t l = 0; l < 2; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            free(lists[l][i]->name);
            free(lists[l][i]);
        }
        free(lists[l]);
    }
    /* The other strings point into argv. */
    free(p->a.command);
    free(p->a.args);
    for (size_t i = 0; i < p->a.n_egress_allow; i++)
        free(p->a.egress_allow[i]); /* canonical forms, made here */
    free(p->a.egress_allow);
}

enum put_flag {
    F_IMAGE,
    F_PORT,
    F_PUBLISH,
    F_ENV,
    F_SECRET_ENV,
    F_MEMORY,
    F_CPU,
    F_PIDS,
    F_APP,
    F_PROJECT,
    F_MIN_REPLICAS,
    F_IDLE_TIMEOUT,
    F_EGRESS,
    F_EGRESS_ALLOW,
    F_ARGS,
    F_COUNT
};

static const struct {
    const char *name;
    bool repeats;
} put_flags[F_COUNT] = {
    [F_IMAGE] = {"image", false},
    [F_PORT] = {"port", false},
    [F_PUBLISH] = {"publish", false},
    [F_ENV] = {"env", true},
    [F_SECRET_ENV] = {"secret-env", true},
    [F_MEMORY] = {"memory", false},
    [F_CPU] = {"cpu", false},
    [F_PIDS] = {"pids", false},
    [F_APP] = {"app", false},
    [F_PROJECT] = {"project", false},
    [F_MIN_REPLICAS] = {"min-replicas", false},
    [F_IDLE_TIMEOUT] = {"idle-timeout", false},
    [F_EGRESS] = {"egress", false},
    [F_EGRESS_ALLOW] = {"egress-allow", true},
    [F_ARGS] = {"args", false},
};

/* Messages name the key only: a --secret-env value must never reach a
 * terminal or a CI log, and neither may an argument that lacks the '='
 * (it may be the secret itself). */
static int add_env(Ink__V1__EnvVar ***list, size_t *n, const char *flag, const char *kv, FILE *errf)
{
    const char *eq = strchr(kv, '=');
    size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
    if (!eq) {
        fprintf(errf, "ink-coordinator workload put: --%s expects KEY=VALUE\n", flag);
        return -1;
    }
    if (!valid_env_key(kv, klen)) {
        fprintf(errf,
                "ink-coordinator workload put: --%s: '%.*s' is not a variable name "
                "([A-Za-z_][A-Za-z0-9_]*)\n",
                flag, (int)klen, kv);
        return -1;
    }
    for (size_t i = 0; i < *n; i++) {
        if (strlen((*list)[i]->name) == klen && strncmp((*list)[i]->name, kv, klen) == 0) {
            fprintf(errf, "ink-coordinator workload put: --%s: %.*s given twice\n", flag, (int)klen,
                    kv);
            return -1;
        }
    }
    Ink__V1__EnvVar *ev = ink_xmalloc(sizeof *ev);
    ink__v1__env_var__init(ev);
    ev->name = ink_xasprintf("%.*s", (int)klen, kv);
    ev->value = (char *)eq + 1;
    PUSH(*list, *n, ev);
    return 0;
}

/* Applies one flag (and its value) to the request; -1 (message printed)
 * when the value is not valid. */
static int apply_flag(put_request *p, enum put_flag f, char *v, FILE *errf)
{
    const char *name = put_flags[f].name;
    uint64_t u;
    int64_t ms;
    switch (f) {
    case F_IMAGE:
        if (!*v || strpbrk(v, " \t\r\n")) {
            fprintf(errf, "ink-coordinator workload put: --image must be a non-empty image "
                          "reference without spaces\n");
            return -1;
        }
        p->a.image = v;
        return 0;
    case F_PORT:
    case F_PUBLISH:
        if (parse_uint(v, 1, 65535, &u) < 0) {
            fprintf(errf, "ink-coordinator workload put: --%s '%s' is not a port (1-65535)\n", name,
                    v);
            return -1;
        }
        if (f == F_PORT)
            p->a.port = (uint32_t)u;
        else
            p->a.published_port = (uint32_t)u;
        return 0;
    case F_ENV:
        return add_env(&p->a.env, &p->a.n_env, name, v, errf);
    case F_SECRET_ENV:
        return add_env(&p->a.secret_env, &p->a.n_secret_env, name, v, errf);
    case F_MEMORY:
        /* Bare numbers are bytes, as everywhere in the configuration; a
         * sandbox cannot start in less than a MiB, so smaller values are
         * surely a forgotten unit. */
        if (ink_parse_size(v, &u) < 0 || u < (1ULL << 20) || u > INT64_MAX) {
            fprintf(errf,
                    "ink-coordinator workload put: --memory '%s' is not a size of at least 1M "
                    "(e.g. 256M, 1G)\n",
                    v);
            return -1;
        }
        p->res.memory_bytes = u;
        p->a.resources = &p->res;
        return 0;
    case F_CPU:
        /* The kernel's smallest CFS quota is 1 ms per 100 ms period. */
        if (parse_cpu(v, &u) < 0 || u < 10 || u > UINT32_MAX) {
            fprintf(errf,
                    "ink-coordinator workload put: --cpu '%s' is not a CPU amount: millicores "
                    "(250, 250m; at least 10) or CPUs with a decimal point (0.5, 2.0)\n",
                    v);
            return -1;
        }
        p->res.cpu_millis = (uint32_t)u;
        p->a.resources = &p->res;
        return 0;
    case F_PIDS:
    case F_MIN_REPLICAS:
        if (parse_uint(v, f == F_PIDS ? 1 : 0, UINT32_MAX, &u) < 0) {
            fprintf(errf, "ink-coordinator workload put: --%s '%s' is not a number%s\n", name, v,
                    f == F_PIDS ? " of at least 1" : "");
            return -1;
        }
        if (f == F_PIDS) {
            p->res.pids = (uint32_t)u;
            p->a.resources = &p->res;
        } else {
            p->a.min_replicas = (uint32_t)u;
        }
        return 0;
    case F_IDLE_TIMEOUT:
        if (ink_parse_duration_ms(v, &ms) < 0 || ms % 1000 != 0 ||
            ms / 1000 > (int64_t)UINT32_MAX) {
            fprintf(errf,
                    "ink-coordinator workload put: --idle-timeout '%s' is not a duration in "
                    "whole seconds (e.g. 90s, 5m, 1h)\n",
                    v);
            return -1;
        }
        p->a.idle_timeout_s = (uint32_t)(ms / 1000);
        return 0;
    case F_APP:
    case F_PROJECT:
    case F_EGRESS:
        if (!ink_valid_name(v)) {
            fprintf(errf,
                    "ink-coordinator workload put: --%s '%s' is not a valid name ([a-z0-9-], "
                    "at most 63 characters, not starting with '-')\n",
                    name, v);
            return -1;
        }
        if (f == F_EGRESS && !ink_egress_valid_policy_name(v)) {
            fprintf(errf,
                    "ink-coordinator workload put: --egress '%s' is not a policy name "
                    "([a-z0-9-], at most %d characters, not starting with '-')\n",
                    v, INK_EGRESS_POLICY_NAME_MAX);
            return -1;
        }
        if (f == F_APP)
            p->a.app = v;
        else if (f == F_PROJECT)
            p->a.project = v;
        else
            p->a.egress = v;
        return 0;
    case F_EGRESS_ALLOW: {
        /* The agent's own parser: what is accepted here is enforced there. */
        ink_egress_allow entry;
        ink_err perr = {0};
        if (ink_egress_allow_parse(v, &entry, &perr) < 0) {
            fprintf(errf, "ink-coordinator workload put: --egress-allow: %s\n", perr.msg);
            return -1;
        }
        char text[INK_EGRESS_ALLOW_TEXT_MAX];
        ink_egress_allow_format(&entry, text, sizeof text);
        PUSH(p->a.egress_allow, p->a.n_egress_allow, ink_xstrdup(text));
        return 0;
    }
    case F_ARGS:
        p->to_args = true;
        return 0;
    case F_COUNT:
        break;
    }
    return -1;
}

/* Parses `put NODE ID ...` (argv[0] is "put"). 0, or -1 after printing why. */
static int parse_put(int argc, char **argv, put_request *p, FILE *errf)
{
    memset(p, 0, sizeof *p);
    ink__v1__assignment__init(&p->a);
    ink__v1__resources__init(&p->res);
    /* Always up unless --min-replicas 0 asks for scale to zero (the
     * message's own default, 0, would make every workload sleep). */
    p->a.min_replicas = 1;
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    bool seen[F_COUNT] = {false};
    bool dashdash = false;
    int i = 1;
    for (; i < argc; i++) {
        char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            dashdash = true;
            i++;
            break;
        }
        if (a[0] != '-') {
            if (npos == 2) {
                fprintf(errf, "ink-coordinator workload put: unexpected argument '%s'\n%s", a,
                        PUT_USAGE);
                return -1;
            }
            pos[npos++] = a;
            continue;
        }
        const char *name = a[1] == '-' ? a + 2 : a;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        int f = -1;
        for (int k = 0; a[1] == '-' && k < F_COUNT; k++) {
            if (strlen(put_flags[k].name) == nlen && strncmp(put_flags[k].name, name, nlen) == 0)
                f = k;
        }
        if (f < 0) {
            /* Up to the '=' only: the value could be anything. */
            size_t shown = eq ? (size_t)(eq - a) : strlen(a);
            fprintf(errf, "ink-coordinator workload put: unknown flag '%.*s'\n%s", (int)shown, a,
                    PUT_USAGE);
            return -1;
        }
        if (seen[f] && !put_flags[f].repeats) {
            fprintf(errf, "ink-coordinator workload put: --%s given twice\n", put_flags[f].name);
            return -1;
        }
        seen[f] = true;
        char *v = NULL;
        if (f == F_ARGS) {
            if (eq) {
                fprintf(errf, "ink-coordinator workload put: --args takes no value: put the "
                              "arguments after --\n");
                return -1;
            }
        } else if (eq) {
            v = (char *)eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            fprintf(errf, "ink-coordinator workload put: --%s needs a value\n", put_flags[f].name);
            return -1;
        }
        if (apply_flag(p, (enum put_flag)f, v, errf) < 0)
            return -1;
    }
    if (npos < 2) {
        fprintf(errf, "ink-coordinator workload put: NODE and ID are required\n%s", PUT_USAGE);
        return -1;
    }
    p->node = pos[0];
    p->a.workload_id = (char *)pos[1];
    if (!ink_valid_name(p->node)) {
        fprintf(errf,
                "ink-coordinator workload put: NODE '%s' is not a node name ([a-z0-9-], at most "
                "63 characters)\n",
                p->node);
        return -1;
    }
    if (!valid_workload_id(p->a.workload_id)) {
        fprintf(errf,
                "ink-coordinator workload put: ID '%s' is not a workload id "
                "([a-z0-9-], 1-63 characters)\n",
                p->a.workload_id);
        return -1;
    }
    if (!seen[F_IMAGE]) {
        fprintf(errf, "ink-coordinator workload put: --image is required\n%s", PUT_USAGE);
        return -1;
    }
    if (dashdash && i >= argc) {
        fprintf(errf, "ink-coordinator workload put: nothing after --\n");
        return -1;
    }
    if (p->to_args && !dashdash) {
        fprintf(errf, "ink-coordinator workload put: --args needs the arguments after --\n");
        return -1;
    }
    for (; i < argc; i++) {
        if (p->to_args)
            PUSH(p->a.args, p->a.n_args, argv[i]);
        else
            PUSH(p->a.command, p->a.n_command, argv[i]);
    }
    return 0;
}

static int open_store(const ink_coordinator_config *cfg, const char *sub, ink_store **s, FILE *errf)
{
    ink_err err = {0};
    if (ink_store_open(cfg->database, s, &err) < 0) {
        fprintf(errf, "ink-coordinator workload %s: %s\n", sub, err.msg);
        return -1;
    }
    return 0;
}

static int cmd_put(const ink_coordinator_config *cfg, int argc, char **argv, FILE *out, FILE *errf)
{
    put_request p;
    if (parse_put(argc, argv, &p, errf) < 0) {
        put_request_free(&p);
        return 2;
    }
    ink_store *s;
    if (open_store(cfg, "put", &s, errf) < 0) {
        put_request_free(&p);
        return 1;
    }
    ink_err err = {0};
    ink_node_row node;
    int rc = ink_store_get_node(s, p.node, &node, &err);
    if (rc == 1)
        fprintf(errf,
                "ink-coordinator workload put: warning: node '%s' has never registered; the "
                "workload starts when it does\n",
                p.node);
    uint64_t revision = 0;
    if (rc >= 0)
        rc = ink_store_set_assignment(s, p.node, &p.a, &revision, &err);
    ink_store_close(s);
    int status = 0;
    if (rc < 0) {
        fprintf(errf, "ink-coordinator workload put: %s\n", err.msg);
        status = 1;
    } else if (rc == 1) {
        fprintf(out, "workload %s on %s: generation %llu, revision %llu\n", p.a.workload_id, p.node,
                (unsigned long long)p.a.generation, (unsigned long long)revision);
    } else {
        fprintf(out, "workload %s on %s: unchanged (generation %llu, revision %llu)\n",
                p.a.workload_id, p.node, (unsigned long long)p.a.generation,
                (unsigned long long)revision);
    }
    put_request_free(&p);
    return status;
}

/* ---------------------------------------------------------------------- rm */

static int cmd_rm(const ink_coordinator_config *cfg, int argc, char **argv, FILE *out, FILE *errf)
{
    if (argc != 3 || argv[1][0] == '-' || argv[2][0] == '-') {
        fprintf(errf, RM_USAGE);
        return 2;
    }
    const char *node = argv[1], *id = argv[2];
    if (!ink_valid_name(node) || !valid_workload_id(id)) {
        fprintf(errf, "ink-coordinator workload rm: '%s' is not a %s\n",
                ink_valid_name(node) ? id : node,
                ink_valid_name(node) ? "workload id" : "node name");
        return 2;
    }
    ink_store *s;
    if (open_store(cfg, "rm", &s, errf) < 0)
        return 1;
    ink_err err = {0};
    int64_t rev = ink_store_delete_assignment(s, node, id, &err);
    ink_store_close(s);
    if (rev < 0) {
        fprintf(errf, "ink-coordinator workload rm: %s\n", err.msg);
        return 1;
    }
    /* Removing what is not there is done already: scripts can retry. */
    if (rev == 0)
        fprintf(out, "workload %s on %s: not assigned, nothing to remove\n", id, node);
    else
        fprintf(out, "workload %s on %s: removed, revision %lld\n", id, node, (long long)rev);
    return 0;
}

/* ---------------------------------------------------------------------- ls */

static const char *state_name(const Ink__V1__WorkloadStatus *w)
{
    if (!w)
        return "unreported"; /* the node has not reported it (yet) */
    const char *name = ink_workload_state_name(w->state);
    return name ? name : "unknown";
}

static void short_age(int64_t ms, char *out, size_t outlen)
{
    if (ms < 0)
        ms = 0;
    if (ms < 120000)
        snprintf(out, outlen, "%llds", (long long)(ms / 1000));
    else if (ms < 7200000)
        snprintf(out, outlen, "%lldm", (long long)(ms / 60000));
    else if (ms < 172800000)
        snprintf(out, outlen, "%lldh", (long long)(ms / 3600000));
    else
        snprintf(out, outlen, "%lldd", (long long)(ms / 86400000));
}

/* Text the agent reported may hold newlines; one line per workload. */
static void put_clean(const char *s, FILE *out)
{
    for (; *s; s++)
        fputc(iscntrl((unsigned char)*s) ? ' ' : *s, out);
}

/* jansson refuses invalid UTF-8; what an agent reported is shown anyway,
 * with the offending bytes replaced. */
static json_t *json_str(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    cleanup_free char *copy = ink_xstrdup(s);
    for (char *p = copy; *p; p++) {
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    }
    return json_string(copy);
}

static json_t *row_json(const ink_workload_row *r)
{
    const Ink__V1__WorkloadStatus *w = r->status;
    json_t *o = json_object();
    json_object_set_new(o, "node", json_str(r->node_id));
    json_object_set_new(o, "workload_id", json_str(r->spec->workload_id));
    json_object_set_new(o, "generation", json_integer((json_int_t)r->spec->generation));
    json_object_set_new(o, "image", json_str(r->spec->image));
    json_object_set_new(o, "state", json_string(state_name(w)));
    json_object_set_new(o, "reason", json_str(w ? w->reason : ""));
    json_object_set_new(o, "restarts", json_integer(w ? w->restarts : 0));
    json_object_set_new(o, "address", json_str(w ? w->address : ""));
    json_object_set_new(o, "published_port", json_integer(w ? w->published_port : 0));
    json_object_set_new(o, "reported_generation", json_integer(w ? (json_int_t)w->generation : 0));
    json_object_set_new(o, "image_digest", json_str(w ? w->image_digest : ""));
    json_object_set_new(o, "since_unix_ms", json_integer(w ? w->since_unix_ms : 0));
    return o;
}

static int cmd_ls(const ink_coordinator_config *cfg, int argc, char **argv, FILE *out, FILE *errf)
{
    bool json = false;
    const char *node = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (argv[i][0] != '-' && !node) {
            node = argv[i];
        } else {
            fprintf(errf, LS_USAGE);
            return 2;
        }
    }
    if (node && !ink_valid_name(node)) {
        fprintf(errf, "ink-coordinator workload ls: '%s' is not a node name\n", node);
        return 2;
    }
    ink_store *s;
    if (open_store(cfg, "ls", &s, errf) < 0)
        return 1;
    ink_err err = {0};
    ink_workload_row *rows;
    size_t n;
    int rc = ink_store_list_workloads(s, node, &rows, &n, &err);
    ink_store_close(s);
    if (rc < 0) {
        fprintf(errf, "ink-coordinator workload ls: %s\n", err.msg);
        return 1;
    }
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, row_json(&rows[i]));
        char *text = json_dumps(arr, JSON_INDENT(2));
        fprintf(out, "%s\n", text);
        free(text);
        json_decref(arr);
    } else {
        int64_t now = ink_now_ms();
        fprintf(out, "%-16s %-20s %4s %-32s %-11s %8s %-15s %9s %8s %5s %s\n", "NODE", "WORKLOAD",
                "GEN", "IMAGE", "STATE", "RESTARTS", "ADDRESS", "PUBLISHED", "REPORTED", "AGE",
                "REASON");
        for (size_t i = 0; i < n; i++) {
            const ink_workload_row *r = &rows[i];
            const Ink__V1__WorkloadStatus *w = r->status;
            char restarts[16] = "-", published[16] = "-", reported[24] = "-", age[16] = "-";
            if (w) {
                snprintf(restarts, sizeof restarts, "%u", w->restarts);
                if (w->published_port)
                    snprintf(published, sizeof published, "%u", w->published_port);
                snprintf(reported, sizeof reported, "%llu", (unsigned long long)w->generation);
                if (w->since_unix_ms > 0)
                    short_age(now - w->since_unix_ms, age, sizeof age);
            }
            fprintf(out, "%-16s %-20s %4llu %-32s %-11s %8s %-15s %9s %8s %5s", r->node_id,
                    r->spec->workload_id, (unsigned long long)r->spec->generation, r->spec->image,
                    state_name(w), restarts, w && *w->address ? w->address : "-", published,
                    reported, age);
            if (w && *w->reason) {
                fputc(' ', out);
                put_clean(w->reason, out);
            }
            fputc('\n', out);
        }
    }
    ink_store_free_workloads(rows, n);
    return 0;
}

int ink_cmd_workload(const ink_coordinator_config *cfg, int argc, char **argv, FILE *out,
                     FILE *errf)
{
    const char *sub = argc > 0 ? argv[0] : "";
    if (strcmp(sub, "put") == 0)
        return cmd_put(cfg, argc, argv, out, errf);
    if (strcmp(sub, "rm") == 0)
        return cmd_rm(cfg, argc, argv, out, errf);
    if (strcmp(sub, "ls") == 0)
        return cmd_ls(cfg, argc, argv, out, errf);
    fprintf(errf, "%s" RM_USAGE LS_USAGE, PUT_USAGE);
    return 2;
}
