/* The agent's node resolver (node-agent/dns/dns.h): started after the
 * workload network is open, fed from the desired set (who is which app of
 * which project) joined with the supervisor's status (address, and whether
 * the workload is ready), stopped before the supervisor.
 *
 * A resolver that cannot start is not a reason to stop the agent: the
 * workloads run on without name resolution while it is retried (and each
 * failure is logged as an error). Only a bad configuration (dns_upstream,
 * dns_user) stops the agent from starting, as any other bad option does. */
#include "agent.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "egress.h"
#include "log.h"
#include "net.h"
#include "util.h"

typedef struct named {
    char workload_id[INK_NET_WORKLOAD_ID_MAX + 1];
    char project[64], app[64];
    char policy[INK_EGRESS_POLICY_NAME_MAX + 1];
    char *hosts; /* the host names of its egress_allow, '\n'-separated; NULL: none */
} named;

static int cmp_named(const void *a, const void *b)
{
    return strcmp(((const named *)a)->workload_id, ((const named *)b)->workload_id);
}

/* The host-name entries of the assignment's egress_allow ("api.example.com"
 * of "api.example.com:443"), '\n'-separated; NULL when there are none. */
static char *allow_hosts(const Ink__V1__Assignment *as)
{
    char *out = NULL;
    for (size_t i = 0; i < as->n_egress_allow; i++) {
        ink_egress_allow e;
        ink_err err = {0};
        if (ink_egress_allow_parse(as->egress_allow[i], &e, &err) < 0 || !e.is_host)
            continue;
        char *next = out ? ink_xasprintf("%s\n%s", out, e.host) : ink_xstrdup(e.host);
        free(out);
        out = next;
    }
    return out;
}

/* Every workload of the desired set with an address: a workload no longer
 * desired is being removed, and its name goes first. */
static size_t collect(void *arg, ink_dns_workload **out)
{
    ink_agent *a = arg;
    pthread_mutex_lock(&a->mu);
    size_t nd = a->desired.n;
    named *names = ink_xcalloc(nd ? nd : 1, sizeof *names);
    for (size_t i = 0; i < nd; i++) {
        const Ink__V1__Assignment *as = a->desired.items[i];
        snprintf(names[i].workload_id, sizeof names[i].workload_id, "%s", as->workload_id);
        snprintf(names[i].project, sizeof names[i].project, "%s", as->project);
        snprintf(names[i].app, sizeof names[i].app, "%s", as->app);
        snprintf(names[i].policy, sizeof names[i].policy, "%s", as->egress ? as->egress : "");
        names[i].hosts = allow_hosts(as);
    }
    pthread_mutex_unlock(&a->mu);
    qsort(names, nd, sizeof *names, cmp_named);

    Ink__V1__WorkloadStatus **st = NULL;
    size_t ns = ink_supervisor_status(a->sup, &st);
    ink_dns_workload *w = ink_xcalloc(ns ? ns : 1, sizeof *w);
    size_t n = 0;
    for (size_t i = 0; i < ns; i++) {
        named key = {0};
        snprintf(key.workload_id, sizeof key.workload_id, "%s", st[i]->workload_id);
        const named *d = bsearch(&key, names, nd, sizeof *names, cmp_named);
        struct in_addr addr;
        if (!d || !st[i]->address || inet_pton(AF_INET, st[i]->address, &addr) != 1)
            continue;
        ink_dns_workload *x = &w[n++];
        x->addr = addr;
        snprintf(x->project, sizeof x->project, "%s", d->project);
        snprintf(x->app, sizeof x->app, "%s", d->app);
        char ifname[IFNAMSIZ];
        ink_net_host_ifname(d->workload_id, ifname);
        x->ifindex = if_nametoindex(ifname);
        x->serving = st[i]->state == INK__V1__WORKLOAD_STATUS__STATE__RUNNING;
        /* What it may resolve follows what it may reach (policy.h,
         * resolve): a resolver that forwards any name would carry data
         * out of a workload that may connect nowhere. */
        switch (ink_supervisor_resolve_mode(a->sup, d->policy)) {
        case INK_POL_RESOLVE_ANY:
            x->forward = true;
            break;
        case INK_POL_RESOLVE_ALLOWLIST:
            x->forward_names = d->hosts ? ink_xstrdup(d->hosts) : NULL;
            break;
        case INK_POL_RESOLVE_INTERNAL:
            break;
        }
    }
    ink_supervisor_status_free(st, ns);
    for (size_t i = 0; i < nd; i++)
        free(names[i].hosts);
    free(names);
    *out = w;
    return n;
}

int ink_agent_dns_start(ink_agent *a, ink_err *err)
{
    const ink_agent_config *cfg = a->cfg;
    if (!cfg->dns) {
        LOG_INFO("workload DNS off (dns = false): sandboxes keep their images' resolv.conf");
        return 0;
    }
    cleanup_free char *run_dir = ink_xasprintf("%s/dns", cfg->state_dir);
    ink_dns_config dc = {
        .workload_cidr = cfg->workload_cidr,
        .upstream = cfg->dns_upstream,
        .user = cfg->dns_user,
        .run_dir = run_dir,
        .collect = collect,
        .arg = a,
    };
    ink_dns *d;
    if (ink_dns_start(&dc, &d, err) < 0)
        return -1;
    pthread_mutex_lock(&a->mu);
    a->dns = d;
    pthread_mutex_unlock(&a->mu);
    return 0;
}

void ink_agent_dns_stop(ink_agent *a)
{
    pthread_mutex_lock(&a->mu);
    ink_dns *d = a->dns;
    a->dns = NULL;
    pthread_mutex_unlock(&a->mu);
    ink_dns_stop(d);
}
