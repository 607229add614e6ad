/* Rendering the table (render.h). Every value printed here comes from a
 * parsed, validated value (addresses through inet_ntop, numbers, names
 * checked against [a-z0-9-]), never from text a file or an assignment
 * held: nothing can smuggle nft syntax into the batch. */
#include "render.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ------------------------------------------------------------ values */

int ink_fw_node_parse_cidr(const char *cidr, ink_fw_node *node, ink_err *err)
{
    char buf[INET_ADDRSTRLEN + 4];
    const char *slash = strchr(cidr, '/');
    size_t n = slash ? (size_t)(slash - cidr) : 0;
    if (!slash || n >= INET_ADDRSTRLEN)
        return ink_err_set(err, 0, "workload range '%s' is not an IPv4 CIDR", cidr);
    memcpy(buf, cidr, n);
    buf[n] = '\0';
    char *end = NULL;
    long prefix = strtol(slash + 1, &end, 10);
    if (inet_pton(AF_INET, buf, &node->net) != 1 || !slash[1] || *end || prefix < 1 || prefix > 30)
        return ink_err_set(err, 0, "workload range '%s' is not an IPv4 CIDR (/1-/30)", cidr);
    uint32_t mask = htonl(~0u << (32 - prefix));
    if (node->net.s_addr & ~mask)
        return ink_err_set(err, 0, "workload range '%s' has host bits set", cidr);
    node->prefix = (int)prefix;
    return 0;
}

bool ink_fw_project_ok(const char *project)
{
    return project && ink_valid_name(project);
}

static void print_ip4(FILE *f, uint32_t host_order)
{
    struct in_addr a = {.s_addr = htonl(host_order)};
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, text, sizeof text);
    fputs(text, f);
}

static void print_addr(FILE *f, struct in_addr a)
{
    print_ip4(f, ntohl(a.s_addr));
}

/* An address range as nft reads it: one address, a prefix when the range
 * is one, else lo-hi. */
static void print_range4(FILE *f, uint32_t lo, uint32_t hi)
{
    print_ip4(f, lo);
    if (lo == hi)
        return;
    uint64_t size = (uint64_t)hi - lo + 1;
    if ((size & (size - 1)) == 0 && (lo & (uint32_t)(size - 1)) == 0) {
        int len = 32;
        while (size > 1) {
            size >>= 1;
            len--;
        }
        fprintf(f, "/%d", len);
        return;
    }
    fputc('-', f);
    print_ip4(f, hi);
}

static void print_ports(FILE *f, uint16_t lo, uint16_t hi)
{
    if (lo == hi)
        fprintf(f, "%u", lo);
    else
        fprintf(f, "%u-%u", lo, hi);
}

static void print_cidr(FILE *f, const ink_pol_cidr *c)
{
    char a[INET6_ADDRSTRLEN];
    inet_ntop(c->family, c->addr, a, sizeof a);
    fputs(a, f);
    if (c->prefix != (c->family == AF_INET ? 32 : 128))
        fprintf(f, "/%d", c->prefix);
}

/* ------------------------------------------------------------ allowlists */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_ports(const void *a, const void *b)
{
    const ink_fw_allow *x = a, *y = b;
    return (int)x->pmin - (int)y->pmin;
}

