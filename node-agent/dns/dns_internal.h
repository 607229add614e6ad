/* Internals of the node resolver, shared by the agent's side (service.c),
 * the ink-dns helper (helper.c, server.c, confine.c) and the tests:
 *
 *   - DNS messages (wire.c): parsing queries from workloads, building the
 *     answers the helper gives itself, the queries it sends upstream, and
 *     checking what comes back. Everything here reads hostile bytes.
 *   - the control protocol between agent and helper (table.c): frames on a
 *     stream socket, the name table and the upstream configuration. The
 *     helper checks every frame as it checks a packet.
 *   - the helper's event loop (server.c) and its confinement (confine.c). */
#ifndef INK_DNS_INTERNAL_H
#define INK_DNS_INTERNAL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dns.h"
#include "err.h"

/* ================================================================ DNS */

#define INK_DNS_HEADER_LEN 12
#define INK_DNS_NAME_MAX 255 /* wire form, root label included (RFC 1035 2.3.4) */
#define INK_DNS_LABEL_MAX 63
/* The largest query the helper takes, over UDP or TCP: a question is at
 * most 4 + 255 bytes and an OPT record a few dozen; anything bigger is not
 * a query a stub resolver sends. */
#define INK_DNS_QUERY_MAX 1024
/* Plain DNS over UDP, and the EDNS payload size the helper offers and asks
 * for upstream (the DNS flag day 2020 figure: no IP fragmentation). */
#define INK_DNS_UDP_PLAIN 512
#define INK_DNS_UDP_MAX 1232
#define INK_DNS_TCP_MAX 65535

enum {
    INK_DNS_NOERROR = 0,
    INK_DNS_FORMERR = 1,
    INK_DNS_SERVFAIL = 2,
    INK_DNS_NXDOMAIN = 3,
    INK_DNS_NOTIMP = 4,
    INK_DNS_REFUSED = 5,
    INK_DNS_BADVERS = 16, /* extended: needs an OPT record */
};

enum {
    INK_DNS_TYPE_A = 1,
    INK_DNS_TYPE_NS = 2,
    INK_DNS_TYPE_SOA = 6,
    INK_DNS_TYPE_PTR = 12,
    INK_DNS_TYPE_AAAA = 28,
    INK_DNS_TYPE_OPT = 41,
    INK_DNS_TYPE_IXFR = 251,
    INK_DNS_TYPE_AXFR = 252,
    INK_DNS_TYPE_ANY = 255,
    INK_DNS_CLASS_IN = 1,
    INK_DNS_CLASS_ANY = 255,
};

/* Header flag bits (the 16 bits after the id). */
#define INK_DNS_F_QR 0x8000
#define INK_DNS_F_OPCODE 0x7800
#define INK_DNS_F_AA 0x0400
#define INK_DNS_F_TC 0x0200
#define INK_DNS_F_RD 0x0100
#define INK_DNS_F_RA 0x0080
#define INK_DNS_F_AD 0x0020
#define INK_DNS_F_CD 0x0010
#define INK_DNS_F_RCODE 0x000f

/* A query as the helper understood it. */
typedef struct ink_dns_query {
    uint16_t id;
    uint16_t flags;
    /* The question name in wire form exactly as the client sent it (case
     * kept: answers and forwarded queries carry it back unchanged), and
     * where each label starts in it. */
    uint8_t qname[INK_DNS_NAME_MAX];
    size_t qname_len;
    uint8_t label_off[128];
    size_t nlabels; /* 0: the root */
    uint16_t qtype, qclass;
    bool edns;
    uint16_t edns_size; /* the client's UDP payload size (>= 512) */
    uint8_t edns_version;
    bool edns_do; /* DNSSEC OK */
} ink_dns_query;

typedef enum {
    INK_DNS_PARSE_OK = 0,
    INK_DNS_PARSE_ANSWER = 1, /* malformed or unsupported: answer with *rcode */
    INK_DNS_PARSE_DROP = -1,  /* not worth an answer (a response, or no header) */
} ink_dns_parse_result;

