#!/usr/bin/env python3
"""collect.py NAME [NOTE]: append one JSON line for run NAME to experiments/usage/results.jsonl"""
import json, re, sys
name = sys.argv[1]; note = sys.argv[2] if len(sys.argv) > 2 else ""
base = f"/tmp/usage/{name}"
log = open(base + ".log").read()
pat = re.compile(r"step\s+(\d+)\s+validation loss ([\d.]+)\s+perplexity [\d.]+\s+bits/byte ([\d.]+)\s+block (\d+): usage ([\d.]+) %, unevenness ([\d.]+), sub-keys in top-k (\d+) %/(\d+) % \(unevenness ([\d.]+)/([\d.]+)\), in used experts (\d+) %/(\d+) %(?:, first choices (\d+)/head)?")
curve = []
for m in pat.finditer(log):
    g = m.groups()
    curve.append(dict(step=int(g[0]), bits_per_byte=float(g[2]), block=int(g[3]), usage=round(float(g[4]) / 100, 4), unevenness=float(g[5]),
                      subkey_topk_usage=[int(g[6]) / 100, int(g[7]) / 100], subkey_topk_unevenness=[float(g[8]), float(g[9])],
                      subkey_in_used_experts=[int(g[10]) / 100, int(g[11]) / 100], first_choices_per_head=int(g[12]) if g[12] else None))
last = curve[-1]
rec = dict(name=name, overrides=open(base + ".args").read().strip(), steps=last["step"], bits_per_byte=last["bits_per_byte"],
           usage=last["usage"], unevenness=last["unevenness"], subkey_topk_usage=last["subkey_topk_usage"],
           subkey_topk_unevenness=last["subkey_topk_unevenness"], subkey_in_used_experts=last["subkey_in_used_experts"],
           first_choices_per_head=last["first_choices_per_head"], wall_seconds=int(open(base + ".wall").read()),
           curve=[{k: c[k] for k in ("step", "bits_per_byte", "usage", "unevenness", "first_choices_per_head")} for c in curve], note=note)
with open("/work/wt/usage/experiments/usage/results.jsonl", "a") as f: f.write(json.dumps(rec) + "\n")
print(json.dumps({k: rec[k] for k in rec if k != "curve"}))
