/* CUDA kernels of LayerNorm (cuda_ops.h), with the semantics of runtime/backend_ref_transformer.c:
 * the forward one warp per row, writing y as a compute copy; the backward into dx (one pass over
 * each row where the row fits in registers) and dw/db through per-chunk partials summed in a fixed
 * order, so results are the same on every run. */
#include "cuda_common.h"
#include "cuda_ops.h"
#include "cuda_vec.h"
#include "kernel_grid.h"

#include <math.h>
#include <stdint.h>

namespace
{

/* Layernorm backward: rows per partial sum of dw and db (fixed, so the sum order is too). */
constexpr int64_t kLnChunk = 128;
constexpr float kLnEps = 1e-5f; /* TP_LN_EPS of runtime/ops_math.h */

/* ---- layernorm: one warp per row ------------------------------------------------------------ */

/* Y: y's element type (a compute copy: float or bf16). */
template <typename Y>
__global__ void __launch_bounds__(kThreads)
    layernorm_forward_kernel(const float *x, const float *w, const float *b, Y *y, float *mean,
                             float *rstd, int64_t N, int64_t C)
{
    const int lane = threadIdx.x & 31, wpb = blockDim.x / 32;
    for (int64_t r = (int64_t)blockIdx.x * wpb + threadIdx.x / 32; r < N;
         r += (int64_t)gridDim.x * wpb) {
        const float *xr = x + r * C;
        float s = 0.0f;
        for (int64_t c = lane; c < C; c += 32)
            s += xr[c];
        const float m = warp_sum(s) / (float)C;
        /* Two passes (mean, then squared deviations): no cancellation when |mean| >> std. */
        float v = 0.0f;
        for (int64_t c = lane; c < C; c += 32) {
            float d = xr[c] - m;
            v += d * d;
        }
        const float rs = 1.0f / sqrtf(warp_sum(v) / (float)C + kLnEps);
        for (int64_t c = lane; c < C; c += 32)
            cval_put(y + r * C + c, (xr[c] - m) * rs * w[c] + b[c]);
        if (lane == 0) {
            mean[r] = m;
            rstd[r] = rs;
        }
    }
}

/* dx += rstd (g - mean_c(g) - xhat mean_c(g xhat)), g = dy w (see the reference). DY: dy's
 * element type (a compute copy). */
template <typename DY>
__global__ void __launch_bounds__(kThreads)
    layernorm_dx_kernel(const DY *dy, const float *x, const float *w, const float *mean,
                        const float *rstd, float *dx, int64_t N, int64_t C)
{
    const int lane = threadIdx.x & 31, wpb = blockDim.x / 32;
    for (int64_t r = (int64_t)blockIdx.x * wpb + threadIdx.x / 32; r < N;
         r += (int64_t)gridDim.x * wpb) {
        const float *xr = x + r * C;
        const DY *d = dy + r * C;
        const float m = mean[r], rs = rstd[r];
        float sg = 0.0f, sgx = 0.0f;
        /* g rounded once (no fused multiply-add into sg) so that both loops see the same g:
         * with C = 1, g - sg is then exactly 0 as in the ref, not a rounding error that rstd
         * (up to 1/sqrt(1e-5)) magnifies (seen on an H100: 1.65e-5 relative). */
        for (int64_t c = lane; c < C; c += 32) {
            float g = __fmul_rn(cval_get(d + c), w[c]);
            sg += g;
            sgx += g * ((xr[c] - m) * rs);
        }
        sg = warp_sum(sg) / (float)C;
        sgx = warp_sum(sgx) / (float)C;
        for (int64_t c = lane; c < C; c += 32) {
            float g = __fmul_rn(cval_get(d + c), w[c]), xhat = (xr[c] - m) * rs;
            dx[r * C + c] += rs * (g - sg - xhat * sgx);
        }
    }
}

/* part[k] = (sum of dy xhat, sum of dy) over the rows of chunk k, one thread per column (reads
 * coalesced along the row). */
template <typename DY>
__global__ void __launch_bounds__(kThreads)
    layernorm_dwdb_partial_kernel(const DY *dy, const float *x, const float *mean,
                                  const float *rstd, float *part, int64_t N, int64_t C,
                                  int64_t nchunk)
{
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int64_t k = blockIdx.y; k < nchunk; k += gridDim.y) {
        int64_t r1 = (k + 1) * kLnChunk < N ? (k + 1) * kLnChunk : N;
        float sw = 0.0f, sb = 0.0f;
        for (int64_t r = k * kLnChunk; r < r1; r++) {
            float d = cval_get(dy + r * C + c);
            sw += d * ((x[r * C + c] - mean[r]) * rstd[r]);
            sb += d;
        }
        part[k * 2 * C + c] = sw;
        part[k * 2 * C + C + c] = sb;
    }
}

