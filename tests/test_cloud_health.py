"""Liveness, readiness and Prometheus metrics of the cloud API, with a real broker."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from cloud_api.app import create_app
from storelink.broker import free_port
from tests.helpers import wait_for
from tests.services import Mosquitto
from tests.test_cloud_ingest import GATEWAY_TOPIC, publish, settings_for


def metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


def test_ready_and_counting_with_a_broker(mosquitto: Mosquitto, tmp_path: Path) -> None:
    app = create_app(settings_for(mosquitto.url, tmp_path))
    with TestClient(app) as client:
        assert app.state.consumer.wait_until_subscribed(10)
        assert client.get("/readyz").json() == {
            "status": "ok",
            "database": "ok",
            "mqtt": "connected",
        }
        response = client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        assert metric(client, "storelink_ingest_mqtt_connected") == 1.0
        assert metric(client, "storelink_ingest_invalid_payloads_total") == 0.0

        publish(mosquitto.url, GATEWAY_TOPIC, b"not json")
        wait_for(lambda: metric(client, "storelink_ingest_invalid_payloads_total") == 1.0)


def test_not_ready_while_the_broker_is_unreachable(tmp_path: Path) -> None:
    closed = f"mqtt://127.0.0.1:{free_port()}"
    with TestClient(create_app(settings_for(closed, tmp_path))) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["mqtt"] == "disconnected"
        assert metric(client, "storelink_ingest_mqtt_connected") == 0.0
