/* Attention on tensor cores for runtime.precision "bf16" (head sizes up to 64, GPT-2's):
 * FlashAttention-2's forward and backward with every product on mma.sync m16n8k16 (bf16 inputs,
 * fp32 accumulation) and the softmax, D and dS in fp32, all in registers: the fragment layout of
 * an m16n8 accumulator is, pair by pair, the layout of an m16k16 A operand, so S turns into P (and
 * dP into dS) without going through shared memory. qkv is a compute copy (bf16 here, as the qkv
 * product wrote it), and so is dout (the output projection's input gradient, as that product
 * wrote it); tiles of both are copied into shared memory with cp.async, the next tile landing while
 * the current one is used, and read as mma operands with ldmatrix. out and dqkv are compute copies
 * (bf16 in this precision), written once per element from the fp32 accumulators. Checked in CI on
 * the CPU by tests/emu (the GPU op test's tolerances), whose mma is emulated from the PTX ISA's
 * fragment layout. */
#include "attention_impl.h"
#include "cuda_ops.h"

#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace
{

constexpr int kTcThreads = 128; /* 4 warps: 32 query rows each in the forward, 16 in the backward */

/* Block order: a 1-D grid of B * NH heads x ntiles tiles, a head's tiles consecutive and its
 * longest first (causal tiles differ in length up to ntiles times: the last query tile sees every
 * key, the first key tile every query, so last_longest says which end that is). Blocks in flight
 * at once then share few heads, whose q, k, v (about 1 MB per head at T = 1024) stay in L2 while
 * all of that head's tiles re-read them; with the heads varying fastest, every tile row would
 * sweep the whole qkv array (150 MB per GPT-2 layer, three times L2) through HBM again. */
struct TcBlock {
    int bh, tile;
};
__device__ __forceinline__ TcBlock tc_block(int ntiles, bool last_longest)
{
    const int i = (int)(blockIdx.x % ntiles);
    return {(int)(blockIdx.x / ntiles), last_longest ? ntiles - 1 - i : i};
}

/* Blocks per SM a kernel's registers are bounded for on sm_90 (228 KB of shared memory per SM,
 * room for every bound used here). On sm_80 (164 KB) and sm_86/89 (100 KB) shared memory allows
 * fewer blocks of some kernels, so there a bound would only cost spills: ptxas's choice (0).
 * (The 128-query forward at head size 64, 55 KB, runs 2 blocks per SM on sm_80 and sm_90 but one
 * on sm_86/89: consumer cards are not this runtime's target.) */
constexpr int tc_min_blocks(int on_sm90)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    (void)on_sm90;
    return 0;
#else
    return on_sm90;
#endif
}

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

/* ---- ldmatrix ----------------------------------------------------------------------------------
 * ldmatrix.m8n8.x4 (PTX ISA, "Warp-level matrix load instruction: ldmatrix"): lane l gives the
 * address of row l % 8 of 8x8 matrix l / 8 (8 bf16, 16-byte aligned); register i of lane l gets
 * matrix i's row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1, or with .trans its column l / 4,
 * rows 2 (l % 4) and 2 (l % 4) + 1: exactly an mma operand fragment, so B operands that are
 * the transpose of a row-major tile (V in P V, K in dS K, dO and Q in the dK/dV products) come
 * from the same tile without a transposed copy. One instruction yields four registers. */
template <bool Trans>
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const __nv_bfloat16 *p)
{
#ifdef TP_EMU_CUDA_RUNTIME_H
    vec_check(p, 16, "ldmatrix row address not 16-byte aligned");
    const unsigned lane = emu_lane();
    memcpy(emu_lane_slot(lane), &p, sizeof p);
    emu_warp_sync(0xffffffffu);
    auto elem = [](unsigned src, unsigned col) {
        const __nv_bfloat16 *row;
        memcpy(&row, emu_lane_slot(src), sizeof row);
        uint16_t v;
        memcpy(&v, row + col, sizeof v);
        return (uint32_t)v;
    };
    for (unsigned i = 0; i < 4; i++) {
        const unsigned q = lane / 4, t2 = 2 * (lane % 4);
        r[i] = Trans ? elem(8 * i + t2, q) | elem(8 * i + t2 + 1, q) << 16
                     : elem(8 * i + q, t2) | elem(8 * i + q, t2 + 1) << 16;
    }
    emu_warp_sync(0xffffffffu);
#else
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    if (Trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
#endif
}

/* ---- cp.async ----------------------------------------------------------------------------------
 * 16 bytes global -> shared without passing through registers (.cg: cached in L2 only), zero-
 * filled when src_bytes is 0; a thread's copies form a group at commit, and wait<N> returns once
 * all but its N most recent groups have landed (then a barrier makes them every thread's). The
 * emulation lands them only at that wait, so a tile read before it shows. */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes)
{
#ifdef TP_EMU_CUDA_RUNTIME_H
    vec_check(dst, 16, "cp.async to shared memory not 16-byte aligned");
    if (src_bytes) vec_check(src, 16, "cp.async from global memory not 16-byte aligned");
    emu_cp_async16(dst, src, src_bytes);
#else
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    /* "memory": the compiler must not move shared-memory accesses across the copy (CUTLASS's
     * form); the barriers around every tile make that so today, the clobber keeps it so. */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d),
                 "l"(__cvta_generic_to_global(src)), "r"(src_bytes)
                 : "memory");
#endif
}

