/* The image-classification task: Fashion-MNIST-style IDX files, evaluation on the test split. */
#include <stdlib.h>
#include <string.h>

#include "evaluate.h"
#include "task.h"
#include "trainer.h"

typedef struct image_task {
    tp_dataset_t *train, *eval;
    float *x;
    int32_t *y;
} image_task_t;

static void image_load_batch(tp_task_t *t, const int64_t *idx, int64_t count, tp_model_t *m)
{
    image_task_t *it = t->impl;
    tp_dataset_fill_batch(it->train, idx, count, it->x, it->y);
    tp_model_set_batch(m, it->x, it->y, count);
}

static tp_status_t image_evaluate(tp_task_t *t, tp_model_t *m, tp_comm_t *comm, int64_t max_batches,
                                  tp_eval_result_t *out)
{
    image_task_t *it = t->impl;
    if (!it->eval) return TP_ERR(TP_ERR_INTERNAL, "image task loaded without an evaluation split");
    return tp_evaluate(m, it->eval, comm, out);
}

static void image_release(tp_task_t *t)
{
    image_task_t *it = t->impl;
    if (!it) return;
    tp_dataset_free(it->train);
    if (it->eval != it->train) tp_dataset_free(it->eval);
    free(it->x);
    free(it->y);
    free(it);
}

static const tp_task_ops_t image_ops = {
    .name = "image",
    .load_batch = image_load_batch,
    .evaluate = image_evaluate,
    .release = image_release,
};

tp_status_t tp_task_image_create(const tp_config_t *cfg, bool need_train, bool need_eval,
                                 bool eval_on_train, int64_t max_batch, tp_task_t *t)
{
    image_task_t *it = tp_calloc(1, sizeof *it, "image task");
    if (!it) return TP_ERR_NOMEM;
    t->ops = &image_ops;
    t->impl = it;
    if (need_train || eval_on_train) TP_TRY(tp_load_dataset(cfg, "train", &it->train));
    if (need_eval) {
        if (eval_on_train)
            it->eval = it->train;
        else
            TP_TRY(tp_load_dataset(cfg, "t10k", &it->eval));
    }
    const tp_dataset_t *ref = it->train ? it->train : it->eval;
    if (it->train && it->eval &&
        (it->eval->rows != it->train->rows || it->eval->cols != it->train->cols))
        return TP_ERR(TP_ERR_DATA, "%s: test images are %lldx%lld, training images %lldx%lld",
                      cfg->data_dir, (long long)it->eval->rows, (long long)it->eval->cols,
                      (long long)it->train->rows, (long long)it->train->cols);
    t->n_train = it->train ? it->train->n : 0;
    t->c = 1;
    t->h = ref->rows;
    t->w = ref->cols;
    t->n_classes = ref->n_classes;
    if (it->eval && it->eval->n_classes > t->n_classes) t->n_classes = it->eval->n_classes;
    if (it->train && it->train->n_classes > t->n_classes) t->n_classes = it->train->n_classes;
    it->x = tp_malloc((size_t)(max_batch * t->h * t->w) * sizeof(float), "image batch");
    it->y = tp_malloc((size_t)max_batch * sizeof(int32_t), "label batch");
    return it->x && it->y ? TP_OK : TP_ERR_NOMEM;
}
