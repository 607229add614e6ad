/* The policy file language (policy.h): a line-oriented parser that keeps
 * going after an error so one run reports everything wrong with a file,
 * and a linter for rules that can never match. */
#include "policy.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define MAX_TOKENS 2200 /* a line of INK_POLICY_LINE_MAX holds at most ~2048 */

typedef enum { TOK_WORD, TOK_COMMA, TOK_EQUALS } tok_kind;

typedef struct token {
    tok_kind kind;
    const char *text; /* NUL-terminated, in the line buffer or a constant */
} token;

typedef struct define {
    char name[INK_POLICY_DEFINE_MAX + 1];
    int line;
    bool used;
    ink_pol_cidr *addrs;
    size_t naddrs;
} define;

typedef struct parser {
    const char *path;
    int line;
    ink_pol_diags *diags;
    ink_err *err;
    size_t nerrors;
    define *defines;
    size_t ndefines;
    ink_policy *pol;
    token *toks; /* one line's */
} parser;

/* ------------------------------------------------------------ messages */

/* A token as it may appear in a message: printable ASCII only (a policy
 * file is not trusted to write terminal escapes into logs), bounded. */
static const char *shown(const char *s, char buf[72])
{
    size_t n = 0;
    for (; s[n] && n < 60; n++)
        buf[n] = (s[n] >= 0x20 && s[n] < 0x7f) ? s[n] : '?';
    if (s[n]) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

static void vreport(parser *p, bool error, int line, const char *fmt, va_list ap)
{
    char text[INK_ERR_MSG_MAX];
    vsnprintf(text, sizeof text, fmt, ap);
    char msg[INK_ERR_MSG_MAX];
    if (line > 0)
        snprintf(msg, sizeof msg, "%s:%d: %s%s", p->path, line, error ? "" : "warning: ", text);
    else
        snprintf(msg, sizeof msg, "%s: %s%s", p->path, error ? "" : "warning: ", text);
    if (error && p->nerrors++ == 0 && p->err)
        ink_err_set(p->err, 0, "%s", msg);
    ink_pol_diags *d = p->diags;
    if (!d)
        return;
    if (error)
        d->nerrors++;
    else
        d->nwarnings++;
    if (d->n < INK_POLICY_DIAGS_MAX) {
        d->items[d->n].error = error;
        snprintf(d->items[d->n].msg, sizeof d->items[d->n].msg, "%s", msg);
        d->n++;
    }
}

static void report(parser *p, bool error, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void report(parser *p, bool error, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(p, error, line, fmt, ap);
    va_end(ap);
}

static void error_at(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void error_at(parser *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(p, true, p->line, fmt, ap);
    va_end(ap);
}

static void warn_at(parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warn_at(parser *p, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(p, false, line, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ lexing */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Splits a line (modified in place) into words, ',' and '='. */
static int tokenize(char *s, token *toks, size_t max)
{
    size_t n = 0;
    while (*s) {
        if (is_space(*s)) {
            s++;
            continue;
        }
        if (n == max)
            return -1;
        if (*s == ',' || *s == '=') {
            toks[n++] = (token){*s == ',' ? TOK_COMMA : TOK_EQUALS, *s == ',' ? "," : "="};
            s++;
            continue;
        }
        toks[n++] = (token){TOK_WORD, s};
        while (*s && !is_space(*s) && *s != ',' && *s != '=')
            s++;
        if (!*s)
            break;
        /* End the word; a separator that ended it is a token of its own. */
        char sep = *s;
        *s++ = '\0';
        if (sep == ',' || sep == '=') {
            if (n == max)
                return -1;
            toks[n++] = (token){sep == ',' ? TOK_COMMA : TOK_EQUALS, sep == ',' ? "," : "="};
        }
    }
    return (int)n;
}

/* ------------------------------------------------------------ values */

static bool valid_define_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > INK_POLICY_DEFINE_MAX)
        return false;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool valid_category(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > INK_POLICY_CATEGORY_MAX || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

static int addr_len(int family)
{
    return family == AF_INET ? 4 : 16;
}

/* Whether bit i (from the most significant) of addr is set. */
static bool bit(const uint8_t *addr, int i)
{
    return (addr[i / 8] >> (7 - i % 8)) & 1;
}

static bool host_bits_zero(const ink_pol_cidr *c)
{
    for (int i = c->prefix; i < addr_len(c->family) * 8; i++)
        if (bit(c->addr, i))
            return false;
    return true;
}

static void format_cidr(const ink_pol_cidr *c, char *out, size_t outlen)
{
    char a[INET6_ADDRSTRLEN];
    inet_ntop(c->family, c->addr, a, sizeof a);
    if (c->prefix == addr_len(c->family) * 8)
        snprintf(out, outlen, "%s", a);
    else
        snprintf(out, outlen, "%s/%d", a, c->prefix);
}

/* An address or CIDR. */
static bool parse_cidr(parser *p, const char *word, ink_pol_cidr *out)
{
    char buf[72];
    char text[INET6_ADDRSTRLEN + 8];
    size_t n = strlen(word);
    if (n >= sizeof text) {
        error_at(p, "'%s' is not an address or CIDR", shown(word, buf));
        return false;
    }
    memcpy(text, word, n + 1);
    char *slash = strchr(text, '/');
    if (slash)
        *slash = '\0';
    *out = (ink_pol_cidr){0};
    if (inet_pton(AF_INET, text, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, text, out->addr) == 1)
        out->family = AF_INET6;
    else {
        error_at(p, "'%s' is not an IPv4 or IPv6 address or CIDR", shown(word, buf));
        return false;
    }
    int max = addr_len(out->family) * 8;
    out->prefix = max;
    if (slash) {
        const char *d = slash + 1;
        int v = 0;
        size_t i = 0;
        for (; d[i] >= '0' && d[i] <= '9' && i < 4; i++)
            v = v * 10 + (d[i] - '0');
        if (i == 0 || d[i] || v > max) {
            error_at(p, "'%s': the prefix length must be 0-%d", shown(word, buf), max);
            return false;
        }
        out->prefix = v;
    }
    if (!host_bits_zero(out)) {
        ink_pol_cidr net = *out;
        for (int i = net.prefix; i < max; i++)
            net.addr[i / 8] &= (uint8_t) ~(1u << (7 - i % 8));
        char want[INET6_ADDRSTRLEN + 8];
        format_cidr(&net, want, sizeof want);
        error_at(p, "'%s' has host bits set: did you mean %s?", shown(word, buf), want);
        return false;
    }
    return true;
}

static int cidr_cmp(const void *a, const void *b)
{
    const ink_pol_cidr *x = a, *y = b;
    if (x->family != y->family)
        return x->family == AF_INET ? -1 : 1;
    int c = memcmp(x->addr, y->addr, (size_t)addr_len(x->family));
    if (c)
        return c;
    return x->prefix - y->prefix;
}

/* Whether inner lies within outer. */
static bool cidr_inside(const ink_pol_cidr *inner, const ink_pol_cidr *outer)
{
    if (inner->family != outer->family || inner->prefix < outer->prefix)
        return false;
    for (int i = 0; i < outer->prefix; i++)
        if (bit(inner->addr, i) != bit(outer->addr, i))
            return false;
    return true;
}

/* Sorts and drops entries inside others: nft refuses overlapping elements
 * in one set, and a security reviewer should hear about the redundancy. */
static void normalize_cidrs(parser *p, ink_pol_cidr *v, size_t *n)
{
    if (*n == 0)
        return;
    if (*n > 1)
        qsort(v, *n, sizeof *v, cidr_cmp);
    size_t kept = 1;
    for (size_t i = 1; i < *n; i++) {
        if (cidr_inside(&v[i], &v[kept - 1])) {
            char a[INET6_ADDRSTRLEN + 8], b[INET6_ADDRSTRLEN + 8];
            format_cidr(&v[i], a, sizeof a);
            format_cidr(&v[kept - 1], b, sizeof b);
            if (cidr_cmp(&v[i], &v[kept - 1]) == 0)
                warn_at(p, p->line, "%s is listed twice", a);
            else
                warn_at(p, p->line, "%s is inside %s: it adds nothing", a, b);
            continue;
        }
        v[kept++] = v[i];
    }
    *n = kept;
}

static bool parse_port(const char *s, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static int ports_cmp(const void *a, const void *b)
{
    const ink_pol_ports *x = a, *y = b;
    return (int)x->min - (int)y->min;
}

static void normalize_ports(ink_pol_ports *v, size_t *n)
{
    if (*n == 0)
        return;
    if (*n > 1)
        qsort(v, *n, sizeof *v, ports_cmp);
    size_t kept = 1;
    for (size_t i = 1; i < *n; i++) {
        ink_pol_ports *last = &v[kept - 1];
        if ((unsigned)v[i].min <= (unsigned)last->max + 1) {
            if (v[i].max > last->max)
                last->max = v[i].max;
            continue;
        }
        v[kept++] = v[i];
    }
    *n = kept;
}

/* ------------------------------------------------------------ lists */

static define *find_define(parser *p, const char *name)
{
    for (size_t i = 0; i < p->ndefines; i++)
        if (strcmp(p->defines[i].name, name) == 0)
            return &p->defines[i];
    return NULL;
}

static bool push_cidr(parser *p, ink_pol_cidr **v, size_t *n, const ink_pol_cidr *c)
{
    if (*n >= INK_POLICY_ELEMS_MAX) {
        error_at(p, "more than %d addresses in one list", INK_POLICY_ELEMS_MAX);
        return false;
    }
    *v = ink_xrealloc(*v, (*n + 1) * sizeof **v);
    (*v)[(*n)++] = *c;
    return true;
}

/* ELEM[, ELEM...] from toks[*i]; $NAME expands to the define's list. */
static bool parse_elems(parser *p, token *toks, int ntoks, int *i, ink_pol_cidr **out, size_t *n)
{
    char buf[72];
    for (;;) {
        if (*i >= ntoks || toks[*i].kind != TOK_WORD) {
            error_at(p, "expected an address, a CIDR or $NAME%s%s%s", *i < ntoks ? ", found '" : "",
                     *i < ntoks ? toks[*i].text : "", *i < ntoks ? "'" : "");
            return false;
        }
        const char *w = toks[*i].text;
        if (w[0] == '$') {
            define *d = find_define(p, w + 1);
            if (!d) {
                error_at(p, "'%s' is not defined (define it above: define %s = ...)", shown(w, buf),
                         valid_define_name(w + 1) ? w + 1 : "NAME");
                return false;
            }
            d->used = true;
            for (size_t k = 0; k < d->naddrs; k++)
                if (!push_cidr(p, out, n, &d->addrs[k]))
                    return false;
        } else {
            ink_pol_cidr c;
            if (!parse_cidr(p, w, &c) || !push_cidr(p, out, n, &c))
                return false;
        }
        (*i)++;
        if (*i < ntoks && toks[*i].kind == TOK_COMMA) {
            (*i)++;
            continue;
        }
        return true;
    }
}

static bool parse_port_list(parser *p, token *toks, int ntoks, int *i, ink_pol_rule *r)
{
    char buf[72];
    for (;;) {
        if (*i >= ntoks || toks[*i].kind != TOK_WORD) {
            error_at(p, "expected a port (1-65535) or a range (8000-8099) after '%s'",
                     toks[*i - 1].text);
            return false;
        }
        const char *w = toks[*i].text;
        const char *dash = strchr(w, '-');
        size_t len = strlen(w);
        ink_pol_ports pr;
        bool ok = dash ? parse_port(w, (size_t)(dash - w), &pr.min) &&
                             parse_port(dash + 1, len - (size_t)(dash - w) - 1, &pr.max)
                       : parse_port(w, len, &pr.min);
        if (!dash)
            pr.max = pr.min;
        if (!ok) {
            error_at(p, "'%s' is not a port (1-65535) or a range of ports (8000-8099)",
                     shown(w, buf));
            return false;
        }
        if (pr.min > pr.max) {
            error_at(p, "the port range '%s' is backwards", shown(w, buf));
            return false;
        }
        if (r->nports >= INK_POLICY_ELEMS_MAX) {
            error_at(p, "more than %d ports in one rule", INK_POLICY_ELEMS_MAX);
            return false;
        }
        r->ports = ink_xrealloc(r->ports, (r->nports + 1) * sizeof *r->ports);
        r->ports[r->nports++] = pr;
        (*i)++;
        if (*i < ntoks && toks[*i].kind == TOK_COMMA) {
            (*i)++;
            continue;
        }
        return true;
    }
}

/* ------------------------------------------------------------ lines */

static void parse_define(parser *p, token *toks, int ntoks)
{
    char buf[72];
    if (ntoks < 2 || toks[1].kind != TOK_WORD) {
        error_at(p, "define needs a name: define NAME = ADDRESS[, ADDRESS...]");
        return;
    }
    const char *name = toks[1].text;
    if (name[0] == '$')
        name++;
    if (!valid_define_name(name)) {
        error_at(p, "'%s' is not a name for a define ([A-Za-z_][A-Za-z0-9_-], up to %d)",
                 shown(toks[1].text, buf), INK_POLICY_DEFINE_MAX);
        return;
    }
    define *prev = find_define(p, name);
    if (prev) {
        error_at(p, "'%s' is already defined (line %d)", name, prev->line);
        return;
    }
    if (ntoks < 3 || toks[2].kind != TOK_EQUALS) {
        error_at(p, "expected '=' after 'define %s'", name);
        return;
    }
    ink_pol_cidr *addrs = NULL;
    size_t n = 0;
    int i = 3;
    if (!parse_elems(p, toks, ntoks, &i, &addrs, &n)) {
        free(addrs);
        return;
    }
    if (i < ntoks) {
        error_at(p, "unexpected '%s' after the list of define %s", shown(toks[i].text, buf), name);
        free(addrs);
        return;
    }
    normalize_cidrs(p, addrs, &n);
    p->defines = ink_xrealloc(p->defines, (p->ndefines + 1) * sizeof *p->defines);
    define *d = &p->defines[p->ndefines++];
    *d = (define){.line = p->line, .addrs = addrs, .naddrs = n};
    snprintf(d->name, sizeof d->name, "%s", name);
}

/* Whether every packet r2 matches is matched by r1 (first one wins, so r2
 * is dead). Conservative: false when it cannot tell. */
static bool covers(const ink_pol_rule *r1, const ink_pol_rule *r2)
{
    /* Destinations. project is a part of tenants (every workload address). */
    bool dest = false;
    if (r1->target == INK_POL_ANY)
        dest = true;
    else if (r1->target == r2->target && r1->target != INK_POL_ADDRS)
        dest = true;
    else if (r1->target == INK_POL_TENANTS && r2->target == INK_POL_PROJECT)
        dest = true;
    else if (r1->target == INK_POL_ADDRS && r2->target == INK_POL_ADDRS) {
        dest = true;
        for (size_t i = 0; i < r2->naddrs && dest; i++) {
            bool in = false;
            for (size_t k = 0; k < r1->naddrs && !in; k++)
                in = cidr_inside(&r2->addrs[i], &r1->addrs[k]);
            dest = in;
        }
    }
    if (!dest)
        return false;
    /* Protocols: 0 = all, else tcp/udp, tcp_udp = both. allowlist rules
     * match only tcp and udp. */
    bool r1_all = r1->proto == 0 && !r1->tcp_udp && r1->target != INK_POL_ALLOWLIST;
    if (!r1_all) {
        bool r2_all = r2->proto == 0 && !r2->tcp_udp && r2->target != INK_POL_ALLOWLIST;
        if (r2_all)
            return false;
        bool r1_both = r1->proto == 0;
        bool r2_both = r2->proto == 0;
        if (!r1_both && (r2_both || r2->proto != r1->proto))
            return false;
    }
    if (r1->nports == 0)
        return true;
    if (r2->nports == 0)
        return false;
    for (size_t i = 0; i < r2->nports; i++) {
        bool in = false;
        for (size_t k = 0; k < r1->nports && !in; k++)
            in = r2->ports[i].min >= r1->ports[k].min && r2->ports[i].max <= r1->ports[k].max;
        if (!in)
            return false;
    }
    return true;
}

static void parse_rule(parser *p, token *toks, int ntoks)
{
    char buf[72];
    ink_pol_rule r = {.line = p->line};
    r.verdict = strcmp(toks[0].text, "allow") == 0 ? INK_POL_ALLOW : INK_POL_DENY;
    int i = 1;
    if (i >= ntoks) {
        error_at(p, "%s what? expected any, project, tenants, allowlist, addresses or $NAME",
                 toks[0].text);
        return;
    }
    const char *t = toks[i].kind == TOK_WORD ? toks[i].text : "";
    if (strcmp(t, "any") == 0)
        r.target = INK_POL_ANY, i++;
    else if (strcmp(t, "project") == 0)
        r.target = INK_POL_PROJECT, i++;
    else if (strcmp(t, "tenants") == 0)
        r.target = INK_POL_TENANTS, i++;
    else if (strcmp(t, "allowlist") == 0)
        r.target = INK_POL_ALLOWLIST, i++;
    else {
        r.target = INK_POL_ADDRS;
        if (!parse_elems(p, toks, ntoks, &i, &r.addrs, &r.naddrs))
            goto bad;
        normalize_cidrs(p, r.addrs, &r.naddrs);
    }
    if (i < ntoks && (strcmp(toks[i].text, "tcp") == 0 || strcmp(toks[i].text, "udp") == 0)) {
        r.proto = strcmp(toks[i].text, "tcp") == 0 ? IPPROTO_TCP : IPPROTO_UDP;
        i++;
    }
    if (i < ntoks && strcmp(toks[i].text, "port") == 0) {
        i++;
        if (!parse_port_list(p, toks, ntoks, &i, &r))
            goto bad;
        normalize_ports(r.ports, &r.nports);
        if (r.proto == 0)
            r.tcp_udp = true;
    }
    if (i < ntoks && strcmp(toks[i].text, "as") == 0) {
        i++;
        if (r.verdict == INK_POL_ALLOW) {
            error_at(p, "'as' names the counter of a deny rule; allowed packets are not counted");
            goto bad;
        }
        if (i >= ntoks || !valid_category(toks[i].text)) {
            error_at(p, "'as' needs a category name ([a-z0-9-], up to %d characters)%s%s%s",
                     INK_POLICY_CATEGORY_MAX, i < ntoks ? ", not '" : "",
                     i < ntoks ? shown(toks[i].text, buf) : "", i < ntoks ? "'" : "");
            goto bad;
        }
        snprintf(r.category, sizeof r.category, "%s", toks[i].text);
        i++;
    }
    if (i < ntoks) {
        const char *w = toks[i].text;
        if (strcmp(w, "tcp") == 0 || strcmp(w, "udp") == 0 || strcmp(w, "port") == 0 ||
            strcmp(w, "as") == 0)
            error_at(p,
                     "'%s' is out of place: the order is VERDICT TARGET [tcp|udp] "
                     "[port PORTS] [as CATEGORY]",
                     w);
        else if (toks[i].kind == TOK_WORD && r.target != INK_POL_ADDRS && i == 2)
            error_at(p, "unexpected '%s' after '%s' (a list of addresses takes commas)",
                     shown(w, buf), toks[1].text);
        else
            error_at(p, "unexpected '%s': expected tcp, udp, port or as", shown(w, buf));
        goto bad;
    }
    if (r.target == INK_POL_PROJECT && r.verdict == INK_POL_DENY) {
        error_at(p, "'project' can only be allowed: other projects' workloads are 'tenants' "
                    "(deny tenants)");
        goto bad;
    }
    if (r.verdict == INK_POL_DENY && !r.category[0])
        snprintf(r.category, sizeof r.category, "%s", INK_POLICY_DEFAULT_CATEGORY);
    if (r.target == INK_POL_TENANTS && r.verdict == INK_POL_ALLOW)
        warn_at(p, p->line,
                "allow tenants lets workloads reach other projects' workloads on "
                "this node");

    ink_policy *pol = p->pol;
    if (pol->nrules >= INK_POLICY_RULES_MAX) {
        error_at(p, "more than %d rules", INK_POLICY_RULES_MAX);
        goto bad;
    }
    for (size_t k = 0; k < pol->nrules; k++) {
        if (covers(&pol->rules[k], &r)) {
            if (pol->rules[k].verdict == r.verdict)
                warn_at(p, p->line, "never decides anything: line %d %s the same packets first",
                        pol->rules[k].line, r.verdict == INK_POL_ALLOW ? "allows" : "denies");
            else
                warn_at(p, p->line, "never matches: line %d %s every packet it would %s",
                        pol->rules[k].line,
                        pol->rules[k].verdict == INK_POL_ALLOW ? "allows" : "denies",
                        r.verdict == INK_POL_ALLOW ? "allow" : "deny");
            break;
        }
    }
    pol->rules = ink_xrealloc(pol->rules, (pol->nrules + 1) * sizeof *pol->rules);
    pol->rules[pol->nrules++] = r;
    return;
bad:
    free(r.addrs);
    free(r.ports);
}

const char *ink_pol_resolve_name(ink_pol_resolve r)
{
    switch (r) {
    case INK_POL_RESOLVE_INTERNAL:
        return "internal";
    case INK_POL_RESOLVE_ALLOWLIST:
        return "allowlist";
    case INK_POL_RESOLVE_ANY:
        break;
    }
    return "any";
}

static void parse_resolve(parser *p, token *toks, int ntoks)
{
    char buf[72];
    static const ink_pol_resolve modes[] = {INK_POL_RESOLVE_ANY, INK_POL_RESOLVE_INTERNAL,
                                            INK_POL_RESOLVE_ALLOWLIST};
    if (p->pol->resolve_line) {
        error_at(p, "resolve is already set on line %d", p->pol->resolve_line);
        return;
    }
    if (ntoks != 2 || toks[1].kind != TOK_WORD) {
        error_at(p, "resolve takes one word: resolve any | internal | allowlist");
        return;
    }
    for (size_t i = 0; i < INK_ARRAY_LEN(modes); i++) {
        if (strcmp(toks[1].text, ink_pol_resolve_name(modes[i])) == 0) {
            p->pol->resolve = modes[i];
            p->pol->resolve_line = p->line;
            return;
        }
    }
    error_at(p, "'%s' is not a resolve mode: any, internal or allowlist", shown(toks[1].text, buf));
}

static void parse_line(parser *p, char *line)
{
    char buf[72];
    char *hash = strchr(line, '#');
    if (hash)
        *hash = '\0';
    token *toks = p->toks;
    int n = tokenize(line, toks, MAX_TOKENS);
    if (n < 0) {
        error_at(p, "too many words on one line");
        return;
    }
    if (n == 0)
        return;
    const char *kw = toks[0].kind == TOK_WORD ? toks[0].text : "";
    if (strcmp(kw, "define") == 0)
        parse_define(p, toks, n);
    else if (strcmp(kw, "resolve") == 0)
        parse_resolve(p, toks, n);
    else if (strcmp(kw, "allow") == 0 || strcmp(kw, "deny") == 0)
        parse_rule(p, toks, n);
    else if (strcmp(kw, "accept") == 0 || strcmp(kw, "drop") == 0 || strcmp(kw, "reject") == 0)
        error_at(p, "'%s' is not a verdict here: use allow or deny", kw);
    else
        error_at(p, "unknown keyword '%s': lines start with define, resolve, allow or deny",
                 shown(toks[0].text, buf));
}

/* ------------------------------------------------------------ files */

void ink_policy_free(ink_policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nrules; i++) {
        free(p->rules[i].addrs);
        free(p->rules[i].ports);
    }
    free(p->rules);
    free(p->path);
    free(p);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int ink_policy_parse(const char *path, const char *name, const char *text, size_t len,
                     ink_policy **out, ink_pol_diags *diags, ink_err *err)
{
    *out = NULL;
    parser p = {.path = path, .diags = diags, .err = err};
    if (!ink_egress_valid_policy_name(name)) {
        char buf[72];
        report(&p, true, 0,
               "'%s' is not a policy name ([a-z0-9-], 1-32 characters, from the file name "
               "NAME.policy): rename the file",
               shown(name, buf));
        return -1;
    }
    ink_policy *pol = ink_xcalloc(1, sizeof *pol);
    snprintf(pol->name, sizeof pol->name, "%s", name);
    snprintf(pol->file, sizeof pol->file, "%s%s", name, INK_POLICY_SUFFIX);
    pol->path = ink_xstrdup(path);
    p.pol = pol;
    if (len > INK_POLICY_FILE_MAX) {
        report(&p, true, 0, "larger than %d KiB: not a policy file?", INK_POLICY_FILE_MAX / 1024);
        ink_policy_free(pol);
        return -1;
    }
    char *line = ink_xmalloc(INK_POLICY_LINE_MAX + 1);
    p.toks = ink_xcalloc(MAX_TOKENS, sizeof *p.toks);
    size_t pos = 0;
    while (pos < len) {
        p.line++;
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        size_t n = end - pos;
        if (memchr(text + pos, '\0', n)) {
            error_at(&p, "the line holds a NUL byte: not a text file?");
        } else if (n > INK_POLICY_LINE_MAX) {
            error_at(&p, "line longer than %d characters", INK_POLICY_LINE_MAX);
        } else {
            memcpy(line, text + pos, n);
            line[n] = '\0';
            parse_line(&p, line);
        }
        pos = end + 1;
    }
    free(line);
    free(p.toks);
    for (size_t i = 0; i < p.ndefines; i++) {
        if (!p.defines[i].used)
            warn_at(&p, p.defines[i].line, "%s is defined but never used", p.defines[i].name);
        free(p.defines[i].addrs);
    }
    free(p.defines);
    if (p.nerrors == 0 && pol->nrules == 0)
        warn_at(&p, 0, "no rules: every packet is denied (as unmatched)");
    if (pol->resolve == INK_POL_RESOLVE_ALLOWLIST) {
        bool allows = false;
        for (size_t i = 0; i < pol->nrules; i++)
            allows |=
                pol->rules[i].target == INK_POL_ALLOWLIST && pol->rules[i].verdict == INK_POL_ALLOW;
        if (!allows)
            warn_at(&p, pol->resolve_line,
                    "resolve allowlist, but no rule allows the allowlist: its names resolve to "
                    "addresses the workload may not reach");
    }
    if (p.nerrors > 0) {
        ink_policy_free(pol);
        return -1;
    }
    *out = pol;
    return 0;
}

/* The policy name of a file: its base name without ".policy". */
static void name_of(const char *path, char *out, size_t outlen)
{
    const char *b = base_name(path);
    size_t n = strlen(b), sl = strlen(INK_POLICY_SUFFIX);
    if (n > sl && strcmp(b + n - sl, INK_POLICY_SUFFIX) == 0)
        n -= sl;
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, b, n);
    out[n] = '\0';
}

/* A message about a whole file (unreadable, refused), in diags too. */
static void file_error(ink_pol_diags *diags, const ink_err *e)
{
    if (!diags)
        return;
    diags->nerrors++;
    if (diags->n < INK_POLICY_DIAGS_MAX) {
        diags->items[diags->n].error = true;
        snprintf(diags->items[diags->n].msg, sizeof diags->items[0].msg, "%s", e->msg);
        diags->n++;
    }
}

static int load_fd(int fd, const char *path, ink_policy **out, ink_pol_diags *diags, ink_err *err)
{
    char name[128];
    name_of(path, name, sizeof name);
    cleanup_free char *text = NULL;
    size_t len = 0;
    if (ink_read_fd(fd, path, INK_POLICY_FILE_MAX + 1, &text, &len, err) < 0) {
        file_error(diags, err);
        return -1;
    }
    return ink_policy_parse(path, name, text, len, out, diags, err);
}

int ink_policy_load_file(const char *path, ink_policy **out, ink_pol_diags *diags, ink_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ink_err_set(err, errno, "%s", path);
        file_error(diags, err);
        return -1;
    }
    int rc = load_fd(fd, path, out, diags, err);
    close(fd);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_policy(const void *a, const void *b)
{
    const ink_policy *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static void dir_error(ink_pol_diags *diags, ink_err *err, bool *first, const ink_err *e)
{
    if (*first) {
        *err = *e;
        *first = false;
    }
    file_error(diags, e);
}

/* Someone other than root (or the agent's user) able to change what is
 * enforced as root is a way around the policy. */
static int check_owner(const char *path, const struct stat *st, ink_err *err)
{
    if (st->st_uid != 0 && st->st_uid != geteuid())
        return ink_err_set(err, 0, "%s is owned by uid %u, not root: refused", path,
                           (unsigned)st->st_uid);
    if (st->st_mode & 022)
        return ink_err_set(err, 0,
                           "%s is writable by group or others (mode %03o): refused; chmod go-w",
                           path, (unsigned)(st->st_mode & 0777));
    return 0;
}

int ink_policy_load_dir(const char *dir, bool strict, ink_policy_set *out, bool *missing,
                        ink_pol_diags *diags, ink_err *err)
{
    *out = (ink_policy_set){0};
    if (missing)
        *missing = false;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        if (errno == ENOENT && missing) {
            *missing = true;
            return 0;
        }
        return ink_err_set(err, errno, "policy directory %s", dir);
    }
    struct stat st;
    if (strict && (fstat(dfd, &st) < 0 || check_owner(dir, &st, err) < 0)) {
        if (!err->msg[0])
            ink_err_set(err, errno, "%s", dir);
        close(dfd);
        return -1;
    }
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        close(dfd);
        return ink_err_set(err, e, "policy directory %s", dir);
    }
    /* By name: messages come in the same order on every run. */
    char **names = NULL;
    size_t nnames = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name), sl = strlen(INK_POLICY_SUFFIX);
        /* Editors' backups and hidden files are not policies. */
        if (de->d_name[0] == '.' || n <= sl || strcmp(de->d_name + n - sl, INK_POLICY_SUFFIX) != 0)
            continue;
        names = ink_xrealloc(names, (nnames + 1) * sizeof *names);
        names[nnames++] = ink_xstrdup(de->d_name);
    }
    if (nnames > 1)
        qsort(names, nnames, sizeof *names, cmp_str);
    bool first = true;
    for (size_t ni = 0; ni < nnames; ni++) {
        const char *fname = names[ni];
        cleanup_free char *path = ink_xasprintf("%s/%s", dir, fname);
        ink_err ferr = {0};
        int fd = openat(dfd, fname, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
            ink_err_set(&ferr, errno, "%s", path);
            dir_error(diags, err, &first, &ferr);
            continue;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            ink_err_set(&ferr, 0, "%s is not a regular file", path);
            dir_error(diags, err, &first, &ferr);
            close(fd);
            continue;
        }
        if (strict && check_owner(path, &st, &ferr) < 0) {
            dir_error(diags, err, &first, &ferr);
            close(fd);
            continue;
        }
        ink_policy *pol = NULL;
        /* load_fd reports into diags itself. */
        int rc = load_fd(fd, path, &pol, diags, &ferr);
        close(fd);
        if (rc < 0) {
            if (first) {
                *err = ferr;
                first = false;
            }
            continue;
        }
        out->items = ink_xrealloc(out->items, (out->n + 1) * sizeof *out->items);
        out->items[out->n++] = pol;
    }
    for (size_t ni = 0; ni < nnames; ni++)
        free(names[ni]);
    free(names);
    closedir(d);
    if (out->n > 1)
        qsort(out->items, out->n, sizeof *out->items, cmp_policy);
    return first ? 0 : -1;
}

const ink_policy *ink_policy_set_find(const ink_policy_set *set, const char *name)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->items[i]->name, name) == 0)
            return set->items[i];
    return NULL;
}

