/* The backends a model test runs on: ref and cpu in fp32; or, built with TP_CUDA_EMULATED
 * (tests/emu), the CUDA backend's kernels run on the CPU ("cuda-emu"), in fp32 and in bf16. */
#ifndef TP_TEST_BACKENDS_H
#define TP_TEST_BACKENDS_H

#include "backend.h"
#include "test_util.h"

#ifdef TP_CUDA_EMULATED
tp_status_t tp_emu_backend_create(tp_backend_t **out); /* tests/emu/backend_emu.cpp */
#endif

/* Backend `name` (the emulated one in emu builds) computing in prec; NULL, after a failed
 * check, when it cannot be had. The caller frees it. */
static inline tp_backend_t *tp_test_backend(const char *name, tp_precision_t prec)
{
    tp_backend_t *be = NULL;
#ifdef TP_CUDA_EMULATED
    (void)name;
    CHECK(tp_emu_backend_create(&be) == TP_OK);
#else
    CHECK(tp_backend_create(name, 2, &be) == TP_OK);
#endif
    if (be && tp_backend_set_precision(be, prec) != TP_OK) {
        CHECKF(false, "%s: runtime.precision %d refused", name, (int)prec);
        tp_backend_free(be);
        be = NULL;
    }
    return be;
}

/* check(name, prec) for every backend and precision of this build. */
static inline void tp_test_each_backend(void (*check)(const char *name, tp_precision_t prec))
{
#ifdef TP_CUDA_EMULATED
    check("cuda-emu", TP_PREC_FP32);
    check("cuda-emu", TP_PREC_BF16);
#else
    check("ref", TP_PREC_FP32);
    check("cpu", TP_PREC_FP32);
#endif
}

#endif
