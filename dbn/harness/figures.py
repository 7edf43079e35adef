"""PNG figures of a study. matplotlib (the ``plot`` extra) is imported inside the functions only,
with the Agg backend; :func:`matplotlib_available` tells whether it can be.
"""

from __future__ import annotations

import importlib.util
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import t_interval

__all__ = ["matplotlib_available", "make_figures"]


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported (without importing it).

    Examples
    --------
    >>> isinstance(matplotlib_available(), bool)
    True
    """
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _size_key(size: Any) -> float:
    return math.inf if size == "all" else float(size)


def _colors(arms: Sequence[str]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {a: cmap(i % 10) for i, a in enumerate(arms)}


def _arms(runs: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["arm"] for r in runs))


def _mean_curve(rows: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``key`` per epoch over the finite values (a diverged run's NaN epochs are left out)."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        v = r.get(key)
        if v is not None and math.isfinite(float(v)):
            by_epoch[int(r["epoch"])].append(float(v))
    epochs = np.array(sorted(by_epoch))
    return epochs, np.array([np.mean(by_epoch[e]) for e in epochs])


def _save(fig, path: Path, title: str) -> None:
    """Title, lay out, write the PNG and free the figure."""
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)


def _largest_size(runs, depth: int, width: int | None = None) -> Any:
    """The largest labelled size with runs at ``depth`` (and ``width``): an unfinished study may
    have more labels at shallower depths only."""
    return max(
        (r["size"] for r in runs if int(r["depth"]) == depth and (width is None or int(r["width"]) == width)),
        key=_size_key,
    )


def _learning_curves(rows, runs, path: Path, colors) -> str:
    """One panel per arm that has finite errors after training started at the deepest, narrowest,
    largest-size cell; arms without any (every run diverged at once) are left out and named in the caption."""
    plt = _pyplot()
    dmax = max(int(r["depth"]) for r in runs)
    width = min(int(r["width"]) for r in runs if int(r["depth"]) == dmax)
    size = _largest_size(runs, dmax, width)
    curves = {}
    for arm in _arms(runs):
        sel = [
            r
            for r in rows
            if r["arm"] == arm and int(r["depth"]) == dmax and r["size"] == size and int(r["width"]) == width
        ]
        curves[arm] = {key: _mean_curve(sel, key) for key in ("train_error", "valid_error", "test_error")}
    shown = [a for a in curves if any(e.size > 1 for e, _ in curves[a].values())]  # a line needs two epochs
    left_out = [a for a in curves if a not in shown]
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(3.2 * max(len(shown), 1), 3), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], shown, strict=False):
        for (key, (e, m)), style in zip(curves[arm].items(), ("--", ":", "-"), strict=True):
            if e.size:
                ax.plot(e, 100 * m, style, color=colors[arm], label=key.replace("_error", ""))
        ax.set_title(arm, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("error (%)")
    if shown:
        axes[0][0].legend(fontsize=7)
    _save(fig, path, f"Learning curves (mean over seeds), depth {dmax}, width {width}, {size} labels")
    note = f" Left out, no finite error after initialisation (diverged): {', '.join(left_out)}." if left_out else ""
    return (
        "Learning curves per arm: training (dashed), validation (dotted) and test (solid) error, "
        f"depth {dmax}, {size} labels.{note}"
    )


def _gradient_norms(rows, runs, path: Path, colors) -> str:
    plt = _pyplot()
    dmax = max(int(r["depth"]) for r in runs)
    size = _largest_size(runs, dmax)
    names = [f"L{i}" for i in range(1, dmax + 1)] + ["out"]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), sharex=True)
    for col, (label, pick) in enumerate(
        (
            ("at initialisation", lambda r: r["epoch"] == 0),
            ("after training (selected epoch)", lambda r: bool(r.get("selected"))),
        )
    ):
        for row_i, (prefix, title) in enumerate(
            (("grad_s", "||dL/ds|| (back-propagated)"), ("grad_w", "||dL/dW|| (weight gradient)"))
        ):
            ax = axes[row_i][col]
            for arm in _arms(runs):
                sel = [r for r in rows if r["arm"] == arm and int(r["depth"]) == dmax and r["size"] == size and pick(r)]
                if not sel:
                    continue
                means = []
                for n in names:
                    vals = [float(r[f"{prefix}_{n}"]) for r in sel if r.get(f"{prefix}_{n}") not in (None, "")]
                    means.append(np.exp(np.mean(np.log(np.maximum(vals, 1e-30)))) if vals else np.nan)
                ax.plot(range(1, len(names) + 1), means, "o-", color=colors[arm], label=arm)
            ax.set_yscale("log")
            ax.set_title(f"{title}, {label}", fontsize=9)
            ax.set_xticks(range(1, len(names) + 1), names)
            ax.grid(alpha=0.3, which="both")
    axes[1][0].set_xlabel("layer (input side -> output)")
    axes[1][1].set_xlabel("layer (input side -> output)")
    axes[0][0].legend(fontsize=7)
    _save(fig, path, f"Gradient norms by layer, depth {dmax}, {size} labels (geometric mean over seeds)")
    return (
        f"Back-propagated and weight gradient norms by layer (log scale), depth {dmax}, "
        "at initialisation and after training."
    )


def _ci_plot(ax, xs, groups, color, label):
    means, lows, highs = [], [], []
    for g in groups:
        ci = t_interval(g)
        means.append(100 * ci["mean"])
        lows.append(100 * (ci["mean"] - ci["low"]) if math.isfinite(ci["low"]) else 0.0)
        highs.append(100 * (ci["high"] - ci["mean"]) if math.isfinite(ci["high"]) else 0.0)
    ax.errorbar(xs, means, yerr=[lows, highs], fmt="o-", color=color, label=label, capsize=3)


def _error_vs_depth(runs, path: Path, colors) -> str:
    plt = _pyplot()
    sizes = sorted({r["size"] for r in runs}, key=_size_key)
    width = min(int(r["width"]) for r in runs)
    fig, axes = plt.subplots(1, len(sizes), figsize=(4 * len(sizes), 3.3), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        for arm in _arms(runs):
            sel = [r for r in runs if r["arm"] == arm and r["size"] == size and int(r["width"]) == width]
            depths = sorted({int(r["depth"]) for r in sel})
            _ci_plot(
                ax, depths, [[r["test_error"] for r in sel if int(r["depth"]) == d] for d in depths], colors[arm], arm
            )
        ax.set_title(f"{size} labels", fontsize=9)
        ax.set_xlabel("hidden layers")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test error (%)")
    axes[0][0].legend(fontsize=7)
    _save(fig, path, f"Test error vs depth (mean, 95% CI over seeds), width {width}")
    return "Test error vs number of hidden layers, mean and 95% t-interval over seeds."


def _error_vs_size(runs, path: Path, colors) -> str:
    plt = _pyplot()
    dmax = max(int(r["depth"]) for r in runs)
    width = min(int(r["width"]) for r in runs)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for arm in _arms(runs):
        sel = [r for r in runs if r["arm"] == arm and int(r["depth"]) == dmax and int(r["width"]) == width]
        ns = sorted({int(r["n_train"]) for r in sel})
        for ax, key in zip(axes, ("test_error", "gap"), strict=True):
            _ci_plot(ax, ns, [[r[key] for r in sel if int(r["n_train"]) == n] for n in ns], colors[arm], arm)
    for ax, title in zip(axes, ("test error (%)", "generalisation gap: test - train error (pp)"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("labelled training samples")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    _save(fig, path, f"Error and generalisation gap vs labelled set size, depth {dmax}")
    return f"Test error and generalisation gap vs labelled training-set size (log scale), depth {dmax}, 95% CIs."


def _train_vs_test(rows, runs, path: Path, colors) -> str:
    plt = _pyplot()
    depths = sorted({int(r["depth"]) for r in runs})
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.8), squeeze=False)
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_run[r["run_key"]].append(r)
    clipped = False
    for ax, depth in zip(axes[0], depths, strict=True):
        size = _largest_size(runs, depth)
        labelled = set()
        xs: list[float] = []
        ys: list[float] = []
        for group in by_run.values():
            g = sorted(group, key=lambda r: r["epoch"])
            if int(g[0]["depth"]) != depth or g[0]["size"] != size:
                continue
            arm = g[0]["arm"]
            pairs = [
                (float(r["train_loss"]), float(r["test_loss"]))
                for r in g
                if r["epoch"] > 0 and r.get("train_loss") is not None and r.get("test_loss") is not None
            ]
            pairs = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0]
            if not pairs:
                continue
            tr, te = zip(*pairs, strict=True)
            xs += tr
            ys += te
            ax.plot(tr, te, "-", color=colors[arm], alpha=0.35, lw=0.8)
            sel = next((r for r in g if r.get("selected")), g[-1])
            ax.plot(
                [sel["train_loss"]],
                [sel["test_loss"]],
                "o",
                color=colors[arm],
                label=None if arm in labelled else arm,
                ms=5,
            )
            labelled.add(arm)
        ax.set_xscale("log")
        ax.set_yscale("log")
        clipped |= _robust_limits(ax.set_xlim, xs)
        clipped |= _robust_limits(ax.set_ylim, ys)
        ax.set_xlabel("training loss (nats)")
        ax.set_title(f"depth {depth}, {size} labels", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("test loss (nats)")
    axes[0][0].legend(fontsize=7)
    _save(fig, path, "Training vs test loss of every run through training (dot: selected epoch)")
    return (
        "Training vs test loss per run as training proceeds (Erhan et al.'s picture): a regulariser "
        "moves runs down (lower test loss) without moving them left (lower training loss)."
        + (
            " Axes end at 3 times the 95th percentile of the losses: the epochs of diverging runs beyond it "
            "are not shown."
            if clipped
            else ""
        )
    )


def _robust_limits(set_limits, values: Sequence[float]) -> bool:
    """Log-scale limits from finite positive values: from the smallest to 3 times the 95th percentile
    (so a few diverging epochs do not stretch the axis to 1e4); True when that clips a value."""
    if not values:
        return False
    v = np.asarray(values, dtype=float)
    low, high = float(v.min()) / 1.5, min(float(v.max()) * 1.5, 3 * float(np.quantile(v, 0.95)))
    set_limits(low, high)
    return bool(v.max() > high)


def make_figures(rows: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]], out_dir: str | Path) -> dict[str, str]:
    """Draw the study's PNG figures into ``out_dir``; returns ``{file name: caption}``.

    Figures: ``learning_curves.png``, ``gradient_norms.png``, ``error_vs_depth.png``,
    ``error_vs_size.png``, ``train_vs_test.png``. Needs matplotlib.

    Examples
    --------
    >>> make_figures([], [], ".")
    {}
    """
    if not runs:
        return {}
    out = Path(out_dir)
    colors = _colors(_arms(runs))
    made = {
        "learning_curves.png": _learning_curves(rows, runs, out / "learning_curves.png", colors),
        "gradient_norms.png": _gradient_norms(rows, runs, out / "gradient_norms.png", colors),
        "error_vs_depth.png": _error_vs_depth(runs, out / "error_vs_depth.png", colors),
        "error_vs_size.png": _error_vs_size(runs, out / "error_vs_size.png", colors),
        "train_vs_test.png": _train_vs_test(rows, runs, out / "train_vs_test.png", colors),
    }
    return made
