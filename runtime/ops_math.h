/* Scalar formulas shared by the host backends (ref and cpu), so that both compute the same
 * function and differ only in how loops are scheduled. */
#ifndef TP_OPS_MATH_H
#define TP_OPS_MATH_H

#include <float.h>
#include <math.h>
#include <stdint.h>

#include "backend.h"
#include "rng.h"

#define TP_GELU_C 0.7978845608028654f /* sqrt(2/pi) */
#define TP_LN_EPS 1e-5                /* layernorm: added to the variance, as PyTorch */

static inline float tp_act_f(tp_act_t act, float x)
{
    if (act == TP_ACT_RELU) return x > 0.0f ? x : 0.0f;
    float u = TP_GELU_C * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

static inline float tp_act_df(tp_act_t act, float x)
{
    if (act == TP_ACT_RELU) return x > 0.0f ? 1.0f : 0.0f;
    float u = TP_GELU_C * (x + 0.044715f * x * x * x);
    float t = tanhf(u);
    float du = TP_GELU_C * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

static inline uint8_t tp_dropout_keep(uint64_t seed, uint64_t stream, uint64_t counter, float p)
{
    return tp_rng_to_unit(tp_rng_hash(seed, stream, counter)) >= p;
}

static inline void tp_adamw_elem(float *p, float g, float *m, float *v, float lr, float b1,
                                 float b2, float eps, float wd, float bc1, float bc2)
{
    float mi = b1 * *m + (1.0f - b1) * g;
    float vi = b2 * *v + (1.0f - b2) * g * g;
    *m = mi;
    *v = vi;
    float mhat = mi / bc1, vhat = vi / bc2;
    *p -= lr * (mhat / (sqrtf(vhat) + eps) + wd * *p);
}

static inline void tp_sgd_elem(float *p, float g, float *buf, float lr, float mu, float wd,
                               bool nesterov, bool first)
{
    float gi = g + wd * *p;
    float b = first ? gi : mu * *buf + gi;
    *buf = b;
    *p -= lr * (nesterov ? gi + mu * b : b);
}

/* Input offset of column (c, ki, kj) and output pixel (h, w) for im2col, or -1 for padding. */
static inline int64_t tp_im2col_src(int64_t H, int64_t W, int64_t k, int64_t ki, int64_t kj,
                                    int64_t h, int64_t w)
{
    int64_t pad = k / 2;
    int64_t ih = h + ki - pad, iw = w + kj - pad;
    if (ih < 0 || ih >= H || iw < 0 || iw >= W) return -1;
    return ih * W + iw;
}

/* Max pooling of one (b, c) plane, k x k windows with stride k; argmax is the offset within the
 * plane (the first maximum wins, so ties resolve the same way everywhere). */
static inline void tp_maxpool_plane(const float *x, float *y, int32_t *argmax, int64_t H, int64_t W,
                                    int64_t k)
{
    int64_t Ho = H / k, Wo = W / k;
    for (int64_t i = 0; i < Ho; i++)
        for (int64_t j = 0; j < Wo; j++) {
            float best = -FLT_MAX;
            int32_t at = (int32_t)((i * k) * W + j * k);
            for (int64_t di = 0; di < k; di++)
                for (int64_t dj = 0; dj < k; dj++) {
                    int64_t off = (i * k + di) * W + j * k + dj;
                    if (x[off] > best) {
                        best = x[off];
                        at = (int32_t)off;
                    }
                }
            y[i * Wo + j] = best;
            argmax[i * Wo + j] = at;
        }
}

#endif
