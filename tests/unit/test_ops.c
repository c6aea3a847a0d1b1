/* Every op of the "cpu" backend against the "ref" oracle, in the spirit of ggml's test-backend-ops:
 * random inputs (never zero), outputs poisoned with NaN first so that an element an op forgets
 * to write shows up, accumulating ops started from a non-zero accumulator, odd shapes, and every
 * cpu result computed twice and compared bit for bit (ops are deterministic for a fixed thread
 * count). Each failure prints one line naming the op, the shape and the error.
 *
 * Both backends keep tensors in host memory, so plain malloc'd buffers are passed to the ops. */
#include "backend.h"
#include "test_util.h"

#include <stdbool.h>

static tp_backend_t *g_ref, *g_cpu;

static void expect(const char *op, const char *shape, double e, double tol)
{
    if (getenv("TP_TEST_VERBOSE")) printf("  %s(%s): err=%.3g tol=%.3g\n", op, shape, e, tol);
    CHECKF(e <= tol, "%s(%s): err=%.3g > tol=%.3g", op, shape, e, tol);
}

static void same_bits(const char *op, const char *shape, const void *a, const void *b, size_t bytes)
{
    CHECKF(memcmp(a, b, bytes) == 0, "%s(%s): cpu result not bitwise repeatable", op, shape);
}

/* ---- gemm ---------------------------------------------------------------------------------- */

static void test_gemm(void)
{
    static const int64_t shapes[][3] = {{1, 1, 1},   {7, 33, 130}, {33, 7, 1},
                                        {130, 1, 7}, {5, 130, 33}, {64, 65, 257}};
    char sh[128];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int bi = 0; bi < 2; bi++)
                    for (int pad = 0; pad <= 3; pad += 3) {
                        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                        float alpha = pad ? -0.5f : 1.0f, beta = bi ? 0.75f : 0.0f;
                        int64_t ra = ta ? K : M, ca = ta ? M : K, lda = ca + pad;
                        int64_t rb = tb ? N : K, cb = tb ? K : N, ldb = cb + pad;
                        int64_t ldc = N + pad;
                        float *A = rnd((size_t)(ra * lda), 1.0f),
                              *B = rnd((size_t)(rb * ldb), 1.0f);
                        tp_test_nan_pad(A, ra, ca, lda);
                        tp_test_nan_pad(B, rb, cb, ldb);
                        size_t nc = (size_t)(M * ldc);
                        /* beta = 0 must ignore C entirely (NaN * 0 is NaN). */
                        float *C0 =
                            tp_test_nan_pad(beta == 0.0f ? poisoned(nc) : rnd(nc, 1.0f), M, N, ldc);
                        float *Cr = fdup(C0, nc), *Cc = fdup(C0, nc), *Cc2 = fdup(C0, nc);
                        tp_op_gemm(g_ref, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cr, ldc);
                        tp_op_gemm(g_cpu, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cc, ldc);
                        tp_op_gemm(g_cpu, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cc2, ldc);
                        snprintf(sh, sizeof sh,
                                 "ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g lda=%lld "
                                 "ldb=%lld ldc=%lld",
                                 ta, tb, (long long)M, (long long)N, (long long)K, (double)alpha,
                                 (double)beta, (long long)lda, (long long)ldb, (long long)ldc);
                        double e = 0, maxref = 1e-30;
                        bool pad_ok = true;
                        for (int64_t i = 0; i < M; i++) {
                            for (int64_t j = 0; j < N; j++) {
                                double d = fabs((double)Cc[i * ldc + j] - Cr[i * ldc + j]);
                                if (!isfinite(d)) d = INFINITY;
                                if (d > e) e = d;
                                if (fabs(Cr[i * ldc + j]) > maxref) maxref = fabs(Cr[i * ldc + j]);
                            }
                            size_t padb = (size_t)(ldc - N) * sizeof(float);
                            pad_ok &= memcmp(Cc + i * ldc + N, C0 + i * ldc + N, padb) == 0 &&
                                      memcmp(Cr + i * ldc + N, C0 + i * ldc + N, padb) == 0;
                        }
                        /* fp32 accumulation over K terms (ref sums in double): rounding error
                         * grows with K, ~K * 2^-24 of the magnitude in the worst case. */
                        expect("gemm", sh, e / maxref, 1e-6 + 2.4e-7 * (double)K);
                        CHECKF(pad_ok, "gemm(%s): wrote into the ldc padding", sh);
                        same_bits("gemm", sh, Cc, Cc2, nc * sizeof(float));
                        if (beta == 0.0f) { /* with float32 compute copies, gemm_to_c is gemm */
                            float *Ct = fdup(C0, nc);
                            tp_op_gemm_to_c(g_cpu, ta, tb, M, N, K, alpha, CV(A), lda, CV(B), ldb,
                                            CV(Ct), ldc);
                            same_bits("gemm_to_c = gemm", sh, Ct, Cc, nc * sizeof(float));
                            free(Ct);
                        }
                        free(A);
                        free(B);
                        free(C0);
                        free(Cr);
                        free(Cc);
                        free(Cc2);
                    }
}

/* ---- bias ---------------------------------------------------------------------------------- */

