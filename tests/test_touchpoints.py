"""Touchpoints: record stamping, sink URLs, and records from the core reaching the file (delivery: test_delivery)."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from personalize_mw.config import load_config
from personalize_mw.core.context import RequestContext
from personalize_mw.core.personalizer import Personalizer
from personalize_mw.touchpoints import record as record_module
from personalize_mw.touchpoints.jsonl import JsonlSink
from personalize_mw.touchpoints.sink import open_sink
from personalize_mw.touchpoints.record import FIELDS, finalize, finalize_batch, format_ts, new_record

RFC3339_MS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
CONSENT = {"analytics": True, "personalization": True, "advertising": False, "gpc": False}


def record(path: str = "/", t: float | None = None, **extra: Any) -> dict[str, Any]:
    return new_record("pageview", time.time() if t is None else t, visitor="v1", session="s1", path=path,
                      referrer_host=None, channel="direct",
                      utm={"source": None, "medium": None, "campaign": None, "term": None, "content": None},
                      consent=CONSENT, **extra)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- records


def test_format_ts() -> None:
    assert format_ts(0) == "1970-01-01T00:00:00.000Z"
    assert format_ts(1_764_000_000.25) == "2025-11-24T16:00:00.250Z"
    assert format_ts(1_764_000_000.9999) == "2025-11-24T16:00:00.999Z"  # truncated, never ".1000"


def test_finalize_is_idempotent() -> None:
    r = finalize(record(t=1_764_000_000.5))
    first = (r["id"], r["ts"])
    assert "_t" not in r
    assert (finalize(r)["id"], finalize(r)["ts"]) == first


def test_finalize_batch_stamps_uuid4_and_the_records_own_time() -> None:
    t = 1_764_000_000.123
    batch = finalize_batch([record(f"/p{i}", t=t + i) for i in range(50)])
    assert len({r["id"] for r in batch}) == 50
    for i, r in enumerate(batch):
        assert uuid.UUID(r["id"]).version == 4 and str(uuid.UUID(r["id"])) == r["id"]
        assert uuid.UUID(r["id"]).variant == uuid.RFC_4122
        assert RFC3339_MS_UTC.match(r["ts"]) and r["ts"] == format_ts(t + i)
        assert list(r) == list(FIELDS)  # fixed field order, no private keys
    ids = [r["id"] for r in batch]
    assert [r["id"] for r in finalize_batch(batch)] == ids  # a retried batch keeps its ids


@given(raw=st.lists(st.binary(min_size=16, max_size=16), max_size=8).map(b"".join))
def test_record_ids_are_the_uuids_of_their_bytes(raw: bytes) -> None:
    """The Python ids; the compiled stamp pass makes the same ones (below)."""
    expected = [str(uuid.UUID(bytes=raw[i:i + 16], version=4)) for i in range(0, len(raw), 16)]
    assert record_module._uuid4_strings_py(raw) == expected  # version and variant bits set, as uuid sets them


_STAMPABLE = st.lists(st.fixed_dictionaries({}, optional={
    "id": st.none() | st.just("kept-id"), "ts": st.none() | st.just("kept-ts"),
    "_t": st.sampled_from([1_764_000_000.5, 1_764_000_001.25, -3.0, None])}), max_size=12)


@given(records=_STAMPABLE, raw=st.binary(min_size=16 * 12, max_size=16 * 12))
def test_the_compiled_stamp_pass_stamps_as_the_python_one(records: list[dict[str, Any]], raw: bytes) -> None:
    """Ids from the same bytes in the same order, _t gone, ts from it (or kept), key order as Python leaves it."""
    def clock() -> Callable[[float | None], str]:
        readings = iter(range(100))  # the clock moves: a record without _t is never given another's stamp
        return lambda t: f"clock {next(readings)}" if t is None else f"at {t}"

    by_python = [dict(r) for r in records]
    by_c = [dict(r) for r in records]
    assert record_module._stamp_records_py(by_python, raw, clock()) is True
    assert record_module._stamp_records(by_c, raw, clock()) is True
    assert [list(r.items()) for r in by_c] == [list(r.items()) for r in by_python]
    fresh = [r for r in records if r.get("id") is None]
    made = [r["id"] for r in by_python if r["id"] != "kept-id"]
    assert made == record_module._uuid4_strings_py(raw[:16 * len(fresh)])


def test_both_stamp_passes_leave_a_batch_with_lazy_records_alone() -> None:
    lazy = record_module.LazyRecord(lambda: record("/later", t=1.0))
    for stamp_records in (record_module._stamp_records_py, record_module._stamp_records):
        batch = [record("/now", t=2.0), lazy]
        assert stamp_records(batch, bytes(32), format_ts) is False
        assert batch[0]["id"] is None and batch[0]["_t"] == 2.0  # untouched: finalize_batch makes the lazy one first
    made = finalize_batch([record("/now", t=2.0), lazy])
    assert [r["path"] for r in made] == ["/now", "/later"] and all(r["id"] and r["ts"] for r in made)
    assert all(list(r) == list(FIELDS) for r in made)  # stamped in place: the schema's order, no _t


def test_a_batch_with_lazy_records_is_stamped_by_the_compiled_pass_once_they_are_made(monkeypatch: Any) -> None:
    passes: list[str] = []
    compiled_pass, python_pass = record_module._stamp_records, record_module._stamp_records_py

    def counted(name: str, stamp_records: Callable[..., bool]) -> Callable[..., bool]:
        def run(*args: Any) -> bool:
            done = stamp_records(*args)
            passes.append(f"{name} {done}")
            return done
        return run

    monkeypatch.setattr(record_module, "_stamp_records", counted("first", compiled_pass))
    monkeypatch.setattr(record_module, "_stamp_records_py", counted("python", python_pass))
    finalize_batch([record("/now", t=2.0), record_module.LazyRecord(lambda: record("/later", t=1.0))])
    assert passes == ["first False", "first True"]  # the Python pass only for what the first declines again


def test_format_ts_matches_datetime_at_the_edges() -> None:
    from datetime import datetime, timezone

    times = (1_764_000_000.9999995, 1_764_000_000.0000004, 1_764_000_059.9995, -1.5, 0.0005, 2**31 + 0.25)
    for t in times + times[::-1] + tuple(t for t in times for _ in range(2)):  # each again, and right after itself
        moment = datetime.fromtimestamp(t, timezone.utc)
        assert format_ts(t) == moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_unicode_is_written_as_utf8(tmp_path: Path) -> None:
    sink_path = tmp_path / "tp.jsonl"
    sink = JsonlSink(sink_path)
    sink.write([finalize(record("/grüße/日本"))])
    sink.close()
    assert "/grüße/日本".encode() in sink_path.read_bytes()
    assert lines(sink_path)[0]["path"] == "/grüße/日本"


def test_open_sink(tmp_path: Path) -> None:
    sink = open_sink("jsonl:tp.jsonl", lambda p: tmp_path / p)
    assert isinstance(sink, JsonlSink) and sink.path == tmp_path / "tp.jsonl"
    with pytest.raises(ValueError):
        open_sink("kafka:topic", lambda p: p)


# ---------------------------------------------------------------- from the core


def test_core_records_reach_the_file(tmp_path: Path, make_core_config: Callable[..., dict]) -> None:
    config = make_core_config(
        goals={"signup": {"path": "/thanks", "value": 50}},
        slots={"hero": {"rules": [{"if": {"path": "/thanks"}, "variant": "thanks", "template": "<b>Thanks</b>"}]}},
    )
    core = Personalizer(load_config(config))
    headers = {"cookie": "pmw_consent=analytics=1&personalization=1&advertising=0",
               "referer": "https://www.google.com/", "user-agent": "Mozilla/5.0"}
    ctx = RequestContext("GET", "http", "example.com", "/thanks", "utm_source=news&utm_medium=email", headers)
    outcome = core.visit(ctx, b"<!-- personalize:hero -->x<!-- /personalize:hero -->", time.time())
    core.commit(outcome, rewritten=True)
    core.queue.close()

    written = lines(tmp_path / "touchpoints.jsonl")
    assert [r["type"] for r in written] == ["pageview", "conversion", "exposure"]
    visitor = core.codec.load(outcome.cookies[0].value)
    assert visitor is not None
    for r in written:
        assert r["visitor"] == visitor.visitor_id and r["session"] == visitor.session_id
        assert r["channel"] == "email" and r["referrer_host"] == "www.google.com"
        assert r["utm"]["source"] == "news" and r["consent"]["analytics"] is True
    assert written[1]["goal"] == "signup" and written[1]["value"] == 50
    assert (written[2]["slot"], written[2]["variant"], written[2]["rule"], written[2]["arm"]) == \
        ("hero", "thanks", "hero.0", "treatment")


def test_core_drops_exposures_of_unsent_variants(tmp_path: Path, make_core_config: Callable[..., dict]) -> None:
    config = make_core_config(slots={"hero": {"rules": [{"if": {"path": "/"}, "variant": "v", "template": "V"}]}})
    core = Personalizer(load_config(config))
    ctx = RequestContext("GET", "http", "example.com", "/", "", {"user-agent": "Mozilla/5.0"})
    outcome = core.visit(ctx, b"<!-- personalize:hero -->x<!-- /personalize:hero -->", time.time())
    core.commit(outcome, rewritten=False)
    core.queue.close()
    assert [r["type"] for r in lines(tmp_path / "touchpoints.jsonl")] == ["pageview"]
