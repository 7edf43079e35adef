"""The study's result store: rows written and read, and resuming an interrupted study.

Results go to ``rows.jsonl`` (one JSON object per run and epoch, appended when a run
finishes, in a single write) and ``rows.csv`` (rewritten from it). A run counts as finished
when all its rows are there; opening the store drops the partial rows of an interrupted run.
Both :mod:`dbn.harness.runner` (which writes) and :mod:`dbn.harness.report` (which reads)
import this module, and neither imports the other for it.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ROWS_JSON", "ROWS_CSV", "CONFIG_JSON", "BASE_COLUMNS", "ResultStore", "load_rows"]

ROWS_JSON = "rows.jsonl"
ROWS_CSV = "rows.csv"
CONFIG_JSON = "config.json"

#: Leading CSV columns, in this order; per-layer columns follow.
BASE_COLUMNS: tuple[str, ...] = (
    "run_key", "dataset", "arm", "depth", "width", "size", "seed", "fold", "protocol", "pretrained",
    "unlabelled", "n_train", "n_pretrain", "epoch", "train_loss", "train_error", "train_loss_batches",
    "valid_loss", "valid_error", "test_loss", "test_error", "learning_rate", "epoch_time", "selected",
    "n_epochs", "best_epoch", "selected_epoch", "stopped_early", "diverged", "pretrain_time", "pretrain_cached",
    "finetune_time",
)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return repr(o)


def _clean(value: Any) -> Any:
    """JSON has no NaN: store non-finite floats as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _complete_runs(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """Keep the rows of complete runs (all epochs 0..n_epochs present once); flag dropped rows."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_key.setdefault(r.get("run_key"), []).append(r)
    kept: list[dict[str, Any]] = []
    dropped = False
    for key, group in by_key.items():
        n = group[0].get("n_epochs")
        epochs = [r.get("epoch") for r in group]
        if key is None or not isinstance(n, int) or epochs[: n + 1] != list(range(n + 1)):
            dropped = True
            continue
        if len(group) > n + 1:
            dropped = True  # a duplicate: keep the first complete block
        kept.extend(group[: n + 1])
    return kept, dropped


def load_rows(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of the finished runs stored in ``out_dir`` (partial runs are left out).

    Examples
    --------
    >>> load_rows("/nonexistent-dir")
    []
    """
    path = Path(out_dir) / ROWS_JSON
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by an interruption
    return _complete_runs(rows)[0]


class ResultStore:
    """``rows.jsonl`` + ``rows.csv`` in a directory, appended one finished run at a time.

    Opening the store drops the rows of runs that did not finish (an interruption), so that
    rows are never duplicated.

    Examples
    --------
    >>> import tempfile
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> store.append([{"run_key": "k", "epoch": 0, "n_epochs": 0, "test_error": 0.5}])
    >>> store.finished_keys(), len(load_rows(store.out_dir))
    ({'k'}, 1)
    """

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.json_path = self.out_dir / ROWS_JSON
        self.csv_path = self.out_dir / ROWS_CSV
        raw_count = 0
        if self.json_path.exists():
            with open(self.json_path, encoding="utf-8") as f:
                raw_count = sum(1 for line in f if line.strip())
        self.rows = load_rows(self.out_dir)
        if raw_count != len(self.rows):
            self._rewrite_json()
            self._write_csv()

    def finished_keys(self) -> set[str]:
        """Keys of the runs whose rows are all stored."""
        return {r["run_key"] for r in self.rows}

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Store one finished run's rows (one write to the JSON lines, then the CSV)."""
        clean = [{k: _clean(v) for k, v in r.items()} for r in rows]
        text = "".join(json.dumps(r, default=_json_default) + "\n" for r in clean)
        with open(self.json_path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        self.rows.extend(json.loads(json.dumps(clean, default=_json_default)))
        self._write_csv()

    def _rewrite_json(self) -> None:
        tmp = self.json_path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, default=_json_default) + "\n" for r in self.rows)
        os.replace(tmp, self.json_path)

    def _write_csv(self) -> None:
        columns = list(BASE_COLUMNS)
        seen = set(columns)
        for r in self.rows:
            for k in r:
                if k not in seen:
                    seen.add(k)
                    columns.append(k)
        tmp = self.csv_path.with_suffix(".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in self.rows)
        os.replace(tmp, self.csv_path)
