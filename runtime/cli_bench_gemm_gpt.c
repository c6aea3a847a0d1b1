/* `tulpar bench gemm --gpt`: the matrix products of one GPT training step at their real shapes
 * (forward, input gradient and weight gradient of each block's four linear layers, and the tied
 * LM head's three), each timed twice in the same run: on float32 operands (tp_op_gemm: the
 * baseline) and on compute copies (tp_op_gemm_c: bf16 operands under runtime.precision "bf16";
 * where the model's product writes one too, tp_op_gemm_to_c: the logits, and the input
 * gradients that LayerNorm and attention read).
 * The LM head's two products that read the logits' gradient are also timed with its rows padded
 * to multiples of 8 and 64 elements, since a bf16 row of an odd vocabulary (50257) is only
 * 2-byte aligned and tensor-core kernels want 16-byte rows. A second table times the block's
 * fused linear ops as the model runs them (tp_op_linear_forward_c: product, bias and residual;
 * tp_op_linear_forward_to_c: product and bias into a compute copy; tp_op_linear_act_forward_c:
 * with GELU; tp_op_linear_dx_act_c: input gradient through GELU with
 * the bias gradient; tp_op_linear_grad_c: weight and bias gradients) against the same work as
 * separate ops, so the fused epilogues' gain is measured, not assumed
 * (on backends without fused ops both rows run the same ops). A device check on a GPU answers
 * with it, in seconds, what the model's op profile can only show for the layout the model uses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cli.h"
#include "json_writer.h"
#include "rng.h"
#include "runtime.h"

typedef struct product {
    const char *name;
    bool ta, tb;
    int64_t M, N, K, lda, ldb;
    float beta;
    double ms[2];  /* [0]: float32 operands, [1]: compute copies */
    bool to_c;     /* the compute-copy variant writes a compute copy too (tp_op_gemm_to_c), as the
                    * model's product does */
    int64_t ldc_c; /* that compute copy's row stride when it is not N (the model's padded logits) */
} product_t;

#define MAX_PRODUCTS 20

/* The products of one step for `tokens` rows, d_model C and vocabulary V, in the model's order
 * (model_gpt.c: linear, linear_backward and the LM head). */
static int gpt_products(int64_t N, int64_t C, int64_t V, product_t *p)
{
    int n = 0;
    static const struct {
        const char *fwd, *dx, *dw;
        int out, in; /* in multiples of C */
    } lin[] = {{"qkv forward", "qkv dX", "qkv dW", 3, 1},
               {"attn proj forward", "attn proj dX", "attn proj dW", 1, 1},
               {"mlp fc forward", "mlp fc dX", "mlp fc dW", 4, 1},
               {"mlp proj forward", "mlp proj dX", "mlp proj dW", 1, 4}};
    for (int l = 0; l < 4; l++) {
        int64_t out = lin[l].out * C, in = lin[l].in * C;
        p[n++] = (product_t){lin[l].fwd, false, true, N, out, in, in, in, 0.0f, {0, 0}, false, 0};
        /* the model's input gradients are compute copies, but for the MLP projection's (fused
         * with GELU's derivative: the second table) */
        p[n++] = (product_t){lin[l].dx, false, false, N, in, out, out, in, 0.0f, {0, 0}, l < 3, 0};
        p[n++] = (product_t){lin[l].dw, true, false, out, in, N, out, in, 1.0f, {0, 0}, false, 0};
    }
    int64_t v8 = (V + 7) / 8 * 8, v64 = (V + 63) / 64 * 64;
    /* to_c: the model's logits and the head's input gradient are compute copies */
    p[n++] = (product_t){"lm head forward", false, true, N, V, C, C, C, 0.0f, {0, 0}, true, v8};
    p[n++] = (product_t){"lm head dW", true, false, V, C, N, V, C, 1.0f, {0, 0}, false, 0};
    p[n++] = (product_t){"lm head dX", false, false, N, C, V, V, C, 0.0f, {0, 0}, true, 0};
    p[n++] =
        (product_t){"lm head dW, rows of 8", true, false, V, C, N, v8, C, 1.0f, {0, 0}, false, 0};
    p[n++] =
        (product_t){"lm head dX, rows of 8", false, false, N, C, V, v8, C, 0.0f, {0, 0}, true, 0};
    p[n++] =
        (product_t){"lm head dW, rows of 64", true, false, V, C, N, v64, C, 1.0f, {0, 0}, false, 0};
    p[n++] = (product_t){
        "lm head dX, rows of 64", false, false, N, C, V, v64, C, 0.0f, {0, 0}, false, 0};
    return n;
}

