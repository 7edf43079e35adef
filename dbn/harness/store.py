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

__all__ = [
    "ROWS_JSON",
    "ROWS_CSV",
    "CONFIG_JSON",
    "BASE_COLUMNS",
    "DATASET_NAMES",
    "ResultStore",
    "load_rows",
    "dataset_label",
    "dataset_hash",
    "check_study_dir",
    "migrate_study",
]

#: Data sets known by name: rows record these names, not where the files lie.
DATASET_NAMES = ("digits", "mnist")

ROWS_JSON = "rows.jsonl"
ROWS_CSV = "rows.csv"
CONFIG_JSON = "config.json"

#: Leading CSV columns, in this order; per-layer columns follow.
BASE_COLUMNS: tuple[str, ...] = (
    "run_key",
    "dataset",
    "dataset_hash",
    "arm",
    "depth",
    "width",
    "size",
    "seed",
    "fold",
    "protocol",
    "pretrained",
    "unlabelled",
    "n_train",
    "n_pretrain",
    "epoch",
    "train_loss",
    "train_error",
    "train_loss_batches",
    "valid_loss",
    "valid_error",
    "test_loss",
    "test_error",
    "learning_rate",
    "epoch_time",
    "selected",
    "n_epochs",
    "best_epoch",
    "selected_epoch",
    "stopped_early",
    "diverged",
    "pretrain_time",
    "pretrain_cached",
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
    by_key: dict[str | None, list[dict[str, Any]]] = {}  # rows without a key are dropped below
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

    def append(self, rows: list[dict[str, Any]], *, csv: bool = True) -> None:
        """Store one finished run's rows: one write to the JSON lines (the durable record),
        then the CSV rewritten from all rows unless ``csv=False`` (a study of many runs writes
        it once at the end with :meth:`write_csv`)."""
        clean = [{k: _clean(v) for k, v in r.items()} for r in rows]
        text = "".join(json.dumps(r, default=_json_default) + "\n" for r in clean)
        with open(self.json_path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        self.rows.extend(json.loads(json.dumps(clean, default=_json_default)))
        if csv:
            self._write_csv()

    def write_csv(self) -> None:
        """Rewrite ``rows.csv`` from the stored rows."""
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


# ---------------------------------------------------------------------------------------------
# Portable results: data sets by name or relative path, plus a content hash
# ---------------------------------------------------------------------------------------------


def dataset_label(dataset: str | os.PathLike, out_dir: str | os.PathLike) -> str:
    """How rows and run keys name a data set: its name (``"digits"``, ``"mnist"``), or its
    path relative to the study directory ``out_dir`` (POSIX separators), so that a study
    directory moved or cloned with its data (or next to the same data) resumes.

    Examples
    --------
    >>> dataset_label("digits", "/any/where")
    'digits'
    >>> dataset_label("/data/sets/x.npz", "/data/studies/s1")
    '../../sets/x.npz'
    """
    if isinstance(dataset, str) and dataset in DATASET_NAMES:
        return dataset
    path = os.path.abspath(os.path.expanduser(os.fspath(dataset)))
    return Path(os.path.relpath(path, os.path.abspath(out_dir))).as_posix()


def dataset_hash(split: Any) -> str:
    """Content hash of a loaded data set (the bytes of all its arrays, in order), recorded in
    every row as ``dataset_hash``.

    Examples
    --------
    >>> from dbn.datasets import load_dataset
    >>> len(dataset_hash(load_dataset("digits")))
    32
    """
    from .._checkpoint import fingerprint

    return str(fingerprint([np.asarray(a) for a in split]))


def _resolve(dataset: Any, out_dir: Path) -> Any:
    """Where a stored or given ``dataset`` points (names stay names)."""
    if not isinstance(dataset, str) or dataset in DATASET_NAMES:
        return dataset
    return os.path.normpath(os.path.join(os.path.abspath(out_dir), os.path.expanduser(dataset)))


def check_study_dir(out_dir: str | os.PathLike, config: dict[str, Any], *, force: bool = False) -> None:
    """Refuse to run a study in ``out_dir`` when it holds a study with other settings.

    ``config`` is the new study's :meth:`StudyConfig.to_dict` with its dataset as
    :func:`dataset_label` names it. The stored ``config.json`` matches when every field is
    equal (data sets compared by where they point). ``force=True`` skips the check.

    Raises
    ------
    ValueError
        Naming the settings that differ and the ways out (another ``--out``, or ``--force``).

    Examples
    --------
    >>> import json, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, CONFIG_JSON), "w") as f:
    ...     json.dump({"dataset": "digits", "epochs": 30}, f)
    >>> check_study_dir(d, {"dataset": "digits", "epochs": 30})
    >>> check_study_dir(d, {"dataset": "digits", "epochs": 5})
    Traceback (most recent call last):
    ...
    ValueError: The study directory '...' holds a study with other settings: epochs (saved 30, now 5). Use ...
    """
    out = Path(out_dir)
    path = out / CONFIG_JSON
    if force or not path.exists():
        return
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        saved = {}
    now = json.loads(json.dumps(config, default=_json_default))
    differ = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if key == "dataset":
            a, b = _resolve(a, out), _resolve(b, out)
        if a != b:
            differ.append(f"{key} (saved {json.dumps(saved.get(key))}, now {json.dumps(now.get(key))})")
    if differ:
        raise ValueError(
            f"The study directory {str(out)!r} holds a study with other settings: {', '.join(differ)}. Use another "
            "output directory (--out), or pass --force (run_study(..., force=True)) to run this study there "
            "anyway: its config.json is replaced and the report covers the runs of both."
        )


def _migrate_key(key: str, old: str, new: str) -> str:
    first, sep, rest = key.partition("|")
    return (new if first == old else first) + sep + rest


def migrate_study(
    out_dir: str | os.PathLike, dataset: str, *, old: str | None = None, content_hash: str | None = None
) -> dict[str, int]:
    """Rewrite a study directory written before results were portable: the data set recorded
    as the path ``old`` (by default the stored ``config.json``'s) becomes ``dataset`` (a name,
    or a path relative to ``out_dir``) in ``config.json``, ``runs.csv``, ``rows.jsonl`` and
    ``rows.csv``, in the ``dataset`` column and in every ``run_key`` (the only key that
    depends on it), and ``dataset_hash`` is filled in when ``content_hash`` is given.
    Returns how many rows of each file changed.

    Examples
    --------
    >>> import json, tempfile
    >>> d = tempfile.mkdtemp()
    >>> store = ResultStore(d)
    >>> store.append([{"run_key": "/abs/m.pkl.gz|dbn|d1", "dataset": "/abs/m.pkl.gz", "epoch": 0, "n_epochs": 0}])
    >>> migrate_study(d, "mnist", old="/abs/m.pkl.gz", content_hash="ab")
    {'config.json': 0, 'rows.jsonl': 1, 'rows.csv': 1, 'runs.csv': 0}
    >>> load_rows(d)[0]["run_key"], load_rows(d)[0]["dataset_hash"]
    ('mnist|dbn|d1', 'ab')
    """
    import csv

    out = Path(out_dir)
    changed = {CONFIG_JSON: 0, ROWS_JSON: 0, ROWS_CSV: 0, "runs.csv": 0}
    config_path = out / CONFIG_JSON
    config = None
    if config_path.exists():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        old = config.get("dataset") if old is None else old
    if old is None:
        raise ValueError("migrate_study needs 'old' (the recorded data path) when there is no config.json.")

    def fix(row: dict[str, Any]) -> bool:
        before = dict(row)
        if row.get("dataset") == old:
            row["dataset"] = dataset
        if isinstance(row.get("run_key"), str):
            row["run_key"] = _migrate_key(row["run_key"], old, dataset)
        if content_hash is not None and "dataset" in row:
            row["dataset_hash"] = content_hash
        return row != before

    if config is not None and config.get("dataset") == old:
        config["dataset"] = dataset
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        changed[CONFIG_JSON] = 1
    if (out / ROWS_JSON).exists():
        store = ResultStore(out)
        changed[ROWS_JSON] = changed[ROWS_CSV] = sum(fix(r) for r in store.rows)
        store._rewrite_json()
        store._write_csv()
    runs_path = out / "runs.csv"
    if runs_path.exists():
        with open(runs_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
        changed["runs.csv"] = sum(fix(r) for r in rows)
        if content_hash is not None and "dataset_hash" not in columns:
            columns.insert(columns.index("dataset") + 1 if "dataset" in columns else 0, "dataset_hash")
        tmp = runs_path.with_suffix(".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, runs_path)
    return changed
