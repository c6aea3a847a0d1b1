/* Which backends this binary has. The only place (with CMake) that knows whether CUDA is built. */
#include "backend_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TULPAR_HAVE_CUDA
#include "backend_cuda.h"
#endif

const char *tp_backend_available(void)
{
#ifdef TULPAR_HAVE_CUDA
    return "cpu, ref, cuda";
#else
    return "cpu, ref";
#endif
}

#ifndef TULPAR_HAVE_CUDA
static tp_status_t cuda_unavailable(void)
{
    return TP_ERR(TP_ERR_UNSUPPORTED,
                  "backend 'cuda': this binary was built without CUDA (configure with "
                  "-DTULPAR_CUDA=ON where nvcc is installed)");
}
#endif

tp_status_t tp_backend_create(const char *name, int threads, tp_backend_t **out)
{
    *out = NULL;
    const tp_backend_iface_t *iface = NULL;
    if (strcmp(name, "cpu") == 0)
        iface = &tp_backend_cpu_iface;
    else if (strcmp(name, "ref") == 0)
        iface = &tp_backend_ref_iface;
#ifdef TULPAR_HAVE_CUDA
    else if (strcmp(name, "cuda") == 0)
        iface = &tp_backend_cuda_iface; /* its init says when there is no usable GPU, and why */
#else
    else if (strcmp(name, "cuda") == 0)
        return cuda_unavailable();
#endif
    else
        return TP_ERR(TP_ERR_CONFIG, "unknown backend '%s' (this build has: %s)", name,
                      tp_backend_available());
    return tp_backend_create_with(iface, threads, out);
}

tp_status_t tp_backend_create_with(const tp_backend_iface_t *iface, int threads, tp_backend_t **out)
{
    *out = NULL;
    /* Compute-copy ops come all or none (backend_impl.h): with gemm_c, compute copies may be bf16,
     * and backend.c's float32 fallbacks for the others would write past them. */
    const bool c = iface->gemm_c;
    if ((c != !!iface->to_compute) || (c != !!iface->bias_grad_c) ||
        (c != !!iface->act_forward_c) || (c != !!iface->act_backward_c) ||
        (c != !!iface->gemm_to_c) || (c != !!iface->xent_forward_c) ||
        (c != !!iface->xent_backward_c))
        return TP_ERR(TP_ERR_UNSUPPORTED,
                      "backend '%s' implements some of the compute-copy ops but not all "
                      "(backend_impl.h)",
                      iface->name);
    tp_backend_t *be = tp_calloc(1, sizeof *be, "backend");
    if (!be) return TP_ERR_NOMEM;
    be->iface = iface;
    be->threads = 1;
    snprintf(be->describe, sizeof be->describe, "%s", iface->name);
    if (iface->init) {
        tp_status_t st = iface->init(be, threads);
        if (st != TP_OK) {
            free(be);
            return st;
        }
    }
    *out = be;
    return TP_OK;
}
