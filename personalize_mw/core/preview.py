"""Preview links: a signed, expiring token that forces a variant in one browser.

``personalize-mw preview-link`` signs ``{slot, variant | segment, expiry}``
with the site's newest secret key under a salt of its own (a visitor cookie
can never pass for a preview token, nor the reverse). The link carries it as
``?pmw_preview=TOKEN``; the middleware then sets it as the ``pmw_preview``
cookie (until the token expires) so the next pages keep the preview. A
previewing request records no touchpoints and gets the debug header.

Only a canonical token verifies (:mod:`.signing`): the one copied into the
cookie is byte for byte the one that was issued, base64url and dots only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .signing import Signer

PREVIEW_SALT = "personalize_mw.preview.v1"
PARAM = "pmw_preview"
COOKIE = "pmw_preview"
MAX_TTL = 7 * 86400  # a preview link is for a review, not a permanent backdoor
_MAX_TOKEN = 1024


@dataclass(frozen=True, slots=True)
class Preview:
    slot: str | None  # None: every slot (a segment preview)
    variant: str | None
    segment: str | None
    expires: int


class PreviewCodec:
    def __init__(self, secret_keys: Sequence[str]) -> None:
        self._signer = Signer(secret_keys, PREVIEW_SALT)  # the newest key signs, all verify

    def make(self, slot: str | None, variant: str | None, segment: str | None, ttl_s: int,
             now: float | None = None) -> str:
        if (variant is None) == (segment is None):
            raise ValueError("a preview forces either a variant or a segment")
        if variant is not None and slot is None:
            raise ValueError("a variant preview needs its slot")
        ttl = max(1, min(int(ttl_s), MAX_TTL))
        issued = int(time.time() if now is None else now)
        return self._signer.sign({"s": slot, "v": variant, "g": segment, "e": issued + ttl}, issued)

    def load(self, token: str | None, now: float) -> Preview | None:
        """The preview, or None for a missing, tampered, malformed or expired token."""
        if not token or len(token) > _MAX_TOKEN:
            return None
        data: Any = self._signer.verify(token, now)
        if not isinstance(data, dict):
            return None
        expires, slot, variant, segment = data.get("e"), data.get("s"), data.get("v"), data.get("g")
        if not isinstance(expires, int) or expires <= now or expires > now + MAX_TTL:
            return None
        if not all(v is None or isinstance(v, str) for v in (slot, variant, segment)):
            return None
        if (variant is None) == (segment is None):
            return None
        return Preview(slot, variant, segment, expires)
