/* Every op of the "cuda" backend against the "ref" oracle (as tests/unit/test_ops.c and
 * test_ops_transformer.c do for "cpu"), in both arithmetic precisions (runtime.precision fp32 and
 * bf16): random non-zero inputs, device outputs poisoned with NaN before each op so that an
 * element an op forgets to write shows, accumulating ops started from non-zero values, odd sizes
 * that are not multiples of any tile or vector width, device pointers one float past an aligned
 * address, and GPT-2-like shapes (C = 768, NH = 12, T = 64 and 257, vocabulary 50257). Forward
 * and backward. Each failure prints one line naming the op, the shape and the error; the end is a
 * table "op | precision | max rel err | tolerance | ok" (the worst case of each op). Without a GPU
 * it prints "SKIP: no GPU (<reason>)" and returns 77. TP_TEST_GPU_BACKEND=cpu runs the same
 * comparisons against the cpu backend (a check of the test itself where no GPU is). Built with
 * TP_CUDA_EMULATED (tests/emu) it runs the CUDA kernels themselves on the CPU.
 *
 * Error measure: max |gpu - ref| / max |ref| over the tensor (NaN or inf anywhere = infinite),
 * except where a row says otherwise. The ref backend sums in double, so the error is the GPU's.
 *
 * Tolerances (fp32 = runtime.precision "fp32", bf16 = "bf16"):
 *
 * | op class                                    | fp32   | bf16   | why                        |
 * |---------------------------------------------|--------|--------|----------------------------|
 * | data movement: im2col, swap01, maxpool (y,  | 0      | 0      | copies and selections:     |
 * |   argmax, dx), fill, copy, embedding_forward|        |        | exact (one fp32 add for    |
 * |   dropout mask (bit-identical)              |        |        | the embedding)             |
 * | sumsq, sumsq_to, sum_to (of sum |x|)        | 1e-12  | 1e-12  | double accumulation; only  |
 * |                                             |        |        | the summation order differs|
 * | clip_by_norm (no clip: exact)               | 1e-5   | 1e-2   | factor from a device sumsq |
 * | every other non-matmul op (bias, act,       | 1e-5   | 1e-2   | the targets; fp32  |
 * |   dropout y/dx, col2im, softmax_xent,       |        |        | kernels differ from ref    |
 * |   scale, axpy, add, adamw, sgd, embedding   |        |        | only by summation order and|
 * |   backward, layernorm fwd/bwd)              |        |        | libm ulps (~1e-6)          |
 * | gemm                                        | 2e-3   | 1e-2   | see below                  |
 * | gemm_c (operands already bf16 under "bf16") | 2e-3   | 1e-3   | products of bf16 values are|
 * |   linear_forward_c, linear_grad_c (dW, db:  |        |        | exact in fp32: only the    |
 * |   the bias sum is fused into the product)   |        |        | fp32 accumulation remains  |
 * | bias_grad_c (dy already bf16)               | 1e-5   | 1e-5   | sums in double, as fp32    |
 * | attention forward/backward/decode           | 5e-3   | 1e-2   | see below                  |
 *
 * 1e-5 is the target for every op that is not a matrix product. Matrix products in "fp32" run on
 * TF32 tensor cores on GPUs (backend.h): TF32 keeps 10 mantissa bits, so each input is rounded by
 * up to 2^-11 = 4.9e-4 relative, a product by ~1e-3; with K = 1 (no averaging of the rounding
 * over the sum) that is ~1e-3 of max |C|, for large K the random-sign errors grow as sqrt(K)
 * while max |C| grows at least as fast. Hence 2e-3 of max |C| for gemm in fp32. Attention is two
 * matrix products around a softmax: a TF32 error of ~1e-3 x |score| in a score becomes the same
 * relative error in exp(score), and the gradients go through both products and the softmax
 * Jacobian, hence 5e-3. bf16 keeps 8 mantissa bits (inputs rounded by up to 2^-9 = 2e-3,
 * products by ~4e-3, fp32 accumulation): 1e-2, the figure, for every op in bf16 mode
 * (non-matmul ops are expected to stay fp32 there, well inside it).
 *
 * In bf16 (head sizes up to 64) attention runs on tensor cores: every product with bf16 inputs
 * and fp32 accumulation, softmax and dS in fp32. Measured: 3.6e-3 for out and 3.5e-3 for dqkv on
 * an H100 (2026-11-27, when the ref still read qkv unrounded: 4.2e-3 and 3.3e-3 in the CPU
 * emulation then), 3.3e-3 and 4.4e-3 in the emulation now, inside bf16's 1e-2.
 *
 * Compute copies (backend.h: bf16 under "bf16"): ops that read them (gemm_c, bias_grad_c) get
 * inputs the ref sees rounded the same way, so the error is the op's; elementwise ops that
 * write them (act_*_c, xent_backward_c, layernorm y) are compared with the ref's result
 * rounded likewise (each element's own rounding is not the kernel's error), to_compute must equal
 * the host's rounding bit for bit, and attention's outputs (out, dqkv, decode) are compared
 * unrounded: their bf16 rounding (2^-9) is part of what the tensor-core path's 1e-2 covers.
 *
 * Attention: the cuda att buffer holds per-row log-sum-exp statistics (its size comes from
 * tp_op_attention_att_numel), not the probabilities the ref keeps, so only out and dqkv are
 * compared; the cuda backward uses the cuda forward's att. */
#include "test_backends.h" /* tests/unit: in emu builds, the emulated CUDA backend */
#ifndef TP_CUDA_EMULATED
#include "cuda_probe.h"
#endif

#include <stdbool.h>

#include "cuda_ops_harness.h"

/* ---- gemm ---------------------------------------------------------------------------------- */

/* c: 0 tp_op_gemm; 1 tp_op_gemm_c, operands as compute copies (the ref multiplies their rounded
 * values); 2 tp_op_gemm_to_c, the result a compute copy too (beta 0; the ref's result rounded as
 * the copy is, so one rounding boundary's ulp remains). With pad > 0 the copies start one
 * element past an aligned address, as a weight's slice of the weights' copy may. */
static void gemm_case(int c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                      float beta, int64_t pad)
{
    char sh[160];
    int64_t ra = ta ? K : M, ca = ta ? M : K, lda = ca + pad;
    int64_t rb = tb ? N : K, cb = tb ? K : N, ldb = cb + pad, ldc = N + pad;
    float *A = hrnd((size_t)(ra * lda), 1.0f), *B = hrnd((size_t)(rb * ldb), 1.0f);
    /* Padding must never be read: NaN there would reach C. */
    for (int64_t i = 0; i < ra; i++)
        for (int64_t j = ca; j < lda; j++)
            A[i * lda + j] = NAN;
    for (int64_t i = 0; i < rb; i++)
        for (int64_t j = cb; j < ldb; j++)
            B[i * ldb + j] = NAN;
    size_t nc = (size_t)(M * ldc);
    /* beta = 0 must ignore C entirely (NaN * 0 is NaN). */
    float *C0 = beta == 0.0f ? hnan(nc) : hrnd(nc, 1.0f);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = N; j < ldc; j++)
            C0[i * ldc + j] = NAN;
    float *Cr = hdup(C0, nc);
    float *dC = c == 2 ? NULL : dputf(C0, nc);
    tp_cval_t *dCc = NULL;
    size_t na = (size_t)(ra * lda), nb = (size_t)(rb * ldb);
    if (c) {
        hround(A, na);
        hround(B, nb);
        tp_cval_t *(*put)(const float *, size_t) = pad ? dputc_off : dputc;
        if (c == 2) {
            dCc = put(C0, nc);
            tp_op_gemm_to_c(g_gpu, ta, tb, M, N, K, alpha, put(A, na), lda, put(B, nb), ldb, dCc,
                            ldc);
        } else {
            tp_op_gemm_c(g_gpu, ta, tb, M, N, K, alpha, put(A, na), lda, put(B, nb), ldb, beta, dC,
                         ldc);
        }
    } else {
        tp_op_gemm(g_gpu, ta, tb, M, N, K, alpha, dputf(A, na), lda, dputf(B, nb), ldb, beta, dC,
                   ldc);
    }
    tp_op_gemm(g_ref, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cr, ldc);
    float *Cg = c == 2 ? dgetc(dCc, nc) : dgetf(dC, nc);
    if (c == 2) hround(Cr, nc);
    const char *op = c == 2 ? "gemm_to_c" : c ? "gemm_c" : "gemm";
    snprintf(sh, sizeof sh, "ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g pad=%lld", ta, tb,
             (long long)M, (long long)N, (long long)K, (double)alpha, (double)beta, (long long)pad);
    double e = 0, maxref = 1e-30;
    bool pad_ok = true;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double d = fabs((double)Cg[i * ldc + j] - Cr[i * ldc + j]);
            if (!isfinite(d)) d = INFINITY;
            if (d > e) e = d;
            if (fabs(Cr[i * ldc + j]) > maxref) maxref = fabs(Cr[i * ldc + j]);
        }
        pad_ok &= memcmp(Cg + i * ldc + N, C0 + i * ldc + N, (size_t)(ldc - N) * 4) == 0;
    }
    expect(op, sh, e / maxref, c == 1 ? K_GEMM_C : K_GEMM);
    CHECKF(pad_ok, "[%s] %s(%s): wrote into the ldc padding", g_prec_name[g_prec], op, sh);
    case_end();
}

