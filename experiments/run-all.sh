#!/usr/bin/env bash
# Runs every experiment of docs/EXPERIMENTS.md in turn, in the background, resumably:
#   nohup experiments/run-all.sh > runs/experiments.log 2>&1 &
# A finished sweep is skipped in seconds; an interrupted one resumes from its last checkpoint. Stop it with
# `kill -TERM PID` (the current run writes a checkpoint first). Then: ./peer report experiments/*.results.jsonl
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
read -ra peer <<< "${PEER:-$root/peer}"   # PEER="dotnet /path/peer.dll" runs a copied build
for spec in isoflop experts active batchnorm; do
  nice -n "${NICE:-10}" "${peer[@]}" sweep "$root/experiments/$spec.json" --runs "${RUNS:-$root/runs/sweeps}"
done
