"""``personalize-mw`` as an operator runs it: ``check`` in a real subprocess, every problem at once,
no side effects, and the commands that need no analytics without the analytics extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from personalize_mw.cli import main
from personalize_mw.config import load_config
from personalize_mw.core.personalizer import Personalizer


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "personalize_mw.cli", "check", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_valid_config_exits_zero(tmp_path):
    path = tmp_path / "personalize.yaml"
    path.write_text(textwrap.dedent("""\
        secret_keys: ["0123456789abcdef0123"]
        slots:
          hero:
            rules:
              - if: {utm_campaign: spring}
                variant: spring
                template: "<h1>Spring</h1>"
        """))
    result = run_check(path)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "1 slots, 1 rules" in result.stdout


def test_every_problem_is_named_with_file_and_line(tmp_path):
    path = tmp_path / "personalize.yaml"
    path.write_text(textwrap.dedent("""\
        secret_keys: ["0123456789abcdef0123"]
        slots:
          hero:
            rules:
              - if: {utm_campaing: spring}
                variant: spring
                template: "<h1>Spring</h1>"
              - if: {path: /}
                variant: broken
                template: "{% if %}"
        """))
    result = run_check(path)
    assert result.returncode == 1
    assert f"{path}:5: slots.hero.rules.0.if.utm_campaing: unknown field 'utm_campaing'" in result.stderr
    assert f"{path}:10: slots.hero.rules.1.template:" in result.stderr
    assert "2 problems" in result.stderr


def test_unreadable_yaml_is_reported_not_raised(tmp_path):
    path = tmp_path / "personalize.yaml"
    path.write_text("secret_keys: [unclosed\n")
    result = run_check(path)
    assert result.returncode == 1
    assert "invalid YAML" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- every problem at once, no cascade

TYPOS = """\
secret_keys: ["0123456789abcdef0123"]
cokie:
  name: pmw
segments:
  buyer:
    viewd: /pricing
  keen:
    all: [buyer, {visits: {gte: 2}}]
goals:
  signup:
    pathh: /thanks
slots:
  hero:
    rules:
      - if: buyer
        variant: buyer
        template: "<h1>Buy</h1>"
      - if: keen
        varient: keen
        template: "<h1>Keen</h1>"
      - if: nobody
        variant: nobody
        template: "<h1>?</h1>"
  side:
    rules:
      - if: {segment: buyer}
        variant: side
        template: "<p>side</p>"
  cta:
    strategy: bandit
    bandit: {goal: signup}
    variants:
      - {variant: a, template: "A"}
      - {variant: b, templat: "B"}
"""


def test_every_typo_and_a_bad_reference_are_each_reported_once_in_one_run(tmp_path):
    path = tmp_path / "personalize.yaml"
    path.write_text(TYPOS)
    result = run_check(path)
    assert result.returncode == 1
    *problems, count = result.stderr.splitlines()
    assert problems[:4] == [  # the schema's problems, in file order: one per typo, with its line
        f"{path}:2: cokie: Extra inputs are not permitted: did you mean 'cookie'?",
        f"{path}:11: goals.signup.pathh: Extra inputs are not permitted: did you mean 'path'?",
        f"{path}:19: slots.hero.rules.1.varient: Extra inputs are not permitted: did you mean 'variant'?",
        f"{path}:34: slots.cta.variants.1.templat: Extra inputs are not permitted: did you mean 'template'?",
    ]
    # Then the conditions of what passed the schema. `buyer` is referred to three times and
    # `signup` by the bandit: neither is reported again, nor is the rule after the misspelt one skipped.
    assert problems[4].startswith(f"{path}:6: segments.buyer.viewd: unknown field 'viewd': did you mean 'viewed'?")
    assert problems[5:] == [f"{path}:21: slots.hero.rules.2.if: unknown segment 'nobody' (known: buyer, keen)"]
    assert count == f"6 problems in {path}"


LEARNING = """\
secret_keys: ["0123456789abcdef0123"]
sink: jsonl:data/touchpoints.jsonl
state: sqlite:state/counts.db
goals:
  signup: {path: /thanks}
slots:
  related:
    strategy: crowd
    crowd:
      paths: [/blog/]
      template: "{% for item in items %}<a href='{{ item.url }}'>{{ item.title }}</a>{% endfor %}"
  cta:
    strategy: bandit
    bandit: {goal: signup}
    variants:
      - {variant: a, template: "A"}
      - {variant: b, template: "B"}
