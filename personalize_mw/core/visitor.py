"""The visitor profile and its signed cookie.

The cookie holds a random id and a compact profile, signed by
:mod:`.signing`: JSON only, a key of its own, max_age checked on every load,
keys ordered oldest -> newest (the newest signs, all verify), canonical tokens
only. Identity is read from the verified payload only. Anything wrong with the
cookie means a new visitor. Cookies signed by 0.1 (itsdangerous) are still
read, once, and come back in the new format.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import msgspec
from itsdangerous import BadData, URLSafeTimedSerializer
from msgspec import Meta

from .cookies import HOST_PREFIX
from .signing import Signer, is_token

COOKIE_SALT = "personalize_mw.visitor.v1"
MAX_COOKIE_BYTES = 4096  # name + value, what every browser keeps
# Cookies this process signed, kept to be read back on the visitor's next page without an HMAC:
# about 1 KB each for a typical profile, at most 8 KB.
_REMEMBERED = 1024


class _CompactJSON:
    """JSON with no spaces: every byte counts in a cookie."""

    @staticmethod
    def loads(payload: str | bytes) -> Any:
        return json.loads(payload)

    @staticmethod
    def dumps(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)


_Id = Annotated[str, Meta(min_length=1, max_length=64)]
_Count = Annotated[int, Meta(ge=0)]  # JSON integers only: msgspec refuses true, 1.5 and "3" for an int


class Profile(msgspec.Struct):
    """What the cookie remembers. Short JSON keys keep it small.

    A msgspec Struct so that a verified cookie decodes straight into it, every
    field's type and bound checked in C; a cookie of 0.1 gets the same checks (:meth:`from_payload`).
    """

    visitor_id: _Id = msgspec.field(name="i")
    visits: _Count = msgspec.field(default=0, name="n")
    first_seen: _Count = msgspec.field(default=0, name="f")
    last_seen: _Count = msgspec.field(default=0, name="l")
    paths: list[str] = msgspec.field(default_factory=list, name="p")  # oldest first, last N page views
    goals: list[str] = msgspec.field(default_factory=list, name="g")
    assignments: dict[str, str] = msgspec.field(default_factory=dict, name="a")  # slot/experiment -> arm
    session_id: str | None = msgspec.field(default=None, name="s")
    session_campaign: str | None = msgspec.field(default=None, name="sc")
    session_channel: str | None = msgspec.field(default=None, name="sh")
    session_goals: list[str] = msgspec.field(default_factory=list, name="sg")
    # identify()'s account as stored (hashed): unit: account assigns by it
    account: Annotated[str, Meta(min_length=1, max_length=256)] | None = msgspec.field(default=None, name="ac")
    # The keyed hash of the user id identify() linked, kept only for an enricher asking a CRM by it.
    user: Annotated[str, Meta(min_length=1, max_length=128)] | None = msgspec.field(default=None, name="u")

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"i": self.visitor_id, "n": self.visits, "f": self.first_seen,
                                   "l": self.last_seen, "p": self.paths, "g": self.goals}
        if self.assignments:
            payload["a"] = self.assignments
        if self.session_id:
            payload["s"] = self.session_id
            payload["sc"] = self.session_campaign
            payload["sh"] = self.session_channel
            payload["sg"] = self.session_goals
        if self.account:
            payload["ac"] = self.account
        if self.user:
            payload["u"] = self.user
        return payload

    @classmethod
    def from_payload(cls, payload: Any) -> Profile | None:
        """A profile from decoded JSON (a cookie of 0.1), or None if the shape is wrong."""
        try:
            return msgspec.convert(payload, cls)  # the checks of a token's typed decoding, on a dict
        except msgspec.ValidationError:
            return None

    def days_since_first_visit(self, now: float) -> float:
        return max(0.0, (now - self.first_seen) / 86400.0) if self.first_seen else 0.0


_PROFILE = msgspec.json.Decoder(Profile)  # a payload of the wrong shape fails to decode: a new visitor


def new_id() -> str:
    """128 random bits, URL-safe: an identifier, never derived from the person."""
    return secrets.token_urlsafe(16)


class VisitorCodec:
    """Signs profiles into cookie values and reads them back."""

    def __init__(self, secret_keys: Sequence[str], cookie_name: str, max_age_s: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._signer = Signer(secret_keys, COOKIE_SALT, remember=_REMEMBERED)
        self._clock = clock
        # Reads the cookies 0.1 signed with itsdangerous (keys the same way round); never writes.
        self._legacy = URLSafeTimedSerializer(
            list(secret_keys), salt=COOKIE_SALT, serializer=_CompactJSON,
            # hashlib's own sha1 lets hmac use OpenSSL's HMAC; itsdangerous' lazy
            # default wrapper sends it down the slow pure-Python path.
            signer_kwargs={"digest_method": hashlib.sha1},
        )
        self.cookie_name = cookie_name
        self.max_age_s = max_age_s

    def name_for(self, secure: bool) -> str:
        # __Host- binds the cookie to this exact host, https and Path=/ only.
        return HOST_PREFIX + self.cookie_name if secure else self.cookie_name

    def load(self, value: str | None) -> Profile | None:
        """The profile in a cookie value, or None for missing/tampered/expired/retired."""
        if not value or len(value) > MAX_COOKIE_BYTES:
            return None
        if is_token(value):
            found = self._signer.verify(value, self._clock(), self.max_age_s, _PROFILE)
            return found if type(found) is Profile else None
        try:
            payload = self._legacy.loads(value, max_age=self.max_age_s)
        except (BadData, ValueError, TypeError):
            return None
        return Profile.from_payload(payload)

    def dump(self, profile: Profile, secure: bool) -> str:
        """Sign the profile, trimming the oldest history until the cookie fits."""
        budget = MAX_COOKIE_BYTES - len(self.name_for(secure)) - 1
        now = self._clock()
        value = self._signer.sign(profile.to_payload(), now)
        while len(value) > budget:
            if profile.paths:
                del profile.paths[: max(1, len(profile.paths) // 4)]
            elif profile.goals:
                del profile.goals[0]
            elif profile.assignments:
                profile.assignments.pop(next(iter(profile.assignments)))
            elif profile.session_goals:
                del profile.session_goals[0]
            else:  # cannot happen with sane ids; never emit an oversized cookie
                raise ValueError("visitor cookie cannot be made small enough")
            value = self._signer.sign(profile.to_payload(), now)
        return value