static const int64_t g_rc[][2] = {{1, 1}, {7, 33}, {130, 7}, {33, 130}, {1, 257}};
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

            float *y0 = rnd(n, 2.0f), *b = rnd((size_t)nb, 1.0f);
            float *yr = fdup(y0, n), *yc = fdup(y0, n), *yc2 = fdup(y0, n);
            tp_op_bias_add(g_ref, yr, b, rows, cols, per_row);
            tp_op_bias_add(g_cpu, yc, b, rows, cols, per_row);
            tp_op_bias_add(g_cpu, yc2, b, rows, cols, per_row);
            /* One fp32 add per element in both backends. */
            expect("bias_add", sh, tp_test_rel_err(yc, yr, n), 1e-6);
            same_bits("bias_add", sh, yc, yc2, n * sizeof(float));

            /* Gradient accumulates: start from a non-zero db. */
            float *dy = rnd(n, 1.0f), *db0 = rnd((size_t)nb, 3.0f);
            float *dbr = fdup(db0, (size_t)nb), *dbc = fdup(db0, (size_t)nb);
            float *dbc2 = fdup(db0, (size_t)nb);
            tp_op_bias_grad(g_ref, dy, dbr, rows, cols, per_row);
            tp_op_bias_grad(g_cpu, dy, dbc, rows, cols, per_row);
            tp_op_bias_grad(g_cpu, dy, dbc2, rows, cols, per_row);
            /* cpu sums columns over rows in fp32 (ref in double): error grows with the number
             * of terms summed, ~terms * 2^-24 worst case. */
            int64_t terms = per_row ? cols : rows;
            expect("bias_grad", sh, tp_test_rel_err(dbc, dbr, (size_t)nb),
                   1e-6 + 2.4e-7 * (double)terms);
            same_bits("bias_grad", sh, dbc, dbc2, (size_t)nb * sizeof(float));
            free(y0), free(b), free(yr), free(yc), free(yc2);
            free(dy), free(db0), free(dbr), free(dbc), free(dbc2);
        }
}

/* ---- elementwise --------------------------------------------------------------------------- */

static const int64_t g_ns[] = {1, 7, 33, 130, 4099};
#define N_NS (sizeof g_ns / sizeof g_ns[0])

static void test_act(void)
{
    char sh[64];
    for (size_t s = 0; s < N_NS; s++)
        for (int a = 0; a < 2; a++) {
            tp_act_t act = a ? TP_ACT_GELU : TP_ACT_RELU;
            size_t n = (size_t)g_ns[s];
            snprintf(sh, sizeof sh, "%s n=%zu", a ? "gelu" : "relu", n);
            float *x = rnd(n, 3.0f), *dy = rnd(n, 1.0f);
            float *yr = poisoned(n), *yc = poisoned(n), *yc2 = poisoned(n);
            tp_op_act_forward(g_ref, act, x, yr, (int64_t)n);
            tp_op_act_forward(g_cpu, act, x, yc, (int64_t)n);
            tp_op_act_forward(g_cpu, act, x, yc2, (int64_t)n);
            /* Same scalar formula (ops_math.h) in both backends. */
            expect("act_forward", sh, tp_test_rel_err(yc, yr, n), 1e-6);
            same_bits("act_forward", sh, yc, yc2, n * sizeof(float));
            float *dxr = poisoned(n), *dxc = poisoned(n), *dxc2 = poisoned(n);
            tp_op_act_backward(g_ref, act, x, dy, dxr, (int64_t)n);
            tp_op_act_backward(g_cpu, act, x, dy, dxc, (int64_t)n);
            tp_op_act_backward(g_cpu, act, x, dy, dxc2, (int64_t)n);
            expect("act_backward", sh, tp_test_rel_err(dxc, dxr, n), 1e-6);
            same_bits("act_backward", sh, dxc, dxc2, n * sizeof(float));
            free(x), free(dy), free(yr), free(yc), free(yc2), free(dxr), free(dxc), free(dxc2);
        }
}

static uint8_t *mask_poisoned(size_t n)
{
    uint8_t *m = xmalloc(n);
    memset(m, 0xAB, n);
    return m;
}

/* The cpu GELU uses its own vectorised tanh (two branches: a Taylor polynomial for small |u|,
 * an exp-based form above): check every region densely, element by element, against libm's
 * tanhf in the reference. 2e-6 absolute (values and derivatives are O(1) or O(|x|)) plus
 * 2e-6 relative. */
static void test_gelu_range(void)
{
    const size_t n = 200001;
    float *x = xmalloc(n * sizeof(float)), *dy = xmalloc(n * sizeof(float));
    float *yr = xmalloc(n * sizeof(float)), *yc = xmalloc(n * sizeof(float));
    float *dr = xmalloc(n * sizeof(float)), *dc = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        /* -12 .. 12, denser near 0 (x^3 spacing), including exactly 0 and tiny values */
        double t = ((double)i / (double)(n - 1)) * 2.0 - 1.0;
        x[i] = (float)(12.0 * t * t * t);
        dy[i] = 1.0f;
    }
    tp_op_act_forward(g_ref, TP_ACT_GELU, x, yr, (int64_t)n);
    tp_op_act_forward(g_cpu, TP_ACT_GELU, x, yc, (int64_t)n);
    tp_op_act_backward(g_ref, TP_ACT_GELU, x, dy, dr, (int64_t)n);
    tp_op_act_backward(g_cpu, TP_ACT_GELU, x, dy, dc, (int64_t)n);
    double worst_f = 0, worst_b = 0;
    for (size_t i = 0; i < n; i++) {
        double ef = fabs((double)yc[i] - yr[i]) / (2e-6 + 2e-6 * fabs(yr[i]));
        double eb = fabs((double)dc[i] - dr[i]) / (2e-6 + 2e-6 * fabs(dr[i]));
        if (ef > worst_f || ef != ef) worst_f = ef != ef ? INFINITY : ef;
        if (eb > worst_b || eb != eb) worst_b = eb != eb ? INFINITY : eb;
    }
    expect("gelu_forward", "x in [-12, 12] dense", worst_f, 1.0);
    expect("gelu_backward", "x in [-12, 12] dense", worst_b, 1.0);
    free(x);
    free(dy);
    free(yr);
    free(yc);
    free(dr);
    free(dc);
}

