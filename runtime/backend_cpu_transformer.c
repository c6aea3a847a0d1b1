/* Transformer kernels of the cpu backend: embedding, layernorm and fused causal self-attention.
 * Work is split so that every output element is produced by one thread in a fixed order (rows,
 * (batch, head) pairs, channel slices walked over the rows in order, fixed row chunks summed in
 * chunk order), so results depend neither on scheduling nor on the thread count. Inner loops run
 * over contiguous channels for the vectoriser; `omp simd` reductions fix their order per binary.
 * Scratch comes from the backend's grow-once buffer (tp_cpu_scratch); if it cannot grow, an op
 * falls back to its reference kernel. */
#include "backend_transformer_impl.h"
#include "simd_math.h"
#include "ops_math.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* Column block of the layernorm's sum of per-chunk partial gradients. */
#define COL_BLOCK 64

void tp_cpu_embedding_forward(tp_backend_t *be, const int32_t *tokens, const float *wte,
                              const float *wpe, float *out, int64_t B, int64_t T, int64_t C)
{
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < B * T; r++) {
        const float *restrict e = wte + (int64_t)tokens[r] * C;
        const float *restrict p = wpe + (r % T) * C;
        float *restrict o = out + r * C;
        if (r + 4 < B * T) /* the rows are scattered: start fetching a later one now */
            for (int64_t c = 0; c < C; c += 16)
                __builtin_prefetch(wte + (int64_t)tokens[r + 4] * C + c);
#pragma omp simd
        for (int64_t c = 0; c < C; c++)
            o[c] = e[c] + p[c];
    }
}

void tp_cpu_embedding_backward(tp_backend_t *be, const float *dout, const int32_t *tokens,
                               float *dwte, float *dwpe, int64_t B, int64_t T, int64_t C)
{
    /* Each thread owns one slice of the channels and walks all (b, t) in order: the same fp32
     * additions in the same order as the reference, without atomics, for any thread count. One
     * wide slice per thread (not many narrow blocks) visits each scattered dwte row only once
     * per thread. */
    if (B * T <= 0 || C <= 0) return;
    int nt = omp_get_max_threads();
    int64_t slice = ((C + nt - 1) / nt + 15) / 16 * 16;
    int64_t nslice = (C + slice - 1) / slice;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t is = 0; is < nslice; is++) {
        int64_t c0 = is * slice, n = C - c0 < slice ? C - c0 : slice;
        for (int64_t r = 0; r < B * T; r++) {
            const float *restrict d = dout + r * C + c0;
            float *restrict e = dwte + (int64_t)tokens[r] * C + c0;
            float *restrict p = dwpe + (r % T) * C + c0;
            if (r + 4 < B * T) /* the rows are scattered: start fetching a later one now */
                for (int64_t c = 0; c < n; c += 16)
                    __builtin_prefetch(dwte + (int64_t)tokens[r + 4] * C + c0 + c, 1);
#pragma omp simd
            for (int64_t c = 0; c < n; c++) {
                e[c] += d[c];
                p[c] += d[c];
            }
        }
    }
}

void tp_cpu_layernorm_forward(tp_backend_t *be, const float *x, const float *w, const float *b,
                              tp_cval_t *y_c, float *mean, float *rstd, int64_t N, int64_t C)
{
    float *y = tp_cval_f32(y_c); /* host backends: compute copies are float32 */
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        const float *restrict xr = x + r * C;
        float *restrict yr = y + r * C;
        /* One pass in double: sums of fp32 values and their exact squares, so E[x^2] - m^2
         * loses nothing that matters unless |mean| / std exceeds ~1e6. */
        double s = 0, s2 = 0;
#pragma omp simd reduction(+ : s, s2)
        for (int64_t c = 0; c < C; c++) {
            double v = xr[c];
            s += v;
            s2 += v * v;
        }
        double m = s / (double)C, var = s2 / (double)C - m * m;
        double rs = 1.0 / sqrt((var > 0 ? var : 0) + TP_LN_EPS);
        float mf = (float)m, rf = (float)rs;
#pragma omp simd
        for (int64_t c = 0; c < C; c++)
            yr[c] = (xr[c] - mf) * rf * w[c] + b[c];
        mean[r] = mf;
        rstd[r] = rf;
    }
}

/* Rows per partial sum of dw and db: fixed, so the result does not depend on the thread count. */
#define LN_CHUNK 32

