/* Ink's nftables table through libnftables (firewall.h). The model (the
 * workloads, their resolved allowlists) lives here; render.c turns it into
 * nft text; this file applies it, lists it back and compares. */
#include "firewall.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <nftables/libnftables.h>
#include <openssl/evp.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "render.h"
#include "util.h"

#define HOST_ADDRS_MAX 32 /* addresses taken from one name */
#define NOTE_MAX 512

typedef struct host_rec {
    char name[INK_EGRESS_HOST_MAX + 1];
    uint32_t *addrs; /* host byte order */
    size_t n;
    int64_t resolved_ms; /* ink_mono_ms of the last attempt; 0 = never */
    char error[128];     /* why the last attempt failed; "" when it resolved */
} host_rec;

typedef struct fw_entry {
    char id[INK_NET_WORKLOAD_ID_MAX + 1];
    char ifname[IFNAMSIZ];
    struct in_addr addr;
    char project[64];
    char app[64];
    char policy[INK_EGRESS_POLICY_NAME_MAX + 1];
    bool policy_ok; /* the policy is loaded: the workload jumps to its chain */
    ink_egress_allow *entries;
    size_t nentries;
    ink_fw_allow *allow; /* the allow4 elements as applied */
    size_t nallow;
    /* What the workload is told (status, log): the parts, and all of
     * them joined (compose_note). */
    char policy_note[NOTE_MAX]; /* its policy cannot be used */
    char spec_note[NOTE_MAX];   /* parts of its spec left out */
    char host_note[NOTE_MAX];   /* allowlist names that do not resolve */
    char note[NOTE_MAX];
} fw_entry;

/* A digest per object of the listing: "table", "chain forward", "set
 * allow4", ... (a chain's rules are part of its chain). */
typedef struct obj_digest {
    char *key;
    uint8_t md[32];
} obj_digest;

typedef struct counter_row {
    char ifname[IFNAMSIZ];
    ink_fw_counter c;
} counter_row;

typedef struct note_row {
    char id[INK_NET_WORKLOAD_ID_MAX + 1];
    char ifname[IFNAMSIZ];
    char *note; /* NULL when there is nothing to say */
} note_row;

typedef struct bad_policy {
    char name[INK_EGRESS_POLICY_NAME_MAX + 1];
    char msg[INK_ERR_MSG_MAX];
} bad_policy;

struct ink_firewall {
    char *policy_dir;
    bool strict;
    ink_fw_node node;

    pthread_mutex_t mu; /* everything below up to stats_mu, and the nft context */
    struct nft_ctx *nft;
    ink_policy_set pols;
    bad_policy *bad; /* files that did not load at open, by policy name */
    size_t nbad;
    fw_entry **w;
    size_t n;
    host_rec *hosts;
    size_t nhosts;
    bool active; /* we applied the table */
    obj_digest *digest;
    size_t ndigest;
    int64_t last_apply_us;
    size_t last_apply_n;
    int gen_fd; /* netlink socket for the ruleset generation; -1: none */
    uint32_t gen_seq;
    uint32_t gen_expected; /* the generation Ink's own commits left */
    bool ref_stale;        /* Ink committed since the reference was taken */

    /* What status readers need, so that they never wait behind an apply. */
    pthread_mutex_t stats_mu;
    counter_row *counters; /* sorted by ifname */
    size_t ncounters;
    note_row *notes;
    size_t nnotes;
};

/* ------------------------------------------------------------ libnftables */

/* nft's error text for a failed command, on one bounded line: its first
 * two lines ("Error: why", then the statement it is about). */
static int nft_error(ink_err *err, const char *what, const char *text)
{
    char line[400];
    size_t n = 0;
    const char *p = text ? text : "";
    for (int l = 0; l < 2 && *p; l++) {
        size_t len = strcspn(p, "\n");
        if (l > 0 && n + 3 < sizeof line) {
            memcpy(line + n, " | ", 3);
            n += 3;
        }
        for (size_t i = 0; i < len && n + 1 < sizeof line; i++)
            line[n++] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : ' ';
        p += len;
        if (*p)
            p++;
    }
    while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '|'))
        n--;
    line[n] = '\0';
    return ink_err_set(err, 0, "%s: %s", what, n ? line : "nftables refused it");
}

static struct nft_ctx *new_ctx(ink_err *err)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx) {
        ink_err_set(err, 0, "libnftables: cannot create a context");
        return NULL;
    }
    if (nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0) {
        nft_ctx_free(ctx);
        ink_err_set(err, 0, "libnftables: cannot buffer output");
        return NULL;
    }
    return ctx;
}

static int run_cmd(struct nft_ctx *ctx, const char *cmd, const char *what, ink_err *err)
{
    nft_ctx_output_set_flags(ctx, 0);
    int rc = nft_run_cmd_from_buffer(ctx, cmd);
    (void)nft_ctx_get_output_buffer(ctx); /* drained: buffers grow otherwise */
    const char *e = nft_ctx_get_error_buffer(ctx);
    if (rc != 0)
        return nft_error(err, what, e);
    return 0;
}

/* The table as JSON; *absent (and *out NULL) when it does not exist. */
static int list_json(struct nft_ctx *ctx, unsigned flags, char **out, bool *absent, ink_err *err)
{
    *out = NULL;
    *absent = false;
    nft_ctx_output_set_flags(ctx, flags);
    int rc = nft_run_cmd_from_buffer(ctx, "list table " INK_FW_FAMILY " " INK_FW_TABLE);
    const char *o = nft_ctx_get_output_buffer(ctx);
    const char *e = nft_ctx_get_error_buffer(ctx);
    nft_ctx_output_set_flags(ctx, 0);
    if (rc != 0) {
        if (e && strstr(e, "No such file or directory")) {
            *absent = true;
            return 0;
        }
        return nft_error(err, "listing table inet ink", e);
    }
    *out = ink_xstrdup(o ? o : "");
    return 0;
}

int ink_fw_list_table(bool json, bool terse, char **out, bool *absent, ink_err *err)
{
    struct nft_ctx *ctx = new_ctx(err);
    if (!ctx)
        return -1;
    unsigned flags = (json ? NFT_CTX_OUTPUT_JSON : 0) | (terse ? NFT_CTX_OUTPUT_TERSE : 0);
    int rc = list_json(ctx, flags, out, absent, err);
    nft_ctx_free(ctx);
    return rc;
}

int ink_fw_dry_run(const char *text, ink_err *err)
{
    struct nft_ctx *ctx = new_ctx(err);
    if (!ctx)
        return -1;
    nft_ctx_set_dry_run(ctx, true);
    int rc = run_cmd(ctx, text, "nftables check", err);
    nft_ctx_free(ctx);
    return rc;
}

/* ------------------------------------------------------------ listing digest */

typedef struct piece {
    const char *key; /* one of snapshot()'s keys */
    uint64_t seq;    /* listing order; set elements share one and sort by text */
    char *text;
} piece;

static int cmp_piece(const void *a, const void *b)
{
    const piece *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return strcmp(x->text ? x->text : "", y->text ? y->text : "");
}

/* What the kernel changes on its own is not drift: handles (a deleted and
 * re-added identical rule is the same rule) and counter values. */
static void strip(json_t *j)
{
    if (json_is_object(j)) {
        json_object_del(j, "handle");
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(j, tmp, k, v)
        {
            if (strcmp(k, "counter") == 0 && json_is_object(v))
                json_object_set_new(j, k, json_null());
            else
                strip(v);
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) strip(v);
    }
}

static int cmp_counter_row(const void *a, const void *b)
{
    const counter_row *x = a, *y = b;
    int c = strcmp(x->ifname, y->ifname);
    return c ? c : strcmp(x->c.category, y->c.category);
}

/* Makes rows (sorted here, owned by fw from now on) the drop counters
 * ink_firewall_blocked() reads. */
