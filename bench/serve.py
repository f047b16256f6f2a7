"""The apps bench/throughput.py serves with real servers, chosen by environment variables.

    BENCH_VARIANT=mw BENCH_DIR=/tmp/x uvicorn --app-dir bench serve:asgi
    BENCH_VARIANT=naive gunicorn --chdir bench serve:wsgi

BENCH_VARIANT: ``bare``, ``naive`` (the buffer-and-re.sub anchor), ``gzip``
(Starlette's GZipMiddleware, ASGI only), ``mw`` (personalize_mw with the
delivery defaults a site runs with: its sink and spool in BENCH_DIR) or
``mw-unsent`` (the same, its records dropped where they would be queued: what
delivery costs the server, for bench/throughput.py --unsent).
BENCH_GC_REPORT (optional): a path; the server then times its garbage
collections for bench/server_gc.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))

import workload as w  # noqa: E402

if os.environ.get("BENCH_GC_REPORT"):  # bench/server_gc.py: this process counts its collections
    import server_gc
    server_gc.install(os.environ["BENCH_GC_REPORT"])

VARIANT = os.environ.get("BENCH_VARIANT", "bare")
DIRECTORY = Path(os.environ.get("BENCH_DIR", "."))


def _config() -> dict[str, Any]:
    config = w.bench_config(str(DIRECTORY / "touchpoints.jsonl"), delivery={})
    config["base_dir"] = str(DIRECTORY)  # the spool: DIRECTORY/.personalize_spool
    return config


def _asgi() -> Any:
    app = w.starlette_app()
    if VARIANT == "naive":
        return w.naive_asgi(app)
    if VARIANT == "gzip":
        from starlette.middleware.gzip import GZipMiddleware
        return GZipMiddleware(app)
    if VARIANT.startswith("mw"):
        from personalize_mw import PersonalizeMiddleware
        return _unsent(PersonalizeMiddleware(app, config=_config()))
    return app


def _wsgi() -> Any:
    if VARIANT == "naive":
        return w.flask_app(w.naive_wsgi)
    if VARIANT.startswith("mw"):
        from personalize_mw import PersonalizeWSGIMiddleware
        return w.flask_app(lambda app: _unsent(PersonalizeWSGIMiddleware(app, config=_config())))
    return w.flask_app()


def _unsent(middleware: Any) -> Any:
    """``mw-unsent``: the records are made as ever, then dropped instead of queued (no sink thread)."""
    if VARIANT == "mw-unsent":
        middleware.core.queue.put = lambda record: True
        middleware.core.queue.put_many = lambda records: True
    return middleware


asgi = _asgi() if os.environ.get("BENCH_STACK", "asgi") == "asgi" else None
wsgi = _wsgi() if os.environ.get("BENCH_STACK") == "wsgi" else None
