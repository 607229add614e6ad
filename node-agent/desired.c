/* The agent's copy of its desired state. Applying watch events is
 * idempotent: an event at or below the stored revision was seen already and
 * changes nothing, which is what makes resuming a watch after any failure
 * safe. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "util.h"

#define DESIRED_FILE "desired.pb"

static Ink__V1__Assignment *copy_assignment(const Ink__V1__Assignment *a)
{
    size_t len = protobuf_c_message_get_packed_size(&a->base);
    cleanup_free uint8_t *buf = ink_xmalloc(len);
    protobuf_c_message_pack(&a->base, buf);
    Ink__V1__Assignment *c = ink__v1__assignment__unpack(NULL, len, buf);
    if (!c)
        abort(); /* we just packed it */
    return c;
}

static void clear_items(ink_desired *d)
{
    for (size_t i = 0; i < d->n; i++)
        ink__v1__assignment__free_unpacked(d->items[i], NULL);
    free(d->items);
    d->items = NULL;
    d->n = 0;
}

void ink_desired_free(ink_desired *d)
{
    clear_items(d);
    d->revision = 0;
}

const Ink__V1__Assignment *ink_desired_find(const ink_desired *d, const char *workload_id)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->items[i]->workload_id, workload_id) == 0)
            return d->items[i];
    }
    return NULL;
}

static void put_item(ink_desired *d, const Ink__V1__Assignment *a)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->items[i]->workload_id, a->workload_id) == 0) {
            ink__v1__assignment__free_unpacked(d->items[i], NULL);
            d->items[i] = copy_assignment(a);
            return;
        }
    }
    Ink__V1__Assignment **ni = realloc(d->items, (d->n + 1) * sizeof *ni);
    if (!ni)
        abort();
    d->items = ni;
    d->items[d->n++] = copy_assignment(a);
}

static void remove_item(ink_desired *d, const char *workload_id)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->items[i]->workload_id, workload_id) == 0) {
            ink__v1__assignment__free_unpacked(d->items[i], NULL);
            d->items[i] = d->items[--d->n];
            return;
        }
    }
}

int ink_desired_apply(ink_desired *d, const Ink__V1__WatchEvent *ev, ink_err *err)
{
    switch (ev->kind) {
    case INK__V1__WATCH_EVENT__KIND__SNAPSHOT:
        /* A snapshot is the whole truth at its revision, even an older one
         * (the coordinator's database may have been restored). */
        clear_items(d);
        for (size_t i = 0; i < ev->n_assignments; i++)
            put_item(d, ev->assignments[i]);
        d->revision = ev->revision;
        return 1;
    case INK__V1__WATCH_EVENT__KIND__UPSERT:
        if (ev->revision <= d->revision)
            return 0;
        if (ev->n_assignments != 1)
            return ink_err_set(err, 0, "UPSERT at revision %llu carries %zu assignments",
                               (unsigned long long)ev->revision, ev->n_assignments);
        if (!ink_valid_name(ev->assignments[0]->workload_id))
            return ink_err_set(err, 0, "UPSERT at revision %llu: invalid workload id '%s'",
                               (unsigned long long)ev->revision, ev->assignments[0]->workload_id);
        put_item(d, ev->assignments[0]);
        d->revision = ev->revision;
        return 1;
    case INK__V1__WATCH_EVENT__KIND__DELETE:
        if (ev->revision <= d->revision)
            return 0;
        remove_item(d, ev->workload_id);
        d->revision = ev->revision;
        return 1;
    case INK__V1__WATCH_EVENT__KIND__PROGRESS:
        if (ev->revision <= d->revision)
            return 0;
        d->revision = ev->revision;
        return 1;
    default:
        return ink_err_set(err, 0, "unknown watch event kind %d", ev->kind);
    }
}

int ink_desired_save(const ink_desired *d, const char *state_dir, ink_err *err)
{
    Ink__V1__DesiredState st = INK__V1__DESIRED_STATE__INIT;
    st.revision = d->revision;
    st.coordinator_id = (char *)d->coordinator_id;
    st.assignments = d->items;
    st.n_assignments = d->n;
    size_t len = protobuf_c_message_get_packed_size(&st.base);
    cleanup_free uint8_t *buf = ink_xmalloc(len);
    protobuf_c_message_pack(&st.base, buf);
    cleanup_free char *path = ink_xasprintf("%s/%s", state_dir, DESIRED_FILE);
    return ink_write_file_atomic(path, buf, len, 0600, err);
}

int ink_desired_load(ink_desired *d, const char *state_dir, ink_err *err)
{
    memset(d, 0, sizeof *d);
    cleanup_free char *path = ink_xasprintf("%s/%s", state_dir, DESIRED_FILE);
    cleanup_free char *buf = NULL;
    size_t len;
    if (ink_read_file(path, 64 << 20, &buf, &len, err) < 0) {
        if (err->errnum == ENOENT) {
            ink_err_clear(err);
            return 0; /* first start */
        }
        return -1;
    }
    Ink__V1__DesiredState *st = ink__v1__desired_state__unpack(NULL, len, (uint8_t *)buf);
    if (!st)
        return ink_err_set(err, 0, "%s is corrupt: remove it and the agent will fetch a snapshot",
                           path);
    d->revision = st->revision;
    snprintf(d->coordinator_id, sizeof d->coordinator_id, "%s", st->coordinator_id);
    for (size_t i = 0; i < st->n_assignments; i++)
        put_item(d, st->assignments[i]);
    ink__v1__desired_state__free_unpacked(st, NULL);
    return 0;
}
