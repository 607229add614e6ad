/* IPAM: workload addresses from the node's range, in state_dir/ipam.json.
 *
 *   {"version": 1, "cidr": "10.88.0.0/24", "next": "10.88.0.7",
 *    "allocations": [{"workload": "w1", "ip": "10.88.0.2"}, ...]}
 *
 * The file is the only truth: every operation takes the lock, reads it,
 * changes it and writes it back atomically before returning. "next" is
 * where the search for a free address starts, so a released address is
 * handed out again only after the rest of the range (a new workload does
 * not inherit an old one's ARP and conntrack entries). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "net.h"
#include "util.h"

#define IPAM_FILE "ipam.json"
#define IPAM_LOCK "ipam.lock"
#define IPAM_VERSION 1
#define IPAM_MAX_BYTES (64u << 20)

#define cleanup_json __attribute__((cleanup(json_decrefp)))

struct ink_ipam {
    pthread_mutex_t mu; /* flock does not exclude threads sharing the fd */
    int lock_fd;
    char *path;
    char cidr[32];    /* canonical "a.b.c.d/p" */
    uint32_t network; /* host byte order from here on */
    int prefix;
    uint32_t first; /* first address handed out (network + 2) */
    uint32_t last;  /* last one (broadcast - 1) */
};

typedef struct entry {
    uint32_t ip;
    char id[INK_NET_WORKLOAD_ID_MAX + 1];
} entry;

/* The file's content while an operation holds the lock. */
typedef struct table {
    entry *e; /* sorted by ip */
    size_t n, cap;
    uint32_t next;
} table;

static void table_free(table *t)
{
    free(t->e);
    t->e = NULL;
    t->n = t->cap = 0;
}

#define cleanup_table __attribute__((cleanup(table_free)))

bool ink_net_valid_workload_id(const char *id)
{
    if (!id || !*id || strlen(id) > INK_NET_WORKLOAD_ID_MAX)
        return false;
    for (const char *c = id; *c; c++) {
        bool alnum =
            (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9');
        if (!alnum && (c == id || (*c != '.' && *c != '_' && *c != '-')))
            return false;
    }
    return true;
}

static void ip_str(uint32_t ip, char out[INET_ADDRSTRLEN])
{
    struct in_addr a = {htonl(ip)};
    inet_ntop(AF_INET, &a, out, INET_ADDRSTRLEN);
}

static int parse_ip(const char *s, uint32_t *out)
{
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1)
        return -1;
    *out = ntohl(a.s_addr);
    return 0;
}

static int parse_cidr(ink_ipam *ipam, const char *cidr, ink_err *err)
{
    const char *slash = cidr ? strchr(cidr, '/') : NULL;
    if (!slash || slash == cidr || (size_t)(slash - cidr) >= INET_ADDRSTRLEN)
        return ink_err_set(err, EINVAL, "address range \"%s\": want a.b.c.d/prefix",
                           cidr ? cidr : "");
    char host[INET_ADDRSTRLEN];
    memcpy(host, cidr, (size_t)(slash - cidr));
    host[slash - cidr] = '\0';
    char *end;
    errno = 0;
    long prefix = strtol(slash + 1, &end, 10);
    if (parse_ip(host, &ipam->network) < 0 || errno || end == slash + 1 || *end)
        return ink_err_set(err, EINVAL, "address range \"%s\": want a.b.c.d/prefix", cidr);
    /* A /30 still has one address besides network, gateway and broadcast. */
    if (prefix < 8 || prefix > 30)
        return ink_err_set(err, EINVAL, "address range \"%s\": prefix must be 8..30", cidr);
    uint32_t mask = ~0u << (32 - prefix);
    if (ipam->network & ~mask)
        return ink_err_set(err, EINVAL, "address range \"%s\": host bits are set", cidr);
    ipam->prefix = (int)prefix;
    ipam->first = ipam->network + 2;
    ipam->last = (ipam->network | ~mask) - 1;
    char net[INET_ADDRSTRLEN];
    ip_str(ipam->network, net);
    snprintf(ipam->cidr, sizeof ipam->cidr, "%s/%d", net, ipam->prefix);
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    uint32_t x = ((const entry *)a)->ip, y = ((const entry *)b)->ip;
    return x < y ? -1 : x > y;
}

