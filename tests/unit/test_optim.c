/* Optimizers against hand-computed updates: SGD with momentum (plain and Nesterov, first and
 * second step) and AdamW (bias correction, decoupled decay) on a tiny mlp whose weights decay
 * and biases do not; the learning-rate schedule; global-norm gradient clipping.
 *
 * Expected values are written out for two elements (a weight and a bias, worked by hand from
 * the formulas in optim.h) and recomputed in double for every element. */
#include "optim.h"
#include "test_util.h"

#include <stdbool.h>

#define NP 12 /* fc1.weight [2x2], fc1.bias [2], fc2.weight [2x2], fc2.bias [2] */

static const float g_p0[NP] = {0.5f,  -0.3f, 0.8f,   -1.2f, 0.3f, -0.7f,
                               0.25f, 1.5f,  -0.45f, 0.6f,  0.1f, -0.2f};
static const float g_g1[NP] = {0.2f,  -0.1f, 0.05f, 0.3f,   0.2f, -0.6f,
                               1e-3f, -2.0f, 0.7f,  -0.05f, 0.4f, 0.25f};
static const float g_g2[NP] = {-0.4f,  0.3f, 0.05f, -0.1f, -0.4f, 0.2f,
                               -1e-3f, 1.0f, 0.7f,  0.02f, -0.3f, 0.5f};
/* Which elements decay: the weights, per the layout above. */
static const bool g_decay[NP] = {1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0};

static tp_backend_t *g_be;

/* 1x1x2 input -> flatten -> fc1 (2->2) -> relu -> fc2 (2->2): 12 parameters. */
static tp_model_t *tiny_model(void)
{
    tp_config_t cfg;
    tp_config_defaults(&cfg);
    snprintf(cfg.model_type, sizeof cfg.model_type, "mlp");
    cfg.n_hidden = 1;
    cfg.hidden[0] = 2;
    cfg.dropout = 0;
    tp_model_t *m = NULL;
    CHECK(tp_model_create(&cfg, g_be, 1, 1, 2, 2, 1, 1, &m) == TP_OK);
    if (!m) exit(1);
    CHECKF(m->numel == NP, "tiny model has %lld parameters", (long long)m->numel);
    if (m->numel != NP) exit(1);
    memcpy(m->param_buf, g_p0, sizeof g_p0);
    return m;
}

static void test_layout(void)
{
    tp_model_t *m = tiny_model();
    /* Decay runs: weight, bias, weight, bias. */
    CHECK(m->n_segments == 4);
    static const int64_t off[4] = {0, 4, 6, 10}, len[4] = {4, 2, 4, 2};
    for (int i = 0; i < m->n_segments && i < 4; i++) {
        CHECKF(m->segments[i].offset == off[i] && m->segments[i].numel == len[i] &&
                   m->segments[i].decay == (i % 2 == 0),
               "segment %d: offset %lld numel %lld decay %d", i, (long long)m->segments[i].offset,
               (long long)m->segments[i].numel, m->segments[i].decay);
    }
    tp_model_free(m);
}

/* |got - want| within a few fp32 ulps of O(1) values: the optimizer runs in fp32. */
static void expect_close(const char *what, int i, double got, double want)
{
    CHECKF(fabs(got - want) <= 1e-6 * fmax(1.0, fabs(want)), "%s[%d] = %.9g, expected %.9g", what,
           i, got, want);
}

static void test_sgd(bool nesterov)
{
    const double lr = 0.1, mu = 0.9, wd = 0.1;
    tp_config_t cfg;
    tp_config_defaults(&cfg);
    snprintf(cfg.optimizer, sizeof cfg.optimizer, "sgd");
    cfg.momentum = mu;
    cfg.weight_decay = wd;
    cfg.nesterov = nesterov;
    tp_model_t *m = tiny_model();
    tp_optim_t *o = NULL;
    CHECK(tp_optim_create(&cfg, m, NULL, &o) == TP_OK);
    if (!o) exit(1);

    double p[NP], buf[NP];
    for (int i = 0; i < NP; i++)
        p[i] = g_p0[i];
    for (int step = 0; step < 2; step++) {
        const float *g = step ? g_g2 : g_g1;
        memcpy(m->grad_buf, g, sizeof g_g1);
        tp_optim_step(o, (float)lr, TP_CLIP_NONE);
        for (int i = 0; i < NP; i++) {
            double gi = g[i] + (g_decay[i] ? wd : 0.0) * p[i];
            buf[i] = step == 0 ? gi : mu * buf[i] + gi;
            p[i] -= lr * (nesterov ? gi + mu * buf[i] : buf[i]);
            expect_close(nesterov ? "nesterov p" : "sgd p", i, m->param_buf[i], p[i]);
            expect_close(nesterov ? "nesterov buf" : "sgd buf", i, o->state[0][i], buf[i]);
        }
        /* By hand: weight p=0.5, g=0.2 then -0.4; bias p=0.3, same g, no decay.
         * plain:    w: g'=0.25, buf=0.25, p=0.475; g'=-0.3525, buf=-0.1275, p=0.48775
         *           b: buf=0.2, p=0.28; buf=-0.22, p=0.302
         * nesterov: w: p=0.5-0.1*(0.25+0.225)=0.4525; g'=-0.35475, buf=-0.12975, p=0.4996525
         *           b: p=0.3-0.1*(0.2+0.18)=0.262; buf=-0.22, p=0.262+0.1*0.598=0.3218 */
        static const double hand[2][2][2] = {{{0.475, 0.28}, {0.48775, 0.302}},
                                             {{0.4525, 0.262}, {0.4996525, 0.3218}}};
        expect_close("sgd by hand, weight", 0, m->param_buf[0], hand[nesterov][step][0]);
        expect_close("sgd by hand, bias", 4, m->param_buf[4], hand[nesterov][step][1]);
    }
    CHECK(o->t == 2);
    tp_optim_free(o);
    tp_model_free(m);
}

