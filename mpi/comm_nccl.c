/* The NCCL communicator: the collectives of comm.h on device memory of this process's GPU, over
 * the same ranks as a host communicator ("mpi" or "self"), which it uses only to agree at start-up
 * and to send the ncclUniqueId. Not: host buffers (use the host communicator), several GPUs per
 * process, or a watchdog of its own.
 *
 * GPU. The node-local rank (OMPI_COMM_WORLD_LOCAL_RANK, else SLURM_LOCALID, else the host
 * communicator's) modulo the visible devices; with CUDA_VISIBLE_DEVICES narrowed per rank that is
 * device 0 each time. cudaSetDevice is called once, at creation: call this communicator from the
 * thread that created it.
 *
 * Streams. Every NCCL call runs on one stream the communicator owns, created non-blocking (so it
 * never serialises with the legacy default stream) and at the highest priority (so communication
 * kernels are scheduled ahead of compute that is ready at the same time). One stream, not one per
 * form: NCCL calls of one communicator must run in the order issued, which a second stream would
 * not promise. Before each collective an event is recorded on the compute stream and the
 * communication stream waits on it, so the collective sees what compute wrote to its buffers. The
 * compute stream is the CUDA backend's (tp_comm_set_compute_stream, which the trainer calls with
 * tp_backend_stream); until set it is the legacy default stream: an event recorded there follows
 * everything queued before on it and on every blocking stream, and cudaMemcpy
 * (tp_comm_buf_upload/download) runs there too.
 *
 * Completion. Blocking forms wait for the communication stream; non-blocking forms record an event
 * after the NCCL call, which test queries and wait polls. Waiting polls (query, then
 * ncclCommGetAsyncError, then sched_yield) instead of cudaStreamSynchronize, so a NCCL failure (a
 * peer gone, a network error) is reported instead of waited on forever; after one the NCCL
 * communicator is aborted (ncclCommAbort) at once, never destroyed. The wait spins one core, as
 * cudaStreamSynchronize does by default. wait_ordered does not wait at all: the compute stream
 * waits for the collective's event (cudaStreamWaitEvent), so a training step queues reduction,
 * clipping and the optimizer without the host stopping; sync is where the host then waits, at
 * the step's end, polling the compute stream with the same error checks.
 *
 * Watchdog: c->watchdog is NULL. The host communicator's watchdog thread still reports a dead
 * peer on this node, but its hang timeout (comm.timeout_s) does not cover NCCL waits. */
#include "comm_impl.h"
#include "comm_nccl_timing.h"
#include "nccl_check.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Completion events of finished requests kept for reuse. */
#define EVENT_POOL 32

typedef struct nccl_state {
    tp_comm_t *host;
    ncclComm_t comm;      /* NULL until initialised and after an abort */
    cudaStream_t stream;  /* the communication stream */
    cudaStream_t compute; /* where compute work is queued (see the top of the file) */
    cudaEvent_t ready;    /* recorded on `compute` before each collective */
    cudaEvent_t pool[EVENT_POOL];
    int npool;
    float *scratch;          /* the barrier's one element */
    tp_gpu_timing_t *timing; /* GPU-side exposed and in-flight time; NULL: not measured */
    int failed;              /* NCCL or CUDA failed asynchronously: abort at free, never destroy */
} nccl_state_t;

/* A request's state is its completion event (recorded on the communication stream after the NCCL
 * call), held in req->impl itself: cudaEvent_t is a pointer, so starting a bucket's collective
 * allocates nothing, and the events come from the pool. */
static cudaEvent_t req_event(const tp_comm_req_t *req)
{
    return (cudaEvent_t)req->impl;
}

static ncclDataType_t nccl_type(tp_dtype_t dt)
{
    switch (dt) {
    case TP_DT_FLOAT:
        return ncclFloat32;
    case TP_DT_DOUBLE:
        return ncclFloat64;
    case TP_DT_INT64:
        return ncclInt64;
    case TP_DT_BYTE:
        return ncclUint8;
    }
    return ncclUint8;
}

/* ncclAvg divides on the device: floating types multiply by 1/n before summing, integer types
 * divide the sum truncating toward zero (as tp_dtype_divide does). */
