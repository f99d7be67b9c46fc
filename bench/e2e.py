# ruff: noqa: E402 (the project imports follow a sys.path fix)
"""Advert to offer notification, end to end with real Mosquitto. Prints JSON lines.

The gateway pipeline scans firmware_sim's simulated store through bleak's scanner interface at
real speed; ``--shoppers`` registered app shoppers walk in (each within the first 18 seconds of
each of ``--rounds`` rounds, as returning visitors in the later ones). The gateway publishes each
enter to a Mosquitto started here; the cloud app (its MQTT consumer, a SQLite file) decides it
against a store-enter campaign, commits, publishes the offer on the shopper's topic, and a
separate MQTT client playing the shopper apps receives it.

Latency is measured from the advert that confirmed the enter (the presence event's time, which
the gateway takes from that advert's reception on the same wall clock) to the notification's
arrival at the shopper app: it spans the gateway pipeline, the broker twice, the consumer's
batching, the decision, the commit and the publish. Target: p99 under 200 ms.

Run with ``.venv/bin/python bench/e2e.py [--shoppers N] [--rounds R]``; needs mosquitto.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cloud_api.app import create_app
from cloud_api.config import CloudSettings
from cloud_api.store.models import Offer
from storelink.mqtt import make_client
from storelink.wire import TOPIC_ROOT
from tests.services import running_mosquitto
from tests.simulated_store import run_simulated_store

TOKEN = "bench-admin-token"
ROUND_S = 40.0


class Phones:
    """Every shopper app at once: one client subscribed to all notification topics."""

    def __init__(self, url: str) -> None:
        self.received: list[tuple[float, dict[str, object]]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client, address = make_client(url, "5", "bench-phones")
        topic = f"{TOPIC_ROOT}/shoppers/+/notifications"
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("could not subscribe to the notification topics")

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        arrived = time.time()
        with self._lock:
            self.received.append((arrived, json.loads(message.payload)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoppers", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_mosquitto() as broker:
        settings = CloudSettings(
            database_url=f"sqlite:///{tmp}/e2e.db",
            mqtt_url=broker.url,
            mqtt_protocol="5",
            mqtt_client_id="bench-e2e-cloud",
            admin_token=TOKEN,
            offers_per_shopper_per_day=None,
        )
        app = create_app(settings)
        with TestClient(app) as client:
            keys = []
            for _ in range(args.shoppers):
                response = client.post(
                    "/v1/shoppers",
                    json={
                        "consent": {"personal_offers": True, "footfall_analytics": True},
                        "consent_text_version": "bench",
                    },
                )
                response.raise_for_status()
                keys.append(bytes.fromhex(response.json()["app_key"]))
            client.post(
                "/v1/campaigns",
                json={"id": "welcome", "name": "Welcome", "reward": {"value": 10}},
                headers={"Authorization": f"Bearer {TOKEN}"},
            ).raise_for_status()
            phones = Phones(broker.url)
            try:
                run_simulated_store(
                    broker.url,
                    keys,
                    Path(tmp) / "gateway-outbox.db",
                    wall_seconds=(args.rounds - 1) * ROUND_S + 22.0,
                    anonymous=4,
                    seed=11,
                    rounds=args.rounds,
                    round_s=ROUND_S,
                )
                time.sleep(2.0)
            finally:
                phones.close()
            with app.state.context.sessions() as session:
                rows = session.execute(sa.select(Offer.code, Offer.created_at))
                made = {code: created_at for code, created_at in rows}
    latencies = sorted(
        (arrived - made[str(payload["offer_code"])].timestamp()) * 1000
        for arrived, payload in phones.received
        if str(payload["offer_code"]) in made
    )
    if not latencies:
        raise SystemExit("no notification arrived")
    common = {"notifications": len(latencies), "offers": len(made)}
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    for metric, value in (
        ("e2e_advert_to_notification_p50_ms", statistics.median(latencies)),
        ("e2e_advert_to_notification_p99_ms", p99),
        ("e2e_advert_to_notification_max_ms", latencies[-1]),
    ):
        print(json.dumps({"metric": metric, "value": round(value, 1), "unit": "ms", **common}))


if __name__ == "__main__":
    main()
