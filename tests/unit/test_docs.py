"""The documentation holds together: every relative link in README.md and docs/*.md reaches a
file and, when it names one, a heading there; CI runs the README's test command as written; and
the architecture's module map names the daemon's modules as they are."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
EXTERNAL = ("http://", "https://", "mailto:")


def _prose(text: str) -> list[tuple[int, str]]:
    """The numbered lines of a Markdown text outside its fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation but `-` and `_` dropped,
    spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    """Every heading anchor of `page`, repeats numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    anchors = set()
    for _, line in _prose(page.read_text()):
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            slug = _slug(heading.group(1))
            anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _broken_links(pages: list[Path]) -> tuple[int, list[str]]:
    """How many relative links `pages` hold, and each one whose file or anchor is missing."""
    checked, broken = 0, []
    for page in pages:
        for number, line in _prose(page.read_text()):
            for target in LINK.findall(line):
                if target.startswith(EXTERNAL):
                    continue
                checked += 1
                path, _, anchor = target.partition("#")
                reached = (page.parent / path).resolve() if path else page
                where = f"{page.relative_to(ROOT)}:{number}: {target}"
                if not reached.exists():
                    broken.append(f"{where} (no such file)")
                elif anchor and (reached.suffix != ".md" or anchor not in _anchors(reached)):
                    broken.append(f"{where} (no such heading)")
    return checked, broken


def test_every_relative_link_reaches_a_file_and_heading() -> None:
    """Every relative link in README.md and docs/*.md points to an existing file and anchor."""
    checked, broken = _broken_links(PAGES)
    assert checked > 20, f"only {checked} relative links found: is the link pattern right?"
    assert broken == []


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """.ci/run's last command is the second command of the README's set-up, character for
    character."""
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up on a fresh machine\n", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", setup, re.DOTALL)
    ci = (ROOT / ".ci" / "run").read_text().rstrip("\n").splitlines()[-1]
    assert len(commands) == 2, commands
    assert commands[1] == ci


def test_architecture_names_every_daemon_module() -> None:
    """docs/architecture.md's module map names each module of daemon/rolecached, and none
    that is gone (by file name, so a move into a sub-package alone keeps it true)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    module_map = text.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(\w+\.py)`", module_map))
    daemon = ROOT / "daemon" / "rolecached"
    modules = {path.name for path in daemon.rglob("*.py") if path.name != "__init__.py"}
    assert sorted(modules - named) == [], "modules missing from the map"
    assert sorted(named - modules) == [], "modules in the map that are gone"
