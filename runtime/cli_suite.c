/* `tulpar bench suite` and `tulpar report`: thin wrappers that replace this process with the
 * Python orchestration in the source tree (benchmarks/suite.py, benchmarks/report_compare.py),
 * run by /usr/bin/python3 (Debian's, with numpy and matplotlib) and told this binary's path.
 * TULPAR_PYTHON and TULPAR_SOURCE_DIR override the interpreter and the source tree. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#ifndef TULPAR_SOURCE_DIR
#define TULPAR_SOURCE_DIR ""
#endif

#define DEFAULT_PYTHON "/usr/bin/python3"

/* exec PYTHON SOURCE/benchmarks/SCRIPT --tulpar SELF ARGS...; returns only on failure. */
static tp_status_t exec_script(const char *cmd, const char *script, int argc, char **argv)
{
    const char *python = getenv("TULPAR_PYTHON");
    if (!python || !*python) python = DEFAULT_PYTHON;
    if (access(python, X_OK) != 0)
        return TP_ERR(
            TP_ERR_UNSUPPORTED,
            "%s needs Python 3: %s is not executable (%s); install python3 (tools/deps.sh) "
            "or point TULPAR_PYTHON at an interpreter",
            cmd, python, strerror(errno));
    const char *src = getenv("TULPAR_SOURCE_DIR");
    const char *src_from = "TULPAR_SOURCE_DIR";
    if (!src || !*src) {
        src = TULPAR_SOURCE_DIR;
        src_from = "the build's source directory";
    }
    if (!*src)
        return TP_ERR(TP_ERR_UNSUPPORTED,
                      "%s: this binary does not know its source tree; set TULPAR_SOURCE_DIR to "
                      "the Tulpar checkout",
                      cmd);
    char path[PATH_MAX], self[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/benchmarks/%s", src, script);
    if (n < 0 || (size_t)n >= sizeof path)
        return TP_ERR(TP_ERR_USAGE, "%s: source directory path too long: %s", cmd, src);
    if (access(path, R_OK) != 0)
        return TP_ERR(TP_ERR_UNSUPPORTED,
                      "%s: cannot read %s (%s); the source tree (%s: %s) must hold benchmarks/; "
                      "set TULPAR_SOURCE_DIR to the Tulpar checkout",
                      cmd, path, strerror(errno), src_from, src);
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len < 0)
        return TP_ERR(TP_ERR_IO, "%s: cannot find this binary's path (/proc/self/exe): %s", cmd,
                      strerror(errno));
    self[len] = '\0';
    char **args = tp_calloc((size_t)argc + 5, sizeof(char *), "script arguments");
    if (!args) return TP_ERR_NOMEM;
    args[0] = (char *)python;
    args[1] = path;
    args[2] = "--tulpar";
    args[3] = self;
    for (int i = 0; i < argc; i++)
        args[4 + i] = argv[i];
    args[4 + argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    execv(python, args);
    tp_status_t st =
        TP_ERR(TP_ERR_IO, "%s: cannot run %s %s: %s", cmd, python, path, strerror(errno));
    free(args);
    return st;
}

/* Called by `tulpar bench` for `suite` (argv[0] == "suite"). */
int tp_bench_suite_main(int argc, char **argv);

int tp_bench_suite_main(int argc, char **argv)
{
    return exec_script("tulpar bench suite", "suite.py", argc - 1, argv + 1);
}

static int run_report(tp_runtime_t *rt, int argc, char **argv)
{
    (void)rt;
    if (argc < 1) return tp_cli_usage_error("report", "give run directories or report.json files");
    return exec_script("tulpar report", "report_compare.py", argc, argv);
}

const tp_cli_cmd_t tp_cmd_report = {
    .name = "report",
    .summary = "compare runs or benchmark-suite reports side by side (text, CSV, HTML)",
    .usage =
        "usage: tulpar report RUN_DIR|REPORT.json|SUITE_DIR... [--csv FILE] [--html FILE]\n"
        "                     [--all]\n"
        "\n"
        "Side-by-side table of the key figures of each input, one column per input:\n"
        "  RUN_DIR      a `tulpar train` run directory (its summary.json; a summary.json path\n"
        "               works too): model, ranks x threads, samples/s, tokens/s, step time,\n"
        "               GFLOP/s, exposed communication, loss, accuracy, core-hours\n"
        "  REPORT.json  a `tulpar bench suite` report (or its directory): training throughput\n"
        "               and scaling efficiency, collective bus bandwidth, checkpoint and\n"
        "               inference throughput, cost figures and the alpha-beta prediction\n"
        "With two inputs a last column gives the second over the first. Rows missing from an\n"
        "input are shown as '-'. --all lists every measurement of suite reports (default: the\n"
        "key figures); --csv and --html also write the table (the page is self-contained).\n"
        "Runs benchmarks/report_compare.py with /usr/bin/python3 (TULPAR_PYTHON and\n"
        "TULPAR_SOURCE_DIR override the interpreter and the source tree).\n",
    .needs_runtime = false,
    .run = run_report,
};
