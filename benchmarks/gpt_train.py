#!/usr/bin/python3
"""GPT training benchmark: Tulpar against PyTorch (CPU, float32) on the same cores.

For each shape it measures, in the same run and with the same thread count:
  * Tulpar: `tulpar train` as one process (no mpirun), runtime.threads = OMP_NUM_THREADS = N;
  * PyTorch: the same GPT-2 model (tests/gpt_reference/make_reference.py's plain-torch code:
    tied LM head, GELU tanh, GPT-2 init, no dropout), torch.set_num_threads(N), in a
    subprocess so that OMP_WAIT_POLICY=PASSIVE and OMP_NUM_THREADS are set before torch loads;
  * PyTorch again with glibc malloc keeping freed memory in the heap ("pytorch-tm", see
    MALLOC_TUNED; informational, --torch-malloc);
  * the sgemm peak of N threads (`tulpar bench gemm`), the baseline for %peak.
Both train with AdamW (betas 0.9/0.95, weight decay 0.1 on 2-D weights only, eps 1e-8),
global-norm clipping at 1.0 and a constant learning rate, on random tokens. A step is
zero_grad + forward + backward + clip + optimizer step; ms/step is the median of the measured
steps after --warmup steps. Both sides use the same FLOP count (Tulpar's, tp_gpt_build):

    forward per sequence = L*(24*T*C^2 + 2*C*T*(T+1)) + 2*T*C*V,  training = 3 x forward

    benchmarks/gpt_train.py --tulpar build/tulpar [--threads 2] [--shapes a,b] [--json out.json]

Figures are ratios within one run: these VMs are shared and noisy, so compare nothing across
runs or machines. Targets are printed PASS/FAIL; a missed target never fails the script.
"""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SHAPES = {
    # name: model and batch; lr is irrelevant to speed but kept equal on both sides
    "a": dict(label="GPT-2 124M", n_layer=12, n_head=12, d_model=768, vocab_size=50257,
              seq_len=64, batch=4),
    "b": dict(label="small", n_layer=4, n_head=4, d_model=256, vocab_size=256, seq_len=128,
              batch=8),
}
OPT = dict(lr=6e-4, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=1.0)
FLOP_FORMULA = ("training FLOPs per sequence = 3 x [L*(24*T*C^2 + 2*C*T*(T+1)) + 2*T*C*V] "
                "(2 per multiply-add; qkv/proj/MLP, causal attention, tied LM head)")
TARGETS = dict(tokens_ratio=1.2, frac_peak_a=0.60, mem_ratio=1.2)
# glibc malloc returns every large tensor to the OS (mmap/munmap) and the next step page-faults
# it back in; PyTorch's CPU tuning guide swaps in jemalloc/tcmalloc for this. Neither is
# installed here, so the "pytorch-tm" variant keeps freed memory in the heap with glibc's own
# knobs instead: same code and threads, only the allocator's policy differs.
MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": "33554432",  # glibc's maximum (32 MiB)
                "MALLOC_TRIM_THRESHOLD_": "17179869184", "MALLOC_TOP_PAD_": "1073741824"}


def train_flops_per_seq(s):
    L, T, C, V = s["n_layer"], s["seq_len"], s["d_model"], s["vocab_size"]
    return 3.0 * (L * (24.0 * T * C * C + 2.0 * C * T * (T + 1.0)) + 2.0 * T * C * V)


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# ---- PyTorch side (runs in a subprocess: python3 gpt_train.py --torch-worker SPEC OUT) ---------


