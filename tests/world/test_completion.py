"""Shell completion from `rolecache shell-init`, driven in real bash, zsh and fish against an
AWS config file another user wrote: profile names that spell commands are never expanded
or offered, and plain names still complete."""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolecache.commands import shellinit

NOBODY = 65534

# A config file a neighbour controls (a shared team file, say). The last three names would
# run commands in the victim's home if completion expanded them.
HOSTILE_CONFIG = """\
[default]
region = us-east-1
[profile prod-admin]
role_arn = arn:aws:iam::123456789012:role/admin
[profile dev]
role_arn = arn:aws:iam::123456789012:role/dev
[profile $(id${IFS}>~/pwned)]
[profile `id>~/pwned2`]
[profile prod-$(id>~/pwned3)]
[profile *]
"""
MARKERS = ("pwned", "pwned2", "pwned3")

# Each runner sources the snippet ($1), then asks for the completions of `rolecache
# --profile CUR` and of `rolecache-assume CUR` (CUR is $2), one candidate per line, with a
# line `@@` between the two lists.
RUNNERS = {
    # bash: the completion functions are called as bash calls them, with COMP_WORDS set.
    "bash": [
        "bash", "--norc", "--noprofile", "-c",
        'source "$1"; '
        'COMP_WORDS=(rolecache --profile "$2"); COMP_CWORD=2; _rolecache_complete; '
        'printf "%s\\n" "${COMPREPLY[@]}"; echo @@; '
        'COMP_WORDS=(rolecache-assume "$2"); COMP_CWORD=1; _rolecache_assume_complete; '
        'printf "%s\\n" "${COMPREPLY[@]}"',
        "complete",
    ],
    # zsh: bashcompinit's compgen -F, which zsh's completion system calls for these
    # functions, with the words and COMP_* variables it would set.
    "zsh": [
        "zsh", "-f", "-c",
        'source "$1"; '
        'words=(rolecache --profile "$2"); CURRENT=3; '
        'COMP_WORDS=(rolecache --profile "$2"); COMP_CWORD=2; '
        'compgen -F _rolecache_complete -- "$2"; echo @@; '
        'words=(rolecache-assume "$2"); CURRENT=2; '
        'COMP_WORDS=(rolecache-assume "$2"); COMP_CWORD=1; '
        'compgen -F _rolecache_assume_complete -- "$2"',
        "complete",
    ],
    # fish: its own completion engine, as Tab would run it.
    "fish": [
        "fish", "--no-config", "-c",
        'source $argv[1]; complete -C "rolecache --profile $argv[2]"; echo @@; '
        'complete -C "rolecache-assume $argv[2]"',
    ],
}  # fmt: skip


@pytest.fixture
def home() -> Iterator[Path]:
    """The victim's home, where the hostile names would write their markers."""
    folder = Path(tempfile.mkdtemp(prefix="rc-home-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def hostile_config(home: Path) -> Iterator[Path]:
    """HOSTILE_CONFIG in a shared folder, written by uid 65534 when the tests run as root."""
    shared = Path(tempfile.mkdtemp(prefix="rc-shared-"))
    shared.chmod(0o1777)
    config = shared / "aws-config"
    if os.getuid() == 0 and shutil.which("setpriv"):
        subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             "sh", "-c", 'cat > "$1"', "_", str(config)],
            input=HOSTILE_CONFIG, text=True, check=True,
        )  # fmt: skip
    else:
        config.write_text(HOSTILE_CONFIG)
    yield config
    shutil.rmtree(shared, ignore_errors=True)


