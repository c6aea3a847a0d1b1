#!/usr/bin/env python3
"""PyTorch baseline for the GPU throughput check (tests/gpu/device_check.sh): the GPT-2 model
Tulpar trains (tests/gpt_reference/make_reference.py's architecture: learned token and position
embeddings, pre-LayerNorm blocks, causal self-attention, 4x GELU(tanh) MLP, final LayerNorm, LM
head tied to the token embedding, GPT-2 init), trained on random tokens on one GPU the way a
PyTorch user would make it fast:

  * bf16 autocast (matrix products in bf16 with fp32 accumulation; fp32 master weights), TF32
    allowed for what stays fp32;
  * attention through F.scaled_dot_product_attention(is_causal=True) (flash attention);
  * AdamW fused=True (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on 2-D weights only), global
    gradient-norm clipping at 1.0: the optimizer of configs/gpt2_124m.cfg;
  * torch.compile when it works (--compile auto): eager is measured first and printed, then the
    compiled model continues from there; a compile failure leaves the eager figures, saying why.

A step is zero_grad + forward + backward + clip + optimizer step, timed with a CUDA
synchronisation on each side; ms/step is the median over the measured steps after warm-up. FLOPs
use Tulpar's count (summary.json's flops_per_sample) so that both sides' MFU are comparable:

    training FLOPs per sequence = 3 x [L*(24*T*C^2 + 2*C*T*(T+1)) + 2*T*C*V]

MFU = FLOPs per second / the GPU's dense bf16 peak (from the device name; never the sparse
figure). Prints one JSON object per measured variant, one per line; the last line is the result
(the best variant that finished). Before it, unless --profile-steps 0, a few more steps of that
variant under torch.profiler: its GPU kernels' time per step by class (gemm, attention,
cross-entropy, layernorm, embedding, optimizer, the rest), to set beside Tulpar's op profile
(device_tools.py summary), as lines "torch profile ..." and one {"torch_profile": ...} object.

    python3 tests/gpu/torch_gpt_baseline.py [--batch 16 --seq 1024 --steps 20 --compile auto]
    python3 tests/gpu/torch_gpt_baseline.py --device cpu --tiny    # logic check without a GPU
"""
import argparse
import json
import math
import re
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LN_EPS = 1e-5

