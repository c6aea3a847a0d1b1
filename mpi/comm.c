/* Communicator dispatch, launcher detection and the error-agreement helper. */
#include "comm_impl.h"
#include "comm_watchdog.h"

#include <stdlib.h>
#include <string.h>

size_t tp_dtype_size(tp_dtype_t dt)
{
    switch (dt) {
    case TP_DT_FLOAT:
        return 4;
    case TP_DT_DOUBLE:
        return 8;
    case TP_DT_INT64:
        return 8;
    case TP_DT_BYTE:
        return 1;
    }
    return 1;
}

void tp_dtype_divide(void *buf, size_t count, tp_dtype_t dt, int n)
{
    if (dt == TP_DT_FLOAT) {
        float *f = buf, inv = 1.0f / (float)n;
        for (size_t i = 0; i < count; i++)
            f[i] *= inv;
    } else if (dt == TP_DT_DOUBLE) {
        double *d = buf;
        for (size_t i = 0; i < count; i++)
            d[i] /= n;
    } else if (dt == TP_DT_INT64) {
        int64_t *v = buf;
        for (size_t i = 0; i < count; i++)
            v[i] /= n;
    }
}

int tp_comm_launched_by_mpi(void)
{
    /* Open MPI's mpirun, PMIx (mpirun and srun --mpi=pmix), PMI-1/2 launchers. */
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
                                       "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

tp_status_t tp_comm_create_world(int *argc, char ***argv, tp_comm_t **out)
{
    *out = NULL;
    if (tp_comm_launched_by_mpi()) return tp_comm_mpi_create(argc, argv, out);
    return tp_comm_self_create(out);
}

void tp_comm_free(tp_comm_t *c)
{
    if (!c) return;
    while (c->spare_reqs) {
        tp_comm_req_t *r = c->spare_reqs;
        c->spare_reqs = r->next_spare;
        free(r);
    }
    c->iface->free(c);
}

int tp_comm_device(const tp_comm_t *c)
{
    return c->device;
}

void *tp_comm_buf_alloc(tp_comm_t *c, size_t bytes)
{
    if (c->iface->buf_alloc) return c->iface->buf_alloc(c, bytes);
    return tp_malloc(bytes ? bytes : 1, "communication buffer");
}

void tp_comm_buf_free(tp_comm_t *c, void *buf)
{
    if (!buf) return;
    if (c->iface->buf_free)
        c->iface->buf_free(c, buf);
    else
        free(buf);
}

tp_status_t tp_comm_buf_upload(tp_comm_t *c, void *dst, const void *host_src, size_t bytes)
{
    if (c->iface->buf_copy) return c->iface->buf_copy(c, dst, host_src, bytes, 1);
    memcpy(dst, host_src, bytes);
    return TP_OK;
}

tp_status_t tp_comm_buf_download(tp_comm_t *c, void *host_dst, const void *src, size_t bytes)
{
    if (c->iface->buf_copy) return c->iface->buf_copy(c, host_dst, src, bytes, 0);
    memcpy(host_dst, src, bytes);
    return TP_OK;
}

tp_status_t tp_comm_buf_copy(tp_comm_t *c, void *dst, const void *src, size_t bytes)
{
    if (c->iface->buf_copy) return c->iface->buf_copy(c, dst, src, bytes, 2);
    memmove(dst, src, bytes);
    return TP_OK;
}

void tp_comm_set_compute_stream(tp_comm_t *c, void *stream)
{
    if (c->iface->set_compute_stream) c->iface->set_compute_stream(c, stream);
}

const char *tp_comm_name(const tp_comm_t *c)
{
    return c->iface->name;
}
int tp_comm_rank(const tp_comm_t *c)
{
    return c->rank;
}
int tp_comm_size(const tp_comm_t *c)
{
    return c->size;
}
int tp_comm_local_rank(const tp_comm_t *c)
{
    return c->local_rank;
}
int tp_comm_local_size(const tp_comm_t *c)
{
    return c->local_size;
}
const char *tp_comm_host(const tp_comm_t *c)
{
    return c->host;
}
const char *tp_comm_library(const tp_comm_t *c)
{
    return c->library;
}

tp_status_t tp_comm_allreduce(tp_comm_t *c, void *buf, size_t count, tp_dtype_t dt, tp_redop_t op)
{
    tp_comm_watchdog_enter(c->watchdog);
    tp_status_t st = c->iface->allreduce(c, buf, count, dt, op);
    tp_comm_watchdog_leave(c->watchdog);
    return st;
}

tp_status_t tp_comm_bcast(tp_comm_t *c, void *buf, size_t count, tp_dtype_t dt, int root)
{
    tp_comm_watchdog_enter(c->watchdog);
    tp_status_t st = c->iface->bcast(c, buf, count, dt, root);
    tp_comm_watchdog_leave(c->watchdog);
    return st;
}

tp_status_t tp_comm_allgather(tp_comm_t *c, const void *send, void *recv, size_t count,
                              tp_dtype_t dt)
{
    tp_comm_watchdog_enter(c->watchdog);
    tp_status_t st = c->iface->allgather(c, send, recv, count, dt);
    tp_comm_watchdog_leave(c->watchdog);
    return st;
}

tp_status_t tp_comm_reduce_scatter(tp_comm_t *c, const void *send, void *recv, size_t recv_count,
                                   tp_dtype_t dt, tp_redop_t op)
{
    tp_comm_watchdog_enter(c->watchdog);
    tp_status_t st = c->iface->reduce_scatter(c, send, recv, recv_count, dt, op);
    tp_comm_watchdog_leave(c->watchdog);
    return st;
}

tp_status_t tp_comm_barrier(tp_comm_t *c)
{
    tp_comm_watchdog_enter(c->watchdog);
    tp_status_t st = c->iface->barrier(c);
    tp_comm_watchdog_leave(c->watchdog);
    return st;
}

/* ---- non-blocking ---------------------------------------------------------------------- */

static tp_status_t start(tp_comm_t *c, tp_comm_req_t *r, tp_comm_req_t **out)
{
    *out = NULL;
    tp_status_t (*fn)(tp_comm_t *, tp_comm_req_t *) =
        r->kind == TP_REQ_ALLREDUCE        ? c->iface->iallreduce
        : r->kind == TP_REQ_REDUCE_SCATTER ? c->iface->ireduce_scatter
                                           : c->iface->iallgather;
    tp_comm_req_t *req = c->spare_reqs;
    if (req)
        c->spare_reqs = req->next_spare;
    else if (!(req = tp_malloc(sizeof *req, "communication request")))
        return TP_ERR_NOMEM;
    *req = *r;
    tp_comm_watchdog_enter(c->watchdog);
    tp_status_t st = fn(c, req);
    tp_comm_watchdog_leave(c->watchdog);
    if (st != TP_OK) {
        if (c->iface->req_free) c->iface->req_free(c, req);
        req->next_spare = c->spare_reqs;
        c->spare_reqs = req;
        return st;
    }
    *out = req;
    return TP_OK;
}

tp_status_t tp_comm_iallreduce(tp_comm_t *c, void *buf, size_t count, tp_dtype_t dt, tp_redop_t op,
                               tp_comm_req_t **req)
{
    tp_comm_req_t r = {
        .kind = TP_REQ_ALLREDUCE, .send = buf, .recv = buf, .count = count, .dt = dt, .op = op};
    return start(c, &r, req);
}

tp_status_t tp_comm_ireduce_scatter(tp_comm_t *c, void *send, void *recv, size_t recv_count,
                                    tp_dtype_t dt, tp_redop_t op, tp_comm_req_t **req)
{
    tp_comm_req_t r = {.kind = TP_REQ_REDUCE_SCATTER,
                       .send = send,
                       .recv = recv,
                       .count = recv_count,
                       .dt = dt,
                       .op = op};
    return start(c, &r, req);
}

tp_status_t tp_comm_iallgather(tp_comm_t *c, const void *send, void *recv, size_t count,
                               tp_dtype_t dt, tp_comm_req_t **req)
{
    tp_comm_req_t r = {.kind = TP_REQ_ALLGATHER,
                       .send = (void *)send,
                       .recv = recv,
                       .count = count,
                       .dt = dt,
                       .op = TP_RED_SUM};
    return start(c, &r, req);
}

static void finish(tp_comm_t *c, tp_comm_req_t **req)
{
    if (c->iface->req_free) c->iface->req_free(c, *req);
    (*req)->next_spare = c->spare_reqs;
    c->spare_reqs = *req;
    *req = NULL;
}

tp_status_t tp_comm_test(tp_comm_t *c, tp_comm_req_t **req)
{
    if (!*req) return TP_OK;
    int done = 0;
    tp_comm_watchdog_enter(c->watchdog);
    tp_status_t st = c->iface->test(c, *req, &done);
    tp_comm_watchdog_leave(c->watchdog);
    if (st != TP_OK || done) finish(c, req);
    return st;
}

tp_status_t tp_comm_wait(tp_comm_t *c, tp_comm_req_t **req)
{
    if (!*req) return TP_OK;
    tp_status_t st = TP_OK;
    tp_comm_watchdog_enter(c->watchdog);
    if (c->iface->wait) {
        st = c->iface->wait(c, *req);
    } else {
        int done = 0;
        while (st == TP_OK && !done)
            st = c->iface->test(c, *req, &done);
    }
    tp_comm_watchdog_leave(c->watchdog);
    finish(c, req);
    return st;
}

tp_status_t tp_comm_wait_ordered(tp_comm_t *c, tp_comm_req_t **req)
{
    if (!*req) return TP_OK;
    if (!c->iface->wait_ordered) return tp_comm_wait(c, req);
    tp_status_t st = c->iface->wait_ordered(c, *req);
    finish(c, req);
    return st;
}

tp_status_t tp_comm_sync(tp_comm_t *c)
{
    if (!c->iface->sync) return TP_OK;
    tp_comm_watchdog_enter(c->watchdog);
    tp_status_t st = c->iface->sync(c);
    tp_comm_watchdog_leave(c->watchdog);
    return st;
}

bool tp_comm_take_device_times(tp_comm_t *c, double *exposed_s, double *total_s)
{
    *exposed_s = *total_s = 0;
    return c->iface->device_times && c->iface->device_times(c, exposed_s, total_s);
}

tp_status_t tp_comm_agree(tp_comm_t *c, tp_status_t local)
{
    int64_t failed = local != TP_OK;
    tp_status_t st = tp_comm_allreduce(c, &failed, 1, TP_DT_INT64, TP_RED_MAX);
    if (st != TP_OK) return st;
    if (local != TP_OK) return local;
    return failed ? TP_ERR_REMOTE : TP_OK;
}

void tp_comm_abort(tp_comm_t *c, int code)
{
    tp_comm_watchdog_mark_aborting(c->watchdog);
    c->iface->abort(c, code);
}

void tp_comm_set_context(tp_comm_t *c, int64_t step, const char *what)
{
    tp_comm_watchdog_set_context(c->watchdog, step, what);
}

int tp_comm_route_sigterm(tp_comm_t *c, void (*fn)(int))
{
    return tp_comm_watchdog_route_sigterm(c->watchdog, fn);
}

void tp_comm_set_timeout(tp_comm_t *c, double timeout_s)
{
    tp_comm_watchdog_set_timeout(c->watchdog, timeout_s);
}
