/* The control protocol between the agent and the ink-dns helper: frame
 * headers, the upstream configuration and the name table, encoded by the
 * agent and decoded by the helper; and the resolver's policy
 * (ink_dns_decide), which looks names up in the table.
 *
 * The helper decodes as if the bytes were hostile (the agent is trusted,
 * but a bug there must not become memory corruption in the process that
 * parses packets): each count is checked against the bytes that could
 * hold it before anything is allocated, so a table costs at most a small
 * multiple of its frame, which is itself capped. */
#include "dns_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ------------------------------------------------------------- buffers */

typedef struct wbuf {
    uint8_t *p;
    size_t len, cap;
} wbuf;

static void put(wbuf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = ink_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put8(wbuf *b, uint8_t v)
{
    put(b, &v, 1);
}

static void put16(wbuf *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 2);
}

static void put32(wbuf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 4);
}

typedef struct rbuf {
    const uint8_t *p;
    size_t len, off;
    bool bad; /* a read went past the end: every later read fails too */
} rbuf;

static size_t left(const rbuf *r)
{
    return r->bad ? 0 : r->len - r->off;
}

static const uint8_t *take(rbuf *r, size_t n)
{
    if (r->bad || r->len - r->off < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

static uint8_t get8(rbuf *r)
{
    const uint8_t *p = take(r, 1);
    return p ? p[0] : 0;
}

static uint16_t get16(rbuf *r)
{
    const uint8_t *p = take(r, 2);
    return p ? (uint16_t)((p[0] << 8) | p[1]) : 0;
}

static uint32_t get32(rbuf *r)
{
    const uint8_t *p = take(r, 4);
    return p ? ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3] : 0;
}

/* ------------------------------------------------------------- frames */

void ink_dns_ctl_header(uint8_t out[INK_DNS_CTL_HEADER], uint16_t type, uint32_t len)
{
    wbuf b = {0};
    put32(&b, INK_DNS_CTL_MAGIC);
    put16(&b, INK_DNS_CTL_VERSION);
    put16(&b, type);
    put32(&b, len);
    memcpy(out, b.p, INK_DNS_CTL_HEADER);
    free(b.p);
}

int ink_dns_ctl_parse_header(const uint8_t in[INK_DNS_CTL_HEADER], uint32_t max, uint16_t *type,
                             uint32_t *len, ink_err *err)
{
    rbuf r = {in, INK_DNS_CTL_HEADER, 0, false};
    uint32_t magic = get32(&r);
    uint16_t version = get16(&r);
    *type = get16(&r);
    *len = get32(&r);
    if (magic != INK_DNS_CTL_MAGIC)
        return ink_err_set(err, 0, "control frame: bad magic 0x%08x", magic);
    /* Agent and helper come from the same build; a mismatch means an old
     * helper binary next to a new agent. */
    if (version != INK_DNS_CTL_VERSION)
        return ink_err_set(err, 0, "control frame: version %u, this build speaks %u", version,
                           INK_DNS_CTL_VERSION);
    if (*len > max)
        return ink_err_set(err, 0, "control frame of %u bytes (type %u): at most %u", *len, *type,
                           max);
    return 0;
}

/* ------------------------------------------------------------- config */

int ink_dns_config_encode(const ink_dns_config_msg *c, uint8_t **out, size_t *len, ink_err *err)
{
    if (c->nup > INK_DNS_MAX_UPSTREAMS)
        return ink_err_set(err, 0, "%zu upstream resolvers: at most %d", c->nup,
                           INK_DNS_MAX_UPSTREAMS);
    wbuf b = {0};
    put8(&b, (uint8_t)c->nup);
    for (size_t i = 0; i < c->nup; i++) {
        const struct sockaddr_storage *ss = &c->up[i].addr;
        if (ss->ss_family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
            put8(&b, 4);
            put(&b, &sin->sin_addr, 4);
            put16(&b, ntohs(sin->sin_port));
        } else if (ss->ss_family == AF_INET6) {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
            put8(&b, 6);
            put(&b, &sin6->sin6_addr, 16);
            put16(&b, ntohs(sin6->sin6_port));
        } else {
            free(b.p);
            return ink_err_set(err, 0, "upstream %zu: address family %d", i, ss->ss_family);
        }
    }
    put(&b, &c->net, 4);
    put8(&b, c->prefix);
    *out = b.p;
    *len = b.len;
    return 0;
}

int ink_dns_config_decode(const uint8_t *p, size_t n, ink_dns_config_msg *c, ink_err *err)
{
    memset(c, 0, sizeof *c);
    rbuf r = {p, n, 0, false};
    size_t nup = get8(&r);
    if (nup > INK_DNS_MAX_UPSTREAMS)
        return ink_err_set(err, 0, "config: %zu upstreams: at most %d", nup, INK_DNS_MAX_UPSTREAMS);
    for (size_t i = 0; i < nup && !r.bad; i++) {
        uint8_t fam = get8(&r);
        const uint8_t *a = take(&r, fam == 4 ? 4 : 16);
        uint16_t port = get16(&r);
        if (r.bad)
            break;
        if (fam != 4 && fam != 6)
            return ink_err_set(err, 0, "config: upstream %zu: family %u", i, fam);
        if (port == 0)
            return ink_err_set(err, 0, "config: upstream %zu: port 0", i);
        if (fam == 4) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&c->up[i].addr;
            sin->sin_family = AF_INET;
            memcpy(&sin->sin_addr, a, 4);
            sin->sin_port = htons(port);
            c->up[i].addrlen = sizeof *sin;
        } else {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&c->up[i].addr;
            sin6->sin6_family = AF_INET6;
            memcpy(&sin6->sin6_addr, a, 16);
            sin6->sin6_port = htons(port);
            c->up[i].addrlen = sizeof *sin6;
        }
    }
    const uint8_t *net = take(&r, 4);
    c->prefix = get8(&r);
    if (r.bad || r.off != n) {
        memset(c, 0, sizeof *c);
        return ink_err_set(err, 0, "config: %zu bytes do not hold a configuration", n);
    }
    if (c->prefix > 32)
        return ink_err_set(err, 0, "config: prefix /%u", c->prefix);
    memcpy(&c->net, net, 4);
    c->nup = nup;
    return 0;
}

