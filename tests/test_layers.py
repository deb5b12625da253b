"""The apps import each other one way only: aspweb (core) <- accounts <- providers <- usage <- budgets <- gateway
and playground and reconcile (top). A lower app that needs something of a higher one is handed it (a hook the higher app
registers from its AppConfig.ready), so no import, module-level or inside a function, ever points up."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Lower number, lower layer: an app may import only apps of a lower layer.
LAYERS = {"aspweb": 0, "accounts": 1, "providers": 2, "usage": 3, "budgets": 4, "gateway": 5, "playground": 5,
          "reconcile": 5}
MAX_LINES = 600


def _modules() -> list[Path]:
    return sorted(path for app in LAYERS for path in (ROOT / app).rglob("*.py")
                  if "migrations" not in path.relative_to(ROOT).parts)


def _imported_apps(source: str, module: str) -> set[tuple[str, int]]:
    """The apps the module `module` (dotted, its source `source`) imports anywhere in it: module level, in
    functions, under TYPE_CHECKING; each with the line of one such import."""
    package = module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the module's own package
                base = package[:len(package) - node.level + 1]
                found.add(([*base, *(node.module or "").split(".")][0], node.lineno))
            elif node.module:
                found.add((node.module.split(".")[0], node.lineno))
    return {(app, line) for app, line in found if app in LAYERS}


def _apps_of(path: Path) -> set[str]:
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return {app for app, _ in _imported_apps(path.read_text(encoding="utf-8"), module)}


def _edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for path in _modules():
        app = path.relative_to(ROOT).parts[0]
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for imported, line in _imported_apps(path.read_text(encoding="utf-8"), module):
            if imported != app:
                edges.setdefault((app, imported), []).append(f"{path.relative_to(ROOT)}:{line}")
    return edges


def test_the_parser_sees_imports_at_every_level() -> None:
    """Guards the test itself: imports at module level, inside functions and relative ones are all found."""
    source = (
        "import usage.models\n"
        "from . import calls\n"
        "from ..budgets import services\n"
        "def ready():\n"
        "    from gateway import routing\n"
        "    if True:\n"
        "        import playground.spent\n"
    )
    assert _imported_apps(source, "providers.adapters.base") == {
        ("usage", 1), ("providers", 2), ("providers", 3), ("gateway", 5), ("playground", 7)}
    assert _imported_apps(source, "providers.calls") >= {("budgets", 3)}
    assert "providers" in _apps_of(ROOT / "gateway" / "apps.py")  # inside ready()
    assert "gateway" not in _apps_of(ROOT / "providers" / "calls.py")


def test_every_import_between_apps_points_down_the_layers() -> None:
    upward = {f"{a} -> {b}": where for (a, b), where in _edges().items()
              if LAYERS[b] >= LAYERS[a]}
    assert upward == {}


def test_the_apps_import_each_other_without_a_cycle() -> None:
    graph: dict[str, set[str]] = {app: set() for app in LAYERS}
    for a, b in _edges():
        graph[a].add(b)
    done: set[str] = set()

    def visit(app: str, path: list[str]) -> None:
        if app in path:
            pytest.fail("import cycle: " + " -> ".join([*path[path.index(app):], app]))
        if app in done:
            return
        for imported in sorted(graph[app]):
            visit(imported, [*path, app])
        done.add(app)

    for app in LAYERS:
        visit(app, [])


def test_a_module_past_600_lines_says_why_in_its_docstring() -> None:
    long = []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_LINES:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if "lines" not in docstring:
                long.append(str(path.relative_to(ROOT)))
    assert long == []
