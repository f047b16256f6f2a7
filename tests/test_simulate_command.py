"""``personalize-mw simulate`` as a user runs it: a real subprocess, piped or on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from personalize_mw.analytics.simulate_command import truth_path
from personalize_mw.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONWARNINGS"] = "default"  # a DeprecationWarning from any import would show on stderr
    env["TERM"] = "xterm"
    return env


def _simulate(cwd: Path, *args: str, stderr: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "personalize_mw.cli", "simulate", *args],
                            cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=stderr)


def test_piped_run_prints_one_line_and_no_warning_and_writes_the_truth_beside(tmp_path: Path) -> None:
    proc = _simulate(tmp_path, "--visitors", "30", "--seed", "1", "--out", "sim.jsonl", stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err == b""  # no progress bar off a terminal, and no StarletteDeprecationWarning (nor any other)
    lines = out.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simulate: ") and "(site mode, " in lines[0], lines
    assert "in sim.jsonl" in lines[0] and lines[0].endswith("true effects in sim.truth.json")
    assert not (tmp_path / "sim.jsonl.truth.json").exists()
    truth = json.loads((tmp_path / "sim.truth.json").read_text())
    assert truth["mode"] == "site" and truth["seed"] == 1 and truth["effects"]["hero:switcher"] == 0.08
    assert (tmp_path / "sim.jsonl").read_text().count("\n") > 30


@pytest.mark.parametrize("mode, visitors", [("direct", 300), ("site", 20)])
def test_on_a_terminal_a_progress_bar_goes_to_stderr(tmp_path: Path, mode: str, visitors: int) -> None:
    terminal, stderr = pty.openpty()
    proc = _simulate(tmp_path, "--visitors", str(visitors), "--mode", mode, "--out", "t.jsonl", stderr=stderr)
    os.close(stderr)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    out = proc.stdout.read() if proc.stdout else b""
    assert proc.wait(timeout=120) == 0
    assert f"simulate ({mode})".encode() in shown and f"{visitors}/{visitors}".encode() in shown
    assert out.decode().count("\n") == 1 and out.startswith(b"simulate: ")  # stdout stays the summary alone


@pytest.mark.parametrize("mode, visitors", [("direct", 500), ("site", 40)])
def test_same_seed_same_records(tmp_path: Path, mode: str, visitors: int) -> None:
    def run(name: str, seed: int) -> list[dict[str, object]]:
        out = tmp_path / f"{name}.jsonl"
        assert main(["simulate", "--visitors", str(visitors), "--seed", str(seed), "--mode", mode,
                     "--out", str(out)]) == 0
        return [{k: v for k, v in json.loads(line).items() if k != "id"} for line in out.read_text().splitlines()]

    first = run("a", 5)
    assert first == run("b", 5)
    assert first != run("c", 6)


def test_every_option_has_help_and_the_modes_are_explained() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    simulate = commands.choices["simulate"]  # type: ignore[index]
    options = [a for a in simulate._actions if a.dest != "help"]
    assert {a.dest for a in options} == {"visitors", "seed", "mode", "out", "segments", "persona", "effect",
                                         "device_effect", "config"}
    assert all(a.help and len(a.help) > 15 for a in options), [(a.dest, a.help) for a in options]
    text = simulate.format_help()
    assert "site    (default) walk the visitors through example_site in this process" in text
    assert "direct  write the same world's records" in text
    assert "sim.jsonl -> sim.truth.json" in text
    assert "--segments plants segments" in text
    assert "--config FILE (site mode) runs that personalize.yaml's rules" in text
    assert "--device-effect for the visitors on one device" in " ".join(text.split())


def test_a_world_of_chosen_personas_and_effects_and_its_truth(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w.jsonl"
    assert main(["simulate", "--mode", "direct", "--visitors", "400", "--persona", "switcher", "--effect",
                 "hero:switcher=0", "--device-effect", "mobile:hero:switcher=0.1", "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["slot"], r["variant"]) for r in records if r["type"] == "exposure"} <= {
        ("hero", "switcher"), ("cta", "benchmark")}  # switchers only
    assert {r["device"] for r in records} == {"desktop", "mobile", "tablet"} and all(r["country"] for r in records)
    truth = json.loads(truth_path(out).read_text())
    assert truth["effects"]["hero:switcher"] == 0 and truth["device_effects"] == {"mobile": {"hero:switcher": 0.1}}
    assert truth["personas"] == ["switcher"]
    capsys.readouterr()
    for refused in (["--mode", "site"], ["--mode", "direct", "--segments"]):
        assert main(["simulate", *refused, "--persona", "buyer", "--out", str(out)]) == 1
        assert "direct mode without --segments" in capsys.readouterr().err


def test_truth_path_replaces_the_suffix() -> None:
    assert truth_path(Path("sim.jsonl")) == Path("sim.truth.json")
    assert truth_path(Path("out/a.b.jsonl")) == Path("out/a.b.truth.json")
    assert truth_path(Path("sim")) == Path("sim.truth.json")
    assert truth_path(Path("x.truth.json")) == Path("x.truth.truth.json")  # never the output itself
