/* `tulpar bench allreduce|reducescatter|allgather|broadcast`: nccl-tests' flags, columns and
 * checks for the communicator's collectives: the world communicator on host buffers ("self" or
 * "mpi", --comm host) or a NCCL communicator over it on device buffers (--comm nccl), and for
 * all-reduce on host buffers a bare MPI_Allreduce baseline measured in the same run. Buffers go
 * through the communicator's memory API only (tp_comm_buf_*): data is made and checked in a host
 * staging buffer, uploaded and downloaded. The collective table is bench_coll.c; the bare loop is
 * mpi/bench_mpi_baseline.c. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_coll.h"
#include "bench_mpi_baseline.h"
#include "cli.h"
#include "json_writer.h"

#define MAX_ROWS 96

typedef struct coll_opts {
    size_t min_bytes, max_bytes, factor;
    int iters, warmup, check, root;
    tp_redop_t op;
    tp_dtype_t dt;
    bool nccl; /* --comm nccl: a NCCL communicator, device buffers */
    const char *json;
} coll_opts_t;

typedef struct coll_row {
    tp_bench_counts_t k;
    double time_us[2], algbw[2], busbw[2]; /* [0] out of place, [1] in place */
    int64_t wrong[2];
    bool have_mpi;
    double mpi_us, mpi_busbw, ratio;  /* bare in place; ratio = in-place busbw / mpi_busbw */
    double mpi_oop_us, mpi_oop_busbw; /* bare out of place */
} coll_row_t;

static const char *const op_names[] = {"sum", "avg", "max", "min"};

/* nccl-tests' size syntax: an integer with an optional K, M or G (powers of 1024). */
static bool parse_size(const char *v, size_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*v)) return false;
    unsigned long long n = strtoull(v, &end, 10);
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k') shift = 10;
    if (*end == 'M' || *end == 'm') shift = 20;
    if (*end == 'G' || *end == 'g') shift = 30;
    if (shift) end++;
    if (*end || n > (~0ULL >> shift)) return false;
    *out = (size_t)(n << shift);
    return true;
}

static bool parse_int(const char *v, long lo, long hi, int *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < lo || n > hi) return false;
    *out = (int)n;
    return true;
}

