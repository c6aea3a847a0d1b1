/* The MPI communicator (host buffers). Owns a duplicate of MPI_COMM_WORLD with
 * MPI_ERRORS_RETURN, so failures come back as statuses with MPI's error text. */
#include "comm_impl.h"
#include "comm_watchdog.h"
#include "mpi_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mpi_state {
    MPI_Comm comm;
    int initialised_here;
    /* Reduce-scatter's two block buffers, grown once and reused: fresh pages are slow here. */
    void *rs_buf[2];
    size_t rs_bytes;
    /* Scratch blocks of non-blocking reduce-scatters, kept for reuse (same reason). */
    void *pool[16];
    size_t pool_bytes[16];
    int next_tag; /* one tag per non-blocking ring, so concurrent rings never match each other */
    struct mpi_req *spare; /* finished request states kept for reuse (no allocation per bucket) */
} mpi_state_t;

tp_status_t tp_mpi_report(int rc, const char *stmt, const char *file, int line)
{
    char msg[MPI_MAX_ERROR_STRING] = "unknown MPI error";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    tp_log_error_at(file, line, "%s failed: %s", stmt, msg);
    return TP_ERR_MPI;
}

MPI_Datatype tp_mpi_type(tp_dtype_t dt)
{
    switch (dt) {
    case TP_DT_FLOAT:
        return MPI_FLOAT;
    case TP_DT_DOUBLE:
        return MPI_DOUBLE;
    case TP_DT_INT64:
        return MPI_INT64_T;
    case TP_DT_BYTE:
        return MPI_BYTE;
    }
    return MPI_BYTE;
}

MPI_Op tp_mpi_op(tp_redop_t op)
{
    switch (op) {
    case TP_RED_SUM:
    case TP_RED_AVG:
        return MPI_SUM;
    case TP_RED_MAX:
        return MPI_MAX;
    case TP_RED_MIN:
        return MPI_MIN;
    }
    return MPI_SUM;
}

static MPI_Comm comm_of(tp_comm_t *c)
{
    return ((mpi_state_t *)c->impl)->comm;
}

/* MPI counts are int: large buffers go in pieces. */
#define TP_MPI_MAX_COUNT ((size_t)1 << 30)

static tp_status_t mpi_allreduce(tp_comm_t *c, void *buf, size_t count, tp_dtype_t dt,
                                 tp_redop_t op)
{
    size_t esz = tp_dtype_size(dt);
    for (size_t off = 0; off < count; off += TP_MPI_MAX_COUNT) {
        size_t n = count - off < TP_MPI_MAX_COUNT ? count - off : TP_MPI_MAX_COUNT;
        TP_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * esz, (int)n, tp_mpi_type(dt),
                                   tp_mpi_op(op), comm_of(c)));
    }
    if (op == TP_RED_AVG && c->size > 1) tp_dtype_divide(buf, count, dt, c->size);
    return TP_OK;
}

static tp_status_t mpi_bcast(tp_comm_t *c, void *buf, size_t count, tp_dtype_t dt, int root)
{
    size_t esz = tp_dtype_size(dt);
    for (size_t off = 0; off < count; off += TP_MPI_MAX_COUNT) {
        size_t n = count - off < TP_MPI_MAX_COUNT ? count - off : TP_MPI_MAX_COUNT;
        TP_MPI_CHECK(MPI_Bcast((char *)buf + off * esz, (int)n, tp_mpi_type(dt), root, comm_of(c)));
    }
    return TP_OK;
}

static tp_status_t mpi_allgather(tp_comm_t *c, const void *send, void *recv, size_t count,
                                 tp_dtype_t dt)
{
    if (count > TP_MPI_MAX_COUNT)
        return TP_ERR(TP_ERR_UNSUPPORTED, "allgather of %zu elements per rank exceeds %zu", count,
                      TP_MPI_MAX_COUNT);
    /* Send aliasing this rank's block of recv is erroneous in MPI unless spelled MPI_IN_PLACE. */
    if (send == (const char *)recv + (size_t)c->rank * count * tp_dtype_size(dt))
        send = MPI_IN_PLACE;
    TP_MPI_CHECK(MPI_Allgather(send, (int)count, tp_mpi_type(dt), recv, (int)count, tp_mpi_type(dt),
                               comm_of(c)));
    return TP_OK;
}

