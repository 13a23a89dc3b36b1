"""Load on a running daemon: concurrent clients, a new connection per request (B4, B5).

    from bench.throughput import load
    load(connect, request_bytes, clients=50, total=20000)

Each client opens a connection, sends one request, reads the whole answer, closes, and goes
again; this is what shells calling `rolecache` do. The load runs in `processes` worker
processes so the load generator is not the bottleneck of a 2-core machine.
"""

import multiprocessing
import socket
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """Where to send the load: a Unix socket path or a (host, port) pair."""

    unix_path: str | None = None
    host: str = "127.0.0.1"
    port: int = 0

    def connect(self) -> socket.socket:
        if self.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.unix_path)
            return sock
        return socket.create_connection((self.host, self.port))


def _client(
    target: Target, request: bytes, count: int, latencies: list[float], errors: list[int]
) -> None:
    for _ in range(count):
        start = time.perf_counter()
        sock = target.connect()
        try:
            sock.sendall(request)
            chunks = []
            while chunk := sock.recv(65536):  # Connection: close: read to the end
                chunks.append(chunk)
        finally:
            sock.close()
        latencies.append(time.perf_counter() - start)
        if not b"".join(chunks).startswith(b"HTTP/1.1 200"):
            errors.append(1)


def _worker(args: tuple[Target, bytes, int, int]) -> tuple[list[float], int]:
    # Blocking sockets in threads: the GIL is free during each syscall, and a thread costs the
    # load generator far less CPU per request than asyncio streams would.
    target, request, clients, total = args
    latencies: list[float] = []
    errors: list[int] = []
    per_client = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]
    threads = [
        threading.Thread(target=_client, args=(target, request, n, latencies, errors))
        for n in per_client
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, len(errors)


def load(
    target: Target, request: bytes, clients: int = 50, total: int = 20000, processes: int = 2
) -> dict[str, float]:
    """Send `total` requests from `clients` concurrent clients; return req/s, latency
    percentiles (ms) and the number of non-200 answers."""
    share = [(target, request, clients // processes, total // processes)] * processes
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        results = pool.map(_worker, share)
    elapsed = time.perf_counter() - start
    latencies = sorted(x for lat, _ in results for x in lat)
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(n * p))] * 1000

    return {
        "requests": n,
        "seconds": elapsed,
        "rps": n / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000,
        "errors": sum(e for _, e in results),
    }


def http_request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    """A complete HTTP/1.1 request that asks the server to close the connection after it."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
