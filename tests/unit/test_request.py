"""parse_request: every AssumeRole shape rule STS documents, at its boundaries, and the
cache key a parsed request makes (what separates two entries and what does not)."""

import re
from typing import Any

import pytest

from rolecache.protocol import DEFAULT_MIN_TTL, REQUEST_FIELDS
from rolecached.core.request import RoleRequest, parse_request
from rolecached.errors import InvalidRequest

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/deploy"
ROLE_PREFIX = f"arn:aws:iam::{ACCOUNT}:role/"
POLICY_ARN = "arn:aws:iam::aws:policy/ReadOnlyAccess"
POLICY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'


def body(**fields: Any) -> dict[str, Any]:
    """A valid request body with `fields` added or replaced."""
    return {"role_arn": ROLE, "role_session_name": "alice", **fields}


def parse(**fields: Any) -> RoleRequest:
    """The role request of a valid body with `fields` added or replaced."""
    request, _ = parse_request(body(**fields))
    return request


def rejects(message: str, **fields: Any) -> None:
    """Assert that the body with `fields` is refused with an error containing `message`."""
    with pytest.raises(InvalidRequest, match=re.escape(message)) as info:
        parse_request(body(**fields))
    assert info.value.status == 400
    assert info.value.code == "InvalidRequest"


def tag(key: str, value: str = "v") -> dict[str, str]:
    return {"Key": key, "Value": value}


# -- the body as a whole -----------------------------------------------------------------


def test_minimal_request_gets_the_defaults() -> None:
    """A body with only the two required fields gets a 3600 s session and a 300 s min_ttl."""
    request, min_ttl = parse_request({"role_arn": ROLE, "role_session_name": "alice"})
    assert request == RoleRequest(role_arn=ROLE, role_session_name="alice")
    assert request.duration_seconds == 3600
    assert min_ttl == DEFAULT_MIN_TTL == 300
    assert request.account_id == ACCOUNT


def test_every_field_lands_in_its_place() -> None:
    """A body using every field maps each one onto the matching RoleRequest attribute."""
    request, min_ttl = parse_request(
        {
            "role_arn": ROLE,
            "role_session_name": "alice",
            "duration_seconds": 7200,
            "external_id": "ext-123",
            "policy": POLICY,
            "policy_arns": [POLICY_ARN],
            "tags": [tag("Team", "infra")],
            "transitive_tag_keys": ["Team"],
            "source_identity": "alice@example.com",
            "source_profile": "work",
            "region": "eu-west-1",
            "min_ttl": 600,
        }
    )
    assert request == RoleRequest(
        role_arn=ROLE,
        role_session_name="alice",
        duration_seconds=7200,
        external_id="ext-123",
        policy=POLICY,
        policy_arns=(POLICY_ARN,),
        tags=(("Team", "infra"),),
        transitive_tag_keys=("Team",),
        source_identity="alice@example.com",
        source_profile="work",
        region="eu-west-1",
    )
    assert min_ttl == 600


@pytest.mark.parametrize("value", [[], [ROLE], "role", 3600, 1.5, True, None])
def test_non_object_bodies_are_rejected(value: object) -> None:
    """A JSON body that is not an object (list, string, number, boolean, null) is refused."""
    with pytest.raises(InvalidRequest, match="must be a JSON object"):
        parse_request(value)


@pytest.mark.parametrize("field", ["session_name", "RoleArn", "DurationSeconds", "mfa", ""])
def test_unknown_fields_are_rejected_by_name(field: str) -> None:
    """A field outside the protocol is refused and named, with the allowed fields listed."""
    with pytest.raises(InvalidRequest, match=f"unknown field {field!r}") as info:
        parse_request(body(**{field: "x"}))
    assert all(name in info.value.message for name in REQUEST_FIELDS)


