/* Attention on tensor cores for runtime.precision "bf16" (head sizes up to 64, GPT-2's): the
 * FlashAttention-2 forward and backward of kernels_transformer.cu with every product through
 * wmma (bf16 inputs, fp32 accumulation) and softmax, D and dS in fp32. Checked in CI on the CPU
 * by tests/emu (the GPU op test's tolerances). */
#include "attention_impl.h"
#include "cuda_ops.h"

#include <cuda_bf16.h>
#include <math.h>
#include <mma.h>
#include <stdint.h>

namespace
{

/* ---- attention forward on tensor cores (runtime.precision = "bf16") ---------------------------
 * The same FlashAttention-2 forward as attention_forward_kernel, with its two products on tensor
 * cores through wmma: S = Q K^T and O += P V with bf16 inputs and fp32 accumulation (the
 * precision's contract: bf16 products, fp32 softmax, sums and statistics). 128 threads, 4 warps;
 * warp w owns query rows 16 w .. 16 w + 15 of the 64-row tile (kFwdBM), so after the block has
 * loaded a key/value tile each warp works on its own strip and needs only __syncwarp. The online
 * softmax runs in fp32 on the strip of S in shared memory, two lanes per row; O is kept in
 * shared memory (fp32), rescaled per row there and loaded into an accumulator fragment for each
 * P V product, since a fragment's element-to-row mapping is unspecified. Used for training and
 * evaluation in bf16, with the tensor-core backward below; decode keeps the fp32 kernel. Checked
 * in CI on the CPU by tests/emu. */
constexpr int kTcThreads = 128;

template <int D> struct TcLayout {
    static constexpr int LDH = D + 8;     /* bf16 rows of Q, K, V: 16-byte multiple */
    static constexpr int LDS = kTcBN + 4; /* fp32 rows of S */
    static constexpr int LDP = kTcBN + 8; /* bf16 rows of P */
    static constexpr int LDO = D + 4;     /* fp32 rows of O */
    static constexpr size_t q = 0;
    static constexpr size_t k = q + sizeof(__nv_bfloat16) * kTcBM * LDH;
    static constexpr size_t v = k + sizeof(__nv_bfloat16) * kTcBN * LDH;
    static constexpr size_t s = v + sizeof(__nv_bfloat16) * kTcBN * LDH;
    static constexpr size_t p = s + sizeof(float) * kTcBM * LDS;
    static constexpr size_t o = p + sizeof(__nv_bfloat16) * kTcBM * LDP;
    static constexpr size_t bytes = o + sizeof(float) * kTcBM * LDO;
    static_assert(k % 32 == 0 && v % 32 == 0 && s % 32 == 0 && p % 32 == 0 && o % 32 == 0,
                  "wmma needs 256-bit aligned tiles");
};

/* rows x D tile of fp32 global memory into bf16 shared memory (zero past nrows and hs). With
 * vec (hs, rstride and src's address multiples of 4 floats: GPT-2's heads) each thread moves 16
 * bytes at a time. */
template <int D>
__device__ __forceinline__ void load_tile_bf16(__nv_bfloat16 *dst, int rows, const float *src,
                                               int64_t rstride, int nrows, int hs, bool vec)
{
    if (vec) {
        for (int e = threadIdx.x; e < rows * (D / 4); e += kTcThreads) {
            int r = e / (D / 4), d = 4 * (e % (D / 4));
            float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (r < nrows && d < hs) x = att_load4(src + (int64_t)r * rstride + d);
            __nv_bfloat16 *o = dst + r * TcLayout<D>::LDH + d;
            o[0] = __float2bfloat16(x.x);
            o[1] = __float2bfloat16(x.y);
            o[2] = __float2bfloat16(x.z);
            o[3] = __float2bfloat16(x.w);
        }
        return;
    }
    for (int e = threadIdx.x; e < rows * D; e += kTcThreads) {
        int r = e / D, d = e % D;
        float x = (r < nrows && d < hs) ? src[(int64_t)r * rstride + d] : 0.0f;
        dst[r * TcLayout<D>::LDH + d] = __float2bfloat16(x);
    }
}

template <int D>
__global__ void __launch_bounds__(kTcThreads) attention_forward_tc_kernel(AttFwdArgs a)
{
    namespace wmma = nvcuda::wmma;
    using L = TcLayout<D>;
    extern __shared__ __align__(128) uint8_t tc_smem[];
    __nv_bfloat16 *sQ = (__nv_bfloat16 *)(tc_smem + L::q);
    __nv_bfloat16 *sK = (__nv_bfloat16 *)(tc_smem + L::k);
    __nv_bfloat16 *sV = (__nv_bfloat16 *)(tc_smem + L::v);
    float *sS = (float *)(tc_smem + L::s);
    __nv_bfloat16 *sP = (__nv_bfloat16 *)(tc_smem + L::p);
    float *sO = (float *)(tc_smem + L::o);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    const int l0 = (gridDim.y - 1 - blockIdx.y) * kTcBM;
    const float *qb = a.q + b * a.q_bstride + (int64_t)h * a.hs;
    const float *kb = a.k + b * a.kv_bstride + (int64_t)h * a.hs;
    const float *vb = a.v + b * a.kv_bstride + (int64_t)h * a.hs;
    load_tile_bf16<D>(sQ, kTcBM, qb + l0 * a.q_rstride, a.q_rstride, a.nq - l0, a.hs, a.vec);
    for (int e = threadIdx.x; e < kTcBM * D; e += kTcThreads)
        sO[(e / D) * L::LDO + e % D] = 0.0f;

    /* Lanes 2r and 2r + 1 own row r of the warp's strip: columns (and channels) split in two. */
    const int row = 16 * warp + lane / 2, half = lane % 2;
    const int tpos = a.qpos0 + l0 + row;
    float m = -INFINITY, l = 0.0f;
    const int kv_end = min(a.qpos0 + l0 + kTcBM, a.nkv);
    for (int k0 = 0; k0 < kv_end; k0 += kTcBN) {
        __syncthreads(); /* every warp is done with the previous sK, sV */
        load_tile_bf16<D>(sK, kTcBN, kb + (int64_t)k0 * a.kv_rstride, a.kv_rstride, kv_end - k0,
                          a.hs, a.vec);
        load_tile_bf16<D>(sV, kTcBN, vb + (int64_t)k0 * a.kv_rstride, a.kv_rstride, kv_end - k0,
                          a.hs, a.vec);
        __syncthreads();
        /* S strip = Q strip K^T: K rows are keys, so K^T is K read column-major. */
        for (int n = 0; n < kTcBN / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> sf;
            wmma::fill_fragment(sf, 0.0f);
            for (int kk = 0; kk < D / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> qf;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kf;
                wmma::load_matrix_sync(qf, sQ + 16 * warp * L::LDH + 16 * kk, L::LDH);
                wmma::load_matrix_sync(kf, sK + 16 * n * L::LDH + 16 * kk, L::LDH);
                wmma::mma_sync(sf, qf, kf, sf);
            }
            wmma::store_matrix_sync(sS + 16 * warp * L::LDS + 16 * n, sf, L::LDS,
                                    wmma::mem_row_major);
        }
        __syncwarp();
        /* Online softmax of this row's half of the tile, in fp32. */
        float *srow = sS + row * L::LDS;
        float mx = -INFINITY;
        for (int c = half * (kTcBN / 2); c < (half + 1) * (kTcBN / 2); c++) {
            float x = k0 + c > tpos ? -INFINITY : srow[c] * a.scale;
            srow[c] = x;
            mx = fmaxf(mx, x);
        }
        const float mnew = fmaxf(m, fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1)));
        const float alpha = mnew == -INFINITY ? 1.0f : expf(m - mnew);
        float rs = 0.0f;
        for (int c = half * (kTcBN / 2); c < (half + 1) * (kTcBN / 2); c++) {
            float pv = srow[c] == -INFINITY ? 0.0f : expf(srow[c] - mnew);
            sP[row * L::LDP + c] = __float2bfloat16(pv);
            rs += pv;
        }
        l = l * alpha + rs + __shfl_xor_sync(0xffffffffu, rs, 1);
        m = mnew;
        for (int d = half * (D / 2); d < (half + 1) * (D / 2); d++)
            sO[row * L::LDO + d] *= alpha;
        __syncwarp();
        /* O strip += P strip V (V rows are keys: row-major B). */
        for (int n = 0; n < D / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> of;
            wmma::load_matrix_sync(of, sO + 16 * warp * L::LDO + 16 * n, L::LDO,
                                   wmma::mem_row_major);
            for (int kk = 0; kk < kTcBN / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> pf;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vf;
                wmma::load_matrix_sync(pf, sP + 16 * warp * L::LDP + 16 * kk, L::LDP);
                wmma::load_matrix_sync(vf, sV + 16 * kk * L::LDH + 16 * n, L::LDH);
                wmma::mma_sync(of, pf, vf, of);
            }
            wmma::store_matrix_sync(sO + 16 * warp * L::LDO + 16 * n, of, L::LDO,
                                    wmma::mem_row_major);
        }
        __syncwarp();
    }
    const int grow = l0 + row;
    if (grow < a.nq) {
        float *o = a.out + b * a.o_bstride + grow * a.o_rstride + (int64_t)h * a.hs;
        for (int d = half * (D / 2); d < (half + 1) * (D / 2); d++)
            if (d < a.hs) o[d] = sO[row * L::LDO + d] / l;
        if (a.lse && half == 0) a.lse[(int64_t)bh * a.nq + grow] = m + logf(l);
    }
}

