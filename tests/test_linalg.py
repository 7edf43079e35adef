"""Tests of dbn._linalg: every fast path equals torch's reference maths."""

from __future__ import annotations

import pytest
import torch

from dbn import _linalg
from dbn._linalg import (
    bernoulli_sample,
    linear,
    linear_t,
    onednn_applies,
    outer_accumulate_,
)

DTYPES = (torch.float32, torch.float64)


def _tol(dtype, n_in=32):
    """Float tolerance for a product summing ``n_in`` terms of unit-variance numbers."""
    eps = torch.finfo(dtype).eps
    return {"rtol": 1e-5 if dtype == torch.float32 else 1e-12, "atol": 8 * eps * n_in}


def _make(shape, dtype, gen, layout="contiguous"):
    """A tensor of ``shape`` with the requested memory layout."""
    if layout == "contiguous":
        return torch.randn(shape, generator=gen, dtype=dtype)
    if layout == "transposed":
        return torch.randn(shape[::-1], generator=gen, dtype=dtype).t()
    if layout == "strided":  # every other column of a wider tensor
        wide = torch.randn((shape[0], 2 * shape[1]), generator=gen, dtype=dtype)
        return wide[:, ::2]
    raise AssertionError(layout)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ("none", "sigmoid"))
@pytest.mark.parametrize("layout", ("contiguous", "transposed", "strided"))
@pytest.mark.parametrize("shape", ((1, 1, 1), (7, 13, 5), (100, 784, 500), (3, 65, 129)))
def test_linear_matches_reference(dtype, activation, layout, shape):
    n, n_in, n_out = shape
    gen = torch.Generator().manual_seed(0)
    x = _make((n, n_in), dtype, gen, layout)
    w = _make((n_out, n_in), dtype, gen, layout)
    # A strided bias: oneDNN misreads these unless they are made contiguous first.
    b = torch.randn(2 * n_out, generator=gen, dtype=dtype)[::2]
    # Reference in float64 from the same inputs.
    ref = x.double() @ w.double().T + b.double()
    if activation == "sigmoid":
        ref = torch.sigmoid(ref)
    got = linear(x, w, b, activation=activation)
    assert got.shape == (n, n_out) and got.dtype == dtype
    torch.testing.assert_close(got.double(), ref, **_tol(dtype, n_in))
    got_nobias = linear(x, w)
    torch.testing.assert_close(got_nobias.double(), x.double() @ w.double().T, **_tol(dtype, n_in))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ("contiguous", "transposed", "strided"))
def test_linear_t_matches_reference(dtype, layout):
    gen = torch.Generator().manual_seed(1)
    h = _make((9, 31), dtype, gen, layout)
    w = _make((31, 17), dtype, gen, layout)  # (n_hidden, n_visible)
    b = torch.randn(17, generator=gen, dtype=dtype)
    torch.testing.assert_close(linear_t(h, w, b), h @ w + b, **_tol(dtype))
    torch.testing.assert_close(linear_t(h, w, b, activation="sigmoid"), torch.sigmoid(h @ w + b), **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_writes_into_out(dtype):
    gen = torch.Generator().manual_seed(2)
    x, w, b = (torch.randn(s, generator=gen, dtype=dtype) for s in ((6, 8), (4, 8), (4,)))
    out = torch.full((6, 4), float("nan"), dtype=dtype)
    res = linear(x, w, b, activation="sigmoid", out=out)
    assert res.data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, torch.sigmoid(x @ w.T + b), **_tol(dtype))
    out_t = torch.empty(6, 8, dtype=dtype)
    h = torch.randn(6, 4, generator=gen, dtype=dtype)
    linear_t(h, w, None, out=out_t)
    torch.testing.assert_close(out_t, h @ w, **_tol(dtype))


def test_linear_keeps_autograd():
    # The fused oneDNN operator has no backward: with grad needed, the fallback is used.
    x = torch.randn(5, 3, requires_grad=True)
    w = torch.randn(4, 3)
    assert not onednn_applies(x, w)
    linear(x, w, activation="sigmoid").sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    torch.sigmoid(x2 @ w.T).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_linear_empty_batch():
    out = linear(torch.empty(0, 3), torch.ones(4, 3), torch.zeros(4))
    assert out.shape == (0, 4)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_onednn_applies():
    f32 = torch.ones(2, 2)
    if torch.backends.mkldnn.is_available() and _linalg._LINEAR_POINTWISE is not None:
        assert onednn_applies(f32, f32, None)
        with torch.backends.mkldnn.flags(enabled=False):
            assert not onednn_applies(f32, f32)
    assert not onednn_applies(f32, f32.double())
    assert not onednn_applies(torch.ones(0, 2))


