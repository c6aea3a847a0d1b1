/* The `tulpar` subcommands and what they share: argument parsing helpers, config loading with
 * --set overrides, and status -> exit code mapping. */
#ifndef TP_CLI_H
#define TP_CLI_H

#include <stdbool.h>

#include "config.h"
#include "runtime.h"

#define TP_CLI_MAX_SETS 64

typedef struct tp_cli_cmd {
    const char *name;
    const char *summary;
    const char *usage;                                   /* full help text */
    bool needs_runtime;                                  /* starts MPI under a launcher */
    int (*run)(tp_runtime_t *rt, int argc, char **argv); /* returns a tp_status_t */
} tp_cli_cmd_t;

extern const tp_cli_cmd_t tp_cmd_train, tp_cmd_eval, tp_cmd_infer, tp_cmd_ckpt, tp_cmd_config,
    tp_cmd_bench;
extern const tp_cli_cmd_t tp_cmd_data;
extern const tp_cli_cmd_t tp_cmd_generate;
extern const tp_cli_cmd_t tp_cmd_report;

/* Parsed common options. */
typedef struct tp_cli_args {
    const char *positional[4];
    int n_positional;
    const char *sets[TP_CLI_MAX_SETS];
    int n_sets;
} tp_cli_args_t;

/* Value of option `argv[*i]` (either "--opt VALUE" or "--opt=VALUE"); advances *i. NULL with a
 * usage error printed when the value is missing. `name` is e.g. "--run-dir". */
const char *tp_cli_value(int argc, char **argv, int *i, const char *name);
/* True when argv[i] is `name` or starts with "name=". */
bool tp_cli_is(const char *arg, const char *name);

/* Load CONFIG, apply --set overrides, validate. Errors are printed once (rank 0). */
tp_status_t tp_cli_load_config(const tp_runtime_t *rt, const char *path, const char *const *sets,
                               int n_sets, tp_config_t *cfg);

tp_status_t tp_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

int tp_cli_exit_code(tp_status_t st);

#endif
