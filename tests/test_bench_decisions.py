"""``bench/decisions.py --quick`` runs end to end: every strategy row is printed with a verdict.

No timing is asserted (performance lives in bench/); this keeps the benchmark
runnable, including its own checks (each row times a real decision, crowd
never recommends a page the visitor has read).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_decisions_benchmark_prints_every_strategy() -> None:
    done = subprocess.run([sys.executable, "bench/decisions.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "µs" not in line]
    names = [row.split(" | ")[0][2:] for row in rows]
    assert names[0] == "rules (reference)" and {"bandit", "crowd, 10,000-item catalog"} <= set(names)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[4] in {"PASS", "MISS"}, row
        float(cells[1]), float(cells[2]), float(cells[3])  # figures, not placeholders