static void test_gemm(void)
{
    static const int64_t shapes[][3] = {{1, 1, 1},       {7, 33, 130},   {33, 7, 1},
                                        {130, 1, 7},     {5, 130, 33},   {64, 65, 257},
                                        {127, 129, 255}, {257, 67, 1031}};
    for (int c = 0; c < 3; c++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++)
                    for (int bi = 0; bi < (c == 2 ? 1 : 2); bi++)
                        for (int pad = 0; pad <= 3; pad += 3)
                            gemm_case(c, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2],
                                      pad ? -0.5f : 1.0f, bi ? 0.75f : 0.0f, pad);
    /* GPT-2 124M layers at B*T = 128 rows (and 257: not a multiple of any tile): qkv forward
     * x W^T, its input gradient dY W, its weight gradient dY^T X (accumulating, beta = 1), and
     * the MLP's 768 -> 3072; the model runs them on compute copies. */
    for (int c = 0; c < 2; c++) {
        gemm_case(c, false, true, 128, 2304, 768, 1.0f, 0.0f, 0);
        gemm_case(c, false, false, 128, 768, 2304, 1.0f, 0.0f, 0);
        gemm_case(c, true, false, 2304, 768, 128, 1.0f, 1.0f, 0);
        gemm_case(c, false, true, 257, 3072, 768, 1.0f, 0.0f, 0);
    }
    /* The tied LM head on compute copies, with GPT-2's odd vocabulary (rows of 50257 elements:
     * 2-byte aligned in bf16): logits = x wte^T (into a compute copy, as the model writes them),
     * dwte += dlogits^T x, dx = dlogits wte. */
    gemm_case(2, false, true, 32, 50257, 768, 1.0f, 0.0f, 0);
    gemm_case(1, true, false, 50257, 768, 32, 1.0f, 1.0f, 0);
    gemm_case(1, false, false, 32, 768, 50257, 1.0f, 0.0f, 0);
}

/* ---- linear ops: products with fused bias, residual and bias gradient ---------------------- */

/* tp_op_linear_forward_c and tp_op_linear_grad_c (cuBLASLt epilogues on cuda) against the ref's
 * unfused ops on the same rounded inputs; with_b, with_r: bias and residual present; off: the
 * weight one element off alignment (a slice of the weights' copy). The bias gradient runs inside
 * the product, so it is held to the product's tolerance. */
static void linear_case(int64_t N, int64_t in, int64_t out, bool with_b, bool with_r, bool off)
{
    char sh[128];
    snprintf(sh, sizeof sh, "N=%lld in=%lld out=%lld bias=%d res=%d off=%d", (long long)N,
             (long long)in, (long long)out, with_b, with_r, off);
    size_t nx = (size_t)(N * in), nw = (size_t)(out * in), ny = (size_t)(N * out);
    float *x = hround(hrnd(nx, 1.0f), nx), *w = hround(hrnd(nw, 1.0f), nw);
    float *b = with_b ? hrnd((size_t)out, 1.0f) : NULL, *r = with_r ? hrnd(ny, 4.0f) : NULL;
    tp_cval_t *dx = dputc(x, nx), *dw = off ? dputc_off(w, nw) : dputc(w, nw);
    float *yr = hnan(ny), *dy = dnan(ny);
    tp_op_linear_forward_c(g_ref, CV(x), CV(w), b, r, yr, N, in, out);
    tp_op_linear_forward_c(g_gpu, dx, dw, with_b ? dputf(b, (size_t)out) : NULL,
                           with_r ? dputf(r, ny) : NULL, dy, N, in, out);
    expect("linear_forward_c", sh, tp_test_rel_err(dgetf(dy, ny), yr, ny), K_GEMM_C);
    if (!with_r) { /* the same product into a compute copy (the qkv projection): compared as
                    * linear_act_case's outputs are, against the ref's result rounded alike */
        float *ycr = hnan(ny);
        tp_cval_t *dyc = dnanc(ny);
        tp_op_linear_forward_to_c(g_ref, CV(x), CV(w), b, CV(ycr), hnan(ny), N, in, out);
        tp_op_linear_forward_to_c(g_gpu, dx, dw, with_b ? dputf(b, (size_t)out) : NULL, dyc,
                                  dnan(ny), N, in, out);
        expect("linear_forward_to_c", sh, tp_test_rel_err(dgetc(dyc, ny), hround(ycr, ny), ny),
               K_GEMM);
    }

    /* Gradients accumulate: dW and db start non-zero. */
    float *g = hround(hrnd(ny, 1.0f), ny), *gw0 = hrnd(nw, 2.0f), *gb0 = hrnd((size_t)out, 3.0f);
    float *gwr = hdup(gw0, nw), *gbr = with_b ? hdup(gb0, (size_t)out) : NULL;
    float *dgw = dputf(gw0, nw), *dgb = with_b ? dputf(gb0, (size_t)out) : NULL;
    tp_op_linear_grad_c(g_ref, CV(g), CV(x), gwr, gbr, N, in, out);
    tp_op_linear_grad_c(g_gpu, dputc(g, ny), dx, dgw, dgb, N, in, out);
    expect("linear_grad_c dW", sh, tp_test_rel_err(dgetf(dgw, nw), gwr, nw), K_GEMM_C);
    if (with_b)
        expect("linear_grad_c db", sh, tp_test_rel_err(dgetf(dgb, (size_t)out), gbr, (size_t)out),
               K_GEMM_C);
    case_end();
}

/* tp_op_linear_act_forward_c and tp_op_linear_dx_act_c (cuBLASLt's GELU_AUX_BIAS and
 * DGELU_BGRAD on cuda) against the ref's unfused ops on the same rounded inputs. Their outputs
 * are compute copies: an element whose fp32 value differs in the last bits from the ref's may
 * round to the neighbouring bf16 value, hence gemm's tolerance (fp32: TF32 products; bf16: one
 * rounding of the output). The ref's dgelu reads pre as the GPU stored it. */
static void linear_act_case(tp_act_t act, int64_t N, int64_t in, int64_t out)
{
    char sh[128];
    snprintf(sh, sizeof sh, "%s N=%lld in=%lld out=%lld", act == TP_ACT_GELU ? "gelu" : "relu",
             (long long)N, (long long)in, (long long)out);
    size_t nx = (size_t)(N * in), nw = (size_t)(out * in), ny = (size_t)(N * out);
    float *x = hround(hrnd(nx, 1.0f), nx), *w = hround(hrnd(nw, 1.0f), nw);
    float *b = hrnd((size_t)out, 1.0f);
    float *pr = hnan(ny), *yr = hnan(ny), *sr = hnan(ny);
    tp_op_linear_act_forward_c(g_ref, act, CV(x), CV(w), b, CV(pr), CV(yr), sr, N, in, out);
    tp_cval_t *dpre = dnanc(ny), *dy = dnanc(ny);
    tp_op_linear_act_forward_c(g_gpu, act, dputc(x, nx), dputc(w, nw), dputf(b, (size_t)out), dpre,
                               dy, dnan(ny), N, in, out);
    float *pg = dgetc(dpre, ny);
    expect("linear_act_forward_c pre", sh, tp_test_rel_err(pg, hround(pr, ny), ny), K_GEMM);
    expect("linear_act_forward_c y", sh, tp_test_rel_err(dgetc(dy, ny), hround(yr, ny), ny),
           K_GEMM);

    /* Backward through the next layer (W2 [out2, out]): dy2 [N, out2] W2 into pre [N, out],
     * the GPU's pre; db accumulates from non-zero values. */
    int64_t out2 = in;
    size_t nd = (size_t)(N * out2), nw2 = (size_t)(out2 * out);
    float *d2 = hround(hrnd(nd, 1.0f), nd), *w2 = hround(hrnd(nw2, 1.0f), nw2);
    float *db0 = hrnd((size_t)out, 2.0f), *dbr = hdup(db0, (size_t)out);
    float *dpr = hnan(ny), *s2 = hnan(ny);
    tp_op_linear_dx_act_c(g_ref, act, CV(d2), CV(w2), CV(pg), CV(dpr), dbr, s2, N, out, out2);
    tp_cval_t *dpg = dnanc(ny);
    float *ddb = dputf(db0, (size_t)out);
    tp_op_linear_dx_act_c(g_gpu, act, dputc(d2, nd), dputc(w2, nw2), dpre, dpg, ddb, dnan(ny), N,
                          out, out2);
    expect("linear_dx_act_c dpre", sh, tp_test_rel_err(dgetc(dpg, ny), hround(dpr, ny), ny),
           K_GEMM);
    /* the ref sums dpre unrounded (its compute copies are float32); the GPU's stored dpre is bf16
     */
    expect("linear_dx_act_c db", sh, tp_test_rel_err(dgetf(ddb, (size_t)out), dbr, (size_t)out),
           K_GEMM);
    case_end();
}

