"""The latency budget (issue 15): measuring a network on ONNX Runtime, the cache in the study, the
search's over-budget trials (never trained, the sampler told), compress on the study's target, and
bad options."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

import automl.runtime.counters as counters
import automl.runtime.export as export
import automl.runtime.latency as lat
from automl.exceptions import ArtifactError, ConfigError
from automl.runtime.latency import LatencySpec, LatencyTarget, Measurement, measure, measure_cached
from automl.study import SearchSettings, run_search

AUTOML = [sys.executable, "-c", "import cli; cli.main()"]
KEYS = {"latency_ms", "latency_spread_ms", "onnx_bytes", "params", "macs"}


def cnn(width: int, depth: int) -> nn.Module:
    from automl.tasks import get_task

    meta = {"input_shape": [1, 8, 8], "num_classes": 10}
    return get_task("image").build_model({"depth": depth, "width": width}, meta)


def test_measure_bigger_network_costs_more() -> None:
    x = torch.randn(1, 1, 8, 8)
    small, big = cnn(8, 1), cnn(64, 3)
    a, b = measure(small, x, LatencyTarget()), measure(big, x, LatencyTarget())
    for m in (a, b):
        assert m.latency_ms > 0 and m.spread_ms >= 0 and lat.MIN_RUNS <= m.runs <= lat.MAX_RUNS
        assert set(m.to_attrs()) >= KEYS
        json.dumps(m.to_attrs())  # plain JSON types
        assert Measurement.from_attrs(m.to_attrs()) == m
    assert b.params > 10 * a.params and b.macs > 10 * a.macs and b.onnx_bytes > 10 * a.onnx_bytes
    assert a.params == sum(p.numel() for p in small.parameters())
    # ONNX stores float32 weights: the file is at least 4 bytes per parameter
    assert b.onnx_bytes >= 4 * b.params
    # ~100x the MACs: slower, even on a busy machine
    assert b.latency_ms > a.latency_ms
    assert small.training  # the network measured is left as it was (a copy is exported)


def test_macs_of_known_layers() -> None:
    mlp = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    assert counters._hook_macs(mlp, torch.zeros(1, 20)) == 20 * 30 + 30 * 5
    # Torch-Pruning also counts bias adds and activations: a little more, for one sample (not 4)
    assert 750 <= counters.count_macs(mlp, torch.zeros(4, 20)) <= 1.1 * 750
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 6 * 6, 2))
    expected = 8 * 6 * 6 * 3 * 9 + 8 * 6 * 6 * 2
    assert counters._hook_macs(conv, torch.zeros(1, 3, 6, 6)) == expected
    gru = nn.GRU(4, 6, batch_first=True)
    # 3 gates x hidden x (input + hidden) per step, 5 steps
    assert counters._hook_macs(gru, torch.zeros(1, 5, 4)) == 5 * 3 * 6 * (4 + 6)


def test_batch_and_threads_of_the_target() -> None:
    x = torch.randn(1, 1, 8, 8)
    arr = lat.batch_input(x, 5)
    assert arr.shape == (5, 1, 8, 8)
    m = measure(cnn(16, 2), x, LatencyTarget(batch=64, threads=1))
    m1 = measure(cnn(16, 2), x, LatencyTarget(batch=1, threads=1))
    assert m.latency_ms > m1.latency_ms  # 64 rows a call take longer than one


def test_timed_seconds_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    sess_calls = []

    class Sess:  # a 1-ms "network": how long a timing lasts is decided by AUTOML_LATENCY_SECONDS
        def run(self, *_: object) -> None:
            sess_calls.append(1)
            time.sleep(0.001)

    for seconds in ("0.05", "0.25"):
        monkeypatch.setenv("AUTOML_LATENCY_SECONDS", seconds)
        assert lat.timed_seconds() == float(seconds)
        t0 = time.perf_counter()
        ms, _, runs = lat.time_session(Sess(), {})
        took = time.perf_counter() - t0 - lat.WARMUP_S
        assert float(seconds) <= took < float(seconds) + 0.2, (seconds, took)
        assert ms >= 1.0 and runs >= lat.MIN_RUNS
    monkeypatch.delenv("AUTOML_LATENCY_SECONDS")
    assert lat.timed_seconds() == lat.TIMED_S == 0.3
    for bad in ("fast", "0", "-1", "nan", "61"):
        monkeypatch.setenv("AUTOML_LATENCY_SECONDS", bad)
        with pytest.raises(ConfigError, match=r"AUTOML_LATENCY_SECONDS must be a number of seconds in \(0, 60\]"):
            LatencyTarget()


def test_cli_malformed_latency_seconds_is_one_line(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "AUTOML_LATENCY_SECONDS": "soon"}
    proc = subprocess.run([*AUTOML, "search", "--max-latency-ms", "1", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: AUTOML_LATENCY_SECONDS must be a number of seconds in (0, 60], got 'soon'"]


def test_cache_hits_in_the_same_and_a_reopened_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=url, study_name="c")
    model, x = cnn(8, 1), torch.zeros(1, 1, 8, 8)
    arch = {"family": "cnn", "widths": [8], "dropout": 0.1}
    first, hit1 = measure_cached(study, arch, model, x, LatencyTarget())
    again, hit2 = measure_cached(study, arch, model, x, LatencyTarget())
    other = optuna.load_study(storage=url, study_name="c")  # a resumed study, another worker
    # dropout does not change the inference graph: the same timing
    third, hit3 = measure_cached(other, {**arch, "dropout": 0.3}, model, x, LatencyTarget())
    assert (hit1, hit2, hit3) == (False, True, True)
    assert first == again == third
    # another target or another input shape is another measurement
    _, hit4 = measure_cached(other, arch, model, x, LatencyTarget(batch=2))
    assert not hit4
    assert lat.cache_key(arch, (1, 8, 8), LatencyTarget()) != lat.cache_key(arch, (3, 8, 8), LatencyTarget())


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_latency_ms": -1.0}, "--max-latency-ms must be a number of milliseconds > 0, got -1.0"),
        ({"max_latency_ms": 0.0}, "--max-latency-ms must be a number of milliseconds > 0"),
        ({"max_latency_ms": math.nan}, "--max-latency-ms must be a number of milliseconds > 0"),
        ({"max_latency_ms": 1.0, "latency_threads": 0}, "--latency-threads must be an integer in [1, 256], got 0"),
        ({"max_latency_ms": 1.0, "latency_batch": 0}, "--latency-batch must be an integer in [1, 4096], got 0"),
        ({"max_latency_ms": 1.0, "latency_device": "tpu"}, "--latency-device must be one of cpu, cuda, got 'tpu'"),
    ],
)
def test_bad_settings(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        SearchSettings(task="image", **kwargs)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_cuda_target_without_a_gpu() -> None:
    from automl.runtime.ort import gpu_present

    if gpu_present():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="--latency-device cuda: "):
        LatencyTarget(device="cuda")


def test_cli_bad_budget_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([*AUTOML, "search", "--max-latency-ms", "-2", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=180)
    err = proc.stderr.strip()
    assert proc.returncode != 0 and "Traceback" not in err
    assert err.splitlines() == ["error: --max-latency-ms must be a number of milliseconds > 0, got -2.0"]
    assert not (tmp_path / "automl.db").exists() or "image-digits" not in proc.stdout


SPACE = (
    "params:\n"
    "  depth: {type: int, low: 1, high: 3}\n"
    "  width: {type: categorical, choices: [8, 64]}\n"
    "  optimizer: {type: fixed, value: adamw}\n"
    "  lr: {type: float, low: 1.0e-2, high: 5.0e-2, log: true}\n"
    "  dropout: {type: float, low: 0.0, high: 0.3}\n"
    "  batch_size: {type: fixed, value: 64}\n"
)


@pytest.fixture
def fake_timing(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Timings that follow the parameter count (1 ms per 10,000), so which network is over a budget
    does not depend on the machine's load; returns the list of measured parameter counts."""
    calls: list[int] = []

    def fake(model: nn.Module, example: torch.Tensor, target: LatencyTarget) -> Measurement:
        n = counters.count_params(model)
        calls.append(n)
        return Measurement(latency_ms=n / 10_000, spread_ms=0.001, runs=10, onnx_bytes=4 * n, params=n, macs=10 * n)

    monkeypatch.setattr(lat, "measure", fake)
    return calls


