"""Stores, their zones and gateways; provisioning a gateway; its status history."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Response, status
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud_api.api.pagination import Cursor, PageLimit, paginate
from cloud_api.auth.auth import AdminDep, StaffDep, StoreStaffDep
from cloud_api.deps import ContextDep, SessionDep
from cloud_api.fleet.mqtt_auth import mosquitto_hash, new_mqtt_password
from cloud_api.fleet.store_schemas import (
    GatewayCreate,
    GatewayCredentials,
    GatewayOut,
    GatewayProvisioned,
    GatewayStatusEntry,
    GatewayUpdate,
    Page,
    StoreCreate,
    StoreDetail,
    StoreOut,
    StoreUpdate,
    ZoneCreate,
    ZoneOut,
    ZoneUpdate,
)
from cloud_api.fleet.stores import default_publisher, get_store, publish_store_configs
from cloud_api.store.models import (
    BeaconHealthRow,
    Gateway,
    GatewayStatusHistory,
    GatewayStatusRow,
    Store,
    Zone,
)
from storelink.wire import Calibration, ZoneConfig, config_topic, utc_now

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/stores", tags=["stores"])


def _store_out(store: Store) -> StoreOut:
    return StoreOut(
        store_id=store.id,
        name=store.name,
        timezone=store.timezone,
        app_uuid=store.app_uuid,
        calibration=Calibration.model_validate(store.calibration),
        staff_beacons=store.staff_beacons,
        store_beacons=store.store_beacons,
        created_at=store.created_at,
    )


def _zone_out(zone: Zone) -> ZoneOut:
    return ZoneOut(
        zone_id=zone.zone_id,
        name=zone.name,
        polygon=[(x, y) for x, y in zone.polygon],
        created_at=zone.created_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, responses={409: {"description": "exists"}})
def create_store(body: StoreCreate, _admin: AdminDep, session: SessionDep) -> StoreOut:
    """Add a store; its id is chosen by the caller and never changes."""
    store = Store(
        id=body.store_id,
        name=body.name,
        timezone=body.timezone,
        app_uuid=str(body.app_uuid) if body.app_uuid else None,
        calibration=body.calibration.model_dump(mode="json"),
        staff_beacons=list(body.staff_beacons),
        store_beacons=list(body.store_beacons),
        created_at=utc_now(),
    )
    session.add(store)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, f"store {body.store_id!r} exists") from None
    return _store_out(store)


@router.get("")
def list_stores(
    principal: StaffDep, session: SessionDep, limit: PageLimit = 100, cursor: Cursor = None
) -> Page[StoreOut]:
    """The stores the caller may see (every store for the admin)."""
    query = sa.select(Store)
    if principal.store_ids is not None:
        query = query.where(Store.id.in_(principal.store_ids))
    stores, next_cursor = paginate(session, query, [(Store.id, "asc")], limit, cursor)
    return Page[StoreOut](items=[_store_out(s) for s in stores], next_cursor=next_cursor)


@router.get("/{store_id}", responses={404: {"description": "no such store"}})
def store_detail(store_id: str, _caller: StoreStaffDep, session: SessionDep) -> StoreDetail:
    """A store with its zones and gateways."""
    store = get_store(session, store_id)
    zones = session.scalars(sa.select(Zone).where(Zone.store_id == store_id).order_by(Zone.zone_id))
    gateway_ids = session.scalars(
        sa.select(Gateway.id).where(Gateway.store_id == store_id).order_by(Gateway.id)
    )
    return StoreDetail(
        **_store_out(store).model_dump(),
        zones=[_zone_out(z) for z in zones],
        gateway_ids=list(gateway_ids),
    )


@router.patch("/{store_id}", responses={404: {"description": "no such store"}})
def update_store(
    store_id: str, body: StoreUpdate, _admin: AdminDep, session: SessionDep, context: ContextDep
) -> StoreOut:
    """Change the store's shared settings; its gateways get their configs again at once."""
    store = get_store(session, store_id)
    changes = body.model_dump(exclude_unset=True, mode="json")
    for field, value in changes.items():
        setattr(store, field, value)
    session.commit()
    if changes.keys() - {"name", "timezone"}:
        publish_store_configs(session, context.settings, store_id)
    return _store_out(store)


