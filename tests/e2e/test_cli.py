"""The client's hand-written option parser and request building, without a daemon."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from rolecache import protocol
from rolecache.cmdline import UsageError, build_request, parse_options
from tests.daemonkit import BIN

ROLE = ["--role-arn", "arn:aws:iam::123456789012:role/r", "--role-session-name", "s1"]


def test_selector_options_become_request_fields() -> None:
    """Every selector flag lands in its request field, integers as integers."""
    fields, flags, rest = parse_options(
        [
            *ROLE,
            "--duration-seconds=900",
            "--external-id", "ext-1",
            "--source-profile", "src",
            "--region", "eu-west-1",
            "--source-identity", "me",
            "--min-ttl", "60",
            "--shell", "fish",
        ],
        {"--shell": "str"},
    )  # fmt: skip
    assert fields == {
        "role_arn": "arn:aws:iam::123456789012:role/r",
        "role_session_name": "s1",
        "duration_seconds": 900,
        "external_id": "ext-1",
        "source_profile": "src",
        "region": "eu-west-1",
        "source_identity": "me",
        "min_ttl": 60,
    }
    assert flags == {"--shell": "fish"} and rest == []


def test_list_options_take_values_up_to_the_next_option() -> None:
    """--tags, --policy-arns and --transitive-tag-keys take several values each."""
    fields, _, _ = parse_options(
        [
            *ROLE,
            "--tags", "Key=team,Value=a,b", "Key=empty",
            "--policy-arns", "arn=arn:aws:iam::aws:policy/ReadOnlyAccess",
            "arn:aws:iam::123456789012:policy/p",
            "--transitive-tag-keys", "team",
        ],
        {},
    )  # fmt: skip
    body = build_request(fields)
    assert body["tags"] == [{"Key": "team", "Value": "a,b"}, {"Key": "empty", "Value": ""}]
    assert body["policy_arns"] == [
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "arn:aws:iam::123456789012:policy/p",
    ]
    assert body["transitive_tag_keys"] == ["team"]


def test_a_profile_request_names_and_stamps_this_shells_config_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--profile sends the AWS config files this shell would read, each with its stamp
    (mtime_ns, size, inode) or null when it does not exist."""
    config = tmp_path / "config"
    config.write_text("[profile p]\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "missing"))
    body = build_request(parse_options(["--profile", "p"], {})[0])
    info = config.stat()
    assert body["config_file"] == str(config)
    assert body["credentials_file"] == str(tmp_path / "missing")
    assert body["file_stamps"] == [[info.st_mtime_ns, info.st_size, info.st_ino], None]
    assert "file_stamps" not in build_request(parse_options(ROLE, {})[0])


def test_everything_after_double_dash_is_the_command() -> None:
    """Arguments after -- are returned untouched, even ones that look like options."""
    _, _, rest = parse_options([*ROLE, "--", "aws", "--role-arn", "x"], {})
    assert rest == ["aws", "--role-arn", "x"]


def test_policy_from_a_file(tmp_path: Path) -> None:
    """--policy file://PATH reads the policy from the file, as the AWS CLI does."""
    policy = tmp_path / "p.json"
    policy.write_text('{"Version": "2012-10-17", "Statement": []}')
    fields, _, _ = parse_options([*ROLE, "--policy", f"file://{policy}"], {})
    assert json.loads(build_request(fields)["policy"])["Version"] == "2012-10-17"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nope"], "unknown option '--nope'"),
        (["--role-arn"], "--role-arn needs a value"),
        (["--duration-seconds", "1h"], "whole number of seconds"),
        (["--tags"], "--tags needs at least one value"),
        (["--tags", "team=a"], "Key=K,Value=V"),
        (["--policy", "file:///no/such/file"], "No such file"),
    ],
)
def test_bad_command_lines_are_usage_errors(args: list[str], message: str) -> None:
    """Malformed options raise UsageError with a message naming the problem."""
    with pytest.raises(UsageError, match=message):
        build_request(parse_options([*ROLE, *args], {})[0])


def test_role_and_session_are_required_together() -> None:
    """A selector without both --role-arn and --role-session-name is refused."""
    with pytest.raises(UsageError, match="both required"):
        build_request(parse_options(["--role-arn", "arn:aws:iam::123456789012:role/r"], {})[0])


@pytest.mark.parametrize(
    "value",
    ["plain", 'quote " and \\ backslash', "new\nline\ttab\x01", "ünïcödé ✓", "\udcff"],
)
def test_dumps_agrees_with_json(value: str) -> None:
    """The client's tiny JSON encoder produces what the json module decodes back exactly."""
    doc = {"s": value, "n": 3, "l": [value, None, True, False], "d": {"k": value}}
    assert json.loads(protocol.dumps(doc)) == doc


