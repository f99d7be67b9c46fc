"""Device firmware models: what each device sends, event by event, and how gateways name it."""

from __future__ import annotations

from uuid import UUID

from bluetooth_data_tools import parse_advertisement_data_bytes

from firmware_sim.addresses import AddressType, RotatingAddress
from firmware_sim.firmware import (
    AppFirmware,
    EddystoneFirmware,
    Firmware,
    IBeaconFirmware,
    PhoneFirmware,
    WearableFirmware,
)
from firmware_sim.naming import Naming
from gateway.config import GatewaySettings
from gateway.decode import DeviceClass, decode_advertisement, decode_ibeacon
from storelink.tokens import TOKEN_WINDOW_S, app_token, token_major_minor, token_ref
from storelink.wire import SubjectType

APP_UUID = UUID("5f2dd896-b886-4549-ae01-e41acd7a354a")
START = 1_960_000 * TOKEN_WINDOW_S
KEY = bytes(range(32))
NAMING = Naming(
    GatewaySettings(
        _env_file=None,
        app_uuid=str(APP_UUID),
        store_beacons=["f7826da6-4fa2-4e98-8024-bc5b71e0893e:1:2"],
        pseudonym_key="key",
    )
)


def refs(firmware: Firmware, t0: float, t1: float) -> list[tuple[SubjectType, str]]:
    """What a gateway publishes for ``firmware`` over ``[t0, t1]``, as the truth works it out."""
    subjects = [NAMING.subject(e.address, e.raw, t) for t, e in firmware.emissions_during(t0, t1)]
    return list(dict.fromkeys((s.type, s.ref) for s in subjects if s is not None))


def rpa(phase: float = 0.0) -> RotatingAddress:
    return RotatingAddress("phone", AddressType.RPA, phase_s=phase, irk=bytes(16))


def test_the_app_advertises_the_token_of_each_window_and_names_every_one() -> None:
    app = AppFirmware(KEY, APP_UUID, rpa(), interval_s=0.25)
    for t in (START, START + TOKEN_WINDOW_S - 0.01, START + TOKEN_WINDOW_S):
        beacon = decode_ibeacon(dict(parse_advertisement_data_bytes(app.emit(t, 0).raw)[3]))
        assert beacon is not None and beacon.uuid == str(APP_UUID)
        window = int(t // TOKEN_WINDOW_S)
        assert (beacon.major, beacon.minor) == token_major_minor(app_token(KEY, window))
    expected = [token_ref(*token_major_minor(app_token(KEY, 1_960_000 + i))) for i in (0, 1)]
    assert refs(app, START + 10, START + TOKEN_WINDOW_S + 10) == [
        (SubjectType.APP, ref) for ref in expected
    ]


def test_the_phone_and_app_share_the_rotating_address() -> None:
    address = rpa(phase=START + 100)
    app = AppFirmware(KEY, APP_UUID, address, 0.1)
    phone = PhoneFirmware("ios", address, 0.3)
    for t in (START + 50, START + 150, START + 1500):
        assert app.emit(t, 0).address == phone.emit(t, 0).address == address.at(t)
    # Nearby Info's tag changes with the address, so the frame cannot link two addresses.
    assert phone.emit(START + 150, 0).raw != phone.emit(START + 1500, 0).raw
    # Two addresses, so two anonymous subjects the gateway cannot link.
    named = refs(phone, START + 50, START + 150)
    assert [kind for kind, _ in named] == [SubjectType.ANONYMOUS] * 2
    assert len({ref for _, ref in named}) == 2


def test_android_phones_send_nearby_service_data() -> None:
    phone = PhoneFirmware("android", rpa(), 0.5)
    _, _, service_data, manufacturer_data, _ = parse_advertisement_data_bytes(phone.emit(0, 0).raw)
    assert list(service_data) == ["0000fef3-0000-1000-8000-00805f9b34fb"]
    assert manufacturer_data == {}


def test_store_beacons_are_not_subjects_but_badges_are() -> None:
    store = IBeaconFirmware(
        UUID("f7826da6-4fa2-4e98-8024-bc5b71e0893e"), 1, 2, "C1:00:00:00:00:01", 1
    )
    badge = IBeaconFirmware(
        UUID("f7826da6-4fa2-4e98-8024-bc5b71e0893e"), 1, 3, "C1:00:00:00:00:02", 1
    )
    assert refs(store, 0, 100) == []
    assert refs(badge, 0, 100) == [(SubjectType.BEACON, "f7826da6-4fa2-4e98-8024-bc5b71e0893e.1.3")]
    assert store.emit(0, 0) == store.emit(50, 7)


def test_eddystone_interleaves_tlm_and_drains_its_battery() -> None:
    beacon = EddystoneFirmware(
        namespace=bytes(10),
        instance=bytes(6),
        address="C2:00:00:00:00:01",
        interval_s=1.0,
        powered_on=START - 10 * 86_400,
        url="https://goo.gl/x",
        tlm_every=5,
        battery_mv=3000,
        drain_mv_per_day=2.0,
    )
    frame_types = [beacon.emit(START + i, i).raw[11] for i in range(10)]
    assert frame_types == [0x00, 0x10, 0x00, 0x10, 0x20, 0x00, 0x10, 0x00, 0x10, 0x20]
    tlm = beacon.emit(START, 4).raw[11:]
    assert int.from_bytes(tlm[2:4], "big") == 3000 - 20  # ten days at 2 mV a day
    assert int.from_bytes(tlm[6:10], "big") == 10 * 86_400  # one advert a second since power-on
    assert int.from_bytes(tlm[10:14], "big") == 10 * 86_400 * 10
    later = beacon.emit(START + 100 * 86_400, 4).raw[11:]
    assert int.from_bytes(later[2:4], "big") == 3000 - 220
    # The gateway names an Eddystone-UID beacon by namespace and instance.
    assert refs(beacon, START, START + 10) == [
        (SubjectType.BEACON, f"{bytes(10).hex()}.{bytes(6).hex()}")
    ]


def test_wearables_rotate_their_address_and_keep_their_kind() -> None:
    for kind, marker in (("watch", 0x004C), ("band", 0x0157)):
        wearable = WearableFirmware(kind, rpa(), 1.0)
        first, later = wearable.emit(0, 0), wearable.emit(901, 0)
        assert first.address != later.address
        assert marker in parse_advertisement_data_bytes(first.raw)[3]
    strap = WearableFirmware("hr_strap", RotatingAddress("s", AddressType.NRPA), 1.0)
    assert strap.emit(0, 0).raw == strap.emit(1000, 0).raw  # its frame names nobody
    assert int(strap.emit(0, 0).address[:2], 16) >> 6 == 0b00


def test_the_gateway_tells_the_wearables_from_phones() -> None:
    classes = {
        kind: decode_advertisement(WearableFirmware(kind, rpa(), 1.0).emit(0, 0).raw).device_class
        for kind in ("watch", "band", "hr_strap")
    }
    assert classes == {
        "watch": DeviceClass.APPLE_WATCH,
        "band": DeviceClass.HUAMI_XIAOMI,
        "hr_strap": DeviceClass.HEART_RATE,
    }