@router.post(
    "/{store_id}/zones",
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "no such store"}, 409: {"description": "exists"}},
)
def create_zone(store_id: str, body: ZoneCreate, _admin: AdminDep, session: SessionDep) -> ZoneOut:
    """Add a zone to a store; the gateways that cover it are told on their next config."""
    get_store(session, store_id)
    zone = Zone(
        store_id=store_id,
        zone_id=body.zone_id,
        name=body.name,
        polygon=[list(point) for point in body.polygon],
        created_at=utc_now(),
    )
    session.add(zone)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"store {store_id!r} has a zone {body.zone_id!r}"
        ) from None
    return _zone_out(zone)


@router.get("/{store_id}/zones")
def list_zones(
    store_id: str,
    _caller: StoreStaffDep,
    session: SessionDep,
    limit: PageLimit = 100,
    cursor: Cursor = None,
) -> Page[ZoneOut]:
    """The zones of a store, by zone id, a page at a time."""
    get_store(session, store_id)
    query = sa.select(Zone).where(Zone.store_id == store_id)
    zones, next_cursor = paginate(session, query, [(Zone.zone_id, "asc")], limit, cursor)
    return Page[ZoneOut](items=[_zone_out(z) for z in zones], next_cursor=next_cursor)


def _lock_store_zones(session: Session, store_id: str) -> None:
    """Hold the store's row until commit: a zone is removed, and gateways are given zones, one
    at a time per store, so that no gateway is handed a zone while it is being removed.
    (SQLite writes one transaction at a time anyway, and has no FOR UPDATE.)"""
    session.execute(sa.select(Store.id).where(Store.id == store_id).with_for_update())


def _store_zone(session: Session, store_id: str, zone_id: str) -> Zone:
    get_store(session, store_id)
    zone = session.get(Zone, (store_id, zone_id))
    if zone is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"store {store_id!r} has no zone {zone_id!r}"
        )
    return zone


@router.get(
    "/{store_id}/zones/{zone_id}", responses={404: {"description": "no such zone in this store"}}
)
def zone_detail(
    store_id: str, zone_id: str, _caller: StoreStaffDep, session: SessionDep
) -> ZoneOut:
    """One zone of a store."""
    return _zone_out(_store_zone(session, store_id, zone_id))


@router.patch(
    "/{store_id}/zones/{zone_id}", responses={404: {"description": "no such zone in this store"}}
)
def update_zone(
    store_id: str, zone_id: str, body: ZoneUpdate, _admin: AdminDep, session: SessionDep
) -> ZoneOut:
    """Change a zone's name or outline. No gateway config is published: a gateway's config
    holds only the zone's id and that gateway's own distances for it (change those with
    PATCH /v1/stores/{store_id}/gateways/{gateway_id}), never the name or the polygon."""
    zone = _store_zone(session, store_id, zone_id)
    changes = body.model_dump(exclude_unset=True, mode="json")
    for field, value in changes.items():
        setattr(zone, field, value)
    session.commit()
    return _zone_out(zone)


