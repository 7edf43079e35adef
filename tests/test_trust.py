"""Issue 15 (trainers' half): runaway training is divergence, sparse input stays sparse, sizes
are checked before allocation."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import load_digits

import dbn
from dbn import DBNClassifier, DBNTransformer, DenoisingAutoencoder, DivergenceError, RBMTransformer
from dbn.engine import DivergenceCheck, column_mean, fit_loop, map_rows, select_rows, take_rows

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:400] / 16.0, y[:400]


def _history(h):
    return [{k: v for k, v in r.items() if k != "time"} for r in h]


# -- runaway training ------------------------------------------------------------------------------
def test_issue_examples_raise(digits):
    X, y = digits
    with pytest.raises(DivergenceError, match="learning_rate=1e\\+06"):
        DBNClassifier((16,), n_iter=1, max_iter=3, learning_rate_init=1e6).fit(X, y)
    with pytest.raises(DivergenceError, match="RBM training diverged.*learning_rate=1e\\+06"):
        RBMTransformer(learning_rate=1e6).fit(X)


def test_runaway_autoencoder_raises(digits):
    X, _ = digits
    dae = DenoisingAutoencoder(64, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(DivergenceError, match="Denoising autoencoder training diverged.*learning_rate"):
        dbn.train_autoencoder(
            dae,
            torch.as_tensor(X, dtype=torch.float32),
            n_epochs=3,
            learning_rate=1e6,
            generator=torch.Generator().manual_seed(0),
        )


def test_normal_runs_do_not_raise(digits):
    X, y = digits
    RBMTransformer(n_components=32, n_iter=5, random_state=0).fit(X)
    DBNClassifier((32,), n_iter=2, max_iter=10, random_state=0).fit(X, y)
    DBNClassifier((32,), pretrain="dae", n_iter=2, max_iter=5, random_state=0).fit(X, y)


def test_divergence_check_loss_growth_and_reference_kept():
    net = torch.nn.Linear(2, 2)
    check = DivergenceCheck("loss", lambda r: "nan", hint="Lower it.")
    fit_loop(net, [1, 2], lambda e: {"epoch": e, "loss": [1.0, 50.0][e - 1]}, pieces=[check])  # 50x: fine
    assert check.first_loss == 1.0
    with pytest.raises(DivergenceError, match="loss grew from 1 to 2e\\+06"):
        fit_loop(net, [3], lambda e: {"epoch": e, "loss": 2e6, "learning_rate": 0.1}, pieces=[check])


def test_divergence_check_weight_growth_and_floor():
    net = torch.nn.Linear(4, 4)
    with torch.no_grad():
        net.weight.zero_(), net.bias.zero_()
    check = DivergenceCheck(None, hint="")
    check.start(net)
    with torch.no_grad():
        net.weight.fill_(1.0)  # from 0: compared with the floor, 1e-2 -> 0.9 is fine
    check.check(net, {"epoch": 1})
    with torch.no_grad():
        net.weight.fill_(1000.0)
    with pytest.raises(DivergenceError, match="weights grew"):
        check.check(net, {"epoch": 2})


def test_divergence_check_saturation():
    margins = iter([0.4, 0.0])
    check = DivergenceCheck(None, hint="", hidden_margin=lambda m: next(margins))
    check.check(torch.nn.Linear(1, 1), {"epoch": 1})
    with pytest.raises(DivergenceError, match="every hidden unit is saturated"):
        check.check(torch.nn.Linear(1, 1), {"epoch": 2})
    # from the start
    DivergenceCheck(None, hint="", hidden_margin=lambda m: 0.0).check(torch.nn.Linear(1, 1), {"epoch": 1})
    DivergenceCheck(None, hint="", hidden_margin=lambda m: 0.3).check(torch.nn.Linear(1, 1), {"epoch": 1})


# -- sparse stays sparse ---------------------------------------------------------------------------
def test_take_rows_and_helpers_match_dense():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(7, 5, generator=g) * (torch.rand(7, 5, generator=g) < 0.4)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        S = X.to_sparse_csr()
    rows = torch.tensor([6, 0, 3, 3])
    assert torch.equal(take_rows(S, rows), X[rows])
    assert torch.equal(take_rows(S, slice(2, 5)), X[2:5])
    assert torch.equal(take_rows(S, rows, torch.full((5, 5), 9.0)), X[rows])
    assert torch.equal(select_rows(S, rows).to_dense(), X[rows])
    assert torch.equal(map_rows(lambda v: v * 2, S), X * 2)
    assert torch.allclose(column_mean(S), X.mean(0))


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_rbm_transformer_sparse_equals_dense(digits, fmt):
    X, _ = digits
    Xs = sp.csr_matrix(X).asformat(fmt)
    a = RBMTransformer(n_components=16, n_iter=3, random_state=0).fit(X)
    b = RBMTransformer(n_components=16, n_iter=3, random_state=0).fit(Xs)
    np.testing.assert_array_equal(a.components_, b.components_)
    np.testing.assert_array_equal(a.transform(X), b.transform(Xs))
    assert _history(a.history_) == _history(b.history_)
    a.partial_fit(X), b.partial_fit(Xs)
    np.testing.assert_array_equal(a.components_, b.components_)


@pytest.mark.parametrize("kw", [{}, {"propagate": "samples"}, {"pretrain": "dae"}])
def test_dbn_transformer_sparse_equals_dense(digits, kw):
    X, _ = digits
    a = DBNTransformer((16, 8), n_iter=2, random_state=0, **kw).fit(X)
    b = DBNTransformer((16, 8), n_iter=2, random_state=0, **kw).fit(sp.csr_matrix(X))
    np.testing.assert_array_equal(a.transform(X), b.transform(sp.csr_matrix(X)))
    assert [_history(h) for h in a.history_] == [_history(h) for h in b.history_]


@pytest.mark.parametrize(
    "kw", [{}, {"early_stopping": True}, {"pretrain": "dae", "solver": "adam", "learning_rate_init": 1e-3}]
)
def test_dbn_classifier_sparse_equals_dense(digits, kw):
    X, y = digits
    a = DBNClassifier((16,), n_iter=2, max_iter=4, random_state=0, **kw).fit(X, y)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*[Ss]parse")  # no torch warning about sparse tensors leaks
        b = DBNClassifier((16,), n_iter=2, max_iter=4, random_state=0, **kw).fit(sp.csr_matrix(X), y)
        proba = b.predict_proba(sp.csr_matrix(X))
    np.testing.assert_array_equal(a.predict_proba(X), proba)
    assert _history(a.history_) == _history(b.history_)


_PEAK = r"""
import json, resource
import numpy as np, scipy.sparse as sp
import dbn
rng = np.random.RandomState(0)
n, d, nnz = 3000, 20000, 30000
X = sp.csr_matrix((rng.uniform(size=nnz), (rng.randint(n, size=nnz), rng.randint(d, size=nnz))), shape=(n, d))
X.sum_duplicates(); X.data = np.minimum(X.data, 1.0)
dbn.RBMTransformer(n_components=2, n_iter=1, random_state=0).fit(X[:20])
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = peak()
model = dbn.RBMTransformer(n_components=8, n_iter=1, random_state=0).fit(X)
fit = peak() - before
model.transform(X)
print(json.dumps({"fit": fit, "transform": peak() - before}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_sparse_fit_peak_memory():
    """Issue 15's example (480 MB when dense): fit and transform stay far below that."""
    import json

    out = subprocess.run(
        [sys.executable, "-c", _PEAK],
        check=True,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    peaks = json.loads(out.stdout.strip().splitlines()[-1])
    assert peaks["fit"] < 100 * 2**20 and peaks["transform"] < 100 * 2**20, peaks


# -- sizes checked before allocation ---------------------------------------------------------------
def test_huge_sizes_raise_before_allocating(digits):
    X, y = digits
    with pytest.raises(ValueError, match="'n_components' parameter of RBMTransformer needs 1024000000000 bytes"):
        RBMTransformer(n_components=10**9).fit(X)
    with pytest.raises(ValueError, match="'hidden_layer_sizes' parameter of DBNClassifier needs"):
        DBNClassifier((10**9,)).fit(X, y)
    with pytest.raises(ValueError, match="'hidden_layer_sizes' parameter of DBNTransformer needs"):
        DBNTransformer((10**9, 10)).fit(X)


def test_batch_size_clipped_like_mlp(digits):
    X, y = digits
    X, y = X[:300], y[:300]
    msg = "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped"
    with pytest.warns(UserWarning, match=msg):
        big = RBMTransformer(n_components=8, n_iter=2, batch_size=10**9, random_state=0).fit(X)
    same = RBMTransformer(n_components=8, n_iter=2, batch_size=300, random_state=0).fit(X)
    np.testing.assert_array_equal(big.components_, same.components_)
    with pytest.warns(UserWarning, match=msg):
        DBNClassifier((8,), n_iter=1, max_iter=2, batch_size=10**9, random_state=0).fit(X, y)
    with pytest.warns(UserWarning, match=msg):
        DBNTransformer((8,), n_iter=1, batch_size=10**9, random_state=0).fit(X)
