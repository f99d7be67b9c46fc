"""``GET /v1/stats/engagement``: each campaign's funnel, revenue and uplift, and the segments."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from cloud_api.auth.auth import StaffDep, check_store
from cloud_api.deps import ContextDep, SessionDep
from cloud_api.match.offer_policy import offer_policy
from cloud_api.shoppers.loyalty_store import loyalty_rules, segment_counts, segment_moves
from cloud_api.stats.engagement_stats import campaign_funnels
from storelink.wire import utc_now

router = APIRouter(prefix="/stats", tags=["stats"])
DEFAULT_WINDOW = timedelta(days=30)


class UpliftOut(BaseModel):
    treated_rate: float | None
    holdout_rate: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None


class CampaignStats(BaseModel):
    campaign_id: str
    name: str
    eligible: int
    held_out: int
    sent: int
    delivered: int
    opened: int
    redeemed: int
    revenue: Decimal
    entry_to_notification_p50_s: float | None
    uplift: UpliftOut


class SegmentMove(BaseModel):
    from_segment: str
    to_segment: str
    shoppers: int


class EngagementStats(BaseModel):
    store_id: str | None
    since: datetime
    until: datetime
    campaigns: list[CampaignStats]
    segments: dict[str, int]
    segment_movement: list[SegmentMove] = Field(
        description="shoppers by their segment at since and at until; staying put included"
    )


@router.get("/engagement")
def engagement(
    principal: StaffDep,
    session: SessionDep,
    context: ContextDep,
    store_id: Annotated[str | None, Query(description="one store; none: the caller's")] = None,
    since: Annotated[datetime | None, Query(description="default: 30 days before until")] = None,
    until: Annotated[datetime | None, Query(description="default: now")] = None,
) -> EngagementStats:
    """Decisions made in [since, until): eligible -> held out -> sent -> delivered -> opened ->
    redeemed, revenue of the redeeming orders, time from store entry to notification, and the
    purchase-rate uplift of the treated over the holdout with its 95 % interval."""
    until = until or utc_now()
    since = since or until - DEFAULT_WINDOW
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name} needs a time zone, e.g. ...Z"
            )
    if since >= until:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "since must be before until")
    stores = principal.store_ids
    if store_id is not None:
        check_store(principal, store_id)
        stores = frozenset({store_id})
    rules = loyalty_rules(context.settings)
    default = offer_policy(context.settings).default_campaign
    funnels = campaign_funnels(session, stores, since, until, {default.id: default.name})
    return EngagementStats(
        store_id=store_id,
        since=since,
        until=until,
        campaigns=[
            CampaignStats(
                campaign_id=f.campaign_id,
                name=name,
                eligible=f.eligible,
                held_out=f.held_out,
                sent=f.sent,
                delivered=f.delivered,
                opened=f.opened,
                redeemed=f.redeemed,
                revenue=f.revenue,
                entry_to_notification_p50_s=f.entry_to_notification_p50_s,
                uplift=UpliftOut(**vars(f.uplift)),
            )
            for name, f in funnels
        ],
        segments={
            str(segment): count for segment, count in segment_counts(session, until, rules).items()
        },
        segment_movement=[
            SegmentMove(from_segment=before, to_segment=after, shoppers=count)
            for (before, after), count in sorted(
                segment_moves(session, since, until, rules).items()
            )
        ],
    )