size_t ink_fw_allow_normalize(const ink_fw_allow *in, size_t n, ink_fw_allow **out)
{
    *out = NULL;
    if (n == 0)
        return 0;
    /* Elementary address intervals between every box edge; each gets the
     * union of the port ranges of the boxes over it; neighbours with the
     * same ports merge again. */
    uint64_t *edges = ink_xcalloc(2 * n, sizeof *edges);
    for (size_t i = 0; i < n; i++) {
        edges[2 * i] = in[i].lo;
        edges[2 * i + 1] = (uint64_t)in[i].hi + 1;
    }
    qsort(edges, 2 * n, sizeof *edges, cmp_u64); /* n > 0 here */
    size_t ne = 0;
    for (size_t i = 0; i < 2 * n; i++)
        if (ne == 0 || edges[ne - 1] != edges[i])
            edges[ne++] = edges[i];

    ink_fw_allow *res = NULL;
    size_t nres = 0, cap = 0;
    ink_fw_allow *ports = ink_xcalloc(n, sizeof *ports);
    /* The previous elementary interval's result, to merge into. */
    size_t prev_start = 0, prev_n = 0;
    bool have_prev = false;
    for (size_t e = 0; e + 1 < ne; e++) {
        uint32_t lo = (uint32_t)edges[e], hi = (uint32_t)(edges[e + 1] - 1);
        size_t np = 0;
        for (size_t i = 0; i < n; i++)
            if (in[i].lo <= lo && in[i].hi >= hi)
                ports[np++] = in[i];
        if (np == 0) {
            have_prev = false;
            continue;
        }
        if (np > 1)
            qsort(ports, np, sizeof *ports, cmp_ports);
        size_t m = 1;
        for (size_t i = 1; i < np; i++) {
            if ((unsigned)ports[i].pmin <= (unsigned)ports[m - 1].pmax + 1) {
                if (ports[i].pmax > ports[m - 1].pmax)
                    ports[m - 1].pmax = ports[i].pmax;
            } else {
                ports[m++] = ports[i];
            }
        }
        bool same = have_prev && prev_n == m && res[prev_start].hi + 1 == lo;
        for (size_t i = 0; same && i < m; i++)
            same = res[prev_start + i].pmin == ports[i].pmin &&
                   res[prev_start + i].pmax == ports[i].pmax;
        if (same) {
            for (size_t i = 0; i < m; i++)
                res[prev_start + i].hi = hi;
            continue;
        }
        if (nres + m > cap) {
            cap = (nres + m) * 2;
            res = ink_xrealloc(res, cap * sizeof *res);
        }
        prev_start = nres;
        prev_n = m;
        have_prev = true;
        for (size_t i = 0; i < m; i++)
            res[nres++] = (ink_fw_allow){lo, hi, ports[i].pmin, ports[i].pmax};
    }
    free(ports);
    free(edges);
    *out = res;
    return nres;
}

/* ------------------------------------------------------------ policy chains */

static void print_ports_match(FILE *f, const ink_pol_rule *r)
{
    if (r->nports == 0)
        return;
    if (r->nports == 1) {
        print_ports(f, r->ports[0].min, r->ports[0].max);
        return;
    }
    fputs("{ ", f);
    for (size_t i = 0; i < r->nports; i++) {
        if (i)
            fputs(", ", f);
        print_ports(f, r->ports[i].min, r->ports[i].max);
    }
    fputs(" }", f);
}

/* The protocol and port part of a rule's match. allowlist needs a
 * transport header for th dport even without a protocol in the rule. */
static void print_l4(FILE *f, const ink_pol_rule *r)
{
    const char *proto = r->proto == IPPROTO_TCP ? "tcp" : r->proto == IPPROTO_UDP ? "udp" : NULL;
    if (proto && r->nports) {
        fprintf(f, "%s dport ", proto);
        print_ports_match(f, r);
        fputc(' ', f);
    } else if (proto) {
        fprintf(f, "meta l4proto %s ", proto);
    } else if (r->nports) {
        fputs("meta l4proto { tcp, udp } th dport ", f);
        print_ports_match(f, r);
        fputc(' ', f);
    } else if (r->target == INK_POL_ALLOWLIST) {
        fputs("meta l4proto { tcp, udp } ", f);
    }
}

static void print_action(FILE *f, const ink_pol_rule *r, const ink_policy *pol)
{
    if (r->verdict == INK_POL_ALLOW)
        fputs("accept", f);
    else
        fprintf(f, "add @blk_%s { iifname } drop", r->category);
    fprintf(f, " comment \"%s:%d\"\n", pol->file, r->line);
}

