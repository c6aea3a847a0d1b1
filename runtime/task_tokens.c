/* The language-modelling task: token files (Tulpar or llm.c format) cut into non-overlapping
 * windows of seq_len + 1 tokens; evaluation is the mean loss per token on the validation file
 * and bits per token (= bits per byte for byte-level data). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_tokens.h"
#include "evaluate.h"
#include "runtime.h"
#include "task.h"

typedef struct tokens_task {
    tp_tokens_t *train, *eval;
    int64_t T;
    int32_t *tokens, *targets; /* host batch [max_batch, T] */
    int64_t *idx;
    int64_t max_batch;
} tokens_task_t;

static void tokens_load_batch(tp_task_t *t, const int64_t *idx, int64_t count, tp_model_t *m)
{
    tokens_task_t *tt = t->impl;
    tp_tokens_fill_windows(tt->train, idx, count, tt->T, tt->tokens, tt->targets);
    tp_model_set_tokens(m, tt->tokens, tt->targets, count);
}

static tp_status_t tokens_evaluate(tp_task_t *t, tp_model_t *m, tp_comm_t *comm,
                                   int64_t max_batches, tp_eval_result_t *out)
{
    tokens_task_t *tt = t->impl;
    if (!tt->eval) return TP_ERR(TP_ERR_INTERNAL, "token task loaded without an evaluation file");
    double t0 = tp_now();
    int64_t lo, hi, B = m->max_batch < tt->max_batch ? m->max_batch : tt->max_batch;
    tp_shard_range(tp_tokens_windows(tt->eval, tt->T), tp_comm_rank(comm), tp_comm_size(comm), &lo,
                   &hi);
    double sums[2] = {0, 0};
    tp_pass_ctx_t ctx = {.train = false};
    int64_t batches = 0;
    for (int64_t first = lo; first < hi && (max_batches <= 0 || batches < max_batches);
         first += B, batches++) {
        int64_t count = hi - first < B ? hi - first : B;
        for (int64_t i = 0; i < count; i++)
            tt->idx[i] = first + i;
        tp_tokens_fill_windows(tt->eval, tt->idx, count, tt->T, tt->tokens, tt->targets);
        tp_model_set_tokens(m, tt->tokens, tt->targets, count);
        sums[0] += tp_model_forward(m, &ctx, count, NULL, false);
        sums[1] += (double)(count * tt->T);
    }
    TP_TRY(tp_comm_allreduce(comm, sums, 2, TP_DT_DOUBLE, TP_RED_SUM));
    out->targets = (int64_t)sums[1];
    out->n = out->targets / tt->T;
    out->loss = sums[1] > 0 ? sums[0] / sums[1] : NAN;
    out->accuracy = NAN;
    out->bits_per_token = out->loss / M_LN2;
    out->byte_level = strcmp(tp_tokens_format(tt->eval), "tulpar") == 0 &&
                      tp_tokens_width(tt->eval) == 1 && tp_tokens_vocab_size(tt->eval) <= 256;
    out->seconds = tp_now() - t0;
    return TP_OK;
}

static void tokens_release(tp_task_t *t)
{
    tokens_task_t *tt = t->impl;
    if (!tt) return;
    tp_tokens_close(tt->train);
    tp_tokens_close(tt->eval);
    free(tt->tokens);
    free(tt->targets);
    free(tt->idx);
    free(tt);
}

static const tp_task_ops_t tokens_ops = {
    .name = "tokens",
    .load_batch = tokens_load_batch,
    .evaluate = tokens_evaluate,
    .release = tokens_release,
};

static void resolve(const tp_config_t *cfg, const char *file, char *out, size_t cap)
{
    if (file[0] == '/')
        snprintf(out, cap, "%s", file);
    else
        snprintf(out, cap, "%s/%s", cfg->data_dir, file);
}

static tp_status_t open_checked(const tp_config_t *cfg, const char *file, int64_t T,
                                tp_tokens_t **out)
{
    char path[2 * TP_CFG_PATH + 2];
    resolve(cfg, file, path, sizeof path);
    TP_TRY(tp_tokens_open(path, out));
    if (tp_tokens_vocab_size(*out) > cfg->vocab_size)
        return TP_ERR(TP_ERR_CONFIG,
                      "%s holds tokens of a vocabulary of %d, but model.vocab_size = %lld", path,
                      (int)tp_tokens_vocab_size(*out), (long long)cfg->vocab_size);
    if (tp_tokens_windows(*out, T) < 1)
        return TP_ERR(TP_ERR_DATA,
                      "%s: %lld tokens are fewer than one window of model.seq_len + 1 = %lld", path,
                      (long long)tp_tokens_count(*out), (long long)(T + 1));
    return TP_OK;
}

/* Unigram cross-entropy of eval under train's token frequencies (add-one smoothing). */
static double unigram_baseline(const tp_tokens_t *train, const tp_tokens_t *eval, int64_t V)
{
    double *count = tp_calloc((size_t)V, sizeof(double), "unigram counts");
    int32_t *buf = tp_malloc(65536 * sizeof(int32_t), "token chunk");
    double loss = NAN;
    if (count && buf) {
        int64_t n = tp_tokens_count(train), m = tp_tokens_count(eval);
        for (int64_t s = 0; s < n; s += 65536) {
            int64_t c = n - s < 65536 ? n - s : 65536;
            tp_tokens_read(train, s, c, buf);
            for (int64_t i = 0; i < c; i++)
                count[buf[i]] += 1.0;
        }
        double total = (double)n + (double)V, sum = 0;
        for (int64_t s = 0; s < m; s += 65536) {
            int64_t c = m - s < 65536 ? m - s : 65536;
            tp_tokens_read(eval, s, c, buf);
            for (int64_t i = 0; i < c; i++)
                sum -= log((count[buf[i]] + 1.0) / total);
        }
        loss = m > 0 ? sum / (double)m : NAN;
    }
    free(count);
    free(buf);
    return loss;
}

tp_status_t tp_task_tokens_create(const tp_config_t *cfg, bool need_train, bool need_eval,
                                  bool eval_on_train, int64_t max_batch, tp_task_t *t)
{
    tokens_task_t *tt = tp_calloc(1, sizeof *tt, "token task");
    if (!tt) return TP_ERR_NOMEM;
    t->ops = &tokens_ops;
    t->impl = tt;
    tt->T = cfg->seq_len;
    tt->max_batch = max_batch;
    if (need_train || eval_on_train) TP_TRY(open_checked(cfg, cfg->data_train, tt->T, &tt->train));
    if (need_eval && !eval_on_train) TP_TRY(open_checked(cfg, cfg->data_val, tt->T, &tt->eval));
    if (need_eval && eval_on_train) TP_TRY(open_checked(cfg, cfg->data_train, tt->T, &tt->eval));
    t->n_train = tt->train ? tp_tokens_windows(tt->train, tt->T) : 0;
    t->baseline_loss = tt->train && tt->eval && tt->train != tt->eval
                           ? unigram_baseline(tt->train, tt->eval, cfg->vocab_size)
                           : NAN;
    t->vocab_size = (int32_t)cfg->vocab_size;
    tt->tokens = tp_malloc((size_t)(max_batch * tt->T) * sizeof(int32_t), "token batch");
    tt->targets = tp_malloc((size_t)(max_batch * tt->T) * sizeof(int32_t), "target batch");
    tt->idx = tp_malloc((size_t)max_batch * sizeof(int64_t), "window indices");
    return tt->tokens && tt->targets && tt->idx ? TP_OK : TP_ERR_NOMEM;
}
