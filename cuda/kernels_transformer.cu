/* CUDA kernels of the GPT ops declared in cuda_ops.h: token + position embedding and fused
 * causal self-attention (forward, backward, KV-cache decode; LayerNorm is kernels_layernorm.cu),
 * with the semantics of runtime/backend_ref_transformer.c. Every result is reproducible run to run:
 * reductions have a fixed order and there are no floating-point atomics. Attention is flash-style:
 * it keeps one float per query row (the softmax log-sum-exp) for backward instead of the T x T
 * matrix. Math is fp32 on CUDA cores, except that in runtime.precision "bf16" attention's products
 * (Q K^T and P V forward; S, dP, dQ, dK and dV backward) run on tensor cores with bf16 inputs and
 * fp32 accumulation, for head sizes up to 64; decode stays fp32. The outputs that only feed matrix
 * products (attention's out and dqkv) are compute copies, rounded to bf16 as they
 * are stored under "bf16" (cuBLAS then reads half the bytes), and attention reads qkv as one
 * (the qkv product writes it in bf16); the residual stream, gradients of parameters and the
 * saved statistics stay fp32. */
#include "attention_impl.h"
#include "cuda_ops.h"
#include "kernel_grid.h"

#include <cub/device/device_radix_sort.cuh>

#include <limits.h>
#include <math.h>
#include <stdint.h>

