/* The CPU backend: OpenBLAS (its OpenMP build) for matrix products, OpenMP loops for the rest.
 * Each loop is split so that every output element is produced by one thread in a fixed order:
 * results are bitwise repeatable for a fixed thread count, and sumsq for any thread count. */
#include "backend_impl.h"
#include "backend_transformer_impl.h"
#include "ops_math.h"
#include "simd_math.h"

#include <cblas.h>
#include <float.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Declared by OpenBLAS but not in every cblas.h. */
extern int openblas_get_parallel(void);
extern char *openblas_get_config(void);
extern void openblas_set_num_threads(int);

typedef struct cpu_state {
    double *chunk_sums; /* sumsq scratch, grown on demand (once per model size) */
    int64_t chunk_cap;
    float *scratch;     /* rows of scratch for the transformer kernels (tp_cpu_scratch) */
    size_t scratch_cap; /* in floats */
} cpu_state_t;

static tp_status_t cpu_init(tp_backend_t *be, int threads)
{
    if (threads > 0) {
        omp_set_num_threads(threads);
        openblas_set_num_threads(threads);
    }
    be->threads = omp_get_max_threads();
    int par = openblas_get_parallel();
    if (par != 2)
        tp_log_warn("OpenBLAS is not its OpenMP build (parallel mode %d): BLAS and Tulpar's loops "
                    "will use separate thread pools; install libopenblas-openmp-dev",
                    par);
    snprintf(be->describe, sizeof be->describe, "cpu: %d OpenMP threads, OpenBLAS %s", be->threads,
             openblas_get_config());
    be->impl = tp_calloc(1, sizeof(cpu_state_t), "cpu backend state");
    return be->impl ? TP_OK : TP_ERR_NOMEM;
}

static void cpu_shutdown(tp_backend_t *be)
{
    cpu_state_t *s = be->impl;
    if (s) {
        free(s->chunk_sums);
        free(s->scratch);
    }
    free(s);
}

int64_t tp_cpu_scratch(tp_backend_t *be, int64_t rows, int64_t len, float **out)
{
    cpu_state_t *s = be->impl;
    /* Rows padded to whole cache lines: threads never write the same line. */
    int64_t stride = len > 0 ? (len + 15) / 16 * 16 : 16;
    if (rows <= 0 || stride > (int64_t)(SIZE_MAX / sizeof(float)) / rows) return 0;
    size_t need = (size_t)rows * (size_t)stride;
    if (need > s->scratch_cap) {
        float *p = aligned_alloc(64, need * sizeof(float));
        if (!p) return 0;
        free(s->scratch);
        s->scratch = p;
        s->scratch_cap = need;
    }
    *out = s->scratch;
    return stride;
}

static void cpu_gemm(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                     float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                     float beta, float *C, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta,
                C, (blasint)ldc);
}

static void cpu_bias_add(tp_backend_t *be, float *y, const float *b, int64_t rows, int64_t cols,
                         bool per_row)
{
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *yr = y + r * cols;
        if (per_row) {
            float br = b[r];
            for (int64_t c = 0; c < cols; c++)
                yr[c] += br;
        } else {
            for (int64_t c = 0; c < cols; c++)
                yr[c] += b[c];
        }
    }
}

static void cpu_bias_grad(tp_backend_t *be, const float *dy, float *db, int64_t rows, int64_t cols,
                          bool per_row)
{
    if (per_row) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *d = dy + r * cols;
            double s = 0;
            for (int64_t c = 0; c < cols; c++)
                s += d[c];
            db[r] += (float)s;
        }
        return;
    }
    /* Column blocks per thread; rows summed in order inside a block (vectorises across c). */
    const int64_t blk = 64;
    int64_t nblk = (cols + blk - 1) / blk;
#pragma omp parallel for schedule(static)
    for (int64_t ib = 0; ib < nblk; ib++) {
        int64_t c0 = ib * blk, c1 = c0 + blk < cols ? c0 + blk : cols;
        float acc[64];
        for (int64_t c = c0; c < c1; c++)
            acc[c - c0] = 0.0f;
        for (int64_t r = 0; r < rows; r++) {
            const float *d = dy + r * cols;
            for (int64_t c = c0; c < c1; c++)
                acc[c - c0] += d[c];
        }
        for (int64_t c = c0; c < c1; c++)
            db[c] += acc[c - c0];
    }
}

