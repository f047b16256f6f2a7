"""What the records say about each consenting visitor, as yes/no features the engine can test.

A visitor is a record's ``visitor`` id (there is none without analytics and
personalization consent). Each is seen as they were *before* their first
conversion (of ``goal``, or of any goal), or at their last record if they did
not convert: what a rule could have known when it decided, without the outcome
the segments are judged by. From that snapshot:

- content read: for each path prefix (``/blog/`` for ``/blog/a``) or page
  (``/pricing``), read at least once, and at least twice;
- channel: the channel of the snapshot's session (its first page's channel,
  which the session keeps);
- device and country: those of the snapshot's last pageview (the request a rule
  decides on), when the records carry them (schema 4);
- journey stage (given stages): the stage the engine puts the visitor in;
- enriched fields, when the pageviews carry them (an enricher's ``record:``,
  docs/enrichment.md): ``company.industry`` and the like, each common value a
  feature, as of the latest pageview before the snapshot that recorded it.

Not the number of visits: it follows from the rest (a visitor who read a post
from search and came back through an ad has two), and a feature that depends on
others within a group splits groups the model assumes independent within.

Every feature carries the condition that tests it (:attr:`Feature.condition`),
in the YAML grammar of :mod:`personalize_mw.rules.conditions`, evaluated on the
snapshot's profile and request (an enriched field: on what its enricher answers
for that request).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from ..core.context import RequestContext
from ..core.visitor import Profile

Spec = dict[str, Any]


@dataclass(frozen=True)
class Feature:
    name: str         # what a person reads: "viewed /blog/ twice", "channel social"
    slug: str         # for segment names: "blog2", "social"
    condition: Spec   # holds exactly when the feature is 1
    negation: Spec    # holds exactly when it is 0
    exclusive: str | None = None  # features sharing this are exclusive: one holding says the others do not
    clusters: bool = True  # read by the latent class model; False: only rules describing the groups use it


@dataclass(frozen=True)
class VisitorFeatures:
    """``rows`` (distinct feature vectors) with ``weight`` visitors and ``conversions`` each."""

    features: list[Feature]
    rows: npt.NDArray[np.uint8]        # (distinct, features)
    weight: npt.NDArray[np.float64]    # visitors per distinct row
    conversions: npt.NDArray[np.float64]
    visitors: list[str]                # every visitor id, in the order of ``row_of``
    row_of: npt.NDArray[np.int64]      # visitor -> index into rows

    @property
    def count(self) -> int:
        return len(self.visitors)


def negated(spec: Spec) -> Spec:
    """``not:`` of a condition, without a double negation."""
    return spec["not"] if set(spec) == {"not"} else {"not": spec}


def _content_feature(key: str, times: int, tagged: Mapping[str, list[str]]) -> Feature:
    """``/blog/`` is a prefix, ``tag:T`` the catalog pages tagged T (``tagged``: tag -> pages), anything else a page."""
    if key.startswith("tag:"):
        tag = key[4:]
        views: list[Spec] = [{"viewed": page} for page in tagged[tag]]
        condition = views[0] if len(views) == 1 else {"any": views}
        return Feature(f"read a page tagged {tag}", tag, condition, negated(condition))
    if key.endswith("/") and key != "/":
        spec: Any = {"prefix": key}
        if times > 1:
            spec["times"] = times
    else:
        spec = key if times == 1 else {"path": key, "times": times}
    slug = key.strip("/").replace("/", "-") or "home"
    condition = {"viewed": spec}
    return Feature(f"viewed {key}" + (f" {times}+ times" if times > 1 else ""),
                   slug + (str(times) if times > 1 else ""), condition, negated(condition))


def _field_feature(field: str, value: str) -> Feature:
    """The snapshot's ``channel``, ``device`` or ``country`` is ``value``; its values exclude each other."""
    return Feature(f"{field} {value}", value.replace("_", "-").lower(), {field: value}, {field: {"ne": value}},
                   exclusive=field, clusters=field == "channel")