static void test_dropout(void)
{
    char sh[96];
    const float ps[] = {0.1f, 0.5f};
    for (size_t s = 0; s < N_RC; s++)
        for (int pi = 0; pi < 2; pi++)
            for (int64_t row0 = 0; row0 <= 5; row0 += 5) {
                int64_t rows = g_rc[s][0], cols = g_rc[s][1];
                size_t n = (size_t)(rows * cols);
                float p = ps[pi];
                snprintf(sh, sizeof sh, "rows=%lld cols=%lld p=%g row0=%lld", (long long)rows,
                         (long long)cols, (double)p, (long long)row0);
                float *x = rnd(n, 1.0f), *dy = rnd(n, 1.0f);
                float *yr = poisoned(n), *yc = poisoned(n), *yc2 = poisoned(n);
                uint8_t *mr = mask_poisoned(n), *mc = mask_poisoned(n), *mc2 = mask_poisoned(n);
                tp_op_dropout_forward(g_ref, x, yr, mr, rows, cols, p, 42, 3, row0);
                tp_op_dropout_forward(g_cpu, x, yc, mc, rows, cols, p, 42, 3, row0);
                tp_op_dropout_forward(g_cpu, x, yc2, mc2, rows, cols, p, 42, 3, row0);
                CHECKF(memcmp(mc, mr, n) == 0, "dropout_forward(%s): mask differs", sh);
                bool binary = true;
                for (size_t i = 0; i < n; i++)
                    binary &= mc[i] <= 1;
                CHECKF(binary, "dropout_forward(%s): mask not 0/1", sh);
                /* x * (1/(1-p)) in both: one multiply. */
                expect("dropout_forward", sh, tp_test_rel_err(yc, yr, n), 1e-6);
                same_bits("dropout_forward", sh, yc, yc2, n * sizeof(float));
                same_bits("dropout_forward mask", sh, mc, mc2, n);

                float *dxr = poisoned(n), *dxc = poisoned(n), *dxc2 = poisoned(n);
                tp_op_dropout_backward(g_ref, dy, mr, dxr, (int64_t)n, p);
                tp_op_dropout_backward(g_cpu, dy, mr, dxc, (int64_t)n, p);
                tp_op_dropout_backward(g_cpu, dy, mr, dxc2, (int64_t)n, p);
                expect("dropout_backward", sh, tp_test_rel_err(dxc, dxr, n), 1e-6);
                same_bits("dropout_backward", sh, dxc, dxc2, n * sizeof(float));
                free(x), free(dy), free(yr), free(yc), free(yc2), free(mr), free(mc), free(mc2);
                free(dxr), free(dxc), free(dxc2);
            }

    /* Keep fraction: binomial(n, 1-p), within 3 sigma (deterministic for this seed). */
    tp_backend_t *bes[2] = {g_ref, g_cpu};
    for (int b = 0; b < 2; b++) {
        int64_t rows = 1000, cols = 130;
        size_t n = (size_t)(rows * cols);
        float p = 0.3f;
        float *x = rnd(n, 1.0f), *y = poisoned(n);
        uint8_t *m = mask_poisoned(n);
        tp_op_dropout_forward(bes[b], x, y, m, rows, cols, p, 7, 1, 0);
        double kept = 0;
        for (size_t i = 0; i < n; i++)
            kept += m[i];
        double mean = n * (1.0 - p), sigma = sqrt(n * p * (1.0 - p));
        CHECKF(fabs(kept - mean) <= 3 * sigma,
               "dropout(%s): kept %.0f of %zu, expected %.0f +- %.0f", tp_backend_name(bes[b]),
               kept, n, mean, 3 * sigma);
        free(x), free(y), free(m);
    }

    /* The mask depends only on the global row: rows [0,8) at once == [0,4) + [4,8) with row0. */
    for (int b = 0; b < 2; b++) {
        int64_t rows = 8, cols = 7;
        size_t n = (size_t)(rows * cols), half = n / 2;
        float *x = rnd(n, 1.0f), *y1 = poisoned(n), *y2 = poisoned(n);
        uint8_t *m1 = mask_poisoned(n), *m2 = mask_poisoned(n);
        tp_op_dropout_forward(bes[b], x, y1, m1, rows, cols, 0.5f, 11, 2, 0);
        tp_op_dropout_forward(bes[b], x, y2, m2, rows / 2, cols, 0.5f, 11, 2, 0);
        tp_op_dropout_forward(bes[b], x + half, y2 + half, m2 + half, rows / 2, cols, 0.5f, 11, 2,
                              rows / 2);
        CHECKF(memcmp(m1, m2, n) == 0 && memcmp(y1, y2, n * sizeof(float)) == 0,
               "dropout(%s): split batch [0,4)+[4,8) differs from [0,8)", tp_backend_name(bes[b]));
        free(x), free(y1), free(y2), free(m1), free(m2);
    }
}

/* ---- convolution helpers, layout, pooling -------------------------------------------------- */

