/* Compute backends: one interface, several implementations.
 *
 *   "ref"  plain loops, no BLAS, no threads: the test oracle for every other backend
 *   "cpu"  OpenBLAS sgemm + OpenMP loops (the default)
 *   "cuda" NVIDIA GPUs (cuda/, built when TULPAR_CUDA is on)
 *
 * Tensors are float32, row-major, in memory owned by the backend (tp_backend_alloc), except the
 * compute copies (tp_cval_t, below) that feed matrix products. Ops
 * that produce gradients of parameters ACCUMULATE (+=) so that gradient accumulation over
 * micro-batches needs nothing special; everything else overwrites its output.
 * Ops are deterministic for a fixed backend and thread count; reductions that feed training
 * (tp_op_sumsq) are deterministic for any thread count. Model and trainer code call only the
 * functions below and never test which backend they run on. */
#ifndef TP_BACKEND_H
#define TP_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tp_error.h"

typedef struct tp_backend tp_backend_t;

typedef enum { TP_ACT_RELU = 0, TP_ACT_GELU = 1 } tp_act_t;

/* Arithmetic of matrix products: fp32 everywhere (CPU; TF32 tensor cores on GPUs), or bf16
 * inputs with fp32 accumulation (GPUs). Parameters (master weights), optimizer moments,
 * gradients, the residual stream, the loss and norms are float32 either way. */
typedef enum { TP_PREC_FP32 = 0, TP_PREC_BF16 = 1 } tp_precision_t;

/* A compute copy: an array whose only readers are matrix products (tp_op_gemm_c) and the ops
 * that say they take one. Its elements are the backend's compute type: float32 under
 * runtime.precision "fp32" (every host backend), bfloat16 under "bf16", so that cuBLAS reads
 * bf16 operands at half the bytes (the weights' copy, LayerNorm, attention and GELU outputs,
 * gradients that feed products). An incomplete type: callers never read the elements, and the
 * compiler keeps compute copies and float32 arrays apart. */
typedef struct tp_cval tp_cval_t;

/* Create backend `name` ("ref", "cpu", "cuda"). threads > 0 sets the OpenMP/BLAS thread count
 * (cpu); 0 leaves it as the environment says. TP_ERR_UNSUPPORTED when the backend is not built
 * in or cannot run here (with the reason). */
tp_status_t tp_backend_create(const char *name, int threads, tp_backend_t **out);
void tp_backend_free(tp_backend_t *be);
const char *tp_backend_name(const tp_backend_t *be);
/* Human-readable description: library versions, threads, device. */
const char *tp_backend_describe(const tp_backend_t *be);
int tp_backend_threads(const tp_backend_t *be);
/* Names compiled into this binary, comma-separated. */
const char *tp_backend_available(void);

/* runtime.precision: TP_ERR_UNSUPPORTED when the backend cannot compute in p. Set it before
 * allocating compute copies: it fixes their element size. */
tp_status_t tp_backend_set_precision(tp_backend_t *be, tp_precision_t p);
tp_precision_t tp_backend_precision(const tp_backend_t *be);
/* Bytes per element of a compute copy: 4 (fp32) or 2 (bf16). */
size_t tp_backend_compute_bytes(const tp_backend_t *be);
/* A compute copy of n elements (NULL on failure, reported), released by tp_backend_release. */
tp_cval_t *tp_backend_alloc_compute(tp_backend_t *be, int64_t n, const char *what);
/* Element i of compute copy p (pointer arithmetic on the incomplete type). */
tp_cval_t *tp_cval_at(const tp_backend_t *be, const tp_cval_t *p, int64_t i);
/* float32 arrays as compute copies: the host side of a test or a tool. upload rounds (to
 * nearest even, as the GPU does); download widens exactly. */
void tp_backend_upload_compute(tp_backend_t *be, tp_cval_t *dst, const float *host_src, int64_t n);
void tp_backend_download_compute(tp_backend_t *be, float *host_dst, const tp_cval_t *src,
                                 int64_t n);

