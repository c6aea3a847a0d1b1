/* AdamW: Adam with decoupled weight decay (Loshchilov & Hutter), decay on weights only. */
#include "optim.h"

#include <math.h>

static void adamw_segment(tp_optim_t *o, const tp_param_segment_t *seg, float lr)
{
    tp_model_t *m = o->model;
    double t = (double)(o->t + 1);
    float bc1 = (float)(1.0 - pow(o->beta1, t)), bc2 = (float)(1.0 - pow(o->beta2, t));
    float wd = seg->decay ? o->weight_decay : 0.0f;
    tp_op_adamw(m->be, m->param_buf + seg->offset, m->grad_buf + seg->offset,
                o->state[0] + seg->offset, o->state[1] + seg->offset, seg->numel, lr, o->beta1,
                o->beta2, o->eps, wd, bc1, bc2);
}

const tp_optim_ops_t tp_optim_adamw_ops = {
    .name = "adamw",
    .n_states = 2,
    .state_names = {"m", "v"},
    .step_segment = adamw_segment,
};
