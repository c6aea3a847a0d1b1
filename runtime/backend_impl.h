/* Private: the interface struct each backend fills (a static const instance with designated
 * initialisers, as in ggml-backend) and the backend object. Only backend implementations and
 * the dispatcher (backend.c) include this. */
#ifndef TP_BACKEND_IMPL_H
#define TP_BACKEND_IMPL_H

#include "backend.h"

#include <math.h>

typedef struct tp_backend_iface {
    const char *name;
    /* Backend memory is ordinary host memory (ref, cpu): callers may read and write it
     * directly instead of staging copies through upload/download. */
    bool host_memory;
    /* Optional (NULL: nothing to do). */
    tp_status_t (*init)(tp_backend_t *be, int threads);
    void (*shutdown)(tp_backend_t *be);
    void (*synchronize)(tp_backend_t *be);
    /* Optional: the device stream ops run on (NULL for host backends). */
    void *(*stream)(tp_backend_t *be);
    /* Optional: NULL means fp32 only. */
    tp_status_t (*set_precision)(tp_backend_t *be, tp_precision_t p);

    void *(*alloc)(tp_backend_t *be, size_t bytes);
    void (*release)(tp_backend_t *be, void *ptr);
    void (*upload)(tp_backend_t *be, void *dst, const void *src, size_t bytes);
    void (*download)(tp_backend_t *be, void *dst, const void *src, size_t bytes);

    void (*gemm)(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc);
    /* Compute-copy ops (backend.h). Optional, all or none (checked when the backend is created):
     * NULL means compute copies are float32 (backends without "bf16"), and backend.c runs the
     * float32 op on them. */
    void (*gemm_c)(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                   const tp_cval_t *A, int64_t lda, const tp_cval_t *B, int64_t ldb, float beta,
                   float *C, int64_t ldc);
    void (*to_compute)(tp_backend_t *be, const float *x, tp_cval_t *y, int64_t n);
    void (*bias_grad_c)(tp_backend_t *be, const tp_cval_t *dy, float *db, int64_t rows,
                        int64_t cols, bool per_row);
    void (*act_forward_c)(tp_backend_t *be, tp_act_t act, const float *x, tp_cval_t *y, int64_t n);
    void (*act_backward_c)(tp_backend_t *be, tp_act_t act, const tp_cval_t *x, const float *dy,
                           tp_cval_t *dx, int64_t n);
    void (*gemm_to_c)(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                      float alpha, const tp_cval_t *A, int64_t lda, const tp_cval_t *B, int64_t ldb,
                      tp_cval_t *C, int64_t ldc);
    void (*xent_forward_c)(tp_backend_t *be, const tp_cval_t *logits, int64_t ld,
                           const int32_t *labels, float *lse, float *loss, int64_t B, int64_t C);
    void (*xent_backward_c)(tp_backend_t *be, const tp_cval_t *logits, int64_t ld, const float *lse,
                            const int32_t *labels, tp_cval_t *dlogits, int64_t B, int64_t C,
                            float scale);
    /* Optional fused linear ops (backend.h): true when done; false (nothing queued) leaves the
     * op to backend.c, which runs the ops it is made of. NULL: always those. */
    bool (*linear_forward_c)(tp_backend_t *be, const tp_cval_t *x, const tp_cval_t *w,
                             const float *b, const float *r, float *y, int64_t N, int64_t in,
                             int64_t out);
    bool (*linear_grad_c)(tp_backend_t *be, const tp_cval_t *dy, const tp_cval_t *x, float *dw,
                          float *db, int64_t N, int64_t in, int64_t out);
    bool (*linear_forward_to_c)(tp_backend_t *be, const tp_cval_t *x, const tp_cval_t *w,
                                const float *b, tp_cval_t *y, float *scratch, int64_t N, int64_t in,
                                int64_t out);
    bool (*linear_act_forward_c)(tp_backend_t *be, tp_act_t act, const tp_cval_t *x,
                                 const tp_cval_t *w, const float *b, tp_cval_t *pre, tp_cval_t *y,
                                 float *scratch, int64_t N, int64_t in, int64_t out);
    bool (*linear_dx_act_c)(tp_backend_t *be, tp_act_t act, const tp_cval_t *dy, const tp_cval_t *w,
                            const tp_cval_t *pre, tp_cval_t *dpre, float *db, float *scratch,
                            int64_t N, int64_t in, int64_t out);
    void (*bias_add)(tp_backend_t *be, float *y, const float *b, int64_t rows, int64_t cols,
                     bool per_row);
    void (*bias_grad)(tp_backend_t *be, const float *dy, float *db, int64_t rows, int64_t cols,
                      bool per_row);
    void (*act_forward)(tp_backend_t *be, tp_act_t act, const float *x, float *y, int64_t n);
    void (*act_backward)(tp_backend_t *be, tp_act_t act, const float *x, const float *dy, float *dx,
                         int64_t n);
    void (*dropout_forward)(tp_backend_t *be, const float *x, float *y, uint8_t *mask, int64_t rows,
                            int64_t cols, float p, uint64_t seed, uint64_t stream, int64_t row0);
    void (*dropout_backward)(tp_backend_t *be, const float *dy, const uint8_t *mask, float *dx,
                             int64_t n, float p);
    void (*im2col)(tp_backend_t *be, const float *x, float *col, int64_t B, int64_t C, int64_t H,
                   int64_t W, int64_t k);
    void (*col2im)(tp_backend_t *be, const float *col, float *dx, int64_t B, int64_t C, int64_t H,
                   int64_t W, int64_t k);
    void (*swap01)(tp_backend_t *be, const float *src, float *dst, int64_t A, int64_t Bd,
                   int64_t D);
    void (*maxpool_forward)(tp_backend_t *be, const float *x, float *y, int32_t *argmax, int64_t B,
                            int64_t C, int64_t H, int64_t W, int64_t k);
    void (*maxpool_backward)(tp_backend_t *be, const float *dy, const int32_t *argmax, float *dx,
                             int64_t B, int64_t C, int64_t H, int64_t W, int64_t k);
    void (*softmax_xent_forward)(tp_backend_t *be, const float *logits, const int32_t *labels,
                                 float *probs, float *loss, int64_t B, int64_t C);
    void (*softmax_xent_backward)(tp_backend_t *be, const float *probs, const int32_t *labels,
                                  float *dlogits, int64_t B, int64_t C, float scale);
    /* Backends without compute-copy ops only (with them, xent_forward_c and xent_backward_c). */
    void (*xent_forward)(tp_backend_t *be, const float *logits, int64_t ld, const int32_t *labels,
                         float *lse, float *loss, int64_t B, int64_t C);
    void (*xent_backward)(tp_backend_t *be, const float *logits, int64_t ld, const float *lse,
                          const int32_t *labels, float *dlogits, int64_t B, int64_t C, float scale);
    void (*sumsq_to)(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate);
    void (*sum_to)(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate);
    void (*scale)(tp_backend_t *be, float *x, float alpha, int64_t n);
    void (*fill)(tp_backend_t *be, float *x, float value, int64_t n);
    void (*copy)(tp_backend_t *be, float *dst, const float *src, int64_t n);
    void (*adamw)(tp_backend_t *be, float *p, const float *g, float *m, float *v, int64_t n,
                  float lr, float beta1, float beta2, float eps, float wd, float bc1, float bc2,
                  tp_clip_t clip);
    void (*sgd)(tp_backend_t *be, float *p, const float *g, float *buf, int64_t n, float lr,
                float momentum, float wd, bool nesterov, bool first, tp_clip_t clip);

    /* Transformer ops (backend.h). */
    void (*embedding_forward)(tp_backend_t *be, const int32_t *tokens, const float *wte,
                              const float *wpe, float *out, int64_t B, int64_t T, int64_t C);
    void (*embedding_backward)(tp_backend_t *be, const float *dout, const int32_t *tokens,
                               float *dwte, float *dwpe, int64_t B, int64_t T, int64_t C);
    void (*layernorm_forward)(tp_backend_t *be, const float *x, const float *w, const float *b,
                              tp_cval_t *y, float *mean, float *rstd, int64_t N, int64_t C);
    void (*layernorm_backward)(tp_backend_t *be, const tp_cval_t *dy, const float *x,
                               const float *w, const float *mean, const float *rstd, float *dx,
                               float *dw, float *db, int64_t N, int64_t C);
    /* Optional (NULL, or false with nothing queued: layernorm_backward, then to_compute). */
    bool (*layernorm_backward_c)(tp_backend_t *be, const tp_cval_t *dy, const float *x,
                                 const float *w, const float *mean, const float *rstd, float *dx,
                                 tp_cval_t *dx_c, float *dw, float *db, float *dsum, int64_t N,
                                 int64_t C);
    void (*attention_forward)(tp_backend_t *be, const tp_cval_t *qkv, tp_cval_t *out, float *att,
                              int64_t B, int64_t T, int64_t C, int64_t NH);
    /* Optional: NULL means B * NH * T * T. */
    int64_t (*attention_att_numel)(tp_backend_t *be, int64_t B, int64_t T, int64_t NH);
    void (*attention_backward)(tp_backend_t *be, const tp_cval_t *dout, const tp_cval_t *qkv,
                               const float *att, const tp_cval_t *out, tp_cval_t *dqkv, int64_t B,
                               int64_t T, int64_t C, int64_t NH);
    void (*attention_decode)(tp_backend_t *be, const float *q, const float *kcache,
                             const float *vcache, tp_cval_t *out, int64_t B, int64_t pos,
                             int64_t Tmax, int64_t C, int64_t NH);
    void (*axpy)(tp_backend_t *be, float *y, const float *x, float alpha, int64_t n);
    void (*add)(tp_backend_t *be, const float *a, const float *b, float *out, int64_t n);

    /* Optional timing marks for the op profile, recorded on the device stream (NULL: the host
     * clock, right for synchronous backends). timer_mark records one and returns its index
     * (-1 on failure); timer_ms is the time between two marks once both have run; timer_reset
     * makes every index free again. */
    int (*timer_mark)(tp_backend_t *be);
    double (*timer_ms)(tp_backend_t *be, int a, int b);
    void (*timer_reset)(tp_backend_t *be);
} tp_backend_iface_t;

