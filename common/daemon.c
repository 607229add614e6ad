#include "daemon.h"

#include <signal.h>
#include <string.h>

#include "log.h"

int ink_load_config(const ink_opt *opts, void *cfg, const char *default_path, int argc, char **argv,
                    int *index, ink_err *err)
{
    if (ink_config_defaults(opts, cfg, err) < 0)
        return -1;
    const char *path = default_path;
    bool explicit_path = false;
    /* --config is not an option of the table: find it first (anywhere up
     * to "--", since flag values and the command may precede it), so that
     * flags given before or after it still win over the file. */
    int first = *index;
    for (int i = first; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                return ink_err_set(err, 0, "flag '--config' needs a value");
            path = argv[++i];
            explicit_path = true;
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
            explicit_path = true;
        }
    }
    if (ink_config_load_file(opts, cfg, path, !explicit_path, err) < 0)
        return -1;
    return ink_config_parse_args(opts, cfg, argc, argv, index, err);
}

int ink_setup_logging(const char *component, const char *level, const char *format, ink_err *err)
{
    ink_log_level lvl;
    if (ink_log_parse_level(level, &lvl) < 0)
        return ink_err_set(err, 0, "log_level '%s': expected debug, info, warn or error", level);
    ink_log_format fmt;
    if (strcmp(format, "auto") == 0)
        fmt = INK_LOG_AUTO;
    else if (strcmp(format, "logfmt") == 0)
        fmt = INK_LOG_LOGFMT;
    else if (strcmp(format, "journal") == 0)
        fmt = INK_LOG_JOURNAL;
    else
        return ink_err_set(err, 0, "log_format '%s': expected auto, logfmt or journal", format);
    ink_log_init(component, lvl, fmt);
    return 0;
}

static sigset_t shutdown_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

void ink_block_signals(void)
{
    sigset_t set = shutdown_signals();
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int ink_wait_for_signals(void (*on_hup)(void *arg), void *arg)
{
    sigset_t set = shutdown_signals();
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP && on_hup) {
            on_hup(arg);
            continue;
        }
        if (sig == SIGHUP) {
            LOG_INFO("SIGHUP ignored: restart the service to apply configuration changes");
            continue;
        }
        return sig;
    }
}

int ink_wait_for_shutdown(void)
{
    return ink_wait_for_signals(NULL, NULL);
}
