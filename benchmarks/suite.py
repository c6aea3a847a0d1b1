#!/usr/bin/python3
"""Tulpar benchmark suite: one command for the figures a machine is judged by.

    tulpar bench suite [--quick] [--out DIR] [--ranks 1,2,4] [--repeats N] ...
    (or: /usr/bin/python3 benchmarks/suite.py --tulpar build/tulpar [same options])

Measures, in one run on the machine (or Slurm allocation) it is given:
  1. collectives: `tulpar bench allreduce|reducescatter|allgather --json` (nccl-tests columns)
     at the largest rank count and at 2 ranks, 8 B to 64 MiB (--quick: 4 MiB);
  2. training throughput of the reference models (MLP, CNN, small GPT, GPT-2 124M shape) at each
     rank count, weak scaling (fixed per-rank batch) and strong scaling (fixed global batch),
     with efficiency, from `tulpar train` (summary.json, metrics.jsonl);
  3. checkpoint write and read bandwidth (`tulpar bench ckpt`: the trainer's HDF5 writer
     against write(2)+fsync and read(2) of the same bytes on the same disk, same run);
  4. inference: `tulpar infer` images/s and `tulpar generate` generated tokens/s from
     checkpoints written by the training runs.
Every measurement is repeated (--repeats, default 5; --quick 2) and reported as median, min and
max. From the measurements only: cost figures (device-hours per 1e9 training tokens, per epoch,
per 1e6 generated tokens) and a prediction (alpha-beta model of ring and tree all-reduce) of
data-parallel efficiency at 8, 64 and 512 devices. Writes DIR/report.json (schema in
benchmarks/README.md), DIR/report.csv and DIR/report.html (self-contained, plots inline).
"""
import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

SCHEMA_VERSION = 1
FASHION_DEFAULT = "/usr/share/datasets/fashion-mnist"
EPOCH_SAMPLES = 60000  # Fashion-MNIST training set
COLLECTIVES = ("allreduce", "reducescatter", "allgather")
PREDICT_AT = (8, 64, 512)
ALL_SECTIONS = ("collectives", "training", "checkpoint", "inference")

# Reference models. batch: per-rank batch of the weak-scaling series; the strong series keeps the
# global batch at batch x the largest rank count (micro-batch `batch` with gradient
# accumulation on fewer ranks). steps: optimizer steps per run (throughput comes from the run's
# median step time, so the first, slower steps do not count).
MODELS = {
    "mlp": dict(config="configs/mlp_fashion.cfg", kind="classifier",
                label="MLP 784-256-128-10 (Fashion-MNIST)",
                quick=dict(batch=64, steps=100), full=dict(batch=64, steps=500)),
    "cnn": dict(config="configs/cnn_fashion.cfg", kind="classifier",
                label="CNN conv32-conv64-fc128 (Fashion-MNIST)",
                quick=dict(batch=64, steps=12), full=dict(batch=64, steps=100)),
    "gpt_small": dict(config="configs/gpt_small.cfg", kind="gpt",
                      label="small GPT 4x4x128, context 64, byte-level",
                      quick=dict(batch=6, steps=20), full=dict(batch=6, steps=200)),
    "gpt2_124m": dict(config="configs/gpt2_124m.cfg", kind="gpt",
                      label="GPT-2 124M shape 12x12x768, vocab 50257 (random tokens)",
                      quick=dict(batch=1, steps=3, seq_len=64),
                      full=dict(batch=1, steps=6, seq_len=1024),
                      full_cuda=dict(batch=4, steps=20, seq_len=1024),
                      no_inference="`tulpar generate` serves byte-level GPTs (vocab 256) only; "
                                   "generation with GPT-2 tokens needs a tokenizer"),
}
GEN = dict(quick=dict(prompts=4, tokens=32), full=dict(prompts=16, tokens=128))
PROMPTS = ["And God said", "In the beginning", "The data-parallel runtime", "Blessed are",
           "A national supercomputer", "And it came to pass", "Gradients are averaged",
           "Let there be light"]


class SuiteError(Exception):
    """A failure with a message for the user and an exit status (2: bad arguments)."""

    def __init__(self, msg, status=1):
        super().__init__(msg)
        self.status = status


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stats(values):
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals), "values": vals}


def parse_ranks(text):
    try:
        ranks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SuiteError("--ranks: want a comma-separated list of rank counts, got %r" % text, 2)
    if not ranks or ranks[0] < 1:
        raise SuiteError("--ranks: rank counts must be >= 1, got %r" % text, 2)
    return ranks


def cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def read_first(cmd, timeout=20):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    out = (p.stdout or p.stderr).strip()
    return out or None


# ---- machine and library versions ------------------------------------------------------------


def machine_info():
    cpu_model = None
    sockets = set()
    physical = set()
    try:
        with open("/proc/cpuinfo") as f:
            cur_phys = None
            for line in f:
                k, _, v = line.partition(":")
                k, v = k.strip(), v.strip()
                if k == "model name" and not cpu_model:
                    cpu_model = v
                elif k == "physical id":
                    cur_phys = v
                    sockets.add(v)
                elif k == "core id":
                    physical.add((cur_phys, v))
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    gpus = []
    if shutil.which("nvidia-smi"):
        out = read_first(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"])
        for line in (out or "").splitlines():
            parts = [p.strip() for p in line.split(",")]
            if parts and parts[0]:
                gpus.append({"name": parts[0], "memory": parts[1] if len(parts) > 1 else None})
    slurm = {k: os.environ.get(k) for k in ("SLURM_JOB_ID", "SLURM_JOB_NODELIST",
                                            "SLURM_JOB_NUM_NODES", "SLURM_NTASKS",
                                            "SLURM_CPUS_PER_TASK", "SLURM_JOB_PARTITION")}
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model or platform.processor() or platform.machine(),
        "architecture": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": cores(),
        "physical_cores": len(physical) or None,
        "sockets": len(sockets) or None,
        "memory_bytes": mem,
        "gpu_count": len(gpus),
        "gpus": gpus,
        "kernel": platform.release(),
        "os": _os_release(),
        "slurm": {k: v for k, v in slurm.items() if v is not None} or None,
    }


def _os_release():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def _ctypes_version(libs, func):
    import ctypes
    for lib in libs:
        try:
            h = ctypes.CDLL(lib)
            v = ctypes.c_int(0)
            if getattr(h, func)(ctypes.byref(v)) == 0:
                return v.value
        except (OSError, AttributeError):
            continue
    return None


