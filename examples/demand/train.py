#!/usr/bin/env python3
"""Train the demand example model with LightGBM and export it to ONNX with onnxmltools (inside skl2onnx).

    .tools/venv/bin/python examples/demand/train.py --data-dir DIR --out OUT [--params JSON]

DIR holds train.csv and test.csv (see generate_data.py). OUT receives, each written atomically:
  model.onnx    one input per feature (numeric: float [N,1], categorical: string [N,1]);
                one output `value` (float [N,1]): the predicted units sold
  model.json    the manifest the serving gateway reads (task, features, label, output names)
  metrics.json  offline metrics on test.csv; written last, so its presence means the artifact is complete

stdout carries one JSON object per line (`{"event":"progress","step":...,"pct":...}`), stderr human-readable logs.
Exit codes: 0 done; 2 bad params, arguments or missing data paths (not worth retrying); 1 anything else
(including unusable data files); 143 when terminated by SIGTERM.
See README.md for the parameters.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import sys
import time

NUMERIC = ["price", "promo", "temperature", "holiday"]
CATEGORICAL = ["store", "category", "day_of_week"]
FEATURES = NUMERIC + CATEGORICAL  # the ONNX input order
LABEL = "units_sold"
ALGORITHM = "lightgbm"
# Only for the ONNX parity check after export: how many test rows to run through the exported graph.
PARITY_ROWS = 200


class BadSpec(Exception):
    """A problem with the request itself (params, paths): exit 2, retrying cannot help."""


class DataError(Exception):
    """The data files exist but cannot be used (missing column, bad value, constant label): exit 1, no traceback."""


def log(message: str) -> None:
    print(f"train.py: {message}", file=sys.stderr, flush=True)


def emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def progress(step: str, pct: int, **extra) -> None:
    emit({"event": "progress", "step": step, "pct": pct, **extra})


# The signal that terminated the run, once one has: see main().
TERMINATED_BY: list[int] = []


def on_sigterm(signum, frame) -> None:
    TERMINATED_BY.append(signum)
    sys.exit(128 + signum)


# ---------------------------------------------------------------------------------------------- params


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_param(raw: dict, key: str, default: int, lo: int, hi: int) -> int:
    if key not in raw:
        return default
    v = raw[key]
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not _is_int(v):
        raise BadSpec(f"params.{key} must be an integer, got {json.dumps(v)}")
    if not lo <= v <= hi:
        raise BadSpec(f"params.{key} must be between {lo} and {hi}, got {v}")
    return v


def _float_param(raw: dict, key: str, default: float, lo: float, hi: float) -> float:
    if key not in raw:
        return default
    v = raw[key]
    if not _is_number(v):
        raise BadSpec(f"params.{key} must be a number, got {json.dumps(v)}")
    if not lo < v <= hi:
        raise BadSpec(f"params.{key} must be greater than {lo} and at most {hi}, got {v}")
    return float(v)


KNOWN_KEYS = ("nEstimators", "learningRate", "numLeaves", "seed", "featureScale")


def parse_params(text: str) -> dict:
    """Validate the params JSON and return the effective params (defaults filled in)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadSpec(f"--params is not valid JSON: {e.msg} at position {e.pos}") from None
    if not isinstance(raw, dict):
        raise BadSpec(f"--params must be a JSON object, got {type(raw).__name__}")
    for key in raw:
        if key not in KNOWN_KEYS:
            raise BadSpec(f'unknown param "params.{key}" (known: {", ".join(KNOWN_KEYS)})')

    params: dict = {
        "nEstimators": _int_param(raw, "nEstimators", 300, 1, 5000),
        "learningRate": _float_param(raw, "learningRate", 0.05, 0.0, 10.0),
        "numLeaves": _int_param(raw, "numLeaves", 15, 2, 1024),
        "seed": _int_param(raw, "seed", 7, 0, 2**31 - 1),
    }

    scale = raw.get("featureScale", {})
    if not isinstance(scale, dict):
        raise BadSpec(f"params.featureScale must be an object mapping a numeric feature to a multiplier, got {json.dumps(scale)}")
    for name, mult in scale.items():
        if name not in NUMERIC:
            raise BadSpec(f'params.featureScale."{name}" is not a numeric feature (numeric: {", ".join(NUMERIC)})')
        if not _is_number(mult) or mult <= 0:
            raise BadSpec(f'params.featureScale."{name}" must be a positive number, got {json.dumps(mult)}')
    params["featureScale"] = {name: float(scale[name]) for name in NUMERIC if name in scale}
    return params


# ------------------------------------------------------------------------------------------------ data