static void test_im2col(void)
{
    static const int64_t shapes[][4] = {{1, 1, 1, 1}, {2, 3, 5, 6}, {3, 2, 7, 4}, {1, 1, 8, 8}};
    char sh[96];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int64_t k = 1; k <= 5; k += 2) {
            int64_t B = shapes[s][0], C = shapes[s][1], H = shapes[s][2], W = shapes[s][3];
            size_t nx = (size_t)(B * C * H * W), ncol = (size_t)(C * k * k * B * H * W);
            snprintf(sh, sizeof sh, "B=%lld C=%lld H=%lld W=%lld k=%lld", (long long)B,
                     (long long)C, (long long)H, (long long)W, (long long)k);
            float *x = rnd(nx, 1.0f), *col = rnd(ncol, 1.0f);
            float *cr = poisoned(ncol), *cc = poisoned(ncol), *cc2 = poisoned(ncol);
            tp_op_im2col(g_ref, x, cr, B, C, H, W, k);
            tp_op_im2col(g_cpu, x, cc, B, C, H, W, k);
            tp_op_im2col(g_cpu, x, cc2, B, C, H, W, k);
            /* Pure copies and zeros: exact. */
            expect("im2col", sh, tp_test_rel_err(cc, cr, ncol), 0.0);
            same_bits("im2col", sh, cc, cc2, ncol * sizeof(float));

            float *dr = poisoned(nx), *dc = poisoned(nx), *dc2 = poisoned(nx);
            tp_op_col2im(g_ref, col, dr, B, C, H, W, k);
            tp_op_col2im(g_cpu, col, dc, B, C, H, W, k);
            tp_op_col2im(g_cpu, col, dc2, B, C, H, W, k);
            /* Sums of up to k*k fp32 terms, possibly in a different order. */
            expect("col2im", sh, tp_test_rel_err(dc, dr, nx), 1e-6 * (double)(k * k));
            same_bits("col2im", sh, dc, dc2, nx * sizeof(float));

            /* col2im is the adjoint of im2col: <im2col(x), col> == <x, col2im(col)>. */
            double lhs = 0, rhs = 0, mag = 0;
            for (size_t i = 0; i < ncol; i++) {
                lhs += (double)cr[i] * col[i];
                mag += fabs((double)cr[i] * col[i]);
            }
            for (size_t i = 0; i < nx; i++)
                rhs += (double)x[i] * dr[i];
            /* dr is fp32-rounded sums of <= k*k terms. */
            CHECKF(fabs(lhs - rhs) <= 1e-6 * mag, "col2im(%s): not the adjoint (%g vs %g)", sh, lhs,
                   rhs);
            free(x), free(col), free(cr), free(cc), free(cc2), free(dr), free(dc), free(dc2);
        }
}

static void test_swap01(void)
{
    static const int64_t shapes[][3] = {{1, 1, 1}, {3, 7, 33}, {130, 2, 1}, {2, 130, 7}};
    char sh[64];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t A = shapes[s][0], Bd = shapes[s][1], D = shapes[s][2];
        size_t n = (size_t)(A * Bd * D);
        snprintf(sh, sizeof sh, "A=%lld B=%lld D=%lld", (long long)A, (long long)Bd, (long long)D);
        float *x = rnd(n, 1.0f), *yr = poisoned(n), *yc = poisoned(n), *yc2 = poisoned(n);
        tp_op_swap01(g_ref, x, yr, A, Bd, D);
        tp_op_swap01(g_cpu, x, yc, A, Bd, D);
        tp_op_swap01(g_cpu, x, yc2, A, Bd, D);
        expect("swap01", sh, tp_test_rel_err(yc, yr, n), 0.0); /* a permutation: exact */
        same_bits("swap01", sh, yc, yc2, n * sizeof(float));
        free(x), free(yr), free(yc), free(yc2);
    }
}

static void test_maxpool(void)
{
    static const int64_t shapes[][5] = {
        {1, 1, 2, 2, 2}, {2, 3, 6, 6, 2}, {2, 3, 6, 6, 3}, {3, 2, 9, 12, 3}, {1, 7, 4, 130, 2}};
    char sh[96];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t B = shapes[s][0], C = shapes[s][1], H = shapes[s][2], W = shapes[s][3];
        int64_t k = shapes[s][4];
        size_t nx = (size_t)(B * C * H * W), ny = (size_t)(B * C * (H / k) * (W / k));
        snprintf(sh, sizeof sh, "B=%lld C=%lld H=%lld W=%lld k=%lld", (long long)B, (long long)C,
                 (long long)H, (long long)W, (long long)k);
        float *x = rnd(nx, 1.0f), *dy = rnd(ny, 1.0f);
        float *yr = poisoned(ny), *yc = poisoned(ny), *yc2 = poisoned(ny);
        int32_t *ar = xmalloc(ny * 4), *ac = xmalloc(ny * 4), *ac2 = xmalloc(ny * 4);
        for (size_t i = 0; i < ny; i++)
            ar[i] = ac[i] = ac2[i] = -7;
        tp_op_maxpool_forward(g_ref, x, yr, ar, B, C, H, W, k);
        tp_op_maxpool_forward(g_cpu, x, yc, ac, B, C, H, W, k);
        tp_op_maxpool_forward(g_cpu, x, yc2, ac2, B, C, H, W, k);
        expect("maxpool_forward", sh, tp_test_rel_err(yc, yr, ny), 0.0); /* selects inputs: exact */
        CHECKF(memcmp(ac, ar, ny * 4) == 0, "maxpool_forward(%s): argmax differs", sh);
        same_bits("maxpool_forward", sh, yc, yc2, ny * sizeof(float));
        same_bits("maxpool_forward argmax", sh, ac, ac2, ny * 4);

        float *dr = poisoned(nx), *dc = poisoned(nx), *dc2 = poisoned(nx);
        tp_op_maxpool_backward(g_ref, dy, ar, dr, B, C, H, W, k);
        tp_op_maxpool_backward(g_cpu, dy, ar, dc, B, C, H, W, k);
        tp_op_maxpool_backward(g_cpu, dy, ar, dc2, B, C, H, W, k);
        /* Windows do not overlap: each dx is one dy or zero, exact. */
        expect("maxpool_backward", sh, tp_test_rel_err(dc, dr, nx), 0.0);
        same_bits("maxpool_backward", sh, dc, dc2, nx * sizeof(float));
        free(x), free(dy), free(yr), free(yc), free(yc2), free(ar), free(ac), free(ac2);
        free(dr), free(dc), free(dc2);
    }
}

