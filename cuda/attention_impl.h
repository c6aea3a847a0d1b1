/* Private to the attention kernels (kernels_transformer.cu: fp32, and kernels_attention_tc.cu:
 * bf16 on tensor cores): their arguments, the launch helper, and the tensor-core entry points.
 * Included only by .cu files (C++). */
#ifndef TP_CUDA_ATTENTION_IMPL_H
#define TP_CUDA_ATTENTION_IMPL_H

#include "cuda_common.h"
#include "cuda_vec.h"

#include <stdint.h>

constexpr int kAttThreads = 256;

/* Forward and decode: q, k, v, out point at head 0 of batch 0; row r of batch b at
 * base + b * bstride + r * rstride (in elements). Query rows are 0..nq-1 at positions
 * qpos0 + row; keys 0..nkv-1; key j is visible to position t when j <= t. */
struct AttFwdArgs {
    const void *q, *k, *v; /* bf16 with in_bf16 (the forward's qkv compute copy), else float */
    void *out;             /* a compute copy (cuda_vec.h's cval_put with cbf16) */
    float *lse;            /* [B, NH, nq], or NULL */
    int64_t q_bstride, q_rstride, kv_bstride, kv_rstride, o_bstride, o_rstride;
    int NH, hs, nq, nkv, qpos0;
    float scale;
    bool vec;     /* tensor-core tile loads may copy 16 bytes at a time (att_vec8_ok) */
    bool pairs;   /* the tensor-core kernel may store out's bf16 in pairs (att_pairs_ok) */
    bool in_bf16; /* q, k and v are bf16 (the tensor-core kernel takes nothing else) */
    bool cbf16;   /* the compute copies' element type: bf16, else float */
};

struct AttBwdArgs {
    const void *qkv;  /* the forward's qkv, a compute copy */
    const void *dout; /* the output's gradient [B, T, C], a compute copy */
    const float *lse;
    const void *out; /* the forward's output [B, T, C], a compute copy: the tc path's D_i */
    void *dqkv;      /* a compute copy */
    float *dsum;     /* D_i [B, NH, T], written before the kernels that read it */
    const __nv_bfloat16 *dout_c; /* tc path: dout (bf16 there) */
    int T, C, NH, hs;
    float scale;
    bool vec;   /* tc path: qkv and dout_c rows may be copied 16 bytes at a time (att_vec8_ok) */
    bool pairs; /* tc path: dqkv's bf16 may be stored in pairs (att_pairs_ok) */
    bool cbf16; /* the compute copies' element type (qkv, dout, out, dqkv): bf16, else float */
};

/* The tensor-core kernels may copy head rows of bf16 16 bytes at a time: every pointer 16-byte
 * aligned, the row strides and the head size multiples of 8 elements. */
static inline bool att_vec8_ok(const void *p0, const void *p1, const void *p2, int64_t s0,
                               int64_t s1, int hs)
{
    return ((uintptr_t)p0 | (uintptr_t)p1 | (uintptr_t)p2) % 16 == 0 && s0 % 8 == 0 &&
           s1 % 8 == 0 && hs % 8 == 0;
}

/* The tensor-core kernels may store two bf16 channels of a row as one 4-byte write: the array
 * 4-byte aligned, its row stride and the head size even. */
static inline bool att_pairs_ok(const void *p, int64_t rstride, int hs)
{
    return (uintptr_t)p % 4 == 0 && rstride % 2 == 0 && hs % 2 == 0;
}

/* The tensor-core backward's query and key tiles (and the forward's key tiles; its query tiles
 * are 128 rows), and the largest head size they take. */
constexpr int kTcBM = 64, kTcBN = 64, kTcMaxHead = 64;

/* Each kernel that needs more than 48 KiB of dynamic shared memory opts in first (cheap; per
 * call keeps it correct on whichever device is current). static: every file launches its own
 * kernels, so each keeps its own copy. */
template <typename Kernel, typename Args>
static void launch_att(Kernel kernel, dim3 grid, size_t smem, cudaStream_t st, const Args &args,
                       int threads = kAttThreads)
{
    TP_CUDA_FATAL(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    kernel<<<grid, threads, smem, st>>>(args);
    TP_CUDA_LAUNCHED();
}

/* kernels_attention_tc.cu, for runtime.precision "bf16" and head sizes up to kTcMaxHead: the
 * forward over B_NH heads (B * NH) and their query tiles of 128, and the backward's three
 * kernels (D from dout and out, dQ, then dK and dV). */
void tp_cuda_attention_forward_tc(int hs, int B_NH, cudaStream_t st, const AttFwdArgs &a);
void tp_cuda_attention_backward_tc(int hs, int B_NH, int T, cudaStream_t st, const AttBwdArgs &a);

#endif
