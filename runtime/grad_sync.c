/* Bucketed gradient reduction overlapped with backward, and ZeRO-1/2 sharding (grad_sync.h).
 *
 * Progress strategy: Open MPI progresses non-blocking collectives only inside MPI calls, so the
 * backward hook tests every outstanding bucket each time it is called (after every matmul-sized
 * piece of backward); no progress thread, because on a node where every core runs a rank such a
 * thread would take cycles from the compute it is meant to hide behind. */
#include "grad_sync.h"
#include "optim.h"
#include "runtime.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hook(void *arg, int64_t offset);

tp_status_t tp_grad_sync_create(tp_comm_t *comm, tp_comm_t *host, tp_model_t *m, int zero,
                                size_t bucket_bytes, bool overlap, tp_grad_sync_t **out)
{
    *out = NULL;
    int R = tp_comm_size(comm), r = tp_comm_rank(comm);
    if (m->numel_pad % R != 0)
        return TP_ERR(TP_ERR_INTERNAL, "flat buffers (%lld) are not padded to %d ranks",
                      (long long)m->numel_pad, R);
    tp_grad_sync_t *gs = tp_calloc(1, sizeof *gs, "gradient synchronisation");
    if (!gs) return TP_ERR_NOMEM;
    gs->comm = comm;
    gs->host = host;
    gs->m = m;
    gs->zero = zero;
    gs->overlap = overlap;
    int64_t per = (int64_t)(bucket_bytes / sizeof(float)) / R * R;
    if (per < R) per = R;
    int64_t n = m->numel_pad > 0 ? (m->numel_pad + per - 1) / per : 0;
    gs->buckets = tp_calloc((size_t)(n ? n : 1), sizeof *gs->buckets, "gradient buckets");
    gs->pieces = tp_calloc((size_t)(n ? n : 1), sizeof *gs->pieces, "shard pieces");
    gs->reqs = tp_calloc((size_t)(n ? n : 1), sizeof *gs->reqs, "bucket requests");
    if (!gs->buckets || !gs->pieces || !gs->reqs) {
        tp_grad_sync_free(gs);
        return TP_ERR_NOMEM;
    }
    int64_t hi = m->numel_pad, so = 0;
    for (int64_t b = 0; b < n; b++) {
        int64_t lo = hi - per > 0 ? hi - per : 0, part = (hi - lo) / R;
        gs->buckets[b] = (tp_bucket_t){.offset = lo, .numel = hi - lo, .shard_offset = so};
        gs->pieces[b] = (tp_shard_piece_t){
            .offset = lo + (int64_t)r * part, .numel = part, .shard_offset = so, .bucket = lo};
        so += part;
        hi = lo;
    }
    gs->n_buckets = (int)n;
    gs->shard = (tp_shard_t){.rank = r, .size = R, .n = (int)n, .pieces = gs->pieces, .numel = so};
    if (zero >= 2) {
        gs->shard_grad =
            tp_backend_alloc(m->be, (size_t)(so ? so : 1) * sizeof(float), "ZeRO-2 gradient shard");
        if (!gs->shard_grad) {
            tp_grad_sync_free(gs);
            return TP_ERR_NOMEM;
        }
        tp_op_fill(m->be, gs->shard_grad, 0.0f, so);
        gs->shard.grad = gs->shard_grad;
    }
    m->grads_ready = hook;
    m->grads_ready_arg = gs;
    *out = gs;
    return TP_OK;
}

void tp_grad_sync_free(tp_grad_sync_t *gs)
{
    if (!gs) return;
    if (gs->m && gs->m->grads_ready_arg == gs) {
        gs->m->grads_ready = NULL;
        gs->m->grads_ready_arg = NULL;
    }
    for (int b = 0; gs->reqs && b < gs->n_buckets; b++)
        if (gs->reqs[b]) tp_comm_wait(gs->comm, &gs->reqs[b]);
    tp_backend_release(gs->m->be, gs->shard_grad);
    free(gs->buckets);
    free(gs->pieces);
    free(gs->reqs);
    free(gs);
}

const tp_shard_t *tp_grad_sync_shard(const tp_grad_sync_t *gs)
{
    return gs->zero >= 1 ? &gs->shard : NULL;
}

int64_t tp_grad_sync_grad_bytes(const tp_grad_sync_t *gs)
{
    /* ZeRO-2 keeps only the shard between micro-batches; the flat buffer is backward's scratch */
    int64_t full = gs->m->numel_pad * (int64_t)sizeof(float);
    return gs->zero >= 2 ? gs->shard.numel * (int64_t)sizeof(float) : full;
}

/* ---- layout agreement ------------------------------------------------------------------ */

static uint64_t fnv(uint64_t h, int64_t v)
{
    for (int i = 0; i < 8; i++) {
        h ^= (uint64_t)(v >> (8 * i)) & 0xff;
        h *= 1099511628211ull;
    }
    return h;
}

