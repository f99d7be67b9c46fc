"""What a campaign is: trigger, conditions, reward, limits and holdout, as the API and the file say.

One pydantic model validates a campaign wherever it comes from (``POST /v1/campaigns``, the
campaigns YAML file, the ``campaigns.spec`` column), so a campaign the decision reads is always
a valid one. The built-in campaign made from the ``offer_*`` settings applies while no campaign
is defined at all, so a fresh installation still welcomes back shoppers with abandoned carts.
"""

from __future__ import annotations

import re
from datetime import time
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from cloud_api.shoppers.loyalty import Segment

DEFAULT_CAMPAIGN_ID = "abandoned-cart"
# The demo's campaigns, shipped with the package.
DEMO_CAMPAIGNS_FILE = Path(__file__).with_name("demo_campaigns.yaml")
CampaignId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TriggerKind(StrEnum):
    ENTER = "enter"
    DWELL = "dwell"
    VISITS = "visits"


class Trigger(_Spec):
    """``enter``: walking into the store (or ``zone``); ``dwell``: ``dwell_s`` in ``zone`` (any
    zone if unset); ``visits``: the ``visits``-th visit within ``days`` (an enter)."""

    kind: TriggerKind = TriggerKind.ENTER
    zone: str | None = None
    dwell_s: float | None = Field(default=None, gt=0)
    visits: int | None = Field(default=None, ge=1)
    days: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.kind == TriggerKind.DWELL and self.dwell_s is None:
            raise ValueError("a dwell trigger needs dwell_s")
        if self.kind == TriggerKind.VISITS and (self.visits is None or self.days is None):
            raise ValueError("a visits trigger needs visits and days")
        return self


class Conditions(_Spec):
    """All must hold. Consent to personal offers is always required, whatever is set here."""

    cart_min_age_s: float | None = Field(default=None, ge=0)
    cart_max_age_s: float | None = Field(default=None, gt=0)
    cart_min_value: Decimal | None = Field(default=None, ge=0)
    cart_max_value: Decimal | None = Field(default=None, gt=0)
    # zone id -> the item category it sells: the cart must hold an item of the current zone's.
    zone_categories: dict[str, str] = Field(default_factory=dict)
    segments: tuple[Segment, ...] = ()

    @property
    def needs_cart(self) -> bool:
        return any(
            v is not None
            for v in (
                self.cart_min_age_s,
                self.cart_max_age_s,
                self.cart_min_value,
                self.cart_max_value,
            )
        ) or bool(self.zone_categories)


class RewardKind(StrEnum):
    PERCENT = "percent"
    AMOUNT = "amount"


class Reward(_Spec):
    kind: RewardKind = RewardKind.PERCENT
    value: Decimal = Field(gt=0)
    # cart: off the whole cart; matching_items: off the items of the zone's category only.
    applies_to: str = Field(default="cart", pattern=r"^(cart|matching_items)$")
    min_spend: Decimal | None = Field(default=None, ge=0)
    online: bool = Field(default=False, description="redeemable online too, not only in store")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    ttl_s: float = Field(default=7200.0, gt=0)
    message: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _percent(self) -> Self:
        if self.kind == RewardKind.PERCENT and self.value > 100:
            raise ValueError("a percent reward is at most 100")
        return self


class Limits(_Spec):
    per_shopper_per_week: int | None = Field(default=None, ge=1)
    # The same cart gets at most one offer from this campaign within this many seconds.
    cart_cooldown_s: float | None = Field(default=None, ge=0)
    # Local "HH:MM"-"HH:MM" in ``timezone`` with no offers; may span midnight.
    quiet_start: str | None = None
    quiet_end: str | None = None
    timezone: str = "UTC"
    budget_offers: int | None = Field(default=None, ge=0, description="offers made, at most")
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None

    @field_validator("quiet_start", "quiet_end")
    @classmethod
    def _clock(cls, value: str | None) -> str | None:
        if value is not None and not _CLOCK.match(value):
            raise ValueError(f"{value!r} is not a HH:MM time of day")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @model_validator(mode="after")
    def _pairs(self) -> Self:
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("quiet hours need both quiet_start and quiet_end")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def quiet_hours(self) -> tuple[time, time] | None:
        if self.quiet_start is None or self.quiet_end is None:
            return None
        return time.fromisoformat(self.quiet_start), time.fromisoformat(self.quiet_end)


class CampaignSpec(_Spec):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "abandoned-cart",
                    "name": "Abandoned cart welcome back",
                    "priority": 10,
                    "store_ids": ["store-1"],
                    "trigger": {"kind": "enter"},
                    "conditions": {"cart_min_age_s": 3600, "cart_max_age_s": 604800},
                    "reward": {
                        "kind": "percent",
                        "value": "10",
                        "applies_to": "cart",
                        "online": True,
                        "ttl_s": 7200,
                    },
                    "limits": {"cart_cooldown_s": 86400, "per_shopper_per_week": 2},
                },
                {
                    "id": "racks-accessories",
                    "name": "Accessories for the cart, while browsing the racks",
                    "priority": 5,
                    "store_ids": ["store-1"],
                    "trigger": {"kind": "dwell", "zone": "racks", "dwell_s": 60},
                    "conditions": {
                        "zone_categories": {"racks": "accessories"},
                        "cart_min_value": "20",
                    },
                    "reward": {
                        "kind": "amount",
                        "value": "5",
                        "applies_to": "matching_items",
                        "min_spend": "20",
                        "currency": "EUR",
                    },
                    "limits": {
                        "per_shopper_per_week": 1,
                        "quiet_start": "21:00",
                        "quiet_end": "08:00",
                        "timezone": "Europe/Rome",
                        "budget_offers": 500,
                    },
                    "holdout_share": 0.2,
                },
            ]
        }
    )

    id: CampaignId
    name: str = Field(min_length=1, max_length=200)
    active: bool = True
    # Higher first; one offer per presence event at most.
    priority: int = 0
    # Empty: every store.
    store_ids: tuple[str, ...] = ()
    trigger: Trigger = Field(default_factory=Trigger)
    conditions: Conditions = Field(default_factory=Conditions)
    reward: Reward
    limits: Limits = Field(default_factory=Limits)
    holdout_share: float = Field(default=0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _matching(self) -> Self:
        if self.reward.applies_to == "matching_items" and not self.conditions.zone_categories:
            raise ValueError("a reward off the matching items needs conditions.zone_categories")
        return self


class CampaignFile(_Spec):
    campaigns: tuple[CampaignSpec, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> Self:
        ids = [c.id for c in self.campaigns]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"campaign ids defined twice: {', '.join(duplicates)}")
        return self


def load_campaign_file(path: Path) -> tuple[CampaignSpec, ...]:
    """The campaigns of a YAML file ``campaigns: [...]``; ValueError says what is wrong."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read campaigns file {path}: {error}") from error
    try:
        return CampaignFile.model_validate(data or {}).campaigns
    except ValueError as error:
        raise ValueError(f"campaigns file {path}: {error}") from error


def default_campaign(
    abandon_after_s: float, percent_off: Decimal, ttl_s: float, cooldown_s: float
) -> CampaignSpec:
    """The settings' abandoned-cart offer, as a campaign: applies while none is defined."""
    return CampaignSpec(
        id=DEFAULT_CAMPAIGN_ID,
        name="Abandoned cart welcome back",
        conditions=Conditions(cart_min_age_s=abandon_after_s),
        reward=Reward(kind=RewardKind.PERCENT, value=percent_off, ttl_s=ttl_s),
        limits=Limits(cart_cooldown_s=cooldown_s),
    )