typedef struct tp_profile tp_profile_t; /* backend_profile.c */

/* One live allocation, for the memory accounting of tp_backend_alloc/release. */
typedef struct tp_backend_block {
    void *ptr;
    size_t bytes;
} tp_backend_block_t;

struct tp_backend {
    const tp_backend_iface_t *iface;
    int threads;
    tp_precision_t precision; /* what set_precision last accepted */
    char describe[256];
    void *impl; /* backend-private state (e.g. CUDA handles) */
    /* Memory accounting (works for device pointers too, hence a table, not a header). */
    tp_backend_block_t *blocks;
    int64_t n_blocks, cap_blocks;
    int64_t bytes_in_use, bytes_peak;
    double *scalar; /* one double of backend memory for tp_op_sumsq's result; made on first use */
    int64_t host_waits; /* downloads and synchronizes so far (tp_backend_host_waits) */
    tp_profile_t *prof; /* NULL unless the op profile is on (backend_profile.h) */
};

void tp_backend_profile_free(tp_backend_t *be);

/* A backend object for iface (tp_backend_create's second half; tests use it for backends that
 * are not registered, such as the CUDA emulation of tests/emu). */
tp_status_t tp_backend_create_with(const tp_backend_iface_t *iface, int threads,
                                   tp_backend_t **out);

