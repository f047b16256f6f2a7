"""The example site and its personalize.yaml, driven through Starlette's TestClient.

Each test runs the real site with the shipped rules; only the sink moves to
tmp_path, so nothing is written into the repository. Leaving the TestClient
block runs the ASGI lifespan shutdown, which flushes the sink.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from conftest import configure_django
from starlette.testclient import TestClient

import example_site
import personalize_mw
from example_site.app import create_app
from example_site.flask_app import create_app as create_flask_app
from example_site.pages import ROUTES
from personalize_mw import load_config

SITE = Path(example_site.__file__).resolve().parent
ORIGIN = {"origin": "http://testserver"}
DEFAULT_HERO = "<h1>Revenue analytics for B2B teams</h1>"
PRICING_HERO = "Picking a plan? Team is 49 € a month, all-in."
SIGNUP_CTA = "Start a free trial"
CUSTOMER_CTA = "Invite your team"
RELATED_BOX = "Readers of this post also read"


def site_yaml(tmp_path: Path) -> tuple[Path, Path]:
    """The shipped personalize.yaml with its sink in tmp_path: (config path, sink path)."""
    data = yaml.safe_load((SITE / "personalize.yaml").read_text(encoding="utf-8"))
    sink = tmp_path / "touchpoints.jsonl"
    data["sink"] = f"jsonl:{sink}"
    data["base_dir"] = str(SITE)  # template_file paths stay relative to example_site/
    path = tmp_path / "personalize.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path, sink


@pytest.fixture
def site(tmp_path: Path) -> tuple[TestClient, Path]:
    config, sink = site_yaml(tmp_path)
    return TestClient(create_app(config)), sink


def records(sink: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sink.read_text(encoding="utf-8").splitlines()]


def slot(html: str, name: str) -> str:
    found = re.search(rf"<!-- personalize:{name} -->(.*?)<!-- /personalize:{name} -->", html, re.S)
    assert found, f"slot {name} missing"
    return found.group(1)


def accept(client: TestClient, next_path: str = "/") -> None:
    response = client.post("/_personalize/consent", data={"choice": "accept_all", "next": next_path},
                           headers=ORIGIN, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == next_path


def test_shipped_config_loads_and_writes_into_the_git_ignored_data_folder() -> None:
    config = load_config(SITE / "personalize.yaml")
    assert config.resolve(config.sink.removeprefix("jsonl:")) == SITE / "data" / "touchpoints.jsonl"
    assert [rule.variant for rule in config.slots["hero"].rules][0] == "pricing"
    assert config.slots["cta"].rules[0].id == "cta-customer"


def test_demo_flow_pricing_twice_shows_the_pricing_hero_and_records_the_journey(site) -> None:
    client, sink = site
    with client:
        first = client.get("/")
        assert 'id="consent-banner"' in first.text
        assert DEFAULT_HERO in slot(first.text, "hero")
        assert "pmw_id" not in client.cookies

        accept(client)
        home = client.get("/")
        assert 'id="consent-banner"' not in home.text
        assert "pmw_id" in client.cookies
        client.get("/pricing")
        assert DEFAULT_HERO in slot(client.get("/").text, "hero")  # once is not enough

        client.get("/pricing")
        home = client.get("/")
        hero = slot(home.text, "hero")
        assert PRICING_HERO in hero and DEFAULT_HERO not in hero
        assert "private" in home.headers["cache-control"]
        assert "Cookie" in home.headers["vary"]

        thanks = client.post("/signup", data={"email": "ada@example.com", "company": "Ada Ltd", "plan": "team"})
        assert thanks.url.path == "/thanks"
        assert "Thanks for signing up!" in thanks.text

    lines = records(sink)
    assert lines[0]["type"] == "pageview" and lines[0]["visitor"] is None  # before consent
    identified = lines[1:]
    visitors = {r["visitor"] for r in identified}
    assert len(visitors) == 1 and None not in visitors
    assert [r["path"] for r in identified if r["type"] == "pageview"] == ["/", "/pricing", "/", "/pricing", "/",
                                                                         "/thanks"]
    exposures = [(r["path"], r["slot"], r["variant"], r["rule"]) for r in identified if r["type"] == "exposure"]
    assert ("/", "hero", "pricing", "hero-pricing") in exposures
    conversions = [r for r in identified if r["type"] == "conversion"]
    assert [(c["goal"], c["value"], c["path"]) for c in conversions] == [("signup", 150, "/thanks")]
    assert conversions[0]["consent"]["analytics"] is True


def test_reject_sets_no_id_cookie_and_records_carry_no_visitor(site) -> None:
    client, sink = site
    with client:
        response = client.post("/_personalize/consent", data={"choice": "reject_all", "next": "/pricing"},
                               headers=ORIGIN, follow_redirects=False)
        assert response.status_code == 303
        assert "pmw_id" not in client.cookies
        for _ in range(2):
            page = client.get("/pricing")
            assert "pmw_id=" not in page.headers.get("set-cookie", "")
        home = client.get("/")
        assert 'id="consent-banner"' not in home.text  # an answer, even "no", is remembered
        assert DEFAULT_HERO in slot(home.text, "hero")
        client.post("/signup", data={"email": "ada@example.com", "plan": "starter"})
        assert "pmw_id" not in client.cookies

    lines = records(sink)
    # No profile rule fired; only the thank-you page's request-only rule (cta-thanks).
    assert [(r["slot"], r["variant"], r["rule"]) for r in lines
            if r["type"] == "exposure" and r["arm"] != "unenrolled"] == [("cta", "customer", "cta-thanks")]
    # The bandit on /pricing is an experiment: visitors without an id are recorded as not enrolled.
    assert [(r["slot"], r["variant"], r["arm"]) for r in lines if r["arm"] == "unenrolled"] == [
        ("pricing_cta", None, "unenrolled")] * 2
    assert [r["goal"] for r in lines if r["type"] == "conversion"] == ["signup"]
    assert all(r["visitor"] is None and r["session"] is None for r in lines)
    assert all(r["consent"]["analytics"] is False for r in lines)


def test_signup_cta_is_never_shown_again_after_signup(site) -> None:
    client, sink = site
    phone = {"user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"}
    with client:
        accept(client)
        assert SIGNUP_CTA in slot(client.get("/").text, "cta")
        client.post("/signup", data={"email": "ada@example.com", "plan": "team"})
        client.get("/whitepaper/download")  # another goal with its own CTA rule below
        client.get("/pricing")
        client.get("/pricing")  # pricing read twice: still no "Picking a plan?" for a customer
        pages = ["/", "/blog/activation-metrics", "/thanks", "/?utm_source=linkedin&utm_campaign=spring",
                 "/blog/pricing-page-teardown"]
        for path in pages:
            for headers in ({}, phone):
                html = client.get(path, headers=headers).text
                cta = slot(html, "cta")
                assert SIGNUP_CTA not in cta and 'href="/signup"' not in cta, path
                assert CUSTOMER_CTA in cta, path
                if "personalize:hero" in html:  # never "Picking a plan?" to someone who picked one
                    assert PRICING_HERO not in slot(html, "hero") and "/signup" not in slot(html, "hero")
    exposures = {(r["slot"], r["variant"]) for r in records(sink) if r["type"] == "exposure"}
    # The campaign's hero is a request rule; the posts' box recommends reading, not a plan.
    assert exposures == {("cta", "customer"), ("hero", "linkedin"), ("related", "crowd")}


def test_request_rules_work_without_consent(site) -> None:
    client, sink = site
    with client:
        linkedin = client.get("/?utm_source=linkedin&utm_campaign=spring-launch").text
        assert "from our spring-launch campaign" in slot(linkedin, "hero")
        german = client.get("/", headers={"accept-language": "de-CH,de;q=0.9,en;q=0.5"}).text
        assert "Umsatzanalyse für B2B-Teams" in slot(german, "hero")
        partner = client.get("/?ref=partner-hubspot").text
        assert "Referred by our partner hubspot" in slot(partner, "hero")
        assert DEFAULT_HERO in slot(partner, "hero")  # the variant wraps the default
        escaped = client.get("/?ref=partner-<script>").text
        assert "partner &lt;script&gt;" in slot(escaped, "hero")
        post = client.get("/blog/activation-metrics").text
        assert "The numbers behind this post" in slot(post, "cta")
        assert "pmw_id" not in client.cookies
    lines = records(sink)
    assert all(r["visitor"] is None for r in lines)
    assert ("hero", "linkedin") in {(r["slot"], r["variant"]) for r in lines if r["type"] == "exposure"}
    assert lines[0]["channel"] == "social" and lines[0]["utm"]["campaign"] == "spring-launch"


def test_whitepaper_download_is_a_goal_and_changes_the_cta(site) -> None:
    client, sink = site
    with client:
        accept(client)
        assert "Download the report (PDF)" in client.get("/whitepaper").text
        download = client.get("/whitepaper/download")
        assert download.headers["content-type"] == "application/pdf"
        assert download.content.startswith(b"%PDF-1.4") and download.content.rstrip().endswith(b"%%EOF")
        assert "Book a call" in slot(client.get("/").text, "cta")
    conversions = [r for r in records(sink) if r["type"] == "conversion"]
    assert [(c["goal"], c["value"], c["path"]) for c in conversions] == [("whitepaper", 25, "/whitepaper/download")]
    assert conversions[0]["visitor"] is not None


def test_invalid_signup_is_not_a_conversion(site) -> None:
    client, sink = site
    with client:
        response = client.post("/signup", data={"email": "not-an-email", "plan": "team"})
        assert response.status_code == 400
        assert "Please enter your work email address." in response.text
        assert 'value="not-an-email"' in response.text
        assert client.get("/no-such-page").status_code == 404
    assert not sink.exists() or all(r["type"] != "conversion" for r in records(sink))




# ---------------------------------------------------------------- the same site under Starlette, Flask and Django

FRAMEWORKS = ("starlette", "flask", "django")
CSRF_FIELD = re.compile(r'<input type="hidden" name="csrfmiddlewaretoken" value="[^"]*">')  # Django's, on /signup


@dataclass
class Answer:
    status: int
    text: str
    headers: Mapping[str, str]


class SiteClient:
    """One framework's version of the site behind that framework's own test client, with one interface."""

    def __init__(self, framework: str, config: Path) -> None:
        self.framework = framework
        self.closed = False
        if framework == "starlette":
            self.client: Any = TestClient(create_app(config)).__enter__()  # the lifespan starts the sinks
            self.origin = "http://testserver"
        elif framework == "flask":
            self.client = create_flask_app(config).test_client()
            self.origin = "http://localhost"
        else:
            configure_django()
            from django.test import Client, override_settings

            from example_site.django_site import settings as demo
            self.settings = override_settings(ROOT_URLCONF=demo.ROOT_URLCONF, MIDDLEWARE=demo.MIDDLEWARE,
                                              TEMPLATES=demo.TEMPLATES, PERSONALIZE_CONFIG=str(config))
            self.settings.enable()
            self.client = Client()
            self.origin = "http://testserver"

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Answer:
        return self._answer(self.client.get(path, headers=headers or {}))

    def post(self, path: str, data: Mapping[str, str]) -> Answer:
        """A urlencoded form post from this site's origin, as a browser sends it; redirects not followed."""
        headers = {"origin": self.origin}
        if self.framework == "django":  # its client would send multipart
            return self._answer(self.client.post(path, urlencode(data), headers=headers,
                                                 content_type="application/x-www-form-urlencoded"))
        if self.framework == "starlette":  # its client follows redirects
            return self._answer(self.client.post(path, data=data, headers=headers, follow_redirects=False))
        return self._answer(self.client.post(path, data=data, headers=headers))

    def _answer(self, response: Any) -> Answer:
        body = response.content if self.framework == "django" else getattr(response, "data", None)
        text = response.text if body is None else body.decode("utf-8")
        return Answer(response.status_code, text, response.headers)

    def close(self) -> None:
        """Writes out the records; the fixture calls it again after a test that read the sink."""
        assert personalize_mw.flush(5.0)
        if self.closed:
            return
        self.closed = True
        if self.framework == "starlette":
            self.client.__exit__(None, None, None)
        elif self.framework == "django":
            self.settings.disable()


