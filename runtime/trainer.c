/* The training loop: set-up (run directory, data, model, optimizer, resume), steps with the
 * gradient all-reduce, periodic reports and checkpoints, final evaluation and summary.
 *
 * Failures that one rank can meet alone (files, memory) are agreed on with tp_comm_agree before
 * the next collective, so every rank stops with a non-zero status instead of hanging. */
#include "trainer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend_profile.h"
#include "ckpt.h"
#include "data.h"
#include "evaluate.h"
#include "generate.h"
#include "grad_sync.h"
#include "model.h"
#include "optim.h"
#include "report.h"
#include "stop_request.h"
#include "task.h"
#include "train_state.h"

typedef struct trainer {
    tp_runtime_t *rt;
    const tp_config_t *cfg;
    const tp_train_opts_t *opts;
    char *config_text;
    char ckpt_dir[4096];
    char last_ckpt[4096];
    tp_task_t *task;
    tp_sampler_t *sampler;
    tp_model_t *model;
    tp_optim_t *optim;
    tp_train_state_t *state;
    tp_grad_sync_t *sync;
    tp_comm_t *dcomm;     /* reduces the model's buffers: rt->comm, or NCCL for device memory */
    tp_comm_t *dcomm_own; /* the NCCL communicator when this trainer created one */
    tp_report_t report;
    int64_t local_batch, micro_batch, steps_per_epoch, total, start_step, step;
    int64_t *idx;
    double *step_s, *comm_s, *comm_total_s; /* per step of this run; comm_s is exposed time */
    /* Most host waits for the backend inside one step (1 = only the end), in the run's first
     * step (allocations settle there: pinned staging, scratch growth) and in the later ones. */
    int64_t first_step_waits, step_host_waits;
    double last_loss, last_grad_norm;
    bool stopped; /* on request (SIGUSR1): checkpoint written, no final evaluation */
} trainer_t;

tp_status_t tp_load_dataset(const tp_config_t *cfg, const char *split, tp_dataset_t **out)
{
    if (strcmp(cfg->dataset, "fashion-mnist") != 0)
        return TP_ERR(TP_ERR_CONFIG, "data.dataset '%s' is not supported (fashion-mnist)",
                      cfg->dataset);
    TP_TRY(tp_dataset_load_idx(cfg->data_dir, split, out));
    (*out)->normalize = cfg->normalize;
    (*out)->mean = (float)cfg->mean;
    (*out)->std = (float)cfg->std;
    return TP_OK;
}

static bool is_root(const trainer_t *t)
{
    return t->rt->rank == 0;
}

static tp_status_t agree(trainer_t *t, tp_status_t st)
{
    return tp_comm_agree(t->rt->comm, st);
}

/* Run directory, resolved config saved and printed. */
static tp_status_t setup_run_dir(trainer_t *t)
{
    const tp_config_t *cfg = t->cfg;
    if (cfg->ckpt_dir[0] == '/')
        snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "%s", cfg->ckpt_dir);
    else
        snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "%s/%s", t->opts->run_dir, cfg->ckpt_dir);
    t->config_text = tp_config_to_string(cfg);
    tp_status_t st = t->config_text ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK && is_root(t)) {
        st = tp_mkdir_p(t->opts->run_dir);
        if (st == TP_OK) st = tp_mkdir_p(t->ckpt_dir);
        if (st == TP_OK) {
            char path[4096];
            snprintf(path, sizeof path, "%s/config.cfg", t->opts->run_dir);
            st = tp_write_file_atomic(path, t->config_text, strlen(t->config_text));
        }
    }
    TP_TRY(agree(t, st));
    if (is_root(t)) {
        printf("# resolved config (saved in %s/config.cfg)\n%s", t->opts->run_dir, t->config_text);
        fflush(stdout);
    }
    return TP_OK;
}

