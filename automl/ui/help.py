"""The ``--help`` of the command line: how Typer shows it, and the longer option texts.

Imported by ``cli.py`` at start-up: it imports nothing but Typer (``automl --help`` and early errors
load neither PyTorch nor Optuna). Short texts stay beside their options in ``cli.py``; the long ones
are here, by command and option name.
"""

from __future__ import annotations

import inspect
from typing import Any


def plain_help_style() -> None:
    """Typer's help shows ``<bool>`` after plain switches (``--json <bool>``, yet ``--json true``
    fails) and ``{best_pt}`` in the usage line; show switches bare and arguments as ``BEST_PT``."""
    from typer import core

    option, argument = getattr(core, "TyperOption", None), getattr(core, "TyperArgument", None)
    if option is not None and hasattr(option, "display_type_rich"):
        shown = option.display_type_rich

        def display_type_rich(self: Any, ctx: Any) -> str | None:
            return None if getattr(self, "is_flag", False) else shown(self, ctx)

        option.display_type_rich = display_type_rich
    if argument is not None and hasattr(argument, "_usage_display_name"):

        def usage_name(self: Any) -> str:
            name = (self.metavar or self.name or "").upper()
            name = name if self.required else f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        argument._usage_display_name = usage_name


def reflow(doc: str | None) -> str | None:
    """A docstring with each paragraph on one line, so help text wraps at the terminal's width
    instead of keeping the source's line breaks (ragged at any other width)."""
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def task_help() -> str:
    from automl.tasks import list_tasks

    return "Task to search: " + " | ".join(list_tasks()) + "."


def sampler_help() -> str:
    from automl.study import list_samplers

    return "Optuna sampler: " + " | ".join(list_samplers()) + "."


def pruner_help() -> str:
    from automl.study import list_trial_pruners

    return "Trial pruner (stops bad trials early): " + " | ".join(list_trial_pruners()) + "."


JSON = "Print one JSON object on stdout and nothing else."
DEVICE = "auto | cpu | cuda | cuda:N."
OUT_OLD = "Old name of --out-dir."
MLFLOW = ("Log every trial to MLflow at this tracking URI (file:DIR, sqlite:///FILE, http://HOST:PORT): an "
          "experiment named after the study, one nested run per trial with its params, per-epoch metrics and "
          "state. Needs pip install 'automl\\[mlflow]'.")
TENSORBOARD = ("Write each trial's curves (losses, metric, learning rate per epoch) and parameters (hparams) as "
               "TensorBoard event files under DIR/<study>/trial-<n>. Needs pip install 'automl\\[tensorboard]'.")
MLFLOW_COMPRESS = ("Log this compress run to MLflow at this tracking URI, in the study's experiment: every variant "
                   "and the recommended ONNX model (with a signature). Needs pip install 'automl\\[mlflow]'.")
STUDY = "Study name (default: the storage's only study)."
STORAGE = "Optuna storage URL (default: the search's database under --out-dir)."
OUT_DIR = "The search's --out-dir folder: where its automl.db (or journal.log) and runs/<study>/ are."

