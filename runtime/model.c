/* Models: creation by type, the flat parameter and gradient buffers, initialisation and the
 * dispatch to each model family's ops (model_classifier.c, model_gpt.c). */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

tp_status_t tp_model_add_param(tp_model_t *m, tp_param_t *p)
{
    if (m->n_params == m->cap_params) {
        int cap = m->cap_params ? 2 * m->cap_params : 64;
        tp_param_t **np = realloc(m->params, (size_t)cap * sizeof *np);
        if (!np) return TP_ERR(TP_ERR_NOMEM, "out of memory registering parameters");
        m->params = np;
        m->cap_params = cap;
    }
    m->params[m->n_params++] = p;
    return TP_OK;
}

/* Lay parameters out in the flat buffers in registration order and group decay runs. */
static tp_status_t allocate_params(tp_model_t *m, int64_t pad_multiple)
{
    m->numel = 0;
    for (int i = 0; i < m->n_params; i++) {
        m->params[i]->offset = m->numel;
        m->numel += m->params[i]->numel;
    }
    if (pad_multiple < 1) pad_multiple = 1;
    m->numel_pad = (m->numel + pad_multiple - 1) / pad_multiple * pad_multiple;
    size_t bytes = (size_t)(m->numel_pad ? m->numel_pad : 1) * sizeof(float);
    m->param_buf = tp_backend_alloc(m->be, bytes, "parameters");
    m->grad_buf = tp_backend_alloc(m->be, bytes, "gradients");
    m->segments = tp_calloc((size_t)(m->n_params ? m->n_params : 1), sizeof *m->segments,
                            "parameter segments");
    if (!m->param_buf || !m->grad_buf || !m->segments) return TP_ERR_NOMEM;
    m->n_segments = 0;
    for (int i = 0; i < m->n_params; i++) {
        tp_param_t *p = m->params[i];
        p->data = m->param_buf + p->offset;
        p->grad = m->grad_buf + p->offset;
        tp_param_segment_t *last = m->n_segments ? &m->segments[m->n_segments - 1] : NULL;
        if (last && last->decay == p->decay)
            last->numel += p->numel;
        else
            m->segments[m->n_segments++] =
                (tp_param_segment_t){.offset = p->offset, .numel = p->numel, .decay = p->decay};
    }
    tp_op_fill(m->be, m->grad_buf, 0.0f, m->numel_pad);
    tp_op_fill(m->be, m->param_buf, 0.0f, m->numel_pad);
    return TP_OK;
}

tp_status_t tp_model_create(const tp_config_t *cfg, tp_backend_t *be, int64_t c, int64_t h,
                            int64_t w, int64_t n_classes, int64_t max_batch, int64_t pad_multiple,
                            tp_model_t **out)
{
    *out = NULL;
    tp_model_t *m = tp_calloc(1, sizeof *m, "model");
    if (!m) return TP_ERR_NOMEM;
    m->be = be;
    snprintf(m->type, sizeof m->type, "%.31s", cfg->model_type);
    m->max_batch = max_batch;
    tp_status_t st;
    if (strcmp(cfg->model_type, "mlp") == 0 || strcmp(cfg->model_type, "cnn") == 0)
        st = tp_classifier_build(m, cfg, c, h, w, n_classes);
    else if (strcmp(cfg->model_type, "gpt") == 0)
        st = tp_gpt_build(m, cfg);
    else
        st = TP_ERR(TP_ERR_CONFIG, "model.type '%s' is not one of mlp, cnn, gpt", cfg->model_type);
    if (st == TP_OK) st = allocate_params(m, pad_multiple);
    int64_t before = tp_backend_bytes_in_use(be);
    if (st == TP_OK) st = m->ops->prepare(m);
    if (st == TP_OK) {
        int64_t n = max_batch * m->targets_per_example;
        m->target_loss =
            tp_backend_alloc(be, (size_t)(n ? n : 1) * sizeof(float), "per-target losses");
        m->host_target_loss = tp_malloc((size_t)(n ? n : 1) * sizeof(float), "per-target losses");
        m->scalars = tp_backend_alloc(be, TP_N_SCALARS * sizeof(double), "loss and norm sums");
        if (!m->target_loss || !m->host_target_loss || !m->scalars) st = TP_ERR_NOMEM;
    }
    if (st == TP_OK) {
        double zero[TP_N_SCALARS] = {0};
        tp_backend_upload(be, m->scalars, zero, sizeof zero);
    }
    m->activation_bytes = tp_backend_bytes_in_use(be) - before;
    if (st != TP_OK) {
        tp_model_free(m);
        return st;
    }
    *out = m;
    return TP_OK;
}