/* ------------------------------------------------------------- table */

/* Project and app names: what ink_valid_name accepts
 * ([a-z0-9][a-z0-9-]{0,62}), which is also a DNS label. */
static bool valid_label(const uint8_t *s, size_t n)
{
    if (n < 1 || n > INK_DNS_LABEL_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !(i > 0 && c == '-'))
            return false;
    }
    return true;
}

static bool valid_name_str(const char *s)
{
    return valid_label((const uint8_t *)s, strnlen(s, INK_DNS_LABEL_MAX + 1));
}

/* A label of a host name an asker may resolve: letters (lowercase here),
 * digits, '-' and '_' (service labels such as _dmarc). */
static bool valid_host_label(const uint8_t *s, size_t n)
{
    if (n < 1 || n > INK_DNS_LABEL_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* "API.Example.com." -> wire form, lowercase; 0 when it is no host name. */
static size_t host_to_wire(const char *text, size_t len, uint8_t out[INK_DNS_NAME_MAX])
{
    if (len > 0 && text[len - 1] == '.')
        len--;
    size_t o = 0, start = 0;
    if (len == 0)
        return 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && text[i] != '.')
            continue;
        size_t l = i - start;
        if (o + 1 + l + 1 > INK_DNS_NAME_MAX)
            return 0;
        out[o++] = (uint8_t)l;
        for (size_t k = start; k < i; k++) {
            char c = text[k];
            out[o++] = (uint8_t)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
        }
        if (!valid_host_label(out + o - l, l))
            return 0;
        start = i + 1;
    }
    out[o++] = 0;
    return o;
}

