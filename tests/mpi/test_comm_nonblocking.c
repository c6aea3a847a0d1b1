/* The communicator's non-blocking collectives under mpirun (2 and 3 ranks): results of
 * iallreduce (ring and small-message paths, sum/avg/max, counts not divisible by the ranks),
 * ireduce_scatter (in and out of place), iallgather, several requests in flight completing in
 * any order, and progress: a request started before a long computation that calls tp_comm_test
 * between its pieces completes inside those tests, not in a final wait. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"

static int failures, rank, size;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "rank %d: FAIL %s:%d: ", rank, __FILE__, __LINE__);                    \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

/* Rank r's value at element i: non-zero, different per rank and element. */
static float val(int r, size_t i)
{
    return 0.25f + (float)((i * 7919 + (size_t)r * 104729) % 1000) / 997.0f;
}

static void test_allreduce(tp_comm_t *c, size_t n, tp_redop_t op)
{
    float *buf = malloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++)
        buf[i] = val(rank, i);
    tp_comm_req_t *req = NULL;
    CHECK(tp_comm_iallreduce(c, buf, n, TP_DT_FLOAT, op, &req) == TP_OK, "iallreduce start");
    /* On host communicators wait_ordered is a wait: the result is there when it returns. */
    double de = -1, dt = -1;
    if (n % 2)
        CHECK(tp_comm_wait_ordered(c, &req) == TP_OK && req == NULL && tp_comm_sync(c) == TP_OK &&
                  !tp_comm_take_device_times(c, &de, &dt) && de == 0 && dt == 0,
              "iallreduce wait_ordered (host communicator: no device times)");
    else
        CHECK(tp_comm_wait(c, &req) == TP_OK && req == NULL, "iallreduce wait");
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double want = op == TP_RED_MAX ? -1e30 : 0;
        for (int r = 0; r < size; r++)
            want = op == TP_RED_MAX ? fmax(want, val(r, i)) : want + val(r, i);
        if (op == TP_RED_AVG) want /= size;
        if (fabs(buf[i] - want) > 1e-5 * fabs(want)) bad++;
    }
    CHECK(bad == 0, "iallreduce n=%zu op=%d: %zu wrong", n, (int)op, bad);
    free(buf);
}

static void test_reduce_scatter(tp_comm_t *c, size_t block, int in_place)
{
    float *send = malloc(block * size * sizeof(float) + 1),
          *out = malloc(block * sizeof(float) + 1);
    for (size_t i = 0; i < block * size; i++)
        send[i] = val(rank, i);
    float *recv = in_place ? send + block * rank : out;
    tp_comm_req_t *req = NULL;
    CHECK(tp_comm_ireduce_scatter(c, send, recv, block, TP_DT_FLOAT, TP_RED_SUM, &req) == TP_OK,
          "ireduce_scatter start");
    while (req)
        CHECK(tp_comm_test(c, &req) == TP_OK, "ireduce_scatter test");
    size_t bad = 0;
    for (size_t i = 0; i < block; i++) {
        double want = 0;
        for (int r = 0; r < size; r++)
            want += val(r, block * rank + i);
        if (fabs(recv[i] - want) > 1e-5 * want) bad++;
    }
    CHECK(bad == 0, "ireduce_scatter block=%zu in_place=%d: %zu wrong", block, in_place, bad);
    free(send);
    free(out);
}

static void test_allgather(tp_comm_t *c, size_t n)
{
    float *recv = malloc(n * size * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++)
        recv[rank * n + i] = val(rank, i);
    tp_comm_req_t *req = NULL;
    CHECK(tp_comm_iallgather(c, recv + rank * n, recv, n, TP_DT_FLOAT, &req) == TP_OK,
          "iallgather start");
    CHECK(tp_comm_wait(c, &req) == TP_OK, "iallgather wait");
    size_t bad = 0;
    for (int r = 0; r < size; r++)
        for (size_t i = 0; i < n; i++)
            bad += recv[r * n + i] != val(r, i);
    CHECK(bad == 0, "iallgather n=%zu: %zu wrong", n, bad);
    free(recv);
}

