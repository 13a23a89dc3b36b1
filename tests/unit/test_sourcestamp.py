"""The stamps a remembered error is keyed by: the source's config and credentials files and,
for an SSO profile, the token file botocore (and `aws sso login`) writes."""

from pathlib import Path

import pytest
from botocore.utils import JSONFileCache, SSOTokenLoader

from rolecached.core.request import RoleRequest
from rolecached.sources.awsfiles import ConfigFiles
from rolecached.sources.sourcestamp import source_stamp

TOKEN = {"accessToken": "not-a-real-token", "expiresAt": "2099-01-01T00:00:00Z"}


@pytest.mark.parametrize("legacy", [False, True])
def test_a_new_sso_token_changes_the_stamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legacy: bool
) -> None:
    """botocore saving a new SSO token for the source profile (what `aws sso login` does)
    changes the stamp of a role behind it; so does an edit of the credentials file."""
    monkeypatch.setenv("HOME", str(tmp_path))
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    sso = (
        "sso_start_url = https://example.awsapps.com/start\n"
        if legacy
        else "sso_session = corp\n\n[sso-session corp]\n"
        "sso_start_url = https://example.awsapps.com/start\nsso_region = us-east-1\n"
    )
    config.write_text(
        "[profile app]\nrole_arn = arn:aws:iam::123456789012:role/app\nsource_profile = sso\n\n"
        f"[profile sso]\nsso_account_id = 123456789012\nsso_role_name = dev\n{sso}"
    )
    credentials.write_text("")
    request = RoleRequest(
        role_arn="arn:aws:iam::123456789012:role/app",
        role_session_name="me",
        source_profile="sso",
        config_file=str(config),
        credentials_file=str(credentials),
    )
    files = ConfigFiles()
    before = source_stamp(request, files)
    assert before == source_stamp(request, files)
    cache = JSONFileCache(str(tmp_path / ".aws" / "sso" / "cache"))
    SSOTokenLoader(cache).save_token(
        "https://example.awsapps.com/start", TOKEN, session_name=None if legacy else "corp"
    )
    after = source_stamp(request, files)
    assert after != before and after[-1] is not None
    credentials.write_text("[other]\n")
    assert source_stamp(request, files)[:2] != after[:2]