/* Per-rank batch = batch / ranks, split into grad_accum micro-batches. */
static tp_status_t check_batch(trainer_t *t)
{
    const tp_config_t *cfg = t->cfg;
    int R = t->rt->world_size;
    int64_t per_step = (int64_t)R * cfg->grad_accum;
    if (cfg->batch % per_step != 0) {
        if (!is_root(t)) return TP_ERR_CONFIG;
        if (cfg->grad_accum == 1)
            return TP_ERR(TP_ERR_CONFIG,
                          "train.batch = %lld (the global batch) is not divisible by the %d "
                          "ranks; choose a multiple of %d",
                          (long long)cfg->batch, R, R);
        return TP_ERR(TP_ERR_CONFIG,
                      "train.batch = %lld (the global batch) is not divisible by %d ranks x "
                      "train.grad_accum = %lld",
                      (long long)cfg->batch, R, (long long)cfg->grad_accum);
    }
    t->local_batch = cfg->batch / R;
    t->micro_batch = t->local_batch / cfg->grad_accum;
    if (cfg->micro_batch > 0 && cfg->micro_batch != t->micro_batch) {
        if (!is_root(t)) return TP_ERR_CONFIG;
        return TP_ERR(TP_ERR_CONFIG,
                      "train.micro_batch = %lld does not match train.batch = %lld / (%d ranks x "
                      "train.grad_accum = %lld) = %lld",
                      (long long)cfg->micro_batch, (long long)cfg->batch, R,
                      (long long)cfg->grad_accum, (long long)t->micro_batch);
    }
    return TP_OK;
}

/* Forward batch capacity: a micro-batch, or an evaluation batch of images if larger. */
static int64_t model_batch(const trainer_t *t)
{
    int64_t b = t->micro_batch;
    if (strcmp(t->cfg->dataset, "tokens") != 0 && t->cfg->eval_batch > b) b = t->cfg->eval_batch;
    return b;
}

static tp_status_t setup_data(trainer_t *t)
{
    const tp_config_t *cfg = t->cfg;
    bool need_eval = cfg->eval_at_end || cfg->eval_every > 0;
    TP_TRY(agree(t, tp_task_create(cfg, true, need_eval, false, model_batch(t), &t->task)));
    TP_TRY(tp_sampler_create(t->task->n_train, cfg->batch, t->rt->rank, t->rt->world_size,
                             (uint64_t)cfg->seed, &t->sampler));
    t->steps_per_epoch = tp_sampler_steps_per_epoch(t->sampler);
    t->total = cfg->steps > 0 ? cfg->steps : cfg->epochs * t->steps_per_epoch;
    t->idx = tp_malloc((size_t)t->local_batch * sizeof(int64_t), "batch indices");
    t->step_s = tp_calloc((size_t)t->total + 1, sizeof(double), "step times");
    t->comm_s = tp_calloc((size_t)t->total + 1, sizeof(double), "comm times");
    t->comm_total_s = tp_calloc((size_t)t->total + 1, sizeof(double), "comm times");
    return t->idx && t->step_s && t->comm_s && t->comm_total_s ? TP_OK : TP_ERR_NOMEM;
}

static tp_status_t setup_model(trainer_t *t)
{
    const tp_config_t *cfg = t->cfg;
    const tp_task_t *task = t->task;
    tp_comm_t *comm = t->rt->comm;
    /* Device memory cannot go through the host MPI communicator: a NCCL one over the same ranks
     * reduces it (one rank needs none: "self" never touches the buffers). */
    t->dcomm = comm;
    if (!tp_backend_host_memory(t->rt->be) && t->rt->world_size > 1) {
        TP_TRY(tp_comm_nccl_create(comm, &t->dcomm_own));
        tp_comm_set_compute_stream(t->dcomm_own, tp_backend_stream(t->rt->be));
        t->dcomm = t->dcomm_own;
    }
    tp_status_t st = tp_model_create(cfg, t->rt->be, task->c, task->h, task->w, task->n_classes,
                                     model_batch(t), t->rt->world_size, &t->model);
    if (st == TP_OK) st = tp_model_init_params(t->model, (uint64_t)cfg->seed);
    if (st == TP_OK)
        st = tp_grad_sync_create(t->dcomm, comm, t->model, (int)cfg->zero,
                                 (size_t)(cfg->bucket_mb * 1048576.0), cfg->overlap, &t->sync);
    TP_TRY(agree(t, st));
    /* Before any collective whose size depends on the model: ranks with different models or
     * configs stop here with a message instead of hanging in a mismatched reduction. */
    TP_TRY(tp_grad_sync_check_layout(t->sync, "train.zero, comm.* and the model's shape"));
    st = tp_optim_create(cfg, t->model, tp_grad_sync_shard(t->sync), &t->optim);
    if (st == TP_OK) st = tp_train_state_create(t->model, t->optim, &t->state);
    TP_TRY(agree(t, st));
    /* Every rank initialised from the same seed; the broadcast makes rank 0 authoritative
     * regardless (e.g. ranks on different CPUs with different libm). */
    TP_TRY(tp_comm_bcast(t->dcomm, t->model->param_buf, (size_t)t->model->numel, TP_DT_FLOAT, 0));
    if (is_root(t)) {
        tp_model_print(t->model);
        int64_t full = t->model->numel_pad * (int64_t)sizeof(float) * t->optim->ops->n_states;
        tp_log_info(
            "data parallel: %d gradient bucket(s) of up to %.1f MiB, overlap %s, ZeRO-%lld; "
            "optimizer state %.2f MB per rank (%.2f MB unsharded), gradients kept %.2f MB "
            "per rank",
            t->sync->n_buckets, cfg->bucket_mb, cfg->overlap ? "on" : "off", (long long)cfg->zero,
            (double)tp_optim_state_bytes(t->optim) / 1e6, (double)full / 1e6,
            (double)tp_grad_sync_grad_bytes(t->sync) / 1e6);
    }
    return TP_OK;
}

