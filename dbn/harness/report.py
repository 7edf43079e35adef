"""From stored rows to ``report.md``: per-run summaries, intervals, paired differences, findings.

The findings are computed from the numbers: each sentence quotes the means and 95%
t-intervals over seeds it rests on and the figure that shows them, and says
"inconclusive" when an interval contains zero.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import setting_label
from .metrics import paired_differences, t_interval
from .store import CONFIG_JSON, ROWS_CSV, ROWS_JSON, load_rows
from .tuning import CHANCE_FRACTION_OF_INIT, choose_setting, tuning_results

__all__ = ["summarise_runs", "cell_statistics", "findings", "summary", "write_report", "tuning_table", "RUN_COLUMNS"]

#: Per-run summary columns written to ``runs.csv``.
RUN_COLUMNS: tuple[str, ...] = (
    "run_key",
    "dataset",
    "dataset_hash",
    "arm",
    "depth",
    "width",
    "size",
    "seed",
    "fold",
    "protocol",
    "stage",
    "setting",
    "pretrained",
    "unlabelled",
    "n_train",
    "n_pretrain",
    "n_epochs",
    "selected_epoch",
    "diverged",
    "test_error",
    "valid_error",
    "train_error",
    "test_loss",
    "train_loss",
    "gap",
    "min_train_loss",
    "min_train_loss_epoch",
    "min_train_error",
    "pretrain_time",
    "pretrain_cached",
    "finetune_time",
    "init_grad_ratio_bottom",
    "final_grad_ratio_bottom",
    "init_grad_shrink",
    "final_grad_shrink",
    "init_wgrad_shrink",
    "init_saturated_top",
    "final_saturated_top",
    "init_train_error",
)


def _log10_ratio(a: Any, b: Any) -> float:
    if a is None or b is None or not (a > 0 and b > 0):
        return math.nan
    return math.log10(a / b)


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def summarise_runs(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per run: the selected epoch's errors, optimisation and gradient evidence.

    ``gap`` is test minus training error at the selected epoch; ``min_train_loss`` the lowest
    training loss (eval mode, monitor set) over all epochs and ``min_train_loss_epoch`` its
    epoch; ``init_grad_ratio_bottom`` / ``final_grad_ratio_bottom`` log10 of the bottom
    hidden layer's back-propagated gradient over the output layer's, at initialisation and at
    the selected epoch; ``*_grad_shrink`` log10 of the bottom over the top *hidden* layer's
    (0 for one hidden layer); ``init_wgrad_shrink`` the same for weight gradients;
    ``*_saturated_top`` the fraction of saturated units of the top hidden layer.

    Examples
    --------
    >>> rows = [{"run_key": "k", "arm": "a", "epoch": e, "selected": e == 1, "n_epochs": 1, "depth": 1,
    ...          "train_loss": 1.0 - e / 2, "train_error": 0.5, "test_error": 0.6} for e in (0, 1)]
    >>> s = summarise_runs(rows)[0]
    >>> s["min_train_loss"], s["min_train_loss_epoch"], round(s["gap"], 2)
    (0.5, 1, 0.1)
    """
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["run_key"]].append(r)
    out = []
    for key, group in groups.items():
        group = sorted(group, key=lambda r: r["epoch"])
        first = group[0]
        sel = next((r for r in group if r.get("selected")), group[-1])
        depth = int(first.get("depth") or 1)
        top, bottom = f"L{depth}", "L1"
        losses = [(_num(r.get("train_loss")), r["epoch"]) for r in group]
        finite = [(v, e) for v, e in losses if math.isfinite(v)]
        min_loss, min_epoch = min(finite) if finite else (math.nan, None)
        s: dict[str, Any] = {k: first.get(k) for k in RUN_COLUMNS if k in first}
        s.update(
            run_key=key,
            n_epochs=first.get("n_epochs"),
            selected_epoch=sel["epoch"],
            test_error=_num(sel.get("test_error")),
            valid_error=_num(sel.get("valid_error")),
            train_error=_num(sel.get("train_error")),
            test_loss=_num(sel.get("test_loss")),
            train_loss=_num(sel.get("train_loss")),
            min_train_loss=min_loss,
            min_train_loss_epoch=min_epoch,
            min_train_error=min((_num(r.get("train_error")) for r in group), default=math.nan),
            init_grad_ratio_bottom=_log10_ratio(first.get(f"grad_s_{bottom}"), first.get("grad_s_out")),
            final_grad_ratio_bottom=_log10_ratio(sel.get(f"grad_s_{bottom}"), sel.get("grad_s_out")),
            init_grad_shrink=_log10_ratio(first.get(f"grad_s_{bottom}"), first.get(f"grad_s_{top}")),
            final_grad_shrink=_log10_ratio(sel.get(f"grad_s_{bottom}"), sel.get(f"grad_s_{top}")),
            init_wgrad_shrink=_log10_ratio(first.get(f"grad_w_{bottom}"), first.get(f"grad_w_{top}")),
            init_saturated_top=_num(first.get(f"act_saturated_{top}")),
            final_saturated_top=_num(sel.get(f"act_saturated_{top}")),
            init_train_error=_num(first.get("train_error")) if first["epoch"] == 0 else math.nan,
        )
        s["gap"] = s["test_error"] - s["train_error"]
        out.append(s)
    return out


# ---------------------------------------------------------------------------------------------
# Grouping
# ---------------------------------------------------------------------------------------------

Cell = tuple  # (dataset, depth, width, size)


def _cell(run: dict[str, Any]) -> Cell:
    return (run.get("dataset"), run.get("depth"), run.get("width"), run.get("size"))


def _size_order(size: Any) -> float:
    return math.inf if size == "all" else float(size)


def _by_arm_cell(runs: Sequence[dict[str, Any]], metric: str) -> dict[tuple[str, Cell], dict[tuple, float]]:
    """(arm, cell) -> {(seed, fold): value}; a later run of the same replicate wins."""
    out: dict[tuple[str, Cell], dict[tuple, float]] = defaultdict(dict)
    for r in runs:
        out[(r["arm"], _cell(r))][(r.get("seed"), r.get("fold"))] = _num(r.get(metric))
    return out


def _paired(table: dict[tuple[str, Cell], dict[tuple, float]], a: str, b: str, cell: Cell) -> dict[str, float]:
    """Paired difference ``a - b`` of one metric in one cell (replicates matched by seed and fold)."""
    return paired_differences(table[(a, cell)], table[(b, cell)])


def cell_statistics(
    runs: Sequence[dict[str, Any]], metric: str = "test_error", *, reference: str | None = None
) -> list[dict[str, Any]]:
    """Mean and 95% t-interval of ``metric`` per (arm, cell), and the paired difference to ``reference``.

    Examples
    --------
    >>> runs = [{"arm": a, "dataset": "d", "depth": 1, "width": 8, "size": 100, "seed": s, "fold": 0,
    ...          "test_error": e + 0.01 * s} for a, e in (("a", 0.2), ("b", 0.1)) for s in range(3)]
    >>> stats = cell_statistics(runs, reference="b")
    >>> [(s["arm"], round(s["mean"], 2), round(s["diff_mean"], 2)) for s in stats]
    [('a', 0.21, 0.1), ('b', 0.11, 0.0)]
    """
    table = _by_arm_cell(runs, metric)
    out = []
    for (arm, cell), values in sorted(table.items(), key=lambda kv: (kv[0][1][:3], _size_order(kv[0][1][3]), kv[0][0])):
        ci = t_interval(list(values.values()))
        rec = {"arm": arm, "dataset": cell[0], "depth": cell[1], "width": cell[2], "size": cell[3], **ci}
        if reference is not None and (reference, cell) in table:
            d = paired_differences(values, table[(reference, cell)])
            rec.update({f"diff_{k}": v for k, v in d.items()})
        out.append(rec)
    return out