def library_versions(tulpar, backends):
    v = {"tulpar": None, "tulpar_backends": backends, "mpi": None, "hdf5": None,
         "nccl": None, "cuda_driver": None, "cuda_runtime": None, "openblas": None,
         "python": platform.python_version(), "matplotlib": None, "git_commit": None,
         "sources": {}}
    out = read_first([tulpar, "--version"])
    if out:
        m = re.match(r"tulpar (\S+)", out)
        v["tulpar"] = m.group(1) if m else out
    mpi = read_first(["mpirun", "--version"]) if shutil.which("mpirun") else None
    if mpi:
        v["mpi"] = mpi.splitlines()[0]
        v["sources"]["mpi"] = "mpirun --version (replaced by summary.json comm_library when a " \
                              "multi-rank run reports it)"
    h5 = read_first(["h5dump", "--version"]) if shutil.which("h5dump") else None
    if h5:
        m = re.search(r"Version\s+(\S+)", h5)
        v["hdf5"] = m.group(1) if m else h5
        v["sources"]["hdf5"] = "h5dump --version"
    if "cuda" in (backends or ""):
        n = _ctypes_version(["libnccl.so.2", "libnccl.so"], "ncclGetVersion")
        if n:
            major, rest = (n // 10000, n % 10000) if n >= 10000 else (n // 1000, n % 1000)
            v["nccl"] = "%d.%d.%d" % (major, rest // 100, rest % 100)
            v["sources"]["nccl"] = "ncclGetVersion"
        r = _ctypes_version(["libcudart.so", "libcudart.so.12", "libcudart.so.11.0"],
                            "cudaRuntimeGetVersion")
        if r:
            v["cuda_runtime"] = "%d.%d" % (r // 1000, (r % 1000) // 10)
    if shutil.which("nvidia-smi"):
        out = read_first(["nvidia-smi"])
        m = re.search(r"CUDA Version:\s*([\d.]+)", out or "")
        if m:
            v["cuda_driver"] = m.group(1)
        m = re.search(r"Driver Version:\s*([\d.]+)", out or "")
        if m:
            v["nvidia_driver"] = m.group(1)
    try:
        import matplotlib
        v["matplotlib"] = matplotlib.__version__
    except ImportError:
        pass
    if os.path.isdir(os.path.join(ROOT, ".git")) and shutil.which("git"):
        c = read_first(["git", "-C", ROOT, "rev-parse", "HEAD"])
        if c:
            v["git_commit"] = c
            p = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--"],
                               capture_output=True)
            v["git_dirty"] = p.returncode == 1
    return v


# ---- the suite -------------------------------------------------------------------------------


class Suite:
    def __init__(self, a):
        self.a = a
        self.t0 = time.time()
        self.tulpar = os.path.abspath(a.tulpar)
        if not os.access(self.tulpar, os.X_OK):
            raise SuiteError("--tulpar %s is not an executable" % a.tulpar, 2)
        self.mode = "quick" if a.quick else "full"
        self.repeats = a.repeats if a.repeats is not None else (2 if a.quick else 5)
        if self.repeats < 1:
            raise SuiteError("--repeats must be >= 1", 2)
        self.in_slurm = bool(os.environ.get("SLURM_JOB_ID"))
        self.launcher = a.launcher
        if self.launcher == "auto":
            self.launcher = "srun" if self.in_slurm and shutil.which("srun") else "mpirun"
        if self.launcher == "srun" and not shutil.which("srun"):
            raise SuiteError("--launcher srun: srun is not on PATH", 2)
        if self.launcher == "mpirun" and not shutil.which("mpirun"):
            raise SuiteError("--launcher mpirun: mpirun is not on PATH (Debian: openmpi-bin)", 2)
        self.srun_mpi = os.environ.get("TULPAR_SRUN_MPI", "pmix")
        ver = read_first([self.tulpar, "--version"]) or ""
        m = re.search(r"backends: ([^)]*)", ver)
        self.backends = m.group(1) if m else ""
        self.gpu_count = 0
        if shutil.which("nvidia-smi"):
            out = read_first(["nvidia-smi", "-L"]) or ""
            self.gpu_count = sum(1 for l in out.splitlines() if l.startswith("GPU "))
        self.backend = a.backend
        if self.backend == "auto":
            self.backend = "cuda" if "cuda" in self.backends and self.gpu_count > 0 else "cpu"
        if self.backend == "cuda" and "cuda" not in self.backends:
            raise SuiteError("--backend cuda: this tulpar was built without CUDA (backends: %s)"
                             % (self.backends or "?"), 2)
        self.device_kind = "GPU" if self.backend == "cuda" else "CPU core"
        if a.ranks:
            self.ranks = parse_ranks(a.ranks)
        elif self.in_slurm and os.environ.get("SLURM_NTASKS"):
            n = int(os.environ["SLURM_NTASKS"])
            self.ranks = [1 << k for k in range(n.bit_length()) if (1 << k) <= n]
        elif self.backend == "cuda" and self.gpu_count > 1:
            self.ranks = [1 << k for k in range(self.gpu_count.bit_length())
                          if (1 << k) <= self.gpu_count]
        else:
            self.ranks = [1, 2]
        if self.in_slurm and self.launcher == "srun" and os.environ.get("SLURM_NTASKS"):
            if self.ranks[-1] > int(os.environ["SLURM_NTASKS"]):
                raise SuiteError("--ranks %s: the allocation has only %s tasks"
                                 % (a.ranks, os.environ["SLURM_NTASKS"]), 2)
        self.models = [m.strip() for m in a.models.split(",") if m.strip()]
        for m in self.models:
            if m not in MODELS:
                raise SuiteError("--models: unknown model %r (have %s)" % (m, ",".join(MODELS)), 2)
        self.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
        for s in self.sections:
            if s not in ALL_SECTIONS:
                raise SuiteError("--sections: unknown section %r (have %s)"
                                 % (s, ",".join(ALL_SECTIONS)), 2)
        if a.threads_per_rank is not None and a.threads_per_rank < 1:
            raise SuiteError("--threads-per-rank must be >= 1", 2)
        self.fashion = a.fashion_dir
        if "training" in self.sections and any(MODELS[m]["kind"] == "classifier"
                                               for m in self.models):
            if not any(os.path.exists(os.path.join(self.fashion, f)) for f in
                       ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz")):
                raise SuiteError("Fashion-MNIST not found in %s (Debian: apt-get install "
                                 "dataset-fashion-mnist; or --fashion-dir DIR; or --models "
                                 "without mlp,cnn)" % self.fashion, 2)
        if a.ckpt_dir and not os.path.isdir(a.ckpt_dir):
            raise SuiteError("--ckpt-dir %s is not a directory" % a.ckpt_dir, 2)
        if any(os.environ.get(k) for k in ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK")):
            raise SuiteError("started as an MPI rank: run `tulpar bench suite` directly (or in "
                             "a batch script); it launches its own ranks", 2)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.out = os.path.abspath(a.out or os.path.join("runs", "bench-suite-" + stamp))
        if os.path.exists(os.path.join(self.out, "report.json")):
            raise SuiteError("--out %s already holds a report.json; choose another directory"
                             % self.out, 2)
        for d in ("", "raw", "logs", "runs", "data"):
            os.makedirs(os.path.join(self.out, d), exist_ok=True)
        self.ckpt_dir = os.path.abspath(a.ckpt_dir or self.out)
        self.ckpt_bytes = a.ckpt_bytes or ((48 << 20) if a.quick else (512 << 20))
        self.notes = []
        self.measurements = []
        self.report = {}
        self.n_cmd = 0

    # -- helpers ---------------------------------------------------------------------------

    def log(self, msg):
        print("[%7.1fs] %s" % (time.time() - self.t0, msg), flush=True)

    def threads(self, n):
        if self.a.threads_per_rank:
            return self.a.threads_per_rank
        if self.launcher == "srun":
            return int(os.environ.get("SLURM_CPUS_PER_TASK") or 1)
        return max(1, cores() // n)

    def devices(self, n, threads):
        return n if self.backend == "cuda" else n * threads

    def env(self, threads):
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = str(threads)
        env["TULPAR_PROGRESS"] = "plain"
        if self.launcher == "mpirun":
            if os.geteuid() == 0:
                env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
                env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            # One node: shared memory only (user settings win).
            if "OMPI_MCA_pml" not in env and "OMPI_MCA_btl" not in env:
                env["OMPI_MCA_pml"] = "ob1"
                env["OMPI_MCA_btl"] = "self,vader"
        return env

    def launch(self, n, threads, argv):
        if self.launcher == "srun":
            return ["srun", "--mpi=%s" % self.srun_mpi, "-n", str(n), "-c", str(threads),
                    "--kill-on-bad-exit=1"] + argv
        if n == 1:
            return argv  # one process, the "self" communicator: no MPI launcher needed
        cmd = ["mpirun", "-np", str(n), "--bind-to", "none"]
        if n > cores():
            cmd.append("--oversubscribe")
        return cmd + argv

    def run(self, tag, cmd, env, timeout=None):
        """Run a command in its own process group; stdout/stderr go to logs/TAG.{out,err}.
        A non-zero exit or a timeout stops the suite with the command and its error tail."""
        self.n_cmd += 1
        timeout = timeout or self.a.timeout
        logs = os.path.join(self.out, "logs", tag)
        with open(logs + ".cmd", "w") as f:
            f.write(" ".join(cmd) + "\n")
        try:
            p = subprocess.Popen(cmd, env=env, cwd=self.out, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, errors="replace",
                                 start_new_session=True)
        except OSError as e:
            raise SuiteError("cannot run %s: %s" % (cmd[0], e))
        try:
            out, err = p.communicate(timeout=timeout)
        except (subprocess.TimeoutExpired, KeyboardInterrupt) as e:
            self._kill(p)
            out, err = p.communicate()
            if isinstance(e, KeyboardInterrupt):
                raise
            raise SuiteError("timed out after %d s (--timeout): %s\n%s" % (
                timeout, " ".join(cmd), (err or "")[-2000:]))
        with open(logs + ".out", "w") as f:
            f.write(out)
        with open(logs + ".err", "w") as f:
            f.write(err)
        if p.returncode != 0:
            raise SuiteError("failed (exit %d): %s\n%s\n(logs: %s.out/.err)" % (
                p.returncode, " ".join(cmd), (err.strip() or out.strip())[-3000:], logs))
        return out, err

    @staticmethod
    def _kill(p):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                return
            try:
                p.wait(timeout=10)
                return
            except subprocess.TimeoutExpired:
                continue

    def measure(self, section, name, ranks, metric, st, unit, key=True):
        if st is None:
            return
        self.measurements.append({"section": section, "name": name, "ranks": ranks,
                                  "metric": metric, "median": st["median"], "min": st["min"],
                                  "max": st["max"], "unit": unit, "key": key})

    # -- 1. collectives --------------------------------------------------------------------

    def collectives(self):
        top = self.ranks[-1]
        sec = {"rank_counts": [], "max_bytes": None, "iters": None, "warmup": None,
               "comm": "nccl" if self.backend == "cuda" else "host", "results": {}}
        if top < 2:
            self.notes.append("collectives skipped: the largest rank count is 1")
            self.report["collectives"] = sec
            return
        counts = sorted({2, top})
        max_b = "4M" if self.a.quick else "64M"
        iters, warm = (5, 2) if self.a.quick else (20, 5)
        sec.update(rank_counts=counts, max_bytes=4 << 20 if self.a.quick else 64 << 20,
                   iters=iters, warmup=warm)
        for coll in COLLECTIVES:
            sec["results"][coll] = {}
            for n in counts:
                runs = []
                for r in range(self.repeats):
                    js = os.path.join(self.out, "raw", "%s-n%d-r%d.json" % (coll, n, r))
                    argv = [self.tulpar, "bench", coll, "-b", "8", "-e", max_b, "-f", "2",
                            "-n", str(iters), "-w", str(warm), "-c", "1", "--json", js]
                    if self.backend == "cuda":
                        argv += ["--comm", "nccl"]
                    self.run("%s-n%d-r%d" % (coll, n, r), self.launch(n, 1, argv), self.env(1))
                    with open(js) as f:
                        runs.append(json.load(f))
                agg = self._agg_coll(runs)
                sec["results"][coll][str(n)] = agg
                self.log("collective %s on %d ranks: avg busbw %.3f GB/s (median of %d), "
                         "largest size %.3f GB/s" % (coll, n, agg["avg_busbw"]["median"],
                                                     self.repeats,
                                                     agg["rows"][-1]["ip"]["busbw"]["median"]))
                name = "%s" % coll
                self.measure("collectives", name, n, "avg_busbw", agg["avg_busbw"], "GB/s")
                last = agg["rows"][-1]
                self.measure("collectives", name, n, "busbw_%dB" % last["size"],
                             last["ip"]["busbw"], "GB/s")
                for row in agg["rows"]:
                    self.measure("collectives", name, n, "busbw_ip_%dB" % row["size"],
                                 row["ip"]["busbw"], "GB/s", key=False)
                    self.measure("collectives", name, n, "time_ip_%dB" % row["size"],
                                 row["ip"]["time_us"], "us", key=False)
        self.report["collectives"] = sec

    @staticmethod
    def _agg_coll(runs):
        rows = []
        first = runs[0]
        for i, r0 in enumerate(first["rows"]):
            row = {k: r0[k] for k in ("size", "count", "type", "redop", "root")}
            for mode in ("oop", "ip"):
                row[mode] = {k: stats([r["rows"][i][mode][k] for r in runs])
                             for k in ("time_us", "algbw", "busbw")}
                wrong = [r["rows"][i][mode]["wrong"] for r in runs]
                row[mode]["wrong"] = None if any(w is None for w in wrong) else sum(wrong)
            mpi = [r["rows"][i].get("mpi") for r in runs]
            row["mpi_busbw"] = stats([m["busbw"] for m in mpi if m]) if all(mpi) else None
            rows.append(row)
        return {"collective": first["collective"], "ranks": first["ranks"],
                "comm": first["comm"], "memory": first["memory"], "dtype": first["dtype"],
                "op": first["op"], "rows": rows,
                "avg_busbw": stats([r["avg_busbw"] for r in runs])}

    # -- 2. training ------------------------------------------------------------------------

    def prepare_data(self, model):
        if model == "gpt_small":
            kjv = os.path.join(ROOT, "data", "kjv")
            if os.path.exists(os.path.join(kjv, "train.bin")) and \
                    os.path.exists(os.path.join(kjv, "val.bin")):
                return kjv, "data/kjv (King James Bible, tools/corpus.sh)"
            d = os.path.join(self.out, "data", "text")
            if not os.path.exists(os.path.join(d, "train.bin")):
                src = os.path.join(ROOT, "tests", "data", "sample_multilingual.txt")
                self.run("data-prepare", [self.tulpar, "data", "prepare", "--input", src,
                                          "--output", d], self.env(1))
            self.notes.append("gpt_small trains on tests/data/sample_multilingual.txt (data/kjv "
                              "is missing; tools/corpus.sh prepares it); throughput does not "
                              "depend on the text")
            return d, "tests/data/sample_multilingual.txt via tulpar data prepare"
        if model == "gpt2_124m":
            d = os.path.join(self.out, "data", "gpt2")
            os.makedirs(d, exist_ok=True)
            import numpy as np
            rng = np.random.default_rng(0)
            for name, n in (("train.bin", 1 << 20), ("val.bin", 1 << 16)):
                path = os.path.join(d, name)
                if os.path.exists(path):
                    continue
                header = np.zeros(256, np.int32)
                header[:3] = (20240520, 1, n)  # llm.c shard: magic, version, token count
                with open(path, "wb") as f:
                    f.write(header.tobytes())
                    f.write(rng.integers(0, 50257, n).astype(np.uint16).tobytes())
            return d, "random GPT-2 token ids in llm.c's shard format (speed only)"
        return self.fashion, "Fashion-MNIST IDX files"

    def model_spec(self, model):
        m = MODELS[model]
        key = self.mode
        if self.mode == "full" and self.backend == "cuda" and "full_cuda" in m:
            key = "full_cuda"
        return dict(m[key])

    def train_configs(self, model):
        """Distinct (ranks, global batch, grad_accum) runs of the weak and strong series."""
        spec = self.model_spec(model)
        b, top = spec["batch"], self.ranks[-1]
        series = {"weak": [], "strong": []}
        for n in self.ranks:
            series["weak"].append((n, b * n, 1))
            if top % n == 0:
                series["strong"].append((n, b * top, top // n))
            else:
                self.notes.append("%s strong scaling: %d ranks skipped (global batch %d is not a "
                                  "multiple of %d ranks x micro-batch %d)" % (model, n, b * top,
                                                                              n, b))
        distinct = []
        for s in ("weak", "strong"):
            for c in series[s]:
                if c not in distinct:
                    distinct.append(c)
        return spec, series, distinct

    def training(self):
        sec = {"models": {}, "throughput_from": "global batch / median step time of each run "
               "(summary.json step_time_ms_median), so warm-up steps do not count"}
        self.keep_ckpt = {}
        plans = {}
        for model in self.models:
            data_dir, data_desc = self.prepare_data(model)
            spec, series, distinct = self.train_configs(model)
            plans[model] = (data_dir, data_desc, spec, series, distinct)
        results = {m: {c: [] for c in plans[m][4]} for m in self.models}
        # Repeats outermost: drift in the machine's load falls on every configuration.
        for r in range(self.repeats):
            for model in self.models:
                data_dir, _, spec, series, distinct = plans[model]
                for cfg in distinct:
                    results[model][cfg].append(self.train_once(model, spec, data_dir, cfg, r))
        for model in self.models:
            data_dir, data_desc, spec, series, distinct = plans[model]
            sec["models"][model] = self._agg_model(model, spec, data_desc, series,
                                                   results[model])
        self.report["training"] = sec

    def train_once(self, model, spec, data_dir, cfg, r):
        n, gbatch, accum = cfg
        t = self.threads(n)
        tag = "train-%s-n%d-b%d-a%d-r%d" % (model, n, gbatch, accum, r)
        run_dir = os.path.join(self.out, "runs", tag[len("train-"):])
        sets = {"train.steps": spec["steps"], "train.batch": gbatch, "train.grad_accum": accum,
                "eval.at_end": "false", "eval.every": 0, "checkpoint.every": 0,
                "checkpoint.keep": 1, "log.every": 1, "runtime.threads": t,
                "runtime.backend": '"%s"' % self.backend}
        sets["data.dir"] = '"%s"' % data_dir
        if model == "gpt2_124m":
            sets.update({"data.train": '"train.bin"', "data.val": '"val.bin"',
                         "model.seq_len": spec["seq_len"], "train.warmup_steps": 0})
        argv = [self.tulpar, "train", os.path.join(ROOT, MODELS[model]["config"]),
                "--run-dir", run_dir]
        for k, v in sets.items():
            argv += ["--set", "%s=%s" % (k, v)]
        self.run(tag, self.launch(n, t, argv), self.env(t))
        with open(os.path.join(run_dir, "summary.json")) as f:
            s = json.load(f)
        curve = []
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            for line in f:
                row = json.loads(line)
                if "loss" in row and "eval_loss" not in row:
                    curve.append([row["step"], row["loss"]])
        sps = gbatch * 1000.0 / s["step_time_ms_median"]
        self.log("train %-9s %-2d rank(s) x %d thr, batch %d (accum %d), repeat %d/%d: "
                 "%.4g samples/s, step %.1f ms" % (model, n, t, gbatch, accum, r + 1,
                                                   self.repeats, sps, s["step_time_ms_median"]))
        ck = s.get("last_checkpoint")
        keep = r == 0 and n == self.ranks[0] and accum == 1 and "inference" in self.sections \
            and "no_inference" not in MODELS[model]
        if keep and ck:
            self.keep_ckpt[model] = {"checkpoint": os.path.join(run_dir, "checkpoints",
                                                                os.path.basename(ck)),
                                     "config": os.path.join(run_dir, "config.cfg")}
        else:
            shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)
        if s.get("comm_library") and n > 1:
            self.comm_library = s["comm_library"]
        return {"summary": s, "samples_per_s": sps, "threads": t, "loss_curve": curve,
                "run_dir": os.path.relpath(run_dir, self.out)}

    def _agg_model(self, model, spec, data_desc, series, res):
        any_run = next(iter(res.values()))[0]["summary"]
        out = {"label": MODELS[model]["label"], "config": MODELS[model]["config"],
               "kind": MODELS[model]["kind"], "params": any_run.get("params"),
               "tokens_per_sample": any_run.get("tokens_per_sample", 1),
               "flops_per_sample": any_run.get("flops_per_sample"),
               "steps": spec["steps"], "per_rank_batch_weak": spec["batch"],
               "global_batch_strong": spec["batch"] * self.ranks[-1],
               "seq_len": spec.get("seq_len"), "data": data_desc, "series": {}}
        if model == "gpt2_124m" and spec.get("seq_len") != 1024:
            out["note"] = ("context %d instead of 1024 (--quick): throughput and cost are for "
                           "this shorter context" % spec["seq_len"])
            self.notes.append("gpt2_124m: " + out["note"])
        for name, cfgs in series.items():
            pts = []
            base = None
            for cfg in cfgs:
                runs = res[cfg]
                n, gbatch, accum = cfg
                t = runs[0]["threads"]
                dev = self.devices(n, t)
                tps = out["tokens_per_sample"] or 1
                pt = {"ranks": n, "threads_per_rank": t, "devices": dev,
                      "global_batch": gbatch, "grad_accum": accum,
                      "micro_batch": gbatch // (n * accum),
                      "samples_per_s": stats([r["samples_per_s"] for r in runs]),
                      "tokens_per_s": stats([r["samples_per_s"] * tps for r in runs]),
                      "step_time_ms": stats([r["summary"]["step_time_ms_median"] for r in runs]),
                      "compute_ms": stats([r["summary"].get("compute_ms_median")
                                           for r in runs]),
                      "comm_fraction": stats([r["summary"].get("comm_fraction") for r in runs]),
                      "achieved_gflops": stats([(r["summary"].get("flops_per_sample") or 0)
                                                * r["samples_per_s"] / 1e9 for r in runs]),
                      "summary_samples_per_s": stats([r["summary"].get("samples_per_s")
                                                      for r in runs]),
                      "final_train_loss": stats([r["summary"].get("final_train_loss")
                                                 for r in runs]),
                      "peak_rss_bytes": stats([r["summary"].get("peak_rss_bytes")
                                               for r in runs]),
                      "loss_curve": runs[0]["loss_curve"],
                      "run_dirs": [r["run_dir"] for r in runs]}
                if base is None:
                    base = (pt, runs)
                # Per-device throughput relative to the series' first (smallest) rank count;
                # repeats paired by index (they ran interleaved).
                b_pt, b_runs = base
                pt["efficiency"] = stats([
                    (r["samples_per_s"] / dev) / (br["samples_per_s"] / b_pt["devices"])
                    for r, br in zip(runs, b_runs)])
                pts.append(pt)
                label = "%s %s" % (model, name)
                self.measure("training", label, n, "samples_per_s", pt["samples_per_s"],
                             "samples/s")
                if MODELS[model]["kind"] == "gpt":
                    self.measure("training", label, n, "tokens_per_s", pt["tokens_per_s"],
                                 "tokens/s")
                self.measure("training", label, n, "step_time_ms", pt["step_time_ms"], "ms")
                self.measure("training", label, n, "efficiency", pt["efficiency"], "ratio")
                self.measure("training", label, n, "achieved_gflops", pt["achieved_gflops"],
                             "GFLOP/s", key=False)
                self.measure("training", label, n, "comm_fraction", pt["comm_fraction"],
                             "ratio", key=False)
            out["series"][name] = pts
        return out

    # -- 3. checkpoint bandwidth -------------------------------------------------------------

    def checkpoint(self):
        js = os.path.join(self.out, "raw", "ckpt.json")
        argv = [self.tulpar, "bench", "ckpt", "--bytes", str(self.ckpt_bytes), "--dir",
                self.ckpt_dir, "--repeat", str(self.repeats), "--json", js]
        self.run("bench-ckpt", argv, self.env(1))
        with open(js) as f:
            j = json.load(f)
        runs = j["runs"]
        sec = {"dir": self.ckpt_dir, "bytes": j["bytes"], "hdf5_file_bytes": j["hdf5_file_bytes"],
               "tensors": j["tensors"], "filesystem": _filesystem(self.ckpt_dir),
               "method": "tulpar bench ckpt: HDF5 checkpoint through the trainer's writer (tmp "
                         "file, fsync, rename, directory fsync) and reader (crc32 checked) "
                         "against write(2)+fsync / read(2) of the same bytes in 8 MiB chunks; "
                         "page cache dropped before reads (posix_fadvise)",
               "resident_before_read": stats([max(r["hdf5_read_resident_fraction"],
                                                  r["plain_read_resident_fraction"])
                                              for r in runs])}
        for k in ("hdf5_write", "hdf5_read", "plain_write", "plain_read"):
            sec[k + "_GBps"] = stats([r[k + "_GBps"] for r in runs])
            self.measure("checkpoint", k, 1, "bandwidth", sec[k + "_GBps"], "GB/s")
        sec["write_ratio"] = stats([r["hdf5_write_GBps"] / r["plain_write_GBps"] for r in runs])
        sec["read_ratio"] = stats([r["hdf5_read_GBps"] / r["plain_read_GBps"] for r in runs])
        self.measure("checkpoint", "hdf5/plain write", 1, "ratio", sec["write_ratio"], "ratio")
        self.measure("checkpoint", "hdf5/plain read", 1, "ratio", sec["read_ratio"], "ratio")
        if sec["resident_before_read"] and sec["resident_before_read"]["max"] > 0.5:
            self.notes.append("checkpoint reads were served partly from the page cache (this "
                              "filesystem ignores posix_fadvise DONTNEED): read bandwidth is "
                              "memory, not disk")
        self.log("checkpoint %d bytes in %s: hdf5 write %.3f read %.3f GB/s; plain write+fsync "
                 "%.3f read %.3f GB/s" % (j["bytes"], self.ckpt_dir,
                                          sec["hdf5_write_GBps"]["median"],
                                          sec["hdf5_read_GBps"]["median"],
                                          sec["plain_write_GBps"]["median"],
                                          sec["plain_read_GBps"]["median"]))
        self.report["checkpoint"] = sec

    # -- 4. inference ------------------------------------------------------------------------

    def inference(self):
        sec = {"classifiers": [], "generation": []}
        counts = sorted({self.ranks[0], self.ranks[-1]})
        have = getattr(self, "keep_ckpt", {})
        g = GEN[self.mode]
        prompts = os.path.join(self.out, "data", "prompts.txt")
        with open(prompts, "w") as f:
            for i in range(g["prompts"]):
                f.write(PROMPTS[i % len(PROMPTS)] + "\n")
        for model in self.models:
            if "no_inference" in MODELS[model]:
                self.notes.append("no inference measurement for %s: %s"
                                  % (model, MODELS[model]["no_inference"]))
                continue
            if model not in have:
                self.notes.append("inference of %s skipped: no checkpoint (training section "
                                  "not run)" % model)
                continue
            ck = have[model]
            for n in counts:
                t = self.threads(n)
                vals = []
                for r in range(self.repeats):
                    tag = "infer-%s-n%d-r%d" % (model, n, r)
                    if MODELS[model]["kind"] == "classifier":
                        argv = [self.tulpar, "infer", ck["config"], "--checkpoint",
                                ck["checkpoint"], "--output",
                                os.path.join(self.out, "raw", tag + ".csv"),
                                "--set", "runtime.threads=%d" % t]
                        out, err = self.run(tag, self.launch(n, t, argv), self.env(t))
                        m = re.search(r"classified (\d+) images in ([\d.]+) s: ([\d.]+) images/s",
                                      out + err)
                        if not m:
                            raise SuiteError("tulpar infer printed no images/s line:\n" + out)
                        vals.append(int(m.group(1)) / float(m.group(2)))
                    else:
                        argv = [self.tulpar, "generate", "--checkpoint", ck["checkpoint"],
                                "--prompts", prompts, "--max-tokens", str(g["tokens"]),
                                "--seed", "1", "--output",
                                os.path.join(self.out, "raw", tag + ".jsonl"),
                                "--set", "runtime.threads=%d" % t]
                        out, err = self.run(tag, self.launch(n, t, argv), self.env(t))
                        m = re.search(r"(\d+) prompts x (\d+) tokens on \d+ rank\(s\) in "
                                      r"([\d.]+) s", out + err)
                        if not m:
                            raise SuiteError("tulpar generate printed no tokens/s line:\n" + err)
                        vals.append(int(m.group(1)) * int(m.group(2)) / float(m.group(3)))
                st = stats(vals)
                entry = {"model": model, "ranks": n, "threads_per_rank": t,
                         "devices": self.devices(n, t)}
                if MODELS[model]["kind"] == "classifier":
                    entry.update(images_per_s=st, split="test", images=10000)
                    sec["classifiers"].append(entry)
                    self.measure("inference", model, n, "images_per_s", st, "images/s")
                    self.log("infer %s on %d rank(s): %.0f images/s" % (model, n, st["median"]))
                else:
                    entry.update(tokens_per_s=st, prompts=g["prompts"],
                                 max_tokens=g["tokens"], kv_cache=True,
                                 batch_per_rank=1)
                    sec["generation"].append(entry)
                    self.measure("inference", model + " generate", n, "tokens_per_s", st,
                                 "tokens/s")
                    self.log("generate %s on %d rank(s): %.1f tokens/s" % (model, n,
                                                                          st["median"]))
        # The checkpoints were only needed here.
        for ck in have.values():
            shutil.rmtree(os.path.dirname(ck["checkpoint"]), ignore_errors=True)
        self.report["inference"] = sec

    # -- cost and prediction ------------------------------------------------------------------

    def cost(self):
        out = {"device": self.device_kind,
               "device_definition": ("one GPU (a rank)" if self.backend == "cuda" else
                                     "one CPU core (ranks x threads per rank)"),
               "formulas": {
                   "training_gpt": "devices x (1e9 / tokens_per_s) / 3600 device-hours per 1e9 "
                                   "training tokens",
                   "training_classifier": "devices x (60000 / samples_per_s) / 3600 "
                                          "device-hours per epoch (60000 samples)",
                   "generation": "devices x (1e6 / generated tokens_per_s) / 3600 device-hours "
                                 "per 1e6 generated tokens"},
               "training_gpt": [], "training_classifier": [], "generation": []}
        tr = self.report.get("training", {}).get("models", {})
        for model, m in tr.items():
            for name, pts in m["series"].items():
                for pt in pts:
                    if m["kind"] == "gpt":
                        thr, unit, scale, key = pt["tokens_per_s"], "device-hours per 1e9 tokens", \
                            1e9, "training_gpt"
                    else:
                        thr, unit, scale, key = pt["samples_per_s"], "device-hours per epoch", \
                            EPOCH_SAMPLES, "training_classifier"
                    st = stats([pt["devices"] * scale / v / 3600 for v in thr["values"]])
                    out[key].append({"model": model, "scaling": name, "ranks": pt["ranks"],
                                     "devices": pt["devices"], "device_hours": st, "unit": unit})
                    self.measure("cost", "%s %s" % (model, name), pt["ranks"],
                                 "device_hours_per_1e9_tokens" if key == "training_gpt"
                                 else "device_hours_per_epoch", st, "device-hours")
        for e in self.report.get("inference", {}).get("generation", []):
            st = stats([e["devices"] * 1e6 / v / 3600 for v in e["tokens_per_s"]["values"]])
            out["generation"].append({"model": e["model"], "ranks": e["ranks"],
                                      "devices": e["devices"], "device_hours": st,
                                      "unit": "device-hours per 1e6 generated tokens"})
            self.measure("cost", "%s generate" % e["model"], e["ranks"],
                         "device_hours_per_1e6_tokens", st, "device-hours")
        self.report["cost"] = out

    def prediction(self):
        pred = {"label": "PREDICTION (alpha-beta model), not a measurement", "available": False}
        self.report["prediction"] = pred
        coll = self.report.get("collectives", {}).get("results", {}).get("allreduce", {})
        if not coll:
            pred["reason"] = ("no all-reduce sweep: the collectives section %s" % (
                "needs a rank count >= 2" if "collectives" in self.sections else "was not run"))
            return
        pm = max(int(k) for k in coll)
        rows = coll[str(pm)]["rows"]
        xs = [float(r["size"]) for r in rows]
        ts = [r["ip"]["time_us"]["median"] * 1e-6 for r in rows]
        A, B, fit_note = _fit_affine(xs, ts)
        alpha = A / (2.0 * (pm - 1))
        beta = B / (2.0 * (pm - 1) / pm)
        resid = [abs(A + B * x - t) / t for x, t in zip(xs, ts) if t > 0]
        tr = self.report.get("training", {}).get("models", {})
        gm = "gpt2_124m" if "gpt2_124m" in tr else next(
            (m for m in reversed(list(tr)) if tr[m]["kind"] == "gpt"), None)
        if gm is None:
            pred["reason"] = "no GPT training measurement (add gpt2_124m to --models)"
            return
        base = tr[gm]["series"]["weak"][0]
        compute_s = base["compute_ms"]["median"] / 1e3 if base["compute_ms"] else \
            base["step_time_ms"]["median"] / 1e3
        nbytes = 4 * int(tr[gm]["params"])
        pts = []
        for p in PREDICT_AT:
            ring = 2 * (p - 1) * alpha + 2.0 * (p - 1) / p * nbytes * beta
            tree = 2 * math.log2(p) * alpha + 2.0 * nbytes * beta
            pts.append({"devices": p,
                        "ring": {"allreduce_s": ring, "efficiency_no_overlap":
                                 compute_s / (compute_s + ring),
                                 "efficiency_full_overlap": compute_s / max(compute_s, ring)},
                        "tree": {"allreduce_s": tree, "efficiency_no_overlap":
                                 compute_s / (compute_s + tree),
                                 "efficiency_full_overlap": compute_s / max(compute_s, tree)}})
        for pt in pts:
            for alg in ("ring", "tree"):
                v = pt[alg]["efficiency_no_overlap"]
                self.measure("prediction", "%s %s allreduce" % (gm, alg), pt["devices"],
                             "predicted_efficiency", {"median": v, "min": v, "max": v}, "ratio")
        pred.update({
            "available": True, "model": gm,
            "inputs": {
                "allreduce_ranks": pm, "allreduce_comm": coll[str(pm)]["comm"],
                "allreduce_sizes_bytes": [int(x) for x in xs],
                "allreduce_time_s": ts,
                "fit": "t(n) = A + B n by least squares on relative error over the in-place "
                       "all-reduce sweep (medians); alpha = A / (2(p-1)), beta = B / (2(p-1)/p) "
                       "with p = %d (ring all-reduce)" % pm,
                "fit_note": fit_note,
                "A_s": A, "B_s_per_byte": B, "max_relative_residual": max(resid) if resid else None,
                "alpha_s": alpha, "beta_s_per_byte": beta,
                "bandwidth_GBps": 1e-9 / beta if beta > 0 else None,
                "gradient_bytes": nbytes, "params": tr[gm]["params"],
                "compute_s_per_step": compute_s,
                "compute_from": "%s weak scaling, %d rank(s) x %d thread(s), micro-batch %d%s: "
                                "median compute time per step (step minus exposed communication)"
                                % (gm, base["ranks"], base["threads_per_rank"],
                                   base["micro_batch"],
                                   ", context %s" % tr[gm]["seq_len"] if tr[gm].get("seq_len")
                                   else ""),
            },
            "formulas": {
                "ring": "T = 2(p-1) alpha + 2 (p-1)/p n beta",
                "tree": "T = 2 log2(p) alpha + 2 n beta (reduce then broadcast, pipelined)",
                "efficiency_no_overlap": "compute / (compute + T)",
                "efficiency_full_overlap": "compute / max(compute, T)",
            },
            "assumptions": "each device keeps the measured per-rank compute time and micro-batch "
                           "(weak scaling); every device pair sees the measured alpha and beta "
                           "(links between nodes are usually slower than within one, so this is "
                           "optimistic beyond the measured ranks); one all-reduce of all "
                           "gradients per step",
            "points": pts})
        self.log("prediction (alpha %.2f us, beta %.3g s/B = %.2f GB/s, compute %.3f s/step): "
                 "ring efficiency %s" % (alpha * 1e6, beta, 1e-9 / beta if beta > 0 else 0,
                                         compute_s, ", ".join(
                                             "%d: %.3f" % (p["devices"],
                                                           p["ring"]["efficiency_no_overlap"])
                                             for p in pts)))

    # -- main ---------------------------------------------------------------------------------

    def main(self):
        started = now_iso()
        self.comm_library = None
        self.log("tulpar bench suite (%s): ranks %s, %d repeats, launcher %s, backend %s, "
                 "output %s" % (self.mode, ",".join(map(str, self.ranks)), self.repeats,
                                self.launcher, self.backend, self.out))
        machine = machine_info()
        versions = library_versions(self.tulpar, self.backends)
        for s in ALL_SECTIONS:
            if s in self.sections:
                getattr(self, s)()
        if self.comm_library:
            versions["mpi"] = self.comm_library
            versions["sources"]["mpi"] = "summary.json comm_library of a multi-rank run"
        self.cost()
        self.prediction()
        finished = now_iso()
        threads = {str(n): self.threads(n) for n in self.ranks}
        rep = {
            "schema_version": SCHEMA_VERSION,
            "kind": "tulpar-bench-suite",
            "mode": self.mode,
            "repeats": self.repeats,
            "started_at": started,
            "finished_at": finished,
            "duration_s": time.time() - self.t0,
            "job_id": os.environ.get("SLURM_JOB_ID") or "none",
            "machine": machine,
            "versions": versions,
            "settings": {
                "ranks": self.ranks, "launcher": self.launcher,
                "srun_mpi": self.srun_mpi if self.launcher == "srun" else None,
                "backend": self.backend, "device": self.device_kind,
                "threads_per_rank": threads,
                "threads_policy": ("--threads-per-rank" if self.a.threads_per_rank else
                                   "SLURM_CPUS_PER_TASK" if self.launcher == "srun" else
                                   "usable cores / ranks (strong use of one node)"),
                "models": self.models, "sections": self.sections, "tulpar": self.tulpar,
                "source_dir": ROOT, "output_dir": self.out,
                "command": " ".join([os.path.basename(self.tulpar), "bench", "suite"] +
                                    self.a.passthrough),
                "efficiency_definition": "per-device throughput relative to the series' "
                                         "smallest rank count: (X(N)/devices(N)) / "
                                         "(X(N0)/devices(N0)); with a fixed number of "
                                         "devices per rank this is X(N) / (N X(1)) for N0 = 1",
            },
            "notes": self.notes,
        }
        for k in ("collectives", "training", "checkpoint", "inference", "cost", "prediction"):
            rep[k] = self.report.get(k)
        rep["measurements"] = self.measurements
        import report_html
        path = os.path.join(self.out, "report.json")
        with open(path + ".tmp", "w") as f:
            json.dump(rep, f, indent=1)
        os.replace(path + ".tmp", path)
        report_html.write_csv(rep, os.path.join(self.out, "report.csv"))
        report_html.write_html(rep, os.path.join(self.out, "report.html"))
        self.log("wrote %s/report.json, report.csv, report.html (%d measurements, %d commands)"
                 % (self.out, len(self.measurements), self.n_cmd))
        return 0


def _fit_affine(xs, ts):
    """t = A + B x minimising the sum of squared relative errors; A >= 0 and B >= 0."""
    w = [1.0 / (t * t) if t > 0 else 0.0 for t in ts]
    sw = sum(w)
    sx = sum(wi * x for wi, x in zip(w, xs))
    sxx = sum(wi * x * x for wi, x in zip(w, xs))
    st = sum(wi * t for wi, t in zip(w, ts))
    sxt = sum(wi * x * t for wi, x, t in zip(w, xs, ts))
    det = sw * sxx - sx * sx
    note = "weighted least squares (weights 1/t^2)"
    if det > 0:
        A = (sxx * st - sx * sxt) / det
        B = (sw * sxt - sx * st) / det
    else:
        A, B = min(ts), 0.0
    if A <= 0:  # noise at small sizes: latency from the smallest message, refit the slope
        A = min(ts)
        B = sum(wi * x * (t - A) for wi, x, t in zip(w, xs, ts)) / sxx if sxx > 0 else 0.0
        note += "; intercept <= 0, so A = the smallest measured time and B refitted"
    if B <= 0:
        B = max((t - A) / x for x, t in zip(xs, ts) if x > 0)
        B = max(B, 1e-15)
        note += "; slope <= 0, so B = the largest (t - A) / n"
    return A, B, note


def _filesystem(path):
    best = ("?", "?", "")
    try:
        real = os.path.realpath(path)
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                mnt = mnt.replace("\\040", " ")
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and \
                        len(mnt) >= len(best[2]):
                    best = (dev, fstype, mnt)
    except OSError:
        pass
    return {"device": best[0], "type": best[1], "mount": best[2]}


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="tulpar bench suite", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="See benchmarks/README.md.")
    ap.add_argument("--tulpar", required=True,
                    help="the tulpar binary (set by `tulpar bench suite`)")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and few steps, 2 repeats (~2 min on 2 cores)")
    ap.add_argument("--out", help="output directory (default runs/bench-suite-<time>)")
    ap.add_argument("--ranks", help="rank counts, e.g. 1,2,4 (default 1,2; under Slurm 1.."
                                    "SLURM_NTASKS in powers of two)")
    ap.add_argument("--repeats", type=int, help="repeats of every measurement (default 5, "
                                                "--quick 2)")
    ap.add_argument("--launcher", choices=("auto", "mpirun", "srun"), default="auto")
    ap.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--threads-per-rank", type=int,
                    help="default: SLURM_CPUS_PER_TASK under srun, else usable cores / ranks")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--sections", default=",".join(ALL_SECTIONS))
    ap.add_argument("--ckpt-dir", help="directory whose disk the checkpoint benchmark measures "
                                       "(default: --out)")
    ap.add_argument("--ckpt-bytes", type=_bytes_arg, help="checkpoint size (default 512M, "
                                                          "--quick 48M; K/M/G suffixes)")
    ap.add_argument("--fashion-dir", default=FASHION_DEFAULT, help="Fashion-MNIST IDX directory")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per command (default 3600)")
    argv = sys.argv[1:] if argv is None else argv
    a = ap.parse_args(argv)
    a.passthrough = []
    skip = False
    for i, x in enumerate(argv):  # the command line as the user typed it (without --tulpar)
        if skip:
            skip = False
            continue
        if x == "--tulpar":
            skip = True
            continue
        if x.startswith("--tulpar="):
            continue
        a.passthrough.append(x)
    try:
        return Suite(a).main()
    except SuiteError as e:
        print("tulpar bench suite: %s" % e, file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print("tulpar bench suite: interrupted", file=sys.stderr)
        return 130


def _bytes_arg(v):
    m = re.fullmatch(r"(\d+)([KMGkmg]?)", v)
    if not m:
        raise argparse.ArgumentTypeError("want a size like 512M")
    n = int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]
    if n < 4:
        raise argparse.ArgumentTypeError("want at least 4 bytes")
    return n


if __name__ == "__main__":
    sys.exit(main())
