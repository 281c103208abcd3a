#!/usr/bin/env python3
"""Score a CSV through an exported model.onnx, the way the serving gateway does (raw feature values in).

    .tools/venv/bin/python examples/churn/score.py --model-dir OUT --data examples/churn/data/test.csv

Runs the graph with onnx's reference evaluator (no onnxruntime needed) and prints one JSON object:
rows, positiveRate, meanProbability, probability quantiles, the actual positive rate, accuracy and auc.
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
    label, proba = ReferenceEvaluator(model).run(None, onnx_feeds(np, X))
    p = proba[:, 1].astype(float)
    result = {
        "rows": int(len(p)),
        "positiveRate": round(float(np.mean(label == 1)), 6),
        "meanProbability": round(float(np.mean(p)), 6),
        "probabilityQuantiles": {q: round(float(np.quantile(p, float(q))), 6) for q in ("0.1", "0.5", "0.9")},
        "actualPositiveRate": round(float(np.mean(y)), 6),
    }
    from sklearn.metrics import accuracy_score, roc_auc_score

    result["accuracy"] = round(float(accuracy_score(y, label)), 6)
    result["auc"] = round(float(roc_auc_score(y, p)), 6)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