# ---------------------------------------------------------------------------------------------
# Findings
# ---------------------------------------------------------------------------------------------


def _pp(x: float) -> str:
    """A fraction as percentage points."""
    return "nan" if not math.isfinite(x) else f"{100 * x:+.2f}"


def _ci_pp(d: dict[str, float]) -> str:
    if not math.isfinite(d["low"]):
        return f"{_pp(d['mean'])} pp (n={d['n']}, no interval)"
    return f"{_pp(d['mean'])} pp [95% CI {_pp(d['low'])}, {_pp(d['high'])}], n={d['n']}"


def _ci_num(d: dict[str, float], fmt: str = "{:+.3f}") -> str:
    if not math.isfinite(d["low"]):
        return f"{fmt.format(d['mean'])} (n={d['n']}, no interval)"
    return f"{fmt.format(d['mean'])} [95% CI {fmt.format(d['low'])}, {fmt.format(d['high'])}], n={d['n']}"


#: Differences smaller than these are treated as no difference, even when their interval excludes
#: zero (e.g. two arms stuck at the same chance-level loss differ by 1e-5 nats with a tiny interval).
NEGLIGIBLE_ERROR = 1e-3  # 0.1 percentage point
NEGLIGIBLE_LOSS = 1e-2  # nats
#: The summary calls a gradient "shrinking toward the input" from a factor of 2 (log10 ratio -0.3) on.
NEGLIGIBLE_LOG_SHRINK = 0.3


def _sign(d: dict[str, float], negligible: float = 0.0) -> int:
    """-1 / +1 when the interval lies below / above zero, 0 when it contains zero, is undefined,
    or the mean difference is smaller than ``negligible`` in absolute value."""
    if not (math.isfinite(d["low"]) and math.isfinite(d["high"])):
        return 0
    if abs(d["mean"]) < negligible:
        return 0
    if d["high"] < 0:
        return -1
    if d["low"] > 0:
        return 1
    return 0


def _cell_name(cell: Cell) -> str:
    return f"depth {cell[1]}, width {cell[2]}, {cell[3]} labels"


def _arms(runs: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in runs:
        seen.setdefault(r["arm"], None)
    return list(seen)


def _pick_baseline(runs: Sequence[dict[str, Any]], baseline: str | None) -> str | None:
    arms = _arms(runs)
    if baseline in arms:
        return baseline
    plain = [a for a in arms if not any(r["arm"] == a and r.get("pretrained") for r in runs)]
    return plain[0] if plain else None


#: An arm "did not train" in a cell when its lowest training error stays above this fraction of its
#: error at initialisation (mean over replicates), or, where the error at initialisation is not
#: stored, when its training error at the selected epoch is at least :data:`CHANCE_TRAIN_ERROR`.
#: Such an arm sits at chance: it is named as such and never used as the baseline of a comparison.
CHANCE_TRAIN_ERROR = 2 / 3


def _untrained(runs: Sequence[dict[str, Any]]) -> dict[tuple[str, Cell], str]:
    """(arm, cell) -> why it counts as not trained (a phrase quoting the training errors)."""
    groups: dict[tuple[str, Cell], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["arm"], _cell(r))].append(r)
    out = {}
    for key, group in groups.items():
        train = float(np.nanmean([_num(r.get("train_error")) for r in group] or [math.nan]))
        init = [_num(r.get("init_train_error")) for r in group]
        if all(math.isfinite(v) for v in init):
            lowest = float(np.nanmean([_num(r.get("min_train_error")) for r in group]))
            if lowest >= CHANCE_FRACTION_OF_INIT * float(np.mean(init)):
                out[key] = (
                    f"lowest training error {100 * lowest:.2f}%, no better than at initialisation "
                    f"({100 * float(np.mean(init)):.2f}%)"
                )
        elif math.isfinite(train) and train >= CHANCE_TRAIN_ERROR:
            out[key] = f"training error {100 * train:.2f}%"
    return out


@dataclass
class _Evidence:
    """The per-run metrics of :func:`findings`, tabulated once: arm and cell -> replicate -> value."""

    runs: Sequence[dict[str, Any]]
    base: str | None
    pretrained: list[str]
    test: dict[tuple[str, Cell], dict[tuple, float]]
    train: dict[tuple[str, Cell], dict[tuple, float]]
    mintl: dict[tuple[str, Cell], dict[tuple, float]]
    gap: dict[tuple[str, Cell], dict[tuple, float]]
    cells: list[Cell]
    untrained: dict[tuple[str, Cell], str]

    @classmethod
    def of(cls, runs: Sequence[dict[str, Any]], baseline: str | None) -> _Evidence:
        test = _by_arm_cell(runs, "test_error")
        return cls(
            runs=runs,
            base=_pick_baseline(runs, baseline),
            pretrained=[a for a in _arms(runs) if any(r["arm"] == a and r.get("pretrained") for r in runs)],
            test=test,
            train=_by_arm_cell(runs, "train_error"),
            mintl=_by_arm_cell(runs, "min_train_loss"),
            gap=_by_arm_cell(runs, "gap"),
            cells=sorted({c for _, c in test}, key=lambda c: (c[:3], _size_order(c[3]))),
            untrained=_untrained(runs),
        )

    def trained(self, arm: str | None, cell: Cell) -> bool:
        return arm is not None and (arm, cell) not in self.untrained


def _baseline_cell(ev: _Evidence, p: str, cell: Cell) -> tuple[str, str]:
    """Pretrained arm ``p`` against the baseline in one cell: the regularisation and the
    optimisation sentences."""
    base = ev.base
    assert base is not None  # the callers check ev.trained(base, cell)
    d_test = _paired(ev.test, p, base, cell)
    d_train = _paired(ev.train, p, base, cell)
    d_loss = _paired(ev.mintl, p, base, cell)
    d_gap = _paired(ev.gap, p, base, cell)
    s_test, s_train = _sign(d_test, NEGLIGIBLE_ERROR), _sign(d_train, NEGLIGIBLE_ERROR)
    s_loss = _sign(d_loss, NEGLIGIBLE_LOSS)
    if s_test < 0 and s_train >= 0:
        verdict = "**supports the regulariser reading**: better test error without a better training error"
    elif s_test < 0 and s_train < 0:
        verdict = "better test *and* training error: consistent with better optimisation as much as with regularisation"
    elif s_test > 0:
        verdict = "pretraining **hurt** test error here"
    else:
        verdict = (
            "**inconclusive** (the test-error interval contains 0, or the difference is below "
            f"{100 * NEGLIGIBLE_ERROR:g} pp)"
        )
    regularisation = (
        f"**{p} vs {base}, {_cell_name(cell)}**: test error {_ci_pp(d_test)}; training error "
        f"{_ci_pp(d_train)}; generalisation gap (test - train) {_ci_pp(d_gap)} -> {verdict} "
        "(figures `train_vs_test.png`, `error_vs_size.png`)."
    )
    if s_loss < 0:
        v = "**supports the optimisation reading** (pretraining reached a lower training loss)"
    elif s_loss > 0:
        v = "pretraining reached a *higher* training loss: it did not help optimisation" + (
            ", yet test error was better (Erhan et al.'s regulariser picture)" if s_test < 0 else ""
        )
    else:
        v = f"**inconclusive** (the interval contains 0, or the difference is below {NEGLIGIBLE_LOSS} nats)"
    optimisation = (
        f"**{p} vs {base}, {_cell_name(cell)}**: lowest training loss {_ci_num(d_loss)} "
        f"(nats, {p} minus {base}) -> {v} (figure `learning_curves.png`)."
    )
    return regularisation, optimisation


