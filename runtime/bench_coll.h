/* The collective benchmark harness behind `tulpar bench allreduce|reducescatter|allgather|
 * broadcast`, shaped like nccl-tests' src/common.cu: one table entry per collective (how a size
 * maps to element counts, the bus-bandwidth factor, what each element should hold, how to run it
 * through the communicator), and one driver that times, checks and prints them all alike. */
#ifndef TP_BENCH_COLL_H
#define TP_BENCH_COLL_H

#include <stdbool.h>
#include <stddef.h>

#include "comm.h"

/* Element counts for one benchmark size (nccl-tests' GetCollByteCount). */
typedef struct tp_bench_counts {
    size_t send, recv;               /* elements per rank in the send and receive buffers */
    size_t param;                    /* the "count" column (the count argument of the call) */
    size_t bytes;                    /* the "size" column: the larger of the two buffers */
    size_t send_ip_off, recv_ip_off; /* in place: offsets (elements) within one shared buffer */
} tp_bench_counts_t;

typedef struct tp_bench_coll {
    const char *name;
    bool has_op, has_root;
    void (*counts)(size_t count, int nranks, int rank, tp_bench_counts_t *k);
    double (*bus_factor)(int nranks); /* busbw = algbw * factor (nccl-tests doc/PERFORMANCE.md) */
    /* Global index of send element j, the value seed that init and expected agree on. */
    size_t (*send_index)(size_t j, int rank, const tp_bench_counts_t *k);
    double (*expected)(size_t i, int rank, int nranks, int root, tp_redop_t op,
                       const tp_bench_counts_t *k);
    /* One call on the communicator's buffers (tp_comm_buf_alloc: device memory for "nccl"). */
    tp_status_t (*run)(tp_comm_t *c, const void *send, void *recv, const tp_bench_counts_t *k,
                       tp_dtype_t dt, tp_redop_t op, int root, bool in_place);
} tp_bench_coll_t;

/* Bytes per element of the benchmark's dtypes (float, double). */
size_t tp_bench_coll_elem_size(tp_dtype_t dt);

/* The entry named `name`, or NULL. */
const tp_bench_coll_t *tp_bench_coll_find(const char *name);

/* The value rank r contributes at global index g: small integers, exact in float sums. */
double tp_bench_coll_value(int rank, size_t g);

/* Fill send (k->send elements, host memory: upload it to the communicator's buffer) with this
 * rank's values. */
void tp_bench_coll_init(const tp_bench_coll_t *b, void *send, const tp_bench_counts_t *k,
                        tp_dtype_t dt, int rank);
/* Number of recv elements (k->recv, host memory: a download of the communicator's buffer) that
 * differ from the expected result. */
size_t tp_bench_coll_check(const tp_bench_coll_t *b, const void *recv, const tp_bench_counts_t *k,
                           tp_dtype_t dt, tp_redop_t op, int rank, int nranks, int root);

/* `tulpar bench <collective> [flags]` (cli_bench_coll.c): argv[0] is the collective's name.
 * Starts the communicator itself (MPI under a launcher; with --comm nccl a NCCL communicator over
 * it, device buffers) and returns a tp_status_t. */
int tp_bench_coll_main(int argc, char **argv);

#endif
