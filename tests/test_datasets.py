"""Tests of the offline loaders in dbn.datasets."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dbn.datasets import (
    DIGITS_SPLIT_SEED,
    RestrictedUnpickler,
    Split,
    binarize,
    load_dataset,
    load_digits,
    load_mnist,
    read_idx,
)

REAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.pkl.gz"

_CODES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def write_idx(path: Path, arr: np.ndarray, *, gz: bool = False) -> Path:
    """Independent IDX writer for the tests (header per LeCun's spec, big-endian data)."""
    code = _CODES[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape)
    payload = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    if gz:
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


# -- digits ------------------------------------------------------------------------------------


def test_load_digits_shapes_range_dtype():
    X, y = load_digits()
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y).tolist()) == set(range(10))
    # values are k / 16
    np.testing.assert_array_equal(X * 16, np.round(X * 16))


def test_load_digits_unscaled_and_bunch():
    X, _ = load_digits(scale=False)
    assert X.dtype == np.float32 and X.max() == 16.0
    bunch = load_digits(return_X_y=False)
    assert bunch.data.dtype == np.float32 and bunch.data.max() == 1.0
    assert bunch.images.shape == (1797, 8, 8) and bunch.images.max() == 1.0
    assert bunch.target.dtype == np.int64


def test_digits_split_is_deterministic_stratified_and_disjoint():
    a = load_dataset("digits")
    b = load_dataset("digits")
    assert isinstance(a, Split)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    X, y = load_digits()
    n = len(a.X_train) + len(a.X_valid) + len(a.X_test)
    assert n == len(X)
    assert abs(len(a.X_train) / n - 0.6) < 0.01 and abs(len(a.X_test) / n - 0.2) < 0.01
    # every sample appears exactly once (rows of digits are not all unique, so compare multisets)
    rows = np.concatenate([a.X_train, a.X_valid, a.X_test])
    assert sorted(map(bytes, rows)) == sorted(map(bytes, X))
    # stratified: class proportions within 2 samples of the overall ones in each part
    overall = np.bincount(y, minlength=10) / len(y)
    for part_y in (a.y_train, a.y_valid, a.y_test):
        counts = np.bincount(part_y, minlength=10)
        assert np.all(np.abs(counts - overall * len(part_y)) <= 2)
    assert DIGITS_SPLIT_SEED == 0


# -- IDX ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_round_trip(tmp_path, gz, dtype):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = write_idx(tmp_path / ("a-idx3" + (".gz" if gz else "")), arr, gz=gz)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_read_idx_is_big_endian(tmp_path):
    # 0x0102 big-endian is 258; little-endian would read 513
    path = tmp_path / "be"
    path.write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 1, 0x01, 0x02]))
    assert read_idx(path).tolist() == [258]


def test_read_idx_gzip_detected_by_content_not_name(tmp_path):
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    path = write_idx(tmp_path / "no-suffix", arr, gz=True)
    np.testing.assert_array_equal(read_idx(path), arr)


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic"),
        (b"PK\x03\x04" + b"\x00" * 10, "magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code"),
        (b"\x00\x00", "too short"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x02", "header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "longer"),
    ],
)
def test_read_idx_corrupt_raises_value_error(tmp_path, payload, match):
    path = tmp_path / "bad"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=match):
        read_idx(path)


def test_read_idx_truncated_gzip_raises_value_error(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.arange(1000, dtype=np.uint8), gz=True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError):
        read_idx(path)


def _write_fake_mnist_idx(directory: Path, n_train: int, n_test: int, *, gz: bool) -> tuple:
    rng = np.random.default_rng(1)
    Xtr = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    ytr = rng.integers(0, 10, n_train).astype(np.uint8)
    Xte = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    yte = rng.integers(0, 10, n_test).astype(np.uint8)
    sfx = ".gz" if gz else ""
    write_idx(directory / f"train-images-idx3-ubyte{sfx}", Xtr, gz=gz)
    write_idx(directory / f"train-labels-idx1-ubyte{sfx}", ytr, gz=gz)
    write_idx(directory / f"t10k-images-idx3-ubyte{sfx}", Xte, gz=gz)
    write_idx(directory / f"t10k-labels-idx1-ubyte{sfx}", yte, gz=gz)
    return Xtr, ytr, Xte, yte


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_idx_directory(tmp_path, gz):
    Xtr, ytr, Xte, yte = _write_fake_mnist_idx(tmp_path, 10_050, 7, gz=gz)
    s = load_mnist(tmp_path)
    assert s.X_train.shape == (50, 784) and s.X_valid.shape == (10_000, 784)
    assert s.X_test.shape == (7, 784)
    assert all(a.dtype == np.float32 for a in (s.X_train, s.X_valid, s.X_test))
    assert all(a.dtype == np.int64 for a in (s.y_train, s.y_valid, s.y_test))
    # /256 scaling, first rows train, last 10k valid (in order)
    np.testing.assert_array_equal(s.X_train * 256, Xtr[:50].reshape(50, -1))
    np.testing.assert_array_equal(s.X_valid * 256, Xtr[50:].reshape(10_000, -1))
    np.testing.assert_array_equal(s.y_valid, ytr[50:])
    np.testing.assert_array_equal(s.y_test, yte)
    assert s.X_train.max() < 1.0
    # load_dataset on the directory gives the same
    s2 = load_dataset(tmp_path)
    np.testing.assert_array_equal(s2.X_test, s.X_test)