def _label_trend(p: str, base: str, advantages: dict[Any, dict[tuple, float]]) -> list[str]:
    """Does the advantage of ``p`` over the baseline grow as labels shrink? (smallest vs largest
    size, same depth/width)."""
    lines = []
    by_arch: dict[tuple, list[Cell]] = defaultdict(list)
    for cell in advantages:
        by_arch[cell[:3]].append(cell)
    for arch, cs in by_arch.items():
        if len(cs) < 2:
            continue
        cs = sorted(cs, key=lambda c: _size_order(c[3]))
        small, large = cs[0], cs[-1]
        d = paired_differences(advantages[small], advantages[large])
        s = _sign(d, NEGLIGIBLE_ERROR)
        what = (
            "the benefit of pretraining is **larger with fewer labels**"
            if s < 0
            else "the benefit of pretraining is **smaller with fewer labels**"
            if s > 0
            else "**inconclusive** whether the benefit depends on the number of labels"
        )
        lines.append(
            f"**{p} vs {base}, depth {arch[1]}, width {arch[2]}**: (difference at {small[3]} labels) minus "
            f"(difference at {large[3]} labels) = {_ci_pp(d)} -> {what} (figure `error_vs_size.png`)."
        )
    return lines


def _untrained_note(ev: _Evidence, arm: str, cell: Cell) -> str:
    return (
        f"**{arm} did not train at {_cell_name(cell)}** ({ev.untrained[(arm, cell)]}: at chance): "
        "nothing is compared with it there."
    )


def _against_baseline(ev: _Evidence, out: dict[str, list[str]]) -> None:
    """Regularisation and optimisation: each pretrained arm against the random-init baseline."""
    if ev.base is None or not ev.pretrained:
        msg = (
            "No pretrained arm and random-init baseline pair in the results: add e.g. `dbn` and "
            "`sigmoid-normal` to test this hypothesis."
        )
        out["regularisation"].append(msg)
        out["optimisation"].append(msg)
    if ev.base is None:
        return
    base, test = ev.base, ev.test
    for cell in ev.cells:
        if (base, cell) in ev.untrained and any((p, cell) in test for p in ev.pretrained):
            note = _untrained_note(ev, base, cell)
            out["regularisation"].append(note)
            out["optimisation"].append(note)
    for p in ev.pretrained:
        advantages: dict[Any, dict[tuple, float]] = {}
        for cell in ev.cells:
            if (p, cell) not in test or (base, cell) not in test or not ev.trained(base, cell):
                continue
            regularisation, optimisation = _baseline_cell(ev, p, cell)
            out["regularisation"].append(regularisation)
            out["optimisation"].append(optimisation)
            advantages[cell] = {k: test[(p, cell)][k] - test[(base, cell)].get(k, math.nan) for k in test[(p, cell)]}
        out["regularisation"].extend(_label_trend(p, base, advantages))


def _modern_verdict(s_test: int, s_loss: int, m: str) -> str:
    if s_test < 0 and s_loss > 0:
        return (
            f"pretraining **still helps, as a regulariser**: better test error although {m} "
            "reached a lower training loss"
        )
    if s_test < 0 and s_loss == 0:
        return "pretraining **still helps, as a regulariser**: better test error without a lower training loss"
    if s_test < 0:
        return "pretraining **still helps**, with a lower training loss as well"
    if s_test > 0:
        return f"**{m} is better** here: pretraining does not help against it"
    return (
        "**inconclusive** (the test-error interval contains 0, or the difference is below "
        f"{100 * NEGLIGIBLE_ERROR:g} pp)"
    )


def _against_modern(ev: _Evidence) -> list[str]:
    """Each pretrained arm against every other random-init arm (does pretraining still help?)."""
    lines = []
    modern = [a for a in _arms(ev.runs) if a != ev.base and a not in ev.pretrained]
    test, mintl = ev.test, ev.mintl
    test_loss = _by_arm_cell(ev.runs, "test_loss")
    for m in modern:
        lines += [
            _untrained_note(ev, m, cell)
            for cell in ev.cells
            if (m, cell) in ev.untrained and any((p, cell) in test for p in ev.pretrained)
        ]
    for p in ev.pretrained:
        for m in modern:
            for cell in ev.cells:
                if (p, cell) not in test or (m, cell) not in test or not ev.trained(m, cell):
                    continue
                d_test = _paired(test, p, m, cell)
                d_loss = _paired(mintl, p, m, cell)
                d_tloss = _paired(test_loss, p, m, cell)
                verdict = _modern_verdict(_sign(d_test, NEGLIGIBLE_ERROR), _sign(d_loss, NEGLIGIBLE_LOSS), m)
                means = {a: t_interval(list(mintl[(a, cell)].values()))["mean"] for a in (p, m)}
                lines.append(
                    f"**{p} vs {m}, {_cell_name(cell)}**: test error {_ci_pp(d_test)}; test loss "
                    f"{_ci_num(d_tloss)}; lowest training loss {_ci_num(d_loss, '{:+.4f}')} "
                    f"({p} {means[p]:.4f}, {m} {means[m]:.4f} nats) -> {verdict} (figure `train_vs_test.png`)."
                )
    return lines


def _gradient_cell(ev: _Evidence, tables: dict[str, dict], arm: str, cell: Cell, dmin: int, dmax: int) -> str:
    """One arm at the largest depth: how the gradient shrinks toward the input at initialisation,
    and what depth did to test error."""
    d_s = t_interval(list(tables["shrink"][(arm, cell)].values()))
    d_w = t_interval(list(tables["wshrink"][(arm, cell)].values()))
    d_r = t_interval(list(tables["ratio"][(arm, cell)].values()))
    d_sat = t_interval(list(tables["sat"][(arm, cell)].values()))
    s = _sign(d_s)
    what = (
        "the back-propagated gradient **shrinks toward the input**"
        if s < 0
        else "the back-propagated gradient **grows toward the input**"
        if s > 0
        else "no consistent shrinkage of the back-propagated gradient (**inconclusive**)"
    )
    shallow = cell[:1] + (dmin,) + cell[2:]
    depth_eff = ""
    if (arm, shallow) in ev.test and dmin != dmax:
        dd = paired_differences(ev.test[(arm, cell)], ev.test[(arm, shallow)])
        sd = _sign(dd)
        eff = (
            "depth **hurt**" if sd > 0 else "depth **helped**" if sd < 0 else "the effect of depth is **inconclusive**"
        )
        depth_eff = (
            f" Test error at depth {dmax} minus depth {dmin}: {_ci_pp(dd)} -> {eff}"
            + (" (consistent with vanishing gradients)" if sd > 0 and s < 0 else "")
            + "."
        )
    return (
        f"**{arm}, {_cell_name(cell)}, at initialisation**: log10(||dL/ds|| bottom / top hidden "
        f"layer) = {_ci_num(d_s, '{:+.2f}')} -> {what}; the same ratio for weight gradients "
        f"{_ci_num(d_w, '{:+.2f}')}; bottom layer vs output layer {_ci_num(d_r, '{:+.2f}')}; "
        f"saturated fraction of the top hidden layer {_ci_num(d_sat, '{:.2f}')}.{depth_eff} "
        "(figure `gradient_norms.png`)"
    )


