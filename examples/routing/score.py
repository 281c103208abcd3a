#!/usr/bin/env python3
"""Score a CSV through an exported model.onnx, the way the serving gateway does (raw feature values in).

    .tools/venv/bin/python examples/routing/score.py --model-dir OUT --data examples/routing/data/test.csv

Runs the graph with onnx's reference evaluator (no onnxruntime needed) and prints one JSON object:
rows, the share of tickets routed to each queue, the mean probability of each queue, the actual shares,
accuracy, macroF1 and logLoss.
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
from train import CLASS_NAMES, CLASSES, load_csv, onnx_feeds, to_arrays  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description="Score a CSV through model.onnx with the ONNX reference evaluator.")
    ap.add_argument("--model-dir", required=True, help="folder holding model.onnx (a train.py output)")
    ap.add_argument("--data", required=True, help="CSV with the feature and label columns, e.g. test.csv")
    args = ap.parse_args()

    rows, labels = load_csv(args.data)
    X, y = to_arrays(np, rows, labels, {})
    model = onnx.load(os.path.join(args.model_dir, "model.onnx"))
    label, proba = ReferenceEvaluator(model).run(None, onnx_feeds(np, X))
    label = label.astype(np.int64)
    shares = lambda v: {n: round(float(s), 6) for n, s in zip(CLASS_NAMES, v)}  # noqa: E731
    result = {
        "rows": int(len(label)),
        "predictedShares": shares(np.bincount(label, minlength=len(CLASSES)) / len(label)),
        "meanProbabilities": shares(proba.mean(axis=0)),
        "actualShares": shares(np.bincount(y, minlength=len(CLASSES)) / len(y)),
    }
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    result["accuracy"] = round(float(accuracy_score(y, label)), 6)
    result["macroF1"] = round(float(f1_score(y, label, labels=CLASSES, average="macro", zero_division=0)), 6)
    result["logLoss"] = round(float(log_loss(y, proba, labels=CLASSES)), 6)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