static int64_t rows_of(bool trans, int64_t rows, int64_t cols)
{
    return trans ? cols : rows;
}

/* Fill n floats of backend memory with random values in [-0.5, 0.5): one random block
 * uploaded, then copied along (device-side copies, so a 3 GB operand costs no host work). */
static void fill_random(tp_backend_t *be, float *x, int64_t n, const float *block, int64_t nb)
{
    int64_t first = n < nb ? n : nb;
    tp_backend_upload(be, x, block, (size_t)first * sizeof(float));
    for (int64_t i = first; i < n; i += first)
        tp_op_copy(be, x + i, x, n - i < first ? n - i : first);
}

typedef struct operands {
    const float *A, *B;
    const tp_cval_t *Ac, *Bc;
    float *C;
} operands_t;

/* A timed call: `what` (a product or a linear row) with variant `alt` (compute copies, or the
 * fused op) on `operands`. */
typedef void (*call_fn)(tp_backend_t *be, const void *what, bool alt, const void *operands);

static void call_product(tp_backend_t *be, const void *what, bool c, const void *operands)
{
    const product_t *p = what;
    const operands_t *o = operands;
    if (c && p->to_c) /* o->C holds M x max(N, ldc_c) floats */
        tp_op_gemm_to_c(be, p->ta, p->tb, p->M, p->N, p->K, 1.0f, o->Ac, p->lda, o->Bc, p->ldb,
                        (tp_cval_t *)(void *)o->C, p->ldc_c ? p->ldc_c : p->N);
    else if (c)
        tp_op_gemm_c(be, p->ta, p->tb, p->M, p->N, p->K, 1.0f, o->Ac, p->lda, o->Bc, p->ldb,
                     p->beta, o->C, p->N);
    else
        tp_op_gemm(be, p->ta, p->tb, p->M, p->N, p->K, 1.0f, o->A, p->lda, o->B, p->ldb, p->beta,
                   o->C, p->N);
}

/* Mean ms per call of `iters` back-to-back calls (one host wait at the end, as in training),
 * after one warm-up call (cuBLAS's heuristics and workspace). */
static double time_calls(tp_backend_t *be, call_fn fn, const void *what, bool alt,
                         const void *operands, int iters)
{
    fn(be, what, alt, operands);
    tp_backend_synchronize(be);
    double t0 = tp_now();
    for (int it = 0; it < iters; it++)
        fn(be, what, alt, operands);
    tp_backend_synchronize(be);
    return 1e3 * (tp_now() - t0) / iters;
}

/* One fused linear op of a block as the model calls it, for the fused-against-separate table. */
typedef enum {
    LIN_FWD,      /* tp_op_linear_forward_c: product + bias (+ residual) */
    LIN_FWD_C,    /* tp_op_linear_forward_to_c: product + bias into a compute copy */
    LIN_FWD_GELU, /* tp_op_linear_act_forward_c: product + bias, stored, and GELU */
    LIN_GRAD_DB,  /* tp_op_linear_grad_c: dW and the bias gradient */
    LIN_DX_GELU,  /* tp_op_linear_dx_act_c: dX, GELU's derivative and the bias gradient */
} linear_kind_t;

typedef struct linear_row {
    const char *name;
    linear_kind_t kind;
    bool residual; /* LIN_FWD: the projections add the residual stream */
    int64_t N, in, out;
    double ms[2]; /* [0]: separate ops, [1]: the fused op */
} linear_row_t;

#define N_LINEAR 6

