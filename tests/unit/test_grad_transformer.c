/* Finite-difference checks of the transformer ops' backward on the "ref" backend: embedding
 * (w.r.t. wte and wpe), layernorm (x, w, b), attention (qkv), and a composed attention block
 * (layernorm -> gemm qkv -> attention -> gemm proj -> residual add), whose hand-written backward
 * chains the ops as a model would. The block's analytic gradients are also computed on the "cpu"
 * backend and compared with the ref's.
 *
 * As in test_grad.c: the objective is L = sum_i out_i g_i with fixed random g (so backward gets
 * dout = g), the numeric derivative is (L(v + eps) - L(v - eps)) / (v+ - v-) with v+- the fp32
 * values actually stored, and the error is |a - n| / max(|a|, |n|, floor). */
#include "backend.h"
#include "test_util.h"

#include <stdbool.h>

static tp_backend_t *g_be, *g_cpu;

static float *zeros(size_t n)
{
    return xcalloc(n, sizeof(float));
}

static double dotg(const float *y, const float *g, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)y[i] * g[i];
    return s;
}

typedef struct fd_opts {
    double eps, tol, floor;
} fd_opts_t;

typedef double (*objective_fn)(void *ctx);

/* Compare grad[0..n) with central differences of f over v[0..n). */
static void check_grad(const char *what, objective_fn f, void *ctx, float *v, const float *grad,
                       int64_t n, fd_opts_t o)
{
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        float keep = v[i];
        float vp = (float)(keep + o.eps), vm = (float)(keep - o.eps);
        v[i] = vp;
        double lp = f(ctx);
        v[i] = vm;
        double lm = f(ctx);
        v[i] = keep;
        double num = (lp - lm) / ((double)vp - (double)vm);
        double den = fmax(fmax(fabs(grad[i]), fabs(num)), o.floor);
        double e = fabs(grad[i] - num) / den;
        CHECKF(e <= o.tol, "%s[%lld]: analytic %g, numeric %g (err %.3g)", what, (long long)i,
               grad[i], num, e);
        worst = fmax(worst, isnan(e) ? INFINITY : e);
    }
    if (getenv("TP_TEST_VERBOSE")) printf("  %s: worst %.3g (tol %.3g)\n", what, worst, o.tol);
}

/* ---- embedding ----------------------------------------------------------------------------- */

typedef struct emb_ctx {
    int32_t *tok;
    float *wte, *wpe, *out, *g;
    int64_t B, T, C;
} emb_ctx_t;

static double emb_objective(void *p)
{
    emb_ctx_t *c = p;
    tp_op_embedding_forward(g_be, c->tok, c->wte, c->wpe, c->out, c->B, c->T, c->C);
    return dotg(c->out, c->g, c->B * c->T * c->C);
}

static void test_embedding(void)
{
    int64_t B = 2, T = 5, C = 6, V = 7;
    emb_ctx_t c = {.B = B, .T = T, .C = C};
    c.tok = xcalloc((size_t)(B * T), sizeof(int32_t));
    for (int64_t i = 0; i < B * T; i++)
        c.tok[i] = (int32_t)((i * 3) % (V - 1)); /* repeats, and token V-1 never used */
    c.wte = rnd((size_t)(V * C), 1.0f), c.wpe = rnd((size_t)(T * C), 1.0f);
    c.out = zeros((size_t)(B * T * C)), c.g = rnd((size_t)(B * T * C), 1.0f);
    float *dwte = zeros((size_t)(V * C)), *dwpe = zeros((size_t)(T * C));
    tp_op_embedding_backward(g_be, c.g, c.tok, dwte, dwpe, B, T, C);
    /* Linear in wte and wpe: central differences are exact but for the fp32 rounding of out,
     * which eps = 0.1 keeps near 1e-6 of the gradient. */
    fd_opts_t o = {0.1, 1e-4, 1e-2};
    check_grad("embedding dwte", emb_objective, &c, c.wte, dwte, V * C, o);
    check_grad("embedding dwpe", emb_objective, &c, c.wpe, dwpe, T * C, o);
    free(c.tok), free(c.wte), free(c.wpe), free(c.out), free(c.g), free(dwte), free(dwpe);
}

/* ---- layernorm ----------------------------------------------------------------------------- */

