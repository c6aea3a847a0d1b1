/* What CUDA sees on this machine; safe to call where no driver or GPU exists. */
#ifndef TP_CUDA_PROBE_H
#define TP_CUDA_PROBE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices, or -1 with the CUDA runtime's error string in `why`. */
int tp_cuda_device_count(char *why, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
