/* `tulpar train`: data-parallel training of an image classifier with checkpoints, resume,
 * progress reports and the run summary. */
#ifndef TP_TRAINER_H
#define TP_TRAINER_H

#include <stdint.h>

#include "config.h"
#include "data.h"
#include "runtime.h"

typedef struct tp_train_opts {
    const char *config_path; /* recorded in summary.json */
    const char *run_dir;
    const char *resume; /* NULL (fresh), "auto" (newest valid checkpoint in the run) or a path */
    int64_t stop_at;    /* > 0: checkpoint and stop after this step (schedule unchanged) */
} tp_train_opts_t;

tp_status_t tp_train(tp_runtime_t *rt, const tp_config_t *cfg, const tp_train_opts_t *opts);

/* Load train or test split named by cfg (data.dataset, data.dir) with normalisation applied. */
tp_status_t tp_load_dataset(const tp_config_t *cfg, const char *split, tp_dataset_t **out);

#endif
