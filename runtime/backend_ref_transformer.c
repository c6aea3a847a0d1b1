/* Reference transformer kernels (embedding, layernorm, causal self-attention): the plainest loops
 * in the order the math is written, the oracle for backend_cpu_transformer.c and CUDA. Dot
 * products, means and the softmax are computed in double. Without scratch memory (the ref backend
 * has none), the attention outputs and gradients are accumulated in place in fp32, term by term,
 * as the math reads; the embedding gradient is fp32 by contract ((b, t) order). */
#include "backend_transformer_impl.h"
#include "ops_math.h"

#include <math.h>
#include <string.h>

void tp_ref_embedding_forward(tp_backend_t *be, const int32_t *tokens, const float *wte,
                              const float *wpe, float *out, int64_t B, int64_t T, int64_t C)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const float *e = wte + (int64_t)tokens[b * T + t] * C, *p = wpe + t * C;
            for (int64_t c = 0; c < C; c++)
                out[(b * T + t) * C + c] = e[c] + p[c];
        }
}

void tp_ref_embedding_backward(tp_backend_t *be, const float *dout, const int32_t *tokens,
                               float *dwte, float *dwpe, int64_t B, int64_t T, int64_t C)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const float *d = dout + (b * T + t) * C;
            float *e = dwte + (int64_t)tokens[b * T + t] * C, *p = dwpe + t * C;
            for (int64_t c = 0; c < C; c++) {
                e[c] += d[c];
                p[c] += d[c];
            }
        }
}

void tp_ref_layernorm_forward(tp_backend_t *be, const float *x, const float *w, const float *b,
                              tp_cval_t *y_c, float *mean, float *rstd, int64_t N, int64_t C)
{
    float *y = tp_cval_f32(y_c); /* host backends: compute copies are float32 */
    for (int64_t r = 0; r < N; r++) {
        const float *xr = x + r * C;
        double m = 0, v = 0;
        for (int64_t c = 0; c < C; c++)
            m += xr[c];
        m /= (double)C;
        for (int64_t c = 0; c < C; c++)
            v += (xr[c] - m) * (xr[c] - m);
        v /= (double)C;
        double rs = 1.0 / sqrt(v + TP_LN_EPS);
        for (int64_t c = 0; c < C; c++)
            y[r * C + c] = (float)((xr[c] - m) * rs * w[c] + b[c]);
        mean[r] = (float)m;
        rstd[r] = (float)rs;
    }
}

void tp_ref_layernorm_backward(tp_backend_t *be, const tp_cval_t *dy_c, const float *x,
                               const float *w, const float *mean, const float *rstd, float *dx,
                               float *dw, float *db, int64_t N, int64_t C)
{
    const float *dy = tp_cval_cf32(dy_c);
    /* With xhat = (x - mean) rstd and g = dy w:
     * dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)), dw = sum_r dy xhat, db = sum_r dy. */
    for (int64_t r = 0; r < N; r++) {
        const float *xr = x + r * C, *d = dy + r * C;
        double m = mean[r], rs = rstd[r], sg = 0, sgx = 0;
        for (int64_t c = 0; c < C; c++) {
            double g = (double)d[c] * w[c];
            sg += g;
            sgx += g * (xr[c] - m) * rs;
        }
        sg /= (double)C;
        sgx /= (double)C;
        for (int64_t c = 0; c < C; c++) {
            double g = (double)d[c] * w[c], xhat = (xr[c] - m) * rs;
            dx[r * C + c] += (float)(rs * (g - sg - xhat * sgx));
        }
    }
    for (int64_t c = 0; c < C; c++) {
        double sw = 0, sb = 0;
        for (int64_t r = 0; r < N; r++) {
            double d = dy[r * C + c];
            sw += d * ((x[r * C + c] - (double)mean[r]) * rstd[r]);
            sb += d;
        }
        dw[c] += (float)sw;
        db[c] += (float)sb;
    }
}