@pytest.mark.parametrize(
    "value",
    [
        {"role_session_name": "alice"},
        {"role_arn": ROLE},
        {},
        {"role_arn": None, "role_session_name": "alice"},
        {"role_arn": ROLE, "role_session_name": None},
    ],
)
def test_role_arn_and_session_name_are_required(value: dict[str, Any]) -> None:
    """A body missing role_arn or role_session_name (or giving null) is refused."""
    with pytest.raises(InvalidRequest, match="role_arn and role_session_name are both required"):
        parse_request(value)


@pytest.mark.parametrize(
    "field",
    [
        "role_arn",
        "role_session_name",
        "external_id",
        "policy",
        "source_identity",
        "source_profile",
        "region",
    ],
)
@pytest.mark.parametrize("value", [123, True, ["x"], {"x": "y"}])
def test_string_fields_refuse_other_types(field: str, value: object) -> None:
    """Every string field refuses numbers, booleans, lists and objects, naming the field."""
    rejects(f"{field} must be a string", **{field: value})


@pytest.mark.parametrize("field", ["policy_arns", "transitive_tag_keys"])
@pytest.mark.parametrize("value", [POLICY_ARN, 1, {"a": "b"}, [1], [POLICY_ARN, None], [["x"]]])
def test_list_fields_refuse_anything_but_lists_of_strings(field: str, value: object) -> None:
    """policy_arns and transitive_tag_keys must be lists of strings."""
    rejects(f"{field} must be a list of strings", **{field: value})


# -- role ARN --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arn",
    [
        ROLE,
        f"{ROLE_PREFIX}x",
        f"{ROLE_PREFIX}service-role/deploy",
        f"{ROLE_PREFIX}a/b/c/deploy",
        f"{ROLE_PREFIX}Name+With=All,The.Allowed@Chars_-9",
        f"{ROLE_PREFIX}{'r' * 64}",
        f"arn:aws-cn:iam::{ACCOUNT}:role/deploy",
        f"arn:aws-us-gov:iam::{ACCOUNT}:role/deploy",
        f"arn:aws-iso:iam::{ACCOUNT}:role/deploy",
        f"arn:aws-iso-b:iam::{ACCOUNT}:role/deploy",
        "arn:aws:iam::000000000000:role/deploy",
    ],
)
def test_valid_role_arns_are_accepted(arn: str) -> None:
    """Role ARNs of every partition, with or without a path, are accepted unchanged."""
    assert parse(role_arn=arn).role_arn == arn


def test_role_arn_of_exactly_2048_characters_is_accepted() -> None:
    """A role ARN at the 2048-character maximum (a long path) is accepted."""
    arn = ROLE_PREFIX + "p" * (2048 - len(ROLE_PREFIX) - len("/deploy")) + "/deploy"
    assert len(arn) == 2048
    assert parse(role_arn=arn).role_arn == arn


def test_role_arn_of_2049_characters_is_rejected() -> None:
    """A role ARN one character over 2048 is refused even though its shape is right."""
    arn = ROLE_PREFIX + "p" * (2049 - len(ROLE_PREFIX) - len("/deploy")) + "/deploy"
    assert len(arn) == 2049
    rejects("role ARN", role_arn=arn)


@pytest.mark.parametrize(
    "arn",
    [
        "",
        "deploy",
        "arn:aws:iam::",  # under 20 characters
        "arn:aws:iam::1:role/x",
        ROLE + "\n",
        " " + ROLE,
        ROLE.upper(),
        "arn:aws:iam::aws:policy/ReadOnlyAccess",  # a managed policy given as the role
        f"arn:aws:iam::{ACCOUNT}:policy/deploy",
        f"arn:aws:iam::{ACCOUNT}:user/alice",
        f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/alice",
        f"arn:aws:iam::{ACCOUNT}:role/",
        f"arn:aws:iam::{ACCOUNT}:role/path/",
        f"arn:aws:iam::{ACCOUNT}:role/{'r' * 65}",
        f"arn:aws:iam::{ACCOUNT}:role/with space",
        f"arn:aws:iam::{ACCOUNT}:role/star*",
        f"arn:aws:iam::{ACCOUNT}:role/d\u00e9ploy",
        "arn:aws:iam::12345678901:role/deploy",  # 11 digits
        "arn:aws:iam::1234567890123:role/deploy",  # 13 digits
        "arn:aws:iam::12345678901a:role/deploy",
        "arn:aws:iam::\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19\uff10\uff11\uff12"
        ":role/deploy",  # full-width digits
        "arn:aws:iam:::role/deploy",
        f"arn:aws:iam:us-east-1:{ACCOUNT}:role/deploy",
        f"arn:azure:iam::{ACCOUNT}:role/deploy",
        f"arn:aws:s3::{ACCOUNT}:role/deploy",
    ],
)
def test_invalid_role_arns_are_rejected(arn: str) -> None:
    """Anything but arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME is refused before STS."""
    rejects("role ARN", role_arn=arn)


