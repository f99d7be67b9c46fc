"""The ingest bench's load generator: QoS 1 PUBLISH packets written straight to a socket.

The gateways a cloud worker serves run on other machines. On the bench they share the
worker's two cores, so their cost per message counts against the worker: paho's client took
about 75 µs of CPU per QoS 1 message here (its publish path, the MQTT 5 properties, its
PUBACK handling), as much as the worker spends storing one, and 1.5 cores at 20,000
messages/s. This publisher spends a few µs: each packet is encoded once before the clock
runs, and at send time only its packet id and the timestamp (27 characters, always) go in.

A presence event's ``dwell_s`` says how long its subject has been in the zone: a packet that
names the packet of its subject's enter gets the time since that one was sent, as a gateway
would report it (12 characters, padded with the spaces JSON allows before a value).

MQTT 3.1.1 with a clean session; a PUBACK is 4 bytes, so the bytes read say how many came.
At most ``in_flight`` messages are unacknowledged at a time, as paho's
``max_inflight_messages`` would keep them.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from storelink.mqtt import BrokerAddress

CONNECT, CONNACK, PUBLISH_QOS1, DISCONNECT = 0x10, 0x20, 0x32, 0xE0
PUBACK_BYTES = 4
# A fixed-length UTC time, so that the packets' lengths can be encoded before it is known.
STAMP_LENGTH = len("2000-01-01T00:00:00.000000Z")
# Seconds with microseconds, right-aligned in 12 bytes: up to a day, far longer than a run.
DWELL_FORMAT = b"%12.6f"
_NO_DWELL = DWELL_FORMAT % 0.0
DWELL_LENGTH = len(_NO_DWELL)
# Messages written in one send when the publisher is behind its schedule.
CHUNK = 256


def _remaining_length(length: int) -> bytes:
    encoded = bytearray()
    while True:
        length, digit = divmod(length, 128)
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def stamp(at: float) -> bytes:
    """``at`` (seconds since the epoch) as the wire contract's UTC time, always 27 bytes."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()


class Packet:
    """A PUBLISH whose packet id, timestamp and dwell are filled in when it is sent.

    ``payload`` holds ``placeholder`` where the time goes and, after it, ``dwell_placeholder``
    where the seconds since the packet at index ``entered`` was sent go (0 when None).
    """

    __slots__ = ("between", "entered", "head", "middle", "tail")

    def __init__(
        self,
        topic: str,
        payload: str,
        placeholder: str,
        dwell_placeholder: str,
        entered: int | None,
    ) -> None:
        before, after = payload.encode().split(placeholder.encode(), 1)
        between, tail = after.split(dwell_placeholder.encode(), 1)
        topic_part = _string(topic)
        length = len(topic_part) + 2 + len(before) + STAMP_LENGTH
        length += len(between) + DWELL_LENGTH + len(tail)
        self.head = bytes([PUBLISH_QOS1]) + _remaining_length(length) + topic_part
        self.middle = before
        self.between = between
        self.tail = tail
        self.entered = entered


class LeanPublisher:
    def __init__(self, url: str, client_id: str, in_flight: int) -> None:
        address = BrokerAddress.from_url(url)
        self._socket = socket.create_connection((address.host, address.port))
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._in_flight = in_flight
        self._sent = 0
        self._acknowledged = 0
        self._connect(client_id)
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _connect(self, client_id: str) -> None:
        # Protocol level 4 (3.1.1), clean session, no keep-alive: the runs are short.
        variable = _string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0)
        body = variable + _string(client_id)
        self._socket.sendall(bytes([CONNECT]) + _remaining_length(len(body)) + body)
        answer = self._socket.recv(4)
        if len(answer) != 4 or answer[0] != CONNACK or answer[3] != 0:
            raise ConnectionError(f"the broker refused the publisher: {answer!r}")

    def _read_acks(self) -> None:
        received = 0
        while True:
            data = self._socket.recv(65536)
            if not data:
                return
            received += len(data)
            self._acknowledged = received // PUBACK_BYTES

    def publish(self, packets: Sequence[Packet], rate: float | None) -> tuple[float, float]:
        """Send ``packets`` at ``rate`` messages/s (or as fast as acknowledged); wait for every
        PUBACK. Returns when the first and the last were sent (``time.time()``)."""
        start = time.time()
        index = 0
        sent_at: list[float] = []
        while index < len(packets):
            now = time.time()
            due = len(packets) if rate is None else min(int((now - start) * rate) + 1, len(packets))
            room = self._in_flight - (self._sent - self._acknowledged)
            count = min(due - index, room, CHUNK)
            if count <= 0:
                # A millisecond's messages go out together: one send, one timestamp.
                time.sleep(0.001)
                continue
            at = stamp(now)
            parts: list[bytes] = []
            for packet in packets[index : index + count]:
                self._sent += 1
                sent_at.append(now)
                entered = packet.entered
                seconds = _NO_DWELL if entered is None else DWELL_FORMAT % (now - sent_at[entered])
                parts += (packet.head, struct.pack("!H", self._sent % 65535 + 1))
                parts += (packet.middle, at, packet.between, seconds, packet.tail)
            self._socket.sendall(b"".join(parts))
            index += count
        published = time.time()
        while self._acknowledged < self._sent:
            time.sleep(0.001)
        return start, published

    def close(self) -> None:
        self._socket.sendall(bytes([DISCONNECT, 0]))
        self._socket.close()
        self._reader.join(timeout=5)
