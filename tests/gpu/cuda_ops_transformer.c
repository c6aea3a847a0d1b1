/* test_cuda_ops' transformer ops: embedding, LayerNorm (with the fused residual-gradient copy and
 * sums) and causal attention (forward, backward, decode), against the ref backend. */
#include "cuda_ops_harness.h"

/* ---- transformer ops ----------------------------------------------------------------------- */

void test_embedding(void)
{
    /* {4, 256, 300, 3}: runs of ~340 equal tokens, longer than one chunk of dwte's kernel, and
     * channels past its last full block of threads; {1, 512, 40, 1}: one run of exactly two
     * chunks. */
    static const int64_t shapes[][4] = {
        {1, 1, 8, 50},        {2, 7, 33, 50},    {3, 64, 96, 50},
        {2, 7, 17, 5000},     {3, 64, 80, 5000}, {2, 64, 768, 50257},
        {1, 257, 768, 50257}, {4, 256, 300, 3},  {1, 512, 40, 1}};
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
         * (b, t) order of the additions, so the result is deterministic, and the ref's bits. */
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
        expect("embedding_backward dwte", sh, bytes_differ(hte, ter, nte * 4), K_EXACT);
        expect("embedding_backward dwpe", sh, bytes_differ(hpe, per, npe * 4), K_EXACT);
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

void test_layernorm(void)
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

            /* Backward from the ref's saved statistics; dx, dw and db start non-zero. dy is a
             * compute copy (a product's input gradient): the ref sees it rounded alike. */
            float *dy = hround(hrnd(n, 1.0f), n), *dx0 = hrnd(n, 1.0f), *dw0 = hrnd(nC, 1.0f),
                  *db0 = hrnd(nC, 1.0f);
            float *gxr = hdup(dx0, n), *gwr = hdup(dw0, nC), *gbr = hdup(db0, nC);
            tp_cval_t *ddy = dputc(dy, n);
            float *dm = dputf(mr, nN), *drs = dputf(rr, nN);
            float *gx = dputf(dx0, n), *gw = dputf(dw0, nC), *gb = dputf(db0, nC);
            tp_op_layernorm_backward(g_ref, CV(dy), x, w, mr, rr, gxr, gwr, gbr, N, C);
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
    {1, 1, 8, 1, 150},
    {2, 7, 32, 4, 150},
    {3, 7, 24, 3, 150},
    {2, 7, 12, 4, 150},
    {1, 64, 96, 4, 150},
    {2, 64, 64, 1, 150},
    {3, 1, 96, 2, 150},
    {2, 33, 40, 2, 150},
    {1, 130, 96, 1, 150},
    {2, 100, 72, 1, 150},
    {4, 64, 768, 12, 100},
    {2, 257, 768, 12, 100},
    /* the tensor-core kernels' 128-query tiles: a second 64-row tile partly filled (T 65-127 past
     * a multiple of 128), head size 32 over several key tiles, odd head sizes (no 16-byte copies,
     * no pair stores), head size 60 (pair stores, no 16-byte copies), larger scores */
    {1, 100, 64, 2, 150},
    {1, 200, 128, 2, 150},
    {1, 127, 30, 2, 150},
    {1, 191, 120, 2, 150},
    {1, 96, 128, 2, 150},
    {1, 65, 128, 2, 150},
    {2, 1, 128, 2, 150},
    {1, 160, 64, 2, 300},
    {1, 700, 128, 2, 300},
    {1, 300, 128, 2, 400}};
#define N_ATTN (sizeof g_attn / sizeof g_attn[0])

void test_attention(void)
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
        /* qkv and dout are compute copies (what the qkv product and the output projection's
         * input-gradient product write): the ref sees them rounded alike */
        float *qkv = hround(hrnd(nqkv, scale), nqkv), *dout = hround(hrnd(no, 1.0f), no);
        float *outr = hnan(no), *ar = hnan(na_ref), *dr = hnan(nqkv);
        float *ag = dnan((size_t)na_gpu);
        tp_cval_t *ddo = dputc(dout, no);
        tp_cval_t *dq = dputc(qkv, nqkv);
        tp_cval_t *outg = dnanc(no), *dg = dnanc(nqkv); /* compute copies (products' inputs) */
        tp_op_attention_forward(g_ref, CV(qkv), CV(outr), ar, B, T, C, NH);
        tp_op_attention_forward(g_gpu, dq, outg, ag, B, T, C, NH);
        expect("attention_forward out", sh, tp_test_rel_err(dgetc(outg, no), outr, no), K_ATTN);
        tp_op_attention_backward(g_ref, CV(dout), CV(qkv), ar, CV(outr), CV(dr), B, T, C, NH);
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
