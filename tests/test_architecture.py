"""The layering rules, checked on the source: api -> service -> storage/metadata, nothing above
imports `gateway.api` but the app, backends know nothing above them, and no import cycle.

Imports are read with `ast`, deferred ones (inside functions) included, since a deferred import
closes a cycle as surely as a module-level one; imports under `if TYPE_CHECKING:` are left out,
as they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    found: set[str] = set()

    def resolve(name: str) -> str | None:
        # The longest known module that `name` is or lies inside: `from gateway.x import y`
        # imports gateway.x.y when y is a module, else gateway.x.
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("gateway") and (target := resolve(alias.name)):
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.startswith("gateway"):
                for alias in node.names:
                    if target := resolve(f"{base}.{alias.name}"):
                        found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(path) for path in paths}
    return {
        _module_name(path): _imports(ast.parse(path.read_text(), str(path)), _module_name(path), path.name == "__init__.py", modules)
        for path in paths
    }


GRAPH = _graph()


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    # A package's own __init__ imported by its submodules is not a cycle of layers, but Python
    # still runs it first: count it like any other edge.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_was_read() -> None:
    # Guards the checks below against passing on an empty or misread graph.
    assert "gateway.service.core" in GRAPH and "gateway.storage.base" in GRAPH["gateway.service.core"]


def test_no_import_cycle() -> None:
    cycle = _cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_api_is_imported_only_by_itself_and_the_app() -> None:
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _in(target, "gateway.api") and not _in(module, "gateway.api") and module != "gateway.app"
    )
    assert offenders == []


ABOVE_BACKENDS = ("gateway.service", "gateway.app", "gateway.api", "gateway.auth", "gateway.cli", "gateway.datasets", "gateway.middlewares", "gateway.keys")


@pytest.mark.parametrize("backend", ["gateway.storage", "gateway.metadata"])
def test_backends_import_nothing_above_them(backend: str) -> None:
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if _in(module, backend)
        for target in targets
        if any(_in(target, above) for above in ABOVE_BACKENDS)
    )
    assert offenders == []


def test_the_two_stores_never_import_each_other() -> None:
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if (_in(module, "gateway.storage") and _in(target, "gateway.metadata"))
        or (_in(module, "gateway.metadata") and _in(target, "gateway.storage"))
    )
    assert offenders == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


# The modules beside the packages: what every layer shares (config, errors, keys, the edge's
# middlewares, metrics, the JSON codec) and the domain's validation (images, names,
# properties). A new module goes into the package whose layer it serves; growing this list is a
# decision to make here, in review, not by accident.
TOP_LEVEL = {
    "app", "caches", "config", "errors", "images", "jsoncodec", "keys", "metrics", "middlewares", "names", "properties",
}


def test_the_top_level_holds_only_shared_modules() -> None:
    found = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert found == TOP_LEVEL