def test_search_with_a_budget(tmp_path: Path, fake_timing: list[int]) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    budget = 3.0  # ms: width 8 nets (well under 30,000 parameters) fit, width 64 of depth >= 2 do not
    # ensemble=False: one timing per network is counted below (tests/study/test_ensemble_search.py times ensembles)
    kw = dict(task="image", space=str(space), epochs=1, pruner="none", out=str(tmp_path), study="lat",
              device="cpu", max_latency_ms=budget, sampler="random", seed=3, ensemble=False)
    result = run_search(SearchSettings(trials=8, **kw))
    study = optuna.load_study(study_name="lat", storage=result.storage)
    over = [t for t in study.trials if t.user_attrs.get("over_budget")]
    within = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert over and within, [t.params for t in study.trials]
    for t in over:  # never trained, the figure and the budget in the reason, the sampler told
        assert t.state == optuna.trial.TrialState.PRUNED
        assert t.user_attrs["epochs"] == 0 and t.user_attrs["history"] == [] and t.intermediate_values == {}
        ms = t.user_attrs["latency_ms"]
        assert ms > budget
        assert f"{ms:.4g} ms > 3 ms" in t.user_attrs["prune_reason"]
        assert t.constraints == {"latency_ms": pytest.approx(ms - budget)}
    for t in within:
        assert set(t.user_attrs) >= KEYS and t.user_attrs["latency_ms"] <= budget
        assert t.constraints["latency_ms"] <= 0 and t.user_attrs["epochs"] == 1
    out = result.to_json()["latency"]
    assert out["max_latency_ms"] == budget and out["target"] == {"device": "cpu", "batch": 1, "threads": 1}
    assert out["n_over_budget"] == len(over) and out["n_timed"] == len(study.trials) == 8
    assert out["best_within_budget"] is True
    assert any("latency budget 3 ms" in n for n in result.notes)
    ckpt = torch.load(result.best_pt, map_location="cpu", weights_only=True)
    assert ckpt["latency"]["max_latency_ms"] == budget and ckpt["latency"]["measured"]["latency_ms"] <= budget
    def archs(trials: list) -> set[tuple[int, int]]:
        return {(t.params["depth"], t.params["width"]) for t in trials}

    assert len(fake_timing) == len(archs(study.trials))  # one timing per network, dropout aside
    # the study keeps its budget: resumed without the option, every timing of a known network is reused
    again = run_search(SearchSettings(trials=3, **{**kw, "max_latency_ms": None}))
    assert again.latency is not None and again.latency["max_latency_ms"] == budget
    trials = optuna.load_study(study_name="lat", storage=result.storage).trials
    old, new = archs(trials[:8]), archs(trials[8:])
    assert len(fake_timing) == len(old | new)
    for t in trials[8:]:
        assert t.user_attrs["latency_cached"] is ((t.params["depth"], t.params["width"]) in old)
    with pytest.raises(ConfigError, match="was created with latency budget 3 ms"):
        run_search(SearchSettings(trials=1, **{**kw, "max_latency_ms": 5.0}))


