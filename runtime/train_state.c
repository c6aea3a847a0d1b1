/* Training state <-> checkpoint: maps the model's flat buffers to named per-tensor datasets. */
#include "train_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tp_train_state {
    tp_model_t *m;
    tp_optim_t *o;
    int n_groups;
    char group_names[1 + TP_OPTIM_MAX_STATES][32];
    bool staged;                          /* backend memory is not host memory: copies in host[] */
    float *host[1 + TP_OPTIM_MAX_STATES]; /* staging copies, or the buffers themselves */
    float *device[1 + TP_OPTIM_MAX_STATES]; /* the backend buffers they mirror */
    tp_ckpt_tensor_t *tensors;              /* n_groups x n_params */
    tp_ckpt_group_t groups[1 + TP_OPTIM_MAX_STATES];
};

tp_status_t tp_train_state_create(tp_model_t *m, tp_optim_t *o, tp_train_state_t **out)
{
    *out = NULL;
    tp_train_state_t *s = tp_calloc(1, sizeof *s, "train state");
    if (!s) return TP_ERR_NOMEM;
    s->m = m;
    s->o = o;
    s->n_groups = 1 + (o ? o->ops->n_states : 0);
    s->tensors = tp_calloc((size_t)(s->n_groups * m->n_params), sizeof(tp_ckpt_tensor_t),
                           "checkpoint tensors");
    if (!s->tensors) {
        tp_train_state_free(s);
        return TP_ERR_NOMEM;
    }
    for (int g = 0; g < s->n_groups; g++) {
        if (g == 0)
            snprintf(s->group_names[g], sizeof s->group_names[g], "params");
        else
            snprintf(s->group_names[g], sizeof s->group_names[g], "optim/%s",
                     o->ops->state_names[g - 1]);
        s->device[g] = g == 0 ? m->param_buf : o->state[g - 1];
        /* Host backends are checkpointed in place; others go through one staging copy. */
        s->staged = !tp_backend_host_memory(m->be);
        s->host[g] = s->staged
                         ? tp_malloc((size_t)m->numel * sizeof(float), "checkpoint staging buffer")
                         : s->device[g];
        if (!s->host[g]) {
            tp_train_state_free(s);
            return TP_ERR_NOMEM;
        }
        tp_ckpt_tensor_t *t = s->tensors + g * m->n_params;
        for (int i = 0; i < m->n_params; i++) {
            const tp_param_t *p = m->params[i];
            t[i].name = p->name;
            t[i].ndim = p->ndim;
            memcpy(t[i].shape, p->shape, sizeof t[i].shape);
            t[i].data = s->host[g] + p->offset;
        }
        s->groups[g] = (tp_ckpt_group_t){.path = s->group_names[g], .n = m->n_params, .tensors = t};
    }
    *out = s;
    return TP_OK;
}

void tp_train_state_free(tp_train_state_t *s)
{
    if (!s) return;
    for (int g = 0; s->staged && g < 1 + TP_OPTIM_MAX_STATES; g++)
        free(s->host[g]);
    free(s->tensors);
    free(s);
}

tp_status_t tp_train_state_save(tp_train_state_t *s, const char *path, const tp_ckpt_meta_t *meta,
                                const char *config_text)
{
    size_t bytes = (size_t)s->m->numel * sizeof(float);
    for (int g = 0; s->staged && g < s->n_groups; g++)
        tp_backend_download(s->m->be, s->host[g], s->device[g], bytes);
    return tp_ckpt_write(path, meta, config_text, s->groups, s->n_groups);
}

tp_status_t tp_train_state_load(tp_train_state_t *s, const char *path, tp_ckpt_meta_t *meta)
{
    tp_ckpt_t *ck = NULL;
    TP_TRY(tp_ckpt_open(path, &ck));
    tp_status_t st = TP_OK;
    *meta = *tp_ckpt_meta(ck);
    if (strcmp(meta->model_type, s->m->type) != 0)
        st = TP_ERR(TP_ERR_CKPT, "checkpoint %s holds a '%s' model, the config asks for '%s'", path,
                    meta->model_type, s->m->type);
    if (st == TP_OK && s->o && strcmp(meta->optimizer, s->o->ops->name) != 0)
        st = TP_ERR(TP_ERR_CKPT,
                    "checkpoint %s was trained with optimizer '%s', the config asks for '%s' "
                    "(its state cannot be resumed)",
                    path, meta->optimizer, s->o->ops->name);
    for (int g = 0; st == TP_OK && g < s->n_groups; g++)
        st = tp_ckpt_read_group(ck, &s->groups[g]);
    tp_ckpt_close(ck);
    TP_TRY(st);
    size_t bytes = (size_t)s->m->numel * sizeof(float);
    for (int g = 0; s->staged && g < s->n_groups; g++)
        tp_backend_upload(s->m->be, s->device[g], s->host[g], bytes);
    if (s->o) s->o->t = meta->optim_step;
    return TP_OK;
}
