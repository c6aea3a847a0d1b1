// Device discovery for the backend registry: how many GPUs, or why none (no driver here).
#include "cuda_probe.h"

#include <cuda_runtime.h>
#include <stdio.h>

extern "C" int tp_cuda_device_count(char *why, size_t cap)
{
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        snprintf(why, cap, "cudaGetDeviceCount: %s", cudaGetErrorString(err));
        return -1;
    }
    snprintf(why, cap, "%d device(s)", n);
    return n;
}
