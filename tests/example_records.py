"""The example site's own few records: a handful of visitors walking it with its shipped rules, in-process.

What a site owner has after trying the demo for a minute: every slot of the
shipped personalize.yaml (most without a holdout), a few visitors, one day.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

from example_site import app as site
from personalize_mw.analytics.asgi_driver import ASGIDriver
from personalize_mw.analytics.simulate_site import _seeded_ids
from personalize_mw.config import load_config
from personalize_mw.core.personalizer import Personalizer

ORIGIN = "http://testserver"
SEED = 0
WALK = ("/", "/pricing", "/pricing", "/", "/blog", "/whitepaper", "/signup?plan=team")


def _headers(referer: str | None, content_type: str | None = None) -> list[tuple[str, str]]:
    headers = [("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0"), ("accept", "text/html")]
    if referer:
        headers.append(("referer", referer))
    if content_type:
        headers += [("origin", ORIGIN), ("content-type", content_type)]
    return headers


def walk_example_site(out: Path, visitors: int = 3, seed: int = SEED) -> Path:
    """Records of ``visitors`` who accept the banner, read a few pages and sign up; returns the config used.

    Visitor ids come from ``seed``, so the arms are the same every run (SEED: one visitor held out).
    """
    data = yaml.safe_load(site.CONFIG.read_text(encoding="utf-8"))
    data["sink"] = f"jsonl:{out}"
    data["base_dir"] = str(site.CONFIG.parent)
    config = out.with_suffix(".yaml")
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    core = Personalizer(load_config(data), new_id=_seeded_ids(random.Random(seed)))
    with ASGIDriver(site.create_app(personalizer=core), ORIGIN) as browser:
        for _ in range(visitors):
            browser.cookies.clear()
            browser.request("POST", "/_personalize/consent", _headers(ORIGIN + "/", "application/json"),
                            json.dumps({"all": True}).encode())
            for path in WALK:
                browser.request("GET", path, _headers(ORIGIN + "/"))
            form = _headers(ORIGIN + "/signup", "application/x-www-form-urlencoded")
            answer = browser.request("POST", "/signup", form, b"email=ada%40example.com&company=Ada&plan=team")
            location = answer.header("location")
            assert answer.status == 303 and location, answer.status
            browser.request("GET", location, _headers(ORIGIN + "/signup"))
    return config
