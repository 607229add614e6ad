/* rtnetlink through libnl-route: links, the veth pair, addresses, routes. */
#include "veth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "net.h"

static void link_putp(struct rtnl_link **l)
{
    if (*l)
        rtnl_link_put(*l);
}
static void addr_putp(struct nl_addr **a)
{
    if (*a)
        nl_addr_put(*a);
}
static void rtaddr_putp(struct rtnl_addr **a)
{
    if (*a)
        rtnl_addr_put(*a);
}
static void route_putp(struct rtnl_route **r)
{
    if (*r)
        rtnl_route_put(*r);
}
#define cleanup_link __attribute__((cleanup(link_putp)))
#define cleanup_addr __attribute__((cleanup(addr_putp)))
#define cleanup_rtaddr __attribute__((cleanup(rtaddr_putp)))
#define cleanup_route __attribute__((cleanup(route_putp)))

/* libnl's own codes are negative NLE_*; keep an errno for callers. */
static int nle_errno(int nle)
{
    switch (-nle) {
    case NLE_EXIST:
        return EEXIST;
    case NLE_NODEV:
    case NLE_OBJ_NOTFOUND:
        return ENODEV;
    case NLE_PERM:
        return EPERM;
    case NLE_NOACCESS:
        return EACCES;
    case NLE_NOMEM:
        return ENOMEM;
    case NLE_BUSY:
        return EBUSY;
    case NLE_INVAL:
        return EINVAL;
    case NLE_RANGE:
        return ERANGE;
    case NLE_OPNOTSUPP:
        return EOPNOTSUPP;
    default:
        return EIO;
    }
}

__attribute__((format(printf, 3, 4))) static int nl_fail(ink_err *err, int nle, const char *fmt,
                                                         ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    ink_err_set(err, 0, "%s: %s", what, nl_geterror(nle));
    if (err)
        err->errnum = nle_errno(nle);
    return -1;
}

int ink_nl_open(struct nl_sock **out, ink_err *err)
{
    struct nl_sock *sk = nl_socket_alloc();
    if (!sk)
        return ink_err_set(err, ENOMEM, "netlink socket");
    int r = nl_connect(sk, NETLINK_ROUTE);
    if (r < 0) {
        nl_socket_free(sk);
        return nl_fail(err, r, "connecting to rtnetlink");
    }
    *out = sk;
    return 0;
}

void ink_nl_close(struct nl_sock *sk)
{
    if (sk)
        nl_socket_free(sk); /* closes it too */
}

void ink_nl_closep(struct nl_sock **sk)
{
    ink_nl_close(*sk);
}

void ink_net_host_ifname(const char *workload_id, char out[IFNAMSIZ])
{
    /* FNV-1a, then a murmur-style finaliser so every bit of the id moves
     * the 48 bits that end up in the name. */
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)workload_id; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    snprintf(out, IFNAMSIZ, "ink%012" PRIx64, (uint64_t)(h & 0xffffffffffffULL));
}

int ink_nl_link_get(struct nl_sock *sk, const char *name, ink_link_info *out, ink_err *err)
{
    cleanup_link struct rtnl_link *link = NULL;
    int r = rtnl_link_get_kernel(sk, 0, name, &link);
    if (r == -NLE_NODEV || r == -NLE_OBJ_NOTFOUND || (r == 0 && !link))
        return 0;
    if (r < 0)
        return nl_fail(err, r, "looking up interface %s", name);
    memset(out, 0, sizeof *out);
    out->ifindex = rtnl_link_get_ifindex(link);
    out->peer_ifindex = rtnl_link_get_link(link);
    out->is_veth = rtnl_link_is_veth(link);
    out->up = (rtnl_link_get_flags(link) & IFF_UP) != 0;
    const char *alias = rtnl_link_get_ifalias(link);
    snprintf(out->alias, sizeof out->alias, "%s", alias ? alias : "");
    return 1;
}

int ink_nl_veth_create(struct nl_sock *sk, const char *name, const char *peer_name, int nsfd,
                       unsigned mtu, ink_err *err)
{
    cleanup_link struct rtnl_link *veth = rtnl_link_veth_alloc();
    if (!veth)
        return ink_err_set(err, ENOMEM, "veth %s", name);
    rtnl_link_set_name(veth, name);
    if (mtu)
        rtnl_link_set_mtu(veth, mtu);
    cleanup_link struct rtnl_link *peer = rtnl_link_veth_get_peer(veth);
    rtnl_link_set_name(peer, peer_name);
    rtnl_link_set_ns_fd(peer, nsfd);
    if (mtu)
        rtnl_link_set_mtu(peer, mtu);
    int r = rtnl_link_add(sk, veth, NLM_F_CREATE | NLM_F_EXCL);
    if (r < 0)
        return nl_fail(err, r, "creating veth pair %s/%s", name, peer_name);
    return 0;
}

