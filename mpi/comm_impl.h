/* Private: the communicator interface struct and object. Only implementations and comm.c. */
#ifndef TP_COMM_IMPL_H
#define TP_COMM_IMPL_H

#include "comm.h"

typedef struct tp_comm_iface {
    const char *name;
    tp_status_t (*allreduce)(tp_comm_t *c, void *buf, size_t count, tp_dtype_t dt, tp_redop_t op);
    tp_status_t (*bcast)(tp_comm_t *c, void *buf, size_t count, tp_dtype_t dt, int root);
    tp_status_t (*allgather)(tp_comm_t *c, const void *send, void *recv, size_t count,
                             tp_dtype_t dt);
    tp_status_t (*reduce_scatter)(tp_comm_t *c, const void *send, void *recv, size_t recv_count,
                                  tp_dtype_t dt, tp_redop_t op);
    tp_status_t (*barrier)(tp_comm_t *c);
    /* Non-blocking forms: fill the implementation's part of req (req->impl) and start. */
    tp_status_t (*iallreduce)(tp_comm_t *c, tp_comm_req_t *req);
    tp_status_t (*ireduce_scatter)(tp_comm_t *c, tp_comm_req_t *req);
    tp_status_t (*iallgather)(tp_comm_t *c, tp_comm_req_t *req);
    /* Progress req; set *done when complete. wait blocks (NULL: test in a loop). */
    tp_status_t (*test)(tp_comm_t *c, tp_comm_req_t *req, int *done);
    tp_status_t (*wait)(tp_comm_t *c, tp_comm_req_t *req);
    /* Optional (device communicators): order the compute stream after req without blocking;
     * NULL: wait. */
    tp_status_t (*wait_ordered)(tp_comm_t *c, tp_comm_req_t *req);
    /* Optional (device communicators): tp_comm_sync; NULL: nothing to wait for. */
    tp_status_t (*sync)(tp_comm_t *c);
    /* Optional (device communicators): tp_comm_take_device_times; NULL: false. */
    bool (*device_times)(tp_comm_t *c, double *exposed_s, double *total_s);
    void (*req_free)(tp_comm_t *c, tp_comm_req_t *req); /* release req->impl */
    /* Buffers the collectives work on; NULL: host memory (malloc, memcpy). buf_copy's last
     * argument is the direction: 1 host -> buffer (upload), 0 buffer -> host (download), 2 buffer
     * -> buffer of this communicator (tp_comm_buf_copy). */
    void *(*buf_alloc)(tp_comm_t *c, size_t bytes);
    void (*buf_free)(tp_comm_t *c, void *buf);
    tp_status_t (*buf_copy)(tp_comm_t *c, void *dst, const void *src, size_t bytes, int to_device);
    /* Optional (device communicators): the stream compute work is queued on. */
    void (*set_compute_stream)(tp_comm_t *c, void *stream);
    void (*abort)(tp_comm_t *c, int code);
    void (*free)(tp_comm_t *c);
} tp_comm_iface_t;

struct tp_comm {
    const tp_comm_iface_t *iface;
    int rank, size, local_rank, local_size;
    int device; /* CUDA device of a device communicator; -1 for host communicators */
    char host[256];
    char library[256];
    void *impl;
    struct tp_comm_watchdog *watchdog; /* dead/hung rank detection (comm_watchdog.c); or NULL */
    /* Finished requests kept for reuse, so that a training step's buckets allocate nothing. */
    struct tp_comm_req *spare_reqs;
};

typedef enum { TP_REQ_ALLREDUCE, TP_REQ_REDUCE_SCATTER, TP_REQ_ALLGATHER } tp_req_kind_t;

/* A non-blocking collective in flight: its arguments (for the AVG division and the
 * implementation) and the implementation's state. */
struct tp_comm_req {
    tp_req_kind_t kind;
    void *send, *recv; /* allreduce: recv is the buffer (in place) */
    size_t count; /* allreduce: elements; reduce-scatter: per-rank block; allgather: per rank */
    tp_dtype_t dt;
    tp_redop_t op;
    void *impl;
    struct tp_comm_req *next_spare; /* on the communicator's list of finished requests */
};

size_t tp_dtype_size(tp_dtype_t dt);
/* Divide count elements by n (TP_RED_AVG after a sum). */
void tp_dtype_divide(void *buf, size_t count, tp_dtype_t dt, int n);

tp_status_t tp_comm_self_create(tp_comm_t **out);
tp_status_t tp_comm_mpi_create(int *argc, char ***argv, tp_comm_t **out);

#endif
