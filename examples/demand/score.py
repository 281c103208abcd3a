#!/usr/bin/env python3
"""Score a CSV through an exported model.onnx, the way the serving gateway does (raw feature values in).

    .tools/venv/bin/python examples/demand/score.py --model-dir OUT --data examples/demand/data/test.csv

Runs the graph with onnx's reference evaluator (no onnxruntime needed) and prints one JSON object:
rows, meanPrediction, prediction quantiles, the actual mean, mae, rmse and r2.
It feeds the CSV values unchanged, like live traffic, so a model trained with a `featureScale` shows here the
training/serving skew that its own offline metrics hide.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import load_csv, onnx_feeds, to_arrays  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description="Score a CSV through model.onnx with the ONNX reference evaluator.")
    ap.add_argument("--model-dir", required=True, help="folder holding model.onnx (a train.py output)")
    ap.add_argument("--data", required=True, help="CSV with the feature and label columns, e.g. test.csv")
    args = ap.parse_args()

    rows, labels = load_csv(args.data)
    X, y = to_arrays(np, rows, labels, {})
    model = onnx.load(os.path.join(args.model_dir, "model.onnx"))
    (value,) = ReferenceEvaluator(model).run(None, onnx_feeds(np, X))
    v = value.reshape(-1).astype(float)
    result = {
        "rows": int(len(v)),
        "meanPrediction": round(float(np.mean(v)), 6),
        "predictionQuantiles": {q: round(float(np.quantile(v, float(q))), 6) for q in ("0.1", "0.5", "0.9")},
        "actualMean": round(float(np.mean(y)), 6),
    }
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    result["mae"] = round(float(mean_absolute_error(y, v)), 6)
    result["rmse"] = round(float(np.sqrt(mean_squared_error(y, v))), 6)
    result["r2"] = round(float(r2_score(y, v)), 6)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
