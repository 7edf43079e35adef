"""The package's import structure: no circles among the dbn modules, and scikit-learn only
behind the estimators."""

import ast
import subprocess
import sys
from pathlib import Path

import dbn

PACKAGE = Path(dbn.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imported(module: str, node: ast.AST, is_package: bool, known) -> set[str]:
    """The dbn modules an import statement loads (a name imported from a package may be a module)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
    return {n for n in names if n in known}


def import_graph() -> dict[str, set[str]]:
    """Module -> the dbn modules it imports anywhere (functions included), parent packages left
    out (a submodule always runs its package's ``__init__`` first; that is not a circle)."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps |= _imported(name, node, path.name == "__init__.py", mods)
        graph[name] = {d for d in deps if d != name and not name.startswith(d + ".")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w) :] + [w]
            if w not in state and (found := visit(w)):
                return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_import_graph_is_found():
    graph = import_graph()
    assert "dbn.estimators._deep" in graph["dbn.estimators"]
    assert "dbn.recipe" in graph["dbn.estimators._deep"]
    assert "dbn.recipe" in graph["dbn.harness.runner"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    cycle = _cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_lower_layers_do_not_import_upper_ones():
    graph = import_graph()
    assert not any(d.startswith("dbn.estimators") for d in graph["dbn.io"])
    for low in ("dbn.recipe", "dbn.training", "dbn.stack", "dbn.export", "dbn.io", "dbn._checkpoint"):
        assert not any(d.startswith(("dbn.harness", "dbn.cli", "dbn.estimators")) for d in graph[low]), low
    assert "dbn.harness.runner" not in graph["dbn.harness.report"]


def _run(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent, timeout=120)


def test_core_imports_without_sklearn():
    _run(
        "import sys, dbn.functional, dbn.rbm, dbn.recipe, dbn.datasets, dbn.io, dbn.export\n"
        "assert 'sklearn' not in sys.modules, 'scikit-learn was imported'"
    )


def test_estimators_load_lazily():
    _run(
        "import sys, dbn\n"
        "assert 'sklearn' not in sys.modules\n"
        "assert {'DBNClassifier', 'RBMTransformer'} <= set(dir(dbn))\n"
        "from dbn import DBNClassifier\n"
        "from dbn.estimators import DBNClassifier as C\n"
        "assert DBNClassifier is C is dbn.DBNClassifier and 'sklearn' in sys.modules\n"
        "assert all(hasattr(dbn, name) for name in dbn.__all__)\n"
        "try:\n    dbn.nope\nexcept AttributeError as e:\n    assert 'nope' in str(e)\n"
        "else:\n    raise AssertionError\n"
    )


def test_import_and_help_skip_heavy_dependencies():
    # `import dbn` and `dbn --help` load torch and numpy only: scikit-learn, SciPy, matplotlib and
    # pandas are imported when a command or an estimator needs them (a check of modules, not of time)
    _run(
        "import sys, dbn\n"
        "from dbn import cli\n"
        "for argv in ([], ['compare'], ['pretrain'], ['plot'], ['report']):\n"
        "    try:\n        cli.main([*argv, '--help'])\n    except SystemExit:\n        pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'matplotlib', 'pandas'})\n"
        "assert not heavy, heavy\n"
    )


def test_every_subpackage_is_shipped_in_the_wheel():
    """pyproject's explicit package list names every package under dbn/ (a missing one builds a
    wheel that fails to import it)."""
    import re

    root = Path(__file__).resolve().parents[1]
    text = (root / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(dbn(?:\.[\w.]+)?)"', re.search(r"^packages = \[(.*)\]$", text, re.M).group(1)))
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "dbn").rglob("__init__.py")}
    assert found == listed, f"pyproject packages {sorted(listed)} but the tree has {sorted(found)}"
