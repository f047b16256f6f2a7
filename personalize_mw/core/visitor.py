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
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadData, URLSafeTimedSerializer

from .cookies import HOST_PREFIX
from .signing import Signer, is_token

COOKIE_SALT = "personalize_mw.visitor.v1"
MAX_COOKIE_BYTES = 4096  # name + value, what every browser keeps


class _CompactJSON:
    """JSON with no spaces: every byte counts in a cookie."""

    @staticmethod
    def loads(payload: str | bytes) -> Any:
        return json.loads(payload)

    @staticmethod
    def dumps(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)


def _all_type(values: Any, kind: type) -> bool:
    """Every value exactly of ``kind`` (bool is not an int here); the loop runs in C."""
    return set(map(type, values)) <= {kind}


@dataclass(slots=True)
class Profile:
    """What the cookie remembers. Short JSON keys keep it small."""

    visitor_id: str
    visits: int = 0
    first_seen: int = 0
    last_seen: int = 0
    paths: list[str] = field(default_factory=list)  # oldest first, last N page views
    goals: list[str] = field(default_factory=list)
    assignments: dict[str, str] = field(default_factory=dict)  # slot/experiment -> arm
    session_id: str | None = None
    session_campaign: str | None = None
    session_channel: str | None = None
    session_goals: list[str] = field(default_factory=list)
    account: str | None = None  # identify()'s account as stored (hashed): unit: account assigns by it
    # The keyed hash of the user id identify() linked, kept only for an enricher asking a CRM by it.
    user: str | None = None

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
        """A profile from decoded JSON, or None if the shape is wrong."""
        if not isinstance(payload, dict):
            return None
        try:
            visitor_id = payload["i"]
            visits, first, last = payload.get("n", 0), payload.get("f", 0), payload.get("l", 0)
            paths, goals = payload.get("p", []), payload.get("g", [])
            assignments = payload.get("a", {})
            session_id, campaign, channel = payload.get("s"), payload.get("sc"), payload.get("sh")
            session_goals = payload.get("sg", [])
            account = payload.get("ac")
            user = payload.get("u")
        except (KeyError, TypeError):
            return None
        ok = (
            isinstance(visitor_id, str) and 0 < len(visitor_id) <= 64
            and _all_type((visits, first, last), int) and min(visits, first, last) >= 0
            and isinstance(paths, list) and _all_type(paths, str)
            and isinstance(goals, list) and _all_type(goals, str)
            and isinstance(session_goals, list) and _all_type(session_goals, str)
            and isinstance(assignments, dict) and _all_type(assignments, str)
            and _all_type(assignments.values(), str)
            and (session_id is None or isinstance(session_id, str))
            and (campaign is None or isinstance(campaign, str))
            and (channel is None or isinstance(channel, str))
            and (account is None or (isinstance(account, str) and 0 < len(account) <= 256))
            and (user is None or (isinstance(user, str) and 0 < len(user) <= 128))
        )
        if not ok:
            return None
        return cls(visitor_id, visits, first, last, paths, goals, assignments,
                   session_id, campaign, channel, session_goals, account, user)

    def days_since_first_visit(self, now: float) -> float:
        return max(0.0, (now - self.first_seen) / 86400.0) if self.first_seen else 0.0


def new_id() -> str:
    """128 random bits, URL-safe: an identifier, never derived from the person."""
    return secrets.token_urlsafe(16)


class VisitorCodec:
    """Signs profiles into cookie values and reads them back."""

    def __init__(self, secret_keys: Sequence[str], cookie_name: str, max_age_s: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._signer = Signer(secret_keys, COOKIE_SALT)
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
            return Profile.from_payload(self._signer.verify(value, self._clock(), self.max_age_s))
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
