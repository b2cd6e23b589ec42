"""The GPU kit's measurements (run.sh installs the wheels, unpacks CIFAR-10 and calls this).

(a) search: ``automl search --task image --data CIFAR --space image-cifar --timeout BUDGET``; a
    watcher copies every best-so-far trial checkpoint as it appears, and each is scored on the test
    split afterwards: test accuracy against wall time, and the first time it reached --target.
(b) loop: epochs/s of automl's in-memory loop (``automl.train.fit``) against a DataLoader loop with
    the same model, data, batch size, optimizer, augmentation (per-sample crop + flip, done in the
    workers) and mixed precision, side by side, medians of --repeats after a warm-up.
(c) util: device utilisation sampled every 0.5 s during a search with 1 and with --jobs N trials at
    once (nvidia-smi, else torch.cuda.utilization; on --device cpu the CPU's busy share), and the
    trials finished in that time.

Everything runs on CPU too (``--device cpu`` with a tiny --budget and --limit): that is how the
kit is tested where there is no GPU. Figures go to stdout and to OUT/kit.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def log(msg: str) -> None:
    print(msg, flush=True)


def make_subset(src: Path, dest: Path, per_class: int, test_per_class: int) -> Path:
    """A folder of links: the first ``per_class`` train and ``test_per_class`` test images a class."""
    for part, k in (("train", per_class), ("test", test_per_class)):
        for cls in sorted(p for p in (src / part).iterdir() if p.is_dir()):
            d = dest / part / cls.name
            d.mkdir(parents=True, exist_ok=True)
            for f in sorted(cls.iterdir())[:k]:
                (d / f.name).symlink_to(f.resolve())
    return dest


def search_cmd(args: argparse.Namespace, out: Path, timeout: float, jobs: int = 1) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "search", "--task", "image", "--data", str(args.data),
            "--space", args.space, "--timeout", str(timeout), "--trials", "100000", "--epochs", str(args.epochs),
            "--device", args.device, "--out", str(out), "--jobs", str(jobs), "--json"]


def run_search_watched(cmd: list[str], out: Path, snap: Path) -> tuple[dict, list[tuple[float, Path]]]:
    """Run the search; copy each trial-*.pt checkpoint (saved while it is the best so far) when it
    appears, with the seconds since the start. Returns the --json result and the copies."""
    snap.mkdir(parents=True, exist_ok=True)
    seen: dict[str, tuple[float, Path]] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for f in out.rglob("trial-*.pt"):
                if f.name not in seen:
                    try:
                        shutil.copy2(f, snap / f.name)
                        seen[f.name] = (time.perf_counter() - t0, snap / f.name)
                    except OSError:  # deleted between listing and copying: a trial that was not the best
                        pass
            time.sleep(0.5)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    stdout, _ = proc.communicate()
    done.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"search failed (exit {proc.returncode}); command: {' '.join(cmd)}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - t0
    return result, sorted(seen.values())


def step_search(args: argparse.Namespace, out: Path) -> dict:
    import torch

    from automl.models import build_from_arch
    from automl.tasks import DataConfig, get_task
    from automl.train import evaluate

    log(f"\n(a) search: image-cifar on {args.data}, budget {args.budget:.0f} s, <= {args.epochs} epochs a trial")
    result, snaps = run_search_watched(search_cmd(args, out / "a", args.budget), out / "a", out / "a-snap")
    task = get_task("image")
    bundle = task.load_data(DataConfig(source=str(args.data), seed=0)).to(args.device)
    rows, best, first_hit = [], -1.0, None
    for t, path in snaps:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        model = build_from_arch(ck["arch"]).to(args.device)
        model.load_state_dict(ck["state_dict"])
        _, acc = evaluate(model, bundle.x_test, bundle.y_test, task.loss_fn(), task.metric_fn())
        best = max(best, acc)
        rows.append({"seconds": round(t, 1), "trial": ck["trial"], "val": ck["value"], "test": acc, "best_test": best})
        if first_hit is None and acc >= args.target:
            first_hit = t
    log(f"{'wall s':>8}{'trial':>7}{'val acc':>9}{'test acc':>10}{'best test':>11}")
    for r in rows:
        log(f"{r['seconds']:>8.1f}{r['trial']:>7}{r['val']:>9.4f}{r['test']:>10.4f}{r['best_test']:>11.4f}")
    hit = f"{first_hit:.0f} s" if first_hit is not None else "not reached"
    log(f"search: {result['n_trials']} trials in {result['wall_s']:.0f} s; best trial's test accuracy "
        f"{result['test_accuracy']:.4f}; first >= {args.target:.2f}: {hit}")
    return {"rows": rows, "first_target_s": first_hit, "result": result}


def utilisation_sampler(device: str) -> tuple[str, object]:
    """(what is sampled, a function returning one sample in percent)."""
    if device.startswith("cuda"):
        if shutil.which("nvidia-smi"):
            def smi() -> float:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout.split()
                return float(out[0]) if out else float("nan")
            return "GPU utilisation (nvidia-smi)", smi
        import torch

        return "GPU utilisation (torch.cuda.utilization)", lambda: float(torch.cuda.utilization())
    prev = [0.0, 0.0]

    def cpu() -> float:  # busy share of all cores since the last sample, from /proc/stat
        with open("/proc/stat") as fh:
            v = [float(x) for x in fh.readline().split()[1:]]
        idle, total = v[3] + v[4], sum(v)
        d_idle, d_total = idle - prev[0], total - prev[1]
        prev[:] = [idle, total]
        return 100.0 * (1 - d_idle / d_total) if d_total else float("nan")

    cpu()
    return "CPU busy share (/proc/stat; device cpu: no GPU figure)", cpu


def step_util(args: argparse.Namespace, out: Path) -> dict:
    what, sample = utilisation_sampler(args.device)
    log(f"\n(c) utilisation: {what}, {args.util_seconds:.0f} s of search with 1 and {args.jobs} trials at once")
    res = {}
    for jobs in sorted({1, args.jobs}):
        samples: list[float] = []
        cmd = search_cmd(args, out / f"c-{jobs}", args.util_seconds, jobs)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
        while proc.poll() is None:
            time.sleep(0.5)
            if time.perf_counter() - t0 > 5:  # skip start-up (imports, data)
                samples.append(sample())
        result = json.loads(proc.stdout.read().strip().splitlines()[-1]) if proc.returncode == 0 else {}  # type: ignore[union-attr]
        clean = [s for s in samples if s == s] or [float("nan")]
        res[jobs] = {"median": statistics.median(clean), "mean": statistics.fmean(clean), "samples": len(clean),
                     "trials": result.get("n_trials"), "wall_s": time.perf_counter() - t0}
    log(f"{'trials at once':>15}{'median %':>10}{'mean %':>9}{'samples':>9}{'trials':>8}{'wall s':>8}")
    for jobs, r in res.items():
        log(f"{jobs:>15}{r['median']:>10.1f}{r['mean']:>9.1f}{r['samples']:>9}{r['trials']!s:>8}{r['wall_s']:>8.0f}")
    return {"what": what, "by_jobs": res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="CIFAR-10 folder (train/<class>, test/<class>)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--space", default="image-cifar")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds of search in (a)")
    ap.add_argument("--epochs", type=int, default=18, help="max epochs of a trial")
    ap.add_argument("--target", type=float, default=0.94, help="test accuracy whose first time (a) reports")
    ap.add_argument("--jobs", type=int, default=4, help="trials at once in the second run of (c)")
    ap.add_argument("--util-seconds", type=float, default=120.0)
    ap.add_argument("--loop-epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--widths", default="64,128,256", help="resnet stage widths in (b)")
    ap.add_argument("--limit", type=int, default=0, help="train images a class (0: all); tiny CPU runs")
    ap.add_argument("--test-limit", type=int, default=0, help="test images a class (0: all)")
    ap.add_argument("--steps", default="abc", help="which of a, b, c to run")
    ap.add_argument("--out", type=Path, default=Path("/tmp/automl-gpu-kit"))
    args = ap.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    if args.limit or args.test_limit:
        args.data = make_subset(args.data, args.out / "subset", args.limit or 10**9, args.test_limit or 10**9)
    import torch

    from benchmarks.gpu.loop import step_loop

    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    log(f"machine: {dev}; {os.cpu_count()} CPU cores; torch {torch.__version__}; device {args.device}")
    report: dict = {"device": dev, "args": {k: str(v) for k, v in vars(args).items()}}
    if "a" in args.steps:
        report["search"] = step_search(args, args.out)
    if "b" in args.steps:
        report["loop"] = step_loop(args)
    if "c" in args.steps:
        report["util"] = step_util(args, args.out)
    (args.out / "kit.json").write_text(json.dumps(report, indent=1, default=str))
    log(f"\nfigures: {args.out / 'kit.json'}")


if __name__ == "__main__":
    main()
