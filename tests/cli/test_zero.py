"""Data-parallel gradient synchronisation: ZeRO-0/1/2 with overlap on and off give the same
training as plain data parallelism (GPT with tied embeddings and many buckets, gradient
accumulation; an MLP with AdamW and SGD), optimizer memory per rank falls by the number of
ranks, a ZeRO-1 checkpoint from 2 ranks resumes on 1 rank and on 2 ranks and continues the
uninterrupted run, and ranks that disagree on what they reduce stop at start-up with a message."""
import os

import numpy as np

from tulpar_test import Harness, newest_checkpoint, read_metrics, read_params, read_summary, tiny_mlp_config

h = Harness("zero")
sample = os.path.join(h.source, "tests", "data", "sample_multilingual.txt")
data = h.path("data")
p = h.run(["data", "prepare", "--input", sample, "--output", data, "--val-fraction", "0.1"])
h.check(p.returncode == 0, "data prepare", p.stderr[-1500:])

GPT = """
model: { type = "gpt"; n_layer = 2; n_head = 2; d_model = 32; seq_len = 16; vocab_size = 256; };
data: { dataset = "tokens"; dir = "%s"; };
train: { steps = %d; batch = 8; grad_accum = 2; lr = 0.003; warmup_steps = 5; beta2 = 0.95;
         weight_decay = 0.1; grad_clip = 0.5; seed = 5; };
eval: { at_end = false; };
checkpoint: { every = %d; keep = 10; };
log: { every = 5; };
runtime: { threads = 1; };
comm: { bucket_mb = 0.01; };
""" % (data, 30, 10)
gpt_cfg = h.write_config("gpt.cfg", GPT)
GROUPS = ("params", "optim/m", "optim/v")


def train(cfg, name, np_, sets=(), extra=()):
    run = h.path(name)
    args = ["train", cfg, "--run-dir", run] + list(extra)
    for s in sets:
        args += ["--set", s]
    p = h.run(args, np=np_, timeout=300)
    ok = h.check(p.returncode == 0, "%s: exit 0" % name, p.stderr[-2000:])
    return run, p, ok


def max_rel(a, b):
    worst = 0.0
    for k in a:
        d = np.max(np.abs(a[k] - b[k])) if a[k].size else 0.0
        s = max(np.max(np.abs(a[k])) if a[k].size else 0.0, 1e-3)
        worst = max(worst, float(d / s))
    return worst


# Reference: plain data parallelism, gradients reduced after backward.
ref_run, p, _ = train(gpt_cfg, "gpt_z0_off", 2, ["comm.overlap=false"])
h.check("gradient bucket(s)" in p.stdout, "start-up reports the bucket layout")
ref = read_params(newest_checkpoint(ref_run), GROUPS)
ref_loss = [r["loss"] for r in read_metrics(ref_run) if "loss" in r]

for zero in (0, 1, 2):
    for overlap in ("true", "false"):
        if zero == 0 and overlap == "false":
            continue
        name = "gpt_z%d_%s" % (zero, overlap)
        run, p, ok = train(gpt_cfg, name, 2, ["train.zero=%d" % zero, "comm.overlap=" + overlap])
        if not ok:
            continue
        got = read_params(newest_checkpoint(run), GROUPS)
        rel = max_rel(ref, got)
        h.check(set(got) == set(ref) and rel < 5e-4,
                "%s: parameters and AdamW moments equal plain data parallel (max rel diff %.2e)"
                % (name, rel))
        loss = [r["loss"] for r in read_metrics(run) if "loss" in r]
        h.check(np.allclose(loss, ref_loss, rtol=1e-5), "%s: every logged loss equal" % name)
        s = read_summary(run)
        h.check(s["zero"] == zero and s["overlap"] == (overlap == "true"), "%s: summary records the mode" % name)
        h.check(0 <= s["comm_fraction"] <= 1 and s["comm_total_ms_median"] >= 0 and s["compute_ms_median"] > 0,
                "%s: summary splits compute, exposed and total communication" % name)
        # Loss, norm and clipping stay in backend memory: the host waits for the backend once
        # per step, at its end (what keeps a GPU step free of host synchronisation).
        h.check(s["host_waits_per_step"] == 1,
                "%s: the host waits for the backend once per step (got %s)" % (name, s["host_waits_per_step"]))

s0 = read_summary(h.path("gpt_z0_true"))
s1 = read_summary(h.path("gpt_z1_true"))
s2 = read_summary(h.path("gpt_z2_true"))
h.check(s1["optimizer_state_bytes"] * 2 == s0["optimizer_state_bytes"],
        "ZeRO-1 halves the optimizer state per rank on 2 ranks (%d -> %d bytes)"
        % (s0["optimizer_state_bytes"], s1["optimizer_state_bytes"]))
h.check(s2["gradient_bytes"] * 2 == s0["gradient_bytes"] and s1["gradient_bytes"] == s0["gradient_bytes"],
        "ZeRO-2 also halves the gradients kept per rank (%d -> %d bytes)"
        % (s0["gradient_bytes"], s2["gradient_bytes"]))