/* ---- attention backward on tensor cores (runtime.precision = "bf16") --------------------------
 * FlashAttention-2's backward with every product on tensor cores (bf16 inputs, fp32
 * accumulation) and P, dP, D and dS in fp32. dS = P (dP - D) is formed in fp32 before rounding,
 * so no bf16 value carries a cancellation (the fp32 kernels' one-pass trick would). 128 threads:
 *   kernel 0 (attention_dsum_kernel): D_i = dO_i . O_i from the forward's fp32 output;
 *   kernel 1, per query tile: over the key tiles it sees, recomputes S and dP and accumulates
 *     dQ = scale dS K;
 *   kernel 2, per key tile: over the query tiles that see it, S^T = K Q^T and dP^T = V dO^T,
 *     then dV += P^T dO and dK += dS^T Q.
 * Each warp owns 16 rows of the block's tile (queries in kernel 1, keys in kernel 2); its
 * accumulators stay in fragments across the loop. No atomics: every element is written once. */
template <int D> struct TcBwdLayout {
    static constexpr int LDH = D + 8, LDS = kTcBN + 4, LDP = kTcBN + 8;
    static constexpr size_t a = 0;                                    /* kernel 1: Q, kernel 2: K */
    static constexpr size_t b = a + sizeof(__nv_bfloat16) * 64 * LDH; /* dO / V */
    static constexpr size_t c = b + sizeof(__nv_bfloat16) * 64 * LDH; /* K / Q */
    static constexpr size_t d = c + sizeof(__nv_bfloat16) * 64 * LDH; /* V / dO */
    static constexpr size_t s = d + sizeof(__nv_bfloat16) * 64 * LDH; /* S strip (fp32) */
    static constexpr size_t dp = s + sizeof(float) * 64 * LDS;        /* dP strip (fp32) */
    static constexpr size_t p = dp + sizeof(float) * 64 * LDS;        /* P or dS (bf16) */
    static constexpr size_t ds = p + sizeof(__nv_bfloat16) * 64 * LDP;    /* dS (bf16), kernel 2 */
    static constexpr size_t stat = ds + sizeof(__nv_bfloat16) * 64 * LDP; /* lse, D: kernel 2 */
    static constexpr size_t bytes = stat + sizeof(float) * 2 * 64;
    static_assert(b % 32 == 0 && c % 32 == 0 && d % 32 == 0 && s % 32 == 0 && dp % 32 == 0 &&
                      p % 32 == 0 && ds % 32 == 0,
                  "wmma needs 256-bit aligned tiles");
    static_assert(D + 4 <= LDS, "the S strip's rows hold a result row of D floats");
};