/* Layernorm backward in one pass, for rows of C = 4 k <= 128 V floats (GPT-2 124M's 768 and
 * 350M's 1024): each block takes kLnRows rows, each warp every 8th of them, a lane channels
 * 4 (lane + 32 i). A row is read once, into registers: dy and xhat give both dx and the lane's
 * share of dw and db, which the warps then add up in warp order in shared memory and the block
 * writes as its chunk's partials (the layout of layernorm_dwdb_partial_kernel's, kLnRows rows per
 * chunk). The two-kernel path reads dy and x from memory twice (the rows do not stay in L2).
 * With np = 3 the block also sums the new dx over its rows (the bias gradient of the projection
 * that wrote the residual stream, which would otherwise read dx again): each warp into its own
 * slice of shared memory (registers are at their limit), the slices then added in warp order. */
/* 64 rows per block: 256 blocks for GPT-2's 16 x 1024 rows, which at 2 blocks per SM (C = 768:
 * 128 registers) all run at once on an H100, and half the partials of 32. */
constexpr int kLnRows = 64;

template <int V, typename DY>
__global__ void __launch_bounds__(kThreads)
    layernorm_backward_rows_kernel(const DY *dy, const float *x, const float *w, const float *mean,
                                   const float *rstd, float *dx, __nv_bfloat16 *dxc, float *part,
                                   int np, int64_t N, int64_t C)
{
    __shared__ float red[2][128 * V];
    __shared__ float4 sdx[kThreads / 32][32 * V]; /* per warp: its rows' sum of dx (np = 3) */
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32, nwarp = kThreads / 32;
    const int64_t r0 = (int64_t)blockIdx.x * kLnRows, r1 = min(r0 + kLnRows, N);
    if (np == 3)
#pragma unroll
        for (int i = 0; i < V; i++)
            sdx[warp][lane + 32 * i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float4 pw[V], pb[V];
#pragma unroll
    for (int i = 0; i < V; i++)
        pw[i] = pb[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int64_t r = r0 + warp; r < r1; r += nwarp) {
        const float m = mean[r], rs = rstd[r];
        float4 d[V] = {}, xh[V] = {}; /* zero past C */
        float sg = 0.0f, sgx = 0.0f;
#pragma unroll
        for (int i = 0; i < V; i++) {
            const int64_t c = 4 * (lane + 32 * i);
            if (c >= C) continue;
            d[i] = vec_load4(dy + r * C + c);
            const float4 xv = vec_load4(x + r * C + c), wv = vec_load4(w + c);
            xh[i] = make_float4((xv.x - m) * rs, (xv.y - m) * rs, (xv.z - m) * rs, (xv.w - m) * rs);
            /* g rounded once, as in layernorm_dx_kernel */
            const float g[4] = {__fmul_rn(d[i].x, wv.x), __fmul_rn(d[i].y, wv.y),
                                __fmul_rn(d[i].z, wv.z), __fmul_rn(d[i].w, wv.w)};
            sg += (g[0] + g[1]) + (g[2] + g[3]);
            sgx += (g[0] * xh[i].x + g[1] * xh[i].y) + (g[2] * xh[i].z + g[3] * xh[i].w);
            pw[i].x += d[i].x * xh[i].x;
            pw[i].y += d[i].y * xh[i].y;
            pw[i].z += d[i].z * xh[i].z;
            pw[i].w += d[i].w * xh[i].w;
            pb[i].x += d[i].x;
            pb[i].y += d[i].y;
            pb[i].z += d[i].z;
            pb[i].w += d[i].w;
        }
        sg = warp_sum(sg) / (float)C;
        sgx = warp_sum(sgx) / (float)C;
#pragma unroll
        for (int i = 0; i < V; i++) {
            const int64_t c = 4 * (lane + 32 * i);
            if (c >= C) continue;
            const float4 wv = vec_load4(w + c);
            float4 o = vec_load4(dx + r * C + c);
            o.x += rs * (__fmul_rn(d[i].x, wv.x) - sg - xh[i].x * sgx);
            o.y += rs * (__fmul_rn(d[i].y, wv.y) - sg - xh[i].y * sgx);
            o.z += rs * (__fmul_rn(d[i].z, wv.z) - sg - xh[i].z * sgx);
            o.w += rs * (__fmul_rn(d[i].w, wv.w) - sg - xh[i].w * sgx);
            vec_store4(dx + r * C + c, o);
            if (dxc) vec_store4(dxc + r * C + c, o); /* the next products' bf16 copy of dx */
            if (np == 3) {
                float4 &s = sdx[warp][lane + 32 * i];
                s = make_float4(s.x + o.x, s.y + o.y, s.z + o.z, s.w + o.w);
            }
        }
    }
    /* The warps' partials added in warp order (each writes or adds its own channels). */
    for (int k = 0; k < nwarp; k++) {
        if (warp == k)
#pragma unroll
            for (int i = 0; i < V; i++) {
                const int c = 4 * (lane + 32 * i);
                const float sw[4] = {pw[i].x, pw[i].y, pw[i].z, pw[i].w};
                const float sb[4] = {pb[i].x, pb[i].y, pb[i].z, pb[i].w};
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    red[0][c + e] = k == 0 ? sw[e] : red[0][c + e] + sw[e];
                    red[1][c + e] = k == 0 ? sb[e] : red[1][c + e] + sb[e];
                }
            }
        __syncthreads();
    }
    float *pk = part + (int64_t)blockIdx.x * np * C;
    for (int64_t c = threadIdx.x; c < C; c += kThreads) {
        pk[c] = red[0][c];
        pk[C + c] = red[1][c];
        if (np == 3) { /* the warps' dx sums, in warp order */
            const float *s0 = &sdx[0][0].x;
            float s = 0.0f;
            for (int k = 0; k < nwarp; k++)
                s += s0[k * 128 * V + c];
            pk[2 * C + c] = s;
        }
    }
}

