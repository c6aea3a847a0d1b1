/* Progress line, metrics.jsonl and summary.json. */
#define _GNU_SOURCE
#include "report.h"

#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json_writer.h"
#include "runtime.h"

void tp_format_duration(double s, char *out, size_t cap)
{
    if (!isfinite(s) || s < 0) {
        snprintf(out, cap, "--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, cap, "%ldh%02ldm%02lds", t / 3600, (t / 60) % 60, t % 60);
    else if (t >= 60)
        snprintf(out, cap, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(out, cap, "%lds", t);
}

/* An updating line only on a real terminal. Under mpirun a rank's stdout is a pseudo-terminal
 * even when mpirun's own output goes to a file, so there the launcher's stdout decides (Linux
 * /proc). TULPAR_PROGRESS=line|plain overrides. */
static bool progress_on_terminal(void)
{
    const char *env = getenv("TULPAR_PROGRESS");
    if (env && strcmp(env, "line") == 0) return true;
    if (env && strcmp(env, "plain") == 0) return false;
    if (!isatty(STDOUT_FILENO)) return false;
    if (!getenv("OMPI_COMM_WORLD_SIZE")) return true;
    char link[64], target[256];
    snprintf(link, sizeof link, "/proc/%d/fd/1", (int)getppid());
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return false;
    target[n] = '\0';
    return strncmp(target, "/dev/pts/", 9) == 0 || strncmp(target, "/dev/tty", 8) == 0;
}

tp_status_t tp_report_open(tp_report_t *r, const char *run_dir, bool is_root)
{
    memset(r, 0, sizeof *r);
    if (!is_root) return TP_OK;
    r->tty = progress_on_terminal();
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    r->metrics = fopen(path, "a");
    if (!r->metrics) return TP_ERR(TP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    return TP_OK;
}

void tp_report_step(tp_report_t *r, const tp_step_log_t *s)
{
    if (!r->metrics) return;
    char eta[32];
    tp_format_duration(s->eta_s, eta, sizeof eta);
    int width = snprintf(NULL, 0, "%lld", (long long)s->total);
    printf("%sstep %*lld/%lld | epoch %lld | loss %.4f | lr %.2e | %.0f samples/s | %.1f ms/step "
           "| compute %.1f + comm %.1f ms (%.1f in flight) | ETA %s%s",
           r->tty ? "\r" : "", width, (long long)s->step, (long long)s->total, (long long)s->epoch,
           s->loss, s->lr, s->samples_per_s, s->step_ms, s->step_ms - s->comm_ms, s->comm_ms,
           s->comm_total_ms, eta, r->tty ? "\033[K" : "\n");
    fflush(stdout);
    r->line_open = r->tty;

    tp_json_t j;
    tp_json_init(&j, r->metrics, false);
    tp_json_object_begin(&j, NULL);
    tp_json_int(&j, "step", s->step);
    tp_json_int(&j, "epoch", s->epoch);
    tp_json_num(&j, "loss", s->loss);
    tp_json_num(&j, "lr", s->lr);
    tp_json_num(&j, "grad_norm", s->grad_norm);
    tp_json_num(&j, "samples_per_s", s->samples_per_s);
    tp_json_num(&j, "step_ms", s->step_ms);
    tp_json_num(&j, "compute_ms", s->step_ms - s->comm_ms);
    tp_json_num(&j, "comm_ms", s->comm_ms);
    tp_json_num(&j, "comm_total_ms", s->comm_total_ms);
    tp_json_object_end(&j);
    fputc('\n', r->metrics);
    fflush(r->metrics);
}

void tp_report_eval(tp_report_t *r, int64_t step, double loss, double accuracy,
                    double bits_per_token)
{
    if (!r->metrics) return;
    tp_json_t j;
    tp_json_init(&j, r->metrics, false);
    tp_json_object_begin(&j, NULL);
    tp_json_int(&j, "step", step);
    tp_json_num(&j, "eval_loss", loss);
    tp_json_num(&j, "eval_accuracy", accuracy);
    tp_json_num(&j, "eval_bits_per_token", bits_per_token);
    tp_json_object_end(&j);
    fputc('\n', r->metrics);
    fflush(r->metrics);
}

void tp_report_break(tp_report_t *r)
{
    if (r->line_open) {
        fputc('\n', stdout);
        fflush(stdout);
        r->line_open = false;
    }
}

void tp_report_close(tp_report_t *r)
{
    tp_report_break(r);
    if (r->metrics) fclose(r->metrics);
    r->metrics = NULL;
}

tp_status_t tp_summary_write(const char *path, const tp_summary_t *s)
{
    tp_json_file_t jf;
    TP_TRY(tp_json_file_open(&jf, path, true));
    tp_json_t *j = &jf.j;
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    tp_json_object_begin(j, NULL);
    tp_json_int(j, "schema_version", 1);
    tp_json_str(j, "tulpar_version", TULPAR_VERSION);
    tp_json_str(j, "finished_at", when);
    tp_json_str(j, "model", s->model);
    tp_json_int(j, "params", s->params);
    tp_json_str(j, "backend", s->backend);
    tp_json_str(j, "backend_detail", s->backend_detail);
    tp_json_str(j, "comm", s->comm);
    tp_json_str(j, "comm_library", s->comm_library);
    tp_json_str(j, "host", s->host);
    tp_json_int(j, "world_size", s->world_size);
    tp_json_int(j, "threads_per_rank", s->threads_per_rank);
    tp_json_int(j, "global_batch", s->global_batch);
    tp_json_int(j, "steps", s->steps);
    tp_json_int(j, "first_step", s->first_step);
    tp_json_int(j, "steps_this_run", s->steps_this_run);
    tp_json_num(j, "flops_per_sample", s->flops_per_sample);
    tp_json_num(j, "samples_per_s", s->samples_per_s);
    tp_json_int(j, "tokens_per_sample", s->tokens_per_sample);
    tp_json_num(j, "tokens_per_s", s->samples_per_s * (double)s->tokens_per_sample);
    tp_json_num(j, "step_time_ms_median", s->step_time_ms_median);
    tp_json_num(j, "step_time_ms_min", s->step_time_ms_min);
    tp_json_num(j, "step_time_ms_max", s->step_time_ms_max);
    tp_json_num(j, "achieved_gflops", s->achieved_gflops);
    tp_json_num(j, "comm_fraction", s->comm_fraction);
    tp_json_num(j, "comm_ms_median", s->comm_ms_median);
    tp_json_num(j, "comm_total_fraction", s->comm_total_fraction);
    tp_json_num(j, "comm_total_ms_median", s->comm_total_ms_median);
    tp_json_num(j, "compute_ms_median", s->compute_ms_median);
    tp_json_int(j, "zero", s->zero);
    tp_json_bool(j, "overlap", s->overlap);
    tp_json_num(j, "bucket_mb", s->bucket_mb);
    tp_json_int(j, "n_buckets", s->n_buckets);
    tp_json_num(j, "final_train_loss", s->final_train_loss);
    tp_json_num(j, "eval_loss", s->eval_loss);
    tp_json_num(j, "eval_accuracy", s->eval_accuracy);
    tp_json_num(j, "eval_bits_per_token", s->eval_bits_per_token);
    tp_json_num(j, "eval_unigram_baseline_loss", s->eval_baseline_loss);
    tp_json_int(j, "eval_examples", s->eval_examples);
    tp_json_num(j, "eval_s", s->eval_seconds);
    tp_json_num(j, "train_s", s->train_s);
    tp_json_num(j, "wall_s", s->wall_s);
    tp_json_num(j, "core_hours", s->core_hours);
    tp_json_int(j, "param_state_bytes", s->param_state_bytes);
    tp_json_int(j, "activation_bytes", s->activation_bytes);
    tp_json_int(j, "backend_peak_bytes", s->backend_peak_bytes);
    tp_json_int(j, "peak_rss_bytes", s->peak_rss_bytes);
    tp_json_int(j, "optimizer_state_bytes", s->optimizer_state_bytes);
    tp_json_int(j, "gradient_bytes", s->gradient_bytes);
    tp_json_int(j, "host_waits_per_step", s->host_waits_per_step);
    tp_json_str(j, "run_dir", s->run_dir);
    tp_json_str(j, "config", s->config_path);
    tp_json_str(j, "last_checkpoint", s->last_checkpoint);
    tp_json_object_end(j);
    return tp_json_file_commit(&jf, path);
}
