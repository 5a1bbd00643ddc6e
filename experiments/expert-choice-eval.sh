#!/usr/bin/env bash
# How much of an expert-choice MoE's validation score comes from seeing later tokens (issue 20, item 5): trains the
# tiny preset with an expert-choice MoE in its middle block (E = 4, c = 2) for 1000 steps on the bundled books, then
# scores the bundled validation book whole under each evaluation routing of `peer eval --expert-choice`
# (docs/BASELINES.md, "Expert choice is not causal"). About a minute on 2 cores. PEER overrides the command
# (default: ./peer); OUT the run folder (default: a temporary one, removed after).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
read -r -a peer <<< "${PEER:-$root/peer}"
out="${OUT:-$(mktemp -d)}"
[ -n "${OUT:-}" ] || trap 'rm -rf "$out"' EXIT

"${peer[@]}" train --preset tiny --ffn moe --routing expert-choice --steps 1000 --seed 1337 --out "$out/run" > /dev/null
printf '| evaluation routing | validation bits per byte |\n|---|---:|\n'
for routing in sequence training-group causal; do
  bpb=$("${peer[@]}" eval --checkpoint "$out/run/checkpoint.json" --expert-choice "$routing" --tokens 1000000 |
        awk -F'│' '/bits per byte/ { gsub(/ /, "", $3); print $3 }')
  printf '| %s | %s |\n' "$routing" "$bpb"
done
