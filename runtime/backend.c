/* Backend dispatch: the public tp_op_* functions forward to the backend's interface struct. */
#include "backend_impl.h"
#include "backend_profile.h"
#include "bf16.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tp_backend_free(tp_backend_t *be)
{
    if (!be) return;
    if (be->scalar) be->iface->release(be, be->scalar);
    tp_backend_profile_free(be);
    if (be->iface->shutdown) be->iface->shutdown(be);
    free(be->blocks);
    free(be);
}

const char *tp_backend_name(const tp_backend_t *be)
{
    return be->iface->name;
}

const char *tp_backend_describe(const tp_backend_t *be)
{
    return be->describe;
}

int tp_backend_threads(const tp_backend_t *be)
{
    return be->threads;
}

void *tp_backend_alloc(tp_backend_t *be, size_t bytes, const char *what)
{
    if (be->n_blocks == be->cap_blocks) {
        int64_t cap = be->cap_blocks ? 2 * be->cap_blocks : 256;
        tp_backend_block_t *nb = realloc(be->blocks, (size_t)cap * sizeof *nb);
        if (!nb) {
            TP_ERR(TP_ERR_NOMEM, "backend %s: out of memory for the allocation table",
                   be->iface->name);
            return NULL;
        }
        be->blocks = nb;
        be->cap_blocks = cap;
    }
    void *p = be->iface->alloc(be, bytes);
    if (!p) {
        TP_ERR(TP_ERR_NOMEM, "backend %s: cannot allocate %zu bytes for %s", be->iface->name, bytes,
               what);
        return NULL;
    }
    be->blocks[be->n_blocks++] = (tp_backend_block_t){.ptr = p, .bytes = bytes};
    be->bytes_in_use += (int64_t)bytes;
    if (be->bytes_in_use > be->bytes_peak) be->bytes_peak = be->bytes_in_use;
    return p;
}

void tp_backend_release(tp_backend_t *be, void *ptr)
{
    if (!ptr) return;
    /* Releases happen at teardown, newest first mostly: search from the end. */
    for (int64_t i = be->n_blocks - 1; i >= 0; i--)
        if (be->blocks[i].ptr == ptr) {
            be->bytes_in_use -= (int64_t)be->blocks[i].bytes;
            be->blocks[i] = be->blocks[--be->n_blocks];
            break;
        }
    be->iface->release(be, ptr);
}

tp_status_t tp_backend_set_precision(tp_backend_t *be, tp_precision_t p)
{
    if (p != TP_PREC_FP32 && !be->iface->set_precision)
        return TP_ERR(TP_ERR_UNSUPPORTED,
                      "runtime.precision = \"bf16\" needs the cuda backend; backend '%s' computes "
                      "in fp32",
                      be->iface->name);
    if (be->iface->set_precision) TP_TRY(be->iface->set_precision(be, p));
    be->precision = p;
    return TP_OK;
}

tp_precision_t tp_backend_precision(const tp_backend_t *be)
{
    return be->precision;
}

size_t tp_backend_compute_bytes(const tp_backend_t *be)
{
    /* Backends without compute-copy ops keep float32 whatever their precision. */
    return be->precision == TP_PREC_BF16 && be->iface->gemm_c ? 2 : 4;
}

tp_cval_t *tp_backend_alloc_compute(tp_backend_t *be, int64_t n, const char *what)
{
    return tp_backend_alloc(be, (size_t)n * tp_backend_compute_bytes(be), what);
}

tp_cval_t *tp_cval_at(const tp_backend_t *be, const tp_cval_t *p, int64_t i)
{
    return (tp_cval_t *)((char *)(uintptr_t)p + i * (int64_t)tp_backend_compute_bytes(be));
}

void tp_backend_upload_compute(tp_backend_t *be, tp_cval_t *dst, const float *src, int64_t n)
{
    if (n <= 0) return;
    if (tp_backend_compute_bytes(be) == 4) {
        tp_backend_upload(be, dst, src, (size_t)n * sizeof(float));
        return;
    }
    /* In chunks through the stack: no allocation to fail, and the upload owns its copy of each
     * chunk when it returns. */
    uint16_t h[4096];
    for (int64_t i0 = 0; i0 < n; i0 += 4096) {
        int64_t k = n - i0 < 4096 ? n - i0 : 4096;
        for (int64_t i = 0; i < k; i++)
            h[i] = tp_bf16_from_float(src[i0 + i]);
        tp_backend_upload(be, tp_cval_at(be, dst, i0), h, (size_t)k * sizeof *h);
    }
}

