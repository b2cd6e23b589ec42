"""The latency budget of issue 15, measured: what a budget-constrained search saves over "search, then
pick what fits", and whether the sampler learns the constraint.

    python benchmarks/hw_aware.py                      # digits, the built-in image space
    python benchmarks/hw_aware.py --trials 20 --learn-trials 40 --epochs 2 --seeds 0 1

1. Times every architecture of the space (random weights, ONNX Runtime on the target) and sets the
   budget X to their median.
2. Side by side, the same number of trials: (a) a plain search, then the best trial whose network
   fits X; (b) ``automl search --max-latency-ms X --json`` (the CLI). For each: training seconds,
   seconds spent on networks that end over the budget, best validation accuracy within X, and for
   (b) best.pt timed again by ``automl compress`` against X.
3. Learning the constraint: over-budget proposals in the first and second half of a ``--learn-trials``
   study, for random sampling, TPE told by the constraint alone, and TPE with the cache filter (the
   default with a budget), each over ``--seeds``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import product
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def arch_grid(space: Any, task: Any) -> list[dict[str, Any]]:
    """Every combination of the space's values for the parameters the model family reads."""
    from automl.search.space import grid

    family = task.model_family({})
    g = {k: v for k, v in grid(space).items() if k in family.params and "dropout" not in k}
    return [dict(zip(g, combo, strict=True)) for combo in product(*g.values())]


def time_space(task: Any, space: Any, meta: dict[str, Any], target: Any, repeats: int) -> list[dict[str, Any]]:
    """Each architecture's latency (median of ``repeats`` measurements), params and MACs."""
    from automl.runtime.latency import measure

    rows = []
    for params in arch_grid(space, task):
        model = task.build_model(params, meta)
        ms = [measure(model, task.example_input(meta, 1), target) for _ in range(repeats)]
        rows.append({**params, "latency_ms": statistics.median(m.latency_ms for m in ms),
                     "min_ms": min(m.latency_ms for m in ms), "max_ms": max(m.latency_ms for m in ms),
                     "macs": ms[0].macs, "params": ms[0].params})
    return rows


def trial_rows(storage: str, name: str) -> list[Any]:
    import optuna

    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def plain_then_pick(out: Path, trials: int, epochs: int, seed: int, budget: float,
                    table: dict[tuple, float]) -> dict[str, Any]:
    """(a): a plain search; each trial's network judged by the space's latency table (the timings X
    came from: timing again after the search would add the noise of another moment); the best that fits."""
    from optuna.trial import TrialState

    from automl.study import SearchSettings, run_search

    t0 = time.perf_counter()
    res = run_search(SearchSettings(task="image", trials=trials, epochs=epochs, out=str(out), study="plain",
                                    device="cpu", seed=seed))
    wall = time.perf_counter() - t0
    train_s = over_s = 0.0
    n_over = 0
    best = None
    for t in trial_rows(res.storage, "plain"):
        ms = table[(t.params.get("depth"), t.params.get("width"))]
        secs = float(t.user_attrs.get("seconds") or 0)
        train_s += secs
        if ms > budget:
            over_s += secs
            n_over += 1
        elif t.state == TrialState.COMPLETE and (best is None or t.value > best.value):
            best = t
    return {"how": "(a) plain + pick", "wall_s": round(wall, 1), "train_s": round(train_s, 1),
            "over_budget_s": round(over_s, 1), "trials_over": n_over,
            "best_val_within": None if best is None else round(best.value, 4),
            "best_trial": None if best is None else best.number,
            "study_best_val": round(res.best_value, 4),
            "study_best_fits": table[(res.params.get("depth"), res.params.get("width"))] <= budget}


def constrained(out: Path, trials: int, epochs: int, seed: int, budget: float) -> dict[str, Any]:
    """(b): the CLI with --max-latency-ms X --json; best.pt timed again by automl compress."""
    cmd = [sys.executable, "cli.py", "search", "--task", "image", "--trials", str(trials), "--epochs", str(epochs),
           "--device", "cpu", "--seed", str(seed), "--out-dir", str(out), "--study", "budget",
           "--max-latency-ms", f"{budget:.6g}", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"constrained search failed: {proc.stderr.strip().splitlines()[-1:]}")
    res = json.loads(proc.stdout)
    train_s = over_s = 0.0
    trained_over = 0
    for t in trial_rows(res["storage"], "budget"):
        secs = float(t.user_attrs.get("seconds") or 0)
        train_s += secs
        if t.user_attrs.get("over_budget"):
            over_s += secs
            trained_over += int(t.user_attrs.get("epochs", 0) > 0)
    comp = subprocess.run([sys.executable, "cli.py", "compress", res["best_pt"], "--prune-ratio", "0", "--quantize",
                           "none", "--threads", "1", "--json"], cwd=REPO, capture_output=True, text=True)
    if comp.returncode != 0:
        sys.exit(f"compress failed: {comp.stderr.strip().splitlines()[-1:]}")
    report = json.loads(comp.stdout)
    fp32 = next(v for v in report["variants"] if v["name"] == "fp32")
    lat = res["latency"]
    return {"how": "(b) --max-latency-ms", "wall_s": round(wall, 1), "train_s": round(train_s, 1),
            "over_budget_s": round(over_s, 1), "trials_over": lat["n_over_budget"],
            "over_budget_trials_trained": trained_over,
            "best_val_within": round(res["best_value"], 4), "best_trial": res["best_trial"],
            "best_search_ms": lat["best"].get("latency_ms"), "compress_ms": fp32["target_latency_ms"],
            "compress_within_x_plus_10pct": fp32["target_latency_ms"] <= 1.1 * budget,
            "meets_budget": fp32["meets_budget"], "test_accuracy": res.get("test_accuracy")}


