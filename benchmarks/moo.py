"""Multi-objective trial pruning, measured: the same ``--objectives accuracy,latency`` search on
digits with the cost-aware trial pruner on and off, side by side.

Both studies have the same seed, trials and epochs, and live in one SQLite file. The "off" study runs
first; its latency cache (``automl.runtime.latency``'s study user attributes) is copied into the "on" study
before that one starts, so an architecture both studies sample gets the same measured latency and
timing noise does not move one front against the other. Reported per side: epochs trained (all
trials, pruned ones up to where they stopped), training seconds, trials pruned, the Pareto front and
its hypervolume. The hypervolume's reference point is fixed for both sides and printed: accuracy
``--ref-accuracy`` (0.8 by default) and latency 1.1 x the slowest latency measured in either study.

It also replays the rule on the "off" study's recorded learning curves (trial order kept): which
trials it would have stopped, the epochs that leaves, and that front's hypervolume. A replay keeps
the sampler's proposals fixed, so it isolates the rule from the sampler's reaction to it.

One pair per ``--seeds`` entry (each in ``--out``/seed<S>): a pruned study's proposals drift from the
unpruned one's as soon as a stopped trial would have been among the trials the sampler learns from,
so a single pair compares two different searches; the summary gives every seed and the mean.

    nice -n 19 python benchmarks/moo.py --trials 20 --epochs 10 --seeds 0 1 2 3 4 --out /tmp/moo-bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automl.search.moo import COSTS, cost_names, default_pruner, hypervolume, pareto_front  # noqa: E402
from automl.study import SearchSettings, run_search  # noqa: E402


def run_side(name: str, args: argparse.Namespace, pruner: str) -> tuple[Any, float]:
    settings = SearchSettings(task="image", data="digits", trials=args.trials, epochs=args.epochs, pruner=pruner,
                              out=args.out, study=name, device="cpu", seed=args.seed, objectives=args.objectives)
    t0 = time.monotonic()
    run_search(settings)
    return load(name, args), time.monotonic() - t0


def load(name: str, args: argparse.Namespace) -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{Path(args.out).resolve() / 'automl.db'}")


def seed_cache(src: Any, name: str, args: argparse.Namespace) -> None:
    """Create study ``name`` holding ``src``'s latency cache (same directions), before its search runs."""
    import optuna

    from automl.runtime.latency import CACHE_PREFIX

    dst = optuna.create_study(study_name=name, storage=f"sqlite:///{Path(args.out).resolve() / 'automl.db'}",
                              directions=[d.name.lower() for d in src.directions], load_if_exists=True)
    for key, value in src.user_attrs.items():
        if key.startswith(CACHE_PREFIX):
            dst.set_user_attr(key, value)


def side_stats(study: Any, seconds: float, objectives: tuple[str, ...]) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    front = pareto_front(study)
    return {
        "study": study.study_name,
        "trials": len(trials),
        "complete": sum(t.state.name == "COMPLETE" for t in trials),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "epochs": sum(int(t.user_attrs.get("epochs") or 0) for t in trials),
        "train_seconds": round(sum(float(t.user_attrs.get("seconds") or 0.0) for t in trials), 1),
        "wall_seconds": round(seconds, 1),
        "front": [{"trial": t.number, "values": [round(v, 6) for v in t.values]} for t in front],
    }


def replay(study: Any, objectives: tuple[str, ...], epochs: int) -> dict[str, Any]:
    """The cost-aware rule run over the study's completed curves in trial order (no retraining)."""
    rule = default_pruner(epochs)
    maximize = study.directions[0].name == "MAXIMIZE"
    done: list[tuple[list[float], list[float]]] = []
    kept_points: list[list[float]] = []
    total = 0
    stopped = []
    for t in sorted(study.get_trials(deepcopy=False, states=None), key=lambda t: t.number):
        if t.state.name != "COMPLETE" or not t.values:
            total += int(t.user_attrs.get("epochs") or 0)
            continue
        curve = [float(r["val_metric"]) for r in t.user_attrs.get("history") or []]
        costs = list(t.values[1:])
        at = next((k for k in range(1, len(curve) + 1)
                   if rule.judge(k, curve[k - 1], costs, done, maximize, epochs) is not None), None)
        if at is None:
            total += len(curve)
            done.append((costs, curve))
            kept_points.append(list(t.values))
        else:
            total += at
            stopped.append(t.number)
    return {"epochs": total, "stopped": stopped, "points": kept_points}