static void test_linear(void)
{
    static const int64_t shapes[][3] = {{1, 1, 1}, {7, 33, 130}, {130, 7, 33}, {33, 130, 7}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int v = 0; v < 8; v++)
            linear_case(shapes[s][0], shapes[s][1], shapes[s][2], v & 1, v & 2, v & 4);
    /* GPT-2 124M's four linear layers at 257 rows: qkv and fc (bias; their gradients' bias sums
     * fused), the attention and MLP projections (bias and the residual stream). */
    linear_case(257, 768, 2304, true, false, false);
    linear_case(257, 768, 768, true, true, false);
    linear_case(257, 768, 3072, true, false, false);
    linear_case(257, 3072, 768, true, true, false);
    /* The MLP's fc and GELU (GPT-2: 768 -> 3072), shapes cuBLASLt takes (out a multiple of 8)
     * and ones it does not (the unfused path), and ReLU (unfused everywhere). */
    static const int64_t act_shapes[][3] = {
        {1, 8, 16}, {7, 33, 130}, {130, 16, 24}, {257, 768, 3072}};
    for (size_t s = 0; s < sizeof act_shapes / sizeof act_shapes[0]; s++)
        for (int a = 0; a < 2; a++)
            linear_act_case(a ? TP_ACT_GELU : TP_ACT_RELU, act_shapes[s][0], act_shapes[s][1],
                            act_shapes[s][2]);
}

/* ---- bias, activations, dropout ------------------------------------------------------------ */

static const int64_t g_rc[][2] = {{1, 1}, {7, 33}, {130, 7}, {33, 130}, {1, 257}, {514, 2304}};
#define N_RC (sizeof g_rc / sizeof g_rc[0])

static void test_bias(void)
{
    char sh[96];
    for (size_t s = 0; s < N_RC; s++)
        for (int per_row = 0; per_row < 2; per_row++) {
            int64_t rows = g_rc[s][0], cols = g_rc[s][1], nb = per_row ? rows : cols;
            size_t n = (size_t)(rows * cols);
            snprintf(sh, sizeof sh, "rows=%lld cols=%lld per_row=%d", (long long)rows,
                     (long long)cols, per_row);
            float *y0 = hrnd(n, 2.0f), *b = hrnd((size_t)nb, 1.0f);
            float *yr = hdup(y0, n), *dy = dputf(y0, n), *db = dputf(b, (size_t)nb);
            tp_op_bias_add(g_ref, yr, b, rows, cols, per_row);
            tp_op_bias_add(g_gpu, dy, db, rows, cols, per_row);
            expect("bias_add", sh, tp_test_rel_err(dgetf(dy, n), yr, n), K_ELEM);

            /* Gradient accumulates: start from a non-zero db. */
            float *g = hrnd(n, 1.0f), *db0 = hrnd((size_t)nb, 3.0f);
            float *dbr = hdup(db0, (size_t)nb), *dg = dputf(g, n);
            float *ddb = dputf(db0, (size_t)nb);
            tp_op_bias_grad(g_ref, g, dbr, rows, cols, per_row);
            tp_op_bias_grad(g_gpu, dg, ddb, rows, cols, per_row);
            expect("bias_grad", sh, tp_test_rel_err(dgetf(ddb, (size_t)nb), dbr, (size_t)nb),
                   K_ELEM);

            /* From a compute copy of dy (one element off alignment on odd shapes). */
            hround(g, n);
            float *dbr2 = hdup(db0, (size_t)nb), *ddb2 = dputf(db0, (size_t)nb);
            tp_cval_t *dgc = s % 2 ? dputc_off(g, n) : dputc(g, n);
            tp_op_bias_grad(g_ref, g, dbr2, rows, cols, per_row);
            tp_op_bias_grad_c(g_gpu, dgc, ddb2, rows, cols, per_row);
            expect("bias_grad_c", sh, tp_test_rel_err(dgetf(ddb2, (size_t)nb), dbr2, (size_t)nb),
                   K_F32);
            case_end();
        }
}

static const int64_t g_ns[] = {1, 7, 33, 130, 4099, 257 * 3072 + 3};
#define N_NS (sizeof g_ns / sizeof g_ns[0])

static void test_act(void)
{
    char sh[64];
    for (size_t s = 0; s < N_NS; s++)
        for (int a = 0; a < 2; a++) {
            tp_act_t act = a ? TP_ACT_GELU : TP_ACT_RELU;
            const char *nm = a ? "gelu" : "relu";
            size_t n = (size_t)g_ns[s];
            snprintf(sh, sizeof sh, "%s n=%zu", nm, n);
            float *x = hrnd(n, 3.0f), *dy = hrnd(n, 1.0f);
            float *yr = hnan(n), *dxr = hnan(n);
            float *dxg = dputf(x, n), *ddy = dputf(dy, n), *yg = dnan(n), *dxo = dnan(n);
            tp_op_act_forward(g_ref, act, x, yr, (int64_t)n);
            tp_op_act_forward(g_gpu, act, dxg, yg, (int64_t)n);
            tp_op_act_backward(g_ref, act, x, dy, dxr, (int64_t)n);
            tp_op_act_backward(g_gpu, act, dxg, ddy, dxo, (int64_t)n);
            char op[48];
            snprintf(op, sizeof op, "act_forward %s", nm);
            expect(op, sh, tp_test_rel_err(dgetf(yg, n), yr, n), K_ELEM);
            snprintf(op, sizeof op, "act_backward %s", nm);
            expect(op, sh, tp_test_rel_err(dgetf(dxo, n), dxr, n), K_ELEM);

            /* Into compute copies (one element off alignment on odd sizes): the ref's results
             * rounded as the copy rounds them, so the error is the kernel's. */
            bool off = s % 2;
            tp_cval_t *yc = off ? dputc_off(hnan(n), n) : dnanc(n);
            tp_cval_t *dxc = off ? dputc_off(hnan(n), n) : dnanc(n);
            tp_op_act_forward_c(g_gpu, act, dxg, yc, (int64_t)n);
            /* backward reads x as a compute copy too: the ref differentiates at the rounded x */
            float *xr = hround(hdup(x, n), n), *dxr2 = hnan(n);
            tp_op_act_backward(g_ref, act, xr, dy, dxr2, (int64_t)n);
            tp_op_act_backward_c(g_gpu, act, off ? dputc_off(xr, n) : dputc(xr, n), ddy, dxc,
                                 (int64_t)n);
            snprintf(op, sizeof op, "act_forward_c %s", nm);
            expect(op, sh, tp_test_rel_err(dgetc(yc, n), hround(yr, n), n), K_ELEM);
            snprintf(op, sizeof op, "act_backward_c %s", nm);
            expect(op, sh, tp_test_rel_err(dgetc(dxc, n), hround(dxr2, n), n), K_ELEM);
            case_end();
        }
}

/* GELU densely over x in [-12, 12] (denser near 0), element by element: max |gpu - ref| /
 * max(|ref|, 1), absolute below 1 and relative above. Catches approximate tanh (tanh.approx has
 * ~5e-4 relative error) that a max-normalised measure would hide. */
