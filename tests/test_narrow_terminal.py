"""attribution, lift and plan tables at 80 columns: stacked, every row label whole (issue 11, narrow terminals).

Three ways to 80 columns: piped (rich's default width), COLUMNS=80, and a real
pseudo-terminal 80 columns wide, the commands run as a person runs them.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from personalize_mw.analytics.simulate import simulate, write_jsonl
from personalize_mw.cli import main
from tests.example_records import walk_example_site

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CHANNELS = ("organic", "direct", "email", "paid_search", "social", "referral")
MODELS = ("first", "last", "linear", "time_decay", "position", "markov", "shapley")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("narrow") / "sim.jsonl"
    write_jsonl(simulate(3000, seed=4), path)
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "touchpoints.jsonl"
    walk_example_site(path)
    return path


def _variants(path: Path) -> set[str]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {f"{r['slot']}:{r['variant']}" for r in records if r["type"] == "exposure" and r["arm"] != "unenrolled"}


def _tables(text: str) -> list[list[str]]:
    """The body rows of each table printed, as lists of cell texts."""
    out: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("┏"):
            out.append([])
        elif line.startswith("│") and out:
            out[-1].append(line)
    return out


def assert_readable(text: str, labels: set[str], headers: tuple[str, ...], width: int = 80) -> None:
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width, max(lines, key=len)
    assert "…" not in text  # nothing cut
    tables = _tables(text)
    assert len(tables) >= 2  # too wide for 80 columns as one table: stacked
    for rows in tables:  # every stacked table starts each row with its label, whole
        firsts = {row.split("│")[1].strip() for row in rows}
        assert labels <= firsts, (labels - firsts, rows)
    heads = " ".join(line for line in lines if line.startswith("┃"))
    for header in headers:  # every column is somewhere
        assert re.search(rf"┃ +{re.escape(header)} +┃", heads), header


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("columns", [None, "80"], ids=["piped", "COLUMNS=80"])
def test_attribution_by_channel_at_80_columns(sim: Path, columns: str | None, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)  # piped: rich's 80
    else:
        monkeypatch.setenv("COLUMNS", columns)
    text = _run(["attribution", str(sim), "--by", "channel"], capsys)
    assert_readable(text, {*CHANNELS, "total"}, MODELS)


@pytest.mark.parametrize("columns", [None, "80"], ids=["piped", "COLUMNS=80"])
def test_lift_at_80_columns(demo: Path, columns: str | None, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    text = _run(["lift", str(demo)], capsys)
    variants = _variants(demo)
    assert "signup_headline:no-card" in variants  # the longest name the shipped rules make
    assert_readable(text, variants, ("treated", "holdout", "lift pp [always-valid 95 %]", "fixed-horizon 95 %",
                                     "p adj.", "P(beats)", "split", *MODELS, "caused [95 % CI]"))
    # the warnings: each once, with its rows
    assert text.count("small sample: fewer than 100 visitors in an arm") == 1


def test_a_wide_terminal_gets_one_table(sim: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    text = _run(["attribution", str(sim), "--by", "channel"], capsys)
    assert len(_tables(text)) == 1 and "(continued)" not in text


def _in_terminal(argv: list[str], columns: int) -> str:
    """The command in a pseudo-terminal ``columns`` wide, as a person at that terminal sees it."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(ROOT)
    env["TERM"] = "xterm-256color"
    process = subprocess.Popen([sys.executable, "-m", "personalize_mw.cli", *argv], stdin=follower, stdout=follower,
                               stderr=follower, env=env, cwd=ROOT)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the command is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=120) == 0
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")


def test_in_an_80_column_terminal(sim: Path, demo: Path) -> None:
    assert_readable(_in_terminal(["attribution", str(sim), "--by", "channel"], 80), {*CHANNELS, "total"}, MODELS)
    assert_readable(_in_terminal(["lift", str(demo)], 80), _variants(demo), ("treated", "split", "caused [95 % CI]"))