/* ---- softmax cross-entropy ----------------------------------------------------------------- */

static void test_softmax_xent(void)
{
    static const struct {
        int64_t B, C, pad; /* the last `pad` logits of a row are -inf (a padded vocabulary) */
        float scale;
    } cases[] = {{1, 1, 0, 1.0f},      {7, 10, 0, 3.0f},      {33, 130, 0, 5.0f},
                 {4, 3, 0, 50.0f},     {5, 1000, 0, 50.0f},   {3, 7, 0, 100.0f},
                 {4, 50257, 0, 20.0f}, {4, 50304, 47, 20.0f}, {3, 64, 62, 3.0f}};
    char sh[80];
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        int64_t B = cases[s].B, C = cases[s].C, pad = cases[s].pad;
        size_t n = (size_t)(B * C);
        snprintf(sh, sizeof sh, "B=%lld C=%lld pad=%lld |logit|<=%g", (long long)B, (long long)C,
                 (long long)pad, (double)cases[s].scale);
        float *z = rnd(n, cases[s].scale);
        for (int64_t b = 0; b < B; b++)
            for (int64_t c = C - pad; c < C; c++)
                z[b * C + c] = -INFINITY;
        int32_t *lab = xmalloc((size_t)B * 4);
        for (int64_t b = 0; b < B; b++)
            lab[b] = (int32_t)((b * 7 + 3) % (C - pad));
        float *pr = poisoned(n), *pc = poisoned(n), *pc2 = poisoned(n);
        float *lr = poisoned((size_t)B), *lc = poisoned((size_t)B), *lc2 = poisoned((size_t)B);
        tp_op_softmax_xent_forward(g_ref, z, lab, pr, lr, B, C);
        tp_op_softmax_xent_forward(g_cpu, z, lab, pc, lc, B, C);
        tp_op_softmax_xent_forward(g_cpu, z, lab, pc2, lc2, B, C);
        /* cpu uses expf and a float reciprocal (ref: double): a few ulp per probability. */
        expect("softmax_xent_forward probs", sh, tp_test_rel_err(pc, pr, n), 1e-6);
        /* The loss is log(sum) + max - z[label]: its error is absolute (ulps of O(1) terms), so
         * measure it against max(|loss|, 1). */
        expect("softmax_xent_forward loss", sh, tp_test_err_floor(lc, lr, (size_t)B, 1.0), 1e-6);
        bool finite = true;
        double worst_sum = 0;
        for (int64_t b = 0; b < B; b++) {
            double sum = 0;
            for (int64_t c = 0; c < C; c++) {
                finite &= isfinite(pc[b * C + c]) && isfinite(pr[b * C + c]);
                sum += pc[b * C + c];
            }
            finite &= isfinite(lc[b]) && isfinite(lr[b]);
            worst_sum = fmax(worst_sum, fabs(sum - 1.0));
        }
        CHECKF(finite, "softmax_xent_forward(%s): inf or nan", sh);
        /* C probabilities each rounded to fp32. */
        CHECKF(worst_sum <= 1e-6 + 1.2e-7 * (double)C,
               "softmax_xent_forward(%s): probs sum to 1 +- %g", sh, worst_sum);
        same_bits("softmax_xent_forward", sh, pc, pc2, n * sizeof(float));
        same_bits("softmax_xent_forward loss", sh, lc, lc2, (size_t)B * sizeof(float));

        float scale = s % 2 ? 1.0f / (float)B : 0.37f;
        float *dr = poisoned(n), *dc = poisoned(n), *dc2 = poisoned(n);
        tp_op_softmax_xent_backward(g_ref, pr, lab, dr, B, C, scale);
        tp_op_softmax_xent_backward(g_cpu, pr, lab, dc, B, C, scale);
        memcpy(dc2, pr, n * sizeof(float)); /* in place (dlogits = probs) gives the same */
        tp_op_softmax_xent_backward(g_cpu, dc2, lab, dc2, B, C, scale);
        expect("softmax_xent_backward", sh, tp_test_rel_err(dc, dr, n), 1e-6); /* same formula */
        same_bits("softmax_xent_backward", sh, dc, dc2, n * sizeof(float));

        /* Without probabilities (tp_op_xent_*, the GPT's loss): the row's log-sum-exp and the
         * loss, which on cpu is softmax_xent_forward's to the bit (the same sum), also from rows
         * ld apart whose padding is NaN (so a read past C shows); the gradient recomputed from
         * the logits, into rows ld apart (elements past C untouched) and in place over them. */
        int64_t ld = C + 5;
        float *zl = poisoned((size_t)(B * ld));
        for (int64_t b = 0; b < B; b++)
            memcpy(zl + b * ld, z + b * C, (size_t)C * sizeof(float));
        float *er = poisoned((size_t)B), *ec = poisoned((size_t)B), *ec2 = poisoned((size_t)B);
        float *xlr = poisoned((size_t)B), *xlc = poisoned((size_t)B), *xlc2 = poisoned((size_t)B);
        tp_op_xent_forward(g_ref, CV(zl), ld, lab, er, xlr, B, C);
        tp_op_xent_forward(g_cpu, CV(zl), ld, lab, ec, xlc, B, C);
        tp_op_xent_forward(g_cpu, CV(z), C, lab, ec2, xlc2, B, C);
        expect("xent_forward lse", sh, tp_test_err_floor(ec, er, (size_t)B, 1.0), 1e-6);
        expect("xent_forward loss", sh, tp_test_err_floor(xlc, xlr, (size_t)B, 1.0), 1e-6);
        same_bits("xent_forward loss = softmax_xent_forward loss", sh, xlc, lc,
                  (size_t)B * sizeof(float));
        same_bits("xent_forward lse, rows ld apart = rows C apart", sh, ec, ec2,
                  (size_t)B * sizeof(float));
        float *xr = poisoned((size_t)(B * ld)), *xc = poisoned((size_t)(B * ld));
        tp_op_xent_backward_c(g_ref, CV(zl), ld, er, lab, CV(xr), B, C, scale);
        tp_op_xent_backward_c(g_cpu, CV(zl), ld, ec, lab, CV(xc), B, C, scale);
        float *xin = xmalloc((size_t)(B * ld) * sizeof(float));
        memcpy(xin, zl, (size_t)(B * ld) * sizeof(float));
        tp_op_xent_backward_c(g_cpu, CV(xin), ld, ec, lab, CV(xin), B, C, scale);
        double xe = 0, xmax = 1e-30;
        bool untouched = true, same = true;
        for (int64_t b = 0; b < B; b++) {
            for (int64_t c = 0; c < C; c++) {
                xe = fmax(xe, fabs((double)xc[b * ld + c] - xr[b * ld + c]));
                xmax = fmax(xmax, fabs(xr[b * ld + c]));
                same &= memcmp(&xc[b * ld + c], &xin[b * ld + c], sizeof(float)) == 0;
            }
            for (int64_t c = C; c < ld; c++)
                untouched &=
                    isnan(xc[b * ld + c]) && isnan(xr[b * ld + c]) && isnan(xin[b * ld + c]);
        }
        expect("xent_backward_c", sh, xe / xmax, 1e-6);
        CHECKF(untouched, "xent_backward_c(%s): wrote past C in rows of ld = %lld", sh,
               (long long)ld);
        CHECKF(same, "xent_backward_c(%s): in place differs from out of place", sh);
        free(zl), free(ec2), free(xlc2);
        free(z), free(lab), free(pr), free(pc), free(pc2), free(lr), free(lc), free(lc2);
        free(dr), free(dc), free(dc2), free(er), free(ec), free(xlr), free(xlc), free(xr), free(xc);
        free(xin);
    }
}

