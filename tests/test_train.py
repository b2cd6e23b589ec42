"""The training loop: learns, stops on NaN, configures optimizers and schedules by name."""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from automl.exceptions import ConfigError, DeadlineReached, NonFiniteLossError
from automl.tasks.image import shift_and_flip
from automl.train import TrainConfig, fit, penalty, train_config_from_params


def blobs(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    return centers[y] + 0.5 * torch.randn(n, 2, generator=g), y


def acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


def test_fit_learns_separable_data() -> None:
    x, y = blobs()
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    seen = []
    cfg = TrainConfig(epochs=5, lr=0.05, batch_size=32, optimizer="adamw", schedule="onecycle")
    res = fit(model, x[:300], y[:300], x[300:], y[300:], cfg, F.cross_entropy, acc,
              on_epoch=lambda e, r: seen.append(e))
    assert res.val_metric >= 0.95
    assert seen == [1, 2, 3, 4, 5]
    assert res.epochs_run == 5 and len(res.history) == 5
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_fit_is_reproducible_for_a_seed() -> None:
    x, y = blobs()
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))
        cfg = TrainConfig(epochs=2, lr=0.01, batch_size=64, seed=5)
        outs.append(fit(model, x[:300], y[:300], x[300:], y[300:], cfg, F.cross_entropy, acc).val_loss)
    assert outs[0] == outs[1]


def test_nan_loss_raises() -> None:
    x, y = blobs(100)
    model = nn.Linear(2, 3)

    def bad_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target) * float("nan")

    with pytest.raises(NonFiniteLossError) as info:
        fit(model, x, y, x, y, TrainConfig(epochs=3), bad_loss, acc)
    assert info.value.epoch == 1


def test_deadline_stops_training_between_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import automl.train

    x, y = blobs()
    cfg = TrainConfig(epochs=50, lr=0.05, batch_size=8)
    model = nn.Sequential(nn.Linear(2, 3))
    with pytest.raises(DeadlineReached) as info:
        fit(model, x, y, x, y, cfg, F.cross_entropy, acc, deadline=time.monotonic() - 1)
    assert info.value.epochs == 0 and str(info.value) == "deadline: --timeout reached after 0 epochs"
    clock = {"now": 0.0}  # seconds, as fit reads time.monotonic()
    monkeypatch.setattr(automl.train, "time", SimpleNamespace(perf_counter=time.perf_counter,
                                                               monotonic=lambda: clock["now"]))
    seen: list[int] = []

    def late_after_two(epoch: int, record: dict[str, float]) -> None:
        seen.append(epoch)
        clock["now"] = 10.0 * epoch  # epoch 2 ends at 20 s: past the deadline

    with pytest.raises(DeadlineReached) as info:
        fit(model, x, y, x, y, cfg, F.cross_entropy, acc, on_epoch=late_after_two, deadline=15.0)
    assert seen == [1, 2] and info.value.epochs == 2
    clock["now"] = 0.0
    assert fit(model, x, y, x, y, TrainConfig(epochs=2), F.cross_entropy, acc, deadline=15.0).epochs_run == 2


def test_config_from_params_and_validation() -> None:
    cfg = train_config_from_params(
        {"lr": "0.01", "batch_size": 32, "optimizer": "rmsprop", "momentum": 0.8, "clip_grad": True,
         "clip_norm": 2.0, "depth": 3, "schedule": "step", "step_gamma": 0.3},
        epochs=4, seed=1,
    )
    assert (cfg.lr, cfg.batch_size, cfg.optimizer, cfg.momentum, cfg.clip_norm) == (0.01, 32, "rmsprop", 0.8, 2.0)
    assert (cfg.schedule, cfg.step_gamma, cfg.epochs) == ("step", 0.3, 4)
    assert train_config_from_params({"clip_grad": False, "clip_norm": 1.0}).clip_norm is None
    with pytest.raises(ConfigError, match="unknown optimizer 'lion'"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        TrainConfig(epochs=0)


def test_penalty_matches_formula() -> None:
    model = nn.Linear(3, 2)
    w = model.weight.detach()
    expected = 0.1 * w.abs().sum() + 0.01 * w.pow(2).sum()  # bias excluded
    assert float(penalty(model, 0.1, 0.01).detach()) == pytest.approx(float(expected), rel=1e-6)
    assert penalty(model, 0.0, 0.0) is None


def test_shift_and_flip_keeps_shape_and_content_mass() -> None:
    x = torch.zeros(6, 1, 8, 8)
    x[:, :, 3:5, 3:5] = 1.0  # a centred blob survives any shift of at most 1 pixel
    g = torch.Generator().manual_seed(0)
    out = shift_and_flip(x, 1.0, True, g)
    assert out.shape == x.shape
    assert torch.allclose(out.sum(dim=(1, 2, 3)), torch.full((6,), 4.0))
    assert math.isclose(float(shift_and_flip(x, 0.5, False, g).sum()), 24.0)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "step", "constant"])
@pytest.mark.parametrize("n", [2, 4, 6, 8, 12, 40])
def test_schedules_survive_very_short_runs(schedule: str, n: int) -> None:
    """1 to 20 optimizer steps (tiny tables, one fine-tuning epoch) must not break a schedule."""
    x, y = blobs(n)
    model = nn.Linear(2, 3)
    cfg = TrainConfig(epochs=1, lr=0.01, batch_size=2, schedule=schedule)
    res = fit(model, x, y, x, y, cfg, F.cross_entropy, acc)
    assert res.epochs_run == 1 and math.isfinite(res.val_loss)