/* Reduce-scatter as a ring of MPI_Sendrecv + MPI_Reduce_local over two reused block buffers:
 * step s sends the partial sum of block (r-1-s) to the right and adds this rank's block (r-2-s)
 * to what arrives from the left; after size-1 steps the block that arrives is r.
 * Measured here (Open MPI 4.1.4, 2 ranks, vader, float sum, busbw (n-1)/n, two runs):
 *   MPI_Reduce_scatter_block          0.71 / 0.70 GB/s at 1 MiB, 0.64 / 0.63 at 64 MiB
 *   MPI_Allreduce (reused buf) + copy 3.13 / 0.73 GB/s at 1 MiB, 0.85 / 0.86 at 64 MiB
 *   this ring                         5.89 / 7.17 GB/s at 1 MiB, 2.97 / 2.88 at 64 MiB
 * so the ring it is. */
static tp_status_t rs_reserve(mpi_state_t *s, size_t bytes)
{
    if (bytes <= s->rs_bytes) return TP_OK;
    for (int i = 0; i < 2; i++) {
        free(s->rs_buf[i]);
        s->rs_buf[i] = tp_malloc(bytes, "reduce-scatter buffer");
        if (s->rs_buf[i]) memset(s->rs_buf[i], 0, bytes); /* touch the pages now, not in a step */
        if (!s->rs_buf[i]) {
            free(s->rs_buf[1 - i]);
            s->rs_buf[0] = s->rs_buf[1] = NULL;
            s->rs_bytes = 0;
            return TP_ERR_NOMEM;
        }
    }
    s->rs_bytes = bytes;
    return TP_OK;
}

static tp_status_t mpi_reduce_scatter(tp_comm_t *c, const void *send, void *recv, size_t recv_count,
                                      tp_dtype_t dt, tp_redop_t op)
{
    mpi_state_t *s = c->impl;
    size_t esz = tp_dtype_size(dt), bytes = recv_count * esz;
    int n = c->size, r = c->rank;
    const char *in = send;
    if (n == 1 || recv_count == 0) {
        if (send != recv) memmove(recv, send, bytes);
        return TP_OK;
    }
    if (recv_count > TP_MPI_MAX_COUNT)
        return TP_ERR(TP_ERR_UNSUPPORTED, "reduce-scatter of %zu elements per rank exceeds %zu",
                      recv_count, TP_MPI_MAX_COUNT);
    TP_TRY(rs_reserve(s, bytes));
    int right = (r + 1) % n, left = (r - 1 + n) % n, cnt = (int)recv_count;
    char *out = s->rs_buf[0], *arrive = s->rs_buf[1];
    for (int step = 0; step < n - 1; step++) {
        int sb = ((r - 1 - step) % n + n) % n, rb = ((r - 2 - step) % n + n) % n;
        const void *partial = step == 0 ? in + (size_t)sb * bytes : out;
        TP_MPI_CHECK(MPI_Sendrecv(partial, cnt, tp_mpi_type(dt), right, 0, arrive, cnt,
                                  tp_mpi_type(dt), left, 0, comm_of(c), MPI_STATUS_IGNORE));
        TP_MPI_CHECK(
            MPI_Reduce_local(in + (size_t)rb * bytes, arrive, cnt, tp_mpi_type(dt), tp_mpi_op(op)));
        char *t = out;
        out = arrive;
        arrive = t;
    }
    memcpy(recv, out, bytes); /* recv may be this rank's block of send: read for the last time */
    if (op == TP_RED_AVG) tp_dtype_divide(recv, recv_count, dt, n);
    return TP_OK;
}

