/* Model construction from config, flat buffers, and the forward/backward chain. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

static tp_layer_t *next_layer(tp_model_t *m)
{
    if (m->n_layers >= TP_MODEL_MAX_LAYERS) return NULL;
    tp_layer_t *l = &m->layers[m->n_layers];
    memset(l, 0, sizeof *l);
    l->be = m->be;
    l->index = m->n_layers++;
    return l;
}

#define ADD(call)                                                                                  \
    do {                                                                                           \
        tp_layer_t *l_ = next_layer(m);                                                            \
        if (!l_)                                                                                   \
            return TP_ERR(TP_ERR_CONFIG, "model has more than %d layers", TP_MODEL_MAX_LAYERS);    \
        TP_TRY(call);                                                                              \
    } while (0)

static tp_act_t act_of(const tp_config_t *cfg)
{
    return strcmp(cfg->activation, "gelu") == 0 ? TP_ACT_GELU : TP_ACT_RELU;
}

static tp_status_t build_mlp(tp_model_t *m, const tp_config_t *cfg)
{
    int64_t width = m->in_numel;
    if (m->in_ndim == 3) {
        ADD(tp_layer_flatten(l_, "flatten", m->in_shape[0], m->in_shape[1], m->in_shape[2]));
    }
    char name[32];
    for (int i = 0; i < cfg->n_hidden; i++) {
        snprintf(name, sizeof name, "fc%d", i + 1);
        ADD(tp_layer_linear(l_, name, width, cfg->hidden[i]));
        width = cfg->hidden[i];
        snprintf(name, sizeof name, "act%d", i + 1);
        ADD(tp_layer_activation(l_, name, act_of(cfg), 1, &width));
        if (cfg->dropout > 0) {
            snprintf(name, sizeof name, "drop%d", i + 1);
            ADD(tp_layer_dropout(l_, name, (float)cfg->dropout, 1, &width));
        }
    }
    snprintf(name, sizeof name, "fc%d", cfg->n_hidden + 1);
    ADD(tp_layer_linear(l_, name, width, m->n_classes));
    return TP_OK;
}

/* conv-act-pool, conv-act-pool, flatten, fc-act-dropout, fc */
static tp_status_t build_cnn(tp_model_t *m, const tp_config_t *cfg)
{
    if (m->in_ndim != 3)
        return TP_ERR(TP_ERR_CONFIG, "model.type = \"cnn\" needs image input (C, H, W)");
    int64_t c = m->in_shape[0], h = m->in_shape[1], w = m->in_shape[2];
    char name[32];
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "conv%d", i + 1);
        ADD(tp_layer_conv2d(l_, name, c, h, w, cfg->channels[i], cfg->kernel));
        c = cfg->channels[i];
        int64_t shape[3] = {c, h, w};
        snprintf(name, sizeof name, "act%d", i + 1);
        ADD(tp_layer_activation(l_, name, act_of(cfg), 3, shape));
        snprintf(name, sizeof name, "pool%d", i + 1);
        ADD(tp_layer_maxpool2d(l_, name, c, h, w, 2));
        h /= 2;
        w /= 2;
    }
    ADD(tp_layer_flatten(l_, "flatten", c, h, w));
    ADD(tp_layer_linear(l_, "fc1", c * h * w, cfg->fc));
    int64_t fc = cfg->fc;
    ADD(tp_layer_activation(l_, "act3", act_of(cfg), 1, &fc));
    if (cfg->dropout > 0) ADD(tp_layer_dropout(l_, "drop3", (float)cfg->dropout, 1, &fc));
    ADD(tp_layer_linear(l_, "fc2", fc, m->n_classes));
    return TP_OK;
}

#undef ADD

