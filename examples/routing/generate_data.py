#!/usr/bin/env python3
"""Generate the seeded synthetic support-ticket dataset of the routing example model.

    python examples/routing/generate_data.py --seed 13 --rows 6000 --out examples/routing/data

Writes train.csv (80 % of the rows) and test.csv (20 %) with a header line. The same seed and row count
always give byte-identical files. Only the standard library and numpy are used.

Every row is one support ticket: the product it is about, the channel it came in by, the customer's tier and
monthly spend, the account's age, the customer's earlier tickets, the message length and the number of
attachments. The queue it belongs to (billing, technical, account or sales) is drawn from a multinomial logistic
model of those features (`queue_logits`), so the signal is real and learnable but noisy: no model can route every
ticket right.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

COLUMNS = [
    "ticket_id",
    "product",
    "channel",
    "customer_tier",
    "monthly_spend",
    "account_age_days",
    "previous_tickets",
    "message_length",
    "attachments",
    "queue",
]
PRODUCTS = np.array(["cloud", "mobile", "desktop", "api"])
CHANNELS = np.array(["email", "chat", "phone", "web_form"])
TIERS = np.array(["free", "pro", "enterprise"])
QUEUES = ["billing", "technical", "account", "sales"]  # label 0..3
# Multiplies every logit: how sharply the features decide the queue (higher, less noise in the labels).
SHARPNESS = 2.5
# How long an account counts as new: the e-folding time, in days, of the new-account effects (about a quarter).
NEW_ACCOUNT_DAYS = 90.0


def queue_logits(product, channel, tier, spend, age, previous, length, attachments):
    """The ground-truth log-odds of each queue, [N, 4]. A trainer never sees this: it learns it from the labels."""
    new = np.exp(-age / NEW_ACCOUNT_DAYS)  # 1 for an account opened today, 0.37 after three months, nil after two years
    paying = tier != "free"
    log_length = np.log(length / 300.0)
    billing = (
        -0.6
        + 1.4 * paying
        + 0.25 * np.log1p(spend / 50.0)  # bigger bills, more invoices to query
        + 0.5 * (channel == "email")
        + 0.6 * ((age % 365) < 20) * (age > 300)  # the weeks after a yearly renewal
    )
    technical = (
        0.2
        + 0.55 * np.minimum(attachments, 3)  # screenshots and logs
        + np.select([product == "api", product == "desktop", product == "mobile"], [1.0, 0.4, 0.1], 0.0)
        + 0.6 * log_length  # long, detailed messages
        + 0.3 * (channel == "chat")
    )
    account = (
        0.0
        + 2.2 * new  # sign-up, verification and first-login trouble
        + 0.5 * (channel == "phone")
        + 0.4 * (product == "mobile")
        + 0.12 * np.minimum(previous, 10)
        + 0.5 * (tier == "enterprise")  # seats and single sign-on
    )
    sales = (
        -0.5
        + 1.0 * (tier == "free")
        + 1.5 * new * (tier == "free")  # trials asking about plans
        + 0.9 * (channel == "web_form")
        - 0.5 * log_length  # short questions
        + 0.4 * (previous == 0)
    )
    return SHARPNESS * np.stack([billing, technical, account, sales], axis=1)


def generate(rows: int, seed: int):
    rng = np.random.default_rng(seed)
    product = rng.choice(PRODUCTS, size=rows, p=[0.35, 0.25, 0.25, 0.15])
    channel = rng.choice(CHANNELS, size=rows, p=[0.35, 0.25, 0.15, 0.25])
    tier = rng.choice(TIERS, size=rows, p=[0.50, 0.35, 0.15])
    spend = np.select(
        [tier == "pro", tier == "enterprise"],
        [rng.normal(49.0, 15.0, rows), rng.lognormal(np.log(900.0), 0.5, rows)],
        0.0,
    )
    spend = np.round(np.clip(spend, 0.0, 20000.0), 2)
    # A quarter of the tickets come from accounts opened in the last weeks, the rest from accounts up to ten years old.
    recent = rng.random(rows) < 0.25
    age = np.where(recent, rng.exponential(20.0, rows), rng.uniform(0.0, 3650.0, rows))
    age = np.clip(np.floor(age), 0, 3650).astype(int)
    previous = np.clip(rng.poisson(0.3 + 1.2 * age / 1000.0), 0, 40).astype(int)
    length = np.clip(np.rint(rng.lognormal(np.log(300.0), 0.8, rows)), 5, 8000).astype(int)
    attachments = np.clip(rng.poisson(0.5, rows), 0, 8).astype(int)
    z = queue_logits(product, channel, tier, spend, age, previous, length, attachments)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    queue = (rng.random((rows, 1)) > np.cumsum(p, axis=1)).sum(axis=1)  # one draw per row from its probabilities
    queue = np.minimum(queue, len(QUEUES) - 1).astype(int)
    ids = np.array([f"t{i:06d}" for i in range(rows)])
    order = rng.permutation(rows)
    table = [ids, product, channel, tier, spend, age, previous, length, attachments, queue]
    return [[col[i] for col in table] for i in order]


def write_csv(path: str, records) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for tid, product, channel, tier, spend, age, previous, length, attachments, queue in records:
            w.writerow(
                [
                    tid,
                    product,
                    channel,
                    tier,
                    f"{float(spend):.2f}",
                    int(age),
                    int(previous),
                    int(length),
                    int(attachments),
                    int(queue),
                ]
            )
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description="Generate the synthetic support-ticket dataset (train.csv, test.csv).")
    ap.add_argument("--seed", type=int, default=13)
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
    counts = np.bincount([int(r[-1]) for r in records], minlength=len(QUEUES)) / len(records)
    shares = ", ".join(f"{q} {s:.3f}" for q, s in zip(QUEUES, counts))
    print(f"wrote {len(train)} train and {len(test)} test rows to {args.out} ({shares})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
