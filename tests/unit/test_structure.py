"""The shape of the code, held by tests over every folder of the client and the daemon as
found on disk: no import cycles, no module reaching into another's private names, the
daemon's layers (which sub-package may import which), every folder a package, and in the
suite no test module importing another or anything from conftest.py; every name imported
from the module that defines it."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGES = {
    "rolecache": ROOT / "client" / "rolecache",
    "rolecached": ROOT / "daemon" / "rolecached",
}

# The daemon's layers, by the first part of a module's name under `rolecached` (a sub-package,
# or a module at the top). Each rule says what a part may not import, or (ONLY) all it may.
START_UP = {"main", "runtime", "wiring", "apisocket", "__main__"}
LISTENERS = {"front", "api", "endpoints"}
FORBIDDEN = {
    "core": LISTENERS | START_UP,  # the store knows no listener
    "sources": LISTENERS | START_UP,  # nor do the credential sources
    "front": {"endpoints", "api"} | START_UP,  # what every listener shares knows none of them
    "observe": LISTENERS | START_UP,
    # output formats: nothing above the core (the sources, listeners, STS, start-up)
    "render": LISTENERS | START_UP | {"sources", "observe", "sts", "config", "fake_sts"},
    "api": START_UP,
    "endpoints": {"api"} | START_UP,  # endpoints know nothing of the socket API
}
ONLY = {
    "host": {"host"},  # the host's calls import nothing of the daemon
    "errors": set(),
    "erroranswers": {"errors"},  # the one error -> answer map knows the error types alone
}
# The client's commands are reached through the command line only.
COMMANDS = "commands"
COMMAND_USERS = {"cli", "__main__", COMMANDS}


def module_name(package: str, path: Path) -> str:
    """The dotted name of the module at `path` in `package` (a package by its own name)."""
    parts = path.relative_to(PACKAGES[package]).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((package, *parts))


def modules(package: str) -> dict[str, Path]:
    """Every module of `package`, in every folder, by dotted name."""
    return {
        module_name(package, path): path
        for path in sorted(PACKAGES[package].rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def imports(package: str) -> dict[str, set[tuple[str, str]]]:
    """Each module of `package` -> the (module, name) pairs it imports from the package, by
    full dotted module name, name "" for a whole module; TYPE_CHECKING imports included.
    `from package.sub import mod` counts as importing the module `package.sub.mod`."""
    known = modules(package)
    found: dict[str, set[tuple[str, str]]] = {}
    for module, path in known.items():
        pairs: set[tuple[str, str]] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.split(".")[0] != package:
                    continue
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in known:
                        pairs.add((f"{node.module}.{alias.name}", ""))
                    else:
                        pairs.add((node.module, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == package and alias.name != package:
                        pairs.add((alias.name, ""))
        found[module] = {(m, n) for m, n in pairs if m != module}
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


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (the entry points `__main__` aside;
    a package's `__init__` only when it is imported by its own name)."""
    return {
        m: {d for d, _ in deps if not d.endswith("__main__")}
        for m, deps in imports(package).items()
    }


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycles(package: str) -> None:
    """No module of the package imports, directly or through others, one that imports it."""
    assert cycles(import_graph(package)) == []


def test_cycles_are_found() -> None:
    """The cycle finder sees a cycle through three modules, and none in a chain."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def private_uses(package: str) -> list[str]:
    """Where a module of `package` imports, or reads as an attribute, a private (underscore)
    name of another module of the package."""
    found = []
    known = modules(package)
    for module, deps in imports(package).items():
        found += [
            f"{module} imports {source}.{name}"
            for source, name in deps
            if name.startswith("_") and not name.startswith("__")
        ]
        tree = ast.parse(known[module].read_text())
        siblings = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
            for alias in node.names
            if f"{node.module}.{alias.name}" in known
        }
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


def part(module: str) -> str:
    """The layer of a daemon module: its sub-package, or its own name at the top."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import of the daemon that crosses a layer the way FORBIDDEN and ONLY forbid."""
    found = []
    for module, deps in sorted(graph.items()):
        mine = part(module)
        for dep in sorted(deps):
            theirs = part(dep)
            if not theirs or theirs == mine:
                continue
            if theirs in FORBIDDEN.get(mine, ()) or (mine in ONLY and theirs not in ONLY[mine]):
                found.append(f"{module} imports {dep}")
    return found


def test_daemon_layers() -> None:
    """The store and the credential sources import no listener, the front no endpoint or
    API, the host code nothing of the daemon, the output formats nothing above the core."""
    assert layer_violations(import_graph("rolecached")) == []


def test_layer_violations_are_found() -> None:
    """A core module importing the front, and a host module importing the core, are each
    reported; a front module importing the core is not."""
    graph = {
        "rolecached.core.store": {"rolecached.front.gate"},
        "rolecached.host.peers": {"rolecached.core.cache"},
        "rolecached.front.gate": {"rolecached.core.cache"},
    }
    assert layer_violations(graph) == [
        "rolecached.core.store imports rolecached.front.gate",
        "rolecached.host.peers imports rolecached.core.cache",
    ]


