"""``automl compress BEST_PT --search``: an Optuna multi-objective study over compression recipes.

Each trial is one candidate recipe: prune ratio (0 = none), channel importance, fine-tuning epochs,
distillation on/off, quantization mode (none | int8 | fp16 on a GPU) and the static-INT8 calibration
method (each registered stage's ``params``). A candidate is made by compress's own stages
(``compress.stages``, run in order over one context in ``chain`` mode: the last variant is the
candidate) and measured for real: its validation metric with ONNX Runtime, its latency
p50 at batch 1 and 64, its file size. The objectives are the validation metric and the batch-1
latency (per-request latency; also what ``--max-latency-ms`` bounds). The test split is used only
for the final table of the Pareto front.

The study lives in ``<out>/automl.db`` (SQLite, as ``automl search`` stores its studies), so the same
command again resumes it and adds trials; ``automl trials --out-dir <out> --pareto`` lists its front.
Files: ``<out>/trials/trial-N/`` per candidate, ``<out>/front/trial-N.onnx`` per front member,
``<out>/compress_search.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.exceptions import ConfigError
from compress.bench import BenchConfig
from compress.context import CompressContext, CompressObserver, CompressSettings
from compress.verdict import Variant, metric_drop

if TYPE_CHECKING:
    import optuna
    import torch

REPORT_NAME = "compress_search.json"
MAX_TRIALS = 1000
#: the settings a trial's recipe records (the built-in stages' choices)
RECIPE_SETTINGS = ("prune_ratio", "importance", "finetune_epochs", "distill", "quantize", "calibration")
SETTING_NAMES = frozenset(f.name for f in dataclasses.fields(CompressSettings))


def check_search_args(trials: int, max_latency_ms: float | None) -> None:
    """ConfigError naming the argument and its allowed range."""
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_TRIALS:
        raise ConfigError(f"--trials must be an integer in [1, {MAX_TRIALS}] for --search, got {trials!r}")
    if max_latency_ms is not None and not max_latency_ms > 0:
        raise ConfigError(f"--max-latency-ms must be a number of milliseconds > 0, got {max_latency_ms!r}")


def search_out_dir(settings: CompressSettings) -> Path:
    """``--out-dir``, or ``compress_search/`` beside the checkpoint (apart from plain compress's files)."""
    return Path(settings.out) if settings.out else Path(settings.checkpoint).parent / "compress_search"


def _candidate_settings(base: CompressSettings, params: dict[str, Any]) -> CompressSettings:
    ratio = float(params.get("prune_ratio", 0.0))
    epochs = int(params.get("finetune_epochs", 0)) if ratio else 0
    return dataclasses.replace(  # settings that do not apply are recorded as off (honest recipes)
        base, prune_ratio=ratio, importance=params.get("importance", "l1"), finetune_epochs=epochs,
        distill=bool(params.get("distill", False)) and epochs > 0, quantize=params.get("quantize", "none"),
        calibration=params.get("calibration", "minmax"),
    )


def candidate_context(base: CompressContext, settings: CompressSettings, params: dict[str, Any],
                      folder: Path) -> CompressContext:
    """A fresh context for one recipe: ``base``'s checkpoint, model and data, this recipe's settings
    and sampled values, files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return CompressContext(settings=settings, obs=base.obs, ckpt=base.ckpt, task=base.task, model=base.model,
                           bundle=base.bundle, example=base.example, device=base.device, work=folder, out=folder,
                           ref_val=base.ref_val, chain=True, echo_notes=False, metric_fn=base.metric_fn,
                           params=dict(params))


def make_candidate(ctx: CompressContext) -> Variant:
    """One recipe through compress's registered stages: the last variant made is the candidate."""
    from compress.stages import run_stages

    return run_stages(ctx)[-1]


def _measure(v: Variant, x: torch.Tensor, y: torch.Tensor, metric_fn: Callable[..., float],
             cfg: BenchConfig) -> dict[str, Any]:
    from automl.runtime.ort import make_session
    from compress import bench

    sess = make_session(v.path, ["CPUExecutionProvider"], cfg.threads)
    lat = bench.ort_latency(sess, x, cfg)
    return {"val_metric": bench.ort_metric(sess, x, y, metric_fn), "latency_ms": lat["b1"]["p50"],
            "latency_b64_ms": lat["b64"]["p50"], "latency": lat, "onnx_bytes": bench.file_size(v.path)}


def study_name(settings: CompressSettings) -> str:
    """One study per checkpoint file (its resolved path)."""
    path = Path(settings.checkpoint).resolve()
    return f"compress-{path.parent.name}-{path.stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def run_compress_search(settings: CompressSettings, trials: int, max_latency_ms: float | None = None,
                        observer: CompressObserver | None = None) -> dict[str, Any]:
    """Run (or resume) the study, then write the front's files and ``compress_search.json``.

    Returns the report; ``report["budget_unmet"]`` is a message when nothing meets ``max_latency_ms``
    (the caller prints the table, then fails with it)."""
    from compress.checks import check_checkpoint_file

    check_checkpoint_file(settings.checkpoint)  # before the seconds of importing PyTorch and Optuna
    import optuna

    from automl.artifacts import atomic_write_json
    from automl.device import resolve_device
    from automl.models import family_of
    from automl.search.moo import pareto_front
    from automl.study.storage import open_storage, resolve_storage, silence_optuna
    from automl.train import evaluate
    from compress import bench
    from compress.pipeline import load_inputs
    from compress.stages import search_space

    check_search_args(trials, max_latency_ms)
    obs = observer or CompressObserver()
    obs.on_stage("loading checkpoint and data")
    ckpt, task, model, bundle = load_inputs(settings.checkpoint)
    family = family_of(ckpt["arch"])
    if family.prune_unsupported and family.quantize_unsupported:
        raise ConfigError(f"{settings.checkpoint}: nothing to search for this {ckpt['arch'].get('family')} model: "
                          f"{family.prune_unsupported}, and {family.quantize_unsupported} "
                          "(plain 'automl compress' exports and measures it)")
    notes: list[str] = []
    if family.prune_unsupported:
        notes.append(f"quantization-only search: {family.prune_unsupported}")
        obs.on_note(notes[-1])
    metric_fn, loss_fn = task.metric_fn(), task.loss_fn(0.0)
    _, ref_val = evaluate(model, bundle.x_val, bundle.y_val, loss_fn, metric_fn)
    _, ref_test = evaluate(model, bundle.x_test, bundle.y_test, loss_fn, metric_fn)
    out = search_out_dir(settings).resolve()
    base = CompressContext(settings=settings, obs=obs, ckpt=ckpt, task=task, model=model, bundle=bundle,
                           example=task.example_input(bundle.meta, 1), device=str(resolve_device(settings.device)),
                           work=out, out=out, ref_val=ref_val, chain=True, echo_notes=False, metric_fn=metric_fn)
    space = search_space(base)
    cfg = settings.bench()
    out.mkdir(parents=True, exist_ok=True)
    silence_optuna()
    url = resolve_storage(None, out)
    name = study_name(settings)
    storage = open_storage(url)
    directions = [task.direction, "minimize"]
    existing = [s for s in optuna.get_all_study_summaries(storage) if s.study_name == name]
    done = existing[0].n_trials if existing else 0
    study = optuna.create_study(study_name=name, storage=storage, directions=directions, load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=settings.seed + done))
    study.set_user_attr("automl", {"task": task.name, "metric": task.metric, "objectives": [task.metric, "latency"],
                                   "kind": "compress-search", "checkpoint": str(Path(settings.checkpoint).resolve()),
                                   "space": {k: list(v) for k, v in space.items()}})

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        params = {k: trial.suggest_categorical(k, list(v)) if len(v) > 1 else v[0] for k, v in space.items()}
        cand = _candidate_settings(settings, params)
        obs.on_stage(f"trial {trial.number}: {_label(params)}")
        ctx = candidate_context(base, cand, params, out / "trials" / f"trial-{trial.number}")
        variant = make_candidate(ctx)
        obs.on_stage(f"trial {trial.number}: measuring")
        m = _measure(variant, bundle.x_val, bundle.y_val, metric_fn, cfg)
        trial.set_user_attr("recipe", _recipe(cand, params))
        for k in ("val_metric", "latency_ms", "latency_b64_ms", "onnx_bytes"):
            trial.set_user_attr(k, m[k])
        trial.set_user_attr("latency", m["latency"])
        trial.set_user_attr("variant", variant.kind)
        trial.set_user_attr("path", variant.path)
        trial.set_user_attr("kept_fp32", list(variant.kept_fp32))
        if ctx.notes:
            trial.set_user_attr("notes", ctx.notes)
        return m["val_metric"], m["latency_ms"]

    study.optimize(objective, n_trials=trials, catch=())
    obs.on_stage("measuring the Pareto front on the test split")
    from automl.runtime.ort import make_session

    front_dir = out / "front"
    if front_dir.exists():
        shutil.rmtree(front_dir)
    front_dir.mkdir()
    rows = []
    for t in pareto_front(study):
        src = Path(t.user_attrs["path"])
        if not src.is_file():
            notes.append(f"trial {t.number}: its file {src} is gone; left out of the front")
            continue
        dst = front_dir / f"trial-{t.number}{''.join(src.suffixes)}"
        shutil.copyfile(src, dst)
        sess = make_session(dst, ["CPUExecutionProvider"], cfg.threads)
        test = bench.ort_metric(sess, bundle.x_test, bundle.y_test, metric_fn)
        rows.append({"trial": t.number, "recipe": t.user_attrs.get("recipe"), "variant": t.user_attrs.get("variant"),
                     "path": str(dst), f"val_{task.metric}": t.values[0], f"test_{task.metric}": test,
                     "val_drop": round(metric_drop(ref_val, t.values[0], task.direction, task.metric), 4),
                     "latency_b1_ms": t.user_attrs["latency_ms"], "latency_b64_ms": t.user_attrs["latency_b64_ms"],
                     "size_bytes": t.user_attrs["onnx_bytes"], "kept_fp32": t.user_attrs.get("kept_fp32", []),
                     "recommended": False})
    best, why, unmet = recommend(rows, task.direction, task.metric, max_latency_ms, settings.max_drop)
    if best is not None:
        best["recommended"] = True
    report = {
        "checkpoint": str(Path(settings.checkpoint).resolve()), "out": str(out), "task": task.name,
        "metric": task.metric, "direction": task.direction, "storage": url, "study": name,
        "n_trials": len(study.trials), "new_trials": trials, "space": {k: list(v) for k, v in space.items()},
        "objectives": [f"val_{task.metric}", "latency_b1_ms"], "max_latency_ms": max_latency_ms,
        "max_drop": settings.max_drop, "baseline": {f"val_{task.metric}": ref_val, f"test_{task.metric}": ref_test},
        "hardware": bench.hardware(), "front": rows,
        "recommended": best["path"] if best else None, "recommended_trial": best["trial"] if best else None,
        "recommendation": why, "budget_unmet": unmet, "notes": notes,
    }
    atomic_write_json(out / REPORT_NAME, report)
    report["report_path"] = str(out / REPORT_NAME)
    return report


