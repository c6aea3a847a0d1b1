// The CUDA backend object: device choice, stream, cuBLAS handle, precision, device memory, gemm
// and scratch buffers, and the interface struct that points at the kernels (kernels_*.cu). It
// does not hold kernels other than gemm's K == 0 case; ops are in kernels_basic.cu,
// kernels_xent.cu, kernels_conv.cu, kernels_transformer.cu, kernels_layernorm.cu and
// kernels_attention_tc.cu.
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The runtime's headers are C: give their functions (TP_ERR's tp_err_at, tp_calloc, logging)
// C linkage here, before cuda_ops.h includes them again without it.
extern "C" {
#include "backend_impl.h"
}
#include "backend_cuda.h"
#include "cuda_common.h"
#include "cublas_check.h"
#include "cuda_ops.h"
#include "linear_cublaslt.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#define TP_CUDA_SCRATCH_SLOTS 4
// Uploads of at most TP_CUDA_STAGE_MAX bytes (a step's tokens, labels or images: GPT-2 at batch
// 16 x 1024 is 64 KiB, a CNN batch of 256 images 0.8 MiB) go through pinned staging slots;
// larger ones (weights, optimizer state) copy synchronously. A slot is reused once its copy has
// run; while the next one is still queued a slot is added instead (up to TP_CUDA_STAGE_MAX_SLOTS),
// so after the first training step, which uploads what every step uploads, the host never waits.
#define TP_CUDA_STAGE_MAX       ((size_t)8 << 20)
#define TP_CUDA_STAGE_MIN       ((size_t)1 << 20)
#define TP_CUDA_STAGE_MAX_SLOTS 64
// cuBLASLt's workspace (NVIDIA suggests 32 MiB on Hopper for its fastest kernels).
#define TP_CUDA_LT_WORKSPACE ((size_t)32 << 20)
// The scratch slot the fused bias gradient goes through on its way into db.
#define TP_CUDA_LT_BGRAD_SLOT 2

typedef struct stage_slot {
    void *host; // pinned (cudaHostAlloc)
    size_t cap;
    cudaEvent_t copied; // recorded after the copy out of `host`
} stage_slot_t;

typedef struct cuda_state {
    int device;
    cudaStream_t stream;
    cublasHandle_t cublas;
    tp_lt_t *lt; // cuBLASLt: the linear ops' fused products
    tp_precision_t precision;
    void *scratch[TP_CUDA_SCRATCH_SLOTS];
    size_t scratch_cap[TP_CUDA_SCRATCH_SLOTS];
    stage_slot_t *stage; // a ring, oldest copy at stage_next
    int n_stage, stage_next;
    cudaEvent_t *marks; // the op profile's timing marks (runtime.profile), reused every step
    int n_marks, cap_marks;
} cuda_state_t;

static cuda_state_t *state_of(const tp_backend_t *be)
{
    return (cuda_state_t *)be->impl;
}

// Set-up checks: report with the library's message and return (init returns a status).
#define INIT_CUDA(call)                                                                            \
    do {                                                                                           \
        cudaError_t init_err_ = (call);                                                            \
        if (init_err_ != cudaSuccess)                                                              \
            return TP_ERR(TP_ERR_CUDA, "backend 'cuda': %s failed: %s", #call,                     \
                          cudaGetErrorString(init_err_));                                          \
    } while (0)

#define INIT_CUBLAS(call)                                                                          \
    do {                                                                                           \
        cublasStatus_t init_st_ = (call);                                                          \
        if (init_st_ != CUBLAS_STATUS_SUCCESS)                                                     \
            return TP_ERR(TP_ERR_CUDA, "backend 'cuda': %s failed: %s", #call,                     \
                          cublasGetStatusString(init_st_));                                        \
    } while (0)

// ---- gemm with K == 0: C = beta * C (cuBLAS is not asked about an empty product) -------------

static __global__ void gemm_scale_c_kernel(float *C, int64_t M, int64_t N, int64_t ldc, float beta)
{
    int64_t n = M * N;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float *c = C + (i / N) * ldc + i % N;
        *c = beta == 0.0f ? 0.0f : beta * *c;
    }
}

// ---- device choice ----------------------------------------------------------------------------

