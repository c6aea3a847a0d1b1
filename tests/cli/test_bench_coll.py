"""`tulpar bench allreduce|reducescatter|allgather|broadcast`: every collective on 2 ranks (and
reduce-scatter on 3, for the ring with more than one step) with small sizes, every element
checked by the benchmark itself (#wrong 0, exit 0), the JSON rows and the busbw formula; one
rank without mpirun; bad flags (exit 2 with a message); a forced wrong value
(TULPAR_BENCH_CORRUPT=1) giving #wrong > 0 and a non-zero exit; and --comm nccl: without a GPU
(or without CUDA in the build) a one-line error and exit 1; with a GPU, checked runs on device
buffers (one rank)."""
import json
import shutil
import subprocess

from tulpar_test import Harness

h = Harness("test_bench_coll")
SMALL = ["-b", "8", "-e", "1M", "-n", "3", "-w", "1"]
COLLS = ["allreduce", "reducescatter", "allgather", "broadcast"]
FACTOR = {"allreduce": lambda n: 2.0 * (n - 1) / n, "reducescatter": lambda n: (n - 1) / n,
          "allgather": lambda n: (n - 1) / n, "broadcast": lambda n: 1.0}


def table_rows(stdout):
    return [l.split() for l in stdout.splitlines() if l.strip() and l.split()[0].isdigit()]


def gpu_visible():
    if not shutil.which("nvidia-smi"):
        return False
    try:
        p = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0 and "GPU " in p.stdout


def check_run(tag, coll, np, extra, dtype="float", op="sum", root=0, nccl=False):
    out = h.path("%s.json" % tag)
    p = h.run(["bench", coll] + SMALL + extra + ["--json", out], np=np, timeout=120)
    if not h.check(p.returncode == 0, "%s exits 0" % tag, "rc=%s\n%s\n%s" % (p.returncode, p.stdout,
                                                                              p.stderr)):
        return
    rows = table_rows(p.stdout)
    wrong = [r[8] for r in rows] + [r[12] for r in rows]
    h.check(rows and all(w == "0" for w in wrong), "%s: #wrong all 0 in the table" % tag, wrong)
    h.check("# Avg bus bandwidth" in p.stdout, "%s prints the average bus bandwidth" % tag)
    with open(out) as f:
        j = json.load(f)
    n = 1 if np is None else np
    h.check(j["collective"] == coll and j["ranks"] == n and j["dtype"] == dtype,
            "%s: JSON header" % tag, str({k: j[k] for k in ("collective", "ranks", "dtype")}))
    h.check(j["op"] == (op if coll in ("allreduce", "reducescatter") else "none"),
            "%s: JSON op" % tag, j["op"])
    want_comm = ("nccl", "device") if nccl else ("self" if np is None else "mpi", "host")
    h.check((j["comm"], j["memory"]) == want_comm, "%s: JSON comm and memory" % tag,
            "%s vs %s" % ((j["comm"], j["memory"]), want_comm))
    sizes = [r["size"] for r in j["rows"]]
    esz = 8 if dtype == "double" else 4
    want = []
    b = 8
    while b <= 1 << 20:
        c = b // esz
        if coll in ("reducescatter", "allgather"):
            c = c // n * n
        want.append(c * esz)
        b *= 2
    h.check(sizes == want, "%s: one JSON row per size (nccl-tests sizes)" % tag, "%s vs %s" % (sizes,
                                                                                            want))
    h.check(len(rows) == len(j["rows"]), "%s: table and JSON have the same rows" % tag)
    ok_bw = ok_wrong = True
    h.check(all(r["root"] == (root if coll == "broadcast" else -1) for r in j["rows"]),
            "%s: root column" % tag)
    for r in j["rows"]:
        for mode in ("oop", "ip"):
            m = r[mode]
            ok_wrong &= m["wrong"] == 0
            if m["time_us"] > 0:
                algbw = r["size"] / 1e3 / m["time_us"]
                ok_bw &= abs(m["algbw"] - algbw) <= 1e-6 * max(1.0, algbw)
            ok_bw &= abs(m["busbw"] - m["algbw"] * FACTOR[coll](n)) <= 1e-9 * max(1.0, m["algbw"])
    h.check(ok_wrong, "%s: JSON wrong all 0" % tag)
    h.check(ok_bw, "%s: algbw = size/time and busbw = algbw x the nccl-tests factor" % tag)
    if coll == "allreduce" and n > 1 and not nccl:
        h.check(all(r["mpi"] and r["mpi"]["busbw"] > 0 for r in j["rows"]),
                "%s: bare MPI baseline in every row" % tag)
        h.check(isinstance(j["baseline_ok_at_1MiB"], bool), "%s: baseline verdict" % tag,
                str(j["baseline_ok_at_1MiB"]))
        h.check("PASS" in p.stdout or "FAIL" in p.stdout, "%s: baseline PASS/FAIL line" % tag)
    else:
        h.check(all(r["mpi"] is None for r in j["rows"]), "%s: no baseline columns" % tag)
    if coll == "allreduce" and nccl:
        h.check("Baseline: skipped" in p.stdout, "%s: baseline skipped on device buffers" % tag)


for coll in COLLS:
    check_run("%s-2" % coll, coll, 2, [])
