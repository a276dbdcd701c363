"""Standard Webhooks (1.0) signatures for deliveries (docs/contract.md §8), with hmac directly.

    webhook-signature: v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<raw body>")>

The secret is `whsec_<base64 of the key>` (padding optional, as the reference libraries accept).
A `Signer` keeps the decoded key out of its repr, and no error here ever contains the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Final

from service.errors import AsyncgateError

SECRET_PREFIX: Final = "whsec_"
#: Keys shorter than this start with a warning (the specification recommends 24 to 64 bytes); an
#: empty key is refused. The contract fixes only the form, so a short key a platform chose still works.
WEAK_KEY_BYTES: Final = 16


class WebhookSecretInvalid(AsyncgateError, ValueError):
    """ASYNCGATE_WEBHOOK_SECRET {problem} (expected whsec_ and the base64 of a key; 24 to 64 bytes recommended)"""

    def __init__(self, problem: str) -> None:
        super().__init__(problem=problem)


class Signer:
    """Signs deliveries with one key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not key:
            raise WebhookSecretInvalid("holds an empty key")
        self._key = key

    @property
    def weak(self) -> bool:
        """Is the key shorter than WEAK_KEY_BYTES?"""
        return len(self._key) < WEAK_KEY_BYTES

    @classmethod
    def from_secret(cls, secret: str) -> Signer:
        """Decode `whsec_<base64>`; WebhookSecretInvalid (never quoting the secret) otherwise."""
        if not secret.startswith(SECRET_PREFIX):
            raise WebhookSecretInvalid("does not start with whsec_")
        encoded = secret[len(SECRET_PREFIX) :].strip()
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookSecretInvalid("is not valid base64 after whsec_") from None
        return cls(key)

    def __repr__(self) -> str:
        return "Signer(key=<hidden>)"

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The `webhook-signature` header value: `v1,<base64 signature>`."""
        signed = f"{msg_id}.{timestamp}.".encode() + body
        digest = hmac.new(self._key, signed, hashlib.sha256).digest()
        return "v1," + base64.b64encode(digest).decode("ascii")

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        """The headers of one delivery."""
        return {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.signature(msg_id, timestamp, body),
        }
