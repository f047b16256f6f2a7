"""``bench/overhead.py --quick`` runs end to end: every scenario row is printed, nothing is left behind.

No timing is asserted here (performance lives in bench/); this only keeps the
benchmark runnable as the code changes, including its own correctness checks
(slots filled per visitor, bodies unchanged where they must be).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANCHOR = "+ naive re.sub rewrite (anchor)"
STACKS = {"ASGI": (ANCHOR, "+ PersonalizeMiddleware", "+ GZipMiddleware (scale)"),
          "WSGI": (ANCHOR, "+ PersonalizeWSGIMiddleware")}
PAGES = ("5-slot page", "no markers", "JSON")
VISITORS = ("anonymous", "returning")


def _bench_files() -> set[Path]:
    return set((ROOT / "bench").rglob("*"))


def test_quick_benchmark_prints_every_scenario() -> None:
    before = _bench_files()
    done = subprocess.run([sys.executable, "bench/overhead.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "µs" not in line]
    expected = {f"{stack} {page}, {visitor}, {label}"
                for stack, labels in STACKS.items() for page in PAGES for visitor in VISITORS for label in labels}
    assert {row.split(" | ")[0][2:] for row in rows} == expected
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[8] in ({"PASS", "MISS", "ON THE LINE"} if "Personalize" in cells[0] else {"—"}), row
        if "Personalize" in cells[0] and "5-slot" in cells[0]:
            # measured against the anchor of the same run, with the rounds' quartiles of that ratio
            assert re.fullmatch(r"\d+\.\d\d× \((-?\d+\.\d\d|inf)–(-?\d+\.\d\d|inf)\)", cells[6]), row
        float(cells[1]), float(cells[2]), float(cells[3]), float(cells[5])  # figures, not placeholders
    assert "dropped: 0" in done.stdout
    assert _bench_files() == before  # no bytecode, sink or report written into bench/


def test_the_throughput_benchmark_serves_every_cell_and_counts_every_record() -> None:
    before = _bench_files()
    done = subprocess.run([sys.executable, "bench/throughput.py", "--rounds", "1", "--seconds", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    tables = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    stacks = {"uvicorn httptools+uvloop, Starlette", "uvicorn h11, Starlette", "gunicorn gthread, Flask"}
    throughput = [row for row in tables if "req/s" not in row and "requests completed" not in row
                  and "| bare |" not in row]
    assert {row.split(" | ")[0][2:] for row in throughput} == stacks, done.stdout + done.stderr
    shapes = []
    for row in throughput:
        cells = [c.strip() for c in row.strip("|").split("|")]
        shapes.append(len(cells))
        if len(cells) == 9:  # the throughput table: ratios, measured
            float(cells[1].replace(",", "")), float(cells[2]), float(cells[4]), float(cells[5])
        elif len(cells) == 6:  # the 99th percentile latencies: measured for every cell served (no GZip under Flask)
            assert all(float(c) > 0 for c in cells[1:] if c != "—") and cells.count("—") <= 1, row
        else:  # the records table: nothing lost
            assert cells[5] == "0", done.stdout
    assert sorted(shapes) == [6] * 3 + [7] * 3 + [9] * 3, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert _bench_files() == before


def test_under_a_real_uvicorn_no_request_leaves_garbage_for_the_collector() -> None:
    # The in-process bench cannot see a cycle through the server's own objects (uvicorn's
    # RequestResponseCycle holds the scope and the send): the server counts what its GC frees.
    before = _bench_files()
    done = subprocess.run([sys.executable, "bench/server_gc.py", "--quick", "--only", "httptools"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {cells[1]: cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                          for line in done.stdout.splitlines() if line.startswith("| uvicorn"))}
    assert set(rows) == {"bare", "naive", "personalize_mw anonymous", "personalize_mw consenting"}, done.stdout
    header = next([c.strip() for c in line.strip("|").split("|")] for line in done.stdout.splitlines()
                  if line.startswith("| stack"))
    freed, longest = header.index("freed by GC a request"), header.index("longest collection ms")
    for app in ("personalize_mw anonymous", "personalize_mw consenting"):
        assert int(rows[app][2].replace(",", "")) > 500, done.stdout  # it was loaded
        assert float(rows[app][freed]) == 0.0, done.stdout  # objects a request only the collector freed
        assert float(rows[app][longest]) >= 0.0 and float(rows[app][header.index("p99 latency ms")]) > 0, done.stdout
    assert _bench_files() == before


def test_quick_attribution_benchmark_runs_every_model_and_reference() -> None:
    before = _bench_files()
    done = subprocess.run([sys.executable, "bench/attribution.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = {line.split(" | ")[0][2:] for line in done.stdout.splitlines() if line.startswith("| ")}
    assert {"heuristics (5 models)", "markov order 1", "shapley", "peak memory (MB)",
            "ChannelAttribution markov_model (defaults, simulated)", "MAM heuristics (5 models)"} <= steps
    assert "not available" not in done.stdout  # the references are in the test extra: they must run
    assert _bench_files() == before


def test_the_privacy_benchmark_exports_and_forgets_on_every_sink() -> None:
    before = _bench_files()
    done = subprocess.run([sys.executable, "bench/privacy.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr  # its own checks: every record found and deleted
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0][2:] for row in rows] == ["jsonl", "sqlite"]
    assert all("(20 deleted)" in row for row in rows), done.stdout
    assert _bench_files() == before


def test_the_lift_benchmark_runs_the_readout_on_its_generated_records() -> None:
    before = _bench_files()
    done = subprocess.run([sys.executable, "bench/lift.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr  # its own checks: six rows, every split checked
    lines = done.stdout.splitlines()
    assert lines[0].endswith(" s)") and "records," in lines[0] and "in 8 files" in lines[0]
    assert lines[1].startswith("in process: parse the JSON lines once ") and "attribution credit" in lines[1]
    assert lines[2].startswith("personalize-mw lift, ") and "s wall, best of 1" in lines[2]
    assert _bench_files() == before


def test_quick_enrichment_benchmark_prints_its_rows() -> None:
    done = subprocess.run([sys.executable, "bench/enrichment.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split(" | ")[0][2:] for line in done.stdout.splitlines() if line.startswith("| ")]
    for row in ("company.industry (MMDB, cached)", "geo.region (MMDB, cached)", "crm.stage (http, cached)",
                "CRM answers in 2 s (timeout 3 s)", "CRM accepts, never answers (timeout 500 ms)",
                "CRM down (connection refused)"):
        assert row in rows, done.stdout


def test_the_suggest_benchmark_times_reading_and_clustering_and_scores_the_recovery() -> None:
    before = _bench_files()
    done = subprocess.run([sys.executable, "bench/suggest.py", "--quick"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split(" | ")[0][2:]: line for line in done.stdout.splitlines() if line.startswith("| ")}
    assert {"read the visitors' features (DuckDB, JSONL)", "read and cluster"} <= set(rows), done.stdout
    assert any(name.startswith("cluster: k = 2..10") for name in rows), done.stdout
    assert rows["read and cluster"].rstrip(" |").endswith(("PASS", "MISS"))
    ari = float(done.stdout.split("adjusted Rand index against the planted personas: ")[1].split()[0])
    assert 0.0 <= ari <= 1.0
    assert _bench_files() == before


def test_the_suggest_benchmark_counts_the_loop_properties_per_seed() -> None:
    before = _bench_files()
    done = subprocess.run([sys.executable, "bench/suggest.py", "--loop-seeds", "2"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and " of 2 |" in line]
    assert len(rows) == 3 and "null hero:reviews promoted" in rows[0], done.stdout
    assert "read and cluster" not in done.stdout  # only the properties
    assert _bench_files() == before


def test_the_segment_request_benchmark_times_both_reads_and_both_commands() -> None:
    before = _bench_files()
    done = subprocess.run([sys.executable, "bench/segment_request.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "records of 5,000 visitors" in lines[0]
    assert [line.split(":")[0] for line in lines[1:]] == [
        "read_once(open_source(request=False))", "read_once(open_source(request=True))",
        "lift --by segment --config example_site/personalize.yaml", "lift"]
    assert "linkedin_campaign" not in done.stderr  # evaluated: not one of the segments said not evaluable
    assert _bench_files() == before
