/* Shared by the CUDA backend's files: the backend's stream, scratch and precision, and the
 * check macros. An op cannot return a status (the interface's ops are void, like cuBLAS calls
 * inside a training step), so a failing CUDA call in an op prints file:line with CUDA's own
 * error string and exits: there is no safe way to continue on a device in an unknown state. */
#ifndef TP_CUDA_COMMON_H
#define TP_CUDA_COMMON_H

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend_impl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Implemented in backend_cuda.cu. */
cudaStream_t tp_cuda_stream(tp_backend_t *be);
tp_precision_t tp_cuda_precision(const tp_backend_t *be);
/* Device scratch of at least `bytes`, owned by the backend and reused (grown as needed); valid
 * until the next call on the same stream. `slot` 0..3 selects independent scratch buffers. */
void *tp_cuda_scratch(tp_backend_t *be, int slot, size_t bytes);

#ifdef __cplusplus
}
#endif

#define TP_CUDA_FATAL(call)                                                                        \
    do {                                                                                           \
        cudaError_t tp_cuda_err_ = (call);                                                         \
        if (tp_cuda_err_ != cudaSuccess) {                                                         \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,                   \
                    cudaGetErrorString(tp_cuda_err_));                                             \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* After a kernel launch: launch-configuration errors surface here. */
#define TP_CUDA_LAUNCHED() TP_CUDA_FATAL(cudaGetLastError())

#endif
