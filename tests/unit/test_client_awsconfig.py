"""The client's reading of one profile setting (the drop-in's `output`): the sections and
lines botocore reads, and never a hang or a crash on a file that is not a config file."""

import os
from pathlib import Path

import botocore.configloader
import pytest

from rolecache import awsconfig

CONFIG = """\
# a comment
[default]
output = text
; another comment
[profile  spaced]
OUTPUT=table
s3 =
  max_concurrent_requests = 20
  output = nested-not-this
[profile other]
region = eu-west-1
[sso-session corp]
output = not-a-profile
"""


@pytest.mark.parametrize(
    ("profile", "expected"),
    [("default", "text"), ("spaced", "table"), ("other", None), ("corp", None)],
)
def test_a_profiles_setting_is_what_botocore_reads(
    tmp_path: Path, profile: str, expected: str | None
) -> None:
    """`output` of each profile is the value botocore's loader gives for the same file (keys
    are case-insensitive; nested and non-profile sections do not count)."""
    config = tmp_path / "config"
    config.write_text(CONFIG)
    profiles = botocore.configloader.load_config(str(config))["profiles"]
    assert profiles.get(profile, {}).get("output") == expected
    assert awsconfig.profile_value(str(config), profile, "output") == expected


def test_a_fifo_or_a_missing_file_has_no_setting(tmp_path: Path) -> None:
    """A FIFO with no writer is not waited on, and a missing file or a folder gives None."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert awsconfig.profile_value(str(fifo), "default", "output") is None
    assert awsconfig.profile_value(str(tmp_path / "absent"), "default", "output") is None
    assert awsconfig.profile_value(str(tmp_path), "default", "output") is None
