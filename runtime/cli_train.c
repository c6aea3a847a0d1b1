/* `tulpar train CONFIG`: parse options, load the config, run the trainer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trainer.h"

static int run_train(tp_runtime_t *rt, int argc, char **argv)
{
    tp_cli_args_t a = {0};
    tp_train_opts_t opts = {0};
    const char *run_dir = NULL;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (tp_cli_is(arg, "--set")) {
            const char *v = tp_cli_value(argc, argv, &i, "--set");
            if (!v) return TP_ERR_USAGE;
            if (a.n_sets == TP_CLI_MAX_SETS) return tp_cli_usage_error("train", "too many --set");
            a.sets[a.n_sets++] = v;
        } else if (tp_cli_is(arg, "--run-dir")) {
            if (!(run_dir = tp_cli_value(argc, argv, &i, "--run-dir"))) return TP_ERR_USAGE;
        } else if (tp_cli_is(arg, "--resume")) {
            if (!(opts.resume = tp_cli_value(argc, argv, &i, "--resume"))) return TP_ERR_USAGE;
        } else if (tp_cli_is(arg, "--stop-at")) {
            const char *v = tp_cli_value(argc, argv, &i, "--stop-at");
            char *end = NULL;
            if (!v) return TP_ERR_USAGE;
            opts.stop_at = strtoll(v, &end, 10);
            if (!*v || *end || opts.stop_at <= 0)
                return tp_cli_usage_error("train", "--stop-at needs a positive step, got '%s'", v);
        } else if (arg[0] == '-' && arg[1]) {
            return tp_cli_usage_error("train", "unknown option '%s'", arg);
        } else {
            if (a.n_positional == 1)
                return tp_cli_usage_error("train", "unexpected argument '%s'", arg);
            a.positional[a.n_positional++] = arg;
        }
    }
    if (a.n_positional != 1) return tp_cli_usage_error("train", "missing CONFIG file");
    opts.config_path = a.positional[0];
    tp_config_t cfg;
    TP_TRY(tp_cli_load_config(rt, opts.config_path, a.sets, a.n_sets, &cfg));
    char default_dir[4096];
    if (!run_dir) {
        /* runs/<config name without extension>: stable, so --resume auto finds it again. */
        const char *base = strrchr(opts.config_path, '/');
        base = base ? base + 1 : opts.config_path;
        snprintf(default_dir, sizeof default_dir, "runs/%s", base);
        char *dot = strrchr(default_dir, '.');
        if (dot && dot > default_dir + 5) *dot = '\0';
        run_dir = default_dir;
    }
    opts.run_dir = run_dir;
    return tp_train(rt, &cfg, &opts);
}

const tp_cli_cmd_t tp_cmd_train = {
    .name = "train",
    .summary = "train a model data-parallel over the ranks",
    .usage = "usage: tulpar train CONFIG [options]\n"
             "\n"
             "Train the model described by CONFIG (libconfig) on every rank of the job; the\n"
             "global batch (train.batch) is split evenly over the ranks.\n"
             "\n"
             "options:\n"
             "  --set section.key=value  override a config key (repeatable)\n"
             "  --run-dir DIR            run directory (default runs/<config name>): resolved\n"
             "                           config, metrics.jsonl, summary.json, checkpoints/\n"
             "  --resume auto|PATH       continue from the newest valid checkpoint of the run\n"
             "                           directory (auto) or from PATH; bit-exact continuation\n"
             "  --stop-at STEP           checkpoint and stop after STEP (the schedule still\n"
             "                           spans the whole run; resume later to finish)\n"
             "\n"
             "Run under mpirun/srun for several ranks; started directly it runs as one process.\n",
    .needs_runtime = true,
    .run = run_train,
};