/* One family's addresses of a rule: "ip daddr X " or "ip6 daddr { X, Y } ". */
static bool print_daddr(FILE *f, const ink_pol_rule *r, int family)
{
    size_t n = 0;
    for (size_t i = 0; i < r->naddrs; i++)
        n += r->addrs[i].family == family;
    if (n == 0)
        return false;
    fprintf(f, "%s daddr ", family == AF_INET ? "ip" : "ip6");
    if (n > 1)
        fputs("{ ", f);
    size_t k = 0;
    for (size_t i = 0; i < r->naddrs; i++) {
        if (r->addrs[i].family != family)
            continue;
        if (k++)
            fputs(", ", f);
        print_cidr(f, &r->addrs[i]);
    }
    fputs(n > 1 ? " } " : " ", f);
    return true;
}

void ink_fw_render_policy_chain(FILE *f, const ink_policy *pol)
{
    fprintf(f, "\tchain pol_%s {\n", pol->name);
    for (size_t i = 0; i < pol->nrules; i++) {
        const ink_pol_rule *r = &pol->rules[i];
        switch (r->target) {
        case INK_POL_ANY:
            fputs("\t\t", f);
            print_l4(f, r);
            print_action(f, r, pol);
            break;
        case INK_POL_PROJECT:
            /* The project's chain accepts its addresses and returns for
             * anything else: the vmap is the verdict. */
            fputs("\t\t", f);
            print_l4(f, r);
            fprintf(f, "iifname vmap @project_of comment \"%s:%d\"\n", pol->file, r->line);
            break;
        case INK_POL_TENANTS:
            fputs("\t\t", f);
            print_l4(f, r);
            fputs("ip daddr @workload_addrs ", f);
            print_action(f, r, pol);
            break;
        case INK_POL_ALLOWLIST:
            fputs("\t\t", f);
            print_l4(f, r);
            fputs("iifname . ip daddr . th dport @allow4 ", f);
            print_action(f, r, pol);
            break;
        case INK_POL_ADDRS:
            for (int fam = 0; fam < 2; fam++) {
                int family = fam == 0 ? AF_INET : AF_INET6;
                char *buf = NULL;
                size_t len = 0;
                FILE *m = open_memstream(&buf, &len);
                if (!m)
                    abort();
                bool any = print_daddr(m, r, family);
                fclose(m);
                if (any) {
                    fputs("\t\t", f);
                    print_l4(f, r);
                    fputs(buf, f);
                    print_action(f, r, pol);
                }
                free(buf);
            }
            break;
        }
    }
    fprintf(f, "\t\tadd @blk_%s { iifname } drop comment \"%s: nothing matched\"\n",
            INK_CATEGORY_UNMATCHED, pol->file);
    fputs("\t}\n", f);
}

/* ------------------------------------------------------------ elements */

static void print_ifname(FILE *f, const ink_fw_workload *w)
{
    /* Host interface names are "ink" + hex digits (net.h): nothing to
     * escape. */
    fprintf(f, "\"%s\"", w->ifname);
}

static void print_allow_elem(FILE *f, const ink_fw_workload *w, const ink_fw_allow *a)
{
    print_ifname(f, w);
    fputs(" . ", f);
    print_range4(f, a->lo, a->hi);
    fputs(" . ", f);
    print_ports(f, a->pmin, a->pmax);
}

typedef enum {
    E_IFNAME,
    E_ADDR,
    E_SRC,
    E_POLICY,
    E_PROJECT,
} elem_kind;

static bool has_elem(const ink_fw_workload *w, elem_kind k)
{
    switch (k) {
    case E_POLICY:
        return w->policy != NULL;
    case E_PROJECT:
        return ink_fw_project_ok(w->project);
    default:
        return true;
    }
}

