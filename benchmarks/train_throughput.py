#!/usr/bin/env python3
"""Training-throughput benchmark for the image classifiers (MLP, CNN).

For each model it measures, in the same run and on the same machine:
  * 1 rank x 2 threads (one process, OpenMP/BLAS threads) and
  * 2 ranks x 1 thread (mpirun -np 2, data parallel),
with the same global batch, and reports samples/s, the data-parallel efficiency
(2x1 samples/s over 1x2 samples/s: the same two cores used by ranks instead of threads) and
achieved GFLOP/s against the sgemm peak measured by `tulpar bench gemm` with 2 threads in the
same run. Each configuration is run --repeat times; the median is reported with min and max.

    benchmarks/train_throughput.py --tulpar build/tulpar [--repeat 3] [--json out.json]

Figures are ratios within one run: these VMs are shared and noisy, so compare nothing across
runs or machines (see ../shared/notes/MPI.md).
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

MODELS = {
    # name: (config, steps, global batch)
    "mlp": ("configs/mlp_fashion.cfg", 400, 128),
    "cnn": ("configs/cnn_fashion.cfg", 60, 128),
}


def env_for(threads):
    env = dict(os.environ)
    env.update({
        "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "self,vader",
        "OMP_NUM_THREADS": str(threads), "TULPAR_PROGRESS": "plain",
    })
    return env


def sgemm_peak(tulpar, threads, tmp):
    out = os.path.join(tmp, "gemm%d.json" % threads)
    subprocess.run([tulpar, "bench", "gemm", "--threads", str(threads), "--sizes", "512,1024,2048",
                    "--iters", "5", "--json", out], check=True, capture_output=True,
                   env=env_for(threads))
    with open(out) as f:
        return json.load(f)["peak_gflops"]


def train_once(tulpar, model, ranks, threads, tmp, idx):
    cfg, steps, batch = MODELS[model]
    run_dir = os.path.join(tmp, "%s-%dx%d-%d" % (model, ranks, threads, idx))
    args = [tulpar, "train", os.path.join(ROOT, cfg), "--run-dir", run_dir,
            "--set", "train.steps=%d" % steps, "--set", "train.batch=%d" % batch,
            "--set", "eval.at_end=false", "--set", "log.every=%d" % steps,
            "--set", "runtime.threads=%d" % threads]
    if ranks > 1:
        args = ["mpirun", "-np", str(ranks), "--bind-to", "none"] + args
    p = subprocess.run(args, capture_output=True, text=True, env=env_for(threads))
    if p.returncode != 0:
        sys.exit("benchmark run failed: %s\n%s" % (" ".join(args), p.stderr[-2000:]))
    with open(os.path.join(run_dir, "summary.json")) as f:
        return json.load(f)


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tulpar", default=os.path.join(ROOT, "build", "tulpar"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--json", default="train_throughput.json")
    a = ap.parse_args()
    tulpar = os.path.abspath(a.tulpar)
    tmp = tempfile.mkdtemp(prefix="tulpar-bench-")
    peak1 = sgemm_peak(tulpar, 1, tmp)
    peak2 = sgemm_peak(tulpar, 2, tmp)
    report = {"benchmark": "train_throughput", "host": platform.node(),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "sgemm_peak_gflops": {"1_thread": peak1, "2_threads": peak2},
              "repeat": a.repeat, "models": {}}
    print("# sgemm peak: %.1f GFLOP/s (1 thread), %.1f GFLOP/s (2 threads)" % (peak1, peak2))
    print("# %-5s %-12s %12s %12s %10s %10s %8s %8s" % (
        "model", "layout", "samples/s", "(min-max)", "step ms", "GFLOP/s", "%peak", "comm%"))
    for model in a.models.split(","):
        entry = {}
        for ranks, threads in ((1, 2), (2, 1)):
            runs = [train_once(tulpar, model, ranks, threads, tmp, i) for i in range(a.repeat)]
            sps = stats([r["samples_per_s"] for r in runs])
            gf = stats([r["achieved_gflops"] for r in runs])
            step = stats([r["step_time_ms_median"] for r in runs])
            comm = stats([r["comm_fraction"] for r in runs])
            key = "%dx%d" % (ranks, threads)
            entry[key] = {"ranks": ranks, "threads_per_rank": threads, "samples_per_s": sps,
                          "achieved_gflops": gf, "step_time_ms": step, "comm_fraction": comm,
                          "fraction_of_sgemm_peak": gf["median"] / peak2}
            print("  %-5s %-12s %12.0f %5.0f-%-6.0f %10.2f %10.1f %7.1f%% %7.1f%%" % (
                model, "%d rank x %d thr" % (ranks, threads), sps["median"], sps["min"],
                sps["max"], step["median"], gf["median"], 100 * gf["median"] / peak2,
                100 * comm["median"]))
        eff = entry["2x1"]["samples_per_s"]["median"] / entry["1x2"]["samples_per_s"]["median"]
        entry["data_parallel_efficiency"] = eff
        report["models"][model] = entry
        print("  %-5s data-parallel efficiency (2x1 vs 1x2 samples/s): %.3f" % (model, eff))
    with open(a.json, "w") as f:
        json.dump(report, f, indent=2)
    print("# wrote %s" % a.json)


if __name__ == "__main__":
    main()