def _enriched_feature(key: str, value: Any) -> Feature:
    """The enricher answered ``value`` for ``key`` (``company.industry``); a field's values exclude each other.
    Among the model's features: a field is recorded because the site owner segments by it."""
    return Feature(f"{key} {value}", str(value).replace("_", "-").lower(), {key: value}, {key: {"ne": value}},
                   exclusive=key)


# Pageview props keys that are an enricher's field (merge field names have no dot), and scalar JSON.
_ENRICHED = """
SELECT v.vid, e.key, arg_max(e.value, e.ts)::VARCHAR AS value
FROM (SELECT visitor, ts, key, json_extract(props, '$."' || key || '"') AS value
      FROM (SELECT visitor, ts, props, unnest(json_keys(props)) AS key FROM pmw_pv WHERE props IS NOT NULL)
      WHERE regexp_full_match(key, '[a-z][a-z0-9_]{0,31}[.][A-Za-z_][A-Za-z0-9_]{0,30}')) e
JOIN pmw_vis v USING (visitor)
WHERE json_type(e.value) IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE', 'BOOLEAN')
GROUP BY ALL
"""


Answers = dict[int, dict[str, dict[str, Any]]]  # visitor (vid) -> enricher -> field -> value, as recorded


def _recorded_answers(con: duckdb.DuckDBPyConnection) -> Answers:
    """What the snapshot's pageviews recorded of each enricher's answer (read with the snapshot)."""
    answers: Answers = {}
    for vid, key, text in con.execute(_ENRICHED).fetchall():
        name, _, field = key.partition(".")
        answers.setdefault(int(vid), {}).setdefault(name, {})[field] = json.loads(text)
    return answers


def _enriched_columns(answers: Answers, total: int, floor: int) -> list[tuple[Feature, npt.NDArray[np.uint8]]]:
    """Each enriched field's common values (held by ``floor`` visitors, not by all)."""
    values: dict[str, dict[Any, list[int]]] = {}
    for vid, answered in answers.items():
        for name, fields in answered.items():
            for field, value in fields.items():
                values.setdefault(f"{name}.{field}", {}).setdefault(value, []).append(vid)
    out = []
    for key in sorted(values):
        common = sorted(((v, vids) for v, vids in values[key].items() if floor <= len(vids) < total),
                        key=lambda item: (-len(item[1]), str(item[0])))
        for value, vids in common:
            column = np.zeros(total, dtype=np.uint8)
            column[np.asarray(vids, dtype=np.int64)] = 1
            out.append((_enriched_feature(key, value), column))
    return out


