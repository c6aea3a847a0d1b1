/* Optimizer creation and the per-segment dispatch shared by SGD and AdamW. */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

tp_status_t tp_optim_create(const tp_config_t *cfg, tp_model_t *m, const tp_shard_t *shard,
                            tp_optim_t **out)
{
    *out = NULL;
    const tp_optim_ops_t *ops = NULL;
    if (strcmp(cfg->optimizer, "sgd") == 0)
        ops = &tp_optim_sgd_ops;
    else if (strcmp(cfg->optimizer, "adamw") == 0)
        ops = &tp_optim_adamw_ops;
    else
        return TP_ERR(TP_ERR_CONFIG, "train.optimizer '%s' is not one of sgd, adamw",
                      cfg->optimizer);
    tp_optim_t *o = tp_calloc(1, sizeof *o, "optimizer");
    if (!o) return TP_ERR_NOMEM;
    o->ops = ops;
    o->model = m;
    o->shard = shard;
    o->state_numel = shard ? shard->numel : m->numel_pad;
    o->momentum = (float)cfg->momentum;
    o->nesterov = cfg->nesterov;
    o->beta1 = (float)cfg->beta1;
    o->beta2 = (float)cfg->beta2;
    o->eps = (float)cfg->eps;
    o->weight_decay = (float)cfg->weight_decay;
    for (int i = 0; i < ops->n_states; i++) {
        o->state[i] =
            tp_backend_alloc(m->be, (size_t)(o->state_numel ? o->state_numel : 1) * sizeof(float),
                             "optimizer state");
        if (!o->state[i]) {
            tp_optim_free(o);
            return TP_ERR_NOMEM;
        }
        tp_op_fill(m->be, o->state[i], 0.0f, o->state_numel);
    }
    *out = o;
    return TP_OK;
}

void tp_optim_free(tp_optim_t *o)
{
    if (!o) return;
    for (int i = 0; i < TP_OPTIM_MAX_STATES; i++)
        tp_backend_release(o->model->be, o->state[i]);
    free(o);
}

static void step_at(tp_optim_t *o, int64_t offset, int64_t n, int64_t state_offset, const float *g,
                    bool decay, float lr, tp_clip_t clip)
{
    float *st[TP_OPTIM_MAX_STATES] = {0};
    for (int i = 0; i < o->ops->n_states; i++)
        st[i] = o->state[i] + state_offset;
    o->ops->step_range(o, o->model->param_buf + offset, g, st, n, decay, lr, clip);
}

void tp_optim_step(tp_optim_t *o, float lr, tp_clip_t clip)
{
    tp_model_t *m = o->model;
    if (!o->shard) {
        for (int i = 0; i < m->n_segments; i++) {
            const tp_param_segment_t *seg = &m->segments[i];
            step_at(o, seg->offset, seg->numel, seg->offset, m->grad_buf + seg->offset, seg->decay,
                    lr, clip);
        }
        o->t++;
        return;
    }
    /* Each piece, cut where the weight-decay setting changes; the padding past the last
     * parameter belongs to no segment and is never updated. */
    const tp_shard_t *sh = o->shard;
    for (int p = 0; p < sh->n; p++) {
        const tp_shard_piece_t *pc = &sh->pieces[p];
        for (int i = 0; i < m->n_segments; i++) {
            const tp_param_segment_t *seg = &m->segments[i];
            int64_t lo = pc->offset > seg->offset ? pc->offset : seg->offset;
            int64_t hi = pc->offset + pc->numel < seg->offset + seg->numel
                             ? pc->offset + pc->numel
                             : seg->offset + seg->numel;
            if (lo >= hi) continue;
            int64_t so = pc->shard_offset + (lo - pc->offset);
            const float *g = sh->grad ? sh->grad + so : m->grad_buf + lo;
            step_at(o, lo, hi - lo, so, g, seg->decay, lr, clip);
        }
    }
    o->t++;
}

int64_t tp_optim_state_bytes(const tp_optim_t *o)
{
    return o->state_numel * (int64_t)sizeof(float) * o->ops->n_states;
}

double tp_grad_norm(tp_model_t *m)
{
    double *sq = m->scalars + TP_SCALAR_GRAD_SUMSQ, host = 0;
    tp_op_sumsq_to(m->be, m->grad_buf, m->numel_pad, sq, false);
    tp_backend_download(m->be, &host, sq, sizeof host);
    return sqrt(host);
}
