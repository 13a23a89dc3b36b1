"""Profile resolution, pure: ~/.aws/config and credentials files written in tmp_path, turned
into chains of role requests by `role_chain` and `select`; `ConfigFiles` re-reading; the
stable session name. No daemon, no STS."""

import pwd
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from rolecached.core.request import RoleRequest
from rolecached.errors import InvalidRequest
from rolecached.sources.awsfiles import AwsConfig, ConfigFiles, ProfileError
from rolecached.sources.profiles import select
from rolecached.sources.rolechain import role_chain, stable_session_name

ACCOUNT = "123456789012"
MFA = f"arn:aws:iam::{ACCOUNT}:mfa/alice"
SESSION_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")
BASE_CREDENTIALS = """\
[base]
aws_access_key_id = AKIABASEPROFILE00001
aws_secret_access_key = base-profile-secret
"""


def arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


@pytest.fixture(autouse=True)
def no_endpoint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's AWS_ENDPOINT_URL(_STS) would win over the files: keep them out."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_STS", raising=False)


class Files:
    """A config and a credentials file in tmp_path, and the requests `select` makes of them."""

    def __init__(self, tmp: Path) -> None:
        self.config = tmp / "aws-config"
        self.credentials = tmp / "aws-credentials"
        self.loader = ConfigFiles()

    def write(self, config: str, credentials: str = BASE_CREDENTIALS) -> "Files":
        self.config.write_text(config)
        self.credentials.write_text(credentials)
        return self

    def load(self) -> AwsConfig:
        return self.loader.load(str(self.config), str(self.credentials))

    def select(self, **body: object) -> RoleRequest:
        full = {
            "config_file": str(self.config),
            "credentials_file": str(self.credentials),
            **body,
        }
        request, _ = select(full, self.loader)
        return request

    def chain(self, profile: str) -> list[dict[str, object]]:
        return role_chain(profile, self.load())


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def hops_of(request: RoleRequest) -> list[RoleRequest]:
    """The hops of a chained request, from the one nearest the long-term credentials."""
    hops = [request]
    while hops[0].source_role is not None:
        hops.insert(0, hops[0].source_role)
    return hops


def profile(name: str, **keys: str) -> str:
    header = "[default]" if name == "default" else f"[profile {name}]"
    return "\n".join([header, *(f"{k} = {v}" for k, v in keys.items())]) + "\n\n"


def expect_error(call: Callable[[], object], *fragments: str) -> ProfileError:
    with pytest.raises(ProfileError) as caught:
        call()
    error = caught.value
    assert error.status == 400
    assert error.code == "ProfileError"
    for fragment in fragments:
        assert fragment in error.message, error.message
    return error


# -- every honoured key -------------------------------------------------------------------


def test_every_honoured_key_of_a_role_profile_reaches_the_request(files):
    """role_arn, role_session_name, external_id, duration_seconds, mfa_serial, region and
    sts_regional_endpoints of a role profile all land in its request, with its source."""
    files.write(
        profile(
            "full",
            role_arn=arn("full"),
            source_profile="base",
            role_session_name="alice-session",
            external_id="ext-id-1234",
            duration_seconds="1800",
            mfa_serial=MFA,
            region="eu-west-1",
            sts_regional_endpoints="regional",
        )
    )
    request = files.select(profile="full")
    assert request == RoleRequest(
        role_arn=arn("full"),
        role_session_name="alice-session",
        duration_seconds=1800,
        external_id="ext-id-1234",
        source_profile="base",
        config_file=str(files.config),
        credentials_file=str(files.credentials),
        mfa_serial=MFA,
        region="eu-west-1",
        sts_regional_endpoints="regional",
    )
    assert request.mfa_session is not None
    assert request.mfa_session.mfa_serial == MFA


def test_credential_source_environment_is_the_hops_source(files):
    """credential_source = Environment makes the daemon's environment the source, with no
    source_profile."""
    files.write(profile("env", role_arn=arn("env"), credential_source="Environment"))
    request = files.select(profile="env")
    assert request.credential_source == "Environment"
    assert request.source_profile is None
    assert request.source_role is None


def test_profile_endpoint_url_is_used_for_sts(files):
    """A profile's endpoint_url is where its AssumeRole call goes."""
    files.write(
        profile("e", role_arn=arn("e"), source_profile="base", endpoint_url="http://sts.local:1")
    )
    assert files.select(profile="e").endpoint_url == "http://sts.local:1"


