"""A paho client that reads its socket in large chunks: the ingest's network thread.

Stock paho reads each incoming packet with three ``recv`` calls (the type byte, the length
byte(s), the body) and a ``select`` before every packet: four system calls per presence event,
which capped one stock client at about 17,700 acknowledged messages a second on the benchmark
machine before any processing. This client reads up to 64 KiB at a time and hands paho its
small reads from that buffer, then goes on reading packets while the buffer holds any: about
33,000 a second, with half the CPU time per message (docs/scaling.md). It also acknowledges a
whole batch in one write (``ack_all``) where paho's ``ack`` wakes the network thread and makes
a system call for each message.

It overrides paho's ``_sock_recv`` and calls its ``_packet_queue`` (both private, paho-mqtt
2.x): if a paho release drops them, ``make_consumer_client`` falls back to the stock client.
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes

from storelink.mqtt import BrokerAddress
from storelink.settings import MqttProtocol

READ_SIZE = 64 * 1024


class BufferedClient(mqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The socket the buffer was filled from: a reconnection starts with an empty buffer.
        self._read_sock: object | None = None
        self._read_buffer = b""
        self._read_pos = 0

    def _buffered(self) -> bool:
        return self._read_sock is self._sock and self._read_pos < len(self._read_buffer)

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._buffered():
            data = super()._sock_recv(READ_SIZE)  # BlockingIOError when nothing is there
            self._read_sock, self._read_buffer, self._read_pos = self._sock, data, 0
            if not data:
                return data  # the broker closed the connection
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
