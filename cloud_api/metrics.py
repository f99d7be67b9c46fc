"""Prometheus figures of the ingest, read from its counters when scraped: no cost per event."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.ingest.consumer import IngestCounters, PresenceConsumer
from cloud_api.ingest.stitcher import stitch_lag
from cloud_api.ingest.stitcher_process import StitcherProcess
from cloud_api.timeseries.writer import TimeSeriesCounters, TimeSeriesWriter

PREFIX = "storelink_ingest"


class IngestCollector(Collector):
    def __init__(self, consumer: PresenceConsumer | None) -> None:
        self._consumer = consumer

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        connected = GaugeMetricFamily(
            f"{PREFIX}_mqtt_connected", "1 while the ingest consumer is connected to the broker"
        )
        connected.add_metric([], 1.0 if self._consumer and self._consumer.connected else 0.0)
        yield connected
        if self._consumer is None:
            return
        counters = self._consumer.counters
        for field in fields(IngestCounters):
            yield CounterMetricFamily(
                f"{PREFIX}_{field.name}",
                f"{field.name.replace('_', ' ')} since this worker started",
                value=getattr(counters, field.name),
            )


class TimeSeriesCollector(Collector):
    """Points written, buffered, dropped; write latency; the ingest's lag and commit time."""

    def __init__(self, writer: TimeSeriesWriter) -> None:
        self._writer = writer

    def collect(self) -> Iterator[Metric]:
        writer = self._writer
        for field in fields(TimeSeriesCounters):
            yield CounterMetricFamily(
                f"storelink_timeseries_{field.name}",
                f"time series: {field.name.replace('_', ' ')} since this worker started",
                value=getattr(writer.counters, field.name),
            )
        if writer.buffer is not None:
            depth = GaugeMetricFamily(
                "storelink_timeseries_buffer_points",
                "time series: points waiting in the disk buffer for InfluxDB",
            )
            depth.add_metric([], float(len(writer.buffer)))
            yield depth
        for histogram in writer.histograms.all():
            yield from histogram.collect()


class StitchCollector(Collector):
    """The stitcher's lag behind its worker, from the database, and the restarts of the
    stitcher process the worker started (none for an external stitcher)."""

    def __init__(
        self, sessions: sessionmaker[Session], worker: str, process: StitcherProcess | None
    ) -> None:
        self._sessions = sessions
        self._worker = worker
        self._process = process

    def collect(self) -> Iterator[Metric]:
        with self._sessions() as session:
            lag = stitch_lag(session, self._worker)
        yield GaugeMetricFamily(
            "storelink_stitch_lag_events",
            "events this worker stored that its stitcher has not stitched yet",
            value=float(lag),
        )
        if self._process is not None:
            yield CounterMetricFamily(
                "storelink_stitch_restarts",
                "times the stitcher process died and was started again",
                value=self._process.restarts,
            )


def metrics_registry(
    consumer: PresenceConsumer | None,
    writer: TimeSeriesWriter | None = None,
    stitch: StitchCollector | None = None,
) -> CollectorRegistry:
    """One registry per app, so that several apps in one process (tests) do not collide."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(IngestCollector(consumer))
    if writer is not None:
        registry.register(TimeSeriesCollector(writer))
    if stitch is not None:
        registry.register(stitch)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