static tp_status_t parse(int argc, char **argv, const tp_bench_coll_t *b, int nranks,
                         coll_opts_t *o)
{
    *o = (coll_opts_t){.min_bytes = 8,
                       .max_bytes = 64u << 20,
                       .factor = 2,
                       .iters = 20,
                       .warmup = 5,
                       .check = 1,
                       .op = TP_RED_SUM,
                       .dt = TP_DT_FLOAT};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int f = 0;
        if (tp_cli_is(a, "--json")) {
            if (!(o->json = tp_cli_value(argc, argv, &i, "--json"))) return TP_ERR_USAGE;
            continue;
        }
        if (tp_cli_is(a, "--comm")) {
            if (!(v = tp_cli_value(argc, argv, &i, "--comm"))) return TP_ERR_USAGE;
            if (strcmp(v, "host") != 0 && strcmp(v, "nccl") != 0)
                return tp_cli_usage_error("bench", "%s --comm: bad value '%s' (want host or nccl)",
                                          b->name, v);
            o->nccl = strcmp(v, "nccl") == 0;
            continue;
        }
        if (a[0] != '-' || !a[1] || !strchr("befnwcrod", a[1]) || (a[2] && a[2] != '='))
            return tp_cli_usage_error("bench", "unknown option '%s'", a);
        char flag[3] = {'-', a[1], '\0'};
        if (!(v = tp_cli_value(argc, argv, &i, flag))) return TP_ERR_USAGE;
        bool ok = true;
        switch (a[1]) {
        case 'b':
            ok = parse_size(v, &o->min_bytes) && o->min_bytes > 0;
            break;
        case 'e':
            ok = parse_size(v, &o->max_bytes) && o->max_bytes > 0;
            break;
        case 'f':
            ok = parse_int(v, 2, 1024, &f);
            o->factor = (size_t)f;
            break;
        case 'n':
            ok = parse_int(v, 1, 1000000, &o->iters);
            break;
        case 'w':
            ok = parse_int(v, 0, 1000000, &o->warmup);
            break;
        case 'c':
            ok = parse_int(v, 0, 1, &o->check);
            break;
        case 'r':
            ok = parse_int(v, 0, nranks - 1, &o->root);
            break;
        case 'o':
            ok = false;
            for (int k = 0; k < 4; k++)
                if (strcmp(v, op_names[k]) == 0) {
                    o->op = (tp_redop_t)k;
                    ok = true;
                }
            break;
        case 'd':
            ok = strcmp(v, "float") == 0 || strcmp(v, "double") == 0;
            o->dt = strcmp(v, "double") == 0 ? TP_DT_DOUBLE : TP_DT_FLOAT;
            break;
        }
        if (!ok) {
            static const char *const want[] = {
                ['b'] = "a size >= 1 (bytes, optional K/M/G)",
                ['e'] = "a size >= 1 (bytes, optional K/M/G)",
                ['f'] = "an integer factor from 2 to 1024",
                ['n'] = "an iteration count >= 1",
                ['w'] = "a warm-up count >= 0",
                ['c'] = "0 or 1",
                ['o'] = "sum, avg, max or min",
                ['d'] = "float or double",
            };
            if (a[1] == 'r')
                return tp_cli_usage_error("bench", "%s -r: bad root '%s' (want 0 to %d: %d ranks)",
                                          b->name, v, nranks - 1, nranks);
            return tp_cli_usage_error("bench", "%s %s: bad value '%s' (want %s)", b->name, flag, v,
                                      want[(unsigned char)a[1]]);
        }
    }
    if (o->min_bytes > o->max_bytes)
        return tp_cli_usage_error("bench", "%s: -b %zu is larger than -e %zu", b->name,
                                  o->min_bytes, o->max_bytes);
    return TP_OK;
}

/* In what follows, c is the communicator under test (its collectives and buffers) and host the
 * world communicator, which reduces the host values (times, wrong counts, statuses); they are the
 * same one for --comm host. */

/* Average seconds per call over `iters` after `warmup`, the maximum over ranks. The host clock
 * covers the device work too: the blocking tp_comm_* calls return only once the collective has
 * completed, and on the nccl communicator that means its stream has drained (sync_stream in
 * mpi/comm_nccl.c). The device-to-device copy of the out-of-place variants is counted as well:
 * the collective that follows it waits for it. */
static tp_status_t time_coll(tp_comm_t *c, tp_comm_t *host, const tp_bench_coll_t *b,
                             const coll_opts_t *o, const void *send, void *recv,
                             const tp_bench_counts_t *k, bool in_place, double *sec)
{
    for (int i = 0; i < o->warmup; i++)
        TP_TRY(b->run(c, send, recv, k, o->dt, o->op, o->root, in_place));
    TP_TRY(tp_comm_barrier(c));
    double t0 = tp_now();
    for (int i = 0; i < o->iters; i++)
        TP_TRY(b->run(c, send, recv, k, o->dt, o->op, o->root, in_place));
    *sec = (tp_now() - t0) / o->iters;
    return tp_comm_allreduce(host, sec, 1, TP_DT_DOUBLE, TP_RED_MAX);
}

/* Fill the communicator buffer send with this rank's values, made in the host buffer stage. */
static tp_status_t init_send(tp_comm_t *c, const tp_bench_coll_t *b, const coll_opts_t *o,
                             void *send, const tp_bench_counts_t *k, char *stage)
{
    tp_bench_coll_init(b, stage, k, o->dt, tp_comm_rank(c));
    return tp_comm_buf_upload(c, send, stage, k->send * tp_bench_coll_elem_size(o->dt));
}

