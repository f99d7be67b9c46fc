"""The shopper app's rotating token, shared by the app (simulated here), the gateway and the cloud.

The app advertises an iBeacon whose proximity UUID is the retailer's and whose major/minor carry
the first 32 bits of HMAC-SHA256(app key, window), where window = floor(unix_time / 900) encoded
as an 8-byte big-endian unsigned integer. The token changes every 15 minutes, in step with the
phone's own address rotation, so a passive listener cannot follow a shopper across windows. Only
the cloud, which holds the app keys of consenting shoppers, can tell whose token it is.
"""

from __future__ import annotations

import hashlib
import hmac

TOKEN_WINDOW_S = 900
APP_KEY_BYTES = 32


def token_window(unix_time: float) -> int:
    return int(unix_time // TOKEN_WINDOW_S)


def app_token(app_key: bytes, window: int) -> int:
    digest = hmac.new(app_key, window.to_bytes(8, "big"), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big")


def token_major_minor(token: int) -> tuple[int, int]:
    """The iBeacon major (high 16 bits) and minor (low 16 bits) that carry a token."""
    return token >> 16, token & 0xFFFF


def token_ref(major: int, minor: int) -> str:
    """The opaque subject ref a gateway publishes for an app token: 8 lower-case hex digits."""
    return f"{major:04x}{minor:04x}"


def candidate_windows(unix_time: float) -> tuple[int, int, int]:
    """Current, previous and next window: tolerates clock skew between phone and gateway."""
    window = token_window(unix_time)
    return window, window - 1, window + 1