# A User-Agent of each device class (core.context.classify_device reads it back): the request a snapshot's
# device was recorded from, for the engine to evaluate `device:` on.
_AGENTS = {"desktop": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", "tablet": "Mozilla/5.0 (iPad; CPU OS 17_0)",
           "mobile": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148", "bot": "Googlebot/2.1"}


# The snapshot: consenting visitors' pageviews before their first counted conversion (one scan of the input).
_SNAPSHOT = """
CREATE OR REPLACE TEMP TABLE pmw_seen AS
    SELECT visitor, ts, type, session, path, channel, device, country{props} FROM touchpoints
    WHERE visitor IS NOT NULL AND (type = 'pageview' AND path IS NOT NULL OR type = 'conversion' {goal});
CREATE OR REPLACE TEMP TABLE pmw_cut AS
    SELECT visitor, min(ts) AS cut FROM pmw_seen WHERE type = 'conversion' GROUP BY visitor;
CREATE OR REPLACE TEMP TABLE pmw_pv AS
    SELECT t.visitor, t.ts, t.session, t.path, t.channel, t.device, t.country{props},
           CASE WHEN regexp_matches(t.path, '^/[^/]+/') THEN regexp_extract(t.path, '^/[^/]+/') ELSE t.path END
               AS key
    FROM pmw_seen t LEFT JOIN pmw_cut c USING (visitor)
    WHERE t.type = 'pageview' AND (c.cut IS NULL OR t.ts < c.cut);
CREATE OR REPLACE TEMP TABLE pmw_vis AS
    SELECT visitor, (row_number() OVER (ORDER BY visitor) - 1)::BIGINT AS vid, arg_max(session, ts) AS last_session
    FROM pmw_pv GROUP BY visitor;
"""


def stage_feature(stages: Sequence[tuple[str, Any]], index: int) -> Feature:
    """In stage ``index``: its condition holds (a stage without one always does) and no later stage's does."""
    name, condition = stages[index]
    later = [c for _, c in stages[index + 1:] if c is not None]
    tests = ([condition] if condition is not None else []) + (
        [negated(later[0] if len(later) == 1 else {"any": later})] if later else [])
    spec: Spec = tests[0] if len(tests) == 1 else {"all": tests}
    return Feature(f"stage {name}", name, spec, negated(spec), exclusive="stage")


def _stages_of(con: duckdb.DuckDBPyConnection, stages: Sequence[tuple[str, Any]],
               segments: dict[str, Any], total: int, answers: Answers, enrichers: Sequence[str]
               ) -> npt.NDArray[np.int64]:
    """Each visitor's journey stage at the snapshot, as the engine works it out (index into ``stages``; -1 none).
    An enriched field reads what the visitor's pageviews recorded of it (unknown when they did not)."""
    from ..enrich.enrichment import Enrichment
    from ..rules.conditions import compile_condition, compile_segments

    names = {*enrichers, *(name for answered in answers.values() for name in answered)}
    enriched = Enrichment.knowing_nothing(names) if names else None
    known = compile_segments(segments, 0.005, enriched=enriched)
    tests = [compile_condition(c, known, enriched=enriched) if c is not None else None for _, c in stages]
    out = np.full(total, -1, dtype=np.int64)
    cursor = con.execute("""SELECT v.vid, v.visitor,
                                   list((epoch(p.ts), p.session, p.path, p.channel, p.device, p.country) ORDER BY p.ts)
                            FROM pmw_vis v JOIN pmw_pv p USING (visitor) GROUP BY v.vid, v.visitor""")
    while batch := cursor.fetchmany(10_000):
        for vid, visitor, views in batch:
            ctx, profile, now = snapshot_profile(visitor, views)
            ctx.enriched = dict(answers.get(vid, {}))  # asked already: the recorded answers are the answers
            for index in range(len(tests) - 1, -1, -1):
                test = tests[index]
                if test is None or test(ctx, profile, now):
                    out[vid] = index
                    break
    return out


def read_features(con: duckdb.DuckDBPyConnection, goal: str | None = None, ignore: Sequence[str] = (),
                  min_share: float = 0.01, max_content: int = 20, stages: Sequence[tuple[str, Any]] = (),
                  segments: dict[str, Any] | None = None, tags: Mapping[str, Sequence[str]] | None = None,
                  enrichers: Sequence[str] = ()) -> VisitorFeatures:
    """Features of every consenting visitor in the ``touchpoints`` view (see :mod:`.source`).

    A content key or channel is a feature when at least ``min_share`` of the
    visitors have it (at most ``max_content`` keys, the most common); paths
    under an ``ignore`` prefix never are (goal pages, the sign-up form: steps
    of converting rather than what a visitor is like). ``stages`` (name, YAML
    condition or None, in funnel order: a config's ``journey: stages:``, whose
    conditions may name its ``segments``) adds each visitor's journey stage.
    ``tags`` (page -> its catalog tags) counts those pages by tag instead of by
    prefix: "read a page tagged pricing". ``enrichers``: the config's enricher names, whose fields its
    segments and stages may read.
    """
    # The pageviews' props when the view has them (open_source(props=True)): enriched fields.
    props = "props" in {row[0] for row in con.execute("DESCRIBE touchpoints").fetchall()}
    snapshot = _SNAPSHOT.format(goal="AND goal = $goal" if goal is not None else "", props=", props" if props else "")
    for statement in snapshot.split(";")[:-1]:
        con.execute(statement, {"goal": goal} if goal is not None and "$goal" in statement else {})
    total = _one(con, "SELECT count(*) FROM pmw_vis")
    if total == 0:
        raise ValueError("no consenting visitor (a record with a visitor id) viewed a page")
    floor = max(1, int(np.ceil(min_share * total)))
    ignored = " AND ".join(f"NOT starts_with(path, {_quote(p)})" for p in ignore) or "TRUE"
    tagged: dict[str, list[str]] = {}
    for page, names in (tags or {}).items():
        for tag in names:
            tagged.setdefault(tag, []).append(page)
    con.execute("CREATE OR REPLACE TEMP TABLE pmw_tag (path VARCHAR, tag VARCHAR)")
    pairs = [(page, tag) for tag, pages in tagged.items() for page in pages]
    if pairs:
        con.executemany("INSERT INTO pmw_tag VALUES (?, ?)", pairs)
    # Each page's content keys: its tags if it has any, else its prefix (or itself).
    con.execute(f"""CREATE OR REPLACE TEMP TABLE pmw_key AS
        SELECT p.path, coalesce('tag:' || t.tag, p.key) AS key
        FROM (SELECT DISTINCT path, key FROM pmw_pv WHERE {ignored}) p LEFT JOIN pmw_tag t USING (path)""")
    keys = [row[0] for row in con.execute(
        "SELECT k.key FROM pmw_pv p JOIN pmw_key k USING (path) GROUP BY k.key "
        "HAVING count(DISTINCT p.visitor) >= $floor ORDER BY count(DISTINCT p.visitor) DESC, k.key LIMIT $most",
        {"floor": floor, "most": max_content}).fetchall()]
    # Per visitor and content key: times read.
    reads = con.execute("""SELECT v.vid, k.key, count(*)::INTEGER AS n
                           FROM pmw_pv p JOIN pmw_key k USING (path) JOIN pmw_vis v USING (visitor)
                           WHERE list_contains($keys, k.key) GROUP BY ALL""", {"keys": keys or [""]}).fetchnumpy()
    session = con.execute("""SELECT v.vid, arg_min(p.channel, p.ts) AS channel
                             FROM pmw_vis v JOIN pmw_pv p ON p.visitor = v.visitor AND p.session IS NOT DISTINCT FROM
                                 v.last_session GROUP BY v.vid ORDER BY v.vid""").fetchnumpy()
    request = con.execute("""SELECT v.vid, arg_max(p.device, p.ts) AS device, arg_max(p.country, p.ts) AS country
                             FROM pmw_vis v JOIN pmw_pv p USING (visitor) GROUP BY v.vid ORDER BY v.vid""").fetchnumpy()
    visitors = [row[0] for row in con.execute("SELECT visitor FROM pmw_vis ORDER BY vid").fetchall()]
    converted = np.zeros(total, dtype=np.float64)
    conv = con.execute("SELECT v.vid FROM pmw_vis v JOIN pmw_cut USING (visitor)").fetchnumpy()["vid"]
    converted[np.asarray(conv, dtype=np.int64)] = 1.0
    answers = _recorded_answers(con) if props else {}
    stage = _stages_of(con, stages, segments or {}, total, answers, enrichers) if stages else None
    enriched = _enriched_columns(answers, total, floor)
    for table in ("pmw_seen", "pmw_cut", "pmw_pv", "pmw_vis", "pmw_tag", "pmw_key"):
        con.execute(f"DROP TABLE IF EXISTS {table}")

    features: list[Feature] = []
    columns: list[npt.NDArray[np.uint8]] = []
    vid, key_of, times = (np.asarray(reads["vid"], dtype=np.int64), np.asarray(reads["key"], dtype=object),
                          np.asarray(reads["n"], dtype=np.int64))
    for key in keys:
        counts = np.zeros(total, dtype=np.int64)
        mine = key_of == key
        counts[vid[mine]] = times[mine]
        for least in (1,) if key.startswith("tag:") else (1, 2):  # `viewed` counts one page or prefix only
            column = (counts >= least).astype(np.uint8)
            if column.sum() >= floor:
                features.append(_content_feature(key, least, tagged))
                columns.append(column)
    for field, values in (("channel", session["channel"]), ("device", request["device"]),
                          ("country", request["country"])):
        cells = np.asarray(values, dtype=object)
        found, seen = np.unique(cells[cells != None].astype(str), return_counts=True)  # noqa: E711 (elementwise)
        for value, n in zip(found, seen, strict=True):
            if n >= floor and n < total:  # none: older records, without the field
                features.append(_field_feature(field, str(value)))
                columns.append((cells == value).astype(np.uint8))
    for index in range(len(stages)):
        column = (stage == index).astype(np.uint8) if stage is not None else np.zeros(total, dtype=np.uint8)
        if floor <= column.sum() < total:
            features.append(stage_feature(stages, index))
            columns.append(column)
    for feature, column in enriched:
        features.append(feature)
        columns.append(column)
    if not features:
        raise ValueError("the records say too little to tell visitors apart (no page or channel shared by "
                         f"{min_share:.0%} of them)")
    matrix = np.stack(columns, axis=1)
    rows, row_of, weight = np.unique(matrix, axis=0, return_inverse=True, return_counts=True)
    row_of = row_of.reshape(-1).astype(np.int64)
    conversions = np.bincount(row_of, weights=converted, minlength=len(rows))
    return VisitorFeatures(features, rows.astype(np.uint8), weight.astype(np.float64), conversions.astype(np.float64),
                           visitors, row_of)


def _one(con: duckdb.DuckDBPyConnection, query: str) -> int:
    row = con.execute(query).fetchone()
    return int(row[0]) if row else 0


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


Pageview = tuple[float, str | None, str, str, str | None, str | None]  # ts, session, path, channel, device, country


def snapshot_profile(visitor: str, pageviews: Sequence[Pageview]) -> tuple[RequestContext, Profile, float]:
    """The request and profile a rule sees at a visitor's snapshot, from its pageviews in time order: what
    the engine evaluates a suggested segment on. The request is the last pageview's, with its device (as a
    User-Agent of that class) and country header."""
    _, _, path, _, device, country = pageviews[-1]
    headers = {"user-agent": _AGENTS.get(device or "", "")} | ({"cf-ipcountry": country} if country else {})
    ctx = RequestContext("GET", "https", "localhost", path, "", headers)
    return ctx, profile_of(visitor, pageviews), pageviews[-1][0]


def profile_of(visitor: str, pageviews: Sequence[tuple[Any, ...]], goals: Sequence[str] = (),
               max_paths: int | None = None) -> Profile:
    """The profile the cookie holds after ``pageviews`` (each starting ts, session, path, channel; time order,
    at least one) and ``goals`` reached: a visit per session, the channel the last session started with, and
    the last ``max_paths`` paths (the cookie's ``max_paths``; all of them when None)."""
    sessions = [view[1] for view in pageviews]
    last = sessions[-1]
    channel = next(view[3] for view in pageviews if view[1] == last)
    paths = [view[2] for view in pageviews]
    return Profile(visitor, visits=len(set(sessions)), first_seen=int(pageviews[0][0]),
                   last_seen=int(pageviews[-1][0]), paths=paths[-max_paths:] if max_paths else paths,
                   goals=list(dict.fromkeys(goals)), session_id=last, session_channel=channel)