static ncclRedOp_t nccl_op(tp_redop_t op)
{
    switch (op) {
    case TP_RED_SUM:
        return ncclSum;
    case TP_RED_AVG:
        return ncclAvg;
    case TP_RED_MAX:
        return ncclMax;
    case TP_RED_MIN:
        return ncclMin;
    }
    return ncclSum;
}

/* ---- completion ------------------------------------------------------------------------ */

/* After an asynchronous failure: abort the NCCL communicator now, not at free. Its kernels
 * still waiting for peers then end, so host waits on the streams that follow (the backend's
 * synchronize and cudaFree while the trainer tears down) return instead of hanging. */
static void abort_failed(nccl_state_t *s)
{
    s->failed = 1;
    if (!s->comm) return;
    ncclResult_t r = ncclCommAbort(s->comm);
    if (r != ncclSuccess) tp_log_warn("ncclCommAbort failed: %s", ncclGetErrorString(r));
    s->comm = NULL;
}

/* TP_OK while NCCL has seen no asynchronous error; otherwise report it and abort the
 * communicator. */
static tp_status_t check_async(tp_comm_t *c)
{
    nccl_state_t *s = c->impl;
    if (!s->comm)
        return TP_ERR(TP_ERR_CUDA,
                      "communicator 'nccl' (rank %d of %d) was aborted after an "
                      "earlier failure",
                      c->rank, c->size);
    ncclResult_t async = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(s->comm, &async);
    if (r != ncclSuccess) {
        tp_status_t st = tp_nccl_report(r, s->comm, "ncclCommGetAsyncError", __FILE__, __LINE__);
        abort_failed(s);
        return st;
    }
    if (async == ncclSuccess || async == ncclInProgress) return TP_OK;
    const char *last = ncclGetLastError(s->comm);
    tp_status_t st =
        TP_ERR(TP_ERR_CUDA,
               "NCCL failed during a collective (rank %d of %d, GPU %d): %s%s%s; a peer rank may "
               "have stopped, see its log (NCCL_DEBUG=WARN shows NCCL's side)",
               c->rank, c->size, c->device, ncclGetErrorString(async), last && *last ? ": " : "",
               last && *last ? last : "");
    abort_failed(s);
    return st;
}

/* Has `ev` (NULL: all work queued on the communication stream) completed? With block, poll until
 * it has. NCCL's asynchronous errors are checked between polls. */
static tp_status_t poll_done(tp_comm_t *c, cudaEvent_t ev, int block, int *done)
{
    nccl_state_t *s = c->impl;
    *done = 0;
    for (;;) {
        cudaError_t e = ev ? cudaEventQuery(ev) : cudaStreamQuery(s->stream);
        if (e == cudaSuccess) {
            *done = 1;
            return TP_OK;
        }
        if (e == cudaErrorNotReady && cudaPeekAtLastError() == cudaErrorNotReady)
            (void)cudaGetLastError(); /* a status, not an error: keep it from launch checks */
        if (e != cudaErrorNotReady) {
            s->failed = 1;
            return tp_cuda_report(e,
                                  ev ? "cudaEventQuery(collective done)" : "cudaStreamQuery(comm)",
                                  __FILE__, __LINE__);
        }
        TP_TRY(check_async(c));
        if (!block) return TP_OK;
        sched_yield();
    }
}

static tp_status_t sync_stream(tp_comm_t *c)
{
    int done = 0;
    return poll_done(c, NULL, 1, &done);
}

/* Make the communication stream wait for the work already queued on the compute stream. */
static tp_status_t after_compute(nccl_state_t *s)
{
    TP_CUDA_CHECK(cudaEventRecord(s->ready, s->compute));
    TP_CUDA_CHECK(cudaStreamWaitEvent(s->stream, s->ready, 0));
    return TP_OK;
}

/* With one rank every reduction is the identity, so all-reduce and reduce-scatter are copies
 * (nothing at all in place). NCCL's own one-rank path is not used: before 2.29.7 its kernel for
 * ncclAvg leaves the last (count mod blocks) elements unwritten (NVIDIA/nccl#1950; seen on an
 * H100 with NCCL 2.28.3 in tests/gpu/test_comm_nccl.c: NaNs in the tail of a 1048583-element
 * reduce-scatter), and a ZeRO run on one GPU reduce-scatters its gradients with AVG. */