static void print_elem(FILE *f, const ink_fw_workload *w, elem_kind k, bool with_value)
{
    switch (k) {
    case E_IFNAME:
        print_ifname(f, w);
        break;
    case E_ADDR:
        print_addr(f, w->addr);
        break;
    case E_SRC:
        print_ifname(f, w);
        fputs(" . ", f);
        print_addr(f, w->addr);
        break;
    case E_POLICY:
        print_ifname(f, w);
        if (with_value)
            fprintf(f, " : jump pol_%s", w->policy);
        break;
    case E_PROJECT:
        print_ifname(f, w);
        if (with_value)
            fprintf(f, " : jump prj_%s", w->project);
        break;
    }
}

/* "elements = { a, b }" inside a set declaration, one element a line (an
 * nft error then quotes one element, not a whole set). */
static void print_elements(FILE *f, const ink_fw_workload *w, size_t n, elem_kind k)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!has_elem(&w[i], k))
            continue;
        fputs(count++ ? ",\n\t\t\t" : "\t\telements = {\n\t\t\t", f);
        print_elem(f, &w[i], k, true);
    }
    if (count)
        fputs("\n\t\t}\n", f);
}

/* ------------------------------------------------------------ the table */

static int cmp_project(const void *a, const void *b)
{
    const ink_fw_workload *const *x = a, *const *y = b;
    return strcmp((*x)->project, (*y)->project);
}

static void render_project(FILE *f, const char *project, const ink_fw_workload *const *members,
                           size_t n)
{
    fprintf(f, "\tset prj_%s_addrs {\n\t\ttype ipv4_addr\n", project);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ",\n\t\t\t" : "\t\telements = {\n\t\t\t", f);
        print_addr(f, members[i]->addr);
    }
    if (n)
        fputs("\n\t\t}\n", f);
    fputs("\t}\n", f);
    fprintf(f, "\tchain prj_%s {\n\t\tip daddr @prj_%s_addrs accept\n\t}\n", project, project);
}

static void render_counters(FILE *f, const char *category, const ink_fw_workload *w, size_t n)
{
    fprintf(f, "\tset blk_%s {\n\t\ttype ifname\n\t\tsize 65536\n\t\tflags dynamic\n\t\tcounter\n",
            category);
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t c = 0; c < w[i].ncounters; c++) {
            const ink_fw_counter *k = &w[i].counters[c];
            if (strcmp(k->category, category) != 0)
                continue;
            fputs(count++ ? ",\n\t\t\t" : "\t\telements = {\n\t\t\t", f);
            print_ifname(f, &w[i]);
            fprintf(f, " counter packets %llu bytes %llu", (unsigned long long)k->packets,
                    (unsigned long long)k->bytes);
        }
    }
    if (count)
        fputs("\n\t\t}\n", f);
    fputs("\t}\n", f);
}

