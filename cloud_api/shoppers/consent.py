"""Consent per purpose, with its history, and the identities commerce platforms know a shopper by.

A purpose's answer changes only through ``set_consent``, which writes the history record and the
shopper's current answer together and bumps the directory version (``directory.record_change``)
in the caller's transaction: once committed, no worker resolves a withdrawn shopper any more.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloud_api.ingest.directory import record_change
from cloud_api.store.models import ConsentRecord, Shopper, ShopperIdentity


class Purpose(StrEnum):
    FOOTFALL_ANALYTICS = "footfall_analytics"
    PERSONAL_OFFERS = "personal_offers"


class IdentityKind(StrEnum):
    SHOPIFY_CUSTOMER = "shopify_customer"
    EMAIL_SHA256 = "email_sha256"


@dataclass(frozen=True)
class PurposeAnswer:
    granted: bool
    text_version: str
    at: datetime


def _current(shopper: Shopper, purpose: Purpose) -> bool:
    if purpose is Purpose.PERSONAL_OFFERS:
        return shopper.consent_personal_offers
    return shopper.consent_footfall_analytics


def set_consent(
    session: Session,
    shopper: Shopper,
    answers: dict[Purpose, bool],
    text_version: str,
    at: datetime,
) -> list[Purpose]:
    """Record the answers that differ from the latest record (or its text version): the changed."""
    latest = current_consent(session, shopper.id)
    changed = []
    for purpose, granted in answers.items():
        known = latest.get(purpose)
        if known is not None and known.granted == granted and known.text_version == text_version:
            continue
        session.add(
            ConsentRecord(
                shopper_id=shopper.id,
                purpose=purpose.value,
                granted=granted,
                text_version=text_version,
                at=at,
            )
        )
        changed.append(purpose)
    shopper.consent_personal_offers = answers.get(
        Purpose.PERSONAL_OFFERS, _current(shopper, Purpose.PERSONAL_OFFERS)
    )
    shopper.consent_footfall_analytics = answers.get(
        Purpose.FOOTFALL_ANALYTICS, _current(shopper, Purpose.FOOTFALL_ANALYTICS)
    )
    if changed:
        shopper.consent_text_version = text_version
        shopper.consent_at = at
        record_change(session)
    return changed


def current_consent(session: Session, shopper_id: str) -> dict[Purpose, PurposeAnswer]:
    """Each purpose's latest record."""
    answers: dict[Purpose, PurposeAnswer] = {}
    for record in session.scalars(
        sa.select(ConsentRecord)
        .where(ConsentRecord.shopper_id == shopper_id)
        .order_by(ConsentRecord.at, ConsentRecord.id)
    ):
        answers[Purpose(record.purpose)] = PurposeAnswer(
            record.granted, record.text_version, record.at
        )
    return answers


def consent_history(session: Session, shopper_id: str) -> list[ConsentRecord]:
    return list(
        session.scalars(
            sa.select(ConsentRecord)
            .where(ConsentRecord.shopper_id == shopper_id)
            .order_by(ConsentRecord.at, ConsentRecord.id)
        )
    )


def email_hash(email: str) -> str:
    """How an e-mail address is kept: SHA-256 of its trimmed, lower-cased form, in hex."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def link_identities(
    session: Session, shopper_id: str, email: str | None, shopify_customer_id: int | None
) -> list[tuple[IdentityKind, str]]:
    """Link the given identities to the shopper; those already linked to another are refused."""
    wanted: list[tuple[IdentityKind, str]] = []
    if email is not None:
        wanted.append((IdentityKind.EMAIL_SHA256, email_hash(email)))
    if shopify_customer_id is not None:
        wanted.append((IdentityKind.SHOPIFY_CUSTOMER, str(shopify_customer_id)))
    taken = []
    for kind, value in wanted:
        owner = session.scalar(
            sa.select(ShopperIdentity.shopper_id).where(
                ShopperIdentity.kind == kind.value, ShopperIdentity.value == value
            )
        )
        if owner is None:
            session.add(ShopperIdentity(shopper_id=shopper_id, kind=kind.value, value=value))
        elif owner != shopper_id:
            taken.append((kind, value))
    return taken


def shopper_by_identity(session: Session, kind: IdentityKind, value: str) -> str | None:
    return session.scalar(
        sa.select(ShopperIdentity.shopper_id).where(
            ShopperIdentity.kind == kind.value, ShopperIdentity.value == value
        )
    )
