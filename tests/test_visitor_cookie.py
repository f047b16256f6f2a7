"""The signed visitor cookie: round trip, every way a cookie can be bad, key rotation, size."""

from __future__ import annotations

import random
import string
import time
from pathlib import Path
from typing import Any, Callable

import msgspec
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from personalize_mw.config import load_config
from personalize_mw.core import signing
from personalize_mw.core.context import RequestContext
from personalize_mw.core.personalizer import Personalizer
from personalize_mw.core.signing import Signer
from personalize_mw.core.visitor import COOKIE_SALT, MAX_COOKIE_BYTES, Profile, VisitorCodec, new_id

OLD = "old-key-0123456789abcdef"
NEW = "new-key-0123456789abcdef"
DAY = 86400


def codec(keys: list[str], max_age: int = 30 * DAY) -> VisitorCodec:
    return VisitorCodec(keys, "pmw_id", max_age)


def sign(payload: Any, keys: list[str], timestamp: int | None = None) -> str:
    """A cookie value signed like ours (same salt), optionally dated ``timestamp``."""

    class DatedSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return timestamp if timestamp is not None else super().get_timestamp()

    return URLSafeTimedSerializer(keys, salt=COOKIE_SALT, signer=DatedSigner).dumps(payload)


def sample() -> Profile:
    return Profile(new_id(), visits=3, first_seen=1_700_000_000, last_seen=1_700_100_000,
                   paths=["/", "/pricing"], goals=["signup"], assignments={"hero": "treatment"},
                   session_id="s1", session_campaign="spring", session_channel="email",
                   session_goals=["signup"])


def incompressible(rng: random.Random, n: int) -> str:
    # itsdangerous zlib-compresses payloads, so repetitive strings would fit anyway.
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def test_round_trip_keeps_every_field() -> None:
    c = codec([NEW])
    profile = sample()
    assert c.load(c.dump(profile, secure=False)) == profile


def test_round_trip_of_a_fresh_profile() -> None:
    c = codec([NEW])
    profile = Profile(new_id(), first_seen=int(time.time()))
    assert c.load(c.dump(profile, secure=True)) == profile


@pytest.mark.parametrize("value", [None, "", "garbage", "a.b.c", "e30.AAAA.BBBB", "x" * 5000])
def test_missing_or_garbage_is_a_new_visitor(value: str | None) -> None:
    assert codec([NEW]).load(value) is None


def test_tampered_value_is_rejected() -> None:
    c = codec([NEW])
    value = c.dump(sample(), secure=False)
    payload, ts, sig = value.rsplit(".", 2)
    # Flip the FIRST character: the last one of a base64 signature partly holds
    # padding bits, so changing it can decode to the very same signature.
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    assert c.load(f"{payload}.{ts}.{flipped}") is None
    # Another payload with the original signature.
    other = sign({"i": "someone-else"}, ["some-other-key-0123456789"]).rsplit(".", 2)[0]
    assert c.load(f"{other}.{ts}.{sig}") is None
    assert c.load(value[:-1]) is None
    assert c.load(value) is not None  # the untouched value still loads


def test_other_salt_is_rejected() -> None:
    value = URLSafeTimedSerializer([NEW], salt="another.purpose").dumps({"i": "abc"})
    assert codec([NEW]).load(value) is None


def test_expired_cookie_is_rejected() -> None:
    c = codec([NEW], max_age=30 * DAY)
    payload = sample().to_payload()
    assert c.load(sign(payload, [NEW], timestamp=int(time.time()) - 31 * DAY)) is None
    assert c.load(sign(payload, [NEW], timestamp=int(time.time()) - 29 * DAY)) is not None


def test_retired_key_is_rejected() -> None:
    value = codec([OLD]).dump(sample(), secure=False)
    assert codec([NEW]).load(value) is None


def test_rotation_old_key_verifies_newest_signs() -> None:
    profile = sample()
    old_cookie = codec([OLD]).dump(profile, secure=False)
    rotated = codec([OLD, NEW])
    assert rotated.load(old_cookie) == profile  # old key still verifies
    new_cookie = rotated.dump(profile, secure=False)
    assert codec([NEW]).load(new_cookie) == profile  # signed with the newest
    assert codec([OLD]).load(new_cookie) is None  # not with the old one


WRONG_SHAPES = [
    "just a string",
    ["i", "abc"],
    42,
    None,
    {},
    {"i": ""},
    {"i": 5},
    {"i": "x" * 65},
    {"i": "abc", "n": -1},
    {"i": "abc", "n": True},
    {"i": "abc", "n": "3"},
    {"i": "abc", "n": 1.5},
    {"i": "abc", "f": None},
    {"i": "abc", "p": "/pricing"},
    {"i": "abc", "p": ["/", 3]},
    {"i": "abc", "g": {"signup": 1}},
    {"i": "abc", "a": ["hero"]},
    {"i": "abc", "a": {"hero": 1}},
    {"i": "abc", "s": 7},
    {"i": "abc", "sc": ["spring"]},
    {"i": "abc", "sh": 1},
    {"i": "abc", "sg": "signup"},
    {"i": "abc", "ac": ""},
    {"i": "abc", "ac": "a" * 257},
    {"i": "abc", "u": ""},
    {"i": "abc", "u": "u" * 129},
    {"i": "abc", "a": {"hero": None}},
]


