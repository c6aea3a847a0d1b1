/* GPU-side time of the NCCL communicator's work, measured with CUDA events so that measuring
 * never makes the host wait: intervals are recorded on a stream as they are queued and summed
 * later, after the host has synchronised anyway (tp_comm_sync at the end of a training step).
 *
 * Two kinds: TP_GPU_WAIT, the time the compute stream spends blocked on a collective it was
 * ordered after (tp_comm_wait_ordered: the exposed communication), and TP_GPU_COLL, the time
 * the communication stream spends in collectives (communication in flight, hidden or not).
 * Timing is best-effort: a CUDA failure turns it off with one warning, never fails a collective. */
#ifndef TP_COMM_NCCL_TIMING_H
#define TP_COMM_NCCL_TIMING_H

#include <cuda_runtime.h>
#include <stdbool.h>

enum { TP_GPU_WAIT = 0, TP_GPU_COLL = 1, TP_GPU_KINDS = 2 };

typedef struct tp_gpu_timing tp_gpu_timing_t;

tp_gpu_timing_t *tp_gpu_timing_create(void); /* NULL when out of memory */
void tp_gpu_timing_free(tp_gpu_timing_t *g);
/* Queue the start of an interval of `kind` on st; returns its handle, or -1 (timing off). */
int tp_gpu_timing_begin(tp_gpu_timing_t *g, cudaStream_t st, int kind);
/* Queue the end of interval h (from tp_gpu_timing_begin; -1 is ignored) on st. */
void tp_gpu_timing_end(tp_gpu_timing_t *g, int h, cudaStream_t st);
/* Seconds per kind of the intervals that have finished since the last call (their events are
 * recycled; unfinished ones stay for the next call). False when timing is off. */
bool tp_gpu_timing_take(tp_gpu_timing_t *g, double seconds[TP_GPU_KINDS]);

#endif
