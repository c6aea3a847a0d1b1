/* Attention on tensor cores for runtime.precision "bf16" (head sizes up to 64, GPT-2's):
 * FlashAttention-2's forward and backward with every product on mma.sync m16n8k16 (bf16 inputs,
 * fp32 accumulation) and the softmax, D and dS in fp32, all in registers: the fragment layout of
 * an m16n8 accumulator is, pair by pair, the layout of an m16k16 A operand, so S turns into P (and
 * dP into dS) without going through shared memory. Inputs (qkv, dout) are fp32 and rounded to
 * bf16 as tiles are loaded; out and dqkv are compute copies (bf16 in this precision), written once
 * per element from the fp32 accumulators. Checked in CI on the CPU by tests/emu (the GPU op
 * test's tolerances), whose mma is emulated from the PTX ISA's fragment layout. */
#include "attention_impl.h"
#include "cuda_ops.h"

#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

namespace
{

constexpr int kTcThreads = 128; /* 4 warps, 16 rows of the 64-row tile each */

/* ---- mma.sync m16n8k16, bf16 x bf16 -> fp32 ----------------------------------------------------
 * With g = lane / 4 and t = lane % 4 (PTX ISA, "Matrix Fragments for mma.m16n8k16"):
 *   a[0] = A[g][2t, 2t+1]   a[1] = A[g+8][2t, 2t+1]   a[2] = A[g][2t+8, +9]   a[3] = A[g+8][2t+8,
 * +9] b[0] = B[2t, 2t+1][g]   b[1] = B[2t+8, 2t+9][g] c[0], c[1] = C[g][2t, 2t+1]   c[2], c[3] =
 * C[g+8][2t, 2t+1] Each 32-bit register holds two bf16, the lower index in the lower half. */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
#ifdef TP_EMU_CUDA_RUNTIME_H
    return (uint32_t)__float2bfloat16(lo).x | ((uint32_t)__float2bfloat16(hi).x << 16);
#else
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
#endif
}

/* Two adjacent bf16 of shared memory (p 4-byte aligned). */
__device__ __forceinline__ uint32_t ld_pair(const __nv_bfloat16 *p)
{
#ifdef TP_EMU_CUDA_RUNTIME_H
    uint32_t r;
    memcpy(&r, p, sizeof r);
    return r;
#else
    return *reinterpret_cast<const uint32_t *>(p);
#endif
}

#ifdef TP_EMU_CUDA_RUNTIME_H
/* The emulation: every lane publishes its registers in the warp's exchange slots and reads the
 * rows of A and columns of B it needs, in the layout above; products summed in k order. */
