"""Multi-objective trial pruning, measured: the same ``--objectives accuracy,latency`` search on
digits with the cost-aware trial pruner on and off, side by side.

Both studies have the same seed, trials and epochs, and live in one SQLite file. The "off" study runs
first; its latency cache (``automl.latency``'s study user attributes) is copied into the "on" study
before that one starts, so an architecture both studies sample gets the same measured latency and
timing noise does not move one front against the other. Reported per side: epochs trained (all
trials, pruned ones up to where they stopped), training seconds, trials pruned, the Pareto front and
its hypervolume. The hypervolume's reference point is fixed for both sides and printed: accuracy
``--ref-accuracy`` (0.8 by default) and latency 1.1 x the slowest latency measured in either study.

It also replays the rule on the "off" study's recorded learning curves (trial order kept): which
trials it would have stopped, the epochs that leaves, and that front's hypervolume. A replay keeps
the sampler's proposals fixed, so it isolates the rule from the sampler's reaction to it.

    nice -n 19 python benchmarks/moo.py --trials 20 --epochs 10 --out /tmp/moo-bench
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

from automl.moo import COSTS, cost_names, default_pruner, hypervolume, pareto_front  # noqa: E402
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

    from automl.latency import CACHE_PREFIX

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--objectives", default="accuracy,latency")
    ap.add_argument("--ref-accuracy", type=float, default=0.8, help="the reference point's accuracy")
    ap.add_argument("--out", default="/tmp/moo-bench")
    ap.add_argument("--side", choices=("both", "off", "on", "table"), default="both",
                    help="run both sides, one (on needs off), or only print the table of both")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    objectives = tuple(args.objectives.split(","))
    cost = cost_names(objectives)[0]

    marks = Path(args.out) / "seconds.json"  # wall seconds of each side (--side runs them one at a time)
    wall = json.loads(marks.read_text()) if marks.is_file() else {}
    if args.side in ("both", "off"):
        off, wall["off"] = run_side("moo-off", args, pruner="none")
        marks.write_text(json.dumps(wall))
    else:
        off = load("moo-off", args)
    if args.side in ("both", "on"):
        seed_cache(off, "moo-on", args)
        on, wall["on"] = run_side("moo-on", args, pruner="median")  # any --pruner but none: the cost-aware one
        marks.write_text(json.dumps(wall))
    elif args.side == "off":
        rep = replay(off, objectives, args.epochs)
        total = sum(int(t.user_attrs.get("epochs") or 0) for t in off.get_trials(deepcopy=False))
        print(f"off: {total} epochs; replay of {default_pruner(args.epochs)}: {rep['epochs']} epochs, "
              f"stops trials {rep['stopped']}")
        return
    else:
        on = load("moo-on", args)
    off_s, on_s = wall.get("off", float("nan")), wall.get("on", float("nan"))

    a, b = side_stats(off, off_s, objectives), side_stats(on, on_s, objectives)
    worst = max(float(t.user_attrs[COSTS[cost]]) for s in (off, on) for t in s.get_trials(deepcopy=False)
                if COSTS[cost] in t.user_attrs)
    ref = [args.ref_accuracy, 1.1 * worst] + [float("inf")] * (len(objectives) - 2)
    if len(objectives) > 2:  # further costs: 1.1 x their worst as well
        ref = [args.ref_accuracy] + [1.1 * max(float(t.user_attrs[COSTS[c]]) for s in (off, on)
                                                for t in s.get_trials(deepcopy=False) if COSTS[c] in t.user_attrs)
                                     for c in cost_names(objectives)]
    direction = "maximize"
    for side, study in ((a, off), (b, on)):
        side["hypervolume"] = hypervolume([t.values for t in pareto_front(study)], ref, direction)
    rep = replay(off, objectives, args.epochs)
    rep["hypervolume"] = hypervolume(rep.pop("points"), ref, direction)

    epoch_ratio = b["epochs"] / a["epochs"]
    hv_ratio = b["hypervolume"] / a["hypervolume"] if a["hypervolume"] else float("nan")
    rule = default_pruner(args.epochs)
    print(f"# {args.trials} trials x {args.epochs} epochs, digits, --objectives {args.objectives}, seed {args.seed}")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; rule: {rule}")
    print(f"# hypervolume reference point: accuracy {ref[0]}, "
          + ", ".join(f"{c} {r:.4g} {'ms' if c == 'latency' else ''}".strip()
                      for c, r in zip(cost_names(objectives), ref[1:], strict=True)))
    print(f"{'side':<14}{'epochs':>8}{'pruned':>8}{'train s':>9}{'wall s':>8}{'front':>7}{'hypervolume':>13}")
    for label, s in (("pruning off", a), ("pruning on", b)):
        print(f"{label:<14}{s['epochs']:>8}{s['pruned']:>8}{s['train_seconds']:>9}{s['wall_seconds']:>8}"
              f"{len(s['front']):>7}{s['hypervolume']:>13.6g}")
    print(f"{'replay on off':<14}{rep['epochs']:>8}{len(rep['stopped']):>8}{'':>9}{'':>8}{'':>7}"
          f"{rep['hypervolume']:>13.6g}")
    print(f"epochs on/off = {epoch_ratio:.3f} (target <= 0.60); hypervolume on/off = {hv_ratio:.4f} "
          f"(target within 5%: {abs(hv_ratio - 1) <= 0.05}); replay: epochs {rep['epochs'] / a['epochs']:.3f}, "
          f"hypervolume {rep['hypervolume'] / a['hypervolume']:.4f}")
    for label, s in (("off", a), ("on", b)):
        pts = ", ".join(f"#{p['trial']} ({p['values'][0]:.4f}, {p['values'][1]:.4g})" for p in s["front"])
        print(f"front {label}: {pts}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"off": a, "on": b, "replay": rep, "reference": ref,
                                                   "epoch_ratio": epoch_ratio, "hv_ratio": hv_ratio}, indent=1))


if __name__ == "__main__":
    main()
