/* Gradient synchronisation for data parallelism: buckets, overlap with backward, ZeRO.
 *
 * The flat gradient buffer is cut into buckets from its end (backward produces the last
 * parameters' gradients first). With overlap on, the model's backward reports how far its
 * gradients are final (tp_model_grads_ready) and each bucket's reduction starts as soon as it is
 * full, progressed by tests between backward's pieces of work; the rest is waited for after
 * backward. ZeRO-0 all-reduces (average) each bucket; ZeRO-1/2 reduce-scatter each bucket so
 * that every rank holds the reduced gradient of one equal part of it (its shard), update only
 * those parts, then all-gather the parameters. ZeRO-2 keeps reduced gradients in a shard-sized
 * buffer, reduce-scattering every micro-batch, so the full-size gradient is backward's scratch
 * only.
 *
 * Time is accounted per step: exposed = time the training thread spent in communication calls
 * (launching, testing, waiting, the parameter all-gather), total = wall time during which at
 * least one collective was in flight (completion noticed at the next test). With a device
 * communicator waits only order the GPU's streams (tp_comm_wait_ordered), so the GPU's own
 * times are reported instead (tp_comm_take_device_times, CUDA events): exposed = time the compute
 * stream stood still waiting for collectives, total = time the communication stream ran them. */
#ifndef TP_GRAD_SYNC_H
#define TP_GRAD_SYNC_H

#include "comm.h"
#include "model.h"
#include "shard.h"

typedef struct tp_bucket {
    int64_t offset, numel; /* [offset, offset + numel) of the flat buffers; numel % ranks == 0 */
    int64_t shard_offset;  /* where this bucket's part sits in shard order */
} tp_bucket_t;

typedef struct tp_grad_sync {
    tp_comm_t *comm; /* not owned: reduces the model's buffers (host or device memory) */
    tp_comm_t *host; /* not owned: host scalars (norms, the layout check); may equal comm */
    tp_model_t *m;   /* not owned; its grads_ready hook points here while this exists */
    int zero;
    bool overlap;
    int n_buckets;
    tp_bucket_t *buckets; /* buckets[0] is the last part of the buffer (produced first) */
    tp_shard_piece_t *pieces;
    tp_shard_t shard;  /* this rank's parts (ZeRO >= 1) */
    float *shard_grad; /* ZeRO-2: reduced gradients in shard order (backend memory) */
    tp_comm_req_t **reqs;
    int next;        /* next bucket to launch in this pass */
    bool armed;      /* this backward's gradients are to be reduced */
    bool accumulate; /* ZeRO-2: add into shard_grad (a later micro-batch) rather than copy */
    tp_status_t err; /* first failure met inside the backward hook */
    int inflight;
    double inflight_since;
    double exposed_s, total_s; /* since the last tp_grad_sync_take_times */
} tp_grad_sync_t;

/* comm works on the model's memory (e.g. NCCL for a GPU backend), host on host memory (MPI; the
 * same as comm for CPU backends); both over the same ranks. zero: 0, 1 or 2; bucket_bytes:
 * target bucket size (rounded to whole multiples of the number of ranks); overlap: reduce during
 * backward. m->numel_pad must be a multiple of the number of ranks. Installs the hook on m. */
tp_status_t tp_grad_sync_create(tp_comm_t *comm, tp_comm_t *host, tp_model_t *m, int zero,
                                size_t bucket_bytes, bool overlap, tp_grad_sync_t **out);
void tp_grad_sync_free(tp_grad_sync_t *gs);

/* Collective, at start-up before the first collective that depends on the model: every rank
 * compares the parameter count, bucket layout and ZeRO stage with rank 0's, and all fail with
 * a message naming what differs when any rank disagrees (instead of hanging or corrupting). */
tp_status_t tp_grad_sync_check_layout(tp_grad_sync_t *gs, const char *what);

/* Before a micro-batch's backward; first, last: the step's first and last micro-batch. */
void tp_grad_sync_begin(tp_grad_sync_t *gs, bool first, bool last);
/* After that backward: start what is left, wait for everything; ZeRO-2 folds the micro-batch's
 * reduced part into shard_grad and clears the gradient buffer. */
tp_status_t tp_grad_sync_end(tp_grad_sync_t *gs);
/* The global gradient norm over the reduced gradients (collective under ZeRO) into
 * m->scalars[TP_SCALAR_GRAD_SUMSQ] (its square), where a clipped optimizer step reads it
 * (tp_optim_step's clip). All of it is queued on the backend: the host never reads the norm here
 * (on a GPU the clip factor is computed on the device, inside the optimizer's kernels). */
tp_status_t tp_grad_sync_norm(tp_grad_sync_t *gs);
/* The norm the last tp_grad_sync_norm computed (waits for the backend: for progress lines). */
double tp_grad_sync_last_norm(tp_grad_sync_t *gs);
/* After the optimizer step under ZeRO: every rank gets every updated parameter. */
tp_status_t tp_grad_sync_gather_params(tp_grad_sync_t *gs);
/* The end of a training step: wait until the backend and the communicator have finished it
 * (the one host synchronisation of a step; on a GPU it watches NCCL for failed peers). */
tp_status_t tp_grad_sync_finish_step(tp_grad_sync_t *gs);
/* This step's exposed and total communication seconds; resets both. */
void tp_grad_sync_take_times(tp_grad_sync_t *gs, double *exposed_s, double *total_s);
/* The shard for tp_optim_create: NULL for ZeRO-0. */
const tp_shard_t *tp_grad_sync_shard(const tp_grad_sync_t *gs);
/* Bytes of gradient storage that persist across micro-batches on this rank. */
int64_t tp_grad_sync_grad_bytes(const tp_grad_sync_t *gs);

#endif
