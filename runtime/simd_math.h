/* Vectorisable math for the cpu backend's hot loops: glibc's expf and tanhf are scalar calls,
 * which dominate GELU and softmax if used there. Also the multiversioning macro that builds a
 * kernel for AVX-512, AVX2+FMA and baseline x86-64 and lets the loader pick. */
#ifndef TP_SIMD_MATH_H
#define TP_SIMD_MATH_H

#include <stdint.h>

/* The build targets baseline x86-64 (SSE2); the attention kernels, the only compute-bound loops
 * here, are also compiled for AVX2+FMA and AVX-512 and the loader picks the best the machine has
 * (GCC function multiversioning). The choice is fixed per machine, so results stay repeatable;
 * they may differ in the last bits between machines of different ISA (FMA contraction). Build
 * with -DTP_NO_SIMD_CLONES to get the baseline version only. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(TP_NO_SIMD_CLONES)
#define TP_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TP_SIMD_CLONES
#endif
/* The block kernels must be inlined into the cloned callers to get their ISA and constant W. */
#define TP_INLINE static inline __attribute__((always_inline))

/* exp(x) for x <= 0 in a form the compiler vectorises (glibc's expf is scalar): Cody-Waite
 * reduction x = k ln2 + r, |r| <= ln2/2, and Cephes' polynomial. Measured over every fp32 in
 * [-87, 0]: within 1.02 ulp of exp (with or without FMA). */
TP_INLINE float tp_exp_neg(float x)
{
    x = x < -87.0f ? -87.0f : x; /* exp(-87) ~ 2^-125.5: still normal, and negligible in a sum */
    float kf = (x * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest (2^23 + 2^22) */
    float r = x - kf * 0.693359375f + kf * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } two_k = {.i = ((int32_t)kf + 127) << 23};
    return p * two_k.f;
}

/* tanh(u) through tp_exp_neg: (1 - e) / (1 + e) with e = exp(-2|u|), and the odd Taylor
 * polynomial below |u| = 1/16 where 1 - e would cancel (truncation error < 1e-12 there). */
TP_INLINE float tp_tanh_fast(float u)
{
    float a = u < 0.0f ? -u : u;
    float e = tp_exp_neg(-2.0f * a);
    float big = (1.0f - e) / (1.0f + e);
    float a2 = a * a;
    float small = a * (1.0f + a2 * (-1.0f / 3.0f + a2 * (2.0f / 15.0f + a2 * (-17.0f / 315.0f))));
    float t = a < 0.0625f ? small : big;
    return u < 0.0f ? -t : t;
}

#endif
