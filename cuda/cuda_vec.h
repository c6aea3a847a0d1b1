/* Memory accesses of the kernels (CUDA C++ only): 16-byte vectors for the memory-bound kernels,
 * and the elements of compute copies (tp_cval_t, runtime/backend.h). A vector access through an
 * address not aligned to its size faults on a GPU; under the CPU emulation (tests/emu) the same
 * call checks the alignment and stops with a message, so CI sees such a bug too. */
#ifndef TP_CUDA_VEC_H
#define TP_CUDA_VEC_H

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"

static __device__ __forceinline__ void vec_check(const void *p, uintptr_t align, const char *what)
{
#ifdef TP_EMU_CUDA_RUNTIME_H
    if ((uintptr_t)p % align != 0) emu_fail(what);
#else
    (void)p;
    (void)align;
    (void)what;
#endif
}

static __device__ __forceinline__ float4 vec_load4(const float *p)
{
    vec_check(p, 16, "float4 load from an address not 16-byte aligned");
    return *(const float4 *)p;
}

static __device__ __forceinline__ void vec_store4(float *p, float4 v)
{
    vec_check(p, 16, "float4 store to an address not 16-byte aligned");
    *(float4 *)p = v;
}

/* Evict-first (streaming) store, for outputs not read again soon: they then do not push the
 * inputs still to be re-read out of L2. A plain store under the emulation. */
static __device__ __forceinline__ void vec_store4_cs(float *p, float4 v)
{
    vec_check(p, 16, "float4 store to an address not 16-byte aligned");
#ifdef TP_EMU_CUDA_RUNTIME_H
    *(float4 *)p = v;
#else
    __stcs((float4 *)p, v);
#endif
}

/* ---- compute copies ---------------------------------------------------------------------------
 * Their element type is runtime.precision's: float under "fp32", __nv_bfloat16 under "bf16". The
 * math around them stays fp32; only the access converts (to nearest even on the way in, exactly
 * on the way out). Elementwise kernels take the element type as a template parameter (one
 * instantiation per type, chosen at launch); the attention kernels take a flag instead (their
 * stores are a few instructions after a long main loop, and a second instantiation of each
 * would double their compile time and code size). */

static __device__ __forceinline__ void cval_put(float *p, float v)
{
    *p = v;
}
static __device__ __forceinline__ void cval_put(__nv_bfloat16 *p, float v)
{
    *p = __float2bfloat16(v);
}
static __device__ __forceinline__ float cval_get(const float *p)
{
    return *p;
}
static __device__ __forceinline__ float cval_get(const __nv_bfloat16 *p)
{
    return __bfloat162float(*p);
}

/* Element i of a compute copy whose type is a run-time flag (uniform across the grid, so the
 * branch costs no divergence). */
static __device__ __forceinline__ void cval_put(void *p, int64_t i, float v, bool bf16)
{
    if (bf16)
        cval_put((__nv_bfloat16 *)p + i, v);
    else
        cval_put((float *)p + i, v);
}
static __device__ __forceinline__ float cval_get(const void *p, int64_t i, bool bf16)
{
    return bf16 ? cval_get((const __nv_bfloat16 *)p + i) : cval_get((const float *)p + i);
}

/* Four bf16 in one 8-byte store (the bf16 counterpart of a float4 store: same elements per
 * thread, so a loop written for float4 keeps its shape). */
static __device__ __forceinline__ void vec_store4(__nv_bfloat16 *p, float4 v)
{
    vec_check(p, 8, "4 x bf16 store to an address not 8-byte aligned");
    const uint32_t lo = (uint32_t)__bfloat16_as_ushort(__float2bfloat16(v.x)) |
                        (uint32_t)__bfloat16_as_ushort(__float2bfloat16(v.y)) << 16;
    const uint32_t hi = (uint32_t)__bfloat16_as_ushort(__float2bfloat16(v.z)) |
                        (uint32_t)__bfloat16_as_ushort(__float2bfloat16(v.w)) << 16;
#ifdef TP_EMU_CUDA_RUNTIME_H
    const uint32_t w[2] = {lo, hi};
    memcpy(p, w, sizeof w);
#else
    *(uint2 *)p = make_uint2(lo, hi);
#endif
}

/* Four bf16 from one 8-byte load, widened (exactly) to a float4. */
static __device__ __forceinline__ float4 vec_load4(const __nv_bfloat16 *p)
{
    vec_check(p, 8, "4 x bf16 load from an address not 8-byte aligned");
    uint32_t w[2];
#ifdef TP_EMU_CUDA_RUNTIME_H
    memcpy(w, p, sizeof w);
#else
    const uint2 u = *(const uint2 *)p;
    w[0] = u.x;
    w[1] = u.y;
#endif
    // A bf16 is the top half of the float with the same bits.
    return make_float4(__uint_as_float(w[0] << 16), __uint_as_float(w[0] & 0xffff0000u),
                       __uint_as_float(w[1] << 16), __uint_as_float(w[1] & 0xffff0000u));
}

/* Where p stands in its 4-element vector: two arrays (of either element type) can be walked
 * with vector accesses at the same indices exactly when their phases agree. */
template <typename T> static __device__ __forceinline__ int vec_phase(const T *p)
{
    return (int)((uintptr_t)p / sizeof(T) % 4);
}

/* The host's views of a compute copy under "bf16" (under "fp32": tp_cval_f32, backend_impl.h). */
static inline __nv_bfloat16 *cval_bf16(tp_cval_t *p)
{
    return (__nv_bfloat16 *)(void *)p;
}
static inline const __nv_bfloat16 *cval_bf16(const tp_cval_t *p)
{
    return (const __nv_bfloat16 *)(const void *)p;
}

#endif
