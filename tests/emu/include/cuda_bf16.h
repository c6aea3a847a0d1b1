/* bfloat16 for the CPU emulation (tests/emu/README.md): the conversions the kernels use, with
 * CUDA's rounding (to nearest, ties to even; NaN stays NaN), which runtime/bf16.h implements for
 * the host side of compute copies: one implementation for both. */
#ifndef TP_EMU_CUDA_BF16_H
#define TP_EMU_CUDA_BF16_H

#include <cuda_runtime.h>

#include "bf16.h"

struct __nv_bfloat16 {
    uint16_t x;
};

static inline __nv_bfloat16 __float2bfloat16(float f)
{
    __nv_bfloat16 r;
    r.x = tp_bf16_from_float(f);
    return r;
}

static inline float __bfloat162float(__nv_bfloat16 b)
{
    return tp_bf16_to_float(b.x);
}

static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b)
{
    return b.x;
}

#endif
