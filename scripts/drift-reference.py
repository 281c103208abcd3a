"""Reference values for the drift statistics (src/drift/stats.ts), computed with scipy.

Writes test/fixtures/drift/scipy-reference.json, which test/unit/drift-stats.test.ts checks the TypeScript kernels
against. Run from the repository root:

    .tools/venv/bin/python scripts/drift-reference.py

Large samples are not stored: they are drawn here and in test/helpers/drift-samples.ts from the same mulberry32
stream and mapped to the same dyadic values, so both languages see bit-identical arrays; each case records the
generator parameters. Small samples are stored as values.
"""

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import scipy
from scipy import stats
from scipy.spatial.distance import jensenshannon

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test" / "fixtures" / "drift" / "scipy-reference.json"
COMMAND = ".tools/venv/bin/python scripts/drift-reference.py"

MASK = 0xFFFFFFFF
FRACTION = float(2**21)
LITERAL_MAX_N = 100


def mulberry32(seed):
    a = seed & MASK

    def next_u32():
        nonlocal a
        a = (a + 0x6D2B79F5) & MASK
        t = ((a ^ (a >> 15)) * (1 | a)) & MASK
        t = ((t + (((t ^ (t >> 7)) * (61 | t)) & MASK)) & MASK) ^ t
        return (t ^ (t >> 14)) & MASK

    return next_u32


def generate(spec):
    """Same values, in the same order, as generateSample() in test/helpers/drift-samples.ts."""
    nxt = mulberry32(spec["seed"])

    def u():
        return (nxt() >> 11) / FRACTION

    kind, n, shift = spec["kind"], spec["n"], spec["shift"]
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        if kind == "uniform":
            out[i] = shift + spec["scale"] * u()
        elif kind == "ties":
            out[i] = shift + math.floor(spec["levels"] * u())
        elif kind in ("bell", "bellTies"):
            s = 0.0
            for _ in range(spec["terms"]):
                s += u()
            x = spec["scale"] * (s - spec["terms"] / 2)
            out[i] = shift + (x if kind == "bell" else math.floor(x))
        else:
            raise ValueError(kind)
    return out


def sample(kind, seed, n, shift=0.0, **params):
    return {"kind": kind, "seed": seed, "n": n, "shift": shift, **params}


def num(x):
    """JSON number, or null for NaN (JSON has no NaN)."""
    x = float(x)
    return None if math.isnan(x) else x


# --- Two-sample KS and Wasserstein -----------------------------------------------------------------------------------

ALTERNATIVES = ("two-sided", "less", "greater")


def ks_entries(ref, cur, methods):
    out = []
    for method in methods:
        for alternative in ALTERNATIVES:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = stats.ks_2samp(ref, cur, alternative=alternative, method=method)
            switched = any("Switching to" in str(w.message) or "Exact" in str(w.message) for w in caught)
            n1, n2 = len(ref), len(cur)
            if method == "asymp" or switched or (method == "auto" and max(n1, n2) > 10000):
                used = "asymp"
            else:
                used = "exact"
            out.append(
                {
                    "alternative": alternative,
                    "method": method,
                    "statistic": num(res.statistic),
                    "pvalue": num(res.pvalue),
                    "pMethod": used,
                    "location": num(res.statistic_location),
                }
            )
    return out


def pair(name, ref, cur, methods=("auto", "exact", "asymp")):
    def side(s):
        if isinstance(s, dict):
            return generate(s), s
        values = np.asarray(s, dtype=np.float64)
        return values, None

    ref_values, ref_spec = side(ref)
    cur_values, cur_spec = side(cur)
    entry = {"name": name, "n1": int(ref_values.size), "n2": int(cur_values.size)}
    for key, values, spec in (("reference", ref_values, ref_spec), ("current", cur_values, cur_spec)):
        if spec is not None and values.size > LITERAL_MAX_N:
            entry[key] = {"generator": spec}
        else:
            entry[key] = {"values": [float(v) for v in values]}
    entry["wasserstein"] = float(stats.wasserstein_distance(ref_values, cur_values))
    entry["ks"] = ks_entries(ref_values, cur_values, methods)
    return entry


def uni(seed, n, shift=0.0, scale=1.0):
    return sample("uniform", seed, n, shift, scale=scale)


def bell(seed, n, shift=0.0, scale=1.0):
    return sample("bell", seed, n, shift, scale=scale, terms=4)


def ties(seed, n, levels, shift=0.0):
    return sample("ties", seed, n, shift, levels=levels)


