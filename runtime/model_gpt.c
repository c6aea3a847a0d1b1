/* GPT-2 forward and backward over the compute-backend ops (matmuls through tp_op_gemm_c), with
 * activations allocated once for max_batch sequences of seq_len tokens.
 *
 * Mixed precision: every matrix product reads compute copies (backend.h: bf16 under
 * runtime.precision "bf16", float32 otherwise, where the copies below are the float32 arrays
 * themselves and cost nothing): the weights' copy, refreshed from the fp32 master weights at the
 * start of each forward; the LayerNorm, attention and GELU outputs, whose only readers are
 * products; qkv, whose only reader is attention (its tensor-core kernels copy bf16 tiles as they
 * are); the MLP's pre-activation (which the fused GELU product stores for GELU's derivative);
 * the logits, whose only reader is cross-entropy (as under PyTorch's autocast: the loss itself is
 * computed in fp32), and whose gradient overwrites them; the gradients that feed products (qkv's,
 * the MLP's, and a copy of the residual stream's); and the products' input gradients, which
 * LayerNorm's and attention's backward read (as autocast gives them back). The residual stream,
 * its gradient, the LayerNorm statistics, the other products' outputs and the losses stay
 * float32.
 *
 * Memory: per layer only what backward needs is kept (LayerNorm inputs' statistics, the
 * normalised inputs, qkv, attention probabilities, attention output, the MLP's pre-activation
 * and GELU output, the two residual streams); the residual projections write the next residual
 * stream directly (tp_op_linear_forward_c adds the stream they read: on cuda inside the product).
 * Backward reuses a handful of [B, T, *] gradient buffers across layers. The loss keeps no
 * [B, T, V] probabilities, only each row's log-sum-exp (tp_op_xent_forward): backward recomputes
 * the probabilities from the logits as it writes their gradient. */
#include "model_gpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per-block parameters, in registration (= flat buffer) order. */
enum { LN1W, LN1B, QKVW, QKVB, PROJW, PROJB, LN2W, LN2B, FCW, FCB, FCPW, FCPB, N_BLOCK_PARAMS };

typedef struct gpt_layer_acts {
    tp_cval_t *ln1;             /* [BT C] */
    float *ln1_mean, *ln1_rstd; /* [BT], [BT] */
    tp_cval_t *qkv;             /* [BT 3C]: read by attention only */
    tp_cval_t *atty;            /* [BT C] */
    float *att;                 /* [B NH T T] */
    float *res2;                /* [BT C]: x + attention */
    tp_cval_t *ln2;
    float *ln2_mean, *ln2_rstd;
    tp_cval_t *fch;      /* [BT 4C]: the MLP's pre-activation (read by GELU's backward) */
    tp_cval_t *fch_gelu; /* [BT 4C] */
    float *res3;         /* [BT C]: block output */
} gpt_layer_acts_t;

struct tp_gpt {
    tp_gpt_dims_t d;
    int64_t cur_T;
    bool have_targets;
    tp_param_t wte, wpe, lnfw, lnfb;
    tp_param_t *block; /* n_layer x N_BLOCK_PARAMS */
    /* activations */
    int32_t *tokens, *targets; /* backend, [B T] */
    float *encoded;            /* [BT C] */
    gpt_layer_acts_t *layer;
    tp_cval_t *lnf;
    float *lnf_mean, *lnf_rstd;
    /* [BT ldd]: a compute copy, and after the backward's first op their gradient (in place) */
    tp_cval_t *logits;
    int64_t ldd; /* the logits' row stride: V, or V rounded up to 8 elements (16 bytes) in bf16 */
    float *lse;  /* [BT]: each row's log-sum-exp; losses go to m->target_loss */
    float *host_logits;
    /* gradient scratch */
    float *dres, *dfch;
    /* [BT C]: a product's input gradient (a compute copy, as the product writes it) on its way to
     * the LayerNorm or attention backward that reads it */
    tp_cval_t *dln;
    tp_cval_t *dqkv;
    /* Compute copies: the weights' (numel), and those of dres and dfch, which are dres and dfch
     * themselves when compute copies are float32 (copies == false). */
    bool copies;
    tp_cval_t *wc, *dres_c, *dfch_c;
};