static void test_gelu_range(void)
{
    const size_t n = 200001;
    float *x = hkeep(xmalloc(n * 4)), *dy = hkeep(xmalloc(n * 4));
    for (size_t i = 0; i < n; i++) {
        double t = ((double)i / (double)(n - 1)) * 2.0 - 1.0;
        x[i] = (float)(12.0 * t * t * t);
        dy[i] = 1.0f;
    }
    float *yr = hnan(n), *dr = hnan(n), *dx = dputf(x, n), *ddy = dputf(dy, n);
    float *yg = dnan(n), *dg = dnan(n);
    tp_op_act_forward(g_ref, TP_ACT_GELU, x, yr, (int64_t)n);
    tp_op_act_forward(g_gpu, TP_ACT_GELU, dx, yg, (int64_t)n);
    tp_op_act_backward(g_ref, TP_ACT_GELU, x, dy, dr, (int64_t)n);
    tp_op_act_backward(g_gpu, TP_ACT_GELU, dx, ddy, dg, (int64_t)n);
    float *yh = dgetf(yg, n), *dh = dgetf(dg, n);
    double ef = 0, eb = 0;
    for (size_t i = 0; i < n; i++) {
        double a = fabs((double)yh[i] - yr[i]) / fmax(fabs(yr[i]), 1.0);
        double b = fabs((double)dh[i] - dr[i]) / fmax(fabs(dr[i]), 1.0);
        ef = (a > ef || a != a) ? (a != a ? INFINITY : a) : ef;
        eb = (b > eb || b != b) ? (b != b ? INFINITY : b) : eb;
    }
    expect("gelu_forward pointwise", "x in [-12, 12] dense", ef, K_ELEM);
    expect("gelu_backward pointwise", "x in [-12, 12] dense", eb, K_ELEM);
    case_end();
}

static void dropout_case(int64_t rows, int64_t cols, float p, int64_t row0, uint64_t seed)
{
    char sh[96];
    size_t n = (size_t)(rows * cols);
    snprintf(sh, sizeof sh, "rows=%lld cols=%lld p=%g row0=%lld", (long long)rows, (long long)cols,
             (double)p, (long long)row0);
    float *x = hrnd(n, 1.0f), *dy = hrnd(n, 1.0f), *yr = hnan(n), *dxr = hnan(n);
    uint8_t *mr = hbytes(n, 0xAB);
    float *dxin = dputf(x, n), *yg = dnan(n);
    uint8_t *mg = dput(mr, n); /* poisoned 0xAB */
    tp_op_dropout_forward(g_ref, x, yr, mr, rows, cols, p, seed, 3, row0);
    tp_op_dropout_forward(g_gpu, dxin, yg, mg, rows, cols, p, seed, 3, row0);
    expect("dropout_forward mask", sh, bytes_differ(dget(mg, n), mr, n), K_EXACT);
    expect("dropout_forward y", sh, tp_test_rel_err(dgetf(yg, n), yr, n), K_ELEM);
    /* Backward from the ref's mask. */
    uint8_t *dm = dput(mr, n);
    float *ddy = dputf(dy, n), *dxg = dnan(n);
    tp_op_dropout_backward(g_ref, dy, mr, dxr, (int64_t)n, p);
    tp_op_dropout_backward(g_gpu, ddy, dm, dxg, (int64_t)n, p);
    expect("dropout_backward", sh, tp_test_rel_err(dgetf(dxg, n), dxr, n), K_ELEM);
    case_end();
}

static void test_dropout(void)
{
    const float ps[] = {0.1f, 0.5f};
    for (size_t s = 0; s < N_RC; s++)
        for (int pi = 0; pi < 2; pi++)
            for (int64_t row0 = 0; row0 <= 5; row0 += 5)
                dropout_case(g_rc[s][0], g_rc[s][1], ps[pi], row0, 42);
    dropout_case(128, 3072, 0.1f, 1000, 7); /* a GPT MLP activation at a later batch offset */
}

/* ---- convolution helpers and pooling ------------------------------------------------------- */

static void test_im2col(void)
{
    static const int64_t shapes[][4] = {{1, 1, 1, 1}, {2, 3, 5, 6},    {3, 2, 7, 4},
                                        {1, 1, 8, 8}, {4, 32, 28, 28}, {3, 17, 13, 11}};
    char sh[96];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int64_t k = 1; k <= 5; k += 2) {
            int64_t B = shapes[s][0], C = shapes[s][1], H = shapes[s][2], W = shapes[s][3];
            size_t nx = (size_t)(B * C * H * W), ncol = (size_t)(C * k * k * B * H * W);
            snprintf(sh, sizeof sh, "B=%lld C=%lld H=%lld W=%lld k=%lld", (long long)B,
                     (long long)C, (long long)H, (long long)W, (long long)k);
            float *x = hrnd(nx, 1.0f), *col = hrnd(ncol, 1.0f);
            float *cr = hnan(ncol), *dr = hnan(nx);
            float *dxin = dputf(x, nx), *dcol = dputf(col, ncol), *cg = dnan(ncol), *dg = dnan(nx);
            tp_op_im2col(g_ref, x, cr, B, C, H, W, k);
            tp_op_im2col(g_gpu, dxin, cg, B, C, H, W, k);
            expect("im2col", sh, tp_test_rel_err(dgetf(cg, ncol), cr, ncol), K_EXACT);
            tp_op_col2im(g_ref, col, dr, B, C, H, W, k);
            tp_op_col2im(g_gpu, dcol, dg, B, C, H, W, k);
            expect("col2im", sh, tp_test_rel_err(dgetf(dg, nx), dr, nx), K_ELEM);
            case_end();
        }
}

static void test_swap01(void)
{
    static const int64_t shapes[][3] = {{1, 1, 1},   {3, 7, 33},    {130, 2, 1},
                                        {2, 130, 7}, {12, 257, 64}, {257, 12, 64}};
    char sh[64];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t A = shapes[s][0], Bd = shapes[s][1], D = shapes[s][2];
        size_t n = (size_t)(A * Bd * D);
        snprintf(sh, sizeof sh, "A=%lld B=%lld D=%lld", (long long)A, (long long)Bd, (long long)D);
        float *x = hrnd(n, 1.0f), *yr = hnan(n), *dx = dputf(x, n), *yg = dnan(n);
        tp_op_swap01(g_ref, x, yr, A, Bd, D);
        tp_op_swap01(g_gpu, dx, yg, A, Bd, D);
        expect("swap01", sh, tp_test_rel_err(dgetf(yg, n), yr, n), K_EXACT);
        case_end();
    }
}

static void test_maxpool(void)
{
    static const int64_t shapes[][5] = {{1, 1, 2, 2, 2},  {2, 3, 6, 6, 2},   {2, 3, 6, 6, 3},
                                        {3, 2, 9, 12, 3}, {1, 7, 4, 130, 2}, {4, 32, 28, 28, 2},
                                        {3, 5, 7, 9, 2}};
    char sh[96];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t B = shapes[s][0], C = shapes[s][1], H = shapes[s][2], W = shapes[s][3];
        int64_t k = shapes[s][4];
        size_t nx = (size_t)(B * C * H * W), ny = (size_t)(B * C * (H / k) * (W / k));
        snprintf(sh, sizeof sh, "B=%lld C=%lld H=%lld W=%lld k=%lld", (long long)B, (long long)C,
                 (long long)H, (long long)W, (long long)k);
        float *x = hrnd(nx, 1.0f), *dy = hrnd(ny, 1.0f), *yr = hnan(ny), *dr = hnan(nx);
        int32_t *ar = hbytes(ny * 4, 0xF9);
        float *dxin = dputf(x, nx), *yg = dnan(ny), *ddy = dputf(dy, ny), *dg = dnan(nx);
        int32_t *ag = dput(ar, ny * 4);
        tp_op_maxpool_forward(g_ref, x, yr, ar, B, C, H, W, k);
        tp_op_maxpool_forward(g_gpu, dxin, yg, ag, B, C, H, W, k);
        expect("maxpool_forward y", sh, tp_test_rel_err(dgetf(yg, ny), yr, ny), K_EXACT);
        expect("maxpool_forward argmax", sh, bytes_differ(dget(ag, ny * 4), ar, ny * 4), K_EXACT);
        int32_t *dar = dput(ar, ny * 4); /* backward from the ref's argmax */
        tp_op_maxpool_backward(g_ref, dy, ar, dr, B, C, H, W, k);
        tp_op_maxpool_backward(g_gpu, ddy, dar, dg, B, C, H, W, k);
        expect("maxpool_backward", sh, tp_test_rel_err(dgetf(dg, nx), dr, nx), K_EXACT);
        case_end();
    }
}

/* ---- softmax cross-entropy ----------------------------------------------------------------- */