def test_client_commands_are_reached_through_the_command_line() -> None:
    """No module of the client but the command line imports one of its commands."""
    found = [
        f"{module} imports {dep}"
        for module, deps in import_graph("rolecache").items()
        for dep in deps
        if part(dep) == COMMANDS and part(module) not in COMMAND_USERS
    ]
    assert found == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_folder_is_a_package(package: str) -> None:
    """Every folder of the package that holds Python code has an `__init__.py` of its own."""
    folders = {p.parent for p in PACKAGES[package].rglob("*.py") if "__pycache__" not in p.parts}
    assert sorted(str(f) for f in folders if not (f / "__init__.py").exists()) == []


def suite_imports(path: Path) -> set[str]:
    """The modules of the suite (tests.*) that the module at `path` imports, by full name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level or not node.module or node.module.split(".")[0] != "tests":
                continue
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "tests"}
    return found


def suite_modules() -> list[Path]:
    """Every Python module of the suite, in every folder."""
    return [p for p in sorted((ROOT / "tests").rglob("*.py")) if "node_modules" not in p.parts]


def test_no_test_module_imports_another() -> None:
    """Shared fixtures and helpers live in the kits (kit, daemonkit, endpointkit, e2ekit,
    sdkkit, profilekit, dockerkit...), never in a test module another one imports: a test
    module is run by pytest, not used as a library."""
    found = {
        f"{path.stem} imports {', '.join(sorted(names))}"
        for path in suite_modules()
        if (
            names := {n for n in suite_imports(path) if n.rsplit(".", 1)[-1].startswith("test_")}
            - {module_of(path)}
        )
    }
    assert found == set()


def module_of(path: Path) -> str:
    """The dotted name of a module of the suite."""
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_nothing_is_imported_from_conftest() -> None:
    """conftest.py holds fixtures and hooks only: helpers are in kits, so no module of the
    suite imports from it."""
    found = sorted(
        module_of(path)
        for path in suite_modules()
        if any(n.split(".")[-1] == "conftest" or ".conftest." in n for n in suite_imports(path))
    )
    assert found == []


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
# (stserrors.py: 5xx from STS is retried).
NOT_OUR_STATUSES = {"stserrors": {500}}


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
    """errors.py alone holds HTTP statuses for errors, on its types: no other daemon module
    (erroranswers.py, which answers with them, included) has a status code in 400..599 (a
    class attribute, a table, a hand-built status line) of its own."""
    trees, texts = daemon_modules(), sources()
    found = {
        module: sorted(numbers)
        for module, tree in trees.items()
        if module != "errors"
        and (numbers := status_literals(texts[module], tree) - NOT_OUR_STATUSES.get(module, set()))
    }
    assert found == {}


def test_every_error_answer_comes_from_answer_for() -> None:
    """Outside erroranswers.py, every response given a status takes it from an ErrorAnswer
    (the one error -> answer map, erroranswers.answer_for, defined there alone); both the
    socket API and the endpoints call answer_for."""
    found = [
        f"{module}:{node.lineno}"
        for module, tree in daemon_modules().items()
        if module != "erroranswers"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg == "status"
        and not (isinstance(keyword.value, ast.Attribute) and keyword.value.attr == "status")
    ]
    assert found == []
    homes = {m for m, text in sources().items() if re.search(r"^def answer_for\(", text, re.M)}
    assert homes == {"erroranswers"}
    callers = {m for m, text in sources().items() if re.search(r"\banswer_for\(", text)}
    assert {"routes", "guard", "fastlane", "answers"} <= callers


# What each endpoint rule calls or raises: only endpoints/policy.py (and the modules that
# define them) may.
RULE_CALLS = {"valid", "capability_valid"}  # TokenRing's and ImdsTokens' checks
RULE_ERRORS = {"Forbidden", "Unauthorized", "TooLarge", "TooManyRequests"}


def test_each_endpoint_rule_is_written_once() -> None:
    """The Host, Origin, body, token and rate-limit rules and the endpoints' answer headers
    live in endpoints/policy.py alone: no other module checks a token, asks the rate
    limiter, builds those refusals or sets Cache-Control, so the fast lane and the aiohttp
    handlers cannot disagree."""
    found = []
    texts = sources()
    for module, tree in daemon_modules().items():
        if module in {"policy", "errors", "tokens", "ratelimit"}:
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


MAX_FUNCTION = 60
MAX_MODULE = 300


def too_long(root: Path, folders: list[str]) -> set[str]:
    """Every module over MAX_MODULE lines and function over MAX_FUNCTION lines under folders."""
    found = set()
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            text = path.read_text()
            rel = path.relative_to(root).as_posix()
            if len(text.splitlines()) > MAX_MODULE:
                found.add(f"MODULE {rel}")
            for node in ast.walk(ast.parse(text)):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                if (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION:
                    found.add(f"FUNC {rel} {node.name}")
    return found


def test_no_long_functions_or_modules() -> None:
    """No function in daemon/ or client/ is over 60 lines, no module over 300."""
    assert too_long(ROOT, ["daemon", "client"]) == set()


def test_long_code_is_found(tmp_path: Path) -> None:
    """A seeded 61-line function and a 301-line module are both reported."""
    (tmp_path / "pkg").mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    (tmp_path / "pkg" / "f.py").write_text("def f():\n" + body)
    (tmp_path / "pkg" / "m.py").write_text("x = 1\n" * 301)
    assert too_long(tmp_path, ["pkg"]) == {"FUNC pkg/f.py f", "MODULE pkg/m.py"}


def defined_names(tree: ast.Module) -> set[str]:
    """The names a module defines at its top level (functions, classes, assignments), not
    those it imports."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def borrowed_names(package: str) -> list[str]:
    """Each name a module takes from another module of `package` (imported by name, or
    reached as `module.name`) that that module does not define but imports itself."""
    known = modules(package)
    defined = {m: defined_names(ast.parse(p.read_text())) for m, p in known.items()}
    found = []
    for module, pairs in imports(package).items():
        tree = ast.parse(known[module].read_text())
        wanted = {(m, n) for m, n in pairs if n}
        aliases = {}  # a module imported whole, by the name this module uses for it
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in known:
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            named = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            if named and node.value.id in aliases:  # type: ignore[attr-defined]
                wanted.add((aliases[node.value.id], node.attr))  # type: ignore[attr-defined]
        for owner, name in sorted(wanted):
            submodule = f"{owner}.{name}" in known
            if owner in defined and name not in defined[owner] and not submodule:
                found.append(f"{module} takes {name} from {owner}")
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_names_are_imported_from_their_home(package: str) -> None:
    """Every name is imported from the module that defines it, never through a module that
    only imports it (no re-exports to keep in step)."""
    allowed = {"rolecached takes __version__ from rolecached"}  # the package's own version
    assert [b for b in borrowed_names(package) if b not in allowed] == []