static tp_status_t resume(trainer_t *t)
{
    const char *want = t->opts->resume;
    if (!want) return TP_OK;
    char path[4096] = "";
    tp_status_t st = TP_OK;
    if (strcmp(want, "auto") == 0) {
        if (is_root(t)) st = tp_ckpt_find_latest(t->ckpt_dir, path, sizeof path);
        TP_TRY(agree(t, st));
        TP_TRY(tp_comm_bcast(t->rt->comm, path, sizeof path, TP_DT_BYTE, 0));
        if (!path[0]) {
            tp_log_info("resume auto: no valid checkpoint in %s; starting from step 0",
                        t->ckpt_dir);
            return TP_OK;
        }
    } else {
        snprintf(path, sizeof path, "%s", want);
    }
    tp_ckpt_meta_t meta;
    TP_TRY(agree(t, tp_train_state_load(t->state, path, &meta)));
    if (meta.seed != t->cfg->seed)
        tp_log_warn("checkpoint %s was trained with train.seed = %lld, this run uses %lld: data "
                    "order and dropout will differ from an uninterrupted run",
                    path, (long long)meta.seed, (long long)t->cfg->seed);
    t->start_step = meta.step;
    snprintf(t->last_ckpt, sizeof t->last_ckpt, "%s", path);
    tp_log_info("resumed from %s at step %lld (epoch %lld)", path, (long long)meta.step,
                (long long)meta.epoch);
    return TP_OK;
}

