/* The check for cuBLAS and cuBLASLt calls inside ops (backend_cuda.cu, linear_cublaslt.cu): an op
 * cannot return a status, so a failing call prints file:line with cuBLAS's own message and exits,
 * as TP_CUDA_FATAL does for the CUDA runtime (cuda_common.h). Kept apart from cuda_common.h
 * because the kernels (and their CPU emulation) do not see cuBLAS. */
#ifndef TP_CUBLAS_CHECK_H
#define TP_CUBLAS_CHECK_H

#include <cublas_api.h>
#include <stdio.h>
#include <stdlib.h>

#define TP_CUBLAS_FATAL(call)                                                                      \
    do {                                                                                           \
        cublasStatus_t tp_cublas_st_ = (call);                                                     \
        if (tp_cublas_st_ != CUBLAS_STATUS_SUCCESS) {                                              \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,                   \
                    cublasGetStatusString(tp_cublas_st_));                                         \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#endif
