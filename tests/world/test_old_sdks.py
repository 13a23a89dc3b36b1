"""The SDK generations from before 2023 that are neither Python nor JS, as Debian 12 packages
them, with their unmodified default credential chains against a real daemon, on the host and
in containers on the test network; each proves its credentials with GetCallerIdentity at moto.

- The AWS SDK for Go v2 1.17.1 (golang-github-aws-aws-sdk-go-v2-dev: config 1.17.10,
  credentials 1.12.23) takes AWS_CONTAINER_CREDENTIALS_FULL_URI only when its host is a
  loopback address (config/local.go, resolve_credentials.go), sends
  AWS_CONTAINER_AUTHORIZATION_TOKEN and knows no token file (config/env_config.go), and joins
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI onto http://169.254.170.2.
- Ruby's aws-sdk-core 3.168.1 (ruby-aws-sdk-core) knows no FULL_URI and no token at all:
  its ECSCredentials asks http://169.254.170.2:80 for RELATIVE_URI without an Authorization
  header (ecs_credentials.rb), and its InstanceProfileCredentials keeps only the host of
  AWS_EC2_METADATA_SERVICE_ENDPOINT and always connects to port 80
  (instance_profile_credentials.rb: `Net::HTTP.new(uri.hostname, @port || uri.port)` with
  `@port = options[:port] || 80`).

The Go probe is built here, offline, from Debian's sources (GOPATH mode, no module proxy)."""

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.containerkit import docker_env
from tests.daemonkit import BIN, Daemon, unique_role
from tests.dockerkit import loopback_80_held, port_80_redirect, run_container
from tests.e2ekit import add
from tests.kit import assumed_arn as assumed
from tests.sdkkit import refused

ROOT = Path(__file__).resolve().parent.parent.parent
GO_SDK = ROOT / ".cache" / "go-sdk"  # the probe's source, build cache and binary
GOPATH = Path("/usr/share/gocode")  # where golang-github-aws-aws-sdk-go-v2-dev puts its sources
GO_SDK_PACKAGE = "golang-github-aws-aws-sdk-go-v2-dev"
GO_SDK_VERSION = "1.17.1"
RUBY_SDK_VERSION = "3.168.1"
# The default chain, as an application has it, and STS at MOTO_URL. Exit 2: the chain
# refused its configuration; exit 1: the call failed (no credentials, say).
GO_PROBE = """package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(2)
	}
	client := sts.NewFromConfig(cfg, func(o *sts.Options) {
		o.EndpointResolver = sts.EndpointResolverFromURL(os.Getenv("MOTO_URL"))
	})
	out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "sts:", err)
		os.Exit(1)
	}
	report, _ := json.Marshal(map[string]string{"arn": *out.Arn})
	fmt.Println(string(report))
}
"""
# The same for Ruby: the provider class the chain picked, or the error's class on stderr.
RUBY_PROBE = """
require 'aws-sdk-core'
require 'json'
begin
  sts = Aws::STS::Client.new(region: 'us-east-1', endpoint: ENV.fetch('MOTO_URL'))
  arn = sts.get_caller_identity.arn
  puts JSON.generate(arn: arn, provider: sts.config.credentials.class.name)
rescue StandardError => e
  warn "#{e.class}: #{e.message}"
  exit 1
end
"""
MISSING = "Aws::Errors::MissingCredentialsError"
# The chain's own ECS provider (retries: 0, as the chain makes it) with its wire trace kept in
# memory: only the answer's status, the Host sent and whether an Authorization header went
# out are printed, never the path (its capability is a secret).
RUBY_WIRE = r"""
require 'aws-sdk-core'
require 'json'
require 'stringio'
wire = StringIO.new
provider = Aws::ECSCredentials.new(retries: 0, http_debug_output: wire)
sent = wire.string.lines.select { |l| l.start_with?('<- ') }.join
puts JSON.generate(
  set: provider.set?,
  status: wire.string[/-> "HTTP\/1\.1 (\d{3})/, 1],
  host: sent[/Host: ([^\\]*)\\r/, 1],
  authorization: sent.downcase.include?('authorization:')
)
"""
# What `endpoint env --docker` says on stderr when it hands out FULL_URI at 169.254.170.2.
MODERN_ONLY = "older Go and Ruby SDKs accept only a RELATIVE_URI"


