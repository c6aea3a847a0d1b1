/* 16-byte accesses for the memory-bound kernels (CUDA C++ only). A float4 access through an
 * address that is not 16-byte aligned faults on a GPU; under the CPU emulation (tests/emu) the
 * same call checks the alignment and stops with a message, so CI sees such a bug too. */
#ifndef TP_CUDA_VEC_H
#define TP_CUDA_VEC_H

#include <cuda_runtime.h>
#include <stdint.h>

static __device__ __forceinline__ void vec_check(const void *p, const char *what)
{
#ifdef TP_EMU_CUDA_RUNTIME_H
    if ((uintptr_t)p % 16 != 0) emu_fail(what);
#else
    (void)p;
    (void)what;
#endif
}

static __device__ __forceinline__ float4 vec_load4(const float *p)
{
    vec_check(p, "float4 load from an address not 16-byte aligned");
    return *(const float4 *)p;
}

static __device__ __forceinline__ void vec_store4(float *p, float4 v)
{
    vec_check(p, "float4 store to an address not 16-byte aligned");
    *(float4 *)p = v;
}

/* Evict-first (streaming) store, for outputs not read again soon: they then do not push the
 * inputs still to be re-read out of L2. A plain store under the emulation. */
static __device__ __forceinline__ void vec_store4_cs(float *p, float4 v)
{
    vec_check(p, "float4 store to an address not 16-byte aligned");
#ifdef TP_EMU_CUDA_RUNTIME_H
    *(float4 *)p = v;
#else
    __stcs((float4 *)p, v);
#endif
}

#endif
