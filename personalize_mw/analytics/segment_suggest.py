"""``suggest segments`` end to end: the records read, the visitors clustered, the segments written as YAML."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, load_config, read_yaml
from ..config_problems import STAND_IN
from .segment_defaults import DEPTH, MAX_K, MIN_SHARE
from .segment_fit import Fit, fit_segments
from .segment_yaml import Named, named_segments, render
from .source import open_source
from .visitor_features import VisitorFeatures, read_features


@dataclass(frozen=True)
class Suggestion:
    data: VisitorFeatures
    fit: Fit
    named: list[Named]
    text: str

    def segment_of(self) -> dict[str, str | None]:
        """Visitor id -> the suggested segment the rules put them in (None: in none)."""
        names = {item.segment.label: item.name for item in self.named}
        rows = self.fit.row_segment[self.data.row_of]
        return {visitor: names.get(int(label)) for visitor, label in zip(self.data.visitors, rows, strict=True)}


def suggest_segments(inputs: list[str], *, config: Config | None = None, goal: str | None = None,
                     ignore: list[str] | None = None, min_share: float = MIN_SHARE, small: str = "merge",
                     max_k: int = MAX_K, depth: int = DEPTH, seed: int = 0, skip_bad_lines: bool = False,
                     with_stages: bool = False, by_tag: bool = False,
                     command: str = "personalize-mw suggest segments") -> Suggestion:
    """Read, cluster, describe; raises ValueError (with a reason a person can act on), OSError or duckdb.Error."""
    if not 0 < min_share < 1:
        raise ValueError("--min-share is a share of the visitors, between 0 and 1")
    if max_k < 2 or depth < 1:
        raise ValueError("--max-k is at least 2 and --depth at least 1")
    ignored = list(ignore or [])
    taken: list[str] = []
    stages: list[tuple[str, object]] = []
    if config is not None:
        ignored += [g.path or g.path_prefix or "" for g in config.goals.values() if g.path or g.path_prefix]
        taken = list(config.segments)
        if with_stages:
            stages = [(stage.name, stage.if_) for stage in config.journey.stages]
    elif with_stages or by_tag:
        raise ValueError("--stages and --content tag need --config: the journey stages and catalogs are the config's")
    con = open_source(inputs, skip_bad_lines=skip_bad_lines, props=True)  # props: enriched fields
    try:
        data = read_features(con, goal=goal, ignore=ignored, stages=stages,
                             segments=dict(config.segments) if config is not None else None,
                             tags=catalog_tags(config) if by_tag and config is not None else None,
                             enrichers=list(config.enrichment) if config is not None else ())
    finally:
        con.close()
    fit = fit_segments(data, max_k=max_k, depth=depth, min_share=min_share,
                       small="drop" if small == "drop" else "merge", seed=seed)
    if len(fit.segments) < 2:
        raise ValueError(f"found no segments worth a different experience: at --min-share {min_share:.0%} and "
                         f"--depth {depth} the visitors stay one group ({'; '.join(fit.notes) or 'no notes'})")
    named = named_segments(fit, taken)
    converted = f"{fit.conversions / fit.visitors:.1%} converted"
    header = [
        f"Suggested by: {command}",
        f"{fit.visitors:,} consenting visitors, each as before their first conversion"
        f"{f' ({goal})' if goal else ''}; {converted}.",
        f"Groups: a latent class model (Bernoulli mixture) on {len(fit.features)} yes/no features, k = 2..{max_k}: "
        f"k = {fit.k}, the lowest BIC" + (" among the models whose every group holds --min-share "
                                          f"{min_share:.0%}." if small == "merge" else "."),
        f"Rules: a decision tree of depth {depth} fitted to the groups; its segments agree with the groups for "
        f"{fit.agreement:.1%} of the visitors.",
        *(["Merged or dropped:"] + [f"  - {note}" for note in fit.notes] if fit.notes else
          ["Nothing merged or dropped."]),
        "Correlation, not yet tested: a segment's conversion rate is not what a different experience would do;",
        "test one with a holdout (docs/lift.md) before acting on it.",
        "Merge the segments you keep into personalize.yaml.",
    ]
    text = render(fit, named, header)
    _check_loads(text, config, enricher_names(data))
    return Suggestion(data, fit, named, text)


def enricher_names(data: VisitorFeatures) -> set[str]:
    """The enrichers whose fields are features (``company`` of ``company.industry``)."""
    return {key.partition(".")[0] for f in data.features for key in f.condition
            if "." in key and not key.startswith("query.")}


def catalog_tags(config: Config) -> dict[str, list[str]]:
    """Page -> tags, from the ``catalog:`` of every crowd slot (``{url, title, tags}`` items)."""
    tags: dict[str, list[str]] = {}
    for slot in config.slots.values():
        crowd = (slot.model_extra or {}).get("crowd")
        for item in (crowd or {}).get("catalog", []) if isinstance(crowd, dict) else []:
            if isinstance(item, dict) and isinstance(item.get("url"), str) and isinstance(item.get("tags"), list):
                tags.setdefault(item["url"], []).extend(str(t) for t in item["tags"])
    return tags


def _check_loads(text: str, config: Config | None, enrichers: set[str]) -> None:
    """The emitted segments load beside the config's own, or this is a bug: raises ConfigError, never writes.
    Enrichers stand in by name (their fields are known, their files not opened): a segment on
    ``company.industry`` loads in a config that names an enricher ``company``."""
    with tempfile.TemporaryDirectory(prefix="pmw-suggest-") as folder:
        path = Path(folder) / "segments.yaml"
        path.write_text(text, encoding="utf-8")
        segments = read_yaml(path)[0]["segments"]  # the loader's own reader: no aliases, nesting bounded
    known = dict(config.segments) if config is not None else {}
    names = enrichers | set(config.enrichment if config is not None else ())
    load_config({"secret_keys": ["suggest-segments-check"], "segments": {**known, **segments},
                 "enrichment": {name: {"type": STAND_IN} for name in sorted(names)}})