# Dense bf16 tensor-core peaks (FLOP/s) by device-name substring, most specific first.
PEAKS = [("H100 PCIE", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("GH200", 989e12),
         ("H200", 989e12), ("H800", 989e12), ("B200", 2250e12), ("A100", 312e12)]


def dense_bf16_peak(name):
    n = name.upper()
    for key, peak in PEAKS:
        if key in n:
            return peak
    return None


def train_flops_per_seq(L, T, C, V):
    return 3.0 * (L * (24.0 * T * C * C + 2.0 * C * T * (T + 1.0)) + 2.0 * T * C * V)


class CausalSelfAttention(nn.Module):
    def __init__(self, C, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch < 2.0 (the logic check on an old CPU torch)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            y = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.c_fc = nn.Linear(C, 4 * C)
        self.c_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, C, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C, eps=LN_EPS)
        self.attn = CausalSelfAttention(C, n_head)
        self.ln_2 = nn.LayerNorm(C, eps=LN_EPS)
        self.mlp = MLP(C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, V, n_layer, n_head, C, T):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        self.h = nn.ModuleList([Block(C, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(C, eps=LN_EPS)
        self.register_buffer("pos", torch.arange(T), persistent=False)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(self.pos[:T])
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied LM head, no bias
        return F.cross_entropy(logits.float().view(B * T, -1), targets.view(B * T))


def init_gpt2(model, n_layer):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("c_proj.weight"):
                p.normal_(0.0, 0.02 / math.sqrt(2 * n_layer))
            elif p.dim() == 2:
                p.normal_(0.0, 0.02)
            elif ".ln_" in name or name.startswith("ln_f"):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.zero_()


# Kernel classes, matched against kernel names in this order (cuBLAS/cuBLASLt/CUTLASS products,
# flash/cuDNN attention, torch.compile's triton kernels named after the ops they fuse). The same
# classes as device_tools.py's for Tulpar's op names.
KERNEL_CLASSES = [
    ("attention", r"flash|fmha|attention|sdpa|_mha"),
    ("gemm", r"gemm|cutlass|xmma|nvjet|cublas|matmul|splitk|s16816|s1688|wgmma|::b?mm$|addmm"),
    ("layernorm", r"layer_?norm"),
    ("cross_entropy", r"log_softmax|nll_loss|cross_entropy|softmax"),
    ("embedding", r"embedding|index_put|indexing_backward|index_select|scatter|gather"),
    ("optimizer", r"adam|multi_tensor|foreach|norm|clamp|reciprocal"),
]


def kernel_class(name):
    n = name.lower()
    for cls, pattern in KERNEL_CLASSES:
        if re.search(pattern, n):
            return cls
    return "other"


def kernel_profile(step, steps, dev, variant):
    """GPU kernel time per step of `steps` more training steps, by class; prints a table and a
    JSON object. On the CPU (the logic check) the operators' self time stands in for kernels."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CUDA] if dev == "cuda" else [ProfilerActivity.CPU]
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        if dev == "cuda":
            torch.cuda.synchronize()
    kernels = []
    for e in prof.key_averages():
        if dev == "cuda":
            if str(getattr(e, "device_type", "")).split(".")[-1] != "CUDA":
                continue
            if getattr(e, "is_user_annotation", False):  # a range over kernels, not a kernel
                continue
            us = getattr(e, "self_device_time_total", None)
            if us is None:
                us = getattr(e, "self_cuda_time_total", 0)
        else:
            us = e.self_cpu_time_total
        if us > 0:
            kernels.append((us / 1e3 / steps, e.count / steps, e.key))
    kernels.sort(reverse=True)
    classes = {}
    for ms, calls, name in kernels:
        c = classes.setdefault(kernel_class(name), [0.0, 0.0])
        c[0] += ms
        c[1] += calls
    total = sum(ms for ms, _, _ in kernels)
    print("torch profile (%s, %d steps under torch.profiler): kernels %.2f ms per step"
          % (variant, steps, total))
    for cls, (ms, calls) in sorted(classes.items(), key=lambda kv: -kv[1][0]):
        print("torch profile class %-14s %9.3f ms %7.0f calls per step" % (cls, ms, calls))
    for ms, calls, name in kernels[:12]:
        print("torch profile kernel %9.3f ms %6.0f x  %s" % (ms, calls, name[:100]))
    print(json.dumps({"torch_profile": {
        "variant": variant, "steps": steps, "kernels_ms_per_step": total,
        "classes_ms_per_step": {k: v[0] for k, v in classes.items()},
        "top": [{"ms": ms, "calls": calls, "name": name[:160]} for ms, calls, name in kernels[:12]],
    }}), flush=True)


def make_optimizer(model, device):
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() != 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
    if device == "cuda":
        try:
            return torch.optim.AdamW(groups, fused=True, **kw), "fused"
        except (TypeError, RuntimeError) as e:
            print("# AdamW fused=True unavailable (%s); using the default" % e, file=sys.stderr)
    return torch.optim.AdamW(groups, **kw), "default"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--n-layer", type=int, default=12)
    ap.add_argument("--n-head", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--warmup", type=int, default=5, help="steps before timing (compile in them)")
    ap.add_argument("--steps", type=int, default=20, help="measured steps")
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--tiny", action="store_true", help="2 layers, width 64, context 32, vocab 256")
    ap.add_argument("--peak-flops", type=float, default=0.0, help="override the dense bf16 peak")
    ap.add_argument("--profile-steps", type=int, default=3,
                    help="steps of the best variant under torch.profiler (0: none)")
    a = ap.parse_args()
    if a.tiny:
        a.n_layer, a.n_head, a.d_model, a.seq, a.vocab, a.batch = 2, 2, 64, 32, 256, 4
        a.warmup, a.steps = min(a.warmup, 1), min(a.steps, 2)
    dev = a.device
    if dev == "cuda" and not torch.cuda.is_available():
        sys.exit("torch sees no CUDA device")
    name = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"
    peak = a.peak_flops or (dense_bf16_peak(name) if dev == "cuda" else None)
    torch.manual_seed(1337)
    if dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = GPT(a.vocab, a.n_layer, a.n_head, a.d_model, a.seq).to(dev)
    init_gpt2(model, a.n_layer)
    model.train()
    opt, opt_kind = make_optimizer(model, dev)
    params = sum(p.numel() for p in model.parameters())
    flops_seq = train_flops_per_seq(a.n_layer, a.seq, a.d_model, a.vocab)
    gen = torch.Generator(device=dev).manual_seed(42)
    shape = (a.batch, a.seq)

    def batch():
        x = torch.randint(0, a.vocab, shape, generator=gen, device=dev)
        y = torch.randint(0, a.vocab, shape, generator=gen, device=dev)
        return x, y

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    def step(fwd, x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=torch.bfloat16):
            loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    def run(fwd, n):
        """n steps; returns per-step ms and the last loss."""
        times, loss = [], None
        for _ in range(n):
            x, y = batch()
            sync()
            t0 = time.perf_counter()
            loss = step(fwd, x, y)
            sync()
            times.append((time.perf_counter() - t0) * 1e3)
        return times, float(loss.item())

    def report(variant, times, loss, extra=None):
        ms = statistics.median(times)
        tps = a.batch * a.seq / (ms / 1e3)
        r = {"impl": "pytorch", "variant": variant, "device": name, "torch": torch.__version__,
             "batch": a.batch, "seq": a.seq, "params": params, "adamw": opt_kind,
             "precision": "bf16 autocast", "step_ms_median": ms, "step_ms_min": min(times),
             "step_ms_max": max(times), "tokens_per_s": tps,
             "flops_per_sample": flops_seq, "achieved_tflops": flops_seq * a.batch / (ms / 1e3) / 1e12,
             "peak_tflops": peak / 1e12 if peak else None,
             "mfu": flops_seq * a.batch / (ms / 1e3) / peak if peak else None,
             "final_loss": loss, "measured_steps": len(times)}
        if extra:
            r.update(extra)
        print(json.dumps(r), flush=True)
        return r

    t0 = time.perf_counter()
    run(model, a.warmup)
    warmup_s = time.perf_counter() - t0
    times, loss = run(model, a.steps)
    best = report("eager", times, loss, {"warmup_s": warmup_s})
    best_fwd = model
    if a.compile != "off":
        why = None
        if not hasattr(torch, "compile"):
            why = "torch.compile not in torch %s" % torch.__version__
        else:
            try:
                t0 = time.perf_counter()
                cmodel = torch.compile(model)
                run(cmodel, a.warmup)
                compile_s = time.perf_counter() - t0
                times, loss = run(cmodel, a.steps)
                r = report("torch.compile", times, loss, {"compile_and_warmup_s": compile_s})
                if r["tokens_per_s"] > best["tokens_per_s"]:
                    best, best_fwd = r, cmodel
            except Exception as e:  # noqa: BLE001 - any compiler failure falls back to eager
                why = "%s: %s" % (type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
        if why:
            if a.compile == "on":
                sys.exit("torch.compile failed: %s" % why)
            best = dict(best, compile_failed=why)
    if a.profile_steps > 0:
        try:
            x, y = batch()
            kernel_profile(lambda: step(best_fwd, x, y), a.profile_steps, dev, best["variant"])
        except Exception as e:  # noqa: BLE001 - the profile is a diagnostic, never the result
            print("torch profile failed: %s: %s" % (type(e).__name__, str(e)[:200]), flush=True)
    best = dict(best, result=True)
    print(json.dumps(best), flush=True)


if __name__ == "__main__":
    main()
