"""One setting of a profile in the AWS config file, read as the AWS CLI reads it, for the
CLI's own settings the drop-in honours (`output`). The daemon reads profiles for roles.

Line by line, not with configparser (it imports `re`, a visible share of a cache hit).
"""

import os
import stat

MAX_BYTES = 2 * 1024 * 1024  # a config file is a few KB; anything bigger is not one


def read_text(path: str) -> str | None:
    """The file's text; None when it is absent, not a regular file, too big or not UTF-8.
    Opened without blocking: a FIFO named as AWS_CONFIG_FILE must not hang the shell."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except (OSError, ValueError):
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
            return None
        data = os.read(fd, MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def section_profile(header: str) -> str | None:
    """The profile a section header's name stands for: `default` and `profile NAME` (one
    word after `profile`, as botocore takes it), else None."""
    if header == "default":
        return "default"
    parts = header.split()
    if len(parts) == 2 and parts[0] == "profile":
        return parts[1]
    return None


def profile_value(path: str, profile: str, key: str) -> str | None:
    """The value of `key` in `profile`'s section of the config file at `path`, or None."""
    text = read_text(path)
    if text is None:
        return None
    found: str | None = None
    inside = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if line[0] in " \t":  # a continuation of the value before, or a nested setting
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            inside = section_profile(stripped[1:-1].strip()) == profile
            continue
        if inside:
            name, _, value = stripped.partition("=")
            if name.strip().lower() == key:
                found = value.strip()
    return found
