// Convolution and pooling ops of the CUDA backend: im2col and its adjoint col2im (stride 1,
// "same" padding, k odd), swap01, k x k max pooling. Semantics of runtime/backend_ref.c; the
// backward ops are gathers (one thread per input pixel summing in the reference's order), so
// they need no atomics and give the same bits on every run.
#include <float.h>
#include <stdint.h>

#include "cuda_common.h"
#include "cuda_ops.h"

#define THREADS    256
#define MAX_BLOCKS 32768 // grid-stride loops cover the rest

static unsigned blocks_for(int64_t n)
{
    int64_t b = (n + THREADS - 1) / THREADS;
    return (unsigned)(b < MAX_BLOCKS ? b : MAX_BLOCKS);
}

#define GRID_STRIDE(i, n)                                                                          \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

// col [C*k*k, N = B*H*W]: col[((c*k + ki)*k + kj), (b*H + h)*W + w] = x[b, c, h+ki-pad, w+kj-pad]
// or 0 outside the image (tp_im2col_src).
static __global__ void im2col_kernel(const float *x, float *col, int64_t B, int64_t C, int64_t H,
                                     int64_t W, int64_t k)
{
    int64_t N = B * H * W, pad = k / 2;
    GRID_STRIDE(i, C * k * k * N)
    {
        int64_t row = i / N, pos = i % N;
        int64_t c = row / (k * k), ki = (row / k) % k, kj = row % k;
        int64_t b = pos / (H * W), h = (pos / W) % H, w = pos % W;
        int64_t ih = h + ki - pad, iw = w + kj - pad;
        col[i] = ih < 0 || ih >= H || iw < 0 || iw >= W ? 0.0f : x[((b * C + c) * H + ih) * W + iw];
    }
}

// dx[b, c, ih, iw] = sum over (ki, kj), in that order, of the col entries im2col copied the pixel
// to: output pixel (h, w) = (ih - ki + pad, iw - kj + pad) when inside the image. Overwrites.
static __global__ void col2im_kernel(const float *col, float *dx, int64_t B, int64_t C, int64_t H,
                                     int64_t W, int64_t k)
{
    int64_t N = B * H * W, pad = k / 2;
    GRID_STRIDE(i, B * C * H * W)
    {
        int64_t iw = i % W, ih = (i / W) % H, c = (i / (H * W)) % C, b = i / (C * H * W);
        float acc = 0.0f;
        for (int64_t ki = 0; ki < k; ki++) {
            int64_t h = ih - ki + pad;
            if (h < 0 || h >= H) continue;
            for (int64_t kj = 0; kj < k; kj++) {
                int64_t w = iw - kj + pad;
                if (w < 0 || w >= W) continue;
                acc += col[((c * k + ki) * k + kj) * N + (b * H + h) * W + w];
            }
        }
        dx[i] = acc;
    }
}

// dst[b][a][d] = src[a][b][d]; one thread per destination element (coalesced writes).
static __global__ void swap01_kernel(const float *src, float *dst, int64_t A, int64_t Bd, int64_t D)
{
    GRID_STRIDE(i, A * Bd * D)
    {
        int64_t d = i % D, t = i / D;
        int64_t a = t % A, b = t / A;
        dst[i] = src[(a * Bd + b) * D + d];
    }
}

// One thread per output; the window is scanned row by row and the first maximum wins
// (tp_maxpool_plane), argmax being the offset within the (b, c) plane.
static __global__ void maxpool_forward_kernel(const float *x, float *y, int32_t *argmax, int64_t BC,
                                              int64_t H, int64_t W, int64_t k)
{
    int64_t Ho = H / k, Wo = W / k;
    GRID_STRIDE(o, BC * Ho * Wo)
    {
        int64_t j = o % Wo, i = (o / Wo) % Ho, bc = o / (Ho * Wo);
        const float *xp = x + bc * H * W;
        float best = -FLT_MAX;
        int32_t at = (int32_t)((i * k) * W + j * k);
        for (int64_t di = 0; di < k; di++)
            for (int64_t dj = 0; dj < k; dj++) {
                int64_t off = (i * k + di) * W + j * k + dj;
                if (xp[off] > best) {
                    best = xp[off];
                    at = (int32_t)off;
                }
            }
        y[o] = best;
        argmax[o] = at;
    }
}

// Windows do not overlap: input pixel (ih, iw) can only be the argmax of window (ih/k, iw/k).
// 0.0f + dy reproduces the reference's memset-then-add (including the sign of zero). Overwrites.
static __global__ void maxpool_backward_kernel(const float *dy, const int32_t *argmax, float *dx,
                                               int64_t BC, int64_t H, int64_t W, int64_t k)
{
    int64_t Ho = H / k, Wo = W / k;
    GRID_STRIDE(i, BC * H * W)
    {
        int64_t iw = i % W, ih = (i / W) % H, bc = i / (H * W);
        int64_t oi = ih / k, oj = iw / k;
        float v = 0.0f;
        if (oi < Ho && oj < Wo) {
            int64_t o = (bc * Ho + oi) * Wo + oj;
            if ((int64_t)argmax[o] == ih * W + iw) v = 0.0f + dy[o];
        }
        dx[i] = v;
    }
}

void tp_cuda_im2col(tp_backend_t *be, const float *x, float *col, int64_t B, int64_t C, int64_t H,
                    int64_t W, int64_t k)
{
    int64_t n = C * k * k * B * H * W;
    if (n <= 0) return;
    im2col_kernel<<<blocks_for(n), THREADS, 0, tp_cuda_stream(be)>>>(x, col, B, C, H, W, k);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_col2im(tp_backend_t *be, const float *col, float *dx, int64_t B, int64_t C, int64_t H,
                    int64_t W, int64_t k)
{
    int64_t n = B * C * H * W;
    if (n <= 0) return;
    col2im_kernel<<<blocks_for(n), THREADS, 0, tp_cuda_stream(be)>>>(col, dx, B, C, H, W, k);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_swap01(tp_backend_t *be, const float *src, float *dst, int64_t A, int64_t Bd,
                    int64_t D)
{
    int64_t n = A * Bd * D;
    if (n <= 0) return;
    swap01_kernel<<<blocks_for(n), THREADS, 0, tp_cuda_stream(be)>>>(src, dst, A, Bd, D);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_maxpool_forward(tp_backend_t *be, const float *x, float *y, int32_t *argmax, int64_t B,
                             int64_t C, int64_t H, int64_t W, int64_t k)
{
    if (k <= 0) return;
    int64_t n = B * C * (H / k) * (W / k);
    if (n <= 0) return;
    maxpool_forward_kernel<<<blocks_for(n), THREADS, 0, tp_cuda_stream(be)>>>(x, y, argmax, B * C,
                                                                              H, W, k);
    TP_CUDA_LAUNCHED();
}

void tp_cuda_maxpool_backward(tp_backend_t *be, const float *dy, const int32_t *argmax, float *dx,
                              int64_t B, int64_t C, int64_t H, int64_t W, int64_t k)
{
    int64_t n = B * C * H * W;
    if (n <= 0 || k <= 0) return;
    maxpool_backward_kernel<<<blocks_for(n), THREADS, 0, tp_cuda_stream(be)>>>(dy, argmax, dx,
                                                                               B * C, H, W, k);
    TP_CUDA_LAUNCHED();
}
