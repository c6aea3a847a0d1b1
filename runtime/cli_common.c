/* Helpers shared by the subcommands. */
#include "cli.h"
#include "stop_request.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool tp_cli_is(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

const char *tp_cli_value(int argc, char **argv, int *i, const char *name)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (arg[n] == '=') return arg + n + 1;
    if (*i + 1 >= argc) {
        tp_cli_usage_error(NULL, "option %s needs a value", name);
        return NULL;
    }
    return argv[++*i];
}

tp_status_t tp_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    if (tp_log_rank() != 0) return TP_ERR_USAGE;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "tulpar%s%s: %s\n", cmd ? " " : "", cmd ? cmd : "", msg);
    fprintf(stderr, "Try 'tulpar %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
    fflush(stderr);
    return TP_ERR_USAGE;
}

tp_status_t tp_cli_load_config(const tp_runtime_t *rt, const char *path, const char *const *sets,
                               int n_sets, tp_config_t *cfg)
{
    /* Every rank reads the same file and meets the same errors: print them once. */
    tp_log_mute(rt && rt->rank != 0);
    tp_status_t st = tp_config_load_file(cfg, path);
    for (int i = 0; st == TP_OK && i < n_sets; i++)
        st = tp_config_set(cfg, sets[i]);
    if (st == TP_OK && n_sets > 0) st = tp_config_validate(cfg, path);
    tp_log_mute(0);
    return st;
}

int tp_cli_exit_code(tp_status_t st)
{
    switch (st) {
    case TP_OK:
        return 0;
    case TP_ERR_USAGE:
        return 2;
    case TP_ERR_CONFIG:
        return 3;
    case TP_ERR_DATA:
        return 4;
    case TP_ERR_CKPT:
        return 5;
    case TP_STOPPED:
        return TP_EXIT_STOPPED;
    default:
        return 1;
    }
}