/* One untimed call on fresh data, then every element checked (downloaded to the host buffer
 * stage); wrong values summed over ranks. */
static tp_status_t check_coll(tp_comm_t *c, tp_comm_t *host, const tp_bench_coll_t *b,
                              const coll_opts_t *o, void *send, void *recv,
                              const tp_bench_counts_t *k, bool in_place, char *stage,
                              int64_t *wrong)
{
    int rank = tp_comm_rank(c), n = tp_comm_size(c);
    TP_TRY(init_send(c, b, o, send, k, stage));
    TP_TRY(b->run(c, send, recv, k, o->dt, o->op, o->root, in_place));
    TP_TRY(tp_comm_buf_download(c, stage, recv, k->recv * tp_bench_coll_elem_size(o->dt)));
    /* Hidden, for the test of the check itself: perturb one element on rank 1. */
    const char *corrupt = getenv("TULPAR_BENCH_CORRUPT");
    if (corrupt && atoi(corrupt) == 1 && rank == (n > 1 ? 1 : 0) && k->recv > 0) {
        if (o->dt == TP_DT_DOUBLE)
            ((double *)stage)[0] += 1.0;
        else
            ((float *)stage)[0] += 1.0f;
    }
    *wrong = (int64_t)tp_bench_coll_check(b, stage, k, o->dt, o->op, rank, n, o->root);
    return tp_comm_allreduce(host, wrong, 1, TP_DT_INT64, TP_RED_SUM);
}

/* sendbuf and recvbuf are c's buffers; stage is a host buffer of the same size. baseline: time
 * bare MPI_Allreduce too (host buffers only). */
static tp_status_t bench_row(tp_comm_t *c, tp_comm_t *host, const tp_bench_coll_t *b,
                             const coll_opts_t *o, char *sendbuf, char *recvbuf, char *stage,
                             bool baseline, size_t bytes, coll_row_t *row)
{
    int rank = tp_comm_rank(c), n = tp_comm_size(c);
    size_t esz = tp_bench_coll_elem_size(o->dt);
    memset(row, 0, sizeof *row);
    b->counts(bytes / esz, n, rank, &row->k);
    tp_bench_counts_t *k = &row->k;
    k->bytes = (k->send > k->recv ? k->send : k->recv) * esz;
    double factor = b->bus_factor(n);
    for (int ip = 0; ip < 2; ip++) {
        /* In place shares recvbuf between the two roles, at nccl-tests' offsets. */
        char *send = ip ? recvbuf + k->send_ip_off * esz : sendbuf;
        char *recv = ip ? recvbuf + k->recv_ip_off * esz : recvbuf;
        double sec = 0;
        TP_TRY(init_send(c, b, o, send, k, stage));
        TP_TRY(time_coll(c, host, b, o, send, recv, k, ip, &sec));
        row->time_us[ip] = 1e6 * sec;
        row->algbw[ip] = sec > 0 ? (double)k->bytes / 1e9 / sec : 0;
        row->busbw[ip] = row->algbw[ip] * factor;
        row->wrong[ip] = -1;
        if (o->check) TP_TRY(check_coll(c, host, b, o, send, recv, k, ip, stage, &row->wrong[ip]));
    }
    if (baseline && tp_bench_mpi_baseline_available()) {
        double oop = 0, ip = 0;
        TP_TRY(init_send(c, b, o, sendbuf, k, stage));
        TP_TRY(tp_bench_mpi_allreduce(sendbuf, recvbuf, k->send, o->dt, o->op, o->warmup, o->iters,
                                      &oop, &ip));
        /* Like for like: the communicator's all-reduce is MPI_Allreduce in place. */
        row->have_mpi = true;
        row->mpi_us = 1e6 * ip;
        row->mpi_busbw = ip > 0 ? (double)k->bytes / 1e9 / ip * factor : 0;
        row->ratio = row->mpi_busbw > 0 ? row->busbw[1] / row->mpi_busbw : 0;
        row->mpi_oop_us = 1e6 * oop;
        row->mpi_oop_busbw = oop > 0 ? (double)k->bytes / 1e9 / oop * factor : 0;
    }
    return TP_OK;
}