/* A link object naming an existing interface, for change and delete. */
static struct rtnl_link *link_ref(const char *name)
{
    struct rtnl_link *l = rtnl_link_alloc();
    if (!l)
        abort();
    rtnl_link_set_name(l, name);
    return l;
}

int ink_nl_link_delete(struct nl_sock *sk, const char *name, ink_err *err)
{
    cleanup_link struct rtnl_link *l = link_ref(name);
    int r = rtnl_link_delete(sk, l);
    if (r < 0 && r != -NLE_NODEV && r != -NLE_OBJ_NOTFOUND)
        return nl_fail(err, r, "deleting interface %s", name);
    return 0;
}

static int link_change(struct nl_sock *sk, const char *name, struct rtnl_link *changes,
                       const char *what, ink_err *err)
{
    cleanup_link struct rtnl_link *orig = NULL;
    int r = rtnl_link_get_kernel(sk, 0, name, &orig);
    if (r == 0 && !orig)
        r = -NLE_NODEV;
    if (r == 0)
        r = rtnl_link_change(sk, orig, changes, 0);
    if (r < 0)
        return nl_fail(err, r, "%s %s", what, name);
    return 0;
}

int ink_nl_link_up(struct nl_sock *sk, const char *name, ink_err *err)
{
    cleanup_link struct rtnl_link *changes = rtnl_link_alloc();
    if (!changes)
        abort();
    rtnl_link_set_flags(changes, IFF_UP);
    return link_change(sk, name, changes, "bringing up", err);
}

int ink_nl_link_set_alias(struct nl_sock *sk, const char *name, const char *alias, ink_err *err)
{
    cleanup_link struct rtnl_link *changes = rtnl_link_alloc();
    if (!changes)
        abort();
    rtnl_link_set_ifalias(changes, alias);
    return link_change(sk, name, changes, "setting the alias of", err);
}

static struct nl_addr *v4(struct in_addr a, int prefix_len)
{
    struct nl_addr *na = nl_addr_build(AF_INET, &a, sizeof a);
    if (!na)
        abort();
    nl_addr_set_prefixlen(na, prefix_len);
    return na;
}

int ink_nl_addr_add(struct nl_sock *sk, int ifindex, struct in_addr addr, int prefix_len,
                    ink_err *err)
{
    cleanup_rtaddr struct rtnl_addr *a = rtnl_addr_alloc();
    cleanup_addr struct nl_addr *local = v4(addr, prefix_len);
    if (!a)
        abort();
    rtnl_addr_set_family(a, AF_INET);
    rtnl_addr_set_ifindex(a, ifindex);
    int r = rtnl_addr_set_local(a, local);
    if (r == 0)
        rtnl_addr_set_prefixlen(a, prefix_len);
    if (r == 0)
        r = rtnl_addr_add(sk, a, 0);
    if (r < 0 && r != -NLE_EXIST) {
        char s[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &addr, s, sizeof s);
        return nl_fail(err, r, "adding address %s/%d to interface %d", s, prefix_len, ifindex);
    }
    return 0;
}

int ink_nl_route_replace(struct nl_sock *sk, const ink_nl_route *rt, ink_err *err)
{
    cleanup_route struct rtnl_route *route = rtnl_route_alloc();
    cleanup_addr struct nl_addr *dst = v4(rt->dst, rt->dst_len);
    cleanup_addr struct nl_addr *gw = rt->gateway.s_addr ? v4(rt->gateway, 32) : NULL;
    cleanup_addr struct nl_addr *src = rt->prefsrc.s_addr ? v4(rt->prefsrc, 32) : NULL;
    struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
    if (!route || !nh)
        abort();
    rtnl_route_set_family(route, AF_INET);
    rtnl_route_set_table(route, RT_TABLE_MAIN);
    rtnl_route_set_protocol(route, RTPROT_STATIC);
    rtnl_route_set_type(route, RTN_UNICAST);
    rtnl_route_set_scope(route, gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
    int r = rtnl_route_set_dst(route, dst);
    if (r == 0 && src)
        r = rtnl_route_set_pref_src(route, src);
    rtnl_route_nh_set_ifindex(nh, rt->ifindex);
    if (gw)
        rtnl_route_nh_set_gateway(nh, gw);
    if (rt->onlink)
        rtnl_route_nh_set_flags(nh, RTNH_F_ONLINK);
    rtnl_route_add_nexthop(route, nh); /* the route owns nh now */
    if (r == 0)
        r = rtnl_route_add(sk, route, NLM_F_REPLACE);
    if (r < 0) {
        char d[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &rt->dst, d, sizeof d);
        return nl_fail(err, r, "adding route %s/%d via interface %d", d, rt->dst_len, rt->ifindex);
    }
    return 0;
}
