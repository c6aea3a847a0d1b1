/* Text generation with a GPT model: sampling (temperature, top-k, seeded) and generation loops
 * with the KV cache (each new token costs one position) and without it (the whole prefix each
 * time: the oracle the cached path is tested against). Byte-level models only: tokens are the
 * UTF-8 bytes of the text. */
#ifndef TP_GENERATE_H
#define TP_GENERATE_H

#include <stdint.h>
#include <stdio.h>

#include "model_gpt.h"

typedef struct tp_sampling {
    float temperature; /* 0 = greedy (argmax) */
    int64_t top_k;     /* 0 = whole vocabulary */
    uint64_t seed;
} tp_sampling_t;

/* Next token from logits [V]; `counter` selects the random draw (deterministic per seed). */
int32_t tp_sample_token(const float *logits, int64_t V, const tp_sampling_t *s, uint64_t counter,
                        float *scratch);

typedef void (*tp_token_fn)(int32_t token, void *arg);

/* Generate max_new tokens after prompt[0..n_prompt) (n_prompt >= 1) into out (max_new entries),
 * calling on_token (may be NULL) as each is produced. With the KV cache the context slides
 * when it is full: the newest seq_len/2 tokens are fed again. */
tp_status_t tp_generate(tp_model_t *m, const int32_t *prompt, int64_t n_prompt, int64_t max_new,
                        const tp_sampling_t *s, int32_t *out, tp_token_fn on_token, void *arg);
/* The same without a cache: a full forward over the (last seq_len tokens of the) prefix for
 * every new token. */
tp_status_t tp_generate_nocache(tp_model_t *m, const int32_t *prompt, int64_t n_prompt,
                                int64_t max_new, const tp_sampling_t *s, int32_t *out);

/* Print a short sample (temperature 0.8, top-k 40) after `prompt` to f: used at evaluations. */
tp_status_t tp_generate_sample(tp_model_t *m, const char *prompt, int64_t n_tokens, uint64_t seed,
                               FILE *f);

#endif