/* ---- reductions and vector ops ------------------------------------------------------------- */

static const int64_t g_sumsq_ns[] = {0, 1, 7, 4095, 4096, 4097, 3 * 4096 + 130, 100003};
#define N_SUMSQ (sizeof g_sumsq_ns / sizeof g_sumsq_ns[0])

static void test_sumsq(void)
{
    for (size_t s = 0; s < N_SUMSQ; s++) {
        size_t n = (size_t)g_sumsq_ns[s];
        float *x = rnd(n, 2.0f);
        double r = tp_op_sumsq(g_ref, x, (int64_t)n), c = tp_op_sumsq(g_cpu, x, (int64_t)n);
        /* Fixed chunks combined in order in both: must agree bit for bit. */
        CHECKF(memcmp(&r, &c, sizeof r) == 0, "sumsq(n=%zu): cpu %.17g != ref %.17g", n, c, r);
        free(x);
    }
}

/* The forms a training step uses: results in backend memory (here host memory), accumulating. */
static void test_sum_to(void)
{
    tp_backend_t *bes[2] = {g_ref, g_cpu};
    for (size_t s = 0; s < N_SUMSQ; s++) {
        int64_t n = g_sumsq_ns[s];
        float *x = rnd((size_t)n, 2.0f);
        double plain = 0, sq = tp_op_sumsq(g_ref, x, n);
        for (int64_t i = 0; i < n; i++)
            plain += x[i];
        for (int k = 0; k < 2; k++) {
            const char *name = tp_backend_name(bes[k]);
            double acc = NAN;
            tp_op_sum_to(bes[k], x, n, &acc, false); /* overwrites, even with n == 0 */
            CHECKF(memcmp(&acc, &plain, sizeof acc) == 0,
                   "%s sum_to(n=%lld) = %.17g, in-order sum %.17g", name, (long long)n, acc, plain);
            tp_op_sum_to(bes[k], x, n, &acc, true);
            double twice = plain + plain;
            CHECKF(memcmp(&acc, &twice, sizeof acc) == 0, "%s sum_to(n=%lld, accumulate) = %.17g",
                   name, (long long)n, acc);
            double q = NAN;
            tp_op_sumsq_to(bes[k], x, n, &q, false);
            CHECKF(memcmp(&q, &sq, sizeof q) == 0, "%s sumsq_to(n=%lld) = %.17g != %.17g", name,
                   (long long)n, q, sq);
            tp_op_sumsq_to(bes[k], x, n, &q, true);
            double sq2 = sq + sq;
            CHECKF(memcmp(&q, &sq2, sizeof q) == 0, "%s sumsq_to(n=%lld, accumulate) = %.17g", name,
                   (long long)n, q);
        }
        free(x);
    }
}

