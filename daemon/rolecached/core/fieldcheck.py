"""Typed reads of a decoded JSON request's fields, and refusals that say what the AWS CLI
would print for the same value. Pure: no I/O."""

import re
from typing import Any

from rolecached.errors import InvalidRequest

# A text parameter's rule as botocore and STS check it: (parameter, value, min and max
# length, the characters, STS's pattern as its messages quote it).
TextRule = tuple[str, str, int, int, re.Pattern[str], str]


def type_name(value: object) -> str:
    """How an error message names a JSON value's type."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def shown(value: str, limit: int = 80) -> str:
    """The value for an error message, cut so a 2 KB policy does not flood the terminal."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def string(body: dict[str, Any], name: str) -> str | None:
    """The field as a string, None when absent."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string, not {type_name(value)}")
    return value


def integer(body: dict[str, Any], name: str) -> int | None:
    """The field as a whole number of seconds, None when absent."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer number of seconds, not {type_name(value)}")
    return value


def string_list(body: dict[str, Any], name: str) -> list[str]:
    """The field as a list of strings, empty when absent."""
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{name} must be a list of strings")
    return value


def path(body: dict[str, Any], name: str) -> str | None:
    """The field as an absolute file path, None when absent."""
    value = string(body, name)
    if value is not None and not value.startswith("/"):
        raise InvalidRequest(f"{name} must be an absolute path, not {shown(value)}")
    if value is not None and "\x00" in value:  # no file has one; os.stat() raises on it
        raise InvalidRequest(f"{name} must not contain a NUL character")
    return value


def check_pattern(name: str, value: str, pattern: re.Pattern[str], allowed: str) -> None:
    """Refuse `value` unless it matches `pattern`; `allowed` says what would."""
    if not pattern.fullmatch(value):
        raise InvalidRequest(f"{name} {shown(value)} is not valid: {allowed}")


def as_sts_refuses(
    refusal: InvalidRequest, member: str, value: str, constraints: list[str]
) -> None:
    """Add to `refusal` the ValidationError STS answers for the same value, so the drop-in
    can say what the AWS CLI would print after the call."""
    count = len(constraints)
    refusal.details["sts_code"] = "ValidationError"
    refusal.details["sts_message"] = (
        f"{count} validation error{'s' if count > 1 else ''} detected: "
        + "; ".join(
            f"Value '{value}' at '{member}' failed to satisfy constraint: Member must {c}"
            for c in constraints
        )
    )


def refused_text(message: str, rule: TextRule) -> InvalidRequest:
    """The refusal of a text value, carrying what the AWS CLI would print: botocore's own
    check refuses one that is too short; STS refuses other characters or too many."""
    parameter, value, low, high, chars, pattern = rule
    refusal = InvalidRequest(message)
    if len(value) < low:
        refusal.details["cli_message"] = (
            f"Parameter validation failed:\nInvalid length for parameter {parameter}, "
            f"value: {len(value)}, valid min length: {low}"
        )
        return refusal
    constraints = []
    if not chars.fullmatch(value):
        constraints.append(f"satisfy regular expression pattern: {pattern}")
    if len(value) > high:
        constraints.append(f"have length less than or equal to {high}")
    member = parameter[0].lower() + parameter[1:]  # STS names members in camelCase
    as_sts_refuses(refusal, member, value, constraints)
    return refusal