def test_borrowed_names_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name taken through a module that only imports it, by name or as an attribute of
    the module, is reported; one taken from its home is not."""
    pkg = tmp_path / "rolecached"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "home.py").write_text("def thing():\n    pass\n")
    (pkg / "middle.py").write_text("from rolecached.home import thing\n")
    (pkg / "user.py").write_text(
        "from rolecached import middle\nfrom rolecached.middle import thing\n"
        "from rolecached.home import thing as ok\nx = middle.thing\n"
    )
    monkeypatch.setitem(PACKAGES, "rolecached", pkg)
    assert borrowed_names("rolecached") == ["rolecached.user takes thing from rolecached.middle"]


# What only Linux has, which the daemon reaches through host/ alone (the seam another
# platform's module would replace). The port keeper is a standalone process that imports the
# standard library only, so it asks SO_PEERCRED itself.
LINUX_ONLY_NAMES = {"SO_PEERCRED", "IP_FREEBIND", "IP_PKTINFO", "AF_NETLINK", "prctl", "ioctl"}
LINUX_ONLY_PATHS = ("/proc/", "/sys/")
OWN_PROCESS = {"rolecached.front.portkeeper": {"SO_PEERCRED"}}


def linux_only_uses(package: str) -> list[str]:
    """Each use, outside host/, of a Linux-only socket option or call or a /proc or /sys
    path (comments and docstrings aside; an f-string's text counts)."""
    found = []
    for module, path in modules(package).items():
        if module.startswith(f"{package}.host"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
            if name in LINUX_ONLY_NAMES and name not in OWN_PROCESS.get(module, ()):
                found.append(f"{module}: {name}")
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and text.startswith(LINUX_ONLY_PATHS):
                found.append(f"{module}: {text}")
    return found


def test_linux_is_reached_through_host_only() -> None:
    """No daemon module outside host/ sets a Linux-only socket option, makes a Linux-only
    call or reads /proc or /sys: a port to another system replaces host/ alone."""
    assert linux_only_uses("rolecached") == []


def test_linux_only_uses_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A seeded IP_FREEBIND and /proc read outside host/ are reported; the same in host/ not."""
    pkg = tmp_path / "rolecached"
    (pkg / "host").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "host" / "__init__.py").write_text("")
    code = "import socket\nx = socket.IP_FREEBIND\ny = open(f'/proc/{1}/stat')\n"
    (pkg / "host" / "fine.py").write_text(code)
    (pkg / "leak.py").write_text(code)
    monkeypatch.setitem(PACKAGES, "rolecached", pkg)
    assert linux_only_uses("rolecached") == [
        "rolecached.leak: IP_FREEBIND",
        "rolecached.leak: /proc/",
    ]