def _vanishing_gradients(ev: _Evidence) -> list[str]:
    """Gradient shrinkage at initialisation per arm at the largest depth, and whether pretraining
    restores the bottom layer's gradient."""
    depths = sorted({c[1] for c in ev.cells if c[1] is not None})
    deep = [d for d in depths if d >= 2]
    if not deep:
        return [
            "All networks have one hidden layer: the gradient cannot vanish across hidden layers. "
            "Add depths >= 2 to test this hypothesis."
        ]
    lines = []
    dmax, dmin = max(deep), min(depths)
    tables = {
        name: _by_arm_cell(ev.runs, metric)
        for name, metric in (
            ("shrink", "init_grad_shrink"),
            ("wshrink", "init_wgrad_shrink"),
            ("ratio", "init_grad_ratio_bottom"),
            ("sat", "init_saturated_top"),
        )
    }
    top = [c for c in ev.cells if c[1] == dmax]
    for arm in _arms(ev.runs):
        for cell in top:
            if (arm, cell) in tables["shrink"]:
                lines.append(_gradient_cell(ev, tables, arm, cell, dmin, dmax))
    # does pretraining restore the gradient? pretrained vs baseline, bottom-layer ratio at init
    ratio, base = tables["ratio"], ev.base
    for p in ev.pretrained:
        for cell in top:
            if base is None or (p, cell) not in ratio or (base, cell) not in ratio:
                continue
            d = _paired(ratio, p, base, cell)
            s = _sign(d)
            what = (
                "pretraining starts with a **larger** bottom-layer gradient"
                if s > 0
                else "pretraining starts with a **smaller** bottom-layer gradient"
                if s < 0
                else "**inconclusive**"
            )
            lines.append(
                f"**{p} vs {base}, {_cell_name(cell)}**: log10 bottom/output gradient ratio at "
                f"initialisation differs by {_ci_num(d, '{:+.2f}')} -> {what}."
            )
    return lines


def _arm_ranking(ev: _Evidence) -> list[str]:
    """All arms per cell, against the one with the lowest mean test error."""
    lines = []
    for cell in ev.cells:
        arms = [a for a in _arms(ev.runs) if (a, cell) in ev.test]
        if len(arms) < 2:
            continue
        means = {a: t_interval(list(ev.test[(a, cell)].values())) for a in arms}
        best = min(arms, key=lambda a: means[a]["mean"])
        parts = []
        for a in sorted(arms, key=lambda a: means[a]["mean"]):
            if a == best:
                continue
            d = _paired(ev.test, a, best, cell)
            tag = "worse" if _sign(d, NEGLIGIBLE_ERROR) > 0 else "inconclusive"
            tag += ", did not train: at chance" if (a, cell) in ev.untrained else ""
            parts.append(f"{a} {_ci_pp(d)} ({tag})")
        m = means[best]
        lines.append(
            f"**{_cell_name(cell)}**: lowest mean test error {best} ({100 * m['mean']:.2f}%); the others minus "
            f"{best}: " + "; ".join(parts) + "."
        )
    return lines


# ---------------------------------------------------------------------------------------------
# Summary: one verdict per hypothesis
# ---------------------------------------------------------------------------------------------


def _comparisons(ev: _Evidence) -> dict[str, list[tuple[int, int, int]]]:
    """Reference arm -> (sign of test error, of training error, of lowest training loss) for each
    pretrained arm and cell where both ran and the reference trained (pretrained minus reference)."""
    refs = [a for a in _arms(ev.runs) if a not in ev.pretrained]
    out: dict[str, list[tuple[int, int, int]]] = {}
    for ref in refs:
        signs = [
            (
                _sign(_paired(ev.test, p, ref, cell), NEGLIGIBLE_ERROR),
                _sign(_paired(ev.train, p, ref, cell), NEGLIGIBLE_ERROR),
                _sign(_paired(ev.mintl, p, ref, cell), NEGLIGIBLE_LOSS),
            )
            for p in ev.pretrained
            for cell in ev.cells
            if (p, cell) in ev.test and (ref, cell) in ev.test and ev.trained(ref, cell)
        ]
        if signs:
            out[ref] = signs
    return out


def _summary_regulariser(comps: dict[str, list[tuple[int, int, int]]]) -> str:
    parts, signature_refs, any_better = [], [], False
    for ref, signs in comps.items():
        better = [sg for sg in signs if sg[0] < 0]
        # the regulariser's signature: a better test error without a better fit of the training set
        reg = sum(1 for t, tr, loss in better if tr >= 0 or loss >= 0)
        worse = sum(1 for sg in signs if sg[0] > 0)
        any_better |= bool(better)
        if better and 2 * reg >= len(better):
            signature_refs.append(ref)
        parts.append(
            f"against {ref}, better test error in {len(better)} of {len(signs)} comparisons, {reg} of them "
            f"without a better fit of the training set{f', worse in {worse}' if worse else ''}"
        )
    if not comps:
        verdict = "no evidence"
    elif signature_refs and len(signature_refs) == len(comps):
        verdict = "supported"
    elif signature_refs:
        verdict = f"supported against {', '.join(signature_refs)} only"
    else:
        verdict = "not supported" if any_better else "not supported (pretraining never lowered test error)"
    return (
        f"**Overfitting / regulariser: {verdict}.** Pretraining acts as a regulariser where it lowers test "
        f"error without lowering training error or loss: {'; '.join(parts)} (figure `train_vs_test.png`)."
    )


def _summary_optimisation(comps: dict[str, list[tuple[int, int, int]]]) -> str:
    parts, lower_refs = [], []
    for ref, signs in comps.items():
        lower = sum(1 for sg in signs if sg[2] < 0)
        higher = sum(1 for sg in signs if sg[2] > 0)
        if lower > higher and 2 * lower >= len(signs):
            lower_refs.append(ref)
        parts.append(
            f"lower than {ref} in {lower} of {len(signs)} comparisons" + (f" (higher in {higher})" if higher else "")
        )
    if not comps:
        verdict = "no evidence"
    elif len(lower_refs) == len(comps):
        verdict = "supported"
    elif lower_refs:
        verdict = f"supported against {', '.join(lower_refs)} only"
    else:
        verdict = "not supported"
    return (
        f"**Optimisation: {verdict}.** The lowest training loss reached with pretraining was "
        f"{'; '.join(parts) or 'never compared'} (figure `learning_curves.png`)."
    )


def _summary_gradients(ev: _Evidence) -> str:
    deep = [c for c in ev.cells if c[1] is not None and c[1] >= 2]
    if not deep:
        return "**Vanishing gradients: not tested** (every network has one hidden layer)."
    dmax, dmin = max(c[1] for c in deep), min(c[1] for c in ev.cells)
    shrink = _by_arm_cell(ev.runs, "init_grad_shrink")
    shrinking, hurt, parts = [], [], []
    for arm in _arms(ev.runs):
        cells = [c for c in ev.cells if c[1] == dmax and (arm, c) in shrink]
        values = [v for c in cells for v in shrink[(arm, c)].values() if math.isfinite(v)]
        if not values:
            continue
        s = _sign(t_interval(values), NEGLIGIBLE_LOG_SHRINK)
        effects = [
            _sign(paired_differences(ev.test[(arm, c)], ev.test[(arm, c[:1] + (dmin,) + c[2:])]))
            for c in cells
            if (arm, c[:1] + (dmin,) + c[2:]) in ev.test and dmin != dmax
        ]
        n_hurt = sum(1 for e in effects if e > 0)
        if s < 0:
            shrinking.append(arm)
            if 2 * n_hurt > len(effects):
                hurt.append(arm)
        parts.append(
            f"{arm} {float(np.mean(values)):+.2f}" + (f" (depth hurt in {n_hurt} of {len(effects)})" if effects else "")
        )
    verdict = (
        f"supported for {', '.join(hurt)}"
        if hurt
        else "not supported"
        if shrinking
        else "no vanishing gradients measured"
    )
    return (
        f"**Vanishing gradients: {verdict}.** The back-propagated gradient at initialisation "
        f"shrinks toward the input (log10 bottom / top hidden layer at depth {dmax} below -0.3) in "
        f"{', '.join(shrinking) or 'no arm'}: {'; '.join(parts)}; where it shrinks and depth {dmin} -> {dmax} "
        "hurts test error, the gradient is the likely culprit (figure `gradient_norms.png`)."
    )


