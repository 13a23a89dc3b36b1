"""The served bindings by name: each one's tokens, token files and IMDS listener, and what of
them outlives a restart.

A binding's secrets are files alone in a folder of their own (`tokens_dir/NAME/`), so a
container is given exactly one binding's secrets by mounting that folder: `token` (the
bearer token, rotated), `container-token` and `capability`; each 0600, written by rename.
The state file (bindingstate.py) keeps each binding's spec, ports and last rotation, and only
SHA-256 digests of its container token and capability: a restart accepts them again without
the secrets being kept anywhere but the files they were handed out in.
"""

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rolecached.core.bindings import Binding, BindingSpec, EndpointSettings, NoSuchBinding
from rolecached.core.cache import Credentials
from rolecached.endpoints import bindingstate
from rolecached.endpoints.answers import Rendered, render_ecs
from rolecached.endpoints.listeners import Listener
from rolecached.endpoints.tokens import ImdsTokens, TokenRing, looks_like_token

log = logging.getLogger(__name__)

TOKEN_FILE = "token"
# The container token's file, beside the binding's token file: `endpoint env` reads it to set
# AWS_CONTAINER_AUTHORIZATION_TOKEN, which SDKs from before late 2023 need.
CONTAINER_TOKEN_FILE = "container-token"
# The capability's file, beside them: the secret last segment of the RELATIVE_URI path.
CAPABILITY_FILE = "capability"


@dataclass
class Served:
    """A binding being served: its tokens, token file, IMDS listener and warm-up state."""

    binding: Binding
    ring: TokenRing
    token_file: Path
    imds: Listener | None = None
    port: int = 0  # the IMDS port it listens on, or waits for (0: any free one)
    # Why it has no IMDS listener: "waiting for port N, held by uid U" (None: it listens).
    waiting: str | None = None
    # Where the container token was handed out: beside the token file, in the same folder.
    container_file: Path = field(init=False)
    capability_file: Path = field(init=False)
    imds_tokens: ImdsTokens = field(default_factory=ImdsTokens)
    warm_task: asyncio.Task[Credentials | None] | None = None
    next_warm: float = 0.0
    warm_failures: int = 0
    last_error: str | None = None
    # The container answer for the credentials last served (see endpoints/answers.py).
    rendered: Rendered | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.container_file = self.token_file.with_name(CONTAINER_TOKEN_FILE)
        self.capability_file = self.token_file.with_name(CAPABILITY_FILE)

    def container_answer(self, creds: Credentials, sandbox: bool) -> Rendered:
        """The container answer for `creds`, rendered again only when they changed."""
        if self.rendered is None or self.rendered.credentials is not creds:
            self.rendered = render_ecs(self.binding, creds, sandbox)
        return self.rendered


