/* GPT-2 architecture language model (model.type = "gpt"): learned token and position
 * embeddings, pre-LayerNorm blocks with causal multi-head self-attention and a 4x GELU (tanh)
 * MLP, final LayerNorm, LM head tied to the token embedding.
 *
 * Parameter names follow nanoGPT/Hugging Face ("wte.weight", "h.0.attn.c_attn.weight", ...) in
 * PyTorch's Linear layout [out, in], so checkpoints map one-to-one onto a PyTorch model. The
 * generic model API (model.h) trains it; this header adds what generation needs. */
#ifndef TP_MODEL_GPT_H
#define TP_MODEL_GPT_H

#include "model.h"

typedef struct tp_gpt_dims {
    int64_t n_layer, n_head, C, T, V; /* C = d_model, T = seq_len, V = vocab_size */
} tp_gpt_dims_t;

tp_gpt_dims_t tp_gpt_dims(const tp_model_t *m);

/* Sequence length of the next forward passes (1..seq_len; default seq_len). Tokens passed to
 * tp_model_set_tokens are then [B, T] with this T; targets may be NULL (no loss). */
void tp_gpt_set_length(tp_model_t *m, int64_t T);
/* Host copy of the logits of position t of every sequence after a forward: [B, V]. The buffer
 * belongs to the model (valid until the next call). */
const float *tp_gpt_fetch_logits(tp_model_t *m, int64_t B, int64_t t);

/* Incremental decoding with a KV cache: each step costs one position, not the whole prefix. */
typedef struct tp_gpt_decoder tp_gpt_decoder_t;

tp_status_t tp_gpt_decoder_create(tp_model_t *m, int64_t batch, tp_gpt_decoder_t **out);
void tp_gpt_decoder_free(tp_gpt_decoder_t *d);
/* Feed tokens[b] at position pos (0 <= pos < seq_len, positions fed in order from 0) for each
 * of the batch's sequences; returns host logits [batch, V] for the next token. */
const float *tp_gpt_decoder_step(tp_gpt_decoder_t *d, const int32_t *tokens, int64_t pos);

#endif
