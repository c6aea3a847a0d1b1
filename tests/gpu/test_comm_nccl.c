/* The NCCL communicator against host-computed expectations: every collective, blocking and
 * non-blocking, every element type and reduction, out of place and in place, on random non-zero
 * data with poisoned outputs. Without a GPU it prints "SKIP: no GPU" and returns 77.
 *
 * Started alone it runs over the one-rank "self" host communicator; under `mpirun -np N` (one GPU
 * per rank) over "mpi". Every rank generates every rank's inputs from (seed, rank), so each one
 * knows the expected result without exchanging data. */
#include <cuda_runtime.h>

#include "comm.h"
#include "cuda_probe.h"
#include "test_util.h"

static tp_comm_t *g_c;
static int g_n, g_me;

static const char *dt_name(tp_dtype_t dt)
{
    static const char *const names[] = {"float", "double", "int64", "byte"};
    return names[dt];
}

static const char *op_name(tp_redop_t op)
{
    static const char *const names[] = {"sum", "avg", "max", "min"};
    return names[op];
}

/* Non-zero values; bytes stay in 1..254 and integers at 2 or more in magnitude, so the 0xff
 * poison can never be a right answer. */
static void gen(tp_dtype_t dt, void *out, size_t n, uint64_t seed)
{
    tp_rng_t r;
    tp_rng_seed(&r, seed, 11);
    for (size_t i = 0; i < n; i++) {
        uint64_t bits = tp_rng_next(&r);
        double mag = 0.1 + 0.9 * tp_rng_uniform(&r);
        int64_t iv = 2 + (int64_t)((bits >> 8) % 1000000);
        switch (dt) {
        case TP_DT_FLOAT:
            ((float *)out)[i] = (float)(bits & 1 ? mag : -mag);
            break;
        case TP_DT_DOUBLE:
            ((double *)out)[i] = bits & 1 ? mag : -mag;
            break;
        case TP_DT_INT64:
            ((int64_t *)out)[i] = bits & 1 ? iv : -iv;
            break;
        case TP_DT_BYTE:
            ((uint8_t *)out)[i] = (uint8_t)(1 + (bits >> 8) % 254);
            break;
        }
    }
}

static size_t esize(tp_dtype_t dt)
{
    return dt == TP_DT_FLOAT ? 4 : dt == TP_DT_BYTE ? 1 : 8;
}

static double get_d(tp_dtype_t dt, const void *b, size_t i)
{
    return dt == TP_DT_FLOAT ? ((const float *)b)[i] : ((const double *)b)[i];
}

static int64_t get_i(tp_dtype_t dt, const void *b, size_t i)
{
    return dt == TP_DT_INT64 ? ((const int64_t *)b)[i] : ((const uint8_t *)b)[i];
}

static int is_float(tp_dtype_t dt)
{
    return dt == TP_DT_FLOAT || dt == TP_DT_DOUBLE;
}

/* Every rank's input: g_n buffers of n elements, rank r's from seed * 64 + r. */
static void **inputs(tp_dtype_t dt, size_t n, uint64_t seed)
{
    void **in = xcalloc((size_t)g_n, sizeof *in);
    for (int r = 0; r < g_n; r++) {
        in[r] = xmalloc(n * esize(dt));
        gen(dt, in[r], n, seed * 64 + (uint64_t)r);
    }
    return in;
}

static void free_inputs(void **in)
{
    for (int r = 0; r < g_n; r++)
        free(in[r]);
    free(in);
}

/* Compare got (count elements) with the reduction over ranks of in[r][off + i]. Floating sums
 * may be added in any order (and AVG pre-scaled by 1/n): |error| <= n * eps-ish of |x| <= 1.
 * Integers are exact: AVG truncates toward zero, byte sums wrap. */