SEARCH = {
    "data": "Data. image: 'digits' (built in), cifar10 | mnist | fashion-mnist (torchvision, needs internet), "
            "or a folder DIR/train/<class>/* (optional DIR/test/<class>/*) or DIR/<class>/*. "
            "tabular: wine | breast-cancer | diabetes (built in) or FILE.csv/.tsv/.parquet with --target. "
            "text: FILE.csv/.tsv with 'text' and 'label' columns, or a folder DIR/<class>/*.txt. "
            "Tables may be compressed (.gz, .bz2, .xz, .zst) or alone in a .zip.",
    "target": "Target column (tabular data).",
    "problem": "classification | regression (tabular; default: inferred from the target).",
    "metric": "The metric trials are judged by, stored with the study (worker, --cv, leaderboard, report, compress "
              "use it). Classification: accuracy (default) | balanced_accuracy | f1 (binary) | f1_macro | roc_auc "
              "(binary; one-vs-rest macro for multiclass) | average_precision (binary) | log_loss. Regression: rmse "
              "(default) | mae | r2 | mape. Binary f1, balanced_accuracy and accuracy also get a decision threshold "
              "chosen on validation. Anomaly task: roc_auc (default) | average_precision | f1 (at the threshold "
              "chosen on validation).",
    "class_weight": "none (default) | balanced: weigh each class by n / (classes x its rows) in the networks' loss "
                    "and the trees' class_weight (for imbalanced classes).",
    "categorical": "Tabular columns to treat as categories, comma-separated (default: text and bool columns, and "
                   "integer columns of 3-20 codes).",
    "numeric": "Tabular columns to treat as numbers, comma-separated (overrides the rule above).",
    "test_data": "A separate test file (tabular, text; same columns as --data): it is the test split, and --data "
                 "is split into training and validation only.",
    "cv": "Folds of cross-validation per trial (tabular, text): each trial trains K times and scores the mean "
          "over held-out folds; 0 = off. Default: 5 when the training + validation rows are fewer than 1000, "
          "else off.",
    "space": "Search-space YAML file, or a built-in name: image, image-full, tabular, text (default: the task's "
             "own).",
    "trials": "Number of trials to add to the study (default: 20; with --timeout: as many as fit before the "
              "deadline; with both, whichever ends first).",
    "timeout": "Deadline in seconds, best.pt included: without --trials, trials run until it. A trial still "
               "training then is stopped and kept at its last completed epoch (marked 'deadline'; it can be "
               "best.pt).",
    "epochs": "Maximum epochs a trial may train (default: the task's, 10; text 5).",
    "objectives": "Several objectives: the task's metric, then costs to minimise, comma-separated from latency "
                  "(ms, ONNX Runtime on the target), size (ONNX bytes), macs, params; e.g. accuracy,latency. The "
                  "study then has a Pareto front (automl trials --pareto); any --pruner but none means the "
                  "cost-aware trial pruner.",
    "no_ensemble": "Do not combine the search's trials into an ensemble at the end (by default best.pt is "
                   "a weighted ensemble of trials when it beats the best single trial on validation).",
    "save_front": "With --objectives: also write one checkpoint per Pareto-front member as "
                  "<out-dir>/<study>/front/trial-N.pt.",
    "storage": "Optuna storage URL (default: sqlite:///<out>/automl.db).",
    "study": "Study name (default: <task>-<data>); an existing study resumes.",
    "out_dir": "Output folder for the study database and <out-dir>/<study>/best.pt.",
    "seed": "Seed of the data split, the sampler and each trial.",
    "image_size": "Resize folder images to this square size (default: the first image's size).",
    "jobs": "Worker processes on the study (> 1: a journal file under --out-dir unless --storage is a database "
            "server).",
    "heartbeat": "Seconds between trial heartbeats (database storages; 0 = off).",
    "grace": "Seconds without a heartbeat before a trial's worker counts as dead and the trial is retried once "
             "(default: 3 x --heartbeat).",
    "max_latency_ms": "Latency budget in ms: every sampled network is exported to ONNX and timed on the target "
                      "(random weights) before training; a slower one is not trained and the sampler learns to "
                      "avoid it. best.pt is the best trial within it.",
    "latency_batch": "Latency target: rows per call (with --max-latency-ms).",
    "latency_device": "Latency target: cpu | cuda (ONNX Runtime's provider; cuda needs a GPU).",
    "latency_threads": "Latency target: ONNX Runtime intra-op threads (1 = one core).",
    "score": "Compression-aware scoring: none | int8 | fp16 (GPU only). Each trained trial is also quantized as "
             "'automl compress' does (INT8: calibrated on 256 training rows) and its value is the quantized "
             "model's validation metric; with a latency budget or objective, the quantized model's latency "
             "counts.",
}

