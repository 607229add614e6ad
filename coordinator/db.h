/* Small helpers for code that runs its own SQL on the store's connection
 * (keys.c, audit.c): statements freed on every path, errors with SQLite's
 * message, transactions that roll back on failure. */
#ifndef INK_DB_H
#define INK_DB_H

#include <sqlite3.h>

#include "err.h"

void ink_db_finalizep(sqlite3_stmt **st);
#define cleanup_stmt __attribute__((cleanup(ink_db_finalizep)))

/* Sets err to "database: WHAT: <sqlite message>"; returns -1. */
int ink_db_err(sqlite3 *db, ink_err *err, const char *what);
int ink_db_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, ink_err *err);
/* Runs SQL without results; err may be NULL. */
int ink_db_exec(sqlite3 *db, const char *sql, ink_err *err);
/* COMMIT when rc >= 0 (a failed commit makes it -1), else ROLLBACK;
 * returns rc. */
int ink_db_end_txn(sqlite3 *db, int rc, ink_err *err);

/* Steps st once, for a query that reads at most one row: 0 when st is on
 * a row, 1 when there is none, -1 on an error (err: "database: WHAT: ..."). */
int ink_db_step_row(sqlite3 *db, sqlite3_stmt *st, const char *what, ink_err *err);

/* Steps st to the end, appending one element of elem_size bytes per row to
 * *rows (grown as needed; *n counts them) and filling it with read(). On
 * an error the rows read so far stay for the caller to free. */
int ink_db_collect(sqlite3 *db, sqlite3_stmt *st, const char *what, size_t elem_size, void **rows,
                   size_t *n, void (*read)(sqlite3_stmt *st, void *row), ink_err *err);

#endif