def debian_version(package: str) -> str | None:
    """The installed version of a Debian package (without its revision), or None."""
    if shutil.which("dpkg-query") is None:
        return None
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status} ${Version}", package],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0 or not result.stdout.startswith("install ok installed"):
        return None
    return result.stdout.split()[-1].split("-")[0]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the duration."""
    import fcntl

    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def go_probe() -> Path:
    """The Go probe, built once with Debian's Go and AWS SDK for Go v2 1.17.1, or skip."""
    go = shutil.which("go")
    version = debian_version(GO_SDK_PACKAGE)
    if go is None or version is None:
        pytest.skip(
            f"!!! SKIPPED: the Go SDK v2 tests need golang-go and {GO_SDK_PACKAGE} "
            "(.ci/run installs them)"
        )
    if version != GO_SDK_VERSION:
        pytest.skip(f"!!! SKIPPED: these tests pin the Go SDK v2 {GO_SDK_VERSION}; found {version}")
    source = GO_SDK / "src" / "probe" / "main.go"
    binary = GO_SDK / "probe"
    source.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(GO_SDK / "build.lock"):  # parallel workers build it once
        if binary.exists() and source.exists() and source.read_text() == GO_PROBE:
            return binary
        source.write_text(GO_PROBE)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(GO_SDK),
            # GOPATH mode over Debian's sources: no module proxy, nothing from the network.
            "GO111MODULE": "off",
            "GOPATH": str(GOPATH),
            "GOPROXY": "off",
            "GOCACHE": str(GO_SDK / "cache"),
            # A static binary: it runs in the test image, and the build needs no C compiler.
            "CGO_ENABLED": "0",
        }
        built = subprocess.run(
            [go, "build", "-o", str(binary) + ".new", "."],
            cwd=source.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert built.returncode == 0, built.stderr
        os.replace(str(binary) + ".new", binary)
    return binary


@pytest.fixture(scope="session")
def ruby_sdk() -> str:
    """The path of Debian's ruby with aws-sdk-core 3.168.1 loadable, or skip."""
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.skip("!!! SKIPPED: the Ruby SDK tests need ruby and ruby-aws-sdk-core (.ci/run)")
    found = subprocess.run(
        [ruby, "-e", "require 'aws-sdk-core'; print Aws::CORE_GEM_VERSION"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if found.returncode != 0:
        pytest.skip("!!! SKIPPED: ruby cannot load aws-sdk-core (.ci/run installs it)")
    if found.stdout != RUBY_SDK_VERSION:
        pytest.skip(
            f"!!! SKIPPED: these tests pin aws-sdk-core {RUBY_SDK_VERSION}; found {found.stdout}"
        )
    return ruby


def run_go(probe: Path, env: dict[str, str], moto_url: str) -> subprocess.CompletedProcess:
    """Run the Go probe on the host in `env`."""
    return subprocess.run(
        [str(probe)],
        env={**env, "MOTO_URL": moto_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_ruby(ruby: str, env: dict[str, str], moto_url: str) -> subprocess.CompletedProcess:
    """Run the Ruby probe on the host in `env`."""
    return subprocess.run(
        [ruby, "-e", RUBY_PROBE],
        env={**env, "MOTO_URL": moto_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def eval_env(d: Daemon, name: str, *flags: str) -> dict[str, str]:
    """The daemon's test environment after `eval "$(rolecache endpoint env NAME ...)"` in
    bash, as a program started from that shell has it."""
    script = f'eval "$({BIN}/rolecache endpoint env {name} {" ".join(flags)})" && env -0'
    result = subprocess.run(
        ["bash", "-c", script], env=d.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return dict(item.split("=", 1) for item in result.stdout.split("\0") if item)


def report(result: subprocess.CompletedProcess) -> dict[str, str]:
    """What a probe that succeeded reported on its last line of output."""
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def arn_of(result: subprocess.CompletedProcess) -> str:
    """The ARN a probe that succeeded reported."""
    return report(result)["arn"]


# -- on the host --------------------------------------------------------------------------------


@pytest.mark.parametrize("imds", [False, True])
def test_go_sdk_v2_on_the_host_through_endpoint_env(
    edaemon: Daemon, go_probe: Path, imds: bool
) -> None:
    """The Go SDK v2 1.17.1's default chain, in the environment `eval "$(rolecache endpoint
    env NAME [--imds])"` leaves, calls STS as the role: FULL_URI is on loopback, the only
    host it accepts, with the token it reads from AWS_CONTAINER_AUTHORIZATION_TOKEN; its IMDS
    client replaces the URL's path with its own, so the trailing slash does no harm."""
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    env = eval_env(edaemon, "dev", *(["--imds"] if imds else []))
    assert ("AWS_CONTAINER_CREDENTIALS_FULL_URI" in env) is not imds
    assert arn_of(run_go(go_probe, env, edaemon.env["AWS_ENDPOINT_URL_STS"])) == assumed(
        role, "dev"
    )


@pytest.mark.parametrize("imds", [False, True])
def test_go_sdk_v2_on_the_host_ignores_a_default_profile(
    edaemon: Daemon, go_probe: Path, imds: bool
) -> None:
    """With the base user's keys as [default] in ~/.aws/credentials (read before the
    container and IMDS providers), the Go SDK v2 started by `exec --endpoint` or after
    `endpoint env` calls STS as the binding's role, not as that user."""
    Path(edaemon.env["AWS_SHARED_CREDENTIALS_FILE"]).write_text(
        "[default]\naws_access_key_id = AKIADEFAULTPROFILE01\n"
        "aws_secret_access_key = default-profile-secret\n"
    )
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    flags = ["--imds"] if imds else []
    moto_url = edaemon.env["AWS_ENDPOINT_URL_STS"]
    assert arn_of(run_go(go_probe, eval_env(edaemon, "dev", *flags), moto_url)) == assumed(
        role, "dev"
    )
    execd = subprocess.run(
        [str(BIN / "rolecache"), "exec", "--endpoint", "dev", *flags, "--", str(go_probe)],
        env={**edaemon.env, "MOTO_URL": moto_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert arn_of(execd) == assumed(role, "dev")


def test_go_sdk_v2_keeps_its_environment_across_rotations(edaemon: Daemon, go_probe: Path) -> None:
    """The Go SDK v2 1.17.1 started with an environment handed out before two rotations (which
    end the token file's first token) still gets the role: the variable it reads holds the
    container token, which rotation leaves alone; the file's first token is refused."""
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    env = eval_env(edaemon, "dev")
    first_file_token = Path(env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]).read_text()
    moto_url = edaemon.env["AWS_ENDPOINT_URL_STS"]
    assert arn_of(run_go(go_probe, env, moto_url)) == assumed(role, "dev")
    for _ in range(2):  # the ring keeps one previous token: two rotations end the first
        assert edaemon.client("endpoint", "rotate", "dev").returncode == 0
    assert refused(env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], first_file_token)
    assert arn_of(run_go(go_probe, env, moto_url)) == assumed(role, "dev")


def test_ruby_sdk_on_the_host_reads_no_full_uri(edaemon: Daemon, ruby_sdk: str) -> None:
    """aws-sdk-core 3.168.1 in the environment `eval "$(rolecache endpoint env NAME)"` leaves
    finds no credentials: its chain knows AWS_CONTAINER_CREDENTIALS_FULL_URI not at all, and
    the instance metadata it would fall back on is disabled, as in every test."""
    assert add(edaemon, "dev", unique_role()).returncode == 0
    env = eval_env(edaemon, "dev")
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"  # the sentinel's: no IMDS fallback
    result = run_ruby(ruby_sdk, env, edaemon.env["AWS_ENDPOINT_URL_STS"])
    assert result.returncode == 1 and MISSING in result.stderr, result.stdout + result.stderr


@contextlib.contextmanager
def loopback_80_recorder() -> Iterator[list[str]]:
    """A listener on 127.0.0.1:80 for the duration that answers 404 and records each request's
    method, path and Host; skips unless this process may bind port 80."""
    import http.server
    import threading

    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(f"{self.command} {self.path} Host: {self.headers.get('Host')}")
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_PUT = _answer

        def log_message(self, *args: object) -> None:
            pass

    with loopback_80_held():
        try:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 80), Handler)
        except OSError as exc:
            pytest.skip(f"cannot listen on 127.0.0.1:80: {exc}")
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield seen
        finally:
            server.shutdown()
            server.server_close()


def test_ruby_sdk_on_the_host_ignores_the_imds_port(edaemon: Daemon, ruby_sdk: str) -> None:
    """aws-sdk-core 3.168.1 with `eval "$(rolecache endpoint env NAME --imds)"` finds no
    credentials: it keeps only the host of AWS_EC2_METADATA_SERVICE_ENDPOINT and asks port 80
    of it (here a recorder), never the binding's port."""
    assert add(edaemon, "dev", unique_role()).returncode == 0
    env = eval_env(edaemon, "dev", "--imds")
    assert "AWS_EC2_METADATA_DISABLED" not in env
    assert env["AWS_EC2_METADATA_SERVICE_ENDPOINT"].startswith("http://127.0.0.1:")
    with loopback_80_recorder() as seen:
        result = run_ruby(ruby_sdk, env, edaemon.env["AWS_ENDPOINT_URL_STS"])
    assert result.returncode == 1 and MISSING in result.stderr, result.stdout + result.stderr
    assert set(seen) == {  # asked more than once: the SDK retries a failed refresh
        "PUT /latest/api/token Host: 127.0.0.1",
        "GET /latest/meta-data/iam/security-credentials/ Host: 127.0.0.1",
    }


def test_ruby_sdk_on_the_host_through_credential_process(edaemon: Daemon, ruby_sdk: str) -> None:
    """aws-sdk-core 3.168.1 gets the role from a profile whose credential_process is
    `rolecache process`, the host recipe for it (it refreshes by running it again)."""
    role = unique_role()
    config = Path(edaemon.env["AWS_CONFIG_FILE"])
    config.write_text(
        "[profile deploy]\n"
        f"credential_process = {BIN}/rolecache process --role-arn {role} --role-session-name me\n"
    )
    env = {
        k: v
        for k, v in edaemon.env.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    env["AWS_PROFILE"] = "deploy"
    result = run_ruby(ruby_sdk, env, edaemon.env["AWS_ENDPOINT_URL_STS"])
    assert report(result) == {"arn": assumed(role, "me"), "provider": "Aws::ProcessCredentials"}


# -- in containers ------------------------------------------------------------------------------

CONTAINER_GO = "/probe-go"  # where the probe is mounted in a container


def in_container(
    network: str,
    env: dict[str, str],
    moto_url: str,
    command: list[str],
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """`command` in a container on the test network, with `env`, HOME and STS at moto."""
    return run_container(
        network, {**env, "MOTO_URL": moto_url, "HOME": "/tmp"}, command, extra=extra
    )


def test_full_uri_at_the_gateway_is_refused_by_go_and_ruby(
    edaemon: Daemon, network: str, moto_at_gateway: str, go_probe: Path, ruby_sdk: str
) -> None:
    """Without the port-80 redirect, `endpoint env --docker` hands out a FULL_URI at
    169.254.170.2 and says on stderr that older Go and Ruby SDKs need RELATIVE_URI: in a
    container the Go SDK v2 1.17.1 refuses that host before any request (loopback only), and
    aws-sdk-core 3.168.1, which reads no FULL_URI, finds no credentials."""
    assert add(edaemon, "dev", unique_role()).returncode == 0
    out = edaemon.client("endpoint", "env", "dev", "--docker", "--env-file")
    assert out.returncode == 0, out.stderr
    assert MODERN_ONLY in out.stderr
    env = dict(line.split("=", 1) for line in out.stdout.splitlines())
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://169.254.170.2:")
    mount = ("-v", f"{go_probe}:{CONTAINER_GO}:ro")
    go = in_container(network, env, moto_at_gateway, [CONTAINER_GO], mount)
    assert go.returncode == 2, go.stdout + go.stderr
    assert 'invalid endpoint host, "169.254.170.2", only loopback hosts are allowed' in go.stderr
    ruby = in_container(network, env, moto_at_gateway, ["/usr/bin/ruby", "-e", RUBY_PROBE])
    assert ruby.returncode == 1 and MISSING in ruby.stderr, ruby.stdout + ruby.stderr


def test_relative_uri_through_the_port_80_redirect_go_and_ruby(
    edaemon: Daemon, network: str, moto_at_gateway: str, go_probe: Path, ruby_sdk: str
) -> None:
    """With `docker setup --port-80 --apply`, the Go SDK v2 1.17.1 in a container follows the
    RELATIVE_URI to 169.254.170.2:80 with the token variable and gets the role. aws-sdk-core
    3.168.1 follows it too but sends no Authorization header, so the daemon answers 401 and
    the SDK finds no credentials: the daemon wants the token beside the path's capability (its
    provider's wire trace shows the request and the 401)."""
    role = unique_role()
    assert add(edaemon, "dev", role).returncode == 0
    with port_80_redirect(edaemon.client, network):
        env = docker_env(edaemon)
        assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" not in env
        assert env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"].startswith("/v1/credentials/dev/")
        mount = ("-v", f"{go_probe}:{CONTAINER_GO}:ro")
        go = in_container(network, env, moto_at_gateway, [CONTAINER_GO], mount)
        assert arn_of(go) == assumed(role, "dev")
        ruby_cmd = ["/usr/bin/ruby", "-e", RUBY_PROBE]
        ruby = in_container(network, env, moto_at_gateway, ruby_cmd)
        assert ruby.returncode == 1 and MISSING in ruby.stderr, ruby.stdout + ruby.stderr
        wire = in_container(network, env, moto_at_gateway, ["/usr/bin/ruby", "-e", RUBY_WIRE])
        assert report(wire) == {
            "set": False,
            "status": "401",
            "host": "169.254.170.2",
            "authorization": False,
        }