static void test_softmax_xent(void)
{
    /* pad: the last `pad` logits of each row are -inf (a padded vocabulary, as GPT's logits:
     * 50257 -> 50304, 257 -> 320); backward then also runs in place (dlogits = probs). */
    static const struct {
        int64_t B, C, pad;
        float scale;
    } cases[] = {{1, 1, 0, 1.0f},       {7, 10, 0, 3.0f},     {33, 130, 0, 5.0f},
                 {4, 3, 0, 50.0f},      {5, 1000, 0, 50.0f},  {3, 7, 0, 100.0f},
                 {4, 50257, 0, 20.0f},  {64, 50257, 0, 5.0f}, {3, 4097, 0, 1.0f},
                 {6, 50304, 47, 20.0f}, {5, 320, 63, 5.0f},   {3, 64, 62, 3.0f}};
    char sh[96];
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        int64_t B = cases[s].B, C = cases[s].C, pad = cases[s].pad;
        size_t n = (size_t)(B * C);
        snprintf(sh, sizeof sh, "B=%lld C=%lld pad=%lld |logit|<=%g%s", (long long)B, (long long)C,
                 (long long)pad, (double)cases[s].scale,
                 pad == 0 && s % 3 == 2 ? " (output skewed)" : "");
        float *z = hrnd(n, cases[s].scale);
        for (int64_t b = 0; b < B; b++)
            for (int64_t c = C - pad; c < C; c++)
                z[b * C + c] = -INFINITY;
        int32_t *lab = hkeep(xmalloc((size_t)B * 4));
        for (int64_t b = 0; b < B; b++)
            lab[b] = (int32_t)((b * 7 + 3) % (C - pad));
        float *pr = hnan(n), *lr = hnan((size_t)B);
        /* Every third unpadded case writes to a buffer one float off the input's alignment: the
         * kernels' 16-byte path needs both rows alike, so that case takes their scalar path. */
        bool skew = pad == 0 && s % 3 == 2;
        float *dz = dputf(z, n), *lg = dnan((size_t)B);
        float *pg = skew ? dputf_off(hnan(n), n) : dnan(n);
        int32_t *dlab = dput(lab, (size_t)B * 4);
        tp_op_softmax_xent_forward(g_ref, z, lab, pr, lr, B, C);
        tp_op_softmax_xent_forward(g_gpu, dz, dlab, pg, lg, B, C);
        expect("softmax_xent_forward probs", sh, tp_test_rel_err(dgetf(pg, n), pr, n), K_ELEM);
        /* The loss is log(sum) + max - z[label]: absolute error of O(1) terms, so measured
         * against max(|loss|, 1). */
        expect("softmax_xent_forward loss", sh,
               tp_test_err_floor(dgetf(lg, (size_t)B), lr, (size_t)B, 1.0), K_ELEM);

        float scale = s % 2 ? 1.0f / (float)B : 0.37f;
        float *dr = hnan(n), *dp = dputf(pr, n), *dg = skew ? dputf_off(hnan(n), n) : dnan(n);
        tp_op_softmax_xent_backward(g_ref, pr, lab, dr, B, C, scale);
        if (pad > 0) { /* in place (the contract allows dlogits = probs) */
            dg = dp;
            tp_op_softmax_xent_backward(g_gpu, dp, dlab, dp, B, C, scale);
        } else {
            tp_op_softmax_xent_backward(g_gpu, dp, dlab, dg, B, C, scale);
        }
        expect("softmax_xent_backward", sh, tp_test_rel_err(dgetf(dg, n), dr, n), K_ELEM);

        /* Without probabilities (the GPT's loss), on logits that are a compute copy with rows
         * ld apart (their padding NaN, so a read past C shows; the ref reads the same rounded
         * values): each row's log-sum-exp, then the gradient recomputed from the logits into a
         * compute copy with the same row stride (elements past C must stay unwritten), or in
         * place over the logits (the GPT's way) in the padded-vocabulary cases. */
        int64_t ld = s % 2 ? C + 7 : C;
        size_t nd = (size_t)(B * ld);
        float *zl = hnan(nd);
        for (int64_t b = 0; b < B; b++)
            memcpy(zl + b * ld, z + b * C, (size_t)C * 4);
        hround(zl, nd);
        float *lse_r = hnan((size_t)B), *loss_r = hnan((size_t)B);
        tp_op_xent_forward(g_ref, CV(zl), ld, lab, lse_r, loss_r, B, C);
        tp_cval_t *dzl = dputc(zl, nd);
        float *lse_g = dnan((size_t)B), *loss_g = dnan((size_t)B);
        tp_op_xent_forward(g_gpu, dzl, ld, dlab, lse_g, loss_g, B, C);
        char sh2[128];
        snprintf(sh2, sizeof sh2, "%s ld=%lld", sh, (long long)ld);
        expect("xent_forward lse", sh2,
               tp_test_err_floor(dgetf(lse_g, (size_t)B), lse_r, (size_t)B, 1.0), K_F32);
        expect("xent_forward loss", sh2,
               tp_test_err_floor(dgetf(loss_g, (size_t)B), loss_r, (size_t)B, 1.0), K_F32);
        bool in_place = pad > 0;
        float *xr = hnan(nd);
        tp_op_xent_backward_c(g_ref, CV(zl), ld, lse_r, lab, CV(xr), B, C, scale);
        tp_cval_t *dgx = in_place ? dzl : skew ? dputc_off(hnan(nd), nd) : dnanc(nd);
        tp_op_xent_backward_c(g_gpu, dzl, ld, lse_g, dlab, dgx, B, C, scale);
        float *xg = dgetc(dgx, nd), *xg_rows = hkeep(xmalloc(n * 4)),
              *xr_rows = hkeep(xmalloc(n * 4));
        bool pad_ok = true;
        for (int64_t b = 0; b < B; b++) {
            memcpy(xg_rows + b * C, xg + b * ld, (size_t)C * 4);
            memcpy(xr_rows + b * C, xr + b * ld, (size_t)C * 4);
            for (int64_t c = C; c < ld; c++)
                pad_ok &= isnan(xg[b * ld + c]);
        }
        if (in_place) strncat(sh2, " in place", sizeof sh2 - strlen(sh2) - 1);
        expect("xent_backward_c", sh2, tp_test_rel_err(xg_rows, hround(xr_rows, n), n), K_ELEM);
        CHECKF(pad_ok, "[%s] xent_backward_c(%s): wrote past C", g_prec_name[g_prec], sh2);
        case_end();
    }
}

/* ---- reductions, vector ops, optimizers ---------------------------------------------------- */

static void test_sumsq(void)
{
    static const int64_t ns[] = {0, 1, 7, 4095, 4096, 4097, 3 * 4096 + 130, 100003, (1 << 22) + 3};
    char sh[48];
    for (size_t s = 0; s < sizeof ns / sizeof ns[0]; s++)
        for (int off = 0; off < 2; off++) {
            size_t n = (size_t)ns[s];
            snprintf(sh, sizeof sh, "n=%zu%s", n, off ? " misaligned" : "");
            float *x = hrnd(n, 2.0f);
            float *dx = off ? dputf_off(x, n) : dputf(x, n);
            double r = tp_op_sumsq(g_ref, x, (int64_t)n);
            double g1 = tp_op_sumsq(g_gpu, dx, (int64_t)n), g2 = tp_op_sumsq(g_gpu, dx, (int64_t)n);
            double e = fabs(g1 - r) / fmax(fabs(r), 1e-300);
            if (!isfinite(g1)) e = INFINITY;
            expect("sumsq", sh, e, K_SUMSQ);
            /* The gradient norm must be the same on every rank and every run. */
            CHECKF(memcmp(&g1, &g2, sizeof g1) == 0,
                   "[%s] sumsq(%s): not repeatable (%.17g, %.17g)", g_prec_name[g_prec], sh, g1,
                   g2);

            /* The training step's forms: results stay in device memory, accumulating. */
            double *dacc = dalloc(2 * sizeof(double)), racc[2] = {0, 0}, gacc[2];
            tp_op_sum_to(g_ref, x, (int64_t)n, &racc[0], false);
            tp_op_sum_to(g_ref, x, (int64_t)n, &racc[0], true);
            tp_op_sumsq_to(g_ref, x, (int64_t)n, &racc[1], false);
            tp_op_sum_to(g_gpu, dx, (int64_t)n, dacc, false);
            tp_op_sum_to(g_gpu, dx, (int64_t)n, dacc, true);
            tp_op_sumsq_to(g_gpu, dx, (int64_t)n, dacc + 1, false);
            memcpy(gacc, dget(dacc, sizeof gacc), sizeof gacc);
            /* A sum of signed values can cancel: measure against the sum of magnitudes. */
            double mag = 0;
            for (size_t i = 0; i < n; i++)
                mag += fabs((double)x[i]);
            double es = fabs(gacc[0] - racc[0]) / fmax(2 * mag, 1e-300);
            expect("sum_to (accumulate)", sh, isfinite(gacc[0]) ? es : INFINITY, K_SUMSQ);
            CHECKF(memcmp(&gacc[1], &g1, sizeof g1) == 0,
                   "[%s] sumsq_to(%s): %.17g differs from sumsq's %.17g", g_prec_name[g_prec], sh,
                   gacc[1], g1);

            /* Clipping reads the device-side sum of squares: below the norm it scales exactly
             * as the ref does with its own sum, above the norm it leaves x alone. */
            if (n > 0) {
                double norm = sqrt(r);
                float *rc = hdup(x, n), *rk = hdup(x, n);
                float *dc = dputf(x, n), *dk = dputf(x, n);
                tp_op_clip_by_norm(g_ref, rc, (int64_t)n, &r, 0.5 * norm);
                tp_op_clip_by_norm(g_gpu, dc, (int64_t)n, dacc + 1, 0.5 * norm);
                expect("clip_by_norm", sh, tp_test_rel_err(dgetf(dc, n), rc, n), K_ELEM);
                tp_op_clip_by_norm(g_ref, rk, (int64_t)n, &r, 2.0 * norm);
                tp_op_clip_by_norm(g_gpu, dk, (int64_t)n, dacc + 1, 2.0 * norm);
                expect("clip_by_norm (no clip)", sh, tp_test_rel_err(dgetf(dk, n), rk, n), K_EXACT);
            }
            case_end();
        }
}

