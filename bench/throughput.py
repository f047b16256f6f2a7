"""Requests per second under real servers, side by side, and every touchpoint counted: ``make bench``.

Three stacks, one worker each: uvicorn with httptools + uvloop (what
``uvicorn[standard]`` runs) and uvicorn with h11, both serving Starlette, and
gunicorn's gthread worker serving Flask. Each serves the 5-slot page of
bench/workload.py bare, behind the naive buffer-and-re.sub rewrite (the anchor),
behind GZipMiddleware (ASGI) and behind personalize_mw, for an anonymous visitor
and for a consenting returning one. All servers of a run are up at once; wrk
(Debian's package, 1 thread, 16 connections, on loopback) loads one at a time,
in a rotating order, round after round; a cell is the median of its rounds.

Then every personalize_mw server gets SIGTERM, and the pageviews and exposures
on disk (the sink's file and the spool, to be replayed) are counted against
the requests wrk completed: "lost" is how many requests have no pageview.

    .venv/bin/python bench/throughput.py            # about 4 minutes
    .venv/bin/python bench/throughput.py --quick    # a smoke run, about 40 s
    .venv/bin/python bench/throughput.py --only httptools --unsent   # one stack; what delivery costs it
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import workload as w  # noqa: E402
from overhead import machine, revision  # noqa: E402

BENCH = Path(__file__).resolve().parent
CONNECTIONS = 16
# Anonymous: each page records a pageview and 3 exposures; the consenting visitor 2.
EXPOSURES = {"anonymous": 3, "consenting": 2}


@dataclass(frozen=True)
class Stack:
    name: str
    kind: str  # asgi or wsgi
    server: tuple[str, ...]  # arguments after `python -m`, before the port

    def command(self, port: int) -> list[str]:
        if self.server[0] == "uvicorn":
            return [sys.executable, "-m", *self.server, "--app-dir", str(BENCH), "serve:asgi",
                    "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log",
                    "--log-level", "warning"]
        return [sys.executable, "-m", *self.server, "--chdir", str(BENCH), "--workers", "1",
                "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "serve:wsgi"]


STACKS = [
    Stack("uvicorn httptools+uvloop, Starlette", "asgi", ("uvicorn", "--loop", "uvloop", "--http", "httptools")),
    Stack("uvicorn h11, Starlette", "asgi", ("uvicorn", "--loop", "asyncio", "--http", "h11")),
    Stack("gunicorn gthread, Flask", "wsgi", ("gunicorn", "--worker-class", "gthread", "--threads", "4")),
]
VARIANTS = {"asgi": ("bare", "naive", "gzip", "mw"), "wsgi": ("bare", "naive", "mw")}


@dataclass
class Server:
    stack: Stack
    variant: str
    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    completed: int = 0  # requests wrk (and the priming) completed against this server
    by_visitor: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        self.port = free_port()
        env = dict(os.environ, BENCH_VARIANT=self.variant, BENCH_STACK=self.stack.kind,
                   BENCH_DIR=str(self.directory), PYTHONDONTWRITEBYTECODE="1")
        self.process = subprocess.Popen(self.stack.command(self.port), env=env, cwd=self.directory,
                                        stdout=subprocess.DEVNULL, stderr=open(self.directory / "server.log", "wb"))

    def url(self, query: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/" + (f"?{query}" if query else "")

    def wait_up(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/plans", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.stack.name} ({self.variant}) did not come up; see {self.directory}/server.log")

    def stop(self) -> int:
        """SIGTERM, as a deploy does; the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


_TAKEN: set[int] = set()


