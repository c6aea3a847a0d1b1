"""Bad input gets a clear error naming what and where, a non-zero exit, every rank stops (no
hang: each run has a timeout) and no existing checkpoint is damaged."""
import os
import shutil

from tulpar_test import FASHION, Harness, newest_checkpoint, sha256, tiny_mlp_config

h = Harness("bad_input")

# A healthy run directory with checkpoints that every later failure must leave intact.
cfg = h.write_config("good.cfg", tiny_mlp_config(steps=20, batch=32, every=10))
run = h.path("run")
p = h.run(["train", cfg, "--run-dir", run], np=2, timeout=180)
h.check(p.returncode == 0, "set-up run succeeds", p.stderr[-2000:])
ckdir = os.path.join(run, "checkpoints")
before = {f: sha256(os.path.join(ckdir, f)) for f in os.listdir(ckdir)}


def expect_fail(label, args, code, needles, np=2, cfg_text=None):
    if cfg_text is not None:
        path = h.write_config(label.replace(" ", "_") + ".cfg", cfg_text)
        args = [a if a != "CFG" else path for a in args]
    p = h.run(args, np=np, timeout=120)
    if p.returncode == "timeout":
        h.check(False, "%s: no hang" % label, "timed out")
        return p
    ok = p.returncode != 0 and (code is None or p.returncode == code)
    h.check(ok, "%s: exit %s" % (label, p.returncode), "expected %s" % code)
    for n in needles:
        h.check(n in p.stderr, "%s: message mentions %r" % (label, n), p.stderr[-1500:])
    return p


# --- command line
expect_fail("unknown command", ["fly"], 2, ["unknown command 'fly'"], np=None)
expect_fail("unknown option", ["train", cfg, "--run-dir", run, "--frobnicate"], 2,
            ["unknown option '--frobnicate'"])
expect_fail("missing config argument", ["train"], 2, ["missing CONFIG"])
expect_fail("bad --stop-at", ["train", cfg, "--stop-at", "x"], 2, ["--stop-at"])
expect_fail("eval without checkpoint", ["eval", cfg], 2, ["--checkpoint"])

# --- config
expect_fail("missing config file", ["train", h.path("nope.cfg"), "--run-dir", run], 3,
            ["nope.cfg"])
expect_fail("unknown key", ["train", "CFG", "--run-dir", run], 3, ["unknown_key.cfg:3", "train.lrr"],
            cfg_text='model: { type = "mlp"; };\n\ntrain: { lrr = 0.1; };\n')
expect_fail("wrong type", ["train", "CFG", "--run-dir", run], 3, ["wrong_type.cfg:2", "train.lr"],
            cfg_text='model: { type = "mlp"; };\ntrain: { lr = "fast"; };\n')
expect_fail("out of range", ["train", "CFG", "--run-dir", run], 3, ["out_of_range.cfg:1", "model.dropout"],
            cfg_text='model: { type = "mlp"; dropout = 1.5; };\n')
expect_fail("syntax error", ["train", "CFG", "--run-dir", run], 3, ["syntax_error.cfg:2"],
            cfg_text='model: { type = "mlp"; };\ntrain: { lr = ; };\n')
expect_fail("bad --set key", ["train", cfg, "--run-dir", run, "--set", "train.lrr=1"], 3,
            ["--set", "train.lrr"])
expect_fail("bad --set value", ["train", cfg, "--run-dir", run, "--set", "train.lr=abc"], 3,
            ["--set", "train.lr"])
expect_fail("batch not divisible by ranks", ["train", cfg, "--run-dir", run, "--set", "train.batch=33"],
            3, ["train.batch = 33", "2 ranks"])

# --- data
expect_fail("missing data directory", ["train", cfg, "--run-dir", run, "--set",
                                        "data.dir=\"%s\"" % h.path("no-data")], 4, ["no-data"])
bad_data = h.path("bad-data")
os.makedirs(bad_data)
for f in os.listdir(FASHION):
    shutil.copy(os.path.join(FASHION, f), bad_data)
victim = os.path.join(bad_data, "train-images-idx3-ubyte.gz")
with open(victim, "r+b") as f:
    f.truncate(os.path.getsize(victim) // 2)
expect_fail("truncated data file", ["train", cfg, "--run-dir", run, "--set",
                                     "data.dir=\"%s\"" % bad_data], 4, ["train-images-idx3-ubyte"])
with open(os.path.join(bad_data, "t10k-labels-idx1-ubyte.gz"), "wb") as f:
    f.write(b"this is not gzip and not idx either")
expect_fail("garbage label file", ["eval", cfg, "--checkpoint", newest_checkpoint(run), "--set",
                                    "data.dir=\"%s\"" % bad_data], 4, ["t10k-labels-idx1-ubyte"])

# --- checkpoints
good = newest_checkpoint(run)
trunc = h.path("truncated.h5")
shutil.copy(good, trunc)
with open(trunc, "r+b") as f:
    f.truncate(os.path.getsize(trunc) // 2)
expect_fail("truncated checkpoint (eval)", ["eval", cfg, "--checkpoint", trunc], 5, ["truncated.h5"])
expect_fail("truncated checkpoint (resume)", ["train", cfg, "--run-dir", h.path("r2"), "--resume", trunc],
            5, ["truncated.h5"])
flipped = h.path("flipped.h5")
shutil.copy(good, flipped)
import h5py
with h5py.File(flipped, "r") as f:  # flip bytes inside params/fc1.weight's data
    offset = f["params/fc1.weight"].id.get_offset() + 1000
with open(flipped, "r+b") as f:
    f.seek(offset)
    b = f.read(16)
    f.seek(offset)
    f.write(bytes(x ^ 0xFF for x in b))
expect_fail("corrupt checkpoint", ["eval", cfg, "--checkpoint", flipped], 5, ["flipped.h5", "checksum"])
expect_fail("checkpoint of another model", ["eval", cfg, "--checkpoint", good, "--set",
                                             "model.hidden=[16]"], 5, ["fc1.weight"])
expect_fail("missing checkpoint", ["eval", cfg, "--checkpoint", h.path("none.h5")], 5, ["none.h5"])
with open(h.path("garbage.h5"), "wb") as f:
    f.write(b"\x89HDF\r\n\x1a\n" + os.urandom(4096))
expect_fail("inspect garbage", ["ckpt", "inspect", h.path("garbage.h5")], 5, ["garbage.h5"], np=None)

# --resume auto skips a corrupt newest checkpoint and continues from the previous valid one.
auto_run = h.path("auto")
shutil.copytree(run, auto_run)
newest = newest_checkpoint(auto_run)
with open(newest, "r+b") as f:
    f.truncate(1000)
p = h.run(["train", cfg, "--run-dir", auto_run, "--resume", "auto", "--set", "train.steps=30"], np=2,
          timeout=180)
h.check(p.returncode == 0, "resume auto past a corrupt newest checkpoint", p.stderr[-1500:])
h.check("ckpt_00000020.h5" in p.stderr and "ckpt_00000010.h5" in p.stdout,
        "warned about the corrupt file and resumed from the previous one")

after = {f: sha256(os.path.join(ckdir, f)) for f in os.listdir(ckdir)}
h.check(before == after, "original checkpoints untouched by every failure")
h.finish()
