// Softmax cross-entropy of the CUDA backend, one block per row (vocabularies of 50k and more):
// with probabilities (tp_op_softmax_xent_*, the classifiers) and without (tp_op_xent_*, the GPT's
// loss, on logits that are a compute copy). Each computes what runtime/backend_ref.c computes; a
// row's sums have a fixed order (fixed block size per C, no atomics), so results are the same on
// every run.
#include <float.h>
#include <stdint.h>

#include "cuda_common.h"
#include "cuda_ops.h"
#include "cuda_vec.h"

// Blocks per grid: rows beyond it are taken by grid-stride loops.
static const int64_t kXentMaxBlocks = 32768;

// ---- one block per row ----------------------------------------------------------------------
// Memory-bound: the forward reads a row once for an online max and sum (running max, sum
// rescaled when the max grows), then reads it again to write the probabilities; the backward
// streams rows without a per-element 64-bit division. Rows are 16-byte accessed where the
// pointers allow (C is odd for GPT-2, so each row has a scalar head and tail).

// float4s each thread loads before using them, so that several 16-byte loads are in flight per
// thread (a loop of one load each waits a full memory latency per iteration).
#define XENT_BATCH 4

// Threads per row: a function of C only; 512 for large vocabularies (about 25 float4s per thread
// for 50257 classes), fewer for small rows. Which elements a thread sums also depends on the
// row's address mod 16 (its scalar head), so with C not a multiple of 4 a row's loss can differ
// in the last bits with its position in the batch; for the same inputs at the same addresses
// the result is the same on every run.
// Every xent kernel is declared for at most kXentThreads (__launch_bounds__), so the compiler
// keeps it within the registers a block that size may have.
static const int kXentThreads = 512;

static int xent_threads(int64_t C)
{
    int64_t t = (C / 8 + 31) / 32 * 32;
    return (int)(t < 32 ? 32 : t > kXentThreads ? kXentThreads : t);
}

// 16-byte accesses: cuda_vec.h. The probabilities are stored evict-first (vec_store4_cs): they
// are not read again soon, and keeping them out of L2 leaves room for the logits the second pass
// re-reads.

// Scalars before a row's first 4-element vector boundary (16 bytes of float, 8 of bf16; at most
// 3, at most C).
template <typename T> static __device__ __forceinline__ int64_t head_len(const T *p, int64_t C)
{
    const uintptr_t v = 4 * sizeof(T);
    int64_t h = (int64_t)((v - (uintptr_t)p % v) % v / sizeof(T));
    return h < C ? h : C;
}

// Online softmax state: m the running max, s the sum of exp(z - m). -FLT_MAX (not -inf) as the
// empty max keeps exp(m - m') finite, so an empty state merges as 0.
static __device__ __forceinline__ void ms_add(float &m, float &s, float x)
{
    if (x > m) {
        s *= expf(m - x);
        m = x;
    }
    s += expf(x - m);
}

static __device__ __forceinline__ void ms_add4(float &m, float &s, float4 v)
{
    float m4 = fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w));
    if (m4 > m) { // rare after a row's first elements
        s *= expf(m - m4);
        m = m4;
    }
    s += (expf(v.x - m) + expf(v.y - m)) + (expf(v.z - m) + expf(v.w - m));
}

static __device__ __forceinline__ float4 xent_prob4(float4 x, float m, float inv)
{
    return make_float4(expf(x.x - m) * inv, expf(x.y - m) * inv, expf(x.z - m) * inv,
                       expf(x.w - m) * inv);
}

// scale * (p - onehot(y)) for columns c .. c + 3.
static __device__ __forceinline__ float4 xent_grad4(float4 x, int64_t c, int64_t y, float scale)
{
    return make_float4(
        scale * (x.x - (c == y ? 1.0f : 0.0f)), scale * (x.y - (c + 1 == y ? 1.0f : 0.0f)),
        scale * (x.z - (c + 2 == y ? 1.0f : 0.0f)), scale * (x.w - (c + 3 == y ? 1.0f : 0.0f)));
}

// __fmul_rn keeps the compiler from contracting into an fma, which would make the merge
// asymmetric; symmetric, every lane of the xor butterfly ends with the same bits.
static __device__ __forceinline__ void ms_merge(float &m, float &s, float m2, float s2)
{
    float mx = fmaxf(m, m2);
    s = __fmul_rn(s, expf(m - mx)) + __fmul_rn(s2, expf(m2 - mx));
    m = mx;
}

static __device__ void warp_max_sum(float &m, float &s)
{
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_merge(m, s, m2, s2);
    }
}