/* ---- non-blocking ----------------------------------------------------------------------
 * Rings as state machines advanced by test/wait, one MPI_Isend/MPI_Irecv pair per step:
 *   reduce-scatter: n-1 steps; partial sums accumulate in place in the send buffer (the
 *     documented workspace), so a ring needs one scratch block for what arrives;
 *   all-reduce: the same reduce-scatter over n near-equal blocks of the buffer, the rank's own
 *     block averaged (TP_RED_AVG) once it is complete, then n-1 all-gather steps that receive
 *     straight into place.
 * Small all-reduces (latency-bound) and all-gathers use MPI's own non-blocking collectives.
 * Measured (2 ranks, vader, 1 MiB float sum): the all-reduce ring needs 2 exchanges, Open MPI's
 * MPI_Iallreduce several rounds that each wait for the next progress call; see
 * benchmarks/README.md. */
#define TP_RING_TAG_BASE  1000
#define TP_RING_TAGS      30000
#define TP_RING_MIN_BYTES (64u << 10)

typedef struct mpi_req {
    MPI_Request
        r[(64 + TP_MPI_MAX_COUNT - 1) / TP_MPI_MAX_COUNT + 2]; /* chunks, or the ring pair */
    int nr;
    /* ring: buf holds n blocks (block b at element off(b), len(b) elements) */
    int ring, step, phase, tag; /* phase 0: reduce-scatter, 1: all-gather */
    char *buf;
    size_t total, base, rem;
    void *arrive;
    size_t arrive_bytes;
    struct mpi_req *next_spare;
} mpi_req_t;

/* A zeroed request state, from the spare list when there is one. */
static mpi_req_t *req_state(tp_comm_t *c)
{
    mpi_state_t *s = c->impl;
    mpi_req_t *q = s->spare;
    if (!q) return tp_calloc(1, sizeof *q, "MPI request");
    s->spare = q->next_spare;
    memset(q, 0, sizeof *q);
    return q;
}

static void *pool_take(mpi_state_t *s, size_t bytes, size_t *got)
{
    int best = -1;
    for (int i = 0; i < 16; i++)
        if (s->pool[i] && s->pool_bytes[i] >= bytes &&
            (best < 0 || s->pool_bytes[i] < s->pool_bytes[best]))
            best = i;
    if (best >= 0) {
        void *p = s->pool[best];
        *got = s->pool_bytes[best];
        s->pool[best] = NULL;
        return p;
    }
    void *p = tp_malloc(bytes ? bytes : 1, "ring scratch block");
    *got = bytes;
    return p;
}

static void pool_give(mpi_state_t *s, void *p, size_t bytes)
{
    if (!p) return;
    int slot = -1;
    for (int i = 0; i < 16 && slot < 0; i++)
        if (!s->pool[i]) slot = i;
    if (slot < 0) { /* full: replace the smallest if this one is larger */
        slot = 0;
        for (int i = 1; i < 16; i++)
            if (s->pool_bytes[i] < s->pool_bytes[slot]) slot = i;
        if (s->pool_bytes[slot] >= bytes) {
            free(p);
            return;
        }
        free(s->pool[slot]);
    }
    s->pool[slot] = p;
    s->pool_bytes[slot] = bytes;
}

static size_t blk_len(const mpi_req_t *q, int b)
{
    return q->base + ((size_t)b < q->rem);
}

static size_t blk_off(const mpi_req_t *q, int b)
{
    return (size_t)b * q->base + ((size_t)b < q->rem ? (size_t)b : q->rem);
}

static int mod(int a, int n)
{
    return (a % n + n) % n;
}

/* Post the current step: reduce-scatter sends the partial sum of block (r-1-step) and receives
 * block (r-2-step) into scratch; all-gather sends the complete block (r-step) and receives block
 * (r-1-step) in place. */