/* GELU (tanh form) over a contiguous range with the vectorisable tanh. */
TP_SIMD_CLONES static void gelu_range(const float *restrict x, float *restrict y, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float v = x[i], u = TP_GELU_C * (v + 0.044715f * v * v * v);
        y[i] = 0.5f * v * (1.0f + tp_tanh_fast(u));
    }
}

TP_SIMD_CLONES static void gelu_backward_range(const float *restrict x, const float *dy, float *dx,
                                               int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float v = x[i], u = TP_GELU_C * (v + 0.044715f * v * v * v);
        float t = tp_tanh_fast(u), du = TP_GELU_C * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
    }
}

/* Chunks of a fixed size so each thread gets whole vector-friendly ranges. */
#define ACT_CHUNK 4096

static void cpu_act_forward(tp_backend_t *be, tp_act_t act, const float *x, float *y, int64_t n)
{
    if (act == TP_ACT_GELU) {
        int64_t nc = (n + ACT_CHUNK - 1) / ACT_CHUNK;
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < nc; c++) {
            int64_t a = c * ACT_CHUNK, len = n - a < ACT_CHUNK ? n - a : ACT_CHUNK;
            gelu_range(x + a, y + a, len);
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        y[i] = tp_act_f(act, x[i]);
}

/* dx may alias dy (the GPT's MLP does it in place). */
static void cpu_act_backward(tp_backend_t *be, tp_act_t act, const float *x, const float *dy,
                             float *dx, int64_t n)
{
    if (act == TP_ACT_GELU) {
        int64_t nc = (n + ACT_CHUNK - 1) / ACT_CHUNK;
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < nc; c++) {
            int64_t a = c * ACT_CHUNK, len = n - a < ACT_CHUNK ? n - a : ACT_CHUNK;
            gelu_backward_range(x + a, dy + a, dx + a, len);
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        dx[i] = dy[i] * tp_act_df(act, x[i]);
}

static void cpu_dropout_forward(tp_backend_t *be, const float *x, float *y, uint8_t *mask,
                                int64_t rows, int64_t cols, float p, uint64_t seed, uint64_t stream,
                                int64_t row0)
{
    float s = 1.0f / (1.0f - p);
    int64_t base = row0 * cols;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows * cols; i++) {
        mask[i] = tp_dropout_keep(seed, stream, (uint64_t)(base + i), p);
        y[i] = mask[i] ? x[i] * s : 0.0f;
    }
}

static void cpu_dropout_backward(tp_backend_t *be, const float *dy, const uint8_t *mask, float *dx,
                                 int64_t n, float p)
{
    float s = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        dx[i] = mask[i] ? dy[i] * s : 0.0f;
}

static void cpu_im2col(tp_backend_t *be, const float *x, float *col, int64_t B, int64_t C,
                       int64_t H, int64_t W, int64_t k)
{
    int64_t N = B * H * W, pad = k / 2;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t r = 0; r < C * k * k; r++)
        for (int64_t b = 0; b < B; b++) {
            int64_t c = r / (k * k), ki = (r / k) % k, kj = r % k;
            const float *xp = x + (b * C + c) * H * W;
            float *dst = col + r * N + b * H * W;
            for (int64_t h = 0; h < H; h++) {
                int64_t ih = h + ki - pad;
                float *d = dst + h * W;
                if (ih < 0 || ih >= H) {
                    memset(d, 0, (size_t)W * sizeof(float));
                    continue;
                }
                const float *s = xp + ih * W;
                for (int64_t w = 0; w < W; w++) {
                    int64_t iw = w + kj - pad;
                    d[w] = (iw >= 0 && iw < W) ? s[iw] : 0.0f;
                }
            }
        }
}

static void cpu_col2im(tp_backend_t *be, const float *col, float *dx, int64_t B, int64_t C,
                       int64_t H, int64_t W, int64_t k)
{
    int64_t N = B * H * W, pad = k / 2;
    /* One (b, c) plane per iteration: planes are disjoint, so no races and a fixed order. */
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) {
            float *xp = dx + (b * C + c) * H * W;
            memset(xp, 0, (size_t)(H * W) * sizeof(float));
            for (int64_t ki = 0; ki < k; ki++)
                for (int64_t kj = 0; kj < k; kj++) {
                    const float *src = col + ((c * k + ki) * k + kj) * N + b * H * W;
                    for (int64_t h = 0; h < H; h++) {
                        int64_t ih = h + ki - pad;
                        if (ih < 0 || ih >= H) continue;
                        for (int64_t w = 0; w < W; w++) {
                            int64_t iw = w + kj - pad;
                            if (iw >= 0 && iw < W) xp[ih * W + iw] += src[h * W + w];
                        }
                    }
                }
        }
}

