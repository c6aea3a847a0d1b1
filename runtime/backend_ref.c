/* The reference backend: the plainest correct loops, no BLAS, no threads. It is the oracle that
 * the cpu and cuda backends are tested against, so clarity beats speed here; gemm and the
 * reductions accumulate in double. */
#include "backend_impl.h"
#include "backend_transformer_impl.h"
#include "ops_math.h"

#include <float.h>
#include <string.h>

static void ref_gemm(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                     float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                     float beta, float *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t p = 0; p < K; p++) {
                float a = ta ? A[p * lda + i] : A[i * lda + p];
                float b = tb ? B[j * ldb + p] : B[p * ldb + j];
                acc += (double)a * b;
            }
            float old = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
            C[i * ldc + j] = (float)(alpha * acc) + old;
        }
}

static void ref_bias_add(tp_backend_t *be, float *y, const float *b, int64_t rows, int64_t cols,
                         bool per_row)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            y[r * cols + c] += per_row ? b[r] : b[c];
}

static void ref_bias_grad(tp_backend_t *be, const float *dy, float *db, int64_t rows, int64_t cols,
                          bool per_row)
{
    if (per_row) {
        for (int64_t r = 0; r < rows; r++) {
            double s = 0;
            for (int64_t c = 0; c < cols; c++)
                s += dy[r * cols + c];
            db[r] += (float)s;
        }
    } else {
        for (int64_t c = 0; c < cols; c++) {
            double s = 0;
            for (int64_t r = 0; r < rows; r++)
                s += dy[r * cols + c];
            db[c] += (float)s;
        }
    }
}

static void ref_act_forward(tp_backend_t *be, tp_act_t act, const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = tp_act_f(act, x[i]);
}

static void ref_act_backward(tp_backend_t *be, tp_act_t act, const float *x, const float *dy,
                             float *dx, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dx[i] = dy[i] * tp_act_df(act, x[i]);
}

static void ref_dropout_forward(tp_backend_t *be, const float *x, float *y, uint8_t *mask,
                                int64_t rows, int64_t cols, float p, uint64_t seed, uint64_t stream,
                                int64_t row0)
{
    float s = 1.0f / (1.0f - p);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int64_t i = r * cols + c;
            mask[i] = tp_dropout_keep(seed, stream, (uint64_t)((row0 + r) * cols + c), p);
            y[i] = mask[i] ? x[i] * s : 0.0f;
        }
}

static void ref_dropout_backward(tp_backend_t *be, const float *dy, const uint8_t *mask, float *dx,
                                 int64_t n, float p)
{
    float s = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < n; i++)
        dx[i] = mask[i] ? dy[i] * s : 0.0f;
}

static void ref_im2col(tp_backend_t *be, const float *x, float *col, int64_t B, int64_t C,
                       int64_t H, int64_t W, int64_t k)
{
    int64_t N = B * H * W;
    for (int64_t c = 0; c < C; c++)
        for (int64_t ki = 0; ki < k; ki++)
            for (int64_t kj = 0; kj < k; kj++) {
                float *row = col + ((c * k + ki) * k + kj) * N;
                for (int64_t b = 0; b < B; b++)
                    for (int64_t h = 0; h < H; h++)
                        for (int64_t w = 0; w < W; w++) {
                            int64_t src = tp_im2col_src(H, W, k, ki, kj, h, w);
                            row[(b * H + h) * W + w] =
                                src < 0 ? 0.0f : x[(b * C + c) * H * W + src];
                        }
            }
}

