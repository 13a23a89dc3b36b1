"""Pure parts of the container endpoints: binding validation, listener settings, config
parsing, tokens, the rate limiter, and the client's hand-off variables and renderers."""

import os
from pathlib import Path

import pytest

from rolecache import shells
from rolecache.commands import endpoint
from rolecached import config
from rolecached.core import bindings
from rolecached.core.request import parse_request
from rolecached.endpoints.ratelimit import RateLimiter
from rolecached.endpoints.tokens import ImdsTokens, TokenRing, digest, new_token, parse_ttl
from rolecached.errors import InvalidRequest

ROLE = "arn:aws:iam::123456789012:role/app"
SELECTOR = {"role_arn": ROLE, "role_session_name": "dev"}


def explicit(body: dict) -> tuple:
    """A resolver for explicit fields only (no profile files)."""
    return parse_request(body)


# -- names and specs ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dev", "a", "build-2.x_y", "A" * 64])
def test_valid_names(name: str) -> None:
    """Names of letters, digits and _.- up to 64 characters are accepted."""
    assert bindings.check_name(name) == name


@pytest.mark.parametrize("name", ["", "-dev", ".x", "a/b", "a b", "dev\n", "A" * 65, 3, None])
def test_invalid_names(name: object) -> None:
    """Names that could break a URL path, a file name or the IMDS role listing are refused."""
    with pytest.raises(InvalidRequest, match="endpoint name"):
        bindings.check_name(name)


def test_short_duration_is_refused_with_the_reason() -> None:
    """A binding asking for less than an hour is refused, and the message says why."""
    with pytest.raises(InvalidRequest) as info:
        bindings.parse_spec("dev", {**SELECTOR, "duration_seconds": 900})
    message = info.value.message
    assert "at least 3600 s" in message
    assert "15 min" in message and "25 min" in message


def test_min_ttl_cannot_be_set_on_a_binding() -> None:
    """The endpoint decides the minimum lifetime; a binding that sets one is refused."""
    with pytest.raises(InvalidRequest, match="min_ttl"):
        bindings.parse_spec("dev", {**SELECTOR, "min_ttl": 60})


@pytest.mark.parametrize("options", [{"imds_v1": "yes"}, {"imds_port": -1}, {"imds_port": True}])
def test_bad_options_are_refused(options: dict) -> None:
    """imds_v1 must be a boolean and imds_port a port number."""
    with pytest.raises(InvalidRequest):
        bindings.parse_spec("dev", {**SELECTOR, **options})


def test_resolve_checks_the_resolved_duration() -> None:
    """A selector whose resolved session (from a profile, say) is shorter than 1 h is refused
    with the profile named."""
    spec = bindings.parse_spec("dev", {"profile": "short"})
    with pytest.raises(InvalidRequest, match="from profile 'short'"):
        bindings.resolve(spec, lambda _: parse_request({**SELECTOR, "duration_seconds": 1800}))


def test_resolve_names_the_endpoint_in_selector_errors() -> None:
    """A selector error (a bad role ARN) is reported with the endpoint's name."""
    spec = bindings.parse_spec("dev", {"role_arn": "nope", "role_session_name": "dev"})
    with pytest.raises(InvalidRequest, match="endpoint 'dev': role ARN"):
        bindings.resolve(spec, explicit)


def test_resolve_gives_the_request() -> None:
    """A valid spec resolves to a binding over the same role request as `rolecache env`."""
    binding = bindings.resolve(bindings.parse_spec("dev", SELECTOR), explicit)
    assert binding.request == parse_request(SELECTOR)[0]
    assert binding.request.duration_seconds == 3600


# -- listener settings and config.toml ---------------------------------------------------


def test_endpoints_table_settings_and_bindings() -> None:
    """Scalars of [endpoints] are settings; sub-tables are bindings from the config."""
    settings, specs = bindings.parse_endpoints_table(
        {"port": 9000, "bind": ["127.0.0.1", "::1"], "dev": dict(SELECTOR), "ci": dict(SELECTOR)}
    )
    assert settings.port == 9000 and settings.bind == ("127.0.0.1", "::1")
    assert specs == {"dev": SELECTOR, "ci": SELECTOR}


