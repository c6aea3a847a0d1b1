/* Image classifiers built from config (`mlp`, `cnn`): a chain of layers with one flat parameter
 * buffer, one flat gradient buffer (what is all-reduced, sharded and checkpointed) and
 * activations allocated once for the largest batch. */
#ifndef TP_MODEL_H
#define TP_MODEL_H

#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "layer.h"

#define TP_MODEL_MAX_LAYERS   32
#define TP_MODEL_MAX_SEGMENTS 64

/* A run of consecutive parameters with the same weight-decay setting. */
typedef struct tp_param_segment {
    int64_t offset, numel;
    bool decay;
} tp_param_segment_t;

typedef struct tp_model {
    tp_backend_t *be; /* not owned */
    char type[32];
    int n_layers;
    tp_layer_t layers[TP_MODEL_MAX_LAYERS];
    int in_ndim;
    int64_t in_shape[3], in_numel, n_classes, max_batch;

    int n_params;
    tp_param_t *params[TP_MODEL_MAX_LAYERS * TP_LAYER_MAX_PARAMS];
    int n_segments;
    tp_param_segment_t segments[TP_MODEL_MAX_SEGMENTS];
    int64_t numel;    /* total parameter count */
    float *param_buf; /* flat, numel */
    float *grad_buf;  /* flat, numel */

    float *act[TP_MODEL_MAX_LAYERS + 1]; /* act[0]: input batch; act[i+1]: output of layer i */
    float *dbuf[2];                      /* ping-pong gradient of activations */
    int32_t *labels;                     /* backend memory, max_batch */
    float *probs;                        /* backend memory, max_batch x n_classes */
    float *row_loss;                     /* backend memory, max_batch */
    float *host_loss;                    /* host, max_batch */
    float *host_probs;                   /* host, max_batch x n_classes */
    int32_t *host_labels;                /* host copy of the current batch's labels */
    double flops_per_example;            /* forward */
} tp_model_t;

/* Build `cfg->model_type` for inputs of shape (c, h, w) and n_classes outputs. */
tp_status_t tp_model_create(const tp_config_t *cfg, tp_backend_t *be, int64_t c, int64_t h,
                            int64_t w, int64_t n_classes, int64_t max_batch, tp_model_t **out);
void tp_model_free(tp_model_t *m);

/* Deterministic initialisation from seed (Kaiming-uniform weights, zero biases). */
tp_status_t tp_model_init_params(tp_model_t *m, uint64_t seed);

/* Copy a host batch (x: B x in_numel floats, y: B labels) to the backend. */
void tp_model_set_batch(tp_model_t *m, const float *x, const int32_t *y, int64_t B);
/* Forward and softmax cross-entropy; returns the SUM of per-example losses (double, summed in
 * example order). *correct (if non-NULL) counts argmax hits. Probabilities are then in
 * m->host_probs when fetch_probs. */
double tp_model_forward(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, int64_t *correct,
                        bool fetch_probs);
/* Backward of (scale * sum of losses): gradients ACCUMULATE into grad_buf. */
void tp_model_backward(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, float scale);
void tp_model_zero_grad(tp_model_t *m);

/* Print the layer table (rank 0). */
void tp_model_print(const tp_model_t *m);

#endif