void ink_fw_render_table(FILE *f, const ink_policy_set *pols, const ink_fw_node *node,
                         const ink_fw_workload *w, size_t n)
{
    char gw[INET_ADDRSTRLEN], net[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &node->gateway, gw, sizeof gw);
    inet_ntop(AF_INET, &node->net, net, sizeof net);

    /* Creating the table first makes the delete succeed whether or not
     * it exists; the three are one transaction, so packets see the old
     * table or the new one, never none. */
    fputs("add table inet ink\ndelete table inet ink\ntable inet ink {\n", f);

    fputs("\tset workload_ifs {\n\t\ttype ifname\n", f);
    print_elements(f, w, n, E_IFNAME);
    fputs("\t}\n\tset workload_addrs {\n\t\ttype ipv4_addr\n", f);
    print_elements(f, w, n, E_ADDR);
    fputs("\t}\n\tset workload_src {\n\t\ttype ifname . ipv4_addr\n", f);
    print_elements(f, w, n, E_SRC);
    fputs("\t}\n\tmap egress_policy {\n\t\ttype ifname : verdict\n", f);
    print_elements(f, w, n, E_POLICY);
    fputs("\t}\n\tmap project_of {\n\t\ttype ifname : verdict\n", f);
    print_elements(f, w, n, E_PROJECT);
    fputs("\t}\n\tset allow4 {\n\t\ttype ifname . ipv4_addr . inet_service\n\t\tflags interval\n",
          f);
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t a = 0; a < w[i].nallow; a++) {
            fputs(count++ ? ",\n\t\t\t" : "\t\telements = {\n\t\t\t", f);
            print_allow_elem(f, &w[i], &w[i].allow[a]);
        }
    }
    if (count)
        fputs("\n\t\t}\n", f);
    fputs("\t}\n", f);

    const char **cats = NULL;
    size_t ncats = ink_policy_categories(pols, &cats);
    for (size_t c = 0; c < ncats; c++)
        render_counters(f, cats[c], w, n);
    free(cats);

    /* Projects: workloads grouped by project name. */
    const ink_fw_workload **by = ink_xcalloc(n ? n : 1, sizeof *by);
    size_t nby = 0;
    for (size_t i = 0; i < n; i++)
        if (ink_fw_project_ok(w[i].project))
            by[nby++] = &w[i];
    if (nby > 1)
        qsort(by, nby, sizeof *by, cmp_project);
    for (size_t i = 0; i < nby;) {
        size_t j = i;
        while (j < nby && strcmp(by[j]->project, by[i]->project) == 0)
            j++;
        render_project(f, by[i]->project, by + i, j - i);
        i = j;
    }
    free(by);

    for (size_t i = 0; pols && i < pols->n; i++)
        ink_fw_render_policy_chain(f, pols->items[i]);

    fprintf(f,
            "\tchain antispoof {\n"
            "\t\tiifname . ip saddr @workload_src return\n"
            "\t\tadd @blk_%s { iifname } drop comment \"source is not the workload's address\"\n"
            "\t}\n",
            INK_CATEGORY_SPOOFED);
    fprintf(f,
            "\tchain egress {\n"
            "\t\tjump antispoof\n"
            "\t\tct state established,related accept\n"
            "\t\tct state invalid drop\n"
            "\t\tiifname vmap @egress_policy\n"
            "\t\tadd @blk_%s { iifname } drop comment \"no usable egress policy\"\n"
            "\t}\n",
            INK_CATEGORY_UNASSIGNED);
    fprintf(f,
            "\tchain from_workload {\n"
            "\t\tjump antispoof\n"
            "\t\tct state established,related accept\n"
            "\t\tip daddr %s meta l4proto { tcp, udp } th dport 53 accept comment \"the node's "
            "resolver\"\n"
            "\t\tadd @blk_%s { iifname } drop comment \"the node's own addresses\"\n"
            "\t}\n",
            gw, INK_CATEGORY_NODE);
    /* A packet from the workload range on an interface Ink does not know
     * (a workload's veth after its elements went, a spoofer elsewhere) is
     * dropped; so is anything from outside to a workload that is not a
     * reply: the agent's forwarder reaches published ports from the node
     * itself (output), not through forward. */
    fprintf(f,
            "\tchain forward {\n"
            "\t\ttype filter hook forward priority filter; policy accept;\n"
            "\t\tiifname @workload_ifs jump egress\n"
            "\t\tip saddr %s/%d add @blk_%s { iifname } drop\n"
            "\t\toifname @workload_ifs ct state established,related accept\n"
            "\t\toifname @workload_ifs counter drop comment \"to a workload from outside\"\n"
            "\t\tip daddr %s/%d counter drop comment \"to a workload address Ink does not know\"\n"
            "\t}\n",
            net, node->prefix, INK_CATEGORY_UNASSIGNED, net, node->prefix);
    fprintf(f,
            "\tchain input {\n"
            "\t\ttype filter hook input priority filter; policy accept;\n"
            "\t\tiifname @workload_ifs jump from_workload\n"
            "\t\tip saddr %s/%d iifname != \"lo\" add @blk_%s { iifname } drop\n"
            "\t}\n",
            net, node->prefix, INK_CATEGORY_UNASSIGNED);
    fprintf(f,
            "\tchain postrouting {\n"
            "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
            "\t\tip saddr %s/%d oifname != @workload_ifs masquerade\n"
            "\t}\n",
            net, node->prefix);
    fputs("}\n", f);
}

