/* The harness of test_cuda_ops (cuda_ops_harness.h): the backends under comparison, the
 * tolerance classes, the results table, the error measures, the per-case arenas, and the test
 * counters and seed of tests/unit/test_util.h, which every file of this test shares
 * (TP_TEST_SHARED_STATE). */
#include "cuda_ops_harness.h"

int tp_test_failures = 0;
int tp_test_checks = 0;
uint64_t g_seed = 1;

tp_backend_t *g_ref, *g_gpu;
int g_prec;
const char *const g_prec_name[2] = {"fp32", "bf16"};

/* ---- tolerances (the table at the top of test_cuda_ops.c) ------------------------------------ */

double tol(tol_kind_t k)
{
    switch (k) {
    case K_EXACT:
        return 0.0;
    case K_SUMSQ:
        return 1e-12;
    case K_ELEM:
        return g_prec ? 1e-2 : 1e-5;
    case K_GEMM:
        return g_prec ? 1e-2 : 2e-3;
    case K_ATTN:
        return g_prec ? 1e-2 : 5e-3;
    case K_GEMM_C:
        return g_prec ? 1e-3 : 2e-3;
    case K_F32:
        return 1e-5;
    }
    return 0.0;
}

/* ---- the summary table: worst error of each (op, precision) -------------------------------- */

typedef struct {
    char op[48];
    int prec;
    double err, tol;
    int cases;
} row_t;

#define MAX_ROWS 256 /* (op, precision) pairs: about 140 now */
static row_t g_rows[MAX_ROWS];
static int g_nrows;

void expect(const char *op, const char *shape, double e, tol_kind_t kind)
{
    double t = tol(kind);
    if (e != e) e = INFINITY;
    if (getenv("TP_TEST_VERBOSE"))
        printf("  [%s] %s(%s): err=%.3g tol=%.3g\n", g_prec_name[g_prec], op, shape, e, t);
    CHECKF(e <= t, "[%s] %s(%s): err=%.3g > tol=%.3g", g_prec_name[g_prec], op, shape, e, t);
    int i = 0;
    while (i < g_nrows && !(g_rows[i].prec == g_prec && strcmp(g_rows[i].op, op) == 0))
        i++;
    if (i == g_nrows) {
        /* A full table would hide the rows after it (the device check's summary reads them). */
        CHECKF(g_nrows < MAX_ROWS, "results table full (MAX_ROWS %d): %s not shown", MAX_ROWS, op);
        if (g_nrows == MAX_ROWS) return;
        g_nrows++;
        snprintf(g_rows[i].op, sizeof g_rows[i].op, "%s", op);
        g_rows[i].prec = g_prec;
        g_rows[i].err = 0;
        g_rows[i].tol = t;
        g_rows[i].cases = 0;
    }
    if (e > g_rows[i].err) g_rows[i].err = e;
    g_rows[i].cases++;
}

void print_table(void)
{
    printf("\n%-30s | %-9s | %-12s | %-9s | %s\n", "op", "precision", "max rel err", "tolerance",
           "ok");
    printf("-------------------------------+-----------+--------------+-----------+----\n");
    for (int i = 0; i < g_nrows; i++)
        printf("%-30s | %-9s | %-12.3g | %-9.3g | %s\n", g_rows[i].op, g_prec_name[g_rows[i].prec],
               g_rows[i].err, g_rows[i].tol, g_rows[i].err <= g_rows[i].tol ? "yes" : "NO");
    printf("\n");
}

/* ---- error measures ------------------------------------------------------------------------ */

/* 0 when the bytes are equal, else the fraction of differing bytes (> 0, fails K_EXACT). */
double bytes_differ(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += x[i] != y[i];
    return n ? (double)bad / (double)n : 0.0;
}

/* ---- memory: host and device arenas freed at the end of each case -------------------------- */

#define MAX_LIVE 128
static void *g_host[MAX_LIVE], *g_dev[MAX_LIVE];
static int g_nhost, g_ndev;

void *hkeep(void *p)
{
    if (g_nhost == MAX_LIVE) {
        fprintf(stderr, "test_cuda_ops: host arena full\n");
        exit(2);
    }
    return g_host[g_nhost++] = p;
}

float *hrnd(size_t n, float scale)
{
    return hkeep(rnd(n, scale));
}

float *hnan(size_t n)
{
    return hkeep(poisoned(n));
}

void *hbytes(size_t bytes, int fill)
{
    void *p = hkeep(xmalloc(bytes));
    memset(p, fill, bytes);
    return p;
}