def summary(runs: Sequence[dict[str, Any]], *, baseline: str | None = "sigmoid-normal") -> list[str]:
    """One verdict per hypothesis (regulariser, optimisation, vanishing gradients), each a sentence
    naming its figure, computed from the same paired differences as :func:`findings`; comparisons
    are made only against random-init arms that trained (arms at chance are named, not compared).

    Examples
    --------
    >>> runs = [{"arm": a, "pretrained": a == "dbn", "dataset": "d", "depth": 1, "width": 8, "size": 100,
    ...          "seed": s, "fold": 0, "test_error": e + 0.01 * s, "train_error": 0.0, "min_train_loss": 0.01,
    ...          "gap": e + 0.01 * s} for a, e in (("sigmoid-normal", 0.3), ("dbn", 0.1)) for s in range(3)]
    >>> print(summary(runs)[0][:41])
    **Overfitting / regulariser: supported.**
    """
    ev = _Evidence.of(runs, baseline)
    comps = _comparisons(ev)
    lines = [_summary_regulariser(comps), _summary_gradients(ev), _summary_optimisation(comps)]
    if ev.untrained:
        lines.append(
            "**Did not train** (at chance; never used as a baseline): "
            + "; ".join(f"{arm} at {_cell_name(cell)}" for arm, cell in ev.untrained)
            + "."
        )
    return lines


def findings(runs: Sequence[dict[str, Any]], *, baseline: str | None = "sigmoid-normal") -> dict[str, list[str]]:
    """Evidence for each hypothesis, computed from per-run summaries.

    Three hypotheses about why greedy pretraining helped (Erhan et al., 2010; Glorot & Bengio,
    2010): *regularisation* (better test error without a better training error),
    *vanishing gradients* (the back-propagated gradient shrinks toward the input, and depth
    hurts the arms where it does) and *optimisation* (a lower training loss). Each pretrained
    arm is compared with ``baseline`` (the same sigmoid network, random init), and then with
    every other random-init arm (does it still help against a modern network?), paired by seed;
    a difference counts only when its 95% t-interval excludes zero, otherwise the sentence says
    "inconclusive".

    Parameters
    ----------
    runs : list of dict
        Per-run summaries (:func:`summarise_runs`), needing ``arm``, ``pretrained``, cell and
        replicate keys and the metrics used.
    baseline : str or None, default="sigmoid-normal"
        Random-init arm to compare with; the first random-init arm when absent.

    Returns
    -------
    dict
        ``"regularisation"``, ``"vanishing_gradients"``, ``"optimisation"``, ``"modern"`` (each
        pretrained arm against every other random-init arm, e.g. ``relu-he``: test error, test
        loss and lowest training loss, with the regulariser reading when the pretrained arm wins
        on test error without reaching a lower training loss) and ``"arms"`` (a ranking of all
        arms per cell) -> list of sentences (markdown).

    Examples
    --------
    >>> runs = [{"arm": a, "pretrained": a == "dbn", "dataset": "d", "depth": 1, "width": 8, "size": 100,
    ...          "seed": s, "fold": 0, "test_error": e + 0.01 * s, "train_error": 0.0, "min_train_loss": 0.01,
    ...          "gap": e + 0.01 * s} for a, e in (("sigmoid-normal", 0.3), ("dbn", 0.1)) for s in range(3)]
    >>> print(findings(runs)["regularisation"][0][:60])
    **dbn vs sigmoid-normal, depth 1, width 8, 100 labels**: tes
    """
    out: dict[str, list[str]] = {
        "regularisation": [],
        "vanishing_gradients": [],
        "optimisation": [],
        "modern": [],
        "arms": [],
    }
    ev = _Evidence.of(runs, baseline)
    _against_baseline(ev, out)
    out["modern"] = _against_modern(ev)
    out["vanishing_gradients"] = _vanishing_gradients(ev)
    out["arms"] = _arm_ranking(ev)
    return out


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def _fmt_ci_pct(ci: dict[str, float], scale: float = 100.0) -> str:
    if not math.isfinite(ci.get("mean", math.nan)):
        return "-"
    if not math.isfinite(ci["low"]):
        return f"{scale * ci['mean']:.2f}"
    return f"{scale * ci['mean']:.2f} [{scale * ci['low']:.2f}, {scale * ci['high']:.2f}]"


def _table(header: Sequence[str], lines: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(map(str, line)) + " |" for line in lines]
    return "\n".join(out)


def _metric_table(runs: Sequence[dict[str, Any]], metric: str, arms: Sequence[str], scale: float = 100.0) -> str:
    stats = cell_statistics(runs, metric)
    by = {(s["arm"], (s["dataset"], s["depth"], s["width"], s["size"])): s for s in stats}
    cells = sorted({c for _, c in by}, key=lambda c: (c[:3], _size_order(c[3])))
    lines = [
        [c[1], c[2], c[3]] + [_fmt_ci_pct(by[(a, c)], scale) if (a, c) in by else "-" for a in arms] for c in cells
    ]
    return _table(["depth", "width", "labels", *arms], lines)


def _diff_table(runs: Sequence[dict[str, Any]], metric: str, arms: Sequence[str], reference: str) -> str:
    stats = cell_statistics(runs, metric, reference=reference)
    by = {(s["arm"], (s["dataset"], s["depth"], s["width"], s["size"])): s for s in stats}
    cells = sorted({c for _, c in by}, key=lambda c: (c[:3], _size_order(c[3])))
    others = [a for a in arms if a != reference]

    def fmt(s: dict[str, Any] | None) -> str:
        if s is None or "diff_mean" not in s:
            return "-"
        d = {k[5:]: v for k, v in s.items() if k.startswith("diff_")}
        mark = " *" if _sign(d) != 0 else ""
        return _fmt_ci_pct(d) + mark

    lines = [[c[1], c[2], c[3]] + [fmt(by.get((a, c))) for a in others] for c in cells]
    return _table(["depth", "width", "labels", *[f"{a} - {reference}" for a in others]], lines)


def _gradient_table(rows: Sequence[dict[str, Any]], arms: Sequence[str]) -> str:
    """Mean back-propagated gradient per layer (init and selected epoch) at the largest depth."""
    if not rows:
        return ""
    dmax = max(int(r["depth"]) for r in rows)
    names = [f"L{i}" for i in range(1, dmax + 1)] + ["out"]
    lines = []
    for arm in arms:
        for label, pick in (("init", lambda r: r["epoch"] == 0), ("trained", lambda r: bool(r.get("selected")))):
            sel = [r for r in rows if r["arm"] == arm and int(r["depth"]) == dmax and pick(r)]
            if not sel:
                continue
            cells = []
            for n in names:
                vals = [_num(r.get(f"grad_s_{n}")) for r in sel if r.get(f"grad_s_{n}") not in (None, "")]
                cells.append(f"{np.exp(np.mean(np.log(np.maximum(vals, 1e-300)))):.2e}" if vals else "-")
            sat = [_num(r.get(f"act_saturated_L{dmax}")) for r in sel if r.get(f"act_saturated_L{dmax}") is not None]
            cells.append(f"{np.mean(sat):.2f}" if sat else "-")
            lines.append([arm, label, *cells])
    return _table(["arm", "when", *[f"dL/ds {n}" for n in names], f"saturated L{dmax}"], lines)


def _write_runs_csv(runs: Sequence[dict[str, Any]], path: Path) -> None:
    import csv

    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(RUN_COLUMNS), extrasaction="ignore", restval="")
        w.writeheader()
        for r in runs:
            w.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in r.items()})
    os.replace(tmp, path)


_PROTOCOL_SHOWN = (
    "solver",
    "learning_rate",
    "momentum",
    "batch_size",
    "epochs",
    "min_updates",
    "patience",
    "pretrain_epochs",
    "pretrain_learning_rate",
    "probe_size",
    "monitor_size",
)


