"""A whole small search: ``automl search`` against an optuna-examples-style script, side by side.

The script is what the Optuna examples (``pytorch_simple.py``) do: a ``TensorDataset`` and a
shuffling ``DataLoader``, a plain epoch loop (zero_grad, backward, step, OneCycleLR), the
validation accuracy reported after every epoch, ``TPESampler(seed)``, ``MedianPruner()``, an
in-memory study, the best trial's model kept and scored on the test split at the end. For a fair
pairing it draws from the same search space file with automl's sampler (``automl.search.space.sample``),
builds the same networks (the task's builder), applies the same batched augmentation, and trains on
the same train / validation / test split (the task's loader). automl runs its CLI
(``search --trials N --epochs E --sampler tpe``, its default trial pruner). Both are fresh processes
(imports count), run one after the other in each round, the order alternating between rounds, or
with ``--together`` both at the same time (on a machine others load unevenly, the fairer pairing).

Reported per data set: each side's wall time, the time automl took to reach the script's final best
validation score (from process start to the end of the first automl trial that matched it), the
ratio of that to the script's wall time, and both final test scores. Medians over rounds.

    python benchmarks/whole_search.py --rounds 3                      # digits and lightgbm-binary
    python benchmarks/whole_search.py --sets digits --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the shared tables (../shared/data/tabular beside the checkout); AUTOML_TABULAR_DIR overrides
DATA = Path(os.environ.get("AUTOML_TABULAR_DIR") or ROOT.parent / "shared" / "data" / "tabular")
# One network family for the tabular set, so the script needs no tree ensembles: same space both sides.
TABULAR_SPACE = """\
description: whole_search.py's tabular space (the MLP family of search_spaces/tabular.yaml)
params:
  model: {type: fixed, value: mlp}
  depth: {type: int, low: 1, high: 4}
  width: {type: categorical, choices: [64, 128, 256, 512]}
  batch_norm: {type: categorical, choices: [true, false]}
  dropout: {type: float, low: 0.0, high: 0.5, step: 0.05}
  activation: {type: categorical, choices: [relu, gelu, silu]}
  optimizer: {type: fixed, value: adamw}
  lr: {type: float, low: 3.0e-4, high: 1.0e-2, log: true}
  batch_size: {type: categorical, choices: [64, 128, 256, 512]}
  weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
  schedule: {type: fixed, value: onecycle}
"""
SETS = {
    "digits": {"task": "image", "data": "digits", "space": None},
    "lightgbm-binary": {"task": "tabular", "data": str(DATA / "lightgbm-binary-train.csv.gz"),
                        "test": str(DATA / "lightgbm-binary-test.csv.gz"), "target": "target", "space": "tabular"},
}


# --- the optuna-examples-style script (run as a child: ``--child``) ---

def run_script(args: argparse.Namespace) -> None:
    """One Optuna study the way the examples write it; prints a line per finished trial and a result."""
    import optuna
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from automl.search.space import resolve_space, sample
    from automl.tasks import DataConfig, get_task

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = get_task(args.task)
    cfg = DataConfig(source=args.data, seed=args.seed, target=args.target, test_source=args.test)
    task.prepare(cfg)
    b = task.load_data(cfg)
    space = resolve_space(args.space, args.task)
    metric_fn, augment = task.metric_fn(), task.augment_fn(b.meta)
    train_set = TensorDataset(b.x_train, b.y_train)
    kept: dict[str, object] = {}

    def objective(trial: optuna.Trial) -> float:
        params = sample(trial, space)
        torch.manual_seed(args.seed + trial.number)
        model = task.build_model(params, b.meta)
        if params.get("optimizer", "adamw") == "adamw":
            opt = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
        else:
            opt = torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=params["momentum"], nesterov=True,
                                  weight_decay=params["weight_decay"])
        loader = DataLoader(train_set, batch_size=int(params["batch_size"]), shuffle=True)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=params["lr"], total_steps=args.epochs * len(loader))
        loss_fn = task.loss_fn(float(params.get("label_smoothing", 0.0)))
        gen = torch.Generator().manual_seed(args.seed + trial.number)
        acc = 0.0
        for epoch in range(args.epochs):
            model.train()
            for xb, yb in loader:
                if params.get("augment") and augment is not None:
                    xb = augment(xb, 0.5, gen)
                opt.zero_grad()
                loss_fn(model(xb), yb).backward()
                opt.step()
                sched.step()
            model.eval()
            with torch.no_grad():
                acc = float(metric_fn(model(b.x_val), b.y_val))
            trial.report(acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        if acc > kept.get("val", -1.0):  # type: ignore[operator]
            kept.update(val=acc, model=model)
        return acc

    def say(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        print(f"TRIAL {trial.number} {trial.state.name.lower()} {trial.value}", flush=True)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed),
                                pruner=optuna.pruners.MedianPruner())
    study.optimize(objective, n_trials=args.trials, callbacks=[say])
    model = kept["model"]
    model.eval()  # type: ignore[attr-defined]
    with torch.no_grad():
        test = float(metric_fn(model(b.x_test), b.y_test))  # type: ignore[operator]
    print("RESULT " + json.dumps({"best_val": study.best_value, "test": test}), flush=True)


# --- the parent: both sides as fresh processes, timed from here ---

TRIAL_END = re.compile(r"trial (\d+) (complete|pruned|failed)(?:, val \w+ ([0-9.]+))?")


def _timed_lines(cmd: list[str], env: dict[str, str], stream: str) -> tuple[list[tuple[float, str]], str, float]:
    """Run ``cmd``; every line of ``stream`` (stdout or stderr) with its seconds since the start, the
    other stream's text, and the wall seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timed_pipe, other_pipe = (proc.stdout, proc.stderr) if stream == "stdout" else (proc.stderr, proc.stdout)
    other: list[str] = []
    reader = threading.Thread(target=lambda: other.append(other_pipe.read()))  # type: ignore[union-attr]
    reader.start()
    lines = [(time.perf_counter() - t0, line) for line in timed_pipe]  # type: ignore[union-attr]
    proc.wait()
    wall = time.perf_counter() - t0
    reader.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}: {''.join(other)[-800:]}"
                           f"{''.join(line for _, line in lines)[-800:]}")
    return lines, "".join(other), wall