def test_default_ports_are_per_user_and_fixed() -> None:
    """Without a port setting the container endpoint uses a port derived from the uid (the
    sandbox the next one), so users never share it; a configured port wins."""
    assert bindings.EndpointSettings().ecs_port(sandbox=False, uid=1000) == 12000
    assert bindings.EndpointSettings().ecs_port(sandbox=True, uid=1000) == 12001
    assert bindings.EndpointSettings().ecs_port(sandbox=False, uid=1001) == 12002
    assert bindings.EndpointSettings(port=0).ecs_port(sandbox=False, uid=1000) == 0
    assert bindings.EndpointSettings(port=9711).ecs_port(sandbox=True, uid=1000) == 9711


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"prot": 1}, "unknown setting endpoints.prot"),
        ({"port": "9711"}, "wrong type"),
        ({"port": 70000}, "0-65535"),
        ({"rate_limit": 0}, "positive"),
        ({"bind": ["0.0.0.0"]}, "not a loopback address"),
        ({"bind": ["localhost"]}, "not an IP address"),
        ({"bind": []}, "at least one address"),
    ],
)
def test_bad_endpoint_settings(table: dict, match: str) -> None:
    """Wrong settings are refused with a message naming the key."""
    with pytest.raises(InvalidRequest, match=match):
        bindings.parse_endpoints_table(table)


def test_non_loopback_needs_the_flag() -> None:
    """Listening beyond loopback is possible only with allow_non_loopback = true."""
    settings, _ = bindings.parse_endpoints_table(
        {"bind": ["127.0.0.1", "192.0.2.10"], "allow_non_loopback": True}
    )
    assert bindings.check_addresses(settings.bind, True) == ["192.0.2.10"]


def test_config_file_bindings(tmp_path: Path) -> None:
    """config.toml [endpoints.NAME] tables become resolved bindings; [daemon] still loads."""
    path = tmp_path / "config.toml"
    path.write_text(
        "[daemon]\nidle_ttl = 100\n\n[endpoints]\nport = 0\n\n[endpoints.dev]\n"
        f'role_arn = "{ROLE}"\nrole_session_name = "dev"\nduration_seconds = 7200\n'
        "imds_v1 = true\n"
        'tags = [{Key = "team", Value = "infra"}]\n'
    )
    assert config.load(path).idle_ttl == 100
    loaded = config.load_endpoints(path)
    assert loaded.settings.port == 0
    (binding,) = loaded.bindings
    assert binding.name == "dev" and binding.spec.imds_v1
    assert binding.request.duration_seconds == 7200
    assert binding.request.tags == (("team", "infra"),)


def test_a_bad_binding_is_skipped_naming_the_file(tmp_path: Path) -> None:
    """A binding that breaks a rule is skipped, with file and endpoint named, and the other
    bindings still load; a bad listener setting still makes the config unusable."""
    path = tmp_path / "config.toml"
    path.write_text(
        f'[endpoints.dev]\nrole_arn = "{ROLE}"\nrole_session_name = "x"\n\n'
        f'[endpoints.ok]\nrole_arn = "{ROLE}"\nrole_session_name = "ok"\n\n'
        '[endpoints.gone]\nprofile = "renamed"\n'
    )
    loaded = config.load_endpoints(path)
    assert [b.name for b in loaded.bindings] == ["ok"]
    dev, gone = loaded.skipped
    assert str(path) in dev and "endpoint 'dev'" in dev and "not served" in dev
    assert "'renamed'" in gone and "endpoint 'gone'" in gone
    path.write_text("[endpoints]\nport = 70000\n")
    with pytest.raises(config.ConfigError, match="0-65535"):
        config.load_endpoints(path)


def test_config_without_endpoints(tmp_path: Path) -> None:
    """No file, or no [endpoints] table, means default settings and no bindings."""
    loaded = config.load_endpoints(tmp_path / "absent.toml")
    assert loaded.bindings == [] and loaded.settings == bindings.EndpointSettings()


