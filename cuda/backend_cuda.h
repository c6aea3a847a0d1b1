/* The CUDA backend's interface struct (defined in backend_cuda.cu), for the backend registry. */
#ifndef TP_BACKEND_CUDA_H
#define TP_BACKEND_CUDA_H

#include "backend_impl.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const tp_backend_iface_t tp_backend_cuda_iface;

#ifdef __cplusplus
}
#endif

#endif
