"""Running a study: data per seed, one fit per arm with per-epoch measurements, resumable storage.

Each run builds and fine-tunes its network with :mod:`dbn.recipe`, the code that
:meth:`dbn.DBNClassifier.fit` runs (greedy pretraining and export, or a random init; then
fine-tuning, with the ``freeze_epochs`` phase), adding per-epoch callbacks that measure
losses, errors, gradients and activations. The harness reaches the training code only through
the recipe (and the network helpers of :mod:`dbn.network` and :func:`dbn.training.evaluate`
for its measurements). Two differences from the estimator, both recipe parameters, for the
pairing of arms within a seed:

* initialisation/pretraining and fine-tuning draw from two generators seeded from the seed,
  so that every arm of a seed visits the same mini-batches in the same order whatever its
  pretraining consumed (the estimator draws both from one generator);
* early stopping watches the study's validation split (``validation_data``) instead of a
  random fraction of the labelled data, so every arm is stopped on the same data.

Rows are stored by :class:`dbn.harness.store.ResultStore` as each run finishes; running the
same study again skips finished runs and reruns an interrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import recipe
from .._random import resolve_device
from .._validation import DivergenceError
from ..datasets import Split, load_dataset
from ..estimators import DBNClassifier
from ..network import linear_layers
from ..training import History, evaluate
from .config import PRETRAIN_KEYS, RunSpec, StudyConfig, arm_params, is_pretrained
from .metrics import layer_statistics, weight_change
from .store import CONFIG_JSON, ResultStore, _json_default, check_study_dir, dataset_hash, dataset_label, load_rows
from .tuning import choose_setting, tuning_results

__all__ = [
    "build_network",
    "finetune",
    "fit_arm",
    "ArmFit",
    "StudyData",
    "prepare_data",
    "run_one",
    "run_study",
    "choose_settings",
    "StudyResults",
    "ResultStore",
    "load_rows",
]

# ---------------------------------------------------------------------------------------------
# DBNClassifier.fit, in pieces
# ---------------------------------------------------------------------------------------------


def _check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Complete ``params`` with DBNClassifier's defaults; unknown names are a ValueError."""
    try:
        est = DBNClassifier(**dict(params))
    except TypeError as exc:
        valid = sorted(DBNClassifier().get_params())
        raise ValueError(f"Arm parameters must be DBNClassifier parameters ({valid}): {exc}") from None
    full = est.get_params()
    if full["pretrained"] is not None:
        raise ValueError("The harness pretrains itself: arms cannot use 'pretrained'; use 'pretrain'.")
    return full


def build_network(
    params: Mapping[str, Any],
    X: torch.Tensor,
    n_outputs: int,
    *,
    X_pretrain: torch.Tensor | None = None,
    generator: torch.Generator,
) -> tuple[nn.Sequential, Any]:
    """The network :meth:`dbn.DBNClassifier.fit` would fine-tune, before fine-tuning.

    :func:`dbn.recipe.build_network` with the arm's parameters completed by the estimator's
    defaults.

    Parameters
    ----------
    params : mapping
        DBNClassifier parameters (missing ones take the estimator's defaults).
    X, n_outputs, X_pretrain, generator
        As in :func:`dbn.recipe.build_network` (``n_outputs``: the number of classes).

    Returns
    -------
    (nn.Sequential, LayerStack or None)

    Examples
    --------
    >>> net, stack = build_network({"pretrain": None, "hidden_layer_sizes": (5,)}, torch.rand(10, 3), 2,
    ...                            generator=torch.Generator().manual_seed(0))
    >>> net[0], stack
    (Linear(in_features=3, out_features=5, bias=True), None)
    """
    return recipe.build_network(_check_params(params), X, n_outputs, generator=generator, X_pretrain=X_pretrain)