tp_status_t tp_grad_sync_check_layout(tp_grad_sync_t *gs, const char *what)
{
    enum { NUMEL, NPARAMS, SHAPES, NBUCKETS, BUCKETS, ZERO, OVERLAP, N_SIG };
    static const char *const names[N_SIG] = {"parameter count",
                                             "number of parameter tensors",
                                             "parameter shapes (hash)",
                                             "number of gradient buckets (comm.bucket_mb)",
                                             "bucket sizes (hash)",
                                             "train.zero",
                                             "comm.overlap"};
    const tp_model_t *m = gs->m;
    uint64_t shapes = 1469598103934665603ull, buckets = 1469598103934665603ull;
    for (int i = 0; i < m->n_params; i++)
        for (int d = 0; d < m->params[i]->ndim; d++)
            shapes = fnv(shapes, m->params[i]->shape[d]);
    for (int b = 0; b < gs->n_buckets; b++)
        buckets = fnv(fnv(buckets, gs->buckets[b].offset), gs->buckets[b].numel);
    int64_t sig[N_SIG] = {
        m->numel, m->n_params, (int64_t)(shapes >> 1), gs->n_buckets, (int64_t)(buckets >> 1),
        gs->zero, gs->overlap};
    int R = tp_comm_size(gs->host);
    int64_t *all = tp_malloc((size_t)R * N_SIG * sizeof(int64_t), "layout check");
    tp_status_t st = tp_comm_agree(gs->host, all ? TP_OK : TP_ERR_NOMEM);
    if (st != TP_OK) {
        free(all);
        return st;
    }
    tp_comm_set_context(gs->host, 0, "start-up layout check");
    st = tp_comm_allgather(gs->host, sig, all, N_SIG, TP_DT_INT64);
    int bad_rank = -1, bad_field = -1;
    for (int r = 1; st == TP_OK && r < R && bad_rank < 0; r++)
        for (int f = 0; f < N_SIG && bad_rank < 0; f++)
            if (all[r * N_SIG + f] != all[f]) {
                bad_rank = r;
                bad_field = f;
            }
    if (st == TP_OK && bad_rank >= 0) {
        if (tp_comm_rank(gs->host) == 0)
            st = TP_ERR(TP_ERR_CONFIG,
                        "ranks disagree on what they reduce (%s): rank %d has %s = %lld, rank 0 "
                        "has %lld; every rank must run the same model and config",
                        what, bad_rank, names[bad_field],
                        (long long)all[bad_rank * N_SIG + bad_field], (long long)all[bad_field]);
        else
            st = TP_ERR_REMOTE;
    }
    free(all);
    return st;
}

/* ---- reduction ------------------------------------------------------------------------- */

static void flight_start(tp_grad_sync_t *gs)
{
    if (gs->inflight++ == 0) gs->inflight_since = tp_now();
}

static void flight_end(tp_grad_sync_t *gs)
{
    if (--gs->inflight == 0) gs->total_s += tp_now() - gs->inflight_since;
}

static tp_status_t launch(tp_grad_sync_t *gs, int b)
{
    const tp_bucket_t *k = &gs->buckets[b];
    float *g = gs->m->grad_buf + k->offset;
    tp_status_t st;
    if (gs->zero == 0)
        st = tp_comm_iallreduce(gs->comm, g, (size_t)k->numel, TP_DT_FLOAT, TP_RED_AVG,
                                &gs->reqs[b]);
    else
        st = tp_comm_ireduce_scatter(gs->comm, g, gs->m->grad_buf + gs->pieces[b].offset,
                                     (size_t)gs->pieces[b].numel, TP_DT_FLOAT, TP_RED_AVG,
                                     &gs->reqs[b]);
    if (st == TP_OK) flight_start(gs);
    return st;
}

/* Test every launched bucket; note those that completed. */
static tp_status_t progress(tp_grad_sync_t *gs)
{
    for (int b = 0; b < gs->next; b++) {
        if (!gs->reqs[b]) continue;
        TP_TRY(tp_comm_test(gs->comm, &gs->reqs[b]));
        if (!gs->reqs[b]) flight_end(gs);
    }
    return TP_OK;
}

static void hook(void *arg, int64_t offset)
{
    tp_grad_sync_t *gs = arg;
    if (!gs->armed || !gs->overlap || gs->err != TP_OK) return;
    double t0 = tp_now();
    tp_status_t st = TP_OK;
    while (st == TP_OK && gs->next < gs->n_buckets && gs->buckets[gs->next].offset >= offset)
        st = launch(gs, gs->next++);
    if (st == TP_OK) st = progress(gs);
    gs->err = st;
    gs->exposed_s += tp_now() - t0;
}

void tp_grad_sync_begin(tp_grad_sync_t *gs, bool first, bool last)
{
    /* ZeRO-0/1 reduce the accumulated gradient once per step; ZeRO-2 every micro-batch. */
    gs->armed = gs->zero >= 2 || last;
    if (first) gs->accumulate = false;
    gs->next = 0;
    gs->err = TP_OK;
}