/* layernorm_backward_rows_kernel<v, DY> for v = 1..Vmax. */
template <int Vmax, typename DY>
void layernorm_rows_launch(int v, unsigned blocks, cudaStream_t st, const DY *dy, const float *x,
                           const float *w, const float *mean, const float *rstd, float *dx,
                           __nv_bfloat16 *dxc, float *part, int np, int64_t N, int64_t C)
{
    if (v == Vmax)
        layernorm_backward_rows_kernel<Vmax, DY>
            <<<blocks, kThreads, 0, st>>>(dy, x, w, mean, rstd, dx, dxc, part, np, N, C);
    else if constexpr (Vmax > 1)
        layernorm_rows_launch<Vmax - 1, DY>(v, blocks, st, dy, x, w, mean, rstd, dx, dxc, part, np,
                                            N, C);
}

/* dw += sum of the chunks' partials, db likewise (and ds, the third partial, when the chunks
 * have np = 3), in a fixed order (double: cheap here, and closer to the reference). A block takes
 * 32 channels (one per lane, so reads are coalesced) and its 8 warps every 8th chunk each, then
 * adds the warps' sums in warp order: 8 chains of loads in flight per channel instead of one
 * chain as long as the number of chunks. */
__global__ void __launch_bounds__(kThreads)
    layernorm_dwdb_final_kernel(const float *part, int np, float *dw, float *db, float *ds,
                                int64_t C, int64_t nchunk)
{
    __shared__ double sw[3][kThreads / 32][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x / 32, nwarp = kThreads / 32;
    for (int64_t c0 = (int64_t)blockIdx.x * 32; c0 < C; c0 += (int64_t)gridDim.x * 32) {
        const int64_t c = c0 + lane;
        double acc[3] = {0.0, 0.0, 0.0}; /* unrolled loops over j: registers, not a stack array */
        if (c < C)
            for (int64_t k = warp; k < nchunk; k += nwarp)
#pragma unroll
                for (int j = 0; j < 3; j++)
                    if (j < np) acc[j] += part[(k * np + j) * C + c];
#pragma unroll
        for (int j = 0; j < 3; j++)
            sw[j][warp][lane] = acc[j];
        __syncthreads();
        if (warp == 0 && c < C) {
            float *out[3] = {dw, db, ds};
#pragma unroll
            for (int j = 0; j < 3; j++) {
                double t = 0.0;
                for (int k = 0; k < nwarp; k++)
                    t += sw[j][k][lane];
                if (j < np) out[j][c] += (float)t;
            }
        }
        __syncthreads(); /* sw is free for the next 32 channels */
    }
}

} // namespace

/* ---- entry points --------------------------------------------------------------------------- */

extern "C" void tp_cuda_layernorm_forward(tp_backend_t *be, const float *x, const float *w,
                                          const float *b, tp_cval_t *y, float *mean, float *rstd,
                                          int64_t N, int64_t C)
{
    if (N <= 0 || C <= 0) return;
    const unsigned g = blocks_for(N, kThreads / 32);
    cudaStream_t st = tp_cuda_stream(be);
    if (tp_cuda_precision(be) == TP_PREC_BF16)
        layernorm_forward_kernel<<<g, kThreads, 0, st>>>(x, w, b, cval_bf16(y), mean, rstd, N, C);
    else
        layernorm_forward_kernel<<<g, kThreads, 0, st>>>(x, w, b, tp_cval_f32(y), mean, rstd, N, C);
    TP_CUDA_LAUNCHED();
}

