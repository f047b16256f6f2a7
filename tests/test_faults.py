"""Fault tests: a Starlette site serves 20,000 requests while its network sinks fail under it.

The real middleware is driven in-process (raw ASGI calls, no HTTP client in
between) with four sinks: a local JSONL file, which never fails and says which
records exist, and the http collector, PostgreSQL and Redis, each made to fail
on a timeline while pages are served. Every page must still be served,
personalized; once the servers are back and the pipeline has flushed, each
network sink must hold every record the file holds (a replayed one at most
repeated, same id, same content), and the pipeline must have counted retries
for each (the fault was felt) and no drops.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from personalize_mw import PersonalizeMiddleware
from servers import (  # noqa: F401  (fixtures)
    CollectorServer, PostgresServer, RedisServer, collector, collector_session, pg, postgres,
    redis_server, redis_session,
)

REQUESTS = 20_000
FAULT_AT, HEAL_AT = REQUESTS // 4, REQUESTS * 2 // 3
GOAL_EVERY = 10  # every tenth request is the goal page: pageview + exposure + conversion
PAGE = "<html><body><!-- personalize:hero --><p>Default</p><!-- /personalize:hero --></body></html>"
VARIANT = b"<p>Welcome back</p>"
CONSENT_COOKIE = b"pmw_consent=analytics=1&personalization=1&advertising=0"
SECRET = "fault-test-secret-0123456789abcdef"


async def _page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


def make_site(tmp_path: Path, sink_urls: list[str]) -> PersonalizeMiddleware:
    app = Starlette(routes=[Route("/", _page), Route("/signup", _page)])
    config = {
        "secret_keys": [SECRET],
        "sink": [f"jsonl:{tmp_path / 'all.jsonl'}", *sink_urls],
        # Short waits so the test does not sit out a production backoff.
        "delivery": {"flush_interval_s": 0.05, "max_retry_delay_s": 0.5, "spool_dir": str(tmp_path / "spool")},
        "slots": {"hero": {"rules": [{"if": {"path_prefix": "/"}, "variant": "welcome",
                                      "template": VARIANT.decode()}]}},
        "goals": {"signup": {"path": "/signup", "value": 5}},
    }
    return PersonalizeMiddleware(app, config=config)


class Site:
    """Drives the middleware with raw ASGI requests and counts what a browser would have seen fail."""

    def __init__(self, middleware: PersonalizeMiddleware) -> None:
        self.middleware = middleware
        self.served = 0
        self.failures: list[str] = []

    async def _request(self, path: str) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "headers": [(b"host", b"shop.test"), (b"cookie", CONSENT_COOKIE)],
                 "client": ("127.0.0.1", 50000), "server": ("shop.test", 80)}
        status, body = 0, bytearray()

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        try:
            await self.middleware(scope, receive, send)
        except Exception as exc:  # a failed page, as the server would log it
            self.failures.append(f"{path}: {exc!r}")
            return
        if status != 200 or VARIANT not in body:
            self.failures.append(f"{path}: {status} {bytes(body[:200])!r}")

    async def _serve(self, count: int) -> None:
        for i in range(count):
            await self._request("/signup" if i % GOAL_EVERY == 0 else "/")
            self.served += 1
            # A server reads and writes a socket per request, letting other threads take the
            # GIL; a loop without I/O would starve the sink workers as no server does.
            time.sleep(0)

    def serve(self, count: int, faults: list[tuple[int, Callable[[], None]]]) -> None:
        """Serve ``count`` requests; run each fault action once ``served`` reaches its mark."""
        errors: list[BaseException] = []
        aborted = threading.Event()

        def run_faults() -> None:
            try:
                for mark, action in faults:
                    while self.served < mark:
                        if aborted.wait(0.005):
                            return
                    action()
            except BaseException as exc:  # reported by the test, not lost in a thread
                errors.append(exc)

        assert all(mark < count for mark, _ in faults)
        thread = threading.Thread(target=run_faults, name="faults")
        thread.start()
        try:
            asyncio.run(self._serve(count))
        except BaseException:
            aborted.set()
            raise
        finally:
            thread.join()  # every mark is reached: each action has run, heals included
        if errors:
            raise errors[0]

    def settle(self) -> dict[str, dict[str, int]]:
        """Flush until every sink has everything, then close; the pipeline's stats before closing."""
        pipeline = self.middleware.core.queue
        assert pipeline.flush(timeout=120), pipeline.stats()
        stats = pipeline.stats()
        pipeline.close()
        return stats


