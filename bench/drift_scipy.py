"""The drift benchmark's comparison done with numpy and scipy, for bench/drift.ts.

    .tools/venv/bin/python bench/drift_scipy.py DATA_DIR        # the comparison of DATA_DIR (see bench/drift-data.ts)
    .tools/venv/bin/python bench/drift_scipy.py --read-csv FILE  # pandas.read_csv of FILE, when pandas is installed

Loads the binary files of DATA_DIR with np.fromfile (not timed), then times the comparisons the drift engine makes,
written the usual way: per numeric feature (NaN dropped) scipy.stats.ks_2samp, scipy.stats.wasserstein_distance (and
divided by np.std of the reference), decile bins of the reference (np.quantile, inverted CDF, as the engine cuts them)
with counts by np.searchsorted, PSI and scipy.spatial.distance.jensenshannon on those counts, missing and out-of-range
counts; per categorical feature np.bincount counts, scipy.stats.chi2_contingency on the 2 x k table without all-zero
columns, jensenshannon, PSI, L-infinity, missing and unseen counts. Prints one line `RESULT {json}`: wall seconds,
peak RSS (KiB), versions and every statistic (bench/drift.ts checks the engine's against them). Missing numpy or
scipy gives `RESULT {"skipped": reason}` and exit code 0.
"""

import json
import math
import os
import platform
import resource
import sys
import time

BINS = 10
PSI_FLOOR = 1e-4


def result(payload):
    print("RESULT " + json.dumps(payload, allow_nan=False), flush=True)


def finite(x):
    x = float(x)
    return x if math.isfinite(x) else None


def psi(expected, actual):
    e = np.maximum(expected / expected.sum(), PSI_FLOOR)
    a = np.maximum(actual / actual.sum(), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_feature(name, ref, cur):
    ref_missing = int(np.isnan(ref).sum())
    cur_missing = int(np.isnan(cur).sum())
    r = ref[~np.isnan(ref)]
    c = cur[~np.isnan(cur)]
    ks = stats.ks_2samp(r, c)
    w = stats.wasserstein_distance(r, c)
    std = float(np.std(r))
    lo, hi = r.min(), r.max()
    # Inner decile cut points as the engine takes them (the smallest value whose empirical CDF reaches the level, so
    # edges are data values), duplicates removed; an edge at the maximum would leave the last bin empty.
    edges = np.unique(np.quantile(r, np.arange(1, BINS) / BINS, method="inverted_cdf"))
    if edges.size and edges[-1] == hi:
        edges = edges[:-1]
    # Bin i holds (edges[i-1], edges[i]], as the engine's bins.
    ref_counts = np.bincount(np.searchsorted(edges, r, side="left"), minlength=edges.size + 1)
    cur_counts = np.bincount(np.searchsorted(edges, c, side="left"), minlength=edges.size + 1)
    return {
        "name": name,
        "ks": finite(ks.statistic),
        "ksPValue": finite(ks.pvalue),
        "wasserstein": finite(w),
        "wassersteinNormed": finite(w / max(std, 1e-3)),
        "psi": psi(ref_counts, cur_counts),
        "jensenshannon": finite(jensenshannon(ref_counts, cur_counts)),
        "refMissing": ref_missing,
        "curMissing": cur_missing,
        "belowMin": int((c < lo).sum()),
        "aboveMax": int((c > hi).sum()),
    }


def categorical_feature(name, categories, ref, cur):
    ref_counts = np.bincount(ref[ref >= 0], minlength=categories)
    cur_counts = np.bincount(cur[cur >= 0], minlength=categories)
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]
    chi2, p, _dof, _expected = stats.chi2_contingency(table)
    ref_share = ref_counts / ref_counts.sum()
    cur_share = cur_counts / cur_counts.sum()
    return {
        "name": name,
        "chisquare": finite(chi2),
        "chisquarePValue": finite(p),
        "jensenshannon": finite(jensenshannon(ref_counts, cur_counts)),
        "psi": psi(ref_counts, cur_counts),
        "linf": float(np.max(np.abs(ref_share - cur_share))),
        "refMissing": int((ref < 0).sum()),
        "curMissing": int((cur < 0).sum()),
        "unseen": int(cur_counts[ref_counts == 0].sum()),
    }


def compare(data_dir):
    with open(os.path.join(data_dir, "meta.json"), encoding="utf8") as f:
        meta = json.load(f)
    ref_rows, cur_rows = meta["refRows"], meta["curRows"]
    numeric, categorical = meta["numeric"], meta["categorical"]
    ref = np.fromfile(os.path.join(data_dir, "ref.f64"), dtype="<f8").reshape(len(numeric), ref_rows)
    cur = np.fromfile(os.path.join(data_dir, "cur.f64"), dtype="<f8").reshape(len(numeric), cur_rows)
    ref_cat = np.fromfile(os.path.join(data_dir, "ref.cat.i32"), dtype="<i4").reshape(len(categorical), ref_rows)
    cur_cat = np.fromfile(os.path.join(data_dir, "cur.cat.i32"), dtype="<i4").reshape(len(categorical), cur_rows)

    started = time.perf_counter()
    features = [numeric_feature(f["name"], ref[j], cur[j]) for j, f in enumerate(numeric)]
    features += [
        categorical_feature(f["name"], len(f["labels"]), ref_cat[j], cur_cat[j]) for j, f in enumerate(categorical)
    ]
    seconds = time.perf_counter() - started

    result(
        {
            "seconds": seconds,
            "peakRssKiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "features": features,
        }
    )


def read_csv(path):
    try:
        import pandas as pd
    except ImportError:
        result({"skipped": "pandas is not installed in this Python"})
        return
    started = time.perf_counter()
    frame = pd.read_csv(path)
    seconds = time.perf_counter() - started
    result(
        {
            "seconds": seconds,
            "rows": int(frame.shape[0]),
            "columns": int(frame.shape[1]),
            "bytes": os.path.getsize(path),
            "peakRssKiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "pandas": pd.__version__,
        }
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--read-csv":
        read_csv(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        import numpy as np
        import scipy
        from scipy import stats
        from scipy.spatial.distance import jensenshannon
    except ImportError as err:
        result({"skipped": f"{err} (in {sys.executable})"})
        sys.exit(0)
    compare(sys.argv[1])