static void publish_counters(ink_firewall *fw, counter_row *rows, size_t nrows)
{
    if (nrows > 1)
        qsort(rows, nrows, sizeof *rows, cmp_counter_row);
    pthread_mutex_lock(&fw->stats_mu);
    free(fw->counters);
    fw->counters = rows;
    fw->ncounters = nrows;
    pthread_mutex_unlock(&fw->stats_mu);
}

static void push_piece(piece **v, size_t *n, size_t *cap, const char *key, uint64_t seq, char *text)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        *v = ink_xrealloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = (piece){key, seq, text};
}

/* The counter elements of a blk_<category> set into rows. */
static void read_counters(json_t *set, const char *category, counter_row **rows, size_t *n)
{
    json_t *elems = json_object_get(set, "elem");
    size_t i;
    json_t *e;
    json_array_foreach(elems, i, e)
    {
        json_t *inner = json_object_get(e, "elem");
        const char *name = json_string_value(inner ? json_object_get(inner, "val") : e);
        json_t *c = inner ? json_object_get(inner, "counter") : NULL;
        if (!name || strlen(name) >= IFNAMSIZ)
            continue;
        *rows = ink_xrealloc(*rows, (*n + 1) * sizeof **rows);
        counter_row *r = &(*rows)[(*n)++];
        memset(r, 0, sizeof *r);
        snprintf(r->ifname, sizeof r->ifname, "%s", name);
        snprintf(r->c.category, sizeof r->c.category, "%s", category);
        r->c.packets = (uint64_t)json_integer_value(json_object_get(c, "packets"));
        r->c.bytes = (uint64_t)json_integer_value(json_object_get(c, "bytes"));
    }
}

static void free_digest(obj_digest *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(d[i].key);
    free(d);
}

/* Lists the table: digests per object (sorted by key) and the drop
 * counters (published for status readers). *absent when there is no
 * table; the counters then stay as last seen, so that a repair can carry
 * them over. */
static int snapshot(ink_firewall *fw, obj_digest **dig, size_t *ndig, bool *absent, ink_err *err)
{
    *dig = NULL;
    *ndig = 0;
    cleanup_free char *text = NULL;
    if (list_json(fw->nft, NFT_CTX_OUTPUT_JSON, &text, absent, err) < 0)
        return -1;
    if (*absent)
        return 0;
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    json_t *items = json_object_get(root, "nftables");
    if (!json_is_array(items)) {
        json_decref(root);
        return ink_err_set(err, 0, "listing table inet ink: unreadable JSON (%s)", jerr.text);
    }
    piece *pieces = NULL;
    size_t np = 0, cap = 0;
    counter_row *rows = NULL;
    size_t nrows = 0;
    uint64_t seq = 0;
    char **keys = NULL;
    size_t nkeys = 0;
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        const char *kind;
        json_t *obj;
        json_object_foreach(item, kind, obj)
        {
            if (strcmp(kind, "metainfo") == 0)
                continue;
            const char *name = json_string_value(json_object_get(obj, "name"));
            char *key;
            if (strcmp(kind, "table") == 0)
                key = ink_xstrdup("table");
            else if (strcmp(kind, "rule") == 0)
                key = ink_xasprintf("chain %s",
                                    json_string_value(json_object_get(obj, "chain")) ?: "?");
            else
                key = ink_xasprintf("%s %s", kind, name ? name : "?");
            /* The pieces point at their key; keys are freed at the end. */
            keys = ink_xrealloc(keys, (nkeys + 1) * sizeof *keys);
            keys[nkeys++] = key;
            const char *k = key;
            bool is_set = strcmp(kind, "set") == 0 || strcmp(kind, "map") == 0;
            if (is_set && name && strncmp(name, "blk_", 4) == 0) {
                read_counters(obj, name + 4, &rows, &nrows);
                json_object_del(obj, "elem");
            }
            json_t *elems = is_set ? json_object_get(obj, "elem") : NULL;
            if (elems) {
                json_incref(elems);
                json_object_del(obj, "elem");
                size_t ei;
                json_t *e;
                json_array_foreach(elems, ei, e)
                {
                    strip(e);
                    push_piece(&pieces, &np, &cap, k, UINT64_MAX,
                               json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS));
                }
                json_decref(elems);
            }
            strip(obj);
            push_piece(&pieces, &np, &cap, k, seq++,
                       json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS));
        }
    }
    json_decref(root);

    if (np > 1)
        qsort(pieces, np, sizeof *pieces, cmp_piece);
    obj_digest *d = NULL;
    size_t nd = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    for (size_t a = 0; a < np;) {
        size_t b = a;
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
        while (b < np && strcmp(pieces[b].key, pieces[a].key) == 0) {
            if (pieces[b].text)
                EVP_DigestUpdate(md, pieces[b].text, strlen(pieces[b].text));
            EVP_DigestUpdate(md, "\n", 1);
            b++;
        }
        d = ink_xrealloc(d, (nd + 1) * sizeof *d);
        d[nd].key = ink_xstrdup(pieces[a].key);
        unsigned len = 0;
        EVP_DigestFinal_ex(md, d[nd].md, &len);
        nd++;
        a = b;
    }
    EVP_MD_CTX_free(md);
    for (size_t p = 0; p < np; p++)
        free(pieces[p].text);
    free(pieces);
    for (size_t k = 0; k < nkeys; k++)
        free(keys[k]);
    free(keys);

    publish_counters(fw, rows, nrows);
    *dig = d;
    *ndig = nd;
    return 0;
}

/* Says how two listings differ: "chain forward changed; set allow4
 * missing; chain x unexpected". */
static void describe(const obj_digest *old, size_t nold, const obj_digest *cur, size_t ncur,
                     char *out, size_t len)
{
    size_t pos = 0;
    out[0] = '\0';
    size_t i = 0, k = 0, shown = 0, more = 0;
    while (i < nold || k < ncur) {
        int c = i == nold ? 1 : k == ncur ? -1 : strcmp(old[i].key, cur[k].key);
        const char *what = NULL, *key = NULL;
        if (c < 0) {
            what = "missing", key = old[i++].key;
        } else if (c > 0) {
            what = "unexpected", key = cur[k++].key;
        } else {
            if (memcmp(old[i].md, cur[k].md, 32) != 0)
                what = "changed", key = old[i].key;
            i++, k++;
        }
        if (!what)
            continue;
        if (shown == 8) {
            more++;
            continue;
        }
        int w = snprintf(out + pos, len - pos, "%s%s %s", shown ? "; " : "", key, what);
        if (w > 0 && (size_t)w < len - pos)
            pos += (size_t)w;
        shown++;
    }
    if (more && pos < len)
        snprintf(out + pos, len - pos, "; and %zu more", more);
}

/* ------------------------------------------------------------ model */

static fw_entry *find(ink_firewall *fw, const char *id, size_t *idx)
{
    for (size_t i = 0; i < fw->n; i++) {
        if (strcmp(fw->w[i]->id, id) == 0) {
            if (idx)
                *idx = i;
            return fw->w[i];
        }
    }
    return NULL;
}

static void entry_free(fw_entry *e)
{
    if (!e)
        return;
    free(e->entries);
    free(e->allow);
    free(e);
}

static host_rec *find_host(ink_firewall *fw, const char *name)
{
    for (size_t i = 0; i < fw->nhosts; i++)
        if (strcmp(fw->hosts[i].name, name) == 0)
            return &fw->hosts[i];
    return NULL;
}

static host_rec *get_host(ink_firewall *fw, const char *name)
{
    host_rec *h = find_host(fw, name);
    if (h)
        return h;
    fw->hosts = ink_xrealloc(fw->hosts, (fw->nhosts + 1) * sizeof *fw->hosts);
    h = &fw->hosts[fw->nhosts++];
    memset(h, 0, sizeof *h);
    snprintf(h->name, sizeof h->name, "%s", name);
    return h;
}

