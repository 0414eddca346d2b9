"""The library's shape: imports between freqlab's modules point one way (no cycle, counting imports inside
functions too), no module grows past ~500 lines and no function past 60."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "freqlab"
MAX_LINES = 500  # "about 500": split a module by concept before it grows past this


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """freqlab modules imported anywhere in ``path`` (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_imports_between_modules_point_one_way():
    modules = _modules()
    known = set(modules)
    # the package's __init__ and __main__ sit above everything; modules may read freqlab.__version__
    graph = {n: _imports(n, p, known) - {"freqlab"} for n, p in modules.items() if n != "freqlab"}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_cycle_finder_finds_a_cycle():  # the check above can fail
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_size(name):
    lines = len(_modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by concept"


MAX_FUNCTION_LINES = 60  # the body, docstring excluded: a function you can read at once


def _long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                body = body[1:]
            lines = body[-1].end_lineno - body[0].lineno + 1 if body else 0
            if lines > limit:
                found.append((node.name, lines))
    return found


@pytest.mark.parametrize("name", sorted(_modules()))
def test_function_size(name):
    long = _long_functions(_modules()[name].read_text())
    assert not long, f"{name}: {', '.join(f'{f} ({n} lines)' for f, n in long)}; split into steps"


def test_function_size_check_can_fail():
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    assert _long_functions(f'def f():\n    """Doc."""\n{body}\n') == [("f", 61)]
    assert _long_functions(f'def f():\n    """Doc."""\n{body}\n', limit=61) == []


ENTRY_POINTS = {"freqlab", "freqlab.__main__", "freqlab.cli", "freqlab.demo", "freqlab.report"}


def test_the_top_of_the_package_holds_only_the_entry_points():
    top = {n for n in _modules() if n.count(".") == 1 or n == "freqlab"} - {
        n for n in _modules() if (PACKAGE / n.split(".", 1)[-1]).is_dir()}
    assert top == ENTRY_POINTS, f"modules at the top of freqlab/ besides the entry points: {sorted(top - ENTRY_POINTS)}"


def test_the_command_line_builds_its_parser_without_torch():
    """Package __init__ files and the settings the parser is built from import no torch: `--help` is fast."""
    import subprocess
    import sys

    code = ("import sys; from freqlab.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'matplotlib', 'xarray')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"building the parser imported {out}"


REFERENCE = re.compile(r"\bfreqlab(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
FROM_IMPORT = re.compile(r"from (freqlab(?:\.[A-Za-z_][A-Za-z0-9_]*)*) import ([A-Za-z_][A-Za-z0-9_, ]*)")


def _quoted_paths() -> dict[str, set[str]]:
    """``freqlab.x.y`` names quoted in the docs, the README, the notebooks, the analyses and benchmarks."""
    root = PACKAGE.parent
    files = [root / "README.md", *sorted((root / "docs").glob("*.md")), *sorted((root / "notebooks").glob("*")),
             *sorted((root / "analyses").glob("*")), *sorted((root / "benchmarks").glob("*.md")),
             *sorted((root / "figures").rglob("README.md"))]
    found: dict[str, set[str]] = {}
    for path in files:
        if path.is_file():
            text = path.read_text(errors="replace")
            names = REFERENCE.findall(text) + [f"{module}.{n.split(' as ')[0].strip()}"
                                               for module, names in FROM_IMPORT.findall(text)
                                               for n in names.split(",") if n.strip()]
            for name in names:
                found.setdefault(name.rstrip("."), set()).add(path.name)
    return found


def _resolves(name: str) -> bool:
    import importlib

    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_module_path_quoted_in_the_docs_imports():
    quoted = _quoted_paths()
    assert len(quoted) > 20  # the check reads the docs at all
    missing = {name: sorted(where) for name, where in quoted.items() if not _resolves(name)}
    assert not missing, f"quoted but not importable: {missing}"


def test_the_quoted_path_check_can_fail():
    assert _resolves("freqlab.sweep.study.sweep") and not _resolves("freqlab.sweep_pass")
    assert not _resolves("freqlab.plots.sweep.save_figure")