void tp_backend_download_compute(tp_backend_t *be, float *dst, const tp_cval_t *src, int64_t n)
{
    if (n <= 0) return;
    if (tp_backend_compute_bytes(be) == 4) {
        tp_backend_download(be, dst, src, (size_t)n * sizeof(float));
        return;
    }
    /* Widen in place, from the end: float i covers the bf16 bytes of elements 2i and 2i+1,
     * which are read by then (memcpy: the bytes change type). */
    char *bytes = (char *)dst;
    tp_backend_download(be, bytes, src, (size_t)n * sizeof(uint16_t));
    for (int64_t i = n - 1; i >= 0; i--) {
        uint16_t b;
        memcpy(&b, bytes + 2 * i, sizeof b);
        float f = tp_bf16_to_float(b);
        memcpy(bytes + 4 * i, &f, sizeof f);
    }
}

int64_t tp_op_attention_att_numel(tp_backend_t *be, int64_t B, int64_t T, int64_t NH)
{
    if (be->iface->attention_att_numel) return be->iface->attention_att_numel(be, B, T, NH);
    return B * NH * T * T;
}

void *tp_backend_stream(tp_backend_t *be)
{
    return be->iface->stream ? be->iface->stream(be) : NULL;
}

bool tp_backend_host_memory(const tp_backend_t *be)
{
    return be->iface->host_memory;
}

int64_t tp_backend_bytes_in_use(const tp_backend_t *be)
{
    return be->bytes_in_use;
}

int64_t tp_backend_bytes_peak(const tp_backend_t *be)
{
    return be->bytes_peak;
}

void tp_backend_upload(tp_backend_t *be, void *dst, const void *src, size_t bytes)
{
    int h = tp_profile_mark(be);
    be->iface->upload(be, dst, src, bytes);
    tp_profile_op(be, h, "upload", 0);
}

void tp_backend_download(tp_backend_t *be, void *dst, const void *src, size_t bytes)
{
    be->host_waits++;
    int h = tp_profile_mark(be);
    be->iface->download(be, dst, src, bytes);
    tp_profile_op(be, h, "download", 0);
}

void tp_backend_synchronize(tp_backend_t *be)
{
    be->host_waits++;
    if (be->iface->synchronize) be->iface->synchronize(be);
}

int64_t tp_backend_host_waits(const tp_backend_t *be)
{
    return be->host_waits;
}

/* gemm's profile entry: its shape, and "bf16" when it read bf16 compute copies. */
static void profile_gemm(tp_backend_t *be, int h, bool c, bool ta, bool tb, int64_t M, int64_t N,
                         int64_t K)
{
    if (h < 0) return;
    char key[64];
    snprintf(key, sizeof key, "gemm %c%c %lldx%lldx%lld%s", ta ? 'T' : 'N', tb ? 'T' : 'N',
             (long long)M, (long long)N, (long long)K,
             c && tp_backend_compute_bytes(be) == 2 ? " bf16" : "");
    tp_profile_op(be, h, key, 2.0 * (double)M * (double)N * (double)K);
}

