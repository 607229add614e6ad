/* A workload's network: address, namespace, routed veth pair. Setup
 * compares what the kernel has with what the workload should have and does
 * only the difference, so it doubles as re-adoption after an agent restart
 * and as repair after a failure half-way. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "util.h"
#include "veth.h"

#define ALIAS_PREFIX "ink:"

struct ink_net {
    pthread_mutex_t mu; /* one setup or teardown at a time */
    ink_ipam *ipam;
    char *netns_dir;
    unsigned mtu;
};

int ink_net_open(const ink_net_config *cfg, ink_net **out, ink_err *err)
{
    if (!cfg->state_dir || !*cfg->state_dir)
        return ink_err_set(err, EINVAL, "workload network: no state directory");
    ink_net *net = ink_xcalloc(1, sizeof *net);
    pthread_mutex_init(&net->mu, NULL);
    net->netns_dir =
        ink_xstrdup(cfg->netns_dir && *cfg->netns_dir ? cfg->netns_dir : INK_NET_DEFAULT_NETNS_DIR);
    net->mtu = cfg->mtu;
    if (ink_ipam_open(cfg->state_dir, cfg->cidr, &net->ipam, err) < 0) {
        ink_net_close(net);
        return ink_err_wrap(err, "workload network");
    }
    *out = net;
    return 0;
}

void ink_net_close(ink_net *net)
{
    if (!net)
        return;
    ink_ipam_close(net->ipam);
    pthread_mutex_destroy(&net->mu);
    free(net->netns_dir);
    free(net);
}

ink_ipam *ink_net_ipam(ink_net *net)
{
    return net->ipam;
}

void ink_workload_net_free(ink_workload_net *w)
{
    if (w) {
        free(w->netns_path);
        w->netns_path = NULL;
    }
}

/* A sysctl of the calling thread's network namespace. */
static int write_sysctl(const char *path, const char *value, bool missing_ok, ink_err *err)
{
    cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        if (missing_ok && errno == ENOENT) /* e.g. IPv6 compiled out */
            return 0;
        return ink_err_set(err, errno, "open %s", path);
    }
    size_t len = strlen(value);
    ssize_t w = write(fd, value, len);
    if (w < 0 || (size_t)w != len)
        return ink_err_set(err, w < 0 ? errno : EIO, "write %s", path);
    return 0;
}

static int disable_ipv6(const char *ifname, ink_err *err)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
    return write_sysctl(path, "1", true, err);
}

static void fill_identity(ink_net *net, const char *id, ink_workload_net *w)
{
    memset(w, 0, sizeof *w);
    snprintf(w->workload_id, sizeof w->workload_id, "%s", id);
    ink_net_host_ifname(id, w->host_ifname);
    w->gateway = ink_ipam_gateway(net->ipam);
    inet_ntop(AF_INET, &w->gateway, w->gateway_str, sizeof w->gateway_str);
}

/* ---- inside the workload's namespace (on a thread that entered it) ---- */

typedef struct inside {
    const ink_workload_net *w;
    int found; /* inspect: eth0 exists */
    ink_link_info eth0;
} inside;

/* Before the veth exists: loopback up, and interfaces created from now on
 * (eth0) start without IPv6. */
static int ns_prepare(void *arg, ink_err *err)
{
    cleanup_nl struct nl_sock *sk = NULL;
    if (ink_nl_open(&sk, err) < 0 || ink_nl_link_up(sk, "lo", err) < 0)
        return -1;
    return write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1", true, err);
}

static int ns_inspect(void *arg, ink_err *err)
{
    inside *in = arg;
    cleanup_nl struct nl_sock *sk = NULL;
    if (ink_nl_open(&sk, err) < 0)
        return -1;
    in->found = ink_nl_link_get(sk, INK_NET_WORKLOAD_IFNAME, &in->eth0, err);
    return in->found < 0 ? -1 : 0;
}

static int ns_delete_eth0(void *arg, ink_err *err)
{
    cleanup_nl struct nl_sock *sk = NULL;
    if (ink_nl_open(&sk, err) < 0)
        return -1;
    return ink_nl_link_delete(sk, INK_NET_WORKLOAD_IFNAME, err);
}

/* eth0: address/32, up, default route via the gateway (on-link: the
 * gateway is not inside any prefix eth0 has). */
