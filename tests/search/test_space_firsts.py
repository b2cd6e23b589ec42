"""``firsts`` in a search-space file: explicit first trials, validated at load, kept by to_yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from automl.exceptions import SearchSpaceError
from automl.search.space import load_space, parse_space, resolve_space

SPACE = """\
params:
  model: {type: categorical, choices: [mlp, tabm]}
  depth: {type: int, low: 1, high: 4}
  width: {type: int, low: 32, high: 256, step: 32}
  ensemble_size: {type: categorical, choices: [8, 32], when: {model: [tabm]}}
  batch_norm: {type: categorical, choices: [true, false]}
  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
  optimizer: {type: fixed, value: adamw}
"""


def _space(firsts: str) -> str:
    return SPACE + firsts


def test_firsts_are_returned_in_order_with_numbers_converted_and_fixed_dropped() -> None:
    text = _space("firsts:\n  - {model: tabm, ensemble_size: 32, lr: '2e-3', optimizer: adamw}\n"
                  "  - {model: mlp, depth: 2, width: 64, batch_norm: false}\n")
    space = parse_space(yaml.safe_load(text), "<t>")
    assert space.family_firsts() == [{"model": "tabm", "ensemble_size": 32, "lr": 2e-3},
                                     {"model": "mlp", "depth": 2, "width": 64, "batch_norm": False}]
    assert isinstance(space.family_firsts()[0]["lr"], float)
    again = parse_space(yaml.safe_load(space.to_yaml()), "<reloaded>")  # what a worker does
    assert again.family_firsts() == space.family_firsts()


def test_without_firsts_each_family_gets_one_first() -> None:
    space = parse_space(yaml.safe_load(SPACE), "<t>")
    assert space.firsts == () and space.family_firsts() == [{"model": "mlp"}, {"model": "tabm"}]


@pytest.mark.parametrize(
    ("firsts", "fragment"),
    [
        ("firsts: {model: mlp}\n", "'firsts' must be a non-empty list"),
        ("firsts: []\n", "'firsts' must be a non-empty list"),
        ("firsts:\n  - mlp\n", "firsts[0]: must be a non-empty mapping"),
        ("firsts:\n  - {model: mlp}\n  - {}\n", "firsts[1]: must be a non-empty mapping"),
        ("firsts:\n  - {modell: mlp}\n", "firsts[0]: 'modell' is not a parameter of the space"),
        ("firsts:\n  - {model: resmlp}\n", "'model' = 'resmlp' is not one of its choices ['mlp', 'tabm']"),
        ("firsts:\n  - {batch_norm: 1}\n", "'batch_norm' = 1 is not one of its choices [True, False]"),
        ("firsts:\n  - {depth: 5}\n", "'depth' = 5 is outside its range [1, 4]"),
        ("firsts:\n  - {depth: 2.5}\n", "'value' must be an integer"),
        ("firsts:\n  - {lr: 0.5}\n", "'lr' = 0.5 is outside its range [0.0001, 0.01]"),
        ("firsts:\n  - {lr: fast}\n", "parameter 'lr': 'value' must be a number, got 'fast'"),
        ("firsts:\n  - {lr: true}\n", "'value' must be a number, got True"),
        ("firsts:\n  - {width: 48}\n", "'width' = 48 is not on its step 32 from 32"),
        ("firsts:\n  - {optimizer: sgd}\n", "'optimizer' is fixed at 'adamw', got 'sgd'"),
        ("firsts:\n  - {model: mlp, ensemble_size: 8}\n",
         "'ensemble_size' is only sampled when model is one of ['tabm'], and this first has model='mlp'"),
    ],
)
def test_bad_firsts_are_one_clear_error(tmp_path: Path, firsts: str, fragment: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(_space(firsts))
    with pytest.raises(SearchSpaceError) as info:
        load_space(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and fragment in msg and "\n" not in msg, msg


def test_a_first_may_leave_the_family_to_the_sampler() -> None:
    space = parse_space(yaml.safe_load(_space("firsts:\n  - {ensemble_size: 8}\n")), "<t>")
    assert space.family_firsts() == [{"ensemble_size": 8}]


def test_builtin_tabular_space_firsts_are_valid_and_cover_every_family() -> None:
    from automl.models import get_model, list_models

    space = resolve_space(None, "tabular")
    firsts = space.family_firsts()
    assert firsts, "the tabular space lists its published recipes as firsts"
    models = {f.get("model") for f in firsts}
    choices = set(next(p for p in space.params if p.name == "model").choices)
    nn_families = {n for n in list_models("tabular") if n in choices}
    assert nn_families <= models
    for f in firsts:  # each first names only parameters its family or the training loop reads
        from automl.train import TRAIN_PARAMS

        fam = get_model(f["model"])
        extra = set(f) - {"model"} - set(fam.params) - set(TRAIN_PARAMS)
        assert not extra, (f, extra)
