"""The ``iforest`` family against scikit-learn's IsolationForest on the anomaly tables of
``../shared/data/anomaly``: the same AUROC (the tensor module is the same forest), and the inference
time of the module in PyTorch and in ONNX Runtime as a ratio to ``score_samples``.

Protocol (the data README's): stratified 70/30 split with ``random_state=s``, the forest fitted on the
normal rows of the 70% part (scikit-learn defaults, ``random_state=s``: ``isolation_forest_reference``),
AUROC of the anomaly score on the 30% part; seeds 0, 1, 2. The tensor module comes from the same
fitted estimator (``iforest_from_sklearn``), so the AUROCs must be equal; the largest score difference
is printed too. Timing: the median of ``--repeats`` calls on the whole held-out part (and on one row), each engine on
one thread, side by side in one process (ratios, not seconds, are what to compare on a shared machine).

    python benchmarks/iforest.py [--data ../shared/data/anomaly] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from automl.models.iforest import IForest, iforest_from_sklearn, isolation_forest_reference  # noqa: E402
from automl.runtime.export import export_onnx  # noqa: E402
from automl.runtime.ort import make_session  # noqa: E402

SEEDS = (0, 1, 2)


def median_seconds(fn, repeats: int) -> float:  # noqa: ANN001
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def one_table(path: Path, seed: int, repeats: int, work: Path) -> dict[str, float]:
    """AUROC of scikit-learn's and the tensor module's scores, their largest difference, and the
    inference times (torch / sklearn, ONNX Runtime / sklearn) on one table and seed."""
    import pandas as pd
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    frame = pd.read_csv(path)
    y = (frame.pop("label") == "anomaly").to_numpy()
    x = frame.to_numpy(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    normal = x_tr[~y_tr]
    ref = isolation_forest_reference(normal, x_te, seed)
    est = IsolationForest(random_state=seed).fit(normal)  # the reference's forest, to convert
    arch, state = iforest_from_sklearn(est, x.shape[1])
    model = IForest(arch)
    model.load_state_dict(state, strict=True)
    model.eval()
    xt = torch.from_numpy(x_te)
    with torch.no_grad():
        ours = model(xt).numpy()
    onnx_path = export_onnx(model, xt[:1], work / f"{path.stem}-{seed}.onnx", {"automl.task": "anomaly"})
    sess = make_session(onnx_path, ["CPUExecutionProvider"], threads=1)
    onnx_scores = sess.run(["logits"], {"input": x_te})[0]

    def run_torch() -> None:
        with torch.no_grad():
            model(xt)

    def run_torch_one() -> None:
        with torch.no_grad():
            model(xt[:1])

    t_sk = median_seconds(lambda: est.score_samples(x_te), repeats)
    t_torch = median_seconds(run_torch, repeats)
    t_onnx = median_seconds(lambda: sess.run(["logits"], {"input": x_te}), repeats)
    t_sk1 = median_seconds(lambda: est.score_samples(x_te[:1]), repeats)
    t_torch1 = median_seconds(run_torch_one, repeats)
    t_onnx1 = median_seconds(lambda: sess.run(["logits"], {"input": x_te[:1]}), repeats)
    return {"auroc_sklearn": roc_auc_score(y_te, ref), "auroc_torch": roc_auc_score(y_te, ours),
            "auroc_onnx": roc_auc_score(y_te, onnx_scores),
            "max_diff": float(max(np.abs(ours - ref).max(), np.abs(onnx_scores - ref).max())),
            "torch_ratio": t_torch / t_sk, "onnx_ratio": t_onnx / t_sk, "rows": len(x_te),
            "torch_ratio_1": t_torch1 / t_sk1, "onnx_ratio_1": t_onnx1 / t_sk1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/anomaly"))
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| table | test rows | AUROC sklearn | AUROC torch | AUROC ONNX | max score diff | "
          "torch / sklearn time | ONNX / sklearn time | the same for 1 row |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(Path(args.data).glob("*.csv.gz")):
            rows = [one_table(path, s, args.repeats, Path(tmp)) for s in SEEDS]
            mean = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
            print(f"| {path.name.split('.')[0]} | {int(mean['rows'])} | {mean['auroc_sklearn']:.4f} | "
                  f"{mean['auroc_torch']:.4f} | {mean['auroc_onnx']:.4f} | "
                  f"{max(r['max_diff'] for r in rows):.1e} | {mean['torch_ratio']:.2f} | {mean['onnx_ratio']:.2f} | "
                  f"{mean['torch_ratio_1']:.3f} / {mean['onnx_ratio_1']:.3f} |")


if __name__ == "__main__":
    main()
