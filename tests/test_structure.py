"""The shape of the code, held by tests: no import cycles inside the client or the daemon,
no module reaching into another's private names, and no test module importing another."""

import ast
import re
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


def daemon_modules() -> dict[str, ast.Module]:
    """Every module of the daemon (sub-packages included), by file name without .py."""
    return {
        path.stem: ast.parse(path.read_text())
        for path in sorted(PACKAGES["rolecached"].rglob("*.py"))
    }


def sources() -> dict[str, str]:
    """Every module's source text, by file name without .py."""
    return {p.stem: p.read_text() for p in sorted(PACKAGES["rolecached"].rglob("*.py"))}


# Numbers in 400..599 outside errors.py that are no status of ours: STS's own HTTP status
# (sts.py: 5xx from STS is retried). ssologin.py's two login errors (502, 410) still carry
# their statuses there: that file is being split on another branch, and they move to
# errors.py once it lands.
NOT_OUR_STATUSES = {"sts": {500}, "ssologin": {410, 502}}


def status_literals(source: str, tree: ast.Module) -> set[int]:
    """The decimal numbers in 400..599 in a module (file modes such as 0o700 aside), and
    those of status lines such as "404 Not Found" in its strings."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            text = ast.get_source_segment(source, node) or ""
            if 400 <= node.value <= 599 and text.isdigit():
                found.add(node.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            found |= {int(m) for m in re.findall(r"\b([45]\d\d) [A-Z][a-z]", text)}
    return found


def test_only_errors_maps_errors_to_http_statuses() -> None:
    """errors.py alone holds HTTP statuses for errors: no other daemon module has a status
    code in 400..599 (a class attribute, a table, a hand-built status line) of its own."""
    trees, texts = daemon_modules(), sources()
    found = {
        module: sorted(numbers)
        for module, tree in trees.items()
        if module != "errors"
        and (numbers := status_literals(texts[module], tree) - NOT_OUR_STATUSES.get(module, set()))
    }
    assert found == {}


def test_every_error_answer_comes_from_answer_for() -> None:
    """Outside errors.py, every response given a status takes it from an ErrorAnswer (the
    one error -> answer map, errors.answer_for); both the socket API and the endpoints call
    answer_for."""
    found = [
        f"{module}:{node.lineno}"
        for module, tree in daemon_modules().items()
        if module != "errors"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg == "status"
        and not (isinstance(keyword.value, ast.Attribute) and keyword.value.attr == "status")
    ]
    assert found == []
    callers = {m for m, text in sources().items() if re.search(r"\banswer_for\(", text)}
    assert {"api", "endpoint_guard", "fastlane", "endpoint_answers"} <= callers


# What each endpoint rule calls or raises: only endpoint_policy.py (and the modules that
# define them) may.
RULE_CALLS = {"valid", "capability_valid"}  # TokenRing's and ImdsTokens' checks
RULE_ERRORS = {"Forbidden", "Unauthorized", "TooLarge", "TooManyRequests"}


def test_each_endpoint_rule_is_written_once() -> None:
    """The Host, Origin, body, token and rate-limit rules and the endpoints' answer headers
    live in endpoint_policy.py alone: no other module checks a token, asks the rate
    limiter, builds those refusals or sets Cache-Control, so the fast lane and the aiohttp
    handlers cannot disagree."""
    found = []
    texts = sources()
    for module, tree in daemon_modules().items():
        if module in {"endpoint_policy", "errors", "tokens", "ratelimit"}:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                isinstance(op, (ast.In, ast.NotIn)) and "hosts" in ast.unparse(right)
                for op, right in zip(node.ops, node.comparators, strict=True)
            ):
                found.append(f"{module}:{node.lineno} a Host allow-list check")
            if not isinstance(node, ast.Call):
                continue
            called = node.func.attr if isinstance(node.func, ast.Attribute) else None
            named = node.func.id if isinstance(node.func, ast.Name) else None
            if called in RULE_CALLS or named in RULE_ERRORS or called in RULE_ERRORS:
                found.append(f"{module}:{node.lineno} {called or named}")
            if called == "wait" and "limiter" in ast.unparse(node.func):
                found.append(f"{module}:{node.lineno} limiter.wait")
        if "Cache-Control" in texts[module]:
            found.append(f"{module}: sets Cache-Control")
    assert found == []
