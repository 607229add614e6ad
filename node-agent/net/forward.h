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
 * yet) until resume connects them, or until their hold time runs out.
 *
 * Shared ports: mappings (keys) that ask for the same listen address and
 * the same non-zero port are the members of one group with one listening
 * socket, e.g. the replicas of an app, or the old and the new replica of a
 * blue-green update. Each accepted connection goes to one member:
 *
 *   - round-robin among the members that are ready and not paused;
 *   - if none is, to any member that is not paused (as with a single
 *     workload, the connect may then fail);
 *   - if every member is paused, it is held for one of them (a ready one
 *     first), and on_accept gets that member's key, so that it can be
 *     woken. Resuming any member connects all held connections of the group
 *     to that member.
 *
 * A key starts not ready; ink_forwarder_set_ready says when it is. Counters
 * (ink_forward_stats) are per key: a connection counts for the member it
 * was given to. A member leaving (unpublish, or a publish elsewhere) takes
 * its connections with it (unpublish resets them; the others keep going),
 * except held ones, which stay in the group; the group's listener is
 * closed when its last member leaves. A mapping that asks for port 0 gets
 * a port of its own from the kernel and is never shared. */
#ifndef INK_FORWARD_H
#define INK_FORWARD_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* How long a connection to a target may take before the client is dropped. */
#ifndef INK_FORWARD_CONNECT_TIMEOUT_MS
#define INK_FORWARD_CONNECT_TIMEOUT_MS 5000
#endif

/* Connections per mapping (held ones included); more are accepted and
 * closed at once, so they fail fast instead of filling the backlog. In a
 * group the limit applies to the member a connection is given to. Each
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

/* A held connection handed to another member (resume, or its member left)
 * is counted there from then on, in connections_total too. */
typedef struct ink_forward_stats {
    uint64_t connections_total, connections_active, connect_failures;
    uint64_t bytes_in;        /* client -> workload, delivered to the workload */
    uint64_t bytes_out;       /* workload -> client, delivered to the client */
    int64_t last_activity_ms; /* ink_now_ms() of the last accept or byte moved; 0 = never */
    uint64_t rejected;        /* accepted and closed at once: INK_FORWARD_MAX_CONNS reached */
    uint64_t hold_expired;    /* held while paused and closed when the hold ran out */
} ink_forward_stats;

/* Called from the forwarder thread, without its lock held, once per accepted
 * connection (held ones included, rejected ones not) with the key of the
 * member it was given to, e.g. to wake a sleeping workload. Must not call
 * back into the forwarder. */
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
 * the mapping. If other keys asked for that same address and non-zero port
 * already, key joins their group instead (no new bind), not ready and not
 * paused. Again with the same key and the same listen address and port
 * (the one asked for, or the one bound) it only changes the target:
 * connections already made keep theirs, held ones will use the new one;
 * ready and paused stay as they are. With another address or port the key
 * leaves its group (closing the listener if it was the last member) and
 * joins or binds the new one; its connections stay, and on failure the
 * old listener is kept where possible. *bound_port (optional) gets the
 * port bound. */
int ink_forwarder_publish(ink_forwarder *f, const char *key, const char *listen_host,
                          uint16_t listen_port, const struct sockaddr_in *target,
                          uint16_t *bound_port, ink_err *err);

/* Resets all the mapping's connections and forgets it; its held ones go
 * to another member of the group if there is one. The listener is closed
 * when no other key shares it. An unknown key is not an error. */
void ink_forwarder_unpublish(ink_forwarder *f, const char *key);

/* Whether the mapping's target is ready for connections (see Shared ports
 * above); a new key is not. A member that becomes ready while not paused
 * also gets the group's held connections, as with resume. -1: unknown
 * key. */
int ink_forwarder_set_ready(ink_forwarder *f, const char *key, bool ready);

/* From now on, connections accepted for key are held for up to hold_ms
 * (> 0) each, then reset. Pausing a paused mapping changes hold_ms for
 * connections accepted afterwards. -1: unknown key or hold_ms <= 0. */
int ink_forwarder_pause(ink_forwarder *f, const char *key, int64_t hold_ms);

/* Ends a pause: every held connection of the group (its own, and those
 * held for other paused members) is connected to key's current target.
 * Resuming a mapping that is not paused does only that. -1: unknown key. */
int ink_forwarder_resume(ink_forwarder *f, const char *key);

/* A wake that failed: every held connection of key's group is answered
 * and closed. One whose client sent an HTTP request line gets "503
 * Service Unavailable" with reason as its text body (and Retry-After);
 * any other is reset. Returns how many there were. The mapping stays
 * paused. */
unsigned ink_forwarder_fail_held(ink_forwarder *f, const char *key, const char *reason);

/* A snapshot of the mapping's counters; -1: unknown key. */
int ink_forwarder_stats(ink_forwarder *f, const char *key, ink_forward_stats *out);

#endif