/* omp_set_num_threads is process-wide: each backend is created, used and freed in turn. */
static void test_sumsq_threads(void)
{
    float *xs[N_SUMSQ];
    double res[3][N_SUMSQ];
    for (size_t s = 0; s < N_SUMSQ; s++)
        xs[s] = rnd((size_t)g_sumsq_ns[s], 1.5f);
    for (int t = 1; t <= 3; t++) {
        tp_backend_t *be = NULL;
        CHECK(tp_backend_create("cpu", t, &be) == TP_OK);
        if (!be) continue;
        CHECKF(tp_backend_threads(be) == t, "cpu backend has %d threads, asked %d",
               tp_backend_threads(be), t);
        for (size_t s = 0; s < N_SUMSQ; s++)
            res[t - 1][s] = tp_op_sumsq(be, xs[s], g_sumsq_ns[s]);
        tp_backend_free(be);
    }
    for (size_t s = 0; s < N_SUMSQ; s++) {
        double r = tp_op_sumsq(g_ref, xs[s], g_sumsq_ns[s]);
        for (int t = 0; t < 3; t++)
            CHECKF(memcmp(&res[t][s], &r, sizeof r) == 0,
                   "sumsq(n=%lld, threads=%d): %.17g != ref %.17g", (long long)g_sumsq_ns[s], t + 1,
                   res[t][s], r);
        free(xs[s]);
    }
}

static void test_vector_ops(void)
{
    char sh[32];
    for (size_t s = 0; s < N_NS; s++) {
        size_t n = (size_t)g_ns[s];
        snprintf(sh, sizeof sh, "n=%zu", n);
        float *x = rnd(n, 1.0f);
        float *r = fdup(x, n), *c = fdup(x, n), *c2 = fdup(x, n);
        tp_op_scale(g_ref, r, -1.7f, (int64_t)n);
        tp_op_scale(g_cpu, c, -1.7f, (int64_t)n);
        tp_op_scale(g_cpu, c2, -1.7f, (int64_t)n);
        expect("scale", sh, tp_test_rel_err(c, r, n), 0.0); /* one multiply: exact */
        same_bits("scale", sh, c, c2, n * sizeof(float));
        free(r), free(c), free(c2);

        r = poisoned(n), c = poisoned(n), c2 = poisoned(n);
        tp_op_fill(g_ref, r, 3.25f, (int64_t)n);
        tp_op_fill(g_cpu, c, 3.25f, (int64_t)n);
        tp_op_fill(g_cpu, c2, 3.25f, (int64_t)n);
        expect("fill", sh, tp_test_rel_err(c, r, n), 0.0);
        CHECKF(r[n - 1] == 3.25f && c[0] == 3.25f, "fill(%s): wrong value", sh);
        same_bits("fill", sh, c, c2, n * sizeof(float));
        free(r), free(c), free(c2);

        r = poisoned(n), c = poisoned(n), c2 = poisoned(n);
        tp_op_copy(g_ref, r, x, (int64_t)n);
        tp_op_copy(g_cpu, c, x, (int64_t)n);
        tp_op_copy(g_cpu, c2, x, (int64_t)n);
        CHECKF(memcmp(c, x, n * sizeof(float)) == 0 && memcmp(r, x, n * sizeof(float)) == 0,
               "copy(%s): not an exact copy", sh);
        same_bits("copy", sh, c, c2, n * sizeof(float));
        free(r), free(c), free(c2), free(x);
    }
}

/* ---- optimizers ---------------------------------------------------------------------------- */

static void test_adamw(void)
{
    char sh[32];
    const float b1 = 0.9f, b2 = 0.999f;
    const float bc1 = (float)(1 - pow(b1, 3)), bc2 = (float)(1 - pow(b2, 3));
    for (size_t s = 0; s < N_NS; s++) {
        size_t n = (size_t)g_ns[s];
        snprintf(sh, sizeof sh, "n=%zu", n);
        float *p = rnd(n, 1.0f), *g = rnd(n, 0.5f), *m = rnd(n, 0.1f), *v = rnd(n, 0.1f);
        for (size_t i = 0; i < n; i++)
            v[i] = v[i] * v[i];
        float *st[3][3];
        for (int k = 0; k < 3; k++) {
            st[k][0] = fdup(p, n), st[k][1] = fdup(m, n), st[k][2] = fdup(v, n);
            tp_op_adamw(k ? g_cpu : g_ref, st[k][0], g, st[k][1], st[k][2], (int64_t)n, 1e-2f, b1,
                        b2, 1e-8f, 0.1f, bc1, bc2, TP_CLIP_NONE);
        }
        static const char *names[3] = {"adamw p", "adamw m", "adamw v"};
        for (int j = 0; j < 3; j++) {
            /* Same scalar update (ops_math.h) in both. */
            expect(names[j], sh, tp_test_rel_err(st[1][j], st[0][j], n), 1e-6);
            same_bits(names[j], sh, st[1][j], st[2][j], n * sizeof(float));
        }
        for (int k = 0; k < 3; k++)
            for (int j = 0; j < 3; j++)
                free(st[k][j]);
        free(p), free(g), free(m), free(v);
    }
}

static void test_sgd(void)
{
    char sh[64];
    for (size_t s = 0; s < N_NS; s++)
        for (int nest = 0; nest < 2; nest++)
            for (int first = 0; first < 2; first++) {
                size_t n = (size_t)g_ns[s];
                snprintf(sh, sizeof sh, "n=%zu nesterov=%d first=%d", n, nest, first);
                float *p = rnd(n, 1.0f), *g = rnd(n, 0.5f);
                /* On the first step the momentum buffer must not be read. */
                float *buf = first ? poisoned(n) : rnd(n, 0.2f);
                float *st[3][2];
                for (int k = 0; k < 3; k++) {
                    st[k][0] = fdup(p, n), st[k][1] = fdup(buf, n);
                    tp_op_sgd(k ? g_cpu : g_ref, st[k][0], g, st[k][1], (int64_t)n, 0.1f, 0.9f,
                              0.01f, nest, first, TP_CLIP_NONE);
                }
                expect("sgd p", sh, tp_test_rel_err(st[1][0], st[0][0], n),
                       1e-6); /* same scalar update */
                expect("sgd buf", sh, tp_test_rel_err(st[1][1], st[0][1], n), 1e-6);
                same_bits("sgd p", sh, st[1][0], st[2][0], n * sizeof(float));
                same_bits("sgd buf", sh, st[1][1], st[2][1], n * sizeof(float));
                for (int k = 0; k < 3; k++)
                    free(st[k][0]), free(st[k][1]);
                free(p), free(g), free(buf);
            }
}

