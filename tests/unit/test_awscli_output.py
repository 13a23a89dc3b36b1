"""`rolecached.render.awscli` against the real AWS CLI v1's own output code: the same parsed
AssumeRole response goes through the CLI's JSONFormatter and TextFormatter (awscli.formatter,
which call json.dump and awscli.text.format_text) and through rolecache's renderer; the bytes
must match, for the whole response and for --query results of every JSON type."""

import argparse
import io
import json
from typing import Any

import botocore.parsers
import botocore.session
import jmespath
import pytest
from awscli.customizations.globalargs import _resolve_query
from awscli.customizations.scalarparse import identity
from awscli.formatter import JSONFormatter, TableFormatter, TextFormatter
from awscli.text import format_text
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rolecached.core.cache import Credentials
from rolecached.errors import InvalidRequest
from rolecached.render import awscli, awstable
from rolecached.stsanswers import credentials_from as _credentials

# The classic idiom's `` literal is JMESPath's deprecated string syntax: both sides warn.
pytestmark = pytest.mark.filterwarnings("ignore:deprecated string literal syntax")

NOW = 1_700_000_000.0
EXPIRATION = "2023-11-14T23:13:20Z"
ROLE_USER_ARN = "arn:aws:sts::123456789012:assumed-role/deploy/alice@dev-admin"

# An STS AssumeRole answer with its elements out of the model's order, as XML allows.
STS_XML = """\
<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    {source_identity}
    <AssumedRoleUser>
      <Arn>{arn}</Arn>
      <AssumedRoleId>AROA3XFRBF535PLBIFPI4:alice@dev-admin</AssumedRoleId>
    </AssumedRoleUser>
    {packed}
    <Credentials>
      <SessionToken>IQoJb3JpZ2luX2VjEOr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+/=</SessionToken>
      <Expiration>{expiration}</Expiration>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY</SecretAccessKey>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleResponse>
"""


def parsed_response(
    *, packed: bool = True, source_identity: bool = True, expiration: str = EXPIRATION
) -> dict[str, Any]:
    """The XML above parsed by botocore as the CLI parses it: timestamps left as sent (the
    CLI's default cli_timestamp_format), keys in the service model's order."""
    body = STS_XML.format(
        arn=ROLE_USER_ARN,
        expiration=expiration,
        packed="<PackedPolicySize>6</PackedPolicySize>" if packed else "",
        source_identity="<SourceIdentity>alice-src</SourceIdentity>" if source_identity else "",
    )
    model = botocore.session.get_session().get_service_model("sts")
    parser = botocore.parsers.QueryParser(timestamp_parser=identity)
    return parser.parse(
        {"body": body.encode(), "headers": {}, "status_code": 200},
        model.operation_model("AssumeRole").output_shape,
    )


def credentials_of(response: dict[str, Any]) -> Credentials:
    """What the daemon keeps of that response (sts.py's own conversion)."""
    return _credentials(response, NOW)


def cli_output(formatter: type, response: dict[str, Any], query: str | None) -> str:
    """What `aws sts assume-role [--query Q]` prints for `response`, by the CLI's formatter."""
    args = argparse.Namespace(query=_resolve_query(query) if query is not None else None)
    stream = io.StringIO()
    formatter(args)("assume-role", json.loads(json.dumps(response)), stream)
    return stream.getvalue()


FULL = parsed_response()
CREDS = credentials_of(FULL)

