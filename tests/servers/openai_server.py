"""A local OpenAI-compatible chat-completions server in a thread, for tests.

It speaks the real protocol over real HTTP: ``POST /v1/chat/completions`` with a JSON body,
answering a ``chat.completion`` object with ``usage``. Its answers come from a deterministic
keyword labeller, so tests know what a correct run produces. Failures are injected per request
from ``failures`` (consumed in order): ``"429"`` (with ``Retry-After``), ``"500"``,
``"timeout"`` (no answer until the client gives up and hangs up: past its timeout however busy
the machine is; a client that never gives up gets the right answer after ``faulty.HOLD_LIMIT``
s, as one request), ``"malformed"`` (an answer that is not JSON), ``"truncated"`` (a body cut
short), ``"reset"`` (connection closed without a response). With ``reject_response_format`` it
answers 400 to requests that carry ``response_format``, as servers
without structured output do.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers.faulty import wait_for_hang_up


def keyword_labels(paragraph: str) -> dict[str, Any]:
    """Deterministic labels from the paragraph text, standing in for an LLM's judgement."""
    lower = paragraph.lower()
    if "year-old" in lower or "patient" in lower:
        return {"document_type": "clinical_case", "domain": "clinical", "educational_score": 4}
    if "funding" in lower or "acknowledg" in lower:
        return {"document_type": "other", "domain": "other", "educational_score": 1}
    if "we " in lower or "our " in lower:
        return {"document_type": "study", "domain": "biomedical", "educational_score": 3}
    return {"document_type": "review", "domain": "biomedical", "educational_score": 3}


@dataclass
class ServerState:
    failures: list[str] = field(default_factory=list)
    retry_after: str = "0"
    reject_response_format: bool = False
    fence_answers: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_failure(self) -> str | None:
        with self.lock:
            return self.failures.pop(0) if self.failures else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request logging
        pass

    def do_POST(self) -> None:
        state = self.server.state
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        with state.lock:
            state.requests.append(body)
            state.authorization.append(self.headers.get("Authorization"))
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        if state.reject_response_format and "response_format" in body:
            return self._send(400, {"error": {"message": "response_format is not supported"}})
        failure = state.next_failure()
        if failure == "429":
            return self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": state.retry_after})
        if failure == "500":
            return self._send(500, {"error": {"message": "internal error"}})
        if failure == "timeout" and wait_for_hang_up(self.connection):
            self.close_connection = True
            return None
        if failure == "reset":
            self.close_connection = True
            self.connection.close()
            return None
        if failure == "truncated":
            payload = json.dumps(self._completion(body, "{}")).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.close_connection = True
            return None
        paragraph = body["messages"][-1]["content"].split("Paragraph:\n", 1)[-1]
        content = json.dumps(keyword_labels(paragraph))
        if failure == "malformed":
            content = "Sure! The document_type is study, I think."
        elif state.fence_answers:
            content = f"Here are the labels:\n```json\n{content}\n```"
        return self._send(200, self._completion(body, content))

    def _completion(self, body: dict[str, Any], content: str) -> dict[str, Any]:
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 20,
                "total_tokens": prompt_tokens + 20,
            },
        }

    def _send(self, status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ServerState


@contextmanager
def openai_server(state: ServerState | None = None) -> Iterator[tuple[str, ServerState]]:
    """Run the server on a free localhost port; yields (endpoint base URL, state)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = state or ServerState()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", server.state
    finally:
        server.shutdown()
        server.server_close()
