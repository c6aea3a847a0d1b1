/* Linear layer y = x W^T + b with W [out, in] (PyTorch's layout, so weights export as-is). */
#include "layer.h"

#include <stdio.h>

static void linear_forward(tp_layer_t *l, const tp_pass_ctx_t *ctx, const float *x, float *y,
                           int64_t B)
{
    int64_t in = l->in_numel, out = l->out_numel;
    tp_op_gemm(l->be, false, true, B, out, in, 1.0f, x, in, l->params[0].data, in, 0.0f, y, out);
    tp_op_bias_add(l->be, y, l->params[1].data, B, out, false);
}

static void linear_backward(tp_layer_t *l, const tp_pass_ctx_t *ctx, const float *x, const float *y,
                            const float *dy, float *dx, int64_t B)
{
    int64_t in = l->in_numel, out = l->out_numel;
    tp_op_gemm(l->be, true, false, out, in, B, 1.0f, dy, out, x, in, 1.0f, l->params[0].grad, in);
    tp_op_bias_grad(l->be, dy, l->params[1].grad, B, out, false);
    if (dx)
        tp_op_gemm(l->be, false, false, B, in, out, 1.0f, dy, out, l->params[0].data, in, 0.0f, dx,
                   in);
}

static const tp_layer_ops_t linear_ops = {
    .kind = "linear",
    .forward = linear_forward,
    .backward = linear_backward,
};

tp_status_t tp_layer_linear(tp_layer_t *l, const char *name, int64_t in, int64_t out)
{
    l->ops = &linear_ops;
    snprintf(l->name, sizeof l->name, "%s", name);
    tp_layer_set_shapes(l, 1, &in, 1, &out);
    int64_t wshape[2] = {out, in};
    tp_layer_add_param(l, "weight", 2, wshape, in, TP_INIT_KAIMING_UNIFORM, true);
    tp_layer_add_param(l, "bias", 1, &out, in, TP_INIT_ZERO, false);
    l->flops_per_example = 2.0 * (double)in * (double)out;
    return TP_OK;
}
