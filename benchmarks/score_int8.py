"""Compression-aware scoring (issue 15, done-when 5), measured: for the same number of trials, is the
network ``--score int8`` picks better after INT8 quantization than plain search's best once
``automl compress`` has quantized it?

    python benchmarks/score_int8.py                                  # digits, 6 trials, 2 epochs
    python benchmarks/score_int8.py --data /path/to/cifar-subset --trials 10 --epochs 3 --seeds 1

(A CIFAR-10 subset: a folder ``train/<class>/*`` and ``test/<class>/*`` of links into the images of
``../shared/data/cifar10-jpg.tar.gz``; the README's run used 200 training and 100 test images a class.)

For each seed: (a) ``automl search`` (plain), then ``automl compress best.pt --quantize int8
--prune-ratio 0``; (b) ``automl search --score int8`` (same trials, epochs, sampler and seed), then the
same compress. The table gives, side by side, the pick's validation accuracy as the search scored it
(FP32 for a, INT8 for b), its FP32 and INT8 test accuracy from compress's report, and the seconds
each search took. Everything runs through the CLI, one process at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
AUTOML = [sys.executable, "-c", "import cli; cli.main()"]


def run(cmd: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([*AUTOML, *cmd, "--json"], capture_output=True, text=True, cwd=REPO, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"failed: automl {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def one(out: Path, args: argparse.Namespace, seed: int, score: str) -> dict[str, Any]:
    study = f"s{seed}-{score}"
    cmd = ["search", "--task", "image", "--trials", str(args.trials), "--epochs", str(args.epochs),
           "--seed", str(seed), "--out-dir", str(out), "--study", study, "--device", "cpu", "--score", score]
    if args.data:
        cmd += ["--data", args.data]
    if args.space:
        cmd += ["--space", args.space]
    t0 = time.perf_counter()
    res = run(cmd)
    seconds = time.perf_counter() - t0
    comp_dir = out / study / "compressed"
    run(["compress", res["best_pt"], "--quantize", "int8", "--prune-ratio", "0", "--out-dir", str(comp_dir),
         "--threads", "1"])
    report = json.loads((comp_dir / "compress_report.json").read_text())
    by_name = {v["name"]: v for v in report["variants"]}
    q = by_name.get("int8") or {}
    return {"seed": seed, "score": score, "best_trial": res["best_trial"], "val_scored": res["best_value"],
            "test_fp32": by_name["fp32"]["metric_value"], "test_int8": q.get("metric_value"),
            "int8_kind": q.get("kind"), "calibration": q.get("calibration"), "search_s": round(seconds, 1),
            "params": res["params"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="image data (default: digits)")
    ap.add_argument("--space", default=None)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="score_int8-"))
    rows = [one(out, args, seed, score) for seed in args.seeds for score in ("none", "int8")]
    print(f"# {args.data or 'digits'}, {args.trials} trials x {args.epochs} epochs, {platform.processor() or ''} "
          f"{os.cpu_count()} cores")
    print(f"{'seed':>4} {'search':>12} {'trial':>5} {'val (scored)':>12} {'test fp32':>9} {'test int8':>9} "
          f"{'int8 kind':>12} {'seconds':>8}")
    for r in rows:
        label = "plain" if r["score"] == "none" else "--score int8"
        print(f"{r['seed']:>4} {label:>12} {r['best_trial']:>5} {r['val_scored']:>12.4f} {r['test_fp32']:>9.4f} "
              f"{(r['test_int8'] if r['test_int8'] is not None else float('nan')):>9.4f} "
              f"{str(r['int8_kind']):>12} {r['search_s']:>8.1f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
