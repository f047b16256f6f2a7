"""Instructions per request, counted by valgrind's callgrind: the same figure on a busy machine or a quiet one.

    .venv/bin/python bench/instructions.py    # about 2 minutes; needs valgrind (Debian's package)

The anonymous visitor of bench/workload.py on the 5-slot page, with a no-op
record queue: ``visit()`` alone, and the whole request through the ASGI
middleware around a raw app that sends the page. Each figure is (the
instructions of a process making 200 of them minus those of the same process
making none) / 200, so start-up and imports cancel out.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True

import asyncio  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
COUNT = 200
_COLLECTED = re.compile(r"Collected : (\d+)")


class _NoQueue:
    def put(self, record: object) -> bool:
        return True

    def close(self) -> None:
        pass


def child(what: str, n: int) -> None:
    """Make ``n`` visits or requests (after 50 to warm up)."""
    import workload as w

    from personalize_mw import PersonalizeMiddleware
    from personalize_mw.asgi import request_context
    from personalize_mw.config import load_config
    from personalize_mw.core.personalizer import Personalizer

    config = load_config(w.bench_config(os.path.join(tempfile.mkdtemp(prefix="pmw-instr-"), "t.jsonl")))
    core = Personalizer(config, queue=_NoQueue(), clock=lambda: 1.8e9)  # type: ignore[arg-type]
    scope = w.asgi_scope(w.ANONYMOUS, "/")
    if what == "visit":
        for _ in range(50 + n):
            core.visit(request_context(scope, "cf-ipcountry"), w.PAGE, 1.8e9)
        return
    start = {"type": "http.response.start", "status": 200,
             "headers": [(b"content-length", str(len(w.PAGE)).encode()), (b"content-type", b"text/html")]}
    body = {"type": "http.response.body", "body": w.PAGE}

    async def app(scope: dict, receive: object, send: object) -> None:
        await send(start)  # type: ignore[operator]
        await send(body)  # type: ignore[operator]

    middleware = PersonalizeMiddleware(app, personalizer=core)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def discard(message: dict) -> None:
        return None

    async def loop() -> None:
        for _ in range(50 + n):
            await middleware(scope.copy(), receive, discard)

    asyncio.run(loop())


def counted(what: str, n: int) -> int:
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                           __file__, "--child", what, str(n)], capture_output=True, text=True, cwd=BENCH,
                          env={**os.environ, "PYTHONHASHSEED": "0"})  # the same dict layouts every run
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind failed for {what} {n}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    if shutil.which("valgrind") is None:
        print("valgrind not found: `apt-get install --no-install-recommends valgrind`")
        return 1
    runs = [(what, n) for what in ("visit", "request") for n in (0, COUNT)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        totals = dict(zip(runs, pool.map(lambda run: counted(*run), runs)))
    per = {what: (totals[what, COUNT] - totals[what, 0]) / COUNT for what in ("visit", "request")}
    print("| anonymous visitor, 5-slot page | instructions |")
    print("|---|---:|")
    print(f"| `visit()` | {per['visit']:,.0f} |")
    print(f"| the whole ASGI request (raw app + PersonalizeMiddleware) | {per['request']:,.0f} |")
    print(f"| around `visit()`: adapter, flow, head, queueing | {per['request'] - per['visit']:,.0f} |")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())