static void print_header(tp_comm_t *c, const tp_bench_coll_t *b, const coll_opts_t *o,
                         bool baseline)
{
    char memory[48] = "host buffers";
    if (tp_comm_device(c) >= 0)
        snprintf(memory, sizeof memory, "device buffers on GPU %d", tp_comm_device(c));
    printf("# tulpar bench %s: %d ranks, communicator %s (%s), %s\n", b->name, tp_comm_size(c),
           tp_comm_name(c), tp_comm_library(c), memory);
    printf("# minBytes %zu maxBytes %zu step: %zu(factor) warmup iters: %d iters: %d "
           "validation: %d\n#\n",
           o->min_bytes, o->max_bytes, o->factor, o->warmup, o->iters, o->check);
    const char *extra = baseline ? "bare MPI_Allreduce in place" : "";
    printf("# %10s  %12s  %8s  %6s  %6s  %29s  %29s %s\n", "", "", "", "", "",
           "out-of-place               ", "in-place                   ", extra);
    printf("# %10s  %12s  %8s  %6s  %6s  %8s %7s %7s %6s  %8s %7s %7s %6s%s\n", "size", "count",
           "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw",
           "#wrong", baseline ? "  mpi time   busbw  ratio" : "");
    printf("# %10s  %12s  %8s  %6s  %6s  %8s %7s %7s %6s  %8s %7s %7s %6s%s\n", "(B)", "(elements)",
           "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "",
           baseline ? "      (us)  (GB/s)       " : "");
}

static void print_row(const tp_bench_coll_t *b, const coll_opts_t *o, const coll_row_t *r,
                      bool baseline)
{
    printf("  %10zu  %12zu  %8s  %6s  %6d", r->k.bytes, r->k.param,
           o->dt == TP_DT_DOUBLE ? "double" : "float", b->has_op ? op_names[o->op] : "none",
           b->has_root ? o->root : -1);
    for (int ip = 0; ip < 2; ip++) {
        char wrong[24] = "N/A";
        if (r->wrong[ip] >= 0) snprintf(wrong, sizeof wrong, "%lld", (long long)r->wrong[ip]);
        printf("  %8.2f %7.2f %7.2f %6s", r->time_us[ip], r->algbw[ip], r->busbw[ip], wrong);
    }
    if (baseline && r->have_mpi)
        printf("  %8.2f %7.2f %6.2f", r->mpi_us, r->mpi_busbw, r->ratio);
    else if (baseline)
        printf("  %8s %7s %6s", "-", "-", "-");
    printf("\n");
    fflush(stdout);
}