/* Parses a query: one question, no answer or authority records, an OPT
 * record at most (other additional records are skipped). On
 * INK_DNS_PARSE_ANSWER, *rcode says what to answer and q holds the id and
 * flags, and the question when it was read (qname_len > 0). */
ink_dns_parse_result ink_dns_parse_query(const uint8_t *p, size_t n, ink_dns_query *q, int *rcode);

/* Reads the name at *off in the message p[0..n). Compression pointers (if
 * allowed) must point strictly backwards, which ends every loop; the
 * uncompressed name must fit in INK_DNS_NAME_MAX. out gets the wire form
 * (without pointers), *off the first byte after the name where it
 * appears. 0, or -1 when malformed. */
int ink_dns_read_name(const uint8_t *p, size_t n, size_t *off, bool allow_compression,
                      uint8_t out[INK_DNS_NAME_MAX], size_t *outlen);

/* The UDP payload size the client accepts: 512 without EDNS, its EDNS
 * size capped to INK_DNS_UDP_MAX otherwise. */
size_t ink_dns_udp_limit(const ink_dns_query *q);

typedef struct ink_dns_answer {
    int rcode;                   /* may be extended (BADVERS) */
    bool aa;                     /* authoritative: the helper's own names */
    bool tc;                     /* truncated, whatever fits */
    const struct in_addr *addrs; /* A records for the question's name */
    size_t naddrs;
    size_t first; /* rotation: the records start at addrs[first % naddrs] */
    uint32_t ttl;
} ink_dns_answer;

/* Writes the response to q: the question as it was asked, the A records
 * that fit in limit (TC set when some did not), an OPT record when the
 * query had one. A query whose question was not read gets the header
 * only. Returns the length, 0 when limit cannot even hold the header. */
size_t ink_dns_build_answer(const ink_dns_query *q, const ink_dns_answer *a, uint8_t *out,
                            size_t limit);

/* The query sent upstream for q: a new id, the client's RD and CD bits,
 * the question as asked, an OPT record asking for udp_size (0: none) with
 * the client's DO bit. Only what the helper parsed goes upstream. */
size_t ink_dns_build_forward(const ink_dns_query *q, uint16_t id, uint16_t udp_size, uint8_t *out,
                             size_t cap);

/* Whether p[0..n) is the upstream's response to the query sent with id
 * for q: QR set, opcode QUERY, the same id, one question equal to q's
 * (names compared case-insensitively). */
bool ink_dns_response_matches(const uint8_t *p, size_t n, uint16_t id, const ink_dns_query *q);

/* Label i of q (lowercase compare helpers). */
bool ink_dns_label_eq(const ink_dns_query *q, size_t i, const char *s);

/* ================================================== control protocol */

/* Frames both ways: a 12-byte header, big-endian, then the payload.
 *   u32 magic "INKD" | u16 version | u16 type | u32 payload length */
#define INK_DNS_CTL_MAGIC 0x494e4b44u
#define INK_DNS_CTL_VERSION 1
#define INK_DNS_CTL_HEADER 12
/* The largest frame the helper accepts from the agent (a table of tens of
 * thousands of workloads fits), and the agent from the helper. */
#define INK_DNS_CTL_MAX (4u << 20)
#define INK_DNS_CTL_HELPER_MAX 1024

enum {
    /* agent -> helper */
    INK_DNS_MSG_CONFIG = 1, /* upstream resolvers, workload range */
    INK_DNS_MSG_TABLE = 2,  /* the name table */
    /* helper -> agent */
    INK_DNS_MSG_READY = 16, /* confined, serving */
    INK_DNS_MSG_LOG = 17,   /* u8 level (ink_log_level), text */
    INK_DNS_MSG_ACK = 18,   /* u32 serial of the table now in use */
};

/* Limits the helper enforces on what it is sent. */
#define INK_DNS_MAX_UPSTREAMS 8
#define INK_DNS_MAX_ASKERS 65536
#define INK_DNS_MAX_APPS 65536
#define INK_DNS_MAX_PROJECTS 65535
#define INK_DNS_MAX_REPLICAS 4096
#define INK_DNS_NO_PROJECT 0xffffu

