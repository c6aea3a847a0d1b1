/* Data-parallel evaluation and batch classification of an image data set: each rank takes a
 * contiguous shard of the examples, results are combined with the communicator. */
#ifndef TP_EVALUATE_H
#define TP_EVALUATE_H

#include "comm.h"
#include "data.h"
#include "model.h"
#include "task.h"

/* Shard [lo, hi) of n examples for rank r of R. */
void tp_shard_range(int64_t n, int rank, int world, int64_t *lo, int64_t *hi);

tp_status_t tp_evaluate(tp_model_t *m, const tp_dataset_t *ds, tp_comm_t *comm,
                        tp_eval_result_t *out);

/* Classify every example: on return (all ranks) pred[i] and prob[i] hold the argmax class and
 * its probability for i in [0, ds->n); arrays are allocated by the caller with n entries. */
tp_status_t tp_classify(tp_model_t *m, const tp_dataset_t *ds, tp_comm_t *comm, int32_t *pred,
                        float *prob, tp_eval_result_t *out);

#endif
