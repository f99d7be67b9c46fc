"""A shopper's notifications as Server-Sent Events, and the app's delivery receipts.

``GET /v1/shoppers/{id}/notifications/stream`` is the pull channel of the outbox: it streams
the shopper's notifications from the table itself, so whichever worker serves the page sees the
offers every worker made. Each event carries the notification's row id as its SSE ``id``: a
client that reconnects with ``Last-Event-ID`` gets what it missed and nothing twice. Without
one, the offers still open (not expired, not opened) come first.

``POST /v1/notifications/{id}/receipts`` records ``delivered`` or ``opened`` (opened implies
delivered), once: a repeated receipt changes nothing and answers the same.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.auth.app_auth import parse_body, raw_body, verify_app_request
from cloud_api.deps import ContextDep, SessionDep
from cloud_api.store.models import Notification, Offer
from storelink.wire import utc_now

router = APIRouter(tags=["notifications"])

POLL_S = 0.2
KEEPALIVE_S = 15.0


class ReceiptIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "opened"}]})

    status: Literal["delivered", "opened"]


class ReceiptOut(BaseModel):
    notification_id: str
    delivered_at: datetime | None
    opened_at: datetime | None


def _sse(row_id: int, payload: str) -> bytes:
    return f"id: {row_id}\nevent: offer\ndata: {payload}\n\n".encode()


def _open_offers(sessions: sessionmaker[Session], shopper_id: str) -> list[tuple[int, str]]:
    with sessions() as session:
        rows = session.execute(
            sa.select(Notification.id, Notification.payload)
            .join(Offer, Offer.code == Notification.offer_code)
            .where(
                Notification.shopper_id == shopper_id,
                Notification.opened_at.is_(None),
                Offer.expires_at > utc_now(),
                Offer.redeemed_at.is_(None),
            )
            .order_by(Notification.id)
        ).all()
    return [(row_id, _json(payload)) for row_id, payload in rows]


def _after(sessions: sessionmaker[Session], shopper_id: str, last: int) -> list[tuple[int, str]]:
    with sessions() as session:
        rows = session.execute(
            sa.select(Notification.id, Notification.payload)
            .where(Notification.shopper_id == shopper_id, Notification.id > last)
            .order_by(Notification.id)
        ).all()
    return [(row_id, _json(payload)) for row_id, payload in rows]


def _latest(sessions: sessionmaker[Session], shopper_id: str) -> int:
    with sessions() as session:
        latest = session.scalar(
            sa.select(sa.func.max(Notification.id)).where(Notification.shopper_id == shopper_id)
        )
    return latest or 0


def _json(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))


@router.get(
    "/shoppers/{shopper_id}/notifications/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def stream_notifications(
    shopper_id: str,
    request: Request,
    session: SessionDep,
    context: ContextDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The shopper's offers as they are made, signed by the shopper's app as its other calls,
    or, for a web page's EventSource, with the same timestamp and signature as ``?ts=&sig=``."""
    verify_app_request(
        session,
        shopper_id,
        request,
        b"",
        time.time(),
        context.settings.app_signature_max_skew_s,
        query_signature=True,
    )
    resume: int | None = None
    if last_event_id is not None:
        if not last_event_id.isdigit():
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                f"Last-Event-ID must be an event id, not {last_event_id!r}",
            )
        resume = int(last_event_id)
    sessions = context.sessions

    async def events() -> AsyncIterator[bytes]:
        if resume is None:
            last = await asyncio.to_thread(_latest, sessions, shopper_id)
            backlog = await asyncio.to_thread(_open_offers, sessions, shopper_id)
        else:
            last = resume
            backlog = []
        yield b": connected\n\n"
        for row_id, payload in backlog:
            yield _sse(row_id, payload)
        quiet = 0.0
        while not await request.is_disconnected():
            fresh = await asyncio.to_thread(_after, sessions, shopper_id, last)
            for row_id, payload in fresh:
                last = row_id
                yield _sse(row_id, payload)
            quiet = 0.0 if fresh else quiet + POLL_S
            if quiet >= KEEPALIVE_S:
                quiet = 0.0
                yield b": keep-alive\n\n"
            await asyncio.sleep(POLL_S)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/notifications/{notification_id}/receipts")
def record_receipt(
    notification_id: str,
    request: Request,
    body: Annotated[bytes, Depends(raw_body)],
    session: SessionDep,
    context: ContextDep,
) -> ReceiptOut:
    """Signed by the app of the shopper the notification was for."""
    notification = session.scalars(
        sa.select(Notification).where(Notification.notification_id == notification_id)
    ).one_or_none()
    if notification is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no notification {notification_id!r}")
    verify_app_request(
        session,
        notification.shopper_id,
        request,
        body,
        time.time(),
        context.settings.app_signature_max_skew_s,
    )
    receipt = parse_body(ReceiptIn, body)
    now = utc_now()
    # Conditional: the first receipt of each kind sets the time, a repeated one changes nothing.
    where = Notification.notification_id == notification_id
    session.execute(
        sa.update(Notification)
        .where(where, Notification.delivered_at.is_(None))
        .values(delivered_at=now)
    )
    if receipt.status == "opened":
        session.execute(
            sa.update(Notification)
            .where(where, Notification.opened_at.is_(None))
            .values(opened_at=now)
        )
    session.commit()
    session.refresh(notification)
    return ReceiptOut(
        notification_id=notification_id,
        delivered_at=notification.delivered_at,
        opened_at=notification.opened_at,
    )