/* Whether the one-pass kernel takes these rows (C = 4 k <= 1024, 16-byte aligned arrays, one wave
 * of chunks). */
static bool layernorm_rows_ok(const void *dy, const float *x, const float *w, const float *dx,
                              int64_t N, int64_t C)
{
    return C % 4 == 0 && (C + 127) / 128 <= 8 && (N + kLnRows - 1) / kLnRows <= kMaxBlocks &&
           ((uintptr_t)dy | (uintptr_t)x | (uintptr_t)w | (uintptr_t)dx) % 16 == 0;
}

/* DY: dy's element type. dxc: NULL, or a bf16 copy of dx to write as well; ds: NULL, or where to
 * add dx's column sums (both for the one-pass kernel only). */
template <typename DY>
static void layernorm_backward(tp_backend_t *be, const DY *dy, const float *x, const float *w,
                               const float *mean, const float *rstd, float *dx, __nv_bfloat16 *dxc,
                               float *dw, float *db, float *ds, int64_t N, int64_t C)
{
    cudaStream_t st = tp_cuda_stream(be);
    const bool rows = layernorm_rows_ok(dy, x, w, dx, N, C);
    const int64_t chunk = rows ? kLnRows : kLnChunk, nchunk = (N + chunk - 1) / chunk;
    const int np = ds ? 3 : 2;
    float *part = (float *)tp_cuda_scratch(be, 0, (size_t)(nchunk * np * C) * sizeof(float));
    if (rows) {
        layernorm_rows_launch<8, DY>((int)((C + 127) / 128), (unsigned)nchunk, st, dy, x, w, mean,
                                     rstd, dx, dxc, part, np, N, C);
        TP_CUDA_LAUNCHED();
    } else {
        layernorm_dx_kernel<DY>
            <<<blocks_for(N, kThreads / 32), kThreads, 0, st>>>(dy, x, w, mean, rstd, dx, N, C);
        TP_CUDA_LAUNCHED();
        dim3 grid(blocks_for(C, kThreads), blocks_for(nchunk, 1));
        layernorm_dwdb_partial_kernel<DY>
            <<<grid, kThreads, 0, st>>>(dy, x, mean, rstd, part, N, C, nchunk);
        TP_CUDA_LAUNCHED();
    }
    layernorm_dwdb_final_kernel<<<blocks_for(C, 32), kThreads, 0, st>>>(part, np, dw, db, ds, C,
                                                                        nchunk);
    TP_CUDA_LAUNCHED();
}

/* dy a compute copy: bf16 under "bf16". */
static void layernorm_backward_any(tp_backend_t *be, const tp_cval_t *dy, const float *x,
                                   const float *w, const float *mean, const float *rstd, float *dx,
                                   __nv_bfloat16 *dxc, float *dw, float *db, float *ds, int64_t N,
                                   int64_t C)
{
    if (tp_cuda_precision(be) == TP_PREC_BF16)
        layernorm_backward(be, cval_bf16(dy), x, w, mean, rstd, dx, dxc, dw, db, ds, N, C);
    else
        layernorm_backward(be, tp_cval_cf32(dy), x, w, mean, rstd, dx, dxc, dw, db, ds, N, C);
}

extern "C" void tp_cuda_layernorm_backward(tp_backend_t *be, const tp_cval_t *dy, const float *x,
                                           const float *w, const float *mean, const float *rstd,
                                           float *dx, float *dw, float *db, int64_t N, int64_t C)
{
    if (N <= 0 || C <= 0) return;
    layernorm_backward_any(be, dy, x, w, mean, rstd, dx, NULL, dw, db, NULL, N, C);
}

/* For rows the one-pass kernel takes: under "bf16" dx's bf16 copy is written from the registers
 * that hold dx (saving to_compute's read of dx), and dsum is summed in the same pass (saving
 * bias_grad's). Otherwise false, and backend.c runs the separate ops. */
extern "C" bool tp_cuda_layernorm_backward_c(tp_backend_t *be, const tp_cval_t *dy, const float *x,
                                             const float *w, const float *mean, const float *rstd,
                                             float *dx, tp_cval_t *dx_c, float *dw, float *db,
                                             float *dsum, int64_t N, int64_t C)
{
    const bool bf16 = tp_cuda_precision(be) == TP_PREC_BF16;
    if (N <= 0 || C <= 0 || !layernorm_rows_ok(dy, x, w, dx, N, C) ||
        (bf16 && (uintptr_t)dx_c % 8 != 0) || (!bf16 && (!dsum || (void *)dx_c != (void *)dx)))
        return false;
    layernorm_backward_any(be, dy, x, w, mean, rstd, dx, bf16 ? cval_bf16(dx_c) : NULL, dw, db,
                           dsum, N, C);
    return true;
}
