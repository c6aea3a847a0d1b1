/* Shape-preserving layers: activations (ReLU, GELU), inverted dropout and Flatten. */
#include "layer.h"

#include <stdio.h>

static void act_forward(tp_layer_t *l, const tp_pass_ctx_t *ctx, const float *x, float *y,
                        int64_t B)
{
    tp_op_act_forward(l->be, l->act, x, y, B * l->in_numel);
}

static void act_backward(tp_layer_t *l, const tp_pass_ctx_t *ctx, const float *x, const float *y,
                         const float *dy, float *dx, int64_t B)
{
    if (dx) tp_op_act_backward(l->be, l->act, x, dy, dx, B * l->in_numel);
}

static const tp_layer_ops_t act_ops = {
    .kind = "activation",
    .forward = act_forward,
    .backward = act_backward,
};

tp_status_t tp_layer_activation(tp_layer_t *l, const char *name, tp_act_t act, int ndim,
                                const int64_t *shape)
{
    l->ops = &act_ops;
    l->act = act;
    snprintf(l->name, sizeof l->name, "%s", name);
    tp_layer_set_shapes(l, ndim, shape, ndim, shape);
    l->flops_per_example = (act == TP_ACT_GELU ? 8.0 : 1.0) * (double)l->in_numel;
    return TP_OK;
}

/* Scratch 0: the keep mask (uint8) of the last training forward. */
static tp_status_t dropout_prepare(tp_layer_t *l, int64_t max_batch)
{
    l->scratch[0] = tp_backend_alloc(l->be, (size_t)(max_batch * l->in_numel), "dropout mask");
    return l->scratch[0] ? TP_OK : TP_ERR_NOMEM;
}

/* The dropout stream combines step and layer so that masks differ between layers and steps. */
static uint64_t dropout_stream(const tp_layer_t *l, const tp_pass_ctx_t *ctx)
{
    return (ctx->step << 8) | (uint64_t)(l->index & 0xff);
}

static void dropout_forward(tp_layer_t *l, const tp_pass_ctx_t *ctx, const float *x, float *y,
                            int64_t B)
{
    if (!ctx->train || l->p == 0.0f) {
        tp_op_copy(l->be, y, x, B * l->in_numel);
        return;
    }
    tp_op_dropout_forward(l->be, x, y, l->scratch[0], B, l->in_numel, l->p, ctx->seed,
                          dropout_stream(l, ctx), ctx->first_row);
}

static void dropout_backward(tp_layer_t *l, const tp_pass_ctx_t *ctx, const float *x,
                             const float *y, const float *dy, float *dx, int64_t B)
{
    if (!dx) return;
    if (!ctx->train || l->p == 0.0f)
        tp_op_copy(l->be, dx, dy, B * l->in_numel);
    else
        tp_op_dropout_backward(l->be, dy, l->scratch[0], dx, B * l->in_numel, l->p);
}

static const tp_layer_ops_t dropout_ops = {
    .kind = "dropout",
    .prepare = dropout_prepare,
    .forward = dropout_forward,
    .backward = dropout_backward,
};

tp_status_t tp_layer_dropout(tp_layer_t *l, const char *name, float p, int ndim,
                             const int64_t *shape)
{
    if (!(p >= 0.0f && p < 1.0f))
        return TP_ERR(TP_ERR_CONFIG, "dropout probability %g is outside [0, 1)", (double)p);
    l->ops = &dropout_ops;
    l->p = p;
    snprintf(l->name, sizeof l->name, "%s", name);
    tp_layer_set_shapes(l, ndim, shape, ndim, shape);
    l->flops_per_example = (double)l->in_numel;
    return TP_OK;
}

static void flatten_forward(tp_layer_t *l, const tp_pass_ctx_t *ctx, const float *x, float *y,
                            int64_t B)
{
    tp_op_copy(l->be, y, x, B * l->in_numel);
}

static void flatten_backward(tp_layer_t *l, const tp_pass_ctx_t *ctx, const float *x,
                             const float *y, const float *dy, float *dx, int64_t B)
{
    if (dx) tp_op_copy(l->be, dx, dy, B * l->in_numel);
}

static const tp_layer_ops_t flatten_ops = {
    .kind = "flatten",
    .forward = flatten_forward,
    .backward = flatten_backward,
};

tp_status_t tp_layer_flatten(tp_layer_t *l, const char *name, int64_t c, int64_t h, int64_t w)
{
    l->ops = &flatten_ops;
    snprintf(l->name, sizeof l->name, "%s", name);
    int64_t in[3] = {c, h, w}, out = c * h * w;
    tp_layer_set_shapes(l, 3, in, 1, &out);
    return TP_OK;
}