static void test_adamw(void)
{
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
    tp_config_t cfg;
    tp_config_defaults(&cfg);
    snprintf(cfg.optimizer, sizeof cfg.optimizer, "adamw");
    cfg.beta1 = b1;
    cfg.beta2 = b2;
    cfg.eps = eps;
    cfg.weight_decay = wd;
    tp_model_t *m = tiny_model();
    tp_optim_t *o = NULL;
    CHECK(tp_optim_create(&cfg, m, NULL, &o) == TP_OK);
    if (!o) exit(1);

    double p[NP], mm[NP] = {0}, vv[NP] = {0};
    for (int i = 0; i < NP; i++)
        p[i] = g_p0[i];
    for (int step = 0; step < 2; step++) {
        const float *g = step ? g_g2 : g_g1;
        memcpy(m->grad_buf, g, sizeof g_g1);
        tp_optim_step(o, (float)lr, TP_CLIP_NONE);
        double bc1 = 1 - pow(b1, step + 1), bc2 = 1 - pow(b2, step + 1);
        for (int i = 0; i < NP; i++) {
            mm[i] = b1 * mm[i] + (1 - b1) * g[i];
            vv[i] = b2 * vv[i] + (1 - b2) * (double)g[i] * g[i];
            double upd = (mm[i] / bc1) / (sqrt(vv[i] / bc2) + eps);
            p[i] -= lr * (upd + (g_decay[i] ? wd : 0.0) * p[i]);
            expect_close("adamw p", i, m->param_buf[i], p[i]);
            expect_close("adamw m", i, o->state[0][i], mm[i]);
            expect_close("adamw v", i, o->state[1][i], vv[i]);
        }
        /* By hand, weight p=0.5 (decays) and bias p=0.3 (does not), g=0.2 then -0.4:
         * step 1: m=0.02, v=4e-5, mhat=0.2, vhat=0.04, update=0.2/(0.2+1e-8)
         *         w: 0.5 - 0.01*(0.99999995 + 0.05) = 0.4895000005; b: 0.2900000005
         * step 2: m=-0.022, v=1.9996e-4, bc1=0.19, bc2=0.001999, update=-0.36610...
         *         w: 0.49267153565; b: 0.29366103565 */
        static const double hand[2][2] = {{0.4895000005, 0.2900000005},
                                          {0.49267153565, 0.29366103565}};
        expect_close("adamw by hand, weight", 0, m->param_buf[0], hand[step][0]);
        expect_close("adamw by hand, bias", 4, m->param_buf[4], hand[step][1]);
        expect_close("adamw by hand, m", 0, o->state[0][0], step ? -0.022 : 0.02);
        expect_close("adamw by hand, v", 0, o->state[1][0], step ? 1.9996e-4 : 4e-5);
    }
    tp_optim_free(o);
    tp_model_free(m);

    tp_optim_t *bad = NULL;
    snprintf(cfg.optimizer, sizeof cfg.optimizer, "adam");
    m = tiny_model();
    CHECK(tp_optim_create(&cfg, m, NULL, &bad) == TP_ERR_CONFIG && bad == NULL);
    tp_model_free(m);
}

