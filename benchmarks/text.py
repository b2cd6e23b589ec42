"""The text search on Movie Review polarity (Pang & Lee 2005, 10,662 sentences) against TF-IDF +
logistic regression fitted by the search on the same split (its leaderboard), with a fixed budget.

Builds a text,label TSV from ``../shared/data/rt-polarity`` (latin-1, one sentence a line), runs
``automl search --task text --timeout BUDGET`` in a subprocess and prints: trials run and completed
per family, the best model's validation and test accuracy, the reference's, and issue 13's checks
(at least one TextCNN and one recurrent trial complete, at least 8 trials, test accuracy >= 0.76).

    python benchmarks/text.py --budget 600
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MR = ROOT.parent / "shared" / "data" / "rt-polarity"


def make_tsv(src: Path, dest: Path) -> Path:
    with dest.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["text", "label"])
        for label in ("pos", "neg"):
            for line in (src / f"rt-polarity.{label}").read_text(encoding="latin-1").splitlines():
                if line.strip():
                    w.writerow([line.strip().replace("\t", " "), label])
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(MR), help="folder with rt-polarity.pos / rt-polarity.neg")
    ap.add_argument("--budget", type=float, default=600.0, help="--timeout of the search, seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", default="", help="more search options")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-text-") as tmp:
        tsv = make_tsv(Path(args.data), Path(tmp) / "mr.tsv")
        cmd = [sys.executable, str(ROOT / "cli.py"), "search", "--task", "text", "--data", str(tsv), "--timeout",
               str(args.budget), "--trials", "100000", "--seed", str(args.seed), "--out-dir", str(Path(tmp) / "out"),
               "--json", *args.extra.split()]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"search failed: {proc.stderr.strip().splitlines()[-1:]}")
    res = json.loads(proc.stdout)
    rows = res["leaderboard"]["rows"]
    ref = next((r for r in rows if r["kind"] == "reference"), None)
    fams = {r["name"]: r for r in rows if r["kind"] == "family"}
    print(f"hardware: {os.cpu_count()} cores, CPU; --timeout {args.budget:g} s; wall {wall:.0f} s")
    print("| model | trials | complete | best val acc | test acc |")
    print("|---|---|---|---|---|")
    for r in rows:
        if r["kind"] == "reference":
            print(f"| reference: {r['model']} | - | - | {r['val']:.4f} | {r['test']:.4f} |")
        else:
            val = "-" if r["val"] is None else f"{r['val']:.4f}"
            test = "-" if r["test"] is None else f"{r['test']:.4f}"
            print(f"| {r['name']} | {r['trials']} | {r['complete']} | {val} | {test} |")
    cnn_ok = fams.get("textcnn", {}).get("complete", 0) >= 1
    rnn_ok = any(fams.get(n, {}).get("complete", 0) >= 1 for n in ("gru", "lstm", "rnn"))
    print(f"search: {res['n_trials']} trials ({res['n_complete']} complete, {res['n_pruned']} pruned), best "
          f"{res['params'].get('model', '?')}: val {res['best_value']:.4f}, test {res['test_accuracy']:.4f}"
          + (f"; reference test {ref['test']:.4f}" if ref else ""))
    print(f"checks: TextCNN complete {cnn_ok}, recurrent complete {rnn_ok}, >= 8 trials {res['n_trials'] >= 8}, "
          f"test >= 0.76 {res['test_accuracy'] >= 0.76}")


if __name__ == "__main__":
    main()
