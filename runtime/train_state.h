/* Saving and restoring the full training state (parameters, optimizer moments, step, epoch,
 * data position, RNG offsets, resolved config) through the checkpoint module. Rank 0 writes;
 * every rank reads. Host staging buffers are allocated once per run, not per checkpoint. */
#ifndef TP_TRAIN_STATE_H
#define TP_TRAIN_STATE_H

#include "ckpt.h"
#include "comm.h"
#include "model.h"
#include "optim.h"

typedef struct tp_train_state tp_train_state_t;

/* o may be NULL (inference: parameters only). */
tp_status_t tp_train_state_create(tp_model_t *m, tp_optim_t *o, tp_train_state_t **out);
void tp_train_state_free(tp_train_state_t *s);

/* Collective over comm when the optimizer is sharded (ZeRO): assemble the full optimizer state
 * on every rank before rank 0 saves; tp_train_state_release_gathered frees it afterwards (every
 * rank). No-op for replicated optimizers. */
tp_status_t tp_train_state_gather(tp_train_state_t *s, tp_comm_t *comm);
void tp_train_state_release_gathered(tp_train_state_t *s);

/* Write the checkpoint (rank 0; after tp_train_state_gather when sharded). */
tp_status_t tp_train_state_save(tp_train_state_t *s, const char *path, const tp_ckpt_meta_t *meta,
                                const char *config_text);
/* Restores parameters (and optimizer state and step count when s has an optimizer; a sharded
 * optimizer keeps this rank's pieces of the full state). The checkpoint's optimizer must match.
 * *meta receives the stored meta. Every rank reads the file. */
tp_status_t tp_train_state_load(tp_train_state_t *s, const char *path, tp_ckpt_meta_t *meta);

#endif