static void test_schedule(void)
{
    tp_config_t cfg;
    tp_config_defaults(&cfg);
    cfg.lr = 0.1;
    cfg.min_lr = 0.01;
    cfg.warmup_steps = 4;
    snprintf(cfg.schedule, sizeof cfg.schedule, "cosine");
    const int64_t total = 104; /* 100 decay steps after warm-up */
    /* Warm-up: lr * (step + 1) / warmup. */
    CHECK(fabs(tp_lr_at(&cfg, 0, total) - 0.025) < 1e-12);
    CHECK(fabs(tp_lr_at(&cfg, 1, total) - 0.05) < 1e-12);
    CHECK(fabs(tp_lr_at(&cfg, 3, total) - 0.1) < 1e-12);
    /* Cosine: lr at its start, (lr + min_lr) / 2 halfway, min_lr at the end and after. */
    CHECK(fabs(tp_lr_at(&cfg, 4, total) - 0.1) < 1e-12);
    CHECKF(fabs(tp_lr_at(&cfg, 54, total) - 0.055) < 1e-12, "midpoint %.17g",
           tp_lr_at(&cfg, 54, total));
    double quarter = 0.01 + 0.5 * 0.09 * (1 + cos(M_PI / 4));
    CHECK(fabs(tp_lr_at(&cfg, 29, total) - quarter) < 1e-12);
    CHECKF(fabs(tp_lr_at(&cfg, 104, total) - 0.01) < 1e-12, "end %.17g",
           tp_lr_at(&cfg, 104, total));
    CHECK(fabs(tp_lr_at(&cfg, 500, total) - 0.01) < 1e-12);
    /* Monotone non-increasing after warm-up. */
    bool mono = true;
    for (int64_t s = 5; s <= total; s++)
        mono &= tp_lr_at(&cfg, s, total) <= tp_lr_at(&cfg, s - 1, total);
    CHECK(mono);

    /* No warm-up: starts at lr. */
    cfg.warmup_steps = 0;
    CHECK(fabs(tp_lr_at(&cfg, 0, 100) - 0.1) < 1e-12);
    CHECK(fabs(tp_lr_at(&cfg, 50, 100) - 0.055) < 1e-12);

    /* Constant: warm-up, then lr for ever. */
    cfg.warmup_steps = 4;
    snprintf(cfg.schedule, sizeof cfg.schedule, "constant");
    CHECK(fabs(tp_lr_at(&cfg, 1, total) - 0.05) < 1e-12);
    CHECK(tp_lr_at(&cfg, 4, total) == 0.1);
    CHECK(tp_lr_at(&cfg, 54, total) == 0.1);
    CHECK(tp_lr_at(&cfg, 104, total) == 0.1);
}

/* SGD without momentum or decay at learning rate 1 after tp_grad_norm: p0 - p is the gradient
 * the update used, clipped or not. */
static void clipped_sgd_step(tp_model_t *m, const float *g, double max_norm, double *norm,
                             float *used)
{
    tp_config_t cfg;
    tp_config_defaults(&cfg);
    snprintf(cfg.optimizer, sizeof cfg.optimizer, "sgd");
    cfg.momentum = 0;
    cfg.weight_decay = 0;
    tp_optim_t *o = NULL;
    CHECK(tp_optim_create(&cfg, m, NULL, &o) == TP_OK);
    if (!o) exit(1);
    memcpy(m->param_buf, g_p0, sizeof g_p0);
    memcpy(m->grad_buf, g, NP * sizeof(float));
    *norm = tp_grad_norm(m);
    tp_optim_step(o, 1.0f, (tp_clip_t){m->scalars + TP_SCALAR_GRAD_SUMSQ, max_norm});
    for (int i = 0; i < NP; i++)
        used[i] = g_p0[i] - m->param_buf[i];
    CHECKF(memcmp(m->grad_buf, g, NP * sizeof(float)) == 0,
           "max_norm %g: the clipped step changed the gradient buffer", max_norm);
    tp_optim_free(o);
}

static void test_clip(void)
{
    tp_model_t *m = tiny_model();
    float g[NP] = {3, 0, -4, 0, 12, 0, 0, 0, 0, 0, 0, 0}; /* norm 13 */
    float used[NP], want[NP];
    double n = 0;

    /* Below max_norm, at it, or disabled (0): the gradient as it is. */
    const double keep[] = {26.0, 13.0, 0.0};
    for (int k = 0; k < 3; k++) {
        clipped_sgd_step(m, g, keep[k], &n, used);
        CHECKF(n == 13.0, "norm %.17g", n);
        CHECKF(tp_test_rel_err(used, g, NP) <= 1e-6, "max_norm %g: update used %g %g %g", keep[k],
               used[0], used[2], used[4]);
    }

    /* Above: scaled by max_norm / norm (the 1e-6 in the divisor guards a zero norm). */
    clipped_sgd_step(m, g, 6.5, &n, used);
    CHECKF(n == 13.0, "norm before clipping %.17g", n);
    for (int i = 0; i < NP; i++)
        want[i] = g[i] * 0.5f;
    CHECKF(tp_test_rel_err(used, want, NP) <= 1e-6, "clipped gradient %g %g %g", used[0], used[2],
           used[4]);

    /* Random gradient: norm = sqrt(sum g^2). */
    tp_test_fill(m->grad_buf, NP, 3, 1.0f);
    double ss = 0;
    for (int i = 0; i < NP; i++)
        ss += (double)m->grad_buf[i] * m->grad_buf[i];
    CHECK(fabs(tp_grad_norm(m) - sqrt(ss)) <= 1e-12 * sqrt(ss));
    tp_model_free(m);
}

int main(void)
{
    /* Both host backends: the update formulas are the same, the loops are not. */
    const char *names[2] = {"ref", "cpu"};
    for (int b = 0; b < 2; b++) {
        if (tp_backend_create(names[b], 2, &g_be) != TP_OK) return 1;
        test_layout();
        test_sgd(false);
        test_sgd(true);
        test_adamw();
        test_clip();
        tp_backend_free(g_be);
    }
    test_schedule();
    return tp_test_finish("test_optim");
}