static inline float emu_bf16_lo(uint32_t r)
{
    uint32_t u = r << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline float emu_bf16_hi(uint32_t r)
{
    uint32_t u = r & 0xffff0000u;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
/* Publish two registers, collect pair q (k = 2q, 2q+1) of the lanes `src(q)`: out[i][2q..] from
 * register i of that lane. */
template <typename Src>
static inline void emu_gather(uint32_t r0, uint32_t r1, Src src, float (&out)[2][8])
{
    const unsigned lane = emu_lane();
    uint32_t mine[2] = {r0, r1};
    memcpy(emu_lane_slot(lane), mine, sizeof mine);
    emu_warp_sync(0xffffffffu);
    for (int q = 0; q < 4; q++) {
        uint32_t got[2];
        memcpy(got, emu_lane_slot(src(q)), sizeof got);
        for (int i = 0; i < 2; i++) {
            out[i][2 * q] = emu_bf16_lo(got[i]);
            out[i][2 * q + 1] = emu_bf16_hi(got[i]);
        }
    }
    emu_warp_sync(0xffffffffu);
}
#endif

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[2])
{
#ifdef TP_EMU_CUDA_RUNTIME_H
    const unsigned lane = emu_lane(), g = lane / 4, t = lane % 4;
    float lo[2][8], hi[2][8], b0[2][8], b1[2][8]; /* [row g or g+8][k], [k 0-7 or 8-15][k] */
    emu_gather(
        a[0], a[1], [&](int q) { return g * 4 + q; }, lo);
    emu_gather(
        a[2], a[3], [&](int q) { return g * 4 + q; }, hi);
    emu_gather(
        b[0], b[1], [&](int q) { return 2 * t * 4 + q; }, b0);
    emu_gather(
        b[0], b[1], [&](int q) { return (2 * t + 1) * 4 + q; }, b1);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            const float(&bc)[2][8] = j == 0 ? b0 : b1;
            float s = c[2 * i + j];
            for (int k = 0; k < 8; k++)
                s += lo[i][k] * bc[0][k];
            for (int k = 0; k < 8; k++)
                s += hi[i][k] * bc[1][k];
            c[2 * i + j] = s;
        }
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

/* ---- shared-memory tiles -----------------------------------------------------------------------
 * Row-major bf16 tiles with rows padded by 8 elements: a warp's fragment loads (row g, pair t)
 * then hit 32 different banks. A tile is 64 rows x D (LD) or, transposed, D rows x 64 (LDT). */
template <int D> struct Tile {
    static constexpr int LD = D + 8, LDT = 64 + 8;
    static constexpr size_t rows64 = sizeof(__nv_bfloat16) * 64 * LD; /* a 64 x D tile */
    static constexpr size_t trans = sizeof(__nv_bfloat16) * D * LDT;  /* a D x 64 tile */
};

/* 64 rows x D of fp32 global memory (row stride rstride, head channels 0..hs-1) into a bf16 tile
 * (zero past nrows and hs) and/or its transpose (either may be NULL). With vec (hs, rstride and
 * src's address multiples of 4 floats: GPT-2's heads) each thread reads 16 bytes at a time. */
template <int D>
__device__ __forceinline__ void load_tile(__nv_bfloat16 *dst, __nv_bfloat16 *dst_t,
                                          const float *src, int64_t rstride, int nrows, int hs,
                                          bool vec)
{
    using L = Tile<D>;
    if (vec) {
        for (int e = threadIdx.x; e < 64 * (D / 4); e += kTcThreads) {
            int r = e / (D / 4), d = 4 * (e % (D / 4));
            float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (r < nrows && d < hs) x = vec_load4(src + (int64_t)r * rstride + d);
            const float v[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
            for (int i = 0; i < 4; i++) {
                __nv_bfloat16 h = __float2bfloat16(v[i]);
                if (dst) dst[r * L::LD + d + i] = h;
                if (dst_t) dst_t[(d + i) * L::LDT + r] = h;
            }
        }
        return;
    }
    for (int e = threadIdx.x; e < 64 * D; e += kTcThreads) {
        int r = e / D, d = e % D;
        __nv_bfloat16 h =
            __float2bfloat16((r < nrows && d < hs) ? src[(int64_t)r * rstride + d] : 0.0f);
        if (dst) dst[r * L::LD + d] = h;
        if (dst_t) dst_t[d * L::LDT + r] = h;
    }
}

/* The A fragments of the warp's 16 rows (from row r0) of a row-major tile, for each k-step of 16
 * over its D columns. */
template <int D>
__device__ __forceinline__ void load_a(uint32_t (&a)[D / 16][4], const __nv_bfloat16 *tile, int r0)
{
    const int g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
    const __nv_bfloat16 *p0 = tile + (r0 + g) * Tile<D>::LD + 2 * t;
    const __nv_bfloat16 *p1 = p0 + 8 * Tile<D>::LD;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        a[kk][0] = ld_pair(p0 + 16 * kk);
        a[kk][1] = ld_pair(p1 + 16 * kk);
        a[kk][2] = ld_pair(p0 + 16 * kk + 8);
        a[kk][3] = ld_pair(p1 + 16 * kk + 8);
    }
}

/* s[j] (j = 0..NT-1: columns 8j..8j+7) = A B^T, A the warp's fragments (KS k-steps), B the rows
 * of a row-major tile with row stride ld: b[0] = B^T[2t..][g] = row(8j + g)[2t..]. */
template <int KS, int NT>
__device__ __forceinline__ void mm_abt(float (&s)[NT][4], const uint32_t (&a)[KS][4],
                                       const __nv_bfloat16 *rows, int ld)
{
    const int g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
#pragma unroll
    for (int j = 0; j < NT; j++) {
        s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
        const __nv_bfloat16 *p = rows + (8 * j + g) * ld + 2 * t;
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
            const uint32_t b[2] = {ld_pair(p + 16 * kk), ld_pair(p + 16 * kk + 8)};
            mma_bf16(s[j], a[kk], b);
        }
    }
}

