/* Private to node-agent/net: the rtnetlink operations the workload network
 * needs, through libnl-route. Each socket belongs to the network namespace
 * of the thread that opened it; every "add" accepts what already exists,
 * every "delete" accepts what is already gone. */
#ifndef INK_NET_VETH_H
#define INK_NET_VETH_H

#include <netinet/in.h>
#include <stdbool.h>

#include "err.h"

struct nl_sock;

int ink_nl_open(struct nl_sock **out, ink_err *err);
void ink_nl_close(struct nl_sock *sk);
#define cleanup_nl __attribute__((cleanup(ink_nl_closep)))
void ink_nl_closep(struct nl_sock **sk);

typedef struct ink_link_info {
    int ifindex;
    int peer_ifindex; /* IFLA_LINK: a veth's peer (in its own namespace) */
    bool is_veth;
    bool up;
    char alias[256]; /* IFALIASZ */
} ink_link_info;

/* 1 and *out when the interface exists, 0 when not, -1 on error. */
int ink_nl_link_get(struct nl_sock *sk, const char *name, ink_link_info *out, ink_err *err);

/* A veth pair: `name` here, `peer_name` created directly inside the
 * namespace nsfd refers to. Both down; mtu 0 keeps the default. */
int ink_nl_veth_create(struct nl_sock *sk, const char *name, const char *peer_name, int nsfd,
                       unsigned mtu, ink_err *err);

int ink_nl_link_delete(struct nl_sock *sk, const char *name, ink_err *err);
int ink_nl_link_up(struct nl_sock *sk, const char *name, ink_err *err);
int ink_nl_link_set_alias(struct nl_sock *sk, const char *name, const char *alias, ink_err *err);

/* addr/prefix_len on ifindex (IPv4). */
int ink_nl_addr_add(struct nl_sock *sk, int ifindex, struct in_addr addr, int prefix_len,
                    ink_err *err);

typedef struct ink_nl_route {
    struct in_addr dst;
    int dst_len;
    int ifindex;
    struct in_addr gateway; /* 0.0.0.0: directly connected */
    struct in_addr prefsrc; /* 0.0.0.0: none */
    bool onlink;            /* the gateway is on the link whatever its address */
} ink_nl_route;

/* Adds the IPv4 route to the main table, replacing one to the same
 * destination (e.g. left pointing at an interface that no longer exists). */
int ink_nl_route_replace(struct nl_sock *sk, const ink_nl_route *r, ink_err *err);

#endif
