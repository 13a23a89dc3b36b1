"""The credentials documents of the container endpoint (ECS-style) and of IMDS, in the
shapes SDKs parse. Pure."""

from rolecached.core.bindings import Binding
from rolecached.core.cache import Credentials
from rolecached.render.credentials import iso_expiration


def ecs_document(binding: Binding, creds: Credentials) -> dict[str, str]:
    """The container endpoint's answer: the four fields botocore requires, plus two more."""
    return {
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.session_token,
        "Expiration": iso_expiration(creds.expiration),
        "AccountId": binding.request.account_id,
        "RoleArn": binding.request.role_arn,
    }


def imds_document(binding: Binding, creds: Credentials, extended: bool) -> dict[str, str]:
    """The IMDS credentials document; `extended` adds AccountId (Java, Ruby, PHP SDKs)."""
    doc = {
        "Code": "Success",
        "LastUpdated": iso_expiration(creds.issued_at),
        "Type": "AWS-HMAC",
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.session_token,
        "Expiration": iso_expiration(creds.expiration),
    }
    if extended:
        doc["AccountId"] = binding.request.account_id
    return doc