// The node-local rank from the launcher's environment (Open MPI, Slurm, MPICH/Intel MPI), else 0.
static int node_local_rank(const char **from)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID",
                                       "MPI_LOCALRANKID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (!v || !*v) continue;
        char *end = NULL;
        long r = strtol(v, &end, 10);
        if (*end == '\0' && r >= 0 && r <= INT_MAX) {
            *from = vars[i];
            return (int)r;
        }
        tp_log_warn("backend 'cuda': ignoring %s=\"%s\" (not a rank number)", vars[i], v);
    }
    *from = "default";
    return 0;
}

// Everything init sets up; on failure the caller frees what was created (state_free).
static tp_status_t cuda_setup(tp_backend_t *be, cuda_state_t *s)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0) {
        (void)cudaGetLastError();
        return TP_ERR(TP_ERR_UNSUPPORTED,
                      "backend 'cuda': no usable GPU here (cudaGetDeviceCount: %s). HINT: check "
                      "nvidia-smi and CUDA_VISIBLE_DEVICES, or use runtime.backend = \"cpu\"",
                      e != cudaSuccess ? cudaGetErrorString(e) : "no devices");
    }
    const char *from = "";
    int lr = node_local_rank(&from);
    s->device = lr % n;
    e = cudaSetDevice(s->device);
    if (e != cudaSuccess)
        return TP_ERR(TP_ERR_CUDA,
                      "backend 'cuda': cudaSetDevice(%d) failed: %s (node-local rank %d from %s, "
                      "%d GPU(s) visible)",
                      s->device, cudaGetErrorString(e), lr, from, n);
    cudaDeviceProp prop;
    INIT_CUDA(cudaGetDeviceProperties(&prop, s->device));
    // The kernels are compiled for CMAKE_CUDA_ARCHITECTURES: fail here, not at the first op.
    cudaFuncAttributes attr;
    e = cudaFuncGetAttributes(&attr, gemm_scale_c_kernel);
    if (e != cudaSuccess)
        return TP_ERR(TP_ERR_UNSUPPORTED,
                      "backend 'cuda': GPU %d (%s, sm_%d%d) cannot run this build's kernels: %s. "
                      "HINT: rebuild with -DCMAKE_CUDA_ARCHITECTURES=%d%d",
                      s->device, prop.name, prop.major, prop.minor, cudaGetErrorString(e),
                      prop.major, prop.minor);

    cudaStream_t stream = NULL;
    INIT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    s->stream = stream;
    cublasHandle_t h = NULL;
    INIT_CUBLAS(cublasCreate(&h));
    s->cublas = h;
    INIT_CUBLAS(cublasSetStream(s->cublas, s->stream));
    // gemm names its compute type per call (TF32 or bf16 tensor cores, gemm_ex); the handle's
    // default math mode matches runtime.precision = "fp32" for anything else.
    INIT_CUBLAS(cublasSetMathMode(s->cublas, CUBLAS_TF32_TENSOR_OP_MATH));
    TP_TRY(tp_lt_create(s->stream, TP_CUDA_LT_WORKSPACE, &s->lt));

    int rt = 0, drv = 0, cbv = 0;
    INIT_CUDA(cudaRuntimeGetVersion(&rt));
    INIT_CUDA(cudaDriverGetVersion(&drv));
    INIT_CUBLAS(cublasGetVersion(s->cublas, &cbv));
    int len = snprintf(be->describe, sizeof be->describe,
                       "cuda: GPU %d of %d (%.80s, sm_%d%d, %.1f GiB, %d SMs), CUDA runtime %d.%d, "
                       "driver %d.%d, cuBLAS %d.%d.%d",
                       s->device, n, prop.name, prop.major, prop.minor,
                       (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0),
                       prop.multiProcessorCount, rt / 1000, (rt % 1000) / 10, drv / 1000,
                       (drv % 1000) / 10, cbv / 10000, (cbv / 100) % 100, cbv % 100);
    (void)len; // a long device name is cut at the buffer's end
    return TP_OK;
}

