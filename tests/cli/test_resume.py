"""Resume is bit-exact: a run of 2N steps, and a run stopped at N and resumed (--resume auto)
to 2N, give identical losses, parameters and optimizer state. Also with dropout, an epoch
boundary inside the run, and 2 ranks."""
import numpy as np

from tulpar_test import Harness, newest_checkpoint, read_metrics, read_params, read_summary, tiny_mlp_config

h = Harness("resume")
# batch 2000 -> 30 steps per epoch: the 60-step run crosses an epoch boundary after the resume.
cfg = h.write_config("resume.cfg", tiny_mlp_config(steps=60, batch=2000, dropout=0.2, every=10))
groups = ("params", "optim/m", "optim/v")

full = h.path("full")
p = h.run(["train", cfg, "--run-dir", full], np=2, timeout=300)
h.check(p.returncode == 0, "uninterrupted 60-step run", p.stderr[-2000:])

part = h.path("part")
p = h.run(["train", cfg, "--run-dir", part, "--stop-at", "20"], np=2, timeout=300)
h.check(p.returncode == 0, "run stopped at step 20", p.stderr[-2000:])
h.check(newest_checkpoint(part).endswith("ckpt_00000020.h5"), "checkpoint at step 20 written")
p = h.run(["train", cfg, "--run-dir", part, "--resume", "auto"], np=2, timeout=300)
h.check(p.returncode == 0, "resumed run to step 60", p.stderr[-2000:])
h.check("resumed from" in p.stdout and "step 20" in p.stdout, "resume message names the step")

fa = read_params(newest_checkpoint(full), groups)
fb = read_params(newest_checkpoint(part), groups)
h.check(set(fa) == set(fb) and all(np.array_equal(fa[k], fb[k]) for k in fa),
        "parameters and AdamW moments bit-identical after resume")
ma = {r["step"]: r["loss"] for r in read_metrics(full)}
mb = {r["step"]: r["loss"] for r in read_metrics(part)}
h.check(all(ma[s] == mb[s] for s in ma) and len(ma) == 12, "every logged loss identical",
        "%s vs %s" % (ma, mb))
s = read_summary(part)
h.check(s["first_step"] == 20 and s["steps"] == 60 and s["steps_this_run"] == 40,
        "summary records the resumed span")

# Resuming a finished run does no training and leaves the checkpoint alone.
p = h.run(["train", cfg, "--run-dir", part, "--resume", "auto"], np=2, timeout=300)
h.check(p.returncode == 0 and "nothing to train" in p.stdout, "resuming a finished run is a no-op")
h.finish()
