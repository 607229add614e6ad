/* Configuration for both daemons: one table of options drives defaults, the
 * config file (key = value lines) and the command-line flags (--key=value),
 * so the three can never disagree about names or types. */
#ifndef INK_CONFIG_H
#define INK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

typedef enum {
    INK_OPT_STRING,   /* char * (heap, owned by the config struct) */
    INK_OPT_INT,      /* int64_t */
    INK_OPT_BOOL,     /* bool */
    INK_OPT_DURATION, /* int64_t milliseconds: "250ms", "5s", "2m", "1h" */
    INK_OPT_SIZE,     /* uint64_t bytes: "512", "64K", "16M", "2G" */
} ink_opt_type;

typedef struct ink_opt {
    const char *name; /* "listen": file key and flag --listen */
    ink_opt_type type;
    size_t offset;   /* offsetof(config struct, field) */
    const char *def; /* default, as text; NULL = empty string / 0 */
    const char *help;
    int64_t min, max; /* bounds for INT/DURATION/SIZE when max > min */
} ink_opt;

int ink_config_defaults(const ink_opt *opts, void *cfg, ink_err *err);
int ink_config_set(const ink_opt *opts, void *cfg, const char *name, const char *value,
                   ink_err *err);
/* Loads a file; errors name the file and line. missing_ok: an absent file is
 * not an error (the default path need not exist). */
int ink_config_load_file(const ink_opt *opts, void *cfg, const char *path, bool missing_ok,
                         ink_err *err);
/* Parses --key=value, --key value and --flag / --no-flag for booleans,
 * starting at argv[*index]; stops at the first non-flag argument or "--" and
 * leaves *index there. */
int ink_config_parse_args(const ink_opt *opts, void *cfg, int argc, char **argv, int *index,
                          ink_err *err);
void ink_config_free(const ink_opt *opts, void *cfg);
void ink_config_print_reference(const ink_opt *opts, FILE *out);

int ink_parse_duration_ms(const char *s, int64_t *out);
int ink_parse_size(const char *s, uint64_t *out);
int ink_parse_bool(const char *s, bool *out);

#endif