static void test_vector_ops(void)
{
    char sh[48];
    for (size_t s = 0; s < N_NS; s++)
        for (int off = 0; off < 2; off++) {
            size_t n = (size_t)g_ns[s];
            snprintf(sh, sizeof sh, "n=%zu%s", n, off ? " misaligned" : "");
            float *(*put)(const float *, size_t) = off ? dputf_off : dputf;
            float *x = hrnd(n, 1.0f), *y0 = hrnd(n, 1.0f), *nan = hnan(n);

            float *r = hdup(x, n), *g = put(x, n);
            tp_op_scale(g_ref, r, -1.7f, (int64_t)n);
            tp_op_scale(g_gpu, g, -1.7f, (int64_t)n);
            expect("scale", sh, tp_test_rel_err(dgetf(g, n), r, n), K_ELEM);

            r = hnan(n), g = put(nan, n);
            tp_op_fill(g_ref, r, 3.25f, (int64_t)n);
            tp_op_fill(g_gpu, g, 3.25f, (int64_t)n);
            expect("fill", sh, tp_test_rel_err(dgetf(g, n), r, n), K_EXACT);

            float *dxs = put(x, n);
            g = put(nan, n);
            tp_op_copy(g_gpu, g, dxs, (int64_t)n);
            expect("copy", sh, bytes_differ(dgetf(g, n), x, n * 4), K_EXACT);

            /* The compute copy holds x rounded exactly as the host rounds it (to nearest even). */
            tp_cval_t *xc = off ? dputc_off(nan, n) : dnanc(n);
            tp_op_to_compute(g_gpu, dxs, xc, (int64_t)n);
            expect("to_compute", sh, bytes_differ(dgetc(xc, n), hround(hdup(x, n), n), n * 4),
                   K_EXACT);

            r = hdup(y0, n), g = put(y0, n);
            tp_op_axpy(g_ref, r, x, -0.37f, (int64_t)n);
            tp_op_axpy(g_gpu, g, dxs, -0.37f, (int64_t)n);
            expect("axpy", sh, tp_test_rel_err(dgetf(g, n), r, n), K_ELEM);

            float *dy0 = put(y0, n);
            r = hnan(n), g = put(nan, n);
            tp_op_add(g_ref, x, y0, r, (int64_t)n);
            tp_op_add(g_gpu, dxs, dy0, g, (int64_t)n);
            expect("add", sh, tp_test_rel_err(dgetf(g, n), r, n), K_ELEM);
            /* In place: out aliasing a, then b. */
            float *a1 = put(x, n), *b1 = put(y0, n);
            tp_op_add(g_gpu, a1, dy0, a1, (int64_t)n);
            tp_op_add(g_gpu, dxs, b1, b1, (int64_t)n);
            expect("add (out aliases a)", sh, tp_test_rel_err(dgetf(a1, n), r, n), K_ELEM);
            expect("add (out aliases b)", sh, tp_test_rel_err(dgetf(b1, n), r, n), K_ELEM);
            case_end();
        }
}

static void test_adamw(void)
{
    char sh[48];
    const float b1 = 0.9f, b2 = 0.999f;
    const float bc1 = (float)(1 - pow(b1, 3)), bc2 = (float)(1 - pow(b2, 3));
    for (size_t s = 0; s < N_NS; s++)
        for (int off = 0; off < 2; off++) {
            size_t n = (size_t)g_ns[s];
            snprintf(sh, sizeof sh, "n=%zu%s", n, off ? " misaligned" : "");
            float *(*put)(const float *, size_t) = off ? dputf_off : dputf;
            float *p = hrnd(n, 1.0f), *g = hrnd(n, 0.5f), *m = hrnd(n, 0.1f), *v = hrnd(n, 0.1f);
            for (size_t i = 0; i < n; i++)
                v[i] = v[i] * v[i];
            float *pr = hdup(p, n), *mr = hdup(m, n), *vr = hdup(v, n);
            float *pg = put(p, n), *gg = put(g, n), *mg = put(m, n), *vg = put(v, n);
            tp_op_adamw(g_ref, pr, g, mr, vr, (int64_t)n, 1e-2f, b1, b2, 1e-8f, 0.1f, bc1, bc2);
            tp_op_adamw(g_gpu, pg, gg, mg, vg, (int64_t)n, 1e-2f, b1, b2, 1e-8f, 0.1f, bc1, bc2);
            expect("adamw p", sh, tp_test_rel_err(dgetf(pg, n), pr, n), K_ELEM);
            expect("adamw m", sh, tp_test_rel_err(dgetf(mg, n), mr, n), K_ELEM);
            expect("adamw v", sh, tp_test_rel_err(dgetf(vg, n), vr, n), K_ELEM);
            case_end();
        }
}

static void test_sgd(void)
{
    char sh[64];
    for (size_t s = 0; s < N_NS; s++)
        for (int nest = 0; nest < 2; nest++)
            for (int first = 0; first < 2; first++) {
                size_t n = (size_t)g_ns[s];
                int off = (nest + first) & 1;
                snprintf(sh, sizeof sh, "n=%zu nesterov=%d first=%d%s", n, nest, first,
                         off ? " misaligned" : "");
                float *(*put)(const float *, size_t) = off ? dputf_off : dputf;
                float *p = hrnd(n, 1.0f), *g = hrnd(n, 0.5f);
                /* On the first step the momentum buffer must not be read. */
                float *buf = first ? hnan(n) : hrnd(n, 0.2f);
                float *pr = hdup(p, n), *br = hdup(buf, n);
                float *pg = put(p, n), *gg = put(g, n), *bg = put(buf, n);
                tp_op_sgd(g_ref, pr, g, br, (int64_t)n, 0.1f, 0.9f, 0.01f, nest, first);
                tp_op_sgd(g_gpu, pg, gg, bg, (int64_t)n, 0.1f, 0.9f, 0.01f, nest, first);
                expect("sgd p", sh, tp_test_rel_err(dgetf(pg, n), pr, n), K_ELEM);
                expect("sgd buf", sh, tp_test_rel_err(dgetf(bg, n), br, n), K_ELEM);
                case_end();
            }
}

/* ---- transformer ops ----------------------------------------------------------------------- */

