/* Task creation by data.dataset. */
#include "task.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

tp_status_t tp_task_create(const tp_config_t *cfg, bool need_train, bool need_eval,
                           bool eval_on_train, int64_t max_batch, tp_task_t **out)
{
    *out = NULL;
    tp_task_t *t = tp_calloc(1, sizeof *t, "task");
    if (!t) return TP_ERR_NOMEM;
    t->cfg = cfg;
    t->baseline_loss = NAN;
    tp_status_t st;
    if (strcmp(cfg->dataset, "tokens") == 0)
        st = tp_task_tokens_create(cfg, need_train, need_eval, eval_on_train, max_batch, t);
    else
        st = tp_task_image_create(cfg, need_train, need_eval, eval_on_train, max_batch, t);
    if (st != TP_OK) {
        tp_task_free(t);
        return st;
    }
    *out = t;
    return TP_OK;
}

void tp_task_free(tp_task_t *t)
{
    if (!t) return;
    if (t->ops && t->ops->release) t->ops->release(t);
    free(t);
}