def test_linear_bad_shapes_raise_valueerror():
    with pytest.raises(ValueError, match="Cannot multiply"):
        linear(torch.ones(2, 3), torch.ones(4, 5))
    with pytest.raises(ValueError, match="bias must have shape"):
        linear(torch.ones(2, 3), torch.ones(4, 3), torch.ones(3))
    with pytest.raises(ValueError, match="activation"):
        linear(torch.ones(2, 3), torch.ones(4, 3), activation="relu")
    with pytest.raises(ValueError, match="Cannot multiply"):
        linear_t(torch.ones(2, 3), torch.ones(4, 5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ("contiguous", "transposed", "strided"))
def test_outer_accumulate_matches_reference(dtype, layout):
    gen = torch.Generator().manual_seed(3)
    a = _make((11, 7), dtype, gen, layout)
    b = _make((11, 19), dtype, gen, layout)
    acc = torch.randn(7, 19, generator=gen, dtype=dtype)
    expected = 0.9 * acc + 0.01 * (a.T @ b)
    res = outer_accumulate_(acc, a, b, alpha=0.01, beta=0.9)
    assert res is acc
    torch.testing.assert_close(acc, expected, **_tol(dtype))
    with pytest.raises(ValueError, match="outer_accumulate_"):
        outer_accumulate_(acc, a, b[:5])


def test_merged_gradient_product_equals_difference():
    # The CD statistic h0.T @ v0 - h1.T @ v1 as one GEMM over stacked operands.
    gen = torch.Generator().manual_seed(4)
    h0, h1 = torch.rand(10, 6, generator=gen), torch.rand(10, 6, generator=gen)
    v0, v1 = torch.rand(10, 8, generator=gen), torch.rand(10, 8, generator=gen)
    merged = outer_accumulate_(torch.zeros(6, 8), torch.cat([h0, h1]), torch.cat([v0, -v1]), beta=0.0)
    torch.testing.assert_close(merged, h0.T @ v0 - h1.T @ v1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_sample_is_uniform_compare(dtype):
    probs = torch.rand(50, 40, generator=torch.Generator().manual_seed(5), dtype=dtype)
    expected = torch.rand(50, 40, generator=torch.Generator().manual_seed(6), dtype=dtype) < probs
    got = bernoulli_sample(probs, torch.Generator().manual_seed(6))
    assert got.dtype == dtype
    assert torch.equal(got, expected.to(dtype))
    out = torch.empty_like(probs)
    res = bernoulli_sample(probs, torch.Generator().manual_seed(6), out=out)
    assert res.data_ptr() == out.data_ptr()
    assert torch.equal(out, expected.to(dtype))


def test_bernoulli_sample_reproducible_and_calibrated():
    probs = torch.full((200, 500), 0.3)
    a = bernoulli_sample(probs, torch.Generator().manual_seed(7))
    b = bernoulli_sample(probs, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert abs(a.mean().item() - 0.3) < 0.01  # 100k draws: s.e. 0.0015
    edge = bernoulli_sample(torch.tensor([0.0, 1.0] * 50), torch.Generator().manual_seed(8))
    assert torch.equal(edge, torch.tensor([0.0, 1.0] * 50))


def test_bernoulli_sample_bad_out():
    with pytest.raises(ValueError, match="out must match probs"):
        bernoulli_sample(torch.rand(3, 4), out=torch.empty(4, 3))


def test_small_products_skip_onednn(monkeypatch):
    # oneDNN's per-call cost only pays from ONEDNN_MIN_WORK (batch * n_in * n_out) up.
    if not (torch.backends.mkldnn.is_available() and _linalg._LINEAR_POINTWISE is not None):
        pytest.skip("oneDNN is not built in")
    calls = []
    real = _linalg._LINEAR_POINTWISE

    def counting(*args):
        calls.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(_linalg, "_LINEAR_POINTWISE", counting)
    small = linear(torch.rand(10, 64), torch.rand(100, 64), torch.rand(100), activation="sigmoid")
    assert calls == [] and small.shape == (10, 100)
    n_out = _linalg.ONEDNN_MIN_WORK // (100 * 64) + 1
    x, w, b = torch.rand(100, 64), torch.rand(n_out, 64), torch.rand(n_out)
    large = linear(x, w, b, activation="sigmoid")
    assert calls == [(100, 64)]
    torch.testing.assert_close(large, torch.sigmoid(torch.addmm(b, x, w.t())))
