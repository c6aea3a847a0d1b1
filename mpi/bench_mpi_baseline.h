/* The bare-MPI baseline of `tulpar bench allreduce`: a plain MPI_Allreduce loop on
 * MPI_COMM_WORLD with the same buffers, sizes and iteration counts, so that the communicator's
 * overhead shows as a ratio measured in the same run. Not used by training. */
#ifndef TP_BENCH_MPI_BASELINE_H
#define TP_BENCH_MPI_BASELINE_H

#include <stddef.h>

#include "comm.h"

/* True when MPI is initialised with more than one process in MPI_COMM_WORLD (there is
 * something to compare with). */
int tp_bench_mpi_baseline_available(void);

/* Time `iters` MPI_Allreduce calls (after `warmup` untimed ones) of count elements, out of place
 * (send -> recv) and in place (recv, timed first), each starting with a barrier. Per-iteration
 * seconds, the maximum over ranks, in *oop_s and *ip_s. TP_RED_AVG is timed as MPI_SUM (MPI has no
 * average). Collective over MPI_COMM_WORLD. */
tp_status_t tp_bench_mpi_allreduce(const void *send, void *recv, size_t count, tp_dtype_t dt,
                                   tp_redop_t op, int warmup, int iters, double *oop_s,
                                   double *ip_s);

#endif
