"""Checkpoint files for long runs: atomic writes, safe reads, a settings fingerprint.

A checkpoint is one ``torch.save`` file holding a plain dictionary::

    {"format": "torch-dbn-checkpoint", "version": 1, "kind": "<which loop>",
     "settings": "<JSON text>", "state": {...tensors and plain Python values...}}

It is written atomically (temporary file, ``fsync``, rename: :func:`_atomic_write`, which
:mod:`dbn.io` uses too), so a process killed mid-write leaves the previous checkpoint intact,
and it is read back with ``torch.load(..., weights_only=True)``, so no code named in the file
ever runs. ``settings`` describes the run (its options and the data shape); resuming with other
settings is refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_NAME", "settings_text", "save_checkpoint", "load_checkpoint", "plain"]

CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT = "torch-dbn-checkpoint"
_VERSION = 1


def _json_default(value: Any) -> Any:
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, torch.Size):
        return list(value)
    return repr(value)


def _atomic_write(path: Path, writer) -> None:
    """Write a file through ``writer(f)`` atomically: temporary file, ``fsync``, rename, directory ``fsync``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; a saved model gets the usual mode
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        pass


def settings_text(settings: dict) -> str:
    """Canonical JSON text of a run's settings (sorted keys; non-JSON values by ``repr``).

    Examples
    --------
    >>> settings_text({"b": 1, "a": (2, 3)})
    '{"a": [2, 3], "b": 1}'
    """
    return json.dumps(settings, sort_keys=True, default=_json_default)


def plain(value: Any) -> Any:
    """``value`` with anything ``torch.load(weights_only=True)`` cannot rebuild replaced by its
    ``repr`` (history records may carry callback-added objects).

    Examples
    --------
    >>> plain({"a": [1, 2.0, None], "b": object}) == {"a": [1, 2.0, None], "b": repr(object)}
    True
    """
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return repr(value)


def save_checkpoint(directory: str | os.PathLike, kind: str, settings: str, state: dict) -> Path:
    """Write ``state`` atomically to ``directory/checkpoint.pt``.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = save_checkpoint(d, "demo", settings_text({"n": 1}), {"epoch": 2})
    >>> load_checkpoint(d, "demo", settings_text({"n": 1}))
    {'epoch': 2}
    """
    payload = {"format": _FORMAT, "version": _VERSION, "kind": kind, "settings": settings, "state": state}
    path = Path(directory) / CHECKPOINT_NAME
    _atomic_write(path, lambda f: torch.save(payload, f))
    return path


def load_checkpoint(directory: str | os.PathLike, kind: str, settings: str) -> dict | None:
    """The saved state in ``directory``, or ``None`` when there is no checkpoint yet.

    Raises
    ------
    ValueError
        When the file is corrupt or not a checkpoint of ``kind``, or was written by a run with
        other settings (the message says to use another directory or delete this one).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"The 'checkpoint_dir' parameter {str(directory)!r} exists and is not a directory.")
    path = directory / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, garbage, a pickle with code in it, ...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(
            f"The checkpoint {str(path)!r} is corrupt or unreadable ({type(exc).__name__}: {first}). "
            "Delete it (or the whole checkpoint directory) to start over, or use another 'checkpoint_dir'."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT or not isinstance(payload.get("state"), dict):
        raise ValueError(
            f"{str(path)!r} is not a torch-dbn checkpoint. Use another 'checkpoint_dir' or delete the file."
        )
    if payload.get("version") != _VERSION or payload.get("kind") != kind:
        raise ValueError(
            f"{str(path)!r} is a checkpoint of {payload.get('kind')!r} (version {payload.get('version')!r}), "
            f"not of {kind!r} (version {_VERSION}). Use another 'checkpoint_dir' or delete it."
        )
    if payload.get("settings") != settings:
        raise ValueError(
            f"The checkpoint in {str(directory)!r} was written by a run with other settings or data "
            f"(saved: {payload.get('settings')}; now: {settings}). Use another 'checkpoint_dir', or delete "
            "this one to start over."
        )
    return payload["state"]