def write_secret(path: Path, secret: str) -> None:
    """Write a token file (0600, no trailing newline) by rename, so a reader never sees half
    a token and a mounted folder sees the new file."""
    with contextlib.suppress(FileExistsError):
        path.parent.mkdir(mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, secret.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_token(path: Path) -> str | None:
    """A token file's token, or None when it is missing or does not look like ours."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    return text if looks_like_token(text) else None


class Registry:
    """The served bindings, their token files, and the state file that outlives restarts."""

    def __init__(
        self,
        tokens_dir: Path,
        settings: EndpointSettings,
        clock: Callable[[], float],
        state_file: Path | None = None,
    ) -> None:
        self.tokens_dir = tokens_dir
        self.settings = settings
        self.clock = clock
        # Where bindings outlive the process (None: they do not).
        self.state_file = state_file
        # The same mapping the container handler and fast lane read: changes show at once.
        self.served: dict[str, Served] = {}
        self.container_port: int | None = None  # the container listener's, once it listens
        self.port_80 = False  # see EndpointManager.set_port_80
        self._saved = bindingstate.State()  # what the last run left, until forget_saved()

    # -- lookups ----------------------------------------------------------------------------

    def get(self, name: str) -> Served:
        """The served binding called `name`."""
        served = self.served.get(name)
        if served is None:
            raise NoSuchBinding(
                f"no endpoint is called {name!r}; `rolecache endpoint list` shows them"
            )
        return served

    def serves(self, request: Any) -> bool:
        """True while a binding serves the store entry of `request` (two may share one)."""
        return any(s.binding.request == request for s in self.served.values())

    def forget_rendered(self, request: Any) -> None:
        """Drop the rendered answers of `request`'s entry: a dropped entry's credentials must
        not live on in them."""
        for served in self.served.values():
            if served.binding.request == request:
                served.rendered = None

    # -- token files ------------------------------------------------------------------------

    def token_path(self, name: str) -> Path:
        """A binding's token file, alone in a folder of its own: a container is given
        exactly one binding's token by mounting that folder."""
        return self.tokens_dir / name / TOKEN_FILE

    def new_served(self, binding: Binding) -> Served:
        """A binding's serving state, its container secrets written (its token file is the
        caller's to write once it serves). One the last run served gets its token file's
        token and its container token again, so programs started before the restart go on."""
        saved = self._saved.bindings.get(binding.name)
        path = self.token_path(binding.name)
        current = read_token(path) if saved is not None else None
        container = saved.container_digest if saved is not None else None
        capability = saved.capability_digest if saved is not None else None
        served = Served(
            binding,
            TokenRing(
                saved.rotated_at if saved is not None and current else self.clock(),
                self.settings.token_grace,
                current=current,
                container_digest=container,
                capability_digest=capability,
            ),
            path,
        )
        # New, or its file is gone (a reboot empties the runtime folder): nobody can be
        # handed the old one again, so it is replaced.
        if container is None or read_token(served.container_file) is None:
            write_secret(served.container_file, served.ring.new_container_token())
        if capability is None or not served.capability_file.exists():
            write_secret(served.capability_file, served.ring.new_capability())
        return served

    def write_token(self, served: Served) -> None:
        """Write `served`'s current token to its token file."""
        write_secret(served.token_file, served.ring.current)

    def remove_files(self, served: Served) -> None:
        """Delete `served`'s token folder: its secrets are handed out no more."""
        shutil.rmtree(served.token_file.parent, ignore_errors=True)

    # -- rotation ---------------------------------------------------------------------------

    def rotate(self, name: str, containers: bool = False, grace: bool = True) -> Served:
        """Give `name` a new token now; the previous one stays valid for the grace period
        (without `grace`, it stops at once). With `containers`, the container token and
        capability are replaced too, and the old ones stop working at once: that is how a
        leaked one is revoked."""
        served = self.get(name)
        served.ring.rotate(self.clock(), grace)
        self.write_token(served)
        if containers:
            write_secret(served.container_file, served.ring.new_container_token())
            write_secret(served.capability_file, served.ring.new_capability())
        self.persist()
        also = " and container secrets" if containers else ""
        log.info("rotated the token%s of endpoint %s", also, name)
        return served

    def rotate_due(self) -> None:
        """Rotate the token of every binding whose token is `settings.token_rotation` old."""
        now = self.clock()
        for served in list(self.served.values()):
            if now - served.ring.rotated_at >= self.settings.token_rotation:
                self.rotate(served.binding.name)

    # -- what outlives a restart ------------------------------------------------------------

    def load_saved(self) -> None:
        """Read what the last run left in the state file (nothing without one)."""
        if self.state_file is not None:
            self._saved = bindingstate.load(self.state_file)
            self.port_80 = self._saved.port_80

    def saved_runtime(self) -> list[BindingSpec]:
        """The bindings added at run time that the last run served, to serve again."""
        return [s.spec for s in self._saved.bindings.values() if s.spec.origin == "runtime"]

    def saved_container_port(self) -> int | None:
        """The container port the last run had, when the state file says."""
        return self._saved.container_port

    def saved_imds_port(self, name: str) -> int | None:
        """The IMDS port binding `name` had in the last run; None when it was not served."""
        saved = self._saved.bindings.get(name)
        return None if saved is None else saved.imds_port

    def forget_saved(self) -> None:
        """The last run's state is used up: bindings added from now on are new ones."""
        self._saved = bindingstate.State()

    def persist(self) -> None:
        """Save what a restart needs; a failure is logged, the bindings serve on."""
        if self.state_file is None:
            return
        state = bindingstate.State(self.container_port, port_80=self.port_80)
        for name, served in self.served.items():
            state.bindings[name] = bindingstate.SavedBinding(
                served.binding.spec,
                served.imds.port if served.imds is not None else served.port,
                served.ring.rotated_at,
                served.ring.container_digest,
                served.ring.capability_digest,
            )
        try:
            bindingstate.save(self.state_file, state)
        except OSError as exc:
            log.error("cannot save the endpoint state %s: %s", self.state_file, exc)
