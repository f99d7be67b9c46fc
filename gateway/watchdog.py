"""Keeps the Bluetooth scanner alive: restarts it when advertisements stop coming.

BlueZ is known to stop delivering advertisements after hours of scanning while every call still
succeeds, and an adapter can vanish and come back (USB, firmware crash). A store always has
something advertising (its own beacons at least), so silence means a stall: after ``silence_s``
without a single advertisement the watchdog stops the scanner and starts a new one.

While the radio stays silent the wait between restarts doubles, up to ``max_backoff_s`` (never
below ``silence_s``); a scanner that fails to start is retried after 1, 2, 4, ... seconds up to
``max_backoff_s``. Once a plain restart has not helped, ``recover_adapter`` (when given) resets
the adapter before each further attempt: on Linux, ``bluetooth-auto-recovery`` power-cycles it
through the kernel's management socket and, for a USB dongle, resets the USB device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol

from storelink.clock import Clock

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
RECOVER_TIMEOUT_S = 60.0
MIN_BACKOFF_S = 1.0
MAX_TICK_S = 1.0
# A plain restart first; the adapter is reset from the second fruitless attempt on.
RECOVER_FROM_ATTEMPT = 2
# bluetooth-auto-recovery finds the adapter by its hci index when the address does not match.
_ANY_ADDRESS = "00:00:00:00:00:00"


class Scanner(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def silent_wait_s(fruitless: int, silence_s: float, max_backoff_s: float) -> float:
    """How long a scanner that started may stay silent before the next restart."""
    return min(max(silence_s, max_backoff_s), silence_s * 2.0 ** min(fruitless, 32))


def failed_start_wait_s(fruitless: int, max_backoff_s: float) -> float:
    """How long to wait after a scanner failed to start, before trying again."""
    return min(max_backoff_s, MIN_BACKOFF_S * 2.0 ** min(max(fruitless - 1, 0), 32))


class ScannerWatchdog:
    """Runs scanners made by ``make_scanner`` until ``stop``, replacing silent ones.

    ``progress`` returns a count that grows with every advertisement received (the pipeline's
    ``adverts_seen``), so the watchdog costs nothing per advertisement. ``silence_s`` 0 turns
    the watchdog off: one scanner, started once, whose start failure is raised.
    """

    def __init__(
        self,
        make_scanner: Callable[[], Scanner],
        *,
        clock: Clock,
        progress: Callable[[], int],
        silence_s: float,
        max_backoff_s: float,
        recover_adapter: Callable[[], Awaitable[bool]] | None = None,
        on_restart: Callable[[], None] = lambda: None,
    ) -> None:
        if silence_s < 0 or max_backoff_s <= 0:
            raise ValueError("silence_s must be >= 0 and max_backoff_s > 0")
        self._make_scanner = make_scanner
        self._clock = clock
        self._progress = progress
        self.silence_s = silence_s
        self.max_backoff_s = max_backoff_s
        self._recover_adapter = recover_adapter
        self._on_restart = on_restart
        self._scanner: Scanner | None = None
        self.restarts = 0
        self.failed_starts = 0
        self.recoveries = 0
        self.fruitless = 0
        """Consecutive attempts after which nothing was received."""
        self.running = asyncio.Event()
        """Set while a scanner is started."""

    async def run(self, stop: asyncio.Event) -> None:
        try:
            if self.silence_s == 0:
                await self._start_once()
                await stop.wait()
            else:
                await self._watch(stop)
        finally:
            await self._stop_scanner()

    async def _start_once(self) -> None:
        self._scanner = self._make_scanner()
        await asyncio.wait_for(self._scanner.start(), START_TIMEOUT_S)
        self.running.set()

    async def _watch(self, stop: asyncio.Event) -> None:
        tick = min(MAX_TICK_S, self.silence_s / 4)
        seen = self._progress()
        deadline = await self._attempt(first=True)
        while not stop.is_set():
            await _sleep_unless_stopped(self._clock, tick, stop)
            if stop.is_set():
                return
            now = self._clock.now()
            count = self._progress()
            if count != seen:
                seen = count
                if self.fruitless:
                    logger.info("the scanner receives again")
                self.fruitless = 0
                deadline = now + self.silence_s
            elif deadline - now > max(self.silence_s, self.max_backoff_s) * 2:
                deadline = now + self.silence_s  # the wall clock went back: start counting again
            if now < deadline:
                continue
            self.fruitless += 1
            if self._scanner is not None:
                logger.warning(
                    "no advertisement for %.0f s: restarting the scanner (attempt %d)",
                    self.silence_s,
                    self.fruitless,
                )
            await self._stop_scanner()
            if self._recover_adapter is not None and self.fruitless >= RECOVER_FROM_ATTEMPT:
                await self._recover()
            if stop.is_set():
                return
            deadline = await self._attempt(first=False)
            seen = self._progress()

    async def _attempt(self, *, first: bool) -> float:
        """Start a new scanner; the time by which it must have received something."""
        if not first:
            self.restarts += 1
            self._on_restart()
        scanner = self._make_scanner()
        try:
            await asyncio.wait_for(scanner.start(), START_TIMEOUT_S)
        except Exception as exc:
            self.failed_starts += 1
            # Counted as fruitless at once: the next wait is the short failed-start backoff.
            wait = failed_start_wait_s(self.fruitless + 1, self.max_backoff_s)
            logger.error(
                "the scanner did not start (%s: %s); trying again in %.0f s "
                "(`storelink gateway doctor` checks BlueZ and the adapter)",
                type(exc).__name__,
                exc,
                wait,
            )
            return self._clock.now() + wait
        self._scanner = scanner
        self.running.set()
        if first:
            logger.info("scanner started")
        else:
            logger.info("scanner restarted")
        return self._clock.now() + silent_wait_s(self.fruitless, self.silence_s, self.max_backoff_s)

    async def _stop_scanner(self) -> None:
        scanner, self._scanner = self._scanner, None
        self.running.clear()
        if scanner is None:
            return
        try:
            await asyncio.wait_for(scanner.stop(), STOP_TIMEOUT_S)
        except Exception as exc:
            # A stalled BlueZ may not even stop cleanly; the next scanner starts regardless.
            logger.warning("the scanner did not stop cleanly (%s: %s)", type(exc).__name__, exc)

    async def _recover(self) -> None:
        assert self._recover_adapter is not None
        self.recoveries += 1
        try:
            recovered = await asyncio.wait_for(self._recover_adapter(), RECOVER_TIMEOUT_S)
        except Exception as exc:
            logger.warning(
                "resetting the Bluetooth adapter failed (%s: %s)", type(exc).__name__, exc
            )
            return
        logger.info("Bluetooth adapter reset: %s", "done" if recovered else "not possible")


def adapter_recovery(adapter: str | None) -> Callable[[], Awaitable[bool]] | None:
    """A reset for the Linux adapter ``adapter`` (default hci0) through bluetooth-auto-recovery,
    or None where that cannot work (not Linux, package not installed)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        from bluetooth_auto_recovery import recover_adapter
    except ImportError:
        logger.info("bluetooth-auto-recovery is not installed: no adapter resets")
        return None
    name = adapter or "hci0"
    try:
        hci = int(name.removeprefix("hci"))
    except ValueError:
        logger.warning("adapter %r is not hciN: no adapter resets", name)
        return None

    async def recover() -> bool:
        # Needs CAP_NET_ADMIN for the management socket (see deploy/systemd/).
        return await recover_adapter(hci, _ANY_ADDRESS, gone_silent=True)

    return recover


async def _sleep_unless_stopped(clock: Clock, seconds: float, stop: asyncio.Event) -> None:
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sleeper
        with contextlib.suppress(asyncio.CancelledError):
            await stopper
