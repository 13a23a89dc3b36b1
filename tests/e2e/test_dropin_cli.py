"""`rolecache sts assume-role` against the real AWS CLI of each generation, byte for byte.

An STS stand-in on loopback answers every AssumeRole with the same credentials, so the real
CLI (v1 from PyPI, v2 from Debian's `awscli` package, 2.9) and rolecache's drop-in (the real
daemon behind it) print the same response, and their stdout and exit codes must be
identical: every output format, the --query idioms scripts use, and the usual mistakes.
"""

import http.server
import json
import os
import re
import shutil
import ssl
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from tests.daemonkit import BIN, Daemon, base_env, start_daemon
from tests.kit import sts_stand_in

V2 = Path("/usr/bin/aws")  # Debian's awscli package: AWS CLI v2
ROLE = "arn:aws:iam::123456789012:role/dropin"
KEY = "ASIAFIXEDFIXED000001"
FIXED = """<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <SourceIdentity>alice-src</SourceIdentity>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/dropin/{session}</Arn>
      <AssumedRoleId>AROA3XFRBF535PLBIFPI4:{session}</AssumedRoleId>
    </AssumedRoleUser>
    <PackedPolicySize>6</PackedPolicySize>
    <Credentials>
      <AccessKeyId>{key}</AccessKeyId>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYFIXEDKEY00</SecretAccessKey>
      <SessionToken>IQoJb3JpZ2luX2VjEOr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+/=</SessionToken>
      <Expiration>2036-01-01T00:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleResponse>"""
DENIED = """<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>
<Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized</Message>
</Error><RequestId>denied</RequestId></ErrorResponse>"""

JOIN = ",".join(
    f"join(``,[`export {name}=`,{field}])"
    for name, field in [
        ("AWS_ACCESS_KEY_ID", "AccessKeyId"),
        ("AWS_SECRET_ACCESS_KEY", "SecretAccessKey"),
        ("AWS_SESSION_TOKEN", "SessionToken"),
    ]
)
QUERIES: list[list[str]] = [
    [],
    ["--query", f"Credentials.[{JOIN}]"],  # the seed scripts' export idiom
    ["--query", "Credentials"],
    ["--query", "Credentials.AccessKeyId"],
    ["--query", "AssumedRoleUser.[Arn, AssumedRoleId]"],
]
OUTPUTS = ["json", "text", "table", "yaml", "yaml-stream"]

pytestmark = [
    pytest.mark.filterwarnings("ignore:deprecated string literal syntax"),
    pytest.mark.skipif(not V2.exists(), reason="AWS CLI v2 (Debian's awscli) is not installed"),
]


INVALID = """<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>
<Type>Sender</Type><Code>ValidationError</Code><Message>{message}</Message>
</Error><RequestId>invalid</RequestId></ErrorResponse>"""
# STS's own checks of the values the AWS CLI sends unchecked (its pattern and maximums).
SESSION_CHARS = re.compile(r"[\w+=,.@-]*", re.ASCII)
EXTERNAL_ID_CHARS = re.compile(r"[\w+=,.@:/-]*", re.ASCII)


@dataclass
class World:
    """The fixed STS, a daemon using it, the environment every command runs in, and the
    forms of the AssumeRole calls the STS received."""

    sts_url: str
    daemon: Daemon
    env: dict[str, str]
    forms: list[dict[str, str]]