@pytest.fixture(params=FRAMEWORKS)
def framework_site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[SiteClient, Path]]:
    config, sink = site_yaml(tmp_path)
    client = SiteClient(request.param, config)
    try:
        yield client, sink
    finally:
        client.close()


def site_pages() -> list[str]:
    """A URL of every route (each post for /blog/<slug>), and one that does not exist."""
    paths = []
    for route in ROUTES:
        if "<slug>" in route.path:
            paths += [f"/blog/{post.slug}" for post in example_site.content.POSTS]
        elif route.path != "/whitepaper/download":
            paths.append(route.path)
    return [*paths, "/thanks?plan=team", "/no-such-page"]


def test_the_three_frameworks_serve_the_same_pages_with_the_banner(tmp_path: Path) -> None:
    config, _ = site_yaml(tmp_path)
    clients = [SiteClient(framework, config) for framework in FRAMEWORKS]
    try:
        for path in site_pages():
            answers = [client.get(path) for client in clients]
            starlette = answers[0]
            assert starlette.status == (404 if path == "/no-such-page" else 200), path
            assert 'id="consent-banner"' in starlette.text and '<nav><a href="/blog">' in starlette.text
            for client, answer in zip(clients[1:], answers[1:], strict=True):
                # Byte for byte the same HTML, but for Django's CSRF field in the sign-up form.
                assert (answer.status, CSRF_FIELD.sub("", answer.text)) == (starlette.status, starlette.text), \
                    (client.framework, path)
        for client in clients:  # every link of the nav and the page leads somewhere
            home = client.get("/").text
            for link in sorted(set(re.findall(r'href="(/[^"#]*)', home))):
                assert client.get(link).status == 200, (client.framework, link)
            download = client.get("/whitepaper/download")
            assert download.status == 200 and download.headers["content-type"] == "application/pdf"
            assert "benchmark-2025.pdf" in download.headers["content-disposition"]
    finally:
        for client in clients:
            client.close()


