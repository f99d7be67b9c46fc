"""The shopper app's requests, signed with its app key: no password, no staff token.

The app holds the 32-byte key it received at registration (the same one behind its rotating
token). Each request carries

    X-Storelink-Timestamp: <unix seconds>
    X-Storelink-App-Signature: sha256=<hex HMAC-SHA256(app key, message)>

where message = "<timestamp>\\n<METHOD>\\n<path>\\n" followed by the body's exact bytes.

Method and path are signed as well as the body, so a signed consent change cannot be replayed
against the erasure endpoint, and the timestamp must be within ``app_signature_max_skew_s`` of
the cloud's clock, so an old request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TypeVar

from fastapi import HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from cloud_api.auth.signing import SIGNATURE_PREFIX
from cloud_api.store.models import Shopper

APP_SIGNATURE_HEADER = "X-Storelink-App-Signature"
TIMESTAMP_HEADER = "X-Storelink-Timestamp"
QUERY_SIGNATURE = "sig"
QUERY_TIMESTAMP = "ts"
M = TypeVar("M", bound=BaseModel)


async def raw_body(request: Request) -> bytes:
    """The exact bytes the signature covers (a dependency: FastAPI would parse them otherwise)."""
    return await request.body()


def parse_body(model: type[M], body: bytes) -> M:
    """``body`` as ``model``, or the same 422 FastAPI gives for a body it parsed itself."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def signed_message(timestamp: str, method: str, path: str, body: bytes) -> bytes:
    return f"{timestamp}\n{method.upper()}\n{path}\n".encode() + body


def sign_app_request(app_key: bytes, timestamp: str, method: str, path: str, body: bytes) -> str:
    """The signature header's value; what the app computes for each request."""
    message = signed_message(timestamp, method, path, body)
    return SIGNATURE_PREFIX + hmac.new(app_key, message, hashlib.sha256).hexdigest()


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail)


def verify_app_request(
    session: Session,
    shopper_id: str,
    request: Request,
    body: bytes,
    now: float,
    max_skew_s: float,
    *,
    query_signature: bool = False,
) -> Shopper:
    """The shopper whose app key signed this request; 401 (or 404 for no such shopper) if not.

    With ``query_signature``, the timestamp and signature may come as the query parameters
    ``ts`` and ``sig`` instead: a web page's EventSource cannot set headers. Such a URL is as
    short-lived as a signed request and names one path and method only.
    """
    signature = request.headers.get(APP_SIGNATURE_HEADER)
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    if query_signature and signature is None and timestamp is None:
        signature = request.query_params.get(QUERY_SIGNATURE)
        timestamp = request.query_params.get(QUERY_TIMESTAMP)
    if signature is None or timestamp is None:
        raise _unauthorised(
            f"shopper app requests need {TIMESTAMP_HEADER} (unix seconds) and "
            f"{APP_SIGNATURE_HEADER} (sha256=<hex HMAC-SHA256 with the app key of "
            "'<timestamp>\\n<METHOD>\\n<path>\\n' + body>)"
        )
    try:
        sent_at = float(timestamp)
    except ValueError:
        raise _unauthorised(f"{TIMESTAMP_HEADER} must be unix seconds, got {timestamp!r}") from None
    if abs(now - sent_at) > max_skew_s:
        raise _unauthorised(
            f"{TIMESTAMP_HEADER} is {now - sent_at:.0f} s away from the cloud's clock "
            f"(at most {max_skew_s:.0f} s): sign each request when it is sent"
        )
    shopper = session.get(Shopper, shopper_id)
    if shopper is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no shopper {shopper_id!r}")
    expected = sign_app_request(shopper.app_key, timestamp, request.method, request.url.path, body)
    # Constant-time: how much of a forged signature matched must not show in the timing.
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise _unauthorised(
            f"{APP_SIGNATURE_HEADER} does not match: sign '<timestamp>\\n<METHOD>\\n<path>\\n' "
            "followed by the exact body bytes, with the shopper's app key"
        )
    return shopper
