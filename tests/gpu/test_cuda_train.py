"""GPU training end to end with the tulpar binary (label gpu): a small GPT on the committed
multilingual sample (byte-level tokens).

  (a) 50 steps on cuda (runtime.precision bf16) and on cpu (fp32) from the same seed, hence the
      same initial weights (initialised on the host) and the same batches: the loss logged at
      every step agrees within 1e-2 relative (the bf16 tolerance of the op tests);
  (b) checkpoints are backend-independent: the cuda run's step-20 checkpoint resumes on cpu to
      step 30, the cpu run's step-20 checkpoint resumes on cuda to step 30; both exit 0, and each
      resumed run's losses (steps 21..30) stay within 1e-2 relative of the uninterrupted cpu run;
      both checkpoints hold the same tensors (names, shapes) as `tulpar ckpt inspect` lists them;
  (c) `tulpar generate` on cpu from the cuda checkpoint, and on cuda from the cpu checkpoint;
  (d) summary.json's host_waits_per_step of the cuda run is 1: inside a step the host never
      waits for the GPU (loss, norm and clipping stay on the device, batches go through pinned
      staging; two micro-batches per step, so four uploads) except at the step's end.

The schedule is constant after warm-up, so the first 30 steps of the 50-step cpu run are the
uninterrupted reference for the runs resumed at 20 and stopped at 30 (--stop-at 30).

Skips (exit 77, "skipped: no GPU (...)") when the first cuda run reports that no usable GPU is
here or that the binary has no CUDA; any other failure of a cuda run is a failure.
    python3 tests/gpu/test_cuda_train.py --tulpar build/tulpar --source .
    (--gpu-backend ref --gpu-precision fp32 runs the same logic without a GPU: a self-check)
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))

from tulpar_test import Harness, read_metrics, read_summary  # noqa: E402

# Our own options first; the Harness parses the rest (--tulpar, --source).
GPU, GPU_PREC = "cuda", "bf16"
argv = sys.argv[1:]
for opt in ("--gpu-backend", "--gpu-precision"):
    if opt in argv:
        i = argv.index(opt)
        if i + 1 >= len(argv):
            sys.exit("%s needs a value" % opt)
        if opt == "--gpu-backend":
            GPU = argv[i + 1]
        else:
            GPU_PREC = argv[i + 1]
        del argv[i:i + 2]
sys.argv[1:] = argv

REL_TOL = 1e-2  # bf16 tolerance (the table in tests/gpu/test_cuda_ops.c)
STEPS, RESUME_AT, STOP_AT = 50, 20, 30
NO_GPU_MARKERS = ("no usable GPU", "built without CUDA")

h = Harness("cuda_train")
sample = os.path.join(h.source, "tests", "data", "sample_multilingual.txt")
data = h.path("data")
p = h.run(["data", "prepare", "--input", sample, "--output", data, "--val-fraction", "0.1"])
if p.returncode != 0:
    print(p.stdout[-1500:], p.stderr[-1500:])
    h.check(False, "data prepare")
    h.finish()

CFG = """
model: { type = "gpt"; n_layer = 2; n_head = 2; d_model = 64; seq_len = 64; vocab_size = 256; };
data: { dataset = "tokens"; dir = "%s"; };
train: { steps = %d; batch = 8; grad_accum = 2; lr = 0.001; warmup_steps = 5; schedule = "constant";
         beta2 = 0.95; weight_decay = 0.1; grad_clip = 1.0; seed = 11; };