namespace
{

/* A shape these kernels cannot run: like TP_CUDA_FATAL, an op has no status to return. */
void fatal(const char *what)
{
    fprintf(stderr, "%s: %s\n", __FILE__, what);
    exit(1);
}

/* Over the 16-lane half-warp that shares one attention row (offsets < 16 stay inside it). */
__device__ __forceinline__ float group16_sum(float v)
{
    for (int o = 8; o > 0; o >>= 1)
        v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float group16_max(float v)
{
    for (int o = 8; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* ---- embedding ------------------------------------------------------------------------------ */

__global__ void __launch_bounds__(kThreads)
    embedding_forward_kernel(const int32_t *tokens, const float *wte, const float *wpe, float *out,
                             int64_t N, int64_t T, int64_t C)
{
    for (int64_t r = blockIdx.x; r < N; r += gridDim.x) {
        const float *e = wte + (int64_t)tokens[r] * C, *p = wpe + (r % T) * C;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
            out[r * C + c] = e[c] + p[c];
    }
}

/* dwpe[t, c] += dout[b, t, c] for b in order: the same fp32 additions as the reference. */
__global__ void __launch_bounds__(kThreads)
    embedding_dwpe_kernel(const float *dout, float *dwpe, int64_t B, int64_t T, int64_t C)
{
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
        float acc = dwpe[t * C + c];
        for (int64_t b = 0; b < B; b++)
            acc += dout[(b * T + t) * C + c];
        dwpe[t * C + c] = acc;
    }
}

__global__ void __launch_bounds__(kThreads) iota_kernel(int32_t *v, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        v[i] = (int32_t)i;
}

/* After a stable sort of (token, row) by token, the blocks at the first entry of each run of
 * equal tokens add that token's rows into its dwte row in ascending row order, which is the
 * reference's order: bit-identical, and no two blocks touch the same dwte element. Block (x, y)
 * owns channels [y kThreads, (y + 1) kThreads) of its runs, one channel per thread. A run can be
 * long (a byte-level model's space is ~15% of its tokens: thousands of rows per step), so its
 * rows are taken kThreads at a time into shared memory and each thread then issues its loads
 * for several rows ahead of the additions (unrolled): the additions stay in order, the loads
 * overlap instead of waiting on each other. */
__global__ void __launch_bounds__(kThreads)
    embedding_dwte_kernel(const float *dout, const int32_t *tok_sorted, const int32_t *row_sorted,
                          float *dwte, int64_t N, int64_t C)
{
    __shared__ int32_t srow[kThreads];
    __shared__ int scount;
    const int t = threadIdx.x;
    const int64_t c = (int64_t)blockIdx.y * kThreads + t;
    for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
        const int32_t tok = tok_sorted[i];
        if (i > 0 && tok_sorted[i - 1] == tok) continue; /* not the head of its run (block-wide) */
        float *e = dwte + (int64_t)tok * C;
        float acc = c < C ? e[c] : 0.0f;
        for (int64_t u0 = i;; u0 += kThreads) {
            __syncthreads(); /* the previous chunk's srow and scount are no longer read */
            const int64_t u = u0 + t;
            /* The run is a prefix of the chunk: exactly one thread sees where it ends. */
            const bool in = u < N && tok_sorted[u] == tok;
            const bool next_in = u + 1 < N && t + 1 < kThreads && tok_sorted[u + 1] == tok;
            srow[t] = in ? row_sorted[u] : 0;
            if (t == 0 && !in) scount = 0;
            if (in && !next_in) scount = t + 1;
            __syncthreads();
            const int n = scount;
            if (c < C) {
#pragma unroll 8
                for (int k = 0; k < n; k++)
                    acc += dout[(int64_t)srow[k] * C + c];
            }
            if (n < kThreads) break;
        }
        if (c < C) e[c] = acc;
    }
}

/* ---- attention --------------------------------------------------------------------------------
 * All three kernels use 256 threads as a 16 x 16 grid: ty (tid / 16) owns RM consecutive rows of
 * the block's own tile (BM = 16 RM query rows, or key rows in the dK/dV kernel), tx (tid % 16)
 * owns columns tx + 16 c of the streamed tile (BN rows) and head channels tx + 16 k. A row's 16
 * threads are one half-warp, so row maxima and sums are shuffles. Tiles live in shared memory
 * with rows of D + 1 floats (D: the head size hs rounded up to 32, 64 or 128, zero-padded) so
 * that 16 threads reading 16 different rows at one channel hit 16 different banks.
 *
 * Forward (one block per (b, h, query tile)): FlashAttention-2's online softmax over key tiles;
 * stores out and lse = max + log(sum) per row. Decode runs the same kernel with one query (RM =
 * 1) and the same key tiling, and the per-row arithmetic uses explicitly rounded intrinsics
 * (__fmaf_rn etc., which the compiler never contracts differently), so decode reproduces the
 * forward's row `pos` bit for bit, as the ref and cpu backends do.
 *
 * Backward: P = exp(S scale - lse) is recomputed from q, k and the saved lse. Kernel 1 (per query
 * tile, looping over keys) computes, in one pass, D_i = sum_j P_ij dP_ij with dP = dO V^T, and
 * dQ_i = scale sum_j P_ij (dP_ij - D_i) K_j as scale (sum_j P_ij dP_ij K_j - D_i sum_j P_ij K_j);
 * it saves D. Kernel 2 (per key tile, looping over queries) computes dV_j = sum_i P_ij dO_i and
 * dK_j = scale sum_i P_ij (dP_ij - D_i) Q_i. Each gradient element is written by one thread
 * exactly once: no atomics, no zeroing. */

/* rows x D tile from global (row r at element off + r * rstride of src, float32 or bf16: qkv is
 * a compute copy; rows >= nrows and channels >= hs are zero) into shared memory with rows of
 * D + 1. */
template <int D>
__device__ __forceinline__ void load_tile(float *dst, int rows, const void *src, bool bf16,
                                          int64_t off, int64_t rstride, int nrows, int hs)
{
    for (int e = threadIdx.x; e < rows * D; e += kAttThreads) {
        int r = e / D, d = e % D;
        dst[r * (D + 1) + d] =
            (r < nrows && d < hs) ? cval_get(src, off + (int64_t)r * rstride + d, bf16) : 0.0f;
    }
}

template <int D, int RM, int BN> constexpr size_t att_fwd_smem()
{
    return sizeof(float) * ((16 * RM + 2 * BN) * (D + 1) + 16 * RM * (BN + 1));
}

template <int D, int RM, int BN>
__global__ void __launch_bounds__(kAttThreads) attention_forward_kernel(AttFwdArgs a)
{
    constexpr int BM = 16 * RM, LD = D + 1, LDP = BN + 1, CN = BN / 16, DN = D / 16;
    extern __shared__ float smem[];
    float *sQ = smem, *sK = sQ + BM * LD, *sV = sK + BN * LD, *sP = sV + BN * LD;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    /* Later query tiles see more keys: start them first so the short ones fill in at the end. */
    const int l0 = (gridDim.y - 1 - blockIdx.y) * BM;
    const int64_t qo = b * a.q_bstride + (int64_t)h * a.hs,
                  kvo = b * a.kv_bstride + (int64_t)h * a.hs;
    load_tile<D>(sQ, BM, a.q, a.in_bf16, qo + l0 * a.q_rstride, a.q_rstride, a.nq - l0, a.hs);

    float m[RM], l[RM], acc[RM][DN];
    int tpos[RM];
    for (int i = 0; i < RM; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
        tpos[i] = a.qpos0 + l0 + ty * RM + i;
        for (int k = 0; k < DN; k++)
            acc[i][k] = 0.0f;
    }
    /* Keys past the tile's last position are masked for every row; past kv_end they are
     * loaded as zeros (decode's cache holds garbage after pos). */
    const int kv_end = min(a.qpos0 + l0 + BM, a.nkv);
    for (int k0 = 0; k0 < kv_end; k0 += BN) {
        __syncthreads(); /* the previous tile's sK, sV, sP are no longer read */
        const int64_t ko = kvo + (int64_t)k0 * a.kv_rstride;
        load_tile<D>(sK, BN, a.k, a.in_bf16, ko, a.kv_rstride, kv_end - k0, a.hs);
        load_tile<D>(sV, BN, a.v, a.in_bf16, ko, a.kv_rstride, kv_end - k0, a.hs);
        __syncthreads();
        float s[RM][CN];
        for (int i = 0; i < RM; i++)
            for (int c = 0; c < CN; c++)
                s[i][c] = 0.0f;
        for (int d = 0; d < D; d++) {
            float qv[RM], kv[CN];
            for (int i = 0; i < RM; i++)
                qv[i] = sQ[(ty * RM + i) * LD + d];
            for (int c = 0; c < CN; c++)
                kv[c] = sK[(tx + 16 * c) * LD + d];
            for (int i = 0; i < RM; i++)
                for (int c = 0; c < CN; c++)
                    s[i][c] = __fmaf_rn(qv[i], kv[c], s[i][c]);
        }
        for (int i = 0; i < RM; i++) {
            float mx = -INFINITY;
            for (int c = 0; c < CN; c++) {
                int j = k0 + tx + 16 * c;
                s[i][c] = j > tpos[i] ? -INFINITY : __fmul_rn(s[i][c], a.scale);
                mx = fmaxf(mx, s[i][c]);
            }
            const float mnew = fmaxf(m[i], group16_max(mx));
            /* Key 0 is in the first tile and visible to every row, so mnew is finite from
             * then on; the guards only keep a fully masked row free of inf - inf. */
            const float alpha = mnew == -INFINITY ? 1.0f : expf(__fsub_rn(m[i], mnew));
            float rs = 0.0f;
            for (int c = 0; c < CN; c++) {
                float p = s[i][c] == -INFINITY ? 0.0f : expf(__fsub_rn(s[i][c], mnew));
                sP[(ty * RM + i) * LDP + tx + 16 * c] = p;
                rs = __fadd_rn(rs, p);
            }
            l[i] = __fmaf_rn(l[i], alpha, group16_sum(rs));
            m[i] = mnew;
            for (int k = 0; k < DN; k++)
                acc[i][k] = __fmul_rn(acc[i][k], alpha);
        }
        __syncthreads();
        for (int j = 0; j < BN; j++) {
            float pv[RM], vv[DN];
            for (int i = 0; i < RM; i++)
                pv[i] = sP[(ty * RM + i) * LDP + j];
            for (int k = 0; k < DN; k++)
                vv[k] = sV[j * LD + tx + 16 * k];
            for (int i = 0; i < RM; i++)
                for (int k = 0; k < DN; k++)
                    acc[i][k] = __fmaf_rn(pv[i], vv[k], acc[i][k]);
        }
    }
    for (int i = 0; i < RM; i++) {
        int row = l0 + ty * RM + i;
        if (row >= a.nq) continue;
        const int64_t o = b * a.o_bstride + row * a.o_rstride + (int64_t)h * a.hs;
        for (int k = 0; k < DN; k++) {
            int d = tx + 16 * k;
            if (d < a.hs) cval_put(a.out, o + d, __fdiv_rn(acc[i][k], l[i]), a.cbf16);
        }
        if (a.lse && tx == 0) a.lse[(int64_t)bh * a.nq + row] = m[i] + logf(l[i]);
    }
}

template <int D, int RM, int BN> constexpr size_t att_bwd_smem()
{
    return sizeof(float) * (2 * (16 * RM + BN) * (D + 1) + 2 * 16 * RM * (BN + 1) + 2 * BN);
}

/* Blocks per SM kernel 1 is compiled for (0: ptxas's choice). At D = 32 it fits 4 in 64
 * registers without spilling (and 4 x 42 KiB of shared memory); left to itself, ptxas takes 77
 * for the run-time choice of dQ's element type, and only 3 blocks fit. */
constexpr int dq_min_blocks(int D)
{
    return D == 32 ? 4 : 0;
}

/* Kernel 1: one block per (b, h, query tile): D_i and dQ (see the comment above). */
template <int D, int RM, int BN>
__global__ void __launch_bounds__(kAttThreads, dq_min_blocks(D))
    attention_backward_dq_kernel(AttBwdArgs a)
{
    constexpr int BM = 16 * RM, LD = D + 1, LDP = BN + 1, CN = BN / 16, DN = D / 16;
    extern __shared__ float smem[];
    float *sQ = smem, *sO = sQ + BM * LD, *sK = sO + BM * LD, *sV = sK + BN * LD;
    float *sP = sV + BN * LD, *sPdP = sP + BM * LDP;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BM, T = a.T;
    const int64_t C3 = 3 * (int64_t)a.C;
    const int64_t qo = (int64_t)b * T * C3 + (int64_t)h * a.hs;
    const int64_t ob = (int64_t)b * T * a.C + (int64_t)h * a.hs; /* dout's head: a compute copy */
    load_tile<D>(sQ, BM, a.qkv, a.cbf16, qo + q0 * C3, C3, T - q0, a.hs);
    load_tile<D>(sO, BM, a.dout, a.cbf16, ob + (int64_t)q0 * a.C, a.C, T - q0, a.hs);

    float lse[RM], dpart[RM], accA[RM][DN], accB[RM][DN];
    int tpos[RM];
    for (int i = 0; i < RM; i++) {
        tpos[i] = q0 + ty * RM + i;
        lse[i] = tpos[i] < T ? a.lse[(int64_t)bh * T + tpos[i]] : 0.0f;
        dpart[i] = 0.0f;
        for (int k = 0; k < DN; k++)
            accA[i][k] = accB[i][k] = 0.0f;
    }
    const int kv_end = min(q0 + BM, T);
    for (int k0 = 0; k0 < kv_end; k0 += BN) {
        __syncthreads();
        load_tile<D>(sK, BN, a.qkv, a.cbf16, qo + a.C + k0 * C3, C3, kv_end - k0, a.hs);
        load_tile<D>(sV, BN, a.qkv, a.cbf16, qo + 2 * a.C + k0 * C3, C3, kv_end - k0, a.hs);
        __syncthreads();
        float s[RM][CN], dp[RM][CN];
        for (int i = 0; i < RM; i++)
            for (int c = 0; c < CN; c++)
                s[i][c] = dp[i][c] = 0.0f;
        for (int d = 0; d < D; d++) {
            float qv[RM], ov[RM], kv[CN], vv[CN];
            for (int i = 0; i < RM; i++) {
                qv[i] = sQ[(ty * RM + i) * LD + d];
                ov[i] = sO[(ty * RM + i) * LD + d];
            }
            for (int c = 0; c < CN; c++) {
                kv[c] = sK[(tx + 16 * c) * LD + d];
                vv[c] = sV[(tx + 16 * c) * LD + d];
            }
            for (int i = 0; i < RM; i++)
                for (int c = 0; c < CN; c++) {
                    s[i][c] = __fmaf_rn(qv[i], kv[c], s[i][c]);
                    dp[i][c] = __fmaf_rn(ov[i], vv[c], dp[i][c]);
                }
        }
        for (int i = 0; i < RM; i++)
            for (int c = 0; c < CN; c++) {
                int j = k0 + tx + 16 * c;
                float p = j > tpos[i] ? 0.0f : expf(__fmul_rn(s[i][c], a.scale) - lse[i]);
                float pdp = p * dp[i][c];
                dpart[i] += pdp;
                sP[(ty * RM + i) * LDP + tx + 16 * c] = p;
                sPdP[(ty * RM + i) * LDP + tx + 16 * c] = pdp;
            }
        __syncthreads();
        for (int j = 0; j < BN; j++) {
            float pv[RM], pd[RM], kv[DN];
            for (int i = 0; i < RM; i++) {
                pv[i] = sP[(ty * RM + i) * LDP + j];
                pd[i] = sPdP[(ty * RM + i) * LDP + j];
            }
            for (int k = 0; k < DN; k++)
                kv[k] = sK[j * LD + tx + 16 * k];
            for (int i = 0; i < RM; i++)
                for (int k = 0; k < DN; k++) {
                    accA[i][k] = fmaf(pd[i], kv[k], accA[i][k]);
                    accB[i][k] = fmaf(pv[i], kv[k], accB[i][k]);
                }
        }
    }
    for (int i = 0; i < RM; i++) {
        const float Di = group16_sum(dpart[i]); /* all lanes, before any lane leaves */
        if (tpos[i] >= T) continue;
        const int64_t dq = ((int64_t)b * T + tpos[i]) * C3 + (int64_t)h * a.hs;
        for (int k = 0; k < DN; k++) {
            int d = tx + 16 * k;
            if (d < a.hs)
                cval_put(a.dqkv, dq + d, a.scale * (accA[i][k] - Di * accB[i][k]), a.cbf16);
        }
        if (tx == 0) a.dsum[(int64_t)bh * T + tpos[i]] = Di;
    }
}

/* Kernel 2: one block per (b, h, key tile), looping over the query tiles that can see it. */
template <int D, int RM, int BN>
__global__ void __launch_bounds__(kAttThreads) attention_backward_dkv_kernel(AttBwdArgs a)
{
    constexpr int BM = 16 * RM, LD = D + 1, LDP = BN + 1, CN = BN / 16, DN = D / 16;
    extern __shared__ float smem[];
    float *sK = smem, *sV = sK + BM * LD, *sQ = sV + BM * LD, *sO = sQ + BN * LD;
    float *sP = sO + BN * LD, *sdS = sP + BM * LDP, *sL = sdS + BM * LDP, *sD = sL + BN;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    const int k0 = blockIdx.y * BM, T = a.T; /* early key tiles have the most work: first */
    const int64_t C3 = 3 * (int64_t)a.C;
    const int64_t qo = (int64_t)b * T * C3 + (int64_t)h * a.hs;
    const int64_t ob = (int64_t)b * T * a.C + (int64_t)h * a.hs; /* dout's head: a compute copy */
    load_tile<D>(sK, BM, a.qkv, a.cbf16, qo + a.C + k0 * C3, C3, T - k0, a.hs);
    load_tile<D>(sV, BM, a.qkv, a.cbf16, qo + 2 * a.C + k0 * C3, C3, T - k0, a.hs);

    float accK[RM][DN], accV[RM][DN];
    int kpos[RM];
    for (int i = 0; i < RM; i++) {
        kpos[i] = k0 + ty * RM + i;
        for (int k = 0; k < DN; k++)
            accK[i][k] = accV[i][k] = 0.0f;
    }
    /* Queries before k0 see none of these keys. */
    for (int q0 = k0; q0 < T; q0 += BN) {
        __syncthreads();
        load_tile<D>(sQ, BN, a.qkv, a.cbf16, qo + q0 * C3, C3, T - q0, a.hs);
        load_tile<D>(sO, BN, a.dout, a.cbf16, ob + (int64_t)q0 * a.C, a.C, T - q0, a.hs);
        for (int r = threadIdx.x; r < BN; r += kAttThreads) {
            bool ok = q0 + r < T;
            sL[r] = ok ? a.lse[(int64_t)bh * T + q0 + r] : 0.0f;
            sD[r] = ok ? a.dsum[(int64_t)bh * T + q0 + r] : 0.0f;
        }
        __syncthreads();
        float s[RM][CN], dp[RM][CN];
        for (int i = 0; i < RM; i++)
            for (int c = 0; c < CN; c++)
                s[i][c] = dp[i][c] = 0.0f;
        for (int d = 0; d < D; d++) {
            float kv[RM], vv[RM], qv[CN], ov[CN];
            for (int i = 0; i < RM; i++) {
                kv[i] = sK[(ty * RM + i) * LD + d];
                vv[i] = sV[(ty * RM + i) * LD + d];
            }
            for (int c = 0; c < CN; c++) {
                qv[c] = sQ[(tx + 16 * c) * LD + d];
                ov[c] = sO[(tx + 16 * c) * LD + d];
            }
            /* q.k in the same operand order and rounding as the forward and kernel 1 */
            for (int i = 0; i < RM; i++)
                for (int c = 0; c < CN; c++) {
                    s[i][c] = __fmaf_rn(qv[c], kv[i], s[i][c]);
                    dp[i][c] = __fmaf_rn(ov[c], vv[i], dp[i][c]);
                }
        }
        for (int i = 0; i < RM; i++)
            for (int c = 0; c < CN; c++) {
                int u = tx + 16 * c, t = q0 + u;
                float p =
                    (t < kpos[i] || t >= T) ? 0.0f : expf(__fmul_rn(s[i][c], a.scale) - sL[u]);
                sP[(ty * RM + i) * LDP + u] = p;
                sdS[(ty * RM + i) * LDP + u] = p * (dp[i][c] - sD[u]);
            }
        __syncthreads();
        for (int u = 0; u < BN; u++) {
            float pv[RM], dsv[RM], qv[DN], ov[DN];
            for (int i = 0; i < RM; i++) {
                pv[i] = sP[(ty * RM + i) * LDP + u];
                dsv[i] = sdS[(ty * RM + i) * LDP + u];
            }
            for (int k = 0; k < DN; k++) {
                qv[k] = sQ[u * LD + tx + 16 * k];
                ov[k] = sO[u * LD + tx + 16 * k];
            }
            for (int i = 0; i < RM; i++)
                for (int k = 0; k < DN; k++) {
                    accV[i][k] = fmaf(pv[i], ov[k], accV[i][k]);
                    accK[i][k] = fmaf(dsv[i], qv[k], accK[i][k]);
                }
        }
    }
    for (int i = 0; i < RM; i++) {
        if (kpos[i] >= T) continue;
        const int64_t dk = ((int64_t)b * T + kpos[i]) * C3 + a.C + (int64_t)h * a.hs;
        for (int k = 0; k < DN; k++) {
            int d = tx + 16 * k;
            if (d < a.hs) {
                cval_put(a.dqkv, dk + d, a.scale * accK[i][k], a.cbf16);
                cval_put(a.dqkv, dk + a.C + d, accV[i][k], a.cbf16);
            }
        }
    }
}

/* Tile shapes per padded head size: shared memory stays under 99 KiB (the most sm_86/89 allow;
 * A100/H100 have more), 64-row query tiles where that fits. Decode must use the forward's BN. */
constexpr int kFwdRM = 4, kFwdBM = 16 * kFwdRM;
constexpr int kFwdBN32 = 64, kFwdBN64 = 64, kFwdBN128 = 32;

/* tensor_cores: the bf16 kernel (training and evaluation in runtime.precision "bf16"). */
void att_forward_dispatch(int hs, dim3 grid, bool decode, bool tensor_cores, cudaStream_t st,
                          const AttFwdArgs &a)
{
    /* Head sizes up to 64 (GPT-2's; 15 and 27 KiB of shared memory). At 128 the backward's
     * dK/dV kernel would hold 128 registers per thread in its dK and dV accumulators alone (16
     * rows x 128 channels each per warp), more than it can keep without spilling, so that size
     * keeps the fp32 kernels in both directions (their lse must match). */
    if (tensor_cores && !decode && hs <= kTcMaxHead) {
        tp_cuda_attention_forward_tc(hs, (int)grid.x, st, a); /* its own query tiles */
        return;
    }
    if (hs <= 32) {
        if (decode)
            launch_att(attention_forward_kernel<32, 1, kFwdBN32>, grid,
                       att_fwd_smem<32, 1, kFwdBN32>(), st, a);
        else
            launch_att(attention_forward_kernel<32, kFwdRM, kFwdBN32>, grid,
                       att_fwd_smem<32, kFwdRM, kFwdBN32>(), st, a);
    } else if (hs <= 64) {
        if (decode)
            launch_att(attention_forward_kernel<64, 1, kFwdBN64>, grid,
                       att_fwd_smem<64, 1, kFwdBN64>(), st, a);
        else
            launch_att(attention_forward_kernel<64, kFwdRM, kFwdBN64>, grid,
                       att_fwd_smem<64, kFwdRM, kFwdBN64>(), st, a);
    } else {
        if (decode)
            launch_att(attention_forward_kernel<128, 1, kFwdBN128>, grid,
                       att_fwd_smem<128, 1, kFwdBN128>(), st, a);
        else
            launch_att(attention_forward_kernel<128, kFwdRM, kFwdBN128>, grid,
                       att_fwd_smem<128, kFwdRM, kFwdBN128>(), st, a);
    }
}

template <int D, int RM, int BN>
void att_backward_launch(int B_NH, int T, cudaStream_t st, const AttBwdArgs &a)
{
    constexpr int BM = 16 * RM;
    dim3 grid((unsigned)B_NH, (unsigned)((T + BM - 1) / BM));
    launch_att(attention_backward_dq_kernel<D, RM, BN>, grid, att_bwd_smem<D, RM, BN>(), st, a);
    launch_att(attention_backward_dkv_kernel<D, RM, BN>, grid, att_bwd_smem<D, RM, BN>(), st, a);
}

/* Shapes the attention kernels index with int, and the head sizes they support. */
void att_check(int64_t B, int64_t T, int64_t C, int64_t NH)
{
    if (C / NH > 128) fatal("CUDA attention supports head sizes up to 128");
    /* the tensor-core kernels' grids are 1-D: heads x 64-row tiles, and D_i's a warp per row */
    if (B * NH > INT_MAX || 3 * C > INT_MAX || T > INT_MAX - 128 || (T + 31) / 32 > kMaxBlocks ||
        B * NH * ((T + kTcBM - 1) / kTcBM) > INT_MAX || (B * NH * T + 7) / 8 > INT_MAX)
        fatal("CUDA attention: shape too large");
}

} // namespace

/* ---- entry points --------------------------------------------------------------------------- */

extern "C" void tp_cuda_embedding_forward(tp_backend_t *be, const int32_t *tokens, const float *wte,
                                          const float *wpe, float *out, int64_t B, int64_t T,
                                          int64_t C)
{
    int64_t N = B * T;
    if (N <= 0 || C <= 0) return;
    embedding_forward_kernel<<<blocks_for(N, 1), kThreads, 0, tp_cuda_stream(be)>>>(
        tokens, wte, wpe, out, N, T, C);
    TP_CUDA_LAUNCHED();
}

extern "C" void tp_cuda_embedding_backward(tp_backend_t *be, const float *dout,
                                           const int32_t *tokens, float *dwte, float *dwpe,
                                           int64_t B, int64_t T, int64_t C)
{
    int64_t N = B * T;
    if (N <= 0 || C <= 0) return;
    if (N > INT_MAX) fatal("CUDA embedding backward: more than 2^31 tokens");
    if ((C + kThreads - 1) / kThreads > kMaxBlocks)
        fatal("CUDA embedding backward: more than 65535 x 256 channels");
    cudaStream_t st = tp_cuda_stream(be);
    dim3 gpe(blocks_for(C, kThreads), blocks_for(T, 1));
    embedding_dwpe_kernel<<<gpe, kThreads, 0, st>>>(dout, dwpe, B, T, C);
    TP_CUDA_LAUNCHED();

    /* dwte: the vocabulary size is not known here, so bucket rows by token with a stable radix
     * sort of (token, row) instead of a count over V. */
    size_t temp_bytes = 0;
    TP_CUDA_FATAL(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, (const int32_t *)nullptr,
                                                  (int32_t *)nullptr, (const int32_t *)nullptr,
                                                  (int32_t *)nullptr, (int)N, 0, 32, st));
    int32_t *ibuf = (int32_t *)tp_cuda_scratch(be, 0, 3 * (size_t)N * sizeof(int32_t));
    void *temp = tp_cuda_scratch(be, 1, temp_bytes > 0 ? temp_bytes : 1);
    int32_t *tok_sorted = ibuf, *rows = ibuf + N, *row_sorted = ibuf + 2 * N;
    iota_kernel<<<blocks_for(N, kThreads), kThreads, 0, st>>>(rows, N);
    TP_CUDA_LAUNCHED();
    TP_CUDA_FATAL(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, tokens, tok_sorted, rows,
                                                  row_sorted, (int)N, 0, 32, st));
    dim3 gte(blocks_for(N, 1), blocks_for(C, kThreads));
    embedding_dwte_kernel<<<gte, kThreads, 0, st>>>(dout, tok_sorted, row_sorted, dwte, N, C);
    TP_CUDA_LAUNCHED();
}