static tp_status_t one_rank_reduce(nccl_state_t *s, const void *send, void *recv, size_t count,
                                   tp_dtype_t dt)
{
    if (send != recv && count > 0)
        TP_CUDA_CHECK(cudaMemcpyAsync(recv, send, count * tp_dtype_size(dt),
                                      cudaMemcpyDeviceToDevice, s->stream));
    return TP_OK;
}

/* ---- blocking collectives -------------------------------------------------------------- */

static tp_status_t nccl_allreduce(tp_comm_t *c, void *buf, size_t count, tp_dtype_t dt,
                                  tp_redop_t op)
{
    nccl_state_t *s = c->impl;
    TP_TRY(after_compute(s));
    if (c->size == 1)
        TP_TRY(one_rank_reduce(s, buf, buf, count, dt));
    else
        TP_NCCL_CHECK_COMM(s->comm, ncclAllReduce(buf, buf, count, nccl_type(dt), nccl_op(op),
                                                  s->comm, s->stream));
    return sync_stream(c);
}

static tp_status_t nccl_bcast(tp_comm_t *c, void *buf, size_t count, tp_dtype_t dt, int root)
{
    nccl_state_t *s = c->impl;
    TP_TRY(after_compute(s));
    TP_NCCL_CHECK_COMM(s->comm,
                       ncclBroadcast(buf, buf, count, nccl_type(dt), root, s->comm, s->stream));
    return sync_stream(c);
}

/* In place (send is this rank's block of recv) is NCCL's own in-place all-gather. */
static tp_status_t nccl_allgather(tp_comm_t *c, const void *send, void *recv, size_t count,
                                  tp_dtype_t dt)
{
    nccl_state_t *s = c->impl;
    TP_TRY(after_compute(s));
    TP_NCCL_CHECK_COMM(s->comm,
                       ncclAllGather(send, recv, count, nccl_type(dt), s->comm, s->stream));
    return sync_stream(c);
}

/* In place (recv is this rank's block of send) is NCCL's own in-place reduce-scatter. */
static tp_status_t nccl_reduce_scatter(tp_comm_t *c, const void *send, void *recv,
                                       size_t recv_count, tp_dtype_t dt, tp_redop_t op)
{
    nccl_state_t *s = c->impl;
    TP_TRY(after_compute(s));
    if (c->size == 1)
        TP_TRY(one_rank_reduce(s, send, recv, recv_count, dt));
    else
        TP_NCCL_CHECK_COMM(s->comm, ncclReduceScatter(send, recv, recv_count, nccl_type(dt),
                                                      nccl_op(op), s->comm, s->stream));
    return sync_stream(c);
}

/* A one-element all-reduce that every rank waits for. It does not wait for compute. */
static tp_status_t nccl_barrier(tp_comm_t *c)
{
    nccl_state_t *s = c->impl;
    TP_NCCL_CHECK_COMM(s->comm, ncclAllReduce(s->scratch, s->scratch, 1, ncclFloat32, ncclSum,
                                              s->comm, s->stream));
    return sync_stream(c);
}

/* ---- non-blocking ---------------------------------------------------------------------- */

static tp_status_t event_take(nccl_state_t *s, cudaEvent_t *ev)
{
    if (s->npool > 0) {
        *ev = s->pool[--s->npool];
        return TP_OK;
    }
    TP_CUDA_CHECK(cudaEventCreateWithFlags(ev, cudaEventDisableTiming));
    return TP_OK;
}

static void event_give(nccl_state_t *s, cudaEvent_t ev)
{
    if (!ev) return;
    if (s->npool < EVENT_POOL)
        s->pool[s->npool++] = ev;
    else
        cudaEventDestroy(ev);
}

/* Enqueue req's collective after compute, then its completion event. The reduce-scatter writes
 * straight to recv (NCCL needs no workspace), so send is left as it was. */