/* Registered implementations (backend_registry.c decides which are compiled in). */
extern const tp_backend_iface_t tp_backend_ref_iface;
extern const tp_backend_iface_t tp_backend_cpu_iface;

/* Host backends' view of a compute copy: float32 (they have no "bf16"). */
static inline float *tp_cval_f32(tp_cval_t *p)
{
    return (float *)(void *)p;
}
static inline const float *tp_cval_cf32(const tp_cval_t *p)
{
    return (const float *)(const void *)p;
}

/* Host-memory helpers shared by the host backends. */
void *tp_host_alloc(tp_backend_t *be, size_t bytes);
void tp_host_release(tp_backend_t *be, void *ptr);
void tp_host_copy(tp_backend_t *be, void *dst, const void *src, size_t bytes);

/* Callable from CUDA kernels as well, so that every backend computes the clipping factor with
 * this one definition. */
#ifdef __CUDACC__
#define TP_HOST_DEVICE __host__ __device__
#else
#define TP_HOST_DEVICE
#endif

/* The factor a clipped optimizer update applies to the gradient for sum of squares sq (tp_clip_t:
 * the same float on every backend), or 1 when there is nothing to clip. */
static inline TP_HOST_DEVICE float tp_clip_factor(double sq, double max_norm)
{
    double norm = sqrt(sq);
    return max_norm > 0 && norm > max_norm ? (float)(max_norm / (norm + 1e-6)) : 1.0f;
}

/* That factor for clip; reads *clip.sumsq where it runs: host memory on a host backend, device
 * memory in a kernel. */
static inline TP_HOST_DEVICE float tp_clip_scale(tp_clip_t clip)
{
    return clip.sumsq ? tp_clip_factor(*clip.sumsq, clip.max_norm) : 1.0f;
}

/* Chunk size of the deterministic sum of squares (shared so ref and cpu agree bit for bit). */
#define TP_SUMSQ_CHUNK 4096

#endif
