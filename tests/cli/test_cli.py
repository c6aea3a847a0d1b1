"""The command line itself: help for every subcommand, version, config printing and the
reference table, without MPI."""
from tulpar_test import Harness

h = Harness("cli")
p = h.run(["--help"])
h.check(p.returncode == 0 and "train" in p.stdout and "infer" in p.stdout, "tulpar --help")
for sub in ("train", "eval", "infer", "ckpt", "config", "bench"):
    p = h.run([sub, "--help"])
    h.check(p.returncode == 0 and ("usage: tulpar " + sub) in p.stdout, "tulpar %s --help" % sub)
p = h.run([])
h.check(p.returncode == 2 and "usage" in p.stderr, "no arguments: usage on stderr, exit 2")
p = h.run(["--version"])
h.check(p.returncode == 0 and "tulpar" in p.stdout, "--version")
p = h.run(["config", "--reference"])
h.check(p.returncode == 0 and "`train.lr`" in p.stdout, "config --reference prints the key table")
import os
cfg = os.path.join(h.source, "configs", "mlp_fashion.cfg")
p = h.run(["config", cfg, "--set", "train.lr=0.5"])
h.check(p.returncode == 0 and "lr = 0.5" in p.stdout, "config prints the resolved config with overrides")
p = h.run(["bench", "gemm", "--sizes", "64,128", "--iters", "2", "--json", h.path("g.json")])
h.check(p.returncode == 0 and "peak" in p.stdout and os.path.exists(h.path("g.json")), "bench gemm")
# README's config reference is exactly what the binary prints, and its two commands exist.
readme = open(os.path.join(h.source, "README.md")).read()
ref = h.run(["config", "--reference"]).stdout
h.check(ref.strip() in readme, "README config reference equals `tulpar config --reference`")
for cmd in ("tools/quickstart.sh", "tools/test.sh"):
    h.check(cmd in readme and os.access(os.path.join(h.source, cmd), os.X_OK), "README command %s exists" % cmd)
h.check("tools/test.sh" in open(os.path.join(h.source, ".ci", "run")).read(), ".ci/run runs README's command 2")
h.finish()
