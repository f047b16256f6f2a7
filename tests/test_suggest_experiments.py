"""``suggest experiments``: untested credit becomes a planned experiment, as a patch that applies and loads;
the report's "What to do next" lists it beside the actions, escaped, with the command that writes it."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from personalize_mw.analytics.next_steps import Step
from personalize_mw.analytics.plan import visitors_needed
from personalize_mw.analytics.report import collect, render
from personalize_mw.analytics.simulate import simulate, write_jsonl
from personalize_mw.analytics.source import open_source, read_once
from personalize_mw.analytics.suggest_experiments import CAVEAT, patched, showing, suggest
from personalize_mw.analytics.yaml_text import diff
from personalize_mw.cli import main
from personalize_mw.config import load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "example_site"

# The example's hero and cta rules, with no variant that links to /pricing or /signup.
UNLINKED = """\
secret_keys: ["test-only-0123456789abcdef0123456789"]
goals:
  signup: {path: /thanks}
slots:
  hero:                       # the headline
    rules:
      - if: {utm_source: linkedin}
        variant: linkedin
        template: <h1>For B2B teams</h1>
      - if: {utm_campaign: {prefix: competitor-}}
        variant: switcher
        template: <h1>Bring your history</h1>

  cta:
    rules:
      - if: {path_prefix: /blog/}
        variant: benchmark
        template: <a class="button" href="/whitepaper">Get the report</a>
"""


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """20,000 simulated visitors, the cta slot's holdout exposures dropped: cta is untested, hero is not."""
    kept = [r for r in simulate(20_000, seed=7) if not (r["type"] == "exposure" and r["slot"] == "cta"
                                                        and r["arm"] == "holdout")]
    path = tmp_path_factory.mktemp("records") / "sim.jsonl"
    write_jsonl(iter(kept), path)
    return path, kept


def _site(tmp_path: Path, records: Path) -> Path:
    shutil.copy(EXAMPLE / "personalize.yaml", tmp_path / "personalize.yaml")
    shutil.copytree(EXAMPLE / "variants", tmp_path / "variants")
    shutil.copy(records, tmp_path / "sim.jsonl")
    return tmp_path / "personalize.yaml"


def _apply(tmp_path: Path, patch: str, name: str = "personalize.yaml") -> str:
    (tmp_path / "change.patch").write_text(patch, encoding="utf-8")
    subprocess.run(["patch", "-p0", "-i", "change.patch"], cwd=tmp_path, check=True, capture_output=True)
    return (tmp_path / name).read_text(encoding="utf-8")


def _cta_baseline(rows: list[dict[str, Any]]) -> float:
    """The cta visitors' signup rate within 30 days of their first exposure, counted here in Python."""
    first: dict[str, datetime] = {}
    for r in rows:
        if r["type"] == "exposure" and r["slot"] == "cta" and r["visitor"] and r["arm"] == "treatment":
            ts = datetime.fromisoformat(r["ts"])
            first[r["visitor"]] = min(ts, first.get(r["visitor"], ts))
    won = {r["visitor"] for r in rows if r["type"] == "conversion" and r["goal"] == "signup"
           and r["visitor"] in first
           and first[r["visitor"]] < datetime.fromisoformat(r["ts"]) <= first[r["visitor"]] + timedelta(days=30)}
    return len(won) / len(first)


