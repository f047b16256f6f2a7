"""The built-in consent endpoint, through both adapters.

ASGI goes through Starlette's TestClient, WSGI through Flask's test client
with werkzeug's LintMiddleware inside and outside the middleware.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote

import flask
import pytest
from conftest import ADAPTER_PAGE, AdapterSetup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.middleware.lint import HTTPWarning, LintMiddleware, WSGIWarning

from personalize_mw import PersonalizeMiddleware, PersonalizeWSGIMiddleware

ENDPOINT = "/_personalize/consent"
HOST = "shop.example"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def get(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name]

    def cookie(self, name: str) -> str | None:
        found = [c for c in self.get("set-cookie") if c.split("=", 1)[0] == name]
        assert len(found) <= 1
        return found[0] if found else None


Send = Callable[..., Reply]


def asgi_sender(config: dict[str, Any]) -> Send:
    async def page(request: Request) -> Response:
        return HTMLResponse(ADAPTER_PAGE)

    mw = PersonalizeMiddleware(Starlette(routes=[Route("/", page)]), config=config)

    def send(method: str = "POST", path: str = ENDPOINT, body: bytes = b"", headers: dict[str, str] | None = None,
             scheme: str = "http") -> Reply:
        client = TestClient(mw, base_url=f"{scheme}://{HOST}", follow_redirects=False)
        response = client.request(method, path, content=body, headers=headers or {})
        return Reply(response.status_code, response.headers.multi_items(), response.content)

    return send


def wsgi_sender(config: dict[str, Any]) -> Send:
    app = flask.Flask(__name__)

    @app.get("/")
    def page() -> flask.Response:
        return flask.Response(ADAPTER_PAGE, mimetype="text/html")

    app.wsgi_app = LintMiddleware(PersonalizeWSGIMiddleware(LintMiddleware(app.wsgi_app), config=config))  # type: ignore[method-assign]
    client = app.test_client(use_cookies=False)

    def send(method: str = "POST", path: str = ENDPOINT, body: bytes = b"", headers: dict[str, str] | None = None,
             scheme: str = "http") -> Reply:
        with warnings.catch_warnings():
            warnings.simplefilter("error", WSGIWarning)
            warnings.simplefilter("error", HTTPWarning)
            # RFC 9110 allows a relative Location; Lint still asks for an absolute one.
            warnings.filterwarnings("ignore", "Absolute URLs required", HTTPWarning)
            response = client.open(path, method=method, data=body, headers=headers or {},
                                   base_url=f"{scheme}://{HOST}", buffered=True)
        return Reply(response.status_code, response.headers.to_wsgi_list(), response.data)

    return send


@pytest.fixture(params=["asgi", "wsgi"])
def send(request: pytest.FixtureRequest, adapter_setup: AdapterSetup) -> Send:
    make = asgi_sender if request.param == "asgi" else wsgi_sender
    return make(adapter_setup.config())


def same_site(content_type: str, scheme: str = "http") -> dict[str, str]:
    return {"Origin": f"{scheme}://{HOST}", "Content-Type": content_type}


def consent_value(reply: Reply) -> str:
    cookie = reply.cookie("pmw_consent")
    assert cookie is not None
    return cookie.split(";", 1)[0].split("=", 1)[1]


# ---------------------------------------------------------------- accepted choices


def test_json_accept_all_gives_204_and_the_consent_cookie(send: Send) -> None:
    reply = send(body=b'{"all": true}', headers=same_site(JSON))
    assert (reply.status, reply.body) == (204, b"")
    assert consent_value(reply) == "analytics=1&personalization=1&advertising=1"
    cookie = reply.cookie("pmw_consent") or ""
    assert "SameSite=Lax" in cookie and "Path=/" in cookie and "Max-Age=" in cookie
    assert "HttpOnly" not in cookie  # a banner script reads it
    assert reply.get("cache-control") == ["no-store"]
    assert reply.cookie("pmw_id") is None


def test_json_custom_choice_without_personalization_expires_the_id_cookie(send: Send) -> None:
    body = json.dumps({"analytics": True, "personalization": False, "advertising": False}).encode()
    reply = send(body=body, headers=same_site(JSON))
    assert reply.status == 204
    assert consent_value(reply) == "analytics=1&personalization=0&advertising=0"
    expired = reply.cookie("pmw_id") or ""
    assert expired.startswith("pmw_id=;") and "Max-Age=0" in expired


def test_on_https_the_cookies_are_secure_and_the_id_cookie_is_host_prefixed(send: Send) -> None:
    reply = send(body=b'{"personalization": false}', headers=same_site(JSON, "https"), scheme="https")
    assert reply.status == 204
    consent = reply.cookie("__Host-pmw_consent") or ""  # no sibling subdomain can set this name
    assert "Secure" in consent and "Path=/" in consent and reply.cookie("pmw_consent") is None
    expired = reply.cookie("__Host-pmw_id") or ""
    assert "Max-Age=0" in expired and "Secure" in expired and "Path=/" in expired


def test_form_accept_all_redirects_to_a_safe_next(send: Send) -> None:
    reply = send(body=b"choice=accept_all&next=%2Fpricing%3Fplan%3Dteam", headers=same_site(FORM))
    assert reply.status == 303 and reply.get("location") == ["/pricing?plan=team"]
    assert consent_value(reply) == "analytics=1&personalization=1&advertising=1"


def test_form_custom_checkboxes(send: Send) -> None:
    reply = send(body=b"choice=custom&analytics=on&next=%2F", headers=same_site(FORM))
    assert reply.status == 303
    assert consent_value(reply) == "analytics=1&personalization=0&advertising=0"
    assert "Max-Age=0" in (reply.cookie("pmw_id") or "")


@pytest.mark.parametrize("target", ["//evil.com", "https://evil.com", "/\\evil.com", "javascript:alert(1)",
                                    "evil.com", "///evil.com"])
def test_form_next_off_site_is_replaced_by_the_home_page(send: Send, target: str) -> None:
    reply = send(body=f"choice=reject_all&next={quote(target, safe='')}".encode(), headers=same_site(FORM))
    assert reply.status == 303 and reply.get("location") == ["/"]


def test_form_without_next_goes_back_to_the_referring_page(send: Send) -> None:
    reply = send(body=b"choice=reject_all",
                 headers={"Referer": f"http://{HOST}/blog/post?x=1", "Content-Type": FORM})
    assert reply.status == 303 and reply.get("location") == ["/blog/post?x=1"]
    assert "Max-Age=0" in (reply.cookie("pmw_id") or "")


def test_sec_fetch_site_same_origin_is_accepted(send: Send) -> None:
    reply = send(body=b'{"all": true}', headers={"Sec-Fetch-Site": "same-origin", "Content-Type": JSON})
    assert reply.status == 204


# ---------------------------------------------------------------- refused requests


@pytest.mark.parametrize("origin_headers", [
    {"Origin": "http://evil.com"},
    {"Origin": f"https://{HOST}"},  # another scheme is another origin
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Referer": "http://evil.com/page"},
    {"Origin": "http://evil.com", "Referer": f"http://{HOST}/"},  # Origin decides when present
    {},
], ids=["other-origin", "other-scheme", "null-origin", "cross-site", "same-site", "other-referer",
        "origin-wins", "no-signal"])
def test_cross_origin_or_unknown_origin_is_forbidden(send: Send, origin_headers: dict[str, str]) -> None:
    reply = send(body=b'{"all": true}', headers={**origin_headers, "Content-Type": JSON})
    assert reply.status == 403
    assert reply.get("set-cookie") == []


def test_get_is_method_not_allowed(send: Send) -> None:
    reply = send("GET", headers={"Origin": f"http://{HOST}"})
    assert reply.status == 405 and reply.get("allow") == ["POST"]
    assert reply.get("set-cookie") == [] and reply.get("content-length") == [str(len(reply.body))]


def test_oversize_body_is_refused(send: Send) -> None:
    body = b'{"all": true' + b" " * 5000 + b"}"
    reply = send(body=body, headers=same_site(JSON))
    assert reply.status == 413 and reply.get("set-cookie") == []


@pytest.mark.parametrize("content_type,body", [
    (JSON, b"{not json"),
    (JSON, b"[true]"),
    (JSON, b'{"analytics": "yes"}'),
    (JSON, b"\xff\xfe"),
    (FORM, b"choice=maybe"),
    (FORM, b"choice=accept_all&next=\xff"),
    ("text/plain", b"analytics=1"),
    ("", b""),
], ids=["broken-json", "json-list", "json-string-flag", "json-bad-bytes", "unknown-choice", "form-bad-bytes",
        "text-plain", "empty"])
def test_garbage_body_is_a_bad_request(send: Send, content_type: str, body: bytes) -> None:
    headers = {"Origin": f"http://{HOST}"}
    if content_type:
        headers["Content-Type"] = content_type
    reply = send(body=body, headers=headers)
    assert reply.status == 400 and reply.get("set-cookie") == []
    assert reply.get("content-length") == [str(len(reply.body))]


# ---------------------------------------------------------------- the cookie then works


def test_granted_consent_lets_the_next_page_set_the_id_cookie(send: Send) -> None:
    before = send("GET", "/")
    assert before.status == 200 and before.cookie("pmw_id") is None  # opt-in: no signal, no id
    granted = send(body=b'{"analytics": true, "personalization": true}', headers=same_site(JSON))
    cookie = "pmw_consent=" + consent_value(granted)
    after = send("GET", "/", headers={"Cookie": cookie})
    assert after.status == 200 and (after.cookie("pmw_id") or "").startswith("pmw_id=")
    withdrawn = send(body=b'{"personalization": false}',
                     headers={**same_site(JSON), "Cookie": cookie + "; " + (after.cookie("pmw_id") or "").split(";")[0]})
    assert "Max-Age=0" in (withdrawn.cookie("pmw_id") or "")


def test_on_https_a_plain_copy_this_host_set_before_is_expired(send: Send) -> None:
    headers = {**same_site(JSON, "https"), "cookie": "pmw_consent=analytics=0&personalization=0&advertising=0"}
    reply = send(body=b'{"analytics": true, "personalization": true}', headers=headers, scheme="https")
    assert "Max-Age=0" in (reply.cookie("pmw_consent") or "")  # else the old refusal would outvote the grant
    assert "analytics=1&personalization=1" in (reply.cookie("__Host-pmw_consent") or "")