namespace tcw = nvcuda::wmma;
typedef tcw::fragment<tcw::accumulator, 16, 16, 16, float> tc_acc_t;

/* c[16 x 64] = a[16 x D] b[64 x D]^T for the calling warp (a: its strip; rows of b: the tile). */
template <int D>
__device__ __forceinline__ void tc_mm_nt(const __nv_bfloat16 *a, int lda, const __nv_bfloat16 *b,
                                         int ldb, float *c, int ldc)
{
    for (int n = 0; n < kTcBN / 16; n++) {
        tc_acc_t acc;
        tcw::fill_fragment(acc, 0.0f);
        for (int kk = 0; kk < D / 16; kk++) {
            tcw::fragment<tcw::matrix_a, 16, 16, 16, __nv_bfloat16, tcw::row_major> fa;
            tcw::fragment<tcw::matrix_b, 16, 16, 16, __nv_bfloat16, tcw::col_major> fb;
            tcw::load_matrix_sync(fa, a + 16 * kk, lda);
            tcw::load_matrix_sync(fb, b + 16 * n * ldb + 16 * kk, ldb);
            tcw::mma_sync(acc, fa, fb, acc);
        }
        tcw::store_matrix_sync(c + 16 * n, acc, ldc, tcw::mem_row_major);
    }
}