static void append_note(char *note, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append_note(char *note, const char *fmt, ...)
{
    size_t pos = strlen(note);
    if (pos + 3 >= NOTE_MAX)
        return;
    if (pos) {
        memcpy(note + pos, "; ", 3);
        pos += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(note + pos, NOTE_MAX - pos, fmt, ap);
    va_end(ap);
}

static void compose_note(fw_entry *e)
{
    e->note[0] = '\0';
    const char *parts[] = {e->policy_note, e->spec_note, e->host_note};
    for (size_t i = 0; i < INK_ARRAY_LEN(parts); i++)
        if (parts[i][0])
            append_note(e->note, "%s", parts[i]);
}

/* The allow4 boxes of an entry from its entries and the resolved names;
 * notes what did not resolve. */
static void compute_allow(ink_firewall *fw, fw_entry *e)
{
    char *note = e->host_note;
    note[0] = '\0';
    ink_fw_allow *boxes = NULL;
    size_t nb = 0;
    for (size_t i = 0; i < e->nentries; i++) {
        const ink_egress_allow *a = &e->entries[i];
        if (!a->is_host) {
            uint32_t net = ntohl(a->addr.s_addr);
            uint32_t span = a->prefix == 0 ? 0xffffffffu : (1u << (32 - a->prefix)) - 1;
            if (a->prefix == 32)
                span = 0;
            boxes = ink_xrealloc(boxes, (nb + 1) * sizeof *boxes);
            boxes[nb++] = (ink_fw_allow){net, net | span, a->port_min, a->port_max};
            continue;
        }
        host_rec *h = find_host(fw, a->host);
        if (!h || h->resolved_ms == 0) {
            append_note(note, "egress_allow %s: not resolved yet; it allows nothing until it is",
                        a->host);
            continue;
        }
        if (h->n == 0) {
            append_note(note,
                        "egress_allow %s does not resolve (%s): it allows nothing until it does",
                        a->host, h->error[0] ? h->error : "no IPv4 address");
            continue;
        }
        for (size_t k = 0; k < h->n; k++) {
            boxes = ink_xrealloc(boxes, (nb + 1) * sizeof *boxes);
            boxes[nb++] = (ink_fw_allow){h->addrs[k], h->addrs[k], a->port_min, a->port_max};
        }
    }
    free(e->allow);
    e->nallow = ink_fw_allow_normalize(boxes, nb, &e->allow);
    free(boxes);
    compose_note(e);
}

static const bad_policy *find_bad(ink_firewall *fw, const char *name)
{
    for (size_t i = 0; i < fw->nbad; i++)
        if (strcmp(fw->bad[i].name, name) == 0)
            return &fw->bad[i];
    return NULL;
}

/* Why a policy cannot be used, or NULL when it is loaded. */
static const char *policy_problem(ink_firewall *fw, const char *name, char *buf, size_t len)
{
    if (ink_policy_set_find(&fw->pols, name))
        return NULL;
    const bad_policy *b = find_bad(fw, name);
    if (b)
        snprintf(buf, len, "egress policy '%s' has errors: %s", name, b->msg);
    else
        snprintf(buf, len, "egress policy '%s' is not installed on this node (%s/%s%s)", name,
                 fw->policy_dir, name, INK_POLICY_SUFFIX);
    return buf;
}

/* An entry for a spec. strict (add): anything wrong is an error. Else
 * (sync, a workload that may be running): what is wrong is left out and
 * noted, which only ever takes permissions away. */
static int make_entry(ink_firewall *fw, const ink_fw_spec *s, bool strict, fw_entry **out,
                      ink_err *err)
{
    *out = NULL;
    if (!s->workload_id || !ink_net_valid_workload_id(s->workload_id))
        return ink_err_set(err, 0, "invalid workload id '%s'",
                           s->workload_id ? s->workload_id : "");
    fw_entry *e = ink_xcalloc(1, sizeof *e);
    snprintf(e->id, sizeof e->id, "%s", s->workload_id);
    ink_net_host_ifname(e->id, e->ifname);
    e->addr = s->addr;
    snprintf(e->app, sizeof e->app, "%s", s->app ? s->app : "");
    const char *policy = s->policy && *s->policy ? s->policy : INK_EGRESS_DEFAULT;
    if (!ink_egress_valid_policy_name(policy)) {
        if (strict) {
            entry_free(e);
            return ink_err_set(err, 0, "egress policy name '%.40s' is invalid ([a-z0-9-], 1-32)",
                               policy);
        }
        append_note(e->policy_note, "egress policy name '%.40s' is invalid: everything is blocked",
                    policy);
    } else {
        snprintf(e->policy, sizeof e->policy, "%s", policy);
        char why[INK_ERR_MSG_MAX];
        const char *problem = policy_problem(fw, policy, why, sizeof why);
        if (problem && strict) {
            entry_free(e);
            return ink_err_set(err, 0, "%s", problem);
        }
        if (problem)
            append_note(e->policy_note, "%s: everything is blocked", problem);
        e->policy_ok = problem == NULL;
    }
    if (s->project && *s->project) {
        if (!ink_fw_project_ok(s->project)) {
            if (strict) {
                entry_free(e);
                return ink_err_set(err, 0, "project name '%.64s' is invalid", s->project);
            }
            append_note(e->spec_note, "project name '%.64s' is invalid: no project peers",
                        s->project);
        } else {
            snprintf(e->project, sizeof e->project, "%s", s->project);
        }
    }
    if (s->nallow > INK_EGRESS_ALLOW_MAX) {
        if (strict) {
            entry_free(e);
            return ink_err_set(err, 0, "more than %d egress_allow entries", INK_EGRESS_ALLOW_MAX);
        }
        append_note(e->spec_note, "more than %d egress_allow entries: the rest are ignored",
                    INK_EGRESS_ALLOW_MAX);
    }
    size_t nallow = s->nallow > INK_EGRESS_ALLOW_MAX ? INK_EGRESS_ALLOW_MAX : s->nallow;
    e->entries = ink_xcalloc(nallow ? nallow : 1, sizeof *e->entries);
    for (size_t i = 0; i < nallow; i++) {
        ink_err aerr = {0};
        if (ink_egress_allow_parse(s->allow[i], &e->entries[e->nentries], &aerr) < 0) {
            if (strict) {
                entry_free(e);
                *err = aerr;
                return -1;
            }
            append_note(e->spec_note, "%s: ignored", aerr.msg);
            continue;
        }
        e->nentries++;
    }
    compute_allow(fw, e);
    *out = e;
    return 0;
}

/* Whether two entries render the same elements. */
static bool same_rules(const fw_entry *a, const fw_entry *b)
{
    return strcmp(a->ifname, b->ifname) == 0 && a->addr.s_addr == b->addr.s_addr &&
           strcmp(a->project, b->project) == 0 && a->policy_ok == b->policy_ok &&
           (!a->policy_ok || strcmp(a->policy, b->policy) == 0) && a->nallow == b->nallow &&
           (a->nallow == 0 || memcmp(a->allow, b->allow, a->nallow * sizeof *a->allow) == 0);
}

static bool project_has_others(ink_firewall *fw, const char *project, const char *except_id)
{
    if (!ink_fw_project_ok(project))
        return false;
    for (size_t i = 0; i < fw->n; i++)
        if (strcmp(fw->w[i]->project, project) == 0 && strcmp(fw->w[i]->id, except_id) != 0)
            return true;
    return false;
}

static void to_render(const fw_entry *e, ink_fw_workload *r)
{
    *r = (ink_fw_workload){
        .id = e->id,
        .addr = e->addr,
        .project = e->project,
        .policy = e->policy_ok ? e->policy : NULL,
        .allow = e->allow,
        .nallow = e->nallow,
    };
    memcpy(r->ifname, e->ifname, IFNAMSIZ);
}

static void free_notes(note_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(rows[i].note);
    free(rows);
}

/* Notes and interface names for status readers. Called with mu held. */
static void publish_notes(ink_firewall *fw)
{
    note_row *rows = ink_xcalloc(fw->n ? fw->n : 1, sizeof *rows);
    for (size_t i = 0; i < fw->n; i++) {
        snprintf(rows[i].id, sizeof rows[i].id, "%s", fw->w[i]->id);
        memcpy(rows[i].ifname, fw->w[i]->ifname, IFNAMSIZ);
        rows[i].note = fw->w[i]->note[0] ? ink_xstrdup(fw->w[i]->note) : NULL;
    }
    pthread_mutex_lock(&fw->stats_mu);
    note_row *old = fw->notes;
    size_t nold = fw->nnotes;
    fw->notes = rows;
    fw->nnotes = fw->n;
    pthread_mutex_unlock(&fw->stats_mu);
    free_notes(old, nold);
}

/* ------------------------------------------------------------ applying */

/* The ruleset generation: every committed nftables transaction in this
 * network namespace, ours or anyone's, adds one; packets (the counter
 * elements they create) do not. libnftables has no call for it, so it is
 * one read-only netlink request (NFT_MSG_GETGEN). It lets a drift check
 * that finds the generation where Ink left it skip listing the table,
 * which costs nft ~0.1 s per 1,000 workloads. */
static int read_genid(ink_firewall *fw, uint32_t *out)
{
    if (fw->gen_fd < 0)
        return -1;
    struct {
        struct nlmsghdr nh;
        struct nfgenmsg g;
    } req = {
        .nh = {.nlmsg_len = sizeof req,
               .nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN,
               .nlmsg_flags = NLM_F_REQUEST,
               .nlmsg_seq = ++fw->gen_seq},
        .g = {.nfgen_family = AF_UNSPEC, .version = NFNETLINK_V0},
    };
    if (send(fw->gen_fd, &req, sizeof req, 0) != (ssize_t)sizeof req)
        return -1;
    for (int tries = 0; tries < 4; tries++) {
        uint8_t buf[8192] __attribute__((aligned(NLMSG_ALIGNTO)));
        ssize_t n = recv(fw->gen_fd, buf, sizeof buf, 0);
        if (n < 0)
            return -1;
        for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)n);
             nh = NLMSG_NEXT(nh, n)) {
            if (nh->nlmsg_seq != fw->gen_seq)
                continue; /* an answer to an earlier, abandoned request */
            if (nh->nlmsg_type == NLMSG_ERROR)
                return -1;
            if (nh->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN))
                continue;
            size_t off = NLMSG_LENGTH(sizeof(struct nfgenmsg));
            while (off + sizeof(struct nlattr) <= nh->nlmsg_len) {
                struct nlattr *a = (struct nlattr *)((uint8_t *)nh + off);
                if (a->nla_len < sizeof *a || off + a->nla_len > nh->nlmsg_len)
                    break;
                if ((a->nla_type & NLA_TYPE_MASK) == NFTA_GEN_ID &&
                    a->nla_len >= NLA_HDRLEN + sizeof(uint32_t)) {
                    uint32_t v;
                    memcpy(&v, (uint8_t *)a + NLA_HDRLEN, sizeof v);
                    *out = ntohl(v);
                    return 0;
                }
                off += NLA_ALIGN(a->nla_len);
            }
            return -1;
        }
    }
    return -1;
}

