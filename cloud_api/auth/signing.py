"""Webhook signatures: ``X-Storelink-Signature: sha256=<hex HMAC-SHA256 of the raw body>``.

The signature covers the exact bytes sent, so the receiver checks it before parsing anything.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Storelink-Signature"
SIGNATURE_PREFIX = "sha256="


def sign_body(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(secret: str, body: bytes, signature: str) -> bool:
    """Constant-time: how much of a forged signature matched must not show in the timing."""
    expected = sign_body(secret, body).encode()
    return hmac.compare_digest(expected, signature.strip().lower().encode())
