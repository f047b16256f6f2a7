"""Every command README.md and docs/ show runs as written (issue 10).

A command is a line of a ```sh block, or an inline code span that starts with
``make``, ``python``, ``.venv/bin/`` or ``personalize-mw`` and has arguments
(``personalize-mw prune`` alone names a subcommand in prose). They run in
document order, README first, in a copy of the repository with ``.venv/bin``
first on the PATH, as after the README's set-up lines (``make demo``, then
``. .venv/bin/activate``), so what one command writes (``sim.jsonl``) the next
one reads. Words in capitals are placeholders the reader fills in; the test
fills in the ones :data:`PLACEHOLDERS` knows and fails on any other.

How long a command may take decides how it is checked: a server must answer
its page, a long command must run for :data:`LONG_BUDGET` seconds without
failing, every other command must exit 0 within :data:`BUDGET`. A long command
the docs show in several places (``make bench`` ten times) runs once: the
benchmarks write only to temporary folders, so no other command changes what
they find, and each repeat would cost the suite its budget again.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
BUDGET = 120.0
LONG_BUDGET = 5.0
SERVER_BUDGET = 60.0
_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
# personalize-mw needs a subcommand and an argument: `personalize-mw prune` alone names a subcommand.
_COMMAND_START = re.compile(r"^((make|python3?|\.venv/bin/\S+)\s+\S|personalize-mw\s+\S+\s+\S)")
_PLACEHOLDER = re.compile(r"(?<!\S)[A-Z][A-Z_]*[A-Z](?:\.\.\.)?(?!\S)")  # a whole word in capitals

# Placeholders the docs use, and what a reader would type there.
PLACEHOLDERS = {
    "VISITOR_OR_USER_ID": "3f9a1c0e2b7d4e55",
    "ID": "3f9a1c0e2b7d4e55",
    "USER_ID": "alice@example.com",
}
# Commands that are checked another way, and how.
NOT_RUN_HERE = {
    "make test": "the command that runs this test; CI runs it on a clean clone",
}
# Commands that run for minutes: they must start and keep running without an error.
LONG = ("make bench", "bench/")  # every benchmark script: minutes at full size
# Commands that serve a site until stopped: (pattern, port, path that must answer 200).
SERVERS = ((re.compile(r"^make demo$"), 8000), (re.compile(r"^make demo-flask$"), 8001),
           (re.compile(r"^make demo-django$"), 8002), (re.compile(r"example_site\.flask_app"), 8001),
           (re.compile(r"manage\.py runserver"), 8002))


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    text: str


def documented_commands() -> list[Command]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found: list[Command] = []
    for path in files:
        in_sh, fenced = False, False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{number}"
            if line.lstrip().startswith("```"):  # fences may be indented under a list item
                in_sh = not fenced and line.lstrip()[3:].strip() in ("sh", "bash", "shell", "console")
                fenced = not fenced
                continue
            if fenced:
                command = line.split(" #", 1)[0].strip()
                if in_sh and command:
                    found.append(Command(where, command))
                continue
            for span in _SPAN.findall(line):
                if _COMMAND_START.match(span):
                    found.append(Command(where, span.strip()))
    return found


def _filled(command: Command) -> tuple[str, list[str]]:
    """The command as a reader would type it, and the placeholders nobody could fill."""
    unknown: list[str] = []

    def fill(match: re.Match[str]) -> str:
        word = match.group(0)
        if word not in PLACEHOLDERS:
            unknown.append(word)
            return word
        return PLACEHOLDERS[word]

    if re.search(r"[A-Z_]+=", command.text):  # an environment assignment: its capitals are a name
        return command.text, []
    return _PLACEHOLDER.sub(fill, command.text), unknown


def _copy_of_the_repository(target: Path) -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)  # mtimes kept: make sees the venv as up to date
    for built in (ROOT / "personalize_mw").rglob("*.so"):
        shutil.copy2(built, target / built.relative_to(ROOT))
    # The copy shares the real venv: a `make demo` that saw its inputs as newer than the venv's
    # stamps (a fresh worktree, an edited pyproject.toml) would reinstall the venv as an
    # editable install of this temporary copy and leave it broken once the copy is gone.
    for name in ("pyproject.toml", "setup.py", "personalize_mw/core/_scan.c"):
        os.utime(target / name, (0, 0))
    (target / ".venv").symlink_to(VENV_BIN.parent)


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    return env


def _answers(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            time.sleep(0.3)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _run(command: str, cwd: Path, env: dict[str, str]) -> str | None:
    """None if the command ran as documented, else what went wrong."""
    server = next((port for pattern, port in SERVERS if pattern.search(command)), None)
    long = any(pattern in command for pattern in LONG)
    process = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if server is not None:
            if _answers(server, time.monotonic() + SERVER_BUDGET) and process.poll() is None:
                return None
            _stop(process)
            return f"no page on port {server}: {_tail(process)}"
        try:
            process.wait(timeout=LONG_BUDGET if long else BUDGET)
        except subprocess.TimeoutExpired:
            if long:
                return None  # started and still working, as a minutes-long command does
            return f"still running after {BUDGET:.0f} s"
        return None if process.returncode == 0 else f"exit {process.returncode}: {_tail(process)}"
    finally:
        if process.poll() is None:
            _stop(process)


def _tail(process: subprocess.Popen[bytes]) -> str:
    assert process.stdout is not None
    return process.stdout.read().decode(errors="replace")[-1500:]


def _installs_nothing_new(command: str) -> str | None:
    """A `pip install -e '.[extra]'` line: make test installed a superset; check the extras are there."""
    extras = re.findall(r"\[([a-z,]+)\]", command)
    requires = metadata.requires("personalize_mw") or []
    missing = []
    for extra in ",".join(extras).split(","):
        for requirement in requires:
            if f'extra == "{extra}"' in requirement:
                name = re.split(r"[<>=!\[; ]", requirement, maxsplit=1)[0]
                try:
                    metadata.version(name)
                except metadata.PackageNotFoundError:
                    missing.append(name)
    return f"not installed: {missing}" if missing else None


_LOOKS_RUNNABLE = re.compile(r"^\s*(\$ )?(make|python3?|pip|\.venv/bin/\S+|personalize-mw)\s")


def test_commands_are_in_sh_blocks() -> None:
    # An unlabelled block of commands would escape the test below.
    unlabelled = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        language = None
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("```"):
                language = line.lstrip()[3:].strip() if language is None else None
            elif language == "" and _LOOKS_RUNNABLE.match(line):
                unlabelled.append(f"{path.relative_to(ROOT)}:{number}: {line}")
    assert not unlabelled, "label these blocks ```sh:\n" + "\n".join(unlabelled)


def test_the_docs_show_commands() -> None:
    texts = [c.text for c in documented_commands()]
    assert "make demo" in texts and "make test" in texts
    assert any(t.startswith("personalize-mw ") for t in texts)


def test_every_documented_command_runs_as_written(tmp_path: Path) -> None:
    _copy_of_the_repository(tmp_path)
    env = _environment()
    failures = []
    long_ones_run: set[str] = set()
    for command in documented_commands():
        if command.text in NOT_RUN_HERE or command.text in long_ones_run:
            continue
        if any(pattern in command.text for pattern in LONG):
            long_ones_run.add(command.text)
        text, unknown = _filled(command)
        if unknown:
            problem = f"placeholders nobody can fill: {unknown}"
        elif re.search(r"\bpip install\b", text):
            problem = _installs_nothing_new(text)
        else:
            problem = _run(text, tmp_path, env)
        if problem is not None:
            failures.append(f"{command.where}: {command.text}\n    {problem}")
    assert not failures, "documented commands that fail as written:\n" + "\n".join(failures)


@pytest.mark.parametrize(("text", "passes"), [("true", True), ("false", False), ("exit 3", False),
                                             ("personalize-mw check no-such-file.yaml", False)])
def test_the_runner_tells_a_failing_command_from_a_working_one(text: str, passes: bool, tmp_path: Path) -> None:
    assert (_run(text, tmp_path, _environment()) is None) is passes
