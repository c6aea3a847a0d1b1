// cuBLASLt products with fused epilogues (linear_cublaslt.h): the CUDA backend's linear ops.
//
// Everything about a problem is made once and kept: its descriptors (host allocations) and the
// algorithms cublasLtMatmulAlgoGetHeuristic takes tens of microseconds to choose. A problem is
// its shape, leading dimensions, types, epilogue and the operands' alignment (cuBLASLt picks
// kernels that assume the alignment it was shown). A GPT step has a few dozen distinct problems,
// all met in its first step; after that a call only points the kept descriptor at this call's
// epilogue vectors, so a training step allocates nothing here.
#include <cublasLt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The runtime's headers are C (TP_ERR's tp_err_at, logging): C linkage, as backend_cuda.cu does.
extern "C" {
#include "tp_error.h"
}
#include "cublas_check.h"
#include "linear_cublaslt.h"

typedef struct lt_key {
    int32_t epilogue, ta, tb, ab, cd, compute, c_is_d, beta_zero;
    int32_t align_a, align_b, align_c, align_d, align_bias, align_aux;
    int64_t m, n, k, lda, ldb, ldc, ldd, ldaux;
} lt_key_t;

// Algorithms kept per problem: the heuristic's best first, the others in case cublasLtMatmul
// refuses it.
#define LT_ALGOS 4

// The descriptors of one problem (made by lt_desc_make, destroyed by lt_desc_free).
typedef struct lt_desc {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c, d;
} lt_desc_t;

static void lt_desc_free(lt_desc_t *d);

typedef struct lt_entry {
    lt_key_t key;
    int n_algo;  // 0: cuBLASLt declined the problem (its descriptors are freed)
    lt_desc_t d; // while n_algo > 0
    cublasLtMatmulAlgo_t algo[LT_ALGOS];
} lt_entry_t;

struct tp_lt {
    cublasLtHandle_t handle;
    cudaStream_t stream;
    void *workspace;
    size_t workspace_bytes;
    lt_entry_t *entries;
    int n, cap, unsupported;
};

// The largest power of two (up to 256 bytes) that divides the address.
static int32_t alignment(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    int32_t al = 1;
    while (al < 256 && a % (uintptr_t)(2 * al) == 0)
        al *= 2;
    return al;
}

extern "C" tp_status_t tp_lt_create(cudaStream_t stream, size_t workspace_bytes, tp_lt_t **out)
{
    *out = NULL;
    tp_lt_t *lt = (tp_lt_t *)calloc(1, sizeof *lt);
    if (!lt) return TP_ERR(TP_ERR_NOMEM, "backend 'cuda': out of host memory for cuBLASLt state");
    lt->stream = stream;
    cublasStatus_t st = cublasLtCreate(&lt->handle);
    if (st != CUBLAS_STATUS_SUCCESS) {
        free(lt);
        return TP_ERR(TP_ERR_CUDA, "backend 'cuda': cublasLtCreate failed: %s",
                      cublasGetStatusString(st));
    }
    cudaError_t e = cudaMalloc(&lt->workspace, workspace_bytes);
    if (e != cudaSuccess) {
        (void)cublasLtDestroy(lt->handle);
        free(lt);
        return TP_ERR(TP_ERR_NOMEM,
                      "backend 'cuda': cudaMalloc of %zu bytes of cuBLASLt workspace: %s",
                      workspace_bytes, cudaGetErrorString(e));
    }
    lt->workspace_bytes = workspace_bytes;
    *out = lt;
    return TP_OK;
}

extern "C" void tp_lt_free(tp_lt_t *lt)
{
    if (!lt) return;
    if (lt->workspace) (void)cudaFree(lt->workspace);
    if (lt->handle) (void)cublasLtDestroy(lt->handle);
    for (int i = 0; i < lt->n; i++)
        if (lt->entries[i].n_algo > 0) lt_desc_free(&lt->entries[i].d);
    free(lt->entries);
    free(lt);
}

extern "C" void tp_lt_counts(const tp_lt_t *lt, int *problems, int *unsupported)
{
    *problems = lt ? lt->n : 0;
    *unsupported = lt ? lt->unsupported : 0;
}

