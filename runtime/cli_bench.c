/* `tulpar bench gemm`: the sgemm peak of this machine through the compute backend, the
 * baseline that training GFLOP/s are compared with (benchmarks/train_throughput.py); and the
 * dispatch of the other benchmarks: the collectives (cli_bench_coll.c), checkpoint bandwidth
 * (cli_bench_ckpt.c) and the whole suite (cli_suite.c, benchmarks/suite.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bench_coll.h"
#include "cli.h"
#include "json_writer.h"
#include "rng.h"

/* Defined in cli_bench_ckpt.c, cli_suite.c and cli_bench_gemm_gpt.c; argv[0] is the
 * benchmark's name. */
int tp_bench_ckpt_main(int argc, char **argv);
int tp_bench_suite_main(int argc, char **argv);
int tp_bench_gemm_gpt_main(int argc, char **argv);

typedef struct gemm_row {
    int64_t n;
    double ms, gflops;
} gemm_row_t;

static tp_status_t bench_one(tp_backend_t *be, int64_t n, int iters, gemm_row_t *row)
{
    size_t bytes = (size_t)(n * n) * sizeof(float);
    float *h = tp_malloc(bytes, "gemm input");
    float *a = tp_backend_alloc(be, bytes, "A"), *b = tp_backend_alloc(be, bytes, "B");
    float *c = tp_backend_alloc(be, bytes, "C");
    tp_status_t st = h && a && b && c ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) {
        tp_rng_t r;
        tp_rng_seed(&r, 42, (uint64_t)n);
        for (int64_t i = 0; i < n * n; i++)
            h[i] = tp_rng_uniform(&r) - 0.5f;
        tp_backend_upload(be, a, h, bytes);
        tp_backend_upload(be, b, h, bytes);
        tp_op_fill(be, c, 0.0f, n * n);
        tp_op_gemm(be, false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
        tp_backend_synchronize(be);
        double best = 1e30;
        for (int it = 0; it < iters; it++) {
            double t0 = tp_now();
            tp_op_gemm(be, false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            tp_backend_synchronize(be);
            double dt = tp_now() - t0;
            if (dt < best) best = dt;
        }
        row->n = n;
        row->ms = 1e3 * best;
        row->gflops = 2.0 * (double)n * (double)n * (double)n / best / 1e9;
    }
    free(h);
    tp_backend_release(be, a);
    tp_backend_release(be, b);
    tp_backend_release(be, c);
    return st;
}

static int run_bench(tp_runtime_t *rt, int argc, char **argv)
{
    if (argc >= 1 && tp_bench_coll_find(argv[0])) return tp_bench_coll_main(argc, argv);
    if (argc >= 1 && strcmp(argv[0], "ckpt") == 0) return tp_bench_ckpt_main(argc, argv);
    if (argc >= 1 && strcmp(argv[0], "suite") == 0) return tp_bench_suite_main(argc, argv);
    if (argc < 1 || strcmp(argv[0], "gemm") != 0)
        return tp_cli_usage_error("bench", "missing or unknown benchmark (gemm, allreduce, "
                                           "reducescatter, allgather, broadcast, ckpt, suite)");
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--gpt") == 0) return tp_bench_gemm_gpt_main(argc, argv);
    const char *json = NULL, *backend = "cpu";
    int threads = 0, iters = 5;
    int64_t sizes[16] = {256, 512, 1024, 2048};
    int n_sizes = 4;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (tp_cli_is(argv[i], "--json")) {
            if (!(json = tp_cli_value(argc, argv, &i, "--json"))) return TP_ERR_USAGE;
        } else if (tp_cli_is(argv[i], "--backend")) {
            if (!(backend = tp_cli_value(argc, argv, &i, "--backend"))) return TP_ERR_USAGE;
        } else if (tp_cli_is(argv[i], "--threads")) {
            if (!(v = tp_cli_value(argc, argv, &i, "--threads"))) return TP_ERR_USAGE;
            threads = atoi(v);
            if (threads < 1) return tp_cli_usage_error("bench", "--threads needs a count >= 1");
        } else if (tp_cli_is(argv[i], "--iters")) {
            if (!(v = tp_cli_value(argc, argv, &i, "--iters"))) return TP_ERR_USAGE;
            iters = atoi(v);
            if (iters < 1) return tp_cli_usage_error("bench", "--iters needs a count >= 1");
        } else if (tp_cli_is(argv[i], "--sizes")) {
            if (!(v = tp_cli_value(argc, argv, &i, "--sizes"))) return TP_ERR_USAGE;
            n_sizes = 0;
            for (const char *p = v; *p && n_sizes < 16;) {
                char *end;
                long long s = strtoll(p, &end, 10);
                if (end == p || s < 1 || s > 16384 || (*end && *end != ','))
                    return tp_cli_usage_error("bench", "--sizes: bad list '%s'", v);
                sizes[n_sizes++] = s;
                p = *end ? end + 1 : end;
            }
        } else {
            return tp_cli_usage_error("bench", "unknown option '%s'", argv[i]);
        }
    }
    tp_backend_t *be = NULL;
    TP_TRY(tp_backend_create(backend, threads, &be));
    printf("# sgemm on %s\n# %8s %10s %10s\n", tp_backend_describe(be), "n", "time(ms)", "GFLOP/s");
    gemm_row_t rows[16];
    double peak = 0;
    tp_status_t st = TP_OK;
    for (int i = 0; i < n_sizes && st == TP_OK; i++) {
        st = bench_one(be, sizes[i], iters, &rows[i]);
        if (st != TP_OK) break;
        printf("  %8lld %10.3f %10.1f\n", (long long)rows[i].n, rows[i].ms, rows[i].gflops);
        if (rows[i].gflops > peak) peak = rows[i].gflops;
    }
    if (st == TP_OK) printf("# peak %.1f GFLOP/s with %d threads\n", peak, tp_backend_threads(be));
    if (st == TP_OK && json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            st = TP_ERR(TP_ERR_IO, "cannot write %s", json);
        } else {
            tp_json_t j;
            tp_json_init(&j, f, true);
            tp_json_object_begin(&j, NULL);
            tp_json_str(&j, "benchmark", "sgemm");
            tp_json_str(&j, "backend", tp_backend_describe(be));
            tp_json_int(&j, "threads", tp_backend_threads(be));
            tp_json_num(&j, "peak_gflops", peak);
            tp_json_array_begin(&j, "rows");
            for (int i = 0; i < n_sizes; i++) {
                tp_json_object_begin(&j, NULL);
                tp_json_int(&j, "n", rows[i].n);
                tp_json_num(&j, "ms", rows[i].ms);
                tp_json_num(&j, "gflops", rows[i].gflops);
                tp_json_object_end(&j);
            }
            tp_json_array_end(&j);
            tp_json_object_end(&j);
            fclose(f);
        }
    }
    tp_backend_free(be);
    return st;
}