/* The block's fused ops, in the model's order (model_gpt.c). */
static int gpt_linears(int64_t N, int64_t C, linear_row_t *r)
{
    int n = 0;
    r[n++] = (linear_row_t){"qkv fwd+bias (copy)", LIN_FWD_C, false, N, C, 3 * C, {0, 0}};
    r[n++] = (linear_row_t){"attn proj fwd+bias+res", LIN_FWD, true, N, C, C, {0, 0}};
    r[n++] = (linear_row_t){"mlp fc fwd+bias+gelu", LIN_FWD_GELU, false, N, C, 4 * C, {0, 0}};
    r[n++] = (linear_row_t){"mlp proj fwd+bias+res", LIN_FWD, true, N, 4 * C, C, {0, 0}};
    r[n++] = (linear_row_t){"mlp proj dX+dgelu+db", LIN_DX_GELU, false, N, 4 * C, C, {0, 0}};
    r[n++] = (linear_row_t){"qkv dW+db", LIN_GRAD_DB, false, N, C, 3 * C, {0, 0}};
    return n;
}

typedef struct linear_operands {
    const tp_cval_t *x, *w, *dy; /* compute copies */
    tp_cval_t *pre, *act;        /* compute copies of [N, 4C]: pre-activation and GELU output */
    float *bias, *res, *y;       /* bias / db, residual, output / dW / scratch */
} linear_operands_t;

static void call_separate(tp_backend_t *be, const linear_row_t *r, const linear_operands_t *o)
{
    int64_t N = r->N, in = r->in, out = r->out;
    switch (r->kind) {
    case LIN_FWD:
    case LIN_FWD_C:
    case LIN_FWD_GELU:
        tp_op_gemm_c(be, false, true, N, out, in, 1.0f, o->x, in, o->w, in, 0.0f, o->y, out);
        tp_op_bias_add(be, o->y, o->bias, N, out, false);
        if (r->residual) tp_op_add(be, o->res, o->y, o->y, N * out);
        if (r->kind == LIN_FWD_C) tp_op_to_compute(be, o->y, o->pre, N * out);
        if (r->kind == LIN_FWD_GELU) {
            tp_op_to_compute(be, o->y, o->pre, N * out);
            tp_op_act_forward_c(be, TP_ACT_GELU, o->y, o->act, N * out);
        }
        break;
    case LIN_GRAD_DB:
        tp_op_gemm_c(be, true, false, out, in, N, 1.0f, o->dy, out, o->x, in, 1.0f, o->y, in);
        tp_op_bias_grad_c(be, o->dy, o->bias, N, out, false);
        break;
    case LIN_DX_GELU:
        tp_op_gemm_c(be, false, false, N, in, out, 1.0f, o->dy, out, o->w, in, 0.0f, o->y, in);
        tp_op_act_backward_c(be, TP_ACT_GELU, o->pre, o->y, o->act, N * in);
        tp_op_bias_grad_c(be, o->act, o->bias, N, in, false);
        break;
    }
}

static void call_fused(tp_backend_t *be, const linear_row_t *r, const linear_operands_t *o)
{
    int64_t N = r->N, in = r->in, out = r->out;
    switch (r->kind) {
    case LIN_FWD:
        tp_op_linear_forward_c(be, o->x, o->w, o->bias, r->residual ? o->res : NULL, o->y, N, in,
                               out);
        break;
    case LIN_FWD_C:
        tp_op_linear_forward_to_c(be, o->x, o->w, o->bias, o->pre, o->y, N, in, out);
        break;
    case LIN_FWD_GELU:
        tp_op_linear_act_forward_c(be, TP_ACT_GELU, o->x, o->w, o->bias, o->pre, o->act, o->y, N,
                                   in, out);
        break;
    case LIN_GRAD_DB:
        tp_op_linear_grad_c(be, o->dy, o->x, o->y, o->bias, N, in, out);
        break;
    case LIN_DX_GELU:
        tp_op_linear_dx_act_c(be, TP_ACT_GELU, o->dy, o->w, o->pre, o->act, o->bias, o->y, N, in,
                              out);
        break;
    }
}

static void call_linear(tp_backend_t *be, const void *what, bool fused, const void *operands)
{
    if (fused)
        call_fused(be, what, operands);
    else
        call_separate(be, what, operands);
}

static double tflops(const product_t *p, double ms)
{
    return ms > 0 ? 2.0 * (double)p->M * (double)p->N * (double)p->K / (ms * 1e-3) / 1e12 : 0.0;
}