def complete(shell: str, cur: str, config: Path, home: Path) -> tuple[list[str], list[str]]:
    """The candidates `shell` offers for `rolecache --profile CUR` and `rolecache-assume
    CUR`, with the snippet `rolecache shell-init SHELL` prints loaded."""
    runner = RUNNERS[shell]
    if shutil.which(runner[0]) is None:
        pytest.skip(f"{shell} is not installed")
    snippet = home / f"init.{shell}"
    snippet.write_text(shellinit.script(shell))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(config),
    }
    result = subprocess.run(
        [*runner, str(snippet), cur], env=env, cwd=home, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    first, _, second = result.stdout.partition("@@\n")
    assert _, result.stdout

    def names(text: str) -> list[str]:
        # fish prints "candidate<TAB>description"; the others the candidate alone.
        return sorted(line.split("\t")[0] for line in text.splitlines() if line)

    return names(first), names(second)


@pytest.mark.parametrize("shell", list(RUNNERS))
def test_profile_names_that_spell_commands_never_run(
    shell: str, hostile_config: Path, home: Path
) -> None:
    """Completing profile names from a config file holding `$(...)`, backtick and glob names
    runs none of them and offers only the plain names."""
    profile, assume = complete(shell, "", hostile_config, home)
    for marker in MARKERS:
        assert not (home / marker).exists(), marker
    assert profile == assume == ["default", "dev", "prod-admin"]


@pytest.mark.parametrize("shell", list(RUNNERS))
def test_plain_profile_names_complete_by_prefix(
    shell: str, hostile_config: Path, home: Path
) -> None:
    """A typed prefix narrows the candidates to the plain names that start with it."""
    assert complete(shell, "pro", hostile_config, home) == (["prod-admin"], ["prod-admin"])
    assert complete(shell, "d", hostile_config, home) == (["default", "dev"], ["default", "dev"])
    for marker in MARKERS:
        assert not (home / marker).exists(), marker


def test_bash_completion_offers_every_command_and_option(tmp_path: Path) -> None:
    """Completion's word lists come from the parsers' tables: `endpoint` is among the
    commands, and the options of endpoint and exec are offered too."""
    snippet = tmp_path / "init.bash"
    snippet.write_text(shellinit.script("bash"))
    script = (
        'source "$1"; '
        "COMP_WORDS=(rolecache en); COMP_CWORD=1; _rolecache_complete; "
        'printf "%s\\n" "${COMPREPLY[@]}"; echo @@; '
        "COMP_WORDS=(rolecache env --im); COMP_CWORD=2; _rolecache_complete; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script, "complete", str(snippet)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    commands, options = result.stdout.split("@@\n")
    assert commands.split() == ["env", "endpoint"]
    assert options.split() == ["--imds", "--imds-port", "--imds-v1"]


# Each runner sources the snippet ($1) and prints the candidates for `rolecache WORD ` ($2).
NEXT_WORD = {
    "bash": [
        "bash", "--norc", "--noprofile", "-c",
        'source "$1"; COMP_WORDS=(rolecache "$2" ""); COMP_CWORD=2; _rolecache_complete; '
        'printf "%s\\n" "${COMPREPLY[@]}"',
        "complete",
    ],
    "zsh": [
        "zsh", "-f", "-c",
        'source "$1"; words=(rolecache "$2" ""); CURRENT=3; '
        'COMP_WORDS=(rolecache "$2" ""); COMP_CWORD=2; compgen -F _rolecache_complete -- ""',
        "complete",
    ],
    "fish": ["fish", "--no-config", "-c", 'source $argv[1]; complete -C "rolecache $argv[2] "'],
}  # fmt: skip


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("endpoint", ["add", "env", "list", "remove", "rotate"]),
        ("sts", ["assume-role"]),
        ("docker", ["setup"]),
        ("shell-init", ["bash", "fish", "zsh"]),
    ],
)
@pytest.mark.parametrize("shell", list(NEXT_WORD))
def test_commands_complete_their_subcommands(
    shell: str, command: str, words: list[str], tmp_path: Path
) -> None:
    """After a command that takes a subcommand, Tab offers its subcommands (bash and zsh:
    only them; fish adds the options it offers everywhere)."""
    runner = NEXT_WORD[shell]
    if shutil.which(runner[0]) is None:
        pytest.skip(f"{shell} is not installed")
    snippet = tmp_path / f"init.{shell}"
    snippet.write_text(shellinit.script(shell))
    result = subprocess.run(
        [*runner, str(snippet), command], capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    offered = sorted(line.split("\t")[0] for line in result.stdout.splitlines() if line)
    if shell == "fish":
        assert set(words) <= set(offered), offered
        assert not {"process", "forget"} & set(offered)  # not the command list again
    else:
        assert offered == words