void ink_dns_ctl_header(uint8_t out[INK_DNS_CTL_HEADER], uint16_t type, uint32_t len);
/* Checks a header: 0 and *type, *len when it is one of ours and len <=
 * max, -1 otherwise. */
int ink_dns_ctl_parse_header(const uint8_t in[INK_DNS_CTL_HEADER], uint32_t max, uint16_t *type,
                             uint32_t *len, ink_err *err);

typedef struct ink_dns_upstream {
    struct sockaddr_storage addr; /* AF_INET or AF_INET6, with the port */
    socklen_t addrlen;
} ink_dns_upstream;

typedef struct ink_dns_config_msg {
    ink_dns_upstream up[INK_DNS_MAX_UPSTREAMS];
    size_t nup;
    struct in_addr net; /* the workload range: reverse names in it never go upstream */
    uint8_t prefix;
} ink_dns_config_msg;

/*   u8 n, n x (u8 family 4|6, 4|16 address bytes, u16 port), u32 net, u8 prefix */
int ink_dns_config_encode(const ink_dns_config_msg *c, uint8_t **out, size_t *len, ink_err *err);
int ink_dns_config_decode(const uint8_t *p, size_t n, ink_dns_config_msg *c, ink_err *err);

/* The name table as the helper holds it. Askers and apps are sorted for
 * binary search. */
typedef struct ink_dns_asker {
    uint32_t addr; /* host order */
    uint16_t project;
    uint8_t flags; /* INK_DNS_ASKER_* */
    uint32_t ifindex;
    uint32_t names_first; /* INK_DNS_ASKER_NAMES: table fnames[names_first ..] */
    uint8_t nnames;
} ink_dns_asker;

#define INK_DNS_ASKER_FORWARD 0x01 /* other names may be resolved upstream */
#define INK_DNS_ASKER_NAMES 0x02   /* only the names listed for it may */
#define INK_DNS_ASKER_FLAGS (INK_DNS_ASKER_FORWARD | INK_DNS_ASKER_NAMES)
#define INK_DNS_MAX_ASKER_NAMES 64 /* an app's egress_allow entries at most */

/* A name an asker may have resolved upstream: wire form, lowercase, in the
 * table's fname_bytes. */
typedef struct ink_dns_fname {
    uint32_t off;
    uint8_t len; /* root label included */
} ink_dns_fname;

typedef struct ink_dns_app {
    uint16_t project;
    uint8_t namelen;
    char name[INK_DNS_LABEL_MAX + 1];
    uint32_t first, n; /* its replicas: table addrs[first .. first+n) */
} ink_dns_app;

typedef struct ink_dns_table {
    uint32_t serial;
    size_t nprojects;
    ink_dns_asker *askers;
    size_t naskers;
    ink_dns_app *apps;
    size_t napps;
    struct in_addr *addrs;
    size_t naddrs;
    ink_dns_fname *fnames;
    size_t nfnames;
    uint8_t *fname_bytes;
} ink_dns_table;

/* Table payload:
 *   u32 serial
 *   u16 nprojects, each: u8 len, name        ([a-z0-9][a-z0-9-]*, <= 63)
 *   u32 naskers,   each: u32 address, u16 project (0xffff: none), u8 flags, u32 ifindex,
 *                  with INK_DNS_ASKER_NAMES: u8 n (1-64), each: u8 len, the name in wire
 *                  form (lowercase, root label included, len bytes)
 *   u32 napps,     each: u16 project, u8 len, name, u16 n, n x u32 address
 * Every count is checked against the bytes left before anything is
 * allocated; names, project indexes and duplicates are checked; nothing
 * may follow the last app. */
int ink_dns_table_encode(const ink_dns_workload *w, size_t n, uint32_t serial, uint8_t **out,
                         size_t *len, ink_err *err);
int ink_dns_table_decode(const uint8_t *p, size_t n, ink_dns_table *t, ink_err *err);
void ink_dns_table_free(ink_dns_table *t);

