/* Conv2d (stride 1, "same" padding, odd kernel) by im2col + one sgemm over the whole batch, and
 * non-overlapping MaxPool2d.
 *
 * The batch is lowered into a single [C*k*k, B*H*W] matrix so that the product is one large
 * sgemm (what BLAS is fast at) instead of B small ones; the output comes out channel-major
 * [Cout, B, H*W] and is swapped to NCHW. */
#include "layer.h"

#include <stdio.h>

/* scratch 0: im2col matrix (reused for dcol in backward); scratch 1: channel-major output and
 * channel-major dy. */
static tp_status_t conv_prepare(tp_layer_t *l, int64_t max_batch)
{
    int64_t cin = l->in_shape[0], hw = l->in_shape[1] * l->in_shape[2], k = l->k;
    int64_t cout = l->out_shape[0];
    l->scratch[0] = tp_backend_alloc(l->be, (size_t)(cin * k * k * max_batch * hw) * sizeof(float),
                                     "conv im2col buffer");
    l->scratch[1] =
        tp_backend_alloc(l->be, (size_t)(cout * max_batch * hw) * sizeof(float), "conv output");
    return l->scratch[0] && l->scratch[1] ? TP_OK : TP_ERR_NOMEM;
}

static void conv_forward(tp_layer_t *l, const tp_pass_ctx_t *ctx, const float *x, float *y,
                         int64_t B)
{
    int64_t cin = l->in_shape[0], H = l->in_shape[1], W = l->in_shape[2], k = l->k;
    int64_t cout = l->out_shape[0], N = B * H * W, ckk = cin * k * k;
    float *col = l->scratch[0], *yc = l->scratch[1];
    tp_op_im2col(l->be, x, col, B, cin, H, W, k);
    tp_op_gemm(l->be, false, false, cout, N, ckk, 1.0f, l->params[0].data, ckk, col, N, 0.0f, yc,
               N);
    tp_op_bias_add(l->be, yc, l->params[1].data, cout, N, true);
    tp_op_swap01(l->be, yc, y, cout, B, H * W);
}

/* Relies on scratch 0 still holding im2col(x) from this batch's forward. */
static void conv_backward(tp_layer_t *l, const tp_pass_ctx_t *ctx, const float *x, const float *y,
                          const float *dy, float *dx, int64_t B)
{
    int64_t cin = l->in_shape[0], H = l->in_shape[1], W = l->in_shape[2], k = l->k;
    int64_t cout = l->out_shape[0], N = B * H * W, ckk = cin * k * k;
    float *col = l->scratch[0], *dyc = l->scratch[1];
    tp_op_swap01(l->be, dy, dyc, B, cout, H * W);
    tp_op_bias_grad(l->be, dyc, l->params[1].grad, cout, N, true);
    tp_op_gemm(l->be, false, true, cout, ckk, N, 1.0f, dyc, N, col, N, 1.0f, l->params[0].grad,
               ckk);
    if (!dx) return;
    tp_op_gemm(l->be, true, false, ckk, N, cout, 1.0f, l->params[0].data, ckk, dyc, N, 0.0f, col,
               N);
    tp_op_col2im(l->be, col, dx, B, cin, H, W, k);
}

static const tp_layer_ops_t conv_ops = {
    .kind = "conv2d",
    .prepare = conv_prepare,
    .forward = conv_forward,
    .backward = conv_backward,
};

tp_status_t tp_layer_conv2d(tp_layer_t *l, const char *name, int64_t cin, int64_t h, int64_t w,
                            int64_t cout, int64_t k)
{
    if (k < 1 || k % 2 == 0)
        return TP_ERR(TP_ERR_CONFIG, "conv kernel size %lld must be odd", (long long)k);
    l->ops = &conv_ops;
    l->k = k;
    snprintf(l->name, sizeof l->name, "%s", name);
    int64_t in[3] = {cin, h, w}, out[3] = {cout, h, w};
    tp_layer_set_shapes(l, 3, in, 3, out);
    int64_t wshape[4] = {cout, cin, k, k};
    tp_layer_add_param(l, "weight", 4, wshape, cin * k * k, TP_INIT_KAIMING_UNIFORM, true);
    tp_layer_add_param(l, "bias", 1, &cout, cin * k * k, TP_INIT_ZERO, false);
    l->flops_per_example = 2.0 * (double)(cout * cin * k * k) * (double)(h * w);
    return TP_OK;
}

/* scratch 0: argmax of the last forward. */
static tp_status_t pool_prepare(tp_layer_t *l, int64_t max_batch)
{
    l->scratch[0] =
        tp_backend_alloc(l->be, (size_t)(max_batch * l->out_numel) * sizeof(int32_t), "argmax");
    return l->scratch[0] ? TP_OK : TP_ERR_NOMEM;
}

static void pool_forward(tp_layer_t *l, const tp_pass_ctx_t *ctx, const float *x, float *y,
                         int64_t B)
{
    tp_op_maxpool_forward(l->be, x, y, l->scratch[0], B, l->in_shape[0], l->in_shape[1],
                          l->in_shape[2], l->k);
}

static void pool_backward(tp_layer_t *l, const tp_pass_ctx_t *ctx, const float *x, const float *y,
                          const float *dy, float *dx, int64_t B)
{
    if (dx)
        tp_op_maxpool_backward(l->be, dy, l->scratch[0], dx, B, l->in_shape[0], l->in_shape[1],
                               l->in_shape[2], l->k);
}

static const tp_layer_ops_t pool_ops = {
    .kind = "maxpool2d",
    .prepare = pool_prepare,
    .forward = pool_forward,
    .backward = pool_backward,
};

tp_status_t tp_layer_maxpool2d(tp_layer_t *l, const char *name, int64_t c, int64_t h, int64_t w,
                               int64_t k)
{
    if (k < 1 || h % k || w % k)
        return TP_ERR(TP_ERR_CONFIG, "max pool %lldx%lld does not tile a %lldx%lld input",
                      (long long)k, (long long)k, (long long)h, (long long)w);
    l->ops = &pool_ops;
    l->k = k;
    snprintf(l->name, sizeof l->name, "%s", name);
    int64_t in[3] = {c, h, w}, out[3] = {c, h / k, w / k};
    tp_layer_set_shapes(l, 3, in, 3, out);
    l->flops_per_example = (double)(c * h * w);
    return TP_OK;
}
