"""Which of a config's segments each experiment visitor was in at their first exposure: ``lift --by segment``.

The records do not say which segments a visitor matched, so each segment is
evaluated again, offline, by the engine's own compiled conditions, on the
visitor as they were when the experiment first showed them a variant (or the
default, held out): their pageviews and goals up to and including that request
(:func:`.visitor_features.profile_of`, the snapshot ``suggest segments`` uses),
the exposure's path, device and country, and its time for the clock conditions.
Never later: a segment the treatment moved visitors into (``customer`` after the
variant's sign-up) would compare the arms on a group the treatment made.

The utm_* and referrer_host conditions read the request's own query and
``Referer`` (not the session's landing page), and every record of a request
carries both as the engine read them (``utm``, ``referrer_host``): they are
evaluated on the first exposure's, when the view has them (:data:`REQUEST`;
the commands open the records with them only when a segment needs them, as
they widen every readout's parse). A condition on a field the records do not
carry cannot be evaluated (:data:`UNRECORDED`); a segment using one is *not
evaluable offline* and said so, rather than evaluated with the field missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from ..config import Config
from ..core.context import UTM_KEYS, RequestContext
from ..rules import schedule
from ..rules.conditions import PROFILE_FIELDS, compile_segments
from .source import request_fields
from .visitor_features import profile_of

# Request fields the readout's records (the ``touchpoints`` columns, see :mod:`.source`) carry on an exposure.
RECORDED = ("path", "path_prefix", "device", "country", *PROFILE_FIELDS, *schedule.TIME_FIELDS)
# Those every record carries too, read only when a segment tests them (source.REQUEST_COLUMNS).
REQUEST = ("referrer_host", *(f"utm_{key}" for key in UTM_KEYS))
# Why the others cannot be evaluated from them.
UNRECORDED = {
    "language": "the Accept-Language header is not recorded",
    "query.": "query parameters other than utm are not recorded",
    "enriched": "enrichment answers (NAME.field) are not recorded",
}
# Why the request's fields cannot be, when they cannot: not opened, or an input without them.
_NOT_OPENED = "the records were opened without their utm and referrer_host (open_source(request=True))"
_NOT_KEPT = ("an input does not carry utm and referrer_host (compact's Parquet keeps only the readouts' "
             "columns): read the JSONL records or the sink instead")


def _reason(name: str) -> str:
    for prefix, why in UNRECORDED.items():
        if name == prefix or (prefix.endswith((".", "_")) and name.startswith(prefix)):
            return why
    return UNRECORDED["enriched"]


def unrecorded_fields(spec: Any, segments: Mapping[str, Any]) -> list[str]:
    """The fields of a condition (segments it names included) that the records cannot answer, in order."""
    return [name for name in condition_fields(spec, segments) if name not in RECORDED and name not in REQUEST]


def reads_request(config: Config) -> bool:
    """Whether a segment of ``config`` tests a request field the readouts do not read by default
    (:data:`REQUEST`): then ``--by segment`` opens the records with them."""
    return any(name in REQUEST for spec in config.segments.values()
               for name in condition_fields(spec, config.segments))


def condition_fields(spec: Any, segments: Mapping[str, Any]) -> list[str]:
    """Every field a condition tests, the segments it names included, in order."""
    found: dict[str, None] = {}

    def walk(node: Any) -> None:
        if isinstance(node, str):  # a segment name: defined above its user, so no cycle
            walk(segments.get(node, {}))
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key in ("all", "any", "not"):
                    walk(value)
                elif key == "segment":
                    walk(segments.get(value, {}) if isinstance(value, str) else value)
                else:
                    found[str(key)] = None

    walk(spec)
    return list(found)


class RecordedRequest(RequestContext):
    """The request of an exposure record: its path, device class, country, referrer host and utm as
    recorded (the values the engine's conditions read at that request), nothing else."""

    __slots__ = ("_recorded_device", "_recorded_country")

    def __init__(self, path: str, device: str | None, country: str | None, referrer_host: str | None = None,
                 utm: Sequence[str | None] = ()) -> None:
        super().__init__("GET", "https", "localhost", path, "", {})
        self._recorded_device, self._recorded_country = device, country
        self._referrer_host = referrer_host
        self._utm = dict(zip(UTM_KEYS, [*utm, *[None] * (len(UTM_KEYS) - len(utm))], strict=True))

    @property
    def device(self) -> str:
        return self._recorded_device or ""  # a record without one among records with: no device test holds

    @property
    def country(self) -> str | None:
        return self._recorded_country


@dataclass
class SegmentCells:
    """``members``: (experiment or slot, visitor) -> the segments they were in at their first exposure;
    ``evaluated``: the segments evaluated; ``not_evaluable``: segment -> why not, per field."""
    members: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    evaluated: list[str] = field(default_factory=list)
    not_evaluable: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def empty(self) -> list[str]:
        """The segments evaluated that no experiment visitor was in at their first exposure."""
        inside = {name for names in self.members.values() for name in names}
        return [name for name in self.evaluated if name not in inside]

    def notes(self) -> list[str]:
        """One line per segment that was not evaluated, naming its fields and why; one for those nobody was in."""
        notes = [f"segment {name} not evaluable offline: " + "; ".join(f"{f} ({why})" for f, why in fields.items())
                 for name, fields in self.not_evaluable.items()]
        if not self.evaluated:
            notes.append("no segment of the config can be evaluated from the records: no segment cells")
        elif self.empty:
            notes.append(f"no experiment visitor was in {', '.join(self.empty)} at their first exposure: no cell")
        return notes

    def as_json(self) -> dict[str, Any]:
        """For ``--format json``: the segments evaluated, those nobody was in, and those not evaluable (why)."""
        return {"evaluated": self.evaluated, "empty": self.empty, "not_evaluable": self.not_evaluable}


# Per experiment (or slot) and visitor: the first exposure with an arm (arg_min_null: its own NULLs, not a
# later exposure's value), and the visitor's pageviews and goals up to and including its request (same ts).
_UTM = ", ".join(f"json_extract_string(arg_min_null(utm, ts), '$.{key}')" for key in UTM_KEYS)
_AT_FIRST = """
WITH first AS (
    SELECT coalesce(experiment, slot) AS key, visitor, min(ts) AS ts, arg_min(path, ts) AS path,
           arg_min_null(session, ts) AS session, arg_min_null(channel, ts) AS channel,
           arg_min_null(device, ts) AS device, arg_min_null(country, ts) AS country, {request} AS request
    FROM touchpoints WHERE type = 'exposure' AND visitor IS NOT NULL AND arm IN ('treatment', 'holdout')
    GROUP BY ALL)
SELECT f.key, f.visitor, epoch(f.ts), f.path, f.session, f.channel, f.device, f.country, f.request,
       list((epoch(p.ts), p.session, p.path, p.channel) ORDER BY p.ts)
           FILTER (WHERE p.type = 'pageview' AND p.path IS NOT NULL),
       list(p.goal ORDER BY p.ts) FILTER (WHERE p.type = 'conversion' AND p.goal IS NOT NULL)
FROM first f LEFT JOIN touchpoints p
    ON p.visitor = f.visitor AND p.ts <= f.ts AND p.type IN ('pageview', 'conversion')
GROUP BY ALL
"""


def segment_cells(con: duckdb.DuckDBPyConnection, config: Config) -> SegmentCells:
    """Evaluate every segment of ``config`` on each experiment visitor at their first exposure, over the
    ``touchpoints`` view of :func:`.source.open_source`."""
    specs = config.segments
    result = SegmentCells()
    # The middleware records a device class on every record since schema 4; none on any exposure means
    # records older than that, or a driver that does not write it: unknown, not "no device".
    row = con.execute("SELECT count(device) FROM touchpoints WHERE type = 'exposure' AND visitor IS NOT NULL "
                      "AND arm IN ('treatment', 'holdout')").fetchone()
    devices = bool(row and row[0])
    request = request_fields(con)
    for name, spec in specs.items():
        tested = condition_fields(spec, specs)
        missing = {f: _reason(f) for f in tested if f not in RECORDED and f not in REQUEST}
        if request is not True:
            missing.update({f: _NOT_OPENED if request is None else _NOT_KEPT for f in tested if f in REQUEST})
        if "device" in tested and not devices:
            missing["device"] = "no exposure record carries one: records before schema 4"
        if missing:
            result.not_evaluable[name] = missing
    evaluable = {name: spec for name, spec in specs.items() if name not in result.not_evaluable}
    compiled = compile_segments(evaluable, config.regex_timeout_ms / 1000.0, zone=config.zone)
    result.evaluated = list(compiled)
    if not compiled:
        return result
    cursor = con.execute(_AT_FIRST.format(
        request=f"(arg_min_null(referrer_host, ts), {_UTM})" if request else "NULL"))
    while batch := cursor.fetchmany(10_000):
        for key, visitor, now, recorded_path, session, channel, device, country, sent, views, goals in batch:
            path = recorded_path or "/"  # every record of the middleware has one
            # no pageview recorded with it (an exposure alone): the exposure's request is the one page seen
            seen: Sequence[tuple[float, str | None, str, str | None]] = views or [(now, session, path, channel)]
            profile = profile_of(visitor, seen, goals or (), config.cookie.max_paths)
            ctx = RecordedRequest(path, device, country, *((sent[0], sent[1:]) if sent else ()))
            inside = [name for name, condition in compiled.items() if condition(ctx, profile, now)]
            if inside:
                result.members[(key, visitor)] = inside
    return result
