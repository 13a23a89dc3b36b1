"""Writing a file that holds a secret (an env file with a container token): readable by this
user alone, never through a symlink, never into another user's file. Standard library only."""

import os
import stat

from rolecache import ask, protocol


def write_private(path: str, text: str) -> None:
    """Write `text` to `path` with mode 0600. A new file is created exclusively; an existing
    one is rewritten only when it is a regular file of ours, and is made 0600 before a byte
    is written. Anything else (a symlink, another user's file, a fifo) is refused."""
    # O_NONBLOCK: opening a fifo someone planted must not hang; regular files ignore it.
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            fd = os.open(path, flags)
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                os.close(fd)
                raise ask.Failed(
                    f"{path} exists and is not a regular file of yours (owner uid "
                    f"{info.st_uid}): it would receive a token. Remove it, or choose another "
                    "path",
                    protocol.EXIT_ERROR,
                ) from None
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, 0)
    except OSError as exc:
        why = "it is a symlink" if exc.errno == 40 else exc.strerror  # ELOOP: O_NOFOLLOW
        raise ask.Failed(
            f"cannot write {path}: {why}; remove it, or choose another path",
            protocol.EXIT_ERROR,
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
