"""Container bindings: a name tied to one cache entry, and the settings of their listeners.

Pure: validation of names, options and listener settings, with the reasons SDKs give for the
rules. Resolving a selector into a role request (profiles read files) is injected, so
everything here tests without a file, a clock or a network.
"""

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rolecache.protocol import BINDING_NAME_RULE, valid_binding_name
from rolecached.core.request import RoleRequest
from rolecached.errors import InvalidRequest, NotFound

# Where the container endpoint serves a binding (its RELATIVE_URI form appends a capability).
ECS_PATH = "/v1/credentials/{name}"

# Remaining lifetimes the SDKs need: botocore
# refreshes container credentials under 15 min and extends IMDS ones under 15 + 2..10 min.
ECS_MIN_TTL = 15 * 60
IMDS_MIN_TTL = 25 * 60
# Sessions behind a binding: renewal starts 30 min before expiry, so a 1 h session always
# leaves the IMDS floor in reach; a shorter one would drop under it before renewal.
MIN_BINDING_DURATION = 3600

# Each user's container port is their own, so two users' daemons on one host never collide
# and nobody can squat a port everybody's programs point at: 10000 + 2 x (uid mod 11000), the
# sandbox one above. It stays below Linux's ephemeral range (32768 and up), where outgoing
# connections would take it at random.
ECS_PORT_BASE = 10000
ECS_PORT_USERS = 11000
# The gateway of the docker network `rolecache docker setup` makes (169.254.170.0/24): the
# address ECS serves container credentials at, the one non-loopback address SDKs accept for
# them over plain http. The host's bridge interface has it, so containers reach the daemon.
DOCKER_GATEWAY = "169.254.170.2"

# Request fields a binding may not set: the endpoint decides the minimum lifetime itself.
_REFUSED = {
    "min_ttl": "a binding serves at least 15 min (container) or 25 min (IMDS) of lifetime; "
    "min_ttl cannot be set on it",
    "query": "query only shapes `sts assume-role` output",
    "token_code": "an MFA code is not part of a binding",
}

Resolve = Callable[[dict[str, Any]], tuple[RoleRequest, int]]


class NoSuchBinding(NotFound):
    """No binding has that name."""

    code = "NoSuchEndpoint"


def check_name(name: object) -> str:
    """A binding name, as BINDING_NAME_RULE says."""
    if not isinstance(name, str) or not valid_binding_name(name):
        shown = repr(name)[:80]
        raise InvalidRequest(
            f"endpoint name {shown} is not valid: {BINDING_NAME_RULE} (it is used in URLs "
            "and as the IMDS role name)"
        )
    return name


@dataclass(frozen=True)
class BindingSpec:
    """What a binding was created from: its name, selector (request fields) and options."""

    name: str
    selector: Mapping[str, Any] = field(default_factory=dict)
    imds_v1: bool = False
    imds_port: int = 0  # 0: any free port
    origin: str = "runtime"  # "runtime" (rolecache endpoint add) or "config" (config.toml)


def parse_spec(name: object, body: Mapping[str, Any], origin: str = "runtime") -> BindingSpec:
    """Validate a binding's name and options; the selector is checked when it is resolved."""
    name = check_name(name)
    selector = dict(body)
    for key, why in _REFUSED.items():
        if key in selector:
            raise InvalidRequest(f"endpoint {name!r}: {why}")
    imds_v1 = selector.pop("imds_v1", False)
    if not isinstance(imds_v1, bool):
        raise InvalidRequest(f"endpoint {name!r}: imds_v1 must be true or false")
    port = selector.pop("imds_port", 0)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidRequest(f"endpoint {name!r}: imds_port must be a port number 0-65535")
    duration = selector.get("duration_seconds")
    if isinstance(duration, int) and not isinstance(duration, bool):
        check_duration(name, duration)
    return BindingSpec(name, selector, imds_v1, port, origin)


def check_duration(name: str, duration: int, source: str = "") -> None:
    """Refuse sessions too short for SDKs, saying why (SDK floors and the renewal margin)."""
    if duration < MIN_BINDING_DURATION:
        where = f" ({source})" if source else ""
        raise InvalidRequest(
            f"endpoint {name!r}: a {duration} s session{where} is too short for an endpoint; "
            f"use at least {MIN_BINDING_DURATION} s. SDKs refetch container credentials with "
            f"under {ECS_MIN_TTL // 60} min left and stretch IMDS credentials with under "
            f"{IMDS_MIN_TTL // 60} min left, and rolecache renews 30 min before expiry, so "
            "shorter sessions would be served too close to their end"
        )


@dataclass(frozen=True)
class Binding:
    """A validated binding: its spec and the role request whose entry it serves."""

    spec: BindingSpec
    request: RoleRequest

    @property
    def name(self) -> str:
        return self.spec.name