def test_role_arn_error_shows_a_long_arn_cut_short() -> None:
    """The error for a huge bad ARN quotes only its start, so the message stays readable."""
    with pytest.raises(InvalidRequest) as info:
        parse_request(body(role_arn="x" * 5000))
    assert "..." in info.value.message
    assert len(info.value.message) < 300


# -- role session name -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["ab", "a" * 64, "user+tag=1,x.y@corp-z_Q", "0123456789", "--", "@."]
)
def test_valid_session_names_are_accepted(name: str) -> None:
    """Session names of 2 to 64 characters of [A-Za-z0-9_+=,.@-] are accepted."""
    assert parse(role_session_name=name).role_session_name == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "too short"),
        ("a", "too short"),
        ("a" * 65, "too long"),
        ("a" * 300, "too long"),
        ("with space", "invalid"),
        ("bob/alice", "invalid"),
        ("bob:alice", "invalid"),
        ("b\u00f8b", "invalid"),
        ("tab\there", "invalid"),
        ("new\nline", "invalid"),
        ("star*", "invalid"),
        ("\u0661\u0662\u0663", "invalid"),  # Arabic-Indic digits are not [0-9]
    ],
)
def test_invalid_session_names_name_the_rule(name: str, problem: str) -> None:
    """A bad session name is refused with what is wrong and the 2-to-64 rule spelled out."""
    rejects(f"is {problem}: 2 to 64 characters of [A-Za-z0-9_+=,.@-]", role_session_name=name)


# -- duration ----------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [900, 901, 3600, 43199, 43200])
def test_durations_in_range_are_accepted(seconds: int) -> None:
    """Durations from 900 to 43200 seconds inclusive are accepted."""
    assert parse(duration_seconds=seconds).duration_seconds == seconds


def test_null_duration_means_the_default() -> None:
    """A null duration_seconds is the same as leaving it out: 3600 s."""
    assert parse(duration_seconds=None).duration_seconds == 3600


@pytest.mark.parametrize("seconds", [899, 43201, 0, -1, -3600, 10**12])
def test_durations_out_of_range_are_rejected(seconds: int) -> None:
    """Durations under 900 or over 43200 seconds are refused with the range in the message."""
    rejects("out of range: 900 to 43200 seconds", duration_seconds=seconds)


@pytest.mark.parametrize("field", ["duration_seconds", "min_ttl"])
@pytest.mark.parametrize("value", [True, False, "3600", 3600.0, 1e3, [3600], {"s": 3600}])
def test_integer_fields_refuse_booleans_strings_and_floats(field: str, value: object) -> None:
    """Integer fields accept only JSON integers: not booleans, strings, floats or containers."""
    rejects(f"{field} must be an integer number of seconds", **{field: value})


# -- external id -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["ab", "x" * 1224, "a_b+=,.@:/-Z9", "arn:aws:iam::1:x/y"])
def test_valid_external_ids_are_accepted(value: str) -> None:
    """External ids of 2 to 1224 characters of [\\w+=,.@:/-] are accepted."""
    assert parse(external_id=value).external_id == value


@pytest.mark.parametrize(
    "value", ["", "a", "x" * 1225, "has space", "semi;colon", "a*b", "\u00fcber", "a\nb"]
)
def test_invalid_external_ids_are_rejected(value: str) -> None:
    """External ids too short, too long or with other characters are refused."""
    rejects("external id", external_id=value)


