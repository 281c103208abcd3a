#!/usr/bin/env python3
"""Generate the seeded synthetic daily-demand dataset of the demand example model.

    python examples/demand/generate_data.py --seed 11 --rows 6000 --out examples/demand/data

Writes train.csv (80 % of the rows) and test.csv (20 %) with a header line. The same seed and row count
always give byte-identical files. Only the standard library and numpy are used.

Every row is one product category in one store on one day: the store, the category, the day of the week, the
shelf price, a promotion flag, the day's temperature and a public-holiday flag. The units sold are drawn from a
gamma-Poisson (negative binomial) distribution around a non-linear mean of those features (`log_mean_units`),
so the signal is real and learnable but noisy: no model can predict the count exactly.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

COLUMNS = [
    "record_id",
    "store",
    "category",
    "day_of_week",
    "price",
    "promo",
    "temperature",
    "holiday",
    "units_sold",
]
STORES = np.array(["downtown", "mall", "suburb", "airport", "campus"])
CATEGORIES = np.array(["grocery", "dairy", "bakery", "beverages", "snacks", "household"])
DAYS = np.array(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])

# Per category: the list price in dollars, the log of the mean units at that price, and the price elasticity.
BASE_PRICE = {"grocery": 4.0, "dairy": 3.0, "bakery": 2.5, "beverages": 2.0, "snacks": 3.5, "household": 8.0}
BASE_LOG_UNITS = {"grocery": 3.9, "dairy": 3.6, "bakery": 3.4, "beverages": 3.5, "snacks": 3.3, "household": 2.7}
ELASTICITY = {"grocery": 1.0, "dairy": 0.8, "bakery": 1.2, "beverages": 1.5, "snacks": 1.8, "household": 0.6}
STORE_EFFECT = {"downtown": 0.20, "mall": 0.10, "suburb": 0.0, "airport": -0.30, "campus": -0.10}
# Weekend traffic moves from offices and campuses to malls and suburbs.
WEEKEND_EFFECT = {"downtown": -0.35, "mall": 0.35, "suburb": 0.25, "airport": 0.10, "campus": -0.50}
# Shape of the gamma noise on the mean: the day-to-day variation no feature explains (coefficient of variation 0.2).
NOISE_SHAPE = 25.0


def _lookup(table: dict, keys) -> np.ndarray:
    return np.array([table[k] for k in keys], dtype=float)


def log_mean_units(store, category, day, price, promo, temperature, holiday):
    """The ground-truth log of the expected units sold. A trainer never sees this: it learns it from the counts."""
    z = _lookup(BASE_LOG_UNITS, category) + _lookup(STORE_EFFECT, store)
    weekend = (day == "sat") | (day == "sun")
    z += np.where(weekend, _lookup(WEEKEND_EFFECT, store), 0.0) + 0.10 * (day == "fri")
    # Demand falls with the price relative to the category's list price, faster for snacks and drinks.
    z -= _lookup(ELASTICITY, category) * np.log(price / _lookup(BASE_PRICE, category))
    z += promo * (0.30 + 0.25 * np.isin(category, ["snacks", "beverages"]))  # a promotion sells beyond its discount
    # Hot days sell drinks (sharply above 18 °C) and some dairy (ice cream, above 22 °C); warm days sell less bread.
    z += np.where(category == "beverages", 0.05 * np.maximum(temperature - 18.0, 0.0), 0.0)
    z += np.where(category == "dairy", 0.04 * np.maximum(temperature - 22.0, 0.0), 0.0)
    z += np.where(category == "bakery", -0.015 * (temperature - 14.0), 0.0)
    # Holidays: people stock up on groceries and bread, and offices and campuses empty.
    z += holiday * (0.40 * np.isin(category, ["grocery", "bakery"]) - 0.50 * np.isin(store, ["downtown", "campus"]))
    return z


def generate(rows: int, seed: int):
    rng = np.random.default_rng(seed)
    store = rng.choice(STORES, size=rows, p=[0.25, 0.25, 0.20, 0.15, 0.15])
    category = rng.choice(CATEGORIES, size=rows, p=[0.20, 0.15, 0.15, 0.20, 0.15, 0.15])
    day_of_year = rng.integers(0, 365, rows)
    day = DAYS[day_of_year % 7]
    promo = (rng.random(rows) < 0.15).astype(int)
    # Shelf prices scatter around the list price; a promotion takes 20 % off.
    price = _lookup(BASE_PRICE, category) * np.exp(rng.normal(0.0, 0.18, rows)) * np.where(promo == 1, 0.8, 1.0)
    price = np.clip(np.round(price, 2), 0.5, 20.0)
    season = np.sin(2.0 * np.pi * (day_of_year - 105) / 365.0)  # coldest in mid-January, warmest in mid-July
    temperature = np.clip(np.round(14.0 + 11.0 * season + rng.normal(0.0, 4.0, rows), 1), -10.0, 38.0)
    holiday = (rng.random(rows) < 0.04).astype(int)
    mean = np.exp(log_mean_units(store, category, day, price, promo, temperature, holiday))
    units = rng.poisson(mean * rng.gamma(NOISE_SHAPE, 1.0 / NOISE_SHAPE, rows))
    ids = np.array([f"d{i:06d}" for i in range(rows)])
    order = rng.permutation(rows)
    table = [ids, store, category, day, price, promo, temperature, holiday, units]
    return [[col[i] for col in table] for i in order]


def write_csv(path: str, records) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for rid, store, category, day, price, promo, temperature, holiday, units in records:
            w.writerow(
                [
                    rid,
                    store,
                    category,
                    day,
                    f"{float(price):.2f}",
                    int(promo),
                    f"{float(temperature):.1f}",
                    int(holiday),
                    int(units),
                ]
            )
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description="Generate the synthetic daily-demand dataset (train.csv, test.csv).")
    ap.add_argument("--seed", type=int, default=11)
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
    mean_units = sum(int(r[-1]) for r in records) / len(records)
    print(
        f"wrote {len(train)} train and {len(test)} test rows to {args.out} (mean units sold {mean_units:.2f})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