static void check_reduced(const char *what, tp_dtype_t dt, tp_redop_t op, void **in, size_t off,
                          const void *got, size_t count)
{
    double tol = (dt == TP_DT_FLOAT ? 1e-5 : 1e-12) * g_n;
    size_t bad = 0, first = 0;
    double first_got = 0, first_want = 0;
    for (size_t i = 0; i < count; i++) {
        double wd = 0, gd;
        int64_t wi = 0;
        for (int r = 0; r < g_n; r++) {
            double xd = is_float(dt) ? get_d(dt, in[r], off + i) : 0;
            int64_t xi = is_float(dt) ? 0 : get_i(dt, in[r], off + i);
            if (r == 0) {
                wd = xd;
                wi = xi;
            } else if (op == TP_RED_SUM || op == TP_RED_AVG) {
                wd += xd;
                wi += xi;
            } else if (op == TP_RED_MAX) {
                wd = xd > wd ? xd : wd;
                wi = xi > wi ? xi : wi;
            } else {
                wd = xd < wd ? xd : wd;
                wi = xi < wi ? xi : wi;
            }
        }
        if (op == TP_RED_AVG) {
            wd /= g_n;
            wi /= g_n;
        }
        if (dt == TP_DT_BYTE) wi &= 0xff;
        int ok;
        if (is_float(dt)) {
            gd = get_d(dt, got, i);
            ok = fabs(gd - wd) <= tol;
        } else {
            gd = (double)get_i(dt, got, i);
            ok = get_i(dt, got, i) == wi;
            wd = (double)wi;
        }
        if (!ok && bad++ == 0) {
            first = i;
            first_got = gd;
            first_want = wd;
        }
    }
    CHECKF(bad == 0, "%s: %zu of %zu wrong, first at %zu: got %.9g, want %.9g", what, bad, count,
           first, first_got, first_want);
}

/* Device buffer holding `bytes` of host data (NULL: the 0xff poison). */
static void *dev_with(const void *host, size_t bytes)
{
    void *d = tp_comm_buf_alloc(g_c, bytes);
    CHECK(d != NULL);
    if (!d) exit(1);
    void *tmp = NULL;
    if (!host) {
        tmp = xmalloc(bytes);
        memset(tmp, 0xff, bytes);
        host = tmp;
    }
    CHECK(tp_comm_buf_upload(g_c, d, host, bytes) == TP_OK);
    free(tmp);
    return d;
}

static void *download(const void *d, size_t bytes)
{
    void *h = xmalloc(bytes);
    CHECK(tp_comm_buf_download(g_c, h, d, bytes) == TP_OK);
    return h;
}

/* mode 0: blocking; 1: tp_comm_test until done; 2: tp_comm_wait; 3: tp_comm_wait_ordered (the
 * compute stream waits, not the host), then tp_comm_sync. */
#define N_MODES 4
static const char *const mode_name[N_MODES] = {"blocking", "non-blocking/test", "non-blocking/wait",
                                               "non-blocking/wait_ordered"};

static void complete(tp_comm_req_t **req, int mode, const char *what)
{
    tp_status_t st = TP_OK;
    if (mode == 1) {
        while (*req && st == TP_OK)
            st = tp_comm_test(g_c, req);
    } else if (mode == 3) {
        st = tp_comm_wait_ordered(g_c, req);
        if (st == TP_OK) st = tp_comm_sync(g_c);
    } else {
        st = tp_comm_wait(g_c, req);
    }
    CHECKF(st == TP_OK, "%s: completion: %s", what, tp_status_str(st));
    CHECKF(*req == NULL, "%s: request not released", what);
    st = tp_comm_wait(g_c, req); /* a finished handle is NULL: a no-op */
    CHECK(st == TP_OK);
}

static void test_allreduce(tp_dtype_t dt, tp_redop_t op, size_t count, int mode, uint64_t seed)
{
    char what[160];
    snprintf(what, sizeof what, "allreduce %s %s count %zu %s", dt_name(dt), op_name(op), count,
             mode_name[mode]);
    size_t bytes = count * esize(dt);
    void **in = inputs(dt, count, seed);
    void *d = dev_with(in[g_me], bytes);
    tp_status_t st;
    if (mode == 0) {
        st = tp_comm_allreduce(g_c, d, count, dt, op);
    } else {
        tp_comm_req_t *req = NULL;
        st = tp_comm_iallreduce(g_c, d, count, dt, op, &req);
        if (st == TP_OK) complete(&req, mode, what);
    }
    CHECKF(st == TP_OK, "%s: %s", what, tp_status_str(st));
    void *got = download(d, bytes);
    check_reduced(what, dt, op, in, 0, got, count);
    free(got);
    tp_comm_buf_free(g_c, d);
    free_inputs(in);
}

