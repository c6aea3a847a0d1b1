#!/usr/bin/env python3
"""Overlap benchmark: the gradient reduction hidden behind backward, measured by training.

Trains the GPT small shape (configs/gpt_small.cfg: 4 layers, d_model 128, seq_len 64, global
batch 12) on 2 ranks x 1 thread (mpirun -np 2) with comm.overlap = false and true, alternating
the two --repeat times so that machine noise falls on both, for each bucket size in --buckets,
and with ZeRO stages in --zero. Each run's summary.json gives the median step time and its
split into compute, exposed communication (the training thread waited) and communication in
flight (hidden or not). Prints one table and the ratio overlap-on / overlap-off step time per
bucket size (medians over the repeats), and writes JSON (--json).

    benchmarks/overlap.py --tulpar build/tulpar [--steps 120] [--repeat 3] \
        [--buckets 0.25,1,4] [--zero 0] [--json overlap.json]

Needs the KJV corpus (tools/corpus.sh -> data/kjv). Figures are ratios within one run (these
VMs are shared and noisy).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(tulpar, tmp, overlap, bucket, zero, steps, k):
    run_dir = os.path.join(tmp, "o%s_b%s_z%d_%d" % (overlap, bucket, zero, k))
    env = dict(os.environ)
    env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                "OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "self,vader", "OMP_NUM_THREADS": "1",
                "TULPAR_PROGRESS": "plain"})
    cmd = ["mpirun", "-np", "2", "--bind-to", "core", tulpar, "train",
           os.path.join(ROOT, "configs/gpt_small.cfg"), "--run-dir", run_dir,
           "--set", "train.steps=%d" % steps, "--set", "eval.at_end=false",
           "--set", "eval.every=0", "--set", "checkpoint.every=0", "--set", "log.every=%d" % steps,
           "--set", "runtime.threads=1", "--set", "comm.overlap=%s" % overlap,
           "--set", "comm.bucket_mb=%s" % bucket, "--set", "train.zero=%d" % zero]
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("run failed: %s\n%s" % (" ".join(cmd), p.stderr[-3000:]))
    with open(os.path.join(run_dir, "summary.json")) as f:
        s = json.load(f)
    return {k2: s[k2] for k2 in ("step_time_ms_median", "compute_ms_median", "comm_ms_median",
                                 "comm_total_ms_median", "comm_fraction", "n_buckets",
                                 "samples_per_s")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tulpar", default=os.path.join(ROOT, "build", "tulpar"))
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--buckets", default="0.25,1,4")
    ap.add_argument("--zero", default="0")
    ap.add_argument("--json")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(ROOT, "data/kjv/train.bin")):
        sys.exit("data/kjv is missing: run tools/corpus.sh first")
    buckets = a.buckets.split(",")
    zeros = [int(z) for z in a.zero.split(",")]
    res = {}
    with tempfile.TemporaryDirectory(prefix="tulpar-overlap-") as tmp:
        for k in range(a.repeat):
            for z in zeros:
                for b in buckets:
                    for ov in ("false", "true"):
                        res.setdefault((z, b, ov), []).append(run(a.tulpar, tmp, ov, b, z, a.steps, k))
    print("# GPT small shape, 2 ranks x 1 thread, %d steps, %d repeats (medians of per-run medians)"
          % (a.steps, a.repeat))
    print("%4s %9s %7s %8s | %9s %10s %13s %14s %9s" % (
        "zero", "bucket_mb", "buckets", "overlap", "step_ms", "compute_ms", "exposed_comm",
        "comm_in_flight", "on/off"))
    rows = []
    for z in zeros:
        for b in buckets:
            med = {}
            for ov in ("false", "true"):
                rs = res[(z, b, ov)]
                m = {key: statistics.median(r[key] for r in rs) for key in rs[0]}
                med[ov] = m
            ratio = med["true"]["step_time_ms_median"] / med["false"]["step_time_ms_median"]
            for ov in ("false", "true"):
                m = med[ov]
                print("%4d %9s %7d %8s | %9.2f %10.2f %13.2f %14.2f %9s" % (
                    z, b, m["n_buckets"], "on" if ov == "true" else "off",
                    m["step_time_ms_median"], m["compute_ms_median"], m["comm_ms_median"],
                    m["comm_total_ms_median"], "%.3f" % ratio if ov == "true" else ""))
                rows.append({"zero": z, "bucket_mb": float(b), "overlap": ov == "true",
                             "runs": res[(z, b, ov)], "median": m,
                             "overlap_on_over_off": ratio})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"benchmark": "overlap", "host": platform.node(), "model": "gpt_small",
                       "ranks": 2, "threads_per_rank": 1, "steps": a.steps, "repeat": a.repeat,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
