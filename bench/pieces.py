"""The pieces of one page view, timed one by one (the "in isolation" table of docs/performance.md).

    .venv/bin/python bench/pieces.py

Anonymous visitor and 5-slot page of bench/workload.py; the record queue is a
no-op so the sink thread does not compete for the GIL. Best of 5 repeats of
3,000 calls, µs per call. bench/overhead.py measures whole requests.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # nothing written into bench/

import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import workload as w  # noqa: E402
from personalize_mw.asgi import request_context  # noqa: E402
from personalize_mw.config import load_config  # noqa: E402
from personalize_mw.core.cookies import Cookies, _cookie_pairs_py, cookie_pairs  # noqa: E402
from personalize_mw.core.markers import find_blocks, replace_blocks  # noqa: E402
from personalize_mw.core.personalizer import Personalizer  # noqa: E402
from personalize_mw.core.visitor import Profile, VisitorCodec, new_id  # noqa: E402
from personalize_mw.touchpoints.record import (  # noqa: E402
    _stamp_of,
    _stamp_records,
    _stamp_records_py,
)


class _NoQueue:
    def put(self, record: dict) -> bool:
        return True

    def put_many(self, records: list[dict]) -> bool:  # a page's records, as the middleware queues them
        return True

    def close(self) -> None:
        pass


def best_us(call) -> float:
    return min(timeit.repeat(call, number=3000, repeat=5)) / 3000 * 1e6


def stamped_us(stamp_records, page_records: list[dict]) -> float:
    """Per record: a batch of 5,000 fresh copies of a page's records, ids and ts stamped (best of 5)."""
    best = float("inf")
    for _ in range(5):
        batch = [dict(record) for _ in range(5000 // len(page_records)) for record in page_records]
        raw = os.urandom(16 * len(batch))
        started = time.perf_counter()
        stamp_records(batch, raw, _stamp_of)
        best = min(best, (time.perf_counter() - started) / len(batch) * 1e6)
    return best


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pmw-pieces-") as tmp:
        core = Personalizer(load_config(w.bench_config(os.path.join(tmp, "t.jsonl"))), queue=_NoQueue())
        scope = w.asgi_scope(w.ANONYMOUS, w.PATHS["5-slot page"])
        page, plain = w.PAGE, w.PLAIN_PAGE
        blocks = find_blocks(page)
        codec = VisitorCodec([w.bench_config("x")["secret_keys"][0]], "pmw_id", 86400 * 395)
        profile = Profile(new_id(), visits=3, first_seen=1, last_seen=2, paths=["/pricing", "/blog/x"] * 10)
        cookie = codec.dump(profile, False)
        header = dict(w.returning_visitor(f"pmw_id={cookie}").headers)["cookie"]
        elsewhere = VisitorCodec([w.bench_config("x")["secret_keys"][0]], "pmw_id", 86400 * 395)  # same keys
        rows = [
            ("request_context (ASGI headers -> context)", lambda: request_context(scope, "cf-ipcountry")),
            ("visit() without a body", lambda: core.visit(request_context(scope, "cf-ipcountry"), None, time.time())),
            ("visit() with the 5-slot page", lambda: core.visit(request_context(scope, "cf-ipcountry"), page, time.time())),
            ("find_blocks, 5-slot page (10 markers)", lambda: find_blocks(page)),
            ("find_blocks, page without markers", lambda: find_blocks(plain)),
            ("replace_blocks (one 50 KB join)", lambda: replace_blocks(page, {0: b"x", 2: b"y", 4: b"z"}, blocks)),
            ("signed cookie load (this signer issued it: remembered)", lambda: codec.load(cookie)),
            ("signed cookie load (another worker issued it: full verify)", lambda: elsewhere.load(cookie)),
            ("signed cookie dump", lambda: codec.dump(profile, False)),
            ("Cookie header, a consenting visitor's 4 cookies, split (compiled where built)",
             lambda: cookie_pairs(Cookies(), header)),
            ("the same, the Python split", lambda: _cookie_pairs_py(Cookies(), header)),
        ]
        print("| piece | µs |\n|---|---:|")
        for label, call in rows:
            print(f"| {label} | {best_us(call):.1f} |")
        # The worker stamps each batch (id, ts from _t) before its first write: per record, the 5-slot page's six.
        page_records = core.visit(request_context(scope, "cf-ipcountry"), page, time.time()).records
        compiled_us = stamped_us(_stamp_records, page_records)
        print(f"| a record stamped, id and ts (compiled where built) | {compiled_us:.2f} |")
        print(f"| the same, the Python way | {stamped_us(_stamp_records_py, page_records):.2f} |")


if __name__ == "__main__":
    main()
