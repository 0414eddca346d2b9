"""The library's shape: imports between freqlab's modules point one way (no cycle, counting imports inside
functions too), no module grows past ~500 lines and no function past 60."""

import ast
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