void tp_cpu_layernorm_backward(tp_backend_t *be, const tp_cval_t *dy_c, const float *x,
                               const float *w, const float *mean, const float *rstd, float *dx,
                               float *dw, float *db, int64_t N, int64_t C)
{
    const float *dy = tp_cval_cf32(dy_c);
    /* One pass over the rows: dx per row, and dw, db summed over each chunk of LN_CHUNK rows
     * into its own partial row; the partials are then added in chunk order. */
    int64_t nchunk = (N + LN_CHUNK - 1) / LN_CHUNK;
    if (N <= 0) return;
    float *part = NULL;
    int64_t ld = tp_cpu_scratch(be, nchunk, 2 * C, &part);
    if (!ld) {
        tp_ref_layernorm_backward(be, dy_c, x, w, mean, rstd, dx, dw, db, N, C);
        return;
    }
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int64_t k = 0; k < nchunk; k++) {
            float *restrict pw = part + k * ld, *restrict pb = pw + C;
            memset(pw, 0, (size_t)(2 * C) * sizeof(float));
            int64_t r1 = (k + 1) * LN_CHUNK < N ? (k + 1) * LN_CHUNK : N;
            for (int64_t r = k * LN_CHUNK; r < r1; r++) {
                const float *restrict xr = x + r * C, *restrict d = dy + r * C;
                float *restrict dxr = dx + r * C;
                float m = mean[r], rs = rstd[r], sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
                for (int64_t c = 0; c < C; c++) {
                    float g = d[c] * w[c];
                    sg += g;
                    sgx += g * ((xr[c] - m) * rs);
                }
                sg /= (float)C;
                sgx /= (float)C;
                /* See the reference for the formula. */
#pragma omp simd
                for (int64_t c = 0; c < C; c++) {
                    float g = d[c] * w[c], xhat = (xr[c] - m) * rs;
                    dxr[c] += rs * (g - sg - xhat * sgx);
                    pw[c] += d[c] * xhat;
                    pb[c] += d[c];
                }
            }
        }
        /* Column blocks of the sum over chunks (the implicit barrier above orders them). */
        int64_t nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp for schedule(static)
        for (int64_t ib = 0; ib < nblk; ib++) {
            int64_t c0 = ib * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
            for (int64_t k = 0; k < nchunk; k++) {
                const float *restrict pw = part + k * ld, *restrict pb = pw + C;
#pragma omp simd
                for (int64_t c = c0; c < c1; c++) {
                    dw[c] += pw[c];
                    db[c] += pb[c];
                }
            }
        }
    }
}

/* ---- attention ------------------------------------------------------------------------------
 * Two register-blocked kernels do the work, each summing every output element sequentially over
 * its index (so the result is the same whatever the block widths or vector ISA, bar FMA):
 *   tdot: s[j] = sum_i x[i] mt[i][j], over j in blocks of 64 (the last one 64, 32 or 8; mt is
 *         a transposed matrix padded so that whole blocks can be read; extra scores are unused);
 *   wsum: y[i] = sum_m c[m] r[m][i], over i in blocks of 64, 32, 8, then singly.
 * Wide blocks give the FMA units independent accumulator chains (with AVX-512, 64 floats are
 * four zmm registers).
 * Forward, per (b, h): K transposed into scratch once, then per query t: scores (tdot over the
 * keys 0..t), softmax into att, out = wsum over the values. Decode transposes its cache and calls
 * the same row function, so it reproduces the forward's row bit for bit. Backward, per (b, h):
 * pass 1 over queries t: datt = tdot(dout_t, V^T), dpre = att (datt - att.datt) scale kept in a
 * [T, T] scratch, dq_t = wsum(dpre, K); pass 2 over keys j: dk_j = wsum(dpre[.., j], Q),
 * dv_j = wsum(att[.., j], dout). Every gradient row is written once: no zeroing, no atomics. */

/* Blocks of W output columns with W accumulators (in registers once inlined with constant W). */
TP_INLINE void tdot_block(const float *restrict x, const float *restrict mt, int64_t ld, int64_t hs,
                          float *restrict s, const int W)
{
    float acc[64] = {0};
    for (int64_t i = 0; i < hs; i++) {
        float xi = x[i];
        const float *restrict row = mt + i * ld;
#pragma GCC unroll 64
        for (int l = 0; l < W; l++)
            acc[l] += xi * row[l];
    }
    for (int l = 0; l < W; l++)
        s[l] = acc[l];
}

/* s[0..n) = x^T mt, for blocks of 64, or 32 or 8 for the last one; blocks start at multiples of
 * 64 and end at or before padded(n), so mt (hs rows of ld) and s must have padded(n) columns. */
TP_INLINE void tdot(const float *restrict x, const float *restrict mt, int64_t ld, int64_t hs,
                    int64_t n, float *restrict s)
{
    for (int64_t j = 0; j < n;) {
        if (n - j > 32)
            tdot_block(x, mt + j, ld, hs, s + j, 64), j += 64;
        else if (n - j > 8)
            tdot_block(x, mt + j, ld, hs, s + j, 32), j += 32;
        else
            tdot_block(x, mt + j, ld, hs, s + j, 8), j += 8;
    }
}

