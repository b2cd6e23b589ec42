"""The anomaly task against scikit-learn's IsolationForest on the same split, trained on the same rows.

For each table of ``../shared/data/anomaly`` (cardio, thyroid, satellite; ``label`` is ``normal`` or
``anomaly``) and for one-class digits (digit 0 normal, the other nine digits anomalies): one
``automl search --task anomaly --timeout BUDGET`` (the shipped space), then on the task's own test
split the test AUROC and average precision of the search's best model, of the best network family
alone (the autoencoders, each family's best trial by validation AUROC), and of
``IsolationForest(random_state=seed)`` fitted on exactly the training rows (the normal rows of the
training split). Prints a Markdown table.

    taskset -c 0 nice -n 5 python benchmarks/anomaly.py --timeout 180 --data thyroid
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

TABLES = ("cardio", "thyroid", "satellite")
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "anomaly"
NETWORK_FAMILIES = ("ae", "dae", "vae", "convae")


def scores_of(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    from automl.train import predict_logits

    return predict_logits(model, x, amp=False).reshape(-1).numpy()


def auroc_ap(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    return float(roc_auc_score(y, scores)), float(average_precision_score(y, scores))


def family_bests(run_dir: Path, bundle: Any) -> dict[str, tuple[float, float, float]]:
    """Family -> (val AUROC, test AUROC, test AP) of its best kept trial (the search keeps each family's best)."""
    from automl.artifacts import model_from_checkpoint

    out: dict[str, tuple[float, float, float]] = {}
    for path in sorted((run_dir / "trials").glob("trial-*.pt")):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # a trial's kept weights: arch + state
        fam = str(ckpt["arch"]["family"])
        model = model_from_checkpoint(ckpt)
        val, _ = auroc_ap(scores_of(model, bundle.x_val), bundle.y_val.numpy())
        test = auroc_ap(scores_of(model, bundle.x_test), bundle.y_test.numpy())
        if fam not in out or val > out[fam][0]:
            out[fam] = (val, *test)
    return out


def run_one(name: str, timeout: float, seed: int, out: Path, data_dir: Path = DATA_DIR) -> dict[str, Any]:
    from sklearn.ensemble import IsolationForest

    from automl.artifacts import load_checkpoint, model_from_checkpoint
    from automl.study import SearchSettings, resolve_trials, run_search
    from automl.tasks import DataConfig, get_task

    if name == "digits":
        data, extra = "digits", {"normal": ("0",)}
    else:
        data, extra = str(data_dir / f"{name}.csv.gz"), {"target": "label"}
    start = time.monotonic()
    res = run_search(SearchSettings(task="anomaly", data=data, timeout=timeout, trials=resolve_trials(None, timeout),
                                    out=str(out), study=f"{name}-{seed}", device="cpu", seed=seed, **extra))
    seconds = time.monotonic() - start
    ckpt = load_checkpoint(res.best_pt)
    task = get_task("anomaly")
    bundle = task.load_data(DataConfig(**ckpt["data"]))
    y_test = bundle.y_test.numpy()
    best = auroc_ap(scores_of(model_from_checkpoint(ckpt), bundle.x_test), y_test)
    forest = IsolationForest(random_state=seed).fit(bundle.x_train.reshape(len(bundle.x_train), -1).numpy())
    ref = auroc_ap(-forest.score_samples(bundle.x_test.reshape(len(bundle.x_test), -1).numpy()), y_test)
    fams = family_bests(Path(res.best_pt).parent, bundle)
    nets = {f: v for f, v in fams.items() if f in NETWORK_FAMILIES}
    net = max(nets.items(), key=lambda kv: kv[1][0]) if nets else ("-", (float("nan"),) * 3)
    return {"data": name, "best": ckpt["arch"]["family"], "auroc": best[0], "ap": best[1], "net": net[0],
            "net_auroc": net[1][1], "net_ap": net[1][2], "if_auroc": ref[0], "if_ap": ref[1],
            "rows": f"{len(bundle.y_train)}/{len(bundle.y_val)}/{len(y_test)} ({int(y_test.sum())} anomalies)",
            "trials": res.counts.get("complete", "-"), "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds of search per data set")
    ap.add_argument("--data", default="cardio,thyroid,satellite,digits", help="comma-separated: tables and/or digits")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=str(DATA_DIR), help="folder of the .csv.gz tables")
    ap.add_argument("--out", default="", help="folder for the runs (default: a temporary one)")
    args = ap.parse_args()
    names = [n.strip() for n in args.data.split(",") if n.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        for name in names:
            rows.append(run_one(name, args.timeout, args.seed, out, Path(args.data_dir)))
            r = rows[-1]
            print(f"{name}: best {r['best']} test AUROC {r['auroc']:.4f} AP {r['ap']:.4f}; best network "
                  f"{r['net']} {r['net_auroc']:.4f}; IsolationForest {r['if_auroc']:.4f} AP {r['if_ap']:.4f}",
                  file=sys.stderr, flush=True)
    print("| data | train/val/test rows | best (family) | test AUROC | test AP | best network | its AUROC | "
          "IsolationForest AUROC | its AP | trials | search s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['data']} | {r['rows']} | {r['best']} | {r['auroc']:.4f} | {r['ap']:.4f} | {r['net']} | "
              f"{r['net_auroc']:.4f} | {r['if_auroc']:.4f} | {r['if_ap']:.4f} | {r['trials']} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