/* mm_abt with A's fragments read from shared memory (rows r0.. of a row-major tile) as they are
 * used, instead of held in registers: the dK/dV kernel's register budget. */
template <int D>
__device__ __forceinline__ void mm_abt_smem(float (&s)[8][4], const __nv_bfloat16 *atile, int r0,
                                            const __nv_bfloat16 *rows)
{
    const int g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
    const __nv_bfloat16 *a0 = atile + (r0 + g) * Tile<D>::LD + 2 * t, *a1 = a0 + 8 * Tile<D>::LD;
#pragma unroll
    for (int j = 0; j < 8; j++)
        s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        const uint32_t a[4] = {ld_pair(a0 + 16 * kk), ld_pair(a1 + 16 * kk),
                               ld_pair(a0 + 16 * kk + 8), ld_pair(a1 + 16 * kk + 8)};
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const __nv_bfloat16 *p = rows + (8 * j + g) * Tile<D>::LD + 2 * t + 16 * kk;
            const uint32_t b[2] = {ld_pair(p), ld_pair(p + 8)};
            mma_bf16(s[j], a, b);
        }
    }
}

/* acc[n] += P V over a 64-wide k range: P given as accumulator-layout values p[8][4] (columns
 * 8j..8j+7), V^T as the rows of a transposed tile (row n = output column n, stride LDT). */
template <int D>
__device__ __forceinline__ void mm_pv(float (&acc)[D / 8][4], const float (&p)[8][4],
                                      const __nv_bfloat16 *vt)
{
    const int g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
#pragma unroll
    for (int s16 = 0; s16 < 4; s16++) {
        const uint32_t a[4] = {pack_bf16(p[2 * s16][0], p[2 * s16][1]),
                               pack_bf16(p[2 * s16][2], p[2 * s16][3]),
                               pack_bf16(p[2 * s16 + 1][0], p[2 * s16 + 1][1]),
                               pack_bf16(p[2 * s16 + 1][2], p[2 * s16 + 1][3])};
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
            const __nv_bfloat16 *q = vt + (8 * n + g) * Tile<D>::LDT + 16 * s16 + 2 * t;
            const uint32_t b[2] = {ld_pair(q), ld_pair(q + 8)};
            mma_bf16(acc[n], a, b);
        }
    }
}

