/* Layers: forward and backward over a batch, parameters declared by shape and filled in by the
 * model (which puts every parameter in one flat buffer and every gradient in another).
 *
 * Shapes are per example: (features) or (C, H, W). Activations are [B, in_numel] in and
 * [B, out_numel] out, NCHW for images. backward ACCUMULATES parameter gradients and OVERWRITES
 * dx (dx is NULL for the first layer: nothing to propagate). Scratch memory is allocated once by
 * `prepare` for the largest batch; forward and backward never allocate. */
#ifndef TP_LAYER_H
#define TP_LAYER_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"

#define TP_LAYER_MAX_PARAMS 2

typedef enum { TP_INIT_ZERO, TP_INIT_ONES, TP_INIT_NORMAL, TP_INIT_KAIMING_UNIFORM } tp_init_t;

typedef struct tp_param {
    char name[64]; /* "fc1.weight" */
    int ndim;
    int64_t shape[4];
    int64_t numel;
    int64_t fan_in; /* for initialisation */
    tp_init_t init;
    float init_std; /* TP_INIT_NORMAL */
    bool decay;     /* weight decay applies (weights yes, biases no) */
    float *data;    /* into the model's flat parameter buffer */
    float *grad;    /* into the model's flat gradient buffer */
    int64_t offset; /* element offset in the flat buffers */
} tp_param_t;

/* What a forward/backward pass needs to know beyond its inputs. */
typedef struct tp_pass_ctx {
    bool train;        /* dropout active */
    uint64_t seed;     /* run seed */
    uint64_t step;     /* optimizer step: part of the dropout stream */
    int64_t first_row; /* global position of this rank's first example (see tp_sampler_batch) */
} tp_pass_ctx_t;

typedef struct tp_layer tp_layer_t;

typedef struct tp_layer_ops {
    const char *kind;
    tp_status_t (*prepare)(tp_layer_t *l, int64_t max_batch); /* optional scratch */
    void (*forward)(tp_layer_t *l, const tp_pass_ctx_t *ctx, const float *x, float *y, int64_t B);
    void (*backward)(tp_layer_t *l, const tp_pass_ctx_t *ctx, const float *x, const float *y,
                     const float *dy, float *dx, int64_t B);
    void (*release)(tp_layer_t *l); /* optional: free scratch */
} tp_layer_ops_t;

struct tp_layer {
    const tp_layer_ops_t *ops;
    tp_backend_t *be;
    char name[32];
    int index; /* position in the model: dropout stream id */
    int in_ndim, out_ndim;
    int64_t in_shape[3], out_shape[3];
    int64_t in_numel, out_numel;
    int n_params;
    tp_param_t params[TP_LAYER_MAX_PARAMS];
    double flops_per_example; /* forward; backward counted as 2x by the model */
    /* layer-specific settings and scratch */
    tp_act_t act;
    float p;
    int64_t k;
    void *scratch[3];
};

/* Constructors; `in` is the per-example input shape. They fill shapes, params and flops. */
tp_status_t tp_layer_linear(tp_layer_t *l, const char *name, int64_t in, int64_t out);
tp_status_t tp_layer_activation(tp_layer_t *l, const char *name, tp_act_t act, int ndim,
                                const int64_t *shape);
tp_status_t tp_layer_dropout(tp_layer_t *l, const char *name, float p, int ndim,
                             const int64_t *shape);
tp_status_t tp_layer_conv2d(tp_layer_t *l, const char *name, int64_t cin, int64_t h, int64_t w,
                            int64_t cout, int64_t k);
tp_status_t tp_layer_maxpool2d(tp_layer_t *l, const char *name, int64_t c, int64_t h, int64_t w,
                               int64_t k);
tp_status_t tp_layer_flatten(tp_layer_t *l, const char *name, int64_t c, int64_t h, int64_t w);

/* Frees scratch (parameters belong to the model). */
void tp_layer_release(tp_layer_t *l);

/* Shared by constructors. */
void tp_layer_set_shapes(tp_layer_t *l, int in_ndim, const int64_t *in, int out_ndim,
                         const int64_t *out);
tp_param_t *tp_layer_add_param(tp_layer_t *l, const char *suffix, int ndim, const int64_t *shape,
                               int64_t fan_in, tp_init_t init, bool decay);

#endif