// Frees whatever part of the state exists (after a failed set-up too).
static void state_free(cuda_state_t *s)
{
    if (!s) return;
    if (s->stream) {
        cudaError_t e = cudaStreamSynchronize(s->stream);
        if (e != cudaSuccess)
            tp_log_warn("backend 'cuda': at shutdown, cudaStreamSynchronize: %s",
                        cudaGetErrorString(e));
    }
    int lt_problems = 0, lt_unsupported = 0;
    tp_lt_counts(s->lt, &lt_problems, &lt_unsupported);
    if (lt_unsupported > 0)
        tp_log_info("backend 'cuda': %d of %d fused linear products had no cuBLASLt algorithm "
                    "and ran as separate ops",
                    lt_unsupported, lt_problems);
    tp_lt_free(s->lt);
    for (int i = 0; i < TP_CUDA_SCRATCH_SLOTS; i++)
        if (s->scratch[i]) (void)cudaFree(s->scratch[i]);
    for (int i = 0; i < s->n_stage; i++) {
        if (s->stage[i].host) (void)cudaFreeHost(s->stage[i].host);
        if (s->stage[i].copied) (void)cudaEventDestroy(s->stage[i].copied);
    }
    free(s->stage);
    for (int i = 0; i < s->cap_marks; i++)
        if (s->marks[i]) (void)cudaEventDestroy(s->marks[i]);
    free(s->marks);
    if (s->cublas) (void)cublasDestroy(s->cublas);
    if (s->stream) (void)cudaStreamDestroy(s->stream);
    free(s);
}

static tp_status_t cuda_init(tp_backend_t *be, int threads)
{
    (void)threads; // one host thread drives the GPU
    cuda_state_t *s = (cuda_state_t *)tp_calloc(1, sizeof *s, "cuda backend state");
    if (!s) return TP_ERR_NOMEM;
    s->precision = TP_PREC_FP32;
    tp_status_t st = cuda_setup(be, s);
    if (st != TP_OK) {
        state_free(s);
        return st;
    }
    be->impl = s;
    be->threads = 1;
    return TP_OK;
}

static void cuda_shutdown(tp_backend_t *be)
{
    state_free(state_of(be));
    be->impl = NULL;
}

static void cuda_synchronize(tp_backend_t *be)
{
    TP_CUDA_FATAL(cudaStreamSynchronize(state_of(be)->stream));
}

static tp_status_t cuda_set_precision(tp_backend_t *be, tp_precision_t p)
{
    if (p != TP_PREC_FP32 && p != TP_PREC_BF16)
        return TP_ERR(TP_ERR_UNSUPPORTED, "backend 'cuda': unknown precision %d", (int)p);
    state_of(be)->precision = p;
    return TP_OK;
}

// ---- accessors (cuda_common.h) --------------------------------------------------------------

cudaStream_t tp_cuda_stream(tp_backend_t *be)
{
    return state_of(be)->stream;
}

static void *cuda_stream_ptr(tp_backend_t *be)
{
    return (void *)state_of(be)->stream;
}

tp_precision_t tp_cuda_precision(const tp_backend_t *be)
{
    return state_of(be)->precision;
}

void *tp_cuda_scratch(tp_backend_t *be, int slot, size_t bytes)
{
    cuda_state_t *s = state_of(be);
    if (slot < 0 || slot >= TP_CUDA_SCRATCH_SLOTS) {
        fprintf(stderr, "%s:%d: tp_cuda_scratch: slot %d out of range 0..%d\n", __FILE__, __LINE__,
                slot, TP_CUDA_SCRATCH_SLOTS - 1);
        exit(1);
    }
    if (s->scratch[slot] && bytes <= s->scratch_cap[slot]) return s->scratch[slot];
    // Grow (never shrink) by at least half, so slowly growing requests reallocate rarely.
    size_t cap = s->scratch_cap[slot] + s->scratch_cap[slot] / 2;
    if (cap < bytes) cap = bytes;
    cap = (cap + 255) / 256 * 256;
    if (cap == 0) cap = 256;
    if (s->scratch[slot]) {
        // Work already queued may still read the old buffer. Growth stops after the first
        // steps; the wait is counted (tp_backend_host_waits).
        be->host_waits++;
        TP_CUDA_FATAL(cudaStreamSynchronize(s->stream));
        TP_CUDA_FATAL(cudaFree(s->scratch[slot]));
        s->scratch[slot] = NULL;
        s->scratch_cap[slot] = 0;
    }
    void *p = NULL;
    TP_CUDA_FATAL(cudaMalloc(&p, cap));
    s->scratch[slot] = p;
    s->scratch_cap[slot] = cap;
    return p;
}

// ---- memory ---------------------------------------------------------------------------------

