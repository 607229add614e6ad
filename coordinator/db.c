#include "db.h"

#include <stdlib.h>
#include <string.h>

void ink_db_finalizep(sqlite3_stmt **st)
{
    if (*st)
        sqlite3_finalize(*st);
}

int ink_db_err(sqlite3 *db, ink_err *err, const char *what)
{
    return ink_err_set(err, 0, "database: %s: %s", what, sqlite3_errmsg(db));
}

int ink_db_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, ink_err *err)
{
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK)
        return ink_db_err(db, err, "prepare");
    return 0;
}

int ink_db_exec(sqlite3 *db, const char *sql, ink_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        if (err)
            ink_err_set(err, 0, "database: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int ink_db_end_txn(sqlite3 *db, int rc, ink_err *err)
{
    if (rc >= 0 && ink_db_exec(db, "COMMIT", err) < 0)
        rc = -1;
    if (rc < 0)
        ink_db_exec(db, "ROLLBACK", NULL);
    return rc;
}

int ink_db_step_row(sqlite3 *db, sqlite3_stmt *st, const char *what, ink_err *err)
{
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW)
        return 0;
    if (step == SQLITE_DONE)
        return 1;
    return ink_db_err(db, err, what);
}

int ink_db_collect(sqlite3 *db, sqlite3_stmt *st, const char *what, size_t elem_size, void **rows,
                   size_t *n, void (*read)(sqlite3_stmt *st, void *row), ink_err *err)
{
    size_t cap = *n;
    for (;;) {
        int step = sqlite3_step(st);
        if (step == SQLITE_DONE)
            return 0;
        if (step != SQLITE_ROW)
            return ink_db_err(db, err, what);
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char *nr = realloc(*rows, cap * elem_size);
            if (!nr)
                abort();
            *rows = nr;
        }
        void *row = (char *)*rows + (*n)++ * elem_size;
        memset(row, 0, elem_size);
        read(st, row);
    }
}
