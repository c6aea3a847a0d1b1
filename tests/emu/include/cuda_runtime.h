/* The CUDA runtime as far as Tulpar's kernels use it, for running them on the CPU
 * (tests/emu/README.md): every CUDA thread of a block is a fiber of one host thread
 * (emu_runtime.cpp), blocks run one after another, "device" memory is host memory. Only what
 * cuda/kernels_*.cu touch is here; anything else fails to compile, which is the point. */
#ifndef TP_EMU_CUDA_RUNTIME_H
#define TP_EMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef __cplusplus
#error "the CUDA emulation is C++ (kernels are compiled as C++ by tests/emu/prep.py)"
#endif

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3 {
    unsigned x, y, z;
};
/* CUDA's 16-byte vector. A load through a misaligned float4 pointer faults on a GPU: kernels
 * load them through cuda/cuda_vec.h, which checks the alignment here. */
struct alignas(16) float4 {
    float x, y, z, w;
};
[[noreturn]] void emu_fail(const char *what);
static inline float4 make_float4(float x, float y, float z, float w)
{
    return float4{x, y, z, w};
}

typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorNotReady = 600 };
typedef struct emu_stream *cudaStream_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost,
    cudaMemcpyHostToDevice,
    cudaMemcpyDeviceToHost,
    cudaMemcpyDeviceToDevice,
    cudaMemcpyDefault
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };

/* Under emu_ names: a test binary may also link the real CUDA runtime (the CUDA backend of the
 * same build), whose symbols these must not replace. */
#define cudaGetErrorString  emu_cudaGetErrorString
#define cudaGetLastError    emu_cudaGetLastError
#define cudaPeekAtLastError emu_cudaPeekAtLastError
#define cudaMemcpyAsync     emu_cudaMemcpyAsync
#define cudaMemsetAsync     emu_cudaMemsetAsync
#define __syncthreads       emu_syncthreads

extern "C" {
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t st);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t st);
/* The opt-in limit checked: H100's 227 KiB of shared memory per block. */
cudaError_t emu_set_max_dynamic_smem(int bytes);
}
template <class K> cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute, int v)
{
    return emu_set_max_dynamic_smem(v);
}

/* ---- device side ---- */
struct emu_ctx {
    uint3 tid, bid;
    dim3 bdim, gdim;
};
extern emu_ctx emu_cur; /* the running fiber's indices (one host thread runs every fiber) */
#define threadIdx (emu_cur.tid)
#define blockIdx  (emu_cur.bid)
#define blockDim  (emu_cur.bdim)
#define gridDim   (emu_cur.gdim)

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
/* Blocks run one at a time, so a function-static array is exactly one block's shared memory. */
#define __shared__ static

extern "C" {
void __syncthreads(void);
#define __syncwarp(...) emu_warp_sync(0xffffffffu)
/* Barrier of the calling warp's lanes for a shuffle with `mask`; aborts when the mask names a
 * lane that has exited or does not exist (undefined behaviour on a GPU). */
void emu_warp_sync(unsigned mask);
/* Per-lane exchange slot of the calling warp: 8 bytes per lane. */
void *emu_lane_slot(unsigned lane);
unsigned emu_lane(void);
void *emu_dynamic_smem(void);
/* cp.async as a GPU may order it: the 16 bytes (zeros when src_bytes is 0) are read at issue and
 * land in dst only when the calling thread's cp.async.wait_group lets them (groups formed at
 * commit; wait(n) lands all but the n most recent), so reading before waiting shows. */
void emu_cp_async16(void *dst, const void *src, int src_bytes);
void emu_cp_async_commit(void);
void emu_cp_async_wait(int n);
void emu_run(void (*body)(void *), void *arg, dim3 grid, dim3 block, size_t smem);
}

template <class T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask)
{
    static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
    unsigned lane = emu_lane();
    memcpy(emu_lane_slot(lane), &v, sizeof v);
    emu_warp_sync(mask);
    T r;
    memcpy(&r, emu_lane_slot(lane ^ (unsigned)lane_mask), sizeof r);
    emu_warp_sync(mask);
    return r;
}

static inline float __fmaf_rn(float a, float b, float c)
{
    return fmaf(a, b, c);
}
/* volatile: the host compiler must not contract a * b + c into an FMA where the kernel asked
 * for separately rounded operations. */
static inline float __fmul_rn(float a, float b)
{
    volatile float r = a * b;
    return r;
}
static inline float __fadd_rn(float a, float b)
{
    volatile float r = a + b;
    return r;
}
static inline float __fsub_rn(float a, float b)
{
    volatile float r = a - b;
    return r;
}
static inline float __fdiv_rn(float a, float b)
{
    volatile float r = a / b;
    return r;
}
static inline float __int_as_float(int i)
{
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}
static inline float __uint_as_float(unsigned int u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline int min(int a, int b)
{
    return a < b ? a : b;
}
static inline int64_t min(int64_t a, int64_t b)
{
    return a < b ? a : b;
}
static inline int max(int a, int b)
{
    return a > b ? a : b;
}
static inline int64_t max(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* kernel<<<grid, block, smem, stream>>>(args) becomes emu_launch([&] { kernel(args); }, grid,
 * block, smem, stream) (tests/emu/prep.py). */
template <class F>
void emu_launch(F f, dim3 grid, dim3 block, size_t smem = 0, cudaStream_t stream = 0)
{
    (void)stream;
    emu_run([](void *p) { (*(F *)p)(); }, &f, grid, block, smem);
}

#endif
