#!/usr/bin/env bash
# The default language-model corpus: the King James Bible from Debian's bible-kjv packages
# (public domain, ~4.1 MB of plain ASCII, one verse per line), written as text and then
# prepared as byte-level train/val token files with `tulpar data prepare`.
#
#   tools/corpus.sh [--text PATH] [--output DIR] [--tulpar PATH] [--val-fraction F]
#
# Defaults: --text data/kjv.txt, --output data/kjv, --tulpar build/tulpar (relative paths are
# taken from the repository root). Needs `bible` (tools/deps.sh installs bible-kjv).
set -euo pipefail
cd "$(dirname "$0")/.."

text=data/kjv.txt
out=data/kjv
tulpar=build/tulpar
val_fraction=0.1
while [ $# -gt 0 ]; do
    case "$1" in
    --text) text="$2"; shift 2 ;;
    --output) out="$2"; shift 2 ;;
    --tulpar) tulpar="$2"; shift 2 ;;
    --val-fraction) val_fraction="$2"; shift 2 ;;
    -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "corpus: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

if ! command -v bible >/dev/null; then
    echo "corpus: the 'bible' program is missing; run tools/deps.sh (packages bible-kjv," \
        "bible-kjv-text)" >&2
    exit 1
fi
if [ ! -x "$tulpar" ]; then
    echo "corpus: $tulpar is not built; run tools/build.sh build (or pass --tulpar PATH)" >&2
    exit 1
fi

# `bible -f` turns pretty-printing off: one verse per line, prefixed by its reference
# ("Ge1:1 In the beginning..."). The range Gen1:1-Rev22:21 is the whole text; stdin is
# /dev/null so the program never waits for interactive commands. The reference is dropped:
# it is bookkeeping, not prose.
mkdir -p "$(dirname "$text")"
tmp="$text.tmp"
bible -f Gen1:1-Rev22:21 </dev/null | sed -E 's/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ //' >"$tmp"
verses=$(wc -l <"$tmp")
if [ "$verses" -ne 31102 ]; then
    echo "corpus: expected the 31102 verses of the KJV, got $verses lines in $tmp" >&2
    exit 1
fi
if LC_ALL=C grep -q '[^ -~]' "$tmp"; then
    echo "corpus: $tmp has characters other than printable ASCII; the bible output changed?" >&2
    exit 1
fi
mv "$tmp" "$text"
echo "corpus: wrote $text ($(wc -c <"$text") bytes, $verses verses)"

exec "$tulpar" data prepare --input "$text" --output "$out" --val-fraction "$val_fraction"