# -- session policy and policy ARNs ------------------------------------------------------


def test_policy_of_exactly_2048_characters_is_accepted() -> None:
    """A JSON session policy of exactly 2048 characters is accepted."""
    policy = '{"Version":"2012-10-17"' + " " * (2048 - 24) + "}"
    assert len(policy) == 2048
    assert parse(policy=policy).policy == policy


def test_policy_over_2048_characters_is_rejected() -> None:
    """A session policy of 2049 characters is refused with its size in the message."""
    policy = '{"Version":"2012-10-17"' + " " * (2049 - 24) + "}"
    rejects("session policy is 2049 characters: at most 2048", policy=policy)


@pytest.mark.parametrize(
    "policy", ["", "{not json", "{'Version': '2012-10-17'}", '{"Version": "2012-10-17"', "[" * 2000]
)
def test_policy_that_is_not_json_is_rejected(policy: str) -> None:
    """A session policy that does not parse as JSON (or is absurdly nested) is refused."""
    rejects("session policy is not valid JSON", policy=policy)


def test_ten_policy_arns_are_accepted() -> None:
    """Up to ten managed policy ARNs are accepted."""
    arns = [f"arn:aws:iam::{ACCOUNT}:policy/p{i}" for i in range(10)]
    assert parse(policy_arns=arns).policy_arns == tuple(sorted(arns))


def test_eleven_policy_arns_are_rejected() -> None:
    """Eleven managed policy ARNs are refused."""
    arns = [f"arn:aws:iam::{ACCOUNT}:policy/p{i}" for i in range(11)]
    rejects("11 policy ARNs given: at most 10", policy_arns=arns)


@pytest.mark.parametrize(
    "arn",
    [
        POLICY_ARN,
        f"arn:aws:iam::{ACCOUNT}:policy/team/ReadOnly",
        f"arn:aws-cn:iam::{ACCOUNT}:policy/p",
        "arn:aws-us-gov:iam::aws:policy/ReadOnlyAccess",
    ],
)
def test_valid_policy_arns_are_accepted(arn: str) -> None:
    """AWS-managed and customer-managed policy ARNs of any partition are accepted."""
    assert parse(policy_arns=[arn]).policy_arns == (arn,)


@pytest.mark.parametrize(
    "arn",
    [ROLE, "ReadOnlyAccess", "arn:aws:iam::amazon:policy/x", "arn:aws:iam::aws:policy/", ""],
)
def test_invalid_policy_arns_are_rejected(arn: str) -> None:
    """A role ARN, a bare name or a malformed ARN in policy_arns is refused."""
    rejects("policy ARN", policy_arns=[arn])


# -- tags --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("k", ""),
        ("K" * 128, "v" * 256),
        ("cost center", "team a"),
        ("_.:/=+-@", "_.:/=+-@"),
        ("\u00c9quipe", "Z\u00fcrich"),
        ("\u90e8\u7f72", "\u958b\u767a"),
        ("nbsp\u00a0key", "ideographic\u3000space"),
        ("digits\u0661", "\u2167"),  # Unicode digits and numerals are \p{N}
    ],
)
def test_valid_tags_are_accepted(key: str, value: str) -> None:
    """Tag keys of 1-128 and values of 0-256 letters, digits, spaces and _.:/=+-@ pass."""
    assert parse(tags=[tag(key, value)]).tags == ((key, value),)


def test_tag_value_may_be_left_out() -> None:
    """A tag object without "Value" gets the empty value."""
    assert parse(tags=[{"Key": "Team"}]).tags == (("Team", ""),)


def test_fifty_tags_are_accepted() -> None:
    """Fifty session tags are accepted."""
    assert len(parse(tags=[tag(f"k{i}") for i in range(50)]).tags) == 50


def test_fifty_one_tags_are_rejected() -> None:
    """Fifty-one session tags are refused."""
    rejects("51 tags given: at most 50", tags=[tag(f"k{i}") for i in range(51)])


