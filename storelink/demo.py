"""`storelink demo`: the whole chain in one process, with nothing installed beyond the package.

An embedded MQTT broker (or the one given), the cloud API on SQLite, a simulated store whose
shoppers carry phones running the shopper app, and the real gateway pipeline scanning the
simulated radio through bleak's scanner interface. A listener plays the shopper app's side and
counts the offers that arrive on the shoppers' notification topics. Four weeks of made-up
history (``storelink.demo_history``) give the dashboard at /dashboard/ something to compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import uvicorn

from cloud_api.app import create_app
from cloud_api.auth.signing import sign_body
from cloud_api.config import CloudSettings
from cloud_api.deps import CloudContext
from cloud_api.ingest.presence_service import PresenceService
from cloud_api.match.campaigns import DEMO_CAMPAIGNS_FILE
from cloud_api.match.offer_policy import offer_policy
from firmware_sim.scenario import load_scenario
from firmware_sim.world import DEMO_STORE_BEACON_ID, demo_world
from gateway.config import GatewaySettings
from gateway.simulated import simulated_gateway
from storelink.broker import EmbeddedBroker
from storelink.clock import ScaledClock
from storelink.demo_history import HistoryShape, seed_history
from storelink.mqtt import make_client
from storelink.settings import MqttProtocol, StorelinkSettings
from storelink.wire import TOPIC_ROOT

log = logging.getLogger("storelink.demo")

STORE_ID = "store-1"
GATEWAY_ID = "gw-1"
# The dashboard draws the demo store with the boutique scenario's floor plan and zones.
FLOOR_PLAN = "boutique"
HISTORY_ZONES = ("entrance", "racks", "fitting-rooms")
DEMO_STAFF_EMAIL = "manager@demo.example"


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float | None = None
    broker_url: str | None = None
    port: int = 8000
    speed: float = 1.0
    data_dir: Path | None = None
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class DemoShopper:
    """A registered shopper of the demo and the online cart they left, if any."""

    name: str
    personal_offers: bool
    cart_age: timedelta | None
    items: tuple[dict[str, Any], ...] = ()


DEMO_SHOPPERS = (
    DemoShopper(
        "Alice",
        personal_offers=True,
        cart_age=timedelta(hours=5),
        items=(
            {
                "sku": "SHOE-042",
                "name": "Trail runners",
                "category": "shoes",
                "unit_price": "89.90",
                "quantity": 1,
            },
            {
                "sku": "SOCK-007",
                "name": "Merino socks",
                "category": "accessories",
                "unit_price": "12.50",
                "quantity": 2,
            },
        ),
    ),
    DemoShopper(
        "Bruno",
        personal_offers=True,
        cart_age=timedelta(days=2),
        items=(
            {
                "sku": "JKT-310",
                "name": "Rain jacket",
                "category": "outerwear",
                "unit_price": "149.00",
                "quantity": 1,
            },
        ),
    ),
    # Left a cart minutes ago: still shopping online, so not abandoned, so no offer.
    DemoShopper(
        "Chiara",
        personal_offers=True,
        cart_age=timedelta(minutes=5),
        items=(
            {
                "sku": "CAP-001",
                "name": "Wool cap",
                "category": "accessories",
                "unit_price": "24.00",
                "quantity": 1,
            },
        ),
    ),
    # Agreed to footfall analytics only: counted, never sent an offer.
    DemoShopper(
        "Deniz",
        personal_offers=False,
        cart_age=timedelta(hours=3),
        items=(
            {
                "sku": "BAG-220",
                "name": "Day pack",
                "category": "bags",
                "unit_price": "64.00",
                "quantity": 1,
            },
        ),
    ),
)
ANONYMOUS_PHONES = 3
# Everyone comes back every few minutes so that a demo left running keeps showing traffic.
ROUND_S = 180.0
OPEN_ENDED_ROUNDS = 160


@dataclass
class NotificationListener:
    """The shopper app's side: counts what arrives on any shopper's notification topic."""

    url: str
    protocol: MqttProtocol
    received: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: mqtt.Client | None = None

    def start(self) -> None:
        client, address = make_client(self.url, self.protocol, f"demo-app-{secrets.token_hex(4)}")
        topic = f"{TOPIC_ROOT}/shoppers/+/notifications"

        def on_connect(c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
            c.subscribe(topic, qos=1)

        def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
            payload = json.loads(message.payload)
            with self._lock:
                self.received.append(payload)
            log.info(
                "shopper app %s: %s, code %s",
                payload.get("shopper_ref"),
                payload.get("message"),
                payload.get("offer_code"),
            )

        client.on_connect = on_connect
        client.on_message = on_message
        client.connect_async(address.host, address.port)
        client.loop_start()
        self._client = client

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def count(self) -> int:
        with self._lock:
            return len(self.received)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the demo's event loop; the demo owns the signals, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _seed_store(api: httpx.AsyncClient, secret: str, now: datetime) -> list[bytes]:
    """Register the demo shoppers and post their carts; returns the app keys their phones use."""
    app_keys: list[bytes] = []
    for number, shopper in enumerate(DEMO_SHOPPERS, start=1):
        response = await api.post(
            "/v1/shoppers",
            json={
                "display_name": shopper.name,
                "consent": {
                    "personal_offers": shopper.personal_offers,
                    "footfall_analytics": True,
                },
                "consent_text_version": "demo-2026-11",
            },
        )
        response.raise_for_status()
        registered = response.json()
        app_keys.append(bytes.fromhex(registered["app_key"]))
        if shopper.cart_age is None:
            continue
        total = sum(float(i["unit_price"]) * int(i["quantity"]) for i in shopper.items)
        body = json.dumps(
            {
                "cart_id": f"demo-cart-{number}",
                "shopper_id": registered["shopper_id"],
                "items": list(shopper.items),
                "total": f"{total:.2f}",
                "currency": "EUR",
                "status": "open",
                "updated_at": (now - shopper.cart_age).isoformat(),
            }
        ).encode()
        response = await api.post(
            "/v1/webhooks/carts",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Storelink-Signature": sign_body(secret, body),
            },
        )
        response.raise_for_status()
        log.info(
            "registered %s (%s) with a cart %s old",
            shopper.name,
            registered["shopper_id"],
            shopper.cart_age,
        )
    return app_keys


async def _dashboard_login(api: httpx.AsyncClient, admin: dict[str, str]) -> str:
    """The demo store's floor plan and a store manager's account; returns their password."""
    for zone in load_scenario(FLOOR_PLAN).floor.zones:
        body = {"zone_id": zone.id, "name": zone.id, "polygon": zone.polygon}
        created = await api.post(f"/v1/stores/{STORE_ID}/zones", json=body, headers=admin)
        created.raise_for_status()
    password = secrets.token_urlsafe(12)
    account = {"email": DEMO_STAFF_EMAIL, "password": password, "store_ids": [STORE_ID]}
    (await api.post("/v1/staff", json=account, headers=admin)).raise_for_status()
    return password


def _rounds(options: DemoOptions) -> int:
    if options.duration_s is None:
        return OPEN_ENDED_ROUNDS
    return int(options.duration_s * options.speed // ROUND_S) + 1


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the cloud API stopped while starting")
        await asyncio.sleep(0.05)


async def run_demo(
    options: DemoOptions, *, install_signal_handlers: bool = False
) -> dict[str, Any]:
    """Run the demo until ``options.duration_s`` passes (or a signal); return its summary."""
    # One line per HTTP call of the seeding client would drown the story the log tells.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop = asyncio.Event()
    if install_signal_handlers:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        protocol: MqttProtocol
        if options.broker_url is None:
            broker = await stack.enter_async_context(EmbeddedBroker())
            broker_url, protocol = broker.url, "3.1.1"
        else:
            broker_url, protocol = options.broker_url, "5"
        data_dir = options.data_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="storelink-demo-"))
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        database = data_dir / "storelink-demo.db"
        # Each demo tells its own story: no visits or queued events from an earlier run.
        for leftover in (database, data_dir / "gateway-outbox.db"):
            leftover.unlink(missing_ok=True)

        shared = StorelinkSettings(mqtt_url=broker_url, mqtt_protocol=protocol)
        secret = secrets.token_hex(16)
        admin_token = secrets.token_urlsafe(24)
        cloud_settings = CloudSettings(
            mqtt_url=shared.mqtt_url,
            mqtt_protocol=shared.mqtt_protocol,
            app_uuid=shared.app_uuid,
            database_url=f"sqlite:///{database}",
            webhook_secret=secret,
            admin_token=admin_token,
            campaigns_file=DEMO_CAMPAIGNS_FILE,
        )
        cloud_app = create_app(cloud_settings)
        server = _EmbeddedServer(
            uvicorn.Config(
                cloud_app,
                host=options.host,
                port=options.port,
                log_level="warning",
            )
        )
        server_task = asyncio.create_task(server.serve())
        await _wait_started(server, server_task)
        base_url = f"http://{options.host}:{options.port}"
        log.info("cloud API on %s (broker %s, database %s)", base_url, broker_url, database)
        context: CloudContext = cloud_app.state.context
        service = PresenceService(context.sessions, context.directory, offer_policy(cloud_settings))
        shape = HistoryShape(STORE_ID, GATEWAY_ID, HISTORY_ZONES)
        events = await asyncio.to_thread(
            seed_history, service, context.sessions, shape, datetime.now(UTC)
        )
        log.info("seeded %d presence events of made-up history (4 weeks)", events)

        listener = NotificationListener(broker_url, protocol)
        listener.start()
        stack.callback(listener.stop)

        clock = ScaledClock(speed=options.speed)
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as api:
            admin = {"Authorization": f"Bearer {admin_token}"}
            created = await api.post(
                "/v1/stores",
                json={
                    "store_id": STORE_ID,
                    "name": "Demo boutique",
                    "store_beacons": [DEMO_STORE_BEACON_ID],
                },
                headers=admin,
            )
            created.raise_for_status()
            password = await _dashboard_login(api, admin)
            log.info(
                "dashboard: %s/dashboard/ - log in as %s, password %s "
                "(or log in with the admin token %s)",
                base_url,
                DEMO_STAFF_EMAIL,
                password,
                admin_token,
            )
            app_keys = await _seed_store(api, secret, datetime.fromtimestamp(clock.now(), UTC))
            world = demo_world(
                app_uuid=shared.app_uuid,
                start=clock.now(),
                app_keys=app_keys,
                anonymous=ANONYMOUS_PHONES,
                seed=secrets.randbits(32),
                gateway_id=GATEWAY_ID,
                rounds=_rounds(options),
                round_s=ROUND_S,
            )
            gateway_settings = GatewaySettings(
                mqtt_url=broker_url,
                mqtt_protocol=protocol,
                app_uuid=shared.app_uuid,
                store_id=STORE_ID,
                gateway_id=GATEWAY_ID,
                zone_id="entrance",
                store_beacons=[DEMO_STORE_BEACON_ID],
                outbox_path=str(data_dir / "gateway-outbox.db"),
            )
            async with simulated_gateway(gateway_settings, clock, world):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=options.duration_s)
            # The gateway's last exits are on the wire; give the cloud a moment to commit them.
            await asyncio.sleep(1.0)
            summary: dict[str, Any] = (await api.get("/v1/stats/summary", headers=admin)).json()
        summary["notifications_received"] = listener.count()
        summary["api"] = base_url
        server.should_exit = True
        await server_task
    return summary
