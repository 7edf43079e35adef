"""Checkpoint files for long runs: atomic writes, safe reads, a settings fingerprint.

A checkpoint is one ``torch.save`` file holding a plain dictionary::

    {"format": "torch-dbn-checkpoint", "version": 1, "kind": "<which loop>",
     "settings": "<JSON text>", "state": {...tensors and plain Python values...}}

It is written atomically (temporary file, ``fsync``, rename: :func:`_atomic_write`, which
:mod:`dbn.io` uses too), so a process killed mid-write leaves the previous checkpoint intact,
and it is read back with ``torch.load(..., weights_only=True)``, so no code named in the file
ever runs. ``settings`` describes the run: its options and a :func:`fingerprint` of every input
(a hash of the bytes of the data, not only its shape). Resuming with other inputs or settings is
refused by a ``ValueError`` that names what differs (:func:`load_checkpoint`); settings that
only extend training (more epochs) may be allowed to differ by the caller (``extend``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_NAME",
    "INPUT_KEYS",
    "describe_file",
    "fingerprint",
    "settings_text",
    "save_checkpoint",
    "load_checkpoint",
    "plain",
]

CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT = "torch-dbn-checkpoint"
_VERSION = 2  # 2: settings hold fingerprints of the inputs' bytes (1 held only their shapes)
#: settings keys that are inputs (data, starting weights), reported as such on a mismatch
INPUT_KEYS = ("X", "y", "validation_data", "initial_network")
_CHUNK_BYTES = 1 << 22  # 4 MiB per hashed chunk: no full copy of the data is ever made


def _hash_tensor(h: Any, t: torch.Tensor) -> None:
    """Feed ``t``'s bytes to ``h`` in chunks of rows (each chunk made contiguous and moved to
    the CPU on its own)."""
    t = t.detach()
    if t.layout != torch.strided:  # sparse COO/CSR/CSC/BSR: hash the indices and values, never densify
        t = (t if t.layout == torch.sparse_coo else t.to_sparse_coo()).coalesce()
        _hash_tensor(h, t.indices())
        _hash_tensor(h, t.values())
        return
    flat_rows = t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(-1, 1)
    row_bytes = max(1, flat_rows.shape[1] * t.element_size())
    step = max(1, _CHUNK_BYTES // row_bytes)
    for start in range(0, flat_rows.shape[0], step):
        chunk = flat_rows[start : start + step].contiguous().cpu().reshape(-1)
        h.update(chunk.view(torch.uint8).numpy())  # hashlib reads any contiguous buffer


def _hash_array(h: Any, a: np.ndarray) -> None:
    """Feed ``a``'s bytes to ``h`` in contiguous chunks of rows."""
    rows = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
    row_bytes = max(1, rows.shape[1] * a.itemsize)
    step = max(1, _CHUNK_BYTES // row_bytes)
    for start in range(0, rows.shape[0], step):
        h.update(np.ascontiguousarray(rows[start : start + step]))


@overload
def fingerprint(data: None) -> None: ...
@overload
def fingerprint(data: Any) -> str: ...
def fingerprint(data: Any) -> str | None:
    """A hash of ``data``'s shape, dtype and bytes (blake2b, one streaming pass in chunks).

    ``data`` is a tensor (dense or sparse, any device: chunks are moved to the CPU one at a
    time), a numpy array, a scipy sparse matrix, a tuple or list of these, a state dict, or
    ``None`` (fingerprint ``None``).

    Examples
    --------
    >>> x = torch.arange(6.0).reshape(3, 2)
    >>> fingerprint(x) == fingerprint(x.clone()), fingerprint(x) == fingerprint(x.flip(0))
    (True, False)
    >>> fingerprint(x) == fingerprint(x.numpy())
    True
    >>> fingerprint(None) is None
    True
    """
    if data is None:
        return None
    h = hashlib.blake2b(digest_size=16)
    _feed(h, data)
    return h.hexdigest()


def _feed(h: Any, data: Any) -> None:
    if isinstance(data, torch.Tensor):
        h.update(f"{tuple(data.shape)}|{str(data.dtype).removeprefix('torch.')}|".encode())
        if data.numel():
            _hash_tensor(h, data.reshape(1) if data.dim() == 0 else data)
    elif isinstance(data, np.ndarray):
        h.update(f"{tuple(data.shape)}|{data.dtype.name}|".encode())
        if data.size:
            _hash_array(h, data.reshape(1) if data.ndim == 0 else data)
    elif hasattr(data, "tocsr") and hasattr(data, "nnz"):  # scipy.sparse, without importing scipy
        csr = data.tocsr()
        h.update(f"sparse{csr.shape}|".encode())
        for part in (csr.data, csr.indices, csr.indptr):
            _feed(h, part)
    elif isinstance(data, Mapping):
        for key in sorted(data):
            h.update(f"{key}:".encode())
            _feed(h, data[key])
    elif isinstance(data, (tuple, list)):
        h.update(f"[{len(data)}]".encode())
        for part in data:
            _feed(h, part)
    else:
        h.update(repr(data).encode())


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


def describe_file(path: str | os.PathLike) -> str:
    """What a file that ``torch.load(weights_only=True)`` refused looks like, in words.

    Examples
    --------
    >>> import os, pickle, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "model.pkl")
    >>> with open(path, "wb") as f:
    ...     pickle.dump({"a": 1}, f)
    >>> describe_file(path)
    'a Python pickle (as written by joblib.dump or pickle.dump): use joblib.load on it only if you trust its source'
    """
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "an empty file"
    if head[:4] == b"PK\x03\x04":
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return "a damaged or truncated zip archive (an interrupted copy of a torch.save file?)"
        if any(n.endswith("data.pkl") for n in names):
            return (
                "a torch.save file whose contents are not plain tensors and settings (loading it would "
                "import and run code named in the file, which torch-dbn never does)"
            )
        return "a zip archive that is not a torch.save file"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return (
            "a Python pickle (as written by joblib.dump or pickle.dump): use joblib.load on it only if you "
            "trust its source"
        )
    if head[:2] in (b"\x1f\x8b", b"x\x9c", b"x\x01", b"x\xda") or head[:3] in (b"BZh", b"\xfd7z"):
        return (
            "compressed data (a compressed joblib or pickle file?): use joblib.load on it only if you trust its source"
        )
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "a text file"
    return "bytes of no known format (random or damaged data)"


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


def load_checkpoint(
    directory: str | os.PathLike,
    kind: str,
    settings: str,
    *,
    extend: Mapping[str, Callable[[Any, dict], str | None]] | None = None,
) -> dict | None:
    """The saved state in ``directory``, or ``None`` when there is no checkpoint yet.

    Parameters
    ----------
    directory : path
    kind : str
        Which loop wrote the checkpoint (``"pretrain_stack"``, ``"fit_network"``).
    settings : str
        :func:`settings_text` of this run's settings and input fingerprints.
    extend : mapping, optional
        Settings that may differ because they only extend training (epoch counts): for each
        key, ``check(saved_value, state)`` returns ``None`` when the saved state can be
        continued under the new value, or the reason it cannot.

    Raises
    ------
    ValueError
        When the file is corrupt or not a checkpoint of ``kind``, or was written for other
        inputs or with other settings: the message names the inputs or the settings keys that
        differ and says to use another directory or delete this one.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = save_checkpoint(d, "demo", settings_text({"lr": 0.1, "X": "ab12"}), {"epoch": 2})
    >>> load_checkpoint(d, "demo", settings_text({"lr": 0.2, "X": "ab12"}))
    Traceback (most recent call last):
    ...
    ValueError: The checkpoint in '...' was written by a run with other settings: lr (saved 0.1, now 0.2). Use ...
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"The 'checkpoint_dir' parameter {str(directory)!r} exists and is not a directory.")
    path = directory / CHECKPOINT_NAME
    if not path.exists():
        return None
    payload = _read_checkpoint(path)
    if payload.get("kind") != kind:
        raise ValueError(
            f"{str(path)!r} is a checkpoint of {payload.get('kind')!r}, not of {kind!r}. Use another "
            "'checkpoint_dir' or delete it."
        )
    saved = payload.get("settings")
    if saved != settings:
        problem = _mismatch(saved, settings, payload["state"], extend or {})
        if problem:
            raise ValueError(
                f"The checkpoint in {str(directory)!r} was written {problem}. Use another 'checkpoint_dir', "
                "or delete this one to start afresh."
            )
    return payload["state"]


def _read_checkpoint(path: Path) -> dict:
    """The checked payload of a checkpoint file (no code in it runs, no torch warning leaks)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated zip, garbage, a pickle with code in it, ...
        raise ValueError(
            f"The checkpoint {str(path)!r} is corrupt or unreadable ({describe_file(path)}). Delete it (or the "
            "whole checkpoint directory) to start over, or use another 'checkpoint_dir'."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT or not isinstance(payload.get("state"), dict):
        raise ValueError(
            f"{str(path)!r} is not a torch-dbn checkpoint. Use another 'checkpoint_dir' or delete the file."
        )
    version = payload.get("version")
    if version != _VERSION:
        age = "a newer" if isinstance(version, int) and version > _VERSION else "an older"
        raise ValueError(
            f"{str(path)!r} is a checkpoint in {age} format (version {version!r}; this torch-dbn reads "
            f"version {_VERSION}). Delete it (or the checkpoint directory) to start over, or use another "
            "'checkpoint_dir'."
        )
    return payload


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mismatch(saved: Any, now: str, state: dict, extend: Mapping[str, Callable[[Any, dict], str | None]]) -> str:
    """What differs between the saved and the current settings texts, in words ("" if nothing
    that matters: only extendable keys, each allowed by its check)."""
    try:
        old, new = json.loads(saved), json.loads(now)
    except (TypeError, ValueError):
        return "by another run (its settings are unreadable)"
    keys = sorted(set(old) | set(new))
    differ = [k for k in keys if old.get(k) != new.get(k)]
    inputs = [k for k in differ if k in INPUT_KEYS]
    if inputs:
        return (
            f"for other inputs: {', '.join(inputs)} differ{'s' if len(inputs) == 1 else ''} (another dataset, "
            "other rows or another order of rows)"
        )
    reasons = []
    for k in differ:
        if k in extend:
            why = extend[k](old.get(k), state)
            if why is None:
                continue
            reasons.append(f"{k} (saved {_short(old.get(k))}, now {_short(new.get(k))}: {why})")
        else:
            reasons.append(f"{k} (saved {_short(old.get(k))}, now {_short(new.get(k))})")
    return "" if not reasons else "by a run with other settings: " + ", ".join(reasons)