static tp_status_t save_checkpoint(trainer_t *t)
{
    char path[4096];
    tp_ckpt_path_for_step(t->ckpt_dir, t->step, path, sizeof path);
    tp_status_t st = TP_OK;
    double t0 = tp_now();
    tp_comm_set_context(t->rt->comm, t->step, "optimizer-state gather for the checkpoint");
    TP_TRY(tp_train_state_gather(t->state, t->rt->comm));
    tp_comm_set_context(t->rt->comm, t->step, "checkpoint agreement");
    if (is_root(t)) {
        tp_ckpt_meta_t meta = {
            .step = t->step,
            .epoch = t->step / t->steps_per_epoch,
            .step_in_epoch = t->step % t->steps_per_epoch,
            .samples_seen = t->step * t->cfg->batch,
            .world_size = t->rt->world_size,
            .seed = t->cfg->seed,
            .rng_offset = t->step,
            .optim_step = t->optim->t,
            .created_unix = (int64_t)time(NULL),
        };
        snprintf(meta.model_type, sizeof meta.model_type, "%s", t->model->type);
        snprintf(meta.optimizer, sizeof meta.optimizer, "%s", t->optim->ops->name);
        st = tp_train_state_save(t->state, path, &meta, t->config_text);
        if (st == TP_OK) st = tp_ckpt_rotate(t->ckpt_dir, t->cfg->ckpt_keep);
    }
    tp_train_state_release_gathered(t->state);
    TP_TRY(agree(t, st));
    snprintf(t->last_ckpt, sizeof t->last_ckpt, "%s", path);
    tp_report_break(&t->report);
    tp_log_info("checkpoint: %s (step %lld, %.2f s)", path, (long long)t->step, tp_now() - t0);
    return TP_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int64_t n, double *lo, double *hi)
{
    if (n <= 0) return *lo = *hi = 0.0;
    double *c = malloc((size_t)n * sizeof(double));
    if (!c) return *lo = *hi = 0.0;
    memcpy(c, v, (size_t)n * sizeof(double));
    qsort(c, (size_t)n, sizeof(double), cmp_double);
    *lo = c[0];
    *hi = c[n - 1];
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

/* One optimizer step on this rank's slice of the global batch, in grad_accum micro-batches. The
 * loss sum stays in backend memory (tp_model_take_loss reads it for the progress line), the
 * gradient norm too: on a GPU the host queues the whole step and waits once, at its end. */
static tp_status_t train_step(trainer_t *t)
{
    tp_model_t *m = t->model;
    int64_t epoch = t->step / t->steps_per_epoch, in_epoch = t->step % t->steps_per_epoch;
    int64_t first = 0, i = t->step - t->start_step, mb = t->micro_batch;
    double t0 = tp_now();
    int64_t waits0 = tp_backend_host_waits(m->be);
    /* The op profile leaves out this run's first step (allocations, cuBLAS heuristics) and
     * whatever ran between steps (evaluation, checkpoints). */
    if (t->cfg->profile && i == 1) TP_TRY(tp_backend_profile_begin(m->be));
    tp_backend_profile_step_begin(m->be);
    tp_sampler_batch(t->sampler, epoch, in_epoch, t->idx, &first);
    tp_model_zero_grad(m);
    /* Each rank's gradient is the mean over its slice; the average over ranks is then the mean
     * over the global batch. */
    float scale = 1.0f / (float)(t->local_batch * m->targets_per_example);
    int64_t n_micro = t->local_batch / mb;
    tp_comm_set_context(t->rt->comm, t->step + 1,
                        t->cfg->zero ? "gradient reduce-scatter" : "gradient all-reduce");
    for (int64_t k = 0; k < n_micro; k++) {
        t->task->ops->load_batch(t->task, t->idx + k * mb, mb, m);
        tp_pass_ctx_t ctx = {.train = true,
                             .seed = (uint64_t)t->cfg->seed,
                             .step = (uint64_t)t->step,
                             .first_row = first + k * mb};
        tp_model_forward_accumulate(m, &ctx, mb);
        tp_grad_sync_begin(t->sync, k == 0, k == n_micro - 1);
        tp_model_backward(m, &ctx, mb, scale);
        TP_TRY(tp_grad_sync_end(t->sync));
    }
    tp_comm_set_context(t->rt->comm, t->step + 1, "gradient-norm reduction");
    TP_TRY(tp_grad_sync_norm(t->sync));
    tp_clip_t clip = {m->scalars + TP_SCALAR_GRAD_SUMSQ, t->cfg->grad_clip};
    tp_optim_step(t->optim, (float)tp_lr_at(t->cfg, t->step, t->total), clip);
    tp_comm_set_context(t->rt->comm, t->step + 1, "parameter all-gather");
    TP_TRY(tp_grad_sync_gather_params(t->sync));
    tp_comm_set_context(t->rt->comm, t->step + 1, "end of the step");
    TP_TRY(tp_grad_sync_finish_step(t->sync));
    t->step_s[i] = tp_now() - t0;
    tp_backend_profile_collect(m->be);
    int64_t waits = tp_backend_host_waits(m->be) - waits0;
    if (i == 0)
        t->first_step_waits = waits;
    else if (waits > t->step_host_waits)
        t->step_host_waits = waits;
    tp_grad_sync_take_times(t->sync, &t->comm_s[i], &t->comm_total_s[i]);
    return TP_OK;
}

/* Evaluation during training (eval.every) and at the end, with a text sample for language
 * models. */
static tp_status_t evaluate(trainer_t *t, tp_eval_result_t *ev, int64_t max_batches)
{
    tp_comm_set_context(t->rt->comm, t->step, "evaluation");
    TP_TRY(t->task->ops->evaluate(t->task, t->model, t->rt->comm, max_batches, ev));
    tp_report_break(&t->report);
    if (isnan(ev->accuracy))
        tp_log_info("eval @ step %lld: %lld tokens, loss %.4f, %.4f bits per %s (unigram "
                    "baseline %.4f) (%.2f s)",
                    (long long)t->step, (long long)ev->targets, ev->loss, ev->bits_per_token,
                    ev->byte_level ? "byte" : "token", t->task->baseline_loss, ev->seconds);
    else
        tp_log_info("eval @ step %lld: %lld examples, loss %.4f, accuracy %.4f (%.2f s)",
                    (long long)t->step, (long long)ev->n, ev->loss, ev->accuracy, ev->seconds);
    tp_report_eval(&t->report, t->step, ev->loss, ev->accuracy, ev->bits_per_token);
    if (t->cfg->sample_tokens > 0 && t->model->gpt && is_root(t))
        TP_TRY(tp_generate_sample(t->model, t->cfg->sample_prompt, t->cfg->sample_tokens,
                                  (uint64_t)t->cfg->seed + (uint64_t)t->step, stdout));
    return TP_OK;
}

static tp_status_t train_loop(trainer_t *t)
{
    const tp_config_t *cfg = t->cfg;
    int64_t end = t->total;
    if (t->opts->stop_at > 0 && t->opts->stop_at < end) end = t->opts->stop_at;
    if (t->start_step >= end) {
        tp_log_info("nothing to train: checkpoint is at step %lld, run ends at %lld",
                    (long long)t->start_step, (long long)end);
        return TP_OK;
    }
    tp_log_info("training %lld steps (%lld per epoch, global batch %lld = %d ranks x %lld "
                "micro-batches of %lld) from step %lld",
                (long long)t->total, (long long)t->steps_per_epoch, (long long)cfg->batch,
                t->rt->world_size, (long long)cfg->grad_accum, (long long)t->micro_batch,
                (long long)t->start_step);
    double interval[2] = {0, 0}, interval_t0 = tp_now();
    int64_t interval_steps = 0;
    for (t->step = t->start_step; t->step < end;) {
        TP_TRY(train_step(t));
        interval[1] += (double)(t->local_batch * t->model->targets_per_example);
        interval_steps++;
        t->step++;
        bool last = t->step == end;
        if (t->step % cfg->log_every == 0 || last) {
            interval[0] = tp_model_take_loss(t->model);
            t->last_grad_norm = tp_grad_sync_last_norm(t->sync);
            tp_comm_set_context(t->rt->comm, t->step, "loss reduction for the progress log");
            TP_TRY(tp_comm_allreduce(t->rt->comm, interval, 2, TP_DT_DOUBLE, TP_RED_SUM));
            double dt = tp_now() - interval_t0;
            double comm = 0, comm_total = 0;
            for (int64_t k = t->step - interval_steps; k < t->step; k++) {
                comm += t->comm_s[k - t->start_step];
                comm_total += t->comm_total_s[k - t->start_step];
            }
            t->last_loss = interval[0] / interval[1];
            tp_step_log_t log = {
                .step = t->step,
                .total = t->total,
                .epoch = (t->step - 1) / t->steps_per_epoch,
                .loss = t->last_loss,
                .lr = tp_lr_at(cfg, t->step - 1, t->total),
                .grad_norm = t->last_grad_norm,
                .samples_per_s = (double)(interval_steps * cfg->batch) / dt,
                .step_ms = 1e3 * dt / (double)interval_steps,
                .comm_ms = 1e3 * comm / (double)interval_steps,
                .comm_total_ms = 1e3 * comm_total / (double)interval_steps,
                .eta_s = (double)(end - t->step) * dt / (double)interval_steps,
            };
            tp_report_step(&t->report, &log);
            interval[0] = interval[1] = 0;
            interval_steps = 0;
            interval_t0 = tp_now();
        }
        /* Every rank learns of a stop request at the same step, whichever rank got the signal */
        int64_t stop = tp_stop_requested();
        if (t->rt->world_size > 1) {
            tp_comm_set_context(t->rt->comm, t->step, "stop-request agreement");
            TP_TRY(tp_comm_allreduce(t->rt->comm, &stop, 1, TP_DT_INT64, TP_RED_MAX));
        }
        if (stop && !last) {
            tp_report_break(&t->report);
            tp_log_info("stop requested (%s): writing a checkpoint at step %lld and exiting with "
                        "status %d; continue with --resume auto",
                        stop == SIGUSR1   ? "SIGUSR1"
                        : stop == SIGTERM ? "SIGTERM"
                                          : "signal",
                        (long long)t->step, TP_EXIT_STOPPED);
            t->stopped = true;
            return save_checkpoint(t);
        }
        if (cfg->ckpt_every > 0 && t->step % cfg->ckpt_every == 0 && !last)
            TP_TRY(save_checkpoint(t));
        if (cfg->eval_every > 0 && t->step % cfg->eval_every == 0 && !last) {
            tp_eval_result_t ev;
            TP_TRY(evaluate(t, &ev, cfg->eval_max_batches));
        }
    }
    return save_checkpoint(t);
}

static tp_status_t finish(trainer_t *t)
{
    const tp_config_t *cfg = t->cfg;
    tp_eval_result_t ev = {.loss = NAN, .accuracy = NAN, .bits_per_token = NAN};
    bool have_eval = cfg->eval_at_end && !t->stopped;
    if (have_eval) TP_TRY(evaluate(t, &ev, cfg->eval_max_batches));
    if (!is_root(t)) return TP_OK;
    int64_t n = (t->step > t->start_step ? t->step : t->start_step) - t->start_step;
    double train_s = 0, comm_s = 0, comm_total_s = 0, lo, hi, clo, chi;
    double *compute = tp_calloc((size_t)n + 1, sizeof(double), "compute times");
    if (!compute) return TP_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) {
        train_s += t->step_s[i];
        comm_s += t->comm_s[i];
        comm_total_s += t->comm_total_s[i];
        compute[i] = t->step_s[i] - t->comm_s[i];
    }
    double samples = (double)(n * cfg->batch), wall = tp_now() - t->rt->t_start;
    double flops = 3.0 * t->model->flops_per_example;
    int threads = tp_backend_threads(t->rt->be);
    tp_summary_t s = {
        .model = t->model->type,
        .backend = tp_backend_name(t->rt->be),
        .backend_detail = tp_backend_describe(t->rt->be),
        .comm = tp_comm_name(t->rt->comm),
        .comm_library = tp_comm_library(t->rt->comm),
        .host = tp_comm_host(t->rt->comm),
        .run_dir = t->opts->run_dir,
        .config_path = t->opts->config_path,
        .last_checkpoint = t->last_ckpt,
        .world_size = t->rt->world_size,
        .threads_per_rank = threads,
        .global_batch = cfg->batch,
        .params = t->model->numel,
        .steps = t->step > t->start_step ? t->step : t->start_step,
        .first_step = t->start_step,
        .steps_this_run = n,
        .flops_per_sample = flops,
        .samples_per_s = train_s > 0 ? samples / train_s : 0,
        .step_time_ms_median = 1e3 * median(t->step_s, n, &lo, &hi),
        .achieved_gflops = train_s > 0 ? flops * samples / train_s / 1e9 : 0,
        .comm_fraction = train_s > 0 ? comm_s / train_s : 0,
        .comm_ms_median = 1e3 * median(t->comm_s, n, &clo, &chi),
        .comm_total_fraction = train_s > 0 ? comm_total_s / train_s : 0,
        .comm_total_ms_median = 1e3 * median(t->comm_total_s, n, &clo, &chi),
        .compute_ms_median = 1e3 * median(compute, n, &clo, &chi),
        .zero = cfg->zero,
        .overlap = cfg->overlap,
        .bucket_mb = cfg->bucket_mb,
        .n_buckets = t->sync->n_buckets,
        .final_train_loss = n > 0 ? t->last_loss : NAN,
        .eval_loss = have_eval ? ev.loss : NAN,
        .eval_accuracy = have_eval ? ev.accuracy : NAN,
        .eval_bits_per_token = have_eval ? ev.bits_per_token : NAN,
        .eval_baseline_loss = t->task->baseline_loss,
        .tokens_per_sample = t->model->targets_per_example,
        .eval_examples = ev.n,
        .eval_seconds = ev.seconds,
        .train_s = train_s,
        .wall_s = wall,
        .core_hours = wall * (double)t->rt->world_size * threads / 3600.0,
    };
    free(compute);
    s.optimizer_state_bytes = tp_optim_state_bytes(t->optim);
    s.gradient_bytes = tp_grad_sync_grad_bytes(t->sync);
    s.param_state_bytes =
        t->model->numel_pad * (int64_t)sizeof(float) + s.gradient_bytes + s.optimizer_state_bytes;
    s.activation_bytes = t->model->activation_bytes;
    s.backend_peak_bytes = tp_backend_bytes_peak(t->rt->be);
    s.peak_rss_bytes = tp_peak_rss_bytes();
    s.host_waits_per_step = n > 1 ? t->step_host_waits : t->first_step_waits;
    s.step_time_ms_min = 1e3 * lo;
    s.step_time_ms_max = 1e3 * hi;
    char path[4096];
    snprintf(path, sizeof path, "%s/summary.json", t->opts->run_dir);
    TP_TRY(tp_summary_write(path, &s));
    tp_log_info("summary: %.0f samples/s, %.1f GFLOP/s, step %.2f ms (median: compute %.2f, "
                "exposed comm %.2f, comm in flight %.2f), exposed comm %.1f%% of training time, "
                "wall %.1f s, %.4f core-hours -> %s",
                s.samples_per_s, s.achieved_gflops, s.step_time_ms_median, s.compute_ms_median,
                s.comm_ms_median, s.comm_total_ms_median, 100 * s.comm_fraction, s.wall_s,
                s.core_hours, path);
    if (cfg->profile) TP_TRY(tp_profile_report(t->rt->be, t->opts->run_dir, s.step_time_ms_median));
    tp_log_info("memory: parameters+gradients+optimizer %.1f MB, activations %.1f MB, backend "
                "peak %.1f MB, process peak RSS %.1f MB",
                (double)s.param_state_bytes / 1e6, (double)s.activation_bytes / 1e6,
                (double)s.backend_peak_bytes / 1e6, (double)s.peak_rss_bytes / 1e6);
    return TP_OK;
}

