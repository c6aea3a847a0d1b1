/* Training state <-> checkpoint: maps the model's flat buffers to named per-tensor datasets.
 *
 * Under ZeRO each rank holds its shard of the optimizer state only; a checkpoint holds the full
 * logical state regardless, so it resumes on any number of ranks. Saving gathers the shards
 * (tp_train_state_gather, collective), loading reads the full tensors and keeps this rank's
 * pieces. The full-size host copies exist only while a checkpoint is written or read. */
#include "train_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tp_train_state {
    tp_model_t *m;
    tp_optim_t *o;
    int n_groups;
    char group_names[1 + TP_OPTIM_MAX_STATES][32];
    bool staged;  /* backend memory is not host memory: host[] are copies */
    bool sharded; /* optimizer groups (g >= 1) hold this rank's shard only */
    float *host[1 + TP_OPTIM_MAX_STATES];   /* full-size host views of each group */
    bool owned[1 + TP_OPTIM_MAX_STATES];    /* host[g] was allocated here */
    float *device[1 + TP_OPTIM_MAX_STATES]; /* the backend buffers they mirror */
    tp_ckpt_tensor_t *tensors;              /* n_groups x n_params */
    tp_ckpt_group_t groups[1 + TP_OPTIM_MAX_STATES];
};

/* Point group g's tensors at host buffer h (full flat layout). */
static void bind(tp_train_state_t *s, int g, float *h)
{
    s->host[g] = h;
    tp_ckpt_tensor_t *t = s->tensors + g * s->m->n_params;
    for (int i = 0; i < s->m->n_params; i++)
        t[i].data = h ? h + s->m->params[i]->offset : NULL;
}

static tp_status_t alloc_host(tp_train_state_t *s, int g)
{
    if (s->owned[g]) return TP_OK;
    float *h = tp_malloc((size_t)s->m->numel_pad * sizeof(float), "checkpoint staging buffer");
    if (!h) return TP_ERR_NOMEM;
    s->owned[g] = true;
    bind(s, g, h);
    return TP_OK;
}

static void free_host(tp_train_state_t *s, int g)
{
    if (!s->owned[g]) return;
    free(s->host[g]);
    s->owned[g] = false;
    bind(s, g, NULL);
}

tp_status_t tp_train_state_create(tp_model_t *m, tp_optim_t *o, tp_train_state_t **out)
{
    *out = NULL;
    tp_train_state_t *s = tp_calloc(1, sizeof *s, "train state");
    if (!s) return TP_ERR_NOMEM;
    s->m = m;
    s->o = o;
    s->n_groups = 1 + (o ? o->ops->n_states : 0);
    s->staged = !tp_backend_host_memory(m->be);
    s->sharded = o && o->shard;
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
        tp_ckpt_tensor_t *t = s->tensors + g * m->n_params;
        for (int i = 0; i < m->n_params; i++) {
            const tp_param_t *p = m->params[i];
            t[i].name = p->name;
            t[i].ndim = p->ndim;
            memcpy(t[i].shape, p->shape, sizeof t[i].shape);
        }
        s->groups[g] = (tp_ckpt_group_t){.path = s->group_names[g], .n = m->n_params, .tensors = t};
        /* Host backends' replicated groups are checkpointed in place; staged ones get one
         * staging copy for the run; sharded groups get theirs only around a save or load. */
        bool shard_group = g > 0 && s->sharded;
        if (shard_group) continue;
        if (s->staged) {
            tp_status_t st = alloc_host(s, g);
            if (st != TP_OK) {
                tp_train_state_free(s);
                return st;
            }
        } else {
            bind(s, g, s->device[g]);
        }
    }
    *out = s;
    return TP_OK;
}

void tp_train_state_free(tp_train_state_t *s)
{
    if (!s) return;
    for (int g = 0; g < 1 + TP_OPTIM_MAX_STATES; g++)
        free_host(s, g);
    free(s->tensors);
    free(s);
}

/* This rank's shard of group g in host memory: the backend buffer itself, or a downloaded copy
 * (*tmp, to be freed). */
