/* Launch sizing and the warp reduction shared by kernels_transformer.cu and kernels_layernorm.cu
 * (CUDA C++ only). */
#ifndef TP_CUDA_KERNEL_GRID_H
#define TP_CUDA_KERNEL_GRID_H

#include <cuda_runtime.h>
#include <stdint.h>

namespace
{

constexpr int kThreads = 256;
/* Grid-stride loops cover any size with at most this many blocks per grid dimension. */
constexpr int64_t kMaxBlocks = 65535;

inline unsigned blocks_for(int64_t n, int64_t per_block)
{
    int64_t b = (n + per_block - 1) / per_block;
    return (unsigned)(b < kMaxBlocks ? b : kMaxBlocks);
}

/* Butterfly reductions: every lane ends with the same bits (each step adds the same two values,
 * only in swapped order), so all lanes agree on a row's statistics. */
__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

} // namespace

#endif