extern "C" int64_t tp_cuda_attention_att_numel(tp_backend_t *be, int64_t B, int64_t T, int64_t NH)
{
    (void)be;
    return B * NH * T; /* the log-sum-exp of each query row */
}

extern "C" void tp_cuda_attention_forward(tp_backend_t *be, const tp_cval_t *qkv, tp_cval_t *out,
                                          float *att, int64_t B, int64_t T, int64_t C, int64_t NH)
{
    if (B <= 0 || T <= 0 || NH <= 0 || C / NH <= 0) return;
    att_check(B, T, C, NH);
    int hs = (int)(C / NH);
    AttFwdArgs a;
    a.cbf16 = a.in_bf16 = tp_cuda_precision(be) == TP_PREC_BF16; /* qkv: a compute copy */
    const size_t eb = a.in_bf16 ? 2 : 4;
    a.q = qkv;
    a.k = (const char *)qkv + C * eb;
    a.v = (const char *)qkv + 2 * C * eb;
    a.out = out;
    a.lse = att;
    a.q_bstride = a.kv_bstride = T * 3 * C;
    a.q_rstride = a.kv_rstride = 3 * C;
    a.o_bstride = T * C;
    a.o_rstride = C;
    a.NH = (int)NH;
    a.hs = hs;
    a.nq = a.nkv = (int)T;
    a.qpos0 = 0;
    a.scale = 1.0f / sqrtf((float)hs);
    a.vec = att_vec8_ok(a.q, a.k, a.v, 3 * C, T * 3 * C, hs); /* the tensor-core kernel's */
    a.pairs = att_pairs_ok(out, C, hs);
    dim3 grid((unsigned)(B * NH), (unsigned)((T + kFwdBM - 1) / kFwdBM));
    att_forward_dispatch(hs, grid, false, a.cbf16, tp_cuda_stream(be), a);
}