def test_services_section_sts_endpoint_wins_over_profile_endpoint_url(files):
    """The sts endpoint_url of the profile's services section beats its global endpoint_url,
    as botocore orders them."""
    files.write(
        profile(
            "svc",
            role_arn=arn("svc"),
            source_profile="base",
            services="local-sts",
            endpoint_url="http://global.local:1",
        )
        + "[services local-sts]\nsts =\n  endpoint_url = http://sts-only.local:2\n"
    )
    assert files.select(profile="svc").endpoint_url == "http://sts-only.local:2"


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"])
def test_daemon_endpoint_environment_wins_over_the_files(files, monkeypatch, variable):
    """With AWS_ENDPOINT_URL(_STS) in the daemon's environment, neither the services
    section nor the profile's endpoint_url is put in the request."""
    monkeypatch.setenv(variable, "http://from-env.local:3")
    files.write(
        profile(
            "svc",
            role_arn=arn("svc"),
            source_profile="base",
            services="local-sts",
            endpoint_url="http://global.local:1",
        )
        + "[services local-sts]\nsts =\n  endpoint_url = http://sts-only.local:2\n"
    )
    assert files.select(profile="svc").endpoint_url is None


def test_callers_cannot_set_config_only_fields_next_to_a_profile(files):
    """credential_source and sts_regional_endpoints come only from profiles: a request that
    sends one is refused."""
    files.write(profile("p", role_arn=arn("p"), source_profile="base"))
    for field in ("credential_source", "sts_regional_endpoints"):
        with pytest.raises(InvalidRequest) as caught:
            files.select(profile="p", **{field: "x"})
        assert field in caught.value.message


def test_a_callers_endpoint_and_tls_settings_override_the_profiles(files):
    """The drop-in's --endpoint-url, --ca-bundle and --no-verify-ssl apply to the role asked
    for, over the profile's endpoint, and make a request of their own (another cache key)."""
    files.write(
        profile("p", role_arn=arn("p"), source_profile="base", endpoint_url="http://a.local:1")
    )
    plain = files.select(profile="p")
    other = files.select(
        profile="p", endpoint_url="https://b.local:2", ca_bundle="/etc/ca.pem", verify_ssl=False
    )
    assert plain.endpoint_url == "http://a.local:1" and plain.verify_ssl
    assert other.endpoint_url == "https://b.local:2"
    assert other.ca_bundle == "/etc/ca.pem" and other.verify_ssl is False
    assert other != plain
    for field, value in (("endpoint_url", "x"), ("ca_bundle", "ca.pem"), ("verify_ssl", "no")):
        with pytest.raises(InvalidRequest):
            files.select(profile="p", **{field: value})


# -- chains -------------------------------------------------------------------------------


def test_two_hop_chain_links_hops_through_source_role(files):
    """A role profile sourcing another role profile becomes two requests: the base hop has
    the source_profile and file paths, the top hop is signed by the base hop."""
    files.write(
        profile("first", role_arn=arn("first"), source_profile="base")
        + profile("second", role_arn=arn("second"), source_profile="first")
    )
    first, second = hops_of(files.select(profile="second"))
    assert first.role_arn == arn("first")
    assert first.source_profile == "base"
    assert first.config_file == str(files.config)
    assert first.credentials_file == str(files.credentials)
    assert second.role_arn == arn("second")
    assert second.source_role is first
    assert second.source_profile is None
    assert second.config_file is None and second.credentials_file is None
    # Each hop is named after its own profile, so each is an entry of its own.
    assert first.role_session_name == stable_session_name("first")
    assert second.role_session_name == stable_session_name("second")


def test_three_hop_chain_resolves_hop_by_hop(files):
    """Three role profiles chained onto a static-key profile give three linked hops, nearest
    the long-term credentials first; role_chain lists them in that order too."""
    files.write(
        profile("one", role_arn=arn("one"), source_profile="base")
        + profile("two", role_arn=arn("two"), source_profile="one")
        + profile("three", role_arn=arn("three"), source_profile="two")
    )
    hops = files.chain("three")
    assert [h["role_arn"] for h in hops] == [arn("one"), arn("two"), arn("three")]
    assert hops[0]["source_profile"] == "base"
    assert "source_profile" not in hops[1] and "source_profile" not in hops[2]

    chain = hops_of(files.select(profile="three"))
    assert [h.role_arn for h in chain] == [arn("one"), arn("two"), arn("three")]
    assert chain[0].source_role is None and chain[0].source_profile == "base"
    assert chain[1].source_role is chain[0]
    assert chain[2].source_role is chain[1]