static tp_status_t ring_post(tp_comm_t *c, tp_comm_req_t *req, mpi_req_t *q)
{
    int n = c->size, r = c->rank;
    size_t esz = tp_dtype_size(req->dt);
    MPI_Datatype t = tp_mpi_type(req->dt);
    int sb = q->phase == 0 ? mod(r - 1 - q->step, n) : mod(r - q->step, n);
    int rb = q->phase == 0 ? mod(r - 2 - q->step, n) : mod(r - 1 - q->step, n);
    void *into = q->phase == 0 ? q->arrive : q->buf + blk_off(q, rb) * esz;
    TP_MPI_CHECK(
        MPI_Irecv(into, (int)blk_len(q, rb), t, mod(r - 1, n), q->tag, comm_of(c), &q->r[0]));
    TP_MPI_CHECK(MPI_Isend(q->buf + blk_off(q, sb) * esz, (int)blk_len(q, sb), t, mod(r + 1, n),
                           q->tag, comm_of(c), &q->r[1]));
    q->nr = 2;
    return TP_OK;
}

static tp_status_t ring_start(tp_comm_t *c, tp_comm_req_t *req, mpi_req_t *q, void *buf,
                              size_t total)
{
    mpi_state_t *s = c->impl;
    q->ring = 1;
    q->buf = buf;
    q->total = total;
    q->base = total / (size_t)c->size;
    q->rem = total % (size_t)c->size;
    if (q->base + 1 > TP_MPI_MAX_COUNT)
        return TP_ERR(TP_ERR_UNSUPPORTED, "ring of %zu elements per rank exceeds %zu", q->base,
                      TP_MPI_MAX_COUNT);
    q->arrive = pool_take(s, (q->base + 1) * tp_dtype_size(req->dt), &q->arrive_bytes);
    if (!q->arrive) return TP_ERR_NOMEM;
    q->tag = TP_RING_TAG_BASE + s->next_tag;
    s->next_tag = (s->next_tag + 1) % TP_RING_TAGS;
    return ring_post(c, req, q);
}

static tp_status_t mpi_iallreduce(tp_comm_t *c, tp_comm_req_t *req)
{
    mpi_req_t *q = req_state(c);
    if (!q) return TP_ERR_NOMEM;
    req->impl = q;
    size_t esz = tp_dtype_size(req->dt);
    if (c->size == 1 || req->count == 0) return TP_OK;
    if (req->count * esz >= TP_RING_MIN_BYTES && req->count >= (size_t)c->size &&
        req->count / (size_t)c->size < TP_MPI_MAX_COUNT &&
        (req->op == TP_RED_SUM || req->op == TP_RED_AVG || req->op == TP_RED_MAX ||
         req->op == TP_RED_MIN))
        return ring_start(c, req, q, req->recv, req->count);
    for (size_t off = 0; off < req->count; off += TP_MPI_MAX_COUNT) {
        size_t n = req->count - off < TP_MPI_MAX_COUNT ? req->count - off : TP_MPI_MAX_COUNT;
        if (q->nr == (int)(sizeof q->r / sizeof q->r[0]))
            return TP_ERR(TP_ERR_UNSUPPORTED,
                          "non-blocking all-reduce of %zu elements is too large", req->count);
        TP_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, (char *)req->recv + off * esz, (int)n,
                                    tp_mpi_type(req->dt), tp_mpi_op(req->op), comm_of(c),
                                    &q->r[q->nr]));
        q->nr++;
    }
    return TP_OK;
}

static tp_status_t mpi_iallgather(tp_comm_t *c, tp_comm_req_t *req)
{
    mpi_req_t *q = req_state(c);
    if (!q) return TP_ERR_NOMEM;
    req->impl = q;
    if (req->count > TP_MPI_MAX_COUNT)
        return TP_ERR(TP_ERR_UNSUPPORTED, "all-gather of %zu elements per rank exceeds %zu",
                      req->count, TP_MPI_MAX_COUNT);
    const void *send = req->send;
    if (send == (const char *)req->recv + (size_t)c->rank * req->count * tp_dtype_size(req->dt))
        send = MPI_IN_PLACE;
    TP_MPI_CHECK(MPI_Iallgather(send, (int)req->count, tp_mpi_type(req->dt), req->recv,
                                (int)req->count, tp_mpi_type(req->dt), comm_of(c), &q->r[0]));
    q->nr = 1;
    return TP_OK;
}