typedef struct ln_ctx {
    float *x, *w, *b, *y, *mean, *rstd, *g;
    int64_t N, C;
} ln_ctx_t;

static double ln_objective(void *p)
{
    ln_ctx_t *c = p;
    tp_op_layernorm_forward(g_be, c->x, c->w, c->b, CV(c->y), c->mean, c->rstd, c->N, c->C);
    return dotg(c->y, c->g, c->N * c->C);
}

static void test_layernorm(int64_t N, int64_t C, float offset)
{
    ln_ctx_t c = {.N = N, .C = C};
    size_t n = (size_t)(N * C);
    c.x = rnd(n, 1.0f), c.w = rnd((size_t)C, 1.5f), c.b = rnd((size_t)C, 1.0f);
    for (size_t i = 0; i < n; i++)
        c.x[i] += offset;
    c.y = zeros(n), c.mean = zeros((size_t)N), c.rstd = zeros((size_t)N), c.g = rnd(n, 1.0f);
    float *dx = zeros(n), *dw = zeros((size_t)C), *db = zeros((size_t)C);
    ln_objective(&c);
    tp_op_layernorm_backward(g_be, CV(c.g), c.x, c.w, c.mean, c.rstd, dx, dw, db, N, C);
    char base[48], what[64];
    snprintf(base, sizeof base, "layernorm(N=%lld C=%lld offset=%g)", (long long)N, (long long)C,
             (double)offset);
    /* x: smooth but nonlinear (rstd); eps = 1e-2 of a std ~0.6 leaves a truncation error
     * ~(eps/std)^2 ~ 3e-4 relative, and the fp32 rounding of y (~6e-8 of |y|, summed over N*C
     * terms) divided by 2 eps stays ~1e-5. Wrong derivatives are off by O(1). */
    snprintf(what, sizeof what, "%s dx", base);
    check_grad(what, ln_objective, &c, c.x, dx, (int64_t)n, (fd_opts_t){1e-2, 3e-3, 1e-2});
    /* w and b: y is linear in them, exact but for rounding. */
    snprintf(what, sizeof what, "%s dw", base);
    check_grad(what, ln_objective, &c, c.w, dw, C, (fd_opts_t){0.1, 1e-4, 1e-2});
    snprintf(what, sizeof what, "%s db", base);
    check_grad(what, ln_objective, &c, c.b, db, C, (fd_opts_t){0.1, 1e-4, 1e-2});
    free(c.x), free(c.w), free(c.b), free(c.y), free(c.mean), free(c.rstd), free(c.g);
    free(dx), free(dw), free(db);
}

/* ---- attention ----------------------------------------------------------------------------- */

typedef struct attn_ctx {
    float *qkv, *out, *att, *g;
    int64_t B, T, C, NH;
} attn_ctx_t;

static double attn_objective(void *p)
{
    attn_ctx_t *c = p;
    tp_op_attention_forward(g_be, CV(c->qkv), CV(c->out), c->att, c->B, c->T, c->C, c->NH);
    return dotg(c->out, c->g, c->B * c->T * c->C);
}

static void test_attention(int64_t B, int64_t T, int64_t C, int64_t NH)
{
    attn_ctx_t c = {.B = B, .T = T, .C = C, .NH = NH};
    size_t nq = (size_t)(B * T * 3 * C);
    c.qkv = rnd(nq, 1.0f), c.out = zeros((size_t)(B * T * C));
    c.att = zeros((size_t)(B * NH * T * T)), c.g = rnd((size_t)(B * T * C), 1.0f);
    float *dqkv = zeros(nq);
    attn_objective(&c);
    tp_op_attention_backward(g_be, CV(c.g), CV(c.qkv), c.att, CV(c.out), CV(dqkv), B, T, C, NH);
    char what[64];
    snprintf(what, sizeof what, "attention(B=%lld T=%lld C=%lld NH=%lld) dqkv", (long long)B,
             (long long)T, (long long)C, (long long)NH);
    /* Smooth (softmax of scores of size |q||k|/sqrt(hs) ~ 1): truncation ~eps^2 relative for
     * eps = 1e-2; the fp32 rounding of out over 2 eps adds ~1e-5. Gradients of v that are
     * tiny sums of cancelling terms are judged absolutely through the floor. */
    check_grad(what, attn_objective, &c, c.qkv, dqkv, (int64_t)nq, (fd_opts_t){1e-2, 3e-3, 1e-2});
    free(c.qkv), free(c.out), free(c.att), free(c.g), free(dqkv);
}

