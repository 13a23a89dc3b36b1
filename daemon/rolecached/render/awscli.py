"""Output of `aws sts assume-role`, byte for byte, as AWS CLI v1 or v2 prints it: JSON
indented by 4 in the service model's key order, the tab-separated text layout, the table
(awstable.py), and (v2 only) YAML, after a JMESPath --query.

The two generations differ in what they print of a timestamp: v1 prints `Expiration` as STS
sent it, v2 as ISO 8601 with `+00:00`. v2's YAML is ruamel.yaml's safe dump, block style,
and a scalar result is printed as JSON instead (YAML would end it with `...`).

Pure: the daemon renders here so the client stays standard-library only and copies bytes.
"""

import datetime
import io
import json
from typing import Any

import jmespath
import jmespath.exceptions

from rolecached.core.cache import Credentials
from rolecached.errors import InvalidRequest
from rolecached.render import awstable

OUTPUTS = {1: ("json", "text", "table"), 2: ("json", "text", "table", "yaml", "yaml-stream")}
TITLE = "AssumeRole"  # the table's title: the operation's name


def v2_timestamp(text: str) -> str:
    """A timestamp as CLI v2 prints it: ISO 8601 in UTC with `+00:00`, fraction kept."""
    parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.astimezone(datetime.UTC).isoformat()


def assume_role_response(credentials: Credentials, version: int = 1) -> dict[str, Any]:
    """The AssumeRole response CLI `version` prints, keys in the service model's order."""
    expiration = credentials.expiration_text
    response: dict[str, Any] = {
        "Credentials": {
            "AccessKeyId": credentials.access_key_id,
            "SecretAccessKey": credentials.secret_access_key,
            "SessionToken": credentials.session_token,
            "Expiration": expiration if version == 1 else v2_timestamp(expiration),
        },
        "AssumedRoleUser": {
            "AssumedRoleId": credentials.assumed_role_id,
            "Arn": credentials.assumed_role_arn,
        },
    }
    if credentials.packed_policy_size is not None:
        response["PackedPolicySize"] = credentials.packed_policy_size
    if credentials.source_identity is not None:
        response["SourceIdentity"] = credentials.source_identity
    return response


def apply_query(data: Any, query: str | None) -> Any:
    """JMESPath `query` over `data`, as --query does; a bad expression is a usage error."""
    if query is None:
        return data
    try:
        return jmespath.search(query, data)
    except jmespath.exceptions.JMESPathError as exc:
        raise InvalidRequest(f"Bad value for --query {query}: {exc}", code="BadQuery") from None


def as_json(data: Any) -> str:
    """The CLI's JSON output (nothing at all for an empty response)."""
    if data == {}:
        return ""
    return json.dumps(data, indent=4, ensure_ascii=False) + "\n"


def as_text(data: Any) -> str:
    """The CLI's text output: per dict, scalars on one line in alphabetical key order, then
    nested values with their upper-cased key as the line's first field."""
    out: list[str] = []
    _text(data, out, None, None)
    return "".join(out)


def _text(item: Any, out: list[str], identifier: str | None, scalar_keys: list[str] | None) -> None:
    if isinstance(item, dict):
        _text_dict(item, out, identifier, scalar_keys)
    elif isinstance(item, list):
        _text_list(item, out, identifier)
    else:
        out.append(f"{item}\n")


def _text_list(items: list[Any], out: list[str], identifier: str | None) -> None:
    if not items:
        return
    if any(isinstance(el, dict) for el in items):
        # Rows of dicts share one column set: every scalar key seen in any of them.
        keys = sorted(
            {k for el in items if isinstance(el, dict) for k, v in el.items()
             if not isinstance(v, dict | list)}
        )  # fmt: skip
        for el in items:
            _text(el, out, identifier, keys)
    elif any(isinstance(el, list) for el in items):
        scalars = [el for el in items if not isinstance(el, dict | list)]
        if scalars:
            _scalar_row(scalars, out, identifier)
        for el in items:
            if isinstance(el, dict | list):
                _text(el, out, identifier, None)
    else:
        _scalar_row(items, out, identifier)


def _scalar_row(items: list[Any], out: list[str], identifier: str | None) -> None:
    if identifier is not None:
        out.extend(f"{identifier.upper()}\t{item}\n" for item in items)
    else:
        out.append("\t".join(str(item) for item in items) + "\n")


def _text_dict(
    item: dict[str, Any], out: list[str], identifier: str | None, scalar_keys: list[str] | None
) -> None:
    if scalar_keys is None:
        pairs = sorted(item.items())
        scalars = [str(v) for _, v in pairs if not isinstance(v, dict | list)]
        nested = [(k, v) for k, v in pairs if isinstance(v, dict | list)]
    else:
        scalars = [str(item.get(k, "")) for k in scalar_keys]
        nested = [(k, item[k]) for k in sorted(set(item) - set(scalar_keys))]
    if scalars:
        if identifier is not None:
            scalars.insert(0, identifier.upper())
        out.append("\t".join(scalars) + "\n")
    for key, value in nested:
        _text(value, out, key, None)


def as_yaml(data: Any, stream: bool = False) -> str:
    """CLI v2's YAML output; `stream` is yaml-stream's (the response as a one-item list)."""
    if stream:
        data = [data]
    elif data == {}:
        return ""
    if data is None or isinstance(data, str | int | float | bool):
        return json.dumps(data, ensure_ascii=False) + "\n"
    from ruamel.yaml import YAML  # only for v2's yaml output

    dumper = YAML(typ="safe")
    dumper.encoding = None
    dumper.representer.default_flow_style = False
    out = io.StringIO()
    dumper.dump(data, out)
    return out.getvalue()


def render(
    credentials: Credentials,
    output: str,
    query: str | None,
    version: int = 1,
    columns: int = awstable.DEFAULT_COLUMNS,
) -> str:
    """What `aws sts assume-role --output OUTPUT [--query QUERY]` prints, CLI `version` on
    a terminal `columns` wide (the table fits itself to it)."""
    if output not in OUTPUTS.get(version, ()):
        raise InvalidRequest(
            f"--output {output} is not an output of AWS CLI v{version}; use one of "
            f"{', '.join(OUTPUTS.get(version, OUTPUTS[1]))}"
        )
    data = apply_query(assume_role_response(credentials, version), query)
    if output == "text":
        return as_text(data)
    if output == "table":
        return awstable.render(TITLE, data, columns)
    if output in ("yaml", "yaml-stream"):
        return as_yaml(data, stream=output == "yaml-stream")
    return as_json(data)
