// Elementwise ops, reductions (bias gradients, sum of squares) and the optimizer updates of the
// CUDA backend (softmax cross-entropy: kernels_xent.cu). Each computes what runtime/backend_ref.c
// computes (the scalar formulas of runtime/ops_math.h are ported below); reductions use a fixed
// order (fixed block sizes and chunking, no atomics), so results are the same on every run. The _c
// ops read or write compute copies: their kernels are templates on the copy's element type
// (cuda_vec.h), the float instantiation being the plain op's kernel, so under "fp32" both give the
// same bits.
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
                                    float bc2, tp_clip_t clip)
{
    // The clipping factor from the sum of squares in device memory (no host round trip), once
    // per thread for its grid-stride elements.
    const float s = tp_clip_scale(clip);
    GRID_STRIDE(i, n)
    {
        float gi = __fmul_rn(g[i], s); // rounded as a clipped gradient in memory would be
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
                                  float mu, float wd, bool nesterov, bool first, tp_clip_t clip)
{
    const float s = tp_clip_scale(clip);
    GRID_STRIDE(i, n)
    {
        float pi = p[i];
        float gi = __fmul_rn(g[i], s) + wd * pi;
        float b = first ? gi : mu * buf[i] + gi;
        buf[i] = b;
        p[i] = pi - lr * (nesterov ? gi + mu * b : b);
    }
}

void tp_cuda_adamw(tp_backend_t *be, float *p, const float *g, float *m, float *v, int64_t n,
                   float lr, float beta1, float beta2, float eps, float wd, float bc1, float bc2,
                   tp_clip_t clip)
{
    if (n <= 0) return;
    adamw_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>(
        p, g, m, v, n, lr, beta1, beta2, eps, wd, bc1, bc2, clip);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_sgd(tp_backend_t *be, float *p, const float *g, float *buf, int64_t n, float lr,
                 float momentum, float wd, bool nesterov, bool first, tp_clip_t clip)
{
    if (n <= 0) return;
    sgd_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, tp_cuda_stream(be)>>>(
        p, g, buf, n, lr, momentum, wd, nesterov, first, clip);
    TP_CUDA_LAUNCHED();
}
