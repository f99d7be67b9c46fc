"""The stitcher (``stitcher``) as a child process of the ingest worker, restarted if it dies,
or on its own (``ingest_stitcher = "external"``: ``storelink cloud stitch``).

A process of its own, not a thread, so that it runs on another CPU core than the worker's
network and storing threads. It has its own database connections and its own time-series
writer; its disk buffer is a file of its own beside the worker's (``-stitcher`` before the
suffix), since two processes must not share one. It stops when asked (SIGTERM: it stitches what
is stored first) or when the worker that started it is gone.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from cloud_api.config import CloudSettings
from cloud_api.ingest.consumer import tune_gc
from cloud_api.ingest.directory import ShopperDirectory
from cloud_api.ingest.presence_service import PresenceService
from cloud_api.ingest.stitcher import Stitcher, worker_known
from cloud_api.match.offer_policy import offer_policy
from cloud_api.store.db import make_engine, make_sessionmaker
from cloud_api.timeseries.writer import writer_from_settings

logger = logging.getLogger(__name__)

# Before a stitcher that died is started again.
RESTART_DELAY_S = 1.0
# How often the stitcher checks that the worker that started it is still there.
PARENT_CHECK_S = 0.5
STOP_TIMEOUT_S = 15.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The stitcher's young-generation threshold (the worker's is consumer.GC_YOUNG_THRESHOLD). A
# batch of 1,000 events holds some 10,000 more objects at its peak than before and after it,
# so at 10,000 nearly every batch ran a collection: 2.7-3.6 us per event, 6-8% of the
# stitcher's CPU. At 50,000 collections come every 25 batches or so, from what the visit cache
# keeps (0.6 us per event), and a pause of about 15 ms delays only the visits.
STITCHER_GC_YOUNG_THRESHOLD = 50_000


def stitcher_settings(settings: CloudSettings) -> CloudSettings:
    """The worker's settings, with a disk buffer of the stitcher's own."""
    path = settings.timeseries_buffer_path
    own = path.with_name(f"{path.stem}-stitcher{path.suffix}")
    return settings.model_copy(update={"timeseries_buffer_path": Path(own)})


def yield_cpu(settings: CloudSettings) -> None:
    """Lower this process's CPU priority below the worker's, by ``ingest_stitch_nice``.

    At 20,000 events/s the worker and its stitcher need most of two cores. At equal priority
    the stitcher took CPU time from the worker, and the worker's p99 from publish to commit
    was 163-231 ms; 10 lower, 91-173 ms. The stitcher waits instead: at rates it keeps up with
    it still does, and at 20,000 events/s its lag grew about 1.7 times as fast."""
    if settings.ingest_stitch_nice:
        os.nice(settings.ingest_stitch_nice)


def serve(settings: CloudSettings, parent_pid: int | None) -> None:
    """Stitch ``settings.mqtt_client_id``'s events until told to stop (SIGTERM; SIGINT too
    without a parent): as the worker's child process, which also stops when the worker
    ``parent_pid`` is gone, or on its own (``storelink cloud stitch``: parent_pid None)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    # A Ctrl-C reaches the worker too, which stops its child.
    signal.signal(signal.SIGINT, signal.SIG_IGN if parent_pid is not None else on_signal)
    settings = stitcher_settings(settings)
    yield_cpu(settings)
    engine = make_engine(settings.database_url, replayable=True)
    sessions = make_sessionmaker(engine)
    service = PresenceService(sessions, ShopperDirectory(sessions), offer_policy(settings))
    writer = writer_from_settings(settings, sessions)
    writer.start()
    stitcher = Stitcher(
        settings, service, sessions, settings.mqtt_client_id, on_commit=writer.committed
    )
    if parent_pid is None:
        with sessions() as session:
            known = worker_known(session, settings.mqtt_client_id)
        if not known:
            # A mistyped worker id would otherwise wait for its events forever, in silence.
            logger.warning(
                "no events stored for worker %r yet: is that the worker's "
                "STORELINK_MQTT_CLIENT_ID, and does it run with STORELINK_INGEST_STITCHER="
                "external? Waiting for its events",
                settings.mqtt_client_id,
            )
    tune_gc(STITCHER_GC_YOUNG_THRESHOLD)
    stitcher.start()
    logger.info("stitcher of %s started (pid %d)", settings.mqtt_client_id, os.getpid())
    while not stop.wait(PARENT_CHECK_S):
        if parent_pid is not None and os.getppid() != parent_pid:
            logger.warning("the worker that started this stitcher is gone; stopping")
            break
    stitcher.stop(STOP_TIMEOUT_S)
    writer.stop()
    engine.dispose()
    logger.info(
        "stitcher of %s stopped at event %d: %s",
        settings.mqtt_client_id,
        stitcher.stitched_to,
        stitcher.counters,
    )


class StitcherProcess:
    """Starts the stitcher process, and starts it again when it dies."""

    def __init__(self, settings: CloudSettings) -> None:
        self._settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._monitor: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self._spawn()
        self._monitor = threading.Thread(target=self._watch, name="stitcher-monitor", daemon=True)
        self._monitor.start()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Let it stitch what is stored (for at most ``timeout_s``), then end it."""
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join()
        with self._lock:
            process = self._process
        if process is None:
            return
        process.terminate()  # SIGTERM: it finishes first
        process.join(timeout_s + STOP_TIMEOUT_S)
        if process.is_alive():
            logger.error("the stitcher did not stop in time; killing it")
            process.kill()
            process.join()

    def _spawn(self) -> None:
        process = self._context.Process(
            target=serve,
            args=(self._settings, os.getpid()),
            name=f"stitcher-{self._settings.mqtt_client_id}",
            daemon=True,
        )
        process.start()
        with self._lock:
            self._process = process

    def _watch(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                process = self._process
            assert process is not None
            process.join(PARENT_CHECK_S)
            if process.is_alive() or self._stopping.is_set():
                continue
            logger.error(
                "the stitcher process ended (exit code %s); starting it again in %.0fs",
                process.exitcode,
                RESTART_DELAY_S,
            )
            if self._stopping.wait(RESTART_DELAY_S):
                return
            self.restarts += 1
            self._spawn()