static void test_reduce_scatter(tp_dtype_t dt, tp_redop_t op, size_t rc, int mode, int in_place,
                                uint64_t seed)
{
    char what[160];
    snprintf(what, sizeof what, "reduce-scatter %s %s recv_count %zu %s%s", dt_name(dt),
             op_name(op), rc, mode_name[mode], in_place ? " in place" : "");
    size_t block = rc * esize(dt), total = block * (size_t)g_n;
    void **in = inputs(dt, rc * (size_t)g_n, seed);
    void *send = dev_with(in[g_me], total);
    void *recv = in_place ? (char *)send + (size_t)g_me * block : dev_with(NULL, block);
    tp_status_t st;
    if (mode == 0) {
        st = tp_comm_reduce_scatter(g_c, send, recv, rc, dt, op);
    } else {
        tp_comm_req_t *req = NULL;
        st = tp_comm_ireduce_scatter(g_c, send, recv, rc, dt, op, &req);
        if (st == TP_OK) complete(&req, mode, what);
    }
    CHECKF(st == TP_OK, "%s: %s", what, tp_status_str(st));
    void *got = download(recv, block);
    check_reduced(what, dt, op, in, (size_t)g_me * rc, got, rc);
    free(got);
    if (mode == 0 && !in_place) { /* the blocking form's send is const */
        void *after = download(send, total);
        CHECKF(memcmp(after, in[g_me], total) == 0, "%s: send was modified", what);
        free(after);
    }
    if (!in_place) tp_comm_buf_free(g_c, recv);
    tp_comm_buf_free(g_c, send);
    free_inputs(in);
}

static void test_allgather(tp_dtype_t dt, size_t count, int mode, int in_place, uint64_t seed)
{
    char what[160];
    snprintf(what, sizeof what, "allgather %s count %zu %s%s", dt_name(dt), count, mode_name[mode],
             in_place ? " in place" : "");
    size_t block = count * esize(dt), total = block * (size_t)g_n;
    void **in = inputs(dt, count, seed);
    void *recv = dev_with(NULL, total), *send;
    if (in_place) {
        send = (char *)recv + (size_t)g_me * block;
        CHECK(tp_comm_buf_upload(g_c, send, in[g_me], block) == TP_OK);
    } else {
        send = dev_with(in[g_me], block);
    }
    tp_status_t st;
    if (mode == 0) {
        st = tp_comm_allgather(g_c, send, recv, count, dt);
    } else {
        tp_comm_req_t *req = NULL;
        st = tp_comm_iallgather(g_c, send, recv, count, dt, &req);
        if (st == TP_OK) complete(&req, mode, what);
    }
    CHECKF(st == TP_OK, "%s: %s", what, tp_status_str(st));
    char *got = download(recv, total);
    for (int r = 0; r < g_n; r++)
        CHECKF(memcmp(got + (size_t)r * block, in[r], block) == 0, "%s: block of rank %d wrong",
               what, r);
    free(got);
    if (!in_place) tp_comm_buf_free(g_c, send);
    tp_comm_buf_free(g_c, recv);
    free_inputs(in);
}

static void test_bcast(tp_dtype_t dt, size_t count, uint64_t seed)
{
    size_t bytes = count * esize(dt);
    void **in = inputs(dt, count, seed);
    for (int root = 0; root < g_n; root++) {
        void *d = dev_with(in[g_me], bytes);
        tp_status_t st = tp_comm_bcast(g_c, d, count, dt, root);
        CHECKF(st == TP_OK, "bcast %s count %zu root %d: %s", dt_name(dt), count, root,
               tp_status_str(st));
        void *got = download(d, bytes);
        CHECKF(memcmp(got, in[root], bytes) == 0, "bcast %s count %zu root %d: wrong data",
               dt_name(dt), count, root);
        free(got);
        tp_comm_buf_free(g_c, d);
    }
    free_inputs(in);
}