/* The drop counters alone (status): each blk_ set listed on its own,
 * which reads only that set's elements. */
static void refresh_counters(ink_firewall *fw)
{
    const char **cats = NULL;
    size_t ncats = ink_policy_categories(&fw->pols, &cats);
    counter_row *rows = NULL;
    size_t nrows = 0, listed = 0;
    for (size_t c = 0; c < ncats; c++) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "list set " INK_FW_FAMILY " " INK_FW_TABLE " blk_%s", cats[c]);
        nft_ctx_output_set_flags(fw->nft, NFT_CTX_OUTPUT_JSON);
        int rc = nft_run_cmd_from_buffer(fw->nft, cmd);
        const char *o = nft_ctx_get_output_buffer(fw->nft);
        (void)nft_ctx_get_error_buffer(fw->nft);
        nft_ctx_output_set_flags(fw->nft, 0);
        if (rc != 0) {
            /* The drift check deals with a missing set. Its category
             * keeps the rows last read: when the table vanished between
             * two of these listings (nft flush ruleset), replacing them
             * with nothing would lose those counts in the repair. A
             * category new since the last apply has no rows to keep. */
            pthread_mutex_lock(&fw->stats_mu);
            for (size_t i = 0; i < fw->ncounters; i++) {
                if (strcmp(fw->counters[i].c.category, cats[c]) != 0)
                    continue;
                rows = ink_xrealloc(rows, (nrows + 1) * sizeof *rows);
                rows[nrows++] = fw->counters[i];
            }
            pthread_mutex_unlock(&fw->stats_mu);
            continue;
        }
        listed++;
        json_t *root = json_loads(o, 0, NULL);
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(root, "nftables"), i, item)
        {
            json_t *set = json_object_get(item, "set");
            if (set)
                read_counters(set, cats[c], &rows, &nrows);
        }
        json_decref(root);
    }
    free(cats);
    if (listed == 0) {
        /* No table (flushed): the last counters read stay, for the
         * table that replaces it. */
        free(rows);
        return;
    }
    publish_counters(fw, rows, nrows);
}

/* Takes the digest of what is now in the kernel as the reference (and the
 * drop counters with it), with the generation it belongs to. */
static int take_reference(ink_firewall *fw, ink_err *err)
{
    for (int attempt = 0;; attempt++) {
        uint32_t g0 = 0, g1 = 0;
        bool have = read_genid(fw, &g0) == 0;
        obj_digest *d;
        size_t nd;
        bool absent;
        if (snapshot(fw, &d, &nd, &absent, err) < 0)
            return -1;
        if (absent) {
            free_digest(d, nd);
            return ink_err_set(err, 0, "table inet ink vanished right after it was applied");
        }
        have = have && read_genid(fw, &g1) == 0;
        /* Someone committed while we listed: the listing may be from
         * before or after; list again. Under constant churn, take it. */
        if (have && g0 != g1 && attempt < 3) {
            free_digest(d, nd);
            continue;
        }
        free_digest(fw->digest, fw->ndigest);
        fw->digest = d;
        fw->ndigest = nd;
        fw->gen_expected = g1;
        fw->ref_stale = !have;
        return 0;
    }
}

/* Commits a batch. 1 when the generation moved by exactly this commit
 * from where Ink's own commits left it (the kernel's table is then known
 * without listing it), 0 when it cannot tell, -1 when refused. *alone_gen
 * (may be NULL): the generation after the commit when it moved by exactly
 * this commit from wherever it was, else 0. */
static int commit(ink_firewall *fw, const char *text, const char *what, uint32_t *alone_gen,
                  ink_err *err)
{
    uint32_t g0 = 0, g1 = 0;
    bool have = read_genid(fw, &g0) == 0;
    int64_t t0 = ink_mono_ns();
    if (run_cmd(fw->nft, text, what, err) < 0)
        return -1;
    fw->last_apply_us = (ink_mono_ns() - t0) / 1000;
    have = have && read_genid(fw, &g1) == 0;
    if (alone_gen)
        *alone_gen = have && g1 == g0 + 1 ? g1 : 0;
    return have && g1 == g0 + 1 && g0 == fw->gen_expected;
}

/* Renders and applies the whole table for the model, with the drop
 * counters last seen (fresh_counters: list the table first, when it
 * exists, to take the current ones), then takes the reference (or, unless
 * verify_now, leaves it to the next check when only Ink committed). */
