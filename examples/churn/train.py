#!/usr/bin/env python3
"""Train the churn example model with scikit-learn and export it to ONNX with skl2onnx.

    .tools/venv/bin/python examples/churn/train.py --data-dir DIR --out OUT [--params JSON]

DIR holds train.csv and test.csv (see generate_data.py). OUT receives, each written atomically:
  model.onnx    one input per feature (numeric: float [N,1], categorical: string [N,1]);
                outputs `label` (int64 [N]) and `probabilities` (float [N,2])
  model.json    the manifest the serving gateway reads (features, label, classes, output names)
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

NUMERIC = ["age", "tenure_months", "monthly_charges", "support_calls"]
CATEGORICAL = ["plan", "region"]
FEATURES = NUMERIC + CATEGORICAL  # the ONNX input order
LABEL = "churned"
ALGORITHMS = ("gradient_boosting", "logistic_regression")
# Only for the ONNX parity check after export: how many test rows to run through the exported graph.
PARITY_ROWS = 200


class BadSpec(Exception):
    """A problem with the request itself (params, paths): exit 2, retrying cannot help."""


class DataError(Exception):
    """The data files exist but cannot be used (missing column, bad value, one class only): exit 1, no traceback."""


def log(message: str) -> None:
    print(f"train.py: {message}", file=sys.stderr, flush=True)


def emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def progress(step: str, pct: int, **extra) -> None:
    emit({"event": "progress", "step": step, "pct": pct, **extra})


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


GB_KEYS = ("nEstimators", "learningRate", "maxDepth")
LR_KEYS = ("maxIter",)
COMMON_KEYS = ("algorithm", "seed", "featureScale")
KNOWN_KEYS = COMMON_KEYS + GB_KEYS + LR_KEYS


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

    algorithm = raw.get("algorithm", "gradient_boosting")
    if algorithm not in ALGORITHMS:
        raise BadSpec(f"params.algorithm must be one of {', '.join(ALGORITHMS)}, got {json.dumps(algorithm)}")
    params: dict = {"algorithm": algorithm}
    if algorithm == "gradient_boosting":
        params["nEstimators"] = _int_param(raw, "nEstimators", 150, 1, 5000)
        params["learningRate"] = _float_param(raw, "learningRate", 0.1, 0.0, 10.0)
        params["maxDepth"] = _int_param(raw, "maxDepth", 3, 1, 32)
        # Validate the other algorithm's keys too, so a typo'd value never passes silently.
        _int_param(raw, "maxIter", 500, 1, 1_000_000)
    else:
        params["maxIter"] = _int_param(raw, "maxIter", 500, 1, 1_000_000)
        _int_param(raw, "nEstimators", 150, 1, 5000)
        _float_param(raw, "learningRate", 0.1, 0.0, 10.0)
        _int_param(raw, "maxDepth", 3, 1, 32)
    params["seed"] = _int_param(raw, "seed", 7, 0, 2**32 - 1)

    scale = raw.get("featureScale", {})
    if not isinstance(scale, dict):
        raise BadSpec(f"params.featureScale must be an object mapping a numeric feature to a multiplier, got {json.dumps(scale)}")
    for name, mult in scale.items():
        if name not in NUMERIC:
            raise BadSpec(f'params.featureScale."{name}" is not a numeric feature (numeric: {", ".join(NUMERIC)})')
        if not _is_number(mult) or mult <= 0:
            raise BadSpec(f'params.featureScale."{name}" must be a positive number, got {json.dumps(mult)}')
    params["featureScale"] = {name: float(scale[name]) for name in NUMERIC if name in scale}

    ignored = [k for k in (LR_KEYS if algorithm == "gradient_boosting" else GB_KEYS) if k in raw]
    if ignored:
        log(f"note: {', '.join(ignored)} do not apply to {algorithm}; ignored")
    return params


# ------------------------------------------------------------------------------------------------ data


def load_csv(path: str):
    """Read one split: X as a list of rows in FEATURES order (floats, then strings) and y as ints."""
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
                if not all(math.isfinite(v) for v in nums):
                    raise ValueError("non-finite number")
                label = int(row[LABEL])
                if label not in (0, 1):
                    raise ValueError(f"{LABEL} must be 0 or 1")
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
    return X, np.asarray(labels, dtype=np.int64)


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
        "name": "churn",
        "task": "binary-classification",
        "features": [{"name": n, "type": "numeric"} for n in NUMERIC]
        + [{"name": n, "type": "categorical"} for n in CATEGORICAL],
        "label": LABEL,
        "classes": [0, 1],
        "outputs": {"label": "label", "probabilities": "probabilities"},
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

    progress("start", 0, algorithm=params["algorithm"])
    import numpy as np

    train_rows, train_labels = load_csv(train_csv)
    test_rows, test_labels = load_csv(test_csv)
    X_train, y_train = to_arrays(np, train_rows, train_labels, params["featureScale"])
    X_test, y_test = to_arrays(np, test_rows, test_labels, params["featureScale"])
    log(f"loaded {len(y_train)} train and {len(y_test)} test rows from {args.data_dir}")
    if params["featureScale"]:
        log(f"feature scale applied to train and test: {params['featureScale']}")
    progress("load", 10, trainRows=len(y_train), testRows=len(y_test))

    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    for path, labels in ((train_csv, train_labels), (test_csv, test_labels)):
        if len(set(labels)) < 2:
            raise DataError(f"{path}: {LABEL} has a single class; cannot train or evaluate a classifier")

    fit_started = time.monotonic()
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), list(range(len(NUMERIC)))),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(range(len(NUMERIC), len(FEATURES)))),
        ]
    )
    Xt = pre.fit_transform(X_train)
    progress("fit", 20)
    if params["algorithm"] == "gradient_boosting":
        total = params["nEstimators"]
        clf = GradientBoostingClassifier(
            n_estimators=0,
            learning_rate=params["learningRate"],
            max_depth=params["maxDepth"],
            random_state=params["seed"],
            warm_start=True,
        )
        chunk = max(1, math.ceil(total / 5))
        done = 0
        while done < total:
            done = min(total, done + chunk)
            clf.set_params(n_estimators=done)
            clf.fit(Xt, y_train)  # warm start: adds the next trees, identical to one fit of `total` trees
            progress("fit", 20 + int(60 * done / total), estimators=done, of=total)
        clf.set_params(warm_start=False)
    else:
        clf = LogisticRegression(max_iter=params["maxIter"], random_state=params["seed"])
        clf.fit(Xt, y_train)
        progress("fit", 80, iterations=int(np.max(clf.n_iter_)))
    train_seconds = time.monotonic() - fit_started
    model = Pipeline([("pre", pre), ("clf", clf)])
    log(f"fitted {params['algorithm']} in {train_seconds:.2f}s")

    proba = model.predict_proba(X_test)[:, 1]
    pred = (proba >= 0.5).astype(np.int64)
    metrics = {
        "accuracy": round(float(accuracy_score(y_test, pred)), 6),
        "auc": round(float(roc_auc_score(y_test, proba)), 6),
        "logLoss": round(float(log_loss(y_test, proba, labels=[0, 1])), 6),
        "f1": round(float(f1_score(y_test, pred, zero_division=0)), 6),
        "positiveRate": round(float(pred.mean()), 6),
        "trainRows": int(len(y_train)),
        "testRows": int(len(y_test)),
        "trainSeconds": round(train_seconds, 3),
        "algorithm": params["algorithm"],
        "params": params,
    }
    log("offline metrics: " + ", ".join(f"{k}={metrics[k]}" for k in ("accuracy", "auc", "logLoss", "f1", "positiveRate")))
    progress("evaluate", 85)

    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial_types = [(n, FloatTensorType([None, 1])) for n in NUMERIC] + [
        (n, StringTensorType([None, 1])) for n in CATEGORICAL
    ]
    onx = convert_sklearn(
        model,
        name="churn",
        initial_types=initial_types,
        options={id(clf): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    outputs = [o.name for o in onx.graph.output]
    if outputs != ["label", "probabilities"]:
        raise RuntimeError(f"unexpected ONNX outputs {outputs}")
    onx.doc_string = f"churn classifier: {params['algorithm']} (scikit-learn pipeline exported by skl2onnx)"
    for key, value in (("params", json.dumps(params, sort_keys=True)), ("features", ",".join(FEATURES))):
        entry = onx.metadata_props.add()
        entry.key, entry.value = key, value

    # The served artifact must be the evaluated model: run test rows through the exported graph and compare.
    from onnx.reference import ReferenceEvaluator

    n = min(PARITY_ROWS, len(y_test))
    got = ReferenceEvaluator(onx).run(None, onnx_feeds(np, X_test[:n]))
    diff = float(np.max(np.abs(got[1][:, 1] - proba[:n])))
    clear = np.abs(proba[:n] - 0.5) > 1e-3  # float32 rounding may flip a label only right at the threshold
    label_mismatches = int(np.sum(got[0][clear] != pred[:n][clear]))
    if diff > 1e-3 or label_mismatches:
        raise RuntimeError(
            f"exported ONNX model disagrees with scikit-learn on {n} test rows "
            f"(max probability difference {diff:.2e}, {label_mismatches} label mismatches)"
        )
    log(f"ONNX parity on {n} test rows: max probability difference {diff:.2e}")
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
    ap = Parser(description="Train the churn example model and export it to ONNX.")
    ap.add_argument("--data-dir", required=True, help="folder with train.csv and test.csv")
    ap.add_argument("--out", required=True, help="output folder for model.onnx, model.json, metrics.json")
    ap.add_argument("--params", default="{}", help="JSON object of training params (see README.md)")
    args = ap.parse_args(argv)
    # On SIGTERM (the activity cancelled or timed out) unwind normally, so half-written temp files are removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
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
        import traceback

        traceback.print_exc(file=sys.stderr)
        log(f"failed: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