/* acc[16 x D] += a[16 x 64] b[64 x D] for the calling warp. */
template <int D>
__device__ __forceinline__ void tc_mm_nn(tc_acc_t (&acc)[D / 16], const __nv_bfloat16 *a, int lda,
                                         const __nv_bfloat16 *b, int ldb)
{
    for (int n = 0; n < D / 16; n++)
        for (int kk = 0; kk < kTcBN / 16; kk++) {
            tcw::fragment<tcw::matrix_a, 16, 16, 16, __nv_bfloat16, tcw::row_major> fa;
            tcw::fragment<tcw::matrix_b, 16, 16, 16, __nv_bfloat16, tcw::row_major> fb;
            tcw::load_matrix_sync(fa, a + 16 * kk, lda);
            tcw::load_matrix_sync(fb, b + 16 * kk * ldb + 16 * n, ldb);
            tcw::mma_sync(acc[n], fa, fb, acc[n]);
        }
}

/* D_i = dout_i . out_i for every (batch, head, position), one warp each, in fp32:
 * FlashAttention-2's shortcut for sum_j P_ij dP_ij, which is what the dQ and dK/dV kernels subtract
 * from dP. */
__global__ void __launch_bounds__(256) attention_dsum_kernel(AttBwdArgs a, int64_t rows)
{
    const int lane = threadIdx.x % 32;
    const int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    if (w >= rows) return; /* rows = B * NH * T; the whole warp leaves together */
    const int64_t t = w % a.T, bh = w / a.T, b = bh / a.NH, h = bh % a.NH;
    const int64_t off = (b * a.T + t) * a.C + h * a.hs;
    float s = 0.0f;
    for (int d = lane; d < a.hs; d += 32)
        s += a.dout[off + d] * a.out[off + d];
    for (int o = 16; o > 0; o /= 2)
        s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) a.dsum[bh * a.T + t] = s;
}

