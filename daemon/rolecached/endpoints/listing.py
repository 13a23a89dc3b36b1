"""What `rolecache endpoint list`, `endpoint env` and `status` say of the endpoints: URLs, files,
ports and waits, never a token or a secret."""

from typing import Any

from rolecached.core.bindings import DOCKER_GATEWAY, ECS_PATH, EndpointSettings
from rolecached.core.store import Store
from rolecached.endpoints.ports import Ports, container_port, docker_refusal
from rolecached.endpoints.portwaits import Waits
from rolecached.endpoints.registry import Served


def url_host(settings: EndpointSettings) -> str:
    """The host part of URLs handed to programs: the first bound address."""
    address = settings.bind[0]
    return f"[{address}]" if ":" in address else address


def summary(served: Served, ports: Ports, waits: Waits, store: Store) -> dict[str, Any]:
    """What `rolecache endpoint list` and `env` need of one binding."""
    binding = served.binding
    host = url_host(ports.settings)
    port = container_port(ports)
    path = ECS_PATH.format(name=binding.name)
    entry = next((e for e in store.entries() if e.request == binding.request), None)
    creds = entry.credentials if entry else None
    refusal = docker_refusal(ports)
    return {
        "name": binding.name,
        "origin": binding.spec.origin,
        "profile": binding.spec.selector.get("profile"),
        "role_arn": binding.request.role_arn,
        "role_session_name": binding.request.role_session_name,
        "duration_seconds": binding.request.duration_seconds,
        "ecs_url": f"http://{host}:{port}{path}",
        # A RELATIVE_URI is this path, "/", and the secret in capability_file.
        "ecs_path": path,
        # What a container on the docker network is handed (`endpoint env --docker`),
        # only while an interface has the address; else why not.
        "docker_url": None if refusal else f"http://{DOCKER_GATEWAY}:{port}{path}",
        "docker_refusal": refusal,
        "token_file": str(served.token_file),
        "container_token_file": str(served.container_file),
        "capability_file": str(served.capability_file),
        "port_80": ports.registry.port_80,
        # Ending in "/": older botocore appends "latest/api/token" without a slash.
        "imds_url": f"http://{host}:{served.imds.port if served.imds else served.port}/"
        if served.imds or served.port
        else None,
        # Why it does not answer yet ("waiting for port N, held by uid U"), else None.
        "waiting": waits.container or served.waiting,
        "imds_v1": binding.spec.imds_v1,
        "expires_in": None if creds is None else round(creds.expiration - ports.clock()),
        "last_error": served.last_error
        or (str(entry.last_error) if entry and entry.last_error else None),
    }


def status(ports: Ports, waits: Waits, skipped: list[str]) -> dict[str, Any]:
    """What `rolecache status` says of the endpoints: counts, and alerts when there are."""
    waiting = [s for s in ports.registry.served.values() if s.waiting]
    info: dict[str, Any] = {
        "endpoints": len(ports.registry.served),
        "endpoints_waiting": ", ".join(
            [
                *(["container endpoint: " + waits.container] if waits.container else []),
                *(f"{s.binding.name}: {s.waiting}" for s in waiting),
            ]
        )
        or "none",
        # config.toml bindings skipped at start, and why.
        "config_errors": skipped,
    }
    if ports.held is not None:
        info["port_keeper"] = ports.held.keeper_pid or "none"
    if waits.alerts:
        info["endpoint_alerts"] = "; ".join(waits.alerts)
    return info
