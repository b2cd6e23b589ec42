"""Issue 29, done-when 4 and 5: ``automl search --mlflow file:DIR --tensorboard DIR`` logs every trial
as a run nested under the study run (params, one metric per objective, per-epoch metrics as steps,
state tags) that ``mlflow.search_runs`` returns, and writes event files TensorBoard's own reader
parses into the trial's scalars and hparams; best.pt becomes the study's Optuna artifact;
``automl compress --mlflow`` logs its variants and the recommended ONNX model with a signature to
the same experiment."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

import cli
from tests.study._spaces import tiny_space

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

TRIALS, EPOCHS = 3, 2


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny search on digits with both trackers (3 trials x 2 epochs of a one-layer CNN)."""
    tmp = tmp_path_factory.mktemp("tracked")
    space = tmp / "space.yaml"
    space.write_text(tiny_space())
    uri = f"file:{tmp / 'mlruns'}"
    proc = CliRunner().invoke(cli.app, [
        "search", "--task", "image", "--space", str(space), "--trials", str(TRIALS), "--epochs", str(EPOCHS),
        "--pruner", "none", "--device", "cpu", "--out-dir", str(tmp / "runs"), "--json",
        "--mlflow", uri, "--tensorboard", str(tmp / "tb")])
    assert proc.exit_code == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    study = optuna.load_study(study_name=result["study"], storage=result["storage"])
    return {"tmp": tmp, "uri": uri, "result": result, "study": study}


def _runs(uri: str, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment])


def test_trials_are_nested_runs_with_params_and_epochs(tracked: dict) -> None:
    from mlflow import MlflowClient

    study, uri = tracked["study"], tracked["uri"]
    runs = _runs(uri, study.study_name)  # the experiment is named after the study
    study_runs = runs[runs["tags.automl.role"] == "study"]
    trial_runs = runs[runs["tags.automl.role"] == "trial"]
    assert len(study_runs) == 1 and len(trial_runs) == TRIALS
    parent = study_runs.iloc[0]
    assert parent["tags.mlflow.runName"] == study.study_name and parent["status"] == "FINISHED"
    assert set(trial_runs["tags.mlflow.parentRunId"]) == {parent["run_id"]}
    client = MlflowClient(tracking_uri=uri)
    for trial in study.trials:
        row = trial_runs[trial_runs["tags.mlflow.runName"] == str(trial.number)].iloc[0]
        assert row["tags.state"] == "COMPLETE" and row["status"] == "FINISHED"
        assert row["params.lr"] == str(trial.params["lr"])  # the sampled parameters, as MLflow keeps them (text)
        assert row["metrics.accuracy"] == pytest.approx(trial.value)  # one metric per objective
        history = trial.user_attrs["history"]
        for key, name in (("train_loss", "train_loss"), ("val_loss", "val_loss"), ("val_metric", "val_accuracy"),
                          ("lr", "lr")):
            steps = client.get_metric_history(row["run_id"], name)
            assert [m.step for m in sorted(steps, key=lambda m: m.step)] == list(range(1, EPOCHS + 1))
            got = [m.value for m in sorted(steps, key=lambda m: m.step)]
            assert got == pytest.approx([r[key] for r in history], rel=1e-4, abs=1e-6), name
    best = tracked["result"]
    assert parent["metrics.best_accuracy"] == pytest.approx(best["best_value"])
    assert parent["tags.best_trial"] == str(best["best_trial"])
    names = {a.path for a in client.list_artifacts(parent["run_id"])}
    assert {"best.json", "search_result.json"} <= names


def test_tensorboard_event_files_parse_into_the_trials_scalars(tracked: dict) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    study = tracked["study"]
    for trial in study.trials:
        acc = EventAccumulator(str(tracked["tmp"] / "tb" / study.study_name / f"trial-{trial.number}"))
        acc.Reload()
        history = trial.user_attrs["history"]
        for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("accuracy/val", "val_metric"),
                         ("lr", "lr")):
            events = acc.Scalars(tag)
            assert [e.step for e in events] == list(range(1, EPOCHS + 1)), tag
            assert [e.value for e in events] == pytest.approx([r[key] for r in history], rel=1e-4, abs=1e-6), tag
        assert [e.value for e in acc.Scalars("hparam/accuracy")] == pytest.approx([trial.value])
        content = acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
        hparams = metadata.parse_session_start_info_plugin_data(content).hparams
        assert hparams["lr"].number_value == pytest.approx(trial.params["lr"])
        assert hparams["state"].string_value == "COMPLETE"