def free_port() -> int:
    """A free port not handed out before: the servers bind theirs only once they are up."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _TAKEN:
            _TAKEN.add(port)
            return port


_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_COUNT = re.compile(r"(\d+) requests in")
_P99 = re.compile(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)  # wrk --latency's distribution
_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_ERRORS = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*")


def run_wrk(url: str, headers: tuple[tuple[str, str], ...], seconds: float) -> tuple[float, int, float]:
    """(requests/s, requests completed, 99th percentile latency in ms); fails loudly on errors or non-2xx answers."""
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency"]
    for name, value in headers:
        # "Host", capitalised: wrk adds its own unless it sees exactly that, and h11 and
        # gunicorn answer two Host headers with 400 (httptools takes either).
        command += ["-H", f"{'Host' if name.lower() == 'host' else name}: {value}"]
    out = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    errors = _ERRORS.search(out)
    if errors:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=dict(headers)), timeout=5) as answer:
                seen = f"{answer.status} {answer.read()[:200]!r}"
        except OSError as exc:
            seen = repr(exc)
        raise RuntimeError(f"wrk saw errors against {url} (one request now: {seen}):\n{out}")
    p99 = _P99.search(out)
    assert p99 is not None, out
    return (float(_RATE.search(out).group(1)), int(_COUNT.search(out).group(1)),  # type: ignore[union-attr]
            float(p99.group(1)) * _TO_MS[p99.group(2)])


def count_records(directory: Path) -> dict[str, int]:
    """Pageviews and exposures of the page on disk: the sink's files and the spool."""
    counts = {"pageview": 0, "exposure": 0, "spooled": 0}
    files = list(directory.glob("touchpoints*.jsonl"))
    spool = list((directory / ".personalize_spool").glob("*.spool"))
    for path in files + spool:
        with open(path, "rb") as lines:
            for line in lines:
                record = json.loads(line)
                if record.get("path") == "/" and record["type"] in counts:
                    counts[record["type"]] += 1
                    if path in spool:
                        counts["spooled"] += 1
    return counts


