"""What the middleware adds to a request, in microseconds, in one run: ``make bench``.

Each app is driven directly, in process: ASGI apps by ``await app(scope,
receive, send)`` with prebuilt messages, WSGI apps with a prebuilt environ and
a no-op ``start_response``, the iterable consumed and closed. No HTTP client
and no server: their cost would swamp the microseconds measured here.

The machine is shared and noisy, so every variant of a scenario (bare app,
with our middleware, with GZip for scale) runs in the same round, one batch
after another in a rotating order, and rounds repeat. A cell's figure is the
median over rounds of a batch's mean time per request; "added" is the median
of the per-round differences to the bare app, so a slow round hits both sides.

    .venv/bin/python bench/overhead.py           # about 45 seconds
    .venv/bin/python bench/overhead.py --quick   # a smoke run, a few seconds
    .venv/bin/python bench/overhead.py --only "ASGI no markers"   # the scenarios named so
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # a benchmark run writes nothing into the repository

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import gzip  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Awaitable, Callable  # noqa: E402

from starlette.middleware.gzip import GZipMiddleware  # noqa: E402

import workload as w  # noqa: E402
from personalize_mw import PersonalizeMiddleware, PersonalizeWSGIMiddleware  # noqa: E402
from personalize_mw.asgi import request_context  # noqa: E402
from personalize_mw.core.markers import find_blocks  # noqa: E402
from personalize_mw.touchpoints.jsonl import JsonlSink  # noqa: E402
from personalize_mw.touchpoints.record import finalize_batch  # noqa: E402

# The targets of issue 8: on the 5-slot page, what personalize_mw adds against what
# the naive buffer-and-re.sub rewrite adds in the same run (a ratio); elsewhere µs.
RATIO_TARGETS = {"anonymous": 1.5, "returning": 2.0}
ADDED_TARGETS = {"no markers": 4.0, "JSON": 1.0}
VARIANT_LABELS = {"mw": {"ASGI": "+ PersonalizeMiddleware", "WSGI": "+ PersonalizeWSGIMiddleware"},
                  "naive": {"ASGI": "+ naive re.sub rewrite (anchor)", "WSGI": "+ naive re.sub rewrite (anchor)"},
                  "gzip": {"ASGI": "+ GZipMiddleware (scale)"}}

# n -> (wall s, this thread's CPU s, its page faults, s spent in garbage collections)
Batch = Callable[[int], Awaitable[tuple[float, float, int, float]]]

# ---------------------------------------------------------------- driving the apps

_REQUEST = {"type": "http.request", "body": b"", "more_body": False}


async def _receive() -> dict[str, Any]:
    return _REQUEST


async def _discard(message: Any) -> None:
    return None


def _start_response(status: str, headers: list, exc_info: Any = None) -> Callable[[bytes], None]:
    return _write


def _write(data: bytes) -> None:
    return None


def _faults() -> int:
    """Page faults of this thread so far: fresh memory the request path touched (Linux)."""
    return resource.getrusage(_THREAD).ru_minflt


_THREAD = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


class _CollectorClock:
    """Seconds spent in garbage collections so far (``gc.callbacks``), while installed."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._started = 0.0

    def __call__(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.spent += time.perf_counter() - self._started


_COLLECTOR = _CollectorClock()


def asgi_batch(app: Any, scope: dict[str, Any]) -> Batch:
    async def run(n: int) -> tuple[float, float, int, float]:
        receive, send, copy = _receive, _discard, scope.copy
        collected, faults, cpu, start = _COLLECTOR.spent, _faults(), time.thread_time(), time.perf_counter()
        for _ in range(n):
            await app(copy(), receive, send)  # a fresh scope: frameworks write into it
        return (time.perf_counter() - start, time.thread_time() - cpu, _faults() - faults,
                _COLLECTOR.spent - collected)
    return run


def wsgi_batch(app: Any, environ: dict[str, Any]) -> Batch:
    async def run(n: int) -> tuple[float, float, int, float]:
        start_response, copy = _start_response, environ.copy
        collected, faults, cpu, start = _COLLECTOR.spent, _faults(), time.thread_time(), time.perf_counter()
        for _ in range(n):
            result = app(copy(), start_response)
            try:
                for _chunk in result:
                    pass
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return (time.perf_counter() - start, time.thread_time() - cpu, _faults() - faults,
                _COLLECTOR.spent - collected)
    return run


async def asgi_once(app: Any, scope: dict[str, Any]) -> tuple[int, dict[str, list[str]], bytes]:
    """One request, capturing the response: used to prime and to check, never timed."""
    head: dict[str, Any] = {}
    body = bytearray()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            head.update(message)
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope.copy(), _receive, send)
    headers: dict[str, list[str]] = {}
    for name, value in head.get("headers", []):
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return head["status"], headers, bytes(body)


