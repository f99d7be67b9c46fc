"""A simulated reception as bleak's ``BLEDevice`` and ``AdvertisementData``.

Used by ``SimScanner`` (bleak's backend interface) and by the simulator's fast-forward driver, so
the gateway sees exactly the same objects from both.
"""

from __future__ import annotations

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bluetooth_data_tools import parse_advertisement_data_bytes

from firmware_sim.world import SimAdvert


def advertisement_data(advert: SimAdvert) -> AdvertisementData:
    """Parse the raw advertising bytes as a radio backend does; ``platform_data`` is the advert."""
    name, service_uuids, service_data, manufacturer_data, tx_power = parse_advertisement_data_bytes(
        advert.raw
    )
    # The parser returns containers it shares between calls; consumers get their own.
    return AdvertisementData(
        local_name=name,
        manufacturer_data=dict(manufacturer_data),
        service_data=dict(service_data),
        service_uuids=list(service_uuids),
        tx_power=tx_power,
        rssi=advert.rssi,
        platform_data=(advert,),
    )


def ble_device(advert: SimAdvert, adv: AdvertisementData) -> BLEDevice:
    """The device as bleak names it: its address, its local name, the advert as details."""
    return BLEDevice(advert.address, adv.local_name, advert)