check_run("allreduce-avg-double", "allreduce", 2, ["-o", "avg", "-d", "double"], "double", "avg")
check_run("allreduce-max", "allreduce", 2, ["-o", "max"], op="max")
for op in ("avg", "min", "max"):
    check_run("reducescatter-%s" % op, "reducescatter", 2, ["-o", op], op=op)
check_run("reducescatter-double", "reducescatter", 2, ["-d", "double"], "double")
check_run("reducescatter-3", "reducescatter", 3, ["-o", "avg"], op="avg")
check_run("allgather-3", "allgather", 3, [])
check_run("broadcast-root1", "broadcast", 2, ["-r", "1"], root=1)

# One rank, no launcher: the "self" communicator and "-" for the baseline.
for coll in COLLS:
    check_run("%s-1" % coll, coll, None, [])
p = h.run(["bench", "allreduce", "-b", "1M", "-e", "1M", "-n", "2", "-w", "0"])
h.check(p.returncode == 0 and " - " in p.stdout and "no MPI" in p.stdout,
        "1 rank: baseline columns show '-'", p.stdout)

# Bad flags: exit 2 and a message naming the problem.
for args, words in [(["-e", "4X"], "4X"), (["-b", "2M", "-e", "1M"], "larger"),
                    (["-o", "prod"], "prod"), (["-d", "half"], "half"), (["-n", "0"], "-n"),
                    (["-c", "2"], "-c"), (["-f", "1"], "-f"), (["--foo"], "--foo"),
                    (["-r", "5"], "root"), (["--comm", "bogus"], "bogus")]:
    p = h.run(["bench", "broadcast"] + args, np=2, timeout=60)
    h.check(p.returncode == 2 and words in p.stderr, "bad flag %s: exit 2 with a message" % args,
            "rc=%s %s" % (p.returncode, p.stderr[-400:]))
p = h.run(["bench", "reduce"])
h.check(p.returncode == 2 and "unknown benchmark" in p.stderr, "unknown benchmark: exit 2")
p = h.run(["bench", "--help"])
h.check(p.returncode == 0 and "reducescatter" in p.stdout and "-e 64M" in p.stdout,
        "bench --help documents the collectives")

# A forced wrong value is counted and fails the run.
for coll, np in [("allreduce", 2), ("reducescatter", 2), ("allgather", None)]:
    out = h.path("corrupt-%s.json" % coll)
    p = h.run(["bench", coll, "-b", "1K", "-e", "4K", "-n", "2", "-w", "0", "--json", out], np=np,
              env_extra={"TULPAR_BENCH_CORRUPT": "1"}, timeout=60)
    h.check(p.returncode not in (0, "timeout") and "FAILED" in p.stdout,
            "%s: corrupted value -> non-zero exit, FAILED" % coll, "rc=%s" % p.returncode)
    with open(out) as f:
        j = json.load(f)
    h.check(all(r["oop"]["wrong"] > 0 and r["ip"]["wrong"] > 0 for r in j["rows"]),
            "%s: corrupted value -> #wrong > 0 in every row" % coll)

# --comm nccl. Without a GPU (or a build without CUDA): one clear error line, exit 1, no crash or
# hang, under mpirun too. With a GPU and CUDA: every collective on device buffers, one rank (two
# ranks would need two GPUs).
NCCL = ["--comm", "nccl", "-b", "8", "-e", "64"]
p = h.run(["bench", "allreduce"] + NCCL, timeout=120)
if gpu_visible() and "built without CUDA" not in p.stderr:
    h.check(p.returncode == 0, "--comm nccl with a GPU: exit 0", "rc=%s\n%s" % (p.returncode,
                                                                             p.stderr[-2000:]))
    for coll in COLLS:
        check_run("%s-nccl" % coll, coll, None, ["--comm", "nccl"], nccl=True)
    check_run("allreduce-nccl-avg-double", "allreduce", None,
              ["--comm", "nccl", "-o", "avg", "-d", "double"], "double", "avg", nccl=True)
    out = h.path("corrupt-nccl.json")
    p = h.run(["bench", "reducescatter", "--comm", "nccl", "-b", "1K", "-e", "4K", "-n", "2", "-w",
               "0", "--json", out], env_extra={"TULPAR_BENCH_CORRUPT": "1"}, timeout=60)
    h.check(p.returncode not in (0, "timeout") and "FAILED" in p.stdout,
            "--comm nccl: corrupted value -> non-zero exit, FAILED", "rc=%s" % p.returncode)
else:
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    h.check(p.returncode == 1 and len(lines) == 1 and "nccl" in lines[0] and
            ("GPU" in lines[0] or "CUDA" in lines[0]) and "size" not in p.stdout,
            "--comm nccl without a GPU: exit 1 with one error line naming nccl and the GPU/CUDA",
            "rc=%s stdout=%r stderr=%r" % (p.returncode, p.stdout[-400:], p.stderr[-800:]))
    p = h.run(["bench", "allreduce"] + NCCL, np=2, timeout=120)
    errs = [l for l in p.stderr.splitlines() if l.startswith("tulpar: error")]
    h.check(p.returncode == 1 and len(errs) == 2 and all("nccl" in l for l in errs) and
            "signal" not in p.stderr.lower() and "aborting" not in p.stderr,
            "--comm nccl without a GPU, 2 ranks: exit 1, each rank says why, no crash or abort",
            "rc=%s %s" % (p.returncode, p.stderr[-1500:]))

h.finish()