/* Lay parameters out in the flat buffers in layer order and group decay runs. */
static tp_status_t allocate_params(tp_model_t *m)
{
    m->numel = 0;
    m->n_params = 0;
    for (int i = 0; i < m->n_layers; i++)
        for (int j = 0; j < m->layers[i].n_params; j++) {
            tp_param_t *p = &m->layers[i].params[j];
            p->offset = m->numel;
            m->numel += p->numel;
            m->params[m->n_params++] = p;
        }
    size_t bytes = (size_t)m->numel * sizeof(float);
    m->param_buf = tp_backend_alloc(m->be, bytes, "parameters");
    m->grad_buf = tp_backend_alloc(m->be, bytes, "gradients");
    if (!m->param_buf || !m->grad_buf) return TP_ERR_NOMEM;
    m->n_segments = 0;
    for (int i = 0; i < m->n_params; i++) {
        tp_param_t *p = m->params[i];
        p->data = m->param_buf + p->offset;
        p->grad = m->grad_buf + p->offset;
        tp_param_segment_t *last = m->n_segments ? &m->segments[m->n_segments - 1] : NULL;
        if (last && last->decay == p->decay) {
            last->numel += p->numel;
        } else {
            if (m->n_segments == TP_MODEL_MAX_SEGMENTS)
                return TP_ERR(TP_ERR_INTERNAL, "too many parameter segments");
            m->segments[m->n_segments++] =
                (tp_param_segment_t){.offset = p->offset, .numel = p->numel, .decay = p->decay};
        }
    }
    tp_op_fill(m->be, m->grad_buf, 0.0f, m->numel);
    return TP_OK;
}

static tp_status_t allocate_activations(tp_model_t *m)
{
    int64_t B = m->max_batch, widest = m->in_numel;
    m->act[0] = tp_backend_alloc(m->be, (size_t)(B * m->in_numel) * sizeof(float), "input batch");
    if (!m->act[0]) return TP_ERR_NOMEM;
    for (int i = 0; i < m->n_layers; i++) {
        tp_layer_t *l = &m->layers[i];
        if (l->out_numel > widest) widest = l->out_numel;
        m->act[i + 1] =
            tp_backend_alloc(m->be, (size_t)(B * l->out_numel) * sizeof(float), "activations");
        if (!m->act[i + 1]) return TP_ERR_NOMEM;
        if (l->ops->prepare) TP_TRY(l->ops->prepare(l, B));
    }
    for (int i = 0; i < 2; i++) {
        m->dbuf[i] = tp_backend_alloc(m->be, (size_t)(B * widest) * sizeof(float), "gradients");
        if (!m->dbuf[i]) return TP_ERR_NOMEM;
    }
    m->labels = tp_backend_alloc(m->be, (size_t)B * sizeof(int32_t), "labels");
    m->probs = tp_backend_alloc(m->be, (size_t)(B * m->n_classes) * sizeof(float), "probs");
    m->row_loss = tp_backend_alloc(m->be, (size_t)B * sizeof(float), "losses");
    m->host_loss = tp_malloc((size_t)B * sizeof(float), "losses");
    m->host_probs = tp_malloc((size_t)(B * m->n_classes) * sizeof(float), "probs");
    m->host_labels = tp_malloc((size_t)B * sizeof(int32_t), "labels");
    if (!m->labels || !m->probs || !m->row_loss || !m->host_loss || !m->host_probs ||
        !m->host_labels)
        return TP_ERR_NOMEM;
    return TP_OK;
}

tp_status_t tp_model_create(const tp_config_t *cfg, tp_backend_t *be, int64_t c, int64_t h,
                            int64_t w, int64_t n_classes, int64_t max_batch, tp_model_t **out)
{
    *out = NULL;
    tp_model_t *m = tp_calloc(1, sizeof *m, "model");
    if (!m) return TP_ERR_NOMEM;
    m->be = be;
    snprintf(m->type, sizeof m->type, "%.31s", cfg->model_type);
    m->in_ndim = 3;
    m->in_shape[0] = c;
    m->in_shape[1] = h;
    m->in_shape[2] = w;
    m->in_numel = c * h * w;
    m->n_classes = n_classes;
    m->max_batch = max_batch;
    tp_status_t st;
    if (strcmp(cfg->model_type, "mlp") == 0)
        st = build_mlp(m, cfg);
    else if (strcmp(cfg->model_type, "cnn") == 0)
        st = build_cnn(m, cfg);
    else
        st = TP_ERR(TP_ERR_CONFIG, "model.type '%s' is not an image classifier (mlp, cnn)",
                    cfg->model_type);
    if (st == TP_OK) st = allocate_params(m);
    if (st == TP_OK) st = allocate_activations(m);
    if (st != TP_OK) {
        tp_model_free(m);
        return st;
    }
    m->flops_per_example = 0;
    for (int i = 0; i < m->n_layers; i++)
        m->flops_per_example += m->layers[i].flops_per_example;
    *out = m;
    return TP_OK;
}

