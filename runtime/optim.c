/* Optimizer creation and the per-segment dispatch shared by SGD and AdamW. */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

tp_status_t tp_optim_create(const tp_config_t *cfg, tp_model_t *m, tp_optim_t **out)
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
    o->momentum = (float)cfg->momentum;
    o->nesterov = cfg->nesterov;
    o->beta1 = (float)cfg->beta1;
    o->beta2 = (float)cfg->beta2;
    o->eps = (float)cfg->eps;
    o->weight_decay = (float)cfg->weight_decay;
    for (int i = 0; i < ops->n_states; i++) {
        o->state[i] = tp_backend_alloc(m->be, (size_t)m->numel * sizeof(float), "optimizer state");
        if (!o->state[i]) {
            tp_optim_free(o);
            return TP_ERR_NOMEM;
        }
        tp_op_fill(m->be, o->state[i], 0.0f, m->numel);
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

void tp_optim_step(tp_optim_t *o, float lr)
{
    for (int i = 0; i < o->model->n_segments; i++)
        o->ops->step_segment(o, &o->model->segments[i], lr);
    o->t++;
}

double tp_clip_grad_norm(tp_model_t *m, double max_norm)
{
    double norm = sqrt(tp_op_sumsq(m->be, m->grad_buf, m->numel));
    if (max_norm > 0 && norm > max_norm)
        tp_op_scale(m->be, m->grad_buf, (float)(max_norm / (norm + 1e-6)), m->numel);
    return norm;
}
