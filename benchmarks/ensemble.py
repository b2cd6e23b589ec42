"""The search (best single family, ensemble) against the classic reference and AutoGluon's default
preset, all on the same split and the same wall budget, over the four tables in
``../shared/data/tabular`` and Movie Review (``../shared/data/rt-polarity``).

Per set:

- **automl**: ``automl search --timeout BUDGET`` in a subprocess (imports count, as for a user); its
  test score, its best family, the best *single* family's test score and the ensemble's row of the
  leaderboard when the search has one (absent: "-"), and the classic reference the search fits on its
  own split (default HistGradientBoosting for tables, TF-IDF + logistic regression for text).
- **AutoGluon**: ``TabularPredictor`` (default preset, ``time_limit`` = BUDGET) in its own virtual
  environment (``--ag-venv``; created and ``pip install autogluon.tabular[all]`` on first use: without
  the extras the default preset silently skips LightGBM, CatBoost, XGBoost and the networks), run by
  ``benchmarks/ag_runner.py``. It trains on the raw rows of automl's training split with the
  validation split as ``tuning_data`` and is scored on automl's test rows: the split is exported by
  loading the data through automl's own task (same seed, same fractions, same ``--test-data``).
  AutoGluon is a benchmark-only tool, never a dependency of the package or its tests.

Both sides are pinned with ``taskset`` to the same number of cores (``--automl-cpus``,
``--ag-cpus``: CPU lists of equal length) and run at ``nice -n 5``. Results are cached as JSON in
``benchmarks/results/`` (``--rerun`` ignores the cache); the script prints a markdown table and
writes it with all figures to ``--out``.

    python benchmarks/ensemble.py                                   # 5 sets x (300 s + 300 s)
    python benchmarks/ensemble.py --sets diamonds --sides ag --ag-cpus 1
    python benchmarks/ensemble.py --sets binary --sides automl --automl-cpus 0 --extra '--space my.yaml'
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
TABLES = ROOT.parent / "shared" / "data" / "tabular"
MOVIES = ROOT.parent / "shared" / "data" / "rt-polarity"
RESULTS = ROOT / "benchmarks" / "results"
#: set -> (task, --data, --test-data or None); the text set's TSV is built from MOVIES
SETS = {
    "binary": ("tabular", "lightgbm-binary-train.csv.gz", "lightgbm-binary-test.csv.gz"),
    "multiclass": ("tabular", "lightgbm-multiclass-train.csv.gz", "lightgbm-multiclass-test.csv.gz"),
    "diamonds": ("tabular", "diamonds.csv.gz", None),
    "txhousing": ("tabular", "txhousing.csv.gz", None),
    "movie-review": ("text", "mr.tsv", None),
}


def data_args(name: str, work: Path) -> tuple[str, str, str | None]:
    """(task, --data path, --test-data path or None) of a set; builds Movie Review's TSV in ``work``."""
    task, data, test = SETS[name]
    if task == "text":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from text import make_tsv  # benchmarks/text.py

        return task, str(make_tsv(MOVIES, work / data)), None
    return task, str(TABLES / data), str(TABLES / test) if test else None