extern "C" void tp_cuda_attention_backward(tp_backend_t *be, const tp_cval_t *dout,
                                           const tp_cval_t *qkv, const float *att,
                                           const tp_cval_t *out, tp_cval_t *dqkv, int64_t B,
                                           int64_t T, int64_t C, int64_t NH)
{
    if (B <= 0 || T <= 0 || NH <= 0 || C / NH <= 0) return;
    att_check(B, T, C, NH);
    int hs = (int)(C / NH);
    AttBwdArgs a;
    a.qkv = qkv;
    a.dout = dout;
    a.lse = att;
    a.out = out;
    a.dqkv = dqkv;
    a.dsum = (float *)tp_cuda_scratch(be, 0, (size_t)(B * NH * T) * sizeof(float));
    a.cbf16 = tp_cuda_precision(be) == TP_PREC_BF16;
    a.dout_c = nullptr;
    a.vec = a.pairs = false;
    a.T = (int)T;
    a.C = (int)C;
    a.NH = (int)NH;
    a.hs = hs;
    a.scale = 1.0f / sqrtf((float)hs);
    cudaStream_t st = tp_cuda_stream(be);
    int bnh = (int)(B * NH);
    /* bf16 with head sizes up to 64: the tensor-core kernels (D, dQ, dK/dV), as in the forward
     * (whose lse they must match: both form S from bf16 q and k). */
    if (a.cbf16 && hs <= kTcMaxHead) {
        a.dout_c = cval_bf16(dout); /* copied into shared memory as it is */
        a.vec = att_vec8_ok(qkv, (const char *)qkv + 2 * C, a.dout_c, 3 * C, C, hs);
        a.pairs = att_pairs_ok(dqkv, 3 * C, hs);
        tp_cuda_attention_backward_tc(hs, bnh, (int)T, st, a);
        return;
    }
    if (hs <= 32)
        att_backward_launch<32, 4, 32>(bnh, (int)T, st, a);
    else if (hs <= 64)
        att_backward_launch<64, 4, 32>(bnh, (int)T, st, a);
    else
        att_backward_launch<128, 2, 32>(bnh, (int)T, st, a);
}