static int apply_full(ink_firewall *fw, bool fresh_counters, bool verify_now, ink_err *err)
{
    /* Only the counter sets are read (a missing one is skipped): the
     * current counters, or those a previous agent process left. */
    if (fresh_counters)
        refresh_counters(fw);
    ink_fw_workload *rw = ink_xcalloc(fw->n ? fw->n : 1, sizeof *rw);
    /* Counters by interface: rows are sorted by ifname. */
    pthread_mutex_lock(&fw->stats_mu);
    ink_fw_counter *cs = ink_xcalloc(fw->ncounters ? fw->ncounters : 1, sizeof *cs);
    for (size_t i = 0; i < fw->ncounters; i++)
        cs[i] = fw->counters[i].c;
    const counter_row *rows = fw->counters;
    size_t nrows = fw->ncounters;
    for (size_t i = 0; i < fw->n; i++) {
        to_render(fw->w[i], &rw[i]);
        const char *ifname = fw->w[i]->ifname;
        size_t lo = 0, hi = nrows;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (strcmp(rows[mid].ifname, ifname) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        size_t k = lo;
        while (k < nrows && strcmp(rows[k].ifname, ifname) == 0)
            k++;
        rw[i].counters = cs + lo;
        rw[i].ncounters = k - lo;
    }
    pthread_mutex_unlock(&fw->stats_mu);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    ink_fw_render_table(f, &fw->pols, &fw->node, rw, fw->n);
    fclose(f);
    uint32_t alone_gen = 0;
    int rc = commit(fw, text, "applying table inet ink", &alone_gen, err);
    free(text);
    free(rw);
    free(cs);
    if (rc < 0)
        return -1;
    fw->active = true;
    fw->last_apply_n = fw->n;
    LOG_INFO("firewall table applied", "workloads", LOG_INT(fw->n), "policies", LOG_INT(fw->pols.n),
             "bytes", LOG_INT(len), "us", LOG_INT(fw->last_apply_us));
    publish_notes(fw);
    if (!verify_now && alone_gen != 0 && fw->gen_fd >= 0) {
        /* Nothing but this transaction, which replaced the whole table,
         * was committed: the kernel holds exactly what was sent. Listing
         * it for the reference costs as much as the commit (1,000
         * workloads: ~25 ms each), so the next check does that, off the
         * caller's path, as after an incremental batch. A repair (someone
         * else is changing the ruleset) takes it at once, so that the
         * next change can be told apart and described. */
        fw->gen_expected = alone_gen;
        fw->ref_stale = true;
        return 0;
    }
    /* The reference is taken now, so that the next check compares with
     * exactly this table. */
    return take_reference(fw, err);
}

/* Applies an incremental batch. When the generation shows that only Ink
 * changed the ruleset since its reference, the reference is only marked
 * stale (listed again at the next check, once for any number of
 * batches); when someone else committed meanwhile, or the kernel refuses
 * the batch (the table was changed behind Ink's back, say), the whole
 * table is applied instead. The model must already be what the batch
 * makes of the table. */
static int apply_batch(ink_firewall *fw, const char *text, const char *what, ink_err *err)
{
    ink_err berr = {0};
    int rc = commit(fw, text, what, NULL, &berr);
    if (rc == 1 || (rc == 0 && fw->gen_fd < 0)) {
        fw->gen_expected++;
        fw->ref_stale = true;
        fw->last_apply_n = 1;
        LOG_DEBUG("firewall batch applied", "what", what, "us", LOG_INT(fw->last_apply_us));
        publish_notes(fw);
        return fw->gen_fd < 0 ? take_reference(fw, err) : 0;
    }
    if (rc == 0)
        LOG_INFO("nftables changed by someone else since Ink's last check: applying the whole "
                 "table",
                 "what", what);
    else
        LOG_WARN("firewall batch refused; applying the whole table", "what", what, "error",
                 berr.msg);
    if (apply_full(fw, true, true, err) < 0)
        return rc < 0 ? ink_err_wrap(err, "%s; then", berr.msg) : -1;
    return 0;
}

/* ------------------------------------------------------------ names */

static void resolve(const char *name, uint32_t **addrs, size_t *n, char *error, size_t elen)
{
    *addrs = NULL;
    *n = 0;
    error[0] = '\0';
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(error, elen, "%s", rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return;
    }
    for (struct addrinfo *ai = res; ai && *n < HOST_ADDRS_MAX; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET)
            continue;
        uint32_t a = ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr);
        bool dup = false;
        for (size_t i = 0; i < *n && !dup; i++)
            dup = (*addrs)[i] == a;
        if (dup)
            continue;
        *addrs = ink_xrealloc(*addrs, (*n + 1) * sizeof **addrs);
        (*addrs)[(*n)++] = a;
    }
    freeaddrinfo(res);
    if (*n == 0)
        snprintf(error, elen, "no IPv4 address");
}

typedef struct resolved {
    char name[INK_EGRESS_HOST_MAX + 1];
    uint32_t *addrs;
    size_t n;
    char error[128];
} resolved;

static void resolve_all(resolved *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        resolve(r[i].name, &r[i].addrs, &r[i].n, r[i].error, sizeof r[i].error);
}

/* Into the cache (mu held); takes r, its address arrays and all (frees it). */
static void store_resolved(ink_firewall *fw, resolved *r, size_t n)
{
    int64_t now = ink_mono_ms();
    for (size_t i = 0; i < n; i++) {
        host_rec *h = get_host(fw, r[i].name);
        bool changed =
            h->n != r[i].n || (h->n && memcmp(h->addrs, r[i].addrs, h->n * sizeof *h->addrs) != 0);
        if (r[i].n == 0 && h->n > 0)
            LOG_WARN("allowlist host name no longer resolves", "host", r[i].name, "error",
                     r[i].error);
        else if (changed && h->resolved_ms)
            LOG_INFO("allowlist host name resolves to other addresses", "host", r[i].name,
                     "addresses", LOG_INT(r[i].n));
        free(h->addrs);
        h->addrs = r[i].addrs;
        h->n = r[i].n;
        r[i].addrs = NULL;
        h->resolved_ms = now;
        snprintf(h->error, sizeof h->error, "%s", r[i].error);
    }
    free(r);
}

/* ------------------------------------------------------------ public */

