"""Wall time of `automl search --trials N` with --jobs 1 versus --jobs 2, side by side, and the ratio.

Each run is the whole command as a user starts it (process start-up, data loading, trials, best.pt),
on a fresh study, so the figure includes what parallel workers cost as well as what they save.

    python benchmarks/jobs.py                    # 8 trials x 3 epochs on digits, 1 repeat
    python benchmarks/jobs.py --trials 12 --repeats 3 --jobs 1 2 4

Prints the hardware, the median wall time of each --jobs value and its speed-up over --jobs 1.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(jobs: int, trials: int, epochs: int, space: str | None, out: Path) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "cli", "search", "--task", "image", "--data", "digits", "--trials", str(trials),
           "--epochs", str(epochs), "--pruner", "none", "--device", "cpu", "--out", str(out), "--study", "bench",
           "--jobs", str(jobs), "--json"]
    if space:
        cmd += ["--space", space]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"--jobs {jobs} failed (code {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return seconds, json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--space", default=None, help="search-space YAML (default: the built-in image space)")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"hardware: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"load average {load[0]:.1f} at start; python {platform.python_version()}")
    print(f"workload: automl search --data digits --trials {args.trials} --epochs {args.epochs} "
          f"--pruner none --device cpu ({args.repeats} repeat(s), interleaved)")
    times: dict[int, list[float]] = {j: [] for j in args.jobs}
    trials_done: dict[int, int] = {}
    for _ in range(args.repeats):
        for jobs in args.jobs:  # interleaved, so a change in machine load hits every setting alike
            with tempfile.TemporaryDirectory() as tmp:
                seconds, result = run_once(jobs, args.trials, args.epochs, args.space, Path(tmp))
            times[jobs].append(seconds)
            trials_done[jobs] = result["n_trials"]
    base = statistics.median(times[args.jobs[0]])
    print(f"{'jobs':>4}  {'trials':>6}  {'median s':>9}  {'runs (s)':<24}  speed-up vs --jobs {args.jobs[0]}")
    for jobs in args.jobs:
        med = statistics.median(times[jobs])
        runs = ", ".join(f"{t:.1f}" for t in times[jobs])
        print(f"{jobs:>4}  {trials_done[jobs]:>6}  {med:>9.1f}  {runs:<24}  {base / med:.2f}x")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