def test_personalization_fires_the_same_under_each_framework(framework_site) -> None:
    client, sink = framework_site
    assert 'id="consent-banner"' in client.get("/").text
    answer = client.post("/_personalize/consent", {"choice": "accept_all", "next": "/"})
    assert (answer.status, answer.headers["location"]) == (303, "/")
    home = client.get("/").text
    assert 'id="consent-banner"' not in home and DEFAULT_HERO in slot(home, "hero")
    related = slot(client.get("/blog/activation-metrics").text, "related")
    assert RELATED_BOX in related and 'href="/blog/activation-metrics"' not in related  # a cold start
    client.get("/pricing")
    client.get("/pricing")
    assert PRICING_HERO in slot(client.get("/").text, "hero")  # the pricing walk
    signup = client.post("/signup", {"email": "ada@example.com", "company": "Ada Ltd", "plan": "team"})
    assert (signup.status, signup.headers["location"]) == (303, "/thanks?plan=team")
    assert CUSTOMER_CTA in slot(client.get("/thanks?plan=team").text, "cta")
    home = client.get("/").text
    assert PRICING_HERO not in slot(home, "hero") and CUSTOMER_CTA in slot(home, "cta")
    client.close()
    lines = records(sink)
    exposures = [(r["path"], r["slot"], r["variant"]) for r in lines if r["type"] == "exposure"]
    assert ("/", "hero", "pricing") in exposures and ("/blog/activation-metrics", "related", "crowd") in exposures
    conversions = [(r["goal"], r["path"]) for r in lines if r["type"] == "conversion"]
    assert conversions == [("signup", "/thanks")]
    assert len({r["visitor"] for r in lines[1:]}) == 1 and lines[-1]["visitor"] is not None


