"""`tulpar bench suite --quick` end to end (1 and 2 ranks, 2 repeats): report.json against the
schema documented in benchmarks/README.md (key fields present, measured numbers positive,
every median between its min and max, the prediction labelled as such), report.csv parses and
matches the measurements, report.html is self-contained (no scripts, no external loads) and, in
headless Chromium (Debian's chromium; skipped with a message when missing), loads without
console errors and shows the SVG plots. Then `tulpar report` on the report, on two run
directories and on both together (text, --csv, --html), `tulpar bench ckpt` on its own, and the
clear refusals of bad arguments."""
import csv
import json
import math
import os
import re
import shutil
import subprocess

from tulpar_test import Harness

h = Harness("test_bench_suite")
out = h.path("suite")

p = h.run(["bench", "suite", "--quick", "--out", out], timeout=800)
ok = h.check(p.returncode == 0, "bench suite --quick exits 0",
             "rc=%s\n%s\n%s" % (p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
if not ok:
    h.finish()
print(p.stdout[-1500:])
for f in ("report.json", "report.csv", "report.html"):
    h.check(os.path.isfile(os.path.join(out, f)), "%s written" % f)
with open(os.path.join(out, "report.json")) as f:
    rep = json.load(f)


def pos(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def stat_ok(st):
    return isinstance(st, dict) and all(pos(st[k]) for k in ("median", "min", "max")) and \
        st["min"] <= st["median"] <= st["max"]


# ---- report.json: the documented schema --------------------------------------------------------
top = ["schema_version", "kind", "mode", "repeats", "started_at", "finished_at", "duration_s",
       "job_id", "machine", "versions", "settings", "notes", "collectives", "training",
       "checkpoint", "inference", "cost", "prediction", "measurements"]
h.check(all(k in rep for k in top), "report.json has every top-level key",
        str([k for k in top if k not in rep]))
h.check(rep["schema_version"] == 1 and rep["kind"] == "tulpar-bench-suite",
        "schema_version 1, kind tulpar-bench-suite")
h.check(rep["mode"] == "quick" and rep["repeats"] == 2, "quick mode, 2 repeats")
h.check(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", rep["started_at"] or "") and
        rep["finished_at"] >= rep["started_at"] and pos(rep["duration_s"]), "start/end time")
h.check(rep["job_id"] == (os.environ.get("SLURM_JOB_ID") or "none"), "job id", rep["job_id"])
m = rep["machine"]
h.check(m["cpu_model"] and pos(m["logical_cpus"]) and pos(m["memory_bytes"]) and
        isinstance(m["gpu_count"], int) and isinstance(m["gpus"], list) and m["hostname"],
        "machine: CPU model, cores, memory, GPUs", str(m))
v = rep["versions"]
h.check(all(k in v for k in ("tulpar", "mpi", "hdf5", "nccl", "cuda_driver", "cuda_runtime")),
        "versions: tulpar, MPI, HDF5, NCCL, CUDA keys", str(v))
h.check(v["tulpar"] and v["mpi"] and v["hdf5"], "versions: tulpar, MPI and HDF5 known", str(v))
s = rep["settings"]
h.check(s["ranks"] == [1, 2] and s["launcher"] == "mpirun" and s["backend"] == "cpu",
        "settings: ranks 1,2, mpirun, cpu", str(s))

coll = rep["collectives"]["results"]
h.check(sorted(coll) == ["allgather", "allreduce", "reducescatter"] and
        all(list(c) == ["2"] for c in coll.values()), "collectives: three sweeps on 2 ranks")
good = True
for name, by_n in coll.items():
    rows = by_n["2"]["rows"]
    good &= rows[0]["size"] <= 8 and rows[-1]["size"] == 4 << 20
    for r in rows:
        for mode in ("oop", "ip"):
            good &= all(stat_ok(r[mode][k]) for k in ("time_us", "algbw", "busbw"))
            good &= r[mode]["wrong"] == 0
    good &= stat_ok(by_n["2"]["avg_busbw"])
h.check(good, "collectives: 8 B to 4 MiB, time/algbw/busbw median within [min, max], 0 wrong")

tr = rep["training"]["models"]
h.check(sorted(tr) == ["cnn", "gpt2_124m", "gpt_small", "mlp"], "training: four models",
        str(sorted(tr)))
good = True
for model, mo in tr.items():
    good &= pos(mo["params"]) and pos(mo["steps"])
    for series in ("weak", "strong"):
        pts = mo["series"][series]
        good &= [pt["ranks"] for pt in pts] == [1, 2]
        for pt in pts:
            for k in ("samples_per_s", "tokens_per_s", "step_time_ms", "efficiency",
                      "achieved_gflops"):
                good &= stat_ok(pt[k])
            good &= len(pt["loss_curve"]) >= 2 and pos(pt["devices"])
        good &= abs(pts[0]["efficiency"]["median"] - 1.0) < 1e-9
    good &= mo["series"]["weak"][1]["global_batch"] == 2 * mo["series"]["weak"][0]["global_batch"]
    good &= mo["series"]["strong"][1]["global_batch"] == mo["series"]["strong"][0]["global_batch"]
h.check(good, "training: weak and strong series on 1 and 2 ranks, positive figures, loss curves")
h.check(tr["gpt2_124m"]["params"] > 120e6 and "note" in tr["gpt2_124m"],
        "training: GPT-2 124M shape, with the shortened context said")

ck = rep["checkpoint"]
h.check(all(stat_ok(ck[k + "_GBps"]) for k in ("hdf5_write", "hdf5_read", "plain_write",
                                                "plain_read")) and
        stat_ok(ck["write_ratio"]) and stat_ok(ck["read_ratio"]) and ck["bytes"] >= 40e6,
        "checkpoint: write/read GB/s for HDF5 and plain, ratios", str(ck)[:500])
inf = rep["inference"]
h.check(sorted({e["model"] for e in inf["classifiers"]}) == ["cnn", "mlp"] and
        all(stat_ok(e["images_per_s"]) for e in inf["classifiers"]), "inference: images/s")
h.check([e["model"] for e in inf["generation"]][:1] == ["gpt_small"] and
        all(stat_ok(e["tokens_per_s"]) for e in inf["generation"]), "inference: tokens/s")
cost = rep["cost"]
h.check({e["model"] for e in cost["training_gpt"]} == {"gpt_small", "gpt2_124m"} and
        {e["model"] for e in cost["training_classifier"]} == {"mlp", "cnn"} and
        cost["generation"] and
        all(stat_ok(e["device_hours"]) for k in ("training_gpt", "training_classifier",
                                                  "generation") for e in cost[k]) and
        cost["device"] == "CPU core", "cost: device-hours per 1e9 tokens, per epoch, per 1e6 "
        "generated tokens")
pred = rep["prediction"]
h.check(pred["available"] and "PREDICTION" in pred["label"] and
        [pt["devices"] for pt in pred["points"]] == [8, 64, 512], "prediction at 8, 64, 512",
        str(pred)[:500])
h.check(all(0 < pt[a]["efficiency_no_overlap"] <= pt[a]["efficiency_full_overlap"] <= 1
            for pt in pred["points"] for a in ("ring", "tree")) and
        pos(pred["inputs"]["alpha_s"]) and pos(pred["inputs"]["beta_s_per_byte"]) and
        pos(pred["inputs"]["compute_s_per_step"]) and pred["model"] == "gpt2_124m" and
        "ring" in pred["formulas"] and "tree" in pred["formulas"],
        "prediction: efficiencies in (0, 1], inputs and formulas recorded")

meas = rep["measurements"]
bad = [x for x in meas if not (pos(x["median"]) and pos(x["min"]) and pos(x["max"]) and
                               x["min"] <= x["median"] <= x["max"])]
h.check(meas and not bad, "measurements: %d, all positive, min <= median <= max" % len(meas),
        str(bad[:3]))
h.check({x["section"] for x in meas} >= {"collectives", "training", "checkpoint", "inference",
                                         "cost", "prediction"}, "measurements cover every section")

# ---- report.csv -----------------------------------------------------------------------------
with open(os.path.join(out, "report.csv"), newline="") as f:
    rows = list(csv.reader(f))
h.check(rows[0] == ["section", "name", "ranks", "metric", "median", "min", "max", "unit"],
        "report.csv header", rows[0])
good = len(rows) - 1 == len(meas)
for r in rows[1:]:
    try:
        good &= float(r[5]) <= float(r[4]) <= float(r[6]) and int(r[2]) >= 1
    except (ValueError, IndexError):
        good = False
h.check(good, "report.csv: one parseable row per measurement")

# ---- report.html --------------------------------------------------------------------------
page = open(os.path.join(out, "report.html")).read()
h.check("<script" not in page.lower() and
        not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I) and
        "@import" not in page and "url(http" not in page,
        "report.html: no scripts and no external loads")
h.check(page.count("<svg") >= 5 and "PREDICTION" in page, "report.html: inline SVG plots and "
        "the labelled prediction")
chromium = shutil.which("chromium") or shutil.which("chromium-browser")
if not chromium:
    print("SKIP: chromium is not installed (apt-get install chromium): the page was not "
          "loaded in a browser")
else:
    url = "file://" + os.path.join(out, "report.html")
    args = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--user-data-dir=" + h.path("chromium-profile"), "--enable-logging=stderr",
            "--v=0"]
    try:
        d = subprocess.run(args + ["--dump-dom", url], capture_output=True, text=True,
                           errors="replace", timeout=180)
        shot = h.path("report.png")
        sh = subprocess.run(args + ["--window-size=1280,4000", "--screenshot=" + shot, url],
                            capture_output=True, text=True, errors="replace", timeout=180)
    except subprocess.TimeoutExpired:
        d = sh = None
    if h.check(d is not None and d.returncode == 0, "chromium loads report.html",
               d and d.stderr[-2000:]):
        console = [l for l in (d.stderr + sh.stderr).splitlines()
                   if "CONSOLE" in l or "Uncaught" in l]
        h.check(not console, "chromium: no console errors", "\n".join(console[:5]))
        h.check(d.stdout.count("<svg") >= 5 and "Bus bandwidth" in d.stdout and
                "Loss curves" in d.stdout, "chromium DOM: the SVG plots are there")
        h.check(sh.returncode == 0 and os.path.exists(shot) and os.path.getsize(shot) > 50000,
                "chromium renders a screenshot", sh.stderr[-1000:])

# ---- tulpar report --------------------------------------------------------------------------
p = h.run(["report", os.path.join(out, "report.json")], timeout=120)
h.check(p.returncode == 0 and "training: mlp weak, 2 rank(s), samples_per_s" in p.stdout and
        "PREDICTION" in p.stdout, "tulpar report REPORT.json", p.stdout[-2000:] + p.stderr)
runs = [os.path.join(out, pt["run_dirs"][0]) for pt in tr["mlp"]["series"]["weak"]]
csv_out, html_out = h.path("cmp.csv"), h.path("cmp.html")
p = h.run(["report"] + runs + ["--csv", csv_out, "--html", html_out], timeout=120)
h.check(p.returncode == 0 and "samples/s" in p.stdout and "2nd/1st" in p.stdout,
        "tulpar report RUN_DIR RUN_DIR (text)", p.stdout[-2000:] + p.stderr)
if os.path.exists(csv_out):
    with open(csv_out, newline="") as f:
        crow = list(csv.reader(f))
    ranks_row = [r for r in crow if r and r[0] == "ranks"]
    h.check(crow[0][:2] == ["figure", "unit"] and len(crow[0]) == 5 and
            ranks_row and ranks_row[0][2:4] == ["1", "2"], "tulpar report --csv", crow[:3])
else:
    h.check(False, "tulpar report --csv wrote the file")
h.check(os.path.exists(html_out) and "<table>" in open(html_out).read(),
        "tulpar report --html wrote a page")
p = h.run(["report", out, runs[0], "--all"], timeout=120)
h.check(p.returncode == 0 and "busbw_ip_8B" in p.stdout and "final training loss" in p.stdout,
        "tulpar report SUITE_DIR RUN_DIR --all (mixed inputs)", p.stdout[-1500:] + p.stderr)
p = h.run(["report", h.path("no-such-dir")], timeout=60)
h.check(p.returncode == 2 and "no-such-dir" in p.stderr, "tulpar report: missing input exits 2",
        p.stderr)
p = h.run(["report", os.path.join(out, "report.json")], timeout=60,
          env_extra={"TULPAR_SOURCE_DIR": h.path("nowhere")})
h.check(p.returncode == 1 and "nowhere/benchmarks/report_compare.py" in p.stderr and
        "TULPAR_SOURCE_DIR" in p.stderr, "wrong TULPAR_SOURCE_DIR: clear error", p.stderr)

# ---- tulpar bench ckpt on its own, and refusals ---------------------------------------------
js = h.path("ckpt.json")
p = h.run(["bench", "ckpt", "--bytes", "3M", "--dir", h.tmp, "--repeat", "2", "--json", js],
          timeout=120)
if h.check(p.returncode == 0, "bench ckpt exits 0", p.stderr):
    j = json.load(open(js))
    h.check(j["bytes"] == 3 << 20 and len(j["runs"]) == 2 and
            all(pos(r[k]) for r in j["runs"] for k in ("hdf5_write_GBps", "hdf5_read_GBps",
                                                       "plain_write_GBps", "plain_read_GBps")) and
            j["hdf5_file_bytes"] > j["bytes"], "bench ckpt JSON")
    h.check(not [f for f in os.listdir(h.tmp) if f.startswith("tulpar_bench_")],
            "bench ckpt removes its files")
for args, what in ((["bench", "ckpt", "--bytes", "12Q"], "--bytes"),
                   (["bench", "ckpt", "--dir", h.path("absent")], "absent"),
                   (["bench", "ckpt", "--repeat", "0"], "--repeat"),
                   (["bench", "suite", "--ranks", "0,2", "--out", h.path("x")], "--ranks"),
                   (["bench", "suite", "--models", "resnet", "--out", h.path("x")], "resnet"),
                   (["bench", "suite", "--quick", "--out", out], "already holds")):
    p = h.run(args, timeout=60)
    h.check(p.returncode == 2 and what in p.stderr, "refused: %s" % " ".join(args[:3]),
            "rc=%s %s" % (p.returncode, p.stderr))
h.finish()
