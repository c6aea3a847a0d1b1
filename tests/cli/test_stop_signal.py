"""Graceful stop on SIGUSR1 (what slurm/train.sbatch forwards before a time limit or
preemption) and on a first SIGTERM: training finishes the current step, writes a checkpoint and exits with status 75;
`--resume auto` continues from it. On 2 ranks a signal that reaches only one rank still stops
both at the same step."""
import os
import signal
import subprocess
import time

from tulpar_test import MPI_ENV, Harness, newest_checkpoint, read_params, tiny_mlp_config

h = Harness("stop_signal")
cfg = h.write_config("long.cfg", tiny_mlp_config(steps=200000, batch=64, every=0))


def start(args, np_=None):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith(("OMPI_", "PMIX_", "PMI_")):
            del env[k]
    env.update(MPI_ENV)
    env["OMP_NUM_THREADS"] = "1"
    cmd = [h.tulpar] + args
    if np_:
        cmd = ["mpirun", "-np", str(np_), "--bind-to", "none"] + cmd
    return subprocess.Popen(cmd, env=env, cwd=h.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace")


def wait_for_steps(run_dir, timeout=60):
    path = os.path.join(run_dir, "metrics.jsonl")
    t0 = time.time()
    while time.time() - t0 < timeout:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return True
        time.sleep(0.2)
    return False


def finish(p, timeout=60):
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return "timeout", out, err


# One process.
run = h.path("one")
p = start(["train", cfg, "--run-dir", run])
h.check(wait_for_steps(run), "training started")
p.send_signal(signal.SIGUSR1)
rc, out, err = finish(p)
h.check(rc == 75, "SIGUSR1: exit status 75", "rc=%s %s" % (rc, err[-1500:]))
h.check("stop requested" in out + err and "SIGUSR1" in out + err, "the log says why it stopped")
ck = newest_checkpoint(run)
h.check(ck is not None, "checkpoint written on the way out")
step = int(os.path.basename(ck)[5:13]) if ck else 0
h.check(step > 0, "checkpoint at step %d" % step)
q = subprocess.run([h.tulpar, "train", cfg, "--run-dir", run, "--resume", "auto", "--stop-at",
                    str(step + 5)], cwd=h.tmp, capture_output=True, text=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1", "TULPAR_PROGRESS": "plain"},
                   timeout=120)
h.check(q.returncode == 0 and ("resumed from" in q.stdout and "step %d" % step in q.stdout),
        "--resume auto continues from the stop checkpoint", q.stderr[-1500:])

# Two ranks, the signal sent to rank 1 only.
run2 = h.path("two")
p = start(["train", cfg, "--run-dir", run2], np_=2)
h.check(wait_for_steps(run2), "2-rank training started")
kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
h.check(len(kids) == 2, "found the 2 rank processes", str(kids))
if len(kids) == 2:
    os.kill(int(sorted(kids, key=int)[-1]), signal.SIGUSR1)
rc, out, err = finish(p)
h.check(rc == 75, "2 ranks, one signalled: mpirun exits 75", "rc=%s %s" % (rc, err[-2000:]))
ck = newest_checkpoint(run2)
h.check(ck is not None, "2-rank checkpoint written")
if ck:
    h.check(len(read_params(ck)) > 0, "the checkpoint is readable")
# SIGTERM, as Slurm sends to every task at a time limit or on preemption (KillWait later it
# sends SIGKILL): the same clean stop, on one process and on both ranks.
run3 = h.path("term1")
p = start(["train", cfg, "--run-dir", run3])
h.check(wait_for_steps(run3), "training started (SIGTERM case)")
p.send_signal(signal.SIGTERM)
rc, out, err = finish(p)
h.check(rc == 75 and "SIGTERM" in out + err and newest_checkpoint(run3),
        "SIGTERM on one process: checkpoint and exit 75", "rc=%s %s" % (rc, err[-1500:]))
run4 = h.path("term2")
p = start(["train", cfg, "--run-dir", run4], np_=2)
h.check(wait_for_steps(run4), "2-rank training started (SIGTERM case)")
kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
for k in kids:
    os.kill(int(k), signal.SIGTERM)
rc, out, err = finish(p)
h.check(rc == 75 and newest_checkpoint(run4), "SIGTERM to both ranks: checkpoint and exit 75",
        "rc=%s %s" % (rc, err[-2000:]))
h.finish()