def finetune(
    net: nn.Sequential,
    params: Mapping[str, Any],
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    generator: torch.Generator,
    pretrained: bool,
    validation_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    callbacks: Sequence[Callable[[nn.Module, dict], Any]] = (),
) -> History:
    """Fine-tune ``net`` as :meth:`dbn.DBNClassifier.fit` does, with extra epoch callbacks.

    :func:`dbn.recipe.finetune`. With ``validation_data`` early stopping (if
    ``params["early_stopping"]`` or the harness asks for it) watches that set instead of a
    fraction of ``X``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> X, y = torch.rand(40, 3, generator=g), torch.arange(40) % 2
    >>> net, _ = build_network({"pretrain": None, "hidden_layer_sizes": (4,)}, X, 2, generator=g)
    >>> h = finetune(net, {"max_iter": 3, "batch_size": 10}, X, y, generator=g, pretrained=False)
    >>> len(h)
    3
    """
    return recipe.finetune(
        net,
        _check_params(params),
        X,
        y,
        generator=generator,
        pretrained=pretrained,
        validation_data=validation_data,
        callbacks=callbacks,
    )


#: What :func:`fit_arm` returns: the fitted network and its records (:class:`dbn.recipe.RecipeFit`).
ArmFit = recipe.RecipeFit


def fit_arm(
    params: Mapping[str, Any],
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    n_classes: int,
    X_pretrain: torch.Tensor | None = None,
    validation_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    generator: torch.Generator,
    fit_generator: torch.Generator | None = None,
    callbacks: Sequence[Callable[[nn.Module, dict], Any]] = (),
    checkpoint_dir: str | os.PathLike | None = None,
) -> ArmFit:
    """:meth:`dbn.DBNClassifier.fit` on tensors, with per-epoch callbacks: :func:`dbn.recipe.fit`.

    With ``fit_generator=None`` and no ``validation_data`` the result is the estimator's,
    weight for weight, for ``random_state`` seeding ``generator``: both run the same code.
    ``checkpoint_dir`` checkpoints pretraining and fine-tuning as the estimator's does, in a
    subdirectory keyed by the fit's fingerprint (data, settings, generator states:
    :func:`dbn.recipe.run_directory`).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> X, y = torch.rand(40, 3, generator=g), torch.arange(40) % 2
    >>> fit = fit_arm({"hidden_layer_sizes": (4,), "n_iter": 1, "max_iter": 2, "batch_size": 10},
    ...               X, y, n_classes=2, generator=g)
    >>> fit.stack.sizes, len(fit.history)
    ((3, 4), 2)
    """
    return recipe.fit(
        _check_params(params),
        X,
        y,
        n_outputs=n_classes,
        generator=generator,
        X_pretrain=X_pretrain,
        fit_generator=fit_generator,
        validation_data=validation_data,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
    )


# ---------------------------------------------------------------------------------------------
# Data for one (seed, fold, size)
# ---------------------------------------------------------------------------------------------


