"""A small CRM for the http enricher's tests, run as its own process.

    python tests/crm.py --port 8124

``GET /people/<key>`` and ``GET /accounts/<key>`` answer the JSON object stored
under that key, or 404. ``POST /_control`` with ``{"people": {key: {...}}, "accounts":
{...}, "status": 200, "delay": 0, "require_auth": null}`` sets what it knows and how
it answers from now on (``status`` other than 200 answers every lookup with it;
``delay`` seconds before answering, as a CRM under load). ``GET /_requests`` lists the
paths and Authorization headers asked so far; ``GET /_health`` answers 204.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class CRM(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.known: dict[str, dict[str, Any]] = {"people": {}, "accounts": {}}
        self.status = 200
        self.delay = 0.0
        self.require_auth: str | None = None
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: CRM

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
            pass

    def do_GET(self) -> None:
        crm = self.server
        if self.path == "/_health":
            self._answer(204)
            return
        if self.path == "/_requests":
            with crm.lock:
                self._answer(200, list(crm.requests))
            return
        with crm.lock:
            crm.requests.append({"path": self.path, "auth": self.headers.get("Authorization")})
            status, delay, auth = crm.status, crm.delay, crm.require_auth
        if delay:
            time.sleep(delay)
        if auth is not None and self.headers.get("Authorization") != auth:
            self._answer(401, {"error": "unauthorized"})
            return
        if status != 200:
            self._answer(status, {"error": "injected"})
            return
        kind, _, key = self.path.lstrip("/").partition("/")
        found = crm.known.get(kind, {}).get(key)
        self._answer(200, found) if found is not None else self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/_control":
            self._answer(405)
            return
        crm = self.server
        with crm.lock:
            for key, value in json.loads(raw).items():
                if key in ("people", "accounts"):
                    crm.known[key].update(value)
                elif key == "forget":
                    crm.known = {"people": {}, "accounts": {}}
                    crm.requests.clear()
                else:
                    setattr(crm, key, value)
        self._answer(204)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    CRM(parser.parse_args().port).serve_forever()


if __name__ == "__main__":
    main()
