"""Search-space files: validation errors name the file and parameter; sampling honours conditions."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from automl.exceptions import SearchSpaceError
from automl.search.space import grid, list_builtin_spaces, load_space, parse_space, resolve_space, sample


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return p


def test_builtin_spaces_load() -> None:
    assert {"image", "image-full"} <= set(list_builtin_spaces())
    small = resolve_space(None, "image")
    full = resolve_space("image-full", "image")
    assert {"depth", "width", "lr", "batch_size", "weight_decay", "dropout", "optimizer", "momentum",
            "label_smoothing", "augment"} <= set(small.names)
    assert len(full.names) > len(small.names)
    momentum = next(p for p in small.params if p.name == "momentum")
    assert momentum.when == (("optimizer", ("nesterov",)),)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("params:\n  depth: {type: integer, low: 1, high: 3}\n", "parameter 'depth': unknown type 'integer'"),
        ("params:\n  lr: {type: float, low: 0.1, high: 0.01}\n", "parameter 'lr': low (0.1) is greater than high"),
        ("params:\n  m: {type: float, low: 0.1, high: 0.9, when: {opt: [sgd]}}\n",
         "parameter 'm': condition names 'opt', which is not defined"),
        ("params:\n  depth: {type: int, low: 1, high: [3\n", "malformed YAML"),
        ("params:\n  lr: {type: float, low: 0, high: 1, log: true}\n", "'low' must be > 0 when log is true"),
        ("params:\n  o: {type: categorical, choices: []}\n", "parameter 'o': 'choices' must be a non-empty list"),
        ("params:\n  d: {type: int, low: 1, high: 3, stepp: 1}\n", "parameter 'd': unknown key(s) ['stepp']"),
        ("params:\n  d: {type: int, low: 1.5, high: 3}\n", "'low' must be an integer"),
        ("params:\n  o: {type: categorical, choices: [a, b]}\n  m: {type: float, low: 0, high: 1, when: {o: [c]}}\n",
         "condition value(s) ['c'] are not choices of 'o'"),
        ("depth: 3\n", "top-level 'params' key"),
        ("- a\n- b\n", "top-level 'params' key"),
    ],
)
def test_malformed_space_names_file_and_parameter(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SearchSpaceError) as info:
        load_space(path)
    msg = str(info.value)
    assert msg.startswith(str(path)), msg
    assert fragment in msg
    assert "\n" not in msg


def test_missing_space_file(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match="not found"):
        load_space(tmp_path / "nope.yaml")


def test_numeric_strings_and_shorthands() -> None:
    # PyYAML reads 1e-4 (no dot) as a string; it must still count as a number.
    space = parse_space({"params": {"lr": {"type": "float", "low": "1e-4", "high": "1e-1", "log": True},
                                    "act": ["relu", "gelu"], "epochs_cap": 3}})
    lr, act, cap = space.params
    assert lr.low == pytest.approx(1e-4) and lr.high == pytest.approx(0.1)
    assert act.type == "categorical" and act.choices == ("relu", "gelu")
    assert cap.type == "fixed" and cap.value == 3


def test_sample_respects_conditions_and_ranges() -> None:
    space = resolve_space(None, "image")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_opt = set()
    for _ in range(40):
        trial = study.ask()
        params = sample(trial, space)
        seen_opt.add(params["optimizer"])
        assert ("momentum" in params) == (params["optimizer"] == "nesterov")
        assert 1 <= params["depth"] <= 3
        assert params["width"] in (16, 32, 48)
        assert 1e-3 <= params["lr"] <= 3e-2
        assert params["schedule"] == "onecycle"
        study.tell(trial, 0.5)
    assert seen_opt == {"adamw", "nesterov"}


def test_fixed_trial_sampling_is_exact() -> None:
    space = resolve_space(None, "image")
    fixed = {"depth": 2, "width": 32, "optimizer": "adamw", "lr": 0.01, "batch_size": 64, "weight_decay": 1e-4,
             "dropout": 0.1, "label_smoothing": 0.05, "augment": True}
    params = sample(optuna.trial.FixedTrial(fixed), space)
    assert params == {**fixed, "schedule": "onecycle"}


def test_grid_is_finite_and_covers_choices() -> None:
    g = grid(resolve_space(None, "image"))
    assert g["optimizer"] == ["adamw", "nesterov"]
    assert g["depth"] == [1, 2, 3]
    assert g["dropout"] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert len(g["lr"]) == 3 and g["lr"][0] == pytest.approx(1e-3) and g["lr"][-1] == pytest.approx(3e-2)