__device__ __forceinline__ void cp_async_commit()
{
#ifdef TP_EMU_CUDA_RUNTIME_H
    emu_cp_async_commit();
#else
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int N> __device__ __forceinline__ void cp_async_wait()
{
#ifdef TP_EMU_CUDA_RUNTIME_H
    emu_cp_async_wait(N);
#else
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

/* ---- shared-memory tiles -----------------------------------------------------------------------
 * Row-major bf16 tiles, 64 rows x D, rows padded by 8 elements (LD = D + 8: 16 bytes more than a
 * multiple of 128): the 8 row addresses of an ldmatrix phase then fall on 8 different groups of 4
 * banks. Every operand, transposed or not, is read from such a tile with ldmatrix. */
template <int D> struct Tile {
    static constexpr int LD = D + 8, elems = 64 * LD;
    static constexpr size_t rows64 = sizeof(__nv_bfloat16) * elems; /* a 64 x D tile */
};

/* 64 rows x D of bf16 global memory (row stride rstride, head channels 0..hs-1; zero past nrows
 * (>= 1) and hs) into a tile. With vec (hs, rstride and src's address multiples of 8 elements:
 * GPT-2's heads) as cp.async copies of 16 bytes, 8 per row, which the caller commits and waits
 * for; otherwise element by element, done when the caller's barrier is. */
template <int D>
__device__ __forceinline__ void load_tile(__nv_bfloat16 *dst, const __nv_bfloat16 *src,
                                          int64_t rstride, int nrows, int hs, bool vec)
{
    using L = Tile<D>;
    if (vec) {
        for (int e = threadIdx.x; e < 64 * (D / 8); e += kTcThreads) {
            const int r = e / (D / 8), d = 8 * (e % (D / 8));
            const bool in = r < nrows && d < hs;
            cp_async16(dst + r * L::LD + d, in ? src + (int64_t)r * rstride + d : src, in ? 16 : 0);
        }
        return;
    }
    for (int e = threadIdx.x; e < 64 * D; e += kTcThreads) {
        const int r = e / D, d = e % D;
        dst[r * L::LD + d] =
            (r < nrows && d < hs) ? src[(int64_t)r * rstride + d] : __float2bfloat16(0.0f);
    }
}

/* One step of a double-buffered tile loop: start copying the next tile into the other buffer
 * (load(start, buffer)) when there is one, then wait for this tile's copies and make them every
 * thread's. The loop ends each step with a barrier, so the other buffer is free by then. */
template <typename Load>
__device__ __forceinline__ void tile_step(bool more, int next, int cur, Load load)
{
    if (more) {
        load(next, cur ^ 1);
        cp_async_commit();
        cp_async_wait<1>();
    } else {
        cp_async_wait<0>();
    }
    __syncthreads();
}

/* Tile i of double-buffered tiles starting at b (computed, not indexed from an array of
 * pointers, which would live in local memory). */
template <int D> __device__ __forceinline__ __nv_bfloat16 *buf_at(__nv_bfloat16 *b, int i)
{
    return b + i * Tile<D>::elems;
}

/* The lane's ldmatrix row address for four 8x8 matrices at (row0, col0) of a row-major tile with
 * row stride ld: matrix i at rows row0 + 8 (i & rbit ? 1 : 0), columns col0 + 8 (i & cbit ? 1 : 0).
 * A operands take rbit 1, cbit 2 (a[0..3] = rows +0/+8 by k +0/+8); B operands from rows of
 * keys (non-transposed) take rbit 2, cbit 1 (two n-tiles of 8, each k +0/+8); B operands
 * transposed take rbit 1, cbit 2 (two n-tiles, each k +0/+8, k running down the rows). */
template <int rbit, int cbit>
__device__ __forceinline__ const __nv_bfloat16 *ldsm_addr(const __nv_bfloat16 *tile, int ld,
                                                          int row0, int col0)
{
    const int l = threadIdx.x % 32, i = l / 8;
    return tile + (row0 + l % 8 + ((i & rbit) ? 8 : 0)) * ld + col0 + ((i & cbit) ? 8 : 0);
}

/* The A fragments of the warp's 16 rows (from row r0) of a row-major tile, for each k-step of 16
 * over its D columns. */
template <int D>
__device__ __forceinline__ void load_a(uint32_t (&a)[D / 16][4], const __nv_bfloat16 *tile, int r0)
{
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
        ldsm_x4<false>(a[kk], ldsm_addr<1, 2>(tile, Tile<D>::LD, r0, 16 * kk));
}

/* s[i][j] (j = 0..7: columns 8j..8j+7) = A B^T over D columns for each of M 16-row blocks of A
 * (the warp's fragments a[i]), B the 64 rows of a row-major tile (the keys in Q K^T):
 * b = row(8j + g)[2t..], a non-transposed load. Each B fragment serves all M blocks: with M = 2
 * a warp reads half as much shared memory per mma, which is what bounds these kernels. */
template <int D, int M>
__device__ __forceinline__ void mm_abt(float (&s)[M][8][4], const uint32_t (&a)[M][D / 16][4],
                                       const __nv_bfloat16 *rows)
{
#pragma unroll
    for (int i = 0; i < M; i++)
#pragma unroll
        for (int j = 0; j < 8; j++)
            s[i][j][0] = s[i][j][1] = s[i][j][2] = s[i][j][3] = 0.0f;
#pragma unroll
    for (int jp = 0; jp < 4; jp++)
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t b[4];
            ldsm_x4<false>(b, ldsm_addr<2, 1>(rows, Tile<D>::LD, 16 * jp, 16 * kk));
#pragma unroll
            for (int i = 0; i < M; i++) {
                mma_bf16(s[i][2 * jp], a[i][kk], {b[0], b[1]});
                mma_bf16(s[i][2 * jp + 1], a[i][kk], {b[2], b[3]});
            }
        }
}

/* The same for one 16-row block (the backward's warps). */
template <int D>
__device__ __forceinline__ void mm_abt(float (&s)[8][4], const uint32_t (&a)[D / 16][4],
                                       const __nv_bfloat16 *rows)
{
    mm_abt<D, 1>(reinterpret_cast<float(&)[1][8][4]>(s),
                 reinterpret_cast<const uint32_t(&)[1][D / 16][4]>(a), rows);
}

/* mm_abt with A's fragments read from shared memory as they are used (M 16-row blocks from row r0
 * of a row-major tile) instead of held in registers: the backward kernels' register budget. */
template <int D, int M>
__device__ __forceinline__ void mm_abt_smem(float (&s)[M][8][4], const __nv_bfloat16 *atile, int r0,
                                            const __nv_bfloat16 *rows)
{
#pragma unroll
    for (int i = 0; i < M; i++)
#pragma unroll
        for (int j = 0; j < 8; j++)
            s[i][j][0] = s[i][j][1] = s[i][j][2] = s[i][j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        uint32_t a[M][4];
#pragma unroll
        for (int i = 0; i < M; i++)
            ldsm_x4<false>(a[i], ldsm_addr<1, 2>(atile, Tile<D>::LD, r0 + 16 * i, 16 * kk));
#pragma unroll
        for (int jp = 0; jp < 4; jp++) {
            uint32_t b[4];
            ldsm_x4<false>(b, ldsm_addr<2, 1>(rows, Tile<D>::LD, 16 * jp, 16 * kk));
#pragma unroll
            for (int i = 0; i < M; i++) {
                mma_bf16(s[i][2 * jp], a[i], {b[0], b[1]});
                mma_bf16(s[i][2 * jp + 1], a[i], {b[2], b[3]});
            }
        }
    }
}

/* The same for one 16-row block (the dK/dV kernel's warps). */
template <int D>
__device__ __forceinline__ void mm_abt_smem(float (&s)[8][4], const __nv_bfloat16 *atile, int r0,
                                            const __nv_bfloat16 *rows)
{
    mm_abt_smem<D, 1>(reinterpret_cast<float(&)[1][8][4]>(s), atile, r0, rows);
}

/* acc[i][n] += P X over a 64-wide k range for each of M 16-row blocks: P given as accumulator-
 * layout values p[i][8][4] (columns 8j..8j+7), X the row-major 64 x D tile (k down its rows: V,
 * K, dO or Q), read transposed; each B fragment serves all M blocks. */
template <int D, int M>
__device__ __forceinline__ void mm_pv(float (&acc)[M][D / 8][4], const float (&p)[M][8][4],
                                      const __nv_bfloat16 *x)
{
#pragma unroll
    for (int s16 = 0; s16 < 4; s16++) {
        uint32_t a[M][4];
#pragma unroll
        for (int i = 0; i < M; i++) {
            a[i][0] = pack_bf16(p[i][2 * s16][0], p[i][2 * s16][1]);
            a[i][1] = pack_bf16(p[i][2 * s16][2], p[i][2 * s16][3]);
            a[i][2] = pack_bf16(p[i][2 * s16 + 1][0], p[i][2 * s16 + 1][1]);
            a[i][3] = pack_bf16(p[i][2 * s16 + 1][2], p[i][2 * s16 + 1][3]);
        }
#pragma unroll
        for (int np = 0; np < D / 16; np++) {
            uint32_t b[4];
            ldsm_x4<true>(b, ldsm_addr<1, 2>(x, Tile<D>::LD, 16 * s16, 16 * np));
#pragma unroll
            for (int i = 0; i < M; i++) {
                mma_bf16(acc[i][2 * np], a[i], {b[0], b[1]});
                mma_bf16(acc[i][2 * np + 1], a[i], {b[2], b[3]});
            }
        }
    }
}

/* The same for one 16-row block (the backward's warps). */
template <int D>
__device__ __forceinline__ void mm_pv(float (&acc)[D / 8][4], const float (&p)[8][4],
                                      const __nv_bfloat16 *x)
{
    mm_pv<D, 1>(reinterpret_cast<float(&)[1][D / 8][4]>(acc),
                reinterpret_cast<const float(&)[1][8][4]>(p), x);
}

/* A warp's 16 x D accumulator (D/8 tiles of m16n8) set to zero. */
template <int D> __device__ __forceinline__ void zero_acc(float (&acc)[D / 8][4])
{
#pragma unroll
    for (int n = 0; n < D / 8; n++)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

/* Row r (0: g, 1: g + 8) of a warp's accumulator, times mul, into the bf16 row at dst (channels
 * below hs; out, dq, dk and dv are bf16 compute copies wherever these kernels run). A lane holds
 * channel pairs 2t, 2t+1, stored as one 4-byte write where pairs allows it (vec: hs and the row
 * offsets multiples of 8 elements). */
template <int D, bool Pairs>
__device__ __forceinline__ void acc_store(const float (&acc)[D / 8][4], int r, int hs, float mul,
                                          __nv_bfloat16 *dst)
{
    const int t = threadIdx.x % 4;
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
        const int d = 8 * n + 2 * t;
        const float v0 = acc[n][2 * r] * mul, v1 = acc[n][2 * r + 1] * mul;
        if (Pairs) {
            if (d >= hs) break; /* hs even: d + 1 < hs too */
            vec_check(dst + d, 4, "bf16 pair store to an address not 4-byte aligned");
            *reinterpret_cast<uint32_t *>(dst + d) = pack_bf16(v0, v1);
        } else {
            if (d < hs) dst[d] = __float2bfloat16(v0);
            if (d + 1 < hs) dst[d + 1] = __float2bfloat16(v1);
        }
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

/* ---- softmax arithmetic ------------------------------------------------------------------------
 * At head size 64 each score takes 8 mma.sync per 16 x 8 tile of scores, two per lane per mma: the
 * per-score arithmetic, not the tensor cores, sets the pace unless it is a handful of instructions.
 * So, as in FlashAttention-2: exponentials are base 2 with the softmax scale folded into one fused
 * multiply-add (exp(s scale - m) = 2^(s scale log2(e) - m log2(e))), the running max is kept in
 * raw score units (scale > 0 keeps the order), and the causal mask is applied only to the tiles
 * that cross the diagonal or the end of the sequence. */
constexpr float kLog2e = 1.4426950408889634f;

/* 2^x: one MUFU.EX2 (ex2.approx.ftz; its relative error is about 2^-22). Results below 2^-126
 * flush to zero: a probability that small is nothing next to the row's largest, which is 1.
 * 2^-inf = 0, the masked scores' probability. */
__device__ __forceinline__ float exp2_ftz(float x)
{
#ifdef TP_EMU_CUDA_RUNTIME_H
    const float r = exp2f(x);
    return r < 1.17549435e-38f ? 0.0f : r;
#else
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
    return r;
#endif
}

/* ---- forward -----------------------------------------------------------------------------------
 * One block per (batch x head, 128-query tile); warp w owns query rows 32w..32w+31, two 16-row
 * blocks, and keeps their Q fragments, online-softmax state (max and sum) and O accumulators in
 * registers. Per 64-key tile: S = Q K^T, mask where the tile crosses the warp's diagonal, rescale,
 * P in bf16 straight from S's registers, O += P V (V's B fragments by transposing loads of its
 * row-major tile). Two row blocks per warp let every K and V fragment read from shared memory
 * serve two mma instead of one: at one row block per warp, ldmatrix's shared-memory bandwidth
 * (4 cycles of an SM per x4 load, one per two mma) and not the tensor cores set the pace; and a
 * 128-row tile halves the K and V bytes copied from L2 per query. (FlashAttention-2's forward at
 * head size 64 has the same shape: 4 warps, 128 query rows.) */
constexpr int kTcFwdRowBlocks = 2;                                 /* 16-row blocks per warp */
constexpr int kTcFwdBM = (kTcThreads / 32) * 16 * kTcFwdRowBlocks; /* query rows per block: 128 */
static_assert(kTcFwdBM % 64 == 0, "the Q tile is whole 64-row tiles");

template <int D> struct FwdSmem {
    /* Q (kTcFwdBM rows), then K and V twice: the next key tile lands while this one is used */
    static constexpr int q_tiles = kTcFwdBM / 64;
    static constexpr size_t q = 0, k = q_tiles * Tile<D>::rows64,
                            v = (q_tiles + 2) * Tile<D>::rows64;
    static constexpr size_t bytes = (q_tiles + 4) * Tile<D>::rows64;
};

/* Blocks per SM the 128-query kernels (forward and dQ) are compiled for on sm_90 (tc_min_blocks):
 * at D = 64, 2 (8 warps), which leaves ptxas up to 255 registers for the two row blocks' S, P (or
 * dP) and accumulators: the forward takes 252-254 without spilling, dQ 255 with 8 bytes; at
 * D = 32, 3 (165-168 registers; left to itself ptxas takes 250 there, and only 2 blocks fit). */
constexpr int tc128_min_blocks(int D)
{
    return tc_min_blocks(D == 64 ? 2 : 3);
}

template <int D, bool Pairs>
__global__ void __launch_bounds__(kTcThreads, tc128_min_blocks(D))
    attention_forward_tc_kernel(AttFwdArgs a)
{
    constexpr int M = kTcFwdRowBlocks;
    using S = FwdSmem<D>;
    extern __shared__ __align__(128) uint8_t tc_smem[];
    __nv_bfloat16 *sQ = (__nv_bfloat16 *)(tc_smem + S::q);
    __nv_bfloat16 *const sK0 = (__nv_bfloat16 *)(tc_smem + S::k); /* and the next tile */
    __nv_bfloat16 *const sV0 = (__nv_bfloat16 *)(tc_smem + S::v); /* and the next tile */
    const int warp = threadIdx.x / 32, g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
    const TcBlock blk = tc_block((a.nq + kTcFwdBM - 1) / kTcFwdBM, true);
    const int bh = blk.bh, b = bh / a.NH, h = bh % a.NH;
    const int l0 = blk.tile * kTcFwdBM;
    const __nv_bfloat16 *qb = (const __nv_bfloat16 *)a.q + b * a.q_bstride + (int64_t)h * a.hs;
    const __nv_bfloat16 *kb = (const __nv_bfloat16 *)a.k + b * a.kv_bstride + (int64_t)h * a.hs;
    const __nv_bfloat16 *vb = (const __nv_bfloat16 *)a.v + b * a.kv_bstride + (int64_t)h * a.hs;
    const int kv_end = min(a.qpos0 + l0 + kTcFwdBM, a.nkv);
    auto load_kv = [&](int k0, int buf) {
        load_tile<D>(buf_at<D>(sK0, buf), kb + (int64_t)k0 * a.kv_rstride, a.kv_rstride,
                     kv_end - k0, a.hs, a.vec);
        load_tile<D>(buf_at<D>(sV0, buf), vb + (int64_t)k0 * a.kv_rstride, a.kv_rstride,
                     kv_end - k0, a.hs, a.vec);
    };
#pragma unroll
    for (int qt = 0; qt < S::q_tiles; qt++) { /* past nq: zero rows, from no address past it */
        const int r0 = l0 + 64 * qt;
        load_tile<D>(buf_at<D>(sQ, qt), r0 < a.nq ? qb + (int64_t)r0 * a.q_rstride : qb,
                     a.q_rstride, a.nq - r0, a.hs, a.vec);
    }
    load_kv(0, 0);
    cp_async_commit();
    uint32_t qa[M][D / 16][4];

    /* The warp's first row's position, and a row's offset from it: block i, half r (rows g and
     * g + 8 of the block) is row 16 i + 8 r + g. */
    const int wpos = a.qpos0 + l0 + 16 * M * warp;
    /* m: each row's max raw score (q . k, unscaled); l: this lane's part of its sum */
    float m[M][2], l[M][2], o[M][D / 8][4];
#pragma unroll
    for (int i = 0; i < M; i++) {
        m[i][0] = m[i][1] = -INFINITY;
        l[i][0] = l[i][1] = 0.0f;
        zero_acc<D>(o[i]);
    }
    const float sl2 = a.scale * kLog2e;
    for (int k0 = 0, it = 0; k0 < kv_end; k0 += kTcBN, it++) {
        const int cur = it & 1;
        tile_step(k0 + kTcBN < kv_end, k0 + kTcBN, cur, load_kv);
        if (it == 0)
#pragma unroll
            for (int i = 0; i < M; i++)
                load_a<D>(qa[i], sQ, 16 * (M * warp + i));
        /* A tile wholly after the warp's last row adds nothing (every score masked): its warps
         * only keep the barriers (the condition is the same for the whole warp). */
        if (k0 <= wpos + 16 * M - 1) {
            float s[M][8][4];
            mm_abt<D, M>(s, qa, buf_at<D>(sK0, cur));
            /* Keys after the warp's first row, or past the end: mask. */
            if (k0 + kTcBN - 1 > wpos || k0 + kTcBN > a.nkv) {
#pragma unroll
                for (int i = 0; i < M; i++)
#pragma unroll
                    for (int j = 0; j < 8; j++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int key = k0 + 8 * j + 2 * t + (e & 1);
                            const int pos = wpos + 16 * i + 8 * (e >> 1) + g;
                            if (key > pos || key >= a.nkv) s[i][j][e] = -INFINITY;
                        }
            }
#pragma unroll
            for (int i = 0; i < M; i++) {
                float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
                for (int j = 0; j < 8; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        mx[e >> 1] = fmaxf(mx[e >> 1], s[i][j][e]);
                float alpha[2], ms[2]; /* ms: the max in log2 units, 0 while no key seen */
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    const float mnew = fmaxf(m[i][r], quad_max(mx[r]));
                    ms[r] = mnew == -INFINITY ? 0.0f : mnew * sl2;
                    alpha[r] = exp2_ftz(m[i][r] * sl2 - ms[r]); /* 0 for the row's first keys */
                    m[i][r] = mnew;
                }
                float rs[2] = {0.0f, 0.0f};
#pragma unroll
                for (int j = 0; j < 8; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const float p = exp2_ftz(fmaf(s[i][j][e], sl2, -ms[e >> 1]));
                        s[i][j][e] = p;
                        rs[e >> 1] += p;
                    }
#pragma unroll
                for (int r = 0; r < 2; r++)
                    l[i][r] = l[i][r] * alpha[r] + rs[r];
#pragma unroll
                for (int n = 0; n < D / 8; n++) {
                    o[i][n][0] *= alpha[0];
                    o[i][n][1] *= alpha[0];
                    o[i][n][2] *= alpha[1];
                    o[i][n][3] *= alpha[1];
                }
            }
            mm_pv<D, M>(o, s, buf_at<D>(sV0, cur));
        }
        __syncthreads(); /* every warp is done with this tile before it is overwritten */
    }
#pragma unroll
    for (int i = 0; i < M; i++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const float lsum = quad_sum(l[i][r]);
            const int row = l0 + 16 * (M * warp + i) + 8 * r + g;
            if (row >= a.nq) continue;
            const int64_t out = b * a.o_bstride + row * a.o_rstride + (int64_t)h * a.hs;
            acc_store<D, Pairs>(o[i], r, a.hs, 1.0f / lsum, (__nv_bfloat16 *)a.out + out);
            if (a.lse && t == 0) a.lse[(int64_t)bh * a.nq + row] = m[i][r] * a.scale + logf(lsum);
        }
}

/* ---- backward ----------------------------------------------------------------------------------
 * FlashAttention-2's backward, P, dP, D and dS in fp32 (dS = P (dP - D) is formed before
 * rounding, so no bf16 value carries a cancellation). 128 threads:
 *   kernel 0 (attention_dsum_kernel): D_i = dO_i . O_i from the forward's output as stored (a
 *     compute copy, bf16 here: O's rounding, 2^-9 relative, reaches D, as in FlashAttention-2,
 *     which reads its bf16 O too; recomputing O would cost a pass over K and V);
 *   kernel 1, per 128-query tile: over the key tiles it sees, S = Q K^T and dP = dO V^T, then
 *     dQ += scale dS K; each warp owns 32 query rows;
 *   kernel 2, per 64-key tile: over the query tiles that see it, S^T = K Q^T and dP^T = V dO^T,
 *     then dV += P^T dO and dK += dS^T Q; each warp owns 16 keys (dK and dV for 32 would not
 *     fit in registers beside S^T and dP^T).
 * Operands that are the transpose of a tile come from it by transposing loads (ldsm_x4<true>).
 * Warps keep their accumulators in registers. No atomics: every element is written once, so the
 * result is the same on every run. */

/* D_i for every (batch, head, position), one warp each, summed in fp32 from dout as it is (bf16:
 * the output projection's input gradient, a compute copy): the same dO as dP is formed from, so
 * sum_j P_ij dP_ij = D_i holds up to the products' rounding (FlashAttention-2 reads its bf16 dO
 * for both too). */
__global__ void __launch_bounds__(256) attention_dsum_kernel(AttBwdArgs a, int64_t rows)
{
    const int lane = threadIdx.x % 32;
    const int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    if (w >= rows) return; /* rows = B * NH * T; the whole warp leaves together */
    const int64_t t = w % a.T, bh = w / a.T, b = bh / a.NH, h = bh % a.NH;
    const int64_t off = (b * a.T + t) * a.C + h * a.hs;
    float s = 0.0f;
    for (int d = lane; d < a.hs; d += 32)
        s += cval_get(a.dout_c + off + d) * cval_get(a.out, off + d, a.cbf16);
    for (int o = 16; o > 0; o /= 2)
        s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) a.dsum[bh * a.T + t] = s;
}

/* The dQ kernel's shape, as the forward's: 128 query rows per block, 32 (two 16-row blocks) per
 * warp, so each K and V fragment read from shared memory serves two mma. Its A operands (Q and dO)
 * are read from shared memory per key tile rather than kept in registers, which the two row
 * blocks' S, dP and dQ fill. */
constexpr int kTcDqRowBlocks = 2;
constexpr int kTcDqBM = (kTcThreads / 32) * 16 * kTcDqRowBlocks;
static_assert(kTcDqBM % 64 == 0, "the Q and dO tiles are whole 64-row tiles");

template <int D> struct DqSmem {
    /* Q and dO (kTcDqBM rows each), then K and V twice (the next key tile lands while this one
     * is used) */
    static constexpr int q_tiles = kTcDqBM / 64;
    static constexpr size_t q = 0, dout = q_tiles * Tile<D>::rows64,
                            k = 2 * q_tiles * Tile<D>::rows64,
                            v = (2 * q_tiles + 2) * Tile<D>::rows64;
    /* and each row's lse (log2 units) and D */
    static constexpr size_t stat = (2 * q_tiles + 4) * Tile<D>::rows64;
    static constexpr size_t bytes = stat + sizeof(float) * 2 * kTcDqBM;
};

template <int D, bool Pairs>
__global__ void __launch_bounds__(kTcThreads, tc128_min_blocks(D))
    attention_backward_dq_tc_kernel(AttBwdArgs a)
{
    constexpr int M = kTcDqRowBlocks;
    using S = DqSmem<D>;
    extern __shared__ __align__(128) uint8_t tcb_smem[];
    __nv_bfloat16 *sQ = (__nv_bfloat16 *)(tcb_smem + S::q);
    __nv_bfloat16 *sdO = (__nv_bfloat16 *)(tcb_smem + S::dout);
    __nv_bfloat16 *const sK0 = (__nv_bfloat16 *)(tcb_smem + S::k); /* and the next tile */
    __nv_bfloat16 *const sV0 = (__nv_bfloat16 *)(tcb_smem + S::v); /* and the next tile */
    const int warp = threadIdx.x / 32, g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
    const TcBlock blk = tc_block((a.T + kTcDqBM - 1) / kTcDqBM, true);
    const int bh = blk.bh, b = bh / a.NH, h = bh % a.NH;
    const int q0 = blk.tile * kTcDqBM, T = a.T;
    const int64_t C3 = 3 * (int64_t)a.C;
    const __nv_bfloat16 *qb =
        (const __nv_bfloat16 *)a.qkv + (int64_t)b * T * C3 + (int64_t)h * a.hs;
    const __nv_bfloat16 *ob = a.dout_c + (int64_t)b * T * a.C + (int64_t)h * a.hs;
    const int kv_end = min(q0 + kTcDqBM, T);
    auto load_kv = [&](int k0, int buf) {
        load_tile<D>(buf_at<D>(sK0, buf), qb + a.C + k0 * C3, C3, kv_end - k0, a.hs, a.vec);
        load_tile<D>(buf_at<D>(sV0, buf), qb + 2 * a.C + k0 * C3, C3, kv_end - k0, a.hs, a.vec);
    };
#pragma unroll
    for (int qt = 0; qt < S::q_tiles; qt++) { /* past T: zero rows, from no address past it */
        const int r0 = q0 + 64 * qt;
        load_tile<D>(buf_at<D>(sQ, qt), r0 < T ? qb + (int64_t)r0 * C3 : qb, C3, T - r0, a.hs,
                     a.vec);
        load_tile<D>(buf_at<D>(sdO, qt), r0 < T ? ob + (int64_t)r0 * a.C : ob, a.C, T - r0, a.hs,
                     a.vec);
    }
    load_kv(0, 0);
    cp_async_commit();
    /* Each row's lse in log2 units and D, in shared memory rather than registers (which the
     * two row blocks' S, dP and dQ fill); published by the first tile's barrier. */
    float *sL = (float *)(tcb_smem + S::stat), *sD = sL + kTcDqBM;
    for (int i = threadIdx.x; i < kTcDqBM; i += kTcThreads) {
        const bool in = q0 + i < T;
        sL[i] = in ? a.lse[(int64_t)bh * T + q0 + i] * kLog2e : 0.0f;
        sD[i] = in ? a.dsum[(int64_t)bh * T + q0 + i] : 0.0f;
    }
    /* The warp's first row; block i, half r holds rows wrow + 16 i + 8 r + g. */
    const int wrow = q0 + 16 * M * warp;
    const float sl2 = a.scale * kLog2e;
    float dq[M][D / 8][4];
#pragma unroll
    for (int i = 0; i < M; i++)
        zero_acc<D>(dq[i]);
    for (int k0 = 0, it = 0; k0 < kv_end; k0 += kTcBN, it++) {
        const int cur = it & 1;
        tile_step(k0 + kTcBN < kv_end, k0 + kTcBN, cur, load_kv);
        /* A key tile wholly after the warp's rows adds nothing (the same for the whole warp). */
        if (k0 <= wrow + 16 * M - 1) {
            float s[M][8][4], dp[M][8][4];
            mm_abt_smem<D, M>(s, sQ, 16 * M * warp, buf_at<D>(sK0, cur));
            mm_abt_smem<D, M>(dp, sdO, 16 * M * warp, buf_at<D>(sV0, cur));
            /* Keys after one of the warp's rows (and, when T is not a multiple of 64, the keys
             * past T) only where the tile crosses the warp's diagonal. */
            const bool diag = k0 + kTcBN - 1 > wrow;
#pragma unroll
            for (int i = 0; i < M; i++)
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    const int row = 16 * (M * warp + i) + 8 * r + g; /* in the block's tile */
                    const float L = sL[row], Dr = sD[row];
#pragma unroll
                    for (int j = 0; j < 8; j++)
#pragma unroll
                        for (int e = 2 * r; e < 2 * r + 2; e++) {
                            const int key = k0 + 8 * j + 2 * t + (e & 1);
                            float p = exp2_ftz(fmaf(s[i][j][e], sl2, -L));
                            if (diag && key > q0 + row) p = 0.0f;
                            s[i][j][e] = p * (dp[i][j][e] - Dr); /* dS */
                        }
                }
            mm_pv<D, M>(dq, s, buf_at<D>(sK0, cur));
        }
        __syncthreads(); /* every warp is done with this tile before it is overwritten */
    }
#pragma unroll
    for (int i = 0; i < M; i++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int pos = wrow + 16 * i + 8 * r + g;
            if (pos >= T) continue;
            const int64_t dqr = ((int64_t)b * T + pos) * C3 + (int64_t)h * a.hs;
            acc_store<D, Pairs>(dq[i], r, a.hs, a.scale, (__nv_bfloat16 *)a.dqkv + dqr);
        }
}

template <int D> struct DkvSmem {
    /* K, V, then Q and dO twice, and the query tiles' lse and D twice (the next query tile lands
     * while this one is used) */
    static constexpr size_t k = 0, v = Tile<D>::rows64, q = 2 * Tile<D>::rows64,
                            dout = 4 * Tile<D>::rows64, stat = 6 * Tile<D>::rows64;
    static constexpr size_t bytes = stat + sizeof(float) * 2 * 2 * 64;
};

template <int D, bool Pairs>
__global__ void __launch_bounds__(kTcThreads, tc_min_blocks(3))
    attention_backward_dkv_tc_kernel(AttBwdArgs a)
{
    using S = DkvSmem<D>;
    extern __shared__ __align__(128) uint8_t tcb_smem[];
    __nv_bfloat16 *sK = (__nv_bfloat16 *)(tcb_smem + S::k);
    __nv_bfloat16 *sV = (__nv_bfloat16 *)(tcb_smem + S::v);
    __nv_bfloat16 *const sQ0 = (__nv_bfloat16 *)(tcb_smem + S::q);     /* and the next tile */
    __nv_bfloat16 *const sdO0 = (__nv_bfloat16 *)(tcb_smem + S::dout); /* and the next tile */
    float *stat = (float *)(tcb_smem + S::stat);                       /* [buffer][lse 64, D 64] */
    const int warp = threadIdx.x / 32, g = (threadIdx.x % 32) / 4, t = threadIdx.x % 4;
    const TcBlock blk = tc_block((a.T + kTcBN - 1) / kTcBN, false);
    const int bh = blk.bh, b = bh / a.NH, h = bh % a.NH;
    const int k0 = blk.tile * kTcBN, T = a.T;
    const int64_t C3 = 3 * (int64_t)a.C;
    const __nv_bfloat16 *base =
        (const __nv_bfloat16 *)a.qkv + (int64_t)b * T * C3 + (int64_t)h * a.hs;
    const __nv_bfloat16 *ob = a.dout_c + (int64_t)b * T * a.C + (int64_t)h * a.hs;
    /* Query tile q0 (its Q, dO, lse and D) into buffer buf; lse and D by plain stores, which the
     * barrier before their use publishes like the copies. */
    auto load_q = [&](int q0, int buf) {
        load_tile<D>(buf_at<D>(sQ0, buf), base + q0 * C3, C3, T - q0, a.hs, a.vec);
        load_tile<D>(buf_at<D>(sdO0, buf), ob + (int64_t)q0 * a.C, a.C, T - q0, a.hs, a.vec);
        for (int i = threadIdx.x; i < kTcBM; i += kTcThreads) {
            const bool in = q0 + i < T;
            stat[buf * 128 + i] = in ? a.lse[(int64_t)bh * T + q0 + i] * kLog2e : 0.0f;
            stat[buf * 128 + 64 + i] = in ? a.dsum[(int64_t)bh * T + q0 + i] : 0.0f;
        }
    };
    load_tile<D>(sK, base + a.C + k0 * C3, C3, T - k0, a.hs, a.vec);
    load_tile<D>(sV, base + 2 * a.C + k0 * C3, C3, T - k0, a.hs, a.vec);
    /* Query tiles start at multiples of 64 like key tiles: the first that sees key k0 is k0's. */
    load_q(k0, 0);
    cp_async_commit();
    const int kpos[2] = {k0 + 16 * warp + g, k0 + 16 * warp + g + 8};
    const float sl2 = a.scale * kLog2e;
    float dk[D / 8][4], dv[D / 8][4];
    zero_acc<D>(dk);
    zero_acc<D>(dv);
    for (int q0 = k0, it = 0; q0 < T; q0 += kTcBM, it++) {
        const int cur = it & 1;
        tile_step(q0 + kTcBM < T, q0 + kTcBM, cur, load_q);
        const float *sL = stat + cur * 128, *sD = sL + 64; /* lse in log2 units, and D */
        float st[8][4], dpt[8][4];                         /* keys x queries */
        mm_abt_smem<D>(st, sK, 16 * warp, buf_at<D>(sQ0, cur));
        mm_abt_smem<D>(dpt, sV, 16 * warp, buf_at<D>(sdO0, cur));
        /* Queries before a key only in the first query tile (the diagonal); queries past T only
         * in the last. */
        const bool edge = q0 == k0 || q0 + kTcBM > T;
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int c = 8 * j + 2 * t + e, i = q0 + c;
                const float L = sL[c], Dc = sD[c];
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    float p = exp2_ftz(fmaf(st[j][2 * r + e], sl2, -L));
                    if (edge && (kpos[r] > i || i >= T)) p = 0.0f;
                    st[j][2 * r + e] = p;                             /* P^T */
                    dpt[j][2 * r + e] = p * (dpt[j][2 * r + e] - Dc); /* dS^T */
                }
            }
        mm_pv<D>(dv, st, buf_at<D>(sdO0, cur));
        mm_pv<D>(dk, dpt, buf_at<D>(sQ0, cur));
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (kpos[r] >= T) continue;
        const int64_t dkv = ((int64_t)b * T + kpos[r]) * C3 + (int64_t)h * a.hs;
        acc_store<D, Pairs>(dk, r, a.hs, a.scale, (__nv_bfloat16 *)a.dqkv + dkv + a.C);
        acc_store<D, Pairs>(dv, r, a.hs, 1.0f, (__nv_bfloat16 *)a.dqkv + dkv + 2 * a.C);
    }
}

} // namespace

