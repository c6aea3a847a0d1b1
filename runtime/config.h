/* Run configuration: libconfig file -> validated tp_config_t.
 *
 * One schema table (config_schema.c) lists every section.key with its type, default, range and
 * documentation. Loading rejects unknown sections and keys, wrong types and out-of-range values
 * with "FILE:LINE: section.key: what is wrong"; `--set section.key=value` overrides go through
 * the same checks. The resolved config (every key, defaults filled in) is emitted as libconfig
 * text that parses back to the same struct: it is what rank 0 prints, what the run directory and
 * each checkpoint keep. */
#ifndef TP_CONFIG_H
#define TP_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tp_error.h"

#define TP_CFG_STR        256
#define TP_CFG_PATH       1024
#define TP_CFG_MAX_LAYERS 8

typedef struct tp_config {
    /* model */
    char model_type[TP_CFG_STR];         /* "mlp" | "cnn" */
    int64_t hidden[TP_CFG_MAX_LAYERS];   /* mlp: hidden layer widths */
    int n_hidden;                        /* number of entries used in hidden[] (1..8) */
    char activation[TP_CFG_STR];         /* "relu" | "gelu" */
    double dropout;                      /* [0, 0.95] */
    int64_t channels[TP_CFG_MAX_LAYERS]; /* cnn: output channels of the two conv layers */
    int n_channels;                      /* must be 2 for cnn */
    int64_t kernel;                      /* cnn: odd conv kernel size, 1..7 ("same" padding) */
    int64_t fc;                          /* cnn: width of the hidden fully connected layer */
    int64_t n_layer, n_head, d_model;    /* gpt */
    int64_t seq_len, vocab_size;         /* gpt */

    /* data */
    char dataset[TP_CFG_STR];   /* "fashion-mnist" (IDX files) */
    char data_dir[TP_CFG_PATH]; /* default /usr/share/datasets/fashion-mnist */
    char data_train[TP_CFG_PATH], data_val[TP_CFG_PATH]; /* tokens */
    bool normalize;
    double mean, std; /* applied to pixel/255 when normalize */

    /* train */
    int64_t epochs;             /* used when steps == 0 */
    int64_t steps;              /* > 0 overrides epochs */
    int64_t batch;              /* global batch: per-rank batch x ranks */
    int64_t grad_accum;         /* micro-batches per optimizer step */
    int64_t micro_batch;        /* per rank; 0 = derived */
    char optimizer[TP_CFG_STR]; /* "sgd" | "adamw" */
    double lr, min_lr;
    int64_t warmup_steps;
    char schedule[TP_CFG_STR]; /* "cosine" | "constant" */
    double momentum;           /* sgd */
    bool nesterov;             /* sgd */
    double beta1, beta2, eps;  /* adamw */
    double weight_decay;
    double grad_clip; /* global-norm clip; 0 disables */
    int64_t seed;
    int64_t zero; /* ZeRO stage 0, 1 or 2 */

    /* eval */
    int64_t eval_batch; /* per rank */
    bool eval_at_end;
    int64_t eval_every, eval_max_batches, sample_tokens;
    char sample_prompt[TP_CFG_STR];

    /* checkpoint */
    char ckpt_dir[TP_CFG_PATH]; /* relative paths are inside the run directory */
    int64_t ckpt_every;         /* steps; 0 = only at the end */
    int64_t ckpt_keep;          /* newest N kept; >= 1 */

    /* log */
    int64_t log_every; /* steps between progress lines and metrics.jsonl rows */

    /* runtime */
    char backend[TP_CFG_STR];   /* "cpu" | "ref" | "cuda" */
    int64_t threads;            /* OpenMP threads per rank; 0 = cores / ranks on the node */
    char precision[TP_CFG_STR]; /* "fp32" or "bf16" */
    bool profile;               /* time every backend op; profile.json in the run directory */

    /* comm */
    double comm_timeout_s; /* abort when one collective makes no progress this long */
    double bucket_mb;      /* gradient bucket size, MiB */
    bool overlap;          /* reduce buckets during backward */
} tp_config_t;

/* Fill every field with its schema default. */
void tp_config_defaults(tp_config_t *cfg);

/* Read and validate a libconfig file. On error prints "FILE:LINE: key: reason" and returns
 * TP_ERR_CONFIG; cfg is then unspecified. */
tp_status_t tp_config_load_file(tp_config_t *cfg, const char *path);

/* Same from text already in memory (e.g. the config stored in a checkpoint); `origin` names it
 * in messages. */
tp_status_t tp_config_load_string(tp_config_t *cfg, const char *text, const char *origin);

/* Apply one "section.key=value" override with the same checks. */
tp_status_t tp_config_set(tp_config_t *cfg, const char *assignment);

/* Checks that span several keys (model-specific requirements, min_lr <= lr, ...). Called by the
 * loaders and after overrides; `origin` names the file in messages. */
tp_status_t tp_config_validate(const tp_config_t *cfg, const char *origin);

/* Resolved config as libconfig text (malloc'd, caller frees). */
char *tp_config_to_string(const tp_config_t *cfg);

/* Markdown table of every key (section, key, type, default, range/choices, meaning): the
 * README's config reference is generated from it (`tulpar config --reference`). */
void tp_config_write_reference(FILE *out);

/* ---- the schema (config_schema.c) ------------------------------------------------------------
 * One row per section.key; loading, --set, defaults, emitting, validation and the reference
 * table all walk it, so adding a key is adding a row (and a tp_config_t field). */
typedef enum tp_config_type {
    TP_CFG_INT,      /* int64_t field */
    TP_CFG_FLOAT,    /* double field; integers are accepted */
    TP_CFG_BOOL,     /* bool field */
    TP_CFG_STRING,   /* char[size] field; non-empty; `choices` restricts it when set */
    TP_CFG_INT_LIST, /* int64_t[size] field plus an int count field */
} tp_config_type_t;

enum {
    TP_CFG_LO_OPEN = 1 << 0, /* float: the lower bound itself is not allowed */
    TP_CFG_HI_OPEN = 1 << 1, /* float: the upper bound itself is not allowed */
    TP_CFG_ODD = 1 << 2,     /* int: must be odd */
};

#define TP_CFG_MAX_CHOICES 6

typedef struct tp_config_key {
    const char *section, *key;
    tp_config_type_t type;
    size_t offset;        /* of the field in tp_config_t */
    size_t size;          /* strings: buffer bytes; int lists: capacity in entries */
    size_t count_offset;  /* int lists: offset of the int entry count */
    const char *def;      /* default, written as a --set value */
    int64_t imin, imax;   /* ints and int-list entries; INT64_MAX = unbounded */
    double fmin, fmax;    /* floats; +-INFINITY = unbounded */
    int min_len, max_len; /* int lists: number of entries */
    unsigned flags;       /* TP_CFG_LO_OPEN | TP_CFG_HI_OPEN | TP_CFG_ODD */
    const char *choices[TP_CFG_MAX_CHOICES]; /* strings: allowed values, NULL-terminated */
    const char *doc;                         /* one line for the reference table */
} tp_config_key_t;

extern const tp_config_key_t tp_config_schema[];
extern const int tp_config_schema_len;

/* The row for section.key, or NULL. */
const tp_config_key_t *tp_config_find_key(const char *section, const char *key);

/* First key (schema order) whose values differ between a and b, or NULL when they are equal
 * field by field (e.g. a checkpoint's config against the current one). */
const tp_config_key_t *tp_config_diff(const tp_config_t *a, const tp_config_t *b);

#endif
