"""AutoGluon's side of ``benchmarks/ensemble.py``: run by the AutoGluon virtual environment's Python
(never imported by the package or its tests), on a split ``ensemble.py`` exported.

    AGVENV/bin/python benchmarks/ag_runner.py SPLIT_DIR --time-limit 300 --cores 1 --out result.json

``SPLIT_DIR`` holds ``train.csv``, ``val.csv``, ``test.csv`` (the raw rows of automl's own training,
validation and test splits) and ``split.json`` (``label``, ``problem``: binary / multiclass /
regression / text). ``TabularPredictor`` (default preset) trains on the training rows with the
validation rows as its ``tuning_data`` (what automl selects on), within ``--time-limit`` seconds of
wall time; it is scored once on the test rows. The result JSON holds the test score, the wall time,
the best model's name and AutoGluon's leaderboard (validation and test score per model).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("split", help="folder with train.csv, val.csv, test.csv and split.json")
    ap.add_argument("--time-limit", type=float, default=300.0, help="TabularPredictor.fit time_limit, seconds")
    ap.add_argument("--cores", type=int, default=1, help="num_cpus given to AutoGluon")
    ap.add_argument("--presets", default="medium_quality", help="AutoGluon preset (its default: medium_quality)")
    ap.add_argument("--out", required=True, help="result JSON")
    ap.add_argument("--work", default=None, help="AutoGluon's model folder (default: SPLIT/ag-models)")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd
    from autogluon.tabular import TabularPredictor
    from autogluon.tabular import __version__ as ag_version

    split = Path(args.split)
    info = json.loads((split / "split.json").read_text())
    label, problem = info["label"], info["problem"]
    read = {"keep_default_na": True}
    train, val, test = (pd.read_csv(split / f"{part}.csv", **read) for part in ("train", "val", "test"))
    regression = problem == "regression"
    ag_problem = {"binary": "binary", "multiclass": "multiclass", "regression": "regression", "text": None}[problem]
    metric = "root_mean_squared_error" if regression else "accuracy"
    t0 = time.perf_counter()
    predictor = TabularPredictor(label=label, problem_type=ag_problem, eval_metric=metric,
                                 path=args.work or str(split / "ag-models"), verbosity=1)
    predictor.fit(train, tuning_data=val, time_limit=args.time_limit, presets=args.presets, num_cpus=args.cores,
                  num_gpus=0)
    fit_wall = time.perf_counter() - t0
    pred = predictor.predict(test.drop(columns=[label]))
    y = test[label].to_numpy()
    if regression:
        score = float(math.sqrt(float(np.mean((pred.to_numpy(dtype=float) - y.astype(float)) ** 2))))
    else:
        score = float(np.mean(pred.astype(str).to_numpy() == y.astype(str)))
    board = predictor.leaderboard(test, silent=True)
    rows = [{"model": str(r["model"]), "val": float(r["score_val"]), "test": float(r["score_test"]),
             "fit_time": float(r["fit_time"])} for _, r in board.iterrows()]
    if regression:  # AutoGluon reports higher-is-better scores: RMSE negated
        rows = [{**r, "val": -r["val"], "test": -r["test"]} for r in rows]
    out = {"autogluon": ag_version, "presets": args.presets, "time_limit": args.time_limit, "cores": args.cores,
           "metric": "rmse" if regression else "accuracy", "test": score, "best_model": predictor.model_best,
           "fit_wall": fit_wall, "rows": {"train": len(train), "val": len(val), "test": len(test)},
           "leaderboard": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