static int ns_configure(void *arg, ink_err *err)
{
    inside *in = arg;
    cleanup_nl struct nl_sock *sk = NULL;
    if (ink_nl_open(&sk, err) < 0)
        return -1;
    ink_link_info eth0;
    int r = ink_nl_link_get(sk, INK_NET_WORKLOAD_IFNAME, &eth0, err);
    if (r <= 0)
        return r < 0 ? -1 : ink_err_set(err, ENODEV, "%s is missing", INK_NET_WORKLOAD_IFNAME);
    ink_nl_route def = {
        .dst_len = 0, .ifindex = eth0.ifindex, .gateway = in->w->gateway, .onlink = true};
    if (disable_ipv6(INK_NET_WORKLOAD_IFNAME, err) < 0 ||
        ink_nl_addr_add(sk, eth0.ifindex, in->w->addr, 32, err) < 0 ||
        ink_nl_link_up(sk, INK_NET_WORKLOAD_IFNAME, err) < 0 ||
        ink_nl_route_replace(sk, &def, err) < 0)
        return -1;
    return 0;
}

/* ---- the node side ---------------------------------------------------- */

static int setup_locked(ink_net *net, const char *id, ink_workload_net *w, ink_err *err)
{
    fill_identity(net, id, w);
    if (ink_ipam_allocate(net->ipam, id, &w->addr, err) < 0)
        return -1;
    inet_ntop(AF_INET, &w->addr, w->addr_str, sizeof w->addr_str);
    if (write_sysctl("/proc/sys/net/ipv4/ip_forward", "1", false, err) < 0)
        return ink_err_wrap(err, "enabling IPv4 forwarding");
    if (ink_netns_create(net->netns_dir, id, &w->netns_path, err) < 0)
        return ink_err_wrap(err, "network namespace");
    w->netns_exists = true;
    inside in = {.w = w};
    if (ink_netns_run(w->netns_path, ns_prepare, &in, err) < 0 ||
        ink_netns_run(w->netns_path, ns_inspect, &in, err) < 0)
        return -1;

    cleanup_nl struct nl_sock *sk = NULL;
    if (ink_nl_open(&sk, err) < 0)
        return -1;
    char alias[256];
    snprintf(alias, sizeof alias, ALIAS_PREFIX "%s", id);
    ink_link_info host;
    int h = ink_nl_link_get(sk, w->host_ifname, &host, err);
    if (h < 0)
        return -1;
    if (h == 1) {
        if (!host.is_veth)
            return ink_err_set(err, EEXIST, "interface %s exists and is not a veth",
                               w->host_ifname);
        if (host.alias[0] && strcmp(host.alias, alias) != 0)
            return ink_err_set(err, EEXIST, "interface %s is taken (alias \"%s\")", w->host_ifname,
                               host.alias);
        /* Ours only if its peer is the eth0 in this workload's namespace. */
        w->adopted = in.found == 1 && in.eth0.is_veth && in.eth0.peer_ifindex == host.ifindex &&
                     host.peer_ifindex == in.eth0.ifindex;
        if (!w->adopted) {
            LOG_WARN("replacing a stale veth pair", "workload", id, "ifname", w->host_ifname);
            if (ink_nl_link_delete(sk, w->host_ifname, err) < 0)
                return -1;
        }
    }
    if (!w->adopted) {
        if (in.found == 1 && ink_netns_run(w->netns_path, ns_delete_eth0, &in, err) < 0)
            return -1;
        cleanup_close int nsfd = open(w->netns_path, O_RDONLY | O_CLOEXEC);
        if (nsfd < 0)
            return ink_err_set(err, errno, "open %s", w->netns_path);
        int r =
            ink_nl_veth_create(sk, w->host_ifname, INK_NET_WORKLOAD_IFNAME, nsfd, net->mtu, err);
        if (r == 0)
            r = ink_nl_link_get(sk, w->host_ifname, &host, err);
        if (r < 0)
            return -1;
        if (r == 0)
            return ink_err_set(err, ENODEV, "veth %s vanished after creation", w->host_ifname);
    }
    w->host_ifindex = host.ifindex;

    /* Host side: the gateway address (shared by every workload's veth), up,
     * and the route to the workload's /32. */
    ink_nl_route to_workload = {
        .dst = w->addr, .dst_len = 32, .ifindex = host.ifindex, .prefsrc = w->gateway};
    if ((strcmp(host.alias, alias) != 0 &&
         ink_nl_link_set_alias(sk, w->host_ifname, alias, err) < 0) ||
        disable_ipv6(w->host_ifname, err) < 0 ||
        ink_nl_addr_add(sk, host.ifindex, w->gateway, 32, err) < 0 ||
        ink_nl_link_up(sk, w->host_ifname, err) < 0 ||
        ink_nl_route_replace(sk, &to_workload, err) < 0)
        return -1;
    if (ink_netns_run(w->netns_path, ns_configure, &in, err) < 0)
        return -1;
    LOG_INFO("workload network ready", "workload", id, "ip", w->addr_str, "ifname", w->host_ifname,
             "netns", w->netns_path, "adopted", w->adopted ? "true" : "false");
    return 0;
}