def run_automl(s: dict, space: str | None, args: argparse.Namespace, out: Path) -> dict:
    cmd = [sys.executable, str(ROOT / "cli.py"), "search", "--task", s["task"], "--data", s["data"],
           "--trials", str(args.trials), "--epochs", str(args.epochs), "--sampler", "tpe", "--seed", str(args.seed),
           "--out", str(out), "--json"]
    cmd += ["--target", s["target"]] if s.get("target") else []
    cmd += ["--test-data", s["test"]] if s.get("test") else []
    cmd += ["--space", space] if space else []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    lines, stdout, wall = _timed_lines(cmd, env, "stderr")
    ends = [(t, float(m.group(3))) for t, line in lines if (m := TRIAL_END.search(line)) and m.group(2) == "complete"]
    res = json.loads(stdout)
    return {"wall": wall, "ends": ends, "best_val": res.get(f"val_{res['metric']}", res.get("best_value")),
            "test": res.get(f"test_{res['metric']}")}


def run_script_child(s: dict, space: str | None, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--task", s["task"], "--data", s["data"],
           "--trials", str(args.trials), "--epochs", str(args.epochs), "--seed", str(args.seed)]
    cmd += ["--target", s["target"]] if s.get("target") else []
    cmd += ["--test", s["test"]] if s.get("test") else []
    cmd += ["--space", space] if space else []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    lines, _, wall = _timed_lines(cmd, env, "stdout")
    result = next(json.loads(line[7:]) for _, line in lines if line.startswith("RESULT "))
    return {"wall": wall, **result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--task"), ap.add_argument("--data"), ap.add_argument("--target")
    ap.add_argument("--test"), ap.add_argument("--space")
    ap.add_argument("--sets", default="digits,lightgbm-binary", help=f"comma-separated: {', '.join(SETS)}")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--together", action="store_true",
                    help="run both sides at the same time (each then has about half the machine)")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS for both sides (on a crowded machine 1 avoids idle-spinning thread pools)")
    args = ap.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.child:
        run_script(args)
        return
    with tempfile.TemporaryDirectory(prefix="automl-whole-") as tmp:
        tab_space = Path(tmp) / "tabular-mlp.yaml"
        tab_space.write_text(TABULAR_SPACE)
        for name in args.sets.split(","):
            s = SETS[name]
            space = str(tab_space) if s["space"] == "tabular" else None
            rows: list[dict] = []
            for r in range(args.rounds):
                order = ("script", "automl") if r % 2 == 0 else ("automl", "script")
                got: dict[str, dict] = {}

                def side_run(side: str, r: int = r, s: dict = s, space: str | None = space, name: str = name,
                             got: dict[str, dict] = got) -> None:
                    got[side] = (run_script_child(s, space, args) if side == "script"
                                 else run_automl(s, space, args, Path(tmp) / f"{name}-{r}"))

                if args.together:  # both at once: a load that comes and goes hits both alike
                    threads = [threading.Thread(target=side_run, args=(side,)) for side in order]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    if len(got) < 2:
                        raise RuntimeError("a side failed (see its error above)")
                else:
                    for side in order:
                        side_run(side)
                a, sc = got["automl"], got["script"]
                reach = next((t for t, v in a["ends"] if v >= sc["best_val"] - 1e-9), None)
                row = {"script_wall": sc["wall"], "automl_wall": a["wall"], "reach": reach,
                       "script_val": sc["best_val"], "automl_val": a["best_val"],
                       "script_test": sc["test"], "automl_test": a["test"]}
                rows.append(row)
                print(f"{name} round {r + 1}: script {sc['wall']:.1f} s (val {sc['best_val']:.4f}, test "
                      f"{sc['test']:.4f}); automl {a['wall']:.1f} s (val {a['best_val']:.4f}, test {a['test']:.4f}); "
                      f"automl reached the script's best val at "
                      f"{'never' if reach is None else f'{reach:.1f} s'}", flush=True)
            report(name, rows, args)


def report(name: str, rows: list[dict], args: argparse.Namespace) -> None:
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "reach"}
    reached = [r["reach"] / r["script_wall"] for r in rows if r["reach"] is not None]
    print(f"\n{name}: {args.trials} trials x {args.epochs} epochs, {len(rows)} rounds, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"{'both sides at once' if args.together else 'one side after the other'}; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"  wall: script {med['script_wall']:.1f} s, automl {med['automl_wall']:.1f} s "
          f"(automl / script {med['automl_wall'] / med['script_wall']:.2f})")
    print(f"  automl reached the script's final best val in {len(reached)}/{len(rows)} rounds; "
          f"time to reach / script wall: median {statistics.median(reached):.2f}" if reached else
          "  automl never reached the script's final best val")
    print(f"  best val: script {med['script_val']:.4f}, automl {med['automl_val']:.4f}; "
          f"test: script {med['script_test']:.4f}, automl {med['automl_test']:.4f} (medians)")


if __name__ == "__main__":
    main()