def bell_ties(seed, n, scale, shift=0.0):
    return sample("bellTies", seed, n, shift, scale=scale, terms=4)


LARGE = ("auto", "asymp")


def ks_pairs():
    same = bell(68, 200)
    same_ties = ties(69, 150, 4)
    cases = [
        # Tiny samples.
        ("1 vs 1, distinct", [0.5], [1.5]),
        ("1 vs 1, equal", [2.0], [2.0]),
        ("2 vs 2", [0.25, 1.0], [0.5, 3.0]),
        ("2 vs 2, separated", [0.0, 1.0], [2.0, 3.0]),
        ("3 vs 3", [1.0, 2.5, 4.0], [0.5, 3.0, 3.5]),
        ("5 vs 5", uni(11, 5), uni(12, 5)),
        ("5 vs 5, shifted", uni(13, 5), uni(14, 5, 0.75)),
        ("2 vs 3", [0.0, 2.0], [1.0, 1.5, 3.0]),
        ("3 vs 5", bell(15, 3), bell(16, 5)),
        ("5 vs 2", uni(17, 5, scale=2.0), [0.5, 1.75]),
        ("1 vs 50", [0.5], uni(18, 50)),
        ("50 vs 1", uni(19, 50), [0.5]),
        ("1 vs 50, below all", [-1.0], uni(20, 50)),
        # Ties, within and across the two samples.
        ("ties 40 vs 60", ties(21, 40, 5), ties(22, 60, 5)),
        ("ties 30 vs 30, heavy", ties(23, 30, 2), ties(24, 30, 3)),
        ("ties 300 vs 200, 3 levels", ties(25, 300, 3), ties(26, 200, 3)),
        ("ties 500 vs 450, shifted", ties(27, 500, 10), ties(28, 450, 10, 1.0)),
        ("bell ties 2000 vs 1500", bell_ties(29, 2000, 8.0), bell_ties(30, 1500, 8.0, 1.0)),
        ("one value vs ties", [3.0] * 20, ties(31, 25, 4, 1.0)),
        # The statistic attained at several values: which one is reported.
        ("location: shared value and an earlier current-only one", [2.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0, 4.0, 4.0]),
        ("location: shared value and an earlier current-only one, 4 vs 2", [2.0, 2.0, 3.0, 4.0], [0.0, 2.0]),
        ("location: equal differences apart by rounding", [0.0, 1.0, 3.0], [1.0, 3.0, 4.0]),
        ("bell ties 30000 vs 8000", bell_ties(32, 30000, 16.0), bell_ties(33, 8000, 16.0), LARGE),
        # Unequal sizes, exact regime (and the one-sided count near its overflow).
        ("7 vs 300", bell(34, 7), bell(35, 300)),
        ("300 vs 7", bell(36, 300), bell(37, 7, 0.5)),
        ("1000 vs 37", uni(38, 1000), uni(39, 37, 0.25)),
        ("37 vs 1000", uni(40, 37), uni(41, 1000)),
        ("100 vs 150", bell(42, 100), bell(43, 150, 0.125)),
        ("500 vs 520, C(1020,500) finite", bell(44, 500), bell(45, 520, 0.0625)),
        ("520 vs 530, C(1050,520) overflows", bell(46, 520), bell(47, 530, 0.0625)),
        ("400 vs 300, shifted", bell(48, 400), bell(49, 300, 1.0)),
        ("3000 vs 2000, shifted", bell(50, 3000), bell(51, 2000, 0.5)),
        ("9999 vs 10000", bell(52, 9999), bell(53, 10000)),
        ("9999 vs 10000, shifted", bell(54, 9999), bell(55, 10000, 0.125)),
        ("10000 vs 9999, strongly shifted", bell(56, 10000), bell(57, 9999, 0.5)),
        # Equal sizes.
        ("100 vs 100", bell(58, 100), bell(59, 100, 0.125)),
        ("500 vs 500, shifted", bell(60, 500), bell(61, 500, 1.0)),
        ("2000 vs 2000, scaled", bell(62, 2000), bell(63, 2000, scale=1.5)),
        ("10000 vs 10000", bell(64, 10000), bell(65, 10000, 0.03125)),
        ("50 vs 50, disjoint", uni(66, 50), uni(67, 50, 2.0)),
        # Identical samples.
        ("identical 200", same, same),
        ("identical 150 with ties", same_ties, same_ties),
        # Clearly shifted: tiny p-values, both directions.
        ("shifted 200 vs 200", bell(70, 200), bell(71, 200, 1.5)),
        ("shifted 250 vs 180", bell(72, 250), bell(73, 180, 1.25)),
        ("shifted 60 vs 45", uni(74, 60), uni(75, 45, 0.75)),
        ("shifted down 250 vs 260", bell(88, 250), bell(89, 260, -1.0)),
        ("shifted down 700 vs 700", bell(90, 700), bell(91, 700, -0.75)),
        # Asymptotic regime.
        ("20000 vs 5000", bell(76, 20000), bell(77, 5000)),
        ("20000 vs 5000, shifted", bell(78, 20000), bell(79, 5000, 0.0625)),
        ("10001 vs 10000", bell(80, 10001), bell(81, 10000, 0.015625), LARGE),
        ("200000 vs 30000", bell(82, 200000), bell(83, 30000), LARGE),
        ("200000 vs 30000, shifted", bell(84, 200000), bell(85, 30000, 0.25), LARGE),
        ("200000 vs 30000, slightly shifted", bell(86, 200000), bell(87, 30000, 0.015625), LARGE),
    ]
    return [pair(*case) for case in cases]


