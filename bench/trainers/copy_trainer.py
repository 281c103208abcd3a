"""A trainer that trains nothing: it copies a prebuilt artifact into --out, so a benchmark of many lifecycles measures
the orchestration, not the model. Params: "source" (the prebuilt artifact folder). Writes metrics.json last, as the
real trainer does (it marks the artifact complete). Stdlib only.
"""

import argparse
import json
import os
import shutil
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--data-dir")
parser.add_argument("--out", required=True)
parser.add_argument("--params", default="{}")
params = json.loads(parser.parse_args().params)
source = params.get("source")
if not isinstance(source, str) or not os.path.isdir(source):
    print(f"copy_trainer: params.source must be a folder, got {json.dumps(source)}", file=sys.stderr)
    sys.exit(2)
out = parser.parse_args().out
os.makedirs(out, exist_ok=True)
names = sorted(n for n in os.listdir(source) if n != "metrics.json")
for name in names + ["metrics.json"]:
    path = os.path.join(source, name)
    if os.path.isfile(path):
        shutil.copyfile(path, os.path.join(out, name) + ".tmp")
        os.replace(os.path.join(out, name) + ".tmp", os.path.join(out, name))
print(json.dumps({"event": "progress", "step": "copied", "pct": 100}), flush=True)