def _stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random permutation whose every prefix is (nearly) class-stratified."""
    perm = rng.permutation(y.size)
    yp = y[perm]
    counts = np.bincount(yp)
    order = np.argsort(yp, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(y.size, dtype=np.float64)
    rank[order] = np.arange(y.size) - starts[yp[order]]
    key = (rank + 0.5) / counts[yp]
    return perm[np.argsort(key, kind="stable")]


def _fold_ids(y: np.ndarray, k: int) -> np.ndarray:
    """Stratified fold index of every sample (fixed seed 0)."""
    rng = np.random.default_rng(0)
    folds = np.empty(y.size, dtype=np.int64)
    folds[_stratified_order(y, rng)] = np.arange(y.size) % k
    return folds


def _seeds(seed: int, fold: int) -> tuple[int, int, int]:
    """Seeds of (data subset, init/pretraining, fine-tuning) for one replicate."""
    state = np.random.SeedSequence([seed, fold]).generate_state(3)
    return int(state[0]), int(state[1]), int(state[2])


@dataclass
class StudyData:
    """Tensors of one replicate (seed, fold) and labelled size, shared by all its arms."""

    X: torch.Tensor
    y: torch.Tensor
    X_pretrain: torch.Tensor
    X_valid: torch.Tensor
    y_valid: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    X_probe: torch.Tensor
    y_probe: torch.Tensor
    X_monitor: torch.Tensor
    y_monitor: torch.Tensor
    n_classes: int
    init_seed: int
    fit_seed: int


def _tensor(a: np.ndarray, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), device=device, dtype=dtype)


def prepare_data(
    split: Split,
    *,
    size: int | str,
    seed: int,
    fold: int = 0,
    folds: int | None = None,
    unlabelled: bool = False,
    probe_size: int = 500,
    monitor_size: int | None = 10000,
    device: str | torch.device = "cpu",
) -> StudyData:
    """Labelled subset, pretraining data, validation/test sets and probes of one replicate.

    The subset is a class-stratified prefix of a permutation drawn from ``seed``: for one
    seed, smaller subsets are contained in larger ones, and every arm gets the same samples.

    Examples
    --------
    >>> from dbn.datasets import load_dataset
    >>> d = prepare_data(load_dataset("digits"), size=100, seed=0)
    >>> tuple(d.X.shape), tuple(d.X_pretrain.shape), d.n_classes
    ((100, 64), (100, 64), 10)
    """
    dev = resolve_device(device)
    classes = np.unique(np.concatenate([split.y_train, split.y_valid, split.y_test]))

    def enc(labels: np.ndarray) -> np.ndarray:
        return np.searchsorted(classes, labels).astype(np.int64)

    if folds:
        X_pool = np.concatenate([split.X_train, split.X_valid])
        y_pool = enc(np.concatenate([split.y_train, split.y_valid]))
        ids = _fold_ids(y_pool, folds)
        X_train, y_train = X_pool[ids != fold], y_pool[ids != fold]
        X_valid, y_valid = X_pool[ids == fold], y_pool[ids == fold]
    else:
        X_train, y_train = split.X_train, enc(split.y_train)
        X_valid, y_valid = split.X_valid, enc(split.y_valid)
    data_seed, init_seed, fit_seed = _seeds(seed, fold)
    order = _stratified_order(y_train, np.random.default_rng(data_seed))
    n = y_train.size if size == "all" else int(size)
    if n > y_train.size:
        raise ValueError(
            f"The labelled size {n} exceeds the {y_train.size} training samples available; use a smaller size or 'all'."
        )
    pool = _tensor(X_train, dev, torch.float32)
    pool_y = _tensor(y_train, dev)
    if n == y_train.size:
        X, y = pool, pool_y  # no copy: order does not matter, batches are shuffled
    else:
        idx = _tensor(order[:n], dev)
        X, y = pool[idx], pool_y[idx]
    probe = _tensor(order[: min(probe_size, n)], dev)
    mon = _tensor(order[: n if monitor_size is None else min(monitor_size, n)], dev)
    return StudyData(
        X=X,
        y=y,
        X_pretrain=pool if unlabelled else X,
        X_valid=_tensor(X_valid, dev, torch.float32),
        y_valid=_tensor(y_valid, dev),
        X_test=_tensor(split.X_test, dev, torch.float32),
        y_test=_tensor(enc(split.y_test), dev),
        X_probe=pool[probe],
        y_probe=pool_y[probe],
        X_monitor=pool[mon],
        y_monitor=pool_y[mon],
        n_classes=int(classes.size),
        init_seed=init_seed,
        fit_seed=fit_seed,
    )


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------


def _layer_names(n_linear: int) -> list[str]:
    return [f"L{i + 1}" for i in range(n_linear - 1)] + ["out"]


def _measure(net: nn.Sequential, data: StudyData, initial: list[torch.Tensor]) -> dict[str, Any]:
    """Loss/error on the monitor and test sets and the per-layer statistics."""
    train_loss, train_acc = evaluate(net, data.X_monitor, data.y_monitor)
    test_loss, test_acc = evaluate(net, data.X_test, data.y_test)
    row: dict[str, Any] = {
        "train_loss": train_loss,
        "train_error": 1.0 - train_acc,
        "test_loss": test_loss,
        "test_error": 1.0 - test_acc,
    }
    stats = layer_statistics(net, data.X_probe, data.y_probe)
    changes = weight_change(net, initial)
    for name, rec, (dw, dw_rel) in zip(_layer_names(len(stats)), stats, changes, strict=True):
        for k, v in rec.items():
            row[f"{k}_{name}"] = v
        row[f"wchange_{name}"] = dw
        row[f"wchange_rel_{name}"] = dw_rel
    return row


def _stack_key(params: Mapping[str, Any], spec: RunSpec, data: StudyData, unlabelled: bool) -> str:
    """What a pretrained stack depends on: the pretraining settings, the replicate's seed and
    the pretraining data (the whole training set, or the labelled subset of this size)."""
    settings = {k: params.get(k) for k in PRETRAIN_KEYS}
    return json.dumps(
        [settings, data.init_seed, spec.fold, None if unlabelled else spec.size], sort_keys=True, default=repr
    )


def _initial_network(
    params: dict[str, Any], spec: RunSpec, data: StudyData, unlabelled: bool, stack_cache: dict | None
) -> tuple[nn.Sequential, float, bool]:
    """The network before fine-tuning, its pretraining time and whether the stack was reused.

    A pretrained stack is computed once per (pretraining settings, seed, pretraining data) and
    kept in ``stack_cache`` with the state of the initialisation generator after it, so that a
    run that reuses it builds the very network it would have built itself (same output layer,
    the arm's own dropout), whatever its fine-tuning setting.
    """
    g_init = torch.Generator(device=data.X.device).manual_seed(data.init_seed)
    if not is_pretrained(params):
        net, _ = build_network(params, data.X, data.n_classes, generator=g_init)
        return net, 0.0, False
    full = _check_params(params)
    key = _stack_key(full, spec, data, unlabelled)
    cached = stack_cache is not None and key in stack_cache
    if cached:
        stack, state, pretrain_time = stack_cache[key]  # type: ignore[index]
        g_init.set_state(state)
    else:
        start = time.perf_counter()
        stack = recipe.pretrain(full, data.X_pretrain, generator=g_init)
        pretrain_time = time.perf_counter() - start
        if stack_cache is not None:
            stack_cache[key] = (stack, g_init.get_state(), pretrain_time)
    net, _ = recipe.build_network(full, data.X, data.n_classes, generator=g_init, stack=stack)
    return net, pretrain_time, cached


def run_one(
    config: StudyConfig, spec: RunSpec, data: StudyData, stack_cache: dict | None = None
) -> list[dict[str, Any]]:
    """Fit one arm on one replicate with one setting; one row per epoch (epoch 0 = at initialisation).

    The network at the end is the one early stopping selected (the best validation error, or
    loss with ``monitor="valid_loss"``); its row has ``selected=True``. A divergence (NaN loss)
    ends the run early with ``diverged=True`` instead of stopping the study.

    A final run (``spec.stage == "final"``) measures, every epoch, the loss and error on the
    monitor and test sets and the per-layer gradients and activations; a tuning run
    (``"tune"``) records the validation numbers only (it never looks at the test set).

    ``stack_cache`` (a dict kept by :func:`run_study`) shares a pretrained stack between the
    runs that pretrain alike: the settings of a tuning grid, the labelled sizes when pretraining
    uses all the unlabelled data, and arms that differ in fine-tuning only (``dbn`` and
    ``dbn-dropout``). The row's ``pretrain_time`` stays the time that pretraining took;
    ``pretrain_cached`` says whether this run reused it.

    Examples
    --------
    >>> from dbn.datasets import load_dataset
    >>> cfg = StudyConfig(arms=("relu-he",), depths=(1,), widths=(8,), sizes=(60,), seeds=(0,), epochs=2,
    ...                   protocol="shared")
    >>> spec = cfg.run_specs()[0]
    >>> rows = run_one(cfg, spec, prepare_data(load_dataset("digits"), size=60, seed=0))
    >>> [r["epoch"] for r in rows], rows[0]["n_train"]
    ([0, 1, 2], 60)
    """
    params = arm_params(config, spec)
    if config.min_updates:
        params["max_iter"] = config.epoch_budget(data.X.shape[0], params["batch_size"])
    final = spec.stage == "final"
    g_fit = torch.Generator(device=data.X.device).manual_seed(data.fit_seed)
    rows: list[dict[str, Any]] = []
    state: dict[str, Any] = {}

    def on_epoch(net: nn.Module, record: dict) -> None:
        row = {
            "epoch": len(rows),
            "train_loss_batches": record["train_loss"],
            "valid_loss": record["valid_loss"],
            "valid_error": None if record["valid_score"] is None else 1.0 - record["valid_score"],
            "learning_rate": record["learning_rate"],
            "epoch_time": record["time"],
        }
        if final:
            row.update(_measure(net, data, state["initial"]))  # type: ignore[arg-type]
        rows.append(row)

    net, pretrain_time, pretrain_cached = _initial_network(params, spec, data, config.unlabelled, stack_cache)
    state["initial"] = [lin.weight.detach().clone() for lin in linear_layers(net)]
    valid_loss, valid_acc = evaluate(net, data.X_valid, data.y_valid)
    row0 = {
        "epoch": 0,
        "train_loss_batches": None,
        "valid_loss": valid_loss,
        "valid_error": 1.0 - valid_acc,
        "learning_rate": None,
        "epoch_time": 0.0,
    }
    if final:
        row0.update(_measure(net, data, state["initial"]))
    rows.append(row0)
    spent = [0.0]

    def timed(net: nn.Module, record: dict) -> None:
        t0 = time.perf_counter()
        on_epoch(net, record)
        spent[0] += time.perf_counter() - t0

    diverged = False
    best_epoch: int | None = None
    stopped_early = False
    start = time.perf_counter()
    try:
        history = finetune(
            net,
            params,
            data.X,
            data.y,
            generator=g_fit,
            pretrained=is_pretrained(params),
            validation_data=(data.X_valid, data.y_valid),
            callbacks=[timed],
        )
        best_epoch, stopped_early = history.best_epoch, history.stopped_early
    except DivergenceError:
        diverged = True
    finetune_time = time.perf_counter() - start - spent[0]
    n_epochs = len(rows) - 1
    if diverged:
        watched = "valid_loss" if config.monitor == "valid_loss" else "valid_error"
        finite = [r for r in rows[1:] if r[watched] is not None and math.isfinite(r["valid_loss"] or math.nan)]
        best_epoch = min(finite, key=lambda r: r[watched])["epoch"] if finite else 0
    if config.patience is None and not diverged:
        selected = n_epochs
    else:
        selected = best_epoch if best_epoch is not None else n_epochs
    base = {
        "run_key": spec.key,
        "dataset": spec.dataset,
        "arm": spec.arm,
        "depth": spec.depth,
        "width": spec.width,
        "size": spec.size,
        "seed": spec.seed,
        "fold": spec.fold,
        "protocol": spec.protocol,
        "stage": spec.stage,
        "setting": spec.setting,
        "pretrained": is_pretrained(params),
        "unlabelled": bool(config.unlabelled and is_pretrained(params)),
        "n_train": int(data.X.shape[0]),
        "n_pretrain": int(data.X_pretrain.shape[0]) if is_pretrained(params) else 0,
    }
    tail = {
        "n_epochs": n_epochs,
        "best_epoch": best_epoch,
        "selected_epoch": selected,
        "stopped_early": stopped_early,
        "diverged": diverged,
        "pretrain_time": pretrain_time,
        "pretrain_cached": pretrain_cached,
        "finetune_time": finetune_time,
    }
    return [{**base, **row, "selected": row["epoch"] == selected, **tail} for row in rows]


# ---------------------------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------------------------


def _check_same_data(stored: list[dict[str, Any]], label: str, digest: str) -> None:
    """Refuse to add runs on data whose content differs from that of the stored runs of the
    same data set label (rows written before hashes were recorded are not checked)."""
    hashes = {r.get("dataset_hash") for r in stored if r.get("dataset") == label} - {None, ""}
    if hashes and hashes != {digest}:
        stored_hashes = ", ".join(sorted(str(h) for h in hashes))
        raise ValueError(
            f"The data set {label!r} has other contents (hash {digest}) than when the stored runs of this study "
            f"were made (hash {stored_hashes}). Point 'dataset' at the same data, or use another "
            "output directory."
        )


def choose_settings(config: StudyConfig, cell: tuple, rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Arm -> the label of its chosen setting in ``cell``, from the stored tuning runs
    (:func:`dbn.harness.tuning.choose_setting`; every tuning run of the cell must be stored).

    Examples
    --------
    >>> import tempfile
    >>> cfg = StudyConfig(arms=("relu-he",), depths=(1,), widths=(8,), sizes=(60,), seeds=(0,), epochs=2,
    ...                   grid=[{"solver": "sgd", "learning_rate_init": 1e-6},
    ...                         {"solver": "adam", "learning_rate_init": 0.01}])
    >>> res = run_study(cfg, tempfile.mkdtemp(), progress=False)
    >>> choose_settings(cfg, cfg.cells()[0], res.rows)
    {'relu-he': 'adam lr=0.01'}
    """
    results = tuning_results(rows)
    chosen = {}
    for arm in config.arms:
        specs = [s for s in config.tuning_specs(cell) if s.arm == arm]
        missing = [s.key for s in specs if s.key not in results]
        if missing:
            raise ValueError(f"The tuning runs {missing} are not stored: run the study to make them first.")
        chosen[arm] = choose_setting([results[s.key] for s in specs]).setting
    return chosen


@dataclass
class StudyResults:
    """Rows of a study (one dict per run and epoch) and where they are stored.

    Attributes
    ----------
    rows : list of dict
        Every stored row of the study directory.
    out_dir : pathlib.Path
    config : StudyConfig
    n_run, n_skipped : int
        Runs done by this call, and runs found already finished.

    Examples
    --------
    >>> import tempfile
    >>> cfg = StudyConfig(arms=("relu-he",), depths=(1,), widths=(8,), sizes=(60,), seeds=(0,), epochs=1)
    >>> res = run_study(cfg, tempfile.mkdtemp(), progress=False)
    >>> [r["stage"] for r in res.runs()].count("tune"), [r["stage"] for r in res.runs()].count("final")
    (6, 1)
    """

    rows: list[dict[str, Any]]
    out_dir: Path
    config: StudyConfig
    n_run: int
    n_skipped: int

    def runs(self) -> list[dict[str, Any]]:
        """One summary dict per run (see :func:`dbn.harness.report.summarise_runs`)."""
        from .report import summarise_runs

        return summarise_runs(self.rows)

    def to_pandas(self):
        """The rows as a ``pandas.DataFrame`` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.rows)


def run_study(
    config: StudyConfig,
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    report: bool = False,
    force: bool = False,
) -> StudyResults:
    """Run every run of ``config`` not yet in ``out_dir``; store rows as each run finishes.

    The study goes cell by cell ((labelled size, depth, width, fold), :meth:`StudyConfig.cells`).
    With ``protocol="tuned"`` each cell first runs the tuning runs (every arm, every grid
    setting, first seed; validation numbers only), then chooses each arm's setting from the
    stored tuning runs (:func:`choose_settings`) and runs every seed with it, measured every
    epoch. An interrupted study resumes where it stopped, tuning included, and makes the same
    choices. ``rows.csv`` is written when the call ends (finished or interrupted);
    ``rows.jsonl`` after every run.

    Parameters
    ----------
    config : StudyConfig
    out_dir : path
        Receives ``rows.jsonl``, ``rows.csv`` and ``config.json`` (and the report with
        ``report=True``). Runs already stored there (same key: arm, depth, width, size, seed,
        fold, dataset and protocol hash) are skipped; an interrupted run is run again. Rows
        name the data set portably (:func:`dbn.harness.store.dataset_label`: ``"digits"``,
        ``"mnist"`` or a path relative to ``out_dir``) and record its content hash
        (``dataset_hash``), so a study directory moved or cloned (with its data, or to where
        the same relative path holds the same data) resumes. Nothing is created in
        ``out_dir`` before the data are loaded: a failed start leaves nothing behind.
    progress : bool, default=True
        A tqdm progress bar over runs.
    report : bool, default=False
        Write ``report.md`` and the figures at the end (:func:`dbn.harness.write_report`).
    force : bool, default=False
        Run even when ``out_dir`` holds a study with other settings (its ``config.json`` is
        replaced; the stored runs stay and are reported with the new ones). Without it such a
        directory raises ``ValueError`` naming the settings that differ.

    Returns
    -------
    StudyResults
        All stored rows of ``out_dir`` (this study's and earlier ones').

    Examples
    --------
    >>> import tempfile
    >>> cfg = StudyConfig(arms=("relu-he",), depths=(1,), widths=(8,), sizes=(60,), seeds=(0,), epochs=1)
    >>> res = run_study(cfg, tempfile.mkdtemp(), progress=False)
    >>> res.n_run, len(res.rows)  # six tuning runs and one final run, of two rows each (epochs 0 and 1)
    (7, 14)
    """
    from tqdm.auto import tqdm

    if not isinstance(config, StudyConfig):
        raise ValueError(f"The 'config' parameter must be a StudyConfig. Got {type(config).__name__}.")
    label = dataset_label(config.dataset, out_dir)
    stored_config = {**config.to_dict(), "dataset": label}
    check_study_dir(out_dir, stored_config, force=force)
    given, config = config, dataclasses.replace(config, dataset=label)  # run keys name the data by label
    stored = load_rows(out_dir)
    done = {r["run_key"] for r in stored}
    known = config.run_specs()
    source: dict[str, Any] = {}

    def data_split() -> Split:
        """The data set, loaded once (and its hash checked against the stored runs')."""
        if "split" not in source:
            source["split"] = load_dataset(given.dataset)
            source["digest"] = dataset_hash(source["split"])
            _check_same_data(stored, label, source["digest"])
        return source["split"]

    # load the data before anything is written (a data set that fails to load leaves no
    # directory), unless every run is stored already
    if any(s.key not in done for s in known) or config.protocol == "tuned" and len(done) < config.n_runs():
        data_split()
    store = ResultStore(out_dir)
    with open(store.out_dir / CONFIG_JSON, "w", encoding="utf-8") as f:
        json.dump(stored_config, f, indent=2, default=_json_default)
    data_cache: dict[tuple, StudyData] = {}
    stack_cache: dict[str, Any] = {}
    total = config.n_runs()
    bar = tqdm(total=total, desc="runs", unit="run", disable=not progress)
    counts = {"run": 0, "skipped": 0}

    def run(specs: Sequence[RunSpec]) -> None:
        for spec in specs:
            if spec.key in done:
                counts["skipped"] += 1
                bar.update(1)
                continue
            bar.set_postfix_str(
                f"{spec.arm} d{spec.depth} w{spec.width} n{spec.size} s{spec.seed}"
                + (f" [{spec.setting}]" if spec.stage == "tune" else ""),
                refresh=False,
            )
            data_key = (spec.size, spec.seed, spec.fold)
            if data_key not in data_cache:
                data_cache.clear()  # one replicate's tensors at a time
                data_cache[data_key] = prepare_data(
                    data_split(),
                    size=spec.size,
                    seed=spec.seed,
                    fold=spec.fold,
                    folds=config.folds,
                    unlabelled=config.unlabelled,
                    probe_size=config.probe_size,
                    monitor_size=config.monitor_size,
                    device=config.device,
                )
            rows = run_one(config, spec, data_cache[data_key], stack_cache)
            store.append([{**row, "dataset_hash": source["digest"]} for row in rows], csv=False)
            done.add(spec.key)
            counts["run"] += 1
            bar.update(1)

    try:
        for cell in config.cells():
            tuning = config.tuning_specs(cell)
            run(tuning)
            if config.protocol == "tuned":
                chosen = choose_settings(config, cell, store.rows)
            else:
                chosen = dict.fromkeys(config.arms, next(iter(config.settings())))
            run(config.final_specs(cell, chosen))
    finally:
        bar.close()
        store.write_csv()  # rows.jsonl holds every finished run already; the CSV follows it
    results = StudyResults(
        rows=store.rows, out_dir=store.out_dir, config=given, n_run=counts["run"], n_skipped=counts["skipped"]
    )
    if report:
        from .report import write_report

        write_report(store.out_dir)
    return results
