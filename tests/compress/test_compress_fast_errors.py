"""``automl compress`` refuses a wrong option or a file that is not a best.pt before it imports
PyTorch, ONNX or Optuna (issue 24.5: ``compress nope.pt`` took 6.7 s, file-content errors 9-16 s).
Checked by the modules loaded, not by a clock: one fresh interpreter runs every case."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

HEAVY = ("torch", "onnx", "onnxruntime", "optuna", "torch_pruning")

SCRIPT = """
import json, sys
import cli
HEAVY = json.loads(sys.argv[2])
out = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["automl", "compress", *args]
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out.append([code, [m for m in HEAVY if m in sys.modules]])
print(json.dumps(out))
"""


def test_compress_errors_come_before_the_heavy_imports(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("hello.txt", "a zip file, but no checkpoint inside")
    text = tmp_path / "data.csv"
    text.write_text("a,b\n1,2\n")
    cases = [
        ([str(tmp_path / "nope.pt")], "checkpoint not found"),
        ([str(tmp_path)], "is a folder"),
        ([str(text)], "not a best.pt (not a PyTorch checkpoint file)"),
        ([str(other)], "not a readable automl checkpoint (a zip file, but not one torch.save wrote"),
        ([str(tmp_path / "nope.pt"), "--search"], "checkpoint not found"),
        ([str(tmp_path / "nope.pt"), "--prune-ratio", "5"], "prune ratio must be in [0, 1)"),
        ([str(tmp_path / "nope.pt"), "--distill-weight", "2"], "distill weight must be in [0, 1]"),
    ]
    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-c", SCRIPT, json.dumps([a for a, _ in cases]), json.dumps(HEAVY)]
    proc = subprocess.run(argv, cwd=root,
                          capture_output=True, text=True, timeout=300)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(cases), proc.stderr
    for (args, fragment), (code, loaded), line in zip(cases, results, errors, strict=True):
        assert code == 1 and fragment in line, (args, line)
        assert loaded == [], (args, loaded)  # nothing heavy imported before the error
