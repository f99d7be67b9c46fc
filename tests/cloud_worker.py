"""An ingest worker process that dies at the worst moment: its batch committed, not acknowledged.

``python -m tests.cloud_worker MQTT_URL DATABASE_URL CLIENT_ID BATCH_SIZE KILL_AT`` runs one
``PresenceConsumer``; after its ``KILL_AT``-th batch is committed it prints how many presence
events that batch stored and sends itself SIGKILL before acknowledging anything of it. The
test then restarts a worker with the same client id and checks what the broker sends again.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence

from cloud_api.config import CloudSettings
from cloud_api.ingest.consumer import PresenceConsumer, Received
from cloud_api.ingest.directory import ShopperDirectory
from cloud_api.ingest.presence_service import PresenceService
from cloud_api.match.offer_policy import offer_policy
from cloud_api.store.db import make_engine, make_sessionmaker


class DyingConsumer(PresenceConsumer):
    kill_at = 0
    committed_batches = 0
    stored_before = 0

    def _acknowledge(self, messages: Sequence[Received]) -> None:
        self.committed_batches += 1
        if self.committed_batches == self.kill_at:
            stored = self.counters.presence_events - self.stored_before
            print(f"killed {stored}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        self.stored_before = self.counters.presence_events
        super()._acknowledge(messages)


def main(argv: list[str]) -> None:
    mqtt_url, database_url, client_id, batch_size, kill_at = argv
    settings = CloudSettings(
        mqtt_url=mqtt_url,
        mqtt_protocol="5",
        database_url=database_url,
        mqtt_client_id=client_id,
        ingest_batch_size=int(batch_size),
    )
    sessions = make_sessionmaker(make_engine(database_url))
    service = PresenceService(sessions, ShopperDirectory(sessions), offer_policy(settings))
    consumer = DyingConsumer(settings, service, sessions)
    consumer.kill_at = int(kill_at)
    consumer.start()
    if not consumer.wait_until_subscribed(10):
        sys.exit("could not subscribe")
    print("subscribed", flush=True)
    time.sleep(60)
    sys.exit("never reached the batch to die at")


if __name__ == "__main__":
    main(sys.argv[1:])
