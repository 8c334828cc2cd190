"""A small OpenAI-compatible chat server on loopback, for tests that a real local server cannot serve.

``transformers serve`` ignores ``n`` and returns no logprobs, and no real server fails on cue. This
one answers ``POST /v1/chat/completions`` in a thread of the test process (stdlib only) and records
what it received, so tests can assert request counts, bodies and the largest number of requests it
saw in flight at once.

Answers (unless ``responder`` says otherwise): choice ``i`` of a request is the text
``choice {i} seed {seed}: {last message content}``; with ``tools``, choice 0 calls the first tool with
``{"text": <last message content>}``; ``logprobs`` gives one entry per space-separated word with
log probability ``-0.1 * (position + 1)`` and its ``top_logprobs`` alternatives deliberately NOT
sorted (clients must sort). ``max_choices`` caps the choices returned, as servers that ignore ``n`` do.

``script`` queues behaviours that the next requests consume, one each, before normal answers resume:
``{"status": 429}`` (an error response, optional ``"message"`` and ``"headers"``) or
``{"delay": 1.5}`` (wait before answering normally, e.g. to trigger a client timeout).

Usage::

    with FakeOpenAI() as server:
        server.script = [{"status": 429}]
        backend = create_backend("fake@openai", base_url=server.base_url)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any], int], str]
"""``responder(request_body, choice_index) -> content`` for custom answers (e.g. a judge's JSON)."""


class FakeOpenAI:
    def __init__(self, *, delay: float = 0.0, max_choices: int | None = None,
                 responder: Responder | None = None, tool_parser: bool = True) -> None:
        self.delay = delay
        self.tool_parser = tool_parser
        """False: requests with ``tools`` get the responder's text as content too, as from a server
        started without a tool-call parser (the model's ``<tool_call>`` blocks left in the text)."""
        """Seconds every normal answer waits (makes concurrency observable)."""
        self.max_choices = max_choices
        self.responder = responder
        self.script: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        """Every request body received, in arrival order (failed ones included)."""
        self.authorizations: list[str | None] = []
        """The ``Authorization`` header of each request, in the same order."""
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(_Handler):
            server_state = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False  # a handler still sleeping (timeout tests) must not hold up stop()
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------------------

    def _receive(self, body: dict[str, Any], authorization: str | None) -> dict[str, Any]:
        with self._lock:
            self.requests.append(body)
            self.authorizations.append(authorization)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.script.pop(0) if self.script else {}

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The response body for a request (normal behaviour)."""
        messages = body.get("messages") or [{}]
        last = str(messages[-1].get("content") or "")
        n = int(body.get("n") or 1)
        if self.max_choices is not None:
            n = min(n, self.max_choices)
        choices = []
        for i in range(n):
            text = self.responder(body, i) if self.responder else f"choice {i} seed {body.get('seed')}: {last}"
            message: dict[str, Any] = {"role": "assistant", "content": text}
            finish = "stop"
            if body.get("tools") and i == 0 and self.tool_parser:
                name = body["tools"][0]["function"]["name"]
                message = {"role": "assistant", "content": None, "tool_calls": [{
                    "id": f"call_fake_{len(self.requests)}", "type": "function",
                    "function": {"name": name, "arguments": json.dumps({"text": last})}}]}
                finish = "tool_calls"
            choice: dict[str, Any] = {"index": i, "message": message, "finish_reason": finish}
            if body.get("logprobs"):
                choice["logprobs"] = {"content": _word_logprobs(text, int(body.get("top_logprobs") or 0))}
            choices.append(choice)
        words_in = sum(len(str(m.get("content") or "").split()) for m in messages)
        words_out = sum(len(str(c["message"].get("content") or "").split()) for c in choices)
        return {"id": f"fake-{len(self.requests)}", "object": "chat.completion", "model": body.get("model"),
                "choices": choices,
                "usage": {"prompt_tokens": words_in, "completion_tokens": words_out,
                          "total_tokens": words_in + words_out}}


def _word_logprobs(text: str, k: int) -> list[dict[str, Any]]:
    entries = []
    for j, word in enumerate(text.split(" ")):
        logprob = -0.1 * (j + 1)
        # Alternatives worst-first: the chosen word is the most likely one but comes last.
        top = [{"token": f"alt{a}", "logprob": logprob - a, "bytes": None} for a in range(k - 1, 0, -1)]
        if k:
            top.append({"token": word, "logprob": logprob, "bytes": None})
        entries.append({"token": word, "logprob": logprob, "bytes": None, "top_logprobs": top})
    return entries


class _Handler(BaseHTTPRequestHandler):
    server_state: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") == "/health":
            self._send(200, {"status": "ok"})
        elif self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        state = self.server_state
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            self._send(400, {"error": {"message": f"invalid JSON body: {exc}"}})
            return
        step = state._receive(body, self.headers.get("Authorization"))
        try:
            if "status" in step:
                message = step.get("message", f"scripted failure {step['status']}")
                self._send(int(step["status"]), {"error": {"message": message, "type": "fake"}}, step.get("headers"))
                return
            time.sleep(step.get("delay", state.delay))
            self._send(200, state.answer(body))
        finally:
            state._done()
