"""Replay trial-pruner rules on the learning curves of a search run with ``--pruner none``.

Every trial of such a study trained all its epochs and reported its validation metric after each, so
any pruning rule can be replayed on the same curves without training again: the trials are taken in
an order (the queued firsts first, the others shuffled; ``--orders`` orders), each is walked epoch by
epoch and asked the rule with the trials before it in the study (a pruned one keeps its curve up to
where it stopped, as in a real study). Printed per rule, as means over the orders: the share of the
unpruned study's epochs trained, trials pruned, pruned at the majority-class score (a trial that has
not started learning), and how far the best completed trial falls behind the unpruned best
(validation points; and how often by more than 0.5). The sampler's reaction to pruning (other
proposals) is not replayed: confirm a rule with a real pruned run on the same seed.

    python benchmarks/pruner_replay.py --storage sqlite:///runs/automl.db --study text-mr
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections import Counter
from collections.abc import Callable
from typing import Any

import optuna

from automl.study._trial_pruners import family_median, make_trial_pruner

RULES: dict[str, Callable[[int], Any]] = {
    "old median: from epoch max(1, E//3), last judged": lambda e: family_median(e, max(1, e // 3), False),
    "median from epoch 1, last spared": lambda e: family_median(e, 1),
    "median default (make_trial_pruner)": lambda e: make_trial_pruner("median", e),
    "median from epoch 3, last spared": lambda e: family_median(e, 3),
}


def load_curves(storage: str, study_name: str | None) -> tuple[list[Any], int, str]:
    """The completed trials of the study, its epochs (the longest curve) and direction."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.intermediate_values]
    return trials, max(len(t.intermediate_values) for t in trials), study.direction.name.lower()


def majority_score(trials: list[Any]) -> float | None:
    """The score most trials share after their first epoch, when several do (a constant predictor's)."""
    value, n = Counter(round(t.intermediate_values[min(t.intermediate_values)], 6) for t in trials).most_common(1)[0]
    return value if n >= 2 else None


def replay(trials: list[Any], order: list[int], make: Callable[[int], Any], epochs: int, direction: str,
           majority: float | None) -> dict[str, float]:
    """One study replayed: the trials in ``order``, each stopped where the rule ``make(epochs)`` says."""
    pruner = make(epochs)
    study = optuna.create_study(direction=direction, storage=optuna.storages.InMemoryStorage())
    trained = pruned = at_majority = 0
    best = None
    stops: dict[int, int] = {}  # trial number -> the epoch it was stopped at
    for i in order:
        t = trials[i]
        curve = [t.intermediate_values[s] for s in sorted(t.intermediate_values)]
        stop = None  # the epoch the rule stopped the trial at (None: it completed)
        for step in range(1, len(curve) + 1):
            running = optuna.trial.create_trial(
                state=optuna.trial.TrialState.RUNNING, params=t.params, distributions=t.distributions,
                intermediate_values=dict(enumerate(curve[:step], 1)))
            if pruner.prune(study, running):
                stop = step
                break
        trained += stop or len(curve)
        if stop is not None:
            stops[t.number] = stop
            pruned += 1
            at_majority += majority is not None and math.isclose(curve[stop - 1], majority, abs_tol=1e-6)
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED if stop else optuna.trial.TrialState.COMPLETE,
            params=t.params, distributions=t.distributions, value=None if stop else curve[-1],
            intermediate_values=dict(enumerate(curve[:stop or len(curve)], 1))))
        if stop is None:
            best = curve[-1] if best is None else (max if direction == "maximize" else min)(best, curve[-1])
    return {"trained": trained, "pruned": pruned, "at_majority": at_majority,
            "best": best if best is not None else float("nan"), "stops": stops}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", required=True, help="storage URL of a --pruner none search")
    ap.add_argument("--study", default=None, help="study name (default: the storage's only study)")
    ap.add_argument("--orders", type=int, default=100, help="trial orders replayed (the first is the real one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--majority", type=float, default=None,
                    help="the majority-class score of the validation split (default: the first-epoch score "
                         "several trials share, if any)")
    args = ap.parse_args()
    trials, epochs, direction = load_curves(args.storage, args.study)
    firsts = [i for i, t in enumerate(trials) if "fixed_params" in t.system_attrs]
    rest = [i for i in range(len(trials)) if i not in firsts]
    rng = random.Random(args.seed)
    orders = [firsts + rest]
    for _ in range(args.orders - 1):
        orders.append(firsts + rng.sample(rest, len(rest)))
    sign = 1.0 if direction == "maximize" else -1.0
    full = [len(t.intermediate_values) for t in trials]
    best_all = (max if sign > 0 else min)(t.value for t in trials)
    majority = majority_score(trials) if args.majority is None else args.majority
    fams = Counter(t.params.get("model", "-") for t in trials)
    print(f"{len(trials)} unpruned trials ({', '.join(f'{k} {v}' for k, v in fams.items())}), {epochs} epochs, "
          f"{sum(full)} epochs in all; best val {best_all:.4f}; majority-class score "
          f"{'-' if majority is None else f'{majority:.4f}'}; {len(orders)} orders")
    print(f"{'rule':52s} {'epochs':>7s} {'pruned':>7s} {'at maj.':>7s} {'behind':>7s} {'>0.5pt':>7s}")
    for name, make in RULES.items():
        rows = [replay(trials, o, make, epochs, direction, majority) for o in orders]
        behind = [100 * sign * (best_all - r["best"]) for r in rows]
        mean = {k: statistics.mean(r[k] for r in rows) for k in ("trained", "pruned", "at_majority")}
        print(f"{name:52s} {mean['trained'] / sum(full):7.3f} {mean['pruned']:7.1f} {mean['at_majority']:7.1f} "
              f"{statistics.mean(behind):7.2f} {sum(b > 0.5 for b in behind) / len(behind):7.2f}")
        real = rows[0]  # the order the study ran its trials in
        print(f"{'':4s}in the study's own order: {real['trained']} of {sum(full)} epochs, best {real['best']:.4f}; "
              f"stopped (trial@epoch): {' '.join(f'{n}@{e}' for n, e in sorted(real['stops'].items())) or '-'}")


if __name__ == "__main__":
    main()
