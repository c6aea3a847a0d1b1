/* The `tulpar` executable: subcommand dispatch, help, and turning a status into an exit code.
 * MPI is started only for subcommands that run on ranks and only under an MPI launcher. */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "cli.h"

static const tp_cli_cmd_t *const commands[] = {
    &tp_cmd_train, &tp_cmd_eval, &tp_cmd_infer,    &tp_cmd_ckpt,   &tp_cmd_config,
    &tp_cmd_bench, &tp_cmd_data, &tp_cmd_generate, &tp_cmd_report,
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tulpar COMMAND [options]   (tulpar COMMAND --help for details)\n\n"
            "Tulpar %s: data-parallel training and inference runtime.\n\ncommands:\n",
            TULPAR_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-8s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(out,
            "\nbackends in this build: %s\n"
            "Under mpirun or srun every process is one rank; started directly, tulpar runs\n"
            "as a single process without MPI.\n",
            tp_backend_available());
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return true;
    return false;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("tulpar %s (backends: %s)\n", TULPAR_VERSION, tp_backend_available());
        return 0;
    }
    const tp_cli_cmd_t *cmd = NULL;
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i]->name) == 0) cmd = commands[i];
    if (!cmd) {
        fprintf(stderr, "tulpar: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return 2;
    }
    if (wants_help(argc - 2, argv + 2)) {
        fputs(cmd->usage, stdout);
        return 0;
    }
    tp_runtime_t *rt = NULL;
    tp_status_t st;
    if (cmd->needs_runtime) {
        st = tp_runtime_create(&argc, &argv, &rt);
        if (st != TP_OK) return tp_cli_exit_code(st);
    }
    st = cmd->run(rt, argc - 2, argv + 2);
    if (st == TP_ERR_MPI && rt && rt->world_size > 1) {
        /* An MPI failure means collectives can no longer be trusted to finish: stop every rank. */
        fprintf(stderr, "tulpar: aborting all ranks after an MPI failure\n");
        tp_comm_abort(rt->comm, 1);
    }
    tp_runtime_free(rt);
    return tp_cli_exit_code(st);
}