static tp_status_t write_json(const char *path, tp_backend_t *be, int64_t N, int64_t C, int64_t V,
                              int64_t L, const product_t *p, int n, const double *step,
                              const linear_row_t *lr, int nl, const double *lstep)
{
    tp_json_file_t jf;
    TP_TRY(tp_json_file_open(&jf, path, true));
    tp_json_t *j = &jf.j;
    tp_json_object_begin(j, NULL);
    tp_json_str(j, "benchmark", "gemm_gpt");
    tp_json_str(j, "backend", tp_backend_describe(be));
    tp_json_str(j, "precision", tp_backend_precision(be) == TP_PREC_BF16 ? "bf16" : "fp32");
    tp_json_int(j, "tokens", N);
    tp_json_int(j, "d_model", C);
    tp_json_int(j, "vocab", V);
    tp_json_int(j, "layers", L);
    tp_json_num(j, "step_products_ms_f32", step[0]);
    tp_json_num(j, "step_products_ms_compute", step[1]);
    tp_json_num(j, "speedup", step[1] > 0 ? step[0] / step[1] : 0.0);
    tp_json_array_begin(j, "products");
    for (int i = 0; i < n; i++) {
        tp_json_object_begin(j, NULL);
        tp_json_str(j, "name", p[i].name);
        char op[3] = {p[i].ta ? 'T' : 'N', p[i].tb ? 'T' : 'N', 0};
        tp_json_str(j, "op", op);
        tp_json_int(j, "M", p[i].M);
        tp_json_int(j, "N", p[i].N);
        tp_json_int(j, "K", p[i].K);
        tp_json_int(j, "lda", p[i].lda);
        tp_json_num(j, "ms_f32", p[i].ms[0]);
        tp_json_num(j, "tflops_f32", tflops(&p[i], p[i].ms[0]));
        tp_json_num(j, "ms_compute", p[i].ms[1]);
        tp_json_num(j, "tflops_compute", tflops(&p[i], p[i].ms[1]));
        tp_json_num(j, "speedup", p[i].ms[1] > 0 ? p[i].ms[0] / p[i].ms[1] : 0.0);
        tp_json_object_end(j);
    }
    tp_json_array_end(j);
    tp_json_num(j, "step_linear_ms_separate", lstep[0]);
    tp_json_num(j, "step_linear_ms_fused", lstep[1]);
    tp_json_array_begin(j, "linear");
    for (int i = 0; i < nl; i++) {
        tp_json_object_begin(j, NULL);
        tp_json_str(j, "name", lr[i].name);
        tp_json_int(j, "tokens", lr[i].N);
        tp_json_int(j, "in", lr[i].in);
        tp_json_int(j, "out", lr[i].out);
        tp_json_num(j, "ms_separate", lr[i].ms[0]);
        tp_json_num(j, "ms_fused", lr[i].ms[1]);
        tp_json_num(j, "speedup", lr[i].ms[1] > 0 ? lr[i].ms[0] / lr[i].ms[1] : 0.0);
        tp_json_object_end(j);
    }
    tp_json_array_end(j);
    tp_json_object_end(j);
    return tp_json_file_commit(&jf, path);
}

