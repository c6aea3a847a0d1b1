// The "cuda-emu" backend for tests: the CUDA backend's kernels (cuda/kernels_*.cu, rewritten
// by prep.py) running on the CPU through emu_runtime.cpp, on host memory. What it does not
// cover is what backend_cuda.cu does itself: cuBLAS (gemm here is the ref backend's), streams,
// staging and device memory.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

extern "C" {
#include "backend_impl.h"
#include "bf16.h"
}
#include "cuda_common.h"
#include "cuda_ops.h"

#include <stdlib.h>
#include <string.h>

namespace
{
struct EmuState {
    tp_precision_t precision;
    void *scratch[4];
    size_t cap[4];
};

EmuState *state(const tp_backend_t *be)
{
    return (EmuState *)be->impl;
}

tp_status_t emu_init(tp_backend_t *be, int threads)
{
    (void)threads;
    be->impl = tp_calloc(1, sizeof(EmuState), "cuda-emu state");
    if (!be->impl) return TP_ERR_NOMEM;
    be->threads = 1;
    snprintf(be->describe, sizeof be->describe,
             "cuda-emu: the CUDA kernels on the CPU (fibers), gemm from the ref backend");
    return TP_OK;
}

void emu_shutdown(tp_backend_t *be)
{
    EmuState *s = state(be);
    if (!s) return;
    for (void *p : s->scratch)
        free(p);
    free(s);
    be->impl = nullptr;
}

tp_status_t emu_set_precision(tp_backend_t *be, tp_precision_t p)
{
    state(be)->precision = p;
    return TP_OK;
}

void *emu_alloc(tp_backend_t *be, size_t bytes)
{
    (void)be;
    void *p = malloc(bytes ? bytes : 1);
    // NaN-filled, as uninitialised device memory may hold anything.
    if (p) memset(p, 0xff, bytes);
    return p;
}

void emu_release(tp_backend_t *be, void *p)
{
    (void)be;
    free(p);
}

void emu_copy_bytes(tp_backend_t *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    memmove(dst, src, bytes);
}

void emu_gemm(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc)
{
    tp_backend_ref_iface.gemm(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Elements of a row-major rows x cols matrix with leading dimension ld that a product reads.
int64_t span(int64_t rows, int64_t cols, int64_t ld)
{
    return rows > 0 && cols > 0 ? (rows - 1) * ld + cols : 0;
}

// A bf16 operand widened to float32 (exact), so the ref gemm computes what cuBLAS does with bf16
// inputs and fp32 accumulation, up to summation order. The caller frees it.
float *widen(const tp_cval_t *p, int64_t n)
{
    float *w = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!w) abort();
    const __nv_bfloat16 *b = (const __nv_bfloat16 *)(const void *)p;
    for (int64_t i = 0; i < n; i++)
        w[i] = __bfloat162float(b[i]);
    return w;
}

void emu_gemm_c(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                const tp_cval_t *A, int64_t lda, const tp_cval_t *B, int64_t ldb, float beta,
                float *C, int64_t ldc)
{
    if (state(be)->precision != TP_PREC_BF16) {
        emu_gemm(be, ta, tb, M, N, K, alpha, tp_cval_cf32(A), lda, tp_cval_cf32(B), ldb, beta, C,
                 ldc);
        return;
    }
    if (M <= 0 || N <= 0) return;
    // op(A) is M x K, op(B) is K x N; stored transposed when the flag says so.
    float *a = widen(A, ta ? span(K, M, lda) : span(M, K, lda));
    float *b = widen(B, tb ? span(N, K, ldb) : span(K, N, ldb));
    emu_gemm(be, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, C, ldc);
    free(a);
    free(b);
}

// The fused linear ops as backend_cuda.cu runs them through cuBLASLt (linear_cublaslt.cu), so
// that backend.c's fused branch and the models' use of it run here: the residual is the
// product's C matrix (y = r + x W^T, then + b, cuBLASLt's order), and the bias gradient lands in
// a scratch vector that is then added into db (BGRADB overwrites its vector).
bool emu_linear_forward_c(tp_backend_t *be, const tp_cval_t *x, const tp_cval_t *w, const float *b,
                          const float *r, float *y, int64_t N, int64_t in, int64_t out)
{
    if (!b && !r) return false;
    if (r) memcpy(y, r, (size_t)(N * out) * sizeof(float));
    emu_gemm_c(be, false, true, N, out, in, 1.0f, x, in, w, in, r ? 1.0f : 0.0f, y, out);
    if (b) tp_emu_bias_add(be, y, b, N, out, false);
    return true;
}

bool emu_linear_grad_c(tp_backend_t *be, const tp_cval_t *dy, const tp_cval_t *x, float *dw,
                       float *db, int64_t N, int64_t in, int64_t out)
{
    if (!db) return false;
    emu_gemm_c(be, true, false, out, in, N, 1.0f, dy, out, x, in, 1.0f, dw, in);
    float *bgrad = (float *)tp_emu_scratch(be, 2, (size_t)out * sizeof(float));
    tp_emu_fill(be, bgrad, 0.0f, out);
    tp_emu_bias_grad_c(be, dy, bgrad, N, out, false);
    tp_emu_axpy(be, db, bgrad, 1.0f, out);
    return true;
}

// The product into a compute copy as backend_cuda.cu asks cuBLASLt for it: the bias vector of
// the output's type (bf16 under "bf16"), the product plus bias in float32, stored rounded.
// cuBLAS with a bf16 C: fp32 accumulators rounded once as they are stored.
void emu_gemm_to_c(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                   const tp_cval_t *A, int64_t lda, const tp_cval_t *B, int64_t ldb, tp_cval_t *C,
                   int64_t ldc)
{
    if (state(be)->precision != TP_PREC_BF16) {
        emu_gemm_c(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, 0.0f, tp_cval_f32(C), ldc);
        return;
    }
    if (M <= 0 || N <= 0) return;
    float *acc = (float *)malloc((size_t)(M * N) * sizeof(float));
    if (!acc) abort();
    emu_gemm_c(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, 0.0f, acc, N);
    for (int64_t r = 0; r < M; r++)
        tp_emu_to_compute(be, acc + r * N, tp_cval_at(be, C, r * ldc), N);
    free(acc);
}

bool emu_linear_forward_to_c(tp_backend_t *be, const tp_cval_t *x, const tp_cval_t *w,
                             const float *b, tp_cval_t *y, float *scratch, int64_t N, int64_t in,
                             int64_t out)
{
    bool bf16 = state(be)->precision == TP_PREC_BF16;
    float *acc = bf16 ? scratch : tp_cval_f32(y);
    emu_gemm_c(be, false, true, N, out, in, 1.0f, x, in, w, in, 0.0f, acc, out);
    if (b) {
        float *bias = (float *)tp_emu_scratch(be, 2, (size_t)out * sizeof(float));
        for (int64_t i = 0; i < out; i++)
            bias[i] = bf16 ? tp_bf16_round(b[i]) : b[i];
        tp_emu_bias_add(be, acc, bias, N, out, false);
    }
    if (bf16) tp_emu_to_compute(be, acc, y, N * out);
    return true;
}

// GELU_AUX_BIAS and DGELU_BGRAD as backend_cuda.cu asks cuBLASLt for them: the bias vector of
// the output's type (bf16 under "bf16"), the product plus bias in float32, stored rounded as pre
// and (after GELU) as y; backward the product times gelu'(pre) stored as dpre, its row sums
// rounded to the output's type in a scratch vector that is then added into db. Where cuda
// declines (an activation other than GELU, no bias, a leading dimension not a multiple of 8)
// this does too.
bool emu_linear_act_forward_c(tp_backend_t *be, tp_act_t act, const tp_cval_t *x,
                              const tp_cval_t *w, const float *b, tp_cval_t *pre, tp_cval_t *y,
                              float *scratch, int64_t N, int64_t in, int64_t out)
{
    if (act != TP_ACT_GELU || !b || out % 8 != 0) return false;
    bool bf16 = state(be)->precision == TP_PREC_BF16;
    float *acc = bf16 ? scratch : tp_cval_f32(pre);
    float *bias = (float *)tp_emu_scratch(be, 2, (size_t)out * sizeof(float));
    for (int64_t i = 0; i < out; i++)
        bias[i] = bf16 ? tp_bf16_round(b[i]) : b[i];
    emu_gemm_c(be, false, true, N, out, in, 1.0f, x, in, w, in, 0.0f, acc, out);
    tp_emu_bias_add(be, acc, bias, N, out, false);
    if (acc == scratch) tp_emu_to_compute(be, acc, pre, N * out);
    tp_emu_act_forward_c(be, act, acc, y, N * out);
    return true;
}

bool emu_linear_dx_act_c(tp_backend_t *be, tp_act_t act, const tp_cval_t *dy, const tp_cval_t *w,
                         const tp_cval_t *pre, tp_cval_t *dpre, float *db, float *scratch,
                         int64_t N, int64_t in, int64_t out)
{
    if (act != TP_ACT_GELU || !db || in % 8 != 0) return false;
    emu_gemm_c(be, false, false, N, in, out, 1.0f, dy, out, w, in, 0.0f, scratch, in);
    tp_emu_act_backward_c(be, act, pre, scratch, dpre, N * in);
    float *bgrad = (float *)tp_emu_scratch(be, 2, (size_t)in * sizeof(float));
    tp_emu_fill(be, bgrad, 0.0f, in);
    tp_emu_bias_grad_c(be, dpre, bgrad, N, in, false);
    if (state(be)->precision == TP_PREC_BF16)
        for (int64_t i = 0; i < in; i++)
            bgrad[i] = tp_bf16_round(bgrad[i]);
    tp_emu_axpy(be, db, bgrad, 1.0f, in);
    return true;
}

const tp_backend_iface_t emu_iface = {
    .name = "cuda-emu",
    .host_memory = true,
    .init = emu_init,
    .shutdown = emu_shutdown,
    .synchronize = nullptr,
    .stream = nullptr,
    .set_precision = emu_set_precision,
    .alloc = emu_alloc,
    .release = emu_release,
    .upload = emu_copy_bytes,
    .download = emu_copy_bytes,
    .gemm = emu_gemm,
    .gemm_c = emu_gemm_c,
    .to_compute = tp_emu_to_compute,
    .bias_grad_c = tp_emu_bias_grad_c,
    .act_forward_c = tp_emu_act_forward_c,
    .act_backward_c = tp_emu_act_backward_c,
    .gemm_to_c = emu_gemm_to_c,
    .xent_forward_c = tp_emu_xent_forward_c,
    .xent_backward_c = tp_emu_xent_backward_c,
    .linear_forward_c = emu_linear_forward_c,
    .linear_grad_c = emu_linear_grad_c,
    .linear_forward_to_c = emu_linear_forward_to_c,
    .linear_act_forward_c = emu_linear_act_forward_c,
    .linear_dx_act_c = emu_linear_dx_act_c,
    .bias_add = tp_emu_bias_add,
    .bias_grad = tp_emu_bias_grad,
    .act_forward = tp_emu_act_forward,
    .act_backward = tp_emu_act_backward,
    .dropout_forward = tp_emu_dropout_forward,
    .dropout_backward = tp_emu_dropout_backward,
    .im2col = tp_emu_im2col,
    .col2im = tp_emu_col2im,
    .swap01 = tp_emu_swap01,
    .maxpool_forward = tp_emu_maxpool_forward,
    .maxpool_backward = tp_emu_maxpool_backward,
    .softmax_xent_forward = tp_emu_softmax_xent_forward,
    .softmax_xent_backward = tp_emu_softmax_xent_backward,
    // xent through xent_forward_c / xent_backward_c (a compute-copy backend)
    .xent_forward = nullptr,
    .xent_backward = nullptr,
    .sumsq_to = tp_emu_sumsq_to,
    .sum_to = tp_emu_sum_to,
    .scale = tp_emu_scale,
    .fill = tp_emu_fill,
    .copy = tp_emu_copy,
    .adamw = tp_emu_adamw,
    .sgd = tp_emu_sgd,
    .embedding_forward = tp_emu_embedding_forward,
    .embedding_backward = tp_emu_embedding_backward,
    .layernorm_forward = tp_emu_layernorm_forward,
    .layernorm_backward = tp_emu_layernorm_backward,
    .layernorm_backward_c = tp_emu_layernorm_backward_c,
    .attention_forward = tp_emu_attention_forward,
    .attention_att_numel = tp_emu_attention_att_numel,
    .attention_backward = tp_emu_attention_backward,
    .attention_decode = tp_emu_attention_decode,
    .axpy = tp_emu_axpy,
    .add = tp_emu_add,
    // The emulation's ops finish before they return: the op profile reads the host clock.
    .timer_mark = nullptr,
    .timer_ms = nullptr,
    .timer_reset = nullptr,
};
} // namespace

extern "C" {

cudaStream_t tp_emu_stream(tp_backend_t *be)
{
    (void)be;
    return nullptr;
}

tp_precision_t tp_emu_precision(const tp_backend_t *be)
{
    return state(be)->precision;
}

void *tp_emu_scratch(tp_backend_t *be, int slot, size_t bytes)
{
    EmuState *s = state(be);
    if (slot < 0 || slot >= 4) abort();
    if (bytes > s->cap[slot]) {
        free(s->scratch[slot]);
        s->scratch[slot] = malloc(bytes);
        if (!s->scratch[slot]) abort();
        s->cap[slot] = bytes;
    }
    memset(s->scratch[slot], 0xff, bytes); // NaN: a kernel must write what it reads back
    return s->scratch[slot];
}

tp_status_t tp_emu_backend_create(tp_backend_t **out)
{
    return tp_backend_create_with(&emu_iface, 0, out);
}
}
