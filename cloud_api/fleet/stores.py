"""Stores, their zones and provisioned gateways, and the retained config each gateway consumes.

A gateway's ``GatewayConfig`` is built from its store (calibration, staff and store beacons, the
app's UUID), the zones it detects and the IRKs of the consenting shoppers' wearables, and
published retained on its config topic. ``publish_store_configs`` publishes it again for every
gateway of a store: call it after anything in it changes (a consent, a device, a beacon list).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

import sqlalchemy as sa
from fastapi import HTTPException, status
from sqlalchemy.orm import Session

from cloud_api.config import CloudSettings
from cloud_api.shoppers.devices import consented_wearables
from cloud_api.store.models import Gateway, Store
from storelink.mqtt import make_client
from storelink.wire import CONFIG_QOS, Calibration, GatewayConfig, ZoneConfig, config_topic

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0


def missing_stores(session: Session, store_ids: Collection[str]) -> list[str]:
    known = set(session.scalars(sa.select(Store.id).where(Store.id.in_(set(store_ids)))))
    return sorted(set(store_ids) - known)


def require_stores_exist(session: Session, store_ids: Collection[str]) -> None:
    missing = missing_stores(session, store_ids)
    if missing:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown store(s): {', '.join(missing)} (create them with POST /v1/stores)",
        )


def get_store(session: Session, store_id: str) -> Store:
    store = session.get(Store, store_id)
    if store is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no store {store_id!r}")
    return store


def gateway_config(
    store: Store, gateway: Gateway, irks: Mapping[str, bytes], default_app_uuid: str
) -> GatewayConfig:
    """What ``gateway`` should run with: its store's shared settings, its zones, the IRKs."""
    return GatewayConfig(
        version=gateway.config_version,
        store_id=store.id,
        gateway_id=gateway.id,
        zones=tuple(ZoneConfig.model_validate(zone) for zone in gateway.zones) or None,
        calibration=Calibration.model_validate(store.calibration),
        # A store that lists none leaves the gateway its local lists; IRKs, by contrast, are
        # always sent, so that a withdrawn consent takes the last one away.
        staff_beacons=tuple(store.staff_beacons) or None,
        store_beacons=tuple(store.store_beacons) or None,
        app_uuid=store.app_uuid or default_app_uuid,
        irks={ref: irk.hex() for ref, irk in irks.items()},
        rssi_offset_db=gateway.rssi_offset_db,
    )


class ConfigPublisher(Protocol):
    def publish(self, configs: Sequence[GatewayConfig]) -> bool:
        """Publish each config retained on its gateway's topic; False when it could not."""
        ...

    def clear(self, topics: Sequence[str]) -> bool:
        """Remove the retained configs on ``topics``; False when it could not."""
        ...


class MqttConfigPublisher:
    """Publishes over a short connection of its own: configs change a few times a day, and
    this needs nothing of the ingest's client (which may be in another process)."""

    def __init__(self, settings: CloudSettings) -> None:
        self._settings = settings

    def publish(self, configs: Sequence[GatewayConfig]) -> bool:
        return self._retain(
            [(config_topic(c.store_id, c.gateway_id), c.model_dump_json()) for c in configs]
        )

    def clear(self, topics: Sequence[str]) -> bool:
        # An empty retained message removes the one the broker keeps.
        return self._retain([(topic, "") for topic in topics])

    def _retain(self, messages: Sequence[tuple[str, str]]) -> bool:
        if not messages:
            return True
        client_id = f"{self._settings.mqtt_client_id}-config-{secrets.token_hex(4)}"
        client, address = make_client(
            self._settings.mqtt_url, self._settings.mqtt_protocol, client_id
        )
        connected = threading.Event()
        client.on_connect = lambda _c, _u, _f, rc, _p: (
            connected.set() if not rc.is_failure else None
        )
        try:
            client.connect(address.host, address.port)
        except OSError as error:
            logger.warning("gateway configs not published: broker unreachable (%s)", error)
            return False
        client.loop_start()
        try:
            if not connected.wait(PUBLISH_TIMEOUT_S):
                logger.warning("gateway configs not published: the broker refused the connection")
                return False
            infos = [
                client.publish(topic, payload, qos=CONFIG_QOS, retain=True)
                for topic, payload in messages
            ]
            for info in infos:
                info.wait_for_publish(PUBLISH_TIMEOUT_S)
            return all(info.is_published() for info in infos)
        except (RuntimeError, ValueError) as error:
            logger.warning("gateway configs not published: %s", error)
            return False
        finally:
            client.disconnect()
            client.loop_stop()


def default_publisher(settings: CloudSettings) -> ConfigPublisher | None:
    """The cloud's publisher, or None when it runs without MQTT."""
    return MqttConfigPublisher(settings) if settings.mqtt_enabled else None


def publish_store_configs(
    session: Session,
    settings: CloudSettings,
    store_id: str,
    *,
    gateway_ids: Collection[str] | None = None,
    publisher: ConfigPublisher | None = None,
) -> bool:
    """Give the store's gateways (or those of ``gateway_ids``) a new config version, commit, and
    publish their configs retained; False when they could not be published (nothing is lost:
    the next publication carries everything). ``publisher`` defaults to the cloud's broker."""
    store = session.get(Store, store_id)
    if store is None:
        return True
    query = sa.select(Gateway).where(Gateway.store_id == store_id).order_by(Gateway.id)
    if gateway_ids is not None:
        query = query.where(Gateway.id.in_(set(gateway_ids)))
    gateways = list(session.scalars(query))
    for gateway in gateways:
        gateway.config_version += 1
    irks = consented_wearables(session, store_id)
    configs = [gateway_config(store, gateway, irks, settings.app_uuid) for gateway in gateways]
    session.commit()
    publisher = publisher or default_publisher(settings)
    if publisher is None:
        return False
    return publisher.publish(configs)


def publish_all_store_configs(
    session: Session, settings: CloudSettings, *, publisher: ConfigPublisher | None = None
) -> bool:
    """``publish_store_configs`` for every store (a change that concerns them all)."""
    published = True
    for store_id in list(session.scalars(sa.select(Store.id).order_by(Store.id))):
        published &= publish_store_configs(session, settings, store_id, publisher=publisher)
    return published