@pytest.mark.parametrize("key", ["", "K" * 129])
def test_tag_keys_outside_1_to_128_characters_are_rejected(key: str) -> None:
    """An empty tag key, or one of 129 characters, is refused."""
    rejects("must be 1 to 128 characters", tags=[tag(key)])


def test_tag_value_over_256_characters_is_rejected() -> None:
    """A tag value of 257 characters is refused."""
    rejects("has a value over 256 characters", tags=[tag("Team", "v" * 257)])


@pytest.mark.parametrize(
    "text",
    [
        *["a*b", "a#b", "a!b", "a$b", "a,b", "a;b"],  # punctuation outside _.:/=+-@
        *["a\tb", "a\nb", "a\rb", "a\x0bb", "a\x1fb", "a\x85b", "a\x00b"],  # controls
        "\u00e9\u0301",  # a combining mark (\p{M})
        "smile\U0001f600",  # a symbol (\p{S})
    ],
)
@pytest.mark.parametrize("where", ["key", "value"])
def test_tag_text_with_characters_sts_refuses_is_rejected(text: str, where: str) -> None:
    """Tag keys and values with punctuation, control characters or symbols STS refuses
    (its pattern is [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]) are refused before any STS call."""
    bad = tag(text, "v") if where == "key" else tag("Team", text)
    rejects("contains a character STS refuses", tags=[bad])


@pytest.mark.parametrize(
    "tags",
    [
        [tag("Team", "a"), tag("Team", "b")],
        [tag("Team", "a"), tag("team", "a")],
        [tag("COST", "1"), tag("x"), tag("cost", "2")],
    ],
)
def test_duplicate_tag_keys_are_rejected_case_insensitively(tags: list[dict[str, str]]) -> None:
    """Two tags whose keys differ only in case are refused: STS treats them as one key."""
    rejects("is given twice (keys are case-insensitive)", tags=tags)


@pytest.mark.parametrize("value", [{"Team": "infra"}, "Team=infra", 1, True])
def test_tags_that_are_not_a_list_are_rejected(value: object) -> None:
    """tags must be a list."""
    rejects('tags must be a list of {"Key": ..., "Value": ...} objects', tags=value)


@pytest.mark.parametrize(
    "item",
    [
        "Team=infra",
        ["Team", "infra"],
        None,
        {},
        {"Value": "infra"},
        {"key": "Team", "value": "infra"},
        {"Key": "Team", "Value": "infra", "Extra": "x"},
    ],
)
def test_malformed_tag_objects_are_rejected(item: object) -> None:
    """Each tag must be an object with "Key" and optionally "Value", nothing else."""
    rejects('each tag must be an object {"Key": ..., "Value": ...}', tags=[item])


@pytest.mark.parametrize(
    "item", [{"Key": 1, "Value": "v"}, {"Key": "Team", "Value": None}, {"Key": "T", "Value": 5}]
)
def test_tag_keys_and_values_must_be_strings(item: dict[str, object]) -> None:
    """A tag key or value that is not a string is refused."""
    rejects("tag keys and values must be strings", tags=[item])


# -- transitive tag keys -----------------------------------------------------------------


@pytest.mark.parametrize("keys", [["Team"], ["team"], ["TEAM", "Project"], []])
def test_transitive_keys_among_the_tags_are_accepted(keys: list[str]) -> None:
    """Transitive tag keys that name session tags (in any case) are accepted."""
    request = parse(tags=[tag("Team"), tag("Project")], transitive_tag_keys=keys)
    assert request.transitive_tag_keys == tuple(sorted(keys))


@pytest.mark.parametrize(
    ("tags", "keys"),
    [([tag("Team")], ["Project"]), ([], ["Team"]), ([tag("Team")], ["Team", "Tea"])],
)
def test_transitive_keys_not_among_the_tags_are_rejected(
    tags: list[dict[str, str]], keys: list[str]
) -> None:
    """A transitive tag key that is not one of the session tags is refused."""
    rejects("is not one of the session tags", tags=tags, transitive_tag_keys=keys)


