#!/usr/bin/python3
"""`tulpar report`: runs or benchmark-suite reports side by side.

    tulpar report RUN_DIR|SUMMARY.json|REPORT.json|SUITE_DIR... [--csv F] [--html F] [--all]

Each input is a `tulpar train` run directory (its summary.json) or a `tulpar bench suite`
report (report.json, or the directory holding it). Prints one table, one column per input and
one row per figure (a run's key figures; a report's key measurements as median [min-max], or
every measurement with --all); with exactly two inputs a last column gives the second over the
first. --csv and --html write the same table (the page is self-contained).
"""
import argparse
import csv
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# summary.json figures shown for a run directory, in order: (key, label, unit)
RUN_FIELDS = [
    ("model", "model", ""), ("params", "parameters", ""), ("backend", "backend", ""),
    ("comm_library", "communication library", ""), ("host", "host", ""),
    ("world_size", "ranks", ""), ("threads_per_rank", "threads per rank", ""),
    ("global_batch", "global batch", "samples"), ("steps", "steps", ""),
    ("samples_per_s", "samples/s", "samples/s"), ("tokens_per_s", "tokens/s", "tokens/s"),
    ("step_time_ms_median", "step time median", "ms"),
    ("step_time_ms_min", "step time min", "ms"), ("step_time_ms_max", "step time max", "ms"),
    ("achieved_gflops", "achieved GFLOP/s", "GFLOP/s"),
    ("comm_fraction", "exposed communication fraction", "ratio"),
    ("compute_ms_median", "compute per step", "ms"),
    ("final_train_loss", "final training loss", ""), ("eval_loss", "eval loss", ""),
    ("eval_accuracy", "eval accuracy", ""), ("train_s", "training time", "s"),
    ("wall_s", "wall time", "s"), ("core_hours", "core-hours", "h"),
    ("peak_rss_bytes", "peak RSS", "bytes"), ("tulpar_version", "tulpar version", ""),
    ("finished_at", "finished at", ""),
]


class InputError(Exception):
    pass


def load(path):
    """(label, kind, dict) for a run directory, a summary.json, a report.json or its directory."""
    p = path
    if os.path.isdir(p):
        if os.path.exists(os.path.join(p, "report.json")):
            p = os.path.join(p, "report.json")
        elif os.path.exists(os.path.join(p, "summary.json")):
            p = os.path.join(p, "summary.json")
        else:
            raise InputError("%s: neither report.json nor summary.json in this directory" % path)
    try:
        with open(p) as f:
            d = json.load(f)
    except OSError as e:
        raise InputError("%s: %s" % (path, e.strerror or e))
    except ValueError as e:
        raise InputError("%s: not valid JSON (%s)" % (p, e))
    if not isinstance(d, dict):
        raise InputError("%s: not a Tulpar summary or report (top level is not an object)" % p)
    if d.get("kind") == "tulpar-bench-suite":
        if d.get("schema_version") != 1:
            raise InputError("%s: report schema_version %r, this tulpar reads 1" % (
                p, d.get("schema_version")))
        return path.rstrip("/"), "report", d
    if "samples_per_s" in d and "world_size" in d:
        return path.rstrip("/"), "run", d
    raise InputError("%s: not a Tulpar run summary (summary.json) or suite report (report.json)"
                     % p)


def rows_for(kind, d, all_rows):
    """Ordered list of (row key, label, unit, value, (min, max) or None)."""
    out = []
    if kind == "run":
        for key, label, unit in RUN_FIELDS:
            if key in d:
                out.append(("run/" + key, label, unit, d[key], None))
        return out
    out.append(("report/host", "host", "", (d.get("machine") or {}).get("hostname"), None))
    out.append(("report/mode", "mode / repeats", "", "%s / %s" % (d.get("mode"),
                                                                 d.get("repeats")), None))
    out.append(("report/job", "job id", "", d.get("job_id"), None))
    out.append(("report/finished", "finished at", "", d.get("finished_at"), None))
    for m in d.get("measurements", []):
        if not all_rows and not m.get("key", True):
            continue
        key = "%s/%s/%s/%s" % (m["section"], m["name"], m["ranks"], m["metric"])
        label = "%s: %s, %s rank(s), %s" % (m["section"], m["name"], m["ranks"], m["metric"])
        if m["section"] == "prediction":
            label = "PREDICTION: %s, %s devices, %s" % (m["name"], m["ranks"], m["metric"])
        out.append((key, label, m["unit"], m["median"], (m["min"], m["max"])))
    return out


