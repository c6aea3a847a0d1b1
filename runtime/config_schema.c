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
    {"model", "type", STRING(model_type), .def = "mlp", .choices = {"mlp", "cnn", "gpt"},
     .doc = "network: mlp (fully connected), cnn (two conv layers + fc) or gpt (GPT-2 "
            "transformer language model)"},
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
    {"model", "n_layer", INT(n_layer), .def = "4", .imin = 1, .imax = 1024,
     .doc = "gpt: transformer blocks"},
    {"model", "n_head", INT(n_head), .def = "4", .imin = 1, .imax = 1024,
     .doc = "gpt: attention heads (must divide d_model)"},
    {"model", "d_model", INT(d_model), .def = "128", .imin = 1, .imax = 65536,
     .doc = "gpt: embedding width"},
    {"model", "seq_len", INT(seq_len), .def = "64", .imin = 1, .imax = 65536,
     .doc = "gpt: context length (positions)"},
    {"model", "vocab_size", INT(vocab_size), .def = "256", .imin = 2, .imax = 1048576,
     .doc = "gpt: vocabulary (256 for byte-level text, 50257 for GPT-2 tokens)"},

    /* data */
    {"data", "dataset", STRING(dataset), .def = "fashion-mnist",
     .choices = {"fashion-mnist", "tokens"},
     .doc = "fashion-mnist (IDX image files) or tokens (token files for language models)"},
    {"data", "dir", STRING(data_dir), .def = "/usr/share/datasets/fashion-mnist",
     .doc = "directory holding the IDX files or the token files"},
    {"data", "train", STRING(data_train), .def = "train.bin",
     .doc = "tokens: training token file (relative to data.dir unless absolute)"},
    {"data", "val", STRING(data_val), .def = "val.bin",
     .doc = "tokens: validation token file (relative to data.dir unless absolute)"},
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
    {"train", "grad_accum", INT(grad_accum), .def = "1", .imin = 1, .imax = 65536,
     .doc = "micro-batches accumulated per optimizer step (one all-reduce per step)"},
    {"train", "micro_batch", INT(micro_batch), .def = "0", .imin = 0, .imax = 1048576,
     .doc = "per-rank micro-batch; 0 = batch / (ranks x grad_accum), else must equal it"},
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
    {"train", "zero", INT(zero), .def = "0", .imin = 0, .imax = 2,
     .doc = "ZeRO stage: 0 = replicated optimizer; 1 = optimizer state sharded over ranks; 2 = "
            "gradients sharded too"},

    /* eval */
    {"eval", "batch", INT(eval_batch), .def = "256", .imin = 1, .imax = 1048576,
     .doc = "evaluation batch per rank"},
    {"eval", "at_end", BOOL(eval_at_end), .def = "true",
     .doc = "evaluate on the test set after training"},
    {"eval", "every", INT(eval_every), .def = "0", .imin = 0, .imax = UNBOUNDED,
     .doc = "steps between evaluations during training (language models); 0 = only at the end"},
    {"eval", "max_batches", INT(eval_max_batches), .def = "0", .imin = 0, .imax = UNBOUNDED,
     .doc = "language models: evaluate on at most this many batches per rank; 0 = all"},
    {"eval", "sample_tokens", INT(sample_tokens), .def = "0", .imin = 0, .imax = 65536,
     .doc = "language models: length of the text sample printed at each evaluation"},
    {"eval", "sample_prompt", STRING(sample_prompt), .def = "The",
     .doc = "language models: prompt of that sample"},

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
    {"runtime", "precision", STRING(precision), .def = "fp32", .choices = {"fp32", "bf16"},
     .doc = "matrix products in fp32 (TF32 on GPUs) or bf16 with fp32 accumulation (cuda: "
            "products read bf16 compute copies of weights and activations); master weights, "
            "optimizer state, gradients, loss and norms stay fp32"},
    {"runtime", "profile", BOOL(profile), .def = "false",
     .doc = "time every backend op (GPU kernels through CUDA events, no host waits) from the "
            "second step on; a table at the end and profile.json in the run directory"},

    /* comm */
    {"comm", "timeout_s", FLOAT(comm_timeout_s), .def = "300.0", .fmin = 0, .fmax = 86400,
     .flags = TP_CFG_LO_OPEN,
     .doc = "abort the job when one collective has waited this long (a hung rank); generous "
            "because a peer's solo work (a multi-GB checkpoint write) legitimately takes "
            "minutes; a dead rank on the node is caught within seconds regardless"},
    {"comm", "bucket_mb", FLOAT(bucket_mb), .def = "1.0", .fmin = 0, .fmax = 4096,
     .flags = TP_CFG_LO_OPEN,
     .doc = "gradient bucket size in MiB: each bucket's reduction starts as soon as backward has "
            "filled it"},
    {"comm", "overlap", BOOL(overlap), .def = "true",
     .doc = "reduce gradient buckets while backward runs; false reduces after backward"},
};

const int tp_config_schema_len = (int)(sizeof tp_config_schema / sizeof tp_config_schema[0]);

const tp_config_key_t *tp_config_find_key(const char *section, const char *key)
{
    for (int i = 0; i < tp_config_schema_len; i++)
        if (!strcmp(tp_config_schema[i].section, section) && !strcmp(tp_config_schema[i].key, key))
            return &tp_config_schema[i];
    return NULL;
}
