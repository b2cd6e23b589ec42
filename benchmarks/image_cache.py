"""Time to the first trial of a search on an image folder: cold decoded-image cache vs warm.

Two studies on the same folder, one after the other, each in a fresh process with the same empty
cache directory: the first decodes every image and fills the cache, the second reads it. Each time
is taken twice: from starting the process (imports included) and from calling ``run_search`` after
the imports (loading, normalising, study creation) to the moment the search starts its first trial,
read from lines the child prints; the child stops there. The second figure is what the cache changes;
the first also holds the imports, which cost more than the data where Python may not write bytecode
caches (PYTHONDONTWRITEBYTECODE=1: every import compiles its sources).

    python benchmarks/image_cache.py --data /tmp/cifar10          # 60,000 CIFAR-10 JPEGs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import os, sys, time
sys.path.insert(0, {root!r})
import optuna.storages._rdb.storage, sqlalchemy, alembic  # noqa: the imports are not the data's cost
import automl.search.objective, automl.tasks.image
from automl.study import SearchSettings, run_search

class Stop:
    def __getattr__(self, name):
        return lambda *a, **k: None
    def on_trial_start(self, number, params):
        print("FIRST_TRIAL", time.perf_counter() - T0, flush=True)
        os._exit(0)

T0 = time.perf_counter()

run_search(SearchSettings(task="image", data={data!r}, trials=1, epochs=1, pruner="none", out={out!r},
                          device="cpu", seed=0), observer=Stop())
"""


def time_to_first_trial(data: str, cache: str, out: str) -> tuple[float, float]:
    env = {**os.environ, "AUTOML_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
    code = CHILD.format(root=str(ROOT), data=data, out=out)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env, cwd=out)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("FIRST_TRIAL"):
            elapsed = time.perf_counter() - t0
            proc.wait()
            return elapsed, float(line.split()[1])
    proc.wait()
    raise SystemExit(f"the child search exited ({proc.returncode}) before its first trial")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="an image folder (train/<class>/…, test/<class>/…)")
    args = ap.parse_args()
    n = sum(1 for _ in Path(args.data).rglob("*.*"))
    with tempfile.TemporaryDirectory(prefix="automl-cache-bench-") as tmp:
        cache = str(Path(tmp) / "cache")
        runs = []
        for i in range(2):
            out = Path(tmp) / f"run{i}"
            out.mkdir()
            runs.append(time_to_first_trial(args.data, cache, str(out)))
        size = sum(p.stat().st_size for p in Path(cache).rglob("*.npz"))
    print(f"hardware: {os.cpu_count()} cores; data: {args.data} ({n} files); cache {size / 2**20:.0f} MiB")
    print(f"{'study':<32}{'s, process start to 1st trial':>31}{'s, run_search to 1st trial':>28}")
    for name, (total, search) in zip(("1st (decode + fill the cache)", "2nd (read the cache)"), runs, strict=True):
        print(f"{name:<32}{total:>31.2f}{search:>28.2f}")
    print(f"ratio (1st / 2nd): {runs[0][0] / runs[1][0]:.1f}x from process start, "
          f"{runs[0][1] / runs[1][1]:.1f}x from run_search")


if __name__ == "__main__":
    main()
