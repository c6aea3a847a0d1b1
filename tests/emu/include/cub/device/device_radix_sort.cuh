/* cub::DeviceRadixSort::SortPairs for the CPU emulation: a stable sort by key, which is what
 * CUB's LSD radix sort gives (equal keys keep their input order). */
#ifndef TP_EMU_CUB_RADIX_SORT
#define TP_EMU_CUB_RADIX_SORT

#include <algorithm>
#include <utility>
#include <vector>

#include <cuda_runtime.h>

namespace cub
{
struct DeviceRadixSort {
    template <class K, class V, class N>
    static cudaError_t SortPairs(void *temp, size_t &temp_bytes, const K *keys_in, K *keys_out,
                                 const V *vals_in, V *vals_out, N n, int begin_bit = 0,
                                 int end_bit = (int)sizeof(K) * 8, cudaStream_t stream = 0)
    {
        (void)stream;
        if (!temp) {
            temp_bytes = 16;
            return cudaSuccess;
        }
        if (begin_bit < 0 || end_bit > (int)sizeof(K) * 8 || begin_bit >= end_bit)
            return cudaErrorInvalidValue;
        std::vector<std::pair<K, V>> v((size_t)n);
        for (size_t i = 0; i < (size_t)n; i++)
            v[i] = {keys_in[i], vals_in[i]};
        uint64_t mask =
            end_bit - begin_bit >= 64 ? ~0ull : ((1ull << (end_bit - begin_bit)) - 1) << begin_bit;
        std::stable_sort(v.begin(), v.end(),
                         [mask](const std::pair<K, V> &a, const std::pair<K, V> &b) {
                             return ((uint64_t)a.first & mask) < ((uint64_t)b.first & mask);
                         });
        for (size_t i = 0; i < (size_t)n; i++) {
            keys_out[i] = v[i].first;
            vals_out[i] = v[i].second;
        }
        return cudaSuccess;
    }
};
} // namespace cub

#endif
