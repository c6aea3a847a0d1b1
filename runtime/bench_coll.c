/* The collective table of `tulpar bench` (see bench_coll.h): one entry per collective, plus data
 * initialisation and checking shared by all of them (on host memory; cli_bench_coll.c uploads and
 * downloads). Timing and printing are in cli_bench_coll.c. */
#include "bench_coll.h"

#include <math.h>
#include <string.h>

size_t tp_bench_coll_elem_size(tp_dtype_t dt)
{
    return dt == TP_DT_DOUBLE || dt == TP_DT_INT64 ? 8 : dt == TP_DT_BYTE ? 1 : 4;
}

double tp_bench_coll_value(int rank, size_t g)
{
    /* Rank- and index-dependent so that a block landing on the wrong rank or offset shows. */
    return (double)((g * 7 + (size_t)rank * 3) % 16) - 4.0;
}

static double reduce_expected(size_t g, int nranks, tp_redop_t op)
{
    double acc = tp_bench_coll_value(0, g);
    for (int r = 1; r < nranks; r++) {
        double v = tp_bench_coll_value(r, g);
        if (op == TP_RED_MAX)
            acc = v > acc ? v : acc;
        else if (op == TP_RED_MIN)
            acc = v < acc ? v : acc;
        else
            acc += v;
    }
    return op == TP_RED_AVG ? acc / nranks : acc;
}

/* ---- all-reduce: size = count elements, in place on one buffer ---- */
static void allreduce_counts(size_t count, int nranks, int rank, tp_bench_counts_t *k)
{
    *k = (tp_bench_counts_t){.send = count, .recv = count, .param = count};
}
static double allreduce_factor(int n)
{
    return 2.0 * (n - 1) / n;
}
static size_t plain_index(size_t j, int rank, const tp_bench_counts_t *k)
{
    return j;
}
static double allreduce_expected(size_t i, int rank, int nranks, int root, tp_redop_t op,
                                 const tp_bench_counts_t *k)
{
    return reduce_expected(i, nranks, op);
}
static tp_status_t allreduce_run(tp_comm_t *c, const void *send, void *recv,
                                 const tp_bench_counts_t *k, tp_dtype_t dt, tp_redop_t op, int root,
                                 bool in_place)
{
    /* The communicator's all-reduce is in place only: out of place costs a copy first (on the
     * device for a device communicator). */
    if (!in_place) TP_TRY(tp_comm_buf_copy(c, recv, send, k->send * tp_bench_coll_elem_size(dt)));
    return tp_comm_allreduce(c, recv, k->recv, dt, op);
}

/* ---- reduce-scatter: size = the send buffer (nranks blocks), rank r gets block r ---- */
static void reducescatter_counts(size_t count, int nranks, int rank, tp_bench_counts_t *k)
{
    size_t base = count / (size_t)nranks;
    *k = (tp_bench_counts_t){
        .send = base * nranks, .recv = base, .param = base, .recv_ip_off = base * (size_t)rank};
}
static double nminus1_factor(int n)
{
    return (double)(n - 1) / n;
}
static double reducescatter_expected(size_t i, int rank, int nranks, int root, tp_redop_t op,
                                     const tp_bench_counts_t *k)
{
    return reduce_expected((size_t)rank * k->recv + i, nranks, op);
}
static tp_status_t reducescatter_run(tp_comm_t *c, const void *send, void *recv,
                                     const tp_bench_counts_t *k, tp_dtype_t dt, tp_redop_t op,
                                     int root, bool in_place)
{
    return tp_comm_reduce_scatter(c, send, recv, k->recv, dt, op);
}

/* ---- all-gather: size = the receive buffer (nranks blocks), rank r sends block r ---- */
static void allgather_counts(size_t count, int nranks, int rank, tp_bench_counts_t *k)
{
    size_t base = count / (size_t)nranks;
    *k = (tp_bench_counts_t){
        .send = base, .recv = base * nranks, .param = base, .send_ip_off = base * (size_t)rank};
}
static size_t allgather_index(size_t j, int rank, const tp_bench_counts_t *k)
{
    return (size_t)rank * k->send + j;
}
static double allgather_expected(size_t i, int rank, int nranks, int root, tp_redop_t op,
                                 const tp_bench_counts_t *k)
{
    return k->send ? tp_bench_coll_value((int)(i / k->send), i) : 0.0;
}
static tp_status_t allgather_run(tp_comm_t *c, const void *send, void *recv,
                                 const tp_bench_counts_t *k, tp_dtype_t dt, tp_redop_t op, int root,
                                 bool in_place)
{
    return tp_comm_allgather(c, send, recv, k->send, dt);
}

/* ---- broadcast: size = count elements from root ---- */
static double broadcast_factor(int n)
{
    return 1.0;
}
static double broadcast_expected(size_t i, int rank, int nranks, int root, tp_redop_t op,
                                 const tp_bench_counts_t *k)
{
    return tp_bench_coll_value(root, i);
}
static tp_status_t broadcast_run(tp_comm_t *c, const void *send, void *recv,
                                 const tp_bench_counts_t *k, tp_dtype_t dt, tp_redop_t op, int root,
                                 bool in_place)
{
    /* In place only in the communicator, as for all-reduce: the root copies first. */
    if (!in_place && tp_comm_rank(c) == root)
        TP_TRY(tp_comm_buf_copy(c, recv, send, k->send * tp_bench_coll_elem_size(dt)));
    return tp_comm_bcast(c, recv, k->recv, dt, root);
}

static const tp_bench_coll_t colls[] = {
    {"allreduce", true, false, allreduce_counts, allreduce_factor, plain_index, allreduce_expected,
     allreduce_run},
    {"reducescatter", true, false, reducescatter_counts, nminus1_factor, plain_index,
     reducescatter_expected, reducescatter_run},
    {"allgather", false, false, allgather_counts, nminus1_factor, allgather_index,
     allgather_expected, allgather_run},
    {"broadcast", false, true, allreduce_counts, broadcast_factor, plain_index, broadcast_expected,
     broadcast_run},
};

const tp_bench_coll_t *tp_bench_coll_find(const char *name)
{
    for (size_t i = 0; i < sizeof colls / sizeof colls[0]; i++)
        if (strcmp(colls[i].name, name) == 0) return &colls[i];
    return NULL;
}

void tp_bench_coll_init(const tp_bench_coll_t *b, void *send, const tp_bench_counts_t *k,
                        tp_dtype_t dt, int rank)
{
    for (size_t j = 0; j < k->send; j++) {
        double v = tp_bench_coll_value(rank, b->send_index(j, rank, k));
        if (dt == TP_DT_DOUBLE)
            ((double *)send)[j] = v;
        else
            ((float *)send)[j] = (float)v;
    }
}

size_t tp_bench_coll_check(const tp_bench_coll_t *b, const void *recv, const tp_bench_counts_t *k,
                           tp_dtype_t dt, tp_redop_t op, int rank, int nranks, int root)
{
    /* Sums of small integers are exact; an average may round, by at most an ulp or so. */
    double tol = op == TP_RED_AVG && b->has_op ? (dt == TP_DT_DOUBLE ? 1e-12 : 1e-6) : 0.0;
    size_t wrong = 0;
    for (size_t i = 0; i < k->recv; i++) {
        double got = dt == TP_DT_DOUBLE ? ((const double *)recv)[i] : ((const float *)recv)[i];
        double want = b->expected(i, rank, nranks, root, op, k);
        if (!(fabs(got - want) <= tol * fmax(1.0, fabs(want)))) wrong++;
    }
    return wrong;
}