template <int D>
__global__ void __launch_bounds__(kTcThreads) attention_backward_dq_tc_kernel(AttBwdArgs a)
{
    using L = TcBwdLayout<D>;
    extern __shared__ __align__(128) uint8_t tcb_smem[];
    __nv_bfloat16 *sQ = (__nv_bfloat16 *)(tcb_smem + L::a);
    __nv_bfloat16 *sdO = (__nv_bfloat16 *)(tcb_smem + L::b);
    __nv_bfloat16 *sK = (__nv_bfloat16 *)(tcb_smem + L::c);
    __nv_bfloat16 *sV = (__nv_bfloat16 *)(tcb_smem + L::d);
    float *sS = (float *)(tcb_smem + L::s), *sdP = (float *)(tcb_smem + L::dp);
    __nv_bfloat16 *sP = (__nv_bfloat16 *)(tcb_smem + L::p);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * kTcBM, T = a.T;
    const int64_t C3 = 3 * (int64_t)a.C;
    const float *qb = a.qkv + (int64_t)b * T * C3 + (int64_t)h * a.hs;
    const float *ob = a.dout + (int64_t)b * T * a.C + (int64_t)h * a.hs;
    load_tile_bf16<D>(sQ, kTcBM, qb + q0 * C3, C3, T - q0, a.hs, a.vec);
    load_tile_bf16<D>(sdO, kTcBM, ob + (int64_t)q0 * a.C, a.C, T - q0, a.hs, a.vec);
    const int row = 16 * warp + lane / 2, half = lane % 2, tpos = q0 + row;
    const float lse = tpos < T ? a.lse[(int64_t)bh * T + tpos] : 0.0f;
    const int kv_end = min(q0 + kTcBM, T);
    const __nv_bfloat16 *wQ = sQ + 16 * warp * L::LDH, *wdO = sdO + 16 * warp * L::LDH;
    float *wS = sS + 16 * warp * L::LDS, *wdP = sdP + 16 * warp * L::LDS;
    const float Di = tpos < T ? a.dsum[(int64_t)bh * T + tpos] : 0.0f;
    tc_acc_t acc[D / 16];
    for (int n = 0; n < D / 16; n++)
        tcw::fill_fragment(acc[n], 0.0f);
    for (int k0 = 0; k0 < kv_end; k0 += kTcBN) {
        __syncthreads();
        load_tile_bf16<D>(sK, kTcBN, qb + a.C + k0 * C3, C3, kv_end - k0, a.hs, a.vec);
        load_tile_bf16<D>(sV, kTcBN, qb + 2 * a.C + k0 * C3, C3, kv_end - k0, a.hs, a.vec);
        __syncthreads();
        tc_mm_nt<D>(wQ, L::LDH, sK, L::LDH, wS, L::LDS);
        tc_mm_nt<D>(wdO, L::LDH, sV, L::LDH, wdP, L::LDS);
        __syncwarp();
        for (int c = half * (kTcBN / 2); c < (half + 1) * (kTcBN / 2); c++) {
            float p = k0 + c > tpos ? 0.0f : expf(sS[row * L::LDS + c] * a.scale - lse);
            sP[row * L::LDP + c] = __float2bfloat16(p * (sdP[row * L::LDS + c] - Di));
        }
        __syncwarp();
        tc_mm_nn<D>(acc, sP + 16 * warp * L::LDP, L::LDP, sK, L::LDH);
    }
    for (int n = 0; n < D / 16; n++) /* the S strip is free now: dQ goes through it */
        tcw::store_matrix_sync(wS + 16 * n, acc[n], L::LDS, tcw::mem_row_major);
    __syncwarp();
    if (tpos < T) {
        float *dq = a.dqkv + ((int64_t)b * T + tpos) * C3 + (int64_t)h * a.hs;
        for (int d = half * (D / 2); d < (half + 1) * (D / 2); d++)
            if (d < a.hs) dq[d] = a.scale * sS[row * L::LDS + d];
    }
}

