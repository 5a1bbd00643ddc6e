#!/usr/bin/env bash
# Writes each held-out split's documents by source: validation-books.txt.gz, validation-speeches.txt.gz,
# test-books.txt.gz and test-speeches.txt.gz, from validation.txt.gz, test.txt.gz and documents.tsv in this folder
# (make.sh runs it after writing them; it needs no network, so it also runs on the committed files alone).
#
# A split is its documents in documents.tsv's order, joined by one blank line. Each document is cut out of the
# split at its byte offset, checked against the length and SHA-256 that documents.tsv records, and the documents
# of one source are joined the same way, in the same order. The two files of a split therefore hold every document
# of the split exactly once; only the order (all books, then all speeches) and the blank line between them differ
# from the split itself.
#
# Needs gzip, awk, GNU dd and sha256sum; output is reproducible as make.sh's is (gzip -n -9).
set -euo pipefail
export LC_ALL=C

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for split in validation test; do
  gzip -dc "$here/$split.txt.gz" > "$work/$split.txt"
  : > "$work/$split-books.txt"
  : > "$work/$split-speeches.txt"
  offset=0
  # Fields of documents.tsv: split, source, id, title, author, year, bytes, sha256.
  while IFS=$'\t' read -r source id bytes sha256; do
    case "$source" in
      gutenberg) part=books ;;
      sotu) part=speeches ;;
      *) echo "sources.sh: document $id has source '$source'; expected gutenberg or sotu" >&2; exit 1 ;;
    esac
    dd if="$work/$split.txt" of="$work/document" iflag=skip_bytes,count_bytes skip="$offset" count="$bytes" status=none
    if [ "$(sha256sum < "$work/document" | cut -d' ' -f1)" != "$sha256" ]; then
      echo "sources.sh: document $id of $split.txt.gz does not match documents.tsv at byte $offset; rerun make.sh" >&2
      exit 1
    fi
    out="$work/$split-$part.txt"
    if [ -s "$out" ]; then echo >> "$out"; fi
    cat "$work/document" >> "$out"
    offset=$((offset + bytes + 1))   # the document, then the newline of the blank line that joins it to the next
  done < <(awk -F'\t' -v OFS='\t' -v want="$split" '$1 == want { print $2, $3, $7, $8 }' "$here/documents.tsv")
  if [ "$offset" != $(($(wc -c < "$work/$split.txt") + 1)) ]; then
    echo "sources.sh: $split.txt.gz is not exactly the documents documents.tsv lists for it; rerun make.sh" >&2
    exit 1
  fi
done

for split in validation test; do
  for part in books speeches; do
    gzip -n -9 -c "$work/$split-$part.txt" > "$here/$split-$part.txt.gz"
  done
done
printf '%-21s %12s\n' file bytes
for split in validation test; do
  for part in books speeches; do
    printf '%-21s %12d\n' "$split-$part" "$(wc -c < "$work/$split-$part.txt")"
  done
done