def recommend(rows: list[dict[str, Any]], direction: str, metric: str, max_latency_ms: float | None,
              max_drop: float) -> tuple[dict[str, Any] | None, str, str | None]:
    """(the recommended front row, why, a message when nothing meets the budget). With a budget: the
    most accurate (validation) member within it; without: the fastest (batch 1) within ``max_drop``
    validation points, else the most accurate."""
    if not rows:
        return None, "no front member", None
    sign = -1.0 if direction == "maximize" else 1.0
    val = f"val_{metric}"
    if max_latency_ms is not None:
        ok = [r for r in rows if r["latency_b1_ms"] <= max_latency_ms]
        if not ok:
            fast = min(rows, key=lambda r: r["latency_b1_ms"])
            return None, "nothing meets the budget", (
                f"no variant meets --max-latency-ms {max_latency_ms:g}: the fastest found is trial {fast['trial']} "
                f"({fast['variant']}, {fast['path']}) at {fast['latency_b1_ms']:.4g} ms (batch 1)")
        best = min(ok, key=lambda r: (sign * r[val], r["latency_b1_ms"]))
        return best, f"most accurate on validation within {max_latency_ms:g} ms (batch 1)", None
    ok = [r for r in rows if r["val_drop"] <= max_drop]
    if ok:
        best = min(ok, key=lambda r: (r["latency_b1_ms"], sign * r[val]))
        return best, f"fastest (batch 1) within --max-drop {max_drop:g} validation points", None
    best = min(rows, key=lambda r: (sign * r[val], r["latency_b1_ms"]))
    return best, f"no member within --max-drop {max_drop:g}: the most accurate", None


def _recipe(cand: CompressSettings, params: dict[str, Any]) -> dict[str, Any]:
    """What a trial did: the searched settings as applied (off where they did not apply), then the
    values of any other stage's own choices."""
    applied = {k: v for k, v in dataclasses.asdict(cand).items() if k in RECIPE_SETTINGS}
    return {**applied, **{k: v for k, v in params.items() if k not in applied and k not in SETTING_NAMES}}


def _label(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())
