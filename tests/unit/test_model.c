/* Whole models on the "cpu" backend against the "ref" oracle from the same seed: forward loss,
 * every gradient, and parameters after three AdamW steps; and the cpu backend run twice gives
 * bitwise-identical parameters (deterministic for a fixed thread count). Built with
 * TP_CUDA_EMULATED (tests/emu), the same on the CUDA kernels run on the CPU instead of "cpu". */
#include "model.h"
#include "optim.h"
#include "test_backends.h"

#define B     3
#define STEPS 3

typedef struct run {
    double loss[STEPS];
    float *grad0;  /* gradient of the first step, before the update */
    float *params; /* after STEPS updates */
    int64_t numel;
} run_t;

/* Train STEPS AdamW steps on fixed random batches of 1x4x4 images, 3 classes. */
static void train(const tp_config_t *cfg, tp_backend_t *be, run_t *r)
{
    memset(r, 0, sizeof *r);
    tp_model_t *m = NULL;
    tp_optim_t *o = NULL;
    CHECK(tp_model_create(cfg, be, 1, 4, 4, 3, B, 1, &m) == TP_OK);
    if (!m) exit(1);
    CHECK(tp_model_init_params(m, (uint64_t)cfg->seed) == TP_OK);
    CHECK(tp_optim_create(cfg, m, NULL, &o) == TP_OK);
    if (!o) exit(1);
    r->numel = m->numel;
    size_t bytes = (size_t)m->numel * sizeof(float);
    r->grad0 = malloc(bytes);
    r->params = malloc(bytes);
    if (!r->grad0 || !r->params) exit(2);
    for (int step = 0; step < STEPS; step++) {
        float x[B * 16];
        int32_t y[B];
        tp_test_fill(x, B * 16, 1000 + (uint64_t)step, 1.0f);
        for (int b = 0; b < B; b++)
            y[b] = (step + b) % 3;
        tp_model_set_batch(m, x, y, B);
        tp_pass_ctx_t ctx = {.train = true, .seed = 42, .step = (uint64_t)step, .first_row = 0};
        tp_model_zero_grad(m);
        r->loss[step] = tp_model_forward(m, &ctx, B, NULL, false);
        tp_model_backward(m, &ctx, B, 1.0f / B);
        if (step == 0) tp_backend_download(be, r->grad0, m->grad_buf, bytes);
        tp_optim_step(o, (float)cfg->lr, TP_CLIP_NONE);
    }
    tp_backend_download(be, r->params, m->param_buf, bytes);
    tp_optim_free(o);
    tp_model_free(m);
}

static void run_free(run_t *r)
{
    free(r->grad0);
    free(r->params);
}

static void compare(const char *what, const tp_config_t *cfg, tp_backend_t *ref, tp_backend_t *cpu)
{
    run_t rr, rc, rc2;
    train(cfg, ref, &rr);
    train(cfg, cpu, &rc);
    train(cfg, cpu, &rc2);
    CHECK(rr.numel == rc.numel);
    size_t n = (size_t)rr.numel;
    /* Differences come only from fp32 summation order (BLAS vs double-accumulating loops). */
    for (int s = 0; s < STEPS; s++)
        CHECKF(fabs(rc.loss[s] - rr.loss[s]) <= 1e-5 * fabs(rr.loss[s]),
               "%s: step %d loss %s %.9g ref %.9g", what, s, tp_backend_name(cpu), rc.loss[s],
               rr.loss[s]);
    double eg = tp_test_rel_err(rc.grad0, rr.grad0, n);
    CHECKF(eg <= 1e-4, "%s: gradient error %.3g relative to its max", what, eg);
    /* AdamW divides by sqrt(v), so gradient differences pass through roughly unchanged in
     * relative terms: parameters stay within 1e-4 of their size after a few steps. */
    double ep = tp_test_rel_err(rc.params, rr.params, n);
    CHECKF(ep <= 1e-4, "%s: parameters after %d AdamW steps differ by %.3g", what, STEPS, ep);
    /* The steps really moved the parameters (else the comparison above proves little). */
    run_t r0;
    tp_config_t c0 = *cfg;
    c0.lr = 1e-30;
    train(&c0, ref, &r0);
    double moved = tp_test_rel_err(rr.params, r0.params, n);
    CHECKF(moved > 1e-3, "%s: AdamW moved parameters by only %.3g", what, moved);
    CHECKF(memcmp(rc.params, rc2.params, n * sizeof(float)) == 0 &&
               memcmp(rc.grad0, rc2.grad0, n * sizeof(float)) == 0,
           "%s: %s backend not bitwise repeatable", what, tp_backend_name(cpu));
    if (getenv("TP_TEST_VERBOSE"))
        printf("  %s: %zu params, loss %.6f / %.6f, grad err %.3g, param err %.3g\n", what, n,
               rr.loss[0], rc.loss[0], eg, ep);
    run_free(&rr), run_free(&rc), run_free(&rc2), run_free(&r0);
}

static void base_config(tp_config_t *cfg)
{
    tp_config_defaults(cfg);
    snprintf(cfg->optimizer, sizeof cfg->optimizer, "adamw");
    cfg->lr = 1e-2;
    cfg->weight_decay = 0.01;
    cfg->seed = 1234;
    snprintf(cfg->activation, sizeof cfg->activation, "gelu");
    cfg->dropout = 0;
}

int main(void)
{
    tp_backend_t *ref = NULL, *cpu = NULL; /* cpu: the backend under test */
#ifdef TP_CUDA_EMULATED
    if (tp_backend_create("ref", 1, &ref) != TP_OK || tp_emu_backend_create(&cpu) != TP_OK)
        return 1;
#else
    if (tp_backend_create("ref", 1, &ref) != TP_OK || tp_backend_create("cpu", 2, &cpu) != TP_OK)
        return 1;
#endif

    tp_config_t cfg;
    base_config(&cfg);
    snprintf(cfg.model_type, sizeof cfg.model_type, "mlp");
    cfg.n_hidden = 2;
    cfg.hidden[0] = 5;
    cfg.hidden[1] = 4;
    compare("mlp", &cfg, ref, cpu);

    /* Dropout masks are a function of position, so they agree across backends too. */
    snprintf(cfg.activation, sizeof cfg.activation, "relu");
    cfg.dropout = 0.25;
    compare("mlp relu dropout", &cfg, ref, cpu);

    base_config(&cfg);
    snprintf(cfg.model_type, sizeof cfg.model_type, "cnn");
    cfg.n_channels = 2;
    cfg.channels[0] = 2;
    cfg.channels[1] = 3;
    cfg.kernel = 3;
    cfg.fc = 6;
    compare("cnn", &cfg, ref, cpu);

    tp_backend_free(cpu);
    tp_backend_free(ref);
    return tp_test_finish("test_model");
}
