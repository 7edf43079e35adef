"""Offline data loaders: scikit-learn's digits, MNIST files and user files, as numpy arrays.

Every loader returns ``float32`` features and ``int64`` labels. Loaders that produce a
train/validation/test protocol return a :class:`Split`, so that one experimental protocol
serves every data set:

* ``load_digits`` - the 1797 8x8 digits embedded in scikit-learn, scaled to [0, 1];
* ``load_mnist`` - the classic ``mnist.pkl.gz`` pickle or the four IDX files of LeCun's site;
* ``load_dataset`` - ``"digits"``, ``"mnist"`` or a path (``.csv``, ``.npz``, ``.pkl.gz``, IDX directory);
* ``read_idx`` - a parser of the IDX format;
* ``binarize`` - fixed-threshold or sampled binarisation (e.g. for AIS on binary MNIST).

Nothing here touches the network.

Security
--------
Unpickling an arbitrary file runs code chosen by whoever wrote it. The MNIST pickle is read
with :class:`RestrictedUnpickler`, which only resolves the handful of numpy globals needed to
rebuild arrays and refuses everything else with :class:`pickle.UnpicklingError`.
"""

from __future__ import annotations

import gzip
import importlib
import os
import pickle
import struct
from pathlib import Path
from typing import IO, Any, NamedTuple, cast

import numpy as np
import torch

__all__ = [
    "Split",
    "load_digits",
    "load_mnist",
    "load_dataset",
    "read_idx",
    "binarize",
    "RestrictedUnpickler",
    "DIGITS_SPLIT_SEED",
    "DIGITS_SPLIT_FRACTIONS",
]

#: Seed of the deterministic stratified split used for ``load_dataset("digits")`` and for
#: ``.npz`` files without a predefined split.
DIGITS_SPLIT_SEED = 0
#: (train, valid, test) fractions of that split.
DIGITS_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)

_MNIST_URL_HINT = (
    "Get the classic file with e.g. "
    "`curl -LO https://github.com/mnielsen/neural-networks-and-deep-learning/"
    "raw/master/data/mnist.pkl.gz` "
    "(or the four IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz), then pass its path, "
    "set the DBN_MNIST environment variable, or put it at ~/.cache/dbn/mnist.pkl.gz."
)


