"""The ``Authorization`` header InfluxDB's HTTP API takes, for its writes and its queries alike."""

from __future__ import annotations

import base64


def influx_auth_headers(
    user: str | None, password: str | None, token: str | None
) -> dict[str, str]:
    """A 2.x token (or 1.8+'s ``user:password`` one) wins over 1.x basic auth; none: no header."""
    if token:
        return {"Authorization": f"Token {token}"}
    if user:
        pair = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}
