"""Instructions per request, counted by valgrind's callgrind: the same figure on a busy machine or a quiet one.

    .venv/bin/python bench/instructions.py            # every cell, a few minutes; needs valgrind
    .venv/bin/python bench/instructions.py --only "ASGI 5-slot page, anonymous"

The scenarios of bench/workload.py around raw apps (ASGI and WSGI callables
that send a prebuilt response, no framework), with a no-op record queue: the
bare app, the naive buffer-and-re.sub rewrite (the anchor of bench/overhead.py)
and personalize_mw, for both visitors, on the 5-slot page, the page without
markers and the JSON response; and ``visit()`` alone. Every child process builds
every app and warms every cell up, then makes 200 requests of one cell; a
cell's figure is (its process's instructions - those of a process making none)
/ 200, so start-up, imports and warm-up cancel out. "Added" is a cell's figure
minus the bare app's, and "× the anchor" what personalize_mw adds over what the
naive rewrite adds: the ratio of bench/overhead.py, without the machine's noise.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
COUNT = 200
WARM = 20
_COLLECTED = re.compile(r"Collected : (\d+)")
NOW = 1.8e9
STACKS = ("ASGI", "WSGI")
PAGES = {"5-slot page": "/", "no markers": "/plain", "JSON": "/api/plans"}
# (stack, page, visitor, variant); "bare" and "naive" do not read the visitor.
CELLS = ([(stack, "5-slot page", "-", variant) for stack in STACKS for variant in ("bare", "naive")]
         + [(stack, page, visitor, "mw") for stack in STACKS for page in PAGES
            for visitor in ("anonymous", "returning")])
VISIT = ("core", "5-slot page", "anonymous", "visit")
# The returning visitor's signed cookie alone: verify and decode it, sign and encode it again.
COOKIE = [("core", "cookie", "returning", "load"), ("core", "cookie", "returning", "dump")]


class _NoQueue:
    def put(self, record: object) -> bool:
        return True

    def put_many(self, records: list[object]) -> bool:  # a page's records, as the middleware queues them
        return True

    def close(self) -> None:
        pass


def _label(cell: tuple[str, str, str, str]) -> str:
    stack, page, visitor, variant = cell
    if variant == "visit":
        return "visit(), 5-slot page, anonymous"
    if page == "cookie":
        return f"cookie {variant}, returning visitor"
    return f"{stack} {page}, {visitor}" if variant == "mw" else f"{stack} {variant}"


def _drivers() -> dict[tuple[str, str, str, str], Callable[[], None]]:
    """One callable per cell, each making one request; the returning visitor's cookie made first."""
    import workload as w

    from personalize_mw import PersonalizeMiddleware, PersonalizeWSGIMiddleware
    from personalize_mw.asgi import request_context
    from personalize_mw.config import load_config
    from personalize_mw.core.personalizer import Personalizer

    config = load_config(w.bench_config(os.devnull))  # the queue is a no-op: no sink is opened
    ids = (f"{n:022d}" for n in itertools.count())  # the same ids every run: the same cookie bytes
    core = Personalizer(config, queue=_NoQueue(), clock=lambda: NOW,  # type: ignore[arg-type]
                        new_id=lambda: next(ids))
    html = "text/html; charset=utf-8"
    bodies = {"5-slot page": (w.PAGE, html), "no markers": (w.PLAIN_PAGE, html),
              "JSON": (w.JSON_BODY, "application/json")}
    by_path = {PAGES[page]: body for page, body in bodies.items()} | {"/pricing": bodies["5-slot page"]}
    asgi_messages = {path: ({"type": "http.response.start", "status": 200,
                             "headers": [(b"content-length", str(len(body)).encode()),
                                         (b"content-type", kind.encode())]},
                            {"type": "http.response.body", "body": body})
                     for path, (body, kind) in by_path.items()}

    async def asgi_app(scope: dict, receive: Any, send: Any) -> None:
        start, body = asgi_messages[scope["path"]]
        await send(start)
        await send(body)

    def wsgi_app(environ: dict, start_response: Any) -> list[bytes]:
        body, kind = by_path[environ["PATH_INFO"]]
        start_response("200 OK", [("Content-Length", str(len(body))), ("Content-Type", kind)])
        return [body]

    asgi = {"bare": asgi_app, "naive": w.naive_asgi(asgi_app), "mw": PersonalizeMiddleware(asgi_app, personalizer=core)}
    wsgi = {"bare": wsgi_app, "naive": w.naive_wsgi(wsgi_app),
            "mw": PersonalizeWSGIMiddleware(wsgi_app, personalizer=core)}

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    cookie: list[str] = []

    async def keep_cookie(message: dict) -> None:
        for name, value in message.get("headers") or ():
            if name == b"set-cookie" and value.startswith(b"pmw_id="):
                cookie.append(value.decode().split(";", 1)[0])

    async def discard(message: dict) -> None:
        return None

    consented = w.Visitor("consented", "", w.returning_visitor("").headers)
    asyncio.run(asgi["mw"](w.asgi_scope(consented, "/pricing"), receive, keep_cookie))
    visitors = {"-": w.ANONYMOUS, "anonymous": w.ANONYMOUS, "returning": w.returning_visitor(cookie[0])}
    loop = asyncio.new_event_loop()

    def no_start(status: str, headers: list, exc_info: Any = None) -> Callable[[bytes], None]:
        return lambda data: None

    def driver(cell: tuple[str, str, str, str]) -> Callable[[], None]:
        stack, page, visitor_name, variant = cell
        if page == "cookie":  # the value of the pmw_id cookie the middleware set
            value = cookie[0].split("=", 1)[1]
            profile = core.codec.load(value)
            assert profile is not None
            if variant == "load":
                return lambda: core.codec.load(value) and None
            return lambda: core.codec.dump(profile, False) and None
        visitor, path = visitors[visitor_name], PAGES[page]
        if variant == "visit":
            scope = w.asgi_scope(visitor, path)
            return lambda: core.visit(request_context(scope, "cf-ipcountry"), w.PAGE, NOW) and None
        if stack == "ASGI":
            app, scope = asgi[variant], w.asgi_scope(visitor, path)
            return lambda: loop.run_until_complete(app(scope.copy(), receive, discard))
        wapp, environ = wsgi[variant], w.wsgi_environ(visitor, path)

        def one() -> None:
            result = wapp(environ.copy(), no_start)
            for _chunk in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return one

    return {cell: driver(cell) for cell in [*CELLS, VISIT, *COOKIE]}