def main(rounds: int, seconds: float, only: str | None = None, unsent: bool = False) -> int:
    # SIGTERM (a deploy script, tests/test_docs_commands.py) unwinds like an error: servers killed, folder removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = Path(tempfile.mkdtemp(prefix="pmw-throughput-"))
    try:
        return _measure(base, rounds, seconds, only, unsent)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _measure(base: Path, rounds: int, seconds: float, only: str | None, unsent: bool) -> int:
    if shutil.which("wrk") is None:
        print("wrk not found: `apt-get install --no-install-recommends wrk` (make system-deps does)")
        return 1
    servers: dict[tuple[str, str], Server] = {}
    stacks = [stack for stack in STACKS if not only or only.lower() in stack.name.lower()]
    variants = {kind: names + ("mw-unsent",) if unsent else names for kind, names in VARIANTS.items()}
    for stack in stacks:
        for variant in variants[stack.kind]:
            directory = base / f"{len(servers)}-{variant}"
            directory.mkdir()
            servers[stack.name, variant] = server = Server(stack, variant, directory)
            server.start()
    try:
        for server in servers.values():
            server.wait_up()
        visitors: dict[str, w.Visitor] = {}
        cells: dict[tuple[str, str, str], list[float]] = {}
        tails: dict[tuple[str, str, str], list[float]] = {}  # each round's 99th percentile latency, ms
        plan: list[tuple[Stack, str, str]] = []
        for stack in stacks:
            for variant in variants[stack.kind]:
                for who in (("anonymous", "consenting") if variant.startswith("mw") else ("anonymous",)):
                    plan.append((stack, variant, who))
        for stack in stacks:
            visitors[stack.name] = w.returning_from_another_worker()

        def load(stack: Stack, variant: str, who: str, duration: float) -> tuple[float, float]:
            server = servers[stack.name, variant]
            visitor = w.ANONYMOUS if who == "anonymous" else visitors[stack.name]
            rate, count, p99 = run_wrk(server.url(visitor.query), visitor.headers, duration)
            server.completed += count
            server.by_visitor[who] = server.by_visitor.get(who, 0) + count
            return rate, p99

        for stack, variant, who in plan:  # warm-up: JIT-free, but caches, pools and the spool dir
            load(stack, variant, who, 1)
        for r in range(rounds):
            shift = r % len(plan)
            for stack, variant, who in plan[shift:] + plan[:shift]:
                rate, p99 = load(stack, variant, who, seconds)
                cells.setdefault((stack.name, variant, who), []).append(rate)
                tails.setdefault((stack.name, variant, who), []).append(p99)
        exits = {key: server.stop() for key, server in servers.items() if key[1] == "mw"}
    finally:
        for server in servers.values():
            if server.process is not None and server.process.poll() is None:
                server.process.kill()

    print(f"personalize_mw throughput at {revision()} — {machine()}; wrk -t1 -c{CONNECTIONS}, "
          f"{seconds:g} s a cell, median of {rounds} interleaved rounds; 5-slot page of {len(w.PAGE):,} bytes\n")
    print("| stack | bare req/s | naive rewrite | GZip | personalize_mw anonymous | personalize_mw consenting "
          "| anonymous / naive (≥ 0.80) | consenting / naive (≥ 0.70) | above GZip |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    missed = 0
    for stack in stacks:
        rate = {(variant, who): statistics.median(values)
                for (name, variant, who), values in cells.items() if name == stack.name}
        bare, naive = rate["bare", "anonymous"], rate["naive", "anonymous"]
        anon, cons = rate["mw", "anonymous"], rate["mw", "consenting"]
        gzip = rate.get(("gzip", "anonymous"))
        above = "—" if gzip is None else ("yes" if min(anon, cons) > gzip else "NO")
        ok = anon / naive >= 0.80 and cons / naive >= 0.70 and above != "NO"
        missed += not ok
        print(f"| {stack.name} | {bare:,.0f} | {naive / bare:.2f} | {'—' if gzip is None else f'{gzip / bare:.2f}'} "
              f"| {anon / bare:.2f} | {cons / bare:.2f} | {anon / naive:.2f} | {cons / naive:.2f} | {above} |")
    print("\nratios of bare requests/s")
    print("\n99th percentile latency, ms (wrk --latency; median of the rounds): what the slowest requests wait\n")
    print("| stack | bare | naive rewrite | GZip | personalize_mw anonymous | personalize_mw consenting |")
    print("|---|---:|---:|---:|---:|---:|")
    for stack in stacks:
        tail = {(variant, who): statistics.median(values)
                for (name, variant, who), values in tails.items() if name == stack.name}
        print(f"| {stack.name} | " + " | ".join("—" if (variant, who) not in tail else f"{tail[variant, who]:.2f}"
                                                for variant, who in (("bare", "anonymous"), ("naive", "anonymous"),
                                                                     ("gzip", "anonymous"), ("mw", "anonymous"),
                                                                     ("mw", "consenting"))) + " |")
    if unsent:
        print("\npersonalize_mw with its records dropped where they would be queued (no sink thread, nothing "
              "written): what delivery costs the server, as shares of the naive rewrite's requests/s\n")
        print("| stack | anonymous, delivered | anonymous, unsent | consenting, delivered | consenting, unsent |")
        print("|---|---:|---:|---:|---:|")
        for stack in stacks:
            rate = {(variant, who): statistics.median(values)
                    for (name, variant, who), values in cells.items() if name == stack.name}
            naive = rate["naive", "anonymous"]
            print(f"| {stack.name} | " + " | ".join(f"{rate[variant, who] / naive:.2f}" for who in
                                                   ("anonymous", "consenting") for variant in ("mw", "mw-unsent"))
                  + " |")
    print("\nafter SIGTERM, on disk (sink file + spool to replay):\n")
    print("| stack | requests completed | pageviews on disk | exposures on disk (expected) | in the spool "
          "| lost | exit |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    lost_any = 0
    for stack in stacks:
        server = servers[stack.name, "mw"]
        counts = count_records(server.directory)
        expected = sum(EXPOSURES[who] * n for who, n in server.by_visitor.items())
        lost = max(0, server.completed - counts["pageview"]) + max(0, expected - counts["exposure"])
        lost_any += lost
        print(f"| {stack.name} | {server.completed:,} | {counts['pageview']:,} | {counts['exposure']:,} "
              f"({expected:,}) | {counts['spooled']:,} | {lost} | {exits[stack.name, 'mw']} |")
    print("\nA pageview or exposure beyond the count is a request in flight when wrk stopped: the server "
          "answered it, wrk no longer counted it.")
    return 1 if lost_any else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: one round of 2 s cells")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds of load per cell (default 5, quick 2)")
    parser.add_argument("--only", help='the stacks whose name holds this text, e.g. "httptools"')
    parser.add_argument("--unsent", action="store_true",
                        help="also serve personalize_mw with its records dropped at the queue: what delivery costs")
    args = parser.parse_args()
    sys.exit(main(args.rounds or (1 if args.quick else 3), args.seconds or (2.0 if args.quick else 5.0),
                  args.only, args.unsent))