static void *cuda_alloc(tp_backend_t *be, size_t bytes)
{
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
            tp_log_warn("backend 'cuda': cudaMalloc(%zu bytes) failed: %s (%.2f GiB free of %.2f "
                        "GiB on GPU %d)",
                        bytes, cudaGetErrorString(e), (double)free_b / (1024.0 * 1024.0 * 1024.0),
                        (double)total_b / (1024.0 * 1024.0 * 1024.0), state_of(be)->device);
        else
            tp_log_warn("backend 'cuda': cudaMalloc(%zu bytes) failed: %s", bytes,
                        cudaGetErrorString(e));
        // Clear it, or the next op's launch check would report this failure.
        (void)cudaGetLastError();
        return NULL;
    }
    return p;
}

static void cuda_release(tp_backend_t *be, void *ptr)
{
    if (!ptr) return;
    be->host_waits++;
    TP_CUDA_FATAL(cudaStreamSynchronize(state_of(be)->stream));
    TP_CUDA_FATAL(cudaFree(ptr));
}

// Pinned memory for k: at least `bytes`. cudaHostAlloc and cudaFreeHost may synchronise the
// device, so they count as host waits; false when no pinned memory is to be had.
static bool stage_reserve(tp_backend_t *be, stage_slot_t *k, size_t bytes)
{
    if (k->host && k->cap >= bytes) return true;
    be->host_waits++;
    if (k->host) TP_CUDA_FATAL(cudaFreeHost(k->host));
    k->host = NULL;
    k->cap = 0;
    size_t cap = bytes < TP_CUDA_STAGE_MIN ? TP_CUDA_STAGE_MIN : bytes;
    if (cudaHostAlloc(&k->host, cap, cudaHostAllocDefault) != cudaSuccess) {
        (void)cudaGetLastError();
        k->host = NULL;
        return false;
    }
    k->cap = cap;
    return true;
}

// The slot for the next staged upload, or NULL (then copy synchronously).
static stage_slot_t *stage_take(tp_backend_t *be, cuda_state_t *s, size_t bytes)
{
    if (s->n_stage > 0) {
        stage_slot_t *k = &s->stage[s->stage_next];
        cudaError_t q = cudaEventQuery(k->copied);
        if (q != cudaErrorNotReady) TP_CUDA_FATAL(q);
        // "Not ready" is a status, not an error: keep it from the next launch check.
        else if (cudaPeekAtLastError() == cudaErrorNotReady)
            (void)cudaGetLastError();
        if (q == cudaSuccess || s->n_stage == TP_CUDA_STAGE_MAX_SLOTS) {
            if (q != cudaSuccess) { // every slot busy: wait for the oldest copy
                be->host_waits++;
                TP_CUDA_FATAL(cudaEventSynchronize(k->copied));
            }
            if (!stage_reserve(be, k, bytes)) return NULL;
            s->stage_next = (s->stage_next + 1) % s->n_stage;
            return k;
        }
    }
    // The oldest copy has not run yet: add a slot in front of it (it stays the oldest).
    stage_slot_t *grown =
        (stage_slot_t *)realloc(s->stage, (size_t)(s->n_stage + 1) * sizeof *grown);
    if (!grown) return NULL;
    s->stage = grown;
    int at = s->stage_next;
    memmove(&s->stage[at + 1], &s->stage[at], (size_t)(s->n_stage - at) * sizeof *grown);
    stage_slot_t *k = &s->stage[at];
    memset(k, 0, sizeof *k);
    TP_CUDA_FATAL(cudaEventCreateWithFlags(&k->copied, cudaEventDisableTiming));
    s->n_stage++;
    s->stage_next = (at + 1) % s->n_stage;
    return stage_reserve(be, k, bytes) ? k : NULL;
}

// The host buffer may be reused as soon as this returns. Small uploads (a training step's
// batch) are copied into a pinned staging slot and queued, so the host does not wait for the
// GPU. cudaMemcpyAsync straight from pageable memory may synchronise with the stream instead
// (CUDA's "API synchronization behavior").
static void cuda_upload(tp_backend_t *be, void *dst, const void *src, size_t bytes)
{
    if (bytes == 0) return;
    cuda_state_t *s = state_of(be);
    cudaStream_t st = s->stream;
    stage_slot_t *k = bytes <= TP_CUDA_STAGE_MAX ? stage_take(be, s, bytes) : NULL;
    if (!k) {
        be->host_waits++;
        TP_CUDA_FATAL(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st));
        TP_CUDA_FATAL(cudaStreamSynchronize(st));
        return;
    }
    memcpy(k->host, src, bytes);
    TP_CUDA_FATAL(cudaMemcpyAsync(dst, k->host, bytes, cudaMemcpyHostToDevice, st));
    TP_CUDA_FATAL(cudaEventRecord(k->copied, st));
}

