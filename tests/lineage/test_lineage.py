"""Lineage end to end (issue 29): the shared tiny digits search and one compress run; ``automl lineage`` walks
every file back to the study and trial with verified hashes, names a changed or missing link, serve's
``/metadata`` carries the chain (real HTTP), and no storage password reaches any artifact."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from typer.testing import CliRunner

import cli

COMPRESS = ["--prune-ratio", "0.5", "--finetune-epochs", "1", "--quantize", "int8", "--calib-samples", "64",
            "--calibration", "minmax", "--max-drop", "100",  # every variant is made
            "--warmup", "1", "--repeats", "3", "--threads", "1"]
PG_URL = "postgresql://u:secret@h/db"
#: best.onnx is a copy of the recommended variant: its chain back to best.pt, by that variant
CHAINS = {"fp32": ["best.onnx", "best.pt"], "pruned": ["best.onnx", "pruned.pt", "best.pt"],
          "int8": ["best.onnx", "model.onnx", "best.pt"],
          "pruned-int8": ["best.onnx", "model.pruned.onnx", "pruned.pt", "best.pt"]}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lineage_json(path: Path) -> tuple[int, dict]:
    res = CliRunner().invoke(cli.app, ["lineage", str(path), "--json"])
    return res.exit_code, json.loads(res.stdout)


@pytest.fixture(scope="module")
def chain(digits_run: dict, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """``automl compress`` (prune 0.5, fine-tune, INT8) of the shared digits search's best.pt, into a
    folder of this module (the search's folder stays read-only)."""
    from automl.study import SearchSettings

    best = Path(digits_run["best_pt"])
    comp = tmp_path_factory.mktemp("lineage") / "compressed"
    res = CliRunner().invoke(cli.app, ["compress", str(best), "--json", "--out-dir", str(comp), *COMPRESS])
    assert res.exit_code == 0, res.output
    report = json.loads((comp / "compress_report.json").read_text())
    settings = SearchSettings(task="image", data="digits", trials=3, epochs=4, pruner="none", out=digits_run["out"],
                              device="cpu", seed=0)  # conftest's digits_run: resuming it opens the same study
    return SimpleNamespace(best=best, comp=comp, settings=settings, report=report,
                           expected=CHAINS[report["recommended_variant"]],
                           best_json=json.loads((best.parent / "best.json").read_text()))


def test_lineage_lists_every_step_back_to_the_study_with_verified_hashes(chain: SimpleNamespace) -> None:
    code, got = lineage_json(chain.comp / "best.onnx")
    assert code == 0 and got["ok"] and got["problems"] == []
    assert [link["name"] for link in got["links"]] == chain.expected
    files = {"best.pt": chain.best, **{p.name: p for p in chain.comp.iterdir()}}
    for link in got["links"][1:]:  # each parent's hash is the file on disk, and what its child recorded
        assert link["status"] == "verified"
        assert link["sha256"] == link["expected_sha256"] == sha(files[link["name"]])
    assert got["links"][0]["sha256"] == sha(chain.comp / "best.onnx")
    study = got["study"]
    assert study["status"] == "verified"
    assert (study["name"], study["trial"]) == (chain.best_json["study"], chain.best_json["trial"])
    assert study["value"] == chain.best_json["value"]
    # the longest branch: quantize <- export <- prune + fine-tune <- search <- the study's trial
    code, got = lineage_json(chain.comp / "model.pruned.int8.onnx")
    assert code == 0 and got["ok"]
    assert [link["name"] for link in got["links"]] == ["model.pruned.int8.onnx", "model.pruned.onnx", "pruned.pt",
                                                       "best.pt"]
    assert [[s["step"] for s in link["steps"]] for link in got["links"]] == [
        ["quantize"], ["export"], ["prune", "fine-tune"], ["search"]]
    assert got["links"][0]["steps"][0]["settings"]["calibration"]  # the chosen calibration recipe
    assert got["links"][2]["steps"][0]["settings"]["prune_ratio"] == 0.5
    assert got["links"][0]["measured"]["variant"] == "pruned-int8"  # the report beside it lists this very file
    assert got["study"]["status"] == "verified"


def test_records_carry_data_metrics_and_versions(chain: SimpleNamespace) -> None:
    from automl.artifacts import load_checkpoint
    from automl.lineage.trace import read_record

    rec = load_checkpoint(chain.best)["lineage"]  # weights_only loading reads it
    assert set(rec["versions"]) >= {"python", "torch", "onnx", "onnxruntime", "optuna", "automl", "git_commit"}
    assert rec["metrics"]["test_accuracy"] == chain.best_json["metrics"]["test_accuracy"]
    assert rec["data"]["sizes"] == chain.best_json["metrics"]["sizes"]
    assert rec["data"]["classes"] == [str(i) for i in range(10)] and len(rec["data"]["rows_sha256"]) == 64
    assert rec["steps"][0]["settings"]["params"] == chain.best_json["params"]
    prints = {read_record(p)["data"]["rows_sha256"] for p in
              (chain.best, chain.comp / "pruned.pt", chain.comp / "model.onnx", chain.comp / "model.int8.onnx",
               chain.comp / "compress_report.json")}
    assert prints == {rec["data"]["rows_sha256"]}  # compress loaded the very rows the search used
    report = json.loads((chain.comp / "compress_report.json").read_text())
    assert report["lineage"]["files"]["best.onnx"] == sha(chain.comp / "best.onnx")
    assert report["lineage"]["parents"][0]["sha256"] == sha(chain.best)


def test_a_changed_byte_or_a_missing_file_is_named(chain: SimpleNamespace, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(chain.comp.parent, copy)  # the same tree elsewhere: found by the recorded relative paths
    rel = chain.report["lineage"]["parents"][0]["relpath"]
    (copy / "compressed" / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(chain.best, copy / "compressed" / rel)
    code, got = lineage_json(copy / "compressed" / "best.onnx")
    assert code == 0 and got["ok"]
    best = copy / "compressed" / rel
    data = bytearray(best.read_bytes())
    data[len(data) // 2] ^= 1  # one byte
    best.write_bytes(bytes(data))
    code, got = lineage_json(copy / "compressed" / "best.onnx")
    assert code == 1 and not got["ok"]
    status = [link["status"] for link in got["links"]]
    assert status == ["start"] + ["verified"] * (len(chain.expected) - 2) + ["changed"]
    changed = got["links"][-1]
    assert changed["sha256"] == sha(best) != changed["expected_sha256"] == sha(chain.best)
    assert got["problems"][0].startswith(f"best.pt changed since {chain.expected[-2]} was made from it")
    res = CliRunner().invoke(cli.app, ["lineage", str(copy / "compressed" / "best.onnx")])  # the Rich tree
    assert res.exit_code == 1 and "changed" in res.stdout and "problem(s) in its lineage" in res.stderr


def test_metadata_serves_the_lineage(chain: SimpleNamespace, tmp_path: Path) -> None:
    from tests._onnx_helpers import ServerProcess

    with ServerProcess(chain.comp / "best.onnx", "--threads", "1", log=tmp_path / "server.log") as srv:
        r = httpx.get(f"{srv.url}/metadata", timeout=30)
    assert r.status_code == 200, r.text
    lin = r.json()["lineage"]
    assert lin["ok"] and [link["name"] for link in lin["links"]] == chain.expected
    assert [link["status"] for link in lin["links"]] == ["start"] + ["verified"] * (len(chain.expected) - 1)
    assert lin["links"][-1]["sha256"] == sha(chain.best)
    # the server does not open the study database a record names (its path is the file author's word)
    assert lin["study"]["status"] == "not checked" and lin["study"]["trial"] == chain.best_json["trial"]
    assert all("path" not in link for link in lin["links"])  # the server's folders are not shown
    assert str(chain.comp) not in r.text


def test_no_storage_password_reaches_any_artifact(chain: SimpleNamespace, tmp_path: Path) -> None:
    """best.pt written for a study whose storage URL holds a password (the real write path, with the
    URL swapped: no PostgreSQL server is needed), then compressed and carded: no file holds it."""
    from automl.study import prepare_search
    from automl.study._best import write_best

    runs = tmp_path / "runs"  # a copy of the shared search's study: resuming it changes nothing there
    runs.mkdir()
    for db in Path(chain.settings.out).glob("automl.db*"):
        shutil.copy(db, runs / db.name)
    run = prepare_search(dataclasses.replace(chain.settings, out=str(runs)))
    run = dataclasses.replace(run, url=PG_URL, run_dir=tmp_path / "pg")
    shutil.copytree(chain.best.parent / "trials", tmp_path / "pg" / "trials")  # the kept weights: no retraining
    assert write_best(run, retrain=False) is not None
    best = tmp_path / "pg" / "best.pt"
    res = CliRunner().invoke(cli.app, ["compress", str(best), "--json", *COMPRESS, "--finetune-epochs", "0",
                                                   "--quantize", "none"])
    assert res.exit_code == 0, res.output
    assert CliRunner().invoke(cli.app, ["card", str(best.parent / "compressed" / "best.onnx")]).exit_code == 0
    files = [p for p in (tmp_path / "pg").rglob("*") if p.is_file()]
    assert {"best.pt", "best.json", "pruned.pt", "best.onnx", "compress_report.json", "MODEL_CARD.md"} <= \
        {p.name for p in files}
    assert [p.name for p in files if b"secret" in p.read_bytes()] == []
    from automl.lineage.trace import read_record

    assert read_record(best)["study"]["storage"] == "postgresql://u:***@h/db"
    code, got = lineage_json(best.parent / "compressed" / "best.onnx")
    assert code == 0 and got["study"]["status"] == "not checked" and "secret" not in json.dumps(got)
    (best.parent / "compressed" / "pruned.pt").unlink()  # this tree is the only copy: the link is missing
    code, got = lineage_json(best.parent / "compressed" / "best.onnx")
    assert code == 1 and got["links"][1]["status"] == "missing" and "pruned.pt" in got["problems"][0]
    code, got = lineage_json(best.parent / "compressed" / "compress_report.json")  # checks the set it lists
    assert code == 1 and got["links"][0]["files"]["pruned.pt"] == "missing"
    assert got["links"][0]["files"]["best.onnx"] == "verified" and got["links"][1]["status"] == "verified"
    onnx_file = best.parent / "compressed" / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")  # a changed file the report lists, as the start
    code, got = lineage_json(onnx_file)
    assert code == 1 and got["links"][0]["status"] == "changed"
    assert "model.onnx differs from the file compress_report.json beside it lists" in got["problems"][0]


def test_storage_password_is_hidden_everywhere_in_a_record() -> None:
    from automl.lineage import hide_password, make_record

    assert hide_password(PG_URL) == "postgresql://u:***@h/db"
    rec = make_record("checkpoint", [{"step": "search", "settings": {"note": f"from {PG_URL}"}}],
                      study={"storage": PG_URL}, data={"source": "https://u:pw@example.com/x.csv"})
    text = json.dumps(rec)
    assert "secret" not in text and ":pw@" not in text and "postgresql://u:***@h/db" in text


def test_image_model_card_figures_equal_the_report_and_the_model(chain: SimpleNamespace) -> None:
    """The card's figures are compress_report.json's, whose per-class figures are those of the
    recommended ONNX file on the test split (recomputed here with sklearn)."""
    import numpy as np
    import onnxruntime as ort
    from sklearn.metrics import precision_recall_fscore_support

    from automl.data.bundle import DataConfig
    from automl.tasks import get_task
    from tests.lineage.card_checks import check_card_equals_report

    check_card_equals_report(chain.comp / "MODEL_CARD.md", chain.report)
    bundle = get_task("image").load_data(DataConfig(source="digits"))
    sess = ort.InferenceSession(str(chain.comp / "best.onnx"), providers=["CPUExecutionProvider"])
    pred = sess.run(["logits"], {"input": bundle.x_test.numpy()})[0].argmax(1)
    p, r, f, s = precision_recall_fscore_support(bundle.y_test.numpy(), pred, labels=list(range(10)), zero_division=0)
    rows = chain.report["evaluation"]["per_class"]
    assert [row["support"] for row in rows] == s.tolist()
    assert np.allclose([row["recall"] for row in rows], r, atol=5e-5)
    assert np.allclose([row["f1"] for row in rows], f, atol=5e-5)
