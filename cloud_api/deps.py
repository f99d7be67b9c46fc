"""FastAPI dependencies: the application's shared parts, and one database session a request."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.config import CloudSettings
from cloud_api.ingest.consumer import PresenceConsumer
from cloud_api.ingest.directory import ShopperDirectory


@dataclass(frozen=True)
class CloudContext:
    """What ``create_app`` builds once and every request shares (``app.state.context``)."""

    settings: CloudSettings
    sessions: sessionmaker[Session]
    directory: ShopperDirectory


def get_context(request: Request) -> CloudContext:
    context: CloudContext = request.app.state.context
    return context


ContextDep = Annotated[CloudContext, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    with context.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_consumer(request: Request) -> PresenceConsumer | None:
    """The MQTT consumer while the app runs with ``mqtt_enabled``, else None."""
    consumer: PresenceConsumer | None = request.app.state.consumer
    return consumer


ConsumerDep = Annotated[PresenceConsumer | None, Depends(get_consumer)]

Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many, newest first")]