SERVE = {
    "model": "An automl .onnx file (from 'automl compress').",
    "host": "Interface to listen on (0.0.0.0 = every interface).",
    "port": "TCP port (0 = any free port).",
    "max_batch": "Most samples per model call when batching requests.",
    "batch_wait_ms": "Longest wait (ms) for concurrent requests to join a batch.",
    "api_key": "Require 'Authorization: Bearer KEY' (every path but /health). Set it in the AUTOML_API_KEY "
               "environment variable: a flag is visible to every user in ps.",
    "threads": "ONNX Runtime intra-op threads (0 = one per core).",
    "max_body_mb": "Largest request body accepted (MiB); larger gets 413.",
    "max_samples": "Most samples in one request; more gets 413.",
    "max_image_pixels": "Most pixels of one uploaded image, checked before decoding; more gets 413 (default: 16 "
                        "megapixels, or 256 x the model input if larger).",
    "max_text_chars": "Most characters of one text; more gets 413 (default 100000).",
    "header_timeout": "Seconds a client has to send a request's headers before it is disconnected.",
    "body_timeout": "Seconds a request's body may take to arrive after its headers; then 408.",
    "max_header_kb": "Largest request line + headers (KiB); larger gets 431 and the connection closed.",
    "access_log": "Log every request (costs throughput).",
    "as_json": "Print the server's URL and model as one JSON object on stdout, then serve.",
}

WORKER = {
    "storage": "Storage of the study: postgresql://user:pass@host/db, mysql+pymysql://…, sqlite:///file.db or a "
               "journal file (*.log).",
    "study": "Name of an existing study (created by 'automl search').",
    "trials": "Trials this worker adds (default: until --timeout or Ctrl-C).",
    "timeout": "Deadline in seconds: a trial still training then is stopped and kept at its last completed epoch "
               "(marked 'deadline').",
    "out_dir": "Folder for this machine's trial weights and <out-dir>/<study>/best.pt.",
    "heartbeat": "Seconds between trial heartbeats (default: the study's; 0 = off).",
    "grace": "Seconds without a heartbeat before a trial counts as dead (default: study's).",
}

COMPRESS = {
    "out_dir": "Output folder (default: compressed/ beside the checkpoint).",
    "prune_ratio": "Share of channels to remove from every prunable layer, in [0, 1); 0 = no pruning.",
    "finetune_epochs": "Epochs of fine-tuning after pruning (the search's training loop).",
    "distill": "Fine-tune the pruned model by distillation from the unpruned one (KL on softened logits + the task "
               "loss; classification only).",
    "distill_weight": "Share of the distillation (soft-target) term in the loss, in [0, 1].",
    "calib_samples": "Training samples used to calibrate static INT8 (streamed in small batches).",
    "calibration": "Static INT8 calibration: auto (MinMax, Entropy, Percentile x per-channel/per-tensor, chosen by "
                   "validation accuracy) | minmax | entropy | percentile.",
    "fallback": "When INT8 loses more than --max-drop on validation, measure each layer's sensitivity and keep the "
                "most sensitive layers FP32 until it does not.",
    "max_drop": "How much of the search's metric a variant may lose against the original model: points (x 100) "
                "for a metric to maximise (accuracy, roc_auc, f1, r2, ...), per cent of the original for one to "
                "minimise (rmse, mae, mape, log_loss).",
    "threads": "Intra-op threads of PyTorch and ONNX Runtime for this run (0 = their defaults).",
    "search": "Search compression recipes with an Optuna multi-objective study (validation metric vs measured "
              "batch-1 latency): prune ratio, importance, fine-tune epochs, distillation, quantization, "
              "calibration. Resumable: the same command adds trials.",
    "max_latency_ms": "--search: recommend the most accurate variant at most this slow (ms, batch 1); without it "
                      "the fastest within --max-drop.",
}

STATES = "complete | pruned | fail | running."
PARETO = ("Only the Pareto front (a study searched with --objectives): each member's objectives and measured "
          "latency, ONNX size and parameters.")
PREDICT_INPUTS = "Image files or folders; a CSV/TSV/Parquet (tabular); text lines, .txt files or '-' for stdin (text)."
HTML = "HTML file to write (default: <out-dir>/<study>/report.html)."
SORT = "Order: number | value (best first) | duration (longest first)."
DASHBOARD_JSON = "Print one JSON object (url, port, studies) once listening."