/* ---- a composed attention block ------------------------------------------------------------ */

enum { P_LNW, P_LNB, P_WQKV, P_BQKV, P_WP, P_BP, N_PARAMS };

typedef struct block {
    tp_backend_t *be;
    int64_t B, T, C, NH, N;
    float *x, *g;                               /* input [N, C] and dL/dout */
    float *p[N_PARAMS], *dp[N_PARAMS];          /* parameters and their gradients */
    int64_t np[N_PARAMS];                       /* their sizes */
    float *h, *mean, *rstd, *qkv, *att, *a, *y; /* activations */
    float *out, *da, *dqkv, *dh, *dx;           /* output and backward scratch */
} block_t;

static void block_init(block_t *k, tp_backend_t *be, int64_t B, int64_t T, int64_t C, int64_t NH)
{
    memset(k, 0, sizeof *k);
    k->be = be, k->B = B, k->T = T, k->C = C, k->NH = NH, k->N = B * T;
    int64_t N = k->N;
    const int64_t np[N_PARAMS] = {C, C, C * 3 * C, 3 * C, C * C, C};
    const float scale[N_PARAMS] = {1.0f, 0.5f, 0.5f, 0.2f, 0.5f, 0.2f};
    for (int i = 0; i < N_PARAMS; i++) {
        k->np[i] = np[i];
        k->p[i] = rnd((size_t)np[i], scale[i]);
        k->dp[i] = zeros((size_t)np[i]);
    }
    k->x = rnd((size_t)(N * C), 1.0f), k->g = rnd((size_t)(N * C), 1.0f);
    k->h = zeros((size_t)(N * C)), k->mean = zeros((size_t)N), k->rstd = zeros((size_t)N);
    k->qkv = zeros((size_t)(N * 3 * C)), k->att = zeros((size_t)(B * NH * T * T));
    k->a = zeros((size_t)(N * C)), k->y = zeros((size_t)(N * C)), k->out = zeros((size_t)(N * C));
    k->da = zeros((size_t)(N * C)), k->dqkv = zeros((size_t)(N * 3 * C));
    k->dh = zeros((size_t)(N * C)), k->dx = zeros((size_t)(N * C));
}

static void block_free(block_t *k)
{
    for (int i = 0; i < N_PARAMS; i++)
        free(k->p[i]), free(k->dp[i]);
    float *bufs[] = {k->x, k->g, k->h,   k->mean, k->rstd, k->qkv, k->att,
                     k->a, k->y, k->out, k->da,   k->dqkv, k->dh,  k->dx};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
}

/* out = x + proj(attention(ln(x) Wqkv + bqkv)) */
static double block_forward(void *ctx)
{
    block_t *k = ctx;
    tp_backend_t *be = k->be;
    int64_t N = k->N, C = k->C;
    tp_op_layernorm_forward(be, k->x, k->p[P_LNW], k->p[P_LNB], CV(k->h), k->mean, k->rstd, N, C);
    tp_op_gemm(be, false, false, N, 3 * C, C, 1.0f, k->h, C, k->p[P_WQKV], 3 * C, 0.0f, k->qkv,
               3 * C);
    tp_op_bias_add(be, k->qkv, k->p[P_BQKV], N, 3 * C, false);
    tp_op_attention_forward(be, CV(k->qkv), CV(k->a), k->att, k->B, k->T, C, k->NH);
    tp_op_gemm(be, false, false, N, C, C, 1.0f, k->a, C, k->p[P_WP], C, 0.0f, k->y, C);
    tp_op_bias_add(be, k->y, k->p[P_BP], N, C, false);
    tp_op_add(be, k->x, k->y, k->out, N * C);
    return dotg(k->out, k->g, N * C);
}

