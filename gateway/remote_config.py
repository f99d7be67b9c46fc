"""Remote configuration: the retained ``GatewayConfig`` on the gateway's config topic.

The cloud (or an operator) publishes a gateway's config retained on
``storelink/v1/{store_id}/{gateway_id}/config``; the gateway receives it on every connect. A valid
config is applied to the pipeline at once and kept on disk next to the outbox, so that a gateway
restarting while the broker is unreachable still uses it. An invalid one is rejected: the gateway
keeps the last good config and says why in its status (``config_error``).

Local settings (YAML and ``STORELINK_*``) stay the base: what a config leaves out (null) keeps them.

The config carries the IRKs of shoppers' wearables: it is never logged, and its file is readable
by the gateway's user only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from gateway.config import GatewaySettings
from gateway.outbox import MEMORY
from storelink.settings import describe_validation_error
from storelink.wire import GatewayConfig

logger = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 256 * 1024


class ConfigRejectedError(ValueError):
    """A config the gateway will not apply; the message says why, without the config's values."""


class ConfigTarget(Protocol):
    def apply_config(self, config: GatewayConfig) -> None:
        """Apply ``config`` wholly, or raise ValueError and change nothing."""
        ...

    def config_rejected(self, reason: str) -> None: ...


def persisted_config_path(settings: GatewaySettings) -> Path | None:
    """Where the last good config is kept: beside the outbox, or nowhere for an in-memory one."""
    outbox = settings.outbox_path
    if str(outbox) == MEMORY:
        return None
    return outbox.with_name(f"{outbox.stem}.config.json")


def parse_config(payload: bytes, settings: GatewaySettings) -> GatewayConfig:
    """Validate ``payload`` as this gateway's config; ConfigRejectedError says why not."""
    if len(payload) > MAX_CONFIG_BYTES:
        raise ConfigRejectedError(f"config is {len(payload)} bytes, over {MAX_CONFIG_BYTES}")
    try:
        config = GatewayConfig.model_validate_json(payload)
    except ValidationError as exc:
        raise ConfigRejectedError(describe_validation_error(exc)) from None
    if (config.store_id, config.gateway_id) != (settings.store_id, settings.gateway_id):
        raise ConfigRejectedError(
            f"config is for {config.store_id}/{config.gateway_id}, "
            f"this gateway is {settings.store_id}/{settings.gateway_id}"
        )
    return config


def write_config(path: Path, config: GatewayConfig) -> None:
    """Replace ``path`` atomically and durably with ``config``, readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = config.model_dump_json(indent=2).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:  # mkstemp creates it 0600
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
    with contextlib.suppress(OSError):  # the rename is durable once the folder is synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class RemoteConfig:
    """Receives config payloads on any thread and applies them on the pipeline's.

    ``call_soon`` hands a callable to the pipeline's thread (``loop.call_soon_threadsafe``);
    ``on_change`` runs there after a config was applied or rejected (to publish the status).
    """

    def __init__(
        self,
        settings: GatewaySettings,
        target: ConfigTarget,
        *,
        path: Path | None,
        on_change: Callable[[], None] = lambda: None,
        call_soon: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        self._settings = settings
        self._target = target
        self.path = path
        self._on_change = on_change
        self._call_soon = call_soon
        self.current: GatewayConfig | None = None
        self._rejected = False

    def load_persisted(self) -> GatewayConfig | None:
        """Apply the config kept from an earlier run, if there is a usable one."""
        if self.path is None or not self.path.is_file():
            return None
        try:
            config = parse_config(self.path.read_bytes(), self._settings)
            self._target.apply_config(config)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring the saved remote config %s: %s", self.path, exc)
            return None
        self.current = config
        logger.info(
            "using the saved remote config version %d until the broker is reached", config.version
        )
        return config

    def on_message(self, payload: bytes) -> None:
        """An MQTT message on the config topic (paho's thread)."""
        if not payload:
            # The retained config was cleared: nothing new to apply, the last good one stays.
            logger.info("the retained remote config was cleared; keeping the one in use")
            return
        try:
            config: GatewayConfig | str = parse_config(payload, self._settings)
        except ConfigRejectedError as exc:
            config = str(exc)
        if self._call_soon is None:
            self._handle(config)
            return
        try:
            self._call_soon(lambda: self._handle(config))
        except RuntimeError:  # the event loop is closing: the gateway is stopping
            logger.debug("remote config arrived while stopping; ignored")

    def _handle(self, config: GatewayConfig | str) -> None:
        if isinstance(config, str):
            self._reject(config)
            return
        if config == self.current and not self._rejected:
            return  # the retained config again, as on every reconnect
        try:
            self._target.apply_config(config)
        except ValueError as exc:
            self._reject(str(exc))
            return
        self.current, self._rejected = config, False
        logger.info("applied remote config %s", config_summary(config))
        if self.path is not None:
            try:
                write_config(self.path, config)
            except OSError as exc:
                logger.error("could not save the remote config to %s: %s", self.path, exc)
        self._on_change()

    def _reject(self, reason: str) -> None:
        kept = "none" if self.current is None else f"version {self.current.version}"
        logger.warning("rejected a remote config (%s); keeping %s", reason, kept)
        self._rejected = True
        self._target.config_rejected(reason)
        self._on_change()


def config_summary(config: GatewayConfig) -> str:
    """A loggable one-line description: counts, never IRKs."""
    return json.dumps(
        {
            "version": config.version,
            "zones": None if config.zones is None else [z.zone_id for z in config.zones],
            "store_beacons": None if config.store_beacons is None else len(config.store_beacons),
            "staff_beacons": None if config.staff_beacons is None else len(config.staff_beacons),
            "irks": None if config.irks is None else len(config.irks),
        }
    )
