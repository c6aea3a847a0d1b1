/* Sampling and the generation loops. */
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

int32_t tp_sample_token(const float *logits, int64_t V, const tp_sampling_t *s, uint64_t counter,
                        float *scratch)
{
    int64_t best = 0;
    for (int64_t v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    if (s->temperature <= 0.0f) return (int32_t)best;
    /* Keep the top-k logits: threshold = k-th largest (found by partial selection). */
    float threshold = -INFINITY;
    if (s->top_k > 0 && s->top_k < V) {
        memcpy(scratch, logits, (size_t)V * sizeof(float));
        int64_t k = s->top_k;
        for (int64_t i = 0; i < k; i++) { /* k passes of selection: k is small (e.g. 40) */
            int64_t at = i;
            for (int64_t j = i + 1; j < V; j++)
                if (scratch[j] > scratch[at]) at = j;
            float tmp = scratch[i];
            scratch[i] = scratch[at];
            scratch[at] = tmp;
        }
        threshold = scratch[k - 1];
    }
    double sum = 0;
    for (int64_t v = 0; v < V; v++)
        if (logits[v] >= threshold) sum += exp((double)(logits[v] - logits[best]) / s->temperature);
    double u = (double)tp_rng_to_unit(tp_rng_hash(s->seed, 0x6e6e, counter)) * sum, acc = 0;
    for (int64_t v = 0; v < V; v++) {
        if (logits[v] < threshold) continue;
        acc += exp((double)(logits[v] - logits[best]) / s->temperature);
        if (acc >= u) return (int32_t)v;
    }
    return (int32_t)best;
}

tp_status_t tp_generate(tp_model_t *m, const int32_t *prompt, int64_t n_prompt, int64_t max_new,
                        const tp_sampling_t *s, int32_t *out, tp_token_fn on_token, void *arg)
{
    tp_gpt_dims_t d = tp_gpt_dims(m);
    if (n_prompt < 1) return TP_ERR(TP_ERR_USAGE, "generation needs a prompt of at least 1 token");
    int64_t total = n_prompt + max_new;
    int32_t *seq = tp_malloc((size_t)total * sizeof(int32_t), "generated tokens");
    float *scratch = tp_malloc((size_t)d.V * sizeof(float), "sampling scratch");
    tp_gpt_decoder_t *dec = NULL;
    tp_status_t st = seq && scratch ? tp_gpt_decoder_create(m, 1, &dec) : TP_ERR_NOMEM;
    if (st != TP_OK) goto done;
    memcpy(seq, prompt, (size_t)n_prompt * sizeof(int32_t));
    /* Feed the prompt (its last T tokens if longer than the context). */
    int64_t start = n_prompt > d.T ? n_prompt - d.T : 0, pos = 0;
    const float *logits = NULL;
    for (int64_t i = start; i < n_prompt; i++)
        logits = tp_gpt_decoder_step(dec, &seq[i], pos++);
    for (int64_t n = n_prompt; n < total; n++) {
        int32_t tok = tp_sample_token(logits, d.V, s, (uint64_t)n, scratch);
        seq[n] = tok;
        out[n - n_prompt] = tok;
        if (on_token) on_token(tok, arg);
        if (n + 1 == total) break;
        if (pos == d.T) { /* context full: slide, keeping the newest half */
            int64_t keep = d.T / 2 > 0 ? d.T / 2 : 1;
            pos = 0;
            for (int64_t i = n + 1 - keep; i <= n; i++)
                logits = tp_gpt_decoder_step(dec, &seq[i], pos++);
        } else {
            logits = tp_gpt_decoder_step(dec, &seq[n], pos++);
        }
    }
done:
    tp_gpt_decoder_free(dec);
    free(seq);
    free(scratch);
    return st;
}

tp_status_t tp_generate_nocache(tp_model_t *m, const int32_t *prompt, int64_t n_prompt,
                                int64_t max_new, const tp_sampling_t *s, int32_t *out)
{
    tp_gpt_dims_t d = tp_gpt_dims(m);
    int64_t total = n_prompt + max_new;
    int32_t *seq = tp_malloc((size_t)total * sizeof(int32_t), "generated tokens");
    float *scratch = tp_malloc((size_t)d.V * sizeof(float), "sampling scratch");
    if (!seq || !scratch) {
        free(seq);
        free(scratch);
        return TP_ERR_NOMEM;
    }
    memcpy(seq, prompt, (size_t)n_prompt * sizeof(int32_t));
    tp_pass_ctx_t ctx = {.train = false};
    for (int64_t n = n_prompt; n < total; n++) {
        int64_t len = n > d.T ? d.T : n, first = n - len;
        tp_gpt_set_length(m, len);
        tp_model_set_tokens(m, seq + first, NULL, 1);
        tp_model_forward(m, &ctx, 1, NULL, false);
        const float *logits = tp_gpt_fetch_logits(m, 1, len - 1);
        seq[n] = tp_sample_token(logits, d.V, s, (uint64_t)n, scratch);
        out[n - n_prompt] = seq[n];
    }
    tp_gpt_set_length(m, d.T);
    free(seq);
    free(scratch);
    return TP_OK;
}

static void put_byte(int32_t token, void *arg)
{
    fputc(token & 0xff, (FILE *)arg);
}

tp_status_t tp_generate_sample(tp_model_t *m, const char *prompt, int64_t n_tokens, uint64_t seed,
                               FILE *f)
{
    int64_t n = (int64_t)strlen(prompt);
    if (n == 0) return TP_OK;
    int32_t *p = tp_malloc((size_t)n * sizeof(int32_t), "prompt");
    int32_t *out = tp_malloc((size_t)n_tokens * sizeof(int32_t), "sample");
    tp_status_t st = p && out ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) {
        for (int64_t i = 0; i < n; i++)
            p[i] = (unsigned char)prompt[i];
        tp_sampling_t s = {.temperature = 0.8f, .top_k = 40, .seed = seed};
        fprintf(f, "--- sample ---\n%s", prompt);
        st = tp_generate(m, p, n, n_tokens, &s, out, put_byte, f);
        fprintf(f, "\n--------------\n");
        fflush(f);
    }
    free(p);
    free(out);
    return st;
}
