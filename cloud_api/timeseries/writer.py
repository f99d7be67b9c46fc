"""The time-series writer: committed facts in, points out, on a thread of its own.

The ingest hands each committed batch to ``committed``, which only puts it on a queue: the
ingest never waits for InfluxDB, not even while it is down. The writer's thread turns facts into
points, gathers them into writes of up to ``influx_batch_size`` points (waiting at most
``influx_flush_interval_s``) and writes them.

A committed batch's MQTT messages are acknowledged (``defer_ack``) once its points are safe:
written, in the disk buffer, or refused for good. With the 2.x sink that is when the client's
batcher reports back on every one of them, not when they are handed to it (see ``_Flush``).

When InfluxDB cannot take them, the points go to the disk buffer, and from then on new points
queue up behind them there, so they are written in order once it is back. The buffer is written
back in batches with exponential backoff between failed attempts; a point written twice
(the buffer is drained, the answer is lost, it is drained again) is the same point, so it
overwrites itself. Only a buffer that fills up drops points, the oldest first, and counts them.

Every ``timeseries_occupancy_interval_s`` the writer also records the occupancy of the stores
from the visits table, timestamped at the start of the interval, so that several workers
recording it write the same points.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Histogram
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.config import CloudSettings
from cloud_api.ingest.consumer import CommittedBatch
from cloud_api.ingest.presence_service import PresenceOutcome
from cloud_api.match.decide import Outcome, Verdict
from cloud_api.timeseries.buffer import DiskBuffer
from cloud_api.timeseries.occupancy import snapshot_occupancy
from cloud_api.timeseries.points import (
    Fact,
    OfferFact,
    OfferOutcome,
    Point,
    PresenceFact,
    line_protocol,
    to_points,
)
from cloud_api.timeseries.sinks import (
    InfluxV1Sink,
    InfluxV2Sink,
    PointSink,
    PointsRejectedError,
    SinkUnavailableError,
    SqlSink,
)
from storelink.wire import PresenceEvent

logger = logging.getLogger(__name__)

QUEUE_MAX_ITEMS = 100_000
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 10.0
# Buffered chunks written back per turn of the loop, so new facts are never starved.
DRAIN_CHUNKS_PER_TURN = 20
STOP_TIMEOUT_S = 15.0
# Known zones are forgotten after this long without an event, so occupancy stops reporting them.
ZONE_MEMORY_S = 24 * 3600.0

# The writer gathers the batches itself (``influx_flush_interval_s``); a batch the 2.x client
# then holds back only delays its acknowledgements, and a worker may hold only two ingest
# batches unacknowledged before the broker stops sending to it.
V2_CLIENT_FLUSH_MS = 100

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LAG_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


@dataclass
class TimeSeriesCounters:
    """Points since this process started."""

    points_written: int = 0
    points_buffered: int = 0
    points_dropped: int = 0
    points_rejected: int = 0
    write_failures: int = 0


class TimeSeriesHistograms:
    """Latencies, in registries of their own (``cloud_api.metrics`` collects them)."""

    def __init__(self) -> None:
        self.write_seconds = Histogram(
            "storelink_timeseries_write_seconds",
            "seconds one synchronous write of points took (InfluxDB 1.x, buffer drains, SQL)",
            buckets=LATENCY_BUCKETS_S,
            registry=None,
        )
        self.ingest_lag_seconds = Histogram(
            "storelink_ingest_lag_seconds",
            "seconds from a presence event's time at the gateway to its commit in the cloud",
            buckets=LAG_BUCKETS_S,
            registry=None,
        )
        self.commit_seconds = Histogram(
            "storelink_ingest_commit_seconds",
            "seconds the ingest took to store one batch in the database, retries included",
            buckets=LATENCY_BUCKETS_S,
            registry=None,
        )

    def all(self) -> tuple[Histogram, ...]:
        return (self.write_seconds, self.ingest_lag_seconds, self.commit_seconds)


def facts_of(batch: CommittedBatch) -> list[Fact]:
    """What a committed ingest batch means for the time series."""
    facts: list[Fact] = []
    # Else the stitcher process's batches carry the events' facts.
    if batch.stitched:
        for event, outcome in zip(batch.events, batch.outcomes, strict=True):
            facts.append(PresenceFact(event, opened_visit=outcome.opened_visit))
            facts.extend(_offer_facts_of(event, outcome, batch.sent))
        # The same points again (they overwrite themselves): the worker that stored these
        # events may have died before it wrote them.
        facts.extend(
            PresenceFact(event, opened_visit=opened) for event, opened in batch.redelivered
        )
    facts.extend(batch.statuses)
    return facts


def _offer_facts_of(
    event: PresenceEvent, outcome: PresenceOutcome, sent: frozenset[str]
) -> list[OfferFact]:
    notification = outcome.notification
    was_sent = notification is not None and notification.notification_id in sent
    facts: list[OfferFact] = []
    for verdict in outcome.verdicts:
        if verdict.outcome == Outcome.INELIGIBLE:
            continue
        kinds = [OfferOutcome.DECIDED]
        if verdict.outcome == Outcome.HELD_OUT:
            kinds = [OfferOutcome.HELD_OUT]
        elif was_sent:
            kinds.append(OfferOutcome.SENT)
        facts.extend(offer_facts(event, verdict, kinds))
    return facts


def offer_facts(
    event: PresenceEvent, verdict: Verdict, kinds: Sequence[OfferOutcome]
) -> list[OfferFact]:
    terms = verdict.terms
    percent_off = amount_off = None
    items = 0
    if terms is not None:
        percent_off = float(terms.percent_off) if terms.percent_off is not None else None
        amount_off = float(terms.amount_off) if terms.amount_off is not None else None
        items = sum(line.quantity for line in terms.items)
    return [
        OfferFact(
            event,
            kind,
            event.ts,
            campaign=verdict.campaign_id,
            percent_off=percent_off,
            amount_off=amount_off,
            items=items,
        )
        for kind in kinds
    ]


Item = CommittedBatch | Sequence[Fact]


@dataclass(eq=False)
class _Flush:
    """Items whose points were delivered together, settled (acknowledged) when none is pending.

    ``pending`` counts the points the InfluxDB 2.x client still holds, plus one while the writer
    is delivering. The client's callbacks give back a batch's lines, not which ``write`` they
    came from, so each line handed to it is looked up by its text. Its batcher happens to write
    one batch at a time, in order (a single-worker scheduler shared by the process), but that
    is not promised, and nothing here relies on it: a line that comes back, written, buffered or
    refused, settles the oldest flush still waiting for that text. Two equal lines are the same
    point (same series, same time, same fields), so whichever copy comes back first, that point
    is in InfluxDB or on disk for both.
    """

    items: list[Item]
    pending: int = 1


class TimeSeriesWriter:
    def __init__(
        self,
        sink: PointSink,
        *,
        buffer: DiskBuffer | None = None,
        sessions: sessionmaker[Session] | None = None,
        batch_size: int = 1000,
        flush_interval_s: float = 1.0,
        occupancy_interval_s: float | None = 60.0,
    ) -> None:
        self.sink = sink
        self.buffer = buffer
        self.counters = TimeSeriesCounters()
        self.histograms = TimeSeriesHistograms()
        self._sessions = sessions
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._occupancy_interval_s = occupancy_interval_s
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=QUEUE_MAX_ITEMS)
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_drain = 0.0
        self._backoff_s = BACKOFF_MIN_S
        self._next_occupancy = 0.0
        # store -> zone -> when an event last named it (monotonic seconds).
        self._zones: dict[str, dict[str, float]] = defaultdict(dict)
        # Items queued and items whose points were written or buffered, for ``wait_idle``.
        self._progress = threading.Condition()
        self._queued = 0
        self._settled = 0
        # Lines the 2.x client holds, each with the flushes waiting for it, oldest first.
        self._with_client: dict[str, deque[_Flush]] = {}
        self._with_client_lock = threading.Lock()
        if isinstance(sink, InfluxV2Sink):
            sink.listen(
                failed=self._client_failed,
                rejected=self._client_rejected,
                written=self._client_wrote,
            )

    # --- producers (any thread) ----------------------------------------------------------------

    def committed(self, batch: CommittedBatch) -> None:
        """The ingest's ``on_commit``: queue the batch and return at once."""
        self._put(batch, len(batch.events) + len(batch.redelivered) + len(batch.statuses))

    def submit(self, facts: Sequence[Fact]) -> None:
        """Queue facts from elsewhere (an API route, a tool); returns at once."""
        if facts:
            self._put(facts, len(facts))

    def _put(self, item: Item, size: int) -> None:
        with self._progress:
            self._queued += 1
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._settle(1)
            _acknowledge(item)
            # Only when the writer cannot even reach its disk buffer: counted, never blocking.
            self.counters.points_dropped += size
            logger.error("time-series queue full: %d facts dropped", size)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="timeseries-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Write (or buffer) what is queued, then close the sink and the buffer."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.sink.close()
        if self.buffer is not None:
            self.buffer.close()

    def wait_idle(self, timeout_s: float) -> bool:
        """True once everything queued so far was written, buffered or refused (with the 2.x
        sink: as its client reported); for tools and tests."""
        with self._progress:
            return self._progress.wait_for(lambda: self._settled >= self._queued, timeout_s)

    def _settle(self, items: int) -> None:
        with self._progress:
            self._settled += items
            self._progress.notify_all()

    # --- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        pending: list[Point] = []
        held: list[Item] = []  # items whose points are in ``pending``
        oldest = 0.0
        while True:
            closing = self._closing.is_set()
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                item = None
            if item is not None:
                if not pending:
                    oldest = time.monotonic()
                pending.extend(self._points(item))
                held.append(item)
            due = time.monotonic() - oldest >= self._flush_interval_s
            if held and (not pending or len(pending) >= self._batch_size or due or closing):
                flush = _Flush(held)
                for start in range(0, len(pending), self._batch_size):
                    self._deliver(pending[start : start + self._batch_size], flush)
                pending = []
                held = []
                self._release([flush])
            if closing and self._queue.empty() and not held:
                return
            self._drain()
            self._record_occupancy()

    def _points(self, item: Item) -> list[Point]:
        try:
            facts = facts_of(item) if isinstance(item, CommittedBatch) else list(item)
            if isinstance(item, CommittedBatch):
                self._observe_ingest(item)
            now = time.monotonic()
            for fact in facts:
                if isinstance(fact, PresenceFact):
                    self._zones[fact.event.store_id][fact.event.zone_id] = now
            return to_points(facts)
        except Exception:
            logger.exception("could not turn facts into points")
            return []

    def _observe_ingest(self, batch: CommittedBatch) -> None:
        for event in batch.events:
            self.histograms.ingest_lag_seconds.observe(
                max(batch.committed_at - event.ts.timestamp(), 0.0)
            )
        if batch.events or batch.statuses:
            self.histograms.commit_seconds.observe(batch.commit_s)

    def _deliver(self, points: list[Point], flush: _Flush | None = None) -> None:
        if self.buffer is not None and len(self.buffer):
            # Behind what is buffered already: InfluxDB is down, or was until a moment ago.
            self._buffer([line_protocol(p) for p in points])
            return
        while True:
            try:
                self._write(points, flush)
                return
            except PointsRejectedError as error:
                self._rejected(len(points), error)
                return
            except SinkUnavailableError as error:
                self.counters.write_failures += 1
                if self.buffer is not None:
                    logger.warning("%s unavailable (%s): buffering points", self.sink.name, error)
                    self._buffer([line_protocol(p) for p in points])
                    self._next_drain = time.monotonic() + self._backoff_s
                    return
                # The SQL fallback has no buffer: it is the database the ingest itself needs.
                logger.warning("%s unavailable (%s): retrying", self.sink.name, error)
                if self._closing.wait(self._backoff_s):
                    self.counters.points_dropped += len(points)
                    return
                self._backoff_s = min(self._backoff_s * 2, BACKOFF_MAX_S)
            except Exception:
                self.counters.write_failures += 1
                self.counters.points_dropped += len(points)
                logger.exception("time-series write failed unexpectedly")
                return

    def _write(self, points: list[Point], flush: _Flush | None) -> None:
        sink = self.sink
        if isinstance(sink, InfluxV2Sink):
            self._enqueue(sink, [line_protocol(p) for p in points], flush)
        else:
            started = time.perf_counter()
            sink.write(points)
            self.histograms.write_seconds.observe(time.perf_counter() - started)
            self.counters.points_written += len(points)
        self._backoff_s = BACKOFF_MIN_S

    def _enqueue(self, sink: InfluxV2Sink, lines: list[str], flush: _Flush | None) -> None:
        """Hands lines to the 2.x client; ``flush`` waits until the client gives each back."""
        if flush is not None:
            with self._with_client_lock:
                for line in lines:
                    self._with_client.setdefault(line, deque()).append(flush)
                flush.pending += len(lines)
        try:
            sink.enqueue(lines)
        except Exception:
            # Not with the client (``_deliver`` counts them dropped): nothing will give them back.
            if flush is not None:
                with self._with_client_lock:
                    for line in lines:
                        if flush in self._with_client.get(line, ()):
                            self._forget(line, flush)
                            flush.pending -= 1
            raise

    def _forget(self, line: str, flush: _Flush) -> None:
        waiting = self._with_client[line]
        waiting.remove(flush)
        if not waiting:
            del self._with_client[line]

    def _returned(self, lines: list[str]) -> None:
        """The client is done with these lines (its thread): settle the flushes they complete."""
        returned: list[_Flush] = []
        with self._with_client_lock:
            for line in lines:
                waiting = self._with_client.get(line)
                if waiting:  # else an occupancy point, which no item waits for
                    returned.append(waiting[0])
                    self._forget(line, waiting[0])
        self._release(returned)

    def _release(self, flushes: list[_Flush]) -> None:
        """One pending point (or the writer's own hold) less for each of ``flushes``."""
        done: list[_Flush] = []
        with self._with_client_lock:
            for flush in flushes:
                flush.pending -= 1
                if flush.pending == 0:
                    done.append(flush)
        for flush in done:
            # Written, in the disk buffer or refused for good: the ingest may acknowledge now.
            for item in flush.items:
                _acknowledge(item)
            self._settle(len(flush.items))

    def _rejected(self, count: int, error: Exception) -> None:
        self.counters.points_rejected += count
        logger.error("%s refused %d points: %s", self.sink.name, count, error)

    def _client_wrote(self, lines: list[str]) -> None:
        self.counters.points_written += len(lines)
        self._returned(lines)

    def _client_rejected(self, lines: list[str], error: Exception) -> None:
        self._rejected(len(lines), error)
        self._returned(lines)

    def _client_failed(self, lines: list[str], error: Exception) -> None:
        """A batch the InfluxDB client gave up on after its retries (its own thread)."""
        self.counters.write_failures += 1
        logger.warning("%s failed after retries (%s): buffering points", self.sink.name, error)
        self._buffer(lines)
        # Only once on disk: if buffering fails, the items stay unacknowledged.
        self._returned(lines)

    def _buffer(self, lines: list[str]) -> None:
        assert self.buffer is not None
        dropped = self.buffer.append(lines)
        self.counters.points_buffered += len(lines)
        if dropped:
            self.counters.points_dropped += dropped
            logger.error("time-series buffer full: dropped the %d oldest points", dropped)

    def _drain(self) -> None:
        buffer = self.buffer
        if buffer is None or not len(buffer) or time.monotonic() < self._next_drain:
            return
        sink = self.sink
        assert isinstance(sink, InfluxV1Sink | InfluxV2Sink), "only InfluxDB sinks buffer"
        for _ in range(DRAIN_CHUNKS_PER_TURN):
            chunk = buffer.peek(self._batch_size)
            if not chunk:
                return
            ids = [point_id for point_id, _ in chunk]
            try:
                started = time.perf_counter()
                sink.write_lines([line for _, line in chunk])
                self.histograms.write_seconds.observe(time.perf_counter() - started)
                self.counters.points_written += len(chunk)
            except PointsRejectedError as error:
                self._rejected(len(chunk), error)
            except SinkUnavailableError as error:
                self.counters.write_failures += 1
                self._next_drain = time.monotonic() + self._backoff_s
                logger.info(
                    "%s still unavailable (%s); %d points buffered, next try in %.1fs",
                    sink.name,
                    error,
                    len(buffer),
                    self._backoff_s,
                )
                self._backoff_s = min(self._backoff_s * 2, BACKOFF_MAX_S)
                return
            buffer.remove(ids)
            self._backoff_s = BACKOFF_MIN_S
            if not len(buffer):
                logger.info("%s is back: the buffered points are written", sink.name)

    def _record_occupancy(self) -> None:
        interval = self._occupancy_interval_s
        if self._sessions is None or interval is None or time.monotonic() < self._next_occupancy:
            return
        self._next_occupancy = time.monotonic() + interval
        now = time.time()
        at = datetime.fromtimestamp(now - now % interval, UTC)
        forget = time.monotonic() - ZONE_MEMORY_S
        for zones in self._zones.values():
            for zone in [z for z, seen in zones.items() if seen < forget]:
                del zones[zone]
        known = {store: list(zones) for store, zones in self._zones.items() if zones}
        try:
            with self._sessions() as session:
                snapshots = snapshot_occupancy(session, at, known)
        except Exception:
            logger.warning("could not read the occupancy", exc_info=True)
            return
        if snapshots:
            self._deliver(to_points(snapshots))


