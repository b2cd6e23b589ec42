"""PyTorch eager FP32 vs ONNX Runtime FP32 vs ONNX Runtime INT8 latency, side by side in one run.

    .venv/bin/python benchmarks/compress.py [BEST_PT] [--warmup 20] [--repeats 200] [--threads 0]

    .venv/bin/python benchmarks/compress.py BEST_PT --distill-compare [--prune-ratio 0.5] [--finetune-epochs 3]

Without BEST_PT it trains a digits CNN (2 blocks, widths 48/96, 5 epochs) first. Every runtime is
timed on the same real test inputs at batch 1 and 64, after a warm-up, interleaved in blocks so that
load changes hit all alike; the table shows medians (p50), p95, accuracy on the test split and
ratios. With a CUDA GPU it adds PyTorch eager on CUDA and the CUDA execution provider (FP32, FP16).

``--distill-compare`` instead prunes BEST_PT once per fine-tuning mode (plain, then distillation from
the unpruned model; same ratio, epochs and seed) and prints both pruned models' test accuracy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def train_digits(path: Path, epochs: int = 5) -> Path:
    """A digits best.pt trained here (the image task's data, model builder and training loop)."""
    import torch

    from automl.artifacts import make_checkpoint, save_checkpoint
    from automl.tasks import DataConfig, get_task
    from automl.train import evaluate, fit, train_config_from_params

    task = get_task("image")
    cfg = DataConfig(source="digits")
    bundle = task.load_data(cfg)
    params = {"depth": 2, "width": 48, "lr": 0.005, "batch_size": 64, "optimizer": "adamw", "batch_norm": True}
    torch.manual_seed(0)
    model = task.build_model(params, bundle.meta)
    fit(model, bundle.x_train, bundle.y_train, bundle.x_val, bundle.y_val,
        train_config_from_params(params, epochs=epochs), task.loss_fn(), task.metric_fn())
    _, acc = evaluate(model, bundle.x_test, bundle.y_test, task.loss_fn(), task.metric_fn())
    meta = {k: v for k, v in bundle.meta.items() if k != "preprocess"}
    ckpt = make_checkpoint(task="image", arch=task.arch_from_params(params, bundle.meta), model=model,
                           preprocess={**bundle.meta["preprocess"], **meta}, data=cfg.to_dict(),
                           metrics={"metric": "accuracy", "test_accuracy": acc}, params=params)
    return save_checkpoint(path, ckpt)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("best_pt", nargs="?", help="best.pt to measure (default: train a digits CNN first)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed calls before timing (per runtime, batch)")
    ap.add_argument("--repeats", type=int, default=200, help="timed calls per runtime and batch size")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads of both runtimes (0 = defaults)")
    ap.add_argument("--calib-samples", type=int, default=256, help="training samples for static INT8")
    ap.add_argument("--distill-compare", action="store_true", help="plain vs distilled fine-tuning after pruning")
    ap.add_argument("--prune-ratio", type=float, default=0.5)
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--distill-temperature", type=float, default=4.0)
    ap.add_argument("--distill-weight", type=float, default=0.5)
    args = ap.parse_args(argv)
    if args.distill_compare:
        distill_compare(args)
        return

    import torch

    from automl.runtime.export import export_checked
    from automl.runtime.onnx_meta import metadata_from_checkpoint
    from automl.runtime.ort import gpu_present as _gpu_present
    from automl.runtime.ort import make_session as session
    from compress import bench
    from compress.pipeline import load_inputs
    from compress.quantize import (
        calibration_reader,
        convert_fp16,
        int8_method,
        mac_shares,
        quantize_dynamic_int8,
        quantize_static_int8,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="automl-bench-"))
    t0 = time.perf_counter()
    best = Path(args.best_pt) if args.best_pt else train_digits(tmp / "best.pt")
    trained = "" if args.best_pt else f" (trained here in {time.perf_counter() - t0:.0f} s)"
    ckpt, task, model, bundle = load_inputs(best)
    example = task.example_input(bundle.meta, 1)
    fp32 = Path(export_checked(model, example, tmp / "model.onnx", metadata_from_checkpoint(ckpt), bundle.x_test)
                ["path"])
    method, why = int8_method(mac_shares(model, example))
    int8 = tmp / "model.int8.onnx"
    if method == "static":
        quantize_static_int8(fp32, int8, calibration_reader(bundle.x_train, args.calib_samples),
                             metadata_from_checkpoint(ckpt, "int8"))
    else:
        quantize_dynamic_int8(fp32, int8, metadata_from_checkpoint(ckpt, "int8-dynamic"))
    cfg = bench.BenchConfig(warmup=args.warmup, repeats=args.repeats, threads=args.threads)
    cpu = ["CPUExecutionProvider"]
    sessions: dict[str, Any] = {"ORT FP32 (CPU)": session(fp32, cpu, args.threads),
                                "ORT INT8 (CPU)": session(int8, cpu, args.threads)}
    runners = {"PyTorch eager FP32 (CPU)": bench.torch_runner(model, bundle.x_test, "cpu", args.threads)}
    if _gpu_present():
        fp16 = convert_fp16(fp32, tmp / "model.fp16.onnx", metadata_from_checkpoint(ckpt, "fp16"))
        gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        sessions["ORT FP32 (CUDA EP)"] = session(fp32, gpu)
        sessions["ORT FP16 (CUDA EP)"] = session(fp16, gpu)
        sessions["ORT INT8 (CUDA EP)"] = session(int8, gpu)
    runners.update({name: bench.ort_runner(s, bundle.x_test) for name, s in sessions.items()})
    lat = bench.latencies(runners, cfg)
    if _gpu_present():  # PyTorch on CUDA is timed on its own: its runner moves the model to the GPU
        lat["PyTorch eager FP32 (CUDA)"] = bench.latencies(
            {"t": bench.torch_runner(model, bundle.x_test, "cuda")}, cfg)["t"]
        model.cpu()
    accs = {"PyTorch eager FP32 (CPU)": task.metric_fn()(model.eval()(bundle.x_test), bundle.y_test)}
    for name, s in sessions.items():
        accs[name] = bench.ort_metric(s, bundle.x_test, bundle.y_test, task.metric_fn())
    accs["PyTorch eager FP32 (CUDA)"] = accs["PyTorch eager FP32 (CPU)"]
    for name, s in sessions.items():
        if "CUDA" in name and s.get_providers()[0] != "CUDAExecutionProvider":
            lat.pop(name, None)

    hw = bench.hardware()
    print(f"hardware: {bench.hardware_line(hw)}")
    print(f"model: {best}{trained}; arch {ckpt['arch'].get('family')} widths {ckpt['arch'].get('widths')}; "
          f"INT8 {method} ({why}); sizes FP32 {fp32.stat().st_size / 1024:.0f} KiB, "
          f"INT8 {int8.stat().st_size / 1024:.0f} KiB")
    print(f"timing: warm-up until settled (at least {cfg.warmup} calls) + {cfg.repeats} timed calls per runtime "
          f"and batch size, interleaved in "
          f"blocks; threads {args.threads or 'default'}; real test inputs; times in ms (p50 = median)")
    ref = lat["PyTorch eager FP32 (CPU)"]
    ort32 = lat["ORT FP32 (CPU)"]
    head = (f"{'runtime':<26} {'acc':>6} {'b1 p50':>8} {'b1 p95':>8} {'b64 p50':>8} {'b64 p95':>8} "
            f"{'x eager b1':>10} {'x eager b64':>11} {'x ORT32 b64':>11}")
    print(head)
    print("-" * len(head))
    for name, row in lat.items():
        b1, b64 = row["b1"], row["b64"]
        print(f"{name:<26} {accs[name]:>6.4f} {b1['p50']:>8.3f} {b1['p95']:>8.3f} {b64['p50']:>8.3f} "
              f"{b64['p95']:>8.3f} {ref['b1']['p50'] / b1['p50']:>9.2f}x {ref['b64']['p50'] / b64['p50']:>10.2f}x "
              f"{ort32['b64']['p50'] / b64['p50']:>10.2f}x")
    unsettled = [f"{n} b{b}" for n, row in lat.items() for b in (1, 64) if row[f"b{b}"].get("settled") is False]
    if unsettled:  # compress/bench.py: the warm-up or the rounds did not settle; ratios from these mislead
        print(f"NOT SETTLED (ratios involving these are unreliable): {', '.join(unsettled)}")
    goal = ref["b64"]["p50"] / lat["ORT INT8 (CPU)"]["b64"]["p50"]
    print(f"INT8 (CPU) vs PyTorch eager at batch 64: {goal:.2f}x (goal >= 2x: {'met' if goal >= 2 else 'not met'})")