def test_socket_path_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    """$ROLECACHE_SOCKET wins, then $XDG_RUNTIME_DIR, then a folder in the user's state
    folder ($XDG_STATE_HOME, else ~/.local/state), never one in $TMPDIR or /tmp."""
    monkeypatch.setenv("ROLECACHE_SOCKET", "/x/y.sock")
    assert protocol.socket_path() == "/x/y.sock"
    monkeypatch.delenv("ROLECACHE_SOCKET")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/7")
    assert protocol.socket_path() == "/run/user/7/rolecache/rolecache.sock"
    assert protocol.socket_path(sandbox=True) == "/run/user/7/rolecache/sandbox.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("TMPDIR", "/tmpx")
    monkeypatch.setenv("XDG_STATE_HOME", "/home/u/state")
    assert protocol.socket_path() == "/home/u/state/rolecache/run/rolecache.sock"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", "/home/u")
    assert protocol.socket_path() == "/home/u/.local/state/rolecache/run/rolecache.sock"
    assert protocol.socket_path(sandbox=True) == "/home/u/.local/state/rolecache/run/sandbox.sock"


@pytest.mark.parametrize(("size", "fits"), [(107, True), (108, False), (300, False)])
def test_socket_path_length_limit(size: int, fits: bool) -> None:
    """A path of up to 107 bytes fits a Unix socket (108 with the NUL); a longer one is
    refused with a message naming the path and the two ways to shorten it."""
    path = "/" + "a" * (size - 1)
    problem = protocol.socket_path_problem(path)
    if fits:
        assert problem is None
    else:
        assert problem is not None and path in problem and f"{size} bytes" in problem
        assert "XDG_RUNTIME_DIR" in problem and "ROLECACHE_SOCKET" in problem


def test_token_code_dash_reads_one_line_of_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--token-code -` takes the code from the first line of stdin, not from argv."""
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("654321\nnot this\n"))
    fields, _, _ = parse_options([*ROLE, "--token-code", "-"], {})
    assert build_request(fields)["token_code"] == "654321"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(UsageError, match="stdin"):
        build_request(parse_options([*ROLE, "--token-code", "-"], {})[0])


@pytest.mark.parametrize(
    ("option", "value"),
    [("--min-ttl", "--5"), ("--duration-seconds", "²"), ("--duration-seconds", "٣٠٠٠"),
     ("--min-ttl", ""), ("--duration-seconds", "9" * 5000)],
)  # fmt: skip
def test_malformed_numbers_are_usage_errors(option: str, value: str) -> None:
    """Numbers that str.isdigit() takes but int() refuses or misreads are a usage error,
    never a traceback."""
    with pytest.raises(UsageError, match="whole number"):
        parse_options([*ROLE, f"{option}={value}"], {})


def test_a_flag_given_a_value_is_a_usage_error() -> None:
    """`--json=1` is refused rather than taken as a value of a flag."""
    with pytest.raises(UsageError, match="takes no value"):
        parse_options(["--json=1"], {"--json": "flag"})
    assert parse_options(["--json"], {"--json": "flag"})[1] == {"--json": True}


def test_a_tag_value_starting_with_dashes_is_given_inline() -> None:
    """A tag value that starts with `--` is given in the option itself."""
    fields, _, _ = parse_options([*ROLE, "--tags=Key=K,Value=--x"], {})
    assert build_request(fields)["tags"] == [{"Key": "K", "Value": "--x"}]


def test_whole_numbers_are_plain_ascii() -> None:
    """whole_number reads plain decimal integers and nothing else."""
    assert [protocol.whole_number(t) for t in ("0", "-5", "007", "42")] == [0, -5, 7, 42]
    for text in ("", "-", "--5", "²", "1.5", " 1", "1e3", "9" * 16):
        assert protocol.whole_number(text) is None, text


def client(*args: str) -> subprocess.CompletedProcess:
    """The rolecache command with no daemon to reach (help and usage need none)."""
    env = {**os.environ, "ROLECACHE_NO_AUTOSTART": "1", "ROLECACHE_SOCKET": "/nonexistent/s"}
    return subprocess.run(
        [str(BIN / "rolecache"), *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "command",
    ["env", "process", "exec", "list", "forget", "status", "endpoint", "docker", "shell-init",
     "sts"],
)  # fmt: skip
def test_each_command_has_its_own_help(command: str) -> None:
    """`rolecache COMMAND --help` prints that command's usage on stdout, not the global one,
    and exits 0."""
    result = client(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: rolecache {command}")
    assert "usage: rolecache COMMAND" not in result.stdout


def test_sts_commands_other_than_assume_role_point_to_the_aws_cli() -> None:
    """`rolecache sts get-caller-identity` says only assume-role is served and how to run
    the real CLI, as a usage error."""
    result = client("sts", "get-caller-identity")
    assert result.returncode == protocol.EXIT_USAGE
    assert "only `sts assume-role` is served" in result.stderr
    assert "aws sts get-caller-identity" in result.stderr
