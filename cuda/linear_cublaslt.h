/* cuBLASLt products with fused epilogues, for the CUDA backend's linear ops (backend.h's
 * tp_op_linear_*_c): the bias added, a residual read as the C matrix, GELU applied (its input
 * kept as an auxiliary output) or differentiated, and bias gradients summed inside the product,
 * so that none of them costs a pass of its own over a [tokens, features] array. cuBLASLt chooses
 * an algorithm per problem
 * (cublasLtMatmulAlgoGetHeuristic), which is slow to ask, so the answer is kept per problem; a
 * problem it has no algorithm for is remembered as such and the caller runs the unfused ops. */
#ifndef TP_LINEAR_CUBLASLT_H
#define TP_LINEAR_CUBLASLT_H

#include <cublas_api.h>
#include <cuda_runtime.h>
#include <library_types.h>
#include <stdbool.h>
#include <stdint.h>

#include "tp_error.h"

typedef struct tp_lt tp_lt_t;

typedef enum {
    TP_LT_NONE,   /* D = alpha op(A) op(B) + beta C */
    TP_LT_BIAS,   /* ... + bias[row of D], m elements (read) */
    TP_LT_BGRADB, /* and bias[j] = sum over k of op(B)[k, j], n elements (written, not added) */
    /* aux = the product + bias (written, type cd, ld ldaux), D = gelu(aux) */
    TP_LT_GELU_AUX_BIAS,
    /* D = the product * gelu'(aux) (aux read), bias[i] = sum over columns of D's row i, m
     * elements (written) */
    TP_LT_DGELU_BGRAD,
} tp_lt_epilogue_t;

/* Column-major, cuBLAS's convention: D[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C[m, n] and
 * the epilogue. A and B are of type ab (CUDA_R_16BF or CUDA_R_32F); C, D, aux and the bias or
 * bias-gradient vector of type cd (the documented default: a float32 vector with a bf16 D is not
 * a documented combination). C may be D. Epilogue vectors and aux must be 16-byte aligned
 * (tp_lt_matmul declines others: under-aligned ones can fault instead of being refused). */
typedef struct tp_lt_matmul {
    bool ta, tb;
    int64_t m, n, k;
    const void *A;
    int64_t lda;
    const void *B;
    int64_t ldb;
    cudaDataType_t ab;
    cublasComputeType_t compute;
    float alpha, beta;
    cudaDataType_t cd;
    const void *C;
    int64_t ldc;
    void *D;
    int64_t ldd;
    tp_lt_epilogue_t epilogue;
    void *bias;
    void *aux;
    int64_t ldaux;
} tp_lt_matmul_t;

#ifdef __cplusplus
extern "C" {
#endif

/* A cuBLASLt handle, and a workspace of workspace_bytes (device memory, owned here), for products
 * queued on stream. */
tp_status_t tp_lt_create(cudaStream_t stream, size_t workspace_bytes, tp_lt_t **out);
void tp_lt_free(tp_lt_t *lt);
/* Queue the product on the stream; false when cuBLASLt has no algorithm for it (nothing was
 * queued: the caller runs the unfused ops). Other cuBLAS failures print file:line and exit, as
 * every failing call inside an op does (cuda_common.h). */
bool tp_lt_matmul(tp_lt_t *lt, const tp_lt_matmul_t *p);
/* Problems asked about so far, and how many of them had no algorithm (fallbacks). */
void tp_lt_counts(const tp_lt_t *lt, int *problems, int *unsupported);

#ifdef __cplusplus
}
#endif

#endif
