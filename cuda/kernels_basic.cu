// Elementwise ops, reductions (bias gradients, softmax cross-entropy, sum of squares) and the
// optimizer updates of the CUDA backend. Each computes what runtime/backend_ref.c computes (the
// scalar formulas of runtime/ops_math.h are ported below); reductions use a fixed order (fixed
// block sizes and chunking, no atomics), so results are the same on every run. The _c ops read or
// write compute copies: their kernels are templates on the copy's element type (cuda_vec.h), the
// float instantiation being the plain op's kernel, so under "fp32" both give the same bits.
#include <float.h>
#include <stdint.h>

#include "cuda_common.h"
#include "cuda_vec.h"
#include "cuda_ops.h"

// Threads per block for elementwise kernels and reductions (multiples of 32; reductions depend
// on them for their summation order, so they are constants, not tuned per device).
#define EW_THREADS  256
#define RED_THREADS 256
#define MAX_BLOCKS  32768 // grid-stride loops cover the rest
// Rows per partial sum in the column-wise bias gradient.
#define BIAS_GRAD_ROWS 128
// Elements per partial sum of tp_cuda_sumsq_to (runtime's TP_SUMSQ_CHUNK).
#define SUMSQ_CHUNK TP_SUMSQ_CHUNK

static unsigned blocks_for(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < MAX_BLOCKS ? b : MAX_BLOCKS);
}

#define GRID_STRIDE(i, n)                                                                          \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

// ---- block reductions: fixed shape, so a fixed order ------------------------------------------

template <typename T> static __device__ T warp_sum(T v)
{
    // xor butterfly: every lane ends with the same value (addition is commutative).
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the block; every thread gets the result. sh holds 32 values; callable repeatedly.
template <typename T> static __device__ T block_sum(T v, T *sh)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads(); // sh may still be read by a previous call
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    return warp_sum(lane < nw ? sh[lane] : (T)0);
}

// ---- scalar formulas (runtime/ops_math.h, runtime/rng.c) -------------------------------------

#define GELU_C 0.7978845608028654f // sqrt(2/pi)

static __device__ float act_f(int act, float x)
{
    if (act == TP_ACT_RELU) return x > 0.0f ? x : 0.0f;
    float u = GELU_C * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

static __device__ float act_df(int act, float x)
{
    if (act == TP_ACT_RELU) return x > 0.0f ? 1.0f : 0.0f;
    float u = GELU_C * (x + 0.044715f * x * x * x);
    float t = tanhf(u);
    float du = GELU_C * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

static __device__ uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// tp_rng_hash: integer arithmetic, so the same bits as on the host.
static __device__ uint64_t rng_hash(uint64_t seed, uint64_t stream, uint64_t counter)
{
    uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ULL);
    h = mix64(h ^ (stream + 0x632be59bd9b4e019ULL));
    return mix64(h ^ (counter * 0x9e3779b97f4a7c15ULL + 0x1d8e4e27c47d124fULL));
}

// tp_rng_to_unit: 24 bits to float and a power-of-two scale, both exact.
static __device__ float rng_to_unit(uint64_t h)
{
    return (float)(h >> 40) * (1.0f / 16777216.0f);
}

// ---- bias ---------------------------------------------------------------------------------------

static __global__ void bias_add_kernel(float *y, const float *b, int64_t rows, int64_t cols,
                                       bool per_row)
{
    GRID_STRIDE(i, rows * cols)
    {
        y[i] += per_row ? b[i / cols] : b[i % cols];
    }
}

void tp_cuda_bias_add(tp_backend_t *be, float *y, const float *b, int64_t rows, int64_t cols,
                      bool per_row)
{
    int64_t n = rows * cols;
    if (n <= 0) return;
    bias_add_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>(
        y, b, rows, cols, per_row);
    TP_CUDA_LAUNCHED();
}

// per_row: one block per row, double partial sums reduced in a fixed tree. T: dy's element type.
template <typename T>
static __global__ void bias_grad_rows_kernel(const T *dy, float *db, int64_t rows, int64_t cols)
{
    __shared__ double sh[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const T *d = dy + r * cols;
        double s = 0.0;
        for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
            s += (double)cval_get(d + c);
        s = block_sum(s, sh);
        if (threadIdx.x == 0) db[r] += (float)s;
    }
}

// Per column: partial[chunk, c] = sum of dy[r, c] over the chunk's BIAS_GRAD_ROWS rows, in order.
template <typename T>
static __global__ void bias_grad_cols_partial_kernel(const T *dy, double *partial, int64_t rows,
                                                     int64_t cols, int64_t nchunks)
{
    for (int64_t k = blockIdx.y; k < nchunks; k += gridDim.y) {
        int64_t r0 = k * BIAS_GRAD_ROWS;
        int64_t r1 = r0 + BIAS_GRAD_ROWS < rows ? r0 + BIAS_GRAD_ROWS : rows;
        for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < cols;
             c += (int64_t)gridDim.x * blockDim.x) {
            double s = 0.0;
            for (int64_t r = r0; r < r1; r++)
                s += (double)cval_get(dy + r * cols + c);
            partial[k * cols + c] = s;
        }
    }
}

