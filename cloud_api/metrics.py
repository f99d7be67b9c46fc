"""Prometheus figures of the ingest, read from its counters when scraped: no cost per event."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cloud_api.ingest import IngestCounters, PresenceConsumer

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


def metrics_registry(consumer: PresenceConsumer | None) -> CollectorRegistry:
    """One registry per app, so that several apps in one process (tests) do not collide."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(IngestCollector(consumer))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
