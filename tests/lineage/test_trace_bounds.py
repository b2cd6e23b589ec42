"""``automl lineage`` on hostile files: every size, count and depth a file controls is bounded, nothing in a
file runs, and each problem is a named link or one line, never a traceback or a hang."""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from pathlib import Path

from typer.testing import CliRunner

import cli
from automl.lineage import trace as tr


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record_file(path: Path, parents: list[dict]) -> Path:
    path.write_text(json.dumps({"lineage": {"lineage_version": 1, "artifact": "compress-report", "steps": [],
                                            "parents": parents}}))
    return path


def _onnx_with(path: Path, value: str) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    model.metadata_props.add(key="automl.lineage", value=value)
    onnx.save(model, str(path))
    return path


def test_a_chain_deeper_than_the_limit_stops(tmp_path: Path) -> None:
    n = tr.MAX_DEPTH + 5
    nxt = _record_file(tmp_path / f"c{n}.json", [])
    for i in range(n - 1, -1, -1):  # each with the true hash of the next: a valid, very long chain
        nxt = _record_file(tmp_path / f"c{i}.json", [{"name": nxt.name, "path": str(nxt), "sha256": _sha(nxt)}])
    got = tr.trace(tmp_path / "c0.json")
    assert not got["ok"] and got["links"][-1]["status"] == "too deep"
    assert len(got["links"]) == tr.MAX_DEPTH + 2
    assert all(link["status"] == "verified" for link in got["links"][1:-1])


def test_a_loop_of_paths_stops(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    _record_file(a, [{"name": "b.json", "path": str(b), "sha256": "0" * 64}])
    _record_file(b, [{"name": "a.json", "path": str(a), "sha256": "0" * 64}])
    got = tr.trace(a)
    assert [link["status"] for link in got["links"]] == ["start", "changed", "loop"]


def test_parents_are_capped_and_devices_are_never_read(tmp_path: Path) -> None:
    many = [{"name": f"p{i}.pt", "path": str(tmp_path / f"p{i}.pt"), "sha256": "1" * 64} for i in range(100)]
    many.insert(0, {"name": "zero", "path": "/dev/zero", "relpath": "../../../../../../dev/zero", "sha256": "2" * 64})
    got = tr.trace(_record_file(tmp_path / "r.json", many))
    assert len(got["links"]) == 1 + tr.MAX_PARENTS
    assert got["links"][1]["name"] == "zero" and got["links"][1]["status"] == "missing"  # not a regular file


def test_an_oversized_or_malformed_record_is_one_named_problem(tmp_path: Path) -> None:
    big = _onnx_with(tmp_path / "big.onnx", json.dumps({"x": "a" * (tr.MAX_RECORD_CHARS + 10)}))
    got = tr.trace(big)
    assert got["links"][0]["status"] == "unreadable" and "the limit is" in got["links"][0]["error"]
    deep = _onnx_with(tmp_path / "deep.onnx", "[" * 100_000 + "]" * 100_000)
    assert "not valid JSON" in tr.trace(deep)["links"][0]["error"]
    res = CliRunner().invoke(cli.app, ["lineage", str(big)])
    assert res.exit_code == 1 and "Traceback" not in res.output


def test_a_pickle_with_code_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):  # os.system("touch marker") on an unsafe load
            import os

            return (os.system, (f"touch {marker}",))

    pt = tmp_path / "evil.pt"
    with zipfile.ZipFile(pt, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps({"lineage": {"parents": []}, "x": Evil()}))
    got = tr.trace(pt)
    assert got["links"][0]["status"] == "unreadable" and not marker.exists()


def test_a_missing_file_is_one_line() -> None:
    res = CliRunner().invoke(cli.app, ["lineage", "/nonexistent/model.onnx"])
    assert res.exit_code == 1 and "not found" in res.stderr and "Traceback" not in res.output


def test_records_of_the_wrong_shape_are_read_without_a_crash(tmp_path: Path) -> None:
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"lineage": {"parents": 5, "data": {"rows_sha256": [1]}, "files": [1, 2], "steps": 3,
                                           "study": "x", "metrics": []}}))
    got = tr.trace(odd)
    assert [link["status"] for link in got["links"]] == ["start"]
    res = CliRunner().invoke(cli.app, ["lineage", str(odd)])  # the tree draws it too
    assert "Traceback" not in res.output and "odd.json" in res.stdout


def test_within_never_opens_a_parent_outside_the_folder(tmp_path: Path) -> None:
    """The server traces with ``within``: a record naming a file elsewhere (by absolute or relative
    path) gets "missing", never that file's hash, and the study database is not opened."""
    outside = _record_file(tmp_path / "secret.json", [])  # a file the server has no business reading
    served = tmp_path / "run" / "compressed"
    served.mkdir(parents=True)
    parent = {"name": "secret.json", "path": str(outside), "relpath": "../../secret.json", "sha256": _sha(outside)}
    rec = _record_file(served / "r.json", [parent])
    assert tr.trace(rec)["links"][1]["status"] == "verified"  # the CLI on the user's own files: found
    got = tr.trace(rec, within=served.parent)
    assert got["links"][1]["status"] == "missing" and got["links"][1]["sha256"] is None
    inside = _record_file(tmp_path / "run" / "best.json", [])
    rec = _record_file(served / "r2.json", [{"name": "best.json", "path": "", "relpath": "../best.json",
                                            "sha256": _sha(inside)}])
    assert tr.trace(rec, within=served.parent)["links"][1]["status"] == "verified"
