/* The coordinator's state in SQLite (WAL mode, one file): nodes, the desired
 * assignments of workloads to nodes and their change log. Every change to
 * assignments bumps one global revision inside the same transaction, so a
 * watcher that has seen revision R can be sent exactly what came after. */
#ifndef INK_STORE_H
#define INK_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "ink/v1/ink.pb-c.h"

typedef struct ink_store ink_store;

typedef struct ink_node_row {
    char id[64];
    char hostname[256];
    char addresses[512]; /* comma-separated */
    char agent_endpoint[256];
    uint32_t cpus;
    uint64_t memory_bytes;
    uint64_t disk_bytes;
    char runsc_version[128];
    char kernel[128];
    char features[256]; /* comma-separated names of present features */
    char agent_version[32];
    char instance_id[64];
    int64_t registered_at_ms;
    int64_t last_seen_ms;
    int64_t registrations; /* how many times it registered */
    uint64_t applied_revision;
    double load1;
    uint64_t memory_used_bytes;
    uint64_t memory_available_bytes;
    uint64_t disk_free_bytes;
    uint32_t workloads;
    char public_address[256]; /* host for published ports; "" when the agent did not say */
} ink_node_row;

/* Also opens the key that seals secrets, secret.key in the database's
 * directory (secretbox.h), creating it with a new database; an in-memory
 * database gets a key that lives as long as the store. The database
 * remembers its key: opening it with another key file, or without its
 * key file, is refused. A database from before digests of secrets were
 * keyed gets them redone under the key on its first open
 * (ink_apps_upgrade_digests). */
int ink_store_open(const char *path, ink_store **out, ink_err *err);
void ink_store_close(ink_store *s);
/* Random id made when the database was created. */
const char *ink_store_coordinator_id(const ink_store *s);
int ink_store_schema_version(ink_store *s);

/* For the modules that keep their own tables in this file (keys.c,
 * audit.c): the connection, with the store's lock held until
 * ink_store_unlock(), since one connection serves many threads. They run
 * their own transactions on it. */
struct sqlite3;
struct sqlite3 *ink_store_lock(ink_store *s);
void ink_store_unlock(ink_store *s);

/* Secrets at rest, sealed with the store's key: secret_env values of
 * assignments are sealed and unsealed by the store itself; these are for
 * modules that keep secrets of their own in this file. seal returns
 * malloc'ed "v1:..." text (NULL only if the cipher fails); unseal gives
 * malloc'ed plaintext or -1 "cannot decrypt secret: ...". Need no lock. */
char *ink_store_seal(ink_store *s, const char *plain);
int ink_store_unseal(ink_store *s, const char *sealed, char **plain, ink_err *err);
/* Keyed digests under the store's key (secretbox.h): a secret's
 * fingerprint, and the MAC of data that holds secrets. Anything that shows
 * or stores a digest of a secret uses these, never a plain hash. 0, or -1
 * when the MAC fails (fingerprint "unavailable", mac ""). Need no lock. */
int ink_store_fingerprint(ink_store *s, const void *value, size_t len, char out[17]);
int ink_store_mac_hex(ink_store *s, const void *data, size_t len, char out[65]);

int ink_store_register_node(ink_store *s, const Ink__V1__RegisterRequest *req, int64_t now_ms,
                            ink_err *err);
/* 0 and updated; 1 when the node or instance is unknown (must register). */
int ink_store_report_status(ink_store *s, const Ink__V1__ReportStatusRequest *req, int64_t now_ms,
                            ink_err *err);
int ink_store_get_node(ink_store *s, const char *id, ink_node_row *row, ink_err *err);
/* Fills a malloc'ed array, ordered by id. */
int ink_store_list_nodes(ink_store *s, ink_node_row **rows, size_t *n, ink_err *err);

/* Desired state. Another process (the operator CLI) may write the same
 * file while the daemon runs: revisions are read from the database inside
 * each transaction, never cached.
 *
 * put writes a as given (its generation too) and returns the new revision
 * (> 0), or -1. delete returns the new revision, 0 when there was no such
 * assignment (nothing written), or -1. */
int64_t ink_store_put_assignment(ink_store *s, const char *node_id, const Ink__V1__Assignment *a,
                                 ink_err *err);
int64_t ink_store_delete_assignment(ink_store *s, const char *node_id, const char *workload_id,
                                    ink_err *err);
/* put with the generation kept by the store, read and written in one
 * transaction so that two writers never hand out the same generation: when
 * a equals the stored spec but for the generation, nothing is written and
 * a->generation becomes the stored one; otherwise a is written with the
 * stored generation + 1 (1 for a new workload). *revision is the revision
 * of the write, or the current one when nothing changed. Returns 1 written,
 * 0 unchanged, -1 error. */
int ink_store_set_assignment(ink_store *s, const char *node_id, Ink__V1__Assignment *a,
                             uint64_t *revision, ink_err *err);
/* The same, for callers that hold ink_store_lock() and run their own write
 * transaction (apps.c writes replicas and their assignments together).
 * delete returns 0 when there was no such assignment. */
int64_t ink_store_put_assignment_locked(ink_store *s, const char *node_id,
                                        const Ink__V1__Assignment *a, ink_err *err);
int64_t ink_store_delete_assignment_locked(ink_store *s, const char *node_id,
                                           const char *workload_id, ink_err *err);
/* The newest revision (0 on a database error). */
uint64_t ink_store_revision(ink_store *s);
/* Drops log entries so that at most keep remain; watchers older than that
 * get a snapshot. */
int ink_store_compact_log(ink_store *s, uint64_t keep, ink_err *err);

/* The events a watcher of node_id needs after since_revision (at most
 * limit change events, or one SNAPSHOT when since cannot be resumed),
 * with secret_env values unsealed for the agent. A secret that cannot be
 * decrypted fails the call rather than leave out the workload or the
 * value (a change in the log that has one gets a SNAPSHOT instead).
 * *head is the newest revision the events cover: the watcher is current up
 * to it. The caller frees events with ink_store_free_events(). */
typedef struct ink_watch_batch {
    Ink__V1__WatchEvent **events;
    size_t n;
    uint64_t head;
} ink_watch_batch;

int ink_store_watch_events(ink_store *s, const char *node_id, uint64_t since, bool force_snapshot,
                           size_t limit, ink_watch_batch *out, ink_err *err);
void ink_store_free_events(ink_watch_batch *b);

/* An assignment with the status its node last reported for it. */
typedef struct ink_workload_row {
    char node_id[64];
    uint64_t revision;               /* of the assignment's last change */
    Ink__V1__Assignment *spec;       /* the desired spec */
    Ink__V1__WorkloadStatus *status; /* NULL until the node reports it */
} ink_workload_row;

/* Assignments of node_id (every node's when NULL) ordered by node and
 * workload id, in a malloc'ed array freed with ink_store_free_workloads().
 * secret_env values stay sealed (ink_store_unseal() opens one): lists
 * show names only. */
int ink_store_list_workloads(ink_store *s, const char *node_id, ink_workload_row **rows, size_t *n,
                             ink_err *err);
void ink_store_free_workloads(ink_workload_row *rows, size_t n);
/* A WorkloadStatus state as views and the CLI name it ("crash-loop"), or
 * NULL for a state this version does not know. */
const char *ink_workload_state_name(int state);

#endif