def wsgi_once(app: Any, environ: dict[str, Any]) -> tuple[int, dict[str, list[str]], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list, exc_info: Any = None) -> Callable[[bytes], None]:
        seen["status"], seen["headers"] = status, headers
        return _write

    result = app(environ.copy(), start_response)
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    headers: dict[str, list[str]] = {}
    for name, value in seen["headers"]:
        headers.setdefault(name.lower(), []).append(value)
    return int(seen["status"][:3]), headers, body


# ---------------------------------------------------------------- checking what we time

def changed_slots(body: bytes) -> set[str]:
    """The slots whose content differs from the page's default."""
    original = {b.name: w.PAGE[b.content_start:b.content_end] for b in find_blocks(w.PAGE)}
    return {b.name for b in find_blocks(body) if body[b.content_start:b.content_end] != original[b.name]}


def check(stack: str, variant: str, page: str, visitor: str, response: tuple[int, dict, bytes]) -> None:
    """Fail loudly if a cell would time something other than the path it is named for."""
    status, headers, body = response
    where = f"{stack} {variant} {page} {visitor}"
    assert status == 200, f"{where}: status {status}"
    if headers.get("content-encoding") == ["gzip"]:
        body = gzip.decompress(body)
    cookies = " ".join(headers.get("set-cookie", []))
    if page == "5-slot page" and variant == "naive":
        assert body == w.naive_fill(w.PAGE), f"{where}: not the naive rewrite"
    elif page == "5-slot page":
        expected = set(w.EXPECTED_VARIANTS[visitor]) if variant == "mw" else set()
        assert changed_slots(body) == expected, f"{where}: filled {changed_slots(body)}, expected {expected}"
    else:
        assert body == (w.PLAIN_PAGE if page == "no markers" else w.JSON_BODY), f"{where}: body changed"
    identified = variant == "mw" and visitor == "returning" and page != "JSON"
    assert ("pmw_id=" in cookies) == identified, f"{where}: Set-Cookie {cookies!r}"


# ---------------------------------------------------------------- the measurement

@dataclass
class Cell:
    variant: str
    run: Batch
    n: int = 0
    samples: list[float] = field(default_factory=list)  # wall µs per request, one per round
    cpu: list[float] = field(default_factory=list)  # CPU µs of the driving thread per request
    faults: list[float] = field(default_factory=list)  # page faults of the driving thread per request
    collecting: list[float] = field(default_factory=list)  # µs of garbage collections per request
    garbage: float = 0.0  # objects per request that only the garbage collector frees


@dataclass
class Scenario:
    stack: str
    page: str
    visitor: str
    cells: dict[str, Cell]


async def calibrate(cell: Cell, batch_s: float) -> None:
    """Warm up, then size the batch so that one takes about ``batch_s``."""
    for _ in range(3):
        spent, _cpu, _faults, _collecting = await cell.run(20)
    cell.n = max(5, round(batch_s / (spent / 20)))


async def measure(scenarios: list[Scenario], rounds: int, after_round: Callable[[], None]) -> None:
    for r in range(rounds):
        for scenario in scenarios:
            cells = list(scenario.cells.values())
            shift = r % len(cells)  # rotate who goes first: no variant always runs on a cold cache
            for cell in cells[shift:] + cells[:shift]:
                spent, cpu, faults, collecting = await cell.run(cell.n)
                cell.samples.append(spent / cell.n * 1e6)
                cell.collecting.append(collecting / cell.n * 1e6)
                cell.cpu.append(cpu / cell.n * 1e6)
                cell.faults.append(faults / cell.n)
        after_round()


