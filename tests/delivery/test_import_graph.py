"""The package structure: no import cycles in ``app`` or ``training``, and the layers
below the web layer import nothing of it (issue 22).

Every ``import`` statement counts, also those inside functions (a function-level import
is how a cycle hides).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "training", "faces")
WEB = ("fastapi", "starlette", "uvicorn", "python_multipart", "multipart")
# The layers that must not know HTTP: the domain's errors, the gallery (storage, search,
# the service keeping them consistent) and the face pipeline.
BELOW_THE_WEB = ("app.domain_errors", "app.error_codes", "app.gallery", "faces")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports (absolute names; ``from a import b`` counts ``a.b``
    when that is a module, else ``a``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {
        name: {m for m in _imports(path, name) if m in modules and m != name}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_app_training_or_faces() -> None:
    graph = _graph()
    assert "app.gallery.storage.base" in graph and "training.cli" in graph
    assert _cycles(graph) == []


def test_the_layers_below_the_web_import_nothing_of_it() -> None:
    graph = _graph()
    below = [m for m in graph if m.startswith(BELOW_THE_WEB)]
    assert "app.gallery.storage.postgres" in below
    # the modules they reach, transitively, inside the project
    reached = set(below)
    todo = list(below)
    while todo:
        for dependency in graph[todo.pop()]:
            if dependency not in reached:
                reached.add(dependency)
                todo.append(dependency)
    assert not {m for m in reached if m.startswith(("app.api", "app.errors", "app.main"))}
    for module in sorted(reached):
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = ROOT / module.replace(".", "/") / "__init__.py"
        imported = _imports(path, module)
        web = sorted(m for m in imported if m.split(".")[0] in WEB)
        assert not web, (module, web)