def blas_libraries():
    """Shared libraries mapped into this process that look like a BLAS, with their config."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if re.search(r"(blas|mkl|blis|atlas)", os.path.basename(path), re.I):
                libs.add(os.path.realpath(path))
    out = []
    for lib in sorted(libs):
        entry = {"path": lib}
        try:
            import ctypes
            h = ctypes.CDLL(lib)
            h.openblas_get_config.restype = ctypes.c_char_p
            entry["openblas_config"] = h.openblas_get_config().decode()
        except (OSError, AttributeError):
            pass
        out.append(entry)
    return out


def torch_worker(spec_path, out_path):
    with open(spec_path) as f:
        spec = json.load(f)
    threads, s = spec["threads"], spec["shape"]
    # Must precede the torch import (the parent also sets them in our environment).
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    sys.path.insert(0, os.path.join(ROOT, "tests", "gpt_reference"))
    import inspect
    import resource
    import torch
    import make_reference as ref  # the plain-torch GPT-2 that matches Tulpar exactly

    torch.set_num_threads(threads)
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(1337)
    L = s["n_layer"]
    model = ref.GPT(s["vocab_size"], L, s["n_head"], s["d_model"], s["seq_len"])
    ref.init_gpt2(model, L, perturb=False)  # GPT-2 init exactly as Tulpar's
    model.train()
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() != 2]
    kw = dict(lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]), eps=OPT["eps"])
    foreach = "foreach" in inspect.signature(torch.optim.AdamW).parameters
    if foreach:
        kw["foreach"] = True
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": OPT["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], **kw)
    n_steps = spec["warmup"] + spec["steps"]
    gen = torch.Generator().manual_seed(42)
    shape = (n_steps, s["batch"], s["seq_len"])
    tokens = torch.randint(0, s["vocab_size"], shape, generator=gen)
    targets = torch.randint(0, s["vocab_size"], shape, generator=gen)
    step_ms = []
    for i in range(n_steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        _, loss = model(tokens[i], targets[i])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), OPT["grad_clip"])
        opt.step()
        step_ms.append((time.perf_counter() - t0) * 1e3)
    config_lines = torch.__config__.show().strip().splitlines()
    result = {
        "step_ms_all": step_ms, "final_loss": loss.item(),
        "params": sum(p.numel() for p in model.parameters()),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
        "torch_config": config_lines[:6],
        "blas_info": next((m.group(1) for m in [re.search(r"BLAS_INFO=([^,\s]+)",
                                                          torch.__config__.show())] if m), None),
        "blas_libraries": blas_libraries(),
        "adamw_foreach": foreach, "torch_compile": "not used (not available/useful on CPU in "
                                                   "torch 1.13)",
    }
    with open(out_path, "w") as f:
        json.dump(result, f)


def run_torch(shape, threads, warmup, steps, tmp, idx, malloc_tuned):
    tag = "%s-%s-%d" % ("tm" if malloc_tuned else "plain", shape["name"], idx)
    spec = os.path.join(tmp, "torch-%s.spec.json" % tag)
    out = os.path.join(tmp, "torch-%s.json" % tag)
    with open(spec, "w") as f:
        json.dump({"shape": shape, "threads": threads, "warmup": warmup, "steps": steps}, f)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS=str(threads))
    for k in MALLOC_TUNED:
        env.pop(k, None)
    if malloc_tuned:
        env.update(MALLOC_TUNED)
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--torch-worker", spec, out],
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit("PyTorch run failed (%s):\n%s" % (tag, p.stderr[-3000:]))
    with open(out) as f:
        r = json.load(f)
    r["step_ms"] = r["step_ms_all"][warmup:]
    return r


# ---- Tulpar side ------------------------------------------------------------------------------


def tulpar_env(threads):
    return dict(os.environ, OMP_NUM_THREADS=str(threads), TULPAR_PROGRESS="plain")


def sgemm_peak(tulpar, threads, tmp):
    out = os.path.join(tmp, "gemm%d.json" % threads)
    subprocess.run([tulpar, "bench", "gemm", "--threads", str(threads), "--sizes", "512,1024,2048",
                    "--json", out], check=True, capture_output=True, env=tulpar_env(threads))
    with open(out) as f:
        return json.load(f)["peak_gflops"]


def make_data(tulpar, shape, tmp):
    """Random tokens: an llm.c shard for vocab 50257, `tulpar data prepare` text for vocab 256."""
    import numpy as np
    d = os.path.join(tmp, "data-%s" % shape["name"])
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(0)
    if shape["vocab_size"] == 256:
        text = os.path.join(tmp, "random-%s.txt" % shape["name"])
        with open(text, "wb") as f:  # printable ASCII: valid UTF-8 without NUL
            f.write(rng.integers(32, 127, 1 << 20, dtype=np.uint8).tobytes())
        subprocess.run([tulpar, "data", "prepare", "--input", text, "--output", d], check=True,
                       capture_output=True)
    elif shape["vocab_size"] == 50257:
        for name, n in (("train.bin", 1 << 20), ("val.bin", 1 << 16)):
            header = np.zeros(256, np.int32)
            header[:3] = (20240520, 1, n)
            with open(os.path.join(d, name), "wb") as f:
                f.write(header.tobytes())
                f.write(rng.integers(0, 50257, n).astype(np.uint16).tobytes())
    else:
        sys.exit("no token data for vocab %d" % shape["vocab_size"])
    return d


def max_rss_from_time(stderr):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return int(m.group(1)) * 1024 if m else None


def run_tulpar(tulpar, shape, data_dir, threads, warmup, steps, tmp, idx):
    run_dir = os.path.join(tmp, "tulpar-%s-%d" % (shape["name"], idx))
    sets = {
        "model.type": '"gpt"', "model.n_layer": shape["n_layer"], "model.n_head": shape["n_head"],
        "model.d_model": shape["d_model"], "model.seq_len": shape["seq_len"],
        "model.vocab_size": shape["vocab_size"], "model.dropout": 0.0,
        "data.dataset": '"tokens"', "data.dir": '"%s"' % data_dir, "data.train": '"train.bin"',
        "data.val": '"val.bin"', "train.steps": warmup + steps, "train.batch": shape["batch"],
        "train.grad_accum": 1, "train.optimizer": '"adamw"', "train.lr": OPT["lr"],
        "train.min_lr": OPT["lr"], "train.warmup_steps": 0, "train.schedule": '"constant"',
        "train.beta1": OPT["beta1"], "train.beta2": OPT["beta2"], "train.eps": OPT["eps"],
        "train.weight_decay": OPT["weight_decay"], "train.grad_clip": OPT["grad_clip"],
        "eval.at_end": "false", "eval.every": 0, "checkpoint.every": 0, "checkpoint.keep": 1,
        "log.every": 1, "runtime.backend": '"cpu"', "runtime.threads": threads,
    }
    args = [tulpar, "train", os.path.join(ROOT, "configs", "gpt_small.cfg"), "--run-dir", run_dir]
    for k, v in sets.items():
        args += ["--set", "%s=%s" % (k, v)]
    timed = os.path.exists("/usr/bin/time")
    cmd = (["/usr/bin/time", "-v"] if timed else []) + args
    p = subprocess.run(cmd, capture_output=True, text=True, env=tulpar_env(threads))
    if p.returncode != 0:
        sys.exit("tulpar run failed (shape %s): %s\n%s" % (shape["name"], " ".join(args),
                                                           p.stderr[-3000:]))
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    rows = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "step_ms" in row and "eval_loss" not in row:
                rows.append(row)
    rows.sort(key=lambda r: r["step"])
    r = {"step_ms_all": [row["step_ms"] for row in rows],
         "step_ms": [row["step_ms"] for row in rows if row["step"] > warmup],
         "final_loss": rows[-1]["loss"], "params": summary.get("params"),
         "flops_per_sample": summary.get("flops_per_sample"),
         "threads_per_rank": summary.get("threads_per_rank"),
         "backend_detail": summary.get("backend_detail"),
         "summary_tokens_per_s": summary.get("tokens_per_s"),
         "time_v_max_rss_bytes": max_rss_from_time(p.stderr) if timed else None}
    for k in ("peak_rss_bytes", "backend_peak_bytes", "param_state_bytes", "activation_bytes"):
        r[k] = summary.get(k)
    r["rss_source"] = "summary.json" if r["peak_rss_bytes"] else "/usr/bin/time -v"
    if not r["peak_rss_bytes"]:
        r["peak_rss_bytes"] = r["time_v_max_rss_bytes"]
    shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)  # 1.5 GB for (a)
    return r


# ---- report -----------------------------------------------------------------------------------


def aggregate(runs, shape, peak):
    """Median over runs of each run's median step time; min-max over every measured step."""
    tokens_per_step = shape["batch"] * shape["seq_len"]
    flops_per_step = shape["batch"] * train_flops_per_seq(shape)
    ms = statistics.median(statistics.median(r["step_ms"]) for r in runs)
    all_steps = [t for r in runs for t in r["step_ms"]]
    rss = [r["peak_rss_bytes"] for r in runs if r.get("peak_rss_bytes")]
    gflops = flops_per_step / ms / 1e6
    return {"step_ms": {"median": ms, "min": min(all_steps), "max": max(all_steps)},
            "step_ms_per_run": [r["step_ms"] for r in runs],
            "tokens_per_s": tokens_per_step / ms * 1e3, "achieved_gflops": gflops,
            "fraction_of_sgemm_peak": gflops / peak,
            "peak_rss_bytes": statistics.median(rss) if rss else None,
            "final_loss": [r["final_loss"] for r in runs]}