static lt_key_t key_of(const tp_lt_matmul_t *p)
{
    lt_key_t k;
    memset(&k, 0, sizeof k); // compared with memcmp: no stray padding bytes
    k.epilogue = (int32_t)p->epilogue;
    k.ta = p->ta;
    k.tb = p->tb;
    k.ab = (int32_t)p->ab;
    k.cd = (int32_t)p->cd;
    k.compute = (int32_t)p->compute;
    k.c_is_d = p->C == p->D;
    k.beta_zero = p->beta == 0.0f;
    k.align_a = alignment(p->A);
    k.align_b = alignment(p->B);
    k.align_c = alignment(p->C);
    k.align_d = alignment(p->D);
    k.align_bias = p->epilogue == TP_LT_NONE ? 0 : alignment(p->bias);
    k.align_aux = p->aux ? alignment(p->aux) : 0;
    k.m = p->m;
    k.n = p->n;
    k.k = p->k;
    k.lda = p->lda;
    k.ldb = p->ldb;
    k.ldc = p->ldc;
    k.ldd = p->ldd;
    k.ldaux = p->aux ? p->ldaux : 0;
    return k;
}

static void lt_desc_make(const tp_lt_matmul_t *p, lt_desc_t *d)
{
    TP_CUBLAS_FATAL(cublasLtMatmulDescCreate(&d->op, p->compute, CUDA_R_32F));
    cublasOperation_t ta = p->ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                      tb = p->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    TP_CUBLAS_FATAL(
        cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    TP_CUBLAS_FATAL(
        cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    static const cublasLtEpilogue_t epis[] = {
        CUBLASLT_EPILOGUE_DEFAULT,       CUBLASLT_EPILOGUE_BIAS,        CUBLASLT_EPILOGUE_BGRADB,
        CUBLASLT_EPILOGUE_GELU_AUX_BIAS, CUBLASLT_EPILOGUE_DGELU_BGRAD,
    };
    cublasLtEpilogue_t epi = epis[p->epilogue];
    TP_CUBLAS_FATAL(
        cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (p->aux) {
        int64_t ld = p->ldaux;
        TP_CUBLAS_FATAL(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                       &ld, sizeof ld));
    }
    // Stored shapes: op(A) is m x k, so A itself is k x m when transposed.
    TP_CUBLAS_FATAL(cublasLtMatrixLayoutCreate(&d->a, p->ab, (uint64_t)(p->ta ? p->k : p->m),
                                               (uint64_t)(p->ta ? p->m : p->k), p->lda));
    TP_CUBLAS_FATAL(cublasLtMatrixLayoutCreate(&d->b, p->ab, (uint64_t)(p->tb ? p->n : p->k),
                                               (uint64_t)(p->tb ? p->k : p->n), p->ldb));
    TP_CUBLAS_FATAL(
        cublasLtMatrixLayoutCreate(&d->c, p->cd, (uint64_t)p->m, (uint64_t)p->n, p->ldc));
    TP_CUBLAS_FATAL(
        cublasLtMatrixLayoutCreate(&d->d, p->cd, (uint64_t)p->m, (uint64_t)p->n, p->ldd));
}

// C's layout: D's own descriptor when C is D (dW += ..., or a beta-0 product that names D as
// its unused C), the form cuBLASLt documents for in-place products ("C == D and Cdesc ==
// Ddesc"); two descriptors with the same contents are not documented as in place.
static cublasLtMatrixLayout_t c_layout(const tp_lt_matmul_t *p, const lt_desc_t *d)
{
    return p->C == p->D ? d->d : d->c;
}

// This call's epilogue vectors (host-side attributes: nothing is allocated). The bias vector's
// type is left at its default, D's type.
static void lt_desc_point(const tp_lt_matmul_t *p, lt_desc_t *d)
{
    if (p->epilogue != TP_LT_NONE) {
        const void *bias = p->bias;
        TP_CUBLAS_FATAL(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &bias, sizeof bias));
    }
    if (p->aux) {
        void *aux = p->aux;
        TP_CUBLAS_FATAL(cublasLtMatmulDescSetAttribute(
            d->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
    }
}

static void lt_desc_free(lt_desc_t *d)
{
    (void)cublasLtMatrixLayoutDestroy(d->d);
    (void)cublasLtMatrixLayoutDestroy(d->c);
    (void)cublasLtMatrixLayoutDestroy(d->b);
    (void)cublasLtMatrixLayoutDestroy(d->a);
    (void)cublasLtMatmulDescDestroy(d->op);
}

static const char *epilogue_name(tp_lt_epilogue_t e)
{
    static const char *const names[] = {"no", "bias", "bias gradient", "bias and GELU",
                                        "GELU gradient and bias gradient"};
    return names[e];
}

// The problem's cache entry (NULL: not asked yet).
static lt_entry_t *entry_find(tp_lt_t *lt, const lt_key_t *key)
{
    for (int i = 0; i < lt->n; i++)
        if (memcmp(&lt->entries[i].key, key, sizeof *key) == 0) return &lt->entries[i];
    return NULL;
}

static void log_declined(const tp_lt_matmul_t *p, const char *who, const char *why)
{
    tp_log_info("backend 'cuda': %s %lldx%lldx%lld (%c%c) with a %s epilogue (%s): running the "
                "product and its epilogue separately",
                who, (long long)p->m, (long long)p->n, (long long)p->k, p->ta ? 'T' : 'N',
                p->tb ? 'T' : 'N', epilogue_name(p->epilogue), why);
}

// Ask cuBLASLt's heuristic for up to LT_ALGOS algorithms, telling it the operands' actual
// alignment (it assumes 256 bytes otherwise, and a kernel that needs more than a pointer has is
// refused at run time); the entry keeps the problem's descriptors while it has algorithms.
// NULL when out of host memory.
static lt_entry_t *entry_add(tp_lt_t *lt, const lt_key_t *key, const tp_lt_matmul_t *p)
{
    if (lt->n == lt->cap) {
        int cap = lt->cap ? 2 * lt->cap : 64;
        lt_entry_t *e = (lt_entry_t *)realloc(lt->entries, (size_t)cap * sizeof *e);
        if (!e) return NULL;
        lt->entries = e;
        lt->cap = cap;
    }
    lt_entry_t *e = &lt->entries[lt->n++];
    memset(e, 0, sizeof *e);
    e->key = *key;
    lt_desc_t *d = &e->d;
    lt_desc_make(p, d);
    lt_desc_point(p, d); // the heuristic reads the vectors' addresses for their alignment
    cublasLtMatmulPreference_t pref;
    TP_CUBLAS_FATAL(cublasLtMatmulPreferenceCreate(&pref));
    TP_CUBLAS_FATAL(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                             &lt->workspace_bytes, sizeof lt->workspace_bytes));
    const uint32_t align[4] = {(uint32_t)key->align_a, (uint32_t)key->align_b,
                               (uint32_t)key->align_c, (uint32_t)key->align_d};
    const cublasLtMatmulPreferenceAttributes_t attr[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++)
        TP_CUBLAS_FATAL(
            cublasLtMatmulPreferenceSetAttribute(pref, attr[i], &align[i], sizeof align[i]));
    cublasLtMatmulHeuristicResult_t res[LT_ALGOS];
    memset(res, 0, sizeof res);
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
        lt->handle, d->op, d->a, d->b, c_layout(p, d), d->d, pref, LT_ALGOS, res, &found);
    (void)cublasLtMatmulPreferenceDestroy(pref);
    for (int i = 0; st == CUBLAS_STATUS_SUCCESS && i < found; i++)
        if (res[i].state == CUBLAS_STATUS_SUCCESS) e->algo[e->n_algo++] = res[i].algo;
    if (e->n_algo == 0) {
        lt_desc_free(d);
        lt->unsupported++;
        log_declined(p, "cuBLASLt has no algorithm for",
                     st != CUBLAS_STATUS_SUCCESS ? cublasGetStatusString(st) : "none found");
    }
    return e;
}

extern "C" bool tp_lt_matmul(tp_lt_t *lt, const tp_lt_matmul_t *p)
{
    if (!lt || p->m <= 0 || p->n <= 0 || p->k <= 0) return false;
    // An epilogue vector or matrix below 16-byte alignment can fault inside the kernel instead
    // of being refused (pytorch/pytorch#194497): leave those to the separate ops.
    if ((p->epilogue != TP_LT_NONE && alignment(p->bias) < 16) ||
        (p->aux && alignment(p->aux) < 16))
        return false;
    lt_key_t key = key_of(p);
    lt_entry_t *e = entry_find(lt, &key);
    if (!e) e = entry_add(lt, &key, p);
    if (!e || e->n_algo == 0) return false; // out of host memory, or declined
    lt_desc_t *d = &e->d;
    lt_desc_point(p, d);
    bool done = false;
    while (!done && e->n_algo > 0) {
        cublasStatus_t st = cublasLtMatmul(lt->handle, d->op, &p->alpha, p->A, d->a, p->B, d->b,
                                           &p->beta, p->C, c_layout(p, d), p->D, d->d, &e->algo[0],
                                           lt->workspace, lt->workspace_bytes, lt->stream);
        if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE) {
            // The heuristic offered what the call then refused (nothing was queued): drop that
            // algorithm and try the next, falling back when none is left.
            memmove(&e->algo[0], &e->algo[1], (size_t)(e->n_algo - 1) * sizeof e->algo[0]);
            if (--e->n_algo == 0) {
                lt_desc_free(d);
                lt->unsupported++;
                log_declined(p, "cublasLtMatmul refused", cublasGetStatusString(st));
            }
        } else {
            TP_CUBLAS_FATAL(st);
            done = true;
        }
    }
    return done;
}
