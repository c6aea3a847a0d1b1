/* The one-rank communicator: every collective is the identity, and MPI is never touched. */
#include "comm_impl.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static tp_status_t self_allreduce(tp_comm_t *c, void *buf, size_t count, tp_dtype_t dt,
                                  tp_redop_t op)
{
    return TP_OK;
}

static tp_status_t self_bcast(tp_comm_t *c, void *buf, size_t count, tp_dtype_t dt, int root)
{
    return TP_OK;
}

static tp_status_t self_allgather(tp_comm_t *c, const void *send, void *recv, size_t count,
                                  tp_dtype_t dt)
{
    if (send != recv) memmove(recv, send, count * tp_dtype_size(dt));
    return TP_OK;
}

static tp_status_t self_reduce_scatter(tp_comm_t *c, const void *send, void *recv,
                                       size_t recv_count, tp_dtype_t dt, tp_redop_t op)
{
    if (send != recv) memmove(recv, send, recv_count * tp_dtype_size(dt));
    return TP_OK;
}

static tp_status_t self_barrier(tp_comm_t *c)
{
    return TP_OK;
}

/* One rank: every non-blocking collective completes when started. */
static tp_status_t self_icopy(tp_comm_t *c, tp_comm_req_t *r)
{
    if (r->kind != TP_REQ_ALLREDUCE && r->send != r->recv)
        memmove(r->recv, r->send, r->count * tp_dtype_size(r->dt));
    return TP_OK;
}

static tp_status_t self_test(tp_comm_t *c, tp_comm_req_t *r, int *done)
{
    *done = 1;
    return TP_OK;
}

static void self_abort(tp_comm_t *c, int code)
{
    exit(code);
}

static void self_free(tp_comm_t *c)
{
    free(c);
}

static const tp_comm_iface_t self_iface = {
    .name = "self",
    .allreduce = self_allreduce,
    .bcast = self_bcast,
    .allgather = self_allgather,
    .reduce_scatter = self_reduce_scatter,
    .barrier = self_barrier,
    .iallreduce = self_icopy,
    .ireduce_scatter = self_icopy,
    .iallgather = self_icopy,
    .test = self_test,
    .abort = self_abort,
    .free = self_free,
};

tp_status_t tp_comm_self_create(tp_comm_t **out)
{
    tp_comm_t *c = tp_calloc(1, sizeof *c, "communicator");
    if (!c) return TP_ERR_NOMEM;
    c->iface = &self_iface;
    c->rank = 0;
    c->device = -1;
    c->size = 1;
    c->local_rank = 0;
    c->local_size = 1;
    if (gethostname(c->host, sizeof c->host - 1) != 0) strcpy(c->host, "localhost");
    strcpy(c->library, "none (single process, MPI not initialised)");
    *out = c;
    return TP_OK;
}