def verdict(ok):
    return "PASS" if ok else "FAIL"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tulpar", default=os.path.join(ROOT, "build", "tulpar"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--shapes", default="a,b")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", default="gpt_train.json")
    ap.add_argument("--torch-malloc", choices=("plain", "tuned", "both"), default="both",
                    help="PyTorch with glibc's default malloc (plain, the one the targets use), "
                         "with malloc kept in the heap (tuned: pytorch-tm), or both")
    ap.add_argument("--torch-worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_worker:
        return torch_worker(*a.torch_worker)
    if a.steps < 1 or a.warmup < 0 or a.repeat < 1 or a.threads < 1:
        ap.error("need --steps >= 1, --warmup >= 0, --repeat >= 1, --threads >= 1")
    tulpar = os.path.abspath(a.tulpar)
    tmp = tempfile.mkdtemp(prefix="tulpar-gptbench-")
    N = a.threads
    peak = sgemm_peak(tulpar, N, tmp)
    report = {"benchmark": "gpt_train", "host": platform.node(),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "threads": N, "warmup_steps": a.warmup, "measured_steps": a.steps,
              "repeat": a.repeat, "sgemm_peak_gflops": peak, "flop_formula": FLOP_FORMULA,
              "optimizer": dict(OPT, name="adamw", schedule="constant",
                                weight_decay_on="2-D weights only"),
              "targets": TARGETS, "shapes": {}}
    print("# %d threads; sgemm peak %.1f GFLOP/s (tulpar bench gemm, 512-2048)" % (N, peak))
    print("# " + FLOP_FORMULA)
    versions_printed = False
    for name in a.shapes.split(","):
        if name not in SHAPES:
            sys.exit("unknown shape %r (have %s)" % (name, ",".join(SHAPES)))
        shape = dict(SHAPES[name], name=name)
        data_dir = make_data(tulpar, shape, tmp)
        variants = {"plain": [False], "tuned": [True], "both": [False, True]}[a.torch_malloc]
        t_runs, p_runs = [], {v: [] for v in variants}
        for i in range(a.repeat):  # interleaved so that drift in machine load hits all
            t_runs.append(run_tulpar(tulpar, shape, data_dir, N, a.warmup, a.steps, tmp, i))
            for v in variants:
                p_runs[v].append(run_torch(shape, N, a.warmup, a.steps, tmp, i, v))
        if not versions_printed:
            pr = p_runs[variants[0]][0]
            report["versions"] = {
                "tulpar_backend": t_runs[0]["backend_detail"],
                "torch": pr["torch_version"], "torch_config": pr["torch_config"],
                "torch_blas_info": pr["blas_info"], "torch_blas_libraries": pr["blas_libraries"],
                "torch_adamw_foreach": pr["adamw_foreach"], "torch_compile": pr["torch_compile"],
                "python": platform.python_version()}
            print("# Tulpar: %s" % t_runs[0]["backend_detail"])
            libs = pr["blas_libraries"]
            configs = sorted({b["openblas_config"] for b in libs if "openblas_config" in b})
            blas = ", ".join(b["path"] for b in libs) or "none found in /proc/self/maps"
            if configs:
                blas += " = " + "; ".join(configs)
            print("# PyTorch %s (BLAS_INFO=%s; loaded %s), %s; AdamW foreach=%s; torch.compile %s"
                  % (pr["torch_version"], pr["blas_info"], blas,
                     " / ".join(l.strip(" -") for l in pr["torch_config"][1:4]),
                     pr["adamw_foreach"], pr["torch_compile"]))
            versions_printed = True
        flops_seq = train_flops_per_seq(shape)
        if t_runs[0]["flops_per_sample"] and \
                abs(t_runs[0]["flops_per_sample"] - flops_seq) > 1e-6 * flops_seq:
            print("# warning: tulpar flops_per_sample %.6g != formula %.6g"
                  % (t_runs[0]["flops_per_sample"], flops_seq))
        T = aggregate(t_runs, shape, peak)
        impls = [("tulpar", T)]
        for v in variants:
            R = aggregate(p_runs[v], shape, peak)
            R["params"] = p_runs[v][0]["params"]
            R["rss_source"] = "getrusage(RUSAGE_SELF).ru_maxrss (includes the Python interpreter)"
            R["malloc_env"] = MALLOC_TUNED if v else {}
            impls.append(("pytorch-tm" if v else "pytorch", R))
        P = impls[1][1]
        T["params"] = t_runs[0]["params"]
        T["rss_source"] = t_runs[0]["rss_source"]
        T["summary_tokens_per_s"] = [r["summary_tokens_per_s"] for r in t_runs]
        for k in ("backend_peak_bytes", "param_state_bytes", "activation_bytes",
                  "time_v_max_rss_bytes"):
            T[k] = t_runs[0][k]
        print("\n## shape %s: %s (%d layers, %d heads, d_model %d, vocab %d, seq_len %d, batch %d;"
              " %.1f M params, %.3f GFLOP/step)" % (
                  name, shape["label"], shape["n_layer"], shape["n_head"], shape["d_model"],
                  shape["vocab_size"], shape["seq_len"], shape["batch"], P["params"] / 1e6,
                  flops_seq * shape["batch"] / 1e9))
        print("  %-10s %10s %19s %10s %9s %7s %12s" % ("impl", "ms/step", "(min-max)",
                                                      "tokens/s", "GFLOP/s", "%peak",
                                                      "peak RSS MB"))
        for impl, R in impls:
            rss = "%.0f" % (R["peak_rss_bytes"] / 2**20) if R["peak_rss_bytes"] else "n/a"
            print("  %-10s %10.1f %9.1f-%-9.1f %10.0f %9.1f %6.1f%% %12s" % (
                impl, R["step_ms"]["median"], R["step_ms"]["min"], R["step_ms"]["max"],
                R["tokens_per_s"], R["achieved_gflops"], 100 * R["fraction_of_sgemm_peak"], rss))
        entry = {"shape": shape, "train_flops_per_sequence": flops_seq, "targets": {}}
        entry.update(impls)
        for impl, R in impls[1:]:
            ratio = T["tokens_per_s"] / R["tokens_per_s"]
            key = "tulpar_over_%s_tokens_per_s" % impl.replace("-", "_")
            entry[key] = ratio
            if impl == "pytorch":  # the target is against PyTorch as installed
                ok = ratio >= TARGETS["tokens_ratio"]
                entry["targets"]["tokens_ratio"] = {"value": ratio,
                                                    "target": TARGETS["tokens_ratio"], "pass": ok}
                print("  Tulpar/PyTorch tokens/s: %.2fx  [target >= %.1fx: %s]" % (
                    ratio, TARGETS["tokens_ratio"], verdict(ok)))
            else:
                print("  Tulpar/PyTorch-tm tokens/s: %.2fx  (informational: malloc kept in the "
                      "heap)" % ratio)
        if name == "a":
            f = T["fraction_of_sgemm_peak"]
            ok = f >= TARGETS["frac_peak_a"]
            entry["targets"]["fraction_of_sgemm_peak"] = {"value": f,
                                                          "target": TARGETS["frac_peak_a"],
                                                          "pass": ok}
            print("  Tulpar %% of sgemm peak: %.1f%%  [target >= %.0f%%: %s]" % (
                100 * f, 100 * TARGETS["frac_peak_a"], verdict(ok)))
        if T["param_state_bytes"] is not None and T["activation_bytes"] is not None:
            need = T["param_state_bytes"] + T["activation_bytes"]
            mr = T["peak_rss_bytes"] / need if T["peak_rss_bytes"] else None
            T["memory_needed_bytes"] = need
            T["peak_rss_over_needed"] = mr
            ok = mr is not None and mr <= TARGETS["mem_ratio"]
            entry["targets"]["memory"] = {"value": mr, "target": TARGETS["mem_ratio"], "pass": ok}
            print("  Tulpar memory needed (param_state %.0f MB + activations %.0f MB) = %.0f MB;"
                  " peak RSS / needed = %s  [target <= %.1fx: %s]" % (
                      T["param_state_bytes"] / 2**20, T["activation_bytes"] / 2**20,
                      need / 2**20, "%.2fx" % mr if mr else "n/a", TARGETS["mem_ratio"],
                      verdict(ok)))
        else:
            print("  Tulpar memory needed: n/a (summary.json has no param_state_bytes/"
                  "activation_bytes yet; peak RSS from %s)" % T["rss_source"])
        report["shapes"][name] = entry
    shutil.rmtree(tmp, ignore_errors=True)
    with open(a.json, "w") as f:
        json.dump(report, f, indent=2)
    print("\n# wrote %s" % a.json)


if __name__ == "__main__":
    main()
