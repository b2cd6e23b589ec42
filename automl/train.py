"""The training loop shared by search trials and by fine-tuning after pruning.

The whole data set lives as tensors on the training device; batches are index slices of a random
permutation and augmentation is batched tensor work (the airbench pattern), so an epoch costs no
DataLoader, no worker processes and no per-sample Python.

A model whose cost grows with a per-sample size (the real length of a padded text) may define
``batch_size_key(x) -> tensor (N,)``: each epoch's batches are then drawn from samples of similar
size (see ``epoch_batches``), so the model can cut the padding it does not need from each batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import torch
from torch import nn

from automl.exceptions import ConfigError, DeadlineReached, NonFiniteLossError
from automl.optim_step import defer_dynamo_import, optimizer_step, zero_grad

if TYPE_CHECKING:
    from torch.optim.lr_scheduler import LRScheduler

    from automl.models import Params

#: a task's loss: (logits, targets) -> a scalar tensor
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: a task's metric: (logits, targets) -> a number
MetricFn = Callable[[torch.Tensor, torch.Tensor], float]
#: a task's batch augmentation: (inputs, ...) -> augmented inputs
AugmentFn = Callable[..., torch.Tensor]

OPTIMIZERS = ("sgd", "nesterov", "rmsprop", "adagrad", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle", "step")
#: parameters of a search space that the training loop (not the model builder) consumes
TRAIN_PARAMS = frozenset(
    {
        "optimizer", "lr", "momentum", "batch_size", "weight_decay", "schedule", "step_gamma",
        "label_smoothing", "augment", "augment_strength", "clip_grad", "clip_norm", "l1", "l2",
        "flip", "pad_mode",
    }
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything the loop needs, resolved once from sampled parameters and command-line options."""

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 64
    optimizer: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    step_gamma: float = 0.5
    label_smoothing: float = 0.0
    augment: bool = False
    augment_strength: float = 0.5
    flip: bool | None = None  # per-image horizontal flips in augmentation; None: where the data allows
    pad_mode: str = "zeros"  # padding of the random crop: zeros | reflect
    clip_norm: float | None = None
    l1: float = 0.0
    l2: float = 0.0
    amp: bool = True  # bf16 autocast on CUDA only
    seed: int = 0
    eval_batch_size: int = 2048

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r} (choose from: {', '.join(OPTIMIZERS)})")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r} (choose from: {', '.join(SCHEDULES)})")
        if self.pad_mode not in ("zeros", "reflect"):
            raise ConfigError(f"unknown pad_mode {self.pad_mode!r} (choose from: zeros, reflect)")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ConfigError(f"clip_norm must be > 0, got {self.clip_norm}")

    def to_dict(self) -> dict[str, int | float | str | bool | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def train_config_from_params(params: Params, **fixed: int | float | str | bool | None) -> TrainConfig:
    """Sampled parameters (a plain dict) + fixed options (epochs, seed) -> TrainConfig.

    ``clip_grad`` false (or absent) means no clipping; model parameters are ignored here.
    """
    kw: Params = {k: params[k] for k in TRAIN_PARAMS & params.keys() if k not in ("clip_grad", "clip_norm")}
    if params.get("clip_grad", "clip_norm" in params) and params.get("clip_norm") is not None:
        kw["clip_norm"] = float(params["clip_norm"])
    for key in ("lr", "momentum", "weight_decay", "step_gamma", "label_smoothing", "augment_strength", "l1", "l2"):
        if key in kw:
            kw[key] = float(kw[key])
    if "batch_size" in kw:
        kw["batch_size"] = int(kw["batch_size"])
    for key in ("augment", "flip"):
        if key in kw and kw[key] is not None:
            kw[key] = bool(kw[key])
    kw.update(fixed)
    return TrainConfig(**kw)


def warm_up() -> None:
    """One AdamW step on a one-element tensor, the way ``fit`` steps: PyTorch's one-off costs of a
    first optimizer step (a few ms now that torch._dynamo is not imported) are paid here."""
    model = nn.Linear(1, 1)
    opt = make_optimizer(model, TrainConfig())
    model(torch.ones(1, 1)).sum().backward()
    optimizer_step(opt)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named in ``cfg`` over the model's parameters."""
    defer_dynamo_import()
    p = [q for q in model.parameters() if q.requires_grad]
    wd = cfg.weight_decay
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(p, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    if cfg.optimizer == "nesterov":
        return torch.optim.SGD(p, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=wd)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(p, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    if cfg.optimizer == "adagrad":
        return torch.optim.Adagrad(p, lr=cfg.lr, weight_decay=wd)
    # The fused (single-kernel) Adam/AdamW step: on a CPU several times faster than the per-tensor
    # one over a large token embedding; same update rule.
    fused = bool(p) and all(q.device.type in ("cpu", "cuda") and q.is_floating_point() for q in p)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(p, lr=cfg.lr, weight_decay=wd, fused=fused or None)
    return torch.optim.AdamW(p, lr=cfg.lr, weight_decay=wd, fused=fused or None)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> LRScheduler | None:
    """A per-batch learning-rate schedule, or None for 'constant'."""
    total_steps = max(1, total_steps)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    if cfg.schedule == "onecycle":
        # OneCycleLR drives momentum too unless the optimizer has none (Adagrad).
        cycle_momentum = "momentum" in opt.defaults or "betas" in opt.defaults
        if cfg.optimizer in ("sgd", "nesterov", "rmsprop") and cfg.momentum == 0:
            cycle_momentum = False
        if total_steps < 2:  # a one-step run has no cycle to make
            return None
        # OneCycleLR divides by (pct_start * total_steps - 1): keep the warm-up at least half a step long.
        pct_start = min(0.75, max(0.25, 1.5 / total_steps))
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total_steps, cycle_momentum=cycle_momentum, pct_start=pct_start
        )
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, total_steps // 3), gamma=cfg.step_gamma)
    return None


#: batches per chunk when batches group samples of similar size: the random permutation is cut into
#: chunks of this many batches, each chunk sorted by size, and the batches of all chunks shuffled
BUCKET_CHUNK_BATCHES = 32


def epoch_batches(
    perm: torch.Tensor, bs: int, keys: torch.Tensor | None = None, gen: torch.Generator | None = None
) -> list[torch.Tensor]:
    """One epoch's batches of sample indices from the random permutation ``perm``.

    Without ``keys``: consecutive slices of ``bs``. With ``keys`` (a size per sample, e.g. the real
    length of a padded text): the "sortish" order of length-bucketed text training. Each chunk of
    ``BUCKET_CHUNK_BATCHES`` batches of ``perm`` is sorted by key and cut into batches, and the order of
    all batches is shuffled with ``gen``; every sample is still seen once an epoch, the batch sizes are
    those of the plain slices (chunks hold whole batches), and which samples meet in a batch still
    varies from epoch to epoch.
    """
    n = len(perm)
    if keys is None:
        return [perm[i : i + bs] for i in range(0, n, bs)]
    chunk = bs * BUCKET_CHUNK_BATCHES
    batches: list[torch.Tensor] = []
    for c in range(0, n, chunk):
        part = perm[c : c + chunk]
        part = part[torch.argsort(keys[part], stable=True)]
        batches += [part[i : i + bs] for i in range(0, len(part), bs)]
    order = torch.randperm(len(batches), generator=gen, device=gen.device if gen is not None else "cpu")
    return [batches[int(i)] for i in order.tolist()]


@dataclass
class FitResult:
    """What a fit returns: the last epoch's validation metric and loss, and the per-epoch history."""

    val_metric: float
    val_loss: float
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _autocast(device: torch.device, enabled: bool) -> torch.autocast:
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def penalty(model: nn.Module, l1: float, l2: float) -> torch.Tensor | None:
    """L1/L2 penalties over weight tensors (biases and norm scales excluded)."""
    if not l1 and not l2:
        return None
    total = None
    for w in model.parameters():
        if w.dim() < 2:
            continue
        term = 0.0
        if l1:
            term = term + l1 * w.abs().sum()
        if l2:
            term = term + l2 * w.pow(2).sum()
        total = term if total is None else total + term
    return total


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 2048, amp: bool = True) -> torch.Tensor:
    """Logits for ``x`` in eval mode, in batches, as float32 on ``x``'s device."""
    model.eval()
    device = x.device
    outs = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        if device.type == "cuda" and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp):
            outs.append(model(xb).float())
    if not outs:
        return torch.empty(0)
    return torch.cat(outs)


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, metric_fn: MetricFn,
    batch_size: int = 2048, amp: bool = True,
) -> tuple[float, float]:
    """(loss, metric) of ``model`` on one split."""
    return scores(predict_logits(model, x, batch_size, amp), y, loss_fn, metric_fn)


