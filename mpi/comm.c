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
    if (c) c->iface->free(c);
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

void tp_comm_set_timeout(tp_comm_t *c, double timeout_s)
{
    tp_comm_watchdog_set_timeout(c->watchdog, timeout_s);
}
