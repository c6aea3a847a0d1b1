/* bfloat16 on the host: the conversions of compute copies that tests and tools move through
 * tp_backend_upload_compute / download_compute. Rounding is the GPU's (__float2bfloat16: to
 * nearest, ties to even; NaN stays a NaN). */
#ifndef TP_BF16_H
#define TP_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint16_t tp_bf16_from_float(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float tp_bf16_to_float(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* x rounded to bf16 and back: the value a compute copy holds. */
static inline float tp_bf16_round(float f)
{
    return tp_bf16_to_float(tp_bf16_from_float(f));
}

#endif