def test_chain_base_may_use_credential_source(files):
    """The base hop of a chain may take its credentials from credential_source."""
    files.write(
        profile("root", role_arn=arn("root"), credential_source="Environment")
        + profile("leaf", role_arn=arn("leaf"), source_profile="root")
    )
    root, leaf = hops_of(files.select(profile="leaf"))
    assert root.credential_source == "Environment" and root.source_profile is None
    assert leaf.source_role is root and leaf.credential_source is None


def test_later_hops_take_the_requested_profiles_region_unless_they_set_one(files):
    """The region of the profile asked for fills hops without a region; a hop's own region
    stays."""
    files.write(
        profile("one", role_arn=arn("one"), source_profile="base", region="us-west-2")
        + profile("two", role_arn=arn("two"), source_profile="one")
        + profile("three", role_arn=arn("three"), source_profile="two", region="eu-west-1")
    )
    one, two, three = hops_of(files.select(profile="three"))
    assert (one.region, two.region, three.region) == ("us-west-2", "eu-west-1", "eu-west-1")


def test_profile_sourcing_itself_with_static_keys_is_one_hop(files):
    """A role profile whose source_profile is itself, with keys of its own, uses those keys:
    one hop, not a loop."""
    files.write(
        profile(
            "selfish",
            role_arn=arn("selfish"),
            source_profile="selfish",
            aws_access_key_id="AKIASELF000000000001",
            aws_secret_access_key="self-secret",
        ),
        credentials="",
    )
    request = files.select(profile="selfish")
    assert request.source_role is None
    assert request.source_profile == "selfish"


def test_source_profile_with_both_keys_and_a_role_is_used_for_its_keys(files):
    """A source profile that has static keys ends the chain even if it also has role_arn,
    as in botocore."""
    files.write(
        profile("mid", role_arn=arn("mid"), source_profile="base")
        + profile("top", role_arn=arn("top"), source_profile="mid"),
        credentials=BASE_CREDENTIALS
        + "[mid]\naws_access_key_id = AKIAMID0000000000001\naws_secret_access_key = s\n",
    )
    request = files.select(profile="top")
    assert request.source_role is None
    assert request.source_profile == "mid"


@pytest.mark.parametrize(
    ("config", "asked", "loop"),
    [
        (
            profile("a", role_arn=arn("a"), source_profile="b")
            + profile("b", role_arn=arn("b"), source_profile="a"),
            "a",
            "a -> b -> a",
        ),
        (
            profile("x", role_arn=arn("x"), source_profile="a")
            + profile("a", role_arn=arn("a"), source_profile="b")
            + profile("b", role_arn=arn("b"), source_profile="c")
            + profile("c", role_arn=arn("c"), source_profile="a"),
            "x",
            "x -> a -> b -> c -> a",
        ),
        (profile("me", role_arn=arn("me"), source_profile="me"), "me", "me -> me"),
    ],
)
def test_source_profile_loops_are_refused_showing_the_loop(files, config, asked, loop):
    """A source_profile loop is a ProfileError that spells the loop out."""
    files.write(config)
    expect_error(lambda: files.select(profile=asked), "source_profile loop", loop)


# -- errors -------------------------------------------------------------------------------


def test_unknown_profile_is_named(files):
    """Asking for a profile that is in neither file names it."""
    files.write(profile("p", role_arn=arn("p"), source_profile="base"))
    expect_error(lambda: files.select(profile="nope"), "'nope'", "not in the AWS config files")


def test_missing_source_profile_target_names_both_profiles(files):
    """A source_profile naming a profile that does not exist names it and the referrer."""
    files.write(profile("p", role_arn=arn("p"), source_profile="ghost"))
    expect_error(lambda: files.select(profile="p"), "'ghost'", "'p'", "does not exist")


def test_missing_source_profile_deep_in_a_chain_names_the_referrer(files):
    """The missing source of a hop further down the chain is reported for that hop."""
    files.write(
        profile("low", role_arn=arn("low"), source_profile="ghost")
        + profile("high", role_arn=arn("high"), source_profile="low")
    )
    expect_error(lambda: files.select(profile="high"), "'ghost'", "'low'", "does not exist")


def test_profile_without_role_arn_is_refused(files):
    """A profile without role_arn (here one with only static keys) cannot be assumed."""
    files.write(profile("plain", region="us-east-1"), credentials=BASE_CREDENTIALS)
    expect_error(lambda: files.select(profile="plain"), "'plain'", "has no role_arn")
    expect_error(lambda: files.select(profile="base"), "'base'", "has no role_arn")