def test_load_mnist_idx_inconsistent_shapes(tmp_path):
    _write_fake_mnist_idx(tmp_path, 10_001, 3, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="inconsistent"):
        load_mnist(tmp_path)


# -- pickle ------------------------------------------------------------------------------------


def _fake_mnist_parts():
    rng = np.random.default_rng(2)
    return tuple((rng.random((n, 784)).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)) for n in (5, 3, 2))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_loads_mnist_format(tmp_path, protocol):
    parts = _fake_mnist_parts()
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(parts, f, protocol=protocol)
    s = load_mnist(path)
    flat = [a for pair in parts for a in pair]
    for got, want in zip(s, flat, strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    # also found inside a directory, and via load_dataset
    s_dir = load_mnist(tmp_path)
    np.testing.assert_array_equal(s_dir.X_test, parts[2][0])
    np.testing.assert_array_equal(load_dataset(path).y_valid, parts[1][1])


def test_restricted_unpickler_loads_py2_style_latin1_strings():
    # protocol-2 pickle of bytes (as Python 3 writes it) goes through _codecs.encode
    payload = pickle.dumps((np.zeros(2, dtype=np.float32), b"abc", b""), protocol=2)
    arr, raw, empty = RestrictedUnpickler(io.BytesIO(payload), encoding="latin1").load()
    assert raw == b"abc" and empty == b"" and arr.dtype == np.float32


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("protocol", [2, 5])
def test_restricted_unpickler_refuses_malicious_pickle(tmp_path, protocol):
    marker = tmp_path / "pwned"
    parts = list(_fake_mnist_parts())
    parts[0] = (parts[0][0], _Evil(str(marker)))
    path = tmp_path / "evil.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(tuple(parts), f, protocol=protocol)
    with pytest.raises(pickle.UnpicklingError, match="Refusing"):
        load_mnist(path)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(_EvalEvil()))).load()


def test_load_mnist_wrong_structure(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps((np.zeros((2, 3), dtype=np.float32),), protocol=2))
    with pytest.raises(ValueError, match="classic MNIST format"):
        load_mnist(path)


def test_load_mnist_not_found_lists_locations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DBN_MNIST", str(tmp_path / "nowhere.pkl.gz"))
    with pytest.raises(FileNotFoundError) as info:
        load_mnist()
    msg = str(info.value)
    assert "nowhere.pkl.gz" in msg and ".cache" in msg and "shared" in msg and "curl" in msg
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "missing.pkl.gz")
    with pytest.raises(FileNotFoundError, match="IDX"):
        load_mnist(tmp_path)


def test_load_mnist_env_var(tmp_path, monkeypatch):
    path = tmp_path / "m.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(_fake_mnist_parts(), f, protocol=2)
    monkeypatch.setenv("DBN_MNIST", str(path))
    assert load_mnist().X_train.shape == (5, 784)


@pytest.mark.skipif(not REAL_MNIST.exists(), reason="real MNIST pickle not available")
def test_real_mnist_pickle():
    s = load_mnist(REAL_MNIST)
    assert s.X_train.shape == (50_000, 784) and s.y_train.shape == (50_000,)
    assert s.X_valid.shape == (10_000, 784) and s.X_test.shape == (10_000, 784)
    assert s.X_train.dtype == np.float32 and s.y_test.dtype == np.int64
    assert 0.0 <= s.X_train.min() and s.X_train.max() < 1.0
    assert set(np.unique(s.y_test).tolist()) == set(range(10))


# -- npz and load_dataset ----------------------------------------------------------------------