/* Several buckets in flight, waited for in reverse order. */
static void test_many_in_flight(tp_comm_t *c)
{
    enum { K = 6 };
    size_t n[K] = {100, 70001, 262144, 3, 1 << 18, 99999};
    float *b[K];
    tp_comm_req_t *req[K];
    for (int k = 0; k < K; k++) {
        b[k] = malloc(n[k] * size * sizeof(float));
        for (size_t i = 0; i < n[k] * (k % 2 ? (size_t)size : 1); i++)
            b[k][i] = val(rank, i + (size_t)k);
        if (k % 2)
            CHECK(tp_comm_ireduce_scatter(c, b[k], b[k] + n[k] * rank, n[k], TP_DT_FLOAT,
                                          TP_RED_AVG, &req[k]) == TP_OK,
                  "start %d", k);
        else
            CHECK(tp_comm_iallreduce(c, b[k], n[k], TP_DT_FLOAT, TP_RED_AVG, &req[k]) == TP_OK,
                  "start %d", k);
    }
    for (int k = K - 1; k >= 0; k--)
        CHECK(tp_comm_wait(c, &req[k]) == TP_OK, "wait %d", k);
    for (int k = 0; k < K; k++) {
        size_t bad = 0, lo = k % 2 ? n[k] * rank : 0;
        for (size_t i = 0; i < n[k]; i++) {
            double want = 0;
            for (int r = 0; r < size; r++)
                want += val(r, lo + i + (size_t)k);
            want /= size;
            if (fabs(b[k][lo + i] - want) > 1e-5 * want) bad++;
        }
        CHECK(bad == 0, "in flight together: request %d has %zu wrong", k, bad);
        free(b[k]);
    }
}

/* Progress: 4 MiB all-reduce and reduce-scatter started, then 400 pieces of ~0.5 ms work with a
 * test after each. They must complete during the tests. */
static void test_progress(tp_comm_t *c)
{
    size_t n = 1 << 20;
    float *a = malloc(n * sizeof(float)), *s = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        a[i] = s[i] = val(rank, i);
    tp_comm_req_t *ra = NULL, *rs = NULL;
    CHECK(tp_comm_iallreduce(c, a, n, TP_DT_FLOAT, TP_RED_SUM, &ra) == TP_OK, "start");
    CHECK(tp_comm_ireduce_scatter(c, s, s + (n / size) * rank, n / size, TP_DT_FLOAT, TP_RED_SUM,
                                  &rs) == TP_OK,
          "start");
    volatile double sink = 0;
    int done_at = -1;
    for (int piece = 0; piece < 400; piece++) {
        for (int j = 0; j < 100000; j++)
            sink += sqrt((double)j + piece);
        CHECK(tp_comm_test(c, &ra) == TP_OK && tp_comm_test(c, &rs) == TP_OK, "test");
        if (!ra && !rs && done_at < 0) done_at = piece;
    }
    CHECK(done_at >= 0, "4 MiB collectives did not complete during 400 tests between compute");
    if (rank == 0)
        printf("progress: both 4 MiB collectives completed after %d of 400 pieces of work\n",
               done_at + 1);
    tp_comm_wait(c, &ra);
    tp_comm_wait(c, &rs);
    size_t bad = 0;
    for (size_t i = 0; i < n; i += 997) {
        double want = 0;
        for (int r = 0; r < size; r++)
            want += val(r, i);
        bad += fabs(a[i] - want) > 1e-5 * want;
    }
    CHECK(bad == 0, "progressed all-reduce: %zu wrong", bad);
    free(a);
    free(s);
}

int main(int argc, char **argv)
{
    tp_comm_t *c = NULL;
    if (tp_comm_create_world(&argc, &argv, &c) != TP_OK) return 1;
    rank = tp_comm_rank(c);
    size = tp_comm_size(c);
    size_t counts[] = {1, 5, 1000, 16385, 65536 + 3, 1 << 20};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        if (counts[i] < (size_t)size) continue;
        test_allreduce(c, counts[i], TP_RED_SUM);
        test_allreduce(c, counts[i], TP_RED_AVG);
        test_allreduce(c, counts[i], TP_RED_MAX);
    }
    size_t blocks[] = {1, 777, 40000, 300000};
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        test_reduce_scatter(c, blocks[i], 1);
        test_reduce_scatter(c, blocks[i], 0);
        test_allgather(c, blocks[i]);
    }
    test_many_in_flight(c);
    test_progress(c);
    int64_t f = failures;
    tp_comm_allreduce(c, &f, 1, TP_DT_INT64, TP_RED_SUM);
    if (rank == 0)
        printf("%s: %lld failure(s) on %d ranks\n", f ? "FAILED" : "passed", (long long)f, size);
    tp_comm_free(c);
    return f ? 1 : 0;
}