/* ---- memory ---- */
void *tp_backend_alloc(tp_backend_t *be, size_t bytes, const char *what); /* NULL on failure */
void tp_backend_release(tp_backend_t *be, void *ptr);
/* Queued after the ops before it; host_src may be reused as soon as this returns. */
void tp_backend_upload(tp_backend_t *be, void *dst, const void *host_src, size_t bytes);
/* Waits for the ops before it: the one way (with synchronize) the host waits for a device. */
void tp_backend_download(tp_backend_t *be, void *host_dst, const void *src, size_t bytes);
void tp_backend_synchronize(tp_backend_t *be);
/* How often the host has waited for the backend so far (downloads, synchronizes, tp_op_sumsq),
 * counted on every backend alike: the trainer reports the most in one step, which is 1 (the
 * step's end) when nothing inside the step makes the host wait for a GPU. */
int64_t tp_backend_host_waits(const tp_backend_t *be);
/* The device stream ops are queued on (a cudaStream_t), or NULL for host backends: device
 * communicators order their collectives after it (tp_comm_set_compute_stream). */
void *tp_backend_stream(tp_backend_t *be);
/* True when backend memory is host memory that can be read and written directly. */
bool tp_backend_host_memory(const tp_backend_t *be);
/* Bytes currently allocated through tp_backend_alloc, and the most ever at once. */
int64_t tp_backend_bytes_in_use(const tp_backend_t *be);
int64_t tp_backend_bytes_peak(const tp_backend_t *be);

/* ---- ops ---- */
/* C[M,N] = alpha * op(A) * op(B) + beta * C; op(A) is M x K, op(B) is K x N. */
void tp_op_gemm(tp_backend_t *be, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                float *C, int64_t ldc);
/* tp_op_gemm with compute-copy operands: products in the backend's precision (bf16 operands
 * with fp32 accumulation under "bf16"), C float32. Under "fp32" it is tp_op_gemm. */
void tp_op_gemm_c(tp_backend_t *be, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  float alpha, const tp_cval_t *A, int64_t lda, const tp_cval_t *B, int64_t ldb,
                  float beta, float *C, int64_t ldc);
/* tp_op_gemm_c whose result is a compute copy (a product whose only readers take one: the LM
 * head's logits, read by cross-entropy): C = alpha op(A) op(B), accumulated in fp32 and rounded
 * once into the compute type. C is overwritten (beta 0); rows ldc apart, elements past N in a
 * row are not written. C must not overlap A or B. */
void tp_op_gemm_to_c(tp_backend_t *be, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                     float alpha, const tp_cval_t *A, int64_t lda, const tp_cval_t *B, int64_t ldb,
                     tp_cval_t *C, int64_t ldc);
/* Linear layers on compute copies (PyTorch's Linear: W [out, in], x [N, in], y [N, out]): the
 * products with the elementwise work around them, which a backend may fuse into the product
 * (cuda: one cuBLASLt call with a bias epilogue, the residual as its C matrix; elsewhere, or for
 * a shape cuBLASLt has no algorithm for, the ops this is made of, in the order written).
 *   forward: y = x W^T + b (+ r): tp_op_gemm_c, bias_add, then y = r + y when r is not NULL (a
 *            residual stream). b may be NULL. y must not overlap x, W, b or r.
 *   grad:    dW += dy^T x, then db += colsum(dy) (tp_op_bias_grad_c) when db is not NULL. */
void tp_op_linear_forward_c(tp_backend_t *be, const tp_cval_t *x, const tp_cval_t *w,
                            const float *b, const float *r, float *y, int64_t N, int64_t in,
                            int64_t out);
void tp_op_linear_grad_c(tp_backend_t *be, const tp_cval_t *dy, const tp_cval_t *x, float *dw,
                         float *db, int64_t N, int64_t in, int64_t out);
