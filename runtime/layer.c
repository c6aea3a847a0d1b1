/* Helpers shared by the layer constructors. */
#include "layer.h"

#include <stdio.h>
#include <string.h>

void tp_layer_set_shapes(tp_layer_t *l, int in_ndim, const int64_t *in, int out_ndim,
                         const int64_t *out)
{
    l->in_ndim = in_ndim;
    l->out_ndim = out_ndim;
    l->in_numel = l->out_numel = 1;
    for (int i = 0; i < in_ndim; i++) {
        l->in_shape[i] = in[i];
        l->in_numel *= in[i];
    }
    for (int i = 0; i < out_ndim; i++) {
        l->out_shape[i] = out[i];
        l->out_numel *= out[i];
    }
}

tp_param_t *tp_layer_add_param(tp_layer_t *l, const char *suffix, int ndim, const int64_t *shape,
                               int64_t fan_in, tp_init_t init, bool decay)
{
    tp_param_t *p = &l->params[l->n_params++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s.%s", l->name, suffix);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= shape[i];
    }
    p->fan_in = fan_in;
    p->init = init;
    p->decay = decay;
    return p;
}

void tp_layer_release(tp_layer_t *l)
{
    if (l->ops && l->ops->release) l->ops->release(l);
    for (int i = 0; i < 3; i++) {
        tp_backend_release(l->be, l->scratch[i]);
        l->scratch[i] = NULL;
    }
}
