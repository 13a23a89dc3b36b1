"""moto's server on a test network's address makes no DNS query: binding looks up no name."""

import json
import socket
import urllib.request

import pytest

from tests.motokit import moto_at


def test_binding_looks_up_no_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting moto's server asks no resolver for its address' name (for 169.254.170.2 that
    is a PTR query off this machine), and the server then answers STS."""
    asked: list[str] = []

    def refuse(name: str = "") -> str:
        asked.append(name)
        raise AssertionError(f"a name lookup for {name!r}")

    monkeypatch.setattr(socket, "getfqdn", refuse)
    monkeypatch.setattr(socket, "gethostbyaddr", refuse)
    with moto_at("127.0.0.1") as url:
        request = urllib.request.Request(
            url,
            data=b"Action=GetCallerIdentity&Version=2011-06-15",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/"
                "us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = reply.read().decode()
    assert asked == []
    assert "GetCallerIdentityResult" in body, json.dumps(body[:300])