def child(label: str, n: int) -> None:
    drivers = _drivers()
    for run in drivers.values():
        for _ in range(WARM):
            run()
    # Whether a full collection over the start-up heap falls among the counted requests moved a cell by
    # thousands of instructions a request from one run to the next: that heap is left out of collections.
    gc.collect()
    gc.freeze()
    if n:
        run = next(run for cell, run in drivers.items() if _label(cell) == label)
        for _ in range(n):
            run()


def counted(label: str, n: int) -> int:
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                           __file__, "--child", label, str(n)], capture_output=True, text=True, cwd=BENCH,
                          env={**os.environ, "PYTHONHASHSEED": "0"})  # the same dict layouts every run
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"valgrind failed for {label} {n}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(only: list[str]) -> int:
    if shutil.which("valgrind") is None:
        print("valgrind not found: `apt-get install --no-install-recommends valgrind`")
        return 1
    labels = [_label(cell) for cell in [*CELLS, VISIT, *COOKIE]]
    wanted = [label for label in labels if not only or label in only]
    if only and len(wanted) < len(set(only)):
        print(f"unknown cell: one of {labels}")
        return 1
    # the anchors the wanted cells are read against
    stacked = [label for label in wanted if label.split()[0] in STACKS]  # the core's cells have no anchor
    needed = {f"{label.split()[0]} bare" for label in stacked}
    needed |= {f"{label.split()[0]} naive" for label in stacked if "5-slot" in label}
    runs = [("", 0)] + [(label, COUNT) for label in labels if label in set(wanted) | needed]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        totals = dict(zip(runs, pool.map(lambda run: counted(*run), runs), strict=True))
    per = {label: (total - totals["", 0]) / COUNT for (label, _n), total in totals.items() if label}
    print("| cell | instructions per request | added to the bare app | × what the naive rewrite adds |")
    print("|---|---:|---:|---:|")
    for label in labels:
        if label not in per:
            continue
        stack = label.split()[0]
        bare = per.get(f"{stack} bare")
        added = f"{per[label] - bare:,.0f}" if bare is not None and not label.endswith("bare") else ""
        ratio = ""
        naive = per.get(f"{stack} naive")
        if "5-slot" in label and naive is not None and bare is not None and label[0] != "v":
            ratio = f"{(per[label] - bare) / (naive - bare):.2f}×"
        print(f"| {label} | {per[label]:,.0f} | {added} | {ratio} |")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        parser.add_argument("--only", action="append", default=[], help="a cell's label, as printed (repeatable)")
        sys.exit(main(parser.parse_args().only))
