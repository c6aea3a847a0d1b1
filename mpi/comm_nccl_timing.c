/* CUDA-event intervals for the NCCL communicator's GPU-side timing (comm_nccl_timing.h). */
#include "comm_nccl_timing.h"

#include <stdlib.h>

#include "tp_error.h"

/* Intervals pending at once: a training step queues a few per gradient bucket. */
#define MAX_PENDING 4096

typedef struct interval {
    cudaEvent_t begin, end;
    int kind;
    bool ended;
} interval_t;

struct tp_gpu_timing {
    bool off;
    interval_t *iv; /* pending intervals, [0, n) */
    int n;
    cudaEvent_t *pool; /* recycled events */
    int npool;
};

tp_gpu_timing_t *tp_gpu_timing_create(void)
{
    tp_gpu_timing_t *g = tp_calloc(1, sizeof *g, "GPU timing");
    if (!g) return NULL;
    g->iv = tp_calloc(MAX_PENDING, sizeof *g->iv, "GPU timing intervals");
    g->pool = tp_calloc(2 * MAX_PENDING, sizeof *g->pool, "GPU timing events");
    if (!g->iv || !g->pool) {
        tp_gpu_timing_free(g);
        return NULL;
    }
    return g;
}

void tp_gpu_timing_free(tp_gpu_timing_t *g)
{
    if (!g) return;
    for (int i = 0; g->iv && i < g->n; i++) {
        if (g->iv[i].begin) cudaEventDestroy(g->iv[i].begin);
        if (g->iv[i].end) cudaEventDestroy(g->iv[i].end);
    }
    for (int i = 0; i < g->npool; i++)
        cudaEventDestroy(g->pool[i]);
    free(g->iv);
    free(g->pool);
    free(g);
}

static void turn_off(tp_gpu_timing_t *g, const char *what, cudaError_t e)
{
    if (!g->off)
        tp_log_warn("communicator 'nccl': GPU-side timing off (%s: %s); step reports fall back "
                    "to host times",
                    what, cudaGetErrorString(e));
    g->off = true;
}

static cudaEvent_t take_event(tp_gpu_timing_t *g)
{
    if (g->npool > 0) return g->pool[--g->npool];
    cudaEvent_t ev = NULL;
    cudaError_t e = cudaEventCreate(&ev); /* timing enabled */
    if (e != cudaSuccess) {
        turn_off(g, "cudaEventCreate", e);
        return NULL;
    }
    return ev;
}

int tp_gpu_timing_begin(tp_gpu_timing_t *g, cudaStream_t st, int kind)
{
    if (!g || g->off) return -1;
    if (g->n == MAX_PENDING) {
        /* Nobody has taken the times for long (a benchmark loop): recycle what finished. */
        double drop[TP_GPU_KINDS];
        tp_gpu_timing_take(g, drop);
        if (g->n == MAX_PENDING) return -1;
    }
    interval_t *v = &g->iv[g->n];
    v->begin = take_event(g);
    v->end = v->begin ? take_event(g) : NULL;
    if (!v->end) {
        if (v->begin) g->pool[g->npool++] = v->begin;
        v->begin = NULL;
        return -1;
    }
    cudaError_t e = cudaEventRecord(v->begin, st);
    if (e != cudaSuccess) {
        turn_off(g, "cudaEventRecord", e);
        return -1;
    }
    v->kind = kind;
    v->ended = false;
    return g->n++;
}

void tp_gpu_timing_end(tp_gpu_timing_t *g, int h, cudaStream_t st)
{
    if (!g || g->off || h < 0 || h >= g->n) return;
    cudaError_t e = cudaEventRecord(g->iv[h].end, st);
    if (e != cudaSuccess) {
        turn_off(g, "cudaEventRecord", e);
        return;
    }
    g->iv[h].ended = true;
}

bool tp_gpu_timing_take(tp_gpu_timing_t *g, double seconds[TP_GPU_KINDS])
{
    for (int k = 0; k < TP_GPU_KINDS; k++)
        seconds[k] = 0;
    if (!g || g->off) return false;
    int kept = 0;
    for (int i = 0; i < g->n; i++) {
        interval_t v = g->iv[i];
        float ms = 0;
        cudaError_t e = v.ended ? cudaEventElapsedTime(&ms, v.begin, v.end) : cudaErrorNotReady;
        if (e == cudaErrorNotReady) { /* still queued: keep it, in order */
            if (v.ended && cudaPeekAtLastError() == cudaErrorNotReady)
                (void)cudaGetLastError(); /* a status, not an error */
            g->iv[kept++] = v;
            continue;
        }
        if (e != cudaSuccess) {
            turn_off(g, "cudaEventElapsedTime", e);
            return false;
        }
        seconds[v.kind] += 1e-3 * ms;
        g->pool[g->npool++] = v.begin;
        g->pool[g->npool++] = v.end;
    }
    g->n = kept;
    return true;
}