TP_INLINE void wsum_block(const float *restrict c, int64_t cs, const float *restrict r, int64_t rs,
                          int64_t n, float *restrict y, const int W)
{
    float acc[64] = {0};
    for (int64_t m = 0; m < n; m++) {
        float cm = c[m * cs];
        const float *restrict row = r + m * rs;
#pragma GCC unroll 64
        for (int l = 0; l < W; l++)
            acc[l] += cm * row[l];
    }
    for (int l = 0; l < W; l++)
        y[l] = acc[l];
}

/* y[0..hs) = sum_{m<n} c[m * cs] * r[m * rs + 0..hs) */
TP_INLINE void wsum(const float *restrict c, int64_t cs, const float *restrict r, int64_t rs,
                    int64_t n, int64_t hs, float *restrict y)
{
    int64_t i = 0;
    for (; i + 64 <= hs; i += 64)
        wsum_block(c, cs, r + i, rs, n, y + i, 64);
    for (; i + 32 <= hs; i += 32)
        wsum_block(c, cs, r + i, rs, n, y + i, 32);
    for (; i + 8 <= hs; i += 8)
        wsum_block(c, cs, r + i, rs, n, y + i, 8);
    for (; i < hs; i++)
        wsum_block(c, cs, r + i, rs, n, y + i, 1);
}

/* mt[i * ld + j] = m[j * rs + i] for j < n, zero for j in [n, ld): the padding tdot reads. */
static void transpose_head(const float *restrict m, int64_t rs, int64_t n, int64_t hs,
                           float *restrict mt, int64_t ld)
{
    for (int64_t i = 0; i < hs; i++)
        for (int64_t j = n; j < ld; j++)
            mt[i * ld + j] = 0.0f;
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < hs; i++)
            mt[i * ld + j] = m[j * rs + i];
}

/* One query against keys 0..n-1 (kt: transposed, ld >= padded(n)) and values (row j at
 * v + j * rs): p[0..n) = softmax(q.k_j * scale), out[0..hs) = sum_j p[j] v_j. s is padded(n)
 * floats of scratch. */
TP_SIMD_CLONES static void attention_row(const float *restrict q, const float *restrict kt,
                                         int64_t ld, const float *restrict v, int64_t rs, int64_t n,
                                         int64_t hs, float scale, float *restrict s,
                                         float *restrict p, float *restrict out)
{
    tdot(q, kt, ld, hs, n, s);
    float mx = -FLT_MAX, sum = 0.0f;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < n; j++) {
        s[j] *= scale;
        mx = s[j] > mx ? s[j] : mx;
    }
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        s[j] = tp_exp_neg(s[j] - mx);
        sum += s[j];
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        p[j] = s[j] * inv;
    wsum(p, 1, v, rs, n, hs, out);
}

/* Row length of transposed scratch for sequences of n: tdot reads whole blocks up to the next
 * multiple of 64; 16 more keep the rows off power-of-two strides (cache set conflicts). */
static int64_t padded(int64_t n)
{
    return (n + 63) / 64 * 64 + 16;
}

/* dst[j * hs + i] = m[j * rs + i]: a head's rows made contiguous, since walking them at their
 * stride in qkv (3C floats, often a multiple of 1 KiB) would use only a few cache sets. */
static void copy_head(const float *restrict m, int64_t rs, int64_t n, int64_t hs,
                      float *restrict dst)
{
    for (int64_t j = 0; j < n; j++)
        memcpy(dst + j * hs, m + j * rs, (size_t)hs * sizeof(float));
}

void tp_cpu_attention_forward(tp_backend_t *be, const tp_cval_t *qkv_c, tp_cval_t *out_c,
                              float *att, int64_t B, int64_t T, int64_t C, int64_t NH)
{
    float *out = tp_cval_f32(out_c);
    const float *qkv = tp_cval_cf32(qkv_c); /* float32: this backend computes in fp32 only */
    int64_t hs = C / NH, C3 = 3 * C, ld = padded(T);
    int nt = omp_get_max_threads();
    float *scratch;
    /* kt [hs, ld], s [ld], v [T, hs] */
    int64_t stride = tp_cpu_scratch(be, nt, (hs + 1) * ld + T * hs, &scratch);
    if (!stride) {
        tp_ref_attention_forward(be, qkv_c, out_c, att, B, T, C, NH);
        return;
    }
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nt)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++) {
            float *kt = scratch + omp_get_thread_num() * stride, *s = kt + hs * ld, *v = s + ld;
            const float *base = qkv + b * T * C3 + h * hs;
            transpose_head(base + C, C3, T, hs, kt, ld);
            copy_head(base + 2 * C, C3, T, hs, v);
            for (int64_t t = 0; t < T; t++)
                attention_row(base + t * C3, kt, ld, v, hs, t + 1, hs, scale, s,
                              att + ((b * NH + h) * T + t) * T, out + (b * T + t) * C + h * hs);
        }
}