def _acknowledge(item: Item) -> None:
    if isinstance(item, CommittedBatch) and item.acknowledge is not None:
        item.acknowledge()


def writer_from_settings(
    settings: CloudSettings, sessions: sessionmaker[Session]
) -> TimeSeriesWriter:
    """InfluxDB when ``influx_url`` is set (through the disk buffer), else the SQL table."""
    sink: PointSink
    buffer = None
    if settings.influx_url is None:
        sink = SqlSink(sessions)
    else:
        buffer = DiskBuffer(settings.timeseries_buffer_path, settings.timeseries_buffer_max_points)
        token = settings.influx_token.get_secret_value() if settings.influx_token else None
        if settings.influx_api == "v1":
            password = settings.influx_password
            sink = InfluxV1Sink(
                settings.influx_url,
                settings.influx_database,
                user=settings.influx_user,
                password=password.get_secret_value() if password else None,
                token=token,
            )
        elif token is None:
            raise ValueError("STORELINK_INFLUX_TOKEN is required with STORELINK_INFLUX_API=v2")
        else:
            sink = InfluxV2Sink(
                settings.influx_url,
                token=token,
                org=settings.influx_org,
                bucket=settings.influx_bucket,
                batch_size=settings.influx_batch_size,
                flush_interval_ms=V2_CLIENT_FLUSH_MS,
            )
    return TimeSeriesWriter(
        sink,
        buffer=buffer,
        sessions=sessions,
        batch_size=settings.influx_batch_size,
        flush_interval_s=settings.influx_flush_interval_s,
        occupancy_interval_s=settings.timeseries_occupancy_interval_s,
    )
