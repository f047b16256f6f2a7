"""Queued records off the garbage collector's list (``_scan.untrack_records``): only
those that hold nothing a cycle could run through, and written exactly the same."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from personalize_mw.config import load_config
from personalize_mw.core import markers, personalizer
from personalize_mw.core.context import RequestContext
from personalize_mw.core.personalizer import Personalizer

COMPILED = markers.COMPILED and not os.environ.get("PERSONALIZE_MW_PURE_PYTHON")
compiled_only = pytest.mark.skipif(not COMPILED, reason="the compiled module is not in use (pure Python run)")
PAGE = b"<html><body><!-- personalize:hero --><p>Default</p><!-- /personalize:hero --></body></html>"
HEADERS = {"host": "shop.example", "referer": "https://www.linkedin.com/feed",
           "cookie": "pmw_consent=analytics=1&personalization=1&advertising=0"}


@pytest.fixture
def core(make_core_config: Callable[..., dict[str, Any]]) -> Personalizer:
    config = make_core_config(slots={"hero": {"rules": [{"if": {"path_prefix": "/"}, "variant": "v",
                                                         "template": "<b>v</b>"}]}})
    return Personalizer(load_config(config), clock=lambda: 1_800_000_000.0)


def page_records(core: Personalizer) -> list[dict[str, Any]]:
    ctx = RequestContext("GET", "https", "shop.example", "/", "utm_source=news&utm_campaign=q4", HEADERS,
                         client="203.0.113.9")
    return core.visit(ctx, PAGE, 1_800_000_000.0).records


def test_a_pages_records_leave_the_collectors_list_when_queued(core: Personalizer, tmp_path: Path) -> None:
    records = page_records(core)
    assert [r["type"] for r in records] == ["pageview", "exposure"]
    assert all(gc.is_tracked(r) for r in records)  # utm and consent are dicts: CPython tracks the record
    expected = json.loads(json.dumps(records))
    assert core.emit(records, rewritten=True)
    assert [gc.is_tracked(r) for r in records] == [not COMPILED] * 2  # pure Python: tracked, the same records
    core.queue.flush(timeout=10)
    written = [json.loads(line) for line in (tmp_path / "touchpoints.jsonl").read_text().splitlines()]
    for record in written:
        del record["id"], record["ts"]
    assert written == [{k: v for k, v in r.items() if k not in ("id", "ts", "_t")} for r in expected]
    assert written[0]["utm"]["campaign"] == "q4" and written[0]["consent"]["personalization"] is True


@compiled_only
def test_a_record_holding_a_container_stays_tracked() -> None:
    atoms = {"type": "pageview", "utm": {"source": None}, "consent": {"analytics": True}, "holdout_share": 0.1,
             "ip": None, "const": (1, "a")}
    with_props = {"type": "event", "props": {"tags": ["a", "b"]}}  # a tracked dict inside
    with_tracked_dict = {"type": "event", "utm": {"nested": {}}}
    with_list = {"type": "event", "x": [1]}
    not_a_dict = [1, 2]
    records: list[Any] = [atoms, with_props, with_tracked_dict, with_list, not_a_dict]
    personalizer.untrack_records(records)
    assert [gc.is_tracked(r) for r in records] == [False, True, True, True, True]
    atoms["props"] = {"later": ["x"]}  # CPython tracks a dict again when a container goes in
    assert gc.is_tracked(atoms)
    with pytest.raises(TypeError):
        personalizer.untrack_records((atoms,))  # type: ignore[arg-type]


def test_without_the_compiled_module_records_stay_tracked() -> None:
    code = ("import gc; from personalize_mw.core import personalizer as p; "
            "r = [{'utm': {'source': None}}]; p.untrack_records(r); print(gc.is_tracked(r[0]))")
    env = {**os.environ, "PERSONALIZE_MW_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
