"""Kit step (b): epochs/s of automl's in-memory loop against a DataLoader loop, side by side.

Same model (the resnet family with the image-cifar recipe's shape), same training images, batch
size, optimizer (SGD Nesterov), label smoothing, augmentation (4-pixel reflect-padded random crop and
horizontal flip drawn per image) and mixed precision (bf16 autocast and channels-last on CUDA), one
validation pass per epoch. The DataLoader side is the usual PyTorch recipe: a Dataset of uint8
images that converts, normalises and augments one sample at a time in worker processes, pinned
memory and non-blocking copies on CUDA.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


class Uint8Images(torch.utils.data.Dataset):
    """(C, H, W) uint8 images -> normalised float tensors, augmented per sample when ``train``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, mean: list[float], std: list[float], train: bool) -> None:
        self.x, self.y, self.train = x, y, train
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = (torch.from_numpy(self.x[i]).float() / 255 - self.mean) / self.std
        if self.train:
            pad = F.pad(img[None], (4, 4, 4, 4), mode="reflect")[0]
            dy, dx = np.random.randint(0, 9, 2)
            img = pad[:, dy : dy + img.shape[1], dx : dx + img.shape[2]]
            if np.random.rand() < 0.5:
                img = img.flip(2)
        return img, int(self.y[i])


def dataloader_fit(model: torch.nn.Module, train: Any, val: Any, epochs: int, device: torch.device,
                   batch: int, workers: int) -> None:
    cuda = device.type == "cuda"
    kw: dict[str, Any] = {"num_workers": workers, "pin_memory": cuda, "persistent_workers": workers > 0}
    tl = torch.utils.data.DataLoader(train, batch_size=batch, shuffle=True, drop_last=False, **kw)
    vl = torch.utils.data.DataLoader(val, batch_size=2048, shuffle=False, **kw)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4)
    if cuda:
        model.to(memory_format=torch.channels_last)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    for _ in range(epochs):
        model.train()
        for xb, yb in tl:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            if cuda:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with amp:
                loss = F.cross_entropy(model(xb).float(), yb, label_smoothing=0.2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        correct = torch.zeros((), device=device)
        with torch.no_grad(), amp:
            for xb, yb in vl:
                correct += (model(xb.to(device, non_blocking=True)).argmax(1) == yb.to(device)).sum()
        float(correct)


def step_loop(args: argparse.Namespace) -> dict:
    from automl.data.images import load_image_source
    from automl.data.splits import stratified_split
    from automl.models import build_from_arch, get_model
    from automl.tasks import DataConfig, get_task
    from automl.tasks.image import channel_stats
    from automl.train import TrainConfig, fit

    device = torch.device(args.device)
    dcfg = DataConfig(source=str(args.data), seed=0)
    data = load_image_source(dcfg.source)
    val_frac = dcfg.val_fraction / (1.0 - dcfg.test_fraction)  # the image task's split, so both see the same
    tr, va = stratified_split(data.y, (1.0 - val_frac, val_frac), dcfg.seed)
    mean, std = channel_stats(data.x[tr])
    task = get_task("image")
    bundle = task.load_data(dcfg).to(device)
    assert len(bundle.y_train) == len(tr) and len(bundle.y_val) == len(va)
    w = [int(v) for v in args.widths.split(",")]
    params = {"model": "resnet", "stem": w[0] // 2, "width1": w[0], "width2": w[1], "width3": w[2],
              "depth1": 1, "depth2": 0, "depth3": 1}
    arch = get_model("resnet").arch_from_params(params, bundle.meta)
    batch = 512
    cfg = TrainConfig(epochs=args.loop_epochs, lr=0.2, batch_size=batch, optimizer="nesterov", momentum=0.9,
                      weight_decay=5e-4, label_smoothing=0.2, augment=True, augment_strength=1.0, flip=True,
                      pad_mode="reflect", device=str(device))
    workers = min(8, os.cpu_count() or 1)
    train_ds = Uint8Images(data.x[tr], data.y[tr], list(mean), list(std), True)
    val_ds = Uint8Images(data.x[va], data.y[va], list(mean), list(std), False)

    def ours(epochs: int) -> None:
        torch.manual_seed(0)
        model = build_from_arch(arch)
        fit(model, bundle.x_train, bundle.y_train, bundle.x_val, bundle.y_val,
            TrainConfig(**{**cfg.to_dict(), "epochs": epochs}), task.loss_fn(0.2), task.metric_fn(),
            task.augment_fn(bundle.meta))

    def standard(epochs: int) -> None:
        torch.manual_seed(0)
        dataloader_fit(build_from_arch(arch).to(device), train_ds, val_ds, epochs, device, batch, workers)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    fns = {"automl in-memory loop": ours, f"DataLoader loop ({workers} workers)": standard}
    for fn in fns.values():  # warm-up: cudnn autotuning, worker start, allocator
        fn(1)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():  # alternate, so drift hits both
            sync()
            t0 = time.perf_counter()
            fn(args.loop_epochs)
            sync()
            times[name].append(time.perf_counter() - t0)
    eps = {k: args.loop_epochs / statistics.median(v) for k, v in times.items()}
    print(f"\n(b) loop: resnet {args.widths}, {len(tr)} train / {len(va)} val images, batch {batch}, "
          f"{args.loop_epochs} epochs, median of {args.repeats}", flush=True)
    print(f"{'loop':<34}{'epochs/s':>10}{'s/epoch':>10}")
    for k, v in eps.items():
        print(f"{k:<34}{v:>10.3f}{1 / v:>10.2f}")
    names = list(eps)
    ratio = eps[names[0]] / eps[names[1]]
    print(f"ratio (automl / DataLoader): {ratio:.2f}x", flush=True)
    return {"epochs_per_s": eps, "ratio": ratio, "train_images": len(tr)}