# --query expressions, one per shape of result the text layout treats differently. (A list
# mixing dicts with scalars or lists is left out: the CLI's own format_text crashes on it.)
QUERIES = {
    "string": "Credentials.AccessKeyId",
    "list of strings": "Credentials.[AccessKeyId, SecretAccessKey, SessionToken]",
    "dict": "Credentials",
    "dict with nested dict": (
        "{Creds: Credentials, Arn: AssumedRoleUser.Arn, Size: PackedPolicySize}"
    ),
    "list of dicts with differing keys": "[Credentials, AssumedRoleUser]",
    "list of dicts, key scalar in one and a list in another": (
        "[{a: Credentials.AccessKeyId, b: PackedPolicySize}, {a: [AssumedRoleUser.Arn]}]"
    ),
    "list of dicts holding lists": (
        "[{Key: Credentials.AccessKeyId, Arns: [AssumedRoleUser.Arn, SourceIdentity]}]"
    ),
    "nested lists": "[[Credentials.AccessKeyId, AssumedRoleUser.Arn], [Credentials.Expiration]]",
    "scalars and lists mixed": (
        "[Credentials.AccessKeyId, [AssumedRoleUser.Arn, PackedPolicySize], SourceIdentity]"
    ),
    "None": "NoSuchKey",
    "number": "PackedPolicySize",
    "empty list": "values(Credentials)[?@ == 'nothing']",
    "empty dict": "`{}`",
    "empty string": '`""`',
    "booleans and float": "[`true`, `false`, `1.5`, `null`]",
    "non-ASCII text": '`"h\u00e9llo \u2713 \u65e5\u672c"`',
    "export idiom": (
        'Credentials | join(``, [`"export AWS_ACCESS_KEY_ID="`, AccessKeyId, '
        '`"\\nexport AWS_SECRET_ACCESS_KEY="`, SecretAccessKey, '
        '`"\\nexport AWS_SESSION_TOKEN="`, SessionToken])'
    ),
    "tab-separated triple": (
        "Credentials.[AccessKeyId,SecretAccessKey,SessionToken] | join(`\t`, @)"
    ),
}


# -- text ---------------------------------------------------------------------------------


def test_text_of_the_full_response_matches_the_cli():
    """`--output text` of the whole response is the CLI's TextFormatter output, byte for
    byte."""
    expected = cli_output(TextFormatter, FULL, None)
    assert awscli.render(CREDS, "text", None) == expected
    # The layout itself: top-level scalars in key order, then each nested dict's scalars in
    # key order behind its upper-cased name.
    assert expected.splitlines() == [
        "6\talice-src",
        f"ASSUMEDROLEUSER\t{ROLE_USER_ARN}\tAROA3XFRBF535PLBIFPI4:alice@dev-admin",
        f"CREDENTIALS\tASIAIOSFODNN7EXAMPLE\t{EXPIRATION}\t{CREDS.secret_access_key}\t"
        f"{CREDS.session_token}",
    ]


def test_text_of_the_full_response_matches_format_text():
    """as_text of the response equals awscli.text.format_text of the same data."""
    data = awscli.assume_role_response(CREDS)
    stream = io.StringIO()
    format_text(data, stream)
    assert awscli.as_text(data) == stream.getvalue()


@pytest.mark.parametrize("query", list(QUERIES.values()), ids=list(QUERIES))
def test_text_of_query_results_matches_the_cli(query):
    """`--output text --query Q` prints what the CLI prints for every shape of result."""
    assert awscli.render(CREDS, "text", query) == cli_output(TextFormatter, FULL, query)


@pytest.mark.parametrize(
    "data",
    [
        "plain",
        ["a", "b", 3],
        {"z": 1, "a": "x", "m": {"k": "v", "l": ["p", "q"]}},
        [{"a": 1}, {"b": 2, "c": {"d": 3}}, {"a": [1, 2]}],
        [[1, [2, [3, ["x", "y"]]]], "s"],
        [[], [[]], "t", [{}]],
        [{"a": 1, "n": [{"b": 2}, {"c": [3]}]}, {"n": {"d": 4}}],
        None,
        0,
        [],
        {},
    ],
)
def test_as_text_equals_format_text_on_arbitrary_data(data):
    """as_text agrees with awscli.text.format_text on data no query above produces."""
    stream = io.StringIO()
    format_text(data, stream)
    assert awscli.as_text(data) == stream.getvalue()


# -- JSON ---------------------------------------------------------------------------------