/* A compute copy that is the float32 array itself when compute copies are float32. */
static tp_cval_t *as_cval(float *x)
{
    return (tp_cval_t *)(void *)x;
}

/* The compute copy of parameter p (weights of products). */
static const tp_cval_t *wc(const tp_model_t *m, const tp_param_t *p)
{
    return tp_cval_at(m->be, m->gpt->wc, p->offset);
}

tp_gpt_dims_t tp_gpt_dims(const tp_model_t *m)
{
    return m->gpt->d;
}

static void add_param(tp_param_t *p, const char *name, int ndim, int64_t d0, int64_t d1,
                      tp_init_t init, float std, bool decay)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->numel = ndim == 1 ? d0 : d0 * d1;
    p->fan_in = ndim == 1 ? d0 : d1;
    p->init = init;
    p->init_std = std;
    p->decay = decay;
}

static tp_param_t *bp(const struct tp_gpt *g, int64_t l, int which)
{
    return &g->block[l * N_BLOCK_PARAMS + which];
}

static tp_status_t gpt_prepare(tp_model_t *m);
static void gpt_set_input(tp_model_t *m, const float *x, const int32_t *tokens,
                          const int32_t *targets, int64_t B);
static int64_t gpt_forward(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, int64_t *correct,
                           bool fetch_probs);
static void gpt_backward(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, float scale);
static void gpt_release(tp_model_t *m);
static void gpt_print(const tp_model_t *m);

static const tp_model_ops_t gpt_ops = {
    .kind = "gpt",
    .prepare = gpt_prepare,
    .set_input = gpt_set_input,
    .forward = gpt_forward,
    .backward = gpt_backward,
    .release = gpt_release,
    .print = gpt_print,
};

tp_status_t tp_gpt_build(tp_model_t *m, const tp_config_t *cfg)
{
    struct tp_gpt *g = tp_calloc(1, sizeof *g, "gpt");
    if (!g) return TP_ERR_NOMEM;
    m->gpt = g;
    m->ops = &gpt_ops;
    tp_gpt_dims_t d = {.n_layer = cfg->n_layer,
                       .n_head = cfg->n_head,
                       .C = cfg->d_model,
                       .T = cfg->seq_len,
                       .V = cfg->vocab_size};
    if (d.C % d.n_head)
        return TP_ERR(TP_ERR_CONFIG, "model.n_head = %lld does not divide model.d_model = %lld",
                      (long long)d.n_head, (long long)d.C);
    g->d = d;
    g->cur_T = d.T;
    m->targets_per_example = d.T;
    int64_t C = d.C, L = d.n_layer;
    /* GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer). */
    const float std = 0.02f, res_std = 0.02f / sqrtf(2.0f * (float)L);
    add_param(&g->wte, "wte.weight", 2, d.V, C, TP_INIT_NORMAL, std, true);
    add_param(&g->wpe, "wpe.weight", 2, d.T, C, TP_INIT_NORMAL, std, true);
    TP_TRY(tp_model_add_param(m, &g->wte));
    TP_TRY(tp_model_add_param(m, &g->wpe));
    g->block = tp_calloc((size_t)(L * N_BLOCK_PARAMS), sizeof(tp_param_t), "gpt parameters");
    if (!g->block) return TP_ERR_NOMEM;
    for (int64_t l = 0; l < L; l++) {
        char n[64];
#define P(which, suffix, ndim, d0, d1, init, s, decay)                                             \
    snprintf(n, sizeof n, "h.%lld.%s", (long long)l, suffix);                                      \
    add_param(bp(g, l, which), n, ndim, d0, d1, init, s, decay);                                   \
    TP_TRY(tp_model_add_param(m, bp(g, l, which)))
        P(LN1W, "ln_1.weight", 1, C, 0, TP_INIT_ONES, 0, false);
        P(LN1B, "ln_1.bias", 1, C, 0, TP_INIT_ZERO, 0, false);
        P(QKVW, "attn.c_attn.weight", 2, 3 * C, C, TP_INIT_NORMAL, std, true);
        P(QKVB, "attn.c_attn.bias", 1, 3 * C, 0, TP_INIT_ZERO, 0, false);
        P(PROJW, "attn.c_proj.weight", 2, C, C, TP_INIT_NORMAL, res_std, true);
        P(PROJB, "attn.c_proj.bias", 1, C, 0, TP_INIT_ZERO, 0, false);
        P(LN2W, "ln_2.weight", 1, C, 0, TP_INIT_ONES, 0, false);
        P(LN2B, "ln_2.bias", 1, C, 0, TP_INIT_ZERO, 0, false);
        P(FCW, "mlp.c_fc.weight", 2, 4 * C, C, TP_INIT_NORMAL, std, true);
        P(FCB, "mlp.c_fc.bias", 1, 4 * C, 0, TP_INIT_ZERO, 0, false);
        P(FCPW, "mlp.c_proj.weight", 2, C, 4 * C, TP_INIT_NORMAL, res_std, true);
        P(FCPB, "mlp.c_proj.bias", 1, C, 0, TP_INIT_ZERO, 0, false);
#undef P
    }
    add_param(&g->lnfw, "ln_f.weight", 1, C, 0, TP_INIT_ONES, 0, false);
    add_param(&g->lnfb, "ln_f.bias", 1, C, 0, TP_INIT_ZERO, 0, false);
    TP_TRY(tp_model_add_param(m, &g->lnfw));
    TP_TRY(tp_model_add_param(m, &g->lnfb));
    /* Forward FLOPs per sequence, 2 per multiply-add of every matmul: qkv, projection and MLP
     * (24 T C^2 per block), attention scores and weighted values over the causal triangle
     * (2 x 2 x C x T(T+1)/2 per block) and the LM head (2 T C V). */
    double Td = (double)d.T, Cd = (double)C;
    m->flops_per_example = (double)L * (24.0 * Td * Cd * Cd + 2.0 * Cd * Td * (Td + 1.0)) +
                           2.0 * Td * Cd * (double)d.V;
    return TP_OK;
}