def test_role_profile_without_any_source_is_refused(files):
    """A role profile with neither source_profile nor credential_source says to add one."""
    files.write(profile("lonely", role_arn=arn("lonely")))
    expect_error(
        lambda: files.select(profile="lonely"),
        "'lonely'",
        "neither source_profile nor credential_source",
    )


def test_both_source_profile_and_credential_source_is_refused(files):
    """A profile may name source_profile or credential_source, not both."""
    files.write(
        profile(
            "both", role_arn=arn("both"), source_profile="base", credential_source="Environment"
        )
    )
    expect_error(
        lambda: files.select(profile="both"), "'both'", "both source_profile and credential_source"
    )


@pytest.mark.parametrize("source", ["Ec2InstanceMetadata", "EcsContainer"])
def test_unsupported_credential_source_says_not_supported(files, source):
    """credential_source other than Environment is refused as not supported, by name."""
    files.write(profile("imds", role_arn=arn("imds"), credential_source=source))
    expect_error(lambda: files.select(profile="imds"), "'imds'", source, "not supported")


def test_non_integer_duration_seconds_is_refused(files):
    """duration_seconds that is not a whole number is a ProfileError naming the profile."""
    files.write(profile("d", role_arn=arn("d"), source_profile="base", duration_seconds="1h"))
    expect_error(lambda: files.select(profile="d"), "'d'", "'1h'", "whole number")


def test_chained_hop_longer_than_an_hour_is_refused(files):
    """A chained hop asking for 7200 s fails before any STS call, citing the 3600 s cap of
    role chaining; the same duration on the chain's first hop is fine."""
    files.write(
        profile("first", role_arn=arn("first"), source_profile="base", duration_seconds="7200")
        + profile("second", role_arn=arn("second"), source_profile="first")
        + profile("long", role_arn=arn("long"), source_profile="first", duration_seconds="7200")
    )
    first, second = hops_of(files.select(profile="second"))
    assert first.duration_seconds == 7200 and second.duration_seconds == 3600
    expect_error(lambda: files.select(profile="long"), "'long'", "3600", "role chaining")


def test_chained_hop_flag_duration_over_an_hour_is_refused(files):
    """--duration-seconds 7200 on a chained profile is refused the same way."""
    files.write(
        profile("first", role_arn=arn("first"), source_profile="base")
        + profile("second", role_arn=arn("second"), source_profile="first")
    )
    expect_error(
        lambda: files.select(profile="second", duration_seconds=7200), "3600", "role chaining"
    )


def test_mfa_serial_on_a_chained_hop_is_refused(files):
    """mfa_serial on a hop that is assumed from another role is refused; on the first hop
    of the chain it is kept and opens an MFA session."""
    files.write(
        profile("first", role_arn=arn("first"), source_profile="base", mfa_serial=MFA)
        + profile("second", role_arn=arn("second"), source_profile="first")
        + profile("third", role_arn=arn("third"), source_profile="first", mfa_serial=MFA)
    )
    first, second = hops_of(files.select(profile="second"))
    assert first.mfa_serial == MFA and first.mfa_session is not None
    assert second.mfa_session is None
    expect_error(lambda: files.select(profile="third"), "'third'", "MFA", "first role")


def test_invalid_profile_value_is_reported_with_the_profile_name(files):
    """A value STS would refuse (a malformed role ARN) is a ProfileError naming the profile."""
    files.write(profile("bad", role_arn="arn:aws:iam::12:role/x", source_profile="base"))
    expect_error(lambda: files.select(profile="bad"), "'bad'", "role ARN")


# -- flags next to --profile --------------------------------------------------------------


def test_flags_override_profile_values(files):
    """duration_seconds, role_session_name and external_id given with the profile replace
    the profile's own values."""
    files.write(
        profile(
            "p",
            role_arn=arn("p"),
            source_profile="base",
            duration_seconds="1800",
            role_session_name="from-profile",
            external_id="profile-ext",
        )
    )
    request = files.select(
        profile="p", duration_seconds=2700, role_session_name="from-flag", external_id="flag-ext"
    )
    assert request.duration_seconds == 2700
    assert request.role_session_name == "from-flag"
    assert request.external_id == "flag-ext"
    assert request.role_arn == arn("p")


