/* The configuration schema: every section.key with its type, field, default, allowed values and
 * documentation. This table is the single source of truth; config.c walks it to load, override,
 * default, check, emit and document. Keep sections contiguous: the emitter opens a group each
 * time the section changes. */
#include "config.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* The _Generic arm fails to compile when the field's type does not match the row's type, so a
 * row cannot silently write a double into an int64_t. */
#define FIELD_OF(f)          (((tp_config_t *)0)->f)
#define CHECKED_OFFSET(f, T) (offsetof(tp_config_t, f) + 0 * sizeof(_Generic(FIELD_OF(f), T : 1)))

#define INT(f)   .type = TP_CFG_INT, .offset = CHECKED_OFFSET(f, int64_t)
#define FLOAT(f) .type = TP_CFG_FLOAT, .offset = CHECKED_OFFSET(f, double)
#define BOOL(f)  .type = TP_CFG_BOOL, .offset = CHECKED_OFFSET(f, bool)
#define STRING(f)                                                                                  \
    .type = TP_CFG_STRING, .offset = CHECKED_OFFSET(f, char *), .size = sizeof FIELD_OF(f)
#define INT_LIST(f, n)                                                                             \
    .type = TP_CFG_INT_LIST, .offset = CHECKED_OFFSET(f, int64_t *),                               \
    .size = sizeof FIELD_OF(f) / sizeof FIELD_OF(f)[0], .count_offset = CHECKED_OFFSET(n, int)

#define UNBOUNDED INT64_MAX

