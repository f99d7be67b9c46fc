"""A paho client that reads its socket in large chunks: the ingest's network thread.

Stock paho reads each incoming packet with three ``recv`` calls (the type byte, the length
byte(s), the body) and a ``select`` before every packet: four system calls per presence event,
which capped one stock client at about 17,700 acknowledged messages a second on the benchmark
machine before any processing. This client reads up to 64 KiB at a time and hands paho its
small reads from that buffer, then goes on reading packets while the buffer holds any: about
33,000 a second, with half the CPU time per message (docs/scaling.md). It also acknowledges a
whole batch in one write (``ack_all``) where paho's ``ack`` wakes the network thread and makes
a system call for each message.

With ``on_publish_received`` set, it also decodes the plain PUBLISH packets (QoS 0 or 1, no
MQTT 5 properties) itself, straight from that buffer, and hands each one's topic, payload and
packet id to that callback: paho's own handling of a PUBLISH (its reads, an ``MQTTMessage``,
MQTT 5 ``Properties``, a debug log call, the topic matcher) was the larger part of the network
thread's time. Any other packet, and one cut at the end of a read, goes through paho as before.

It overrides paho's ``_sock_recv`` and uses its ``_packet_queue``, ``_in_packet`` and
``_last_bytes_received`` (private, paho-mqtt 2.x): if a paho release drops the methods,
``make_consumer_client`` falls back to the stock client.
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes

from storelink.mqtt import BrokerAddress
from storelink.settings import MqttProtocol

READ_SIZE = 64 * 1024
_PUBLISH = PacketTypes.PUBLISH << 4
_UINT16 = struct.Struct("!H")
# topic, payload, packet id (0 at QoS 0), QoS
PublishHandler = Callable[[str, bytes, int, int], None]


class BufferedClient(mqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The socket the buffer was filled from: a reconnection starts with an empty buffer.
        self._read_sock: object | None = None
        self._read_buffer = b""
        self._read_pos = 0
        self.on_publish_received: PublishHandler | None = None
        """Takes the plain QoS 0 and 1 PUBLISH packets straight from the read buffer, instead of
        paho's ``on_message`` (which still gets the rest: QoS 2, properties, a split packet)."""

    def _buffered(self) -> bool:
        return self._read_sock is self._sock and self._read_pos < len(self._read_buffer)

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._buffered():
            data = super()._sock_recv(READ_SIZE)  # BlockingIOError when nothing is there
            self._read_sock, self._read_buffer, self._read_pos = self._sock, data, 0
            if not data:
                return data  # the broker closed the connection
        if self._in_packet["command"] == 0 and self._take_publishes() and not self._buffered():
            # paho asked for the next packet's first byte, and every packet was taken.
            raise BlockingIOError
        start = self._read_pos
        self._read_pos = min(start + bufsize, len(self._read_buffer))
        return self._read_buffer[start : self._read_pos]

    def ack_all(self, mids: Sequence[int]) -> None:
        """Acknowledge QoS 1 messages (PUBACK) in one write, where ``ack`` takes one each."""
        if not mids:
            return
        puback = PacketTypes.PUBACK << 4
        acks = b"".join(struct.pack("!BBH", puback, 2, mid) for mid in mids)
        self._packet_queue(puback, acks, 0, 1)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        # select() cannot see what is already buffered: handle every buffered packet now.
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and self._buffered():
            rc = super().loop_read(max_packets)
        return rc

    def _take_publishes(self) -> bool:
        """Hand ``on_publish_received`` the complete plain PUBLISH packets at the head of the
        buffer; False if there was none (paho reads the next packet its own way).

        paho spends about 20 µs on each: a dict-based state machine over three reads, an
        ``MQTTMessage``, its MQTT 5 ``Properties``, a debug log line and the topic matcher. A
        packet with properties (a topic alias, say), at QoS 2, with a topic that is not UTF-8,
        malformed or cut at the end of the buffer is left to paho.
        """
        deliver = self.on_publish_received
        if deliver is None:
            return False
        buffer, start = self._read_buffer, self._read_pos
        end, v5 = len(buffer), self._protocol == mqtt.MQTTv5
        pos = start
        while pos < end:
            header = buffer[pos]
            qos = (header >> 1) & 3
            if header & 0xF0 != _PUBLISH or qos > 1:
                break
            length, shift, cursor = 0, 0, pos + 1
            while cursor < end and shift < 28:
                byte = buffer[cursor]
                cursor += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            else:
                break
            packet_end = cursor + length
            if packet_end > end or cursor + 2 > packet_end:
                break
            topic_end = cursor + 2 + _UINT16.unpack_from(buffer, cursor)[0]
            body = topic_end + (2 if qos else 0) + (1 if v5 else 0)
            if body > packet_end or (v5 and buffer[body - 1] != 0):
                break
            try:
                topic = buffer[cursor + 2 : topic_end].decode()
            except UnicodeDecodeError:
                break
            mid = _UINT16.unpack_from(buffer, topic_end)[0] if qos else 0
            pos = packet_end
            self._read_pos = pos
            deliver(topic, buffer[body:packet_end], mid, qos)
        if pos == start:
            return False
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        return True


def make_consumer_client(
    url: str, protocol: MqttProtocol, client_id: str
) -> tuple[mqtt.Client, BrokerAddress]:
    """Like ``storelink.mqtt.make_client``, with buffered reads where paho allows them."""
    address = BrokerAddress.from_url(url)
    private = ("_sock_recv", "_packet_queue")
    fits = all(hasattr(mqtt.Client, name) for name in private)
    client_class = BufferedClient if fits else mqtt.Client
    client = client_class(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
    )
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    return client, address