"""


def test_checking_a_config_creates_nothing_the_middleware_opens_the_state(tmp_path):
    path = tmp_path / "personalize.yaml"
    path.write_text(LEARNING)
    result = run_check(path)
    assert result.returncode == 0, result.stderr
    assert "2 slots" in result.stdout
    config = load_config(path)
    assert list(tmp_path.iterdir()) == [path]  # neither check nor load_config wrote the sqlite state
    core = Personalizer(config)
    try:
        assert (tmp_path / "state" / "counts.db").is_file()  # opened where the middleware starts
        stores = {id(slot.strategies[0].store) for slot in core.slots.values()}
        assert len(stores) == 1  # and shared by the crowd and the bandit slot
    finally:
        core.slots["cta"].strategies[0].store.close()
        core.queue.close(1.0)


# Runs the CLI as if the analytics extra were not installed: numpy, duckdb and rich cannot be imported.
WITHOUT_ANALYTICS = """
import sys
BLOCKED = ("numpy", "duckdb", "rich", "sklearn", "stepmix")

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
from personalize_mw.cli import main
sys.exit(main(sys.argv[1:]))
"""


def without_analytics(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_ANALYTICS, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_the_commands_without_analytics_work_without_the_analytics_extra(tmp_path):
    (tmp_path / "personalize.yaml").write_text(textwrap.dedent("""\
        secret_keys: ["0123456789abcdef0123"]
        sink: jsonl:touchpoints.jsonl
        slots:
          hero:
            rules:
              - if: {utm_campaign: spring}
                variant: spring
                template: "<h1>Spring</h1>"
        """))
    (tmp_path / "touchpoints.jsonl").write_text("")
    for args, out in [(["check", "personalize.yaml"], "OK"),
                      (["forget", "v1"], "0 record(s) deleted"),
                      (["export", "v1"], '"id": "v1"'),
                      (["prune"], "older than 760 days deleted"),
                      (["preview-link", "--slot", "hero", "--variant", "spring"], "pmw_preview=")]:
        result = without_analytics(tmp_path, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert out in result.stdout, args


@pytest.mark.parametrize("args", [["lift", "touchpoints.jsonl", "--holdout-share", "0.1"], ["attribution", "--help"],
                                  ["suggest", "segments", "touchpoints.jsonl"]])
def test_the_analytics_commands_say_which_extra_to_install(tmp_path, args):
    result = without_analytics(tmp_path, *args)
    assert result.returncode == 2
    assert result.stderr == (f"personalize-mw {args[0]} needs the analytics extra (duckdb, numpy, rich, sklearn, "
                             "stepmix): pip install 'personalize_mw[analytics]' (in a checkout: pip install -e "
                             "'.[analytics]')\n")


def test_suggest_without_the_model_libraries_says_which_extra_to_install(tmp_path):
    (tmp_path / "touchpoints.jsonl").write_text("")
    script = WITHOUT_ANALYTICS.replace('("numpy", "duckdb", "rich", "sklearn", "stepmix")', '("sklearn", "stepmix")')
    result = subprocess.run([sys.executable, "-c", script, "suggest", "segments", "touchpoints.jsonl"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "suggest needs the analytics extra" in result.stderr, result.stderr


@pytest.mark.parametrize("args, hint", [(["forget", "v1"], "--config example_site/personalize.yaml"),
                                        (["export", "v1"], "--config example_site/personalize.yaml"),
                                        (["prune"], "--config example_site/personalize.yaml"),
                                        (["preview-link", "--segment", "x"], "--config example_site/personalize.yaml"),
                                        (["check", "personalize.yaml"],
                                         "personalize-mw check example_site/personalize.yaml")])
def test_a_missing_config_file_names_the_file_and_the_example(tmp_path, monkeypatch, capsys, args, hint):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert capsys.readouterr().err == (f"personalize-mw: no config file personalize.yaml (looked for "
                                       f"{tmp_path.resolve() / 'personalize.yaml'}); from the repository's root, "
                                       f"try {hint}\n")


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    """`personalize-mw lift ... | head`: once the reader is gone the command stops without a traceback."""
    import os

    from personalize_mw.analytics.simulate import simulate, write_jsonl

    records = tmp_path / "t.jsonl"
    write_jsonl(simulate(300, seed=1), records)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first write: every write is EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "personalize_mw.cli", "lift", str(records), "--format", "json"],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 1