/* A linear layer whose output is a compute copy (a product whose only reader takes one: the
 * qkv projection, read by attention): y = x W^T + b, y [N, out]. cuda: one cuBLASLt call that
 * writes y in the compute type, its bias epilogue adding b rounded to bf16 under "bf16" (the
 * epilogue's documented bias type). Unfused: tp_op_linear_forward_c into scratch (N * out floats,
 * the caller's; unused when compute copies are float32: y is then written directly), then
 * tp_op_to_compute. b may be NULL. y must not overlap x, w, b or scratch. */
void tp_op_linear_forward_to_c(tp_backend_t *be, const tp_cval_t *x, const tp_cval_t *w,
                               const float *b, tp_cval_t *y, float *scratch, int64_t N, int64_t in,
                               int64_t out);
/* A linear layer followed by an activation (the MLP's first layer), fused where the backend can
 * (cuda: cuBLASLt's GELU_AUX_BIAS epilogue): pre = x W^T + b and y = act(pre), both compute
 * copies [N, out] (pre is what backward differentiates the activation at; under "bf16" it is
 * stored in bf16, as the fused epilogue writes it; a fused bf16 product also adds b rounded to
 * bf16, the epilogue's documented bias type). Unfused: tp_op_gemm_c, bias_add, then to_compute
 * and act_forward_c, through scratch (N * out floats, the caller's; unused when compute copies
 * are float32). */
void tp_op_linear_act_forward_c(tp_backend_t *be, tp_act_t act, const tp_cval_t *x,
                                const tp_cval_t *w, const float *b, tp_cval_t *pre, tp_cval_t *y,
                                float *scratch, int64_t N, int64_t in, int64_t out);
/* Backward through a linear layer (W [out, in], dy [N, out]) into the activation before it:
 * dpre = (dy W) * act'(pre) with pre [N, in] that activation's input, then db += colsum(dpre)
 * (the bias of the layer that made pre; db may be NULL). cuda: cuBLASLt's DGELU_BGRAD epilogue,
 * whose bias gradient is rounded to bf16 under "bf16" before it is added to db.
 * Unfused: tp_op_gemm_c into scratch (N * in floats), act_backward_c, bias_grad_c; when compute
 * copies are float32, scratch may be dpre. */
void tp_op_linear_dx_act_c(tp_backend_t *be, tp_act_t act, const tp_cval_t *dy, const tp_cval_t *w,
                           const tp_cval_t *pre, tp_cval_t *dpre, float *db, float *scratch,
                           int64_t N, int64_t in, int64_t out);
/* y = compute copy of x (rounded to nearest even under bf16). y may be x under "fp32": then
 * nothing happens. */
void tp_op_to_compute(tp_backend_t *be, const float *x, tp_cval_t *y, int64_t n);
/* per_row: y[r,c] += b[r]; else y[r,c] += b[c]. */
void tp_op_bias_add(tp_backend_t *be, float *y, const float *b, int64_t rows, int64_t cols,
                    bool per_row);
/* per_row: db[r] += sum_c dy[r,c]; else db[c] += sum_r dy[r,c]. */
void tp_op_bias_grad(tp_backend_t *be, const float *dy, float *db, int64_t rows, int64_t cols,
                     bool per_row);
/* tp_op_bias_grad of a compute copy (the sums stay fp32). */
void tp_op_bias_grad_c(tp_backend_t *be, const tp_cval_t *dy, float *db, int64_t rows, int64_t cols,
                       bool per_row);
void tp_op_act_forward(tp_backend_t *be, tp_act_t act, const float *x, float *y, int64_t n);
/* dx = dy * act'(x) */
void tp_op_act_backward(tp_backend_t *be, tp_act_t act, const float *x, const float *dy, float *dx,
                        int64_t n);
/* The same into compute copies (the math is fp32; only the stored result is rounded); backward
 * reads x as a compute copy too (a pre-activation that tp_op_linear_act_forward_c stored).
 * Under "fp32", y may be x and dx may be dy (in place); under "bf16" they must not overlap. */
