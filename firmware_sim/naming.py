"""How a store's gateways name what they hear, for the ground truth to name people the same way.

The truth asks the gateway's own decoder and identifier (``gateway.decode``, ``gateway.identify``)
configured as the simulated gateways are, so that a truth ref and an event ref agree whatever the
gateway's naming rules become: app tokens, beacon ids, resolved wearables, day-keyed pseudonyms.
"""

from __future__ import annotations

from gateway.config import GatewaySettings
from gateway.decode import Decoder
from gateway.identify import IdentityResolver, IdentityRules
from gateway.pipeline import IDENTITY_CACHE_SIZE
from storelink.wire import Subject


class Naming:
    def __init__(self, settings: GatewaySettings) -> None:
        if settings.pseudonym_key is None:
            raise ValueError("the truth can only name devices for a known pseudonym key")
        self._decoder = Decoder(settings.app_uuid, IDENTITY_CACHE_SIZE)
        self._resolver = IdentityResolver(
            IdentityRules(
                app_uuid=settings.app_uuid,
                store_beacons=frozenset(settings.store_beacons),
                pseudonym_key=settings.pseudonym_key.get_secret_value().encode(),
                irks=settings.irk_bytes(),
            )
        )

    def subject(self, address: str, raw: bytes, t: float) -> Subject | None:
        """The subject a gateway publishes for this advertisement at unix time ``t``."""
        return self._resolver.identify(address, self._decoder.decode(raw), t)
