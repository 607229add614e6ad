/* `ink-agent policy check FILE...` and `ink-agent policy show`: the tools
 * security teams use to read what a policy file means and what a node
 * enforces, without reading C (policies/README.md shows their output).
 *
 * check is pure (parser, linter, renderer; an nftables dry run when the
 * caller may list the ruleset); show only reads (libnftables listing, the
 * agent's state directory) and changes nothing. */
#include <arpa/inet.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "firewall.h"
#include "net.h"
#include "render.h"
#include "util.h"

static void policy_usage(FILE *out)
{
    fprintf(out, "usage: ink-agent policy check FILE...   lint policy files, print what they "
                 "render to\n"
                 "       ink-agent policy show            what this node enforces now, per "
                 "workload\n");
}

/* ------------------------------------------------------------ check */

static void print_diags(const ink_pol_diags *d)
{
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "%s\n", d->items[i].msg);
    size_t hidden = d->nerrors + d->nwarnings - d->n;
    if (hidden)
        fprintf(stderr, "(%zu more messages)\n", hidden);
}

static int policy_check(const ink_agent_config *cfg, int argc, char **argv)
{
    if (argc < 1) {
        policy_usage(stderr);
        return 2;
    }
    ink_policy_set set = {0};
    int rc = 0;
    for (int i = 0; i < argc; i++) {
        ink_pol_diags *d = ink_xcalloc(1, sizeof *d);
        ink_policy *pol = NULL;
        ink_err err = {0};
        int r = ink_policy_load_file(argv[i], &pol, d, &err);
        print_diags(d);
        if (r < 0) {
            if (d->n == 0)
                fprintf(stderr, "%s\n", err.msg);
            fprintf(stderr, "%s: %zu error%s\n", argv[i], d->nerrors ? d->nerrors : 1,
                    d->nerrors > 1 ? "s" : "");
            rc = 1;
        } else if (ink_policy_set_find(&set, pol->name)) {
            fprintf(stderr, "%s: policy '%s' is given twice\n", argv[i], pol->name);
            ink_policy_free(pol);
            rc = 1;
        } else {
            set.items = ink_xrealloc(set.items, (set.n + 1) * sizeof *set.items);
            set.items[set.n++] = pol;
        }
        free(d);
    }
    if (rc != 0) {
        ink_policy_set_free(&set);
        return rc;
    }
    for (size_t i = 0; i < set.n; i++) {
        const ink_policy *pol = set.items[i];
        printf("# %s: policy '%s', %zu rule%s; an app selects it with egress: %s\n", pol->path,
               pol->name, pol->nrules, pol->nrules == 1 ? "" : "s", pol->name);
        for (size_t k = 0; k < pol->nrules; k++) {
            cleanup_free char *text = ink_policy_format_rule(&pol->rules[k]);
            printf("#   line %-4d %s\n", pol->rules[k].line, text);
        }
        printf("#   (anything else: deny as %s)\n", INK_CATEGORY_UNMATCHED);
        static const char *const resolve_text[] = {
            [INK_POL_RESOLVE_ANY] = "every name",
            [INK_POL_RESOLVE_INTERNAL] = "<app>.internal only",
            [INK_POL_RESOLVE_ALLOWLIST] = "<app>.internal and the host names of egress_allow",
        };
        printf("#   resolve %s: the node resolver answers %s\n", ink_pol_resolve_name(pol->resolve),
               resolve_text[pol->resolve]);
        ink_fw_render_policy_chain(stdout, pol);
        printf("\n");
    }

    /* A sample node: the configured workload range, one workload per
     * policy checked, all in one project; an allowlist entry for show. */
    ink_fw_node node = {0};
    ink_err err = {0};
    if (ink_fw_node_parse_cidr(cfg->workload_cidr, &node, &err) < 0 &&
        ink_fw_node_parse_cidr("10.213.0.0/20", &node, &err) < 0)
        return 1;
    node.gateway.s_addr = htonl(ntohl(node.net.s_addr) + 1);
    ink_fw_workload *w = ink_xcalloc(set.n, sizeof *w);
    char(*ids)[64] = ink_xcalloc(set.n, 64);
    static const ink_fw_allow sample_allow = {0xcb007107 /* 203.0.113.7 */, 0xcb007107, 443, 443};
    for (size_t i = 0; i < set.n; i++) {
        snprintf(ids[i], 64, "example-%s", set.items[i]->name);
        w[i].id = ids[i];
        ink_net_host_ifname(ids[i], w[i].ifname);
        w[i].addr.s_addr = htonl(ntohl(node.net.s_addr) + 2 + (uint32_t)i);
        w[i].project = "example";
        w[i].policy = set.items[i]->name;
        w[i].allow = &sample_allow;
        w[i].nallow = 1;
    }
    char *table = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&table, &len);
    if (!f)
        abort();
    ink_fw_render_table(f, &set, &node, w, set.n);
    fclose(f);
    char range[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &node.net, range, sizeof range);
    printf("# A sample table inet ink: node range %s/%d, one workload per policy above in "
           "project \"example\"\n# (%s ... ), each with the allowlist entry 203.0.113.7:443.\n",
           range, node.prefix, w[0].ifname);
    for (size_t i = 0; i < set.n; i++) {
        char a[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &w[i].addr, a, sizeof a);
        printf("#   %s  %s  %s  policy %s\n", w[i].ifname, a, ids[i], w[i].policy);
    }
    fputs(table, stdout);
    /* nftables' own verdict on the text, when this user may ask it (a
     * dry run lists the ruleset; nothing is changed). */
    int drc = ink_fw_dry_run(table, &err);
    if (drc == 0)
        fprintf(stderr, "nftables accepts the table (dry run)\n");
    else if (strstr(err.msg, "Operation not permitted") || strstr(err.msg, "ermission"))
        fprintf(stderr, "nftables dry run skipped (needs root): the syntax above is Ink's own\n");
    else {
        fprintf(stderr, "nftables refuses the rendered table: %s\n", err.msg);
        rc = 1;
    }
    for (size_t i = 0; i < set.n; i++)
        fprintf(stderr, "%s: ok\n", set.items[i]->path);
    free(table);
    free(w);
    free(ids);
    ink_policy_set_free(&set);
    return rc;
}