@router.delete(
    "/{store_id}/zones/{zone_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        404: {"description": "no such zone in this store"},
        409: {"description": "a gateway still detects the zone"},
    },
)
def delete_zone(store_id: str, zone_id: str, _admin: AdminDep, session: SessionDep) -> Response:
    """Remove a zone from the store; the visits, events and statistics that name it stay. Refused
    while a gateway's config lists the zone: take it out of the gateway first (PATCH or DELETE
    the gateway), so no gateway goes on reporting a zone the store no longer has."""
    _lock_store_zones(session, store_id)
    zone = _store_zone(session, store_id, zone_id)
    gateways = session.scalars(
        sa.select(Gateway).where(Gateway.store_id == store_id).order_by(Gateway.id)
    )
    listing = [g.id for g in gateways if any(z["zone_id"] == zone_id for z in g.zones)]
    if listing:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"gateways still detect zone {zone_id!r}: {', '.join(listing)}; take it out of their "
            f"zones (PATCH /v1/stores/{store_id}/gateways/{{gateway_id}}) or delete them first",
        )
    session.delete(zone)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _gateway_out(gateway: Gateway, latest: GatewayStatusRow | None) -> GatewayOut:
    return GatewayOut(
        gateway_id=gateway.id,
        store_id=gateway.store_id,
        name=gateway.name,
        zones=[ZoneConfig.model_validate(z) for z in gateway.zones],
        rssi_offset_db=gateway.rssi_offset_db,
        config_topic=config_topic(gateway.store_id, gateway.id),
        config_version=gateway.config_version,
        state=latest.state if latest else None,
        last_status_at=latest.ts if latest else None,
        created_at=gateway.created_at,
    )


def _check_zones(session: Session, store_id: str, zones: Sequence[ZoneConfig]) -> None:
    """422 unless every zone is the store's and none appears twice."""
    _lock_store_zones(session, store_id)
    known = set(session.scalars(sa.select(Zone.zone_id).where(Zone.store_id == store_id)))
    unknown = sorted({z.zone_id for z in zones} - known)
    if unknown:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"store {store_id!r} has no zone {', '.join(unknown)}: "
            f"add it first (POST /v1/stores/{store_id}/zones)",
        )
    if len({z.zone_id for z in zones}) != len(zones):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "zones: a zone appears twice")


def _store_gateway(session: Session, store_id: str, gateway_id: str) -> Gateway:
    gateway = session.get(Gateway, gateway_id)
    if gateway is None or gateway.store_id != store_id:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"store {store_id!r} has no gateway {gateway_id!r}"
        )
    return gateway


@router.post(
    "/{store_id}/gateways",
    status_code=status.HTTP_201_CREATED,
    responses={
        404: {"description": "no such store"},
        409: {"description": "a gateway has this id"},
        422: {"description": "unknown zone"},
    },
)
def provision_gateway(
    store_id: str,
    body: GatewayCreate,
    _admin: AdminDep,
    session: SessionDep,
    context: ContextDep,
) -> GatewayProvisioned:
    """Register a gateway: its MQTT password (shown once), and its config published retained."""
    get_store(session, store_id)
    _check_zones(session, store_id, body.zones)
    password = new_mqtt_password()
    gateway = Gateway(
        id=body.gateway_id,
        store_id=store_id,
        name=body.name,
        zones=[z.model_dump(mode="json") for z in body.zones],
        rssi_offset_db=body.rssi_offset_db,
        mqtt_password_hash=mosquitto_hash(password),
        config_version=0,
        created_at=utc_now(),
    )
    session.add(gateway)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"a gateway {body.gateway_id!r} exists"
        ) from None
    published = publish_store_configs(session, context.settings, store_id, gateway_ids=[gateway.id])
    session.refresh(gateway)
    return GatewayProvisioned(
        **_gateway_out(gateway, None).model_dump(),
        mqtt_username=gateway.id,
        mqtt_password=password,
        config_published=published,
    )


@router.get("/{store_id}/gateways")
def list_store_gateways(
    store_id: str,
    _caller: StoreStaffDep,
    session: SessionDep,
    limit: PageLimit = 100,
    cursor: Cursor = None,
) -> Page[GatewayOut]:
    """The gateways of a store, a page at a time."""
    get_store(session, store_id)
    query = sa.select(Gateway).where(Gateway.store_id == store_id)
    gateways, next_cursor = paginate(session, query, [(Gateway.id, "asc")], limit, cursor)
    latest = {
        row.gateway_id: row
        for row in session.scalars(
            sa.select(GatewayStatusRow).where(GatewayStatusRow.store_id == store_id)
        )
    }
    return Page[GatewayOut](
        items=[_gateway_out(g, latest.get(g.id)) for g in gateways], next_cursor=next_cursor
    )


