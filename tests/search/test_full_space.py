"""Every parameter of search_spaces/image-full.yaml reaches the model or the optimizer."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from automl.models.cnn import ACTIVATIONS
from automl.search.space import resolve_space, sample
from automl.tasks import get_task
from automl.train import TRAIN_PARAMS, TrainConfig, make_optimizer, make_scheduler, train_config_from_params

META = {"input_shape": [1, 8, 8], "num_classes": 10, "classes": [str(i) for i in range(10)]}
OPTIMIZER_CLASSES = {"sgd": torch.optim.SGD, "nesterov": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
                     "adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULE_CLASSES = {"cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
                    "onecycle": torch.optim.lr_scheduler.OneCycleLR, "step": torch.optim.lr_scheduler.StepLR}


def sampled_params(n: int) -> list[dict[str, Any]]:
    space = resolve_space("image-full", "image")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(sample(trial, space))
        study.tell(trial, 0.0)
    return out


def check_model(model: nn.Module, params: dict[str, Any]) -> None:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == params["depth"]
    assert convs[0].out_channels == params["width"]
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == params["batch_norm"]
    acts = {type(m) for m in model.modules() if type(m) in ACTIVATIONS.values()}
    assert acts == {ACTIVATIONS[params["activation"]]}
    assert model.dropout.p == pytest.approx(params["dropout"])
    w = convs[0].weight.detach()
    fan_in = w[0].numel()
    if params["init"] == "kaiming":
        gain = math.sqrt(2.0 / (1 + 0.01**2)) if params["activation"] == "leaky_relu" else math.sqrt(2.0)
        assert float(w.std()) == pytest.approx(gain / math.sqrt(fan_in), rel=0.35)
    elif params["init"] == "xavier":
        bound = math.sqrt(6.0 / (fan_in + w.shape[0] * w[0, 0].numel()))
        assert float(w.abs().max()) <= bound + 1e-6
        assert float(w.abs().max()) > 0.8 * bound
    if not params["batch_norm"] and params["init"] != "default":
        assert float(convs[0].bias.detach().abs().max()) == 0.0


def check_training(cfg: TrainConfig, params: dict[str, Any], model: nn.Module) -> None:
    opt = make_optimizer(model, cfg)
    assert type(opt) is OPTIMIZER_CLASSES[params["optimizer"]]
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(params["lr"])
    assert group["weight_decay"] == pytest.approx(params["weight_decay"])
    if params["optimizer"] in ("sgd", "nesterov", "rmsprop"):
        assert group["momentum"] == pytest.approx(params["momentum"])
    if params["optimizer"] in ("sgd", "nesterov"):
        assert group["nesterov"] == (params["optimizer"] == "nesterov")
    sched = make_scheduler(opt, cfg, 100)
    if params["schedule"] == "constant":
        assert sched is None
    else:
        assert type(sched) is SCHEDULE_CLASSES[params["schedule"]]
    if params["schedule"] == "step":
        assert sched.gamma == pytest.approx(params["step_gamma"])
    assert cfg.clip_norm == (params["clip_norm"] if params["clip_grad"] else None)
    assert (cfg.l1, cfg.l2) == (params["l1"], params["l2"])
    assert cfg.label_smoothing == pytest.approx(params["label_smoothing"])
    assert cfg.batch_size == params["batch_size"]
    assert cfg.augment == params["augment"]
    if params["augment"]:
        assert cfg.augment_strength == pytest.approx(params["augment_strength"])


def test_every_full_space_parameter_is_consumed() -> None:
    task = get_task("image")
    space = resolve_space("image-full", "image")
    assert set(space.names) <= set(task.model_params) | set(TRAIN_PARAMS)
    seen: dict[str, set[Any]] = {}
    for params in sampled_params(60):
        torch.manual_seed(0)
        model = task.build_model(params, META)
        check_model(model, params)
        check_training(train_config_from_params(params, epochs=2), params, model)
        for k, v in params.items():
            seen.setdefault(k, set()).add(v if not isinstance(v, float) else round(v, 6))
    # 60 random trials visit every optimizer, schedule, activation and initialisation
    assert seen["optimizer"] == set(OPTIMIZER_CLASSES)
    assert seen["schedule"] == {"constant", "cosine", "onecycle", "step"}
    assert seen["activation"] == set(ACTIVATIONS)
    assert seen["init"] == {"default", "kaiming", "xavier"}
    assert set(seen) == set(space.names)


def test_clip_norm_and_label_smoothing_reach_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    from automl import train

    calls: list[float] = []
    real = nn.utils.clip_grad_norm_

    def spy(parameters: Any, max_norm: float, *a: Any, **k: Any) -> Any:
        calls.append(max_norm)
        return real(parameters, max_norm, *a, **k)

    monkeypatch.setattr(train.nn.utils, "clip_grad_norm_", spy)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    task = get_task("image")
    params = {"depth": 1, "width": 8, "clip_grad": True, "clip_norm": 0.5, "label_smoothing": 0.2}
    model = task.build_model(params, META)
    cfg = train_config_from_params(params, epochs=1, batch_size=32)
    train.fit(model, x, y, x, y, cfg, task.loss_fn(cfg.label_smoothing), task.metric_fn())
    assert calls == [0.5, 0.5]
    logits = torch.randn(5, 10)
    target = torch.randint(0, 10, (5,))
    assert float(task.loss_fn(0.2)(logits, target)) == pytest.approx(
        float(F.cross_entropy(logits, target, label_smoothing=0.2))
    )


def test_full_space_search_runs(tmp_path: Any) -> None:
    from automl.study import SearchSettings, run_search

    res = run_search(SearchSettings(task="image", space="search_spaces/image-full.yaml", trials=4, epochs=2,
                                    out=str(tmp_path), device="cpu", ensemble=False))  # best.pt: one trial's params
    assert res.counts["total"] == 4
    assert res.counts["complete"] >= 1
    assert set(res.params) <= set(resolve_space("image-full", "image").names)
