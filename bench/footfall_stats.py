"""How long the dashboard's footfall endpoints take over four weeks of a store's history.

Stores ``--busyness`` times the demo boutique's traffic for 28 days (``storelink.demo_history``,
through the ingest's own ``PresenceService``) in a fresh SQLite database, then times each
``/v1/stats/...`` endpoint the Footfall and Now pages call (median of ``--repeat`` calls, over
the last 7 days, the 4-week comparison and the 28-day lookback) through the HTTP API in process.
Prints one JSON line per figure: ``visits_stored`` and ``stats_<endpoint>_ms``.

Run with ``.venv/bin/python bench/footfall_stats.py [--busyness 20] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from cloud_api.app import create_app
from cloud_api.config import CloudSettings
from cloud_api.deps import CloudContext
from cloud_api.ingest.presence_service import PresenceService
from cloud_api.match.offer_policy import offer_policy
from cloud_api.store.models import Visit
from storelink.demo_history import HistoryShape, seed_history

TOKEN = "bench-admin-token"
ENDPOINTS = ("occupancy", "visits-per-hour", "visitors", "dwell", "zones", "peak-hours", "capture")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busyness", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="storelink-bench-") as tmp:
        settings = CloudSettings(
            database_url=f"sqlite:///{Path(tmp) / 'bench.db'}",
            mqtt_enabled=False,
            admin_token=TOKEN,
        )
        app = create_app(settings)
        with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            context: CloudContext = app.state.context
            service = PresenceService(context.sessions, context.directory, offer_policy(settings))
            shape = HistoryShape(
                "store-1", "gw-1", ("entrance", "racks", "fitting-rooms"), busyness=args.busyness
            )
            seed_history(service, context.sessions, shape, datetime.now(UTC))
            with context.sessions() as session:
                visits = session.scalar(sa.select(sa.func.count()).select_from(Visit))
            print(json.dumps({"metric": "visits_stored", "value": visits, "unit": "visits"}))
            for endpoint in ENDPOINTS:
                timings = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    response = client.get(f"/v1/stats/{endpoint}", params={"store_id": "store-1"})
                    timings.append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()
                figure = {
                    "metric": f"stats_{endpoint.replace('-', '_')}_ms",
                    "value": round(statistics.median(timings), 1),
                    "unit": "ms",
                }
                print(json.dumps(figure))


if __name__ == "__main__":
    main()