def test_json_of_the_full_response_matches_the_cli():
    """`--output json` of the whole response is the CLI's JSONFormatter output, byte for
    byte (json.dump, indent 4, ensure_ascii off, newline)."""
    expected = cli_output(JSONFormatter, FULL, None)
    assert awscli.render(CREDS, "json", None) == expected
    assert expected == json.dumps(FULL_WITHOUT_METADATA, indent=4, ensure_ascii=False) + "\n"


FULL_WITHOUT_METADATA = {k: v for k, v in FULL.items() if k != "ResponseMetadata"}


@pytest.mark.parametrize("query", list(QUERIES.values()), ids=list(QUERIES))
def test_json_of_query_results_matches_the_cli(query):
    """`--output json --query Q` prints what the CLI prints, including nothing for {}."""
    assert awscli.render(CREDS, "json", query) == cli_output(JSONFormatter, FULL, query)


@pytest.mark.parametrize(
    ("packed", "source_identity"), [(True, True), (True, False), (False, True), (False, False)]
)
def test_optional_members_appear_only_when_sts_sent_them(packed, source_identity):
    """PackedPolicySize and SourceIdentity are printed only when in the response; both
    formats still match the CLI."""
    response = parsed_response(packed=packed, source_identity=source_identity)
    creds = credentials_of(response)
    for formatter, output in ((JSONFormatter, "json"), (TextFormatter, "text")):
        assert awscli.render(creds, output, None) == cli_output(formatter, response, None)
    printed = json.loads(awscli.render(creds, "json", None))
    assert ("PackedPolicySize" in printed) is packed
    assert ("SourceIdentity" in printed) is source_identity


def test_json_key_order_is_the_service_models():
    """Keys come in the STS model's order: Credentials{AccessKeyId, SecretAccessKey,
    SessionToken, Expiration}, AssumedRoleUser{AssumedRoleId, Arn}, PackedPolicySize,
    SourceIdentity."""
    printed = json.loads(awscli.render(CREDS, "json", None))
    assert list(printed) == ["Credentials", "AssumedRoleUser", "PackedPolicySize", "SourceIdentity"]
    assert list(printed["Credentials"]) == [
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    ]
    assert list(printed["AssumedRoleUser"]) == ["AssumedRoleId", "Arn"]
    # The same order as botocore's service model, which the CLI's output follows.
    shape = botocore.session.get_session().get_service_model("sts")
    output = shape.operation_model("AssumeRole").output_shape
    assert list(printed) == [m for m in output.members if m in printed]
    assert list(printed["Credentials"]) == list(output.members["Credentials"].members)
    assert list(printed["AssumedRoleUser"]) == list(output.members["AssumedRoleUser"].members)


def test_json_output_mirrors_the_cli_json_dump_settings():
    """as_json is json.dump(indent=4, ensure_ascii=False) plus a newline, except nothing for
    an empty dict, exactly as JSONFormatter._format_response writes."""
    for data in (FULL_WITHOUT_METADATA, ["\u00e9", 1, None], "x", None, 0, [], {}):
        stream = io.StringIO()
        JSONFormatter(argparse.Namespace(query=None))._format_response("assume-role", data, stream)
        assert awscli.as_json(data) == stream.getvalue()
    assert awscli.as_json({}) == ""
    assert awscli.as_json(None) == "null\n"
    assert awscli.as_json("\u00e9") == '"\u00e9"\n'


@pytest.mark.parametrize(
    "expiration", [EXPIRATION, "2023-11-14T23:13:20.000Z", "2023-11-14T23:13:20+00:00"]
)
def test_expiration_is_printed_exactly_as_sts_sent_it(expiration):
    """Expiration is the raw text from STS in both formats, never re-formatted from the
    parsed time."""
    response = parsed_response(expiration=expiration)
    creds = credentials_of(response)
    assert creds.expiration_text == expiration
    assert f'"Expiration": "{expiration}"\n' in awscli.render(creds, "json", None)
    assert f"\t{expiration}\t" in awscli.render(creds, "text", None)
    assert awscli.render(creds, "text", "Credentials.Expiration") == expiration + "\n"
    assert awscli.render(creds, "json", None) == cli_output(JSONFormatter, response, None)