/* A warp's 16 x D accumulator (D/8 tiles of m16n8) set to zero. */
template <int D> __device__ __forceinline__ void zero_acc(float (&acc)[D / 8][4])
{
#pragma unroll
    for (int n = 0; n < D / 8; n++)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

/* Row r (0: g, 1: g + 8) of a warp's accumulator, channel by channel below hs: put(d, value). */
template <int D, typename Put>
__device__ __forceinline__ void acc_row(const float (&acc)[D / 8][4], int r, int hs, Put put)
{
    const int t = threadIdx.x % 4;
#pragma unroll
    for (int n = 0; n < D / 8; n++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int d = 8 * n + 2 * t + e;
            if (d < hs) put(d, acc[n][2 * r + e]);
        }
}

/* Sum over the 4 lanes of a quad (the lanes holding one row of an accumulator). */
__device__ __forceinline__ float quad_sum(float v)
{
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
__device__ __forceinline__ float quad_max(float v)
{
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

/* ---- forward -----------------------------------------------------------------------------------
 * One block per (batch x head, 64-query tile); warp w owns query rows 16w..16w+15 and keeps its Q
 * fragments, the online-softmax state of its rows (max and sum) and its O accumulator in
 * registers. Per key tile: S = Q K^T, mask and scale, rescale, P in bf16 straight from S's
 * registers, O += P V (V transposed in shared memory for the B operand). */
template <int D> struct FwdSmem {
    static constexpr size_t q = 0, k = Tile<D>::rows64, vt = 2 * Tile<D>::rows64;
    static constexpr size_t bytes = vt + Tile<D>::trans;
};

/* Blocks per SM the forward is compiled for (0: ptxas's choice). At D = 64 that bound keeps it
 * at 128 registers (a few bytes of spill) and 4 blocks per SM; left to itself, ptxas takes 130
 * for the run-time choice of the output's element type, and only 3 blocks fit. */
constexpr int fwd_tc_min_blocks(int D)
{
    return D == 64 ? 4 : 0;
}

template <int D>
__global__ void __launch_bounds__(kTcThreads, fwd_tc_min_blocks(D))
    attention_forward_tc_kernel(AttFwdArgs a)
{
    using S = FwdSmem<D>;
    extern __shared__ __align__(128) uint8_t tc_smem[];
    __nv_bfloat16 *sQ = (__nv_bfloat16 *)(tc_smem + S::q), *sK = (__nv_bfloat16 *)(tc_smem + S::k);
    __nv_bfloat16 *sVt = (__nv_bfloat16 *)(tc_smem + S::vt);
    const int warp = threadIdx.x / 32, g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
    const int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    const int l0 = (gridDim.y - 1 - blockIdx.y) * kTcBM; /* longest tiles first */
    const float *qb = a.q + b * a.q_bstride + (int64_t)h * a.hs;
    const float *kb = a.k + b * a.kv_bstride + (int64_t)h * a.hs;
    const float *vb = a.v + b * a.kv_bstride + (int64_t)h * a.hs;
    load_tile<D>(sQ, nullptr, qb + l0 * a.q_rstride, a.q_rstride, a.nq - l0, a.hs, a.vec);
    __syncthreads();
    uint32_t qa[D / 16][4];
    load_a<D>(qa, sQ, 16 * warp);

    const int tpos[2] = {a.qpos0 + l0 + 16 * warp + g, a.qpos0 + l0 + 16 * warp + g + 8};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; /* l: this lane's part */
    float o[D / 8][4];
    zero_acc<D>(o);
    const int kv_end = min(a.qpos0 + l0 + kTcBM, a.nkv);
    for (int k0 = 0; k0 < kv_end; k0 += kTcBN) {
        __syncthreads(); /* every warp is done with the previous K and V */
        load_tile<D>(sK, nullptr, kb + (int64_t)k0 * a.kv_rstride, a.kv_rstride, kv_end - k0, a.hs,
                     a.vec);
        load_tile<D>(nullptr, sVt, vb + (int64_t)k0 * a.kv_rstride, a.kv_rstride, kv_end - k0, a.hs,
                     a.vec);
        __syncthreads();
        float s[8][4];
        mm_abt<D / 16, 8>(s, qa, sK, Tile<D>::LD);
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = k0 + 8 * j + 2 * t + (e & 1), r = e >> 1;
                const float x = key > tpos[r] || key >= a.nkv ? -INFINITY : s[j][e] * a.scale;
                s[j][e] = x;
                mx[r] = fmaxf(mx[r], x);
            }
        float alpha[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const float mnew = fmaxf(m[r], quad_max(mx[r]));
            alpha[r] = mnew == -INFINITY ? 1.0f : expf(m[r] - mnew);
            m[r] = mnew;
        }
        float rs[2] = {0.0f, 0.0f};
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = e >> 1;
                const float p = s[j][e] == -INFINITY ? 0.0f : expf(s[j][e] - m[r]);
                s[j][e] = p;
                rs[r] += p;
            }
#pragma unroll
        for (int r = 0; r < 2; r++)
            l[r] = l[r] * alpha[r] + rs[r];
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
            o[n][0] *= alpha[0];
            o[n][1] *= alpha[0];
            o[n][2] *= alpha[1];
            o[n][3] *= alpha[1];
        }
        mm_pv<D>(o, s, sVt);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const float lsum = quad_sum(l[r]);
        const int row = l0 + 16 * warp + g + 8 * r;
        if (row >= a.nq) continue;
        const int64_t out = b * a.o_bstride + row * a.o_rstride + (int64_t)h * a.hs;
        acc_row<D>(o, r, a.hs,
                   [&](int d, float v) { cval_put(a.out, out + d, v / lsum, a.cbf16); });
        if (a.lse && t == 0) a.lse[(int64_t)bh * a.nq + row] = m[r] + logf(lsum);
    }
}