static void test_embedding(void)
{
    static const int64_t shapes[][4] = {{1, 1, 8, 50},       {2, 7, 33, 50},    {3, 64, 96, 50},
                                        {2, 7, 17, 5000},    {3, 64, 80, 5000}, {2, 64, 768, 50257},
                                        {1, 257, 768, 50257}};
    char sh[96];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t B = shapes[s][0], T = shapes[s][1], C = shapes[s][2], V = shapes[s][3];
        size_t n = (size_t)(B * T * C), nte = (size_t)(V * C), npe = (size_t)(T * C);
        snprintf(sh, sizeof sh, "B=%lld T=%lld C=%lld V=%lld", (long long)B, (long long)T,
                 (long long)C, (long long)V);
        int32_t *tok = hkeep(tp_test_tokens(B * T, V));
        float *wte = hrnd(nte, 1.0f), *wpe = hrnd(npe, 1.0f), *yr = hnan(n);
        int32_t *dtok = dput(tok, (size_t)(B * T) * 4);
        float *dte = dputf(wte, nte), *dpe = dputf(wpe, npe), *yg = dnan(n);
        tp_op_embedding_forward(g_ref, tok, wte, wpe, yr, B, T, C);
        tp_op_embedding_forward(g_gpu, dtok, dte, dpe, yg, B, T, C);
        expect("embedding_forward", sh, tp_test_rel_err(dgetf(yg, n), yr, n), K_EXACT);

        /* Accumulates onto non-zero gradients; run twice on the GPU: the contract fixes the
         * (b, t) order of the additions, so the result is deterministic. */
        float *dy = hrnd(n, 1.0f), *te0 = hrnd(nte, 0.5f), *pe0 = hrnd(npe, 0.5f);
        float *ter = hdup(te0, nte), *per = hdup(pe0, npe);
        float *ddy = dputf(dy, n);
        float *gte[2], *gpe[2];
        for (int k = 0; k < 2; k++) {
            gte[k] = dputf(te0, nte), gpe[k] = dputf(pe0, npe);
            tp_op_embedding_backward(g_gpu, ddy, dtok, gte[k], gpe[k], B, T, C);
        }
        tp_op_embedding_backward(g_ref, dy, tok, ter, per, B, T, C);
        float *hte = dgetf(gte[0], nte), *hpe = dgetf(gpe[0], npe);
        expect("embedding_backward dwte", sh, tp_test_rel_err(hte, ter, nte), K_ELEM);
        expect("embedding_backward dwpe", sh, tp_test_rel_err(hpe, per, npe), K_ELEM);
        CHECKF(memcmp(hte, dgetf(gte[1], nte), nte * 4) == 0 &&
                   memcmp(hpe, dgetf(gpe[1], npe), npe * 4) == 0,
               "[%s] embedding_backward(%s): not deterministic", g_prec_name[g_prec], sh);
        /* Rows of tokens that do not occur keep their value. */
        bool untouched = true;
        char *seen = hbytes((size_t)V, 0);
        for (int64_t i = 0; i < B * T; i++)
            seen[tok[i]] = 1;
        for (int64_t v = 0; v < V; v++)
            if (!seen[v]) untouched &= memcmp(hte + v * C, te0 + v * C, (size_t)C * 4) == 0;
        CHECKF(untouched, "[%s] embedding_backward(%s): wrote rows of unused tokens",
               g_prec_name[g_prec], sh);
        case_end();
    }
}

static void test_layernorm(void)
{
    /* Up to GPT-2 774M's 1280 channels, and many rows (the dw/db partials' chunks). */
    static const int64_t shapes[][2] = {{1, 8}, {7, 33},    {21, 64},  {192, 96},
                                        {5, 1}, {514, 768}, {9, 1280}, {2100, 1024}};
    char sh[96];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int offset = 0; offset < 2; offset++) {
            int64_t N = shapes[s][0], C = shapes[s][1];
            size_t n = (size_t)(N * C), nN = (size_t)N, nC = (size_t)C;
            snprintf(sh, sizeof sh, "N=%lld C=%lld offset=%d", (long long)N, (long long)C,
                     offset * 20);
            float *x = hrnd(n, 2.0f), *w = hrnd(nC, 1.5f), *b = hrnd(nC, 1.0f);
            /* A mean far from zero (as in a residual stream) stresses the variance. */
            for (size_t i = 0; i < n; i++)
                x[i] += (float)(offset * 20);
            float *yr = hnan(n), *mr = hnan(nN), *rr = hnan(nN);
            float *dxin = dputf(x, n), *dw = dputf(w, nC), *db = dputf(b, nC);
            float *mg = dnan(nN), *rg = dnan(nN);
            tp_cval_t *yg = dnanc(n); /* a compute copy: y feeds products only */
            tp_op_layernorm_forward(g_ref, x, w, b, CV(yr), mr, rr, N, C);
            tp_op_layernorm_forward(g_gpu, dxin, dw, db, yg, mg, rg, N, C);
            expect("layernorm_forward y", sh,
                   tp_test_rel_err(dgetc(yg, n), hround(hdup(yr, n), n), n), K_ELEM);
            expect("layernorm_forward mean", sh, tp_test_rel_err(dgetf(mg, nN), mr, nN), K_ELEM);
            expect("layernorm_forward rstd", sh, tp_test_rel_err(dgetf(rg, nN), rr, nN), K_ELEM);

            /* Backward from the ref's saved statistics; dx, dw and db start non-zero. */
            float *dy = hrnd(n, 1.0f), *dx0 = hrnd(n, 1.0f), *dw0 = hrnd(nC, 1.0f),
                  *db0 = hrnd(nC, 1.0f);
            float *gxr = hdup(dx0, n), *gwr = hdup(dw0, nC), *gbr = hdup(db0, nC);
            float *ddy = dputf(dy, n), *dm = dputf(mr, nN), *drs = dputf(rr, nN);
            float *gx = dputf(dx0, n), *gw = dputf(dw0, nC), *gb = dputf(db0, nC);
            tp_op_layernorm_backward(g_ref, dy, x, w, mr, rr, gxr, gwr, gbr, N, C);
            tp_op_layernorm_backward(g_gpu, ddy, dxin, dw, dm, drs, gx, gw, gb, N, C);
            expect("layernorm_backward dx", sh, tp_test_rel_err(dgetf(gx, n), gxr, n), K_ELEM);
            expect("layernorm_backward dw", sh, tp_test_rel_err(dgetf(gw, nC), gwr, nC), K_ELEM);
            expect("layernorm_backward db", sh, tp_test_rel_err(dgetf(gb, nC), gbr, nC), K_ELEM);
            /* With dx's compute copy (the GPT's residual gradient): the same dx, dw and db to the
             * bit, and a copy of dx as to_compute would make it. */
            float *gx2 = dputf(dx0, n), *gw2 = dputf(dw0, nC), *gb2 = dputf(db0, nC);
            float *ds0 = hrnd(nC, 1.0f), *dsr = hdup(ds0, nC), *gds = dputf(ds0, nC);
            tp_cval_t *gxc = dnanc(n);
            tp_op_layernorm_backward_c(g_gpu, ddy, dxin, dw, dm, drs, gx2, gxc, gw2, gb2, gds, N,
                                       C);
            tp_op_bias_grad(g_ref, gxr, dsr, N, C, false); /* dsum: the new dx's column sums */
            expect("layernorm_backward_c dsum", sh, tp_test_rel_err(dgetf(gds, nC), dsr, nC),
                   K_ELEM);
            if (!gpu_bf16()) { /* dx_c = dx itself (the GPT's case under "fp32"): dsum alone */
                float *gx3 = dputf(dx0, n), *gw3 = dputf(dw0, nC), *gb3 = dputf(db0, nC);
                float *gds3 = dputf(ds0, nC);
                tp_op_layernorm_backward_c(g_gpu, ddy, dxin, dw, dm, drs, gx3, CV(gx3), gw3, gb3,
                                           gds3, N, C);
                expect("layernorm_backward_c dsum", sh, tp_test_rel_err(dgetf(gds3, nC), dsr, nC),
                       K_ELEM);
                expect("layernorm_backward_c dx (= plain op's)", sh,
                       bytes_differ(dgetf(gx3, n), dgetf(gx, n), n * 4), K_EXACT);
            }
            float *hx = dgetf(gx, n), *hx2 = dgetf(gx2, n);
            expect("layernorm_backward_c dx (= plain op's)", sh, bytes_differ(hx2, hx, n * 4),
                   K_EXACT);
            expect("layernorm_backward_c dw db (= plain op's)", sh,
                   bytes_differ(dgetf(gw2, nC), dgetf(gw, nC), nC * 4) +
                       bytes_differ(dgetf(gb2, nC), dgetf(gb, nC), nC * 4),
                   K_EXACT);
            expect("layernorm_backward_c dx_c", sh,
                   tp_test_rel_err(dgetc(gxc, n), hround(hx, n), n), K_EXACT);
            case_end();
        }
}

