"""Mosquitto's password file and ACL, from the provisioned gateways and the cloud's own user.

A gateway logs in as its id with the password shown when it was provisioned; the cloud keeps
that password only as Mosquitto's PBKDF2-SHA512 line (``$7$<iterations>$<salt>$<hash>``, what
``mosquitto_passwd`` writes), so the file is written from the database as is. The ACL lets a
gateway publish under its own topics only, read its config and its store's sightings; the cloud
user reads and writes everything under the topic root.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloud_api.store.models import Gateway
from storelink.wire import TOPIC_ROOT, config_topic, store_sightings_subscription

# mosquitto_passwd's defaults (mosquitto 2.x): a 12-byte salt, 101 iterations of SHA-512.
MOSQUITTO_SALT_BYTES = 12
MOSQUITTO_ITERATIONS = 101
PASSWORD_BYTES = 24


def new_mqtt_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def mosquitto_hash(
    password: str, *, salt: bytes | None = None, iterations: int = MOSQUITTO_ITERATIONS
) -> str:
    salt = salt if salt is not None else secrets.token_bytes(MOSQUITTO_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_mosquitto_hash(password: str, stored: str) -> bool:
    try:
        _, kind, iterations, salt, digest = stored.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class GatewayLogin:
    store_id: str
    gateway_id: str
    password_hash: str


def gateway_logins(session: Session) -> list[GatewayLogin]:
    rows = session.execute(
        sa.select(Gateway.store_id, Gateway.id, Gateway.mqtt_password_hash).order_by(Gateway.id)
    )
    return [GatewayLogin(store_id, gateway_id, hashed) for store_id, gateway_id, hashed in rows]


def password_file(
    cloud_user: str, cloud_password_hash: str, gateways: Iterable[GatewayLogin]
) -> str:
    lines = [f"{cloud_user}:{cloud_password_hash}"]
    lines += [f"{g.gateway_id}:{g.password_hash}" for g in gateways]
    return "\n".join(lines) + "\n"


def acl_file(cloud_user: str, gateways: Iterable[GatewayLogin]) -> str:
    lines = [
        "# Written by `storelink cloud mqtt-auth`; anything not granted here is refused.",
        "",
        f"user {cloud_user}",
        f"topic readwrite {TOPIC_ROOT}/#",
    ]
    for g in gateways:
        lines += [
            "",
            f"user {g.gateway_id}",
            f"topic write {TOPIC_ROOT}/{g.store_id}/{g.gateway_id}/#",
            f"topic read {config_topic(g.store_id, g.gateway_id)}",
            f"topic read {store_sightings_subscription(g.store_id)}",
        ]
    return "\n".join(lines) + "\n"


def write_mqtt_auth(
    out: Path, cloud_user: str, cloud_password: str, gateways: Sequence[GatewayLogin]
) -> tuple[Path, Path]:
    """Write ``passwd`` and ``acl`` into ``out``, readable by their owner only."""
    if any(g.gateway_id == cloud_user for g in gateways):
        raise ValueError(f"a gateway is named {cloud_user!r}, like the cloud's MQTT user")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        ("passwd", password_file(cloud_user, mosquitto_hash(cloud_password), gateways)),
        ("acl", acl_file(cloud_user, gateways)),
    ):
        path = out / name
        # Created private, then renamed into place: never a moment with a readable file.
        temporary = out / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(text)
        temporary.replace(path)
        written.append(path)
    return written[0], written[1]
