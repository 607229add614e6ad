/* Start-up plumbing both daemons share: configuration precedence
 * (defaults < config file < flags), log set-up and signal handling. */
#ifndef INK_DAEMON_H
#define INK_DAEMON_H

#include "config.h"
#include "err.h"

/* Applies defaults, then the config file (--config FILE anywhere before the
 * command, else default_path if it exists), then the flags. On return
 * *index is the first argument after the flags (the command, if any). */
int ink_load_config(const ink_opt *opts, void *cfg, const char *default_path, int argc, char **argv,
                    int *index, ink_err *err);

int ink_setup_logging(const char *component, const char *level, const char *format, ink_err *err);

/* Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (call before
 * starting threads, so they inherit the mask) and ignores SIGPIPE. */
void ink_block_signals(void);
/* Waits for SIGTERM or SIGINT and returns it. */
int ink_wait_for_shutdown(void);
/* The same; SIGHUP calls on_hup(arg) (in the calling thread) when given,
 * else it is logged and ignored. */
int ink_wait_for_signals(void (*on_hup)(void *arg), void *arg);

#endif