/* ---- backward ----------------------------------------------------------------------------------
 * FlashAttention-2's backward, P, dP, D and dS in fp32 (dS = P (dP - D) is formed before
 * rounding, so no bf16 value carries a cancellation). 128 threads:
 *   kernel 0 (attention_dsum_kernel): D_i = dO_i . O_i from the forward's output as stored (a
 *     compute copy, bf16 here: O's rounding, 2^-9 relative, reaches D, as in FlashAttention-2,
 *     which reads its bf16 O too; recomputing O would cost a pass over K and V);
 *   kernel 1, per query tile: over the key tiles it sees, S = Q K^T and dP = dO V^T, then
 *     dQ += scale dS K (K transposed in shared memory);
 *   kernel 2, per key tile: over the query tiles that see it, S^T = K Q^T and dP^T = V dO^T,
 *     then dV += P^T dO and dK += dS^T Q (dO and Q transposed in shared memory).
 * Each warp owns 16 rows of the block's tile (queries in kernel 1, keys in kernel 2) and keeps
 * its accumulators in registers. No atomics: every element is written once, so the result is
 * the same on every run. */

/* D_i for every (batch, head, position), one warp each, summed in fp32. */
__global__ void __launch_bounds__(256) attention_dsum_kernel(AttBwdArgs a, int64_t rows)
{
    const int lane = threadIdx.x % 32;
    const int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    if (w >= rows) return; /* rows = B * NH * T; the whole warp leaves together */
    const int64_t t = w % a.T, bh = w / a.T, b = bh / a.NH, h = bh % a.NH;
    const int64_t off = (b * a.T + t) * a.C + h * a.hs;
    float s = 0.0f;
    for (int d = lane; d < a.hs; d += 32)
        s += a.dout[off + d] * cval_get(a.out, off + d, a.cbf16);
    for (int o = 16; o > 0; o /= 2)
        s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) a.dsum[bh * a.T + t] = s;
}

template <int D> struct DqSmem {
    static constexpr size_t q = 0, dout = Tile<D>::rows64, k = 2 * Tile<D>::rows64,
                            v = 3 * Tile<D>::rows64, kt = 4 * Tile<D>::rows64;
    static constexpr size_t bytes = kt + Tile<D>::trans;
};

