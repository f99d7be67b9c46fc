"""Signed webhooks from the e-commerce platform."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from cloud_api.api.schemas import CartAccepted, CartWebhook
from cloud_api.auth.signing import SIGNATURE_HEADER, verify_signature
from cloud_api.commerce.carts import stored_status, upsert_cart
from cloud_api.deps import ContextDep, SessionDep
from cloud_api.store.models import Shopper

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


async def signed_body(
    request: Request,
    context: ContextDep,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER)] = None,
) -> bytes:
    """The raw body, once its signature is checked: nothing unsigned is even parsed."""
    secret = context.settings.webhook_secret
    if secret is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "cart webhooks are disabled: the cloud has no webhook secret "
            "(set STORELINK_WEBHOOK_SECRET)",
        )
    if signature is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"missing {SIGNATURE_HEADER} header: expected sha256=<hex HMAC-SHA256 of the raw body>",
        )
    body = await request.body()
    if not verify_signature(secret.get_secret_value(), body, signature):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"{SIGNATURE_HEADER} does not match the body: sign the exact bytes sent, "
            "with the shared webhook secret, as sha256=<hex HMAC-SHA256>",
        )
    return body


@router.post("/carts", status_code=status.HTTP_202_ACCEPTED)
def receive_cart(body: Annotated[bytes, Depends(signed_body)], session: SessionDep) -> CartAccepted:
    """Create or update a cart; a report older than the stored cart is acknowledged, not applied."""
    try:
        cart = CartWebhook.model_validate_json(body)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None
    if session.get(Shopper, cart.shopper_id) is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown shopper_id {cart.shopper_id!r}"
        )
    applied = upsert_cart(session, cart)
    session.commit()
    return CartAccepted(
        cart_id=cart.cart_id, status=stored_status(session, cart.cart_id), applied=applied
    )
