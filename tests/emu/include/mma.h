/* nvcuda::wmma for the CPU emulation (tests/emu/README.md). A fragment's element layout across
 * a warp's lanes is unspecified in CUDA, so correct kernels never depend on it; here every lane
 * holds the whole 16 x 16 tile and computes the whole product. The *_sync calls are warp
 * collectives: every lane of the warp must make them (checked), and the alignment CUDA requires
 * (256-bit pointers, ldm a multiple of 16 bytes) is checked too. Only m16n16k16 with bf16
 * inputs and float accumulators, what Tulpar's kernels use. */
#ifndef TP_EMU_MMA_H
#define TP_EMU_MMA_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace nvcuda
{
namespace wmma
{
struct matrix_a {
};
struct matrix_b {
};
struct accumulator {
};
struct row_major {
};
struct col_major {
};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    enum { num_elements = 256 };
    float x[256]; /* element (r, c) at x[r * 16 + c], whatever the layout in memory */
};

[[noreturn]] void emu_wmma_fail(const char *what);

inline void check_ptr(const void *p, unsigned ldm, size_t esize)
{
    if ((uintptr_t)p % 32) emu_wmma_fail("wmma pointer not 256-bit aligned");
    if ((ldm * esize) % 16) emu_wmma_fail("wmma ldm not a multiple of 16 bytes");
}

template <class Use, class T, class L>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, L> &f, float v)
{
    for (float &e : f.x)
        e = v;
}

/* A bf16 tile into x (element (r, c) at x[r * 16 + c]): row-major at p[r * ldm + c], column-major
 * at p[c * ldm + r]; a warp collective. */
inline void load_bf16_tile(float *x, const __nv_bfloat16 *p, unsigned ldm, bool col)
{
    check_ptr(p, ldm, 2);
    emu_warp_sync(0xffffffffu);
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++)
            x[r * 16 + c] = __bfloat162float(col ? p[c * ldm + r] : p[r * ldm + c]);
    emu_warp_sync(0xffffffffu);
}

template <class Use>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, row_major> &f,
                             const __nv_bfloat16 *p, unsigned ldm)
{
    load_bf16_tile(f.x, p, ldm, false);
}

template <class Use>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, col_major> &f,
                             const __nv_bfloat16 *p, unsigned ldm)
{
    load_bf16_tile(f.x, p, ldm, true);
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p,
                             unsigned ldm, layout_t layout)
{
    check_ptr(p, ldm, 4);
    emu_warp_sync(0xffffffffu);
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++)
            f.x[r * 16 + c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
    emu_warp_sync(0xffffffffu);
}

inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f,
                              unsigned ldm, layout_t layout)
{
    check_ptr(p, ldm, 4);
    emu_warp_sync(0xffffffffu);
    if (emu_lane() == 0)
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < 16; c++)
                (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * 16 + c];
    emu_warp_sync(0xffffffffu);
}

/* d = a b + c with fp32 accumulation (the products of bf16 inputs are exact in fp32). */
template <class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
                     const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA> &a,
                     const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB> &b,
                     const fragment<accumulator, 16, 16, 16, float> &c)
{
    emu_warp_sync(0xffffffffu);
    float out[256];
    for (int r = 0; r < 16; r++)
        for (int col = 0; col < 16; col++) {
            float acc = c.x[r * 16 + col];
            for (int k = 0; k < 16; k++)
                acc += a.x[r * 16 + k] * b.x[k * 16 + col];
            out[r * 16 + col] = acc;
        }
    memcpy(d.x, out, sizeof out);
    emu_warp_sync(0xffffffffu);
}
} // namespace wmma
} // namespace nvcuda

#endif
