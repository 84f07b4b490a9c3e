"""A local HTTP/1.1 server that answers like a real service and injects the failures of real networks.

``FaultyServer(app)`` runs ``app(path, query) -> Reply`` in a thread per request (``app`` speaks a
protocol: Europe PMC, E-utilities, or a proxy to a local S3 server) and, per request, may apply a
fault instead of (or to) the app's answer:

- ``429`` / ``503``: the status with ``Retry-After`` (seconds);
- ``500``: a plain server error;
- ``reset``: the headers announce the full body, half of it is sent, then the TCP connection is
  reset (``SO_LINGER`` 0);
- ``truncated_gzip``: ``Content-Encoding: gzip`` with the compressed stream cut in half (a
  consistent ``Content-Length``, so only the gzip decoder can notice);
- ``corrupt``: the body with bytes flipped (same length: an MD5 check must catch it);
- ``slow``: no answer until the client gives up and closes the connection: past the client's
  timeout however busy the machine is (a client that never gives up gets the answer after
  ``HOLD_LIMIT`` s, and the test sees one request where it expected a retry).

Faults come from ``script`` (path substring → faults for the next matching requests, in order),
then at random with probability ``fault_rate`` (seeded). Every request is logged with the fault
applied, so tests can count what was served. ``hold_after(n)`` lets the first ``n`` requests
through and holds the later ones unanswered until ``release()``: a client stopped at a chosen
request, not after a chosen time.
"""

from __future__ import annotations

import gzip
import random
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

FAULTS = ("429", "503", "500", "reset", "truncated_gzip", "slow")
"""Faults safe for any route; ``corrupt`` only makes sense where the client knows an MD5."""
HOLD_LIMIT = 60.0
"""Longest a request is held (``slow``, ``hold_after``): a safety net against a hung test."""


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Served:
    path: str
    query: dict[str, list[str]]
    fault: str | None
    status: int
    at: float

    @property
    def ok(self) -> bool:
        """The client received the app's complete, intact answer."""
        return self.fault is None and self.status == 200


App = Callable[[str, dict[str, list[str]]], Reply]


class FaultyServer:
    def __init__(
        self,
        app: App,
        *,
        fault_rate: float = 0.0,
        faults: tuple[str, ...] = FAULTS,
        seed: int = 0,
        retry_after: int = 1,
        gzip_replies: bool = True,
    ) -> None:
        self.app = app
        self.fault_rate = fault_rate
        self.faults = faults
        self.retry_after = retry_after
        self.gzip_replies = gzip_replies
        self.script: dict[str, list[str]] = {}
        self.log: list[Served] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._permits: int | None = None
        self._held = 0
        self._released = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()

    def choose_fault(self, path: str) -> str | None:
        with self._lock:
            for pattern, queue in self.script.items():
                if pattern in path and queue:
                    return queue.pop(0)
            if self.fault_rate and self._rng.random() < self.fault_rate:
                return self._rng.choice(self.faults)
            return None

    def record(self, served: Served) -> None:
        with self._changed:
            self.log.append(served)
            self._changed.notify_all()

    def served(self, path_part: str = "") -> list[Served]:
        with self._lock:
            return [s for s in self.log if path_part in s.path]

    def ok_count(self, path_part: str) -> int:
        return sum(s.ok for s in self.served(path_part))

    def hold_after(self, n: int) -> None:
        """Answer the next ``n`` requests, then hold every later one unanswered until ``release``."""
        with self._lock:
            self._permits = n
            self._released.clear()

    def release(self) -> None:
        """Answer the held requests (to clients that may be gone) and hold no more."""
        with self._lock:
            self._permits = None
            self._released.set()

    def wait_for_held(self, n: int) -> None:
        """Block until ``n`` requests are held: the client is stopped, waiting for their answers."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._held >= n, timeout=HOLD_LIMIT):
                raise TimeoutError(f"fewer than {n} requests held after {HOLD_LIMIT} s")

    def _pass_gate(self) -> None:
        with self._changed:
            if self._permits is None:
                return
            if self._permits > 0:
                self._permits -= 1
                return
            self._held += 1
            self._changed.notify_all()
        self._released.wait(HOLD_LIMIT)


class _QuietServer(ThreadingHTTPServer):
    """Clients that vanish mid-request (killed, timed out) are part of the tests, not errors."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler(server: FaultyServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, keep_blank_values=True)
            server._pass_gate()
            fault = server.choose_fault(self.path)
            if fault in ("429", "503", "500"):
                reply = Reply(int(fault), b"unavailable", {"Content-Type": "text/plain"})
                if fault != "500":
                    reply.headers["Retry-After"] = str(server.retry_after)
            else:
                reply = server.app(parts.path, query)
            server.record(Served(parts.path, query, fault, reply.status, time.monotonic()))
            try:
                self.send(reply, fault)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def send(self, reply: Reply, fault: str | None) -> None:
            body, headers = reply.body, dict(reply.headers)
            if fault == "slow" and wait_for_hang_up(self.connection):
                self.close_connection = True
                return
            if fault == "corrupt" and body:
                body = bytes(b ^ 0x5A for b in body[:64]) + body[64:]
            if fault == "truncated_gzip":
                compressed = gzip.compress(body)
                body = compressed[: len(compressed) // 2]
                headers["Content-Encoding"] = "gzip"
            elif (
                server.gzip_replies
                and "gzip" in self.headers.get("Accept-Encoding", "")
                and reply.status == 200
            ):
                body = gzip.compress(body)
                headers["Content-Encoding"] = "gzip"
            self.send_response(reply.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if fault == "reset":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


def wait_for_hang_up(connection: socket.socket) -> bool:
    """Block until the client closes ``connection`` (True) or ``HOLD_LIMIT`` s have passed (False).

    The socket turns readable at the end of the stream: an HTTP/1.1 client sends nothing more on a
    connection while it waits for the answer."""
    readable, _, _ = select.select([connection], [], [], HOLD_LIMIT)
    return bool(readable)