@router.post(
    "/{store_id}/gateways/{gateway_id}/password",
    responses={404: {"description": "no such gateway in this store"}},
)
def new_gateway_password(
    store_id: str, gateway_id: str, _admin: AdminDep, session: SessionDep
) -> GatewayCredentials:
    """A new MQTT password for a gateway whose password was lost or leaked."""
    gateway = _store_gateway(session, store_id, gateway_id)
    password = new_mqtt_password()
    gateway.mqtt_password_hash = mosquitto_hash(password)
    session.commit()
    return GatewayCredentials(
        gateway_id=gateway.id, mqtt_username=gateway.id, mqtt_password=password
    )


@router.patch(
    "/{store_id}/gateways/{gateway_id}",
    responses={
        404: {"description": "no such gateway in this store"},
        422: {"description": "unknown zone"},
    },
)
def update_gateway(
    store_id: str,
    gateway_id: str,
    body: GatewayUpdate,
    _admin: AdminDep,
    session: SessionDep,
    context: ContextDep,
) -> GatewayOut:
    """Change a gateway's name, zones or RSSI offset; its config is published again at once
    (a new version), so the gateway applies the change without a restart."""
    gateway = _store_gateway(session, store_id, gateway_id)
    changes = body.model_dump(exclude_unset=True, mode="json")
    if body.zones is not None:
        _check_zones(session, store_id, body.zones)
    for field, value in changes.items():
        setattr(gateway, field, value)
    session.commit()
    if changes.keys() - {"name"}:
        publish_store_configs(session, context.settings, store_id, gateway_ids=[gateway_id])
        session.refresh(gateway)
    latest = session.scalar(
        sa.select(GatewayStatusRow).where(
            GatewayStatusRow.store_id == store_id, GatewayStatusRow.gateway_id == gateway_id
        )
    )
    return _gateway_out(gateway, latest)


@router.delete(
    "/{store_id}/gateways/{gateway_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "no such gateway in this store"}},
)
def delete_gateway(
    store_id: str, gateway_id: str, _admin: AdminDep, session: SessionDep, context: ContextDep
) -> Response:
    """Decommission a gateway: its registration, latest status and beacon reports go, its
    retained config is removed from the broker; its status history and traffic stay for the
    statistics. Run ``storelink cloud mqtt-auth`` again to withdraw its MQTT login."""
    gateway = _store_gateway(session, store_id, gateway_id)
    for row_type in (GatewayStatusRow, BeaconHealthRow):
        session.execute(
            sa.delete(row_type).where(
                row_type.store_id == store_id, row_type.gateway_id == gateway_id
            )
        )
    session.delete(gateway)
    session.commit()
    publisher = default_publisher(context.settings)
    if publisher is not None and not publisher.clear([config_topic(store_id, gateway_id)]):
        logger.warning(
            "gateway %s deleted, but its retained config could not be removed from the broker",
            gateway_id,
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{store_id}/gateways/{gateway_id}/history")
def gateway_history(
    store_id: str,
    gateway_id: str,
    _caller: StoreStaffDep,
    session: SessionDep,
    limit: PageLimit = 100,
    cursor: Cursor = None,
    transitions_only: bool = False,
) -> Page[GatewayStatusEntry]:
    """The statuses the gateway reported, newest first; ``transitions_only``: when it went
    online or offline."""
    query = sa.select(GatewayStatusHistory).where(
        GatewayStatusHistory.store_id == store_id, GatewayStatusHistory.gateway_id == gateway_id
    )
    if transitions_only:
        query = query.where(GatewayStatusHistory.transition)
    rows, next_cursor = paginate(
        session,
        query,
        [(GatewayStatusHistory.ts, "desc"), (GatewayStatusHistory.id, "desc")],
        limit,
        cursor,
    )
    return Page[GatewayStatusEntry](
        items=[GatewayStatusEntry.model_validate(r) for r in rows], next_cursor=next_cursor
    )