static void cuda_download(tp_backend_t *be, void *dst, const void *src, size_t bytes)
{
    if (bytes == 0) return;
    cudaStream_t st = state_of(be)->stream;
    TP_CUDA_FATAL(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st));
    TP_CUDA_FATAL(cudaStreamSynchronize(st));
}

// ---- op profile marks (backend_profile.h) ----------------------------------------------------

static int cuda_timer_mark(tp_backend_t *be)
{
    cuda_state_t *s = state_of(be);
    if (s->n_marks == s->cap_marks) {
        int cap = s->cap_marks ? 2 * s->cap_marks : 512;
        cudaEvent_t *m = (cudaEvent_t *)realloc(s->marks, (size_t)cap * sizeof *m);
        if (!m) return -1;
        memset(m + s->cap_marks, 0, (size_t)(cap - s->cap_marks) * sizeof *m);
        s->marks = m;
        s->cap_marks = cap;
    }
    cudaEvent_t *ev = &s->marks[s->n_marks];
    if (!*ev) TP_CUDA_FATAL(cudaEventCreate(ev));
    TP_CUDA_FATAL(cudaEventRecord(*ev, s->stream));
    return s->n_marks++;
}

static double cuda_timer_ms(tp_backend_t *be, int a, int b)
{
    cuda_state_t *s = state_of(be);
    float ms = 0.0f;
    TP_CUDA_FATAL(cudaEventElapsedTime(&ms, s->marks[a], s->marks[b]));
    return (double)ms;
}

static void cuda_timer_reset(tp_backend_t *be)
{
    state_of(be)->n_marks = 0;
}

// ---- gemm -----------------------------------------------------------------------------------

static int gemm_int(int64_t v, const char *what)
{
    if (v < 0 || v > INT_MAX) {
        fprintf(stderr, "%s:%d: gemm: %s = %lld is outside cuBLAS's int range\n", __FILE__,
                __LINE__, what, (long long)v);
        exit(1);
    }
    return (int)v;
}

// Row-major C[M,N] = alpha op(A) op(B) + beta C (backend.h), C float32, A and B of cuBLAS type
// `ab`. A row-major matrix with leading dimension ld is the column-major transpose with the same
// ld, so cuBLAS computes C^T[N,M] = op(B)^T op(A)^T: B first, A second, M and N swapped, each
// transpose flag kept (row-major A untransposed is A^T column-major, which is what op(A)^T needs:
// CUBLAS_OP_N).
// C is float32, or of type ab when c_ab (a compute copy: gemm_to_c, beta 0).
static void gemm_ex(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                    float alpha, const void *A, int64_t lda, const void *B, int64_t ldb,
                    cudaDataType_t ab, float beta, void *C, bool c_ab, int64_t ldc,
                    cublasComputeType_t compute)
{
    if (M <= 0 || N <= 0) return;
    cuda_state_t *s = state_of(be);
    if (K <= 0 && c_ab) { // an empty sum: zeros (all-zero bits in float and bf16 alike)
        size_t eb = ab == CUDA_R_16BF ? 2 : 4;
        TP_CUDA_FATAL(
            cudaMemset2DAsync(C, (size_t)ldc * eb, 0, (size_t)N * eb, (size_t)M, s->stream));
        return;
    }
    if (K <= 0) {
        int64_t n = M * N, g = (n + 255) / 256;
        gemm_scale_c_kernel<<<(unsigned)(g < 32768 ? g : 32768), 256, 0, s->stream>>>((float *)C, M,
                                                                                      N, ldc, beta);
        TP_CUDA_LAUNCHED();
        return;
    }
    TP_CUBLAS_FATAL(cublasGemmEx(s->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 ta ? CUBLAS_OP_T : CUBLAS_OP_N, gemm_int(N, "N"), gemm_int(M, "M"),
                                 gemm_int(K, "K"), &alpha, B, ab, gemm_int(ldb, "ldb"), A, ab,
                                 gemm_int(lda, "lda"), &beta, C, c_ab ? ab : CUDA_R_32F,
                                 gemm_int(ldc, "ldc"), compute, CUBLAS_GEMM_DEFAULT));
}