def one_seed(args: argparse.Namespace, seed: int, objectives: tuple[str, ...]) -> dict[str, Any] | None:
    """Run (or reload, per ``--side``) the off and on studies of one seed in ``--out``/seed<S>; print
    their table and return the figures (None for ``--side off``)."""
    run = argparse.Namespace(**{**vars(args), "seed": seed, "out": str(Path(args.out) / f"seed{seed}")})
    Path(run.out).mkdir(parents=True, exist_ok=True)
    marks = Path(run.out) / "seconds.json"  # wall seconds of each side (--side runs them one at a time)
    wall = json.loads(marks.read_text()) if marks.is_file() else {}
    if args.side in ("both", "off"):
        off, wall["off"] = run_side("moo-off", run, pruner="none")
        marks.write_text(json.dumps(wall))
    else:
        off = load("moo-off", run)
    if args.side in ("both", "on"):
        seed_cache(off, "moo-on", run)
        on, wall["on"] = run_side("moo-on", run, pruner="median")  # any --pruner but none: the cost-aware one
        marks.write_text(json.dumps(wall))
    elif args.side == "off":
        rep = replay(off, objectives, args.epochs)
        total = sum(int(t.user_attrs.get("epochs") or 0) for t in off.get_trials(deepcopy=False))
        print(f"seed {seed} off: {total} epochs; replay of {default_pruner(args.epochs)}: {rep['epochs']} epochs, "
              f"stops trials {rep['stopped']}")
        return None
    else:
        on = load("moo-on", run)
    off_s, on_s = wall.get("off", float("nan")), wall.get("on", float("nan"))

    a, b = side_stats(off, off_s, objectives), side_stats(on, on_s, objectives)
    ref = [args.ref_accuracy] + [1.1 * max(float(t.user_attrs[COSTS[c]]) for s in (off, on)
                                           for t in s.get_trials(deepcopy=False) if COSTS[c] in t.user_attrs)
                                 for c in cost_names(objectives)]
    direction = "maximize"
    for side, study in ((a, off), (b, on)):
        side["hypervolume"] = hypervolume([t.values for t in pareto_front(study)], ref, direction)
    rep = replay(off, objectives, args.epochs)
    rep["hypervolume"] = hypervolume(rep.pop("points"), ref, direction)

    def ratio(x: float, y: float) -> float:
        return x / y if y else float("nan")

    figures = {"epoch_ratio": ratio(b["epochs"], a["epochs"]), "hv_ratio": ratio(b["hypervolume"], a["hypervolume"]),
               "replay_epoch_ratio": ratio(rep["epochs"], a["epochs"]),
               "replay_hv_ratio": ratio(rep["hypervolume"], a["hypervolume"])}
    print(f"## seed {seed}; hypervolume reference point: accuracy {ref[0]}, "
          + ", ".join(f"{c} {r:.4g} {'ms' if c == 'latency' else ''}".strip()
                      for c, r in zip(cost_names(objectives), ref[1:], strict=True)))
    print(f"{'side':<14}{'epochs':>8}{'pruned':>8}{'train s':>9}{'wall s':>8}{'front':>7}{'hypervolume':>13}")
    for label, s in (("pruning off", a), ("pruning on", b)):
        print(f"{label:<14}{s['epochs']:>8}{s['pruned']:>8}{s['train_seconds']:>9}{s['wall_seconds']:>8}"
              f"{len(s['front']):>7}{s['hypervolume']:>13.6g}")
    print(f"{'replay on off':<14}{rep['epochs']:>8}{len(rep['stopped']):>8}{'':>9}{'':>8}{'':>7}"
          f"{rep['hypervolume']:>13.6g}")
    print(f"epochs on/off = {figures['epoch_ratio']:.3f}; hypervolume on/off = {figures['hv_ratio']:.4f}; replay: "
          f"epochs {figures['replay_epoch_ratio']:.3f}, hypervolume {figures['replay_hv_ratio']:.4f}")
    for label, s in (("off", a), ("on", b)):
        pts = ", ".join(f"#{p['trial']} ({p['values'][0]:.4f}, {p['values'][1]:.4g})" for p in s["front"])
        print(f"front {label}: {pts}")
    print(flush=True)
    return {"seed": seed, "off": a, "on": b, "replay": rep, "reference": ref, **figures}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                    help="one off/on pair per seed, each in --out/seed<S>; the summary gives each and the mean")
    ap.add_argument("--objectives", default="accuracy,latency")
    ap.add_argument("--ref-accuracy", type=float, default=0.8, help="the reference point's accuracy")
    ap.add_argument("--out", default="/tmp/moo-bench")
    ap.add_argument("--side", choices=("both", "off", "on", "table"), default="both",
                    help="run both sides, one (on needs off), or only print the tables of both")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    objectives = tuple(args.objectives.split(","))
    print(f"# {args.trials} trials x {args.epochs} epochs, digits, --objectives {args.objectives}, "
          f"seeds {' '.join(map(str, args.seeds))}")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; rule: {default_pruner(args.epochs)}")
    print()
    rows = [r for seed in args.seeds if (r := one_seed(args, seed, objectives)) is not None]
    if not rows:
        return
    print(f"{'seed':<6}{'epochs on/off':>15}{'HV on/off':>11}{'replay epochs':>15}{'replay HV':>11}")
    for r in rows:
        print(f"{r['seed']:<6}{r['epoch_ratio']:>15.3f}{r['hv_ratio']:>11.4f}{r['replay_epoch_ratio']:>15.3f}"
              f"{r['replay_hv_ratio']:>11.4f}")
    mean = {k: sum(r[k] for r in rows) / len(rows)
            for k in ("epoch_ratio", "hv_ratio", "replay_epoch_ratio", "replay_hv_ratio")}
    print(f"{'mean':<6}{mean['epoch_ratio']:>15.3f}{mean['hv_ratio']:>11.4f}{mean['replay_epoch_ratio']:>15.3f}"
          f"{mean['replay_hv_ratio']:>11.4f}")
    print(f"targets: epochs on/off <= 0.60 ({mean['epoch_ratio'] <= 0.60}); hypervolume within 5% "
          f"({abs(mean['hv_ratio'] - 1) <= 0.05}); seeds meeting both: "
          f"{sum(r['epoch_ratio'] <= 0.60 and abs(r['hv_ratio'] - 1) <= 0.05 for r in rows)} of {len(rows)}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"seeds": rows, "mean": mean}, indent=1))


if __name__ == "__main__":
    main()