int ink_firewall_open(const ink_firewall_config *cfg, ink_firewall **out, ink_err *err)
{
    ink_firewall *fw = ink_xcalloc(1, sizeof *fw);
    fw->policy_dir = ink_xstrdup(cfg->policy_dir ? cfg->policy_dir : INK_POLICY_DIR_DEFAULT);
    fw->strict = cfg->strict_files;
    fw->gen_fd = -1;
    pthread_mutex_init(&fw->mu, NULL);
    pthread_mutex_init(&fw->stats_mu, NULL);
    if (ink_fw_node_parse_cidr(cfg->workload_cidr, &fw->node, err) < 0)
        goto fail;
    fw->node.gateway = cfg->gateway;
    if (!cfg->gateway.s_addr)
        fw->node.gateway.s_addr = htonl(ntohl(fw->node.net.s_addr) + 1);
    fw->nft = new_ctx(err);
    if (!fw->nft)
        goto fail;
    fw->gen_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fw->gen_fd >= 0) {
        struct timeval tv = {.tv_sec = 2};
        setsockopt(fw->gen_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    ink_pol_diags *diags = ink_xcalloc(1, sizeof *diags);
    bool missing = false;
    ink_err perr = {0};
    int rc = ink_policy_load_dir(fw->policy_dir, fw->strict, &fw->pols, &missing, diags, &perr);
    if (missing)
        LOG_WARN("no egress policies installed: every workload will fail to start until there "
                 "are",
                 "policy_dir", fw->policy_dir);
    for (size_t i = 0; i < diags->n; i++) {
        if (diags->items[i].error)
            LOG_ERROR("egress policy refused", "error", diags->items[i].msg);
        else
            LOG_WARN("egress policy", "warning", diags->items[i].msg);
    }
    if (rc < 0 && !missing && !diags->n)
        LOG_ERROR("egress policies unreadable", "error", perr.msg);
    /* Remember the first error per file, by policy name, for workloads
     * that name a policy that did not load. */
    for (size_t i = 0; i < diags->n; i++) {
        if (!diags->items[i].error)
            continue;
        const char *m = diags->items[i].msg;
        const char *slash = strrchr(m, '/');
        const char *base = slash ? slash + 1 : m;
        const char *dot = strstr(base, INK_POLICY_SUFFIX);
        if (!dot || (size_t)(dot - base) > INK_EGRESS_POLICY_NAME_MAX)
            continue;
        char name[INK_EGRESS_POLICY_NAME_MAX + 1];
        memcpy(name, base, (size_t)(dot - base));
        name[dot - base] = '\0';
        if (find_bad(fw, name))
            continue;
        fw->bad = ink_xrealloc(fw->bad, (fw->nbad + 1) * sizeof *fw->bad);
        snprintf(fw->bad[fw->nbad].name, sizeof fw->bad[0].name, "%s", name);
        snprintf(fw->bad[fw->nbad].msg, sizeof fw->bad[0].msg, "%s", m);
        fw->nbad++;
    }
    free(diags);
    LOG_INFO("egress policies loaded", "policy_dir", fw->policy_dir, "policies",
             LOG_INT(fw->pols.n), "refused", LOG_INT(fw->nbad));
    *out = fw;
    return 0;
fail:
    ink_firewall_close(fw);
    return -1;
}

void ink_firewall_close(ink_firewall *fw)
{
    if (!fw)
        return;
    if (fw->nft)
        nft_ctx_free(fw->nft);
    if (fw->gen_fd >= 0)
        close(fw->gen_fd);
    ink_policy_set_free(&fw->pols);
    free(fw->bad);
    for (size_t i = 0; i < fw->n; i++)
        entry_free(fw->w[i]);
    free(fw->w);
    for (size_t i = 0; i < fw->nhosts; i++)
        free(fw->hosts[i].addrs);
    free(fw->hosts);
    free_digest(fw->digest, fw->ndigest);
    free(fw->counters);
    free_notes(fw->notes, fw->nnotes);
    pthread_mutex_destroy(&fw->mu);
    pthread_mutex_destroy(&fw->stats_mu);
    free(fw->policy_dir);
    free(fw);
}

typedef struct clash_key {
    const fw_entry *e;
    size_t pos;
} clash_key;

static int cmp_by_id(const void *a, const void *b)
{
    const clash_key *x = a, *y = b;
    int c = strcmp(x->e->id, y->e->id);
    return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

static int cmp_by_ifname(const void *a, const void *b)
{
    const clash_key *x = a, *y = b;
    int c = strcmp(x->e->ifname, y->e->ifname);
    return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

static int cmp_by_addr(const void *a, const void *b)
{
    const clash_key *x = a, *y = b;
    uint32_t p = ntohl(x->e->addr.s_addr), q = ntohl(y->e->addr.s_addr);
    if (p != q)
        return p < q ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Two workloads with one id, interface or address would share elements
 * (removing one would remove the other's): all but the first are left
 * out, and so get nothing through. Sorting keeps this fast for 10,000. */
static size_t drop_clashes(fw_entry **v, size_t n)
{
    if (n < 2)
        return n;
    clash_key *k = ink_xcalloc(n, sizeof *k);
    bool *out = ink_xcalloc(n, sizeof *out);
    int (*cmps[])(const void *, const void *) = {cmp_by_id, cmp_by_ifname, cmp_by_addr};
    for (size_t c = 0; c < INK_ARRAY_LEN(cmps); c++) {
        for (size_t i = 0; i < n; i++)
            k[i] = (clash_key){v[i], i};
        if (n > 1)
            qsort(k, n, sizeof *k, cmps[c]);
        for (size_t i = 1; i < n; i++) {
            clash_key a = k[i - 1], b = k[i];
            a.pos = b.pos = 0; /* equal keys compare 0 without the position */
            if (cmps[c](&a, &b) == 0)
                out[k[i].pos] = true;
        }
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (out[i]) {
            LOG_ERROR("workload clashes with another (id, interface or address): left out of "
                      "the firewall",
                      "workload", v[i]->id);
            entry_free(v[i]);
            continue;
        }
        v[kept++] = v[i];
    }
    free(k);
    free(out);
    return kept;
}

int ink_firewall_sync(ink_firewall *fw, const ink_fw_spec *w, size_t n, bool create, ink_err *err)
{
    pthread_mutex_lock(&fw->mu);
    fw_entry **entries = ink_xcalloc(n ? n : 1, sizeof *entries);
    size_t ne = 0;
    for (size_t i = 0; i < n; i++) {
        fw_entry *e = NULL;
        ink_err eerr = {0};
        if (make_entry(fw, &w[i], false, &e, &eerr) < 0) {
            LOG_WARN("workload left out of the firewall", "workload", w[i].workload_id ?: "",
                     "error", eerr.msg);
            continue;
        }
        if (e->note[0])
            LOG_WARN("workload egress", "workload", e->id, "note", e->note);
        entries[ne++] = e;
    }
    ne = drop_clashes(entries, ne);
    int rc = 0;
    bool absent = true;
    if (!create && ne == 0) {
        /* Touch nothing unless Ink's table is already there. */
        char *text = NULL;
        ink_err lerr = {0};
        if (list_json(fw->nft, NFT_CTX_OUTPUT_JSON, &text, &absent, &lerr) < 0) {
            /* Cannot even list (no privileges, no nf_tables): there is
             * nothing to protect yet; the first add() will say what is
             * wrong. */
            LOG_DEBUG("cannot list nftables", "error", lerr.msg);
            absent = true;
        }
        free(text);
    }
    fw_entry **old = fw->w;
    size_t nold = fw->n;
    fw->w = entries;
    fw->n = ne;
    if (create || ne > 0 || !absent) {
        rc = apply_full(fw, true, false, err);
    } else {
        publish_notes(fw);
        LOG_DEBUG("no workloads and no table inet ink: the ruleset is left alone");
    }
    if (rc < 0) {
        fw->w = old;
        fw->n = nold;
        old = entries;
        nold = ne;
    }
    for (size_t i = 0; i < nold; i++)
        entry_free(old[i]);
    free(old);
    pthread_mutex_unlock(&fw->mu);
    return rc;
}

int ink_firewall_add(ink_firewall *fw, const ink_fw_spec *s, ink_err *err)
{
    /* Names first, without the lock: DNS can take seconds. */
    resolved *r = ink_xcalloc(s->nallow ? s->nallow : 1, sizeof *r);
    size_t nr = 0;
    for (size_t i = 0; i < s->nallow && i < INK_EGRESS_ALLOW_MAX; i++) {
        ink_egress_allow a;
        ink_err aerr = {0};
        if (ink_egress_allow_parse(s->allow[i], &a, &aerr) == 0 && a.is_host) {
            bool dup = false;
            for (size_t k = 0; k < nr && !dup; k++)
                dup = strcmp(r[k].name, a.host) == 0;
            if (!dup)
                snprintf(r[nr++].name, sizeof r[0].name, "%s", a.host);
        }
    }
    resolve_all(r, nr);

    pthread_mutex_lock(&fw->mu);
    store_resolved(fw, r, nr);
    fw_entry *e = NULL;
    if (make_entry(fw, s, true, &e, err) < 0) {
        pthread_mutex_unlock(&fw->mu);
        return -1;
    }
    for (size_t i = 0; i < fw->n; i++) {
        if (strcmp(fw->w[i]->id, e->id) != 0 &&
            (strcmp(fw->w[i]->ifname, e->ifname) == 0 || fw->w[i]->addr.s_addr == e->addr.s_addr)) {
            ink_err_set(err, 0, "workload %s has the same interface or address as %s", e->id,
                        fw->w[i]->id);
            entry_free(e);
            pthread_mutex_unlock(&fw->mu);
            return -1;
        }
    }
    size_t idx = 0;
    fw_entry *old = find(fw, e->id, &idx);
    if (e->note[0] && (!old || strcmp(old->note, e->note) != 0))
        LOG_WARN("workload egress", "workload", e->id, "note", e->note);
    if (old && fw->active && same_rules(old, e)) {
        /* Nothing to change in the kernel (a restart, an adopted
         * sandbox after an agent restart). */
        fw->w[idx] = e;
        entry_free(old);
        publish_notes(fw);
        pthread_mutex_unlock(&fw->mu);
        return 0;
    }
    int rc;
    if (!fw->active) {
        /* First workload of this agent: the whole table, created. */
        if (old) {
            fw->w[idx] = e;
        } else {
            fw->w = ink_xrealloc(fw->w, (fw->n + 1) * sizeof *fw->w);
            fw->w[fw->n++] = e;
        }
        rc = apply_full(fw, true, false, err);
        if (rc < 0) {
            if (old)
                fw->w[idx] = old;
            else
                fw->n--;
            entry_free(e);
            pthread_mutex_unlock(&fw->mu);
            return -1;
        }
        entry_free(old);
        pthread_mutex_unlock(&fw->mu);
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    ink_fw_workload rn;
    to_render(e, &rn);
    bool project_new = !project_has_others(fw, e->project, e->id);
    if (old) {
        ink_fw_workload ro;
        to_render(old, &ro);
        bool same_project = strcmp(old->project, e->project) == 0;
        /* The old elements go and the new come in one transaction: the
         * workload is never without its rules in between. */
        ink_fw_render_remove(f, &ro, !same_project && !project_has_others(fw, old->project, e->id),
                             NULL, 0, false);
        if (same_project)
            project_new = false;
    }
    ink_fw_render_add(f, &rn, project_new);
    fclose(f);
    if (old) {
        fw->w[idx] = e;
    } else {
        fw->w = ink_xrealloc(fw->w, (fw->n + 1) * sizeof *fw->w);
        fw->w[fw->n++] = e;
    }
    char what[160];
    snprintf(what, sizeof what, "adding workload %s", e->id);
    rc = apply_batch(fw, text, what, err);
    free(text);
    if (rc < 0) {
        /* Neither the batch nor the whole table went in: the kernel still
         * has what it had, so the model goes back too. */
        if (old)
            fw->w[idx] = old;
        else
            fw->n--;
        entry_free(e);
        publish_notes(fw);
    } else {
        entry_free(old);
    }
    pthread_mutex_unlock(&fw->mu);
    return rc;
}

int ink_firewall_remove(ink_firewall *fw, const char *workload_id, ink_err *err)
{
    pthread_mutex_lock(&fw->mu);
    size_t idx;
    fw_entry *e = find(fw, workload_id, &idx);
    if (!e) {
        pthread_mutex_unlock(&fw->mu);
        return 0;
    }
    fw->w[idx] = fw->w[--fw->n];
    int rc = 0;
    if (fw->active) {
        const char **cats = NULL;
        size_t ncats = ink_policy_categories(&fw->pols, &cats);
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (!f)
            abort();
        ink_fw_workload r;
        to_render(e, &r);
        ink_fw_render_remove(f, &r, !project_has_others(fw, e->project, e->id), cats, ncats, true);
        fclose(f);
        free(cats);
        char what[160];
        snprintf(what, sizeof what, "removing workload %s", e->id);
        rc = apply_batch(fw, text, what, err);
        free(text);
    }
    if (rc < 0) {
        fw->w = ink_xrealloc(fw->w, (fw->n + 1) * sizeof *fw->w);
        fw->w[fw->n++] = e;
        publish_notes(fw);
    } else {
        entry_free(e);
    }
    pthread_mutex_unlock(&fw->mu);
    return rc;
}

int ink_firewall_check_drift(ink_firewall *fw, char *what, size_t len, ink_err *err)
{
    char buf[512];
    if (!what || len == 0) {
        what = buf;
        len = sizeof buf;
    }
    what[0] = '\0';
    pthread_mutex_lock(&fw->mu);
    if (!fw->active) {
        pthread_mutex_unlock(&fw->mu);
        return 0;
    }
    uint32_t g = 0;
    bool have = read_genid(fw, &g) == 0;
    if (have && g == fw->gen_expected) {
        /* Nobody but Ink committed anything since the reference. */
        int rc = 0;
        if (fw->ref_stale)
            rc = take_reference(fw, err);
        else
            refresh_counters(fw);
        pthread_mutex_unlock(&fw->mu);
        return rc;
    }
    obj_digest *d = NULL;
    size_t nd = 0;
    bool absent = false;
    if (snapshot(fw, &d, &nd, &absent, err) < 0) {
        pthread_mutex_unlock(&fw->mu);
        return -1;
    }
    bool same = !absent && !fw->ref_stale && nd == fw->ndigest;
    for (size_t i = 0; same && i < nd; i++)
        same =
            strcmp(d[i].key, fw->digest[i].key) == 0 && memcmp(d[i].md, fw->digest[i].md, 32) == 0;
    if (same) {
        /* Someone changed another table: ours is as it was. */
        free_digest(d, nd);
        fw->gen_expected = g;
        pthread_mutex_unlock(&fw->mu);
        return 0;
    }
    if (absent)
        snprintf(what, len, "table inet ink is gone (ruleset flushed?)");
    else if (fw->ref_stale)
        snprintf(what, len,
                 "nftables changed by someone else before Ink verified its own latest change");
    else
        describe(fw->digest, fw->ndigest, d, nd, what, len);
    free_digest(d, nd);
    /* The snapshot just read the counters from the damaged table (or,
     * when it is gone, kept the last ones read, at most one check old):
     * the new table starts from them. */
    LOG_WARN("firewall table changed outside Ink: restoring it", "found", what, "workloads",
             LOG_INT(fw->n));
    int rc = apply_full(fw, false, true, err);
    pthread_mutex_unlock(&fw->mu);
    return rc < 0 ? -1 : 1;
}

int ink_firewall_refresh_hosts(ink_firewall *fw, bool force, ink_err *err)
{
    int64_t now = ink_mono_ms();
    pthread_mutex_lock(&fw->mu);
    resolved *r = NULL;
    size_t nr = 0;
    for (size_t i = 0; i < fw->n; i++) {
        for (size_t k = 0; k < fw->w[i]->nentries; k++) {
            const ink_egress_allow *a = &fw->w[i]->entries[k];
            if (!a->is_host)
                continue;
            bool dup = false;
            for (size_t j = 0; j < nr && !dup; j++)
                dup = strcmp(r[j].name, a->host) == 0;
            if (dup)
                continue;
            host_rec *h = find_host(fw, a->host);
            bool due = force || !h || h->resolved_ms == 0 ||
                       now - h->resolved_ms >= INK_FW_RESOLVE_INTERVAL_MS ||
                       (h->n == 0 && now - h->resolved_ms >= INK_FW_RESOLVE_RETRY_MS);
            if (!due)
                continue;
            r = ink_xrealloc(r, (nr + 1) * sizeof *r);
            memset(&r[nr], 0, sizeof r[nr]);
            snprintf(r[nr++].name, sizeof r[0].name, "%s", a->host);
        }
    }
    pthread_mutex_unlock(&fw->mu);
    if (nr == 0)
        return 0;
    resolve_all(r, nr);

    pthread_mutex_lock(&fw->mu);
    store_resolved(fw, r, nr);
    /* Names no workload uses any more leave the cache. */
    for (size_t h = 0; h < fw->nhosts;) {
        bool used = false;
        for (size_t i = 0; i < fw->n && !used; i++)
            for (size_t k = 0; k < fw->w[i]->nentries && !used; k++)
                used = fw->w[i]->entries[k].is_host &&
                       strcmp(fw->w[i]->entries[k].host, fw->hosts[h].name) == 0;
        if (used) {
            h++;
            continue;
        }
        free(fw->hosts[h].addrs);
        fw->hosts[h] = fw->hosts[--fw->nhosts];
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    size_t changed = 0;
    for (size_t i = 0; i < fw->n; i++) {
        fw_entry *e = fw->w[i];
        bool has_host = false;
        for (size_t k = 0; k < e->nentries && !has_host; k++)
            has_host = e->entries[k].is_host;
        if (!has_host)
            continue;
        ink_fw_workload before;
        to_render(e, &before);
        ink_fw_allow *old_allow = e->allow;
        e->allow = NULL;
        e->nallow = 0;
        compute_allow(fw, e);
        bool same =
            before.nallow == e->nallow &&
            (e->nallow == 0 || memcmp(old_allow, e->allow, e->nallow * sizeof *e->allow) == 0);
        if (!same) {
            ink_fw_workload after;
            to_render(e, &after);
            /* Old elements out, new in, in the same batch. */
            ink_fw_render_allow(f, "delete", &before);
            ink_fw_render_allow(f, "add", &after);
            changed++;
        }
        free(old_allow);
    }
    fclose(f);
    int rc = 0;
    if (changed && fw->active) {
        LOG_INFO("allowlist addresses changed", "workloads", LOG_INT(changed));
        rc = apply_batch(fw, text, "updating allowlist addresses", err);
    } else {
        publish_notes(fw);
    }
    free(text);
    pthread_mutex_unlock(&fw->mu);
    return rc;
}

int ink_firewall_reload_policies(ink_firewall *fw, ink_err *err)
{
    ink_policy_set pols;
    ink_pol_diags *diags = ink_xcalloc(1, sizeof *diags);
    bool missing = false;
    int rc = ink_policy_load_dir(fw->policy_dir, fw->strict, &pols, &missing, diags, err);
    for (size_t i = 0; i < diags->n; i++)
        if (!diags->items[i].error)
            LOG_WARN("egress policy", "warning", diags->items[i].msg);
    if (rc == 0 && missing)
        rc = ink_err_set(err, 0, "policy directory %s is gone", fw->policy_dir);
    if (rc < 0) {
        for (size_t i = 0; i < diags->n; i++)
            if (diags->items[i].error)
                LOG_ERROR("egress policy refused", "error", diags->items[i].msg);
        if (diags->nerrors > 1)
            ink_err_wrap(err, "%zu errors, the first", diags->nerrors);
        free(diags);
        ink_policy_set_free(&pols);
        LOG_ERROR("egress policies NOT reloaded: the running table stays as it was", "error",
                  err->msg);
        return -1;
    }
    free(diags);
    pthread_mutex_lock(&fw->mu);
    ink_policy_set old = fw->pols;
    bad_policy *old_bad = fw->bad;
    size_t old_nbad = fw->nbad;
    fw->pols = pols;
    fw->bad = NULL;
    fw->nbad = 0;
    /* What each workload's policy is now; a workload whose policy is gone
     * keeps its other elements and loses its policy: everything it sends
     * is dropped until it is given one. */
    bool *was_ok = ink_xcalloc(fw->n ? fw->n : 1, sizeof *was_ok);
    char(*notes)[NOTE_MAX] = ink_xcalloc(fw->n ? fw->n : 1, NOTE_MAX);
    for (size_t i = 0; i < fw->n; i++) {
        fw_entry *e = fw->w[i];
        was_ok[i] = e->policy_ok;
        memcpy(notes[i], e->policy_note, NOTE_MAX);
        if (!e->policy[0])
            continue;
        char why[INK_ERR_MSG_MAX];
        const char *problem = policy_problem(fw, e->policy, why, sizeof why);
        e->policy_ok = problem == NULL;
        e->policy_note[0] = '\0';
        if (problem)
            append_note(e->policy_note, "%s: everything is blocked", problem);
        if (problem && was_ok[i])
            LOG_WARN("workload's egress policy is gone: everything it sends is dropped", "workload",
                     e->id, "policy", e->policy);
        else if (!problem && !was_ok[i])
            LOG_INFO("workload's egress policy is back", "workload", e->id, "policy", e->policy);
        compose_note(e);
    }
    rc = fw->active ? apply_full(fw, true, false, err) : 0;
    if (rc < 0) {
        fw->pols = old;
        fw->bad = old_bad;
        fw->nbad = old_nbad;
        for (size_t i = 0; i < fw->n; i++) {
            fw->w[i]->policy_ok = was_ok[i];
            memcpy(fw->w[i]->policy_note, notes[i], NOTE_MAX);
            compose_note(fw->w[i]);
        }
        ink_policy_set_free(&pols);
        publish_notes(fw);
        ink_err_wrap(err, "new policies not applied");
    } else {
        ink_policy_set_free(&old);
        free(old_bad);
        LOG_INFO("egress policies reloaded", "policies", LOG_INT(fw->pols.n));
    }
    free(was_ok);
    free(notes);
    pthread_mutex_unlock(&fw->mu);
    return rc;
}

ink_pol_resolve ink_firewall_resolve_mode(ink_firewall *fw, const char *policy)
{
    pthread_mutex_lock(&fw->mu);
    const ink_policy *p =
        ink_policy_set_find(&fw->pols, policy && *policy ? policy : INK_EGRESS_DEFAULT);
    ink_pol_resolve r = p ? p->resolve : INK_POL_RESOLVE_INTERNAL;
    pthread_mutex_unlock(&fw->mu);
    return r;
}

size_t ink_firewall_blocked(ink_firewall *fw, const char *workload_id, ink_fw_blocked *out,
                            size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&fw->stats_mu);
    const char *ifname = NULL;
    for (size_t i = 0; i < fw->nnotes && !ifname; i++)
        if (strcmp(fw->notes[i].id, workload_id) == 0)
            ifname = fw->notes[i].ifname;
    for (size_t i = 0; ifname && i < fw->ncounters && n < max; i++) {
        const counter_row *r = &fw->counters[i];
        if (strcmp(r->ifname, ifname) != 0 || r->c.packets == 0)
            continue;
        snprintf(out[n].category, sizeof out[n].category, "%s", r->c.category);
        out[n].packets = r->c.packets;
        n++;
    }
    pthread_mutex_unlock(&fw->stats_mu);
    return n;
}

void ink_firewall_note(ink_firewall *fw, const char *workload_id, char *out, size_t len)
{
    out[0] = '\0';
    pthread_mutex_lock(&fw->stats_mu);
    for (size_t i = 0; i < fw->nnotes; i++) {
        if (strcmp(fw->notes[i].id, workload_id) == 0) {
            snprintf(out, len, "%s", fw->notes[i].note ? fw->notes[i].note : "");
            break;
        }
    }
    pthread_mutex_unlock(&fw->stats_mu);
}

bool ink_firewall_active(ink_firewall *fw)
{
    pthread_mutex_lock(&fw->mu);
    bool a = fw->active;
    pthread_mutex_unlock(&fw->mu);
    return a;
}

void ink_firewall_last_apply(ink_firewall *fw, int64_t *us, size_t *workloads)
{
    pthread_mutex_lock(&fw->mu);
    *us = fw->last_apply_us;
    *workloads = fw->last_apply_n;
    pthread_mutex_unlock(&fw->mu);
}