// float32 operands: TF32 tensor cores, or under "bf16" operands rounded to bf16 by cuBLAS.
static void cuda_gemm(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                      float beta, float *C, int64_t ldc)
{
    cublasComputeType_t compute = state_of(be)->precision == TP_PREC_BF16
                                      ? CUBLAS_COMPUTE_32F_FAST_16BF
                                      : CUBLAS_COMPUTE_32F_FAST_TF32;
    gemm_ex(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, CUDA_R_32F, beta, C, false, ldc, compute);
}

// Compute-copy operands: under "bf16" they are bf16 already, so cuBLAS reads half the bytes and
// accumulates in fp32 (CUBLAS_COMPUTE_32F: no further rounding of the inputs); under "fp32" they
// are float32 and this is cuda_gemm.
static void cuda_gemm_c(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                        float alpha, const tp_cval_t *A, int64_t lda, const tp_cval_t *B,
                        int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (state_of(be)->precision == TP_PREC_BF16)
        gemm_ex(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, CUDA_R_16BF, beta, C, false, ldc,
                CUBLAS_COMPUTE_32F);
    else
        cuda_gemm(be, ta, tb, M, N, K, alpha, tp_cval_cf32(A), lda, tp_cval_cf32(B), ldb, beta, C,
                  ldc);
}

// The same with a compute-copy result (backend.h's tp_op_gemm_to_c): under "bf16" cuBLAS rounds
// the fp32 accumulators to bf16 as it stores them, so the LM head writes half the bytes and
// cross-entropy reads half.
static void cuda_gemm_to_c(tp_backend_t *be, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                           float alpha, const tp_cval_t *A, int64_t lda, const tp_cval_t *B,
                           int64_t ldb, tp_cval_t *C, int64_t ldc)
{
    if (state_of(be)->precision == TP_PREC_BF16)
        gemm_ex(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, CUDA_R_16BF, 0.0f, C, true, ldc,
                CUBLAS_COMPUTE_32F);
    else
        cuda_gemm(be, ta, tb, M, N, K, alpha, tp_cval_cf32(A), lda, tp_cval_cf32(B), ldb, 0.0f,
                  tp_cval_f32(C), ldc);
}

// ---- linear ops: products with fused epilogues (cuBLASLt) --------------------------------------

// What every fused product shares: compute-copy operands (their cuBLAS type, and the arithmetic
// cuda_gemm_c would use for them), the shape, alpha 1, and D (C = D, beta 0 until the caller
// says otherwise) float32 or, with d_compute, a compute copy.
static tp_lt_matmul_t lt_problem(const cuda_state_t *s, bool ta, bool tb, int64_t m, int64_t n,
                                 int64_t k, const void *A, int64_t lda, const void *B, int64_t ldb,
                                 bool d_compute, void *D, int64_t ldd)
{
    bool bf16 = s->precision == TP_PREC_BF16;
    tp_lt_matmul_t p;
    memset(&p, 0, sizeof p);
    p.ta = ta;
    p.tb = tb;
    p.m = m;
    p.n = n;
    p.k = k;
    p.A = A;
    p.lda = lda;
    p.B = B;
    p.ldb = ldb;
    p.ab = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    p.compute = bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
    p.alpha = 1.0f;
    p.cd = d_compute ? p.ab : CUDA_R_32F;
    p.C = D;
    p.ldc = ldd;
    p.D = D;
    p.ldd = ldd;
    return p;
}

// y[N, out] = x W^T + b (+ r), row-major: column-major y^T[out, N] = op(W) x^T with W stored as
// [in, out] column-major (transposed) and x as [in, N]; the bias runs along y^T's rows (one per
// output feature), which is cuBLASLt's bias epilogue; r is the C matrix (beta 1).
static bool cuda_linear_forward_c(tp_backend_t *be, const tp_cval_t *x, const tp_cval_t *w,
                                  const float *b, const float *r, float *y, int64_t N, int64_t in,
                                  int64_t out)
{
    if (!b && !r) return false; // a plain product: gemm_c
    cuda_state_t *s = state_of(be);
    tp_lt_matmul_t p = lt_problem(s, true, false, out, N, in, w, in, x, in, false, y, out);
    if (r) {
        p.beta = 1.0f;
        p.C = r;
    }
    p.epilogue = b ? TP_LT_BIAS : TP_LT_NONE;
    p.bias = (void *)b;
    return tp_lt_matmul(s->lt, &p);
}