static tp_status_t mpi_ireduce_scatter(tp_comm_t *c, tp_comm_req_t *req)
{
    mpi_req_t *q = req_state(c);
    if (!q) return TP_ERR_NOMEM;
    req->impl = q;
    if (c->size == 1 || req->count == 0) return TP_OK; /* nothing in flight: done at first test */
    return ring_start(c, req, q, req->send, req->count * (size_t)c->size);
}

/* A ring step landed: fold it in and post the next step, or finish the phase. Returns 1 when
 * the ring is complete. */
static tp_status_t ring_step_done(tp_comm_t *c, tp_comm_req_t *req, mpi_req_t *q, int *complete)
{
    int n = c->size, r = c->rank;
    size_t esz = tp_dtype_size(req->dt);
    *complete = 0;
    if (q->phase == 0) {
        int rb = mod(r - 2 - q->step, n);
        TP_MPI_CHECK(MPI_Reduce_local(q->arrive, q->buf + blk_off(q, rb) * esz, (int)blk_len(q, rb),
                                      tp_mpi_type(req->dt), tp_mpi_op(req->op)));
    }
    if (++q->step < n - 1) return ring_post(c, req, q);
    /* phase over: block r is complete (reduce-scatter) or everything is (all-gather) */
    if (q->phase == 0 && req->op == TP_RED_AVG)
        tp_dtype_divide(q->buf + blk_off(q, r) * esz, blk_len(q, r), req->dt, n);
    if (q->phase == 0 && req->kind == TP_REQ_ALLREDUCE) {
        q->phase = 1;
        q->step = 0;
        return ring_post(c, req, q);
    }
    if (req->kind == TP_REQ_REDUCE_SCATTER) {
        char *own = q->buf + blk_off(q, r) * esz;
        if ((char *)req->recv != own) memcpy(req->recv, own, req->count * esz);
    }
    *complete = 1;
    return TP_OK;
}

/* Advance req as far as it goes without blocking (block = 0) or to completion (block = 1). */
static tp_status_t mpi_advance(tp_comm_t *c, tp_comm_req_t *req, int block, int *done)
{
    mpi_req_t *q = req->impl;
    *done = 0;
    for (;;) {
        if (q->nr > 0) {
            int flag = 1;
            if (block)
                TP_MPI_CHECK(MPI_Waitall(q->nr, q->r, MPI_STATUSES_IGNORE));
            else
                TP_MPI_CHECK(MPI_Testall(q->nr, q->r, &flag, MPI_STATUSES_IGNORE));
            if (!flag) return TP_OK;
            q->nr = 0;
        }
        if (!q->ring) break;
        int complete = 0;
        TP_TRY(ring_step_done(c, req, q, &complete));
        if (complete) break;
    }
    if (!q->ring) {
        if (req->kind == TP_REQ_REDUCE_SCATTER && req->recv != req->send) /* one rank */
            memmove(req->recv, req->send, req->count * tp_dtype_size(req->dt));
        else if (req->kind == TP_REQ_ALLREDUCE && req->op == TP_RED_AVG && c->size > 1)
            tp_dtype_divide(req->recv, req->count, req->dt, c->size);
    }
    *done = 1;
    return TP_OK;
}

static tp_status_t mpi_test(tp_comm_t *c, tp_comm_req_t *req, int *done)
{
    return mpi_advance(c, req, 0, done);
}

static tp_status_t mpi_wait(tp_comm_t *c, tp_comm_req_t *req)
{
    int done = 0;
    return mpi_advance(c, req, 1, &done);
}

static void mpi_req_free(tp_comm_t *c, tp_comm_req_t *req)
{
    mpi_req_t *q = req->impl;
    if (!q) return;
    /* A request abandoned after an error: let MPI free what is still posted. */
    for (int i = 0; i < q->nr; i++)
        if (q->r[i] != MPI_REQUEST_NULL) MPI_Request_free(&q->r[i]);
    mpi_state_t *s = c->impl;
    pool_give(s, q->arrive, q->arrive_bytes);
    q->next_spare = s->spare;
    s->spare = q;
    req->impl = NULL;
}

