"""User ids as records store them: as given, or keyed-hashed (the default).

``identity: {hash: true}`` stores ``HMAC-SHA256(K, user_id)`` as 64 hex
characters, where ``K = HMAC-SHA256(secret, "personalize_mw.identity.v1")``
and ``secret`` is ``identity.key`` if set, else the *oldest* of
``secret_keys``. The oldest key, because adding a key (rotation) must not
change the hashes, or a journey splits in two; retiring the oldest key does,
so pin ``identity.key`` if you rotate keys out. A keyed hash, not a bare
SHA-256: e-mail addresses and account numbers are easy to enumerate, and
without the key nobody can test a guess against the records.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config

_PURPOSE = b"personalize_mw.identity.v1"
MAX_USER_ID = 256  # characters; longer is a bug in the caller, not an id


def derive_identity_key(secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), _PURPOSE, hashlib.sha256).digest()


class UserIds:
    """Turns the user id a view passes into the one stored."""

    __slots__ = ("hashed", "_key")

    def __init__(self, secret_keys: Sequence[str], hashed: bool = True, key: str | None = None) -> None:
        self.hashed = hashed
        self._key = derive_identity_key(key if key is not None else secret_keys[0])

    @classmethod
    def of(cls, config: Config) -> UserIds:
        """The config's: what identify() stores, what forget and import-conversions match."""
        return cls(config.secret_keys, config.identity.hash, config.identity.key)

    def stored(self, user_id: str) -> str:
        if not self.hashed:
            return user_id
        return hmac.new(self._key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def check_user_id(user_id: object) -> str:
    """A user id as a non-empty string; ints (database keys) are accepted as their decimal form."""
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    if not isinstance(user_id, str):
        raise TypeError(f"user_id must be a str or an int, not {type(user_id).__name__}")
    if not user_id or len(user_id) > MAX_USER_ID:
        raise ValueError(f"user_id must have 1 to {MAX_USER_ID} characters")
    user_id.encode("utf-8")  # a lone surrogate raises here (UnicodeEncodeError), not in the sink
    return user_id