@pytest.mark.parametrize("payload", WRONG_SHAPES)
def test_wrong_payload_shapes_are_a_new_visitor(payload: Any) -> None:
    assert codec([NEW]).load(sign(payload, [NEW])) is None  # a cookie of 0.1 (itsdangerous)


@pytest.mark.parametrize("payload", WRONG_SHAPES)
def test_wrong_payload_shapes_in_our_own_token_are_a_new_visitor(payload: Any) -> None:
    token = Signer([NEW], COOKIE_SALT).sign(payload, time.time())  # verifies: only its payload is wrong
    assert Signer([NEW], COOKIE_SALT).verify(token, time.time()) == payload
    assert codec([NEW]).load(token) is None


def test_our_own_token_of_a_profile_decodes_with_its_defaults_and_unknown_keys_ignored() -> None:
    now = time.time()
    assert codec([NEW]).load(Signer([NEW], COOKIE_SALT).sign({"i": "abc", "zz": [1]}, now)) == Profile("abc")
    full = sample()
    assert codec([NEW]).load(Signer([NEW], COOKIE_SALT).sign(full.to_payload(), now)) == full


def test_minimal_payload_takes_defaults() -> None:
    profile = codec([NEW]).load(sign({"i": "abc"}, [NEW]))
    assert profile == Profile("abc")


@pytest.mark.parametrize("secure", [False, True])
def test_huge_history_is_trimmed_oldest_first_under_4096_bytes(secure: bool) -> None:
    c = codec([NEW])
    rng = random.Random(1)
    paths = [f"/p{i:03d}/" + incompressible(rng, 190) for i in range(200)]
    profile = Profile(new_id(), visits=1, paths=list(paths), goals=["signup"])
    value = c.dump(profile, secure=secure)
    assert len(c.name_for(secure)) + 1 + len(value) <= MAX_COOKIE_BYTES
    loaded = c.load(value)
    assert loaded is not None
    assert 0 < len(loaded.paths) < len(paths)
    assert loaded.paths == paths[-len(loaded.paths):]  # the newest survive, in order
    assert loaded.goals == ["signup"]  # paths go before goals


def test_huge_goals_are_trimmed_after_paths() -> None:
    c = codec([NEW])
    rng = random.Random(2)
    goals = [f"goal-{i:04d}-" + incompressible(rng, 60) for i in range(200)]
    profile = Profile(new_id(), paths=["/a"], goals=list(goals))
    value = c.dump(profile, secure=False)
    assert len("pmw_id=") + len(value) <= MAX_COOKIE_BYTES
    loaded = c.load(value)
    assert loaded is not None and loaded.paths == []
    assert loaded.goals == goals[-len(loaded.goals):]


def test_small_profile_is_not_trimmed() -> None:
    profile = sample()
    c = codec([NEW])
    c.dump(profile, secure=False)
    assert profile.paths == ["/", "/pricing"]


def test_host_prefix_on_secure() -> None:
    c = codec([NEW])
    assert c.name_for(True) == "__Host-pmw_id"
    assert c.name_for(False) == "pmw_id"


def _ctx(scheme: str, cookie: str) -> RequestContext:
    return RequestContext("GET", scheme, "example.com", "/", "", {"cookie": cookie, "user-agent": "Mozilla/5.0"})


def test_personalizer_sets_host_prefixed_cookie_on_https(make_core_config: Callable[..., dict]) -> None:
    core = Personalizer(load_config(make_core_config()))
    try:
        consent = "pmw_consent=analytics=1&personalization=1&advertising=0"
        secure = core.visit(_ctx("https", consent), b"<p>hi</p>", time.time())
        [cookie] = secure.cookies
        header = cookie.header_value()
        assert header.startswith("__Host-pmw_id=")
        for attribute in ("Path=/", "Secure", "HttpOnly", "SameSite=Lax", f"Max-Age={395 * DAY}"):
            assert attribute in header.split("; ")
        assert "Domain" not in header

        plain = core.visit(_ctx("http", consent), b"<p>hi</p>", time.time())
        header = plain.cookies[0].header_value()
        assert header.startswith("pmw_id=") and "Secure" not in header.split("; ")

        # The https cookie identifies the visitor on the next request.
        value = secure.cookies[0].value
        again = core.visit(_ctx("https", f"{consent}; __Host-pmw_id={value}"), b"<p>hi</p>", time.time())
        first = core.codec.load(value)
        second = core.codec.load(again.cookies[0].value)
        assert first is not None and second is not None
        assert second.visitor_id == first.visitor_id
        assert second.paths == ["/", "/"]
    finally:
        core.queue.close()


