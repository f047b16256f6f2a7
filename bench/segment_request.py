"""What ``--by segment`` pays for the request's fields (``utm``, ``referrer_host``): docs/performance.md.

    .venv/bin/python bench/segment_request.py            # the figures in docs/performance.md
    .venv/bin/python bench/segment_request.py --quick    # a smoke run on 5,000 visitors; figures not meaningful

The records are the direct simulation with planted segments (``simulate --mode
direct --segments``, seed 7), written once as JSON lines into a temporary
folder. Timed, best of three each, wall and CPU seconds (user + sys, every
DuckDB thread): reading them into the readouts' table (``read_once(open_source)``)
without the request's fields and with them, in this process; then, as a user
runs them, in a subprocess, ``lift --by segment`` on the example config (whose
``linkedin_campaign``, ``competitor_search`` and ``review_site`` read them) and
the default ``lift``, which never reads them.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True  # nothing written into bench/
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.lift import best  # noqa: E402
from personalize_mw.analytics.simulate import simulate, write_jsonl  # noqa: E402
from personalize_mw.analytics.source import open_source, read_once  # noqa: E402

CONFIG = ROOT / "example_site" / "personalize.yaml"


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def read_seconds(path: Path, request: bool, rounds: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of ``rounds`` reads of ``path`` into the readouts' table."""
    runs = []
    for _ in range(rounds):
        cpu, start = _cpu(), time.perf_counter()
        read_once(open_source([str(path)], request=request)).close()
        runs.append((time.perf_counter() - start, _cpu() - cpu))
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="5,000 visitors, one round")
    args = parser.parse_args()
    visitors, rounds = (5_000, 1) if args.quick else (args.visitors, 3)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sim.jsonl"
        records = write_jsonl(simulate(visitors, seed=7, segments=True), path)
        print(f"{records:,} records of {visitors:,} visitors, {path.stat().st_size / 1e6:,.0f} MB; "
              f"best of {rounds}, wall / CPU seconds", flush=True)
        for request in (False, True):
            wall, cpu = read_seconds(path, request, rounds)
            print(f"read_once(open_source(request={request})): {wall:.2f} / {cpu:.2f}", flush=True)
        lift = [sys.executable, "-m", "personalize_mw.cli", "lift", str(path), "--goal", "signup",
                "--format", "json"]
        for name, command in (("lift --by segment --config example_site/personalize.yaml",
                               [*lift, "--by", "segment", "--config", str(CONFIG)]), ("lift", lift)):
            wall, cpu, _ = best(command, rounds)
            print(f"{name}: {wall:.2f} / {cpu:.2f}", flush=True)


if __name__ == "__main__":
    main()