// (max, sum) over the block; every thread gets the result. shm and shs hold 32 values each.
static __device__ void block_max_sum(float &m, float &s, float *shm, float *shs)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    warp_max_sum(m, s);
    __syncthreads(); // shm/shs may still be read for the previous row
    if (lane == 0) {
        shm[warp] = m;
        shs[warp] = s;
    }
    __syncthreads();
    m = lane < nw ? shm[lane] : -FLT_MAX;
    s = lane < nw ? shs[lane] : 0.0f;
    warp_max_sum(m, s);
}

// A row's (max, sum of exp(z - max)), the whole block's; every thread gets it. h, nv: the row's
// scalar head and float4 count (head_len).
template <typename L>
static __device__ void row_max_sum(const L *z, int64_t C, int64_t h, int64_t nv, float &m, float &s,
                                   float *shm, float *shs)
{
    const int tid = threadIdx.x, T = blockDim.x;
    const int64_t t0 = h + 4 * nv;
    const L *zv = z + h;
    m = -FLT_MAX;
    s = 0.0f;
    if (tid < h) ms_add(m, s, cval_get(z + tid));
    if (tid < C - t0) ms_add(m, s, cval_get(z + t0 + tid));
    int64_t v = tid;
    for (; v + (XENT_BATCH - 1) * T < nv; v += XENT_BATCH * T) {
        float4 x[XENT_BATCH];
#pragma unroll
        for (int u = 0; u < XENT_BATCH; u++)
            x[u] = vec_load4(zv + 4 * (v + u * T));
        float mb = m; // one rescale per batch
#pragma unroll
        for (int u = 0; u < XENT_BATCH; u++)
            mb = fmaxf(mb, fmaxf(fmaxf(x[u].x, x[u].y), fmaxf(x[u].z, x[u].w)));
        if (mb > m) {
            s *= expf(m - mb);
            m = mb;
        }
#pragma unroll
        for (int u = 0; u < XENT_BATCH; u++)
            s += (expf(x[u].x - m) + expf(x[u].y - m)) + (expf(x[u].z - m) + expf(x[u].w - m));
    }
    for (; v < nv; v += T)
        ms_add4(m, s, vec_load4(zv + 4 * v));
    block_max_sum(m, s, shm, shs);
}

// The logit of a row's label; an out-of-range label has none: NaN, not a stray read.
template <typename L>
static __device__ __forceinline__ float label_logit(const L *z, int32_t y, int64_t C)
{
    return y >= 0 && y < C ? cval_get(z + y) : __int_as_float(0x7fc00000);
}

static __global__ void __launch_bounds__(kXentThreads)
    softmax_xent_forward_kernel(const float *logits, const int32_t *labels, float *probs,
                                float *loss, int64_t B, int64_t C)
{
    __shared__ float shm[32], shs[32];
    const int tid = threadIdx.x, T = blockDim.x;
    for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
        const float *z = logits + b * C;
        float *pr = probs + b * C;
        const int64_t h = head_len(z, C), nv = (C - h) / 4, t0 = h + 4 * nv;
        const float *zv = z + h;
        // Read before the barriers in row_max_sum, so before any thread writes the
        // probabilities (which may be in place).
        const float zy = label_logit(z, labels[b], C);
        float m, s;
        row_max_sum(z, C, h, nv, m, s, shm, shs);

        const float inv = 1.0f / s;
        if (((uintptr_t)z ^ (uintptr_t)pr) % 16 == 0) {
            float *pv = pr + h;
            if (tid < h) pr[tid] = expf(z[tid] - m) * inv;
            if (tid < C - t0) pr[t0 + tid] = expf(z[t0 + tid] - m) * inv;
            // Back to front: the row's end was read last, so it is the likeliest still in L2.
            const int64_t last = nv - 1; // float4 index j from the end is last - j
            int64_t j = tid;
            for (; j + (XENT_BATCH - 1) * T < nv; j += XENT_BATCH * T) {
                float4 x[XENT_BATCH];
#pragma unroll
                for (int u = 0; u < XENT_BATCH; u++)
                    x[u] = vec_load4(zv + 4 * (last - j - u * T));
#pragma unroll
                for (int u = 0; u < XENT_BATCH; u++)
                    vec_store4_cs(pv + 4 * (last - j - u * T), xent_prob4(x[u], m, inv));
            }
            for (; j < nv; j += T)
                vec_store4_cs(pv + 4 * (last - j),
                              xent_prob4(vec_load4(zv + 4 * (last - j)), m, inv));
        } else {
            for (int64_t j = tid; j < C; j += T) {
                int64_t c = C - 1 - j;
                pr[c] = expf(z[c] - m) * inv;
            }
        }
        if (tid == 0) loss[b] = logf(s) + m - zy;
    }
}