/* The asker's names (forward_names) in wire form, at most
 * INK_DNS_MAX_ASKER_NAMES; what is no host name is left out. */
static void put_asker_names(wbuf *b, const char *names)
{
    size_t count_at = b->len;
    put8(b, 0);
    uint8_t n = 0;
    for (const char *s = names; *s && n < INK_DNS_MAX_ASKER_NAMES;) {
        size_t l = strcspn(s, "\n");
        uint8_t wire[INK_DNS_NAME_MAX];
        size_t wl = host_to_wire(s, l, wire);
        if (wl > 0) {
            put8(b, (uint8_t)wl);
            put(b, wire, wl);
            n++;
        }
        s += l;
        if (*s)
            s++;
    }
    b->p[count_at] = n;
}

static bool has_host_name(const char *names)
{
    for (const char *s = names; s && *s;) {
        size_t l = strcspn(s, "\n");
        uint8_t wire[INK_DNS_NAME_MAX];
        if (host_to_wire(s, l, wire) > 0)
            return true;
        s += l;
        if (*s)
            s++;
    }
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint16_t project_index(char *const *projects, size_t n, const char *name)
{
    if (!valid_name_str(name))
        return INK_DNS_NO_PROJECT;
    char *const *hit = bsearch(&name, projects, n, sizeof *projects, cmp_str);
    return hit ? (uint16_t)(hit - projects) : INK_DNS_NO_PROJECT;
}

static int cmp_ip(uint32_t net_a, uint32_t net_b)
{
    uint32_t x = ntohl(net_a), y = ntohl(net_b);
    return (x > y) - (x < y);
}

/* qsort_r orderings of indexes into the workload array. */
static int cmp_idx_addr(const void *a, const void *b, void *arg)
{
    const ink_dns_workload *w = arg;
    return cmp_ip(w[*(const size_t *)a].addr.s_addr, w[*(const size_t *)b].addr.s_addr);
}

static int cmp_app_names(const ink_dns_workload *x, const ink_dns_workload *y)
{
    int c = strcmp(x->project, y->project);
    return c ? c : strcmp(x->app, y->app);
}

static int cmp_idx_app(const void *a, const void *b, void *arg)
{
    const ink_dns_workload *w = arg;
    const ink_dns_workload *x = &w[*(const size_t *)a], *y = &w[*(const size_t *)b];
    int c = cmp_app_names(x, y);
    return c ? c : cmp_ip(x->addr.s_addr, y->addr.s_addr);
}

int ink_dns_table_encode(const ink_dns_workload *w, size_t n, uint32_t serial, uint8_t **out,
                         size_t *len, ink_err *err)
{
    cleanup_free char **projects = ink_xcalloc(n ? n : 1, sizeof *projects);
    size_t nprojects = 0;
    for (size_t i = 0; i < n; i++)
        if (valid_name_str(w[i].project))
            projects[nprojects++] = (char *)w[i].project;
    qsort(projects, nprojects, sizeof *projects, cmp_str);
    size_t uniq = 0;
    for (size_t i = 0; i < nprojects; i++)
        if (uniq == 0 || strcmp(projects[uniq - 1], projects[i]) != 0)
            projects[uniq++] = projects[i];
    nprojects = uniq;
    if (nprojects > INK_DNS_MAX_PROJECTS)
        return ink_err_set(err, 0, "%zu projects: at most %d", nprojects, INK_DNS_MAX_PROJECTS);

    cleanup_free size_t *idx = ink_xcalloc(n ? n : 1, sizeof *idx);
    /* Askers: every workload with an address, once per address (IPAM
     * never hands one out twice; should it, the first one wins). */
    size_t nask = 0;
    for (size_t i = 0; i < n; i++)
        if (w[i].addr.s_addr != 0)
            idx[nask++] = i;
    qsort_r(idx, nask, sizeof *idx, cmp_idx_addr, (void *)w);
    size_t u = 0;
    for (size_t i = 0; i < nask; i++)
        if (u == 0 || w[idx[u - 1]].addr.s_addr != w[idx[i]].addr.s_addr)
            idx[u++] = idx[i];
    nask = u;
    if (nask > INK_DNS_MAX_ASKERS)
        return ink_err_set(err, 0, "%zu workload addresses: at most %d", nask, INK_DNS_MAX_ASKERS);

    wbuf b = {0};
    put32(&b, serial);
    put16(&b, (uint16_t)nprojects);
    for (size_t i = 0; i < nprojects; i++) {
        size_t l = strlen(projects[i]);
        put8(&b, (uint8_t)l);
        put(&b, projects[i], l);
    }
    put32(&b, (uint32_t)nask);
    for (size_t i = 0; i < nask; i++) {
        const ink_dns_workload *x = &w[idx[i]];
        put(&b, &x->addr.s_addr, 4);
        put16(&b, project_index(projects, nprojects, x->project));
        bool names = !x->forward && has_host_name(x->forward_names);
        put8(&b, x->forward ? INK_DNS_ASKER_FORWARD : names ? INK_DNS_ASKER_NAMES : 0);
        put32(&b, x->ifindex);
        if (names)
            put_asker_names(&b, x->forward_names);
    }

    /* Apps: serving workloads with a valid project and app, grouped. */
    size_t ns = 0;
    for (size_t i = 0; i < n; i++)
        if (w[i].serving && w[i].addr.s_addr != 0 && valid_name_str(w[i].project) &&
            valid_name_str(w[i].app))
            idx[ns++] = i;
    qsort_r(idx, ns, sizeof *idx, cmp_idx_app, (void *)w);
    size_t napps = 0;
    for (size_t i = 0; i < ns; i++)
        if (i == 0 || cmp_app_names(&w[idx[i - 1]], &w[idx[i]]) != 0)
            napps++;
    put32(&b, (uint32_t)napps);
    for (size_t i = 0; i < ns;) {
        const ink_dns_workload *x = &w[idx[i]];
        size_t j = i;
        while (j < ns && cmp_app_names(x, &w[idx[j]]) == 0)
            j++;
        /* Distinct addresses (sorted), at most INK_DNS_MAX_REPLICAS. */
        size_t count_at = 0, nad = 0;
        put16(&b, project_index(projects, nprojects, x->project));
        size_t l = strlen(x->app);
        put8(&b, (uint8_t)l);
        put(&b, x->app, l);
        count_at = b.len;
        put16(&b, 0);
        uint32_t last = 0;
        for (size_t k = i; k < j && nad < INK_DNS_MAX_REPLICAS; k++) {
            uint32_t a = w[idx[k]].addr.s_addr;
            if (nad > 0 && a == last)
                continue;
            put(&b, &a, 4);
            last = a;
            nad++;
        }
        b.p[count_at] = (uint8_t)(nad >> 8);
        b.p[count_at + 1] = (uint8_t)nad;
        i = j;
    }
    if (b.len > INK_DNS_CTL_MAX) {
        free(b.p);
        return ink_err_set(err, 0, "name table of %zu bytes: at most %u", b.len, INK_DNS_CTL_MAX);
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

void ink_dns_table_free(ink_dns_table *t)
{
    if (!t)
        return;
    free(t->askers);
    free(t->apps);
    free(t->addrs);
    free(t->fnames);
    free(t->fname_bytes);
    memset(t, 0, sizeof *t);
}

static int cmp_asker(const void *a, const void *b)
{
    const ink_dns_asker *x = a, *y = b;
    return (x->addr > y->addr) - (x->addr < y->addr);
}

static int cmp_app(const void *a, const void *b)
{
    const ink_dns_app *x = a, *y = b;
    if (x->project != y->project)
        return x->project < y->project ? -1 : 1;
    int c = memcmp(x->name, y->name, (x->namelen < y->namelen ? x->namelen : y->namelen));
    if (c)
        return c;
    return (x->namelen > y->namelen) - (x->namelen < y->namelen);
}

static int table_fail(ink_dns_table *t, ink_err *err, const char *what)
{
    ink_dns_table_free(t);
    return ink_err_set(err, 0, "name table: %s", what);
}

/* A name in wire form as the agent encodes it: lowercase host labels,
 * ending exactly at len with the root label. */
static bool valid_wire_host(const uint8_t *w, size_t len)
{
    size_t o = 0;
    while (o < len && w[o] != 0) {
        size_t l = w[o];
        if (o + 1 + l >= len || !valid_host_label(w + o + 1, l))
            return false;
        o += 1 + l;
    }
    return o + 1 == len && len >= 3;
}

/* The names of an asker (INK_DNS_ASKER_NAMES) into the table. Each takes
 * at least 4 payload bytes and is copied once, so the copies cost at most
 * the payload. */
static int decode_asker_names(rbuf *r, ink_dns_table *t, ink_dns_asker *a)
{
    size_t cnt = get8(r);
    if (r->bad || cnt < 1 || cnt > INK_DNS_MAX_ASKER_NAMES || cnt > left(r) / 4)
        return -1;
    if (!t->fname_bytes) {
        /* Everything that follows at most: a bound, allocated once. */
        t->fname_bytes = ink_xmalloc(left(r) ? left(r) : 1);
    }
    a->names_first = (uint32_t)t->nfnames;
    a->nnames = (uint8_t)cnt;
    t->fnames = ink_xrealloc(t->fnames, (t->nfnames + cnt) * sizeof *t->fnames);
    for (size_t i = 0; i < cnt; i++) {
        size_t l = get8(r);
        const uint8_t *w = take(r, l);
        if (!w || !valid_wire_host(w, l))
            return -1;
        uint32_t off =
            t->nfnames ? t->fnames[t->nfnames - 1].off + t->fnames[t->nfnames - 1].len : 0;
        memcpy(t->fname_bytes + off, w, l);
        t->fnames[t->nfnames++] = (ink_dns_fname){.off = off, .len = (uint8_t)l};
    }
    return 0;
}

int ink_dns_table_decode(const uint8_t *p, size_t n, ink_dns_table *t, ink_err *err)
{
    memset(t, 0, sizeof *t);
    rbuf r = {p, n, 0, false};
    t->serial = get32(&r);
    t->nprojects = get16(&r);
    if (t->nprojects > INK_DNS_MAX_PROJECTS)
        return table_fail(t, err, "too many projects");
    for (size_t i = 0; i < t->nprojects; i++) {
        size_t l = get8(&r);
        const uint8_t *name = take(&r, l);
        if (!name || !valid_label(name, l))
            return table_fail(t, err, "bad project name");
    }

    size_t na = get32(&r);
    if (r.bad || na > INK_DNS_MAX_ASKERS || na > left(&r) / 11)
        return table_fail(t, err, "asker count does not fit");
    t->askers = ink_xcalloc(na ? na : 1, sizeof *t->askers);
    for (size_t i = 0; i < na; i++) {
        ink_dns_asker *a = &t->askers[i];
        const uint8_t *addr = take(&r, 4);
        uint32_t net = 0;
        if (addr)
            memcpy(&net, addr, 4);
        a->addr = ntohl(net);
        a->project = get16(&r);
        a->flags = get8(&r);
        a->ifindex = get32(&r);
        if (r.bad || a->addr == 0 || (a->flags & ~INK_DNS_ASKER_FLAGS) ||
            (a->flags & INK_DNS_ASKER_FLAGS) == INK_DNS_ASKER_FLAGS)
            return table_fail(t, err, "bad asker");
        if ((a->flags & INK_DNS_ASKER_NAMES) && decode_asker_names(&r, t, a) < 0)
            return table_fail(t, err, "bad names of an asker");
        if (a->project != INK_DNS_NO_PROJECT && a->project >= t->nprojects)
            return table_fail(t, err, "asker of an unknown project");
    }
    t->naskers = na;
    qsort(t->askers, na, sizeof *t->askers, cmp_asker);
    for (size_t i = 1; i < na; i++)
        if (t->askers[i].addr == t->askers[i - 1].addr)
            return table_fail(t, err, "an address twice among the askers");

    size_t napps = get32(&r);
    /* An app takes at least 10 bytes: project, one-letter name, count,
     * one address. */
    if (r.bad || napps > INK_DNS_MAX_APPS || napps > left(&r) / 10)
        return table_fail(t, err, "app count does not fit");
    t->apps = ink_xcalloc(napps ? napps : 1, sizeof *t->apps);
    size_t addr_cap = left(&r) / 4;
    t->addrs = ink_xcalloc(addr_cap ? addr_cap : 1, sizeof *t->addrs);
    for (size_t i = 0; i < napps; i++) {
        ink_dns_app *a = &t->apps[i];
        a->project = get16(&r);
        size_t l = get8(&r);
        const uint8_t *name = take(&r, l);
        size_t cnt = get16(&r);
        if (r.bad || !valid_label(name, l))
            return table_fail(t, err, "bad app name");
        if (a->project >= t->nprojects)
            return table_fail(t, err, "app of an unknown project");
        if (cnt < 1 || cnt > INK_DNS_MAX_REPLICAS || cnt > left(&r) / 4 ||
            t->naddrs + cnt > addr_cap)
            return table_fail(t, err, "bad replica count");
        memcpy(a->name, name, l);
        a->namelen = (uint8_t)l;
        a->first = (uint32_t)t->naddrs;
        a->n = (uint32_t)cnt;
        for (size_t k = 0; k < cnt; k++) {
            const uint8_t *addr = take(&r, 4);
            memcpy(&t->addrs[t->naddrs++].s_addr, addr, 4);
        }
    }
    t->napps = napps;
    if (r.bad || r.off != n)
        return table_fail(t, err, "trailing bytes");
    qsort(t->apps, napps, sizeof *t->apps, cmp_app);
    for (size_t i = 1; i < napps; i++)
        if (cmp_app(&t->apps[i], &t->apps[i - 1]) == 0)
            return table_fail(t, err, "an app twice in a project");
    return 0;
}

const ink_dns_asker *ink_dns_table_asker(const ink_dns_table *t, struct in_addr addr)
{
    ink_dns_asker key = {.addr = ntohl(addr.s_addr)};
    return t->naskers ? bsearch(&key, t->askers, t->naskers, sizeof key, cmp_asker) : NULL;
}

const ink_dns_app *ink_dns_table_app(const ink_dns_table *t, uint16_t project, const uint8_t *name,
                                     size_t len)
{
    if (len < 1 || len > INK_DNS_LABEL_MAX || t->napps == 0)
        return NULL;
    ink_dns_app key = {.project = project, .namelen = (uint8_t)len};
    for (size_t i = 0; i < len; i++)
        key.name[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + ('a' - 'A') : name[i]);
    return bsearch(&key, t->apps, t->napps, sizeof key, cmp_app);
}

/* ------------------------------------------------------------- policy */

/* A label that is a decimal octet, as in reverse names ("0".."255"). */
static int octet(const uint8_t *label)
{
    size_t len = label[0];
    if (len < 1 || len > 3 || (len > 1 && label[1] == '0'))
        return -1;
    int v = 0;
    for (size_t i = 1; i <= len; i++) {
        if (label[i] < '0' || label[i] > '9')
            return -1;
        v = v * 10 + (label[i] - '0');
    }
    return v <= 255 ? v : -1;
}

/* Whether q is a reverse name (x.in-addr.arpa.) inside the workload range:
 * those name this node's workloads and are nobody else's business. */
static bool reverse_in_range(const ink_dns_query *q, const ink_dns_config_msg *cfg)
{
    size_t n = q->nlabels;
    if (cfg->prefix == 0 || n < 3 || n > 6 || !ink_dns_label_eq(q, n - 1, "arpa") ||
        !ink_dns_label_eq(q, n - 2, "in-addr"))
        return false;
    size_t k = n - 2; /* octets, most significant last */
    if (8 * k < cfg->prefix)
        return false; /* a zone wider than the range: may exist upstream */
    uint32_t addr = 0;
    for (size_t i = 0; i < k; i++) {
        int v = octet(q->qname + q->label_off[k - 1 - i]);
        if (v < 0)
            return false;
        addr |= (uint32_t)v << (24 - 8 * i);
    }
    uint32_t mask = cfg->prefix == 0 ? 0 : ~0u << (32 - cfg->prefix);
    return (addr & mask) == (ntohl(cfg->net.s_addr) & mask);
}

/* Whether q's name is one of the asker's names (case-insensitive: the
 * stored ones are lowercase; length bytes are below 'A', so folding the
 * whole wire form only folds letters). */
static bool asker_may_resolve(const ink_dns_table *t, const ink_dns_asker *asker,
                              const ink_dns_query *q)
{
    if (!(asker->flags & INK_DNS_ASKER_NAMES))
        return false;
    for (size_t i = 0; i < asker->nnames; i++) {
        const ink_dns_fname *f = &t->fnames[asker->names_first + i];
        if (f->len != q->qname_len)
            continue;
        const uint8_t *w = t->fname_bytes + f->off;
        size_t k = 0;
        for (; k < f->len; k++) {
            uint8_t c = q->qname[k];
            if ((c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c) != w[k])
                break;
        }
        if (k == f->len)
            return true;
    }
    return false;
}

ink_dns_decision ink_dns_decide(const ink_dns_table *t, const ink_dns_asker *asker,
                                const ink_dns_config_msg *cfg, const ink_dns_query *q)
{
    ink_dns_decision d = {.action = INK_DNS_DO_ANSWER, .rcode = INK_DNS_REFUSED};
    if (!asker)
        return d;
    /* Chaos-class probes (version.bind, ...) and zone transfers are
     * nobody's business upstream. */
    if ((q->qclass != INK_DNS_CLASS_IN && q->qclass != INK_DNS_CLASS_ANY) ||
        q->qtype == INK_DNS_TYPE_AXFR || q->qtype == INK_DNS_TYPE_IXFR)
        return d;
    size_t n = q->nlabels;
    if (n >= 1 && ink_dns_label_eq(q, n - 1, "internal")) {
        d.rcode = INK_DNS_NXDOMAIN;
        if (n == 1) {
            d.rcode = INK_DNS_NOERROR; /* the zone itself exists, without records */
        } else if (n == 2 && asker->project != INK_DNS_NO_PROJECT) {
            const uint8_t *label = q->qname + q->label_off[0];
            d.app = ink_dns_table_app(t, asker->project, label + 1, label[0]);
            if (d.app) {
                d.rcode = INK_DNS_NOERROR;
                if (q->qtype != INK_DNS_TYPE_A && q->qtype != INK_DNS_TYPE_ANY)
                    d.app = NULL; /* the name exists, without records of that type */
            }
        }
        return d;
    }
    if (reverse_in_range(q, cfg)) {
        d.rcode = INK_DNS_NXDOMAIN;
        return d;
    }
    if (!(asker->flags & INK_DNS_ASKER_FORWARD) && !asker_may_resolve(t, asker, q))
        return d;
    d.action = INK_DNS_DO_FORWARD;
    d.rcode = INK_DNS_NOERROR;
    return d;
}
