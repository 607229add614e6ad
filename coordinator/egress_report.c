/* Egress counters from node status reports: per replica totals and the app
 * events that tell about them (apps.h, ink_apps_note_egress). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps.h"
#include "apps_internal.h"
#include "db.h"
#include "egress.h"
#include "log.h"
#include "util.h"

/* One row of egress_blocked (store.c, migration 5), as loaded and as it
 * will be written. Workload ids come from assignments (at most 128
 * characters); longer ones in a report are not ours and are skipped. */
typedef struct counter {
    char workload[160], category[INK_EGRESS_POLICY_NAME_MAX + 1], app_id[32];
    bool has_app;
    int64_t reported, total, untold, told_ms;
    bool stored; /* the table has it */
    bool dirty;  /* to be written */
    bool seen;   /* the report has a count for it */
    bool gone;   /* the report no longer lists its workload */
} counter;

typedef struct counters {
    counter *c;
    size_t n, cap;
} counters;

static counter *counter_add(counters *cs)
{
    if (cs->n == cs->cap) {
        cs->cap = cs->cap ? cs->cap * 2 : 16;
        cs->c = ink_xrealloc(cs->c, cs->cap * sizeof *cs->c);
    }
    counter *c = &cs->c[cs->n++];
    memset(c, 0, sizeof *c);
    return c;
}

static counter *counter_find(counters *cs, const char *workload, const char *category)
{
    for (size_t i = 0; i < cs->n; i++) {
        if (strcmp(cs->c[i].workload, workload) == 0 && strcmp(cs->c[i].category, category) == 0)
            return &cs->c[i];
    }
    return NULL;
}

static void copy_text(char *out, size_t outlen, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, outlen, "%s", t ? (const char *)t : "");
}

static int load(sqlite3 *db, const char *node, counters *cs, ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db,
                       "SELECT workload_id, category, app_id, reported, total, untold, told_ms"
                       " FROM egress_blocked WHERE node_id = ?",
                       &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        counter *c = counter_add(cs);
        copy_text(c->workload, sizeof c->workload, st, 0);
        copy_text(c->category, sizeof c->category, st, 1);
        c->has_app = sqlite3_column_type(st, 2) != SQLITE_NULL;
        copy_text(c->app_id, sizeof c->app_id, st, 2);
        c->reported = sqlite3_column_int64(st, 3);
        c->total = sqlite3_column_int64(st, 4);
        c->untold = sqlite3_column_int64(st, 5);
        c->told_ms = sqlite3_column_int64(st, 6);
        c->stored = true;
    }
    return step == SQLITE_DONE ? 0 : ink_db_err(db, err, "read egress counters");
}

/* The app a workload on node is a replica of; none for workloads put by
 * the operator CLI, which have no app to tell. */
static int app_of(sqlite3 *db, const char *node, counter *c, ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db, "SELECT app_id FROM replicas WHERE workload_id = ? AND node_id = ?", &st,
                       err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, c->workload, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, node, -1, SQLITE_STATIC);
    int found = ink_db_step_row(db, st, "find replica", err);
    if (found == 0) {
        c->has_app = true;
        copy_text(c->app_id, sizeof c->app_id, st, 0);
    }
    return found < 0 ? -1 : 0;
}

static const Ink__V1__WorkloadStatus *reported_workload(const Ink__V1__ReportStatusRequest *r,
                                                        const char *id)
{
    for (size_t i = 0; i < r->n_workloads; i++) {
        if (strcmp(r->workloads[i]->workload_id, id) == 0)
            return r->workloads[i];
    }
    return NULL;
}

/* Counters are SQLite integers: a node claiming more than fits is clamped
 * rather than stored negative. */
static int64_t clamp_packets(uint64_t p)
{
    return p > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)p;
}

/* Folds the report into cs. 0, or -1 on a database error. */
static int apply_report(sqlite3 *db, const Ink__V1__ReportStatusRequest *r, counters *cs,
                        ink_err *err)
{
    bool warned = false;
    for (size_t i = 0; i < r->n_workloads; i++) {
        const Ink__V1__WorkloadStatus *w = r->workloads[i];
        if (strlen(w->workload_id) >= sizeof cs->c[0].workload)
            continue;
        for (size_t k = 0; k < w->n_egress_blocked; k++) {
            const Ink__V1__EgressBlocked *b = w->egress_blocked[k];
            /* Categories end up in events an AI client reads: only the
             * names a policy file can give ([a-z0-9-], as policy names). */
            if (!ink_egress_valid_policy_name(b->category)) {
                if (!warned)
                    LOG_WARN("status report: egress category is not a name: ignored", "node",
                             r->node_id, "workload", w->workload_id);
                warned = true;
                continue;
            }
            counter *c = counter_find(cs, w->workload_id, b->category);
            if (!c) {
                c = counter_add(cs);
                snprintf(c->workload, sizeof c->workload, "%s", w->workload_id);
                snprintf(c->category, sizeof c->category, "%s", b->category);
                if (app_of(db, r->node_id, c, err) < 0)
                    return -1;
            }
            if (c->seen)
                continue; /* a category listed twice: the first count stands */
            c->seen = true;
            int64_t now = clamp_packets(b->packets);
            /* Lower than last time: the counter restarted (the workload's
             * network was set up again), and all of it is new. */
            int64_t added = now >= c->reported ? now - c->reported : now;
            if (added == 0 && now == c->reported)
                continue;
            c->total = added > INT64_MAX - c->total ? INT64_MAX : c->total + added;
            c->untold = added > INT64_MAX - c->untold ? INT64_MAX : c->untold + added;
            c->reported = now;
            c->dirty = true;
        }
    }
    for (size_t i = 0; i < cs->n; i++) {
        counter *c = &cs->c[i];
        if (c->seen)
            continue;
        if (!reported_workload(r, c->workload)) {
            c->gone = true;
        } else if (c->reported != 0) {
            /* Listed without this category: its counter is 0 now. */
            c->reported = 0;
            c->dirty = true;
        }
    }
    return 0;
}