# --- Distributions and other tests -----------------------------------------------------------------------------------


def kstwo_cases():
    ns = [1, 2, 3, 5, 10, 50, 100, 140, 141, 500, 1000, 10000, 100000, 100001, 1000000, 1000001, 10000000]
    fixed = [0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.45, 0.5, 0.6, 0.75, 0.9, 0.99, 1.0]
    # n*d^2 around the switches between methods: 0.754693, 2.2, 4, 18, 370.
    nd2 = [0.05, 0.2, 0.5, 0.754, 0.76, 1.0, 1.5, 2.0, 2.19, 2.21, 3.0, 3.99, 4.01, 8.0, 18.0, 50.0, 150.0, 360.0]
    nd2.append(371.0)
    cases = []
    for n in ns:
        ds = set(fixed)
        ds.update(c / n for c in (0.4, 0.5, 0.6, 0.75, 1.0, 1.2, 2.0))
        ds.update(math.sqrt(c / n) for c in nd2)
        ds.update(1 - c / n for c in (2.0, 1.0, 0.5, 0.1))
        ds.update(f * (1.4 / n) ** (2 / 3) for f in (0.98, 1.02))
        for d in sorted(ds):
            if 0 < d <= 1:
                cases.append({"n": n, "d": d, "sf": num(stats.kstwo.sf(d, n))})
    return cases


def chi2_sf_cases():
    cases = []
    for dof in (1, 2, 3, 4, 5, 7, 10, 30, 100, 1000, 100000):
        xs = {1e-8, 0.01, 0.5, 1.0, 3.84, 1000.0, dof * 0.5, float(dof), dof + 1.0, dof * 2.0, dof * 5.0}
        xs.update((dof * 10.0 + 100, dof + 5 * math.sqrt(2 * dof)))
        for x in sorted(xs):
            cases.append({"x": x, "dof": dof, "sf": float(stats.chi2.sf(x, dof))})
    return cases


def chi2_contingency_cases():
    tables = [
        ("2x2 with Yates", [12, 5], [7, 14]),
        ("2x2 nearly equal (correction capped by |O-E|)", [10, 10], [10, 11]),
        ("2x2 large counts", [5000, 3000], [5100, 2900]),
        ("2x4", [30, 20, 50, 10], [25, 30, 40, 20]),
        ("category unseen in reference", [30, 0, 20], [25, 10, 20]),
        ("category unseen in current", [30, 12, 20], [25, 0, 20]),
        ("tiny counts 2x2", [1, 2], [0, 1]),
        ("tiny counts 2x3", [1, 0, 0], [0, 1, 1]),
        ("2x2 disjoint", [0, 3], [2, 0]),
        ("categories empty on both sides are dropped", [5, 0, 3, 0], [2, 0, 7, 0]),
        (
            "2x10 large",
            [100000, 200000, 300000, 5, 0, 17, 9000, 1, 1, 40],
            [100500, 199000, 301000, 9, 2, 11, 9100, 0, 3, 35],
        ),
        ("2x3 identical proportions", [10, 20, 30], [20, 40, 60]),
    ]
    cases = []
    for name, ref, cur in tables:
        keep = [i for i in range(len(ref)) if ref[i] + cur[i] > 0]
        table = np.array([[ref[i] for i in keep], [cur[i] for i in keep]], dtype=np.float64)
        res = stats.chi2_contingency(table)
        cases.append(
            {
                "name": name,
                "reference": ref,
                "current": cur,
                "statistic": float(res.statistic),
                "pvalue": float(res.pvalue),
                "dof": int(res.dof),
            }
        )
    return cases


