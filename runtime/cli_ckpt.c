/* `tulpar ckpt inspect PATH` and `tulpar config`: look inside checkpoints and configs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "cli.h"

static int run_ckpt(tp_runtime_t *rt, int argc, char **argv)
{
    if (argc < 1) return tp_cli_usage_error("ckpt", "missing subcommand (inspect)");
    if (strcmp(argv[0], "inspect") != 0)
        return tp_cli_usage_error("ckpt", "unknown subcommand '%s' (inspect)", argv[0]);
    if (argc != 2) return tp_cli_usage_error("ckpt", "usage: tulpar ckpt inspect PATH");
    return tp_ckpt_inspect(argv[1], stdout);
}

const tp_cli_cmd_t tp_cmd_ckpt = {
    .name = "ckpt",
    .summary = "inspect a checkpoint",
    .usage = "usage: tulpar ckpt inspect PATH\n"
             "\n"
             "Print what a checkpoint holds: format version, step and epoch, every tensor with\n"
             "its shape and checksum status, and the resolved config it was trained with.\n"
             "Exits non-zero if the file is not a valid Tulpar checkpoint.\n",
    .needs_runtime = false,
    .run = run_ckpt,
};

static int run_config(tp_runtime_t *rt, int argc, char **argv)
{
    const char *path = NULL, *sets[TP_CLI_MAX_SETS];
    int n_sets = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--reference") == 0) {
            tp_config_write_reference(stdout);
            return TP_OK;
        } else if (tp_cli_is(argv[i], "--set")) {
            const char *v = tp_cli_value(argc, argv, &i, "--set");
            if (!v) return TP_ERR_USAGE;
            if (n_sets == TP_CLI_MAX_SETS) return tp_cli_usage_error("config", "too many --set");
            sets[n_sets++] = v;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return tp_cli_usage_error("config", "unknown option '%s'", argv[i]);
        } else if (!path) {
            path = argv[i];
        } else {
            return tp_cli_usage_error("config", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!path) return tp_cli_usage_error("config", "missing CONFIG file (or --reference)");
    tp_config_t cfg;
    TP_TRY(tp_cli_load_config(rt, path, sets, n_sets, &cfg));
    char *text = tp_config_to_string(&cfg);
    if (!text) return TP_ERR_NOMEM;
    fputs(text, stdout);
    free(text);
    return TP_OK;
}

const tp_cli_cmd_t tp_cmd_config = {
    .name = "config",
    .summary = "check a config and print it resolved, or print the key reference",
    .usage = "usage: tulpar config CONFIG [--set section.key=value]...\n"
             "       tulpar config --reference\n"
             "\n"
             "Validate CONFIG and print it with every default filled in, or print the table of\n"
             "all keys (Markdown) that README's config reference is made from.\n",
    .needs_runtime = false,
    .run = run_config,
};