async def count_garbage(scenarios: list[Scenario], requests: int = 100) -> None:
    """Untimed: objects per request left in reference cycles, which wait for a collection."""
    for scenario in scenarios:
        for cell in scenario.cells.values():
            gc.collect()
            gc.disable()
            try:
                await cell.run(requests)
                cell.garbage = gc.collect() / requests
            finally:
                gc.enable()


def paired_added(bare: list[float], other: list[float]) -> float:
    return statistics.median(o - b for o, b in zip(other, bare))


def quartiles(values: list[float]) -> tuple[float, float]:
    """The lower and upper quartile of ``values`` (both the value itself for a single round)."""
    if len(values) < 2:
        return values[0], values[0]
    low, _median, high = statistics.quantiles(values, n=4)
    return low, high


def verdict(figure: float, spread: tuple[float, float], limit: float) -> str:
    """PASS or MISS when the middle half of the rounds agrees with the median; else on the line.

    One run's median can fall either side of a limit on a shared machine: a cell whose
    rounds straddle it says so, rather than passing or failing by the draw.
    """
    low, high = spread
    if figure <= limit and high <= limit:
        return "PASS"
    if figure > limit and low > limit:
        return "MISS"
    return "ON THE LINE"


def writer_cost(records: list[dict[str, Any]], directory: str, repeat: int = 50) -> float:
    """µs the background writer spends per record: what its worker does with a batch of 100
    (``finalize_batch``: ids from one urandom call, the cached second; JSON lines; one write)."""
    sink = JsonlSink(os.path.join(directory, "writer-cost.jsonl"))
    batch = [dict(r, id=None, ts=None) for r in (records * (100 // len(records) + 1))[:100]]
    best = float("inf")
    for _ in range(repeat):
        copies = [dict(r) for r in batch]
        start = time.perf_counter()
        sink.write(finalize_batch(copies))
        best = min(best, time.perf_counter() - start)
    sink.close()
    return best / len(batch) * 1e6


# ---------------------------------------------------------------- the report

def table(scenarios: list[Scenario]) -> list[str]:
    rows = ["| scenario | bare µs | with µs | added µs | × bare | added CPU µs | of the anchor's added "
            "| target | result | page faults | cyclic garbage | GC µs |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for s in scenarios:
        bare = s.cells["bare"]
        bare_us = statistics.median(bare.samples)
        anchor = s.cells.get("naive")
        anchor_added = paired_added(bare.samples, anchor.samples) if anchor is not None else None
        for variant, cell in s.cells.items():
            if variant == "bare":
                continue
            with_us = statistics.median(cell.samples)
            added = paired_added(bare.samples, cell.samples)
            added_cpu = paired_added(bare.cpu, cell.cpu)
            share = target = result = "—"
            per_round = [o - b for o, b in zip(cell.samples, bare.samples, strict=True)]
            if variant == "mw" and s.page in ADDED_TARGETS:
                target = f"+{ADDED_TARGETS[s.page]:g}"
                result = verdict(added, quartiles(per_round), ADDED_TARGETS[s.page])
            elif variant in ("mw", "gzip") and anchor is not None and anchor_added:
                share = f"{added / anchor_added:.2f}×"
                if variant == "mw":
                    limit = RATIO_TARGETS[s.visitor]
                    target = f"≤ {limit:g}×"
                    # each round's ratio against the anchor's added time in the same round
                    ratios = [a / (n - b) for a, n, b in zip(per_round, anchor.samples, bare.samples, strict=True) if n > b]
                    spread = quartiles(ratios) if ratios else (math.inf, math.inf)
                    share += f" ({spread[0]:.2f}–{spread[1]:.2f})"
                    result = verdict(added / anchor_added, spread, limit)
            label = f"{s.stack} {s.page}, {s.visitor}, {VARIANT_LABELS[variant][s.stack]}"
            rows.append(f"| {label} | {bare_us:.1f} | {with_us:.1f} | {added:+.1f} | {with_us / bare_us:.2f}× | "
                        f"{added_cpu:+.1f} | {share} | {target} | {result} | "
                        f"{paired_added(bare.faults, cell.faults):+.2f} | {cell.garbage - bare.garbage:+.0f} | "
                        f"{statistics.fmean(cell.collecting) - statistics.fmean(bare.collecting):+.2f} |")
    return rows


def machine() -> str:
    """The cores and the CPU: the ratios to the anchor depend on the machine (docs/performance.md)."""
    found = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                found.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = found.get("model name", platform.processor() or "unknown CPU")
    model = f", model {found['model']}" if "model" in found else ""
    return f"{os.cpu_count()} cores (shared), {platform.machine()}, {cpu}{model}"


def revision() -> str:
    """The commit measured, so that a figure in the docs can be traced; read-only git calls."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "personalize_mw"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"{head}{' + uncommitted changes in personalize_mw/' if dirty else ''}"


class _Counter(logging.Handler):
    """Counts the middleware's warnings during the timed run: a timeout there changes what is served."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = record.getMessage().split(";")[0]
        self.messages[key] = self.messages.get(key, 0) + 1


# ---------------------------------------------------------------- the run

async def main(rounds: int, batch_ms: float, only: str | None = None) -> int:
    tmp = tempfile.TemporaryDirectory(prefix="pmw-bench-")
    sinks = [os.path.join(tmp.name, "asgi.jsonl"), os.path.join(tmp.name, "wsgi.jsonl")]
    asgi_mw = PersonalizeMiddleware(w.starlette_app(), config=w.bench_config(sinks[0]))
    wsgi_holder: dict[str, PersonalizeWSGIMiddleware] = {}

    def wrap(app: Any) -> PersonalizeWSGIMiddleware:
        wsgi_holder["mw"] = PersonalizeWSGIMiddleware(app, config=w.bench_config(sinks[1]))
        return wsgi_holder["mw"]

    asgi_apps = {"bare": w.starlette_app(), "naive": w.naive_asgi(w.starlette_app()), "mw": asgi_mw,
                 "gzip": GZipMiddleware(w.starlette_app())}
    wsgi_apps = {"bare": w.flask_app(), "naive": w.flask_app(w.naive_wsgi), "mw": w.flask_app(wrap)}
    queues = [asgi_mw.core.queue, wsgi_holder["mw"].core.queue]

    visitors = [w.ANONYMOUS, w.returning_from_another_worker()]  # consent, and an id cookie from a request before

    scenarios: list[Scenario] = []
    for stack, apps in (("ASGI", asgi_apps), ("WSGI", wsgi_apps)):
        for page, path in w.PATHS.items():
            for visitor in visitors:
                if only and only.lower() not in f"{stack} {page}, {visitor.name}".lower():
                    continue
                cells = {}
                for variant, app in apps.items():
                    if stack == "ASGI":
                        scope = w.asgi_scope(visitor, path)
                        check(stack, variant, page, visitor.name, await asgi_once(app, scope))
                        cells[variant] = Cell(variant, asgi_batch(app, scope))
                    else:
                        environ = w.wsgi_environ(visitor, path)
                        check(stack, variant, page, visitor.name, wsgi_once(app, environ))
                        cells[variant] = Cell(variant, wsgi_batch(app, environ))
                scenarios.append(Scenario(stack, page, visitor.name, cells))

    def after_round() -> None:
        # Untimed: write what this round queued, then empty the temp files so a run stays small.
        for queue, path in zip(queues, sinks):
            queue.flush(timeout=60)
            if os.path.exists(path):
                os.truncate(path, 0)

    for scenario in scenarios:
        for cell in scenario.cells.values():
            await calibrate(cell, batch_ms / 1000)
    after_round()
    warnings = _Counter()
    logging.getLogger("personalize_mw").addHandler(warnings)
    gc.collect()
    gc.freeze()  # start-up objects need no more scanning; both sides of a pair benefit alike
    started = time.perf_counter()
    gc.callbacks.append(_COLLECTOR)
    await measure(scenarios, rounds, after_round)
    gc.callbacks.remove(_COLLECTOR)
    elapsed = time.perf_counter() - started
    await count_garbage(scenarios)
    after_round()
    logging.getLogger("personalize_mw").removeHandler(warnings)

    # What one 5-slot page queues, to price the background writer's share.
    records = {}
    for visitor in visitors:
        before = asgi_mw.core.queue.enqueued
        await asgi_once(asgi_mw, w.asgi_scope(visitor, "/"))
        records[visitor.name] = asgi_mw.core.queue.enqueued - before
    sample = asgi_mw.core.visit(request_context(w.asgi_scope(visitors[0], "/"), "cf-ipcountry"),
                                w.PAGE, time.time()).records
    per_record = writer_cost(sample, tmp.name)
    for queue in queues:
        queue.close(timeout=60)
    stats = [per_sink for q in queues for per_sink in q.stats().values()]
    tmp.cleanup()

    print(f"personalize_mw overhead at {revision()} — Python {platform.python_version()}, "
          f"{machine()}")
    print(f"5-slot page {len(w.PAGE):,} bytes UTF-8; the same page without markers {len(w.PLAIN_PAGE):,} bytes; "
          f"JSON {len(w.JSON_BODY):,} bytes")
    print(f"median of {rounds} interleaved rounds, batches of ~{batch_ms:g} ms per cell ({elapsed:.0f} s of timing); "
          f"added = median of per-round differences; (a–b) after a ratio: the quartiles of the rounds' own "
          f"ratios; ON THE LINE: the median and the middle half of the rounds disagree about the target\n")
    print("\n".join(table(scenarios)))
    print("\nanonymous: no consent cookie, lands from a LinkedIn campaign (UTM + referrer); 3 of 5 slots filled"
          " (2 rendered by Jinja, 1 static).")
    print("returning: consent cookie + the signed id cookie one earlier request to /pricing got from another "
          "worker (verified in full); 2 of 5 slots filled (1 Jinja, 1 static); re-signed on every page.")
    print("added CPU µs: CPU time of the thread driving the requests — the request path alone, without the "
          "sink thread's share and without time stolen by other processes.")
    print("page faults: the driving thread's minor page faults per request, added to the bare app's (fresh "
          "memory touched: a heap trimmed and grown again). cyclic garbage: objects per request, added to the "
          "bare app's, that only the garbage collector frees (100 requests with it off, then gc.collect()). "
          "GC µs: time in garbage collections per request (gc.callbacks; the mean over rounds, since "
          "collections come every few hundred requests), added to the bare app's.")
    print(f"sink thread (off the request path, same GIL): {per_record:.1f} µs per record; one 5-slot page "
          f"queues {records['anonymous']} records for the anonymous visitor, {records['returning']} for the "
          f"returning one.")
    dropped = sum(s["dropped"] for s in stats)
    print(f"touchpoints queued during the run: {sum(s['enqueued'] for s in stats):,}, "
          f"written: {sum(s['sent'] for s in stats):,}, dropped: {dropped}")
    if warnings.messages:
        print("middleware warnings during the timed run (each one changed what a visitor was served):")
        for message, count in sorted(warnings.messages.items(), key=lambda item: -item[1]):
            print(f"  {count} × {message}")
    else:
        print("middleware warnings during the timed run: none")
    return 0 if dropped == 0 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few rounds, short batches")
    parser.add_argument("--rounds", type=int, help="rounds per cell (default 51, quick 3)")
    parser.add_argument("--batch-ms", type=float, help="target time of one batch (default 25, quick 2)")
    parser.add_argument("--only", help='the scenarios whose name holds this text, e.g. "ASGI no markers"')
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 51)
    batch_ms = args.batch_ms or (2.0 if args.quick else 25.0)
    sys.exit(asyncio.run(main(rounds, batch_ms, args.only)))