def test_config_profile_binding_reads_the_aws_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config binding naming a profile is resolved from the AWS config file the daemon's
    environment names."""
    aws = tmp_path / "aws-config"
    aws.write_text(f"[profile app]\nrole_arn = {ROLE}\ncredential_source = Environment\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    path = tmp_path / "config.toml"
    path.write_text('[endpoints.dev]\nprofile = "app"\n')
    (binding,) = config.load_endpoints(path).bindings
    assert binding.request.role_arn == ROLE
    assert binding.request.config_file == str(aws)


# -- tokens -------------------------------------------------------------------------------


def test_new_tokens_are_long_random_and_header_safe() -> None:
    """Tokens carry at least 128 random bits and no CR/LF (botocore refuses those)."""
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert len(token) >= 22  # 22 base64 characters = 132 bits; these are 43 (256 bits)
        assert "\n" not in token and "\r" not in token and token.isascii()


def test_rotation_keeps_the_previous_token_for_the_grace_period() -> None:
    """After rotation the old token works until the grace period ends; the new one always."""
    ring = TokenRing(now=0.0, grace=600.0)
    old = ring.current
    assert ring.valid(old, 1.0)
    ring.rotate(100.0)
    assert ring.current != old
    assert ring.valid(ring.current, 101.0)
    assert ring.valid(old, 699.0)
    assert not ring.valid(old, 700.0)
    assert not ring.valid("guess", 101.0) and not ring.valid("", 101.0)
    assert old not in repr(ring) and ring.current not in repr(ring)


def test_rotation_without_grace_revokes_the_previous_token_at_once() -> None:
    """A revocation (a squatter may have seen the token) leaves the old token no grace."""
    ring = TokenRing(now=0.0, grace=600.0)
    old = ring.current
    ring.rotate(100.0, grace=False)
    assert not ring.valid(old, 100.0) and ring.valid(ring.current, 100.0)


def test_container_token_outlives_rotation_until_replaced() -> None:
    """The container token stays valid through any number of rotations, stops at once when
    replaced, and the ring holds only its digest (the token is in no attribute or repr)."""
    ring = TokenRing(now=0.0, grace=600.0)
    container = ring.new_container_token()
    for day in range(1, 8):
        ring.rotate(day * 86400.0)
    assert ring.valid(container, 8 * 86400.0)
    assert ring.container_digest == digest(container)
    assert container not in repr(ring) and container not in repr(vars(ring))
    fresh = ring.new_container_token()
    assert not ring.valid(container, 8 * 86400.0) and ring.valid(fresh, 8 * 86400.0)
    assert not TokenRing(now=0.0, grace=600.0).valid(fresh, 0.0)


def test_imds_tokens_expire_and_belong_to_one_listener() -> None:
    """An IMDS token is valid at its own listener until its TTL ends, and nowhere else."""
    mine, other = ImdsTokens(), ImdsTokens()
    token = mine.issue(60, now=1000.0)
    assert mine.valid(token, 1059.0)
    assert not mine.valid(token, 1060.0)
    assert not other.valid(token, 1001.0)
    expiry, _, signature = token.partition(".")
    assert not mine.valid(f"{int(expiry) + 100}.{signature}", 1001.0)  # a longer life forged
    for junk in ("", ".", "abc", "1.2.3", "\uff11\uff12.x"):
        assert not mine.valid(junk, 1001.0)


@pytest.mark.parametrize("value", [None, "0", "21601", "-1", "abc", "1.5", "", "²"])
def test_bad_token_ttls(value: str | None) -> None:
    """TTLs outside 1-21600 seconds, or not whole numbers, are refused."""
    with pytest.raises(ValueError):
        parse_ttl(value)


@pytest.mark.parametrize(("value", "ttl"), [("1", 1), ("21600", 21600), (" 60 ", 60)])
def test_good_token_ttls(value: str, ttl: int) -> None:
    """TTLs of 1 to 21600 seconds are accepted."""
    assert parse_ttl(value) == ttl


# -- rate limiter ---------------------------------------------------------------------------


def test_rate_limiter_allows_a_burst_then_refills() -> None:
    """A client gets `burst` requests at once, then `rate` per second; others are unaffected."""
    limiter = RateLimiter(rate=10, burst=5)
    assert [limiter.wait("a", 0.0) for _ in range(5)] == [0.0] * 5
    wait = limiter.wait("a", 0.0)
    assert wait == pytest.approx(0.1)
    assert limiter.wait("b", 0.0) == 0.0
    assert limiter.wait("a", 0.1) == 0.0
    assert limiter.wait("a", 0.1) > 0


def test_rate_limiter_memory_is_bounded() -> None:
    """A flood of distinct client keys does not grow the limiter without bound."""
    limiter = RateLimiter(rate=1, burst=1, max_keys=100)
    for i in range(10_000):
        limiter.wait(f"client-{i}", 0.0)
    assert len(limiter._buckets) <= 100


# -- the client's hand-off --------------------------------------------------------------------

INFO = {
    "ecs_url": "http://127.0.0.1:9711/v1/credentials/dev",
    "token_file": "/run/user/1000/rolecache/rolecache-tokens/dev/token",
    "container_token_file": "/run/user/1000/rolecache/rolecache-tokens/dev/container-token",
    "imds_url": "http://127.0.0.1:41234/",
}


def test_container_handoff_variables(tmp_path: Path) -> None:
    """The container hand-off sets the full URI, the token file and the container token read
    from its file, and unsets everything that would win over them (static keys, profiles,
    the relative URI)."""
    container = tmp_path / "container-token"
    container.write_text("the-container-token")
    info = {**INFO, "container_token_file": str(container)}
    variables, unset = endpoint.handoff(info, False, {})
    assert variables == {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": INFO["ecs_url"],
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": INFO["token_file"],
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "the-container-token",
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ):
        assert name in unset
    assert not set(variables) & set(unset)


def test_imds_handoff_merges_no_proxy() -> None:
    """The IMDS hand-off adds the listener's host to NO_PROXY and no_proxy, keeping what was
    there."""
    environ = {"NO_PROXY": "example.com, .corp", "no_proxy": "internal"}
    variables, unset = endpoint.handoff(INFO, True, environ)
    assert variables["AWS_EC2_METADATA_SERVICE_ENDPOINT"] == "http://127.0.0.1:41234/"
    assert variables["NO_PROXY"] == "example.com,.corp,internal,127.0.0.1"
    assert variables["no_proxy"] == variables["NO_PROXY"]
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in unset and "AWS_EC2_METADATA_DISABLED" in unset
    already, _ = endpoint.handoff(INFO, True, {"NO_PROXY": "127.0.0.1"})
    assert already["NO_PROXY"] == "127.0.0.1"


def test_env_file_lines_are_docker_env_file_format(tmp_path: Path) -> None:
    """--env-file output is KEY=VALUE lines without quotes; a value with a newline is refused."""
    container = tmp_path / "container-token"
    container.write_text("the-container-token")
    info = {**INFO, "container_token_file": str(container)}
    variables, _ = endpoint.handoff(info, False, {})
    text = shells.env_file_lines(variables)
    assert text.splitlines() == [f"{k}={v}" for k, v in variables.items()]
    with pytest.raises(ValueError):
        shells.env_file_lines({"X": "a\nb"})


@pytest.mark.parametrize(
    ("shell", "unset_line", "set_line"),
    [
        ("bash", "unset AWS_PROFILE", "export X='it'\\''s'"),
        ("fish", "set -e AWS_PROFILE;", "set -gx X 'it\\'s';"),
        (
            "powershell",
            "Remove-Item Env:AWS_PROFILE -ErrorAction SilentlyContinue",
            "$Env:X = 'it''s'",
        ),
    ],
)
def test_export_lines_per_shell(shell: str, unset_line: str, set_line: str) -> None:
    """Export lines unset then set, quoted for each shell."""
    text = shells.export_lines({"X": "it's"}, ("AWS_PROFILE",), shell)
    assert text.splitlines() == [unset_line, set_line]


def test_export_lines_work_in_bash() -> None:
    """bash evaluating the export lines ends up with the variables set and the others unset."""
    import subprocess

    variables, unset = endpoint.handoff(INFO, True, {"NO_PROXY": "a b'c"})
    script = shells.export_lines(variables, unset) + 'printf "%s|%s|%s" "$NO_PROXY" '
    script += '"${AWS_PROFILE-unset}" "$AWS_EC2_METADATA_SERVICE_ENDPOINT"'
    env = dict(os.environ, AWS_PROFILE="someone")
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True).stdout
    assert out == "a b'c,127.0.0.1|unset|http://127.0.0.1:41234/"