extern "C" void tp_cuda_attention_decode(tp_backend_t *be, const float *q, const float *kcache,
                                         const float *vcache, tp_cval_t *out, int64_t B,
                                         int64_t pos, int64_t Tmax, int64_t C, int64_t NH)
{
    if (B <= 0 || NH <= 0 || C / NH <= 0 || pos < 0) return;
    att_check(B, pos + 1, C, NH);
    int hs = (int)(C / NH);
    AttFwdArgs a;
    a.q = q;
    a.k = kcache;
    a.v = vcache;
    a.out = out;
    a.lse = nullptr;
    a.q_bstride = C;
    a.q_rstride = 0; /* one query row */
    a.kv_bstride = Tmax * C;
    a.kv_rstride = C;
    a.o_bstride = C;
    a.o_rstride = 0;
    a.NH = (int)NH;
    a.hs = hs;
    a.nq = 1;
    a.nkv = (int)(pos + 1);
    a.qpos0 = (int)pos;
    a.scale = 1.0f / sqrtf((float)hs);
    a.vec = a.pairs = false; /* decode runs the fp32 kernel, which reads neither */
    a.in_bf16 = false;       /* the caches are float32 */
    a.cbf16 = tp_cuda_precision(be) == TP_PREC_BF16;
    att_forward_dispatch(hs, dim3((unsigned)(B * NH), 1), true, false, tp_cuda_stream(be), a);
}
