import sys

import pytest
import torch

from dbn import plotting
from dbn.rbm import RBM

mpl_image = pytest.importorskip("matplotlib.image")


def check_png(path, min_bytes=2000):
    assert path.exists() and path.stat().st_size > min_bytes
    image = mpl_image.imread(str(path))
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert float(image[..., :3].std()) > 0.01  # not a blank canvas
    return image


def test_plot_filters_from_rbm_and_tensor(tmp_path):
    g = torch.Generator().manual_seed(0)
    rbm = RBM(784, 36, weight_std=0.1, generator=g)
    fig = plotting.plot_filters(rbm, n=25, path=tmp_path / "filters.png")
    assert type(fig).__name__ == "Figure"
    image = check_png(tmp_path / "filters.png")
    fig2 = plotting.plot_filters(
        rbm.weight.detach().numpy(), image_shape=(28, 28), n=36, n_cols=12, path=tmp_path / "wide.png"
    )
    wide = check_png(tmp_path / "wide.png")
    assert wide.shape[1] / wide.shape[0] > image.shape[1] / image.shape[0]  # 12 x 3 grid vs 5 x 5
    assert fig2 is not fig


def test_plot_filters_into_given_axes(tmp_path):
    import matplotlib.figure

    fig = matplotlib.figure.Figure()
    axes = fig.subplots(1, 2)
    out = plotting.plot_filters(torch.randn(8, 12), image_shape=(3, 4), ax=axes[1])
    assert out is fig
    assert len(axes[1].images) == 1 and len(axes[0].images) == 0


def test_plot_images_and_samples(tmp_path):
    X = torch.rand(30, 28, 28, generator=torch.Generator().manual_seed(1))
    plotting.plot_images(X, n_cols=6, path=tmp_path / "samples.png", title="samples")
    check_png(tmp_path / "samples.png")


def test_plot_history_skips_missing_keys(tmp_path):
    history = [{"epoch": e, "reconstruction_error": 10.0 / e, "pseudo_likelihood": -50.0 + e} for e in range(1, 6)]
    history[2].pop("pseudo_likelihood")
    fig = plotting.plot_history(history, path=tmp_path / "history.png")
    assert [ax.get_title() for ax in fig.axes] == ["reconstruction error", "pseudo likelihood"]
    assert len(fig.axes[1].lines[0].get_xdata()) == 4
    check_png(tmp_path / "history.png")


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_shape"):
        plotting.plot_filters(torch.randn(4, 10))
    with pytest.raises(ValueError, match="pixels"):
        plotting.plot_images(torch.rand(4, 10), image_shape=(3, 3))
    with pytest.raises(ValueError, match="'n'"):
        plotting.plot_filters(torch.randn(4, 9), n=0)
    with pytest.raises(ValueError, match="available keys"):
        plotting.plot_history([{"epoch": 1, "loss": 1.0}])


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install torch-dbn\[plot\]"):
        plotting.plot_images(torch.rand(4, 9))


def test_importing_dbn_does_not_import_matplotlib():
    import subprocess

    code = "import sys, dbn, dbn.plotting, dbn.likelihood, dbn.sampling; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