# -- source identity ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["ab", "x" * 64, "alice@example.com", "a_b+=,.@-", "awsome"])
def test_valid_source_identities_are_accepted(value: str) -> None:
    """Source identities of 2 to 64 characters of [\\w+=,.@-] are accepted."""
    assert parse(source_identity=value).source_identity == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a",
        "x" * 65,
        "aws:admin",
        "AWS:admin",
        "Aws:x",
        "has space",
        "a/b",
        "a:b",
        "\u00e9t\u00e9",
    ],
)
def test_invalid_source_identities_are_rejected(value: str) -> None:
    """Source identities that are too short, too long, start with aws: or hold other
    characters are refused."""
    rejects("source identity", source_identity=value)


# -- source profile and region -----------------------------------------------------------


@pytest.mark.parametrize("value", ["default", "work-admin", "prod.eu", "a" * 128, "x"])
def test_valid_source_profiles_are_accepted(value: str) -> None:
    """Profile names of 1 to 128 characters without spaces or brackets are accepted."""
    assert parse(source_profile=value).source_profile == value


@pytest.mark.parametrize(
    "value", ["", "has space", "[profile x]", "a]", "a" * 129, "tab\t", "new\nline"]
)
def test_invalid_source_profiles_are_rejected(value: str) -> None:
    """Empty, over-long, or profile names with whitespace or brackets are refused."""
    rejects("source profile", source_profile=value)


@pytest.mark.parametrize(
    "region",
    [
        *["us-east-1", "eu-central-1", "ap-southeast-2", "us-gov-west-1", "cn-north-1"],
        *["il-central-1", "us-isob-east-1", "me-south-1", "ap-northeast-10"],
    ],
)
def test_valid_regions_are_accepted(region: str) -> None:
    """Region names shaped like AWS's (xx-name-N) are accepted."""
    assert parse(region=region).region == region


@pytest.mark.parametrize(
    "region",
    [
        *["", "US-EAST-1", "us-east", "useast1", "us-east-1a", "us_east_1", "us-east-123"],
        *[" us-east-1", "us-east-1\n", "global", "u-east-1"],
    ],
)
def test_invalid_regions_are_rejected(region: str) -> None:
    """Anything not shaped like an AWS region name (including AZ names) is refused."""
    rejects("region", region=region)


# -- min_ttl -----------------------------------------------------------------------------


@pytest.mark.parametrize("duration", [900, 3600, 43200])
def test_min_ttl_defaults_to_five_minutes(duration: int) -> None:
    """Without min_ttl, served credentials must have at least 300 s left."""
    _, min_ttl = parse_request(body(duration_seconds=duration))
    assert min_ttl == 300


@pytest.mark.parametrize(("duration", "min_ttl"), [(900, 0), (900, 899), (3600, 3599)])
def test_min_ttl_from_zero_to_below_the_duration_is_accepted(duration: int, min_ttl: int) -> None:
    """min_ttl from 0 up to one second below the duration is accepted."""
    _, got = parse_request(body(duration_seconds=duration, min_ttl=min_ttl))
    assert got == min_ttl


@pytest.mark.parametrize(
    ("duration", "min_ttl"), [(900, -1), (900, 900), (900, 901), (3600, 3600), (None, 3600)]
)
def test_impossible_min_ttl_is_rejected(duration: int | None, min_ttl: int) -> None:
    """A negative min_ttl, or one not below the session's duration, is refused."""
    rejects("is impossible for a", duration_seconds=duration, min_ttl=min_ttl)


# -- the cache key -----------------------------------------------------------------------

FULL = body(
    duration_seconds=7200,
    external_id="ext-123",
    policy=POLICY,
    policy_arns=[POLICY_ARN, f"arn:aws:iam::{ACCOUNT}:policy/team"],
    tags=[tag("Team", "infra"), tag("Project", "x")],
    transitive_tag_keys=["Team"],
    source_identity="alice",
    source_profile="work",
    region="eu-west-1",
)