def jensenshannon_cases():
    rng_cases = []
    nxt = mulberry32(4242)
    for length in (3, 5, 10, 20):
        for _ in range(3):
            p = [nxt() % 50 for _ in range(length)]
            q = [nxt() % 50 for _ in range(length)]
            p[nxt() % length] = 0
            rng_cases.append((f"counts length {length}", p, q))
    fixed = [
        ("zeros in one side", [10, 0, 0, 5], [3, 4, 5, 6]),
        ("disjoint supports", [1, 0, 0], [0, 2, 3]),
        ("identical proportions", [1, 2, 3], [2, 4, 6]),
        ("weights", [0.1, 0.25, 0.65], [0.3, 0.3, 0.4]),
        ("near-equal", [1000, 1001, 999, 1000], [1000, 1000, 1000, 1000]),
    ]
    cases = []
    for name, p, q in fixed + rng_cases:
        for base in (None, 2.0):
            value = jensenshannon(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64), base=base)
            cases.append({"name": name, "p": p, "q": q, "base": base, "distance": float(value)})
    return cases


def histogram_formula_cases():
    """PSI and L-infinity have no scipy function; these are the defining formulas in numpy, as a cross-check."""
    cases = []
    for name, e, a in [
        ("shifted mass", [10, 20, 30, 40], [40, 30, 20, 10]),
        ("empty bins floored", [0, 50, 50], [25, 0, 75]),
        ("small change", [1000, 2000, 3000], [1010, 1980, 3010]),
    ]:
        ev = np.asarray(e, dtype=np.float64) / sum(e)
        av = np.asarray(a, dtype=np.float64) / sum(a)
        ef = np.maximum(ev, 1e-4)
        af = np.maximum(av, 1e-4)
        cases.append(
            {
                "name": name,
                "expected": e,
                "actual": a,
                "psi": float(np.sum((af - ef) * np.log(af / ef))),
                "lInfinity": float(np.max(np.abs(ev - av))),
            }
        )
    return cases


def generator_check():
    """A few raw draws and samples, so a divergence of the two generators shows up as such."""
    nxt = mulberry32(1)
    specs = [
        sample("uniform", 5, 6, 0.25, scale=2.0),
        sample("ties", 6, 6, 1.0, levels=7),
        sample("bell", 7, 6, 0.5, scale=2.0, terms=4),
        sample("bellTies", 8, 6, 0.0, scale=16.0, terms=4),
        sample("uniform", -5, 3, 0.0, scale=1.0),
    ]
    return {
        "mulberry32Seed1": [nxt() for _ in range(8)],
        "samples": [{"generator": spec, "values": [float(v) for v in generate(spec)]} for spec in specs],
    }


def main():
    doc = {
        "generatedBy": COMMAND,
        "scipyVersion": scipy.__version__,
        "numpyVersion": np.__version__,
        "python": sys.version.split()[0],
        "generator": (
            "mulberry32(seed) 32-bit stream; u = (r >>> 11) / 2^21; uniform: shift + scale*u; "
            "ties: shift + floor(levels*u); bell: shift + scale*(sum of `terms` u - terms/2); "
            "bellTies: shift + floor(scale*(sum of `terms` u - terms/2)). See test/helpers/drift-samples.ts."
        ),
        "generatorCheck": generator_check(),
        "ksPairs": ks_pairs(),
        "kstwo": kstwo_cases(),
        "chi2Sf": chi2_sf_cases(),
        "chi2Contingency": chi2_contingency_cases(),
        "jensenShannon": jensenshannon_cases(),
        "histogramFormulas": histogram_formula_cases(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    # The repository checks formatting of every JSON file; let its formatter lay this one out.
    formatted = subprocess.run(["npx", "prettier", "--write", str(OUT)], cwd=ROOT, capture_output=True, text=True)
    if formatted.returncode != 0:
        print(f"warning: prettier did not format {OUT.name}: {formatted.stderr.strip()}", file=sys.stderr)
    counts = {k: len(v) for k, v in doc.items() if isinstance(v, list)}
    counts["ks"] = sum(len(p["ks"]) for p in doc["ksPairs"])
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes): {counts}")


if __name__ == "__main__":
    main()