void tp_op_act_forward_c(tp_backend_t *be, tp_act_t act, const float *x, tp_cval_t *y, int64_t n);
void tp_op_act_backward_c(tp_backend_t *be, tp_act_t act, const tp_cval_t *x, const float *dy,
                          tp_cval_t *dx, int64_t n);
/* Inverted dropout on a [rows, cols] array. Element (r, c) is kept when
 * tp_rng_to_unit(tp_rng_hash(seed, stream, (row0 + r) * cols + c)) >= p: the mask depends on the
 * example's global position row0 + r, not on how the batch is split over ranks. */
void tp_op_dropout_forward(tp_backend_t *be, const float *x, float *y, uint8_t *mask, int64_t rows,
                           int64_t cols, float p, uint64_t seed, uint64_t stream, int64_t row0);
void tp_op_dropout_backward(tp_backend_t *be, const float *dy, const uint8_t *mask, float *dx,
                            int64_t n, float p);
/* im2col for a stride-1 convolution with "same" padding (k odd, pad = k/2):
 * x [B, C, H, W] -> col [C*k*k, B*H*W]. col2im is its adjoint and overwrites dx. */
void tp_op_im2col(tp_backend_t *be, const float *x, float *col, int64_t B, int64_t C, int64_t H,
                  int64_t W, int64_t k);
void tp_op_col2im(tp_backend_t *be, const float *col, float *dx, int64_t B, int64_t C, int64_t H,
                  int64_t W, int64_t k);
/* dst[b][a][d] = src[a][b][d] for src of shape [A, B, D]. */
void tp_op_swap01(tp_backend_t *be, const float *src, float *dst, int64_t A, int64_t Bd, int64_t D);
/* k x k max pooling with stride k over [B, C, H, W] -> [B, C, H/k, W/k]; argmax holds the input
 * offset within the (b, c) plane. Backward overwrites dx. */
void tp_op_maxpool_forward(tp_backend_t *be, const float *x, float *y, int32_t *argmax, int64_t B,
                           int64_t C, int64_t H, int64_t W, int64_t k);
void tp_op_maxpool_backward(tp_backend_t *be, const float *dy, const int32_t *argmax, float *dx,
                            int64_t B, int64_t C, int64_t H, int64_t W, int64_t k);
/* Row-wise softmax of logits [B, C] into probs; loss[b] = -log probs[b, labels[b]]. Logits may
 * be -inf (classes left out, such as a padded vocabulary's): their probability is 0. */
void tp_op_softmax_xent_forward(tp_backend_t *be, const float *logits, const int32_t *labels,
                                float *probs, float *loss, int64_t B, int64_t C);
/* dlogits = scale * (probs - onehot(labels)); dlogits may be probs (in place). */
void tp_op_softmax_xent_backward(tp_backend_t *be, const float *probs, const int32_t *labels,
                                 float *dlogits, int64_t B, int64_t C, float scale);
/* Softmax cross-entropy without the [B, C] probabilities (a GPT's largest array), on logits that
 * are a compute copy (the LM head's product writes them so: bf16 under "bf16", as PyTorch's
 * autocast and llm.c keep them) with rows ld >= C elements apart (elements past C are neither
 * read nor written). The forward keeps each row's log-sum-exp, lse[b] = log sum_c
 * exp(logits[b, c]), and the loss loss[b] = lse[b] - logits[b, labels[b]], computed in fp32.
 * The backward recomputes the probabilities from the logits while it writes
 * dlogits[b, c] = scale * (exp(logits[b, c] - lse[b]) - onehot(labels)), a compute copy with the
 * same row stride (it feeds the LM head's products): either the logits themselves (in place: each
 * element is read before it is written; the logits are gone afterwards) or an array that does not
 * overlap them. Logits may be -inf, as in tp_op_softmax_xent_forward. */
void tp_op_xent_forward(tp_backend_t *be, const tp_cval_t *logits, int64_t ld,
                        const int32_t *labels, float *lse, float *loss, int64_t B, int64_t C);
