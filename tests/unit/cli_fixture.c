#include "cli_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "testlib.h"
#include "util.h"

int cli_fixture_setup(void **state)
{
    cli_fixture *f = ink_xcalloc(1, sizeof *f);
    if (test_mkdtemp(f->dir, sizeof f->dir, "cli") < 0)
        return -1;
    snprintf(f->db, sizeof f->db, "%s/ink.db", f->dir);
    ink_err err = {0};
    if (ink_config_defaults(ink_coordinator_options, &f->cfg, &err) < 0 ||
        ink_config_set(ink_coordinator_options, &f->cfg, "database", f->db, &err) < 0 ||
        ink_store_open(f->db, &f->store, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

int cli_fixture_teardown(void **state)
{
    cli_fixture *f = *state;
    ink_store_close(f->store);
    ink_config_free(ink_coordinator_options, &f->cfg);
    free(f->out);
    free(f->err);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

int cli_fixture_run(cli_fixture *f, cli_command cmd, const char **args)
{
    int argc = 0;
    while (args[argc])
        argc++;
    free(f->out);
    free(f->err);
    size_t olen, elen;
    FILE *out = open_memstream(&f->out, &olen);
    FILE *errf = open_memstream(&f->err, &elen);
    assert_non_null(out);
    assert_non_null(errf);
    int rc = cmd(&f->cfg, argc, (char **)args, out, errf);
    fclose(out);
    fclose(errf);
    return rc;
}
