"""Signed, timestamped tokens for the visitor cookie and preview links.

    2.<payload>.<issued>.<signature>

``payload`` is the JSON value, ``issued`` the signing time in whole seconds
(5 bytes, big-endian) and ``signature`` HMAC-SHA256 over everything before it,
each in unpadded URL-safe base64. The properties are itsdangerous' (the
library this replaced on the request path; docs/architecture.md says why):

- a key per purpose: each secret is turned into a signing key with
  HMAC-SHA256(secret, "personalize_mw:" + salt), once, at start-up;
- key rotation: secrets are listed oldest -> newest, the newest signs, every
  one verifies (compared in constant time);
- ``max_age`` on every load, and a token from the future is refused;
- JSON only (never pickle), read from the verified payload only;
- and stricter: a token must be exactly canonical. No padding, nothing but
  the base64url alphabet, no spare bits set in the last character, nothing
  after the signature: a token that verifies is byte for byte the one that was
  issued, so it is safe to echo (the preview cookie) and cannot be made to
  carry anything else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any

import msgspec

VERSION = "2"
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")
_ISSUED_BYTES = 5  # seconds since 1970 until the year 36812
_FUTURE_SKEW_S = 300  # clocks of several servers disagree a little
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


# binascii directly: base64's urlsafe wrappers cost more than the conversion for a cookie's bytes.
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")  # bytes: str.translate looks every character up in a dict


def b64encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Unpadded URL-safe base64 of a verified token (its alphabet already checked by the signature)."""
    return binascii.a2b_base64(text.encode("ascii").translate(_FROM_URLSAFE) + b"=" * (-len(text) % 4))


def b64decode_canonical(text: str) -> bytes | None:
    """The bytes of unpadded URL-safe base64, or None unless ``text`` is exactly how they encode."""
    if not _ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        return None
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return raw if b64encode(raw) == text else None  # spare bits set: another string, same bytes


_BLOCK = 64  # SHA-256's block size
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class _Keyed:
    """HMAC-SHA256 under one key, its padded key blocks hashed once (RFC 2104).

    hmac.digest() looks the digest up and hashes both key blocks on every call,
    which cost about as much again as the message's own hashing for a cookie.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:  # never for our derived keys (32 bytes); RFC 2104 hashes a longer key first
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class Signer:
    """Signs JSON values with the newest key; verifies with any of them.

    ``remember`` > 0 keeps that many tokens this signer issued, each with its
    signing time and JSON payload: the same string coming back (the cookie set on
    the previous response) skips the HMAC and the base64 but not the time checks.
    A token is kept only after this signer computed its HMAC with its own key, so
    a hit is exactly as authentic as a verify (docs/architecture.md).
    """

    def __init__(self, secret_keys: Sequence[str], salt: str, remember: int = 0) -> None:
        if not secret_keys:
            raise ValueError("at least one secret key is needed")
        label = f"personalize_mw:{salt}".encode()
        keys = [hmac.digest(key.encode("utf-8"), label, "sha256") for key in secret_keys]
        self._signing_key = _Keyed(keys[-1])
        self._keys = [_Keyed(key) for key in keys[::-1]]  # newest first: most tokens were signed by it
        self._remember = remember
        self._issued: dict[str, tuple[int, bytes]] = {}  # token -> (signing time, JSON payload), oldest first
        self._second = (-1, "")  # the last signing second and its base64, swapped as one tuple (threads)

    def sign(self, value: Any, now: float) -> str:
        issued = int(now)
        second, issued_b64 = self._second
        if second != issued:  # most tokens of a second are signed in the same second as the one before
            issued_b64 = b64encode(issued.to_bytes(_ISSUED_BYTES, "big"))
            self._second = (issued, issued_b64)
        payload = _encoder.encode(value)
        body = f"{VERSION}.{b64encode(payload)}.{issued_b64}"
        token = f"{body}.{b64encode(self._signing_key.digest(body.encode('ascii')))}"
        if self._remember:
            kept = self._issued
            if len(kept) >= self._remember:
                try:  # FIFO; another thread may be evicting the same oldest entry
                    del kept[next(iter(kept))]
                except (KeyError, RuntimeError, StopIteration):
                    pass
            kept[token] = (issued, payload)
        return token

    def verify(self, token: str, now: float, max_age_s: float | None = None,
               decoder: msgspec.json.Decoder[Any] = _decoder) -> Any:
        """The value, or None for anything but an intact, current token of ours.

        ``decoder`` reads the verified payload: a typed one (the visitor's profile)
        gives None for a payload of another shape as well.
        """
        known = self._issued.get(token) if self._remember else None  # issued here, byte for byte
        if known is None:
            known = self._verified(token)
            if known is None:
                return None
        issued, payload = known
        if issued > now + _FUTURE_SKEW_S or (max_age_s is not None and now - issued > max_age_s):
            return None
        try:
            return decoder.decode(payload)
        except (msgspec.DecodeError, ValueError):  # ValidationError is a DecodeError
            return None

    def _verified(self, token: str) -> tuple[int, bytes] | None:
        """(signing time, JSON payload) of a token signed by one of our keys, else None."""
        if not token.isascii():
            return None
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != VERSION:
            return None
        body = token[: len(token) - len(parts[3]) - 1].encode("ascii")
        # The signature is compared as text: only the exact characters we issue
        # match, which is what makes the whole token canonical (we sign canonical bodies).
        given = parts[3]
        for key in self._keys:  # a loop, not any() over a generator: most tokens match the first key
            if hmac.compare_digest(b64encode(key.digest(body)), given):
                break
        else:
            return None
        try:
            return int.from_bytes(_b64decode(parts[2]), "big"), _b64decode(parts[1])
        except ValueError:  # binascii.Error
            return None


def is_token(value: str) -> bool:
    """Does ``value`` have the shape of one of our tokens (not whether it verifies)?"""
    return value.startswith(VERSION + ".")
