/* Image classifiers (`mlp`, `cnn`): a chain of layers (layer.h) with activations allocated once
 * for the largest batch, softmax cross-entropy on top. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

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

static tp_status_t classifier_prepare(tp_model_t *m)
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
    m->host_probs = tp_malloc((size_t)(B * m->n_classes) * sizeof(float), "probs");
    m->host_labels = tp_malloc((size_t)B * sizeof(int32_t), "labels");
    if (!m->labels || !m->probs || !m->host_probs || !m->host_labels) return TP_ERR_NOMEM;
    return TP_OK;
}

static void classifier_set_input(tp_model_t *m, const float *x, const int32_t *tokens,
                                 const int32_t *y, int64_t B)
{
    tp_backend_upload(m->be, m->act[0], x, (size_t)(B * m->in_numel) * sizeof(float));
    m->have_labels = y != NULL;
    /* Without labels (inference) the loss is not wanted, but softmax-xent still reads a label
     * per row: give it class 0 rather than whatever the buffer held. */
    if (y)
        memcpy(m->host_labels, y, (size_t)B * sizeof(int32_t));
    else
        memset(m->host_labels, 0, (size_t)B * sizeof(int32_t));
    tp_backend_upload(m->be, m->labels, m->host_labels, (size_t)B * sizeof(int32_t));
}

static int64_t classifier_forward(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B,
                                  int64_t *correct, bool fetch_probs)
{
    for (int i = 0; i < m->n_layers; i++) {
        tp_layer_t *l = &m->layers[i];
        l->ops->forward(l, ctx, m->act[i], m->act[i + 1], B);
    }
    int64_t C = m->n_classes;
    tp_op_softmax_xent_forward(m->be, m->act[m->n_layers], m->labels, m->probs, m->target_loss, B,
                               C);
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
    return m->have_labels ? B : 0;
}

static void classifier_backward(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, float scale)
{
    int cur = 0;
    float *dy = m->dbuf[cur];
    tp_op_softmax_xent_backward(m->be, m->probs, m->labels, dy, B, m->n_classes, scale);
    for (int i = m->n_layers - 1; i >= 0; i--) {
        tp_layer_t *l = &m->layers[i];
        float *dx = i > 0 ? m->dbuf[1 - cur] : NULL;
        l->ops->backward(l, ctx, m->act[i], m->act[i + 1], dy, dx, B);
        if (l->n_params > 0) tp_model_grads_ready(m, l->params[0].offset);
        cur = 1 - cur;
        dy = dx;
    }
}

static void classifier_release(tp_model_t *m)
{
    for (int i = 0; i < m->n_layers; i++)
        tp_layer_release(&m->layers[i]);
    for (int i = 0; i <= m->n_layers; i++)
        tp_backend_release(m->be, m->act[i]);
    for (int i = 0; i < 2; i++)
        tp_backend_release(m->be, m->dbuf[i]);
    tp_backend_release(m->be, m->labels);
    tp_backend_release(m->be, m->probs);
    free(m->host_probs);
    free(m->host_labels);
}

static void classifier_print(const tp_model_t *m)
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

static const tp_model_ops_t classifier_ops = {
    .kind = "classifier",
    .prepare = classifier_prepare,
    .set_input = classifier_set_input,
    .forward = classifier_forward,
    .backward = classifier_backward,
    .release = classifier_release,
    .print = classifier_print,
};

tp_status_t tp_classifier_build(tp_model_t *m, const tp_config_t *cfg, int64_t c, int64_t h,
                                int64_t w, int64_t n_classes)
{
    m->ops = &classifier_ops;
    m->targets_per_example = 1;
    m->in_ndim = 3;
    m->in_shape[0] = c;
    m->in_shape[1] = h;
    m->in_shape[2] = w;
    m->in_numel = c * h * w;
    m->n_classes = n_classes;
    if (strcmp(cfg->model_type, "mlp") == 0)
        TP_TRY(build_mlp(m, cfg));
    else
        TP_TRY(build_cnn(m, cfg));
    m->flops_per_example = 0;
    for (int i = 0; i < m->n_layers; i++) {
        m->flops_per_example += m->layers[i].flops_per_example;
        for (int j = 0; j < m->layers[i].n_params; j++)
            TP_TRY(tp_model_add_param(m, &m->layers[i].params[j]));
    }
    return TP_OK;
}