class Split(NamedTuple):
    """A train/validation/test split of a labelled data set.

    A named tuple, so it unpacks: ``X_train, y_train, X_valid, y_valid, X_test, y_test = split``.
    Features are ``float32`` arrays of shape ``(n_samples, n_features)``, labels ``int64``
    arrays of shape ``(n_samples,)``.

    Examples
    --------
    >>> s = load_dataset("digits")
    >>> s.X_train.shape, s.X_valid.shape, s.X_test.shape
    ((1078, 64), (360, 64), (359, 64))
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


def load_digits(*, scale: bool = True, return_X_y: bool = True) -> Any:
    """Load scikit-learn's embedded handwritten digits (1797 samples, 8x8 = 64 pixels).

    Parameters
    ----------
    scale : bool, default=True
        Divide the pixel counts (integers 0..16) by 16 so that the features lie in [0, 1],
        as Bernoulli visible units require. ``False`` keeps the raw counts (still float32).
    return_X_y : bool, default=True
        Return ``(X, y)``. ``False`` returns scikit-learn's ``Bunch`` with ``data``,
        ``images`` (both float32, scaled as asked), ``target`` (int64) and the description.

    Returns
    -------
    X : ndarray of shape (1797, 64), float32
    y : ndarray of shape (1797,), int64

    Examples
    --------
    >>> X, y = load_digits()
    >>> X.shape, X.dtype, float(X.max()), y.dtype
    ((1797, 64), dtype('float32'), 1.0, dtype('int64'))
    """
    from sklearn.datasets import load_digits as _sk_load_digits  # the data ship with sklearn

    bunch = _sk_load_digits()
    factor = np.float32(1.0 / 16.0) if scale else np.float32(1.0)
    X = bunch.data.astype(np.float32) * factor
    y = bunch.target.astype(np.int64)
    if return_X_y:
        return X, y
    bunch.data = X
    bunch.images = bunch.images.astype(np.float32) * factor
    bunch.target = y
    return bunch


# --------------------------------------------------------------------------------------------
# IDX
# --------------------------------------------------------------------------------------------

# IDX type codes -> big-endian numpy dtypes (http://yann.lecun.com/exdb/mnist/)
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _open_maybe_gzip(path: Path) -> IO[bytes]:
    with open(path, "rb") as f:
        head = f.read(2)
    return cast(IO[bytes], gzip.open(path, "rb")) if head == b"\x1f\x8b" else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the format of the MNIST distribution), gzipped or not.

    The header is two zero bytes, a type code (``0x08`` ubyte, ``0x09`` byte, ``0x0B`` int16,
    ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of dimensions, then one
    big-endian int32 per dimension; the data follow in big-endian C order. Gzip compression
    is detected from the file's first bytes, not its name.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    ndarray
        Of the stored shape, in native byte order (``uint8`` for MNIST images and labels).

    Raises
    ------
    ValueError
        If the file is not IDX (bad magic, unknown type code), or is truncated or too long.

    Examples
    --------
    >>> import tempfile, os
    >>> fn = os.path.join(tempfile.mkdtemp(), "x-idx1-ubyte")
    >>> _ = open(fn, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(fn)
    array([7, 8, 9], dtype=uint8)
    """
    path = Path(path)
    try:
        with _open_maybe_gzip(path) as f:
            data = f.read()
    except (OSError, EOFError) as exc:  # e.g. a corrupt gzip stream
        raise ValueError(f"Cannot read IDX file {str(path)!r}: {exc}") from exc
    where = f"IDX file {str(path)!r}"
    if len(data) < 4:
        raise ValueError(f"{where} is too short ({len(data)} bytes) to hold an IDX header.")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise ValueError(
            f"{where} has a bad magic number {data[:4].hex()}: an IDX file starts with two zero "
            "bytes. Is it an IDX file (e.g. train-images-idx3-ubyte)?"
        )
    if code not in _IDX_DTYPES:
        raise ValueError(
            f"{where} has unknown data type code 0x{code:02x}; expected one of "
            f"{', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)}."
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"{where} is truncated inside its header ({ndim} dimensions declared).")
    dims = struct.unpack(f">{ndim}i", data[4:header_len]) if ndim else ()
    if any(d < 0 for d in dims):
        raise ValueError(f"{where} declares negative dimensions {dims}.")
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        state = "truncated" if actual < expected else "longer than its header says"
        raise ValueError(
            f"{where} is {state}: the header declares shape {dims} of {dtype.name} "
            f"({expected} data bytes) but {actual} bytes follow."
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------------


def _numpy_global(modules: tuple[str, ...], name: str) -> Any:
    for mod in modules:
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {name!r} in {modules}.")  # pragma: no cover


# numpy 2 moved numpy.core to numpy._core; old pickles name the former. Resolve to the real
# objects without importing the deprecated alias.
_MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")
_NUMERIC = ("numpy._core.numeric", "numpy.core.numeric")
_ALLOWED_GLOBALS: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    ("numpy.core.multiarray", "_reconstruct"): (_MULTIARRAY, "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): (_MULTIARRAY, "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): (_MULTIARRAY, "scalar"),
    ("numpy._core.multiarray", "scalar"): (_MULTIARRAY, "scalar"),
    ("numpy.core.numeric", "_frombuffer"): (_NUMERIC, "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): (_NUMERIC, "_frombuffer"),
    ("numpy", "ndarray"): (("numpy",), "ndarray"),
    ("numpy", "dtype"): (("numpy",), "dtype"),
    # Python 3 writes bytes as _codecs.encode(str, "latin1") (or bytes()) under protocol < 3
    ("_codecs", "encode"): (("_codecs",), "encode"),
    ("builtins", "bytes"): (("builtins",), "bytes"),
    ("builtins", "bytearray"): (("builtins",), "bytearray"),
    # protocol < 3 pickles spell builtins the Python 2 way (fix_imports)
    ("__builtin__", "bytes"): (("builtins",), "bytes"),
    ("__builtin__", "bytearray"): (("builtins",), "bytearray"),
    ("copyreg", "_reconstructor"): (("copyreg",), "_reconstructor"),
    ("copy_reg", "_reconstructor"): (("copyreg",), "_reconstructor"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild numpy arrays, tuples, lists and plain values.

    ``find_class`` resolves numpy's array reconstruction functions (``_reconstruct``,
    ``scalar``, ``_frombuffer`` from ``numpy.core`` or ``numpy._core``), ``numpy.ndarray``,
    ``numpy.dtype`` and the few ``copyreg`` / ``_codecs`` / ``builtins`` helpers that
    pickles of byte strings need. Any other global (``os.system``, ``builtins.eval``, ...)
    raises :class:`pickle.UnpicklingError` before it can be called.

    Examples
    --------
    >>> import io, pickle
    >>> payload = pickle.dumps((np.arange(3, dtype=np.float32), np.int64(4)), protocol=2)
    >>> RestrictedUnpickler(io.BytesIO(payload)).load()
    (array([0., 1., 2.], dtype=float32), np.int64(4))
    >>> RestrictedUnpickler(io.BytesIO(pickle.dumps(print))).load()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    _pickle.UnpicklingError: Refusing to load global 'builtins.print' from a pickle: ...
    """

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(
                f"Refusing to load global '{module}.{name}' from a pickle: only numpy array "
                "data are allowed, and unpickling other objects could run arbitrary code. "
                "If you trust the file, load it yourself with pickle.load."
            )
        return _numpy_global(*target)


def _restricted_load(f: IO[bytes]) -> Any:
    return RestrictedUnpickler(f, encoding="latin1").load()


def _default_mnist_candidates() -> list[Path]:
    candidates = []
    env = os.environ.get("DBN_MNIST")
    if env:
        candidates.append(Path(env).expanduser())
    candidates.append(Path.cwd().parent / "shared" / "data" / "mnist.pkl.gz")
    candidates.append(Path.home() / ".cache" / "dbn" / "mnist.pkl.gz")
    return candidates


_IDX_NAMES = {
    "X_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "X_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _find_idx_files(directory: Path) -> dict[str, Path] | None:
    found = {}
    for key, stems in _IDX_NAMES.items():
        for stem in stems:
            for suffix in ("", ".gz"):
                p = directory / (stem + suffix)
                if p.is_file():
                    found[key] = p
                    break
            if key in found:
                break
    return found if len(found) == len(_IDX_NAMES) else None


def _check_xy(X: Any, y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(X, np.ndarray) or not isinstance(y, np.ndarray):
        raise ValueError(f"{what}: expected numpy arrays, got {type(X).__name__} and {type(y).__name__}.")
    if X.dtype.kind not in "fiub" or y.dtype.kind not in "iub":
        raise ValueError(f"{what}: expected numeric features and integer labels, got {X.dtype} and {y.dtype}.")
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(
            f"{what}: expected X of shape (n_samples, n_features) and y of shape (n_samples,), "
            f"got {X.shape} and {y.shape}."
        )
    return X.astype(np.float32, copy=False), y.astype(np.int64, copy=False)


def _load_mnist_pickle(path: Path) -> Split:
    with _open_maybe_gzip(path) as f:
        try:
            obj = _restricted_load(f)
        except (EOFError, OSError) as exc:
            raise ValueError(f"Cannot read MNIST pickle {str(path)!r}: {exc}") from exc
    ok = isinstance(obj, (tuple, list)) and len(obj) == 3
    ok = ok and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in obj)
    if not ok:
        raise ValueError(
            f"{str(path)!r} is not in the classic MNIST format "
            "((X_train, y_train), (X_valid, y_valid), (X_test, y_test))."
        )
    arrays: list[np.ndarray] = []
    for part, (X, y) in zip(("train", "valid", "test"), obj, strict=True):
        arrays.extend(_check_xy(X, y, f"{str(path)!r} ({part} part)"))
    return Split(*arrays)


def _load_mnist_idx(files: dict[str, Path], n_valid: int = 10_000) -> Split:
    arrays = {k: read_idx(p) for k, p in files.items()}
    for part in ("train", "test"):
        X, y = arrays[f"X_{part}"], arrays[f"y_{part}"]
        if X.ndim != 3 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise ValueError(f"MNIST IDX {part} files have inconsistent shapes: images {X.shape}, labels {y.shape}.")
    n_train = arrays["X_train"].shape[0]
    if n_train <= n_valid:
        raise ValueError(f"The MNIST IDX training set has {n_train} images; more than {n_valid} are needed.")
    scale = np.float32(1.0 / 256.0)

    def images(a: np.ndarray) -> np.ndarray:
        return a.reshape(a.shape[0], -1).astype(np.float32) * scale

    Xtr, ytr = images(arrays["X_train"]), arrays["y_train"].astype(np.int64)
    cut = n_train - n_valid
    return Split(
        Xtr[:cut],
        ytr[:cut],
        Xtr[cut:],
        ytr[cut:],
        images(arrays["X_test"]),
        arrays["y_test"].astype(np.int64),
    )


def load_mnist(path: str | os.PathLike | None = None) -> Split:
    """Load MNIST from the classic ``mnist.pkl.gz`` pickle or from the four IDX files.

    Parameters
    ----------
    path : str, path-like or None, default=None
        One of

        * a pickle file (``.pkl.gz`` or ``.pkl``) holding
          ``((X_train, y_train), (X_valid, y_valid), (X_test, y_test))`` - the deeplearning.net
          file with 50,000 / 10,000 / 10,000 images in [0, 1);
        * a directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
          ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``);
          a directory holding ``mnist.pkl.gz`` also works;
        * ``None``: the first that exists of ``$DBN_MNIST``, ``../shared/data/mnist.pkl.gz``
          (relative to the current directory) and ``~/.cache/dbn/mnist.pkl.gz``.

    Returns
    -------
    Split
        Features float32 of shape ``(n, 784)`` in [0, 1), labels int64. From IDX files the
        60,000 training images are split in order into the first 50,000 (train) and the last
        10,000 (valid), as in the classic pickle, and pixels are divided by **256** (not 255)
        so that the values equal the classic pickle's (``k / 256``, at most 0.99609375).

    Raises
    ------
    FileNotFoundError
        If no file is found; the message lists where it looked and how to get the data.
    ValueError
        If the file is not MNIST in one of these formats.

    Notes
    -----
    The pickle is read with :class:`RestrictedUnpickler`, so a malicious file cannot run code.

    Examples
    --------
    >>> split = load_mnist()  # doctest: +SKIP
    >>> split.X_train.shape, split.X_valid.shape, split.X_test.shape  # doctest: +SKIP
    ((50000, 784), (10000, 784), (10000, 784))
    """
    if path is None:
        candidates = _default_mnist_candidates()
        for cand in candidates:
            if cand.exists():
                return load_mnist(cand)
        looked = ", ".join(repr(str(c)) for c in candidates)
        raise FileNotFoundError(f"MNIST not found; looked in {looked}. {_MNIST_URL_HINT}")
    p = Path(path).expanduser()
    if p.is_dir():
        files = _find_idx_files(p)
        if files is not None:
            return _load_mnist_idx(files)
        for name in ("mnist.pkl.gz", "mnist.pkl"):
            if (p / name).is_file():
                return _load_mnist_pickle(p / name)
        raise FileNotFoundError(
            f"Directory {str(p)!r} holds neither the four MNIST IDX files "
            f"({', '.join(s[0] for s in _IDX_NAMES.values())}, optionally .gz) nor mnist.pkl.gz. "
            f"{_MNIST_URL_HINT}"
        )
    if not p.is_file():
        raise FileNotFoundError(f"MNIST file {str(p)!r} does not exist. {_MNIST_URL_HINT}")
    return _load_mnist_pickle(p)


# --------------------------------------------------------------------------------------------
# generic entry point
# --------------------------------------------------------------------------------------------


def _stratified_split(y: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Indices of a stratified split of ``y`` into len(fractions) parts (sorted per part)."""
    rng = np.random.default_rng(seed)
    cum = np.cumsum(fractions)
    cum = cum / cum[-1]
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        idx = idx[rng.permutation(idx.size)]
        bounds = np.round(cum * idx.size).astype(int)
        start = 0
        for k, stop in enumerate(bounds):
            parts[k].append(idx[start:stop])
            start = stop
    return [np.sort(np.concatenate(p)) for p in parts]


def _split_xy(X: np.ndarray, y: np.ndarray, fractions: tuple[float, ...] = DIGITS_SPLIT_FRACTIONS) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for idx in _stratified_split(y, fractions, DIGITS_SPLIT_SEED):
        out.extend((X[idx], y[idx]))
    return out


def _load_npz(path: Path) -> Split:
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        if {"X_train", "y_train", "X_test", "y_test"} <= keys:
            Xtr, ytr = _check_xy(z["X_train"], z["y_train"], f"{str(path)!r} (train)")
            Xte, yte = _check_xy(z["X_test"], z["y_test"], f"{str(path)!r} (test)")
            if {"X_valid", "y_valid"} <= keys:
                Xva, yva = _check_xy(z["X_valid"], z["y_valid"], f"{str(path)!r} (valid)")
            else:
                # carve 20% of the training set off as validation, stratified and seeded
                Xtr, ytr, Xva, yva = _split_xy(Xtr, ytr, (0.8, 0.2))
            return Split(Xtr, ytr, Xva, yva, Xte, yte)
        if {"X", "y"} <= keys:
            X, y = _check_xy(z["X"], z["y"], repr(str(path)))
            return Split(*_split_xy(X, y))
    raise ValueError(
        f"{str(path)!r} must hold arrays 'X' and 'y', or 'X_train', 'y_train', 'X_test', "
        f"'y_test' (and optionally 'X_valid', 'y_valid'); it holds {sorted(keys)}."
    )


#: Header names recognised as the label column of a CSV file (case-insensitive).
CSV_LABEL_NAMES = ("label", "labels", "y", "target", "class")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_rows(path: Path) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """The header (``None`` when the first line holds numbers only) and the non-blank rows with
    their line numbers."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [
                (i, [c.strip() for c in row])
                for i, row in enumerate(csv.reader(f), start=1)
                if any(c.strip() for c in row)
            ]
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not a text file: a CSV file holds comma-separated numbers.") from None
    if not rows:
        raise ValueError(f"{str(path)!r} is empty: a CSV file needs one sample per line, labels in the last column.")
    if all(_is_number(c) for c in rows[0][1]):
        return None, rows
    return rows[0][1], rows[1:]


def _csv_label_column(path: Path, header: list[str] | None, width: int) -> int:
    where = repr(str(path))
    if width < 2:
        raise ValueError(
            f"{where} has a single column: labels missing; put the class labels in a second, "
            "last column (or in a column named 'label')."
        )
    if header is None:
        return width - 1
    named = [j for j, name in enumerate(header) if name.lower() in CSV_LABEL_NAMES]
    if not named:
        shown = ", ".join(repr(h) for h in header[:4]) + (", ..." if len(header) > 4 else "")
        raise ValueError(
            f"{where} has no label column: labels missing; its header ({shown}) names none of "
            f"{', '.join(map(repr, CSV_LABEL_NAMES))}: name the column of class labels 'label'."
        )
    return named[0]


def _load_csv(path: Path) -> Split:
    """A CSV file of numbers, one sample per line: the labels in the column a header names ``label``
    (or ``y``, ``target``, ``class``), else in the last column; split 60/20/20 like digits.
    Every error says what is wrong with the file: labels missing, ragged rows, not numbers."""
    where = repr(str(path))
    header, rows = _csv_rows(path)
    if not rows:
        raise ValueError(f"{where} holds a header and no data: add one sample per line below it.")
    width = len(header) if header is not None else len(rows[0][1])
    label = _csv_label_column(path, header, width)
    for line, row in rows:
        if len(row) != width:
            raise ValueError(
                f"{where} has ragged rows: line {line} has {len(row)} values, the "
                f"{'header' if header is not None else 'first line'} {width}; every line needs {width} values."
            )
    try:
        data = np.array([row for _, row in rows], dtype=np.float64)
    except ValueError:
        line, j, cell = next((line, j, c) for line, row in rows for j, c in enumerate(row) if not _is_number(c))
        raise ValueError(
            f"{where}, line {line}, column {j + 1}: {cell!r} is not a number; a CSV data file "
            "holds numbers only (and an optional header line)."
        ) from None
    y = data[:, label]
    if not (np.isfinite(y).all() and np.array_equal(y, np.round(y))):
        bad = y[~(np.isfinite(y) & (y == np.round(y)))][0]
        which = f"column {label + 1} ({header[label]!r})" if header is not None else "the last column"
        raise ValueError(
            f"{where}: labels missing: {which} holds {bad:g}, not a class label; put integer class "
            "labels in the last column, or name the label column 'label' in a header line."
        )
    X, y_int = _check_xy(np.delete(data, label, axis=1), y.astype(np.int64), where)
    return Split(*_split_xy(X, y_int))


def load_dataset(name_or_path: str | os.PathLike) -> Split:
    """Load a data set by name or path as a train/validation/test :class:`Split`.

    Parameters
    ----------
    name_or_path : str or path-like
        * ``"digits"``: :func:`load_digits` scaled to [0, 1], split 60/20/20 (train/valid/test)
          stratified by class with the fixed seed :data:`DIGITS_SPLIT_SEED` (= 0), always the
          same split (1078 / 360 / 359 samples);
        * ``"mnist"``: :func:`load_mnist` from its default locations;
        * a ``.pkl``/``.pkl.gz`` file or a directory: :func:`load_mnist` of that path;
        * a ``.csv`` file of numbers, one sample per line, with the class labels in the last
          column or in the column a header line names ``label`` (or ``y``, ``target``,
          ``class``); split 60/20/20 like digits. Errors say what is wrong with the file
          (labels missing, ragged rows, a value that is not a number);
        * a ``.npz`` file (read without pickle) with either arrays ``X_train``, ``y_train``,
          ``X_test``, ``y_test`` and optionally ``X_valid``, ``y_valid`` (without them, 20% of
          the training set becomes the validation set, stratified, seed 0), or arrays ``X`` and
          ``y`` (split 60/20/20 like digits). Features become float32, labels int64; scaling
          is the user's job (Bernoulli models need [0, 1]).

    Returns
    -------
    Split

    Examples
    --------
    >>> split = load_dataset("digits")
    >>> X_train, y_train, X_valid, y_valid, X_test, y_test = split
    >>> X_train.dtype, y_train.dtype, len(set(y_test.tolist()))
    (dtype('float32'), dtype('int64'), 10)
    """
    if isinstance(name_or_path, str) and name_or_path == "digits":
        X, y = load_digits()
        return Split(*_split_xy(X, y))
    if isinstance(name_or_path, str) and name_or_path == "mnist":
        return load_mnist()
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ValueError(
            f"The 'name_or_path' parameter must be 'digits', 'mnist' or a path. Got {name_or_path!r} instead."
        )
    p = Path(name_or_path).expanduser()
    if not p.exists():
        raise FileNotFoundError(
            f"{str(p)!r} is neither a known data set name ('digits', 'mnist') nor an existing path."
        )
    if p.is_file() and p.suffix == ".npz":
        return _load_npz(p)
    if p.is_file() and p.suffix.lower() == ".csv":
        return _load_csv(p)
    if p.is_dir() or p.name.endswith((".pkl", ".pkl.gz")):
        return load_mnist(p)
    raise ValueError(
        f"Unsupported data file {str(p)!r}: use a .csv file (labels in the last column), a .npz file, "
        "a .pkl/.pkl.gz MNIST pickle or a directory of MNIST IDX files."
    )


# --------------------------------------------------------------------------------------------
# binarisation
# --------------------------------------------------------------------------------------------


def binarize(
    X: np.ndarray | torch.Tensor,
    threshold: float = 0.5,
    *,
    sample: bool = False,
    generator: np.random.Generator | torch.Generator | int | None = None,
) -> np.ndarray | torch.Tensor:
    """Binarise data in [0, 1], by a fixed threshold or by sampling.

    Parameters
    ----------
    X : ndarray or Tensor
        The data. A numpy array gives a numpy array, a tensor a tensor (same device and,
        for floating inputs, same dtype; float32 otherwise).
    threshold : float, default=0.5
        With ``sample=False``, values strictly greater than ``threshold`` become 1.
    sample : bool, default=False
        Draw each value as ``Bernoulli(X)`` instead (the "stochastically binarised MNIST"
        of Salakhutdinov & Murray, 2008); ``X`` must then lie in [0, 1].
    generator : numpy Generator, int, torch.Generator or None, default=None
        Randomness for ``sample=True``: for numpy input a ``np.random.Generator`` or seed
        (``None`` draws fresh entropy), for tensor input a ``torch.Generator`` on ``X``'s
        device (``None`` uses torch's default generator).

    Returns
    -------
    ndarray or Tensor of the same shape, with values in {0, 1}

    Examples
    --------
    >>> binarize(np.array([0.2, 0.5, 0.7], dtype=np.float32))
    array([0., 0., 1.], dtype=float32)
    >>> p = np.full(4, 0.5, dtype=np.float32)
    >>> a = binarize(p, sample=True, generator=0)
    >>> bool(np.array_equal(a, binarize(p, sample=True, generator=0)))
    True
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
        raise ValueError(f"The 'threshold' parameter must be a real number. Got {threshold!r} instead.")
    if isinstance(X, torch.Tensor):
        dtype = X.dtype if X.is_floating_point() else torch.float32
        if not sample:
            return (X > threshold).to(dtype)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(
                "For a torch.Tensor X the 'generator' parameter must be a torch.Generator or None. "
                f"Got {type(generator).__name__} instead."
            )
        P = X.to(dtype)
        if bool((P < 0).any()) or bool((P > 1).any()):
            raise ValueError("binarize(sample=True) needs X in [0, 1]; scale the data first.")
        return torch.bernoulli(P, generator=generator)
    X = np.asarray(X)
    np_dtype = X.dtype if X.dtype.kind == "f" else np.dtype(np.float32)
    if not sample:
        return (X > threshold).astype(np_dtype)
    if isinstance(generator, torch.Generator):
        raise ValueError(
            "For a numpy X the 'generator' parameter must be a numpy Generator, an int or None; "
            "pass a torch.Tensor to sample with a torch.Generator."
        )
    if np.any(X < 0) or np.any(X > 1):
        raise ValueError("binarize(sample=True) needs X in [0, 1]; scale the data first.")
    rng = np.random.default_rng(generator)
    return (rng.random(X.shape, dtype=np.float64) < X).astype(np_dtype)
