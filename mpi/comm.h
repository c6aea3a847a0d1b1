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

#include <stdbool.h>
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

/* A NCCL communicator over the same ranks as `host` (device buffers): selects this process's GPU
 * from the node-local rank, rank 0 creates the ncclUniqueId and broadcasts it over `host`.
 * `host` must outlive it. TP_ERR_UNSUPPORTED when Tulpar was built without CUDA. */
tp_status_t tp_comm_nccl_create(tp_comm_t *host, tp_comm_t **out);
/* The CUDA device the NCCL communicator uses, or -1 for host communicators. */
int tp_comm_device(const tp_comm_t *c);

const char *tp_comm_name(const tp_comm_t *c);
int tp_comm_rank(const tp_comm_t *c);
int tp_comm_size(const tp_comm_t *c);
int tp_comm_local_rank(const tp_comm_t *c); /* rank among the processes on this node */
int tp_comm_local_size(const tp_comm_t *c);
const char *tp_comm_host(const tp_comm_t *c);
/* Library version string (e.g. "Open MPI v4.1.4"), or "none". */
const char *tp_comm_library(const tp_comm_t *c);

/* Memory the communicator's collectives work on: host memory for "self" and "mpi", device memory
 * of tp_comm_device(c) for "nccl". Benchmarks and tests use these to stay backend-neutral. */
void *tp_comm_buf_alloc(tp_comm_t *c, size_t bytes);
void tp_comm_buf_free(tp_comm_t *c, void *buf);
tp_status_t tp_comm_buf_upload(tp_comm_t *c, void *dst, const void *host_src, size_t bytes);
tp_status_t tp_comm_buf_download(tp_comm_t *c, void *host_dst, const void *src, size_t bytes);
/* Copy bytes from one buffer of c to another (device to device for "nccl"); the ranges must not
 * overlap. */
tp_status_t tp_comm_buf_copy(tp_comm_t *c, void *dst, const void *src, size_t bytes);

/* Device communicators: collectives wait for the work queued on this stream (a cudaStream_t;
 * the compute backend's, tp_backend_stream) before reading their buffers. NULL: the legacy
 * default stream. No-op for host communicators. */
void tp_comm_set_compute_stream(tp_comm_t *c, void *stream);

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

/* Non-blocking forms. Each starts the collective and returns a request in *req; the result is
 * defined once tp_comm_test has reported completion or tp_comm_wait has returned, and the buffers
 * must not be touched before. Completion frees the request and sets *req = NULL, so a finished
 * handle cannot be waited on twice. Requests of one communicator must be started in the same
 * order on every rank.
 *
 * Progress: the MPI implementation progresses only inside Tulpar's calls (no helper thread, which
 * would take a core from compute on nodes where every core runs a rank), so long computations
 * should call tp_comm_test on their outstanding requests between pieces of work. Measured in
 * tests/mpi/test_comm_nonblocking.c and benchmarks/README.md. */
typedef struct tp_comm_req tp_comm_req_t;

tp_status_t tp_comm_iallreduce(tp_comm_t *c, void *buf, size_t count, tp_dtype_t dt, tp_redop_t op,
                               tp_comm_req_t **req);
/* As tp_comm_reduce_scatter, but send is also the workspace: after completion only block `rank`
 * of send (or recv) is defined. recv may be that block of send. */
tp_status_t tp_comm_ireduce_scatter(tp_comm_t *c, void *send, void *recv, size_t recv_count,
                                    tp_dtype_t dt, tp_redop_t op, tp_comm_req_t **req);
tp_status_t tp_comm_iallgather(tp_comm_t *c, const void *send, void *recv, size_t count,
                               tp_dtype_t dt, tp_comm_req_t **req);
/* Progress *req; when it has completed, free it and set *req = NULL. No-op for *req == NULL. */
tp_status_t tp_comm_test(tp_comm_t *c, tp_comm_req_t **req);
/* Block until *req completes (the watchdog covers the wait), free it, set *req = NULL. */
tp_status_t tp_comm_wait(tp_comm_t *c, tp_comm_req_t **req);
/* Complete *req for the compute stream (tp_comm_set_compute_stream), then free it and set
 * *req = NULL. Host communicators wait, exactly as tp_comm_wait. Device communicators (NCCL) do
 * not block the host: work queued on the compute stream after this call runs after the
 * collective, and the host may read its buffers only after tp_comm_sync. This is how a training
 * step hands reduced gradients to the optimizer without a host synchronisation. */
tp_status_t tp_comm_wait_ordered(tp_comm_t *c, tp_comm_req_t **req);
/* Wait on the host until the compute stream and this communicator's own work have finished,
 * watching the communicator for failures meanwhile (NCCL's asynchronous errors), so a failed
 * peer is reported instead of waited on forever. No-op for host communicators. */
tp_status_t tp_comm_sync(tp_comm_t *c);
/* Device communicators: seconds measured on the GPU (CUDA events, no host wait) since the last
 * call, for the non-blocking collectives: *exposed_s, how long the compute stream stood still in
 * tp_comm_wait_ordered; *total_s, how long the communication stream ran collectives. Read after
 * tp_comm_sync. False (both 0) for host communicators, whose callers time the host instead. */
bool tp_comm_take_device_times(tp_comm_t *c, double *exposed_s, double *total_s);

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
/* The communicator's watchdog owns SIGTERM (to report a dead peer when the launcher stops the
 * job). With this, a first SIGTERM while every peer is alive calls fn(SIGTERM) from the signal
 * handler instead (fn must be async-signal-safe), so training can stop cleanly. Returns 0 when
 * the communicator has no watchdog (one rank): the caller installs its own handler. */
int tp_comm_route_sigterm(tp_comm_t *c, void (*fn)(int));

#endif
