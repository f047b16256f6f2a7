"""Attribution (and, beside it, causal lift) from the touchpoint records.

    from personalize_mw.analytics import open_source, build_journeys, attribute
    con = open_source(["touchpoints/*.jsonl"])
    journeys = build_journeys(con, by="channel", goal=None, lookback_days=30)
    attribute(journeys, "markov").as_dict()
"""

from .journeys import Journeys
from .models import HEURISTICS, MODELS, Attribution, attribute, attribute_all, credited_totals
from .source import build_journeys, open_source

__all__ = ["HEURISTICS", "MODELS", "Attribution", "Journeys", "attribute", "attribute_all",
           "build_journeys", "credited_totals", "open_source"]
