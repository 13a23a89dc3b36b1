"""AWS config files are read safely: only regular files of a sane size, opened without
blocking (a FIFO named as AWS_CONFIG_FILE must not stall the daemon), and parsed exactly as
botocore parses them."""

import os
from pathlib import Path

import botocore.configloader
import pytest

from rolecached.sources import awsfiles, profiles
from rolecached.sources.awsfiles import MAX_CONFIG_BYTES, ConfigFiles, ProfileError
from tests.daemonkit import Daemon, base_env, start_daemon

SAMPLE = """\
[default]
region = eu-west-1

[profile dev]
role_arn = arn:aws:iam::123456789012:role/dev
source_profile = base
services = local

[services local]
sts =
  endpoint_url = http://127.0.0.1:4566
"""


def refused(config: Path, credentials: Path) -> str:
    """Load the files, which must be refused; the message."""
    with pytest.raises(ProfileError) as caught:
        ConfigFiles().load(str(config), str(credentials))
    return caught.value.message


def test_parsed_as_botocore_parses_the_same_file(tmp_path: Path) -> None:
    """Profiles, services and nested sub-sections come out as botocore's own loader gives
    them for the same file."""
    config = tmp_path / "config"
    config.write_text(SAMPLE)
    loaded = ConfigFiles().load(str(config), str(tmp_path / "absent"))
    expected = botocore.configloader.load_config(str(config))
    assert loaded.profiles == expected["profiles"]
    assert loaded.services == expected["services"]
    assert loaded.services["local"]["sts"] == {"endpoint_url": "http://127.0.0.1:4566"}


def test_a_fifo_is_refused_at_once_naming_it(tmp_path: Path) -> None:
    """A FIFO with no writer is refused as a FIFO without waiting for a writer."""
    fifo = tmp_path / "config"
    os.mkfifo(fifo)
    message = refused(fifo, tmp_path / "absent")
    assert "FIFO" in message and "not a regular file" in message and str(fifo) in message


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: p.mkdir(), "a folder"),
        (lambda p: p.symlink_to("/dev/null"), "a character device"),
    ],
    ids=["folder", "device"],
)
def test_folders_and_devices_are_refused(tmp_path: Path, make, kind: str) -> None:
    """A folder, or a device (here /dev/null behind a symlink), is refused, naming what it is."""
    path = tmp_path / "credentials"
    make(path)
    assert kind in refused(tmp_path / "absent", path)


def test_an_oversized_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    """A config file over the size cap is refused with its size and the cap."""
    config = tmp_path / "config"
    with open(config, "wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)  # sparse: nothing to read, only a size
    message = refused(config, tmp_path / "absent")
    assert str(MAX_CONFIG_BYTES + 1) in message and str(MAX_CONFIG_BYTES) in message


def test_a_file_at_the_cap_is_read(tmp_path: Path) -> None:
    """A file of exactly the cap is still read (the cap refuses only more)."""
    config = tmp_path / "config"
    text = "[profile big]\nregion = us-east-1\n"
    config.write_text(text + "#" * (MAX_CONFIG_BYTES - len(text) - 1) + "\n")
    assert awsfiles.read_config_file(str(config)) is not None
    assert ConfigFiles().load(str(config), str(tmp_path / "absent")).profiles["big"]


def test_non_utf8_text_is_a_parse_error(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported as unparseable, naming the file."""
    config = tmp_path / "config"
    config.write_bytes(b"[profile x]\nregion = \xff\xfe\n")
    assert "cannot parse" in refused(config, tmp_path / "absent")


def test_a_fifo_as_aws_config_file_does_not_block_the_daemon(tmp_path: Path, moto) -> None:
    """With a FIFO (and no writer) as AWS_CONFIG_FILE, `rolecache env --profile P` exits 2
    at once saying it is a FIFO, and the real daemon keeps answering other requests."""
    env = base_env(tmp_path, moto.url)
    env["ROLECACHE_NO_AUTOSTART"] = "1"
    os.mkfifo(env["AWS_CONFIG_FILE"])
    daemon: Daemon = start_daemon(tmp_path, env)
    try:
        result = daemon.client("env", "--profile", "p")
        assert result.returncode == 2, result.stderr
        assert "FIFO" in result.stderr
        assert daemon.client("status").returncode == 0
        again = daemon.client("env", "--role-arn", "arn:aws:iam::123456789012:role/fifo",
                              "--role-session-name", "fifo")  # fmt: skip
        assert again.returncode == 0, again.stderr
    finally:
        daemon.stop()


async def test_changed_files_are_read_off_the_event_loop(tmp_path: Path, monkeypatch) -> None:
    """select_async reads changed config files in a worker thread, not on the event loop's
    thread; unchanged files are not read again at all."""
    import threading

    config = tmp_path / "config"
    config.write_text("[profile app]\nrole_arn = arn:aws:iam::123456789012:role/app\n"
                      "source_profile = base\n[profile base]\nregion = us-east-1\n")  # fmt: skip
    readers: list[str] = []
    real = awsfiles.read_config_file

    def spy(path: str) -> str | None:
        readers.append(threading.current_thread().name)
        return real(path)

    monkeypatch.setattr(awsfiles, "read_config_file", spy)
    files = ConfigFiles()
    body = {"profile": "app", "config_file": str(config), "credentials_file": str(config)}
    request, _ = await profiles.select_async(dict(body), files)
    assert request.role_arn.endswith(":role/app")
    loop_thread = threading.current_thread().name
    assert len(readers) == 2 and loop_thread not in readers
    await profiles.select_async(dict(body), files)
    assert len(readers) == 2  # unchanged: served from the parsed copy


def test_a_path_with_a_nul_byte_is_refused_not_a_crash(tmp_path: Path) -> None:
    """A config path holding a NUL byte (os.open raises ValueError on it) is a ProfileError
    naming the reason, never an internal error."""
    with pytest.raises(ProfileError, match="NUL"):
        ConfigFiles().load(str(tmp_path / "config"), str(tmp_path / "cred\x00entials"))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[default]\nregion = us-east-1\nregion us-west-2\n", "line 3 is not a [section]"),
        ("region = us-east-1\n[default]\n", "line 1 comes before any [section] header"),
        ("[default]\n[profile a]\n[default]\n", "line 3 repeats the section [default]"),
        ("[default]\nregion = a\nregion = b\n", "line 3 sets region a second time"),
    ],
    ids=["no-equals", "no-header", "two-sections", "two-settings"],
)
def test_a_malformed_file_is_refused_naming_the_line(tmp_path: Path, text: str, where: str) -> None:
    """A config file botocore cannot parse is refused with its path, the line and why."""
    config = tmp_path / "config"
    config.write_text(text)
    assert f"cannot parse {config}: {where}" in refused(config, tmp_path / "absent")


def test_a_profile_without_a_config_file_says_there_is_none(tmp_path: Path) -> None:
    """Asking for a profile when the config file does not exist says so, with its path."""
    config = tmp_path / "no-such-config"
    body = {"profile": "dev", "config_file": str(config), "credentials_file": str(config)}
    with pytest.raises(ProfileError) as caught:
        profiles.select(body, ConfigFiles())
    assert f"there is no AWS config file at {config}" in caught.value.message