def test_load_dataset_npz_X_y(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.random((100, 4))
    y = np.repeat(np.arange(4), 25)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    s = load_dataset(tmp_path / "d.npz")
    assert (len(s.X_train), len(s.X_valid), len(s.X_test)) == (60, 20, 20)
    assert s.X_train.dtype == np.float32 and s.y_train.dtype == np.int64
    assert np.bincount(s.y_test).tolist() == [5, 5, 5, 5]


def test_load_dataset_npz_with_and_without_valid(tmp_path):
    rng = np.random.default_rng(4)
    Xtr, ytr = rng.random((50, 3)), np.tile(np.arange(5), 10)
    Xte, yte = rng.random((7, 3)), np.arange(7) % 5
    np.savez(tmp_path / "a.npz", X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte)
    s = load_dataset(str(tmp_path / "a.npz"))
    assert (len(s.X_train), len(s.X_valid), len(s.X_test)) == (40, 10, 7)
    np.savez(
        tmp_path / "b.npz",
        X_train=Xtr,
        y_train=ytr,
        X_valid=Xte,
        y_valid=yte,
        X_test=Xte,
        y_test=yte,
    )
    s = load_dataset(tmp_path / "b.npz")
    np.testing.assert_array_equal(s.X_train, Xtr.astype(np.float32))
    np.testing.assert_array_equal(s.y_valid, yte)


def test_load_dataset_bad_inputs(tmp_path):
    np.savez(tmp_path / "c.npz", A=np.zeros(3))
    with pytest.raises(ValueError, match="'X' and 'y'"):
        load_dataset(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", X=np.zeros((3, 2)), y=np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="shape"):
        load_dataset(tmp_path / "d.npz")
    with pytest.raises(FileNotFoundError, match="digits"):
        load_dataset("cifar")
    (tmp_path / "e.txt").write_text("1,2\n")  # .csv files are read since CSV support was added
    with pytest.raises(ValueError, match="Unsupported"):
        load_dataset(tmp_path / "e.txt")
    with pytest.raises(ValueError, match="name_or_path"):
        load_dataset(3)


def test_load_dataset_csv(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.random((50, 3)).round(3), np.arange(50) % 2
    np.savetxt(tmp_path / "plain.csv", np.column_stack([X, y]), delimiter=",", fmt="%g")
    with open(tmp_path / "header.csv", "w") as f:
        f.write("a,label,b,c\n" + "".join(f"{r[0]:g},{t},{r[1]:g},{r[2]:g}\n" for r, t in zip(X, y, strict=True)))
    plain, header = load_dataset(tmp_path / "plain.csv"), load_dataset(tmp_path / "header.csv")
    for split in (plain, header):
        assert split.X_train.dtype == np.float32 and split.y_train.dtype == np.int64
        assert sum(len(a) for a in split[1::2]) == 50 and split.X_train.shape[1] == 3
        np.testing.assert_array_equal(np.sort(np.concatenate(split[1::2])), np.sort(y))
    np.testing.assert_array_equal(plain.X_test, header.X_test)


# -- binarize ----------------------------------------------------------------------------------


def test_binarize_threshold_numpy_and_torch():
    X = np.array([[0.1, 0.5, 0.51, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(binarize(X), [[0, 0, 1, 1]])
    np.testing.assert_array_equal(binarize(X, 0.05), [[1, 1, 1, 1]])
    assert binarize(X).dtype == np.float32
    t = binarize(torch.from_numpy(X))
    assert isinstance(t, torch.Tensor) and t.tolist() == [[0, 0, 1, 1]]


def test_binarize_sampling_matches_probabilities_and_is_reproducible():
    X = np.full((200, 100), 0.3, dtype=np.float32)
    a = binarize(X, sample=True, generator=np.random.default_rng(5))
    b = binarize(X, sample=True, generator=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a).tolist()) <= {0.0, 1.0}
    assert abs(a.mean() - 0.3) < 0.01
    T = torch.full((200, 100), 0.7)
    ta = binarize(T, sample=True, generator=torch.Generator().manual_seed(0))
    tb = binarize(T, sample=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ta, tb) and abs(float(ta.mean()) - 0.7) < 0.01
    # zeros and ones stay put
    np.testing.assert_array_equal(binarize(np.array([0.0, 1.0]), sample=True, generator=0), [0, 1])


def test_binarize_bad_inputs():
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        binarize(np.array([1.5]), sample=True, generator=0)
    with pytest.raises(ValueError, match="threshold"):
        binarize(np.array([0.5]), threshold="high")
    with pytest.raises(ValueError, match="generator"):
        binarize(np.array([0.5]), sample=True, generator=torch.Generator())
    with pytest.raises(ValueError, match="generator"):
        binarize(torch.tensor([0.5]), sample=True, generator=0)
