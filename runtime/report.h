/* What a run tells people and scripts: the progress line (rank 0; one updating line on a
 * terminal, plain lines otherwise), RUN_DIR/metrics.jsonl (one object per logged step) and
 * RUN_DIR/summary.json (the measured figures that cost and allocation reports are built on;
 * schema documented in README.md). */
#ifndef TP_REPORT_H
#define TP_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tp_error.h"

typedef struct tp_report {
    FILE *metrics;
    bool tty;
    bool line_open; /* an updating line is on screen */
} tp_report_t;

typedef struct tp_step_log {
    int64_t step, total, epoch;
    double loss, lr, grad_norm;
    double samples_per_s, step_ms, eta_s;
    double comm_ms;       /* exposed: the training thread waited on communication */
    double comm_total_ms; /* wall time with a collective in flight (hidden or not) */
} tp_step_log_t;

/* Rank 0 opens metrics.jsonl for appending (a resumed run continues the file). */
tp_status_t tp_report_open(tp_report_t *r, const char *run_dir, bool is_root);
void tp_report_step(tp_report_t *r, const tp_step_log_t *s);
/* An evaluation row in metrics.jsonl: {"step", "eval_loss", "eval_accuracy"|null,
 * "eval_bits_per_token"}. */
void tp_report_eval(tp_report_t *r, int64_t step, double loss, double accuracy,
                    double bits_per_token);
/* Ends an updating line before other output. */
void tp_report_break(tp_report_t *r);
void tp_report_close(tp_report_t *r);

typedef struct tp_summary {
    const char *model, *backend, *backend_detail, *comm, *comm_library, *host, *run_dir;
    const char *config_path, *last_checkpoint;
    int64_t world_size, threads_per_rank, global_batch, params;
    int64_t steps, steps_this_run, first_step;
    double flops_per_sample; /* training: forward + backward */
    double samples_per_s, step_time_ms_median, step_time_ms_min, step_time_ms_max;
    double achieved_gflops;
    /* per step: compute = step - exposed communication; total communication includes what
     * backward hid. comm_fraction is the exposed share of training time. */
    double comm_fraction, comm_ms_median, comm_total_fraction, comm_total_ms_median;
    double compute_ms_median;
    int64_t zero, n_buckets;
    bool overlap;
    double bucket_mb;
    double final_train_loss, eval_loss, eval_accuracy, eval_bits_per_token, eval_seconds;
    double eval_baseline_loss; /* unigram cross-entropy of the eval split (language models) */
    int64_t tokens_per_sample; /* targets per example: 1 (classifiers) or seq_len */
    int64_t eval_examples;
    double wall_s, train_s, core_hours;
    /* memory (rank 0): parameters + gradients + optimizer state, activations (model prepare),
     * everything allocated through the backend at its peak, and the process's peak RSS */
    int64_t param_state_bytes, activation_bytes, backend_peak_bytes, peak_rss_bytes;
    /* per rank: optimizer state (1/N of the full under ZeRO), persistent gradients */
    int64_t optimizer_state_bytes, gradient_bytes;
    int64_t host_waits_per_step; /* most host waits for the backend in one step (not the 1st) */
} tp_summary_t;

tp_status_t tp_summary_write(const char *path, const tp_summary_t *s);

/* "1h02m03s" style. */
void tp_format_duration(double seconds, char *out, size_t cap);

/* The op profile of runtime.profile (backend_profile.h): a table in the log and
 * RUN_DIR/profile.json {"profiled_steps", "ops_ms_per_step", "span_ms_per_step", "ops": [{"name",
 * "kind", "calls_per_step", "ms_per_step", "flops_per_step"}]}, longest first. */
struct tp_backend;
tp_status_t tp_profile_report(struct tp_backend *be, const char *run_dir, double step_ms_median);

#endif
