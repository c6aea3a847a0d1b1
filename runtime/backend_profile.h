/* Op profile (runtime.profile): how long each backend op ran, summed over training steps, so a
 * slow step can be traced to the ops that make it slow (GPU kernels included) without an
 * external profiler. Host backends read the clock around each op (their ops are synchronous);
 * device backends record events on their stream (iface timer_*), so profiling adds no host wait:
 * the times are read at the step's end, when the backend has finished anyway. */
#ifndef TP_BACKEND_PROFILE_H
#define TP_BACKEND_PROFILE_H

#include <stdint.h>

#include "backend.h"

typedef struct tp_profile_entry {
    char
        name[64]; /* the op ("layernorm_forward"); gemm with its shape ("gemm NT 768x2304x50304") */
    int64_t calls;
    double ms;    /* summed over the collected steps */
    double flops; /* summed; 0 for ops that are not counted (memory-bound ones) */
} tp_profile_entry_t;

/* Time the ops from now on. */
tp_status_t tp_backend_profile_begin(tp_backend_t *be);
/* The step has ended and the backend has finished it (after a synchronize): fold its ops'
 * times into the totals, count one step, and stop recording until the next step_begin. */
void tp_backend_profile_collect(tp_backend_t *be);
/* A training step starts: record its ops (nothing is recorded between a collect and the next
 * step_begin, so evaluation and checkpoints stay out and add no marks). */
void tp_backend_profile_step_begin(tp_backend_t *be);
/* Entries sorted by time (longest first), ops not yet collected dropped; *steps: collected steps;
 * *span_ms: summed time from the first op to the end of the last one of each step (ops' total /
 * span = how busy); *dropped: ops that went unrecorded because memory for their marks ran out
 * (the totals then miss their time: the report says so). */
int tp_backend_profile_entries(tp_backend_t *be, const tp_profile_entry_t **out, int64_t *steps,
                               double *span_ms, int64_t *dropped);

/* For backend.c's op wrappers: a mark before an op (-1 when not profiling) and the op's entry
 * after it. */
int tp_profile_mark(tp_backend_t *be);
void tp_profile_op(tp_backend_t *be, int start, const char *name, double flops);

#endif