template <int D>
__global__ void __launch_bounds__(kTcThreads) attention_backward_dkv_tc_kernel(AttBwdArgs a)
{
    using L = TcBwdLayout<D>;
    extern __shared__ __align__(128) uint8_t tcb_smem[];
    __nv_bfloat16 *sK = (__nv_bfloat16 *)(tcb_smem + L::a);
    __nv_bfloat16 *sV = (__nv_bfloat16 *)(tcb_smem + L::b);
    __nv_bfloat16 *sQ = (__nv_bfloat16 *)(tcb_smem + L::c);
    __nv_bfloat16 *sdO = (__nv_bfloat16 *)(tcb_smem + L::d);
    float *sS = (float *)(tcb_smem + L::s), *sdP = (float *)(tcb_smem + L::dp);
    __nv_bfloat16 *sP = (__nv_bfloat16 *)(tcb_smem + L::p);
    __nv_bfloat16 *sdS = (__nv_bfloat16 *)(tcb_smem + L::ds);
    float *sL = (float *)(tcb_smem + L::stat), *sD = sL + 64;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int bh = blockIdx.x, b = bh / a.NH, h = bh % a.NH;
    const int k0 = (gridDim.y - 1 - blockIdx.y) * kTcBN, T = a.T;
    const int64_t C3 = 3 * (int64_t)a.C;
    const float *base = a.qkv + (int64_t)b * T * C3 + (int64_t)h * a.hs;
    const float *ob = a.dout + (int64_t)b * T * a.C + (int64_t)h * a.hs;
    load_tile_bf16<D>(sK, kTcBN, base + a.C + k0 * C3, C3, T - k0, a.hs, a.vec);
    load_tile_bf16<D>(sV, kTcBN, base + 2 * a.C + k0 * C3, C3, T - k0, a.hs, a.vec);
    const int krow = 16 * warp + lane / 2, half = lane % 2, kpos = k0 + krow;
    const __nv_bfloat16 *wK = sK + 16 * warp * L::LDH, *wV = sV + 16 * warp * L::LDH;
    float *wS = sS + 16 * warp * L::LDS, *wdP = sdP + 16 * warp * L::LDS;
    tc_acc_t dk[D / 16], dv[D / 16];
    for (int n = 0; n < D / 16; n++) {
        tcw::fill_fragment(dk[n], 0.0f);
        tcw::fill_fragment(dv[n], 0.0f);
    }
    /* Query tiles start at multiples of 64 like key tiles: the first that sees key k0 is k0's. */
    for (int q0 = k0; q0 < T; q0 += kTcBM) {
        __syncthreads();
        load_tile_bf16<D>(sQ, kTcBM, base + q0 * C3, C3, T - q0, a.hs, a.vec);
        load_tile_bf16<D>(sdO, kTcBM, ob + (int64_t)q0 * a.C, a.C, T - q0, a.hs, a.vec);
        for (int i = threadIdx.x; i < kTcBM; i += kTcThreads) {
            bool in = q0 + i < T;
            sL[i] = in ? a.lse[(int64_t)bh * T + q0 + i] : 0.0f;
            sD[i] = in ? a.dsum[(int64_t)bh * T + q0 + i] : 0.0f;
        }
        __syncthreads();
        tc_mm_nt<D>(wK, L::LDH, sQ, L::LDH, wS, L::LDS);   /* S^T strip: keys x queries */
        tc_mm_nt<D>(wV, L::LDH, sdO, L::LDH, wdP, L::LDS); /* dP^T strip */
        __syncwarp();
        for (int c = half * (kTcBM / 2); c < (half + 1) * (kTcBM / 2); c++) {
            const int i = q0 + c;
            float p = (kpos > i || i >= T) ? 0.0f : expf(sS[krow * L::LDS + c] * a.scale - sL[c]);
            sP[krow * L::LDP + c] = __float2bfloat16(p);
            sdS[krow * L::LDP + c] = __float2bfloat16(p * (sdP[krow * L::LDS + c] - sD[c]));
        }
        __syncwarp();
        tc_mm_nn<D>(dv, sP + 16 * warp * L::LDP, L::LDP, sdO, L::LDH);
        tc_mm_nn<D>(dk, sdS + 16 * warp * L::LDP, L::LDP, sQ, L::LDH);
    }
    for (int n = 0; n < D / 16; n++) {
        tcw::store_matrix_sync(wS + 16 * n, dk[n], L::LDS, tcw::mem_row_major);
        tcw::store_matrix_sync(wdP + 16 * n, dv[n], L::LDS, tcw::mem_row_major);
    }
    __syncwarp();
    if (kpos < T) {
        float *dkv = a.dqkv + ((int64_t)b * T + kpos) * C3 + (int64_t)h * a.hs;
        for (int d = half * (D / 2); d < (half + 1) * (D / 2); d++)
            if (d < a.hs) {
                dkv[a.C + d] = a.scale * sS[krow * L::LDS + d];
                dkv[2 * a.C + d] = sdP[krow * L::LDS + d];
            }
    }
}

} // namespace

void tp_cuda_attention_forward_tc(int hs, dim3 grid, cudaStream_t st, const AttFwdArgs &a)
{
    if (hs <= 32)
        launch_att(attention_forward_tc_kernel<32>, grid, TcLayout<32>::bytes, st, a, kTcThreads);
    else
        launch_att(attention_forward_tc_kernel<64>, grid, TcLayout<64>::bytes, st, a, kTcThreads);
}

void tp_cuda_attention_backward_tc(int hs, int B_NH, int T, cudaStream_t st, const AttBwdArgs &a)
{
    int64_t rows = (int64_t)B_NH * T;
    int64_t blocks = (rows * 32 + 255) / 256;
    attention_dsum_kernel<<<(unsigned)blocks, 256, 0, st>>>(a, rows);
    TP_CUDA_LAUNCHED();
    dim3 grid((unsigned)B_NH, (unsigned)((T + kTcBM - 1) / kTcBM));
    if (hs <= 32) {
        launch_att(attention_backward_dq_tc_kernel<32>, grid, TcBwdLayout<32>::bytes, st, a,
                   kTcThreads);
        launch_att(attention_backward_dkv_tc_kernel<32>, grid, TcBwdLayout<32>::bytes, st, a,
                   kTcThreads);
    } else {
        launch_att(attention_backward_dq_tc_kernel<64>, grid, TcBwdLayout<64>::bytes, st, a,
                   kTcThreads);
        launch_att(attention_backward_dkv_tc_kernel<64>, grid, TcBwdLayout<64>::bytes, st, a,
                   kTcThreads);
    }
}
