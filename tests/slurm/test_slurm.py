"""slurm/train.sbatch on a real one-node Slurm (slurmctld + slurmd + munged started here, see
tests/slurm/slurm_cluster.py): a tiny training job on 2 tasks completes with a checkpoint; bad
parameters are refused; a job told to stop (SIGUSR1 to the batch script, as --signal=B:USR1
does before a time limit) checkpoints, requeues itself, resumes and finishes. Skipped (exit 77)
with the reason where Slurm cannot be started."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))
from tulpar_test import Harness, newest_checkpoint, read_summary, tiny_mlp_config  # noqa: E402
from slurm_cluster import Cluster, SlurmUnavailable  # noqa: E402

h = Harness("slurm")
cluster = Cluster(h.path("slurm"))
os.makedirs(cluster.root, exist_ok=True)
try:
    cluster.start()
except SlurmUnavailable as e:
    print("SKIP: Slurm cannot be started here: %s" % e)
    sys.exit(77)

script = os.path.join(h.source, "slurm", "train.sbatch")
env = {"TULPAR_BIN": h.tulpar, "OMPI_MCA_btl": "self,vader", "OMPI_MCA_pml": "ob1",
       "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
try:
    # A tiny job on 2 tasks.
    cfg = h.write_config("tiny.cfg", tiny_mlp_config(steps=30, batch=64, every=10))
    jid = cluster.sbatch(["-n", "2", "-o", h.path("job-%j.out"), script, cfg], h.tmp, env)
    j = cluster.wait(jid, timeout=240)
    out = open(h.path("job-%s.out" % jid)).read() if os.path.exists(h.path("job-%s.out" % jid)) else ""
    h.check(j.get("JobState") == "COMPLETED" and j.get("ExitCode") == "0:0",
            "2-task training job completed (job %s: %s, exit %s)" % (jid, j.get("JobState"), j.get("ExitCode")),
            out[-3000:])
    run = h.path("runs", "tiny-%s" % jid)
    h.check(newest_checkpoint(run) is not None and newest_checkpoint(run).endswith("ckpt_00000030.h5"),
            "run directory per job with the final checkpoint")
    tiny_step_ms = 0.0
    if os.path.exists(os.path.join(run, "summary.json")):
        h.check(read_summary(run)["world_size"] == 2, "2 ranks through srun --mpi=pmix")
        tiny_step_ms = float(read_summary(run).get("step_time_ms_median", 0.0))

    # Batch inference from that checkpoint on 2 tasks, and a bad mode refused.
    infer = os.path.join(h.source, "slurm", "infer.sbatch")
    ck = newest_checkpoint(run)
    if ck:
        jid = cluster.sbatch(["-n", "2", "-o", h.path("infer-%j.out"), infer, "infer", ck, cfg],
                             h.tmp, dict(env, TULPAR_OUTPUT=h.path("pred.csv")))
        j = cluster.wait(jid, timeout=240)
        rows = open(h.path("pred.csv")).read().splitlines() if os.path.exists(h.path("pred.csv")) else []
        h.check(j.get("ExitCode") == "0:0" and len(rows) == 10001,
                "infer.sbatch: 2 tasks classify the 10000 test images (%d lines)" % len(rows))
        jid = cluster.sbatch(["-n", "1", "-o", h.path("infer-bad-%j.out"), infer, "classify", ck],
                             h.tmp, env)
        j = cluster.wait(jid, timeout=120)
        out = open(h.path("infer-bad-%s.out" % jid)).read()
        h.check(j.get("ExitCode") == "2:0" and "MODE must be eval, infer or generate" in out,
                "infer.sbatch refuses an unknown mode (exit 2)", out[-500:])

    # Bad parameters: refused by the script with a clear message, exit 2.
    jid = cluster.sbatch(["-n", "1", "-o", h.path("bad-%j.out"), script, "missing.cfg"], h.tmp, env)
    j = cluster.wait(jid, timeout=120)
    out = open(h.path("bad-%s.out" % jid)).read() if os.path.exists(h.path("bad-%s.out" % jid)) else ""
    h.check(j.get("ExitCode") == "2:0" and "missing.cfg" in out and "not a readable file" in out,
            "a missing config is refused (exit 2, names the file)", out[-1000:])

    # Preemption: a long job told to stop checkpoints, requeues, resumes and finishes. "Long" in
    # time, not steps: a fixed count finished before the signal arrived on an idle machine (1500
    # steps in 0.7 s) and passed only when the machine was slow. About 15 s at the tiny job's
    # step time, so the signal lands mid-run however fast or slow (sanitizers) the build is.
    step_ms = tiny_step_ms if tiny_step_ms > 0 else 1.0
    long_steps = max(1500, min(200000, int(15000.0 / step_ms)))
    cfg = h.write_config("long.cfg", tiny_mlp_config(steps=long_steps, batch=64, every=0))
    jid = cluster.sbatch(["-n", "2", "-o", h.path("long-%j.out"), script, cfg], h.tmp, env)
    run = h.path("runs", "long-%s" % jid)
    t0 = time.time()
    while time.time() - t0 < 120 and not os.path.exists(os.path.join(run, "metrics.jsonl")):
        time.sleep(0.5)
    h.check(os.path.exists(os.path.join(run, "metrics.jsonl")), "long job is training")
    p = cluster.scancel(["--batch", "--signal=USR1", jid])
    h.check(p.returncode == 0, "scancel --batch --signal=USR1", p.stderr)
    # The job checkpoints, requeues itself (restart count 1) and finishes from the checkpoint.
    t0 = time.time()
    j = {}
    while time.time() - t0 < 300:
        j = cluster.job(jid)
        if j.get("Restarts", "0") != "0" and j.get("JobState") in ("PENDING", "RUNNING", "COMPLETED"):
            break
        time.sleep(0.5)
    h.check(j.get("Restarts", "0") != "0", "the stopped job requeued itself (Restarts=%s)" % j.get("Restarts"))
    # The requeued job starts when Slurm allows it (not forced: starting it before the old
    # incarnation's credential has expired fails with "Job credential revoked").
    j = cluster.wait(jid, timeout=400)
    out = open(h.path("long-%s.out" % jid)).read() if os.path.exists(h.path("long-%s.out" % jid)) else ""
    h.check(j.get("JobState") == "COMPLETED" and j.get("ExitCode") == "0:0",
            "requeued job completed (%s, exit %s)" % (j.get("JobState"), j.get("ExitCode")), out[-3000:])
    h.check("SIGUSR1 received" in out and "stop requested" in out and "requeued job" in out
            and "resumed from" in out, "the job log shows stop, checkpoint, requeue and resume")
    ck = newest_checkpoint(run)
    h.check(ck is not None and ck.endswith("ckpt_%08d.h5" % long_steps),
            "the resumed run reached the last step (%d)" % long_steps)
    s = read_summary(run) if os.path.exists(os.path.join(run, "summary.json")) else {}
    h.check(s.get("first_step", 0) > 0 and s.get("steps") == long_steps,
            "the second run started from the stop checkpoint (first_step %s)" % s.get("first_step"))

    # A real time limit: Slurm itself sends the warning signal (--signal=B:USR1@45 on a 1-minute
    # job); the job checkpoints and requeues itself. Then it is cancelled (it would loop).
    cfg = h.write_config("endless.cfg", tiny_mlp_config(steps=10000000, batch=64, every=0))
    jid = cluster.sbatch(["-n", "2", "-t", "1", "--signal=B:USR1@45", "-o", h.path("tl-%j.out"),
                          script, cfg], h.tmp, env)
    t0 = time.time()
    j = {}
    while time.time() - t0 < 150:
        j = cluster.job(jid)
        if j.get("Restarts", "0") != "0":
            break
        time.sleep(0.5)
    cluster.scancel([jid])
    out = open(h.path("tl-%s.out" % jid)).read() if os.path.exists(h.path("tl-%s.out" % jid)) else ""
    ck = newest_checkpoint(h.path("runs", "endless-%s" % jid))
    h.check(j.get("Restarts", "0") != "0" and "SIGUSR1 received" in out and ck is not None,
            "time limit: Slurm's warning signal made the job checkpoint and requeue itself",
            out[-2000:])

    # The benchmark suite through slurm/bench.sbatch --quick.
    bench = os.path.join(h.source, "slurm", "bench.sbatch")
    out_dir = h.path("suite")
    jid = cluster.sbatch(["-n", "2", "-o", h.path("bench-%j.out"), bench], h.tmp,
                         dict(env, TULPAR_OUT=out_dir,
                              TULPAR_SUITE_ARGS="--quick"))
    j = cluster.wait(jid, timeout=900)
    out = open(h.path("bench-%s.out" % jid)).read() if os.path.exists(h.path("bench-%s.out" % jid)) else ""
    ok = j.get("ExitCode") == "0:0" and all(
        os.path.exists(os.path.join(out_dir, f)) for f in ("report.json", "report.csv", "report.html"))
    h.check(ok, "bench.sbatch --quick wrote report.json, report.csv and report.html (job %s)" % j.get("JobState"),
            out[-3000:])
    if ok:
        import json
        rep = json.load(open(os.path.join(out_dir, "report.json")))
        h.check(str(rep.get("machine", {}).get("job_id", rep.get("job_id"))) == jid or jid in json.dumps(rep),
                "the report records the Slurm job id")
finally:
    cluster.stop()
h.finish()