// dW[out, in] += dy^T x and db += colsum(dy): column-major dW^T[in, out] = x^T[in, N] op(dy^T)
// with dy stored as [out, N]; the bias gradient sums op(B) = dy over the product's K (the
// tokens), cuBLASLt's BGRADB epilogue. It overwrites its vector, so it goes through scratch and
// is added into db.
static bool cuda_linear_grad_c(tp_backend_t *be, const tp_cval_t *dy, const tp_cval_t *x, float *dw,
                               float *db, int64_t N, int64_t in, int64_t out)
{
    if (!db) return false; // a plain product: gemm_c
    cuda_state_t *s = state_of(be);
    float *bgrad = (float *)tp_cuda_scratch(be, TP_CUDA_LT_BGRAD_SLOT, (size_t)out * sizeof(float));
    tp_lt_matmul_t p = lt_problem(s, false, true, in, out, N, x, in, dy, out, false, dw, in);
    p.beta = 1.0f; // dW accumulates
    p.epilogue = TP_LT_BGRADB;
    p.bias = bgrad;
    if (!tp_lt_matmul(s->lt, &p)) return false;
    tp_cuda_axpy(be, db, bgrad, 1.0f, out);
    return true;
}

// The bias vector of a product whose output D is a compute copy has D's type (what cuBLASLt
// documents): under "bf16" a bf16 copy of b (out elements, in scratch).
static const void *lt_bias_of_d_type(tp_backend_t *be, const float *b, int64_t out)
{
    if (!b || state_of(be)->precision != TP_PREC_BF16) return b;
    tp_cval_t *bc = (tp_cval_t *)tp_cuda_scratch(be, TP_CUDA_LT_BGRAD_SLOT, (size_t)out * 2);
    tp_cuda_to_compute(be, b, bc, out);
    return bc;
}

// y = x W^T + b as a compute copy: cuda_linear_forward_c's product with D (and so the bias
// vector) of the compute type.
static bool cuda_linear_forward_to_c(tp_backend_t *be, const tp_cval_t *x, const tp_cval_t *w,
                                     const float *b, tp_cval_t *y, float *scratch, int64_t N,
                                     int64_t in, int64_t out)
{
    (void)scratch;
    cuda_state_t *s = state_of(be);
    tp_lt_matmul_t p = lt_problem(s, true, false, out, N, in, w, in, x, in, true, y, out);
    p.epilogue = b ? TP_LT_BIAS : TP_LT_NONE;
    p.bias = (void *)lt_bias_of_d_type(be, b, out);
    return tp_lt_matmul(s->lt, &p);
}

// pre = x W^T + b and y = gelu(pre), both compute copies: as cuda_linear_forward_c with the
// GELU_AUX_BIAS epilogue, D = y and the auxiliary output = pre (of D's type: bf16 under "bf16",
// which is why the op stores pre as a compute copy). The bias vector is of D's type too (what
// cuBLASLt documents: lt_bias_of_d_type). cuBLASLt wants the auxiliary output's leading
// dimension a multiple of 8.
static bool cuda_linear_act_forward_c(tp_backend_t *be, tp_act_t act, const tp_cval_t *x,
                                      const tp_cval_t *w, const float *b, tp_cval_t *pre,
                                      tp_cval_t *y, float *scratch, int64_t N, int64_t in,
                                      int64_t out)
{
    (void)scratch;
    if (act != TP_ACT_GELU || !b || out % 8 != 0) return false;
    cuda_state_t *s = state_of(be);
    tp_lt_matmul_t p = lt_problem(s, true, false, out, N, in, w, in, x, in, true, y, out);
    p.epilogue = TP_LT_GELU_AUX_BIAS;
    p.bias = (void *)lt_bias_of_d_type(be, b, out);
    p.aux = pre;
    p.ldaux = out;
    return tp_lt_matmul(s->lt, &p);
}