// db[c] += the chunks' partial sums, in chunk order.
static __global__ void bias_grad_cols_final_kernel(const double *partial, float *db, int64_t cols,
                                                   int64_t nchunks)
{
    GRID_STRIDE(c, cols)
    {
        double s = 0.0;
        for (int64_t k = 0; k < nchunks; k++)
            s += partial[k * cols + c];
        db[c] += (float)s;
    }
}

template <typename T>
static void bias_grad(tp_backend_t *be, const T *dy, float *db, int64_t rows, int64_t cols,
                      bool per_row)
{
    if (rows <= 0 || cols <= 0) return; // nothing to add (db += 0)
    cudaStream_t st = tp_cuda_stream(be);
    if (per_row) {
        unsigned g = (unsigned)(rows < MAX_BLOCKS ? rows : MAX_BLOCKS);
        bias_grad_rows_kernel<T><<<g, RED_THREADS, 0, st>>>(dy, db, rows, cols);
        TP_CUDA_LAUNCHED();
        return;
    }
    int64_t nchunks = (rows + BIAS_GRAD_ROWS - 1) / BIAS_GRAD_ROWS;
    double *partial =
        (double *)tp_cuda_scratch(be, 1, (size_t)nchunks * (size_t)cols * sizeof(double));
    dim3 grid(blocks_for(cols, EW_THREADS), (unsigned)(nchunks < 65535 ? nchunks : 65535));
    bias_grad_cols_partial_kernel<T><<<grid, EW_THREADS, 0, st>>>(dy, partial, rows, cols, nchunks);
    TP_CUDA_LAUNCHED();
    bias_grad_cols_final_kernel<<<blocks_for(cols, EW_THREADS), EW_THREADS, 0, st>>>(partial, db,
                                                                                     cols, nchunks);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_bias_grad(tp_backend_t *be, const float *dy, float *db, int64_t rows, int64_t cols,
                       bool per_row)
{
    bias_grad(be, dy, db, rows, cols, per_row);
}

void tp_cuda_bias_grad_c(tp_backend_t *be, const tp_cval_t *dy, float *db, int64_t rows,
                         int64_t cols, bool per_row)
{
    if (tp_cuda_precision(be) == TP_PREC_BF16)
        bias_grad(be, cval_bf16(dy), db, rows, cols, per_row);
    else
        bias_grad(be, tp_cval_cf32(dy), db, rows, cols, per_row);
}

// ---- activations --------------------------------------------------------------------------------

// T: the output's element type (float, or bf16 for a compute copy).
template <typename T>
static __global__ void act_forward_kernel(int act, const float *x, T *y, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        cval_put(y + i, act_f(act, x[i]));
    }
}

// X: the input's element type (a pre-activation stored as a compute copy may be bf16).
template <typename X, typename T>
static __global__ void act_backward_kernel(int act, const X *x, const float *dy, T *dx, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        cval_put(dx + i, dy[i] * act_df(act, cval_get(x + i)));
    }
}

template <typename T>
static void act_forward(tp_backend_t *be, tp_act_t act, const float *x, T *y, int64_t n)
{
    if (n <= 0) return;
    act_forward_kernel<T>
        <<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>((int)act, x, y, n);
    TP_CUDA_LAUNCHED();
}

