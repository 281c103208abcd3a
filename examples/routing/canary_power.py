#!/usr/bin/env python3
"""How often a canary of n predictions misses a candidate: simulated with the rollout's predictionDrift rule.

    .tools/venv/bin/python examples/routing/canary_power.py --stable-dir GOOD --candidate-dir BAD \\
        [--data examples/routing/data/test.csv] [--sizes 40,60,100,200] [--draws 20000] [--max-psi 0.25] [--alpha 0.01]

Both models score the CSV as live traffic would (raw values, onnx's reference evaluator). Each draw takes n of the
candidate's predicted classes and 9n of the stable model's (a 10 % canary; live traffic picks its users at random),
and applies the rule the gateway's analysis applies to a multiclass model: drift when PSI over the class counts
(shares floored at 1e-4) is above --max-psi AND the chi-squared test of homogeneity has a p-value under --alpha. It
prints, per n, the share of draws that do not call it drift: the canary's miss rate (with the same model as both
arguments, its false-alarm rate is one minus that). Seeded: the same figures on every run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator
from scipy.stats import chi2_contingency

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import CLASSES, load_csv, onnx_feeds, to_arrays  # noqa: E402

PSI_FLOOR = 1e-4  # populationStabilityIndex's epsilon (src/drift/stats.ts)


def predicted(model_dir: str, X) -> np.ndarray:
    model = onnx.load(os.path.join(model_dir, "model.onnx"))
    label, _ = ReferenceEvaluator(model).run(None, onnx_feeds(np, X))
    return label.astype(np.int64)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    e = np.maximum(reference / reference.sum(), PSI_FLOOR)
    a = np.maximum(current / current.sum(), PSI_FLOOR)
    return float(((a - e) * np.log(a / e)).sum())


def drifted(reference: np.ndarray, current: np.ndarray, max_psi: float, alpha: float) -> bool:
    table = np.vstack([reference, current])
    table = table[:, table.sum(axis=0) > 0]  # a class neither side predicted tells nothing
    p = chi2_contingency(table, correction=False)[1] if table.shape[1] > 1 else 1.0
    return psi(reference, current) > max_psi and p < alpha


def main() -> int:
    ap = argparse.ArgumentParser(description="Simulate canaries of the rollout's predictionDrift rule.")
    ap.add_argument("--stable-dir", required=True, help="the production model's train.py output")
    ap.add_argument("--candidate-dir", required=True, help="the candidate's train.py output")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "data", "test.csv"))
    ap.add_argument("--sizes", default="40,60,100,200", help="candidate predictions per canary, comma-separated")
    ap.add_argument("--draws", type=int, default=20000)
    ap.add_argument("--max-psi", type=float, default=0.25)
    ap.add_argument("--alpha", type=float, default=0.01)
    args = ap.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        ap.error(f'--sizes: "{args.sizes}" is not a comma-separated list of integers')
    if any(n < 1 for n in sizes) or args.draws < 1:
        ap.error("--sizes and --draws must be at least 1")

    rows, labels = load_csv(args.data)
    X, _ = to_arrays(np, rows, labels, {})
    stable = predicted(args.stable_dir, X)
    candidate = predicted(args.candidate_dir, X)
    count = lambda v: np.bincount(v, minlength=len(CLASSES))  # noqa: E731
    rng = np.random.default_rng(7)
    misses = {}
    for n in sizes:
        missed = sum(
            not drifted(count(rng.choice(stable, 9 * n)), count(rng.choice(candidate, n)), args.max_psi, args.alpha)
            for _ in range(args.draws)
        )
        misses[str(n)] = round(missed / args.draws, 5)
    print(
        json.dumps(
            {
                "rows": int(len(stable)),
                "populationPsi": round(psi(count(stable), count(candidate)), 4),
                "draws": args.draws,
                "rule": {"maxPsi": args.max_psi, "alpha": args.alpha},
                "missRate": misses,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
