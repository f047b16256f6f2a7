"""What compiling the page path's modules with Cython would buy: measured here, not shipped.

    .venv/bin/python bench/cython_probe.py            # about 15 minutes
    .venv/bin/python bench/cython_probe.py --quick    # a smoke run, about 3 minutes

The compiled accelerator issue 8 allows could be the project's own modules,
unchanged, compiled by Cython (as pydantic 1 shipped its own): the same code,
fewer interpreter steps. docs/performance.md ("Compiled by Cython: measured, not
taken") says why the project does not: this measures it.

Two copies of ``personalize_mw/`` and ``bench/`` in a temporary folder, both with
the repository's built ``_scan`` module. In one, the modules of :data:`MODULES`
are compiled in place by ``cythonize -i -3 -X annotation_typing=False`` (the
annotations stay Python's: Cython would otherwise enforce them, and refuses a
``Cookies`` where one names ``dict``). ``wsgi.py`` is left out: its ``_Body.close``
reads ``gi_suspended``, which Cython's generators lack. Then, alternating the
pure copy and the compiled one, each copy's ``bench/overhead.py --only "5-slot page"``
(in process: the ratio to the naive rewrite) and ``bench/throughput.py --only
httptools`` (a real server: shares of the naive rewrite's req/s), with
``PYTHONPATH`` on the copy, so that the servers import it too.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import revision  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("core/personalizer.py", "core/response.py", "asgi.py", "core/headers.py", "core/page_memo.py",
           "core/request_state.py", "core/context.py", "core/visitor.py", "core/signing.py", "core/consent.py",
           "core/cookies.py", "core/markers.py", "touchpoints/record.py")
_RATIO = re.compile(r"^\| (ASGI|WSGI) 5-slot page, (anonymous|returning), \+ Personalize\w+ \|.*?\| ([\d.]+×) \(")
_SHARES = re.compile(r"^\| uvicorn httptools\+uvloop, Starlette \| [\d,]+ \|(?: [\d.]+ \|){4} ([\d.]+) \| ([\d.]+) \|")


def copy(to: Path) -> Path:
    shutil.copytree(ROOT / "personalize_mw", to / "personalize_mw",
                    ignore=shutil.ignore_patterns("__pycache__", "*.c"))  # _scan's .so comes along, built
    shutil.copytree(ROOT / "bench", to / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    return to


def compile_modules(tree: Path) -> None:
    cythonize = Path(sys.executable).parent / "cythonize"
    sources = [str(tree / "personalize_mw" / module) for module in MODULES]
    done = subprocess.run([str(cythonize), "-i", "-3", "-j", str(os.cpu_count() or 1), "-X",
                           "annotation_typing=False", *sources], cwd=tree, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"cythonize failed:\n{done.stderr[-3000:]}")
    built = [module for module in MODULES if list((tree / "personalize_mw" / module).parent.glob(
        Path(module).stem + ".cpython-*.so"))]
    if len(built) != len(MODULES):
        raise SystemExit(f"compiled only {built}")


def run(tree: Path, script: list[str]) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, *script], cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(script)} failed in {tree}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def main(repeats: int, quick: bool) -> int:
    if shutil.which("wrk") is None or not (Path(sys.executable).parent / "cythonize").exists():
        print("needs wrk and Cython: make system-deps, and the test extra (pip install -e '.[test]')")
        return 1
    # SIGTERM (a deploy script, tests/test_docs_commands.py) ends the run through the with: no copies left in /tmp.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"personalize_mw compiled by Cython against itself as Python, at {revision()}")
    with tempfile.TemporaryDirectory(prefix="pmw-cython-") as tmp:
        pure, compiled = copy(Path(tmp) / "pure"), copy(Path(tmp) / "compiled")
        compile_modules(compiled)
        check = "import personalize_mw.core.personalizer as m; print(m.__file__)"
        print(f"compiled by Cython: {', '.join(MODULES)}; loaded as {run(compiled, ['-c', check]).strip()}")
        overhead = ["bench/overhead.py", "--only", "5-slot page", *(["--quick"] if quick else ["--rounds", "21"])]
        throughput = ["bench/throughput.py", "--only", "httptools", *(["--quick"] if quick else ["--rounds", "2"])]
        rows: list[tuple[str, str, str]] = []
        for _ in range(repeats):
            for name, tree in (("pure", pure), ("compiled", compiled)):
                ratios = dict((f"{m[1]} {m[2]}", m[3]) for m in map(_RATIO.match, run(tree, overhead).splitlines())
                              if m)
                shares = next((m.groups() for m in map(_SHARES.match, run(tree, throughput).splitlines()) if m), ())
                if len(ratios) != 4 or len(shares) != 2:  # the benches' tables changed shape: say so, not "?"
                    raise SystemExit(f"could not read the tables of {overhead[0]} and {throughput[0]}")
                rows.append((name, " / ".join(ratios[cell] for cell in (
                    "ASGI anonymous", "ASGI returning", "WSGI anonymous", "WSGI returning")), " / ".join(shares)))
    print("\n| copy | in process, × the naive rewrite's added µs: ASGI anonymous / returning, WSGI anonymous / "
          "returning (≤ 1.5 / 2.0) | httptools, share of the naive rewrite's req/s: anonymous / consenting "
          "(≥ 0.80 / 0.70) |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: one quick pass of each")
    parser.add_argument("--repeats", type=int, help="passes of each copy, alternating (default 2, quick 1)")
    arguments = parser.parse_args()
    sys.exit(main(arguments.repeats or (1 if arguments.quick else 2), arguments.quick))