/* Several requests in flight at once, completed in the reverse order, with a blocking collective
 * issued between start and completion. */
static void test_overlapping(void)
{
    enum { K = 3 };
    size_t count = 100003;
    void **in[K], *d[K];
    tp_comm_req_t *req[K];
    for (int k = 0; k < K; k++) {
        in[k] = inputs(TP_DT_FLOAT, count, 900 + (uint64_t)k);
        d[k] = dev_with(in[k][g_me], count * 4);
        CHECK(tp_comm_iallreduce(g_c, d[k], count, TP_DT_FLOAT, TP_RED_SUM, &req[k]) == TP_OK);
    }
    void **bin = inputs(TP_DT_DOUBLE, 777, 950);
    void *bd = dev_with(bin[g_me], 777 * 8);
    CHECK(tp_comm_allreduce(g_c, bd, 777, TP_DT_DOUBLE, TP_RED_MAX) == TP_OK);
    for (int k = K - 1; k >= 0; k--)
        complete(&req[k], k % 2 ? 1 : 2, "overlapping iallreduce");
    for (int k = 0; k < K; k++) {
        void *got = download(d[k], count * 4);
        check_reduced("overlapping iallreduce", TP_DT_FLOAT, TP_RED_SUM, in[k], 0, got, count);
        free(got);
        tp_comm_buf_free(g_c, d[k]);
        free_inputs(in[k]);
    }
    void *got = download(bd, 777 * 8);
    check_reduced("blocking allreduce between non-blocking ones", TP_DT_DOUBLE, TP_RED_MAX, bin, 0,
                  got, 777);
    free(got);
    tp_comm_buf_free(g_c, bd);
    free_inputs(bin);
}

/* A collective must follow compute already queued on the legacy default stream (the compute
 * stream the communicator assumes): a large memset queued there, not waited for, then at once an
 * all-reduce of the same buffer. */
static void test_orders_after_compute(void)
{
    size_t count = (size_t)32 << 20; /* 256 MiB of int64: the memset takes a while */
    void *d = dev_with(NULL, count * 8);
    CHECK(cudaMemsetAsync(d, 0x01, count * 8, cudaStreamLegacy) == cudaSuccess);
    tp_comm_req_t *req = NULL;
    CHECK(tp_comm_iallreduce(g_c, d, count, TP_DT_INT64, TP_RED_SUM, &req) == TP_OK);
    complete(&req, 2, "iallreduce after memset");
    int64_t *got = download(d, count * 8);
    int64_t want = (int64_t)0x0101010101010101LL * g_n;
    size_t bad = 0;
    for (size_t i = 0; i < count; i++)
        bad += got[i] != want;
    CHECKF(bad == 0, "all-reduce raced the compute stream: %zu of %zu wrong", bad, count);
    free(got);
    tp_comm_buf_free(g_c, d);
}

/* tp_comm_wait_ordered must make the compute stream (here the legacy default stream) wait for
 * the collective: a memset queued there right after it, with no host wait in between, must land
 * after the all-reduce has written the buffer, so every byte ends as the memset's. */
