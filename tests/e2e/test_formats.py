"""Output formats: shell export lines that real shells read back exactly, the
credential_process document, and the expiration timestamp SDKs accept."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rolecache.shells import ENV_NAMES
from rolecached.render.credentials import env_lines, iso_expiration, process_json

PLAIN = {
    "AccessKeyId": "ASIAQEXAMPLE7KEYID00",
    "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "SessionToken": "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD" + "A1b2" * 80,
    "Expiration": "2026-11-28T01:36:28Z",
    "RoleArn": "arn:aws:iam::123456789012:role/deploy",
    "AccountId": "123456789012",
}

# Values no real credential holds, chosen to break any quoting that is not airtight.
NASTY = {
    "AccessKeyId": "it's a 'quoted' key",
    "SecretAccessKey": "spaces  and\ttabs $HOME ${PATH} $(touch pwned) `touch pwned2` !!",
    "SessionToken": "line one\nline two\n\n'\"\\ backslash \\' end\\",
    "Expiration": "-n $1 * ? [a] ; & | < > # ~ %s %% {a,b}",
}

EXPECTED_NAMES = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
]

# How each shell runs a script; the script then starts Python, which reports its environment,
# so the check also proves the variables are exported to child processes.
SHELL_RUNNERS = {
    "sh": ["sh", "-c"],
    "bash": ["bash", "-c"],
    "zsh": ["zsh", "-f", "-c"],
    "fish": ["fish", "--no-config", "-c"],
    "powershell": ["pwsh", "-NoProfile", "-NonInteractive", "-Command"],
}

REPORT = f"import json, os; print(json.dumps({{n: os.environ.get(n) for n in {EXPECTED_NAMES!r}}}))"


def run_in_shell(shell: str, script: str, cwd: Path) -> dict[str, str | None]:
    """Run `script` followed by a Python child that prints the AWS_* variables it inherited."""
    runner = SHELL_RUNNERS[shell]
    if shutil.which(runner[0]) is None:
        pytest.skip(f"{runner[0]} is not installed")
    assert '"' not in REPORT and "$" not in REPORT  # so it can sit inside double quotes
    if shell == "powershell":
        child = f"& '{sys.executable}' -c \"{REPORT}\""
    else:
        child = f"'{sys.executable}' -c \"{REPORT}\""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    result = subprocess.run(
        [*runner, script + child + "\n"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture
def utc_elsewhere() -> Iterator[None]:
    """Run with the local time zone far from UTC, so a local-time bug would show."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Kiritimati"  # UTC+14
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


# -- env_lines ---------------------------------------------------------------------------


@pytest.mark.parametrize("shell", list(SHELL_RUNNERS))
@pytest.mark.parametrize("creds", [PLAIN, NASTY], ids=["plain", "nasty"])
def test_env_lines_round_trip_through_a_real_shell(
    shell: str, creds: dict[str, str], tmp_path: Path
) -> None:
    """Evaluating env_lines in the real shell exports each value exactly, running nothing."""
    got = run_in_shell(shell, env_lines(creds, shell), tmp_path)
    assert got == {name: creds[key] for name, key in ENV_NAMES}
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "pwned2").exists()


@pytest.mark.parametrize("shell", list(SHELL_RUNNERS))
def test_env_lines_comment_is_ignored_by_the_shell(shell: str, tmp_path: Path) -> None:
    """A comment line (the sandbox note) is inert: the shell still sets exactly the values."""
    script = env_lines(PLAIN, shell, comment="rolecache SANDBOX: not AWS; $(touch pwned)")
    assert script.startswith("# rolecache SANDBOX: not AWS")
    got = run_in_shell(shell, script, tmp_path)
    assert got == {name: PLAIN[key] for name, key in ENV_NAMES}
    assert not (tmp_path / "pwned").exists()


def test_env_names_are_the_four_sdk_variables_in_order() -> None:
    """env_lines sets AWS_ACCESS_KEY_ID, _SECRET_ACCESS_KEY, _SESSION_TOKEN, _EXPIRATION."""
    assert [name for name, _ in ENV_NAMES] == EXPECTED_NAMES
    names = re.findall(r"^export (\w+)=", env_lines(PLAIN, "bash"), re.MULTILINE)
    assert names == EXPECTED_NAMES


@pytest.mark.parametrize(
    ("shell", "line"),
    [
        ("sh", "export AWS_ACCESS_KEY_ID='it'\\''s a '\\''quoted'\\'' key'"),
        ("bash", "export AWS_ACCESS_KEY_ID='it'\\''s a '\\''quoted'\\'' key'"),
        ("zsh", "export AWS_ACCESS_KEY_ID='it'\\''s a '\\''quoted'\\'' key'"),
        ("fish", "set -gx AWS_ACCESS_KEY_ID 'it\\'s a \\'quoted\\' key';"),
        ("powershell", "$Env:AWS_ACCESS_KEY_ID = 'it''s a ''quoted'' key'"),
    ],
)
def test_env_lines_quote_single_quotes_per_shell(shell: str, line: str) -> None:
    """Each shell gets its own single-quote escape, so the check holds without the shell."""
    assert env_lines(NASTY, shell).splitlines()[0] == line