static void cpu_swap01(tp_backend_t *be, const float *src, float *dst, int64_t A, int64_t Bd,
                       int64_t D)
{
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t a = 0; a < A; a++)
        for (int64_t b = 0; b < Bd; b++)
            memcpy(dst + (b * A + a) * D, src + (a * Bd + b) * D, (size_t)D * sizeof(float));
}

static void cpu_maxpool_forward(tp_backend_t *be, const float *x, float *y, int32_t *argmax,
                                int64_t B, int64_t C, int64_t H, int64_t W, int64_t k)
{
    int64_t plane_out = (H / k) * (W / k);
#pragma omp parallel for schedule(static)
    for (int64_t bc = 0; bc < B * C; bc++)
        tp_maxpool_plane(x + bc * H * W, y + bc * plane_out, argmax + bc * plane_out, H, W, k);
}

static void cpu_maxpool_backward(tp_backend_t *be, const float *dy, const int32_t *argmax,
                                 float *dx, int64_t B, int64_t C, int64_t H, int64_t W, int64_t k)
{
    int64_t Ho = H / k, Wo = W / k;
#pragma omp parallel for schedule(static)
    for (int64_t bc = 0; bc < B * C; bc++) {
        float *xp = dx + bc * H * W;
        memset(xp, 0, (size_t)(H * W) * sizeof(float));
        for (int64_t o = 0; o < Ho * Wo; o++)
            xp[argmax[bc * Ho * Wo + o]] += dy[bc * Ho * Wo + o];
    }
}

static void cpu_softmax_xent_forward(tp_backend_t *be, const float *logits, const int32_t *labels,
                                     float *probs, float *loss, int64_t B, int64_t C)
{
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float *z = logits + b * C;
        float *p = probs + b * C;
        float mx = z[0];
        for (int64_t c = 1; c < C; c++)
            mx = z[c] > mx ? z[c] : mx;
        double sum = 0;
        for (int64_t c = 0; c < C; c++) {
            p[c] = expf(z[c] - mx);
            sum += p[c];
        }
        float inv = (float)(1.0 / sum);
        for (int64_t c = 0; c < C; c++)
            p[c] *= inv;
        loss[b] = (float)(log(sum) + mx - z[labels[b]]);
    }
}

static void cpu_softmax_xent_backward(tp_backend_t *be, const float *probs, const int32_t *labels,
                                      float *dlogits, int64_t B, int64_t C, float scale)
{
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            dlogits[b * C + c] = scale * (probs[b * C + c] - (c == labels[b] ? 1.0f : 0.0f));
}

static void cpu_xent_forward(tp_backend_t *be, const float *logits, int64_t ld,
                             const int32_t *labels, float *lse, float *loss, int64_t B, int64_t C)
{
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float *z = logits + b * ld;
        float mx = z[0];
        for (int64_t c = 1; c < C; c++)
            mx = z[c] > mx ? z[c] : mx;
        double sum = 0;
        for (int64_t c = 0; c < C; c++)
            sum += expf(z[c] - mx);
        lse[b] = (float)(log(sum) + mx);
        loss[b] = (float)(log(sum) + mx - z[labels[b]]);
    }
}

/* In place (dlogits == logits) each element is read before it is written. */
static void cpu_xent_backward(tp_backend_t *be, const float *logits, int64_t ld, const float *lse,
                              const int32_t *labels, float *dlogits, int64_t B, int64_t C,
                              float scale)
{
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
        const float *z = logits + b * ld;
        float *d = dlogits + b * ld, l = lse[b];
        for (int64_t c = 0; c < C; c++)
            d[c] = scale * (expf(z[c] - l) - (c == labels[b] ? 1.0f : 0.0f));
    }
}

