"""/_personalize/privacy: a visitor downloads or erases what is held under their own verified id.

The real middleware writes the records (jsonl, and a ``python:`` store of the
site's own where a test needs one that can fail); the endpoint is driven over
Starlette's TestClient as a browser would, and its answers are checked
against what ``personalize-mw export`` / ``forget`` hold and leave behind.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

import personalize_mw
from personalize_mw import PersonalizeMiddleware
from personalize_mw.config import load_config
from personalize_mw.core.consent_endpoint import EndpointResponse
from personalize_mw.core.privacy_endpoint import public_names
from personalize_mw.privacy import export_person

CONSENT = "analytics=1&personalization=1&advertising=0"
ORIGIN = {"origin": "http://testserver"}
PATH = "/_personalize/privacy"

STORE = '''
import asyncio
import threading

HELD = []
DOWN = []  # a message here makes every call fail, as a warehouse that is down does
ON_LOOP = []  # per call: did it run in a thread with a running event loop (blocking it)?
ENTERED, GATE = threading.Event(), threading.Event()
GATE.set()  # cleared: a call waits there (a slow read), after setting ENTERED


OPEN_FAILS = []  # a message here: the class cannot be opened again (the privacy request opens its own)


class Warehouse:
    def __init__(self):
        if OPEN_FAILS:
            raise RuntimeError(OPEN_FAILS[0])

    def write(self, records):
        HELD.extend(records)

    def close(self):
        pass

    def _check(self):
        try:
            ON_LOOP.append(asyncio.get_running_loop() is not None)
        except RuntimeError:
            ON_LOOP.append(False)
        ENTERED.set()
        GATE.wait(10)
        if DOWN:
            raise ConnectionError(DOWN[0])

    def links(self, person):
        self._check()
        return {(r["visitor"], r["user"]) for r in HELD if r["type"] == "identify" and person.owns(r)}

    def export(self, person):
        self._check()
        return [r for r in HELD if person.owns(r)]

    def forget(self, person):
        self._check()
        before = len(HELD)
        HELD[:] = [r for r in HELD if not person.owns(r)]
        return before - len(HELD)

    def prune(self, before):
        return 0
'''


def read(sink: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sink.read_text("utf-8").splitlines()] if sink.exists() else []


class Site:
    def __init__(self, config: dict[str, Any], sink: Path) -> None:
        async def page(request: Request) -> Response:
            return HTMLResponse("<p>hi</p>")

        async def login(request: Request) -> Response:
            assert personalize_mw.identify(request, request.query_params["user"])
            return RedirectResponse("/", status_code=303)

        app = Starlette(routes=[Route("/", page), Route("/login", login, methods=["POST"])])
        self.config = config
        self.app = PersonalizeMiddleware(app, config=config)
        self.sink = sink

    def browser(self, consent: bool = True, address: str = "203.0.113.10") -> TestClient:
        http = TestClient(self.app, client=(address, 5000))
        if consent:
            http.cookies.set("pmw_consent", CONSENT)
        return http

    def visitor(self, http: TestClient, user: str | None = None) -> str:
        """Browse (and log in as ``user``); the id this browser now carries."""
        assert http.get("/").status_code == 200
        if user is not None:
            http.post(f"/login?user={user}", headers=ORIGIN, follow_redirects=False)
        self.app.core.queue.flush(5)
        return self.id_of(http)

    def id_of(self, http: TestClient) -> str:
        profile = self.app.core.codec.load(http.cookies["pmw_id"])
        assert profile is not None
        return profile.visitor_id

    def erase(self, http: TestClient, **kwargs: Any) -> Any:
        kwargs.setdefault("json", {"action": "erase"})
        kwargs["headers"] = {**ORIGIN, **kwargs.get("headers", {})}
        return http.post(PATH, follow_redirects=False, **kwargs)

    def records(self) -> list[dict[str, Any]]:
        self.app.core.queue.flush(5)
        return read(self.sink)


@pytest.fixture
def site(make_core_config: Callable[..., dict[str, Any]], tmp_path: Path) -> Iterator[Callable[..., Site]]:
    made: list[Site] = []

    def make(**overrides: Any) -> Site:
        made.append(Site(make_core_config(**overrides), tmp_path / "touchpoints.jsonl"))
        return made[-1]

    yield make
    for s in made:
        s.app.core.queue.close()


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The ``python:privacy_site_store:Warehouse`` module, fresh for each test."""
    (tmp_path / "privacy_site_store.py").write_text(STORE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("privacy_site_store", None)
    import privacy_site_store  # type: ignore[import-not-found]

    yield privacy_site_store
    sys.modules.pop("privacy_site_store", None)


def ids(records: list[dict[str, Any]]) -> set[str | None]:
    return {r["visitor"] for r in records}


# ---------------------------------------------------------------- download


def test_the_download_is_what_export_holds_for_the_browsers_id(site: Callable[..., Site], tmp_path: Path) -> None:
    s = site()
    mine, theirs = s.browser(), s.browser(address="198.51.100.7")
    me, other = s.visitor(mine), s.visitor(theirs)
    got = mine.get(PATH)
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert got.headers["content-disposition"] == 'attachment; filename="personal-data.json"'
    assert got.headers["cache-control"] == "no-store" and got.headers["x-content-type-options"] == "nosniff"
    download = got.json()
    expected = public_names(export_person(load_config(s.config), me))
    assert {**download, "generated": None} == {**expected, "generated": None}
    assert download["visitor_ids"] == [me] and ids(download["records"]["jsonl"]) == {me}
    assert other not in got.text  # another visitor's records are not in it
    assert str(tmp_path) not in got.text  # the sink is named by its kind, not its path
    assert "set-cookie" not in got.headers  # not a visit: nothing recorded, no cookie refreshed


def test_the_last_page_view_is_in_the_download_though_the_queue_had_not_sent_it(site: Callable[..., Site]) -> None:
    s = site(delivery={"flush_interval_s": 30})  # nothing would reach the file for 30 s
    http = s.browser()
    http.get("/")
    download = http.get(PATH).json()
    assert [r["type"] for r in download["records"]["jsonl"]] == ["pageview"]
    assert download["id"] == s.id_of(http) and download["visitor_ids"] == [download["id"]]


def test_no_id_cookie_no_consent_or_a_forged_one_gets_404_and_nothing(site: Callable[..., Site]) -> None:
    s = site()
    s.visitor(s.browser())
    stranger = s.browser()  # consent, but no id yet
    refused = s.browser(consent=False)
    forged = s.browser()
    forged.cookies.set("pmw_id", "2.eyJpIjoiYWJjIn0.AAAAAA.forged")
    withdrawn = s.browser()
    s.visitor(withdrawn)
    withdrawn.cookies.set("pmw_consent", "analytics=0&personalization=0&advertising=0")
    for http in (stranger, refused, forged, withdrawn):
        for answer in (http.get(PATH), s.erase(http)):
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"] == "no_visitor_id"
            assert "records" not in answer.json() and "set-cookie" not in answer.headers
    assert len(s.records()) == 2  # nothing erased


# ---------------------------------------------------------------- whose data


def test_a_shared_browser_reaches_its_own_id_only_not_a_users_other_devices(site: Callable[..., Site]) -> None:
    s = site()
    library, phone = s.browser(), s.browser(address="198.51.100.7")
    at_library = s.visitor(library, user="alice")  # Alice logged in on a shared computer...
    on_phone = s.visitor(phone, user="alice")  # ...and on her phone: identify links both ids to her
    download = library.get(PATH).json()  # whoever sits at the library computer next
    assert download["visitor_ids"] == [at_library]
    assert ids(download["records"]["jsonl"]) == {at_library}
    assert on_phone not in json.dumps(download)
    assert s.erase(library).status_code == 200
    assert ids(s.records()) == {on_phone}  # Alice's phone records stay: only `forget alice` reaches them


def test_a_parameter_naming_another_id_changes_nothing(site: Callable[..., Site]) -> None:
    s = site()
    mine, theirs = s.browser(), s.browser(address="198.51.100.7")
    me, other = s.visitor(mine), s.visitor(theirs)
    download = mine.get(PATH, params={"id": other, "visitor": other}).json()
    assert download["visitor_ids"] == [me]
    assert s.erase(mine, json=None, data={"action": "erase", "id": other, "visitor": other}).status_code == 303
    assert ids(s.records()) == {other}


# ---------------------------------------------------------------- erase


def test_erase_deletes_the_browsers_records_and_expires_its_id(site: Callable[..., Site]) -> None:
    s = site()
    mine, theirs = s.browser(), s.browser(address="198.51.100.7")
    s.visitor(mine)
    mine.get("/")
    other = s.visitor(theirs)
    got = s.erase(mine)
    assert got.status_code == 200
    assert got.json() == {"request": "erase", "complete": True, "deleted": 2, "sinks_told_downstream": 0}
    assert got.headers["set-cookie"].startswith("pmw_id=; Max-Age=0")
    assert ids(s.records()) == {other}
    assert "pmw_id" not in mine.cookies
    assert mine.get(PATH).status_code == 404  # the id is gone with its records


def test_the_erase_form_goes_back_to_its_next_page_on_this_site_only(site: Callable[..., Site]) -> None:
    s = site()
    http = s.browser()
    s.visitor(http)
    thanks = s.erase(http, json=None, data={"action": "erase", "next": "/privacy/erased"})
    assert (thanks.status_code, thanks.headers["location"]) == (303, "/privacy/erased")
    assert "Max-Age=0" in thanks.headers["set-cookie"]
    for target, location in (("//evil.example/x", "/"), ("https://evil.example/", "/"),
                             ("/x\r\nSet-Cookie: a=b", "/x%0D%0ASet-Cookie:%20a=b")):
        http = s.browser()
        s.visitor(http)
        got = s.erase(http, json=None, data={"action": "erase", "next": target})
        assert got.headers["location"] == location
        assert [v for k, v in got.headers.multi_items() if k == "set-cookie"] == [
            got.headers["set-cookie"]]  # no header of the request's making
    came_from = s.browser()
    s.visitor(came_from)
    back = s.erase(came_from, json=None, data={"action": "erase"},
                   headers={"referer": "http://testserver/privacy?tab=data"})
    assert back.headers["location"] == "/privacy?tab=data"


def test_erase_from_another_site_or_without_an_origin_is_refused(site: Callable[..., Site]) -> None:
    s = site()
    http = s.browser()
    s.visitor(http)
    for headers in ({"origin": "https://evil.example"}, {"origin": "null"}, {"sec-fetch-site": "cross-site"},
                    {"referer": "https://evil.example/page"}):
        got = http.post(PATH, data={"action": "erase"}, headers=headers, follow_redirects=False)
        assert got.status_code == 403 and got.json()["error"] == "cross_site"
    assert http.post(PATH, data={"action": "erase"}, follow_redirects=False).status_code == 403  # neither header
    assert len(s.records()) == 1


@pytest.mark.parametrize("body", [{"data": {"action": "download"}}, {"json": {"action": ["erase"]}},
                                  {"content": b"action=erase", "headers": {"content-type": "text/plain"}},
                                  {"content": b"[" * 4000, "headers": {"content-type": "application/json"}},
                                  {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}])
def test_a_post_that_is_not_an_erase_request_is_400(site: Callable[..., Site], body: dict[str, Any]) -> None:
    s = site()
    http = s.browser()
    s.visitor(http)
    got = s.erase(http, **{"json": None, **body})
    assert got.status_code == 400 and got.json()["error"] == "action"
    assert len(s.records()) == 1


def test_other_methods_and_large_bodies(site: Callable[..., Site]) -> None:
    s = site()
    http = s.browser()
    s.visitor(http)
    put = http.put(PATH, headers=ORIGIN)
    assert (put.status_code, put.headers["allow"]) == (405, "GET, POST")
    big = s.erase(http, json=None, data={"action": "erase", "pad": "x" * 5000})
    assert big.status_code == 413
    assert len(s.records()) == 1


def test_a_store_that_is_down_keeps_the_id_for_a_retry_and_its_error_out_of_the_answer(
        site: Callable[..., Site], tmp_path: Path, warehouse: Any, caplog: pytest.LogCaptureFixture) -> None:
    s = site(sink=[f"jsonl:{tmp_path / 'touchpoints.jsonl'}", "python:privacy_site_store:Warehouse"])
    http = s.browser()
    me = s.visitor(http)
    warehouse.DOWN.append("db.internal:5432 refused")
    with caplog.at_level("ERROR", logger="personalize_mw"):
        download = http.get(PATH)
        failed = s.erase(http)
    assert download.status_code == 200
    assert download.json()["unreadable"] == {"python": "could not be read now: this download is incomplete; "
                                                       "try again later"}
    assert failed.status_code == 503 and failed.json()["error"] == "incomplete"
    assert failed.headers["retry-after"] == "300" and "set-cookie" not in failed.headers  # the id is kept
    for answer in (download, failed):
        assert "db.internal" not in answer.text and "privacy_site_store" not in answer.text
    assert "db.internal:5432 refused" in caplog.text  # the owner sees it
    assert ids(s.records()) == set()  # the jsonl sink was still erased
    warehouse.DOWN.clear()
    retried = s.erase(http)
    assert retried.status_code == 200 and retried.json()["deleted"] == 1
    assert not [r for r in warehouse.HELD if r["visitor"] == me]


def test_a_failure_outside_the_stores_is_a_500_that_says_nothing_and_frees_the_endpoint(
        site: Callable[..., Site], warehouse: Any, caplog: pytest.LogCaptureFixture) -> None:
    s = site(sink=["python:privacy_site_store:Warehouse"])
    http = s.browser()
    s.visitor(http)
    warehouse.OPEN_FAILS.append("license server at 10.0.0.7 said no")
    with caplog.at_level("ERROR", logger="personalize_mw"):
        failed = [http.get(PATH), s.erase(http)]
    assert [(f.status_code, f.json()["error"]) for f in failed] == [(500, "internal"), (500, "internal")]
    assert all("10.0.0.7" not in f.text and "set-cookie" not in f.headers for f in failed)
    assert "10.0.0.7" in caplog.text
    warehouse.OPEN_FAILS.clear()
    assert s.erase(http).status_code == 200  # not left busy


def test_asgi_reads_the_stores_off_the_event_loop(site: Callable[..., Site], warehouse: Any) -> None:
    s = site(sink=["python:privacy_site_store:Warehouse"])
    http = s.browser()
    s.visitor(http)
    warehouse.ON_LOOP.clear()
    assert http.get(PATH).status_code == 200
    assert warehouse.ON_LOOP and not any(warehouse.ON_LOOP)


# ---------------------------------------------------------------- budgets


def test_each_id_and_each_network_has_an_hourly_budget(site: Callable[..., Site]) -> None:
    s = site(privacy={"rate_per_hour": 2, "network_rate_per_hour": 3})
    first, second = s.browser(), s.browser()  # one network
    s.visitor(first)
    s.visitor(second)
    assert [first.get(PATH).status_code for _ in range(3)] == [200, 200, 429]
    limited = second.get(PATH)  # the network's third request was spent by the 429 above
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3600"
    elsewhere = s.browser(address="198.51.100.7")
    s.visitor(elsewhere)
    assert elsewhere.get(PATH).status_code == 200


def test_one_request_at_a_time_per_process(site: Callable[..., Site], warehouse: Any) -> None:
    s = site(sink=["python:privacy_site_store:Warehouse"])
    first, second = s.browser(), s.browser(address="198.51.100.7")
    s.visitor(first)
    s.visitor(second)
    warehouse.ENTERED.clear()
    warehouse.GATE.clear()  # the first request's read is slow
    slow: list[int] = []
    reader = threading.Thread(target=lambda: slow.append(first.get(PATH).status_code))
    reader.start()
    try:
        assert warehouse.ENTERED.wait(10)
        busy = second.get(PATH)
    finally:
        warehouse.GATE.set()
        reader.join(10)
    assert busy.status_code == 503 and busy.json()["error"] == "busy" and busy.headers["retry-after"] == "60"
    assert slow == [200]
    assert second.get(PATH).status_code == 200


def test_the_endpoint_can_be_switched_off_and_moved(site: Callable[..., Site]) -> None:
    off = site(privacy={"endpoint": None})
    assert PATH not in off.app.endpoints
    moved = site(privacy={"endpoint": "/account/my-data"})
    http = moved.browser()
    moved.visitor(http)
    assert http.get("/account/my-data").status_code == 200


def test_django_endpoint_headers_pass_the_central_check(make_core_config: Callable[..., dict[str, Any]]) -> None:
    from conftest import configure_django
    from django.test import override_settings

    configure_django()
    from personalize_mw.django import PersonalizeMiddleware as DjangoMiddleware

    with override_settings(PERSONALIZE_CONFIG=make_core_config()):
        middleware = DjangoMiddleware(lambda request: None)
    try:
        answer = EndpointResponse(303, [("location", "/ok"), ("x-bad", "a\r\nset-cookie: b=c")])
        response = middleware._django_response(answer)
        assert response["location"] == "/ok" and "x-bad" not in response
    finally:
        middleware.core.queue.close()