def test_flags_override_only_the_top_hop_of_a_chain(files):
    """Flags next to a chained profile change the hop asked for, not the hops under it."""
    files.write(
        profile("first", role_arn=arn("first"), source_profile="base", duration_seconds="2000")
        + profile("second", role_arn=arn("second"), source_profile="first")
    )
    first, second = hops_of(files.select(profile="second", duration_seconds=900))
    assert first.duration_seconds == 2000
    assert second.duration_seconds == 900


def test_source_profile_flag_replaces_the_profiles_chain(files):
    """--source-profile next to --profile is the new source: the profile's chain is dropped
    and its role is assumed with that source alone."""
    files.write(
        profile("first", role_arn=arn("first"), source_profile="base")
        + profile("second", role_arn=arn("second"), credential_source="Environment")
        + profile("third", role_arn=arn("third"), source_profile="first"),
        credentials=BASE_CREDENTIALS
        + "[other]\naws_access_key_id = A\naws_secret_access_key = B\n",
    )
    for name in ("second", "third"):
        request = files.select(profile=name, source_profile="other")
        assert request.role_arn == arn(name)
        assert request.source_role is None
        assert request.source_profile == "other"
        assert request.credential_source is None


def test_source_profile_flag_naming_a_role_profile_chains(files):
    """--source-profile naming a role profile assumes that profile's chain first, then the
    role of --role-arn signed by it."""
    files.write(
        profile("first", role_arn=arn("first"), source_profile="base")
        + profile("second", role_arn=arn("second"), source_profile="first")
    )
    request = files.select(
        role_arn=arn("target"), role_session_name="by-flag", source_profile="second"
    )
    first, second, target = hops_of(request)
    assert [first.role_arn, second.role_arn, target.role_arn] == [
        arn("first"),
        arn("second"),
        arn("target"),
    ]
    assert target.source_profile is None
    assert target.role_session_name == "by-flag"
    assert first.source_profile == "base"
    assert first.config_file == str(files.config)


def test_source_profile_flag_naming_a_key_profile_is_one_hop(files):
    """--source-profile naming a profile with static keys is a plain single-hop request."""
    files.write("")
    request = files.select(role_arn=arn("t"), role_session_name="by-flag", source_profile="base")
    assert request.source_role is None
    assert request.source_profile == "base"
    assert request.config_file == str(files.config)


# -- the two files ------------------------------------------------------------------------


def test_credentials_file_keys_are_merged_into_config_profiles(files):
    """A profile's keys from the credentials file join its config-file keys (the credentials
    file winning); a role profile may live in the credentials file alone."""
    files.write(
        profile("base", region="ap-southeast-2")
        + profile("p", role_arn=arn("from-config"), source_profile="base"),
        credentials=BASE_CREDENTIALS
        + f"[p]\nrole_arn = {arn('from-credentials')}\n"
        + f"[creds-only]\nrole_arn = {arn('creds-only')}\nsource_profile = base\n",
    )
    config = files.load()
    assert config.profiles["base"]["region"] == "ap-southeast-2"
    assert config.profiles["base"]["aws_access_key_id"] == "AKIABASEPROFILE00001"
    assert files.select(profile="p").role_arn == arn("from-credentials")
    assert files.select(profile="creds-only").role_arn == arn("creds-only")


def test_static_keys_in_credentials_file_end_a_chain_the_config_alone_would_continue(files):
    """Keys for a role profile in the credentials file make it a key source: the chain stops
    there, as botocore would."""
    files.write(
        profile("mid", role_arn=arn("mid"), source_profile="base")
        + profile("top", role_arn=arn("top"), source_profile="mid"),
        credentials=BASE_CREDENTIALS,
    )
    assert len(hops_of(files.select(profile="top"))) == 2
    files.credentials.write_text(
        BASE_CREDENTIALS + "[mid]\naws_access_key_id = AKIAMID0000000000001\n"
    )
    request = files.select(profile="top")
    assert request.source_role is None and request.source_profile == "mid"


def test_missing_files_hold_no_profiles(tmp_path):
    """Config and credentials files that do not exist are empty, not an error."""
    config = ConfigFiles().load(str(tmp_path / "none"), str(tmp_path / "neither"))
    assert config.profiles == {} and config.services == {}


def test_unparseable_config_is_a_profile_error_naming_the_file(files):
    """A config file botocore cannot parse is reported with its path."""
    files.write("[profile broken\nrole_arn = x\n")
    expect_error(files.load, "cannot parse", str(files.config))