# Every character PowerShell reads as a single quote: ASCII ' and U+2018 to U+201B.
POWERSHELL_QUOTES = ("'", "\u2018", "\u2019", "\u201a", "\u201b")


@pytest.mark.parametrize("quote", POWERSHELL_QUOTES, ids=lambda q: f"U+{ord(q):04X}")
def test_powershell_doubles_every_kind_of_single_quote(quote: str) -> None:
    """Each of PowerShell's five single-quote characters is doubled inside the quoted value,
    so none can end the string and run what follows."""
    value = f"a{quote}; Remove-Item -Recurse ~ #{quote}b"
    line = env_lines({**PLAIN, "SessionToken": value}, "powershell").splitlines()[2]
    assert line == f"$Env:AWS_SESSION_TOKEN = 'a{quote * 2}; Remove-Item -Recurse ~ #{quote * 2}b'"


def test_powershell_quoting_covers_all_five_quotes_at_once() -> None:
    """A value holding all five quote characters comes out with each of them doubled and
    nothing else changed."""
    value = "x" + "".join(POWERSHELL_QUOTES) + "y"
    line = env_lines({**PLAIN, "AccessKeyId": value}, "powershell").splitlines()[0]
    inner = line.split(" = ", 1)[1][1:-1]
    assert inner == "x" + "".join(q * 2 for q in POWERSHELL_QUOTES) + "y"


def test_fish_escapes_backslashes() -> None:
    """fish reads \\\\ inside single quotes as one backslash, so backslashes are doubled."""
    text = env_lines({**PLAIN, "SessionToken": "a\\b\\'c"}, "fish")
    assert "set -gx AWS_SESSION_TOKEN 'a\\\\b\\\\\\'c';" in text.splitlines()


@pytest.mark.parametrize("shell", list(SHELL_RUNNERS))
def test_env_lines_is_four_lines_ending_in_a_newline(shell: str) -> None:
    """Without a comment the output is exactly four lines and ends with a newline."""
    text = env_lines(PLAIN, shell)
    assert text.endswith("\n")
    assert len(text.splitlines()) == 4
    assert not any(line.startswith("#") for line in text.splitlines())


def test_env_lines_ignore_extra_fields() -> None:
    """RoleArn, AccountId and other extra fields of the document are not exported."""
    text = env_lines(PLAIN, "bash")
    assert "RoleArn" not in text and PLAIN["RoleArn"] not in text


# -- process_json ------------------------------------------------------------------------


def test_process_json_has_version_number_1_and_exactly_the_five_keys() -> None:
    """The credential_process document is Version (the number 1) plus the four credentials."""
    doc = json.loads(process_json(PLAIN))
    assert set(doc) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert doc["Version"] == 1 and type(doc["Version"]) is int
    for key in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"):
        assert doc[key] == PLAIN[key]


def test_process_json_keeps_values_exactly() -> None:
    """Quotes, newlines and backslashes survive the credential_process JSON unchanged."""
    doc = json.loads(process_json(NASTY))
    assert {k: doc[k] for k in NASTY} == NASTY


def test_process_json_is_one_document_ending_in_a_newline() -> None:
    """The output is a single JSON document followed by a newline, nothing else."""
    text = process_json(PLAIN)
    assert text.endswith("}\n")
    json.JSONDecoder().raw_decode(text)  # decodes from the start
    assert text.count("{") == 1


# -- iso_expiration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_700_000_000, "2023-11-14T22:13:20Z"),
        (1_700_000_000.999999, "2023-11-14T22:13:20Z"),
        (1_700_000_039.5, "2023-11-14T22:13:59Z"),
        (1_795_829_788.25, "2026-11-28T01:36:28Z"),
        (4_102_444_799.9, "2099-12-31T23:59:59Z"),
    ],
)
def test_iso_expiration_is_utc_whole_seconds_rounded_down(
    epoch: float, expected: str, utc_elsewhere: None
) -> None:
    """iso_expiration gives %Y-%m-%dT%H:%M:%SZ in UTC, dropping (never rounding up) fractions."""
    assert iso_expiration(epoch) == expected


def test_iso_expiration_never_claims_more_life_than_there_is() -> None:
    """For many fractional times the printed instant is the time rounded down to the second."""
    for i in range(2000):
        epoch = 1_795_829_788 + i * 0.37
        parsed = datetime.strptime(iso_expiration(epoch), "%Y-%m-%dT%H:%M:%SZ")
        assert parsed.replace(tzinfo=UTC).timestamp() == int(epoch)