void tp_model_free(tp_model_t *m)
{
    if (!m) return;
    if (m->ops && m->ops->release) m->ops->release(m);
    tp_backend_release(m->be, m->target_loss);
    tp_backend_release(m->be, m->scalars);
    free(m->host_target_loss);
    tp_backend_release(m->be, m->param_buf);
    tp_backend_release(m->be, m->grad_buf);
    free(m->params);
    free(m->segments);
    free(m);
}

tp_status_t tp_model_init_params(tp_model_t *m, uint64_t seed)
{
    float *host = tp_malloc((size_t)m->numel * sizeof(float), "initial parameters");
    if (!host) return TP_ERR_NOMEM;
    for (int i = 0; i < m->n_params; i++) {
        tp_param_t *p = m->params[i];
        tp_rng_t r;
        tp_rng_seed(&r, seed, 0x1000 + (uint64_t)i);
        float *d = host + p->offset;
        /* He/Kaiming uniform for ReLU-family nets: bound = sqrt(6 / fan_in). */
        float bound = p->init == TP_INIT_KAIMING_UNIFORM ? sqrtf(6.0f / (float)p->fan_in) : 0.0f;
        for (int64_t j = 0; j < p->numel; j++) {
            switch (p->init) {
            case TP_INIT_ZERO:
                d[j] = 0.0f;
                break;
            case TP_INIT_ONES:
                d[j] = 1.0f;
                break;
            case TP_INIT_NORMAL:
                d[j] = p->init_std * tp_rng_normal(&r);
                break;
            case TP_INIT_KAIMING_UNIFORM:
                d[j] = (2.0f * tp_rng_uniform(&r) - 1.0f) * bound;
                break;
            }
        }
    }
    tp_backend_upload(m->be, m->param_buf, host, (size_t)m->numel * sizeof(float));
    free(host);
    return TP_OK;
}

void tp_model_set_batch(tp_model_t *m, const float *x, const int32_t *y, int64_t B)
{
    m->ops->set_input(m, x, NULL, y, B);
}

void tp_model_set_tokens(tp_model_t *m, const int32_t *tokens, const int32_t *targets, int64_t B)
{
    m->ops->set_input(m, NULL, tokens, targets, B);
}

double tp_model_forward(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, int64_t *correct,
                        bool fetch_probs)
{
    int64_t n = m->ops->forward(m, ctx, B, correct, fetch_probs);
    if (n <= 0) return 0.0;
    tp_backend_download(m->be, m->host_target_loss, m->target_loss, (size_t)n * sizeof(float));
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += m->host_target_loss[i];
    return sum;
}

void tp_model_forward_accumulate(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B)
{
    int64_t n = m->ops->forward(m, ctx, B, NULL, false);
    if (n > 0) tp_op_sum_to(m->be, m->target_loss, n, m->scalars + TP_SCALAR_LOSS_SUM, true);
}

double tp_model_take_loss(tp_model_t *m)
{
    double sum = 0;
    tp_backend_download(m->be, &sum, m->scalars + TP_SCALAR_LOSS_SUM, sizeof sum);
    /* Reset by an op (an empty sum stores 0), not an upload: a step's uploads stay the same
     * every step, so the CUDA backend's staging settles in the first. */
    tp_op_sum_to(m->be, m->target_loss, 0, m->scalars + TP_SCALAR_LOSS_SUM, false);
    return sum;
}

void tp_model_backward(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, float scale)
{
    m->ops->backward(m, ctx, B, scale);
}

void tp_model_zero_grad(tp_model_t *m)
{
    tp_op_fill(m->be, m->grad_buf, 0.0f, m->numel_pad);
}

void tp_model_print(const tp_model_t *m)
{
    m->ops->print(m);
}
