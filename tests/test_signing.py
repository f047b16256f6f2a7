"""Signed tokens (visitor cookie, preview links): only an intact, canonical, current token of ours verifies."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from personalize_mw import PersonalizeMiddleware
from personalize_mw.core import signing
from personalize_mw.core.preview import PreviewCodec
from personalize_mw.core.signing import Signer, b64decode_canonical, b64encode
from personalize_mw.core.visitor import COOKIE_SALT, Profile, VisitorCodec

NOW = 1_790_000_000.0
OLD, NEW = "old-secret-key-0123456789abcdef", "new-secret-key-0123456789abcdef"


def test_the_newest_key_signs_and_every_key_verifies() -> None:
    before = Signer([OLD], "purpose").sign({"a": 1}, NOW)
    rotated = Signer([OLD, NEW], "purpose")
    assert rotated.verify(before, NOW) == {"a": 1}
    after = rotated.sign({"a": 2}, NOW)
    assert Signer([NEW], "purpose").verify(after, NOW) == {"a": 2}
    assert Signer([OLD], "purpose").verify(after, NOW) is None  # signed by the newest key, not the oldest


def test_a_key_per_purpose() -> None:
    token = Signer([NEW], "one").sign({"a": 1}, NOW)
    assert Signer([NEW], "two").verify(token, NOW) is None


def test_max_age_and_tokens_from_the_future() -> None:
    signer = Signer([NEW], "p")
    token = signer.sign({"a": 1}, NOW)
    assert signer.verify(token, NOW + 100, max_age_s=100) == {"a": 1}
    assert signer.verify(token, NOW + 101, max_age_s=100) is None
    assert signer.verify(signer.sign({"a": 1}, NOW + 3600), NOW) is None


def test_only_the_exact_token_verifies() -> None:
    signer = Signer([NEW], "p")
    token = signer.sign({"slot": "hero"}, NOW)
    head, _, signature = token.rpartition(".")
    # The last of 43 characters for 32 bytes has 2 spare bits: a character that
    # differs only there decodes (leniently) to the same bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(signature[-1])
    twin = alphabet[(index & ~3) | ((index + 1) & 3)]
    assert base64.urlsafe_b64decode(signature[:-1] + twin + "=") == base64.urlsafe_b64decode(signature + "=")
    for forged in [token + "\r\nSet-Cookie: session=attacker-fixed", token + "=", token + "==", token + ".",
                   token + " ", " " + token, f"{head}.{signature[:-1]}{twin}", token.replace("2.", "3.", 1),
                   token[:-1], token.upper(), "", "2...", "2." + "A" * 10]:
        assert signer.verify(forged, NOW) is None, forged
    assert signer.verify(token, NOW) == {"slot": "hero"}


def test_canonical_base64() -> None:
    assert b64decode_canonical(b64encode(b"\x00\xff\x10")) == b"\x00\xff\x10"
    for text in ["AA==", "AB", "A", "A+", "A/", "AA\n", ""]:
        assert b64decode_canonical(text) is None, text


def test_a_cookie_signed_by_the_previous_version_is_read_once_and_comes_back_in_the_new_format() -> None:
    legacy = URLSafeTimedSerializer([NEW], salt=COOKIE_SALT, signer_kwargs={"digest_method": hashlib.sha1})
    value = legacy.dumps({"i": "visitor-1", "n": 4, "f": 1, "l": 2, "p": ["/a"], "g": []})
    codec = VisitorCodec([NEW], "pmw_id", 86400)
    profile = codec.load(value)
    assert profile is not None and (profile.visitor_id, profile.visits) == ("visitor-1", 4)
    fresh = codec.dump(profile, secure=False)
    assert fresh.startswith("2.") and codec.load(fresh) == profile


def test_the_codec_reads_the_clock_it_is_given() -> None:
    now = [NOW]
    codec = VisitorCodec([NEW], "pmw_id", 100, clock=lambda: now[0])
    value = codec.dump(Profile("v"), secure=False)
    now[0] += 101
    assert codec.load(value) is None


def test_bytes_after_a_preview_token_never_reach_a_response_header(tmp_path: Path) -> None:
    token = PreviewCodec([NEW]).make("hero", "b", None, 3600)

    async def page(request):  # type: ignore[no-untyped-def]
        return HTMLResponse("<!-- personalize:hero -->a<!-- /personalize:hero -->")

    config = {"secret_keys": [NEW], "sink": f"jsonl:{tmp_path / 't.jsonl'}",
              "slots": {"hero": {"rules": [{"if": {"query.never": "1"}, "variant": "b", "template": "B"}]}}}
    app = PersonalizeMiddleware(Starlette(routes=[Route("/", page)]), config=config)
    with TestClient(app) as client:
        good = client.get("/", params={"pmw_preview": token})
        assert good.text.endswith(">B<!-- /personalize:hero -->")
        assert f"pmw_preview={token};" in good.headers["set-cookie"]
        for tail in ["%0D%0ASet-Cookie:%20session=attacker-fixed", "%0d%0aX:%201", "%3D", "A", "%00"]:
            bad = client.get(f"/?pmw_preview={token}{tail}")
            assert bad.status_code == 200 and bad.text.endswith(">a<!-- /personalize:hero -->")
            assert "set-cookie" not in bad.headers and "session" not in str(bad.headers)


def test_a_header_value_with_cr_lf_nul_or_beyond_latin1_is_never_emitted() -> None:
    from personalize_mw.core.cookies import CookieSpec
    from personalize_mw.core.headers import edit_headers
    from personalize_mw.core.personalizer import Outcome

    outcome = Outcome(cookies=[CookieSpec("ok", "1", 60), CookieSpec("bad", "1\r\nX-Injected: 1", 60),
                               CookieSpec("nul", "a\x00b", 60)],
                      headers=[("x-personalize-debug", "fine"), ("x-personalize-debug", "snow ☃")])
    sent = edit_headers([("content-type", "text/html")], outcome, None)
    assert [v for n, v in sent if n == "set-cookie"] == ["ok=1; Max-Age=60; Path=/; SameSite=Lax; HttpOnly"]
    assert [v for n, v in sent if n == "x-personalize-debug"] == ["fine"]


@given(st.text(alphabet=st.sampled_from("a=; \r\n\x00\x7f\xe9\xff\u0100\u2603\U0001f600"), max_size=12)
       | st.text(max_size=40))
def test_the_header_check_lets_out_exactly_latin1_without_cr_lf_nul(value: str) -> None:
    from personalize_mw.core.headers import safe_header_value

    expected = all(c not in "\r\n\x00" and ord(c) <= 0xFF for c in value)
    assert safe_header_value("x-test", value) is expected


@pytest.mark.parametrize("key", [b"", b"k" * 32, b"x" * 64, b"y" * 65, bytes(range(200))])
@pytest.mark.parametrize("message", [b"", b"2.e30.AGkA", bytes(range(256)) * 3])
def test_the_keyed_digest_is_hmac_sha256(key: bytes, message: bytes) -> None:
    assert signing._Keyed(key).digest(message) == hmac.digest(key, message, "sha256")


def test_tokens_of_the_same_second_and_of_the_next_carry_their_own_signing_time() -> None:
    signer = Signer([NEW], "p")
    first, again, later = (signer.sign({"a": 1}, t) for t in (NOW, NOW + 0.9, NOW + 1))
    assert first == again  # the same second: the same token
    assert later != first
    assert signer.verify(later, NOW + 101, max_age_s=100) == {"a": 1}
    assert signer.verify(first, NOW + 101, max_age_s=100) is None
