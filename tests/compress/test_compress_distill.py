"""Distillation when fine-tuning a pruned model (issue 16): the loss, the skip for regression, and
that it trains the student differently from plain fine-tuning while leaving the teacher untouched."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

ARCH = {"family": "cnn", "in_channels": 1, "input_size": [8, 8], "widths": [16, 16], "pools": [True, True],
        "batch_norm": True, "activation": "relu", "dropout": 0.0, "init": "default", "num_classes": 10}
PARAMS = {"lr": 0.01, "batch_size": 64, "optimizer": "adamw"}


def test_distill_loss_is_weighted_kl_plus_task_loss() -> None:
    import torch.nn.functional as F

    from compress.distill import Distilling, distill_loss

    torch.manual_seed(0)
    s, t, y = torch.randn(8, 5), torch.randn(8, 5), torch.randint(0, 5, (8,))
    w = Distilling(torch.nn.Identity(), torch.nn.Identity())
    ce = torch.nn.CrossEntropyLoss()
    for temp, weight in ((1.0, 0.5), (4.0, 0.7), (2.0, 0.0)):
        w.teacher_logits = t
        got = distill_loss(w, ce, temp, weight)(s, y)
        kl = (F.softmax(t / temp, 1) * (F.log_softmax(t / temp, 1) - F.log_softmax(s / temp, 1))).sum(1).mean()
        want = weight * temp**2 * kl + (1 - weight) * ce(s, y)
        assert torch.isclose(got, want, atol=1e-5), (got, want)
        assert w.teacher_logits is None  # consumed
    w.teacher_logits = s.clone()
    assert float(distill_loss(w, ce, 3.0, 1.0)(s, y)) == pytest.approx(0.0, abs=1e-6)  # student == teacher
    assert torch.isclose(distill_loss(w, ce, 3.0, 0.7)(s, y), ce(s, y))  # no teacher logits: task loss alone


def test_teacher_is_neither_trained_nor_switched_to_train_mode() -> None:
    from compress.distill import Distilling

    teacher, student = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.5)), torch.nn.Linear(4, 3)
    w = Distilling(student, teacher).train()
    assert not teacher.training and [id(p) for p in w.parameters()] == [id(p) for p in student.parameters()]
    x = torch.randn(6, 4)
    w(x)
    assert torch.equal(w.teacher_logits, teacher(x))  # eval mode: dropout off, deterministic
    w.eval()(x)
    assert w.teacher_logits is None


def test_regression_is_not_distilled() -> None:
    from automl.tasks import get_task
    from compress.distill import distill_unsupported

    reg = SimpleNamespace(y_train=torch.randn(5))
    cls = SimpleNamespace(y_train=torch.tensor([0, 1, 1]))
    regression = get_task("tabular")
    regression.metric, regression.direction = "rmse", "minimize"  # what prepare() sets for a numeric target
    assert "regression" in distill_unsupported(regression, reg)
    assert distill_unsupported(get_task("tabular"), cls) is None
    assert distill_unsupported(get_task("image"), cls) is None


def test_distilled_finetune_differs_from_plain_and_keeps_the_teacher() -> None:
    from automl.models import build_from_arch
    from automl.tasks import DataConfig, get_task
    from automl.train import evaluate
    from compress.prune import finetune, prune_model

    task = get_task("image")
    bundle = task.load_data(DataConfig(source="digits"))
    torch.manual_seed(0)
    teacher = build_from_arch(ARCH)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        finetune(teacher, task, bundle, PARAMS, 3, "cpu", seed=0)  # a trained teacher
        before = copy.deepcopy(teacher.state_dict())
        example = task.example_input(bundle.meta, 1)
        pruned = prune_model(teacher, ARCH, example, 0.5).model
        plain, distilled = copy.deepcopy(pruned), copy.deepcopy(pruned)
        info_plain = finetune(plain, task, bundle, PARAMS, 1, "cpu", seed=0)
        info_kd = finetune(distilled, task, bundle, PARAMS, 1, "cpu", seed=0, teacher=teacher, temperature=4.0,
                           weight=0.9)
    finally:
        torch.set_num_threads(threads)
    assert info_kd["distill"] and not info_plain["distill"] and info_kd["distill_temperature"] == 4.0
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k  # the teacher did not move
    diffs = [float((a - b).abs().max()) for a, b in zip(plain.state_dict().values(),
                                                        distilled.state_dict().values(), strict=True)
             if a.is_floating_point()]
    assert max(diffs) > 1e-3  # a different loss trained different weights
    _, acc = evaluate(distilled, bundle.x_val, bundle.y_val, task.loss_fn(), task.metric_fn())
    assert acc > 0.5 and abs(acc - info_kd["val_metric"]) < 1e-6  # it learned; validation uses the task loss