static tp_status_t gpt_prepare(tp_model_t *m)
{
    struct tp_gpt *g = m->gpt;
    tp_gpt_dims_t d = g->d;
    int64_t B = m->max_batch, BT = B * d.T, C = d.C;
    g->layer = tp_calloc((size_t)d.n_layer, sizeof *g->layer, "gpt activations");
    if (!g->layer) return TP_ERR_NOMEM;
    tp_backend_t *be = m->be;
    bool ok = true;
#define ALLOC(ptr, n, what)                                                                        \
    do {                                                                                           \
        (ptr) = tp_backend_alloc(be, (size_t)(n) * sizeof(float), what);                           \
        ok = ok && (ptr);                                                                          \
    } while (0)
#define ALLOC_C(ptr, n, what)                                                                      \
    do {                                                                                           \
        (ptr) = tp_backend_alloc_compute(be, n, what);                                             \
        ok = ok && (ptr);                                                                          \
    } while (0)
    g->tokens = tp_backend_alloc(be, (size_t)BT * sizeof(int32_t), "tokens");
    g->targets = tp_backend_alloc(be, (size_t)BT * sizeof(int32_t), "targets");
    ok = g->tokens && g->targets;
    ALLOC(g->encoded, BT * C, "embeddings");
    for (int64_t l = 0; l < d.n_layer && ok; l++) {
        gpt_layer_acts_t *a = &g->layer[l];
        ALLOC_C(a->ln1, BT * C, "ln_1");
        ALLOC(a->ln1_mean, BT, "ln_1 mean");
        ALLOC(a->ln1_rstd, BT, "ln_1 rstd");
        ALLOC_C(a->qkv, BT * 3 * C, "qkv");
        ALLOC_C(a->atty, BT * C, "attention output");
        ALLOC(a->att, tp_op_attention_att_numel(be, B, d.T, d.n_head), "attention statistics");
        ALLOC(a->res2, BT * C, "residual");
        ALLOC_C(a->ln2, BT * C, "ln_2");
        ALLOC(a->ln2_mean, BT, "ln_2 mean");
        ALLOC(a->ln2_rstd, BT, "ln_2 rstd");
        ALLOC_C(a->fch, BT * 4 * C, "mlp");
        ALLOC_C(a->fch_gelu, BT * 4 * C, "mlp gelu");
        ALLOC(a->res3, BT * C, "residual");
    }
    ALLOC_C(g->lnf, BT * C, "ln_f");
    ALLOC(g->lnf_mean, BT, "ln_f mean");
    ALLOC(g->lnf_rstd, BT, "ln_f rstd");
    /* bf16 rows of an odd vocabulary (50257) would start 2-byte aligned; cuBLAS and the
     * cross-entropy kernels read vectors, so the rows are padded to 8 elements (never read). */
    g->ldd = tp_backend_compute_bytes(be) == sizeof(float) ? d.V : (d.V + 7) / 8 * 8;
    ALLOC_C(g->logits, BT * g->ldd, "logits");
    ALLOC(g->lse, BT, "log-sum-exp");
    ALLOC(g->dres, BT * C, "residual gradient");
    ALLOC_C(g->dln, BT * C, "gradient scratch");
    ALLOC_C(g->dqkv, BT * 3 * C, "qkv gradient");
    ALLOC(g->dfch, BT * 4 * C, "mlp gradient");
    g->copies = tp_backend_compute_bytes(be) != sizeof(float);
    if (g->copies) {
        ALLOC_C(g->wc, m->numel, "compute copy of the weights");
        ALLOC_C(g->dres_c, BT * C, "residual gradient (compute copy)");
        ALLOC_C(g->dfch_c, BT * 4 * C, "mlp gradient (compute copy)");
    } else {
        g->wc = as_cval(m->param_buf);
        g->dres_c = as_cval(g->dres);
        g->dfch_c = as_cval(g->dfch);
    }
#undef ALLOC_C
#undef ALLOC
    g->host_logits = tp_malloc((size_t)(B * d.V) * sizeof(float), "logits");
    return ok && g->host_logits ? TP_OK : TP_ERR_NOMEM;
}