def scores(logits: torch.Tensor, y: torch.Tensor, loss_fn: Callable, metric_fn: Callable) -> tuple[float, float]:
    """(loss, metric) of logits already computed for one split."""
    return float(loss_fn(logits, y).item()), float(metric_fn(logits, y))


def fit(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    cfg: TrainConfig,
    loss_fn: LossFn,
    metric_fn: MetricFn,
    augment_fn: AugmentFn | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    deadline: float | None = None,
) -> FitResult:
    """Train ``model`` in place for ``cfg.epochs`` and evaluate on the validation split each epoch.

    The model trains on the device of ``x_train``. ``on_epoch(epoch, record)`` is called after every
    epoch (1-based) and may raise to stop training (the objective raises Optuna's TrialPruned there).
    Raises NonFiniteLossError when the loss stops being finite, and DeadlineReached when
    ``time.monotonic()`` passes ``deadline`` (checked before every batch and every evaluation).
    """
    device = x_train.device
    torch.manual_seed(cfg.seed)
    model.to(device)
    if device.type == "cuda" and x_train.dim() == 4:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    params = [p for group in opt.param_groups for p in group["params"]]
    n = len(x_train)
    bs = min(cfg.batch_size, n)
    steps_per_epoch = max(1, n // bs) if n % bs < 2 else n // bs + 1
    sched = make_scheduler(opt, cfg, steps_per_epoch * cfg.epochs)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    # Only a config that sets them passes flip/pad_mode, so a plain (x, strength, gen) augment still fits.
    aug_kw = {} if cfg.flip is None and cfg.pad_mode == "zeros" else {"flip": cfg.flip, "pad_mode": cfg.pad_mode}
    key_fn = getattr(model, "batch_size_key", None)
    keys = key_fn(x_train) if callable(key_fn) else None
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    val_loss = val_metric = float("nan")
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(n, device=device, generator=gen)
        loss_sum = torch.zeros((), device=device)
        seen = 0
        for idx in epoch_batches(perm, bs, keys, gen):
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineReached(epoch - 1)
            if len(idx) < 2:  # a batch of one breaks batch norm and adds nothing
                continue
            xb, yb = x_train[idx], y_train[idx]
            if cfg.augment and augment_fn is not None:
                xb = augment_fn(xb, cfg.augment_strength, gen, **aug_kw)
            if device.type == "cuda" and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(device, cfg.amp):
                loss = loss_fn(model(xb), yb)
            extra = penalty(model, cfg.l1, cfg.l2)
            if extra is not None:
                loss = loss + extra
            zero_grad(params)
            loss.backward()
            if cfg.clip_norm is not None:
                nn.utils.clip_grad_norm_(params, cfg.clip_norm)
            optimizer_step(opt)
            if sched is not None and sched.last_epoch < sched_total(sched):
                sched.step()
            loss_sum += loss.detach() * len(idx)
            seen += len(idx)
        # One host sync per epoch: the summed loss is NaN/inf if any batch was.
        train_loss = float(loss_sum.item()) / max(1, seen)
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(epoch)
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineReached(epoch - 1)
        val_loss, val_metric = evaluate(model, x_val, y_val, loss_fn, metric_fn, cfg.eval_batch_size, cfg.amp)
        if not math.isfinite(val_loss):
            raise NonFiniteLossError(epoch)
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_metric": val_metric,
            "seconds": time.perf_counter() - start,
            "lr": float(opt.param_groups[0]["lr"]),  # at the epoch's end (a schedule moves it every step)
        }
        history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, record)
    return FitResult(val_metric, val_loss, len(history), time.perf_counter() - start, history)


def sched_total(sched: LRScheduler | None) -> int:
    """How many steps a scheduler may take (OneCycleLR raises past its total)."""
    return getattr(sched, "total_steps", 1 << 62)
