"""Container endpoints: the ECS-style listener and one IMDSv2-style listener per binding.

Both answer from the store's memory (never waiting on STS longer than `settings.wait`), only
on loopback unless told otherwise, behind one hardening middleware: rate limit, Host
allow-list, no `Origin`, small bodies, JSON errors `{"Code", "Message"}`. The documents are
the ones botocore's container and IMDS providers parse: AccessKeyId, SecretAccessKey, Token
and an Expiration ending in Z. `EndpointManager` owns the bindings, their tokens, token
files and listeners.
"""

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import random
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from rolecache.protocol import SANDBOX_HEADER
from rolecached import audit, bindingstate, cache, ecslane, host
from rolecached.bindings import (
    DOCKER_GATEWAY,
    ECS_MIN_TTL,
    IMDS_MIN_TTL,
    Binding,
    BindingExists,
    EndpointSettings,
    NoSuchBinding,
    Resolve,
    check_addresses,
    resolve,
)
from rolecached.cache import Credentials
from rolecached.errors import (
    EndpointBadRequest,
    EndpointError,
    EndpointNotFound,
    Forbidden,
    MfaRequired,
    RolecacheError,
    StsError,
    StsRefused,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    endpoint_error_document,
)
from rolecached.front import Door, FrontSite, Lane, no_answers
from rolecached.gate import Caps, Gate, peer_key, raise_fd_limit
from rolecached.ratelimit import RateLimiter
from rolecached.render.documents import ecs_document, imds_document
from rolecached.store import Store
from rolecached.tokens import ImdsTokens, TokenRing, looks_like_token, parse_ttl

log = logging.getLogger(__name__)

ECS_PATH = "/v1/credentials/{name}"
IMDS_TOKEN_PATH = "/latest/api/token"
IMDS_ROLES = "/latest/meta-data/iam/security-credentials"
IMDS_ROLES_EXTENDED = "/latest/meta-data/iam/security-credentials-extended"
IMDS_TOKEN_HEADER = "X-aws-ec2-metadata-token"
IMDS_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
# aiohttp's limits on a request head; SDK requests are a few hundred bytes.
_HEAD_LIMITS = {"max_line_size": 4096, "max_field_size": 4096, "max_headers": 32}
# The container token's file, beside the binding's token file: `endpoint env` reads it to set
# AWS_CONTAINER_AUTHORIZATION_TOKEN, which SDKs from before late 2023 need.
CONTAINER_TOKEN_FILE = "container-token"
# The capability's file, beside them: the secret last segment of the RELATIVE_URI path.
CAPABILITY_FILE = "capability"


# -- errors: the types (and their statuses) are in errors.py ---------------------------------

_HTTP_CODES = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}


class ListenError(RolecacheError):
    """A listener could not bind its address."""

    status = 503
    code = "EndpointUnavailable"


def error_body(status: int, code: str, message: str) -> web.Response:
    """The error shape SDKs surface: {"Code", "Message"} with capitalised keys."""
    return web.json_response(endpoint_error_document(code, message), status=status)


# -- hardening -------------------------------------------------------------------------------


