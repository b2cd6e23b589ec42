"""What ``--mlflow file:DIR --tensorboard DIR`` costs a trial: the seconds spent inside the trackers'
calls (run creation, params, each epoch's metrics, the end tags, hparams), against the trial's own
duration, in the same search. Prints one line per trial and the median share.

    python benchmarks/tracking_overhead.py [--trials 6] [--epochs 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from automl.study import SearchSettings, run_search
from automl.tracking import StudyTracker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    spent: dict[int, float] = {}
    original = StudyTracker.call

    def timed(self: StudyTracker, method: str, *a: object, **kw: object) -> None:
        t0 = time.perf_counter()
        original(self, method, *a, **kw)
        number = a[0] if a and isinstance(a[0], int) else getattr(a[0], "number", -1) if a else -1
        spent[number] = spent.get(number, 0.0) + time.perf_counter() - t0

    StudyTracker.call = timed  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "space.yaml"
        space.write_text("params:\n  depth: {type: fixed, value: 2}\n  width: {type: fixed, value: 16}\n"
                         "  lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}\n")
        result = run_search(SearchSettings(
            task="image", data="digits", space=str(space), trials=args.trials, epochs=args.epochs, pruner="none",
            device="cpu", out=str(Path(tmp) / "runs"), mlflow=f"file:{Path(tmp) / 'mlruns'}",
            tensorboard=str(Path(tmp) / "tb")))
        import optuna

        study = optuna.load_study(study_name=result.study, storage=result.storage)
        shares = []
        for t in study.trials:
            trial_s = (t.datetime_complete - t.datetime_start).total_seconds()
            shares.append(spent.get(t.number, 0.0) / trial_s)
            print(f"trial {t.number}: {trial_s:.2f} s, trackers {spent.get(t.number, 0.0) * 1000:.1f} ms "
                  f"({100 * shares[-1]:.2f} %)")
        print(f"median share of a trial spent in the trackers: {100 * statistics.median(shares):.2f} % "
              f"({args.epochs} epochs per trial)")


if __name__ == "__main__":
    main()