void tp_op_xent_backward_c(tp_backend_t *be, const tp_cval_t *logits, int64_t ld, const float *lse,
                           const int32_t *labels, tp_cval_t *dlogits, int64_t B, int64_t C,
                           float scale);
/* Sum of squares, accumulated in double in fixed-size chunks combined in order, so the result
 * is the same for any thread count. *out is ONE double in backend memory; accumulate adds to it,
 * else it is overwritten (n == 0 then stores 0). Queued like every op: the host does not wait,
 * which is how a training step computes its gradient norm without a host synchronisation. */
void tp_op_sumsq_to(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate);
/* Sum of x in double, in index order on ref (chunked like sumsq elsewhere); *out as above. */
void tp_op_sum_to(tp_backend_t *be, const float *x, int64_t n, double *out, bool accumulate);
/* tp_op_sumsq_to, read back to the host (waits for the backend). */
double tp_op_sumsq(tp_backend_t *be, const float *x, int64_t n);
void tp_op_scale(tp_backend_t *be, float *x, float alpha, int64_t n);
void tp_op_fill(tp_backend_t *be, float *x, float value, int64_t n);
void tp_op_copy(tp_backend_t *be, float *dst, const float *src, int64_t n);
/* Global-norm gradient clipping, folded into the optimizer update so that the gradient is not
 * rewritten in a pass of its own: the update reads g * s instead of g, where s =
 * tp_clip_scale(clip) (backend_impl.h): with norm = sqrt(*sumsq), s = (float)(max_norm
 * / (norm + 1e-6)) when max_norm > 0 and norm > max_norm, else 1. sumsq is ONE double in backend
 * memory (tp_op_sumsq_to's result), read by the backend, never by the host, so clipping adds no
 * host synchronisation. g * s is rounded to float before the update uses it (no fused multiply-
 * add: CMakeLists.txt's -ffp-contract=off, __fmul_rn in CUDA), so the update is bit for bit that
 * of the gradient a clipping pass would have stored. TP_CLIP_NONE: no clipping (s = 1). */
typedef struct tp_clip {
    const double *sumsq;
    double max_norm;
} tp_clip_t;
#define TP_CLIP_NONE ((tp_clip_t){NULL, 0.0})
/* AdamW (decoupled weight decay), with g the clipped gradient: m = b1 m + (1-b1) g;
 * v = b2 v + (1-b2) g^2; p -= lr * (m / bc1 / (sqrt(v / bc2) + eps) + wd * p), bc = 1 - beta^t. */
void tp_op_adamw(tp_backend_t *be, float *p, const float *g, float *m, float *v, int64_t n,
                 float lr, float beta1, float beta2, float eps, float wd, float bc1, float bc2,
                 tp_clip_t clip);
/* SGD with momentum (PyTorch semantics), with g the clipped gradient: g' = g + wd p;
 * buf = first ? g' : mu buf + g'; p -= lr * (nesterov ? g' + mu buf : buf). */
void tp_op_sgd(tp_backend_t *be, float *p, const float *g, float *buf, int64_t n, float lr,
               float momentum, float wd, bool nesterov, bool first, tp_clip_t clip);

/* ---- transformer ops: rows are the B*T token positions, C channels ---- */
/* out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]; tokens in [0, V). */
void tp_op_embedding_forward(tp_backend_t *be, const int32_t *tokens, const float *wte,
                             const float *wpe, float *out, int64_t B, int64_t T, int64_t C);
/* dwte[tokens[b,t],:] += dout[b,t,:]; dwpe[t,:] += sum_b dout[b,t,:]. Deterministic: every
 * output element is summed in (b, t) order whatever the thread count. */
void tp_op_embedding_backward(tp_backend_t *be, const float *dout, const int32_t *tokens,
                              float *dwte, float *dwpe, int64_t B, int64_t T, int64_t C);
/* Per row of C: y = (x - mean) * rstd * w + b with rstd = 1/sqrt(var + 1e-5) (biased variance,
 * as PyTorch); mean and rstd [N] are saved for backward. y is a compute copy: its readers are
 * products (backward recomputes from x). */
