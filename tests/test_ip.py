"""``ip:``: nothing by default; ``truncate`` keeps a /24 or /48, for consenting visitors only, on every adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from personalize_mw import PersonalizeMiddleware, PersonalizeWSGIMiddleware
from personalize_mw.config import load_config
from personalize_mw.core.ip import truncate_ip
from personalize_mw.errors import ConfigError

CONSENT = "analytics=1&personalization=1&advertising=0"
PAGE = "<html><body>hi</body></html>"


@pytest.mark.parametrize(("address", "expected"), [
    ("203.0.113.77", "203.0.113.0"),
    ("10.1.2.255", "10.1.2.0"),
    ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::"),
    ("::ffff:198.51.100.9", "198.51.100.0"),  # IPv4 on a dual-stack socket is IPv4
    ("fe80::1:2:3:4%eth0", "fe80::"),
    ("[2001:db8::1]", "2001:db8::"),
    ("testclient", None),
    ("", None),
    (None, None),
])
def test_truncate_ip(address: str | None, expected: str | None) -> None:
    assert truncate_ip(address) == expected


def test_ip_accepts_only_none_or_truncate(make_core_config: Any) -> None:
    assert load_config(make_core_config()).ip == "none"
    with pytest.raises(ConfigError, match="ip"):
        load_config(make_core_config(ip="full"))


def read(sink: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sink.read_text("utf-8").splitlines()]


def starlette_records(config: dict[str, Any], client: str, consent: bool) -> list[dict[str, Any]]:
    app = PersonalizeMiddleware(Starlette(routes=[Route("/", lambda r: HTMLResponse(PAGE))]), config=config)
    with TestClient(app, client=(client, 40000)) as http:
        if consent:
            http.cookies.set("pmw_consent", CONSENT)
        assert http.get("/").status_code == 200
    app.core.queue.close()
    return read(Path(config["sink"][len("jsonl:"):]))


def test_no_ip_by_default_even_with_consent(make_core_config: Any) -> None:
    records = starlette_records(make_core_config(), "203.0.113.77", consent=True)
    assert [r["ip"] for r in records] == [None]
    assert "203.0.113" not in json.dumps(records)


def test_truncate_keeps_the_network_of_a_consenting_visitor(make_core_config: Any) -> None:
    records = starlette_records(make_core_config(ip="truncate"), "203.0.113.77", consent=True)
    assert [r["ip"] for r in records] == ["203.0.113.0"]
    assert "203.0.113.77" not in json.dumps(records)


def test_truncate_keeps_a_48_of_ipv6(make_core_config: Any) -> None:
    records = starlette_records(make_core_config(ip="truncate"), "2001:db8:abcd:12::99", consent=True)
    assert [r["ip"] for r in records] == ["2001:db8:abcd::"]


def test_truncate_stores_nothing_without_consent(make_core_config: Any) -> None:
    records = starlette_records(make_core_config(ip="truncate"), "203.0.113.77", consent=False)
    assert [r["ip"] for r in records] == [None]


def test_wsgi_passes_remote_addr(make_core_config: Any, tmp_path: Path) -> None:
    config = make_core_config(ip="truncate")
    flask_app = Flask(__name__)
    flask_app.add_url_rule("/", "home", lambda: PAGE)
    app = PersonalizeWSGIMiddleware(flask_app.wsgi_app, config=config)
    flask_app.wsgi_app = app  # type: ignore[method-assign]
    client = flask_app.test_client()
    client.set_cookie("pmw_consent", CONSENT)
    assert client.get("/", environ_base={"REMOTE_ADDR": "198.51.100.200"}).data == PAGE.encode()
    app.core.queue.close()
    assert [r["ip"] for r in read(tmp_path / "touchpoints.jsonl")] == ["198.51.100.0"]