void ink_policy_set_free(ink_policy_set *set)
{
    for (size_t i = 0; i < set->n; i++)
        ink_policy_free(set->items[i]);
    free(set->items);
    *set = (ink_policy_set){0};
}

size_t ink_policy_categories(const ink_policy_set *set, const char ***out)
{
    static const char *const fixed[] = {INK_CATEGORY_UNMATCHED, INK_CATEGORY_UNASSIGNED,
                                        INK_CATEGORY_NODE, INK_CATEGORY_SPOOFED};
    size_t cap = INK_ARRAY_LEN(fixed);
    for (size_t i = 0; set && i < set->n; i++)
        cap += set->items[i]->nrules;
    const char **v = ink_xcalloc(cap, sizeof *v);
    size_t n = 0;
    for (size_t i = 0; i < INK_ARRAY_LEN(fixed); i++)
        v[n++] = fixed[i];
    for (size_t i = 0; set && i < set->n; i++)
        for (size_t k = 0; k < set->items[i]->nrules; k++)
            if (set->items[i]->rules[k].verdict == INK_POL_DENY)
                v[n++] = set->items[i]->rules[k].category;
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || strcmp(v[u - 1], v[i]) != 0)
            v[u++] = v[i];
    *out = v;
    return u;
}

char *ink_policy_format_rule(const ink_pol_rule *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        abort();
    fputs(r->verdict == INK_POL_ALLOW ? "allow " : "deny ", f);
    switch (r->target) {
    case INK_POL_ANY:
        fputs("any", f);
        break;
    case INK_POL_PROJECT:
        fputs("project", f);
        break;
    case INK_POL_TENANTS:
        fputs("tenants", f);
        break;
    case INK_POL_ALLOWLIST:
        fputs("allowlist", f);
        break;
    case INK_POL_ADDRS:
        for (size_t i = 0; i < r->naddrs; i++) {
            char a[INET6_ADDRSTRLEN + 8];
            format_cidr(&r->addrs[i], a, sizeof a);
            fprintf(f, "%s%s", i ? ", " : "", a);
        }
        break;
    }
    if (r->proto)
        fputs(r->proto == IPPROTO_TCP ? " tcp" : " udp", f);
    for (size_t i = 0; i < r->nports; i++) {
        fputs(i ? ", " : " port ", f);
        if (r->ports[i].min == r->ports[i].max)
            fprintf(f, "%u", r->ports[i].min);
        else
            fprintf(f, "%u-%u", r->ports[i].min, r->ports[i].max);
    }
    if (r->verdict == INK_POL_DENY)
        fprintf(f, " as %s", r->category);
    fclose(f);
    return buf;
}