template <typename X, typename T>
static void act_backward(tp_backend_t *be, tp_act_t act, const X *x, const float *dy, T *dx,
                         int64_t n)
{
    if (n <= 0) return;
    act_backward_kernel<X, T>
        <<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>((int)act, x, dy, dx, n);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_act_forward(tp_backend_t *be, tp_act_t act, const float *x, float *y, int64_t n)
{
    act_forward(be, act, x, y, n);
}

void tp_cuda_act_backward(tp_backend_t *be, tp_act_t act, const float *x, const float *dy,
                          float *dx, int64_t n)
{
    act_backward(be, act, x, dy, dx, n);
}

// Under "fp32" these are the plain ops (which also take y == x, dx == dy); under "bf16" the
// output must not overlap the inputs: bf16 element i lies inside float i / 2, which another
// thread may not have read yet.
void tp_cuda_act_forward_c(tp_backend_t *be, tp_act_t act, const float *x, tp_cval_t *y, int64_t n)
{
    if (tp_cuda_precision(be) == TP_PREC_BF16)
        act_forward(be, act, x, cval_bf16(y), n);
    else
        act_forward(be, act, x, tp_cval_f32(y), n);
}

void tp_cuda_act_backward_c(tp_backend_t *be, tp_act_t act, const tp_cval_t *x, const float *dy,
                            tp_cval_t *dx, int64_t n)
{
    if (tp_cuda_precision(be) == TP_PREC_BF16)
        act_backward(be, act, cval_bf16(x), dy, cval_bf16(dx), n);
    else
        act_backward(be, act, tp_cval_cf32(x), dy, tp_cval_f32(dx), n);
}

// ---- dropout: the same mask and values as the host backends, bit for bit ---------------------

static __global__ void dropout_forward_kernel(const float *x, float *y, uint8_t *mask, int64_t rows,
                                              int64_t cols, float p, float s, uint64_t seed,
                                              uint64_t stream, int64_t row0)
{
    GRID_STRIDE(i, rows * cols)
    {
        int64_t r = i / cols, c = i % cols;
        uint64_t counter = (uint64_t)((row0 + r) * cols + c);
        uint8_t keep = rng_to_unit(rng_hash(seed, stream, counter)) >= p;
        mask[i] = keep;
        y[i] = keep ? x[i] * s : 0.0f;
    }
}

static __global__ void dropout_backward_kernel(const float *dy, const uint8_t *mask, float *dx,
                                               int64_t n, float s)
{
    GRID_STRIDE(i, n)
    {
        dx[i] = mask[i] ? dy[i] * s : 0.0f;
    }
}

void tp_cuda_dropout_forward(tp_backend_t *be, const float *x, float *y, uint8_t *mask,
                             int64_t rows, int64_t cols, float p, uint64_t seed, uint64_t stream,
                             int64_t row0)
{
    int64_t n = rows * cols;
    if (n <= 0) return;
    float s = 1.0f / (1.0f - p); // on the host, exactly as backend_ref.c
    dropout_forward_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>(
        x, y, mask, rows, cols, p, s, seed, stream, row0);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_dropout_backward(tp_backend_t *be, const float *dy, const uint8_t *mask, float *dx,
                              int64_t n, float p)
{
    if (n <= 0) return;
    float s = 1.0f / (1.0f - p);
    dropout_backward_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>(
        dy, mask, dx, n, s);
    TP_CUDA_LAUNCHED();
}

// ---- softmax cross-entropy: one block per row (vocabularies of 50k and more) -----------------
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
static int xent_threads(int64_t C)
{
    int64_t t = (C / 8 + 31) / 32 * 32;
    return (int)(t < 32 ? 32 : t > 512 ? 512 : t);
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

static __global__ void softmax_xent_forward_kernel(const float *logits, const int32_t *labels,
                                                   float *probs, float *loss, int64_t B, int64_t C)
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
static __global__ void softmax_xent_backward_kernel(const float *probs, const int32_t *labels,
                                                    G *dlogits, int64_t B, int64_t C, float scale)
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
static __global__ void xent_forward_kernel(const L *logits, int64_t ld, const int32_t *labels,
                                           float *lse, float *loss, int64_t B, int64_t C)
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
static __global__ void xent_backward_kernel(const L *logits, int64_t ld, const float *lse,
                                            const int32_t *labels, L *dlogits, int64_t B, int64_t C,
                                            float scale)
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
    unsigned g = (unsigned)(B < MAX_BLOCKS ? B : MAX_BLOCKS);
    xent_forward_kernel<L>
        <<<g, xent_threads(C), 0, tp_cuda_stream(be)>>>(logits, ld, labels, lse, loss, B, C);
    TP_CUDA_LAUNCHED();
}

template <typename L>
static void xent_backward(tp_backend_t *be, const L *logits, int64_t ld, const float *lse,
                          const int32_t *labels, L *dlogits, int64_t B, int64_t C, float scale)
{
    if (B <= 0 || C <= 0) return;
    unsigned g = (unsigned)(B < MAX_BLOCKS ? B : MAX_BLOCKS);
    xent_backward_kernel<L><<<g, xent_threads(C), 0, tp_cuda_stream(be)>>>(logits, ld, lse, labels,
                                                                           dlogits, B, C, scale);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_xent_forward(tp_backend_t *be, const float *logits, int64_t ld, const int32_t *labels,
                          float *lse, float *loss, int64_t B, int64_t C)
{
    xent_forward(be, logits, ld, labels, lse, loss, B, C);
}

void tp_cuda_xent_backward(tp_backend_t *be, const float *logits, int64_t ld, const float *lse,
                           const int32_t *labels, float *dlogits, int64_t B, int64_t C, float scale)
{
    xent_backward(be, logits, ld, lse, labels, dlogits, B, C, scale);
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
    unsigned g = (unsigned)(B < MAX_BLOCKS ? B : MAX_BLOCKS);
    softmax_xent_forward_kernel<<<g, xent_threads(C), 0, tp_cuda_stream(be)>>>(logits, labels,
                                                                               probs, loss, B, C);
    TP_CUDA_LAUNCHED();
}

template <typename G>
static void softmax_xent_backward(tp_backend_t *be, const float *probs, const int32_t *labels,
                                  G *dlogits, int64_t B, int64_t C, float scale)
{
    if (B <= 0 || C <= 0) return;
    unsigned g = (unsigned)(B < MAX_BLOCKS ? B : MAX_BLOCKS);
    softmax_xent_backward_kernel<G>
        <<<g, xent_threads(C), 0, tp_cuda_stream(be)>>>(probs, labels, dlogits, B, C, scale);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_softmax_xent_backward(tp_backend_t *be, const float *probs, const int32_t *labels,
                                   float *dlogits, int64_t B, int64_t C, float scale)
{
    softmax_xent_backward(be, probs, labels, dlogits, B, C, scale);
}

// ---- sum of squares: fixed chunks summed in double, then the chunks in a fixed tree ----------

// SQUARE: sum of squares (gradient norms); else the plain sum (a step's per-target losses).
template <bool SQUARE>
static __global__ void chunk_sums_kernel(const float *x, int64_t n, double *partial,
                                         int64_t nchunks)
{
    __shared__ double sh[32];
    for (int64_t k = blockIdx.x; k < nchunks; k += gridDim.x) {
        int64_t start = k * SUMSQ_CHUNK;
        int64_t end = start + SUMSQ_CHUNK < n ? start + SUMSQ_CHUNK : n;
        double s = 0.0;
        for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x)
            s += SQUARE ? (double)x[i] * (double)x[i] : (double)x[i];
        s = block_sum(s, sh);
        if (threadIdx.x == 0) partial[k] = s;
    }
}

// One block: thread t sums chunks t, t + blockDim, ... in order, then the block's tree. Stores
// or adds the total to *out, on the device: nobody waits for it.
static __global__ void __launch_bounds__(1024)
    chunk_total_kernel(const double *partial, int64_t nchunks, double *out, bool accumulate)
{
    __shared__ double sh[32];
    double s = 0.0;
    for (int64_t k = threadIdx.x; k < nchunks; k += blockDim.x)
        s += partial[k];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) *out = accumulate ? *out + s : s;
}

template <bool SQUARE>
static void chunked_sum(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate)
{
    cudaStream_t st = tp_cuda_stream(be);
    int64_t nchunks = n > 0 ? (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK : 0;
    // Stream-ordered scratch: a later op reusing slot 0 runs after these kernels.
    double *partial = (double *)tp_cuda_scratch(be, 0, (size_t)(nchunks + 1) * sizeof(double));
    if (nchunks > 0) {
        unsigned g = (unsigned)(nchunks < MAX_BLOCKS ? nchunks : MAX_BLOCKS);
        chunk_sums_kernel<SQUARE><<<g, RED_THREADS, 0, st>>>(x, n, partial, nchunks);
        TP_CUDA_LAUNCHED();
    }
    chunk_total_kernel<<<1, 1024, 0, st>>>(partial, nchunks, out, accumulate);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_sumsq_to(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate)
{
    chunked_sum<true>(be, x, n, out, accumulate);
}

void tp_cuda_sum_to(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate)
{
    chunked_sum<false>(be, x, n, out, accumulate);
}

// Every thread derives the factor from the device-side sum of squares: no host round trip. The
// arithmetic is tp_clip_factor's (double sqrt and division, then one rounding to float).
static __global__ void clip_by_norm_kernel(float *x, int64_t n, const double *sumsq,
                                           double max_norm)
{
    double norm = sqrt(*sumsq);
    if (!(norm > max_norm)) return;
    float s = (float)(max_norm / (norm + 1e-6));
    GRID_STRIDE(i, n)
    {
        x[i] *= s;
    }
}

void tp_cuda_clip_by_norm(tp_backend_t *be, float *x, int64_t n, const double *sumsq,
                          double max_norm)
{
    clip_by_norm_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>(
        x, n, sumsq, max_norm);
    TP_CUDA_LAUNCHED();
}

// ---- elementwise --------------------------------------------------------------------------------

static __global__ void scale_kernel(float *x, float alpha, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        x[i] *= alpha;
    }
}

static __global__ void fill_kernel(float *x, float value, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        x[i] = value;
    }
}

static __global__ void axpy_kernel(float *y, const float *x, float alpha, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        y[i] += alpha * x[i];
    }
}

static __global__ void add_kernel(const float *a, const float *b, float *out, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        out[i] = a[i] + b[i];
    }
}

