/* The harness of test_cuda_ops (defined in cuda_ops_harness.c, shared by its files): the two
 * backends under comparison, the tolerance classes of the table at the top of test_cuda_ops.c,
 * the results table, the error measures, and per-case arenas of host and device buffers (inputs
 * random and non-zero, outputs poisoned with NaN, device pointers optionally one element off
 * alignment) freed by case_end. Every file of the test is compiled with TP_TEST_SHARED_STATE, so
 * test_util.h's counters and seed are the harness's. */
#ifndef TP_CUDA_OPS_HARNESS_H
#define TP_CUDA_OPS_HARNESS_H

#include <stdbool.h>

#include "backend.h"
#include "bf16.h"
#include "test_util.h"

extern tp_backend_t *g_ref, *g_gpu;
extern int g_prec; /* 0 = fp32, 1 = bf16 */
extern const char *const g_prec_name[2];

/* Tolerance classes (the table at the top of test_cuda_ops.c); tol() is the current precision's. */
typedef enum { K_EXACT, K_SUMSQ, K_ELEM, K_GEMM, K_ATTN, K_GEMM_C, K_F32 } tol_kind_t;
double tol(tol_kind_t k);

/* One check of error e against kind's tolerance; the table keeps each (op, precision)'s worst. */
void expect(const char *op, const char *shape, double e, tol_kind_t kind);
void print_table(void);
/* 0 when the bytes are equal, else the fraction of differing bytes (> 0, fails K_EXACT). */
double bytes_differ(const void *a, const void *b, size_t n);

/* Host buffers kept until case_end: kept as given, random, NaN, filled bytes, a copy. */
void *hkeep(void *p);
float *hrnd(size_t n, float scale);
float *hnan(size_t n);
void *hbytes(size_t bytes, int fill);
float *hdup(const float *x, size_t n);
/* Device buffers freed by case_end: raw, a copy of host bytes or floats (_off: starting one float
 * past an aligned address), NaN; and host copies of device bytes or floats (after the stream's
 * work). */
void *dalloc(size_t bytes);
void *dput(const void *host, size_t bytes);
float *dputf(const float *host, size_t n);
float *dputf_off(const float *host, size_t n);
float *dnan(size_t n);
void *dget(const void *dev, size_t bytes);
float *dgetf(const float *dev, size_t n);
/* Compute copies (backend.h): bf16 on the GPU backend under "bf16", else float32. hround rounds
 * host values in place as a compute copy holds them; dputc/dputc_off/dnanc/dgetc are dputf's
 * counterparts. */
bool gpu_bf16(void);
float *hround(float *x, size_t n);
tp_cval_t *dputc(const float *host, size_t n);
tp_cval_t *dputc_off(const float *host, size_t n);
tp_cval_t *dnanc(size_t n);
float *dgetc(const tp_cval_t *dev, size_t n);
/* Waits for the GPU and frees both arenas. */
void case_end(void);

/* Shapes several groups use: [rows, cols] pairs, and element counts. */
#define N_RC 6
#define N_NS 6
extern const int64_t g_rc[N_RC][2];
extern const int64_t g_ns[N_NS];

/* The groups (test_cuda_ops.c runs them, or those named on its command line). */
void test_gemm(void); /* cuda_ops_products.c */
void test_linear(void);
void test_bias(void); /* cuda_ops_elementwise.c */
void test_act(void);
void test_gelu_range(void);
void test_dropout(void);
void test_im2col(void);
void test_swap01(void);
void test_maxpool(void);
void test_softmax_xent(void); /* cuda_ops_reductions.c */
void test_sumsq(void);
void test_vector_ops(void);
void test_adamw(void);
void test_sgd(void);
void test_embedding(void); /* cuda_ops_transformer.c */
void test_layernorm(void);
void test_attention(void);

#endif