static void trainer_release(trainer_t *t)
{
    tp_report_close(&t->report);
    tp_train_state_free(t->state);
    tp_optim_free(t->optim);
    tp_grad_sync_free(t->sync);
    tp_comm_free(t->dcomm_own);
    tp_model_free(t->model);
    tp_sampler_free(t->sampler);
    tp_task_free(t->task);
    free(t->config_text);
    free(t->idx);
    free(t->step_s);
    free(t->comm_s);
    free(t->comm_total_s);
}

tp_status_t tp_train(tp_runtime_t *rt, const tp_config_t *cfg, const tp_train_opts_t *opts)
{
    trainer_t t = {.rt = rt, .cfg = cfg, .opts = opts};
    tp_status_t st;
    tp_comm_set_timeout(rt->comm, cfg->comm_timeout_s);
    tp_stop_request_install(rt->comm);
    TP_TRY(check_batch(&t));
    TP_TRYGOTO(setup_run_dir(&t), st, done);
    TP_TRYGOTO(agree(&t, tp_runtime_open_backend(rt, cfg)), st, done);
    tp_log_info("runtime: %d rank(s) via %s (%s); backend %s", rt->world_size,
                tp_comm_name(rt->comm), tp_comm_library(rt->comm), tp_backend_describe(rt->be));
    TP_TRYGOTO(setup_data(&t), st, done);
    TP_TRYGOTO(setup_model(&t), st, done);
    TP_TRYGOTO(resume(&t), st, done);
    TP_TRYGOTO(agree(&t, tp_report_open(&t.report, opts->run_dir, is_root(&t))), st, done);
    t.step = t.start_step;
    TP_TRYGOTO(train_loop(&t), st, done);
    TP_TRYGOTO(finish(&t), st, done);
    if (t.stopped) st = TP_STOPPED;
done:
    trainer_release(&t);
    return st;
}