static void ref_col2im(tp_backend_t *be, const float *col, float *dx, int64_t B, int64_t C,
                       int64_t H, int64_t W, int64_t k)
{
    int64_t N = B * H * W;
    memset(dx, 0, (size_t)(B * C * H * W) * sizeof(float));
    for (int64_t c = 0; c < C; c++)
        for (int64_t ki = 0; ki < k; ki++)
            for (int64_t kj = 0; kj < k; kj++) {
                const float *row = col + ((c * k + ki) * k + kj) * N;
                for (int64_t b = 0; b < B; b++)
                    for (int64_t h = 0; h < H; h++)
                        for (int64_t w = 0; w < W; w++) {
                            int64_t src = tp_im2col_src(H, W, k, ki, kj, h, w);
                            if (src >= 0) dx[(b * C + c) * H * W + src] += row[(b * H + h) * W + w];
                        }
            }
}

static void ref_swap01(tp_backend_t *be, const float *src, float *dst, int64_t A, int64_t Bd,
                       int64_t D)
{
    for (int64_t a = 0; a < A; a++)
        for (int64_t b = 0; b < Bd; b++)
            for (int64_t d = 0; d < D; d++)
                dst[(b * A + a) * D + d] = src[(a * Bd + b) * D + d];
}

static void ref_maxpool_forward(tp_backend_t *be, const float *x, float *y, int32_t *argmax,
                                int64_t B, int64_t C, int64_t H, int64_t W, int64_t k)
{
    int64_t plane_out = (H / k) * (W / k);
    for (int64_t bc = 0; bc < B * C; bc++)
        tp_maxpool_plane(x + bc * H * W, y + bc * plane_out, argmax + bc * plane_out, H, W, k);
}

static void ref_maxpool_backward(tp_backend_t *be, const float *dy, const int32_t *argmax,
                                 float *dx, int64_t B, int64_t C, int64_t H, int64_t W, int64_t k)
{
    int64_t Ho = H / k, Wo = W / k;
    memset(dx, 0, (size_t)(B * C * H * W) * sizeof(float));
    for (int64_t bc = 0; bc < B * C; bc++)
        for (int64_t o = 0; o < Ho * Wo; o++)
            dx[bc * H * W + argmax[bc * Ho * Wo + o]] += dy[bc * Ho * Wo + o];
}

/* A row's max and sum of exp(z - max), in double. */
static void ref_row_max_sum(const float *z, int64_t C, double *mx, double *sum)
{
    double m = z[0], s = 0;
    for (int64_t c = 1; c < C; c++)
        m = z[c] > m ? z[c] : m;
    for (int64_t c = 0; c < C; c++)
        s += exp(z[c] - m);
    *mx = m;
    *sum = s;
}

static void ref_softmax_xent_forward(tp_backend_t *be, const float *logits, const int32_t *labels,
                                     float *probs, float *loss, int64_t B, int64_t C)
{
    for (int64_t b = 0; b < B; b++) {
        const float *z = logits + b * C;
        double mx, sum;
        ref_row_max_sum(z, C, &mx, &sum);
        for (int64_t c = 0; c < C; c++)
            probs[b * C + c] = (float)(exp(z[c] - mx) / sum);
        loss[b] = (float)(log(sum) + mx - z[labels[b]]);
    }
}

static void ref_softmax_xent_backward(tp_backend_t *be, const float *probs, const int32_t *labels,
                                      float *dlogits, int64_t B, int64_t C, float scale)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            dlogits[b * C + c] = scale * (probs[b * C + c] - (c == labels[b] ? 1.0f : 0.0f));
}

static void ref_xent_forward(tp_backend_t *be, const float *logits, int64_t ld,
                             const int32_t *labels, float *lse, float *loss, int64_t B, int64_t C)
{
    for (int64_t b = 0; b < B; b++) {
        const float *z = logits + b * ld;
        double mx, sum;
        ref_row_max_sum(z, C, &mx, &sum);
        lse[b] = (float)(log(sum) + mx);
        loss[b] = (float)(log(sum) + mx - z[labels[b]]);
    }
}

/* In place (dlogits == logits) each element is read before it is written. */
static void ref_xent_backward(tp_backend_t *be, const float *logits, int64_t ld, const float *lse,
                              const int32_t *labels, float *dlogits, int64_t B, int64_t C,
                              float scale)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) {
            float p = (float)exp((double)logits[b * ld + c] - lse[b]);
            dlogits[b * ld + c] = scale * (p - (c == labels[b] ? 1.0f : 0.0f));
        }
}