static double ref_dot(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* One query against keys and values 0..n-1 (row i of k at k + i * stride, likewise v): out [hs]
 * = softmax(q.k / sqrt(hs)) v; the probabilities go to prob when it is not NULL. Forward and
 * decode share it, so decode equals the forward's row exactly. */
static void ref_attention_row(const float *q, const float *k, const float *v, int64_t stride,
                              int64_t n, int64_t hs, float *prob, float *out)
{
    double scale = 1.0 / sqrt((double)hs), mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < n; j++)
        mx = fmax(mx, ref_dot(q, k + j * stride, hs) * scale);
    for (int64_t j = 0; j < n; j++)
        sum += exp(ref_dot(q, k + j * stride, hs) * scale - mx);
    for (int64_t i = 0; i < hs; i++)
        out[i] = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        float p = (float)(exp(ref_dot(q, k + j * stride, hs) * scale - mx) / sum);
        if (prob) prob[j] = p;
        for (int64_t i = 0; i < hs; i++)
            out[i] += p * v[j * stride + i];
    }
}

void tp_ref_attention_forward(tp_backend_t *be, const tp_cval_t *qkv_c, tp_cval_t *out_c,
                              float *att, int64_t B, int64_t T, int64_t C, int64_t NH)
{
    float *out = tp_cval_f32(out_c);
    const float *qkv = tp_cval_cf32(qkv_c); /* float32: this backend computes in fp32 only */
    int64_t hs = C / NH, C3 = 3 * C;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t t = 0; t < T; t++) {
                const float *base = qkv + b * T * C3 + h * hs;
                ref_attention_row(base + t * C3, base + C, base + 2 * C, C3, t + 1, hs,
                                  att + ((b * NH + h) * T + t) * T, out + (b * T + t) * C + h * hs);
            }
}

void tp_ref_attention_backward(tp_backend_t *be, const tp_cval_t *dout_c, const tp_cval_t *qkv_c,
                               const float *att, const tp_cval_t *out_c, tp_cval_t *dqkv_c,
                               int64_t B, int64_t T, int64_t C, int64_t NH)
{
    const float *dout = tp_cval_cf32(dout_c);
    float *dqkv = tp_cval_f32(dqkv_c); /* out_c: only fused backends read it */
    const float *qkv = tp_cval_cf32(qkv_c);
    int64_t hs = C / NH, C3 = 3 * C;
    double scale = 1.0 / sqrt((double)hs);
    for (int64_t i = 0; i < B * T; i++)
        memset(dqkv + i * C3, 0, (size_t)C3 * sizeof(float));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t t = 0; t < T; t++) {
                const float *q = qkv + (b * T + t) * C3 + h * hs;
                const float *d = dout + (b * T + t) * C + h * hs;
                const float *a = att + ((b * NH + h) * T + t) * T;
                float *dq = dqkv + (b * T + t) * C3 + h * hs;
                /* datt[j] = d . v_j; dpre[j] = a[j] (datt[j] - sum_u a[u] datt[u]). */
                double s = 0;
                for (int64_t j = 0; j <= t; j++)
                    s += a[j] * ref_dot(d, qkv + (b * T + j) * C3 + 2 * C + h * hs, hs);
                for (int64_t j = 0; j <= t; j++) {
                    const float *kj = qkv + (b * T + j) * C3 + C + h * hs, *vj = kj + C;
                    float *dk = dqkv + (b * T + j) * C3 + C + h * hs, *dv = dk + C;
                    float dp = (float)(a[j] * (ref_dot(d, vj, hs) - s) * scale);
                    for (int64_t i = 0; i < hs; i++) {
                        dq[i] += dp * kj[i];
                        dk[i] += dp * q[i];
                        dv[i] += a[j] * d[i];
                    }
                }
            }
}

void tp_ref_attention_decode(tp_backend_t *be, const float *q, const float *kcache,
                             const float *vcache, tp_cval_t *out_c, int64_t B, int64_t pos,
                             int64_t Tmax, int64_t C, int64_t NH)
{
    float *out = tp_cval_f32(out_c);
    int64_t hs = C / NH;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            ref_attention_row(q + b * C + h * hs, kcache + b * Tmax * C + h * hs,
                              vcache + b * Tmax * C + h * hs, C, pos + 1, hs, NULL,
                              out + b * C + h * hs);
}