def test_config_files_reread_a_changed_file_and_cache_an_unchanged_one(files):
    """ConfigFiles returns the same object while neither file changed, and re-reads a file
    that was rewritten."""
    files.write(profile("p", role_arn=arn("before"), source_profile="base"))
    first = files.load()
    assert files.load() is first
    assert files.select(profile="p").role_arn == arn("before")

    files.config.write_text(profile("p", role_arn=arn("after-a-longer-name"), source_profile="b"))
    second = files.load()
    assert second is not first
    assert second.profiles["p"]["role_arn"] == arn("after-a-longer-name")
    assert files.load() is second


def test_config_files_reread_a_changed_credentials_file(files):
    """A change to the credentials file alone is picked up too."""
    files.write(profile("p", role_arn=arn("p"), source_profile="base"), credentials="")
    assert "base" not in files.load().profiles
    files.credentials.write_text(BASE_CREDENTIALS)
    assert files.load().profiles["base"]["aws_secret_access_key"] == "base-profile-secret"


def test_config_file_created_after_first_load_is_read(files):
    """A config file that appears after a load found none is read on the next load."""
    assert files.load().profiles == {}
    files.write(profile("late", role_arn=arn("late"), source_profile="base"))
    assert files.select(profile="late").role_arn == arn("late")


def test_same_profile_in_two_config_files_makes_different_cache_keys(tmp_path):
    """Identical profiles read from two different config files never share a cache entry:
    the files are part of every hop's key."""
    text = profile("one", role_arn=arn("one"), source_profile="base") + profile(
        "two", role_arn=arn("two"), source_profile="one"
    )
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    left = Files(tmp_path / "x").write(text).select(profile="two")
    right = Files(tmp_path / "y").write(text).select(profile="two")
    assert left.role_arn == right.role_arn
    assert left != right
    assert left.source_role != right.source_role


def test_default_paths_are_used_when_the_request_names_none(tmp_path, monkeypatch):
    """Without config_file/credentials_file the request reads ~/.aws/config and
    ~/.aws/credentials and records those paths."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text(
        profile("p", role_arn=arn("p"), source_profile="base")
    )
    (tmp_path / ".aws" / "credentials").write_text(BASE_CREDENTIALS)
    request, _ = select({"profile": "p"}, ConfigFiles())
    assert request.config_file == str(tmp_path / ".aws" / "config")
    assert request.credentials_file == str(tmp_path / ".aws" / "credentials")


# -- the stable session name --------------------------------------------------------------


def test_profile_without_session_name_gets_the_same_name_every_call(files):
    """Two requests for a profile without role_session_name are equal: they hit one entry."""
    files.write(profile("p", role_arn=arn("p"), source_profile="base"))
    first = files.select(profile="p")
    second = files.select(profile="p")
    assert first == second
    assert first.role_session_name == stable_session_name("p")
    assert first.role_session_name == stable_session_name("p")


def test_stable_session_name_names_the_user_and_the_profile(monkeypatch):
    """The name is readable in CloudTrail: the local user, '@', the profile."""

    class User:
        pw_name = "alice"

    monkeypatch.setattr(pwd, "getpwuid", lambda uid: User())
    assert stable_session_name("dev-admin") == "alice@dev-admin"


@pytest.mark.parametrize(
    "name",
    ["my profile", "prod/eu*west?", "ünïcødé-prøfile", "tab\there", "x", "p" * 100, "a" * 64],
)
def test_stable_session_name_is_always_valid_for_sts(name):
    """Whatever the profile name, the session name is 2-64 of STS's allowed characters."""
    result = stable_session_name(name)
    assert SESSION_NAME.fullmatch(result), result
    assert result == stable_session_name(name)


def test_stable_session_name_is_valid_for_an_odd_user_name(monkeypatch):
    """A user name with spaces and non-ASCII letters still gives a valid session name, and
    different profiles still get different names."""

    class User:
        pw_name = "Jöhn Smith (admin)"

    monkeypatch.setattr(pwd, "getpwuid", lambda uid: User())
    for name in ("p" * 100, "prod", "dev"):
        assert SESSION_NAME.fullmatch(stable_session_name(name)), stable_session_name(name)
    assert stable_session_name("prod") != stable_session_name("dev")


def test_hundred_character_profile_name_resolves_to_a_valid_request(files):
    """A role profile with a 100-character name resolves; its session name passes STS's
    rules."""
    long_name = "team-" + "x" * 95
    files.write(profile(long_name, role_arn=arn("long"), source_profile="base"))
    request = files.select(profile=long_name)
    assert len(request.role_session_name) <= 64
    assert request.role_session_name == stable_session_name(long_name)
