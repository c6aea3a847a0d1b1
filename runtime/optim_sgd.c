/* SGD with (optionally Nesterov) momentum and L2 weight decay on weights, PyTorch semantics. */
#include "optim.h"

static void sgd_range(tp_optim_t *o, float *p, const float *g, float *const *state, int64_t n,
                      bool decay, float lr, tp_clip_t clip)
{
    float wd = decay ? o->weight_decay : 0.0f;
    tp_op_sgd(o->model->be, p, g, state[0], n, lr, o->momentum, wd, o->nesterov, o->t == 0, clip);
}

const tp_optim_ops_t tp_optim_sgd_ops = {
    .name = "sgd",
    .n_states = 1,
    .state_names = {"momentum"},
    .step_range = sgd_range,
};
