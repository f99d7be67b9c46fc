"""The built-in dashboard: static files shipped in the package, served at ``/dashboard/``.

Plain ES modules and a vendored chart library (scripts/vendor-chartjs.sh), no build step and
nothing fetched from the internet: store networks are often offline. Every number on it comes
from the ``/v1/stats/...`` endpoints, with the staff token the login page keeps in the tab's
session storage.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

DASHBOARD_DIR = Path(__file__).parent.parent / "dashboard"
DASHBOARD_PATH = "/dashboard"


def mount_dashboard(app: FastAPI) -> None:
    @app.get(DASHBOARD_PATH, include_in_schema=False)
    def dashboard_root() -> RedirectResponse:
        return RedirectResponse(f"{DASHBOARD_PATH}/")

    app.mount(DASHBOARD_PATH, StaticFiles(directory=DASHBOARD_DIR, html=True), name="dashboard")
