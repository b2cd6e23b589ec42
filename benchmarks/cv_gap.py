"""How optimistic is the best trial's validation score? The gap (best validation accuracy - test
accuracy) of a plain train/validation split against ``--cv 5``, side by side on the same 1,000-row
table, the same trials and epochs, over several seeds (each seed draws another split and sampler).

The table: 1,000 rows drawn (seeded) from ``../shared/data/tabular/lightgbm-binary-train.csv.gz``
(HIGGS-like, 28 numeric features). A small validation split (150 rows) judged over many trials picks
the luckiest trial; the mean over 5 folds of 850 rows is a steadier judge.

    python benchmarks/cv_gap.py --trials 12 --epochs 10 --seeds 0,1,2 --space benchmarks/cv_gap_space.yaml

``cv_gap_space.yaml`` is a plain-MLP space: the question is the judge, not the family, and MLP trials
keep 3 seeds x (1 + 5 folds) x 12 trials within about ten minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from automl.study import SearchSettings, run_search  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "shared" / "data" / "tabular" / "lightgbm-binary-train.csv.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SRC))
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--trials", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--space", default=None, help="search space (default: the tabular space)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cv-gap-") as tmp:
        table = Path(tmp) / "sample.csv"
        pd.read_csv(args.data).sample(n=args.rows, random_state=0).to_csv(table, index=False)
        for seed in (int(s) for s in args.seeds.split(",")):
            for cv in (0, 5):
                res = run_search(SearchSettings(task="tabular", data=str(table), target="target", trials=args.trials,
                                                epochs=args.epochs, cv=cv, seed=seed, space=args.space,
                                                out=str(Path(tmp) / f"s{seed}-cv{cv}"), device="cpu"))
                rows.append((seed, cv, res.best_value, res.test_metric))
                print(f"seed {seed} cv {cv}: val {res.best_value:.4f} test {res.test_metric:.4f}", file=sys.stderr)
    print(f"hardware: {os.cpu_count()} cores, CPU; {args.rows} rows, {args.trials} trials x {args.epochs} epochs")
    print("| seed | plain: val | plain: test | plain: gap | cv 5: val | cv 5: test | cv 5: gap |")
    print("|---|---|---|---|---|---|---|")
    gaps: dict[int, list[float]] = {0: [], 5: []}
    for seed in sorted({r[0] for r in rows}):
        p = next(r for r in rows if r[0] == seed and r[1] == 0)
        c = next(r for r in rows if r[0] == seed and r[1] == 5)
        gaps[0].append(p[2] - p[3])
        gaps[5].append(c[2] - c[3])
        print(f"| {seed} | {p[2]:.4f} | {p[3]:.4f} | {p[2] - p[3]:+.4f} "
              f"| {c[2]:.4f} | {c[3]:.4f} | {c[2] - c[3]:+.4f} |")
    mean = {k: sum(v) / len(v) for k, v in gaps.items()}
    print(f"mean gap: plain {mean[0]:+.4f}, cv 5 {mean[5]:+.4f} (|cv| / |plain| = "
          f"{abs(mean[5]) / max(abs(mean[0]), 1e-9):.2f})")


if __name__ == "__main__":
    main()
