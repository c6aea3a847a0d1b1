"""End to end on the real Fashion-MNIST data: a short 2-rank MLP run learns (test accuracy well
above chance); eval, infer and ckpt inspect agree with it; the checkpoint is readable by h5py
and h5dump; a short CNN run works; a single process started without mpirun (and without
Open MPI's binaries on PATH) trains with the `self` communicator."""
import csv
import gzip
import os
import shutil
import subprocess

import numpy as np

from tulpar_test import FASHION, Harness, newest_checkpoint, read_metrics, read_summary

h = Harness("end_to_end")
cfg = os.path.join(h.source, "configs", "mlp_fashion.cfg")
run = h.path("mlp")
p = h.run(["train", cfg, "--run-dir", run, "--set", "train.epochs=1", "--set", "log.every=100",
           "--set", "checkpoint.every=200"], np=2, timeout=300)
h.check(p.returncode == 0, "2-rank MLP, 1 epoch", p.stderr[-2000:])
s = read_summary(run)
h.check(s["eval_accuracy"] > 0.80, "test accuracy %.4f > 0.80 after one epoch" % s["eval_accuracy"])
for key in ("model", "backend", "world_size", "threads_per_rank", "steps", "samples_per_s",
            "step_time_ms_median", "achieved_gflops", "comm_fraction", "final_train_loss",
            "eval_loss", "eval_accuracy", "wall_s", "core_hours"):
    h.check(key in s and s[key] is not None, "summary.json has %s" % key)
h.check(s["world_size"] == 2 and s["comm"] == "mpi" and s["steps"] == 468, "summary: 2 ranks, 468 steps")
h.check(0 < s["comm_fraction"] < 1 and s["samples_per_s"] > 0 and s["achieved_gflops"] > 0,
        "summary figures are measured and positive")
h.check(s.get("host_waits_per_step") == 1, "summary: the host waits for the backend once per step (got %s)"
        % s.get("host_waits_per_step"))
rows = read_metrics(run)
m = [r for r in rows if "loss" in r]
h.check(len(m) == 5 and all(k in m[0] for k in ("step", "loss", "lr", "samples_per_s", "step_ms", "comm_ms")),
        "metrics.jsonl: one row per logged step with the documented keys")
ev_rows = [r for r in rows if "eval_loss" in r]
h.check(len(ev_rows) == 1 and ev_rows[0]["step"] == 468 and abs(ev_rows[0]["eval_accuracy"] - s["eval_accuracy"]) < 1e-9,
        "metrics.jsonl: the final evaluation row")
h.check(os.path.exists(os.path.join(run, "config.cfg")), "resolved config saved in the run directory")
h.check("step 100/468" in p.stdout and "ETA" in p.stdout, "progress lines printed")
ck = newest_checkpoint(run)
h.check(ck.endswith("ckpt_00000468.h5"), "final checkpoint written")
h.check(len(os.listdir(os.path.join(run, "checkpoints"))) == 3, "checkpoint.keep = 3 bounds the files")

# eval on 2 ranks and on 1 rank reproduces the training run's figure
for np_ranks in (2, None):
    out = h.path("eval%s.json" % np_ranks)
    p = h.run(["eval", cfg, "--checkpoint", ck, "--output", out], np=np_ranks, timeout=120)
    h.check(p.returncode == 0, "eval on %s rank(s)" % (np_ranks or 1), p.stderr[-1500:])
    import json
    ev = json.load(open(out))
    h.check(abs(ev["accuracy"] - s["eval_accuracy"]) < 1e-9 and ev["examples"] == 10000,
            "eval accuracy %.4f equals the run's" % ev["accuracy"])

# infer: CSV of predictions consistent with the labels
out_csv = h.path("pred.csv")
p = h.run(["infer", cfg, "--checkpoint", ck, "--output", out_csv], np=2, timeout=120)
h.check(p.returncode == 0 and "images/s" in p.stdout, "infer on 2 ranks reports images/s", p.stderr[-1500:])
rows = list(csv.reader(open(out_csv)))
h.check(rows[0] == ["index", "predicted_class", "probability"] and len(rows) == 10001, "CSV has a header and 10000 rows")
with gzip.open(os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz")) as f:
    labels = np.frombuffer(f.read()[8:], dtype=np.uint8)
pred = np.array([int(r[1]) for r in rows[1:]])
prob = np.array([float(r[2]) for r in rows[1:]])
acc = float(np.mean(pred == labels))
h.check(abs(acc - s["eval_accuracy"]) < 1e-9, "CSV predictions give the same accuracy (%.4f)" % acc)
h.check(np.all((prob > 0.1) & (prob <= 1.0)), "probabilities in (0.1, 1]")

# ckpt inspect, h5py, h5dump
p = h.run(["ckpt", "inspect", ck], timeout=60)
h.check(p.returncode == 0, "ckpt inspect exits 0", p.stderr)
for needle in ("version 1", "params/fc1.weight", "[256,784]", "optim/m", "type = \"mlp\""):
    h.check(needle in p.stdout, "inspect shows %r" % needle)
import h5py
with h5py.File(ck, "r") as f:
    h.check(f.attrs["format"] in (b"tulpar-checkpoint", "tulpar-checkpoint") and int(f.attrs["step"]) == 468,
            "h5py reads format and step")
    h.check(f["params/fc1.weight"].shape == (256, 784), "h5py sees fc1.weight [256, 784]")
if shutil.which("h5dump"):
    d = subprocess.run(["h5dump", "-H", ck], capture_output=True, text=True)
    h.check(d.returncode == 0 and "fc1.weight" in d.stdout, "h5dump reads the checkpoint")

# a short CNN run, 2 ranks
cnn = os.path.join(h.source, "configs", "cnn_fashion.cfg")
p = h.run(["train", cnn, "--run-dir", h.path("cnn"), "--set", "train.steps=60", "--set", "log.every=20",
           "--set", "eval.batch=500"], np=2, timeout=300)
h.check(p.returncode == 0, "2-rank CNN, 60 steps", p.stderr[-2000:])
if p.returncode == 0:
    sc = read_summary(h.path("cnn"))
    h.check(sc["eval_accuracy"] > 0.6, "CNN learns: accuracy %.4f > 0.6 after 60 steps" % sc["eval_accuracy"])

# one process, no launcher, no Open MPI binaries on PATH: must not need orted
single = h.path("single")
p = h.run(["train", cfg, "--run-dir", single, "--set", "train.steps=30", "--set", "log.every=10"],
          timeout=120, env_extra={"PATH": "/nonexistent"})
h.check(p.returncode == 0, "single process without mpirun", p.stderr[-1500:])
if p.returncode == 0:
    ss = read_summary(single)
    h.check(ss["world_size"] == 1 and ss["comm"] == "self", "summary says 1 rank, comm self")
h.finish()