/* Launches for head size D, with the outputs stored in bf16 pairs (a.pairs) or one by one. */
template <int D, bool Pairs> static void forward_tc(dim3 grid, cudaStream_t st, const AttFwdArgs &a)
{
    launch_att(attention_forward_tc_kernel<D, Pairs>, grid, FwdSmem<D>::bytes, st, a, kTcThreads);
}

template <int D, bool Pairs>
static void backward_tc(int B_NH, int T, cudaStream_t st, const AttBwdArgs &a)
{
    /* tc_block's grids: heads x query tiles, heads x key tiles */
    const dim3 gq((unsigned)B_NH * (unsigned)((T + kTcDqBM - 1) / kTcDqBM));
    const dim3 gkv((unsigned)B_NH * (unsigned)((T + kTcBN - 1) / kTcBN));
    launch_att(attention_backward_dq_tc_kernel<D, Pairs>, gq, DqSmem<D>::bytes, st, a, kTcThreads);
    launch_att(attention_backward_dkv_tc_kernel<D, Pairs>, gkv, DkvSmem<D>::bytes, st, a,
               kTcThreads);
}

/* These kernels read and write bf16 only (acc_store, load_tile): a caller with float compute
 * copies would have its arrays misread and overwritten, so it is stopped here. */
static void require_bf16(bool bf16, const char *what)
{
    if (bf16) return;
    fprintf(stderr, "%s: %s on tensor cores takes bf16 compute copies only\n", __FILE__, what);
    exit(1);
}

