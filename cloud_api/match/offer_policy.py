"""How the cloud makes offers: the campaigns' fallback, the cap across them, the channels."""

from __future__ import annotations

from dataclasses import dataclass

from cloud_api.config import CloudSettings
from cloud_api.match.campaigns import CampaignSpec, default_campaign
from cloud_api.shoppers.loyalty import LoyaltyRules
from cloud_api.shoppers.loyalty_store import loyalty_rules


@dataclass(frozen=True)
class OfferPolicy:
    # Applies while no campaign is defined (none in the database).
    default_campaign: CampaignSpec
    # Offers (and holdout "would have received") per shopper in 24 h, across campaigns.
    daily_cap: int | None
    # The outbox channels every notification is queued for (see ``outbox``).
    channels: tuple[str, ...]
    loyalty: LoyaltyRules


def offer_policy(settings: CloudSettings) -> OfferPolicy:
    channels = ["mqtt"]
    if settings.push_webhook_url is not None and settings.push_webhook_secret is not None:
        channels.append("webhook")
    return OfferPolicy(
        default_campaign=default_campaign(
            settings.cart_abandon_after_s,
            settings.offer_percent_off,
            settings.offer_ttl_s,
            settings.offer_cooldown_s,
        ),
        daily_cap=settings.offers_per_shopper_per_day,
        channels=tuple(channels),
        loyalty=loyalty_rules(settings),
    )