def test_expiration_text_wins_over_the_float_expiration():
    """A Credentials whose float expiration disagrees with its text still prints the text."""
    creds = Credentials(
        access_key_id="ASIAIOSFODNN7EXAMPLE",
        secret_access_key="secret",
        session_token="token",
        expiration=0.0,
        issued_at=0.0,
        assumed_role_arn=ROLE_USER_ARN,
        assumed_role_id="AROA:x",
        expiration_text="2030-01-02T03:04:05Z",
    )
    assert awscli.render(creds, "text", "Credentials.Expiration") == "2030-01-02T03:04:05Z\n"
    assert json.loads(awscli.render(creds, "json", None))["Credentials"]["Expiration"] == (
        "2030-01-02T03:04:05Z"
    )


# -- --query errors -----------------------------------------------------------------------


@pytest.mark.parametrize("query", ["Credentials.[", "Credentials |", "[?", "`unterminated"])
def test_bad_query_is_the_clis_bad_value_message(query):
    """An expression JMESPath cannot parse is InvalidRequest code BadQuery, with the very
    message the CLI gives for it."""
    with pytest.raises(InvalidRequest) as caught:
        awscli.render(CREDS, "text", query)
    assert caught.value.code == "BadQuery"
    assert caught.value.status == 400
    assert caught.value.message.startswith("Bad value for --query ")
    with pytest.raises(ValueError) as cli:
        _resolve_query(query)
    assert caught.value.message == str(cli.value)


def test_query_failing_at_evaluation_is_a_bad_query_too():
    """An expression that parses but fails on the data (an unknown function) is BadQuery."""
    with pytest.raises(InvalidRequest) as caught:
        awscli.apply_query(awscli.assume_role_response(CREDS), "no_such_function(Credentials)")
    assert caught.value.code == "BadQuery"
    assert caught.value.message.startswith("Bad value for --query no_such_function(Credentials)")


def test_no_query_leaves_the_data_alone():
    """Without --query the response is formatted as it is."""
    data = awscli.assume_role_response(CREDS)
    assert awscli.apply_query(data, None) is data
    assert jmespath.search("Credentials.AccessKeyId", data) == "ASIAIOSFODNN7EXAMPLE"


# -- the table layout: any shape, against the CLI's own TableFormatter ----------------------

_SCALARS = st.one_of(st.text(max_size=30), st.integers(), st.booleans(), st.none())
_KEYS = st.text(alphabet="ABCDEFGHabcdefgh_", min_size=1, max_size=12)


def _containers(children: st.SearchStrategy) -> st.SearchStrategy:
    dicts = st.dictionaries(_KEYS, children, max_size=5)
    return st.one_of(
        dicts,
        st.lists(dicts, max_size=4),
        st.lists(_SCALARS, max_size=4),
        st.lists(st.lists(_SCALARS, max_size=3), max_size=3),
    )


_SHAPES = st.recursive(_SCALARS, _containers, max_leaves=20)


def cli_table(data: Any, columns: int) -> str | None:
    """What the CLI's TableFormatter prints for `data` on a terminal `columns` wide (None
    where the CLI itself fails on the shape)."""
    formatter = TableFormatter(argparse.Namespace(query=None, color="off"))
    formatter.table._terminal_width = columns
    out = io.StringIO()
    try:
        formatter("AssumeRole", data, out)
    except Exception:
        return None
    return out.getvalue()


@settings(max_examples=600, deadline=None)
@given(data=_SHAPES, columns=st.sampled_from([20, 80, 200]))
def test_table_layout_is_the_clis_for_any_shape(data: Any, columns: int) -> None:
    """For random responses (dicts, lists of dicts, lists of scalars, nesting) and terminal
    widths, the table is byte for byte the CLI's, wrapping to rows where it does."""
    expected = cli_table(data, columns)
    assume(expected is not None)
    assert awstable.render("AssumeRole", data, columns) == expected
