/* Checkpoints in HDF5: full training state, written atomically, validated on open.
 *
 * Layout (format_version 1), readable by h5dump and h5py:
 *   /                      attrs: format="tulpar-checkpoint", format_version, tulpar_version,
 *                          step, epoch, step_in_epoch, samples_seen, world_size, seed,
 *                          rng_offset, optim_step, model_type, optimizer, created_unix
 *   /config                scalar string: the resolved libconfig text of the run
 *   /<group>/<tensor>      float32 datasets with the tensor's shape and a "crc32" attribute
 *                          (zlib crc32 of the raw little-endian bytes); groups used by the
 *                          trainer: "params", "optim/m", "optim/v" (AdamW), "optim/momentum"
 *                          (SGD). Group paths may contain '/'.
 * Tensors are stored one dataset each (not the flat buffer) so that external tools, resharding
 * and safetensors export see named, shaped weights.
 *
 * tp_ckpt_write writes PATH.tmp, fsyncs it, renames it to PATH and fsyncs the directory: a crash
 * leaves either the old file or the new one, never a torn file under PATH. */
#ifndef TP_CKPT_H
#define TP_CKPT_H

#include <stdint.h>
#include <stdio.h>

#include "tp_error.h"

#define TP_CKPT_FORMAT         "tulpar-checkpoint"
#define TP_CKPT_FORMAT_VERSION 1
#define TP_CKPT_MAX_DIMS       4

typedef struct tp_ckpt_tensor {
    const char *name; /* e.g. "fc1.weight" */
    int ndim;
    int64_t shape[TP_CKPT_MAX_DIMS];
    float *data; /* host memory; read: filled in, write: read from */
} tp_ckpt_tensor_t;

typedef struct tp_ckpt_group {
    const char *path; /* e.g. "params", "optim/m" */
    int n;
    tp_ckpt_tensor_t *tensors;
} tp_ckpt_group_t;

typedef struct tp_ckpt_meta {
    int64_t step;          /* optimizer steps completed */
    int64_t epoch;         /* epoch of the next step */
    int64_t step_in_epoch; /* step within that epoch */
    int64_t samples_seen;
    int64_t world_size; /* at save time (informational) */
    int64_t seed;
    int64_t rng_offset; /* counter the run's hash RNG streams continue from */
    int64_t optim_step; /* optimizer's own step count (Adam bias correction) */
    char model_type[32];
    char optimizer[32];
    int64_t created_unix;
} tp_ckpt_meta_t;

/* Write a checkpoint (single writer). Returns TP_ERR_HDF5/TP_ERR_IO with a message naming the
 * path on failure; an existing file at `path` is untouched unless the whole write succeeded. */
tp_status_t tp_ckpt_write(const char *path, const tp_ckpt_meta_t *meta, const char *config_text,
                          const tp_ckpt_group_t *groups, int n_groups);

typedef struct tp_ckpt tp_ckpt_t;

/* Open and validate: HDF5 file readable, format and version known, meta attributes present.
 * TP_ERR_CKPT with the path and the reason otherwise. Caller closes with tp_ckpt_close. */
tp_status_t tp_ckpt_open(const char *path, tp_ckpt_t **out);
void tp_ckpt_close(tp_ckpt_t *ck);
const tp_ckpt_meta_t *tp_ckpt_meta(const tp_ckpt_t *ck);
const char *tp_ckpt_config_text(const tp_ckpt_t *ck); /* owned by ck */

/* Read every tensor of `group` into the given tensors: each must exist with exactly the given
 * shape, and its crc32 must match; otherwise TP_ERR_CKPT naming path, dataset and the problem. */
tp_status_t tp_ckpt_read_group(tp_ckpt_t *ck, const tp_ckpt_group_t *group);

/* Verify every dataset's crc32 without keeping the data (used to pick a valid checkpoint). */
tp_status_t tp_ckpt_verify(tp_ckpt_t *ck);

/* Human-readable summary: format version, meta, every dataset with shape, and the config. */
tp_status_t tp_ckpt_inspect(const char *path, FILE *out);

/* Run-directory helpers. Checkpoint files are DIR/ckpt_<step, 8 digits>.h5. */
void tp_ckpt_path_for_step(const char *dir, int64_t step, char *out, size_t cap);
/* Newest checkpoint in dir that opens and verifies; invalid ones are skipped with a warning.
 * TP_OK with out[0] == '\0' when none is valid (or dir does not exist). */
tp_status_t tp_ckpt_find_latest(const char *dir, char *out, size_t cap);
/* Delete the oldest ckpt_*.h5 files so that at most `keep` remain; files that do not match the
 * name pattern are never touched. */
tp_status_t tp_ckpt_rotate(const char *dir, int64_t keep);

#endif