/* ZeRO-2: fold this micro-batch's reduced parts into the shard and clear the scratch. */
static void fold_shard(tp_grad_sync_t *gs)
{
    tp_model_t *m = gs->m;
    for (int b = 0; b < gs->n_buckets; b++) {
        const tp_shard_piece_t *p = &gs->pieces[b];
        float *dst = gs->shard_grad + p->shard_offset;
        if (gs->accumulate)
            tp_op_axpy(m->be, dst, m->grad_buf + p->offset, 1.0f, p->numel);
        else
            tp_op_copy(m->be, dst, m->grad_buf + p->offset, p->numel);
    }
    gs->accumulate = true;
    tp_op_fill(m->be, m->grad_buf, 0.0f, m->numel_pad);
}

tp_status_t tp_grad_sync_end(tp_grad_sync_t *gs)
{
    if (!gs->armed) return TP_OK;
    gs->armed = false;
    TP_TRY(gs->err);
    double t0 = tp_now();
    /* wait_ordered: host communicators wait; device ones (NCCL) only order the compute stream
     * after the reduction, so clipping and the optimizer are queued without the host stopping. */
    if (gs->overlap) {
        while (gs->next < gs->n_buckets)
            TP_TRY(launch(gs, gs->next++));
        for (int b = 0; b < gs->n_buckets; b++) {
            if (!gs->reqs[b]) continue;
            TP_TRY(tp_comm_wait_ordered(gs->comm, &gs->reqs[b]));
            flight_end(gs);
        }
    } else {
        for (int b = 0; b < gs->n_buckets; b++) {
            TP_TRY(launch(gs, b));
            TP_TRY(tp_comm_wait_ordered(gs->comm, &gs->reqs[b]));
            flight_end(gs);
        }
    }
    gs->next = 0;
    if (gs->zero >= 2) fold_shard(gs);
    gs->exposed_s += tp_now() - t0;
    return TP_OK;
}

/* The global sum of squares over the reduced gradient this rank owns: the whole buffer (ZeRO-0),
 * its piece of every bucket (ZeRO-1) or the shard buffer (ZeRO-2), in that order. */
tp_status_t tp_grad_sync_norm(tp_grad_sync_t *gs)
{
    tp_model_t *m = gs->m;
    double *sq = m->scalars + TP_SCALAR_GRAD_SUMSQ;
    if (gs->zero == 0)
        tp_op_sumsq_to(m->be, m->grad_buf, m->numel_pad, sq, false);
    else if (gs->zero >= 2)
        tp_op_sumsq_to(m->be, gs->shard_grad, gs->shard.numel, sq, false);
    else
        for (int b = 0; b < gs->n_buckets; b++)
            tp_op_sumsq_to(m->be, m->grad_buf + gs->pieces[b].offset, gs->pieces[b].numel, sq,
                           b > 0);
    /* Sharded: each rank summed its parts; the global sum of squares is their sum. On a GPU this
     * is a one-element NCCL all-reduce the optimizer's kernels wait for on the device. */
    if (gs->zero > 0 && tp_comm_size(gs->comm) > 1) {
        double t0 = tp_now();
        tp_comm_req_t *req = NULL;
        TP_TRY(tp_comm_iallreduce(gs->comm, sq, 1, TP_DT_DOUBLE, TP_RED_SUM, &req));
        TP_TRY(tp_comm_wait_ordered(gs->comm, &req));
        double dt = tp_now() - t0;
        gs->exposed_s += dt;
        gs->total_s += dt;
    }
    return TP_OK;
}

double tp_grad_sync_last_norm(tp_grad_sync_t *gs)
{
    double sq = 0;
    tp_backend_download(gs->m->be, &sq, gs->m->scalars + TP_SCALAR_GRAD_SUMSQ, sizeof sq);
    return sqrt(sq);
}

tp_status_t tp_grad_sync_gather_params(tp_grad_sync_t *gs)
{
    if (gs->zero == 0) return TP_OK;
    double t0 = tp_now();
    tp_model_t *m = gs->m;
    for (int b = 0; b < gs->n_buckets; b++) {
        TP_TRY(tp_comm_iallgather(gs->comm, m->param_buf + gs->pieces[b].offset,
                                  m->param_buf + gs->buckets[b].offset, (size_t)gs->pieces[b].numel,
                                  TP_DT_FLOAT, &gs->reqs[b]));
        TP_TRY(tp_comm_wait_ordered(gs->comm, &gs->reqs[b]));
    }
    double dt = tp_now() - t0;
    gs->exposed_s += dt;
    gs->total_s += dt;
    return TP_OK;
}

tp_status_t tp_grad_sync_finish_step(tp_grad_sync_t *gs)
{
    TP_TRY(tp_comm_sync(gs->comm));
    tp_backend_synchronize(gs->m->be);
    return TP_OK;
}

void tp_grad_sync_take_times(tp_grad_sync_t *gs, double *exposed_s, double *total_s)
{
    /* A device communicator only queues work, so the host's times say little: it measures the
     * GPU's own (compute stalled on a collective; collectives running). */
    if (!tp_comm_take_device_times(gs->comm, exposed_s, total_s)) {
        *exposed_s = gs->exposed_s;
        *total_s = gs->total_s;
    }
    gs->exposed_s = gs->total_s = 0;
}