void tp_op_layernorm_forward(tp_backend_t *be, const float *x, const float *w, const float *b,
                             tp_cval_t *y, float *mean, float *rstd, int64_t N, int64_t C);
/* ACCUMULATES into dx (the residual stream's gradient), dw and db. dy is a compute copy (what the
 * product after the LayerNorm gives back for its input: bf16 under "bf16", as under PyTorch's
 * autocast); the arithmetic is fp32. */
void tp_op_layernorm_backward(tp_backend_t *be, const tp_cval_t *dy, const float *x, const float *w,
                              const float *mean, const float *rstd, float *dx, float *dw, float *db,
                              int64_t N, int64_t C);
/* tp_op_layernorm_backward, then what the products before it need of the new dx (the residual
 * stream's gradient, after accumulating): dx_c = a compute copy of the whole of dx, which they
 * read, and, when dsum is not NULL, dsum[c] += sum_r dx[r, c] (the bias gradient of the
 * projection that wrote the residual stream). cuda does all of it in one pass over the rows;
 * elsewhere tp_op_to_compute and tp_op_bias_grad follow. dx_c may be dx under "fp32" (no copy is
 * made) and must not overlap the other arrays otherwise; dsum must not overlap them either. */
void tp_op_layernorm_backward_c(tp_backend_t *be, const tp_cval_t *dy, const float *x,
                                const float *w, const float *mean, const float *rstd, float *dx,
                                tp_cval_t *dx_c, float *dw, float *db, float *dsum, int64_t N,
                                int64_t C);
/* Causal multi-head self-attention. qkv [B, T, 3C], a compute copy (what the qkv projection
 * writes: tp_op_linear_forward_to_c), holds q, k, v (in that order, C each; head h uses channels
 * [h*hs, (h+1)*hs) of each, hs = C/NH); out [B, T, C], a compute copy (it feeds the output
 * projection). att [B, NH, T, T]
 * receives the softmax probabilities (row t uses columns 0..t; the rest are not read) for
 * backward. Scores are scaled by 1/sqrt(hs). */
void tp_op_attention_forward(tp_backend_t *be, const tp_cval_t *qkv, tp_cval_t *out, float *att,
                             int64_t B, int64_t T, int64_t C, int64_t NH);
/* Elements the `att` buffer of attention forward/backward needs: B x NH x T x T on the CPU
 * backends; backends with fused (flash-style) attention keep only per-row statistics. */
int64_t tp_op_attention_att_numel(tp_backend_t *be, int64_t B, int64_t T, int64_t NH);
/* dqkv [B, T, 3C] (OVERWRITTEN; a compute copy, it feeds the qkv products) from dout [B, T, C]
 * (a compute copy: the output projection's input gradient, as the product gives it back) and the
 * forward's qkv, att and out (its output [B, T, C]: fused backends take
 * FlashAttention-2's D_i = dout_i . out_i per head from it instead of recomputing the scores for
 * it). */
void tp_op_attention_backward(tp_backend_t *be, const tp_cval_t *dout, const tp_cval_t *qkv,
                              const float *att, const tp_cval_t *out, tp_cval_t *dqkv, int64_t B,
                              int64_t T, int64_t C, int64_t NH);
/* Attention of one new position `pos` per sequence against a KV cache: q [B, C]; kcache and
 * vcache [B, Tmax, C] already hold keys and values of positions 0..pos; out [B, C] (a compute
 * copy). Equals row pos of tp_op_attention_forward. */
void tp_op_attention_decode(tp_backend_t *be, const float *q, const float *kcache,
                            const float *vcache, tp_cval_t *out, int64_t B, int64_t pos,
                            int64_t Tmax, int64_t C, int64_t NH);
/* y += alpha * x */
void tp_op_axpy(tp_backend_t *be, float *y, const float *x, float alpha, int64_t n);
/* out = a + b (out may alias a or b) */
void tp_op_add(tp_backend_t *be, const float *a, const float *b, float *out, int64_t n);

#endif