static tp_status_t nccl_istart(tp_comm_t *c, tp_comm_req_t *req)
{
    nccl_state_t *s = c->impl;
    cudaEvent_t done = NULL;
    TP_TRY(event_take(s, &done));
    req->impl = (void *)done;
    TP_TRY(after_compute(s));
    int h = tp_gpu_timing_begin(s->timing, s->stream, TP_GPU_COLL);
    ncclDataType_t t = nccl_type(req->dt);
    switch (req->kind) {
    case TP_REQ_ALLREDUCE:
        if (c->size == 1)
            TP_TRY(one_rank_reduce(s, req->recv, req->recv, req->count, req->dt));
        else
            TP_NCCL_CHECK_COMM(s->comm, ncclAllReduce(req->recv, req->recv, req->count, t,
                                                      nccl_op(req->op), s->comm, s->stream));
        break;
    case TP_REQ_REDUCE_SCATTER:
        if (c->size == 1)
            TP_TRY(one_rank_reduce(s, req->send, req->recv, req->count, req->dt));
        else
            TP_NCCL_CHECK_COMM(s->comm, ncclReduceScatter(req->send, req->recv, req->count, t,
                                                          nccl_op(req->op), s->comm, s->stream));
        break;
    case TP_REQ_ALLGATHER:
        TP_NCCL_CHECK_COMM(s->comm,
                           ncclAllGather(req->send, req->recv, req->count, t, s->comm, s->stream));
        break;
    }
    tp_gpu_timing_end(s->timing, h, s->stream);
    TP_CUDA_CHECK(cudaEventRecord(done, s->stream));
    return TP_OK;
}

static tp_status_t nccl_test(tp_comm_t *c, tp_comm_req_t *req, int *done)
{
    return poll_done(c, req_event(req), 0, done);
}

static tp_status_t nccl_wait(tp_comm_t *c, tp_comm_req_t *req)
{
    int done = 0;
    return poll_done(c, req_event(req), 1, &done);
}

/* The compute stream waits for the collective's event; the host goes on. cudaStreamWaitEvent
 * takes the event's current record, so giving the event back to the pool afterwards (req_free)
 * and recording it again for a later collective does not change what this wait waits for.
 * Failures already known are reported now; later ones at the next test, wait or sync. */
static tp_status_t nccl_wait_ordered(tp_comm_t *c, tp_comm_req_t *req)
{
    nccl_state_t *s = c->impl;
    TP_TRY(check_async(c));
    /* The interval around the wait is how long compute stood still for the collective. */
    int h = tp_gpu_timing_begin(s->timing, s->compute, TP_GPU_WAIT);
    TP_CUDA_CHECK(cudaStreamWaitEvent(s->compute, req_event(req), 0));
    tp_gpu_timing_end(s->timing, h, s->compute);
    return TP_OK;
}

static bool nccl_device_times(tp_comm_t *c, double *exposed_s, double *total_s)
{
    nccl_state_t *s = c->impl;
    double sec[TP_GPU_KINDS];
    if (!tp_gpu_timing_take(s->timing, sec)) return false;
    *exposed_s = sec[TP_GPU_WAIT];
    *total_s = sec[TP_GPU_COLL];
    return true;
}

/* Poll the compute stream (it waits for every collective handed over with wait_ordered), then
 * the communication stream, checking NCCL's asynchronous errors between polls. */
static tp_status_t nccl_sync(tp_comm_t *c)
{
    nccl_state_t *s = c->impl;
    for (;;) {
        cudaError_t e = cudaStreamQuery(s->compute);
        if (e == cudaSuccess) break;
        if (e == cudaErrorNotReady && cudaPeekAtLastError() == cudaErrorNotReady)
            (void)cudaGetLastError(); /* a status, not an error: keep it from launch checks */
        if (e != cudaErrorNotReady) {
            s->failed = 1;
            return tp_cuda_report(e, "cudaStreamQuery(compute)", __FILE__, __LINE__);
        }
        TP_TRY(check_async(c));
        sched_yield();
    }
    return sync_stream(c);
}

static void nccl_req_free(tp_comm_t *c, tp_comm_req_t *req)
{
    if (!req->impl) return;
    event_give(c->impl, req_event(req)); /* re-recording a pending event later is fine */
    req->impl = NULL;
}

/* ---- buffers --------------------------------------------------------------------------- */

