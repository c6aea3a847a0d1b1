/* test_cuda_ops' row and array reductions and the optimizers: softmax cross-entropy (with and
 * without probabilities), sums of squares, vector ops, AdamW and SGD, against the ref backend. */
#include "cuda_ops_harness.h"

/* ---- softmax cross-entropy ----------------------------------------------------------------- */

void test_softmax_xent(void)
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

void test_sumsq(void)
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

            case_end();
        }
}

void test_vector_ops(void)
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

/* The sum of squares of g on both sides: the ref's in *sq, the device's (of dg) in device memory,
 * as a training step leaves it for a clipped update. */
static double *clip_sumsq(const float *g, const float *dg, size_t n, double *sq)
{
    *sq = tp_op_sumsq(g_ref, g, (int64_t)n);
    double *d = dalloc(sizeof(double));
    tp_op_sumsq_to(g_gpu, dg, (int64_t)n, d, false);
    return d;
}

void test_adamw(void)
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
            float *gg = put(g, n);
            /* Unclipped, then clipped to half the norm: the factor comes from a sum of squares in
             * device memory (the ref's from its own sum); the gradient stays as it was. */
            double sq = 0, *dsq = n > 0 ? clip_sumsq(g, gg, n, &sq) : NULL;
            for (int clipped = 0; clipped < 1 + (n > 0); clipped++) {
                tp_clip_t rclip = TP_CLIP_NONE, gclip = TP_CLIP_NONE;
                if (clipped) {
                    rclip = (tp_clip_t){&sq, 0.5 * sqrt(sq)};
                    gclip = (tp_clip_t){dsq, rclip.max_norm};
                }
                float *pr = hdup(p, n), *mr = hdup(m, n), *vr = hdup(v, n);
                float *pg = put(p, n), *mg = put(m, n), *vg = put(v, n);
                tp_op_adamw(g_ref, pr, g, mr, vr, (int64_t)n, 1e-2f, b1, b2, 1e-8f, 0.1f, bc1, bc2,
                            rclip);
                tp_op_adamw(g_gpu, pg, gg, mg, vg, (int64_t)n, 1e-2f, b1, b2, 1e-8f, 0.1f, bc1, bc2,
                            gclip);
                expect(clipped ? "adamw p (clipped)" : "adamw p", sh,
                       tp_test_rel_err(dgetf(pg, n), pr, n), K_ELEM);
                expect(clipped ? "adamw m (clipped)" : "adamw m", sh,
                       tp_test_rel_err(dgetf(mg, n), mr, n), K_ELEM);
                expect(clipped ? "adamw v (clipped)" : "adamw v", sh,
                       tp_test_rel_err(dgetf(vg, n), vr, n), K_ELEM);
            }
            expect("adamw g (unchanged)", sh, bytes_differ(dgetf(gg, n), g, n * 4), K_EXACT);
            case_end();
        }
}

void test_sgd(void)
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
                /* The second of each pair clipped to half the gradient's norm. */
                double sq = 0, *dsq = n > 0 && off ? clip_sumsq(g, gg, n, &sq) : NULL;
                tp_clip_t rclip = {&sq, 0.5 * sqrt(sq)}, gclip = {dsq, 0.5 * sqrt(sq)};
                if (!dsq) rclip = gclip = TP_CLIP_NONE;
                tp_op_sgd(g_ref, pr, g, br, (int64_t)n, 0.1f, 0.9f, 0.01f, nest, first, rclip);
                tp_op_sgd(g_gpu, pg, gg, bg, (int64_t)n, 0.1f, 0.9f, 0.01f, nest, first, gclip);
                expect(dsq ? "sgd p (clipped)" : "sgd p", sh, tp_test_rel_err(dgetf(pg, n), pr, n),
                       K_ELEM);
                expect(dsq ? "sgd buf (clipped)" : "sgd buf", sh,
                       tp_test_rel_err(dgetf(bg, n), br, n), K_ELEM);
                case_end();
            }
}
