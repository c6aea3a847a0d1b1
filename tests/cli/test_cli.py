"""The command line itself: help for every subcommand, version, config printing and the
reference table, without MPI."""
import json
import os

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
cfg = os.path.join(h.source, "configs", "mlp_fashion.cfg")
p = h.run(["config", cfg, "--set", "train.lr=0.5"])
h.check(p.returncode == 0 and "lr = 0.5" in p.stdout, "config prints the resolved config with overrides")
p = h.run(["bench", "gemm", "--sizes", "64,128", "--iters", "2", "--json", h.path("g.json")])
h.check(p.returncode == 0 and "peak" in p.stdout and os.path.exists(h.path("g.json")), "bench gemm")
# The GPT step's products at (tiny) model shapes, float32 operands against compute copies.
p = h.run(["bench", "gemm", "--gpt", "--tokens", "64", "--d-model", "32", "--vocab", "257", "--layers", "2",
           "--iters", "2", "--json", h.path("gg.json")])
ok = p.returncode == 0 and os.path.exists(h.path("gg.json"))
gg = json.load(open(h.path("gg.json"))) if ok else {}
prods = gg.get("products", [])
h.check(ok and len(prods) == 19 and all(q["ms_f32"] > 0 and q["ms_compute"] > 0 for q in prods) and
        [q["lda"] for q in prods if q["name"].startswith("lm head dX")] == [257, 264, 320] and
        gg["step_products_ms_f32"] > 0 and "one step's products" in p.stdout,
        "bench gemm --gpt: 19 products timed both ways, padded dlogits rows", p.stderr[-500:])
lin = gg.get("linear", [])
h.check(len(lin) == 6 and all(q["ms_separate"] > 0 and q["ms_fused"] > 0 for q in lin) and
        [q["out"] for q in lin if q["name"].startswith("mlp fc")] == [128] and
        gg["step_linear_ms_fused"] > 0 and "one step's fused linear ops" in p.stdout,
        "bench gemm --gpt: the 6 fused linear ops timed separate and fused", p.stderr[-500:])
p = h.run(["bench", "gemm", "--gpt", "--precision", "bf16"])
h.check(p.returncode != 0 and "needs the cuda backend" in p.stderr, "bench gemm --gpt: bf16 on cpu refused")
# README's config reference is exactly what the binary prints, and its two commands exist.
readme = open(os.path.join(h.source, "README.md")).read()
ref = h.run(["config", "--reference"]).stdout
h.check(ref.strip() in readme, "README config reference equals `tulpar config --reference`")
for cmd in ("tools/quickstart.sh", "tools/test.sh"):
    h.check(cmd in readme and os.access(os.path.join(h.source, cmd), os.X_OK), "README command %s exists" % cmd)
h.check("tools/test.sh" in open(os.path.join(h.source, ".ci", "run")).read(), ".ci/run runs README's command 2")
h.finish()