static void *nccl_buf_alloc(tp_comm_t *c, size_t bytes)
{
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        TP_ERR(TP_ERR_NOMEM, "cudaMalloc of %zu bytes on GPU %d failed: %s", bytes, c->device,
               cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

static void nccl_buf_free(tp_comm_t *c, void *buf)
{
    cudaError_t e = cudaFree(buf);
    if (e != cudaSuccess)
        tp_log_warn("cudaFree on GPU %d failed: %s", c->device, cudaGetErrorString(e));
}

/* dir (comm_impl.h): 1 host -> device, 0 device -> host, 2 device -> device. All run on
 * the legacy default stream and complete before returning. */
static tp_status_t nccl_buf_copy(tp_comm_t *c, void *dst, const void *src, size_t bytes, int dir)
{
    enum cudaMemcpyKind kind = dir == 2 ? cudaMemcpyDeviceToDevice
                               : dir    ? cudaMemcpyHostToDevice
                                        : cudaMemcpyDeviceToHost;
    TP_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
    return TP_OK;
}

/* ---- life cycle ------------------------------------------------------------------------ */

static void nccl_abort(tp_comm_t *c, int code)
{
    nccl_state_t *s = c->impl;
    if (s->comm) ncclCommAbort(s->comm); /* releases kernels waiting for peers */
    s->comm = NULL;
    tp_comm_abort(s->host, code);
}

static void warn_nccl(ncclResult_t r, const char *what)
{
    if (r != ncclSuccess) tp_log_warn("%s failed: %s", what, ncclGetErrorString(r));
}

/* Collective while the communicator is healthy (NCCL's finalisation talks to the peers). */
static void nccl_free(tp_comm_t *c)
{
    nccl_state_t *s = c->impl;
    if (s) {
        if (s->comm && !s->failed && sync_stream(c) != TP_OK) s->failed = 1;
        if (s->comm && s->failed) {
            warn_nccl(ncclCommAbort(s->comm), "ncclCommAbort");
        } else if (s->comm) {
            ncclResult_t r = ncclCommFinalize(s->comm);
            warn_nccl(r, "ncclCommFinalize");
            if (r == ncclSuccess)
                warn_nccl(ncclCommDestroy(s->comm), "ncclCommDestroy");
            else
                warn_nccl(ncclCommAbort(s->comm), "ncclCommAbort");
        }
        for (int i = 0; i < s->npool; i++)
            cudaEventDestroy(s->pool[i]);
        if (s->ready) cudaEventDestroy(s->ready);
        if (s->stream) cudaStreamDestroy(s->stream);
        if (s->scratch) cudaFree(s->scratch);
        tp_gpu_timing_free(s->timing);
        free(s);
    }
    free(c);
}

static void nccl_set_compute_stream(tp_comm_t *c, void *stream)
{
    nccl_state_t *s = c->impl;
    s->compute = stream ? (cudaStream_t)stream : cudaStreamLegacy;
}

static const tp_comm_iface_t nccl_iface = {
    .name = "nccl",
    .allreduce = nccl_allreduce,
    .bcast = nccl_bcast,
    .allgather = nccl_allgather,
    .reduce_scatter = nccl_reduce_scatter,
    .barrier = nccl_barrier,
    .iallreduce = nccl_istart,
    .ireduce_scatter = nccl_istart,
    .iallgather = nccl_istart,
    .test = nccl_test,
    .wait = nccl_wait,
    .wait_ordered = nccl_wait_ordered,
    .sync = nccl_sync,
    .device_times = nccl_device_times,
    .req_free = nccl_req_free,
    .buf_alloc = nccl_buf_alloc,
    .buf_free = nccl_buf_free,
    .buf_copy = nccl_buf_copy,
    .set_compute_stream = nccl_set_compute_stream,
    .abort = nccl_abort,
    .free = nccl_free,
};

/* The node-local rank that picks the GPU: the launcher's numbering where there is one (it is how
 * the launcher bound the process), else the host communicator's. */
static int gpu_local_rank(tp_comm_t *host, const char **from)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (!v || !*v) continue;
        char *end = NULL;
        errno = 0;
        long r = strtol(v, &end, 10);
        if (errno == 0 && *end == '\0' && r >= 0 && r <= INT_MAX) {
            *from = vars[i];
            return (int)r;
        }
        tp_log_warn("communicator 'nccl': ignoring %s=\"%s\" (not a rank number)", vars[i], v);
    }
    *from = "the host communicator";
    return tp_comm_local_rank(host);
}

static tp_status_t pick_device(tp_comm_t *c, tp_comm_t *host)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0)
        return TP_ERR(TP_ERR_UNSUPPORTED,
                      "communicator 'nccl': no usable GPU on %s (%s). HINT: check nvidia-smi and "
                      "CUDA_VISIBLE_DEVICES, or train with a host communicator",
                      tp_comm_host(host), e != cudaSuccess ? cudaGetErrorString(e) : "no devices");
    const char *from = "";
    int lr = gpu_local_rank(host, &from);
    int dev = lr % n;
    e = cudaSetDevice(dev);
    if (e != cudaSuccess)
        return TP_ERR(TP_ERR_CUDA,
                      "communicator 'nccl': cudaSetDevice(%d) failed: %s (node-local rank %d from "
                      "%s, %d GPU(s) visible)",
                      dev, cudaGetErrorString(e), lr, from, n);
    c->device = dev;
    return TP_OK;
}