static int tell(sqlite3 *db, const char *node, counter *c, int64_t now_ms, ink_err *err)
{
    bool due = c->gone || c->told_ms == 0 || now_ms - c->told_ms >= INK_EGRESS_EVENT_INTERVAL_MS ||
               now_ms < c->told_ms; /* the clock went back: do not wait for it */
    if (c->untold == 0 || !due)
        return 0;
    if (c->has_app &&
        ink_apps_event(db, c->app_id, now_ms,
                       "replica %s on node %s: egress blocked %" PRId64 " packet%s (%s)",
                       c->workload, node, c->untold, c->untold == 1 ? "" : "s", c->category) < 0)
        return ink_db_err(db, err, "app event");
    c->untold = 0;
    c->told_ms = now_ms;
    c->dirty = true;
    return 0;
}

static int write_counters(sqlite3 *db, const char *node, const counters *cs, ink_err *err)
{
    cleanup_stmt sqlite3_stmt *put = NULL, *del = NULL;
    if (ink_db_prepare(db,
                       "INSERT OR REPLACE INTO egress_blocked (node_id, workload_id, category,"
                       " app_id, reported, total, untold, told_ms)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       &put, err) < 0 ||
        ink_db_prepare(db,
                       "DELETE FROM egress_blocked WHERE node_id = ? AND workload_id = ? AND"
                       " category = ?",
                       &del, err) < 0)
        return -1;
    for (size_t i = 0; i < cs->n; i++) {
        const counter *c = &cs->c[i];
        sqlite3_stmt *st = c->gone ? del : put;
        if (c->gone ? !c->stored : !c->dirty)
            continue;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, c->workload, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, c->category, -1, SQLITE_STATIC);
        if (!c->gone) {
            if (c->has_app)
                sqlite3_bind_text(st, 4, c->app_id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 5, c->reported);
            sqlite3_bind_int64(st, 6, c->total);
            sqlite3_bind_int64(st, 7, c->untold);
            sqlite3_bind_int64(st, 8, c->told_ms);
        }
        if (sqlite3_step(st) != SQLITE_DONE)
            return ink_db_err(db, err, "write egress counters");
    }
    return 0;
}

static bool report_has_counts(const Ink__V1__ReportStatusRequest *r)
{
    for (size_t i = 0; i < r->n_workloads; i++) {
        if (r->workloads[i]->n_egress_blocked)
            return true;
    }
    return false;
}

/* Whether the table has rows of node: without them and without counts in
 * the report there is nothing to do, which is every heartbeat of a node
 * whose workloads never hit a blocked address. */
static int node_has_rows(sqlite3 *db, const char *node, ink_err *err)
{
    cleanup_stmt sqlite3_stmt *st = NULL;
    if (ink_db_prepare(db, "SELECT 1 FROM egress_blocked WHERE node_id = ? LIMIT 1", &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
    int found = ink_db_step_row(db, st, "read egress counters", err);
    return found < 0 ? -1 : found == 0;
}

int ink_apps_note_egress(ink_store *s, const Ink__V1__ReportStatusRequest *r, int64_t now_ms,
                         ink_err *err)
{
    sqlite3 *db = ink_store_lock(s);
    int rc = 0;
    if (!report_has_counts(r)) {
        rc = node_has_rows(db, r->node_id, err);
        if (rc <= 0) {
            ink_store_unlock(s);
            return rc;
        }
    }
    counters cs = {0};
    rc = ink_db_exec(db, "BEGIN IMMEDIATE", err);
    if (rc == 0)
        rc = load(db, r->node_id, &cs, err);
    if (rc == 0)
        rc = apply_report(db, r, &cs, err);
    for (size_t i = 0; rc == 0 && i < cs.n; i++)
        rc = tell(db, r->node_id, &cs.c[i], now_ms, err);
    if (rc == 0)
        rc = write_counters(db, r->node_id, &cs, err);
    rc = ink_db_end_txn(db, rc, err);
    ink_store_unlock(s);
    free(cs.c);
    return rc < 0 ? ink_err_wrap(err, "egress counters of node %s", r->node_id) : 0;
}
