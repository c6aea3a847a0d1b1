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
    void (*abort)(tp_comm_t *c, int code);
    void (*free)(tp_comm_t *c);
} tp_comm_iface_t;

struct tp_comm {
    const tp_comm_iface_t *iface;
    int rank, size, local_rank, local_size;
    char host[256];
    char library[256];
    void *impl;
    struct tp_comm_watchdog *watchdog; /* dead/hung rank detection (comm_watchdog.c); or NULL */
};

size_t tp_dtype_size(tp_dtype_t dt);

tp_status_t tp_comm_self_create(tp_comm_t **out);
tp_status_t tp_comm_mpi_create(int *argc, char ***argv, tp_comm_t **out);

#endif
