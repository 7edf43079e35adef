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
['dbn', 'dbn-dropout', 'maxout-dropout']
"""

import importlib as _importlib

#: Public names and the submodule that defines them. They load on first access (PEP 562), so
#: ``import dbn.harness.config`` (which ``dbn --help`` needs) does not import the runner and with it
#: scikit-learn.
_LAZY = {
    "ARMS": "config",
    "DIGITS_DEFAULTS": "config",
    "RunSpec": "config",
    "StudyConfig": "config",
    "arm_params": "config",
    "layer_statistics": "metrics",
    "paired_differences": "metrics",
    "t_interval": "metrics",
    "findings": "report",
    "summarise_runs": "report",
    "write_report": "report",
    "StudyResults": "runner",
    "fit_arm": "runner",
    "run_study": "runner",
    "load_rows": "store",
}

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


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(_importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