def distill_compare(args: argparse.Namespace) -> None:
    """Prune BEST_PT and fine-tune it plainly and by distillation (one ``run_compress`` each, no
    quantization), then print the pruned models' test accuracy side by side."""
    from compress import bench
    from compress.pipeline import CompressSettings, run_compress

    if not args.best_pt:
        raise SystemExit("--distill-compare needs BEST_PT")
    rows = {}
    for distill in (False, True):
        with tempfile.TemporaryDirectory(prefix="automl-kd-") as tmp:
            rep = run_compress(CompressSettings(
                checkpoint=args.best_pt, out=tmp, prune_ratio=args.prune_ratio, finetune_epochs=args.finetune_epochs,
                quantize="none", distill=distill, distill_temperature=args.distill_temperature,
                distill_weight=args.distill_weight, warmup=1, repeats=5, threads=args.threads, device="cpu",
            )).report
        rows["distilled" if distill else "plain"] = rep
    base = rows["plain"]
    metric = base["metric"]
    print(f"hardware: {bench.hardware_line(base['hardware'])}")
    print(f"model: {args.best_pt}; original test {metric} {base['baseline']['metric_value']:.4f}; prune ratio "
          f"{args.prune_ratio}, {args.finetune_epochs} fine-tuning epochs, seed 0; distillation T "
          f"{args.distill_temperature}, weight {args.distill_weight}")
    print(f"{'fine-tuning':<12} {'test ' + metric:>14} {'val ' + metric:>13} {'seconds':>8}")
    for name, rep in rows.items():
        pruned = next(v for v in rep["variants"] if v["name"] == "pruned")
        ft = rep["prune"]["finetune"]
        print(f"{name:<12} {pruned['metric_value']:>14.4f} {ft['val_metric']:>13.4f} {ft['seconds']:>8.1f}")
    gain = 100 * (next(v for v in rows["distilled"]["variants"] if v["name"] == "pruned")["metric_value"]
                  - next(v for v in base["variants"] if v["name"] == "pruned")["metric_value"])
    print(f"distillation - plain: {gain:+.2f} points (on by default only at >= +1 point)")


if __name__ == "__main__":
    main()