def test_a_lone_first_visitor_sees_the_readers_also_read_box(site) -> None:
    client, sink = site
    with client:
        for accepted in (False, True):  # the most read posts need no profile: shown with or without consent
            if accepted:
                accept(client)
            related = slot(client.get("/blog/pricing-page-teardown").text, "related")
            assert RELATED_BOX in related
            shown = re.findall(r'<li><a href="([^"]+)"', related)
            assert shown == ["/blog/activation-metrics", "/blog/attribution-without-third-parties"]
        related = slot(client.get("/blog/activation-metrics").text, "related")
        assert re.findall(r'<li><a href="([^"]+)"', related) == ["/blog/attribution-without-third-parties"]


def test_the_django_settings_pass_djangos_own_checks() -> None:
    done = subprocess.run([sys.executable, str(SITE / "django_site" / "manage.py"), "check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout


# ---------------------------------------------------------------- what `make demo` installs and prints

ROOT = SITE.parent


def make_dry_run(target: str, venv: Path) -> str:
    done = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_demo_installs_the_demo_extras_only_and_make_test_the_test_stack(tmp_path: Path) -> None:
    venv = tmp_path / "venv"  # none yet: make would build it from scratch
    demo = make_dry_run("demo", venv)
    installs = [line for line in demo.splitlines() if "pip install" in line and " -e " in line]
    assert installs == [f"{venv}/bin/python -m pip install --quiet -e '.[demo,flask,django]'"]
    assert "uvicorn example_site.app:app" in demo
    test = make_dry_run("test", venv)
    assert f"{venv}/bin/python -m pip install --quiet -e '.[test,demo,flask,django]'" in test
    assert "-m example_site.flask_app" in make_dry_run("demo-flask", venv)
    assert "example_site/django_site/manage.py runserver" in make_dry_run("demo-django", venv)


def test_the_preview_link_command_make_demo_prints_shows_the_variant(tmp_path: Path) -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    guide = makefile[makefile.index("define GUIDE"):makefile.index("endef")]
    [command] = [line.strip() for line in guide.splitlines() if "personalize-mw preview-link" in line]
    bin_dir = Path(sys.executable).parent  # the venv running this test: .venv/bin under `make test`
    argv = command.replace("$(URL)", "http://testserver").replace(".venv/bin/", f"{bin_dir}/", 1).split()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip()
    assert link.startswith("http://testserver/?pmw_preview=")
    config, _ = site_yaml(tmp_path)
    with TestClient(create_app(config)) as client:
        assert PRICING_HERO in slot(client.get(link).text, "hero")  # no consent, no history: the preview
        client.cookies.clear()  # another browser
        assert DEFAULT_HERO in slot(client.get("/").text, "hero")


def test_the_home_page_greets_the_account_of_a_sales_link_under_each_framework(framework_site) -> None:
    client, sink = framework_site
    greeted = slot(client.get("/?account=acme").text, "hero")  # no consent needed: a request rule
    assert "<h1>Revenue analytics for Acme Corp</h1>" in greeted and DEFAULT_HERO not in greeted
    unknown = slot(client.get("/?account=initech").text, "hero")  # no merge field: the page's own headline
    assert DEFAULT_HERO in unknown and "Revenue analytics for </h1>" not in unknown
    client.close()
    assert not any("Acme" in json.dumps(r) for r in records(sink))  # merge fields are not recorded