def test_personalizer_treats_bad_cookie_as_new_visitor(make_core_config: Callable[..., dict]) -> None:
    core = Personalizer(load_config(make_core_config()))
    try:
        consent = "pmw_consent=analytics=1&personalization=1&advertising=0"
        forged = sign({"i": "chosen-by-attacker"}, ["not-our-key-0123456789"])
        outcome = core.visit(_ctx("http", f"{consent}; pmw_id={forged}"), b"", time.time())
        profile = core.codec.load(outcome.cookies[0].value)
        assert profile is not None and profile.visitor_id != "chosen-by-attacker"
        assert profile.visits == 1
    finally:
        core.queue.close()


def test_sink_path_fixture_is_per_test(tmp_path: Path, make_core_config: Callable[..., dict]) -> None:
    assert make_core_config()["sink"] == f"jsonl:{tmp_path / 'touchpoints.jsonl'}"


# ---------------------------------------------------------------- the cookies a codec signed itself

def _fixed() -> Profile:
    return msgspec.structs.replace(sample(), visitor_id="a-fixed-visitor-id")


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _kept(keys: list[str], max_age: int = 30 * DAY) -> tuple[VisitorCodec, _Clock]:
    clock = _Clock(1_790_000_000.0)
    return VisitorCodec(keys, "pmw_id", max_age, clock=clock), clock


def test_a_cookie_read_back_by_the_codec_that_signed_it_is_read_without_an_hmac(
        monkeypatch: pytest.MonkeyPatch) -> None:
    c, _clock = _kept([NEW])
    value = c.dump(_fixed(), secure=False)
    fresh = VisitorCodec([NEW], "pmw_id", 30 * DAY, clock=_clock)  # same keys, nothing remembered
    monkeypatch.setattr(signing._Keyed, "digest", lambda self, message: b"\0" * 32)  # any HMAC now fails
    assert c.load(value) == _fixed()
    assert fresh.load(value) is None


def test_a_remembered_cookie_is_still_refused_once_expired_or_from_the_future() -> None:
    c, clock = _kept([NEW], max_age=DAY)
    signed_at = clock.now
    value = c.dump(_fixed(), secure=False)
    clock.now = signed_at + DAY
    assert c.load(value) == _fixed()
    clock.now = signed_at + DAY + 1
    assert c.load(value) is None
    clock.now = signed_at + 3600  # signed an hour "later" than the reader's clock
    future = c.dump(_fixed(), secure=False)
    clock.now = signed_at
    assert c.load(future) is None


def test_a_tampered_copy_of_a_remembered_cookie_is_refused() -> None:
    c, _clock = _kept([NEW])
    value = c.dump(_fixed(), secure=False)
    head, _, sig = value.rpartition(".")
    for forged in [f"{head}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}", value[:-1], value + "A", " " + value,
                   value.replace(".", ".A", 1)]:
        assert c.load(forged) is None
    assert c.load(value) == _fixed()


def test_a_remembered_cookie_of_a_retired_key_is_refused_by_a_codec_without_it() -> None:
    old, _clock = _kept([OLD])
    value = old.dump(_fixed(), secure=False)
    assert old.load(value) == _fixed()  # remembered by the codec that signed it
    assert VisitorCodec([NEW], "pmw_id", 30 * DAY, clock=_clock).load(value) is None
    assert VisitorCodec([OLD, NEW], "pmw_id", 30 * DAY, clock=_clock).load(value) == _fixed()


def test_a_profile_read_from_a_remembered_cookie_is_a_copy() -> None:
    c, _clock = _kept([NEW])
    profile = _fixed()
    value = c.dump(profile, secure=False)
    profile.paths.append("/after-signing")  # the profile dump() was given changes: not the cookie
    first = c.load(value)
    assert first == _fixed()
    assert first is not None
    first.paths.append("/changed")
    first.assignments["cta"] = "changed"
    first.visits += 1
    assert c.load(value) == _fixed()


def test_remembered_tokens_are_bounded() -> None:
    signer = Signer([NEW], COOKIE_SALT, remember=3)
    tokens = [signer.sign({"i": str(n)}, 1_790_000_000.0) for n in range(5)]
    assert len(signer._issued) == 3
    assert [signer.verify(t, 1_790_000_000.0) for t in tokens] == [{"i": str(n)} for n in range(5)]


def test_set_cookie_values_are_written_attribute_by_attribute() -> None:
    from personalize_mw.core.cookies import CookieSpec

    assert (CookieSpec("__Host-pmw_id", "v.1", 60, secure=True).header_value()
            == "__Host-pmw_id=v.1; Max-Age=60; Path=/; SameSite=Lax; Secure; HttpOnly")
    assert (CookieSpec("pmw_consent", "", 0, http_only=False, same_site="Strict").header_value()
            == "pmw_consent=; Max-Age=0; Path=/; SameSite=Strict")
    spec = CookieSpec("a", "b", 1)
    with pytest.raises(AttributeError):  # immutable: an Outcome's cookies are not edited in place
        spec.value = "c"  # type: ignore[misc]
