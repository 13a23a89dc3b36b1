"""The bindings' lasting state: what a restart (SIGKILL included) needs so that programs and
containers keep working with the environment they were given.

One JSON file in the user's state folder (0600 in a 0700 folder): each binding's definition
(name, selector, options, origin), the ports its listeners got, when its token last rotated,
and the SHA-256 digests of its container token and capability path, never a secret itself
(those are in the token files, which outlive a clean stop too). Whether port 80 of
169.254.170.2 is redirected to the daemon is kept too, and the container port chosen when
`port = 0`, so URLs handed out stay the same.
"""

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from rolecached.core.bindings import BindingSpec

log = logging.getLogger(__name__)

VERSION = 1


@dataclass(frozen=True)
class SavedBinding:
    """One binding as it was served: its spec, IMDS port, token rotation time and the digest
    of its container token."""

    spec: BindingSpec
    imds_port: int
    rotated_at: float
    container_digest: bytes
    capability_digest: bytes | None = None

    def __repr__(self) -> str:
        return f"SavedBinding({self.spec.name!r}, imds_port={self.imds_port})"


@dataclass
class State:
    """Every binding served, by name, and the container listener's port."""

    container_port: int | None = None
    bindings: dict[str, SavedBinding] = field(default_factory=dict)
    # Port 80 of 169.254.170.2 is redirected to the container port (`rolecache docker setup
    # --port-80` says so; nothing on the host can check it): hand out RELATIVE_URI.
    port_80: bool = False


def default_path(stem: str) -> Path:
    """The state file of the daemon whose socket is called `stem` (sandbox and normal daemons,
    or two sockets, keep theirs apart)."""
    return Path(platformdirs.user_state_dir("rolecache")) / f"{stem}-endpoints.json"


def to_json(state: State) -> str:
    """The file's text."""
    return json.dumps(
        {
            "version": VERSION,
            "container_port": state.container_port,
            "port_80": state.port_80,
            "bindings": [
                {
                    "name": s.spec.name,
                    "selector": dict(s.spec.selector),
                    "imds_v1": s.spec.imds_v1,
                    "imds_port_asked": s.spec.imds_port,
                    "origin": s.spec.origin,
                    "imds_port": s.imds_port,
                    "rotated_at": s.rotated_at,
                    "container_token_sha256": s.container_digest.hex(),
                    "capability_sha256": (s.capability_digest or b"").hex(),
                }
                for s in state.bindings.values()
            ],
        },
        indent=1,
    )


def from_json(text: str) -> State:
    """Parse the file's text; raises ValueError (or KeyError, TypeError) when it is not ours."""
    data: Any = json.loads(text)
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError("not a version 1 state file")
    port = data.get("container_port")
    state = State(port if isinstance(port, int) and 0 < port < 65536 else None)
    state.port_80 = data.get("port_80") is True
    for item in data["bindings"]:
        spec = BindingSpec(
            str(item["name"]),
            dict(item["selector"]),
            bool(item["imds_v1"]),
            int(item["imds_port_asked"]),
            str(item["origin"]),
        )
        digest = bytes.fromhex(item["container_token_sha256"])
        if len(digest) != 32:
            raise ValueError("a container token digest is not SHA-256")
        capability = bytes.fromhex(item.get("capability_sha256", ""))
        state.bindings[spec.name] = SavedBinding(
            spec,
            int(item["imds_port"]),
            float(item["rotated_at"]),
            digest,
            capability if len(capability) == 32 else None,
        )
    return state


def load(path: Path) -> State:
    """The saved state, or an empty one when there is none; a file that cannot be read is
    set aside (renamed *.bad) with a warning, so a start never fails on it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return State()
    except OSError as exc:
        log.warning("cannot read the endpoint state %s (%s); starting without it", path, exc)
        return State()
    try:
        return from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        bad = path.with_name(path.name + ".bad")
        with contextlib.suppress(OSError):
            os.replace(path, bad)
        log.warning("the endpoint state %s is damaged (%s); set aside as %s", path, exc, bad)
        return State()


def save(path: Path, state: State) -> None:
    """Write the state by rename (a crash leaves the old file or the new one, never half),
    0600 in a 0700 folder."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, to_json(state).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