template <int D>
__global__ void __launch_bounds__(kTcThreads) attention_backward_dq_tc_kernel(AttBwdArgs a)
{
    using S = DqSmem<D>;
    extern __shared__ __align__(128) uint8_t tcb_smem[];
    __nv_bfloat16 *sQ = (__nv_bfloat16 *)(tcb_smem + S::q);
    __nv_bfloat16 *sdO = (__nv_bfloat16 *)(tcb_smem + S::dout);
    __nv_bfloat16 *sK = (__nv_bfloat16 *)(tcb_smem + S::k);
    __nv_bfloat16 *sV = (__nv_bfloat16 *)(tcb_smem + S::v);
    __nv_bfloat16 *sKt = (__nv_bfloat16 *)(tcb_smem + S::kt);
    const int warp = threadIdx.x / 32, g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
    const int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * kTcBM, T = a.T;
    const int64_t C3 = 3 * (int64_t)a.C;
    const float *qb = a.qkv + (int64_t)b * T * C3 + (int64_t)h * a.hs;
    const float *ob = a.dout + (int64_t)b * T * a.C + (int64_t)h * a.hs;
    load_tile<D>(sQ, nullptr, qb + q0 * C3, C3, T - q0, a.hs, a.vec);
    load_tile<D>(sdO, nullptr, ob + (int64_t)q0 * a.C, a.C, T - q0, a.hs, a.vec);
    __syncthreads();
    uint32_t qa[D / 16][4], da[D / 16][4];
    load_a<D>(qa, sQ, 16 * warp);
    load_a<D>(da, sdO, 16 * warp);
    int tpos[2];
    float lse[2], Di[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        tpos[r] = q0 + 16 * warp + g + 8 * r;
        lse[r] = tpos[r] < T ? a.lse[(int64_t)bh * T + tpos[r]] : 0.0f;
        Di[r] = tpos[r] < T ? a.dsum[(int64_t)bh * T + tpos[r]] : 0.0f;
    }
    float dq[D / 8][4];
    zero_acc<D>(dq);
    const int kv_end = min(q0 + kTcBM, T);
    for (int k0 = 0; k0 < kv_end; k0 += kTcBN) {
        __syncthreads();
        load_tile<D>(sK, sKt, qb + a.C + k0 * C3, C3, kv_end - k0, a.hs, a.vec);
        load_tile<D>(sV, nullptr, qb + 2 * a.C + k0 * C3, C3, kv_end - k0, a.hs, a.vec);
        __syncthreads();
        float s[8][4], dp[8][4];
        mm_abt<D / 16, 8>(s, qa, sK, Tile<D>::LD);
        mm_abt<D / 16, 8>(dp, da, sV, Tile<D>::LD);
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = k0 + 8 * j + 2 * t + (e & 1), r = e >> 1;
                const float p = key > tpos[r] ? 0.0f : expf(s[j][e] * a.scale - lse[r]);
                s[j][e] = p * (dp[j][e] - Di[r]); /* dS */
            }
        mm_pv<D>(dq, s, sKt);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (tpos[r] >= T) continue;
        const int64_t dqr = ((int64_t)b * T + tpos[r]) * C3 + (int64_t)h * a.hs;
        acc_row<D>(dq, r, a.hs,
                   [&](int d, float v) { cval_put(a.dqkv, dqr + d, a.scale * v, a.cbf16); });
    }
}

template <int D> struct DkvSmem {
    static constexpr size_t k = 0, v = Tile<D>::rows64, q = 2 * Tile<D>::rows64,
                            dout = 3 * Tile<D>::rows64, qt = 4 * Tile<D>::rows64,
                            dot = qt + Tile<D>::trans, stat = dot + Tile<D>::trans;
    static constexpr size_t bytes = stat + sizeof(float) * 2 * 64;
};

