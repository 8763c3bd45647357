"""The project's imports: no cycle among its own modules, and in service/ they point one way, from
the endpoints down to the runtime and the plumbing (README, Layout). Imports inside functions
count too: a cycle hidden in a function is still a cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "lens", "training", "bench", "tests")
# Lowest first: a module may import modules of its own layer and of the layers below it.
LAYERS = (
    ("lens",),
    ("service.settings",),
    ("service.plumbing",),
    ("service.observability",),
    ("service.runtime",),
    ("service.endpoints",),
    ("service", "service.wsgi", "service.check"),   # the app factory and the entry points
)


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports: `from a import b` is a.b when that is a module."""
    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {resolve(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules
                      else resolve(base) for alias in node.names}
    return found - {None, name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module: str):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def _layer(module: str) -> int | None:
    """The layer of the longest prefix of `module` that LAYERS names."""
    best = None
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and \
                    (best is None or len(prefix) > len(best[1])):
                best = (level, prefix)
    return best and best[0]


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_service_imports_point_down():
    upward = [(module, imported) for module, imports in _graph().items()
              if _layer(module) is not None for imported in imports
              if _layer(imported) is None or _layer(imported) > _layer(module)]
    assert upward == []


def test_endpoints_do_not_import_each_other():
    """Each is one resource; what several need lives below them (e.g. service.runtime.readout).
    /dream's targets grammar is its own module beside it."""
    endpoint = "service.endpoints."
    between = {(module, imported) for module, imports in _graph().items()
               if module.startswith(endpoint) for imported in imports
               if imported.startswith(endpoint)}
    assert between == {("service.endpoints.dream", "service.endpoints.targets")}


def test_every_service_module_has_a_layer():
    assert [m for m in _graph() if m.startswith("service") and _layer(m) is None] == []


def test_the_readme_layout_says_the_same():
    """README's Layout lists every folder of service/ and states the layers in LAYERS' order."""
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("## The HTTP API")]
    folders = [path.parent.name for path in (ROOT / "service").glob("*/__init__.py")]
    assert folders and all(f"`service/{folder}/`" in layout for folder in folders)
    stated = layout.split("Imports point one way: ")[1].split(",")[0].split(" → ")
    ours = [prefixes[0].rpartition(".")[2] for prefixes in reversed(LAYERS[1:-1])]
    assert stated == ours


@pytest.mark.parametrize("graph, cycle", [
    ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_cycle_finder_finds_cycles(graph, cycle):
    assert _cycles(graph) == cycle


def test_function_level_and_relative_imports_count(tmp_path, monkeypatch):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    from pkg import b\n")
    (tmp_path / "pkg" / "b.py").write_text("from . import a\n")
    modules = {"pkg": tmp_path / "pkg" / "__init__.py", "pkg.a": tmp_path / "pkg" / "a.py",
               "pkg.b": tmp_path / "pkg" / "b.py"}
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
    assert _cycles(graph) == [["pkg.a", "pkg.b"]]