/* ------------------------------------------------------------ show */

typedef struct shown_wl {
    char ifname[IFNAMSIZ];
    char id[INK_NET_WORKLOAD_ID_MAX + 1];
    char app[64];
    char addr[INET_ADDRSTRLEN];
    char policy[64];
    char project[80];
    char *allow;   /* "; "-separated */
    char *blocked; /* ", "-separated */
} shown_wl;

typedef struct show_ctx {
    shown_wl *w;
    size_t n;
} show_ctx;

/* The workload of an interface. Only workload_ifs makes new ones: an
 * element elsewhere for an interface not in it (a counter left from a
 * removed workload) is not a workload. */
static shown_wl *wl_for(show_ctx *c, const char *ifname, bool create)
{
    if (!ifname || strlen(ifname) >= IFNAMSIZ)
        return NULL;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->w[i].ifname, ifname) == 0)
            return &c->w[i];
    if (!create)
        return NULL;
    c->w = ink_xrealloc(c->w, (c->n + 1) * sizeof *c->w);
    shown_wl *w = &c->w[c->n++];
    memset(w, 0, sizeof *w);
    snprintf(w->ifname, sizeof w->ifname, "%s", ifname);
    return w;
}

static void append(char **s, const char *sep, const char *text)
{
    char *n = *s ? ink_xasprintf("%s%s%s", *s, sep, text) : ink_xstrdup(text);
    free(*s);
    *s = n;
}

/* An address element of the JSON listing: "a.b.c.d", {"prefix": ...} or
 * {"range": [...]}. */
static void format_addr(json_t *v, char *out, size_t len)
{
    json_t *p = json_object_get(v, "prefix");
    json_t *r = json_object_get(v, "range");
    if (json_is_string(v))
        snprintf(out, len, "%s", json_string_value(v));
    else if (p)
        snprintf(out, len, "%s/%d", json_string_value(json_object_get(p, "addr")) ?: "?",
                 (int)json_integer_value(json_object_get(p, "len")));
    else if (json_is_array(r))
        snprintf(out, len, "%s-%s", json_string_value(json_array_get(r, 0)) ?: "?",
                 json_string_value(json_array_get(r, 1)) ?: "?");
    else
        snprintf(out, len, "?");
}