float *hdup(const float *x, size_t n)
{
    return hkeep(fdup(x, n));
}

void *dalloc(size_t bytes)
{
    if (g_ndev == MAX_LIVE) {
        fprintf(stderr, "test_cuda_ops: device arena full\n");
        exit(2);
    }
    void *p = tp_backend_alloc(g_gpu, bytes ? bytes : 16, "test_cuda_ops");
    if (!p) {
        fprintf(stderr, "test_cuda_ops: device allocation of %zu bytes failed\n", bytes);
        exit(2);
    }
    return g_dev[g_ndev++] = p;
}

/* Device copy of host bytes. */
void *dput(const void *host, size_t bytes)
{
    void *d = dalloc(bytes);
    if (bytes) tp_backend_upload(g_gpu, d, host, bytes);
    return d;
}

float *dputf(const float *host, size_t n)
{
    return dput(host, n * sizeof(float));
}

/* Device array of n floats starting one float past the allocation's (aligned) start, holding
 * host's values: vectorised kernels must handle pointers that are not 16-byte aligned. */
float *dputf_off(const float *host, size_t n)
{
    float *d = dalloc((n + 1) * sizeof(float));
    if (n) tp_backend_upload(g_gpu, d + 1, host, n * sizeof(float));
    return d + 1;
}

float *dnan(size_t n)
{
    float *h = poisoned(n);
    float *d = dputf(h, n);
    free(h);
    return d;
}

/* Host copy of device bytes (after the stream's work is done). */
void *dget(const void *dev, size_t bytes)
{
    void *h = hkeep(xmalloc(bytes ? bytes : 1));
    tp_backend_synchronize(g_gpu);
    if (bytes) tp_backend_download(g_gpu, h, dev, bytes);
    return h;
}

float *dgetf(const float *dev, size_t n)
{
    return dget(dev, n * sizeof(float));
}

/* ---- compute copies (backend.h): bf16 on the GPU backend under "bf16", else float32 -------- */

bool gpu_bf16(void)
{
    return tp_backend_compute_bytes(g_gpu) == 2;
}

/* x rounded in place to what a compute copy of it holds, so that the ref computes from the
 * same inputs as the GPU: what remains is the op's own error. */
float *hround(float *x, size_t n)
{
    if (gpu_bf16())
        for (size_t i = 0; i < n; i++)
            x[i] = tp_bf16_round(x[i]);
    return x;
}

/* Device compute copy of host values (rounded as the upload does). */
tp_cval_t *dputc(const float *host, size_t n)
{
    tp_cval_t *d = dalloc(n * tp_backend_compute_bytes(g_gpu));
    tp_backend_upload_compute(g_gpu, d, host, (int64_t)n);
    return d;
}

/* A compute copy of n elements starting one element past an aligned address (vectorised
 * kernels' scalar path), holding host's values. */
tp_cval_t *dputc_off(const float *host, size_t n)
{
    tp_cval_t *d = dalloc((n + 1) * tp_backend_compute_bytes(g_gpu));
    tp_cval_t *at = tp_cval_at(g_gpu, d, 1);
    tp_backend_upload_compute(g_gpu, at, host, (int64_t)n);
    return at;
}

/* A compute copy poisoned with NaN (all-ones bytes are NaN in float32 and bf16 alike). */
tp_cval_t *dnanc(size_t n)
{
    size_t bytes = n * tp_backend_compute_bytes(g_gpu);
    return dput(hbytes(bytes, 0xff), bytes);
}

/* Host float32 copy of a device compute copy. */
float *dgetc(const tp_cval_t *dev, size_t n)
{
    float *h = hkeep(xmalloc(n ? n * sizeof(float) : 1));
    tp_backend_synchronize(g_gpu);
    tp_backend_download_compute(g_gpu, h, dev, (int64_t)n);
    return h;
}

void case_end(void)
{
    tp_backend_synchronize(g_gpu);
    for (int i = 0; i < g_ndev; i++)
        tp_backend_release(g_gpu, g_dev[i]);
    for (int i = 0; i < g_nhost; i++)
        free(g_host[i]);
    g_ndev = g_nhost = 0;
}

/* ---- shapes several groups share ------------------------------------------------------------ */

const int64_t g_rc[N_RC][2] = {{1, 1}, {7, 33}, {130, 7}, {33, 130}, {1, 257}, {514, 2304}};
const int64_t g_ns[N_NS] = {1, 7, 33, 130, 4099, 257 * 3072 + 3};
