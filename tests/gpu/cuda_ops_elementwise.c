/* test_cuda_ops' elementwise and data-movement ops: bias, activations, dropout, im2col/col2im,
 * swap01 and max pooling, against the ref backend. */
#include "cuda_ops_harness.h"

/* ---- bias, activations, dropout ------------------------------------------------------------ */

void test_bias(void)
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

void test_act(void)
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
void test_gelu_range(void)
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

void test_dropout(void)
{
    const float ps[] = {0.1f, 0.5f};
    for (size_t s = 0; s < N_RC; s++)
        for (int pi = 0; pi < 2; pi++)
            for (int64_t row0 = 0; row0 <= 5; row0 += 5)
                dropout_case(g_rc[s][0], g_rc[s][1], ps[pi], row0, 42);
    dropout_case(128, 3072, 0.1f, 1000, 7); /* a GPT MLP activation at a later batch offset */
}

/* ---- convolution helpers and pooling ------------------------------------------------------- */

void test_im2col(void)
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

void test_swap01(void)
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

void test_maxpool(void)
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