const ink_dns_asker *ink_dns_table_asker(const ink_dns_table *t, struct in_addr addr);
/* The app of that name (lowercase compare, len bytes) in project. */
const ink_dns_app *ink_dns_table_app(const ink_dns_table *t, uint16_t project, const uint8_t *name,
                                     size_t len);

/* What the helper does with a query. */
typedef enum {
    INK_DNS_DO_ANSWER,  /* rcode (and addrs for A) from the table */
    INK_DNS_DO_FORWARD, /* upstream */
} ink_dns_action;

typedef struct ink_dns_decision {
    ink_dns_action action;
    int rcode;
    const ink_dns_app *app; /* the A records, when it answers NOERROR with addresses */
} ink_dns_decision;

/* The policy, in one place: asker NULL (unknown source) -> REFUSED;
 * <app>.internal -> the app's replicas in the asker's project (A, ANY),
 * NOERROR without answers for other types, NXDOMAIN when the project has
 * no such app; other names under internal. and reverse names of the
 * workload range -> NXDOMAIN; non-IN classes, zone transfers, and other
 * names for an asker that may not forward them (not INK_DNS_ASKER_FORWARD,
 * and not among its INK_DNS_ASKER_NAMES) -> REFUSED; everything else
 * upstream. */
ink_dns_decision ink_dns_decide(const ink_dns_table *t, const ink_dns_asker *asker,
                                const ink_dns_config_msg *cfg, const ink_dns_query *q);

/* ======================================================== the helper */

/* Limits that keep a workload from making the helper use unbounded memory
 * or time: the state of every query and connection lives in fixed arrays. */
#define INK_DNS_MAX_PENDING 512          /* queries waiting for upstream */
#define INK_DNS_MAX_PENDING_ASKER 64     /* of them from one workload */
#define INK_DNS_MAX_TCP 64               /* client connections */
#define INK_DNS_MAX_TCP_ASKER 8          /* of them from one workload */
#define INK_DNS_MAX_TCP_UPSTREAM 32      /* retries of truncated answers over TCP */
#define INK_DNS_RATE_QPS 500             /* queries per second per workload, sustained */
#define INK_DNS_RATE_BURST 1000          /* and in a burst */
#define INK_DNS_UPSTREAM_TIMEOUT_MS 1000 /* one try */
#define INK_DNS_QUERY_DEADLINE_MS 3000   /* all tries of one query */
#define INK_DNS_TCP_IDLE_MS 10000        /* a client connection without a whole query */
#define INK_DNS_TTL 5                    /* of <app>.internal answers */

typedef struct ink_dns_server_opts {
    int udp_fd;   /* bound, IP_PKTINFO on, non-blocking */
    int tcp_fd;   /* listening, non-blocking */
    int ctl_fd;   /* the agent (stream socket) */
    int epoll_fd; /* created before confinement; -1: create one */
} ink_dns_server_opts;

/* Serves until the agent closes the control socket (0) or something fatal
 * happens (-1). Also used in-process by the unit tests. */
int ink_dns_server_run(const ink_dns_server_opts *o, ink_err *err);

/* The helper's command line (service.c starts it, helper.c reads it):
 *   ink-dns --control-fd N --udp-fd N --tcp-fd N --parent PID
 *           --uid U --gid G --root DIR */
#define INK_DNS_HELPER_NAME "ink-dns"

typedef struct ink_dns_confine_opts {
    const char *root; /* an empty directory to chroot into */
    uid_t uid;        /* unprivileged: never 0 */
    gid_t gid;
    const int *keep; /* descriptors kept open (besides 0, 1, 2) */
    size_t nkeep;
} ink_dns_confine_opts;

/* chroot, every other descriptor closed, resource limits, no capabilities
 * in any set (bounding and ambient included), the unprivileged uid and gid
 * with no supplementary groups, not dumpable, no_new_privs, and the
 * seccomp allowlist (anything else kills the process). Irreversible. */
int ink_dns_confine(const ink_dns_confine_opts *o, ink_err *err);

#endif
