/* SGD with (optionally Nesterov) momentum and L2 weight decay on weights, PyTorch semantics. */
#include "optim.h"

static void sgd_segment(tp_optim_t *o, const tp_param_segment_t *seg, float lr)
{
    tp_model_t *m = o->model;
    float wd = seg->decay ? o->weight_decay : 0.0f;
    tp_op_sgd(m->be, m->param_buf + seg->offset, m->grad_buf + seg->offset,
              o->state[0] + seg->offset, seg->numel, lr, o->momentum, wd, o->nesterov, o->t == 0);
}

const tp_optim_ops_t tp_optim_sgd_ops = {
    .name = "sgd",
    .n_states = 1,
    .state_names = {"momentum"},
    .step_segment = sgd_segment,
};