def test_a_budget_nothing_meets_stops_the_search(tmp_path: Path, fake_timing: list[int]) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    settings = SearchSettings(task="image", space=str(space), epochs=1, pruner="none", out=str(tmp_path),
                              device="cpu", max_latency_ms=1e-6, trials=30)
    with pytest.raises(ConfigError) as err:
        run_search(settings)
    msg = str(err.value)
    assert f"{lat.MAX_OVER_STREAK} trials in a row were over the latency budget 1e-06 ms" in msg
    assert "shrink the space's depth, width or raise --max-latency-ms" in msg and "\n" not in msg
    trials = optuna.load_study(study_name="image-digits", storage=f"sqlite:///{tmp_path / 'automl.db'}").trials
    assert len(trials) == lat.MAX_OVER_STREAK and all(t.user_attrs["epochs"] == 0 for t in trials)


def _toy_over_budget(sampler: optuna.samplers.BaseSampler) -> tuple[int, int]:
    """Over-budget proposals in the first and second half of a 40-trial toy study: a network's
    latency is its width (in ms, budget 20: widths 32 and 64 are over), the value rewards width and
    a learning rate near 0.01; over-budget trials end as the objective ends them (pruned, constraint
    set, never trained)."""
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        width = trial.suggest_categorical("width", [8, 16, 32, 64])
        lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        trial.set_constraint("latency_ms", width - 20.0)
        if width > 20:
            trial.set_user_attr("over_budget", True)
            raise optuna.TrialPruned("over budget")
        return width / 16 - abs(math.log10(lr) + 2)

    study.optimize(objective, n_trials=40)
    flags = [bool(t.user_attrs.get("over_budget")) for t in study.trials]
    return sum(flags[:20]), sum(flags[20:])


