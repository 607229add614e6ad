/* Published ports: the agent listens on the node for each published workload
 * port and forwards every accepted connection to the workload's address
 * (inside its network namespace, reached over the routed veth).
 *
 * One thread runs an epoll loop over non-blocking sockets; bytes move with
 * splice(2) through one pipe per direction, so payload never enters user
 * space. Reading a side stops while its pipe is full and resumes once the
 * other side has drained some of it, so a slow reader slows its writer
 * instead of growing a buffer, and nothing spins.
 *
 * A mapping can be paused for scale-to-zero: connections accepted while it
 * is paused wait (the client sees an open connection that does not answer
 * yet) until resume connects them, or until their hold time runs out. */
#ifndef INK_FORWARD_H
#define INK_FORWARD_H

#include <netinet/in.h>
#include <stdint.h>

#include "err.h"

/* How long a connection to a target may take before the client is dropped. */
#ifndef INK_FORWARD_CONNECT_TIMEOUT_MS
#define INK_FORWARD_CONNECT_TIMEOUT_MS 5000
#endif

/* Connections per mapping (held ones included); more are accepted and
 * closed at once, so they fail fast instead of filling the backlog. Each
 * connection holds six descriptors (two sockets, two pipes). */
#ifndef INK_FORWARD_MAX_CONNS
#define INK_FORWARD_MAX_CONNS 4096
#endif

/* Pipe size asked for per direction; the kernel default (64 KiB) is kept
 * when the request is refused (fs.pipe-max-size, per-user pipe limits). */
#ifndef INK_FORWARD_PIPE_SIZE
#define INK_FORWARD_PIPE_SIZE (256 * 1024)
#endif

#define INK_FORWARD_KEY_MAX 128

typedef struct ink_forwarder ink_forwarder;

typedef struct ink_forward_stats {
    uint64_t connections_total, connections_active, connect_failures;
    uint64_t bytes_in;        /* client -> workload, delivered to the workload */
    uint64_t bytes_out;       /* workload -> client, delivered to the client */
    int64_t last_activity_ms; /* ink_now_ms() of the last accept or byte moved; 0 = never */
    uint64_t rejected;        /* accepted and closed at once: INK_FORWARD_MAX_CONNS reached */
    uint64_t hold_expired;    /* held while paused and closed when the hold ran out */
} ink_forward_stats;

/* Called from the forwarder thread, without its lock held, once per accepted
 * connection (held ones included, rejected ones not), e.g. to wake a
 * sleeping workload. Must not call back into the forwarder. */
typedef void (*ink_forward_accept_fn)(const char *key, void *arg);

/* Starts the forwarder thread. on_accept may be NULL. The thread runs with
 * every signal blocked, so a write to a vanished peer never raises SIGPIPE
 * there whatever the process does with it. */
int ink_forwarder_start(ink_forward_accept_fn on_accept, void *arg, ink_forwarder **out,
                        ink_err *err);

/* Closes every listener and connection, joins the thread and frees f. */
void ink_forwarder_stop(ink_forwarder *f);

/* Listens on listen_host:listen_port (a numeric IPv4 address; NULL or ""
 * for 0.0.0.0; port 0: the kernel picks) with SO_REUSEADDR and forwards to
 * target. key (1..INK_FORWARD_KEY_MAX characters, the workload id) names
 * the mapping. Again with the same key and the same listen address and
 * port (the one asked for, or the one bound) it only changes the target:
 * connections already made keep theirs, held ones will use the new one.
 * With another address or port it binds anew and closes the old listener;
 * connections stay, and on failure the old listener is kept where possible.
 * *bound_port (optional) gets the port bound. */
int ink_forwarder_publish(ink_forwarder *f, const char *key, const char *listen_host,
                          uint16_t listen_port, const struct sockaddr_in *target,
                          uint16_t *bound_port, ink_err *err);

/* Closes the mapping's listener and resets all its connections; an unknown
 * key is not an error. */
void ink_forwarder_unpublish(ink_forwarder *f, const char *key);

/* From now on, connections accepted for key are held for up to hold_ms
 * (> 0) each, then reset. Pausing a paused mapping changes hold_ms for
 * connections accepted afterwards. -1: unknown key or hold_ms <= 0. */
int ink_forwarder_pause(ink_forwarder *f, const char *key, int64_t hold_ms);

/* Ends a pause: every held connection is connected to the current target.
 * Resuming a mapping that is not paused does nothing. -1: unknown key. */
int ink_forwarder_resume(ink_forwarder *f, const char *key);

/* A snapshot of the mapping's counters; -1: unknown key. */
int ink_forwarder_stats(ink_forwarder *f, const char *key, ink_forward_stats *out);

#endif