void tp_model_free(tp_model_t *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_layers; i++)
        tp_layer_release(&m->layers[i]);
    for (int i = 0; i <= m->n_layers; i++)
        tp_backend_release(m->be, m->act[i]);
    for (int i = 0; i < 2; i++)
        tp_backend_release(m->be, m->dbuf[i]);
    tp_backend_release(m->be, m->param_buf);
    tp_backend_release(m->be, m->grad_buf);
    tp_backend_release(m->be, m->labels);
    tp_backend_release(m->be, m->probs);
    tp_backend_release(m->be, m->row_loss);
    free(m->host_loss);
    free(m->host_probs);
    free(m->host_labels);
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
        for (int64_t j = 0; j < p->numel; j++)
            d[j] = p->init == TP_INIT_ZERO ? 0.0f : (2.0f * tp_rng_uniform(&r) - 1.0f) * bound;
    }
    tp_backend_upload(m->be, m->param_buf, host, (size_t)m->numel * sizeof(float));
    free(host);
    return TP_OK;
}

void tp_model_set_batch(tp_model_t *m, const float *x, const int32_t *y, int64_t B)
{
    tp_backend_upload(m->be, m->act[0], x, (size_t)(B * m->in_numel) * sizeof(float));
    if (!y) return;
    tp_backend_upload(m->be, m->labels, y, (size_t)B * sizeof(int32_t));
    memcpy(m->host_labels, y, (size_t)B * sizeof(int32_t));
}

double tp_model_forward(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, int64_t *correct,
                        bool fetch_probs)
{
    for (int i = 0; i < m->n_layers; i++) {
        tp_layer_t *l = &m->layers[i];
        l->ops->forward(l, ctx, m->act[i], m->act[i + 1], B);
    }
    int64_t C = m->n_classes;
    tp_op_softmax_xent_forward(m->be, m->act[m->n_layers], m->labels, m->probs, m->row_loss, B, C);
    tp_backend_download(m->be, m->host_loss, m->row_loss, (size_t)B * sizeof(float));
    double sum = 0;
    for (int64_t b = 0; b < B; b++)
        sum += m->host_loss[b];
    if (correct || fetch_probs)
        tp_backend_download(m->be, m->host_probs, m->probs, (size_t)(B * C) * sizeof(float));
    if (correct) {
        const int32_t *labels = m->host_labels;
        int64_t hits = 0;
        for (int64_t b = 0; b < B; b++) {
            const float *p = m->host_probs + b * C;
            int64_t best = 0;
            for (int64_t c = 1; c < C; c++)
                if (p[c] > p[best]) best = c;
            hits += best == labels[b];
        }
        *correct = hits;
    }
    return sum;
}

void tp_model_backward(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, float scale)
{
    int cur = 0;
    float *dy = m->dbuf[cur];
    tp_op_softmax_xent_backward(m->be, m->probs, m->labels, dy, B, m->n_classes, scale);
    for (int i = m->n_layers - 1; i >= 0; i--) {
        tp_layer_t *l = &m->layers[i];
        float *dx = i > 0 ? m->dbuf[1 - cur] : NULL;
        l->ops->backward(l, ctx, m->act[i], m->act[i + 1], dy, dx, B);
        cur = 1 - cur;
        dy = dx;
    }
}

void tp_model_zero_grad(tp_model_t *m)
{
    tp_op_fill(m->be, m->grad_buf, 0.0f, m->numel);
}

void tp_model_print(const tp_model_t *m)
{
    tp_log_info("model %s: %lld parameters, %.2f MFLOP forward per example", m->type,
                (long long)m->numel, m->flops_per_example / 1e6);
    for (int i = 0; i < m->n_layers; i++) {
        const tp_layer_t *l = &m->layers[i];
        char shape[64] = "";
        int off = 0;
        for (int d = 0; d < l->out_ndim; d++)
            off += snprintf(shape + off, sizeof shape - (size_t)off, d ? "x%lld" : "%lld",
                            (long long)l->out_shape[d]);
        int64_t np = 0;
        for (int j = 0; j < l->n_params; j++)
            np += l->params[j].numel;
        tp_log_info("  %-8s %-10s out %-12s params %lld", l->name, l->ops->kind, shape,
                    (long long)np);
    }
}
