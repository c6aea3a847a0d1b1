/* Private: the transformer kernels of the host backends. They live in their own files
 * (backend_ref_transformer.c, backend_cpu_transformer.c) so that each backend file keeps one job;
 * backend_ref.c and backend_cpu.c put them into their interface structs. The contracts are those
 * of the matching tp_op_* in backend.h. */
#ifndef TP_BACKEND_TRANSFORMER_IMPL_H
#define TP_BACKEND_TRANSFORMER_IMPL_H

#include "backend_impl.h"

/* backend_ref_transformer.c */
void tp_ref_embedding_forward(tp_backend_t *be, const int32_t *tokens, const float *wte,
                              const float *wpe, float *out, int64_t B, int64_t T, int64_t C);
void tp_ref_embedding_backward(tp_backend_t *be, const float *dout, const int32_t *tokens,
                               float *dwte, float *dwpe, int64_t B, int64_t T, int64_t C);
void tp_ref_layernorm_forward(tp_backend_t *be, const float *x, const float *w, const float *b,
                              tp_cval_t *y_c, float *mean, float *rstd, int64_t N, int64_t C);
void tp_ref_layernorm_backward(tp_backend_t *be, const tp_cval_t *dy_c, const float *x,
                               const float *w, const float *mean, const float *rstd, float *dx,
                               float *dw, float *db, int64_t N, int64_t C);
void tp_ref_attention_forward(tp_backend_t *be, const tp_cval_t *qkv_c, tp_cval_t *out_c,
                              float *att, int64_t B, int64_t T, int64_t C, int64_t NH);
void tp_ref_attention_backward(tp_backend_t *be, const tp_cval_t *dout_c, const tp_cval_t *qkv_c,
                               const float *att, const tp_cval_t *out_c, tp_cval_t *dqkv_c,
                               int64_t B, int64_t T, int64_t C, int64_t NH);
void tp_ref_attention_decode(tp_backend_t *be, const float *q, const float *kcache,
                             const float *vcache, tp_cval_t *out_c, int64_t B, int64_t pos,
                             int64_t Tmax, int64_t C, int64_t NH);

/* backend_cpu_transformer.c */
void tp_cpu_embedding_forward(tp_backend_t *be, const int32_t *tokens, const float *wte,
                              const float *wpe, float *out, int64_t B, int64_t T, int64_t C);
void tp_cpu_embedding_backward(tp_backend_t *be, const float *dout, const int32_t *tokens,
                               float *dwte, float *dwpe, int64_t B, int64_t T, int64_t C);
void tp_cpu_layernorm_forward(tp_backend_t *be, const float *x, const float *w, const float *b,
                              tp_cval_t *y_c, float *mean, float *rstd, int64_t N, int64_t C);
void tp_cpu_layernorm_backward(tp_backend_t *be, const tp_cval_t *dy_c, const float *x,
                               const float *w, const float *mean, const float *rstd, float *dx,
                               float *dw, float *db, int64_t N, int64_t C);
void tp_cpu_attention_forward(tp_backend_t *be, const tp_cval_t *qkv_c, tp_cval_t *out_c,
                              float *att, int64_t B, int64_t T, int64_t C, int64_t NH);
void tp_cpu_attention_backward(tp_backend_t *be, const tp_cval_t *dout_c, const tp_cval_t *qkv_c,
                               const float *att, const tp_cval_t *out_c, tp_cval_t *dqkv_c,
                               int64_t B, int64_t T, int64_t C, int64_t NH);
void tp_cpu_attention_decode(tp_backend_t *be, const float *q, const float *kcache,
                             const float *vcache, tp_cval_t *out_c, int64_t B, int64_t pos,
                             int64_t Tmax, int64_t C, int64_t NH);

/* Scratch of the cpu backend (backend_cpu.c): `rows` rows (one per thread, or per chunk) of at
 * least `len` floats each, every row 64-byte aligned; grown to the largest request and kept
 * until shutdown, so the hot ops allocate nothing in steady state. Call outside parallel regions;
 * one op at a time owns it. Returns the row stride in floats, or 0 when memory is short (the
 * caller then falls back to the ref kernel). */
int64_t tp_cpu_scratch(tp_backend_t *be, int64_t rows, int64_t len, float **out);

#endif
