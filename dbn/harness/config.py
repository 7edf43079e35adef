"""What a comparison study runs: the arms, the sweeps, the budget and the tuning grid.

An *arm* is a :class:`dbn.DBNClassifier` parameter dict that fixes the initialisation and the
units (random init or greedy pretraining, sigmoid or ReLU, dropout, batch norm). The *budget*
(maximum epochs, early stopping on the same validation split, pretraining epochs, batch size)
comes from :class:`StudyConfig` and is the same for every arm. The fine-tuning *settings*
(optimizer, learning rate, momentum, and whatever else the user puts in the grid) are either
chosen per arm on validation data (``protocol="tuned"``, the default: every arm tries every
setting of the same ``grid`` on the first seed and runs all seeds with the one of lowest
validation error) or shared by every arm (``protocol="shared"``: the single setting given by
``solver``, ``learning_rate`` and ``momentum``).
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, get_args

from .._options import MONITORS, OPTIMIZERS, Monitor, OptimizerName
from .._validation import check_choice, check_int, check_scalar

__all__ = [
    "ARMS",
    "PROTOCOL_KEYS",
    "TUNABLE_KEYS",
    "PRETRAIN_KEYS",
    "DEFAULT_GRID",
    "QUICK_GRID",
    "GRIDS",
    "PROTOCOLS",
    "StudyConfig",
    "RunSpec",
    "arm_params",
    "is_pretrained",
    "setting_label",
    "DIGITS_DEFAULTS",
]

#: ``StudyConfig.protocol``: settings chosen per arm on validation data, or one for all arms.
Protocol = Literal["tuned", "shared"]
PROTOCOLS: tuple[str, ...] = get_args(Protocol)

#: Fine-tuning optimizers (the alias of :mod:`dbn._options`).
Solver = OptimizerName

#: The built-in arms: name -> :class:`dbn.DBNClassifier` parameters. Add your own with
#: ``ARMS["name"] = {...}`` or through ``StudyConfig(extra_arms={...})``.
ARMS: dict[str, dict[str, Any]] = {
    # Hinton's N(0, 0.01) init, sigmoid units: the random-init twin of the DBN
    "sigmoid-normal": {"pretrain": None, "activation": "sigmoid", "init": "normal"},
    # Glorot & Bengio's normalised init
    "sigmoid-xavier": {"pretrain": None, "activation": "sigmoid", "init": "xavier"},
    "relu-he": {"pretrain": None, "activation": "relu", "init": "he"},
    "relu-he-dropout": {"pretrain": None, "activation": "relu", "init": "he", "dropout": 0.5},
    "relu-he-batchnorm": {"pretrain": None, "activation": "relu", "init": "he", "batch_norm": True},
    "maxout-dropout": {
        "pretrain": None,
        "activation": "maxout",
        "init": "he",
        "maxout_pieces": 2,
        "dropout": 0.5,
    },
    # sigmoid layers pretrained as RBMs (CD-1, Hinton's momentum and weight cost)
    "dbn": {"pretrain": "rbm", "activation": "sigmoid"},
    # sigmoid layers pretrained as denoising autoencoders (masking noise 0.2)
    "sda": {"pretrain": "dae", "activation": "sigmoid", "corruption": "mask", "corruption_level": 0.2},
    # the DBN fine-tuned with dropout (Hinton et al. 2012; Srivastava et al. 2014): same stack as "dbn"
    "dbn-dropout": {"pretrain": "rbm", "activation": "sigmoid", "dropout": 0.5},
    # the SdA fine-tuned with dropout: same stack as "sda"
    "sda-dropout": {
        "pretrain": "dae",
        "activation": "sigmoid",
        "corruption": "mask",
        "corruption_level": 0.2,
        "dropout": 0.5,
    },
}

#: DBNClassifier parameters a tuning grid may set: fine-tuning settings only, so that one
#: pretrained stack serves every setting of an arm.
TUNABLE_KEYS: tuple[str, ...] = (
    "solver",
    "learning_rate_init",
    "momentum",
    "nesterovs_momentum",
    "alpha",
    "l1",
    "dropout",
    "input_dropout",
    "batch_size",
    "lr_schedule",
    "clip_grad_norm",
    "max_norm",
    "freeze_epochs",
)

#: DBNClassifier parameters that pretraining reads (a stack is shared by the runs that agree on
#: these, the seed and the pretraining data): :func:`dbn.recipe.pretrain`'s.
PRETRAIN_KEYS: tuple[str, ...] = (
    "hidden_layer_sizes",
    "pretrain",
    "visible",
    "n_iter",
    "propagate",
    "pretrain_learning_rate",
    "pretrain_batch_size",
    "weight_decay",
    "pretrain_momentum",
    "k",
    "persistent",
    "sparsity_target",
    "sparsity_cost",
    "corruption",
    "corruption_level",
    "centered",
    "sampler",
    "n_temperatures",
    "device",
)

#: The default tuning grid: SGD with momentum 0.9 and Adam, three learning rates each.
DEFAULT_GRID: tuple[dict[str, Any], ...] = (
    {"solver": "sgd", "learning_rate_init": 0.1, "momentum": 0.9},
    {"solver": "sgd", "learning_rate_init": 0.03, "momentum": 0.9},
    {"solver": "sgd", "learning_rate_init": 0.01, "momentum": 0.9},
    {"solver": "adam", "learning_rate_init": 3e-3},
    {"solver": "adam", "learning_rate_init": 1e-3},
    {"solver": "adam", "learning_rate_init": 3e-4},
)

#: The README's digits study's grid (``dbn compare``'s default, ``--grid quick``): the four
#: settings of :data:`DEFAULT_GRID` that digits' arms chose most often, to keep it near three minutes.
QUICK_GRID: tuple[dict[str, Any], ...] = (
    {"solver": "sgd", "learning_rate_init": 0.1, "momentum": 0.9},
    {"solver": "sgd", "learning_rate_init": 0.03, "momentum": 0.9},
    {"solver": "adam", "learning_rate_init": 3e-3},
    {"solver": "adam", "learning_rate_init": 1e-3},
)

#: Named grids of ``dbn compare --grid``.
GRIDS: dict[str, tuple[dict[str, Any], ...]] = {"full": DEFAULT_GRID, "quick": QUICK_GRID}

_SHORT = {"learning_rate_init": "lr", "momentum": "m", "nesterovs_momentum": "nesterov"}


def setting_label(setting: Mapping[str, Any]) -> str:
    """A short, unique name of a fine-tuning setting: the solver, then ``key=value`` pairs.

    Momentum is shown for the solvers that use it (SGD, RMSprop) only.

    Examples
    --------
    >>> setting_label({"solver": "sgd", "learning_rate_init": 0.1, "momentum": 0.9})
    'sgd lr=0.1 m=0.9'
    >>> setting_label({"solver": "adam", "learning_rate_init": 0.001, "momentum": 0.9, "dropout": 0.5})
    'adam lr=0.001 dropout=0.5'
    """
    solver = setting.get("solver", "")
    parts = [str(solver)] if solver else []
    for key in sorted(setting, key=lambda k: (k != "learning_rate_init", k != "momentum", k)):
        if key == "solver" or (key == "momentum" and solver not in ("sgd", "rmsprop")):
            continue
        parts.append(
            f"{_SHORT.get(key, key)}={setting[key]:g}"
            if isinstance(setting[key], float)
            else f"{_SHORT.get(key, key)}={setting[key]}"
        )
    return " ".join(parts)


#: DBNClassifier parameters set by the protocol, the same for every arm.
PROTOCOL_KEYS: tuple[str, ...] = (
    "hidden_layer_sizes",
    "solver",
    "learning_rate_init",
    "momentum",
    "batch_size",
    "max_iter",
    "n_iter_no_change",
    "tol",
    "n_iter",
    "pretrain_learning_rate",
    "pretrain_batch_size",
    "early_stopping",
    "monitor",
    "random_state",
    "device",
)


def is_pretrained(params: Mapping[str, Any]) -> bool:
    """Whether an arm's parameters ask for greedy pretraining (``pretrain`` "rbm" or "dae").

    ``DBNClassifier`` pretrains by default, so a missing ``pretrain`` key means RBMs.

    Examples
    --------
    >>> is_pretrained(ARMS["dbn"]), is_pretrained(ARMS["relu-he"])
    (True, False)
    """
    return params.get("pretrain", "rbm") is not None


def _size_label(size: int | None) -> int | str:
    return "all" if size is None else int(size)


@dataclass(frozen=True)
class StudyConfig:
    """A comparison study: arms x depths x widths x labelled sizes x seeds (x folds).

    The defaults are the README's digits study (:data:`DIGITS_DEFAULTS`, about three minutes on
    two cores) but for the grid: the README's study tunes on the four settings of
    :data:`QUICK_GRID`, the default grid has six.

    Parameters
    ----------
    dataset : str, default="digits"
        ``"digits"``, ``"mnist"`` or a path accepted by :func:`dbn.datasets.load_dataset`.
    arms : tuple of str, default=all ten built-in arms (``tuple(ARMS)``)
        Names from :data:`ARMS` or from ``extra_arms``.
    depths : tuple of int, default=(1, 3)
        Numbers of hidden layers.
    widths : tuple of int, default=(128,)
        Units per hidden layer.
    sizes : tuple of int or None, default=(100, None)
        Labelled training-set sizes; ``None`` is the whole training set ("all"). Each seed
        draws its own class-stratified subset, shared by all arms.
    seeds : tuple of int, default=(0, 1, 2, 3, 4)
        Replicates. A seed fixes the labelled subset, the initialisation/pretraining and the
        mini-batch order; arms run with the same seed see the same data in the same order.
    folds : int or None, default=None
        ``None``: the data set's fixed train/validation split. ``K``: K-fold cross-validation
        over train + validation pooled (fold ``f`` validates, the rest trains); the test set
        stays the same.
    unlabelled : bool, default=True
        Pretrain on the whole training set (semi-supervised: unlabelled data are cheap)
        rather than on the labelled subset only.
    protocol : {"tuned", "shared"}, default="tuned"
        ``"tuned"``: for each (depth, width, labelled size, fold) every arm fine-tunes the first
        seed with every setting of ``grid`` (same budget for all), keeps the setting with the
        lowest validation error (ties: lower validation loss, then grid order; settings that
        diverged only when all did) and runs every seed with it. The tuning runs are stored
        (``stage="tune"``) and reported; pretraining is computed once per arm and seed and
        shared by the settings. ``"shared"``: every arm runs the single setting ``solver``,
        ``learning_rate``, ``momentum``.
    grid : sequence of dict, default=DEFAULT_GRID
        Fine-tuning settings to choose from (``protocol="tuned"``): dicts of DBNClassifier
        parameters from :data:`TUNABLE_KEYS` (``solver``, ``learning_rate_init``,
        ``momentum``, ``alpha``, ``dropout``, ...). Keys a setting leaves out take the
        study's values (``solver``, ``learning_rate``, ``momentum``, ``batch_size``) or the
        arm's. The default: SGD with momentum 0.9 at learning rates 0.1, 0.03, 0.01 and Adam
        at 3e-3, 1e-3, 3e-4.
    solver, learning_rate, momentum
        The shared setting (``protocol="shared"``), and the values a grid setting leaves out.
    batch_size, epochs, patience, tol : int, int, int or None, float; default=20, 20, 10, 1e-4
        The budget shared by all arms: mini-batch size, maximum epochs, early stopping on the
        validation split (``patience`` epochs without an improvement of ``monitor`` by more
        than ``tol``; the best epoch's weights are kept). ``patience=None`` trains for
        ``epochs`` epochs and keeps the last weights.
    monitor : {"valid_score", "valid_loss"}, default="valid_score"
        What early stopping selects the epoch on: validation accuracy (error) or loss.
    min_updates : int, default=0
        The least number of parameter updates a run may make: a cell whose labelled set gives
        ``ceil(n / batch_size)`` updates per epoch gets ``max(epochs, ceil(min_updates / that))``
        epochs, so that small labelled sets are not cut off after a few hundred updates while
        large ones keep ``epochs`` (the budget stays the same for every arm of a cell).
    pretrain_epochs : int, default=10
        Pretraining epochs per layer (pretrained arms).
    pretrain_learning_rate : float, default=0.05
    pretrain_batch_size : int or None, default=None
        Defaults to ``batch_size``.
    probe_size : int, default=500
        Training samples (fixed per seed) on which gradients and activations are measured.
    monitor_size : int or None, default=10000
        Training samples (fixed per seed) on which the per-epoch training loss and error
        are evaluated in eval mode; ``None`` uses the whole labelled subset.
    extra_arms : mapping, default={}
        More arms (or replacements of built-in ones): name -> DBNClassifier parameters.
    reference : str, default="dbn"
        Arm that paired differences are taken against.
    baseline : str, default="sigmoid-normal"
        Random-init arm the pretrained arms are read against in the findings (the same
        sigmoid network without pretraining).
    device : str, default="cpu"

    Examples
    --------
    >>> cfg = StudyConfig(arms=("relu-he", "dbn"), depths=(1,), sizes=(50,), seeds=(0, 1))
    >>> cfg.n_runs()  # 2 arms x (6 tuning runs on seed 0 + 2 seeds with the chosen setting)
    16
    >>> spec = cfg.tuning_specs(cfg.cells()[0])[0]
    >>> spec.key.split("|")[:9]
    ['digits', 'relu-he', 'd1', 'w128', 'n50', 's0', 'f0', 'tune', 'sgd lr=0.1 m=0.9']
    >>> len(cfg.replace(protocol="shared").run_specs())
    4
    """

    dataset: str = "digits"
    arms: tuple[str, ...] = tuple(ARMS)  # all ten built-in arms
    depths: tuple[int, ...] = (1, 3)
    widths: tuple[int, ...] = (128,)
    sizes: tuple[int | None, ...] = (100, None)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    folds: int | None = None
    unlabelled: bool = True
    protocol: Protocol = "tuned"
    grid: tuple[Mapping[str, Any], ...] = DEFAULT_GRID
    solver: Solver = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    batch_size: int = 20
    epochs: int = 20
    patience: int | None = 10
    tol: float = 1e-4
    monitor: Monitor = "valid_score"
    min_updates: int = 0
    pretrain_epochs: int = 10
    pretrain_learning_rate: float = 0.05
    pretrain_batch_size: int | None = None
    probe_size: int = 500
    monitor_size: int | None = 10000
    extra_arms: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    reference: str = "dbn"
    baseline: str = "sigmoid-normal"
    device: str = "cpu"

    def __post_init__(self) -> None:
        # normalise sequences to tuples so that lists from notebooks work and the config hashes
        for name in ("arms", "depths", "widths", "sizes", "seeds"):
            value = getattr(self, name)
            if isinstance(value, (str, numbers.Integral)) or value is None:
                value = (value,)
            object.__setattr__(self, name, tuple(value))
        if isinstance(self.grid, Mapping):
            object.__setattr__(self, "grid", (self.grid,))
        if isinstance(self.grid, (list, tuple)):
            object.__setattr__(self, "grid", tuple(dict(g) if isinstance(g, Mapping) else g for g in self.grid))
        self.validate()

    # -- checks ------------------------------------------------------------------------------
    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the field and the fix."""
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"The 'dataset' parameter must be 'digits', 'mnist' or a path. Got {self.dataset!r}.")
        known = {**ARMS, **dict(self.extra_arms)}
        if not self.arms:
            raise ValueError("The 'arms' parameter must name at least one arm.")
        for arm in self.arms:
            if arm not in known:
                raise ValueError(
                    f"Unknown arm {arm!r} in 'arms'. Known arms: {sorted(known)}; add your own "
                    "with StudyConfig(extra_arms={name: DBNClassifier parameters})."
                )
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"The 'arms' parameter lists an arm twice: {self.arms}.")
        for name, params in dict(self.extra_arms).items():
            if not isinstance(name, str) or not isinstance(params, Mapping):
                raise ValueError(
                    "The 'extra_arms' parameter must map arm names to dicts of DBNClassifier "
                    f"parameters. Got {name!r}: {params!r}."
                )
            clash = sorted(set(params) & set(PROTOCOL_KEYS))
            if clash:
                raise ValueError(
                    f"Arm {name!r} sets protocol parameters {clash}; these come from the "
                    "StudyConfig and are shared by every arm. Remove them from the arm."
                )
        for name in ("depths", "widths", "seeds"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"The {name!r} parameter must have at least one value.")
            low = 0 if name == "seeds" else 1
            for v in values:
                check_int(name, v, low=low)
        if not self.sizes:
            raise ValueError("The 'sizes' parameter must have at least one value (None = all).")
        for s in self.sizes:
            if s is not None:
                check_int("sizes", s, low=2)
        if self.folds is not None:
            check_int("folds", self.folds, low=2)
        if not isinstance(self.unlabelled, bool):
            raise ValueError(f"The 'unlabelled' parameter must be a bool. Got {self.unlabelled!r}.")
        check_choice("protocol", self.protocol, PROTOCOLS)
        check_choice("monitor", self.monitor, MONITORS)
        self._validate_grid()
        check_choice("solver", self.solver, OPTIMIZERS)
        check_scalar("learning_rate", self.learning_rate, low=0.0, low_inclusive=False)
        check_scalar("momentum", self.momentum, low=0.0, high=1.0, high_inclusive=False)
        check_int("batch_size", self.batch_size, low=1)
        check_int("epochs", self.epochs, low=1)
        check_int("min_updates", self.min_updates, low=0)
        if self.patience is not None:
            check_int("patience", self.patience, low=1)
        check_scalar("tol", self.tol, low=0.0)
        check_int("pretrain_epochs", self.pretrain_epochs, low=0)
        check_scalar("pretrain_learning_rate", self.pretrain_learning_rate, low=0.0, low_inclusive=False)
        if self.pretrain_batch_size is not None:
            check_int("pretrain_batch_size", self.pretrain_batch_size, low=1)
        check_int("probe_size", self.probe_size, low=1)
        if self.monitor_size is not None:
            check_int("monitor_size", self.monitor_size, low=1)

    def _validate_grid(self) -> None:
        if not isinstance(self.grid, tuple) or not self.grid:
            raise ValueError(
                "The 'grid' parameter must be a non-empty list of dicts of fine-tuning settings, e.g. "
                f"[{{'solver': 'sgd', 'learning_rate_init': 0.1}}, {{'solver': 'adam', 'learning_rate_init': 0.001}}]. "
                f"Got {self.grid!r}."
            )
        labels = []
        for setting in self.grid:
            if not isinstance(setting, dict) or not setting:
                raise ValueError(
                    f"Each 'grid' setting must be a non-empty dict of DBNClassifier parameters. Got {setting!r}."
                )
            unknown = sorted(set(setting) - set(TUNABLE_KEYS))
            if unknown:
                raise ValueError(
                    f"The 'grid' setting {setting!r} sets {unknown}, which a grid cannot tune: a setting holds "
                    f"fine-tuning parameters only ({', '.join(TUNABLE_KEYS)}); change the arm or the study for "
                    "the others."
                )
            if "solver" in setting:
                check_choice("grid solver", setting["solver"], OPTIMIZERS)
            if "learning_rate_init" in setting:
                check_scalar("grid learning_rate_init", setting["learning_rate_init"], low=0.0, low_inclusive=False)
            labels.append(setting_label(self._effective(setting)))
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(f"The 'grid' parameter lists the same setting twice: {twice}. Remove the duplicates.")

    # -- derived -----------------------------------------------------------------------------
    @property
    def all_arms(self) -> dict[str, dict[str, Any]]:
        """Built-in and extra arms together (extra ones win)."""
        return {**ARMS, **{k: dict(v) for k, v in dict(self.extra_arms).items()}}

    def _effective(self, setting: Mapping[str, Any]) -> dict[str, Any]:
        """A grid setting completed with the study's solver, learning rate and momentum."""
        return {
            "solver": self.solver,
            "learning_rate_init": self.learning_rate,
            "momentum": self.momentum,
            **dict(setting),
        }

    def settings(self) -> dict[str, dict[str, Any]]:
        """The fine-tuning settings the arms run, by label: the grid's (``protocol="tuned"``) or the
        single shared one (``protocol="shared"``).

        Examples
        --------
        >>> list(StudyConfig(protocol="shared").settings())
        ['sgd lr=0.1 m=0.9']
        """
        chosen = self.grid if self.protocol == "tuned" else ({},)
        return {setting_label(self._effective(s)): self._effective(s) for s in chosen}

    def shared_settings(self) -> dict[str, Any]:
        """The settings shared by every arm and every setting (what the run hash covers, with
        the arm and the setting)."""
        keys = (
            "folds",
            "unlabelled",
            "batch_size",
            "epochs",
            "min_updates",
            "patience",
            "tol",
            "monitor",
            "pretrain_epochs",
            "pretrain_learning_rate",
            "pretrain_batch_size",
            "probe_size",
            "monitor_size",
        )
        return {k: getattr(self, k) for k in keys}

    def protocol_hash(self, arm: str, setting: str | None = None) -> str:
        """Short hash of the shared settings, the arm's parameters and the fine-tuning setting
        (a label of :meth:`settings`; default: the first): changing any re-runs the arm."""
        settings = self.settings()
        effective = settings[setting if setting is not None else next(iter(settings))]
        payload = json.dumps(
            {"protocol": self.shared_settings(), "arm": self.all_arms[arm], "setting": effective},
            sort_keys=True,
            default=repr,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:10]

    def epoch_budget(self, n_train: int, batch_size: int | None = None) -> int:
        """Maximum fine-tuning epochs of a run on ``n_train`` labelled samples (see ``min_updates``).

        Examples
        --------
        >>> cfg = StudyConfig(epochs=10, min_updates=1000, batch_size=100)
        >>> cfg.epoch_budget(50000), cfg.epoch_budget(1000)
        (10, 100)
        """
        per_epoch = -(-int(n_train) // int(batch_size or self.batch_size))
        return max(self.epochs, -(-self.min_updates // max(per_epoch, 1)))

    def cells(self) -> list[tuple[int | str, int, int, int]]:
        """The (labelled size, depth, width, fold) cells, in the order the study runs them."""
        folds = range(self.folds) if self.folds else (0,)
        return [
            (_size_label(size), int(depth), int(width), int(fold))
            for size in self.sizes
            for depth in self.depths
            for width in self.widths
            for fold in folds
        ]

    def _spec(self, cell: tuple, arm: str, seed: int, stage: str, setting: str) -> RunSpec:
        size, depth, width, fold = cell
        return RunSpec(
            dataset=self.dataset,
            arm=arm,
            depth=depth,
            width=width,
            size=size,
            seed=int(seed),
            fold=fold,
            protocol=self.protocol_hash(arm, setting),
            stage=stage,
            setting=setting,
        )

    def tuning_specs(self, cell: tuple) -> list[RunSpec]:
        """The tuning runs of a cell: every arm with every grid setting on the first seed
        (none with ``protocol="shared"``)."""
        if self.protocol != "tuned":
            return []
        return [self._spec(cell, arm, self.seeds[0], "tune", label) for arm in self.arms for label in self.settings()]

    def final_specs(self, cell: tuple, chosen: Mapping[str, str]) -> list[RunSpec]:
        """The runs that the report analyses: every seed of every arm in ``chosen`` (arm ->
        setting label), seeds outermost so that paired runs finish close together."""
        return [
            self._spec(cell, arm, seed, "final", chosen[arm])
            for seed in self.seeds
            for arm in self.arms
            if arm in chosen
        ]

    def n_runs(self) -> int:
        """How many runs the whole study makes (tuning runs included)."""
        per_arm = len(self.seeds) + (len(self.settings()) if self.protocol == "tuned" else 0)
        return len(self.cells()) * len(self.arms) * per_arm

    def run_specs(self) -> list[RunSpec]:
        """Every run known before the study starts: the final runs with ``protocol="shared"``; the
        tuning runs with ``protocol="tuned"`` (the final runs depend on what tuning chooses)."""
        if self.protocol == "tuned":
            return [spec for cell in self.cells() for spec in self.tuning_specs(cell)]
        only = next(iter(self.settings()))
        return [spec for cell in self.cells() for spec in self.final_specs(cell, dict.fromkeys(self.arms, only))]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``sizes`` keep None for "all")."""
        d = asdict(self)
        d["extra_arms"] = {k: dict(v) for k, v in dict(self.extra_arms).items()}
        d["grid"] = [dict(g) for g in self.grid]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StudyConfig:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Unknown StudyConfig fields {unknown}. Valid fields: {sorted(names)}.")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> StudyConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


#: The README's digits study (``dbn compare``'s defaults): the :class:`StudyConfig` defaults
#: with the four-setting :data:`QUICK_GRID`.
DIGITS_DEFAULTS = StudyConfig(grid=QUICK_GRID)


@dataclass(frozen=True)
class RunSpec:
    """One run: an arm on one (depth, width, labelled size, seed, fold) cell with one
    fine-tuning setting.

    ``protocol`` is the hash of everything else the run depends on
    (:meth:`StudyConfig.protocol_hash`); ``stage`` is ``"tune"`` for a tuning run (validation
    only, no per-epoch measurements) and ``"final"`` for a run the report analyses;
    ``setting`` the label of its fine-tuning setting (:func:`setting_label`).

    Examples
    --------
    >>> spec = RunSpec("digits", "dbn", 3, 128, "all", 0, 0, "abc", "final", "sgd lr=0.1 m=0.9")
    >>> spec.key
    'digits|dbn|d3|w128|nall|s0|f0|final|sgd lr=0.1 m=0.9|abc'
    """

    dataset: str
    arm: str
    depth: int
    width: int
    size: int | str
    seed: int
    fold: int
    protocol: str
    stage: str = "final"
    setting: str = ""

    @property
    def key(self) -> str:
        """Identity of the run in the results (resume skips a key already there)."""
        return "|".join(
            (
                self.dataset,
                self.arm,
                f"d{self.depth}",
                f"w{self.width}",
                f"n{self.size}",
                f"s{self.seed}",
                f"f{self.fold}",
                self.stage,
                self.setting,
                self.protocol,
            )
        )

    @property
    def cell(self) -> tuple[int | str, int, int, int]:
        """(labelled size, depth, width, fold), as :meth:`StudyConfig.cells` lists them."""
        return (self.size, self.depth, self.width, self.fold)


def arm_params(config: StudyConfig, spec: RunSpec) -> dict[str, Any]:
    """The full :class:`dbn.DBNClassifier` parameters of a run: the arm's, the study's budget
    and the run's fine-tuning setting (which wins over both).

    Examples
    --------
    >>> cfg = StudyConfig(arms=("dbn",), depths=(2,), widths=(16,), sizes=(50,), seeds=(0,))
    >>> p = arm_params(cfg, cfg.run_specs()[-1])
    >>> p["hidden_layer_sizes"], p["pretrain"], p["max_iter"], p["solver"], p["learning_rate_init"]
    ((16, 16), 'rbm', 20, 'adam', 0.0003)
    """
    settings = config.settings()
    if spec.setting not in settings:
        raise ValueError(f"The run's setting {spec.setting!r} is not one of the study's: {sorted(settings)}.")
    params: dict[str, Any] = dict(config.all_arms[spec.arm])
    params.update(
        hidden_layer_sizes=(spec.width,) * spec.depth,
        batch_size=config.batch_size,
        max_iter=config.epochs,
        early_stopping=config.patience is not None,
        n_iter_no_change=config.patience if config.patience is not None else config.epochs,
        monitor=config.monitor,
        tol=config.tol,
        n_iter=config.pretrain_epochs,
        pretrain_learning_rate=config.pretrain_learning_rate,
        pretrain_batch_size=config.pretrain_batch_size or config.batch_size,
        random_state=spec.seed,
        device=config.device,
        alpha=0.0,  # no L2 unless the grid sets it, whatever the estimator's default
    )
    params.update(settings[spec.setting])
    return params