def export_split(name: str, work: Path, seed: int) -> Path:
    """Write automl's own train / validation / test rows of a set (raw columns, the label last) as CSV
    files plus ``split.json`` into ``work/<name>-split``, for ``ag_runner.py``."""
    import automl.data.tabular as tab
    from automl.data.bundle import DataConfig
    from automl.tasks import get_task

    task_name, data, test = data_args(name, work)
    dest = work / f"{name}-split"
    dest.mkdir(parents=True, exist_ok=True)
    if task_name == "text":
        import numpy as np
        import pandas as pd

        from automl.data.splits import train_val_test
        from automl.data.text import read_text_source

        cfg = DataConfig(source=data, seed=seed)
        texts, labels = read_text_source(data)
        index = {c: i for i, c in enumerate(sorted(set(labels)))}  # as TextTask.load_data
        y = np.array([index[v] for v in labels], dtype=np.int64)
        parts = train_val_test(y, cfg.val_fraction, cfg.test_fraction, cfg.seed, data, "texts")
        frames = [pd.DataFrame({"text": [texts[i] for i in p], "label": [labels[i] for i in p]}) for p in parts]
        label, problem = "label", "binary" if len(index) == 2 else "multiclass"
    else:
        # the raw rows the task encodes: train, validation, test (DataBundle.from_indices' order)
        frames = []
        encode = tab.encode_frame
        tab.encode_frame = lambda frame, spec: (frames.append(frame.copy()), encode(frame, spec))[1]
        try:
            bundle = get_task("tabular").load_data(DataConfig(source=data, seed=seed, target="target",
                                                              test_source=test))
        finally:
            tab.encode_frame = encode
        assert [len(f) for f in frames] == [len(bundle.y_train), len(bundle.y_val), len(bundle.y_test)]
        label, meta = "target", bundle.meta
        problem = "regression" if meta["problem"] == "regression" else (
            "binary" if meta["num_classes"] == 2 else "multiclass")
    for part, frame in zip(("train", "val", "test"), frames, strict=True):
        frame.to_csv(dest / f"{part}.csv", index=False)
    (dest / "split.json").write_text(json.dumps({"label": label, "problem": problem, "seed": seed,
                                                 "rows": [len(f) for f in frames]}))
    return dest


def ag_python(venv: Path) -> Path:
    """The AutoGluon venv's Python, created and installed on first use (minutes)."""
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import autogluon.tabular"], capture_output=True).returncode == 0:
        return py
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "autogluon.tabular[all]"], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"pip install autogluon.tabular[all] failed: {proc.stderr.strip().splitlines()[-1:]}")
    return py


def pinned(cpus: str) -> list[str]:
    return ["taskset", "-c", cpus, "nice", "-n", "5"]


def run_ag(name: str, split: Path, budget: float, cpus: str, venv: Path, out: Path) -> dict:
    py = ag_python(venv)
    cmd = [*pinned(cpus), str(py), str(ROOT / "benchmarks" / "ag_runner.py"), str(split), "--time-limit",
           str(budget), "--cores", str(len(cpu_list(cpus))), "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1], "wall": wall}
    return {**json.loads(out.read_text()), "wall": wall}


def run_automl(name: str, work: Path, budget: float, cpus: str, seed: int, extra: list[str]) -> dict:
    task, data, test = data_args(name, work)
    out = work / f"{name}-automl"
    cmd = [*pinned(cpus), sys.executable, str(ROOT / "cli.py"), "search", "--task", task, "--data", data,
           *(["--test-data", test] if test else []), *(["--target", "target"] if task == "tabular" else []),
           "--timeout", str(budget), "--trials", "100000", "--seed", str(seed), "--out-dir", str(out), "--json", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1], "wall": wall}
    res = json.loads(proc.stdout)
    rows = res["leaderboard"]["rows"]
    ref = next((r for r in rows if r["kind"] == "reference"), None)
    ens = next((r for r in rows if r["kind"] == "ensemble" or r.get("name") == "ensemble"), None)
    singles = [r for r in rows if r["kind"] == "family" and r.get("name") != "ensemble" and r["test"] is not None]
    return {"metric": res["metric"], "test": res[f"test_{res['metric']}"], "best_family": res["params"].get("model"),
            "single": singles[0]["test"] if singles else None, "single_family": singles[0]["name"] if singles else None,
            "ensemble": ens["test"] if ens else None, "ref": ref["test"] if ref else None,
            "ref_model": ref.get("model") if ref else None, "trials": res["n_trials"], "complete": res["n_complete"],
            "families": {r["name"]: {"val": r["val"], "test": r["test"], "complete": r["complete"]}
                         for r in rows if r["kind"] == "family"}, "wall": wall}