/* ------------------------------------------------------------ increments */

static void one_elem(FILE *f, const char *verb, const char *set, const ink_fw_workload *w,
                     elem_kind k)
{
    if (!has_elem(w, k))
        return;
    fprintf(f, "%s element inet ink %s { ", verb, set);
    print_elem(f, w, k, strcmp(verb, "add") == 0);
    fputs(" }\n", f);
}

void ink_fw_render_allow(FILE *f, const char *verb, const ink_fw_workload *w)
{
    if (w->nallow == 0)
        return;
    fprintf(f, "%s element inet ink allow4 {\n", verb);
    for (size_t a = 0; a < w->nallow; a++) {
        fputs(a ? ",\n\t" : "\t", f);
        print_allow_elem(f, w, &w->allow[a]);
    }
    fputs("\n}\n", f);
}

void ink_fw_render_add(FILE *f, const ink_fw_workload *w, bool project_new)
{
    if (project_new && ink_fw_project_ok(w->project)) {
        fprintf(f,
                "add set inet ink prj_%s_addrs { type ipv4_addr; }\n"
                "add chain inet ink prj_%s\n"
                "add rule inet ink prj_%s ip daddr @prj_%s_addrs accept\n",
                w->project, w->project, w->project, w->project);
    }
    one_elem(f, "add", "workload_ifs", w, E_IFNAME);
    one_elem(f, "add", "workload_addrs", w, E_ADDR);
    one_elem(f, "add", "workload_src", w, E_SRC);
    if (ink_fw_project_ok(w->project)) {
        fprintf(f, "add element inet ink prj_%s_addrs { ", w->project);
        print_addr(f, w->addr);
        fputs(" }\n", f);
    }
    one_elem(f, "add", "project_of", w, E_PROJECT);
    ink_fw_render_allow(f, "add", w);
    one_elem(f, "add", "egress_policy", w, E_POLICY);
}

void ink_fw_render_remove(FILE *f, const ink_fw_workload *w, bool project_gone,
                          const char *const *categories, size_t ncategories, bool reset_counters)
{
    one_elem(f, "delete", "egress_policy", w, E_POLICY);
    one_elem(f, "delete", "project_of", w, E_PROJECT);
    if (ink_fw_project_ok(w->project)) {
        if (project_gone) {
            /* The map element that jumped to the chain goes first (above),
             * in the same transaction: nothing refers to it any more. */
            fprintf(f, "delete chain inet ink prj_%s\ndelete set inet ink prj_%s_addrs\n",
                    w->project, w->project);
        } else {
            fprintf(f, "delete element inet ink prj_%s_addrs { ", w->project);
            print_addr(f, w->addr);
            fputs(" }\n", f);
        }
    }
    ink_fw_render_allow(f, "delete", w);
    one_elem(f, "delete", "workload_src", w, E_SRC);
    one_elem(f, "delete", "workload_addrs", w, E_ADDR);
    one_elem(f, "delete", "workload_ifs", w, E_IFNAME);
    /* A counter element exists only once the workload was blocked; adding
     * it first (a no-op when present) lets the delete succeed either way. */
    for (size_t c = 0; reset_counters && c < ncategories; c++)
        fprintf(f,
                "add element inet ink blk_%s { \"%s\" }\n"
                "delete element inet ink blk_%s { \"%s\" }\n",
                categories[c], w->ifname, categories[c], w->ifname);
}