static bool taken(const table *t, uint32_t ip)
{
    entry key = {.ip = ip};
    return t->n && bsearch(&key, t->e, t->n, sizeof *t->e, cmp_entry) != NULL;
}

static entry *find_id(const table *t, const char *id)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->e[i].id, id) == 0)
            return &t->e[i];
    return NULL;
}

static void push(table *t, uint32_t ip, const char *id)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        entry *ne = realloc(t->e, t->cap * sizeof *ne);
        if (!ne)
            abort();
        t->e = ne;
    }
    t->e[t->n].ip = ip;
    snprintf(t->e[t->n].id, sizeof t->e[t->n].id, "%s", id);
    t->n++;
}

static bool in_range(const ink_ipam *ipam, uint32_t ip)
{
    return ip >= ipam->first && ip <= ipam->last;
}

static int corrupt(const ink_ipam *ipam, ink_err *err, const char *what)
{
    return ink_err_set(err, EINVAL,
                       "ipam state %s is corrupt: %s (fix or remove it; it is never overwritten)",
                       ipam->path, what);
}

static int parse_table(ink_ipam *ipam, const char *text, table *t, ink_err *err)
{
    json_error_t jerr;
    cleanup_json json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    char what[320];
    if (!root) {
        snprintf(what, sizeof what, "not JSON (line %d column %d: %s)", jerr.line, jerr.column,
                 jerr.text);
        return corrupt(ipam, err, what);
    }
    json_t *version = json_object_get(root, "version");
    json_t *cidr = json_object_get(root, "cidr");
    json_t *next = json_object_get(root, "next");
    json_t *allocs = json_object_get(root, "allocations");
    if (!json_is_object(root) || !json_is_integer(version) || !json_is_string(cidr) ||
        (next && !json_is_string(next)) || !json_is_array(allocs))
        return corrupt(ipam, err, "want an object with version, cidr and allocations");
    if (json_integer_value(version) != IPAM_VERSION) {
        snprintf(what, sizeof what, "version %lld, this agent reads %d",
                 (long long)json_integer_value(version), IPAM_VERSION);
        return corrupt(ipam, err, what);
    }
    if (strcmp(json_string_value(cidr), ipam->cidr) != 0) {
        /* The range may change only while nothing is allocated from it. */
        if (json_array_size(allocs) == 0)
            return 0;
        return ink_err_set(err, EEXIST,
                           "ipam state %s holds %zu allocations from %s, but the node range is "
                           "now %s: tear the workloads down first",
                           ipam->path, json_array_size(allocs), json_string_value(cidr),
                           ipam->cidr);
    }
    size_t i;
    json_t *a;
    json_array_foreach(allocs, i, a)
    {
        const char *id = json_string_value(json_object_get(a, "workload"));
        const char *ip = json_string_value(json_object_get(a, "ip"));
        uint32_t v;
        if (!id || !ip) {
            snprintf(what, sizeof what, "allocation %zu: want workload and ip strings", i);
            return corrupt(ipam, err, what);
        }
        if (!ink_net_valid_workload_id(id)) {
            snprintf(what, sizeof what, "allocation %zu: invalid workload id", i);
            return corrupt(ipam, err, what);
        }
        if (parse_ip(ip, &v) < 0 || !in_range(ipam, v)) {
            snprintf(what, sizeof what, "allocation %zu (%s): %.40s is not a host address of %s", i,
                     id, ip, ipam->cidr);
            return corrupt(ipam, err, what);
        }
        if (find_id(t, id)) {
            snprintf(what, sizeof what, "workload %s has two addresses", id);
            return corrupt(ipam, err, what);
        }
        push(t, v, id);
    }
    if (t->n > 1)
        qsort(t->e, t->n, sizeof *t->e, cmp_entry);
    for (i = 1; i < t->n; i++) {
        if (t->e[i].ip == t->e[i - 1].ip) {
            char s[INET_ADDRSTRLEN];
            ip_str(t->e[i].ip, s);
            snprintf(what, sizeof what, "%s is allocated to both %s and %s", s, t->e[i - 1].id,
                     t->e[i].id);
            return corrupt(ipam, err, what);
        }
    }
    uint32_t n;
    if (next && parse_ip(json_string_value(next), &n) == 0 && in_range(ipam, n))
        t->next = n;
    return 0;
}

