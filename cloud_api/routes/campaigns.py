"""``/v1/campaigns``: define, change and remove campaigns; ask why a shopper got an offer or not.

The administrator manages every campaign. A staff member manages the campaigns that run only in
their stores, and sees those plus the campaigns that run everywhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel

from cloud_api.auth.auth import StaffDep, StaffPrincipal
from cloud_api.deps import ContextDep, Limit, SessionDep
from cloud_api.match.campaigns import CampaignSpec
from cloud_api.match.engagement import API_SOURCE, save_campaign
from cloud_api.match.offer_policy import offer_policy
from cloud_api.store.models import CampaignDecision, CampaignRow, Shopper
from storelink.wire import utc_now

router = APIRouter(prefix="/campaigns", tags=["campaigns"])


class CampaignOut(BaseModel):
    campaign: CampaignSpec
    source: str
    created_at: datetime | None
    updated_at: datetime | None
    builtin: bool = False


class DecisionOut(BaseModel):
    event_id: str
    store_id: str
    outcome: str
    decided_at: datetime
    offer_code: str | None
    cart_id: str | None
    checks: list[dict[str, Any]]
    failed: list[str]


class Explanation(BaseModel):
    campaign_id: str
    shopper_id: str
    summary: str
    decisions: list[DecisionOut]


def _out(row: CampaignRow) -> CampaignOut:
    return CampaignOut(
        campaign=CampaignSpec.model_validate(row.spec),
        source=row.source,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _visible(principal: StaffPrincipal, spec: CampaignSpec) -> bool:
    return not spec.store_ids or any(principal.may_access(s) for s in spec.store_ids)


def _check_manage(principal: StaffPrincipal, spec: CampaignSpec) -> None:
    if principal.is_admin:
        return
    if not spec.store_ids:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "only the administrator manages campaigns that run in every store: set store_ids",
        )
    outside = sorted(s for s in spec.store_ids if not principal.may_access(s))
    if outside:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"no access to store(s) {', '.join(outside)}"
        )


def _row(session: SessionDep, campaign_id: str) -> CampaignRow:
    row = session.get(CampaignRow, campaign_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no campaign {campaign_id!r}")
    return row


@router.get("")
def list_campaigns(
    principal: StaffDep, session: SessionDep, context: ContextDep
) -> list[CampaignOut]:
    """Every campaign the caller may see; the built-in one while none is defined."""
    rows = session.scalars(sa.select(CampaignRow).order_by(CampaignRow.id)).all()
    if not rows:
        default = offer_policy(context.settings).default_campaign
        return [
            CampaignOut(
                campaign=default, source="settings", created_at=None, updated_at=None, builtin=True
            )
        ]
    out = [_out(row) for row in rows]
    return [c for c in out if _visible(principal, c.campaign)]


@router.post("", status_code=status.HTTP_201_CREATED, responses={409: {"description": "exists"}})
def create_campaign(spec: CampaignSpec, principal: StaffDep, session: SessionDep) -> CampaignOut:
    """Add a campaign; staff may add one only for stores they manage."""
    _check_manage(principal, spec)
    if session.get(CampaignRow, spec.id) is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"campaign {spec.id!r} exists: PUT /v1/campaigns/{spec.id}"
        )
    save_campaign(session, spec, API_SOURCE, utc_now())
    session.commit()
    return _out(_row(session, spec.id))


@router.get("/{campaign_id}")
def get_campaign(campaign_id: str, principal: StaffDep, session: SessionDep) -> CampaignOut:
    """One campaign, if the caller may see one of its stores."""
    out = _out(_row(session, campaign_id))
    if not _visible(principal, out.campaign):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no campaign {campaign_id!r}")
    return out


@router.put("/{campaign_id}")
def replace_campaign(
    campaign_id: str, spec: CampaignSpec, principal: StaffDep, session: SessionDep
) -> CampaignOut:
    """Create or replace a campaign's definition; the id in the body must be the one in the path."""
    if spec.id != campaign_id:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"the body's id {spec.id!r} is not the path's {campaign_id!r}",
        )
    existing = session.get(CampaignRow, campaign_id)
    if existing is not None:
        _check_manage(principal, CampaignSpec.model_validate(existing.spec))
    _check_manage(principal, spec)
    save_campaign(session, spec, API_SOURCE, utc_now())
    session.commit()
    return _out(_row(session, campaign_id))


@router.delete("/{campaign_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_campaign(campaign_id: str, principal: StaffDep, session: SessionDep) -> Response:
    """Removes the definition; its decisions and offers stay, for the statistics."""
    row = _row(session, campaign_id)
    _check_manage(principal, CampaignSpec.model_validate(row.spec))
    session.delete(row)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{campaign_id}/explain")
def explain(
    campaign_id: str,
    principal: StaffDep,
    session: SessionDep,
    shopper_id: str = Query(description="the shopper asked about"),
    limit: Limit = 10,
) -> Explanation:
    """The campaign's latest decisions about the shopper, newest first, with every check."""
    query = sa.select(CampaignDecision).where(
        CampaignDecision.campaign_id == campaign_id, CampaignDecision.shopper_id == shopper_id
    )
    if principal.store_ids is not None:
        query = query.where(CampaignDecision.store_id.in_(sorted(principal.store_ids)))
    rows = session.scalars(
        query.order_by(CampaignDecision.decided_at.desc(), CampaignDecision.id.desc()).limit(limit)
    ).all()
    decisions = [
        DecisionOut(
            event_id=row.event_id,
            store_id=row.store_id,
            outcome=row.outcome,
            decided_at=row.decided_at,
            offer_code=row.offer_code,
            cart_id=row.cart_id,
            checks=row.checks,
            failed=[c["name"] for c in row.checks if not c["passed"]],
        )
        for row in rows
    ]
    return Explanation(
        campaign_id=campaign_id,
        shopper_id=shopper_id,
        summary=_summary(session, shopper_id, decisions),
        decisions=decisions,
    )


def _summary(session: SessionDep, shopper_id: str, decisions: list[DecisionOut]) -> str:
    if decisions:
        latest = decisions[0]
        if latest.outcome == "offered":
            return f"offered {latest.offer_code} at {latest.decided_at.isoformat()}"
        if latest.outcome == "held_out":
            return "in the holdout: recorded as would have received, sent nothing"
        reasons = "; ".join(f"{c['name']}: {c['reason']}" for c in latest.checks if not c["passed"])
        return f"not offered: {reasons}"
    shopper = session.get(Shopper, shopper_id)
    if shopper is None:
        return "no such shopper"
    if not shopper.consent_personal_offers:
        return "no decision: the shopper has not agreed to personal offers"
    return "no decision yet: the shopper has not been seen entering or dwelling since"