// G: dlogits' element type. Its vector stores (16 bytes of float, 8 of bf16) line up with the
// probabilities' float4 loads when the two rows have the same phase (vec_phase).
template <typename G>
static __global__ void __launch_bounds__(kXentThreads)
    softmax_xent_backward_kernel(const float *probs, const int32_t *labels, G *dlogits, int64_t B,
                                 int64_t C, float scale)
{
    const int tid = threadIdx.x, T = blockDim.x;
    for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
        const float *p = probs + b * C;
        G *d = dlogits + b * C;
        const int64_t y = labels[b]; // out of range: no column matches, as in ref
        if (vec_phase(p) == vec_phase(d)) {
            const int64_t h = head_len(p, C), nv = (C - h) / 4, t0 = h + 4 * nv;
            if (tid < h) cval_put(d + tid, scale * (p[tid] - (tid == y ? 1.0f : 0.0f)));
            if (tid < C - t0)
                cval_put(d + t0 + tid, scale * (p[t0 + tid] - (t0 + tid == y ? 1.0f : 0.0f)));
            int64_t v = tid;
            for (; v + (XENT_BATCH - 1) * T < nv; v += XENT_BATCH * T) {
                float4 x[XENT_BATCH];
#pragma unroll
                for (int u = 0; u < XENT_BATCH; u++)
                    x[u] = vec_load4(p + h + 4 * (v + u * T));
#pragma unroll
                for (int u = 0; u < XENT_BATCH; u++) {
                    int64_t c = h + 4 * (v + u * T);
                    vec_store4(d + c, xent_grad4(x[u], c, y, scale));
                }
            }
            for (; v < nv; v += T)
                vec_store4(d + h + 4 * v,
                           xent_grad4(vec_load4(p + h + 4 * v), h + 4 * v, y, scale));
        } else {
            for (int64_t c = tid; c < C; c += T)
                cval_put(d + c, scale * (p[c] - (c == y ? 1.0f : 0.0f)));
        }
    }
}

// Cross-entropy without probabilities (backend.h's tp_op_xent_*): the forward is the first pass
// of softmax_xent_forward_kernel, keeping lse = m + log(s); the backward recomputes each
// probability as exp(z - lse) while it streams the row, so a step reads the logits twice and
// writes only the gradient, instead of also writing and re-reading [B, C] probabilities. L: the
// logits' element type (a compute copy: bf16 under "bf16", which halves both passes' reads); rows
// ld apart.
template <typename L>
static __global__ void __launch_bounds__(kXentThreads)
    xent_forward_kernel(const L *logits, int64_t ld, const int32_t *labels, float *lse, float *loss,
                        int64_t B, int64_t C)
{
    __shared__ float shm[32], shs[32];
    for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
        const L *z = logits + b * ld;
        const int64_t h = head_len(z, C), nv = (C - h) / 4;
        float m, s;
        row_max_sum(z, C, h, nv, m, s, shm, shs);
        if (threadIdx.x == 0) {
            float l = logf(s) + m;
            lse[b] = l;
            loss[b] = l - label_logit(z, labels[b], C);
        }
    }
}

static __device__ __forceinline__ float4 xent_exp4(float4 x, float lse)
{
    return make_float4(expf(x.x - lse), expf(x.y - lse), expf(x.z - lse), expf(x.w - lse));
}

