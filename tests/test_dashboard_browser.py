"""The built-in dashboard in a real browser: Debian's headless Chromium driven by Playwright.

A real cloud (uvicorn on a free port) with its MQTT ingest on a real Mosquitto, four weeks of
history stored through the ingest's own code, and presence, status and beacon messages published
on the broker as a gateway publishes them. Set STORELINK_SCREENSHOT_DIR=docs/img to refresh the
README's pictures (``make screenshots``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from cloud_api.app import create_app, offer_policy
from cloud_api.config import CloudSettings
from cloud_api.deps import CloudContext
from cloud_api.ingest.presence_service import PresenceService
from firmware_sim.scenario import load_scenario
from firmware_sim.world import SimShopper, StoreWorld
from gateway.config import GatewaySettings
from gateway.simulated import simulated_gateway
from storelink.broker import free_port
from storelink.clock import SystemClock
from storelink.demo_history import HistoryShape, seed_history
from storelink.mqtt import make_client
from storelink.wire import (
    BeaconFleetReport,
    BeaconHealth,
    GatewayState,
    GatewayStatus,
    beacons_topic,
    status_topic,
)
from tests.helpers import ADMIN_HEADERS, ADMIN_TOKEN, wait_for
from tests.services import running_mosquitto

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STORE_A, STORE_B = "store-a", "store-b"
GATEWAY = "gw-door"
SIMULATED_GATEWAY = "gw-fitting-rooms"
ZONES = ("entrance", "racks", "fitting-rooms")
BEACON = "8b0ca750095477cb3e77:000000000001"
PASSWORD = "correct horse battery"
STAFF_A, STAFF_B = "anna@store-a.example", "ben@store-b.example"


@dataclass
class Cloud:
    url: str
    mqtt_url: str
    context: CloudContext
    publisher: mqtt.Client


def _serve(app: FastAPI, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="dashboard-cloud", daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, "the cloud to start")
    return server, thread


def publish(publisher: mqtt.Client, topic: str, payload: str, retain: bool = False) -> None:
    publisher.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)


def set_up_stores(url: str) -> None:
    """Two stores and a staff member for each, as the administrator sets them up; store A has
    the boutique's floor plan."""
    with httpx.Client(base_url=url, headers=ADMIN_HEADERS) as admin:
        for store, email in ((STORE_A, STAFF_A), (STORE_B, STAFF_B)):
            admin.post("/v1/stores", json={"store_id": store, "name": store}).raise_for_status()
            staff = {"email": email, "password": PASSWORD, "store_ids": [store]}
            admin.post("/v1/staff", json=staff).raise_for_status()
        for zone in load_scenario("boutique").floor.zones:
            body = {"zone_id": zone.id, "name": zone.id, "polygon": zone.polygon}
            admin.post(f"/v1/stores/{STORE_A}/zones", json=body).raise_for_status()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    with running_mosquitto() as broker:
        database = tmp_path_factory.mktemp("dashboard") / "storelink.db"
        settings = CloudSettings(
            database_url=f"sqlite:///{database}",
            mqtt_url=broker.url,
            mqtt_protocol="5",
            mqtt_client_id=f"dashboard-test-{free_port()}",
            admin_token=ADMIN_TOKEN,
        )
        app = create_app(settings)
        port = free_port()
        server, thread = _serve(app, port)
        context: CloudContext = app.state.context
        assert app.state.consumer.wait_until_subscribed(10)
        service = PresenceService(context.sessions, context.directory, offer_policy(settings))
        now = datetime.now(UTC)
        seed_history(service, context.sessions, HistoryShape(STORE_A, GATEWAY, ZONES), now)
        url = f"http://127.0.0.1:{port}"
        set_up_stores(url)
        publisher, address = make_client(broker.url, "5", f"gateway-{GATEWAY}")
        publisher.connect(address.host, address.port)
        publisher.loop_start()
        try:
            yield Cloud(url, broker.url, context, publisher)
        finally:
            publisher.disconnect()
            publisher.loop_stop()
            server.should_exit = True
            thread.join(10)