static void test_wait_ordered_orders_compute(void)
{
    size_t count = (size_t)32 << 20; /* 256 MiB: the all-reduce takes a while */
    int64_t *ones = xmalloc(count * 8);
    for (size_t i = 0; i < count; i++)
        ones[i] = 1;
    void *d = dev_with(ones, count * 8);
    free(ones);
    double exposed = -1, total = -1;
    CHECK(tp_comm_take_device_times(g_c, &exposed, &total)); /* forget earlier tests' times */
    tp_comm_req_t *req = NULL;
    CHECK(tp_comm_iallreduce(g_c, d, count, TP_DT_INT64, TP_RED_SUM, &req) == TP_OK);
    CHECK(tp_comm_wait_ordered(g_c, &req) == TP_OK && req == NULL);
    CHECK(cudaMemsetAsync(d, 0x02, count * 8, cudaStreamLegacy) == cudaSuccess);
    CHECK(tp_comm_sync(g_c) == TP_OK);
    /* GPU-side times: a 256 MiB all-reduce takes a measurable while on the communication
     * stream; the compute stream waited for it (the memset was queued right behind it). */
    CHECK(tp_comm_take_device_times(g_c, &exposed, &total));
    printf("256 MiB all-reduce: %.3f ms on the communication stream, compute waited %.3f ms\n",
           1e3 * total, 1e3 * exposed);
    CHECKF(total > 0 && exposed >= 0 && exposed <= total + 1e-3,
           "device times: total %g s, exposed %g s", total, exposed);
    unsigned char *got = download(d, count * 8);
    size_t bad = 0;
    for (size_t i = 0; i < count * 8; i++)
        bad += got[i] != 0x02;
    CHECKF(bad == 0, "compute ran before the collective it was ordered after: %zu of %zu bytes",
           bad, count * 8);
    free(got);
    tp_comm_buf_free(g_c, d);
}

int main(int argc, char **argv)
{
    char why[256] = "";
    if (tp_cuda_device_count(why, sizeof why) <= 0) {
        printf("SKIP: no GPU (%s)\n", why[0] ? why : "no CUDA devices");
        return 77;
    }
    tp_comm_t *host = NULL;
    if (tp_comm_create_world(&argc, &argv, &host) != TP_OK) return 1;
    tp_log_set_identity(tp_comm_rank(host), tp_comm_size(host), tp_comm_host(host));
    if (tp_comm_nccl_create(host, &g_c) != TP_OK) {
        tp_comm_free(host);
        return 1;
    }
    g_n = tp_comm_size(g_c);
    g_me = tp_comm_rank(g_c);
    CHECK(strcmp(tp_comm_name(g_c), "nccl") == 0);
    CHECK(tp_comm_device(g_c) >= 0);
    CHECK(tp_comm_device(host) == -1);
    CHECK(g_n == tp_comm_size(host) && g_me == tp_comm_rank(host));
    CHECK(strncmp(tp_comm_library(g_c), "NCCL ", 5) == 0);
    printf("rank %d of %d: GPU %d, %s, host communicator %s\n", g_me, g_n, tp_comm_device(g_c),
           tp_comm_library(g_c), tp_comm_name(host));

    static const size_t counts[] = {1, 4099, ((size_t)1 << 20) + 7};
    uint64_t seed = 1;
    for (int dt = TP_DT_FLOAT; dt <= TP_DT_BYTE; dt++)
        for (int op = TP_RED_SUM; op <= TP_RED_MIN; op++) {
            if (dt == TP_DT_BYTE && op == TP_RED_AVG) continue; /* not defined for bytes */
            for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++)
                for (int mode = 0; mode < N_MODES; mode++) {
                    test_allreduce(dt, op, counts[k], mode, seed++);
                    for (int in_place = 0; in_place < 2; in_place++)
                        test_reduce_scatter(dt, op, counts[k], mode, in_place, seed++);
                }
        }
    for (int dt = TP_DT_FLOAT; dt <= TP_DT_BYTE; dt++)
        for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
            for (int mode = 0; mode < N_MODES; mode++)
                for (int in_place = 0; in_place < 2; in_place++)
                    test_allgather(dt, counts[k], mode, in_place, seed++);
            test_bcast(dt, counts[k], seed++);
        }
    /* Empty collectives are no-ops, as on the host communicators. */
    test_allreduce(TP_DT_FLOAT, TP_RED_SUM, 0, 0, seed++);
    test_allreduce(TP_DT_FLOAT, TP_RED_SUM, 0, 2, seed++);
    test_reduce_scatter(TP_DT_FLOAT, TP_RED_SUM, 0, 0, 0, seed++);
    test_allgather(TP_DT_FLOAT, 0, 0, 0, seed++);
    test_overlapping();
    test_orders_after_compute();
    test_wait_ordered_orders_compute();
    CHECK(tp_comm_barrier(g_c) == TP_OK);

    tp_comm_free(g_c);
    tp_comm_free(host);
    return tp_test_finish("test_comm_nccl");
}