def resolve(spec: BindingSpec, resolver: Resolve) -> Binding:
    """Turn a spec into a binding with `resolver` (a profile or explicit fields), and check
    the resulting session is long enough to serve SDKs."""
    try:
        request, _ = resolver(dict(spec.selector))
    except InvalidRequest as exc:
        raise InvalidRequest(f"endpoint {spec.name!r}: {exc.message}") from None
    profile = spec.selector.get("profile")
    check_duration(
        spec.name, request.duration_seconds, f"from profile {profile!r}" if profile else ""
    )
    return Binding(spec, request)


# -- listener settings --------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointSettings:
    """Settings of the container listeners; `config.py` reads them from [endpoints]."""

    port: int | None = None  # None: this user's default_ecs_port()
    bind: tuple[str, ...] = ("127.0.0.1",)
    allow_non_loopback: bool = False
    rate_limit: float = 100.0  # requests per second per client address and listener
    rate_burst: int = 200
    idle_timeout: float = 5.0  # for the first request line and headers, and between requests
    max_body: int = 1024
    wait: float = 1.0  # longest an endpoint request waits for STS (botocore gives up at 2 s)
    token_rotation: float = 24 * 3600.0
    token_grace: float = 3600.0  # the previous token stays valid this long after rotation
    tick: float = 5.0
    # How long the port keeper holds the listening ports after the daemon stopped or died,
    # for the next start to adopt them: no other uid can listen there meanwhile.
    hold_ports: float = 600.0
    # Serve the container listener on DOCKER_GATEWAY too (every request there needs a token).
    docker: bool = True

    def ecs_port(self, sandbox: bool, uid: int) -> int:
        """The container listener's port: configured, else `uid`'s default."""
        if self.port is not None:
            return self.port
        return default_ecs_port(uid, sandbox)


def default_ecs_port(uid: int, sandbox: bool) -> int:
    """A user's default container port: the same across restarts, different for each of
    ECS_PORT_USERS consecutive uids, and sandbox + 1."""
    return ECS_PORT_BASE + 2 * (uid % ECS_PORT_USERS) + (1 if sandbox else 0)


def check_addresses(addresses: tuple[str, ...], allow_non_loopback: bool) -> list[str]:
    """Validate listen addresses; return those that are not loopback (each needs the flag)."""
    if not addresses:
        raise InvalidRequest("endpoints.bind needs at least one address, such as 127.0.0.1")
    outside = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise InvalidRequest(
                f"endpoints.bind: {address!r} is not an IP address (names are not resolved)"
            ) from None
        if not ip.is_loopback:
            outside.append(address)
    if outside and not allow_non_loopback:
        raise InvalidRequest(
            f"endpoints.bind: {', '.join(outside)} is not a loopback address; anyone who can "
            "reach it could ask for credentials. Set allow_non_loopback = true to do it anyway"
        )
    return outside


_SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "port": (int,),
    "bind": (list,),
    "allow_non_loopback": (bool,),
    "rate_limit": (int, float),
    "rate_burst": (int,),
    "idle_timeout": (int, float),
    "max_body": (int,),
    "wait": (int, float),
    "token_rotation": (int, float),
    "token_grace": (int, float),
    "tick": (int, float),
    "hold_ports": (int, float),
    "docker": (bool,),
}


def parse_endpoints_table(
    table: Mapping[str, Any],
) -> tuple[EndpointSettings, dict[str, dict[str, Any]]]:
    """The [endpoints] table of config.toml: scalar keys are listener settings, sub-tables
    ([endpoints.NAME]) are bindings, returned by name unparsed (each is checked on its own,
    with parse_spec). Raises InvalidRequest naming the setting at fault."""
    values: dict[str, Any] = {}
    specs: dict[str, dict[str, Any]] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            specs[key] = value
            continue
        kinds = _SETTING_TYPES.get(key)
        if kinds is None:
            raise InvalidRequest(
                f"unknown setting endpoints.{key}; known: {', '.join(_SETTING_TYPES)}, "
                "or a table [endpoints.NAME] for a binding"
            )
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise InvalidRequest(f"endpoints.{key} has the wrong type: {value!r}")
        if key == "bind":
            if not all(isinstance(a, str) for a in value):
                raise InvalidRequest("endpoints.bind must be a list of IP addresses")
            value = tuple(value)
        elif key == "port" and not 0 <= value <= 65535:
            raise InvalidRequest(f"endpoints.port must be 0-65535 (0: any free port), not {value}")
        elif key not in ("allow_non_loopback", "port", "bind", "docker") and value <= 0:
            raise InvalidRequest(f"endpoints.{key} must be positive, not {value!r}")
        values[key] = value
    settings = EndpointSettings(**values)
    check_addresses(settings.bind, settings.allow_non_loopback)
    return settings, specs