/* Everything after the GPU is chosen and the id is shared. */
static tp_status_t nccl_setup(tp_comm_t *c, nccl_state_t *s, ncclUniqueId id)
{
    ncclResult_t r = ncclCommInitRank(&s->comm, c->size, id, c->rank);
    if (r != ncclSuccess) {
        const char *last = ncclGetLastError(NULL);
        s->comm = NULL;
        return TP_ERR(
            TP_ERR_CUDA,
            "ncclCommInitRank (rank %d of %d, GPU %d) failed: %s%s%s. HINT: every rank "
            "needs a GPU of its own (%d rank(s) on this node); NCCL_DEBUG=WARN shows more",
            c->rank, c->size, c->device, ncclGetErrorString(r), last && *last ? ": " : "",
            last && *last ? last : "", c->local_size);
    }
    int least = 0, greatest = 0;
    TP_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    TP_CUDA_CHECK(cudaStreamCreateWithPriority(&s->stream, cudaStreamNonBlocking, greatest));
    s->compute = cudaStreamLegacy;
    TP_CUDA_CHECK(cudaEventCreateWithFlags(&s->ready, cudaEventDisableTiming));
    TP_CUDA_CHECK(cudaMalloc((void **)&s->scratch, sizeof *s->scratch));
    TP_CUDA_CHECK(cudaMemset(s->scratch, 0, sizeof *s->scratch));
    s->timing = tp_gpu_timing_create(); /* NULL (out of memory): times are not measured */

    int v = 0, rt = 0;
    TP_NCCL_CHECK(ncclGetVersion(&v));
    TP_CUDA_CHECK(cudaRuntimeGetVersion(&rt));
    /* NCCL_VERSION: X*10000 + Y*100 + Z since 2.9, X*1000 + Y*100 + Z before. */
    int major = v >= 10000 ? v / 10000 : v / 1000,
        minor = v >= 10000 ? v % 10000 / 100 : v % 1000 / 100;
    snprintf(c->library, sizeof c->library, "NCCL %d.%d.%d (CUDA runtime %d.%d)", major, minor,
             v % 100, rt / 1000, rt % 1000 / 10);
    return TP_OK;
}

tp_status_t tp_comm_nccl_create(tp_comm_t *host, tp_comm_t **out)
{
    *out = NULL;
    tp_comm_t *c = tp_calloc(1, sizeof *c, "communicator");
    nccl_state_t *s = tp_calloc(1, sizeof *s, "NCCL communicator state");
    if (!c || !s) {
        free(c);
        free(s);
        return TP_ERR_NOMEM;
    }
    c->iface = &nccl_iface;
    c->impl = s;
    c->device = -1;
    c->watchdog = NULL; /* the host communicator has one */
    c->rank = tp_comm_rank(host);
    c->size = tp_comm_size(host);
    c->local_rank = tp_comm_local_rank(host);
    c->local_size = tp_comm_local_size(host);
    snprintf(c->host, sizeof c->host, "%s", tp_comm_host(host));
    snprintf(c->library, sizeof c->library, "NCCL");
    s->host = host;

    /* Every rank learns whether all have a GPU (and rank 0 an id) before NCCL waits for peers. */
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    tp_status_t st = pick_device(c, host);
    if (st == TP_OK && c->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) st = tp_nccl_report(r, NULL, "ncclGetUniqueId", __FILE__, __LINE__);
    }
    st = tp_comm_agree(host, st);
    if (st == TP_OK) { /* the same on every rank */
        st = tp_comm_bcast(host, &id, sizeof id, TP_DT_BYTE, 0);
        if (st == TP_OK) st = nccl_setup(c, s, id);
        st = tp_comm_agree(host, st);
    }
    if (st != TP_OK) {
        s->failed = 1; /* peers may be gone: abort, do not finalise with them */
        nccl_free(c);
        return st;
    }
    *out = c;
    return TP_OK;
}
