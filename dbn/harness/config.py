"""What a comparison study runs: the arms, the sweeps and the shared fine-tuning protocol.

An *arm* is a :class:`dbn.DBNClassifier` parameter dict that fixes the initialisation and the
units (random init or greedy pretraining, sigmoid or ReLU, dropout, batch norm). Everything
else, the *protocol* (optimizer, learning rate, epochs, early stopping on the same validation
split, batch size, pretraining budget), comes from :class:`StudyConfig` and is the same for
every arm, so that the arms differ only in what they are meant to compare.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .._options import OPTIMIZERS, OptimizerName
from .._validation import check_choice, check_int, check_scalar

__all__ = [
    "ARMS",
    "PROTOCOL_KEYS",
    "StudyConfig",
    "RunSpec",
    "arm_params",
    "is_pretrained",
    "DIGITS_DEFAULTS",
]

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
        "pretrain": None, "activation": "maxout", "init": "he", "maxout_pieces": 2, "dropout": 0.5,
    },
    # sigmoid layers pretrained as RBMs (CD-1, Hinton's momentum and weight cost)
    "dbn": {"pretrain": "rbm", "activation": "sigmoid"},
    # sigmoid layers pretrained as denoising autoencoders (masking noise 0.2)
    "sda": {"pretrain": "dae", "activation": "sigmoid", "corruption": "mask", "corruption_level": 0.2},
}

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

    The defaults are the README's digits study (about three minutes on two cores).

    Parameters
    ----------
    dataset : str, default="digits"
        ``"digits"``, ``"mnist"`` or a path accepted by :func:`dbn.datasets.load_dataset`.
    arms : tuple of str, default=all eight built-in arms (``tuple(ARMS)``)
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
    solver, learning_rate, momentum, batch_size, epochs, patience, tol
        The fine-tuning protocol shared by all arms: optimizer and its settings, maximum
        epochs, early stopping on the validation split (``patience`` epochs without an
        improvement of the validation loss by more than ``tol``; the best epoch's weights are
        kept). ``patience=None`` trains for ``epochs`` epochs and keeps the last weights.
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
    >>> cfg = StudyConfig(arms=("relu-he", "dbn"), depths=(1,), sizes=(50,), seeds=(0,))
    >>> len(cfg.run_specs())
    2
    >>> cfg.run_specs()[0].key.split("|")[:6]
    ['digits', 'relu-he', 'd1', 'w128', 'n50', 's0']
    """

    dataset: str = "digits"
    arms: tuple[str, ...] = tuple(ARMS)  # all eight built-in arms
    depths: tuple[int, ...] = (1, 3)
    widths: tuple[int, ...] = (128,)
    sizes: tuple[int | None, ...] = (100, None)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    folds: int | None = None
    unlabelled: bool = True
    solver: Solver = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    batch_size: int = 20
    epochs: int = 30
    patience: int | None = 10
    tol: float = 1e-4
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
        self.validate()

    # -- checks ------------------------------------------------------------------------------
    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the field and the fix."""
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(
                f"The 'dataset' parameter must be 'digits', 'mnist' or a path. Got {self.dataset!r}."
            )
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
        check_choice("solver", self.solver, OPTIMIZERS)
        check_scalar("learning_rate", self.learning_rate, low=0.0, low_inclusive=False)
        check_scalar("momentum", self.momentum, low=0.0, high=1.0, high_inclusive=False)
        check_int("batch_size", self.batch_size, low=1)
        check_int("epochs", self.epochs, low=1)
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

    # -- derived -----------------------------------------------------------------------------
    @property
    def all_arms(self) -> dict[str, dict[str, Any]]:
        """Built-in and extra arms together (extra ones win)."""
        return {**ARMS, **{k: dict(v) for k, v in dict(self.extra_arms).items()}}

    def protocol(self) -> dict[str, Any]:
        """The settings shared by every arm (what the protocol hash covers, with the arm)."""
        keys = (
            "folds", "unlabelled", "solver", "learning_rate", "momentum", "batch_size", "epochs",
            "patience", "tol", "pretrain_epochs", "pretrain_learning_rate", "pretrain_batch_size",
            "probe_size", "monitor_size",
        )
        return {k: getattr(self, k) for k in keys}

    def protocol_hash(self, arm: str) -> str:
        """Short hash of the protocol and the arm's parameters: changing either re-runs the arm."""
        payload = json.dumps(
            {"protocol": self.protocol(), "arm": self.all_arms[arm]}, sort_keys=True, default=repr
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:10]

    def run_specs(self) -> list[RunSpec]:
        """Every run of the study, seeds innermost so that paired runs finish close together."""
        folds = range(self.folds) if self.folds else (0,)
        specs = []
        for size in self.sizes:
            for depth in self.depths:
                for width in self.widths:
                    for fold in folds:
                        for seed in self.seeds:
                            for arm in self.arms:
                                specs.append(RunSpec(
                                    dataset=self.dataset, arm=arm, depth=int(depth), width=int(width),
                                    size=_size_label(size), seed=int(seed), fold=int(fold),
                                    protocol=self.protocol_hash(arm),
                                ))
        return specs

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``sizes`` keep None for "all")."""
        d = asdict(self)
        d["extra_arms"] = {k: dict(v) for k, v in dict(self.extra_arms).items()}
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


#: The README's digits study (the :class:`StudyConfig` defaults).
DIGITS_DEFAULTS = StudyConfig()


@dataclass(frozen=True)
class RunSpec:
    """One run: an arm on one (depth, width, labelled size, seed, fold) cell.

    Examples
    --------
    >>> spec = RunSpec("digits", "dbn", 3, 128, "all", 0, 0, "abc")
    >>> spec.key
    'digits|dbn|d3|w128|nall|s0|f0|abc'
    """

    dataset: str
    arm: str
    depth: int
    width: int
    size: int | str
    seed: int
    fold: int
    protocol: str

    @property
    def key(self) -> str:
        """Identity of the run in the results (resume skips a key already there)."""
        return "|".join((
            self.dataset, self.arm, f"d{self.depth}", f"w{self.width}", f"n{self.size}",
            f"s{self.seed}", f"f{self.fold}", self.protocol,
        ))


def arm_params(config: StudyConfig, spec: RunSpec) -> dict[str, Any]:
    """The full :class:`dbn.DBNClassifier` parameters of a run: the arm's plus the protocol's.

    Examples
    --------
    >>> cfg = StudyConfig(arms=("dbn",), depths=(2,), widths=(16,), sizes=(50,), seeds=(0,))
    >>> p = arm_params(cfg, cfg.run_specs()[0])
    >>> p["hidden_layer_sizes"], p["pretrain"], p["max_iter"]
    ((16, 16), 'rbm', 30)
    """
    params: dict[str, Any] = dict(config.all_arms[spec.arm])
    params.update(
        hidden_layer_sizes=(spec.width,) * spec.depth,
        solver=config.solver,
        learning_rate_init=config.learning_rate,
        momentum=config.momentum,
        batch_size=config.batch_size,
        max_iter=config.epochs,
        n_iter_no_change=config.patience if config.patience is not None else config.epochs,
        tol=config.tol,
        n_iter=config.pretrain_epochs,
        pretrain_learning_rate=config.pretrain_learning_rate,
        pretrain_batch_size=config.pretrain_batch_size,
        random_state=spec.seed,
        device=config.device,
    )
    return params