// dpre = (dy W) * gelu'(pre), db += colsum(dpre): row-major dx[N, in] = dy W is column-major
// dx^T[in, N] = W^T[in, out] dy^T[out, N], both stored untransposed; the DGELU_BGRAD epilogue
// applies gelu' from the auxiliary input (pre, same layout as D) and sums each row of D^T (one
// per input feature) into a vector of D's type (bf16 under "bf16"), which goes through scratch
// into db (widened: bias_grad_c of one row).
static bool cuda_linear_dx_act_c(tp_backend_t *be, tp_act_t act, const tp_cval_t *dy,
                                 const tp_cval_t *w, const tp_cval_t *pre, tp_cval_t *dpre,
                                 float *db, float *scratch, int64_t N, int64_t in, int64_t out)
{
    (void)scratch;
    if (act != TP_ACT_GELU || !db || in % 8 != 0) return false;
    cuda_state_t *s = state_of(be);
    void *bgrad = tp_cuda_scratch(be, TP_CUDA_LT_BGRAD_SLOT, (size_t)in * sizeof(float));
    tp_lt_matmul_t p = lt_problem(s, false, false, in, N, out, w, in, dy, out, true, dpre, in);
    p.epilogue = TP_LT_DGELU_BGRAD;
    p.bias = bgrad;
    p.aux = (void *)pre;
    p.ldaux = in;
    if (!tp_lt_matmul(s->lt, &p)) return false;
    tp_cuda_bias_grad_c(be, (const tp_cval_t *)bgrad, db, 1, in, false);
    return true;
}

// ---- the interface ----------------------------------------------------------------------------

extern "C" const tp_backend_iface_t tp_backend_cuda_iface = {
    .name = "cuda",
    .host_memory = false,
    .init = cuda_init,
    .shutdown = cuda_shutdown,
    .synchronize = cuda_synchronize,
    .stream = cuda_stream_ptr,
    .set_precision = cuda_set_precision,
    .alloc = cuda_alloc,
    .release = cuda_release,
    .upload = cuda_upload,
    .download = cuda_download,
    .gemm = cuda_gemm,
    .gemm_c = cuda_gemm_c,
    .to_compute = tp_cuda_to_compute,
    .bias_grad_c = tp_cuda_bias_grad_c,
    .act_forward_c = tp_cuda_act_forward_c,
    .act_backward_c = tp_cuda_act_backward_c,
    .gemm_to_c = cuda_gemm_to_c,
    .xent_forward_c = tp_cuda_xent_forward_c,
    .xent_backward_c = tp_cuda_xent_backward_c,
    .linear_forward_c = cuda_linear_forward_c,
    .linear_grad_c = cuda_linear_grad_c,
    .linear_forward_to_c = cuda_linear_forward_to_c,
    .linear_act_forward_c = cuda_linear_act_forward_c,
    .linear_dx_act_c = cuda_linear_dx_act_c,
    .bias_add = tp_cuda_bias_add,
    .bias_grad = tp_cuda_bias_grad,
    .act_forward = tp_cuda_act_forward,
    .act_backward = tp_cuda_act_backward,
    .dropout_forward = tp_cuda_dropout_forward,
    .dropout_backward = tp_cuda_dropout_backward,
    .im2col = tp_cuda_im2col,
    .col2im = tp_cuda_col2im,
    .swap01 = tp_cuda_swap01,
    .maxpool_forward = tp_cuda_maxpool_forward,
    .maxpool_backward = tp_cuda_maxpool_backward,
    .softmax_xent_forward = tp_cuda_softmax_xent_forward,
    .softmax_xent_backward = tp_cuda_softmax_xent_backward,
    // xent through xent_forward_c / xent_backward_c (a compute-copy backend)
    .xent_forward = nullptr,
    .xent_backward = nullptr,
    .sumsq_to = tp_cuda_sumsq_to,
    .sum_to = tp_cuda_sum_to,
    .scale = tp_cuda_scale,
    .fill = tp_cuda_fill,
    .copy = tp_cuda_copy,
    .adamw = tp_cuda_adamw,
    .sgd = tp_cuda_sgd,
    .embedding_forward = tp_cuda_embedding_forward,
    .embedding_backward = tp_cuda_embedding_backward,
    .layernorm_forward = tp_cuda_layernorm_forward,
    .layernorm_backward = tp_cuda_layernorm_backward,
    .layernorm_backward_c = tp_cuda_layernorm_backward_c,
    .attention_forward = tp_cuda_attention_forward,
    .attention_att_numel = tp_cuda_attention_att_numel,
    .attention_backward = tp_cuda_attention_backward,
    .attention_decode = tp_cuda_attention_decode,
    .axpy = tp_cuda_axpy,
    .add = tp_cuda_add,
    .timer_mark = cuda_timer_mark,
    .timer_ms = cuda_timer_ms,
    .timer_reset = cuda_timer_reset,
};
