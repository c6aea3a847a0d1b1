"""Data parallel: 2 ranks and 1 rank with the same global batch give the same parameters after
20 steps (relative error < 1e-5), and 2-rank runs are bitwise repeatable. Dropout is on: its
masks are keyed by an example's global position, so they do not depend on the rank split."""
import numpy as np

from tulpar_test import Harness, newest_checkpoint, read_metrics, read_params, tiny_mlp_config

h = Harness("data_parallel")
cfg = h.write_config("dp.cfg", tiny_mlp_config(steps=20, batch=32, dropout=0.1))

runs = {}
for label, np_ranks in (("1rank", None), ("2rank_a", 2), ("2rank_b", 2)):
    run_dir = h.path(label)
    p = h.run(["train", cfg, "--run-dir", run_dir], np=np_ranks, timeout=180)
    if not h.check(p.returncode == 0, "train %s exits 0" % label, p.stderr[-2000:]):
        h.finish()
    runs[label] = run_dir

one = read_params(newest_checkpoint(runs["1rank"]), ("params", "optim/m", "optim/v"))
a = read_params(newest_checkpoint(runs["2rank_a"]), ("params", "optim/m", "optim/v"))
b = read_params(newest_checkpoint(runs["2rank_b"]), ("params", "optim/m", "optim/v"))

h.check(set(one) == set(a), "same tensors in 1-rank and 2-rank checkpoints")
worst = 0.0
for name in one:
    if not name.startswith("params/"):
        continue
    ref = one[name].astype(np.float64)
    err = np.max(np.abs(a[name] - ref)) / max(np.max(np.abs(ref)), 1e-30)
    worst = max(worst, err)
h.check(worst < 1e-5, "2 ranks == 1 rank after 20 steps (max relative error %.3g < 1e-5)" % worst)

same = all(np.array_equal(a[k], b[k]) for k in a)
h.check(same, "two 2-rank runs give bitwise-identical parameters and optimizer state")
la = [r["loss"] for r in read_metrics(runs["2rank_a"])]
lb = [r["loss"] for r in read_metrics(runs["2rank_b"])]
h.check(la == lb and len(la) == 4, "two 2-rank runs log identical losses", "%s vs %s" % (la, lb))
l1 = [r["loss"] for r in read_metrics(runs["1rank"])]
h.check(np.allclose(l1, la, rtol=1e-5), "1-rank and 2-rank losses agree", "%s vs %s" % (l1, la))
h.finish()
