"""Seconds to the first trial of ``automl search --task image`` against ``python -c "import torch, optuna"``.

Both are fresh processes started from here, interleaved (import, search, import, search, ...), so a
loaded machine slows both alike; the table gives each repetition, the medians and their ratio. The
search is timed from starting the process to the moment it prints "trial 0 started" (the plain
progress line a search writes when its output is not a terminal); it is stopped there. Each search
gets a fresh ``--out`` (a new SQLite study is created, as on a first run).

``--compare DIR`` times the same search from another checkout too (e.g. the main branch), in the
same interleaved rounds, for a before/after ratio.

    python benchmarks/startup.py --reps 7
    python benchmarks/startup.py --reps 5 --compare /work/main
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_TRIAL = "trial 0 started"


def time_imports() -> tuple[float, float]:
    """Wall seconds of ``python -c "import torch, optuna"`` (the command, its exit included), and the
    seconds until it has imported both (a line it prints then; its exit, about 0.3 s quiet and 2 s
    under load for any process that imported torch, left out)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "import torch, optuna; print('imported', flush=True)"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    imported = time.perf_counter() - t0
    proc.wait()
    return time.perf_counter() - t0, imported


def time_first_trial(root: Path, out: Path, task: str = "image", timeout: float = 300.0) -> float:
    """Wall seconds from starting ``cli.py search`` (from checkout ``root``) to its first-trial line."""
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
    cmd = [sys.executable, str(root / "cli.py"), "search", "--task", task, "--trials", "1", "--epochs", "1",
           "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=root)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if FIRST_TRIAL in line:
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                break
        raise RuntimeError(f"{' '.join(cmd)}: no {FIRST_TRIAL!r} line (exit {proc.poll()})")
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="interleaved rounds (median over them)")
    ap.add_argument("--compare", type=Path, default=None, help="another checkout to time the same search from")
    args = ap.parse_args()
    trees = {"this tree": ROOT, **({f"{args.compare}": args.compare.resolve()} if args.compare else {})}
    rows: dict[str, list[float]] = {"import torch, optuna": [], "  ... until imported (no exit)": [],
                                    **{f"search first trial ({k})": [] for k in trees}}
    with tempfile.TemporaryDirectory(prefix="automl-startup-") as tmp:
        # one untimed round first: bytecode caches and the page cache are warm for both sides
        time_imports()
        for i, root in enumerate(trees.values()):
            time_first_trial(root, Path(tmp) / f"warm-{i}")
        for rep in range(args.reps):
            wall, imported = time_imports()
            rows["import torch, optuna"].append(wall)
            rows["  ... until imported (no exit)"].append(imported)
            for i, (name, root) in enumerate(trees.items()):
                rows[f"search first trial ({name})"].append(time_first_trial(root, Path(tmp) / f"{rep}-{i}"))
            print(f"round {rep + 1}/{args.reps}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in rows.items()),
                  flush=True)
    base = statistics.median(rows["import torch, optuna"])
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}; python {platform.python_version()}; {args.reps} interleaved rounds")
    inner = statistics.median(rows["  ... until imported (no exit)"])
    print(f"{'':34} {'median s':>9} {'ratio':>7} {'ratio*':>7}   each round (s)")
    for name, vals in rows.items():
        med = statistics.median(vals)
        print(f"{name:34} {med:9.2f} {med / base:7.2f} {med / inner:7.2f}   " + " ".join(f"{v:.2f}" for v in vals))
    print("ratio: to the command's wall time (the issue's yardstick); ratio*: to the moment it has imported both")


if __name__ == "__main__":
    main()