static tp_status_t write_json(const char *path, tp_comm_t *c, const tp_bench_coll_t *b,
                              const coll_opts_t *o, const coll_row_t *rows, int n_rows,
                              double avg_busbw, int baseline_ok)
{
    FILE *f = fopen(path, "w");
    if (!f) return TP_ERR(TP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    const char *type = o->dt == TP_DT_DOUBLE ? "double" : "float";
    const char *op = b->has_op ? op_names[o->op] : "none";
    tp_json_t j;
    tp_json_init(&j, f, true);
    tp_json_object_begin(&j, NULL);
    tp_json_str(&j, "benchmark", "tulpar bench");
    tp_json_str(&j, "collective", b->name);
    tp_json_int(&j, "ranks", tp_comm_size(c));
    tp_json_str(&j, "comm", tp_comm_name(c));
    tp_json_str(&j, "memory", tp_comm_device(c) >= 0 ? "device" : "host");
    tp_json_str(&j, "dtype", type);
    tp_json_str(&j, "op", op);
    tp_json_array_begin(&j, "rows");
    for (int i = 0; i < n_rows; i++) {
        const coll_row_t *r = &rows[i];
        tp_json_object_begin(&j, NULL);
        tp_json_int(&j, "size", (int64_t)r->k.bytes);
        tp_json_int(&j, "count", (int64_t)r->k.param);
        tp_json_str(&j, "type", type);
        tp_json_str(&j, "redop", op);
        tp_json_int(&j, "root", b->has_root ? o->root : -1);
        for (int ip = 0; ip < 2; ip++) {
            tp_json_object_begin(&j, ip ? "ip" : "oop");
            tp_json_num(&j, "time_us", r->time_us[ip]);
            tp_json_num(&j, "algbw", r->algbw[ip]);
            tp_json_num(&j, "busbw", r->busbw[ip]);
            if (r->wrong[ip] >= 0)
                tp_json_int(&j, "wrong", r->wrong[ip]);
            else
                tp_json_num(&j, "wrong", NAN); /* not checked (-c 0): null */
            tp_json_object_end(&j);
        }
        if (r->have_mpi) {
            tp_json_object_begin(&j, "mpi");
            tp_json_num(&j, "time_us", r->mpi_us);
            tp_json_num(&j, "busbw", r->mpi_busbw);
            tp_json_num(&j, "ratio", r->ratio);
            tp_json_num(&j, "oop_time_us", r->mpi_oop_us);
            tp_json_num(&j, "oop_busbw", r->mpi_oop_busbw);
            tp_json_object_end(&j);
        } else {
            tp_json_num(&j, "mpi", NAN);
        }
        tp_json_object_end(&j);
    }
    tp_json_array_end(&j);
    tp_json_num(&j, "avg_busbw", avg_busbw);
    if (baseline_ok >= 0)
        tp_json_bool(&j, "baseline_ok_at_1MiB", baseline_ok);
    else
        tp_json_num(&j, "baseline_ok_at_1MiB", NAN);
    tp_json_object_end(&j);
    fputc('\n', f);
    if (ferror(f) | fclose(f)) return TP_ERR(TP_ERR_IO, "cannot write %s", path);
    return TP_OK;
}

static tp_status_t bench(tp_comm_t *c, tp_comm_t *host, const tp_bench_coll_t *b,
                         const coll_opts_t *o)
{
    int rank = tp_comm_rank(c);
    size_t esz = tp_bench_coll_elem_size(o->dt);
    size_t cap = (o->max_bytes + esz - 1) / esz * esz;
    bool allreduce = strcmp(b->name, "allreduce") == 0;
    /* The bare MPI_Allreduce loop works on host buffers: none with device buffers. */
    bool baseline = allreduce && tp_comm_device(c) < 0;
    char *sendbuf = tp_comm_buf_alloc(c, cap);
    char *recvbuf = tp_comm_buf_alloc(c, cap);
    char *stage = tp_malloc(cap, "benchmark host staging buffer");
    coll_row_t *rows = tp_calloc(MAX_ROWS, sizeof *rows, "benchmark rows");
    tp_status_t st = sendbuf && recvbuf && stage && rows ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) {
        /* Allocated once at the largest size and touched now: fresh pages are slow here. */
        memset(stage, 0, cap);
        st = tp_comm_buf_upload(c, sendbuf, stage, cap);
        if (st == TP_OK) st = tp_comm_buf_upload(c, recvbuf, stage, cap);
    }
    st = tp_comm_agree(host, st);
    int n_rows = 0;
    if (st == TP_OK) {
        if (rank == 0) print_header(c, b, o, baseline);
        for (size_t bytes = o->min_bytes;
             st == TP_OK && bytes <= o->max_bytes &&
                     n_rows<MAX_ROWS; bytes = bytes> o->max_bytes / o->factor
                 ? o->max_bytes + 1
                 : bytes * o->factor) {
            st = bench_row(c, host, b, o, sendbuf, recvbuf, stage, baseline, bytes, &rows[n_rows]);
            if (st == TP_OK && rank == 0) print_row(b, o, &rows[n_rows], baseline);
            if (st == TP_OK) n_rows++;
        }
    }
    if (st == TP_OK) {
        double sum = 0, min_ratio = 1e30;
        int64_t wrong = 0;
        int baseline_ok = -1; /* -1: no baseline or no size >= 1 MiB */
        for (int i = 0; i < n_rows; i++) {
            sum += rows[i].busbw[0] + rows[i].busbw[1];
            wrong += (rows[i].wrong[0] > 0 ? rows[i].wrong[0] : 0) +
                     (rows[i].wrong[1] > 0 ? rows[i].wrong[1] : 0);
            if (rows[i].have_mpi && rows[i].k.bytes >= (1u << 20)) {
                if (baseline_ok < 0) baseline_ok = 1;
                if (rows[i].ratio < 0.95) baseline_ok = 0;
                if (rows[i].ratio < min_ratio) min_ratio = rows[i].ratio;
            }
        }
        double avg = n_rows ? sum / (2.0 * n_rows) : 0;
        if (rank == 0) {
            printf("# Out of bounds values : %lld %s\n", (long long)wrong,
                   !o->check ? "(not checked)"
                   : wrong   ? "FAILED"
                             : "OK");
            printf("# Avg bus bandwidth    : %g\n", avg);
            if (baseline && baseline_ok >= 0)
                printf("# Baseline: in-place busbw / bare MPI_Allreduce busbw >= 0.95 at every "
                       "size >= 1 MiB: %s (lowest %.2f)\n",
                       baseline_ok ? "PASS" : "FAIL", min_ratio);
            else if (baseline)
                printf("# Baseline: %s\n", tp_bench_mpi_baseline_available()
                                               ? "n/a (no size >= 1 MiB)"
                                               : "- (no MPI: one rank without a launcher)");
            else if (allreduce)
                printf("# Baseline: skipped (device buffers: the bare MPI_Allreduce baseline "
                       "needs host buffers)\n");
            printf("#\n");
            fflush(stdout);
            if (o->json) st = write_json(o->json, c, b, o, rows, n_rows, avg, baseline_ok);
        }
        st = tp_comm_agree(host, st);
        if (st == TP_OK && wrong > 0) {
            if (rank == 0)
                fprintf(stderr, "tulpar bench %s: %lld wrong values\n", b->name, (long long)wrong);
            st = TP_ERR_INTERNAL;
        }
    }
    tp_comm_buf_free(c, sendbuf);
    tp_comm_buf_free(c, recvbuf);
    free(stage);
    free(rows);
    return st;
}

