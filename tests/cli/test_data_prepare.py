"""`tulpar data prepare`: the multilingual sample (English, Russian, Kazakh) becomes byte-level
train/val token files whose bytes are exactly the text, meta.json and the printed entropy agree
with the files, and bad input (missing, invalid UTF-8, NUL, empty, too small, bad options) is
refused with a clear message and no output. Also builds the KJV corpus with tools/corpus.sh when
the `bible` program is installed."""
import json
import math
import os
import shutil
import struct
import subprocess
import zlib

from tulpar_test import Harness

h = Harness("data_prepare")
SAMPLE = os.path.join(h.source, "tests", "data", "sample_multilingual.txt")


def read_tokens(path):
    """(header fields, token bytes) of a width-1 Tulpar token file, checking its layout."""
    with open(path, "rb") as f:
        b = f.read()
    magic, version, width, n, vocab, reserved, crc = struct.unpack_from("<8sIIQIIQ", b, 0)
    ok = (magic == b"TULPTOK1" and version == 1 and width == 1 and reserved == 0
          and b[40:64] == bytes(24) and len(b) == 64 + n and crc == zlib.crc32(b[64:]))
    return dict(ok=ok, n=n, vocab=vocab), b[64:]


def write(name, data):
    path = h.path(name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def prepare(inputs, out, *extra):
    return h.run(["data", "prepare", "--input"] + list(inputs) + ["--output", out] + list(extra))


def expect_error(what, inputs, needles, code=4, extra=()):
    expect_error.n += 1
    out = h.path("refused%d" % expect_error.n)
    p = prepare(inputs, out, *extra)
    missing = [s for s in needles if s not in p.stderr]
    h.check(p.returncode == code and not missing and not os.path.exists(out),
            "refused: " + what,
            "rc=%s missing %r in stderr: %s" % (p.returncode, missing, p.stderr))


expect_error.n = 0


# ---- the multilingual sample ----
p = h.run(["data", "--help"])
h.check(p.returncode == 0 and "usage: tulpar data prepare" in p.stdout, "tulpar data --help")
p = h.run(["--help"])
h.check(p.returncode == 0 and "data" in p.stdout, "tulpar --help lists data")

text = open(SAMPLE, "rb").read()
text.decode("utf-8")
h.check(20000 <= len(text) <= 40000 and text.endswith(b"\n"), "sample is 20-40 KB of text")
h.check(any("\u0400" <= c <= "\u04ff" for c in text.decode()) and "қ" in text.decode()
        and "ы" in text.decode() and "beginning" in text.decode(),
        "sample has English, Russian and Kazakh")

out = h.path("ml")
p = prepare([SAMPLE], out)
h.check(p.returncode == 0, "prepare the multilingual sample", p.stderr)
tr, train = read_tokens(os.path.join(out, "train.bin"))
va, val = read_tokens(os.path.join(out, "val.bin"))
h.check(tr["ok"] and va["ok"], "train.bin and val.bin are valid Tulpar token files")
h.check(tr["vocab"] == 256 and va["vocab"] == 256, "vocab 256")
h.check(tr["n"] + va["n"] == len(text) and train + val == text,
        "train + val tokens are exactly the text bytes",
        "%d + %d vs %d" % (tr["n"], va["n"], len(text)))
h.check(train.endswith(b"\n"), "the split is cut after a newline")
frac = va["n"] / len(text)
h.check(abs(frac - 0.1) <= 4096 / len(text) + 1e-9, "val is about the last 10%%", "%.4f" % frac)
meta = json.load(open(os.path.join(out, "meta.json")))
h.check(meta.get("n_train") == tr["n"] and meta.get("n_val") == va["n"]
        and meta.get("vocab_size") == 256 and meta.get("tokenizer") == "bytes",
        "meta.json counts, vocab and tokenizer", str(meta))
src = meta.get("sources", [{}])
h.check(len(src) == 1 and src[0].get("path") == SAMPLE and src[0].get("bytes") == len(text)
        and src[0].get("crc32") == "%08x" % zlib.crc32(text), "meta.json sources", str(src))
counts = [train.count(bytes([b])) for b in range(256)]
ent = -sum(c / len(train) * math.log2(c / len(train)) for c in counts if c)
h.check(("%.4f bits/byte" % ent) in p.stdout and ("%.4f nats" % (ent * math.log(2))) in p.stdout,
        "summary prints the train unigram entropy (%.4f bits/byte)" % ent, p.stdout)
h.check(abs(meta.get("train_unigram_entropy_bits", 0) - ent) < 1e-6, "meta.json entropy")

# Several inputs in order, a newline added after one without it; --input A B syntax.
a = write("a.txt", "Қазақ тілі — әдемі тіл.\n".encode() * 30)
b = write("b.txt", "Русский текст без перевода строки в конце".encode())
c = write("c.txt", b"The end.\n" * 20)
out2 = h.path("multi")
p = prepare([a, b, c], out2, "--val-fraction", "0.5", "--min-bytes", "100")
want = open(a, "rb").read() + open(b, "rb").read() + b"\n" + open(c, "rb").read()
_, t2 = read_tokens(os.path.join(out2, "train.bin"))
_, v2 = read_tokens(os.path.join(out2, "val.bin"))
h.check(p.returncode == 0 and t2 + v2 == want, "three inputs concatenated in order", p.stderr)
m2 = json.load(open(os.path.join(out2, "meta.json")))
h.check([s["path"] for s in m2["sources"]] == [a, b, c], "meta.json lists the sources in order")
h.check(abs(len(v2) / len(want) - 0.5) < 0.05 and t2.endswith(b"\n"), "--val-fraction 0.5")

# A UTF-8 byte-order mark is dropped; rerunning into the same directory replaces the files.
bom = write("bom.txt", b"\xef\xbb\xbf" + b"line of text\n" * 100)
p = prepare([bom], out2)
_, t3 = read_tokens(os.path.join(out2, "train.bin"))
_, v3 = read_tokens(os.path.join(out2, "val.bin"))
h.check(p.returncode == 0 and t3 + v3 == b"line of text\n" * 100, "BOM dropped, output replaced")

# ---- refusals ----
expect_error("missing file", [h.path("nope.txt")], ["nope.txt", "No such file or directory"])
expect_error("a directory", [h.tmp], ["is a directory"])
expect_error("empty file", [write("empty.txt", b"")], ["empty.txt", "is empty"])
good = b"hello world\n" * 100
expect_error("invalid UTF-8 (0xff)", [write("ff.txt", good + b"abc\xff\xfedef\n")],
             ["ff.txt", "not valid UTF-8", "byte offset 1203", "line 101", "ff fe 64 65"])
ru = "Привет, мир! Это текст в кодировке Windows-1251.\n" * 40
expect_error("Windows-1251 text", [write("cp1251.txt", ru.encode("cp1251"))],
             ["cp1251.txt", "not valid UTF-8", "byte offset 0", "cf f0 e8 e2"])
expect_error("overlong encoding", [write("overlong.txt", good + b"\xc0\xaf\n")],
             ["byte offset 1200", "c0 af"])
expect_error("UTF-16 surrogate", [write("surr.txt", good + b"\xed\xa0\x80\n")],
             ["byte offset 1200", "ed a0 80"])
expect_error("truncated sequence", [write("cut.txt", good + "қ".encode()[:1])],
             ["byte offset 1200"])
expect_error("NUL byte", [write("nul.txt", good + b"\x00\x01\x02")],
             ["nul.txt", "NUL byte at offset 1200", "binary"])
expect_error("bad file among good ones", [SAMPLE, h.path("ff.txt")], ["ff.txt", "not valid UTF-8"])
expect_error("too small", [write("small.txt", b"tiny text\n")], ["only 10 bytes", "--min-bytes"])
expect_error("too small for --min-bytes", [SAMPLE], ["at least 100000"],
             extra=["--min-bytes", "100000"])
# One long line: no newline near the split point, and 1e-6 of it rounds to no val bytes at all.
expect_error("val too small", [write("oneline.txt", b"x" * 3000)], ["each needs at least 2"],
             extra=["--val-fraction", "1e-6"])
p = prepare([SAMPLE], h.path("tiny_val"), "--val-fraction", "1e-6")
_, tv = read_tokens(h.path("tiny_val", "val.bin"))
h.check(p.returncode == 0 and text.endswith(b"\n" + tv) and tv.count(b"\n") == 1,
        "a tiny --val-fraction snaps to the last line")
expect_error("--val-fraction 0", [SAMPLE], ["--val-fraction"], code=2,
             extra=["--val-fraction", "0"])
expect_error("--val-fraction 0.6", [SAMPLE], ["(0, 0.5]"], code=2, extra=["--val-fraction", "0.6"])
expect_error("--val-fraction abc", [SAMPLE], ["(0, 0.5]"], code=2, extra=["--val-fraction", "abc"])
expect_error("--min-bytes -1", [SAMPLE], ["--min-bytes"], code=2, extra=["--min-bytes", "-1"])
p = h.run(["data", "prepare", "--input", SAMPLE])
h.check(p.returncode == 2 and "--output" in p.stderr, "refused: missing --output", p.stderr)
p = h.run(["data", "prepare", "--output", h.path("x")])
h.check(p.returncode == 2 and "--input" in p.stderr, "refused: missing --input", p.stderr)
p = h.run(["data", "shuffle"])
h.check(p.returncode == 2 and "unknown subcommand" in p.stderr, "refused: unknown subcommand")
p = prepare([SAMPLE], write("file_not_dir", b"x"))
h.check(p.returncode != 0 and "file_not_dir" in p.stderr, "refused: --output is a file", p.stderr)

# ---- the KJV corpus (tools/corpus.sh) when the bible program is installed ----
if shutil.which("bible"):
    kjv_txt, kjv_out = h.path("kjv.txt"), h.path("kjv")
    p = subprocess.run([os.path.join(h.source, "tools", "corpus.sh"), "--tulpar", h.tulpar,
                        "--text", kjv_txt, "--output", kjv_out],
                       capture_output=True, text=True, timeout=120)
    h.check(p.returncode == 0, "tools/corpus.sh", p.stdout + p.stderr)
    if p.returncode == 0:
        kjv = open(kjv_txt, "rb").read()
        h.check(4_000_000 < len(kjv) < 4_300_000 and kjv.count(b"\n") == 31102
                and kjv.startswith(b"In the beginning God created the heaven and the earth.\n")
                and kjv.isascii(), "KJV text: 31102 verses, ~4.1 MB of ASCII", str(len(kjv)))
        m = json.load(open(os.path.join(kjv_out, "meta.json")))
        h.check(m["n_train"] + m["n_val"] == len(kjv), "KJV train + val = text")
else:
    print("skip: the bible program is not installed (tools/deps.sh installs bible-kjv)")

h.finish()