def fnum(v):
    import report_html
    return report_html.fmt(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
        else ("-" if v is None else str(v))


def build(inputs, all_rows):
    order, labels, units, cols = [], {}, {}, []
    for _, kind, d in inputs:
        col = {}
        for key, label, unit, v, rng in rows_for(kind, d, all_rows):
            if key not in labels:
                order.append(key)
                labels[key], units[key] = label, unit
            col[key] = (v, rng)
        cols.append(col)
    ratio = len(inputs) == 2
    rows = []
    for key in order:
        vals = [c.get(key) for c in cols]
        r = None
        if ratio and all(x is not None for x in vals):
            a, b = vals[0][0], vals[1][0]
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and \
                    not isinstance(a, bool) and not isinstance(b, bool) and a != 0:
                r = b / a
        rows.append((labels[key], units[key], vals, r))
    return rows


def cell(v, with_range=True):
    if v is None:
        return "-"
    val, rng = v
    s = fnum(val)
    if with_range and rng and rng[0] != rng[1]:
        s += " [%s-%s]" % (fnum(rng[0]), fnum(rng[1]))
    return s


def text_table(names, rows, ratio):
    head = ["figure", "unit"] + names + (["2nd/1st"] if ratio else [])
    body = [[lab, unit] + [cell(v) for v in vals] + ([fnum(r) if r is not None else "-"]
                                                    if ratio else [])
            for lab, unit, vals, r in rows]
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
    widths[0] = min(widths[0], 70)
    lines = []
    for i, row in enumerate([head] + body):
        cells = []
        for j, x in enumerate(row):
            x = str(x)
            if j == 0 and len(x) > widths[0]:
                x = x[:widths[0] - 1] + "~"
            cells.append(x.ljust(widths[j]) if j < 2 else x.rjust(widths[j]))
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tulpar report", description=__doc__.split("\n")[0])
    ap.add_argument("--tulpar", help=argparse.SUPPRESS)
    ap.add_argument("inputs", nargs="+", metavar="RUN_DIR|REPORT.json")
    ap.add_argument("--csv", help="also write the table as CSV")
    ap.add_argument("--html", help="also write the table as a self-contained HTML page")
    ap.add_argument("--all", action="store_true",
                    help="every measurement of suite reports, not only the key figures")
    a = ap.parse_args(argv)
    try:
        inputs = [load(p) for p in a.inputs]
    except InputError as e:
        print("tulpar report: %s" % e, file=sys.stderr)
        return 2
    names = [name for name, _, _ in inputs]
    ratio = len(inputs) == 2
    rows = build(inputs, a.all)
    for i, (name, kind, d) in enumerate(inputs):
        print("[%d] %s (%s)" % (i + 1, name, "benchmark-suite report" if kind == "report"
                                else "training run"))
    print()
    print(text_table(["[%d]" % (i + 1) for i in range(len(names))], rows, ratio))
    try:
        if a.csv:
            with open(a.csv, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["figure", "unit"] + names + (["second_over_first"] if ratio else []))
                for lab, unit, vals, r in rows:
                    w.writerow([lab, unit] + [("" if v is None else v[0]) for v in vals] +
                               ([("" if r is None else r)] if ratio else []))
            print("wrote %s" % a.csv)
        if a.html:
            import report_html as rh
            head = ["figure", "unit"] + names + (["2nd / 1st"] if ratio else [])
            body = [[rh.esc(lab), rh.esc(unit)] + [rh.esc(cell(v)) for v in vals] +
                    ([rh.esc(fnum(r)) if r is not None else "-"] if ratio else [])
                    for lab, unit, vals, r in rows]
            listing = "<ol>" + "".join("<li>%s (%s)</li>" % (
                rh.esc(n), "benchmark-suite report" if k == "report" else "training run")
                for n, k, _ in inputs) + "</ol>"
            with open(a.html, "w") as f:
                f.write(rh.page("Tulpar report: %d inputs" % len(inputs),
                                "<h1>Tulpar: side by side</h1>" + listing +
                                rh.table(head, body, left=2)))
            print("wrote %s" % a.html)
    except OSError as e:
        print("tulpar report: cannot write %s: %s" % (e.filename, e.strerror), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