static void cpu_sumsq_to(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate)
{
    cpu_state_t *s = be->impl;
    int64_t nchunk = (n + TP_SUMSQ_CHUNK - 1) / TP_SUMSQ_CHUNK;
    if (nchunk > s->chunk_cap) {
        double *p = realloc(s->chunk_sums, (size_t)nchunk * sizeof(double));
        /* Out of memory: the reference's sequential chunk order gives the same result. */
        if (!p) {
            tp_backend_ref_iface.sumsq_to(be, x, n, out, accumulate);
            return;
        }
        s->chunk_sums = p;
        s->chunk_cap = nchunk;
    }
    double *sums = s->chunk_sums;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nchunk; i++) {
        int64_t a = i * TP_SUMSQ_CHUNK, e = a + TP_SUMSQ_CHUNK < n ? a + TP_SUMSQ_CHUNK : n;
        double cs = 0;
        for (int64_t j = a; j < e; j++)
            cs += (double)x[j] * x[j];
        sums[i] = cs;
    }
    double total = 0;
    for (int64_t i = 0; i < nchunk; i++)
        total += sums[i];
    *out = accumulate ? *out + total : total;
}

/* Sequential, as the reference: it sums a step's per-target losses, a few thousand numbers. */
static void cpu_sum_to(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate)
{
    tp_backend_ref_iface.sum_to(be, x, n, out, accumulate);
}

static void cpu_scale(tp_backend_t *be, float *x, float alpha, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        x[i] *= alpha;
}

static void cpu_fill(tp_backend_t *be, float *x, float value, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        x[i] = value;
}

static void cpu_copy(tp_backend_t *be, float *dst, const float *src, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void cpu_axpy(tp_backend_t *be, float *y, const float *x, float alpha, int64_t n)
{
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++)
        y[i] += alpha * x[i];
}

/* out may alias a or b: element i reads only a[i] and b[i] before writing out[i]. */
static void cpu_add(tp_backend_t *be, const float *a, const float *b, float *out, int64_t n)
{
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

static void cpu_adamw(tp_backend_t *be, float *p, const float *g, float *m, float *v, int64_t n,
                      float lr, float b1, float b2, float eps, float wd, float bc1, float bc2,
                      tp_clip_t clip)
{
    float s = tp_clip_scale(clip);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        tp_adamw_elem(&p[i], g[i] * s, &m[i], &v[i], lr, b1, b2, eps, wd, bc1, bc2);
}

static void cpu_sgd(tp_backend_t *be, float *p, const float *g, float *buf, int64_t n, float lr,
                    float mu, float wd, bool nesterov, bool first, tp_clip_t clip)
{
    float s = tp_clip_scale(clip);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        tp_sgd_elem(&p[i], g[i] * s, &buf[i], lr, mu, wd, nesterov, first);
}

const tp_backend_iface_t tp_backend_cpu_iface = {
    .name = "cpu",
    .host_memory = true,
    .init = cpu_init,
    .shutdown = cpu_shutdown,
    .alloc = tp_host_alloc,
    .release = tp_host_release,
    .upload = tp_host_copy,
    .download = tp_host_copy,
    .gemm = cpu_gemm,
    .bias_add = cpu_bias_add,
    .bias_grad = cpu_bias_grad,
    .act_forward = cpu_act_forward,
    .act_backward = cpu_act_backward,
    .dropout_forward = cpu_dropout_forward,
    .dropout_backward = cpu_dropout_backward,
    .im2col = cpu_im2col,
    .col2im = cpu_col2im,
    .swap01 = cpu_swap01,
    .maxpool_forward = cpu_maxpool_forward,
    .maxpool_backward = cpu_maxpool_backward,
    .softmax_xent_forward = cpu_softmax_xent_forward,
    .softmax_xent_backward = cpu_softmax_xent_backward,
    .xent_forward = cpu_xent_forward,
    .xent_backward = cpu_xent_backward,
    .sumsq_to = cpu_sumsq_to,
    .sum_to = cpu_sum_to,
    .scale = cpu_scale,
    .fill = cpu_fill,
    .copy = cpu_copy,
    .adamw = cpu_adamw,
    .sgd = cpu_sgd,
    .embedding_forward = tp_cpu_embedding_forward,
    .embedding_backward = tp_cpu_embedding_backward,
    .layernorm_forward = tp_cpu_layernorm_forward,
    .layernorm_backward = tp_cpu_layernorm_backward,
    .attention_forward = tp_cpu_attention_forward,
    .attention_backward = tp_cpu_attention_backward,
    .attention_decode = tp_cpu_attention_decode,
    .axpy = cpu_axpy,
    .add = cpu_add,
};
