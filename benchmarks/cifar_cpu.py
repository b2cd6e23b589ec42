"""On CPU, same wall-clock budget: the plain CNN's best (a search over search_spaces/image.yaml)
against the resnet family trained with the image-cifar recipe, on a 10-class CIFAR-10 subset.

The subset: 500 training images a class (the first 500 of each class folder, 5,000 in all; the
search keeps 15% of them for validation) and the 10,000 official test images, as a folder of
symbolic links. Each side is one ``run_search`` with ``--timeout BUDGET``; Optuna starts no trial
after the budget but finishes a running one, so the wall time of each side is printed too. The
resnet side is the image-cifar space with every parameter fixed at the recipe (widths narrowed for a
CPU unless --widths says otherwise), one trial of --resnet-epochs epochs sized to fit the budget.
Test accuracy is on the 10,000 test images (with flip TTA for the resnet, as the recipe says).

    tar -xzf ../shared/data/cifar10-jpg.tar.gz -C /tmp/cifar10
    python benchmarks/cifar_cpu.py --cifar /tmp/cifar10 --budget 300
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import yaml  # noqa: E402

from automl.search.space import builtin_space_path  # noqa: E402
from automl.study import SearchSettings, run_search  # noqa: E402

RECIPE = {  # the ResNet-9 recipe inside image-cifar.yaml's region (batch 128: 5,000 images)
    "model": "resnet", "stem": 32, "depth1": 1, "depth2": 0, "depth3": 1, "activation": "relu", "tta": True,
    "optimizer": "nesterov", "lr": 0.2, "momentum": 0.9, "batch_size": 128, "weight_decay": 5e-4,
    "label_smoothing": 0.2, "augment": True, "augment_strength": 1.0, "flip": True, "pad_mode": "reflect",
    "schedule": "onecycle",
}


def make_subset(cifar: Path, dest: Path, per_class: int) -> Path:
    """``dest/train/<class>/`` with the first ``per_class`` images of each class, ``dest/test`` all."""
    for cls in sorted(p.name for p in (cifar / "train").iterdir() if p.is_dir()):
        d = dest / "train" / cls
        d.mkdir(parents=True)
        for f in sorted((cifar / "train" / cls).iterdir())[:per_class]:
            (d / f.name).symlink_to(f.resolve())
        (dest / "test").mkdir(exist_ok=True)
        (dest / "test" / cls).symlink_to((cifar / "test" / cls).resolve(), target_is_directory=True)
    return dest


def recipe_space(widths: list[int], out: Path) -> Path:
    """image-cifar.yaml with every parameter fixed at the recipe (and the given widths)."""
    space = yaml.safe_load(builtin_space_path("image-cifar").read_text())
    fixed = {**RECIPE, "width1": widths[0], "width2": widths[1], "width3": widths[2]}
    unknown = set(fixed) - set(space["params"])
    assert not unknown, f"recipe names parameters image-cifar.yaml lacks: {unknown}"
    space["params"] = {k: {"type": "fixed", "value": v} for k, v in fixed.items()}
    out.write_text(yaml.safe_dump(space, sort_keys=False))
    return out


def search(data: Path, out: Path, space: str | None, budget: float, epochs: int, seed: int) -> dict:
    t0 = time.perf_counter()
    res = run_search(SearchSettings(task="image", data=str(data), space=space, trials=10_000, timeout=budget,
                                    epochs=epochs, out=str(out), device="cpu", seed=seed))
    return {"wall": time.perf_counter() - t0, "test": res.test_metric, "val": res.best_value,
            "trials": res.counts["total"], "params": res.params}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cifar", default="/tmp/cifar10", help="CIFAR-10 image folder (train/, test/)")
    ap.add_argument("--budget", type=float, default=300.0, help="seconds of search for each side")
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--cnn-epochs", type=int, default=20, help="max epochs of a CNN trial")
    ap.add_argument("--resnet-epochs", type=int, default=10)
    ap.add_argument("--widths", default="32,64,128", help="resnet stage widths (the GPU recipe: 64,128,256)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sides", default="cnn,resnet", help="which sides to run (a rerun of one side)")
    args = ap.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    with tempfile.TemporaryDirectory(prefix="cifar-cpu-") as tmp:
        root = Path(tmp)
        data = make_subset(Path(args.cifar), root / "subset", args.per_class)
        space = recipe_space(widths, root / "recipe.yaml")
        sides = args.sides.split(",")
        cnn = search(data, root / "cnn", None, args.budget, args.cnn_epochs, args.seed) if "cnn" in sides else None
        res = (search(data, root / "resnet", str(space), args.budget, args.resnet_epochs, args.seed)
               if "resnet" in sides else None)
    print(f"hardware: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, CPU; budget {args.budget:.0f} s")
    print(f"data: {args.cifar}, {args.per_class} train images a class (15% of them validation), 10,000 test images")
    print(f"{'side':<44}{'trials':>7}{'wall s':>8}{'val acc':>9}{'test acc':>10}")
    rows = {f"cnn, image.yaml search (<= {args.cnn_epochs} ep)": cnn,
            f"resnet {args.widths}, image-cifar recipe ({args.resnet_epochs} ep)": res}
    for name, r in rows.items():
        if r is not None:
            print(f"{name:<44}{r['trials']:>7}{r['wall']:>8.0f}{r['val']:>9.4f}{r['test']:>10.4f}")
    if cnn is not None and res is not None:
        print(f"difference (resnet - cnn): {100 * (res['test'] - cnn['test']):+.1f} accuracy points")
    if cnn is not None:
        print(f"cnn best params: {cnn['params']}")


if __name__ == "__main__":
    main()
