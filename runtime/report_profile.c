/* The op profile's report (runtime.profile): a table in the log, ops grouped by kind and then
 * the longest ones with their shapes, and RUN_DIR/profile.json with every entry. Times are per
 * profiled step, as the table a person compares with the step time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_profile.h"
#include "json_writer.h"
#include "report.h"
#include "runtime.h"

#define TOP_ROWS 25

/* "gemm NT 768x2304x50304" -> "gemm" */
static void kind_of(const char *name, char *kind, size_t n)
{
    size_t k = strcspn(name, " ");
    if (k >= n) k = n - 1;
    memcpy(kind, name, k);
    kind[k] = '\0';
}

/* Entries summed by kind, longest first (at most n_e kinds). */
static int group_by_kind(const tp_profile_entry_t *e, int n_e, tp_profile_entry_t *g)
{
    int n_g = 0;
    for (int i = 0; i < n_e; i++) {
        char kind[sizeof e->name];
        kind_of(e[i].name, kind, sizeof kind);
        int k = 0;
        while (k < n_g && strcmp(g[k].name, kind) != 0)
            k++;
        if (k == n_g) {
            memset(&g[k], 0, sizeof g[k]);
            snprintf(g[k].name, sizeof g[k].name, "%s", kind);
            n_g++;
        }
        g[k].calls += e[i].calls;
        g[k].ms += e[i].ms;
        g[k].flops += e[i].flops;
    }
    /* e is sorted by time but kinds sum several entries: sort again (insertion, few kinds). */
    for (int i = 1; i < n_g; i++)
        for (int j = i; j > 0 && g[j].ms > g[j - 1].ms; j--) {
            tp_profile_entry_t tmp = g[j];
            g[j] = g[j - 1];
            g[j - 1] = tmp;
        }
    return n_g;
}

static void print_rows(const char *title, const tp_profile_entry_t *e, int n, double steps,
                       double ops_ms)
{
    tp_log_info("  %-34s %7s %9s %6s %8s", title, "calls", "ms/step", "%", "TFLOP/s");
    for (int i = 0; i < n; i++) {
        char tf[16] = "";
        if (e[i].flops > 0 && e[i].ms > 0)
            snprintf(tf, sizeof tf, "%.1f", e[i].flops / (e[i].ms * 1e-3) / 1e12);
        tp_log_info("  %-34s %7.0f %9.3f %5.1f%% %8s", e[i].name, (double)e[i].calls / steps,
                    e[i].ms / steps, ops_ms > 0 ? 100.0 * e[i].ms / ops_ms : 0.0, tf);
    }
}

static tp_status_t write_json(const char *path, const tp_profile_entry_t *e, int n, int64_t steps,
                              int64_t dropped, double span_ms, double ops_ms, double step_ms,
                              const char *backend)
{
    tp_json_file_t jf;
    TP_TRY(tp_json_file_open(&jf, path, true));
    tp_json_t *j = &jf.j;
    tp_json_object_begin(j, NULL);
    tp_json_int(j, "schema_version", 1);
    tp_json_str(j, "backend", backend);
    tp_json_int(j, "profiled_steps", steps);
    tp_json_int(j, "dropped_ops", dropped);
    tp_json_num(j, "step_time_ms_median", step_ms);
    tp_json_num(j, "ops_ms_per_step", ops_ms / (double)steps);
    tp_json_num(j, "span_ms_per_step", span_ms / (double)steps);
    tp_json_array_begin(j, "ops");
    for (int i = 0; i < n; i++) {
        char kind[sizeof e->name];
        kind_of(e[i].name, kind, sizeof kind);
        tp_json_object_begin(j, NULL);
        tp_json_str(j, "name", e[i].name);
        tp_json_str(j, "kind", kind);
        tp_json_num(j, "calls_per_step", (double)e[i].calls / (double)steps);
        tp_json_num(j, "ms_per_step", e[i].ms / (double)steps);
        tp_json_num(j, "flops_per_step", e[i].flops / (double)steps);
        tp_json_object_end(j);
    }
    tp_json_array_end(j);
    tp_json_object_end(j);
    return tp_json_file_commit(&jf, path);
}

tp_status_t tp_profile_report(tp_backend_t *be, const char *run_dir, double step_ms_median)
{
    const tp_profile_entry_t *e = NULL;
    int64_t steps = 0, dropped = 0;
    double span_ms = 0;
    int n = tp_backend_profile_entries(be, &e, &steps, &span_ms, &dropped);
    if (n == 0 || steps == 0) {
        tp_log_info("op profile: nothing profiled (the first step of a run is left out)");
        return TP_OK;
    }
    double ops_ms = 0;
    for (int i = 0; i < n; i++)
        ops_ms += e[i].ms;
    double ds = (double)steps;
    tp_log_info("op profile (rank 0, backend %s, %lld steps after the first): ops %.2f ms per "
                "step, first op start to last op end %.2f ms (%.0f%% busy), step %.2f ms",
                tp_backend_name(be), (long long)steps, ops_ms / ds, span_ms / ds,
                span_ms > 0 ? 100.0 * ops_ms / span_ms : 0.0, step_ms_median);
    if (dropped > 0)
        tp_log_warn("op profile: %lld op(s) went unrecorded (out of memory for their timing "
                    "marks): the totals below miss their time",
                    (long long)dropped);
    tp_profile_entry_t *g = tp_calloc((size_t)n, sizeof *g, "op profile groups");
    if (!g) return TP_ERR_NOMEM;
    int n_g = group_by_kind(e, n, g);
    print_rows("op kind", g, n_g, ds, ops_ms);
    free(g);
    print_rows("op (longest)", e, n < TOP_ROWS ? n : TOP_ROWS, ds, ops_ms);
    char path[4096];
    snprintf(path, sizeof path, "%s/profile.json", run_dir);
    TP_TRY(write_json(path, e, n, steps, dropped, span_ms, ops_ms, step_ms_median,
                      tp_backend_name(be)));
    tp_log_info("op profile -> %s", path);
    return TP_OK;
}