int ink_workload_net_setup(ink_net *net, const char *workload_id, ink_workload_net *out,
                           ink_err *err)
{
    memset(out, 0, sizeof *out);
    if (!ink_net_valid_workload_id(workload_id))
        return ink_err_set(err, EINVAL, "invalid workload id \"%.64s\"",
                           workload_id ? workload_id : "");
    pthread_mutex_lock(&net->mu);
    int rc = setup_locked(net, workload_id, out, err);
    pthread_mutex_unlock(&net->mu);
    if (rc < 0) {
        ink_workload_net_free(out);
        return ink_err_wrap(err, "network of workload %s", workload_id);
    }
    return 0;
}

static int teardown_locked(ink_net *net, const char *id, ink_err *err)
{
    char ifname[IFNAMSIZ], alias[256];
    ink_net_host_ifname(id, ifname);
    snprintf(alias, sizeof alias, ALIAS_PREFIX "%s", id);
    cleanup_nl struct nl_sock *sk = NULL;
    if (ink_nl_open(&sk, err) < 0)
        return -1;
    ink_link_info host;
    int h = ink_nl_link_get(sk, ifname, &host, err);
    if (h < 0)
        return -1;
    if (h == 1 && host.is_veth && (!host.alias[0] || strcmp(host.alias, alias) == 0)) {
        /* The peer (eth0) goes with it, and so do addresses and routes. */
        if (ink_nl_link_delete(sk, ifname, err) < 0)
            return -1;
    } else if (h == 1) {
        LOG_WARN("not deleting an interface of someone else", "workload", id, "ifname", ifname,
                 "alias", host.alias);
    }
    if (ink_netns_delete(net->netns_dir, id, err) < 0)
        return -1;
    if (ink_ipam_release(net->ipam, id, err) < 0)
        return -1;
    LOG_INFO("workload network removed", "workload", id, "ifname", ifname);
    return 0;
}

int ink_workload_net_teardown(ink_net *net, const char *workload_id, ink_err *err)
{
    if (!ink_net_valid_workload_id(workload_id))
        return ink_err_set(err, EINVAL, "invalid workload id \"%.64s\"",
                           workload_id ? workload_id : "");
    pthread_mutex_lock(&net->mu);
    int rc = teardown_locked(net, workload_id, err);
    pthread_mutex_unlock(&net->mu);
    if (rc < 0)
        return ink_err_wrap(err, "removing the network of workload %s", workload_id);
    return 0;
}

int ink_workload_net_lookup(ink_net *net, const char *workload_id, ink_workload_net *out,
                            ink_err *err)
{
    memset(out, 0, sizeof *out);
    if (!ink_net_valid_workload_id(workload_id))
        return ink_err_set(err, EINVAL, "invalid workload id \"%.64s\"",
                           workload_id ? workload_id : "");
    fill_identity(net, workload_id, out);
    int r = ink_ipam_lookup(net->ipam, workload_id, &out->addr, err);
    if (r <= 0)
        return r;
    inet_ntop(AF_INET, &out->addr, out->addr_str, sizeof out->addr_str);
    out->netns_path = ink_xasprintf("%s/%s", net->netns_dir, workload_id);
    cleanup_nl struct nl_sock *sk = NULL;
    ink_link_info host;
    int m = ink_netns_mounted(out->netns_path, err);
    int h =
        m < 0 || ink_nl_open(&sk, err) < 0 ? -1 : ink_nl_link_get(sk, out->host_ifname, &host, err);
    if (h < 0) {
        ink_workload_net_free(out);
        return -1;
    }
    out->netns_exists = m == 1;
    out->host_ifindex = h == 1 ? host.ifindex : 0;
    return 1;
}
