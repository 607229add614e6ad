/* A fixture for tests of ink-coordinator's CLI commands: a scratch
 * directory with a database, a configuration naming it, the daemon's own
 * store handle on the same file, and a runner that captures what a command
 * prints. */
#ifndef INK_CLI_FIXTURE_H
#define INK_CLI_FIXTURE_H

#include <stdio.h>

#include "coordinator.h"

typedef struct cli_fixture {
    char dir[128];
    char db[192];
    ink_coordinator_config cfg;
    ink_store *store; /* the daemon's handle on the same file */
    char *out, *err;  /* what the last command printed */
} cli_fixture;

typedef int (*cli_command)(const ink_coordinator_config *cfg, int argc, char **argv, FILE *out,
                           FILE *errf);

int cli_fixture_setup(void **state);
int cli_fixture_teardown(void **state);
/* Runs cmd with the NULL-terminated args, keeping its output in f->out and
 * f->err; returns its exit code. */
int cli_fixture_run(cli_fixture *f, cli_command cmd, const char **args);

#endif