static void format_ports(json_t *v, char *out, size_t len)
{
    json_t *r = json_object_get(v, "range");
    if (json_is_integer(v))
        snprintf(out, len, "port %lld", (long long)json_integer_value(v));
    else if (json_is_array(r) && json_integer_value(json_array_get(r, 0)) == 0 &&
             json_integer_value(json_array_get(r, 1)) == 65535)
        snprintf(out, len, "every port");
    else if (json_is_array(r))
        snprintf(out, len, "ports %lld-%lld", (long long)json_integer_value(json_array_get(r, 0)),
                 (long long)json_integer_value(json_array_get(r, 1)));
    else
        snprintf(out, len, "?");
}

static void read_set(show_ctx *c, const char *name, json_t *elems)
{
    size_t i;
    json_t *e;
    json_array_foreach(elems, i, e)
    {
        if (strcmp(name, "workload_ifs") == 0) {
            wl_for(c, json_string_value(e), true);
        } else if (strcmp(name, "workload_src") == 0) {
            json_t *cc = json_object_get(e, "concat");
            shown_wl *w = wl_for(c, json_string_value(json_array_get(cc, 0)), false);
            if (w)
                format_addr(json_array_get(cc, 1), w->addr, sizeof w->addr);
        } else if (strcmp(name, "egress_policy") == 0 || strcmp(name, "project_of") == 0) {
            /* [key, {"jump": {"target": "pol_x"}}] */
            shown_wl *w = wl_for(c, json_string_value(json_array_get(e, 0)), false);
            json_t *j = json_object_get(json_array_get(e, 1), "jump");
            const char *target = json_string_value(json_object_get(j, "target"));
            if (!w || !target || strlen(target) < 4)
                continue;
            if (name[0] == 'e')
                snprintf(w->policy, sizeof w->policy, "%s", target + 4);
            else
                snprintf(w->project, sizeof w->project, "%s", target + 4);
        } else if (strcmp(name, "allow4") == 0) {
            json_t *cc = json_object_get(e, "concat");
            shown_wl *w = wl_for(c, json_string_value(json_array_get(cc, 0)), false);
            if (!w)
                continue;
            char a[96], p[48], text[160];
            format_addr(json_array_get(cc, 1), a, sizeof a);
            format_ports(json_array_get(cc, 2), p, sizeof p);
            snprintf(text, sizeof text, "%s %s", a, p);
            append(&w->allow, "; ", text);
        } else if (strncmp(name, "blk_", 4) == 0) {
            json_t *inner = json_object_get(e, "elem");
            shown_wl *w =
                wl_for(c, json_string_value(inner ? json_object_get(inner, "val") : e), false);
            json_t *cnt = json_object_get(inner, "counter");
            if (!w || !cnt)
                continue;
            long long pk = (long long)json_integer_value(json_object_get(cnt, "packets"));
            if (pk == 0)
                continue;
            char text[96];
            snprintf(text, sizeof text, "%s %lld", name + 4, pk);
            append(&w->blocked, ", ", text);
        }
    }
}

/* Workload ids of this node (state directory and desired set), by their
 * interface names. */