static void ref_sumsq_to(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate)
{
    double total = 0;
    for (int64_t start = 0; start < n; start += TP_SUMSQ_CHUNK) {
        int64_t end = start + TP_SUMSQ_CHUNK < n ? start + TP_SUMSQ_CHUNK : n;
        double s = 0;
        for (int64_t i = start; i < end; i++)
            s += (double)x[i] * x[i];
        total += s;
    }
    *out = accumulate ? *out + total : total;
}

static void ref_sum_to(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate)
{
    double total = 0;
    for (int64_t i = 0; i < n; i++)
        total += x[i];
    *out = accumulate ? *out + total : total;
}

static void ref_scale(tp_backend_t *be, float *x, float alpha, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] *= alpha;
}

static void ref_fill(tp_backend_t *be, float *x, float value, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = value;
}

static void ref_copy(tp_backend_t *be, float *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = src[i];
}

static void ref_axpy(tp_backend_t *be, float *y, const float *x, float alpha, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += alpha * x[i];
}

static void ref_add(tp_backend_t *be, const float *a, const float *b, float *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

static void ref_adamw(tp_backend_t *be, float *p, const float *g, float *m, float *v, int64_t n,
                      float lr, float b1, float b2, float eps, float wd, float bc1, float bc2,
                      tp_clip_t clip)
{
    float s = tp_clip_scale(clip);
    for (int64_t i = 0; i < n; i++)
        tp_adamw_elem(&p[i], g[i] * s, &m[i], &v[i], lr, b1, b2, eps, wd, bc1, bc2);
}

static void ref_sgd(tp_backend_t *be, float *p, const float *g, float *buf, int64_t n, float lr,
                    float mu, float wd, bool nesterov, bool first, tp_clip_t clip)
{
    float s = tp_clip_scale(clip);
    for (int64_t i = 0; i < n; i++)
        tp_sgd_elem(&p[i], g[i] * s, &buf[i], lr, mu, wd, nesterov, first);
}

const tp_backend_iface_t tp_backend_ref_iface = {
    .name = "ref",
    .host_memory = true,
    .alloc = tp_host_alloc,
    .release = tp_host_release,
    .upload = tp_host_copy,
    .download = tp_host_copy,
    .gemm = ref_gemm,
    .bias_add = ref_bias_add,
    .bias_grad = ref_bias_grad,
    .act_forward = ref_act_forward,
    .act_backward = ref_act_backward,
    .dropout_forward = ref_dropout_forward,
    .dropout_backward = ref_dropout_backward,
    .im2col = ref_im2col,
    .col2im = ref_col2im,
    .swap01 = ref_swap01,
    .maxpool_forward = ref_maxpool_forward,
    .maxpool_backward = ref_maxpool_backward,
    .softmax_xent_forward = ref_softmax_xent_forward,
    .softmax_xent_backward = ref_softmax_xent_backward,
    .xent_forward = ref_xent_forward,
    .xent_backward = ref_xent_backward,
    .sumsq_to = ref_sumsq_to,
    .sum_to = ref_sum_to,
    .scale = ref_scale,
    .fill = ref_fill,
    .copy = ref_copy,
    .adamw = ref_adamw,
    .sgd = ref_sgd,
    .embedding_forward = tp_ref_embedding_forward,
    .embedding_backward = tp_ref_embedding_backward,
    .layernorm_forward = tp_ref_layernorm_forward,
    .layernorm_backward = tp_ref_layernorm_backward,
    .attention_forward = tp_ref_attention_forward,
    .attention_backward = tp_ref_attention_backward,
    .attention_decode = tp_ref_attention_decode,
    .axpy = ref_axpy,
    .add = ref_add,
};