def sts_refusal(form: dict[str, str]) -> str | None:
    """The ValidationError message STS answers for the form's session name, external id,
    source identity or duration."""
    name, duration = form.get("RoleSessionName", ""), int(form.get("DurationSeconds", "3600"))
    value = "1 validation error detected: Value '{}' at '{}' failed to satisfy constraint: "
    if not SESSION_CHARS.fullmatch(name):
        return value.format(name, "roleSessionName") + (
            r"Member must satisfy regular expression pattern: [\w+=,.@-]*"
        )
    if len(name) > 64:
        return (
            value.format(name, "roleSessionName")
            + "Member must have length less than or equal to 64"
        )
    external_id = form.get("ExternalId", "ok")
    if not EXTERNAL_ID_CHARS.fullmatch(external_id):
        return value.format(external_id, "externalId") + (
            r"Member must satisfy regular expression pattern: [\w+=,.@:\/-]*"
        )
    identity = form.get("SourceIdentity", "ok")
    if not SESSION_CHARS.fullmatch(identity):
        return value.format(identity, "sourceIdentity") + (
            r"Member must satisfy regular expression pattern: [\w+=,.@-]*"
        )
    if duration > 43200:
        return value.format(duration, "durationSeconds") + (
            "Member must have value less than or equal to 43200"
        )
    return None