static void name_workloads(show_ctx *c, const char *state_dir)
{
    ink_desired d = {0};
    ink_err err = {0};
    if (ink_desired_load(&d, state_dir, &err) == 0) {
        for (size_t i = 0; i < d.n; i++) {
            char ifname[IFNAMSIZ];
            ink_net_host_ifname(d.items[i]->workload_id, ifname);
            for (size_t k = 0; k < c->n; k++) {
                if (strcmp(c->w[k].ifname, ifname) == 0) {
                    snprintf(c->w[k].id, sizeof c->w[k].id, "%s", d.items[i]->workload_id);
                    snprintf(c->w[k].app, sizeof c->w[k].app, "%s", d.items[i]->app);
                }
            }
        }
        ink_desired_free(&d);
    }
    cleanup_free char *dir = ink_xasprintf("%s/workloads", state_dir);
    DIR *dh = opendir(dir);
    if (!dh)
        return;
    struct dirent *e;
    while ((e = readdir(dh))) {
        if (!ink_net_valid_workload_id(e->d_name))
            continue;
        char ifname[IFNAMSIZ];
        ink_net_host_ifname(e->d_name, ifname);
        for (size_t k = 0; k < c->n; k++)
            if (strcmp(c->w[k].ifname, ifname) == 0 && !c->w[k].id[0])
                snprintf(c->w[k].id, sizeof c->w[k].id, "%s", e->d_name);
    }
    closedir(dh);
}

static int cmp_shown(const void *a, const void *b)
{
    const shown_wl *x = a, *y = b;
    int c = strcmp(x->id[0] ? x->id : "~", y->id[0] ? y->id : "~");
    return c ? c : strcmp(x->ifname, y->ifname);
}

static int policy_show(const ink_agent_config *cfg, int argc)
{
    if (argc != 0) {
        policy_usage(stderr);
        return 2;
    }
    ink_err err = {0};
    cleanup_free char *text = NULL, *json = NULL;
    bool absent = false;
    if (ink_fw_list_table(false, true, &text, &absent, &err) < 0 ||
        (!absent && ink_fw_list_table(true, false, &json, &absent, &err) < 0)) {
        fprintf(stderr, "ink-agent policy show: %s\n", err.msg);
        return 1;
    }
    if (absent) {
        printf("No table inet ink in this network namespace: no workload has run on this node "
               "yet, or someone removed it (a running agent restores it within "
               "firewall_resync).\n");
        return 1;
    }
    printf("# table inet ink as the kernel has it (set elements left out; per workload below)\n");
    fputs(text, stdout);

    json_t *root = json_loads(json, 0, NULL);
    show_ctx c = {0};
    /* workload_ifs first: it says which interfaces are workloads. */
    for (int pass = 0; pass < 2; pass++) {
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(root, "nftables"), i, item)
        {
            json_t *set = json_object_get(item, "set");
            if (!set)
                set = json_object_get(item, "map");
            const char *name = json_string_value(json_object_get(set, "name"));
            if (name && (strcmp(name, "workload_ifs") == 0) == (pass == 0))
                read_set(&c, name, json_object_get(set, "elem"));
        }
    }
    json_decref(root);
    name_workloads(&c, cfg->state_dir);
    if (c.n > 1)
        qsort(c.w, c.n, sizeof *c.w, cmp_shown);
    printf("\n# %zu workload%s\n", c.n, c.n == 1 ? "" : "s");
    for (size_t k = 0; k < c.n; k++) {
        shown_wl *w = &c.w[k];
        printf("\nworkload %s%s%s%s  %s  %s\n", w->id[0] ? w->id : "(unknown to this agent)",
               w->app[0] ? " (app " : "", w->app, w->app[0] ? ")" : "", w->ifname,
               w->addr[0] ? w->addr : "-");
        printf("  policy    %s\n",
               w->policy[0] ? w->policy : "(none: everything it sends is dropped as unassigned)");
        printf("  project   %s\n", w->project[0] ? w->project : "(none)");
        printf("  allow     %s\n", w->allow ? w->allow : "-");
        printf("  dropped   %s\n", w->blocked ? w->blocked : "nothing");
        free(w->allow);
        free(w->blocked);
    }
    free(c.w);
    return 0;
}

int ink_policy_cli(const ink_agent_config *cfg, int argc, char **argv)
{
    if (argc < 1) {
        policy_usage(stderr);
        return 2;
    }
    if (strcmp(argv[0], "check") == 0)
        return policy_check(cfg, argc - 1, argv + 1);
    if (strcmp(argv[0], "show") == 0)
        return policy_show(cfg, argc - 1);
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "help") == 0) {
        policy_usage(stdout);
        return 0;
    }
    fprintf(stderr, "ink-agent policy: unknown command '%s'\n", argv[0]);
    policy_usage(stderr);
    return 2;
}