static void gpt_release(tp_model_t *m)
{
    struct tp_gpt *g = m->gpt;
    if (!g) return;
    tp_backend_t *be = m->be;
    if (g->layer) {
        for (int64_t l = 0; l < g->d.n_layer; l++) {
            gpt_layer_acts_t *a = &g->layer[l];
            void *bufs[] = {a->ln1, a->ln1_mean, a->ln1_rstd, a->qkv, a->atty,     a->att, a->res2,
                            a->ln2, a->ln2_mean, a->ln2_rstd, a->fch, a->fch_gelu, a->res3};
            for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
                tp_backend_release(be, bufs[i]);
        }
    }
    void *bufs[] = {g->encoded, g->lnf,  g->lnf_mean, g->lnf_rstd, g->logits,
                    g->lse,     g->dres, g->dln,      g->dqkv,     g->dfch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        tp_backend_release(be, bufs[i]);
    if (g->copies) {
        tp_backend_release(be, g->wc);
        tp_backend_release(be, g->dres_c);
        tp_backend_release(be, g->dfch_c);
    }
    tp_backend_release(be, g->tokens);
    tp_backend_release(be, g->targets);
    free(g->host_logits);
    free(g->layer);
    free(g->block);
    free(g);
    m->gpt = NULL;
}

void tp_gpt_set_length(tp_model_t *m, int64_t T)
{
    m->gpt->cur_T = T < 1 ? 1 : T > m->gpt->d.T ? m->gpt->d.T : T;
}

static void gpt_set_input(tp_model_t *m, const float *x, const int32_t *tokens,
                          const int32_t *targets, int64_t B)
{
    struct tp_gpt *g = m->gpt;
    size_t bytes = (size_t)(B * g->cur_T) * sizeof(int32_t);
    tp_backend_upload(m->be, g->tokens, tokens, bytes);
    g->have_targets = targets != NULL;
    if (targets) tp_backend_upload(m->be, g->targets, targets, bytes);
}

/* Refresh the weights' compute copy from the master weights (nothing to do when it is them). */
static void refresh_weights(tp_model_t *m)
{
    if (m->gpt->copies) tp_op_to_compute(m->be, m->param_buf, m->gpt->wc, m->numel);
}

/* y[N, out] = x[N, in] W^T + b (PyTorch Linear), plus the residual r when r is not NULL (the
 * residual projections: one fused product on backends that can, backend.h). */
static void linear(tp_model_t *m, const tp_cval_t *x, const tp_param_t *w, const tp_param_t *b,
                   const float *r, float *y, int64_t N)
{
    int64_t out = w->shape[0], in = w->shape[1];
    tp_op_linear_forward_c(m->be, x, wc(m, w), b ? b->data : NULL, r, y, N, in, out);
}

/* Gradients of linear: dW += dy^T x, db += colsum(dy) when b is not NULL (which may be fused
 * into dW's product), dx = dy W (a compute copy, as PyTorch's autocast gives it back). */
static void linear_backward(tp_model_t *m, const tp_cval_t *dy, const tp_cval_t *x,
                            const tp_param_t *w, const tp_param_t *b, tp_cval_t *dx, int64_t N)
{
    tp_backend_t *be = m->be;
    int64_t out = w->shape[0], in = w->shape[1];
    tp_op_linear_grad_c(be, dy, x, w->grad, b ? b->grad : NULL, N, in, out);
    tp_op_gemm_to_c(be, false, false, N, in, out, 1.0f, dy, out, wc(m, w), in, dx, in);
}

static int64_t gpt_forward(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, int64_t *correct,
                           bool fetch_probs)
{
    struct tp_gpt *g = m->gpt;
    tp_backend_t *be = m->be;
    int64_t T = g->cur_T, C = g->d.C, NH = g->d.n_head, V = g->d.V, N = B * T;
    refresh_weights(m);
    tp_op_embedding_forward(be, g->tokens, g->wte.data, g->wpe.data, g->encoded, B, T, C);
    const float *x = g->encoded;
    for (int64_t l = 0; l < g->d.n_layer; l++) {
        gpt_layer_acts_t *a = &g->layer[l];
        tp_op_layernorm_forward(be, x, bp(g, l, LN1W)->data, bp(g, l, LN1B)->data, a->ln1,
                                a->ln1_mean, a->ln1_rstd, N, C);
        /* qkv straight into a compute copy (dfch, a gradient buffer, is the unfused path's
         * scratch) */
        tp_op_linear_forward_to_c(be, a->ln1, wc(m, bp(g, l, QKVW)), bp(g, l, QKVB)->data, a->qkv,
                                  g->dfch, N, C, 3 * C);
        tp_op_attention_forward(be, a->qkv, a->atty, a->att, B, T, C, NH);
        linear(m, a->atty, bp(g, l, PROJW), bp(g, l, PROJB), x, a->res2, N);
        tp_op_layernorm_forward(be, a->res2, bp(g, l, LN2W)->data, bp(g, l, LN2B)->data, a->ln2,
                                a->ln2_mean, a->ln2_rstd, N, C);
        /* dfch (a gradient buffer) is the unfused path's scratch */
        tp_op_linear_act_forward_c(be, TP_ACT_GELU, a->ln2, wc(m, bp(g, l, FCW)),
                                   bp(g, l, FCB)->data, a->fch, a->fch_gelu, g->dfch, N, C, 4 * C);
        linear(m, a->fch_gelu, bp(g, l, FCPW), bp(g, l, FCPB), a->res2, a->res3, N);
        x = a->res3;
    }
    tp_op_layernorm_forward(be, x, g->lnfw.data, g->lnfb.data, g->lnf, g->lnf_mean, g->lnf_rstd, N,
                            C);
    /* Tied LM head: logits = lnf wte^T, a compute copy (bf16 under "bf16"). */
    tp_op_gemm_to_c(be, false, true, N, V, C, 1.0f, g->lnf, C, wc(m, &g->wte), C, g->logits,
                    g->ldd);
    if (correct) *correct = 0;
    if (!g->have_targets) return 0;
    tp_op_xent_forward(be, g->logits, g->ldd, g->targets, g->lse, m->target_loss, N, V);
    return N;
}

static void gpt_backward(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, float scale)
{
    struct tp_gpt *g = m->gpt;
    tp_backend_t *be = m->be;
    int64_t T = g->cur_T, C = g->d.C, NH = g->d.n_head, V = g->d.V, N = B * T, L = g->d.n_layer;
    tp_cval_t *dlogits = g->logits; /* in place: the logits are not needed again */
    tp_op_xent_backward_c(be, g->logits, g->ldd, g->lse, g->targets, dlogits, N, V, scale);
    tp_op_gemm_c(be, true, false, V, C, N, 1.0f, dlogits, g->ldd, g->lnf, C, 1.0f, g->wte.grad, C);
    tp_op_gemm_to_c(be, false, false, N, C, V, 1.0f, dlogits, g->ldd, wc(m, &g->wte), C, g->dln, C);
    tp_op_fill(be, g->dres, 0.0f, N * C);
    const float *top = L > 0 ? g->layer[L - 1].res3 : g->encoded;
    /* Each LayerNorm backward also leaves what the products below it need of dres: its compute
     * copy, and its column sums, the bias gradient of the projection that wrote the stream (the
     * MLP's, or attention's). */
    tp_op_layernorm_backward_c(be, g->dln, top, g->lnfw.data, g->lnf_mean, g->lnf_rstd, g->dres,
                               g->dres_c, g->lnfw.grad, g->lnfb.grad,
                               L > 0 ? bp(g, L - 1, FCPB)->grad : NULL, N, C);
    tp_model_grads_ready(m, g->lnfw.offset);
    for (int64_t l = L - 1; l >= 0; l--) {
        gpt_layer_acts_t *a = &g->layer[l];
        const float *x = l > 0 ? g->layer[l - 1].res3 : g->encoded;
        /* res3 = res2 + mlp(ln2(res2)): dres flows to res2 unchanged, plus the MLP path. */
        /* The MLP's projection: its weight gradient (its bias gradient came with the LayerNorm
         * backward above), then its input gradient through GELU into the pre-activation (with
         * fc's bias gradient), one fused product on cuda. */
        tp_op_linear_grad_c(be, g->dres_c, a->fch_gelu, bp(g, l, FCPW)->grad, NULL, N, 4 * C, C);
        tp_op_linear_dx_act_c(be, TP_ACT_GELU, g->dres_c, wc(m, bp(g, l, FCPW)), a->fch, g->dfch_c,
                              bp(g, l, FCB)->grad, g->dfch, N, 4 * C, C);
        tp_model_grads_ready(m, bp(g, l, FCPW)->offset);
        linear_backward(m, g->dfch_c, a->ln2, bp(g, l, FCW), NULL, g->dln, N);
        tp_model_grads_ready(m, bp(g, l, FCW)->offset);
        tp_op_layernorm_backward_c(be, g->dln, a->res2, bp(g, l, LN2W)->data, a->ln2_mean,
                                   a->ln2_rstd, g->dres, g->dres_c, bp(g, l, LN2W)->grad,
                                   bp(g, l, LN2B)->grad, bp(g, l, PROJB)->grad, N, C);
        tp_model_grads_ready(m, bp(g, l, LN2W)->offset);
        /* res2 = x + proj(attention(ln1(x))); proj's bias gradient came with ln_2's backward */
        linear_backward(m, g->dres_c, a->atty, bp(g, l, PROJW), NULL, g->dln, N);
        tp_model_grads_ready(m, bp(g, l, PROJW)->offset);
        tp_op_attention_backward(be, g->dln, a->qkv, a->att, a->atty, g->dqkv, B, T, C, NH);
        linear_backward(m, g->dqkv, a->ln1, bp(g, l, QKVW), bp(g, l, QKVB), g->dln, N);
        tp_model_grads_ready(m, bp(g, l, QKVW)->offset);
        if (l > 0) /* below layer 0 only the embeddings' backward reads dres, in float32 */
            tp_op_layernorm_backward_c(be, g->dln, x, bp(g, l, LN1W)->data, a->ln1_mean,
                                       a->ln1_rstd, g->dres, g->dres_c, bp(g, l, LN1W)->grad,
                                       bp(g, l, LN1B)->grad, bp(g, l - 1, FCPB)->grad, N, C);
        else
            tp_op_layernorm_backward(be, g->dln, x, bp(g, l, LN1W)->data, a->ln1_mean, a->ln1_rstd,
                                     g->dres, bp(g, l, LN1W)->grad, bp(g, l, LN1B)->grad, N, C);
        tp_model_grads_ready(m, bp(g, l, LN1W)->offset);
    }
    /* wte (offset 0) also took the tied head's gradient at the start: final only now. */
    tp_op_embedding_backward(be, g->dres, g->tokens, g->wte.grad, g->wpe.grad, B, T, C);
    tp_model_grads_ready(m, 0);
}

const float *tp_gpt_fetch_logits(tp_model_t *m, int64_t B, int64_t t)
{
    struct tp_gpt *g = m->gpt;
    int64_t T = g->cur_T, V = g->d.V;
    for (int64_t b = 0; b < B; b++)
        tp_backend_download_compute(m->be, g->host_logits + b * V,
                                    tp_cval_at(m->be, g->logits, (b * T + t) * g->ldd), V);
    return g->host_logits;
}

static void gpt_print(const tp_model_t *m)
{
    const struct tp_gpt *g = m->gpt;
    tp_log_info("model gpt: %lld layers, %lld heads, d_model %lld, context %lld, vocab %lld: "
                "%lld parameters (%.1f M), %.3f GFLOP forward per sequence",
                (long long)g->d.n_layer, (long long)g->d.n_head, (long long)g->d.C,
                (long long)g->d.T, (long long)g->d.V, (long long)m->numel, (double)m->numel / 1e6,
                m->flops_per_example / 1e9);
}

/* ---- incremental decoding ----------------------------------------------------------------- */

struct tp_gpt_decoder {
    tp_model_t *m;
    int64_t B;
    float *kcache, *vcache;            /* [L, B, T, C] */
    float *x, *qkv, *q, *tmp, *logits; /* one position per sequence */
    float *fch; /* scratch: the unfused MLP product, the LayerNorm statistics */
    tp_cval_t *ln, *atty, *pre, *fch_c; /* compute copies (products' inputs) */
    int32_t *tokens;
    float *host_logits;
};

tp_status_t tp_gpt_decoder_create(tp_model_t *m, int64_t batch, tp_gpt_decoder_t **out)
{
    *out = NULL;
    tp_gpt_dims_t d = m->gpt->d;
    tp_gpt_decoder_t *dec = tp_calloc(1, sizeof *dec, "decoder");
    if (!dec) return TP_ERR_NOMEM;
    dec->m = m;
    dec->B = batch;
    tp_backend_t *be = m->be;
    int64_t B = batch, C = d.C;
    size_t cache = (size_t)(d.n_layer * B * d.T * C) * sizeof(float);
    dec->kcache = tp_backend_alloc(be, cache, "key cache");
    dec->vcache = tp_backend_alloc(be, cache, "value cache");
    dec->x = tp_backend_alloc(be, (size_t)(B * C) * sizeof(float), "decoder");
    dec->ln = tp_backend_alloc_compute(be, B * C, "decoder");
    dec->qkv = tp_backend_alloc(be, (size_t)(B * 3 * C) * sizeof(float), "decoder");
    dec->q = tp_backend_alloc(be, (size_t)(B * C) * sizeof(float), "decoder");
    dec->atty = tp_backend_alloc_compute(be, B * C, "decoder");
    dec->tmp = tp_backend_alloc(be, (size_t)(B * C) * sizeof(float), "decoder");
    dec->fch = tp_backend_alloc(be, (size_t)(B * 4 * C) * sizeof(float), "decoder");
    dec->fch_c = tp_backend_alloc_compute(be, B * 4 * C, "decoder");
    dec->pre = tp_backend_alloc_compute(be, B * 4 * C, "decoder");
    dec->logits = tp_backend_alloc(be, (size_t)(B * d.V) * sizeof(float), "decoder logits");
    dec->tokens = tp_backend_alloc(be, (size_t)B * sizeof(int32_t), "decoder tokens");
    dec->host_logits = tp_malloc((size_t)(B * d.V) * sizeof(float), "decoder logits");
    if (!dec->kcache || !dec->vcache || !dec->x || !dec->ln || !dec->qkv || !dec->q || !dec->atty ||
        !dec->tmp || !dec->fch || !dec->fch_c || !dec->pre || !dec->logits || !dec->tokens ||
        !dec->host_logits) {
        tp_gpt_decoder_free(dec);
        return TP_ERR_NOMEM;
    }
    refresh_weights(m); /* the weights do not change while a decoder lives */
    *out = dec;
    return TP_OK;
}

void tp_gpt_decoder_free(tp_gpt_decoder_t *dec)
{
    if (!dec) return;
    tp_backend_t *be = dec->m->be;
    void *bufs[] = {dec->kcache, dec->vcache, dec->x,   dec->ln,    dec->qkv, dec->q,
                    dec->atty,   dec->tmp,    dec->fch, dec->fch_c, dec->pre, dec->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        tp_backend_release(be, bufs[i]);
    tp_backend_release(be, dec->tokens);
    free(dec->host_logits);
    free(dec);
}

const float *tp_gpt_decoder_step(tp_gpt_decoder_t *dec, const int32_t *tokens, int64_t pos)
{
    tp_model_t *m = dec->m;
    struct tp_gpt *g = m->gpt;
    tp_backend_t *be = m->be;
    int64_t B = dec->B, C = g->d.C, T = g->d.T, V = g->d.V, NH = g->d.n_head;
    /* mean/rstd of the one position: the LayerNorm op needs somewhere to put them */
    float *mean = dec->fch, *rstd = dec->fch + B;
    tp_backend_upload(be, dec->tokens, tokens, (size_t)B * sizeof(int32_t));
    tp_op_embedding_forward(be, dec->tokens, g->wte.data, g->wpe.data + pos * C, dec->x, B, 1, C);
    for (int64_t l = 0; l < g->d.n_layer; l++) {
        float *kc = dec->kcache + l * B * T * C, *vc = dec->vcache + l * B * T * C;
        tp_op_layernorm_forward(be, dec->x, bp(g, l, LN1W)->data, bp(g, l, LN1B)->data, dec->ln,
                                mean, rstd, B, C);
        linear(m, dec->ln, bp(g, l, QKVW), bp(g, l, QKVB), NULL, dec->qkv, B);
        for (int64_t b = 0; b < B; b++) {
            const float *row = dec->qkv + b * 3 * C;
            tp_op_copy(be, dec->q + b * C, row, C);
            tp_op_copy(be, kc + (b * T + pos) * C, row + C, C);
            tp_op_copy(be, vc + (b * T + pos) * C, row + 2 * C, C);
        }
        tp_op_attention_decode(be, dec->q, kc, vc, dec->atty, B, pos, T, C, NH);
        linear(m, dec->atty, bp(g, l, PROJW), bp(g, l, PROJB), dec->x, dec->tmp, B);
        tp_op_copy(be, dec->x, dec->tmp, B * C);
        tp_op_layernorm_forward(be, dec->x, bp(g, l, LN2W)->data, bp(g, l, LN2B)->data, dec->ln,
                                mean, rstd, B, C);
        tp_op_linear_act_forward_c(be, TP_ACT_GELU, dec->ln, wc(m, bp(g, l, FCW)),
                                   bp(g, l, FCB)->data, dec->pre, dec->fch_c, dec->fch, B, C,
                                   4 * C);
        linear(m, dec->fch_c, bp(g, l, FCPW), bp(g, l, FCPB), dec->x, dec->tmp, B);
        tp_op_copy(be, dec->x, dec->tmp, B * C);
    }
    tp_op_layernorm_forward(be, dec->x, g->lnfw.data, g->lnfb.data, dec->ln, mean, rstd, B, C);
    tp_op_gemm_c(be, false, true, B, V, C, 1.0f, dec->ln, C, wc(m, &g->wte), C, 0.0f, dec->logits,
                 V);
    tp_backend_download(be, dec->host_logits, dec->logits, (size_t)(B * V) * sizeof(float));
    return dec->host_logits;
}
