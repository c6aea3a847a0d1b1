/* test_cuda_ops' matrix products: gemm (float32 operands, compute copies, a compute-copy result)
 * and the fused linear ops (bias, residual, GELU, bias gradients), against the ref backend. */
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
    tp_test_nan_pad(A, ra, ca, lda);
    tp_test_nan_pad(B, rb, cb, ldb);
    size_t nc = (size_t)(M * ldc);
    /* beta = 0 must ignore C entirely (NaN * 0 is NaN). */
    float *C0 = tp_test_nan_pad(beta == 0.0f ? hnan(nc) : hrnd(nc, 1.0f), M, N, ldc);
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

void test_gemm(void)
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

void test_linear(void)
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
