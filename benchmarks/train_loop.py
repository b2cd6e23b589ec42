"""Epochs per second: automl's in-memory training loop vs a standard DataLoader loop.

Same model, same data, same batch size, optimizer and epochs, side by side in one run. The
standard loop is the optuna-examples style: a Dataset of PIL images with per-sample
``ToTensor`` + ``Normalize`` transforms and a shuffling ``DataLoader`` (num_workers=0, as there).

    python benchmarks/train_loop.py                      # digits (8x8 grey, built in)
    python benchmarks/train_loop.py --data /tmp/cifar10 --limit 10000 --epochs 2
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and its compress.py would hide the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from automl.data.images import load_image_source, to01
from automl.data.splits import stratified_split
from automl.tasks import get_task
from automl.train import TrainConfig, evaluate, fit
from compress.bench import cpu_name


def standard_loop(model: torch.nn.Module, train_ds: torch.utils.data.Dataset, val_ds: torch.utils.data.Dataset,
                  cfg: TrainConfig, device: torch.device) -> None:
    """One run of ``cfg.epochs`` epochs, optuna-examples style."""
    train_loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True)
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=cfg.eval_batch_size, shuffle=False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    for _ in range(cfg.epochs):
        model.train()
        for xb, yb in train_loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for xb, yb in val_loader:
                correct += int((model(xb.to(device)).argmax(1) == yb.to(device)).sum())


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, images: list[Image.Image], labels: np.ndarray, tf: transforms.Compose) -> None:
        self.images, self.labels, self.tf = images, labels, tf

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.tf(self.images[i]), int(self.labels[i])


def to_pil(x01: np.ndarray) -> list[Image.Image]:
    u8 = (x01 * 255).round().astype(np.uint8)
    if u8.shape[1] == 1:
        return [Image.fromarray(a[0], "L") for a in u8]
    return [Image.fromarray(a.transpose(1, 2, 0), "RGB") for a in u8]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="use at most this many training images")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)

    data = load_image_source(args.data)
    x, y = to01(data.x), data.y
    if args.limit:  # a seeded random subset: folders are sorted by class
        keep = np.random.default_rng(0).permutation(len(y))[: args.limit]
        x, y = x[keep], y[keep]
    tr, va = stratified_split(y, (0.85, 0.15), seed=0)
    mean = x[tr].mean(axis=(0, 2, 3))
    std = x[tr].std(axis=(0, 2, 3)) + 1e-6
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean.tolist(), std.tolist())])
    train_ds = PILDataset(to_pil(x[tr]), y[tr], tf)
    val_ds = PILDataset(to_pil(x[va]), y[va], tf)
    xs = torch.from_numpy((x - mean[None, :, None, None]) / std[None, :, None, None]).float()
    ys = torch.from_numpy(y)
    x_tr, y_tr, x_va, y_va = (t.to(device) for t in (xs[tr], ys[tr], xs[va], ys[va]))

    task = get_task("image")
    meta = {"input_shape": list(x.shape[1:]), "num_classes": len(data.classes)}
    params = {"depth": args.depth, "width": args.width, "batch_norm": True}
    cfg = TrainConfig(epochs=args.epochs, lr=3e-3, batch_size=args.batch_size, optimizer="adamw",
                      schedule="constant", device=str(device))

    def ours() -> None:
        torch.manual_seed(0)
        model = task.build_model(params, meta).to(device)
        fit(model, x_tr, y_tr, x_va, y_va, cfg, task.loss_fn(), task.metric_fn())
        evaluate(model, x_va, y_va, task.loss_fn(), task.metric_fn())

    def standard() -> None:
        torch.manual_seed(0)
        model = task.build_model(params, meta).to(device)
        standard_loop(model, train_ds, val_ds, cfg, device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    timings: dict[str, list[float]] = {"automl in-memory loop": [], "DataLoader loop": []}
    fns = {"automl in-memory loop": ours, "DataLoader loop": standard}
    # warm-up once each, then alternate so drift hits both equally
    for fn in fns.values():
        fn()
    for _ in range(args.repeats):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            timings[name].append(time.perf_counter() - t0)

    print(f"hardware: {cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
          f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
    print(f"data: {args.data}, {len(tr)} train / {len(va)} val images of {tuple(x.shape[1:])}, "
          f"batch {args.batch_size}, {args.epochs} epochs, CNN depth {args.depth} width {args.width}, "
          f"median of {args.repeats} runs")
    eps = {name: args.epochs / statistics.median(t) for name, t in timings.items()}
    print(f"{'loop':<24}{'epochs/s':>10}{'s/epoch':>10}")
    for name, v in eps.items():
        print(f"{name:<24}{v:>10.2f}{1 / v:>10.3f}")
    ratio = eps["automl in-memory loop"] / eps["DataLoader loop"]
    print(f"ratio (automl / DataLoader): {ratio:.2f}x")


if __name__ == "__main__":
    main()