def learning(out: Path, trials: int, epochs: int, seed: int, budget: float, how: str) -> dict[str, Any]:
    """Over-budget proposals in the first and second half of a ``trials``-trial budget study."""
    from automl.study import SearchSettings, prepare_search
    from automl.study._budget_sampler import BudgetAwareSampler
    from automl.study._loop import run_trials

    sampler = "random" if how == "random" else "tpe"
    run = prepare_search(SearchSettings(task="image", trials=trials, epochs=epochs, out=str(out), study=how,
                                        device="cpu", seed=seed, sampler=sampler, max_latency_ms=budget))
    if how == "tpe-constraint" and isinstance(run.study.sampler, BudgetAwareSampler):
        run.study.sampler = run.study.sampler.base  # the constraint alone
    import automl.runtime.latency

    # Every proposal is counted: the CLI's stop after MAX_OVER_STREAK over-budget trials in a row (a
    # budget that looks unmeetable) would end a study that is still learning where the budget lies.
    automl.runtime.latency.MAX_OVER_STREAK = trials + 1
    t0 = time.perf_counter()
    run_trials(run, n_trials=trials)
    flags = [bool(t.user_attrs.get("over_budget")) for t in run.study.get_trials(deepcopy=False)]
    half = len(flags) // 2
    return {"how": how, "seed": seed, "first": sum(flags[:half]), "second": sum(flags[half:]),
            "redrawn": getattr(run.study.sampler, "redrawn", None), "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20, help="trials of (a) and (b)")
    ap.add_argument("--learn-trials", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--repeats", type=int, default=3, help="timings per architecture for the median")
    ap.add_argument("--skip", nargs="*", default=[], choices=["compare", "learn"])
    ap.add_argument("--budget", type=float, default=None, help="X in ms (default: the space's median)")
    args = ap.parse_args()

    from automl.runtime.latency import LatencyTarget
    from automl.search.space import resolve_space
    from automl.tasks import DataConfig, get_task

    load = os.getloadavg()
    print(f"hardware: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, load average "
          f"{load[0]:.1f} at start; python {platform.python_version()}")
    task = get_task("image")
    space = resolve_space(None, "image")
    meta = task.load_data(DataConfig(source="digits")).meta
    target = LatencyTarget()
    rows = time_space(task, space, meta, target, args.repeats)
    print(f"\n1. the space's architectures on ONNX Runtime ({target.label()}), median of {args.repeats}:")
    for r in sorted(rows, key=lambda r: r["latency_ms"]):
        print(f"   depth {r['depth']} width {r['width']:>2}: {r['latency_ms']:.4f} ms "
              f"(min {r['min_ms']:.4f}, max {r['max_ms']:.4f}), {r['macs']:>9,} MACs, {r['params']:>7,} params")
    budget = args.budget or statistics.median(r["latency_ms"] for r in rows)
    print(f"   X = {'given' if args.budget else 'median'}: {budget:.4f} ms; "
          f"{sum(r['latency_ms'] > budget for r in rows)} of {len(rows)} architectures over it")
    results: dict[str, Any] = {"budget_ms": budget, "space": rows}
    with tempfile.TemporaryDirectory() as tmp:
        if "compare" not in args.skip:
            print(f"\n2. {args.trials} trials x {args.epochs} epochs on digits, seed {args.seeds[0]}:")
            table = {(r["depth"], r["width"]): r["latency_ms"] for r in rows}
            a = plain_then_pick(Path(tmp) / "a", args.trials, args.epochs, args.seeds[0], budget, table)
            b = constrained(Path(tmp) / "b", args.trials, args.epochs, args.seeds[0], budget)
            for r in (a, b):
                print("   " + ", ".join(f"{k} {v}" for k, v in r.items()))
            results["compare"] = [a, b]
        if "learn" not in args.skip:
            print(f"\n3. over-budget proposals, first vs second half of {args.learn_trials} trials:")
            rows3 = []
            for seed in args.seeds:
                for how in ("random", "tpe-constraint", "tpe"):
                    r = learning(Path(tmp) / f"l{seed}", args.learn_trials, args.epochs, seed, budget, how)
                    rows3.append(r)
                    print(f"   {how:>15} seed {seed}: first half {r['first']:>2}, second half {r['second']:>2}"
                          f" (redrawn proposals {r['redrawn']}, {r['seconds']} s)", flush=True)
            for how in ("random", "tpe-constraint", "tpe"):
                sel = [r for r in rows3 if r["how"] == how]
                f, s = sum(r["first"] for r in sel), sum(r["second"] for r in sel)
                print(f"   {how:>15} total: first {f}, second {s}" + (f", ratio {s / f:.2f}" if f else ""))
            results["learn"] = rows3
    print("\nJSON " + json.dumps(results, default=str))


if __name__ == "__main__":
    main()