static int load(ink_ipam *ipam, table *t, ink_err *err)
{
    t->next = ipam->first;
    cleanup_free char *text = NULL;
    size_t len;
    ink_err rerr = {0};
    if (ink_read_file(ipam->path, IPAM_MAX_BYTES, &text, &len, &rerr) < 0) {
        if (rerr.errnum == ENOENT)
            return 0; /* nothing allocated yet */
        if (err)
            *err = rerr;
        return ink_err_wrap(err, "ipam state");
    }
    if (strlen(text) != len)
        return corrupt(ipam, err, "contains a NUL byte");
    return parse_table(ipam, text, t, err);
}

static int save(ink_ipam *ipam, const table *t, ink_err *err)
{
    cleanup_json json_t *root = json_object();
    json_t *allocs = json_array();
    char s[INET_ADDRSTRLEN];
    for (size_t i = 0; i < t->n; i++) {
        ip_str(t->e[i].ip, s);
        json_array_append_new(allocs, json_pack("{s:s, s:s}", "workload", t->e[i].id, "ip", s));
    }
    ip_str(t->next, s);
    json_object_set_new(root, "version", json_integer(IPAM_VERSION));
    json_object_set_new(root, "cidr", json_string(ipam->cidr));
    json_object_set_new(root, "next", json_string(s));
    json_object_set_new(root, "allocations", allocs);
    cleanup_free char *text = json_dumps(root, JSON_INDENT(2));
    if (!text)
        abort();
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps's NUL is not written */
    if (ink_write_file_atomic(ipam->path, text, len + 1, 0600, err) < 0)
        return ink_err_wrap(err, "saving ipam state");
    return 0;
}

/* Holds the mutex and the file lock for one operation. */
static int op_begin(ink_ipam *ipam, ink_err *err)
{
    pthread_mutex_lock(&ipam->mu);
    while (flock(ipam->lock_fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            int e = errno;
            pthread_mutex_unlock(&ipam->mu);
            return ink_err_set(err, e, "locking ipam state %s", ipam->path);
        }
    }
    return 0;
}

static void op_end(ink_ipam *ipam)
{
    flock(ipam->lock_fd, LOCK_UN);
    pthread_mutex_unlock(&ipam->mu);
}

static int check_id(const char *id, ink_err *err)
{
    if (!ink_net_valid_workload_id(id))
        return ink_err_set(err, EINVAL, "invalid workload id \"%.64s\"", id ? id : "");
    return 0;
}

static int open_state(ink_ipam *ipam, const char *state_dir, const char *cidr, ink_err *err)
{
    if (parse_cidr(ipam, cidr, err) < 0)
        return -1;
    if (ink_mkdir_p(state_dir, 0700, err) < 0)
        return ink_err_wrap(err, "ipam state directory");
    ipam->path = ink_xasprintf("%s/%s", state_dir, IPAM_FILE);
    cleanup_free char *lock = ink_xasprintf("%s/%s", state_dir, IPAM_LOCK);
    ipam->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (ipam->lock_fd < 0)
        return ink_err_set(err, errno, "open %s", lock);
    /* Refuse a table we cannot read now rather than at the first workload. */
    if (op_begin(ipam, err) < 0)
        return -1;
    cleanup_table table t = {0};
    int rc = load(ipam, &t, err);
    op_end(ipam);
    return rc;
}

int ink_ipam_open(const char *state_dir, const char *cidr, ink_ipam **out, ink_err *err)
{
    ink_ipam *ipam = ink_xcalloc(1, sizeof *ipam);
    ipam->lock_fd = -1;
    pthread_mutex_init(&ipam->mu, NULL);
    if (open_state(ipam, state_dir, cidr, err) < 0) {
        ink_ipam_close(ipam);
        return -1;
    }
    *out = ipam;
    return 0;
}