static tp_status_t run(tp_backend_t *be, int64_t N, int64_t C, int64_t V, int64_t L, int iters,
                       const char *json)
{
    product_t p[MAX_PRODUCTS];
    int n = gpt_products(N, C, V, p);
    int64_t na = 0, nb = 0, nc = 0;
    for (int i = 0; i < n; i++) {
        int64_t a = rows_of(p[i].ta, p[i].M, p[i].K) * p[i].lda;
        int64_t b = rows_of(p[i].tb, p[i].K, p[i].N) * p[i].ldb;
        int64_t c = p[i].M * (p[i].ldc_c > p[i].N ? p[i].ldc_c : p[i].N);
        na = a > na ? a : na;
        nb = b > nb ? b : nb;
        nc = c > nc ? c : nc;
    }
    const int64_t nblock = (int64_t)1 << 20;
    float *block = tp_malloc((size_t)nblock * sizeof(float), "random block");
    float *A = tp_backend_alloc(be, (size_t)na * sizeof(float), "A");
    float *B = tp_backend_alloc(be, (size_t)nb * sizeof(float), "B");
    float *Cm = tp_backend_alloc(be, (size_t)nc * sizeof(float), "C");
    tp_cval_t *Ac = tp_backend_alloc_compute(be, na, "A (compute copy)");
    tp_cval_t *Bc = tp_backend_alloc_compute(be, nb, "B (compute copy)");
    float *bias = tp_backend_alloc(be, (size_t)(4 * C) * sizeof(float), "bias");
    float *res = tp_backend_alloc(be, (size_t)(N * C) * sizeof(float), "residual");
    tp_cval_t *pre = tp_backend_alloc_compute(be, N * 4 * C, "pre-activation");
    tp_cval_t *act = tp_backend_alloc_compute(be, N * 4 * C, "activation");
    tp_status_t st =
        block && A && B && Cm && Ac && Bc && bias && res && pre && act ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) {
        tp_rng_t r;
        tp_rng_seed(&r, 7, 0);
        for (int64_t i = 0; i < nblock; i++)
            block[i] = tp_rng_uniform(&r) - 0.5f;
        fill_random(be, A, na, block, nblock);
        fill_random(be, B, nb, block + 17, nblock - 17);
        tp_op_fill(be, Cm, 0.0f, nc);
        tp_op_to_compute(be, A, Ac, na);
        tp_op_to_compute(be, B, Bc, nb);
        bool bf16 = tp_backend_compute_bytes(be) == 2;
        printf("# GPT training products on %s, runtime.precision %s: %lld tokens, d_model %lld, "
               "vocabulary %lld; mean of %d calls after a warm-up\n",
               tp_backend_describe(be), bf16 ? "bf16" : "fp32", (long long)N, (long long)C,
               (long long)V, iters);
        printf("# %-24s %2s %6s %6s %6s %6s | %9s %8s | %9s %8s | %7s\n", "product", "op", "M", "N",
               "K", "lda", "f32 ms", "TFLOP/s", bf16 ? "bf16 ms" : "copy ms", "TFLOP/s", "speedup");
        double step[2] = {0, 0};
        for (int i = 0; i < n; i++) {
            operands_t o = {A, B, Ac, Bc, Cm};
            for (int c = 0; c < 2; c++)
                p[i].ms[c] = time_calls(be, call_product, &p[i], c, &o, iters);
            printf("  %-24s %c%c %6lld %6lld %6lld %6lld | %9.3f %8.1f | %9.3f %8.1f | %7.2f\n",
                   p[i].name, p[i].ta ? 'T' : 'N', p[i].tb ? 'T' : 'N', (long long)p[i].M,
                   (long long)p[i].N, (long long)p[i].K, (long long)p[i].lda, p[i].ms[0],
                   tflops(&p[i], p[i].ms[0]), p[i].ms[1], tflops(&p[i], p[i].ms[1]),
                   p[i].ms[1] > 0 ? p[i].ms[0] / p[i].ms[1] : 0.0);
            /* A step: L x the 12 block products, and the head's three at the model's layout. */
            for (int c = 0; c < 2; c++)
                step[c] += p[i].ms[c] * (i < 12 ? (double)L : i < 15 ? 1.0 : 0.0);
        }
        printf("# one step's products (%lld layers, unpadded head): %.3f ms on float32 operands, "
               "%.3f ms on compute copies (%.2fx)\n",
               (long long)L, step[0], step[1], step[1] > 0 ? step[0] / step[1] : 0.0);

        linear_row_t lr[N_LINEAR];
        int nl = gpt_linears(N, C, lr);
        linear_operands_t lo = {Ac, Bc, Ac, pre, act, bias, res, Cm};
        tp_op_fill(be, bias, 0.25f, 4 * C);
        tp_op_fill(be, res, 0.5f, N * C);
        tp_op_to_compute(be, A, pre, N * 4 * C); /* read by GELU's derivative */
        printf("# linear layers as the model runs them: separate ops (gemm_c, bias_add, add, "
               "to_compute, act_*_c, bias_grad_c) against tp_op_linear_*_c (one fused product "
               "where the backend has one)\n");
        printf("# %-24s %6s %6s %6s | %11s %9s | %7s\n", "layer", "tokens", "in", "out",
               "separate ms", "fused ms", "speedup");
        double lstep[2] = {0, 0};
        for (int i = 0; i < nl; i++) {
            for (int f = 0; f < 2; f++) {
                lr[i].ms[f] = time_calls(be, call_linear, &lr[i], f, &lo, iters);
                lstep[f] += lr[i].ms[f] * (double)L;
            }
            printf("  %-24s %6lld %6lld %6lld | %11.3f %9.3f | %7.2f\n", lr[i].name,
                   (long long)lr[i].N, (long long)lr[i].in, (long long)lr[i].out, lr[i].ms[0],
                   lr[i].ms[1], lr[i].ms[1] > 0 ? lr[i].ms[0] / lr[i].ms[1] : 0.0);
        }
        printf(
            "# one step's fused linear ops (%lld layers; other products not included): %.3f ms as "
            "separate ops, %.3f ms fused (%.2fx)\n",
            (long long)L, lstep[0], lstep[1], lstep[1] > 0 ? lstep[0] / lstep[1] : 0.0);
        if (json) st = write_json(json, be, N, C, V, L, p, n, step, lr, nl, lstep);
    }
    free(block);
    tp_backend_release(be, A);
    tp_backend_release(be, B);
    tp_backend_release(be, Cm);
    tp_backend_release(be, Ac);
    tp_backend_release(be, Bc);
    tp_backend_release(be, bias);
    tp_backend_release(be, res);
    tp_backend_release(be, pre);
    tp_backend_release(be, act);
    return st;
}

