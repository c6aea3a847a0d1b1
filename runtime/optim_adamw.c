/* AdamW: Adam with decoupled weight decay (Loshchilov & Hutter), decay on weights only. */
#include "optim.h"

#include <math.h>

static void adamw_range(tp_optim_t *o, float *p, const float *g, float *const *state, int64_t n,
                        bool decay, float lr, tp_clip_t clip)
{
    double t = (double)(o->t + 1);
    float bc1 = (float)(1.0 - pow(o->beta1, t)), bc2 = (float)(1.0 - pow(o->beta2, t));
    float wd = decay ? o->weight_decay : 0.0f;
    tp_op_adamw(o->model->be, p, g, state[0], state[1], n, lr, o->beta1, o->beta2, o->eps, wd, bc1,
                bc2, clip);
}

const tp_optim_ops_t tp_optim_adamw_ops = {
    .name = "adamw",
    .n_states = 2,
    .state_names = {"m", "v"},
    .step_range = adamw_range,
};
