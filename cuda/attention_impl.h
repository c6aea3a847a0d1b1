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
    const float *q, *k, *v;
    void *out;  /* a compute copy (cuda_vec.h's cval_put with cbf16) */
    float *lse; /* [B, NH, nq], or NULL */
    int64_t q_bstride, q_rstride, kv_bstride, kv_rstride, o_bstride, o_rstride;
    int NH, hs, nq, nkv, qpos0;
    float scale;
    bool vec;   /* tensor-core tile loads may read float4 (att_vec_ok) */
    bool cbf16; /* the compute copies' element type: bf16, else float */
};

struct AttBwdArgs {
    const float *qkv, *dout, *lse;
    const void *out; /* the forward's output [B, T, C], a compute copy: the tc path's D_i */
    void *dqkv;      /* a compute copy */
    float *dsum;     /* D_i [B, NH, T], written before the kernels that read it */
    int T, C, NH, hs;
    float scale;
    bool vec;   /* of q, k, v and dout; out and dqkv are accessed element by element */
    bool cbf16; /* out's and dqkv's element type: bf16, else float */
};

/* 16-byte loads of head rows are safe: every pointer 16-byte aligned, every row stride and the
 * head size multiples of 4 floats. */
static inline bool att_vec_ok(const void *p0, const void *p1, const void *p2, int64_t s0,
                              int64_t s1, int hs)
{
    return ((uintptr_t)p0 | (uintptr_t)p1 | (uintptr_t)p2) % 16 == 0 && s0 % 4 == 0 &&
           s1 % 4 == 0 && hs % 4 == 0;
}

/* The tensor-core kernels' query and key tiles, and the largest head size they take. */
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
 * forward over grid (B * NH, query tiles of kTcBM), and the backward's three kernels (D from
 * dout and out, dQ, then dK and dV). */
void tp_cuda_attention_forward_tc(int hs, dim3 grid, cudaStream_t st, const AttFwdArgs &a);
void tp_cuda_attention_backward_tc(int hs, int B_NH, int T, cudaStream_t st, const AttBwdArgs &a);

#endif
