/* Evaluation (loss, accuracy) and classification passes over a data set, sharded over ranks. */
#include "evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

void tp_shard_range(int64_t n, int rank, int world, int64_t *lo, int64_t *hi)
{
    *lo = n * rank / world;
    *hi = n * (rank + 1) / world;
}

/* Runs forward over this rank's shard in batches of at most m->max_batch; calls back per batch
 * with the probabilities in m->host_probs. */
typedef void (*batch_fn)(void *arg, int64_t first, int64_t count, const tp_model_t *m);

static tp_status_t run_shard(tp_model_t *m, const tp_dataset_t *ds, tp_comm_t *comm, double sums[3],
                             batch_fn fn, void *arg)
{
    int64_t lo, hi;
    tp_shard_range(ds->n, tp_comm_rank(comm), tp_comm_size(comm), &lo, &hi);
    int64_t B = m->max_batch;
    float *x = tp_malloc((size_t)(B * m->in_numel) * sizeof(float), "eval batch");
    int32_t *y = tp_malloc((size_t)B * sizeof(int32_t), "eval labels");
    int64_t *idx = tp_malloc((size_t)B * sizeof(int64_t), "eval indices");
    if (!x || !y || !idx) {
        free(x);
        free(y);
        free(idx);
        return TP_ERR_NOMEM;
    }
    tp_pass_ctx_t ctx = {.train = false};
    for (int64_t first = lo; first < hi; first += B) {
        int64_t count = hi - first < B ? hi - first : B;
        for (int64_t i = 0; i < count; i++)
            idx[i] = first + i;
        tp_dataset_fill_batch(ds, idx, count, x, y);
        tp_model_set_batch(m, x, y, count);
        int64_t correct = 0;
        sums[0] += tp_model_forward(m, &ctx, count, &correct, fn != NULL);
        sums[1] += (double)correct;
        sums[2] += (double)count;
        if (fn) fn(arg, first, count, m);
    }
    free(x);
    free(y);
    free(idx);
    return TP_OK;
}

static tp_status_t finish(tp_comm_t *comm, double sums[3], double t0, tp_eval_result_t *out)
{
    TP_TRY(tp_comm_allreduce(comm, sums, 3, TP_DT_DOUBLE, TP_RED_SUM));
    out->n = out->targets = (int64_t)sums[2];
    out->loss = sums[2] > 0 ? sums[0] / sums[2] : 0.0;
    out->accuracy = sums[2] > 0 ? sums[1] / sums[2] : 0.0;
    out->bits_per_token = out->loss / M_LN2;
    out->seconds = tp_now() - t0;
    return TP_OK;
}

tp_status_t tp_evaluate(tp_model_t *m, const tp_dataset_t *ds, tp_comm_t *comm,
                        tp_eval_result_t *out)
{
    double t0 = tp_now(), sums[3] = {0, 0, 0};
    TP_TRY(run_shard(m, ds, comm, sums, NULL, NULL));
    return finish(comm, sums, t0, out);
}

typedef struct classify_arg {
    int32_t *pred;
    float *prob;
} classify_arg_t;

static void store_predictions(void *argp, int64_t first, int64_t count, const tp_model_t *m)
{
    classify_arg_t *a = argp;
    int64_t C = m->n_classes;
    for (int64_t i = 0; i < count; i++) {
        const float *p = m->host_probs + i * C;
        int64_t best = 0;
        for (int64_t c = 1; c < C; c++)
            if (p[c] > p[best]) best = c;
        a->pred[first + i] = (int32_t)best;
        a->prob[first + i] = p[best];
    }
}

/* Results travel as (pred, prob) pairs of doubles in equal, padded blocks per rank, so one
 * allgather of fixed size suffices. */
tp_status_t tp_classify(tp_model_t *m, const tp_dataset_t *ds, tp_comm_t *comm, int32_t *pred,
                        float *prob, tp_eval_result_t *out)
{
    double t0 = tp_now(), sums[3] = {0, 0, 0};
    classify_arg_t arg = {pred, prob};
    TP_TRY(run_shard(m, ds, comm, sums, store_predictions, &arg));
    int R = tp_comm_size(comm);
    if (R > 1) {
        int64_t block = (ds->n + R - 1) / R + 1, lo, hi;
        tp_shard_range(ds->n, tp_comm_rank(comm), R, &lo, &hi);
        double *send = tp_calloc((size_t)(2 * block), sizeof(double), "predictions");
        double *recv = tp_calloc((size_t)(2 * block * R), sizeof(double), "predictions");
        tp_status_t st = send && recv ? TP_OK : TP_ERR_NOMEM;
        if (st == TP_OK) {
            for (int64_t i = lo; i < hi; i++) {
                send[2 * (i - lo)] = pred[i];
                send[2 * (i - lo) + 1] = prob[i];
            }
            st = tp_comm_allgather(comm, send, recv, (size_t)(2 * block), TP_DT_DOUBLE);
        }
        for (int r = 0; st == TP_OK && r < R; r++) {
            tp_shard_range(ds->n, r, R, &lo, &hi);
            for (int64_t i = lo; i < hi; i++) {
                pred[i] = (int32_t)recv[2 * (block * r + i - lo)];
                prob[i] = (float)recv[2 * (block * r + i - lo) + 1];
            }
        }
        free(send);
        free(recv);
        TP_TRY(st);
    }
    return finish(comm, sums, t0, out);
}