const tp_cli_cmd_t tp_cmd_bench = {
    .name = "bench",
    .summary = "benchmarks (gemm peak; collectives; checkpoint bandwidth; the whole suite)",
    .usage =
        "usage: tulpar bench gemm [--sizes 256,512,1024,2048] [--threads N] [--iters N]\n"
        "                         [--backend cpu] [--json FILE]\n"
        "\n"
        "Square sgemm through the compute backend: best time of --iters runs per size and\n"
        "GFLOP/s; the peak is the baseline for training GFLOP/s.\n"
        "\n"
        "usage: tulpar bench gemm --gpt [--tokens 16384] [--d-model 768] [--vocab 50257]\n"
        "           [--layers 12] [--backend cpu] [--precision fp32|bf16] [--threads N]\n"
        "           [--iters 5] [--json FILE]\n"
        "\n"
        "The matrix products of one GPT training step at their shapes (forward, dX and dW\n"
        "of qkv, attention projection, MLP fc and proj; the tied LM head's three, and its\n"
        "two dlogits products again with rows padded to 8 and 64 elements), each on float32\n"
        "operands (the baseline) and on compute copies (bf16 operands under --precision\n"
        "bf16) in the same run: mean ms of --iters back-to-back calls, TFLOP/s, speedup,\n"
        "and one step's products (--layers blocks and the head) both ways.\n"
        "\n"
        "usage: [mpirun -np N] tulpar bench allreduce|reducescatter|allgather|broadcast\n"
        "           [-b 8] [-e 64M] [-f 2] [-n 20] [-w 5] [-c 1] [-r 0] [-o sum]\n"
        "           [-d float] [--comm host|nccl] [--json FILE]\n"
        "\n"
        "The communicator's collectives with nccl-tests' flags and columns:\n"
        "  -b, -e  smallest and largest size in bytes (K, M, G suffixes: powers of 1024);\n"
        "          the size is the whole buffer (reducescatter: send, allgather: receive)\n"
        "  -f      size factor from one row to the next     -n  timed iterations\n"
        "  -w      warm-up iterations                        -c  check every element (0/1)\n"
        "  -r      broadcast root                            -o  sum|avg|max|min\n"
        "  -d      float|double                              --json FILE  rows as JSON\n"
        "  --comm  host: the world communicator, host buffers (self/mpi; default)\n"
        "          nccl: a NCCL communicator over it, device buffers (one GPU per rank)\n"
        "Time is the average per call, the maximum over ranks; busbw = algbw x 2(n-1)/n\n"
        "(allreduce), (n-1)/n (reducescatter, allgather), 1 (broadcast). Out of place\n"
        "costs a copy for allreduce and broadcast (the communicator works in place).\n"
        "allreduce under MPI on host buffers adds bare MPI_Allreduce loops in the same run\n"
        "(mpi columns: in place; ratio = in-place busbw / bare in-place busbw; --json also\n"
        "has the bare out-of-place loop); skipped with --comm nccl. A wrong value makes the\n"
        "exit status 1.\n"
        "\n"
        "usage: tulpar bench ckpt [--bytes 256M] [--dir .] [--repeat 5] [--json FILE] [--keep]\n"
        "\n"
        "Checkpoint bandwidth of --dir's disk: a synthetic checkpoint of --bytes float32\n"
        "(16 MiB tensors) written with the trainer's writer (tmp file, fsync, rename,\n"
        "directory fsync) and read back with crc32 checks, against write(2) + fsync and\n"
        "read(2) of the same bytes, alternating, --repeat times. Pages are dropped from the\n"
        "page cache (posix_fadvise) before each read; the share still resident is printed.\n"
        "GB/s = bytes / 1e9 / seconds; the files are removed unless --keep.\n"
        "\n"
        "usage: tulpar bench suite [--quick] [--out DIR] [--ranks 1,2,4] [--repeats N]\n"
        "           [--launcher auto|mpirun|srun] [--backend auto|cpu|cuda]\n"
        "           [--threads-per-rank N] [--models mlp,cnn,gpt_small,gpt2_124m]\n"
        "           [--sections collectives,training,checkpoint,inference] [--ckpt-dir DIR]\n"
        "           [--ckpt-bytes N] [--data-dir DIR]\n"
        "\n"
        "The benchmark suite (benchmarks/suite.py, /usr/bin/python3): collective sweeps\n"
        "(allreduce, reducescatter, allgather), training throughput of the reference models\n"
        "at each rank count with strong and weak scaling efficiency, checkpoint write/read\n"
        "bandwidth against plain write+fsync, inference images/s and generated tokens/s;\n"
        "each repeated (default 5, --quick 2, small sizes) and reported as median, min and\n"
        "max, with cost figures and an alpha-beta prediction of data-parallel efficiency at\n"
        "8, 64 and 512 devices. Writes DIR/report.json, report.csv and report.html\n"
        "(self-contained, with plots; default DIR runs/bench-suite-<time>). Ranks default\n"
        "to 1 and 2, or under Slurm 1..SLURM_NTASKS in powers of two; --launcher auto uses\n"
        "srun inside a Slurm job, else mpirun. See benchmarks/README.md.\n",
    .needs_runtime = false,
    .run = run_bench,
};
