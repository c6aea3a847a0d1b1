/* bfloat16 for the CPU emulation (tests/emu/README.md): the conversions the kernels use, with
 * CUDA's rounding (to nearest, ties to even; NaN stays NaN). */
#ifndef TP_EMU_CUDA_BF16_H
#define TP_EMU_CUDA_BF16_H

#include <cuda_runtime.h>

struct __nv_bfloat16 {
    uint16_t x;
};

static inline __nv_bfloat16 __float2bfloat16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    __nv_bfloat16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        r.x = (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
        return r;
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    r.x = (uint16_t)(u >> 16);
    return r;
}

static inline float __bfloat162float(__nv_bfloat16 b)
{
    uint32_t u = (uint32_t)b.x << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b)
{
    return b.x;
}

#endif