ONE_FIELD_CHANGES = {
    "role_arn": f"arn:aws:iam::{ACCOUNT}:role/other",
    "role_session_name": "bob",
    "duration_seconds": 7201,
    "external_id": "ext-124",
    "policy": POLICY.replace("s3:*", "s3:Get*"),
    "policy_arns": [POLICY_ARN],
    "tags": [tag("Team", "infra"), tag("Project", "y")],
    "transitive_tag_keys": ["Project"],
    "source_identity": "bob",
    "source_profile": "home",
    "region": "eu-west-2",
}


@pytest.mark.parametrize("field", sorted(ONE_FIELD_CHANGES))
def test_requests_differing_in_one_field_are_different_keys(field: str) -> None:
    """Changing any single field of a request makes a different cache key."""
    base, _ = parse_request(FULL)
    other, _ = parse_request({**FULL, field: ONE_FIELD_CHANGES[field]})
    assert other != base
    assert hash(other) != hash(base)


@pytest.mark.parametrize(
    "field", sorted(set(ONE_FIELD_CHANGES) - {"role_arn", "role_session_name"})
)
def test_leaving_out_an_optional_field_is_a_different_key(field: str) -> None:
    """A request without one optional field is not the same entry as one with it."""
    base, _ = parse_request(FULL)
    without = {k: v for k, v in FULL.items() if k != field}
    if field == "tags":
        without.pop("transitive_tag_keys")
    other, _ = parse_request(without)
    assert other != base


def test_every_one_field_variant_is_its_own_key() -> None:
    """All the one-field variants and the base are pairwise distinct cache keys."""
    variants = {parse_request({**FULL, f: v})[0] for f, v in ONE_FIELD_CHANGES.items()}
    variants.add(parse_request(FULL)[0])
    assert len(variants) == len(ONE_FIELD_CHANGES) + 1


def test_tag_case_is_part_of_the_key() -> None:
    """Tags that differ only in the case of a key or value are different entries."""
    assert parse(tags=[tag("Team", "a")]) != parse(tags=[tag("team", "a")])
    assert parse(tags=[tag("Team", "a")]) != parse(tags=[tag("Team", "A")])


def test_order_of_tags_policy_arns_and_transitive_keys_does_not_matter() -> None:
    """Reordering tags, policy ARNs or transitive tag keys gives the same cache key."""
    reordered = {
        **FULL,
        "policy_arns": list(reversed(FULL["policy_arns"])),
        "tags": list(reversed(FULL["tags"])),
    }
    assert parse_request(reordered)[0] == parse_request(FULL)[0]
    a = parse(tags=[tag("A"), tag("B")], transitive_tag_keys=["A", "B"])
    b = parse(tags=[tag("B"), tag("A")], transitive_tag_keys=["B", "A"])
    assert a == b and hash(a) == hash(b)


def test_repeated_policy_arns_do_not_make_a_new_key() -> None:
    """Listing a policy ARN twice is the same request as listing it once."""
    assert parse(policy_arns=[POLICY_ARN, POLICY_ARN]) == parse(policy_arns=[POLICY_ARN])


def test_min_ttl_is_not_part_of_the_key() -> None:
    """Requests differing only in min_ttl share one cache entry."""
    a, ttl_a = parse_request(body(min_ttl=0))
    b, ttl_b = parse_request(body(min_ttl=1800))
    assert a == b and hash(a) == hash(b)
    assert (ttl_a, ttl_b) == (0, 1800)


def test_explicit_default_duration_is_the_same_key_as_none() -> None:
    """Asking for 3600 s explicitly is the same entry as leaving the duration out."""
    assert parse(duration_seconds=3600) == parse()


@pytest.mark.parametrize("char", ["\ud800", "\u0100", "\x00", "\u2713"])
def test_policy_characters_outside_sts_pattern_are_refused(char: str) -> None:
    """A session policy with a character outside STS's [\\t\\n\\r\\u0020-\\u00ff] is a 400,
    never an STS call (or a botocore encoding crash for lone surrogates)."""
    policy = '{"Version": "2012-10-17", "Statement": [], "Sid": "' + char + '"}'
    rejects("character STS refuses", policy=policy)
