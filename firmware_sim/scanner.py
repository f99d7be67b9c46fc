"""A bleak scanner backend that listens to a simulated store instead of a Bluetooth adapter.

The gateway passes it to ``bleak.BleakScanner(..., backend=SimScanner, world=..., gateway_id=...,
clock=...)`` and sees the same ``BLEDevice`` and ``AdvertisementData`` a real adapter would give.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from bleak.backends.scanner import AdvertisementDataCallback, BaseBleakScanner

from firmware_sim.bleak_data import advertisement_data
from firmware_sim.world import SimAdvert
from storelink.clock import Clock

logger = logging.getLogger(__name__)

TICK_S = 0.1


class AdvertSource(Protocol):
    """A simulated radio world: the demo's ``StoreWorld`` or a scenario's ``Airwaves``."""

    @property
    def gateways(self) -> Mapping[str, object]: ...

    def adverts_between(self, gateway_id: str, t0: float, t1: float) -> list[SimAdvert]:
        """What ``gateway_id`` receives in the unix time range ``[t0, t1)``, in time order."""
        ...


class SimScanner(BaseBleakScanner):
    """Every ``tick_s`` of clock time, delivers what the gateway received since the last tick.

    The simulated devices send no scan responses, so active and passive scanning see the same.
    """

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        world: AdvertSource,
        gateway_id: str,
        clock: Clock,
        tick_s: float = TICK_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        if gateway_id not in world.gateways:
            raise ValueError(f"the simulated store has no gateway {gateway_id!r}")
        self._world = world
        self._gateway_id = gateway_id
        self._clock = clock
        self._tick_s = tick_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the scanner is already running")
        self.seen_devices = {}
        self._task = asyncio.create_task(self._listen(self._clock.now()))

    async def stop(self) -> None:
        if self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _listen(self, since: float) -> None:
        while True:
            await self._clock.sleep(self._tick_s)
            until = self._clock.now()
            for advert in self._world.adverts_between(self._gateway_id, since, until):
                self._deliver(advert)
            since = until

    def _deliver(self, advert: SimAdvert) -> None:
        adv = advertisement_data(advert)
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        device = self.create_or_update_device(
            advert.address, advert.address, adv.local_name, advert, adv
        )
        # A radio backend survives a failing callback and keeps scanning; so does this one.
        try:
            self.call_detection_callbacks(device, adv)
        except Exception:
            logger.exception("a detection callback failed")