void tp_cuda_scale(tp_backend_t *be, float *x, float alpha, int64_t n)
{
    if (n <= 0) return;
    scale_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>(x, alpha, n);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_fill(tp_backend_t *be, float *x, float value, int64_t n)
{
    if (n <= 0) return;
    fill_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>(x, value, n);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_copy(tp_backend_t *be, float *dst, const float *src, int64_t n)
{
    if (n <= 0 || dst == src) return;
    TP_CUDA_FATAL(cudaMemcpyAsync(dst, src, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice,
                                  tp_cuda_stream(be)));
}

static __global__ void to_bf16_kernel(const float *x, __nv_bfloat16 *y, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        cval_put(y + i, x[i]);
    }
}

void tp_cuda_to_compute(tp_backend_t *be, const float *x, tp_cval_t *y, int64_t n)
{
    if (tp_cuda_precision(be) != TP_PREC_BF16) {
        tp_cuda_copy(be, tp_cval_f32(y), x, n); // nothing when y is x
        return;
    }
    if (n <= 0) return;
    to_bf16_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>(
        x, cval_bf16(y), n);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_axpy(tp_backend_t *be, float *y, const float *x, float alpha, int64_t n)
{
    if (n <= 0) return;
    axpy_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>(y, x, alpha, n);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_add(tp_backend_t *be, const float *a, const float *b, float *out, int64_t n)
{
    if (n <= 0) return;
    add_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>(a, b, out, n);
    TP_CUDA_LAUNCHED();
}

// ---- optimizers (tp_adamw_elem, tp_sgd_elem) -------------------------------------------------

static __global__ void adamw_kernel(float *p, const float *g, float *m, float *v, int64_t n,
                                    float lr, float b1, float b2, float eps, float wd, float bc1,
                                    float bc2)
{
    GRID_STRIDE(i, n)
    {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi / bc1, vhat = vi / bc2;
        float pi = p[i];
        p[i] = pi - lr * (mhat / (sqrtf(vhat) + eps) + wd * pi);
    }
}

static __global__ void sgd_kernel(float *p, const float *g, float *buf, int64_t n, float lr,
                                  float mu, float wd, bool nesterov, bool first)
{
    GRID_STRIDE(i, n)
    {
        float pi = p[i];
        float gi = g[i] + wd * pi;
        float b = first ? gi : mu * buf[i] + gi;
        buf[i] = b;
        p[i] = pi - lr * (nesterov ? gi + mu * b : b);
    }
}

void tp_cuda_adamw(tp_backend_t *be, float *p, const float *g, float *m, float *v, int64_t n,
                   float lr, float beta1, float beta2, float eps, float wd, float bc1, float bc2)
{
    if (n <= 0) return;
    adamw_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>(
        p, g, m, v, n, lr, beta1, beta2, eps, wd, bc1, bc2);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_sgd(tp_backend_t *be, float *p, const float *g, float *buf, int64_t n, float lr,
                 float momentum, float wd, bool nesterov, bool first)
{
    if (n <= 0) return;
    sgd_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>(
        p, g, buf, n, lr, momentum, wd, nesterov, first);
    TP_CUDA_LAUNCHED();
}