void tp_op_gemm(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                int64_t ldc)
{
    int h = tp_profile_mark(be);
    be->iface->gemm(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    profile_gemm(be, h, false, ta, tb, M, N, K);
}

void tp_op_gemm_c(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const tp_cval_t *A, int64_t lda, const tp_cval_t *B, int64_t ldb, float beta,
                  float *C, int64_t ldc)
{
    int h = tp_profile_mark(be);
    if (be->iface->gemm_c)
        be->iface->gemm_c(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        be->iface->gemm(be, ta, tb, M, N, K, alpha, tp_cval_cf32(A), lda, tp_cval_cf32(B), ldb,
                        beta, C, ldc);
    profile_gemm(be, h, true, ta, tb, M, N, K);
}

/* Whether [a, a + na) and [b, b + nb) (bytes) share a byte. */
static bool overlap(const void *a, size_t na, const void *b, size_t nb)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return a && b && na && nb && x < y + nb && y < x + na;
}

/* Elements of a row-major rows x cols matrix with rows ld apart. */
static size_t span(int64_t rows, int64_t cols, int64_t ld)
{
    return rows > 0 && cols > 0 ? (size_t)((rows - 1) * ld + cols) : 0;
}

/* A fused linear op's profile entry: its product's shape and what came with it. */
static void profile_linear(tp_backend_t *be, int h, const char *what, bool ta, bool tb, int64_t M,
                           int64_t N, int64_t K)
{
    if (h < 0) return;
    char key[64];
    snprintf(key, sizeof key, "gemm%s %c%c %lldx%lldx%lld%s", what, ta ? 'T' : 'N', tb ? 'T' : 'N',
             (long long)M, (long long)N, (long long)K,
             tp_backend_compute_bytes(be) == 2 ? " bf16" : "");
    tp_profile_op(be, h, key, 2.0 * (double)M * (double)N * (double)K);
}

void tp_op_gemm_to_c(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                     float alpha, const tp_cval_t *A, int64_t lda, const tp_cval_t *B, int64_t ldb,
                     tp_cval_t *C, int64_t ldc)
{
    size_t cb = tp_backend_compute_bytes(be), nc = span(M, N, ldc) * cb;
    size_t na = (ta ? span(K, M, lda) : span(M, K, lda)) * cb;
    size_t nb = (tb ? span(N, K, ldb) : span(K, N, ldb)) * cb;
    if (ldc < N || overlap(C, nc, A, na) || overlap(C, nc, B, nb)) {
        fprintf(stderr, "tp_op_gemm_to_c: C overlaps A or B, or ldc < N (backend.h's contract)\n");
        abort();
    }
    int h = tp_profile_mark(be);
    if (be->iface->gemm_to_c)
        be->iface->gemm_to_c(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, C, ldc);
    else
        be->iface->gemm(be, ta, tb, M, N, K, alpha, tp_cval_cf32(A), lda, tp_cval_cf32(B), ldb,
                        0.0f, tp_cval_f32(C), ldc);
    profile_linear(be, h, ">c", ta, tb, M, N, K);
}

void tp_op_linear_forward_c(tp_backend_t *be, const tp_cval_t *x, const tp_cval_t *w,
                            const float *b, const float *r, float *y, int64_t N, int64_t in,
                            int64_t out)
{
    size_t cb = tp_backend_compute_bytes(be), ny = (size_t)(N * out) * sizeof(float);
    if (overlap(y, ny, x, (size_t)(N * in) * cb) || overlap(y, ny, w, (size_t)(out * in) * cb) ||
        overlap(y, ny, b, (size_t)out * sizeof(float)) || overlap(y, ny, r, ny)) {
        fprintf(stderr, "tp_op_linear_forward_c: y overlaps an input (backend.h's contract)\n");
        abort();
    }
    int h = tp_profile_mark(be);
    if (be->iface->linear_forward_c && be->iface->linear_forward_c(be, x, w, b, r, y, N, in, out)) {
        profile_linear(be, h, b ? (r ? "+bias+res" : "+bias") : (r ? "+res" : ""), false, true, N,
                       out, in);
        return;
    }
    tp_op_gemm_c(be, false, true, N, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    if (b) tp_op_bias_add(be, y, b, N, out, false);
    if (r) tp_op_add(be, r, y, y, N * out);
}

void tp_op_linear_grad_c(tp_backend_t *be, const tp_cval_t *dy, const tp_cval_t *x, float *dw,
                         float *db, int64_t N, int64_t in, int64_t out)
{
    int h = tp_profile_mark(be);
    if (be->iface->linear_grad_c && be->iface->linear_grad_c(be, dy, x, dw, db, N, in, out)) {
        profile_linear(be, h, db ? "+bgrad" : "", true, false, out, in, N);
        return;
    }
    tp_op_gemm_c(be, true, false, out, in, N, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (db) tp_op_bias_grad_c(be, dy, db, N, out, false);
}

void tp_op_linear_forward_to_c(tp_backend_t *be, const tp_cval_t *x, const tp_cval_t *w,
                               const float *b, tp_cval_t *y, float *scratch, int64_t N, int64_t in,
                               int64_t out)
{
    size_t cb = tp_backend_compute_bytes(be), n = (size_t)(N * out) * cb;
    if (overlap(y, n, x, (size_t)(N * in) * cb) || overlap(y, n, w, (size_t)(out * in) * cb) ||
        overlap(y, n, b, (size_t)out * sizeof(float)) ||
        (cb == 2 && (!scratch || overlap(scratch, (size_t)(N * out) * sizeof(float), y, n)))) {
        fprintf(stderr, "tp_op_linear_forward_to_c: y overlaps an input or the scratch, or no "
                        "scratch (backend.h's contract)\n");
        abort();
    }
    int h = tp_profile_mark(be);
    if (be->iface->linear_forward_to_c &&
        be->iface->linear_forward_to_c(be, x, w, b, y, scratch, N, in, out)) {
        profile_linear(be, h, b ? "+bias>c" : ">c", false, true, N, out, in);
        return;
    }
    if (cb == sizeof(float)) { /* y is float32: the product goes there */
        tp_op_linear_forward_c(be, x, w, b, NULL, tp_cval_f32(y), N, in, out);
        return;
    }
    tp_op_linear_forward_c(be, x, w, b, NULL, scratch, N, in, out);
    tp_op_to_compute(be, scratch, y, N * out);
}

void tp_op_linear_act_forward_c(tp_backend_t *be, tp_act_t act, const tp_cval_t *x,
                                const tp_cval_t *w, const float *b, tp_cval_t *pre, tp_cval_t *y,
                                float *scratch, int64_t N, int64_t in, int64_t out)
{
    size_t cb = tp_backend_compute_bytes(be), n = (size_t)(N * out) * cb;
    size_t ns = (size_t)(N * out) * sizeof(float);
    if (overlap(pre, n, y, n) || overlap(pre, n, x, (size_t)(N * in) * cb) ||
        overlap(y, n, x, (size_t)(N * in) * cb) ||
        (cb == 2 && (!scratch || overlap(scratch, ns, pre, n) || overlap(scratch, ns, y, n)))) {
        fprintf(stderr, "tp_op_linear_act_forward_c: pre, y and x overlap, or no scratch "
                        "(backend.h's contract)\n");
        abort();
    }
    int h = tp_profile_mark(be);
    if (be->iface->linear_act_forward_c &&
        be->iface->linear_act_forward_c(be, act, x, w, b, pre, y, scratch, N, in, out)) {
        profile_linear(be, h, act == TP_ACT_GELU ? "+bias+gelu" : "+bias+relu", false, true, N, out,
                       in);
        return;
    }
    if (cb == sizeof(float)) { /* pre is float32: the product goes there */
        tp_op_linear_forward_c(be, x, w, b, NULL, tp_cval_f32(pre), N, in, out);
        tp_op_act_forward_c(be, act, tp_cval_cf32(pre), y, N * out);
        return;
    }
    tp_op_linear_forward_c(be, x, w, b, NULL, scratch, N, in, out);
    tp_op_to_compute(be, scratch, pre, N * out);
    tp_op_act_forward_c(be, act, scratch, y, N * out);
}

void tp_op_linear_dx_act_c(tp_backend_t *be, tp_act_t act, const tp_cval_t *dy, const tp_cval_t *w,
                           const tp_cval_t *pre, tp_cval_t *dpre, float *db, float *scratch,
                           int64_t N, int64_t in, int64_t out)
{
    size_t cb = tp_backend_compute_bytes(be), n = (size_t)(N * in) * cb;
    if (overlap(pre, n, dpre, n) || (cb == 2 && overlap(scratch, n * 2, dpre, n))) {
        fprintf(stderr, "tp_op_linear_dx_act_c: dpre overlaps pre or the scratch (backend.h's "
                        "contract)\n");
        abort();
    }
    int h = tp_profile_mark(be);
    if (be->iface->linear_dx_act_c &&
        be->iface->linear_dx_act_c(be, act, dy, w, pre, dpre, db, scratch, N, in, out)) {
        profile_linear(be, h, act == TP_ACT_GELU ? "+dgelu+bgrad" : "+drelu+bgrad", false, false, N,
                       in, out);
        return;
    }
    tp_op_gemm_c(be, false, false, N, in, out, 1.0f, dy, out, w, in, 0.0f, scratch, in);
    tp_op_act_backward_c(be, act, pre, scratch, dpre, N * in);
    if (db) tp_op_bias_grad_c(be, dpre, db, N, in, false);
}

/* A bf16 output must not overlap its float32 input: on a GPU, bf16 element i lies inside float
 * i / 2, which another thread may not have read yet (the CPU emulation runs threads in turn and
 * cannot see the race), so the contract is checked here. A violation is a bug in the caller. */
static void check_apart(tp_backend_t *be, const char *op, const float *in, const tp_cval_t *out,
                        int64_t n)
{
    if (tp_backend_compute_bytes(be) == 4 || n <= 0) return; /* float32: in place is allowed */
    uintptr_t a = (uintptr_t)in, b = (uintptr_t)out, na = (uintptr_t)n * 4, nb = (uintptr_t)n * 2;
    if (a < b + nb && b < a + na) {
        fprintf(stderr, "%s: the bf16 output overlaps a float32 input (backend.h's contract)\n",
                op);
        abort();
    }
}

void tp_op_to_compute(tp_backend_t *be, const float *x, tp_cval_t *y, int64_t n)
{
    if (tp_backend_compute_bytes(be) == 4 && tp_cval_cf32(y) == x) return;
    check_apart(be, "tp_op_to_compute", x, y, n);
    int h = tp_profile_mark(be);
    if (be->iface->to_compute)
        be->iface->to_compute(be, x, y, n);
    else
        be->iface->copy(be, tp_cval_f32(y), x, n);
    tp_profile_op(be, h, "to_compute", 0);
}

void tp_op_bias_grad_c(tp_backend_t *be, const tp_cval_t *dy, float *db, int64_t rows, int64_t cols,
                       bool per_row)
{
    int h = tp_profile_mark(be);
    if (be->iface->bias_grad_c)
        be->iface->bias_grad_c(be, dy, db, rows, cols, per_row);
    else
        be->iface->bias_grad(be, tp_cval_cf32(dy), db, rows, cols, per_row);
    tp_profile_op(be, h, "bias_grad", 0);
}

void tp_op_act_forward_c(tp_backend_t *be, tp_act_t act, const float *x, tp_cval_t *y, int64_t n)
{
    check_apart(be, "tp_op_act_forward_c", x, y, n);
    int h = tp_profile_mark(be);
    if (be->iface->act_forward_c)
        be->iface->act_forward_c(be, act, x, y, n);
    else
        be->iface->act_forward(be, act, x, tp_cval_f32(y), n);
    tp_profile_op(be, h, "act_forward", 0);
}

void tp_op_act_backward_c(tp_backend_t *be, tp_act_t act, const tp_cval_t *x, const float *dy,
                          tp_cval_t *dx, int64_t n)
{
    size_t cb = tp_backend_compute_bytes(be);
    if (cb == 2 && n > 0 && overlap(x, (size_t)n * cb, dx, (size_t)n * cb)) {
        fprintf(stderr,
                "tp_op_act_backward_c: the bf16 output overlaps x (backend.h's contract)\n");
        abort();
    }
    check_apart(be, "tp_op_act_backward_c", dy, dx, n);
    int h = tp_profile_mark(be);
    if (be->iface->act_backward_c)
        be->iface->act_backward_c(be, act, x, dy, dx, n);
    else
        be->iface->act_backward(be, act, tp_cval_cf32(x), dy, tp_cval_f32(dx), n);
    tp_profile_op(be, h, "act_backward", 0);
}

void tp_op_xent_backward_c(tp_backend_t *be, const tp_cval_t *logits, int64_t ld, const float *lse,
                           const int32_t *labels, tp_cval_t *dlogits, int64_t B, int64_t C,
                           float scale)
{
    size_t nb = B > 0 ? (size_t)((B - 1) * ld + C) * tp_backend_compute_bytes(be) : 0;
    if (ld < C ||
        ((const void *)dlogits != (const void *)logits && overlap(logits, nb, dlogits, nb))) {
        fprintf(stderr, "tp_op_xent_backward_c: dlogits overlaps the logits without being them, "
                        "or ld < C (backend.h's contract)\n");
        abort();
    }
    int h = tp_profile_mark(be);
    if (be->iface->xent_backward_c)
        be->iface->xent_backward_c(be, logits, ld, lse, labels, dlogits, B, C, scale);
    else
        be->iface->xent_backward(be, tp_cval_cf32(logits), ld, lse, labels, tp_cval_f32(dlogits), B,
                                 C, scale);
    tp_profile_op(be, h, "xent_backward", 0);
}

void tp_op_xent_forward(tp_backend_t *be, const tp_cval_t *logits, int64_t ld,
                        const int32_t *labels, float *lse, float *loss, int64_t B, int64_t C)
{
    if (ld < C) {
        fprintf(stderr, "tp_op_xent_forward: ld < C (backend.h's contract)\n");
        abort();
    }
    int h = tp_profile_mark(be);
    if (be->iface->xent_forward_c)
        be->iface->xent_forward_c(be, logits, ld, labels, lse, loss, B, C);
    else
        be->iface->xent_forward(be, tp_cval_cf32(logits), ld, labels, lse, loss, B, C);
    tp_profile_op(be, h, "xent_forward", 0);
}

void tp_op_bias_add(tp_backend_t *be, float *y, const float *b, int64_t rows, int64_t cols,
                    bool per_row)
{
    int h = tp_profile_mark(be);
    be->iface->bias_add(be, y, b, rows, cols, per_row);
    tp_profile_op(be, h, "bias_add", 0);
}

void tp_op_bias_grad(tp_backend_t *be, const float *dy, float *db, int64_t rows, int64_t cols,
                     bool per_row)
{
    int h = tp_profile_mark(be);
    be->iface->bias_grad(be, dy, db, rows, cols, per_row);
    tp_profile_op(be, h, "bias_grad", 0);
}

void tp_op_act_forward(tp_backend_t *be, tp_act_t act, const float *x, float *y, int64_t n)
{
    int h = tp_profile_mark(be);
    be->iface->act_forward(be, act, x, y, n);
    tp_profile_op(be, h, "act_forward", 0);
}

void tp_op_act_backward(tp_backend_t *be, tp_act_t act, const float *x, const float *dy, float *dx,
                        int64_t n)
{
    int h = tp_profile_mark(be);
    be->iface->act_backward(be, act, x, dy, dx, n);
    tp_profile_op(be, h, "act_backward", 0);
}

void tp_op_dropout_forward(tp_backend_t *be, const float *x, float *y, uint8_t *mask, int64_t rows,
                           int64_t cols, float p, uint64_t seed, uint64_t stream, int64_t row0)
{
    int h = tp_profile_mark(be);
    be->iface->dropout_forward(be, x, y, mask, rows, cols, p, seed, stream, row0);
    tp_profile_op(be, h, "dropout_forward", 0);
}

void tp_op_dropout_backward(tp_backend_t *be, const float *dy, const uint8_t *mask, float *dx,
                            int64_t n, float p)
{
    int h = tp_profile_mark(be);
    be->iface->dropout_backward(be, dy, mask, dx, n, p);
    tp_profile_op(be, h, "dropout_backward", 0);
}

void tp_op_im2col(tp_backend_t *be, const float *x, float *col, int64_t B, int64_t C, int64_t H,
                  int64_t W, int64_t k)
{
    int h = tp_profile_mark(be);
    be->iface->im2col(be, x, col, B, C, H, W, k);
    tp_profile_op(be, h, "im2col", 0);
}

void tp_op_col2im(tp_backend_t *be, const float *col, float *dx, int64_t B, int64_t C, int64_t H,
                  int64_t W, int64_t k)
{
    int h = tp_profile_mark(be);
    be->iface->col2im(be, col, dx, B, C, H, W, k);
    tp_profile_op(be, h, "col2im", 0);
}

void tp_op_swap01(tp_backend_t *be, const float *src, float *dst, int64_t A, int64_t Bd, int64_t D)
{
    int h = tp_profile_mark(be);
    be->iface->swap01(be, src, dst, A, Bd, D);
    tp_profile_op(be, h, "swap01", 0);
}

void tp_op_maxpool_forward(tp_backend_t *be, const float *x, float *y, int32_t *argmax, int64_t B,
                           int64_t C, int64_t H, int64_t W, int64_t k)
{
    int h = tp_profile_mark(be);
    be->iface->maxpool_forward(be, x, y, argmax, B, C, H, W, k);
    tp_profile_op(be, h, "maxpool_forward", 0);
}

void tp_op_maxpool_backward(tp_backend_t *be, const float *dy, const int32_t *argmax, float *dx,
                            int64_t B, int64_t C, int64_t H, int64_t W, int64_t k)
{
    int h = tp_profile_mark(be);
    be->iface->maxpool_backward(be, dy, argmax, dx, B, C, H, W, k);
    tp_profile_op(be, h, "maxpool_backward", 0);
}

void tp_op_softmax_xent_forward(tp_backend_t *be, const float *logits, const int32_t *labels,
                                float *probs, float *loss, int64_t B, int64_t C)
{
    int h = tp_profile_mark(be);
    be->iface->softmax_xent_forward(be, logits, labels, probs, loss, B, C);
    tp_profile_op(be, h, "softmax_xent_forward", 0);
}

void tp_op_softmax_xent_backward(tp_backend_t *be, const float *probs, const int32_t *labels,
                                 float *dlogits, int64_t B, int64_t C, float scale)
{
    int h = tp_profile_mark(be);
    be->iface->softmax_xent_backward(be, probs, labels, dlogits, B, C, scale);
    tp_profile_op(be, h, "softmax_xent_backward", 0);
}

void tp_op_sumsq_to(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate)
{
    int h = tp_profile_mark(be);
    be->iface->sumsq_to(be, x, n, out, accumulate);
    tp_profile_op(be, h, "sumsq_to", 0);
}

void tp_op_sum_to(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate)
{
    int h = tp_profile_mark(be);
    be->iface->sum_to(be, x, n, out, accumulate);
    tp_profile_op(be, h, "sum_to", 0);
}

double tp_op_sumsq(tp_backend_t *be, const float *x, int64_t n)
{
    double host = 0;
    be->host_waits++;
    if (be->iface->host_memory) {
        int h = tp_profile_mark(be);
        be->iface->sumsq_to(be, x, n, &host, false);
        tp_profile_op(be, h, "sumsq", 0);
        return host;
    }
    if (!be->scalar) be->scalar = be->iface->alloc(be, sizeof(double));
    if (!be->scalar) {
        TP_ERR(TP_ERR_NOMEM, "backend %s: cannot allocate the sumsq result", be->iface->name);
        return NAN;
    }
    int h = tp_profile_mark(be);
    be->iface->sumsq_to(be, x, n, be->scalar, false);
    tp_profile_op(be, h, "sumsq", 0);
    be->iface->download(be, &host, be->scalar, sizeof host);
    return host;
}

void tp_op_scale(tp_backend_t *be, float *x, float alpha, int64_t n)
{
    int h = tp_profile_mark(be);
    be->iface->scale(be, x, alpha, n);
    tp_profile_op(be, h, "scale", 0);
}

void tp_op_fill(tp_backend_t *be, float *x, float value, int64_t n)
{
    int h = tp_profile_mark(be);
    be->iface->fill(be, x, value, n);
    tp_profile_op(be, h, "fill", 0);
}

void tp_op_copy(tp_backend_t *be, float *dst, const float *src, int64_t n)
{
    int h = tp_profile_mark(be);
    be->iface->copy(be, dst, src, n);
    tp_profile_op(be, h, "copy", 0);
}

void tp_op_adamw(tp_backend_t *be, float *p, const float *g, float *m, float *v, int64_t n,
                 float lr, float beta1, float beta2, float eps, float wd, float bc1, float bc2,
                 tp_clip_t clip)
{
    if (clip.max_norm <= 0) clip = TP_CLIP_NONE;
    int h = tp_profile_mark(be);
    be->iface->adamw(be, p, g, m, v, n, lr, beta1, beta2, eps, wd, bc1, bc2, clip);
    tp_profile_op(be, h, "adamw", 0);
}

void tp_op_sgd(tp_backend_t *be, float *p, const float *g, float *buf, int64_t n, float lr,
               float momentum, float wd, bool nesterov, bool first, tp_clip_t clip)
{
    if (clip.max_norm <= 0) clip = TP_CLIP_NONE;
    int h = tp_profile_mark(be);
    be->iface->sgd(be, p, g, buf, n, lr, momentum, wd, nesterov, first, clip);
    tp_profile_op(be, h, "sgd", 0);
}

void tp_op_embedding_forward(tp_backend_t *be, const int32_t *tokens, const float *wte,
                             const float *wpe, float *out, int64_t B, int64_t T, int64_t C)
{
    int h = tp_profile_mark(be);
    be->iface->embedding_forward(be, tokens, wte, wpe, out, B, T, C);
    tp_profile_op(be, h, "embedding_forward", 0);
}

void tp_op_embedding_backward(tp_backend_t *be, const float *dout, const int32_t *tokens,
                              float *dwte, float *dwpe, int64_t B, int64_t T, int64_t C)
{
    int h = tp_profile_mark(be);
    be->iface->embedding_backward(be, dout, tokens, dwte, dwpe, B, T, C);
    tp_profile_op(be, h, "embedding_backward", 0);
}

void tp_op_layernorm_forward(tp_backend_t *be, const float *x, const float *w, const float *b,
                             tp_cval_t *y, float *mean, float *rstd, int64_t N, int64_t C)
{
    int h = tp_profile_mark(be);
    be->iface->layernorm_forward(be, x, w, b, y, mean, rstd, N, C);
    tp_profile_op(be, h, "layernorm_forward", 0);
}

void tp_op_layernorm_backward(tp_backend_t *be, const tp_cval_t *dy, const float *x, const float *w,
                              const float *mean, const float *rstd, float *dx, float *dw, float *db,
                              int64_t N, int64_t C)
{
    int h = tp_profile_mark(be);
    be->iface->layernorm_backward(be, dy, x, w, mean, rstd, dx, dw, db, N, C);
    tp_profile_op(be, h, "layernorm_backward", 0);
}

void tp_op_layernorm_backward_c(tp_backend_t *be, const tp_cval_t *dy, const float *x,
                                const float *w, const float *mean, const float *rstd, float *dx,
                                tp_cval_t *dx_c, float *dw, float *db, float *dsum, int64_t N,
                                int64_t C)
{
    size_t n = N > 0 && C > 0 ? (size_t)(N * C) : 0, nc = n * tp_backend_compute_bytes(be);
    size_t nf = n * sizeof(float), nw = C > 0 ? (size_t)C * sizeof(float) : 0;
    bool self = tp_backend_compute_bytes(be) == sizeof(float) && (void *)dx_c == (void *)dx;
    if (!self &&
        (overlap(dx_c, nc, dx, nf) || overlap(dx_c, nc, dy, nc) || overlap(dx_c, nc, x, nf) ||
         overlap(dx_c, nc, dw, nw) || overlap(dx_c, nc, db, nw) || overlap(dx_c, nc, dsum, nw))) {
        fprintf(stderr, "tp_op_layernorm_backward_c: dx_c overlaps another array "
                        "(backend.h's contract)\n");
        abort();
    }
    if (overlap(dsum, nw, dx, nf) || overlap(dsum, nw, dy, nc) || overlap(dsum, nw, x, nf) ||
        overlap(dsum, nw, dw, nw) || overlap(dsum, nw, db, nw)) {
        fprintf(stderr, "tp_op_layernorm_backward_c: dsum overlaps another array "
                        "(backend.h's contract)\n");
        abort();
    }
    int h = tp_profile_mark(be);
    if (be->iface->layernorm_backward_c &&
        be->iface->layernorm_backward_c(be, dy, x, w, mean, rstd, dx, dx_c, dw, db, dsum, N, C)) {
        tp_profile_op(be, h, "layernorm_backward", 0);
        return;
    }
    tp_op_layernorm_backward(be, dy, x, w, mean, rstd, dx, dw, db, N, C);
    tp_op_to_compute(be, dx, dx_c, N * C);
    if (dsum) tp_op_bias_grad(be, dx, dsum, N, C, false);
}

void tp_op_attention_forward(tp_backend_t *be, const tp_cval_t *qkv, tp_cval_t *out, float *att,
                             int64_t B, int64_t T, int64_t C, int64_t NH)
{
    int h = tp_profile_mark(be);
    be->iface->attention_forward(be, qkv, out, att, B, T, C, NH);
    tp_profile_op(be, h, "attention_forward", 2.0 * (double)B * (double)T * (double)T * (double)C);
}

void tp_op_attention_backward(tp_backend_t *be, const tp_cval_t *dout, const tp_cval_t *qkv,
                              const float *att, const tp_cval_t *out, tp_cval_t *dqkv, int64_t B,
                              int64_t T, int64_t C, int64_t NH)
{
    int h = tp_profile_mark(be);
    be->iface->attention_backward(be, dout, qkv, att, out, dqkv, B, T, C, NH);
    tp_profile_op(be, h, "attention_backward", 5.0 * (double)B * (double)T * (double)T * (double)C);
}

void tp_op_attention_decode(tp_backend_t *be, const float *q, const float *kcache,
                            const float *vcache, tp_cval_t *out, int64_t B, int64_t pos,
                            int64_t Tmax, int64_t C, int64_t NH)
{
    int h = tp_profile_mark(be);
    be->iface->attention_decode(be, q, kcache, vcache, out, B, pos, Tmax, C, NH);
    tp_profile_op(be, h, "attention_decode", 0);
}

void tp_op_axpy(tp_backend_t *be, float *y, const float *x, float alpha, int64_t n)
{
    int h = tp_profile_mark(be);
    be->iface->axpy(be, y, x, alpha, n);
    tp_profile_op(be, h, "axpy", 0);
}

void tp_op_add(tp_backend_t *be, const float *a, const float *b, float *out, int64_t n)
{
    int h = tp_profile_mark(be);
    be->iface->add(be, a, b, out, n);
    tp_profile_op(be, h, "add", 0);
}

void *tp_host_alloc(tp_backend_t *be, size_t bytes)
{
    (void)be;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded ? rounded : 64);
}

void tp_host_release(tp_backend_t *be, void *ptr)
{
    (void)be;
    free(ptr);
}

void tp_host_copy(tp_backend_t *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes) memcpy(dst, src, bytes);
}
