#!/usr/bin/env python3
"""Generate the seeded synthetic customer-churn dataset of the example model.

    python examples/churn/generate_data.py --seed 7 --rows 6000 --out examples/churn/data

Writes train.csv (80 % of the rows) and test.csv (20 %) with a header line. The same seed and row count
always give byte-identical files. Only the standard library and numpy are used.

Every customer gets demographic and account features drawn from plausible distributions (monthly charges
depend on the plan, support calls are Poisson), and the churn label is drawn from a logistic model of those
features, so the signal is real and learnable but noisy: no model can predict it perfectly.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

COLUMNS = ["customer_id", "age", "tenure_months", "monthly_charges", "support_calls", "plan", "region", "churned"]
PLANS = np.array(["basic", "standard", "premium"])
REGIONS = np.array(["north", "south", "east", "west"])

# Intercept of the churn logit, chosen so that about 27 % of customers churn.
INTERCEPT = -0.45


def churn_logit(age, tenure, charges, calls, plan, region):
    """The ground-truth log-odds of churn. A trainer never sees this; it has to learn it from the labels."""
    z = np.full(age.shape, INTERCEPT, dtype=float)
    z += -0.075 * tenure  # loyal customers stay
    z += 0.035 * (charges - 65.0)  # expensive customers leave
    z += 0.35 * calls + 0.90 * (calls >= 4)  # unhappy customers call support, and past a point they give up
    z += np.select([plan == "basic", plan == "premium"], [0.30, -0.40], 0.0)
    z += np.select([region == "south", region == "east", region == "west"], [0.30, -0.15, 0.05], 0.0)
    z += 0.40 * (age < 30) + 0.25 * (age > 65)  # the young switch easily, the old move to family plans
    z += 1.00 * ((charges > 90) & (tenure < 12))  # new customers on a big bill are the most at risk
    return z


def generate(rows: int, seed: int):
    rng = np.random.default_rng(seed)
    age = np.clip(np.rint(rng.normal(45, 15, rows)), 18, 85).astype(int)
    # Many recent customers plus a long flat tail of loyal ones.
    recent = rng.random(rows) < 0.55
    tenure = np.where(recent, rng.exponential(14, rows), rng.uniform(0, 72, rows))
    tenure = np.clip(np.floor(tenure), 0, 72).astype(int)
    plan = rng.choice(PLANS, size=rows, p=[0.45, 0.35, 0.20])
    base = np.select([plan == "basic", plan == "standard"], [35.0, 65.0], 95.0)
    spread = np.select([plan == "basic", plan == "standard"], [7.0, 9.0], 10.0)
    charges = np.clip(np.round(rng.normal(base, spread), 2), 20.0, 120.0)
    calls = np.clip(rng.poisson(1.4 + 0.6 * (plan == "basic"), rows), 0, 10).astype(int)
    region = rng.choice(REGIONS, size=rows, p=[0.30, 0.25, 0.25, 0.20])
    p = 1.0 / (1.0 + np.exp(-churn_logit(age, tenure, charges, calls, plan, region)))
    churned = (rng.random(rows) < p).astype(int)
    ids = np.array([f"c{i:06d}" for i in range(rows)])
    order = rng.permutation(rows)
    table = [ids, age, tenure, charges, calls, plan, region, churned]
    return [[col[i] for col in table] for i in order]


def write_csv(path: str, records) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for cid, age, tenure, charges, calls, plan, region, churned in records:
            w.writerow([cid, int(age), int(tenure), f"{float(charges):.2f}", int(calls), plan, region, int(churned)])
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description="Generate the synthetic customer-churn dataset (train.csv, test.csv).")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rows", type=int, default=6000)
    ap.add_argument("--out", required=True, help="output folder (created if missing)")
    ap.add_argument("--test-fraction", type=float, default=0.2)
    args = ap.parse_args()
    if args.rows < 10:
        ap.error("--rows must be at least 10")
    if not 0.0 < args.test_fraction < 1.0:
        ap.error("--test-fraction must be between 0 and 1")

    records = generate(args.rows, args.seed)
    n_test = int(round(args.rows * args.test_fraction))
    train, test = records[n_test:], records[:n_test]
    os.makedirs(args.out, exist_ok=True)
    write_csv(os.path.join(args.out, "train.csv"), train)
    write_csv(os.path.join(args.out, "test.csv"), test)
    rate = sum(int(r[-1]) for r in records) / len(records)
    print(
        f"wrote {len(train)} train and {len(test)} test rows to {args.out} (churn rate {rate:.3f})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
