"""The tabular search against scikit-learn's default HistGradientBoosting, side by side on the same
split, over the four tables in ``../shared/data/tabular`` (see its README for the sets).

Each set is one ``automl search --task tabular --timeout BUDGET`` in a subprocess (so imports count,
as for a user); the reference is the one the search itself fits on its own split (the leaderboard).
The LightGBM sets use their official test files (``--test-data``); diamonds and txhousing use the
tool's seeded split. Printed per set: the search's test score (its best model), the best *network*
family's test score, the reference's, and the Done-when checks of issue 13: the search within 0.5
accuracy points of the reference (RMSE at most 2% worse) and the networks within 1.5 points.

    python benchmarks/tabular.py --budget 300            # about 4 x 5.5 minutes on 2 cores
    python benchmarks/tabular.py --sets diamonds --budget 120
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "tabular"
SETS = {
    "binary": ["--data", "lightgbm-binary-train.csv.gz", "--test-data", "lightgbm-binary-test.csv.gz"],
    "multiclass": ["--data", "lightgbm-multiclass-train.csv.gz", "--test-data", "lightgbm-multiclass-test.csv.gz"],
    "diamonds": ["--data", "diamonds.csv.gz"],
    "txhousing": ["--data", "txhousing.csv.gz"],
}
NETWORKS_EXCLUDE = {"hgb", "rf", "extratrees", "catboost"}  # families that are not networks (tree ensembles)


def run_set(name: str, data: Path, budget: float, out: Path, seed: int, extra: list[str]) -> dict:
    args = [a if not a.endswith(".gz") else str(data / a) for a in SETS[name]]
    cmd = [sys.executable, str(ROOT / "cli.py"), "search", "--task", "tabular", *args, "--target", "target",
           "--timeout", str(budget), "--trials", "100000", "--seed", str(seed), "--out-dir", str(out / name),
           "--json", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"name": name, "error": proc.stderr.strip().splitlines()[-1:] or ["?"], "wall": wall}
    res = json.loads(proc.stdout)
    rows = res["leaderboard"]["rows"]
    ref = next((r for r in rows if r["kind"] == "reference"), None)
    nets = [r for r in rows if r["kind"] == "family" and r["name"] not in NETWORKS_EXCLUDE and r["test"] is not None]
    return {"name": name, "metric": res["metric"], "test": res[f"test_{res['metric']}"], "best_family":
            next((r["name"] for r in rows if r["kind"] == "family"), "?"),
            "net": nets[0]["test"] if nets else None, "net_family": nets[0]["name"] if nets else None,
            "ref": ref["test"] if ref else None, "trials": res["n_trials"], "complete": res["n_complete"],
            "wall": wall, "families": {r["name"]: (r["complete"], r["trials"]) for r in rows if r["kind"] == "family"}}


def verdict(r: dict, slack_acc: float, slack_rmse: float) -> str:
    if r.get("ref") is None or r.get("test") is None:
        return "?"
    if r["metric"] == "rmse":
        return "ok" if r["test"] <= r["ref"] * (1 + slack_rmse) else "NO"
    return "ok" if r["test"] >= r["ref"] - slack_acc else "NO"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA), help="folder of the tabular sets")
    ap.add_argument("--budget", type=float, default=300.0, help="--timeout of each search, seconds")
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", default="", help="more search options, e.g. '--space my.yaml'")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-tabular-") as tmp:
        for name in args.sets.split(","):
            r = run_set(name, Path(args.data), args.budget, Path(tmp), args.seed, args.extra.split())
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    print(f"hardware: {os.cpu_count()} cores, CPU; --timeout {args.budget:g} s per set, seed {args.seed}")
    print("| set | metric | search (best family) | best network | HGB default | search vs HGB | networks vs HGB "
          "| trials (complete) | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['name']} | error: {r['error'][0]} | | | | | | | {r['wall']:.0f} |")
            continue
        ref = r["ref"]

        def diff(v: float | None, metric: str = r["metric"], ref: float | None = ref) -> str:
            if v is None or ref is None:
                return "-"
            return f"{(v / ref - 1) * 100:+.1f}%" if metric == "rmse" else f"{(v - ref) * 100:+.1f} pts"

        net = "-" if r["net"] is None else f"{r['net']:.4f} ({r['net_family']})"
        net_ok = "?" if r["net"] is None else verdict({**r, "test": r["net"]}, 0.015, 0.02)
        print(f"| {r['name']} | {r['metric']} | {r['test']:.4f} ({r['best_family']}) | {net} | "
              f"{ref if ref is None else f'{ref:.4f}'} | {diff(r['test'])} {verdict(r, 0.005, 0.02)} | "
              f"{diff(r['net'])} {net_ok} | {r['trials']} ({r['complete']}) | {r['wall']:.0f} |")


if __name__ == "__main__":
    main()