/* B, T, C, NH: odd shapes (T = 1, 7, 33, 100, 130: not multiples of a 64-wide tile; head sizes 8,
 * 12, 20, 24, 72, 96) and GPT-2 124M heads (C = 768, NH = 12, hs = 64) at T = 64 and 257. */
static const int64_t g_attn[][5] = {
    /* B, T, C, NH, qkv scale x100 */
    {1, 1, 8, 1, 150},    {2, 7, 32, 4, 150},   {3, 7, 24, 3, 150},    {2, 7, 12, 4, 150},
    {1, 64, 96, 4, 150},  {2, 64, 64, 1, 150},  {3, 1, 96, 2, 150},    {2, 33, 40, 2, 150},
    {1, 130, 96, 1, 150}, {2, 100, 72, 1, 150}, {4, 64, 768, 12, 100}, {2, 257, 768, 12, 100}};
#define N_ATTN (sizeof g_attn / sizeof g_attn[0])

static void test_attention(void)
{
    char sh[96];
    for (size_t s = 0; s < N_ATTN; s++) {
        int64_t B = g_attn[s][0], T = g_attn[s][1], C = g_attn[s][2], NH = g_attn[s][3];
        float scale = (float)g_attn[s][4] / 100.0f;
        size_t nqkv = (size_t)(B * T * 3 * C), no = (size_t)(B * T * C);
        size_t na_ref = (size_t)(B * NH * T * T);
        int64_t na_gpu = tp_op_attention_att_numel(g_gpu, B, T, NH);
        snprintf(sh, sizeof sh, "B=%lld T=%lld C=%lld NH=%lld", (long long)B, (long long)T,
                 (long long)C, (long long)NH);
        CHECKF(na_gpu >= B * NH * T, "[%s] attention_att_numel(%s) = %lld < B*NH*T",
               g_prec_name[g_prec], sh, (long long)na_gpu);
        if (na_gpu < B * NH * T) na_gpu = B * NH * T;
        /* qkv is a compute copy (what the qkv product writes): the ref sees it rounded alike */
        float *qkv = hround(hrnd(nqkv, scale), nqkv), *dout = hrnd(no, 1.0f);
        float *outr = hnan(no), *ar = hnan(na_ref), *dr = hnan(nqkv);
        float *ddo = dputf(dout, no), *ag = dnan((size_t)na_gpu);
        tp_cval_t *dq = dputc(qkv, nqkv);
        tp_cval_t *outg = dnanc(no), *dg = dnanc(nqkv); /* compute copies (products' inputs) */
        tp_op_attention_forward(g_ref, CV(qkv), CV(outr), ar, B, T, C, NH);
        tp_op_attention_forward(g_gpu, dq, outg, ag, B, T, C, NH);
        expect("attention_forward out", sh, tp_test_rel_err(dgetc(outg, no), outr, no), K_ATTN);
        tp_op_attention_backward(g_ref, dout, CV(qkv), ar, CV(outr), CV(dr), B, T, C, NH);
        tp_op_attention_backward(g_gpu, ddo, dq, ag, outg, dg, B, T, C, NH);
        expect("attention_backward dqkv", sh, tp_test_rel_err(dgetc(dg, nqkv), dr, nqkv), K_ATTN);

        /* Decode: a cache with Tmax = T + 3 whose slots after pos are NaN (never to be read),
         * at the first, second, middle and last positions, against the ref's decode. */
        int64_t Tmax = T + 3, poss[4] = {0, T > 1 ? 1 : 0, T / 2, T - 1};
        size_t nc = (size_t)(B * Tmax * C), nq = (size_t)(B * C);
        float *kc = hnan(nc), *vc = hnan(nc), *q = hkeep(xmalloc(nq * 4));
        for (int i = 0; i < 4; i++) {
            int64_t pos = poss[i];
            for (int64_t b = 0; b < B; b++)
                for (int64_t t = 0; t <= pos; t++) {
                    const float *row = qkv + (b * T + t) * 3 * C;
                    if (t == pos) memcpy(q + b * C, row, (size_t)C * 4);
                    memcpy(kc + (b * Tmax + t) * C, row + C, (size_t)C * 4);
                    memcpy(vc + (b * Tmax + t) * C, row + 2 * C, (size_t)C * 4);
                }
            float *decr = hnan(nq), *dqd = dputf(q, nq), *dk = dputf(kc, nc), *dv = dputf(vc, nc);
            tp_cval_t *decg = dnanc(nq);
            tp_op_attention_decode(g_ref, q, kc, vc, CV(decr), B, pos, Tmax, C, NH);
            tp_op_attention_decode(g_gpu, dqd, dk, dv, decg, B, pos, Tmax, C, NH);
            char sh2[128];
            snprintf(sh2, sizeof sh2, "%s pos=%lld", sh, (long long)pos);
            expect("attention_decode", sh2, tp_test_rel_err(dgetc(decg, nq), decr, nq), K_ATTN);
        }
        case_end();
    }
}

static const struct {
    const char *name;
    void (*run)(void);
} g_groups[] = {
    {"gemm", test_gemm},
    {"linear", test_linear},
    {"bias", test_bias},
    {"act", test_act},
    {"gelu_range", test_gelu_range},
    {"dropout", test_dropout},
    {"im2col", test_im2col},
    {"swap01", test_swap01},
    {"maxpool", test_maxpool},
    {"softmax_xent", test_softmax_xent},
    {"sumsq", test_sumsq},
    {"vector_ops", test_vector_ops},
    {"adamw", test_adamw},
    {"sgd", test_sgd},
    {"embedding", test_embedding},
    {"layernorm", test_layernorm},
    {"attention", test_attention},
};

/* Every group, or only those named on the command line (a kernel being worked on: under the
 * CPU emulation the whole test takes minutes). */
static void run_all(int argc, char **argv)
{
    g_seed = 1; /* the same inputs in both precisions */
    for (size_t i = 0; i < sizeof g_groups / sizeof g_groups[0]; i++) {
        bool on = argc <= 1;
        for (int k = 1; k < argc; k++)
            on |= strcmp(argv[k], g_groups[i].name) == 0;
        if (on) g_groups[i].run();
    }
}

int main(int argc, char **argv)
{
    for (int k = 1; k < argc; k++) {
        bool known = false;
        for (size_t i = 0; i < sizeof g_groups / sizeof g_groups[0]; i++)
            known |= strcmp(argv[k], g_groups[i].name) == 0;
        if (!known) {
            fprintf(stderr, "test_cuda_ops: unknown group '%s'\n", argv[k]);
            return 2;
        }
    }
    /* TP_TEST_GPU_BACKEND=cpu runs the same comparisons on another backend: a check of this
     * test itself on machines without a GPU (precisions that backend refuses are left out). */
    const char *name = getenv("TP_TEST_GPU_BACKEND");
    bool self_check = name && *name && strcmp(name, "cuda") != 0;
    char why[256] = "";
#ifdef TP_CUDA_EMULATED
    name = "cuda-emu";
    self_check = false;
    (void)why;
    if (tp_backend_create("ref", 1, &g_ref) != TP_OK || tp_emu_backend_create(&g_gpu) != TP_OK)
        return 1;
#else
    if (!self_check) {
        name = "cuda";
        if (tp_cuda_device_count(why, sizeof why) <= 0) {
            printf("SKIP: no GPU (%s)\n", why[0] ? why : "no CUDA devices");
            return 77;
        }
    }
    if (tp_backend_create("ref", 1, &g_ref) != TP_OK) return 1;
    /* A GPU is visible: from here on a backend that cannot start is a failure, not a skip. */
    if (tp_backend_create(name, 0, &g_gpu) != TP_OK) {
        fprintf(stderr, "FAIL: a GPU is visible (%s) but the %s backend does not start\n", why,
                name);
        tp_backend_free(g_ref);
        return 1;
    }
#endif
    printf("testing %s against %s\n", tp_backend_describe(g_gpu), tp_backend_describe(g_ref));
    for (g_prec = 0; g_prec < 2; g_prec++) {
        tp_status_t st = tp_backend_set_precision(g_gpu, g_prec ? TP_PREC_BF16 : TP_PREC_FP32);
        if (st != TP_OK && self_check) {
            printf("(%s: precision %s refused; left out of the self-check)\n", name,
                   g_prec_name[g_prec]);
            continue;
        }
        CHECKF(st == TP_OK, "%s backend refuses runtime.precision %s", name, g_prec_name[g_prec]);
        if (st == TP_OK) run_all(argc, argv);
    }
    print_table();
    tp_backend_free(g_gpu);
    tp_backend_free(g_ref);
    return tp_test_finish("test_cuda_ops");
}
