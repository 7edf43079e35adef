"""Choosing each arm's fine-tuning setting on validation data (``StudyConfig(protocol="tuned")``).

Every arm fine-tunes the first seed of a cell with every setting of the grid; the setting whose
selected epoch has the lowest validation error wins (ties: the lower validation loss, then the
earlier setting of the grid). A setting that diverged (NaN loss) is chosen only when every
setting did. The choice is made from the stored tuning runs alone, so that a resumed study makes
the same choice, and the report can show it with every setting's validation error.

This module imports neither torch nor numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["TuningResult", "Choice", "tuning_results", "choose_setting", "CHANCE_FRACTION_OF_INIT"]

#: A setting whose best validation error is above this fraction of the error at initialisation
#: did not train (the arm sits at chance under it).
CHANCE_FRACTION_OF_INIT = 0.9


@dataclass(frozen=True)
class TuningResult:
    """One tuning run, as the choice sees it: its setting and its selected epoch's validation numbers.

    Attributes
    ----------
    setting : str
        The setting's label.
    valid_error, valid_loss : float
        At the selected epoch (NaN when missing).
    init_valid_error : float
        At initialisation (epoch 0).
    diverged : bool
    time : float
        Fine-tuning seconds of the run.
    """

    setting: str
    valid_error: float
    valid_loss: float
    init_valid_error: float
    diverged: bool
    time: float

    @property
    def trained(self) -> bool:
        """Whether the run got clearly below its error at initialisation (and did not diverge)."""
        return (
            not self.diverged
            and math.isfinite(self.valid_error)
            and not self.valid_error >= CHANCE_FRACTION_OF_INIT * self.init_valid_error
        )


@dataclass(frozen=True)
class Choice:
    """The chosen setting of one arm in one cell, and whether any setting trained.

    Attributes
    ----------
    setting : str
        The label of the chosen setting.
    status : {"ok", "diverged", "chance"}
        ``"diverged"``: every setting diverged; ``"chance"``: the chosen one did not get below
        90% of its validation error at initialisation.
    reason : str
        A phrase for the report ("" when ``status == "ok"``).
    """

    setting: str
    status: str
    reason: str


def _num(v: Any) -> float:
    return math.nan if v is None or v == "" else float(v)


def tuning_results(rows: Iterable[Mapping[str, Any]]) -> dict[str, TuningResult]:
    """run_key -> :class:`TuningResult` for the tuning runs (``stage == "tune"``) among ``rows``.

    Examples
    --------
    >>> rows = [{"run_key": "k", "stage": "tune", "setting": "a", "epoch": e, "selected": e == 1,
    ...          "valid_error": 0.9 - 0.5 * e, "valid_loss": 2.0 - e, "diverged": False, "finetune_time": 1.0}
    ...         for e in (0, 1)]
    >>> r = tuning_results(rows)["k"]
    >>> r.setting, round(r.valid_error, 2), r.init_valid_error, r.trained
    ('a', 0.4, 0.9, True)
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("stage") == "tune":
            groups.setdefault(r["run_key"], []).append(r)
    out = {}
    for key, group in groups.items():
        group = sorted(group, key=lambda r: r["epoch"])
        sel = next((r for r in group if r.get("selected")), group[-1])
        out[key] = TuningResult(
            setting=str(sel["setting"]),
            valid_error=_num(sel.get("valid_error")),
            valid_loss=_num(sel.get("valid_loss")),
            init_valid_error=_num(group[0].get("valid_error")) if group[0]["epoch"] == 0 else math.nan,
            diverged=bool(sel.get("diverged")),
            time=_num(sel.get("finetune_time")),
        )
    return out


def choose_setting(results: Sequence[TuningResult]) -> Choice:
    """The setting of lowest validation error among ``results`` (in grid order).

    Ties go to the lower validation loss, then to the earlier setting; a diverged run is
    considered only when all diverged.

    Examples
    --------
    >>> r = [TuningResult("sgd", 0.10, 0.3, 0.9, False, 1.0), TuningResult("adam", 0.08, 0.4, 0.9, False, 1.0),
    ...      TuningResult("fast", 0.05, 0.2, 0.9, True, 1.0)]
    >>> choose_setting(r)
    Choice(setting='adam', status='ok', reason='')
    """
    if not results:
        raise ValueError("choose_setting needs at least one tuning result.")
    finite = [(i, r) for i, r in enumerate(results) if not r.diverged]
    pool = finite or list(enumerate(results))

    def rank(item: tuple[int, TuningResult]) -> tuple[float, float, int]:
        i, r = item
        err = r.valid_error if math.isfinite(r.valid_error) else math.inf
        loss = r.valid_loss if math.isfinite(r.valid_loss) else math.inf
        return (err, loss, i)

    best = min(pool, key=rank)[1]
    if not finite:
        return Choice(best.setting, "diverged", f"diverged (NaN loss) under all {len(results)} settings")
    if not best.trained:
        return Choice(
            best.setting,
            "chance",
            f"best validation error {100 * best.valid_error:.2f}% under all {len(results)} settings, "
            f"no better than at initialisation ({100 * best.init_valid_error:.2f}%)",
        )
    return Choice(best.setting, "ok", "")
