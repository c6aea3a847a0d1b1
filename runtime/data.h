/* Image classification data: IDX files (MNIST/Fashion-MNIST format, gzip or plain) and the
 * distributed sampler.
 *
 * Pixels stay uint8 in memory (47 MB for Fashion-MNIST train); a batch is normalised to float
 * when it is assembled. The sampler is a pure function of (seed, epoch, step, rank): resuming
 * needs only the epoch and the step within it. */
#ifndef TP_DATA_H
#define TP_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "tp_error.h"

typedef struct tp_dataset {
    int64_t n; /* number of examples */
    int64_t rows, cols;
    int64_t n_classes; /* max label + 1, at least 10 for Fashion-MNIST */
    uint8_t *pixels;   /* n * rows * cols */
    uint8_t *labels;   /* n */
    float mean, std;   /* normalisation applied by tp_dataset_fill_batch */
    bool normalize;
} tp_dataset_t;

/* Load `split` ("train" or "t10k") from dir: {split}-images-idx3-ubyte[.gz] and
 * {split}-labels-idx1-ubyte[.gz] (the .gz name is tried first). Every failure (missing file,
 * bad magic, dimension mismatch, truncated or corrupt gzip, image/label count mismatch, label
 * out of range) returns TP_ERR_DATA with a message naming the file and what is wrong.
 * On success *out is owned by the caller: tp_dataset_free. */
tp_status_t tp_dataset_load_idx(const char *dir, const char *split, tp_dataset_t **out);
void tp_dataset_free(tp_dataset_t *ds);

/* Write examples idx[0..count) as float rows of rows*cols into x (count x rows*cols), labels into
 * y. With normalize: x = (p/255 - mean)/std, else p/255. */
void tp_dataset_fill_batch(const tp_dataset_t *ds, const int64_t *idx, int64_t count, float *x,
                           int32_t *y);

/* Distributed sampler over a dataset of n examples. Each epoch is a permutation of 0..n-1 drawn
 * from (seed, epoch); step s of the epoch uses global positions [s*B, (s+1)*B) of it (B =
 * global_batch, incomplete last batch dropped); rank r of R takes the r-th of R equal slices of
 * that global batch. */
typedef struct tp_sampler tp_sampler_t;

tp_status_t tp_sampler_create(int64_t n, int64_t global_batch, int rank, int world_size,
                              uint64_t seed, tp_sampler_t **out);
void tp_sampler_free(tp_sampler_t *s);
int64_t tp_sampler_steps_per_epoch(const tp_sampler_t *s);
int64_t tp_sampler_local_batch(const tp_sampler_t *s);
/* Indices for (epoch, step) into idx (local_batch entries); recomputes the permutation only when
 * the epoch changes. Also returns the global position of this rank's first example in the global
 * batch via *first_global (used to key per-example randomness such as dropout masks). */
void tp_sampler_batch(tp_sampler_t *s, int64_t epoch, int64_t step, int64_t *idx,
                      int64_t *first_global);

#endif