def test_budget_aware_tpe_stops_proposing_networks_known_over_budget() -> None:
    """The cache filter (here: a network is known over budget once a trial of its width was) on top
    of TPE's constraint handling: far fewer over-budget proposals in the second half; random does not
    learn."""
    from automl.search.space import parse_space
    from automl.study._budget_sampler import BudgetAwareSampler
    from automl.study._samplers import make_sampler

    space = parse_space({"params": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}, "<t>")
    firsts, seconds = [], []
    for seed in range(3):
        sampler = BudgetAwareSampler(make_sampler("tpe", seed, space))

        def known_over(study: optuna.Study, params: dict) -> float | None:
            known = any(t.user_attrs.get("over_budget") and t.params.get("width") == params.get("width")
                        for t in study.get_trials(deepcopy=False))
            return params["width"] - 20.0 if known else None

        sampler.bind(known_over)
        first, second = _toy_over_budget(sampler)
        firsts.append(first)
        seconds.append(second)
        assert sampler.redrawn > 0
        r1, r2 = _toy_over_budget(make_sampler("random", seed, space))
        assert r1 + r2 >= 12  # half the widths are over: random keeps proposing them
    assert sum(seconds) <= sum(firsts) / 2, (firsts, seconds)


def test_compress_budget_stage(tmp_path: Path) -> None:
    from compress.measure import budget_stage
    from compress.verdict import Variant

    x = torch.randn(4, 1, 8, 8)
    path = tmp_path / "m.onnx"
    path.write_bytes(export.export_bytes(cnn(8, 1), x[:1]))
    target = {"device": "cpu", "batch": 1, "threads": 1}
    for budget, meets, key in ((1000.0, True, "max_latency_ms"), (1e-6, False, "max_ms")):  # max_ms: older best.pt
        v = Variant("fp32", "fp32", "fp32", str(path))
        ckpt = {"latency": {key: budget, "target": target, "measured": {"latency_ms": 0.5}}}
        info = budget_stage([v], ckpt, x, "best.pt")
        assert v.meets_budget is meets and v.target_latency_ms > 0
        assert info["max_latency_ms"] == budget and info["search_latency_ms"] == 0.5
        assert info["meets"] == (["fp32"] if meets else [])
    assert budget_stage([v], {}, x, "best.pt") is None
    for bad in ({"max_ms": -1, "target": target}, {"max_ms": 1, "target": {"threads": 10**9}}, "x"):
        with pytest.raises(ArtifactError, match="best.pt: unusable 'latency' entry"):
            budget_stage([v], {"latency": bad}, x, "best.pt")


def test_clock_of_the_target() -> None:
    assert LatencyTarget().clock == "thread-cpu"  # one CPU thread: the calling thread's CPU time
    assert LatencyTarget(threads=2).clock == "wall"  # a thread pool works outside the calling thread


def test_spec_round_trip() -> None:
    spec = LatencySpec(max_latency_ms=2.5, target=LatencyTarget(batch=8, threads=2))
    assert LatencySpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.to_dict()["max_latency_ms"] == 2.5  # the option's name, in studies and best.pt
    older = {"max_ms": 2.5, "target": {"device": "cpu", "batch": 8, "threads": 2}}  # stored before the rename
    assert LatencySpec.from_dict(older) == spec
    assert LatencySpec.from_dict(None) is None
    assert spec.describe() == "2.5 ms on cpu, batch 8, 2 threads"
