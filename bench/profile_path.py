"""Where one scenario of ``overhead.py`` spends its time: cProfile over the middleware path.

    .venv/bin/python bench/profile_path.py --stack asgi --visitor returning --page "5-slot page"

cProfile charges its own per-call cost to every function, so small functions
look bigger than they are: read it for the shape (what is called, how often),
and take the size of a saving from ``overhead.py`` before and after a change.
Writes nothing to the repository; the sink lives in a temporary directory.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import asyncio  # noqa: E402
import cProfile  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import tempfile  # noqa: E402

import overhead as o  # noqa: E402
import workload as w  # noqa: E402
from personalize_mw import PersonalizeMiddleware, PersonalizeWSGIMiddleware  # noqa: E402


async def profile(stack: str, visitor_name: str, page: str, requests: int, top: int, sort: str) -> None:
    with tempfile.TemporaryDirectory(prefix="pmw-profile-") as tmp:
        config = w.bench_config(os.path.join(tmp, "touchpoints.jsonl"))
        asgi_mw = PersonalizeMiddleware(w.starlette_app(), config=config)
        visitor = w.ANONYMOUS if visitor_name == "anonymous" else w.returning_from_another_worker()
        path = w.PATHS[page]
        if stack == "asgi":
            app: object = asgi_mw
            run = o.asgi_batch(asgi_mw, w.asgi_scope(visitor, path))
            queue = asgi_mw.core.queue
        else:
            holder: dict[str, PersonalizeWSGIMiddleware] = {}

            def wrap(inner: object) -> PersonalizeWSGIMiddleware:
                holder["mw"] = PersonalizeWSGIMiddleware(inner, config=config)
                return holder["mw"]

            app = w.flask_app(wrap)
            run = o.wsgi_batch(app, w.wsgi_environ(visitor, path))
            queue = holder["mw"].core.queue
        await run(200)  # warm: compiled templates, caches, the sink thread started
        profiler = cProfile.Profile()
        profiler.enable()
        await run(requests)
        profiler.disable()
        queue.close(timeout=30)
        print(f"{stack.upper()} {page}, {visitor_name} visitor, {requests} requests through the middleware")
        pstats.Stats(profiler).strip_dirs().sort_stats(sort).print_stats(top)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=("asgi", "wsgi"), default="asgi")
    parser.add_argument("--visitor", choices=("anonymous", "returning"), default="anonymous")
    parser.add_argument("--page", choices=tuple(w.PATHS), default="5-slot page")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", help="a pstats key: tottime, cumulative, ncalls")
    args = parser.parse_args()
    asyncio.run(profile(args.stack, args.visitor, args.page, args.requests, args.top, args.sort))
