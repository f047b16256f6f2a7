"""The code checks itself: lint, types, the public names and the error hierarchy.

ruff and mypy run with the configuration in pyproject.toml, from the venv that
runs the suite (`make test` installs them with the test extra).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import configure_django

import personalize_mw
from personalize_mw.errors import PersonalizeError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [
    ("ruff", "check", "personalize_mw"),
    ("mypy", "personalize_mw"),
], ids=lambda command: command[0])
def test_no_findings(command: tuple[str, ...]) -> None:
    done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} found problems:\n{done.stdout}{done.stderr}"


def test_all_is_exactly_the_public_names() -> None:
    public = {name for name, value in vars(personalize_mw).items()
              if not name.startswith("_")
              and not (isinstance(value, types.ModuleType) and value.__name__.startswith("personalize_mw."))}
    assert personalize_mw.__all__ == sorted(public)  # every public name, no other, sorted
    imported: dict[str, object] = {}
    exec("from personalize_mw import *", imported)
    assert set(personalize_mw.__all__) <= imported.keys()


def _package_modules() -> list[types.ModuleType]:
    configure_django()  # the template tags module needs settings to import
    names = [info.name for info in pkgutil.walk_packages(personalize_mw.__path__, "personalize_mw.")]
    return [personalize_mw, *(importlib.import_module(name) for name in names)]


def test_every_error_of_the_package_is_a_personalize_error() -> None:
    errors = {cls for module in _package_modules() for _, cls in inspect.getmembers(module, inspect.isclass)
              if issubclass(cls, BaseException) and cls.__module__.startswith("personalize_mw")}
    stray = sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in errors if not issubclass(cls, PersonalizeError))
    assert not stray, f"not derived from PersonalizeError: {stray}"
    names = {cls.__name__ for cls in errors}
    assert {"ConfigError", "ConditionError", "RenderError", "SinkError", "PermanentSinkError",
            "UnknownStrategy", "MarkerError"} <= names


def test_errors_keep_the_builtin_bases_callers_catch() -> None:
    from personalize_mw.core.markers import MarkerError
    from personalize_mw.rules.registry import UnknownStrategy

    assert issubclass(MarkerError, ValueError)
    assert issubclass(UnknownStrategy, LookupError)
