"""The drift benchmark's comparison done with Evidently's DataDriftPreset, for bench/drift.ts.

    .tools/bench-venv/bin/python bench/drift_evidently.py DATA_DIR

Loads the binary files of DATA_DIR (see bench/drift-data.ts) with np.fromfile, as bench/drift_scipy.py does, into two
pandas DataFrames as a CSV reader would give them (numeric columns float64 with NaN where missing, categorical columns
their labels as strings with None where missing) and wraps them in Evidently Datasets with an explicit DataDefinition
(50 numerical, 10 categorical columns): none of that is timed. Then times `Report([DataDriftPreset()]).run(current,
reference)`, Evidently's defaults (at these sizes Wasserstein distance normed by the reference's standard deviation
for numeric columns, Jensen-Shannon distance for categorical ones, as the engine's defaults). Prints one line
`RESULT {json}`: wall seconds, peak RSS (KiB, the whole process, data included), versions, the number of drifted
columns and each column's method, score and threshold. Without evidently (or pandas) it prints
`RESULT {"skipped": reason}` and exits 0.
"""

import json
import math
import os
import platform
import resource
import sys
import time


def result(payload):
    print("RESULT " + json.dumps(payload, allow_nan=False), flush=True)


def finite(x):
    x = float(x)
    return x if math.isfinite(x) else None


def frames(data_dir):
    with open(os.path.join(data_dir, "meta.json"), encoding="utf8") as f:
        meta = json.load(f)
    numeric, categorical = meta["numeric"], meta["categorical"]

    def side(name, rows):
        values = np.fromfile(os.path.join(data_dir, f"{name}.f64"), dtype="<f8").reshape(len(numeric), rows)
        codes = np.fromfile(os.path.join(data_dir, f"{name}.cat.i32"), dtype="<i4").reshape(len(categorical), rows)
        columns = {f["name"]: values[j] for j, f in enumerate(numeric)}
        for j, f in enumerate(categorical):
            # Code -1 (missing) picks the trailing None.
            labels = np.array(f["labels"] + [None], dtype=object)
            columns[f["name"]] = labels[codes[j]]
        return pd.DataFrame(columns)

    definition = DataDefinition(
        numerical_columns=[f["name"] for f in numeric],
        categorical_columns=[f["name"] for f in categorical],
    )
    reference = Dataset.from_pandas(side("ref", meta["refRows"]), data_definition=definition)
    current = Dataset.from_pandas(side("cur", meta["curRows"]), data_definition=definition)
    return reference, current


def compare(data_dir):
    reference, current = frames(data_dir)

    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current, reference)
    seconds = time.perf_counter() - started

    drifted = None
    features = []
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("DriftedColumnsCount"):
            drifted = {"count": int(metric["value"]["count"]), "share": finite(metric["value"]["share"])}
        elif config.get("type", "").endswith("ValueDrift"):
            method, score, threshold = config.get("method"), finite(metric["value"]), config.get("threshold")
            # Evidently's rule: a test drifts below its threshold (a p-value), a distance at or above it.
            is_test = method is not None and "p_value" in method
            features.append(
                {
                    "name": config["column"],
                    "method": method,
                    "score": score,
                    "threshold": threshold,
                    "drifted": None
                    if score is None or threshold is None
                    else (score < threshold if is_test else score >= threshold),
                }
            )
    result(
        {
            "seconds": seconds,
            "peakRssKiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "python": platform.python_version(),
            "evidently": evidently.__version__,
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "driftedColumns": drifted,
            "features": features,
        }
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        import numpy as np
        import pandas as pd
        import scipy

        import evidently
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    except ImportError as err:
        result({"skipped": f"{err} (in {sys.executable})"})
        sys.exit(0)
    compare(sys.argv[1])