def load_csv(path: str):
    """Read one split: X as a list of rows in FEATURES order (floats, then strings) and y as floats."""
    X, y = [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in FEATURES + [LABEL] if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
        for line_no, row in enumerate(reader, start=2):
            try:
                nums = [float(row[c]) for c in NUMERIC]
                label = float(row[LABEL])
                if not all(math.isfinite(v) for v in nums + [label]):
                    raise ValueError("non-finite number")
            except (TypeError, ValueError) as e:
                raise DataError(f"{path}:{line_no}: bad value ({e})") from None
            cats = [row[c] for c in CATEGORICAL]
            if any(c is None or c == "" for c in cats):
                raise DataError(f"{path}:{line_no}: empty categorical value")
            X.append(nums + cats)
            y.append(label)
    if not X:
        raise DataError(f"{path}: no rows")
    return X, y


def to_arrays(np, rows, labels, scale: dict):
    X = np.empty((len(rows), len(FEATURES)), dtype=object)
    for i, row in enumerate(rows):
        X[i, :] = row
    for name, mult in scale.items():
        j = FEATURES.index(name)
        X[:, j] = X[:, j].astype(float) * mult
    return X, np.asarray(labels, dtype=np.float64)


# ---------------------------------------------------------------------------------------------- output


def write_atomic(directory: str, name: str, data: bytes) -> None:
    final = os.path.join(directory, name)
    tmp = os.path.join(directory, f".{name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def manifest() -> dict:
    return {
        "name": "demand",
        "task": "regression",
        "features": [{"name": n, "type": "numeric"} for n in NUMERIC]
        + [{"name": n, "type": "categorical"} for n in CATEGORICAL],
        "label": LABEL,
        "outputs": {"value": "value"},
    }


def onnx_feeds(np, X) -> dict:
    """The ONNX inputs for rows of X (FEATURES order): one [N,1] tensor per feature."""
    feeds = {}
    for j, name in enumerate(FEATURES):
        col = X[:, j]
        feeds[name] = (col.astype(np.float32) if name in NUMERIC else col.astype(str).astype(object)).reshape(-1, 1)
    return feeds


# ------------------------------------------------------------------------------------------------ main


def train(args, params: dict) -> dict:
    started = time.monotonic()
    train_csv = os.path.join(args.data_dir, "train.csv")
    test_csv = os.path.join(args.data_dir, "test.csv")
    if not os.path.isdir(args.data_dir):
        raise BadSpec(f"data dir not found: {args.data_dir}")
    for p in (train_csv, test_csv):
        if not os.path.isfile(p):
            raise BadSpec(f"data file not found: {p}")
    os.makedirs(args.out, exist_ok=True)
    # A stale metrics.json from an earlier attempt must not vouch for files this run is about to replace.
    stale = os.path.join(args.out, "metrics.json")
    if os.path.exists(stale):
        os.unlink(stale)

    progress("start", 0, algorithm=ALGORITHM)
    import numpy as np

    train_rows, train_labels = load_csv(train_csv)
    test_rows, test_labels = load_csv(test_csv)
    X_train, y_train = to_arrays(np, train_rows, train_labels, params["featureScale"])
    X_test, y_test = to_arrays(np, test_rows, test_labels, params["featureScale"])
    log(f"loaded {len(y_train)} train and {len(y_test)} test rows from {args.data_dir}")
    if params["featureScale"]:
        log(f"feature scale applied to train and test: {params['featureScale']}")
    progress("load", 10, trainRows=len(y_train), testRows=len(y_test))

    for path, labels in ((train_csv, y_train), (test_csv, y_test)):
        if len(labels) < 2 or float(np.min(labels)) == float(np.max(labels)):
            raise DataError(f"{path}: {LABEL} is constant; cannot train or evaluate a regressor (r2 is undefined)")

    from lightgbm import LGBMRegressor
    from sklearn.compose import ColumnTransformer
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    fit_started = time.monotonic()
    # Trees need no scaling: numeric features pass through, categoricals are one-hot encoded (unknown: all zeros).
    pre = ColumnTransformer(
        [
            ("num", "passthrough", list(range(len(NUMERIC)))),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(range(len(NUMERIC), len(FEATURES)))),
        ]
    )
    Xt = pre.fit_transform(X_train).astype(np.float64)
    progress("fit", 20)
    total = params["nEstimators"]
    chunk = max(1, math.ceil(total / 5))

    def report(env) -> None:  # a LightGBM callback, run after every boosting round
        done = env.iteration - env.begin_iteration + 1
        if done % chunk == 0 or done == total:
            progress("fit", 20 + int(60 * done / total), estimators=done, of=total)

    reg = LGBMRegressor(
        objective="regression",
        n_estimators=total,
        learning_rate=params["learningRate"],
        num_leaves=params["numLeaves"],
        random_state=params["seed"],
        # One thread and deterministic histograms: the same data and params give the same trees on any machine.
        n_jobs=1,
        deterministic=True,
        force_col_wise=True,
        verbose=-1,
    )
    reg.fit(Xt, y_train, callbacks=[report])
    train_seconds = time.monotonic() - fit_started
    model = Pipeline([("pre", pre), ("reg", reg)])
    log(f"fitted {ALGORITHM} ({total} trees) in {train_seconds:.2f}s")

    pred = model.predict(X_test)
    metrics = {
        "mae": round(float(mean_absolute_error(y_test, pred)), 6),
        "rmse": round(float(math.sqrt(mean_squared_error(y_test, pred))), 6),
        "r2": round(float(r2_score(y_test, pred)), 6),
        "meanPrediction": round(float(np.mean(pred)), 6),
        "rows": int(len(y_test)),
        "trainRows": int(len(y_train)),
        "testRows": int(len(y_test)),
        "trainSeconds": round(train_seconds, 3),
        "algorithm": ALGORITHM,
        "params": params,
    }
    log("offline metrics: " + ", ".join(f"{k}={metrics[k]}" for k in ("mae", "rmse", "r2", "meanPrediction")))
    progress("evaluate", 85)

    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import convert_sklearn, update_registered_converter
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes

    # skl2onnx converts the preprocessing (string inputs, one-hot encoding); onnxmltools' LightGBM converter the trees.
    update_registered_converter(
        LGBMRegressor,
        "LightGbmLGBMRegressor",
        calculate_linear_regressor_output_shapes,
        convert_lightgbm,
        options={"split": None},
    )
    initial_types = [(n, FloatTensorType([None, 1])) for n in NUMERIC] + [
        (n, StringTensorType([None, 1])) for n in CATEGORICAL
    ]
    onx = convert_sklearn(
        model,
        name="demand",
        initial_types=initial_types,
        final_types=[("value", FloatTensorType([None, 1]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    outputs = [o.name for o in onx.graph.output]
    if outputs != ["value"]:
        raise RuntimeError(f"unexpected ONNX outputs {outputs}")
    # skl2onnx lists the opsets in set order, which changes with Python's string hashing: sort them, so that the same
    # data and params always give the same model.onnx bytes.
    opsets = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    for domain, version in opsets:
        onx.opset_import.add(domain=domain, version=version)
    onx.doc_string = "demand regressor: LightGBM (one-hot encoding and trees, exported by skl2onnx and onnxmltools)"
    for key, value in (("params", json.dumps(params, sort_keys=True)), ("features", ",".join(FEATURES))):
        entry = onx.metadata_props.add()
        entry.key, entry.value = key, value

    # The served artifact must be the evaluated model: run test rows through the exported graph and compare.
    from onnx.reference import ReferenceEvaluator

    n = min(PARITY_ROWS, len(y_test))
    got = ReferenceEvaluator(onx).run(None, onnx_feeds(np, X_test[:n]))[0].reshape(-1).astype(np.float64)
    diff = np.abs(got - pred[:n])
    # float32 sums of a few hundred leaf values: allow a relative 1e-4 of the prediction on top of an absolute 1e-3.
    off = int(np.sum(diff > 1e-3 + 1e-4 * np.abs(pred[:n])))
    if off:
        raise RuntimeError(
            f"exported ONNX model disagrees with LightGBM on {off} of {n} test rows "
            f"(max difference {float(np.max(diff)):.2e})"
        )
    log(f"ONNX parity on {n} test rows: max difference {float(np.max(diff)):.2e}")
    progress("export", 95)

    write_atomic(args.out, "model.onnx", onx.SerializeToString())
    write_atomic(args.out, "model.json", (json.dumps(manifest(), indent=2) + "\n").encode())
    write_atomic(args.out, "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())  # last: marks completion
    log(f"wrote model.onnx, model.json, metrics.json to {args.out} in {time.monotonic() - started:.2f}s")
    progress("done", 100, metrics=metrics)
    return metrics


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints the usage too by default)
        log(f"bad arguments: {message}")
        sys.exit(2)


def main(argv=None) -> int:
    ap = Parser(description="Train the demand example model and export it to ONNX.")
    ap.add_argument("--data-dir", required=True, help="folder with train.csv and test.csv")
    ap.add_argument("--out", required=True, help="output folder for model.onnx, model.json, metrics.json")
    ap.add_argument("--params", default="{}", help="JSON object of training params (see README.md)")
    args = ap.parse_args(argv)
    # On SIGTERM (the activity cancelled or timed out) unwind normally, so half-written temp files are removed.
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        params = parse_params(args.params)
        train(args, params)
        return 0
    except BadSpec as e:
        log(f"bad spec: {e}")
        return 2
    except DataError as e:
        log(f"bad data: {e}")
        return 1
    except Exception as e:  # noqa: BLE001 - an unexpected failure: the traceback, then one summary line last
        if TERMINATED_BY:
            # The SIGTERM's SystemExit was turned into another exception on its way up: a module being imported
            # when it came fails with "ImportError: initialization failed". Still a termination, not a failure.
            log(f"terminated by signal {TERMINATED_BY[0]} ({type(e).__name__}: {e})")
            return 128 + TERMINATED_BY[0]
        import traceback

        traceback.print_exc(file=sys.stderr)
        log(f"failed: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
