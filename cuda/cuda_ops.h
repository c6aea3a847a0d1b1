/* The CUDA backend's ops, one function per member of tp_backend_iface_t (runtime/backend_impl.h)
 * with the same signature and meaning (runtime/backend.h). backend_cuda.cu fills the interface
 * struct with them; kernels live in kernels_*.cu by family. All pointers are device memory;
 * every op is enqueued on the backend's stream (tp_cuda_stream) and returns without waiting;
 * reductions (sumsq_to, sum_to) leave their result in device memory. Compute copies (tp_cval_t)
 * hold bf16 under runtime.precision "bf16" (tp_cuda_precision), float otherwise. */
#ifndef TP_CUDA_OPS_H
#define TP_CUDA_OPS_H

#include "backend_impl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* kernels_basic.cu */
void tp_cuda_bias_add(tp_backend_t *be, float *y, const float *b, int64_t rows, int64_t cols,
                      bool per_row);
void tp_cuda_bias_grad(tp_backend_t *be, const float *dy, float *db, int64_t rows, int64_t cols,
                       bool per_row);
void tp_cuda_bias_grad_c(tp_backend_t *be, const tp_cval_t *dy, float *db, int64_t rows,
                         int64_t cols, bool per_row);
void tp_cuda_to_compute(tp_backend_t *be, const float *x, tp_cval_t *y, int64_t n);
void tp_cuda_act_forward(tp_backend_t *be, tp_act_t act, const float *x, float *y, int64_t n);
void tp_cuda_act_backward(tp_backend_t *be, tp_act_t act, const float *x, const float *dy,
                          float *dx, int64_t n);
void tp_cuda_act_forward_c(tp_backend_t *be, tp_act_t act, const float *x, tp_cval_t *y, int64_t n);
void tp_cuda_act_backward_c(tp_backend_t *be, tp_act_t act, const tp_cval_t *x, const float *dy,
                            tp_cval_t *dx, int64_t n);
void tp_cuda_dropout_forward(tp_backend_t *be, const float *x, float *y, uint8_t *mask,
                             int64_t rows, int64_t cols, float p, uint64_t seed, uint64_t stream,
                             int64_t row0);
void tp_cuda_dropout_backward(tp_backend_t *be, const float *dy, const uint8_t *mask, float *dx,
                              int64_t n, float p);
void tp_cuda_sumsq_to(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate);
void tp_cuda_sum_to(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate);
void tp_cuda_scale(tp_backend_t *be, float *x, float alpha, int64_t n);
void tp_cuda_fill(tp_backend_t *be, float *x, float value, int64_t n);
void tp_cuda_copy(tp_backend_t *be, float *dst, const float *src, int64_t n);
void tp_cuda_adamw(tp_backend_t *be, float *p, const float *g, float *m, float *v, int64_t n,
                   float lr, float beta1, float beta2, float eps, float wd, float bc1, float bc2,
                   tp_clip_t clip);
void tp_cuda_sgd(tp_backend_t *be, float *p, const float *g, float *buf, int64_t n, float lr,
                 float momentum, float wd, bool nesterov, bool first, tp_clip_t clip);
void tp_cuda_axpy(tp_backend_t *be, float *y, const float *x, float alpha, int64_t n);
void tp_cuda_add(tp_backend_t *be, const float *a, const float *b, float *out, int64_t n);

/* kernels_xent.cu (the tp_op_xent_* ops only as compute-copy ops: the backend has them all) */
void tp_cuda_softmax_xent_forward(tp_backend_t *be, const float *logits, const int32_t *labels,
                                  float *probs, float *loss, int64_t B, int64_t C);
void tp_cuda_softmax_xent_backward(tp_backend_t *be, const float *probs, const int32_t *labels,
                                   float *dlogits, int64_t B, int64_t C, float scale);
void tp_cuda_xent_forward_c(tp_backend_t *be, const tp_cval_t *logits, int64_t ld,
                            const int32_t *labels, float *lse, float *loss, int64_t B, int64_t C);
void tp_cuda_xent_backward_c(tp_backend_t *be, const tp_cval_t *logits, int64_t ld,
                             const float *lse, const int32_t *labels, tp_cval_t *dlogits, int64_t B,
                             int64_t C, float scale);
/* kernels_conv.cu */
void tp_cuda_im2col(tp_backend_t *be, const float *x, float *col, int64_t B, int64_t C, int64_t H,
                    int64_t W, int64_t k);
void tp_cuda_col2im(tp_backend_t *be, const float *col, float *dx, int64_t B, int64_t C, int64_t H,
                    int64_t W, int64_t k);
void tp_cuda_swap01(tp_backend_t *be, const float *src, float *dst, int64_t A, int64_t Bd,
                    int64_t D);
void tp_cuda_maxpool_forward(tp_backend_t *be, const float *x, float *y, int32_t *argmax, int64_t B,
                             int64_t C, int64_t H, int64_t W, int64_t k);
void tp_cuda_maxpool_backward(tp_backend_t *be, const float *dy, const int32_t *argmax, float *dx,
                              int64_t B, int64_t C, int64_t H, int64_t W, int64_t k);

/* kernels_transformer.cu */
void tp_cuda_embedding_forward(tp_backend_t *be, const int32_t *tokens, const float *wte,
                               const float *wpe, float *out, int64_t B, int64_t T, int64_t C);
void tp_cuda_embedding_backward(tp_backend_t *be, const float *dout, const int32_t *tokens,
                                float *dwte, float *dwpe, int64_t B, int64_t T, int64_t C);
/* kernels_layernorm.cu */
void tp_cuda_layernorm_forward(tp_backend_t *be, const float *x, const float *w, const float *b,
                               tp_cval_t *y, float *mean, float *rstd, int64_t N, int64_t C);
void tp_cuda_layernorm_backward(tp_backend_t *be, const tp_cval_t *dy, const float *x,
                                const float *w, const float *mean, const float *rstd, float *dx,
                                float *dw, float *db, int64_t N, int64_t C);
bool tp_cuda_layernorm_backward_c(tp_backend_t *be, const tp_cval_t *dy, const float *x,
                                  const float *w, const float *mean, const float *rstd, float *dx,
                                  tp_cval_t *dx_c, float *dw, float *db, float *dsum, int64_t N,
                                  int64_t C);
/* kernels_transformer.cu */
int64_t tp_cuda_attention_att_numel(tp_backend_t *be, int64_t B, int64_t T, int64_t NH);
void tp_cuda_attention_forward(tp_backend_t *be, const tp_cval_t *qkv, tp_cval_t *out, float *att,
                               int64_t B, int64_t T, int64_t C, int64_t NH);
void tp_cuda_attention_backward(tp_backend_t *be, const tp_cval_t *dout, const tp_cval_t *qkv,
                                const float *att, const tp_cval_t *out, tp_cval_t *dqkv, int64_t B,
                                int64_t T, int64_t C, int64_t NH);
void tp_cuda_attention_decode(tp_backend_t *be, const float *q, const float *kcache,
                              const float *vcache, tp_cval_t *out, int64_t B, int64_t pos,
                              int64_t Tmax, int64_t C, int64_t NH);

#ifdef __cplusplus
}
#endif

#endif
