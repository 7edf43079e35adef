"""The comparison study: pretraining (DBN, SdA) against modern random initialisations.

Usable from a notebook::

    from dbn.harness import StudyConfig, run_study, write_report
    cfg = StudyConfig(arms=("relu-he", "dbn"), depths=(1, 3), seeds=(0, 1, 2))
    results = run_study(cfg, "study-out")
    write_report("study-out")

or from the shell: ``dbn compare --arms relu-he dbn --depths 1 3 --out study-out``.

Examples
--------
>>> from dbn.harness import ARMS
>>> sorted(ARMS)[:3]
['dbn', 'maxout-dropout', 'relu-he']
"""

from .config import ARMS, DIGITS_DEFAULTS, RunSpec, StudyConfig, arm_params
from .metrics import layer_statistics, paired_differences, t_interval
from .report import findings, summarise_runs, write_report
from .runner import StudyResults, fit_arm, run_study
from .store import load_rows

__all__ = [
    "ARMS",
    "DIGITS_DEFAULTS",
    "StudyConfig",
    "RunSpec",
    "arm_params",
    "run_study",
    "StudyResults",
    "fit_arm",
    "load_rows",
    "write_report",
    "summarise_runs",
    "findings",
    "layer_statistics",
    "t_interval",
    "paired_differences",
]