static tp_status_t mpi_barrier(tp_comm_t *c)
{
    TP_MPI_CHECK(MPI_Barrier(comm_of(c)));
    return TP_OK;
}

static void mpi_abort(tp_comm_t *c, int code)
{
    MPI_Abort(MPI_COMM_WORLD, code);
}

static void mpi_free(tp_comm_t *c)
{
    mpi_state_t *s = c->impl;
    tp_comm_watchdog_stop(c); /* before MPI goes away: peers that exit first are not "dead" */
    if (s) {
        if (s->comm != MPI_COMM_NULL) MPI_Comm_free(&s->comm);
        free(s->rs_buf[0]);
        free(s->rs_buf[1]);
        for (int i = 0; i < 16; i++)
            free(s->pool[i]);
        while (s->spare) {
            mpi_req_t *q = s->spare;
            s->spare = q->next_spare;
            free(q);
        }
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (s->initialised_here && !finalized) MPI_Finalize();
        free(s);
    }
    free(c);
}

static const tp_comm_iface_t mpi_iface = {
    .name = "mpi",
    .allreduce = mpi_allreduce,
    .bcast = mpi_bcast,
    .allgather = mpi_allgather,
    .reduce_scatter = mpi_reduce_scatter,
    .barrier = mpi_barrier,
    .iallreduce = mpi_iallreduce,
    .ireduce_scatter = mpi_ireduce_scatter,
    .iallgather = mpi_iallgather,
    .test = mpi_test,
    .wait = mpi_wait,
    .req_free = mpi_req_free,
    .abort = mpi_abort,
    .free = mpi_free,
};

static tp_status_t mpi_setup(tp_comm_t *c, mpi_state_t *s)
{
    TP_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    TP_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &s->comm));
    TP_MPI_CHECK(MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN));
    TP_MPI_CHECK(MPI_Comm_rank(s->comm, &c->rank));
    TP_MPI_CHECK(MPI_Comm_size(s->comm, &c->size));
    MPI_Comm node;
    TP_MPI_CHECK(MPI_Comm_split_type(s->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node));
    int lr = 0, ls = 1;
    int rc1 = MPI_Comm_rank(node, &lr), rc2 = MPI_Comm_size(node, &ls);
    MPI_Comm_free(&node);
    TP_MPI_CHECK(rc1);
    TP_MPI_CHECK(rc2);
    c->local_rank = lr;
    c->local_size = ls;
    int len = 0;
    char name[MPI_MAX_PROCESSOR_NAME];
    TP_MPI_CHECK(MPI_Get_processor_name(name, &len));
    snprintf(c->host, sizeof c->host, "%s", name);
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    TP_MPI_CHECK(MPI_Get_library_version(lib, &len));
    char *nl = strchr(lib, ',');
    if (nl) *nl = '\0';
    snprintf(c->library, sizeof c->library, "%s", lib);
    return TP_OK;
}

tp_status_t tp_comm_mpi_create(int *argc, char ***argv, tp_comm_t **out)
{
    tp_comm_t *c = tp_calloc(1, sizeof *c, "communicator");
    mpi_state_t *s = tp_calloc(1, sizeof *s, "MPI communicator state");
    if (!c || !s) {
        free(c);
        free(s);
        return TP_ERR_NOMEM;
    }
    c->iface = &mpi_iface;
    c->impl = s;
    c->device = -1;
    s->comm = MPI_COMM_NULL;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = 0;
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) {
            free(s);
            free(c);
            return tp_mpi_report(rc, "MPI_Init_thread", __FILE__, __LINE__);
        }
        s->initialised_here = 1;
    }
    tp_status_t st = mpi_setup(c, s);
    if (st != TP_OK) {
        mpi_free(c);
        return st;
    }
    tp_comm_watchdog_start(c, 300.0);
    *out = c;
    return TP_OK;
}
