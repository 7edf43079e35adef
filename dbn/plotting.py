"""Figures of filters, samples and training curves (needs matplotlib: ``pip install torch-dbn[plot]``).

matplotlib is imported lazily inside each function, never when :mod:`dbn` is imported.
Figures are made with ``matplotlib.figure.Figure`` (not ``pyplot``), so no global figure state
is touched and saving to PNG uses the Agg renderer whatever the interactive backend is.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["plot_filters", "plot_images", "plot_history"]

_HISTORY_KEYS = ("reconstruction_error", "pseudo_likelihood", "free_energy_gap")


def _require_matplotlib():
    """Import and return matplotlib, or raise ImportError saying how to install it."""
    try:
        import matplotlib
        import matplotlib.figure  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "Plotting needs matplotlib, which is an optional dependency: pip install torch-dbn[plot]"
        ) from exc
    return matplotlib


def _as_matrix(X: Any, name: str) -> torch.Tensor:
    if hasattr(X, "weight") and isinstance(X.weight, torch.Tensor):
        X = X.weight
    X = torch.as_tensor(X).detach().to("cpu", torch.float64)
    if X.dim() == 3:
        X = X.reshape(X.shape[0], -1)
    if X.dim() != 2 or X.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (n_items, n_pixels). Got shape {tuple(X.shape)}.")
    return X


def _image_shape(n_pixels: int, image_shape: tuple[int, int] | None) -> tuple[int, int]:
    if image_shape is None:
        side = math.isqrt(n_pixels)
        if side * side != n_pixels:
            raise ValueError(
                f"Cannot infer a square image shape from {n_pixels} pixels; pass image_shape=(height, width)."
            )
        return side, side
    if len(image_shape) != 2 or image_shape[0] * image_shape[1] != n_pixels:
        raise ValueError(f"image_shape={tuple(image_shape)} does not hold {n_pixels} pixels.")
    return int(image_shape[0]), int(image_shape[1])


def _tile(images: torch.Tensor, shape: tuple[int, int], n_cols: int, pad: int = 1) -> torch.Tensor:
    """Mosaic of ``images`` (n, h*w) in a grid, NaN (background) between tiles."""
    n = images.shape[0]
    h, w = shape
    n_rows = math.ceil(n / n_cols)
    canvas = torch.full((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad), float("nan"), dtype=images.dtype)
    for i in range(n):  # at most a few hundred tiles; each is one slice copy
        r, col = divmod(i, n_cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[top : top + h, left : left + w] = images[i].reshape(h, w)
    return canvas


def _figure_and_axes(ax, figsize):
    matplotlib = _require_matplotlib()
    if ax is not None:
        return ax.figure, ax
    fig = matplotlib.figure.Figure(figsize=figsize)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, path: str | os.PathLike | None) -> None:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=fig.dpi, bbox_inches="tight")


def _show_mosaic(images, shape, n_cols, ax, path, cmap, vmin, vmax, title):
    n_cols = max(1, min(n_cols, images.shape[0]))
    canvas = _tile(images, shape, n_cols)
    aspect = canvas.shape[0] / canvas.shape[1]
    fig, ax = _figure_and_axes(ax, (6.0, max(1.0, 6.0 * aspect)))
    cm = _require_matplotlib().colormaps[cmap].with_extremes(bad="white")
    ax.imshow(canvas.numpy(), cmap=cm, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    _save(fig, path)
    return fig


def plot_filters(
    weight: Any,
    *,
    image_shape: tuple[int, int] | None = None,
    n: int = 100,
    n_cols: int | None = None,
    ax: Any = None,
    path: str | os.PathLike | None = None,
    cmap: str = "gray",
    title: str | None = None,
):
    """Show the receptive fields (rows of the weight matrix) of the first ``n`` hidden units.

    Each filter is scaled to its own symmetric range ``[-max|w|, max|w|]`` so that mid grey is
    zero.

    Parameters
    ----------
    weight : RBM, Tensor or array of shape (n_hidden, n_visible)
        A model with a ``weight`` attribute, or the weights themselves.
    image_shape : (int, int), optional
        Height and width of one filter; by default square.
    n : int, default=100
        Number of filters shown.
    n_cols : int, optional
        Filters per row; by default about ``sqrt(n)``.
    ax : matplotlib Axes, optional
        Draw into it instead of a new figure.
    path : str or PathLike, optional
        Save the figure there (format from the extension, e.g. PNG).
    cmap : str, default="gray"
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_filters(torch.randn(16, 64), n=16)
    >>> type(fig).__name__
    'Figure'
    """
    W = _as_matrix(weight, "weight")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"The 'n' parameter must be an int in the range [1, inf). Got {n!r} instead.")
    W = W[:n]
    shape = _image_shape(W.shape[1], image_shape)
    scale = W.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    cols = n_cols if n_cols is not None else math.ceil(math.sqrt(W.shape[0]))
    return _show_mosaic(W / scale, shape, cols, ax, path, cmap, -1.0, 1.0, title)


def plot_images(
    X: Any,
    *,
    image_shape: tuple[int, int] | None = None,
    n: int = 100,
    n_cols: int = 10,
    ax: Any = None,
    path: str | os.PathLike | None = None,
    cmap: str = "gray",
    title: str | None = None,
):
    """Show images (data, reconstructions or samples) in a grid.

    Values are shown on the common range of ``X`` (``[0, 1]`` when they lie in it).

    Parameters
    ----------
    X : Tensor or array of shape (n_images, n_pixels) or (n_images, height, width)
    image_shape : (int, int), optional
        By default square.
    n : int, default=100
        Number of images shown (the first ``n``).
    n_cols : int, default=10
    ax, path, cmap, title
        As in :func:`plot_filters`.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_images(torch.rand(20, 49), n_cols=5)
    >>> len(fig.axes)
    1
    """
    images = _as_matrix(X, "X")[:n]
    shape = _image_shape(images.shape[1], image_shape)
    lo, hi = float(images.min()), float(images.max())
    if lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    return _show_mosaic(images, shape, n_cols, ax, path, cmap, lo, hi if hi > lo else lo + 1.0, title)


def plot_history(
    history: Sequence[Mapping[str, Any]],
    *,
    keys: Sequence[str] = _HISTORY_KEYS,
    path: str | os.PathLike | None = None,
    title: str | None = None,
):
    """Plot per-epoch monitors of a training history, one panel per key.

    Parameters
    ----------
    history : list of dict
        One record per epoch (as returned by :func:`dbn.rbm.train_rbm`); records may lack keys.
    keys : sequence of str, default=("reconstruction_error", "pseudo_likelihood", "free_energy_gap")
        Monitors to plot; keys present in no record are skipped.
    path : str or PathLike, optional
        Save the figure there.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_history([{"epoch": 1, "reconstruction_error": 3.0}, {"epoch": 2, "reconstruction_error": 2.5}])
    >>> len(fig.axes)
    1
    """
    matplotlib = _require_matplotlib()
    if isinstance(keys, str):
        keys = (keys,)
    records = list(history)
    present = [k for k in keys if any(k in r for r in records)]
    if not present:
        raise ValueError(
            f"None of the keys {tuple(keys)} appears in the history; available keys: "
            f"{sorted({k for r in records for k in r})}."
        )
    fig = matplotlib.figure.Figure(figsize=(4.0 * len(present), 3.2))
    for i, key in enumerate(present):
        ax = fig.add_subplot(1, len(present), i + 1)
        points = [(r.get("epoch", j + 1), r[key]) for j, r in enumerate(records) if key in r]
        ax.plot([p[0] for p in points], [float(p[1]) for p in points], marker="o", markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(key.replace("_", " "))
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    return fig