def _selection_text(cfg: dict[str, Any]) -> str:
    if cfg.get("monitor", "valid_loss") == "valid_score":
        return "lowest validation error (ties: lower validation loss)"
    return "lowest validation loss"


def _protocol_line(cfg: dict[str, Any]) -> str:
    budget = {k: cfg[k] for k in _PROTOCOL_SHOWN if k in cfg and k not in ("solver", "learning_rate", "momentum")}
    if cfg.get("protocol", "shared") == "tuned":
        grid = cfg.get("grid") or []
        labels = []
        for g in grid:
            full = {
                "solver": cfg.get("solver"),
                "learning_rate_init": cfg.get("learning_rate"),
                "momentum": cfg.get("momentum"),
                **g,
            }
            labels.append(setting_label(full))
        return (
            f"- protocol: tuned per arm on validation data, settings {labels}; budget shared by all arms: "
            f"{json.dumps(budget)}."
        )
    shared = {k: cfg[k] for k in ("solver", "learning_rate", "momentum") if k in cfg}
    return f"- protocol (shared by all arms): {json.dumps({**shared, **budget})}."


def _setup_section(runs: Sequence[dict[str, Any]], arms: Sequence[str], cfg: dict[str, Any]) -> list[str]:
    """The report's "Setup" lines: data, pretraining data, protocol, selection rule and time."""
    datasets = sorted({str(r["dataset"]) for r in runs})
    seeds = sorted({r["seed"] for r in runs})
    folds = sorted({r["fold"] for r in runs})
    pre = [r for r in runs if r.get("pretrained")]
    if pre:
        semi = sorted({bool(r.get("unlabelled")) for r in pre})
        n_pre = sorted({int(r["n_pretrain"]) for r in pre})
        pre_text = (
            "the whole training set (semi-supervised: more unlabelled than labelled data), "
            if semi == [True]
            else "the labelled subset only, "
            if semi == [False]
            else "a mix of labelled-only and whole-training-set runs, "
        ) + f"{n_pre} samples"
    else:
        pre_text = "no pretrained arm"
    computed = [r for r in runs if not r.get("pretrain_cached")]  # a shared stack counts once
    total_pre = sum(_num(r.get("pretrain_time")) for r in computed)
    n_stacks = sum(1 for r in computed if r.get("pretrained"))
    n_shared = len(runs) - len(computed)
    shared_text = (
        f", reused by {n_shared} further run{'s' * (n_shared != 1)}: other labelled sizes, tuning settings "
        "or arms that pretrain alike"
        if n_shared
        else ""
    )
    total_ft = sum(_num(r.get("finetune_time")) for r in runs)
    return [
        "## Setup",
        "",
        f"- data: {', '.join(datasets)}; {len(runs)} runs; arms {', '.join(arms)}; seeds {seeds}; "
        f"{'folds ' + str(folds) if len(folds) > 1 else 'fixed train/validation/test split'}.",
        f"- pretraining data: {pre_text}.",
        _protocol_line(cfg),
        f"- the selected epoch of a run is the one with the {_selection_text(cfg)} (early stopping); "
        "errors below are at that epoch. Intervals: 95% Student-t over seeds; paired differences "
        "pair runs of the same seed (same labelled subset, same mini-batch order).",
        f"- time: pretraining {total_pre:.1f} s ({n_stacks} stack{'s' * (n_stacks != 1)}{shared_text}), "
        f"fine-tuning {total_ft:.1f} s in total (per-epoch measurements excluded).",
        "",
    ]


def _training_sections(
    rows: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]], arms: Sequence[str]
) -> list[str]:
    """Epoch of the lowest training loss, gradient norms per layer, wall times, diverged runs."""
    lines: list[str] = []
    epochs = defaultdict(list)
    for r in runs:
        if r.get("min_train_loss_epoch") is not None:
            epochs[r["arm"]].append(r["min_train_loss_epoch"])
    lines += [
        "Mean epoch of the lowest training loss: "
        + ", ".join(f"{a} {np.mean(v):.1f}" for a, v in epochs.items())
        + ".",
        "",
    ]
    lines += [
        "## Back-propagated gradient norm per layer (geometric mean over runs, deepest networks)",
        "",
        _gradient_table(rows, arms),
        "",
    ]
    times: defaultdict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for r in runs:
        if not r.get("pretrain_cached"):
            times[r["arm"]][0].append(_num(r.get("pretrain_time")))
        times[r["arm"]][1].append(_num(r.get("finetune_time")))
    lines += [
        "## Wall time per run (s, mean; pretraining per stack computed, not per run that reused it)",
        "",
        _table(
            ["arm", "pretraining", "fine-tuning"],
            [[a, f"{np.mean(p):.2f}" if p else "reused", f"{np.mean(f):.2f}"] for a, (p, f) in times.items()],
        ),
        "",
    ]
    diverged = [r["run_key"] for r in runs if r.get("diverged")]
    if diverged:
        lines += [f"Diverged runs (stopped at a NaN loss, their best epoch kept): {', '.join(diverged)}.", ""]
    return lines


def _findings_section(runs: Sequence[dict[str, Any]], baseline: str | None) -> list[str]:
    """The findings (:func:`findings`) under one heading per hypothesis."""
    lines: list[str] = []
    found = findings(runs, baseline=baseline)
    lines += ["## Findings (computed from the numbers above)", ""]
    titles = {
        "regularisation": "Overfitting / regularisation (Erhan et al. 2010)",
        "vanishing_gradients": "Vanishing gradients (Glorot & Bengio 2010)",
        "optimisation": "Optimisation / local minima",
        "modern": "Against modern random initialisation: does pretraining still help?",
        "arms": "All arms",
    }
    for key, title in titles.items():
        lines += [f"### {title}", ""]
        lines += [f"- {s}" for s in found[key]] or ["- no evidence in these runs."]
        lines += [""]
    return lines


def _figures_section(
    rows: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]], out: Path, figures: bool
) -> list[str]:
    """Draw the figures (when asked and matplotlib is there) and return the lines that show them."""
    from . import figures as figs

    lines: list[str] = []
    lines += ["## Figures", ""]
    if not figures:
        lines += ["Figures not requested.", ""]
    elif not figs.matplotlib_available():
        lines += ["matplotlib is not installed (`pip install torch-dbn[plot]`): no figures were drawn.", ""]
    else:
        for name, caption in figs.make_figures(rows, runs, out).items():
            lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return lines


def _is_final(r: dict[str, Any]) -> bool:
    """Rows and runs the report analyses: final runs (rows written before tuning existed count)."""
    return r.get("stage", "final") in ("final", None, "")


def tuning_table(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, Cell], dict[str, Any]]:
    """(arm, cell) -> the tuning of that arm in that cell: ``results`` (setting label ->
    :class:`dbn.harness.tuning.TuningResult`, in grid order), ``choice``
    (:class:`dbn.harness.tuning.Choice`) and ``time`` (fine-tuning seconds of the tuning runs).

    Examples
    --------
    >>> rows = [{"run_key": f"k{i}", "stage": "tune", "setting": f"lr{i}", "arm": "a", "dataset": "d", "depth": 1,
    ...          "width": 8, "size": 100, "epoch": e, "selected": e == 1, "valid_error": 0.9 - 0.1 * i * e,
    ...          "valid_loss": 1.0, "diverged": False, "finetune_time": 0.5} for i in (1, 2) for e in (0, 1)]
    >>> t = tuning_table(rows)[("a", ("d", 1, 8, 100))]
    >>> t["choice"].setting, list(t["results"]), t["time"]
    ('lr2', ['lr1', 'lr2'], 1.0)
    """
    results = tuning_results(rows)
    groups: dict[tuple[str, Cell], dict[str, Any]] = {}
    for r in rows:
        if r.get("stage") == "tune" and r.get("epoch") == 0 and r["run_key"] in results:
            g = groups.setdefault((r["arm"], _cell(r)), {"results": {}, "time": 0.0})
            g["results"][r["setting"]] = results[r["run_key"]]
            g["time"] += _num(r.get("finetune_time")) if r.get("finetune_time") is not None else 0.0
    for g in groups.values():
        g["choice"] = choose_setting(list(g["results"].values()))
    return groups