eval: { at_end = false; };
checkpoint: { every = %d; keep = 10; };
log: { every = 1; };
runtime: { threads = 2; };
""" % (data, STEPS, RESUME_AT)
cfg = h.write_config("gpt.cfg", CFG)


def backend_sets(backend):
    prec = GPU_PREC if backend == GPU else "fp32"
    return ["--set", 'runtime.backend="%s"' % backend, "--set", 'runtime.precision="%s"' % prec]


def train(run_dir, backend, extra=()):
    return h.run(["train", cfg, "--run-dir", run_dir] + backend_sets(backend) + list(extra),
                 threads=2, timeout=600)


def losses(run_dir):
    return {r["step"]: r["loss"] for r in read_metrics(run_dir)
            if "loss" in r and "eval_loss" not in r}


def ckpt(run_dir, step):
    return os.path.join(run_dir, "checkpoints", "ckpt_%08d.h5" % step)


def worst_rel(got, want, steps):
    worst, at = 0.0, None
    for s in steps:
        if s not in got or s not in want:
            return float("inf"), s
        e = abs(got[s] - want[s]) / max(abs(want[s]), 1e-12)
        if e != e:
            return float("inf"), s
        if e > worst:
            worst, at = e, s
    return worst, at


def tensor_table(path):
    """(name, dtype, shape) of every dataset `tulpar ckpt inspect` lists."""
    q = h.run(["ckpt", "inspect", path], timeout=120)
    rows, on = [], False
    for line in q.stdout.splitlines():
        f = line.split()
        if f[:2] == ["name", "dtype"]:
            on = True
        elif on and len(f) >= 5 and f[1].startswith("float"):
            rows.append(tuple(f[:3]))
    return q.returncode, rows


# ---- (a) 50 steps on the GPU and on the CPU from the same seed --------------------------------
run_g = h.path("gpu")
p = train(run_g, GPU)
if p.returncode != 0 and any(m in p.stderr for m in NO_GPU_MARKERS):
    why = next(l for l in p.stderr.splitlines() if any(m in l for m in NO_GPU_MARKERS))
    print("skipped: no GPU (%s)" % why.strip())
    sys.exit(77)
h.check(p.returncode == 0, "%d steps on %s (%s)" % (STEPS, GPU, GPU_PREC), p.stderr[-2500:])
if p.returncode == 0:
    # No host synchronisation inside a step: the host waits for the GPU once, at the step's end.
    hw = read_summary(run_g).get("host_waits_per_step")
    h.check(hw == 1, "%s: the host waits for the backend once per step (got %s)" % (GPU, hw))
run_c = h.path("cpu")
p = train(run_c, "cpu")
h.check(p.returncode == 0, "%d steps on cpu (fp32)" % STEPS, p.stderr[-2500:])
lg, lc = losses(run_g), losses(run_c)
h.check(sorted(lc) == list(range(1, STEPS + 1)) and sorted(lg) == sorted(lc),
        "both runs logged every step 1..%d" % STEPS, "gpu %s cpu %s" % (sorted(lg), sorted(lc)))
e, at = worst_rel(lg, lc, range(1, STEPS + 1))
print("loss agreement %s vs cpu over %d steps: max rel diff %.3g (step %s); first %.5f vs %.5f, "
      "last %.5f vs %.5f" % (GPU, STEPS, e, at, lg.get(1, float("nan")), lc.get(1, float("nan")),
                             lg.get(STEPS, float("nan")), lc.get(STEPS, float("nan"))))
h.check(e <= REL_TOL, "losses agree within %g relative at every step (max %.3g at step %s)"
        % (REL_TOL, e, at))
h.check(lc.get(STEPS, 99) < lc.get(1, 0) - 0.5, "the cpu run learns (loss %.3f -> %.3f)"
        % (lc.get(1, float("nan")), lc.get(STEPS, float("nan"))))

# ---- (b) resume across backends -----------------------------------------------------------------
for src_run, src, dst in ((run_g, GPU, "cpu"), (run_c, "cpu", GPU)):
    path = ckpt(src_run, RESUME_AT)
    if not h.check(os.path.exists(path), "%s run wrote %s" % (src, os.path.basename(path))):
        continue
    out = h.path("resume-%s-to-%s" % (src, dst))
    p = train(out, dst, ["--resume", path, "--stop-at", str(STOP_AT)])
    h.check(p.returncode == 0, "%s checkpoint at step %d resumes on %s to step %d"
            % (src, RESUME_AT, dst, STOP_AT), p.stderr[-2500:])
    lr_ = losses(out) if os.path.exists(os.path.join(out, "metrics.jsonl")) else {}
    steps = range(RESUME_AT + 1, STOP_AT + 1)
    h.check(sorted(lr_) == list(steps), "resumed run logged steps %d..%d" % (steps[0], steps[-1]),
            str(sorted(lr_)))
    e, at = worst_rel(lr_, lc, steps)
    h.check(e <= REL_TOL, "resumed on %s: losses within %g of the uninterrupted cpu run "
            "(max %.3g at step %s)" % (dst, REL_TOL, e, at))
    h.check(os.path.exists(ckpt(out, STOP_AT)), "resumed run checkpointed at step %d" % STOP_AT)

rg, tg = tensor_table(ckpt(run_g, RESUME_AT))
rc, tc = tensor_table(ckpt(run_c, RESUME_AT))
h.check(rg == 0 and rc == 0 and len(tc) > 0 and tg == tc,
        "%s and cpu checkpoints hold the same %d tensors (names, dtypes, shapes)"
        % (GPU, len(tc)), "%s: %d rows, cpu: %d rows" % (GPU, len(tg), len(tc)))

# ---- (c) generate across backends --------------------------------------------------------------
prompt = "In the"
texts = {}
for src_run, src, dst in ((run_g, GPU, "cpu"), (run_c, "cpu", GPU), (run_g, GPU, GPU)):
    p = h.run(["generate", "--checkpoint", ckpt(src_run, STEPS), "--prompt", prompt,
               "--max-tokens", "40", "--temperature", "0"] + backend_sets(dst), timeout=300)
    texts[(src, dst)] = p.stdout
    h.check(p.returncode == 0 and p.stdout.startswith(prompt) and len(p.stdout) > len(prompt) + 10,
            "generate on %s from the %s checkpoint" % (dst, src), p.stderr[-1500:])
# Greedy continuations of one checkpoint on two backends: informational (bf16 may flip a tie).
print("greedy from the %s checkpoint: on cpu %r, on %s %r"
      % (GPU, texts[(GPU, "cpu")][:60], GPU, texts[(GPU, GPU)][:60]))

h.finish()
