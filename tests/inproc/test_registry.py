"""The registry of served bindings (registry.py) without listeners or STS: token files, token
rotation, and the state a restart serves again, on a fake clock."""

import hashlib
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from rolecached.core.bindings import Binding, EndpointSettings, parse_spec, resolve
from rolecached.core.request import parse_request
from rolecached.endpoints.answers import Rendered
from rolecached.endpoints.listeners import Listener
from rolecached.endpoints.registry import Registry, Served
from tests.kit import ACCOUNT, FakeClock

ROLE = f"arn:aws:iam::{ACCOUNT}:role/app"
SETTINGS = EndpointSettings(token_rotation=24 * 3600.0, token_grace=3600.0)


def binding(name: str = "dev", origin: str = "runtime") -> Binding:
    """A resolved binding of ROLE called `name`."""
    body = {"role_arn": ROLE, "role_session_name": name}
    return resolve(parse_spec(name, body, origin), parse_request)


def listening_on(port: int) -> Listener:
    """A listener as the registry reads it: only its port."""
    return Listener(cast(web.AppRunner, None), port, [])


def registry(tmp_path: Path, clock: FakeClock) -> Registry:
    """A registry over tmp_path's token folder and state file."""
    tokens = tmp_path / "tokens"
    tokens.mkdir(mode=0o700, exist_ok=True)
    return Registry(tokens, SETTINGS, clock, tmp_path / "state" / "endpoints.json")


def serve(reg: Registry, item: Binding, imds_port: int = 0) -> Served:
    """Register `item` as the manager does: secrets, token file, listener, then persist."""
    served = reg.new_served(item)
    reg.write_token(served)
    served.imds = listening_on(imds_port) if imds_port else None
    reg.served[item.name] = served
    reg.persist()
    return served


def test_secret_files_are_private_and_alone_in_their_folder(tmp_path: Path) -> None:
    """A binding's token, container token and capability are 0600 files with no newline, in a
    0700 folder of the binding's own, and the ring accepts what they hold."""
    clock = FakeClock()
    reg = registry(tmp_path, clock)
    served = serve(reg, binding())
    folder = served.token_file.parent
    assert folder == reg.token_path("dev").parent == reg.tokens_dir / "dev"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == ["capability", "container-token", "token"]
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not path.read_text().endswith("\n")
    assert served.token_file.read_text() == served.ring.current
    assert served.ring.valid(served.container_file.read_text(), clock())
    assert served.ring.capability_valid(served.capability_file.read_text())


def test_state_round_trip_restores_ports_tokens_and_digests(tmp_path: Path) -> None:
    """What one registry persists, the next (a restart) reads back: the container port, each
    binding's IMDS port, rotation time, token file's token, container token and capability,
    and port 80; only runtime bindings are listed to be resolved again."""
    clock = FakeClock()
    before = registry(tmp_path, clock)
    before.container_port = 10480
    before.port_80 = True
    served = serve(before, binding(), imds_port=40123)
    serve(before, binding("cfg", origin="config"), imds_port=40124)
    clock.advance(600)
    before.rotate("dev")
    secrets = (served.container_file.read_text(), served.capability_file.read_text())

    after = registry(tmp_path, clock)
    clock.advance(60)
    after.load_saved()
    assert after.saved_container_port() == 10480 and after.port_80
    assert [spec.name for spec in after.saved_runtime()] == ["dev"]
    assert after.saved_imds_port("dev") == 40123 and after.saved_imds_port("new") is None
    again = after.new_served(binding())
    assert again.ring.current == served.ring.current
    assert again.ring.rotated_at == served.ring.rotated_at == clock() - 60
    assert again.ring.valid(secrets[0], clock()) and again.ring.capability_valid(secrets[1])
    assert (again.container_file.read_text(), again.capability_file.read_text()) == secrets


def test_state_file_holds_digests_never_secrets(tmp_path: Path) -> None:
    """The state file is 0600 and holds the SHA-256 digests of the container token and the
    capability, never them nor the token file's token."""
    reg = registry(tmp_path, FakeClock())
    served = serve(reg, binding())
    assert reg.state_file is not None
    text = reg.state_file.read_text()
    assert stat.S_IMODE(reg.state_file.stat().st_mode) == 0o600
    container, capability = served.container_file.read_text(), served.capability_file.read_text()
    assert hashlib.sha256(container.encode()).hexdigest() in text
    assert hashlib.sha256(capability.encode()).hexdigest() in text
    for secret in (container, capability, served.ring.current):
        assert secret not in text


def test_a_container_token_whose_file_is_gone_is_replaced(tmp_path: Path) -> None:
    """A restored binding whose container token file is gone (a reboot empties the runtime
    folder) gets a new container token; the old one, handed to nobody now, is refused."""
    clock = FakeClock()
    before = registry(tmp_path, clock)
    served = serve(before, binding())
    lost = served.container_file.read_text()
    served.container_file.unlink()
    after = registry(tmp_path, clock)
    after.load_saved()
    again = after.new_served(binding())
    assert not again.ring.valid(lost, clock())
    assert again.ring.valid(again.container_file.read_text(), clock())


def test_forgotten_saved_state_makes_bindings_new(tmp_path: Path) -> None:
    """Once start-up has used the saved state, a binding added under an old name is new: a
    new token, not the one its file held."""
    clock = FakeClock()
    old = serve(registry(tmp_path, clock), binding())
    after = registry(tmp_path, clock)
    after.load_saved()
    after.forget_saved()
    assert after.saved_imds_port("dev") is None
    assert after.new_served(binding()).ring.current != old.ring.current


def test_rotate_due_replaces_only_tokens_past_the_rotation_age(tmp_path: Path) -> None:
    """rotate_due leaves a younger token alone; past `token_rotation` the token file gets a
    new token, the previous one works for the grace period, and the state file is saved."""
    clock = FakeClock()
    reg = registry(tmp_path, clock)
    served = serve(reg, binding())
    first = served.ring.current
    clock.advance(SETTINGS.token_rotation - 1)
    reg.rotate_due()
    assert served.ring.current == first
    clock.advance(1)
    reg.rotate_due()
    assert served.ring.current != first
    assert served.token_file.read_text() == served.ring.current
    assert served.ring.valid(first, clock() + SETTINGS.token_grace - 1)
    assert not served.ring.valid(first, clock() + SETTINGS.token_grace)
    assert reg.state_file is not None and str(clock()) in reg.state_file.read_text()


def test_dropped_entries_lose_their_rendered_answers(tmp_path: Path) -> None:
    """forget_rendered clears the rendered answers of the bindings serving that request only."""
    reg = registry(tmp_path, FakeClock())
    dev, other = serve(reg, binding()), serve(reg, binding("other"))
    for served in (dev, other):
        served.rendered = Rendered(cast(Any, "creds"), b"{}", b"", b"")
    reg.forget_rendered(dev.binding.request)
    assert dev.rendered is None and other.rendered is not None
    assert reg.serves(other.binding.request)
    assert not reg.serves(replace(other.binding.request, role_session_name="nobody"))
