"""The http sink: gzip JSON batches in Segment's shape, for any Segment-compatible collector.

    sink: https://${SEGMENT_WRITE_KEY}:@api.segment.io/v1/batch
    sink: https://rudder.example.com/v1/batch   (with http_sink: headers: Authorization: ...)

A batch is one POST of ``{"batch": [message, ...], "sentAt": ...}`` (several
past 450 KB of JSON, under Segment's limit of 500 KB a request). Each
record becomes one message whose ``messageId`` is the record's id, so a
collector drops a replayed duplicate: a ``pageview`` is a ``page`` call, an
``identify`` an ``identify`` call, everything else a ``track`` call (an exposure
is Segment's "Experiment Viewed", a conversion is named for its goal, an event
for its name). The whole record travels in ``properties``. User and password
in the URL become HTTP Basic auth (Segment's write key is the user); extra
headers and the timeout come from ``http_sink:`` in the config. 2xx is
success; 408, 429 and 5xx, a timeout or a refused connection are retried
(after Retry-After, if given); any other answer is a permanent failure.
"""

from __future__ import annotations

import gzip
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from .encoding import to_json_bytes
from .record import format_ts
from .sink import PermanentSinkError, SinkError

if TYPE_CHECKING:
    from ..config import HttpSinkConfig
    from ..storage import Location

RETRYABLE = frozenset({408, 429})


def _context(record: dict[str, Any]) -> dict[str, Any]:
    from .. import __version__

    context: dict[str, Any] = {
        "library": {"name": "personalize_mw", "version": __version__},
        "page": {"path": record.get("path")},
        # Without an ip, Segment takes the sender's: every visitor would be placed at the web server.
        "ip": record.get("ip") or "0.0.0.0",
    }
    utm = record.get("utm") or {}
    if any(utm.values()):
        context["campaign"] = {"name": utm.get("campaign"), "source": utm.get("source"),
                               "medium": utm.get("medium"), "term": utm.get("term"),
                               "content": utm.get("content")}
    if record.get("consent") is not None:
        context["consent"] = {"categoryPreferences": record["consent"]}
    return context


def to_message(record: dict[str, Any]) -> dict[str, Any]:
    """One record as a Segment message (https://segment.com/docs/connections/spec/)."""
    kind = record.get("type")
    message: dict[str, Any] = {
        "messageId": record["id"],
        "timestamp": record["ts"],
        # Segment wants an anonymousId or a userId; without consent there is no visitor id,
        # and the record's own id links nothing.
        "anonymousId": record.get("visitor") or record["id"],
        "context": _context(record),
        "properties": record,
    }
    if record.get("user"):
        message["userId"] = record["user"]
    if kind == "pageview":
        message["type"] = "page"
    elif kind == "identify":
        message["type"] = "identify"
    else:
        message["type"] = "track"
        if kind == "exposure":
            message["event"] = "Experiment Viewed"
            message["properties"] = {**record, "experiment_id": record.get("slot"),
                                     "variation_id": record.get("variant")}
        elif kind == "conversion":
            message["event"] = record.get("goal") or "conversion"
        elif kind == "event":
            message["event"] = record.get("event") or "event"
        else:
            message["event"] = str(kind)
    return message


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from collectors; the queue's backoff decides


class HttpSink:
    def __init__(self, url: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0,
                 compresslevel: int = 6, max_request_bytes: int = 450_000) -> None:
        self.url = url
        self.max_request_bytes = max_request_bytes  # JSON before gzip, under Segment's 500 KB
        self.shown_url = str(httpx.URL(url).copy_with(userinfo=b""))  # no write key in the logs
        self.compresslevel = compresslevel
        base = {"Content-Type": "application/json", "Content-Encoding": "gzip",
                "User-Agent": "personalize_mw"}
        # URL userinfo becomes Basic auth (httpx does it); redirects are not followed: a
        # collector that moved is a configuration to fix, not a place to post data to.
        # TCP_NODELAY: httpx writes the head and the body apart, and Nagle would hold the
        # body until the head is acknowledged (40 ms per batch against a delayed ACK).
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.client = httpx.Client(headers={**base, **(headers or {})}, timeout=timeout,
                                   follow_redirects=False, transport=transport)

    def write(self, records: list[dict[str, Any]]) -> None:
        # Segment refuses a request over 500 KB (a 400, for good): a large batch goes as several,
        # in order. If a later one fails the whole batch is retried; the repeats keep their ids.
        for messages in self._chunks([to_json_bytes(to_message(r)) for r in records]):
            self._post(b'{"batch":[' + b",".join(messages) + b'],"sentAt":"'
                       + format_ts(time.time()).encode() + b'"}')

    def _chunks(self, messages: list[bytes]) -> list[list[bytes]]:
        chunks: list[list[bytes]] = [[]]
        size = 0
        for message in messages:
            if chunks[-1] and size + len(message) + 1 > self.max_request_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append(message)
            size += len(message) + 1
        return chunks

    def _post(self, body: bytes) -> None:
        try:
            response = self.client.post(self.url, content=gzip.compress(body, self.compresslevel))
        except httpx.TransportError as exc:  # refused, reset, timed out: the collector may come back
            raise SinkError(f"http: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = f"http: {self.shown_url} answered {status} {response.text[:200]!r}"
        if status in RETRYABLE or status >= 500:
            error = SinkError(detail)
            error.retry_after = _retry_after(response)
            raise error
        raise PermanentSinkError(detail)

    def close(self) -> None:
        self.client.close()


def sink_for(location: Location, http: HttpSinkConfig | None = None) -> HttpSink:
    """The registry's entry point: ``http(s)://...``, with the config's ``http_sink`` settings."""
    if http is None:
        return HttpSink(location.address)
    return HttpSink(location.address, headers=http.headers, timeout=http.timeout_s)