def cpu_list(cpus: str) -> list[int]:
    out: list[int] = []
    for part in cpus.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def cached(path: Path, rerun: bool, make: object) -> dict:
    if path.exists() and not rerun:
        return json.loads(path.read_text())
    res = make()  # type: ignore[operator]
    if "error" not in res:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=1))
    return res


def fmt(v: float | None, metric: str) -> str:
    return "-" if v is None else f"{v:.1f}" if metric == "rmse" else f"{v:.4f}"


def gap(ours: float | None, theirs: float | None, metric: str) -> str:
    if ours is None or theirs is None:
        return "-"
    return f"{(ours / theirs - 1) * 100:+.1f}%" if metric == "rmse" else f"{(ours - theirs) * 100:+.1f} pts"


def table(results: dict[str, dict], budget: float) -> str:
    lines = [f"--timeout / time_limit {budget:g} s per side, each side pinned to the same number of cores",
             "| set | metric | automl (best) | best single family | ensemble | reference | AutoGluon (best model) "
             "| automl vs AutoGluon |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        a, g = r.get("automl") or {}, r.get("autogluon") or {}
        metric = a.get("metric") or g.get("metric") or "?"
        best = "-" if "test" not in a else f"{fmt(a['test'], metric)} ({a.get('best_family')})"
        single = "-" if a.get("single") is None else f"{fmt(a['single'], metric)} ({a['single_family']})"
        agc = f"error: {g['error'][:60]}" if "error" in g else (
            "-" if "test" not in g else f"{fmt(g['test'], metric)} ({g['best_model']})")
        lines.append(f"| {name} | {metric} | {best} | {single} | {fmt(a.get('ensemble'), metric)} | "
                     f"{fmt(a.get('ref'), metric)} | {agc} | {gap(a.get('test'), g.get('test'), metric)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=300.0, help="automl --timeout and AutoGluon time_limit, s")
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    ap.add_argument("--sides", default="automl,ag", help="automl, ag (AutoGluon), or both")
    ap.add_argument("--automl-cpus", default="0", help="taskset CPU list of the automl side")
    ap.add_argument("--ag-cpus", default="0", help="taskset CPU list of AutoGluon (as many CPUs as automl's)")
    ap.add_argument("--ag-venv", default=str(ROOT.parent / "agvenv"), help="AutoGluon's virtual environment")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", default="", help="more search options, e.g. '--space my.yaml'")
    ap.add_argument("--rerun", action="store_true", help="ignore cached results in benchmarks/results/")
    ap.add_argument("--out", default=str(RESULTS / "ensemble.json"), help="all figures (JSON); .md beside it")
    args = ap.parse_args()
    sides = set(args.sides.split(","))
    if len(cpu_list(args.automl_cpus)) != len(cpu_list(args.ag_cpus)):
        raise SystemExit("--automl-cpus and --ag-cpus must name the same number of CPUs")
    results: dict[str, dict] = {}
    tag = f"{args.budget:g}s-seed{args.seed}"
    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as tmp:
        work = Path(tmp)
        for name in args.sets.split(","):
            r: dict = {}
            if "ag" in sides:
                split = export_split(name, work, args.seed)
                r["autogluon"] = cached(RESULTS / f"ag-{name}-{tag}.json", args.rerun, lambda n=name, s=split: run_ag(
                    n, s, args.budget, args.ag_cpus, Path(args.ag_venv), work / f"{n}-ag.json"))
            if "automl" in sides:
                r["automl"] = cached(RESULTS / f"automl-{name}-{tag}.json", args.rerun, lambda n=name: run_automl(
                    n, work, args.budget, args.automl_cpus, args.seed, args.extra.split()))
            results[name] = r
            print(json.dumps({name: r})[:2000], file=sys.stderr, flush=True)
    md = f"hardware: {os.cpu_count()} cores, CPU, shared\n" + table(results, args.budget)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    out.with_suffix(".md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
