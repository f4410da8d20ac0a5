"""A small scripted OpenAI-compatible HTTP server for tests and benchmarks (loopback only).

    with StubServer(script=["429", "500", "ok"], latency=0.2) as s:
        llm = OpenAICompatLLM(s.base_url, "stub-model")
        ...
        s.counts["429"], s.requests[-1]["response_format"]

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``GET /v1/models``.

Every POST consumes the next behaviour of ``script`` (then ``default``):

``ok``                 answer every id named in the prompt's last line
                       (``Generate the JSON output for the N cluster ID(s): [json list]``) with valid JSON;
                       for a forced tool call the JSON is the tool call's arguments; embeddings: vectors
``429``                HTTP 429 with ``Retry-After: <retry_after>``
``500``                HTTP 500 (a transient server error)
``hang``               sleep ``hang_seconds`` (past the client's timeout), then answer ``ok``
``invalid_json``       HTTP 200 whose content is not JSON
``missing_ids``        like ``ok`` but drops the last id
``401``                HTTP 401; the message echoes the bearer token received (as careless servers do),
                       so tests can check that clients never repeat it
``reject_json_schema`` HTTP 500 when ``response_format.type == "json_schema"`` (as llama.cpp does),
                       otherwise ``ok``; use it as ``default`` to make the rejection permanent

``titles`` (a list, or ``push_titles``) scripts the content of ``ok`` answers: each id of a summary
prompt gets the next scripted title (then ``Stub answer <id>``), e.g. meta-text to exercise the gate.

A request naming a model not in ``models`` gets HTTP 404 (``model_not_found``). With ``api_key``
set, a request with another bearer token gets HTTP 401. ``latency`` seconds are slept before every
answer. ``counts`` counts requests by behaviour; ``requests`` records each request (path, behaviour,
model, structured-output ``mode``, ``response_format``, whether tools were sent, number of inputs, the
bearer token received, the parsed body, the monotonic arrival time).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable

BEHAVIOURS = ("ok", "429", "500", "hang", "invalid_json", "missing_ids", "401", "reject_json_schema")
_IDS_LINE = re.compile(r"^Generate the JSON output for the \d+ .*?ID\(s\): (\[.*\])\s*$", re.MULTILINE)


def ids_in_prompt(prompt: str) -> list[str]:
    """The ids listed on the prompt's last ``Generate the JSON output ...`` line (empty if none)."""
    found = _IDS_LINE.findall(prompt or "")
    if not found:
        return []
    try:
        ids = json.loads(found[-1])
    except ValueError:
        return []
    return [str(i) for i in ids] if isinstance(ids, list) else []


def _prompt_text(body: dict[str, Any]) -> str:
    parts = []
    for msg in body.get("messages") or []:
        content = msg.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text"]
    return "\n".join(parts)


def _vector(text: str, dim: int) -> list[float]:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=2 * dim).digest()
    # deliberately not unit length: clients normalise
    return [(int.from_bytes(digest[2 * j:2 * j + 2], "little") - 32768) / 1000.0 for j in range(dim)]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a "hang" handler must not hold up the exit