template <int D>
__global__ void __launch_bounds__(kTcThreads, 3) attention_backward_dkv_tc_kernel(AttBwdArgs a)
{
    using S = DkvSmem<D>;
    extern __shared__ __align__(128) uint8_t tcb_smem[];
    __nv_bfloat16 *sK = (__nv_bfloat16 *)(tcb_smem + S::k);
    __nv_bfloat16 *sV = (__nv_bfloat16 *)(tcb_smem + S::v);
    __nv_bfloat16 *sQ = (__nv_bfloat16 *)(tcb_smem + S::q);
    __nv_bfloat16 *sdO = (__nv_bfloat16 *)(tcb_smem + S::dout);
    __nv_bfloat16 *sQt = (__nv_bfloat16 *)(tcb_smem + S::qt);
    __nv_bfloat16 *sdOt = (__nv_bfloat16 *)(tcb_smem + S::dot);
    float *sL = (float *)(tcb_smem + S::stat), *sD = sL + 64;
    const int warp = threadIdx.x / 32, g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
    const int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    const int k0 = (gridDim.y - 1 - blockIdx.y) * kTcBN, T = a.T;
    const int64_t C3 = 3 * (int64_t)a.C;
    const float *base = a.qkv + (int64_t)b * T * C3 + (int64_t)h * a.hs;
    const float *ob = a.dout + (int64_t)b * T * a.C + (int64_t)h * a.hs;
    load_tile<D>(sK, nullptr, base + a.C + k0 * C3, C3, T - k0, a.hs, a.vec);
    load_tile<D>(sV, nullptr, base + 2 * a.C + k0 * C3, C3, T - k0, a.hs, a.vec);
    __syncthreads();
    const int kpos[2] = {k0 + 16 * warp + g, k0 + 16 * warp + g + 8};
    float dk[D / 8][4], dv[D / 8][4];
    zero_acc<D>(dk);
    zero_acc<D>(dv);
    /* Query tiles start at multiples of 64 like key tiles: the first that sees key k0 is k0's. */
    for (int q0 = k0; q0 < T; q0 += kTcBM) {
        __syncthreads();
        load_tile<D>(sQ, sQt, base + q0 * C3, C3, T - q0, a.hs, a.vec);
        load_tile<D>(sdO, sdOt, ob + (int64_t)q0 * a.C, a.C, T - q0, a.hs, a.vec);
        for (int i = threadIdx.x; i < kTcBM; i += kTcThreads) {
            const bool in = q0 + i < T;
            sL[i] = in ? a.lse[(int64_t)bh * T + q0 + i] : 0.0f;
            sD[i] = in ? a.dsum[(int64_t)bh * T + q0 + i] : 0.0f;
        }
        __syncthreads();
        float st[8][4], dpt[8][4]; /* keys x queries */
        mm_abt_smem<D>(st, sK, 16 * warp, sQ);
        mm_abt_smem<D>(dpt, sV, 16 * warp, sdO);
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int c = 8 * j + 2 * t + (e & 1), i = q0 + c, r = e >> 1;
                const float p = kpos[r] > i || i >= T ? 0.0f : expf(st[j][e] * a.scale - sL[c]);
                st[j][e] = p;                        /* P^T */
                dpt[j][e] = p * (dpt[j][e] - sD[c]); /* dS^T */
            }
        mm_pv<D>(dv, st, sdOt);
        mm_pv<D>(dk, dpt, sQt);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (kpos[r] >= T) continue;
        const int64_t dkv = ((int64_t)b * T + kpos[r]) * C3 + (int64_t)h * a.hs;
        acc_row<D>(dk, r, a.hs,
                   [&](int d, float v) { cval_put(a.dqkv, dkv + a.C + d, a.scale * v, a.cbf16); });
        acc_row<D>(dv, r, a.hs,
                   [&](int d, float v) { cval_put(a.dqkv, dkv + 2 * a.C + d, v, a.cbf16); });
    }
}

} // namespace

void tp_cuda_attention_forward_tc(int hs, dim3 grid, cudaStream_t st, const AttFwdArgs &a)
{
    if (hs <= 32)
        launch_att(attention_forward_tc_kernel<32>, grid, FwdSmem<32>::bytes, st, a, kTcThreads);
    else
        launch_att(attention_forward_tc_kernel<64>, grid, FwdSmem<64>::bytes, st, a, kTcThreads);
}

void tp_cuda_attention_backward_tc(int hs, int B_NH, int T, cudaStream_t st, const AttBwdArgs &a)
{
    int64_t rows = (int64_t)B_NH * T;
    int64_t blocks = (rows * 32 + 255) / 256;
    attention_dsum_kernel<<<(unsigned)blocks, 256, 0, st>>>(a, rows);
    TP_CUDA_LAUNCHED();
    dim3 grid((unsigned)B_NH, (unsigned)((T + kTcBM - 1) / kTcBM));
    if (hs <= 32) {
        launch_att(attention_backward_dq_tc_kernel<32>, grid, DqSmem<32>::bytes, st, a, kTcThreads);
        launch_att(attention_backward_dkv_tc_kernel<32>, grid, DkvSmem<32>::bytes, st, a,
                   kTcThreads);
    } else {
        launch_att(attention_backward_dq_tc_kernel<64>, grid, DqSmem<64>::bytes, st, a, kTcThreads);
        launch_att(attention_backward_dkv_tc_kernel<64>, grid, DkvSmem<64>::bytes, st, a,
                   kTcThreads);
    }
}
