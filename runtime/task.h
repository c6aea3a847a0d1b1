/* Tasks: what a model is trained on and evaluated with. The trainer and `tulpar eval` talk to
 * this interface; each task owns its data and host batch buffers.
 *
 *   image  (data.dataset = "fashion-mnist"): IDX images and labels; eval = loss and accuracy
 *   tokens (data.dataset = "tokens"): token files cut into windows of seq_len + 1 tokens;
 *          eval = loss per token and bits per token (bits per byte for byte-level data)
 *
 * Training examples (images or windows) are addressed by index and handed out by the
 * distributed sampler (data.h), so the data position is just (epoch, step). */
#ifndef TP_TASK_H
#define TP_TASK_H

#include <stdbool.h>
#include <stdint.h>

#include "comm.h"
#include "config.h"
#include "model.h"

typedef struct tp_eval_result {
    int64_t n;             /* examples evaluated (all ranks) */
    int64_t targets;       /* predictions scored: examples, or tokens */
    double loss;           /* mean cross-entropy per target */
    double accuracy;       /* classifiers; NAN for language models */
    double bits_per_token; /* loss / ln 2 */
    bool byte_level;       /* tokens are bytes: bits per token = bits per byte */
    double seconds;
} tp_eval_result_t;

typedef struct tp_task tp_task_t;

typedef struct tp_task_ops {
    const char *name;
    /* Fill the host batch for training examples idx[0..count) and copy it into the model. */
    void (*load_batch)(tp_task_t *t, const int64_t *idx, int64_t count, tp_model_t *m);
    /* Evaluate on the task's evaluation split, sharded over the ranks, at most max_batches
     * batches of m->max_batch per rank (0 = all). */
    tp_status_t (*evaluate)(tp_task_t *t, tp_model_t *m, tp_comm_t *comm, int64_t max_batches,
                            tp_eval_result_t *out);
    void (*release)(tp_task_t *t);
} tp_task_ops_t;

struct tp_task {
    const tp_task_ops_t *ops;
    const tp_config_t *cfg;
    int64_t n_train;            /* training examples for the sampler */
    int64_t c, h, w, n_classes; /* model input shape (images) */
    int32_t vocab_size;         /* token data */
    /* Loss of a context-free model on the evaluation split: the cross-entropy of its tokens
     * under the training split's unigram distribution (add-one smoothed), in nats; NAN when
     * not applicable. A language model must get well below it. */
    double baseline_loss;
    void *impl;
};

/* Load the task named by cfg->dataset. split_train / need_eval choose what to read: `tulpar
 * eval` reads only the evaluation split ("test"/"val", or the training split when
 * eval_on_train). max_batch: host batch capacity in examples. */
tp_status_t tp_task_create(const tp_config_t *cfg, bool need_train, bool need_eval,
                           bool eval_on_train, int64_t max_batch, tp_task_t **out);
void tp_task_free(tp_task_t *t);

/* Implementations. */
tp_status_t tp_task_image_create(const tp_config_t *cfg, bool need_train, bool need_eval,
                                 bool eval_on_train, int64_t max_batch, tp_task_t *t);
tp_status_t tp_task_tokens_create(const tp_config_t *cfg, bool need_train, bool need_eval,
                                  bool eval_on_train, int64_t max_batch, tp_task_t *t);

#endif