class StubServer:
    def __init__(self, script: Iterable[str] = (), *, default: str = "ok", latency: float = 0.0,
                 hang_seconds: float = 5.0, retry_after: str = "1", models: Iterable[str] = ("stub-model",),
                 api_key: str | None = None, embed_dim: int = 16, titles: Iterable[str] = ()):
        script = list(script)
        self._titles = deque(titles)
        for b in [*script, default]:
            if b not in BEHAVIOURS:
                raise ValueError(f"unknown behaviour {b!r}; known: {', '.join(BEHAVIOURS)}")
        self._script = deque(script)
        self.default = default
        self.latency = float(latency)
        self.hang_seconds = float(hang_seconds)
        self.retry_after = str(retry_after)
        self.models = tuple(models)
        self.api_key = api_key
        self.embed_dim = embed_dim
        self.counts: Counter = Counter()
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---
    def __enter__(self) -> "StubServer":
        self._httpd = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-stub", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        assert self._httpd is not None, "use the server as a context manager"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *behaviours: str) -> None:
        """Append behaviours to the script."""
        with self._lock:
            self._script.extend(behaviours)

    def push_titles(self, *titles: str) -> None:
        """Append scripted titles (see the module docstring)."""
        with self._lock:
            self._titles.extend(titles)

    def _title(self, cid: str) -> str:
        with self._lock:
            return self._titles.popleft() if self._titles else f"Stub answer {cid}"

    @property
    def remaining(self) -> int:
        """Scripted behaviours not consumed yet."""
        with self._lock:
            return len(self._script)

    def response_formats(self, path: str = "/v1/chat/completions") -> list[str | None]:
        """The structured-output mode of each chat request, in order (``tool`` for a forced tool call)."""
        return [r["mode"] for r in self.requests if r["path"] == path]

    # --- internals ---
    def _next(self) -> str:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _handler_class(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out separately: no 40 ms delayed-ACK stall

            def log_message(self, *args) -> None:  # quiet
                return

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def _error(self, status: int, message: str, code: str | None = None,
                       headers: dict[str, str] | None = None) -> None:
                self._send(status, {"error": {"message": message, "type": "stub_error", "code": code}}, headers)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list",
                                     "data": [{"id": m, "object": "model", "owned_by": "stub"} for m in stub.models]})
                else:
                    self._error(404, f"no route {self.path}")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return self._error(400, "the body is not JSON")
                path = self.path.rstrip("/")
                if path not in ("/v1/chat/completions", "/v1/embeddings"):
                    return self._error(404, f"no route {self.path}")
                behaviour = stub._next()
                rf = body.get("response_format") if isinstance(body.get("response_format"), dict) else None
                mode = None
                if rf is not None:
                    mode = rf.get("type")
                    if mode == "json_object" and "schema" in rf:
                        mode = "json_object_schema"
                elif body.get("tools"):
                    mode = "tool"
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
                record = {"path": path, "behaviour": behaviour, "model": body.get("model"), "mode": mode,
                          "bearer": token,
                          "response_format": rf, "tools": bool(body.get("tools")), "body": body,
                          "n_inputs": len(body["input"]) if isinstance(body.get("input"), list) else None,
                          "time": time.monotonic()}
                with stub._lock:
                    stub.counts[behaviour] += 1
                    stub.requests.append(record)
                if stub.latency:
                    stub._sleep(stub.latency)
                if behaviour == "401" or (stub.api_key is not None and token != stub.api_key):
                    return self._error(401, f"Incorrect API key provided: {token}.", "invalid_api_key")
                if body.get("model") not in stub.models:
                    return self._error(404, f"The model `{body.get('model')}` does not exist.", "model_not_found")
                if behaviour == "429":
                    return self._error(429, "Rate limit reached; slow down.", "rate_limit_exceeded",
                                       {"Retry-After": stub.retry_after})
                if behaviour == "500":
                    return self._error(500, "The server had an error while processing your request.")
                if behaviour == "hang":
                    stub._sleep(stub.hang_seconds)
                    if stub._stop.is_set():
                        return None
                if behaviour == "reject_json_schema" and mode == "json_schema":
                    return self._error(500, "Unsupported response_format type 'json_schema': "
                                            "JSON schema conversion failed")
                if path == "/v1/embeddings":
                    return self._embeddings(body)
                return self._chat(body, behaviour, mode)

            def _embeddings(self, body: dict[str, Any]) -> None:
                inputs = body.get("input")
                inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
                data = [{"object": "embedding", "index": i, "embedding": _vector(str(t), stub.embed_dim)}
                        for i, t in enumerate(inputs)]
                data.reverse()  # out of order on purpose: clients must sort by index
                chars = sum(len(str(t)) for t in inputs)
                self._send(200, {"object": "list", "data": data, "model": body.get("model"),
                                 "usage": {"prompt_tokens": chars // 4, "total_tokens": chars // 4}})

            def _chat(self, body: dict[str, Any], behaviour: str, mode: str | None) -> None:
                prompt = _prompt_text(body)
                ids = ids_in_prompt(prompt)
                if behaviour == "invalid_json":
                    content = "Sure! Here are the titles: {not valid json"
                elif ids:
                    if behaviour == "missing_ids":
                        ids = ids[:-1]
                    content = json.dumps({cid: {"title": stub._title(cid),
                                                "description": f"Stub description of cluster {cid}."}
                                          for cid in ids})
                else:  # not a summary prompt (e.g. a caption request)
                    content = f"A stub caption ({len(body.get('messages') or [])} message(s))."
                message: dict[str, Any] = {"role": "assistant", "content": content}
                finish = "stop"
                if mode == "tool":
                    name = body["tools"][0]["function"]["name"]
                    message = {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "call_0", "type": "function", "function": {"name": name, "arguments": content}}]}
                    finish = "tool_calls"
                p_tokens, c_tokens = len(prompt) // 4 + 1, len(content) // 4 + 1
                self._send(200, {
                    "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": {"prompt_tokens": p_tokens, "completion_tokens": c_tokens,
                              "total_tokens": p_tokens + c_tokens},
                })

        return Handler
