/* Bare MPI_Allreduce timing loop for `tulpar bench allreduce` (see bench_mpi_baseline.h). Direct
 * MPI calls live here, under mpi/, so that runtime/ stays free of MPI. */
#include "bench_mpi_baseline.h"
#include "mpi_check.h"

int tp_bench_mpi_baseline_available(void)
{
    int inited = 0, finalized = 0, size = 1;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized) return 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size > 1;
}

static tp_status_t time_loop(const void *send, void *recv, int n, MPI_Datatype t, MPI_Op o,
                             int warmup, int iters, double *out)
{
    for (int i = 0; i < warmup; i++)
        TP_MPI_CHECK(MPI_Allreduce(send, recv, n, t, o, MPI_COMM_WORLD));
    TP_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    double t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++)
        TP_MPI_CHECK(MPI_Allreduce(send, recv, n, t, o, MPI_COMM_WORLD));
    double mine = (MPI_Wtime() - t0) / (iters > 0 ? iters : 1);
    TP_MPI_CHECK(MPI_Allreduce(&mine, out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    return TP_OK;
}

tp_status_t tp_bench_mpi_allreduce(const void *send, void *recv, size_t count, tp_dtype_t dt,
                                   tp_redop_t op, int warmup, int iters, double *oop_s,
                                   double *ip_s)
{
    if (count > (size_t)1 << 30)
        return TP_ERR(TP_ERR_UNSUPPORTED, "baseline all-reduce of %zu elements is too large",
                      count);
    MPI_Datatype t = tp_mpi_type(dt);
    MPI_Op o = tp_mpi_op(op);
    /* In place first: it is compared with the communicator's in-place call just before. */
    TP_TRY(time_loop(MPI_IN_PLACE, recv, (int)count, t, o, warmup, iters, ip_s));
    TP_TRY(time_loop(send, recv, (int)count, t, o, warmup, iters, oop_s));
    return TP_OK;
}