def test_untested_variant_gets_a_planned_holdout_tested_one_not(tmp_path: Path, records: tuple[Path, list[Any]],
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = _site(tmp_path, records[0])
    monkeypatch.chdir(tmp_path)  # the patch names the config as given: patch -p0 from here
    assert main(["suggest", "experiments", "sim.jsonl", "--config", "personalize.yaml", "--goal", "signup",
                 "--out", "out.patch"]) == 0
    summary = capsys.readouterr().err
    status = {line.split()[1]: line.split()[0] for line in summary.splitlines() if " has " in line}
    assert status["cta:benchmark"] == "propose"
    assert status["hero:pricing"] == "tested"  # the records hold its holdout
    assert "holdout visitors of hero" in summary and CAVEAT in summary
    assert status["/pricing"] == "shown" and status["/thanks"] == "skipped"  # linked by variants; a goal page
    before = config.read_text(encoding="utf-8")
    after = _apply(tmp_path, (tmp_path / "out.patch").read_text(encoding="utf-8"))
    loaded = load_config(config)
    assert loaded.slots["cta"].holdout == 0.2 and loaded.slots["hero"].holdout == 0
    assert all(line in after.splitlines() for line in before.splitlines() if line.lstrip().startswith("#"))
    cta = after[after.index("\n  cta:"):after.index("\n  next_step:")]
    assert f"PROPOSED EXPERIMENT ({CAVEAT})" in cta and "cta:benchmark has 34." in cta and "shapley" in cta
    planned = re.search(r"# plan: ([\d,]+) visitors \(both arms\) to detect \+1\.00 pp with 80% power at a 20% "
                        r"holdout", cta)
    assert planned is not None
    assert int(planned.group(1).replace(",", "")) == visitors_needed(_cta_baseline(records[1]), 0.01, 0.2, 0.8)
    assert f"from a baseline of {_cta_baseline(records[1]):.2%}, the observed conversion rate" in cta


def test_the_plan_follows_mde_power_and_holdout(tmp_path: Path, records: tuple[Path, list[Any]]) -> None:
    con = read_once(open_source([str(records[0])]))
    found = suggest(con, load_config(EXAMPLE / "personalize.yaml"), goal="signup", relative_mde=0.2, power=0.9,
                    holdout=0.5)
    (cta,) = [e for e in found.experiments if e.slot == "cta"]
    baseline = _cta_baseline(records[1])
    assert cta.plan is not None and cta.plan.visitors == visitors_needed(baseline, baseline * 0.2, 0.5, 0.9)
    assert [e.slot for e in found.experiments] == ["cta"]


def _uncommented(text: str) -> str:
    """The patched text with the lines its "TO RUN" notes say to uncomment, uncommented, as a person would."""
    lines = text.split("\n")
    for i, line in enumerate(list(lines)):
        pad = line[:len(line) - len(line.lstrip())]
        if "TO RUN" in line and "the next line too" in line:
            lines[i + 1] = lines[i + 1].replace("# ", "", 1)
        elif found := re.search(r"TO RUN IT: .* before the (\d+) lines below", line):
            for j in range(i + 1, i + 1 + int(found.group(1))):
                assert lines[j].startswith(pad + "# ")
                lines[j] = pad + lines[j][len(pad) + 2:]
    return "\n".join(lines)


def test_an_unlinked_page_gets_a_commented_rule_that_loads_uncommented(tmp_path: Path,
                                                                       records: tuple[Path, list[Any]]) -> None:
    config = tmp_path / "personalize.yaml"
    config.write_text(UNLINKED, encoding="utf-8")
    con = read_once(open_source([str(records[0])]))
    found = suggest(con, load_config(config), goal="signup", ignore=["/signup"])
    status = {c.label: (c.status, c.why) for c in found.candidates}
    assert status["/signup"] == ("skipped", "under --ignore") and status["/"][0] == "skipped"
    (content,) = [e for e in found.experiments if e.kind == "content"]
    assert content.page == "/pricing" and content.variant == "suggested-pricing" and content.plan is not None
    patch = diff(UNLINKED, patched(UNLINKED, found), "personalize.yaml")
    after = _apply(tmp_path, patch)
    assert load_config(config).slots[content.slot].rules[-1].variant != "suggested-pricing"  # comments only
    assert "# - id: suggested-pricing" in after and "no variant links to it" in after
    config.write_text(_uncommented(after), encoding="utf-8")
    slot = load_config(config).slots[content.slot]
    rule = slot.rules[-1]
    assert rule.variant == "suggested-pricing" and rule.if_ == {"not": {"viewed": "/pricing"}}
    assert rule.template is not None and 'href="/pricing"' in rule.template
    assert slot.holdout == 0.2  # the holdout proposed for cta, or the one to uncomment for hero


def test_showing_reads_templates_files_content_and_crowd_paths() -> None:
    shown = showing(load_config(EXAMPLE / "personalize.yaml"))
    assert ("/pricing", False, "hero:pricing") in shown  # template_file, href="/pricing#team"
    assert ("/pricing", False, "next_step:see-pricing") in shown  # content: /pricing
    assert ("/blog/", True, "related (crowd)") in shown


def test_bad_input_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "personalize.yaml"
    config.write_text(UNLINKED, encoding="utf-8")
    (tmp_path / "torn.jsonl").write_text('{"type": "exposure", "ts"\n', encoding="utf-8")
    for inputs in ("torn.jsonl", "missing.jsonl"):
        assert main(["suggest", "experiments", str(tmp_path / inputs), "--config", str(config)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("suggest experiments: ") and "Traceback" not in err and err.count("\n") == 1
    (tmp_path / "empty.yaml").write_text(UNLINKED.split("goals:")[0], encoding="utf-8")
    assert main(["suggest", "experiments", str(tmp_path / "torn.jsonl"), "--config", str(tmp_path / "empty.yaml")]
                ) == 1
    assert "has no slots" in capsys.readouterr().err


def test_report_lists_what_to_do_next_with_commands_that_run(tmp_path: Path, records: tuple[Path, list[Any]],
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _site(tmp_path, records[0])
    monkeypatch.chdir(tmp_path)
    assert main(["report", "sim.jsonl", "--config", "personalize.yaml", "--goal", "signup", "--out", "r.html"]) == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    section = page[page.index('<section id="next">'):]
    section = section[:section.index("</section>")]
    assert "<b>promote</b> hero:switcher: +" in section  # a randomized result, from suggest actions
    assert "<b>experiment</b> holdout: 0.2 for cta: cta:benchmark has 34." in section
    assert f"{CAVEAT}: conversions pass through it" in section and "<b>segments</b>" in section
    commands = re.findall(r"<code>(personalize-mw suggest experiments [^<]*)</code>", section)
    assert commands and "the slot&#x27;s visitors" in section  # escaped
    capsys.readouterr()
    assert main(shlex.split(commands[0])[1:]) == 0  # the command it names writes the patch
    assert "+    holdout: 0.2" in (tmp_path / "experiments.patch").read_text(encoding="utf-8")
    (actions,) = set(re.findall(r"<code>(personalize-mw suggest actions [^<]*)</code>", section))
    capsys.readouterr()
    assert main(shlex.split(actions)[1:]) == 0
    written = [line.split(": ", 1) for line in capsys.readouterr().err.splitlines() if line.startswith("promote")]
    assert written and all(f"{key.split()[1]}: {evidence.split(';')[0]}" in section for key, evidence in written)


def test_what_to_do_next_is_escaped_and_without_config_says_so(tmp_path: Path) -> None:
    write_jsonl(simulate(300, seed=1), tmp_path / "few.jsonl")
    data = collect(read_once(open_source([str(tmp_path / "few.jsonl")])), ["few.jsonl"], goal="signup")
    assert "Give the report <code>--config personalize.yaml</code>" in render(data)  # next_steps None: no config
    data.next_steps = [Step("experiment", "<script>alert(1)</script>", "a & b", "<i>", "personalize-mw '<x>'")]
    page = render(data)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &amp; b" in page and "personalize-mw &#x27;&lt;x&gt;&#x27;" in page


def test_two_pages_in_one_slot_share_one_holdout_line_to_uncomment(tmp_path: Path,
                                                                   records: tuple[Path, list[Any]]) -> None:
    text = UNLINKED[:UNLINKED.index("\n  cta:")] + "\n"  # hero only: tested by the records, none configured
    config = tmp_path / "personalize.yaml"
    config.write_text(text, encoding="utf-8")
    found = suggest(read_once(open_source([str(records[0])])), load_config(config), goal="signup")
    assert sorted(e.page or "" for e in found.experiments) == ["/pricing", "/signup"]
    assert {e.slot for e in found.experiments} == {"hero"}
    after = _apply(tmp_path, diff(text, patched(text, found), "personalize.yaml"))
    assert after.count("# holdout: 0.2") == 1 and load_config(config).slots["hero"].holdout == 0
    config.write_text(_uncommented(after), encoding="utf-8")
    hero = load_config(config).slots["hero"]
    assert hero.holdout == 0.2
    assert [r.variant for r in hero.rules][-2:] == ["suggested-signup", "suggested-pricing"]


def test_a_recorded_path_with_a_line_break_is_never_written_into_the_patch(tmp_path: Path,
                                                                           records: tuple[Path, list[Any]]) -> None:
    """A visitor chooses the path (%0D decodes to a carriage return, a line break to YAML): such a page,
    however much credit it has, is no proposal, and nothing of it reaches the patch."""
    forged = "/pricing\r    holdout: 0.9\r#"
    rows = [{**r, "path": forged} if r.get("path") == "/pricing" else r for r in records[1]]
    path = tmp_path / "forged.jsonl"
    write_jsonl(iter(rows), path)
    config = tmp_path / "personalize.yaml"
    config.write_text(UNLINKED, encoding="utf-8")
    found = suggest(read_once(open_source([str(path)])), load_config(config), goal="signup", ignore=["/signup"])
    status = {c.label: (c.status, c.why) for c in found.candidates}
    assert status[forged] == ("skipped", "not a page path: it holds a control or line-break character")
    assert not [e for e in found.experiments if e.kind == "content" and e.page == forged]
    patch = diff(UNLINKED, patched(UNLINKED, found), "personalize.yaml")
    assert "\r" not in patch and "holdout: 0.9" not in patch


def test_what_to_do_next_commands_read_the_records_as_the_report_did() -> None:
    from datetime import UTC, datetime

    from personalize_mw.analytics.next_steps import Options

    options = Options(["sim.jsonl"], "personalize.yaml", goal="signup", until=datetime(2026, 11, 20, 18, tzinfo=UTC),
                      unit="account", skip_bad_lines=True)
    words = options.command("actions", "actions.patch").split()
    assert words[words.index("--until") + 1] == "2026-11-20T18:00:00+00:00"
    assert words[words.index("--unit") + 1] == "account" and "--skip-bad-lines" in words
    assert "--until" not in Options(["sim.jsonl"], "personalize.yaml").command("actions", "a.patch")
