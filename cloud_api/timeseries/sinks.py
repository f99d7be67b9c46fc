"""Where points go: InfluxDB 2.x, InfluxDB 1.x, or SQL when no InfluxDB is configured.

Every sink takes points with ``write``. A sink that cannot take them now raises
``SinkUnavailableError`` (the writer keeps them and tries again), one that refuses them for good
(malformed, a field whose type conflicts with what the series holds) raises ``PointsRejectedError``
(they are counted and dropped: trying again would fail again). The InfluxDB sinks also write
line protocol straight from the disk buffer (``write_lines``) once InfluxDB is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode

import sqlalchemy as sa
import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS, WriteOptions
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.store.db import upsert
from cloud_api.store.models import TimeSeriesPoint
from cloud_api.timeseries.influx_auth import influx_auth_headers
from cloud_api.timeseries.points import Point, line_protocol

logger = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 10.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SinkUnavailableError(Exception):
    """The points were not written and may be tried again later."""


class PointsRejectedError(Exception):
    """The server refused the points for good (HTTP 400: malformed or a field type conflict)."""


class PointSink(Protocol):
    name: str

    def write(self, points: Sequence[Point]) -> None: ...

    def close(self) -> None: ...


def _body(lines: Sequence[str]) -> bytes:
    return "\n".join(lines).encode()


def _server_message(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").strip()[:300]


class InfluxV1Sink:
    """InfluxDB 1.x's ``/write`` (also answered by 1.8+ and, through DBRP, by 2.x).

    A database that does not exist yet is created on the first write: a Raspberry Pi's
    InfluxDB 1.x needs nothing set up by hand.
    """

    name = "influxdb-v1"

    def __init__(
        self,
        url: str,
        database: str,
        *,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        retention_policy: str | None = None,
        timeout_s: float = HTTP_TIMEOUT_S,
    ) -> None:
        self._url = url.rstrip("/")
        self._database = database
        self._retention_policy = retention_policy
        self._headers = {
            "Content-Type": "text/plain; charset=utf-8",
            **influx_auth_headers(user, password, token),
        }
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=timeout_s), retries=False, maxsize=2
        )

    def write(self, points: Sequence[Point]) -> None:
        self.write_lines([line_protocol(point) for point in points])

    def write_lines(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        params = {"db": self._database, "precision": "ns"}
        if self._retention_policy:
            params["rp"] = self._retention_policy
        response = self._post(f"/write?{urlencode(params)}", _body(lines))
        if response.status == 404 and b"database not found" in response.data:
            self._create_database()
            response = self._post(f"/write?{urlencode(params)}", _body(lines))
        if response.status == 204:
            return
        message = f"HTTP {response.status}: {_server_message(response.data)}"
        if response.status == 400:
            raise PointsRejectedError(message)
        raise SinkUnavailableError(message)

    def _create_database(self) -> None:
        statement = f'CREATE DATABASE "{self._database}"'
        response = self._post("/query", urlencode({"q": statement}).encode(), form=True)
        if response.status != 200:
            raise SinkUnavailableError(
                f"could not create database {self._database!r}: HTTP {response.status}: "
                f"{_server_message(response.data)}"
            )
        logger.info("created InfluxDB database %r", self._database)

    def _post(self, path: str, body: bytes, *, form: bool = False) -> urllib3.BaseHTTPResponse:
        headers = dict(self._headers)
        if form:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            return self._http.request("POST", self._url + path, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as error:
            raise SinkUnavailableError(f"{type(error).__name__}: {error}") from error

    def close(self) -> None:
        self._http.clear()


FailedLines = Callable[[list[str], Exception], None]
WrittenLines = Callable[[list[str]], None]


class InfluxV2Sink:
    """InfluxDB 2.x through influxdb-client's batching WriteApi.

    ``write`` hands points to the client's background batcher, which groups them
    (``batch_size``, ``flush_interval``) and retries failed batches with exponential backoff.
    A batch that still fails after the last retry is handed to ``failed`` (the writer puts it in
    the disk buffer), one that InfluxDB refused as malformed to ``rejected``, one it took to
    ``written`` (see ``listen``). Each gets the batch's lines: every line given to ``enqueue``
    comes back exactly once, in one of them, unless the client itself breaks down.
    """

    name = "influxdb-v2"

    def __init__(
        self,
        url: str,
        *,
        token: str,
        org: str,
        bucket: str,
        batch_size: int = 1000,
        flush_interval_ms: int = 1000,
        max_retry_time_ms: int = 60_000,
        timeout_s: float = HTTP_TIMEOUT_S,
    ) -> None:
        self._bucket = bucket
        self._org = org
        self._failed: FailedLines = _log_failed
        self._rejected: FailedLines = _log_rejected
        self._written: WrittenLines = _ignore_written
        self._client = InfluxDBClient(
            url=url, token=token, org=org, timeout=int(timeout_s * 1000), enable_gzip=True
        )
        options = WriteOptions(
            batch_size=batch_size,
            flush_interval=flush_interval_ms,
            retry_interval=500,
            max_retries=8,
            max_retry_delay=30_000,
            max_retry_time=max_retry_time_ms,
            exponential_base=2,
        )
        self._batching = self._client.write_api(
            write_options=options,
            success_callback=self._on_success,
            error_callback=self._on_error,
            retry_callback=self._on_retry,
        )
        self._sync = self._client.write_api(write_options=SYNCHRONOUS)

    def listen(self, *, failed: FailedLines, rejected: FailedLines, written: WrittenLines) -> None:
        """Who hears what became of the batches (called from the client's thread)."""
        self._failed, self._rejected, self._written = failed, rejected, written

    def write(self, points: Sequence[Point]) -> None:
        self.enqueue([line_protocol(point) for point in points])

    def enqueue(self, lines: Sequence[str]) -> None:
        """Hands lines to the batcher and returns at once; the callbacks say what became of them."""
        self._batching.write(bucket=self._bucket, org=self._org, record=list(lines))

    def write_lines(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        try:
            self._sync.write(bucket=self._bucket, org=self._org, record=list(lines))
        except Exception as error:
            if _status(error) == 400:
                raise PointsRejectedError(str(error)) from error
            raise SinkUnavailableError(f"{type(error).__name__}: {error}") from error

    def _on_success(self, conf: tuple[str, str, str], data: Any) -> None:
        self._written(_lines(data))

    def _on_error(self, conf: tuple[str, str, str], data: Any, error: Exception) -> None:
        lines = _lines(data)
        if _status(error) == 400:
            self._rejected(lines, error)
        else:
            self._failed(lines, error)

    def _on_retry(self, conf: tuple[str, str, str], data: Any, error: Exception) -> None:
        logger.warning("InfluxDB write failed (%s); the client retries", error)

    def close(self) -> None:
        # Flushes what the batcher holds; a batch that fails now still goes to ``failed``.
        self._batching.close()  # type: ignore[no-untyped-call]
        self._sync.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]


def _lines(data: Any) -> list[str]:
    text = data.decode() if isinstance(data, bytes) else str(data)
    return [line for line in text.split("\n") if line]


def _log_failed(lines: list[str], error: Exception) -> None:
    logger.error("InfluxDB: %d points not written: %s", len(lines), error)


def _log_rejected(lines: list[str], error: Exception) -> None:
    logger.error("InfluxDB refused %d points: %s", len(lines), error)


def _ignore_written(lines: list[str]) -> None:
    return None


def _status(error: Exception) -> int | None:
    status = getattr(error, "status", None)
    return status if isinstance(status, int) else None


class SqlSink:
    """The SQL fallback: points in the ``timeseries_points`` table, so the demo and a small
    install need no InfluxDB. The same point written twice is one row (overwritten)."""

    name = "sql"

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def write(self, points: Sequence[Point]) -> None:
        if not points:
            return
        # One row per (measurement, series, time): a repeated point in a batch keeps the last.
        rows = {
            (p.measurement, p.series_key, p.time_ns): {
                "measurement": p.measurement,
                "series": p.series_key,
                "time_ns": p.time_ns,
                "ts": time_of(p.time_ns),
                "tags": dict(p.tags),
                "fields": dict(p.fields),
            }
            for p in points
        }
        try:
            with self._sessions.begin() as session:
                statement = upsert(session, TimeSeriesPoint)
                statement = statement.on_conflict_do_update(
                    index_elements=["measurement", "series", "time_ns"],
                    set_={"fields": statement.excluded.fields},
                )
                session.execute(statement, list(rows.values()))
        except sa.exc.DBAPIError as error:
            raise SinkUnavailableError(f"{type(error.orig).__name__}: {error.orig}") from error

    def close(self) -> None:
        return None


def time_of(time_ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=time_ns // 1000)
