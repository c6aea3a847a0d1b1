#!/usr/bin/env python3
"""Helpers of tests/gpu/device_check.sh; standard library only (any python3 >= 3.8).

  device_tools.py tokens DIR [--train N] [--val N] [--vocab V]
        random GPT-2-vocabulary tokens in llm.c's shard format (256 int32 header words: magic
        20240520, version 1, token count; then uint16 tokens): DIR/train.bin, DIR/val.bin
  device_tools.py peak DEVICE_NAME
        the dense bf16 peak in FLOP/s of that GPU (empty when unknown)
  device_tools.py throughput RUN_DIR --warmup W [--peak P]
        one JSON object from a `tulpar train` run directory: median step time over the logged
        steps after W (metrics.jsonl, log.every = 1), tokens/s, MFU (summary.json's
        flops_per_sample x samples/s / P)
  device_tools.py summary --dir RESULTS
        the final table of device_check.sh from what it wrote in RESULTS: state.txt ("rc STEP
        CODE" and "device NAME" lines), ops.log, train.log, tulpar.log (ending with the
        throughput JSON), torch.log (torch_gpt_baseline.py's JSON lines)
"""
import argparse
import array
import json
import os
import re
import statistics
import struct
import sys

# Dense bf16 tensor-core peaks (FLOP/s), most specific name first; never the sparse figures.
PEAKS = [("H100 PCIE", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("GH200", 989e12),
         ("H200", 989e12), ("H800", 989e12), ("B200", 2250e12), ("A100", 312e12)]
LLMC_MAGIC, LLMC_VERSION = 20240520, 1


def dense_bf16_peak(name):
    n = name.upper()
    for key, peak in PEAKS:
        if key in n:
            return peak
    return None


def write_llmc(path, n, vocab, seed):
    import random
    rng = random.Random(seed)
    toks = array.array("H", (rng.randrange(vocab) for _ in range(n)))
    if sys.byteorder != "little":
        toks.byteswap()
    header = struct.pack("<256i", LLMC_MAGIC, LLMC_VERSION, n, *([0] * 253))
    with open(path, "wb") as f:
        f.write(header)
        f.write(toks.tobytes())


def cmd_tokens(a):
    os.makedirs(a.dir, exist_ok=True)
    write_llmc(os.path.join(a.dir, "train.bin"), a.train, a.vocab, 1)
    write_llmc(os.path.join(a.dir, "val.bin"), a.val, a.vocab, 2)
    print("wrote %s/train.bin (%d tokens), val.bin (%d tokens), vocab %d, llm.c format"
          % (a.dir, a.train, a.val, a.vocab))


def cmd_peak(a):
    p = dense_bf16_peak(a.name)
    print("%.0f" % p if p else "")


def throughput(run_dir, warmup, peak):
    rows = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if "step_ms" in r and "eval_loss" not in r:
                rows.append(r)
    rows.sort(key=lambda r: r["step"])
    measured = [r["step_ms"] for r in rows if r["step"] > warmup]
    if not measured:
        raise SystemExit("%s: no logged steps after step %d" % (run_dir, warmup))
    with open(os.path.join(run_dir, "summary.json")) as f:
        s = json.load(f)
    ms = statistics.median(measured)
    batch = s["global_batch"]
    tokens = batch * s["tokens_per_sample"]
    flops_step = s["flops_per_sample"] * batch
    return {"impl": "tulpar", "backend": s.get("backend"), "backend_detail": s.get("backend_detail"),
            "params": s.get("params"), "batch": batch, "seq": s["tokens_per_sample"],
            "step_ms_median": ms, "step_ms_min": min(measured), "step_ms_max": max(measured),
            "measured_steps": len(measured), "tokens_per_s": tokens / (ms / 1e3),
            "summary_tokens_per_s": s.get("tokens_per_s"),
            "flops_per_sample": s["flops_per_sample"],
            "achieved_tflops": flops_step / (ms / 1e3) / 1e12,
            "peak_tflops": peak / 1e12 if peak else None,
            "mfu": flops_step / (ms / 1e3) / peak if peak else None,
            "final_loss": rows[-1].get("loss"),
            "backend_peak_bytes": s.get("backend_peak_bytes"),
            "host_waits_per_step": s.get("host_waits_per_step")}


def cmd_throughput(a):
    print(json.dumps(throughput(a.run_dir, a.warmup, a.peak or None)))


# ---- summary ----------------------------------------------------------------------------------


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def last_json(text, key=None):
    """The last line of text that parses as a JSON object (having key, if given)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if key is None or key in obj:
                return obj
    return None


def verdict(rc):
    return {"0": "PASS", "77": "SKIPPED", "124": "TIMEOUT", "137": "TIMEOUT (killed)",
            "notime": "NOT RUN (time budget spent)", "skipped": "NOT RUN (DEVCHECK_ONLY)",
            "": "NOT RUN"}.get(rc, "FAIL (rc %s)" % rc)


# Tulpar's op names by the classes torch_gpt_baseline.py gives PyTorch's kernels (the fused
# linear products, bias and GELU epilogues included, count as gemm; zeroing the gradients is
# the optimizer's).
TULPAR_CLASSES = [
    ("attention", r"attention"),
    ("gemm", r"gemm|linear"),
    ("layernorm", r"layernorm"),
    ("cross_entropy", r"xent"),
    ("embedding", r"embedding"),
    ("optimizer", r"adamw|sgd|sumsq|fill"),
]
CLASS_ORDER = [c for c, _ in TULPAR_CLASSES] + ["other"]


def tulpar_class(name):
    for cls, pattern in TULPAR_CLASSES:
        if re.search(pattern, name):
            return cls
    return "other"


def class_table(tulpar_prof, torch_prof):
    """Lines comparing ms per step by class: Tulpar's op profile against PyTorch's kernels."""
    tp = {}
    for op in (tulpar_prof or {}).get("ops", []):
        c = tulpar_class(op.get("name", ""))
        tp[c] = tp.get(c, 0.0) + op.get("ms_per_step", 0.0)
    pt = (torch_prof or {}).get("classes_ms_per_step", {})
    if not tp and not pt:
        return []
    out = ["where the step goes, ms per step (tulpar: runtime.profile ops; pytorch %s: its GPU "
           "kernels under torch.profiler):" % (torch_prof or {}).get("variant", "n/a"),
           "  %-14s | %8s | %8s" % ("class", "tulpar", "pytorch")]
    for c in CLASS_ORDER:
        if c in tp or c in pt:
            out.append("  %-14s | %8s | %8s" % (c, fmt(tp.get(c), "%.2f"), fmt(pt.get(c), "%.2f")))
    out.append("  %-14s | %8s | %8s" % ("total", fmt(sum(tp.values()) if tp else None, "%.2f"),
                                         fmt(sum(pt.values()) if pt else None, "%.2f")))
    return out


def fmt(x, spec="%.3g"):
    return "n/a" if x is None else spec % x


def cmd_summary(a):
    d = a.dir
    rc, device = {}, ""
    for line in read(os.path.join(d, "state.txt")).splitlines():
        f = line.split(None, 2)
        if len(f) == 3 and f[0] == "rc":
            rc[f[1]] = f[2].strip()
        elif len(f) >= 2 and f[0] == "device":
            device = line.split(None, 1)[1].strip()
    device = device or "unknown device"
    peak = dense_bf16_peak(device)
    out = []
    out.append("=" * 100)
    out.append("DEVICE CHECK SUMMARY: %s; dense bf16 peak %s" % (
        device, "%.0f TFLOP/s" % (peak / 1e12) if peak else "unknown (MFU not computed)"))
    out.append("-" * 100)

    # op table: test_cuda_ops prints "op | precision | max rel err | tolerance | ok"
    ops = {}
    order = []
    for line in read(os.path.join(d, "ops.log")).splitlines():
        f = [x.strip() for x in line.split("|")]
        if len(f) == 5 and f[1] in ("fp32", "bf16"):
            if f[0] not in ops:
                ops[f[0]] = {}
                order.append(f[0])
            ops[f[0]][f[1]] = (f[2], f[3], f[4])
    out.append("test_cuda_ops: %s   (each op vs the CPU ref backend; max rel err / tolerance)"
               % verdict(rc.get("ops", "")))
    if order:
        out.append("  %-30s | %-21s | %-21s | ok" % ("op", "fp32 err / tol", "bf16 err / tol"))
        for op in order:
            cells, ok = [], True
            for p in ("fp32", "bf16"):
                e = ops[op].get(p)
                cells.append("%s / %s" % (e[0], e[1]) if e else "n/a")
                ok &= e is None or e[2] == "yes"
            out.append("  %-30s | %-21s | %-21s | %s" % (op, cells[0], cells[1],
                                                         "yes" if ok else "NO"))
    # Fused linear products cuBLASLt declined (cuda/linear_cublaslt.cu logs each problem once):
    # those ran as separate ops, so the fusion being measured did not happen for them.
    declined = []
    for name in ("ops.log", "tulpar.log", "profile.log"):
        for line in read(os.path.join(d, name)).splitlines():
            m = re.search(r"(cuBLASLt has no algorithm for|cublasLtMatmul refused) (.*)", line)
            if m:
                declined.append("%s: %s" % (name, m.group(2)[:90]))
    out.append("cuBLASLt fused products declined (ran unfused): %d" % len(declined))
    for line in declined[:6]:
        out.append("  " + line)
    if rc.get("sanitize", "skipped") != "skipped":
        errs = re.findall(r"ERROR SUMMARY: (\d+) error", read(os.path.join(d, "ops.log")))
        out.append("compute-sanitizer over op-test groups: %s (errors per tool run: %s)"
                   % (verdict(rc["sanitize"]), ", ".join(errs) or "n/a"))
    out.append("test_comm_nccl: %s" % verdict(rc.get("nccl", "")))

    train = read(os.path.join(d, "train.log"))
    m = re.search(r"loss agreement (\S+) vs cpu over (\d+) steps: max rel diff (\S+)", train)
    tr = re.search(r"cuda_train: (\d+) passed, (\d+) failed", train)
    out.append("50-step GPT loss, cuda bf16 vs cpu fp32 (tol 1e-2 rel): %s; test_cuda_train %s%s"
               % ("max rel diff %s" % m.group(3) if m else "n/a", verdict(rc.get("train", "")),
                  " (%s passed, %s failed)" % tr.groups() if tr else ""))
    out.append("-" * 100)

    tp = last_json(read(os.path.join(d, "tulpar.log")), "tokens_per_s")
    pt = last_json(read(os.path.join(d, "torch.log")), "result")
    if pt is None:
        pt = last_json(read(os.path.join(d, "torch.log")), "tokens_per_s")
    out.append("GPT-2 124M training throughput (batch 16, context 1024, bf16), same GPU, same call:")
    out.append("  %-34s | %8s | %10s | %8s | %s" % ("impl", "ms/step", "tokens/s", "MFU", "note"))
    rows = []
    if tp:
        rows.append(("tulpar (cuda, bf16)", tp, "tulpar train %s" % verdict(rc.get("tulpar", ""))))
    else:
        out.append("  %-34s | %8s | %10s | %8s | %s" % ("tulpar (cuda, bf16)", "n/a", "n/a", "n/a",
                                                      "tulpar train %s" % verdict(rc.get("tulpar", ""))))
    if pt:
        note = "torch %s, AdamW %s" % (pt.get("torch"), pt.get("adamw"))
        if pt.get("compile_failed"):
            note += "; torch.compile failed: %s" % pt["compile_failed"][:60]
        if rc.get("torch", "") != "0":
            note += "; baseline %s (its last printed figures)" % verdict(rc.get("torch", ""))
        rows.append(("pytorch (%s, bf16 autocast)" % pt.get("variant"), pt, note))
    else:
        out.append("  %-34s | %8s | %10s | %8s | %s" % ("pytorch", "n/a", "n/a", "n/a",
                                                      "baseline %s" % verdict(rc.get("torch", ""))))
    for label, r, note in rows:
        mfu = r.get("mfu")
        if mfu is None and peak and r.get("flops_per_sample"):
            mfu = r["flops_per_sample"] * r["batch"] / (r["step_ms_median"] / 1e3) / peak
        out.append("  %-34s | %8.1f | %10.0f | %8s | %s" % (
            label, r["step_ms_median"], r["tokens_per_s"],
            "n/a" if mfu is None else "%.1f%%" % (100 * mfu), note))
    if tp:
        out.append("tulpar host waits for the GPU per step (after the first): %s (1 = only the "
                   "step's end)" % tp.get("host_waits_per_step"))
        mfu = tp.get("mfu")
        out.append("goal MFU >= 40%%: %s" % ("n/a" if mfu is None else
                                            "%s (%.1f%%)" % ("PASS" if mfu >= 0.40 else "FAIL",
                                                             100 * mfu)))
        if pt:
            ratio = tp["tokens_per_s"] / pt["tokens_per_s"]
            out.append("goal tokens/s >= PyTorch's: %s (tulpar / pytorch = %.2fx)"
                       % ("PASS" if ratio >= 1.0 else "FAIL", ratio))
    # Where tulpar's step goes: the op-kind table of the runtime.profile run (profile.log).
    prof = read(os.path.join(d, "profile.log")).splitlines()
    head = [i for i, line in enumerate(prof) if line.strip().startswith("op kind")]
    if head:
        m = re.search(r"op profile \(rank.*?ops ([\d.]+) ms per step", "\n".join(prof))
        out.append("tulpar op profile (runtime.profile; ops %s ms per step), longest op kinds:"
                   % (m.group(1) if m else "?"))
        for line in prof[head[0]:head[0] + 15]:  # the gemm kinds (fused epilogues) are several
            out.append("  " + line.strip())
    tprof = last_json("\n".join(prof), "tulpar_profile")
    pprof = last_json(read(os.path.join(d, "torch.log")), "torch_profile")
    out.extend(class_table(tprof and tprof["tulpar_profile"], pprof and pprof["torch_profile"]))
    out.append("=" * 100)
    print("\n".join(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tokens")
    t.add_argument("dir")
    t.add_argument("--train", type=int, default=1 << 20)
    t.add_argument("--val", type=int, default=1 << 16)
    t.add_argument("--vocab", type=int, default=50257)
    p = sub.add_parser("peak")
    p.add_argument("name")
    th = sub.add_parser("throughput")
    th.add_argument("run_dir")
    th.add_argument("--warmup", type=int, default=5)
    th.add_argument("--peak", type=float, default=0.0)
    s = sub.add_parser("summary")
    s.add_argument("--dir", required=True)
    a = ap.parse_args()
    {"tokens": cmd_tokens, "peak": cmd_peak, "throughput": cmd_throughput,
     "summary": cmd_summary}[a.cmd](a)


if __name__ == "__main__":
    main()
