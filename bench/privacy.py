"""What one privacy request costs: export and forget of one visitor over a sink of N records.

    .venv/bin/python bench/privacy.py            # the figures in docs/privacy.md ("What a request costs")
    .venv/bin/python bench/privacy.py --quick    # a smoke run; figures not meaningful

The sink is filled the way the site fills it (the sink's own ``write``, in
batches of 100), with records of many visitors; the visitor asked about has
20 of them. Each row times ``export_person`` and ``forget_person`` with
``follow_links=False``, as the visitor's own request runs them
(core/privacy_endpoint.py); the CLI's ``export`` and ``forget`` follow the
identify links as well, which for jsonl is one more pass over the files.
Best of ``--rounds``; each forget round runs on a fresh copy of the sink.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

sys.dont_write_bytecode = True  # nothing written into bench/
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from personalize_mw.config import load_config  # noqa: E402
from sinks import revision  # noqa: E402
from personalize_mw.privacy.requests import export_person, forget_person  # noqa: E402
from personalize_mw.touchpoints.jsonl import JsonlSink  # noqa: E402
from personalize_mw.touchpoints.record import finalize, new_record  # noqa: E402
from personalize_mw.touchpoints.sqlite import SqliteSink  # noqa: E402

SECRET = "bench-privacy-secret-0123456789"
UTM = dict.fromkeys(("source", "medium", "campaign", "term", "content"))
CONSENT = {"analytics": True, "personalization": True, "advertising": False, "gpc": False}
TARGET = "bench-visitor-asked-about"
TARGET_RECORDS = 20


def _every(count: int) -> int:
    return max(1, count // TARGET_RECORDS)


def batches(count: int) -> Iterator[list[dict[str, Any]]]:
    """``count`` page views in batches of 100, 10 per visitor; TARGET's spread through the file."""
    every, now = _every(count), time.time()
    for start in range(0, count, 100):
        yield [finalize(new_record("pageview", now + i, visitor=TARGET if i % every == 0 else f"visitor-{i // 10:09d}",
                                   session=None, path=f"/blog/post-{i % 500}", referrer_host=None, channel="direct",
                                   utm=UTM, consent=CONSENT))
               for i in range(start, min(count, start + 100))]


def fill(kind: str, folder: Path, count: int) -> tuple[str, Path]:
    """A sink of ``kind`` in ``folder`` holding ``count`` records, written as the sink worker writes them."""
    path = folder / ("tp.jsonl" if kind == "jsonl" else "tp.db")
    sink = JsonlSink(path) if kind == "jsonl" else SqliteSink(path)
    for batch in batches(count):
        sink.write(batch)
    sink.close()
    return f"{kind}:{path}", path


def best(rounds: int, run: Any) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def _config(url: str, folder: Path) -> Any:
    return load_config({"secret_keys": [SECRET], "sink": url, "delivery": {"spool_dir": str(folder / "spool")}})


def measure(kind: str, count: int, rounds: int, folder: Path) -> tuple[float, float, float, int]:
    """(MB on disk, export s, forget s, records forgotten) for a sink of ``kind`` holding ``count`` records."""
    url, path = fill(kind, folder, count)
    config = _config(url, folder)
    size = path.stat().st_size / 1e6
    exported = export_person(config, TARGET, follow_links=False)
    found = sum(len(r) for r in exported["records"].values())
    assert found == len(range(0, count, _every(count))), found
    export_s = best(rounds, lambda: export_person(config, TARGET, follow_links=False))
    forget_times, deleted = [], 0
    for round_ in range(rounds):  # each on its own copy: forget changes the sink
        copy = folder / f"round-{round_}" / path.name
        copy.parent.mkdir()
        shutil.copyfile(path, copy)
        fresh = _config(f"{kind}:{copy}", copy.parent)
        start = time.perf_counter()
        report = forget_person(fresh, TARGET, follow_links=False)
        forget_times.append(time.perf_counter() - start)
        assert report.complete, report.failed
        deleted = sum(report.deleted.values())
    assert deleted == found, (deleted, found)
    return size, export_s, min(forget_times), deleted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small counts, one round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per figure; the best is shown")
    args = parser.parse_args()
    counts = (2_000,) if args.quick else (100_000, 1_000_000)
    rounds = 1 if args.quick else args.rounds
    print(f"at {revision()}, Python {platform.python_version()} on {platform.machine()}; best of {rounds}\n")
    print("| sink | records | on disk | export one visitor | forget one visitor |")
    print("|---|---:|---:|---:|---:|")
    for kind in ("jsonl", "sqlite"):
        for count in counts:
            with tempfile.TemporaryDirectory() as folder:
                size, export_s, forget_s, deleted = measure(kind, count, rounds, Path(folder))
            print(f"| {kind} | {count:,} | {size:,.0f} MB | {export_s:.2f} s | {forget_s:.2f} s "
                  f"({deleted} deleted) |")


if __name__ == "__main__":
    main()