int tp_bench_coll_main(int argc, char **argv)
{
    const tp_bench_coll_t *b = tp_bench_coll_find(argv[0]);
    if (!b) return tp_cli_usage_error("bench", "unknown benchmark '%s'", argv[0]);
    tp_runtime_t *rt = NULL;
    TP_TRY(tp_runtime_create(NULL, NULL, &rt));
    coll_opts_t o;
    tp_status_t st = parse(argc, argv, b, rt->world_size, &o);
    /* --comm nccl: a NCCL communicator over the world one. Creating it agrees over the world
     * communicator, so without a GPU (or CUDA in this build) every rank stops here, each rank that
     * failed saying why. */
    tp_comm_t *nccl = NULL;
    if (st == TP_OK && o.nccl) st = tp_comm_nccl_create(rt->comm, &nccl);
    if (st == TP_OK) st = bench(nccl ? nccl : rt->comm, rt->comm, b, &o);
    if ((st == TP_ERR_MPI || (nccl && st == TP_ERR_CUDA)) && rt->world_size > 1) {
        /* Collectives can no longer be trusted to finish: stop every rank. */
        fprintf(stderr, "tulpar: aborting all ranks after %s failure\n",
                st == TP_ERR_MPI ? "an MPI" : "a CUDA/NCCL");
        tp_comm_abort(nccl ? nccl : rt->comm, 1);
    }
    tp_comm_free(nccl);
    tp_runtime_free(rt);
    return st;
}
