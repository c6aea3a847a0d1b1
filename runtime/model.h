/* Image classifiers built from config (`mlp`, `cnn`): a chain of layers with one flat parameter
 * buffer, one flat gradient buffer (what is all-reduced, sharded and checkpointed) and
 * activations allocated once for the largest batch. */
#ifndef TP_MODEL_H
#define TP_MODEL_H

#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "layer.h"

#define TP_MODEL_MAX_LAYERS 32

/* Doubles in tp_model_t.scalars (backend memory). */
enum { TP_SCALAR_LOSS_SUM = 0, TP_SCALAR_GRAD_SUMSQ = 1, TP_N_SCALARS = 2 };

/* A run of consecutive parameters with the same weight-decay setting. */
typedef struct tp_param_segment {
    int64_t offset, numel;
    bool decay;
} tp_param_segment_t;

typedef struct tp_model tp_model_t;

/* What each model family implements (model_classifier.c, model_gpt.c). */
typedef struct tp_model_ops {
    const char *kind;
    /* Allocate activations and scratch for m->max_batch examples (after parameters exist). */
    tp_status_t (*prepare)(tp_model_t *m);
    /* Copy a host batch to the backend: images x (classifiers) or tokens (language models),
     * and targets (labels, or next tokens); targets may be NULL for inference. */
    void (*set_input)(tp_model_t *m, const float *x, const int32_t *tokens, const int32_t *targets,
                      int64_t B);
    /* Queue the forward pass; with targets, the per-target losses go to m->target_loss and
     * the count is returned (0 without targets). Waits for the backend only for *correct or
     * fetch_probs. */
    int64_t (*forward)(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, int64_t *correct,
                       bool fetch_probs);
    void (*backward)(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, float scale);
    void (*release)(tp_model_t *m); /* activations and family state; not the flat buffers */
    void (*print)(const tp_model_t *m);
} tp_model_ops_t;

struct tp_model {
    const tp_model_ops_t *ops;
    tp_backend_t *be; /* not owned */
    char type[32];
    int64_t max_batch;
    int64_t targets_per_example; /* 1 for classifiers, seq_len for language models */
    double flops_per_example;    /* forward, per example (image or sequence) */
    int64_t activation_bytes;    /* what prepare allocated: activations, scratch, gradients of
                                    activations, for max_batch examples (and under bf16 the
                                    GPT's compute copy of the weights) */

    /* parameters, in registration order = flat-buffer order */
    int n_params, cap_params;
    tp_param_t **params; /* storage owned by the family (layers, GPT tensors) */
    int n_segments;
    tp_param_segment_t *segments;
    int64_t numel;     /* total parameter count */
    int64_t numel_pad; /* flat buffers' length: numel rounded up so ZeRO shards are equal */
    float *param_buf;  /* flat, numel_pad (the padding stays zero) */
    float *grad_buf;   /* flat, numel_pad */

    /* Losses and scalars in backend memory, so a training step never waits to read them. */
    float *target_loss;      /* max_batch x targets_per_example: the last forward's losses */
    float *host_target_loss; /* host copy for tp_model_forward */
    double *scalars;         /* TP_SCALAR_* below */

    /* Set by the trainer: backward calls it as gradients become final ("every gradient at flat
     * offset >= offset is complete for this pass"), so their reduction can start early. */
    void (*grads_ready)(void *arg, int64_t offset);
    void *grads_ready_arg;

    /* image classifiers */
    int n_layers;
    tp_layer_t layers[TP_MODEL_MAX_LAYERS];
    int in_ndim;
    int64_t in_shape[3], in_numel, n_classes;
    float *act[TP_MODEL_MAX_LAYERS + 1]; /* act[0]: input batch; act[i+1]: output of layer i */
    float *dbuf[2];                      /* ping-pong gradient of activations */
    int32_t *labels;                     /* backend memory, max_batch */
    float *probs;                        /* backend memory, max_batch x n_classes */
    float *host_probs;                   /* host, max_batch x n_classes */
    int32_t *host_labels;                /* host copy of the current batch's labels */
    bool have_labels;                    /* the current batch came with labels */

    /* language models (model_gpt.h) */
    struct tp_gpt *gpt;
};

/* Build `cfg->model_type`: mlp/cnn for inputs of shape (c, h, w) and n_classes outputs; gpt
 * from its own config keys (c, h, w and n_classes are ignored). max_batch: examples
 * (sequences for gpt) per forward. The flat buffers are padded to a multiple of pad_multiple
 * elements (the number of ranks sharding them; 1 for none). */
tp_status_t tp_model_create(const tp_config_t *cfg, tp_backend_t *be, int64_t c, int64_t h,
                            int64_t w, int64_t n_classes, int64_t max_batch, int64_t pad_multiple,
                            tp_model_t **out);
void tp_model_free(tp_model_t *m);

/* Deterministic initialisation from seed, per parameter as declared (tp_init_t). */
tp_status_t tp_model_init_params(tp_model_t *m, uint64_t seed);

/* Copy a host batch (x: B x in_numel floats, y: B labels) to the backend. */
void tp_model_set_batch(tp_model_t *m, const float *x, const int32_t *y, int64_t B);
/* Language models: tokens and targets [B, seq_len]. */
void tp_model_set_tokens(tp_model_t *m, const int32_t *tokens, const int32_t *targets, int64_t B);
/* Forward and cross-entropy; returns the SUM of per-target losses (double, summed in order):
 * B targets for classifiers, B x seq_len for language models. *correct (if non-NULL) counts
 * argmax hits. Probabilities are then in m->host_probs when fetch_probs (classifiers). Waits for
 * the backend (evaluation, inference, tests). */
double tp_model_forward(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, int64_t *correct,
                        bool fetch_probs);
/* Training's forward: queues the pass and adds its loss sum to the backend-side accumulator
 * (scalars[TP_SCALAR_LOSS_SUM]) without waiting; tp_model_take_loss reads it when a progress
 * line is due. Summed in double (in index order on ref and cpu, chunked on cuda), so it equals
 * tp_model_forward's sums to double rounding. */
void tp_model_forward_accumulate(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B);
/* The accumulated loss sum since the last take (waits for the backend), and reset it. */
double tp_model_take_loss(tp_model_t *m);
/* Backward of (scale * sum of losses): gradients ACCUMULATE into grad_buf. */
void tp_model_backward(tp_model_t *m, const tp_pass_ctx_t *ctx, int64_t B, float scale);
void tp_model_zero_grad(tp_model_t *m);

/* For model families' backward: gradients at flat offsets >= offset are final. */
static inline void tp_model_grads_ready(tp_model_t *m, int64_t offset)
{
    if (m->grads_ready) m->grads_ready(m->grads_ready_arg, offset);
}

/* Print the model summary (rank 0). */
void tp_model_print(const tp_model_t *m);

/* For model families: register a parameter (before the flat buffers are allocated). */
tp_status_t tp_model_add_param(tp_model_t *m, tp_param_t *p);
tp_status_t tp_classifier_build(tp_model_t *m, const tp_config_t *cfg, int64_t c, int64_t h,
                                int64_t w, int64_t n_classes);
tp_status_t tp_gpt_build(tp_model_t *m, const tp_config_t *cfg);

#endif
