"""Shared helpers for Tulpar's command-line tests: run tulpar directly or under mpirun with a
timeout (a hang is a failure), write small configs, read checkpoints with h5py, and a tiny
check/report harness whose exit status is the verdict."""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    # Keep the job on shared memory and quiet about it (see ../shared/notes/MPI.md).
    "OMPI_MCA_pml": "ob1",
    "OMPI_MCA_btl": "self,vader",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "TULPAR_PROGRESS": "plain",
}

FASHION = "/usr/share/datasets/fashion-mnist"


class Harness:
    def __init__(self, name):
        parser = argparse.ArgumentParser()
        parser.add_argument("--tulpar", required=True)
        parser.add_argument("--source", required=True)
        self.args = parser.parse_args()
        self.tulpar = os.path.abspath(self.args.tulpar)
        self.source = os.path.abspath(self.args.source)
        self.name = name
        self.failures = 0
        self.checks = 0
        self.tmp = tempfile.mkdtemp(prefix="tulpar-%s-" % name)

    def check(self, cond, what, detail=""):
        self.checks += 1
        if not cond:
            self.failures += 1
            print("FAIL: %s %s" % (what, detail), flush=True)
        else:
            print("ok: %s" % what, flush=True)
        return cond

    def finish(self):
        if self.failures == 0:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print("(kept %s for inspection)" % self.tmp)
        print("%s: %d passed, %d failed" % (self.name, self.checks - self.failures, self.failures))
        sys.exit(1 if self.failures else 0)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def run(self, args, np=None, timeout=300, env_extra=None, threads=1, cwd=None):
        """Run tulpar (under mpirun -np NP when np is given). Returns CompletedProcess with
        .stdout/.stderr text; a timeout is reported as returncode 'timeout'."""
        env = dict(os.environ)
        for k in list(env):
            if k.startswith(("OMPI_", "PMIX_", "PMI_")):
                del env[k]
        env.update(MPI_ENV)
        env["OMP_NUM_THREADS"] = str(threads)
        if env_extra:
            env.update(env_extra)
        cmd = [self.tulpar] + list(args)
        if np is not None:
            cmd = ["mpirun", "-np", str(np), "--bind-to", "none"] + cmd
        try:
            p = subprocess.run(cmd, env=env, cwd=cwd or self.tmp, capture_output=True, text=True,
                               errors="replace",
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            subprocess.run(["pkill", "-9", "-f", self.tulpar], check=False)
            return subprocess.CompletedProcess(cmd, "timeout", out, err)
        return p

    def write_config(self, name, text):
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path


def tiny_mlp_config(steps=20, batch=32, dropout=0.1, every=0, extra=""):
    return """
model: { type = "mlp"; hidden = [32]; activation = "relu"; dropout = %s; };
data: { dataset = "fashion-mnist"; dir = "%s"; };
train: { steps = %d; batch = %d; optimizer = "adamw"; lr = 0.003; warmup_steps = 5;
         weight_decay = 0.01; grad_clip = 1.0; seed = 7; };
eval: { at_end = false; };
checkpoint: { every = %d; keep = 10; };
log: { every = 5; };
runtime: { threads = 1; };
%s
""" % (repr(float(dropout)), FASHION, steps, batch, every, extra)


def read_params(path, groups=("params",)):
    import h5py
    import numpy as np

    out = {}
    with h5py.File(path, "r") as f:
        for g in groups:
            def visit(name, obj, g=g):
                if isinstance(obj, h5py.Dataset):
                    out[g + "/" + name] = np.array(obj[...])
            f[g].visititems(visit)
    return out


def read_metrics(run_dir):
    rows = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            rows.append(json.loads(line))
    return rows


def read_summary(run_dir):
    with open(os.path.join(run_dir, "summary.json")) as f:
        return json.load(f)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def newest_checkpoint(run_dir):
    d = os.path.join(run_dir, "checkpoints")
    files = sorted(x for x in os.listdir(d) if x.startswith("ckpt_") and x.endswith(".h5"))
    return os.path.join(d, files[-1]) if files else None