def fixed_sts(
    key: str, tls: ssl.SSLContext | None = None, forms: list[dict[str, str]] | None = None
) -> http.server.ThreadingHTTPServer:
    """An STS stand-in on loopback whose every AssumeRole issues access key `key` (and
    AccessDenied for roles named *denied*, STS's ValidationError for values it refuses);
    over TLS with `tls`; each request's form goes to `forms`."""

    def answer(body: str, _authorization: str) -> tuple[int, str]:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
        if forms is not None:
            forms.append(form)
        if "denied" in form.get("RoleArn", ""):
            return 403, DENIED
        refusal = sts_refusal(form)
        if refusal is not None:
            return 400, INVALID.format(message=escape(refusal))
        return 200, FIXED.format(key=key, session=form.get("RoleSessionName", ""))

    return sts_stand_in(answer, tls)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One fixed STS and one real daemon for the module."""
    forms: list[dict[str, str]] = []
    server = fixed_sts(KEY, forms=forms)
    url = f"http://127.0.0.1:{server.server_port}"
    tmp = tmp_path_factory.mktemp("dropin")
    env = base_env(tmp, url)
    env.update(ROLECACHE_NO_AUTOSTART="1", AWS_PAGER="", AWS_EC2_METADATA_DISABLED="true")
    daemon = start_daemon(tmp, env)
    yield World(url, daemon, env, forms)
    daemon.stop()
    server.shutdown()


def aws(
    world: World, version: int, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The real `aws sts assume-role ARGS` of CLI `version`, against the fixed STS, in the
    world's environment with `env` added."""
    # CLI 2.9 predates AWS_ENDPOINT_URL_STS: it is told the endpoint on its command line.
    command = [str(BIN / "aws")] if version == 1 else [str(V2), "--endpoint-url", world.sts_url]
    return subprocess.run(
        [*command, "sts", "assume-role", *args],
        env={**world.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def ours(
    world: World, version: int, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`rolecache sts assume-role ARGS`, copying CLI `version`, with `env` added."""
    env = {**world.env, **(env or {}), "ROLECACHE_CLI_VERSION": str(version)}
    return subprocess.run(
        [str(BIN / "rolecache"), "sts", "assume-role", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("version", [1, 2])
def test_output_is_the_clis_byte_for_byte(world: World, version: int, output: str) -> None:
    """For each output format and query idiom, stdout and the exit status are those of the
    same CLI generation (v1 refuses yaml as a usage error, as v1 does)."""
    for query in QUERIES:
        args = ["--role-arn", ROLE, "--role-session-name", "dropin", "--output", output, *query]
        theirs, mine = aws(world, version, *args), ours(world, version, *args)
        assert mine.returncode == theirs.returncode, (query, theirs.stderr, mine.stderr)
        assert mine.stdout == theirs.stdout, query
        if version == 2 or output not in ("yaml", "yaml-stream"):
            assert theirs.returncode == 0 and theirs.stdout, theirs.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--role-session-name", "s1", "--bogus"],
        ["--role-session-name", "s1", "--output", "xml"],
        [],
        ["--role-session-name", "x"],
        ["--role-session-name", "s1", "--query", "[["],
        ["--role-session-name", "s1", "--duration-seconds", "1h"],
    ],
    ids=["unknown", "bad-output", "missing-session", "short-session", "bad-query", "bad-number"],
)
@pytest.mark.parametrize("version", [1, 2])
def test_mistakes_exit_as_the_cli_does(world: World, version: int, args: list[str]) -> None:
    """Command-line mistakes exit with the status the same CLI generation gives them."""
    full = ["--role-arn", ROLE, *args]
    theirs, mine = aws(world, version, *full), ours(world, version, *full)
    assert theirs.returncode != 0
    assert mine.returncode == theirs.returncode, (theirs.stderr, mine.stderr)
    assert mine.stdout == theirs.stdout == ""


@pytest.mark.parametrize("version", [1, 2])
def test_sts_refusal_exits_as_the_cli_does(world: World, version: int) -> None:
    """AccessDenied from STS: the same exit status (v1 255, v2 254) and error line."""
    args = ["--role-arn", ROLE + "-denied", "--role-session-name", "s1"]
    theirs, mine = aws(world, version, *args), ours(world, version, *args)
    assert theirs.returncode == mine.returncode == {1: 255, 2: 254}[version]
    line = "An error occurred (AccessDenied) when calling the AssumeRole operation: "
    assert line in theirs.stderr and line in mine.stderr


def test_global_options_scripts_pass_are_accepted_and_change_nothing(world: World) -> None:
    """The CLI's global options that mean nothing here are accepted and the bytes are those
    printed without them; --debug adds only stderr lines, none holding a secret."""
    args = ["--role-arn", ROLE, "--role-session-name", "dropin", "--output", "text"]
    plain = ours(world, 2, *args)
    extra = [
        "--no-cli-pager", "--cli-auto-prompt", "--no-cli-auto-prompt", "--no-paginate",
        "--color", "off", "--page-size", "5", "--cli-read-timeout", "5",
        "--cli-connect-timeout=5", "--cli-binary-format", "raw-in-base64-out",
    ]  # fmt: skip
    accepted = ours(world, 2, *args, *extra)
    debug = ours(world, 2, *args, "--debug")
    assert plain.returncode == accepted.returncode == debug.returncode == 0
    assert plain.stdout == accepted.stdout == debug.stdout != ""
    assert "rolecache: debug:" in debug.stderr and "AWS CLI v2" in debug.stderr
    assert "wJalrXUtnFEMI" not in debug.stderr and "IQoJb3JpZ2lu" not in debug.stderr


@pytest.mark.parametrize(
    "option",
    [["--cli-input-json", "{}"], ["--cli-input-yaml", "a: 1"], ["--generate-cli-skeleton"],
     ["--no-sign-request"]],
)  # fmt: skip
def test_options_that_cannot_mean_anything_are_refused(world: World, option: list[str]) -> None:
    """Options asking for input files, skeletons or unsigned requests are refused with a
    message that says why, with the CLI's exit status for an option it refuses."""
    for version, status in ((1, 255), (2, 252)):
        result = ours(world, version, "--role-arn", ROLE, "--role-session-name", "s1", *option)
        assert result.returncode == status
        assert f"{option[0]} is not supported by rolecache" in result.stderr
        assert result.stdout == ""


def test_cli_version_comes_from_the_daemons_setting(tmp_path: Path, world: World) -> None:
    """Without ROLECACHE_CLI_VERSION the daemon's `cli_version` decides: v2's timestamp."""
    config = tmp_path / "rolecached.toml"
    config.write_text("[daemon]\ncli_version = 2\n")
    env = base_env(tmp_path, world.sts_url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    daemon = start_daemon(tmp_path, env, "--config", str(config))
    try:
        args = ["--role-arn", ROLE, "--role-session-name", "s1", "--output", "text"]
        args += ["--query", "Credentials.Expiration"]
        result = subprocess.run(
            [str(BIN / "rolecache"), "sts", "assume-role", *args],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        daemon.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2036-01-01T00:00:00+00:00\n"


def test_v2_is_what_debian_ships() -> None:
    """The v2 the tests compare with really is AWS CLI 2.x, not v1 under another path."""
    version = subprocess.run(
        [str(V2), "--version"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"},
    )  # fmt: skip
    assert version.stdout.startswith("aws-cli/2."), version.stdout
    assert shutil.which("aws") is not None


def test_endpoint_url_picks_the_sts_as_in_the_cli(world: World) -> None:
    """--endpoint-url sends the call to that STS, as the CLI's does (same bytes as v2 given
    the same option), and the answer is cached apart from the default endpoint's."""
    other = fixed_sts("ASIAOTHEROTHER000002")
    try:
        url = f"http://127.0.0.1:{other.server_port}"
        args = ["--role-arn", ROLE, "--role-session-name", "endpoint", "--output", "json"]
        mine = ours(world, 2, "--endpoint-url", url, *args)
        theirs = subprocess.run(
            [str(V2), "--endpoint-url", url, "sts", "assume-role", *args],
            env=world.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        default = ours(world, 2, *args)
    finally:
        other.shutdown()
    assert mine.returncode == theirs.returncode == default.returncode == 0, mine.stderr
    assert mine.stdout == theirs.stdout
    assert json.loads(mine.stdout)["Credentials"]["AccessKeyId"] == "ASIAOTHEROTHER000002"
    assert json.loads(default.stdout)["Credentials"]["AccessKeyId"] == KEY


def test_tls_settings_apply_and_never_share_credentials(world: World, tmp_path: Path) -> None:
    """Against an STS with a self-signed certificate: without its CA the call fails, with
    --ca-bundle it succeeds, with --no-verify-ssl too, and credentials fetched without
    verification are never served to a caller who verifies."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure = fixed_sts("ASIATLSTLSTLS0000003", context)
    url = f"https://127.0.0.1:{secure.server_port}"
    args = ["--endpoint-url", url, "--role-arn", ROLE, "--role-session-name", "tls"]
    query = ["--output", "text", "--query", "Credentials.AccessKeyId"]
    try:
        unverified = ours(world, 1, *args, "--no-verify-ssl", *query)
        refused = ours(world, 1, *args, *query)
        bundled = ours(world, 1, *args, "--ca-bundle", str(cert), *query)
    finally:
        secure.shutdown()
    assert unverified.returncode == 0, unverified.stderr
    assert unverified.stdout == "ASIATLSTLSTLS0000003\n"
    assert refused.returncode != 0 and refused.stdout == ""
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr or "SSL" in refused.stderr
    assert bundled.returncode == 0, bundled.stderr
    assert bundled.stdout == "ASIATLSTLSTLS0000003\n"


def last_line(text: str) -> str:
    """The last line of `text` that holds anything: where both CLIs put what went wrong."""
    return [line for line in text.splitlines() if line.strip()][-1]


@pytest.mark.parametrize("option", ["--role-session-name", "--external-id"])
@pytest.mark.parametrize("version", [1, 2])
def test_help_as_an_options_value_is_a_value(world: World, version: int, option: str) -> None:
    """`help` as an option's value is sent as that value, as the CLI sends it: the same
    output bytes, never the usage text."""
    args = ["--role-arn", ROLE, "--role-session-name", f"help-{option[2:]}", option, "help"]
    args += ["--output", "text"]
    theirs, mine = aws(world, version, *args), ours(world, version, *args)
    assert theirs.returncode == mine.returncode == 0, (theirs.stderr, mine.stderr)
    assert mine.stdout == theirs.stdout
    assert "usage" not in mine.stdout


@pytest.mark.parametrize(
    "args",
    [["help"], ["--role-arn", ROLE, "--role-session-name", "helpword", "help"]],
    ids=["alone", "after-options"],
)
def test_help_as_a_word_of_its_own_prints_usage_and_calls_nothing(
    world: World, args: list[str]
) -> None:
    """`help` where no option takes it prints the drop-in's usage, exits 0, calls nothing."""
    calls = len(world.forms)
    mine = ours(world, 2, *args)
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout.startswith("usage: rolecache sts assume-role")
    assert len(world.forms) == calls


# Mistakes the CLI refuses, with how each is worded on the last line of stderr.
WORDED = {
    "stray": ["--role-session-name", "stray1", "stray"],
    "unknown": ["--role-session-name", "unknown1", "--bogus"],
    "two-arns": ["--role-session-name", "arns1", "--policy-arns", "arn=A,arn=B"],
    "no-policy-file": ["--role-session-name", "file1", "--policy", "file:///nonexistent/p"],
    "bad-name": ["--role-session-name", "bad name!"],
    "long-name": ["--role-session-name", "n" * 65],
    "short-duration": ["--role-session-name", "dur1", "--duration-seconds", "600"],
    "long-duration": ["--role-session-name", "dur2", "--duration-seconds", "50000"],
    "no-profile": ["--role-session-name", "prof1", "--profile", "nonexistent"],
    "bad-external-id": ["--role-session-name", "ext1", "--external-id", "no spaces"],
    "short-external-id": ["--role-session-name", "ext2", "--external-id", "x"],
    "bad-source-identity": ["--role-session-name", "src1", "--source-identity", "a b"],
}


@pytest.mark.parametrize("args", list(WORDED.values()), ids=list(WORDED))
@pytest.mark.parametrize("version", [1, 2])
def test_refusals_are_worded_and_exit_as_the_cli(
    world: World, version: int, args: list[str]
) -> None:
    """What the CLI (or STS behind it) refuses, rolecache refuses with the same exit status
    and the same last line on stderr, nothing on stdout."""
    full = ["--role-arn", ROLE, *args]
    theirs, mine = aws(world, version, *full), ours(world, version, *full)
    assert theirs.returncode not in (0, 1)
    assert mine.returncode == theirs.returncode, (theirs.stderr, mine.stderr)
    assert last_line(mine.stderr) == last_line(theirs.stderr)
    assert mine.stdout == theirs.stdout == ""


@pytest.mark.parametrize(
    ("option", "value", "sent"),
    [
        ("--tags", '[{"Key":"team","Value":"a b"},{"Key":"env","Value":"x"}]', "Tags"),
        ("--policy-arns", '[{"arn":"arn:aws:iam::aws:policy/ReadOnlyAccess"}]', "PolicyArns"),
    ],
)
@pytest.mark.parametrize("version", [1, 2])
def test_json_forms_of_list_options_are_sent_as_the_cli_sends_them(
    world: World, version: int, option: str, value: str, sent: str
) -> None:
    """--tags and --policy-arns in their JSON form: accepted, the same output, and STS
    receives the same list members from rolecache as from the CLI (in any order)."""
    args = ["--role-arn", ROLE, "--role-session-name", f"json{version}{sent}", option, value]
    members = []
    for run in (aws, ours):
        before = len(world.forms)
        result = run(world, version, *args)
        assert result.returncode == 0, result.stderr
        (form,) = world.forms[before:]
        grouped: dict[str, dict[str, str]] = {}
        for name, value in form.items():
            if name.startswith(f"{sent}.member."):
                _, _, number, field = name.split(".")
                grouped.setdefault(number, {})[field] = value
        members.append({tuple(sorted(m.items())) for m in grouped.values()})  # order aside
    assert members[0] == members[1] != set()


OUTPUT_CONFIG = """\
[default]
output = text

[profile tables]
output = table
aws_access_key_id = AKIATABLESPROFILE001
aws_secret_access_key = tables-profile-secret
"""


@pytest.mark.parametrize(
    ("args", "env", "starts"),
    [
        ([], {}, "6\talice-src\n"),  # [default]'s output: text
        (["--profile", "tables"], {}, "---"),  # the named profile's: table
        ([], {"AWS_PROFILE": "tables"}, "---"),
        ([], {"AWS_DEFAULT_OUTPUT": "json"}, "{"),  # the environment over the profile
        (["--output", "yaml"], {"AWS_DEFAULT_OUTPUT": "table"}, "AssumedRoleUser:"),
    ],
    ids=["default", "profile", "aws-profile", "env-over-profile", "option-over-env"],
)
def test_output_follows_the_config_as_in_the_cli(
    world: World, tmp_path: Path, args: list[str], env: dict[str, str], starts: str
) -> None:
    """The output format comes from --output, else AWS_DEFAULT_OUTPUT, else the profile's
    `output` in the config file, else json: the same bytes as the CLI in each case."""
    config = tmp_path / "config"
    config.write_text(OUTPUT_CONFIG)
    env = {**env, "AWS_CONFIG_FILE": str(config)}
    full = ["--role-arn", ROLE, "--role-session-name", "output", *args]
    theirs, mine = aws(world, 2, *full, env=env), ours(world, 2, *full, env=env)
    assert theirs.returncode == mine.returncode == 0, (theirs.stderr, mine.stderr)
    assert mine.stdout == theirs.stdout
    assert mine.stdout.startswith(starts)


def docs_shim() -> str:
    """The `aws` shell function docs/cli.md gives, as a user copies it."""
    text = (Path(__file__).resolve().parent.parent.parent / "docs" / "cli.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.DOTALL)
    (shim,) = [b for b in blocks if b.startswith("aws() {")]
    return shim


def through_shim(world: World, *args: str) -> subprocess.CompletedProcess:
    """`aws ARGS` in bash with the docs' function defined, `rolecache` and the real
    CLI v1 on PATH."""
    env = {**world.env, "PATH": f"{BIN}:/usr/bin:/bin", "ROLECACHE_CLI_VERSION": "1"}
    return subprocess.run(
        ["bash", "-c", docs_shim() + '\naws "$@"', "shim", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_docs_shim_serves_assume_role_after_global_options(world: World) -> None:
    """Global options before `sts assume-role` still reach rolecache (a repeat calls no STS)
    with the CLI's bytes; other commands and options only the CLI acts on go to it."""
    args = ["--role-arn", ROLE, "--role-session-name", "shim", "--query", "Credentials"]
    first = through_shim(
        world, "--output", "text", "--region", "us-east-1", "sts", "assume-role", *args
    )
    assert first.returncode == 0, first.stderr
    calls = len(world.forms)
    again = through_shim(
        world, "--output=text", "--no-cli-pager", "--region=us-east-1", "sts", "assume-role", *args
    )
    assert again.returncode == 0, again.stderr
    assert len(world.forms) == calls  # served from rolecache's cache
    assert again.stdout == first.stdout == aws(world, 1, "--output", "text", *args).stdout
    calls = len(world.forms)
    unsigned = through_shim(world, "--no-sign-request", "sts", "assume-role", *args)
    assert len(world.forms) == calls + 1  # the real CLI called the STS itself
    assert unsigned.stdout != "" and unsigned.returncode == 0, unsigned.stderr
    version = through_shim(world, "--debug", "--version")
    assert version.returncode == 0 and "aws-cli/1." in version.stdout + version.stderr


def test_source_credentials_botocore_refuses_exit_as_the_cli(world: World, tmp_path: Path) -> None:
    """A source profile whose credential_process fails is refused by botocore before any
    call (as an expired SSO token is): the CLI's last line and exit status (255 in both
    generations, not v2's 254 for STS), and no STS call."""
    config = tmp_path / "config"
    config.write_text("[profile broken]\ncredential_process = false\nregion = us-east-1\n")
    env = {"AWS_CONFIG_FILE": str(config)}
    args = ["--role-arn", ROLE, "--role-session-name", "proc1", "--profile", "broken"]
    calls = len(world.forms)
    for version in (1, 2):
        theirs = aws(world, version, *args, env=env)
        mine = ours(world, version, *args, env=env)
        assert theirs.returncode == mine.returncode == 255, (theirs.stderr, mine.stderr)
        assert last_line(mine.stderr) == last_line(theirs.stderr)
    assert len(world.forms) == calls
