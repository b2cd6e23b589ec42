"""``--metric`` on imbalanced tables: the anomaly tables as supervised binary classification.

For each table of ``../shared/data/anomaly`` (``label``: normal / anomaly; the rarer class, anomaly,
is the positive one), three searches of the same ``--timeout`` run one after the other on the same
split (seed 0): ``--metric average_precision``, ``--metric roc_auc`` and the default (accuracy). Each
best.pt is then scored on the test split for average precision and ROC AUC alike (the accuracy run
"scored for AP afterwards"), beside scikit-learn's default HistGradientBoostingClassifier (the
leaderboard's reference) fitted on the same training rows.

    taskset -c 0 nice python benchmarks/metrics.py --sets thyroid --timeout 120
    python benchmarks/metrics.py --timeout 120            # thyroid, cardio, satellite
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("AUTOML_ANOMALY_DIR") or ROOT.parent / "shared" / "data" / "anomaly")
SETS = ("thyroid", "cardio", "satellite")
RUNS = ("average_precision", "roc_auc", "accuracy")


def search(data: Path, metric: str, timeout: float, out: Path) -> tuple[str, float, int]:
    """One ``automl search`` process; (its best.pt, its wall seconds, its completed trials)."""
    argv = [sys.executable, str(ROOT / "cli.py"), "search", "--task", "tabular", "--data", str(data),
            "--target", "label", "--metric", metric, "--timeout", str(timeout), "--study", metric,
            "--out-dir", str(out), "--device", "cpu", "--json"]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"search --metric {metric} on {data.name} failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout)
    return result["best_pt"], seconds, int(result["n_complete"])


def test_scores(best_pt: str) -> dict[str, float]:
    """Average precision and ROC AUC of a best.pt on its test split (anomaly: the positive class)."""
    import torch

    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.data.bundle import DataConfig
    from automl.tasks import get_task
    from automl.train import predict_logits

    ckpt = load_checkpoint(best_pt)
    task = get_task("tabular")
    bundle = task.load_data(DataConfig(**ckpt["data"]))
    task.bind(bundle)
    p = torch.softmax(predict_logits(model_from_checkpoint(ckpt), bundle.x_test), 1).numpy()
    y = bundle.y_test.numpy()
    out = {}
    for name in ("average_precision", "roc_auc"):
        task.choose_metric(name)
        out[name] = task.score(p, y)
    out["model"] = str(ckpt["params"].get("model", "?"))
    return out


def reference_scores(data: Path) -> dict[str, float]:
    """scikit-learn's default HistGradientBoostingClassifier on the same split, as the leaderboard fits it."""
    from automl.data.bundle import DataConfig
    from automl.tasks import get_task

    task = get_task("tabular")
    bundle = task.load_data(DataConfig(source=str(data), target="label", seed=0))
    task.bind(bundle)
    _, predict = task.reference_model(bundle)
    p, y = predict(bundle.x_test), bundle.y_test.numpy()
    out = {}
    for name in ("average_precision", "roc_auc"):
        task.choose_metric(name)
        out[name] = task.score(p, y)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per search")
    args = ap.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
          f"affinity {sorted(os.sched_getaffinity(0))}; --timeout {args.timeout:g} per search; shared machine")
    print("| table | run | best model (trials) | test AP | test ROC AUC | wall s |")
    print("|---|---|---|---|---|---|")
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        data = DATA / f"{name}.csv.gz"
        ref = reference_scores(data)
        print(f"| {name} | reference HGB (sklearn defaults) | hgb | {ref['average_precision']:.4f} | "
              f"{ref['roc_auc']:.4f} | |", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            for metric in RUNS:
                best_pt, seconds, trials = search(data, metric, args.timeout, Path(tmp))
                s = test_scores(best_pt)
                print(f"| {name} | --metric {metric} | {s['model']} ({trials}) | {s['average_precision']:.4f} | "
                      f"{s['roc_auc']:.4f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
