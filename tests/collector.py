"""A Segment-compatible batch collector for the http sink's tests, run as its own process.

    python tests/collector.py --port 8123 --dir /tmp/collector

``POST`` to any path takes ``{"batch": [...], "sentAt": ...}`` (gzip or plain
JSON) and appends one JSON line per accepted batch to ``DIR/batches.jsonl``
before answering, so what it acknowledged survives a stop and a start.
``POST /_control`` with ``{"status": 500, "delay": 0, "retry_after": null}``
sets how later batches are answered (a non-2xx batch is not stored; a delayed
one is stored, then answered late, as a real collector behind a slow proxy).
``GET /_health`` answers 204.
"""

from __future__ import annotations

import argparse
import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Behaviour:
    def __init__(self) -> None:
        self.status = 200
        self.delay = 0.0
        self.retry_after: str | None = None
        self.require_auth: str | None = None


class Collector(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, directory: Path) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.behaviour = Behaviour()
        self.store = directory / "batches.jsonl"
        self.lock = threading.Lock()

    def keep(self, auth: str | None, body: dict[str, Any]) -> None:
        line = json.dumps({"auth": auth, "sentAt": body.get("sentAt"), "batch": body["batch"]}) + "\n"
        with self.lock, self.store.open("a", encoding="utf-8") as file:
            file.write(line)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
    disable_nagle_algorithm = True  # head and body are two writes; no 40 ms delayed-ACK stall
    server: Collector

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the tests read the store
        pass

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(204 if self.path == "/_health" else 404)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        behaviour = self.server.behaviour
        if self.path == "/_control":
            for key, value in json.loads(raw).items():
                setattr(behaviour, key, value)
            self._answer(204)
            return
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        try:
            body = json.loads(raw)
            assert isinstance(body["batch"], list)
            assert all(isinstance(m["messageId"], str) and m["type"] for m in body["batch"])
        except (ValueError, KeyError, TypeError, AssertionError):
            self._answer(400, b'{"error":"not a Segment batch"}')
            return
        auth = self.headers.get("Authorization")
        if behaviour.require_auth is not None and auth != behaviour.require_auth:
            self._answer(401)
            return
        status = behaviour.status
        if 200 <= status < 300:
            self.server.keep(auth, body)
        if behaviour.delay:
            time.sleep(behaviour.delay)
        headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else {}
        try:
            self._answer(status, b'{"success":true}' if status < 300 else b"{}", headers)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
            pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    Collector(args.port, args.dir).serve_forever()


if __name__ == "__main__":
    main()