p = h.run(["train", gpt_cfg, "--run-dir", h.path("print"), "--set", "train.zero=1",
           "--set", "train.steps=1"], np=2, timeout=120)
h.check(p.returncode == 0 and "optimizer state" in p.stdout and "MB per rank" in p.stdout,
        "start-up prints the optimizer memory per rank")

# One rank with ZeRO-1 (the shard is everything) is plain training too.
run, p, ok = train(gpt_cfg, "gpt_z1_1rank", 1, ["train.zero=1"])
if ok:
    rel = max_rel(ref, read_params(newest_checkpoint(run), GROUPS))
    h.check(rel < 5e-4, "1 rank with ZeRO-1 equals 2 ranks plain (max rel diff %.2e)" % rel)

# MLP: AdamW and SGD with momentum, ZeRO-2 with overlap, against plain.
for opt in ("adamw", "sgd"):
    mcfg = h.write_config("mlp_%s.cfg" % opt, tiny_mlp_config(steps=20, batch=64, every=20).replace(
        'optimizer = "adamw"', 'optimizer = "%s"' % opt))
    groups = GROUPS if opt == "adamw" else ("params", "optim/momentum")
    a, _, ok1 = train(mcfg, "mlp_%s_z0" % opt, 2, ["comm.bucket_mb=0.02"])
    b, _, ok2 = train(mcfg, "mlp_%s_z2" % opt, 2, ["comm.bucket_mb=0.02", "train.zero=2"])
    if ok1 and ok2:
        rel = max_rel(read_params(newest_checkpoint(a), groups), read_params(newest_checkpoint(b), groups))
        h.check(rel < 5e-4, "mlp %s: ZeRO-2 equals plain (max rel diff %.2e)" % (opt, rel))

# A ZeRO-1 checkpoint saved on 2 ranks holds the full state: resumed on 1 rank and on 2 ranks
# (with ZeRO-1 and without), training continues as the uninterrupted run.
full_run, _, _ = train(gpt_cfg, "full_z1", 2, ["train.zero=1"])
full = read_params(newest_checkpoint(full_run), GROUPS)
part, _, ok = train(gpt_cfg, "part_z1", 2, ["train.zero=1"], ["--stop-at", "10"])
ck = newest_checkpoint(part)
h.check(ok and ck.endswith("ckpt_00000010.h5"), "ZeRO-1 run stopped at step 10 with a checkpoint")
saved = read_params(ck, GROUPS)
h.check(all(np.any(saved[k] != 0) for k in saved if k.startswith("optim/v/")),
        "the checkpoint holds every rank's optimizer shard (no zero tensors)")
for np_, zero in ((1, 0), (1, 1), (2, 1), (2, 0)):
    name = "resume_np%d_z%d" % (np_, zero)
    run = h.path(name)
    os.makedirs(os.path.join(run, "checkpoints"), exist_ok=True)
    p = h.run(["train", gpt_cfg, "--run-dir", run, "--resume", ck, "--set", "train.zero=%d" % zero],
              np=np_, timeout=300)
    if not h.check(p.returncode == 0 and "resumed from" in p.stdout, "%s: resumed" % name, p.stderr[-2000:]):
        continue
    rel = max_rel(full, read_params(newest_checkpoint(run), GROUPS))
    h.check(rel < 5e-4, "%s: final state equals the uninterrupted ZeRO-1 run (max rel diff %.2e)"
            % (name, rel))

# Ranks that disagree on what they reduce: stopped at start-up with a message, no hang.
env = dict(os.environ)
import subprocess
from tulpar_test import MPI_ENV
env.update(MPI_ENV)
env["OMP_NUM_THREADS"] = "1"
cmd = ["mpirun", "-np", "1", h.tulpar, "train", gpt_cfg, "--run-dir", h.path("bad"),
       "--set", "model.d_model=32", ":", "-np", "1", h.tulpar, "train", gpt_cfg, "--run-dir",
       h.path("bad"), "--set", "model.d_model=16"]
try:
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=h.tmp)
    out = p.stdout + p.stderr
    h.check(p.returncode != 0 and "ranks disagree on what they reduce" in out
            and "parameter count" in out, "different models on two ranks: clear start-up error",
            out[-2000:])
except subprocess.TimeoutExpired:
    h.check(False, "different models on two ranks: no hang")
cmd = [c if c != "model.d_model=16" else "comm.bucket_mb=0.02" for c in cmd]
cmd = [c if c != "model.d_model=32" else "comm.bucket_mb=0.01" for c in cmd]
try:
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=h.tmp)
    out = p.stdout + p.stderr
    h.check(p.returncode != 0 and "ranks disagree" in out and "bucket" in out,
            "different bucket sizes on two ranks: clear start-up error", out[-2000:])
except subprocess.TimeoutExpired:
    h.check(False, "different bucket sizes on two ranks: no hang")
h.finish()
