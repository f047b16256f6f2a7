"""The garbage collector inside real servers under wrk, and where their CPU goes.

    .venv/bin/python bench/server_gc.py            # about 2 minutes
    .venv/bin/python bench/server_gc.py --quick    # a smoke run, about 40 s
    .venv/bin/python bench/server_gc.py --only httptools

The stacks and apps of bench/throughput.py, one server at a time: bare, the
naive rewrite and personalize_mw (anonymous, then the consenting returning
visitor). Each server times its own collections (``gc.callbacks``) while wrk
loads it; "freed" is objects per request that only the collector could free,
the mark of a reference cycle per request. The in-process bench cannot see a
cycle that runs through a server's own objects (uvicorn's RequestResponseCycle
holds the scope and the ``send`` the app gets): this is where one showed.

CPU a request comes from ``/proc/<pid>/task/*/stat`` of the serving process (the
gunicorn worker, not its master) over the same window: the busiest thread (the
event loop under uvicorn) and the others (personalize_mw's sink thread there, on
the same GIL; gunicorn's request threads share the work).

In the server (``BENCH_GC_REPORT=path``, read by bench/serve.py), a thread
watches for ``path.reset`` (zero the counts) and ``path.dump`` (write them to
``path`` as JSON): a trigger file works under every server, where a signal
handler would wait for a Python frame under uvloop, and SIGTERM ends uvicorn
without running atexit.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

# ---------------------------------------------------------------- inside the server


def install(report: str) -> None:
    """Count this process's collections; reset and dump when the driver asks."""
    counts = {"collections": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "freed": [0, 0, 0], "longest": [0.0, 0.0, 0.0]}
    started = [0.0]

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        generation = info["generation"]
        counts["collections"][generation] += 1
        took = time.perf_counter() - started[0]
        counts["seconds"][generation] += took
        counts["longest"][generation] = max(counts["longest"][generation], took)  # one pause: what a request waits
        counts["freed"][generation] += info["collected"]

    def watch() -> None:
        reset, dump = Path(report + ".reset"), Path(report + ".dump")
        while True:
            if reset.exists():
                for values in counts.values():
                    values[:] = [0] * 3
                reset.unlink()
            if dump.exists():
                Path(report + ".tmp").write_text(json.dumps(counts))
                os.replace(report + ".tmp", report)
                dump.unlink()
            time.sleep(0.05)

    gc.callbacks.append(timed)
    threading.Thread(target=watch, name="bench-gc-report", daemon=True).start()


# ---------------------------------------------------------------- the driver


def _serving_pid(pid: int) -> int:
    """The process that serves: gunicorn's one worker (the master's child), else the server."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else pid


def _thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        seconds[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


def _ask(report: Path, what: str) -> None:
    trigger = Path(f"{report}.{what}")
    trigger.touch()
    deadline = time.monotonic() + 10
    while trigger.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer {trigger}")
        time.sleep(0.02)


def main(seconds: float, only: str | None) -> int:
    import throughput as t  # the same stacks, servers and wrk as the throughput table
    import workload as w

    if shutil.which("wrk") is None:
        print("wrk not found: `apt-get install --no-install-recommends wrk` (make system-deps does)")
        return 1
    base = Path(tempfile.mkdtemp(prefix="pmw-server-gc-"))
    rows = []
    try:
        for stack in [s for s in t.STACKS if only is None or only in s.name]:
            for variant in ("bare", "naive", "mw"):
                directory = base / f"{len(rows)}-{variant}"
                directory.mkdir()
                report = directory / "gc.json"
                os.environ["BENCH_GC_REPORT"] = str(report)
                server = t.Server(stack, variant, directory)
                server.start()
                try:
                    server.wait_up()
                    visitors = [w.ANONYMOUS] + ([w.returning_from_another_worker()] if variant == "mw" else [])
                    for visitor in visitors:
                        url = server.url(visitor.query)
                        t.run_wrk(url, visitor.headers, 1)  # warm
                        assert server.process is not None
                        pid = _serving_pid(server.process.pid)
                        _ask(report, "reset")
                        before = _thread_cpu(pid)
                        _, requests, p99 = t.run_wrk(url, visitor.headers, seconds)
                        used = sorted((cpu - before.get(tid, 0.0) for tid, cpu in _thread_cpu(pid).items()),
                                      reverse=True)
                        _ask(report, "dump")
                        counts = json.loads(report.read_text())
                        counts["cpu"] = [used[0], sum(used[1:])]
                        counts["p99"] = p99
                        who = "anonymous" if visitor is w.ANONYMOUS else "consenting"
                        rows.append((stack.name, variant if variant != "mw" else f"personalize_mw {who}",
                                     requests, counts))
                finally:
                    server.stop()
    finally:
        os.environ.pop("BENCH_GC_REPORT", None)
        shutil.rmtree(base, ignore_errors=True)

    print(f"garbage collection inside the servers at {t.revision()}; wrk -t1 -c{t.CONNECTIONS}, "
          f"{seconds:g} s a cell, one run\n")
    print("| stack | app | requests | collections (gen 0 / 1 / 2) | GC ms | GC µs a request "
          "| longest collection ms | p99 latency ms | freed by GC a request | CPU µs a request: busiest thread "
          "| other threads |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, app, requests, counts in rows:
        spent = sum(counts["seconds"])
        gens = " / ".join(str(n) for n in counts["collections"])
        busiest, others = (cpu / requests * 1e6 for cpu in counts["cpu"])
        print(f"| {name} | {app} | {requests:,} | {gens} | {spent * 1000:.0f} | {spent / requests * 1e6:.2f} "
              f"| {max(counts['longest']) * 1000:.1f} | {counts['p99']:.2f} "
              f"| {sum(counts['freed']) / requests:.1f} | {busiest:.0f} | {others:.0f} |")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 s cells")
    parser.add_argument("--seconds", type=float, help="seconds of load per cell (default 5, quick 1)")
    parser.add_argument("--only", help="the stacks whose name contains this (httptools, h11, gunicorn)")
    args = parser.parse_args()
    sys.exit(main(args.seconds or (1.0 if args.quick else 5.0), args.only))
