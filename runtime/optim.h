/* Optimizers over the model's flat buffers (SGD with momentum, AdamW), the learning-rate
 * schedule and global-norm gradient clipping.
 *
 * State tensors (momentum; m and v) are flat buffers shaped like the parameters, so they are
 * checkpointed per tensor and can be sharded like the parameters later. */
#ifndef TP_OPTIM_H
#define TP_OPTIM_H

#include "config.h"
#include "model.h"
#include "shard.h"

#define TP_OPTIM_MAX_STATES 2

typedef struct tp_optim tp_optim_t;

typedef struct tp_optim_ops {
    const char *name;
    int n_states;
    const char *state_names[TP_OPTIM_MAX_STATES]; /* checkpoint groups "optim/<name>" */
    /* Update n parameters p from gradients g, clipped by clip, with state tensors state[i] (all
     * of length n). */
    void (*step_range)(tp_optim_t *o, float *p, const float *g, float *const *state, int64_t n,
                       bool decay, float lr, tp_clip_t clip);
} tp_optim_ops_t;

struct tp_optim {
    const tp_optim_ops_t *ops;
    tp_model_t *model;       /* not owned */
    const tp_shard_t *shard; /* ZeRO: the pieces this rank updates (not owned); NULL: all */
    int64_t state_numel;     /* per state tensor: numel_pad, or the shard's numel */
    float *state[TP_OPTIM_MAX_STATES];
    int64_t t; /* completed steps */
    float momentum, beta1, beta2, eps, weight_decay;
    bool nesterov;
};

/* shard: NULL for a replicated optimizer, else the pieces this rank owns (must outlive o); the
 * state then holds only those, in shard order. */
tp_status_t tp_optim_create(const tp_config_t *cfg, tp_model_t *m, const tp_shard_t *shard,
                            tp_optim_t **out);
void tp_optim_free(tp_optim_t *o);
/* One update with learning rate lr: of every parameter from m->grad_buf, or with a shard of its
 * pieces from m->grad_buf (ZeRO-1) or shard->grad (ZeRO-2). The gradient is read clipped by clip
 * (backend.h: TP_CLIP_NONE, or the global norm's square in backend memory and the largest norm
 * allowed); the gradient buffers are left as they are. */
void tp_optim_step(tp_optim_t *o, float lr, tp_clip_t clip);
/* Bytes of optimizer state held by this rank. */
int64_t tp_optim_state_bytes(const tp_optim_t *o);

/* Learning rate at `step` (0-based) of `total`: linear warm-up from lr/warmup to lr over
 * warmup_steps, then cosine decay to min_lr at total (or constant). */
double tp_lr_at(const tp_config_t *cfg, int64_t step, int64_t total);

/* Global L2 norm of the model's whole gradient buffer; its square is left in
 * m->scalars[TP_SCALAR_GRAD_SUMSQ], for a clipped tp_optim_step. Reads the norm back, so it waits
 * for the backend; the trainer's tp_grad_sync_norm computes it without waiting. */
double tp_grad_norm(tp_model_t *m);

extern const tp_optim_ops_t tp_optim_sgd_ops;
extern const tp_optim_ops_t tp_optim_adamw_ops;

#endif