void tp_cuda_attention_forward_tc(int hs, int B_NH, cudaStream_t st, const AttFwdArgs &a)
{
    require_bf16(a.in_bf16 && a.cbf16, "attention forward");
    const dim3 grid((unsigned)B_NH * (unsigned)((a.nq + kTcFwdBM - 1) / kTcFwdBM)); /* tc_block */
    auto launch = hs <= 32 ? (a.pairs ? forward_tc<32, true> : forward_tc<32, false>)
                           : (a.pairs ? forward_tc<64, true> : forward_tc<64, false>);
    launch(grid, st, a);
}

void tp_cuda_attention_backward_tc(int hs, int B_NH, int T, cudaStream_t st, const AttBwdArgs &a)
{
    require_bf16(a.cbf16, "attention backward");
    int64_t rows = (int64_t)B_NH * T;
    int64_t blocks = (rows * 32 + 255) / 256;
    attention_dsum_kernel<<<(unsigned)blocks, 256, 0, st>>>(a, rows);
    TP_CUDA_LAUNCHED();
    auto launch = hs <= 32 ? (a.pairs ? backward_tc<32, true> : backward_tc<32, false>)
                           : (a.pairs ? backward_tc<64, true> : backward_tc<64, false>);
    launch(B_NH, T, st, a);
}