static float *shard_on_host(tp_train_state_t *s, int g, float **tmp)
{
    *tmp = NULL;
    if (!s->staged) return s->device[g];
    size_t bytes = (size_t)s->o->state_numel * sizeof(float);
    *tmp = tp_malloc(bytes ? bytes : 1, "optimizer shard staging buffer");
    if (*tmp) tp_backend_download(s->m->be, *tmp, s->device[g], bytes);
    return *tmp;
}

tp_status_t tp_train_state_gather(tp_train_state_t *s, tp_comm_t *comm)
{
    if (!s->sharded) return TP_OK;
    const tp_shard_t *sh = s->o->shard;
    tp_status_t st = TP_OK;
    for (int g = 1; g < s->n_groups && st == TP_OK; g++) {
        float *tmp = NULL, *src = NULL;
        st = alloc_host(s, g);
        if (st == TP_OK) src = shard_on_host(s, g, &tmp);
        if (st == TP_OK && !src) st = TP_ERR_NOMEM;
        /* Every rank reaches every all-gather (a failed allocation still joins them with its
         * result discarded would need scratch; agree first instead). */
        st = tp_comm_agree(comm, st);
        for (int p = 0; p < sh->n && st == TP_OK; p++) {
            const tp_shard_piece_t *pc = &sh->pieces[p];
            st = tp_comm_allgather(comm, src + pc->shard_offset, s->host[g] + pc->bucket,
                                   (size_t)pc->numel, TP_DT_FLOAT);
        }
        free(tmp);
    }
    if (st != TP_OK) tp_train_state_release_gathered(s);
    return st;
}

void tp_train_state_release_gathered(tp_train_state_t *s)
{
    for (int g = 1; s->sharded && g < s->n_groups; g++)
        free_host(s, g);
}

tp_status_t tp_train_state_save(tp_train_state_t *s, const char *path, const tp_ckpt_meta_t *meta,
                                const char *config_text)
{
    size_t bytes = (size_t)s->m->numel * sizeof(float);
    for (int g = 0; g < s->n_groups; g++) {
        if (g > 0 && s->sharded) {
            if (!s->host[g])
                return TP_ERR(TP_ERR_INTERNAL, "sharded optimizer state was not gathered");
        } else if (s->staged) {
            tp_backend_download(s->m->be, s->host[g], s->device[g], bytes);
        }
    }
    return tp_ckpt_write(path, meta, config_text, s->groups, s->n_groups);
}

/* Keep this rank's pieces of the full group g (host[g]) in its shard. */
static tp_status_t scatter_shard(tp_train_state_t *s, int g)
{
    const tp_shard_t *sh = s->o->shard;
    size_t bytes = (size_t)s->o->state_numel * sizeof(float);
    float *dst =
        s->staged ? tp_malloc(bytes ? bytes : 1, "optimizer shard staging buffer") : s->device[g];
    if (!dst) return TP_ERR_NOMEM;
    for (int p = 0; p < sh->n; p++) {
        const tp_shard_piece_t *pc = &sh->pieces[p];
        memcpy(dst + pc->shard_offset, s->host[g] + pc->offset, (size_t)pc->numel * sizeof(float));
    }
    if (s->staged) {
        tp_backend_upload(s->m->be, s->device[g], dst, bytes);
        free(dst);
    }
    return TP_OK;
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
    for (int g = 0; st == TP_OK && g < s->n_groups; g++) {
        if (g > 0 && s->sharded) {
            st = alloc_host(s, g);
            /* the padding past the last parameter is in no dataset: keep it zero */
            if (st == TP_OK) memset(s->host[g], 0, (size_t)s->m->numel_pad * sizeof(float));
        }
        if (st == TP_OK) st = tp_ckpt_read_group(ck, &s->groups[g]);
        if (st == TP_OK && g > 0 && s->sharded) st = scatter_shard(s, g);
    }
    tp_ckpt_close(ck);
    tp_train_state_release_gathered(s);
    TP_TRY(st);
    size_t bytes = (size_t)s->m->numel * sizeof(float);
    for (int g = 0; s->staged && g < s->n_groups; g++)
        if (!(g > 0 && s->sharded)) tp_backend_upload(s->m->be, s->device[g], s->host[g], bytes);
    if (s->o) s->o->t = meta->optim_step;
    return TP_OK;
}