class Guard:
    """The checks every endpoint request passes first (Host, Origin, size), and the rate
    limit each passes once its token is known to be good."""

    def __init__(
        self, settings: EndpointSettings, clock: Callable[[], float], sandbox: bool, gate: Gate
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sandbox = sandbox
        self.gate = gate
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
        self.hosts: frozenset[str] = frozenset()

    def listening_on(self, port: int, bare: tuple[str, ...] = ()) -> None:
        """Allow the Host values that name this listener: loopback names and bound addresses
        with the port, and the addresses in `bare` also without it (169.254.170.2, reached
        on port 80 through a redirect by SDKs that know only RELATIVE_URI)."""
        names = {"127.0.0.1", "localhost", "[::1]", *bare}
        for address in self.settings.bind:
            names.add(f"[{address}]" if ":" in address else address)
        self.hosts = frozenset({f"{name}:{port}" for name in names} | set(bare))

    def check(self, request: web.Request) -> None:
        """Raise the EndpointError for the first check the request fails."""
        hosts = request.headers.getall("Host", [])
        if len(hosts) != 1 or hosts[0].lower() not in self.hosts:
            # DNS rebinding: a web page's requests carry the attacker's host name.
            raise Forbidden("Host header not allowed: use 127.0.0.1:PORT or localhost:PORT")
        if "Origin" in request.headers:
            raise Forbidden("requests from web pages (with an Origin header) are refused")
        length = request.content_length
        if (length is not None and length > self.settings.max_body) or (
            "Transfer-Encoding" in request.headers
        ):
            raise TooLarge(f"request bodies are limited to {self.settings.max_body} bytes")

    def throttle(self, request: web.Request, binding: str) -> None:
        """Raise TooManyRequests past the rate limit of this peer (uid, or a container's
        address) for `binding`: asked only once the token is good, so a flood of refused
        requests never uses up anyone's allowance."""
        wait = self.limiter.wait(limit_key(request.transport, binding, self.gate), self.clock())
        if wait:
            raise TooManyRequests(wait)


GUARD: web.AppKey[Guard] = web.AppKey("guard", Guard)


def limit_key(transport: Any, binding: str, gate: Gate) -> str:
    """The rate limiter's key: the admitted peer (uid or address) and the binding."""
    peer = gate.peer_of(transport)
    return f"{peer_key(peer) if peer is not None else '?'} {binding}"


@web.middleware
async def endpoint_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Run the guard, then map every failure to a JSON error: the one place for statuses."""
    guard = request.app[GUARD]
    try:
        guard.check(request)
        response = await handler(request)
    except EndpointError as exc:
        response = error_body(exc.status, exc.code, exc.message)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    except web.HTTPException as exc:
        code = _HTTP_CODES.get(exc.status, "HttpError")
        response = error_body(exc.status, code, exc.reason)
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        response = error_body(500, "InternalError", "internal error; see the daemon's log")
    response.headers["Cache-Control"] = "no-store"
    if guard.sandbox:
        response.headers[SANDBOX_HEADER] = "1"
    return response


# -- listeners -------------------------------------------------------------------------------


# Linux's IP_FREEBIND (not in Python 3.11's socket module): bind an address no interface has
# yet, so the daemon can listen on the docker network's gateway before the network exists.
IP_FREEBIND = 15


def open_tcp(address: str, port: int, freebind: bool = False) -> socket.socket:
    """A listening TCP socket on `address`:`port` (IPv6 sockets serve IPv6 only); with
    `freebind`, also while no interface has `address` (it serves once one has)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if freebind:
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class Listener:
    """One aiohttp app served on one port over every configured address."""

    runner: web.AppRunner
    port: int
    sockets: list[socket.socket]

    def addresses(self) -> list[tuple[str, int]]:
        """Where it listens, as the kernel reports it."""
        return [s.getsockname()[:2] for s in self.sockets]

    async def close(self) -> None:
        """Stop accepting and finish requests in flight."""
        await self.runner.cleanup()


async def listen(
    app: web.Application,
    settings: EndpointSettings,
    port: int,
    what: str,
    door: Callable[[str], Door],
    gateway: str | None = None,
) -> Listener:
    """Serve `app` on each address of `settings.bind`, all on one port (the first address
    picks it when `port` is 0), and on `gateway` too when given (bound with IP_FREEBIND);
    `door(address)` is the front policy of each address (peer check, caps, the container
    listener's fast lane)."""
    runner = web.AppRunner(
        app, access_log=None, keepalive_timeout=settings.idle_timeout, **_HEAD_LIMITS
    )
    await runner.setup()
    sockets: list[socket.socket] = []
    try:
        for address in (*settings.bind, *([gateway] if gateway else [])):
            try:
                sock = open_tcp(address, port, freebind=address == gateway)
            except OSError as exc:
                raise ListenError(
                    f"the {what} cannot listen on {address} port {port}: "
                    f"{exc.strerror or exc}{holder(port, address)}; choose another port in "
                    "[endpoints] of config.toml"
                ) from None
            sockets.append(sock)
            port = sock.getsockname()[1]
            await FrontSite(runner, sock, door(address)).start()
    except BaseException:
        for sock in sockets:
            sock.close()
        await runner.cleanup()
        raise
    app[GUARD].listening_on(port, (gateway,) if gateway else ())
    return Listener(runner, port, sockets)


def holder(port: int, address: str) -> str:
    """Who holds `port`, as a clause for an error message, when the kernel says."""
    if port == 0:
        return ""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    uid = host.listener_uid(port, family)
    if uid is None:
        return "; another program may hold it"
    if uid == os.getuid():
        return f"; a program of yours (uid {uid}) holds it"
    return f"; uid {uid} holds it (another user's program)"


def host_peer_text(peer: host.Peer | None) -> str:
    """A peer as a refusal line names it: its uid, else its address."""
    return "an unknown peer" if peer is None else peer_key(peer)


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8 and ::1."""
    return ipaddress.ip_address(address).is_loopback


def url_host(settings: EndpointSettings) -> str:
    """The host part of URLs handed to programs: the first bound address."""
    address = settings.bind[0]
    return f"[{address}]" if ":" in address else address


def _read_token(path: Path) -> str | None:
    """A token file's token, or None when it is missing or does not look like ours."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    return text if looks_like_token(text) else None


def _unresolvable(_: dict[str, Any]) -> Any:
    raise RolecacheError("no resolver to serve runtime bindings again")


# -- the manager ------------------------------------------------------------------------------


@dataclass
class Served:
    """A binding being served: its tokens, token file, IMDS listener and warm-up state."""

    binding: Binding
    ring: TokenRing
    token_file: Path
    imds: Listener | None = None
    # Where the container token was handed out: beside the token file, in the same folder.
    container_file: Path = field(init=False)
    capability_file: Path = field(init=False)
    imds_tokens: ImdsTokens = field(default_factory=ImdsTokens)
    warm_task: asyncio.Task[Credentials] | None = None
    next_warm: float = 0.0
    warm_failures: int = 0
    last_error: str | None = None
    # The container answer rendered for the credentials it was rendered from: the same
    # bytes serve every request until renewal (json.dumps per request is a visible share).
    # (credentials, the handler's JSON body, the fast lane's HTTP responses)
    rendered: tuple[Credentials, bytes, tuple[bytes, bytes]] | None = field(
        default=None, repr=False
    )

    def __post_init__(self) -> None:
        self.container_file = self.token_file.with_name(CONTAINER_TOKEN_FILE)
        self.capability_file = self.token_file.with_name(CAPABILITY_FILE)


def _retrieve(task: "asyncio.Future[Any]") -> None:
    # An endpoint request stopped waiting; the fetch goes on for the next one. Its failure
    # is the store's to log, so only mark it retrieved.
    if not task.cancelled():
        task.exception()


class EndpointManager:
    """Owns the bindings and serves them: one ECS listener, one IMDS listener per binding."""

    def __init__(
        self,
        store: Store,
        settings: EndpointSettings,
        tokens_dir: Path,
        *,
        sandbox: bool = False,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        bindings: list[Binding] | tuple[Binding, ...] = (),
        gate: Gate | None = None,
        state_file: Path | None = None,
        resolver: Resolve | None = None,
    ) -> None:
        self.store = store
        # Shared with the socket's listener in the daemon, so the caps hold over all of them.
        self.gate = gate or Gate(os.getuid(), Caps.for_fd_limit(raise_fd_limit()))
        self._initial = list(bindings)
        self.settings = settings
        self.tokens_dir = tokens_dir
        self.sandbox = sandbox
        self.clock = clock
        self._rng = rng or random.Random()
        self._served: dict[str, Served] = {}
        self._ecs: Listener | None = None
        self._lock = asyncio.Lock()  # adds and removes happen one at a time
        store.on_drop(self._forget_rendered)
        # Where bindings outlive the process (None: they do not), how runtime bindings are
        # resolved again at start, and what the last run left, until start() has used it.
        self.state_file = state_file
        self._resolver = resolver
        self._saved = bindingstate.State()
        self.port_80 = False  # see set_port_80
        for address in check_addresses(settings.bind, settings.allow_non_loopback):
            log.warning(
                "container endpoints will listen on %s, which is not loopback: anyone who "
                "reaches it and holds a token gets credentials",
                address,
            )

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve the bindings from the config file and those added at run time before a
        restart, with the ports, token files and container tokens they had; their credentials
        are fetched by the first tick, in the background (start-up never waits for STS)."""
        if self.state_file is not None:
            self._saved = bindingstate.load(self.state_file)
            self.port_80 = self._saved.port_80
        for binding in self._initial:
            await self.add(binding, warm=False)
        for saved in list(self._saved.bindings.values()):
            if saved.spec.origin != "runtime" or saved.spec.name in self._served:
                continue
            try:
                binding = resolve(saved.spec, self._resolver or _unresolvable)
                await self.add(binding, warm=False)
            except RolecacheError as exc:
                log.warning("endpoint %s is not served again: %s", saved.spec.name, exc)
        self._saved = bindingstate.State()  # used up: later adds are new bindings
        self._persist()
        self.tick()

    async def close(self) -> None:
        """Stop every listener; token files stay, for the next start to serve again."""
        for served in list(self._served.values()):
            await self._drop(served, keep_files=True)
        self._served.clear()
        if self._ecs is not None:
            await self._ecs.close()
            self._ecs = None

    async def run(self) -> None:
        """Tick forever: rotate tokens when due, warm bindings that have nothing to serve."""
        while True:
            await asyncio.sleep(self.settings.tick)
            self.tick()

    def tick(self) -> None:
        """One round of token rotation and warm-up, at the injected clock's time."""
        now = self.clock()
        entries = {e.request: e for e in self.store.entries()}
        for served in self._served.values():
            if now - served.ring.rotated_at >= self.settings.token_rotation:
                served.ring.rotate(now)
                self._write_secret(served.token_file, served.ring.current)
                self._persist()
                log.info("rotated the token of endpoint %s", served.binding.name)
            entry = entries.get(served.binding.request)
            creds = entry.credentials if entry is not None else None
            busy = served.warm_task is not None and not served.warm_task.done()
            if (
                not cache.servable(creds, now, IMDS_MIN_TTL)
                and not busy
                and now >= served.next_warm
            ):
                served.warm_task = asyncio.get_running_loop().create_task(self._warm(served))

    async def _warm(self, served: Served) -> Credentials | None:
        """Fetch a binding's credentials with nobody asking; back off while it fails."""
        name = served.binding.name
        try:
            creds = await self.store.get(served.binding.request, IMDS_MIN_TTL)
        except MfaRequired:
            served.next_warm = float("inf")  # only a person can type the code
            served.last_error = "needs an MFA code"
            log.warning(
                "endpoint %s needs an MFA code: run `rolecache endpoint add %s ... --replace` "
                "in a terminal",
                name,
                name,
            )
            return None
        except RolecacheError as exc:
            served.warm_failures += 1
            delay = cache.backoff_delay(served.warm_failures, self._rng, base=5.0, cap=300.0)
            served.next_warm = self.clock() + delay
            served.last_error = exc.message
            log.warning("endpoint %s has no credentials (%s); next try in %.0f s", name, exc, delay)
            return None
        served.warm_failures = 0
        served.next_warm = 0.0
        served.last_error = None
        return creds

    # -- bindings -------------------------------------------------------------------------

    def get(self, name: str) -> Served:
        """The served binding called `name`."""
        served = self._served.get(name)
        if served is None:
            raise NoSuchBinding(
                f"no endpoint is called {name!r}; `rolecache endpoint list` shows them"
            )
        return served

    def all(self) -> list[Served]:
        """Every served binding, in the order they were added."""
        return list(self._served.values())

    async def add(
        self,
        binding: Binding,
        *,
        replace: bool = False,
        warm: bool = True,
        token_code: str | None = None,
    ) -> Served:
        """Serve `binding`. With `warm`, its credentials are fetched first, so a failure
        (AccessDenied, an MFA code needed) is reported here and nothing is created."""
        async with self._lock:
            old = self._served.get(binding.name)
            if old is not None and not replace:
                raise BindingExists(
                    f"an endpoint called {binding.name!r} exists; pass --replace to replace it"
                )
            await self._ensure_ecs()
            self.store.pin(binding.request)
            if warm:
                try:
                    await self.store.get(binding.request, IMDS_MIN_TTL, token_code)
                except BaseException:
                    self._unpin_unless_used(binding.request)
                    raise
            saved = self._saved.bindings.get(binding.name)
            imds_port = binding.spec.imds_port or (saved.imds_port if saved else 0)
            if old is None:
                served = self._new_served(binding, saved)
            else:
                # Replacing keeps the token, so programs holding the token file go on.
                served = old
                previous = old.binding
                served.binding = binding
                served.rendered = None
                self._unpin_unless_used(previous.request)
                if binding.spec.imds_port and old.imds and old.imds.port != binding.spec.imds_port:
                    await old.imds.close()
                    served.imds = None
            if served.imds is None:
                try:
                    served.imds = await self._listen_imds(served, imds_port, saved is not None)
                except ListenError:
                    if old is None:
                        self._unpin_unless_used(binding.request)
                    raise
            self._write_secret(served.token_file, served.ring.current)
            self._served[binding.name] = served
            self._persist()
            log.info(
                "endpoint %s serves %s (IMDS on port %d)",
                binding.name,
                binding.request.describe(),
                served.imds.port,
            )
            return served

    def _new_served(self, binding: Binding, saved: bindingstate.SavedBinding | None) -> Served:
        """A binding's serving state. One the last run served gets its token file's token
        and its container token again, so programs started before the restart go on."""
        path = self.token_path(binding.name)
        now = self.clock()
        current = _read_token(path) if saved is not None else None
        container = saved.container_digest if saved is not None else None
        capability = saved.capability_digest if saved is not None else None
        served = Served(
            binding,
            TokenRing(
                saved.rotated_at if saved is not None and current else now,
                self.settings.token_grace,
                current=current,
                container_digest=container,
                capability_digest=capability,
            ),
            path,
        )
        # New, or its file is gone (a reboot empties the runtime folder): nobody can be
        # handed the old one again, so it is replaced.
        if container is None or _read_token(served.container_file) is None:
            self._write_secret(served.container_file, served.ring.new_container_token())
        if capability is None or not served.capability_file.exists():
            self._write_secret(served.capability_file, served.ring.new_capability())
        return served

    async def _listen_imds(self, served: Served, port: int, restored: bool) -> Listener:
        """The binding's IMDS listener on `port`; a restored binding whose port was taken
        meanwhile gets another (its URL changes, which is logged)."""
        name = served.binding.name

        async def on(port: int) -> Listener:
            return await listen(
                self._imds_app(served),
                self.settings,
                port,
                f"IMDS listener of endpoint {name!r}",
                # IMDS is for host processes: a peer must have our uid (or root's).
                lambda _address: self._door(f"IMDS of {name}"),
            )

        if not restored or not port or served.binding.spec.imds_port:
            return await on(port)
        try:
            return await on(port)
        except ListenError as exc:
            log.warning("endpoint %s: %s; it gets another port, and a new IMDS URL", name, exc)
            return await on(0)

    def _persist(self) -> None:
        """Save what a restart needs; a failure is logged, the bindings serve on."""
        if self.state_file is None:
            return
        state = bindingstate.State(self._ecs.port if self._ecs is not None else None)
        state.port_80 = self.port_80
        for name, served in self._served.items():
            state.bindings[name] = bindingstate.SavedBinding(
                served.binding.spec,
                served.imds.port if served.imds is not None else 0,
                served.ring.rotated_at,
                served.ring.container_digest,
                served.ring.capability_digest,
            )
        try:
            bindingstate.save(self.state_file, state)
        except OSError as exc:
            log.error("cannot save the endpoint state %s: %s", self.state_file, exc)

    def set_port_80(self, on: bool) -> None:
        """Record whether port 80 of 169.254.170.2 is redirected to the container port (the
        user ran `rolecache docker setup --port-80`): the docker hand-off is then a
        RELATIVE_URI, which SDKs of every generation accept. The host cannot check it: its
        own packets skip PREROUTING."""
        self.port_80 = on
        self._persist()
        log.info("port 80 of %s %s redirected here", DOCKER_GATEWAY, "is" if on else "is no longer")

    async def remove(self, name: str) -> None:
        """Stop serving `name`: its IMDS listener closes and its token files go."""
        async with self._lock:
            served = self.get(name)
            del self._served[name]
            await self._drop(served)
            self._unpin_unless_used(served.binding.request)
            self._persist()
            log.info("endpoint %s removed", name)

    def rotate(self, name: str, containers: bool = False) -> Served:
        """Give `name` a new token now; the previous one stays valid for the grace period.
        With `containers`, the container token is replaced too, and the old one stops
        working at once: that is how a leaked one is revoked."""
        served = self.get(name)
        served.ring.rotate(self.clock())
        self._write_secret(served.token_file, served.ring.current)
        if containers:
            self._write_secret(served.container_file, served.ring.new_container_token())
            self._write_secret(served.capability_file, served.ring.new_capability())
        self._persist()
        also = " and container secrets" if containers else ""
        log.info("rotated the token%s of endpoint %s", also, name)
        return served

    async def _drop(self, served: Served, keep_files: bool = False) -> None:
        if served.warm_task is not None:
            served.warm_task.cancel()
        if served.imds is not None:
            await served.imds.close()
            served.imds = None
        if not keep_files:
            shutil.rmtree(served.token_file.parent, ignore_errors=True)

    def _forget_rendered(self, request: object) -> None:
        # A dropped entry's credentials must not live on in a rendered answer.
        for served in self._served.values():
            if served.binding.request == request:
                served.rendered = None

    def _unpin_unless_used(self, request: Any) -> None:
        # Two bindings may share one entry: it stays warm while either serves it.
        if not any(s.binding.request == request for s in self._served.values()):
            self.store.pin(request, False)

    async def _ensure_ecs(self) -> None:
        # Bound on first use, so a user without bindings never holds the fixed port.
        if self._ecs is None:
            port = self.settings.ecs_port(self.sandbox, os.getuid())
            if port == 0 and self._saved.container_port:
                port = self._saved.container_port  # "any free port" once: the same again
            app = self._ecs_app()
            guard = app[GUARD]
            lane = ecslane.EcsLane(
                self._served,
                lambda: guard.hosts,
                guard.limiter,
                self.clock,
                lambda binding, floor: self.held(binding, floor),
                lambda served, creds: self.render_ecs(served, creds)[1],
                lambda *hand_out: self.handed_out(*hand_out),
            )
            self._ecs = await listen(
                app,
                self.settings,
                port,
                "container endpoint",
                # Off loopback, a peer that is no process of this host (a container) may
                # connect: its token alone decides.
                lambda address: self._door(
                    "container endpoint", token_only=not is_loopback(address), answer=lane.answer
                ),
                DOCKER_GATEWAY if self.settings.docker else None,
            )
            log.info("container endpoint listening on %s", self._ecs.addresses())
            self._persist()

    def _door(self, name: str, token_only: bool = False, answer: Any = no_answers) -> Door:
        # Every endpoint listener answers a head that is not HTTP with its own JSON 400.
        lane = Lane(answer, lambda reason: ecslane.bad_request(reason, self.sandbox))
        timeout = self.settings.idle_timeout
        return Door(name, self.gate, host.tcp_peer, token_only, timeout=timeout, lane=lane)

    def token_path(self, name: str) -> Path:
        """A binding's token file, alone in a folder of its own: a container is given exactly
        one binding's token by mounting that folder."""
        return self.tokens_dir / name / "token"

    @property
    def ecs_port(self) -> int | None:
        """The container listener's port, once it listens."""
        return None if self._ecs is None else self._ecs.port

    @property
    def container_port(self) -> int:
        """The container listener's port: bound, else the one it will bind (0: any free)."""
        if self._ecs is not None:
            return self._ecs.port
        return self.settings.ecs_port(self.sandbox, os.getuid())

    @property
    def ecs_listener(self) -> Listener | None:
        return self._ecs

    def _write_secret(self, path: Path, secret: str) -> None:
        """Write a token file (0600, no trailing newline) by rename, so a reader never sees
        half a token and a mounted folder sees the new file."""
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

    def summary(self, served: Served) -> dict[str, Any]:
        """What `rolecache endpoint list` and `env` need: never a token or a secret."""
        binding = served.binding
        host = url_host(self.settings)
        entry = next((e for e in self.store.entries() if e.request == binding.request), None)
        creds = entry.credentials if entry else None
        return {
            "name": binding.name,
            "origin": binding.spec.origin,
            "profile": binding.spec.selector.get("profile"),
            "role_arn": binding.request.role_arn,
            "role_session_name": binding.request.role_session_name,
            "duration_seconds": binding.request.duration_seconds,
            "ecs_url": f"http://{host}:{self.ecs_port}/v1/credentials/{binding.name}",
            # What a container on the docker network is handed (`endpoint env --docker`).
            "docker_url": f"http://{DOCKER_GATEWAY}:{self.ecs_port}/v1/credentials/{binding.name}"
            if self.settings.docker
            else None,
            "token_file": str(served.token_file),
            "container_token_file": str(served.container_file),
            "capability_file": str(served.capability_file),
            "port_80": self.port_80,
            # Ending in "/": older botocore appends "latest/api/token" without a slash.
            "imds_url": f"http://{host}:{served.imds.port}/" if served.imds else None,
            "imds_v1": binding.spec.imds_v1,
            "expires_in": None if creds is None else round(creds.expiration - self.clock()),
            "last_error": served.last_error
            or (str(entry.last_error) if entry and entry.last_error else None),
        }

    # -- serving --------------------------------------------------------------------------

    def held(self, binding: Binding, floor: float) -> Credentials | None:
        """`binding`'s credentials with at least `floor` seconds left, if memory holds them:
        what the handler and the fast lane both serve without waiting (the lane only
        these)."""
        return self.store.peek(binding.request, floor)

    async def credentials(self, binding: Binding, floor: float) -> Credentials:
        """Credentials with at least `floor` seconds left, waiting at most `settings.wait`
        for STS: SDKs time out at 2 s, and a late answer helps nobody."""
        held = self.held(binding, floor)
        if held is not None:
            return held  # the common case: from memory, no task, no wait
        fetch = asyncio.ensure_future(self.store.get(binding.request, floor))
        done, _ = await asyncio.wait({fetch}, timeout=self.settings.wait)
        if not done:
            fetch.add_done_callback(_retrieve)
            raise Unavailable(
                f"endpoint {binding.name!r}: no credentials with {floor // 60:.0f} min left yet; "
                "renewal is in progress, try again shortly"
            )
        try:
            return fetch.result()
        except StsError as exc:
            if exc.status == 502:
                raise StsRefused(exc.message, code=exc.code) from None
            raise Unavailable(exc.message, code=exc.code) from None
        except RolecacheError as exc:
            raise Unavailable(exc.message, code=exc.code) from None

    def _ecs_app(self) -> web.Application:
        app = web.Application(
            middlewares=[endpoint_middleware], client_max_size=self.settings.max_body
        )
        app[GUARD] = Guard(self.settings, self.clock, self.sandbox, self.gate)
        app.router.add_get(ECS_PATH, self._ecs_credentials)
        app.router.add_get(ECS_PATH + "/{capability}", self._ecs_credentials)
        return app

    async def _ecs_credentials(self, request: web.Request) -> web.Response:
        """GET /v1/credentials/{name} with the binding's token as Authorization."""
        token = request.headers.get("Authorization")
        if not token:
            raise Unauthorized("the Authorization header must carry the endpoint's token")
        name = request.match_info["name"]
        served = self._served.get(name)
        capability = request.match_info.get("capability")
        # An unknown name gets the wrong token's answer: names are not for probing. The
        # RELATIVE_URI path needs both its capability and the token.
        if (
            served is None
            or not served.ring.valid(token, self.clock())
            or (capability is not None and not served.ring.capability_valid(capability))
        ):
            peer = self.gate.peer_of(request.transport)
            who = host_peer_text(peer)
            self.gate.refusals.refused(f"container requests with a wrong token from {who}")
            raise Forbidden("the token is not valid for this endpoint")
        request.app[GUARD].throttle(request, name)
        creds = await self.credentials(served.binding, ECS_MIN_TTL)
        body, _ = self.render_ecs(served, creds)
        self.handed_out(
            served, creds, self.gate.peer_of(request.transport), request.headers.get("User-Agent")
        )
        return web.Response(body=body, content_type="application/json")

    def handed_out(
        self,
        served: Served,
        creds: Credentials,
        peer: host.Peer | None,
        agent: str | None,
        listener: str = "container endpoint",
    ) -> None:
        """Count one hand-out of `served`'s credentials (hits and last requester in `rolecache
        list`) and write its audit line: the handler's and the fast lane's one place."""
        binding = served.binding
        who = audit.endpoint_requester(peer, f"{listener} {binding.name}", agent)
        self.store.record_hit(binding.request, who)
        if audit.log.isEnabledFor(logging.INFO):  # describe() only when it is written
            audit.served(binding.request.describe(), creds, who, self.clock())

    def render_ecs(self, served: Served, creds: Credentials) -> tuple[bytes, tuple[bytes, bytes]]:
        """The container answer for `creds`: the handler's JSON body and the fast lane's
        whole HTTP responses, rendered once per credentials object (the one place for both)."""
        if served.rendered is None or served.rendered[0] is not creds:
            body = json.dumps(ecs_document(served.binding, creds)).encode()
            served.rendered = (creds, body, ecslane.http_responses(body, self.sandbox))
        return served.rendered[1], served.rendered[2]

    def _imds_app(self, served: Served) -> web.Application:
        app = web.Application(
            middlewares=[endpoint_middleware, self._imds_token_middleware(served)],
            client_max_size=self.settings.max_body,
        )
        app[GUARD] = Guard(self.settings, self.clock, self.sandbox, self.gate)

        async def put_token(request: web.Request) -> web.Response:
            """PUT /latest/api/token: a session token for this listener only."""
            if "X-Forwarded-For" in request.headers:
                # IMDS refuses forwarded requests, so a proxy on this host cannot relay them.
                raise Forbidden("requests with X-Forwarded-For are refused")
            try:
                ttl = parse_ttl(request.headers.get(IMDS_TTL_HEADER))
            except ValueError as exc:
                raise EndpointBadRequest(str(exc)) from None
            token = served.imds_tokens.issue(ttl, self.clock())
            return web.Response(
                text=token, content_type="text/plain", headers={IMDS_TTL_HEADER: str(ttl)}
            )

        async def roles(request: web.Request) -> web.Response:
            """The role listing: exactly one name, no newline."""
            return web.Response(text=served.binding.name, content_type="text/plain")

        async def role(request: web.Request) -> web.Response:
            """The credentials document of the one role; other names are 404."""
            if request.match_info["role"] != served.binding.name:
                raise EndpointNotFound("no such role at this endpoint")
            extended = request.path.startswith(IMDS_ROLES_EXTENDED)
            binding = served.binding
            creds = await self.credentials(binding, IMDS_MIN_TTL)
            peer = self.gate.peer_of(request.transport)
            self.handed_out(served, creds, peer, request.headers.get("User-Agent"), "IMDS")
            return web.json_response(imds_document(binding, creds, extended))

        app.router.add_put(IMDS_TOKEN_PATH, put_token)
        for base in (IMDS_ROLES, IMDS_ROLES_EXTENDED):
            app.router.add_get(base, roles)
            app.router.add_get(base + "/", roles)
            app.router.add_get(base + "/{role}", role)
        return app

    def _imds_token_middleware(self, served: Served) -> Any:
        @web.middleware
        async def require_token(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            # Every GET needs a session token (IMDSv2), unless the binding allows v1.
            if request.method != "PUT":
                token = request.headers.get(IMDS_TOKEN_HEADER)
                if token is None:
                    if not served.binding.spec.imds_v1:
                        raise Unauthorized("an IMDSv2 session token is required")
                elif not served.imds_tokens.valid(token, self.clock()):
                    raise Unauthorized("the session token is not valid or has expired")
            request.app[GUARD].throttle(request, served.binding.name)
            return await handler(request)

        return require_token