const tp_config_key_t tp_config_schema[] = {
    /* model */
    {"model", "type", STRING(model_type), .def = "mlp", .choices = {"mlp", "cnn"},
     .doc = "network: mlp (fully connected) or cnn (two conv layers + fc)"},
    {"model", "hidden", INT_LIST(hidden, n_hidden), .def = "[256, 128]", .min_len = 1,
     .max_len = TP_CFG_MAX_LAYERS, .imin = 1, .imax = 65536, .doc = "mlp: hidden layer widths"},
    {"model", "activation", STRING(activation), .def = "relu", .choices = {"relu", "gelu"},
     .doc = "activation after each hidden layer"},
    {"model", "dropout", FLOAT(dropout), .def = "0.0", .fmin = 0, .fmax = 0.95,
     .doc = "dropout probability after each hidden activation (training only)"},
    {"model", "channels", INT_LIST(channels, n_channels), .def = "[32, 64]", .min_len = 1,
     .max_len = TP_CFG_MAX_LAYERS, .imin = 1, .imax = 4096,
     .doc = "cnn: output channels of the two conv layers (exactly 2 entries for cnn)"},
    {"model", "kernel", INT(kernel), .def = "3", .imin = 1, .imax = 7, .flags = TP_CFG_ODD,
     .doc = "cnn: conv kernel size (same padding)"},
    {"model", "fc", INT(fc), .def = "128", .imin = 1, .imax = 65536,
     .doc = "cnn: width of the hidden fully connected layer"},

    /* data */
    {"data", "dataset", STRING(dataset), .def = "fashion-mnist", .choices = {"fashion-mnist"},
     .doc = "dataset format and class count"},
    {"data", "dir", STRING(data_dir), .def = "/usr/share/datasets/fashion-mnist",
     .doc = "directory holding the IDX files"},
    {"data", "normalize", BOOL(normalize), .def = "true",
     .doc = "feed (pixel/255 - mean) / std instead of pixel/255"},
    {"data", "mean", FLOAT(mean), .def = "0.2860", .fmin = -INFINITY, .fmax = INFINITY,
     .flags = TP_CFG_LO_OPEN | TP_CFG_HI_OPEN, .doc = "normalization mean (of pixel/255)"},
    {"data", "std", FLOAT(std), .def = "0.3530", .fmin = 0, .fmax = INFINITY,
     .flags = TP_CFG_LO_OPEN | TP_CFG_HI_OPEN, .doc = "normalization standard deviation"},

    /* train */
    {"train", "epochs", INT(epochs), .def = "10", .imin = 0, .imax = 100000,
     .doc = "passes over the training set (used when steps = 0)"},
    {"train", "steps", INT(steps), .def = "0", .imin = 0, .imax = UNBOUNDED,
     .doc = "optimizer steps; > 0 overrides epochs"},
    {"train", "batch", INT(batch), .def = "128", .imin = 1, .imax = 1048576,
     .doc = "global batch (per-rank batch x ranks)"},
    {"train", "optimizer", STRING(optimizer), .def = "adamw", .choices = {"sgd", "adamw"},
     .doc = "sgd (with momentum) or adamw"},
    {"train", "lr", FLOAT(lr), .def = "1e-3", .fmin = 0, .fmax = 10, .flags = TP_CFG_LO_OPEN,
     .doc = "peak learning rate"},
    {"train", "min_lr", FLOAT(min_lr), .def = "0.0", .fmin = 0, .fmax = INFINITY,
     .flags = TP_CFG_HI_OPEN, .doc = "final learning rate of the cosine schedule (<= lr)"},
    {"train", "warmup_steps", INT(warmup_steps), .def = "0", .imin = 0, .imax = UNBOUNDED,
     .doc = "linear warmup from lr/warmup_steps to lr over this many steps"},
    {"train", "schedule", STRING(schedule), .def = "cosine", .choices = {"cosine", "constant"},
     .doc = "learning-rate schedule after warmup"},
    {"train", "momentum", FLOAT(momentum), .def = "0.9", .fmin = 0, .fmax = 1,
     .flags = TP_CFG_HI_OPEN, .doc = "sgd: momentum (0 disables)"},
    {"train", "nesterov", BOOL(nesterov), .def = "false", .doc = "sgd: Nesterov momentum"},
    {"train", "beta1", FLOAT(beta1), .def = "0.9", .fmin = 0, .fmax = 1, .flags = TP_CFG_HI_OPEN,
     .doc = "adamw: first-moment decay"},
    {"train", "beta2", FLOAT(beta2), .def = "0.999", .fmin = 0, .fmax = 1, .flags = TP_CFG_HI_OPEN,
     .doc = "adamw: second-moment decay"},
    {"train", "eps", FLOAT(eps), .def = "1e-8", .fmin = 0, .fmax = INFINITY,
     .flags = TP_CFG_LO_OPEN | TP_CFG_HI_OPEN, .doc = "adamw: denominator epsilon"},
    {"train", "weight_decay", FLOAT(weight_decay), .def = "0.0", .fmin = 0, .fmax = INFINITY,
     .flags = TP_CFG_HI_OPEN, .doc = "decoupled weight decay (adamw) or L2 (sgd)"},
    {"train", "grad_clip", FLOAT(grad_clip), .def = "0.0", .fmin = 0, .fmax = INFINITY,
     .flags = TP_CFG_HI_OPEN, .doc = "clip the global gradient norm to this; 0 disables"},
    {"train", "seed", INT(seed), .def = "1234", .imin = 0, .imax = UNBOUNDED,
     .doc = "seed for initialization, shuffling and dropout"},

    /* eval */
    {"eval", "batch", INT(eval_batch), .def = "256", .imin = 1, .imax = 1048576,
     .doc = "evaluation batch per rank"},
    {"eval", "at_end", BOOL(eval_at_end), .def = "true",
     .doc = "evaluate on the test set after training"},

    /* checkpoint */
    {"checkpoint", "dir", STRING(ckpt_dir), .def = "checkpoints",
     .doc = "checkpoint directory; relative paths are inside the run directory"},
    {"checkpoint", "every", INT(ckpt_every), .def = "0", .imin = 0, .imax = UNBOUNDED,
     .doc = "steps between checkpoints; 0 = only at the end"},
    {"checkpoint", "keep", INT(ckpt_keep), .def = "3", .imin = 1, .imax = 1000,
     .doc = "newest checkpoints kept"},

    /* log */
    {"log", "every", INT(log_every), .def = "50", .imin = 1, .imax = UNBOUNDED,
     .doc = "steps between progress lines and metrics.jsonl rows"},

    /* runtime */
    {"runtime", "backend", STRING(backend), .def = "cpu", .choices = {"cpu", "ref", "cuda"},
     .doc = "compute backend: cpu (OpenBLAS+OpenMP), ref (naive loops) or cuda"},
    {"runtime", "threads", INT(threads), .def = "0", .imin = 0, .imax = 1024,
     .doc = "OpenMP threads per rank; 0 = cores / ranks on the node"},
};

const int tp_config_schema_len = (int)(sizeof tp_config_schema / sizeof tp_config_schema[0]);

const tp_config_key_t *tp_config_find_key(const char *section, const char *key)
{
    for (int i = 0; i < tp_config_schema_len; i++)
        if (!strcmp(tp_config_schema[i].section, section) && !strcmp(tp_config_schema[i].key, key))
            return &tp_config_schema[i];
    return NULL;
}
