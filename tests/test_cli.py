"""``personalize-mw check`` as an operator runs it: a real subprocess."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


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