int tp_bench_gemm_gpt_main(int argc, char **argv)
{
    const char *json = NULL, *backend = "cpu", *precision = "fp32";
    int threads = 0, iters = 5;
    long long N = 16384, C = 768, V = 50257, L = 12;
    for (int i = 1; i < argc; i++) {
        const char *v;
        long long *dst = NULL;
        const char *opt = NULL;
        if (tp_cli_is(argv[i], "--gpt")) continue;
        if (tp_cli_is(argv[i], "--json")) {
            if (!(json = tp_cli_value(argc, argv, &i, "--json"))) return TP_ERR_USAGE;
            continue;
        }
        if (tp_cli_is(argv[i], "--backend")) {
            if (!(backend = tp_cli_value(argc, argv, &i, "--backend"))) return TP_ERR_USAGE;
            continue;
        }
        if (tp_cli_is(argv[i], "--precision")) {
            if (!(precision = tp_cli_value(argc, argv, &i, "--precision"))) return TP_ERR_USAGE;
            if (strcmp(precision, "fp32") != 0 && strcmp(precision, "bf16") != 0)
                return tp_cli_usage_error("bench", "--precision: fp32 or bf16, not '%s'",
                                          precision);
            continue;
        }
        if (tp_cli_is(argv[i], "--threads") || tp_cli_is(argv[i], "--iters")) {
            opt = tp_cli_is(argv[i], "--threads") ? "--threads" : "--iters";
            if (!(v = tp_cli_value(argc, argv, &i, opt))) return TP_ERR_USAGE;
            int k = atoi(v);
            if (k < 1) return tp_cli_usage_error("bench", "%s needs a count >= 1", opt);
            *(strcmp(opt, "--threads") == 0 ? &threads : &iters) = k;
            continue;
        }
        if (tp_cli_is(argv[i], "--tokens")) opt = "--tokens", dst = &N;
        if (tp_cli_is(argv[i], "--d-model")) opt = "--d-model", dst = &C;
        if (tp_cli_is(argv[i], "--vocab")) opt = "--vocab", dst = &V;
        if (tp_cli_is(argv[i], "--layers")) opt = "--layers", dst = &L;
        if (!dst) return tp_cli_usage_error("bench", "unknown option '%s'", argv[i]);
        if (!(v = tp_cli_value(argc, argv, &i, opt))) return TP_ERR_USAGE;
        char *end;
        *dst = strtoll(v, &end, 10);
        if (end == v || *end || *dst < 1 || *dst > (1LL << 24))
            return tp_cli_usage_error("bench", "%s: a count from 1 to 16777216, not '%s'", opt, v);
    }
    tp_backend_t *be = NULL;
    TP_TRY(tp_backend_create(backend, threads, &be));
    tp_status_t st =
        tp_backend_set_precision(be, strcmp(precision, "bf16") == 0 ? TP_PREC_BF16 : TP_PREC_FP32);
    if (st == TP_OK) st = run(be, N, C, V, L, iters, json);
    tp_backend_free(be);
    return st;
}