def expected_records(tmp_path: Path) -> dict[str, dict[str, Any]]:
    lines = (tmp_path / "all.jsonl").read_text("utf-8").splitlines()
    records = {r["id"]: r for r in map(json.loads, lines)}
    assert len(records) == len(lines)  # the local file never saw a repeat
    goals = (REQUESTS + GOAL_EVERY - 1) // GOAL_EVERY
    assert len(records) == 2 * REQUESTS + goals
    return records


def assert_delivered(expected: dict[str, dict[str, Any]], delivered: list[dict[str, Any]]) -> None:
    """Every record, and nothing else; a repeat only of an id, with the same content."""
    counts = Counter(r["id"] for r in delivered)
    assert counts.keys() == expected.keys()
    for record in delivered:
        assert record == expected[record["id"]]


# ---------------------------------------------------------------- all of it at once


def test_every_fault_while_serving_20000_requests(tmp_path: Path, collector: CollectorServer,
                                                  pg: PostgresServer, redis_server: RedisServer) -> None:
    table = f"faults_{tmp_path.name[-12:].replace('-', '_')}"
    http_url, pg_url, redis_url = collector.url, f"{pg.url}?table={table}", f"{redis_server.url}/0/faults"
    site = Site(make_site(tmp_path, [http_url, pg_url, redis_url]))
    n = REQUESTS // 20  # one step of the timeline
    site.serve(REQUESTS, sorted([
        # The collector: errors, throttling, slowness, then gone; back at 9 n.
        (1 * n, lambda: collector.answer(status=500)),
        (3 * n, lambda: collector.answer(status=429, retry_after="1")),
        (5 * n, lambda: collector.answer(delay=0.5)),
        (7 * n, collector.stop),
        (9 * n, collector.start),
        # PostgreSQL: crashed, down a while, back; later a quick clean restart.
        (2 * n, lambda: pg.stop("immediate")),
        (6 * n, pg.start),
        (11 * n, lambda: pg.restart("fast")),
        # Redis: a clean stop (it saves) and a start.
        (12 * n, lambda: redis_server.stop(save=True)),
        (15 * n, redis_server.start),
    ], key=lambda step: step[0]))
    stats = site.settle()
    assert site.failures == []
    expected = expected_records(tmp_path)
    # An exposure's properties also carry Segment's experiment_id and variation_id.
    assert_delivered(expected, [{k: v for k, v in m["properties"].items()
                                 if k not in ("experiment_id", "variation_id")} for m in collector.messages()])
    assert_delivered(expected, [row[0] for row in pg.query(f"SELECT record FROM {table}")])
    assert_delivered(expected, [json.loads(f["record"]) for _, f in redis_server.client().xrange("faults")])
    for label in ("http", "postgresql", "redis"):
        [counts] = [c for name, c in stats.items() if name.startswith(label)]
        assert counts["retried"] > 0, (label, counts)  # the fault reached the sink
    for counts in stats.values():
        assert counts["dropped"] == 0 and counts["queued"] == 0 and counts["spooled"] == 0, stats


def test_a_collector_slower_than_the_site_for_a_long_stretch(tmp_path: Path, collector: CollectorServer) -> None:
    """Every answer is a 200, but half a second late: the memory queue would overflow; the spool takes it."""
    site = Site(make_site(tmp_path, [collector.url]))
    site.serve(REQUESTS, [(REQUESTS // 10, lambda: collector.answer(delay=0.5)),
                          (REQUESTS * 3 // 4, collector.answer)])
    stats = site.settle()
    assert site.failures == []
    assert_delivered(expected_records(tmp_path), [{k: v for k, v in m["properties"].items()
                                                   if k not in ("experiment_id", "variation_id")}
                                                  for m in collector.messages()])
    for counts in stats.values():
        assert counts["dropped"] == 0 and counts["queued"] == 0 and counts["spooled"] == 0, stats