def _split_in_progress(
    table: dict[tuple[str, Cell], dict[str, Any]],
) -> tuple[dict[tuple[str, Cell], dict[str, Any]], list[str]]:
    """Separate the tunings that tried every setting of the grid from those still running.

    Every arm gets the same grid, so an (arm, cell) with fewer settings than the largest group is
    an interrupted study's tuning in progress: it has no choice yet, and "failed under every
    setting" would be premature.
    """
    n = max((len(g["results"]) for g in table.values()), default=0)
    done = {k: g for k, g in table.items() if len(g["results"]) == n}
    running = [
        f"{arm} at {_cell_name(cell)} ({len(g['results'])} of {n} settings)"
        for (arm, cell), g in table.items()
        if len(g["results"]) < n
    ]
    return done, running


def _fmt_valid(result: Any, chosen: bool) -> str:
    if not math.isfinite(result.valid_error):
        return "-"
    text = f"{100 * result.valid_error:.2f}" + (" (NaN)" if result.diverged else "")
    return f"**{text}**" if chosen else text


def _tuning_summary(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The summary's line on the tuning: how settings were chosen and which arms failed under all."""
    table, running = _split_in_progress(tuning_table(rows))
    if not table:
        return []
    n = max(len(g["results"]) for g in table.values())
    failed = [f"{arm} at {_cell_name(cell)}" for (arm, cell), g in table.items() if g["choice"].status != "ok"]
    text = (
        f"- **Tuned comparison**: every arm's fine-tuning setting was chosen per cell on validation data among "
        f"{n} settings (section *Tuning*)."
    )
    if failed:
        text += " Failed under every setting (at chance or diverged): " + "; ".join(failed) + "."
    if running:
        text += " Tuning still in progress (not analysed): " + "; ".join(running) + "."
    return [text]


def _tuning_section(rows: Sequence[dict[str, Any]], final_runs: Sequence[dict[str, Any]]) -> list[str]:
    """Per cell and arm: the chosen setting, every setting's validation error, the tuning time."""
    table, running = _split_in_progress(tuning_table(rows))
    if not table:
        return []
    settings: list[str] = []
    for tuned in table.values():
        settings += [label for label in tuned["results"] if label not in settings]
    cells = sorted({c for _, c in table}, key=lambda c: (c[:3], _size_order(c[3])))
    arms = _arms([{"arm": a} for a, _ in table])
    lines = []
    for cell in cells:
        for arm in arms:
            g = table.get((arm, cell))
            if g is None:
                continue
            valid = [r.valid_error for r in g["results"].values() if not r.diverged and math.isfinite(r.valid_error)]
            spread = f"{100 * (max(valid) - min(valid)):.2f}" if len(valid) > 1 else "-"
            lines.append(
                [cell[1], cell[2], cell[3], arm, g["choice"].setting]
                + [
                    _fmt_valid(g["results"][s], s == g["choice"].setting) if s in g["results"] else "-"
                    for s in settings
                ]
                + [spread, f"{g['time']:.1f}"]
            )
    tune_time = sum(g["time"] for g in table.values())
    final_time = sum(_num(r.get("finetune_time")) for r in final_runs)
    failed = [(arm, cell, g["choice"]) for (arm, cell), g in table.items() if g["choice"].status != "ok"]
    out = [
        "## Tuning: each arm's setting, chosen on validation data",
        "",
        f"Every arm fine-tuned the first seed of each cell with each of the {len(settings)} settings below (same "
        "epochs, same early stopping, same validation split), kept the one of lowest validation error at its "
        "selected epoch (ties: lower validation loss), and ran every seed with it. Validation error (%) of each "
        "setting, the chosen one in bold; *spread*: worst minus best setting (pp), how sensitive the arm is "
        "to its setting. Tuning took "
        f"{tune_time:.1f} s of fine-tuning ({100 * tune_time / max(tune_time + final_time, 1e-9):.0f}% of the "
        "study's fine-tuning time); the pretrained stacks are shared by the settings.",
        "",
        _table(["depth", "width", "labels", "arm", "chosen", *settings, "spread (pp)", "tuning (s)"], lines),
        "",
    ]
    if running:
        out += ["Tuning still in progress (an interrupted study; not analysed): " + "; ".join(running) + ".", ""]
    if failed:
        out += [
            "**Failed under every setting of the grid** (reported, not tuned away): "
            + "; ".join(f"{arm} at {_cell_name(cell)}: {choice.reason}" for arm, cell, choice in failed)
            + ".",
            "",
        ]
    chosen: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (arm, _), g in table.items():
        chosen[arm][g["choice"].setting] += 1
    out += [
        "Settings chosen per arm (cells): "
        + "; ".join(
            f"{arm}: " + ", ".join(f"{s} x{n}" for s, n in sorted(c.items(), key=lambda kv: -kv[1]))
            for arm, c in chosen.items()
        )
        + ".",
        "",
    ]
    return out


#: Published effects of pretraining on MNIST test error by labelled-set size: the yell/boltzmann-machines
#: README (RBM 1024 hidden, fine-tuned vs the same net randomly initialised), percentage points.
PUBLISHED_LABEL_EFFECT = {100: 5.68, 1000: 4.94, 10000: 2.54, 60000: 0.53}


def _best_random(ev: _Evidence, valid: dict, cell: Cell) -> str | None:
    """The random-init arm of lowest mean validation error in ``cell`` (chosen without the test set)."""
    plain = [a for a in _arms(ev.runs) if a not in ev.pretrained and (a, cell) in valid and ev.trained(a, cell)]
    if not plain:
        return None
    return min(plain, key=lambda a: float(np.nanmean(list(valid[(a, cell)].values()))))


def _trend(seq: Sequence[dict[str, float]], expected: str) -> str:
    """How an effect moves along ``seq`` (paired intervals) and whether that agrees with the
    literature's ``expected`` direction (``"grows"`` or ``"shrinks"``).

    The direction is read from the first to the last value; a sequence that turns on the way is
    called "not monotone", and a move whose end points' intervals overlap is called
    "within the intervals" (no verdict either way).
    """
    first, last = seq[0], seq[-1]
    word = "grows" if last["mean"] > first["mean"] else "shrinks" if last["mean"] < first["mean"] else "unchanged"
    steps = [b["mean"] - a["mean"] for a, b in zip(seq[:-1], seq[1:], strict=True)]
    monotone = all(x >= 0 for x in steps) or all(x <= 0 for x in steps)
    apart = (
        math.isfinite(first.get("low", math.nan))
        and math.isfinite(last.get("low", math.nan))
        and (last["low"] > first["high"] or last["high"] < first["low"])
    )
    out = word + ("" if monotone else ", not monotone")
    if not apart:
        return out + ", within the intervals: inconclusive"
    return out + (": **agrees** with it" if word == expected else ": **disagrees** with it")


def _literature_section(runs: Sequence[dict[str, Any]], baseline: str | None) -> list[str]:
    """Pretraining's effect by depth and labelled size beside the published ones."""
    ev = _Evidence.of(runs, baseline)
    valid = _by_arm_cell(runs, "valid_error")
    if not ev.pretrained or not ev.cells:
        return []
    head = "dbn" if "dbn" in ev.pretrained else ev.pretrained[0]
    lines = [
        "## Against the literature",
        "",
        f"Effect of pretraining = test error of a random-init arm minus `{head}`'s (percentage points, paired "
        "95% CI; positive: pretraining helps). *Best random-init*: the random-init arm of lowest validation "
        f"error in the cell (chosen without the test set); *baseline*: `{ev.base}`, the same sigmoid network "
        "without pretraining.",
        "",
    ]
    table = []
    mnist = all(str(c[0]) == "mnist" or str(c[0]).endswith("mnist.pkl.gz") for c in ev.cells)
    effects: dict[tuple[int, Any], dict[str, float]] = {}
    for cell in ev.cells:
        best = _best_random(ev, valid, cell)
        row = [cell[1], cell[2], cell[3]]
        for other in (best, ev.base):
            if other is None or (other, cell) not in ev.test or (head, cell) not in ev.test:
                row.append("-")
                continue
            diff = _paired(ev.test, other, head, cell)
            note = "" if ev.trained(other, cell) else " (at chance)"
            row.append(f"{_fmt_ci_pct(diff)} vs {other}{note}")
            if other == best:
                effects[(cell[1], cell[3])] = diff
        if mnist:
            n = 60000 if cell[3] == "all" or int(cell[3]) >= 50000 else int(cell[3])
            published = PUBLISHED_LABEL_EFFECT.get(n)
            row.append(f"+{published:.2f}" if published is not None else "-")
        table.append(row)
    header = ["depth", "width", "labels", "best random-init - " + head, f"{ev.base} - {head}"]
    lines += [_table(header + (["published (yell, MNIST)"] if mnist else []), table), ""]
    depths = sorted({d for d, _ in effects})
    sizes = sorted({n for _, n in effects}, key=_size_order)
    if len(depths) > 1:
        parts = []
        for n in sizes:
            seq = [effects[(d, n)] for d in depths if (d, n) in effects]
            if len(seq) > 1:
                parts.append(
                    f"{n} labels: {', '.join(_pp(v['mean']) for v in seq)} pp at depths "
                    f"{[d for d in depths if (d, n) in effects]} "
                    f"(the advantage {_trend(seq, 'grows')})"
                )
        lines += [
            "- Erhan et al. (2010): pretraining's advantage grows with depth. Here, against the best random-init "
            "arm: " + "; ".join(parts) + ".",
            "",
        ]
    if len(sizes) > 1:
        parts = []
        for d in depths:
            seq = [effects[(d, n)] for n in sizes if (d, n) in effects]
            if len(seq) > 1:
                parts.append(
                    f"depth {d}: {', '.join(_pp(v['mean']) for v in seq)} pp at "
                    f"{[n for n in sizes if (d, n) in effects]} labels "
                    f"(the advantage {_trend(seq, 'shrinks')})"
                )
        lines += [
            "- Erhan et al. (2010) and the yell/boltzmann-machines table (+5.68 pp at 100 labels, "
            "+4.94 at 1,000, +2.54 at 10,000, +0.53 at 60,000, against the same net randomly "
            "initialised): the advantage shrinks as labels grow. Here: " + "; ".join(parts) + ".",
            "",
        ]
    dmax = max(c[1] for c in ev.cells)
    deep = [c for c in ev.cells if c[1] == dmax]
    parts = []
    for cell in deep:
        errs = []
        for arm in ("sigmoid-normal", "sigmoid-xavier"):
            if (arm, cell) in ev.test:
                err = float(np.nanmean(list(ev.test[(arm, cell)].values())))
                raw = [r.get("init_grad_shrink") for r in runs if r["arm"] == arm and _cell(r) == cell]
                shrink = [float(v) for v in raw if v is not None and math.isfinite(float(v))]
                grad = f", bottom/top gradient at init 10^{np.mean(shrink):+.2f}" if shrink else ""
                errs.append(f"{arm} {100 * err:.2f}%{grad}")
        if errs:
            parts.append(f"{cell[3]} labels: " + "; ".join(errs))
    lines += [
        "- Glorot & Bengio (2010), 5 sigmoid layers on MNIST: standard init 2.21% against 1.64% with the "
        "normalised init (tanh), the back-propagated gradient shrinking toward the input with the standard "
        f"init. Here at depth {dmax}: " + (" | ".join(parts) or "no sigmoid random-init arm") + ".",
        "",
    ]
    return lines


#: A parenthesised reference to figure files in a sentence, e.g. `` (figures `a.png`, `b.png`)``.
_FIGURE_REFERENCE = re.compile(r" ?\(figures? `[^`]+\.png`(?:, `[^`]+\.png`)*\)")


def write_report(
    out_dir: str | os.PathLike, *, figures: bool = True, baseline: str | None = None, reference: str | None = None
) -> Path:
    """Write ``report.md``, ``runs.csv`` and the PNG figures for the rows stored in ``out_dir``.

    Parameters
    ----------
    out_dir : path
        A directory filled by :func:`dbn.harness.run_study`.
    figures : bool, default=True
        Draw the figures (needs matplotlib, the ``plot`` extra; without it the report says so).
    baseline, reference : str, optional
        Random-init arm for the findings and arm for the paired-difference table; default to
        the study's ``config.json`` (``sigmoid-normal`` and ``dbn``).

    Returns
    -------
    Path
        The report's path.

    Examples
    --------
    >>> import tempfile
    >>> path = write_report(tempfile.mkdtemp())
    >>> path.name
    'report.md'
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {}
    if (out / CONFIG_JSON).exists():
        with open(out / CONFIG_JSON, encoding="utf-8") as f:
            cfg = json.load(f)
    baseline = baseline or cfg.get("baseline", "sigmoid-normal")
    reference = reference or cfg.get("reference", "dbn")
    all_rows = load_rows(out)
    all_runs = summarise_runs(all_rows)
    _write_runs_csv(all_runs, out / "runs.csv")
    rows = [r for r in all_rows if _is_final(r)]
    runs = [r for r in all_runs if _is_final(r)]
    lines = ["# Comparison study: pretraining vs random initialisation", ""]
    if not runs:
        lines += ["No finished runs in this directory yet: run `dbn compare` (or `dbn.harness.run_study`)."]
        path = out / "report.md"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
    arms = _arms(runs)
    if reference not in arms:
        reference = arms[0]
    figure_lines = _figures_section(rows, runs, out, figures)
    lines += [
        "## Summary",
        "",
        *[f"- {s}" for s in summary(runs, baseline=baseline)],
        *_tuning_summary(all_rows),
        "",
        "The sections below give the numbers behind each verdict; the findings quote them cell by cell.",
        "",
    ]
    lines += _setup_section(runs, arms, cfg)
    lines += _tuning_section(all_rows, runs)
    lines += [
        "## Test error (%), mean [95% CI]",
        "",
        _metric_table(runs, "test_error", arms),
        "",
        f"## Paired differences in test error against `{reference}` (percentage points; * = interval excludes 0)",
        "",
        _diff_table(runs, "test_error", arms, reference),
        "",
        "## Training error at the selected epoch (%)",
        "",
        _metric_table(runs, "train_error", arms),
        "",
        "## Generalisation gap: test minus training error (percentage points)",
        "",
        _metric_table(runs, "gap", arms),
        "",
        "## Lowest training loss reached (nats, eval mode on the training set)",
        "",
        _metric_table(runs, "min_train_loss", arms, scale=1.0),
        "",
    ]
    lines += _training_sections(rows, runs, arms)
    lines += _findings_section(runs, baseline)
    lines += _literature_section(runs, baseline)
    lines += figure_lines
    if not any("](" in line for line in figure_lines):  # no figure drawn: no sentence points to one
        lines = [_FIGURE_REFERENCE.sub("", line) for line in lines]
    lines += [
        "## Files",
        "",
        f"`{ROWS_JSON}` and `{ROWS_CSV}`: one row per run and epoch (epoch 0 = at initialisation); "
        "`runs.csv`: one row per run (tuning runs: `stage` = tune; they hold validation numbers only).",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