@dataclass
class Browsing:
    page: Page
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browsing(browser: Browser) -> Iterator[Browsing]:
    # A tablet in landscape, in the store's time zone (the history is in UTC hours).
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id="UTC", accept_downloads=True
    )
    page = context.new_page()
    seen = Browsing(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    yield seen
    context.close()
    assert seen.errors == [], seen.errors


def screenshot(page: Page, name: str, tmp_path: Path) -> None:
    path = tmp_path / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("STORELINK_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def log_in(page: Page, cloud: Cloud, email: str) -> None:
    page.goto(f"{cloud.url}/dashboard/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#nav")).to_be_visible()


def gateway_reports(cloud: Cloud) -> None:
    """The door gateway's retained status and beacon report, as it publishes them."""
    now = datetime.now(UTC)
    status = GatewayStatus(
        store_id=STORE_A,
        gateway_id=GATEWAY,
        state=GatewayState.ONLINE,
        ts=now,
        version="0.1.0",
        uptime_s=30.0,
        adverts_per_s=42.0,
        passers_by=3,
    )
    report = BeaconFleetReport(
        store_id=STORE_A,
        gateway_id=GATEWAY,
        ts=now,
        missing_after_s=60,
        beacons=(BeaconHealth(beacon_id=BEACON, missing=False, last_seen=now, battery_mv=2950),),
    )
    publish(cloud.publisher, status_topic(STORE_A, GATEWAY), status.model_dump_json(), True)
    publish(cloud.publisher, beacons_topic(STORE_A, GATEWAY), report.model_dump_json(), True)


@contextmanager
def simulated_shopper(cloud: Cloud, zone: str, stay_s: float, outbox: Path) -> Iterator[None]:
    """A phone without the app walks up to a real gateway scanning the simulator's radio, in
    real time, stays ``stay_s`` and walks off; the gateway publishes over the test's broker."""
    clock = SystemClock()
    settings = GatewaySettings(
        mqtt_url=cloud.mqtt_url,
        mqtt_protocol="5",
        store_id=STORE_A,
        gateway_id=SIMULATED_GATEWAY,
        zone_id=zone,
        outbox_path=str(outbox),
    )
    world = StoreWorld(
        app_uuid=settings.app_uuid,
        gateways={SIMULATED_GATEWAY: (0.0, 1.0)},
        shoppers=[SimShopper("walk-in", None, arrive_s=1.0, stay_s=stay_s)],
        store_beacons=[],
        start=clock.now(),
        seed=7,
    )
    done = threading.Event()

    async def scan() -> None:
        async with simulated_gateway(settings, clock, world):
            await asyncio.to_thread(done.wait)

    thread = threading.Thread(target=asyncio.run, args=(scan(),), name="gateway", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(20)


def zone_count(page: Page, zone: str) -> int:
    label = page.locator(f'#live g[data-zone="{zone}"] text').get_attribute("aria-label") or ""
    match = re.fullmatch(rf"{re.escape(zone)}: (\d+)", label)
    assert match, label
    return int(match[1])


def api(cloud: Cloud, path: str, **params: str) -> Any:
    response = httpx.get(
        f"{cloud.url}{path}", params={"store_id": STORE_A, **params}, headers=ADMIN_HEADERS
    )
    response.raise_for_status()
    return response.json()


def test_login_page_refuses_a_wrong_password(cloud: Cloud, browsing: Browsing) -> None:
    page = browsing.page
    page.goto(f"{cloud.url}/dashboard/")
    page.fill("input[name=email]", STAFF_A)
    page.fill("input[name=password]", "not the password")
    with page.expect_response("**/v1/auth/login") as answer:
        page.click("#login-form button[type=submit]")
    assert answer.value.status == 401
    expect(page.locator("#login-error")).to_have_text("Wrong e-mail or password.")
    expect(page.locator("#nav")).to_be_hidden()
    # The browser logs the refused request itself; the page said what to do instead.
    wait_for(lambda: browsing.errors, 5, "the browser to log the 401")
    assert all("401" in error for error in browsing.errors), browsing.errors
    browsing.errors.clear()


def test_now_page_shows_live_occupancy_without_a_reload(
    cloud: Cloud, browsing: Browsing, tmp_path: Path
) -> None:
    page = browsing.page
    gateway_reports(cloud)
    wait_for(lambda: api(cloud, "/v1/stats/health")["beacons"], 10, "the beacon report")
    log_in(page, cloud, STAFF_A)
    expect(page.locator("#store-select option")).to_have_count(1)
    expect(page.locator("#live svg.floorplan")).to_be_visible()
    before = zone_count(page, "fitting-rooms")
    page.evaluate("window.__sameDocument = true")

    with simulated_shopper(cloud, "fitting-rooms", 15.0, tmp_path / "outbox.db"):
        wait_for(lambda: zone_count(page, "fitting-rooms") == before + 1, 30, "the shopper")
        assert page.evaluate("window.__sameDocument") is True
        in_store = int(page.locator("#in-store").inner_text())
        assert in_store == api(cloud, "/v1/stats/occupancy")["in_store"]

        expect(page.locator("#live table").first).to_contain_text(GATEWAY)
        expect(page.locator("#live table").first).to_contain_text("online")
        expect(page.locator("#live table").nth(1)).to_contain_text("2.95 V")
        screenshot(page, "now", tmp_path)

        # The walk-in leaves: the gateway's exit takes the live count back down.
        wait_for(lambda: zone_count(page, "fitting-rooms") == before, 60, "the shopper to leave")
        assert page.evaluate("window.__sameDocument") is True


def test_footfall_page_shows_the_api_numbers(
    cloud: Cloud, browsing: Browsing, tmp_path: Path
) -> None:
    page = browsing.page
    log_in(page, cloud, STAFF_A)
    page.click("nav a[data-page=footfall]")
    expect(page.locator("#returning-method")).to_contain_text("randomise")
    today = datetime.now(UTC).date()
    visitors = api(
        cloud, "/v1/stats/visitors", **{"from": str(today - timedelta(days=6)), "to": str(today)}
    )
    cards = page.locator(".card")
    expect(cards.filter(has_text="Unique visitors")).to_contain_text(
        str(visitors["unique_visitors"])
    )
    expect(cards.filter(has_text="Capture rate")).to_be_visible()
    assert page.locator("canvas").count() == 2
    heat = page.locator("table.heat")
    expect(heat).to_contain_text("racks")
    screenshot(page, "footfall", tmp_path)


def test_engagement_page(cloud: Cloud, browsing: Browsing, tmp_path: Path) -> None:
    page = browsing.page
    log_in(page, cloud, STAFF_A)
    page.click("nav a[data-page=engagement]")
    heading = page.locator("#page h2")
    expect(heading).to_have_text("Engagement")
    # Either the campaigns' figures or an empty state that says what to do.
    expect(page.locator("#page .empty, #page table").first).to_be_visible()
    screenshot(page, "engagement", tmp_path)


def test_exports_download_the_tables_as_csv(
    cloud: Cloud, browsing: Browsing, tmp_path: Path
) -> None:
    page = browsing.page
    log_in(page, cloud, STAFF_A)
    page.click("nav a[data-page=exports]")
    button = page.locator('button[data-export="/v1/stats/zones"]')
    with page.expect_download() as download_info:
        button.click()
    download = download_info.value
    assert download.suggested_filename.startswith(f"zones-{STORE_A}-")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert rows and set(rows[0]) == {"zone_id", "hour", "stays", "dwell_s"}
    assert {row["zone_id"] for row in rows} == set(ZONES)
    expect(page.locator("#export-status")).to_contain_text("Downloaded")
    # The engagement tables: the page turns the endpoint's JSON into CSV.
    with page.expect_download() as download_info:
        page.locator('button[data-export="engagement-segments"]').click()
    segments = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(segments)
    engagement = api(cloud, "/v1/stats/engagement")
    expected = {name: str(count) for name, count in engagement["segments"].items()}
    exported = {
        r["segment"]: r["shoppers"] for r in csv.DictReader(io.StringIO(segments.read_text()))
    }
    assert exported == expected and exported
    screenshot(page, "exports", tmp_path)


def test_a_staff_member_of_store_b_cannot_see_store_a(cloud: Cloud, browsing: Browsing) -> None:
    page = browsing.page
    log_in(page, cloud, STAFF_B)
    options = page.locator("#store-select option")
    expect(options).to_have_count(1)
    expect(options).to_have_text(STORE_B)
    # Store B has no gateway yet: the page says where to start.
    expect(page.locator("#live")).to_contain_text("No gateway has reported yet")
    expect(page.locator("#live")).to_contain_text("docs/raspberry-pi.md")
    status = page.evaluate(
        """async (store) => {
            const token = sessionStorage.getItem("storelink.token");
            const answer = await fetch(`/v1/stats/occupancy?store_id=${store}`,
                {headers: {Authorization: `Bearer ${token}`}});
            return [answer.status, await answer.text()];
        }""",
        STORE_A,
    )
    assert status[0] == 403
    assert f"no access to store {STORE_A!r}" in json.loads(status[1])["detail"]
    # The browser logs the refused request; nothing else went wrong.
    wait_for(lambda: browsing.errors, 5, "the browser to log the 403")
    assert all("403" in error for error in browsing.errors), browsing.errors
    browsing.errors.clear()