/* Clipping inside the updates: with the gradient's norm above max_norm, the update must be
 * bit for bit the unclipped update of the gradient scaled by max_norm / (norm + 1e-6), rounded
 * (what a clipping pass over the gradient would have stored); at or below it, or with max_norm
 * <= 0, the unclipped update of the gradient itself. The gradient is left as it was. */
static void test_clipped_updates(void)
{
    char sh[64];
    const float b1 = 0.9f, b2 = 0.95f;
    const float bc1 = (float)(1 - pow(b1, 2)), bc2 = (float)(1 - pow(b2, 2));
    tp_backend_t *bes[2] = {g_ref, g_cpu};
    for (size_t s = 0; s < N_NS; s++) {
        size_t n = (size_t)g_ns[s];
        if (n == 0) continue;
        float *p = rnd(n, 1.0f), *g = rnd(n, 0.5f), *m = rnd(n, 0.1f), *v = rnd(n, 0.1f);
        for (size_t i = 0; i < n; i++)
            v[i] = v[i] * v[i];
        float *g0 = fdup(g, n);
        double sq = tp_op_sumsq(g_ref, g, (int64_t)n), norm = sqrt(sq);
        const double limits[] = {0.25 * norm, 2.0 * norm, norm, 0.0, -1.0};
        for (int l = 0; l < 5; l++) {
            float f = limits[l] > 0 && norm > limits[l] ? (float)(limits[l] / (norm + 1e-6)) : 1.0f;
            float *gs = fdup(g, n);
            if (f != 1.0f)
                for (size_t i = 0; i < n; i++)
                    gs[i] = g[i] * f;
            if (limits[l] > 0 && limits[l] < norm)
                CHECKF(fabs(sqrt(tp_op_sumsq(g_ref, gs, (int64_t)n)) - limits[l]) <=
                           1e-5 * limits[l],
                       "n=%zu: clipped norm %.9g, want %.9g", n,
                       sqrt(tp_op_sumsq(g_ref, gs, (int64_t)n)), limits[l]);
            else
                CHECKF(f == 1.0f, "n=%zu max_norm=%g: factor %.9g, want 1", n, limits[l], f);
            tp_clip_t clip = {&sq, limits[l]};
            for (int k = 0; k < 2; k++) {
                snprintf(sh, sizeof sh, "%s n=%zu max_norm=%.3g", tp_backend_name(bes[k]), n,
                         limits[l]);
                float *pa = fdup(p, n), *ma = fdup(m, n), *va = fdup(v, n);
                float *pb = fdup(p, n), *mb = fdup(m, n), *vb = fdup(v, n);
                tp_op_adamw(bes[k], pa, g, ma, va, (int64_t)n, 1e-2f, b1, b2, 1e-8f, 0.1f, bc1, bc2,
                            clip);
                tp_op_adamw(bes[k], pb, gs, mb, vb, (int64_t)n, 1e-2f, b1, b2, 1e-8f, 0.1f, bc1,
                            bc2, TP_CLIP_NONE);
                CHECKF(memcmp(pa, pb, n * 4) == 0 && memcmp(ma, mb, n * 4) == 0 &&
                           memcmp(va, vb, n * 4) == 0,
                       "adamw(%s): clipped update differs from the update of the clipped gradient",
                       sh);
                for (int nest = 0; nest < 2; nest++) {
                    memcpy(pa, p, n * 4), memcpy(ma, m, n * 4);
                    memcpy(pb, p, n * 4), memcpy(mb, m, n * 4);
                    tp_op_sgd(bes[k], pa, g, ma, (int64_t)n, 0.1f, 0.9f, 0.01f, nest, false, clip);
                    tp_op_sgd(bes[k], pb, gs, mb, (int64_t)n, 0.1f, 0.9f, 0.01f, nest, false,
                              TP_CLIP_NONE);
                    CHECKF(memcmp(pa, pb, n * 4) == 0 && memcmp(ma, mb, n * 4) == 0,
                           "sgd(%s nesterov=%d): clipped update differs from the update of the "
                           "clipped gradient",
                           sh, nest);
                }
                free(pa), free(ma), free(va), free(pb), free(mb), free(vb);
            }
            free(gs);
        }
        CHECKF(memcmp(g, g0, n * 4) == 0, "n=%zu: a clipped update changed the gradient", n);
        free(p), free(g), free(m), free(v), free(g0);
    }
}

int main(void)
{
    g_seed = 1;
    if (tp_backend_create("ref", 1, &g_ref) != TP_OK ||
        tp_backend_create("cpu", 2, &g_cpu) != TP_OK) {
        fprintf(stderr, "cannot create the ref and cpu backends\n");
        return 1;
    }
    printf("testing %s against %s\n", tp_backend_describe(g_cpu), tp_backend_describe(g_ref));
    test_gemm();
    test_bias();
    test_act();
    test_gelu_range();
    test_dropout();
    test_im2col();
    test_swap01();
    test_maxpool();
    test_softmax_xent();
    test_sumsq();
    test_sum_to();
    test_vector_ops();
    test_adamw();
    test_sgd();
    test_clipped_updates();
    tp_backend_free(g_cpu);
    test_sumsq_threads(); /* changes the process-wide thread count: last */
    tp_backend_free(g_ref);
    return tp_test_finish("test_ops");
}