/* Gradient of one (b, h) slice (pointers at the head's channels; see the comment above).
 * Scratch: vt [hs, ld], s [ld], dpre [T, ld], and contiguous q, k, dout [T, hs]. */
TP_SIMD_CLONES static void attention_backward_head(const float *dout, const float *qkv,
                                                   const float *att, float *dqkv, int64_t T,
                                                   int64_t C, int64_t hs, float scale,
                                                   float *restrict scratch)
{
    int64_t C3 = 3 * C, ld = padded(T);
    float *restrict vt = scratch, *restrict s = vt + hs * ld, *restrict dpre = s + ld;
    float *restrict q = dpre + T * ld, *restrict k = q + T * hs, *restrict d = k + T * hs;
    transpose_head(qkv + 2 * C, C3, T, hs, vt, ld);
    copy_head(qkv, C3, T, hs, q);
    copy_head(qkv + C, C3, T, hs, k);
    copy_head(dout, C, T, hs, d);
    for (int64_t t = 0; t < T; t++) {
        const float *restrict a = att + t * T;
        float *restrict dp = dpre + t * ld;
        tdot(d + t * hs, vt, ld, hs, t + 1, s);
        float sa = 0.0f;
#pragma omp simd reduction(+ : sa)
        for (int64_t j = 0; j <= t; j++)
            sa += a[j] * s[j];
#pragma omp simd
        for (int64_t j = 0; j <= t; j++)
            dp[j] = a[j] * (s[j] - sa) * scale;
        wsum(dp, 1, k, hs, t + 1, hs, dqkv + t * C3);
    }
    for (int64_t j = 0; j < T; j++) {
        int64_t n = T - j; /* queries j..T-1 attend to key j */
        wsum(dpre + j * ld + j, ld, q + j * hs, hs, n, hs, dqkv + j * C3 + C);
        wsum(att + j * T + j, T, d + j * hs, hs, n, hs, dqkv + j * C3 + 2 * C);
    }
}

void tp_cpu_attention_backward(tp_backend_t *be, const tp_cval_t *dout_c, const tp_cval_t *qkv_c,
                               const float *att, const tp_cval_t *out_c, tp_cval_t *dqkv_c,
                               int64_t B, int64_t T, int64_t C, int64_t NH)
{
    const float *dout = tp_cval_cf32(dout_c);
    float *dqkv = tp_cval_f32(dqkv_c); /* out_c: only fused backends read it */
    const float *qkv = tp_cval_cf32(qkv_c);
    int64_t hs = C / NH, C3 = 3 * C, ld = padded(T);
    int nt = omp_get_max_threads();
    float *scratch;
    int64_t stride = tp_cpu_scratch(be, nt, (hs + 1 + T) * ld + 3 * T * hs, &scratch);
    if (!stride) {
        tp_ref_attention_backward(be, dout_c, qkv_c, att, out_c, dqkv_c, B, T, C, NH);
        return;
    }
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nt)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            attention_backward_head(dout + b * T * C + h * hs, qkv + b * T * C3 + h * hs,
                                    att + (b * NH + h) * T * T, dqkv + b * T * C3 + h * hs, T, C,
                                    hs, scale, scratch + omp_get_thread_num() * stride);
}

void tp_cpu_attention_decode(tp_backend_t *be, const float *q, const float *kcache,
                             const float *vcache, tp_cval_t *out_c, int64_t B, int64_t pos,
                             int64_t Tmax, int64_t C, int64_t NH)
{
    float *out = tp_cval_f32(out_c);
    int64_t hs = C / NH, n = pos + 1, ld = padded(n);
    int nt = omp_get_max_threads();
    float *scratch;
    /* kt [hs, ld], s [ld], p [ld] */
    int64_t stride = tp_cpu_scratch(be, nt, (hs + 2) * ld, &scratch);
    if (!stride) {
        tp_ref_attention_decode(be, q, kcache, vcache, out_c, B, pos, Tmax, C, NH);
        return;
    }
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nt)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++) {
            float *kt = scratch + omp_get_thread_num() * stride, *s = kt + hs * ld, *p = s + ld;
            transpose_head(kcache + b * Tmax * C + h * hs, C, n, hs, kt, ld);
            attention_row(q + b * C + h * hs, kt, ld, vcache + b * Tmax * C + h * hs, C, n, hs,
                          scale, s, p, out + b * C + h * hs);
        }
}