def test_best_pt_is_the_studys_optuna_artifact(tracked: dict) -> None:
    from optuna.artifacts import get_all_artifact_meta

    best_pt = Path(tracked["result"]["best_pt"])
    metas = get_all_artifact_meta(tracked["study"])
    stored = [m for m in metas if m.filename == "best.pt"]
    assert len(stored) == 1
    assert filecmp.cmp(tracked["tmp"] / "runs" / "artifacts" / stored[0].artifact_id, best_pt, shallow=False)


def test_compress_logs_variants_and_the_onnx_model_to_the_study(tracked: dict) -> None:
    import mlflow
    from optuna.artifacts import get_all_artifact_meta

    from compress.pipeline import CompressSettings, run_compress

    study, uri = tracked["study"], tracked["uri"]
    settings = CompressSettings(checkpoint=tracked["result"]["best_pt"], finetune_epochs=1, quantize="int8",
                                calibration="minmax", fallback=False, warmup=1, repeats=3, threads=1, device="cpu")
    result = run_compress(settings, mlflow=uri)
    report = result.report
    assert not [n for n in report["notes"] if "MLflow" in n or "artifact" in n], report["notes"]
    runs = _runs(uri, study.study_name)  # the same experiment as the search
    parent = runs[runs["tags.automl.role"] == "study"].iloc[0]
    compress_run = runs[runs["tags.automl.role"] == "compress"]
    assert len(compress_run) == 1
    compress_run = compress_run.iloc[0]
    assert compress_run["tags.mlflow.parentRunId"] == parent["run_id"]
    assert compress_run["params.prune_ratio"] == str(settings.prune_ratio)
    variants = runs[runs["tags.automl.role"] == "variant"]
    assert set(variants["tags.mlflow.runName"]) == {v["name"] for v in report["variants"]}
    assert set(variants["tags.mlflow.parentRunId"]) == {compress_run["run_id"]}
    for v in report["variants"]:
        row = variants[variants["tags.mlflow.runName"] == v["name"]].iloc[0]
        assert row["metrics.accuracy"] == pytest.approx(v["metric_value"])
        assert row["metrics.size_bytes"] == v["size_bytes"]
        assert row["metrics.latency_b64_p50_ms"] == pytest.approx(v["latency_ms"]["b64"]["p50"])
        assert row["tags.verdict"] == v["verdict"]
    models = mlflow.search_logged_models(experiment_ids=[parent["experiment_id"]], output_format="list")
    assert [m.source_run_id for m in models] == [compress_run["run_id"]]
    info = mlflow.models.get_model_info(models[0].model_uri)
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 1, 8, 8)
    assert info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 10)
    loaded = mlflow.pyfunc.load_model(models[0].model_uri)
    example = loaded.input_example
    assert example is not None and tuple(example.shape[1:]) == (1, 8, 8)
    assert [a.path for a in mlflow.MlflowClient(tracking_uri=uri).list_artifacts(compress_run["run_id"])] == [
        "compress_report.json"]
    # the recommended file is the study's Optuna artifact too
    assert "best.onnx" in {m.filename for m in get_all_artifact_meta(study)}


def test_dashboard_serves_the_best_pt_artifact(tracked: dict) -> None:
    import urllib.request

    from optuna.artifacts import get_all_artifact_meta

    from automl.study.dashboard import make_dashboard

    study = tracked["study"]
    meta = next(m for m in get_all_artifact_meta(study) if m.filename == "best.pt")
    board = make_dashboard(tracked["result"]["storage"], port=0, out_dir=tracked["tmp"] / "runs",
                           study=study.study_name).start()
    try:
        url = f"http://127.0.0.1:{board.port}/artifacts/{board.study_ids[study.study_name]}/{meta.artifact_id}"
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - a loopback URL we started
            body = resp.read()
    finally:
        board.close()
    assert body == Path(tracked["result"]["best_pt"]).read_bytes()