// L: the element type of the logits and of dlogits (compute copies), rows ld apart. In place
// (dlogits == logits) every element is read by the thread that then writes it: the two rows have
// the same phase, so the vector path's elements are the same.
template <typename L>
static __global__ void __launch_bounds__(kXentThreads)
    xent_backward_kernel(const L *logits, int64_t ld, const float *lse, const int32_t *labels,
                         L *dlogits, int64_t B, int64_t C, float scale)
{
    const int tid = threadIdx.x, T = blockDim.x;
    for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
        const L *z = logits + b * ld;
        L *d = dlogits + b * ld;
        const float l = lse[b];
        const int64_t y = labels[b]; // out of range: no column matches, as in ref
        if (vec_phase(z) == vec_phase(d)) {
            const int64_t h = head_len(z, C), nv = (C - h) / 4, t0 = h + 4 * nv;
            if (tid < h)
                cval_put(d + tid, scale * (expf(cval_get(z + tid) - l) - (tid == y ? 1.0f : 0.0f)));
            if (tid < C - t0)
                cval_put(d + t0 + tid, scale * (expf(cval_get(z + t0 + tid) - l) -
                                                (t0 + tid == y ? 1.0f : 0.0f)));
            int64_t v = tid;
            for (; v + (XENT_BATCH - 1) * T < nv; v += XENT_BATCH * T) {
                float4 x[XENT_BATCH];
#pragma unroll
                for (int u = 0; u < XENT_BATCH; u++)
                    x[u] = vec_load4(z + h + 4 * (v + u * T));
#pragma unroll
                for (int u = 0; u < XENT_BATCH; u++) {
                    int64_t c = h + 4 * (v + u * T);
                    vec_store4(d + c, xent_grad4(xent_exp4(x[u], l), c, y, scale));
                }
            }
            for (; v < nv; v += T) {
                int64_t c = h + 4 * v;
                vec_store4(d + c, xent_grad4(xent_exp4(vec_load4(z + c), l), c, y, scale));
            }
        } else {
            for (int64_t c = tid; c < C; c += T)
                cval_put(d + c, scale * (expf(cval_get(z + c) - l) - (c == y ? 1.0f : 0.0f)));
        }
    }
}

template <typename L>
static void xent_forward(tp_backend_t *be, const L *logits, int64_t ld, const int32_t *labels,
                         float *lse, float *loss, int64_t B, int64_t C)
{
    if (B <= 0 || C <= 0) return;
    unsigned g = (unsigned)(B < kXentMaxBlocks ? B : kXentMaxBlocks);
    xent_forward_kernel<L>
        <<<g, xent_threads(C), 0, tp_cuda_stream(be)>>>(logits, ld, labels, lse, loss, B, C);
    TP_CUDA_LAUNCHED();
}

template <typename L>
static void xent_backward(tp_backend_t *be, const L *logits, int64_t ld, const float *lse,
                          const int32_t *labels, L *dlogits, int64_t B, int64_t C, float scale)
{
    if (B <= 0 || C <= 0) return;
    unsigned g = (unsigned)(B < kXentMaxBlocks ? B : kXentMaxBlocks);
    xent_backward_kernel<L><<<g, xent_threads(C), 0, tp_cuda_stream(be)>>>(logits, ld, lse, labels,
                                                                           dlogits, B, C, scale);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_xent_forward_c(tp_backend_t *be, const tp_cval_t *logits, int64_t ld,
                            const int32_t *labels, float *lse, float *loss, int64_t B, int64_t C)
{
    if (tp_cuda_precision(be) == TP_PREC_BF16)
        xent_forward(be, cval_bf16(logits), ld, labels, lse, loss, B, C);
    else
        xent_forward(be, tp_cval_cf32(logits), ld, labels, lse, loss, B, C);
}

void tp_cuda_xent_backward_c(tp_backend_t *be, const tp_cval_t *logits, int64_t ld,
                             const float *lse, const int32_t *labels, tp_cval_t *dlogits, int64_t B,
                             int64_t C, float scale)
{
    if (tp_cuda_precision(be) == TP_PREC_BF16)
        xent_backward(be, cval_bf16(logits), ld, lse, labels, cval_bf16(dlogits), B, C, scale);
    else
        xent_backward(be, tp_cval_cf32(logits), ld, lse, labels, tp_cval_f32(dlogits), B, C, scale);
}

void tp_cuda_softmax_xent_forward(tp_backend_t *be, const float *logits, const int32_t *labels,
                                  float *probs, float *loss, int64_t B, int64_t C)
{
    if (B <= 0 || C <= 0) return;
    unsigned g = (unsigned)(B < kXentMaxBlocks ? B : kXentMaxBlocks);
    softmax_xent_forward_kernel<<<g, xent_threads(C), 0, tp_cuda_stream(be)>>>(logits, labels,
                                                                               probs, loss, B, C);
    TP_CUDA_LAUNCHED();
}

template <typename G>
static void softmax_xent_backward(tp_backend_t *be, const float *probs, const int32_t *labels,
                                  G *dlogits, int64_t B, int64_t C, float scale)
{
    if (B <= 0 || C <= 0) return;
    unsigned g = (unsigned)(B < kXentMaxBlocks ? B : kXentMaxBlocks);
    softmax_xent_backward_kernel<G>
        <<<g, xent_threads(C), 0, tp_cuda_stream(be)>>>(probs, labels, dlogits, B, C, scale);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_softmax_xent_backward(tp_backend_t *be, const float *probs, const int32_t *labels,
                                   float *dlogits, int64_t B, int64_t C, float scale)
{
    softmax_xent_backward(be, probs, labels, dlogits, B, C, scale);
}