void ink_ipam_close(ink_ipam *ipam)
{
    if (!ipam)
        return;
    if (ipam->lock_fd >= 0)
        close(ipam->lock_fd);
    pthread_mutex_destroy(&ipam->mu);
    free(ipam->path);
    free(ipam);
}

int ink_ipam_allocate(ink_ipam *ipam, const char *workload_id, struct in_addr *out, ink_err *err)
{
    if (check_id(workload_id, err) < 0)
        return -1;
    if (op_begin(ipam, err) < 0)
        return -1;
    cleanup_table table t = {0};
    int rc = load(ipam, &t, err);
    if (rc == 0) {
        const entry *e = find_id(&t, workload_id);
        if (e) {
            out->s_addr = htonl(e->ip);
        } else {
            uint32_t size = ipam->last - ipam->first + 1, found = 0;
            for (uint32_t i = 0; i < size && !found; i++) {
                uint32_t cand = ipam->first + (t.next - ipam->first + i) % size;
                if (!taken(&t, cand))
                    found = cand;
            }
            if (!found) {
                rc = ink_err_set(err, ENOSPC, "address range %s is exhausted (%u addresses)",
                                 ipam->cidr, size);
            } else {
                push(&t, found, workload_id);
                qsort(t.e, t.n, sizeof *t.e, cmp_entry);
                t.next = found == ipam->last ? ipam->first : found + 1;
                rc = save(ipam, &t, err);
                out->s_addr = htonl(found);
            }
        }
    }
    op_end(ipam);
    if (rc < 0)
        return ink_err_wrap(err, "allocating an address for %s", workload_id);
    return 0;
}

int ink_ipam_lookup(ink_ipam *ipam, const char *workload_id, struct in_addr *out, ink_err *err)
{
    if (check_id(workload_id, err) < 0)
        return -1;
    if (op_begin(ipam, err) < 0)
        return -1;
    cleanup_table table t = {0};
    int rc = load(ipam, &t, err);
    if (rc == 0) {
        const entry *e = find_id(&t, workload_id);
        if (e) {
            out->s_addr = htonl(e->ip);
            rc = 1;
        }
    }
    op_end(ipam);
    return rc;
}

int ink_ipam_release(ink_ipam *ipam, const char *workload_id, ink_err *err)
{
    if (check_id(workload_id, err) < 0)
        return -1;
    if (op_begin(ipam, err) < 0)
        return -1;
    cleanup_table table t = {0};
    int rc = load(ipam, &t, err);
    entry *e = rc == 0 ? find_id(&t, workload_id) : NULL;
    if (e) {
        size_t i = (size_t)(e - t.e);
        memmove(&t.e[i], &t.e[i + 1], (t.n - i - 1) * sizeof *t.e);
        t.n--;
        rc = save(ipam, &t, err);
    }
    op_end(ipam);
    if (rc < 0)
        return ink_err_wrap(err, "releasing the address of %s", workload_id);
    return 0;
}

int ink_ipam_list(ink_ipam *ipam, ink_ipam_entry **out, size_t *n, ink_err *err)
{
    if (op_begin(ipam, err) < 0)
        return -1;
    cleanup_table table t = {0};
    int rc = load(ipam, &t, err);
    op_end(ipam);
    if (rc < 0)
        return -1;
    ink_ipam_entry *list = ink_xcalloc(t.n ? t.n : 1, sizeof *list);
    for (size_t i = 0; i < t.n; i++) {
        memcpy(list[i].workload_id, t.e[i].id, sizeof list[i].workload_id);
        list[i].addr.s_addr = htonl(t.e[i].ip);
    }
    *out = list;
    *n = t.n;
    return 0;
}

struct in_addr ink_ipam_gateway(const ink_ipam *ipam)
{
    return (struct in_addr){htonl(ipam->network + 1)};
}

int ink_ipam_prefix_len(const ink_ipam *ipam)
{
    return ipam->prefix;
}
