/* Communicators: one interface, several implementations.
 *
 *   "self" one rank, no MPI at all (a laptop, or a GPU node started without a launcher)
 *   "mpi"  host buffers over MPI (the data-parallel default on CPUs)
 *   "nccl" device buffers over NCCL (later; same interface)
 *
 * Training code talks to this interface only. Collectives are in place where that makes sense
 * and return a status; an MPI failure is reported with the MPI library's error string. */
#ifndef TP_COMM_H
#define TP_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "tp_error.h"

typedef struct tp_comm tp_comm_t;

typedef enum { TP_DT_FLOAT, TP_DT_DOUBLE, TP_DT_INT64, TP_DT_BYTE } tp_dtype_t;
typedef enum { TP_RED_SUM, TP_RED_AVG, TP_RED_MAX, TP_RED_MIN } tp_redop_t;

/* True when this process was started by an MPI launcher (mpirun/mpiexec, srun with PMIx/PMI). */
int tp_comm_launched_by_mpi(void);

/* The world communicator: "mpi" when launched by an MPI launcher (initialises MPI), otherwise
 * "self" (MPI is never initialised, so no orted or launcher is needed at run time).
 * tp_comm_free finalises MPI if this call initialised it. */
tp_status_t tp_comm_create_world(int *argc, char ***argv, tp_comm_t **out);
void tp_comm_free(tp_comm_t *c);

const char *tp_comm_name(const tp_comm_t *c);
int tp_comm_rank(const tp_comm_t *c);
int tp_comm_size(const tp_comm_t *c);
int tp_comm_local_rank(const tp_comm_t *c); /* rank among the processes on this node */
int tp_comm_local_size(const tp_comm_t *c);
const char *tp_comm_host(const tp_comm_t *c);
/* Library version string (e.g. "Open MPI v4.1.4"), or "none". */
const char *tp_comm_library(const tp_comm_t *c);

/* In-place all-reduce of count elements; TP_RED_AVG divides the sum by the number of ranks. */
tp_status_t tp_comm_allreduce(tp_comm_t *c, void *buf, size_t count, tp_dtype_t dt, tp_redop_t op);
tp_status_t tp_comm_bcast(tp_comm_t *c, void *buf, size_t count, tp_dtype_t dt, int root);
/* recv holds size * count elements, rank r's block at r * count. */
tp_status_t tp_comm_allgather(tp_comm_t *c, const void *send, void *recv, size_t count,
                              tp_dtype_t dt);
/* send holds size * recv_count elements; rank r receives block r (send + r * recv_count) reduced
 * over all ranks; TP_RED_AVG divides the sum by the number of ranks. recv may be that block of
 * send (in place); otherwise the buffers must not overlap. */
tp_status_t tp_comm_reduce_scatter(tp_comm_t *c, const void *send, void *recv, size_t recv_count,
                                   tp_dtype_t dt, tp_redop_t op);
tp_status_t tp_comm_barrier(tp_comm_t *c);

/* Collective error agreement: every rank passes its local status; returns TP_OK when all
 * succeeded, the local status when this rank failed, TP_ERR_REMOTE when only others did. Used
 * at the points where one rank can fail alone (reading files), so that all ranks stop together
 * instead of hanging in the next collective. */
tp_status_t tp_comm_agree(tp_comm_t *c, tp_status_t local);

/* Stop every rank now (MPI_Abort): for failures that cannot be agreed on. */
void tp_comm_abort(tp_comm_t *c, int code);

/* Label the collectives that follow (until the next call) so that a dead or hung rank is reported
 * as e.g. "rank 1 stopped responding during the gradient all-reduce of step 57". `what` must
 * outlive the communicator (a string literal); step <= 0 omits "of step N". Costs two stores. */
void tp_comm_set_context(tp_comm_t *c, int64_t step, const char *what);
/* Abort the job when one collective has not completed for timeout_s seconds (comm.timeout_s;
 * 300 s until set). A dead rank on this node is detected within a second regardless. No-op for
 * the one-rank communicator. */
void tp_comm_set_timeout(tp_comm_t *c, double timeout_s);

#endif