/* Parameter gradients accumulate into dp; dx is overwritten. */
static void block_backward(block_t *k)
{
    tp_backend_t *be = k->be;
    int64_t N = k->N, C = k->C;
    const float *g = k->g; /* dL/dout = dL/dy (residual add) */
    tp_op_gemm(be, true, false, C, C, N, 1.0f, k->a, C, g, C, 1.0f, k->dp[P_WP], C);
    tp_op_bias_grad(be, g, k->dp[P_BP], N, C, false);
    tp_op_gemm(be, false, true, N, C, C, 1.0f, g, C, k->p[P_WP], C, 0.0f, k->da, C);
    tp_op_attention_backward(be, CV(k->da), CV(k->qkv), k->att, CV(k->a), CV(k->dqkv), k->B, k->T,
                             C, k->NH);
    tp_op_gemm(be, true, false, C, 3 * C, N, 1.0f, k->h, C, k->dqkv, 3 * C, 1.0f, k->dp[P_WQKV],
               3 * C);
    tp_op_bias_grad(be, k->dqkv, k->dp[P_BQKV], N, 3 * C, false);
    tp_op_gemm(be, false, true, N, C, 3 * C, 1.0f, k->dqkv, 3 * C, k->p[P_WQKV], 3 * C, 0.0f, k->dh,
               C);
    /* dx = dL/dx through the layernorm (accumulated onto zero) plus the residual path. */
    tp_op_fill(be, k->dx, 0.0f, N * C);
    tp_op_layernorm_backward(be, CV(k->dh), k->x, k->p[P_LNW], k->mean, k->rstd, k->dx,
                             k->dp[P_LNW], k->dp[P_LNB], N, C);
    tp_op_axpy(be, k->dx, g, 1.0f, N * C);
}

static void test_block(void)
{
    static const char *names[N_PARAMS] = {"ln.w", "ln.b", "Wqkv", "bqkv", "Wproj", "bproj"};
    block_t k, kc;
    int64_t B = 2, T = 5, C = 8, NH = 2;
    uint64_t seed = g_seed;
    block_init(&k, g_be, B, T, C, NH);
    g_seed = seed; /* the same inputs for the cpu copy */
    block_init(&kc, g_cpu, B, T, C, NH);
    block_forward(&k);
    block_backward(&k);
    block_forward(&kc);
    block_backward(&kc);

    /* Compositions of smooth ops, eps = 1e-2. Measured worst errors ~2e-3: truncation through
     * the layernorm for x (it grows as eps^2: 8e-3 at eps = 3e-2) and the fp32 rounding of the
     * chain over 2 eps for the weights (it shrinks with eps: 5e-3 at eps = 3e-3). A wrong term
     * in a backward is off by O(1), so 1e-2 still tells. */
    fd_opts_t o = {1e-2, 1e-2, 1e-2};
    check_grad("block dx", block_forward, &k, k.x, k.dx, k.N * C, o);
    for (int i = 0; i < N_PARAMS; i++) {
        char what[32];
        snprintf(what, sizeof what, "block %s", names[i]);
        check_grad(what, block_forward, &k, k.p[i], k.dp[i], k.np[i], o);
    }

    /* The cpu backend's chain gives the same gradients: every op agrees with ref to ~1e-6
     * (test_ops, test_ops_transformer), and a handful of ops in a row stay within 1e-5. */
    double e = tp_test_rel_err(kc.dx, k.dx, (size_t)(k.N * C));
    CHECKF(e <= 1e-5, "block dx: cpu vs ref err %.3g", e);
    for (int i = 0; i < N_PARAMS; i++) {
        e = tp_test_rel_err(kc.dp[i], k.dp[i], (size_t)k.np[i]);
        CHECKF(e <= 1e-5, "block %s grad: cpu vs ref err %.3g", names[i], e);
        if (getenv("TP_TEST_VERBOSE")) printf("  block %s: cpu vs ref %.3g\n", names[i], e);
    }
    block_free(&k);
    block_free(&kc);
}

int main(void)
{
    g_seed = 300;
    if (tp_backend_create("ref", 1, &g_be) != TP_OK ||
        tp_backend_create("cpu", 2, &g_cpu) != TP_OK) {
        fprintf(stderr, "cannot create the ref and cpu backends\n");
        return 1;
    }
    test_embedding();
    test_layernorm(3, 7, 0.0f);
    test_layernorm(2, 16, 5.0f);
    test_attention(2, 5, 8, 2);
    test_attention(1, 4, 6, 3);
    test_attention(1, 1, 4, 1);
    test_block();
    tp_backend_free(g_cpu);
    tp_backend_free(g_be);
    return tp_test_finish("test_grad_transformer");
}
