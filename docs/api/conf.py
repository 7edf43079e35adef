"""Sphinx configuration of the torch-dbn API reference.

Build locally from the repository root (``pip install -e ".[docs]"`` first)::

    python -m sphinx -W --keep-going -b html docs/api build/docs-html

``-W`` turns warnings into errors, as CI (``.ci/run``) builds it.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

dbn = importlib.import_module("dbn")  # the checkout's dbn, imported after the path is set

project = "torch-dbn"
author = "torch-dbn developers"
copyright = "torch-dbn developers"
release = version = dbn.__version__

extensions = ["sphinx.ext.autodoc", "numpydoc"]

html_theme = "alabaster"
html_static_path: list[str] = []

# autodoc: members in source order, type hints left to the numpydoc "Parameters" sections. Members
# are found by definition (``ignore-module-all``), not through ``__all__``, so that a name a module
# re-exports is documented once, where it is defined; ``_skip_member`` below applies ``__all__``.
autodoc_default_options = {"members": True, "member-order": "bysource", "ignore-module-all": True}
autodoc_typehints = "none"
autodoc_class_signature = "mixed"

# numpydoc: the class pages list their methods through autodoc, not numpydoc's autosummary tables.
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


class CommandHelp(SphinxDirective):
    """``.. dbn-help:: [SUBCOMMAND]``: the ``--help`` text of ``dbn`` (or of one subcommand), as
    argparse prints it, generated at build time from :func:`dbn.cli.build_parser`."""

    optional_arguments = 1
    option_spec: ClassVar[dict] = {"width": directives.positive_int}

    def run(self) -> list[nodes.Node]:
        from dbn.cli import build_parser

        old = {k: os.environ.get(k) for k in ("COLUMNS", "NO_COLOR", "PYTHON_COLORS")}
        os.environ.update(COLUMNS=str(self.options.get("width", 100)), NO_COLOR="1", PYTHON_COLORS="0")
        try:
            parser = build_parser()
            if self.arguments:
                parser = _subcommands(parser)[self.arguments[0]]
            text = parser.format_help()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return [nodes.literal_block(text, text, language="text")]


def _skip_member(app, what, name, obj, skip, options):
    """Document a module's own public API: a function or class only where its defining module
    lists it in ``__all__`` (``ignore-module-all`` above keeps re-exports, which ``__all__`` would
    pull in, from being documented twice); and none of the ``set_*_request`` methods that
    scikit-learn's metadata routing generates on the estimators (documented by scikit-learn)."""
    if what == "module" and (inspect.isclass(obj) or inspect.isfunction(obj)):
        public = getattr(sys.modules.get(getattr(obj, "__module__", ""), None), "__all__", None)
        if public is not None and name not in public:
            return True
    if what == "class" and name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.add_directive("dbn-help", CommandHelp)
    app.connect("autodoc-skip-member", _skip_member)
    return {"parallel_read_safe": True}
