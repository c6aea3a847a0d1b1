"""Writers for the benchmark suite's report: report.csv (one row per measurement) and
report.html, a self-contained page (inline CSS, plots as inline SVG drawn by matplotlib, no
scripts, no external URLs) that opens in a browser without network access. Also the small HTML
helpers `tulpar report` (report_compare.py) uses for its side-by-side page."""
import csv
import html
import io
import math
import re

CSV_COLUMNS = ("section", "name", "ranks", "metric", "median", "min", "max", "unit")

CSS = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #aaa; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #eee; } td.l, th.l { text-align: left; }
.note { color: #555; font-size: 0.9em; }
.prediction { border: 3px dashed #b35900; background: #fff6ec; padding: 0.2em 1em 1em 1em;
              margin-top: 1.5em; }
.prediction h2 { color: #b35900; border: none; }
.plot { margin: 0.5em 0; } .plot svg { max-width: 100%; height: auto; }
.warn { color: #a00; }
"""


def esc(x):
    return html.escape("" if x is None else str(x))


def fmt(v, digits=4):
    """A number with `digits` significant digits, '-' for missing."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        if v == 0:
            return "0"
        a = abs(v)
        if a >= 10 ** digits:
            return "%.0f" % v
        if a < 1e-3:
            return "%.*g" % (digits, v)
        return ("%%.%df" % max(0, digits - 1 - int(math.floor(math.log10(a))))) % v
    return str(v)


def fmt_stat(st, digits=4, scale=1.0):
    if not st:
        return "-"
    if st["min"] == st["max"]:
        return fmt(st["median"] * scale, digits)
    return "%s <span class=note>[%s&ndash;%s]</span>" % (
        fmt(st["median"] * scale, digits), fmt(st["min"] * scale, digits),
        fmt(st["max"] * scale, digits))


def table(headers, rows, left=1):
    """HTML table; the first `left` columns are left-aligned. Cells are already HTML."""
    out = ["<table><tr>"]
    out += ["<th%s>%s</th>" % (" class=l" if i < left else "", esc(h))
            for i, h in enumerate(headers)]
    out.append("</tr>")
    for r in rows:
        out.append("<tr>" + "".join("<td%s>%s</td>" % (" class=l" if i < left else "", c)
                                    for i, c in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def page(title, body):
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>\n<title>%s</title>\n"
            "<style>%s</style></head><body>\n%s\n</body></html>\n" % (esc(title), CSS, body))


def size_label(n):
    for unit, s in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= s and n % s == 0:
            return "%d%s" % (n // s, unit)
    return "%d" % n


# ---- CSV --------------------------------------------------------------------------------------


def write_csv(rep, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for m in rep.get("measurements", []):
            w.writerow([m["section"], m["name"], m["ranks"], m["metric"], repr(m["median"]),
                        repr(m["min"]), repr(m["max"]), m["unit"]])


# ---- plots ------------------------------------------------------------------------------------


def _mpl():
    try:
        import matplotlib
        matplotlib.use("Agg")
        matplotlib.rcParams["svg.fonttype"] = "none"  # text as <text>: small, no glyph ids
        matplotlib.rcParams["svg.hashsalt"] = "tulpar"
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        return None


_svg_count = [0]


def svg(plt, fig):
    """The figure as an inline <svg> element, its ids made unique within the page."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)  # RDF, creator
    _svg_count[0] += 1
    pre = "f%d-" % _svg_count[0]
    text = re.sub(r'\bid="([^"]+)"', lambda m: 'id="%s%s"' % (pre, m.group(1)), text)
    text = re.sub(r'url\(#([^)]+)\)', lambda m: "url(#%s%s)" % (pre, m.group(1)), text)
    text = re.sub(r'href="#([^"]+)"', lambda m: 'href="#%s%s"' % (pre, m.group(1)), text)
    return "<div class=plot>%s</div>" % text


def plot_busbw(plt, coll):
    res = coll.get("results") or {}
    if not res:
        return ""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for name, by_n in res.items():
        for n, agg in sorted(by_n.items(), key=lambda kv: int(kv[0])):
            xs = [r["size"] for r in agg["rows"]]
            med = [r["ip"]["busbw"]["median"] for r in agg["rows"]]
            lo = [r["ip"]["busbw"]["min"] for r in agg["rows"]]
            hi = [r["ip"]["busbw"]["max"] for r in agg["rows"]]
            line, = ax.plot(xs, med, marker=".", label="%s, %s ranks" % (name, n))
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("bus bandwidth (GB/s, in place)")
    ax.set_title("Bus bandwidth vs message size (median, band: min-max)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return svg(plt, fig)


def plot_scaling(plt, tr):
    models = tr.get("models") or {}
    if not models:
        return ""
    n = len(models)
    fig, axes = plt.subplots(2, n, figsize=(3.4 * n + 1, 6.4), squeeze=False)
    for j, (model, m) in enumerate(models.items()):
        ax, ax2 = axes[0][j], axes[1][j]
        gpt = m["kind"] == "gpt"
        for name, pts in m["series"].items():
            xs = [p["ranks"] for p in pts]
            key = "tokens_per_s" if gpt else "samples_per_s"
            med = [p[key]["median"] for p in pts]
            err = [[p[key]["median"] - p[key]["min"] for p in pts],
                   [p[key]["max"] - p[key]["median"] for p in pts]]
            ax.errorbar(xs, med, yerr=err, marker="o", capsize=3, label=name)
            eff = [p["efficiency"]["median"] for p in pts]
            eerr = [[p["efficiency"]["median"] - p["efficiency"]["min"] for p in pts],
                    [p["efficiency"]["max"] - p["efficiency"]["median"] for p in pts]]
            ax2.errorbar(xs, eff, yerr=eerr, marker="o", capsize=3, label=name)
        ax.set_title(model, fontsize=10)
        ax.set_ylabel("tokens/s" if gpt else "samples/s")
        ax2.axhline(1.0, color="gray", linestyle="--", linewidth=1)
        ax2.set_ylabel("efficiency")
        ax2.set_xlabel("ranks")
        for a in (ax, ax2):
            a.set_xscale("log", base=2)
            a.grid(True, alpha=0.3)
            a.legend(fontsize=7)
    fig.suptitle("Training throughput and scaling efficiency (median, bars: min-max)")
    fig.tight_layout()
    return svg(plt, fig)


def plot_loss(plt, tr):
    models = tr.get("models") or {}
    if not models:
        return ""
    n = len(models)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n + 1, 3.2), squeeze=False)
    for j, (model, m) in enumerate(models.items()):
        ax = axes[0][j]
        for name, pts in m["series"].items():
            for p in pts:
                c = p.get("loss_curve") or []
                if c:
                    ax.plot([s for s, _ in c], [l for _, l in c],
                            label="%s, %d rank(s), batch %d" % (name, p["ranks"],
                                                                p["global_batch"]))
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle("Loss curves (first repeat of each configuration)")
    fig.tight_layout()
    return svg(plt, fig)


def plot_ckpt(plt, ck):
    if not ck:
        return ""
    keys = ["hdf5_write", "plain_write", "hdf5_read", "plain_read"]
    labels = ["checkpoint\nwrite", "plain write\n+ fsync", "checkpoint\nread", "plain\nread"]
    med = [ck[k + "_GBps"]["median"] for k in keys]
    err = [[ck[k + "_GBps"]["median"] - ck[k + "_GBps"]["min"] for k in keys],
           [ck[k + "_GBps"]["max"] - ck[k + "_GBps"]["median"] for k in keys]]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.bar(range(4), med, yerr=err, capsize=4, color=["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78"])
    ax.set_xticks(range(4))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("GB/s")
    ax.set_title("Checkpoint bandwidth, %s MB (median, bars: min-max)" % fmt(ck["bytes"] / 1e6, 3))
    ax.grid(True, axis="y", alpha=0.3)
    return svg(plt, fig)


def plot_prediction(plt, pred):
    if not pred or not pred.get("available"):
        return ""
    inp = pred["inputs"]
    alpha, beta, c, nb = inp["alpha_s"], inp["beta_s_per_byte"], inp["compute_s_per_step"], \
        inp["gradient_bytes"]
    ps = [2 ** k for k in range(1, 11)]
    ring = [c / (c + 2 * (p - 1) * alpha + 2.0 * (p - 1) / p * nb * beta) for p in ps]
    tree = [c / (c + 2 * math.log2(p) * alpha + 2.0 * nb * beta) for p in ps]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(ps, ring, marker=".", label="ring all-reduce")
    ax.plot(ps, tree, marker=".", linestyle="--", label="tree all-reduce")
    for pt in pred["points"]:
        ax.annotate("%.2f" % pt["ring"]["efficiency_no_overlap"],
                    (pt["devices"], pt["ring"]["efficiency_no_overlap"]), fontsize=8,
                    textcoords="offset points", xytext=(0, 6), ha="center")
    ax.axvline(inp["allreduce_ranks"], color="gray", linewidth=1, linestyle=":")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("devices")
    ax.set_ylabel("predicted efficiency (no overlap)")
    ax.set_title("PREDICTION for %s from the alpha-beta fit (dotted: measured ranks)"
                 % pred["model"], fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return svg(plt, fig)


# ---- HTML -------------------------------------------------------------------------------------


def _kv(pairs):
    return table(["", ""], [[esc(k), esc(fmt(v) if isinstance(v, float) else v)]
                            for k, v in pairs], left=2)


def _machine(rep):
    m, v = rep.get("machine") or {}, rep.get("versions") or {}
    gpus = ", ".join("%s (%s)" % (g["name"], g.get("memory") or "?") for g in m.get("gpus", []))
    mem = m.get("memory_bytes")
    pairs = [("host", m.get("hostname")), ("CPU", m.get("cpu_model")),
             ("cores (logical / usable / physical)", "%s / %s / %s" % (
                 m.get("logical_cpus"), m.get("usable_cpus"), m.get("physical_cores") or "?")),
             ("memory", "%.1f GiB" % (mem / 2 ** 30) if mem else "?"),
             ("GPUs", "%d: %s" % (m.get("gpu_count", 0), gpus) if gpus else "none"),
             ("OS / kernel", "%s / %s" % (m.get("os"), m.get("kernel"))),
             ("job id", rep.get("job_id")),
             ("started / finished", "%s / %s (%.0f s)" % (rep.get("started_at"),
                                                          rep.get("finished_at"),
                                                          rep.get("duration_s") or 0))]
    if m.get("slurm"):
        pairs.append(("Slurm", ", ".join("%s=%s" % kv for kv in m["slurm"].items())))
    vers = [(k, v.get(k)) for k in ("tulpar", "tulpar_backends", "mpi", "hdf5", "nccl",
                                     "cuda_driver", "cuda_runtime", "python", "matplotlib",
                                     "git_commit") if k in v]
    for i, (k, x) in enumerate(vers):
        if x is None:
            vers[i] = (k, "not present")
    if v.get("git_dirty"):
        vers.append(("git tree", "modified since the commit"))
    return ("<h2>Machine</h2>" + _kv(pairs) + "<h2>Library versions</h2>" + _kv(vers))


def _settings(rep):
    s = rep.get("settings") or {}
    pairs = [("command", s.get("command")), ("mode", rep.get("mode")),
             ("repeats", rep.get("repeats")), ("rank counts", s.get("ranks")),
             ("launcher", s.get("launcher")), ("backend / device", "%s / %s" % (
                 s.get("backend"), s.get("device"))),
             ("threads per rank", ", ".join("%s ranks: %s" % kv for kv in
                                            (s.get("threads_per_rank") or {}).items())),
             ("threads policy", s.get("threads_policy")),
             ("efficiency", s.get("efficiency_definition"))]
    out = "<h2>Settings</h2>" + _kv(pairs)
    if rep.get("notes"):
        out += "<h3>Notes</h3><ul>" + "".join("<li>%s</li>" % esc(n) for n in rep["notes"]) + \
            "</ul>"
    return out


def _collectives(plt, coll):
    if not coll or not coll.get("results"):
        return "<h2>Collectives</h2><p class=note>not measured</p>"
    out = ["<h2>Collectives</h2><p class=note>`tulpar bench` with nccl-tests columns; medians "
           "over the repeats (each a mean over %s iterations after %s warm-ups, maximum over "
           "ranks); communicator %s.</p>" % (coll.get("iters"), coll.get("warmup"),
                                              esc(coll.get("comm")))]
    if plt:
        out.append(plot_busbw(plt, coll))
    for name, by_n in coll["results"].items():
        for n, agg in sorted(by_n.items(), key=lambda kv: int(kv[0])):
            rows = []
            for r in agg["rows"]:
                o, i = r["oop"], r["ip"]
                rows.append([esc(size_label(r["size"])), esc(r["count"]), esc(r["type"]),
                             esc(r["redop"]), esc(r["root"]),
                             fmt(o["time_us"]["median"]), fmt(o["algbw"]["median"]),
                             fmt(o["busbw"]["median"]), esc(fmt(o["wrong"])),
                             fmt(i["time_us"]["median"]), fmt(i["algbw"]["median"]),
                             fmt(i["busbw"]["median"]), esc(fmt(i["wrong"])),
                             "%s&ndash;%s" % (fmt(i["busbw"]["min"]), fmt(i["busbw"]["max"]))])
            out.append("<h3>%s, %s ranks (%s, %s): avg bus bandwidth %s GB/s</h3>" % (
                esc(name), esc(n), esc(agg["comm"]), esc(agg["memory"]),
                fmt_stat(agg["avg_busbw"])))
            out.append(table(["size", "count", "type", "redop", "root", "oop time(us)",
                              "algbw(GB/s)", "busbw(GB/s)", "#wrong", "ip time(us)",
                              "algbw(GB/s)", "busbw(GB/s)", "#wrong", "ip busbw min-max"],
                             rows))
    return "\n".join(out)


def _training(plt, tr):
    if not tr or not tr.get("models"):
        return "<h2>Training throughput</h2><p class=note>not measured</p>"
    out = ["<h2>Training throughput</h2><p class=note>Throughput = %s. Weak scaling: fixed "
           "per-rank batch; strong scaling: fixed global batch (gradient accumulation keeps "
           "the micro-batch). Efficiency: per-device throughput relative to the smallest rank "
           "count of the series.</p>" % esc(tr.get("throughput_from"))]
    if plt:
        out.append(plot_scaling(plt, tr))
    rows = []
    for model, m in tr["models"].items():
        for name, pts in m["series"].items():
            for p in pts:
                rows.append([esc(model), esc(name), esc(p["ranks"]), esc(p["threads_per_rank"]),
                             esc(p["devices"]), "%d (%dx%dx%d)" % (
                                 p["global_batch"], p["ranks"], p["grad_accum"],
                                 p["micro_batch"]),
                             fmt_stat(p["samples_per_s"]),
                             fmt_stat(p["tokens_per_s"]) if m["kind"] == "gpt" else "-",
                             fmt_stat(p["step_time_ms"]), fmt_stat(p["achieved_gflops"], 3),
                             fmt_stat(p["comm_fraction"], 3, 100.0),
                             fmt_stat(p["efficiency"], 3)])
    out.append(table(["model", "scaling", "ranks", "threads", "devices",
                      "global batch (ranks x accum x micro)", "samples/s", "tokens/s",
                      "step ms", "GFLOP/s", "exposed comm %", "efficiency"], rows, left=2))
    notes = ["<li>%s: %s, %s parameters, %s steps per run; data: %s%s</li>" % (
        esc(model), esc(m["label"]), esc(m.get("params")), esc(m["steps"]), esc(m["data"]),
        ("; " + esc(m["note"])) if m.get("note") else "") for model, m in tr["models"].items()]
    out.append("<ul class=note>%s</ul>" % "".join(notes))
    if plt:
        out.append("<h3>Loss curves</h3>" + plot_loss(plt, tr))
    return "\n".join(out)


def _checkpoint(plt, ck):
    if not ck:
        return "<h2>Checkpoint bandwidth</h2><p class=note>not measured</p>"
    rows = [[esc(lbl), fmt_stat(ck[k + "_GBps"])] for k, lbl in (
        ("hdf5_write", "checkpoint write (HDF5, tmp + fsync + rename)"),
        ("plain_write", "plain sequential write + fsync"),
        ("hdf5_read", "checkpoint read (HDF5, crc32 checked)"),
        ("plain_read", "plain sequential read"))]
    rows += [["checkpoint / plain, write", fmt_stat(ck["write_ratio"], 3)],
             ["checkpoint / plain, read", fmt_stat(ck["read_ratio"], 3)]]
    fs = ck.get("filesystem") or {}
    out = ["<h2>Checkpoint bandwidth</h2><p class=note>%s bytes (%s tensors) in %s (%s on %s). "
           "%s.</p>" % (esc(ck["bytes"]), esc(ck["tensors"]), esc(ck["dir"]), esc(fs.get("type")),
                        esc(fs.get("device")), esc(ck["method"])),
           table(["measurement", "GB/s"], rows)]
    if plt:
        out.append(plot_ckpt(plt, ck))
    return "\n".join(out)


def _inference(inf):
    if not inf or not (inf.get("classifiers") or inf.get("generation")):
        return "<h2>Inference</h2><p class=note>not measured</p>"
    rows = [[esc(e["model"]), "images/s (test set, %d images)" % e["images"], esc(e["ranks"]),
             esc(e["threads_per_rank"]), fmt_stat(e["images_per_s"])]
            for e in inf.get("classifiers", [])]
    rows += [[esc(e["model"]), "generated tokens/s (%d prompts x %d tokens, KV cache, one "
              "sequence per rank at a time)" % (e["prompts"], e["max_tokens"]), esc(e["ranks"]),
              esc(e["threads_per_rank"]), fmt_stat(e["tokens_per_s"])]
             for e in inf.get("generation", [])]
    return "<h2>Inference</h2>" + table(
        ["model", "measure", "ranks", "threads", "median [min-max]"], rows, left=2)


def _cost(cost):
    if not cost:
        return ""
    rows = []
    for key, what in (("training_gpt", "training"), ("training_classifier", "training"),
                      ("generation", "generation")):
        for e in cost.get(key, []):
            rows.append([esc(e["model"]), esc(what + (" (%s)" % e["scaling"] if "scaling" in e
                                                      else "")),
                         esc(e["ranks"]), esc(e["devices"]), fmt_stat(e["device_hours"], 3),
                         esc(e["unit"])])
    f = cost.get("formulas", {})
    return ("<h2>Cost (from the measurements)</h2><p class=note>A device is %s. %s</p>" % (
        esc(cost.get("device_definition")), "; ".join(esc(v) for v in f.values())) +
        table(["model", "what", "ranks", "devices", "device-hours", "per"], rows, left=2))


def _prediction(plt, pred):
    out = ['<div class=prediction><h2>PREDICTION: data-parallel efficiency at %s devices '
           '(alpha-beta model, not a measurement)</h2>' % "/".join(
               str(p["devices"]) for p in (pred or {}).get("points", [])) if pred and
           pred.get("available") else '<div class=prediction><h2>PREDICTION (alpha-beta '
           'model)</h2>']
    if not pred or not pred.get("available"):
        out.append("<p>not available: %s</p></div>" % esc((pred or {}).get("reason")))
        return "\n".join(out)
    inp = pred["inputs"]
    out.append("<p>Inputs (measured in this run): all-reduce on %d ranks (%s) fitted as "
               "t(n) = A + B&middot;n: alpha = %s &micro;s, beta = %s s/byte (%s GB/s), max "
               "relative residual %s; %s; gradient %s bytes (%s parameters x 4); compute %s s "
               "per step (%s).</p>" % (
                   inp["allreduce_ranks"], esc(inp["allreduce_comm"]),
                   fmt(inp["alpha_s"] * 1e6), fmt(inp["beta_s_per_byte"]),
                   fmt(inp["bandwidth_GBps"]), fmt(inp["max_relative_residual"], 3),
                   esc(inp["fit_note"]), esc(inp["gradient_bytes"]), esc(inp["params"]),
                   fmt(inp["compute_s_per_step"]), esc(inp["compute_from"])))
    out.append("<p>Formulas: %s.</p><p class=note>Assumptions: %s.</p>" % (
        "; ".join("%s: %s" % (esc(k), esc(v)) for k, v in pred["formulas"].items()),
        esc(pred["assumptions"])))
    rows = [[esc(p["devices"]), fmt(p["ring"]["allreduce_s"]),
             fmt(p["ring"]["efficiency_no_overlap"], 3),
             fmt(p["ring"]["efficiency_full_overlap"], 3), fmt(p["tree"]["allreduce_s"]),
             fmt(p["tree"]["efficiency_no_overlap"], 3),
             fmt(p["tree"]["efficiency_full_overlap"], 3)] for p in pred["points"]]
    out.append(table(["devices", "ring all-reduce s", "ring eff. (no overlap)",
                      "ring eff. (full overlap)", "tree all-reduce s", "tree eff. (no overlap)",
                      "tree eff. (full overlap)"], rows))
    if plt:
        out.append(plot_prediction(plt, pred))
    out.append("</div>")
    return "\n".join(out)


def write_html(rep, path):
    plt = _mpl()
    m = rep.get("machine") or {}
    title = "Tulpar benchmark suite: %s, %s" % (m.get("hostname", "?"), rep.get("finished_at"))
    body = ["<h1>%s</h1>" % esc(title),
            "<p>Mode <b>%s</b>, %s repeats per measurement (median with [min&ndash;max]); job "
            "%s; device: %s.</p>" % (esc(rep.get("mode")), esc(rep.get("repeats")),
                                     esc(rep.get("job_id")),
                                     esc((rep.get("settings") or {}).get("device")))]
    if plt is None:
        body.append("<p class=warn>matplotlib is not installed (Debian: python3-matplotlib): "
                    "this page has no plots.</p>")
    body.append(_machine(rep))
    body.append(_settings(rep))
    body.append(_collectives(plt, rep.get("collectives")))
    body.append(_training(plt, rep.get("training")))
    body.append(_checkpoint(plt, rep.get("checkpoint")))
    body.append(_inference(rep.get("inference")))
    body.append(_cost(rep.get("cost")))
    body.append(_prediction(plt, rep.get("prediction")))
    with open(path, "w") as f:
        f.write(page(title, "\n".join(body)))
