/* TP_CUDA_CHECK and TP_NCCL_CHECK: every CUDA runtime and NCCL call of the NCCL communicator goes
 * through them. On failure they print file:line, the statement and the library's own error text
 * (cudaGetErrorString; ncclGetErrorString plus ncclGetLastError, NCCL's last detailed message)
 * and return TP_ERR_CUDA from the enclosing function, which must return tp_status_t.
 *
 * Only files compiled with CUDA include this (it needs cuda_runtime.h and nccl.h). */
#ifndef TP_NCCL_CHECK_H
#define TP_NCCL_CHECK_H

#include <cuda_runtime.h>
#include <nccl.h>

#include "tp_error.h"

static inline tp_status_t tp_cuda_report(cudaError_t e, const char *stmt, const char *file,
                                         int line)
{
    tp_log_error_at(file, line, "%s failed: %s (%s)", stmt, cudaGetErrorString(e),
                    cudaGetErrorName(e));
    return TP_ERR_CUDA;
}

/* comm may be NULL (NCCL keeps the last message per thread; the argument is for future use). */
static inline tp_status_t tp_nccl_report(ncclResult_t r, ncclComm_t comm, const char *stmt,
                                         const char *file, int line)
{
    const char *last = ncclGetLastError(comm);
    tp_log_error_at(file, line, "%s failed: %s%s%s", stmt, ncclGetErrorString(r),
                    last && *last ? ": " : "", last && *last ? last : "");
    return TP_ERR_CUDA;
}

#define TP_CUDA_CHECK(call)                                                                        \
    do {                                                                                           \
        cudaError_t tp_cuda_rc_ = (call);                                                          \
        if (tp_cuda_rc_ != cudaSuccess)                                                            \
            return tp_cuda_report(tp_cuda_rc_, #call, __FILE__, __LINE__);                         \
    } while (0)

#define TP_NCCL_CHECK_COMM(comm, call)                                                             \
    do {                                                                                           \
        ncclResult_t tp_nccl_rc_ = (call);                                                         \
        if (tp_nccl_rc_ != ncclSuccess)                                                            \
            return tp_nccl_report(tp_nccl_rc_, (comm), #call, __FILE__, __LINE__);                 \
    } while (0)

#define TP_NCCL_CHECK(call) TP_NCCL_CHECK_COMM(NULL, call)

#endif
