"""A dead or hung rank stops the whole job fast, with a message naming the step, the collective
and the rank, and leaves every checkpoint readable: (a) rank 1 killed with SIGKILL mid-training:
mpirun exits non-zero within 30 s; (b) rank 1 stopped with SIGSTOP and comm.timeout_s = 5: the
watchdog aborts the job within about 5 + 10 s. No process of the test is left behind."""
import os
import re
import signal
import subprocess
import time

from tulpar_test import MPI_ENV, Harness, tiny_mlp_config

h = Harness("rank_failure")
# Long enough never to finish during the test; a checkpoint every 10 steps.
cfg = h.write_config("rank_failure.cfg", tiny_mlp_config(steps=10000000, batch=32, every=10))

MESSAGE = re.compile(r"tulpar: error \[rank \d+ on [^\]]+\]: .*(during|after) the "
                     r"(gradient all-reduce|loss reduction for the progress log|checkpoint "
                     r"agreement|evaluation|stop-request agreement) of step \d+")


def env():
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PMI_"))}
    e.update(MPI_ENV)
    e["OMP_NUM_THREADS"] = "1"
    return e


def rank_pid(rank):
    """Pid of the tulpar process of this test with OMPI_COMM_WORLD_RANK == rank, or None."""
    want = b"OMPI_COMM_WORLD_RANK=%d" % rank
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().split(b"\0")
            if not cmd or os.path.basename(cmd[0]) != b"tulpar" or cfg.encode() not in cmd:
                continue
            with open("/proc/%s/environ" % d, "rb") as f:
                if want in f.read().split(b"\0"):
                    return int(d)
        except OSError:
            continue
    return None


def checkpoints(run):
    d = os.path.join(run, "checkpoints")
    if not os.path.isdir(d):
        return []
    return sorted(os.path.join(d, f) for f in os.listdir(d)
                  if f.startswith("ckpt_") and f.endswith(".h5"))


def cleanup(pids=()):
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    subprocess.run(["pkill", "-9", "-f", cfg], check=False)


def start_and_fail(label, sig, extra_args, limit_s):
    """Train on 2 ranks, send sig to rank 1 once two checkpoints exist, wait for mpirun.
    Returns (returncode or None on timeout, seconds from the signal to mpirun's exit, stderr,
    run directory)."""
    run = h.path("run_" + label)
    err_path = h.path(label + ".stderr")
    with open(err_path, "w") as err, open(h.path(label + ".stdout"), "w") as out:
        p = subprocess.Popen(["mpirun", "-np", "2", "--bind-to", "none", h.tulpar, "train", cfg,
                              "--run-dir", run] + extra_args, env=env(), cwd=h.tmp, stdout=out,
                             stderr=err)
        victim = None
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            victim = victim or rank_pid(1)
            if victim and len(checkpoints(run)) >= 2:
                break
            time.sleep(0.2)
        if p.poll() is not None or not victim:
            cleanup([victim] if victim else [])
            p.wait()
            with open(err_path) as f:
                return "did not start", 0, f.read(), run
        t0 = time.time()
        os.kill(victim, sig)
        try:
            rc = p.wait(timeout=limit_s + 30)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.time() - t0
        cleanup([victim])
        if rc is None:
            p.kill()
            p.wait()
    with open(err_path) as f:
        return rc, took, f.read(), run


def check_common(label, rc, took, stderr, run, limit_s, needles):
    h.check(rc not in (None, 0, "did not start"), "%s: mpirun exits non-zero (%s)" % (label, rc),
            stderr[-2000:])
    h.check(took < limit_s, "%s: job stopped %.1f s after the signal (limit %d s)" %
            (label, took, limit_s))
    h.check(MESSAGE.search(stderr) is not None, "%s: message names the step and the collective" %
            label, stderr[-2000:])
    for n in needles:
        h.check(n in stderr, "%s: message mentions %r" % (label, n), stderr[-2000:])
    cks = checkpoints(run)
    h.check(len(cks) >= 2, "%s: checkpoints were written before the failure" % label)
    bad = [c for c in cks
           if subprocess.run([h.tulpar, "ckpt", "inspect", c], env=env(), capture_output=True,
                             timeout=60).returncode != 0]
    h.check(not bad, "%s: all %d checkpoints still open (ckpt inspect)" % (label, len(cks)),
            str(bad))
    time.sleep(0.5)
    h.check(rank_pid(0) is None and rank_pid(1) is None, "%s: no rank left running" % label)


# (a) A dead rank: the watchdog of rank 0 (or mpirun itself) notices within seconds.
rc, took, err, run = start_and_fail("sigkill", signal.SIGKILL, [], 30)
print("SIGKILL of rank 1: job gone after %.1f s" % took, flush=True)
check_common("sigkill", rc, took, err, run, 30, ["rank 1"])

# (b) A hung rank: nothing dies, only comm.timeout_s can end it.
rc, took, err, run = start_and_fail("sigstop", signal.SIGSTOP, ["--set", "comm.timeout_s=5"], 15)
print("SIGSTOP of rank 1 with comm.timeout_s = 5: job gone after %.1f s" % took, flush=True)
check_common("sigstop", rc, took, err, run, 15, ["rank 1 stopped responding", "no progress for"])
h.check(took >= 4.5, "sigstop: not aborted before comm.timeout_s (%.1f s)" % took)

cleanup()
# Pages are unlinked as soon as the peers have mapped them; one whose process is gone leaked.
leftover = [f for f in os.listdir("/dev/shm") if f.startswith("tulpar-wd-")
            and not os.path.exists("/proc/" + f.split("-")[2])]
h.check(not leftover, "no watchdog pages left in /dev/shm", str(leftover))
h.finish()
