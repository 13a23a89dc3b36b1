"""The shape of the code, held by tests: no import cycles inside the client or the daemon,
no module reaching into another's private names, and no test module importing another."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "rolecache": ROOT / "client" / "rolecache",
    "rolecached": ROOT / "daemon" / "rolecached",
}


def imports(package: str) -> dict[str, set[tuple[str, str]]]:
    """Each module of `package` -> the (module, name) pairs it imports from the package,
    name "" for a whole-module import; TYPE_CHECKING imports included."""
    found: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(PACKAGES[package].glob("*.py")):
        pairs: set[tuple[str, str]] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[0] != package:
                    continue
                if len(parts) == 1:  # from package import module
                    pairs |= {(alias.name, "") for alias in node.names}
                else:
                    pairs |= {(parts[1], alias.name) for alias in node.names}
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] == package and len(parts) > 1:
                        pairs.add((parts[1], ""))
        found[path.stem] = {(m, n) for m, n in pairs if m != path.stem}
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle of module imports, each once (as found by a depth-first walk)."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt) :]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    found.append([*cycle, nxt])
            elif len(path) < len(graph):
                walk(nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycles(package: str) -> None:
    """No module of the package imports, directly or through others, one that imports it
    (the entry points `__main__` and the launcher aside)."""
    graph = {m: {d for d, _ in deps if d != "__main__"} for m, deps in imports(package).items()}
    assert cycles(graph) == []


def private_uses(package: str) -> list[str]:
    """Where a module of `package` imports, or reads as an attribute, a private (underscore)
    name of another module of the package."""
    found = []
    for module, deps in imports(package).items():
        found += [
            f"{module} imports {source}.{name}"
            for source, name in deps
            if name.startswith("_") and not name.startswith("__")
        ]
        siblings = {source for source, name in deps if name == ""}
        tree = ast.parse((PACKAGES[package] / f"{module}.py").read_text())
        found += [
            f"{module} reads {node.value.id}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in siblings
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ]
    return sorted(found)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_private_names_across_modules(package: str) -> None:
    """No module imports or reads another module's private (underscore) names."""
    assert private_uses(package) == []


def imported_test_modules(path: Path) -> set[str]:
    """The test modules (tests/test_*.py) that the module at `path` imports, by name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if node.level == 0 and parts[0] != "tests":  # absolute, outside the suite
                continue
            inside = [p for p in parts if p and p != "tests"]
            found |= {p for p in inside[:1] if p.startswith("test_")}
            if not inside:  # from tests import test_x / from . import test_x
                found |= {a.name for a in node.names if a.name.startswith("test_")}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "tests" and len(parts) > 1 and parts[1].startswith("test_"):
                    found.add(parts[1])
    return found


def test_no_test_module_imports_another() -> None:
    """Shared fixtures and helpers live in the kits (kit, endpointkit, e2ekit, sdkkit,
    profilekit, dockerkit) or conftest, never in a test module another one imports: a test
    module is run by pytest, not used as a library."""
    found = {
        f"{path.stem} imports {', '.join(sorted(names))}"
        for path in sorted((ROOT / "tests").glob("*.py"))
        if (names := imported_test_modules(path) - {path.stem})
    }
    assert found == set()
